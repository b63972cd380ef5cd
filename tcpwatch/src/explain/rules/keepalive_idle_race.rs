//! `keepalive_idle_race`: the server closed an idle keep-alive connection just
//! as the client sent a new request on it; the server's kernel answers the
//! request with RST (TCP_TIMEWAIT_SOCKET from the TIME_WAIT socket the close left,
//! or TCP_ABORT_ON_DATA while the closing socket still lives). Seen from the
//! client: it received the FIN, sent anyway, and got a RST in CLOSE_WAIT.
//! The close is idle when the connection had carried nothing for at least the
//! idle-close threshold.

use crate::{
    events::model::Kind,
    explain::{
        cause::Cause,
        history::Close,
        rule::{Ctx, Draft, Reset, Rule},
        wording::{duration_ms, pid, who},
    },
};

/// See the module docs.
pub struct KeepaliveIdleRace;

/// Reasons a host gives when data arrives on a connection it closed.
pub const DATA_AFTER_CLOSE_REASONS: [&str; 2] = ["TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA"];

/// The close that preceded a reset for data on a closed connection: this host's
/// own (reset sent) or the peer's (reset received in CLOSE_WAIT).
pub fn preceding_close<'a>(ctx: &'a Ctx, reset: &Reset) -> Option<&'a Close> {
    let close = ctx.history.flow(&reset.id)?.first_close.as_ref()?;
    match reset.event.kind {
        Kind::ResetSent if close.by_local => Some(close),
        Kind::ResetReceived if !close.by_local && reset.state() == Some("CLOSE_WAIT") => {
            Some(close)
        }
        _ => None,
    }
}

impl Rule for KeepaliveIdleRace {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        let sent = reset.event.kind == Kind::ResetSent
            && DATA_AFTER_CLOSE_REASONS.iter().any(|r| reset.reason_is(r));
        let received =
            reset.event.kind == Kind::ResetReceived && reset.state() == Some("CLOSE_WAIT");
        if !sent && !received {
            return None;
        }
        let close = preceding_close(ctx, reset)?;
        let idle = close.tcp?.idle_ms;
        if u128::from(idle) < ctx.thresholds.idle_close.as_millis() {
            return None;
        }
        let gap = (reset.time() - close.time).num_milliseconds().max(0) as u64;
        let bytes = reset.event.segment.as_ref().map(|s| s.payload_bytes);
        let summary = if sent {
            format!(
                "{} closed this keep-alive connection after {} idle; {} later the peer{} sent a new request on it{}, and the kernel answered with RST ({}). This is an idle-timeout race between the client's connection pool and the server's idle timeout.",
                pid(close.owner.as_ref()),
                duration_ms(idle),
                duration_ms(gap),
                peer_hint(ctx, reset),
                bytes.map(|b| format!(" ({b} bytes)")).unwrap_or_default(),
                reset.reason.as_deref().unwrap_or("?"),
            )
        } else {
            format!(
                "The server {} closed this keep-alive connection after {} idle; {} later {} sent a new request on it anyway and got RST ({}). This is an idle-timeout race between the client's connection pool and the server's idle timeout.",
                reset.id.remote,
                duration_ms(idle),
                duration_ms(gap),
                who(reset.event.owner.as_ref()),
                reset.event.error.as_deref().unwrap_or("ECONNRESET"),
            )
        };
        let mut draft = reset.draft(
            Cause::KeepaliveIdleRace,
            reset.confidence,
            summary,
            format!(
                "Make the client's idle timeout shorter than the server's: the server closes connections after about {} idle, so evict pooled connections idle longer than {} (or lengthen the server's keep-alive timeout well past the client's); retry idempotent requests once on a reset.",
                duration_ms(idle),
                duration_ms(idle * 3 / 4)
            ),
            format!("keepalive_idle_race:{}:{}", reset.id.netns, reset.id.local.port()),
        );
        let f = &mut draft.finding;
        f.add(
            "idle_before_close_ms",
            idle,
            format!(
                "the connection had been idle for {} when the server closed it",
                duration_ms(idle)
            ),
        );
        f.add(
            "request_after_close_ms",
            gap,
            format!("the next request came {} after the close", duration_ms(gap)),
        );
        if let Some(b) = bytes {
            f.add("request_bytes", b, format!("the request carried {b} bytes"));
        }
        Some(draft)
    }
}

