//! `tcpwatch probes`: what this kernel offers, the attach plan and why, and which
//! reset causes it can tell apart.

use std::fmt::Write as _;

use serde_json::json;

use crate::{
    cli::ProbesArgs,
    exit::{Failure, OrExit},
    privileges,
    probes::{
        features::{FUNCTIONS, Features},
        kernel::Kernel,
        kernel_enums::KernelNames,
        plan::{Plan, ResetCoverage, plan},
    },
};

/// How tcpwatch knows a cause when the kernel gives no reason for the reset
/// (before 6.10; active resets before 6.12). Mirrors `explain::infer`.
#[derive(Clone, Copy)]
enum Without {
    /// From the socket's state and the incoming segment.
    Segment,
    /// From the TcpExt counter the kernel moves on that path, in the next sample.
    Counters,
    /// Not told apart: tcpwatch reports it as another reason.
    SeenAs(&'static str),
}

/// Reset causes users need told apart, with the kernel reason that names each.
struct Cause {
    reason: &'static str,
    /// Whether the reset is sent without a full socket.
    socketless: bool,
    without_reason: Without,
    meaning: &'static str,
}

const CAUSES: &[Cause] = &[
    Cause {
        reason: "NO_SOCKET",
        socketless: true,
        without_reason: Without::Segment,
        meaning: "segment for a port nobody listens on, or for a connection this host already forgot",
    },
    Cause {
        reason: "TCP_TIMEWAIT_SOCKET",
        socketless: true,
        without_reason: Without::Segment,
        meaning: "new data on a connection this host closed (keep-alive idle race)",
    },
    Cause {
        reason: "TCP_ABORT_ON_DATA",
        socketless: false,
        without_reason: Without::Segment,
        meaning: "data arrived after the application closed (keep-alive idle race)",
    },
    Cause {
        reason: "TCP_ABORT_ON_CLOSE",
        socketless: false,
        without_reason: Without::Counters,
        meaning: "the application closed with unread data",
    },
    Cause {
        reason: "TCP_STATE",
        socketless: false,
        without_reason: Without::Counters,
        meaning: "abortive close: SO_LINGER {1,0}, ss -K, listener closed with queued connections",
    },
    Cause {
        reason: "TCP_ABORT_ON_LINGER",
        socketless: false,
        without_reason: Without::Counters,
        meaning: "close in FIN_WAIT2 with TCP_LINGER2 < 0",
    },
    Cause {
        reason: "TCP_ABORT_ON_MEMORY",
        socketless: false,
        without_reason: Without::Counters,
        meaning: "too many orphans or TCP memory pressure",
    },
    Cause {
        reason: "TCP_KEEPALIVE_TIMEOUT",
        socketless: false,
        without_reason: Without::Counters,
        meaning: "keep-alive probes unanswered (dead peer, NAT or firewall dropped state)",
    },
    Cause {
        reason: "INVALID_SYN",
        socketless: false,
        without_reason: Without::Segment,
        meaning: "accept queue full with tcp_abort_on_overflow=1, or a bad SYN for a pending connection",
    },
    Cause {
        reason: "TCP_FLAGS",
        socketless: false,
        without_reason: Without::Segment,
        meaning: "ACK to a listener with no matching request",
    },
    Cause {
        reason: "TCP_INVALID_ACK_SEQUENCE",
        socketless: false,
        without_reason: Without::Segment,
        meaning: "bad SYN-ACK on connect (peer restarted with the same port)",
    },
    Cause {
        reason: "TCP_RFC7323_PAWS",
        socketless: false,
        without_reason: Without::SeenAs("TCP_INVALID_ACK_SEQUENCE"),
        meaning: "timestamp (PAWS) rejection on connect",
    },
];

/// How this kernel lets a cause be known.
fn exactness(names: &KernelNames, plan: &Plan, cause: &Cause) -> String {
    if names.has_reason(cause.reason) {
        "exact (kernel reason)".into()
    } else if cause.socketless && plan.reset_coverage != ResetCoverage::Complete {
        "not visible (resets without a socket are missed)".into()
    } else if plan.reset_coverage == ResetCoverage::None {
        "not visible (resets sent are not observed)".into()
    } else {
        match cause.without_reason {
            Without::Segment => "inferred (socket state, incoming segment)".into(),
            Without::Counters => "inferred (TcpExt counters, next sample)".into(),
            Without::SeenAs(other) => format!("not told apart (seen as {other})"),
        }
    }
}

/// Runs `probes`.
pub fn run(args: &ProbesArgs) -> Result<(), Failure> {
    // tracefs and kernel symbols are readable by root only.
    privileges::check().or_usage()?;
    let kernel = Kernel::inspect(&args.kernel.btf).or_usage()?;
    let plan = plan(&kernel.features).or_usage()?;
    let text = if args.json {
        let mut out = serde_json::to_string_pretty(&report_json(&kernel, &plan)).or_runtime()?;
        out.push('\n');
        out
    } else {
        report_text(&kernel, &plan)
    };
    print!("{text}");
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn tracepoints(f: &Features) -> Vec<(&'static str, bool)> {
    vec![
        ("sock:inet_sock_set_state", f.set_state.is_some()),
        ("tcp:tcp_send_reset", f.send_reset.is_some()),
        ("tcp:tcp_receive_reset", f.receive_reset.is_some()),
        ("syscalls:sys_exit_accept4", f.accept4_exit.is_some()),
        ("syscalls:sys_exit_accept", f.accept_exit.is_some()),
        ("syscalls:sys_enter_listen", f.listen_enter.is_some()),
        ("skb:kfree_skb", f.kfree_skb.is_some()),
        ("sock:sock_recv_length", f.recv_length.is_some()),
        ("sock:sock_send_length", f.send_length.is_some()),
        ("syscalls:sys_exit_connect", f.connect_exit.is_some()),
    ]
}

fn report_text(kernel: &Kernel, plan: &Plan) -> String {
    let f = &kernel.features;
    let names = &kernel.names;
    let mut s = String::new();
    let _ = writeln!(s, "Kernel {}", f.release);
    let _ = writeln!(s, "  BTF                  {}", yes(f.btf));
    let _ = writeln!(s, "  kprobes              {}", yes(f.kprobes));
    for (tp, present) in tracepoints(f) {
        let _ = writeln!(s, "  {tp:<32} {}", yes(present));
    }
    if let Some(reset) = &f.send_reset {
        let _ = writeln!(
            s,
            "  tcp_send_reset layout: reason field {}, address fields {}",
            yes(reset.get("reason").is_some()),
            if reset.field("saddr").size == 28 {
                "sockaddr (6.10+)"
            } else {
                "ports + IPv4/IPv6 arrays (before 6.10)"
            }
        );
    }
    let functions: Vec<_> = FUNCTIONS
        .iter()
        .map(|func| format!("{func} {}", yes(f.has_function(func))))
        .collect();
    let _ = writeln!(s, "  kallsyms             {}", functions.join(", "));
    let _ = writeln!(
        s,
        "  TCP state names      from {}",
        names.states_source.describe()
    );
    match names.reasons_source {
        Some(source) => {
            let _ = writeln!(
                s,
                "  reset reasons        {} names, from {}",
                names.reason_count(),
                source.describe()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  reset reasons        none (this kernel does not report why it resets)"
            );
        }
    }
    if f.kfree_skb.is_some() {
        let _ = writeln!(
            s,
            "  kfree_skb layout: reason field {}, rx_sk field {}",
            yes(f.drops_have_reason()),
            yes(f.drops_have_socket())
        );
    }
    match names.drop_reasons_source {
        Some(source) => {
            let _ = writeln!(
                s,
                "  drop reasons         {} names, from {}; TCP_LISTEN_OVERFLOW {}",
                names.drop_reason_count(),
                source.describe(),
                if names.has_drop_reason("TCP_LISTEN_OVERFLOW") {
                    "named (accept-queue overflow drops are exact)"
                } else {
                    "not named (before 6.15: overflows show only in ListenOverflows)"
                }
            );
        }
        None => {
            let _ = writeln!(s, "  drop reasons         none");
        }
    }
    let _ = writeln!(s, "\nAttach plan");
    for step in &plan.steps {
        let _ = writeln!(
            s,
            "  {:<26} {} ({})",
            step.role.label(),
            step.point,
            step.program
        );
    }
    let _ = writeln!(s, "\nWhy");
    for (role, why) in &plan.reasons {
        let _ = writeln!(s, "  {:<26} {why}", role.label());
    }
    let _ = writeln!(s, "\nReset causes this kernel can tell apart");
    for cause in CAUSES {
        let _ = writeln!(
            s,
            "  {:<26} {:<52} {}",
            cause.reason,
            exactness(names, plan, cause),
            cause.meaning
        );
    }
    s
}

fn report_json(kernel: &Kernel, plan: &Plan) -> serde_json::Value {
    let f = &kernel.features;
    let names = &kernel.names;
    json!({
        "kernel": f.release,
        "btf": f.btf,
        "kprobes": f.kprobes,
        "tracepoints": tracepoints(f).into_iter().map(|(tp, p)| (tp.to_owned(), json!(p))).collect::<serde_json::Map<_, _>>(),
        "functions": FUNCTIONS.iter().map(|func| ((*func).to_owned(), json!(f.has_function(func)))).collect::<serde_json::Map<_, _>>(),
        "state_names_from": names.states_source.describe(),
        "reset_reasons_from": names.reasons_source.map(|s| s.describe()),
        "drop_reasons_from": names.drop_reasons_source.map(|s| s.describe()),
        "drop_reasons": names.drop_reason_count(),
        "drops_have_socket": f.drops_have_socket(),
        "listen_overflow_drop_reason": names.has_drop_reason("TCP_LISTEN_OVERFLOW"),
        "reset_coverage": match plan.reset_coverage {
            ResetCoverage::Complete => "complete",
            ResetCoverage::FullSocketsOnly => "full_sockets_only",
            ResetCoverage::None => "none",
        },
        "plan": plan.steps.iter().map(|s| json!({
            "role": s.role.label(), "attach": s.point.to_string(), "program": s.program,
        })).collect::<Vec<_>>(),
        "why": plan.reasons.iter().map(|(r, w)| json!({"role": r.label(), "why": w})).collect::<Vec<_>>(),
        "causes": CAUSES.iter().map(|cause| json!({
            "reason": cause.reason, "meaning": cause.meaning,
            "how": exactness(names, plan, cause),
        })).collect::<Vec<_>>(),
    })
}
