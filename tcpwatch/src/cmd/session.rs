//! A running trace: drains the ring buffer, turns records into events, feeds
//! them and the namespace samples to the explanation engine, hands events and
//! findings to a [`Sink`], and stops on a signal, `--duration` or `--count`.
//! `trace` runs one session to its end; the daemon runs it again after each
//! SIGHUP (the kernel programs and the ring buffer stay, so nothing is lost).

use std::{
    collections::HashMap,
    io::{self, ErrorKind},
    time::{Duration, Instant},
};

use chrono::Utc;
use tcpwatch_common::counters::Counter;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    attrib::cgroup::Cgroups,
    context::{
        sample::SampleRecord,
        sampler::{Hint, Hints, Samples},
    },
    events::{
        convert::Converter,
        counters::KernelCounters,
        decode::{DecodeStats, decode},
        kstack::Kstacks,
        model::{AggregateRecord, EventRecord, Kind, StormRecord},
        reader::Reader,
        storm::{Storm, StormOutput},
    },
    explain::{cause::Cause, engine::Engine, finding::FindingRecord},
    selection::Selection,
    sinks::sink::{Progress, Sink},
};

/// Records handled per wake-up before other work (signals, timers) gets a turn.
const BATCH: usize = 4096;
/// How often held findings are checked for release.
const TICK: Duration = Duration::from_millis(200);
/// At most one sampler hint per namespace per this interval.
const HINT_EVERY: Duration = Duration::from_secs(1);
/// How often the ring buffer is drained without a wake-up from the kernel
/// (which signals only once a batch has built up): the latency of a quiet
/// event.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How often storm mode is checked and its counts reported.
const STORM_POLL: Duration = Duration::from_secs(1);
/// At stop, how long to wait for the final samples that decide resets still
/// waiting on counters.
const FINAL_SAMPLE_WAIT: Duration = Duration::from_secs(5);

/// SIGINT and SIGTERM (and, for the daemon and `top`, SIGHUP), caught; and,
/// for `top`, the user's quit key.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    /// SIGHUP, and the stop it means.
    hangup: Option<(tokio::signal::unix::Signal, Stop)>,
    quit: Option<mpsc::UnboundedReceiver<()>>,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: None,
            quit: None,
        })
    }

    /// Installs the handlers, SIGHUP included: it ends [`Session::run`] with
    /// [`Stop::Reload`].
    pub fn install_with_hangup() -> io::Result<Self> {
        Ok(Self {
            hangup: Some((signal(SignalKind::hangup())?, Stop::Reload)),
            ..Self::install()?
        })
    }

    /// Installs the handlers of an interactive session (`top`): SIGHUP (the
    /// terminal went away) ends [`Session::run`] with [`Stop::Hangup`], and a
    /// message on `quit` (the quit key) with [`Stop::Quit`].
    pub fn install_interactive(quit: mpsc::UnboundedReceiver<()>) -> io::Result<Self> {
        Ok(Self {
            hangup: Some((signal(SignalKind::hangup())?, Stop::Hangup)),
            quit: Some(quit),
            ..Self::install()?
        })
    }
}

async fn hangup(hangup: &mut Option<(tokio::signal::unix::Signal, Stop)>) -> Stop {
    match hangup {
        Some((signal, stop)) => {
            signal.recv().await;
            *stop
        }
        None => std::future::pending().await,
    }
}

/// The quit key: also when its sender is gone (the key reader ended because
/// the terminal did).
async fn quit(quit: &mut Option<mpsc::UnboundedReceiver<()>>) {
    match quit {
        Some(rx) => {
            rx.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Why tracing stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// `--duration`.
    Duration,
    /// `--count`.
    Count,
    /// stdout was closed.
    OutputClosed,
    /// SIGHUP: not an end; the caller reloads and runs the session again.
    Reload,
    /// The user quit the live view (`top`).
    Quit,
    /// SIGHUP in the live view: its terminal went away.
    Hangup,
}

impl Stop {
    /// In words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interrupt => "interrupted",
            Self::Terminate => "terminated",
            Self::Duration => "duration reached",
            Self::Count => "count reached",
            Self::OutputClosed => "output closed",
            Self::Reload => "reloading",
            Self::Quit => "quit",
            Self::Hangup => "terminal hung up",
        }
    }
}

/// One thing to print.
enum Item {
    Event(Box<EventRecord>),
    Finding(Box<FindingRecord>),
    Sample(Box<SampleRecord>),
    Storm(Box<StormRecord>),
    Aggregate(Box<AggregateRecord>),
}

