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

/// Reset causes users need told apart, with the kernel reason that names each.
/// (`reason`, needs a reset without a full socket, what it means)
const CAUSES: &[(&str, bool, &str)] = &[
    (
        "NO_SOCKET",
        true,
        "segment for a port nobody listens on, or for a connection this host already forgot",
    ),
    (
        "TCP_TIMEWAIT_SOCKET",
        true,
        "new data on a connection this host closed (keep-alive idle race)",
    ),
    (
        "TCP_ABORT_ON_DATA",
        false,
        "data arrived after the application closed (keep-alive idle race)",
    ),
    (
        "TCP_ABORT_ON_CLOSE",
        false,
        "the application closed with unread data",
    ),
    (
        "TCP_STATE",
        false,
        "abortive close: SO_LINGER {1,0}, ss -K, listener closed with queued connections",
    ),
    (
        "TCP_ABORT_ON_LINGER",
        false,
        "close in FIN_WAIT2 with TCP_LINGER2 < 0",
    ),
    (
        "TCP_ABORT_ON_MEMORY",
        false,
        "too many orphans or TCP memory pressure",
    ),
    (
        "TCP_KEEPALIVE_TIMEOUT",
        false,
        "keep-alive probes unanswered (dead peer, NAT or firewall dropped state)",
    ),
    (
        "INVALID_SYN",
        false,
        "accept queue full with tcp_abort_on_overflow=1, or a bad SYN for a pending connection",
    ),
    (
        "TCP_FLAGS",
        false,
        "ACK to a listener with no matching request",
    ),
    (
        "TCP_INVALID_ACK_SEQUENCE",
        false,
        "bad SYN-ACK on connect (peer restarted with the same port)",
    ),
    (
        "TCP_RFC7323_PAWS",
        false,
        "timestamp (PAWS) rejection on connect",
    ),
];

/// How this kernel lets a cause be known.
fn exactness(names: &KernelNames, plan: &Plan, reason: &str, socketless: bool) -> &'static str {
    if names.has_reason(reason) {
        "exact (kernel reason)"
    } else if socketless && plan.reset_coverage != ResetCoverage::Complete {
        "not visible (resets without a socket are missed)"
    } else if plan.reset_coverage == ResetCoverage::None {
        "not visible (resets sent are not observed)"
    } else {
        "inferred (no kernel reason: from state, history and counters)"
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
    for (reason, socketless, meaning) in CAUSES {
        let _ = writeln!(
            s,
            "  {:<26} {:<52} {meaning}",
            reason,
            exactness(names, plan, reason, *socketless)
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
        "reset_coverage": match plan.reset_coverage {
            ResetCoverage::Complete => "complete",
            ResetCoverage::FullSocketsOnly => "full_sockets_only",
            ResetCoverage::None => "none",
        },
        "plan": plan.steps.iter().map(|s| json!({
            "role": s.role.label(), "attach": s.point.to_string(), "program": s.program,
        })).collect::<Vec<_>>(),
        "why": plan.reasons.iter().map(|(r, w)| json!({"role": r.label(), "why": w})).collect::<Vec<_>>(),
        "causes": CAUSES.iter().map(|(reason, socketless, meaning)| json!({
            "reason": reason, "meaning": meaning,
            "how": exactness(names, plan, reason, *socketless),
        })).collect::<Vec<_>>(),
    })
}
