//! The segments the kernel dropped (`--kind drop`), remembered briefly and
//! bounded: the last few per flow, so a reset's finding can list the drops
//! that preceded it, and the recent ones at each listening port, so an
//! accept-queue finding can say the kernel itself named the overflow
//! (`TCP_LISTEN_OVERFLOW`, 6.15+).

use std::{collections::VecDeque, num::NonZeroUsize};

use chrono::{DateTime, TimeDelta, Utc};
use lru::LruCache;

use super::history::FlowId;
use crate::events::model::EventRecord;

/// Flows whose drops are kept.
const FLOWS: usize = 4096;
/// Drops kept per flow.
const PER_FLOW: usize = 4;
/// Listening ports whose drops are kept.
const LISTENERS: usize = 1024;
/// Drops kept per listening port.
const PER_LISTENER: usize = 256;
/// A drop older than this no longer explains anything.
const KEEP_FOR: TimeDelta = TimeDelta::seconds(120);

/// One dropped segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// When.
    pub time: DateTime<Utc>,
    /// The kernel's reason (`None` before 5.17).
    pub reason: Option<String>,
    /// TCP flags of the segment.
    pub flags: Vec<String>,
}

/// The drop log.
pub struct Drops {
    flows: LruCache<FlowId, VecDeque<Dropped>>,
    listeners: LruCache<(u32, u16), VecDeque<Dropped>>,
}

impl Default for Drops {
    fn default() -> Self {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        Self {
            flows: LruCache::new(cap(FLOWS)),
            listeners: LruCache::new(cap(LISTENERS)),
        }
    }
}

impl Drops {
    /// Records a `drop` event on flow `id`.
    pub fn record(&mut self, event: &EventRecord, id: FlowId) {
        let seen = Dropped {
            time: event.time,
            reason: event.reason.clone(),
            flags: event
                .segment
                .as_ref()
                .map(|s| s.flags.clone())
                .unwrap_or_default(),
        };
        if event.state.as_deref() == Some("LISTEN") {
            let at = self
                .listeners
                .get_or_insert_mut((id.netns, id.local.port()), VecDeque::new);
            push(at, seen.clone(), PER_LISTENER);
        }
        let at = self.flows.get_or_insert_mut(id, VecDeque::new);
        push(at, seen, PER_FLOW);
    }

    /// The drops on the connection of `id` (either end's view, same
    /// namespace) in the [`KEEP_FOR`] before `until`, oldest first.
    pub fn before(&self, id: &FlowId, until: DateTime<Utc>) -> Vec<&Dropped> {
        let mut found: Vec<&Dropped> = [*id, id.reversed_in(id.netns)]
            .iter()
            .filter_map(|key| self.flows.peek(key))
            .flatten()
            .filter(|d| d.time <= until && until - d.time <= KEEP_FOR)
            .collect();
        found.sort_by_key(|d| d.time);
        found
    }

    /// The drops at the listener on (netns, port) in `(from, until]`.
    pub fn at_listener(
        &self,
        netns: u32,
        port: u16,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Vec<&Dropped> {
        self.listeners
            .peek(&(netns, port))
            .into_iter()
            .flatten()
            .filter(|d| d.time > from && d.time <= until)
            .collect()
    }
}

fn push(at: &mut VecDeque<Dropped>, seen: Dropped, max: usize) {
    if at.len() >= max {
        at.pop_front();
    }
    at.push_back(seen);
}

/// "2× TCP_LISTEN_OVERFLOW, 1× NO_SOCKET": the reasons of `drops`, most
/// frequent first (`reason-unknown` where the kernel gives none).
pub fn reasons_text(drops: &[&Dropped]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for d in drops {
        let name = d.reason.clone().unwrap_or_else(|| "reason-unknown".into());
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
    counts
        .iter()
        .map(|(n, c)| format!("{c}× {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::testkit::*;

    #[test]
    fn keeps_the_last_few_per_flow_and_both_views() {
        let mut drops = Drops::default();
        for ms in 0..10 {
            let e = dropped(
                ms,
                "127.0.0.1:80",
                "127.0.0.1:5000",
                "TCP_LISTEN_OVERFLOW",
                Some("LISTEN"),
            );
            drops.record(&e, crate::explain::history::FlowId::of(&e).unwrap());
        }
        let e = dropped(20, "127.0.0.1:80", "127.0.0.1:5000", "NO_SOCKET", None);
        let id = crate::explain::history::FlowId::of(&e).unwrap();
        drops.record(&e, id);
        let seen = drops.before(&id.reversed_in(id.netns), e.time);
        assert_eq!(seen.len(), PER_FLOW, "bounded per flow");
        assert_eq!(reasons_text(&seen), "3× TCP_LISTEN_OVERFLOW, 1× NO_SOCKET");
        let at = drops.at_listener(id.netns, 80, e.time - TimeDelta::seconds(1), e.time);
        assert_eq!(at.len(), 10, "listener drops counted by port");
        assert!(
            drops
                .before(&id, e.time + TimeDelta::seconds(121))
                .is_empty()
        );
    }
}
