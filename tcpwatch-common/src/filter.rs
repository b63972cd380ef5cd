//! In-kernel filters. Cheap checks (kind, netns, comm) live in the read-only
//! config; sets (ports, pids, address prefixes) live in small hash/LPM maps.

use crate::{COMM_LEN, limits::FILTER_NETNS};

/// Bits of [`FilterConfig::active`]: which optional filters are on.
pub mod active {
    /// Match either port against the `FILTER_PORTS` set.
    pub const PORTS: u32 = 1 << 0;
    /// Match either address against the `FILTER_ADDRS` prefixes.
    pub const ADDRS: u32 = 1 << 1;
    /// Match the owner's or listener's pid against the `FILTER_PIDS` set.
    pub const PIDS: u32 = 1 << 2;
    /// Match the owner's or listener's comm against `FilterConfig::comm`.
    pub const COMM: u32 = 1 << 3;
    /// Match the network namespace against `FilterConfig::netns`.
    pub const NETNS: u32 = 1 << 4;
}

/// Filter settings, part of the read-only program config.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// Event kinds to emit: bit `1 << kind` (see `EventKind::mask`).
    pub kinds: u32,
    /// Bits from [`active`].
    pub active: u32,
    /// Network namespace inodes to keep (first `netns_count` entries).
    pub netns: [u32; FILTER_NETNS],
    /// Number of valid entries in `netns`.
    pub netns_count: u32,
    /// Command name to match (NUL-padded, compared over all 16 bytes).
    pub comm: [u8; COMM_LEN],
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            kinds: 0,
            active: 0,
            netns: [0; FILTER_NETNS],
            netns_count: 0,
            comm: [0; COMM_LEN],
        }
    }
}

const _: () = assert!(core::mem::size_of::<FilterConfig>() == 60);

/// Key of the address-prefix filter (an LPM trie over IPv4-mapped 16-byte
/// addresses; the trie's own key adds the prefix length in front).
pub type AddrKey = [u8; 16];

#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays, no padding (size asserted).
unsafe impl aya::Pod for FilterConfig {}
