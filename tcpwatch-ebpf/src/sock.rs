//! Reading `struct sock_common` (shared by full, TIME_WAIT and request sockets).

use tcpwatch_common::{
    event::TcpStats,
    family,
    flow::{FlowKey, map_v4},
    layout::ABSENT,
};

use crate::{
    config::config,
    kmem::{ReadError, read, read_into},
};

/// Network-namespace inode of a socket (`sk->__sk_common.skc_net.net->ns.inum`).
#[inline(always)]
pub fn netns(sk: u64) -> Result<u32, ReadError> {
    if config!(kernel.skc_net) == ABSENT || config!(kernel.net_ns_inum) == ABSENT {
        // No BTF: the namespace is unknown, not an error.
        return Ok(0);
    }
    let net: u64 = read(sk, config!(kernel.skc_net))?;
    net_inum(net)
}

/// Inode of a `struct net` (`net->ns.inum`), 0 without BTF.
#[inline(always)]
pub fn net_inum(net: u64) -> Result<u32, ReadError> {
    if config!(kernel.net_ns_inum) == ABSENT {
        return Ok(0);
    }
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

/// Reads a full socket's flow (local/remote addresses and ports, netns) into
/// `flow`, in place, and returns its family.
#[inline(always)]
pub fn flow_into(sk: u64, flow: &mut FlowKey) -> Result<u16, ReadError> {
    let fam = family(sk)?;
    flow.local_port = read(sk, config!(kernel.skc_num))?;
    if flow.local_port == 0 {
        // A full socket that just reached CLOSE gave its port back
        // (`inet_put_port()` clears `skc_num`); its `inet_sport` still holds it.
        flow.local_port = u16::from_be(read(sk, config!(kernel.inet_sport))?);
    }
    flow.remote_port = u16::from_be(read(sk, config!(kernel.skc_dport))?);
    if fam == family::INET6 {
        read_into(&mut flow.local_addr, sk, config!(kernel.skc_v6_rcv_saddr))?;
        read_into(&mut flow.remote_addr, sk, config!(kernel.skc_v6_daddr))?;
    } else {
        flow.local_addr = map_v4(read::<[u8; 4]>(sk, config!(kernel.skc_rcv_saddr))?);
        flow.remote_addr = map_v4(read::<[u8; 4]>(sk, config!(kernel.skc_daddr))?);
    }
    flow.netns = netns(sk)?;
    Ok(fam)
}

/// Activity of a full TCP socket, written into `stats`: idle time (from
/// `tcp_mstamp`, microseconds of the same monotonic clock as
/// `bpf_ktime_get_ns`), payload byte counters, the retransmissions and
/// probes that went unanswered, and the error the socket holds.
#[inline(always)]
pub fn tcp_stats_into(sk: u64, now_ns: u64, stats: &mut TcpStats) -> Result<(), ReadError> {
    let last_us: u64 = read(sk, config!(kernel.tcp_mstamp))?;
    if last_us == 0 {
        // No segment sent or received yet (LISTEN, SYN_SENT): no idle time.
        return Err(ReadError::Absent);
    }
    stats.idle_us = (now_ns / 1000).saturating_sub(last_us);
    read_into(
        &mut stats.bytes_received,
        sk,
        config!(kernel.tcp_bytes_received),
    )?;
    read_into(&mut stats.bytes_acked, sk, config!(kernel.tcp_bytes_acked))?;
    // Extras: a kernel without one of them leaves it 0.
    stats.total_retrans = read(sk, config!(kernel.tcp_total_retrans)).unwrap_or(0);
    stats.user_timeout_ms = read(sk, config!(kernel.icsk_user_timeout)).unwrap_or(0);
    stats.retransmits = read(sk, config!(kernel.icsk_retransmits)).unwrap_or(0);
    stats.probes_out = read(sk, config!(kernel.icsk_probes_out)).unwrap_or(0);
    stats.backoff = read(sk, config!(kernel.icsk_backoff)).unwrap_or(0);
    stats.sk_err = errno_byte(read(sk, config!(kernel.sk_err)).unwrap_or(0));
    stats.sk_err_soft = errno_byte(read(sk, config!(kernel.sk_err_soft)).unwrap_or(0));
    Ok(())
}

/// A socket's `int` error as one byte (errnos are below 256; 0 otherwise).
#[inline(always)]
fn errno_byte(err: i32) -> u8 {
    u8::try_from(err).unwrap_or(0)
}
