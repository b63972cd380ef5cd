//! The start-up census: every TCP socket that already exists on the host, in
//! every network namespace, with the process that owns it.
//!
//! Sockets opened before tcpwatch started were never seen at their `connect()`,
//! `listen()` or `accept()`, so the kernel programs cannot attribute them. The
//! census finds them once, at start-up:
//!
//! 1. One walk of `/proc` collects the distinct network namespaces (the inode of
//!    `/proc/PID/task/TID/ns/net` for every thread: a thread may have left its
//!    process's namespace with `unshare`/`setns`) and maps socket inodes to
//!    processes through the `/proc/PID/fd/N -> socket:[INODE]` links. Named
//!    namespaces under `/run/netns` are added, even when no process is in them.
//! 2. For each namespace a short-lived thread enters it with
//!    `setns(CLONE_NEWNET)` (which only affects that thread), opens a netlink
//!    `sock_diag` socket there and dumps TCP sockets of `AF_INET` and `AF_INET6`
//!    in all states, LISTEN, SYN_RECV (request sockets) and TIME_WAIT included.
//!    Tuples, families and states are reported exactly as sock_diag gives them
//!    (a dual-stack socket serving IPv4 shows `::ffff:a.b.c.d`).
//! 3. Socket inodes are joined with the descriptor map; the owner's comm, real
//!    uid and cgroup v2 id are read from `/proc/PID`.
//!
//! A socket held by several processes (after `fork`, or passed over a unix
//! socket) is attributed to the one with the lowest pid, normally the parent
//! that created it. TIME_WAIT and request sockets have inode 0 and no owner.
//! Processes vanishing mid-scan are skipped silently; a namespace that cannot be
//! entered is a warning. Sockets held only through a file descriptor of a
//! thread with a private descriptor table (`unshare(CLONE_FILES)`), and
//! namespaces kept alive only by a descriptor or a bind mount outside
//! `/run/netns`, are not found.

use std::{
    collections::{BTreeMap, HashMap},
    io::Read,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use procfs::process::{FDTarget, Process};

use super::{
    cgroup, netns,
    sock_diag::{self, DiagSocket, Query},
};

/// One TCP socket found by the census.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CensusSocket {
    /// Inode of the network namespace.
    pub netns: u32,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// TCP state number exactly as sock_diag reports it (`idiag_state`).
    pub state: u8,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (unspecified for listeners).
    pub remote: SocketAddr,
    /// Socket inode; 0 for TIME_WAIT and request sockets.
    pub inode: u64,
    /// Socket uid (`idiag_uid`).
    pub uid: u32,
    /// `idiag_cookie` as a u64: the value `bpf_get_socket_cookie()` returns.
    pub cookie: u64,
    /// Bound interface index (`idiag_if`), 0 if none. Not folded into the
    /// addresses' scope id.
    pub interface: u32,
    /// The owning process, if one holds a descriptor for the socket. When
    /// several do (after `fork`, or passed over a unix socket), the one with
    /// the lowest pid, normally the parent that created it.
    pub owner: Option<CensusOwner>,
}

/// The process that owns a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CensusOwner {
    /// Process id (tgid).
    pub pid: u32,
    /// `/proc/PID/comm`.
    pub comm: String,
    /// Real uid of the process.
    pub uid: u32,
    /// cgroup v2 id (inode of the cgroup's directory), 0 if unknown.
    pub cgroup_id: u64,
}

/// The result of [`take`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Sockets found, at most `max_sockets`.
    pub sockets: Vec<CensusSocket>,
    /// Network namespaces scanned.
    pub namespaces: usize,
    /// True if `max_sockets` was hit and sockets were left out.
    pub truncated: bool,
    /// Non-fatal problems, one line each.
    pub warnings: Vec<String>,
}

/// Why no census could be taken at all.
#[derive(Debug, thiserror::Error)]
pub enum CensusError {
    /// `/proc` could not be listed.
    #[error("cannot list processes in /proc: {0}")]
    Proc(procfs::ProcError),
    /// No netlink `sock_diag` socket could be opened.
    #[error("cannot open a netlink sock_diag socket: {0}")]
    Netlink(std::io::Error),
    /// Not a single namespace could be dumped.
    #[error("no network namespace could be scanned: {0}")]
    NoNamespace(String),
}

/// What one walk of `/proc` found.
#[derive(Default)]
struct ProcScan {
    /// Namespace inode -> paths that lead to it.
    namespaces: BTreeMap<u32, Vec<PathBuf>>,
    /// Socket inode -> lowest pid holding it.
    owners: HashMap<u64, u32>,
}

