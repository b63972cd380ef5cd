//! Bad input and unusable environments: every case exits 2 with one line on
//! stderr, never a panic or a backtrace. The cases are the table in
//! docs/errors.md.

use std::process::{Command, Output};

fn tcpwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run tcpwatch")
}

fn assert_usage_error(args: &[&str], expect: &str) {
    let out = tcpwatch(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr:\n{stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected:\n{stderr}");
    assert!(lines[0].starts_with("tcpwatch: "), "{args:?}: {stderr}");
    assert!(
        lines[0].contains(expect),
        "{args:?}: '{expect}' not in: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
}

#[test]
fn bad_flags_and_values() {
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "unrecognized subcommand"),
        (&["trace", "--bogus"], "unexpected argument '--bogus'"),
        (&["trace", "--port", "70000"], "--port"),
        (&["trace", "--port", "http"], "--port"),
        (&["trace", "--pid", "-3"], "-3"),
        (&["trace", "--addr", "10.0.0.300"], "not an IP address"),
        (&["trace", "--addr", "10.0.0.0/33"], "prefix length"),
        (&["trace", "--kind", "resets,bogus"], "unknown kind 'bogus'"),
        (
            &["trace", "--comm", "a-command-name-too-long"],
            "longer than 15 bytes",
        ),
        (
            &["trace", "--netns", "/nonexistent/ns/net"],
            "not a netns inode or path",
        ),
        (&["trace", "--duration", "soon"], "'soon' is not a duration"),
        (&["trace", "--count", "0"], "--count"),
        (
            &["trace", "--btf", "none", "--netns", "1"],
            "--netns needs kernel BTF",
        ),
        (&["trace", "--ring-buffer-size", "5000"], "power of two"),
        (&["trace", "--max-sockets", "10"], "--max-sockets"),
        (
            &["trace", "--owner-grace", "-1s"],
            "unexpected argument '-1'",
        ),
        (&["trace", "--owner-grace", "forever"], "--owner-grace"),
        (
            &["probes", "--json", "extra"],
            "unexpected argument 'extra'",
        ),
    ];
    for (args, expect) in cases {
        assert_usage_error(args, expect);
    }
}

/// `top` draws a live screen: into a pipe it refuses (before any privilege
/// check, so also as a user) and points to `trace`.
#[test]
fn top_refuses_without_a_terminal() {
    assert_usage_error(
        &["top"],
        "stdout is not a terminal: `tcpwatch top` draws a live screen; use `tcpwatch trace` for a pipe or a file",
    );
    assert_usage_error(&["top", "--json"], "unexpected argument '--json'");
}

#[test]
fn too_many_filter_values() {
    let mut args = vec!["trace"];
    let netns: Vec<String> = (1..=9).map(|i| i.to_string()).collect();
    for ns in &netns {
        args.extend(["--netns", ns]);
    }
    assert_usage_error(&args, "at most 8 --netns values");
}

#[test]
fn missing_btf_file() {
    if !nix::unistd::geteuid().is_root() {
        // Without root the capability check answers first; covered below.
        return;
    }
    assert_usage_error(
        &["trace", "--btf", "/nonexistent/vmlinux"],
        "kernel BTF is not available at /nonexistent/vmlinux",
    );
    assert_usage_error(
        &["probes", "--btf", "/nonexistent/vmlinux"],
        "kernel BTF is not available",
    );
}

#[test]
fn without_privileges() {
    let exe = env!("CARGO_BIN_EXE_tcpwatch");
    for sub in ["trace", "probes"] {
        let out = if nix::unistd::geteuid().is_root() {
            // Drop to nobody with no capabilities at all.
            Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--inh-caps=-all",
                    exe,
                    sub,
                ])
                .output()
                .expect("setpriv (util-linux)")
        } else {
            tcpwatch(&[sub])
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sub}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{sub}: {stderr}");
        assert!(stderr.contains("needs root, or the capabilities CAP_BPF and CAP_PERFMON (missing: CAP_BPF, CAP_PERFMON)"), "{sub}: {stderr}");
    }
}

/// The minimal capability set: CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH
/// (tracefs is root-only) as an unprivileged user. Without the last, one line
/// names it; with it, tracing runs and says what the missing optional
/// capabilities cost.
#[test]
fn minimal_capabilities() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("minimal_capabilities needs root to drop to a user with capabilities");
        return;
    }
    let exe = env!("CARGO_BIN_EXE_tcpwatch");
    let as_nobody = |caps: &str, args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                &format!("--inh-caps=-all,{caps}"),
                &format!("--ambient-caps={caps}"),
                exe,
            ])
            .args(args)
            .output()
            .expect("setpriv (util-linux)")
    };
    let out = as_nobody("+bpf,+perfmon", &["trace", "--duration", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot read tracefs") && stderr.contains("CAP_DAC_READ_SEARCH"),
        "{stderr}"
    );

    let out = as_nobody(
        "+bpf,+perfmon,+dac_read_search",
        &["trace", "--duration", "1s", "--no-census"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2);
    if paranoid > 2 {
        // Debian's kernels: perf_event_open() needs CAP_SYS_ADMIN at level 3.
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("kernel.perf_event_paranoid is 3") && stderr.contains("CAP_SYS_ADMIN"),
            "{stderr}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("; tracing") && stderr.contains("stopped (duration reached)"),
        "{stderr}"
    );
    assert!(stderr.contains("without CAP_SYS_ADMIN"), "{stderr}");
    assert!(stderr.contains("without CAP_SYS_PTRACE"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_and_version_exit_zero() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["trace", "--help"],
        &["top", "--help"],
        &["probes", "--help"],
    ] {
        let out = tcpwatch(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn explain_rejects_bad_recordings() {
    let dir = std::env::temp_dir().join(format!("tcpwatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.jsonl");
    std::fs::write(&garbage, "{\"record\":\"event\"}\nnot json at all\n").unwrap();
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let g = garbage.to_string_lossy().into_owned();
    let e = empty.to_string_lossy().into_owned();
    assert_usage_error(
        &["explain", "--from", "/nonexistent/rec.jsonl"],
        "cannot open /nonexistent/rec.jsonl",
    );
    assert_usage_error(
        &["explain", "--from", &g],
        "garbage.jsonl:1: bad event record",
    );
    std::fs::write(&garbage, "\n{\"record\":\"other\"}\n[1,2\n").unwrap();
    assert_usage_error(&["explain", "--from", &g], "garbage.jsonl:3: not JSON");
    assert_usage_error(&["explain", "--from", &e], "no tcpwatch events in it");
    assert_usage_error(&["explain"], "--from");
    let _ = std::fs::remove_dir_all(&dir);
}
