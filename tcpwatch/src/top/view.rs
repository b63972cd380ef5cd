//! How `tcpwatch top` lays a [`Board`] out on a screen: a header with the
//! totals and losses, causes beside owners, service ports beside the
//! pile-ups, the latest findings, and a footer with the keys. Made for 80x24
//! (plain characters and bold, legible over SSH and without colour); smaller
//! terminals get the header and the causes, and nothing is drawn outside the
//! frame at any size.

use chrono::{DateTime, Local, TimeDelta, Utc};
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Paragraph, Row as TableRow, Table},
};

use super::board::{Board, Pileup, Row};

/// Below this size the compact layout (header, causes, footer) is drawn.
pub const FULL_WIDTH: u16 = 60;
/// See [`FULL_WIDTH`].
pub const FULL_HEIGHT: u16 = 16;

/// What the footer says besides the keys.
#[derive(Clone, Debug, Default)]
pub struct Footer {
    /// The filters in effect, in words (`port 443, netns 4026532001`), or empty.
    pub scope: String,
    /// Diagnostics held until exit.
    pub held: u64,
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

/// Draws `board` as of `now`.
pub fn draw(frame: &mut Frame, board: &Board, footer: &Footer, now: DateTime<Utc>) {
    let area = frame.area();
    let [header, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(header_line(board, now)), header);
    frame.render_widget(Paragraph::new(footer_line(board, footer)), foot);
    if area.width < FULL_WIDTH || area.height < FULL_HEIGHT {
        causes(frame, board, body, now);
        return;
    }
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Fill(3),
        Constraint::Fill(2),
        Constraint::Fill(2),
    ])
    .areas(body);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .spacing(1)
            .areas(top);
    causes(frame, board, left, now);
    owners(frame, board, right);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
            .spacing(1)
            .areas(middle);
    ports(frame, board, left);
    pileup(frame, &board.pileup(), right, now);
    latest(frame, board, bottom);
}

fn header_line(board: &Board, now: DateTime<Utc>) -> Line<'static> {
    let mut spans = vec![
        Span::styled("tcpwatch top", bold()),
        Span::raw(format!(" · up {}", age(now - board.since))),
        Span::raw(" · resets "),
        Span::styled(count(board.resets_sent), bold()),
        Span::raw(" sent "),
        Span::styled(count(board.resets_received), bold()),
        Span::raw(format!(" recv {:.1}/s", board.reset_rate(now))),
        Span::raw(" · findings "),
        Span::styled(count(board.findings), bold()),
        Span::raw(" · lost "),
    ];
    let lost = board.kernel.lost();
    spans.push(if lost > 0 {
        Span::styled(count(lost), bold().add_modifier(Modifier::REVERSED))
    } else {
        Span::raw("0")
    });
    if board.storm {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("STORM {} summarised", count(board.kernel.summarised())),
            bold().add_modifier(Modifier::REVERSED),
        ));
    }
    Line::from(spans)
}

fn footer_line(board: &Board, footer: &Footer) -> Line<'static> {
    let mut parts = vec!["q quit".to_owned()];
    if !footer.scope.is_empty() {
        parts.push(footer.scope.clone());
    }
    let undecodable = board.progress.decode.total();
    if undecodable > 0 {
        parts.push(format!("{} undecodable", count(undecodable)));
    }
    if board.progress.evicted_flows > 0 {
        parts.push(format!(
            "{} histories evicted",
            count(board.progress.evicted_flows)
        ));
    }
    if footer.held > 0 {
        parts.push(format!("{} diagnostics shown at exit", count(footer.held)));
    }
    Line::styled(parts.join(" · "), dim())
}

fn section(title: String) -> Block<'static> {
    Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(title, bold()))
}

fn causes(frame: &mut Frame, board: &Board, area: Rect, now: DateTime<Utc>) {
    let causes = board.causes();
    let block = section(" Findings by cause ".into());
    if causes.is_empty() {
        let text = Paragraph::new(Line::styled("no findings yet", dim())).block(block);
        frame.render_widget(text, area);
        return;
    }
    let room = data_rows(area);
    let shown = if causes.len() > room {
        room.saturating_sub(1)
    } else {
        room
    };
    let mut rows: Vec<TableRow> = causes
        .iter()
        .take(shown)
        .map(|(cause, row)| {
            TableRow::new([
                cause.id().to_owned(),
                format!("{:>6}", count(row.count)),
                format!("{:>5}", age(now - row.last)),
            ])
        })
        .collect();
    if causes.len() > shown && room > 0 {
        let rest: u64 = causes.iter().skip(shown).map(|(_, r)| r.count).sum();
        rows.push(
            TableRow::new([
                format!("({} others)", causes.len() - shown),
                format!("{:>6}", count(rest)),
                String::new(),
            ])
            .style(dim()),
        );
    }
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(5),
        ],
    )
    .header(TableRow::new(["cause", " count", " last"]).style(bold()))
    .block(block);
    frame.render_widget(table, area);
}

