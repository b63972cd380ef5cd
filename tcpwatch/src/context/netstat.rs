//! TCP counters of a network namespace from `/proc/net/netstat` (`TcpExt:`) and
//! `/proc/net/snmp` (`Tcp:`): the kernel's own tally of aborts, overflows and
//! resets, which the rules read as deltas between samples.

use std::collections::BTreeMap;

/// Counters keyed `Section.Name` (e.g. `TcpExt.TCPAbortOnClose`).
pub type Counters = BTreeMap<String, i64>;

/// The counters tcpwatch keeps (the rest of the files is ignored).
pub const TRACKED: &[&str] = &[
    "TcpExt.TCPAbortOnData",
    "TcpExt.TCPAbortOnClose",
    "TcpExt.TCPAbortOnMemory",
    "TcpExt.TCPAbortOnTimeout",
    "TcpExt.TCPAbortOnLinger",
    "TcpExt.TCPAbortFailed",
    "TcpExt.ListenOverflows",
    "TcpExt.ListenDrops",
    "TcpExt.TCPTimeWaitOverflow",
    "TcpExt.TW",
    "TcpExt.TWKilled",
    "TcpExt.EmbryonicRsts",
    "TcpExt.TCPChallengeACK",
    "TcpExt.TCPSYNChallenge",
    "TcpExt.TCPReqQFullDrop",
    "TcpExt.TCPReqQFullDoCookies",
    "TcpExt.SyncookiesSent",
    "TcpExt.SyncookiesFailed",
    "TcpExt.PAWSActive",
    "TcpExt.PAWSEstab",
    "TcpExt.TCPBacklogDrop",
    "TcpExt.TCPDeferAcceptDrop",
    "TcpExt.TCPKeepAlive",
    "TcpExt.TCPTimeouts",
    "Tcp.ActiveOpens",
    "Tcp.PassiveOpens",
    "Tcp.AttemptFails",
    "Tcp.EstabResets",
    "Tcp.OutRsts",
];

/// Parses the header/value line pairs of `/proc/net/netstat` or `/proc/net/snmp`,
/// keeping the [`TRACKED`] counters. Malformed lines are skipped.
pub fn parse(text: &str, into: &mut Counters) {
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((section, names)), Some((section2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if section != section2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            let key = format!("{section}.{name}");
            if TRACKED.contains(&key.as_str())
                && let Ok(value) = value.parse()
            {
                into.insert(key, value);
            }
        }
    }
}

/// Increases from `before` to `after`, non-zero only. A counter that went down
/// (namespace recreated) counts from zero.
pub fn delta(before: &Counters, after: &Counters) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, &now)| {
            let then = before.get(name).copied().unwrap_or(now);
            let d = if now >= then { now - then } else { now };
            (d > 0).then(|| (name.clone(), d as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_netstat_and_snmp_pairs() {
        let mut c = Counters::new();
        parse(
            "TcpExt: SyncookiesSent TW ListenOverflows TCPTimeWaitOverflow\nTcpExt: 0 12 3 7\nIpExt: InNoRoutes\nIpExt: 0\n",
            &mut c,
        );
        parse(
            "Tcp: RtoAlgorithm MaxConn OutRsts\nTcp: 1 -1 51\nUdp: InDatagrams\nUdp: 3\n",
            &mut c,
        );
        assert_eq!(c["TcpExt.TW"], 12);
        assert_eq!(c["TcpExt.TCPTimeWaitOverflow"], 7);
        assert_eq!(c["Tcp.OutRsts"], 51);
        assert!(!c.contains_key("Tcp.MaxConn"), "untracked");
        assert!(!c.contains_key("Udp.InDatagrams"));
    }

    #[test]
    fn deltas() {
        let before: Counters = [("TcpExt.TW".to_string(), 10), ("Tcp.OutRsts".into(), 5)].into();
        let after: Counters = [
            ("TcpExt.TW".to_string(), 15),
            ("Tcp.OutRsts".into(), 5),
            ("TcpExt.ListenOverflows".into(), 2),
        ]
        .into();
        let d = delta(&before, &after);
        assert_eq!(d.get("TcpExt.TW"), Some(&5));
        assert_eq!(d.get("Tcp.OutRsts"), None, "unchanged");
        assert_eq!(
            d.get("TcpExt.ListenOverflows"),
            None,
            "new counters start at their value"
        );
        assert_eq!(
            delta(&after, &before).get("TcpExt.TW"),
            Some(&10),
            "reset counts from zero"
        );
    }

    #[test]
    fn garbage_is_skipped() {
        let mut c = Counters::new();
        parse("nonsense\nTcpExt: TW\nTcp: 1\n", &mut c);
        parse("TcpExt: TW\nTcpExt: x\n", &mut c);
        assert!(c.is_empty());
    }
}
