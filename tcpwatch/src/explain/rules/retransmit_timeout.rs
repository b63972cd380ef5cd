//! `retransmit_timeout`: the kernel retransmitted (data, or the SYN of a
//! connect) until it gave up, and closed the connection without a reset
//! (`tcp_write_timeout` → `tcp_write_err`): the owner gets ETIMEDOUT. The
//! peer host or the path to it is gone, or something drops the segments
//! silently.
//!
//! Offered the state event to CLOSE of a socket whose error (`sk_err`) is
//! ETIMEDOUT, with the retransmission counters read from the socket at that
//! moment. A keep-alive timeout (probes out, and a reset) is
//! `keepalive_timeout`'s.

use crate::explain::{
    cause::Cause,
    finding::Confidence,
    rule::{Ctx, Draft, Reset, Rule},
    wording::{duration_ms, pid},
};

/// See the module docs.
pub struct RetransmitTimeout;

impl Rule for RetransmitTimeout {
    fn closed(&mut self, ctx: &Ctx, close: &Reset) -> Option<Draft> {
        let event = close.event;
        if event.error.as_deref() != Some("ETIMEDOUT") {
            return None;
        }
        let tcp = event.tcp?;
        if tcp.probes_out > 0 {
            return None;
        }
        let netns = close.id.netns;
        let sysctl = |name: &str| ctx.namespaces.sysctl(netns, &format!("net.ipv4.{name}"));
        let connecting = event.old_state.as_deref() == Some("SYN_SENT");
        let soft = event
            .soft_error
            .as_deref()
            .map(|e| format!(" ({e} reported by ICMP meanwhile)"))
            .unwrap_or_default();
        let owner = pid(event.owner.as_ref());
        let remote = close.id.remote;
        let retries = tcp.retransmits;
        let bound = match tcp.user_timeout_ms {
            Some(ms) => format!(
                "TCP_USER_TIMEOUT ({}) on this socket",
                duration_ms(ms.into())
            ),
            None if connecting => sysctl("tcp_syn_retries").map_or_else(
                || "net.ipv4.tcp_syn_retries".to_owned(),
                |v| format!("net.ipv4.tcp_syn_retries = {v}"),
            ),
            None => sysctl("tcp_retries2").map_or_else(
                || "net.ipv4.tcp_retries2".to_owned(),
                |v| format!("net.ipv4.tcp_retries2 = {v}"),
            ),
        };
        let (summary, fix, key) = if connecting {
            (
                format!(
                    "connect() to {remote} timed out: {retries} SYN retransmissions got no answer{soft}, so the kernel gave up; {owner} gets ETIMEDOUT."
                ),
                format!(
                    "Nothing answers at {remote}: the host is down or unreachable, or a firewall drops the SYNs silently (no reset, no ICMP). Check the route and the filters toward it. How long connect() waits is set by {bound}."
                ),
                format!("connect_timeout:{netns}:{remote}"),
            )
        } else {
            (
                format!(
                    "The peer {remote} stopped acknowledging: {retries} retransmissions in a row went unanswered{soft}, so the kernel gave up on the connection without a reset; {owner} gets ETIMEDOUT."
                ),
                format!(
                    "The peer host or the path to it is gone (a crashed or failed-over host, a NAT or firewall that dropped the connection's state, a link down). How long the kernel retries is bounded by {bound}: lower it to fail faster, and have the application reconnect."
                ),
                format!("retransmit_timeout:{netns}:{remote}"),
            )
        };
        let mut draft = close.draft(
            Cause::RetransmitTimeout,
            Confidence::Exact,
            summary,
            fix,
            key,
        );
        let f = &mut draft.finding;
        f.add(
            "error",
            "ETIMEDOUT",
            "the socket's error when the kernel closed it (sk_err): ETIMEDOUT".to_owned(),
        );
        f.add(
            "retransmits",
            retries,
            format!("{retries} retransmission timeouts in a row without an ACK (icsk_retransmits)"),
        );
        f.add(
            "total_retrans",
            tcp.total_retrans,
            format!(
                "{} segments retransmitted over the connection's life",
                tcp.total_retrans
            ),
        );
        if let Some(ms) = tcp.user_timeout_ms {
            f.add(
                "user_timeout_ms",
                ms,
                format!("TCP_USER_TIMEOUT = {ms} ms on this socket"),
            );
        }
        let name = if connecting {
            "tcp_syn_retries"
        } else {
            "tcp_retries2"
        };
        if let Some(v) = sysctl(name) {
            f.add(name, v, format!("net.ipv4.{name} = {v}"));
        }
        if let Some(soft) = &event.soft_error {
            f.add(
                "soft_error",
                soft.clone(),
                format!(
                    "the last soft error on the socket (sk_err_soft): {soft}, from an ICMP message"
                ),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        events::model::{EventRecord, TcpActivity},
        explain::{cause::Cause, testkit::*},
    };

    /// The client's close from `from` after `retransmits`, holding `error`.
    fn close(from: &str, error: Option<&str>, tcp: TcpActivity) -> EventRecord {
        let mut close = with_tcp(
            state(
                3_000,
                "10.0.0.1:5000",
                "10.0.0.9:80",
                from,
                "CLOSE",
                Some(owner(42, "app", "connect")),
                proc(0, "swapper/0"),
            ),
            tcp,
        );
        close.error = error.map(Into::into);
        close
    }

    #[test]
    fn unacknowledged_retransmissions_time_out() {
        let mut s = sample(0);
        s.sysctls
            .insert("net.ipv4.tcp_retries2".into(), "15".into());
        let tcp = TcpActivity {
            retransmits: 7,
            total_retrans: 9,
            ..tcp(1_900, 10)
        };
        let f = run(vec![
            s.into(),
            close("ESTABLISHED", Some("ETIMEDOUT"), tcp).into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::RetransmitTimeout);
        assert_eq!(f.value("retransmits"), Some(&7.into()));
        assert_eq!(f.value("tcp_retries2"), Some(&15.into()));
        assert!(f.summary.contains("7 retransmissions"), "{}", f.summary);
        assert!(f.summary.contains("pid 42"), "{}", f.summary);
    }

    #[test]
    fn unanswered_syns_are_a_connect_timeout() {
        let tcp = TcpActivity {
            retransmits: 6,
            user_timeout_ms: Some(2_000),
            ..tcp(3_000, 0)
        };
        let f = run(vec![close("SYN_SENT", Some("ETIMEDOUT"), tcp).into()]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::RetransmitTimeout);
        assert!(
            f.summary.starts_with("connect() to 10.0.0.9:80 timed out"),
            "{}",
            f.summary
        );
        assert!(f.fix.contains("TCP_USER_TIMEOUT (2.0 s)"), "{}", f.fix);
    }

    #[test]
    fn a_close_without_an_error_or_with_probes_out_is_not_one() {
        assert!(run(vec![close("ESTABLISHED", None, tcp(10, 10)).into()]).is_empty());
        let keepalive = TcpActivity {
            probes_out: 3,
            ..tcp(10, 10)
        };
        assert!(
            run(vec![
                close("ESTABLISHED", Some("ETIMEDOUT"), keepalive).into()
            ])
            .is_empty()
        );
    }
}
