//! The `tcpwatch` command: parses the command line, sets up logging, and runs
//! a subcommand of the library (see the crate docs of `tcpwatch`).

use std::process::ExitCode;

use clap::Parser as _;
use tcpwatch::{
    cli::{Cli, Command},
    cmd, exit,
    exit::{Failure, OrExit},
    logging,
};

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
        Command::Top(args) => runtime()?.block_on(cmd::top::run(*args)),
        Command::Daemon(args) => runtime()?.block_on(cmd::daemon::run(&args, logging)),
        Command::Query(args) => cmd::query::run(&args),
        Command::Generate(args) => cmd::generate::run(&args),
    }
}
