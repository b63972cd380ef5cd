//! Output formats.
pub mod output;
pub mod terminal;
