//! `time_wait_pileup`: TIME_WAIT sockets pile up on a local port (this host, a
//! server, closes first) or toward one destination (this host, a client, closes
//! first). Judged by the close pattern and rate, not only the count: a server
//! that closes first on every connection is this incident at 400 sockets as much
//! as at 10,000.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{
    context::sample::SampleRecord,
    events::model::Process,
    explain::{
        cause::Cause,
        finding::{Confidence, FindingRecord},
        history::Completed,
        rule::{Ctx, Draft, Rule},
        wording::{duration_ms, percent, pid},
    },
};

/// Connections considered when judging who closes first.
const RECENT: TimeDelta = TimeDelta::seconds(60);

/// See the module docs.
#[derive(Default)]
pub struct TimeWaitPileup {
    /// (netns, what) → last count and when, for the growth rate.
    last: HashMap<(u32, String), (DateTime<Utc>, u32)>,
}

/// Who closed first among recent connections.
struct Pattern {
    total: usize,
    local_first: usize,
    closer: Option<Process>,
    median_lifetime_ms: Option<u64>,
}

fn pattern<'a>(closes: impl Iterator<Item = &'a Completed>) -> Pattern {
    let closes: Vec<&Completed> = closes.collect();
    let local: Vec<&&Completed> = closes.iter().filter(|c| c.local_first).collect();
    let mut by_pid: HashMap<u32, (usize, &Process)> = HashMap::new();
    for c in &local {
        if let Some(p) = &c.closer {
            by_pid.entry(p.pid).or_insert((0, p)).0 += 1;
        }
    }
    let closer = by_pid
        .values()
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| (*p).clone());
    let mut lifetimes: Vec<u64> = local.iter().map(|c| c.lifetime_ms).collect();
    lifetimes.sort_unstable();
    Pattern {
        total: closes.len(),
        local_first: local.len(),
        closer,
        median_lifetime_ms: lifetimes.get(lifetimes.len() / 2).copied(),
    }
}

impl TimeWaitPileup {
    /// Sockets per second since the last sample of the same thing.
    fn rate(&mut self, netns: u32, what: &str, now: DateTime<Utc>, count: u32) -> Option<f64> {
        let previous = self.last.insert((netns, what.to_owned()), (now, count))?;
        let secs = (now - previous.0).num_milliseconds() as f64 / 1000.0;
        (secs > 0.0).then(|| (f64::from(count) - f64::from(previous.1)) / secs)
    }
}

impl Rule for TimeWaitPileup {
    fn sample(&mut self, ctx: &Ctx, s: &SampleRecord) -> Vec<Draft> {
        let t = ctx.thresholds;
        let max_tw: Option<u64> = s
            .sysctls
            .get("net.ipv4.tcp_max_tw_buckets")
            .and_then(|v| v.parse().ok());
        let near_limit = |n: u32| max_tw.is_some_and(|m| m > 0 && u64::from(n) * 2 >= m);
        let since = s.time - RECENT;
        let recent = || {
            ctx.history
                .completed
                .iter()
                .filter(move |c| c.id.netns == s.netns && c.time >= since)
        };
        let mut drafts = Vec::new();
        for port in &s.ports {
            let n = port.states.get("TIME_WAIT").copied().unwrap_or(0);
            if n < t.time_wait_min {
                continue;
            }
            let p = pattern(recent().filter(|c| c.id.local.port() == port.port));
            let share = if p.total > 0 {
                p.local_first as f64 / p.total as f64
            } else {
                0.0
            };
            if share < t.local_close_share && n < t.time_wait_high && !near_limit(n) {
                continue;
            }
            let rate = self.rate(s.netns, &format!("port:{}", port.port), s.time, n);
            let mut f = FindingRecord::new(
                Cause::TimeWaitPileup,
                Confidence::Exact,
                s.time,
                s.netns,
                format!(
                    "Port {}: {n} TIME_WAIT sockets{}; {} of the {} connections that ended in the last minute were closed first by {} (this host){}: connection reuse is not happening.",
                    port.port,
                    rate.filter(|r| *r > 0.0)
                        .map(|r| format!(", growing {r:.0}/s"))
                        .unwrap_or_default(),
                    percent(share),
                    p.total,
                    pid(p.closer.as_ref()),
                    p.median_lifetime_ms
                        .map(|m| format!(" after {} (median)", duration_ms(m)))
                        .unwrap_or_default(),
                ),
                format!(
                    "This host closes the connections first (for example a `Connection: close` response header): let the client close, or enable keep-alive so connections are reused. TIME_WAIT sockets are capped at net.ipv4.tcp_max_tw_buckets{}; beyond it they are dropped (see time_wait_overflow).",
                    max_tw.map(|m| format!(" ({m})")).unwrap_or_default()
                ),
            );
            f.port = Some(port.port);
            f.owner = p.closer.clone();
            add_common(&mut f, n, rate, share, &p, max_tw);
            drafts.push(Draft {
                finding: f,
                key: format!("time_wait_pileup:{}:port:{}", s.netns, port.port),
                level: Some(u64::from(n)),
                flow: None,
                summary: false,
            });
        }
        let ephemeral = s.sysctls.get("net.ipv4.ip_local_port_range").and_then(|r| {
            let (lo, hi) = r.split_once(' ')?;
            Some(hi.parse::<u32>().ok()?.saturating_sub(lo.parse().ok()?) + 1)
        });
        for d in &s.destinations {
            let n = d.time_wait;
            if n < t.time_wait_min {
                continue;
            }
            let p = pattern(recent().filter(|c| c.id.remote.to_string() == d.remote));
            let share = if p.total > 0 {
                p.local_first as f64 / p.total as f64
            } else {
                0.0
            };
            let ports_short = ephemeral.is_some_and(|e| n * 2 >= e);
            if share < t.local_close_share && n < t.time_wait_high && !near_limit(n) && !ports_short
            {
                continue;
            }
            let rate = self.rate(s.netns, &format!("dest:{}", d.remote), s.time, n);
            let mut f = FindingRecord::new(
                Cause::TimeWaitPileup,
                Confidence::Exact,
                s.time,
                s.netns,
                format!(
                    "{n} TIME_WAIT sockets toward {}{}{}; {} of the {} connections to it that ended in the last minute were closed first by {} (this host, the client){}: each request opens and closes its own connection.",
                    d.remote,
                    rate.filter(|r| *r > 0.0)
                        .map(|r| format!(", growing {r:.0}/s"))
                        .unwrap_or_default(),
                    ephemeral
                        .map(|e| format!(
                            ", {} of the {e} local ports",
                            percent(f64::from(n) / f64::from(e))
                        ))
                        .unwrap_or_default(),
                    percent(share),
                    p.total,
                    pid(p.closer.as_ref()),
                    p.median_lifetime_ms
                        .map(|m| format!(" after {} (median)", duration_ms(m)))
                        .unwrap_or_default(),
                ),
                format!(
                    "Reuse connections to {} (a connection pool, HTTP keep-alive) instead of opening one per request. When local ports run out, connect() fails with EADDRNOTAVAIL; net.ipv4.tcp_tw_reuse=1 lets new connections reuse TIME_WAIT ports.",
                    d.remote
                ),
            );
            f.owner = p.closer.clone();
            add_common(&mut f, n, rate, share, &p, max_tw);
            if let Some(e) = ephemeral {
                f.add(
                    "ephemeral_ports",
                    e,
                    format!("the ephemeral port range has {e} ports"),
                );
            }
            drafts.push(Draft {
                finding: f,
                key: format!("time_wait_pileup:{}:dest:{}", s.netns, d.remote),
                level: Some(u64::from(n)),
                flow: None,
                summary: false,
            });
        }
        drafts
    }
}

