//! How findings phrase processes, durations and sizes, so every rule speaks
//! the same way.

use crate::events::model::Process;

/// `nginx (pid 812)`, or `an unknown process`. Takes a process or a shared
/// one (flow histories share owners).
pub fn who<P: AsRef<Process>>(process: Option<&P>) -> String {
    process.map(AsRef::as_ref).map_or_else(
        || "an unknown process".to_owned(),
        |p| format!("{} (pid {})", p.comm, p.pid),
    )
}

/// `pid 812 (nginx)`: for sentences that start with the process.
pub fn pid<P: AsRef<Process>>(process: Option<&P>) -> String {
    process.map(AsRef::as_ref).map_or_else(
        || "an unknown process".to_owned(),
        |p| format!("pid {} ({})", p.pid, p.comm),
    )
}

/// `850 ms`, `1.2 s`, `3 min`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min", ms / 60_000),
    }
}

/// Percent with no decimals.
pub fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(1_204), "1.2 s");
        assert_eq!(duration_ms(600_000), "10 min");
    }
}
