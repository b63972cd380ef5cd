//! `tcpwatch trace`: attach, attribute, print, and summarise at exit.

use std::{io, time::Instant};

use tcpwatch_common::event::EventKind;

use super::{
    pipeline::{self, Options, home_netns},
    session::{Session, Signals},
};
use crate::{
    cli::TraceArgs,
    events::{
        clock::Clock, convert::Converter, counters::KernelCounters, kstack::Kstacks, model::Kind,
        storm::Storm,
    },
    exit::{Failure, OrExit},
    explain::engine::Engine,
    sinks::output::{Format, Output},
};

/// Runs `trace` until a signal, `--duration` or `--count`.
pub async fn run(args: TraceArgs) -> Result<(), Failure> {
    // Handle SIGINT/SIGTERM from the start: a stop during start-up or right after
    // the "tracing" line must still exit cleanly with a summary.
    let mut signals = Signals::install().or_runtime()?;
    // Explanations need every kind from the kernel: state history, both resets.
    let explain = !args.no_explain;
    let kinds = if explain {
        // Drops and failed calls stay opt-in: the engine uses them when
        // asked for.
        let mut kinds = EventKind::ALL.to_vec();
        for opt_in in [EventKind::Drop, EventKind::AppError] {
            if args.kind.0.contains(&opt_in) {
                kinds.push(opt_in);
            }
        }
        kinds
    } else {
        args.kind.0.clone()
    };
    let options = Options {
        kstack: args.kstack,
        ..Options::from_args(
            args.filters.filters(kinds),
            &args.pipeline,
            &args.kernel,
            args.bpf_log,
        )
    };
    let mut pipeline = pipeline::start(&options).await?;

    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let display: Vec<Kind> = args.kind.0.iter().map(|k| Kind::from_wire(*k)).collect();
    let (engine, hints, mut samples) = if explain {
        let (hints, samples) =
            pipeline.sampler(args.pipeline.sample_interval, &args.filters.netns)?;
        (
            Some(Engine::new(args.explain.thresholds())),
            Some(hints),
            Some(samples),
        )
    } else {
        (None, None, None)
    };
    // Everything counts from here: programs attached, namespaces' baselines read.
    eprintln!("{}", pipeline.attached_line());
    let clock = Clock::sample();
    let storm =
        Storm::new(&mut pipeline.ebpf, args.pipeline.storm_exit_rate, clock).or_runtime()?;
    let mut session = Session::new(
        Converter::new(pipeline.kernel.names.clone(), clock),
        Output::new(format, home_netns(), io::stdout()),
        display,
        args.count,
        engine,
        hints,
        Some(storm),
    )
    .with_selection(args.placement.selection());
    if args.kstack {
        let kstacks = Kstacks::new(&mut pipeline.ebpf).or_runtime()?;
        session = session.with_kstacks(kstacks, None);
    }
    let mut reader = crate::events::reader::Reader::new(&mut pipeline.ebpf).or_runtime()?;
    let tracing_since = Instant::now();
    let stop = session
        .run(&mut reader, &mut samples, &mut signals, args.duration)
        .await
        .or_runtime()?;
    if args.explain.summary {
        session.print_summary().or_runtime()?;
    }
    drop(reader);
    let counters = KernelCounters::read(&pipeline.ebpf).or_runtime()?;
    if stop != super::session::Stop::OutputClosed {
        session
            .print_stats(stop, tracing_since.elapsed(), &counters)
            .or_runtime()?;
    }
    drop(pipeline); // detaches every program
    eprintln!(
        "tcpwatch: {}",
        session.summary(stop, tracing_since.elapsed(), &counters)
    );
    Ok(())
}
