//! `cargo xtask service-test`: the systemd unit under a real systemd as PID 1.
//!
//! 1. `systemd-analyze security --offline=yes` on `deploy/systemd/tcpwatch.service`
//!    must score at most [`MAX_EXPOSURE`].
//! 2. The .deb is built (`cargo xtask deb`; `--debug` unless `--release`).
//! 3. A minimal Debian bookworm root with systemd (debootstrap, cached under
//!    `--cache`) boots in `systemd-nspawn --boot`, with a private network, a
//!    throw-away overlay over the cached root, CAP_BPF/CAP_PERFMON in its
//!    bounding set and bpf()/perf_event_open() allowed by nspawn's seccomp
//!    filter; tracefs is mounted inside as a host's systemd mounts it.
//! 4. Inside: `dpkg -i` the package (its postinst enables and starts the unit);
//!    the unit must be active (Type=notify: only after READY=1) with its status
//!    line and a watchdog keep-alive; it is restarted tracing only the
//!    container's network namespace (the host may be busy); a connection to a closed port from a transient unit must give a
//!    `no_listener` finding that `journalctl TCPWATCH_CAUSE=no_listener` finds
//!    with the client's unit, that the metrics endpoint counts, and that
//!    `tcpwatch query` prints; `systemctl reload` must keep it active;
//!    `systemctl stop` must end it with status 0, after which none of its BPF
//!    programs is loaded (checked from the host by program id).
//! 5. The container is powered off (killed if it does not stop in time).
//!
//! Every step has a time limit; the whole test takes about a minute once the
//! root is cached (about one more the first time).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::deb;

/// The highest `systemd-analyze security` exposure the unit may have.
const MAX_EXPOSURE: f64 = 2.0;
/// Packages of the container beyond debootstrap's minbase.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,procps";

/// `cargo xtask service-test` options.
#[derive(clap::Args)]
pub struct Args {
    /// Where the toolchain record and cargo-deb are (as for setup).
    #[arg(
        long,
        env = "TCPWATCH_TOOLCHAIN",
        default_value = "/opt/tcpwatch-toolchain"
    )]
    prefix: PathBuf,
    /// Where the Debian root is cached.
    #[arg(long, default_value = "/var/cache/tcpwatch/nspawn")]
    cache: PathBuf,
    /// The Debian mirror debootstrap uses.
    #[arg(
        long,
        env = "TCPWATCH_DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    mirror: String,
    /// Install the release build (default: the debug build, already built by
    /// `cargo test`, in the same package).
    #[arg(long)]
    release: bool,
}

fn step(started: Instant, what: &str) {
    println!("xtask: [{:5.1} s] {what}", started.elapsed().as_secs_f64());
}

