//! Per-CPU counters the programs keep in the `COUNTERS` array.
//!
//! Every event the kernel side could not deliver is counted here, per CPU; user
//! space sums the CPUs and reports the totals (exit summary, `--json` stats).

/// Index into the per-CPU `COUNTERS` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// State events written to the ring buffer.
    EmittedState = 0,
    /// Reset-sent events written to the ring buffer.
    EmittedResetSent = 1,
    /// Reset-received events written to the ring buffer.
    EmittedResetReceived = 2,
    /// State events lost: ring buffer full when reserving.
    LostState = 3,
    /// Reset-sent events lost: ring buffer full.
    LostResetSent = 4,
    /// Reset-received events lost: ring buffer full.
    LostResetReceived = 5,
    /// Kernel memory reads that failed (event dropped).
    ReadErrors = 6,
    /// Owner-map updates that failed (attribution may be missing later).
    OwnerUpdateErrors = 7,
    /// Events dropped by the in-kernel filters (not a loss).
    Filtered = 8,
    /// Events on a full socket whose owner was not known (socket opened before
    /// start and missed by the census, or its entry evicted from a full owner map).
    Unattributed = 9,
    /// State events counted in the kernel during a storm instead of written.
    SummarisedState = 10,
    /// Reset-sent events counted in the kernel during a storm.
    SummarisedResetSent = 11,
    /// Reset-received events counted in the kernel during a storm.
    SummarisedResetReceived = 12,
    /// Storm-mode events whose (kind, reason, owner, port) found no room in the
    /// full aggregate map: counted only here.
    SummaryOverflow = 13,
    /// Times storm mode started.
    Storms = 14,
    /// Resets whose kernel stack could not be stored (`--kstack`: a different
    /// stack already holds its hash bucket in the full `KSTACKS` map).
    KstackLost = 15,
    /// Drop events (`skb:kfree_skb`, TCP segments) written to the ring buffer.
    EmittedDrop = 16,
    /// Drop events lost: ring buffer full.
    LostDrop = 17,
    /// Drop events counted in the kernel during a storm.
    SummarisedDrop = 18,
    /// `listen()` backlogs that could not be recorded (map full, socket not
    /// found through the descriptor).
    BacklogUpdateErrors = 19,
    /// Application-error events (failed socket calls) written to the ring buffer.
    EmittedAppError = 20,
    /// Application-error events lost: ring buffer full.
    LostAppError = 21,
    /// Application-error events counted in the kernel during a storm.
    SummarisedAppError = 22,
}

impl Counter {
    /// Number of counters (size of the array).
    pub const COUNT: u32 = 23;

    /// All counters, in index order.
    pub const ALL: [Counter; 23] = [
        Self::EmittedState,
        Self::EmittedResetSent,
        Self::EmittedResetReceived,
        Self::LostState,
        Self::LostResetSent,
        Self::LostResetReceived,
        Self::ReadErrors,
        Self::OwnerUpdateErrors,
        Self::Filtered,
        Self::Unattributed,
        Self::SummarisedState,
        Self::SummarisedResetSent,
        Self::SummarisedResetReceived,
        Self::SummaryOverflow,
        Self::Storms,
        Self::KstackLost,
        Self::EmittedDrop,
        Self::LostDrop,
        Self::SummarisedDrop,
        Self::BacklogUpdateErrors,
        Self::EmittedAppError,
        Self::LostAppError,
        Self::SummarisedAppError,
    ];

    /// Stable name used in summaries and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::EmittedState => "emitted_state",
            Self::EmittedResetSent => "emitted_reset_sent",
            Self::EmittedResetReceived => "emitted_reset_received",
            Self::LostState => "lost_state",
            Self::LostResetSent => "lost_reset_sent",
            Self::LostResetReceived => "lost_reset_received",
            Self::ReadErrors => "kernel_read_errors",
            Self::OwnerUpdateErrors => "owner_update_errors",
            Self::Filtered => "filtered",
            Self::Unattributed => "unattributed",
            Self::SummarisedState => "summarised_state",
            Self::SummarisedResetSent => "summarised_reset_sent",
            Self::SummarisedResetReceived => "summarised_reset_received",
            Self::SummaryOverflow => "summary_overflow",
            Self::Storms => "storms",
            Self::KstackLost => "kstack_lost",
            Self::EmittedDrop => "emitted_drop",
            Self::LostDrop => "lost_drop",
            Self::SummarisedDrop => "summarised_drop",
            Self::BacklogUpdateErrors => "backlog_update_errors",
            Self::EmittedAppError => "emitted_app_error",
            Self::LostAppError => "lost_app_error",
            Self::SummarisedAppError => "summarised_app_error",
        }
    }
}
