//! What `tcpwatch top` shows, kept as bounded aggregates: resets and findings
//! by cause, by owner and by service port, the pile-ups the namespace sampler
//! sees (sockets per state, the ports they sit on, full accept queues), the
//! latest findings, and the pipeline's losses. Pure bookkeeping: no terminal,
//! no clock (times come from the records, "now" from the caller).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};

use crate::{
    context::sample::SampleRecord,
    events::{
        counters::KernelCounters,
        model::{AggregateRecord, EventRecord, Flow, Kind, Process, StormPhase, StormRecord},
    },
    explain::{cause::Cause, finding::FindingRecord},
    sinks::sink::Progress,
};

/// Distinct rows kept per table (owners, ports); beyond it the least counted
/// row is folded into "others".
pub const TABLE_ROWS: usize = 256;
/// Latest findings kept.
pub const LATEST: usize = 32;
/// Namespaces whose latest sample is kept; beyond it the one sampled longest
/// ago is forgotten.
pub const NAMESPACES: usize = 64;
/// Seconds over which the reset rate is measured.
const RATE_WINDOW: i64 = 10;
/// Socket states that pile up, in the order shown.
pub const PILE_UP_STATES: [&str; 5] = [
    "TIME_WAIT",
    "CLOSE_WAIT",
    "SYN_RECV",
    "FIN_WAIT2",
    "LAST_ACK",
];

/// Counts of one row of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Resets (sent and received; storm aggregates count each event).
    pub resets: u64,
    /// Finding occurrences.
    pub findings: u64,
}

impl Row {
    fn weight(self) -> u64 {
        self.resets.saturating_add(self.findings)
    }

    fn absorb(&mut self, other: Row) {
        self.resets = self.resets.saturating_add(other.resets);
        self.findings = self.findings.saturating_add(other.findings);
    }
}

/// A table of at most [`TABLE_ROWS`] rows; what does not fit is counted in
/// [`Table::others`].
#[derive(Clone, Debug)]
pub struct Table<K> {
    rows: HashMap<K, Row>,
    others: Row,
    folded: u64,
    cap: usize,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            others: Row::default(),
            folded: 0,
            cap: TABLE_ROWS,
        }
    }
}

impl<K: std::hash::Hash + Eq + Ord + Clone> Table<K> {
    /// A table of at most `cap` rows.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            ..Self::default()
        }
    }

    /// Adds `row` to `key`'s row. When the table is full, the least counted
    /// row makes room (its counts go to "others").
    pub fn add(&mut self, key: K, row: Row) {
        if let Some(existing) = self.rows.get_mut(&key) {
            existing.absorb(row);
            return;
        }
        if self.rows.len() >= self.cap {
            // Least counted first; of equals, the greatest key (deterministic).
            let smallest = self
                .rows
                .iter()
                .min_by(|a, b| a.1.weight().cmp(&b.1.weight()).then(b.0.cmp(a.0)))
                .map(|(k, _)| k.clone());
            if let Some(smallest) = smallest
                && let Some(gone) = self.rows.remove(&smallest)
            {
                self.others.absorb(gone);
                self.folded += 1;
            }
        }
        self.rows.insert(key, row);
    }

    /// Rows, most counted first (ties by key).
    pub fn ranked(&self) -> Vec<(&K, Row)> {
        let mut rows: Vec<_> = self.rows.iter().map(|(k, r)| (k, *r)).collect();
        rows.sort_by(|a, b| b.1.weight().cmp(&a.1.weight()).then(a.0.cmp(b.0)));
        rows
    }

    /// Counts of rows that were folded away to make room.
    pub fn others(&self) -> Row {
        self.others
    }

    /// How many rows were folded into [`Table::others`].
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Rows kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Who a row of the owner table is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// `comm[pid]`, or `nobody` for resets no process owns or listens for.
    pub name: String,
    /// The systemd unit or (short) container id, when the cgroup names one.
    pub place: Option<String>,
}

