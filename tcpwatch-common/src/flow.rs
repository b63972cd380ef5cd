//! The flow key: one TCP connection, seen from the local socket.

/// A TCP flow as seen from this host: `local` is the socket on this host (for a
/// reset this host sent, the side that sent it), `remote` the peer.
///
/// Addresses are 16 bytes; IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`)
/// so that a dual-stack socket and an IPv4 segment for the same connection produce
/// the same key. Ports are in host byte order. Used both inside events and as the
/// key of the closed-flow owner map, so it has no padding holes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Local address (IPv4-mapped for IPv4).
    pub local_addr: [u8; 16],
    /// Remote address (IPv4-mapped for IPv4).
    pub remote_addr: [u8; 16],
    /// Inode number of the network namespace (`net->ns.inum`).
    pub netns: u32,
    /// Local port, host byte order.
    pub local_port: u16,
    /// Remote port, host byte order.
    pub remote_port: u16,
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Key of the listener map: a listening port in a network namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// Inode number of the network namespace.
    pub netns: u32,
    /// Listening port, host byte order.
    pub port: u16,
    /// Explicit padding, always zero.
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<ListenKey>() == 8);

/// Writes the IPv4-mapped form of `v4` (network byte order bytes) into a 16-byte
/// address.
#[inline(always)]
pub fn map_v4(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

#[cfg(feature = "user")]
// SAFETY: FlowKey is repr(C), made of integers and byte arrays, with no padding
// (checked by the size assertion above).
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, explicit padding field.
unsafe impl aya::Pod for ListenKey {}
