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
        finding::{Confidence, FindingRecord},
        history::endpoint,
        rule::{Ctx, Draft, Reset, Rule},
        wording::pid,
    },
};

const OVERFLOWS: &str = "TcpExt.ListenOverflows";

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

    fn sample(&mut self, _ctx: &Ctx, s: &SampleRecord) -> Vec<Draft> {
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
        // The listeners that are full (listeners are sorted fullest first).
        let full: Vec<_> = s
            .listeners
            .iter()
            .filter(|l| l.backlog > 0 && l.queue >= l.backlog)
            .collect();
        let candidates = if full.is_empty() {
            s.listeners.iter().take(1).collect()
        } else {
            full
        };
        candidates
            .into_iter()
            .map(|l| {
                let fds = l.owner.as_ref().and_then(|o| s.processes.iter().find(|p| p.pid == o.pid));
                let out_of_fds = fds.is_some_and(|p| p.fd_limit.is_some_and(|limit| p.fds + 1 >= limit));
                let mut f = FindingRecord::new(
                    Cause::AcceptQueueOverflow,
                    Confidence::Exact,
                    s.time,
                    s.netns,
                    format!(
                        "The accept queue of {} is full ({} of {} connections waiting): {} does not accept() fast enough{}. The kernel {} {} connections since the previous sample (ListenOverflows +{overflows}, ListenDrops +{drops}).",
                        l.local,
                        l.queue,
                        l.backlog,
                        pid(l.owner.as_ref()),
                        if out_of_fds { ", because it is out of file descriptors and accept() fails with EMFILE" } else { "" },
                        if abort { "reset" } else { "dropped" },
                        overflows.max(drops),
                    ) + &fds.map(fd_text).unwrap_or_default(),
                    format!(
                        "{}Accept faster (more workers, a non-blocking accept loop) or raise the listen() backlog (it is capped by net.core.somaxconn{}).",
                        if out_of_fds { "Raise RLIMIT_NOFILE and find the descriptor leak (see close_wait_leak). " } else { "" },
                        somaxconn.as_ref().map(|v| format!(" = {v}")).unwrap_or_default()
                    ),
                );
                f.owner = l.owner.clone();
                f.port = endpoint(&l.local).map(|e| e.port());
                f.add("accept_queue", l.queue, format!("{} connections waiting to be accepted", l.queue));
                f.add("accept_backlog", l.backlog, format!("the queue holds at most {} (min of the listen() backlog and somaxconn)", l.backlog));
                f.add("listen_overflows", overflows, format!("TcpExt.ListenOverflows +{overflows}"));
                f.add("listen_drops", drops, format!("TcpExt.ListenDrops +{drops}"));
                if let Some(v) = &somaxconn {
                    f.add("somaxconn", v.parse::<u64>().unwrap_or(0), format!("net.core.somaxconn = {v}"));
                }
                f.add("tcp_abort_on_overflow", u64::from(abort), format!("net.ipv4.tcp_abort_on_overflow = {}", u8::from(abort)));
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
