//! Diagnostics: to stderr for people, or, when stderr is the journal (a
//! systemd service), straight to journald with structured fields, so that
//! `journalctl TCPWATCH_CAUSE=...` finds the daemon's findings
//! ([`crate::sinks::journald`]). The level can change while running (the
//! daemon's `log.level` on reload) unless `RUST_LOG` or `-v` set it. While
//! `tcpwatch top` owns the terminal, stderr lines are held and written out
//! when it gives the terminal back ([`hold`]).

use std::{
    io::{self, IsTerminal as _, Write},
    os::unix::fs::MetadataExt,
    sync::{Mutex, MutexGuard},
};

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
            .with_writer(|| Stderr)
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

/// At most this many bytes of diagnostics are held while the terminal is
/// taken; later lines are counted, not kept.
const HELD_BYTES: usize = 64 * 1024;

/// Diagnostics held while a live view owns the terminal.
struct Held {
    text: Vec<u8>,
    lines: u64,
    dropped: u64,
}

static HELD: Mutex<Option<Held>> = Mutex::new(None);

fn held() -> MutexGuard<'static, Option<Held>> {
    // A panic while holding the lock leaves the text intact: keep using it.
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// stderr, or the held text while a [`Hold`] lasts. The fmt layer writes each
/// record with one `write_all`, so a record is held or dropped whole.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut held = held();
        match held.as_mut() {
            Some(h) if h.text.len() + buf.len() <= HELD_BYTES => {
                h.text.extend_from_slice(buf);
                h.lines += 1;
            }
            Some(h) => h.dropped += 1,
            None => {
                drop(held);
                return io::stderr().write(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Diagnostics are held (not written to the terminal a live view draws on)
/// until this is dropped; then they are written to stderr, with a count of
/// those that did not fit.
pub struct Hold(());

/// Starts holding diagnostics.
pub fn hold() -> Hold {
    *held() = Some(Held {
        text: Vec::new(),
        lines: 0,
        dropped: 0,
    });
    Hold(())
}

/// Diagnostic records held so far (and dropped because the hold was full); 0
/// when none are held.
pub fn held_records() -> u64 {
    held().as_ref().map_or(0, |h| h.lines + h.dropped)
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(h) = held().take() else { return };
        // The terminal may be gone (a hang-up): nothing to do about a failed write.
        let mut stderr = io::stderr().lock();
        let _ = stderr.write_all(&h.text);
        if h.dropped > 0 {
            let _ = writeln!(
                stderr,
                "tcpwatch: {} more diagnostic lines were dropped while the screen was shown",
                h.dropped
            );
        }
    }
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
