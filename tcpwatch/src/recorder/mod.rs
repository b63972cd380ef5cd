//! The flight recorder: the daemon keeps the last minutes of events and
//! findings in bounded memory and answers `tcpwatch query` over a unix socket.
pub mod protocol;
pub mod server;
pub mod store;