/// Runs the test.
pub fn run(args: &Args) -> Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the service test boots a container: run it as root"
    );
    let started = Instant::now();
    let unit = deb::workspace().join("deploy/systemd/tcpwatch.service");
    let exposure = exposure(&unit)?;
    step(
        started,
        &format!("systemd-analyze security --offline=yes: {exposure:.1} (at most {MAX_EXPOSURE})"),
    );
    ensure!(
        exposure <= MAX_EXPOSURE,
        "the unit's exposure {exposure} is above {MAX_EXPOSURE}"
    );

    let package = deb::run(&deb::Args {
        prefix: args.prefix.clone(),
        debug: !args.release,
    })?;
    step(started, &format!("built {}", package.display()));
    let root = rootfs(&args.cache, &args.mirror)?;
    step(started, &format!("Debian root at {}", root.display()));
    let log = deb::workspace().join("target/service-test");
    fs::create_dir_all(&log)?;
    let container = Container::boot(&root, &package, &log.join("nspawn.log"))?;
    container.wait_running(Duration::from_secs(90))?;
    step(started, "container booted (systemd is PID 1 and running)");
    // nspawn gives the container no tracefs. Mount it as a host's sys-kernel-tracing.mount
    // does: on top of /sys/kernel, where the unit's namespace (ProtectKernelTunables) keeps it.
    container
        .sh("mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing")?;

    let name = package
        .file_name()
        .and_then(|n| n.to_str())
        .context("package name")?;
    let install = container.sh(&format!("dpkg -i /mnt/deb/{name} 2>&1"))?;
    println!("{}", indent(&install));
    let show = container.sh(
        "systemctl show tcpwatch -p ActiveState -p SubState -p Type -p StatusText -p MainPID -p User -p WatchdogUSec -p WatchdogTimestampMonotonic",
    )?;
    println!("{}", indent(&show));
    ensure!(
        show.contains("ActiveState=active") && show.contains("SubState=running"),
        "tcpwatch.service is not active after install:\n{show}\n{}",
        container.journal()
    );
    ensure!(
        show.contains("StatusText=tracing;"),
        "no READY status line:\n{show}"
    );
    ensure!(
        !show.contains("WatchdogTimestampMonotonic=0\n"),
        "no watchdog keep-alive received:\n{show}"
    );
    let files = container.sh("dpkg -L tcpwatch")?;
    for path in [
        "/usr/bin/tcpwatch",
        "/lib/systemd/system/tcpwatch.service",
        "/etc/tcpwatch/config.toml",
        "/usr/share/man/man1/tcpwatch-daemon.1.gz",
        "/usr/share/bash-completion/completions/tcpwatch",
        "/usr/share/zsh/vendor-completions/_tcpwatch",
        "/usr/share/fish/vendor_completions.d/tcpwatch.fish",
    ] {
        let usr = format!("/usr{path}");
        ensure!(
            files.lines().any(|l| l == path || l == usr),
            "{path} not in the package:\n{files}"
        );
    }
    step(
        started,
        "installed (binary, unit, config, man pages, completions); active (READY), status line, watchdog pinged",
    );

    // Other processes on the host (other tests, VMs) may reset connections by the
    // thousand: trace only the container's namespace from here on, which also tests a
    // restart with a changed configuration.
    container.sh(
        "printf '[kernel]\\nnetns = [\"/proc/1/ns/net\"]\\n' > /etc/tcpwatch/config.toml && systemctl restart tcpwatch && systemctl is-active tcpwatch",
    )?;
    step(
        started,
        "restarted with kernel.netns = the container's namespace",
    );

    // A client in its own unit connects to a closed port: a reset with no socket.
    container.sh(
        "systemd-run --quiet --wait --unit=tcpwatch-victim -p Type=exec /bin/bash -c '(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; sleep 1'",
    )?;
    let journal = container.poll(
        "journalctl --no-pager -o verbose TCPWATCH_CAUSE=no_listener",
        |out| out.contains("TCPWATCH_PEER_UNIT=tcpwatch-victim.service"),
    )?;
    println!("{}", indent(&journal));
    step(
        started,
        "journalctl TCPWATCH_CAUSE=no_listener finds the finding, with the client's unit",
    );
    let metrics = container.poll(
        "exec 3<>/dev/tcp/127.0.0.1/9979; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
        |out| out.contains("tcpwatch_findings_total{cause=\"no_listener\""),
    )?;
    for line in metrics.lines().filter(|l| {
        l.starts_with("HTTP/")
            || l.starts_with("tcpwatch_findings_total")
            || l.starts_with("tcpwatch_resets_total")
            || l.starts_with("tcpwatch_ring_lost_total")
    }) {
        println!("    {line}");
    }
    ensure!(
        metrics.contains("owner_unit=\"tcpwatch-victim.service\""),
        "the client's reset is not counted with its unit:\n{metrics}"
    );
    step(
        started,
        "the metrics endpoint counts the reset and the finding",
    );
    let query = container.sh("tcpwatch query --since 5m --unit tcpwatch-victim 2>&1")?;
    println!("{}", indent(&query));
    ensure!(
        query.contains("FINDING no_listener"),
        "query found no finding:\n{query}"
    );
    step(
        started,
        "tcpwatch query --unit prints the finding and the events",
    );

    let reload = container.sh("systemctl reload tcpwatch && systemctl is-active tcpwatch")?;
    ensure!(
        reload.trim() == "active",
        "not active after reload: {reload}"
    );
    container.poll("journalctl --no-pager -u tcpwatch", |out| {
        out.contains("reloaded /etc/tcpwatch/config.toml")
    })?;
    step(started, "systemctl reload: reloaded, still active");

    let pid = container.sh("systemctl show -p MainPID --value tcpwatch")?;
    let programs = container.sh(&format!(
        "grep -h '^prog_id:' /proc/{}/fdinfo/* | sort -u",
        pid.trim()
    ))?;
    let ids: Vec<String> = programs
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    ensure!(
        ids.len() >= 3,
        "the daemon holds {} programs: {programs}",
        ids.len()
    );
    let stop = container.sh(
        "systemctl stop tcpwatch; systemctl show tcpwatch -p ActiveState -p Result -p ExecMainStatus",
    )?;
    println!("{}", indent(&stop));
    ensure!(
        stop.contains("ActiveState=inactive")
            && stop.contains("Result=success")
            && stop.contains("ExecMainStatus=0"),
        "tcpwatch did not stop cleanly:\n{stop}\n{}",
        container.journal()
    );
    let journal = container.journal();
    ensure!(
        journal.contains("stopped (terminated)"),
        "no stop summary in the journal:\n{journal}"
    );
    for line in journal.lines().filter(|l| {
        l.contains("attached")
            || l.contains("stopped (terminated)")
            || l.contains("Started")
            || l.contains("Stopped")
    }) {
        println!("    {line}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<&String> = ids.iter().filter(|id| program_loaded(id)).collect();
        if left.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "programs {left:?} still loaded 10 s after the stop"
        );
        thread::sleep(Duration::from_millis(100));
    }
    step(
        started,
        &format!(
            "systemctl stop: exit 0, its {} programs unloaded",
            ids.len()
        ),
    );
    drop(container);
    step(started, "container powered off; service test passed");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The unit's overall exposure.
