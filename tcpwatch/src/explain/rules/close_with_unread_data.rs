//! `close_with_unread_data`: the application closed a connection with received
//! data it never read, so the kernel answered with RST instead of FIN
//! (`__tcp_close`, reason TCP_ABORT_ON_CLOSE, counter TCPAbortOnClose).

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::{duration_ms, pid},
};

/// See the module docs.
pub struct CloseWithUnreadData;

impl Rule for CloseWithUnreadData {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if !reset.reason_is("TCP_ABORT_ON_CLOSE") {
            return None;
        }
        let owner = reset.event.owner.as_ref();
        let mut draft = reset.draft(
            Cause::CloseWithUnreadData,
            reset.confidence,
            format!(
                "{} closed this connection while received data was still unread, so the kernel sent RST instead of FIN; the peer gets ECONNRESET and may lose a response it was reading.",
                pid(owner)
            ),
            "Read the whole request (or drain the socket) before closing. To close politely: shutdown(SHUT_WR), read until EOF, then close().".into(),
            format!("close_with_unread_data:{}:{}", reset.id.netns, reset.id.local.port()),
        );
        let f = &mut draft.finding;
        if let Some(t) = ctx
            .history
            .flow(&reset.id)
            .and_then(|h| h.transitions.back())
        {
            f.add(
                "state_at_close",
                t.from(),
                format!("the connection was {} when it was closed", t.from()),
            );
        }
        if let Some(tcp) = reset.event.tcp {
            f.add(
                "bytes_received",
                tcp.bytes_received,
                format!(
                    "{} bytes had been received on it in all",
                    tcp.bytes_received
                ),
            );
            f.add(
                "idle_before_close_ms",
                tcp.idle_ms,
                format!(
                    "the last segment arrived {} before the close",
                    duration_ms(tcp.idle_ms)
                ),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, finding::Confidence, testkit::*};

    const SRV: &str = "127.0.0.1:8080";
    const CLI: &str = "127.0.0.1:5000";

    #[test]
    fn server_abort_with_unread_request() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let mut inputs = connection(0, SRV, CLI, &srv, &cli);
        inputs.push(
            state(
                500,
                SRV,
                CLI,
                "ESTABLISHED",
                "CLOSE",
                Some(owner(7, "api", "accept")),
                srv.clone(),
            )
            .into(),
        );
        inputs.push(
            with_tcp(
                sent(
                    500,
                    SRV,
                    CLI,
                    Some("CLOSE"),
                    Some("TCP_ABORT_ON_CLOSE"),
                    Some(owner(7, "api", "accept")),
                    srv,
                ),
                tcp(3, 100),
            )
            .into(),
        );
        inputs.push(
            received(
                500,
                CLI,
                SRV,
                "ESTABLISHED",
                Some(owner(42, "client", "connect")),
                proc(7, "api"),
            )
            .into(),
        );
        let f = run(inputs);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::CloseWithUnreadData, Confidence::Exact)
        );
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(7));
        assert_eq!(f.peer_owner.as_ref().map(|o| o.pid), Some(42));
        assert_eq!(f.value("bytes_received"), Some(&100.into()));
        assert_eq!(f.value("state_at_close"), Some(&"ESTABLISHED".into()));
    }

    #[test]
    fn on_old_kernels_the_counters_decide() {
        let srv = proc(7, "api");
        let mut s = sample(1500);
        s.counters.insert("TcpExt.TCPAbortOnClose".into(), 1);
        let f = run(vec![
            sent(
                500,
                SRV,
                CLI,
                Some("CLOSE"),
                None,
                Some(owner(7, "api", "accept")),
                srv,
            )
            .into(),
            s.into(),
        ]);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::CloseWithUnreadData, Confidence::Inferred)
        );
        assert!(f.evidence[0].text.contains("inferred"), "{:?}", f.evidence);
    }
}
