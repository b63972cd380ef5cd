//! `orphan_memory_pressure`: the kernel reset a connection because there were
//! too many orphaned sockets (closed by their process, not yet finished) or TCP
//! memory ran out (`tcp_check_oom`, reason TCP_ABORT_ON_MEMORY, counter
//! TCPAbortOnMemory).

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
};

/// See the module docs.
pub struct OrphanMemoryPressure;

impl Rule for OrphanMemoryPressure {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_ABORT_ON_MEMORY") {
            return None;
        }
        let netns = reset.id.netns;
        let orphans = ctx.namespaces.get(netns).map(|ns| ns.last.sockstat.orphan);
        let max = ctx.namespaces.sysctl(netns, "net.ipv4.tcp_max_orphans");
        let mut draft = reset.draft(
            Cause::OrphanMemoryPressure,
            reset.confidence,
            format!(
                "The kernel reset this connection because of orphan or memory pressure{}: it had too many sockets closed by their processes but not finished, or TCP memory (net.ipv4.tcp_mem) ran out.",
                match (orphans, max) {
                    (Some(o), Some(m)) => format!(" ({o} orphaned sockets, limit {m})"),
                    _ => String::new(),
                }
            ),
            "Raise net.ipv4.tcp_max_orphans or tcp_mem if the host really needs that many; find who closes many connections with unsent data (the kernel log says \"too many orphaned sockets\" or \"out of memory -- consider tuning tcp_mem\").".into(),
            format!("orphan_memory_pressure:{netns}"),
        );
        if let Some(o) = orphans {
            draft.finding.add(
                "orphaned_sockets",
                o,
                format!("{o} orphaned sockets at the last sample"),
            );
        }
        if let Some(m) = max {
            draft.finding.add(
                "tcp_max_orphans",
                m,
                format!("net.ipv4.tcp_max_orphans = {m}"),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn memory_abort() {
        let mut s = sample(0);
        s.sockstat.orphan = 4096;
        s.sysctls
            .insert("net.ipv4.tcp_max_orphans".into(), "4096".into());
        let f = run(vec![
            s.into(),
            sent(
                10,
                "10.0.0.1:80",
                "10.0.0.9:5000",
                Some("FIN_WAIT1"),
                Some("TCP_ABORT_ON_MEMORY"),
                None,
                proc(0, "swapper/0"),
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::OrphanMemoryPressure);
        assert_eq!(f.value("orphaned_sockets"), Some(&4096.into()));
    }
}
