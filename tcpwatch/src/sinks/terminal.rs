//! One readable line per event, for people watching an incident live.
//!
//! ```text
//! 14:02:11.482913 reset_sent      127.0.0.1:9 > 127.0.0.1:53122  NO_SOCKET (incoming SYN)  owner=- listener=-  actor=curl[4121]
//! ```

use std::fmt::Write as _;

use chrono::Local;

use crate::events::{
    kstack,
    model::{AggregateRecord, EventRecord, Kind, Process, StormPhase, StormRecord},
};

/// Formats one event line (no trailing newline). `home_netns` is left out of the
/// line; any other namespace is shown.
pub fn line(event: &EventRecord, home_netns: u32) -> String {
    let mut out = String::with_capacity(160);
    let time = event.time.with_timezone(&Local).format("%H:%M:%S%.6f");
    let flow = format!("{} > {}", event.flow.src, event.flow.dst);
    let _ = write!(out, "{time} {:<14} {flow:<47} ", event.kind.as_str());
    match event.kind {
        Kind::State => {
            let _ = write!(
                out,
                "{} -> {}",
                event.old_state.as_deref().unwrap_or("?"),
                event.new_state.as_deref().unwrap_or("?")
            );
        }
        Kind::ResetSent if event.netfilter_hook.is_some() => {
            let _ = write!(
                out,
                "FIREWALL REJECT in {}",
                event.netfilter_hook.as_deref().unwrap_or("?")
            );
            if let Some(seg) = &event.segment {
                let _ = write!(out, " (incoming {})", seg.flags.join("|"));
            }
        }
        Kind::ResetSent => {
            out.push_str(event.reason.as_deref().unwrap_or("reason-unknown"));
            match (&event.state, &event.segment) {
                (Some(state), _) => {
                    let _ = write!(out, " in {state}");
                }
                (None, Some(seg)) => {
                    let _ = write!(out, " (no socket; incoming {})", seg.flags.join("|"));
                }
                (None, None) => out.push_str(" (no socket)"),
            }
        }
        Kind::ResetReceived => {
            let _ = write!(
                out,
                "in {} -> {}",
                event.state.as_deref().unwrap_or("?"),
                event.error.as_deref().unwrap_or("?")
            );
        }
        Kind::AppError => {
            let _ = write!(
                out,
                "{} -> {}",
                event.syscall.as_deref().unwrap_or("socket call"),
                event.error.as_deref().unwrap_or("?")
            );
            if let Some(state) = &event.state {
                let _ = write!(out, " in {state}");
            }
        }
        Kind::Drop => {
            out.push_str(event.reason.as_deref().unwrap_or("reason-unknown"));
            if let Some(seg) = &event.segment {
                let _ = write!(
                    out,
                    " ({} segment, {} bytes)",
                    seg.flags.join("|"),
                    seg.payload_bytes
                );
            }
            match &event.state {
                Some(state) => {
                    let _ = write!(out, " at {state} socket");
                }
                None => out.push_str(" (socket unknown)"),
            }
        }
    }
    let _ = write!(out, "  owner={}", who(event.owner.as_ref(), true));
    if event.kind == Kind::ResetSent && event.state.is_none() || event.listener.is_some() {
        let _ = write!(out, " listener={}", who(event.listener.as_ref(), false));
    }
    let _ = write!(out, "  actor={}", who(Some(&event.actor), false));
    if event.flow.netns != home_netns {
        let _ = write!(out, "  netns={}", event.flow.netns);
    }
    out
}

/// The kernel stack of an event (`--kstack`), like a backtrace: one frame per
/// line under the event line, innermost first. Empty without a stack.
pub fn kstack_lines(event: &EventRecord) -> String {
    let mut out = String::new();
    for (i, frame) in event.kstack.iter().flatten().enumerate() {
        let _ = write!(out, "\n    #{i:<2} {}", kstack::describe(frame));
    }
    out
}

/// A storm-mode start or end line.
pub fn storm_line(storm: &StormRecord) -> String {
    let time = storm.time.with_timezone(&Local).format("%H:%M:%S%.6f");
    match storm.phase {
        StormPhase::Started => format!(
            "{time} STORM started: events arrive faster than tcpwatch can take them; the kernel now counts them per kind, reason, owner and port (SUMMARY lines) instead of sending each"
        ),
        StormPhase::Ended => format!(
            "{time} STORM ended after {:.1} s: {} events summarised; events are shown one by one again",
            (storm.time - storm.since).num_milliseconds().max(0) as f64 / 1000.0,
            storm.summarised
        ),
    }
}

