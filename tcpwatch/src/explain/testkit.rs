//! Building recorded histories for rule tests: events and samples as tcpwatch
//! writes them, fed through a real engine.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::{engine::Engine, finding::FindingRecord, thresholds::Thresholds};
use crate::{
    context::sample::{SampleRecord, SampleTag, Sockstat},
    events::model::{
        EventRecord, Flow, Kind, Process, RecordType, SCHEMA_VERSION, Segment, TcpActivity,
    },
};

/// Namespace used by the tests.
pub const NS: u32 = 4_026_532_001;

/// Test time `ms` milliseconds after a fixed start.
pub fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000, 0).unwrap() + TimeDelta::milliseconds(ms)
}

/// A process.
pub fn proc(pid: u32, comm: &str) -> Process {
    Process {
        pid,
        tid: pid,
        comm: comm.into(),
        uid: 0,
        cgroup_id: 1,
        source: None,
        closed_ms_before: None,
        cgroup: None,
        unit: None,
        container: None,
    }
}

/// An owner learned by `source`.
pub fn owner(pid: u32, comm: &str, source: &str) -> Process {
    Process {
        source: Some(source.into()),
        ..proc(pid, comm)
    }
}

/// Socket activity.
pub fn tcp(idle_ms: u64, bytes_received: u64) -> TcpActivity {
    TcpActivity {
        idle_ms,
        bytes_received,
        bytes_acked: 1,
        total_retrans: 0,
        retransmits: 0,
        probes_out: 0,
        user_timeout_ms: None,
    }
}

fn base(kind: Kind, ms: i64, src: &str, dst: &str, actor: Process) -> EventRecord {
    EventRecord {
        schema_version: SCHEMA_VERSION,
        record: RecordType::Event,
        kind,
        time: at(ms),
        flow: Flow {
            family: "ipv4".into(),
            src: src.into(),
            dst: dst.into(),
            netns: NS,
        },
        old_state: None,
        new_state: None,
        state: None,
        reason: None,
        error: None,
        syscall: None,
        soft_error: None,
        owner: None,
        actor,
        listener: None,
        hook: "test".into(),
        segment: None,
        socket: Some("0xffff0000".into()),
        tcp: None,
        kstack: None,
        netfilter_hook: None,
    }
}

/// A state transition of the socket `local` ↔ `remote`.
pub fn state(
    ms: i64,
    local: &str,
    remote: &str,
    from: &str,
    to: &str,
    owner: Option<Process>,
    actor: Process,
) -> EventRecord {
    EventRecord {
        old_state: Some(from.into()),
        new_state: Some(to.into()),
        owner,
        ..base(Kind::State, ms, local, remote, actor)
    }
}

/// A reset sent by `local` to `remote`.
pub fn sent(
    ms: i64,
    local: &str,
    remote: &str,
    state: Option<&str>,
    reason: Option<&str>,
    owner: Option<Process>,
    actor: Process,
) -> EventRecord {
    EventRecord {
        state: state.map(Into::into),
        reason: reason.map(Into::into),
        owner,
        ..base(Kind::ResetSent, ms, local, remote, actor)
    }
}

/// A `syscall` of `process` on the socket `local` ↔ `remote` that failed
/// with `error`: what the application saw.
pub fn app_error(
    ms: i64,
    local: &str,
    remote: &str,
    syscall: &str,
    error: &str,
    process: Process,
) -> EventRecord {
    EventRecord {
        syscall: Some(syscall.into()),
        error: Some(error.into()),
        state: Some("CLOSE".into()),
        owner: Some(process.clone()),
        hook: "tracepoint:sock:sock_recv_length".into(),
        ..base(Kind::AppError, ms, local, remote, process)
    }
}

/// A segment to `local` from `remote` the kernel dropped for `reason`, at a
/// socket in `state` (`None`: no socket known), an ACK.
pub fn dropped(
    ms: i64,
    local: &str,
    remote: &str,
    reason: &str,
    state: Option<&str>,
) -> EventRecord {
    with_segment(
        EventRecord {
            state: state.map(Into::into),
            reason: Some(reason.into()),
            hook: "tracepoint:skb:kfree_skb".into(),
            ..base(Kind::Drop, ms, local, remote, proc(0, "swapper/0"))
        },
        &["ACK"],
        0,
    )
}

