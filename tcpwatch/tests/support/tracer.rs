//! Running the real `tcpwatch trace --json` against a scenario.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

/// A running `tcpwatch trace`, stopped with SIGTERM by [`Tracer::finish`].
pub struct Tracer {
    child: Option<Child>,
    stdout: thread::JoinHandle<String>,
    stderr_lines: mpsc::Receiver<String>,
    stderr_tail: Vec<String>,
}

/// What a finished trace produced.
pub struct Trace {
    /// Event records.
    pub events: Vec<Value>,
    /// Finding records.
    pub findings: Vec<Value>,
    /// Sample records.
    pub samples: Vec<Value>,
    /// Every record, in order.
    pub records: Vec<Value>,
    /// Everything tcpwatch printed on stdout (a recording).
    pub raw: String,
    /// Everything tcpwatch wrote on stderr.
    pub stderr: String,
    /// Exit status code.
    pub code: Option<i32>,
}

impl Tracer {
    /// Starts `tcpwatch trace --json` with `args` and waits until it is tracing.
    pub fn start(args: &[&str]) -> Tracer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
            .arg("trace")
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpwatch");
        let mut stdout = child.stdout.take().expect("stdout");
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let stderr = child.stderr.take().expect("stderr");
        let (tx, stderr_lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tracer = Tracer {
            child: Some(child),
            stdout,
            stderr_lines,
            stderr_tail: Vec::new(),
        };
        loop {
            match tracer.stderr_lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let ready = line.contains("; tracing");
                    tracer.stderr_tail.push(line);
                    if ready {
                        return tracer;
                    }
                }
                Err(_) => panic!(
                    "tcpwatch did not start tracing within 60 s; stderr:\n{}",
                    tracer.stderr_tail.join("\n")
                ),
            }
        }
    }

    /// Stops tcpwatch with `signal` after a short settle time and collects output.
    pub fn finish_with(mut self, signal: Signal) -> Trace {
        thread::sleep(Duration::from_millis(300));
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal tcpwatch");
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        let out = std::mem::replace(&mut self.stdout, thread::spawn(String::new))
            .join()
            .unwrap_or_default();
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr_tail.push(line);
        }
        let stderr = self.stderr_tail.join("\n");
        let records: Vec<Value> = out
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("bad JSON line from tcpwatch ({e}): {l}"))
            })
            .collect();
        let of = |record: &str| -> Vec<Value> {
            records
                .iter()
                .filter(|r| r["record"] == record)
                .cloned()
                .collect()
        };
        Trace {
            events: of("event"),
            findings: of("finding"),
            samples: of("sample"),
            records,
            raw: out,
            stderr,
            code: status,
        }
    }

    /// Stops tcpwatch with SIGTERM.
    pub fn finish(self) -> Trace {
        self.finish_with(Signal::SIGTERM)
    }

    /// Waits `wait` (for samples and the findings they lead to), then stops.
    pub fn finish_after(self, wait: Duration) -> Trace {
        thread::sleep(wait);
        self.finish()
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tcpwatch did not exit within {limit:?} of the signal");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Trace {
    /// Events of `kind`.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["kind"] == kind).collect()
    }

    /// The single event of `kind` matching `pred`; panics with the whole trace
    /// otherwise.
    pub fn one(&self, kind: &str, what: &str, pred: impl Fn(&Value) -> bool) -> &Value {
        let found: Vec<_> = self.of_kind(kind).into_iter().filter(|e| pred(e)).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {kind} event ({what}); trace:\n{}\nstderr:\n{}",
            self.dump(),
            self.stderr
        );
        found[0]
    }

    /// Findings of `cause`.
    pub fn findings_of(&self, cause: &str) -> Vec<&Value> {
        self.findings
            .iter()
            .filter(|f| f["cause"] == cause)
            .collect()
    }

    /// The trace as JSON lines (events and findings), for failure messages.
    pub fn dump(&self) -> String {
        self.events
            .iter()
            .chain(&self.findings)
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}
