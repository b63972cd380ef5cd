//! `other_reset`: a reset sent that no more specific rule places. The kernel's
//! reason, when it has one, is still given.

use crate::events::model::Kind;
use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::pid,
};

/// See the module docs.
pub struct OtherReset;

impl Rule for OtherReset {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if reset.event.kind != Kind::ResetSent {
            return None;
        }
        Some(reset.draft(
            Cause::OtherReset,
            reset.confidence,
            format!(
                "This host reset the connection (reason {}, local state {}); {}.",
                reset.reason.as_deref().unwrap_or("not reported by this kernel"),
                reset.state().unwrap_or("no socket"),
                match &reset.event.owner {
                    Some(o) => format!("the socket's owner is {}", pid(Some(o))),
                    None => "no process owns the socket".to_owned(),
                }
            ),
            "See docs/causes/other_reset.md for the kernel reasons this covers; run with --kind all to see the connection's history.".into(),
            format!(
                "other_reset:{}:{}:{}",
                reset.id.netns,
                reset.id.local.port(),
                reset.reason.as_deref().unwrap_or("-")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn unplaced_reason_is_still_reported() {
        let f = run(vec![
            with_segment(
                sent(
                    0,
                    "10.0.0.1:80",
                    "10.0.0.9:5000",
                    Some("SYN_RECV"),
                    Some("TCP_OLD_ACK"),
                    None,
                    proc(0, "swapper/0"),
                ),
                &["ACK"],
                0,
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::OtherReset);
        assert_eq!(f.value("reason"), Some(&"TCP_OLD_ACK".into()));
    }
}
