//! What recent samples said about each network namespace: the latest sample,
//! counter increases over the last minute, TIME_WAIT counts over time.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};

use crate::context::sample::SampleRecord;

/// Samples' counter deltas kept per namespace, and for how long.
const WINDOW: TimeDelta = TimeDelta::seconds(120);
/// Namespaces remembered.
const MAX: usize = 256;

/// One namespace.
#[derive(Debug)]
pub struct Namespace {
    /// The latest sample.
    pub last: SampleRecord,
    /// Counter increases per sample, oldest first.
    pub deltas: VecDeque<(DateTime<Utc>, std::collections::BTreeMap<String, u64>)>,
    /// Total TIME_WAIT count per sample (sockstat), oldest first.
    pub time_wait: VecDeque<(DateTime<Utc>, u64)>,
}

/// All namespaces.
#[derive(Debug, Default)]
pub struct Namespaces {
    map: HashMap<u32, Namespace>,
}

impl Namespaces {
    /// Records a sample.
    pub fn record(&mut self, sample: &SampleRecord) {
        if !self.map.contains_key(&sample.netns) && self.map.len() >= MAX {
            // Forget the namespace sampled longest ago.
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, ns)| ns.last.time)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        let ns = self.map.entry(sample.netns).or_insert_with(|| Namespace {
            last: sample.clone(),
            deltas: VecDeque::new(),
            time_wait: VecDeque::new(),
        });
        ns.last = sample.clone();
        ns.deltas.push_back((sample.time, sample.counters.clone()));
        ns.time_wait.push_back((sample.time, sample.sockstat.tw));
        let oldest = sample.time - WINDOW;
        while ns.deltas.front().is_some_and(|(t, _)| *t < oldest) {
            ns.deltas.pop_front();
        }
        while ns.time_wait.front().is_some_and(|(t, _)| *t < oldest) {
            ns.time_wait.pop_front();
        }
    }

    /// The namespace, if sampled.
    pub fn get(&self, netns: u32) -> Option<&Namespace> {
        self.map.get(&netns)
    }

    /// Increase of `counter` in samples taken in `(from, to]`.
    pub fn increase(
        &self,
        netns: u32,
        counter: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> u64 {
        self.get(netns).map_or(0, |ns| {
            ns.deltas
                .iter()
                .filter(|(t, _)| *t > from && *t <= to)
                .filter_map(|(_, d)| d.get(counter))
                .sum()
        })
    }

    /// A numeric sysctl from the latest sample.
    pub fn sysctl(&self, netns: u32, name: &str) -> Option<u64> {
        self.get(netns)?
            .last
            .sysctls
            .get(name)?
            .split(' ')
            .next()?
            .parse()
            .ok()
    }
}
