//! The socket-owner tables: who owns a socket, learned at process-context moments
//! and from the start-up census, looked up by socket identity (never by the task
//! that happens to be on the CPU in softirq or timer context).

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{bpf_get_current_cgroup_id, bpf_get_current_task, bpf_ktime_get_ns},
};
use tcpwatch_common::{
    counters::Counter,
    flow::{FlowKey, ListenKey},
    owner::{ListenerRecord, OwnerRecord, OwnerSource, TaskIdent},
};

use crate::{
    config::config,
    kmem::{ReadError, read},
    maps::{FLOW_OWNERS, LISTENERS, SOCK_OWNERS, count},
};

/// Monotonic time in nanoseconds.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: helper without arguments or preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The task on the CPU. Only an owner in process-context hooks; elsewhere the
/// "actor". `comm` is the process's name (its main thread's), the name that goes
/// with the pid; the thread's own name is the fallback.
#[inline(always)]
pub fn current_task() -> TaskIdent {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    TaskIdent {
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        _pad: 0,
        // SAFETY: helper without arguments or preconditions.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: process_comm().unwrap_or_else(|_| bpf_get_current_comm().unwrap_or([0; 16])),
    }
}

/// `current->group_leader->comm`.
#[inline(always)]
fn process_comm() -> Result<[u8; 16], ReadError> {
    // SAFETY: helper without arguments; returns the current task_struct address.
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = read(task, config!(kernel.task_group_leader))?;
    read(leader, config!(kernel.task_comm))
}

/// An owner record for the current task.
#[inline(always)]
pub fn current_owner(source: OwnerSource, now: u64) -> OwnerRecord {
    OwnerRecord {
        task: current_task(),
        since_ns: now,
        closed_ns: 0,
        source: source as u8,
        _pad: [0; 7],
    }
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
/// with the close time, so late segments for the flow still find it.
#[inline(always)]
pub fn remember_closed_flow(flow: &FlowKey, owner: *const OwnerRecord, now: u64) {
    // SAFETY: `owner` points into a map value, valid for this program run.
    let mut closed = unsafe { *owner };
    closed.closed_ns = now;
    if FLOW_OWNERS.insert(flow, closed, 0).is_err() {
        count(Counter::OwnerUpdateErrors);
    }
}

/// Owner of a live socket, by its address, falling back to its flow (census).
#[inline(always)]
pub fn socket_owner(sk: u64, flow: &FlowKey, now: u64) -> Option<*const OwnerRecord> {
    if sk != 0
        && let Some(owner) = SOCK_OWNERS.get_ptr(sk)
    {
        return Some(owner);
    }
    flow_owner(flow, now)
}

/// Owner by flow: census entries, or a recently closed socket within the grace
/// period.
#[inline(always)]
pub fn flow_owner(flow: &FlowKey, now: u64) -> Option<*const OwnerRecord> {
    let owner = FLOW_OWNERS.get_ptr(flow)?;
    // SAFETY: a map value pointer, valid for this program run.
    let closed = unsafe { (*owner).closed_ns };
    if closed == 0 || now.saturating_sub(closed) <= config!(owner_grace_ns) {
        Some(owner)
    } else {
        None
    }
}

/// The listener on (netns, port), if any.
#[inline(always)]
pub fn listener(netns: u32, port: u16) -> Option<*const ListenerRecord> {
    LISTENERS.get_ptr(ListenKey {
        netns,
        port,
        _pad: 0,
    })
}

/// Registers socket `sk` as the listener on (netns, port).
#[inline(always)]
pub fn set_listener(netns: u32, port: u16, sk: u64, owner: &OwnerRecord) {
    let key = ListenKey {
        netns,
        port,
        _pad: 0,
    };
    let record = ListenerRecord { owner: *owner, sk };
    if LISTENERS.insert(key, record, 0).is_err() {
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
