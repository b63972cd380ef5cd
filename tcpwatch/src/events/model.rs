//! The public event schema: what `--json` prints one per line and what
//! `explain --from` reads back. Field names are a contract (see docs/schema.md);
//! bump [`SCHEMA_VERSION`] on incompatible changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the JSON Lines schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Kind of event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A TCP state transition.
    State,
    /// This host sent a RST.
    ResetSent,
    /// A socket on this host received a RST.
    ResetReceived,
    /// The kernel dropped a TCP segment (`--kind drop`).
    Drop,
    /// A read or write of the owning process on a TCP socket failed with a
    /// reset's, a timeout's or an ICMP error (`--kind app_error`): what the
    /// application saw.
    AppError,
}

impl Kind {
    /// The kind of a kernel record.
    pub fn from_wire(kind: tcpwatch_common::event::EventKind) -> Self {
        use tcpwatch_common::event::EventKind;
        match kind {
            EventKind::State => Self::State,
            EventKind::ResetSent => Self::ResetSent,
            EventKind::ResetReceived => Self::ResetReceived,
            EventKind::Drop => Self::Drop,
            EventKind::AppError => Self::AppError,
        }
    }

    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::ResetSent => "reset_sent",
            Self::ResetReceived => "reset_received",
            Self::Drop => "drop",
            Self::AppError => "app_error",
        }
    }
}

/// Record type tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// A kernel event.
    Event,
}

/// One event, as printed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `event`.
    pub record: RecordType,
    /// Kind.
    pub kind: Kind,
    /// Wall-clock time of the kernel hook (RFC 3339, UTC, nanoseconds).
    pub time: DateTime<Utc>,
    /// The connection. For resets, `src` → `dst` is the direction the RST
    /// travelled (for `reset_sent`, `src` is this host); for state events `src` is
    /// the local socket; for drops `src` is the local end (the dropped
    /// segment's destination, or its sender when it was dropped on the way out).
    pub flow: Flow,
    /// State before the transition (state events).
    pub old_state: Option<String>,
    /// State after the transition (state events).
    pub new_state: Option<String>,
    /// For resets: the local socket's state when the reset was sent or received;
    /// `null` without a socket.
    pub state: Option<String>,
    /// Kernel reset reason (`enum sk_rst_reason` name) for `reset_sent`, when the
    /// kernel reports one; for `drop`, the kernel's drop reason
    /// (`enum skb_drop_reason` name, e.g. `TCP_LISTEN_OVERFLOW`); otherwise `null`.
    pub reason: Option<String>,
    /// The error the owning process gets: for `reset_received`, from its next
    /// socket call, as `tcp_reset()` sets it from the state; for `app_error`,
    /// the errno the call returned; for other events on a socket that holds an
    /// error (`sk_err`, e.g. `ETIMEDOUT` when a connection timed out), that
    /// error.
    pub error: Option<String>,
    /// For `app_error`: the syscall that failed (`read`, `sendmsg`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The socket's last soft error (`sk_err_soft`), e.g. `EHOSTUNREACH`
    /// from an ICMP error while it retransmitted; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_error: Option<String>,
    /// The process that owns the socket, `null` when no process owns it.
    pub owner: Option<Process>,
    /// The task on the CPU when the hook fired. Right for close(), setsockopt and
    /// `ss -K`; unrelated in softirq and timer context.
    pub actor: Process,
    /// For resets without a full socket: the process listening on the local
    /// port in that namespace, `null` when nobody listens.
    pub listener: Option<Process>,
    /// Kernel hook that reported the event.
    pub hook: String,
    /// For passive resets: the incoming segment that triggered the RST; for
    /// drops: the dropped segment.
    pub segment: Option<Segment>,
    /// Kernel address of the socket (hex), for correlating events of one socket.
    pub socket: Option<String>,
    /// Activity of the local socket at the event (full sockets only).
    #[serde(default)]
    pub tcp: Option<TcpActivity>,
    /// With `--kstack`, for resets: the kernel stack of the path that built
    /// (sent) or took (received) the reset, innermost frame first. Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kstack: Option<Vec<Frame>>,
    /// For resets built by a netfilter `REJECT --reject-with tcp-reset` rule
    /// (hook `kprobe:nf_send_reset[6]`): the netfilter hook of the rule, as
    /// iptables names its chains (`INPUT`, `FORWARD`, `OUTPUT`, ...). Absent
    /// for resets TCP built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netfilter_hook: Option<String>,
}

