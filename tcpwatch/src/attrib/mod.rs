//! Attribution of sockets to processes beyond what the kernel programs see.
pub mod census;
pub mod seed;
