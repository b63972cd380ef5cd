//! `tcpwatch trace`: attach, attribute, print, and summarise at exit.

use std::{
    io::{self, ErrorKind},
    os::unix::fs::MetadataExt,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};
use tcpwatch_common::counters::Counter;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};
use tracing::{info, warn};

use crate::{
    attrib::{census, seed},
    cli::TraceArgs,
    events::{
        clock::Clock,
        convert::Converter,
        counters::KernelCounters,
        decode::{DecodeStats, decode},
        model::{EventRecord, Kind},
        reader::Reader,
    },
    exit::{Failure, OrExit},
    filters::Filters,
    privileges,
    probes::{
        attach::{self, MapSizes},
        kernel::Kernel,
        plan::{ResetCoverage, plan},
    },
    sinks::output::{Format, Output},
};

/// Records handled per wake-up before other work (signals, timers) gets a turn.
const BATCH: usize = 4096;

/// Runs `trace` until a signal, `--duration` or `--count`.
pub async fn run(args: TraceArgs) -> Result<(), Failure> {
    // Handle SIGINT/SIGTERM from the start: a stop during start-up or right after
    // the "tracing" line must still exit cleanly with a summary.
    let mut signals = Signals::install().or_runtime()?;
    privileges::check().or_usage()?;
    let filters = Filters {
        kinds: args.kind.0.clone(),
        pids: args.pid.clone(),
        comm: args.comm.clone(),
        ports: args.port.clone(),
        prefixes: args.addr.clone(),
        netns: args.netns.clone(),
    };
    filters.validate().map_err(|e| anyhow!(e)).or_usage()?;
    let started = Instant::now();
    let kernel = Kernel::inspect(&args.kernel.btf).or_usage()?;
    let plan = plan(&kernel.features).or_usage()?;
    for (role, why) in &plan.reasons {
        if why.starts_with("unavailable") {
            warn!("{}: {why}", role.label());
        }
    }
    if plan.reset_coverage == ResetCoverage::FullSocketsOnly {
        warn!("this kernel reports only resets sent for full sockets; see `tcpwatch probes`");
    }

    let grace = u64::try_from(args.owner_grace.as_nanos()).unwrap_or(u64::MAX);
    let config = kernel.program_config(filters.config(), grace);
    let sizes = MapSizes {
        ring_buffer_bytes: args.ring_buffer_size,
        max_sockets: args.max_sockets,
    };
    let mut ebpf = attach::load(&config, sizes, args.bpf_log).or_runtime()?;
    attach::fill_filters(&mut ebpf, &filters.sets()).or_runtime()?;
    if args.bpf_log {
        start_bpf_log(&mut ebpf).or_runtime()?;
    }
    let (outcomes, _) = attach::attach(&mut ebpf, &plan);
    let mut attached = 0;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(()) => attached += 1,
            Err(e) => warn!(
                "{} not attached ({}): {e:#}",
                outcome.step.point,
                outcome.step.role.label()
            ),
        }
    }
    if attached == 0 {
        return Err(anyhow!("no program could be attached")).or_runtime();
    }
    if !args.no_census {
        run_census(&mut ebpf, &kernel, args.max_sockets).await;
    }
    eprintln!(
        "tcpwatch: attached {attached} programs in {} ms; tracing",
        started.elapsed().as_millis()
    );

    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut session = Session {
        converter: Converter::new(kernel.names.clone(), Clock::sample()),
        output: Output::new(format, home_netns(), io::stdout()),
        decode: DecodeStats::default(),
        shown: [0; 3],
        limit: args.count,
        batch: Vec::with_capacity(256),
    };
    let mut reader = Reader::new(&mut ebpf).or_runtime()?;
    let tracing_since = Instant::now();
    let mut stop = session
        .pump(&mut reader, &mut signals, args.duration)
        .await
        .or_runtime()?;
    if !matches!(stop, Stop::Count | Stop::OutputClosed) {
        // Print what the kernel submitted before the stop.
        reader.drain_now(|bytes| session.take(bytes));
        if let Some(final_stop) = session.emit_batch().or_runtime()? {
            stop = final_stop;
        }
    }
    drop(reader);
    let counters = KernelCounters::read(&ebpf).or_runtime()?;
    drop(ebpf); // detaches every program
    eprintln!(
        "tcpwatch: {}",
        session.summary(stop, tracing_since.elapsed(), &counters)
    );
    Ok(())
}

/// SIGINT and SIGTERM, caught.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }
}

/// Why tracing stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Interrupt,
    Terminate,
    Duration,
    Count,
    OutputClosed,
}