/// Rows of a table that fit under its title and column header.
fn data_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(2))
}

/// The rows that do not fit, summed: how many, and their counts.
struct Others {
    rows: u64,
    counts: Row,
}

/// The rows of `ranked` that fit in `room`, and an "others" row for the rest
/// (and for what the table already folded away).
fn fit<K>(
    ranked: Vec<(K, Row)>,
    others: Row,
    folded: u64,
    room: usize,
) -> (Vec<(K, Row)>, Option<Others>) {
    let spill = folded > 0 || ranked.len() > room;
    let shown = if spill { room.saturating_sub(1) } else { room };
    let mut rest = others;
    let mut rest_rows = folded;
    let mut kept = Vec::with_capacity(shown);
    for (i, (key, row)) in ranked.into_iter().enumerate() {
        if i < shown {
            kept.push((key, row));
        } else {
            rest.resets = rest.resets.saturating_add(row.resets);
            rest.findings = rest.findings.saturating_add(row.findings);
            rest_rows += 1;
        }
    }
    let others = (spill && room > 0).then_some(Others {
        rows: rest_rows,
        counts: rest,
    });
    (kept, others)
}

fn counts_row(name: String, row: Row) -> TableRow<'static> {
    TableRow::new([
        name,
        format!("{:>6}", count(row.resets)),
        format!("{:>5}", count(row.findings)),
    ])
}

fn others_row(others: Option<Others>) -> Option<TableRow<'static>> {
    others.map(|o| counts_row(format!("({} others)", o.rows), o.counts).style(dim()))
}

fn owners(frame: &mut Frame, board: &Board, area: Rect) {
    let (rows, others) = fit(
        board.owners.ranked(),
        board.owners.others(),
        board.owners.folded(),
        data_rows(area),
    );
    let rows = rows.into_iter().map(|(owner, row)| {
        let name = match &owner.place {
            Some(place) => format!("{} {place}", owner.name),
            None => owner.name.clone(),
        };
        (name, row)
    });
    let empty = board.owners.is_empty();
    counts_table(
        frame,
        area,
        " Owners ",
        "owner (or listener)",
        empty,
        rows,
        others,
    );
}

fn ports(frame: &mut Frame, board: &Board, area: Rect) {
    let (rows, others) = fit(
        board.ports.ranked(),
        board.ports.others(),
        board.ports.folded(),
        data_rows(area),
    );
    let rows = rows
        .into_iter()
        .map(|(port, row)| (format!(":{port}"), row));
    let empty = board.ports.is_empty();
    counts_table(frame, area, " Ports ", "port", empty, rows, others);
}

/// A section of named rows with their reset and finding counts, the folded
/// rest last; "no resets yet" while `empty`.
fn counts_table(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    what: &'static str,
    empty: bool,
    rows: impl Iterator<Item = (String, Row)>,
    others: Option<Others>,
) {
    let block = section(title.into());
    if empty {
        let text = Paragraph::new(Line::styled("no resets yet", dim())).block(block);
        frame.render_widget(text, area);
        return;
    }
    let rows: Vec<TableRow> = rows
        .map(|(name, row)| counts_row(name, row))
        .chain(others_row(others))
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(5),
        ],
    )
    .header(TableRow::new([what, "resets", "finds"]).style(bold()))
    .block(block);
    frame.render_widget(table, area);
}

