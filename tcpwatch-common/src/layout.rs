//! Kernel layouts resolved by user space at start-up and handed to the programs.
//!
//! Nothing here is a constant: tracepoint field offsets come from tracefs `format`
//! files, struct member offsets from `/sys/kernel/btf/vmlinux`, and TCP state
//! numbers from the kernel's BTF enum. A field the running kernel does not have is
//! marked [`ABSENT`].

/// Marker for a field or member this kernel does not have.
pub const ABSENT: u16 = 0xffff;

/// One tracepoint field: byte offset in the record and size in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpField {
    /// Byte offset in the tracepoint record, or [`ABSENT`].
    pub offset: u16,
    /// Size in bytes (0 when absent).
    pub size: u16,
}

impl TpField {
    /// A field the tracepoint does not have.
    pub const ABSENT: TpField = TpField {
        offset: ABSENT,
        size: 0,
    };

    /// Whether the tracepoint has this field.
    #[inline(always)]
    pub fn present(&self) -> bool {
        self.offset != ABSENT
    }
}

impl Default for TpField {
    fn default() -> Self {
        Self::ABSENT
    }
}

/// Fields of the tracepoints tcpwatch reads. One struct serves every tracepoint;
/// each tracepoint fills the fields it has.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpLayout {
    /// `const void *skbaddr`.
    pub skbaddr: TpField,
    /// `const void *skaddr`.
    pub skaddr: TpField,
    /// `int state` (`tcp_send_reset`).
    pub state: TpField,
    /// `int oldstate` (`inet_sock_set_state`).
    pub oldstate: TpField,
    /// `int newstate` (`inet_sock_set_state`).
    pub newstate: TpField,
    /// `enum sk_rst_reason reason` (`tcp_send_reset`, 6.10+).
    pub reason: TpField,
    /// `__u16 sport` (host order).
    pub sport: TpField,
    /// `__u16 dport` (host order).
    pub dport: TpField,
    /// `__u16 family`.
    pub family: TpField,
    /// `__u16 protocol` (`__u8` before 5.6).
    pub protocol: TpField,
    /// `saddr`: `__u8[4]`, or `__u8[28]` holding a `sockaddr_in`/`sockaddr_in6`
    /// (`tcp_send_reset` 6.10+).
    pub saddr: TpField,
    /// `daddr`, as `saddr`.
    pub daddr: TpField,
    /// `__u8 saddr_v6[16]`.
    pub saddr_v6: TpField,
    /// `__u8 daddr_v6[16]`.
    pub daddr_v6: TpField,
    /// `long ret` (syscall exit tracepoints).
    pub ret: TpField,
    /// `void *rx_sk` (`skb:kfree_skb`, 6.12+): the socket that received the
    /// dropped segment, or NULL.
    pub rx_sk: TpField,
    /// `int fd` (`syscalls:sys_enter_listen`).
    pub fd: TpField,
    /// `int backlog` (`syscalls:sys_enter_listen`).
    pub backlog: TpField,
    /// `void *location` (`skb:kfree_skb`): where the packet was freed. Also
    /// keeps the size a multiple of 4 fields, so that the five layouts in
    /// the program config end 8-byte aligned.
    pub location: TpField,
}

const _: () = assert!(core::mem::size_of::<TpLayout>() == 76);

/// Byte offsets of kernel struct members, from BTF. Members nested in anonymous
/// unions/structs are flattened to their offset from the start of the outer struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// `sock_common.skc_family` (u16).
    pub skc_family: u16,
    /// `sock_common.skc_state` (u8).
    pub skc_state: u16,
    /// `sock_common.skc_num` (local port, host order, u16).
    pub skc_num: u16,
    /// `sock_common.skc_dport` (remote port, network order, u16).
    pub skc_dport: u16,
    /// `sock_common.skc_rcv_saddr` (IPv4 local, 4 bytes).
    pub skc_rcv_saddr: u16,
    /// `sock_common.skc_daddr` (IPv4 remote, 4 bytes).
    pub skc_daddr: u16,
    /// `sock_common.skc_v6_rcv_saddr` (16 bytes), or ABSENT without IPv6.
    pub skc_v6_rcv_saddr: u16,
    /// `sock_common.skc_v6_daddr` (16 bytes), or ABSENT without IPv6.
    pub skc_v6_daddr: u16,
    /// `sock_common.skc_net` (a `possible_net_t`: one `struct net *`).
    pub skc_net: u16,
    /// `net.ns.inum` (u32).
    pub net_ns_inum: u16,
    /// `sk_buff.head` (pointer).
    pub skb_head: u16,
    /// `sk_buff.network_header` (u16 offset from head).
    pub skb_network_header: u16,
    /// `sk_buff.transport_header` (u16 offset from head).
    pub skb_transport_header: u16,
    /// `sk_buff.dev` (pointer).
    pub skb_dev: u16,
    /// `net_device.nd_net` (a `possible_net_t`).
    pub dev_nd_net: u16,
    /// `task_struct.files` (pointer).
    pub task_files: u16,
    /// `files_struct.fdt` (pointer).
    pub files_fdt: u16,
    /// `fdtable.max_fds` (u32).
    pub fdt_max_fds: u16,
    /// `fdtable.fd` (pointer to array of `struct file *`).
    pub fdt_fd: u16,
    /// `file.private_data` (pointer; a `struct socket *` for sockets).
    pub file_private_data: u16,
    /// `socket.sk` (pointer).
    pub socket_sk: u16,
    /// `tcp_sock.tcp_mstamp` (u64, µs of the monotonic clock at the last send or
    /// receive processing).
    pub tcp_mstamp: u16,
    /// `tcp_sock.bytes_received` (u64).
    pub tcp_bytes_received: u16,
    /// `tcp_sock.bytes_acked` (u64).
    pub tcp_bytes_acked: u16,
    /// `task_struct.group_leader` (pointer): the process's main thread.
    pub task_group_leader: u16,
    /// `task_struct.comm` (`char[16]`).
    pub task_comm: u16,
    /// `inet_sock.inet_sport` (local port, network order, u16). Unlike
    /// `skc_num`, it survives `inet_put_port()`, which clears `skc_num` when a
    /// socket reaches CLOSE, just before an active reset is sent.
    pub inet_sport: u16,
    /// `sk_buff.sk` (pointer): the socket a segment belongs to (sender on the
    /// transmit path; set on receive by early demux or once queued).
    pub skb_sk: u16,
    /// `tcp_sock.total_retrans` (u32).
    pub tcp_total_retrans: u16,
    /// `inet_connection_sock.icsk_retransmits` (u8).
    pub icsk_retransmits: u16,
    /// `inet_connection_sock.icsk_probes_out` (u8).
    pub icsk_probes_out: u16,
    /// `inet_connection_sock.icsk_backoff` (u8).
    pub icsk_backoff: u16,
    /// `inet_connection_sock.icsk_user_timeout` (u32, ms).
    pub icsk_user_timeout: u16,
    /// `sock.sk_err` (int).
    pub sk_err: u16,
    /// `sock.sk_err_soft` (int).
    pub sk_err_soft: u16,
    /// The syscall number in the task's user `struct pt_regs` (`orig_ax` on
    /// x86-64, `syscallno` on arm64), or ABSENT on other architectures.
    pub pt_regs_syscall: u16,
    /// The syscall's first argument in the task's user `struct pt_regs` (`di`
    /// on x86-64, `orig_x0` on arm64), or ABSENT.
    pub pt_regs_arg0: u16,
    /// Explicit padding, always zero: keeps the size a multiple of 8.
    pub _pad: [u16; 3],
}

