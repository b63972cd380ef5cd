//! The socket-owner tables: who owns a socket, learned at process-context moments
//! and from the start-up census, looked up by socket identity (never by the task
//! that happens to be on the CPU in softirq or timer context).

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns,
    },
};
use tcpwatch_common::{
    COMM_LEN,
    counters::Counter,
    flow::{FlowKey, ListenKey},
    owner::{ListenerRecord, OwnerRecord, OwnerSource, TaskIdent},
};

use crate::{
    config::config,
    kmem::{ReadError, read, read_into},
    maps::{FLOW_OWNERS, LISTENERS, SOCK_OWNERS, count},
};

/// Monotonic time in nanoseconds.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments or preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Writes the task on the CPU into `task`, in place. Only an owner in
/// process-context hooks; elsewhere the "actor". `comm` is the process's name
/// (its main thread's), the name that goes with the pid; the thread's own name
/// is the fallback.
#[inline(always)]
pub fn fill_current_task(task: &mut TaskIdent) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    task.pid = (pid_tgid >> 32) as u32;
    task.tid = pid_tgid as u32;
    task.uid = uid_gid as u32;
    task._pad = 0;
    // SAFETY: helper without arguments or preconditions.
    task.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if process_comm_into(&mut task.comm).is_err() {
        // SAFETY: the helper writes at most `COMM_LEN` bytes into `comm`.
        unsafe {
            bpf_get_current_comm(
                task.comm.as_mut_ptr().cast::<c_void>(),
                task.comm.len() as u32,
            )
        };
    }
}

/// `current->group_leader->comm`, into `comm`.
#[inline(always)]
fn process_comm_into(comm: &mut [u8; COMM_LEN]) -> Result<(), ReadError> {
    // SAFETY: helper without arguments; returns the current task_struct address.
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = read(task, config!(kernel.task_group_leader))?;
    read_into(comm, leader, config!(kernel.task_comm))
}

/// Writes an owner record for the current task into `record`, in place.
#[inline(always)]
pub fn fill_current_owner(record: &mut OwnerRecord, source: OwnerSource, now: u64) {
    fill_current_task(&mut record.task);
    record.since_ns = now;
    record.closed_ns = 0;
    record.source = source as u8;
    record._pad = [0; 7];
}

/// Records `owner` as the owner of socket `sk`.
#[inline(always)]
pub fn set_socket_owner(sk: u64, owner: &OwnerRecord) {
    if SOCK_OWNERS.insert(sk, owner, 0).is_err() {
        count(Counter::OwnerUpdateErrors);
    }
}

/// Forgets socket `sk` (it reached CLOSE; its owner lives on in `FLOW_OWNERS`).
#[inline(always)]
pub fn forget_socket(sk: u64) {
    let _ = SOCK_OWNERS.remove(sk);
}

/// Keeps the owner of a socket that just reached CLOSE under its flow, stamped
/// with the close time, so late segments for the flow still find it. Copied map
/// to map, then stamped: the record never sits on the BPF stack.
#[inline(always)]
pub fn remember_closed_flow(flow: &FlowKey, owner: *const OwnerRecord, now: u64) {
    // SAFETY: `owner` points into a map value, valid for this program run.
    let inserted = FLOW_OWNERS.insert(flow, unsafe { &*owner }, 0);
    match (inserted, FLOW_OWNERS.get_ptr_mut(flow)) {
        // SAFETY: a map value pointer, valid for this program run.
        (Ok(()), Some(closed)) => unsafe { (*closed).closed_ns = now },
        _ => count(Counter::OwnerUpdateErrors),
    }
}

// Lookups return map value pointers, null when absent, never
// `Option<*const T>`: a raw pointer has no niche, so the option is a tag plus a
// payload that is undefined when `None`, and LLVM may then move that undefined
// payload into a register the verifier must treat as a pointer (it rejects the
// program: "invalid mem access 'scalar'").

/// Owner of a live socket, by its address, falling back to its flow (census);
/// null if unknown.
#[inline(always)]
pub fn socket_owner(sk: u64, flow: &FlowKey, now: u64) -> *const OwnerRecord {
    if sk != 0
        && let Some(owner) = SOCK_OWNERS.get_ptr(sk)
    {
        return owner;
    }
    flow_owner(flow, now)
}

/// Owner by flow: census entries, or a recently closed socket within the grace
/// period; null if none.
#[inline(always)]
pub fn flow_owner(flow: &FlowKey, now: u64) -> *const OwnerRecord {
    let Some(owner) = FLOW_OWNERS.get_ptr(flow) else {
        return ptr::null();
    };
    // SAFETY: a map value pointer, valid for this program run.
    let closed = unsafe { (*owner).closed_ns };
    if closed == 0 || now.saturating_sub(closed) <= config!(owner_grace_ns) {
        owner
    } else {
        ptr::null()
    }
}

/// The listener on (netns, port); null if none.
#[inline(always)]
pub fn listener(netns: u32, port: u16) -> *const ListenerRecord {
    LISTENERS
        .get_ptr(ListenKey {
            netns,
            port,
            _pad: 0,
        })
        .unwrap_or(ptr::null())
}

/// Registers socket `sk` as the listener on (netns, port), owned by `owner`;
/// `scratch` (map memory) holds the record while it is inserted.
#[inline(always)]
pub fn set_listener(
    netns: u32,
    port: u16,
    sk: u64,
    owner: &OwnerRecord,
    scratch: &mut ListenerRecord,
) {
    let key = ListenKey {
        netns,
        port,
        _pad: 0,
    };
    scratch.owner = *owner;
    scratch.sk = sk;
    if LISTENERS.insert(key, &*scratch, 0).is_err() {
        count(Counter::OwnerUpdateErrors);
    }
}

/// Removes the listener on (netns, port) if it is `sk` (or a census entry, which
/// has no socket address).
#[inline(always)]
pub fn remove_listener(netns: u32, port: u16, sk: u64) {
    let key = ListenKey {
        netns,
        port,
        _pad: 0,
    };
    if let Some(record) = LISTENERS.get_ptr(key) {
        // SAFETY: a map value pointer, valid for this program run.
        let owner_sk = unsafe { (*record).sk };
        if owner_sk == sk || owner_sk == 0 {
            let _ = LISTENERS.remove(key);
        }
    }
}
