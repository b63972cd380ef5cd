//! The daemon's sinks as one: every record goes to the metrics, the log
//! (journald), the JSON Lines file and the flight recorder, each taking what it
//! is configured for.

use std::{
    io,
    sync::{Arc, Mutex},
};

use super::{
    file::JsonFile,
    journald::Journald,
    prometheus::Metrics,
    sink::{Progress, Sink},
};
use crate::{
    context::sample::SampleRecord,
    events::model::{AggregateRecord, EventRecord, StormRecord},
    explain::finding::FindingRecord,
    recorder::store::Recorder,
};

/// The daemon's sinks.
pub struct Fanout {
    /// OpenMetrics.
    pub metrics: Metrics,
    /// Log records.
    pub journald: Journald,
    /// The JSON Lines file, when configured.
    pub file: Option<JsonFile>,
    /// The flight recorder, shared with the query server.
    pub recorder: Arc<Mutex<Recorder>>,
}

impl Fanout {
    fn recorder(&self) -> Option<std::sync::MutexGuard<'_, Recorder>> {
        self.recorder.lock().ok()
    }
}

impl Sink for Fanout {
    fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        self.metrics.event(event)?;
        self.journald.event(event)?;
        if let Some(file) = &mut self.file {
            file.event(event)?;
        }
        if let Some(mut recorder) = self.recorder() {
            recorder.event(event)?;
        }
        Ok(())
    }

    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        self.metrics.finding(finding)?;
        self.journald.finding(finding)?;
        if let Some(file) = &mut self.file {
            file.finding(finding)?;
        }
        if let Some(mut recorder) = self.recorder() {
            recorder.finding(finding)?;
        }
        Ok(())
    }

    fn sample(&mut self, sample: &SampleRecord) -> io::Result<()> {
        self.metrics.sample(sample)?;
        if let Some(file) = &mut self.file {
            file.sample(sample)?;
        }
        Ok(())
    }

    fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        self.journald.storm(storm)?;
        if let Some(file) = &mut self.file {
            file.storm(storm)?;
        }
        if let Some(mut recorder) = self.recorder() {
            recorder.storm(storm)?;
        }
        Ok(())
    }

    fn aggregate(&mut self, aggregate: &AggregateRecord) -> io::Result<()> {
        self.metrics.aggregate(aggregate)?;
        self.journald.aggregate(aggregate)?;
        if let Some(file) = &mut self.file {
            file.aggregate(aggregate)?;
        }
        if let Some(mut recorder) = self.recorder() {
            recorder.aggregate(aggregate)?;
        }
        Ok(())
    }

    fn progress(&mut self, progress: &Progress) {
        self.metrics.progress(progress);
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.flush()?;
        }
        let recorded = match self.recorder() {
            Some(mut recorder) => {
                recorder.flush()?;
                recorder.stats()
            }
            None => Default::default(),
        };
        let file = self.file.as_ref().map(JsonFile::stats);
        self.metrics.observe(file, &recorded);
        Ok(())
    }
}
