//! Output formats.
pub mod finding_block;
pub mod output;
pub mod sink;
pub mod terminal;
