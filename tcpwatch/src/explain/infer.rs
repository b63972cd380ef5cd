//! The reason for a reset sent, when the kernel does not give one (before 6.10;
//! and for active resets before 6.12, which report `NOT_SPECIFIED`).
//!
//! Passive resets (an incoming segment triggered them) are placed from the
//! socket's state and the segment. Active resets (a local decision: close, abort,
//! timer) need the counters the kernel bumps on each path, so they wait for the
//! namespace's next sample.

use chrono::{DateTime, Utc};

use super::{finding::Confidence, namespaces::Namespaces};
use crate::events::model::{EventRecord, Kind};

/// What is known of a reset's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The reason, and whether the kernel said it.
    Known(String, Confidence),
    /// An active reset: decided by counter increases in the next sample.
    AwaitCounters,
    /// Not a reset sent, or nothing to go on.
    None,
}

/// The reason of `event` from what it carries.
pub fn of_event(event: &EventRecord) -> Reason {
    if event.kind != Kind::ResetSent || event.netfilter_hook.is_some() {
        // A firewall's reset has no TCP reason to infer.
        return Reason::None;
    }
    if let Some(reason) = &event.reason
        && reason != "NOT_SPECIFIED"
    {
        return Reason::Known(reason.clone(), Confidence::Exact);
    }
    let inferred = |name: &str| Reason::Known(name.to_owned(), Confidence::Inferred);
    let Some(segment) = &event.segment else {
        // Active reset.
        if event.owner.as_ref().and_then(|o| o.source.as_deref()) == Some("listener") {
            // Never accepted: only a listener teardown resets such a child.
            return inferred("TCP_STATE");
        }
        return Reason::AwaitCounters;
    };
    let has = |flag: &str| segment.flags.iter().any(|f| f == flag);
    match event.state.as_deref() {
        None => inferred("NO_SOCKET"),
        Some("TIME_WAIT") => inferred("TCP_TIMEWAIT_SOCKET"),
        Some("LISTEN") if has("SYN") => inferred("INVALID_SYN"),
        // A listener resets a non-SYN for two reasons: no matching request
        // (TCP_FLAGS), or, with tcp_abort_on_overflow, a completing ACK that
        // met a full accept queue (INVALID_SYN, ListenOverflows rises).
        Some("LISTEN") => Reason::AwaitCounters,
        Some("SYN_SENT") => inferred("TCP_INVALID_ACK_SEQUENCE"),
        Some(_) => inferred("TCP_ABORT_ON_DATA"),
    }
}

/// Counters that move on each active-reset path (net/ipv4/tcp.c,
/// tcp_timer.c), in the order they are checked.
const ACTIVE_PATHS: [(&str, &str); 5] = [
    ("TcpExt.TCPAbortOnClose", "TCP_ABORT_ON_CLOSE"),
    ("TcpExt.TCPAbortOnMemory", "TCP_ABORT_ON_MEMORY"),
    ("TcpExt.TCPAbortOnLinger", "TCP_ABORT_ON_LINGER"),
    ("TcpExt.TCPAbortOnTimeout", "TCP_KEEPALIVE_TIMEOUT"),
    // SO_LINGER {1,0} closes count here (a quirk of __tcp_close).
    ("TcpExt.TCPAbortOnData", "TCP_STATE"),
];

/// Decides an active reset from the counter increases around it (in samples
/// after `event` up to `until`).
pub fn from_counters(event: &EventRecord, namespaces: &Namespaces, until: DateTime<Utc>) -> Reason {
    let since = event.time - chrono::TimeDelta::seconds(2);
    if event.segment.is_some() && event.state.as_deref() == Some("LISTEN") {
        let overflowed =
            namespaces.increase(event.flow.netns, "TcpExt.ListenOverflows", since, until) > 0;
        let reason = if overflowed {
            "INVALID_SYN"
        } else {
            "TCP_FLAGS"
        };
        return Reason::Known(reason.to_owned(), Confidence::Inferred);
    }
    for (counter, reason) in ACTIVE_PATHS {
        if namespaces.increase(event.flow.netns, counter, since, until) > 0 {
            return Reason::Known(reason.to_owned(), Confidence::Inferred);
        }
    }
    let killed = event
        .owner
        .as_ref()
        .is_some_and(|o| o.pid != event.actor.pid);
    if killed {
        // tcp_abort() (ss -K, SOCK_DESTROY) moves no counter.
        return Reason::Known("TCP_STATE".into(), Confidence::Inferred);
    }
    Reason::None
}
