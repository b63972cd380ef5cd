//! Storm mode: when events arrive faster than user space drains the ring buffer
//! (it is more than [`crate::config::ProgramConfig::storm_high_water`] bytes full,
//! or a write failed), the programs stop writing events and instead count them
//! in the kernel, per (kind, states, reason, owner, service port, namespace), in
//! the `AGGREGATES` map. User space turns the counts into "N events summarised"
//! records and ends storm mode (clears `STORM`) once the rate has fallen.

use crate::{flow::FlowKey, owner::OwnerRecord};

/// Bits of [`AggregateKey::flags`].
pub mod key_flags {
    /// `reason` holds a kernel `enum sk_rst_reason` value.
    pub const HAS_REASON: u8 = 1 << 0;
    /// `pid` is the socket's owner.
    pub const OWNER: u8 = 1 << 1;
    /// `pid` is the process listening on the port (resets without a socket).
    pub const LISTENER: u8 = 1 << 2;
    /// `port` is the local port (else the remote one).
    pub const LOCAL_PORT: u8 = 1 << 3;
    /// `seg_flags` holds the TCP flags of the segment a reset answered.
    pub const HAS_SEGMENT: u8 = 1 << 4;
}

/// Key of the `AGGREGATES` map: what a summarised event was.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AggregateKey {
    /// Raw [`crate::event::EventKind`].
    pub kind: u8,
    /// State before the transition (state events), else 0.
    pub old_state: u8,
    /// State after the transition, or the socket's state at a reset.
    pub new_state: u8,
    /// Bits from [`key_flags`].
    pub flags: u8,
    /// Raw `enum sk_rst_reason`, if `HAS_REASON`.
    pub reason: u32,
    /// Network namespace inode.
    pub netns: u32,
    /// Owner (or listener) process id, 0 when none.
    pub pid: u32,
    /// The service port: the lower of the flow's two ports.
    pub port: u16,
    /// TCP flags byte of the incoming segment, if `HAS_SEGMENT`.
    pub seg_flags: u8,
    /// Explicit padding, always zero.
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<AggregateKey>() == 20);

/// Value of the `AGGREGATES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregateValue {
    /// Events counted under the key since it was created.
    pub count: u64,
    /// `bpf_ktime_get_ns()` of the first and the latest.
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
    /// The latest event's flow.
    pub example: FlowKey,
    /// The owner (or listener) record, if the key has one.
    pub owner: OwnerRecord,
}

const _: () = assert!(core::mem::size_of::<AggregateValue>() == 128);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding (size asserted).
unsafe impl aya::Pod for AggregateKey {}
#[cfg(feature = "user")]
// SAFETY: repr(C), Pod fields, no implicit padding (size asserted).
unsafe impl aya::Pod for AggregateValue {}
