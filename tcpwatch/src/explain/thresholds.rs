//! Tunable thresholds of the rules, with defaults that suit most hosts.

use std::time::Duration;

/// Thresholds and windows.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// How long a finding waits for related events (the peer's side) before it
    /// is printed.
    pub settle: Duration,
    /// Repeats of a finding within this window are counted, not printed.
    pub repeat_window: Duration,
    /// A close after at least this much idle time is an idle (keep-alive) close.
    pub idle_close: Duration,
    /// TIME_WAIT sockets on one port or toward one destination before a pile-up
    /// can be reported.
    pub time_wait_min: u32,
    /// ...and reported whatever the close pattern from this many.
    pub time_wait_high: u32,
    /// Share of connections closed first by this host that marks it as the cause
    /// of its TIME_WAIT sockets.
    pub local_close_share: f64,
    /// A CLOSE_WAIT socket idle this long counts as leaked.
    pub close_wait_age: Duration,
    /// Leaked CLOSE_WAIT sockets per process before a finding.
    pub close_wait_count: u32,
    /// A pile-up is reported again when it grows by this factor.
    pub growth: f64,
    /// A pooled connection at least this old that gets reset may be stale.
    pub stale_min_age: Duration,
    /// Resets from one destination within this window are one backend event.
    pub stale_window: Duration,
    /// Flow histories kept.
    pub max_flows: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            settle: Duration::from_millis(300),
            repeat_window: Duration::from_secs(10),
            idle_close: Duration::from_millis(500),
            time_wait_min: 200,
            time_wait_high: 5_000,
            local_close_share: 0.8,
            close_wait_age: Duration::from_secs(10),
            close_wait_count: 5,
            growth: 1.5,
            stale_min_age: Duration::from_secs(1),
            stale_window: Duration::from_secs(30),
            max_flows: 65_536,
        }
    }
}
