//! Exit codes and the one-line error users see.

use std::fmt;

/// A failed command: the message and the exit code.
pub struct Failure {
    /// Process exit code.
    pub code: u8,
    /// What went wrong (printed as one line, with causes joined by `: `).
    pub error: anyhow::Error,
}

/// Bad input or an environment tcpwatch cannot run in (not root, no BTF, no
/// tracefs, a bad filter).
pub const USAGE: u8 = 2;
/// A failure while running.
pub const RUNTIME: u8 = 1;

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Tags an error with an exit code.
pub trait OrExit<T> {
    /// Bad input or unusable environment: exit 2.
    fn or_usage(self) -> Result<T, Failure>;
    /// Runtime failure: exit 1.
    fn or_runtime(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_usage(self) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            code: USAGE,
            error: e.into(),
        })
    }

    fn or_runtime(self) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            code: RUNTIME,
            error: e.into(),
        })
    }
}
