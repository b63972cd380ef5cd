//! The start-up census: every TCP socket that already exists, in every network
//! namespace, with the process that owns it.
//!
//! Sockets opened before tcpwatch started were never seen at their
//! `connect()`/`listen()`/`accept()`, so the kernel programs cannot attribute
//! them. The census finds them once at start-up:
//! 1. one walk of `/proc`: the network namespace of every thread
//!    (`/proc/PID/task/TID/ns/net`) and each process's socket descriptors (`/proc/PID/fd/N -> socket:[INODE]`);
//! 2. for each distinct namespace, a short-lived thread enters it (`setns` only
//!    affects the calling thread) and dumps TCP sockets of both families in all
//!    states with netlink `sock_diag` (tuple, state, inode, uid, cookie);
//! 3. socket inodes are joined with the descriptor table to find the owner.
//!
//! A socket held by several processes (after `fork`, or passed over a unix
//! socket) is attributed to the lowest pid, normally the parent that created it.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    thread,
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};
use nix::sched::{CloneFlags, setns};

/// One TCP socket found by the census.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CensusSocket {
    /// Inode of the network namespace.
    pub netns: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// TCP state number as sock_diag reports it (the kernel's numbering).
    pub state: u8,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// Socket inode; 0 for TIME_WAIT and request sockets.
    pub inode: u64,
    /// Socket owner uid.
    pub uid: u32,
    /// Socket cookie.
    pub cookie: u64,
    /// The owning process, if a process holds the socket.
    pub owner: Option<CensusOwner>,
}

/// The process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CensusOwner {
    /// Process id.
    pub pid: u32,
    /// Command name (`/proc/PID/comm`).
    pub comm: String,
    /// Real uid of the process.
    pub uid: u32,
    /// cgroup v2 id (inode of its cgroup directory), 0 if unknown.
    pub cgroup_id: u64,
}

/// The census result.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// Sockets found.
    pub sockets: Vec<CensusSocket>,
    /// Network namespaces dumped.
    pub namespaces: usize,
    /// Stopped at the socket limit.
    pub truncated: bool,
    /// Non-fatal problems, one line each.
    pub warnings: Vec<String>,
}

/// Total failures of the census.
#[derive(Debug, thiserror::Error)]
pub enum CensusError {
    /// `/proc` could not be listed.
    #[error("cannot list /proc: {0}")]
    Proc(std::io::Error),
}

/// What one walk of `/proc` tells: namespaces (with the `ns/net` paths of the
/// threads in each, to enter through) and which process holds each socket inode.
#[derive(Default)]
struct ProcScan {
    namespaces: BTreeMap<u32, Vec<PathBuf>>,
    holders: HashMap<u64, u32>,
}

/// Takes the census, stopping at `max_sockets` sockets.
pub fn take(max_sockets: usize) -> Result<Census, CensusError> {
    let scan = scan_proc()?;
    let mut census = Census::default();
    let mut namespaces: Vec<(u32, Vec<PathBuf>)> = scan.namespaces.into_iter().collect();
    for path in named_namespaces() {
        if let Ok(meta) = fs::metadata(&path)
            && !namespaces
                .iter()
                .any(|(ns, _)| u64::from(*ns) == meta.ino())
        {
            // A named namespace no process is in: enter it through its path.
            census.warnings.extend(dump_into(
                &mut census.sockets,
                meta.ino() as u32,
                &[path],
                max_sockets,
            ));
            census.namespaces += 1;
        }
    }
    for (ns, paths) in namespaces.drain(..) {
        if census.sockets.len() >= max_sockets {
            census.truncated = true;
            break;
        }
        census
            .warnings
            .extend(dump_into(&mut census.sockets, ns, &paths, max_sockets));
        census.namespaces += 1;
    }
    if census.sockets.len() >= max_sockets {
        census.sockets.truncate(max_sockets);
        census.truncated = true;
    }
    let mut owners: HashMap<u32, Option<CensusOwner>> = HashMap::new();
    for socket in &mut census.sockets {
        if let Some(pid) = scan.holders.get(&socket.inode) {
            socket.owner = owners.entry(*pid).or_insert_with(|| owner(*pid)).clone();
        }
    }
    Ok(census)
}

