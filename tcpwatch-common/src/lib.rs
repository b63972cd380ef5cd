//! Types shared by tcpwatch's kernel programs (`tcpwatch-ebpf`) and its user-space
//! daemon (`tcpwatch`). Every record that crosses the kernel/user boundary is defined
//! here, once: ring-buffer events, map keys and values, and the read-only
//! configuration user space hands to the programs before load.
//!
//! Rules for everything in this crate:
//! - `#[repr(C)]`, explicit padding, fixed-width integers only (no `bool`, `usize` or
//!   Rust enums cross the boundary), and a compile-time size check per type.
//! - Kernel facts that vary between releases (struct member offsets, tracepoint field
//!   offsets, TCP state numbers) are *not* constants here: user space resolves them at
//!   start-up from BTF and tracefs and passes them in [`config::ProgramConfig`].
//!
//! ```
//! use tcpwatch_common::event::{TcpEvent, EventKind};
//! assert_eq!(core::mem::size_of::<TcpEvent>(), 304);
//! assert_eq!(EventKind::from_raw(2), Some(EventKind::ResetSent));
//! ```
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

pub mod config;
pub mod counters;
pub mod event;
pub mod filter;
pub mod flow;
pub mod layout;
pub mod limits;
pub mod owner;
pub mod storm;

/// Version of the wire format in [`event::EventHeader::version`]. Bump it with any
/// change to a type in this crate that the other side decodes.
pub const ABI_VERSION: u8 = 3;

/// Length of a task's command name in the kernel (`TASK_COMM_LEN`, UAPI-stable).
pub const COMM_LEN: usize = 16;

/// Address family numbers (UAPI `AF_INET`/`AF_INET6`, stable across kernels).
pub mod family {
    /// IPv4.
    pub const INET: u16 = 2;
    /// IPv6.
    pub const INET6: u16 = 10;
}

/// `IPPROTO_TCP` (UAPI).
pub const IPPROTO_TCP: u16 = 6;
