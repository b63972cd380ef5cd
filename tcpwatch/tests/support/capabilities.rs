//! What the running kernel lets tcpwatch know, as `tcpwatch probes --json`
//! reports it (the feature detection tcpwatch itself uses), so that tests assert
//! what is true on this kernel instead of what is true on the newest one.

use std::{process::Command, sync::OnceLock};

use serde_json::Value;

/// `tcpwatch probes --json` on this kernel, run once per test binary.
fn probes() -> &'static Value {
    static PROBES: OnceLock<Value> = OnceLock::new();
    PROBES.get_or_init(|| {
        let out = Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
            .args(["probes", "--json"])
            .output()
            .expect("run tcpwatch probes");
        assert!(
            out.status.success(),
            "tcpwatch probes failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("tcpwatch probes --json output")
    })
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

/// Asserts how reset `event` and its `finding` give the reason, one of
/// `reasons`: where this kernel reports it, in the event and as an exact
/// finding; elsewhere absent from the event, and inferred (and marked so) in
/// the finding.
pub fn assert_reason(event: &Value, finding: &Value, reasons: &[&str]) {
    let evidence = finding["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["fact"] == "reason"))
        .unwrap_or_else(|| panic!("no reason in the finding: {finding}"));
    let inferred = evidence["value"].as_str().unwrap_or("");
    assert!(
        reasons.contains(&inferred),
        "finding's reason {inferred}, expected one of {reasons:?}: {finding}"
    );
    if kernel_reports(inferred) {
        assert_eq!(event["reason"], inferred, "the kernel's reason: {event}");
        assert_eq!(finding["confidence"], "exact", "{finding}");
    } else {
        assert!(
            event["reason"].is_null(),
            "this kernel gives no reason: {event}"
        );
        assert_eq!(finding["confidence"], "inferred", "{finding}");
        assert!(
            evidence["text"].as_str().unwrap_or("").contains("inferred"),
            "an inferred reason says so: {finding}"
        );
    }
}
