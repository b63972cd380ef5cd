//! The recorder's store: events (of the configured kinds), findings, and what
//! storm mode reported (its start and end, and the events it summarised), oldest
//! first, kept for `recorder.retention` within `recorder.max_memory`. Memory is
//! estimated per record (its structure and the text it holds); when a new
//! record would pass the limit the oldest go first, and those dropped before
//! their retention ended are counted.

use std::{collections::VecDeque, io, mem::size_of, sync::Arc};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{
    config,
    context::sample::SampleRecord,
    events::model::{AggregateRecord, EventRecord, Flow, Kind, Process, StormRecord},
    explain::finding::FindingRecord,
    selection::{FlowKey, Selection},
    sinks::sink::Sink,
};

/// A recorded record.
#[derive(Clone, Debug)]
pub enum Recorded {
    /// An event.
    Event(Arc<EventRecord>),
    /// A finding.
    Finding(Arc<FindingRecord>),
    /// Storm mode started or ended.
    Storm(Arc<StormRecord>),
    /// Events summarised in the kernel during a storm.
    Aggregate(Arc<AggregateRecord>),
}

impl Recorded {
    /// Its time.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Self::Event(e) => e.time,
            Self::Finding(f) => f.time,
            Self::Storm(s) => s.time,
            Self::Aggregate(a) => a.time,
        }
    }
}

struct Entry {
    record: Recorded,
    size: usize,
    at: DateTime<Utc>,
}

/// What the store holds and has dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Events held.
    pub events: u64,
    /// Findings held.
    pub findings: u64,
    /// Estimated bytes held.
    pub memory: u64,
    /// Records dropped for memory before their retention ended.
    pub dropped: u64,
}

/// What a query found.
pub struct Answer {
    /// Matching records in time order.
    pub records: Vec<Recorded>,
    /// The oldest record still held (how far back the answer can reach).
    pub held_since: Option<DateTime<Utc>>,
    /// Records dropped for memory so far.
    pub dropped: u64,
}

/// The store.
pub struct Recorder {
    entries: VecDeque<Entry>,
    retention: TimeDelta,
    max_memory: usize,
    events: Vec<Kind>,
    stats: RecorderStats,
}

impl Recorder {
    /// A store as `[recorder]` bounds it.
    pub fn new(config: &config::Recorder) -> Self {
        let mut recorder = Self {
            entries: VecDeque::new(),
            retention: TimeDelta::zero(),
            max_memory: 0,
            events: Vec::new(),
            stats: RecorderStats::default(),
        };
        recorder.configure(config);
        recorder
    }

    /// Applies new bounds (dropping what no longer fits).
    pub fn configure(&mut self, config: &config::Recorder) {
        self.retention = TimeDelta::from_std(config.retention.0).unwrap_or(TimeDelta::MAX);
        self.max_memory = usize::try_from(config.max_memory.0).unwrap_or(usize::MAX);
        self.events = config.events.0.clone();
        self.make_room(0);
    }

    /// What it holds.
    pub fn stats(&self) -> RecorderStats {
        self.stats
    }

    fn push(&mut self, record: Recorded, size: usize) {
        let at = record.time();
        self.expire(at);
        self.make_room(size);
        match record {
            Recorded::Event(_) | Recorded::Aggregate(_) => self.stats.events += 1,
            Recorded::Finding(_) | Recorded::Storm(_) => self.stats.findings += 1,
        }
        self.stats.memory += size as u64;
        self.entries.push_back(Entry { record, size, at });
    }

    fn pop(&mut self) {
        if let Some(entry) = self.entries.pop_front() {
            self.stats.memory -= entry.size as u64;
            match entry.record {
                Recorded::Event(_) | Recorded::Aggregate(_) => self.stats.events -= 1,
                Recorded::Finding(_) | Recorded::Storm(_) => self.stats.findings -= 1,
            }
        }
    }

