//! The attach plan: a pure function from detected [`Features`] to the programs to
//! attach, each with the reason for the choice. Decided from features, never from
//! version numbers; `tcpwatch probes` prints it.

use super::features::Features;

/// What a program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// TCP state transitions and owner capture.
    States,
    /// Resets this host sends.
    ResetsSent,
    /// Resets sockets on this host receive.
    ResetsReceived,
    /// Owner of accepted sockets.
    AcceptOwner,
    /// TCP segments the kernel dropped, with its reason (opt-in).
    Drops,
    /// The backlog programs ask `listen()` for (accept-queue findings).
    ListenBacklog,
    /// Resets netfilter builds for `REJECT --reject-with tcp-reset`.
    FirewallResets,
    /// Socket calls that failed with a reset's or a timeout's error: what the
    /// application saw (opt-in).
    AppErrors,
}

impl Role {
    /// Short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::States => "state transitions",
            Self::ResetsSent => "resets sent",
            Self::ResetsReceived => "resets received",
            Self::AcceptOwner => "owner of accepted sockets",
            Self::Drops => "dropped segments",
            Self::ListenBacklog => "listen() backlog",
            Self::FirewallResets => "firewall resets",
            Self::AppErrors => "what the application saw",
        }
    }
}

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachPoint {
    /// A tracepoint `category:name`.
    Tracepoint {
        /// Tracepoint system.
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
    },
    /// A kprobe on a kernel function.
    Kprobe {
        /// Function name.
        function: &'static str,
    },
}

impl std::fmt::Display for AttachPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tracepoint { category, name } => write!(f, "tracepoint:{category}:{name}"),
            Self::Kprobe { function } => write!(f, "kprobe:{function}"),
        }
    }
}

/// One program to load and attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Program name in the eBPF object.
    pub program: &'static str,
    /// Where it attaches.
    pub point: AttachPoint,
    /// What for.
    pub role: Role,
}

/// How completely this kernel reports resets sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetCoverage {
    /// Every reset built by the TCP stack, including those without a full socket.
    Complete,
    /// Only resets sent for full sockets: no-socket and TIME_WAIT resets are missed.
    FullSocketsOnly,
    /// Resets sent are not observed.
    None,
}

/// The attach plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Programs in attach order.
    pub steps: Vec<Step>,
    /// One line per role: what was chosen and why.
    pub reasons: Vec<(Role, String)>,
    /// Coverage of resets sent.
    pub reset_coverage: ResetCoverage,
}

/// Errors planning.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// Not one usable hook.
    #[error(
        "this kernel has none of the hooks tcpwatch uses (sock:inet_sock_set_state, tcp:tcp_send_reset, tcp:tcp_receive_reset, kprobes)"
    )]
    NothingToAttach,
}

/// What the user asked for beyond the default hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    /// Dropped segments (`--kind drop`): `skb:kfree_skb` runs for every packet
    /// the kernel frees as a drop, so it is attached only when asked for.
    pub drops: bool,
    /// Failed socket calls (`--kind app_error`): the `sock_*_length`
    /// tracepoints run for every socket read and write, so they are attached
    /// only when asked for.
    pub app_errors: bool,
}

/// Chooses the programs for this kernel, without the opt-in ones.
pub fn plan(features: &Features) -> Result<Plan, PlanError> {
    plan_for(features, Wants::default())
}

