//! What the application saw: the failed socket calls (`--kind app_error`) on
//! a finding's connection, at either end on this host, added to the finding
//! as evidence (`application_saw`) when it is released.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{
    finding::FindingRecord,
    history::{AppCall, FlowId, History},
};

/// Adds `application_saw` to `finding` about connection `flow` when its
/// owners' calls failed at or after the finding's event. A call's error is set
/// by the reset or timeout before the call returns, so its event always comes
/// after; calls that failed earlier belong to an earlier finding.
pub fn add_evidence(finding: &mut FindingRecord, history: &History, flow: &FlowId) {
    let time = finding.time;
    let calls: Vec<&AppCall> = [history.flow(flow), history.peer(flow)]
        .into_iter()
        .flatten()
        .flat_map(|h| h.app_errors.iter())
        .filter(|c| c.time >= time)
        .collect();
    if calls.is_empty() {
        return;
    }
    let value: Vec<_> = calls
        .iter()
        .map(|c| {
            json!({
                "pid": c.process.pid,
                "tid": c.process.tid,
                "comm": c.process.comm,
                "syscall": c.syscall,
                "error": c.error,
                "after_ms": after_ms(time, c.time),
            })
        })
        .collect();
    let text = calls
        .iter()
        .map(|c| {
            format!(
                "{} (pid {}) got {} from {}, {} ms after",
                c.process.comm,
                c.process.pid,
                c.error,
                c.syscall.as_deref().unwrap_or("a socket call"),
                after_ms(time, c.time)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    finding.add(
        "application_saw",
        value,
        format!("what the application saw: {text}"),
    );
}

/// Milliseconds from `from` to `to`, with one decimal (0 when before).
fn after_ms(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let us = (to - from).num_microseconds().unwrap_or(0).max(0);
    (us as f64 / 100.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn the_clients_failed_read_joins_the_servers_finding() {
        let f = run(vec![
            state(
                0,
                "10.0.0.1:80",
                "10.0.0.2:5000",
                "SYN_RECV",
                "ESTABLISHED",
                Some(owner(7, "server", "accept")),
                proc(7, "server"),
            )
            .into(),
            sent(
                100,
                "10.0.0.1:80",
                "10.0.0.2:5000",
                Some("ESTABLISHED"),
                Some("TCP_ABORT_ON_CLOSE"),
                Some(owner(7, "server", "accept")),
                proc(7, "server"),
            )
            .into(),
            app_error(
                101,
                "10.0.0.2:5000",
                "10.0.0.1:80",
                "read",
                "ECONNRESET",
                proc(42, "client"),
            )
            .into(),
        ]);
        let causes: Vec<_> = f.iter().map(|f| f.cause).collect();
        let f = f
            .iter()
            .find(|f| f.cause == Cause::CloseWithUnreadData)
            .unwrap_or_else(|| panic!("close_with_unread_data in {causes:?}"));
        let saw = f.value("application_saw").expect("application_saw");
        assert_eq!(saw[0]["pid"], 42);
        assert_eq!(saw[0]["syscall"], "read");
        assert_eq!(saw[0]["error"], "ECONNRESET");
        assert_eq!(saw[0]["after_ms"], 1.0);
        let text = &f
            .evidence
            .iter()
            .find(|e| e.fact == "application_saw")
            .unwrap()
            .text;
        assert!(
            text.contains("client (pid 42) got ECONNRESET from read, 1 ms after"),
            "{text}"
        );
    }
}
