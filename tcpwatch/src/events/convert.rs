//! A validated raw event to its public record: names from the kernel's enums,
//! wall-clock time, addresses as text.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use tcpwatch_common::{
    event::{EventKind, Hook, NO_SYSCALL, TcpEvent, flags},
    family,
    flow::FlowKey,
    owner::{OwnerRecord, OwnerSource, TaskIdent},
    storm::{AggregateKey, AggregateValue, key_flags},
};

use super::{
    clock::Clock,
    errno,
    model::{
        AggregateRecord, EventRecord, Flow, Kind, Process, RecordType, SCHEMA_VERSION, Segment,
        StormTag, TcpActivity,
    },
};
use crate::probes::kernel_enums::KernelNames;

/// Converts raw events of this kernel.
pub struct Converter {
    names: KernelNames,
    clock: Clock,
}

impl Converter {
    /// A converter with this kernel's names and a sampled clock.
    pub fn new(names: KernelNames, clock: Clock) -> Self {
        Self { names, clock }
    }

    /// The record for `raw`. `raw` must have passed [`super::decode::decode`].
    pub fn convert(&self, raw: &TcpEvent) -> EventRecord {
        let kind = kind_of(raw.header.kind);
        let has = |bit| raw.flags & bit != 0;
        let (old_state, new_state, state) =
            self.states(kind, raw.old_state, raw.new_state, raw.skaddr != 0);
        let hook = Hook::from_raw(raw.hook);
        let netfilter = hook.is_some_and(Hook::is_netfilter);
        let reason = match kind {
            Kind::ResetSent if has(flags::HAS_REASON) && !netfilter => {
                Some(self.reason(raw.reason))
            }
            Kind::Drop if has(flags::HAS_REASON) => Some(self.drop_reason(raw.reason)),
            _ => None,
        };
        let netfilter_hook = netfilter.then(|| {
            self.names
                .netfilter_hook(raw.reason)
                .map_or_else(|| format!("hook#{}", raw.reason), str::to_owned)
        });
        let stats = has(flags::HAS_TCP_STATS).then_some(&raw.tcp);
        let error = match kind {
            // The errno follows from the state; unknown without it (no BTF).
            Kind::ResetReceived => state
                .as_deref()
                .map(|state| received_error(Some(state)).to_owned()),
            Kind::AppError => Some(errno::name(raw.reason)),
            _ => stats
                .filter(|t| t.sk_err != 0)
                .map(|t| errno::name(t.sk_err.into())),
        };
        let syscall = (kind == Kind::AppError && raw.seg_len != NO_SYSCALL)
            .then(|| errno::syscall(raw.seg_len));
        let now = raw.header.ts_ns;
        EventRecord {
            schema_version: SCHEMA_VERSION,
            record: RecordType::Event,
            kind,
            time: self.clock.wall(now),
            flow: flow(&raw.flow, raw.family == family::INET6, kind),
            old_state,
            new_state,
            state,
            reason,
            error,
            syscall,
            soft_error: stats
                .filter(|t| t.sk_err_soft != 0)
                .map(|t| errno::name(t.sk_err_soft.into())),
            owner: has(flags::HAS_OWNER).then(|| owner(&raw.owner, now)),
            actor: process(&raw.actor),
            listener: has(flags::HAS_LISTENER).then(|| owner(&raw.listener, now)),
            hook: hook.map_or_else(|| format!("hook#{}", raw.hook), |h| h.name().to_owned()),
            segment: (has(flags::HAS_SEGMENT) && kind != Kind::AppError).then(|| Segment {
                flags: tcp_flags(raw.seg_flags),
                payload_bytes: raw.seg_len,
            }),
            socket: (raw.skaddr != 0).then(|| format!("{:#x}", raw.skaddr)),
            tcp: stats.map(|t| TcpActivity {
                idle_ms: t.idle_us / 1000,
                bytes_received: t.bytes_received,
                bytes_acked: t.bytes_acked,
                total_retrans: t.total_retrans,
                retransmits: t.retransmits.into(),
                probes_out: t.probes_out.into(),
                user_timeout_ms: (t.user_timeout_ms != 0).then_some(t.user_timeout_ms),
            }),
            // Read from the stack map by the session (`--kstack`).
            kstack: None,
            netfilter_hook,
        }
    }
}

