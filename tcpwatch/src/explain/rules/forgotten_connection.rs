//! `forgotten_connection`: a segment that is not a SYN arrived for a connection
//! this host no longer has (no socket, not even TIME_WAIT): it closed, reset or
//! timed out here, and the peer did not know. The kernel answers with RST
//! (reason NO_SOCKET).
//!
//! The flow's history says how it was forgotten: this host closed first and its
//! FIN_WAIT2/TIME_WAIT state expired (`net.ipv4.tcp_fin_timeout`) while the peer
//! still held a half-closed connection, or the connection ended here without a
//! FIN (an abort the peer never heard of).

use crate::explain::{
    cause::Cause,
    history::Ending,
    rule::{Ctx, Draft, Reset, Rule},
    wording::{duration_ms, pid},
};

/// See the module docs.
pub struct ForgottenConnection;

impl Rule for ForgottenConnection {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("NO_SOCKET") {
            return None;
        }
        let flags = reset
            .event
            .segment
            .as_ref()
            .map(|s| s.flags.join("|"))
            .unwrap_or_else(|| "?".into());
        let payload = reset.event.segment.as_ref().map_or(0, |s| s.payload_bytes);
        let now = reset.time();
        let flow = ctx.history.flow(&reset.id);
        let ending = flow.and_then(|f| f.ending(now));
        let closer = flow.and_then(|f| {
            f.first_close
                .as_ref()
                .and_then(|c| c.owner.clone())
                .or_else(|| f.owner.clone())
        });
        let peer = ctx.history.peer(&reset.id);
        // The peer's state when the segment left it (its socket closes right
        // after, when it receives the reset).
        let peer_state = peer
            .and_then(|p| p.transitions.iter().rev().find(|t| t.time <= now))
            .map(|t| t.to());
        let fin_timeout = ctx
            .namespaces
            .sysctl(reset.id.netns, "net.ipv4.tcp_fin_timeout");
        let data = if payload > 0 {
            format!("{payload} bytes of data")
        } else {
            "a segment".to_owned()
        };
        let (how, fix) = match &ending {
            Some(Ending::ClosedHere { ms }) => (
                format!(
                    " {} closed it first {} earlier; its FIN_WAIT2/TIME_WAIT state lasts net.ipv4.tcp_fin_timeout{} and was gone, while the peer{} had not closed its side and still sent {data}.",
                    pid(closer.as_ref()),
                    duration_ms(*ms),
                    fin_timeout.map(|s| format!(" = {s} s")).unwrap_or_default(),
                    peer_state
                        .map(|s| format!(" (in {s})"))
                        .unwrap_or_default(),
                ),
                "The peer keeps using a connection after this host closed it: make the peer close when it reads end-of-file (a socket left in CLOSE_WAIT), or give it an idle timeout shorter than this host's; raising net.ipv4.tcp_fin_timeout only delays the reset.".to_owned(),
            ),
            Some(Ending::ClosedByPeer { ms }) => (
                format!(
                    " The peer closed it {} earlier and this host finished the close; the peer then sent {data} on it anyway.",
                    duration_ms(*ms)
                ),
                "The peer reuses connections it closed: look at the peer's connection handling (a pool that hands out closed connections).".to_owned(),
            ),
            Some(Ending::Dropped { ms, from }) => (
                format!(
                    " The connection ended here {} earlier ({from} -> CLOSE without a FIN: aborted or dropped, so the peer was never told), owned by {}; the peer still sent {data} on it.",
                    duration_ms(*ms),
                    pid(closer.as_ref()),
                ),
                "Find why this host dropped the connection without telling the peer (an abort whose RST was lost, a socket repaired or killed silently); the peer should retry on reset.".to_owned(),
            ),
            None => (
                String::new(),
                "If the peer keeps using connections this host closed, make its idle timeout shorter than this host's; if this host forgets connections early, see time_wait_overflow and net.ipv4.tcp_fin_timeout.".to_owned(),
            ),
        };
        let mut draft = reset.draft(
            Cause::ForgottenConnection,
            reset.confidence,
            format!(
                "A segment ({flags}) from {} arrived for a connection this host no longer has; the kernel answered with RST.{how}",
                reset.id.remote,
            ),
            fix,
            format!(
                "forgotten_connection:{}:{}",
                reset.id.netns,
                reset.id.local.port()
            ),
        );
        draft.finding.owner = closer.as_deref().cloned();
        draft.finding.add(
            "segment",
            flags.clone(),
            format!("the incoming segment carried {flags}"),
        );
        if payload > 0 {
            draft.finding.add(
                "payload_bytes",
                payload,
                format!("it carried {payload} bytes"),
            );
        }
        if let Some(ms) = ending.as_ref().map(Ending::ms) {
            draft.finding.add(
                "closed_ms_before",
                ms,
                format!("the connection was closed here {} before", duration_ms(ms)),
            );
        }
        if let Some(s) = fin_timeout {
            draft.finding.add(
                "tcp_fin_timeout",
                s,
                format!("net.ipv4.tcp_fin_timeout = {s} s"),
            );
        }
        if let Some(state) = peer_state {
            draft.finding.add(
                "peer_state",
                state,
                format!("the peer's socket was in {state}"),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn late_ack_without_overflow() {
        let f = run(vec![
            with_segment(
                sent(
                    0,
                    "10.0.0.1:80",
                    "10.0.0.9:5000",
                    None,
                    Some("NO_SOCKET"),
                    None,
                    proc(0, "swapper/0"),
                ),
                &["ACK"],
                0,
            )
            .into(),
            sample(900).into(),
        ]);
        assert_eq!(only(&f).cause, Cause::ForgottenConnection);
    }

    fn fin_timeout_1s(
        mut s: crate::context::sample::SampleRecord,
    ) -> crate::context::sample::SampleRecord {
        s.sysctls
            .insert("net.ipv4.tcp_fin_timeout".into(), "1".into());
        s
    }

    /// The client closed first; its FIN_WAIT2 state expired after
    /// tcp_fin_timeout while the server sat in CLOSE_WAIT, then the server
    /// wrote: the client's kernel resets, and the finding says why.
    #[test]
    fn half_closed_peer_writes_after_fin_timeout() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let (server, client) = ("127.0.0.1:80", "127.0.0.1:5000");
        let mut inputs = connection(0, server, client, &srv, &cli);
        let closer = Some(owner(42, "client", "connect"));
        let server_owner = Some(owner(7, "api", "accept"));
        inputs.extend([
            state(
                100,
                client,
                server,
                "ESTABLISHED",
                "FIN_WAIT1",
                closer.clone(),
                cli.clone(),
            )
            .into(),
            state(
                100,
                server,
                client,
                "ESTABLISHED",
                "CLOSE_WAIT",
                server_owner.clone(),
                cli.clone(),
            )
            .into(),
            state(
                100,
                client,
                server,
                "FIN_WAIT1",
                "FIN_WAIT2",
                closer.clone(),
                cli.clone(),
            )
            .into(),
            state(100, client, server, "FIN_WAIT2", "CLOSE", closer, cli).into(),
            fin_timeout_1s(sample(1000)).into(),
            with_segment(
                sent(
                    2600,
                    client,
                    server,
                    None,
                    Some("NO_SOCKET"),
                    None,
                    srv.clone(),
                ),
                &["PSH", "ACK"],
                10,
            )
            .into(),
            received(2600, server, client, "CLOSE_WAIT", server_owner, srv).into(),
            fin_timeout_1s(sample(3000)).into(),
        ]);
        let found = run(inputs);
        let f = only(&found);
        assert_eq!(f.cause, Cause::ForgottenConnection);
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(42), "the closer");
        assert_eq!(f.peer_owner.as_ref().map(|o| o.pid), Some(7));
        assert_eq!(f.value("closed_ms_before"), Some(&2500.into()));
        assert_eq!(f.value("tcp_fin_timeout"), Some(&1.into()));
        assert_eq!(f.value("peer_state"), Some(&"CLOSE_WAIT".into()));
        assert_eq!(f.value("payload_bytes"), Some(&10.into()));
        assert!(
            f.summary.contains("closed it first 2.5 s earlier"),
            "{}",
            f.summary
        );
    }

    /// The connection ended here without a FIN (no close seen): the finding
    /// says it was dropped silently.
    #[test]
    fn dropped_without_fin() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let (server, client) = ("127.0.0.1:80", "127.0.0.1:5000");
        let mut inputs = connection(0, server, client, &srv, &cli);
        inputs.extend([
            state(
                100,
                client,
                server,
                "ESTABLISHED",
                "CLOSE",
                Some(owner(42, "client", "connect")),
                cli.clone(),
            )
            .into(),
            with_segment(
                sent(400, client, server, None, Some("NO_SOCKET"), None, srv),
                &["PSH", "ACK"],
                5,
            )
            .into(),
            sample(1000).into(),
        ]);
        let found = run(inputs);
        let f = only(&found);
        assert_eq!(f.cause, Cause::ForgottenConnection);
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(42));
        assert!(
            f.summary.contains("ESTABLISHED -> CLOSE without a FIN"),
            "{}",
            f.summary
        );
    }
}
