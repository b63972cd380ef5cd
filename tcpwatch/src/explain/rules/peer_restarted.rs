//! `peer_restarted`: one end reconnected with the same ports while the other end
//! still had the old connection open, so the stale end answered the SYN with an
//! ACK of the old sequence and the connecting end reset it (reason
//! TCP_INVALID_ACK_SEQUENCE in SYN_SENT; the stale end then receives a RST).
//! A restart that reused a port, or a NAT reusing a port mapping.

use chrono::TimeDelta;

use crate::{
    events::model::Kind,
    explain::{
        cause::Cause,
        rule::{Ctx, Draft, Reset, Rule},
        wording::pid,
    },
};

/// See the module docs.
pub struct PeerRestarted;

impl Rule for PeerRestarted {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        let connecting = reset.event.kind == Kind::ResetSent
            && reset.reason_is("TCP_INVALID_ACK_SEQUENCE")
            && reset.state() == Some("SYN_SENT");
        // The stale end, when the connecting end is on this host too.
        let stale = reset.event.kind == Kind::ResetReceived
            && reset.state() == Some("ESTABLISHED")
            && ctx.history.peer(&reset.id).is_some_and(|peer| {
                peer.transitions.iter().rev().any(|t| {
                    t.to() == "SYN_SENT" && (reset.time() - t.time).abs() < TimeDelta::seconds(2)
                })
            });
        if !connecting && !stale {
            return None;
        }
        let summary = if connecting {
            format!(
                "{} connected from {} to {}, but the other end still had an established connection with the same ports and answered with an ACK for the old one; this host reset it. One end restarted (or a NAT reused the port) while the other kept the old connection.",
                pid(reset.event.owner.as_ref()),
                reset.id.local,
                reset.id.remote
            )
        } else {
            format!(
                "{} held an old connection {} <-> {}; the peer reconnected with the same ports (it restarted, or a NAT reused the port) and reset the old one.",
                pid(reset.event.owner.as_ref()),
                reset.id.local,
                reset.id.remote
            )
        };
        Some(reset.draft(
            Cause::PeerRestarted,
            reset.confidence,
            summary,
            "Expected once after a crash or restart that reuses ports. If it repeats, check NAT or load balancer port reuse, and enable keep-alive so dead connections are noticed before the port comes back.".into(),
            format!("peer_restarted:{}:{}", reset.id.netns, reset.id.remote),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn syn_answered_for_the_old_connection() {
        let f = run(vec![
            with_segment(
                sent(
                    0,
                    "127.0.0.1:40000",
                    "127.0.0.1:80",
                    Some("SYN_SENT"),
                    Some("TCP_INVALID_ACK_SEQUENCE"),
                    Some(owner(42, "client", "connect")),
                    proc(42, "client"),
                ),
                &["ACK"],
                0,
            )
            .into(),
        ]);
        assert_eq!(only(&f).cause, Cause::PeerRestarted);
    }
}
