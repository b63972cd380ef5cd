//! The programs' per-CPU counters (events emitted and lost, read errors,
//! filtered), summed over CPUs, and the runs the kernel itself skipped.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    Ebpf,
    maps::{MapError, PerCpuArray},
};
use tcpwatch_common::counters::Counter;

/// Totals of every kernel-side counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    values: [u64; Counter::COUNT as usize],
    missed: u64,
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
        counters.missed = ebpf
            .programs()
            .filter_map(|(_, program)| program.fd().ok())
            .filter_map(|fd| {
                let path = format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd());
                recursion_misses(&std::fs::read_to_string(path).ok()?)
            })
            .sum();
        Ok(counters)
    }

    /// Hook runs the kernel skipped because a BPF program (of any tool) was
    /// already running on that CPU: for kprobes and tracepoints the kernel runs
    /// one program per CPU at a time (`bpf_prog_active`), so a softirq
    /// interrupting one loses its own events. From each program's
    /// `recursion_misses` (5.12+; 0 before).
    pub fn missed(&self) -> u64 {
        self.missed
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
            + self.get(Counter::SummarisedDrop)
            + self.get(Counter::SummarisedAppError)
    }

    /// Events lost because the ring buffer was full (all kinds).
    pub fn lost(&self) -> u64 {
        self.get(Counter::LostState)
            + self.get(Counter::LostResetSent)
            + self.get(Counter::LostResetReceived)
            + self.get(Counter::LostDrop)
            + self.get(Counter::LostAppError)
    }
}

/// The `recursion_misses:` value of a BPF program's fdinfo.
fn recursion_misses(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("recursion_misses:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_recursion_misses_from_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t5\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t22\nverified_insns:\t1893\n";
        assert_eq!(recursion_misses(fdinfo), Some(22));
        assert_eq!(recursion_misses("prog_id:\t5\n"), None);
    }
}
