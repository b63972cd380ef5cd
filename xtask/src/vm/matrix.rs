//! `cargo xtask vm`: the kernel matrix.
//!
//! Without a command, every selected kernel boots once per test binary
//! (tests/cli.rs, cleanup.rs, kernel.rs, scenarios.rs of the tcpwatch package)
//! and the binary runs as root in the guest, against the project tree shared at
//! its host path. Each test's verdict is read from libtest's output; any
//! failure fails the command, naming the kernel and the tests.
//!
//! With `-- COMMAND...`, the command runs instead (in the workspace root, with
//! the release build on PATH) and its exit status is the command's.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{
    cache::Cache,
    initramfs::sh_quote,
    kernels::{self, Kernel, KernelPackage},
    qemu::{self, Guest, Outcome, Share, TcgThreads},
    rootfs,
    suite::{self, TestBinary, Verdicts},
};
use crate::{apt, command::output_of};

/// Host packages the matrix needs: QEMU, debootstrap for the guests' root,
/// depmod for the kernels' module index, and the decompressors for kernels and
/// modules.
const HOST_PACKAGES: &[&str] = &["qemu-system-x86", "debootstrap", "kmod", "xz-utils", "zstd"];

/// `cargo xtask vm` options.
#[derive(clap::Args)]
pub struct Args {
    /// Kernels to boot, by short name (6.1, 6.12) or release; default: all.
    kernels: Vec<String>,
    /// A kernel to boot (same as the positional names; repeatable).
    #[arg(long = "kernel", short = 'k', value_name = "KERNEL")]
    kernel: Vec<String>,
    /// Run only this test binary (cli, cleanup, kernel, scenarios; repeatable).
    #[arg(long = "test", value_name = "NAME")]
    tests: Vec<String>,
    /// Pass a name filter to each test binary (libtest's positional filter).
    #[arg(long, value_name = "SUBSTRING")]
    filter: Option<String>,
    /// Limit for one guest boot, in seconds.
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// Guest vCPUs (TCG runs one host thread per vCPU).
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// How TCG runs the vCPUs: `single` (one host thread, coherent code
    /// patching) or `multi` (a thread per vCPU, faster).
    #[arg(long, value_enum, default_value_t = TcgThreads::Single)]
    tcg_threads: TcgThreads,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Debian mirror for building the guests' root.
    #[arg(long, env = "TCPWATCH_VM_MIRROR", default_value = rootfs::DEFAULT_MIRROR)]
    mirror: String,
    /// Run this command in each guest instead of the tests (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// The workspace as cargo sees it.
struct Workspace {
    root: PathBuf,
    target: PathBuf,
}

/// Runs `cargo xtask vm`.
pub fn run(args: &Args) -> Result<()> {
    let kernels = selected_kernels(args)?;
    let suites = suite::select(&args.tests)?;
    apt::ensure_installed(HOST_PACKAGES, "vm")?;
    let workspace = workspace()?;
    let cache = Cache::locate()?;

    let binaries = if args.command.is_empty() {
        Some(suite::build(&workspace.root, &suites)?)
    } else {
        build_release(&workspace.root)?;
        None
    };
    let root = rootfs::prepare(&cache, &args.mirror)?;
    let kernels: Vec<Kernel> = kernels
        .into_iter()
        .map(|k| kernels::prepare(k, &cache))
        .collect::<Result<_>>()?;

    let matrix = Matrix {
        args,
        cache: &cache,
        root: &root,
        workspace: &workspace,
    };
    match binaries {
        None => matrix.commands(&kernels),
        Some(binaries) => matrix.tests(&kernels, &binaries),
    }
}

fn selected_kernels(args: &Args) -> Result<Vec<KernelPackage>> {
    let names: Vec<&String> = args.kernels.iter().chain(&args.kernel).collect();
    if names.is_empty() {
        return Ok(kernels::KERNELS.to_vec());
    }
    names.into_iter().map(|n| kernels::lookup(n)).collect()
}

fn workspace() -> Result<Workspace> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = output_of(
        Command::new(cargo)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    )?;
    let meta: serde_json::Value = serde_json::from_slice(&out).context("cargo metadata output")?;
    let path = |key: &str| -> Result<PathBuf> {
        meta[key]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("cargo metadata has no {key}"))
    };
    Ok(Workspace {
        root: path("workspace_root")?,
        target: path("target_directory")?,
    })
}