/// Walks `/proc` once. Processes that vanish meanwhile are skipped.
fn scan_proc() -> Result<ProcScan, CensusError> {
    let mut scan = ProcScan::default();
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map_err(CensusError::Proc)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        // Threads can be in other namespaces than their process's leader.
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("ns/net");
            if let Ok(ns) = fs::metadata(&path) {
                let paths = scan.namespaces.entry(ns.ino() as u32).or_default();
                // A few ways in are enough if threads exit meanwhile.
                if paths.len() < 4 {
                    paths.push(path);
                }
            }
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = socket_inode(&target) {
                // Ascending pid order: the first holder is the lowest pid.
                scan.holders.entry(inode).or_insert(pid);
            }
        }
    }
    Ok(scan)
}

/// `socket:[12345]` → 12345.
fn socket_inode(target: &Path) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn named_namespaces() -> Vec<PathBuf> {
    fs::read_dir("/run/netns")
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Dumps namespace `ns`, entered through the first of `paths` that works, into
/// `sockets`. Returns warnings.
fn dump_into(
    sockets: &mut Vec<CensusSocket>,
    ns: u32,
    paths: &[PathBuf],
    max_sockets: usize,
) -> Vec<String> {
    let room = max_sockets.saturating_sub(sockets.len());
    let paths = paths.to_vec();
    let result = thread::scope(|scope| {
        scope
            .spawn(move || -> Result<Vec<CensusSocket>, String> {
                enter(&paths)?;
                let mut found = Vec::new();
                for family in [AF_INET, AF_INET6] {
                    dump(family, ns, room, &mut found)?;
                }
                Ok(found)
            })
            .join()
    });
    match result {
        Ok(Ok(found)) => {
            sockets.extend(found);
            Vec::new()
        }
        Ok(Err(e)) => vec![format!("network namespace {ns}: {e}")],
        Err(_) => vec![format!("network namespace {ns}: census thread failed")],
    }
}

/// Moves the calling thread into the namespace at the first usable path.
fn enter(paths: &[PathBuf]) -> Result<(), String> {
    let mut last = String::from("no process left in it");
    for path in paths {
        match fs::File::open(path) {
            Ok(file) => match setns(&file, CloneFlags::CLONE_NEWNET) {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("setns({}): {e}", path.display()),
            },
            Err(e) => last = format!("{}: {e}", path.display()),
        }
    }
    Err(last)
}

/// Dumps TCP sockets of `family` in the current namespace.
fn dump(family: u8, ns: u32, room: usize, found: &mut Vec<CensusSocket>) -> Result<(), String> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(|e| format!("netlink socket: {e}"))?;
    socket
        .bind_auto()
        .map_err(|e| format!("netlink bind: {e}"))?;
    socket
        .connect(&NetlinkAddr::new(0, 0))
        .map_err(|e| format!("netlink connect: {e}"))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::all(),
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    request.finalize();
    let mut buf = vec![0; request.buffer_len()];
    request.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|e| format!("sock_diag request: {e}"))?;

    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket
            .recv(&mut &mut receive[..], 0)
            .map_err(|e| format!("sock_diag receive: {e}"))?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&receive[offset..size])
                .map_err(|e| format!("sock_diag message: {e}"))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response))
                    if found.len() < room =>
                {
                    let h = &response.header;
                    found.push(CensusSocket {
                        netns: ns,
                        family: u16::from(h.family),
                        state: h.state,
                        local: SocketAddr::new(h.socket_id.source_address, h.socket_id.source_port),
                        remote: SocketAddr::new(
                            h.socket_id.destination_address,
                            h.socket_id.destination_port,
                        ),
                        inode: u64::from(h.inode),
                        uid: h.uid,
                        cookie: u64::from_ne_bytes(h.socket_id.cookie),
                        owner: None,
                    });
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => return Err(format!("sock_diag: {e}")),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

/// The owner record of process `pid`, if it still exists.
fn owner(pid: u32) -> Option<CensusOwner> {
    let process = procfs::process::Process::new(pid as i32).ok()?;
    let status = process.status().ok()?;
    let cgroup_id = process
        .cgroups()
        .ok()
        .and_then(|groups| {
            groups
                .into_iter()
                .find(|g| g.hierarchy == 0)
                .map(|g| g.pathname)
        })
        .and_then(|path| {
            fs::metadata(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))).ok()
        })
        .map_or(0, |m| m.ino());
    Some(CensusOwner {
        pid,
        comm: status.name,
        uid: status.ruid,
        cgroup_id,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        net::{TcpListener, TcpStream},
        process::Command,
    };

    use nix::sched::unshare;

    use super::*;

    fn private_netns() -> u32 {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare needs root");
        assert!(
            Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap()
                .success()
        );
        fs::metadata("/proc/thread-self/ns/net").unwrap().ino() as u32
    }

    /// Finds sockets of this process in a private namespace: listeners of both
    /// families, both ends of a connection, and a TIME_WAIT socket without owner.
    #[test]
    fn finds_sockets_and_owners_in_other_namespaces() {
        thread::spawn(|| {
            let ns = private_netns();
            let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
            let v6 = TcpListener::bind("[::1]:0").unwrap();
            let client = TcpStream::connect(v4.local_addr().unwrap()).unwrap();
            let (server, _) = v4.accept().unwrap();
            // A TIME_WAIT socket: the closing side of another connection.
            let tw_client = TcpStream::connect(v4.local_addr().unwrap()).unwrap();
            let (mut tw_server, _) = v4.accept().unwrap();
            let tw_port = tw_client.local_addr().unwrap().port();
            drop(tw_client);
            let _ = tw_server.read(&mut [0u8; 1]);
            drop(tw_server);

            let census = take(1_000_000).unwrap();
            let ours: Vec<_> = census.sockets.iter().filter(|s| s.netns == ns).collect();
            let me = std::process::id();
            let comm = fs::read_to_string("/proc/self/comm").unwrap();
            let find = |local: SocketAddr, remote: Option<SocketAddr>| {
                ours.iter()
                    .find(|s| s.local == local && remote.is_none_or(|r| s.remote == r))
                    .unwrap_or_else(|| panic!("{local} not in census: {ours:#?}"))
            };
            for listener in [&v4, &v6] {
                let s = find(listener.local_addr().unwrap(), None);
                assert_eq!(s.state, 10, "LISTEN");
                let owner = s.owner.as_ref().expect("owned");
                assert_eq!(owner.pid, me);
                assert_eq!(owner.comm, comm.trim());
                assert_ne!(s.inode, 0);
            }
            let c = find(
                client.local_addr().unwrap(),
                Some(client.peer_addr().unwrap()),
            );
            assert_eq!((c.state, c.owner.as_ref().map(|o| o.pid)), (1, Some(me)));
            let s = find(
                server.local_addr().unwrap(),
                Some(server.peer_addr().unwrap()),
            );
            assert_eq!((s.state, s.owner.as_ref().map(|o| o.pid)), (1, Some(me)));
            let tw = ours
                .iter()
                .find(|s| s.local.port() == tw_port)
                .expect("TIME_WAIT socket in census");
            assert_eq!(tw.state, 6, "TIME_WAIT");
            assert_eq!((tw.inode, &tw.owner), (0, &None));
            assert!(census.namespaces >= 2);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn stops_at_the_limit() {
        thread::spawn(|| {
            private_netns();
            let listeners: Vec<_> = (0..5)
                .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            let census = take(3).unwrap();
            assert_eq!(census.sockets.len(), 3);
            assert!(census.truncated);
            drop(listeners);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn socket_inode_parsing() {
        assert_eq!(socket_inode(Path::new("socket:[123]")), Some(123));
        assert_eq!(socket_inode(Path::new("pipe:[123]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }
}
