//! Ring-buffer records.

use crate::{
    flow::FlowKey,
    owner::{OwnerRecord, TaskIdent},
};

/// Kind of a record, [`EventHeader::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// A TCP state transition (`sock:inet_sock_set_state`).
    State = 1,
    /// This host sent a RST.
    ResetSent = 2,
    /// A socket on this host received a RST (`tcp:tcp_receive_reset`).
    ResetReceived = 3,
    /// The kernel dropped a TCP segment (`skb:kfree_skb`); `reason` holds the
    /// raw `enum skb_drop_reason`. Opt-in: never part of [`EventKind::ALL`].
    Drop = 4,
    /// A socket call of the owning process failed with an error a reset or a
    /// timeout explains (`sock:sock_recv_length`/`sock:sock_send_length`, 6.4+,
    /// and `syscalls:sys_exit_connect`): what the application saw. `reason` holds the errno (positive),
    /// `seg_len` the syscall number (or [`NO_SYSCALL`]). Opt-in, like drops.
    AppError = 5,
}

/// [`TcpEvent::seg_len`] of an [`EventKind::AppError`] whose syscall is unknown.
pub const NO_SYSCALL: u32 = u32::MAX;

impl EventKind {
    /// The kinds `--kind all` means, in wire order. [`EventKind::Drop`] and
    /// [`EventKind::AppError`] are not among them: their hooks run for every
    /// packet the kernel frees and every socket read and write, so they are
    /// asked for by name.
    pub const ALL: [EventKind; 3] = [Self::State, Self::ResetSent, Self::ResetReceived];

    /// Decodes a raw kind byte.
    pub fn from_raw(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::State,
            2 => Self::ResetSent,
            3 => Self::ResetReceived,
            4 => Self::Drop,
            5 => Self::AppError,
            _ => return None,
        })
    }

    /// The bit of this kind in [`crate::filter::FilterConfig::kinds`].
    pub const fn mask(self) -> u32 {
        1 << (self as u8)
    }
}

/// Which kernel hook produced an event, [`TcpEvent::hook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Hook {
    /// Tracepoint `sock:inet_sock_set_state`.
    InetSockSetState = 1,
    /// Tracepoint `tcp:tcp_send_reset`.
    TcpSendResetTp = 2,
    /// Tracepoint `tcp:tcp_receive_reset`.
    TcpReceiveResetTp = 3,
    /// kprobe on `tcp_v4_send_reset`.
    TcpV4SendResetKprobe = 4,
    /// kprobe on `tcp_v6_send_reset`.
    TcpV6SendResetKprobe = 5,
    /// kprobe on `tcp_send_active_reset`.
    TcpSendActiveResetKprobe = 6,
    /// Tracepoint `skb:kfree_skb`.
    KfreeSkbTp = 7,
    /// kprobe on `nf_send_reset`: netfilter `REJECT --reject-with tcp-reset`, IPv4.
    NfSendResetKprobe = 8,
    /// kprobe on `nf_send_reset6`: the same for IPv6.
    NfSendReset6Kprobe = 9,
    /// Tracepoint `sock:sock_recv_length`: a receive call returned.
    SockRecvLengthTp = 10,
    /// Tracepoint `sock:sock_send_length`: a send call returned.
    SockSendLengthTp = 11,
    /// Tracepoint `syscalls:sys_exit_connect`: a `connect()` returned.
    SysExitConnectTp = 12,
}

impl Hook {
    /// Decodes a raw hook byte.
    pub fn from_raw(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::InetSockSetState,
            2 => Self::TcpSendResetTp,
            3 => Self::TcpReceiveResetTp,
            4 => Self::TcpV4SendResetKprobe,
            5 => Self::TcpV6SendResetKprobe,
            6 => Self::TcpSendActiveResetKprobe,
            7 => Self::KfreeSkbTp,
            8 => Self::NfSendResetKprobe,
            9 => Self::NfSendReset6Kprobe,
            10 => Self::SockRecvLengthTp,
            11 => Self::SockSendLengthTp,
            12 => Self::SysExitConnectTp,
            _ => return None,
        })
    }

    /// The hook's name as users see it in `tcpwatch probes` and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::InetSockSetState => "tracepoint:sock:inet_sock_set_state",
            Self::TcpSendResetTp => "tracepoint:tcp:tcp_send_reset",
            Self::TcpReceiveResetTp => "tracepoint:tcp:tcp_receive_reset",
            Self::TcpV4SendResetKprobe => "kprobe:tcp_v4_send_reset",
            Self::TcpV6SendResetKprobe => "kprobe:tcp_v6_send_reset",
            Self::TcpSendActiveResetKprobe => "kprobe:tcp_send_active_reset",
            Self::KfreeSkbTp => "tracepoint:skb:kfree_skb",
            Self::NfSendResetKprobe => "kprobe:nf_send_reset",
            Self::NfSendReset6Kprobe => "kprobe:nf_send_reset6",
            Self::SockRecvLengthTp => "tracepoint:sock:sock_recv_length",
            Self::SockSendLengthTp => "tracepoint:sock:sock_send_length",
            Self::SysExitConnectTp => "tracepoint:syscalls:sys_exit_connect",
        }
    }

    /// Whether the hook sees resets built by netfilter, not by TCP.
    pub fn is_netfilter(self) -> bool {
        matches!(self, Self::NfSendResetKprobe | Self::NfSendReset6Kprobe)
    }
}