/// Chooses the programs for this kernel and what the user asked for.
pub fn plan_for(features: &Features, wants: Wants) -> Result<Plan, PlanError> {
    let mut steps = Vec::new();
    let mut reasons = Vec::new();

    if features.set_state.is_some() {
        steps.push(tracepoint(
            "tcpwatch_state",
            "sock",
            "inet_sock_set_state",
            Role::States,
        ));
        reasons.push((
            Role::States,
            "tracepoint sock:inet_sock_set_state".to_owned(),
        ));
    } else {
        reasons.push((
            Role::States,
            "unavailable: no sock:inet_sock_set_state tracepoint (added in 4.16); no state events, and owners come only from accept()".to_owned(),
        ));
    }

    // The kprobes read the socket and the segment at BTF offsets.
    let can_kprobe_resets = features.kprobes
        && features.btf
        && features.has_function("tcp_v4_send_reset")
        && features.has_function("tcp_send_active_reset");
    let reset_coverage = if features.send_reset_covers_all() {
        steps.push(tracepoint(
            "tcpwatch_send_reset",
            "tcp",
            "tcp_send_reset",
            Role::ResetsSent,
        ));
        reasons.push((
            Role::ResetsSent,
            "tracepoint tcp:tcp_send_reset: it has the reason field, so it also fires for resets without a full socket (no socket, TIME_WAIT)".to_owned(),
        ));
        ResetCoverage::Complete
    } else if can_kprobe_resets {
        steps.push(kprobe("tcpwatch_v4_send_reset", "tcp_v4_send_reset"));
        if features.has_function("tcp_v6_send_reset") {
            steps.push(kprobe("tcpwatch_v6_send_reset", "tcp_v6_send_reset"));
        }
        steps.push(kprobe("tcpwatch_active_reset", "tcp_send_active_reset"));
        let why = if features.send_reset.is_some() {
            "kprobes on tcp_v4_send_reset/tcp_v6_send_reset/tcp_send_active_reset: this kernel's tcp:tcp_send_reset has no reason field and skips resets without a full socket"
        } else {
            "kprobes on tcp_v4_send_reset/tcp_v6_send_reset/tcp_send_active_reset: no tcp:tcp_send_reset tracepoint"
        };
        let mut why = why.to_owned();
        if !features.has_function("tcp_v6_send_reset") {
            why.push_str("; tcp_v6_send_reset is not in kallsyms (IPv6 off or a module not loaded): IPv6 passive resets are missed");
        }
        reasons.push((Role::ResetsSent, why));
        ResetCoverage::Complete
    } else if features.send_reset.is_some() {
        steps.push(tracepoint(
            "tcpwatch_send_reset",
            "tcp",
            "tcp_send_reset",
            Role::ResetsSent,
        ));
        reasons.push((
            Role::ResetsSent,
            "tracepoint tcp:tcp_send_reset without the reason field, and no kprobes here: resets without a full socket (connection to a closed port, TIME_WAIT) are NOT seen".to_owned(),
        ));
        ResetCoverage::FullSocketsOnly
    } else {
        reasons.push((
            Role::ResetsSent,
            "unavailable: no tcp:tcp_send_reset tracepoint and no kprobes".to_owned(),
        ));
        ResetCoverage::None
    };

    if features.receive_reset.is_some() {
        steps.push(tracepoint(
            "tcpwatch_receive_reset",
            "tcp",
            "tcp_receive_reset",
            Role::ResetsReceived,
        ));
        reasons.push((
            Role::ResetsReceived,
            "tracepoint tcp:tcp_receive_reset".to_owned(),
        ));
    } else {
        reasons.push((
            Role::ResetsReceived,
            "unavailable: no tcp:tcp_receive_reset tracepoint".to_owned(),
        ));
    }

    let mut accept = Vec::new();
    // The accept() hooks walk the task's file table at BTF offsets.
    let can_walk_fds = features.btf;
    if can_walk_fds && features.accept4_exit.is_some() {
        steps.push(tracepoint(
            "tcpwatch_accept4_exit",
            "syscalls",
            "sys_exit_accept4",
            Role::AcceptOwner,
        ));
        accept.push("syscalls:sys_exit_accept4");
    }
    if can_walk_fds && features.accept_exit.is_some() {
        steps.push(tracepoint(
            "tcpwatch_accept_exit",
            "syscalls",
            "sys_exit_accept",
            Role::AcceptOwner,
        ));
        accept.push("syscalls:sys_exit_accept");
    }
    reasons.push((
        Role::AcceptOwner,
        if !can_walk_fds {
            "unavailable: no kernel BTF to read the file table; accepted sockets are attributed to the listener's owner".to_owned()
        } else if accept.is_empty() {
            "unavailable: no syscall tracepoints (CONFIG_FTRACE_SYSCALLS); accepted sockets are attributed to the listener's owner".to_owned()
        } else {
            format!("tracepoints {}", accept.join(", "))
        },
    ));

    // The listen() hook walks the file table too; it only adds a number to
    // accept-queue findings, so it is cheap (one run per listen() call).
    if can_walk_fds && features.listen_enter.is_some() {
        steps.push(tracepoint(
            "tcpwatch_listen_enter",
            "syscalls",
            "sys_enter_listen",
            Role::ListenBacklog,
        ));
        reasons.push((
            Role::ListenBacklog,
            "tracepoint syscalls:sys_enter_listen: accept-queue findings name the backlog the program asked for".to_owned(),
        ));
    } else {
        reasons.push((
            Role::ListenBacklog,
            if can_walk_fds {
                "unavailable: no syscalls:sys_enter_listen tracepoint; accept-queue findings give only the kernel's limit, min(backlog, net.core.somaxconn)"
            } else {
                "unavailable: no kernel BTF to read the file table; accept-queue findings give only the kernel's limit, min(backlog, net.core.somaxconn)"
            }
            .to_owned(),
        ));
    }

    reasons.push((Role::Drops, drops(features, wants, &mut steps)));
    reasons.push((Role::AppErrors, app_errors(features, wants, &mut steps)));

    let why = firewall_resets(features, &mut steps);
    reasons.push((Role::FirewallResets, why));

    if !steps
        .iter()
        .any(|s| !matches!(s.role, Role::AcceptOwner | Role::ListenBacklog))
    {
        return Err(PlanError::NothingToAttach);
    }
    Ok(Plan {
        steps,
        reasons,
        reset_coverage,
    })
}

