//! Subcommands.
pub mod explain;
pub mod probes;
pub mod session;
pub mod trace;
