//! Context for the explanations: counters, sysctls and socket summaries of the
//! active network namespaces, sampled periodically.
pub mod backlogs;
pub mod netstat;
pub mod sample;
pub mod sampler;
pub mod sockets;
pub mod sysctls;
