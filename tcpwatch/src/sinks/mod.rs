//! Output formats and destinations.
pub mod fanout;
pub mod file;
pub mod finding_block;
pub mod journald;
pub mod metrics_endpoint;
pub mod output;
pub mod prometheus;
pub mod sink;
pub mod terminal;
