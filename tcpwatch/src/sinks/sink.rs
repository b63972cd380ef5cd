//! What every output of the pipeline implements: the terminal or JSON Lines
//! stream of `trace`, and the daemon's sinks (metrics, journald, file, flight
//! recorder). The session hands each sink the records of one batch, then
//! flushes it.

use std::io;

use crate::{
    context::sample::SampleRecord,
    events::{
        decode::DecodeStats,
        model::{AggregateRecord, EventRecord, StormRecord},
    },
    explain::finding::FindingRecord,
};

/// The pipeline's own counters, handed to the sinks after every batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Ring-buffer records that did not decode, by cause.
    pub decode: DecodeStats,
    /// Connection histories the explanation engine evicted (table full).
    pub evicted_flows: u64,
}

/// A destination for events, findings and samples.
pub trait Sink {
    /// Takes one event.
    fn event(&mut self, event: &EventRecord) -> io::Result<()>;
    /// Takes one finding.
    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()>;
    /// Takes one namespace sample.
    fn sample(&mut self, sample: &SampleRecord) -> io::Result<()>;
    /// Takes a storm-mode start or end.
    fn storm(&mut self, _storm: &StormRecord) -> io::Result<()> {
        Ok(())
    }
    /// Takes events the kernel summarised during a storm ("N events").
    fn aggregate(&mut self, _aggregate: &AggregateRecord) -> io::Result<()> {
        Ok(())
    }
    /// Takes the exit `stats` record.
    fn stats(&mut self, _stats: &serde_json::Value) -> io::Result<()> {
        Ok(())
    }
    /// Takes the ranking of causes (`--summary`): text, or its JSON form.
    fn summary(&mut self, _text: &str, _json: &serde_json::Value) -> io::Result<()> {
        Ok(())
    }
    /// Takes the pipeline's counters (after every batch).
    fn progress(&mut self, _progress: &Progress) {}
    /// Writes out what the batch left buffered.
    fn flush(&mut self) -> io::Result<()>;
}