struct Session {
    converter: Converter,
    output: Output<io::Stdout>,
    decode: DecodeStats,
    shown: [u64; 3],
    limit: Option<u64>,
    batch: Vec<EventRecord>,
}

impl Session {
    async fn pump(
        &mut self,
        reader: &mut Reader,
        signals: &mut Signals,
        duration: Option<Duration>,
    ) -> io::Result<Stop> {
        let deadline = tokio::time::sleep(duration.unwrap_or(Duration::MAX));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = signals.interrupt.recv() => return Ok(Stop::Interrupt),
                _ = signals.terminate.recv() => return Ok(Stop::Terminate),
                () = &mut deadline, if duration.is_some() => return Ok(Stop::Duration),
                read = reader.drain(BATCH, |bytes| self.take(bytes)) => { read?; }
            }
            if let Some(stop) = self.emit_batch()? {
                return Ok(stop);
            }
        }
    }

    /// Decodes one record into the batch, counting undecodable ones.
    fn take(&mut self, bytes: &[u8]) {
        match decode(bytes) {
            Ok(raw) => self.batch.push(self.converter.convert(&raw)),
            Err(e) => self.decode.count(e),
        }
    }

    /// Prints the batch; `Some` when tracing must stop.
    fn emit_batch(&mut self) -> io::Result<Option<Stop>> {
        let mut stop = None;
        for record in self.batch.drain(..) {
            if self
                .limit
                .is_some_and(|limit| self.shown.iter().sum::<u64>() >= limit)
            {
                stop = Some(Stop::Count);
                break;
            }
            self.output.event(&record)?;
            self.shown[kind_index(record.kind)] += 1;
        }
        self.batch.clear();
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

    fn summary(&self, stop: Stop, elapsed: Duration, kernel: &KernelCounters) -> String {
        let why = match stop {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated",
            Stop::Duration => "duration reached",
            Stop::Count => "count reached",
            Stop::OutputClosed => "output closed",
        };
        let [state, sent, received] = self.shown;
        format!(
            "stopped ({why}) after {:.1} s: {} events shown ({sent} reset_sent, {received} reset_received, {state} state); {} lost (ring buffer full), {} undecodable, {} kernel read errors, {} without a known owner",
            elapsed.as_secs_f64(),
            state + sent + received,
            kernel.lost(),
            self.decode.total(),
            kernel.get(Counter::ReadErrors),
            kernel.get(Counter::Unattributed),
        )
    }
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::State => 0,
        Kind::ResetSent => 1,
        Kind::ResetReceived => 2,
    }
}

/// Seeds the owner maps with the sockets that already exist. Failures only cost
/// attribution of old sockets: warn and go on.
async fn run_census(ebpf: &mut aya::Ebpf, kernel: &Kernel, max: u32) {
    let started = Instant::now();
    let census = match tokio::task::spawn_blocking(move || census::take(max as usize)).await {
        Ok(Ok(census)) => census,
        Ok(Err(e)) => {
            warn!(
                "census of existing sockets failed: {e}; sockets opened before start are not attributed"
            );
            return;
        }
        Err(e) => {
            warn!("census of existing sockets failed: {e}");
            return;
        }
    };
    for warning in &census.warnings {
        warn!("census: {warning}");
    }
    if census.truncated {
        warn!("census stopped at {max} sockets (--max-sockets)");
    }
    match seed::seed(
        ebpf,
        &census,
        kernel.states.listen,
        Clock::monotonic_now_ns(),
    ) {
        Ok(stats) => info!(
            "census: {} sockets in {} namespaces in {} ms: {} connections and {} listeners attributed, {} without owner",
            census.sockets.len(),
            census.namespaces,
            started.elapsed().as_millis(),
            stats.flows,
            stats.listeners,
            stats.unowned
        ),
        Err(e) => warn!("census: writing owners failed: {e}"),
    }
}

/// Streams the kernel programs' aya-log output to our log (stderr).
fn start_bpf_log(ebpf: &mut aya::Ebpf) -> anyhow::Result<()> {
    let logger = aya_log::EbpfLogger::init(ebpf).context("starting the kernel-side log")?;
    // SAFETY: the logger owns its ring-buffer map's fd for its whole life and
    // always reports that same fd; the AsyncFd owns the logger.
    let mut logger = unsafe { AsyncFd::register(logger) }
        .map_err(|e| anyhow::anyhow!("polling the kernel-side log: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = logger.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
    Ok(())
}

/// Inode of our own network namespace (left implicit in text output).
fn home_netns() -> u32 {
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}
