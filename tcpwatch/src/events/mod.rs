//! From ring-buffer bytes to the public event schema.
pub mod clock;
pub mod convert;
pub mod counters;
pub mod decode;
pub mod errno;
pub mod kstack;
pub mod model;
pub mod reader;
pub mod storm;
