//! `accept_queue_overflow`: a listener's accept queue is full, so connections
//! that completed the handshake are dropped (ListenOverflows, ListenDrops) or,
//! with net.ipv4.tcp_abort_on_overflow = 1, reset (INVALID_SYN from the
//! listener). The application does not accept() fast enough: stalled, too few
//! workers, or out of file descriptors (accept fails with EMFILE).

use std::collections::HashMap;

use chrono::TimeDelta;

use super::close_wait_leak::fd_text;
use crate::{
    context::sample::SampleRecord,
    explain::{
        cause::Cause,
        drops,
        finding::{Confidence, FindingRecord},
        history::endpoint,
        rule::{Ctx, Draft, Reset, Rule},
        wording::pid,
    },
};

const OVERFLOWS: &str = "TcpExt.ListenOverflows";
/// The drop reason of a segment that met a full accept queue (6.15+).
const LISTEN_OVERFLOW: &str = "TCP_LISTEN_OVERFLOW";

/// See the module docs.
#[derive(Default)]
pub struct AcceptQueueOverflow {
    /// Overflows seen per namespace since start.
    total: HashMap<u32, u64>,
}

impl Rule for AcceptQueueOverflow {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("INVALID_SYN") || reset.state() != Some("LISTEN") {
            return None;
        }
        // The listener resets with INVALID_SYN for a SYN on a pending request,
        // or, when the segment completing the handshake (an ACK, often with
        // data) finds no room for the new connection and
        // tcp_abort_on_overflow = 1. Only the second is this cause.
        if reset.event.segment.is_none() || reset.segment_has("SYN") {
            return None;
        }
        let netns = reset.id.netns;
        let now = reset.time();
        let abort = ctx
            .namespaces
            .sysctl(netns, "net.ipv4.tcp_abort_on_overflow");
        let overflows = ctx.namespaces.increase(
            netns,
            OVERFLOWS,
            now - TimeDelta::seconds(10),
            now + TimeDelta::seconds(5),
        );
        let port = reset.id.local.port();
        let mut draft = reset.draft(
            Cause::AcceptQueueOverflow,
            reset.confidence,
            format!(
                "The accept queue of the listener on port {port} ({}) was full when {}'s handshake completed, and net.ipv4.tcp_abort_on_overflow = 1, so the kernel reset the connection instead of dropping the ACK.",
                pid(reset.event.owner.as_ref()),
                reset.id.remote
            ),
            "Accept faster (more workers, a non-blocking accept loop) or raise the listen() backlog (capped by net.core.somaxconn); with tcp_abort_on_overflow = 0 clients retry instead of getting a reset.".into(),
            format!("accept_queue_overflow:{netns}:{port}:resets"),
        );
        draft.finding.port = Some(port);
        let flags = reset
            .event
            .segment
            .as_ref()
            .map(|s| s.flags.join("|"))
            .unwrap_or_default();
        draft.finding.add(
            "segment",
            flags.clone(),
            format!("the segment that completed the handshake carried {flags}, not a SYN"),
        );
        if let Some(value) = abort {
            draft.finding.add(
                "tcp_abort_on_overflow",
                value,
                format!("net.ipv4.tcp_abort_on_overflow = {value}"),
            );
        }
        if overflows > 0 {
            draft.finding.add(
                "listen_overflows",
                overflows,
                format!("TcpExt.ListenOverflows +{overflows} around the reset"),
            );
        }
        Some(draft)
    }

    fn sample(&mut self, ctx: &Ctx, s: &SampleRecord) -> Vec<Draft> {
        let overflows = s.counters.get(OVERFLOWS).copied().unwrap_or(0);
        let drops = s.counters.get("TcpExt.ListenDrops").copied().unwrap_or(0);
        if overflows == 0 && drops == 0 {
            return Vec::new();
        }
        let total = self.total.entry(s.netns).or_default();
        *total += overflows.max(drops);
        let total = *total;
        let somaxconn = s.sysctls.get("net.core.somaxconn").cloned();
        let abort = s
            .sysctls
            .get("net.ipv4.tcp_abort_on_overflow")
            .map(String::as_str)
            == Some("1");
        // Drops the kernel itself put on a listener (kfree_skb, `--kind
        // drop`) since the previous sample: TCP_LISTEN_OVERFLOW names the
        // full queue exactly (6.15+).
        let since = s.time - TimeDelta::milliseconds(s.interval_ms as i64 + 1000);
        let kernel_drops = |local: &str| {
            let port = endpoint(local).map_or(0, |e| e.port());
            ctx.history.drops.at_listener(s.netns, port, since, s.time)
        };
        let named = |local: &str| {
            kernel_drops(local)
                .iter()
                .any(|d| d.reason.as_deref() == Some(LISTEN_OVERFLOW))
        };
        // The listeners that are full (listeners are sorted fullest first),
        // else those the kernel named, else the fullest.
        let full: Vec<_> = s
            .listeners
            .iter()
            .filter(|l| l.backlog > 0 && l.queue >= l.backlog)
            .collect();
        let candidates = if !full.is_empty() {
            full
        } else if s.listeners.iter().any(|l| named(&l.local)) {
            s.listeners.iter().filter(|l| named(&l.local)).collect()
        } else {
            s.listeners.iter().take(1).collect()
        };
        candidates
            .into_iter()
            .map(|l| {
                let fds = l.owner.as_ref().and_then(|o| s.processes.iter().find(|p| p.pid == o.pid));
                let out_of_fds = fds.is_some_and(|p| p.fd_limit.is_some_and(|limit| p.fds + 1 >= limit));
                let container = l
                    .owner
                    .as_ref()
                    .and_then(|o| o.container.as_deref().or(o.unit.as_deref()))
                    .map(|c| format!(" in {}", short(c)))
                    .unwrap_or_default();
                let asked = l.requested_backlog.map(|b| {
                    if i64::from(b) > i64::from(l.backlog) {
                        format!("; it asked listen() for {b}, capped to {}", l.backlog)
                    } else {
                        format!("; it asked listen() for {b}")
                    }
                }).unwrap_or_default();
                let at_listener = kernel_drops(&l.local);
                let overflow_drops = at_listener
                    .iter()
                    .filter(|d| d.reason.as_deref() == Some(LISTEN_OVERFLOW))
                    .count();
                let mut f = FindingRecord::new(
                    Cause::AcceptQueueOverflow,
                    Confidence::Exact,
                    s.time,
                    s.netns,
                    format!(
                        "The accept queue of {} is full ({} of {} connections waiting{asked}): {}{container} does not accept() fast enough{}. The kernel {} {} connections since the previous sample (ListenOverflows +{overflows}, ListenDrops +{drops}{}).",
                        l.local,
                        l.queue,
                        l.backlog,
                        pid(l.owner.as_ref()),
                        if out_of_fds { ", because it is out of file descriptors and accept() fails with EMFILE" } else { "" },
                        if abort { "reset" } else { "dropped" },
                        overflows.max(drops),
                        if overflow_drops > 0 { format!(", {overflow_drops} segments dropped with reason {LISTEN_OVERFLOW}") } else { String::new() },
                    ) + &fds.map(fd_text).unwrap_or_default(),
                    format!(
                        "{}Accept faster (more workers, a non-blocking accept loop) or raise the listen() backlog (it is capped by net.core.somaxconn{}).{}",
                        if out_of_fds { "Raise RLIMIT_NOFILE and find the descriptor leak (see close_wait_leak). " } else { "" },
                        somaxconn.as_ref().map(|v| format!(" = {v}")).unwrap_or_default(),
                        if abort { "" } else { " With net.ipv4.tcp_abort_on_overflow = 0 the clients retransmit and wait; = 1 would reset them instead." },
                    ),
                );
                f.owner = l.owner.clone();
                f.port = endpoint(&l.local).map(|e| e.port());
                f.add("listener", l.local.clone(), format!("the listening socket {}", l.local));
                f.add("accept_queue", l.queue, format!("{} connections waiting to be accepted", l.queue));
                f.add("accept_backlog", l.backlog, format!("the queue holds at most {} (min of the listen() backlog and somaxconn)", l.backlog));
                if let Some(b) = l.requested_backlog {
                    f.add("requested_backlog", b, format!("the program called listen() with backlog {b}"));
                }
                f.add("listen_overflows", overflows, format!("TcpExt.ListenOverflows +{overflows}"));
                f.add("listen_drops", drops, format!("TcpExt.ListenDrops +{drops}"));
                if let Some(v) = &somaxconn {
                    f.add("somaxconn", v.parse::<u64>().unwrap_or(0), format!("net.core.somaxconn = {v}"));
                }
                f.add("tcp_abort_on_overflow", u64::from(abort), format!(
                    "net.ipv4.tcp_abort_on_overflow = {}: {}",
                    u8::from(abort),
                    if abort { "an overflow at the final ACK resets the connection" } else { "overflows are dropped silently; clients retransmit" }
                ));
                if !at_listener.is_empty() {
                    f.add("listener_drops", at_listener.len(), format!(
                        "the kernel dropped {} segments at this listener since the previous sample: {}",
                        at_listener.len(),
                        drops::reasons_text(&at_listener)
                    ));
                }
                if let Some(p) = fds {
                    f.add("open_fds", p.fds, format!("{} descriptors open", p.fds));
                    if let Some(limit) = p.fd_limit {
                        f.add("fd_limit", limit, format!("RLIMIT_NOFILE is {limit}"));
                    }
                }
                Draft {
                    finding: f,
                    key: format!("accept_queue_overflow:{}:{}", s.netns, l.local),
                    level: Some(total),
                    flow: None,
                    summary: false,
                }
            })
            .collect()
    }
}

