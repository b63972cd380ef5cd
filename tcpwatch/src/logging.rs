//! Diagnostics: to stderr for people, or, when stderr is the journal (a
//! systemd service), straight to journald with structured fields, so that
//! `journalctl TCPWATCH_CAUSE=...` finds the daemon's findings
//! ([`crate::sinks::journald`]). The level can change while running (the
//! daemon's `log.level` on reload) unless `RUST_LOG` or `-v` set it.

use std::{io::IsTerminal as _, os::unix::fs::MetadataExt};

use tracing_subscriber::{
    EnvFilter, Layer as _, Registry, layer::SubscriberExt as _, reload,
    util::SubscriberInitExt as _,
};

use crate::sinks::journald::TARGET as RECORDS;

/// The installed logging.
pub struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    fixed: bool,
    bpf_log: bool,
}

/// Installs logging. `verbose` is the count of `-v`; `bpf_log` lets the kernel
/// programs' records (target `tcpwatch_ebpf`) through; `timestamps` prefixes
/// stderr lines with the time (long-running commands).
pub fn init(verbose: u8, bpf_log: bool, timestamps: bool) -> Logging {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some() || verbose > 0;
    let filter = from_env.unwrap_or_else(|| filter(default, bpf_log));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = stderr_is_journal()
        .then(|| {
            tracing_journald::layer().ok().map(|layer| {
                layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("tcpwatch".into())
            })
        })
        .flatten();
    let stderr = journald.is_none().then(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false);
        if timestamps {
            layer.boxed()
        } else {
            layer.without_time().boxed()
        }
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .init();
    Logging {
        handle,
        fixed,
        bpf_log,
    }
}

impl Logging {
    /// Sets the level (`info`, `debug`, ...), unless `RUST_LOG` or `-v` chose it.
    pub fn set_level(&self, level: &str) {
        if self.fixed {
            return;
        }
        let _ = self.handle.reload(filter(level, self.bpf_log));
    }
}

fn filter(level: &str, bpf_log: bool) -> EnvFilter {
    let mut filter = EnvFilter::new(level);
    // The records sinks write are output, not diagnostics: never filtered out.
    for directive in [format!("{RECORDS}=info")]
        .into_iter()
        .chain(bpf_log.then(|| "tcpwatch_ebpf=trace".to_owned()))
    {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Whether stderr is connected to the journal: systemd sets `JOURNAL_STREAM`
/// to the device and inode of the stream it gave the service.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
