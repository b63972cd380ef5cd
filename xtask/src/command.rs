//! Running host commands with their failure made readable.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Runs `cmd` with its output on our stderr (our stdout stays for what the
/// xtask command itself reports, e.g. a guest command's output); fails unless
/// it exits 0.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output_of(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}
