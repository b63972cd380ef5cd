//! The explanation engine: feeds events and samples to the rules, holds each
//! finding for a short settle time (so the other end's events can name the
//! peer), pairs the two ends' findings of one connection, and aggregates repeats.
//!
//! The same engine runs live (`trace`) and on a recording (`explain --from`): it
//! only reads records, and its clock is the records' time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    application,
    cause::Cause,
    drops,
    finding::{Confidence, FindingRecord},
    history::{FlowId, History},
    infer::{self, Reason},
    namespaces::Namespaces,
    pairing::Pairing,
    rule::{Ctx, Draft, Reset, Rule},
    rulebook,
    summary::Summary,
    thresholds::Thresholds,
};
use crate::{
    context::sample::SampleRecord,
    events::{
        convert::received_error,
        model::{AggregateRecord, EventRecord, Kind, Process, RecordType, SCHEMA_VERSION, Segment},
    },
};

/// Resets waiting for their namespace's next sample, at most.
const AWAITING: usize = 4096;
/// An awaiting reset is decided without counters after this long.
const AWAIT_AT_MOST: TimeDelta = TimeDelta::seconds(5);
/// A pile-up still present is reported again after this long even if it did not grow.
const PILEUP_REMINDER: TimeDelta = TimeDelta::minutes(5);
/// Aggregation keys remembered.
const KEYS: usize = 10_000;
/// Findings held for their settle time, at most; beyond, the oldest is
/// released early (never dropped).
const HELD: usize = 10_000;

struct Pending {
    draft: Draft,
    ready_at: DateTime<Utc>,
}

struct Emitted {
    at: DateTime<Utc>,
    level: Option<u64>,
    suppressed: u64,
    latest: Option<FindingRecord>,
}

/// A reset whose cause depends on counters the next sample brings: a segment
/// other than a SYN that found no socket is a TIME_WAIT overflow when
/// TCPTimeWaitOverflow moved, and a forgotten connection otherwise.
/// Without BTF the segment is unknown: waiting also lets the other end's
/// events (a client failing to connect) arrive first.
fn waits_for_counters(event: &EventRecord, reason: &str) -> bool {
    reason == "NO_SOCKET"
        && event
            .segment
            .as_ref()
            .is_none_or(|s| !s.flags.iter().any(|f| f == "SYN"))
}

/// A connection the kernel closed holding an error it did not get from a
/// reset (a reset is explained by its own event): a timeout.
fn closed_with_error(event: &EventRecord) -> bool {
    event.new_state.as_deref() == Some("CLOSE") && event.error.as_deref() == Some("ETIMEDOUT")
}

/// Findings that yield to a specific finding about the same connection.
fn is_generic(cause: Cause) -> bool {
    matches!(cause, Cause::PeerReset | Cause::OtherReset)
}

/// Which rule hook an event is offered to.
#[derive(Clone, Copy)]
enum Offer {
    /// A reset sent or received.
    Reset,
    /// A close with an error and no reset.
    Close,
}

/// The engine.
pub struct Engine {
    history: History,
    namespaces: Namespaces,
    thresholds: Thresholds,
    rules: Vec<Box<dyn Rule>>,
    /// Findings held for their settle time, in release order.
    pending: BTreeMap<(DateTime<Utc>, u64), Pending>,
    /// Tie-breaker of `pending` keys.
    sequence: u64,
    /// Findings released before their time because `pending` was full.
    early: Vec<FindingRecord>,
    emitted: HashMap<String, Emitted>,
    /// The two ends of each connection, for pairing.
    pairing: Pairing,
    /// Resets waiting for their namespace's next sample, with their reason when
    /// it is already known (the counters then only choose between causes).
    awaiting: VecDeque<(EventRecord, Option<(String, Confidence)>)>,
    clock: Option<DateTime<Utc>>,
    /// Every finding occurrence, by cause, owner and port.
    pub summary: Summary,
}