impl Converter {
    /// The record for storm-mode counts: `value` summed over CPUs, `count` of
    /// them new since the previous record of the key.
    pub fn aggregate(
        &self,
        key: &AggregateKey,
        value: &AggregateValue,
        count: u64,
    ) -> AggregateRecord {
        let kind = kind_of(key.kind);
        let has = |bit| key.flags & bit != 0;
        let (old_state, new_state, state) =
            self.states(kind, key.old_state, key.new_state, key.new_state != 0);
        let who = (has(key_flags::OWNER) || has(key_flags::LISTENER))
            .then(|| owner(&value.owner, value.last_ns));
        let v6 = Ipv6Addr::from(value.example.local_addr)
            .to_ipv4_mapped()
            .is_none();
        AggregateRecord {
            schema_version: SCHEMA_VERSION,
            record: StormTag::Aggregate,
            time: self.clock.wall(value.last_ns),
            since: self.clock.wall(value.first_ns),
            kind,
            old_state,
            new_state,
            state,
            reason: match kind {
                Kind::ResetSent if has(key_flags::HAS_REASON) => Some(self.reason(key.reason)),
                Kind::Drop if has(key_flags::HAS_REASON) => Some(self.drop_reason(key.reason)),
                Kind::AppError if has(key_flags::HAS_REASON) => Some(errno::name(key.reason)),
                _ => None,
            },
            netns: key.netns,
            port: key.port,
            segment_flags: has(key_flags::HAS_SEGMENT).then(|| tcp_flags(key.seg_flags)),
            port_side: if has(key_flags::LOCAL_PORT) {
                "local"
            } else {
                "remote"
            }
            .to_owned(),
            owner: if has(key_flags::OWNER) {
                who.clone()
            } else {
                None
            },
            listener: if has(key_flags::LISTENER) { who } else { None },
            count,
            example: flow(&value.example, v6, kind),
        }
    }

    /// (old_state, new_state) for state events, `state` for resets on a socket.
    fn states(
        &self,
        kind: Kind,
        old: u8,
        new: u8,
        socket: bool,
    ) -> (Option<String>, Option<String>, Option<String>) {
        let name = |n: u8| {
            self.names
                .state(n)
                .map_or_else(|| n.to_string(), str::to_owned)
        };
        match kind {
            Kind::State => (Some(name(old)), Some(name(new)), None),
            // No socket, or its state unknown (0 is no TCP state: read without BTF).
            _ if !socket || new == 0 => (None, None, None),
            _ => (None, None, Some(name(new))),
        }
    }

    fn drop_reason(&self, raw: u32) -> String {
        self.names
            .drop_reason(raw)
            .map_or_else(|| format!("UNKNOWN_{raw}"), str::to_owned)
    }

    fn reason(&self, raw: u32) -> String {
        self.names
            .reason(raw)
            .map_or_else(|| format!("UNKNOWN_{raw}"), str::to_owned)
    }
}

fn kind_of(raw: u8) -> Kind {
    match EventKind::from_raw(raw) {
        Some(EventKind::State) | None => Kind::State,
        Some(EventKind::ResetSent) => Kind::ResetSent,
        Some(EventKind::ResetReceived) => Kind::ResetReceived,
        Some(EventKind::Drop) => Kind::Drop,
        Some(EventKind::AppError) => Kind::AppError,
    }
}

/// The errno `tcp_reset()` gives the socket in each state.
pub fn received_error(state: Option<&str>) -> &'static str {
    match state {
        Some("SYN_SENT") => "ECONNREFUSED",
        Some("CLOSE_WAIT") => "EPIPE",
        _ => "ECONNRESET",
    }
}

fn flow(key: &FlowKey, v6: bool, kind: Kind) -> Flow {
    let local = address(key.local_addr, key.local_port, v6);
    let remote = address(key.remote_addr, key.remote_port, v6);
    let (src, dst) = match kind {
        Kind::ResetReceived => (remote, local),
        Kind::State | Kind::ResetSent | Kind::Drop | Kind::AppError => (local, remote),
    };
    Flow {
        family: if v6 { "ipv6" } else { "ipv4" }.to_owned(),
        src: src.to_string(),
        dst: dst.to_string(),
        netns: key.netns,
    }
}

/// An address from its 16-byte form: IPv4 sockets show as IPv4, IPv6 sockets
/// keep v4-mapped addresses as the kernel reports them.
fn address(bytes: [u8; 16], port: u16, v6: bool) -> SocketAddr {
    let ip = Ipv6Addr::from(bytes);
    let ip = match ip.to_ipv4_mapped() {
        Some(v4) if !v6 => IpAddr::V4(v4),
        _ => IpAddr::V6(ip),
    };
    SocketAddr::new(ip, port)
}

fn process(task: &TaskIdent) -> Process {
    let end = task
        .comm
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(task.comm.len());
    Process {
        pid: task.pid,
        tid: task.tid,
        comm: String::from_utf8_lossy(&task.comm[..end]).into_owned(),
        uid: task.uid,
        cgroup_id: task.cgroup_id,
        source: None,
        closed_ms_before: None,
        cgroup: None,
        unit: None,
        container: None,
    }
}

