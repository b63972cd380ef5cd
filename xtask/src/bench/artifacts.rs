//! The release build under test: the `tcpwatch` binary and the benchmark floor
//! object that `tcpwatch/build.rs` leaves in its `OUT_DIR`, located through
//! cargo's own build messages rather than guessed paths.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// What the benchmarks run.
pub struct Artifacts {
    /// `target/release/tcpwatch`.
    pub tcpwatch: PathBuf,
    /// `tcpwatch-floor.o`.
    pub floor: PathBuf,
}

/// Builds tcpwatch in release mode and returns its artifacts.
pub fn build() -> Result<Artifacts> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--package",
            "tcpwatch",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release failed");
    }
    let (mut tcpwatch, mut out_dir) = (None, None);
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let package = message["package_id"].as_str().unwrap_or_default();
        if !package.contains("tcpwatch#") && !package.contains("/tcpwatch)") {
            continue;
        }
        match message["reason"].as_str() {
            Some("build-script-executed") => {
                out_dir = message["out_dir"].as_str().map(PathBuf::from);
            }
            Some("compiler-artifact") if message["target"]["name"] == "tcpwatch" => {
                if let Some(exe) = message["executable"].as_str() {
                    tcpwatch = Some(PathBuf::from(exe));
                }
            }
            _ => {}
        }
    }
    let tcpwatch = tcpwatch.context("cargo did not report the tcpwatch binary")?;
    let floor = out_dir
        .context("cargo did not report tcpwatch's build-script output")?
        .join("tcpwatch-floor.o");
    if !floor.is_file() {
        bail!("{} missing", floor.display());
    }
    Ok(Artifacts { tcpwatch, floor })
}
