//! Shared helpers of the kernel integration tests.
pub mod capabilities;
pub mod harness;
pub mod netns;
pub mod peer;
pub mod servers;
pub mod tracer;
