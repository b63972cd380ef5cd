//! `keepalive_timeout`: keep-alive probes went unanswered, so the kernel gave up
//! on the connection (`tcp_keepalive_timer`, reason TCP_KEEPALIVE_TIMEOUT). The
//! peer host is gone, or a NAT or firewall dropped the idle connection's state.

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::{duration_ms, pid},
};

/// See the module docs.
pub struct KeepaliveTimeout;

impl Rule for KeepaliveTimeout {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_KEEPALIVE_TIMEOUT") {
            return None;
        }
        let netns = reset.id.netns;
        let keepalive = |name: &str| {
            ctx.namespaces
                .sysctl(netns, &format!("net.ipv4.tcp_keepalive_{name}"))
        };
        let idle = reset.event.tcp.map(|t| t.idle_ms);
        let probes = reset.event.tcp.map_or(0, |t| t.probes_out);
        let mut draft = reset.draft(
            Cause::KeepaliveTimeout,
            reset.confidence,
            format!(
                "The peer {} stopped answering: {} got no reply{}, so the kernel gave up and reset the connection; {} gets ETIMEDOUT.",
                reset.id.remote,
                match probes {
                    0 => "keep-alive probes".to_owned(),
                    1 => "1 keep-alive probe".to_owned(),
                    n => format!("{n} keep-alive probes"),
                },
                idle.map(|i| format!(" after {} without any segment", duration_ms(i))).unwrap_or_default(),
                pid(reset.event.owner.as_ref())
            ),
            format!(
                "The peer host is down, or a NAT/firewall/load balancer dropped the idle connection's state. If a middlebox's idle timeout is shorter than the keep-alive time ({}), lower TCP_KEEPIDLE (or net.ipv4.tcp_keepalive_time) below it.",
                keepalive("time").map_or_else(|| "net.ipv4.tcp_keepalive_time".to_owned(), |t| format!("{t} s"))
            ),
            format!("keepalive_timeout:{netns}:{}", reset.id.remote),
        );
        if let Some(i) = idle {
            draft.finding.add(
                "idle_ms",
                i,
                format!("nothing came from the peer for {}", duration_ms(i)),
            );
        }
        if probes > 0 {
            draft.finding.add(
                "probes_out",
                probes,
                format!("{probes} keep-alive probes sent without an answer (icsk_probes_out)"),
            );
        }
        for name in ["time", "intvl", "probes"] {
            if let Some(v) = keepalive(name) {
                draft.finding.add(
                    &format!("tcp_keepalive_{name}"),
                    v,
                    format!("net.ipv4.tcp_keepalive_{name} = {v} (a socket may override it)"),
                );
            }
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        events::model::TcpActivity,
        explain::{cause::Cause, testkit::*},
    };

    #[test]
    fn unanswered_probes() {
        let mut s = sample(0);
        s.sysctls
            .insert("net.ipv4.tcp_keepalive_time".into(), "7200".into());
        let f = run(vec![
            s.into(),
            with_tcp(
                sent(
                    10,
                    "10.0.0.1:5000",
                    "10.0.0.9:80",
                    Some("ESTABLISHED"),
                    Some("TCP_KEEPALIVE_TIMEOUT"),
                    Some(owner(42, "app", "connect")),
                    proc(0, "swapper/0"),
                ),
                TcpActivity {
                    probes_out: 9,
                    ..tcp(7_400_000, 10)
                },
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::KeepaliveTimeout);
        assert_eq!(f.value("tcp_keepalive_time"), Some(&7200.into()));
        assert!(f.fix.contains("7200 s"), "{}", f.fix);
        assert_eq!(f.value("probes_out"), Some(&9.into()));
        assert!(
            f.summary.contains("9 keep-alive probes got no reply"),
            "{}",
            f.summary
        );
    }
}
