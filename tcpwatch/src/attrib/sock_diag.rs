//! Dumping TCP sockets with netlink `sock_diag` (`inet_diag_req_v2`) in the
//! calling thread's network namespace: the census and the periodic socket
//! sampler both use it.

use std::{io::ErrorKind, net::SocketAddr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, nlas::Nla},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};
use nix::sys::{
    socket::{setsockopt, sockopt::ReceiveTimeout},
    time::{TimeVal, TimeValLike},
};

/// Larger than the kernel's largest dump message batch (32 KiB).
const RECV_BUFFER: usize = 64 * 1024;
/// Bound on each netlink receive, so a stuck dump cannot hang tcpwatch.
const RECV_TIMEOUT_SECS: i64 = 5;
/// `struct tcp_info` (UAPI, append-only): byte offsets of the times we read.
const TCPI_LAST_DATA_RECV: usize = 52;
const TCPI_LAST_ACK_RECV: usize = 56;

/// One socket from a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// TCP state number (`idiag_state`, the kernel's numbering).
    pub state: u8,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// Socket inode; 0 for TIME_WAIT and request sockets.
    pub inode: u64,
    /// Socket uid.
    pub uid: u32,
    /// Socket cookie.
    pub cookie: u64,
    /// Bound interface index, 0 if none.
    pub interface: u32,
    /// Listeners: connections waiting in the accept queue. Others: bytes
    /// received and not yet read (`idiag_rqueue`).
    pub recv_queue: u32,
    /// Listeners: the accept queue's limit (the backlog, capped by somaxconn).
    /// Others: bytes not yet acknowledged (`idiag_wqueue`).
    pub send_queue: u32,
    /// With `tcp_info`: milliseconds since the last segment (data or ACK) from
    /// the peer.
    pub since_last_receive_ms: Option<u32>,
}

/// What to dump.
#[derive(Clone, Debug)]
pub struct Query {
    /// TCP states to include.
    pub states: StateFlags,
    /// Ask for `tcp_info` (costlier; full sockets only).
    pub tcp_info: bool,
}

impl Query {
    /// Every state (SYN_RECV makes the kernel include request sockets), no extras.
    pub fn all() -> Self {
        Self {
            states: StateFlags::all(),
            tcp_info: false,
        }
    }
}

/// Result of a dump.
#[derive(Debug, Default)]
pub struct Dump {
    /// Sockets, at most the budget.
    pub sockets: Vec<DiagSocket>,
    /// The budget was hit.
    pub truncated: bool,
    /// Messages that could not be decoded (skipped).
    pub undecodable: usize,
    /// Per-family failures (the other family may have worked).
    pub failures: Vec<String>,
}

/// Opens a sock_diag socket; fails if netlink is unusable altogether.
pub fn probe() -> std::io::Result<()> {
    Socket::new(NETLINK_SOCK_DIAG).map(drop)
}

/// Dumps TCP sockets of both families in the calling thread's namespace,
/// keeping at most `budget`. Errors only when both families fail.
pub fn dump(query: Query, budget: usize) -> Result<Dump, String> {
    let socket = open().map_err(|e| format!("netlink socket: {e}"))?;
    let mut dump = Dump::default();
    for family in [AF_INET, AF_INET6] {
        if let Err(e) = dump_family(&socket, family, &query, budget, &mut dump) {
            dump.failures.push(format!("family {family}: {e}"));
        }
        if dump.truncated {
            break;
        }
    }
    if dump.failures.len() == 2 {
        return Err(format!(
            "sock_diag dump failed: {}",
            dump.failures.join("; ")
        ));
    }
    Ok(dump)
}

/// A sock_diag socket in the calling thread's namespace, with a receive timeout.
fn open() -> std::io::Result<Socket> {
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    let timeout = TimeVal::seconds(RECV_TIMEOUT_SECS);
    setsockopt(&socket, ReceiveTimeout, &timeout).map_err(std::io::Error::from)?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    Ok(socket)
}

