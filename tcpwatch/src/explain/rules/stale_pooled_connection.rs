//! `stale_pooled_connection`: a client reused a pooled connection whose server
//! end no longer exists: the backend process was stopped or replaced. Seen from
//! the server host (the old process's connections answer with RST after it
//! exited and no longer listens), from the client host when the backend is
//! local (its listener was closed after the connection was made), or from
//! several resets received from one destination within a short window.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{
    events::model::{Kind, Process},
    explain::{
        cause::Cause,
        rule::{Ctx, Draft, Reset, Rule},
        wording::{duration_ms, pid},
    },
};

/// Resets per destination remembered.
const PER_DESTINATION: usize = 256;
/// Destinations remembered.
const DESTINATIONS: usize = 4096;

/// See the module docs.
#[derive(Default)]
pub struct StalePooledConnection {
    /// (netns, destination) → times of resets received on old pooled connections.
    recent: HashMap<(u32, String), VecDeque<DateTime<Utc>>>,
}

/// How the backend's end was found gone.
struct Gone {
    old: Option<Process>,
    stopped_ms_ago: Option<u64>,
    new: Option<Process>,
}

impl Rule for StalePooledConnection {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        match reset.event.kind {
            Kind::ResetSent => server_side(ctx, reset),
            Kind::ResetReceived => self.client_side(ctx, reset),
            Kind::State | Kind::Drop | Kind::AppError => None,
        }
    }
}

