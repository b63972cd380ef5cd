//! `no_listener`: a SYN reached a port nobody listens on, and the kernel refused
//! it with RST (no socket: reason NO_SOCKET; the client gets ECONNREFUSED).

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::{duration_ms, pid},
};

/// See the module docs.
pub struct NoListener;

impl Rule for NoListener {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("NO_SOCKET") || reset.segment_has("ACK") {
            return None;
        }
        // Without the segment (read at BTF offsets), a SYN shows as the other
        // end, on this host, failing to connect (SYN_SENT -> CLOSE, never
        // established; the engine waits for it: see `waits_for_counters`).
        let syn = reset.segment_has("SYN")
            || (reset.event.segment.is_none()
                && ctx.history.peer(&reset.id).is_some_and(|peer| {
                    peer.established_at.is_none()
                        && peer.transitions.iter().any(|t| t.from() == "SYN_SENT")
                }));
        if !syn {
            return None;
        }
        let port = reset.id.local.port();
        let last = ctx
            .history
            .listeners(reset.id.netns, port)
            .find(|spell| spell.closed_at.is_some());
        let mut draft = reset.draft(
            Cause::NoListener,
            reset.confidence,
            format!(
                "A connection attempt from {} to {} was refused: nobody listens on port {port} in this network namespace (netns {}); the client gets ECONNREFUSED.{}",
                reset.id.remote,
                reset.id.local,
                reset.id.netns,
                last.and_then(|s| Some(format!(
                    " {} listened on this port until {} before.",
                    pid(s.owner.as_ref()),
                    duration_ms((reset.time() - s.closed_at?).num_milliseconds().max(0) as u64)
                )))
                .unwrap_or_default()
            ),
            format!(
                "Start the service on port {port}, or point the client at the right address and port.{}",
                if last.is_some() {
                    " The former listener stopped: check whether it crashed or is restarting."
                } else {
                    ""
                }
            ),
            format!("no_listener:{}:{port}", reset.id.netns),
        );
        draft.finding.port = Some(port);
        draft
            .finding
            .add("port", port, format!("nobody listens on port {port}"));
        draft.finding.add(
            "segment",
            "SYN",
            "the incoming segment was a SYN (a new connection)".into(),
        );
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, finding::Confidence, testkit::*};

    #[test]
    fn refused_connect_is_one_finding_with_the_client_as_peer() {
        let client = proc(42, "curl");
        let f = run(vec![
            with_segment(
                sent(
                    0,
                    "127.0.0.1:9",
                    "127.0.0.1:5000",
                    None,
                    Some("NO_SOCKET"),
                    None,
                    client.clone(),
                ),
                &["SYN"],
                0,
            )
            .into(),
            received(
                0,
                "127.0.0.1:5000",
                "127.0.0.1:9",
                "SYN_SENT",
                Some(owner(42, "curl", "connect")),
                client,
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::NoListener, Confidence::Exact)
        );
        assert_eq!(f.owner, None, "nobody owns a closed port");
        assert_eq!(f.peer_owner.as_ref().map(|p| p.pid), Some(42));
        assert_eq!(f.value("port"), Some(&9.into()));
    }

    #[test]
    fn without_a_reason_it_is_inferred_and_names_the_last_listener() {
        let srv = owner(7, "api", "listen");
        let f = run(vec![
            state(
                0,
                "0.0.0.0:8080",
                "0.0.0.0:0",
                "CLOSE",
                "LISTEN",
                Some(srv.clone()),
                srv.clone(),
            )
            .into(),
            state(
                1000,
                "0.0.0.0:8080",
                "0.0.0.0:0",
                "LISTEN",
                "CLOSE",
                Some(srv.clone()),
                srv,
            )
            .into(),
            with_segment(
                sent(
                    3000,
                    "127.0.0.1:8080",
                    "127.0.0.1:5000",
                    None,
                    None,
                    None,
                    proc(42, "curl"),
                ),
                &["SYN"],
                0,
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::NoListener, Confidence::Inferred)
        );
        assert!(
            f.summary
                .contains("pid 7 (api) listened on this port until 2.0 s before"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn repeats_are_counted_not_printed() {
        let c = proc(42, "curl");
        let mut inputs: Vec<Input> = Vec::new();
        for i in 0..5 {
            let port = format!("127.0.0.1:{}", 5000 + i);
            inputs.push(
                with_segment(
                    sent(
                        i * 100,
                        "127.0.0.1:9",
                        &port,
                        None,
                        Some("NO_SOCKET"),
                        None,
                        c.clone(),
                    ),
                    &["SYN"],
                    0,
                )
                .into(),
            );
        }
        let f = run(inputs);
        assert_eq!(f.len(), 2, "the first, then the rest as one: {f:#?}");
        assert_eq!((f[0].count, f[1].count), (1, 4));
    }
}
