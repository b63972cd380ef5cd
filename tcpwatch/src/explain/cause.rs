//! Cause ids: a public, documented contract (one page each under
//! `docs/causes/<id>.md`). Never rename one; add new ones.

use serde::{Deserialize, Serialize};

/// Why a reset happened or sockets piled up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A connection attempt to a port nobody listens on.
    NoListener,
    /// The application closed a connection with unread received data.
    CloseWithUnreadData,
    /// An abortive close with SO_LINGER {on, 0}.
    LingerZeroAbort,
    /// The server closed an idle keep-alive connection just as the client reused it.
    KeepaliveIdleRace,
    /// The peer kept sending after this host closed a busy connection.
    DataAfterClose,
    /// TIME_WAIT sockets pile up on a port or toward a destination.
    TimeWaitPileup,
    /// The TIME_WAIT table is full: closed connections skip TIME_WAIT.
    TimeWaitOverflow,
    /// A process leaves connections the peer closed in CLOSE_WAIT.
    CloseWaitLeak,
    /// A listener's accept queue is full.
    AcceptQueueOverflow,
    /// A pooled connection to a backend that was replaced.
    StalePooledConnection,
    /// The peer reset the connection.
    PeerReset,
    /// Keep-alive probes went unanswered.
    KeepaliveTimeout,
    /// Too many orphaned sockets or TCP memory pressure.
    OrphanMemoryPressure,
    /// Another process killed the socket (`ss -K`, SOCK_DESTROY).
    SocketKilled,
    /// A listener closed with connections still in its accept queue.
    ListenerClosedWithPending,
    /// The peer reconnected with a 4-tuple this host still has open.
    PeerRestarted,
    /// A segment for a connection this host no longer has.
    ForgottenConnection,
    /// An ACK reached a listener that has no matching request.
    StrayAckToListener,
    /// A close in FIN_WAIT2 with TCP_LINGER2 < 0.
    Linger2Abort,
    /// A connect rejected by PAWS (timestamps).
    PawsReject,
    /// A reset the rules cannot place: the kernel's reason is given.
    OtherReset,
    /// A firewall rule on this host (netfilter REJECT with tcp-reset) refused
    /// the segment.
    FirewallReject,
    /// Retransmissions (or SYNs) went unanswered until the kernel gave up on
    /// the connection: no reset, the owner gets ETIMEDOUT.
    RetransmitTimeout,
}

impl Cause {
    /// Every cause, in documentation order.
    pub const ALL: [Cause; 23] = [
        Self::NoListener,
        Self::CloseWithUnreadData,
        Self::LingerZeroAbort,
        Self::KeepaliveIdleRace,
        Self::DataAfterClose,
        Self::TimeWaitPileup,
        Self::TimeWaitOverflow,
        Self::CloseWaitLeak,
        Self::AcceptQueueOverflow,
        Self::StalePooledConnection,
        Self::PeerReset,
        Self::KeepaliveTimeout,
        Self::OrphanMemoryPressure,
        Self::SocketKilled,
        Self::ListenerClosedWithPending,
        Self::PeerRestarted,
        Self::ForgottenConnection,
        Self::StrayAckToListener,
        Self::Linger2Abort,
        Self::PawsReject,
        Self::FirewallReject,
        Self::RetransmitTimeout,
        Self::OtherReset,
    ];

    /// The id (`no_listener`, ...), as in JSON and docs/causes/<id>.md.
    pub fn id(self) -> &'static str {
        match self {
            Self::NoListener => "no_listener",
            Self::CloseWithUnreadData => "close_with_unread_data",
            Self::LingerZeroAbort => "linger_zero_abort",
            Self::KeepaliveIdleRace => "keepalive_idle_race",
            Self::DataAfterClose => "data_after_close",
            Self::TimeWaitPileup => "time_wait_pileup",
            Self::TimeWaitOverflow => "time_wait_overflow",
            Self::CloseWaitLeak => "close_wait_leak",
            Self::AcceptQueueOverflow => "accept_queue_overflow",
            Self::StalePooledConnection => "stale_pooled_connection",
            Self::PeerReset => "peer_reset",
            Self::KeepaliveTimeout => "keepalive_timeout",
            Self::OrphanMemoryPressure => "orphan_memory_pressure",
            Self::SocketKilled => "socket_killed",
            Self::ListenerClosedWithPending => "listener_closed_with_pending",
            Self::PeerRestarted => "peer_restarted",
            Self::ForgottenConnection => "forgotten_connection",
            Self::StrayAckToListener => "stray_ack_to_listener",
            Self::Linger2Abort => "linger2_abort",
            Self::PawsReject => "paws_reject",
            Self::OtherReset => "other_reset",
            Self::FirewallReject => "firewall_reject",
            Self::RetransmitTimeout => "retransmit_timeout",
        }
    }

    /// One-line title.
    pub fn title(self) -> &'static str {
        match self {
            Self::NoListener => "Connection to a port nobody listens on",
            Self::CloseWithUnreadData => "Connection closed with unread data",
            Self::LingerZeroAbort => "Abortive close (SO_LINGER 0)",
            Self::KeepaliveIdleRace => "Keep-alive idle-timeout race",
            Self::DataAfterClose => "Peer sent data after this host closed",
            Self::TimeWaitPileup => "TIME_WAIT pile-up",
            Self::TimeWaitOverflow => "TIME_WAIT table overflow",
            Self::CloseWaitLeak => "CLOSE_WAIT leak: connections the peer closed are never closed",
            Self::AcceptQueueOverflow => "Accept queue overflow",
            Self::StalePooledConnection => "Stale pooled connection to a replaced backend",
            Self::PeerReset => "Connection reset by the peer",
            Self::KeepaliveTimeout => "Keep-alive timeout: the peer stopped answering",
            Self::OrphanMemoryPressure => "Reset under orphan or memory pressure",
            Self::SocketKilled => "Socket killed by another process",
            Self::ListenerClosedWithPending => {
                "Listener closed with connections in its accept queue"
            }
            Self::PeerRestarted => "Peer restarted and reused the connection's ports",
            Self::ForgottenConnection => "Segment for a connection this host no longer has",
            Self::StrayAckToListener => "ACK to a listener with no matching connection request",
            Self::Linger2Abort => "Abort in FIN_WAIT2 (TCP_LINGER2 < 0)",
            Self::PawsReject => "Connection rejected by timestamp checks (PAWS)",
            Self::OtherReset => "Reset",
            Self::FirewallReject => {
                "Refused by a firewall rule on this host (REJECT with tcp-reset)"
            }
            Self::RetransmitTimeout => "Timed out: the peer stopped acknowledging",
        }
    }

    /// Parses an id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_every_cause_has_a_doc_page() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/causes");
        for cause in Cause::ALL {
            assert_eq!(Cause::from_id(cause.id()), Some(cause));
            let json = serde_json::to_string(&cause).unwrap();
            assert_eq!(json, format!("\"{}\"", cause.id()));
            let page = docs.join(format!("{}.md", cause.id()));
            assert!(page.is_file(), "missing {}", page.display());
        }
    }
}
