//! `listener_closed_with_pending`: a listening socket was closed while
//! connections waited in its accept queue; the kernel resets each of them
//! (`inet_csk_listen_stop` → `inet_child_forget`, reason TCP_STATE). The
//! children were never accepted, so their owner is the listener's.

use chrono::TimeDelta;

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::pid,
};

/// See the module docs.
pub struct ListenerClosedWithPending;

impl Rule for ListenerClosedWithPending {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_STATE") {
            return None;
        }
        let event = reset.event;
        let never_accepted =
            event.owner.as_ref().and_then(|o| o.source.as_deref()) == Some("listener");
        let port = reset.id.local.port();
        let closed_now = ctx.history.listeners(reset.id.netns, port).any(|spell| {
            spell
                .closed_at
                .is_some_and(|t| (event.time - t).abs() <= TimeDelta::seconds(2))
                && spell.owner.as_ref().map(|o| o.pid) == Some(event.actor.pid)
        });
        if !never_accepted && !closed_now {
            return None;
        }
        let owner = event.owner.as_ref();
        let mut draft = reset.draft(
            Cause::ListenerClosedWithPending,
            reset.confidence,
            format!(
                "{} closed its listening socket on port {port} while this connection still waited in the accept queue, never accepted; the kernel reset it. The client saw a reset on a connection it believed established.",
                pid(owner)
            ),
            "Shut down gracefully: stop sending new connections (load balancer, readiness), drain the accept queue (accept and serve or close) before closing the listener, or hand the listening socket to the new process (socket activation, SO_REUSEPORT).".into(),
            format!("listener_closed_with_pending:{}:{port}", reset.id.netns),
        );
        draft.finding.port = Some(port);
        draft.finding.add(
            "listener_port",
            port,
            format!("the listener was on port {port}"),
        );
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn queued_children_reset_when_the_listener_closes() {
        let srv = proc(7, "api");
        let f = run(vec![
            state(
                0,
                "0.0.0.0:80",
                "0.0.0.0:0",
                "CLOSE",
                "LISTEN",
                Some(owner(7, "api", "listen")),
                srv.clone(),
            )
            .into(),
            state(
                1000,
                "0.0.0.0:80",
                "0.0.0.0:0",
                "LISTEN",
                "CLOSE",
                Some(owner(7, "api", "listen")),
                srv.clone(),
            )
            .into(),
            sent(
                1000,
                "127.0.0.1:80",
                "127.0.0.1:5000",
                Some("CLOSE"),
                Some("TCP_STATE"),
                Some(owner(7, "api", "listener")),
                srv.clone(),
            )
            .into(),
            sent(
                1000,
                "127.0.0.1:80",
                "127.0.0.1:5001",
                Some("CLOSE"),
                Some("TCP_STATE"),
                Some(owner(7, "api", "listener")),
                srv,
            )
            .into(),
        ]);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(
            f.iter()
                .all(|f| f.cause == Cause::ListenerClosedWithPending)
        );
        assert_eq!(f[1].count, 1, "the second is a counted repeat");
    }
}
