//! `tcpwatch explain --from FILE`: replays a recording through the rules and
//! prints the findings, so an incident recorded on one host can be explained
//! later or elsewhere. Needs no privileges and no kernel support.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, ErrorKind},
};

use anyhow::{Context as _, anyhow};

use crate::{
    cli::ExplainCmdArgs,
    context::sample::SampleRecord,
    events::model::{AggregateRecord, EventRecord, StormRecord},
    exit::{Failure, OrExit},
    explain::engine::Engine,
    sinks::output::{Format, Output},
};

/// Lines longer than this are rejected (a record is a few KiB at most).
const MAX_LINE: usize = 1 << 20;

/// Runs `explain`.
pub fn run(args: &ExplainCmdArgs) -> Result<(), Failure> {
    let input: Box<dyn BufRead> = if args.from.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = File::open(&args.from)
            .with_context(|| format!("cannot open {}", args.from.display()))
            .or_usage()?;
        Box::new(BufReader::new(file))
    };
    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut output = Output::new(format, 0, io::stdout());
    let mut engine = Engine::new(args.explain.thresholds());
    let mut stats = Replay::default();
    let result = replay(
        input,
        &mut engine,
        &mut output,
        &mut stats,
        &args.from.display().to_string(),
    );
    match result {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
        Err(e) if e.kind() == ErrorKind::InvalidData => return Err(anyhow!(e)).or_usage(),
        other => other.or_runtime()?,
    }
    for finding in engine.finish() {
        output.finding(&finding).or_runtime()?;
        stats.findings += 1;
    }
    if args.explain.summary {
        let text = if engine.summary.is_empty() {
            "No findings.\n".to_owned()
        } else {
            engine.summary.render()
        };
        output
            .summary(&text, &engine.summary.to_json())
            .or_runtime()?;
    }
    match output.flush() {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
        other => other.or_runtime()?,
    }
    if stats.events == 0 {
        return Err(anyhow!(
            "{}: no tcpwatch events in it (record with `tcpwatch trace --json --kind all`)",
            args.from.display()
        ))
        .or_usage();
    }
    eprintln!(
        "tcpwatch: replayed {} events and {} samples: {} findings{}{}",
        stats.events,
        stats.samples,
        stats.findings,
        if stats.summarised > 0 {
            format!(
                "; {} more events were summarised in the kernel during storms (explained per summary)",
                stats.summarised
            )
        } else {
            String::new()
        },
        if stats.skipped > 0 {
            format!(
                "; skipped {} lines that are not tcpwatch records",
                stats.skipped
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

#[derive(Default)]
struct Replay {
    events: u64,
    samples: u64,
    findings: u64,
    /// Findings and summaries in the recording (derived again, not copied).
    earlier: u64,
    /// Events the kernel summarised during storms (in `aggregate` records,
    /// shown as they are: they cannot be replayed one by one).
    summarised: u64,
    skipped: u64,
}

/// Feeds every record of `input` to the engine. A line that is not JSON is an
/// error naming the line; JSON that is not an event or sample is skipped.
fn replay(
    mut input: Box<dyn BufRead>,
    engine: &mut Engine,
    output: &mut Output<io::Stdout>,
    stats: &mut Replay,
    name: &str,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = io::Read::take(&mut input, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        if line.len() > MAX_LINE {
            return Err(invalid(format!(
                "{name}:{number}: line longer than {MAX_LINE} bytes"
            )));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| invalid(format!("{name}:{number}: not JSON ({e})")))?;
        let findings = match value.get("record").and_then(|r| r.as_str()) {
            Some("event") => {
                let event: EventRecord = serde_json::from_value(value)
                    .map_err(|e| invalid(format!("{name}:{number}: bad event record ({e})")))?;
                stats.events += 1;
                engine.event(&event)
            }
            Some("sample") => {
                let sample: SampleRecord = serde_json::from_value(value)
                    .map_err(|e| invalid(format!("{name}:{number}: bad sample record ({e})")))?;
                stats.samples += 1;
                engine.sample(&sample)
            }
            Some("storm") => {
                let storm: StormRecord = serde_json::from_value(value)
                    .map_err(|e| invalid(format!("{name}:{number}: bad storm record ({e})")))?;
                output.storm(&storm)?;
                Vec::new()
            }
            Some("aggregate") => {
                let aggregate: AggregateRecord = serde_json::from_value(value)
                    .map_err(|e| invalid(format!("{name}:{number}: bad aggregate record ({e})")))?;
                stats.summarised += aggregate.count;
                output.aggregate(&aggregate)?;
                engine.summarised(&aggregate)
            }
            Some("finding" | "summary" | "stats") => {
                stats.earlier += 1;
                Vec::new()
            }
            _ => {
                stats.skipped += 1;
                Vec::new()
            }
        };
        for finding in findings {
            output.finding(&finding)?;
            stats.findings += 1;
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message)
}
