//! Reading `struct sock_common` (shared by full, TIME_WAIT and request sockets).

use tcpwatch_common::{
    event::TcpStats,
    family,
    flow::{FlowKey, map_v4},
    layout::ABSENT,
};

use crate::{
    config::config,
    kmem::{ReadError, read},
};

/// Network-namespace inode of a socket (`sk->__sk_common.skc_net.net->ns.inum`).
#[inline(always)]
pub fn netns(sk: u64) -> Result<u32, ReadError> {
    if config!(kernel.skc_net) == ABSENT || config!(kernel.net_ns_inum) == ABSENT {
        // No BTF: the namespace is unknown, not an error.
        return Ok(0);
    }
    let net: u64 = read(sk, config!(kernel.skc_net))?;
    read(net, config!(kernel.net_ns_inum))
}

/// The socket's TCP state (`skc_state`).
#[inline(always)]
pub fn state(sk: u64) -> Result<u8, ReadError> {
    if config!(kernel.skc_state) == ABSENT {
        // No BTF: 0 is no TCP state; user space shows it as unknown.
        return Ok(0);
    }
    read(sk, config!(kernel.skc_state))
}

/// The socket's address family (`skc_family`).
#[inline(always)]
pub fn family(sk: u64) -> Result<u16, ReadError> {
    read(sk, config!(kernel.skc_family))
}

/// The socket's flow (local/remote addresses and ports, netns) and family.
#[inline(always)]
pub fn flow(sk: u64) -> Result<(FlowKey, u16), ReadError> {
    let fam = family(sk)?;
    let local_port: u16 = read(sk, config!(kernel.skc_num))?;
    let remote_port: u16 = u16::from_be(read(sk, config!(kernel.skc_dport))?);
    let (local_addr, remote_addr) = if fam == family::INET6 {
        (
            read::<[u8; 16]>(sk, config!(kernel.skc_v6_rcv_saddr))?,
            read::<[u8; 16]>(sk, config!(kernel.skc_v6_daddr))?,
        )
    } else {
        (
            map_v4(read::<[u8; 4]>(sk, config!(kernel.skc_rcv_saddr))?),
            map_v4(read::<[u8; 4]>(sk, config!(kernel.skc_daddr))?),
        )
    };
    Ok((
        FlowKey {
            local_addr,
            remote_addr,
            netns: netns(sk)?,
            local_port,
            remote_port,
        },
        fam,
    ))
}

/// Activity of a full TCP socket: idle time (from `tcp_mstamp`, microseconds of
/// the same monotonic clock as `bpf_ktime_get_ns`) and payload byte counters.
#[inline(always)]
pub fn tcp_stats(sk: u64, now_ns: u64) -> Result<TcpStats, ReadError> {
    let last_us: u64 = read(sk, config!(kernel.tcp_mstamp))?;
    if last_us == 0 {
        // No segment sent or received yet (LISTEN, SYN_SENT): no idle time.
        return Err(ReadError::Absent);
    }
    Ok(TcpStats {
        idle_us: (now_ns / 1000).saturating_sub(last_us),
        bytes_received: read(sk, config!(kernel.tcp_bytes_received))?,
        bytes_acked: read(sk, config!(kernel.tcp_bytes_acked))?,
    })
}
