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

use aya_ebpf::programs::{ProbeContext, TracePointContext, tracing::StackIdContext};
use tcpwatch_common::{
    counters::Counter,
    event::{EventKind, Hook, TcpEvent, flags},
    family,
    flow::map_v4,
    owner::OwnerRecord,
};

use crate::{
    config::config,
    emit::{self, Slot},
    filter,
    kmem::{ReadError, tp, tp_part, tp_part_into, tp_uint},
    kstack,
    maps::count,
    owner, skb, sock,
    tp_tuple::{self, tuple_fields},
};

/// Where the flow of a reset sent comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FlowFrom {
    /// The hook filled `event.flow` (tracepoint fields or the socket); the
    /// incoming segment replaces it when it is a listener's or empty.
    Hook,
    /// Only the incoming segment has it (kprobes on the passive reset functions).
    Segment,
}

/// `tcp:tcp_send_reset`.
pub fn on_send_reset_tp(ctx: &TracePointContext) -> Result<(), ReadError> {
    let Some(mut slot) = sent_slot(ctx, Hook::TcpSendResetTp) else {
        return Ok(());
    };
    counted(send_reset_tp(ctx, slot.event()))
}

/// Takes the event slot for a reset sent, seen by `hook`, with its kernel
/// stack when asked for; `None` when resets sent are filtered out, or (counted
/// as lost) when no slot is free.
#[inline(always)]
fn sent_slot<C: StackIdContext>(ctx: &C, hook: Hook) -> Option<Slot> {
    if !filter::kind_enabled(EventKind::ResetSent) {
        return None;
    }
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostResetSent);
        return None;
    };
    let event = slot.event();
    kstack::record(ctx, event);
    event.hook = hook as u8;
    Some(slot)
}

fn send_reset_tp(ctx: &TracePointContext, event: &mut TcpEvent) -> Result<(), ReadError> {
    event.skaddr = tp(ctx, config!(send_reset.skaddr))?;
    event.skbaddr = tp(ctx, config!(send_reset.skbaddr)).unwrap_or(0);
    event.new_state = tp_uint(ctx, config!(send_reset.state)).unwrap_or(0) as u8;
    let reason_field = config!(send_reset.reason);
    if reason_field.present() {
        event.reason = tp_uint(ctx, reason_field)? as u32;
        event.flags |= flags::HAS_REASON;
    }
    if config!(send_reset.saddr.size) == 28 {
        sockaddr_flow(ctx, event)?;
    } else {
        legacy_flow(ctx, event)?;
    }
    report_sent(event, FlowFrom::Hook)
}

/// 6.10+ layout: `saddr`/`daddr` hold a `sockaddr_in` or `sockaddr_in6`
/// (`sa_family` in host order at 0, port in network order at 2, the IPv4
/// address at 4, the IPv6 address at 8).
fn sockaddr_flow(ctx: &TracePointContext, event: &mut TcpEvent) -> Result<(), ReadError> {
    let (src, dst) = (config!(send_reset.saddr), config!(send_reset.daddr));
    let fam: u16 = tp_part(ctx, src, 0)?;
    event.family = fam;
    event.flow.local_port = u16::from_be(tp_part(ctx, src, 2)?);
    event.flow.remote_port = u16::from_be(tp_part(ctx, dst, 2)?);
    if fam == family::INET6 {
        tp_part_into(ctx, src, 8, &mut event.flow.local_addr)?;
        tp_part_into(ctx, dst, 8, &mut event.flow.remote_addr)?;
    } else {
        event.flow.local_addr = map_v4(tp_part(ctx, src, 4)?);
        event.flow.remote_addr = map_v4(tp_part(ctx, dst, 4)?);
    }
    Ok(())
}

