//! In-kernel cost per event of each tcpwatch program (kernel.bpf_stats_enabled:
//! run_time_ns / run_cnt), against the floor (a program on the same tracepoint
//! that only copies the record into a ring buffer) and against a bpftrace
//! script doing the same owner lookup. All three are attached at once, so they
//! see the same events.

use std::{
    fs,
    io::Write as _,
    os::fd::AsFd,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::RingBuf,
    programs::{TracePoint, loaded_programs},
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{artifacts::Artifacts, load, report::Report, traced::Traced};

/// The tracepoints measured, with the names of the floor programs and the
/// name prefixes (the kernel keeps 15 characters) of the tcpwatch and bpftrace
/// programs on each.
const HOOKS: [(&str, &str, &str, &str); 3] = [
    (
        "sock:inet_sock_set_state",
        "tcpwatch_state",
        "floor_state",
        "inet_sock_set_s",
    ),
    (
        "tcp:tcp_send_reset",
        "tcpwatch_send_r",
        "floor_send_reset",
        "tcp_send_reset",
    ),
    (
        "tcp:tcp_receive_reset",
        "tcpwatch_receiv",
        "floor_receive_reset",
        "tcp_receive_res",
    ),
];

/// The kernel keeps the first 15 characters of a program's name.
fn kernel_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// The bpftrace script: remember the owner (pid, comm) of each socket at the
/// process-context transitions tcpwatch learns from, forget it at CLOSE, and
/// print every event with the owner found, as tcpwatch does.
const BPFTRACE: &str = r#"
tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {
  if ((args->oldstate == TCP_CLOSE && (args->newstate == TCP_SYN_SENT || args->newstate == TCP_LISTEN)) ||
      (args->oldstate == TCP_ESTABLISHED && args->newstate == TCP_FIN_WAIT1) ||
      (args->oldstate == TCP_CLOSE_WAIT && args->newstate == TCP_LAST_ACK)) {
    @owner[args->skaddr] = (pid, comm);
  }
  $o = @owner[args->skaddr];
  printf("state %p %d %d %d %s\n", args->skaddr, args->oldstate, args->newstate, $o.0, $o.1);
  if (args->newstate == TCP_CLOSE) { delete(@owner[args->skaddr]); }
}
tracepoint:tcp:tcp_send_reset {
  $o = @owner[args->skaddr];
  printf("reset_sent %p %d %d %s\n", args->skaddr, args->reason, $o.0, $o.1);
}
tracepoint:tcp:tcp_receive_reset {
  $o = @owner[args->skaddr];
  printf("reset_received %p %d %s\n", args->skaddr, $o.0, $o.1);
}
"#;

/// Run time and count of one program.
#[derive(Clone, Copy, Default)]
struct Cost {
    ns: u64,
    runs: u64,
}

/// Sums loaded programs whose name starts with `prefix`.
fn cost(prefix: &str) -> Cost {
    loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with(prefix)))
        .fold(Cost::default(), |c, p| Cost {
            ns: c.ns + p.run_time().as_nanos() as u64,
            runs: c.runs + p.run_count(),
        })
}

/// The quiet floor program on the same hook as floor program `floor`.
fn quiet(floor: &str) -> String {
    floor.replacen("floor_", "quiet_", 1)
}

/// The floors, loaded and attached, their ring buffers drained on a thread
/// (the quiet one every 50 ms, as tcpwatch does without a wake-up).
struct Floor {
    _ebpf: Ebpf,
    stop: Arc<AtomicBool>,
    drain: Option<thread::JoinHandle<()>>,
}

impl Floor {
    fn attach(object: &Path) -> Result<Self> {
        let mut ebpf = Ebpf::load_file(object).context("loading the floor object")?;
        for (hook, _, floor, _) in HOOKS {
            let (category, name) = hook.split_once(':').context("hook")?;
            for program in [floor.to_owned(), quiet(floor)] {
                let program: &mut TracePoint = ebpf
                    .program_mut(&program)
                    .with_context(|| format!("{program} missing from the floor object"))?
                    .try_into()?;
                program.load()?;
                program.attach(category, name)?;
            }
        }
        let mut ring = RingBuf::try_from(ebpf.take_map("FLOOR_EVENTS").context("FLOOR_EVENTS")?)?;
        let mut quiet_ring =
            RingBuf::try_from(ebpf.take_map("QUIET_EVENTS").context("QUIET_EVENTS")?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let drain = thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let ready = {
                    let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
                    poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0)
                };
                if ready > 0 {
                    while ring.next().is_some() {}
                }
                while quiet_ring.next().is_some() {}
            }
        });
        Ok(Self {
            _ebpf: ebpf,
            stop,
            drain: Some(drain),
        })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
    }
}

/// bpftrace running the script, output discarded.
struct Bpftrace(Child);

