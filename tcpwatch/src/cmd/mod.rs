//! Subcommands.
pub mod explain;
pub mod pipeline;
pub mod probes;
pub mod session;
pub mod trace;