    /// Drops records older than the retention at `now`.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        let oldest = now - self.retention;
        while self.entries.front().is_some_and(|e| e.at < oldest) {
            self.pop();
        }
    }

    fn make_room(&mut self, size: usize) {
        while !self.entries.is_empty() && self.stats.memory as usize + size > self.max_memory {
            self.pop();
            self.stats.dropped += 1;
        }
    }

    /// Records at or after `since` that `selection` selects, in time order.
    pub fn select(&self, since: DateTime<Utc>, selection: &Selection) -> Answer {
        let recent = || self.entries.iter().filter(|e| e.record.time() >= since);
        let flows: Vec<FlowKey> = if selection.causes.is_empty() {
            Vec::new()
        } else {
            recent()
                .filter_map(|e| match &e.record {
                    Recorded::Finding(f) if selection.finding(f) => {
                        f.flow.as_ref().map(FlowKey::of)
                    }
                    _ => None,
                })
                .collect()
        };
        let mut records: Vec<Recorded> = recent()
            .filter(|e| match &e.record {
                Recorded::Event(event) => selection.event_of(event, &flows),
                Recorded::Finding(finding) => selection.finding(finding),
                Recorded::Aggregate(aggregate) => selection.aggregate(aggregate),
                Recorded::Storm(_) => true,
            })
            .map(|e| e.record.clone())
            .collect();
        records.sort_by_key(Recorded::time);
        Answer {
            records,
            held_since: self.entries.front().map(|e| e.at),
            dropped: self.stats.dropped,
        }
    }
}

impl Sink for Recorder {
    fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        if self.events.contains(&event.kind) {
            let size = event_size(event);
            self.push(Recorded::Event(Arc::new(event.clone())), size);
        }
        Ok(())
    }

    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        let size = finding_size(finding);
        self.push(Recorded::Finding(Arc::new(finding.clone())), size);
        Ok(())
    }

    fn sample(&mut self, _sample: &SampleRecord) -> io::Result<()> {
        Ok(())
    }

    fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        let size = size_of::<StormRecord>() + ALLOCATION;
        self.push(Recorded::Storm(Arc::new(storm.clone())), size);
        Ok(())
    }

    fn aggregate(&mut self, aggregate: &AggregateRecord) -> io::Result<()> {
        if self.events.contains(&aggregate.kind) {
            let size = aggregate_size(aggregate);
            self.push(Recorded::Aggregate(Arc::new(aggregate.clone())), size);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.expire(Utc::now());
        Ok(())
    }
}

/// Per-allocation overhead assumed in the estimates.
const ALLOCATION: usize = 16;

fn text(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        s.len() + ALLOCATION
    }
}

fn opt(s: Option<&String>) -> usize {
    s.map_or(0, |s| text(s))
}

fn process_size(p: &Process) -> usize {
    text(&p.comm)
        + opt(p.source.as_ref())
        + opt(p.cgroup.as_ref())
        + opt(p.unit.as_ref())
        + opt(p.container.as_ref())
}

fn flow_size(f: &Flow) -> usize {
    text(&f.family) + text(&f.src) + text(&f.dst)
}

/// Estimated memory of an event.
pub fn event_size(e: &EventRecord) -> usize {
    size_of::<EventRecord>()
        + 2 * ALLOCATION
        + flow_size(&e.flow)
        + [
            &e.old_state,
            &e.new_state,
            &e.state,
            &e.reason,
            &e.error,
            &e.socket,
        ]
        .into_iter()
        .map(|s| opt(s.as_ref()))
        .sum::<usize>()
        + text(&e.hook)
        + e.owner
            .as_ref()
            .map_or(0, |p| size_of::<Process>() + process_size(p))
        + e.listener
            .as_ref()
            .map_or(0, |p| size_of::<Process>() + process_size(p))
        + process_size(&e.actor)
        + e.segment.as_ref().map_or(0, |s| {
            ALLOCATION
                + s.flags
                    .iter()
                    .map(|f| size_of::<String>() + text(f))
                    .sum::<usize>()
        })
}

/// Estimated memory of a storm summary.
pub fn aggregate_size(a: &AggregateRecord) -> usize {
    size_of::<AggregateRecord>()
        + 2 * ALLOCATION
        + flow_size(&a.example)
        + [&a.old_state, &a.new_state, &a.state, &a.reason]
            .into_iter()
            .map(|s| opt(s.as_ref()))
            .sum::<usize>()
        + text(&a.port_side)
        + [&a.owner, &a.listener]
            .into_iter()
            .flatten()
            .map(|p| size_of::<Process>() + process_size(p))
            .sum::<usize>()
        + a.segment_flags.as_ref().map_or(0, |f| {
            ALLOCATION
                + f.iter()
                    .map(|f| size_of::<String>() + text(f))
                    .sum::<usize>()
        })
}