impl Bpftrace {
    fn start(dir: &Path) -> Result<Self> {
        let script = dir.join("owner-lookup.bt");
        fs::write(&script, BPFTRACE)?;
        let child = Command::new("bpftrace")
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("bpftrace (apt-get install bpftrace)")?;
        // bpftrace compiles and attaches in a second or two.
        for _ in 0..100 {
            let attached = loaded_programs()
                .filter_map(Result::ok)
                .any(|p| p.name_as_str() == Some("tcp_receive_res"));
            if attached {
                return Ok(Self(child));
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!("bpftrace did not attach within 10 s")
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Turns kernel.bpf_stats_enabled on for its life.
struct BpfStats(String);

impl BpfStats {
    fn enable() -> Result<Self> {
        const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";
        let before = fs::read_to_string(PATH).context("reading kernel.bpf_stats_enabled")?;
        fs::write(PATH, "1").context("enabling kernel.bpf_stats_enabled")?;
        Ok(Self(before.trim().to_owned()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::OpenOptions::new()
            .write(true)
            .open("/proc/sys/kernel/bpf_stats_enabled")
            .and_then(|mut f| f.write_all(self.0.as_bytes()));
    }
}

/// One workload: `clients` processes connecting to a closed port for
/// `seconds`, each at `rate` attempts per second (0: flat out).
struct Workload {
    name: &'static str,
    clients: usize,
    rate: u64,
}

/// Runs the kernel-cost benchmark.
pub fn run(artifacts: &Artifacts, dir: &Path, seconds: f64, report: &mut Report) -> Result<()> {
    let _stats = BpfStats::enable()?;
    let floor = Floor::attach(&artifacts.floor)?;
    let bpftrace = Bpftrace::start(dir)?;
    let traced = Traced::start(&artifacts.tcpwatch, &["--kind", "all"])?;
    let workloads = [
        Workload {
            name: "paced (2 clients x 1000 refused connects/s, no storm)",
            clients: 2,
            rate: 1000,
        },
        Workload {
            name: "flat out (3 clients, storm mode)",
            clients: 3,
            rate: 0,
        },
    ];
    let mut rows = Vec::new();
    for workload in &workloads {
        let before: Vec<[Cost; 4]> = HOOKS
            .iter()
            .map(|(_, t, f, b)| {
                [
                    cost(t),
                    cost(kernel_name(f)),
                    cost(kernel_name(&quiet(f))),
                    cost(b),
                ]
            })
            .collect();
        let args = vec![
            "refused".to_owned(),
            "127.0.0.1:9".to_owned(),
            seconds.to_string(),
            format!("--rate={}", workload.rate),
        ];
        let children = (0..workload.clients)
            .map(|_| load::spawn(&args))
            .collect::<Result<Vec<_>>>()?;
        let connects = load::total(children)?;
        for ((hook, t, f, b), before) in HOOKS.iter().zip(before) {
            let per_event = |now: Cost, then: Cost| {
                let runs = now.runs.saturating_sub(then.runs);
                (
                    runs,
                    now.ns.saturating_sub(then.ns) as f64 / runs.max(1) as f64,
                )
            };
            let (runs, tcpwatch) = per_event(cost(t), before[0]);
            let (_, floor_ns) = per_event(cost(kernel_name(f)), before[1]);
            let (_, quiet_ns) = per_event(cost(kernel_name(&quiet(f))), before[2]);
            let (_, bpftrace_ns) = per_event(cost(b), before[3]);
            rows.push(vec![
                workload.name.to_owned(),
                (*hook).to_owned(),
                runs.to_string(),
                format!("{tcpwatch:.0}"),
                format!("{floor_ns:.0}"),
                format!("{quiet_ns:.0}"),
                format!("{bpftrace_ns:.0}"),
                format!("{:.2}x", tcpwatch / floor_ns.max(1.0)),
                format!("{:.2}x", tcpwatch / quiet_ns.max(1.0)),
                format!("{:.2}x", tcpwatch / bpftrace_ns.max(1.0)),
            ]);
        }
        rows.push(vec![
            workload.name.to_owned(),
            format!("({connects} connects in {seconds} s)"),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    let stats = traced.stop()?;
    drop(bpftrace);
    drop(floor);
    report.table(
        "In-kernel cost per event (ns, kernel.bpf_stats_enabled)",
        &[
            "workload",
            "tracepoint",
            "runs",
            "tcpwatch",
            "floor",
            "quiet floor",
            "bpftrace",
            "tcpwatch/floor",
            "tcpwatch/quiet floor",
            "tcpwatch/bpftrace",
        ],
        rows,
    );
    report.note(&format!(
        "tcpwatch during this run: {} storms, {} events summarised, {} lost.",
        super::traced::stat(&stats, &["storms"]),
        super::traced::stat(&stats, &["summarised"]),
        super::traced::stat(&stats, &["lost"]),
    ));
    Ok(())
}
