//! What the running kernel lets tcpwatch know, as `tcpwatch probes --json`
//! reports it (the feature detection tcpwatch itself uses), so that tests assert
//! what is true on this kernel instead of what is true on the newest one.

use std::{process::Command, sync::OnceLock};

use serde_json::Value;

/// `tcpwatch probes --json ARGS` now.
fn run_probes(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
        .args(["probes", "--json"])
        .args(args)
        .output()
        .expect("run tcpwatch probes");
    assert!(
        out.status.success(),
        "tcpwatch probes failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("tcpwatch probes --json output")
}

/// `tcpwatch probes --json` on this kernel, run once per test binary.
fn probes() -> &'static Value {
    static PROBES: OnceLock<Value> = OnceLock::new();
    PROBES.get_or_init(|| run_probes(&[]))
}

/// Whether this kernel reports reset reason `reason` itself (6.10+ passive,
/// 6.12+ active), rather than tcpwatch inferring it.
pub fn kernel_reports(reason: &str) -> bool {
    let how = probes()["causes"]
        .as_array()
        .and_then(|causes| causes.iter().find(|c| c["reason"] == reason))
        .and_then(|c| c["how"].as_str())
        .unwrap_or_else(|| panic!("tcpwatch probes lists no cause {reason}"));
    how.starts_with("exact")
}

/// Asserts how `finding` gives its reason, one of `reasons`: exact where this
/// kernel reports that reason, inferred and marked so elsewhere. Returns it.
pub fn assert_finding_reason<'a>(finding: &'a Value, reasons: &[&str]) -> &'a str {
    let evidence = finding["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["fact"] == "reason"))
        .unwrap_or_else(|| panic!("no reason in the finding: {finding}"));
    let reason = evidence["value"].as_str().unwrap_or("");
    assert!(
        reasons.contains(&reason),
        "finding's reason {reason}, expected one of {reasons:?}: {finding}"
    );
    if kernel_reports(reason) {
        assert_eq!(finding["confidence"], "exact", "{finding}");
    } else {
        assert_eq!(finding["confidence"], "inferred", "{finding}");
        assert!(
            evidence["text"].as_str().unwrap_or("").contains("inferred"),
            "an inferred reason says so: {finding}"
        );
    }
    reason
}

/// Asserts how reset `event` and its `finding` give the reason, one of
/// `reasons`: where this kernel reports it, in the event and as an exact
/// finding; elsewhere absent from the event, and inferred (and marked so) in
/// the finding.
pub fn assert_reason(event: &Value, finding: &Value, reasons: &[&str]) {
    let reason = assert_finding_reason(finding, reasons);
    if kernel_reports(reason) {
        assert_eq!(event["reason"], reason, "the kernel's reason: {event}");
    } else {
        assert!(
            event["reason"].is_null(),
            "this kernel gives no reason: {event}"
        );
    }
}

/// Whether reset-sent `event` is one for a segment that found no socket:
/// reason NO_SOCKET where the kernel reports reasons, no socket at all
/// elsewhere.
pub fn is_no_socket_reset(event: &Value) -> bool {
    if kernel_reports("NO_SOCKET") {
        event["reason"] == "NO_SOCKET"
    } else {
        event["reason"].is_null() && event["socket"].is_null()
    }
}

/// Whether this kernel names the drop reason TCP_LISTEN_OVERFLOW (6.15+):
/// before, an accept-queue overflow shows only in the counters.
pub fn names_listen_overflow_drops() -> bool {
    probes()["listen_overflow_drop_reason"] == true
}

/// Whether this kernel's `skb:kfree_skb` names the receiving socket (`rx_sk`,
/// 6.12): before, a drop at a listener carries no socket, only the listener
/// found by port.
pub fn drops_name_socket() -> bool {
    probes()["drops_have_socket"] == true
}

/// Whether tcpwatch sees resets netfilter builds (kprobes on nf_send_reset),
/// as `tcpwatch probes` says under "firewall resets" right now: asked afresh,
/// since the functions appear only once the first REJECT rule has loaded
/// their module.
pub fn sees_firewall_resets() -> bool {
    run_probes(&[])["why"]
        .as_array()
        .and_then(|why| why.iter().find(|w| w["role"] == "firewall resets"))
        .and_then(|w| w["why"].as_str())
        .unwrap_or_else(|| panic!("tcpwatch probes says nothing about firewall resets"))
        .starts_with("kprobes")
}

/// Whether `tcpwatch --btf none` still sees resets sent without a socket: the
/// tracepoint does from 6.10; before, only the kprobes do, and they need BTF.
pub fn sees_socketless_resets_without_btf() -> bool {
    static COVERAGE: OnceLock<Value> = OnceLock::new();
    COVERAGE.get_or_init(|| run_probes(&["--btf", "none"]))["reset_coverage"] == "complete"
}

/// Whether `--kind app_error` sees failed reads and writes on this kernel
/// (the sock:sock_recv_length/sock_send_length tracepoints, 6.4+).
pub fn sees_failed_reads_and_writes() -> bool {
    probes()["tracepoints"]["sock:sock_recv_length"] == true
        && probes()["tracepoints"]["sock:sock_send_length"] == true
}

/// Whether `--kind app_error` sees failed connects (syscalls:sys_exit_connect).
pub fn sees_failed_connects() -> bool {
    probes()["tracepoints"]["syscalls:sys_exit_connect"] == true
}
