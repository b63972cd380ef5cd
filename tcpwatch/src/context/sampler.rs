//! The periodic sampler: a dedicated thread that, every interval, visits each
//! active network namespace (entering it on a short-lived thread) and records
//! counters, sysctls and a socket summary as a [`SampleRecord`].
//!
//! Active namespaces are those given with `--netns`, tcpwatch's own (when no
//! `--netns` is given) and those seen in events during the last five minutes;
//! at most [`MAX_NAMESPACES`] are sampled. Events name a process in their
//! namespace, through which the sampler enters it.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    thread,
    time::{Duration, Instant},
};

use chrono::Utc;
use netlink_packet_sock_diag::inet::StateFlags;
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{debug, warn};

use super::{
    backlogs::Backlogs,
    netstat::{self, Counters},
    sample::{ProcessFds, SampleRecord, SampleTag, Sockstat, parse_sockstat},
    sockets::{self, Summary},
    sysctls,
};
use crate::{
    attrib::{
        census,
        netns::{self, OWN_NETNS},
        sock_diag::{self, DiagSocket, Query},
    },
    events::model::{Process, SCHEMA_VERSION},
    probes::kernel_enums::KernelNames,
};

/// Namespaces sampled at most.
pub const MAX_NAMESPACES: usize = 64;
/// A namespace with no event for this long is no longer sampled.
const ACTIVE_FOR: Duration = Duration::from_secs(300);
/// Sockets summarised per namespace and sample at most.
const MAX_SOCKETS: usize = 500_000;
/// CLOSE_WAIT sockets idle at least this long get their owner resolved.
const RESOLVE_CLOSE_WAIT_AFTER_MS: u64 = 5_000;
/// At most one `/proc` walk for socket owners per this interval.
const RESOLVE_EVERY: Duration = Duration::from_secs(10);

/// A hint from the event stream: namespace `netns` is active and process `pid`
/// is in it.
#[derive(Clone, Copy, Debug)]
pub struct Hint {
    /// Namespace inode.
    pub netns: u32,
    /// A process seen in it.
    pub pid: u32,
}

/// What the tracer tells the sampler.
enum Message {
    /// A namespace is active.
    Hint(Hint),
    /// Sample every active namespace now (at stop, for decisions still waiting
    /// on counters).
    SampleNow,
}

/// Where the tracer sends hints.
pub struct Hints {
    tx: SyncSender<Message>,
    dropped: u64,
}

impl Hints {
    /// Tells the sampler about activity. Never blocks: when the sampler is
    /// behind, the hint is dropped (and counted); the namespace is then found
    /// on a later event.
    pub fn send(&mut self, hint: Hint) {
        if self.tx.try_send(Message::Hint(hint)).is_err() {
            self.dropped += 1;
        }
    }

    /// Asks for a sample of every active namespace now, ahead of the interval.
    pub fn sample_now(&self) {
        let _ = self.tx.try_send(Message::SampleNow);
    }

    /// Hints dropped because the sampler was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Samples as they are taken; the sampler stops when this is dropped.
pub type Samples = tokio_mpsc::Receiver<SampleRecord>;

/// Starts the sampler thread. `fixed` namespaces are always sampled (with a path
/// into them when one is known). Their first reading, the baseline every
/// counter delta is measured from, is taken before this returns: what happens
/// once tracing has started must not fall into it.
pub fn start(
    names: KernelNames,
    interval: Duration,
    fixed: Vec<(u32, Option<PathBuf>)>,
    backlogs: Option<Backlogs>,
) -> std::io::Result<(Hints, Samples)> {
    let (hints, hint_rx) = mpsc::sync_channel(1024);
    let (sample_tx, samples) = tokio_mpsc::channel(256);
    let mut sampler = Sampler::new(names, fixed);
    sampler.backlogs = backlogs;
    for sample in sampler.sample_all() {
        let _ = sample_tx.try_send(sample);
    }
    thread::Builder::new()
        .name("tcpwatch-sampler".into())
        .spawn(move || sampler.run(interval, &hint_rx, &sample_tx))?;
    Ok((
        Hints {
            tx: hints,
            dropped: 0,
        },
        samples,
    ))
}

struct Namespace {
    paths: Vec<PathBuf>,
    fixed: bool,
    last_active: Instant,
    counters: Option<(Counters, Instant)>,
}

struct Sampler {
    names: KernelNames,
    namespaces: BTreeMap<u32, Namespace>,
    holders: HashMap<u64, u32>,
    last_resolve: Option<Instant>,
    backlogs: Option<Backlogs>,
}

impl Sampler {
    fn new(names: KernelNames, fixed: Vec<(u32, Option<PathBuf>)>) -> Self {
        let now = Instant::now();
        let mut namespaces = BTreeMap::new();
        let fixed = if fixed.is_empty() {
            netns::inode(Path::new(OWN_NETNS))
                .map(|own| vec![(own, Some(PathBuf::from("/proc/self/ns/net")))])
                .unwrap_or_default()
        } else {
            fixed
        };
        for (ns, path) in fixed {
            namespaces.insert(
                ns,
                Namespace {
                    paths: path.into_iter().collect(),
                    fixed: true,
                    last_active: now,
                    counters: None,
                },
            );
        }
        Self {
            names,
            namespaces,
            holders: HashMap::new(),
            last_resolve: None,
            backlogs: None,
        }
    }

