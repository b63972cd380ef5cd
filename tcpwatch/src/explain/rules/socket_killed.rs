//! `socket_killed`: another process destroyed the socket (`ss -K`, a netlink
//! SOCK_DESTROY, an agent's `bpf_sock_destroy`): `tcp_abort` resets it with
//! TCP_STATE while the killer is on the CPU, not the owner.

use crate::explain::{
    cause::Cause,
    rule::{Ctx, Draft, Reset, Rule},
    wording::pid,
};

/// See the module docs.
pub struct SocketKilled;

impl Rule for SocketKilled {
    fn reset(&mut self, _ctx: &Ctx, reset: &Reset) -> Option<Draft> {
        let event = reset.event;
        let owner = event.owner.as_ref()?;
        if !reset.reason_is("TCP_STATE") || owner.pid == event.actor.pid || event.actor.pid == 0 {
            return None;
        }
        let killer = &event.actor;
        let mut draft = reset.draft(
            Cause::SocketKilled,
            reset.confidence,
            format!(
                "{} killed this connection of {} (ss -K or a SOCK_DESTROY request): the kernel reset it in state {}; {} gets ECONNABORTED.",
                pid(Some(killer)),
                pid(Some(owner)),
                reset.state().unwrap_or("?"),
                owner.comm
            ),
            format!(
                "Find out why {} kills sockets: an operator's `ss -K`, or an agent (CNI, load balancer, service mesh) cleaning up connections to endpoints it removed.",
                killer.comm
            ),
            format!("socket_killed:{}:{}", reset.id.netns, killer.pid),
        );
        draft.finding.add(
            "killer",
            format!("{}[{}]", killer.comm, killer.pid),
            format!("the process that killed it: {}", pid(Some(killer))),
        );
        Some(draft)
    }
}

#[cfg(test)]
mod tests {
    use crate::explain::{cause::Cause, testkit::*};

    #[test]
    fn another_process_killed_it() {
        let f = run(vec![
            sent(
                0,
                "127.0.0.1:80",
                "127.0.0.1:5000",
                Some("ESTABLISHED"),
                Some("TCP_STATE"),
                Some(owner(7, "api", "accept")),
                proc(99, "ss"),
            )
            .into(),
        ]);
        let f = only(&f);
        assert_eq!(f.cause, Cause::SocketKilled);
        assert_eq!(f.owner.as_ref().map(|o| o.pid), Some(7));
        assert_eq!(f.value("killer"), Some(&"ss[99]".into()));
    }
}
