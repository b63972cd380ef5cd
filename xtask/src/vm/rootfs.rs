//! The guests' Debian userland: a minimal debootstrap root with what the tests
//! and scenarios use, built once into the cache and shared read-only with every
//! guest (each guest writes to a RAM overlay on top).
//!
//! Package scripts run during the build. So that none of them can start a
//! server on the host or leave a process behind, the second debootstrap stage
//! runs with services refused (`policy-rc.d`), in a private network namespace,
//! and in a private PID namespace whose processes all die with it.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use super::cache::Cache;
use crate::command::run_cmd;

/// Debian release of the root (the host's, so host-built binaries run).
const SUITE: &str = "bookworm";

/// Packages on top of debootstrap's minbase.
const PACKAGES: &[&str] = &[
    // The tests: network namespaces and `ss -K`, `setpriv`, /proc tools.
    "iproute2",
    "util-linux",
    "procps",
    // Scenario servers.
    "nginx-light",
    "redis-server",
    // Firewall scenarios (REJECT) and ad-hoc checks in the guest.
    "nftables",
    "python3",
    "bpftrace",
    "bpftool",
    // modprobe for the kernel's modules tree, shared into the guest.
    "kmod",
    // The initramfs's shell and mount tools (static: no libraries to copy).
    "busybox-static",
];

/// Default mirror (the host's apt sources use the same).
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Builds the root (once) and returns its path.
pub fn prepare(cache: &Cache, mirror: &str) -> Result<std::path::PathBuf> {
    let root = cache.dir("roots")?.join(SUITE);
    let stamp = format!("{SUITE} {mirror} minbase {}\n", PACKAGES.join(","));
    cache.build_once(&root, &stamp, |scratch| {
        if !nix::unistd::geteuid().is_root() {
            bail!("building the guests' Debian root needs root (debootstrap, chroot)");
        }
        eprintln!(
            "xtask: building the guests' Debian {SUITE} root in {} (once, about a minute)",
            root.display()
        );
        debootstrap(scratch, mirror)
    })?;
    if !root.join("bin/busybox").is_file() {
        bail!(
            "{} has no bin/busybox; remove it to rebuild",
            root.display()
        );
    }
    Ok(root)
}

fn debootstrap(root: &Path, mirror: &str) -> Result<()> {
    let include = format!("--include={}", PACKAGES.join(","));
    // Stage one downloads and unpacks; no package script runs yet.
    run_cmd(
        Command::new("debootstrap")
            .args(["--foreign", "--variant=minbase", &include, SUITE])
            .arg(root)
            .arg(mirror),
    )
    .context("debootstrap, first stage")?;
    let policy = root.join("usr/sbin/policy-rc.d");
    fs::write(
        &policy,
        "#!/bin/sh\n# tcpwatch-vm: no service starts in this root\nexit 101\n",
    )
    .with_context(|| format!("writing {}", policy.display()))?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))?;
    let proc = root.join("proc");
    run_cmd(
        Command::new("unshare")
            .args(["--net", "--pid", "--fork", "--mount"])
            .arg(format!("--mount-proc={}", proc.display()))
            .arg("chroot")
            .arg(root)
            .args(["/debootstrap/debootstrap", "--second-stage"]),
    )
    .context("debootstrap, second stage")?;
    // The downloaded packages are not needed in the guests.
    let archives = root.join("var/cache/apt/archives");
    for entry in fs::read_dir(&archives)?.filter_map(Result::ok) {
        if entry.path().extension().is_some_and(|e| e == "deb") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
