//! `cargo xtask deb`: the Debian package. Builds the release binary, has it
//! write its man pages and shell completions into `target/deb-assets`, then
//! runs cargo-deb (installed by `cargo xtask setup`) with the metadata in
//! `tcpwatch/Cargo.toml`. Prints the path of the `.deb`. With `--debug` the
//! package holds the stripped debug build instead (the `debug-build` variant:
//! same files otherwise), which is what CI's service test installs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{command::run_cmd, setup};

/// `cargo xtask deb` options.
#[derive(clap::Args)]
pub struct Args {
    /// Where the toolchain record and cargo-deb are (as for setup).
    #[arg(
        long,
        env = "TCPWATCH_TOOLCHAIN",
        default_value = "/opt/tcpwatch-toolchain"
    )]
    pub prefix: PathBuf,
    /// Package the debug build (stripped) instead of a release build.
    #[arg(long)]
    pub debug: bool,
}

/// The workspace root (xtask's parent).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the package; returns its path.
pub fn run(args: &Args) -> Result<PathBuf> {
    let root = workspace();
    let target = root.join("target");
    let mut build = Command::new("cargo");
    build
        .args(["build", "--package", "tcpwatch"])
        .current_dir(&root);
    if !args.debug {
        build.arg("--release");
    }
    run_cmd(&mut build)?;
    let binary = target
        .join(if args.debug { "debug" } else { "release" })
        .join("tcpwatch");
    let assets = target.join("deb-assets");
    let _ = fs::remove_dir_all(&assets);
    if args.debug {
        fs::create_dir_all(&assets)?;
        run_cmd(
            Command::new("objcopy")
                .arg("--strip-debug")
                .arg(&binary)
                .arg(assets.join("tcpwatch")),
        )?;
    }
    let completions = assets.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    run_cmd(
        Command::new(&binary)
            .arg("generate")
            .arg("man")
            .arg(assets.join("man")),
    )?;
    for (shell, file) in [
        ("bash", "tcpwatch.bash"),
        ("zsh", "_tcpwatch"),
        ("fish", "tcpwatch.fish"),
    ] {
        let out = Command::new(&binary)
            .args(["generate", "completions", shell])
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        if !out.status.success() {
            bail!(
                "tcpwatch generate completions {shell} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::write(completions.join(file), out.stdout)?;
    }
    let cargo_deb = setup::cargo_deb(&args.prefix);
    if !cargo_deb.exists() {
        bail!(
            "{} is missing: run `cargo xtask setup` first",
            cargo_deb.display()
        );
    }
    let out_dir = target.join("debian");
    let _ = fs::remove_dir_all(&out_dir);
    let mut command = Command::new(&cargo_deb);
    command
        .args(["--no-build", "--package", "tcpwatch", "--output"])
        .arg(&out_dir)
        .current_dir(&root);
    if args.debug {
        command.arg("--variant=debug-build");
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", cargo_deb.display()))?;
    if !output.status.success() {
        bail!(
            "cargo-deb failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let deb = fs::read_dir(&out_dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("no .deb in {}", out_dir.display()))?;
    println!("xtask: built {}", deb.display());
    Ok(deb)
}