    fn run(
        &mut self,
        interval: Duration,
        hints: &Receiver<Message>,
        out: &tokio_mpsc::Sender<SampleRecord>,
    ) {
        let mut next = Instant::now() + interval;
        loop {
            match hints.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Message::Hint(hint)) => {
                    // A namespace seen for the first time is read at once: its
                    // counters' deltas are counted from this baseline, and what
                    // happens before the next tick must not fall into it.
                    if self.note(hint)
                        && let Some(sample) = self.sample_one(hint.netns)
                        && out.blocking_send(sample).is_err()
                    {
                        return;
                    }
                    continue;
                }
                Ok(Message::SampleNow) => {}
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            next = Instant::now() + interval;
            for sample in self.sample_all() {
                if out.blocking_send(sample).is_err() {
                    return;
                }
            }
        }
    }

    /// Records a hint; true if the namespace has no baseline yet and can now
    /// be entered.
    fn note(&mut self, hint: Hint) -> bool {
        let now = Instant::now();
        if !self.namespaces.contains_key(&hint.netns) {
            if self.namespaces.len() >= MAX_NAMESPACES {
                return false;
            }
            self.namespaces.insert(
                hint.netns,
                Namespace {
                    paths: Vec::new(),
                    fixed: false,
                    last_active: now,
                    counters: None,
                },
            );
        }
        if let Some(ns) = self.namespaces.get_mut(&hint.netns) {
            ns.last_active = now;
            let path = PathBuf::from(format!("/proc/{}/ns/net", hint.pid));
            if hint.pid != 0 && !ns.paths.contains(&path) {
                ns.paths.insert(0, path);
                ns.paths.truncate(netns::PATHS_PER_NETNS);
            }
            return ns.counters.is_none() && !ns.paths.is_empty();
        }
        false
    }

    fn sample_all(&mut self) -> Vec<SampleRecord> {
        let now = Instant::now();
        self.namespaces
            .retain(|_, ns| ns.fixed || now.duration_since(ns.last_active) < ACTIVE_FOR);
        let wanted: Vec<u32> = self.namespaces.keys().copied().collect();
        wanted
            .into_iter()
            .filter_map(|id| self.sample_one(id))
            .collect()
    }

    /// Samples one namespace, if it can be entered.
    fn sample_one(&mut self, id: u32) -> Option<SampleRecord> {
        let paths = self.namespaces.get(&id)?.paths.clone();
        let paths = if paths.is_empty() {
            find_paths(id)
        } else {
            paths
        };
        match netns::run_in(id, paths, collect) {
            Ok(raw) => Some(self.build(id, raw)),
            Err(e) => {
                debug!("sampling netns {id}: {e}");
                None
            }
        }
    }

    fn build(&mut self, id: u32, raw: Raw) -> SampleRecord {
        let now = Instant::now();
        let ns = self.namespaces.get_mut(&id);
        let (counters, interval_ms) =
            match ns.and_then(|ns| ns.counters.replace((raw.counters.clone(), now))) {
                Some((before, then)) => (
                    netstat::delta(&before, &raw.counters),
                    now.duration_since(then).as_millis() as u64,
                ),
                None => (BTreeMap::new(), 0),
            };
        let Summary {
            states,
            ports,
            destinations,
            listeners,
            close_wait,
        } = sockets::summarise(&raw.sockets, &self.names);
        // Listeners worth an owner: those with connections waiting, and all of
        // them when some accept queue overflowed since the previous sample (on
        // a slow machine the queue may have drained again by now).
        let overflowed = ["TcpExt.ListenOverflows", "TcpExt.ListenDrops"]
            .iter()
            .any(|c| counters.get(*c).copied().unwrap_or(0) > 0);
        let wanted = |queue: u32| queue > 0 || overflowed;
        let interesting: Vec<u64> = listeners
            .iter()
            .filter(|(l, _)| wanted(l.queue))
            .map(|(_, inode)| *inode)
            .chain(
                close_wait
                    .iter()
                    .filter(|(c, _)| c.idle_ms.unwrap_or(0) >= RESOLVE_CLOSE_WAIT_AFTER_MS)
                    .map(|(_, inode)| *inode),
            )
            .filter(|inode| *inode != 0)
            .collect();
        self.resolve(&interesting);
        let mut described: HashMap<u32, Option<Process>> = HashMap::new();
        let mut owner_of = |inode: u64| -> Option<Process> {
            let pid = *self.holders.get(&inode)?;
            described
                .entry(pid)
                .or_insert_with(|| describe(pid))
                .clone()
        };
        let listeners: Vec<_> = listeners
            .into_iter()
            .map(|(mut l, inode)| {
                if wanted(l.queue) {
                    l.owner = owner_of(inode);
                }
                l.requested_backlog = self.backlogs.as_ref().and_then(|b| {
                    let port = l.local.rsplit(':').next()?.parse().ok()?;
                    b.get(id, port)
                });
                l
            })
            .collect();
        let close_wait: Vec<_> = close_wait
            .into_iter()
            .map(|(mut c, inode)| {
                if c.idle_ms.unwrap_or(0) >= RESOLVE_CLOSE_WAIT_AFTER_MS {
                    c.owner = owner_of(inode);
                }
                c
            })
            .collect();
        let mut pids: Vec<u32> = listeners
            .iter()
            .filter_map(|l| l.owner.as_ref())
            .chain(close_wait.iter().filter_map(|c| c.owner.as_ref()))
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        SampleRecord {
            schema_version: SCHEMA_VERSION,
            record: SampleTag::Sample,
            time: Utc::now(),
            netns: id,
            interval_ms,
            counters,
            sysctls: raw.sysctls,
            sockstat: raw.sockstat,
            states,
            ports,
            destinations,
            listeners,
            close_wait,
            processes: pids.into_iter().filter_map(process_fds).collect(),
        }
    }

