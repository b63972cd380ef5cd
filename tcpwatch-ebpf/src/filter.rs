//! In-kernel output filters (`--kind`, `--netns`, `--port`, `--addr`, `--pid`,
//! `--comm`). Owner tracking runs before these: a filtered event still updates
//! the owner tables.

use aya_ebpf::maps::lpm_trie::Key;
use tcpwatch_common::{
    event::EventKind,
    filter::active,
    flow::FlowKey,
    limits::FILTER_NETNS,
    owner::{ListenerRecord, OwnerRecord},
};

use crate::{
    config::config,
    maps::{FILTER_ADDRS, FILTER_PIDS, FILTER_PORTS},
};

/// Whether events of `kind` are wanted at all (checked before any other work).
#[inline(always)]
pub fn kind_enabled(kind: EventKind) -> bool {
    config!(filter.kinds) & kind.mask() != 0
}

/// Whether an event on `flow`, owned by `owner` (or, for socket-less resets,
/// attributed to `listener`), passes the user's filters.
#[inline(always)]
pub fn keep(flow: &FlowKey, owner: *const OwnerRecord, listener: *const ListenerRecord) -> bool {
    let on = config!(filter.active);
    if on == 0 {
        return true;
    }
    if on & active::NETNS != 0 && !netns_matches(flow.netns) {
        return false;
    }
    if on & active::PORTS != 0
        && FILTER_PORTS.get_ptr(flow.local_port).is_none()
        && FILTER_PORTS.get_ptr(flow.remote_port).is_none()
    {
        return false;
    }
    if on & active::ADDRS != 0
        && FILTER_ADDRS.get(Key::new(128, flow.local_addr)).is_none()
        && FILTER_ADDRS.get(Key::new(128, flow.remote_addr)).is_none()
    {
        return false;
    }
    if on & (active::PIDS | active::COMM) != 0 {
        // SAFETY: non-null map value pointers, valid for this program run.
        let owner_ok = !owner.is_null() && unsafe { task_matches(on, &*owner) };
        // SAFETY: as above.
        let listener_ok = !listener.is_null() && unsafe { task_matches(on, &(*listener).owner) };
        if !owner_ok && !listener_ok {
            return false;
        }
    }
    true
}

#[inline(always)]
fn netns_matches(netns: u32) -> bool {
    let count = config!(filter.netns_count) as usize;
    let mut i = 0;
    while i < FILTER_NETNS {
        if i < count && config!(filter.netns[i]) == netns {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn task_matches(on: u32, owner: &OwnerRecord) -> bool {
    if on & active::PIDS != 0 && FILTER_PIDS.get_ptr(owner.task.pid).is_none() {
        return false;
    }
    if on & active::COMM != 0 {
        let mut i = 0;
        while i < owner.task.comm.len() {
            if owner.task.comm[i] != config!(filter.comm[i]) {
                return false;
            }
            i += 1;
        }
    }
    true
}
