//! Kernel integration tests: the real `tcpwatch trace` against real sockets, each
//! test in its own network namespace, with peers in separate processes.
//!
//! Needs root, tracefs, kernel BTF and the tracepoints `sock:inet_sock_set_state`
//! and `tcp:tcp_receive_reset`; for resets sent, `tcp:tcp_send_reset` with the
//! `reason` field (6.10+) or kprobes; `syscalls:sys_exit_accept4` for accept
//! attribution. Reasons are checked the way the running kernel can give them
//! (`support/capabilities.rs`): the kernel's own where `tcpwatch probes` says it
//! has them, inferred and marked so elsewhere. `cargo xtask vm` runs these on
//! Debian 6.1 (kprobes, no reasons) and 6.12. The README lists which test needs
//! what.
//!
//! This binary is also the peer program: with `TCPWATCH_TEST_PEER` set it serves
//! peer commands instead of running tests (see `support/peer.rs`).

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod support;

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use nix::sys::signal::Signal;
use serde_json::Value;
use support::{
    capabilities::assert_reason,
    netns,
    peer::{self, Peer},
    tracer::{Trace, Tracer},
};

fn main() {
    if std::env::var_os(peer::ROLE_ENV).is_some() {
        peer::serve();
    }
    let args = Arguments::from_args();
    let mut trials = vec![
        trial("closed_port_v4", || closed_port("127.0.0.1")),
        trial("closed_port_v6", || closed_port("::1")),
        trial("unread_data_close_v4", || unread_data_close("127.0.0.1")),
        trial("unread_data_close_v6", || unread_data_close("::1")),
        trial("linger_zero_close", linger_zero_close),
        trial("idle_close_then_data_v4", || {
            idle_close_then_data("127.0.0.1")
        }),
        trial("idle_close_then_data_v6", || idle_close_then_data("::1")),
        trial("lifecycle_owners_both_sides", lifecycle_owners),
        trial("census_attributes_preexisting_sockets", census_preexisting),
        trial("sigint_exits_cleanly_with_summary", sigint_summary),
        trial("netns_filter_excludes_other_namespaces", netns_filter),
        trial("in_kernel_filters_port_pid_comm_addr", in_kernel_filters),
        trial("explain_replays_a_recording_like_live", explain_replay),
    ];
    if !nix::unistd::geteuid().is_root() {
        if std::env::var_os("TCPWATCH_SKIP_KERNEL_TESTS").is_some() {
            for t in &mut trials {
                *t = Trial::test(t.name().to_owned(), || Ok(())).with_ignored_flag(true);
            }
        } else {
            eprintln!(
                "kernel tests need root (BPF, network namespaces); run `sudo cargo test` or set TCPWATCH_SKIP_KERNEL_TESTS=1 to skip them"
            );
            std::process::exit(1);
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// A trial whose body runs on a fresh thread in a fresh network namespace (the
/// namespace dies with the thread and its child processes).
fn trial(name: &'static str, body: fn()) -> Trial {
    Trial::test(name, move || {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(body)
            .map_err(|e| Failed::from(format!("spawn: {e}")))?
            .join()
            .map_err(|panic| {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "test panicked".into());
                Failed::from(msg)
            })
    })
}

/// Starts tcpwatch on every event kind, limited to namespace `ns`.
fn trace_all(ns: u32) -> Tracer {
    Tracer::start(&["--kind", "all", "--netns", &ns.to_string()])
}

fn pid_of(process: &Value) -> Option<u64> {
    process["pid"].as_u64()
}

fn port_of(endpoint: &Value) -> u16 {
    let text = endpoint.as_str().expect("addr:port");
    text.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// Asserts a clean exit: code 0, a summary with nothing lost, and every event on
/// a live socket attributed to an owner.
fn assert_clean_exit(trace: &Trace) {
    assert_eq!(
        trace.code,
        Some(0),
        "tcpwatch exit status; stderr:\n{}",
        trace.stderr
    );
    assert!(
        trace.stderr.contains("stopped (")
            && trace.stderr.contains(" 0 lost")
            && trace.stderr.contains(" 0 undecodable")
            && trace.stderr.contains(" 0 without a known owner"),
        "summary with nothing lost and every live socket attributed expected; stderr:\n{}",
        trace.stderr
    );
}

/// 1 (and 6): connect to a port nobody listens on. The RST is sent with no
/// socket: reason NO_SOCKET (the kernel's from 6.10, inferred before), no owner,
/// no listener. The client's received reset is owned by the client.
fn closed_port(ip: &str) {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let mut client = Peer::spawn();
    assert_eq!(client.cmd(&format!("connect {ip} 9")), "err ECONNREFUSED");
    let trace = tracer.finish();
    assert_clean_exit(&trace);

    let sent = trace.one("reset_sent", "RST for the SYN to port 9", |e| {
        port_of(&e["flow"]["src"]) == 9
    });
    assert!(
        sent["owner"].is_null(),
        "no process owns a closed port: {sent}"
    );
    assert!(sent["listener"].is_null(), "nobody listens on 9: {sent}");
    assert!(sent["state"].is_null(), "{sent}");
    assert_eq!(
        sent["segment"]["flags"],
        serde_json::json!(["SYN"]),
        "{sent}"
    );
    assert_eq!(sent["flow"]["netns"], ns, "{sent}");
    assert_eq!(
        sent["flow"]["family"],
        if ip.contains(':') { "ipv6" } else { "ipv4" }
    );

    let received = trace.one("reset_received", "client's RST", |e| {
        port_of(&e["flow"]["src"]) == 9
    });
    assert_eq!(
        pid_of(&received["owner"]),
        Some(u64::from(client.pid)),
        "{received}"
    );
    assert_eq!(received["owner"]["source"], "connect", "{received}");
    assert_eq!(received["state"], "SYN_SENT", "{received}");
    assert_eq!(received["error"], "ECONNREFUSED", "{received}");
    let finding = one_finding(&trace, "no_listener");
    assert_reason(sent, finding, &["NO_SOCKET"]);
    assert!(finding["owner"].is_null(), "{finding}");
    assert_eq!(
        pid_of(&finding["peer_owner"]),
        Some(u64::from(client.pid)),
        "{finding}"
    );
}

/// The single finding of `cause`, and no finding at all of a generic cause
/// for the same reset (the specific one replaces it).
fn one_finding<'a>(trace: &'a Trace, cause: &str) -> &'a Value {
    let found = trace.findings_of(cause);
    assert_eq!(
        found.len(),
        1,
        "one {cause} finding expected:\n{}",
        trace.dump()
    );
    assert!(
        trace.findings_of("peer_reset").is_empty(),
        "the received reset is covered by the sender's finding:\n{}",
        trace.dump()
    );
    found[0]
}

/// A connected pair: `(server, client, server_port, client_port)`; the server
/// accepted the connection.
fn connected_pair(ip: &str) -> (Peer, Peer, u16, u16) {
    let mut server = Peer::spawn();
    let mut client = Peer::spawn();
    let port: u16 = server.ok(&format!("listen {ip}")).parse().expect("port");
    let client_port: u16 = client
        .ok(&format!("connect {ip} {port}"))
        .parse()
        .expect("port");
    server.ok("accept");
    (server, client, port, client_port)
}

/// 2 (and 6): the server closes a connection with unread data: RST with
/// TCP_ABORT_ON_CLOSE (the kernel's from 6.12, inferred from counters before)
/// owned by the server process, not the test runner.
fn unread_data_close(ip: &str) {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let (mut server, mut client, port, client_port) = connected_pair(ip);
    client.ok("send 100");
    server.ok("await-data");
    server.ok("close");
    assert_eq!(
        client.cmd("recv"),
        "err ECONNRESET",
        "the client sees the reset"
    );
    let trace = tracer.finish();
    assert_clean_exit(&trace);

    let sent = trace.one("reset_sent", "server's abort", |e| {
        port_of(&e["flow"]["src"]) == port && port_of(&e["flow"]["dst"]) == client_port
    });
    assert_eq!(
        pid_of(&sent["owner"]),
        Some(u64::from(server.pid)),
        "{sent}"
    );
    assert_ne!(pid_of(&sent["owner"]), Some(u64::from(std::process::id())));
    let received = trace.one("reset_received", "client's RST", |e| {
        port_of(&e["flow"]["dst"]) == client_port
    });
    assert_eq!(
        pid_of(&received["owner"]),
        Some(u64::from(client.pid)),
        "{received}"
    );
    let finding = one_finding(&trace, "close_with_unread_data");
    assert_reason(sent, finding, &["TCP_ABORT_ON_CLOSE"]);
    assert_eq!(
        pid_of(&finding["owner"]),
        Some(u64::from(server.pid)),
        "{finding}"
    );
    assert_eq!(
        pid_of(&finding["peer_owner"]),
        Some(u64::from(client.pid)),
        "{finding}"
    );
}

/// 3: SO_LINGER {1,0} close: RST with TCP_STATE (the kernel's from 6.12,
/// inferred from counters before), owned by the closing process.
fn linger_zero_close() {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let (_server, mut client, port, client_port) = connected_pair("127.0.0.1");
    client.ok("linger0");
    client.ok("close");
    let trace = tracer.finish();
    assert_clean_exit(&trace);

    let sent = trace.one("reset_sent", "client's abortive close", |e| {
        port_of(&e["flow"]["src"]) == client_port && port_of(&e["flow"]["dst"]) == port
    });
    assert_eq!(
        pid_of(&sent["owner"]),
        Some(u64::from(client.pid)),
        "{sent}"
    );
    assert_eq!(
        pid_of(&sent["actor"]),
        Some(u64::from(client.pid)),
        "close() runs in the owner: {sent}"
    );
    let finding = one_finding(&trace, "linger_zero_abort");
    assert_reason(sent, finding, &["TCP_STATE"]);
    assert_eq!(
        pid_of(&finding["owner"]),
        Some(u64::from(client.pid)),
        "{finding}"
    );
}

/// 4 (and 6): the server closes an idle connection, then the client sends data.
/// The server's kernel answers from softirq (TIME_WAIT socket): the owner must
/// be the server, not the client whose segment was being processed.
fn idle_close_then_data(ip: &str) {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let (mut server, mut client, port, client_port) = connected_pair(ip);
    server.ok("close");
    assert_eq!(client.cmd("await-eof"), "eof");
    client.ok("send 10");
    std::thread::sleep(Duration::from_millis(100));
    let trace = tracer.finish();
    assert_clean_exit(&trace);

    let sent = trace.one("reset_sent", "server kernel's RST to late data", |e| {
        port_of(&e["flow"]["src"]) == port && port_of(&e["flow"]["dst"]) == client_port
    });
    let owner = pid_of(&sent["owner"]);
    assert_eq!(
        owner,
        Some(u64::from(server.pid)),
        "owner must be the server: {sent}"
    );
    assert_ne!(owner, Some(u64::from(client.pid)));
    assert_ne!(sent["owner"]["comm"], "swapper/0");
    // The server closed right after accept (not idle): data after close.
    let finding = one_finding(&trace, "data_after_close");
    assert_reason(sent, finding, &["TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA"]);
    assert_eq!(
        pid_of(&finding["owner"]),
        Some(u64::from(server.pid)),
        "{finding}"
    );
    assert_eq!(
        pid_of(&finding["peer_owner"]),
        Some(u64::from(client.pid)),
        "{finding}"
    );
}

/// 5: a full connect/accept/close lifecycle: every state event on either side is
/// owned by that side's process.
fn lifecycle_owners() {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let (mut server, mut client, port, client_port) = connected_pair("127.0.0.1");
    client.ok("send 5");
    server.ok("recv");
    client.ok("close");
    assert_eq!(server.cmd("recv"), "eof");
    server.ok("close");
    server.ok("close-listener");
    std::thread::sleep(Duration::from_millis(100));
    let trace = tracer.finish();
    assert_clean_exit(&trace);

    let states = trace.of_kind("state");
    let transitions = |pid: u32, pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        states
            .iter()
            .filter(|e| pred(e))
            .map(|e| {
                assert_eq!(
                    pid_of(&e["owner"]),
                    Some(u64::from(pid)),
                    "owner of every state event on this side: {e}\ntrace:\n{}",
                    trace.dump()
                );
                format!(
                    "{}->{}",
                    e["old_state"].as_str().unwrap_or("?"),
                    e["new_state"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    // The client's connect() is reported before the kernel picks its port.
    let client_socket = states
        .iter()
        .find(|e| port_of(&e["flow"]["src"]) == client_port)
        .map(|e| e["socket"].clone())
        .expect("client socket");
    let client_side = transitions(client.pid, &|e| e["socket"] == client_socket);
    assert_eq!(
        client_side,
        [
            "CLOSE->SYN_SENT",
            "SYN_SENT->ESTABLISHED",
            "ESTABLISHED->FIN_WAIT1",
            "FIN_WAIT1->FIN_WAIT2",
            "FIN_WAIT2->CLOSE"
        ],
        "client transitions"
    );
    let server_side = transitions(server.pid, &|e| {
        port_of(&e["flow"]["src"]) == port && e["socket"] != client_socket
    });
    for expected in [
        "CLOSE->LISTEN",
        "LISTEN->SYN_RECV",
        "SYN_RECV->ESTABLISHED",
        "ESTABLISHED->CLOSE_WAIT",
        "CLOSE_WAIT->LAST_ACK",
        "LAST_ACK->CLOSE",
        "LISTEN->CLOSE",
    ] {
        assert!(
            server_side.iter().any(|t| t == expected),
            "server side lacks {expected}: {server_side:?}"
        );
    }
    let accepted = states
        .iter()
        .find(|e| e["new_state"] == "CLOSE_WAIT")
        .expect("CLOSE_WAIT event");
    assert_eq!(
        accepted["owner"]["source"], "accept",
        "the server accept()ed it: {accepted}"
    );
}

/// 7: sockets opened before tcpwatch started are attributed through the census.
/// The client aborts a connection made before start; the server's socket
/// receives the RST in softirq and must still be owned by the server.
fn census_preexisting() {
    let ns = netns::enter_private();
    let (server, mut client, port, client_port) = connected_pair("127.0.0.1");
    let tracer = trace_all(ns);
    client.ok("linger0");
    client.ok("close");
    let trace = tracer.finish();
    assert_clean_exit(&trace);

    let sent = trace.one("reset_sent", "client abort", |e| {
        port_of(&e["flow"]["src"]) == client_port
    });
    assert_eq!(
        pid_of(&sent["owner"]),
        Some(u64::from(client.pid)),
        "{sent}"
    );
    assert_eq!(sent["owner"]["source"], "census", "{sent}");
    let received = trace.one("reset_received", "server's RST", |e| {
        port_of(&e["flow"]["dst"]) == port
    });
    assert_eq!(
        pid_of(&received["owner"]),
        Some(u64::from(server.pid)),
        "{received}"
    );
    assert_eq!(received["owner"]["source"], "census", "{received}");
}

/// Ctrl-C (SIGINT) stops tracing with exit 0 and the one-line summary.
fn sigint_summary() {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let mut client = Peer::spawn();
    client.cmd("connect 127.0.0.1 9");
    let trace = tracer.finish_with(Signal::SIGINT);
    assert_clean_exit(&trace);
    assert!(
        trace.stderr.contains("stopped (interrupted)"),
        "{}",
        trace.stderr
    );
    assert!(
        trace.stderr.contains("1 reset_sent, 1 reset_received"),
        "{}",
        trace.stderr
    );
}

/// `--netns` keeps only its namespace: a reset in another namespace is not shown.
fn netns_filter() {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let other = std::thread::spawn(|| {
        netns::enter_private();
        Peer::spawn().cmd("connect 127.0.0.1 9")
    })
    .join()
    .expect("other namespace");
    assert_eq!(other, "err ECONNREFUSED");
    let trace = tracer.finish();
    assert_clean_exit(&trace);
    assert!(
        trace.events.is_empty(),
        "nothing from the other namespace:\n{}",
        trace.dump()
    );
    assert!(
        trace.findings.is_empty(),
        "no finding from the other namespace:\n{}",
        trace.dump()
    );
    assert!(
        trace.samples.iter().all(|s| s["netns"] == ns),
        "only the filtered namespace is sampled"
    );
}

/// `--port`, `--pid`, `--comm` and `--addr` keep exactly the matching flows.
fn in_kernel_filters() {
    let ns = netns::enter_private();
    let mut a = Peer::spawn();
    let mut b = Peer::spawn();
    a.ok("comm peer-a");
    b.ok("comm peer-b");
    let ns_arg = ns.to_string();
    let with = |extra: &[&str]| {
        let mut args = vec!["--kind", "all", "--netns", ns_arg.as_str()];
        args.extend_from_slice(extra);
        Tracer::start(&args)
    };
    let a_pid = a.pid.to_string();
    let by_port = with(&["--port", "9"]);
    let by_pid = with(&["--pid", &a_pid]);
    let by_comm = with(&["--comm", "peer-b"]);
    let by_addr = with(&["--addr", "127.0.0.2/32"]);
    assert_eq!(a.cmd("connect 127.0.0.1 9"), "err ECONNREFUSED");
    assert_eq!(b.cmd("connect 127.0.0.2 10"), "err ECONNREFUSED");

    let ports = |e: &Value| [port_of(&e["flow"]["src"]), port_of(&e["flow"]["dst"])];
    let trace = by_port.finish();
    assert!(
        trace.events.iter().all(|e| ports(e).contains(&9)),
        "{}",
        trace.dump()
    );
    assert_eq!(trace.of_kind("reset_sent").len(), 1, "{}", trace.dump());
    assert_eq!(trace.of_kind("reset_received").len(), 1, "{}", trace.dump());

    let trace = by_pid.finish();
    assert!(!trace.events.is_empty());
    assert!(
        trace
            .events
            .iter()
            .all(|e| pid_of(&e["owner"]) == Some(u64::from(a.pid))),
        "only A's sockets: {}",
        trace.dump()
    );
    assert!(
        trace.of_kind("reset_sent").is_empty(),
        "the no-socket RST has no owner"
    );
    assert_eq!(trace.of_kind("reset_received").len(), 1);

    let trace = by_comm.finish();
    assert!(!trace.events.is_empty());
    assert!(
        trace.events.iter().all(|e| e["owner"]["comm"] == "peer-b"),
        "only peer-b's sockets: {}",
        trace.dump()
    );

    let trace = by_addr.finish();
    assert!(
        trace.events.iter().all(|e| {
            e["flow"]["src"]
                .as_str()
                .unwrap_or("")
                .starts_with("127.0.0.2:")
                || e["flow"]["dst"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("127.0.0.2:")
        }),
        "{}",
        trace.dump()
    );
    assert_eq!(trace.of_kind("reset_sent").len(), 1, "{}", trace.dump());
}

/// `explain --from` on a recording gives the findings the live trace gave.
fn explain_replay() {
    let ns = netns::enter_private();
    let tracer = trace_all(ns);
    let (mut server, mut client, _, _) = connected_pair("127.0.0.1");
    client.ok("send 100");
    server.ok("await-data");
    server.ok("close");
    let mut other = Peer::spawn();
    assert_eq!(other.cmd("connect 127.0.0.1 9"), "err ECONNREFUSED");
    std::thread::sleep(Duration::from_millis(1500)); // let a sample come through
    let trace = tracer.finish();
    assert_clean_exit(&trace);
    assert!(!trace.samples.is_empty(), "samples are recorded for replay");

    let dir = std::env::temp_dir().join(format!("tcpwatch-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let recording = dir.join("incident.jsonl");
    std::fs::write(&recording, &trace.raw).expect("write recording");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tcpwatch"))
        .args(["explain", "--json", "--summary", "--from"])
        .arg(&recording)
        .output()
        .expect("run explain");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let causes = |records: &[Value]| {
        let mut c: Vec<String> = records
            .iter()
            .filter(|r| r["record"] == "finding")
            .map(|r| r["cause"].as_str().unwrap_or("").to_owned())
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        causes(&replayed),
        causes(&trace.findings),
        "replay vs live; recording:\n{}",
        trace.raw
    );
    assert_eq!(
        causes(&trace.findings),
        ["close_with_unread_data", "no_listener"]
    );
    let summary = replayed
        .iter()
        .find(|r| r["record"] == "summary")
        .expect("summary record");
    assert_eq!(
        summary["causes"].as_array().map(Vec::len),
        Some(2),
        "{summary}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 findings"));
}