/// Adds the drop hook when wanted and possible; says why (not).
fn drops(features: &Features, wants: Wants, steps: &mut Vec<Step>) -> String {
    let Some(format) = &features.kfree_skb else {
        return "unavailable: no skb:kfree_skb tracepoint".to_owned();
    };
    if !features.btf {
        // The TCP check and the flow are read from the skb at BTF offsets.
        return "unavailable: no kernel BTF to read the dropped segment".to_owned();
    }
    let what = match (
        format.get("reason").is_some(),
        format.get("rx_sk").is_some(),
    ) {
        (true, true) => {
            "tracepoint skb:kfree_skb with the drop reason and the receiving socket (rx_sk)"
        }
        (true, false) => {
            "tracepoint skb:kfree_skb with the drop reason; no rx_sk field (before 6.12): the socket comes from skb->sk, where set"
        }
        (false, _) => {
            "tracepoint skb:kfree_skb without a drop reason (before 5.17): drops are shown without why"
        }
    };
    if !wants.drops {
        return format!("not attached (opt-in: --kind drop); available: {what}");
    }
    steps.push(tracepoint(
        "tcpwatch_kfree_skb",
        "skb",
        "kfree_skb",
        Role::Drops,
    ));
    format!("{what}; filtered to TCP segments in the kernel")
}

/// Adds the failed-socket-call hooks when wanted and possible; says why (not).
/// Reads and writes need the `sock:sock_*_length` tracepoints (6.4+);
/// `connect()` is seen at its syscall exit on any kernel with syscall
/// tracepoints, its socket found through the file table (BTF).
fn app_errors(features: &Features, wants: Wants, steps: &mut Vec<Step>) -> String {
    if !features.btf {
        // The flow is read from the socket at BTF offsets.
        return "unavailable: no kernel BTF to read the socket".to_owned();
    }
    let calls = [&features.recv_length, &features.send_length]
        .iter()
        .all(|f| {
            f.as_ref()
                .is_some_and(|f| f.get("ret").is_some() && f.get("sk").is_some())
        });
    let connect = features
        .connect_exit
        .as_ref()
        .is_some_and(|f| f.get("ret").is_some());
    let what = match (calls, connect) {
        (true, true) => {
            "tracepoints sock:sock_recv_length, sock:sock_send_length, syscalls:sys_exit_connect: failed reads, writes and connects with their errno and syscall"
        }
        (false, true) => {
            "tracepoint syscalls:sys_exit_connect only: failed connects; failed reads and writes need sock:sock_recv_length/sock_send_length (6.4+)"
        }
        (true, false) => {
            "tracepoints sock:sock_recv_length, sock:sock_send_length: failed reads and writes; no syscalls:sys_exit_connect (CONFIG_FTRACE_SYSCALLS) for connects"
        }
        (false, false) => {
            return "unavailable: no sock:sock_recv_length/sock_send_length tracepoints (before 6.4) and no syscalls:sys_exit_connect; findings say which error the owner gets, not the call that got it".to_owned();
        }
    };
    if !wants.app_errors {
        return format!("not attached (opt-in: --kind app_error); available: {what}");
    }
    if calls {
        steps.push(tracepoint(
            "tcpwatch_recv_length",
            "sock",
            "sock_recv_length",
            Role::AppErrors,
        ));
        steps.push(tracepoint(
            "tcpwatch_send_length",
            "sock",
            "sock_send_length",
            Role::AppErrors,
        ));
    }
    if connect {
        steps.push(tracepoint(
            "tcpwatch_connect_exit",
            "syscalls",
            "sys_exit_connect",
            Role::AppErrors,
        ));
    }
    format!("{what}; filtered to TCP and the errnos of resets and timeouts in the kernel")
}

