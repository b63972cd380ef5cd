//! The test binaries the matrix runs in every guest: building them (release
//! profile, so they and the `tcpwatch` they drive run at a usable speed under
//! TCG), and reading each test's verdict from libtest's output.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::command::output_of;

/// The integration and scenario test binaries of the `tcpwatch` package
/// (`tcpwatch/tests/<name>.rs`), in the order they run.
pub const SUITES: &[&str] = &["cli", "cleanup", "kernel", "scenarios"];

/// A built test binary.
pub struct TestBinary {
    /// Its name (`kernel` for tests/kernel.rs).
    pub name: String,
    /// The executable.
    pub path: PathBuf,
}

/// Builds `names` with `cargo test --release --no-run` and returns them in the
/// order asked.
pub fn build(workspace: &Path, names: &[&str]) -> Result<Vec<TestBinary>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["test", "--release", "--no-run", "--package", "tcpwatch"])
        .args(["--message-format", "json-render-diagnostics"]);
    for name in names {
        cmd.args(["--test", name]);
    }
    eprintln!("xtask: building the test binaries (release)");
    let out = output_of(cmd.stderr(std::process::Stdio::inherit()))?;
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&out).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let (Some(name), Some(exe)) = (msg["target"]["name"].as_str(), msg["executable"].as_str())
        else {
            continue;
        };
        binaries.push(TestBinary {
            name: name.to_owned(),
            path: PathBuf::from(exe),
        });
    }
    names
        .iter()
        .map(|name| {
            let i = binaries
                .iter()
                .position(|b| b.name == *name)
                .with_context(|| format!("cargo built no test binary named {name}"))?;
            Ok(binaries.swap_remove(i))
        })
        .collect()
}

/// Checks requested suite names.
pub fn select(requested: &[String]) -> Result<Vec<&'static str>> {
    if requested.is_empty() {
        return Ok(SUITES.to_vec());
    }
    requested
        .iter()
        .map(|r| {
            SUITES.iter().find(|s| *s == r).copied().ok_or_else(|| {
                anyhow::anyhow!("unknown test binary '{r}'; one of {}", SUITES.join(", "))
            })
        })
        .collect::<Result<_>>()
        .and_then(|v: Vec<_>| {
            if v.is_empty() {
                bail!("no test binary selected")
            }
            Ok(v)
        })
}

/// Verdicts of one test binary's run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// Tests that passed.
    pub passed: Vec<String>,
    /// Tests that failed.
    pub failed: Vec<String>,
    /// Tests that were ignored.
    pub ignored: Vec<String>,
    /// Whether libtest printed its final `test result:` line.
    pub finished: bool,
}

/// Reads the `test NAME ... ok|FAILED|ignored` lines libtest and
/// libtest-mimic print.
pub fn verdicts(stdout: &str) -> Verdicts {
    let mut v = Verdicts::default();
    for line in stdout.lines() {
        let line = line.trim_end();
        if line.starts_with("test result: ") {
            v.finished = true;
            continue;
        }
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        // libtest-mimic pads names to a column.
        let name = name.trim_end().to_owned();
        match verdict.split([' ', ',']).next() {
            Some("ok") => v.passed.push(name),
            Some("FAILED") => v.failed.push(name),
            Some("ignored") => v.ignored.push(name),
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_and_libtest_mimic_lines() {
        let out = "\nrunning 3 tests\ntest closed_port_v4    ... ok\ntest linger_zero_close ... FAILED\ntest skipped_one ... ignored, needs root\nsome output\n\nfailures:\n    linger_zero_close\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.01s\n";
        let v = verdicts(out);
        assert_eq!(v.passed, ["closed_port_v4"]);
        assert_eq!(v.failed, ["linger_zero_close"]);
        assert_eq!(v.ignored, ["skipped_one"]);
        assert!(v.finished);
        assert!(!verdicts("test a ... ok\n").finished);
    }

    #[test]
    fn selection() {
        assert_eq!(select(&[]).unwrap(), SUITES);
        assert_eq!(select(&["kernel".into()]).unwrap(), ["kernel"]);
        assert!(select(&["nope".into()]).is_err());
    }
}
