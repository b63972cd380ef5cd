//! A running trace: drains the ring buffer, turns records into events, feeds
//! them and the namespace samples to the explanation engine, prints events and
//! findings, and stops on a signal, `--duration` or `--count`.

use std::{
    collections::HashMap,
    io::{self, ErrorKind},
    time::{Duration, Instant},
};

use chrono::Utc;
use tcpwatch_common::counters::Counter;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    context::{
        sample::SampleRecord,
        sampler::{Hint, Hints, Samples},
    },
    events::{
        convert::Converter,
        counters::KernelCounters,
        decode::{DecodeStats, decode},
        model::{EventRecord, Kind},
        reader::Reader,
    },
    explain::{engine::Engine, finding::FindingRecord},
    sinks::output::Output,
};

/// Records handled per wake-up before other work (signals, timers) gets a turn.
const BATCH: usize = 4096;
/// How often held findings are checked for release.
const TICK: Duration = Duration::from_millis(200);
/// At most one sampler hint per namespace per this interval.
const HINT_EVERY: Duration = Duration::from_secs(1);
/// At stop, how long to wait for the final samples that decide resets still
/// waiting on counters.
const FINAL_SAMPLE_WAIT: Duration = Duration::from_secs(5);

/// SIGINT and SIGTERM, caught.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
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
}

/// One thing to print.
enum Item {
    Event(Box<EventRecord>),
    Finding(Box<FindingRecord>),
    Sample(Box<SampleRecord>),
}

/// The session.
pub struct Session {
    converter: Converter,
    output: Output<io::Stdout>,
    decode: DecodeStats,
    shown: [u64; 3],
    findings: u64,
    limit: Option<u64>,
    display: Vec<Kind>,
    engine: Option<Engine>,
    hints: Option<Hints>,
    hinted: HashMap<u32, Instant>,
    batch: Vec<Item>,
}

impl Session {
    /// A session printing events of `display` kinds (at most `limit`), with
    /// explanations when `engine` is given.
    pub fn new(
        converter: Converter,
        output: Output<io::Stdout>,
        display: Vec<Kind>,
        limit: Option<u64>,
        engine: Option<Engine>,
        hints: Option<Hints>,
    ) -> Self {
        Self {
            converter,
            output,
            decode: DecodeStats::default(),
            shown: [0; 3],
            findings: 0,
            limit,
            display,
            engine,
            hints,
            hinted: HashMap::new(),
            batch: Vec::with_capacity(256),
        }
    }

    /// Runs until a stop; then prints what the kernel already submitted and
    /// what the engine still holds. `samples` come from the sampler.
    pub async fn run(
        &mut self,
        reader: &mut Reader,
        samples: Option<Samples>,
        signals: &mut Signals,
        duration: Option<Duration>,
    ) -> io::Result<Stop> {
        let mut samples = samples;
        let mut stop = self.pump(reader, &mut samples, signals, duration).await?;
        if !matches!(stop, Stop::Count | Stop::OutputClosed) {
            reader.drain_now(|bytes| self.take(bytes));
            self.final_samples(&mut samples).await;
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
        loop {
            let sampling = samples.is_some();
            tokio::select! {
                _ = signals.interrupt.recv() => return Ok(Stop::Interrupt),
                _ = signals.terminate.recv() => return Ok(Stop::Terminate),
                () = &mut deadline, if duration.is_some() => return Ok(Stop::Duration),
                read = reader.drain(BATCH, |bytes| self.take(bytes)) => { read?; }
                sample = recv_sample(samples), if sampling => {
                    match sample {
                        Some(sample) => self.sample(sample),
                        None => *samples = None,
                    }
                }
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

    /// Decodes one ring-buffer record, explains it, queues what to print.
    pub fn take(&mut self, bytes: &[u8]) {
        let record = match decode(bytes) {
            Ok(raw) => self.converter.convert(&raw),
            Err(e) => return self.decode.count(e),
        };
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

    fn sample(&mut self, sample: SampleRecord) {
        if let Some(engine) = &mut self.engine {
            let findings = engine.sample(&sample);
            self.batch.push(Item::Sample(Box::new(sample)));
            self.batch
                .extend(findings.into_iter().map(|f| Item::Finding(Box::new(f))));
        }
    }

    /// Tells the sampler which namespaces are active and a process in each.
    fn hint(&mut self, record: &EventRecord) {
        let Some(hints) = &self.hints else { return };
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
        hints.send(Hint { netns, pid });
    }

    /// Prints the batch; `Some` when tracing must stop.
    pub fn emit_batch(&mut self) -> io::Result<Option<Stop>> {
        let mut stop = None;
        for item in std::mem::take(&mut self.batch) {
            match item {
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
                Item::Finding(finding) => {
                    self.output.finding(&finding)?;
                    self.findings += 1;
                }
                Item::Sample(sample) => self.output.sample(&sample)?,
            }
        }
        if self
            .limit
            .is_some_and(|limit| self.shown.iter().sum::<u64>() >= limit)
        {
            stop = Some(Stop::Count);
        }
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

    /// The one-line summary for stderr.
    pub fn summary(&self, stop: Stop, elapsed: Duration, kernel: &KernelCounters) -> String {
        let why = match stop {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated",
            Stop::Duration => "duration reached",
            Stop::Count => "count reached",
            Stop::OutputClosed => "output closed",
        };
        let [state, sent, received] = self.shown;
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
        format!(
            "stopped ({why}) after {:.1} s: {} events shown ({sent} reset_sent, {received} reset_received, {state} state){findings}; {} lost (ring buffer full), {} undecodable, {} kernel read errors, {} without a known owner{missed}",
            elapsed.as_secs_f64(),
            state + sent + received,
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
    }
}
