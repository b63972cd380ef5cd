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
//! `events` (ring buffer → validated records → public schema), `attrib`
//! (start-up census of socket owners), `sinks` (text and JSON Lines), `cmd`
//! (subcommands).

mod attrib;
mod cli;
mod cmd;
mod config;
mod context;
mod events;
mod exit;
mod explain;
mod filters;
mod privileges;
mod probes;
mod selection;
mod sinks;

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use crate::{
    cli::{Cli, Command},
    exit::{Failure, OrExit},
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line: clap's first paragraph joined, without its usage hint.
            let rendered = e.render().to_string();
            let first: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!("tcpwatch: {first} (see --help)");
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => e.exit(), // --help, --version
    };
    let bpf_log = matches!(&cli.command, Command::Trace(t) if t.bpf_log);
    init_logging(cli.verbose, bpf_log);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("tcpwatch: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Probes(args) => cmd::probes::run(&args),
        Command::Explain(args) => cmd::explain::run(&args),
        Command::Trace(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .or_runtime()?
            .block_on(cmd::trace::run(*args)),
    }
}

/// Diagnostics to stderr. `bpf_log` lets the kernel programs' records (target
/// `tcpwatch_ebpf`, forwarded by aya-log) through at every level.
fn init_logging(verbose: u8, bpf_log: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if bpf_log && let Ok(directive) = "tcpwatch_ebpf=trace".parse() {
        filter = filter.add_directive(directive);
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}
