//! What the application saw: a read, write or connect on a TCP socket that
//! failed with an error a reset, a timeout or an ICMP error left there
//! (`sock:sock_recv_length`, `sock:sock_send_length`, 6.4+, and
//! `syscalls:sys_exit_connect`, whose socket is found through the descriptor
//! in the task's saved first argument).
//!
//! The tracepoints fire on every socket receive and send of every protocol,
//! so they are attached only when asked for (`--kind app_error`), and a call
//! that did not fail, or failed with an errno not in the configured set, is
//! turned away after one read of the record. They run in the caller's own
//! syscall: the task on the CPU is the one that got the error, and the
//! socket's identity (`sk`) joins it to the flow and to the socket's owner.
//! The syscall is read from the task's user registers (`bpf_task_pt_regs`,
//! member offset from BTF).

use core::ptr;

use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    programs::TracePointContext,
};
use tcpwatch_common::{
    IPPROTO_TCP,
    counters::Counter,
    event::{EventKind, Hook, NO_SYSCALL, TcpEvent, flags},
    family,
    layout::TpLayout,
    owner::{OwnerRecord, OwnerSource},
};

use crate::{
    accept,
    config::config,
    emit::{self, Slot},
    filter,
    kmem::{ReadError, read, tp, tp_uint},
    maps::{FAILED_CONNECTS, count},
    owner, sock,
};

/// `sock:sock_recv_length` (`send == false`) or `sock:sock_send_length`.
pub fn on_msg_length(ctx: &TracePointContext, send: bool) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::AppError) {
        return Ok(());
    }
    let layout: TpLayout = if send {
        config!(send_length)
    } else {
        config!(recv_length)
    };
    let ret = tp_uint(ctx, layout.ret)? as u32 as i32;
    if ret >= 0 || !watched(ret.unsigned_abs()) {
        return Ok(());
    }
    if tp_uint(ctx, layout.protocol)? as u16 != IPPROTO_TCP {
        return Ok(());
    }
    let sk: u64 = tp(ctx, layout.skaddr)?;
    let Some(mut slot) = Slot::take() else {
        count(Counter::LostAppError);
        return Ok(());
    };
    let (event, caller) = slot.parts();
    event.skaddr = sk;
    event.reason = ret.unsigned_abs();
    event.seg_len = syscall_nr();
    event.hook = if send {
        Hook::SockSendLengthTp
    } else {
        Hook::SockRecvLengthTp
    } as u8;
    sock::flow_into(sk, &mut event.flow)
        .and_then(|fam| {
            event.family = fam;
            report(event, &mut caller.owner)
        })
        .inspect_err(|_| count(Counter::ReadErrors))
}

/// `syscalls:sys_exit_connect`.
pub fn on_connect_exit(ctx: &TracePointContext) -> Result<(), ReadError> {
    if !filter::kind_enabled(EventKind::AppError) {
        return Ok(());
    }
    let ret: i64 = tp(ctx, config!(connect_exit.ret))?;
    if ret >= 0 || ret < -127 || !watched(ret.unsigned_abs() as u32) {
        return Ok(());
    }
    let result = user_arg0().and_then(accept::socket_of_fd).and_then(|sk| {
        let fam = sock::family(sk)?;
        if fam != family::INET && fam != family::INET6 {
            return Ok(());
        }
        let Some(mut slot) = Slot::take() else {
            count(Counter::LostAppError);
            return Ok(());
        };
        let (event, caller) = slot.parts();
        event.skaddr = sk;
        event.reason = ret.unsigned_abs() as u32;
        event.seg_len = syscall_nr();
        event.hook = Hook::SysExitConnectTp as u8;
        event.family = fam;
        // The failure cleared the socket's addresses; its close kept them.
        if let Some(flow) = FAILED_CONNECTS.get_ptr(&sk) {
            // SAFETY: a map value pointer, valid for this program run.
            event.flow = unsafe { *flow };
            let _ = FAILED_CONNECTS.remove(&sk);
        } else {
            sock::flow_into(sk, &mut event.flow)?;
        }
        report(event, &mut caller.owner)
    });
    result.inspect_err(|_| count(Counter::ReadErrors))
}

/// Whether failed calls with `errno` are reported (the configured bit set).
#[inline(always)]
fn watched(errno: u32) -> bool {
    if errno >= 128 {
        return false;
    }
    let set = if errno < 64 {
        config!(app_errnos[0])
    } else {
        config!(app_errnos[1])
    };
    set & (1 << (errno % 64)) != 0
}

/// The number of the syscall the current task is in, or [`NO_SYSCALL`].
#[inline(always)]
fn syscall_nr() -> u32 {
    read::<u32>(user_regs(), config!(kernel.pt_regs_syscall)).unwrap_or(NO_SYSCALL)
}

/// The first argument of the syscall the current task is in.
#[inline(always)]
fn user_arg0() -> Result<u64, ReadError> {
    read::<u64>(user_regs(), config!(kernel.pt_regs_arg0))
}

/// The user registers the current task saved at its kernel entry.
#[inline(always)]
fn user_regs() -> u64 {
    // SAFETY: helpers without preconditions: the current task (never NULL in
    // a tracepoint) and its saved user registers.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
}

/// Completes a failed call's event whose `skaddr`, flow, `reason`, `seg_len`
/// and `hook` are filled: state and owner. A socket the owner tables do not
/// know (or no longer know: a failed connect closed it) belongs to the caller,
/// whose record is built in `caller` (map memory). Out of line: its frame does
/// not add to the hook's.
#[inline(never)]
fn report(event: &mut TcpEvent, caller: &mut OwnerRecord) -> Result<(), ReadError> {
    let sk = event.skaddr;
    event.new_state = sock::state(sk)?;
    event.flags |= flags::HAS_REASON | flags::FULL_SOCKET | flags::WANT_TCP_STATS;
    let now = owner::now_ns();
    let mut owner = owner::socket_owner(sk, &event.flow, now);
    if owner.is_null() {
        owner::fill_current_owner(caller, OwnerSource::Caller, now);
        owner = caller;
    }
    emit::submit(event, EventKind::AppError, now, owner, ptr::null());
    Ok(())
}
