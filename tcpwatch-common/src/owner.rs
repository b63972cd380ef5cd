//! Who owns a socket, and who was on the CPU.

use crate::COMM_LEN;

/// A task identity as captured in the kernel with `bpf_get_current_*` helpers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskIdent {
    /// Process id (the kernel's thread-group id, what `ps` shows).
    pub pid: u32,
    /// Thread id (the kernel's pid of the thread).
    pub tid: u32,
    /// Real user id.
    pub uid: u32,
    /// Explicit padding, always zero.
    pub _pad: u32,
    /// cgroup v2 id (inode of the cgroup directory).
    pub cgroup_id: u64,
    /// Command name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

const _: () = assert!(core::mem::size_of::<TaskIdent>() == 40);

/// How an owner record was learned. Raw values of [`OwnerRecord::source`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OwnerSource {
    /// The process called `connect()` on the socket (CLOSE→SYN_SENT).
    Connect = 1,
    /// The process called `listen()` (CLOSE→LISTEN).
    Listen = 2,
    /// The process `accept()`ed the socket (syscall exit).
    Accept = 3,
    /// The process closed or shut down the socket (ESTABLISHED→FIN_WAIT1,
    /// CLOSE_WAIT→LAST_ACK).
    Close = 4,
    /// Not accepted yet: inherited from the owner of the listening socket.
    Listener = 5,
    /// Found by the start-up census (sock_diag + /proc/PID/fd).
    Census = 6,
    /// Not in the owner tables: the process whose own call on the socket
    /// failed (it holds a descriptor of it).
    Caller = 7,
}

impl OwnerSource {
    /// Decodes a raw source byte.
    pub fn from_raw(raw: u8) -> Option<Self> {
        Some(match raw {
            1 => Self::Connect,
            2 => Self::Listen,
            3 => Self::Accept,
            4 => Self::Close,
            5 => Self::Listener,
            6 => Self::Census,
            7 => Self::Caller,
            _ => return None,
        })
    }
}

/// The process that owns a socket, as stored in the owner maps and carried in
/// events. `closed_ns` is non-zero once the socket has left the connection table
/// (it reached CLOSE); the record is then kept for a grace period so that late
/// segments (TIME_WAIT resets, no-socket resets) still find their owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerRecord {
    /// The owning task.
    pub task: TaskIdent,
    /// `bpf_ktime_get_ns()` when the record was made.
    pub since_ns: u64,
    /// `bpf_ktime_get_ns()` when the socket reached CLOSE, 0 while it lives.
    pub closed_ns: u64,
    /// Raw [`OwnerSource`].
    pub source: u8,
    /// Explicit padding, always zero.
    pub _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<OwnerRecord>() == 64);

/// Value of the listener map: the owner of a listening socket and the socket
/// itself (0 when it came from the census, which cannot see kernel pointers).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerRecord {
    /// Owner of the listening socket.
    pub owner: OwnerRecord,
    /// Kernel address of the listening socket, or 0.
    pub sk: u64,
}

const _: () = assert!(core::mem::size_of::<ListenerRecord>() == 72);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays, explicit padding (size asserted).
unsafe impl aya::Pod for TaskIdent {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays, explicit padding (size asserted).
unsafe impl aya::Pod for OwnerRecord {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays, explicit padding (size asserted).
unsafe impl aya::Pod for ListenerRecord {}
