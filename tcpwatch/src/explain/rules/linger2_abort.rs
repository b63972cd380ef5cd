//! `linger2_abort`: a connection closed in FIN_WAIT2 by a process that set
//! TCP_LINGER2 to a negative value is reset instead of waiting for the peer's
//! FIN (`__tcp_close`, reason TCP_ABORT_ON_LINGER, counter TCPAbortOnLinger).

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::pid,
};

/// See the module docs.
pub struct Linger2Abort;

impl Rule for Linger2Abort {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_ABORT_ON_LINGER") {
            return None;
        }
        Some(reset.draft(
            Cause::Linger2Abort,
            reset.confidence,
            format!(
                "{} closed this connection in FIN_WAIT2 with TCP_LINGER2 < 0: instead of waiting for the peer's FIN the kernel reset it.",
                pid(reset.event.owner.as_ref())
            ),
            "TCP_LINGER2 < 0 resets every connection whose peer has not finished; remove the option, or have the peer close promptly.".into(),
            format!("linger2_abort:{}:{}", reset.id.netns, reset.id.local.port()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn linger2_reason() {
        let f = run(vec![
            sent(
                0,
                "10.0.0.1:80",
                "10.0.0.9:5000",
                Some("CLOSE"),
                Some("TCP_ABORT_ON_LINGER"),
                Some(owner(7, "api", "accept")),
                proc(7, "api"),
            )
            .into(),
        ]);
        assert_eq!(only(&f).cause, Cause::Linger2Abort);
    }
}
