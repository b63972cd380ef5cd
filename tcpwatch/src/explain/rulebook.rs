//! Every rule, in the order resets are offered to them: the most specific
//! explanation first, the generic fallbacks last.

use super::{rule::Rule, rules};

/// All rules, in order.
pub fn all() -> Vec<Box<dyn Rule>> {
    vec![
        // Not TCP's reset at all: before any rule reads TCP state into it.
        Box::new(rules::firewall_reject::FirewallReject),
        Box::new(rules::stale_pooled_connection::StalePooledConnection::default()),
        Box::new(rules::listener_closed_with_pending::ListenerClosedWithPending),
        Box::new(rules::socket_killed::SocketKilled),
        Box::new(rules::linger_zero_abort::LingerZeroAbort),
        Box::new(rules::close_with_unread_data::CloseWithUnreadData),
        Box::new(rules::linger2_abort::Linger2Abort),
        Box::new(rules::orphan_memory_pressure::OrphanMemoryPressure),
        Box::new(rules::keepalive_timeout::KeepaliveTimeout),
        // Closes without a reset only.
        Box::new(rules::retransmit_timeout::RetransmitTimeout),
        Box::new(rules::accept_queue_overflow::AcceptQueueOverflow::default()),
        Box::new(rules::stray_ack_to_listener::StrayAckToListener),
        Box::new(rules::peer_restarted::PeerRestarted),
        Box::new(rules::paws_reject::PawsReject),
        Box::new(rules::keepalive_idle_race::KeepaliveIdleRace),
        Box::new(rules::data_after_close::DataAfterClose),
        Box::new(rules::time_wait_overflow::TimeWaitOverflow::default()),
        Box::new(rules::no_listener::NoListener),
        Box::new(rules::forgotten_connection::ForgottenConnection),
        Box::new(rules::peer_reset::PeerReset),
        Box::new(rules::other_reset::OtherReset),
        // Samples only.
        Box::new(rules::time_wait_pileup::TimeWaitPileup::default()),
        Box::new(rules::close_wait_leak::CloseWaitLeak),
    ]
}
