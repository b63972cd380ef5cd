//! `time_wait_overflow`: the TIME_WAIT table is full (net.ipv4.tcp_max_tw_buckets),
//! so connections that close skip TIME_WAIT (`tcp_time_wait`, counter
//! TCPTimeWaitOverflow) and the peer's late segments (its FIN, the last ACK)
//! find no socket and get RST (NO_SOCKET).

use std::collections::HashMap;

use chrono::TimeDelta;

use crate::{
    context::sample::SampleRecord,
    explain::{
        cause::Cause,
        finding::{Confidence, FindingRecord},
        rule::{Ctx, Draft, Reset, Rule},
        wording::{duration_ms, pid},
    },
};

const OVERFLOW: &str = "TcpExt.TCPTimeWaitOverflow";
const RECENT: TimeDelta = TimeDelta::seconds(60);

/// See the module docs.
#[derive(Default)]
pub struct TimeWaitOverflow {
    /// Overflows seen per namespace since start.
    total: HashMap<u32, u64>,
}

impl Rule for TimeWaitOverflow {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("NO_SOCKET") || reset.segment_has("SYN") {
            return None;
        }
        let netns = reset.id.netns;
        let now = reset.time();
        let overflowing =
            ctx.namespaces
                .increase(netns, OVERFLOW, now - RECENT, now + TimeDelta::seconds(5))
                > 0;
        let (tw, max) = table(ctx, netns);
        let full = matches!((tw, max), (Some(tw), Some(max)) if max > 0 && tw >= max);
        if !overflowing && !full {
            return None;
        }
        let ended = ctx
            .history
            .completed
            .iter()
            .rev()
            .find(|c| c.id == reset.id);
        let mut draft = reset.draft(
            Cause::TimeWaitOverflow,
            Confidence::Exact,
            format!(
                "A late segment ({}) from {} found no socket: the connection had just closed{} but the TIME_WAIT table was full{}, so it skipped TIME_WAIT and the kernel answered with RST (NO_SOCKET).",
                reset.event.segment.as_ref().map(|s| s.flags.join("|")).unwrap_or_default(),
                reset.id.remote,
                ended.map(|c| format!(" ({} closed it {} before)", pid(c.closer.as_ref()), duration_ms((now - c.time).num_milliseconds().max(0) as u64))).unwrap_or_default(),
                match (tw, max) {
                    (Some(tw), Some(max)) => format!(" ({tw} of tcp_max_tw_buckets {max})"),
                    _ => String::new(),
                },
            ),
            fix(max, None),
            format!("time_wait_overflow:{netns}:resets"),
        );
        if let Some(c) = ended {
            draft.finding.owner = c.closer.clone();
        }
        Some(draft)
    }

    fn sample(&mut self, ctx: &Ctx, s: &SampleRecord) -> Vec<Draft> {
        let Some(&delta) = s.counters.get(OVERFLOW) else {
            return Vec::new();
        };
        let total = self.total.entry(s.netns).or_default();
        *total += delta;
        let (tw, max) = (
            Some(s.sockstat.tw),
            s.sysctls
                .get("net.ipv4.tcp_max_tw_buckets")
                .and_then(|v| v.parse::<u64>().ok()),
        );
        let since = s.time - RECENT;
        let resets = ctx
            .history
            .orphan_resets
            .iter()
            .filter(|r| {
                r.id.netns == s.netns && r.time >= since && !r.flags.iter().any(|f| f == "SYN")
            })
            .count();
        // Who closes so many connections: the top (closer, destination) pair.
        let mut pairs: HashMap<(u32, String), (Vec<u64>, Option<crate::events::model::Process>)> =
            HashMap::new();
        for c in ctx
            .history
            .completed
            .iter()
            .filter(|c| c.id.netns == s.netns && c.time >= since && c.local_first)
        {
            let pid = c.closer.as_ref().map_or(0, |p| p.pid);
            let entry = pairs
                .entry((pid, c.id.remote.to_string()))
                .or_insert((Vec::new(), c.closer.clone()));
            entry.0.push(c.lifetime_ms);
        }
        let top = pairs
            .into_iter()
            .max_by_key(|(_, (ages, _))| ages.len())
            .map(|((_, dest), (mut ages, closer))| {
                ages.sort_unstable();
                (dest, ages.len(), ages[ages.len() / 2], closer)
            });
        let mut f = FindingRecord::new(
            Cause::TimeWaitOverflow,
            Confidence::Exact,
            s.time,
            s.netns,
            format!(
                "TIME_WAIT table full ({} of tcp_max_tw_buckets {}, TCPTimeWaitOverflow +{delta}): connections that just closed skip TIME_WAIT, so the peer's late segments get RST (NO_SOCKET: {resets} in the last minute).",
                tw.unwrap_or(0),
                max.map_or_else(|| "?".to_owned(), |m| m.to_string()),
            ),
            fix(
                max,
                top.as_ref()
                    .map(|(d, c, a, p)| (d.as_str(), *c, *a, p.as_ref())),
            ),
        );
        f.owner = top.as_ref().and_then(|t| t.3.clone());
        f.add(
            "time_wait_overflow",
            delta,
            format!("TcpExt.TCPTimeWaitOverflow +{delta} since the previous sample"),
        );
        f.add(
            "time_wait_sockets",
            tw.unwrap_or(0),
            format!("{} sockets in TIME_WAIT", tw.unwrap_or(0)),
        );
        if let Some(m) = max {
            f.add(
                "tcp_max_tw_buckets",
                m,
                format!("net.ipv4.tcp_max_tw_buckets = {m}"),
            );
        }
        f.add(
            "no_socket_resets_last_minute",
            resets,
            format!("{resets} resets for segments that found no socket in the last minute"),
        );
        if let Some((dest, count, age, closer)) = &top {
            f.add(
                "top_closer",
                pid(closer.as_ref()),
                format!(
                    "{} closed {count} connections to {dest} in the last minute",
                    pid(closer.as_ref())
                ),
            );
            f.add(
                "closes_to_destination",
                *count,
                format!("{count} connections to {dest}"),
            );
            f.add(
                "median_connection_ms",
                *age,
                format!("median connection age {}", duration_ms(*age)),
            );
        }
        vec![Draft {
            finding: f,
            key: format!("time_wait_overflow:{}", s.netns),
            level: Some(*total),
            flow: None,
            summary: false,
        }]
    }
}

