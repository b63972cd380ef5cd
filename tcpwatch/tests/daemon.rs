//! `tcpwatch daemon` as a process: its configuration errors, and a run in a
//! private network namespace where a real Prometheus server (Debian's
//! `prometheus`) scrapes it while connections are refused and the
//! configuration is reloaded (once with a bad file), checked through
//! Prometheus's HTTP API; the flight recorder (`tcpwatch query`), the JSON
//! Lines file and its rotation, TIME_WAIT sockets per listening port, program
//! run time with `kernel.bpf_stats_enabled` (switched on for a moment and
//! restored), a query from a non-root user refused, and a clean stop that
//! leaves no program loaded.
//!
//! Needs root, BPF and tracefs like the kernel tests, and `prometheus` (which
//! `cargo xtask setup` installs). Under systemd as PID 1 the unit itself is
//! tested by `cargo xtask service-test`.

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod support;

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use support::{
    harness::{self, trial},
    netns,
};

fn main() {
    harness::run(vec![
        trial("config_errors_exit_2_with_the_key", config_errors),
        trial(
            "prometheus_scrapes_reloads_lose_nothing_query_file_and_clean_stop",
            prometheus_reload_query_file_stop,
        ),
    ]);
}

fn tcpwatch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
}

/// A directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tcpwatch-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn config_errors() {
    let dir = TempDir::new("config-errors");
    let cases = [
        (
            "[metrics]\nlisten = \"localhost:80\"\n",
            "metrics.listen: invalid socket address",
        ),
        (
            "[recorder]\nretention = \"forever\"\n",
            "recorder.retention: 'forever' is not a duration",
        ),
        (
            "[kernel]\nring_buffer_size = 1000\n",
            "kernel.ring_buffer_size: 1000 is not a power of two",
        ),
        ("[fle]\npath = \"/x\"\n", "fle: unknown key"),
        (
            "[file]\npath = \"x.jsonl\"\n",
            "file.path: must be an absolute path",
        ),
        ("not toml [", "line 1: "),
    ];
    for (text, expected) in cases {
        let path = dir.0.join("bad.toml");
        fs::write(&path, text).unwrap();
        let out = tcpwatch()
            .args(["daemon", "--check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{text:?}: one line: {stderr}");
        let want = format!("tcpwatch: {}: {expected}", path.display());
        assert!(
            stderr.starts_with(&want),
            "{text:?}: got {stderr:?}, want {want:?}"
        );
    }
    let missing = dir.0.join("missing.toml");
    let out = tcpwatch()
        .args(["daemon", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config.toml");
    let out = tcpwatch()
        .args(["daemon", "--check", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running process whose stderr lines are collected.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `limit`) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no '{text}' within {limit:?}; stderr:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal");
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code();
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` (HTTP/1.0), the body.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a PromQL expression that gives one sample (None: no data).
fn promql(expr: &str) -> Option<f64> {
    let body = http_get(
        "127.0.0.1:9090",
        &format!("/api/v1/query?query={}", encode(expr)),
    )?;
    let answer: Value = serde_json::from_str(&body).ok()?;
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

fn wait_promql(expr: &str, want: impl Fn(f64) -> bool, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        last = promql(expr).or(last);
        if let Some(v) = last
            && want(v)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus: {expr} is {last:?} after {limit:?}"
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// Program ids held by process `pid` (its BPF fds).
fn program_ids(pid: u32) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(info) = fs::read_to_string(entry.path()) {
            for line in info.lines() {
                if let Some(id) = line.strip_prefix("prog_id:") {
                    ids.extend(id.trim().parse::<u32>());
                }
            }
        }
    }
    ids
}

fn loaded(ids: &BTreeSet<u32>) -> Vec<u32> {
    let now: BTreeSet<u32> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    ids.intersection(&now).copied().collect()
}

/// Connections to a closed port: each is one reset sent (NO_SOCKET) and one
/// received (ECONNREFUSED).
fn refuse(n: usize) {
    for _ in 0..n {
        let err = TcpStream::connect("127.0.0.1:9").expect_err("port 9 is closed");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        thread::sleep(Duration::from_millis(15));
    }
}

fn prometheus_reload_query_file_stop() {
    let netns = netns::enter_private();
    let dir = TempDir::new("daemon");
    let socket = dir.0.join("run/query.sock");
    let file = dir.0.join("log/events.jsonl");
    fs::create_dir_all(dir.0.join("log")).unwrap();
    let config = |extra: &str| {
        format!(
            "[kernel]\nnetns = [\"{netns}\"]\n[metrics]\nlisten = \"127.0.0.1:9979\"\n[query]\nsocket = \"{}\"\n[file]\npath = \"{}\"\nevents = \"all\"\nmax_size = \"4KiB\"\nkeep = 2\n{extra}",
            socket.display(),
            file.display()
        )
    };
    let config_path = dir.0.join("config.toml");
    fs::write(&config_path, config("")).unwrap();
    let mut daemon = {
        let mut cmd = tcpwatch();
        cmd.args(["daemon", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info");
        Running::spawn(cmd)
    };
    daemon.wait_for("; tracing", Duration::from_secs(60));
    let ids = program_ids(daemon.child.id());
    assert!(ids.len() >= 3, "the daemon holds its programs: {ids:?}");

    let prometheus_yml = dir.0.join("prometheus.yml");
    fs::write(
        &prometheus_yml,
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tcpwatch\n    static_configs:\n      - targets: ['127.0.0.1:9979']\n",
    )
    .unwrap();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", prometheus_yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("tsdb").display()
        ))
        .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prometheus (cargo xtask setup installs Debian's prometheus)");
    let _prometheus = KillOnDrop(prometheus);

    // Resets while the configuration is reloaded: a good file, a bad one, a good one.
    let n = 60;
    let client = thread::spawn(move || refuse(n));
    thread::sleep(Duration::from_millis(200));
    fs::write(&config_path, config("[recorder]\nretention = \"10m\"\n")).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for("reloaded", Duration::from_secs(10));
    fs::write(&config_path, "[recorder]\nretention = \"soon\"\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let rejected = daemon.wait_for("keeping the running configuration", Duration::from_secs(10));
    assert!(
        rejected.contains("recorder.retention: 'soon' is not a duration"),
        "{rejected}"
    );
    fs::write(&config_path, config("")).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for("reloaded", Duration::from_secs(10));
    client.join().expect("client");
    let _listener = time_wait(5);

    // Prometheus sees every reset, nothing lost, the reloads counted.
    let n = n as f64;
    wait_promql(
        "up{job=\"tcpwatch\"}",
        |v| v == 1.0,
        Duration::from_secs(20),
    );
    let sent = "sum(tcpwatch_resets_total{direction=\"sent\",reason=\"NO_SOCKET\"})";
    wait_promql(sent, |v| v == n, Duration::from_secs(20));
    let received = "sum(tcpwatch_resets_total{direction=\"received\"})";
    wait_promql(received, |v| v == n, Duration::from_secs(10));
    assert_eq!(promql("sum(tcpwatch_ring_lost_total)"), Some(0.0));
    assert_eq!(promql("sum(tcpwatch_decode_errors_total)"), Some(0.0));
    wait_promql(
        "sum(tcpwatch_findings_total{cause=\"no_listener\"})",
        |v| v >= 1.0,
        Duration::from_secs(10),
    );
    wait_promql(
        "tcpwatch_config_reloads_total{result=\"applied\"}",
        |v| v == 2.0,
        Duration::from_secs(5),
    );
    assert_eq!(
        promql("tcpwatch_config_reloads_total{result=\"rejected\"}"),
        Some(1.0)
    );
    assert_eq!(promql("sum(tcpwatch_file_dropped_bytes_total)"), Some(0.0));
    wait_promql(
        "sum(tcpwatch_port_sockets{port=\"8080\",state=\"TIME_WAIT\"})",
        |v| v == 5.0,
        Duration::from_secs(10),
    );
    {
        let _stats = BpfStats::enable();
        refuse(3);
        wait_promql(
            "tcpwatch_bpf_stats_enabled",
            |v| v == 1.0,
            Duration::from_secs(10),
        );
        wait_promql(
            "sum(tcpwatch_program_runs_total)",
            |v| v > 0.0,
            Duration::from_secs(10),
        );
        wait_promql(
            "sum(tcpwatch_program_run_seconds_total)",
            |v| v > 0.0,
            Duration::from_secs(10),
        );
    }
    let n = n + 3.0;
    assert!(promql("tcpwatch_file_rotations_total").is_some_and(|v| v >= 1.0));

    // The flight recorder has every reset.
    let out = tcpwatch()
        .args([
            "query", "--json", "--since", "5m", "--port", "9", "--socket",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let count = |kind: &str| records.iter().filter(|r| r["kind"] == kind).count();
    assert_eq!(count("reset_sent") as f64, n);
    assert_eq!(count("reset_received") as f64, n);
    assert!(records.iter().any(|r| r["cause"] == "no_listener"));
    let text = tcpwatch()
        .args([
            "query",
            "--since",
            "5m",
            "--cause",
            "no_listener",
            "--socket",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("FINDING no_listener (exact)"), "{stdout}");
    assert!(
        stdout.contains("reset_sent"),
        "the connection's events too: {stdout}"
    );

    // Only root (and the daemon's user) may ask.
    let refused = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_tcpwatch"))
        .args(["query", "--socket"])
        .arg(&socket)
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("permission denied: only root may query"),
        "{stderr}"
    );

    // The file rotated and holds JSON Lines.
    let rotated = PathBuf::from(format!("{}.1", file.display()));
    assert!(rotated.exists(), "rotated file");
    for path in [&file, &rotated] {
        let text = fs::read_to_string(path).unwrap();
        assert!(
            text.len() <= 4096 + 64 * 1024,
            "{}: {} bytes",
            path.display(),
            text.len()
        );
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("JSON line in the file");
            assert!(v["record"].is_string());
        }
    }
    assert!(
        !Path::new(&format!("{}.3", file.display())).exists(),
        "keep = 2"
    );

    // SIGTERM: exit 0, summary, socket removed, programs unloaded.
    daemon.signal(Signal::SIGTERM);
    assert_eq!(
        daemon.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        daemon.seen.join("\n")
    );
    let summary = daemon
        .seen
        .iter()
        .find(|l| l.contains("stopped (terminated)"));
    assert!(
        summary.is_some_and(|l| l.contains(" 0 lost")),
        "{}",
        daemon.seen.join("\n")
    );
    assert!(!socket.exists(), "query socket removed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !loaded(&ids).is_empty() {
        assert!(
            Instant::now() < deadline,
            "programs still loaded: {:?}",
            loaded(&ids)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Switches `kernel.bpf_stats_enabled` on, and back to what it was on drop.
struct BpfStats(String);

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> Self {
        let before = fs::read_to_string(Self::PATH).expect("read bpf_stats_enabled");
        fs::write(Self::PATH, "1").expect("enable bpf_stats");
        Self(before.trim().to_owned())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(Self::PATH, &self.0);
    }
}

/// `n` connections to a server on 127.0.0.1:8080 that closes first: `n`
/// TIME_WAIT sockets on its listening port. Returns the listener (keep it open:
/// the metric counts ports with a listener).
fn time_wait(n: usize) -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:8080").expect("bind 8080 in the private namespace");
    for _ in 0..n {
        let mut client = TcpStream::connect("127.0.0.1:8080").unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(server);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    }
    listener
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
