//! tracefs: where it is, which events exist, and their `format` files.
//!
//! Tracepoint record layouts change between kernels (kernel-facts §1): field
//! offsets are read from `events/<system>/<event>/format` at start-up, never
//! compiled in.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use tcpwatch_common::layout::{TpField, TpLayout};

/// Errors reading tracefs.
#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    /// No tracefs mount was found and mounting one failed.
    #[error(
        "tracefs is not available (no /sys/kernel/tracing/events, and mounting tracefs there failed: {0}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`"
    )]
    NotMounted(String),
    /// tracefs is there but this process may not read it.
    #[error(
        "cannot read tracefs at {0}: permission denied; run as root, or add CAP_DAC_READ_SEARCH to CAP_BPF and CAP_PERFMON"
    )]
    NoAccess(String),
    /// A format file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A format file did not parse.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        problem: String,
    },
}

/// A located tracefs mount.
#[derive(Clone, Debug)]
pub struct Tracefs {
    root: PathBuf,
}

impl Tracefs {
    /// Finds tracefs at `/sys/kernel/tracing` or `/sys/kernel/debug/tracing`,
    /// mounting it at `/sys/kernel/tracing` when that directory is empty.
    pub fn locate() -> Result<Self, TracefsError> {
        for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
            match fs::metadata(Path::new(root).join("events")) {
                Ok(m) if m.is_dir() => return Ok(Self { root: root.into() }),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(TracefsError::NoAccess(root.into()));
                }
                _ => {}
            }
        }
        mount_tracefs("/sys/kernel/tracing").map_err(TracefsError::NotMounted)?;
        Ok(Self {
            root: "/sys/kernel/tracing".into(),
        })
    }

    /// A tracefs tree at `root` (tests use fixture trees of other kernels).
    #[cfg(test)]
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether kprobe events can be created here (`kprobe_events` exists).
    pub fn has_kprobe_events(&self) -> bool {
        self.root.join("kprobe_events").exists()
    }

    /// The parsed format of `system:event`, or `None` if it does not exist.
    pub fn format(&self, system: &str, event: &str) -> Result<Option<TpFormat>, TracefsError> {
        let path = self
            .root
            .join("events")
            .join(system)
            .join(event)
            .join("format");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(TracefsError::Read { path, source }),
        };
        TpFormat::parse(&text)
            .map(Some)
            .map_err(|problem| TracefsError::Format { path, problem })
    }
}

fn mount_tracefs(target: &str) -> Result<(), String> {
    nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| e.to_string())?;
    if Path::new(target).join("events").is_dir() {
        Ok(())
    } else {
        Err(format!("{target}/events missing after mount"))
    }
}

/// One field line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDesc {
    /// Field name (without array suffix).
    pub name: String,
    /// C declaration as written (e.g. `__u8 saddr[28]`).
    pub decl: String,
    /// Byte offset in the record.
    pub offset: u16,
    /// Size in bytes.
    pub size: u16,
}

/// A parsed tracepoint `format` file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TpFormat {
    /// Payload fields (the `common_*` header fields are left out: BPF programs
    /// cannot use them).
    pub fields: Vec<FieldDesc>,
    /// The `print fmt:` line's text.
    pub print_fmt: String,
}