impl Owner {
    fn of(process: Option<&Process>) -> Self {
        match process {
            Some(p) => Self {
                name: format!("{}[{}]", p.comm, p.pid),
                place: p
                    .unit
                    .clone()
                    .or_else(|| p.container.as_ref().map(|c| c.chars().take(12).collect())),
            },
            None => Self {
                name: "nobody".into(),
                place: None,
            },
        }
    }
}

/// One row of the causes table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CauseRow {
    /// Occurrences.
    pub count: u64,
    /// The latest occurrence.
    pub last: DateTime<Utc>,
}

/// A finding as the latest-findings list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    /// When.
    pub time: DateTime<Utc>,
    /// Its cause.
    pub cause: Cause,
    /// The service port, when it has one.
    pub port: Option<u16>,
    /// Who it is about (or the peer, for resets no process owns).
    pub owner: Owner,
    /// Its summary: what happened, with the numbers.
    pub summary: String,
    /// Occurrences it stands for.
    pub count: u64,
}

/// The latest sample of one namespace, reduced to what the pile-up panel shows.
#[derive(Clone, Debug, Default)]
struct Pile {
    time: Option<DateTime<Utc>>,
    states: BTreeMap<String, u32>,
    /// Per-second growth of each pile-up state since the previous sample.
    growth: BTreeMap<String, f64>,
    /// (port, state, count) for pile-up states.
    ports: Vec<(u16, String, u32)>,
    /// (local, queue, backlog, owner) of listeners with a queue.
    queues: Vec<(String, u32, u32, Owner)>,
}

/// A listener whose accept queue is not empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    /// `addr:port`.
    pub local: String,
    /// Connections waiting to be accepted.
    pub queue: u32,
    /// The queue's limit.
    pub backlog: u32,
    /// Who listens.
    pub owner: Owner,
}

/// One pile-up state over the sampled namespaces.
#[derive(Clone, Debug, PartialEq)]
pub struct PileState {
    /// State name (`TIME_WAIT`, ...).
    pub state: &'static str,
    /// Sockets in it.
    pub count: u64,
    /// Growth per second since the previous samples.
    pub growth: f64,
    /// The local port holding most of them, and how many.
    pub top_port: Option<(u16, u32)>,
}

/// The pile-up panel's content.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pileup {
    /// Namespaces sampled.
    pub namespaces: usize,
    /// When the latest sample was taken (`None`: no sample yet).
    pub latest: Option<DateTime<Utc>>,
    /// The pile-up states.
    pub states: Vec<PileState>,
    /// Listeners with connections waiting, fullest first.
    pub queues: Vec<Queue>,
}

/// Everything `top` shows.
#[derive(Debug)]
pub struct Board {
    /// When the view started.
    pub since: DateTime<Utc>,
    /// Resets sent (events and storm aggregates).
    pub resets_sent: u64,
    /// Resets received.
    pub resets_received: u64,
    /// Finding occurrences.
    pub findings: u64,
    causes: BTreeMap<Cause, CauseRow>,
    /// Resets and findings per owner.
    pub owners: Table<Owner>,
    /// Resets and findings per service port.
    pub ports: Table<u16>,
    latest: VecDeque<Latest>,
    /// Resets per second (second, count), the last [`RATE_WINDOW`] seconds.
    recent: VecDeque<(i64, u64)>,
    piles: HashMap<u32, Pile>,
    /// Namespaces forgotten because [`NAMESPACES`] were already kept.
    pub namespaces_forgotten: u64,
    /// A storm is going on (the kernel summarises events).
    pub storm: bool,
    /// The kernel-side counters (lost, summarised, ...), as last read.
    pub kernel: KernelCounters,
    /// The pipeline's own counters.
    pub progress: Progress,
}

