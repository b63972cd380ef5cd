//! `firewall_reject`: a netfilter rule on this host (`REJECT --reject-with
//! tcp-reset` in iptables, `reject with tcp reset` in nftables) refused a
//! segment and netfilter answered it with a RST that TCP never built
//! (`nf_send_reset`/`nf_send_reset6`). Exact: only that path reaches the hook.

use crate::explain::{
    cause::Cause,
    finding::Confidence,
    rule::{Ctx, Draft, Reset, Rule},
    wording::pid,
};

/// See the module docs.
pub struct FirewallReject;

impl Rule for FirewallReject {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        let chain = reset.event.netfilter_hook.as_deref()?;
        let port = reset.id.local.port();
        let syn = reset.segment_has("SYN") && !reset.segment_has("ACK");
        let (what, error) = if syn {
            ("a connection attempt", "ECONNREFUSED")
        } else {
            ("a segment of an existing connection", "ECONNRESET")
        };
        let listener = reset.event.listener.as_ref();
        let mut draft = reset.draft(
            Cause::FirewallReject,
            Confidence::Exact,
            format!(
                "A firewall rule on this host (netfilter hook {chain}) rejected {what} from {} to {} and answered with RST{}; the sender gets {error}. TCP never saw the segment.",
                reset.id.remote,
                reset.id.local,
                listener
                    .map(|l| format!(" although {} listens on port {port}", pid(Some(l))))
                    .unwrap_or_default(),
            ),
            format!(
                "Find the rule: `nft list ruleset | grep -n reject` or `iptables-save | grep -- '--reject-with tcp-reset'` (and ip6tables-save) in network namespace {}, hook {chain}; allow port {port} from {} if the traffic is wanted, or point the client elsewhere.",
                reset.id.netns,
                reset.id.remote.ip(),
            ),
            format!("firewall_reject:{}:{chain}:{port}", reset.id.netns),
        );
        draft.finding.port = Some(port);
        draft.finding.owner = None;
        draft.finding.add(
            "netfilter_hook",
            chain,
            format!("the rejecting rule is in the {chain} hook (nf_send_reset built the RST)"),
        );
        if let Some(segment) = &reset.event.segment {
            let flags = segment.flags.join("|");
            draft.finding.add(
                "segment",
                flags.clone(),
                format!("the rejected segment was {flags}"),
            );
        }
        draft.finding.add(
            "listening",
            listener.is_some(),
            match listener {
                Some(l) => format!(
                    "{} listens on port {port}: the service is up, the firewall refused",
                    pid(Some(l))
                ),
                None => format!("nobody listens on port {port}"),
            },
        );
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, finding::Confidence, testkit::*};

    #[test]
    fn a_rejected_syn_is_one_finding_not_a_peer_reset() {
        let client = proc(42, "curl");
        let mut rst = with_segment(
            sent(
                0,
                "127.0.0.1:8081",
                "127.0.0.1:5000",
                None,
                None,
                None,
                client.clone(),
            ),
            &["SYN"],
            0,
        );
        rst.hook = "kprobe:nf_send_reset".into();
        rst.netfilter_hook = Some("INPUT".into());
        rst.listener = Some(owner(7, "api", "listen"));
        let f = run(vec![
            rst.into(),
            received(
                0,
                "127.0.0.1:5000",
                "127.0.0.1:8081",
                "SYN_SENT",
                Some(owner(42, "curl", "connect")),
                client,
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(
            (f.cause, f.confidence),
            (Cause::FirewallReject, Confidence::Exact)
        );
        assert_eq!(f.value("netfilter_hook"), Some(&"INPUT".into()));
        assert_eq!(f.value("listening"), Some(&true.into()));
        assert!(f.summary.contains("ECONNREFUSED"), "{}", f.summary);
        assert_eq!(f.peer_owner.as_ref().map(|p| p.pid), Some(42));
    }
}
