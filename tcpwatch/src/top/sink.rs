//! The [`Sink`] of `top`: every record goes into the [`Board`]; after a batch
//! the screen is redrawn, at most once per [`REDRAW`] (the session flushes at
//! least every 50 ms, so the view is never older than that plus [`REDRAW`]).
//! It owns the loaded eBPF object, to show the kernel's loss counters, and
//! the terminal until [`TopSink::leave`].

use std::{
    io::{self, ErrorKind},
    time::{Duration, Instant},
};

use chrono::Utc;
use ratatui::{Terminal, backend::Backend};

use super::{
    board::Board,
    screen::Screen,
    view::{self, Footer},
};
use crate::{
    context::sample::SampleRecord,
    events::{
        counters::KernelCounters,
        model::{AggregateRecord, EventRecord, StormRecord},
    },
    explain::finding::FindingRecord,
    logging,
    sinks::sink::{Progress, Sink},
};

/// The shortest time between two redraws (four per second at most).
pub const REDRAW: Duration = Duration::from_millis(250);

/// Feeds the board and redraws the view.
pub struct TopSink<B: Backend> {
    board: Board,
    footer: Footer,
    // Field order is drop order: the terminal (which shows the cursor if it
    // hid it) before the screen guard, whose restore then ends the output.
    terminal: Option<Terminal<B>>,
    screen: Option<Screen>,
    kernel: Option<aya::Ebpf>,
    drawn: Option<Instant>,
    draws: u64,
}

impl<B: Backend> TopSink<B> {
    /// Draws on `terminal` (in the modes `screen` set, when given) and reads
    /// the kernel counters from `kernel`, when given.
    pub fn new(
        terminal: Terminal<B>,
        screen: Option<Screen>,
        kernel: Option<aya::Ebpf>,
        footer: Footer,
    ) -> Self {
        Self {
            board: Board::new(Utc::now()),
            footer,
            terminal: Some(terminal),
            screen,
            kernel,
            drawn: None,
            draws: 0,
        }
    }

    /// The board.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Screens drawn so far.
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// The kernel-side counters now (the last read ones without a kernel).
    pub fn kernel_counters(&mut self) -> KernelCounters {
        if let Some(ebpf) = &self.kernel
            && let Ok(counters) = KernelCounters::read(ebpf)
        {
            self.board.kernel = counters;
        }
        self.board.kernel
    }

    /// Gives the terminal back (its modes restored); nothing is drawn after.
    pub fn leave(&mut self) {
        if let Some(mut terminal) = self.terminal.take() {
            let _ = terminal.show_cursor();
        }
        self.screen = None;
    }

    /// Draws now.
    fn draw(&mut self) -> io::Result<()> {
        self.kernel_counters();
        self.footer.held = logging::held_records();
        let Some(terminal) = &mut self.terminal else {
            return Ok(());
        };
        let (board, footer, now) = (&self.board, &self.footer, Utc::now());
        terminal
            .draw(|frame| view::draw(frame, board, footer, now))
            // The terminal went away (a hang-up): the session stops as for a
            // closed output.
            .map_err(|e| io::Error::new(ErrorKind::BrokenPipe, e.to_string()))?;
        self.drawn = Some(Instant::now());
        self.draws += 1;
        Ok(())
    }
}

impl<B: Backend> Sink for TopSink<B> {
    fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        self.board.event(event);
        Ok(())
    }

    fn finding(&mut self, finding: &FindingRecord) -> io::Result<()> {
        self.board.finding(finding);
        Ok(())
    }

    fn sample(&mut self, sample: &SampleRecord) -> io::Result<()> {
        self.board.sample(sample);
        Ok(())
    }

    fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        self.board.storm(storm);
        Ok(())
    }

    fn aggregate(&mut self, aggregate: &AggregateRecord) -> io::Result<()> {
        self.board.aggregate(aggregate);
        Ok(())
    }

    fn progress(&mut self, progress: &Progress) {
        self.board.progress = *progress;
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.drawn.is_some_and(|t| t.elapsed() < REDRAW) {
            return Ok(());
        }
        self.draw()
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::explain::testkit::{self, proc};

    fn sink() -> TopSink<TestBackend> {
        let terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        TopSink::new(terminal, None, None, Footer::default())
    }

    fn screen(sink: &TopSink<TestBackend>) -> String {
        let terminal = sink.terminal.as_ref().unwrap();
        let buffer = terminal.backend().buffer();
        buffer
            .content
            .chunks(usize::from(buffer.area.width))
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn redraws_at_most_four_times_a_second() {
        let mut sink = sink();
        sink.flush().unwrap();
        assert_eq!(sink.draws(), 1, "the first flush draws");
        let reset = testkit::sent(
            0,
            "127.0.0.1:9",
            "127.0.0.1:50000",
            None,
            Some("NO_SOCKET"),
            None,
            proc(1, "curl"),
        );
        for _ in 0..100 {
            sink.event(&reset).unwrap();
            sink.flush().unwrap();
        }
        assert_eq!(sink.draws(), 1, "batches within {REDRAW:?} do not redraw");
        assert_eq!(sink.board().resets_sent, 100, "but are counted");
        std::thread::sleep(REDRAW + Duration::from_millis(20));
        sink.flush().unwrap();
        assert_eq!(sink.draws(), 2);
        let text = screen(&sink);
        assert!(text.contains("resets 100 sent"), "{text}");
        assert!(text.contains(":9 "), "{text}");
    }

    #[test]
    fn nothing_is_drawn_after_leaving() {
        let mut sink = sink();
        sink.leave();
        std::thread::sleep(REDRAW);
        sink.flush().unwrap();
        assert_eq!(sink.draws(), 0);
    }
}
