//! One readable line per event, for people watching an incident live.
//!
//! ```text
//! 14:02:11.482913 reset_sent      127.0.0.1:9 > 127.0.0.1:53122  NO_SOCKET (incoming SYN)  owner=- listener=-  actor=curl[4121]
//! ```

use std::fmt::Write as _;

use chrono::Local;

use crate::events::model::{EventRecord, Kind, Process};

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
