//! `close_wait_leak`: a process holds connections in CLOSE_WAIT: the peer closed
//! them but the process never called close(). Flagged early, while the count is
//! in the tens and the sockets are seconds old, before the process runs out of
//! descriptors and new connections start failing.

use std::collections::BTreeMap;

use crate::{
    context::sample::{ProcessFds, SampleRecord},
    events::model::Process,
    explain::{
        cause::Cause,
        finding::{Confidence, FindingRecord},
        history::{FlowId, endpoint},
        rule::{Ctx, Draft, Rule},
        wording::{duration_ms, pid},
    },
};

/// See the module docs.
pub struct CloseWaitLeak;

impl Rule for CloseWaitLeak {
    fn sample(&mut self, ctx: &Ctx, s: &SampleRecord) -> Vec<Draft> {
        let min_age = ctx.thresholds.close_wait_age.as_millis() as u64;
        // Leaked sockets per owner (pid 0: unknown).
        let mut by_owner: BTreeMap<u32, (Option<Process>, Vec<u64>)> = BTreeMap::new();
        for c in &s.close_wait {
            let age = c.idle_ms.unwrap_or(0);
            if age < min_age {
                continue;
            }
            let owner = c.owner.clone().or_else(|| {
                let id = FlowId {
                    netns: s.netns,
                    local: endpoint(&c.local)?,
                    remote: endpoint(&c.remote)?,
                };
                ctx.history.flow(&id)?.owner.as_deref().cloned()
            });
            let entry = by_owner
                .entry(owner.as_ref().map_or(0, |o| o.pid))
                .or_insert((owner, Vec::new()));
            entry.1.push(age);
        }
        let overflows = s
            .counters
            .get("TcpExt.ListenOverflows")
            .copied()
            .unwrap_or(0);
        by_owner
            .into_values()
            .filter(|(_, ages)| ages.len() as u32 >= ctx.thresholds.close_wait_count)
            .map(|(owner, ages)| {
                let n = ages.len();
                let oldest = ages.iter().copied().max().unwrap_or(0);
                let fds = owner.as_ref().and_then(|o| s.processes.iter().find(|p| p.pid == o.pid));
                let listeners: Vec<_> = s
                    .listeners
                    .iter()
                    .filter(|l| l.owner.as_ref().map(|p| p.pid) == owner.as_ref().map(|o| o.pid) && owner.is_some())
                    .collect();
                let mut summary = format!(
                    "{} holds {n} sockets in CLOSE_WAIT (oldest {}): the peers closed, but {} never called close().",
                    pid(owner.as_ref()),
                    duration_ms(oldest),
                    owner.as_ref().map_or("the process", |o| o.comm.as_str()),
                );
                if let Some(f) = fds {
                    summary.push_str(&fd_text(f));
                }
                for l in &listeners {
                    summary.push_str(&format!(
                        " Its listener {} has {} of {} connections waiting to be accepted.",
                        l.local, l.queue, l.backlog
                    ));
                }
                if overflows > 0 {
                    summary.push_str(&format!(" New connections are being dropped (ListenOverflows +{overflows})."));
                }
                let mut f = FindingRecord::new(
                    Cause::CloseWaitLeak,
                    Confidence::Exact,
                    s.time,
                    s.netns,
                    summary,
                    format!(
                        "Find the code path in {} that does not close a connection when the peer hangs up: a handler blocked on a resource (a database pool, a lock), a response body never closed, a pool that never checks its connections. Until fixed it keeps using descriptors, and when they run out accept() fails and new connections are reset.",
                        owner.as_ref().map_or("the process", |o| o.comm.as_str())
                    ),
                );
                f.owner = owner.clone();
                f.add("close_wait_sockets", n, format!("{n} sockets in CLOSE_WAIT for at least {}", duration_ms(min_age)));
                f.add("oldest_close_wait_ms", oldest, format!("the oldest has waited {}", duration_ms(oldest)));
                if let Some(p) = fds {
                    f.add("open_fds", p.fds, format!("{} descriptors open", p.fds));
                    if let Some(limit) = p.fd_limit {
                        f.add("fd_limit", limit, format!("RLIMIT_NOFILE is {limit}"));
                    }
                }
                if let Some(l) = listeners.first() {
                    f.port = endpoint(&l.local).map(|e| e.port());
                    f.add("accept_queue", l.queue, format!("{} connections waiting in the accept queue of {}", l.queue, l.local));
                    f.add("accept_backlog", l.backlog, format!("the accept queue holds at most {}", l.backlog));
                }
                if overflows > 0 {
                    f.add("listen_overflows", overflows, format!("TcpExt.ListenOverflows +{overflows} since the previous sample"));
                }
                Draft {
                    finding: f,
                    key: format!("close_wait_leak:{}:{}", s.netns, owner.as_ref().map_or(0, |o| o.pid)),
                    level: Some(n as u64),
                    flow: None,
                    summary: false,
                }
            })
            .collect()
    }
}

/// ` It is at F of its L file descriptors.`
pub fn fd_text(p: &ProcessFds) -> String {
    match p.fd_limit {
        Some(limit) => format!(" It is at {} of its {limit} file descriptors.", p.fds),
        None => format!(" It has {} file descriptors open.", p.fds),
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        context::sample::{CloseWait, Listener, ProcessFds},
        explain::{cause::Cause, testkit::*},
    };

    #[test]
    fn process_holding_old_close_wait_sockets() {
        let mut s = sample(20_000);
        let app = owner(7, "api", "census");
        for i in 0..6u16 {
            s.close_wait.push(CloseWait {
                local: "127.0.0.1:8080".into(),
                remote: format!("127.0.0.1:{}", 40000 + i),
                idle_ms: Some(12_000 + u64::from(i) * 1000),
                unread_bytes: 0,
                owner: Some(app.clone()),
            });
        }
        s.listeners.push(Listener {
            local: "0.0.0.0:8080".into(),
            queue: 11,
            backlog: 10,
            requested_backlog: None,
            owner: Some(app.clone()),
        });
        s.processes.push(ProcessFds {
            pid: 7,
            comm: "api".into(),
            fds: 64,
            fd_limit: Some(64),
        });
        s.counters.insert("TcpExt.ListenOverflows".into(), 3);
        let findings = run(vec![s.into()]);
        // The full accept queue of the same process is its own finding.
        assert_eq!(findings.len(), 2, "{findings:#?}");
        assert!(
            findings
                .iter()
                .any(|f| f.cause == Cause::AcceptQueueOverflow)
        );
        let f = findings
            .iter()
            .find(|f| f.cause == Cause::CloseWaitLeak)
            .expect("close_wait_leak");
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(7));
        assert_eq!(f.value("close_wait_sockets"), Some(&6.into()));
        assert_eq!(f.value("oldest_close_wait_ms"), Some(&17_000.into()));
        assert_eq!(f.value("fd_limit"), Some(&64.into()));
        assert!(
            f.summary
                .contains("It is at 64 of its 64 file descriptors."),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("ListenOverflows +3"), "{}", f.summary);
    }

    #[test]
    fn young_or_few_close_wait_sockets_are_not_a_leak() {
        let mut s = sample(1000);
        for i in 0..10u16 {
            s.close_wait.push(CloseWait {
                local: "127.0.0.1:8080".into(),
                remote: format!("127.0.0.1:{}", 40000 + i),
                idle_ms: Some(2_000),
                unread_bytes: 0,
                owner: Some(owner(7, "api", "census")),
            });
        }
        assert!(run(vec![s.into()]).is_empty());
    }
}
