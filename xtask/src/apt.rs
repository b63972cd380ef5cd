//! Debian packages on the host: which are missing, installing them, and
//! downloading a `.deb` without installing it. Shared by `setup` and `vm`.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::command::run_cmd;

/// Packages from `names` that are not installed.
pub fn missing_packages(names: &[&str]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in names {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f", "${Status}", name])
            .output()
            .context("running dpkg-query (is this Debian?)")?;
        if !String::from_utf8_lossy(&out.stdout).contains("install ok installed") {
            missing.push((*name).to_owned());
        }
    }
    Ok(missing)
}

/// Installs whichever of `names` are missing (nothing to do, and no root
/// needed, when all are installed). `why` names the xtask command for the
/// message when not root.
pub fn ensure_installed(names: &[&str], why: &str) -> Result<()> {
    let missing = missing_packages(names)?;
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "these packages are missing: {}; run `sudo cargo xtask {why}` (or install them with apt-get)",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run_cmd(Command::new("apt-get").arg("update").arg("-q"))?;
    // Packages with services (prometheus, nginx) must not start them here: the
    // tests start their own, in private network namespaces. policy-rc.d says so
    // to invoke-rc.d.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        std::fs::write(
            policy,
            "#!/bin/sh\n# cargo xtask: start no service while installing\nexit 101\n",
        )
        .context("writing /usr/sbin/policy-rc.d")?;
        std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let result = run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    result
}

/// Downloads `package` at exactly `version` into `dir` (`apt-get download`) and
/// returns the `.deb`'s path.
pub fn download(package: &str, version: &str, dir: &Path) -> Result<std::path::PathBuf> {
    let spec = format!("{package}={version}");
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", "-q", &spec]).current_dir(dir);
    if let Err(first) = run_cmd(&mut cmd) {
        // A fresh machine may not have the package lists yet.
        eprintln!("xtask: {first:#}; refreshing the package lists and retrying");
        run_cmd(Command::new("apt-get").arg("update").arg("-q"))?;
        run_cmd(&mut cmd).with_context(|| {
            format!("{spec} is not in the apt sources; is bookworm-security configured?")
        })?;
    }
    // apt-get names the file package_version_arch.deb, with ':' in the version
    // escaped as %3a.
    let prefix = format!("{package}_{}_", version.replace(':', "%3a"));
    std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download {spec} left no {prefix}*.deb in {}",
                dir.display()
            )
        })
}
