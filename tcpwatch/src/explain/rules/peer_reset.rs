//! `peer_reset`: a socket on this host received a RST that no more specific rule
//! explains. The RST is a fact (`tcp:tcp_receive_reset`); why the peer sent it
//! is on the peer's side.

use crate::{
    events::model::Kind,
    explain::{
        cause::Cause,
        finding::Confidence,
        rule::{Ctx, Draft, Reset, Rule},
        wording::{duration_ms, pid},
    },
};

/// See the module docs.
pub struct PeerReset;

impl Rule for PeerReset {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if reset.event.kind != Kind::ResetReceived {
            return None;
        }
        let owner = reset.event.owner.as_ref();
        let state = reset.state().unwrap_or("?");
        // Without the state (no BTF) the errno is not known either.
        let error = reset
            .event
            .error
            .as_deref()
            .unwrap_or("ECONNRESET (ECONNREFUSED if it was connecting)");
        let age = ctx.history.flow(&reset.id).map(|h| h.age_ms(reset.time()));
        let mut draft = reset.draft(
            Cause::PeerReset,
            Confidence::Exact,
            format!(
                "The peer {} reset this connection of {} (local state {state}{}); {} gets {error} on its next call.",
                reset.id.remote,
                pid(owner),
                age.map(|a| format!(", {} old", duration_ms(a))).unwrap_or_default(),
                owner.map_or("the owner", |o| o.comm.as_str()),
            ),
            "Look at the peer's side for why it reset (run tcpwatch there): it closed with unread data, aborted, restarted, or a firewall or load balancer killed the flow. Retry idempotent requests on ECONNRESET.".into(),
            format!("peer_reset:{}:{}", reset.id.netns, reset.id.remote),
        );
        draft
            .finding
            .add("state", state, format!("the local socket was {state}"));
        draft
            .finding
            .add("error", error, format!("the application sees {error}"));
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, finding::Confidence, testkit::*};

    #[test]
    fn reset_from_a_remote_peer() {
        let f = run(vec![
            received(
                0,
                "10.0.0.1:5000",
                "10.0.0.9:80",
                "ESTABLISHED",
                Some(owner(42, "app", "connect")),
                proc(0, "swapper/0"),
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::PeerReset, Confidence::Exact)
        );
        assert_eq!(f.value("error"), Some(&"ECONNRESET".into()));
    }
}
