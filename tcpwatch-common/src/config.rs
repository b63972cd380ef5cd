//! The read-only configuration global (`TCPWATCH_CONFIG`) that user space sets
//! before the programs are loaded.

use crate::{
    filter::FilterConfig,
    layout::{KernelLayout, TcpStates, TpLayout},
};

/// Name of the global in the eBPF object.
pub const CONFIG_SYMBOL: &str = "TCPWATCH_CONFIG";

/// Everything the programs need to know about the running kernel and the user's
/// filters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramConfig {
    /// Struct member offsets from BTF.
    pub kernel: KernelLayout,
    /// TCP state numbers from BTF.
    pub states: TcpStates,
    /// `sock:inet_sock_set_state` fields.
    pub set_state: TpLayout,
    /// `tcp:tcp_send_reset` fields.
    pub send_reset: TpLayout,
    /// `tcp:tcp_receive_reset` fields.
    pub receive_reset: TpLayout,
    /// `syscalls:sys_exit_accept4` fields.
    pub accept4_exit: TpLayout,
    /// `syscalls:sys_exit_accept` fields.
    pub accept_exit: TpLayout,
    /// How long an owner is kept after its socket closed, in nanoseconds.
    pub owner_grace_ns: u64,
    /// Output filters.
    pub filter: FilterConfig,
    /// Storm mode starts when the ring buffer holds this many unread bytes
    /// (0: only when a write fails). See [`crate::storm`].
    pub storm_high_water: u32,
    /// Bits of [`options`].
    pub options: u32,
    /// Where `nf_send_reset`/`nf_send_reset6` take their arguments.
    pub nf_reset: NfResetArgs,
    /// `skb:kfree_skb` fields.
    pub kfree_skb: TpLayout,
    /// `syscalls:sys_enter_listen` fields.
    pub listen_enter: TpLayout,
    /// `sock:sock_recv_length` fields (6.4+).
    pub recv_length: TpLayout,
    /// `sock:sock_send_length` fields (6.4+).
    pub send_length: TpLayout,
    /// `syscalls:sys_exit_connect` fields.
    pub connect_exit: TpLayout,
    /// Explicit padding, always zero.
    pub _pad: u32,
    /// The errnos a failed socket call is reported with (application errors),
    /// as a bit set: bit `e % 64` of word `e / 64`. Errnos of 128 and above are
    /// never reported.
    pub app_errnos: [u64; 2],
}

/// Argument positions of `nf_send_reset(struct net *net, struct sock *sk,
/// struct sk_buff *oldskb, int hook)` (and `nf_send_reset6`), from the
/// function's BTF prototype: they moved when `sk` was added (5.13).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NfResetArgs {
    /// `struct net *net`.
    pub net: u8,
    /// `struct sk_buff *oldskb`: the segment the rule rejected.
    pub oldskb: u8,
    /// `int hook`: the netfilter hook (`enum nf_inet_hooks`) of the rule.
    pub hook: u8,
    /// Explicit padding, always zero.
    pub _pad: u8,
}

/// Bits of [`ProgramConfig::options`].
pub mod options {
    /// Record the kernel stack of every reset (`--kstack`).
    pub const KSTACK: u32 = 1 << 0;
}

const _: () = assert!(
    core::mem::size_of::<ProgramConfig>() == 80 + 12 + 5 * 76 + 8 + 60 + 4 + 8 + 5 * 76 + 4 + 16
);
const _: () = assert!(core::mem::size_of::<NfResetArgs>() == 4);
const _: () = assert!(core::mem::size_of::<ProgramConfig>().is_multiple_of(8));

#[cfg(feature = "user")]
// SAFETY: repr(C), Pod fields only, explicit padding (size asserted).
unsafe impl aya::Pod for ProgramConfig {}
