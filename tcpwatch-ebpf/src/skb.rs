//! Parsing the incoming segment that triggered a reset from its `struct sk_buff`.
//!
//! IP and TCP header layouts are wire formats (RFC 791/8200/9293), not kernel
//! internals; only the `sk_buff` members come from BTF.

use tcpwatch_common::{
    family,
    flow::{FlowKey, map_v4},
};

use crate::{
    config::config,
    kmem::{ReadError, read, read_at},
};

/// The incoming segment, with its flow already reversed to the receiving (and
/// resetting) host's view: `local` is the segment's destination.
pub struct Segment {
    /// Flow from this host's view; `netns` from `skb->dev` when available, else 0.
    pub flow: FlowKey,
    /// `INET` or `INET6` from the IP version nibble.
    pub family: u16,
    /// TCP flags byte.
    pub tcp_flags: u8,
    /// TCP payload length in bytes.
    pub payload_len: u32,
}

/// Parses the IP and TCP headers of `skb`.
#[inline(always)]
pub fn parse(skb: u64) -> Result<Segment, ReadError> {
    let head: u64 = read(skb, config!(kernel.skb_head))?;
    let network: u16 = read(skb, config!(kernel.skb_network_header))?;
    let transport: u16 = read(skb, config!(kernel.skb_transport_header))?;
    if head == 0 || transport <= network {
        return Err(ReadError::Null);
    }
    let ip_at = head + u64::from(network);
    let first: u8 = read_at(ip_at)?;
    let (fam, src, dst, ip_total): (u16, [u8; 16], [u8; 16], u32) = match first >> 4 {
        4 => {
            let ip: [u8; 20] = read_at(ip_at)?;
            let total = u32::from(u16::from_be_bytes([ip[2], ip[3]]));
            (
                family::INET,
                map_v4([ip[12], ip[13], ip[14], ip[15]]),
                map_v4([ip[16], ip[17], ip[18], ip[19]]),
                total,
            )
        }
        6 => {
            let ip: [u8; 40] = read_at(ip_at)?;
            let payload = u32::from(u16::from_be_bytes([ip[4], ip[5]]));
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            (family::INET6, src, dst, payload + 40)
        }
        _ => return Err(ReadError::Fault),
    };
    let tcp: [u8; 20] = read_at(head + u64::from(transport))?;
    let header_bytes = u32::from(transport - network) + u32::from(tcp[12] >> 4) * 4;
    let netns = segment_netns(skb).unwrap_or(0);
    Ok(Segment {
        flow: FlowKey {
            local_addr: dst,
            remote_addr: src,
            netns,
            local_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            remote_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        },
        family: fam,
        tcp_flags: tcp[13],
        payload_len: ip_total.saturating_sub(header_bytes),
    })
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
