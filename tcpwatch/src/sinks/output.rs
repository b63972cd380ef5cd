//! Where `trace` writes events: readable lines or JSON Lines, buffered per batch.

use std::io::{self, Write};

use bytes::{BufMut, BytesMut};

use super::terminal;
use crate::events::model::EventRecord;

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
            }
            Format::Json => {
                serde_json::to_writer((&mut self.buffer).writer(), event)
                    .map_err(io::Error::other)?;
            }
        }
        self.buffer.put_u8(b'\n');
        Ok(())
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