impl Board {
    /// An empty board, started at `since`.
    pub fn new(since: DateTime<Utc>) -> Self {
        Self {
            since,
            resets_sent: 0,
            resets_received: 0,
            findings: 0,
            causes: BTreeMap::new(),
            owners: Table::default(),
            ports: Table::default(),
            latest: VecDeque::with_capacity(LATEST),
            recent: VecDeque::with_capacity(RATE_WINDOW as usize + 1),
            piles: HashMap::new(),
            namespaces_forgotten: 0,
            storm: false,
            kernel: KernelCounters::default(),
            progress: Progress::default(),
        }
    }

    /// Counts a reset event (state events are not counted: the pile-ups come
    /// from the sampler).
    pub fn event(&mut self, event: &EventRecord) {
        if event.kind == Kind::State {
            return;
        }
        let owner = event.owner.as_ref().or(event.listener.as_ref());
        self.resets(
            event.kind,
            event.time,
            Owner::of(owner),
            service_port(&event.flow),
            1,
        );
    }

    /// Counts resets the kernel summarised during a storm.
    pub fn aggregate(&mut self, aggregate: &AggregateRecord) {
        if aggregate.kind == Kind::State {
            return;
        }
        let owner = aggregate.owner.as_ref().or(aggregate.listener.as_ref());
        self.resets(
            aggregate.kind,
            aggregate.time,
            Owner::of(owner),
            Some(aggregate.port),
            aggregate.count,
        );
    }