/// Bits of [`TcpEvent::flags`].
pub mod flags {
    /// `reason` holds a kernel `enum sk_rst_reason` value (for
    /// [`super::EventKind::Drop`]: an `enum skb_drop_reason` value).
    pub const HAS_REASON: u8 = 1 << 0;
    /// `owner` is valid.
    pub const HAS_OWNER: u8 = 1 << 1;
    /// `listener` is valid.
    pub const HAS_LISTENER: u8 = 1 << 2;
    /// `seg_flags`/`seg_len` describe the incoming segment that triggered a reset.
    pub const HAS_SEGMENT: u8 = 1 << 3;
    /// `skaddr` is a full socket (not NULL, not a TIME_WAIT or request mini-socket).
    pub const FULL_SOCKET: u8 = 1 << 4;
    /// `tcp` holds the socket's idle time and byte counters.
    pub const HAS_TCP_STATS: u8 = 1 << 5;
    /// Kernel side only, cleared before the event is written: read the
    /// socket's idle time and byte counters for this event.
    pub const WANT_TCP_STATS: u8 = 1 << 6;
    /// `kstack` is an id in the `KSTACKS` stack-trace map (`--kstack`).
    pub const HAS_KSTACK: u8 = 1 << 7;
}

/// Activity of a full TCP socket at the time of the event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Microseconds since the socket last sent or received anything
    /// (`tcp_sock.tcp_mstamp`): how long it had been idle.
    pub idle_us: u64,
    /// Payload bytes received (`tcp_sock.bytes_received`).
    pub bytes_received: u64,
    /// Payload bytes sent and acknowledged by the peer (`tcp_sock.bytes_acked`).
    pub bytes_acked: u64,
    /// Segments retransmitted over the connection's life (`tcp_sock.total_retrans`).
    pub total_retrans: u32,
    /// The socket's `TCP_USER_TIMEOUT` in ms (`icsk_user_timeout`; 0: not set).
    pub user_timeout_ms: u32,
    /// Retransmission timeouts in a row without an ACK (`icsk_retransmits`).
    pub retransmits: u8,
    /// Keep-alive or zero-window probes sent without an answer (`icsk_probes_out`).
    pub probes_out: u8,
    /// Exponential backoff of the retransmission timer (`icsk_backoff`).
    pub backoff: u8,
    /// The error the socket holds for its owner (`sk_err`, an errno; 0: none):
    /// what its next call returns.
    pub sk_err: u8,
    /// The last soft error, e.g. an ICMP unreachable while retransmitting
    /// (`sk_err_soft`, an errno; 0: none).
    pub sk_err_soft: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<TcpStats>() == 40);

/// Common header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// Raw [`EventKind`].
    pub kind: u8,
    /// [`crate::ABI_VERSION`] of the program that wrote the record.
    pub version: u8,
    /// Size of the whole record in bytes.
    pub size: u16,
    /// CPU the hook ran on.
    pub cpu: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the hook.
    pub ts_ns: u64,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

/// One TCP event: a state transition, a reset sent or received, or a segment
/// the kernel dropped.
///
/// The flow is always the local socket's view ([`FlowKey`]): for a reset this host
/// sent, `local` is the sender; for a reset received, `local` is the receiver;
/// for a drop, `local` is the dropped segment's destination (`skb` holds it,
/// `seg_flags`/`seg_len` describe it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpEvent {
    /// Common header.
    pub header: EventHeader,
    /// The connection.
    pub flow: FlowKey,
    /// Address family of the socket (or of the segment when there is no socket).
    pub family: u16,
    /// Raw [`Hook`].
    pub hook: u8,
    /// Bits from [`flags`].
    pub flags: u8,
    /// State before the transition (state events only; kernel numbering).
    pub old_state: u8,
    /// State after the transition, or for resets the socket's state when the reset
    /// was sent or received (0 when there is no socket). Kernel numbering.
    pub new_state: u8,
    /// TCP flags byte (CWR..FIN) of the incoming segment, if `HAS_SEGMENT`.
    pub seg_flags: u8,
    /// Explicit padding, always zero.
    pub _pad: u8,
    /// Raw `enum sk_rst_reason` (drops: `enum skb_drop_reason`), if `HAS_REASON`.
    /// For the netfilter hooks ([`Hook::is_netfilter`]): the raw `enum nf_inet_hooks`
    /// of the rule. For [`EventKind::AppError`]: the errno the call returned
    /// (positive).
    pub reason: u32,
    /// Payload bytes of the incoming segment, if `HAS_SEGMENT`. For
    /// [`EventKind::AppError`]: the number of the failed syscall, or
    /// [`NO_SYSCALL`].
    pub seg_len: u32,
    /// Kernel address of the socket (full, TIME_WAIT or listener), or 0.
    pub skaddr: u64,
    /// Kernel address of the incoming segment's skb, or 0.
    pub skbaddr: u64,
    /// Owner of the socket, if `HAS_OWNER`.
    pub owner: OwnerRecord,
    /// For resets without a full socket: the owner of the listener on the local
    /// port in that namespace, if `HAS_LISTENER`.
    pub listener: OwnerRecord,
    /// The task on the CPU when the hook fired. For [`EventKind::AppError`]
    /// (process context, the caller's own syscall) it is the task that got
    /// the error.
    pub actor: TaskIdent,
    /// Socket activity, if `HAS_TCP_STATS` (full sockets only).
    pub tcp: TcpStats,
    /// Id of the kernel stack of the path that built or took the reset in
    /// the `KSTACKS` map, if `HAS_KSTACK`.
    pub kstack: u32,
    /// Explicit padding, always zero.
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<TcpEvent>() == 304);
const _: () = assert!(core::mem::align_of::<TcpEvent>() <= 8);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays, explicit padding (size asserted).
unsafe impl aya::Pod for EventHeader {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays, explicit padding (size asserted).
unsafe impl aya::Pod for TcpEvent {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding (size asserted).
unsafe impl aya::Pod for TcpStats {}
