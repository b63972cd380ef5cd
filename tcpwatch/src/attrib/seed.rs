//! Writes the start-up census into the kernel's owner maps, so sockets opened
//! before tcpwatch started are attributed like the others. Entries the programs
//! already made are newer and are kept (`BPF_NOEXIST`).

use aya::{
    Ebpf, Pod,
    maps::{HashMap, MapData, MapError},
};
use nix::errno::Errno;
use tcpwatch_common::{
    COMM_LEN,
    flow::{FlowKey, ListenKey, map_v4},
    owner::{ListenerRecord, OwnerRecord, OwnerSource, TaskIdent},
};

use super::census::{Census, CensusOwner, CensusSocket};

/// `BPF_NOEXIST`: create only.
const BPF_NOEXIST: u64 = 1;

/// What seeding did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedStats {
    /// Connections written to the flow-owner map.
    pub flows: usize,
    /// Listeners written to the listener map.
    pub listeners: usize,
    /// Sockets without an owning process (TIME_WAIT, orphans).
    pub unowned: usize,
    /// Entries the kernel already had.
    pub already_known: usize,
}

/// Seeds the owner maps from `census`. `listen_state` is the kernel's number for
/// `TCP_LISTEN`; `now_ns` the monotonic clock.
pub fn seed(
    ebpf: &mut Ebpf,
    census: &Census,
    listen_state: u8,
    now_ns: u64,
) -> Result<SeedStats, MapError> {
    let mut stats = SeedStats::default();
    let mut flows: HashMap<_, FlowKey, OwnerRecord> = HashMap::try_from(map(ebpf, "FLOW_OWNERS")?)?;
    let mut listeners = Vec::new();
    for socket in &census.sockets {
        let Some(owner) = &socket.owner else {
            stats.unowned += 1;
            continue;
        };
        let record = owner_record(owner, now_ns);
        if socket.state == listen_state {
            listeners.push((socket, record));
        } else if insert_new(&mut flows, flow_key(socket), record)? {
            stats.flows += 1;
        } else {
            stats.already_known += 1;
        }
    }
    let mut map: HashMap<_, ListenKey, ListenerRecord> =
        HashMap::try_from(map(ebpf, "LISTENERS")?)?;
    for (socket, owner) in listeners {
        let key = ListenKey {
            netns: socket.netns,
            port: socket.local.port(),
            _pad: 0,
        };
        if insert_new(&mut map, key, ListenerRecord { owner, sk: 0 })? {
            stats.listeners += 1;
        } else {
            stats.already_known += 1;
        }
    }
    Ok(stats)
}

fn map<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map, MapError> {
    ebpf.map_mut(name)
        .ok_or_else(|| MapError::InvalidName { name: name.into() })
}

/// Inserts unless the key exists; `false` when the kernel already had it.
fn insert_new<K: Pod, V: Pod>(
    map: &mut HashMap<&mut MapData, K, V>,
    key: K,
    value: V,
) -> Result<bool, MapError> {
    match map.insert(key, value, BPF_NOEXIST) {
        Ok(()) => Ok(true),
        Err(MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(Errno::EEXIST as i32) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn flow_key(socket: &CensusSocket) -> FlowKey {
    FlowKey {
        local_addr: mapped(socket.local.ip()),
        remote_addr: mapped(socket.remote.ip()),
        netns: socket.netns,
        local_port: socket.local.port(),
        remote_port: socket.remote.port(),
    }
}

fn mapped(ip: std::net::IpAddr) -> [u8; 16] {
    match ip {
        std::net::IpAddr::V4(v4) => map_v4(v4.octets()),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

fn owner_record(owner: &CensusOwner, now_ns: u64) -> OwnerRecord {
    let mut comm = [0u8; COMM_LEN];
    let bytes = owner.comm.as_bytes();
    let n = bytes.len().min(COMM_LEN - 1);
    comm[..n].copy_from_slice(&bytes[..n]);
    OwnerRecord {
        task: TaskIdent {
            pid: owner.pid,
            tid: owner.pid,
            uid: owner.uid,
            _pad: 0,
            cgroup_id: owner.cgroup_id,
            comm,
        },
        since_ns: now_ns,
        closed_ns: 0,
        source: OwnerSource::Census as u8,
        _pad: [0; 7],
    }
}