/// Pre-6.10 layout (`tcp_event_sk_skb`): host-order ports, IPv4 and IPv6 (or
/// v4-mapped) address fields, `family` from 5.12.
fn legacy_flow(ctx: &TracePointContext, event: &mut TcpEvent) -> Result<(), ReadError> {
    let fam = match tp_uint(ctx, config!(send_reset.family)) {
        Ok(f) => f as u16,
        Err(_) => sock::family(event.skaddr)?,
    };
    event.family = fam;
    tp_tuple::read_into(ctx, &tuple_fields!(send_reset), fam, &mut event.flow)
}

/// kprobe on `tcp_v4_send_reset`/`tcp_v6_send_reset(sk, skb, ...)`: the flow comes
/// from the incoming segment. No reason argument before 6.10.
pub fn on_send_reset_kprobe(ctx: &ProbeContext, v6: bool) -> Result<(), ReadError> {
    let hook = if v6 {
        Hook::TcpV6SendResetKprobe
    } else {
        Hook::TcpV4SendResetKprobe
    };
    let Some(mut slot) = sent_slot(ctx, hook) else {
        return Ok(());
    };
    let event = slot.event();
    let result = (|| {
        event.skaddr = ctx.arg(0).ok_or(ReadError::Null)?;
        event.skbaddr = ctx.arg(1).ok_or(ReadError::Null)?;
        if event.skaddr != 0 {
            event.new_state = sock::state(event.skaddr)?;
        }
        report_sent(event, FlowFrom::Segment)
    })();
    counted(result)
}

/// kprobe on `nf_send_reset`/`nf_send_reset6(net, sk, oldskb, hook)`: a
/// netfilter `REJECT --reject-with tcp-reset` rule answers `oldskb` with a RST
/// that TCP never sees. The flow comes from the rejected segment (`local` is
/// its destination); `reason` carries the rule's netfilter hook. Argument
/// positions come from the function's BTF prototype.
pub fn on_nf_send_reset_kprobe(ctx: &ProbeContext, v6: bool) -> Result<(), ReadError> {
    let hook = if v6 {
        Hook::NfSendReset6Kprobe
    } else {
        Hook::NfSendResetKprobe
    };
    let Some(mut slot) = sent_slot(ctx, hook) else {
        return Ok(());
    };
    let event = slot.event();
    let args = config!(nf_reset);
    let result = (|| {
        let regs = Args::read(ctx)?;
        event.skbaddr = regs.at(args.oldskb);
        event.reason = regs.at(args.hook) as u32;
        let net = regs.at(args.net);
        // The rule's namespace: on the output path the segment has no device yet.
        event.flow.netns = sock::net_inum(net)?;
        report_sent(event, FlowFrom::Segment)
    })();
    counted(result)
}

/// The first five arguments of a probed function. The verifier refuses a
/// context read at an offset it cannot see in the instruction, so each is
/// read at its fixed register and the position chosen among the values.
struct Args([u64; 5]);

impl Args {
    #[inline(always)]
    fn read(ctx: &ProbeContext) -> Result<Self, ReadError> {
        let arg = |v: Option<u64>| v.ok_or(ReadError::Null);
        Ok(Self([
            arg(ctx.arg(0))?,
            arg(ctx.arg(1))?,
            arg(ctx.arg(2))?,
            arg(ctx.arg(3))?,
            arg(ctx.arg(4))?,
        ]))
    }

    /// Argument `n` (0-based, below 5; user space checks).
    #[inline(always)]
    fn at(&self, n: u8) -> u64 {
        let [a0, a1, a2, a3, a4] = self.0;
        if n == 0 {
            a0
        } else if n == 1 {
            a1
        } else if n == 2 {
            a2
        } else if n == 3 {
            a3
        } else {
            a4
        }
    }
}

/// kprobe on `tcp_send_active_reset(sk, priority, ...)`: the flow comes from the
/// socket.
pub fn on_active_reset_kprobe(ctx: &ProbeContext) -> Result<(), ReadError> {
    let Some(mut slot) = sent_slot(ctx, Hook::TcpSendActiveResetKprobe) else {
        return Ok(());
    };
    let event = slot.event();
    let result = (|| {
        let sk: u64 = ctx.arg(0).ok_or(ReadError::Null)?;
        event.skaddr = sk;
        event.new_state = sock::state(sk)?;
        event.family = sock::flow_into(sk, &mut event.flow)?;
        report_sent(event, FlowFrom::Hook)
    })();
    counted(result)
}