fn add_common(
    f: &mut FindingRecord,
    n: u32,
    rate: Option<f64>,
    share: f64,
    p: &Pattern,
    max_tw: Option<u64>,
) {
    f.add("time_wait_sockets", n, format!("{n} sockets in TIME_WAIT"));
    if let Some(r) = rate {
        f.add(
            "growth_per_s",
            (r * 10.0).round() / 10.0,
            format!("changing by {r:.1} per second"),
        );
    }
    f.add(
        "closed_first_here_share",
        (share * 1000.0).round() / 1000.0,
        format!(
            "{} of recent connections were closed first by this host",
            percent(share)
        ),
    );
    f.add(
        "connections_ended_last_minute",
        p.total,
        format!("{} connections ended in the last minute", p.total),
    );
    if let Some(m) = p.median_lifetime_ms {
        f.add(
            "median_connection_ms",
            m,
            format!("median connection lifetime {}", duration_ms(m)),
        );
    }
    if let Some(m) = max_tw {
        f.add(
            "tcp_max_tw_buckets",
            m,
            format!("net.ipv4.tcp_max_tw_buckets = {m}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        context::sample::PortSockets,
        explain::{cause::Cause, testkit::*},
    };

    fn server_closes(n: i64) -> Vec<Input> {
        let srv = proc(7, "influxd");
        let o = Some(owner(7, "influxd", "accept"));
        let mut inputs = Vec::new();
        for i in 0..n {
            let client = format!("127.0.0.1:{}", 40000 + i);
            inputs.push(
                state(
                    i,
                    "127.0.0.1:8086",
                    &client,
                    "SYN_RECV",
                    "ESTABLISHED",
                    o.clone(),
                    srv.clone(),
                )
                .into(),
            );
            inputs.push(
                state(
                    i + 2,
                    "127.0.0.1:8086",
                    &client,
                    "ESTABLISHED",
                    "FIN_WAIT1",
                    o.clone(),
                    srv.clone(),
                )
                .into(),
            );
            inputs.push(
                state(
                    i + 3,
                    "127.0.0.1:8086",
                    &client,
                    "FIN_WAIT2",
                    "CLOSE",
                    o.clone(),
                    srv.clone(),
                )
                .into(),
            );
        }
        inputs
    }

    fn tw_sample(ms: i64, n: u32) -> Input {
        let mut s = sample(ms);
        s.ports = vec![PortSockets {
            port: 8086,
            states: [("TIME_WAIT".to_owned(), n)].into(),
        }];
        s.into()
    }

    #[test]
    fn server_closing_first_is_a_pileup_and_reported_again_as_it_grows() {
        let mut inputs = server_closes(300);
        inputs.push(tw_sample(1000, 300));
        inputs.push(tw_sample(2000, 350));
        inputs.push(tw_sample(3000, 500));
        let f = run(inputs);
        assert_eq!(f.len(), 2, "at 300, then at 500 (x1.5), not at 350: {f:#?}");
        let first = &f[0];
        assert_eq!(first.cause, Cause::TimeWaitPileup);
        assert_eq!(first.port, Some(8086));
        assert_eq!(first.owner.as_ref().map(|o| o.pid), Some(7));
        assert_eq!(first.value("closed_first_here_share"), Some(&1.0.into()));
        assert_eq!(f[1].value("time_wait_sockets"), Some(&500.into()));
        assert!(f[1].value("growth_per_s").is_some());
    }

    #[test]
    fn below_threshold_or_peer_closing_is_not_a_pileup() {
        assert!(run(vec![tw_sample(1000, 150)]).is_empty());
        // 300 TIME_WAIT but nobody here closed first recently: no verdict.
        assert!(run(vec![tw_sample(1000, 300)]).is_empty());
    }
}