    /// Refreshes the inode → pid map when an inode of interest is unknown, at
    /// most once per [`RESOLVE_EVERY`].
    fn resolve(&mut self, inodes: &[u64]) {
        if inodes.iter().all(|i| self.holders.contains_key(i)) {
            return;
        }
        if self
            .last_resolve
            .is_some_and(|t| t.elapsed() < RESOLVE_EVERY)
        {
            return;
        }
        self.last_resolve = Some(Instant::now());
        self.holders = census::socket_holders();
    }
}

/// What one visit to a namespace reads.
struct Raw {
    counters: Counters,
    sysctls: BTreeMap<String, String>,
    sockstat: Sockstat,
    sockets: Vec<DiagSocket>,
}

/// Runs inside the namespace.
fn collect() -> Result<Raw, String> {
    let mut counters = Counters::new();
    for file in ["netstat", "snmp"] {
        let text = fs::read_to_string(format!("/proc/thread-self/net/{file}"))
            .map_err(|e| format!("/proc/thread-self/net/{file}: {e}"))?;
        netstat::parse(&text, &mut counters);
    }
    let sockstat = fs::read_to_string("/proc/thread-self/net/sockstat")
        .map(|t| parse_sockstat(&t))
        .unwrap_or_default();
    let all = sock_diag::dump(Query::all(), MAX_SOCKETS)?;
    // CLOSE_WAIT sockets again, with tcp_info for how long they have waited.
    let close_wait = StateFlags::from_bits_truncate(1 << 8);
    let waiting = sock_diag::dump(
        Query {
            states: close_wait,
            tcp_info: true,
        },
        sockets::MAX_CLOSE_WAIT * 4,
    )?;
    let mut sockets: Vec<DiagSocket> = all.sockets.into_iter().filter(|s| s.state != 8).collect();
    sockets.extend(waiting.sockets);
    Ok(Raw {
        counters,
        sysctls: sysctls::read(),
        sockstat,
        sockets,
    })
}

/// Paths into namespace `id` found by walking `/proc` (a `--netns` inode no
/// event has named a process of yet).
fn find_paths(id: u32) -> Vec<PathBuf> {
    let mut found = BTreeMap::new();
    if let Ok(processes) = procfs::process::all_processes() {
        for process in processes.flatten() {
            netns::record_threads(&process, &mut found);
            if found.contains_key(&id) {
                break;
            }
        }
    }
    netns::add_named(&mut found);
    found.remove(&id).unwrap_or_else(|| {
        warn!("network namespace {id}: no process or /run/netns name leads to it; not sampled");
        Vec::new()
    })
}

fn describe(pid: u32) -> Option<Process> {
    let owner = census::describe_process(pid)?;
    Some(Process {
        pid: owner.pid,
        tid: owner.pid,
        comm: owner.comm,
        uid: owner.uid,
        cgroup_id: owner.cgroup_id,
        source: Some("census".into()),
        closed_ms_before: None,
        cgroup: None,
        unit: None,
        container: None,
    })
}

fn process_fds(pid: u32) -> Option<ProcessFds> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let fds = process.fd_count().ok()? as u64;
    let fd_limit = match process.limits().ok()?.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(v) => Some(v),
        procfs::process::LimitValue::Unlimited => None,
    };
    let comm = process.stat().map(|s| s.comm).unwrap_or_default();
    Some(ProcessFds {
        pid,
        comm,
        fds,
        fd_limit,
    })
}
