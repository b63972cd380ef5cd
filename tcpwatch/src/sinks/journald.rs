//! Findings (and, if asked, events) as log records with structured fields.
//! Under systemd they reach journald as fields such as `TCPWATCH_CAUSE`,
//! `TCPWATCH_PID`, `TCPWATCH_UNIT` and `TCPWATCH_FLOW`:
//!
//! ```text
//! journalctl -u tcpwatch TCPWATCH_CAUSE=keepalive_idle_race
//! journalctl -u tcpwatch TCPWATCH_UNIT=nginx.service -o json
//! ```
//!
//! Elsewhere the same records are lines on stderr ([`crate::logging`]).
//! Findings are warnings (syslog priority 4), events informational (6).

use std::io;

use tracing::{info, warn};

use super::{sink::Sink, terminal};
use crate::{
    config,
    context::sample::SampleRecord,
    events::{
        kstack,
        model::{AggregateRecord, EventRecord, Kind, Process, StormPhase, StormRecord},
    },
    explain::finding::{Confidence, FindingRecord},
};

/// The tracing target of these records (never filtered out by the log level).
pub const TARGET: &str = "tcpwatch::records";

/// The sink.
pub struct Journald {
    findings: bool,
    events: Vec<Kind>,
    home_netns: u32,
}

impl Journald {
    /// A sink as `[journald]` configures it.
    pub fn new(config: &config::Journald, home_netns: u32) -> Self {
        Self {
            findings: config.findings,
            events: config.events.0.clone(),
            home_netns,
        }
    }
}

fn pid(p: Option<&Process>) -> Option<u32> {
    p.map(|p| p.pid)
}
fn comm(p: Option<&Process>) -> Option<&str> {
    p.map(|p| p.comm.as_str())
}
fn unit(p: Option<&Process>) -> Option<&str> {
    p.and_then(|p| p.unit.as_deref())
}
fn container(p: Option<&Process>) -> Option<&str> {
    p.and_then(|p| p.container.as_deref())
}
fn cgroup(p: Option<&Process>) -> Option<&str> {
    p.and_then(|p| p.cgroup.as_deref())
}

impl Sink for Journald {
    fn event(&mut self, event: &EventRecord) -> io::Result<()> {
        if !self.events.contains(&event.kind) {
            return Ok(());
        }
        let owner = event.owner.as_ref().or(event.listener.as_ref());
        let flow = format!("{} > {}", event.flow.src, event.flow.dst);
        info!(
            target: TARGET,
            tcpwatch_record = "event",
            tcpwatch_kind = event.kind.as_str(),
            tcpwatch_reason = event.reason.as_deref(),
            tcpwatch_state = event.state.as_deref().or(event.new_state.as_deref()),
            tcpwatch_flow = flow.as_str(),
            tcpwatch_netns = event.flow.netns,
            tcpwatch_pid = pid(owner),
            tcpwatch_comm = comm(owner),
            tcpwatch_unit = unit(owner),
            tcpwatch_container = container(owner),
            tcpwatch_cgroup = cgroup(owner),
            tcpwatch_actor_pid = event.actor.pid,
            "{}",
            terminal::line(event, self.home_netns)
        );
        Ok(())
    }

    fn finding(&mut self, f: &FindingRecord) -> io::Result<()> {
        if !self.findings {
            return Ok(());
        }
        let owner = f.owner.as_ref();
        let peer = f.peer_owner.as_ref();
        let flow = f.flow.as_ref().map(|f| format!("{} > {}", f.src, f.dst));
        let evidence: Vec<&str> = f.evidence.iter().map(|e| e.text.as_str()).collect();
        let kstack: Option<String> = f.kstack.as_ref().map(|frames| {
            let frames: Vec<String> = frames.iter().map(kstack::describe).collect();
            frames.join(" <- ")
        });
        let confidence = match f.confidence {
            Confidence::Exact => "exact",
            Confidence::Inferred => "inferred",
        };
        warn!(
            target: TARGET,
            tcpwatch_record = "finding",
            tcpwatch_cause = f.cause.id(),
            tcpwatch_confidence = confidence,
            tcpwatch_flow = flow.as_deref(),
            tcpwatch_port = f.port,
            tcpwatch_netns = f.netns,
            tcpwatch_pid = pid(owner),
            tcpwatch_comm = comm(owner),
            tcpwatch_unit = unit(owner),
            tcpwatch_container = container(owner),
            tcpwatch_cgroup = cgroup(owner),
            tcpwatch_peer_pid = pid(peer),
            tcpwatch_peer_comm = comm(peer),
            tcpwatch_peer_unit = unit(peer),
            tcpwatch_count = f.count,
            tcpwatch_evidence = evidence.join("; ").as_str(),
            tcpwatch_fix = f.fix.as_str(),
            tcpwatch_kstack = kstack.as_deref(),
            "FINDING {} ({confidence}): {}. {}",
            f.cause.id(),
            f.title,
            f.summary
        );
        Ok(())
    }

    fn storm(&mut self, storm: &StormRecord) -> io::Result<()> {
        let phase = match storm.phase {
            StormPhase::Started => "started",
            StormPhase::Ended => "ended",
        };
        warn!(
            target: TARGET,
            tcpwatch_record = "storm",
            tcpwatch_phase = phase,
            tcpwatch_count = storm.summarised,
            "{}",
            terminal::storm_line(storm)
        );
        Ok(())
    }

    fn aggregate(&mut self, a: &AggregateRecord) -> io::Result<()> {
        if !self.events.contains(&a.kind) {
            return Ok(());
        }
        let owner = a.owner.as_ref().or(a.listener.as_ref());
        info!(
            target: TARGET,
            tcpwatch_record = "aggregate",
            tcpwatch_kind = a.kind.as_str(),
            tcpwatch_reason = a.reason.as_deref(),
            tcpwatch_port = a.port,
            tcpwatch_netns = a.netns,
            tcpwatch_count = a.count,
            tcpwatch_pid = pid(owner),
            tcpwatch_comm = comm(owner),
            tcpwatch_unit = unit(owner),
            tcpwatch_container = container(owner),
            tcpwatch_cgroup = cgroup(owner),
            "{}",
            terminal::aggregate_line(a, self.home_netns)
        );
        Ok(())
    }

    fn sample(&mut self, _sample: &SampleRecord) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
