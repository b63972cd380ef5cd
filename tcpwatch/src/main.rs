//! The `tcpwatch` command: parses the command line, sets up logging, and runs
//! a subcommand of the library (see the crate docs of `tcpwatch`).

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use tcpwatch::{
    cli::{Cli, Command},
    cmd, exit,
    exit::{Failure, OrExit},
};
use tracing_subscriber::EnvFilter;

/// jemalloc: see its line in Cargo.toml.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
