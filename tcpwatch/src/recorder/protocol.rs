//! What `tcpwatch query` and the daemon say over the unix socket: one JSON
//! line asking, then the answer as JSON Lines: the selected `event` and
//! `finding` records, and `storm`/`aggregate` records of storm mode (the schema
//! of `trace --json`, docs/schema.md), then one `query_end` line, or one
//! `query_error` line instead.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::selection::Selection;

/// Version of this exchange.
pub const PROTOCOL_VERSION: u32 = 1;
/// A request longer than this is refused.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The question.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Records from this long ago until now (milliseconds).
    pub since_ms: u64,
    /// Which records.
    #[serde(default)]
    pub selection: Selection,
}

/// The last line of an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Always `query_end`.
    pub record: String,
    /// Events sent (summaries of a storm count one each).
    pub events: u64,
    /// Findings sent.
    pub findings: u64,
    /// The oldest record the daemon still holds.
    pub held_since: Option<DateTime<Utc>>,
    /// Records the recorder dropped for memory since it started.
    pub dropped: u64,
}

/// An answer that is a refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Always `query_error`.
    pub record: String,
    /// Why.
    pub message: String,
}
