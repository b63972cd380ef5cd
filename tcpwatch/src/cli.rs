//! Command-line interface (clap). Parsing and validation of what the user typed;
//! no I/O beyond resolving `--netns` paths.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tcpwatch_common::limits;

use crate::{
    filters::{self, Filters, Kinds, Prefix},
    selection::{self, CgroupMatch, Selection},
};

/// tcpwatch: who reset this TCP connection, and why.
///
/// Traces TCP resets (sent and received) and state transitions with eBPF and
/// attributes each to the process that owns the socket.
#[derive(Debug, Parser)]
#[command(name = "tcpwatch", version, about, long_about = None)]
pub struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options about the kernel, shared by the subcommands.
#[derive(Debug, Args)]
pub struct KernelArgs {
    /// Kernel BTF to read struct layouts and enum names from: for kernels
    /// without /sys/kernel/btf/vmlinux, a file that describes the running
    /// kernel; `none` to run without (tcpwatch then warns what is lost, as it
    /// does when the kernel has no BTF).
    #[arg(long, value_name = "FILE|none", default_value = crate::probes::btf::VMLINUX_BTF)]
    pub btf: std::path::PathBuf,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace resets (and, with --kind, state transitions) live.
    Trace(Box<TraceArgs>),
    /// A live terminal view of resets and findings by cause, owner and port,
    /// and of the sockets piling up: for the first minutes of an incident.
    Top(Box<TopArgs>),
    /// Show what this kernel offers, the attach plan and why, and which reset
    /// causes it can tell apart.
    Probes(ProbesArgs),
    /// Explain a recording (`tcpwatch trace --json --kind all > FILE`) later or
    /// elsewhere: replay it through the rules and print the findings.
    Explain(ExplainCmdArgs),
    /// Run as a service: trace continuously as a configuration file says, serve
    /// OpenMetrics, log findings to journald, and keep a flight recorder.
    Daemon(DaemonArgs),
    /// Ask the running daemon what happened recently (its flight recorder).
    Query(QueryArgs),
    /// Write the man pages or print shell completions.
    Generate(GenerateArgs),
}

/// `tcpwatch daemon`.
#[derive(Debug, Args)]
#[command(
    after_help = "Signals: SIGHUP reloads the configuration (a bad file keeps the running one), SIGTERM stops.\nExample:\n  tcpwatch daemon --config /etc/tcpwatch/config.toml --check"
)]
pub struct DaemonArgs {
    /// The configuration file (TOML; every key and its default are in the
    /// packaged example). Default: /etc/tcpwatch/config.toml, or the defaults
    /// when that does not exist.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Only check the configuration and exit.
    #[arg(long)]
    pub check: bool,
}

/// `tcpwatch query`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo tcpwatch query --since 10m\n  sudo tcpwatch query --cause keepalive_idle_race --unit nginx\n  sudo tcpwatch query --port 6379 --json"
)]
pub struct QueryArgs {
    /// How far back (e.g. 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub since: Duration,
    /// Only flows with this local or remote port (or pile-ups on it). Repeatable.
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only records whose owner (or listener, or peer) is this process. Repeatable.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only findings of this cause (docs/causes), and the events of their
    /// connections. Repeatable.
    #[arg(long, value_name = "CAUSE", value_parser = parse_cause)]
    pub cause: Vec<crate::explain::cause::Cause>,
    /// Units, cgroups, containers.
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Print JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// The daemon's query socket.
    #[arg(long, value_name = "PATH", default_value = "/run/tcpwatch/query.sock")]
    pub socket: std::path::PathBuf,
}

/// `tcpwatch generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to generate.
    #[command(subcommand)]
    pub what: Generate,
}

/// What `generate` writes.
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Man pages, one per command (tcpwatch.1, tcpwatch-trace.1, ...), into DIR.
    Man {
        /// Where to write them.
        dir: std::path::PathBuf,
    },
    /// Shell completions, on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the processes run, decided in user space from their cgroup; shared by
/// `trace` and `query`.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Only events and findings whose owner (or listener, or peer) runs in this
    /// systemd unit (`nginx` means `nginx.service`). Repeatable.
    #[arg(long, value_name = "UNIT", value_parser = selection::parse_unit)]
    pub unit: Vec<String>,
    /// ...in this cgroup: an id (as in `cgroup_id`) or a path such as
    /// /system.slice/nginx.service (and below). Repeatable.
    #[arg(long, value_name = "ID|PATH", value_parser = CgroupMatch::parse)]
    pub cgroup: Vec<CgroupMatch>,
    /// ...in this container: its id or a prefix of it. Repeatable.
    #[arg(long, value_name = "ID", value_parser = selection::parse_container)]
    pub container: Vec<String>,
}

