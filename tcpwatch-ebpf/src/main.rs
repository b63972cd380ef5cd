//! tcpwatch's kernel programs, built for `bpfel-unknown-none` by `tcpwatch/build.rs`
//! and embedded in the `tcpwatch` binary.
//!
//! Each program here is a thin entry point; the work is in the module named after
//! the kernel concept it handles:
//! - [`state`]: `sock:inet_sock_set_state`, owner capture at process-context moments.
//! - [`reset`]: resets sent (`tcp:tcp_send_reset`, or kprobes on
//!   `tcp_v4_send_reset`/`tcp_v6_send_reset`/`tcp_send_active_reset` on kernels
//!   whose tracepoint misses socket-less resets), resets netfilter builds for
//!   `REJECT --reject-with tcp-reset` (kprobes on `nf_send_reset`/`nf_send_reset6`),
//!   and resets received (`tcp:tcp_receive_reset`).
//! - [`kstack`]: the kernel stack of each reset, with `--kstack`.
//! - [`accept`]: `syscalls:sys_exit_accept4`/`sys_exit_accept`, owner of accepted sockets.
//! - [`drop`]: `skb:kfree_skb`, TCP segments dropped with the kernel's reason (opt-in).
//! - [`listen`]: `syscalls:sys_enter_listen`, the backlog each program asked for.
//! - [`app_error`]: `sock:sock_recv_length`/`sock_send_length` and
//!   `syscalls:sys_exit_connect`, socket calls that failed with a reset's or a
//!   timeout's error: what the application saw (opt-in).
//!
//! Kernel struct offsets, tracepoint field offsets and TCP state numbers are not
//! compiled in: user space resolves them from BTF and tracefs and sets
//! `TCPWATCH_CONFIG` before load.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod accept;
#[cfg(target_arch = "bpf")]
mod app_error;
#[cfg(target_arch = "bpf")]
mod config;
#[cfg(target_arch = "bpf")]
mod drop;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod filter;
#[cfg(target_arch = "bpf")]
mod kmem;
#[cfg(target_arch = "bpf")]
mod kstack;
mod listen;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod owner;
#[cfg(target_arch = "bpf")]
mod reset;
#[cfg(target_arch = "bpf")]
mod skb;
#[cfg(target_arch = "bpf")]
mod sock;
#[cfg(target_arch = "bpf")]
mod state;
#[cfg(target_arch = "bpf")]
mod storm;
#[cfg(target_arch = "bpf")]
mod tp_tuple;

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext,
        macros::{kprobe, tracepoint},
        programs::{ProbeContext, TracePointContext},
    };
    use aya_log_ebpf::debug;

    use crate::{accept, app_error, drop, kmem::ReadError, listen, reset, state};

    /// Logs a failed run at debug level (off unless `tcpwatch trace --bpf-log`).
    #[inline(always)]
    fn log_failure<C: EbpfContext>(ctx: &C, hook: &str, result: Result<(), ReadError>) -> u32 {
        if let Err(e) = result {
            log_read_error(ctx, hook, e);
        }
        0
    }

    /// Out of line so the log record's stack stays off the hooks' frames.
    #[inline(never)]
    fn log_read_error<C: EbpfContext>(ctx: &C, hook: &str, error: ReadError) {
        debug!(ctx, "{}: kernel read failed ({})", hook, error.describe());
    }

    /// `sock:inet_sock_set_state`.
    #[tracepoint]
    pub fn tcpwatch_state(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "inet_sock_set_state", state::on_set_state(&ctx))
    }

    /// `tcp:tcp_send_reset`.
    #[tracepoint]
    pub fn tcpwatch_send_reset(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "tcp_send_reset", reset::on_send_reset_tp(&ctx))
    }

    /// `tcp:tcp_receive_reset`.
    #[tracepoint]
    pub fn tcpwatch_receive_reset(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "tcp_receive_reset", reset::on_receive_reset_tp(&ctx))
    }

    /// `syscalls:sys_exit_accept4`.
    #[tracepoint]
    pub fn tcpwatch_accept4_exit(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "sys_exit_accept4", accept::on_accept_exit(&ctx, true))
    }

    /// `syscalls:sys_exit_accept`.
    #[tracepoint]
    pub fn tcpwatch_accept_exit(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "sys_exit_accept", accept::on_accept_exit(&ctx, false))
    }

    /// `skb:kfree_skb`.
    #[tracepoint]
    pub fn tcpwatch_kfree_skb(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "kfree_skb", drop::on_kfree_skb(&ctx))
    }

    /// `syscalls:sys_enter_listen`.
    #[tracepoint]
    pub fn tcpwatch_listen_enter(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "sys_enter_listen", listen::on_listen_enter(&ctx))
    }

    /// `sock:sock_recv_length`.
    #[tracepoint]
    pub fn tcpwatch_recv_length(ctx: TracePointContext) -> u32 {
        log_failure(
            &ctx,
            "sock_recv_length",
            app_error::on_msg_length(&ctx, false),
        )
    }

    /// `sock:sock_send_length`.
    #[tracepoint]
    pub fn tcpwatch_send_length(ctx: TracePointContext) -> u32 {
        log_failure(
            &ctx,
            "sock_send_length",
            app_error::on_msg_length(&ctx, true),
        )
    }

    /// `syscalls:sys_exit_connect`.
    #[tracepoint]
    pub fn tcpwatch_connect_exit(ctx: TracePointContext) -> u32 {
        log_failure(&ctx, "sys_exit_connect", app_error::on_connect_exit(&ctx))
    }

    /// kprobe `tcp_v4_send_reset(const struct sock *sk, struct sk_buff *skb, ...)`.
    #[kprobe]
    pub fn tcpwatch_v4_send_reset(ctx: ProbeContext) -> u32 {
        log_failure(
            &ctx,
            "tcp_v4_send_reset",
            reset::on_send_reset_kprobe(&ctx, false),
        )
    }

    /// kprobe `tcp_v6_send_reset(const struct sock *sk, struct sk_buff *skb, ...)`.
    #[kprobe]
    pub fn tcpwatch_v6_send_reset(ctx: ProbeContext) -> u32 {
        log_failure(
            &ctx,
            "tcp_v6_send_reset",
            reset::on_send_reset_kprobe(&ctx, true),
        )
    }

    /// kprobe `nf_send_reset(struct net *net, struct sock *sk, struct sk_buff *oldskb, int hook)`.
    #[kprobe]
    pub fn tcpwatch_nf_send_reset(ctx: ProbeContext) -> u32 {
        log_failure(
            &ctx,
            "nf_send_reset",
            reset::on_nf_send_reset_kprobe(&ctx, false),
        )
    }

    /// kprobe `nf_send_reset6(struct net *net, struct sock *sk, struct sk_buff *oldskb, int hook)`.
    #[kprobe]
    pub fn tcpwatch_nf_send_reset6(ctx: ProbeContext) -> u32 {
        log_failure(
            &ctx,
            "nf_send_reset6",
            reset::on_nf_send_reset_kprobe(&ctx, true),
        )
    }

    /// kprobe `tcp_send_active_reset(struct sock *sk, gfp_t priority, ...)`.
    #[kprobe]
    pub fn tcpwatch_active_reset(ctx: ProbeContext) -> u32 {
        log_failure(
            &ctx,
            "tcp_send_active_reset",
            reset::on_active_reset_kprobe(&ctx),
        )
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; it is never executed.
    loop {}
}

/// License of the programs: the helpers they call (`bpf_probe_read_kernel`, ring
/// buffers) are GPL-only.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // Host builds (e.g. `cargo check --workspace`) compile nothing: these programs
    // only exist for the bpf target.
}
