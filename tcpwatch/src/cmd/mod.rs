//! Subcommands.
pub mod daemon;
pub mod explain;
pub mod generate;
pub mod pipeline;
pub mod probes;
pub mod query;
pub mod session;
pub mod top;
pub mod trace;