fn build_release(workspace: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask: building tcpwatch (release)");
    crate::command::run_cmd(Command::new(cargo).current_dir(workspace).args([
        "build",
        "--release",
        "--package",
        "tcpwatch",
    ]))
}

struct Matrix<'a> {
    args: &'a Args,
    cache: &'a Cache,
    root: &'a Path,
    workspace: &'a Workspace,
}

/// One test binary's run on one kernel.
struct BinaryRun {
    name: String,
    verdicts: Verdicts,
    /// Why the run as a whole failed, beyond failed tests (crash, timeout).
    problem: Option<String>,
    wall: Duration,
}

impl Matrix<'_> {
    /// The project tree (and the target directory, if elsewhere) at their host
    /// paths, and the kernel's modules tree.
    fn shares(&self, kernel: &Kernel) -> Vec<Share> {
        let mut shares = vec![Share {
            tag: "project".into(),
            host: self.workspace.root.clone(),
            guest: self.workspace.root.clone(),
            writable: true,
        }];
        if !self.workspace.target.starts_with(&self.workspace.root) {
            shares.push(Share {
                tag: "target".into(),
                host: self.workspace.target.clone(),
                guest: self.workspace.target.clone(),
                writable: true,
            });
        }
        shares.push(Share {
            tag: "modules".into(),
            host: kernel.modules.clone(),
            guest: Path::new("/lib/modules").join(kernel.package.release()),
            writable: false,
        });
        shares
    }

    fn boot(&self, kernel: &Kernel, script: String) -> Result<Outcome> {
        let dir = self.cache.run_dir()?;
        qemu::run(
            &Guest {
                kernel,
                root: self.root,
                shares: self.shares(kernel),
                script,
                memory_mib: self.args.memory,
                cpus: self.args.cpus,
                tcg: self.args.tcg_threads,
                timeout: Duration::from_secs(self.args.timeout),
            },
            dir.path(),
        )
    }

    /// Keeps the whole kernel log of a failed boot in the cache's `logs`
    /// directory; says where (or why not).
    fn keep_console(&self, kernel: &Kernel, what: &str, outcome: &Outcome) -> String {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept = self.cache.dir("logs").and_then(|dir| {
            let path = dir.join(format!("{}-{what}-{stamp}.console", kernel.package.name));
            std::fs::write(&path, &outcome.console)?;
            Ok(path)
        });
        match kept {
            Ok(path) => format!("kept in {}", path.display()),
            Err(e) => format!("not kept: {e:#}"),
        }
    }

    /// `-- COMMAND`: runs it on each kernel; fails if it fails on any.
    fn commands(&self, kernels: &[Kernel]) -> Result<()> {
        let release = self.workspace.target.join("release");
        let mut script = format!(
            "cd {}\nexport PATH={}:\"$PATH\"\n",
            sh_quote(&self.workspace.root.to_string_lossy()),
            sh_quote(&release.to_string_lossy())
        );
        if let [one] = self.args.command.as_slice() {
            // One argument is a shell script (pipes, redirections, `&&`).
            script.push_str(one);
            script.push('\n');
        } else {
            let argv: Vec<String> = self.args.command.iter().map(|a| sh_quote(a)).collect();
            script.push_str(&format!("exec {}\n", argv.join(" ")));
        }
        let mut failed = Vec::new();
        let mut last_status = None;
        for kernel in kernels {
            let outcome = self.boot(kernel, script.clone())?;
            let name = kernel.package.name;
            match (outcome.status, outcome.timed_out) {
                (Some(0), _) => {
                    eprintln!(
                        "xtask: {name}: exit 0 in {:.1} s",
                        outcome.wall.as_secs_f64()
                    )
                }
                (Some(code), _) => {
                    eprintln!(
                        "xtask: {name}: exit {code} in {:.1} s",
                        outcome.wall.as_secs_f64()
                    );
                    failed.push(format!("{name} (exit {code})"));
                }
                (None, timed_out) => {
                    eprintln!(
                        "xtask: {name}: {}; guest console ({}):\n{}",
                        if timed_out {
                            "timed out"
                        } else {
                            "no exit status from the guest"
                        },
                        self.keep_console(kernel, "command", &outcome),
                        outcome.console_excerpt()
                    );
                    failed.push(format!("{name} (no status)"));
                }
            }
            last_status = outcome.status;
        }
        match (failed.is_empty(), kernels.len(), last_status) {
            (true, _, _) => Ok(()),
            // One kernel: exit with the command's own status, for scripts.
            (false, 1, Some(code)) => std::process::exit(code),
            _ => bail!("the command failed on {}", failed.join(", ")),
        }
    }

    /// The test matrix.
    fn tests(&self, kernels: &[Kernel], binaries: &[TestBinary]) -> Result<()> {
        let start = Instant::now();
        let package_dir = self.workspace.root.join("tcpwatch");
        let mut report = Vec::new();
        for kernel in kernels {
            for binary in binaries {
                println!(
                    "\n== {} ({}): tests/{}.rs",
                    kernel.package.name,
                    kernel.package.release(),
                    binary.name
                );
                let mut argv = vec![sh_quote(&binary.path.to_string_lossy())];
                if let Some(filter) = &self.args.filter {
                    argv.push(sh_quote(filter));
                }
                // cargo runs test binaries in their package directory.
                let script = format!(
                    "cd {}\nexport RUST_BACKTRACE=1\nexec {}\n",
                    sh_quote(&package_dir.to_string_lossy()),
                    argv.join(" ")
                );
                let outcome = self.boot(kernel, script)?;
                let run = judge(&binary.name, &outcome);
                println!(
                    "== {}: tests/{}.rs: {} passed, {} failed, {} ignored in {:.1} s{}",
                    kernel.package.name,
                    binary.name,
                    run.verdicts.passed.len(),
                    run.verdicts.failed.len(),
                    run.verdicts.ignored.len(),
                    run.wall.as_secs_f64(),
                    run.problem
                        .as_deref()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                );
                if run.problem.is_some() && !run.verdicts.finished {
                    println!(
                        "guest console ({}):\n{}",
                        self.keep_console(kernel, &binary.name, &outcome),
                        outcome.console_excerpt()
                    );
                }
                report.push((kernel.package.name, run));
            }
        }
        summarize(kernels, &report, start.elapsed())
    }
}

