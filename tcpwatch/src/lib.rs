//! tcpwatch: who reset this TCP connection, and why.
//!
//! An eBPF tracer for TCP resets and state transitions. Kernel programs
//! (`tcpwatch-ebpf`, embedded at build time) hook `sock:inet_sock_set_state`,
//! `tcp:tcp_send_reset`/`tcp:tcp_receive_reset` (or kprobes on the reset
//! functions where the tracepoint is incomplete) and stream events through a BPF
//! ring buffer; this program attributes each one to the process that owns the
//! socket and prints it.
//!
//! ```text
//! $ sudo tcpwatch trace
//! tcpwatch: attached 6 programs in 41 ms; tracing
//! 14:02:11.482913 reset_sent     127.0.0.1:9 > 127.0.0.1:53122  NO_SOCKET (no socket; incoming SYN)  owner=- listener=-  actor=curl[4121]
//! ```
//!
//! Modules: `probes` (what the kernel offers, the attach plan, loading),
//! `events` (ring buffer → validated records → public schema, storm mode),
//! `attrib` (start-up census of socket owners, cgroups → units and
//! containers), `context` (namespace samples: counters, sysctls, socket
//! states), `explain` (rules → findings), `sinks` (text, JSON Lines, metrics,
//! journald, file), `top` (the live terminal view: its aggregates, layout,
//! screen and keys), `recorder` (the daemon's flight recorder), `config` (the
//! daemon's file), `cmd` (subcommands). The binary
//! (`src/main.rs`) parses the command line and runs a subcommand; the library
//! exists so the fuzz targets (`fuzz/`) can reach the decoders.

pub mod attrib;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod context;
pub mod events;
pub mod exit;
pub mod explain;
pub mod filters;
pub mod logging;
pub mod privileges;
pub mod probes;
pub mod recorder;
pub mod selection;
pub mod service_manager;
pub mod sinks;
pub mod top;
