//! Resets sent and received.
//!
//! Sent: `tcp:tcp_send_reset` fires for every RST `tcp_v4/v6_send_reset` and
//! `tcp_send_active_reset` build from 6.10 on, with `enum sk_rst_reason`. Before
//! 6.10 it misses resets without a full socket (no socket, TIME_WAIT), so there the
//! attach plan uses kprobes on the three functions instead; all paths end in
//! [`report_sent`].
//!
//! Received: `tcp:tcp_receive_reset` (4.15+), at the top of `tcp_reset()`.

use core::ptr;

use aya_ebpf::programs::{ProbeContext, TracePointContext};
use tcpwatch_common::{
    counters::Counter,
    event::{EventKind, Hook, flags},
    family,
    flow::{FlowKey, map_v4},
    owner::OwnerRecord,
};

use crate::{
    config::config,
    emit::{self, Slot},
    filter,
    kmem::{ReadError, tp, tp_uint},
    maps::count,
    owner, skb, sock,
    tp_tuple::{self, tuple_fields},
};

/// A reset this host is sending, as the hook saw it.
struct Sent {
    hook: Hook,
    /// Socket the reset is sent for: full, TIME_WAIT, listener, or 0.
    sk: u64,
    /// Incoming segment that triggered it, or 0 for active resets.
    skb: u64,
    /// Socket state at send time (0 without a socket).
    state: u8,
    /// Kernel reset reason, where the hook has one.
    reason: Option<u32>,
    /// The hook's own flow, if it has one (tracepoint fields or the socket).
    flow: Option<(FlowKey, u16)>,
}

/// `tcp:tcp_send_reset`.
pub fn on_send_reset_tp(ctx: &TracePointContext) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::ResetSent) {
        return Ok(());
    }
    counted(send_reset_tp(ctx))
}

fn send_reset_tp(ctx: &TracePointContext) -> Result<(), ReadError> {
    let sk: u64 = tp(ctx, config!(send_reset.skaddr))?;
    let skb: u64 = tp(ctx, config!(send_reset.skbaddr)).unwrap_or(0);
    let state = tp_uint(ctx, config!(send_reset.state)).unwrap_or(0) as u8;
    let reason_field = config!(send_reset.reason);
    let reason = if reason_field.present() {
        Some(tp_uint(ctx, reason_field)? as u32)
    } else {
        None
    };
    let flow = if config!(send_reset.saddr.size) == 28 {
        sockaddr_flow(ctx)?
    } else {
        legacy_flow(ctx, sk)?
    };
    report_sent(&Sent {
        hook: Hook::TcpSendResetTp,
        sk,
        skb,
        state,
        reason,
        flow: Some(flow),
    })
}

/// 6.10+ layout: `saddr`/`daddr` hold a `sockaddr_in` or `sockaddr_in6`
/// (`sa_family` in host order, port in network order).
fn sockaddr_flow(ctx: &TracePointContext) -> Result<(FlowKey, u16), ReadError> {
    let src: [u8; 28] = tp(ctx, config!(send_reset.saddr))?;
    let dst: [u8; 28] = tp(ctx, config!(send_reset.daddr))?;
    let fam = u16::from_ne_bytes([src[0], src[1]]);
    let addr = |sa: &[u8; 28]| -> [u8; 16] {
        if fam == family::INET6 {
            let mut a = [0u8; 16];
            a.copy_from_slice(&sa[8..24]);
            a
        } else {
            map_v4([sa[4], sa[5], sa[6], sa[7]])
        }
    };
    Ok((
        FlowKey {
            local_addr: addr(&src),
            remote_addr: addr(&dst),
            netns: 0,
            local_port: u16::from_be_bytes([src[2], src[3]]),
            remote_port: u16::from_be_bytes([dst[2], dst[3]]),
        },
        fam,
    ))
}

/// Pre-6.10 layout (`tcp_event_sk_skb`): host-order ports, IPv4 and IPv6 (or
/// v4-mapped) address fields, `family` from 5.12.
fn legacy_flow(ctx: &TracePointContext, sk: u64) -> Result<(FlowKey, u16), ReadError> {
    let fam = match tp_uint(ctx, config!(send_reset.family)) {
        Ok(f) => f as u16,
        Err(_) => sock::family(sk)?,
    };
    Ok((tp_tuple::read(ctx, &tuple_fields!(send_reset), fam)?, fam))
}

/// kprobe on `tcp_v4_send_reset`/`tcp_v6_send_reset(sk, skb, ...)`: the flow comes
/// from the incoming segment. No reason argument before 6.10.
pub fn on_send_reset_kprobe(ctx: &ProbeContext, v6: bool) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::ResetSent) {
        return Ok(());
    }
    let sk: u64 = ctx.arg(0).ok_or(ReadError::Null)?;
    let skb: u64 = ctx.arg(1).ok_or(ReadError::Null)?;
    let state = if sk != 0 {
        counted(sock::state(sk))?
    } else {
        0
    };
    counted(report_sent(&Sent {
        hook: if v6 {
            Hook::TcpV6SendResetKprobe
        } else {
            Hook::TcpV4SendResetKprobe
        },
        sk,
        skb,
        state,
        reason: None,
        flow: None,
    }))
}

