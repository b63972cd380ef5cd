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
    sync::{
        Arc,
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    },
    thread,
    time::{Duration, Instant},
};

use chrono::Utc;
use netlink_packet_sock_diag::inet::StateFlags;
use nix::time::{ClockId, clock_gettime};
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{debug, info, warn};

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
        sock_diag::{self, Query},
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
/// Share of one CPU reading a namespace's sockets may take. It costs in
/// proportion to their number (a server churning connections holds hundreds
/// of thousands in TIME_WAIT), so a namespace whose socket dump and summary
/// cost more than this share of its interval is sampled less often.
const CPU_BUDGET: f64 = 0.05;
/// A namespace is sampled at least this often, whatever its samples cost.
const LONGEST_INTERVAL: Duration = Duration::from_secs(30);

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
    let mut sampler = Sampler::new(names, fixed, interval);
    sampler.backlogs = backlogs;
    for sample in sampler.sample_all(true) {
        let _ = sample_tx.try_send(sample);
    }
    thread::Builder::new()
        .name("tcpwatch-sampler".into())
        .spawn(move || sampler.run(&hint_rx, &sample_tx))?;
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
    /// When its next periodic sample is due (see [`CPU_BUDGET`]).
    due: Option<Instant>,
    /// Its interval is stretched past the configured one.
    stretched: bool,
    /// That has been logged (once per namespace).
    told: bool,
}

impl Namespace {
    /// A namespace not sampled yet, active `now`.
    fn new(paths: Vec<PathBuf>, fixed: bool, now: Instant) -> Self {
        Self {
            paths,
            fixed,
            last_active: now,
            counters: None,
            due: None,
            stretched: false,
            told: false,
        }
    }
}

/// How long to wait before sampling again a namespace whose sample took `cost`
/// of CPU: the configured `interval`, or longer so that samples stay within
/// [`CPU_BUDGET`], at most [`LONGEST_INTERVAL`].
fn next_interval(interval: Duration, cost: Duration) -> Duration {
    let budgeted = cost.div_f64(CPU_BUDGET);
    interval.max(budgeted.min(LONGEST_INTERVAL))
}

struct Sampler {
    /// Shared with each namespace thread, which names the states it counts.
    names: Arc<KernelNames>,
    namespaces: BTreeMap<u32, Namespace>,
    holders: HashMap<u64, u32>,
    last_resolve: Option<Instant>,
    backlogs: Option<Backlogs>,
    /// The configured interval between samples.
    interval: Duration,
}