/// The session.
pub struct Session<S: Sink> {
    converter: Converter,
    output: S,
    decode: DecodeStats,
    shown: [u64; 5],
    findings: u64,
    limit: Option<u64>,
    display: Vec<Kind>,
    engine: Option<Engine>,
    hints: Option<Hints>,
    hinted: HashMap<u32, Instant>,
    cgroups: Cgroups,
    selection: Selection,
    batch: Vec<Item>,
    storm: Option<Storm>,
    kstacks: Option<Kstacks>,
    kstack_causes: Option<Vec<Cause>>,
}

impl<S: Sink> Session<S> {
    /// A session printing events of `display` kinds (at most `limit`), with
    /// explanations when `engine` is given.
    pub fn new(
        converter: Converter,
        output: S,
        display: Vec<Kind>,
        limit: Option<u64>,
        engine: Option<Engine>,
        hints: Option<Hints>,
        storm: Option<Storm>,
    ) -> Self {
        Self {
            converter,
            output,
            decode: DecodeStats::default(),
            shown: [0; 5],
            findings: 0,
            limit,
            display,
            engine,
            hints,
            hinted: HashMap::new(),
            cgroups: Cgroups::new(),
            selection: Selection::default(),
            batch: Vec::with_capacity(256),
            storm,
            kstacks: None,
            kstack_causes: None,
        }
    }

    /// Resolves the kernel stacks resets carry (`--kstack`) and hands them on
    /// with the events, and with the findings of `causes` (all when `None`;
    /// the engine gives a reset's finding its stack).
    pub fn with_kstacks(mut self, kstacks: Kstacks, causes: Option<Vec<Cause>>) -> Self {
        self.kstacks = Some(kstacks);
        self.kstack_causes = causes;
        self
    }

