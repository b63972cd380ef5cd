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
    fs::{self, File},
    io::{ErrorKind, Read},
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
    thread,
};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG};
use nix::{
    sched::{CloneFlags, setns},
    sys::{
        socket::{setsockopt, sockopt::ReceiveTimeout},
        statfs::{CGROUP2_SUPER_MAGIC, statfs},
        time::{TimeVal, TimeValLike},
    },
};
use procfs::process::{FDTarget, Process};

/// Named namespaces (`ip netns add`).
const NAMED_NETNS: &str = "/run/netns";
/// Where the cgroup v2 hierarchy is usually mounted (unified, then hybrid).
const CGROUP2_ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
/// The calling thread's own namespace.
const OWN_NETNS: &str = "/proc/thread-self/ns/net";
/// Paths remembered per namespace, tried in turn if a task has exited.
const PATHS_PER_NETNS: usize = 4;
/// Larger than the kernel's largest dump message batch (32 KiB).
const RECV_BUFFER: usize = 64 * 1024;
/// Bound on each netlink receive, so a stuck dump cannot hang start-up.
const RECV_TIMEOUT_SECS: i64 = 5;

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

/// What one namespace's dump found.
#[derive(Default)]
struct NsDump {
    sockets: Vec<CensusSocket>,
    truncated: bool,
    /// Messages that could not be decoded (skipped).
    undecodable: usize,
    /// Without the "netns N: " prefix.
    warnings: Vec<String>,
}

/// Takes the census, keeping at most `max_sockets` sockets.
pub fn take(max_sockets: usize) -> Result<Census, CensusError> {
    drop(Socket::new(NETLINK_SOCK_DIAG).map_err(CensusError::Netlink)?);
    let mut scan = scan_proc()?;
    add_named_namespaces(&mut scan.namespaces);
    let mut census = Census::default();
    for (&netns, paths) in &scan.namespaces {
        let budget = max_sockets.saturating_sub(census.sockets.len());
        match dump_namespace(netns, paths.clone(), budget) {
            Ok(dump) => {
                census.namespaces += 1;
                census.truncated |= dump.truncated;
                census.sockets.extend(dump.sockets);
                let prefixed = dump.warnings.iter().map(|w| format!("netns {netns}: {w}"));
                census.warnings.extend(prefixed);
            }
            Err(e) => census.warnings.push(format!("netns {netns}: {e}")),
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
        record_namespaces(&process, &mut scan.namespaces);
        record_sockets(&process, &mut scan.owners);
    }
    Ok(scan)
}

/// Records the network namespace of each of the process's threads.
fn record_namespaces(process: &Process, namespaces: &mut BTreeMap<u32, Vec<PathBuf>>) {
    let Ok(tasks) = process.tasks() else { return };
    for task in tasks.flatten() {
        let path = PathBuf::from(format!("/proc/{}/task/{}/ns/net", task.pid, task.tid));
        if let Some(netns) = netns_inode(&path) {
            let paths = namespaces.entry(netns).or_default();
            if paths.len() < PATHS_PER_NETNS {
                paths.push(path);
            }
        }
    }
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

/// Adds the namespaces bound under `/run/netns`, if any.
fn add_named_namespaces(namespaces: &mut BTreeMap<u32, Vec<PathBuf>>) {
    let (Ok(entries), Ok(own)) = (fs::read_dir(NAMED_NETNS), fs::metadata(OWN_NETNS)) else {
        return;
    };
    for path in entries.flatten().map(|entry| entry.path()) {
        // A name whose bind mount is gone is a plain file, not an nsfs inode.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if let (true, Ok(netns)) = (meta.dev() == own.dev(), u32::try_from(meta.ino())) {
            namespaces.entry(netns).or_default().insert(0, path);
        }
    }
}

/// The namespace inode `path` leads to.
fn netns_inode(path: &Path) -> Option<u32> {
    u32::try_from(fs::metadata(path).ok()?.ino()).ok()
}

/// Dumps one namespace on a dedicated thread, which exits afterwards.
fn dump_namespace(netns: u32, paths: Vec<PathBuf>, budget: usize) -> Result<NsDump, String> {
    thread::Builder::new()
        .name("census-netns".into())
        .spawn(move || dump_in(netns, &paths, budget))
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .map_err(|_| "the scanning thread panicked".to_string())?
}

/// Runs on the dedicated thread: enter, then dump both families.
fn dump_in(netns: u32, paths: &[PathBuf], budget: usize) -> Result<NsDump, String> {
    enter(netns, paths)?;
    let socket = open_diag_socket().map_err(|e| format!("netlink socket: {e}"))?;
    let mut dump = NsDump::default();
    let mut failures = Vec::new();
    for family in [AF_INET, AF_INET6] {
        if let Err(e) = dump_family(&socket, netns, family, budget, &mut dump) {
            failures.push(format!("family {family}: {e}"));
        }
        if dump.truncated {
            break;
        }
    }
    if failures.len() == 2 {
        return Err(format!("sock_diag dump failed: {}", failures.join("; ")));
    }
    if dump.undecodable > 0 {
        failures.push(format!(
            "{} undecodable sock_diag messages",
            dump.undecodable
        ));
    }
    dump.warnings = failures;
    Ok(dump)
}

/// Moves the calling thread into namespace `netns` through one of `paths`.
fn enter(netns: u32, paths: &[PathBuf]) -> Result<(), String> {
    if netns_inode(Path::new(OWN_NETNS)) == Some(netns) {
        return Ok(());
    }
    let mut last = "no path leads to it any more".to_string();
    for path in paths {
        match enter_via(netns, path) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("cannot enter via {}: {e}", path.display()),
        }
    }
    Err(last)
}

