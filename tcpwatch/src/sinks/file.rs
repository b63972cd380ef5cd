//! The JSON Lines file: the records of `trace --json` (findings, the
//! configured events, samples if asked) appended to a file that rotates by
//! size, for Vector, Fluent Bit or Loki's agent to ship.
//!
//! Before a batch would take the file past `max_size`, `FILE` becomes `FILE.1`
//! (`FILE.1` becomes `FILE.2`, ... up to `keep`; the oldest goes), and a new
//! `FILE` starts. A batch is written whole, so a file may pass the size by one
//! batch. A write that fails (disk full, file removed) never stops the daemon:
//! its bytes are dropped and counted, the error is logged once a minute, and the
//! file is opened again for the next batch.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tracing::warn;

use super::{
    output::{Format, Output},
    sink::Sink,
};
use crate::{
    config,
    context::sample::SampleRecord,
    events::model::{AggregateRecord, EventRecord, Kind, StormRecord},
    explain::finding::FindingRecord,
};

/// How often a failing file is complained about at most.
const COMPLAIN_EVERY: Duration = Duration::from_secs(60);

/// What the file has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Bytes written.
    pub written: u64,
    /// Rotations.
    pub rotations: u64,
    /// Failed writes, opens or rotations.
    pub errors: u64,
    /// Bytes dropped because writing failed.
    pub dropped: u64,
}

/// A file that rotates by size and never fails a write (it counts instead).
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    complained: Option<Instant>,
    stats: FileStats,
}

impl RotatingFile {
    /// Opens (appends to) `path`; errors here are the caller's to report.
    pub fn open(path: &Path, max_size: u64, keep: u32) -> io::Result<Self> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            max_size,
            keep,
            file: Some(file),
            size,
            complained: None,
            stats: FileStats::default(),
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..self.keep).rev() {
            if numbered(n).exists() {
                fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        fs::rename(&self.path, numbered(1))?;
        self.stats.rotations += 1;
        self.size = 0;
        Ok(())
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_size {
            self.rotate()?;
        }
        if self.file.is_none() {
            let file = open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        if let Some(file) = &mut self.file {
            file.write_all(buf)?;
        }
        self.size += buf.len() as u64;
        self.stats.written += buf.len() as u64;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.try_write(buf) {
            self.stats.errors += 1;
            self.stats.dropped += buf.len() as u64;
            self.file = None;
            if self
                .complained
                .is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY)
            {
                self.complained = Some(Instant::now());
                warn!(
                    "file {}: {e}; dropping records until it works again ({} bytes so far)",
                    self.path.display(),
                    self.stats.dropped
                );
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The sink: the JSON Lines format of `trace --json`, into a rotating file.
pub struct JsonFile {
    output: Output<RotatingFile>,
    events: Vec<Kind>,
    samples: bool,
}

impl JsonFile {
    /// Opens the file `[file]` names (`None` when it names none).
    pub fn open(config: &config::File) -> io::Result<Option<Self>> {
        if config.path.as_os_str().is_empty() {
            return Ok(None);
        }
        let file = RotatingFile::open(&config.path, config.max_size.0, config.keep)?;
        Ok(Some(Self {
            output: Output::new(Format::Json, 0, file),
            events: config.events.0.clone(),
            samples: config.samples,
        }))
    }

    /// What the file has done.
    pub fn stats(&self) -> FileStats {
        self.output.inner().stats
    }
}

impl Sink for JsonFile {
    fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        if self.events.contains(&event.kind) {
            self.output.event(event)?;
        }
        Ok(())
    }

    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        self.output.finding(finding)
    }

    fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        self.output.storm(storm)
    }

    fn aggregate(&mut self, aggregate: &AggregateRecord) -> io::Result<()> {
        if self.events.contains(&aggregate.kind) {
            self.output.aggregate(aggregate)?;
        }
        Ok(())
    }

    fn sample(&mut self, sample: &SampleRecord) -> io::Result<()> {
        if self.samples {
            self.output.sample(sample)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("tcpwatch-file-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut file = RotatingFile::open(&path, 100, 2).unwrap();
        let line = [b'x'; 39];
        for _ in 0..10 {
            file.write_all(&line).unwrap();
        }
        // 2 lines (78 bytes) fit per file: 10 lines = 5 files, 3 kept (FILE, .1, .2).
        assert_eq!(file.stats.rotations, 4);
        assert_eq!(fs::metadata(&path).unwrap().len(), 78);
        assert_eq!(fs::metadata(dir.join("events.jsonl.1")).unwrap().len(), 78);
        assert!(dir.join("events.jsonl.2").exists());
        assert!(!dir.join("events.jsonl.3").exists());
        // A failing write is dropped and counted, not an error.
        fs::remove_dir_all(&dir).unwrap();
        assert!(file.write_all(&line).is_ok());
        assert_eq!(file.stats.dropped, 39);
        assert_eq!(file.stats.errors, 1);
    }
}