impl Engine {
    /// An engine with every rule.
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            history: History::new(thresholds.max_flows),
            namespaces: Namespaces::default(),
            rules: rulebook::all(),
            thresholds,
            pending: BTreeMap::new(),
            sequence: 0,
            early: Vec::new(),
            emitted: HashMap::new(),
            pairing: Pairing::default(),
            awaiting: VecDeque::new(),
            clock: None,
            summary: Summary::default(),
        }
    }

    /// Changes the thresholds (the capacity of the flow history stays).
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = Thresholds {
            max_flows: self.thresholds.max_flows,
            ..thresholds
        };
    }

    /// Flow histories evicted because the table was full.
    pub fn evicted_flows(&self) -> u64 {
        self.history.evicted
    }

    /// Feeds an event; returns the findings ready now.
    pub fn event(&mut self, event: &EventRecord) -> Vec<FindingRecord> {
        let mut out = self.advance(event.time);
        self.history.record(event);
        if event.kind == Kind::State && closed_with_error(event) {
            self.explain_close(event);
            out.extend(self.advance(event.time));
            return out;
        }
        if matches!(event.kind, Kind::State | Kind::Drop | Kind::AppError) {
            return out;
        }
        match infer::of_event(event) {
            Reason::AwaitCounters => self.wait_for_sample(event, None),
            Reason::Known(reason, confidence) if waits_for_counters(event, &reason) => {
                self.wait_for_sample(event, Some((reason, confidence)));
            }
            Reason::Known(reason, confidence) => self.explain(event, Some(reason), confidence),
            Reason::None => self.explain(event, None, Confidence::Exact),
        }
        out.extend(self.advance(event.time));
        out
    }

    /// Feeds events the kernel summarised during a storm: one representative
    /// reset per record, explained like an event (but not added to the flow
    /// history: the events were not seen one by one), its finding standing for
    /// all `count` of them.
    pub fn summarised(&mut self, a: &AggregateRecord) -> Vec<FindingRecord> {
        let mut out = self.advance(a.time);
        if matches!(a.kind, Kind::State | Kind::Drop | Kind::AppError) {
            return out;
        }
        let event = EventRecord {
            schema_version: SCHEMA_VERSION,
            record: RecordType::Event,
            kind: a.kind,
            time: a.time,
            flow: a.example.clone(),
            old_state: None,
            new_state: None,
            state: a.state.clone(),
            reason: a.reason.clone(),
            error: (a.kind == Kind::ResetReceived)
                .then(|| received_error(a.state.as_deref()).to_owned()),
            syscall: None,
            soft_error: None,
            owner: a.owner.clone(),
            actor: Process {
                pid: 0,
                tid: 0,
                comm: "-".into(),
                uid: 0,
                cgroup_id: 0,
                source: None,
                closed_ms_before: None,
                cgroup: None,
                unit: None,
                container: None,
            },
            listener: a.listener.clone(),
            hook: "storm summary".into(),
            segment: a.segment_flags.clone().map(|flags| Segment {
                flags,
                payload_bytes: 0,
            }),
            socket: None,
            tcp: None,
            kstack: None,
            netfilter_hook: None,
        };
        let (reason, confidence) = match infer::of_event(&event) {
            Reason::Known(reason, confidence) => (Some(reason), confidence),
            Reason::AwaitCounters => match infer::from_counters(&event, &self.namespaces, a.time) {
                Reason::Known(reason, confidence) => (Some(reason), confidence),
                _ => (event.reason.clone(), Confidence::Inferred),
            },
            Reason::None => (None, Confidence::Exact),
        };
        self.explain_counted(&event, reason, confidence, Some(a.count));
        out.extend(self.advance(a.time));
        out
    }

    /// Feeds a namespace sample; returns the findings ready now.
    pub fn sample(&mut self, sample: &SampleRecord) -> Vec<FindingRecord> {
        let mut out = self.advance(sample.time);
        self.namespaces.record(sample);
        let now = sample.time;
        let (ready, waiting): (Vec<_>, Vec<_>) = self.awaiting.drain(..).partition(|(e, _)| {
            (e.flow.netns == sample.netns && e.time <= now) || now - e.time > AWAIT_AT_MOST
        });
        self.awaiting = waiting.into();
        for (event, known) in ready {
            self.decide_awaiting(&event, known, now);
        }
        let ctx = Ctx {
            history: &self.history,
            namespaces: &self.namespaces,
            thresholds: &self.thresholds,
        };
        let mut drafts = Vec::new();
        for rule in &mut self.rules {
            drafts.extend(rule.sample(&ctx, sample));
        }
        for draft in drafts {
            self.queue(draft, now);
        }
        out.extend(self.advance(now));
        out
    }

    /// Advances the clock to `now` (live: wall time) and returns what is due.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<FindingRecord> {
        self.advance(now)
    }

    /// Namespaces of resets whose reason waits for a counter sample (kernels
    /// that do not report active-reset reasons).
    pub fn awaiting_namespaces(&self) -> std::collections::BTreeSet<u32> {
        self.awaiting.iter().map(|(e, _)| e.flow.netns).collect()
    }

    /// Everything still held, at the end of a trace or recording.
    pub fn finish(&mut self) -> Vec<FindingRecord> {
        let now = self.clock.unwrap_or_else(Utc::now);
        for (event, known) in std::mem::take(&mut self.awaiting) {
            self.decide_awaiting(&event, known, now);
        }
        let far = now + TimeDelta::days(1);
        let mut out = std::mem::take(&mut self.early);
        out.extend(self.release_due(far));
        out.extend(self.repeats(far, true));
        out
    }

    fn wait_for_sample(&mut self, event: &EventRecord, known: Option<(String, Confidence)>) {
        if self.awaiting.len() >= AWAITING
            && let Some((old, old_known)) = self.awaiting.pop_front()
        {
            let now = self.clock.unwrap_or(old.time);
            self.decide_awaiting(&old, old_known, now);
        }
        if let Some(id) = FlowId::of(event) {
            self.pairing.await_counters(id.connection());
        }
        self.awaiting.push_back((event.clone(), known));
    }

    fn decide_awaiting(
        &mut self,
        event: &EventRecord,
        known: Option<(String, Confidence)>,
        until: DateTime<Utc>,
    ) {
        if let Some(id) = FlowId::of(event) {
            self.pairing.decided(id.connection());
        }
        if let Some((reason, confidence)) = known {
            return self.explain(event, Some(reason), confidence);
        }
        match infer::from_counters(event, &self.namespaces, until) {
            Reason::Known(reason, confidence) => self.explain(event, Some(reason), confidence),
            _ => self.explain(event, event.reason.clone(), Confidence::Inferred),
        }
    }

    fn explain(&mut self, event: &EventRecord, reason: Option<String>, confidence: Confidence) {
        self.explain_counted(event, reason, confidence, None);
    }

    /// Explains `event`; for a storm summary, standing for `summarised` like it.
    fn explain_counted(
        &mut self,
        event: &EventRecord,
        reason: Option<String>,
        confidence: Confidence,
        summarised: Option<u64>,
    ) {
        self.offer(event, reason, confidence, summarised, Offer::Reset);
    }

    /// Explains a connection closed with an error and no reset.
    fn explain_close(&mut self, event: &EventRecord) {
        self.offer(event, None, Confidence::Exact, None, Offer::Close);
    }

    /// Offers `event` to the rules (their `reset` or `closed` hook); the first
    /// draft is completed and held.
    fn offer(
        &mut self,
        event: &EventRecord,
        reason: Option<String>,
        confidence: Confidence,
        summarised: Option<u64>,
        offer: Offer,
    ) {
        let Some(id) = FlowId::of(event) else { return };
        let reset = Reset {
            event,
            id,
            reason,
            confidence,
        };
        let ctx = Ctx {
            history: &self.history,
            namespaces: &self.namespaces,
            thresholds: &self.thresholds,
        };
        let draft = self.rules.iter_mut().find_map(|rule| match offer {
            Offer::Reset => rule.reset(&ctx, &reset),
            Offer::Close => rule.closed(&ctx, &reset),
        });
        if let Some(draft) = draft {
            self.complete(draft, event, &id, summarised);
        }
    }

    /// Adds what the event's flow history knows to a rule's draft and holds
    /// it for its settle time.
    fn complete(
        &mut self,
        mut draft: Draft,
        event: &EventRecord,
        id: &FlowId,
        summarised: Option<u64>,
    ) {
        if draft.finding.kstack.is_none() {
            draft.finding.kstack.clone_from(&event.kstack);
        }
        let dropped = self.history.drops.before(id, event.time);
        if !dropped.is_empty() {
            draft.finding.add(
                "drops_before",
                dropped.len(),
                format!(
                    "{} of this connection dropped by the kernel before: {}",
                    match dropped.len() {
                        1 => "1 segment".to_owned(),
                        n => format!("{n} segments"),
                    },
                    drops::reasons_text(&dropped)
                ),
            );
        }
        if let Some(count) = summarised {
            // Summaries of the two ends pair by service, not by
            // connection: the ephemeral side's port is left out.
            draft.flow = draft.flow.map(|flow| flow.service());
            draft.summary = true;
            draft.finding.count = count;
            draft.finding.add(
                "summarised_events",
                count,
                format!("{count} such events, summarised in the kernel during a storm"),
            );
        }
        self.queue(draft, event.time);
    }

    fn queue(&mut self, draft: Draft, time: DateTime<Utc>) {
        let settle = TimeDelta::from_std(self.thresholds.settle).unwrap_or_default();
        if let Some(flow) = draft.flow {
            self.pairing.hold(flow.connection(), draft.finding.cause);
        }
        self.hold(Pending {
            draft,
            ready_at: time + settle,
        });
    }

    fn hold(&mut self, pending: Pending) {
        if self.pending.len() >= HELD
            && let Some((_, oldest)) = self.pending.pop_first()
        {
            // Full: the oldest goes out now rather than being dropped.
            if let Some(flow) = oldest.draft.flow {
                self.pairing
                    .unhold(flow.connection(), oldest.draft.finding.cause);
            }
            if let Some(finding) = self.release(oldest.draft) {
                self.early.push(finding);
            }
        }
        self.sequence += 1;
        self.pending
            .insert((pending.ready_at, self.sequence), pending);
    }

    fn advance(&mut self, now: DateTime<Utc>) -> Vec<FindingRecord> {
        let now = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(now);
        // Without samples (sampling failed, or a recording without them) an
        // awaiting reset is decided from what is known once it waited enough.
        while self
            .awaiting
            .front()
            .is_some_and(|(e, _)| now - e.time > AWAIT_AT_MOST)
        {
            if let Some((event, known)) = self.awaiting.pop_front() {
                self.decide_awaiting(&event, known, now);
            }
        }
        let mut out = std::mem::take(&mut self.early);
        out.extend(self.release_due(now));
        out.extend(self.repeats(now, false));
        out
    }

    /// Releases pending findings due by `now`, in time order.
    fn release_due(&mut self, now: DateTime<Utc>) -> Vec<FindingRecord> {
        let mut due = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let pending = entry.remove();
            if let Some(flow) = pending.draft.flow {
                self.pairing
                    .unhold(flow.connection(), pending.draft.finding.cause);
            }
            due.push(pending);
        }
        // Specific findings first: a generic one released in the same batch
        // must see its specific partner (the other end of the connection).
        due.sort_by_key(|p| (is_generic(p.draft.finding.cause), p.ready_at));
        let settle = TimeDelta::from_std(self.thresholds.settle).unwrap_or_default();
        let mut out = Vec::new();
        for mut pending in due {
            // The other end's reset still waits for its counters: its finding
            // may replace this generic one, so hold it until that is decided
            // (awaiting resets are decided within AWAIT_AT_MOST).
            if is_generic(pending.draft.finding.cause)
                && let Some(flow) = pending.draft.flow
                && self.pairing.awaits(&flow.connection())
            {
                self.pairing
                    .hold(flow.connection(), pending.draft.finding.cause);
                pending.ready_at = now + settle;
                self.hold(pending);
                continue;
            }
            if let Some(finding) = self.release(pending.draft) {
                out.push(finding);
            }
        }
        out
    }

    fn release(&mut self, mut draft: Draft) -> Option<FindingRecord> {
        let time = draft.finding.time;
        if let Some(flow) = draft.flow {
            application::add_evidence(&mut draft.finding, &self.history, &flow);
            if draft.finding.peer_owner.is_none() {
                draft.finding.peer_owner = self
                    .history
                    .peer(&flow)
                    .and_then(|h| h.owner.as_deref().cloned());
            }
            if self.superseded(&draft, flow) {
                return None;
            }
            let keep = TimeDelta::from_std(self.thresholds.settle * 4).unwrap_or_default();
            self.pairing
                .printed(flow.connection(), draft.finding.cause, time, keep);
        }
        self.summary.add(
            &draft.finding,
            draft.flow.map(|f| f.local.port()),
            draft.finding.count,
        );
        self.aggregate(draft)
    }

    /// Whether the other end's finding for the same connection already says it
    /// better: a generic one (peer_reset, other_reset) yields to a specific one,
    /// and the same cause is reported once.
    fn superseded(&self, draft: &Draft, flow: FlowId) -> bool {
        let cause = draft.finding.cause;
        self.pairing
            .partners(&flow.connection())
            // Consecutive summaries of one service are not the two ends of a
            // connection: only a generic one yields to them.
            .any(|other| {
                (is_generic(cause) && !is_generic(other)) || (other == cause && !draft.summary)
            })
    }

    /// Prints the first of a key, counts repeats, prints pile-ups again as they grow.
    fn aggregate(&mut self, draft: Draft) -> Option<FindingRecord> {
        let now = draft.finding.time;
        let window = TimeDelta::from_std(self.thresholds.repeat_window).unwrap_or_default();
        if self.emitted.len() >= KEYS {
            let oldest = now - TimeDelta::minutes(10);
            self.emitted.retain(|_, e| e.at > oldest);
        }
        let growth = self.thresholds.growth;
        match self.emitted.get_mut(&draft.key) {
            None => {
                self.emitted.insert(
                    draft.key,
                    Emitted {
                        at: now,
                        level: draft.level,
                        suppressed: 0,
                        latest: None,
                    },
                );
                Some(draft.finding)
            }
            Some(e) => match (draft.level, e.level) {
                (Some(level), Some(before)) => {
                    let grown = level as f64 >= before as f64 * growth;
                    if grown || now - e.at >= PILEUP_REMINDER {
                        e.at = now;
                        e.level = Some(level);
                        Some(draft.finding)
                    } else {
                        None
                    }
                }
                _ if now - e.at >= window && e.suppressed == 0 => {
                    e.at = now;
                    Some(draft.finding)
                }
                _ => {
                    e.suppressed += draft.finding.count;
                    e.latest = Some(draft.finding);
                    None
                }
            },
        }
    }

    /// Repeats counted in a finished window, as one finding with their count.
    fn repeats(&mut self, now: DateTime<Utc>, all: bool) -> Vec<FindingRecord> {
        let window = TimeDelta::from_std(self.thresholds.repeat_window).unwrap_or_default();
        let mut out = Vec::new();
        for e in self.emitted.values_mut() {
            if e.suppressed > 0 && (all || now - e.at >= window) {
                if let Some(mut latest) = e.latest.take() {
                    latest.count = e.suppressed;
                    out.push(latest);
                }
                e.suppressed = 0;
                e.at = now;
            }
        }
        out.sort_by_key(|f| f.time);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    /// On loopback the receiver's reset is often reported before the sender's
    /// (the active-reset tracepoint fires after transmit): the specific finding
    /// must still replace the receiver's generic one.
    #[test]
    fn received_before_sent_still_pairs() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let mut inputs = connection(0, "127.0.0.1:80", "127.0.0.1:5000", &srv, &cli);
        inputs.push(
            received(
                500,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                "ESTABLISHED",
                Some(owner(42, "client", "connect")),
                srv.clone(),
            )
            .into(),
        );
        inputs.push(
            sent(
                500,
                "127.0.0.1:80",
                "127.0.0.1:5000",
                Some("CLOSE"),
                Some("TCP_ABORT_ON_CLOSE"),
                Some(owner(7, "api", "accept")),
                srv,
            )
            .into(),
        );
        let f = run(inputs);
        let f = only(&f);
        assert_eq!(f.cause, Cause::CloseWithUnreadData);
        assert_eq!(f.peer_owner.as_ref().map(|p| p.pid), Some(42));
    }

    /// The sender's reset waits for counters (a non-SYN segment that found no
    /// socket); the receiver's generic finding must wait for it, not be
    /// printed beside the specific one.
    #[test]
    fn generic_finding_waits_for_an_awaiting_partner() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let mut engine = super::Engine::new(Default::default());
        for input in connection(0, "127.0.0.1:80", "127.0.0.1:5000", &srv, &cli) {
            if let Input::E(e) = input {
                assert!(engine.event(&e).is_empty());
            }
        }
        let late = with_segment(
            sent(
                2000,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                None,
                Some("NO_SOCKET"),
                None,
                srv.clone(),
            ),
            &["PSH", "ACK"],
            10,
        );
        let got = received(
            2000,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            "CLOSE_WAIT",
            Some(owner(7, "api", "accept")),
            srv,
        );
        assert!(engine.event(&late).is_empty());
        assert!(engine.event(&got).is_empty());
        assert!(
            engine.tick(at(2500)).is_empty(),
            "peer_reset held for its partner"
        );
        let mut found = engine.sample(&sample(2600));
        found.extend(engine.tick(at(3000)));
        found.extend(engine.finish());
        assert_eq!(only(&found).cause, Cause::ForgottenConnection);
    }

    /// Before 6.12 an active reset has no reason and waits for the next
    /// sample's counters; the peer's received reset, ready sooner, must wait
    /// with it rather than be reported as a generic peer_reset.
    #[test]
    fn received_reset_waits_for_a_sender_awaiting_counters() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let mut engine = super::Engine::new(Default::default());
        let mut out = Vec::new();
        for input in connection(0, "127.0.0.1:80", "127.0.0.1:5000", &srv, &cli) {
            if let Input::E(e) = input {
                out.extend(engine.event(&e));
            }
        }
        out.extend(engine.event(&received(
            500,
            "127.0.0.1:5000",
            "127.0.0.1:80",
            "ESTABLISHED",
            Some(owner(42, "client", "connect")),
            srv.clone(),
        )));
        out.extend(engine.event(&sent(
            500,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            Some("CLOSE"),
            None,
            Some(owner(7, "api", "accept")),
            srv,
        )));
        out.extend(engine.tick(at(1400)));
        assert!(out.is_empty(), "held until the sample: {out:?}");
        let mut s = sample(1500);
        s.counters.insert("TcpExt.TCPAbortOnClose".into(), 1);
        out.extend(engine.sample(&s));
        out.extend(engine.finish());
        let f = only(&out);
        assert_eq!(f.cause, Cause::CloseWithUnreadData);
        assert_eq!(f.peer_owner.as_ref().map(|p| p.pid), Some(42));
    }

    /// Findings wait for the settle time: a tick before it releases nothing.
    #[test]
    fn findings_wait_for_the_settle_time() {
        let mut engine = super::Engine::new(Default::default());
        let e = with_segment(
            sent(
                0,
                "127.0.0.1:9",
                "127.0.0.1:5000",
                None,
                Some("NO_SOCKET"),
                None,
                proc(1, "x"),
            ),
            &["SYN"],
            0,
        );
        assert!(engine.event(&e).is_empty());
        assert!(engine.tick(at(100)).is_empty(), "held for the peer's side");
        assert_eq!(engine.tick(at(400)).len(), 1);
    }
}