/// Takes the census, keeping at most `max_sockets` sockets.
pub fn take(max_sockets: usize) -> Result<Census, CensusError> {
    sock_diag::probe().map_err(CensusError::Netlink)?;
    let mut scan = scan_proc()?;
    netns::add_named(&mut scan.namespaces);
    let mut census = Census::default();
    for (&ns, paths) in &scan.namespaces {
        let budget = max_sockets.saturating_sub(census.sockets.len());
        let dumped = netns::run_in(ns, paths.clone(), move || {
            sock_diag::dump(Query::all(), budget)
        });
        match dumped {
            Ok(dump) => {
                census.namespaces += 1;
                census.truncated |= dump.truncated;
                census
                    .sockets
                    .extend(dump.sockets.into_iter().map(|s| from_diag(ns, s)));
                let mut problems = dump.failures;
                if dump.undecodable > 0 {
                    problems.push(format!(
                        "{} undecodable sock_diag messages",
                        dump.undecodable
                    ));
                }
                census
                    .warnings
                    .extend(problems.iter().map(|w| format!("netns {ns}: {w}")));
            }
            Err(e) => census.warnings.push(format!("netns {ns}: {e}")),
        }
        if census.truncated {
            break;
        }
    }
    if census.namespaces == 0 {
        let why = census.warnings.first().cloned();
        return Err(CensusError::NoNamespace(
            why.unwrap_or_else(|| "none found".into()),
        ));
    }
    attach_owners(&mut census.sockets, &scan.owners);
    Ok(census)
}

/// Walks `/proc` once: namespaces of every thread, socket descriptors of every process.
fn scan_proc() -> Result<ProcScan, CensusError> {
    let mut scan = ProcScan::default();
    for process in procfs::process::all_processes().map_err(CensusError::Proc)? {
        let Ok(process) = process else { continue };
        netns::record_threads(&process, &mut scan.namespaces);
        record_sockets(&process, &mut scan.owners);
    }
    Ok(scan)
}

/// Socket inode -> lowest pid holding it, over every process (one `/proc` walk).
pub fn socket_holders() -> HashMap<u64, u32> {
    let mut owners = HashMap::new();
    if let Ok(processes) = procfs::process::all_processes() {
        for process in processes.flatten() {
            record_sockets(&process, &mut owners);
        }
    }
    owners
}

/// Maps each socket the process holds to it, keeping the lowest pid.
fn record_sockets(process: &Process, owners: &mut HashMap<u64, u32>) {
    let Ok(pid) = u32::try_from(process.pid()) else {
        return;
    };
    let Ok(fds) = process.fd() else { return };
    for fd in fds.flatten() {
        if let FDTarget::Socket(inode) = fd.target {
            let owner = owners.entry(inode).or_insert(pid);
            *owner = (*owner).min(pid);
        }
    }
}

/// A census entry (without owner) from a dumped socket.
fn from_diag(netns: u32, s: DiagSocket) -> CensusSocket {
    CensusSocket {
        netns,
        family: s.family,
        state: s.state,
        local: s.local,
        remote: s.remote,
        inode: s.inode,
        uid: s.uid,
        cookie: s.cookie,
        interface: s.interface,
        owner: None,
    }
}

/// Fills in the owner of every socket some process holds.
fn attach_owners(sockets: &mut [CensusSocket], owners: &HashMap<u64, u32>) {
    let cgroup_root = cgroup::hierarchy_root();
    let mut described: HashMap<u32, Option<CensusOwner>> = HashMap::new();
    for socket in sockets.iter_mut().filter(|s| s.inode != 0) {
        let Some(&pid) = owners.get(&socket.inode) else {
            continue;
        };
        socket.owner = described
            .entry(pid)
            .or_insert_with(|| describe(pid, cgroup_root.as_deref()))
            .clone();
    }
}

/// comm, real uid and cgroup of `pid`; `None` if it has exited.
pub fn describe_process(pid: u32) -> Option<CensusOwner> {
    describe(pid, cgroup::hierarchy_root().as_deref())
}

