//! `stray_ack_to_listener`: an ACK reached a listening socket that has no
//! matching connection request (the request expired after SYN-ACK retries, a
//! SYN cookie did not validate, or the listener restarted between SYN and ACK);
//! the listener resets it (reason TCP_FLAGS).

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
};

/// See the module docs.
pub struct StrayAckToListener;

impl Rule for StrayAckToListener {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_FLAGS") || reset.state() != Some("LISTEN") {
            return None;
        }
        Some(reset.draft(
            Cause::StrayAckToListener,
            reset.confidence,
            format!(
                "{} sent an ACK to the listener on port {} that matches no pending connection (the request expired, a SYN cookie failed, or the listener restarted between SYN and ACK); the listener answered with RST.",
                reset.id.remote,
                reset.id.local.port()
            ),
            "Check for SYN-ACKs that never got their ACK in time (slow or lossy path, asymmetric routing), SYN-cookie failures (TcpExt.SyncookiesFailed), and listener restarts.".into(),
            format!("stray_ack_to_listener:{}:{}", reset.id.netns, reset.id.local.port()),
        ))
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
}
