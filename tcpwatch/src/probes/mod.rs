//! What the running kernel offers and how tcpwatch hooks into it.
pub mod attach;
pub mod btf;
pub mod features;
#[cfg(test)]
mod fixtures;
pub mod kernel;
pub mod kernel_enums;
pub mod netfilter;
pub mod plan;
pub mod tracefs;
