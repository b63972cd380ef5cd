//! The benchmark floor (`cargo xtask bench`): on the same tracepoints as
//! tcpwatch, programs that do nothing but copy the first bytes of the
//! tracepoint record into a ring buffer, tcpwatch's own programs are measured
//! against them. `floor_*` submit with the default flags (the reader is woken
//! when it has caught up: per record at low rates); `quiet_*` never wake it
//! (their reader polls), as tcpwatch does until a batch has built up. Never
//! loaded by tcpwatch.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext,
        bindings::BPF_RB_NO_WAKEUP,
        helpers::bpf_probe_read_kernel_buf,
        macros::{map, tracepoint},
        maps::RingBuf,
        programs::TracePointContext,
    };

    /// Bytes copied from each record (the size of the largest record here,
    /// `tcp_send_reset` on 6.10+, rounded down to 8).
    const RECORD: usize = 88;

    #[map]
    static FLOOR_EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

    #[map]
    static QUIET_EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

    #[inline(always)]
    fn copy(ctx: &TracePointContext, ring: &RingBuf, flags: u64) -> u32 {
        if let Some(mut entry) = ring.reserve::<[u8; RECORD]>(0) {
            // SAFETY: the entry is RECORD bytes of ring-buffer memory reserved for
            // us; the context points at the tracepoint's record.
            let read =
                unsafe { bpf_probe_read_kernel_buf(ctx.as_ptr().cast(), &mut *entry.as_mut_ptr()) };
            match read {
                Ok(()) => entry.submit(flags),
                Err(_) => entry.discard(flags),
            }
        }
        0
    }

    /// `sock:inet_sock_set_state`.
    #[tracepoint]
    pub fn floor_state(ctx: TracePointContext) -> u32 {
        copy(&ctx, &FLOOR_EVENTS, 0)
    }

    /// `tcp:tcp_send_reset`.
    #[tracepoint]
    pub fn floor_send_reset(ctx: TracePointContext) -> u32 {
        copy(&ctx, &FLOOR_EVENTS, 0)
    }

    /// `tcp:tcp_receive_reset`.
    #[tracepoint]
    pub fn floor_receive_reset(ctx: TracePointContext) -> u32 {
        copy(&ctx, &FLOOR_EVENTS, 0)
    }

    /// `sock:inet_sock_set_state`, no wake-ups.
    #[tracepoint]
    pub fn quiet_state(ctx: TracePointContext) -> u32 {
        copy(&ctx, &QUIET_EVENTS, u64::from(BPF_RB_NO_WAKEUP))
    }

    /// `tcp:tcp_send_reset`, no wake-ups.
    #[tracepoint]
    pub fn quiet_send_reset(ctx: TracePointContext) -> u32 {
        copy(&ctx, &QUIET_EVENTS, u64::from(BPF_RB_NO_WAKEUP))
    }

    /// `tcp:tcp_receive_reset`, no wake-ups.
    #[tracepoint]
    pub fn quiet_receive_reset(ctx: TracePointContext) -> u32 {
        copy(&ctx, &QUIET_EVENTS, u64::from(BPF_RB_NO_WAKEUP))
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here.
    loop {}
}

/// GPL-only helpers (ring buffers, bpf_probe_read_kernel) need a GPL-compatible licence.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
