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
    event::{EventKind, Hook, TcpEvent, flags},
    owner::{ListenerRecord, OwnerRecord, OwnerSource},
};

use crate::{
    config::config,
    emit::{self, Slot},
    filter,
    kmem::{ReadError, tp, tp_uint},
    maps::{FAILED_CONNECTS, count},
    owner, sock,
    tp_tuple::{self, tuple_fields},
};

/// Handles one `inet_sock_set_state` record.
pub fn on_set_state(ctx: &TracePointContext) -> Result<(), ReadError> {
    let protocol = tp_uint(ctx, config!(set_state.protocol))?;
    if protocol != u64::from(IPPROTO_TCP) {
        return Ok(());
    }
    // The scratch event is also the working memory of owner tracking, so it is
    // taken even when state events are not wanted.
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostState);
        return Ok(());
    };
    let result = handle(ctx, &mut slot);
    if result.is_err() {
        count(Counter::ReadErrors);
    }
    result
}

fn handle(ctx: &TracePointContext, slot: &mut Slot) -> Result<(), ReadError> {
    let (event, listener_scratch) = slot.parts();
    let sk: u64 = tp(ctx, config!(set_state.skaddr))?;
    let old = tp_uint(ctx, config!(set_state.oldstate))? as u8;
    let new = tp_uint(ctx, config!(set_state.newstate))? as u8;
    let fam = tp_uint(ctx, config!(set_state.family))? as u16;
    tp_tuple::read_into(ctx, &tuple_fields!(set_state), fam, &mut event.flow)?;
    event.flow.netns = sock::netns(sk)?;
    event.family = fam;
    event.hook = Hook::InetSockSetState as u8;
    event.flags = flags::FULL_SOCKET;
    // Idle time, bytes, retransmissions and the socket's error matter when a
    // connection closes (and at resets); other transitions skip the reads.
    if old == config!(states.established)
        || old == config!(states.close_wait)
        || new == config!(states.close)
    {
        event.flags |= flags::WANT_TCP_STATS;
    }
    event.old_state = old;
    event.new_state = new;
    event.skaddr = sk;
    let now = owner::now_ns();
    let owner = track_owner(event, listener_scratch, now);

    if filter::kind_enabled(EventKind::State) {
        emit::submit(event, EventKind::State, now, owner, ptr::null());
    }
    if new == config!(states.close)
        && old == config!(states.syn_sent)
        && filter::kind_enabled(EventKind::AppError)
    {
        // Its connect() returns the error once it runs again, with the
        // socket's addresses cleared: keep the flow for it.
        let _ = FAILED_CONNECTS.insert(&sk, &event.flow, 0);
    }
    if new == config!(states.close) {
        // The socket left the connection table: keep its owner under the flow for
        // the grace period (late segments, TIME_WAIT resets), and free the
        // socket's slot. A connection that never got past SYN_SENT, and a
        // listener, leave nothing for late segments to find.
        if !owner.is_null() && old != config!(states.syn_sent) && old != config!(states.listen) {
            owner::remember_closed_flow(&event.flow, owner, now);
        }
        owner::forget_socket(sk);
    }
    Ok(())
}

/// Updates the owner tables for the transition in `event` and returns the
/// socket's owner (null if unknown). Records are built in `event.owner` and
/// `listener_scratch` (map memory), not on the stack. Out of line to keep its
/// frame off the caller's.
#[inline(never)]
fn track_owner(
    event: &mut TcpEvent,
    listener_scratch: &mut ListenerRecord,
    now: u64,
) -> *const OwnerRecord {
    let (sk, old, new) = (event.skaddr, event.old_state, event.new_state);
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
    let (netns, port) = (event.flow.netns, event.flow.local_port);
    if let Some(source) = source {
        owner::fill_current_owner(&mut event.owner, source, now);
        owner::set_socket_owner(sk, &event.owner);
        match source {
            OwnerSource::Listen => {
                owner::set_listener(netns, port, sk, &event.owner, listener_scratch);
            }
            // The application closed the connection: keep its owner under the
            // flow already. The later CLOSE transition (softirq) does it again
            // with the exact time, but a softirq program can be skipped by the
            // kernel (one BPF program per CPU at a time), and the TIME_WAIT
            // reset must still find the owner.
            OwnerSource::Close => {
                owner::remember_closed_flow(&event.flow, &raw const event.owner, now);
            }
            _ => {}
        }
    } else if old == listen && new == config!(states.syn_recv) {
        // A child socket is born from a listener (softirq): until someone
        // accept()s it, its owner is the listener's.
        let listener = owner::listener(netns, port);
        if listener.is_null() {
            owner::forget_socket(sk);
        } else {
            // SAFETY: a non-null map value pointer, valid for this program run.
            event.owner = unsafe { (*listener).owner };
            event.owner.source = OwnerSource::Listener as u8;
            event.owner.since_ns = now;
            owner::set_socket_owner(sk, &event.owner);
        }
    } else if old == listen && new == close {
        owner::remove_listener(netns, port, sk);
    }
    owner::socket_owner(sk, &event.flow, now)
}
