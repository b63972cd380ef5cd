//! The interface every rule implements, and what rules may read.

use chrono::{DateTime, Utc};

use super::{
    finding::{Confidence, FindingRecord},
    history::{FlowId, History},
    namespaces::Namespaces,
    thresholds::Thresholds,
};
use crate::{context::sample::SampleRecord, events::model::EventRecord};

/// What rules may read.
pub struct Ctx<'a> {
    /// Flows, listeners, completed connections, socket-less resets.
    pub history: &'a History,
    /// Latest samples per namespace.
    pub namespaces: &'a Namespaces,
    /// Thresholds.
    pub thresholds: &'a Thresholds,
}

/// A reset (sent or received) offered to the rules.
pub struct Reset<'a> {
    /// The event.
    pub event: &'a EventRecord,
    /// The local view of its flow.
    pub id: FlowId,
    /// For resets sent: the kernel's reason, or one inferred (see `confidence`).
    pub reason: Option<String>,
    /// Whether `reason` came from the kernel.
    pub confidence: Confidence,
}

impl Reset<'_> {
    /// A draft finding about this reset's connection: flow, owner and namespace
    /// from the event; aggregated under `key`.
    pub fn draft(
        &self,
        cause: super::cause::Cause,
        confidence: Confidence,
        summary: String,
        fix: String,
        key: String,
    ) -> Draft {
        let mut finding = FindingRecord::new(
            cause,
            confidence,
            self.event.time,
            self.event.flow.netns,
            summary,
            fix,
        );
        finding.flow = Some(self.event.flow.clone());
        finding.owner.clone_from(&self.event.owner);
        if let Some(reason) = &self.reason {
            let text = match self.confidence {
                Confidence::Exact => format!("the kernel's reset reason: {reason}"),
                Confidence::Inferred => {
                    format!("reset reason {reason}, inferred (this kernel does not report one)")
                }
            };
            finding.add("reason", reason.clone(), text);
        }
        Draft {
            finding,
            key,
            level: None,
            flow: Some(self.id),
            summary: false,
        }
    }

    /// Whether the reason is `name`.
    pub fn reason_is(&self, name: &str) -> bool {
        self.reason.as_deref() == Some(name)
    }

    /// The local socket's state at the reset.
    pub fn state(&self) -> Option<&str> {
        self.event.state.as_deref()
    }

    /// When.
    pub fn time(&self) -> DateTime<Utc> {
        self.event.time
    }

    /// Whether the incoming segment had TCP flag `flag`.
    pub fn segment_has(&self, flag: &str) -> bool {
        self.event
            .segment
            .as_ref()
            .is_some_and(|s| s.flags.iter().any(|f| f == flag))
    }
}

/// A finding a rule proposes, before aggregation.
pub struct Draft {
    /// The finding.
    pub finding: FindingRecord,
    /// Findings with the same key are one finding repeating.
    pub key: String,
    /// For pile-ups: its size. A repeat is printed when it has grown by the
    /// growth factor; otherwise repeats within the repeat window are counted.
    pub level: Option<u64>,
    /// The flow the finding is about (for matching the peer's side).
    pub flow: Option<FlowId>,
    /// It explains events the kernel summarised during a storm.
    pub summary: bool,
}

/// One cause's logic.
pub trait Rule {
    /// Explains a reset, if this rule's cause is it. The first rule (in the
    /// engine's order) that answers wins.
    fn reset(&mut self, _ctx: &Ctx, _reset: &Reset) -> Option<Draft> {
        None
    }

    /// Explains a connection the kernel closed with an error and without a
    /// reset (a timeout: `reset.event` is the state event to CLOSE, its
    /// `error` the socket's). The first rule that answers wins.
    fn closed(&mut self, _ctx: &Ctx, _close: &Reset) -> Option<Draft> {
        None
    }

    /// Looks at a namespace sample (pile-ups).
    fn sample(&mut self, _ctx: &Ctx, _sample: &SampleRecord) -> Vec<Draft> {
        Vec::new()
    }
}