/// An "N events summarised" line.
pub fn aggregate_line(a: &AggregateRecord, home_netns: u32) -> String {
    let mut out = String::with_capacity(160);
    let time = a.time.with_timezone(&Local).format("%H:%M:%S%.6f");
    let what = match a.kind {
        Kind::State => format!(
            "{} -> {}",
            a.old_state.as_deref().unwrap_or("?"),
            a.new_state.as_deref().unwrap_or("?")
        ),
        Kind::ResetSent => format!(
            "{}{}",
            a.reason.as_deref().unwrap_or("reason-unknown"),
            a.state
                .as_deref()
                .map(|s| format!(" in {s}"))
                .unwrap_or_default()
        ),
        Kind::ResetReceived => format!("in {}", a.state.as_deref().unwrap_or("?")),
        Kind::Drop => a.reason.as_deref().unwrap_or("reason-unknown").to_owned(),
        Kind::AppError => format!("-> {}", a.reason.as_deref().unwrap_or("?")),
    };
    let _ = write!(
        out,
        "{time} SUMMARY {:<14} {} events summarised over {:.1} s: {what}  {} port {}  owner={}",
        a.kind.as_str(),
        a.count,
        (a.time - a.since).num_milliseconds().max(0) as f64 / 1000.0,
        a.port_side,
        a.port,
        who(a.owner.as_ref(), false)
    );
    if a.listener.is_some() {
        let _ = write!(out, " listener={}", who(a.listener.as_ref(), false));
    }
    let _ = write!(out, "  e.g. {} > {}", a.example.src, a.example.dst);
    if a.netns != home_netns {
        let _ = write!(out, "  netns={}", a.netns);
    }
    out
}

fn who(process: Option<&Process>, with_source: bool) -> String {
    let Some(p) = process else {
        return "-".to_owned();
    };
    let mut s = format!("{}[{}]", p.comm, p.pid);
    if with_source && let Some(source) = &p.source {
        let _ = write!(s, "({source}");
        if let Some(ms) = p.closed_ms_before {
            let _ = write!(s, ", closed {ms} ms before");
        }
        s.push(')');
    }
    s
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::events::model::{Flow, RecordType, SCHEMA_VERSION, Segment};

    fn event(kind: Kind) -> EventRecord {
        EventRecord {
            schema_version: SCHEMA_VERSION,
            record: RecordType::Event,
            kind,
            time: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            flow: Flow {
                family: "ipv4".into(),
                src: "127.0.0.1:9".into(),
                dst: "127.0.0.1:53122".into(),
                netns: 1,
            },
            old_state: None,
            new_state: None,
            state: None,
            reason: Some("NO_SOCKET".into()),
            error: None,
            syscall: None,
            soft_error: None,
            owner: None,
            actor: Process {
                pid: 4121,
                tid: 4121,
                comm: "curl".into(),
                uid: 0,
                cgroup_id: 1,
                source: None,
                closed_ms_before: None,
                cgroup: None,
                unit: None,
                container: None,
            },
            listener: None,
            hook: "tracepoint:tcp:tcp_send_reset".into(),
            segment: Some(Segment {
                flags: vec!["SYN".into()],
                payload_bytes: 0,
            }),
            socket: None,
            tcp: None,
            kstack: None,
            netfilter_hook: None,
        }
    }

    #[test]
    fn no_socket_reset_line() {
        let l = line(&event(Kind::ResetSent), 1);
        assert!(l.contains("reset_sent"), "{l}");
        assert!(l.contains("127.0.0.1:9 > 127.0.0.1:53122"), "{l}");
        assert!(l.contains("NO_SOCKET (no socket; incoming SYN)"), "{l}");
        assert!(l.contains("owner=- listener=-  actor=curl[4121]"), "{l}");
        assert!(!l.contains("netns="), "{l}");
        assert!(line(&event(Kind::ResetSent), 2).ends_with("netns=1"));
    }

    #[test]
    fn failed_call_line_names_the_syscall_and_errno() {
        let mut e = event(Kind::AppError);
        e.reason = None;
        e.syscall = Some("read".into());
        e.error = Some("ECONNRESET".into());
        e.state = Some("CLOSE".into());
        let l = line(&e, 1);
        assert!(l.contains("app_error"), "{l}");
        assert!(l.contains("read -> ECONNRESET in CLOSE"), "{l}");
    }

    #[test]
    fn firewall_reset_line_names_the_hook() {
        let mut e = event(Kind::ResetSent);
        e.reason = None;
        e.netfilter_hook = Some("INPUT".into());
        let l = line(&e, 1);
        assert!(l.contains("FIREWALL REJECT in INPUT (incoming SYN)"), "{l}");
    }

    #[test]
    fn owner_with_source_and_close_age() {
        let mut e = event(Kind::ResetSent);
        e.state = Some("TIME_WAIT".into());
        e.reason = Some("TCP_TIMEWAIT_SOCKET".into());
        e.owner = Some(Process {
            comm: "nginx".into(),
            pid: 812,
            source: Some("accept".into()),
            closed_ms_before: Some(1200),
            cgroup: None,
            unit: None,
            container: None,
            ..e.actor.clone()
        });
        let l = line(&e, 1);
        assert!(
            l.contains(
                "TCP_TIMEWAIT_SOCKET in TIME_WAIT  owner=nginx[812](accept, closed 1200 ms before)"
            ),
            "{l}"
        );
    }
}
