//! `cargo xtask bench`: tcpwatch's cost, measured as ratios in one run on this
//! machine (results go to docs/performance.md). Runs as root, in a private
//! network namespace of its own (nothing on the host's ports), with the release
//! build. Sections: `kernel` (in-kernel cost per event against a floor program
//! and bpftrace), `storm` (the highest RST rates, traced and untraced), `churn`
//! (nginx + wrk), `memory` (100k and 1M tracked sockets), `startup`; `long`
//! (a 10-minute storm, memory over time) only when asked for.

mod artifacts;
mod churn;
mod kernel_cost;
pub mod load;
mod memory;
mod report;
mod storm;
mod traced;

use std::{os::unix::fs::MetadataExt as _, path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};
use nix::sched::{CloneFlags, unshare};

/// `cargo xtask bench` options.
#[derive(clap::Args)]
pub struct Args {
    /// Sections to run (kernel, storm, churn, memory, startup, long); default:
    /// all but long.
    #[arg(value_delimiter = ',')]
    only: Vec<String>,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Client processes in the storms.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Minutes of the long storm.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "target/bench/report.md")]
    out: PathBuf,
}

/// Runs the benchmarks.
pub fn run(args: &Args) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("benchmarks load BPF programs and make network namespaces: run as root");
    }
    let sections: Vec<&str> = if args.only.is_empty() {
        vec!["startup", "kernel", "storm", "churn", "memory"]
    } else {
        args.only.iter().map(String::as_str).collect()
    };
    for s in &sections {
        if !["startup", "kernel", "storm", "churn", "memory", "long"].contains(s) {
            bail!("unknown section {s}");
        }
    }
    // The peer (bpftrace), the load generator (wrk) and the server (nginx).
    crate::apt::ensure_installed(&["bpftrace", "wrk", "nginx-light"], "bench")?;
    let artifacts = artifacts::build()?;
    let dir = std::env::current_dir()?.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    // A namespace of our own, inherited by every process started from here.
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !status.success() {
        bail!("ip link set lo up failed");
    }
    let netns = std::fs::metadata("/proc/thread-self/ns/net")?.ino() as u32;
    let mut report = report::Report::default();
    report.note(&format!(
        "Machine: {} ({} CPUs); kernel {}; tcpwatch {}.",
        hostname(),
        std::thread::available_parallelism().map_or(0, usize::from),
        nix::sys::utsname::uname().map_or_else(
            |_| "?".into(),
            |u| u.release().to_string_lossy().into_owned()
        ),
        artifacts.tcpwatch.display()
    ));
    for section in sections {
        eprintln!("xtask bench: {section}");
        match section {
            "startup" => startup(&artifacts.tcpwatch, &mut report)?,
            "kernel" => kernel_cost::run(&artifacts, &dir, args.seconds, &mut report)?,
            "storm" => storm::run(
                &artifacts.tcpwatch,
                netns,
                args.clients,
                args.seconds,
                &mut report,
            )?,
            "churn" => churn::run(
                &artifacts.tcpwatch,
                netns,
                &dir,
                args.seconds as u64,
                2,
                &mut report,
            )?,
            "memory" => memory::run(&artifacts.tcpwatch, netns, args.seconds, &mut report)?,
            "long" => storm::long(
                &artifacts.tcpwatch,
                netns,
                args.clients,
                args.minutes,
                &mut report,
            )?,
            _ => unreachable!("checked above"),
        }
    }
    report.write(&args.out)?;
    eprintln!("xtask bench: report in {}", args.out.display());
    Ok(())
}

/// Time from start to attached, five times.
fn startup(tcpwatch: &std::path::Path, report: &mut report::Report) -> Result<()> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let traced = traced::Traced::start(tcpwatch, &[])?;
        runs.push((traced.start_to_tracing.as_millis() as u64, traced.attach_ms));
        traced.stop()?;
    }
    runs.sort_unstable();
    let (wall, own) = runs[runs.len() / 2];
    report.table(
        "Start-up (median of 5)",
        &[
            "exec to the \"tracing\" line, ms",
            "tcpwatch's own \"attached in\", ms",
            "all runs (wall/own)",
        ],
        vec![vec![
            wall.to_string(),
            own.to_string(),
            runs.iter()
                .map(|(w, o)| format!("{w}/{o}"))
                .collect::<Vec<_>>()
                .join(", "),
        ]],
    );
    Ok(())
}

fn hostname() -> String {
    nix::unistd::gethostname().map_or_else(|_| "?".into(), |h| h.to_string_lossy().into_owned())
}
