//! Developer chores for tcpwatch (`cargo xtask --help`). Users never need this:
//! the `tcpwatch` binary is self-contained.
//!
//! - `cargo xtask setup`: install the offline eBPF toolchain (idempotent).
//! - `cargo xtask bench`: measure tcpwatch's cost (docs/performance.md).
//! - `cargo xtask deb`: build the Debian package.
//! - `cargo xtask service-test`: the unit under systemd as PID 1 (nspawn).
//! - `cargo xtask vm`: the tests on Debian kernels 6.1 and 6.12 under QEMU/TCG,
//!   or any command in such a guest.

mod apt;
mod bench;
mod command;
mod deb;
mod service_test;
mod setup;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tcpwatch developer chores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building tcpwatch needs on Debian bookworm: Debian's
    /// rustc-web, cargo-web and rust-web-src, the LLVM matching that rustc, and
    /// bpf-linker built against it. Idempotent; fast when already done.
    Setup(setup::Args),
    /// Build the Debian package (binary, systemd unit, example configuration, man
    /// pages, shell completions) into target/debian/.
    Deb(deb::Args),
    /// Check the systemd unit's exposure score, then boot a Debian root with systemd
    /// as PID 1 (systemd-nspawn), install the .deb there and test the service: READY,
    /// journald fields, metrics, query, reload, clean stop. Needs root.
    ServiceTest(service_test::Args),
    /// Measure tcpwatch's cost against a floor program, bpftrace and no
    /// tracing (as root; results for docs/performance.md).
    Bench(bench::Args),
    /// A load generator process of the benchmarks (internal).
    #[command(hide = true)]
    BenchLoad(bench::load::Args),
    /// Run the integration and scenario tests on each kernel of the matrix
    /// (Debian 6.1 and 6.12) in QEMU/TCG guests with a Debian userland, or run
    /// a command there: `cargo xtask vm --kernel 6.1 -- tcpwatch probes`.
    /// Needs root the first time (packages, the guests' root).
    Vm(vm::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup(args) => setup::run(&args),
        Command::Deb(args) => deb::run(&args).map(|_| ()),
        Command::ServiceTest(args) => service_test::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchLoad(args) => bench::load::run(&args),
        Command::Vm(args) => vm::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