fn table(ctx: &Ctx, netns: u32) -> (Option<u64>, Option<u64>) {
    (
        ctx.namespaces.get(netns).map(|ns| ns.last.sockstat.tw),
        ctx.namespaces.sysctl(netns, "net.ipv4.tcp_max_tw_buckets"),
    )
}

fn fix(
    max: Option<u64>,
    top: Option<(&str, usize, u64, Option<&crate::events::model::Process>)>,
) -> String {
    format!(
        "Raise net.ipv4.tcp_max_tw_buckets{}, and find who closes so many connections{}",
        max.map(|m| format!(" (now {m})")).unwrap_or_default(),
        top.map_or_else(
            || ".".to_owned(),
            |(dest, count, age, closer)| format!(
                ": {} closed {count} connections to {dest} in the last minute, median age {} (a connection pool that is not pooling).",
                pid(closer),
                duration_ms(age)
            ),
        )
    )
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn full_table_and_the_resets_it_causes() {
        let web = proc(7, "php-fpm");
        let mut inputs: Vec<Input> = Vec::new();
        for i in 0..20 {
            let local = format!("127.0.0.1:{}", 40000 + i);
            let o = Some(owner(7, "php-fpm", "connect"));
            inputs.push(
                state(
                    i64::from(i),
                    &local,
                    "127.0.0.1:6379",
                    "SYN_SENT",
                    "ESTABLISHED",
                    o.clone(),
                    web.clone(),
                )
                .into(),
            );
            inputs.push(
                state(
                    i64::from(i) + 5,
                    &local,
                    "127.0.0.1:6379",
                    "ESTABLISHED",
                    "FIN_WAIT1",
                    o.clone(),
                    web.clone(),
                )
                .into(),
            );
            inputs.push(
                state(
                    i64::from(i) + 6,
                    &local,
                    "127.0.0.1:6379",
                    "FIN_WAIT2",
                    "CLOSE",
                    o,
                    web.clone(),
                )
                .into(),
            );
            inputs.push(
                with_segment(
                    sent(
                        i64::from(i) + 7,
                        &local,
                        "127.0.0.1:6379",
                        None,
                        Some("NO_SOCKET"),
                        None,
                        proc(0, "swapper/0"),
                    ),
                    &["FIN", "ACK"],
                    0,
                )
                .into(),
            );
        }
        let mut s = sample(1000);
        s.counters.insert("TcpExt.TCPTimeWaitOverflow".into(), 20);
        s.sockstat.tw = 10;
        s.sysctls
            .insert("net.ipv4.tcp_max_tw_buckets".into(), "10".into());
        inputs.push(s.into());
        let f = run(inputs);
        assert!(
            f.iter().all(|f| f.cause == Cause::TimeWaitOverflow),
            "{f:#?}"
        );
        let table = f
            .iter()
            .find(|f| f.value("time_wait_overflow").is_some())
            .expect("sample finding");
        assert_eq!(table.value("tcp_max_tw_buckets"), Some(&10.into()));
        assert_eq!(
            table.value("no_socket_resets_last_minute"),
            Some(&20.into())
        );
        assert_eq!(table.value("closes_to_destination"), Some(&20.into()));
        assert_eq!(table.owner.as_ref().map(|o| o.pid), Some(7));
        assert!(
            table
                .fix
                .contains("pid 7 (php-fpm) closed 20 connections to 127.0.0.1:6379"),
            "{}",
            table.fix
        );
        let resets: u64 = f
            .iter()
            .filter(|f| f.value("time_wait_overflow").is_none())
            .map(|f| f.count)
            .sum();
        assert_eq!(resets, 20, "every reset explained");
    }
}
