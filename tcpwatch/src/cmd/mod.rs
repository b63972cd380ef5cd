//! Subcommands.
pub mod probes;
pub mod trace;
