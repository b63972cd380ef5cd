//! OpenMetrics (Prometheus) metrics of the daemon: what the kernel reported,
//! what the rules found, what the pipeline lost. The endpoint that serves them
//! is [`super::metrics_endpoint`].
//!
//! Label sets are bounded: series labelled by owner (`owner_comm`,
//! `owner_unit`) are capped per metric (`metrics.max_owner_series`); past the
//! cap a new owner is counted under `owner_comm="other", owner_unit="other"`
//! and in `tcpwatch_metric_series_overflow_total{metric}`. Ports are those
//! with a listener, capped by `metrics.max_port_series` (the rest:
//! `port="other"`). Reasons, causes, states and namespaces are bounded by the
//! kernel's enums, the cause list and the sampler's namespace limit.
//!
//! Values the kernel keeps (ring-buffer counters, program run time when
//! `kernel.bpf_stats_enabled` is 1) are read at scrape time.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    hash::Hash,
    io,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        info::Info,
    },
    registry::Registry,
};
use tcpwatch_common::counters::Counter as KernelCounter;

use super::{
    file::FileStats,
    sink::{Progress, Sink},
};
use crate::{
    config,
    context::sample::SampleRecord,
    events::{
        counters::KernelCounters,
        model::{AggregateRecord, EventRecord, Kind, Process},
    },
    explain::finding::FindingRecord,
    recorder::store::RecorderStats,
    selection::port_of,
};

/// Label value of series folded together past a cap.
const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabels {
    direction: &'static str,
    reason: String,
    owner_comm: String,
    owner_unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    cause: &'static str,
    owner_comm: String,
    owner_unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    netns: String,
    port: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    netns: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabel {
    metric: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabel {
    record: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// A counter family whose label sets are capped.
struct Capped<L> {
    family: Family<L, Counter>,
    admitted: HashSet<L>,
    max: usize,
    overflow: Counter,
}

impl<L: Clone + Hash + Eq + EncodeLabelSet + fmt::Debug + Send + Sync + 'static> Capped<L> {
    fn new(max: usize, overflow: Counter) -> Self {
        Self {
            family: Family::default(),
            admitted: HashSet::new(),
            max,
            overflow,
        }
    }

    /// Adds `by` to `labels`, or to `folded(labels)` past the cap.
    fn inc(&mut self, labels: L, by: u64, folded: impl FnOnce(L) -> L) {
        if self.admitted.contains(&labels) || self.admitted.len() < self.max {
            self.admitted.insert(labels.clone());
            self.family.get_or_create(&labels).inc_by(by);
        } else {
            self.overflow.inc();
            self.family.get_or_create(&folded(labels)).inc_by(by);
        }
    }
}

/// Totals the sink turns into counter increments (counters only go up).
#[derive(Default)]
struct Seen {
    progress: Progress,
    file: FileStats,
    recorder_dropped: u64,
}

/// The metrics, shared with the endpoint.
pub struct Metrics {
    registry: Arc<Registry>,
    resets: Capped<ResetLabels>,
    findings: Capped<FindingLabels>,
    transitions: Family<TransitionLabels, Counter>,
    port_sockets: Family<PortLabels, Gauge>,
    port_series: HashMap<u32, Vec<PortLabels>>,
    max_port_series: usize,
    port_overflow: Counter,
    states: Family<StateLabels, Gauge>,
    state_series: HashMap<u32, Vec<StateLabels>>,
    decode_errors: Family<ErrorLabel, Counter>,
    evicted_flows: Counter,
    file: [Counter; 4],
    recorder_records: Family<RecordLabel, Gauge>,
    recorder_memory: Gauge,
    recorder_dropped: Counter,
    reloads: Family<ResultLabel, Counter>,
    queries: Family<ResultLabel, Counter>,
    scrapes_refused: Counter,
    seen: Seen,
}

/// Scrape-time values from the kernel: the programs' counters and run time.
pub struct KernelStats {
    ebpf: Arc<Mutex<aya::Ebpf>>,
}

impl KernelStats {
    /// Reads from the loaded object.
    pub fn new(ebpf: Arc<Mutex<aya::Ebpf>>) -> Self {
        Self { ebpf }
    }
}

impl fmt::Debug for KernelStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KernelStats")
    }
}

