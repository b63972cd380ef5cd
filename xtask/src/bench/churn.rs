//! Connection churn: nginx answering every request with `Connection: close`
//! (keepalive_timeout 0) under wrk, on loopback in the bench's namespace;
//! requests per second traced against untraced, alternating runs. Traced
//! three ways: as users run it by default (`tcpwatch trace`: resets and
//! findings shown, every transition collected for the explanations), recording
//! every transition (`--kind all`, each printed as JSON), and with every
//! program attached but nothing sent to user space (`--kind reset
//! --no-explain`: the state events are dropped in the kernel), which separates
//! the programs' own cost from the ring buffer's and user space's.

use std::{
    fs,
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{report::Report, traced::Traced};

/// nginx with one worker on 127.0.0.1:8080.
struct Nginx(Child);

impl Nginx {
    fn start(dir: &Path) -> Result<Self> {
        let d = dir.display();
        fs::write(
            dir.join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nuser root;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  keepalive_timeout 0;\n  server {{ listen 127.0.0.1:8080 backlog=4096; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .context("nginx (apt-get install nginx-light)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect("127.0.0.1:8080").is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not listen within 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self(child))
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its worker too (a SIGKILLed master leaves
    /// the worker running); SIGKILL if it has not exited within 5 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One wrk run; requests per second.
fn wrk(seconds: u64) -> Result<f64> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            "-c16",
            &format!("-d{seconds}s"),
            "-H",
            "Connection: close",
        ])
        .arg("http://127.0.0.1:8080/")
        .output()
        .context("wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))
}

/// How tcpwatch runs in a traced round.
const MODES: [(&str, &[&str]); 3] = [
    ("default (resets and findings shown)", &[]),
    ("--kind all (every transition printed)", &["--kind", "all"]),
    (
        "--kind reset --no-explain (programs only)",
        &["--kind", "reset", "--no-explain"],
    ),
];

/// Runs the churn benchmark: `rounds` of an untraced run and one traced run
/// per mode.
pub fn run(
    tcpwatch: &Path,
    netns: u32,
    dir: &Path,
    seconds: u64,
    rounds: usize,
    report: &mut Report,
) -> Result<()> {
    let _nginx = Nginx::start(dir)?;
    wrk(2)?; // warm up
    let netns = netns.to_string();
    let mut untraced = Vec::new();
    let mut traced: Vec<(Vec<f64>, Vec<f64>, u64)> = vec![(Vec::new(), Vec::new(), 0); MODES.len()];
    for _ in 0..rounds {
        untraced.push(wrk(seconds)?);
        for ((_, args), (rates, cpu, storms)) in MODES.iter().zip(traced.iter_mut()) {
            let mut all = args.to_vec();
            all.extend(["--netns", netns.as_str()]);
            let mut run = Traced::start(tcpwatch, &all)?;
            run.reset_window()?;
            rates.push(wrk(seconds)?);
            cpu.push(run.usage()?.cpu_share);
            *storms += super::traced::stat(&run.stop()?, &["storms"]);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let base = mean(&untraced);
    let rows = MODES
        .iter()
        .zip(&traced)
        .map(|((name, _), (rates, cpu, storms))| {
            vec![
                (*name).to_owned(),
                format!("{base:.0}"),
                format!("{:.0}", mean(rates)),
                format!("{:.1}%", 100.0 * mean(rates) / base.max(1.0)),
                format!("{:.0}%", 100.0 * mean(cpu)),
                storms.to_string(),
            ]
        })
        .collect();
    report.table(
        &format!("Connection churn: nginx + wrk, Connection: close ({rounds} x {seconds} s each)"),
        &[
            "tcpwatch",
            "untraced req/s",
            "traced req/s",
            "traced/untraced",
            "tcpwatch CPU (one core)",
            "storms while traced",
        ],
        rows,
    );
    Ok(())
}