impl Sampler {
    fn new(names: KernelNames, fixed: Vec<(u32, Option<PathBuf>)>, interval: Duration) -> Self {
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
            namespaces.insert(ns, Namespace::new(path.into_iter().collect(), true, now));
        }
        Self {
            names: Arc::new(names),
            namespaces,
            holders: HashMap::new(),
            last_resolve: None,
            backlogs: None,
            interval,
        }
    }

    fn run(&mut self, hints: &Receiver<Message>, out: &tokio_mpsc::Sender<SampleRecord>) {
        let interval = self.interval;
        let mut next = Instant::now() + interval;
        loop {
            let force = match hints.recv_timeout(next.saturating_duration_since(Instant::now())) {
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
                Ok(Message::SampleNow) => true,
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            next = Instant::now() + interval;
            for sample in self.sample_all(force) {
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
            self.namespaces
                .insert(hint.netns, Namespace::new(Vec::new(), false, now));
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

    /// Samples the namespaces that are due, or all of them when `force`d (at
    /// start and at stop).
    fn sample_all(&mut self, force: bool) -> Vec<SampleRecord> {
        let now = Instant::now();
        self.namespaces
            .retain(|_, ns| ns.fixed || now.duration_since(ns.last_active) < ACTIVE_FOR);
        // Ticks come a little late or early: a namespace due within a quarter
        // of an interval is sampled on this one.
        let horizon = now + self.interval / 4;
        let wanted: Vec<u32> = self
            .namespaces
            .iter()
            .filter(|(_, ns)| force || ns.due.is_none_or(|due| due <= horizon))
            .map(|(id, _)| *id)
            .collect();
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
        let names = Arc::clone(&self.names);
        match netns::run_in(id, paths, move || collect(&names)) {
            Ok(raw) => {
                self.schedule(id, raw.cpu);
                Some(self.build(id, raw))
            }
            Err(e) => {
                debug!("sampling netns {id}: {e}");
                None
            }
        }
    }

    /// Sets when namespace `id` is due again, its last sample having cost
    /// `cost` of CPU. The first time that is later than the configured
    /// interval it is logged; later changes only at debug level (the cost
    /// moves with the number of sockets, and the journal must not flap).
    fn schedule(&mut self, id: u32, cost: Duration) {
        let Some(ns) = self.namespaces.get_mut(&id) else {
            return;
        };
        let next = next_interval(self.interval, cost);
        ns.due = Some(Instant::now() + next);
        let stretched = next > self.interval;
        if stretched && !ns.told {
            ns.told = true;
            info!(
                "network namespace {id}: reading its sockets took {:.0} ms of CPU; sampling it every {:.1} s instead of every {:.1} s, to stay within {:.0}% of a CPU",
                cost.as_secs_f64() * 1000.0,
                next.as_secs_f64(),
                self.interval.as_secs_f64(),
                CPU_BUDGET * 100.0
            );
        } else if stretched != ns.stretched {
            debug!(
                "network namespace {id}: sample cost {:.1} ms of CPU; next in {:.1} s",
                cost.as_secs_f64() * 1000.0,
                next.as_secs_f64()
            );
        }
        ns.stretched = stretched;
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
        } = raw.summary;
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
    /// CPU the namespace thread spent dumping and summarising its sockets
    /// (its own and the kernel's, in its system calls).
    cpu: Duration,
    counters: Counters,
    sysctls: BTreeMap<String, String>,
    sockstat: Sockstat,
    summary: Summary,
}

/// Runs inside the namespace.
fn collect(names: &KernelNames) -> Result<Raw, String> {
    let mut counters = Counters::new();
    for file in ["netstat", "snmp"] {
        let text = fs::read_to_string(format!("/proc/thread-self/net/{file}"))
            .map_err(|e| format!("/proc/thread-self/net/{file}: {e}"))?;
        netstat::parse(&text, &mut counters);
    }
    let sockstat = fs::read_to_string("/proc/thread-self/net/sockstat")
        .map(|t| parse_sockstat(&t))
        .unwrap_or_default();
    // Only the part that grows with the number of sockets counts against the
    // budget: the fixed reads cost about the same in every namespace, and on
    // a slow machine (an emulated guest) they alone must not defer samples.
    let started = thread_cpu();
    let mut sockets = sock_diag::dump(Query::all(), MAX_SOCKETS)?.sockets;
    // CLOSE_WAIT sockets again, with tcp_info for how long they have waited.
    if let Some(close_wait) = names.state_number("CLOSE_WAIT") {
        let waiting = sock_diag::dump(
            Query {
                states: StateFlags::from_bits_truncate(
                    1u32.checked_shl(u32::from(close_wait)).unwrap_or(0),
                ),
                tcp_info: true,
            },
            sockets::MAX_CLOSE_WAIT * 4,
        )?;
        sockets.retain(|s| s.state != close_wait);
        sockets.extend(waiting.sockets);
    }
    let summary = sockets::summarise(&sockets, names);
    let cpu = thread_cpu().saturating_sub(started);
    let sysctls = sysctls::read();
    Ok(Raw {
        cpu,
        counters,
        sysctls,
        sockstat,
        summary,
    })
}

/// CPU time of the calling thread (zero if the clock cannot be read).
fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_costly_sample_stretches_the_interval_within_bounds() {
        let second = Duration::from_secs(1);
        // Cheap: the configured interval.
        assert_eq!(next_interval(second, Duration::from_millis(5)), second);
        // 40 ms (a few sockets in an emulated guest): not deferred.
        assert_eq!(next_interval(second, Duration::from_millis(40)), second);
        // 100 ms of CPU at 5%: every 2 s.
        assert_eq!(
            next_interval(second, Duration::from_millis(100)),
            Duration::from_secs(2)
        );
        // Never past the longest interval, never below the configured one.
        assert_eq!(
            next_interval(second, Duration::from_secs(5)),
            LONGEST_INTERVAL
        );
        let minute = Duration::from_secs(60);
        assert_eq!(next_interval(minute, Duration::from_secs(5)), minute);
    }
}