/// ` (pid 4242, curl)` when the peer is on this host, else empty.
fn peer_hint(ctx: &Ctx, reset: &Reset) -> String {
    ctx.history
        .peer(&reset.id)
        .and_then(|h| h.owner.as_ref())
        .map(|o| format!(" ({})", pid(Some(o))))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, finding::Confidence, testkit::*};

    const SRV: &str = "127.0.0.1:8080";
    const CLI: &str = "127.0.0.1:5000";

    #[test]
    fn server_closes_idle_connection_client_reuses_it() {
        let (srv, cli) = (proc(7, "nginx"), proc(42, "client"));
        let mut inputs = connection(0, SRV, CLI, &srv, &cli);
        let srv_owner = Some(owner(7, "nginx", "accept"));
        inputs.push(
            with_tcp(
                state(
                    1000,
                    SRV,
                    CLI,
                    "ESTABLISHED",
                    "FIN_WAIT1",
                    srv_owner.clone(),
                    srv.clone(),
                ),
                tcp(1000, 120),
            )
            .into(),
        );
        inputs.push(
            with_tcp(
                state(
                    1000,
                    CLI,
                    SRV,
                    "ESTABLISHED",
                    "CLOSE_WAIT",
                    Some(owner(42, "client", "connect")),
                    srv.clone(),
                ),
                tcp(1000, 300),
            )
            .into(),
        );
        inputs.push(
            state(
                1000,
                SRV,
                CLI,
                "FIN_WAIT1",
                "FIN_WAIT2",
                srv_owner.clone(),
                srv.clone(),
            )
            .into(),
        );
        inputs.push(state(1001, SRV, CLI, "FIN_WAIT2", "CLOSE", srv_owner.clone(), srv).into());
        let rst = sent(
            1100,
            SRV,
            CLI,
            Some("TIME_WAIT"),
            Some("TCP_TIMEWAIT_SOCKET"),
            srv_owner,
            cli.clone(),
        );
        inputs.push(with_segment(rst, &["PSH", "ACK"], 18).into());
        inputs.push(
            received(
                1100,
                CLI,
                SRV,
                "CLOSE_WAIT",
                Some(owner(42, "client", "connect")),
                cli,
            )
            .into(),
        );
        let f = run(inputs);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::KeepaliveIdleRace, Confidence::Exact)
        );
        assert_eq!(
            f.owner.as_ref().map(|o| o.pid),
            Some(7),
            "the server closed it"
        );
        assert_eq!(f.peer_owner.as_ref().map(|o| o.pid), Some(42));
        assert_eq!(f.value("idle_before_close_ms"), Some(&1000.into()));
        assert_eq!(f.value("request_after_close_ms"), Some(&100.into()));
        assert_eq!(f.value("request_bytes"), Some(&18.into()));
        assert!(
            f.summary
                .contains("after 1.0 s idle; 100 ms later the peer (pid 42 (client))"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn seen_from_the_client_of_a_remote_server() {
        let cli = proc(42, "client");
        let f = run(vec![
            state(
                0,
                CLI,
                "10.0.0.9:80",
                "SYN_SENT",
                "ESTABLISHED",
                Some(owner(42, "client", "connect")),
                proc(0, "swapper/0"),
            )
            .into(),
            with_tcp(
                state(
                    60_000,
                    CLI,
                    "10.0.0.9:80",
                    "ESTABLISHED",
                    "CLOSE_WAIT",
                    Some(owner(42, "client", "connect")),
                    proc(0, "swapper/0"),
                ),
                tcp(60_000, 500),
            )
            .into(),
            received(
                60_020,
                CLI,
                "10.0.0.9:80",
                "CLOSE_WAIT",
                Some(owner(42, "client", "connect")),
                cli,
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::KeepaliveIdleRace);
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(42));
        assert_eq!(f.value("idle_before_close_ms"), Some(&60_000.into()));
    }
}
