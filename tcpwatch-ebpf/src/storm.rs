//! Storm mode in the kernel (see `tcpwatch_common::storm`): once the ring
//! buffer fills past the high-water mark, or a write fails, events are counted
//! per (kind, states, reason, owner, port, namespace) in `AGGREGATES` instead of
//! written, until user space clears `STORM`.

use aya_ebpf::bindings::BPF_RB_AVAIL_DATA;
use tcpwatch_common::{
    counters::Counter,
    event::{EventKind, TcpEvent, flags},
    owner::{ListenerRecord, OwnerRecord},
    storm::{AggregateKey, AggregateValue, key_flags},
};

use aya_ebpf::{macros::map, maps::PerCpuArray};

use crate::{
    config::config,
    emit::slot_depth,
    maps::{AGGREGATES, EVENTS, STORM, count},
};

/// Room to build a new aggregate value (128 bytes: too much for the BPF stack
/// on 6.1 and 6.12), one per nesting depth like the event slots.
#[map]
static VALUE_SCRATCH: PerCpuArray<AggregateValue> = PerCpuArray::with_max_entries(4, 0);

/// Bytes waiting in the ring buffer.
#[inline(always)]
pub fn pending() -> u64 {
    EVENTS.query(u64::from(BPF_RB_AVAIL_DATA))
}

/// Whether events are summarised now: storm mode is on, or the ring buffer
/// (holding `pending` unread bytes) crossed the high-water mark, which turns
/// it on.
#[inline(always)]
pub fn summarising(now: u64, pending: u64) -> bool {
    let Some(since) = STORM.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a valid array slot; a racing writer (another CPU, or user space
    // clearing it) only changes which of two correct decisions is taken.
    if unsafe { *since } != 0 {
        return true;
    }
    let high_water = u64::from(config!(storm_high_water));
    if high_water != 0 && pending >= high_water {
        enter(now);
        return true;
    }
    false
}

/// Turns storm mode on (a write to the ring buffer failed, or it is too full).
#[inline(always)]
pub fn enter(now: u64) {
    if let Some(since) = STORM.get_ptr_mut(0) {
        // SAFETY: as in `summarising`.
        unsafe {
            if *since == 0 {
                *since = now.max(1);
                count(Counter::Storms);
            }
        }
    }
}

/// Counts `event` under its aggregate key. Out of line: its frame (key and a
/// new value) stays off the callers'.
#[inline(never)]
pub fn summarise(
    event: &TcpEvent,
    kind: EventKind,
    now: u64,
    owner: *const OwnerRecord,
    listener: *const ListenerRecord,
) {
    let mut key = AggregateKey {
        kind: kind as u8,
        new_state: event.new_state,
        ..AggregateKey::default()
    };
    if kind == EventKind::State {
        key.old_state = event.old_state;
    }
    if event.flags & flags::HAS_REASON != 0 {
        key.flags |= key_flags::HAS_REASON;
        key.reason = event.reason;
    }
    if event.flags & flags::HAS_SEGMENT != 0 {
        key.flags |= key_flags::HAS_SEGMENT;
        key.seg_flags = event.seg_flags;
    }
    key.netns = event.flow.netns;
    let (local, remote) = (event.flow.local_port, event.flow.remote_port);
    if local <= remote {
        key.port = local;
        key.flags |= key_flags::LOCAL_PORT;
    } else {
        key.port = remote;
    }
    let who: *const OwnerRecord = if !owner.is_null() {
        key.flags |= key_flags::OWNER;
        owner
    } else if !listener.is_null() {
        key.flags |= key_flags::LISTENER;
        // SAFETY: a map value pointer, valid for this program run.
        unsafe { &raw const (*listener).owner }
    } else {
        core::ptr::null()
    };
    if !who.is_null() {
        // SAFETY: as above.
        key.pid = unsafe { (*who).task.pid };
    }
    let counter = match kind {
        EventKind::State => Counter::SummarisedState,
        EventKind::ResetSent => Counter::SummarisedResetSent,
        EventKind::ResetReceived => Counter::SummarisedResetReceived,
        EventKind::Drop => Counter::SummarisedDrop,
        EventKind::AppError => Counter::SummarisedAppError,
    };
    if add(&key, event, now) {
        count(counter);
        return;
    }
    let Some(value) = VALUE_SCRATCH.get_ptr_mut(slot_depth()) else {
        count(Counter::SummaryOverflow);
        return;
    };
    // SAFETY: this CPU's scratch at this program's nesting depth, ours for the
    // run; `who` is a map value pointer, valid for this program run.
    unsafe {
        (*value).count = 1;
        (*value).first_ns = now;
        (*value).last_ns = now;
        (*value).example = event.flow;
        if who.is_null() {
            core::ptr::write_bytes(&raw mut (*value).owner, 0, 1);
        } else {
            (*value).owner = *who;
        }
    }
    // Inserting writes this CPU's slot (another CPU's insert of the same key
    // meanwhile only wrote its own).
    // SAFETY: `value` points at a whole, initialised AggregateValue.
    if AGGREGATES.insert(&key, unsafe { &*value }, 0).is_ok() {
        count(counter);
    } else {
        count(Counter::SummaryOverflow);
    }
}

/// Adds one to this CPU's value of an existing key; false if the key does not
/// exist. Values are per CPU (user space sums them), so no atomics are needed.
#[inline(always)]
fn add(key: &AggregateKey, event: &TcpEvent, now: u64) -> bool {
    let Some(value) = AGGREGATES.get_ptr_mut(key) else {
        return false;
    };
    // SAFETY: this CPU's slot of a map value, valid for this program run and
    // touched by no other CPU. A CPU's slot of a key another CPU created starts
    // zeroed, hence `first_ns` is set on its first event.
    unsafe {
        if (*value).count == 0 {
            (*value).first_ns = now;
        }
        (*value).count += 1;
        (*value).last_ns = now;
        (*value).example = event.flow;
    }
    true
}