/// The listener on (netns, port) that `pid` had closed, and who listens now.
fn backend_gone(
    ctx: &Ctx,
    netns: u32,
    port: u16,
    pid: Option<u32>,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Option<Gone> {
    let spells: Vec<_> = ctx.history.listeners(netns, port).collect();
    let closed = spells.iter().find(|s| {
        s.closed_at
            .is_some_and(|t| t <= now && since.is_none_or(|since| t >= since))
            && pid.is_none_or(|p| s.owner.as_ref().map(|o| o.pid) == Some(p))
    })?;
    let new = spells
        .iter()
        .find(|s| s.closed_at.is_none())
        .and_then(|s| s.owner.as_deref().cloned());
    Some(Gone {
        old: closed.owner.as_deref().cloned(),
        stopped_ms_ago: closed
            .closed_at
            .map(|t| (now - t).num_milliseconds().max(0) as u64),
        new,
    })
}

fn gone_text(gone: &Gone, port: u16) -> String {
    format!(
        "{} that served it stopped listening on port {port}{}{}",
        pid(gone.old.as_ref()),
        gone.stopped_ms_ago
            .map(|ms| format!(" {} earlier", duration_ms(ms)))
            .unwrap_or_default(),
        gone.new
            .as_ref()
            .map(|n| format!(", and {} listens there now", pid(Some(n))))
            .unwrap_or_default()
    )
}

/// The server host: an old connection of a process that no longer listens
/// answered the client's request with RST.
fn server_side(ctx: &Ctx, reset: &Reset) -> Option<Draft> {
    let data_on_old = ["TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA"]
        .iter()
        .any(|r| reset.reason_is(r))
        || (reset.reason_is("NO_SOCKET") && !reset.segment_has("SYN"));
    if !data_on_old {
        return None;
    }
    let history = ctx.history.flow(&reset.id);
    let closer = history
        .and_then(|h| h.first_close.as_ref())
        .filter(|c| c.by_local)
        .and_then(|c| c.owner.as_deref().cloned())
        .or_else(|| reset.event.owner.clone())?;
    let port = reset.id.local.port();
    let since = history.and_then(|h| h.established_at);
    let gone = backend_gone(
        ctx,
        reset.id.netns,
        port,
        Some(closer.pid),
        reset.time(),
        since,
    )?;
    let client = ctx
        .history
        .peer(&reset.id)
        .and_then(|h| h.owner.as_deref().cloned());
    let mut draft = reset.draft(
        Cause::StalePooledConnection,
        reset.confidence,
        format!(
            "{} sent data on a pooled connection to {} whose server end no longer exists: {}. The kernel answered the old connection's data with RST ({}); the backend was replaced and the pool kept its connections.",
            pid(client.as_ref()),
            reset.id.local,
            gone_text(&gone, port),
            reset.reason.as_deref().unwrap_or("?")
        ),
        FIX.into(),
        format!("stale_pooled_connection:{}:{}", reset.id.netns, reset.id.local),
    );
    draft.finding.owner = client;
    draft.finding.peer_owner = gone.old.clone();
    add_gone(&mut draft, &gone);
    Some(draft)
}

const FIX: &str = "Evict idle pooled connections sooner or validate them before use, close the pool's connections when the backend is replaced, and retry idempotent requests on a reset.";

fn add_gone(draft: &mut Draft, gone: &Gone) {
    if let Some(ms) = gone.stopped_ms_ago {
        draft.finding.add(
            "backend_stopped_ms_ago",
            ms,
            format!(
                "the old backend stopped listening {} before",
                duration_ms(ms)
            ),
        );
    }
    if let Some(new) = &gone.new {
        draft.finding.add(
            "new_backend",
            format!("{}[{}]", new.comm, new.pid),
            format!("a new backend listens: {}", pid(Some(new))),
        );
    }
}

impl StalePooledConnection {
    /// The client host: a reset received on an old pooled connection.
    fn client_side(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !matches!(reset.state(), Some("ESTABLISHED" | "CLOSE_WAIT")) {
            return None;
        }
        let history = ctx.history.flow(&reset.id)?;
        let age = history.age_ms(reset.time());
        let used = history.last_tcp.is_some_and(|t| t.bytes_received > 0);
        if u128::from(age) < ctx.thresholds.stale_min_age.as_millis() || !used {
            return None;
        }
        let window = TimeDelta::from_std(ctx.thresholds.stale_window).unwrap_or_default();
        let destination = reset.id.remote.to_string();
        if self.recent.len() >= DESTINATIONS {
            self.recent
                .retain(|_, times| times.back().is_some_and(|t| reset.time() - *t < window));
        }
        let times = self
            .recent
            .entry((reset.id.netns, destination.clone()))
            .or_default();
        times.push_back(reset.time());
        while times.front().is_some_and(|t| reset.time() - *t > window)
            || times.len() > PER_DESTINATION
        {
            times.pop_front();
        }
        let failures = times.len() as u64;
        let gone = backend_gone(
            ctx,
            reset.id.netns,
            reset.id.remote.port(),
            None,
            reset.time(),
            history.established_at,
        );
        if gone.is_none() && failures < 2 {
            return None;
        }
        let owner = reset.event.owner.as_ref();
        let mut draft = reset.draft(
            Cause::StalePooledConnection,
            reset.confidence,
            format!(
                "{} sent data on a pooled connection to {} ({} old) whose remote end no longer exists{}; {failures} pooled connection{} to {} failed within {}: the backend was replaced.",
                pid(owner),
                destination,
                duration_ms(age),
                gone.as_ref().map(|g| format!(" ({})", gone_text(g, reset.id.remote.port()))).unwrap_or_default(),
                if failures == 1 { "" } else { "s" },
                destination,
                duration_ms(ctx.thresholds.stale_window.as_millis() as u64),
            ),
            FIX.into(),
            format!("stale_pooled_connection:{}:{}", reset.id.netns, destination),
        );
        draft.finding.add(
            "failed_connections",
            failures,
            format!("{failures} pooled connections to {destination} reset within the window"),
        );
        draft.finding.add(
            "connection_age_ms",
            age,
            format!("this connection was {} old", duration_ms(age)),
        );
        if let Some(g) = &gone {
            draft.finding.peer_owner = g.old.clone();
            add_gone(&mut draft, g);
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    const SRV: &str = "127.0.0.1:6379";
    const CLI: &str = "127.0.0.1:5000";

    #[test]
    fn backend_replaced_while_the_pool_held_a_connection() {
        let (old, new, cli) = (proc(7, "redis-old"), proc(8, "redis-new"), proc(42, "app"));
        let mut inputs: Vec<Input> = vec![
            state(
                0,
                "0.0.0.0:6379",
                "0.0.0.0:0",
                "CLOSE",
                "LISTEN",
                Some(owner(7, "redis-old", "listen")),
                old.clone(),
            )
            .into(),
        ];
        inputs.extend(connection(10, SRV, CLI, &old, &cli));
        inputs.push(
            with_tcp(
                state(
                    20,
                    CLI,
                    SRV,
                    "ESTABLISHED",
                    "ESTABLISHED",
                    Some(owner(42, "app", "connect")),
                    cli.clone(),
                ),
                tcp(0, 50),
            )
            .into(),
        );
        // The old backend exits: its listener and connection close.
        inputs.push(
            state(
                2000,
                "0.0.0.0:6379",
                "0.0.0.0:0",
                "LISTEN",
                "CLOSE",
                Some(owner(7, "redis-old", "listen")),
                old.clone(),
            )
            .into(),
        );
        inputs.push(
            state(
                2000,
                SRV,
                CLI,
                "ESTABLISHED",
                "FIN_WAIT1",
                Some(owner(7, "redis-old", "accept")),
                old.clone(),
            )
            .into(),
        );
        inputs.push(
            state(
                2500,
                "0.0.0.0:6379",
                "0.0.0.0:0",
                "CLOSE",
                "LISTEN",
                Some(owner(8, "redis-new", "listen")),
                new,
            )
            .into(),
        );
        let rst = sent(
            5000,
            SRV,
            CLI,
            Some("TIME_WAIT"),
            Some("TCP_TIMEWAIT_SOCKET"),
            Some(owner(7, "redis-old", "close")),
            cli.clone(),
        );
        inputs.push(with_segment(rst, &["PSH", "ACK"], 30).into());
        inputs.push(
            received(
                5000,
                CLI,
                SRV,
                "CLOSE_WAIT",
                Some(owner(42, "app", "connect")),
                cli,
            )
            .into(),
        );
        let f = run(inputs);
        let f = only(&f);
        assert_eq!(f.cause, Cause::StalePooledConnection);
        assert_eq!(
            f.owner.as_ref().map(|o| o.pid),
            Some(42),
            "the client holds the stale pool"
        );
        assert_eq!(
            f.peer_owner.as_ref().map(|o| o.pid),
            Some(7),
            "the replaced backend"
        );
        assert_eq!(f.value("new_backend"), Some(&"redis-new[8]".into()));
        assert_eq!(f.value("backend_stopped_ms_ago"), Some(&3000.into()));
    }

    #[test]
    fn remote_backend_several_pooled_connections_reset() {
        let cli = proc(42, "shipper");
        let mut inputs: Vec<Input> = Vec::new();
        for i in 0..3 {
            let local = format!("10.0.0.1:{}", 5000 + i);
            inputs.push(
                with_tcp(
                    state(
                        0,
                        &local,
                        "10.0.0.9:9200",
                        "SYN_SENT",
                        "ESTABLISHED",
                        Some(owner(42, "shipper", "connect")),
                        proc(0, "swapper/0"),
                    ),
                    tcp(0, 10),
                )
                .into(),
            );
            inputs.push(
                with_tcp(
                    received(
                        60_000 + i64::from(i) * 500,
                        &local,
                        "10.0.0.9:9200",
                        "ESTABLISHED",
                        Some(owner(42, "shipper", "connect")),
                        cli.clone(),
                    ),
                    tcp(0, 900),
                )
                .into(),
            );
        }
        let f = run(inputs);
        assert_eq!(
            f[0].cause,
            crate::explain::cause::Cause::PeerReset,
            "one reset alone is not a replaced backend"
        );
        let stale: Vec<_> = f
            .iter()
            .filter(|f| f.cause == Cause::StalePooledConnection)
            .collect();
        assert!(!stale.is_empty(), "{f:#?}");
        assert_eq!(stale[0].value("failed_connections"), Some(&2.into()));
        assert_eq!(stale[0].owner.as_ref().map(|o| o.pid), Some(42));
    }
}