impl PlacementArgs {
    /// The selection these options make.
    pub fn selection(&self) -> Selection {
        Selection {
            units: self.unit.clone(),
            cgroups: self.cgroup.clone(),
            containers: self.container.clone(),
            ..Selection::default()
        }
    }
}

/// Tuning of the explanations, shared by `trace` and `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Print a ranking of causes by count, with top owners and ports, at the end.
    #[arg(long)]
    pub summary: bool,
    /// A close after at least this much idle time is an idle (keep-alive) close.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_duration)]
    pub idle_close: Duration,
    /// TIME_WAIT sockets on a port (or toward a destination) before a pile-up is
    /// reported (judged with the close pattern; 25 times this is always reported).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub time_wait_threshold: u32,
    /// A CLOSE_WAIT socket idle this long counts as leaked.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub close_wait_age: Duration,
    /// Leaked CLOSE_WAIT sockets in one process before it is reported.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub close_wait_count: u32,
}

impl ExplainArgs {
    /// The thresholds these options set.
    pub fn thresholds(&self) -> crate::explain::thresholds::Thresholds {
        crate::explain::thresholds::Thresholds {
            idle_close: self.idle_close,
            time_wait_min: self.time_wait_threshold,
            time_wait_high: self.time_wait_threshold.saturating_mul(25),
            close_wait_age: self.close_wait_age,
            close_wait_count: self.close_wait_count,
            ..Default::default()
        }
    }
}

/// `tcpwatch explain`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tcpwatch trace --json --kind all > incident.jsonl   # record\n  tcpwatch explain --from incident.jsonl --summary     # explain, anywhere"
)]
pub struct ExplainCmdArgs {
    /// The recording: JSON Lines from `tcpwatch trace --json` (`-` for stdin).
    /// Record with `--kind all` so connection histories are complete.
    #[arg(long, value_name = "FILE")]
    pub from: std::path::PathBuf,
    /// Print JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Explanation options.
    #[command(flatten)]
    pub explain: ExplainArgs,
}

/// Which sockets and flows the kernel reports: shared by `trace` and `top`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only sockets owned by (or, for resets without a socket, listened on by)
    /// this process id. Repeatable.
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,
    /// Only sockets owned (or listened on) by this command name.
    #[arg(long, value_name = "COMM", value_parser = filters::parse_comm)]
    pub comm: Option<String>,
    /// Only flows with this local or remote port. Repeatable.
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only flows with a local or remote address in this address or CIDR prefix.
    /// Repeatable.
    #[arg(long, value_name = "ADDR[/LEN]", value_parser = filters::parse_prefix)]
    pub addr: Vec<Prefix>,
    /// Only this network namespace: an inode number, a path such as
    /// /proc/PID/ns/net or /run/netns/NAME, or a NAME under /run/netns.
    /// Repeatable.
    #[arg(long, value_name = "NETNS", value_parser = filters::parse_netns)]
    pub netns: Vec<u32>,
}

impl FilterArgs {
    /// The in-kernel filters these options make, for event kinds `kinds`.
    pub fn filters(&self, kinds: Vec<tcpwatch_common::event::EventKind>) -> Filters {
        Filters {
            kinds,
            pids: self.pid.clone(),
            comm: self.comm.clone(),
            ports: self.port.clone(),
            prefixes: self.addr.clone(),
            netns: self.netns.clone(),
        }
    }
}

/// How the kernel side and the namespace sampler run: shared by `trace` and
/// `top`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Ring buffer size in bytes: a power of two, at least 4096.
    #[arg(long, value_name = "BYTES", default_value_t = limits::RING_BUFFER_BYTES, value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,
    /// A storm (events summarised in the kernel because they arrive faster
    /// than they can be shown) ends once fewer than this many events per
    /// second are summarised.
    #[arg(long, value_name = "N", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub storm_exit_rate: u64,
    /// Capacity of each socket-owner table.
    #[arg(long, value_name = "N", default_value_t = limits::SOCKET_OWNERS, value_parser = clap::value_parser!(u32).range(1024..=16_777_216))]
    pub max_sockets: u32,
    /// How long a closed socket's owner is remembered for late segments.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub owner_grace: Duration,
    /// Skip the start-up census of existing sockets.
    #[arg(long)]
    pub no_census: bool,
    /// How often the active network namespaces are sampled (counters, sysctls,
    /// socket states) for the explanations; a namespace whose socket dump
    /// costs more than 5% of a CPU over this interval is sampled less often.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_sample_interval)]
    pub sample_interval: Duration,
}