/// kprobe on `tcp_send_active_reset(sk, priority, ...)`: the flow comes from the
/// socket.
pub fn on_active_reset_kprobe(ctx: &ProbeContext) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::ResetSent) {
        return Ok(());
    }
    let sk: u64 = ctx.arg(0).ok_or(ReadError::Null)?;
    let result = sock::flow(sk).and_then(|flow| {
        report_sent(&Sent {
            hook: Hook::TcpSendActiveResetKprobe,
            sk,
            skb: 0,
            state: sock::state(sk)?,
            reason: None,
            flow: Some(flow),
        })
    });
    counted(result)
}

/// Attributes and emits a sent reset. Out of line: its frame does not add to the
/// hook's (the BPF stack is 512 bytes per call chain).
#[inline(never)]
fn report_sent(sent: &Sent) -> Result<(), ReadError> {
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostResetSent);
        return Ok(());
    };
    let event = slot.event();
    let now = owner::now_ns();
    let listen = config!(states.listen);
    let full = sent.sk != 0
        && sent.state != config!(states.time_wait)
        && sent.state != config!(states.new_syn_recv);

    event.hook = sent.hook as u8;
    event.new_state = sent.state;
    event.skaddr = sent.sk;
    event.skbaddr = sent.skb;
    if full {
        event.flags |= flags::FULL_SOCKET | flags::WANT_TCP_STATS;
    }
    if let Some(reason) = sent.reason {
        event.reason = reason;
        event.flags |= flags::HAS_REASON;
    }
    let mut segment_netns = 0;
    let mut segment_flow = None;
    if sent.skb != 0
        && let Ok(seg) = skb::parse(sent.skb)
    {
        event.flags |= flags::HAS_SEGMENT;
        event.seg_flags = seg.tcp_flags;
        event.seg_len = seg.payload_len;
        segment_netns = seg.flow.netns;
        segment_flow = Some((seg.flow, seg.family));
    }
    // The hook's own flow is the socket's; for a listener it is the listener's
    // (peer unknown) and without a socket it may be empty: the segment then tells.
    let (flow, fam) = match (sent.flow, segment_flow) {
        (Some((flow, _)), Some(seg)) if sent.state == listen || flow.local_port == 0 => seg,
        (Some(hook_flow), _) => hook_flow,
        (None, Some(seg)) => seg,
        (None, None) => return Err(ReadError::Null),
    };
    event.flow = flow;
    event.family = fam;
    event.flow.netns = if sent.sk != 0 {
        sock::netns(sent.sk)?
    } else {
        segment_netns
    };
    let flow = &event.flow;

    let listener = if !full || sent.state == listen {
        owner::listener(flow.netns, flow.local_port)
    } else {
        None
    };
    let mut owner: Option<*const OwnerRecord> = if full {
        owner::socket_owner(sent.sk, flow, now)
    } else {
        owner::flow_owner(flow, now)
    };
    if owner.is_none() && sent.state == listen {
        // SAFETY: a map value pointer, valid for this program run.
        owner = listener.map(|l| unsafe { &raw const (*l).owner });
    }
    emit::submit(
        event,
        EventKind::ResetSent,
        now,
        owner.unwrap_or(ptr::null()),
        listener.unwrap_or(ptr::null()),
    );
    Ok(())
}

/// `tcp:tcp_receive_reset`.
pub fn on_receive_reset_tp(ctx: &TracePointContext) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::ResetReceived) {
        return Ok(());
    }
    counted(receive_reset_tp(ctx))
}

fn receive_reset_tp(ctx: &TracePointContext) -> Result<(), ReadError> {
    let sk: u64 = tp(ctx, config!(receive_reset.skaddr))?;
    let fam = match tp_uint(ctx, config!(receive_reset.family)) {
        Ok(f) => f as u16,
        Err(_) => sock::family(sk)?,
    };
    let mut flow = tp_tuple::read(ctx, &tuple_fields!(receive_reset), fam)?;
    flow.netns = sock::netns(sk)?;
    let state = sock::state(sk)?;
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostResetReceived);
        return Ok(());
    };
    let event = slot.event();
    let now = owner::now_ns();
    event.flow = flow;
    event.family = fam;
    event.hook = Hook::TcpReceiveResetTp as u8;
    event.flags = flags::FULL_SOCKET | flags::WANT_TCP_STATS;
    event.new_state = state;
    event.skaddr = sk;
    let owner = owner::socket_owner(sk, &event.flow, now).unwrap_or(ptr::null());
    emit::submit(event, EventKind::ResetReceived, now, owner, ptr::null());
    Ok(())
}

/// Counts a failed read.
#[inline(always)]
fn counted<T>(result: Result<T, ReadError>) -> Result<T, ReadError> {
    if result.is_err() {
        count(Counter::ReadErrors);
    }
    result
}
