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

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{
    capabilities::{self, assert_reason},
    harness::{self, trial},
    netns,
    peer::{self, Peer},
    tracer::{Trace, Tracer},
};

fn main() {
    if std::env::var_os(peer::ROLE_ENV).is_some() {
        peer::serve();
    }
    let trials = vec![
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
        trial("storm_mode_summarises_without_loss", storm_mode),
        trial("without_btf_degrades_and_still_explains", without_btf),
        trial("kstack_names_the_kernel_path_of_each_reset", kstack),
    ];
    harness::run(trials);
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
    assert!(
        sent.get("kstack").is_none(),
        "no stacks unless asked: {sent}"
    );
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

/// A burst of resets through a tiny ring buffer: the kernel switches to
/// counting them, nothing is lost, every reset is either shown or in a
/// summary, the storm ends when the burst does, and per-event output resumes.
fn storm_mode() {
    const BURST: u64 = 3000;
    let ns = netns::enter_private();
    let tracer = Tracer::start(&[
        "--kind",
        "all",
        "--netns",
        &ns.to_string(),
        "--ring-buffer-size",
        "4096",
    ]);
    let mut client = Peer::spawn();
    assert_eq!(
        client.ok_within(
            &format!("connect-close-many 127.0.0.1 9 {BURST}"),
            Duration::from_secs(120)
        ),
        format!("0 {BURST}"),
        "every connect is refused"
    );
    std::thread::sleep(Duration::from_millis(2500)); // the storm ends
    assert_eq!(client.cmd("connect 127.0.0.1 9"), "err ECONNREFUSED");
    let trace = tracer.finish();
    assert_clean_exit(&trace);
    assert!(trace.stderr.contains(" 0 lost"), "{}", trace.stderr);
    let position = |pred: &dyn Fn(&Value) -> bool| trace.records.iter().position(pred);
    let started = position(&|r| r["record"] == "storm" && r["phase"] == "started")
        .unwrap_or_else(|| panic!("no storm started: {}", trace.stderr));
    let ended = position(&|r| r["record"] == "storm" && r["phase"] == "ended")
        .unwrap_or_else(|| panic!("no storm ended: {}", trace.stderr));
    assert!(started < ended);
    let summarised: u64 = trace
        .records
        .iter()
        .filter(|r| r["record"] == "aggregate" && r["kind"] == "reset_sent")
        .inspect(|r| {
            assert_eq!(r["reason"], "NO_SOCKET", "{r}");
            assert_eq!(
                (r["port"].as_u64(), r["port_side"].as_str()),
                (Some(9), Some("local")),
                "{r}"
            );
            assert_eq!(r["segment_flags"], serde_json::json!(["SYN"]), "{r}");
        })
        .map(|r| r["count"].as_u64().unwrap_or(0))
        .sum();
    let shown = trace.of_kind("reset_sent").len() as u64;
    assert!(summarised > 0, "some resets were summarised");
    assert_eq!(
        shown + summarised,
        BURST + 1,
        "every reset is accounted for"
    );
    let last_reset = trace
        .records
        .iter()
        .rposition(|r| r["record"] == "event" && r["kind"] == "reset_sent");
    assert!(
        last_reset > Some(ended),
        "per-event output resumes after the storm"
    );
    let finding: u64 = trace
        .findings_of("no_listener")
        .iter()
        .map(|f| f["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(
        finding,
        BURST + 1,
        "findings account for every refused connection"
    );
}

/// Without kernel BTF (`--btf none`, as on a kernel built without it) struct
/// offsets are unknown: tcpwatch warns what is lost (namespaces, idle times,
/// accept() owners, kprobes) and keeps tracing from the tracepoints alone.
fn without_btf() {
    let _ns = netns::enter_private();
    let tracer = Tracer::start(&["--kind", "all", "--btf", "none"]);
    let mut client = Peer::spawn();
    client.ok("comm no-btf-client");
    assert_eq!(client.cmd("connect 127.0.0.1 9"), "err ECONNREFUSED");
    let trace = tracer.finish_after(Duration::from_millis(1500));
    assert_eq!(trace.code, Some(0), "{}", trace.stderr);
    for lost in [
        "no network namespace",
        "no idle time",
        "attributed to the listening process",
        "kprobes cannot read the segment",
    ] {
        assert!(
            trace.stderr.contains(lost),
            "warning about {lost}: {}",
            trace.stderr
        );
    }
    // Every namespace is traced (no --netns without BTF): find this client's
    // connection by its owner, then the reset sent to it.
    if !capabilities::sees_socketless_resets_without_btf() {
        // Before 6.10 only kprobes see a reset without a socket, and they
        // need BTF: the client's received reset is all there is.
        let finding = trace
            .findings_of("peer_reset")
            .into_iter()
            .find(|f| pid_of(&f["owner"]) == Some(u64::from(client.pid)))
            .unwrap_or_else(|| panic!("the client's peer_reset: {}", trace.dump()));
        assert_eq!(finding["flow"]["netns"], 0, "{finding}");
        assert!(
            trace.findings_of("no_listener").is_empty(),
            "this kernel cannot see the refusal: {}",
            trace.dump()
        );
        return;
    }
    let port = trace
        .of_kind("state")
        .into_iter()
        .find(|e| pid_of(&e["owner"]) == Some(u64::from(client.pid)) && e["new_state"] == "CLOSE")
        .and_then(|e| e["flow"]["src"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("the client's connection: {}", trace.dump()));
    let sent: Vec<&Value> = trace
        .of_kind("reset_sent")
        .into_iter()
        .filter(|e| e["flow"]["dst"] == port.as_str())
        .collect();
    assert_eq!(sent.len(), 1, "{}", trace.dump());
    assert_eq!(sent[0]["reason"], "NO_SOCKET");
    assert_eq!(sent[0]["flow"]["netns"], 0, "no namespace without BTF");
    let finding = trace
        .findings_of("no_listener")
        .into_iter()
        .find(|f| f["flow"]["dst"] == port.as_str())
        .unwrap_or_else(|| panic!("no no_listener finding for the client: {}", trace.dump()));
    assert_eq!(
        pid_of(&finding["peer_owner"]),
        Some(u64::from(client.pid)),
        "{finding}"
    );
}

/// `--kstack`: each reset carries the kernel stack of the path that sent or
/// took it, symbolised; the finding carries its reset's stack.
fn kstack() {
    let ns = netns::enter_private();
    let tracer = Tracer::start(&["--kind", "all", "--kstack", "--netns", &ns.to_string()]);
    let mut client = Peer::spawn();
    assert_eq!(client.cmd("connect 127.0.0.1 9"), "err ECONNREFUSED");
    let trace = tracer.finish();
    assert_clean_exit(&trace);
    let symbols = |record: &Value| -> Vec<String> {
        record["kstack"]
            .as_array()
            .unwrap_or_else(|| panic!("a kstack list of frames: {record}"))
            .iter()
            .map(|f| f["symbol"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let sent = trace.one("reset_sent", "RST for the SYN to port 9", |e| {
        port_of(&e["flow"]["src"]) == 9
    });
    let path = symbols(sent);
    assert_eq!(
        path.first().map(String::as_str),
        Some("tcp_v4_send_reset"),
        "the innermost frame is the function that built the RST (tracing glue trimmed): {path:?}"
    );
    assert!(path.iter().any(|s| s == "tcp_v4_rcv"), "{path:?}");
    let frame = &sent["kstack"][0];
    assert!(
        frame["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("0xffff")),
        "{frame}"
    );
    let received = trace.one("reset_received", "client's RST", |e| {
        port_of(&e["flow"]["src"]) == 9
    });
    assert!(
        symbols(received).iter().any(|s| s == "tcp_reset"),
        "{received}"
    );
    let finding = &trace.findings_of("no_listener")[0];
    assert_eq!(finding["kstack"], sent["kstack"], "{finding}");
}
