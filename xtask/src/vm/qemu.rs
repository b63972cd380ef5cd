//! Booting one guest under QEMU/TCG and running one command in it.
//!
//! The kernel boots through its PVH entry (uncompressed vmlinux) with the run's
//! initramfs. Four serial ports carry the console (kernel log), the command's
//! stdout, its stderr and its exit status; each goes to a file that is followed
//! while the guest runs, so output streams live and nothing blocks if QEMU dies
//! early. Directories are shared with virtio-9p. QEMU is killed on timeout and
//! whenever the run is dropped.

use std::{
    fs::{self, File},
    io::{Read as _, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{initramfs, kernels::Kernel};

/// A host directory shared into the guest.
#[derive(Clone, Debug)]
pub struct Share {
    /// 9p mount tag (the root's is `root`).
    pub tag: String,
    /// Directory on the host.
    pub host: PathBuf,
    /// Where the guest mounts it (unused for the root).
    pub guest: PathBuf,
    /// Whether the guest may write to it.
    pub writable: bool,
}

/// One guest run.
pub struct Guest<'a> {
    /// Kernel to boot.
    pub kernel: &'a Kernel,
    /// The Debian root (shared read-only, overlaid with RAM in the guest).
    pub root: &'a Path,
    /// Further shares, mounted in order before the command runs.
    pub shares: Vec<Share>,
    /// Shell script the guest runs as root.
    pub script: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// How TCG runs them.
    pub tcg: TcgThreads,
    /// Wall-clock limit for the whole boot.
    pub timeout: Duration,
}

/// How TCG runs the vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TcgThreads {
    /// One host thread takes turns running every vCPU. Slower, but code the
    /// guest kernel patches while another vCPU runs it (static keys and
    /// kprobes, toggled by every tracer start and stop) stays coherent. With
    /// `multi`, a 6.12 guest once died with RIP one byte into a jump-label site
    /// of tcp_v4_send_reset while tracers were being started and stopped.
    Single,
    /// One host thread per vCPU (MTTCG).
    Multi,
}

impl TcgThreads {
    fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Multi => "multi",
        }
    }
}

/// How a run ended.
pub struct Outcome {
    /// The command's exit status; `None` if the guest never reported one.
    pub status: Option<i32>,
    /// Whether QEMU was killed at the timeout.
    pub timed_out: bool,
    /// The command's stdout.
    pub stdout: Vec<u8>,
    /// The guest's kernel log.
    pub console: String,
    /// Boot-to-poweroff wall time.
    pub wall: Duration,
}

impl Outcome {
    /// What to show of the kernel log when the guest gave no status: the
    /// first oops or panic report if there is one, else the last lines.
    pub fn console_excerpt(&self) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        let oops = all.iter().position(|l| {
            ["BUG:", "Oops:", "general protection fault", "Kernel panic"]
                .iter()
                .any(|m| l.contains(m))
        });
        match oops {
            Some(start) => all[start..all.len().min(start + 60)].join("\n"),
            None => all[all.len().saturating_sub(30)..].join("\n"),
        }
    }
}

/// QEMU, killed when dropped.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots `guest` with its scratch files in `dir`, streams the command's stdout
/// and stderr to ours, and waits for poweroff or the timeout.
pub fn run(guest: &Guest<'_>, dir: &Path) -> Result<Outcome> {
    let initrd = dir.join("initrd.cpio");
    fs::write(
        &initrd,
        initramfs::build(guest.kernel, guest.root, &guest.shares, &guest.script)?,
    )
    .with_context(|| format!("writing {}", initrd.display()))?;
    let ports = ["console", "stdout", "stderr", "status"].map(|p| dir.join(p));
    for port in &ports {
        File::create(port).with_context(|| format!("creating {}", port.display()))?;
    }

    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-machine", "pc", "-cpu", "max"])
        .arg("-accel")
        .arg(format!("tcg,thread={}", guest.tcg.as_str()))
        .args(["-m", &guest.memory_mib.to_string()])
        .args(["-smp", &guest.cpus.to_string()])
        .arg("-kernel")
        .arg(&guest.kernel.vmlinux)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off",
        ])
        .args(["-monitor", "none"]);
    for port in &ports {
        cmd.arg("-serial").arg(format!("file:{}", port.display()));
    }
    let root = Share {
        tag: "root".into(),
        host: guest.root.to_owned(),
        guest: PathBuf::new(),
        writable: false,
    };
    for (i, share) in std::iter::once(&root).chain(&guest.shares).enumerate() {
        cmd.arg("-fsdev").arg(format!(
            "local,id=fs{i},path={},security_model=none{}",
            share.host.display(),
            if share.writable { "" } else { ",readonly=on" }
        ));
        cmd.arg("-device")
            .arg(format!("virtio-9p-pci,fsdev=fs{i},mount_tag={}", share.tag));
    }
    let qemu_log = dir.join("qemu.log");
    let log = File::create(&qemu_log)?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);

    let start = Instant::now();
    let mut vm = Vm(cmd
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?);
    let done = Arc::new(AtomicBool::new(false));
    let out = follow(&ports[1], Box::new(std::io::stdout()), done.clone());
    let err = follow(&ports[2], Box::new(std::io::stderr()), done.clone());

    let deadline = start + guest.timeout;
    let mut timed_out = false;
    loop {
        if vm.0.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = vm.0.kill();
            let _ = vm.0.wait();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let wall = start.elapsed();
    drop(vm);
    done.store(true, Ordering::SeqCst);
    let stdout = out.join().unwrap_or_default();
    // Shown live; nothing reads it afterwards.
    let _ = err.join();

    let status = fs::read_to_string(&ports[3])
        .unwrap_or_default()
        .trim()
        .parse()
        .ok();
    let mut console =
        String::from_utf8_lossy(&fs::read(&ports[0]).unwrap_or_default()).replace('\r', "");
    if status.is_none() {
        console.push_str(&fs::read_to_string(&qemu_log).unwrap_or_default());
    }
    Ok(Outcome {
        status,
        timed_out,
        stdout,
        console,
        wall,
    })
}

/// Copies what QEMU appends to `path` to `sink` until `done` is set and the
/// file has been read to its end; returns everything read.
fn follow(
    path: &Path,
    mut sink: Box<dyn Write + Send>,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<u8>> {
    let path = path.to_owned();
    thread::spawn(move || {
        let mut all = Vec::new();
        let Ok(mut file) = File::open(&path) else {
            return all;
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Read `done` before reading: after it is set, one more read to
            // the end gets the last bytes.
            let finished = done.load(Ordering::SeqCst);
            match file.read(&mut buf) {
                Ok(0) if finished => break,
                Ok(0) => thread::sleep(Duration::from_millis(50)),
                Ok(n) => {
                    let _ = sink.write_all(&buf[..n]);
                    let _ = sink.flush();
                    all.extend_from_slice(&buf[..n]);
                }
                Err(_) => break,
            }
        }
        all
    })
}
