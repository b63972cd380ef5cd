//! The highest RST rate this machine can generate, with and without tcpwatch:
//! a closed-port connect storm and an abort storm (a server closing every
//! connection with SO_LINGER {1,0}), several client processes, in the bench's
//! network namespace. Reports the rates, what tcpwatch received (shown one by
//! one or summarised in storm mode) against what was generated, what it lost,
//! and its CPU and memory.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    load,
    report::Report,
    traced::{Traced, stat},
};

/// One kind of storm.
#[derive(Clone, Copy)]
pub enum Kind {
    /// connect() to a closed port: NO_SOCKET resets.
    Refused,
    /// An abortive close on every connection: TCP_STATE resets.
    Abort,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Refused => "closed-port connect storm",
            Self::Abort => "abort storm (SO_LINGER 0 server)",
        }
    }
}

/// A running abort server.
struct Server(Child);

impl Server {
    fn start() -> Result<Self> {
        let mut child = load::spawn(&["abort-server".into(), "127.0.0.1:7000".into()])?;
        let out = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        if line.trim() != "listening" {
            bail!("abort server did not start: {line}");
        }
        Ok(Self(child))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `clients` generators of `kind` for `seconds`; connections made.
pub fn generate(kind: Kind, clients: usize, seconds: f64) -> Result<u64> {
    let args: Vec<String> = match kind {
        Kind::Refused => vec!["refused".into(), "127.0.0.1:9".into(), seconds.to_string()],
        Kind::Abort => vec![
            "abort-client".into(),
            "127.0.0.1:7000".into(),
            seconds.to_string(),
        ],
    };
    let children = (0..clients)
        .map(|_| load::spawn(&args))
        .collect::<Result<Vec<_>>>()?;
    load::total(children)
}

/// Runs the storm benchmarks.
pub fn run(
    tcpwatch: &Path,
    netns: u32,
    clients: usize,
    seconds: f64,
    report: &mut Report,
) -> Result<()> {
    let mut rows = Vec::new();
    for kind in [Kind::Refused, Kind::Abort] {
        let _server = match kind {
            Kind::Abort => Some(Server::start()?),
            Kind::Refused => None,
        };
        let untraced = generate(kind, clients, seconds)?;
        let mut traced =
            Traced::start(tcpwatch, &["--kind", "all", "--netns", &netns.to_string()])?;
        traced.reset_window()?;
        let started = Instant::now();
        let generated = generate(kind, clients, seconds)?;
        let elapsed = started.elapsed().as_secs_f64();
        // Let tcpwatch drain what is queued before it is measured and stopped.
        std::thread::sleep(Duration::from_millis(1500));
        let usage = traced.usage()?;
        let stats = traced.stop()?;
        let sent = stat(&stats, &["kernel", "emitted_reset_sent"]);
        let summarised = stat(&stats, &["kernel", "summarised_reset_sent"]);
        let lost = stat(&stats, &["lost"]);
        let overflow = stat(&stats, &["kernel", "summary_overflow"]);
        rows.push(vec![
            kind.name().to_owned(),
            format!("{:.0}", untraced as f64 / seconds),
            format!("{:.0}", generated as f64 / elapsed),
            format!(
                "{:.1}%",
                100.0 * generated as f64 / elapsed / (untraced as f64 / seconds).max(1.0)
            ),
            generated.to_string(),
            format!(
                "{} ({} one by one, {} summarised)",
                sent + summarised,
                sent,
                summarised
            ),
            lost.to_string(),
            overflow.to_string(),
            stat(&stats, &["storms"]).to_string(),
            format!("{:.0}%", usage.cpu_share * 100.0),
            format!("{:.1}", usage.peak_rss as f64 / (1 << 20) as f64),
        ]);
    }
    report.table(
        &format!("Reset storms ({clients} client processes, {seconds} s each, loopback in a private netns)"),
        &[
            "storm",
            "resets/s untraced",
            "resets/s traced",
            "traced/untraced",
            "resets sent",
            "received by tcpwatch",
            "lost",
            "summary overflow",
            "storms",
            "tcpwatch CPU (one core)",
            "tcpwatch peak RSS MiB",
        ],
        rows,
    );
    Ok(())
}

/// A long storm: `minutes` of flat-out refused connects, tcpwatch's resident
/// memory sampled every 30 s.
pub fn long(
    tcpwatch: &Path,
    netns: u32,
    clients: usize,
    minutes: u64,
    report: &mut Report,
) -> Result<()> {
    let traced = Traced::start(tcpwatch, &["--kind", "all", "--netns", &netns.to_string()])?;
    let mut rows = Vec::new();
    let mut generated = 0;
    for i in 0..minutes * 2 {
        generated += generate(Kind::Refused, clients, 30.0)?;
        let usage = traced.usage()?;
        rows.push(vec![
            format!("{}", (i + 1) * 30),
            generated.to_string(),
            format!("{:.1}", usage.rss as f64 / (1 << 20) as f64),
            format!("{:.1}", usage.peak_rss as f64 / (1 << 20) as f64),
        ]);
    }
    let stats = traced.stop()?;
    report.table(
        &format!("{minutes}-minute closed-port storm ({clients} clients): tcpwatch memory"),
        &["seconds", "connects so far", "RSS MiB", "peak RSS MiB"],
        rows,
    );
    report.note(&format!(
        "Over the whole run: {} storms, {} events summarised, {} lost, {} connection histories evicted.",
        stat(&stats, &["storms"]),
        stat(&stats, &["summarised"]),
        stat(&stats, &["lost"]),
        stat(&stats, &["evicted_flows"]),
    ));
    Ok(())
}