/// `tcpwatch trace`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tcpwatch trace                        resets sent and received, and findings\n  tcpwatch trace --kind all --port 443  everything on port 443\n  tcpwatch trace --json --kind all --duration 60s > incident.jsonl   (record for explain)"
)]
pub struct TraceArgs {
    /// Print JSON Lines instead of readable lines.
    #[arg(long)]
    pub json: bool,
    /// Event kinds: state, reset_sent, reset_received, reset (both), all (the
    /// three), drop (TCP segments the kernel dropped, with its reason) and
    /// app_error (reads and writes that failed with a reset's or a timeout's
    /// error: what the application saw; 6.4+), both opt-in, not part of all;
    /// comma-separated.
    #[arg(long, value_name = "KINDS", default_value = "reset", value_parser = filters::parse_kinds)]
    pub kind: Kinds,
    /// Which sockets and flows.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Units, cgroups, containers.
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Kernel side and sampling.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Print the kernel programs' debug log (aya-log) on stderr.
    #[arg(long)]
    pub bpf_log: bool,
    /// Show with each reset the kernel stack of the path that sent or took
    /// it, symbolised from /proc/kallsyms (a backtrace in text, a `kstack`
    /// list of frames in JSON). Costs a stack walk per reset; off by default.
    #[arg(long)]
    pub kstack: bool,
    /// Only print events: no findings, no namespace sampling (and the kernel
    /// reports only the --kind events).
    #[arg(long)]
    pub no_explain: bool,
    /// Explanation options.
    #[command(flatten)]
    pub explain: ExplainArgs,
    /// Kernel options.
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `tcpwatch top`.
#[derive(Debug, Args)]
#[command(
    after_help = "Keys: q, Esc or Ctrl-C quit (SIGINT, SIGTERM and SIGHUP too). Made for 80x24 and up; works over SSH.\nNeeds a terminal: for a pipe or a file use `tcpwatch trace`.\nExamples:\n  sudo tcpwatch top\n  sudo tcpwatch top --port 443 --unit nginx"
)]
pub struct TopArgs {
    /// Which sockets and flows.
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Units, cgroups, containers.
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Quit after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Kernel side and sampling.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Explanation options (--summary prints the ranking after the view closes).
    #[command(flatten)]
    pub explain: ExplainArgs,
    /// Kernel options.
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// `tcpwatch probes`.
#[derive(Debug, Args)]
pub struct ProbesArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Kernel options.
    #[command(flatten)]
    pub kernel: KernelArgs,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|_| format!("'{text}' is not a duration (for example 500ms, 30s, 5m, 1h)"))
}

fn parse_cause(text: &str) -> Result<crate::explain::cause::Cause, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        format!(
            "'{text}' is not a cause id (see docs/causes, e.g. no_listener, keepalive_idle_race)"
        )
    })
}

fn parse_sample_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(100) {
        return Err(format!("'{text}' is too short (at least 100ms)"));
    }
    Ok(d)
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of bytes"))?;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least 4096"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_errors() {
        let cli = Cli::try_parse_from(["tcpwatch", "trace"]).unwrap();
        let Command::Trace(t) = cli.command else {
            panic!("not trace")
        };
        assert_eq!(
            t.kind.0,
            [
                tcpwatch_common::event::EventKind::ResetSent,
                tcpwatch_common::event::EventKind::ResetReceived
            ]
        );
        assert!(Cli::try_parse_from(["tcpwatch", "trace", "--ring-buffer-size", "5000"]).is_err());
        assert!(Cli::try_parse_from(["tcpwatch", "trace", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["tcpwatch", "trace", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["tcpwatch", "trace", "--duration", "soon"]).is_err());
    }

    #[test]
    fn top_shares_the_filter_and_kernel_options_of_trace() {
        let cli = Cli::try_parse_from([
            "tcpwatch",
            "top",
            "--port",
            "443",
            "--netns",
            "1",
            "--unit",
            "nginx",
            "--ring-buffer-size",
            "65536",
            "--btf",
            "none",
            "--duration",
            "5s",
        ])
        .unwrap();
        let Command::Top(t) = cli.command else {
            panic!("not top")
        };
        assert_eq!(t.filters.port, [443]);
        assert_eq!(t.filters.netns, [1]);
        assert_eq!(t.placement.unit, ["nginx"]);
        assert_eq!(t.pipeline.ring_buffer_size, 65536);
        assert_eq!(t.kernel.btf, std::path::Path::new("none"));
        assert_eq!(t.duration, Some(Duration::from_secs(5)));
        // trace's output options are not top's.
        assert!(Cli::try_parse_from(["tcpwatch", "top", "--json"]).is_err());
        assert!(Cli::try_parse_from(["tcpwatch", "top", "--count", "3"]).is_err());
    }
}
