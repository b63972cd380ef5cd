//! `stray_ack_to_listener`: an ACK reached a listening socket that has no
//! matching connection request (the request expired after SYN-ACK retries, a
//! SYN cookie did not validate, or the listener restarted between SYN and ACK);
//! the listener resets it (reason TCP_FLAGS).

use crate::explain::{
    cause::Cause,
    history::Ending,
    rule::{Ctx, Draft, Reset, Rule},
    wording::duration_ms,
};

/// See the module docs.
pub struct StrayAckToListener;

impl Rule for StrayAckToListener {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_FLAGS") || reset.state() != Some("LISTEN") {
            return None;
        }
        let port = reset.id.local.port();
        let payload = reset.event.segment.as_ref().map_or(0, |s| s.payload_bytes);
        // The connection this segment belongs to may have existed here: then
        // it was dropped without telling the peer, and the peer's next segment
        // found only the listener.
        let flow = ctx.history.flow(&reset.id);
        let ending = flow.and_then(|f| f.ending(reset.time()));
        let (summary, fix) = match &ending {
            Some(ending) => (
                format!(
                    "{} sent {} on a connection to port {port} that this host ended {} earlier ({}), so the segment reached the listener, which answered with RST.",
                    reset.id.remote,
                    if payload > 0 { format!("{payload} bytes") } else { "a segment".to_owned() },
                    duration_ms(ending.ms()),
                    match ending {
                        Ending::Dropped { from, .. } => format!("{from} -> CLOSE without a FIN: the peer was never told"),
                        Ending::ClosedHere { .. } => "closed by this host".to_owned(),
                        Ending::ClosedByPeer { .. } => "closed by the peer".to_owned(),
                    }
                ),
                "Find why this host dropped the connection without a FIN or RST reaching the peer (a socket closed under TCP_REPAIR, killed silently, or a reset that was lost); the peer should retry on reset.".to_owned(),
            ),
            None => (
                format!(
                    "{} sent an ACK to the listener on port {port} that matches no pending connection (the request expired, a SYN cookie failed, or the listener restarted between SYN and ACK); the listener answered with RST.",
                    reset.id.remote,
                ),
                "Check for SYN-ACKs that never got their ACK in time (slow or lossy path, asymmetric routing), SYN-cookie failures (TcpExt.SyncookiesFailed), and listener restarts.".to_owned(),
            ),
        };
        let mut draft = reset.draft(
            Cause::StrayAckToListener,
            reset.confidence,
            summary,
            fix,
            format!("stray_ack_to_listener:{}:{port}", reset.id.netns),
        );
        draft.finding.port = Some(port);
        if let Some(ending) = &ending {
            if draft.finding.owner.is_none() {
                draft.finding.owner = flow.and_then(|f| f.owner.as_deref().cloned());
            }
            draft.finding.add(
                "closed_ms_before",
                ending.ms(),
                format!(
                    "the connection ended here {} before",
                    duration_ms(ending.ms())
                ),
            );
        }
        if payload > 0 {
            draft.finding.add(
                "payload_bytes",
                payload,
                format!("the segment carried {payload} bytes"),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn ack_to_listener() {
        let f = run(vec![
            with_segment(
                sent(
                    0,
                    "10.0.0.1:80",
                    "10.0.0.9:5000",
                    Some("LISTEN"),
                    Some("TCP_FLAGS"),
                    Some(owner(7, "api", "listen")),
                    proc(0, "swapper/0"),
                ),
                &["ACK"],
                0,
            )
            .into(),
        ]);
        assert_eq!(only(&f).cause, Cause::StrayAckToListener);
    }

    /// The server's socket vanished without a FIN (closed under TCP_REPAIR):
    /// the client's next request reaches the listener.
    #[test]
    fn data_for_a_connection_dropped_here() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let (server, client) = ("127.0.0.1:80", "127.0.0.1:5000");
        let mut inputs = connection(0, server, client, &srv, &cli);
        let server_owner = Some(owner(7, "api", "accept"));
        inputs.extend([
            state(
                100,
                server,
                client,
                "ESTABLISHED",
                "CLOSE",
                server_owner.clone(),
                srv.clone(),
            )
            .into(),
            with_segment(
                sent(
                    300,
                    server,
                    client,
                    Some("LISTEN"),
                    Some("TCP_FLAGS"),
                    Some(owner(7, "api", "listen")),
                    cli.clone(),
                ),
                &["PSH", "ACK"],
                5,
            )
            .into(),
        ]);
        let found = run(inputs);
        let f = only(&found);
        assert_eq!(f.cause, Cause::StrayAckToListener);
        assert_eq!(f.value("closed_ms_before"), Some(&200.into()));
        assert_eq!(f.value("payload_bytes"), Some(&5.into()));
        assert!(
            f.summary.contains("ESTABLISHED -> CLOSE without a FIN"),
            "{}",
            f.summary
        );
    }
}