/// Kprobes on netfilter's reset builder, where they work. They are not
/// warned about at start-up when missing (most hosts have no REJECT rule);
/// `tcpwatch probes` says why.
fn firewall_resets(features: &Features, steps: &mut Vec<Step>) -> String {
    const FUNCTIONS: [(&str, &str); 2] = [
        ("tcpwatch_nf_send_reset", "nf_send_reset"),
        ("tcpwatch_nf_send_reset6", "nf_send_reset6"),
    ];
    if !features.kprobes {
        return "not seen: netfilter builds REJECT --reject-with tcp-reset resets in nf_send_reset/nf_send_reset6, which have no tracepoint, and this kernel has no kprobes; the client's reset shows as peer_reset".to_owned();
    }
    let present: Vec<_> = FUNCTIONS
        .iter()
        .filter(|(_, f)| features.has_function(f))
        .collect();
    if present.is_empty() {
        return "not seen: nf_send_reset/nf_send_reset6 are not in kallsyms (modules nf_reject_ipv4/nf_reject_ipv6 not loaded: the first REJECT rule loads them; restart tcpwatch then)".to_owned();
    }
    if !features.nf_reset_args {
        return "not seen: the BTF of nf_send_reset does not give its arguments (net, oldskb, hook)".to_owned();
    }
    for (program, function) in &present {
        steps.push(Step {
            program,
            point: AttachPoint::Kprobe { function },
            role: Role::FirewallResets,
        });
    }
    let names: Vec<&str> = present.iter().map(|(_, f)| *f).collect();
    let mut why = format!("kprobes on {}", names.join(", "));
    if present.len() < FUNCTIONS.len() {
        why.push_str(" (the other is not loaded: its family's REJECT resets are missed)");
    }
    why
}

fn tracepoint(
    program: &'static str,
    category: &'static str,
    name: &'static str,
    role: Role,
) -> Step {
    Step {
        program,
        point: AttachPoint::Tracepoint { category, name },
        role,
    }
}

