//! `linger_zero_abort`: the owner closed with SO_LINGER {on, 0}, which aborts the
//! connection with RST (`tcp_disconnect` from `__tcp_close`, reason TCP_STATE,
//! counted in TCPAbortOnData). The closing process is on the CPU and owns the
//! socket, and the socket is already in CLOSE.

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::pid,
};

/// See the module docs.
pub struct LingerZeroAbort;

impl Rule for LingerZeroAbort {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        let event = reset.event;
        let by_owner = event
            .owner
            .as_ref()
            .is_some_and(|o| o.pid == event.actor.pid);
        if !reset.reason_is("TCP_STATE") || reset.state() != Some("CLOSE") || !by_owner {
            return None;
        }
        let owner = event.owner.as_ref();
        let mut draft = reset.draft(
            Cause::LingerZeroAbort,
            reset.confidence,
            format!(
                "{} closed this connection abortively (SO_LINGER with a zero timeout): the kernel sent RST instead of FIN, so the peer gets ECONNRESET and any data still in flight is lost.",
                pid(owner)
            ),
            "If the abort is not intended, remove SO_LINGER {1, 0} (or give it a non-zero timeout). If it is deliberate (to avoid TIME_WAIT), make the peer treat ECONNRESET at the end of an exchange as normal.".into(),
            format!("linger_zero_abort:{}:{}", reset.id.netns, event.actor.pid),
        );
        if let Some(tcp) = event.tcp {
            draft.finding.add(
                "bytes_acked",
                tcp.bytes_acked,
                format!("{} bytes had been sent and acknowledged", tcp.bytes_acked),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, finding::Confidence, testkit::*};

    #[test]
    fn owner_closing_with_state_reason() {
        let c = proc(42, "client");
        let f = run(vec![
            sent(
                0,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                Some("CLOSE"),
                Some("TCP_STATE"),
                Some(owner(42, "client", "connect")),
                c,
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::LingerZeroAbort);
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(42));
    }

    #[test]
    fn on_old_kernels_abort_on_data_marks_it() {
        let c = proc(42, "client");
        let mut s = sample(900);
        s.counters.insert("TcpExt.TCPAbortOnData".into(), 1);
        let f = run(vec![
            sent(
                0,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                Some("CLOSE"),
                None,
                Some(owner(42, "client", "connect")),
                c,
            )
            .into(),
            s.into(),
        ]);
        assert_eq!(
            (only(&f).cause, only(&f).confidence),
            (Cause::LingerZeroAbort, Confidence::Inferred)
        );
    }
}
