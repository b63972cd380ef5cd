//! The programs' per-CPU counters (events emitted and lost, read errors,
//! filtered), summed over CPUs.

use aya::{
    Ebpf,
    maps::{MapError, PerCpuArray},
};
use tcpwatch_common::counters::Counter;

/// Totals of every kernel-side counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    values: [u64; Counter::COUNT as usize],
}

impl KernelCounters {
    /// Reads and sums the `COUNTERS` map.
    pub fn read(ebpf: &Ebpf) -> Result<Self, MapError> {
        let map = ebpf.map("COUNTERS").ok_or(MapError::InvalidName {
            name: "COUNTERS".into(),
        })?;
        let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        let mut counters = Self::default();
        for counter in Counter::ALL {
            let per_cpu = array.get(&(counter as u32), 0)?;
            counters.values[counter as usize] = per_cpu.iter().sum();
        }
        Ok(counters)
    }

    /// One counter's total.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values[counter as usize]
    }

    /// Events counted in the kernel during storms instead of sent (all kinds).
    pub fn summarised(&self) -> u64 {
        self.get(Counter::SummarisedState)
            + self.get(Counter::SummarisedResetSent)
            + self.get(Counter::SummarisedResetReceived)
    }

    /// Events lost because the ring buffer was full (all kinds).
    pub fn lost(&self) -> u64 {
        self.get(Counter::LostState)
            + self.get(Counter::LostResetSent)
            + self.get(Counter::LostResetReceived)
    }
}
