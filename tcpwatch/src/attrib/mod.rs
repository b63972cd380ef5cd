//! Attribution of sockets to processes beyond what the kernel programs see.
pub mod census;
pub mod cgroup;
pub mod netns;
pub mod seed;
pub mod sock_diag;
