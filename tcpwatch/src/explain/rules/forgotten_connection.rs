//! `forgotten_connection`: a segment that is not a SYN arrived for a connection
//! this host no longer has (no socket, not even TIME_WAIT): it closed, reset or
//! timed out here, and the peer did not know. The kernel answers with RST
//! (reason NO_SOCKET).

use crate::explain::{
    cause::Cause,
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
        let ended = ctx
            .history
            .completed
            .iter()
            .rev()
            .find(|c| c.id == reset.id);
        let mut draft = reset.draft(
            Cause::ForgottenConnection,
            reset.confidence,
            format!(
                "A segment ({flags}) from {} arrived for a connection this host no longer has; the kernel answered with RST.{}",
                reset.id.remote,
                ended
                    .map(|c| format!(
                        " The connection was closed by {} {} earlier.",
                        if c.local_first { pid(c.closer.as_ref()) } else { "the peer".to_owned() },
                        duration_ms((reset.time() - c.time).num_milliseconds().max(0) as u64)
                    ))
                    .unwrap_or_default()
            ),
            "If the peer keeps using connections this host closed, make its idle timeout shorter than this host's; if this host forgets connections early, see time_wait_overflow and net.ipv4.tcp_fin_timeout.".into(),
            format!("forgotten_connection:{}:{}", reset.id.netns, reset.id.local.port()),
        );
        if let Some(c) = ended {
            draft.finding.owner = c.closer.clone();
        }
        draft.finding.add(
            "segment",
            flags.clone(),
            format!("the incoming segment carried {flags}"),
        );
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
}
