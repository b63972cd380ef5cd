//! `cargo xtask setup`: the offline eBPF toolchain.
//!
//! The usual aya recipe needs a rustup nightly with rust-src, which cannot be
//! downloaded here. Instead: Debian's `rustc-web` (a newer rustc, with its
//! library sources in `rust-web-src`) builds the eBPF crate with
//! `-Z build-std=core`, and bpf-linker is built from crates.io against the LLVM
//! major version that rustc reports. The result is recorded in
//! `$TCPWATCH_TOOLCHAIN/toolchain.env` (default `/opt/tcpwatch-toolchain`), which
//! `tcpwatch/build.rs` reads.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::{apt, command::run_cmd};

/// Debian packages every build needs (the LLVM dev package is added from the
/// version rustc reports).
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    "libzstd-dev",
    "zlib1g-dev",
    // Tests: `ip` and `ss` for network namespaces and killing sockets; bpftool
    // to inspect what is loaded; `setpriv` to drop privileges.
    "iproute2",
    "bpftool",
    "util-linux",
    // Scenario tests run the real servers users have.
    "nginx-light",
    "redis-server",
    // A firewall REJECT rule in a namespace (firewall_reject).
    "nftables",
    // The daemon's tests: a real Prometheus scrapes it; the service test boots a Debian
    // root with systemd as PID 1 in systemd-nspawn and installs the .deb there.
    "prometheus",
    "systemd-container",
    "debootstrap",
];

/// bpf-linker release known to work with aya 0.14 and LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// cargo-deb release `cargo xtask deb` uses (builds with Rust 1.95).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// `cargo xtask setup` options.
#[derive(clap::Args)]
pub struct Args {
    /// Where bpf-linker and the toolchain record go.
    #[arg(
        long,
        env = "TCPWATCH_TOOLCHAIN",
        default_value = "/opt/tcpwatch-toolchain"
    )]
    prefix: PathBuf,
    /// Reinstall bpf-linker even if the record says it is current.
    #[arg(long)]
    force: bool,
}

/// Runs the setup.
pub fn run(args: &Args) -> Result<()> {
    apt::ensure_installed(PACKAGES, "setup")?;
    let rustc = Path::new("/usr/bin/rustc");
    let llvm = llvm_major(rustc)?;
    let llvm_dev = format!("llvm-{llvm}-dev");
    let polly = format!("libpolly-{llvm}-dev");
    apt::ensure_installed(&[llvm_dev.as_str(), polly.as_str()], "setup")?;

    let linker = args.prefix.join("bin/bpf-linker");
    let record = args.prefix.join("toolchain.env");
    let wanted = format!(
        "BPF_CARGO=/usr/bin/cargo\nBPF_RUSTC={}\nBPF_LINKER={}\nLLVM_MAJOR={llvm}\nBPF_LINKER_VERSION={BPF_LINKER_VERSION}\n",
        rustc.display(),
        linker.display()
    );
    let current = fs::read_to_string(&record).unwrap_or_default() == wanted
        && Command::new(&linker)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    install_cargo_deb(&args.prefix, args.force)?;
    if current && !args.force {
        println!("xtask: eBPF toolchain up to date ({})", record.display());
        return Ok(());
    }
    install_bpf_linker(&args.prefix, llvm)?;
    fs::create_dir_all(&args.prefix)
        .with_context(|| format!("creating {}", args.prefix.display()))?;
    fs::write(&record, wanted).with_context(|| format!("writing {}", record.display()))?;
    println!(
        "xtask: eBPF toolchain ready; recorded in {}",
        record.display()
    );
    Ok(())
}

/// Where setup installs cargo-deb.
pub fn cargo_deb(prefix: &Path) -> PathBuf {
    prefix.join("bin/cargo-deb")
}

/// Installs cargo-deb from crates.io unless the wanted version is there.
fn install_cargo_deb(prefix: &Path, force: bool) -> Result<()> {
    let current = Command::new(cargo_deb(prefix))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION));
    if current && !force {
        return Ok(());
    }
    println!("xtask: building cargo-deb {CARGO_DEB_VERSION} (about a minute)");
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                &format!("cargo-deb@{CARGO_DEB_VERSION}"),
                "--locked",
                "--force",
            ])
            .arg("--root")
            .arg(prefix),
    )
}

/// The LLVM major version a rustc is built on (`rustc -vV`).
fn llvm_major(rustc: &Path) -> Result<u32> {
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("running {} -vV", rustc.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no LLVM version in `{} -vV`:\n{text}", rustc.display()))
}

fn install_bpf_linker(prefix: &Path, llvm: u32) -> Result<()> {
    let llvm_prefix = format!("/usr/lib/llvm-{llvm}");
    let path = format!(
        "{llvm_prefix}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    println!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (a few minutes)");
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm}"),
            ])
            .arg("--root")
            .arg(prefix)
            .env("LLVM_PREFIX", &llvm_prefix)
            .env("PATH", path),
    )
}
