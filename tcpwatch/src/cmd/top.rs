//! `tcpwatch top`: the pipeline and session of `trace`, explaining always,
//! with the live view ([`crate::top`]) as the sink. Refuses to run unless
//! stdout is a terminal (exit 2: use `trace`). Start-up problems are reported
//! before the screen is taken; diagnostics while the view runs are held and
//! written after it closes, followed by the one-line summary `trace` prints.

use std::{
    fmt::Write as _,
    io::{self, IsTerminal as _, Write as _},
    net::Ipv6Addr,
    time::Instant,
};

use anyhow::anyhow;
use ratatui::{Terminal, backend::CrosstermBackend};
use tcpwatch_common::event::EventKind;
use tokio::sync::mpsc;

use super::{
    pipeline::{self, Options},
    session::{Session, Signals},
};
use crate::{
    cli::TopArgs,
    events::{clock::Clock, convert::Converter, model::Kind, reader::Reader, storm::Storm},
    exit::{Failure, OrExit},
    explain::engine::Engine,
    filters::Prefix,
    logging,
    selection::CgroupMatch,
    top::{keys::Keys, screen::Screen, sink::TopSink, view::Footer},
};

/// Runs `top` until a quit key, a signal or `--duration`.
pub async fn run(args: TopArgs) -> Result<(), Failure> {
    if !io::stdout().is_terminal() {
        return Err(anyhow!(
            "stdout is not a terminal: `tcpwatch top` draws a live screen; use `tcpwatch trace` for a pipe or a file"
        ))
        .or_usage();
    }
    // Keys come from stdin when it is the terminal, else from /dev/tty.
    if !io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Err(anyhow!(
            "no terminal to read keys from (stdin is not one and there is no /dev/tty); use `tcpwatch trace`"
        ))
        .or_usage();
    }
    let (quit_tx, quit_rx) = mpsc::unbounded_channel();
    let mut signals = Signals::install_interactive(quit_rx).or_runtime()?;
    // The explanations need every kind from the kernel.
    let options = Options::from_args(
        args.filters.filters(EventKind::ALL.to_vec()),
        &args.pipeline,
        &args.kernel,
        false,
    );
    let mut pipeline = pipeline::start(&options).await?;
    let (hints, samples) = pipeline.sampler(args.pipeline.sample_interval, &args.filters.netns)?;
    let mut samples = Some(samples);
    let clock = Clock::sample();
    let storm =
        Storm::new(&mut pipeline.ebpf, args.pipeline.storm_exit_rate, clock).or_runtime()?;
    let mut reader = Reader::new(&mut pipeline.ebpf).or_runtime()?;
    // Stays on the normal screen, above the summary printed at exit.
    eprintln!("{}", pipeline.attached_line());

    // Declared before the session, so dropped after it (on every path): the
    // held diagnostics are written once the terminal is restored.
    let held = logging::hold();
    let screen = Screen::enter().or_runtime()?;
    let terminal = Terminal::new(CrosstermBackend::new(io::stdout())).or_runtime()?;
    let footer = Footer {
        scope: scope(&args),
        held: 0,
    };
    let sink = TopSink::new(terminal, Some(screen), Some(pipeline.ebpf), footer);
    let mut session = Session::new(
        Converter::new(pipeline.kernel.names.clone(), clock),
        sink,
        vec![Kind::ResetSent, Kind::ResetReceived],
        None,
        Some(Engine::new(args.explain.thresholds())),
        Some(hints),
        Some(storm),
    )
    .with_selection(args.placement.selection());
    let keys = Keys::spawn(quit_tx).or_runtime()?;
    let since = Instant::now();
    let stop = session
        .run(&mut reader, &mut samples, &mut signals, args.duration)
        .await
        .or_runtime()?;
    drop(keys);
    let counters = session.sink_mut().kernel_counters();
    session.sink_mut().leave();
    drop(held);
    if args.explain.summary
        && let Some(engine) = session.engine_mut()
    {
        let text = if engine.summary.is_empty() {
            "No findings.\n".to_owned()
        } else {
            engine.summary.render()
        };
        // stdout may be gone with the terminal (a hang-up).
        let _ = io::stdout().write_all(text.as_bytes());
    }
    let line = session.summary(stop, since.elapsed(), &counters);
    drop(reader);
    drop(session); // detaches every program
    let _ = writeln!(io::stderr(), "tcpwatch: {line}");
    Ok(())
}

/// The filters in effect, in words, for the footer.
fn scope(args: &TopArgs) -> String {
    let f = &args.filters;
    let p = &args.placement;
    let mut out = String::new();
    let mut add = |what: &str, values: Vec<String>| {
        if !values.is_empty() {
            if !out.is_empty() {
                out.push_str(", ");
            }
            let _ = write!(out, "{what} {}", values.join(","));
        }
    };
    let text = |v: &[u32]| v.iter().map(u32::to_string).collect();
    add("pid", text(&f.pid));
    add("comm", f.comm.iter().cloned().collect());
    add("port", f.port.iter().map(u16::to_string).collect());
    add("addr", f.addr.iter().map(prefix).collect());
    add("netns", text(&f.netns));
    add("unit", p.unit.clone());
    add(
        "cgroup",
        p.cgroup
            .iter()
            .map(|c| match c {
                CgroupMatch::Id(id) => id.to_string(),
                CgroupMatch::Path(path) => path.clone(),
            })
            .collect(),
    );
    add("container", p.container.clone());
    out
}

/// `--addr` as the user wrote it (IPv4 prefixes are kept IPv4-mapped).
fn prefix(p: &Prefix) -> String {
    let v6 = Ipv6Addr::from(p.addr);
    match v6.to_ipv4_mapped() {
        Some(v4) if p.bits >= 96 => format!("{v4}/{}", p.bits - 96),
        _ => format!("{v6}/{}", p.bits),
    }
}
