//! `paws_reject`: a connect's SYN-ACK failed the timestamp check (PAWS,
//! RFC 7323), typically clients behind NAT with unrelated timestamp clocks, or
//! a reused TIME_WAIT tuple (reason TCP_RFC7323_PAWS, counter PAWSActive).

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
};

/// See the module docs.
pub struct PawsReject;

impl Rule for PawsReject {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_RFC7323_PAWS") {
            return None;
        }
        Some(reset.draft(
            Cause::PawsReject,
            reset.confidence,
            format!(
                "The connection to {} was reset because the peer's SYN-ACK failed the timestamp (PAWS) check.",
                reset.id.remote
            ),
            "Look for NAT in front of several hosts with unrelated TCP timestamp clocks, or aggressive reuse of recently closed ports (net.ipv4.tcp_tw_reuse).".into(),
            format!("paws_reject:{}:{}", reset.id.netns, reset.id.remote),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn paws() {
        let f = run(vec![
            sent(
                0,
                "10.0.0.1:40000",
                "10.0.0.9:80",
                Some("SYN_SENT"),
                Some("TCP_RFC7323_PAWS"),
                Some(owner(42, "app", "connect")),
                proc(0, "swapper/0"),
            )
            .into(),
        ]);
        assert_eq!(only(&f).cause, Cause::PawsReject);
    }
}