impl TpFormat {
    /// Parses the text of a format file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut format = TpFormat::default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("print fmt:") {
                format.print_fmt = rest.trim().to_owned();
            } else if line.starts_with("field:") {
                let field = parse_field(line)?;
                if !field.name.starts_with("common_") {
                    format.fields.push(field);
                }
            }
        }
        if format.fields.is_empty() {
            return Err("no fields found".into());
        }
        Ok(format)
    }

    /// The named field, if present.
    pub fn get(&self, name: &str) -> Option<&FieldDesc> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The named field as a [`TpField`] (ABSENT if missing).
    pub fn field(&self, name: &str) -> TpField {
        self.get(name).map_or(TpField::ABSENT, |f| TpField {
            offset: f.offset,
            size: f.size,
        })
    }

    /// The layout of every field tcpwatch knows, ABSENT where missing.
    pub fn layout(&self) -> TpLayout {
        TpLayout {
            skbaddr: self.field("skbaddr"),
            // `sock:sock_*_length` call the socket `sk`.
            skaddr: Some(self.field("skaddr"))
                .filter(TpField::present)
                .unwrap_or_else(|| self.field("sk")),
            state: self.field("state"),
            oldstate: self.field("oldstate"),
            newstate: self.field("newstate"),
            reason: self.field("reason"),
            sport: self.field("sport"),
            dport: self.field("dport"),
            family: self.field("family"),
            protocol: self.field("protocol"),
            saddr: self.field("saddr"),
            daddr: self.field("daddr"),
            saddr_v6: self.field("saddr_v6"),
            daddr_v6: self.field("daddr_v6"),
            ret: self.field("ret"),
            rx_sk: self.field("rx_sk"),
            fd: self.field("fd"),
            backlog: self.field("backlog"),
            location: self.field("location"),
        }
    }

    /// The `{ value, "NAME" }` table of the `__print_symbolic(REC-><field>, ...)`
    /// call in the print fmt, for entries whose value is a number.
    pub fn symbolic_table(&self, field: &str) -> Vec<(u64, String)> {
        let needle = format!("__print_symbolic(REC->{field},");
        let Some(start) = self.print_fmt.find(&needle) else {
            return Vec::new();
        };
        let mut table = Vec::new();
        let mut rest = &self.print_fmt[start + needle.len()..];
        loop {
            let trimmed = rest.trim_start();
            let Some(entry) = trimmed.strip_prefix('{') else {
                break;
            };
            let Some(end) = entry.find('}') else { break };
            let (value, name) = entry[..end].split_once(',').unwrap_or(("", ""));
            let name = name.trim().trim_matches('"');
            if let Ok(value) = value.trim().parse::<u64>() {
                table.push((value, name.to_owned()));
            }
            rest = entry[end + 1..].trim_start();
            match rest.strip_prefix(',') {
                Some(more) => rest = more,
                None => break,
            }
        }
        table
    }
}

/// Parses `field:<decl>;\toffset:<n>;\tsize:<n>;\tsigned:<n>;`.
fn parse_field(line: &str) -> Result<FieldDesc, String> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    for part in line.split(';') {
        let part = part.trim();
        if let Some(d) = part.strip_prefix("field:") {
            decl = Some(d.trim().to_owned());
        } else if let Some(o) = part.strip_prefix("offset:") {
            offset = o.trim().parse::<u16>().ok();
        } else if let Some(s) = part.strip_prefix("size:") {
            size = s.trim().parse::<u16>().ok();
        }
    }
    let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
        return Err(format!("malformed field line: {line}"));
    };
    let name = decl
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()
        .unwrap_or("")
        .split('[')
        .next()
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        return Err(format!("field without a name: {line}"));
    }
    Ok(FieldDesc {
        name,
        decl,
        offset,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_RESET_618: &str = "name: tcp_send_reset\nID: 2280\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n\tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;\n\tfield:__u8 daddr[28];\toffset:60;\tsize:28;\tsigned:0;\n\nprint fmt: \"state=%s reason=%s\", REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, \"TCP_ESTABLISHED\" }) : \"UNKNOWN\", __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" }, { 25, \"MAX\" })\n";

    #[test]
    fn parses_fields_and_skips_common_header() {
        let f = TpFormat::parse(SEND_RESET_618).unwrap();
        let names: Vec<_> = f.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["skbaddr", "skaddr", "state", "reason", "saddr", "daddr"]
        );
        assert_eq!(
            f.field("saddr"),
            TpField {
                offset: 32,
                size: 28
            }
        );
        assert!(!f.field("sport").present());
        assert_eq!(
            f.layout().reason,
            TpField {
                offset: 28,
                size: 4
            }
        );
    }

    #[test]
    fn symbolic_table_reads_numeric_entries_only() {
        let f = TpFormat::parse(SEND_RESET_618).unwrap();
        assert_eq!(
            f.symbolic_table("reason"),
            vec![
                (0, "NOT_SPECIFIED".to_owned()),
                (1, "NO_SOCKET".to_owned()),
                (25, "MAX".to_owned())
            ]
        );
        // The state table uses symbolic names, not numbers: nothing usable.
        assert!(f.symbolic_table("state").is_empty());
        assert!(f.symbolic_table("nope").is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!(TpFormat::parse("").is_err());
        assert!(TpFormat::parse("field:int x;\toffset:zz;\tsize:4;").is_err());
    }
}