fn kprobe(program: &'static str, function: &'static str) -> Step {
    Step {
        program,
        point: AttachPoint::Kprobe { function },
        role: Role::ResetsSent,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::probes::tracefs::TpFormat;

    fn format(fields: &[&str]) -> Option<TpFormat> {
        let text: String = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                format!(
                    "\tfield:int {f};\toffset:{};\tsize:4;\tsigned:0;\n",
                    8 + 4 * i
                )
            })
            .collect();
        Some(TpFormat::parse(&format!("format:\n{text}print fmt: \"\"\n")).unwrap())
    }

    fn kernel(reason: bool, kprobes: bool, functions: &[&str]) -> Features {
        let reset_fields: &[&str] = if reason {
            &["skbaddr", "skaddr", "state", "reason", "saddr", "daddr"]
        } else {
            &["skbaddr", "skaddr", "sport", "dport", "state", "family"]
        };
        Features {
            release: "test".into(),
            btf: true,
            kprobes,
            functions: functions
                .iter()
                .map(|f| (*f).to_owned())
                .collect::<BTreeSet<_>>(),
            set_state: format(&["skaddr", "oldstate", "newstate"]),
            send_reset: format(reset_fields),
            receive_reset: format(&["skaddr"]),
            accept4_exit: format(&["ret"]),
            accept_exit: format(&["ret"]),
            kfree_skb: format(&["skbaddr", "location", "rx_sk", "protocol", "reason"]),
            listen_enter: format(&["fd", "backlog"]),
            recv_length: format(&["sk", "family", "protocol", "ret", "flags"]),
            send_length: format(&["sk", "family", "protocol", "ret", "flags"]),
            connect_exit: format(&["ret"]),
            nf_reset_args: true,
        }
    }

    fn points(plan: &Plan, role: Role) -> Vec<String> {
        plan.steps
            .iter()
            .filter(|s| s.role == role)
            .map(|s| s.point.to_string())
            .collect()
    }

    const ALL_FUNCTIONS: &[&str] = &[
        "tcp_v4_send_reset",
        "tcp_v6_send_reset",
        "tcp_send_active_reset",
    ];

    #[test]
    fn tracepoint_with_reason_wins_even_when_kprobes_exist() {
        let plan = plan(&kernel(true, true, ALL_FUNCTIONS)).unwrap();
        assert_eq!(
            points(&plan, Role::ResetsSent),
            ["tracepoint:tcp:tcp_send_reset"]
        );
        assert_eq!(plan.reset_coverage, ResetCoverage::Complete);
        assert!(
            plan.steps
                .iter()
                .all(|s| !matches!(s.point, AttachPoint::Kprobe { .. }))
        );
    }

    #[test]
    fn old_tracepoint_falls_back_to_kprobes() {
        let plan = plan(&kernel(false, true, ALL_FUNCTIONS)).unwrap();
        assert_eq!(
            points(&plan, Role::ResetsSent),
            [
                "kprobe:tcp_v4_send_reset",
                "kprobe:tcp_v6_send_reset",
                "kprobe:tcp_send_active_reset"
            ]
        );
        assert_eq!(plan.reset_coverage, ResetCoverage::Complete);
    }

    #[test]
    fn no_ipv6_function_is_said() {
        let plan = plan(&kernel(
            false,
            true,
            &["tcp_v4_send_reset", "tcp_send_active_reset"],
        ))
        .unwrap();
        assert_eq!(points(&plan, Role::ResetsSent).len(), 2);
        let why = &plan
            .reasons
            .iter()
            .find(|(r, _)| *r == Role::ResetsSent)
            .unwrap()
            .1;
        assert!(why.contains("IPv6 passive resets are missed"), "{why}");
    }

    #[test]
    fn old_tracepoint_without_kprobes_is_partial() {
        let plan = plan(&kernel(false, false, ALL_FUNCTIONS)).unwrap();
        assert_eq!(
            points(&plan, Role::ResetsSent),
            ["tracepoint:tcp:tcp_send_reset"]
        );
        assert_eq!(plan.reset_coverage, ResetCoverage::FullSocketsOnly);
        // Kprobes available but the functions are not (inlined, renamed): same.
        let plan = super::plan(&kernel(false, true, &[])).unwrap();
        assert_eq!(plan.reset_coverage, ResetCoverage::FullSocketsOnly);
    }

    #[test]
    fn missing_pieces_are_reported_not_fatal() {
        let mut f = kernel(true, false, &[]);
        f.accept4_exit = None;
        f.accept_exit = None;
        f.receive_reset = None;
        let plan = plan(&f).unwrap();
        assert!(points(&plan, Role::AcceptOwner).is_empty());
        assert!(
            plan.reasons
                .iter()
                .any(|(r, w)| *r == Role::ResetsReceived && w.starts_with("unavailable"))
        );
        assert!(
            plan.reasons
                .iter()
                .any(|(r, w)| *r == Role::AcceptOwner && w.contains("listener"))
        );
    }

    #[test]
    fn drops_are_attached_only_when_asked_for() {
        let f = kernel(true, false, &[]);
        let default = plan(&f).unwrap();
        assert!(points(&default, Role::Drops).is_empty());
        let why = &default
            .reasons
            .iter()
            .find(|(r, _)| *r == Role::Drops)
            .unwrap()
            .1;
        assert!(why.starts_with("not attached (opt-in"), "{why}");
        let asked = plan_for(
            &f,
            Wants {
                drops: true,
                ..Wants::default()
            },
        )
        .unwrap();
        assert_eq!(points(&asked, Role::Drops), ["tracepoint:skb:kfree_skb"]);
        assert_eq!(
            points(&asked, Role::ListenBacklog),
            ["tracepoint:syscalls:sys_enter_listen"]
        );
        // Without BTF the segment cannot be read: not attached even when asked.
        let mut no_btf = f.clone();
        no_btf.btf = false;
        let p = plan_for(
            &no_btf,
            Wants {
                drops: true,
                ..Wants::default()
            },
        )
        .unwrap();
        assert!(points(&p, Role::Drops).is_empty());
        assert!(points(&p, Role::ListenBacklog).is_empty());
        let mut none = f;
        none.kfree_skb = None;
        let p = plan_for(
            &none,
            Wants {
                drops: true,
                ..Wants::default()
            },
        )
        .unwrap();
        assert!(
            p.reasons
                .iter()
                .any(|(r, w)| *r == Role::Drops && w.starts_with("unavailable"))
        );
    }

    #[test]
    fn failed_calls_are_attached_only_when_asked_for_and_from_6_4() {
        let f = kernel(true, false, &[]);
        let why = |p: &Plan| {
            p.reasons
                .iter()
                .find(|(r, _)| *r == Role::AppErrors)
                .unwrap()
                .1
                .clone()
        };
        let default = plan(&f).unwrap();
        assert!(points(&default, Role::AppErrors).is_empty());
        assert!(
            why(&default).starts_with("not attached (opt-in"),
            "{}",
            why(&default)
        );
        let wants = Wants {
            app_errors: true,
            ..Wants::default()
        };
        let asked = plan_for(&f, wants).unwrap();
        assert_eq!(
            points(&asked, Role::AppErrors),
            [
                "tracepoint:sock:sock_recv_length",
                "tracepoint:sock:sock_send_length",
                "tracepoint:syscalls:sys_exit_connect"
            ]
        );
        // 6.1 has neither sock tracepoint: connects only, and said so.
        let mut old = f;
        old.recv_length = None;
        old.send_length = None;
        let p = plan_for(&old, wants).unwrap();
        assert_eq!(
            points(&p, Role::AppErrors),
            ["tracepoint:syscalls:sys_exit_connect"]
        );
        assert!(why(&p).contains("sys_exit_connect only"), "{}", why(&p));
        old.connect_exit = None;
        let p = plan_for(&old, wants).unwrap();
        assert!(points(&p, Role::AppErrors).is_empty());
        assert!(
            why(&p).starts_with("unavailable: no sock:sock_recv_length"),
            "{}",
            why(&p)
        );
    }

    #[test]
    fn firewall_resets_need_kprobes_the_functions_and_their_btf() {
        let why = |plan: &Plan| {
            plan.reasons
                .iter()
                .find(|(r, _)| *r == Role::FirewallResets)
                .unwrap()
                .1
                .clone()
        };
        let nf = &["nf_send_reset", "nf_send_reset6"];
        let with = plan(&kernel(true, true, nf)).unwrap();
        assert_eq!(
            points(&with, Role::FirewallResets),
            ["kprobe:nf_send_reset", "kprobe:nf_send_reset6"]
        );
        // This machine: 6.18 without kprobes.
        let without = plan(&kernel(true, false, nf)).unwrap();
        assert!(points(&without, Role::FirewallResets).is_empty());
        assert!(why(&without).contains("no kprobes"), "{}", why(&without));
        // Modules not loaded.
        let unloaded = plan(&kernel(true, true, &[])).unwrap();
        assert!(why(&unloaded).contains("not loaded"), "{}", why(&unloaded));
        // Only IPv4.
        let v4 = plan(&kernel(true, true, &["nf_send_reset"])).unwrap();
        assert_eq!(points(&v4, Role::FirewallResets), ["kprobe:nf_send_reset"]);
        assert!(why(&v4).contains("missed"), "{}", why(&v4));
        // No prototype in BTF.
        let mut f = kernel(true, true, nf);
        f.nf_reset_args = false;
        assert!(points(&plan(&f).unwrap(), Role::FirewallResets).is_empty());
    }

    #[test]
    fn nothing_to_attach_is_an_error() {
        let f = Features {
            accept4_exit: format(&["ret"]),
            ..Features::default()
        };
        assert_eq!(plan(&f), Err(PlanError::NothingToAttach));
    }
}