/// comm, real uid and cgroup of `pid`; `None` if it has exited.
fn describe(pid: u32, cgroup_root: Option<&Path>) -> Option<CensusOwner> {
    let process = Process::new(i32::try_from(pid).ok()?).ok()?;
    let mut comm = Vec::new();
    process
        .open_relative("comm")
        .ok()?
        .read_to_end(&mut comm)
        .ok()?;
    let comm = String::from_utf8_lossy(comm.trim_ascii_end()).into_owned();
    let uid = process.status().ok()?.ruid;
    let cgroup_id = cgroup_root
        .and_then(|root| cgroup::id_of(root, &cgroup::process_path(pid)?))
        .unwrap_or(0);
    Some(CensusOwner {
        pid,
        comm,
        uid,
        cgroup_id,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        io::Read,
        net::{TcpListener, TcpStream},
        process::Command,
        thread,
        time::{Duration, Instant},
    };

    use nix::sched::{CloneFlags, unshare};

    use super::*;

    // Kernel TCP state numbers (/usr/include/netinet/tcp.h).
    const ESTABLISHED: u8 = 1;
    const TIME_WAIT: u8 = 6;
    const LISTEN: u8 = 10;

    /// Runs `f` on a new thread inside a fresh network namespace with `lo` up.
    /// The namespace dies with the thread and its sockets.
    fn in_private_netns<T: Send + 'static>(f: impl FnOnce(u32) -> T + Send + 'static) -> T {
        let thread = thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            // The child inherits this thread's namespace.
            let status = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status();
            assert!(status.expect("run ip").success(), "ip link set lo up");
            f(netns::inode(Path::new(netns::OWN_NETNS)).expect("own netns inode"))
        });
        thread.join().expect("test thread panicked")
    }

    fn find(census: &Census, netns: u32, state: u8, local: SocketAddr) -> &CensusSocket {
        census
            .sockets
            .iter()
            .find(|s| s.netns == netns && s.state == state && s.local == local)
            .unwrap_or_else(|| panic!("no socket in state {state} at {local} in netns {netns}"))
    }

    fn self_cgroup_id() -> u64 {
        let root = cgroup::hierarchy_root().expect("a cgroup v2 hierarchy");
        let path = cgroup::process_path(std::process::id()).expect("own cgroup");
        cgroup::id_of(&root, &path).unwrap_or(0)
    }

    fn assert_mine(socket: &CensusSocket, netns: u32) {
        let comm = fs::read_to_string("/proc/self/comm").unwrap();
        let owner = socket.owner.as_ref().expect("owner");
        assert_eq!(socket.netns, netns);
        assert_ne!(socket.inode, 0);
        assert_ne!(socket.cookie, 0);
        assert_eq!(owner.pid, std::process::id());
        assert_eq!(owner.comm, comm.trim_end());
        assert_eq!(owner.uid, nix::unistd::getuid().as_raw());
        assert_eq!(owner.cgroup_id, self_cgroup_id());
    }

    #[test]
    fn finds_listeners_connections_and_time_wait_in_other_netns() {
        in_private_netns(|netns| {
            let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
            let v6 = TcpListener::bind("[::1]:0").unwrap();
            let client = TcpStream::connect(v4.local_addr().unwrap()).unwrap();
            let (mut server, peer) = v4.accept().unwrap();
            let (client_addr, server_addr) =
                (client.local_addr().unwrap(), server.local_addr().unwrap());
            assert_eq!(peer, client_addr);

            let census = take(usize::MAX).unwrap();
            assert!(census.namespaces >= 2, "host and private netns: {census:?}");
            assert!(!census.truncated);
            for listener in [&v4, &v6] {
                let found = find(&census, netns, LISTEN, listener.local_addr().unwrap());
                assert_mine(found, netns);
            }
            assert_eq!(
                find(&census, netns, LISTEN, v6.local_addr().unwrap()).family,
                10
            );
            let c = find(&census, netns, ESTABLISHED, client_addr);
            assert_eq!((c.family, c.remote), (2, server_addr));
            assert_mine(c, netns);
            let s = find(&census, netns, ESTABLISHED, server_addr);
            assert_eq!((s.family, s.remote), (2, client_addr));
            assert_mine(s, netns);
            assert_ne!(c.cookie, s.cookie);

            // Active close by the client: it ends in TIME_WAIT.
            drop(client);
            assert_eq!(server.read(&mut [0; 16]).unwrap(), 0);
            drop(server);
            let deadline = Instant::now() + Duration::from_secs(5);
            let tw = loop {
                let census = take(usize::MAX).unwrap();
                let tw = census
                    .sockets
                    .into_iter()
                    .find(|s| s.netns == netns && s.state == TIME_WAIT && s.local == client_addr);
                match tw {
                    Some(tw) => break tw,
                    None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                    None => panic!("no TIME_WAIT socket for {client_addr}"),
                }
            };
            assert_eq!((tw.remote, tw.inode, tw.owner), (server_addr, 0, None));
        });
    }

    #[test]
    fn stops_at_max_sockets() {
        in_private_netns(|_| {
            let _a = TcpListener::bind("127.0.0.1:0").unwrap();
            let _b = TcpListener::bind("127.0.0.1:0").unwrap();
            let one = take(1).unwrap();
            assert!(one.truncated);
            assert_eq!(one.sockets.len(), 1);
            let none = take(0).unwrap();
            assert!(none.truncated);
            assert!(none.sockets.is_empty());
            assert!(!take(usize::MAX).unwrap().truncated);
        });
    }
}