/// A container id shortened as `docker ps` does; unit names as they are.
fn short(id: &str) -> String {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("container {}", &id[..12])
    } else {
        id.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        context::sample::{Listener, ProcessFds},
        explain::{cause::Cause, testkit::*},
    };

    #[test]
    fn full_queue_of_a_process_out_of_descriptors() {
        let mut s = sample(1000);
        s.counters.insert("TcpExt.ListenOverflows".into(), 12);
        s.counters.insert("TcpExt.ListenDrops".into(), 12);
        s.listeners.push(Listener {
            local: "0.0.0.0:8080".into(),
            queue: 129,
            backlog: 128,
            requested_backlog: Some(511),
            owner: Some(owner(7, "api", "census")),
        });
        s.processes.push(ProcessFds {
            pid: 7,
            comm: "api".into(),
            fds: 1024,
            fd_limit: Some(1024),
        });
        let f = run(vec![s.into()]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::AcceptQueueOverflow);
        assert_eq!(f.port, Some(8080));
        assert_eq!(
            (f.value("accept_queue"), f.value("accept_backlog")),
            (Some(&129.into()), Some(&128.into()))
        );
        assert!(f.summary.contains("EMFILE"), "{}", f.summary);
        assert_eq!(f.value("requested_backlog"), Some(&511.into()));
        assert!(
            f.summary.contains("asked listen() for 511, capped to 128"),
            "{}",
            f.summary
        );
    }

    /// The queue drained again by the time of the sample, but the kernel
    /// named the overflow on the listener (kfree_skb TCP_LISTEN_OVERFLOW).
    #[test]
    fn kernel_drops_name_the_listener() {
        let mut s = sample(1000);
        s.interval_ms = 1000;
        s.counters.insert("TcpExt.ListenOverflows".into(), 2);
        s.sysctls.insert("net.core.somaxconn".into(), "4096".into());
        for (local, owner_pid) in [("0.0.0.0:9000", 8), ("127.0.0.1:8080", 7)] {
            s.listeners.push(Listener {
                local: local.into(),
                queue: 0,
                backlog: 2,
                requested_backlog: None,
                owner: Some(owner(owner_pid, "api", "census")),
            });
        }
        let drop = |ms| {
            dropped(
                ms,
                "127.0.0.1:8080",
                "127.0.0.1:5000",
                "TCP_LISTEN_OVERFLOW",
                Some("LISTEN"),
            )
        };
        let f = run(vec![drop(500).into(), drop(600).into(), s.into()]);
        let f = only(&f);
        assert_eq!(f.port, Some(8080));
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(7));
        assert_eq!(f.value("listener_drops"), Some(&2.into()));
        assert_eq!(f.value("tcp_abort_on_overflow"), Some(&0.into()));
        assert_eq!(f.value("somaxconn"), Some(&4096.into()));
        assert!(
            f.summary
                .contains("2 segments dropped with reason TCP_LISTEN_OVERFLOW"),
            "{}",
            f.summary
        );
    }

    /// A reset's finding lists the drops of its connection that came before.
    #[test]
    fn reset_lists_the_drops_before_it() {
        let reset = with_segment(
            sent(
                10,
                "127.0.0.1:8080",
                "127.0.0.1:5000",
                Some("LISTEN"),
                Some("INVALID_SYN"),
                Some(owner(7, "api", "listen")),
                proc(0, "swapper/0"),
            ),
            &["ACK"],
            5,
        );
        let drop = dropped(
            9,
            "127.0.0.1:8080",
            "127.0.0.1:5000",
            "TCP_LISTEN_OVERFLOW",
            Some("LISTEN"),
        );
        let f = run(vec![drop.into(), reset.into()]);
        let f = only(&f);
        assert_eq!(f.value("drops_before"), Some(&1.into()));
        let text = &f
            .evidence
            .iter()
            .find(|e| e.fact == "drops_before")
            .unwrap()
            .text;
        assert!(text.contains("1× TCP_LISTEN_OVERFLOW"), "{text}");
    }

    #[test]
    fn abort_on_overflow_resets() {
        let mut s = sample(0);
        s.sysctls
            .insert("net.ipv4.tcp_abort_on_overflow".into(), "1".into());
        let f = run(vec![
            s.into(),
            with_segment(
                sent(
                    10,
                    "127.0.0.1:8080",
                    "127.0.0.1:5000",
                    Some("LISTEN"),
                    Some("INVALID_SYN"),
                    Some(owner(7, "api", "listen")),
                    proc(0, "swapper/0"),
                ),
                &["ACK"],
                5,
            )
            .into(),
        ]);
        assert_eq!(only(&f).cause, Cause::AcceptQueueOverflow);
    }

    /// Before any sample of the namespace, the segment alone decides: an ACK
    /// (not a SYN) reset by the listener with INVALID_SYN is an overflow.
    #[test]
    fn abort_on_overflow_before_the_first_sample() {
        let reset = |flags: &[&str]| {
            with_segment(
                sent(
                    10,
                    "127.0.0.1:8080",
                    "127.0.0.1:5000",
                    Some("LISTEN"),
                    Some("INVALID_SYN"),
                    Some(owner(7, "api", "listen")),
                    proc(0, "swapper/0"),
                ),
                flags,
                18,
            )
        };
        let f = run(vec![reset(&["PSH", "ACK"]).into()]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::AcceptQueueOverflow);
        assert_eq!(f.value("segment"), Some(&"PSH|ACK".into()));
        let f = run(vec![reset(&["SYN"]).into()]);
        assert!(
            f.iter().all(|f| f.cause != Cause::AcceptQueueOverflow),
            "a SYN on a pending request is not an overflow"
        );
    }
}
