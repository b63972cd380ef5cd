//! Pairing the two ends of one connection: which findings are held or were just
//! printed for a connection, and whether one of its resets still waits for
//! counters. Indexed by [`ConnKey`], so the engine's per-finding checks cost
//! the same with ten findings in flight or ten thousand.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use super::{cause::Cause, history::ConnKey};

/// Printed findings remembered for pairing, at most.
const RECENT: usize = 65_536;

/// The index.
#[derive(Default)]
pub struct Pairing {
    /// Causes of findings held (not yet printed), per connection.
    held: HashMap<ConnKey, Vec<Cause>>,
    /// Causes of findings printed lately, per connection, and their order.
    printed: HashMap<ConnKey, Vec<Cause>>,
    printed_order: VecDeque<(DateTime<Utc>, ConnKey, Cause)>,
    /// Resets waiting for a sample, per connection.
    awaiting: HashMap<ConnKey, u32>,
}

fn remove_one(map: &mut HashMap<ConnKey, Vec<Cause>>, key: ConnKey, cause: Cause) {
    if let Some(causes) = map.get_mut(&key) {
        if let Some(i) = causes.iter().position(|c| *c == cause) {
            causes.swap_remove(i);
        }
        if causes.is_empty() {
            map.remove(&key);
        }
    }
}

impl Pairing {
    /// A finding about `key` is held.
    pub fn hold(&mut self, key: ConnKey, cause: Cause) {
        self.held.entry(key).or_default().push(cause);
    }

    /// A held finding about `key` left the queue (printed or not).
    pub fn unhold(&mut self, key: ConnKey, cause: Cause) {
        remove_one(&mut self.held, key, cause);
    }

    /// A finding about `key` was printed at `at`; printed findings older than
    /// `keep` are forgotten.
    pub fn printed(&mut self, key: ConnKey, cause: Cause, at: DateTime<Utc>, keep: TimeDelta) {
        self.printed.entry(key).or_default().push(cause);
        self.printed_order.push_back((at, key, cause));
        while self
            .printed_order
            .front()
            .is_some_and(|(t, _, _)| *t < at - keep || self.printed_order.len() > RECENT)
        {
            if let Some((_, key, cause)) = self.printed_order.pop_front() {
                remove_one(&mut self.printed, key, cause);
            }
        }
    }

    /// Causes held or printed lately for `key`.
    pub fn partners(&self, key: &ConnKey) -> impl Iterator<Item = Cause> + '_ {
        let held = self.held.get(key).into_iter().flatten();
        let printed = self.printed.get(key).into_iter().flatten();
        held.chain(printed).copied()
    }

    /// A reset on `key` waits for a sample.
    pub fn await_counters(&mut self, key: ConnKey) {
        *self.awaiting.entry(key).or_default() += 1;
    }

    /// A reset on `key` no longer waits.
    pub fn decided(&mut self, key: ConnKey) {
        if let Some(n) = self.awaiting.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.awaiting.remove(&key);
            }
        }
    }

    /// Whether a reset on `key` waits for a sample.
    pub fn awaits(&self, key: &ConnKey) -> bool {
        self.awaiting.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{history::FlowId, testkit::at};

    fn key(local: &str, remote: &str) -> ConnKey {
        FlowId {
            netns: 1,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
        .connection()
    }

    #[test]
    fn both_ends_share_a_key_and_entries_come_and_go() {
        let mut p = Pairing::default();
        let (a, b) = (
            key("10.0.0.1:80", "10.0.0.2:5000"),
            key("10.0.0.2:5000", "10.0.0.1:80"),
        );
        assert_eq!(a, b);
        p.hold(a, Cause::PeerReset);
        assert_eq!(p.partners(&b).collect::<Vec<_>>(), [Cause::PeerReset]);
        p.unhold(b, Cause::PeerReset);
        assert_eq!(p.partners(&a).count(), 0);
        p.printed(a, Cause::NoListener, at(0), TimeDelta::seconds(1));
        p.printed(
            key("10.0.0.3:1", "10.0.0.4:2"),
            Cause::NoListener,
            at(2000),
            TimeDelta::seconds(1),
        );
        assert_eq!(p.partners(&a).count(), 0, "expired");
        p.await_counters(a);
        p.await_counters(a);
        p.decided(b);
        assert!(p.awaits(&a));
        p.decided(a);
        assert!(!p.awaits(&a));
    }
}