fn owner(record: &OwnerRecord, now: u64) -> Process {
    let mut p = process(&record.task);
    p.source = OwnerSource::from_raw(record.source).map(|s| source_name(s).to_owned());
    p.closed_ms_before =
        (record.closed_ns != 0).then(|| now.saturating_sub(record.closed_ns) / 1_000_000);
    p
}

fn source_name(source: OwnerSource) -> &'static str {
    match source {
        OwnerSource::Connect => "connect",
        OwnerSource::Listen => "listen",
        OwnerSource::Accept => "accept",
        OwnerSource::Close => "close",
        OwnerSource::Listener => "listener",
        OwnerSource::Census => "census",
        OwnerSource::Caller => "caller",
    }
}

fn tcp_flags(byte: u8) -> Vec<String> {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| byte & (1 << bit) != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use tcpwatch_common::{event::EventHeader, flow::map_v4};

    use super::*;
    use crate::probes::tracefs::TpFormat;

    fn names() -> KernelNames {
        let states = TpFormat::parse("format:\n\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;\nprint fmt: \"x\", __print_symbolic(REC->oldstate, { 1, \"TCP_ESTABLISHED\" }, { 2, \"TCP_SYN_SENT\" }, { 7, \"TCP_CLOSE\" }, { 8, \"TCP_CLOSE_WAIT\" })\n").unwrap();
        let reasons = TpFormat::parse("format:\n\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\nprint fmt: \"r\", __print_symbolic(REC->reason, { 1, \"NO_SOCKET\" })\n").unwrap();
        KernelNames::resolve(None, Some(&states), Some(&reasons)).unwrap()
    }

    fn raw(kind: EventKind) -> TcpEvent {
        let mut e = TcpEvent {
            header: EventHeader {
                kind: kind as u8,
                ts_ns: 10_000_000_000,
                ..EventHeader::default()
            },
            family: family::INET,
            hook: Hook::TcpSendResetTp as u8,
            ..TcpEvent::default()
        };
        e.flow.local_addr = map_v4([127, 0, 0, 1]);
        e.flow.remote_addr = map_v4([127, 0, 0, 2]);
        e.flow.local_port = 80;
        e.flow.remote_port = 5555;
        e.flow.netns = 4026532000;
        e.actor.comm[..7].copy_from_slice(b"python3");
        e
    }

    /// A drop names the kernel's drop reason (not the reset reason of the same
    /// number), its segment and the socket's state, and decodes as kind 4.
    #[test]
    fn drop_with_its_reason() {
        let mut names = names();
        let kfree = TpFormat::parse("format:\n\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\nprint fmt: \"r\", __print_symbolic(REC->reason, { 1, \"NOT_SPECIFIED\" }, { 40, \"TCP_LISTEN_OVERFLOW\" })\n").unwrap();
        names.resolve_drop_reasons(None, Some(&kfree));
        let mut e = raw(EventKind::Drop);
        e.hook = Hook::KfreeSkbTp as u8;
        e.flags = flags::HAS_REASON | flags::HAS_SEGMENT | flags::FULL_SOCKET;
        e.skaddr = 0xffff_8880_0000_2000;
        e.new_state = 7;
        e.seg_flags = 0x18;
        e.seg_len = 18;
        let converter = Converter::new(names, Clock::with_offset(0));
        e.reason = 40;
        let r = converter.convert(&e);
        assert_eq!(r.kind, Kind::Drop);
        assert_eq!(r.reason.as_deref(), Some("TCP_LISTEN_OVERFLOW"));
        assert_eq!(r.state.as_deref(), Some("CLOSE"));
        assert_eq!(
            (r.flow.src.as_str(), r.flow.dst.as_str()),
            ("127.0.0.1:80", "127.0.0.2:5555")
        );
        assert_eq!(r.hook, "tracepoint:skb:kfree_skb");
        assert_eq!(r.segment.as_ref().unwrap().payload_bytes, 18);
        // 1 is NO_SOCKET as a reset reason, NOT_SPECIFIED as a drop reason.
        e.reason = 1;
        assert_eq!(
            converter.convert(&e).reason.as_deref(),
            Some("NOT_SPECIFIED")
        );
        let json = serde_json::to_value(converter.convert(&e)).unwrap();
        assert_eq!(json["kind"], "drop");
        e.header.version = tcpwatch_common::ABI_VERSION;
        e.header.size = size_of::<TcpEvent>() as u16;
        // SAFETY: TcpEvent is repr(C) plain data; viewing it as bytes is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts((&raw const e).cast::<u8>(), size_of::<TcpEvent>())
        };
        assert_eq!(super::super::decode::decode(bytes).map(|d| d.reason), Ok(1));
    }

    #[test]
    fn no_socket_reset() {
        let mut e = raw(EventKind::ResetSent);
        e.flags = flags::HAS_REASON | flags::HAS_SEGMENT;
        e.reason = 1;
        e.seg_flags = 0x02;
        let r = Converter::new(names(), Clock::with_offset(0)).convert(&e);
        assert_eq!(r.flow.src, "127.0.0.1:80");
        assert_eq!(r.flow.dst, "127.0.0.2:5555");
        assert_eq!(r.reason.as_deref(), Some("NO_SOCKET"));
        assert_eq!(r.state, None);
        assert_eq!(r.owner, None);
        assert_eq!(r.listener, None);
        assert_eq!(r.actor.comm, "python3");
        assert_eq!(r.segment.as_ref().unwrap().flags, ["SYN"]);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["owner"].is_null() && json["listener"].is_null());
        assert_eq!(json["kind"], "reset_sent");
        assert_eq!(json["record"], "event");
    }

    #[test]
    fn received_reset_points_from_peer_and_names_errno() {
        let mut e = raw(EventKind::ResetReceived);
        e.skaddr = 0xffff_8880_0000_1000;
        e.new_state = 2;
        e.flags = flags::HAS_OWNER;
        e.owner.task.pid = 4242;
        e.owner.source = OwnerSource::Connect as u8;
        let r = Converter::new(names(), Clock::with_offset(0)).convert(&e);
        assert_eq!(r.flow.src, "127.0.0.2:5555");
        assert_eq!(r.state.as_deref(), Some("SYN_SENT"));
        assert_eq!(r.error.as_deref(), Some("ECONNREFUSED"));
        let owner = r.owner.unwrap();
        assert_eq!(
            (owner.pid, owner.source.as_deref()),
            (4242, Some("connect"))
        );
    }

    #[test]
    fn dual_stack_keeps_mapped_form_and_unknown_reason_is_visible() {
        let mut e = raw(EventKind::ResetSent);
        e.family = family::INET6;
        e.flags = flags::HAS_REASON;
        e.reason = 99;
        let r = Converter::new(names(), Clock::with_offset(0)).convert(&e);
        assert_eq!(r.flow.src, "[::ffff:127.0.0.1]:80");
        assert_eq!(r.reason.as_deref(), Some("UNKNOWN_99"));
    }

    #[test]
    fn failed_call_and_socket_error() {
        use nix::libc;
        let converter = Converter::new(names(), Clock::with_offset(0));
        let mut e = raw(EventKind::AppError);
        e.hook = Hook::SockRecvLengthTp as u8;
        e.flags = flags::HAS_REASON | flags::FULL_SOCKET | flags::HAS_TCP_STATS;
        e.skaddr = 0xffff_8880_0000_3000;
        e.new_state = 7;
        e.reason = libc::ECONNRESET as u32;
        e.seg_len = libc::SYS_recvfrom as u32;
        e.tcp.total_retrans = 3;
        e.tcp.retransmits = 2;
        e.tcp.sk_err_soft = libc::EHOSTUNREACH as u8;
        let r = converter.convert(&e);
        assert_eq!(r.kind, Kind::AppError);
        assert_eq!(r.error.as_deref(), Some("ECONNRESET"));
        assert_eq!(r.syscall.as_deref(), Some("recvfrom"));
        assert_eq!(r.soft_error.as_deref(), Some("EHOSTUNREACH"));
        assert_eq!(r.state.as_deref(), Some("CLOSE"));
        assert_eq!(r.hook, "tracepoint:sock:sock_recv_length");
        assert!(r.segment.is_none() && r.reason.is_none(), "{r:?}");
        let tcp = r.tcp.unwrap();
        assert_eq!(
            (tcp.total_retrans, tcp.retransmits, tcp.user_timeout_ms),
            (3, 2, None)
        );
        e.seg_len = NO_SYSCALL;
        assert_eq!(converter.convert(&e).syscall, None);
        // A state event to CLOSE carries the socket's error, when it holds one.
        let mut close = raw(EventKind::State);
        close.flags = flags::FULL_SOCKET | flags::HAS_TCP_STATS;
        close.old_state = 1;
        close.new_state = 7;
        close.tcp.sk_err = libc::ETIMEDOUT as u8;
        assert_eq!(
            converter.convert(&close).error.as_deref(),
            Some("ETIMEDOUT")
        );
        close.tcp.sk_err = 0;
        assert_eq!(converter.convert(&close).error, None);
    }
}
