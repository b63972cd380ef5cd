//! Stopping tcpwatch leaves nothing in the kernel: after SIGTERM and after
//! SIGKILL, none of the programs it loaded is still loaded (and so none is
//! attached). A separate test binary: cargo runs test binaries one at a time, so
//! no other test's tcpwatch is loading programs meanwhile.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Ids of loaded BPF programs whose name starts with `tcpwatch_`.
fn tcpwatch_programs() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("tcpwatch_")))
        .map(|p| p.id())
        .collect()
}

/// Program ids as bpftool lists them, and the program ids its links point at
/// (an independent view from aya's).
fn bpftool_ids() -> (BTreeSet<u32>, BTreeSet<u32>) {
    let ids = |what: &str, key: &str| -> BTreeSet<u32> {
        let out = Command::new("bpftool")
            .args(["-j", what, "show"])
            .output()
            .expect("bpftool (cargo xtask setup installs it)");
        assert!(out.status.success(), "bpftool {what} show failed");
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry[key].as_u64())
            .map(|id| id as u32)
            .collect()
    };
    (ids("prog", "id"), ids("link", "prog_id"))
}

fn run_and_stop(signal: Signal) {
    let before = tcpwatch_programs();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
        .args(["trace", "--kind", "all", "--no-census"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpwatch");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("tcpwatch starts tracing within 60 s");
        if line.contains("; tracing") {
            break;
        }
    }
    let loaded: BTreeSet<u32> = tcpwatch_programs().difference(&before).copied().collect();
    assert!(
        loaded.len() >= 3,
        "tcpwatch's programs are loaded while it runs: {loaded:?}"
    );
    let (programs, _) = bpftool_ids();
    assert!(
        loaded.is_subset(&programs),
        "bpftool sees the programs while tcpwatch runs"
    );

    kill(Pid::from_raw(child.id() as i32), signal).expect("signal");
    let status = child.wait().expect("wait");
    if signal == Signal::SIGTERM {
        assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    }
    // Program release after the last fd closes is asynchronous (RCU): poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = tcpwatch_programs().intersection(&loaded).copied().collect();
        let (programs, linked) = bpftool_ids();
        let in_bpftool: Vec<u32> = programs
            .union(&linked)
            .filter(|id| loaded.contains(id))
            .copied()
            .collect();
        if left.is_empty() && in_bpftool.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs still loaded 10 s after {signal}: {left:?} (bpftool: programs or links {in_bpftool:?})"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// One test, so the two runs never overlap (each compares the kernel's program
/// list before and after).
#[test]
fn nothing_left_after_sigterm_or_sigkill() {
    run_and_stop(Signal::SIGTERM);
    run_and_stop(Signal::SIGKILL);
}