/// Opens `path`, checks it is still namespace `netns` (pids are reused), enters it.
fn enter_via(netns: u32, path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let inode = file.metadata().map_err(|e| e.to_string())?.ino();
    if u64::from(netns) != inode {
        return Err("it now leads to another namespace".into());
    }
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}

/// A sock_diag socket in the calling thread's namespace, with a receive timeout.
fn open_diag_socket() -> std::io::Result<Socket> {
    let socket = Socket::new(NETLINK_SOCK_DIAG)?;
    let timeout = TimeVal::seconds(RECV_TIMEOUT_SECS);
    setsockopt(&socket, ReceiveTimeout, &timeout).map_err(std::io::Error::from)?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    Ok(socket)
}

/// Dumps the TCP sockets of one family into `dump`, stopping at `budget` sockets.
fn dump_family(
    socket: &Socket,
    netns: u32,
    family: u8,
    budget: usize,
    dump: &mut NsDump,
) -> Result<(), String> {
    send_request(socket, family)?;
    let mut buf = Vec::with_capacity(RECV_BUFFER);
    loop {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err("timed out".into()),
            Err(e) => return Err(format!("receiving: {e}")),
        }
        if read_batch(&buf, netns, budget, dump)? {
            return Ok(());
        }
    }
}

/// Sends an `inet_diag_req_v2` dump request for TCP, all states.
fn send_request(socket: &Socket, family: u8) -> Result<(), String> {
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
        extensions: ExtensionFlags::empty(),
        // SYN_RECV makes the kernel include request sockets (NEW_SYN_RECV).
        states: StateFlags::all(),
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
fn read_batch(buf: &[u8], netns: u32, budget: usize, dump: &mut NsDump) -> Result<bool, String> {
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
                    dump.sockets.push(to_socket(netns, &response.header));
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

/// A census entry (without owner) from an `inet_diag_msg`.
fn to_socket(netns: u32, header: &InetResponseHeader) -> CensusSocket {
    let id = &header.socket_id;
    CensusSocket {
        netns,
        family: header.family.into(),
        state: header.state,
        local: SocketAddr::new(id.source_address, id.source_port),
        remote: SocketAddr::new(id.destination_address, id.destination_port),
        inode: header.inode.into(),
        uid: header.uid,
        cookie: cookie(id.cookie),
        interface: id.interface_id,
        owner: None,
    }
}

/// `idiag_cookie` is two native-endian u32 halves, low half first.
fn cookie(raw: [u8; 8]) -> u64 {
    let [a, b, c, d, e, f, g, h] = raw;
    u64::from(u32::from_ne_bytes([a, b, c, d])) | u64::from(u32::from_ne_bytes([e, f, g, h])) << 32
}

/// Fills in the owner of every socket some process holds.
fn attach_owners(sockets: &mut [CensusSocket], owners: &HashMap<u64, u32>) {
    let cgroup_root = cgroup2_root();
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
        .and_then(|root| cgroup_id(&process, root))
        .unwrap_or(0);
    Some(CensusOwner {
        pid,
        comm,
        uid,
        cgroup_id,
    })
}

/// The mount point of the cgroup v2 hierarchy, if mounted where expected.
fn cgroup2_root() -> Option<PathBuf> {
    CGROUP2_ROOTS
        .iter()
        .map(PathBuf::from)
        .find(|path| statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
}

/// Inode of the process's cgroup v2 directory (the "0::" line).
fn cgroup_id(process: &Process, root: &Path) -> Option<u64> {
    let groups = process.cgroups().ok()?;
    let group = groups
        .0
        .iter()
        .find(|g| g.hierarchy == 0 && g.controllers.is_empty())?;
    // Paths outside our cgroup namespace ("/../x") cannot be resolved here.
    let relative = Path::new(&group.pathname).strip_prefix("/").ok()?;
    if relative.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    Some(fs::metadata(root.join(relative)).ok()?.ino())
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read,
        net::{TcpListener, TcpStream},
        process::Command,
        time::{Duration, Instant},
    };

    use nix::sched::unshare;

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
            f(netns_inode(Path::new(OWN_NETNS)).expect("own netns inode"))
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
        let text = fs::read_to_string("/proc/self/cgroup").unwrap();
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        fs::metadata(format!("/sys/fs/cgroup{path}")).map_or(0, |m| m.ino())
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
