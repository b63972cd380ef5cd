//! A finding as a short block for people: title, who, the facts with numbers,
//! and the fix.
//!
//! ```text
//! 13:34:35.448389 FINDING keepalive_idle_race (exact): Keep-alive idle-timeout race
//!   flow      127.0.0.1:8080 > 127.0.0.1:39584
//!   owner     api-server[18241]   peer api-client[18283]
//!   what      pid 18241 (api-server) closed this keep-alive connection after 1.0 s idle; ...
//!   evidence  - the connection had been idle for 1.0 s when the server closed it
//!             - the next request came 97 ms after the close
//!   fix       Make the client's idle timeout shorter than the server's ...
//! ```

use std::fmt::Write as _;

use chrono::Local;

use crate::{
    events::kstack,
    explain::finding::{Confidence, FindingRecord},
};

/// Width the text is wrapped to.
const WIDTH: usize = 110;
/// Indent of the values.
const INDENT: usize = 12;
/// Innermost frames of a kernel stack shown (the event line shows them all).
const KSTACK_FRAMES: usize = 8;

/// The block, ending with a newline.
pub fn block(f: &FindingRecord, home_netns: u32) -> String {
    let mut out = String::new();
    let time = f.time.with_timezone(&Local).format("%H:%M:%S%.6f");
    let confidence = match f.confidence {
        Confidence::Exact => "exact",
        Confidence::Inferred => "inferred",
    };
    let _ = write!(
        out,
        "{time} FINDING {} ({confidence}): {}",
        f.cause.id(),
        f.title
    );
    if f.count > 1 {
        let _ = write!(out, "  [x{} in the last window]", f.count);
    }
    out.push('\n');
    let mut where_ = String::new();
    if let Some(flow) = &f.flow {
        let _ = write!(where_, "{} > {}", flow.src, flow.dst);
    } else if let Some(port) = f.port {
        let _ = write!(where_, "port {port}");
    }
    if f.netns != home_netns {
        let _ = write!(
            where_,
            "{}netns {}",
            if where_.is_empty() { "" } else { "  " },
            f.netns
        );
    }
    if !where_.is_empty() {
        line(&mut out, "flow", &where_);
    }
    let who = |p: &crate::events::model::Process| format!("{}[{}]", p.comm, p.pid);
    match (&f.owner, &f.peer_owner) {
        (Some(o), Some(p)) => line(&mut out, "owner", &format!("{}   peer {}", who(o), who(p))),
        (Some(o), None) => line(&mut out, "owner", &who(o)),
        (None, Some(p)) => line(&mut out, "owner", &format!("-   peer {}", who(p))),
        (None, None) => {}
    }
    line(&mut out, "what", &f.summary);
    for (i, e) in f.evidence.iter().enumerate() {
        line(
            &mut out,
            if i == 0 { "evidence" } else { "" },
            &format!("- {}", e.text),
        );
    }
    line(&mut out, "fix", &f.fix);
    let frames = f.kstack.as_deref().unwrap_or_default();
    for (i, frame) in frames.iter().take(KSTACK_FRAMES).enumerate() {
        line(
            &mut out,
            if i == 0 { "kstack" } else { "" },
            &kstack::describe(frame),
        );
    }
    if frames.len() > KSTACK_FRAMES {
        let more = frames.len() - KSTACK_FRAMES;
        line(
            &mut out,
            "",
            &format!("... {more} more frames (all in --json)"),
        );
    }
    out
}

fn line(out: &mut String, label: &str, text: &str) {
    let options = textwrap::Options::new(WIDTH - INDENT - 2).subsequent_indent("  ");
    for (i, piece) in textwrap::wrap(text, options).iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        let _ = writeln!(out, "  {label:<width$}{piece}", width = INDENT - 2);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{
        events::model::{Flow, Process},
        explain::cause::Cause,
    };

    #[test]
    fn renders_the_parts() {
        let mut f = FindingRecord::new(
            Cause::KeepaliveIdleRace,
            Confidence::Exact,
            Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            7,
            "pid 1 (srv) closed this keep-alive connection after 1.0 s idle; a long explanation that needs to wrap onto a second line because it goes on and on".into(),
            "Make the client's idle timeout shorter.".into(),
        );
        f.flow = Some(Flow {
            family: "ipv4".into(),
            src: "127.0.0.1:80".into(),
            dst: "127.0.0.1:5000".into(),
            netns: 7,
        });
        f.owner = Some(Process {
            pid: 1,
            tid: 1,
            comm: "srv".into(),
            uid: 0,
            cgroup_id: 0,
            source: None,
            closed_ms_before: None,
            cgroup: None,
            unit: None,
            container: None,
        });
        f.add("idle_before_close_ms", 1000, "idle for 1.0 s".into());
        f.count = 3;
        let b = block(&f, 7);
        assert!(
            b.contains("FINDING keepalive_idle_race (exact): Keep-alive idle-timeout race  [x3"),
            "{b}"
        );
        assert!(
            b.contains("  flow      127.0.0.1:80 > 127.0.0.1:5000\n"),
            "{b}"
        );
        assert!(b.contains("  owner     srv[1]\n"), "{b}");
        assert!(b.contains("  evidence  - idle for 1.0 s\n"), "{b}");
        assert!(b.contains("  fix       Make the client's"), "{b}");
        assert!(b.lines().all(|l| l.chars().count() <= WIDTH + 20), "{b}");
        assert!(
            b.lines()
                .filter(|l| l.starts_with("  what") || l.starts_with("              "))
                .count()
                >= 2,
            "wrapped: {b}"
        );
    }

    #[test]
    fn a_kernel_stack_shows_its_innermost_frames() {
        let mut f = FindingRecord::new(
            Cause::NoListener,
            Confidence::Exact,
            Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            7,
            "refused".into(),
            "Start the service.".into(),
        );
        f.kstack = Some(
            (0..10)
                .map(|i| crate::events::model::Frame {
                    address: format!("{:#x}", 0xffff_ffff_8100_0000_u64 + i),
                    symbol: Some(format!("fn{i}")),
                    offset: Some(16),
                })
                .collect(),
        );
        let b = block(&f, 7);
        assert!(
            b.contains("  kstack    fn0+0x10\n            fn1+0x10\n"),
            "{b}"
        );
        assert!(b.contains("fn7+0x10\n") && !b.contains("fn8"), "{b}");
        assert!(b.contains("... 2 more frames (all in --json)\n"), "{b}");
    }
}
