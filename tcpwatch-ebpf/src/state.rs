//! `sock:inet_sock_set_state` (4.16+): every TCP state transition, and the
//! process-context moments that teach the owner tables who owns a socket.
//!
//! Which transitions run in the owning process (kernel-facts §1.5): CLOSE→SYN_SENT
//! in `connect()`, CLOSE→LISTEN in `listen()`, ESTABLISHED→FIN_WAIT1 and
//! CLOSE_WAIT→LAST_ACK in `close()`/`shutdown()`. Everything else (handshake
//! completion, peer FIN, RST, timers) runs in softirq or timer context, where the
//! task on the CPU is unrelated: those events are attributed by socket identity.

use core::ptr;

use aya_ebpf::programs::TracePointContext;
use tcpwatch_common::{
    IPPROTO_TCP,
    counters::Counter,
    event::{EventKind, Hook, flags},
    flow::FlowKey,
    owner::{OwnerRecord, OwnerSource},
};

use crate::{
    config::config,
    emit::{self, Slot},
    filter,
    kmem::{ReadError, tp, tp_uint},
    maps::count,
    owner, sock,
    tp_tuple::{self, tuple_fields},
};

/// Handles one `inet_sock_set_state` record.
pub fn on_set_state(ctx: &TracePointContext) -> Result<(), ReadError> {
    let protocol = tp_uint(ctx, config!(set_state.protocol))?;
    if protocol != u64::from(IPPROTO_TCP) {
        return Ok(());
    }
    let result = handle(ctx);
    if result.is_err() {
        count(Counter::ReadErrors);
    }
    result
}

fn handle(ctx: &TracePointContext) -> Result<(), ReadError> {
    let sk: u64 = tp(ctx, config!(set_state.skaddr))?;
    let old = tp_uint(ctx, config!(set_state.oldstate))? as u8;
    let new = tp_uint(ctx, config!(set_state.newstate))? as u8;
    let fam = tp_uint(ctx, config!(set_state.family))? as u16;
    let mut flow = tp_tuple::read(ctx, &tuple_fields!(set_state), fam)?;
    flow.netns = sock::netns(sk)?;
    let now = owner::now_ns();
    let owner = track_owner(sk, &flow, old, new, now);

    if filter::kind_enabled(EventKind::State)
        && let Some(mut slot) = Slot::take()
    {
        let event = slot.event();
        event.flow = flow;
        event.family = fam;
        event.hook = Hook::InetSockSetState as u8;
        event.flags = flags::FULL_SOCKET;
        // Idle time and bytes matter when a connection closes (and at resets);
        // other transitions skip the reads.
        if old == config!(states.established) || old == config!(states.close_wait) {
            event.flags |= flags::WANT_TCP_STATS;
        }
        event.old_state = old;
        event.new_state = new;
        event.skaddr = sk;
        emit::submit(event, EventKind::State, now, owner, ptr::null());
    }
    if new == config!(states.close) {
        // The socket left the connection table: keep its owner under the flow for
        // the grace period (late segments, TIME_WAIT resets), and free the
        // socket's slot. A connection that never got past SYN_SENT, and a
        // listener, leave nothing for late segments to find.
        if !owner.is_null() && old != config!(states.syn_sent) && old != config!(states.listen) {
            owner::remember_closed_flow(&flow, owner, now);
        }
        owner::forget_socket(sk);
    }
    Ok(())
}

/// Updates the owner tables for this transition and returns the socket's owner
/// (null if unknown). Out of line to keep its frame off the caller's.
#[inline(never)]
fn track_owner(sk: u64, flow: &FlowKey, old: u8, new: u8, now: u64) -> *const OwnerRecord {
    let close = config!(states.close);
    let listen = config!(states.listen);
    let source = if old == close && new == config!(states.syn_sent) {
        Some(OwnerSource::Connect)
    } else if old == close && new == listen {
        Some(OwnerSource::Listen)
    } else if (old == config!(states.established) && new == config!(states.fin_wait1))
        || (old == config!(states.close_wait) && new == config!(states.last_ack))
    {
        Some(OwnerSource::Close)
    } else {
        None
    };
    if let Some(source) = source {
        let record = owner::current_owner(source, now);
        owner::set_socket_owner(sk, &record);
        if source == OwnerSource::Listen {
            owner::set_listener(flow.netns, flow.local_port, sk, &record);
        }
    } else if old == listen && new == config!(states.syn_recv) {
        // A child socket is born from a listener (softirq): until someone
        // accept()s it, its owner is the listener's.
        match owner::listener(flow.netns, flow.local_port) {
            Some(listener) => {
                // SAFETY: a map value pointer, valid for this program run.
                let mut record = unsafe { (*listener).owner };
                record.source = OwnerSource::Listener as u8;
                record.since_ns = now;
                owner::set_socket_owner(sk, &record);
            }
            None => owner::forget_socket(sk),
        }
    } else if old == listen && new == close {
        owner::remove_listener(flow.netns, flow.local_port, sk);
    }
    owner::socket_owner(sk, flow, now).unwrap_or(ptr::null())
}
