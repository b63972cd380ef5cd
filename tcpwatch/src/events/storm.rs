//! Storm mode, user-space side (see `tcpwatch_common::storm`): notices when
//! the programs started summarising, turns the kernel's counts into
//! `aggregate` records ("N events summarised") once a second, and ends storm
//! mode when the rate has fallen below what per-event output can carry.
//!
//! The counts are never reset while a storm lasts: each poll reports what was
//! added since the previous one (so no increment can be lost between a read and
//! a delete), and the map is emptied only a poll after the storm ended, when no
//! program can still be adding to it.

use std::{collections::HashMap, time::Duration};

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError, PerCpuHashMap},
};
use tcpwatch_common::storm::{AggregateKey, AggregateValue};

use super::{
    clock::Clock,
    convert::Converter,
    model::{AggregateRecord, SCHEMA_VERSION, StormPhase, StormRecord, StormTag},
};

/// Storm mode lasts at least this long once started.
const MIN_STORM: Duration = Duration::from_secs(1);

/// What a poll produced, in order.
pub enum StormOutput {
    /// Storm mode started or ended.
    Storm(StormRecord),
    /// Events summarised since the previous poll.
    Aggregate(Box<AggregateRecord>),
}

/// The storm-mode maps and what was already reported.
pub struct Storm {
    state: Array<MapData, u64>,
    aggregates: PerCpuHashMap<MapData, AggregateKey, AggregateValue>,
    /// Count and latest time already reported, per key.
    reported: HashMap<AggregateKey, (u64, u64)>,
    /// The current storm's start (kernel ns), if one is on.
    since: Option<u64>,
    /// Events summarised in the current storm.
    summarised: u64,
    /// A storm ended at the previous poll: empty the map at this one.
    ended: bool,
    /// Below this many summarised events per second, a storm ends.
    exit_rate: u64,
    clock: Clock,
    /// Storms seen.
    pub storms: u64,
    /// Events summarised over all storms.
    pub total_summarised: u64,
}

/// The sum of a key's per-CPU values: counts added, the earliest first, the
/// latest last (and its example flow), the owner any CPU recorded.
fn merge(values: &[AggregateValue]) -> AggregateValue {
    let mut total = AggregateValue::default();
    for v in values.iter().filter(|v| v.count > 0) {
        total.count += v.count;
        if total.first_ns == 0 || v.first_ns < total.first_ns {
            total.first_ns = v.first_ns;
        }
        if v.last_ns >= total.last_ns {
            total.last_ns = v.last_ns;
            total.example = v.example;
        }
        if total.owner.task.pid == 0 {
            total.owner = v.owner;
        }
    }
    total
}

impl Storm {
    /// Takes the `STORM` and `AGGREGATES` maps out of `ebpf`.
    pub fn new(ebpf: &mut Ebpf, exit_rate: u64, clock: Clock) -> Result<Self, MapError> {
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name).ok_or(MapError::InvalidName {
                name: name.to_owned(),
            })
        };
        let state = Array::try_from(take(ebpf, "STORM")?)?;
        let aggregates = PerCpuHashMap::try_from(take(ebpf, "AGGREGATES")?)?;
        Ok(Self {
            state,
            aggregates,
            reported: HashMap::new(),
            since: None,
            summarised: 0,
            ended: false,
            exit_rate,
            clock,
            storms: 0,
            total_summarised: 0,
        })
    }

    /// Reports what the kernel summarised since the previous poll, `interval`
    /// ago, and ends a storm whose rate fell below the exit rate (always, with
    /// `finish`).
    pub fn poll(
        &mut self,
        converter: &Converter,
        interval: Duration,
        finish: bool,
    ) -> Result<Vec<StormOutput>, MapError> {
        let mut out = Vec::new();
        let since = self.state.get(&0, 0)?;
        if since != 0 && self.since != Some(since) {
            self.since = Some(since);
            self.storms += 1;
            self.summarised = 0;
            self.ended = false;
            out.push(self.record(StormPhase::Started, since, since));
        }
        let added = self.report(converter, &mut out)?;
        self.summarised += added;
        self.total_summarised += added;
        let now = Clock::monotonic_now_ns();
        if let Some(start) = self.since {
            let lasted = Duration::from_nanos(now.saturating_sub(start));
            let rate = added as f64 / interval.as_secs_f64().max(0.001);
            if finish || (lasted >= MIN_STORM && rate < self.exit_rate as f64) {
                self.state.set(0, 0, 0)?;
                out.push(self.record(StormPhase::Ended, now, start));
                self.since = None;
                self.ended = true;
                if finish {
                    self.report(converter, &mut out)?;
                }
            }
        } else if self.ended {
            // A poll after the end: no program is adding any more.
            self.report(converter, &mut out)?;
            let keys: Vec<AggregateKey> = self.aggregates.keys().filter_map(Result::ok).collect();
            for key in keys {
                let _ = self.aggregates.remove(&key);
            }
            self.reported.clear();
            self.ended = false;
        }
        Ok(out)
    }

    /// Appends an `aggregate` record per key that grew; returns the growth.
    fn report(
        &mut self,
        converter: &Converter,
        out: &mut Vec<StormOutput>,
    ) -> Result<u64, MapError> {
        let mut added = 0;
        for entry in self.aggregates.iter() {
            let (key, values) = entry?;
            let mut value = merge(&values[..]);
            let (before, until) = self
                .reported
                .insert(key, (value.count, value.last_ns))
                .unwrap_or((0, 0));
            let new = value.count.saturating_sub(before);
            if new > 0 {
                added += new;
                // This record covers what came after the previous one.
                value.first_ns = value.first_ns.max(until);
                out.push(StormOutput::Aggregate(Box::new(
                    converter.aggregate(&key, &value, new),
                )));
            }
        }
        Ok(added)
    }

    fn record(&self, phase: StormPhase, at_ns: u64, since_ns: u64) -> StormOutput {
        StormOutput::Storm(StormRecord {
            schema_version: SCHEMA_VERSION,
            record: StormTag::Storm,
            time: self.clock.wall(at_ns),
            phase,
            since: self.clock.wall(since_ns),
            summarised: self.summarised,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_counts_and_keeps_the_span() {
        let mut a = AggregateValue {
            count: 3,
            first_ns: 50,
            last_ns: 90,
            ..Default::default()
        };
        a.owner.task.pid = 7;
        let b = AggregateValue {
            count: 2,
            first_ns: 40,
            last_ns: 120,
            ..Default::default()
        };
        let idle = AggregateValue::default();
        let m = merge(&[a, idle, b]);
        assert_eq!(
            (m.count, m.first_ns, m.last_ns, m.owner.task.pid),
            (5, 40, 120, 7)
        );
    }
}
