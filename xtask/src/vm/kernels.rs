//! The kernels of the matrix: Debian kernel packages, fetched with apt, unpacked
//! once into the cache with their modules indexed (depmod) and the uncompressed
//! vmlinux beside them.
//!
//! The versions are the ones the kernel fixtures were collected from
//! (tcpwatch/tests/fixtures/kernels/README.md), so the unit tests of the attach
//! plan and the runs in the VM look at the same kernels. This table is the only
//! place they are named.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{cache::Cache, vmlinux};
use crate::{apt, command::run_cmd};

/// A Debian kernel package of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct KernelPackage {
    /// Short name used on the command line (`cargo xtask vm 6.1`).
    pub name: &'static str,
    /// The package (`linux-image-<release>-unsigned`).
    pub package: &'static str,
    /// Its exact version.
    pub version: &'static str,
}

/// The matrix, oldest first.
pub const KERNELS: &[KernelPackage] = &[
    // bookworm's default kernel (linux-image-amd64): kprobes, tcp_send_reset
    // without a reason field and blind to resets without a full socket.
    KernelPackage {
        name: "6.1",
        package: "linux-image-6.1.0-56-amd64-unsigned",
        version: "6.1.192-2",
    },
    // bookworm-security's 6.12 (linux-image-6.12-amd64): reasons, active ones too.
    KernelPackage {
        name: "6.12",
        package: "linux-image-6.12.117+deb12-amd64-unsigned",
        version: "6.12.117-1~deb12u1",
    },
];

impl KernelPackage {
    /// `uname -r` of this kernel, from the package name.
    pub fn release(&self) -> &'static str {
        self.package
            .strip_prefix("linux-image-")
            .and_then(|r| r.strip_suffix("-unsigned"))
            .unwrap_or(self.package)
    }
}

/// Finds a kernel by short name (`6.1`) or release (`6.1.0-56-amd64`).
pub fn lookup(name: &str) -> Result<KernelPackage> {
    KERNELS
        .iter()
        .find(|k| k.name == name || k.release() == name)
        .copied()
        .with_context(|| {
            let known: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
            format!(
                "unknown kernel '{name}'; the matrix has {}",
                known.join(", ")
            )
        })
}

/// A kernel ready to boot.
pub struct Kernel {
    /// The package it came from.
    pub package: KernelPackage,
    /// The uncompressed ELF vmlinux (PVH boot).
    pub vmlinux: PathBuf,
    /// Its modules tree (`lib/modules/<release>`), with `modules.dep`.
    pub modules: PathBuf,
}

/// Fetches and unpacks `package` into the cache (once).
pub fn prepare(package: KernelPackage, cache: &Cache) -> Result<Kernel> {
    let dir = cache
        .dir("kernels")?
        .join(format!("{}_{}", package.package, package.version));
    let release = package.release();
    cache.build_once(&dir, package.version, |scratch| {
        let debs = cache.dir("debs")?;
        eprintln!("xtask: fetching {} {}", package.package, package.version);
        let deb = apt::download(package.package, package.version, &debs)?;
        unpack(&deb, scratch, release)
    })?;
    let kernel = Kernel {
        package,
        vmlinux: dir.join("vmlinux"),
        modules: dir.join("lib/modules").join(release),
    };
    if !kernel.vmlinux.is_file() || !kernel.modules.join("modules.dep").is_file() {
        bail!(
            "{} is incomplete; remove it to fetch the kernel again",
            dir.display()
        );
    }
    Ok(kernel)
}

fn unpack(deb: &Path, into: &Path, release: &str) -> Result<()> {
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(deb).arg(into))?;
    // The package's postinst would run depmod; unpacking does not.
    run_cmd(Command::new("depmod").arg("-b").arg(into).arg(release))
        .context("depmod (apt-get install kmod)")?;
    let bzimage = into.join("boot").join(format!("vmlinuz-{release}"));
    vmlinux::extract(&bzimage, &into.join("vmlinux"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_releases() {
        assert_eq!(lookup("6.1").unwrap().release(), "6.1.0-56-amd64");
        assert_eq!(lookup("6.12.117+deb12-amd64").unwrap().name, "6.12");
        assert!(lookup("5.4").is_err());
    }
}