impl Default for KernelLayout {
    fn default() -> Self {
        Self {
            skc_family: ABSENT,
            skc_state: ABSENT,
            skc_num: ABSENT,
            skc_dport: ABSENT,
            skc_rcv_saddr: ABSENT,
            skc_daddr: ABSENT,
            skc_v6_rcv_saddr: ABSENT,
            skc_v6_daddr: ABSENT,
            skc_net: ABSENT,
            net_ns_inum: ABSENT,
            skb_head: ABSENT,
            skb_network_header: ABSENT,
            skb_transport_header: ABSENT,
            skb_dev: ABSENT,
            dev_nd_net: ABSENT,
            task_files: ABSENT,
            files_fdt: ABSENT,
            fdt_max_fds: ABSENT,
            fdt_fd: ABSENT,
            file_private_data: ABSENT,
            socket_sk: ABSENT,
            tcp_mstamp: ABSENT,
            tcp_bytes_received: ABSENT,
            tcp_bytes_acked: ABSENT,
            task_group_leader: ABSENT,
            task_comm: ABSENT,
            inet_sport: ABSENT,
            skb_sk: ABSENT,
            tcp_total_retrans: ABSENT,
            icsk_retransmits: ABSENT,
            icsk_probes_out: ABSENT,
            icsk_backoff: ABSENT,
            icsk_user_timeout: ABSENT,
            sk_err: ABSENT,
            sk_err_soft: ABSENT,
            pt_regs_syscall: ABSENT,
            pt_regs_arg0: ABSENT,
            _pad: [0; 3],
        }
    }
}

const _: () = assert!(core::mem::size_of::<KernelLayout>() == 80);

/// The kernel's TCP state numbers (`TCP_ESTABLISHED`, ...), from BTF. The programs
/// recognise process-context transitions by these, so they are configuration, not
/// constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStates {
    /// `TCP_ESTABLISHED`.
    pub established: u8,
    /// `TCP_SYN_SENT`.
    pub syn_sent: u8,
    /// `TCP_SYN_RECV`.
    pub syn_recv: u8,
    /// `TCP_FIN_WAIT1`.
    pub fin_wait1: u8,
    /// `TCP_FIN_WAIT2`.
    pub fin_wait2: u8,
    /// `TCP_TIME_WAIT`.
    pub time_wait: u8,
    /// `TCP_CLOSE`.
    pub close: u8,
    /// `TCP_CLOSE_WAIT`.
    pub close_wait: u8,
    /// `TCP_LAST_ACK`.
    pub last_ack: u8,
    /// `TCP_LISTEN`.
    pub listen: u8,
    /// `TCP_CLOSING`.
    pub closing: u8,
    /// `TCP_NEW_SYN_RECV`.
    pub new_syn_recv: u8,
}

const _: () = assert!(core::mem::size_of::<TcpStates>() == 12);

#[cfg(feature = "user")]
// SAFETY: repr(C), u16 fields only, no padding (size asserted).
unsafe impl aya::Pod for TpField {}
#[cfg(feature = "user")]
// SAFETY: repr(C), TpField fields only, no padding (size asserted).
unsafe impl aya::Pod for TpLayout {}
#[cfg(feature = "user")]
// SAFETY: repr(C), u16 fields only, no padding (size asserted).
unsafe impl aya::Pod for KernelLayout {}
#[cfg(feature = "user")]
// SAFETY: repr(C), u8 fields only (size asserted).
unsafe impl aya::Pod for TcpStates {}
