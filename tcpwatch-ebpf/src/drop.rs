//! TCP segments the kernel dropped, with its reason (`skb:kfree_skb`).
//!
//! The tracepoint fires for every packet freed as a drop, of any protocol, so
//! it is attached only when drops are asked for (`--kind drop`), and a segment
//! that is not TCP is turned away before any other work: first by the
//! tracepoint's `protocol` (the EtherType, host order), then by the IP header's
//! protocol byte. Only TCP segments take a scratch slot.
//!
//! The flow is the dropped segment's, seen from the host it was addressed to
//! (`local` = destination), like the segment that triggers a reset; a segment
//! dropped on its way out (qdisc, neighbour) is turned round to its sender's
//! view when its socket says so. The socket is the tracepoint's `rx_sk` (6.12+;
//! a listener for TCP_LISTEN_OVERFLOW), else `skb->sk`; the owner comes from it
//! or from the flow and listener tables, never from the task on the CPU.

use core::ptr;

use aya_ebpf::programs::TracePointContext;
use tcpwatch_common::{
    IPPROTO_TCP,
    counters::Counter,
    event::{EventKind, Hook, TcpEvent, flags},
    owner::OwnerRecord,
};

use crate::{
    config::config,
    emit::{self, Slot},
    filter,
    kmem::{ReadError, read, read_at, tp, tp_uint},
    maps::count,
    owner, skb, sock,
};

/// EtherType of IPv4 (IEEE 802 numbering, host order in the tracepoint).
const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
const ETH_P_IPV6: u16 = 0x86dd;

/// `skb:kfree_skb`.
pub fn on_kfree_skb(ctx: &TracePointContext) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::Drop) {
        return Ok(());
    }
    let protocol = tp_uint(ctx, config!(kfree_skb.protocol))? as u16;
    if protocol != ETH_P_IP && protocol != ETH_P_IPV6 {
        return Ok(());
    }
    let skb: u64 = tp(ctx, config!(kfree_skb.skbaddr))?;
    if !carries_tcp(skb) {
        return Ok(());
    }
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostDrop);
        return Ok(());
    };
    let event = slot.event();
    event.skbaddr = skb;
    let reason = config!(kfree_skb.reason);
    if reason.present() {
        event.reason = tp_uint(ctx, reason).map_err(counted)? as u32;
        event.flags |= flags::HAS_REASON;
    }
    let rx_sk = config!(kfree_skb.rx_sk);
    event.skaddr = if rx_sk.present() {
        tp(ctx, rx_sk).unwrap_or(0)
    } else {
        0
    };
    report(event).map_err(counted)
}

/// Whether the packet in `skb` is a TCP segment: the IPv4 protocol or IPv6
/// next-header byte (RFC 791/8200; extension headers are not followed).
#[inline(always)]
fn carries_tcp(skb: u64) -> bool {
    let ip = (|| {
        let head: u64 = read(skb, config!(kernel.skb_head))?;
        let network: u16 = read(skb, config!(kernel.skb_network_header))?;
        let at = head + u64::from(network);
        let first: u8 = read_at(at)?;
        match first >> 4 {
            4 => read_at::<u8>(at + 9),
            6 => read_at::<u8>(at + 6),
            _ => Err(ReadError::Fault),
        }
    })();
    matches!(ip, Ok(p) if u16::from(p) == IPPROTO_TCP)
}

/// Completes a drop whose `skbaddr`, `reason` and `skaddr` (rx_sk, or 0) are
/// filled: segment and flow, socket, namespace, owner, listener. Out of line:
/// its frame does not add to the hook's (512 bytes per call chain on 6.1/6.12).
#[inline(never)]
fn report(event: &mut TcpEvent) -> Result<(), ReadError> {
    event.hook = Hook::KfreeSkbTp as u8;
    let now = owner::now_ns();
    let segment_netns = skb::parse_into(event.skbaddr, event, true)?;
    if event.skaddr == 0 {
        event.skaddr = read(event.skbaddr, config!(kernel.skb_sk)).unwrap_or(0);
    }
    let sk = event.skaddr;
    let listen = config!(states.listen);
    let mut state = 0;
    if sk != 0 {
        state = sock::state(sk)?;
        let local: u16 = read(sk, config!(kernel.skc_num)).unwrap_or(0);
        if local != 0 && local == event.flow.remote_port && local != event.flow.local_port {
            // The socket sent it: a drop on the way out. Its own view.
            core::mem::swap(&mut event.flow.local_port, &mut event.flow.remote_port);
            core::mem::swap(&mut event.flow.local_addr, &mut event.flow.remote_addr);
        }
        event.flow.netns = sock::netns(sk)?;
    } else {
        event.flow.netns = segment_netns;
    }
    event.new_state = state;
    let full = sk != 0
        && state != 0
        && state != config!(states.time_wait)
        && state != config!(states.new_syn_recv);
    if full {
        event.flags |= flags::FULL_SOCKET;
    }
    let flow = &event.flow;
    let listener = if !full || state == listen {
        owner::listener(flow.netns, flow.local_port)
    } else {
        ptr::null()
    };
    let mut owner: *const OwnerRecord = if full && state != listen {
        owner::socket_owner(sk, flow, now)
    } else {
        owner::flow_owner(flow, now)
    };
    if owner.is_null() && state == listen && !listener.is_null() {
        // SAFETY: a non-null map value pointer, valid for this program run.
        owner = unsafe { &raw const (*listener).owner };
    }
    emit::submit(event, EventKind::Drop, now, owner, listener);
    Ok(())
}

/// Counts a failed read (the drop is not reported).
#[inline(always)]
fn counted(e: ReadError) -> ReadError {
    count(Counter::ReadErrors);
    e
}