/// Estimated memory of a finding.
pub fn finding_size(f: &FindingRecord) -> usize {
    size_of::<FindingRecord>()
        + 2 * ALLOCATION
        + text(&f.title)
        + text(&f.summary)
        + text(&f.fix)
        + f.flow.as_ref().map_or(0, flow_size)
        + [&f.owner, &f.peer_owner]
            .into_iter()
            .flatten()
            .map(|p| size_of::<Process>() + process_size(p))
            .sum::<usize>()
        + f.evidence
            .iter()
            .map(|e| 96 + text(&e.fact) + text(&e.text) + e.value.to_string().len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{Dur, EventKinds, Size},
        explain::{cause::Cause, testkit},
    };

    fn config(retention_s: u64, memory: u64) -> config::Recorder {
        config::Recorder {
            retention: Dur(std::time::Duration::from_secs(retention_s)),
            max_memory: Size(memory),
            events: EventKinds(vec![Kind::ResetSent, Kind::ResetReceived]),
        }
    }

    fn reset(ms: i64, port: u16, pid: u32) -> EventRecord {
        let p = testkit::proc(pid, "srv");
        testkit::sent(
            ms,
            &format!("127.0.0.1:{port}"),
            "127.0.0.1:5000",
            None,
            Some("NO_SOCKET"),
            Some(p.clone()),
            p,
        )
    }

    #[test]
    fn keeps_the_retention_and_the_memory_bound() {
        let mut r = Recorder::new(&config(60, 1 << 20));
        r.event(&reset(0, 80, 1)).unwrap();
        r.event(&testkit::state(
            0,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            "SYN_SENT",
            "ESTABLISHED",
            None,
            testkit::proc(1, "x"),
        ))
        .unwrap();
        r.event(&reset(30_000, 81, 1)).unwrap();
        assert_eq!(
            r.stats().events,
            2,
            "state events are not recorded by default"
        );
        r.event(&reset(61_000, 82, 1)).unwrap();
        assert_eq!(r.stats().events, 2, "the first is past the retention");
        assert_eq!(r.stats().dropped, 0);
        let size = event_size(&reset(0, 80, 1)) as u64;
        let mut small = Recorder::new(&config(3600, 3 * size));
        for i in 0..10 {
            small.event(&reset(i, 80, 1)).unwrap();
        }
        assert_eq!(small.stats().events, 3);
        assert_eq!(small.stats().dropped, 7);
        assert!(small.stats().memory <= 3 * size);
    }

    #[test]
    fn selects_by_time_port_pid_and_cause_with_the_connections_events() {
        let mut r = Recorder::new(&config(3600, 1 << 20));
        r.event(&reset(0, 80, 1)).unwrap();
        r.event(&reset(1_000, 81, 2)).unwrap();
        let mut f = FindingRecord::new(
            Cause::NoListener,
            crate::explain::finding::Confidence::Exact,
            testkit::at(1_000),
            1,
            "s".into(),
            "f".into(),
        );
        f.flow = Some(reset(1_000, 81, 2).flow);
        r.finding(&f).unwrap();
        let all = r.select(testkit::at(0), &Selection::default());
        assert_eq!(all.records.len(), 3);
        let recent = r.select(testkit::at(500), &Selection::default());
        assert_eq!(recent.records.len(), 2);
        let by_port = Selection {
            ports: vec![80],
            ..Selection::default()
        };
        assert_eq!(r.select(testkit::at(0), &by_port).records.len(), 1);
        let by_pid = Selection {
            pids: vec![2],
            ..Selection::default()
        };
        assert_eq!(
            r.select(testkit::at(0), &by_pid).records.len(),
            1,
            "the finding has no owner"
        );
        let by_cause = Selection {
            causes: vec![Cause::NoListener],
            ..Selection::default()
        };
        let answer = r.select(testkit::at(0), &by_cause);
        assert_eq!(
            answer.records.len(),
            2,
            "the finding and its connection's reset"
        );
        assert!(matches!(answer.records[1], Recorded::Finding(_)));
        assert_eq!(answer.held_since, Some(testkit::at(0)));
    }
}