    /// Hands on only the events and findings `selection` selects (causes
    /// aside; the engine still sees everything).
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// The sink.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.output
    }

    /// The explanation engine, when explaining.
    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        self.engine.as_mut()
    }

    /// Runs until a stop; then, unless it is a [`Stop::Reload`], hands on what
    /// the kernel already submitted and what the engine still holds. `samples`
    /// come from the sampler (`None` once it ended).
    pub async fn run(
        &mut self,
        reader: &mut Reader,
        samples: &mut Option<Samples>,
        signals: &mut Signals,
        duration: Option<Duration>,
    ) -> io::Result<Stop> {
        let mut stop = self.pump(reader, samples, signals, duration).await?;
        // After a quit or a hang-up nobody sees the view any more: no final
        // drain, and no wait for the final samples.
        if !matches!(
            stop,
            Stop::Count | Stop::OutputClosed | Stop::Reload | Stop::Quit | Stop::Hangup
        ) {
            reader.drain_now(usize::MAX, |bytes| self.take(bytes));
            self.final_samples(samples).await;
            self.poll_storm(true)?;
            if let Some(engine) = &mut self.engine {
                let findings = engine.finish();
                self.batch
                    .extend(findings.into_iter().map(|f| Item::Finding(Box::new(f))));
            }
            if let Some(final_stop) = self.emit_batch()? {
                stop = final_stop;
            }
        }
        Ok(stop)
    }

    /// Resets whose reason the kernel does not give (active resets before
    /// 6.12) are decided by the counters of the sample after them. At stop, a
    /// sample is taken now rather than leaving them undecided.
    async fn final_samples(&mut self, samples: &mut Option<Samples>) {
        let (Some(engine), Some(hints), Some(rx)) = (&self.engine, &self.hints, samples) else {
            return;
        };
        let mut waiting = engine.awaiting_namespaces();
        if waiting.is_empty() {
            return;
        }
        let asked = Utc::now();
        hints.sample_now();
        let deadline = tokio::time::Instant::now() + FINAL_SAMPLE_WAIT;
        while !waiting.is_empty() {
            let Ok(Some(sample)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            if sample.time >= asked {
                waiting.remove(&sample.netns);
            }
            self.sample(sample);
        }
    }

    async fn pump(
        &mut self,
        reader: &mut Reader,
        samples: &mut Option<Samples>,
        signals: &mut Signals,
        duration: Option<Duration>,
    ) -> io::Result<Stop> {
        let deadline = tokio::time::sleep(duration.unwrap_or(Duration::MAX));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut storm_tick = tokio::time::interval(STORM_POLL);
        storm_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sampling = samples.is_some();
            tokio::select! {
                _ = signals.interrupt.recv() => return Ok(Stop::Interrupt),
                _ = signals.terminate.recv() => return Ok(Stop::Terminate),
                stop = hangup(&mut signals.hangup) => return Ok(stop),
                () = quit(&mut signals.quit) => return Ok(Stop::Quit),
                () = &mut deadline, if duration.is_some() => return Ok(Stop::Duration),
                read = reader.drain(BATCH, |bytes| self.take(bytes)) => { read?; }
                _ = drain_tick.tick() => { reader.drain_now(BATCH, |bytes| self.take(bytes)); }
                sample = recv_sample(samples), if sampling => {
                    match sample {
                        Some(sample) => self.sample(sample),
                        None => *samples = None,
                    }
                }
                _ = storm_tick.tick(), if self.storm.is_some() => self.poll_storm(false)?,
                _ = tick.tick(), if self.engine.is_some() => {
                    if let Some(engine) = &mut self.engine {
                        let findings = engine.tick(Utc::now());
                        self.batch.extend(findings.into_iter().map(|f| Item::Finding(Box::new(f))));
                    }
                }
            }
            if let Some(stop) = self.emit_batch()? {
                return Ok(stop);
            }
        }
    }

    /// Reports storm-mode counts (and ends a storm, with `finish`).
    fn poll_storm(&mut self, finish: bool) -> io::Result<()> {
        let Some(storm) = &mut self.storm else {
            return Ok(());
        };
        let outputs = storm
            .poll(&self.converter, STORM_POLL, finish)
            .map_err(io::Error::other)?;
        for output in outputs {
            match output {
                StormOutput::Storm(s) => self.batch.push(Item::Storm(Box::new(s))),
                StormOutput::Aggregate(mut a) => {
                    for p in [&mut a.owner, &mut a.listener].into_iter().flatten() {
                        self.cgroups.annotate(p);
                    }
                    let findings = self
                        .engine
                        .as_mut()
                        .map(|engine| engine.summarised(&a))
                        .unwrap_or_default();
                    self.batch.push(Item::Aggregate(a));
                    self.batch
                        .extend(findings.into_iter().map(|f| Item::Finding(Box::new(f))));
                }
            }
        }
        Ok(())
    }

    /// Decodes one ring-buffer record, explains it, queues what to print.
    pub fn take(&mut self, bytes: &[u8]) {
        let mut record = match decode(bytes) {
            Ok(raw) => {
                let mut record = self.converter.convert(&raw);
                if let Some(kstacks) = &mut self.kstacks {
                    record.kstack = kstacks.frames(&raw);
                }
                record
            }
            Err(e) => return self.decode.count(e),
        };
        self.cgroups.annotate_event(&mut record);
        self.hint(&record);
        if let Some(engine) = &mut self.engine {
            let findings = engine.event(&record);
            if self.display.contains(&record.kind) {
                self.batch.push(Item::Event(Box::new(record)));
            }
            self.batch
                .extend(findings.into_iter().map(|f| Item::Finding(Box::new(f))));
        } else if self.display.contains(&record.kind) {
            self.batch.push(Item::Event(Box::new(record)));
        }
    }

    fn sample(&mut self, mut sample: SampleRecord) {
        let owners = sample.listeners.iter_mut().filter_map(|l| l.owner.as_mut());
        for owner in owners.chain(
            sample
                .close_wait
                .iter_mut()
                .filter_map(|c| c.owner.as_mut()),
        ) {
            self.cgroups.annotate(owner);
        }
        if let Some(engine) = &mut self.engine {
            let findings = engine.sample(&sample);
            self.batch.push(Item::Sample(Box::new(sample)));
            self.batch
                .extend(findings.into_iter().map(|f| Item::Finding(Box::new(f))));
        }
    }

    /// Tells the sampler which namespaces are active and a process in each.
    fn hint(&mut self, record: &EventRecord) {
        if self.hints.is_none() {
            return;
        }
        let netns = record.flow.netns;
        if self
            .hinted
            .get(&netns)
            .is_some_and(|t| t.elapsed() < HINT_EVERY)
        {
            return;
        }
        let pid = record
            .owner
            .as_ref()
            .map(|o| o.pid)
            .filter(|p| *p != 0)
            .unwrap_or(record.actor.pid);
        if pid == 0 {
            return;
        }
        self.hinted.insert(netns, Instant::now());
        if let Some(hints) = &mut self.hints {
            hints.send(Hint { netns, pid });
        }
    }

    /// Prints the batch; `Some` when tracing must stop.
    pub fn emit_batch(&mut self) -> io::Result<Option<Stop>> {
        let mut stop = None;
        for item in std::mem::take(&mut self.batch) {
            match item {
                Item::Event(record) if !self.selection.event(&record) => {}
                Item::Finding(finding) if !self.selection.finding(&finding) => {}
                Item::Event(record) => {
                    if self
                        .limit
                        .is_some_and(|limit| self.shown.iter().sum::<u64>() >= limit)
                    {
                        stop = Some(Stop::Count);
                        continue;
                    }
                    self.output.event(&record)?;
                    self.shown[kind_index(record.kind)] += 1;
                }
                Item::Finding(mut finding) => {
                    let wanted = self
                        .kstack_causes
                        .as_ref()
                        .is_none_or(|causes| causes.contains(&finding.cause));
                    if !wanted {
                        finding.kstack = None;
                    }
                    self.output.finding(&finding)?;
                    self.findings += 1;
                }
                Item::Sample(sample) => self.output.sample(&sample)?,
                Item::Storm(storm) => self.output.storm(&storm)?,
                Item::Aggregate(aggregate) => {
                    if self.display.contains(&aggregate.kind) {
                        self.output.aggregate(&aggregate)?;
                    }
                }
            }
        }
        if self
            .limit
            .is_some_and(|limit| self.shown.iter().sum::<u64>() >= limit)
        {
            stop = Some(Stop::Count);
        }
        self.output.progress(&Progress {
            decode: self.decode,
            evicted_flows: self.engine.as_ref().map_or(0, Engine::evicted_flows),
        });
        match self.output.flush() {
            Ok(()) => Ok(stop),
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Some(Stop::OutputClosed)),
            Err(e) => Err(e),
        }
    }

    /// Prints the ranking of causes (`--summary`).
    pub fn print_summary(&mut self) -> io::Result<()> {
        if let Some(engine) = &self.engine {
            let text = if engine.summary.is_empty() {
                "No findings.\n".to_owned()
            } else {
                engine.summary.render()
            };
            self.output.summary(&text, &engine.summary.to_json())?;
        }
        match self.output.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// The exit summary as a `stats` record (JSON output only), for scripts.
    pub fn print_stats(
        &mut self,
        stop: Stop,
        elapsed: Duration,
        kernel: &KernelCounters,
    ) -> io::Result<()> {
        let [state, sent, received, drops, app_errors] = self.shown;
        let mut counters = serde_json::Map::new();
        for counter in Counter::ALL {
            counters.insert(counter.name().to_owned(), kernel.get(counter).into());
        }
        let record = serde_json::json!({
            "schema_version": crate::events::model::SCHEMA_VERSION,
            "record": "stats",
            "time": Utc::now(),
            "stopped": stop.as_str(),
            "elapsed_ms": elapsed.as_millis() as u64,
            "shown": {"state": state, "reset_sent": sent, "reset_received": received, "drop": drops, "app_error": app_errors},
            "findings": self.findings,
            "lost": kernel.lost(),
            "summarised": kernel.summarised(),
            "storms": self.storm.as_ref().map_or(0, |s| s.storms),
            "undecodable": self.decode.total(),
            "sampler_hints_dropped": self.hints.as_ref().map_or(0, Hints::dropped),
            "evicted_flows": self.engine.as_ref().map_or(0, Engine::evicted_flows),
            "kstack_unreadable": self.kstacks.as_ref().map_or(0, |k| k.unreadable),
            "kernel": counters,
        });
        self.output.stats(&record)?;
        match self.output.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// The one-line summary for stderr.
    pub fn summary(&self, stop: Stop, elapsed: Duration, kernel: &KernelCounters) -> String {
        let why = stop.as_str();
        let [state, sent, received, drops, app_errors] = self.shown;
        let findings = match &self.engine {
            Some(engine) => format!(
                ", {} findings ({} connection histories evicted)",
                self.findings,
                engine.evicted_flows()
            ),
            None => String::new(),
        };
        // Said only when it happened: it is rare, and no tcpwatch setting
        // changes it.
        let missed = match kernel.missed() {
            0 => String::new(),
            n => format!(
                ", {n} hook runs skipped by the kernel (another BPF program was running on that CPU)"
            ),
        };
        let storms = match &self.storm {
            Some(storm) if storm.storms > 0 => format!(
                "; {} storms: {} events summarised in the kernel ({} found no room and were only counted)",
                storm.storms,
                kernel.summarised(),
                kernel.get(Counter::SummaryOverflow)
            ),
            _ => String::new(),
        };
        format!(
            "stopped ({why}) after {:.1} s: {} events shown ({sent} reset_sent, {received} reset_received, {state} state{}{}){findings}{storms}; {} lost (ring buffer full), {} undecodable, {} kernel read errors, {} without a known owner{missed}",
            elapsed.as_secs_f64(),
            state + sent + received + drops + app_errors,
            if drops > 0 || self.display.contains(&Kind::Drop) {
                format!(", {drops} drop")
            } else {
                String::new()
            },
            if app_errors > 0 || self.display.contains(&Kind::AppError) {
                format!(", {app_errors} app_error")
            } else {
                String::new()
            },
            kernel.lost(),
            self.decode.total(),
            kernel.get(Counter::ReadErrors),
            kernel.get(Counter::Unattributed),
        )
    }
}

async fn recv_sample(samples: &mut Option<Samples>) -> Option<SampleRecord> {
    match samples {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::State => 0,
        Kind::ResetSent => 1,
        Kind::ResetReceived => 2,
        Kind::Drop => 3,
        Kind::AppError => 4,
    }
}
