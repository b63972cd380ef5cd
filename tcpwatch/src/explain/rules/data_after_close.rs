//! `data_after_close`: this host closed a connection that was not idle, and the
//! peer kept sending; the data meets a closed socket and the kernel resets
//! (TCP_TIMEWAIT_SOCKET or TCP_ABORT_ON_DATA). Usually a protocol error: one side
//! closes while the other still has a request or a body to send.

use crate::{
    events::model::Kind,
    explain::{
        cause::Cause,
        rule::{Ctx, Draft, Reset, Rule},
        wording::{duration_ms, pid},
    },
};

use super::keepalive_idle_race::{DATA_AFTER_CLOSE_REASONS, preceding_close};

/// See the module docs.
pub struct DataAfterClose;

impl Rule for DataAfterClose {
    fn reset(&mut self, ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        if reset.event.kind != Kind::ResetSent
            || !DATA_AFTER_CLOSE_REASONS.iter().any(|r| reset.reason_is(r))
        {
            return None;
        }
        let close = preceding_close(ctx, reset);
        let closer = close
            .and_then(|c| c.owner.as_deref())
            .or(reset.event.owner.as_ref());
        let mut draft = reset.draft(
            Cause::DataAfterClose,
            reset.confidence,
            format!(
                "{} closed this connection{}, but the peer {} kept sending{}; the data met a closed socket and the kernel answered with RST ({}).",
                pid(closer),
                close
                    .and_then(|c| c.tcp)
                    .map(|t| format!(" while it was busy ({} since the last segment)", duration_ms(t.idle_ms)))
                    .unwrap_or_default(),
                reset.id.remote,
                close
                    .map(|c| format!(" {} later", duration_ms((reset.time() - c.time).num_milliseconds().max(0) as u64)))
                    .unwrap_or_default(),
                reset.reason.as_deref().unwrap_or("?"),
            ),
            "Do not close while the peer may still send: finish reading the request (or the body) first, or shutdown(SHUT_WR) and read until EOF before close(). If the peer is a client pool, make it stop reusing connections the server ends.".into(),
            format!("data_after_close:{}:{}", reset.id.netns, reset.id.local.port()),
        );
        draft.finding.owner = closer.cloned();
        if let Some(seg) = &reset.event.segment {
            draft.finding.add(
                "bytes_after_close",
                seg.payload_bytes,
                format!("the peer sent {} bytes after the close", seg.payload_bytes),
            );
        }
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn busy_close_then_more_data() {
        let (srv, cli) = (proc(7, "api"), proc(42, "client"));
        let mut inputs = connection(0, "127.0.0.1:80", "127.0.0.1:5000", &srv, &cli);
        inputs.push(
            with_tcp(
                state(
                    10,
                    "127.0.0.1:80",
                    "127.0.0.1:5000",
                    "ESTABLISHED",
                    "FIN_WAIT1",
                    Some(owner(7, "api", "accept")),
                    srv.clone(),
                ),
                tcp(2, 10),
            )
            .into(),
        );
        inputs.push(
            with_segment(
                sent(
                    20,
                    "127.0.0.1:80",
                    "127.0.0.1:5000",
                    Some("CLOSE"),
                    Some("TCP_ABORT_ON_DATA"),
                    Some(owner(7, "api", "close")),
                    cli,
                ),
                &["ACK"],
                500,
            )
            .into(),
        );
        let f = run(inputs);
        let f = only(&f);
        assert_eq!(f.cause, Cause::DataAfterClose);
        assert_eq!(f.value("bytes_after_close"), Some(&500.into()));
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(7));
    }
}