/// Completes (segment, namespace, owner, listener) and emits a sent reset whose
/// hook fields (`hook`, `skaddr`, `skbaddr`, `new_state`, reason, and with
/// [`FlowFrom::Hook`] `flow`/`family`) are filled. Out of line: its frame does
/// not add to the hook's (the BPF stack is 512 bytes per call chain on 6.1 and 6.12).
#[inline(never)]
fn report_sent(event: &mut TcpEvent, from: FlowFrom) -> Result<(), ReadError> {
    let now = owner::now_ns();
    let listen = config!(states.listen);
    let (sk, skb, state) = (event.skaddr, event.skbaddr, event.new_state);
    let full =
        sk != 0 && state != config!(states.time_wait) && state != config!(states.new_syn_recv);
    if full {
        event.flags |= flags::FULL_SOCKET | flags::WANT_TCP_STATS;
    }
    let mut segment_netns = 0;
    if skb != 0 {
        // The hook's own flow is the socket's; for a listener it is the
        // listener's (peer unknown) and without a socket it may be empty: the
        // segment then tells.
        let with_flow = from == FlowFrom::Segment || state == listen || event.flow.local_port == 0;
        match skb::parse_into(skb, event, with_flow) {
            Ok(netns) => segment_netns = netns,
            Err(e) if from == FlowFrom::Segment => return Err(e),
            Err(_) => {}
        }
    } else if from == FlowFrom::Segment {
        return Err(ReadError::Null);
    }
    if event.flags & flags::HAS_SEGMENT != 0 && event.seg_flags & skb::TCP_RST != 0 {
        // The kernel never answers a RST with a RST: tcp_v4/v6_send_reset return
        // at once. Only their kprobes see these calls.
        return Ok(());
    }
    event.flow.netns = if sk != 0 {
        sock::netns(sk)?
    } else if event.flow.netns != 0 {
        // The hook knew it (netfilter's `net` argument).
        event.flow.netns
    } else {
        segment_netns
    };
    let flow = &event.flow;

    let listener = if !full || state == listen {
        owner::listener(flow.netns, flow.local_port)
    } else {
        ptr::null()
    };
    let mut owner: *const OwnerRecord = if full {
        owner::socket_owner(sk, flow, now)
    } else {
        owner::flow_owner(flow, now)
    };
    if owner.is_null() && state == listen && !listener.is_null() {
        // SAFETY: a non-null map value pointer, valid for this program run.
        owner = unsafe { &raw const (*listener).owner };
    }
    emit::submit(event, EventKind::ResetSent, now, owner, listener);
    Ok(())
}

/// `tcp:tcp_receive_reset`.
pub fn on_receive_reset_tp(ctx: &TracePointContext) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::ResetReceived) {
        return Ok(());
    }
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostResetReceived);
        return Ok(());
    };
    kstack::record(ctx, slot.event());
    counted(receive_reset_tp(ctx, slot.event()))
}

fn receive_reset_tp(ctx: &TracePointContext, event: &mut TcpEvent) -> Result<(), ReadError> {
    let sk: u64 = tp(ctx, config!(receive_reset.skaddr))?;
    let fam = match tp_uint(ctx, config!(receive_reset.family)) {
        Ok(f) => f as u16,
        Err(_) => sock::family(sk)?,
    };
    tp_tuple::read_into(ctx, &tuple_fields!(receive_reset), fam, &mut event.flow)?;
    event.flow.netns = sock::netns(sk)?;
    event.new_state = sock::state(sk)?;
    event.family = fam;
    event.hook = Hook::TcpReceiveResetTp as u8;
    event.flags |= flags::FULL_SOCKET | flags::WANT_TCP_STATS;
    event.skaddr = sk;
    let now = owner::now_ns();
    let owner = owner::socket_owner(sk, &event.flow, now);
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
