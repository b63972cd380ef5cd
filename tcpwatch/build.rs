//! Builds the eBPF programs (`tcpwatch-ebpf`) for `bpfel-unknown-none` and puts
//! the object in `OUT_DIR/tcpwatch-ebpf.o`, where `src/probes/attach.rs` embeds it
//! (and the benchmark floor in `OUT_DIR/tcpwatch-floor.o`, for `cargo xtask bench`).
//!
//! The eBPF crate needs a Rust toolchain with `-Z build-std=core` and bpf-linker.
//! It is found, in order, from:
//! 1. `TCPWATCH_BPF_CARGO`, `TCPWATCH_BPF_RUSTC` and `TCPWATCH_BPF_LINKER`;
//! 2. the record `cargo xtask setup` writes, `$TCPWATCH_TOOLCHAIN/toolchain.env`
//!    (default `/opt/tcpwatch-toolchain`): Debian's rustc-web with rust-web-src,
//!    and bpf-linker built against the same LLVM;
//! 3. `rustup run nightly cargo`, when that nightly has rust-src and bpf-linker
//!    is on PATH.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

struct Toolchain {
    /// Command prefix that runs cargo (e.g. `/usr/bin/cargo` or `rustup run nightly cargo`).
    cargo: Vec<String>,
    /// rustc to use, when not chosen by the cargo prefix.
    rustc: Option<String>,
    /// Directory holding `bpf-linker`.
    linker_dir: Option<PathBuf>,
    /// Where this toolchain was found, for messages.
    origin: String,
}

fn main() {
    for var in [
        "TCPWATCH_BPF_CARGO",
        "TCPWATCH_BPF_RUSTC",
        "TCPWATCH_BPF_LINKER",
        "TCPWATCH_TOOLCHAIN",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("tcpwatch is in the workspace")
        .to_path_buf();
    let ebpf_dir = workspace.join("tcpwatch-ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("tcpwatch-common/src").display()
    );
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    let toolchain = match find_toolchain() {
        Some(t) => t,
        None => fail(
            "no eBPF toolchain found. Run `cargo xtask setup` once (as root) to install Debian's rustc-web, rust-web-src and bpf-linker, or set TCPWATCH_BPF_CARGO/TCPWATCH_BPF_RUSTC/TCPWATCH_BPF_LINKER.",
        ),
    };

    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new(&toolchain.cargo[0]);
    cmd.args(&toolchain.cargo[1..])
        .args(["build", "--release", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--bins"])
        .arg("--manifest-path")
        .arg(ebpf_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Cdebuginfo=2\x1f-Clink-arg=--btf",
        );
    // The outer build's settings belong to the host toolchain, not to this one.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTDOC",
    ] {
        cmd.env_remove(var);
    }
    if let Some(rustc) = &toolchain.rustc {
        cmd.env("RUSTC", rustc);
    }
    if let Some(dir) = &toolchain.linker_dir {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.clone()];
        paths.extend(env::split_paths(&path));
        cmd.env("PATH", env::join_paths(paths).expect("valid PATH"));
    }
    let output = cmd.output().unwrap_or_else(|e| {
        fail(&format!(
            "cannot run {} ({}): {e}",
            toolchain.cargo.join(" "),
            toolchain.origin
        ))
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        // Surface the eBPF crate's own warnings, which cargo would otherwise hide.
        let mut in_warning = false;
        for line in stderr.lines() {
            if line.starts_with("warning") {
                in_warning = !line.contains("generated");
            } else if line.trim_start().starts_with("Compiling")
                || line.trim_start().starts_with("Finished")
            {
                in_warning = false;
            }
            if in_warning {
                println!("cargo:warning=tcpwatch-ebpf: {line}");
            }
        }
    } else {
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        fail(&format!(
            "building tcpwatch-ebpf with {} ({}) failed; its output is above",
            toolchain.cargo.join(" "),
            toolchain.origin
        ));
    }
    // The programs, embedded by src/probes/attach.rs; and the benchmark floor,
    // which `cargo xtask bench` finds here (not embedded).
    for name in ["tcpwatch-ebpf", "tcpwatch-floor"] {
        let object = target_dir.join("bpfel-unknown-none/release").join(name);
        fs::copy(&object, out_dir.join(format!("{name}.o")))
            .unwrap_or_else(|e| fail(&format!("copying {}: {e}", object.display())));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    println!("cargo:warning={message}");
    std::process::exit(1);
}

fn find_toolchain() -> Option<Toolchain> {
    if let Ok(cargo) = env::var("TCPWATCH_BPF_CARGO") {
        return Some(Toolchain {
            cargo: vec![cargo],
            rustc: env::var("TCPWATCH_BPF_RUSTC").ok(),
            linker_dir: env::var("TCPWATCH_BPF_LINKER")
                .ok()
                .and_then(|l| Path::new(&l).parent().map(Path::to_path_buf)),
            origin: "TCPWATCH_BPF_CARGO".into(),
        });
    }
    let root = env::var("TCPWATCH_TOOLCHAIN").unwrap_or_else(|_| "/opt/tcpwatch-toolchain".into());
    let record = Path::new(&root).join("toolchain.env");
    println!("cargo:rerun-if-changed={}", record.display());
    if let Ok(text) = fs::read_to_string(&record) {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(cargo), Some(rustc), Some(linker)) =
            (get("BPF_CARGO"), get("BPF_RUSTC"), get("BPF_LINKER"))
        {
            return Some(Toolchain {
                cargo: vec![cargo],
                rustc: Some(rustc),
                linker_dir: Path::new(&linker).parent().map(Path::to_path_buf),
                origin: record.display().to_string(),
            });
        }
    }
    // Fallback: a rustup nightly with rust-src and bpf-linker on PATH.
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let has_src = sysroot.join("lib/rustlib/src/rust/library/core").is_dir();
    let has_linker = Command::new("bpf-linker").arg("--version").output().is_ok();
    (has_src && has_linker).then(|| Toolchain {
        cargo: ["rustup", "run", "nightly", "cargo"]
            .map(String::from)
            .to_vec(),
        rustc: None,
        linker_dir: None,
        origin: "rustup nightly".into(),
    })
}