fn kind_label(counter: KernelCounter) -> &'static str {
    match counter {
        KernelCounter::EmittedState | KernelCounter::LostState | KernelCounter::SummarisedState => {
            "state"
        }
        KernelCounter::EmittedResetSent
        | KernelCounter::LostResetSent
        | KernelCounter::SummarisedResetSent => "reset_sent",
        KernelCounter::EmittedDrop | KernelCounter::LostDrop | KernelCounter::SummarisedDrop => {
            "drop"
        }
        KernelCounter::EmittedAppError
        | KernelCounter::LostAppError
        | KernelCounter::SummarisedAppError => "app_error",
        _ => "reset_received",
    }
}

impl Collector for KernelStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Ok(ebpf) = self.ebpf.lock() else {
            return Ok(());
        };
        let counters = KernelCounters::read(&ebpf).unwrap_or_default();
        let families: [(&str, &str, &[KernelCounter]); 3] = [
            (
                "tcpwatch_ring_events",
                "Events the kernel programs wrote to the ring buffer, by kind.",
                &[
                    KernelCounter::EmittedState,
                    KernelCounter::EmittedResetSent,
                    KernelCounter::EmittedResetReceived,
                    KernelCounter::EmittedDrop,
                    KernelCounter::EmittedAppError,
                ],
            ),
            (
                "tcpwatch_ring_lost",
                "Events lost because the ring buffer was full, by kind (raise kernel.ring_buffer_size).",
                &[
                    KernelCounter::LostState,
                    KernelCounter::LostResetSent,
                    KernelCounter::LostResetReceived,
                    KernelCounter::LostDrop,
                    KernelCounter::LostAppError,
                ],
            ),
            (
                "tcpwatch_ring_summarised",
                "Events counted in the kernel during storms instead of sent one by one, by kind (they reach the other metrics as summaries).",
                &[
                    KernelCounter::SummarisedState,
                    KernelCounter::SummarisedResetSent,
                    KernelCounter::SummarisedResetReceived,
                    KernelCounter::SummarisedDrop,
                    KernelCounter::SummarisedAppError,
                ],
            ),
        ];
        for (name, help, members) in families {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for counter in members {
                let labels = [("kind", kind_label(*counter))];
                ConstCounter::new(counters.get(*counter)).encode(family.encode_family(&labels)?)?;
            }
        }
        for (name, help, counter) in [
            (
                "tcpwatch_kernel_read_errors",
                "Kernel memory reads that failed in the programs (the event was dropped).",
                KernelCounter::ReadErrors,
            ),
            (
                "tcpwatch_owner_update_errors",
                "Owner-table updates that failed in the programs (attribution may be missing).",
                KernelCounter::OwnerUpdateErrors,
            ),
            (
                "tcpwatch_unattributed_events",
                "Events on a live socket whose owner was unknown.",
                KernelCounter::Unattributed,
            ),
            (
                "tcpwatch_summary_overflow",
                "Storm-mode events that found no room in the summary map: counted only here.",
                KernelCounter::SummaryOverflow,
            ),
            (
                "tcpwatch_storms",
                "Times storm mode started (events came faster than they could be taken).",
                KernelCounter::Storms,
            ),
        ] {
            let metric = ConstCounter::new(counters.get(counter));
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        let gauge = ConstGauge::new(i64::from(enabled));
        gauge.encode(encoder.encode_descriptor(
            "tcpwatch_bpf_stats_enabled",
            "1 when kernel.bpf_stats_enabled is on and program run time is reported.",
            None,
            gauge.metric_type(),
        )?)?;
        if enabled {
            let programs: Vec<(String, u64, f64)> = ebpf
                .programs()
                .filter_map(|(name, program)| {
                    let info = program.info().ok()?;
                    Some((
                        name.to_owned(),
                        info.run_count(),
                        info.run_time().as_secs_f64(),
                    ))
                })
                .collect();
            let mut runs = encoder.encode_descriptor(
                "tcpwatch_program_runs",
                "Runs of each kernel program (kernel.bpf_stats_enabled).",
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (name, count, _) in &programs {
                ConstCounter::new(*count).encode(runs.encode_family(&[("program", name)])?)?;
            }
            let mut time = encoder.encode_descriptor(
                "tcpwatch_program_run_seconds",
                "Time spent in each kernel program (kernel.bpf_stats_enabled).",
                None,
                ConstCounter::new(0f64).metric_type(),
            )?;
            for (name, _, seconds) in &programs {
                ConstCounter::new(*seconds).encode(time.encode_family(&[("program", name)])?)?;
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// Metrics as `[metrics]` bounds them; `kernel` adds the scrape-time
    /// values of the loaded programs.
    pub fn new(config: &config::Metrics, kernel: Option<KernelStats>) -> Self {
        let mut registry = Registry::default();
        let overflow: Family<MetricLabel, Counter> = Family::default();
        registry.register(
            "tcpwatch_metric_series_overflow",
            "Observations counted under label value \"other\" because a metric reached its series cap",
            overflow.clone(),
        );
        let owners = config.max_owner_series as usize;
        let resets = Capped::new(
            owners,
            overflow
                .get_or_create(&MetricLabel {
                    metric: "tcpwatch_resets",
                })
                .clone(),
        );
        registry.register(
            "tcpwatch_resets",
            "TCP resets sent and received, by the kernel's reason and the owner of the socket (or the listener)",
            resets.family.clone(),
        );
        let findings = Capped::new(
            owners,
            overflow
                .get_or_create(&MetricLabel {
                    metric: "tcpwatch_findings",
                })
                .clone(),
        );
        registry.register(
            "tcpwatch_findings",
            "Explained resets and pile-ups, by cause and owner (repeats aggregated in one report are counted each)",
            findings.family.clone(),
        );
        let transitions = Family::default();
        registry.register(
            "tcpwatch_state_transitions",
            "TCP state transitions",
            transitions.clone(),
        );
        let port_sockets = Family::default();
        registry.register(
            "tcpwatch_port_sockets",
            "TIME_WAIT and CLOSE_WAIT sockets now, per listening port and network namespace (other ports: port=\"other\")",
            port_sockets.clone(),
        );
        let states = Family::default();
        registry.register(
            "tcpwatch_sockets",
            "TCP sockets now, per state and network namespace (sampled namespaces only)",
            states.clone(),
        );
        let decode_errors = Family::default();
        registry.register(
            "tcpwatch_decode_errors",
            "Ring-buffer records that did not decode, by error",
            decode_errors.clone(),
        );
        let evicted_flows = Counter::default();
        registry.register(
            "tcpwatch_flow_histories_evicted",
            "Connection histories the explanation engine dropped because its table was full",
            evicted_flows.clone(),
        );
        let file: [Counter; 4] = Default::default();
        for (counter, (name, help)) in file.iter().zip([
            (
                "tcpwatch_file_written_bytes",
                "Bytes written to the JSON Lines file",
            ),
            (
                "tcpwatch_file_dropped_bytes",
                "Bytes of records dropped because writing the JSON Lines file failed",
            ),
            (
                "tcpwatch_file_rotations",
                "Rotations of the JSON Lines file",
            ),
            (
                "tcpwatch_file_errors",
                "Failed writes, opens or rotations of the JSON Lines file",
            ),
        ]) {
            registry.register(name, help, counter.clone());
        }
        let recorder_records = Family::default();
        registry.register(
            "tcpwatch_recorder_records",
            "Records the flight recorder holds now, by type",
            recorder_records.clone(),
        );
        let recorder_memory = Gauge::default();
        registry.register(
            "tcpwatch_recorder_memory_bytes",
            "Memory the flight recorder's records take (estimated)",
            recorder_memory.clone(),
        );
        let recorder_dropped = Counter::default();
        registry.register(
            "tcpwatch_recorder_dropped",
            "Records the flight recorder dropped before their retention ended, for lack of memory",
            recorder_dropped.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "tcpwatch_config_reloads",
            "Configuration reloads (SIGHUP), applied or rejected",
            reloads.clone(),
        );
        let queries = Family::default();
        registry.register(
            "tcpwatch_queries",
            "Queries on the unix socket, answered or refused",
            queries.clone(),
        );
        let scrapes_refused = Counter::default();
        registry.register(
            "tcpwatch_metrics_connections_refused",
            "Connections to the metrics endpoint closed because too many were open",
            scrapes_refused.clone(),
        );
        registry.register(
            "tcpwatch_build",
            "tcpwatch version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let port_overflow = overflow
            .get_or_create(&MetricLabel {
                metric: "tcpwatch_port_sockets",
            })
            .clone();
        if let Some(kernel) = kernel {
            registry.register_collector(Box::new(kernel));
        }
        Self {
            registry: Arc::new(registry),
            resets,
            findings,
            transitions,
            port_sockets,
            port_series: HashMap::new(),
            max_port_series: config.max_port_series as usize,
            port_overflow,
            states,
            state_series: HashMap::new(),
            decode_errors,
            evicted_flows,
            file,
            recorder_records,
            recorder_memory,
            recorder_dropped,
            reloads,
            queries,
            scrapes_refused,
            seen: Seen::default(),
        }
    }

    /// The registry, for the endpoint.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Applies new caps (series already exported stay).
    pub fn configure(&mut self, config: &config::Metrics) {
        self.resets.max = config.max_owner_series as usize;
        self.findings.max = config.max_owner_series as usize;
        self.max_port_series = config.max_port_series as usize;
    }

    /// The counter of refused metrics connections, for the endpoint.
    pub fn scrapes_refused(&self) -> Counter {
        self.scrapes_refused.clone()
    }

    /// Counts a reload.
    pub fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// A counter of queries, by result, for the query server.
    pub fn query_counter(&self, result: &'static str) -> Counter {
        self.queries.get_or_create(&ResultLabel { result }).clone()
    }

    /// Takes the JSON Lines file's and the recorder's totals.
    pub fn observe(&mut self, file: Option<FileStats>, recorder: &RecorderStats) {
        if let Some(stats) = file {
            let before = self.seen.file;
            for (counter, (now, then)) in self.file.iter().zip([
                (stats.written, before.written),
                (stats.dropped, before.dropped),
                (stats.rotations, before.rotations),
                (stats.errors, before.errors),
            ]) {
                counter.inc_by(now.saturating_sub(then));
            }
            self.seen.file = stats;
        }
        for (record, value) in [("event", recorder.events), ("finding", recorder.findings)] {
            self.recorder_records
                .get_or_create(&RecordLabel { record })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.recorder_memory
            .set(i64::try_from(recorder.memory).unwrap_or(i64::MAX));
        self.recorder_dropped
            .inc_by(recorder.dropped.saturating_sub(self.seen.recorder_dropped));
        self.seen.recorder_dropped = recorder.dropped;
    }

    fn port_sample(&mut self, sample: &SampleRecord) {
        let listening: HashSet<u16> = sample
            .listeners
            .iter()
            .filter_map(|l| port_of(&l.local))
            .collect();
        let netns = sample.netns.to_string();
        let mut values: HashMap<PortLabels, i64> = HashMap::new();
        let others: usize = self
            .port_series
            .iter()
            .filter(|(ns, _)| **ns != sample.netns)
            .map(|(_, series)| series.len())
            .sum();
        let mut ports = HashSet::new();
        for entry in &sample.ports {
            for (state_name, count) in &entry.states {
                let state = match state_name.as_str() {
                    "TIME_WAIT" => "TIME_WAIT",
                    "CLOSE_WAIT" => "CLOSE_WAIT",
                    _ => continue,
                };
                let mut port = OTHER.to_owned();
                if listening.contains(&entry.port) {
                    if ports.contains(&entry.port) || others + ports.len() < self.max_port_series {
                        ports.insert(entry.port);
                        port = entry.port.to_string();
                    } else {
                        self.port_overflow.inc();
                    }
                }
                *values
                    .entry(PortLabels {
                        netns: netns.clone(),
                        port,
                        state,
                    })
                    .or_default() += i64::from(*count);
            }
        }
        let old = self.port_series.remove(&sample.netns).unwrap_or_default();
        for labels in old.iter().filter(|l| !values.contains_key(l)) {
            self.port_sockets.remove(labels);
        }
        for (labels, value) in &values {
            self.port_sockets.get_or_create(labels).set(*value);
        }
        self.port_series
            .insert(sample.netns, values.into_keys().collect());
    }

    fn state_sample(&mut self, sample: &SampleRecord) {
        let netns = sample.netns.to_string();
        let old = self.state_series.remove(&sample.netns).unwrap_or_default();
        let new: Vec<StateLabels> = sample
            .states
            .keys()
            .map(|state| StateLabels {
                netns: netns.clone(),
                state: state.clone(),
            })
            .collect();
        for labels in old.iter().filter(|l| !new.contains(l)) {
            self.states.remove(labels);
        }
        for (labels, count) in new.iter().zip(sample.states.values()) {
            self.states.get_or_create(labels).set(i64::from(*count));
        }
        self.state_series.insert(sample.netns, new);
    }
}

fn owner_labels(p: Option<&Process>) -> (String, String) {
    (
        p.map(|p| p.comm.clone()).unwrap_or_default(),
        p.and_then(|p| p.unit.clone()).unwrap_or_default(),
    )
}

impl Metrics {
    /// Counts `count` events of one kind, transition or reason, and owner.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of an event or a summary"
    )]
    fn count(
        &mut self,
        kind: Kind,
        old_state: Option<&String>,
        new_state: Option<&String>,
        reason: Option<&String>,
        owner: Option<&Process>,
        count: u64,
    ) {
        match kind {
            Kind::State => {
                let labels = TransitionLabels {
                    from: old_state.cloned().unwrap_or_default(),
                    to: new_state.cloned().unwrap_or_default(),
                };
                self.transitions.get_or_create(&labels).inc_by(count);
            }
            Kind::ResetSent | Kind::ResetReceived => {
                let (owner_comm, owner_unit) = owner_labels(owner);
                let labels = ResetLabels {
                    direction: if kind == Kind::ResetSent {
                        "sent"
                    } else {
                        "received"
                    },
                    reason: reason.cloned().unwrap_or_default(),
                    owner_comm,
                    owner_unit,
                };
                self.resets.inc(labels, count, |l| ResetLabels {
                    owner_comm: OTHER.into(),
                    owner_unit: OTHER.into(),
                    ..l
                });
            }
            // Drops are opt-in and per segment: the kernel's own counters
            // (TcpExt) already export them as rates.
            Kind::Drop => {}
            // Failed calls are opt-in; the resets and timeouts behind them
            // are counted already.
            Kind::AppError => {}
        }
    }
}

impl Sink for Metrics {
    fn event(&mut self, e: &EventRecord) -> io::Result<()> {
        let owner = e.owner.as_ref().or(e.listener.as_ref());
        self.count(
            e.kind,
            e.old_state.as_ref(),
            e.new_state.as_ref(),
            e.reason.as_ref(),
            owner,
            1,
        );
        Ok(())
    }

    fn aggregate(&mut self, a: &AggregateRecord) -> io::Result<()> {
        let owner = a.owner.as_ref().or(a.listener.as_ref());
        self.count(
            a.kind,
            a.old_state.as_ref(),
            a.new_state.as_ref(),
            a.reason.as_ref(),
            owner,
            a.count,
        );
        Ok(())
    }

    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        let (owner_comm, owner_unit) = owner_labels(finding.owner.as_ref());
        let labels = FindingLabels {
            cause: finding.cause.id(),
            owner_comm,
            owner_unit,
        };
        self.findings
            .inc(labels, finding.count.max(1), |l| FindingLabels {
                owner_comm: OTHER.into(),
                owner_unit: OTHER.into(),
                ..l
            });
        Ok(())
    }

    fn sample(&mut self, sample: &SampleRecord) -> io::Result<()> {
        self.port_sample(sample);
        self.state_sample(sample);
        Ok(())
    }

    fn progress(&mut self, progress: &Progress) {
        let (now, then) = (progress.decode, self.seen.progress.decode);
        for (error, now, then) in [
            ("truncated", now.truncated, then.truncated),
            ("unknown_kind", now.unknown_kind, then.unknown_kind),
            ("version", now.version, then.version),
            ("size", now.size, then.size),
        ] {
            self.decode_errors
                .get_or_create(&ErrorLabel { error })
                .inc_by(now.saturating_sub(then));
        }
        self.evicted_flows.inc_by(
            progress
                .evicted_flows
                .saturating_sub(self.seen.progress.evicted_flows),
        );
        self.seen.progress = *progress;
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        text.clear();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::testkit::proc;

    fn reset(comm: &str) -> EventRecord {
        let p = proc(1, comm);
        crate::explain::testkit::sent(
            0,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            None,
            Some("NO_SOCKET"),
            Some(p.clone()),
            p,
        )
    }

    #[test]
    fn owner_series_are_capped_and_overflow_counted() {
        let config = config::Metrics {
            max_owner_series: 2,
            ..config::Metrics::default()
        };
        let mut m = Metrics::new(&config, None);
        for comm in ["a", "b", "c", "d", "a"] {
            m.event(&reset(comm)).unwrap();
        }
        let text = encode(&m.registry);
        assert!(text.contains(r#"tcpwatch_resets_total{direction="sent",reason="NO_SOCKET",owner_comm="a",owner_unit=""} 2"#), "{text}");
        assert!(
            text.contains(r#"owner_comm="other",owner_unit="other"} 2"#),
            "{text}"
        );
        assert!(!text.contains(r#"owner_comm="c""#), "{text}");
        assert!(
            text.contains(r#"tcpwatch_metric_series_overflow_total{metric="tcpwatch_resets"} 2"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