fn dump_family(
    socket: &Socket,
    family: u8,
    query: &Query,
    budget: usize,
    dump: &mut Dump,
) -> Result<(), String> {
    send_request(socket, family, query)?;
    let mut buf = Vec::with_capacity(RECV_BUFFER);
    loop {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err("timed out".into()),
            Err(e) => return Err(format!("receiving: {e}")),
        }
        if read_batch(&buf, budget, dump)? {
            return Ok(());
        }
    }
}

fn send_request(socket: &Socket, family: u8, query: &Query) -> Result<(), String> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let socket_id = if family == AF_INET6 {
        SocketId::new_v6()
    } else {
        SocketId::new_v4()
    };
    let request = InetRequest {
        family,
        protocol: IPPROTO_TCP,
        extensions: if query.tcp_info {
            ExtensionFlags::INFO
        } else {
            ExtensionFlags::empty()
        },
        states: query.states.clone(),
        socket_id,
    };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut bytes);
    socket
        .send(&bytes, 0)
        .map(drop)
        .map_err(|e| format!("sending the request: {e}"))
}

/// Decodes one received datagram. `Ok(true)` when the dump is over (or the budget hit).
fn read_batch(buf: &[u8], budget: usize, dump: &mut Dump) -> Result<bool, String> {
    let mut rest = buf;
    while !rest.is_empty() {
        let len = message_len(rest).ok_or("truncated netlink message")?;
        match NetlinkMessage::<SockDiagMessage>::deserialize(&rest[..len]) {
            Ok(message) => match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    if dump.sockets.len() >= budget {
                        dump.truncated = true;
                        return Ok(true);
                    }
                    dump.sockets.push(to_socket(&response));
                }
                NetlinkPayload::Done(_) => return Ok(true),
                NetlinkPayload::Error(e) => return Err(e.to_io().to_string()),
                NetlinkPayload::Overrun(_) => return Err("netlink overrun".into()),
                _ => {}
            },
            Err(_) => dump.undecodable += 1,
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(false)
}

/// Length of the netlink message at the start of `bytes`, if it is whole.
fn message_len(bytes: &[u8]) -> Option<usize> {
    let len = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    let len = usize::try_from(len).ok()?;
    (16..=bytes.len()).contains(&len).then_some(len)
}

fn to_socket(response: &InetResponse) -> DiagSocket {
    let header = &response.header;
    let id = &header.socket_id;
    let since_last_receive_ms = response.nlas.iter().find_map(|nla| match nla {
        Nla::TcpInfo(info) => {
            let at = |offset: usize| {
                info.get(offset..offset + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_ne_bytes)
            };
            Some(at(TCPI_LAST_DATA_RECV)?.min(at(TCPI_LAST_ACK_RECV)?))
        }
        _ => None,
    });
    DiagSocket {
        family: header.family.into(),
        state: header.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        inode: header.inode.into(),
        uid: header.uid,
        cookie: cookie(id.cookie),
        interface: id.interface_id,
        recv_queue: header.recv_queue,
        send_queue: header.send_queue,
        since_last_receive_ms,
    }
}

/// `idiag_cookie` is two native-endian u32 halves, low half first.
fn cookie(raw: [u8; 8]) -> u64 {
    let [a, b, c, d, e, f, g, h] = raw;
    u64::from(u32::from_ne_bytes([a, b, c, d])) | u64::from(u32::from_ne_bytes([e, f, g, h])) << 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_halves_are_native_u32s() {
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&0x89ab_cdefu32.to_ne_bytes());
        raw[4..].copy_from_slice(&0x0123_4567u32.to_ne_bytes());
        assert_eq!(cookie(raw), 0x0123_4567_89ab_cdef);
    }

    #[test]
    fn message_len_rejects_short_and_overlong() {
        assert_eq!(message_len(&[1, 0]), None);
        let mut msg = 20u32.to_ne_bytes().to_vec();
        msg.resize(20, 0);
        assert_eq!(message_len(&msg), Some(20));
        assert_eq!(message_len(&msg[..19]), None);
        assert_eq!(message_len(&[8, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
