//! `tcpwatch query`: asks the running daemon's flight recorder what happened
//! recently and prints the findings and events as `trace` does (text, or JSON
//! Lines with `--json`).

use std::{
    io::{self, BufRead, BufReader, ErrorKind, Write},
    os::unix::net::UnixStream,
    time::Duration,
};

use anyhow::anyhow;
use chrono::{Local, Utc};

use super::pipeline::home_netns;
use crate::{
    cli::QueryArgs,
    events::model::{AggregateRecord, EventRecord, StormRecord},
    exit::{Failure, OrExit},
    explain::finding::FindingRecord,
    recorder::protocol::{End, PROTOCOL_VERSION, Refusal, Request},
    selection::Selection,
    sinks::output::{Format, Output},
};

/// How long the daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Answer lines longer than this are refused.
const MAX_LINE: u64 = 1 << 20;

/// Runs `query`.
pub fn run(args: &QueryArgs) -> Result<(), Failure> {
    let socket = &args.socket;
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        let why = match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => format!(
                "no daemon answers on {} ({e}); is it running? (systemctl status tcpwatch)",
                socket.display()
            ),
            ErrorKind::PermissionDenied => format!(
                "{}: permission denied: only root may query the daemon; run it with sudo",
                socket.display()
            ),
            _ => format!("{}: {e}", socket.display()),
        };
        Failure {
            code: crate::exit::USAGE,
            error: anyhow!(why),
        }
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).or_runtime()?;
    stream.set_write_timeout(Some(TIMEOUT)).or_runtime()?;
    let request = Request {
        version: PROTOCOL_VERSION,
        since_ms: u64::try_from(args.since.as_millis()).unwrap_or(u64::MAX),
        selection: Selection {
            ports: args.port.clone(),
            pids: args.pid.clone(),
            causes: args.cause.clone(),
            ..args.placement.selection()
        },
    };
    let mut line = serde_json::to_vec(&request).or_runtime()?;
    line.push(b'\n');
    stream.write_all(&line).or_runtime()?;

    let format = if args.json {
        Format::Json
    } else {
        Format::Text
    };
    let mut output = Output::new(format, home_netns(), io::stdout());
    let mut reader = BufReader::new(stream);
    let mut buffer = Vec::new();
    let end = loop {
        buffer.clear();
        let n = io::Read::take(&mut reader, MAX_LINE)
            .read_until(b'\n', &mut buffer)
            .or_runtime()?;
        if n == 0 {
            return Err(anyhow!(
                "the daemon closed the connection before the end of its answer"
            ))
            .or_runtime();
        }
        let value: serde_json::Value = serde_json::from_slice(&buffer)
            .map_err(|e| anyhow!("the daemon's answer is not JSON Lines: {e}"))
            .or_runtime()?;
        let printed = match value.get("record").and_then(|r| r.as_str()) {
            Some("event") => serde_json::from_value::<EventRecord>(value)
                .map_err(io::Error::other)
                .and_then(|e| output.event(&e)),
            Some("finding") => serde_json::from_value::<FindingRecord>(value)
                .map_err(io::Error::other)
                .and_then(|f| output.finding(&f)),
            Some("aggregate") => serde_json::from_value::<AggregateRecord>(value)
                .map_err(io::Error::other)
                .and_then(|a| output.aggregate(&a)),
            Some("storm") => serde_json::from_value::<StormRecord>(value)
                .map_err(io::Error::other)
                .and_then(|s| output.storm(&s)),
            Some("query_end") => break serde_json::from_value::<End>(value).or_runtime()?,
            Some("query_error") => {
                let refusal: Refusal = serde_json::from_value(value).or_runtime()?;
                let failure = anyhow!("the daemon refused the query: {}", refusal.message);
                return if refusal.message.starts_with("only root") {
                    Err(failure).or_usage()
                } else {
                    Err(failure).or_runtime()
                };
            }
            _ => Ok(()),
        };
        printed.or_runtime()?;
        match output.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            other => other.or_runtime()?,
        }
    };
    match output.flush() {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
        other => other.or_runtime()?,
    }
    let since = Utc::now() - chrono::TimeDelta::from_std(args.since).unwrap_or_default();
    let held = end.held_since.map_or_else(
        || "nothing".to_owned(),
        |t| {
            format!(
                "records since {}",
                t.with_timezone(&Local).format("%H:%M:%S")
            )
        },
    );
    eprintln!(
        "tcpwatch: {} findings and {} events since {}; the daemon holds {held}{}",
        end.findings,
        end.events,
        since.with_timezone(&Local).format("%H:%M:%S"),
        if end.dropped > 0 {
            format!(" ({} older records dropped for memory)", end.dropped)
        } else {
            String::new()
        }
    );
    Ok(())
}
