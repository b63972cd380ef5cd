//! A `tcpwatch trace --json` under test: started, waited for until it traces,
//! its CPU time and peak memory read from /proc, stopped with SIGINT, and its
//! closing `stats` record parsed.

use std::{
    fs,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, SysconfVar, sysconf},
};

/// A running tcpwatch.
pub struct Traced {
    child: Child,
    stdout: thread::JoinHandle<Option<serde_json::Value>>,
    /// From spawn to the "tracing" line.
    pub start_to_tracing: Duration,
    /// What tcpwatch itself reports ("attached N programs in X ms").
    pub attach_ms: u64,
    /// CPU seconds at the start of the measured window.
    cpu_at_start: f64,
    started: Instant,
}

/// What a measured window cost.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// User+system CPU of tcpwatch over the window, as a share of one core.
    pub cpu_share: f64,
    /// Peak resident memory (VmHWM), bytes.
    pub peak_rss: u64,
    /// Resident memory at the end (VmRSS), bytes.
    pub rss: u64,
}

/// The `stats` record.
pub type Stats = serde_json::Value;

impl Traced {
    /// Starts `tcpwatch trace --json ARGS` with its JSON output discarded except
    /// for the final `stats` record.
    pub fn start(tcpwatch: &Path, args: &[&str]) -> Result<Self> {
        let spawned = Instant::now();
        let mut child = Command::new(tcpwatch)
            .args(["trace", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", tcpwatch.display()))?;
        let mut out = child.stdout.take().context("stdout")?;
        let stdout = thread::spawn(move || {
            // Keep only the last line (the stats record); a storm of JSON
            // must not be buffered whole.
            let mut last = String::new();
            let mut reader = BufReader::with_capacity(1 << 20, &mut out);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("\"record\":\"stats\"") {
                    last = std::mem::take(&mut line);
                }
                line.clear();
            }
            let mut rest = String::new();
            let _ = out.read_to_string(&mut rest);
            serde_json::from_str(&last).ok()
        });
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let attach_ms = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains("; tracing") => {
                    break line
                        .split(" in ")
                        .nth(1)
                        .and_then(|s| s.split(' ').next())
                        .and_then(|ms| ms.parse().ok())
                        .unwrap_or(0);
                }
                Ok(line) => eprintln!("  tcpwatch: {line}"),
                Err(_) => {
                    let _ = child.kill();
                    bail!("tcpwatch did not start tracing within 60 s");
                }
            }
        };
        let start_to_tracing = spawned.elapsed();
        thread::spawn(move || {
            for line in rx {
                if !line.contains("stopped (") {
                    eprintln!("  tcpwatch: {line}");
                }
            }
        });
        let pid = child.id();
        Ok(Self {
            child,
            stdout,
            start_to_tracing,
            attach_ms,
            cpu_at_start: cpu_seconds(pid)?,
            started: Instant::now(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the measured window now.
    pub fn reset_window(&mut self) -> Result<()> {
        self.cpu_at_start = cpu_seconds(self.pid())?;
        self.started = Instant::now();
        Ok(())
    }

    /// CPU and memory since the window started.
    pub fn usage(&self) -> Result<Usage> {
        let pid = self.pid();
        let cpu = cpu_seconds(pid)? - self.cpu_at_start;
        let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Usage {
            cpu_share: cpu / self.started.elapsed().as_secs_f64(),
            peak_rss: kb("VmHWM:"),
            rss: kb("VmRSS:"),
        })
    }

    /// Stops it with SIGINT and returns its stats record.
    pub fn stop(mut self) -> Result<Stats> {
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGINT)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("tcpwatch did not stop within 60 s of SIGINT");
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.stdout
            .join()
            .ok()
            .flatten()
            .context("tcpwatch printed no stats record")
    }
}

/// utime + stime of `pid`, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 here.
    Ok((ticks(11) + ticks(12)) / hz)
}

/// A number from the stats record.
pub fn stat(stats: &Stats, path: &[&str]) -> u64 {
    path.iter().fold(stats, |v, k| &v[*k]).as_u64().unwrap_or(0)
}
