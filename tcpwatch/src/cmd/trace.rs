//! `tcpwatch trace`: attach, attribute, print, and summarise at exit.

use std::{io, os::unix::fs::MetadataExt, time::Instant};

use anyhow::{Context as _, anyhow};
use tcpwatch_common::event::EventKind;
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use super::session::{Session, Signals};
use crate::{
    attrib::{census, seed},
    cli::TraceArgs,
    context::sampler,
    events::{
        clock::Clock, convert::Converter, counters::KernelCounters, model::Kind, reader::Reader,
        storm::Storm,
    },
    exit::{Failure, OrExit},
    explain::engine::Engine,
    filters::Filters,
    privileges,
    probes::{
        attach::{self, MapSizes},
        kernel::Kernel,
        plan::{ResetCoverage, plan},
    },
    sinks::output::{Format, Output},
};

/// Runs `trace` until a signal, `--duration` or `--count`.
pub async fn run(args: TraceArgs) -> Result<(), Failure> {
    // Handle SIGINT/SIGTERM from the start: a stop during start-up or right after
    // the "tracing" line must still exit cleanly with a summary.
    let mut signals = Signals::install().or_runtime()?;
    privileges::check().or_usage()?;
    // Explanations need every kind from the kernel: state history, both resets.
    let explain = !args.no_explain;
    let filters = Filters {
        kinds: if explain {
            EventKind::ALL.to_vec()
        } else {
            args.kind.0.clone()
        },
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
    let mut config = kernel.program_config(filters.config(), grace);
    // Storm mode starts with the ring buffer half full.
    config.storm_high_water = args.ring_buffer_size / 2;
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
    let display: Vec<Kind> = args.kind.0.iter().map(|k| model_kind(*k)).collect();
    let (engine, hints, samples) = if explain {
        let (hints, samples) = sampler::start(
            kernel.names.clone(),
            args.sample_interval,
            args.netns.iter().map(|ns| (*ns, None)).collect(),
        )
        .or_runtime()?;
        (
            Some(Engine::new(args.explain.thresholds())),
            Some(hints),
            Some(samples),
        )
    } else {
        (None, None, None)
    };
    let clock = Clock::sample();
    let storm = Storm::new(&mut ebpf, args.storm_exit_rate, clock).or_runtime()?;
    let mut session = Session::new(
        Converter::new(kernel.names.clone(), clock),
        Output::new(format, home_netns(), io::stdout()),
        display,
        args.count,
        engine,
        hints,
        Some(storm),
    );
    let mut reader = Reader::new(&mut ebpf).or_runtime()?;
    let tracing_since = Instant::now();
    let stop = session
        .run(&mut reader, samples, &mut signals, args.duration)
        .await
        .or_runtime()?;
    if args.explain.summary {
        session.print_summary().or_runtime()?;
    }
    drop(reader);
    let counters = KernelCounters::read(&ebpf).or_runtime()?;
    if stop != super::session::Stop::OutputClosed {
        session
            .print_stats(stop, tracing_since.elapsed(), &counters)
            .or_runtime()?;
    }
    drop(ebpf); // detaches every program
    eprintln!(
        "tcpwatch: {}",
        session.summary(stop, tracing_since.elapsed(), &counters)
    );
    Ok(())
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

fn model_kind(kind: EventKind) -> Kind {
    match kind {
        EventKind::State => Kind::State,
        EventKind::ResetSent => Kind::ResetSent,
        EventKind::ResetReceived => Kind::ResetReceived,
    }
}
