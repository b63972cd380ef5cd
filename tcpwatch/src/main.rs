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
//! (start-up census of socket owners, cgroups → units and containers),
//! `explain` (findings), `sinks` (text, JSON Lines, metrics, journald, file),
//! `recorder` (the daemon's flight recorder), `config` (the daemon's file),
//! `cmd` (subcommands).

mod attrib;
mod cli;
mod cmd;
mod config;
mod context;
mod events;
mod exit;
mod explain;
mod filters;
mod logging;
mod privileges;
mod probes;
mod recorder;
mod selection;
mod service_manager;
mod sinks;

use std::process::ExitCode;

use clap::Parser as _;

use crate::{
    cli::{Cli, Command},
    exit::{Failure, OrExit},
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let daemon = matches!(&cli.command, Command::Daemon(_));
    let logging = logging::init(cli.verbose, bpf_log, daemon);
    match run(cli, &logging) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("tcpwatch: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli, logging: &logging::Logging) -> Result<(), Failure> {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .or_runtime()
    };
    match cli.command {
        Command::Probes(args) => cmd::probes::run(&args),
        Command::Explain(args) => cmd::explain::run(&args),
        Command::Trace(args) => runtime()?.block_on(cmd::trace::run(*args)),
        Command::Daemon(args) => runtime()?.block_on(cmd::daemon::run(&args, logging)),
        Command::Query(args) => cmd::query::run(&args),
        Command::Generate(args) => cmd::generate::run(&args),
    }
}
