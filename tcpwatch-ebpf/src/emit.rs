//! Building an event in a per-CPU scratch slot, filtering it, and copying it into
//! the ring buffer, counting every event the ring had no room for.
//!
//! Events are built in a per-CPU array rather than on the 512-byte BPF stack. A
//! program in process context can be interrupted by a softirq that runs another
//! tcpwatch program on the same CPU, so slots are taken by nesting depth.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::bpf_get_smp_processor_id,
    macros::map,
    maps::PerCpuArray,
};
use tcpwatch_common::{
    ABI_VERSION,
    counters::Counter,
    event::{EventHeader, EventKind, TcpEvent, flags},
    owner::{ListenerRecord, OwnerRecord},
};

use crate::{
    config::config,
    filter,
    maps::{EVENTS, count},
    owner::fill_current_task,
    sock, storm,
};

/// The reader is woken once the ring holds this fraction of the storm
/// high-water mark (which is half the ring).
const WAKEUP_FRACTION: u64 = 16;

/// Deepest nesting of tcpwatch programs on one CPU that gets a slot.
const SLOTS: u32 = 4;

#[map]
static SCRATCH: PerCpuArray<TcpEvent> = PerCpuArray::with_max_entries(SLOTS, 0);

/// Room for a listener record being registered, one per nesting depth.
#[map]
static LISTENER_SCRATCH: PerCpuArray<ListenerRecord> = PerCpuArray::with_max_entries(SLOTS, 0);

#[map]
static SCRATCH_DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// The nesting depth of the slot the running program holds (0-based).
#[inline(always)]
pub fn slot_depth() -> u32 {
    SCRATCH_DEPTH
        .get_ptr(0)
        // SAFETY: a per-CPU counter, only touched by this CPU.
        .map_or(0, |d| unsafe { *d }.saturating_sub(1))
}

/// A scratch event slot, held for the duration of one program run.
pub struct Slot {
    event: *mut TcpEvent,
    listener: *mut ListenerRecord,
    depth: *mut u32,
}

impl Slot {
    /// Takes the slot for the current nesting depth, cleared.
    #[inline(always)]
    pub fn take() -> Option<Slot> {
        let depth = SCRATCH_DEPTH.get_ptr_mut(0)?;
        // SAFETY: a per-CPU slot, only touched by this CPU; nested programs
        // increment and restore it around their own use.
        let level = unsafe { *depth };
        if level >= SLOTS {
            return None;
        }
        let event = SCRATCH.get_ptr_mut(level)?;
        let listener = LISTENER_SCRATCH.get_ptr_mut(level)?;
        // SAFETY: as above. Zeroed word by word in place: building a
        // `TcpEvent::default()` would put 288 bytes on the stack first.
        unsafe {
            *depth = level + 1;
            let words = event.cast::<u64>();
            let mut i = 0;
            while i < size_of::<TcpEvent>() / 8 {
                words.add(i).write(0);
                i += 1;
            }
        }
        Some(Slot {
            event,
            listener,
            depth,
        })
    }

    /// The event being built.
    #[inline(always)]
    pub fn event(&mut self) -> &mut TcpEvent {
        // SAFETY: the slot at this depth is exclusively ours until drop.
        unsafe { &mut *self.event }
    }

    /// The event being built and the listener-record scratch of this depth.
    #[inline(always)]
    pub fn parts(&mut self) -> (&mut TcpEvent, &mut ListenerRecord) {
        // SAFETY: both slots at this depth are exclusively ours until drop, and
        // they are distinct map values.
        unsafe { (&mut *self.event, &mut *self.listener) }
    }
}

impl Drop for Slot {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: per-CPU depth counter we incremented in `take`.
        unsafe { *self.depth = (*self.depth).saturating_sub(1) };
    }
}

/// Applies the output filters, completes the event (header, owner, listener,
/// actor) and copies it into the ring buffer. `owner` and `listener` are null
/// when unknown.
///
/// Kept out of line so its frame is not added to its callers' (the BPF stack is 512
/// bytes per call chain); hence raw pointers, not `Option`s, which would take two
/// of the five argument registers each.
#[inline(never)]
pub fn submit(
    event: &mut TcpEvent,
    kind: EventKind,
    now: u64,
    owner: *const OwnerRecord,
    listener: *const ListenerRecord,
) {
    if !filter::keep(&event.flow, owner, listener) {
        count(Counter::Filtered);
        return;
    }
    let pending = storm::pending();
    if storm::summarising(now, pending) {
        storm::summarise(event, kind, now, owner, listener);
        return;
    }
    let (emitted, lost) = match kind {
        EventKind::State => (Counter::EmittedState, Counter::LostState),
        EventKind::ResetSent => (Counter::EmittedResetSent, Counter::LostResetSent),
        EventKind::ResetReceived => (Counter::EmittedResetReceived, Counter::LostResetReceived),
        EventKind::Drop => (Counter::EmittedDrop, Counter::LostDrop),
        EventKind::AppError => (Counter::EmittedAppError, Counter::LostAppError),
    };
    event.header = EventHeader {
        kind: kind as u8,
        version: ABI_VERSION,
        size: size_of::<TcpEvent>() as u16,
        // SAFETY: helper without arguments or preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        ts_ns: now,
    };
    if !owner.is_null() {
        // SAFETY: a non-null map value pointer, valid for this program run.
        event.owner = unsafe { *owner };
        event.flags |= flags::HAS_OWNER;
    } else if event.flags & flags::FULL_SOCKET != 0 {
        count(Counter::Unattributed);
    }
    if !listener.is_null() {
        // SAFETY: a non-null map value pointer, valid for this program run.
        event.listener = unsafe { (*listener).owner };
        event.flags |= flags::HAS_LISTENER;
    }
    fill_current_task(&mut event.actor);
    let want_stats = event.flags & flags::WANT_TCP_STATS != 0;
    event.flags &= !flags::WANT_TCP_STATS;
    if want_stats
        && event.flags & flags::FULL_SOCKET != 0
        && sock::tcp_stats_into(event.skaddr, now, &mut event.tcp).is_ok()
    {
        event.flags |= flags::HAS_TCP_STATS;
    }
    // Wake the reader only once a batch has built up: user space also drains
    // on a short timer, and a wake-up per event (an IPI, a VM exit in a guest)
    // would cost more than the event itself.
    let wakeup = if pending >= u64::from(config!(storm_high_water)) / WAKEUP_FRACTION {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    match EVENTS.output::<TcpEvent>(&*event, wakeup) {
        Ok(()) => count(emitted),
        Err(_) => {
            count(lost);
            storm::enter(now);
        }
    }
}
