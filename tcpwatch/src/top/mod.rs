//! `tcpwatch top`: the live terminal view of an incident's first minutes.
pub mod board;
pub mod keys;
pub mod screen;
pub mod sink;
pub mod view;
