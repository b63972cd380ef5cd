//! The `finding` record: one explained reset or pile-up, with its evidence and
//! a fix, in the same stream as events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cause::Cause;
use crate::events::model::{Flow, Frame, Process, SCHEMA_VERSION};

/// Record type tag of a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingTag {
    /// Always `finding`.
    Finding,
}

/// How sure the finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Inferred from state, history and counters.
    Inferred,
    /// The kernel said so (its reset reason, or counters that only move for this).
    Exact,
}

/// One fact behind a finding: a machine key, its value, and the sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Stable key, e.g. `idle_before_close_ms`.
    pub fact: String,
    /// Its value (number or text).
    pub value: serde_json::Value,
    /// The fact in words, with the number.
    pub text: String,
}

/// A finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Schema version.
    pub schema_version: u32,
    /// Always `finding`.
    pub record: FindingTag,
    /// Cause id.
    pub cause: Cause,
    /// `exact` or `inferred`.
    pub confidence: Confidence,
    /// One-line title.
    pub title: String,
    /// What happened, in one or two sentences with the numbers.
    pub summary: String,
    /// When the (last) evidence was seen.
    pub time: DateTime<Utc>,
    /// Network namespace inode.
    pub netns: u32,
    /// The connection, for findings about one (as in events).
    pub flow: Option<Flow>,
    /// The local port, for pile-ups on a port.
    pub port: Option<u16>,
    /// The process the finding is about.
    pub owner: Option<Process>,
    /// The process at the other end, when it is on this host.
    pub peer_owner: Option<Process>,
    /// The facts, with numbers.
    pub evidence: Vec<Evidence>,
    /// What to do about it.
    pub fix: String,
    /// Occurrences this finding stands for (repeats are aggregated).
    pub count: u64,
    /// With `--kstack`: the kernel stack of the reset this finding explains,
    /// innermost frame first. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kstack: Option<Vec<Frame>>,
}

impl FindingRecord {
    /// A finding of `cause` with its summary and fix; add the rest with the
    /// builder methods.
    pub fn new(
        cause: Cause,
        confidence: Confidence,
        time: DateTime<Utc>,
        netns: u32,
        summary: String,
        fix: String,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            record: FindingTag::Finding,
            cause,
            confidence,
            title: cause.title().to_owned(),
            summary,
            time,
            netns,
            flow: None,
            port: None,
            owner: None,
            peer_owner: None,
            evidence: Vec::new(),
            fix,
            count: 1,
            kstack: None,
        }
    }

    /// Adds a fact.
    pub fn add(&mut self, fact: &str, value: impl Into<serde_json::Value>, text: String) {
        self.evidence.push(Evidence {
            fact: fact.to_owned(),
            value: value.into(),
            text,
        });
    }

    /// The value of fact `fact`, if present.
    #[cfg(test)]
    pub fn value(&self, fact: &str) -> Option<&serde_json::Value> {
        self.evidence
            .iter()
            .find(|e| e.fact == fact)
            .map(|e| &e.value)
    }
}