    fn resets(&mut self, kind: Kind, time: DateTime<Utc>, owner: Owner, port: Option<u16>, n: u64) {
        match kind {
            Kind::ResetSent => self.resets_sent = self.resets_sent.saturating_add(n),
            Kind::ResetReceived => self.resets_received = self.resets_received.saturating_add(n),
            Kind::State | Kind::Drop | Kind::AppError => return,
        }
        let row = Row {
            resets: n,
            findings: 0,
        };
        self.owners.add(owner, row);
        if let Some(port) = port {
            self.ports.add(port, row);
        }
        let second = time.timestamp();
        match self.recent.back_mut() {
            Some((s, count)) if *s == second => *count = count.saturating_add(n),
            // Out of order by more than a second: count it in the latest second.
            Some((s, count)) if *s > second => *count = count.saturating_add(n),
            _ => self.recent.push_back((second, n)),
        }
        while self
            .recent
            .front()
            .is_some_and(|(s, _)| *s <= second - RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Counts a finding and keeps it among the latest.
    pub fn finding(&mut self, finding: &FindingRecord) {
        let n = finding.count.max(1);
        self.findings = self.findings.saturating_add(n);
        let row = self.causes.entry(finding.cause).or_insert(CauseRow {
            count: 0,
            last: finding.time,
        });
        row.count = row.count.saturating_add(n);
        row.last = row.last.max(finding.time);
        let owner = Owner::of(finding.owner.as_ref().or(finding.peer_owner.as_ref()));
        let port = finding
            .port
            .or_else(|| finding.flow.as_ref().and_then(service_port));
        let counts = Row {
            resets: 0,
            findings: n,
        };
        self.owners.add(owner.clone(), counts);
        if let Some(port) = port {
            self.ports.add(port, counts);
        }
        if self.latest.len() >= LATEST {
            self.latest.pop_back();
        }
        self.latest.push_front(Latest {
            time: finding.time,
            cause: finding.cause,
            port,
            owner,
            summary: finding.summary.clone(),
            count: n,
        });
    }

    /// Keeps the latest sample of a namespace.
    pub fn sample(&mut self, sample: &SampleRecord) {
        if !self.piles.contains_key(&sample.netns) && self.piles.len() >= NAMESPACES {
            let oldest = self
                .piles
                .iter()
                .min_by_key(|(ns, p)| (p.time, **ns))
                .map(|(ns, _)| *ns);
            if let Some(oldest) = oldest {
                self.piles.remove(&oldest);
                self.namespaces_forgotten += 1;
            }
        }
        let pile = self.piles.entry(sample.netns).or_default();
        let seconds = match pile.time {
            Some(before) => (sample.time - before).as_seconds_f64(),
            None => 0.0,
        };
        let mut growth = BTreeMap::new();
        if seconds > 0.0 {
            for state in PILE_UP_STATES {
                let now = f64::from(sample.states.get(state).copied().unwrap_or(0));
                let before = f64::from(pile.states.get(state).copied().unwrap_or(0));
                growth.insert(state.to_owned(), (now - before) / seconds);
            }
        }
        let ports = sample
            .ports
            .iter()
            .flat_map(|p| {
                p.states
                    .iter()
                    .filter(|(state, n)| PILE_UP_STATES.contains(&state.as_str()) && **n > 0)
                    .map(|(state, n)| (p.port, state.clone(), *n))
            })
            .collect();
        let queues = sample
            .listeners
            .iter()
            .filter(|l| l.queue > 0)
            .map(|l| {
                (
                    l.local.clone(),
                    l.queue,
                    l.backlog,
                    Owner::of(l.owner.as_ref()),
                )
            })
            .collect();
        *pile = Pile {
            time: Some(sample.time),
            states: sample.states.clone(),
            growth,
            ports,
            queues,
        };
    }

    /// Takes a storm start or end.
    pub fn storm(&mut self, storm: &StormRecord) {
        self.storm = storm.phase == StormPhase::Started;
    }

    /// Causes, most frequent first (ties in documentation order).
    pub fn causes(&self) -> Vec<(Cause, CauseRow)> {
        let mut causes: Vec<_> = self.causes.iter().map(|(c, r)| (*c, *r)).collect();
        causes.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
        causes
    }

    /// The latest findings, newest first.
    pub fn latest(&self) -> impl Iterator<Item = &Latest> {
        self.latest.iter()
    }

    /// Resets per second over the last seconds up to `now`.
    pub fn reset_rate(&self, now: DateTime<Utc>) -> f64 {
        let from = now.timestamp() - RATE_WINDOW;
        let n: u64 = self
            .recent
            .iter()
            .filter(|(s, _)| *s > from)
            .map(|(_, n)| n)
            .sum();
        n as f64 / RATE_WINDOW as f64
    }

    /// The pile-ups over every sampled namespace.
    pub fn pileup(&self) -> Pileup {
        let mut states = Vec::new();
        for state in PILE_UP_STATES {
            let count = self
                .piles
                .values()
                .map(|p| u64::from(p.states.get(state).copied().unwrap_or(0)))
                .sum();
            let growth = self
                .piles
                .values()
                .filter_map(|p| p.growth.get(state))
                .sum();
            let mut by_port: BTreeMap<u16, u32> = BTreeMap::new();
            for pile in self.piles.values() {
                for (port, s, n) in &pile.ports {
                    if s == state {
                        let entry = by_port.entry(*port).or_default();
                        *entry = entry.saturating_add(*n);
                    }
                }
            }
            let top_port = by_port
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            states.push(PileState {
                state,
                count,
                growth,
                top_port,
            });
        }
        let mut queues: Vec<Queue> = self
            .piles
            .values()
            .flat_map(|p| &p.queues)
            .map(|(local, queue, backlog, owner)| Queue {
                local: local.clone(),
                queue: *queue,
                backlog: *backlog,
                owner: owner.clone(),
            })
            .collect();
        queues.sort_by(|a, b| {
            fullness(b)
                .total_cmp(&fullness(a))
                .then(b.queue.cmp(&a.queue))
                .then(a.local.cmp(&b.local))
        });
        queues.truncate(8);
        Pileup {
            namespaces: self.piles.len(),
            latest: self.piles.values().filter_map(|p| p.time).max(),
            states,
            queues,
        }
    }
}

fn fullness(q: &Queue) -> f64 {
    f64::from(q.queue) / f64::from(q.backlog.max(1))
}

/// The port of an `addr:port` endpoint (IPv6 as `[addr]:port`).
fn port(endpoint: &str) -> Option<u16> {
    endpoint.rsplit_once(':')?.1.parse().ok()
}

/// The service port of a flow: the lower of its two ports (as storm
/// aggregates count), so that a closed port and the client's resets from it
/// land in one row rather than one row per ephemeral port.
pub fn service_port(flow: &Flow) -> Option<u16> {
    match (port(&flow.src), port(&flow.dst)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        context::sample::{Listener, PortSockets},
        explain::testkit::{self, at, proc},
    };

    fn no_listener_session() -> Vec<FindingRecord> {
        let client = testkit::owner(4121, "curl", "connect");
        testkit::run(vec![
            testkit::with_segment(
                testkit::sent(
                    0,
                    "127.0.0.1:9",
                    "127.0.0.1:53122",
                    None,
                    Some("NO_SOCKET"),
                    None,
                    proc(4121, "curl"),
                ),
                &["SYN"],
                0,
            )
            .into(),
            testkit::received(
                1,
                "127.0.0.1:53122",
                "127.0.0.1:9",
                "SYN_SENT",
                Some(client),
                proc(0, "swapper/0"),
            )
            .into(),
        ])
    }

    #[test]
    fn resets_and_findings_by_cause_owner_and_port() {
        let mut board = Board::new(at(0));
        board.event(&testkit::sent(
            0,
            "127.0.0.1:9",
            "127.0.0.1:53122",
            None,
            Some("NO_SOCKET"),
            None,
            proc(4121, "curl"),
        ));
        board.event(&testkit::received(
            1,
            "127.0.0.1:53122",
            "127.0.0.1:9",
            "SYN_SENT",
            Some(testkit::owner(4121, "curl", "connect")),
            proc(0, "swapper/0"),
        ));
        board.event(&testkit::state(
            2,
            "127.0.0.1:9",
            "127.0.0.1:53122",
            "ESTABLISHED",
            "FIN_WAIT1",
            None,
            proc(1, "x"),
        ));
        let findings = no_listener_session();
        assert!(!findings.is_empty(), "the engine explains the reset");
        for f in &findings {
            board.finding(f);
        }
        assert_eq!((board.resets_sent, board.resets_received), (1, 1));
        let causes = board.causes();
        assert_eq!(causes[0].0, Cause::NoListener);
        assert_eq!(causes[0].1.count, 1);
        let ports = board.ports.ranked();
        assert_eq!(
            ports.len(),
            1,
            "one row for port 9, not one per ephemeral port"
        );
        assert_eq!(*ports[0].0, 9);
        assert_eq!(
            ports[0].1,
            Row {
                resets: 2,
                findings: 1
            }
        );
        let owners = board.owners.ranked();
        let curl = owners.iter().find(|(o, _)| o.name == "curl[4121]").unwrap();
        // The client's received reset, and the finding about its attempt.
        assert_eq!(
            curl.1,
            Row {
                resets: 1,
                findings: 1
            }
        );
        let nobody = owners.iter().find(|(o, _)| o.name == "nobody").unwrap();
        assert_eq!(nobody.1.resets, 1);
        let latest: Vec<_> = board.latest().collect();
        assert_eq!(latest[0].cause, Cause::NoListener);
        assert_eq!(latest[0].port, Some(9));
        assert!(board.reset_rate(at(1000)) > 0.0);
        assert_eq!(board.reset_rate(at(60_000)), 0.0);
    }

    #[test]
    fn tables_are_bounded_and_count_the_rest() {
        let mut table: Table<u16> = Table::with_capacity(3);
        for port in 1..=10u16 {
            table.add(
                port,
                Row {
                    resets: u64::from(port),
                    findings: 0,
                },
            );
        }
        table.add(
            10,
            Row {
                resets: 5,
                findings: 0,
            },
        );
        assert_eq!(table.len(), 3);
        assert_eq!(table.folded(), 7);
        let kept: Vec<u16> = table.ranked().iter().map(|(k, _)| **k).collect();
        assert_eq!(kept, [10, 9, 8], "the most counted stay");
        assert_eq!(table.others().resets, (1..=7).sum::<u64>());

        let mut board = Board::new(at(0));
        for i in 0..(TABLE_ROWS as u32 + 50) {
            board.event(&testkit::received(
                i64::from(i),
                &format!("10.0.0.1:{}", 40_000 + i),
                &format!("10.0.0.2:{}", 1000 + i),
                "ESTABLISHED",
                Some(testkit::owner(1000 + i, "worker", "connect")),
                proc(0, "swapper/0"),
            ));
        }
        assert_eq!(board.owners.len(), TABLE_ROWS);
        assert_eq!(board.ports.len(), TABLE_ROWS);
        assert_eq!(board.owners.folded(), 50);
        assert_eq!(board.owners.others().resets, 50);
        for i in 0..(LATEST as u64 + 10) {
            let mut f = no_listener_session().remove(0);
            f.summary = format!("finding {i}");
            board.finding(&f);
        }
        assert_eq!(board.latest().count(), LATEST);
        assert_eq!(
            board.latest().next().unwrap().summary,
            format!("finding {}", LATEST as u64 + 9),
            "newest first"
        );
    }

    #[test]
    fn pileup_from_samples_with_growth_ports_and_queues() {
        let mut board = Board::new(at(0));
        assert_eq!(board.pileup().latest, None);
        let mut first = testkit::sample(0);
        first.states.insert("TIME_WAIT".into(), 100);
        board.sample(&first);
        let mut second = testkit::sample(2000);
        second.states.insert("TIME_WAIT".into(), 300);
        second.states.insert("CLOSE_WAIT".into(), 12);
        second.ports = vec![
            PortSockets {
                port: 8086,
                states: [("TIME_WAIT".to_owned(), 290)].into(),
            },
            PortSockets {
                port: 8080,
                states: [("TIME_WAIT".to_owned(), 10), ("CLOSE_WAIT".to_owned(), 12)].into(),
            },
        ];
        second.listeners = vec![
            Listener {
                local: "0.0.0.0:8080".into(),
                queue: 128,
                backlog: 128,
                requested_backlog: None,
                owner: Some(proc(77, "api")),
            },
            Listener {
                local: "0.0.0.0:22".into(),
                queue: 0,
                backlog: 128,
                requested_backlog: None,
                owner: None,
            },
        ];
        board.sample(&second);
        let pile = board.pileup();
        assert_eq!(pile.namespaces, 1);
        let tw = &pile.states[0];
        assert_eq!((tw.state, tw.count), ("TIME_WAIT", 300));
        assert!((tw.growth - 100.0).abs() < 1e-9, "{}", tw.growth);
        assert_eq!(tw.top_port, Some((8086, 290)));
        assert_eq!(pile.states[1].top_port, Some((8080, 12)));
        assert_eq!(pile.queues.len(), 1, "only listeners with a queue");
        assert_eq!(pile.queues[0].owner.name, "api[77]");

        for ns in 0..(NAMESPACES as u32 + 3) {
            let mut s = testkit::sample(3000 + i64::from(ns));
            s.netns = ns;
            board.sample(&s);
        }
        assert_eq!(board.pileup().namespaces, NAMESPACES);
        assert_eq!(board.namespaces_forgotten, 4);
    }

    #[test]
    fn service_ports_of_flows() {
        let flow = |src: &str, dst: &str| Flow {
            family: "ipv6".into(),
            src: src.into(),
            dst: dst.into(),
            netns: 1,
        };
        assert_eq!(service_port(&flow("[::1]:443", "[::1]:50000")), Some(443));
        assert_eq!(
            service_port(&flow("10.0.0.1:50000", "10.0.0.2:80")),
            Some(80)
        );
        assert_eq!(service_port(&flow("garbage", "10.0.0.2:80")), Some(80));
        assert_eq!(service_port(&flow("garbage", "also")), None);
    }
}
