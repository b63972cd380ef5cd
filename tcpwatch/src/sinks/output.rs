//! Where `trace` writes events: readable lines or JSON Lines, buffered per batch.

use std::io::{self, Write};

use bytes::{BufMut, BytesMut};

use super::{finding_block, sink::Sink, terminal};
use crate::{
    context::sample::SampleRecord,
    events::model::{AggregateRecord, EventRecord, StormRecord},
    explain::finding::FindingRecord,
};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One readable line per event.
    Text,
    /// JSON Lines.
    Json,
}

/// An output stream that batches records and writes them on [`Output::flush`].
pub struct Output<W: Write> {
    format: Format,
    home_netns: u32,
    buffer: BytesMut,
    out: W,
}

impl<W: Write> Output<W> {
    /// An output in `format` to `out`. `home_netns` is the namespace the text
    /// format leaves implicit.
    pub fn new(format: Format, home_netns: u32, out: W) -> Self {
        Self {
            format,
            home_netns,
            buffer: BytesMut::with_capacity(64 * 1024),
            out,
        }
    }

    /// Adds one event to the batch.
    pub fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        match self.format {
            Format::Text => {
                self.buffer
                    .put_slice(terminal::line(event, self.home_netns).as_bytes());
                self.buffer
                    .put_slice(terminal::kstack_lines(event).as_bytes());
            }
            Format::Json => {
                serde_json::to_writer((&mut self.buffer).writer(), event)
                    .map_err(io::Error::other)?;
            }
        }
        self.buffer.put_u8(b'\n');
        Ok(())
    }

    /// Adds a storm-mode start or end.
    pub fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        match self.format {
            Format::Text => self
                .buffer
                .put_slice(terminal::storm_line(storm).as_bytes()),
            Format::Json => serde_json::to_writer((&mut self.buffer).writer(), storm)
                .map_err(io::Error::other)?,
        }
        self.buffer.put_u8(b'\n');
        Ok(())
    }

    /// Adds an "N events summarised" record.
    pub fn aggregate(&mut self, aggregate: &AggregateRecord) -> io::Result<()> {
        match self.format {
            Format::Text => self
                .buffer
                .put_slice(terminal::aggregate_line(aggregate, self.home_netns).as_bytes()),
            Format::Json => serde_json::to_writer((&mut self.buffer).writer(), aggregate)
                .map_err(io::Error::other)?,
        }
        self.buffer.put_u8(b'\n');
        Ok(())
    }

    /// Adds a finding: a block of text, or a JSON line.
    pub fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        match self.format {
            Format::Text => self
                .buffer
                .put_slice(finding_block::block(finding, self.home_netns).as_bytes()),
            Format::Json => {
                serde_json::to_writer((&mut self.buffer).writer(), finding)
                    .map_err(io::Error::other)?;
                self.buffer.put_u8(b'\n');
            }
        }
        Ok(())
    }

    /// Adds a namespace sample (JSON only: it lets a recording be explained
    /// again; people read the findings it leads to).
    pub fn sample(&mut self, sample: &SampleRecord) -> io::Result<()> {
        if self.format == Format::Json {
            serde_json::to_writer((&mut self.buffer).writer(), sample).map_err(io::Error::other)?;
            self.buffer.put_u8(b'\n');
        }
        Ok(())
    }

    /// Adds the exit `stats` record (JSON only: text output has the stderr line).
    pub fn stats(&mut self, stats: &serde_json::Value) -> io::Result<()> {
        if self.format == Format::Json {
            serde_json::to_writer((&mut self.buffer).writer(), stats).map_err(io::Error::other)?;
            self.buffer.put_u8(b'\n');
        }
        Ok(())
    }

    /// Adds text as is (text format) or a JSON value as one line.
    pub fn summary(&mut self, text: &str, json: &serde_json::Value) -> io::Result<()> {
        match self.format {
            Format::Text => self.buffer.put_slice(text.as_bytes()),
            Format::Json => {
                serde_json::to_writer((&mut self.buffer).writer(), json)
                    .map_err(io::Error::other)?;
                self.buffer.put_u8(b'\n');
            }
        }
        Ok(())
    }

    /// The stream written to.
    pub fn inner(&self) -> &W {
        &self.out
    }

    /// Writes the batch out.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.out.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        self.out.flush()
    }
}

impl<W: Write> Sink for Output<W> {
    fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        Output::event(self, event)
    }

    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        Output::finding(self, finding)
    }

    fn sample(&mut self, sample: &SampleRecord) -> io::Result<()> {
        Output::sample(self, sample)
    }

    fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        Output::storm(self, storm)
    }

    fn aggregate(&mut self, aggregate: &AggregateRecord) -> io::Result<()> {
        Output::aggregate(self, aggregate)
    }

    fn stats(&mut self, stats: &serde_json::Value) -> io::Result<()> {
        Output::stats(self, stats)
    }

    fn summary(&mut self, text: &str, json: &serde_json::Value) -> io::Result<()> {
        Output::summary(self, text, json)
    }

    fn flush(&mut self) -> io::Result<()> {
        Output::flush(self)
    }
}