fn pileup(frame: &mut Frame, pile: &Pileup, area: Rect, now: DateTime<Utc>) {
    let title = match pile.latest {
        Some(t) => format!(
            " Pile-up ({} netns, {} ago) ",
            pile.namespaces,
            age(now - t)
        ),
        None => " Pile-up ".into(),
    };
    let block = section(title);
    if pile.latest.is_none() {
        let text = Paragraph::new(Line::styled("waiting for the first sample", dim())).block(block);
        frame.render_widget(text, area);
        return;
    }
    let mut lines: Vec<Line> = Vec::new();
    for state in &pile.states {
        // TIME_WAIT and CLOSE_WAIT always; the others when there are some.
        let always = matches!(state.state, "TIME_WAIT" | "CLOSE_WAIT");
        if !always && state.count == 0 {
            continue;
        }
        let growth = if state.growth.abs() >= 0.05 {
            format!("{:+.1}/s", state.growth)
        } else {
            String::new()
        };
        let port = state
            .top_port
            .map(|(port, n)| format!("most on :{port} ({})", count(u64::from(n))))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::raw(format!("{:<10} ", state.state)),
            Span::styled(format!("{:>6}", count(state.count)), bold()),
            Span::raw(format!(" {growth:<8} {port}")),
        ]));
    }
    for queue in &pile.queues {
        let full = if queue.queue >= queue.backlog {
            " FULL"
        } else {
            ""
        };
        lines.push(Line::raw(format!(
            "accept {} {}/{}{full} {}",
            queue.local, queue.queue, queue.backlog, queue.owner.name
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn latest(frame: &mut Frame, board: &Board, area: Rect) {
    let block = section(" Latest findings ".into());
    let room = usize::from(area.height.saturating_sub(1));
    let lines: Vec<Line> = board
        .latest()
        .take(room)
        .map(|f| {
            let time = DateTime::<Local>::from(f.time).format("%H:%M:%S");
            let times = if f.count > 1 {
                format!(" ({}x)", count(f.count))
            } else {
                String::new()
            };
            Line::from(vec![
                Span::raw(format!("{time} ")),
                Span::styled(f.cause.id(), bold()),
                Span::raw(format!("{times} {}", one_line(&f.summary))),
            ])
        })
        .collect();
    let text = if lines.is_empty() {
        Paragraph::new(Line::styled(
            "no findings yet: explained resets and pile-ups appear here",
            dim(),
        ))
    } else {
        Paragraph::new(lines)
    };
    frame.render_widget(text.block(block), area);
}

/// The text on one line (summaries may hold line breaks).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A count in at most six characters.
fn count(n: u64) -> String {
    match n {
        0..=999_999 => n.to_string(),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// A duration in at most five characters: `42s`, `3m05s`, `2h10m`.
fn age(d: TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=359_999 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

    use super::*;
    use crate::{
        context::sample::{Listener, PortSockets},
        events::model::Process,
        explain::{
            cause::Cause,
            finding::{Confidence, FindingRecord},
            testkit::{self, at, proc},
        },
    };

    /// The buffer as lines of text.
    fn text(buffer: &Buffer) -> String {
        let width = usize::from(buffer.area.width).max(1);
        buffer
            .content
            .chunks(width)
            .map(|row| {
                row.iter()
                    .map(|c| c.symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn render(board: &Board, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        let footer = Footer {
            scope: "netns 4026532001".into(),
            held: 2,
        };
        terminal
            .draw(|f| draw(f, board, &footer, at(65_000)))
            .unwrap();
        text(terminal.backend().buffer())
    }

    fn finding(
        cause: Cause,
        ms: i64,
        port: u16,
        owner: Option<Process>,
        summary: &str,
    ) -> FindingRecord {
        let mut f = FindingRecord::new(
            cause,
            Confidence::Exact,
            at(ms),
            testkit::NS,
            summary.into(),
            "fix it".into(),
        );
        f.port = Some(port);
        f.owner = owner;
        f
    }

    /// An incident's first minute: refused connects to a closed port, a
    /// TIME_WAIT pile-up on a server port, a full accept queue.
    fn incident() -> Board {
        let mut board = Board::new(at(0));
        for i in 0..40 {
            board.event(&testkit::sent(
                i * 1000,
                "127.0.0.1:9",
                &format!("127.0.0.1:{}", 50_000 + i),
                None,
                Some("NO_SOCKET"),
                None,
                proc(4121, "curl"),
            ));
            board.event(&testkit::received(
                i * 1000 + 1,
                &format!("127.0.0.1:{}", 50_000 + i),
                "127.0.0.1:9",
                "SYN_SENT",
                Some(testkit::owner(4121, "curl", "connect")),
                proc(0, "swapper/0"),
            ));
        }
        let mut nginx = testkit::owner(880, "nginx", "accept");
        nginx.unit = Some("nginx.service".into());
        for i in 0..7 {
            board.event(&testkit::sent(
                60_000 + i,
                "10.0.0.1:8086",
                &format!("10.0.0.2:{}", 41_000 + i),
                Some("ESTABLISHED"),
                Some("TCP_ABORT_ON_DATA"),
                Some(nginx.clone()),
                proc(0, "swapper/0"),
            ));
        }
        let mut nl = finding(
            Cause::NoListener,
            39_000,
            9,
            None,
            "curl[4121] connected to 127.0.0.1:9, where nobody listens; the kernel answered the SYN with RST.",
        );
        nl.count = 40;
        board.finding(&nl);
        board.finding(&finding(
            Cause::KeepaliveIdleRace,
            60_003,
            8086,
            Some(nginx.clone()),
            "nginx[880] closed this keep-alive connection after 1.0 s idle; 2 ms later the peer sent a new request on it.",
        ));
        board.finding(&finding(
            Cause::TimeWaitPileup,
            62_000,
            8086,
            Some(nginx),
            "port 8086: 5033 TIME_WAIT sockets, growing 120/s.",
        ));
        let mut before = testkit::sample(63_000);
        before.states.insert("TIME_WAIT".into(), 4913);
        board.sample(&before);
        let mut s = testkit::sample(64_000);
        s.states = [
            ("TIME_WAIT".to_owned(), 5033),
            ("CLOSE_WAIT".to_owned(), 3),
            ("ESTABLISHED".to_owned(), 20),
        ]
        .into();
        s.ports = vec![PortSockets {
            port: 8086,
            states: [("TIME_WAIT".to_owned(), 5001)].into(),
        }];
        s.listeners = vec![Listener {
            local: "0.0.0.0:8080".into(),
            queue: 129,
            backlog: 128,
            requested_backlog: None,
            owner: Some(proc(77, "api")),
        }];
        board.sample(&s);
        board
    }

    #[test]
    fn fits_an_80x24_terminal_with_causes_owners_ports_and_pileups() {
        let screen = render(&incident(), 80, 24);
        let lines: Vec<&str> = screen.lines().collect();
        assert_eq!(lines.len(), 24, "{screen}");
        assert!(
            lines[0].starts_with("tcpwatch top · up 1m05s · resets 47 sent 40 recv"),
            "{screen}"
        );
        assert!(lines[0].contains("findings 42 · lost 0"), "{screen}");
        for expect in [
            "Findings by cause",
            "no_listener",
            "keepalive_idle_race",
            "time_wait_pileup",
            "Owners",
            "curl[4121]",
            "nginx[880] nginx.service",
            "nobody",
            "Ports",
            ":9",
            ":8086",
            "Pile-up (1 netns, 1s ago)",
            "TIME_WAIT",
            "+120.0/s",
            "most on :8086 (5001)",
            "accept 0.0.0.0:8080 129/128 FULL api[77]",
            "Latest findings",
            "no_listener (40x) curl[4121] connected to 127.0.0.1:9",
            "q quit · netns 4026532001 · 2 diagnostics shown at exit",
        ] {
            assert!(screen.contains(expect), "'{expect}' missing:\n{screen}");
        }
        // The no_listener row: 40 occurrences.
        let row = lines.iter().find(|l| l.contains("no_listener ")).unwrap();
        assert!(row.contains("    40"), "{row}");
        // Port 9: 80 resets (both directions), 40 findings.
        let port9 = lines.iter().find(|l| l.starts_with(":9 ")).unwrap();
        assert!(port9.contains("    80    40"), "{port9}");
        assert!(lines[23].starts_with("q quit"), "{screen}");
    }

    #[test]
    fn empty_board_says_what_it_waits_for() {
        let screen = render(&Board::new(at(0)), 80, 24);
        for expect in [
            "no findings yet",
            "no resets yet",
            "waiting for the first sample",
            "resets 0 sent 0 recv 0.0/s",
        ] {
            assert!(screen.contains(expect), "'{expect}' missing:\n{screen}");
        }
    }

    #[test]
    fn many_owners_end_with_an_others_row() {
        let mut board = Board::new(at(0));
        for i in 0..300u32 {
            board.event(&testkit::received(
                i64::from(i),
                &format!("10.0.0.1:{}", 40_000 + i),
                "10.0.0.2:443",
                "ESTABLISHED",
                Some(testkit::owner(1000 + i, "worker", "connect")),
                proc(0, "swapper/0"),
            ));
        }
        let screen = render(&board, 80, 24);
        assert!(screen.contains("others)"), "{screen}");
        let others = screen.lines().find(|l| l.contains("others)")).unwrap();
        // 300 owners: the rows shown, and the rest (44 folded away) in one row.
        assert!(others.contains("(2"), "{others}");
    }

    #[test]
    fn small_and_tiny_terminals_do_not_panic() {
        let board = incident();
        for (w, h) in [
            (20, 5),
            (1, 1),
            (0, 0),
            (59, 15),
            (40, 10),
            (80, 3),
            (200, 60),
            (60, 16),
        ] {
            let screen = render(&board, w, h);
            if w >= 20 && h >= 5 {
                assert!(screen.starts_with("tcpwatch top"), "{w}x{h}:\n{screen}");
            }
        }
        let compact = render(&board, 40, 10);
        assert!(compact.contains("no_listener"), "{compact}");
        assert!(compact.contains("q quit"), "{compact}");
    }

    #[test]
    fn counts_and_ages_stay_short() {
        assert_eq!(count(999_999), "999999");
        assert_eq!(count(1_250_000), "1.2M");
        assert_eq!(count(2_500_000_000), "2.5G");
        assert_eq!(age(TimeDelta::seconds(5)), "5s");
        assert_eq!(age(TimeDelta::seconds(185)), "3m05s");
        assert_eq!(age(TimeDelta::seconds(7800)), "2h10m");
        assert_eq!(age(TimeDelta::seconds(-3)), "0s");
        assert_eq!(one_line("a\n  b"), "a b");
    }
}
