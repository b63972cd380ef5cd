//! Checking, before anything else, that tcpwatch may load BPF programs.

use caps::{CapSet, Capability};

/// Why tracing is not permitted.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Capabilities are missing.
    #[error(
        "needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: {missing}); run it with sudo"
    )]
    Missing {
        /// The missing capabilities, comma-separated.
        missing: String,
    },
    /// The capability sets could not be read.
    #[error("cannot read this process's capabilities: {0}")]
    Unreadable(String),
    /// Debian's (and some others') perf_event_paranoid level 3 lets only
    /// CAP_SYS_ADMIN open perf events, which attaching a tracepoint needs.
    #[error(
        "kernel.perf_event_paranoid is {0}: this kernel lets only CAP_SYS_ADMIN attach tracepoints and kprobes (CAP_PERFMON is not enough); run as root, add CAP_SYS_ADMIN, or set sysctl kernel.perf_event_paranoid=2"
    )]
    Paranoid(i32),
}

/// Where the kernel's perf_event_open restriction is set.
const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

/// Checks the effective capabilities needed to load and attach the programs:
/// CAP_BPF and CAP_PERFMON (5.8+), or CAP_SYS_ADMIN which implies both.
pub fn check() -> Result<(), PrivilegeError> {
    let has = |cap| {
        caps::has_cap(None, CapSet::Effective, cap)
            .map_err(|e| PrivilegeError::Unreadable(e.to_string()))
    };
    if has(Capability::CAP_SYS_ADMIN)? {
        return Ok(());
    }
    let missing: Vec<&str> = [
        (Capability::CAP_BPF, "CAP_BPF"),
        (Capability::CAP_PERFMON, "CAP_PERFMON"),
    ]
    .into_iter()
    .filter_map(|(cap, name)| match has(cap) {
        Ok(true) => None,
        _ => Some(name),
    })
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PrivilegeError::Missing {
            missing: missing.join(", "),
        })
    }
}

/// Checks that perf events may be opened (attaching tracepoints and kprobes
/// needs them). A `kernel.perf_event_paranoid` above 2 is not upstream: a
/// distribution patch (Debian's default is 3) that refuses perf_event_open()
/// without CAP_SYS_ADMIN, whatever CAP_PERFMON says.
pub fn check_perf_events() -> Result<(), PrivilegeError> {
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false) {
        return Ok(());
    }
    match paranoid_level() {
        Some(level) if level > 2 => Err(PrivilegeError::Paranoid(level)),
        _ => Ok(()),
    }
}

fn paranoid_level() -> Option<i32> {
    std::fs::read_to_string(PARANOID).ok()?.trim().parse().ok()
}

/// What tracing loses without the optional capabilities, one line each (empty
/// as root). Tracing needs only CAP_BPF, CAP_PERFMON and read access to
/// tracefs (CAP_DAC_READ_SEARCH unless root).
pub fn limits() -> Vec<&'static str> {
    let has = |cap| caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false);
    let mut lost = Vec::new();
    if !has(Capability::CAP_SYS_ADMIN) {
        lost.push(
            "without CAP_SYS_ADMIN, other network namespaces cannot be entered: their existing sockets are not attributed at start and their counters and socket states are not sampled",
        );
    }
    if !has(Capability::CAP_SYS_PTRACE) {
        lost.push(
            "without CAP_SYS_PTRACE, sockets that other users' processes opened before start are not attributed",
        );
    }
    lost
}
