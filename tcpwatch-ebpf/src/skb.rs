//! Parsing the incoming segment that triggered a reset from its `struct sk_buff`.
//!
//! IP and TCP header layouts are wire formats (RFC 791/8200/9293), not kernel
//! internals; only the `sk_buff` members come from BTF. Fields are read one by
//! one straight into the scratch event, so that no header copy sits on the BPF
//! stack.

use tcpwatch_common::{
    event::{TcpEvent, flags},
    family,
    flow::map_v4,
};

use crate::{
    config::config,
    kmem::{ReadError, read, read_at, read_into},
};

/// The TCP RST flag in the flags byte (RFC 9293).
pub const TCP_RST: u8 = 0x04;

/// Fills the segment fields of `event` (`seg_flags`, `seg_len`,
/// [`flags::HAS_SEGMENT`]) from `skb`; with `with_flow`, also `flow` (reversed
/// to the resetting host's view: `local` is the segment's destination) and
/// `family`. Returns the namespace of the device the segment arrived on, or 0.
#[inline(always)]
pub fn parse_into(skb: u64, event: &mut TcpEvent, with_flow: bool) -> Result<u32, ReadError> {
    let head: u64 = read(skb, config!(kernel.skb_head))?;
    let network: u16 = read(skb, config!(kernel.skb_network_header))?;
    let transport: u16 = read(skb, config!(kernel.skb_transport_header))?;
    if head == 0 || transport <= network {
        return Err(ReadError::Null);
    }
    let ip_at = head + u64::from(network);
    let tcp_at = head + u64::from(transport);
    let first: u8 = read_at(ip_at)?;
    let ip_total = match first >> 4 {
        4 => {
            if with_flow {
                event.flow.remote_addr = map_v4(read_at::<[u8; 4]>(ip_at + 12)?);
                event.flow.local_addr = map_v4(read_at::<[u8; 4]>(ip_at + 16)?);
                event.family = family::INET;
            }
            u32::from(u16::from_be(read_at(ip_at + 2)?))
        }
        6 => {
            if with_flow {
                read_into(&mut event.flow.remote_addr, ip_at, 8)?;
                read_into(&mut event.flow.local_addr, ip_at, 24)?;
                event.family = family::INET6;
            }
            // Payload length excludes the fixed 40-byte header.
            u32::from(u16::from_be(read_at(ip_at + 4)?)) + 40
        }
        _ => return Err(ReadError::Fault),
    };
    if with_flow {
        event.flow.remote_port = u16::from_be(read_at(tcp_at)?);
        event.flow.local_port = u16::from_be(read_at(tcp_at + 2)?);
    }
    let data_offset: u8 = read_at(tcp_at + 12)?;
    event.seg_flags = read_at(tcp_at + 13)?;
    let header_bytes = u32::from(transport - network) + u32::from(data_offset >> 4) * 4;
    event.seg_len = ip_total.saturating_sub(header_bytes);
    event.flags |= flags::HAS_SEGMENT;
    Ok(segment_netns(skb).unwrap_or(0))
}

/// Network namespace of the device the segment arrived on
/// (`skb->dev->nd_net.net->ns.inum`). `tcp_v4_rcv` clears `skb->dev` before
/// `tcp_v4_do_rcv`, so callers prefer the socket's namespace when there is one.
#[inline(always)]
fn segment_netns(skb: u64) -> Result<u32, ReadError> {
    let dev: u64 = read(skb, config!(kernel.skb_dev))?;
    let net: u64 = read(dev, config!(kernel.dev_nd_net))?;
    read(net, config!(kernel.net_ns_inum))
}