/// The verdicts of a run, and whether it failed beyond its tests.
fn judge(name: &str, outcome: &Outcome) -> BinaryRun {
    let verdicts = suite::verdicts(&String::from_utf8_lossy(&outcome.stdout));
    let problem = match (outcome.status, outcome.timed_out) {
        (_, true) => Some("timed out".to_owned()),
        (None, false) => Some("the guest reported no exit status".to_owned()),
        (Some(0), _) if !verdicts.finished => Some("no libtest result line".to_owned()),
        (Some(0), _) => None,
        (Some(_), _) if !verdicts.failed.is_empty() => None,
        (Some(code), _) => Some(format!("exit status {code}")),
    };
    BinaryRun {
        name: name.to_owned(),
        verdicts,
        problem,
        wall: outcome.wall,
    }
}

fn summarize(kernels: &[Kernel], report: &[(&str, BinaryRun)], wall: Duration) -> Result<()> {
    println!("\n== kernel matrix ({:.0} s)", wall.as_secs_f64());
    let mut failures = Vec::new();
    for kernel in kernels {
        let name = kernel.package.name;
        let runs: Vec<&BinaryRun> = report
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, r)| r)
            .collect();
        let count = |f: fn(&Verdicts) -> usize| runs.iter().map(|r| f(&r.verdicts)).sum::<usize>();
        let secs: f64 = runs.iter().map(|r| r.wall.as_secs_f64()).sum();
        let mut bad: Vec<String> = Vec::new();
        for run in &runs {
            bad.extend(
                run.verdicts
                    .failed
                    .iter()
                    .map(|t| format!("{}::{t}", run.name)),
            );
            if let Some(problem) = &run.problem {
                bad.push(format!("{} ({problem})", run.name));
            }
        }
        println!(
            "{:<6} {:<24} {:>3} passed {:>3} failed {:>3} ignored  {:>5.0} s  {}",
            name,
            kernel.package.release(),
            count(|v| v.passed.len()),
            count(|v| v.failed.len()),
            count(|v| v.ignored.len()),
            secs,
            if bad.is_empty() {
                "ok".to_owned()
            } else {
                format!("FAILED: {}", bad.join(", "))
            }
        );
        if !bad.is_empty() {
            failures.push(format!("{name}: {}", bad.join(", ")));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("kernel matrix failed:\n  {}", failures.join("\n  "))
    }
}