/// One kernel stack frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Return address (hex).
    pub address: String,
    /// The function it is in, from /proc/kallsyms; `null` when unknown.
    pub symbol: Option<String>,
    /// Offset of the address in that function, in bytes.
    pub offset: Option<u64>,
}

/// A full socket's activity at the time of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpActivity {
    /// Milliseconds since the socket last sent or received a segment.
    pub idle_ms: u64,
    /// Payload bytes received over the connection's life.
    pub bytes_received: u64,
    /// Payload bytes sent and acknowledged by the peer.
    pub bytes_acked: u64,
    /// Segments retransmitted over the connection's life.
    #[serde(default)]
    pub total_retrans: u32,
    /// Retransmission timeouts in a row without an ACK (0 once acknowledged).
    #[serde(default)]
    pub retransmits: u32,
    /// Keep-alive or zero-window probes sent without an answer.
    #[serde(default)]
    pub probes_out: u32,
    /// The socket's `TCP_USER_TIMEOUT` in ms, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_timeout_ms: Option<u32>,
}

/// A flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// `addr:port` (IPv6 as `[addr]:port`).
    pub src: String,
    /// `addr:port`.
    pub dst: String,
    /// Network namespace inode.
    pub netns: u32,
}

/// A process (owner, listener or actor).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Process {
    /// Process id (thread-group id, as `ps` shows).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Command name.
    pub comm: String,
    /// Real user id.
    pub uid: u32,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// cgroup v2 path the id resolves to (in tcpwatch's cgroup namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// systemd unit named by the cgroup path (`nginx.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Container id (64 hex digits) named by the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// How the owner was learned: `connect`, `listen`, `accept`, `close`,
    /// `listener` (inherited, not yet accepted) or `census` (found at start-up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For an owner whose socket already closed: milliseconds between that close
    /// and this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms_before: Option<u64>,
}

impl AsRef<Process> for Process {
    fn as_ref(&self) -> &Process {
        self
    }
}

/// The incoming segment that triggered a reset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// TCP flags, e.g. `["SYN"]`, `["ACK", "PSH"]`.
    pub flags: Vec<String>,
    /// Payload bytes.
    pub payload_bytes: u32,
}

/// Record type tag of storm-mode records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StormTag {
    /// Storm mode started or ended.
    Storm,
    /// Events summarised in the kernel during a storm.
    Aggregate,
}

/// Storm mode started or ended: events arrived faster than tcpwatch could
/// take them, so the kernel counts them instead of sending each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StormRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `storm`.
    pub record: StormTag,
    /// When it started or ended.
    pub time: DateTime<Utc>,
    /// `started` or `ended`.
    pub phase: StormPhase,
    /// When the storm started.
    pub since: DateTime<Utc>,
    /// Events summarised (not sent one by one) in this storm so far.
    pub summarised: u64,
}

/// Phase of a storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StormPhase {
    /// Storm mode started.
    Started,
    /// Storm mode ended; per-event output resumes.
    Ended,
}

/// Events of one kind, states, reason, owner and port that the kernel counted
/// during a storm instead of sending them: "`count` events summarised".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateRecord {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `aggregate`.
    pub record: StormTag,
    /// The latest event counted.
    pub time: DateTime<Utc>,
    /// The first event counted in this record.
    pub since: DateTime<Utc>,
    /// Kind of the events.
    pub kind: Kind,
    /// State events: the transition.
    pub old_state: Option<String>,
    /// State events: the transition.
    pub new_state: Option<String>,
    /// Resets: the socket's state (`null` without a socket).
    pub state: Option<String>,
    /// Resets sent: the kernel's reason, where it has one.
    pub reason: Option<String>,
    /// Network namespace inode.
    pub netns: u32,
    /// The service port (the lower of the two ports of each flow).
    pub port: u16,
    /// Whether `port` is the local or the remote port: `local` or `remote`.
    pub port_side: String,
    /// Resets answering a segment: its TCP flags.
    #[serde(default)]
    pub segment_flags: Option<Vec<String>>,
    /// The owner of the sockets, when the key had one.
    pub owner: Option<Process>,
    /// For resets without a socket: the process listening on the port.
    pub listener: Option<Process>,
    /// Events summarised.
    pub count: u64,
    /// The latest event's flow, for example.
    pub example: Flow,
}