fn exposure(unit: &Path) -> Result<f64> {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .output()
        .context("running systemd-analyze (apt-get install systemd)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split_once("Overall exposure level for tcpwatch.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no exposure in systemd-analyze's output:\n{text}"))
}

fn program_loaded(id: &str) -> bool {
    Command::new("bpftool")
        .args(["prog", "show", "id", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The cached Debian root, made with debootstrap the first time.
fn rootfs(cache: &Path, mirror: &str) -> Result<PathBuf> {
    let root = cache.join(format!("bookworm-{}", INCLUDE.replace(',', "-")));
    if root.join("usr/lib/systemd/systemd").exists() {
        return Ok(root);
    }
    fs::create_dir_all(cache)?;
    let partial = cache.join("partial");
    let _ = fs::remove_dir_all(&partial);
    println!(
        "xtask: debootstrap bookworm into {} (about a minute)",
        root.display()
    );
    let status = Command::new("timeout")
        .args(["900", "debootstrap", "--variant=minbase"])
        .arg(format!("--include={INCLUDE}"))
        .arg("bookworm")
        .arg(&partial)
        .arg(mirror)
        .stdout(Stdio::null())
        .status()
        .context("running debootstrap (cargo xtask setup installs it)")?;
    if !status.success() {
        let _ = fs::remove_dir_all(&partial);
        bail!("debootstrap failed with {status}");
    }
    fs::rename(&partial, &root)?;
    Ok(root)
}

/// A booted container.
struct Container {
    nspawn: Child,
    leader: u32,
}

impl Container {
    fn boot(root: &Path, package: &Path, log: &Path) -> Result<Self> {
        let dir = package.parent().context("package directory")?;
        let log = fs::File::create(log)?;
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "--quiet",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--volatile=overlay",
                "--private-network",
                "--capability=CAP_BPF,CAP_PERFMON",
                // nspawn's own seccomp filter denies these to the container by default.
                "--system-call-filter=bpf perf_event_open",
            ])
            .arg(format!("--machine=tcpwatch-test-{}", std::process::id()))
            .arg("--directory")
            .arg(root)
            .arg(format!("--bind-ro={}:/mnt/deb", dir.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("running systemd-nspawn (cargo xtask setup installs systemd-container)")?;
        let mut container = Self { nspawn, leader: 0 };
        let deadline = Instant::now() + Duration::from_secs(30);
        while container.leader == 0 {
            if let Ok(Some(status)) = container.nspawn.try_wait() {
                bail!("systemd-nspawn exited with {status}; see target/service-test/nspawn.log");
            }
            ensure!(Instant::now() < deadline, "no container init within 30 s");
            container.leader = child_of(container.nspawn.id()).unwrap_or(0);
            thread::sleep(Duration::from_millis(100));
        }
        Ok(container)
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args(["60", "nsenter", "-t"])
            .arg(self.leader.to_string())
            .args([
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "-C",
                "-r",
                "-w",
                "/bin/bash",
                "-c",
                script,
            ])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        cmd
    }

    fn try_sh(&self, script: &str) -> Result<(bool, String, String)> {
        let out = self.command(script).output().context("running nsenter")?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    fn sh(&self, script: &str) -> Result<String> {
        let (ok, out, err) = self.try_sh(script)?;
        ensure!(ok, "in the container, `{script}` failed:\n{out}{err}");
        Ok(out)
    }

    /// Runs `script` until `done` holds for its output (at most 15 s).
    fn poll(&self, script: &str, done: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, out, _) = self.try_sh(script)?;
            if done(&out) {
                return Ok(out);
            }
            ensure!(
                Instant::now() < deadline,
                "in the container, `{script}` never gave what was expected:\n{out}\n{}",
                self.journal()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn journal(&self) -> String {
        self.try_sh("journalctl --no-pager -u tcpwatch")
            .map(|(_, out, _)| out)
            .unwrap_or_default()
    }

    fn wait_running(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let (_, out, _) = self.try_sh("systemctl is-system-running")?;
            if matches!(out.trim(), "running" | "degraded") {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the container's systemd is '{}' after {limit:?}",
                out.trim()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.try_sh("systemctl poweroff --no-block");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The container's init: the child of `pid` (nspawn) that runs systemd.
fn child_of(pid: u32) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .find(|c| {
            fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|comm| comm.trim() == "systemd")
        })
}
