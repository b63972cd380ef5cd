//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.

use chrono::{DateTime, Utc};
use nix::time::{ClockId, clock_gettime};

/// Offset between CLOCK_REALTIME and CLOCK_MONOTONIC, sampled once at start-up.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Samples the clocks now.
    pub fn sample() -> Self {
        let ns = |id| {
            clock_gettime(id)
                .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
                .unwrap_or(0)
        };
        let mono = ns(ClockId::CLOCK_MONOTONIC);
        let real = ns(ClockId::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    /// A clock with a fixed offset (tests).
    #[cfg(test)]
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Monotonic nanoseconds now (the kernel's `bpf_ktime_get_ns` clock).
    pub fn monotonic_now_ns() -> u64 {
        clock_gettime(ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0)
    }

    /// Wall-clock time of a kernel timestamp.
    pub fn wall(&self, monotonic_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(monotonic_ns) + self.offset_ns;
        let ns = i64::try_from(ns).unwrap_or(i64::MAX);
        DateTime::from_timestamp_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_with_offset() {
        let clock = Clock::with_offset(1_700_000_000_000_000_000);
        let t = clock.wall(5_000_000_123);
        assert_eq!(t.to_rfc3339(), "2023-11-14T22:13:25.000000123+00:00");
    }

    #[test]
    fn sampled_clock_is_close_to_now() {
        let clock = Clock::sample();
        let now = clock.wall(Clock::monotonic_now_ns());
        let diff = (Utc::now() - now).num_milliseconds().abs();
        assert!(diff < 1000, "clock off by {diff} ms");
    }
}