/// The same with the incoming segment.
pub fn with_segment(mut e: EventRecord, flags: &[&str], payload_bytes: u32) -> EventRecord {
    e.segment = Some(Segment {
        flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        payload_bytes,
    });
    e
}

/// The same with socket activity.
pub fn with_tcp(mut e: EventRecord, activity: TcpActivity) -> EventRecord {
    e.tcp = Some(activity);
    e
}

/// A reset received by `local` from `remote` in `state`.
pub fn received(
    ms: i64,
    local: &str,
    remote: &str,
    state: &str,
    owner: Option<Process>,
    actor: Process,
) -> EventRecord {
    let error = match state {
        "SYN_SENT" => "ECONNREFUSED",
        "CLOSE_WAIT" => "EPIPE",
        _ => "ECONNRESET",
    };
    EventRecord {
        state: Some(state.into()),
        error: Some(error.into()),
        owner,
        ..base(Kind::ResetReceived, ms, remote, local, actor)
    }
}

/// An empty sample at `ms`.
pub fn sample(ms: i64) -> SampleRecord {
    SampleRecord {
        schema_version: SCHEMA_VERSION,
        record: SampleTag::Sample,
        time: at(ms),
        netns: NS,
        interval_ms: 1000,
        counters: Default::default(),
        sysctls: [
            (
                "net.ipv4.tcp_max_tw_buckets".to_owned(),
                "131072".to_owned(),
            ),
            ("net.core.somaxconn".to_owned(), "4096".to_owned()),
            ("net.ipv4.tcp_abort_on_overflow".to_owned(), "0".to_owned()),
            (
                "net.ipv4.ip_local_port_range".to_owned(),
                "32768 60999".to_owned(),
            ),
        ]
        .into(),
        sockstat: Sockstat::default(),
        states: Default::default(),
        ports: Vec::new(),
        destinations: Vec::new(),
        listeners: Vec::new(),
        close_wait: Vec::new(),
        processes: Vec::new(),
    }
}

/// What goes into the engine.
pub enum Input {
    /// An event.
    E(Box<EventRecord>),
    /// A sample.
    S(Box<SampleRecord>),
}

impl From<EventRecord> for Input {
    fn from(e: EventRecord) -> Self {
        Self::E(Box::new(e))
    }
}

impl From<SampleRecord> for Input {
    fn from(s: SampleRecord) -> Self {
        Self::S(Box::new(s))
    }
}

/// Runs the inputs through an engine with default thresholds; every finding.
pub fn run(inputs: Vec<Input>) -> Vec<FindingRecord> {
    run_with(Thresholds::default(), inputs)
}

/// Same with thresholds.
pub fn run_with(thresholds: Thresholds, inputs: Vec<Input>) -> Vec<FindingRecord> {
    let mut engine = Engine::new(thresholds);
    let mut out = Vec::new();
    for input in inputs {
        out.extend(match input {
            Input::E(e) => engine.event(&e),
            Input::S(s) => engine.sample(&s),
        });
    }
    out.extend(engine.finish());
    out
}

/// The single finding; panics listing them otherwise.
pub fn only(findings: &[FindingRecord]) -> &FindingRecord {
    assert_eq!(
        findings.len(),
        1,
        "expected one finding: {:#?}",
        findings
            .iter()
            .map(|f| (f.cause, &f.summary))
            .collect::<Vec<_>>()
    );
    &findings[0]
}

/// A connection's opening: client connect, server child, accept.
pub fn connection(ms: i64, server: &str, client: &str, srv: &Process, cli: &Process) -> Vec<Input> {
    vec![
        state(
            ms,
            client,
            server,
            "SYN_SENT",
            "ESTABLISHED",
            Some(owner(cli.pid, &cli.comm, "connect")),
            proc(0, "swapper/0"),
        )
        .into(),
        state(
            ms,
            server,
            client,
            "LISTEN",
            "SYN_RECV",
            Some(owner(srv.pid, &srv.comm, "listener")),
            cli.clone(),
        )
        .into(),
        state(
            ms,
            server,
            client,
            "SYN_RECV",
            "ESTABLISHED",
            Some(owner(srv.pid, &srv.comm, "listener")),
            cli.clone(),
        )
        .into(),
    ]
}
