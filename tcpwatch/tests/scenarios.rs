//! The incidents tcpwatch exists for (../shared/incidents.md), reproduced with
//! real processes (nginx and redis-server from Debian's packages where a user
//! would have them) in private network namespaces, and one scenario for each
//! other cause this kernel can produce without changing a host-wide setting.
//! Each runs the real `tcpwatch trace --json` and asserts the finding's cause,
//! owner and key numbers.
//!
//! Needs root, the kernel features of tests/kernel.rs, `ip`, `ss`, nginx and
//! redis-server (`cargo xtask setup` installs them).

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{
    capabilities::{
        self, assert_finding_reason, drops_name_socket, is_no_socket_reset,
        names_listen_overflow_drops,
    },
    harness::{self, trial},
    netns,
    peer::{self, Peer},
    servers::{Nginx, Redis},
    tracer::{Trace, Tracer},
};

fn main() {
    if std::env::var_os(peer::ROLE_ENV).is_some() {
        peer::serve();
    }
    let trials = vec![
        trial("incident1_keepalive_idle_race_nginx", keepalive_race_nginx),
        trial(
            "incident2_time_wait_pileup_connection_close",
            time_wait_pileup_nginx,
        ),
        trial(
            "incident3_close_wait_leak_then_accept_overflow",
            close_wait_leak,
        ),
        trial(
            "incident4_stale_pool_after_backend_restart_redis",
            stale_pool_redis,
        ),
        trial(
            "incident5_time_wait_overflow_redis",
            time_wait_overflow_redis,
        ),
        trial("socket_killed_by_ss", socket_killed),
        trial("listener_closed_with_pending_connections", listener_closed),
        trial("keepalive_timeout_dead_peer", keepalive_timeout),
        trial("linger2_abort_in_fin_wait2", linger2_abort),
        trial("peer_restarted_same_ports", peer_restarted),
        trial(
            "forgotten_connection_half_closed_after_fin_timeout",
            forgotten_connection,
        ),
        trial(
            "stray_ack_to_listener_after_silent_drop",
            stray_ack_to_listener,
        ),
        trial("peer_reset_from_another_host", peer_reset),
        trial(
            "accept_queue_overflow_with_abort_on_overflow",
            accept_queue_abort,
        ),
        trial(
            "accept_queue_overflow_nginx_stalled_worker",
            accept_queue_nginx_stalled,
        ),
        trial(
            "accept_queue_drops_with_reason_joined_to_flow",
            drops_joined_to_flow,
        ),
        trial("firewall_reject_by_an_nft_rule", firewall_reject),
        trial(
            "retransmit_timeout_to_a_peer_that_stopped_acknowledging",
            retransmit_timeout,
        ),
        trial(
            "application_saw_econnreset_from_read",
            application_saw_reset,
        ),
    ];
    harness::run(trials);
}

fn trace(ns: u32, extra: &[&str]) -> Tracer {
    let ns = ns.to_string();
    let mut args = vec!["--kind", "all", "--netns", ns.as_str()];
    args.extend_from_slice(extra);
    Tracer::start(&args)
}

/// `trace` with dropped segments too (`--kind all,drop`).
fn trace_drops(ns: u32) -> Tracer {
    let ns = ns.to_string();
    Tracer::start(&["--kind", "all,drop", "--netns", ns.as_str()])
}

fn pid(process: &Value) -> Option<u64> {
    process["pid"].as_u64()
}

fn number(finding: &Value, fact: &str) -> f64 {
    finding["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["fact"] == fact))
        .and_then(|e| e["value"].as_f64())
        .unwrap_or_else(|| panic!("no numeric fact {fact} in {finding}"))
}

fn text(finding: &Value, fact: &str) -> String {
    finding["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["fact"] == fact))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no text fact {fact} in {finding}"))
        .to_owned()
}

/// The findings of `cause`, at least one.
fn findings<'a>(trace: &'a Trace, cause: &str) -> Vec<&'a Value> {
    let found = trace.findings_of(cause);
    assert!(
        !found.is_empty(),
        "no {cause} finding; findings:\n{}\nstderr:\n{}",
        trace
            .findings
            .iter()
            .map(|f| format!("{} {}", f["cause"], f["summary"]))
            .collect::<Vec<_>>()
            .join("\n"),
        trace.stderr
    );
    found
}

fn total(found: &[&Value]) -> u64 {
    found.iter().map(|f| f["count"].as_u64().unwrap_or(1)).sum()
}

/// Incident 1: nginx closes an idle keep-alive connection after 1 s; the
/// client reuses its pooled connection just after: the worker's kernel resets.
fn keepalive_race_nginx() {
    let ns = netns::enter_private();
    let nginx = Nginx::start("1s");
    let worker = nginx.worker();
    let tracer = trace(ns, &[]);
    let mut client = Peer::spawn();
    client.ok("comm pool-client");
    client.ok("connect 127.0.0.1 8080");
    client.ok("http-get");
    client.ok("recv");
    client.ok("sleep 1300");
    client.ok("http-get");
    let _ = client.cmd("recv");
    let trace = tracer.finish_after(Duration::from_millis(500));
    let found = findings(&trace, "keepalive_idle_race");
    let f = found[0];
    assert_finding_reason(f, &["TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA"]);
    assert_eq!(
        pid(&f["owner"]),
        Some(u64::from(worker)),
        "the nginx worker closed it: {f}\ntrace:\n{}",
        trace.dump()
    );
    assert_eq!(f["owner"]["comm"], "nginx");
    assert_eq!(pid(&f["peer_owner"]), Some(u64::from(client.pid)), "{f}");
    let idle = number(f, "idle_before_close_ms");
    assert!(
        (900.0..=1500.0).contains(&idle),
        "nginx closes after keepalive_timeout 1s: idle {idle}"
    );
    assert!(number(f, "request_after_close_ms") < 1000.0);
}

/// Incident 2: a server answering with `Connection: close` (nginx,
/// keepalive_timeout 0) under a client loop: TIME_WAIT piles up on the server
/// port, closed first by the server.
fn time_wait_pileup_nginx() {
    let ns = netns::enter_private();
    let nginx = Nginx::start("0");
    let worker = nginx.worker();
    let tracer = trace(ns, &[]);
    let mut client = Peer::spawn();
    assert_eq!(client.ok("http-close-loop 127.0.0.1 8080 400"), "400 0");
    let trace = tracer.finish_after(Duration::from_millis(2500));
    let found = findings(&trace, "time_wait_pileup");
    let f = found[0];
    assert_eq!(f["port"], 8080, "{f}");
    assert_eq!(
        pid(&f["owner"]),
        Some(u64::from(worker)),
        "closing process = the server: {f}"
    );
    assert!(number(f, "time_wait_sockets") >= 200.0, "{f}");
    assert!(number(f, "closed_first_here_share") >= 0.9, "{f}");
    assert!(number(f, "connections_ended_last_minute") >= 200.0, "{f}");
}

/// Incident 3: a server that never closes connections its peers closed, with a
/// low descriptor limit: CLOSE_WAIT piles up (the leak, with the oldest age),
/// then accept() fails and the accept queue overflows.
fn close_wait_leak() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &["--close-wait-age", "2s"]);
    let mut server = Peer::spawn();
    server.ok("comm leaky-api");
    let port = server.ok("leaky-serve 127.0.0.1 8 32");
    let mut clients = Peer::spawn();
    let _ = clients.cmd(&format!("connect-close-many 127.0.0.1 {port} 45"));
    let trace = tracer.finish_after(Duration::from_millis(4000));
    let leak = findings(&trace, "close_wait_leak");
    let f = leak[leak.len() - 1];
    assert_eq!(pid(&f["owner"]), Some(u64::from(server.pid)), "{f}");
    assert!(number(f, "close_wait_sockets") >= 20.0, "{f}");
    assert!(number(f, "oldest_close_wait_ms") >= 2000.0, "{f}");
    assert_eq!(number(f, "fd_limit"), 32.0, "{f}");
    let overflow = findings(&trace, "accept_queue_overflow");
    let f = overflow[0];
    assert_eq!(pid(&f["owner"]), Some(u64::from(server.pid)), "{f}");
    assert!(number(f, "listen_overflows") >= 1.0, "{f}");
    assert!(
        f["summary"].as_str().unwrap_or("").contains("EMFILE"),
        "out of descriptors: {f}"
    );
}

/// Incident 4: the backend (redis-server) is killed and restarted on the same
/// port while a client holds pooled connections; reusing them fails.
fn stale_pool_redis() {
    let ns = netns::enter_private();
    let mut redis = Redis::start(6379);
    let old = redis.pid;
    let tracer = trace(ns, &[]);
    let mut client = Peer::spawn();
    client.ok("comm log-shipper");
    for _ in 0..3 {
        client.ok("connect 127.0.0.1 6379");
        client.ok("write PING\\r\\n");
        client.ok("recv");
    }
    client.ok("sleep 1200");
    redis.kill();
    let new = Redis::start(6379);
    client.ok("write-all PING\\r\\n");
    let trace = tracer.finish_after(Duration::from_millis(500));
    let found = findings(&trace, "stale_pooled_connection");
    let f = found[0];
    assert_eq!(
        pid(&f["owner"]),
        Some(u64::from(client.pid)),
        "on the client's pid: {f}"
    );
    assert_eq!(f["owner"]["comm"], "log-shipper");
    assert_eq!(
        pid(&f["peer_owner"]),
        Some(u64::from(old)),
        "the replaced backend: {f}"
    );
    assert_eq!(text(f, "new_backend"), format!("redis-server[{}]", new.pid));
    assert_eq!(total(&found), 3, "one per pooled connection: {found:?}");
}

/// Incident 5: net.ipv4.tcp_max_tw_buckets = 0 in the namespace and a burst of
/// short connections closed by the client (the web worker's pool that does not
/// pool): TIME_WAIT overflows, and the server's FINs that come late (redis busy)
/// find no socket and get RST (NO_SOCKET).
fn time_wait_overflow_redis() {
    let ns = netns::enter_private();
    std::fs::write("/proc/sys/net/ipv4/tcp_max_tw_buckets", "0").expect("per-netns sysctl");
    let _redis = Redis::start(6379);
    let tracer = trace(ns, &[]);
    let mut client = Peer::spawn();
    client.ok("comm web-worker");
    assert_eq!(
        client.ok("talk-close-many 127.0.0.1 6379 200 PING\\r\\n"),
        "200 0"
    );
    // Closes while redis is busy: its FIN comes late and finds no socket.
    assert_eq!(
        client.ok("close-while-redis-busy 127.0.0.1 6379 10"),
        "10 0"
    );
    let trace = tracer.finish_after(Duration::from_millis(2500));
    let found = findings(&trace, "time_wait_overflow");
    // The burst can outlast a sample interval on a slow machine (TCG): the
    // finding that saw most of it.
    let table = found
        .iter()
        .filter(|f| {
            f["evidence"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["fact"] == "time_wait_overflow"))
        })
        .max_by(|a, b| {
            number(a, "closes_to_destination").total_cmp(&number(b, "closes_to_destination"))
        })
        .unwrap_or_else(|| panic!("no counter finding: {found:?}"));
    assert!(number(table, "time_wait_overflow") >= 1.0, "{table}");
    assert_eq!(number(table, "tcp_max_tw_buckets"), 0.0);
    assert_eq!(
        pid(&table["owner"]),
        Some(u64::from(client.pid)),
        "who closes so many: {table}"
    );
    assert!(number(table, "closes_to_destination") >= 100.0, "{table}");
    assert!(
        table["fix"]
            .as_str()
            .unwrap_or("")
            .contains("to 127.0.0.1:6379"),
        "names the destination: {table}"
    );
    let resets = trace
        .of_kind("reset_sent")
        .into_iter()
        .filter(|e| is_no_socket_reset(e))
        .count();
    assert!(resets >= 1, "late segments were reset");
}

/// `ss -K` kills a connection: the killer is named, the owner is the victim.
fn socket_killed() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    let status = std::process::Command::new("ss")
        .args(["-t", "-K", "dst", "127.0.0.1", "dport", "=", &port])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ss (iproute2)");
    assert!(status.success());
    let trace = tracer.finish();
    let f = findings(&trace, "socket_killed")[0];
    assert_eq!(pid(&f["owner"]), Some(u64::from(client.pid)), "{f}");
    assert!(text(f, "killer").starts_with("ss["), "{f}");
}

/// A listener closed while three connections waited in its accept queue.
fn listener_closed() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    let port = server.ok("listen-backlog 127.0.0.1 8");
    let mut client = Peer::spawn();
    for _ in 0..3 {
        client.ok(&format!("connect 127.0.0.1 {port}"));
    }
    server.ok("close-listener");
    let trace = tracer.finish();
    let found = findings(&trace, "listener_closed_with_pending");
    assert_eq!(total(&found), 3, "{found:?}");
    assert_eq!(pid(&found[0]["owner"]), Some(u64::from(server.pid)));
}

/// Keep-alive probes to a peer that drops everything: the kernel gives up.
fn keepalive_timeout() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    server.ok("blackhole");
    client.ok("keepalive 1 1 2");
    let trace = tracer.finish_after(Duration::from_millis(6000));
    let f = findings(&trace, "keepalive_timeout")[0];
    assert_finding_reason(f, &["TCP_KEEPALIVE_TIMEOUT"]);
    assert_eq!(pid(&f["owner"]), Some(u64::from(client.pid)), "{f}");
}

/// close() in FIN_WAIT2 with TCP_LINGER2 = -1 aborts.
fn linger2_abort() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    client.ok("linger2-off");
    client.ok("shutdown-write");
    client.ok("sleep 100");
    client.ok("close");
    let trace = tracer.finish();
    let f = findings(&trace, "linger2_abort")[0];
    assert_eq!(pid(&f["owner"]), Some(u64::from(client.pid)), "{f}");
}

/// A client vanishes without FIN or RST (TCP_REPAIR close) and reconnects from
/// the same port: the server's stale connection answers the SYN.
fn peer_restarted() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    let local = client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    client.ok("repair-close");
    client.ok(&format!("connect-from 127.0.0.1 {port} {local}"));
    let trace = tracer.finish();
    let f = findings(&trace, "peer_restarted")[0];
    assert_eq!(
        pid(&f["owner"]),
        Some(u64::from(client.pid)),
        "{f}\ntrace:\n{}",
        trace.dump()
    );
}

/// The client closes first; the server never closes its half (CLOSE_WAIT).
/// With net.ipv4.tcp_fin_timeout = 1 in the namespace the client's FIN_WAIT2
/// state is gone when the server finally writes: the client's kernel has no
/// socket for it and resets (NO_SOCKET).
fn forgotten_connection() {
    let ns = netns::enter_private();
    std::fs::write("/proc/sys/net/ipv4/tcp_fin_timeout", "1").expect("per-netns sysctl");
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    server.ok("comm half-closed");
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    client.ok("close");
    server.ok("sleep 2500");
    let _ = server.cmd("send 10");
    let trace = tracer.finish_after(Duration::from_millis(1500));
    let f = findings(&trace, "forgotten_connection")[0];
    assert_eq!(
        pid(&f["owner"]),
        Some(u64::from(client.pid)),
        "the closer: {f}"
    );
    assert_eq!(pid(&f["peer_owner"]), Some(u64::from(server.pid)), "{f}");
    assert_eq!(number(f, "tcp_fin_timeout"), 1.0, "{f}");
    assert!(number(f, "closed_ms_before") >= 2000.0, "{f}");
    assert_eq!(text(f, "peer_state"), "CLOSE_WAIT", "{f}");
    assert_eq!(number(f, "payload_bytes"), 10.0, "{f}");
    assert!(
        trace.findings_of("peer_reset").is_empty(),
        "the server's received reset is covered: {}",
        trace.dump()
    );
}

/// The server's connection vanishes without FIN or RST (TCP_REPAIR close)
/// while its listener stays: the client's next request reaches the listener,
/// which resets it (TCP_FLAGS).
fn stray_ack_to_listener() {
    let ns = netns::enter_private();
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    server.ok("repair-close");
    client.ok("sleep 200");
    client.ok("send 5");
    let trace = tracer.finish_after(Duration::from_millis(500));
    let f = findings(&trace, "stray_ack_to_listener")[0];
    assert_finding_reason(f, &["TCP_FLAGS"]);
    assert_eq!(pid(&f["owner"]), Some(u64::from(server.pid)), "{f}");
    assert_eq!(pid(&f["peer_owner"]), Some(u64::from(client.pid)), "{f}");
    assert_eq!(number(f, "payload_bytes"), 5.0, "{f}");
    assert!(number(f, "closed_ms_before") >= 150.0, "{f}");
}

/// A server on another host (its own namespace, over veth) aborts the
/// connection; tcpwatch traces only the client's namespace, so all it knows
/// is that the peer reset: peer_reset on the client.
fn peer_reset() {
    let ns = netns::enter_private();
    let mut server = Peer::spawn();
    server.ok("unshare-net");
    let server_ns = netns::veth_to(server.pid, "10.77.0.1", "10.77.0.2");
    assert_ne!(server_ns, ns);
    let port = server.ok("listen 10.77.0.2");
    let tracer = trace(ns, &[]);
    let mut client = Peer::spawn();
    client.ok("comm remote-client");
    client.ok(&format!("connect 10.77.0.2 {port}"));
    server.ok("accept");
    server.ok("linger0");
    server.ok("close");
    let _ = client.cmd("recv");
    let trace = tracer.finish();
    let f = findings(&trace, "peer_reset")[0];
    assert_eq!(f["confidence"], "exact", "{f}");
    assert_eq!(pid(&f["owner"]), Some(u64::from(client.pid)), "{f}");
    assert_eq!(f["owner"]["comm"], "remote-client");
    assert!(f["peer_owner"].is_null(), "the peer is not traced: {f}");
    assert_eq!(text(f, "error"), "ECONNRESET", "{f}");
    assert_eq!(text(f, "state"), "ESTABLISHED", "{f}");
    assert_eq!(f["flow"]["src"], format!("10.77.0.2:{port}"), "{f}");
}

/// net.ipv4.tcp_abort_on_overflow = 1 and a listener (TCP_DEFER_ACCEPT,
/// backlog 1) that never accepts: connections whose first data meets the full
/// queue are reset by the listener (INVALID_SYN).
fn accept_queue_abort() {
    let ns = netns::enter_private();
    std::fs::write("/proc/sys/net/ipv4/tcp_abort_on_overflow", "1").expect("per-netns sysctl");
    let tracer = trace(ns, &[]);
    let mut server = Peer::spawn();
    server.ok("comm stalled-api");
    let port = server.ok("listen-defer 127.0.0.1 1");
    let mut clients = Peer::spawn();
    for _ in 0..4 {
        clients.ok(&format!("connect 127.0.0.1 {port}"));
    }
    clients.ok("write-all GET\\s/\\sHTTP/1.0\\r\\n\\r\\n");
    // The counters come with the next namespace sample (every second).
    let trace = tracer.finish_after(Duration::from_millis(2500));
    let found = findings(&trace, "accept_queue_overflow");
    let reset = found
        .iter()
        .find(|f| {
            f["evidence"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["fact"] == "reason"))
        })
        .unwrap_or_else(|| panic!("no per-reset finding: {found:?}"));
    assert_eq!(text(reset, "reason"), "INVALID_SYN", "{reset}");
    assert_eq!(pid(&reset["owner"]), Some(u64::from(server.pid)), "{reset}");
    assert_eq!(reset["owner"]["comm"], "stalled-api");
    // The sample's finding (the queue and its limit). The per-reset finding
    // may name ListenOverflows too: on kernels without reasons (6.1) it is
    // decided with the next sample's counters.
    let queue = found
        .iter()
        .find(|f| {
            // The queue's own finding (from samples); the per-reset one may
            // quote ListenOverflows too.
            f["evidence"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["fact"] == "accept_backlog"))
        })
        .unwrap_or_else(|| {
            let samples: Vec<String> = trace
                .samples
                .iter()
                .map(|s| format!("{} {} {}", s["time"], s["counters"], s["listeners"]))
                .collect();
            panic!(
                "no accept-queue finding: {found:?}\nsamples:\n{}",
                samples.join("\n")
            )
        });
    assert!(number(queue, "listen_overflows") >= 1.0, "{queue}");
    assert_eq!(number(queue, "accept_backlog"), 1.0, "{queue}");
    assert_eq!(number(queue, "tcp_abort_on_overflow"), 1.0, "{queue}");
    assert_eq!(pid(&queue["owner"]), Some(u64::from(server.pid)), "{queue}");
}

/// nginx (`listen ... deferred backlog=16`, so connections wait as requests
/// until their first data) whose worker is stopped: its accept loop stalls.
/// net.core.somaxconn = 2 in the namespace caps the queue at 2. Six clients
/// connect and send a request: the finding names the listener, nginx, the
/// queue and its limit, the backlog nginx asked for, somaxconn, the counters
/// and what tcp_abort_on_overflow does; on 6.15+ the kernel's own drops
/// (TCP_LISTEN_OVERFLOW) on that listener.
fn accept_queue_nginx_stalled() {
    let ns = netns::enter_private();
    std::fs::write("/proc/sys/net/core/somaxconn", "2").expect("per-netns sysctl");
    let tracer = trace_drops(ns);
    let nginx = Nginx::start_listening("60s", "deferred backlog=16");
    let worker = nginx.worker();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("stop the nginx worker");
    let mut clients = Peer::spawn();
    // Once the queue is full (syncookies let handshakes complete meanwhile),
    // later SYNs are dropped and such a connect() times out: that is the
    // incident, not a test failure.
    let connected = (0..6)
        .filter(|_| clients.cmd("connect 127.0.0.1 8080").starts_with("ok"))
        .count();
    assert!(connected >= 3, "{connected} clients connected");
    clients.ok("write-all GET\\s/\\sHTTP/1.0\\r\\n\\r\\n");
    let trace = tracer.finish_after(Duration::from_millis(3000));
    let found = findings(&trace, "accept_queue_overflow");
    let at_8080: Vec<_> = found.iter().filter(|f| f["port"] == 8080).collect();
    let f = at_8080
        .last()
        .unwrap_or_else(|| panic!("no finding for port 8080: {found:?}"));
    assert_eq!(text(f, "listener"), "127.0.0.1:8080", "{f}");
    let owner = pid(&f["owner"]).unwrap_or(0);
    assert!(
        owner == u64::from(nginx.master) || owner == u64::from(worker),
        "owner is nginx: {f}"
    );
    assert_eq!(f["owner"]["comm"], "nginx", "{f}");
    assert_eq!(number(f, "accept_backlog"), 2.0, "{f}");
    assert!(number(f, "accept_queue") >= 2.0, "{f}");
    assert_eq!(number(f, "requested_backlog"), 16.0, "{f}");
    assert_eq!(number(f, "somaxconn"), 2.0, "{f}");
    assert_eq!(number(f, "tcp_abort_on_overflow"), 0.0, "{f}");
    assert!(number(f, "listen_overflows") >= 1.0, "{f}");
    let summary = f["summary"].as_str().unwrap_or("");
    assert!(
        summary.contains("asked listen() for 16, capped to 2"),
        "{summary}"
    );
    if names_listen_overflow_drops() {
        // The requests whose data met the full queue, in one of the samples.
        let named = at_8080.iter().any(|f| {
            f["evidence"].as_array().is_some_and(|e| {
                e.iter().any(|e| {
                    e["fact"] == "listener_drops"
                        && e["text"]
                            .as_str()
                            .unwrap_or("")
                            .contains("TCP_LISTEN_OVERFLOW")
                })
            })
        });
        assert!(
            named,
            "no TCP_LISTEN_OVERFLOW drops on a 6.15+ kernel: {at_8080:?}\n{}",
            trace.dump()
        );
    }
    drop(nginx);
}

/// Drops are events of their own (`--kind drop`), with the kernel's reason
/// and the flow and owner of the connection they belong to: the handshake-
/// completing ACKs a deferred listener drops (every kernel with drop
/// reasons), and on 6.15+ the requests that met its full accept queue
/// (TCP_LISTEN_OVERFLOW).
fn drops_joined_to_flow() {
    let ns = netns::enter_private();
    let tracer = trace_drops(ns);
    let mut server = Peer::spawn();
    server.ok("comm stalled-api");
    let port = server.ok("listen-defer 127.0.0.1 1");
    let mut clients = Peer::spawn();
    let mut client_ports = Vec::new();
    for _ in 0..4 {
        // As above: a SYN that meets the full queue is dropped.
        let reply = clients.cmd(&format!("connect 127.0.0.1 {port}"));
        if let Some(port) = reply.strip_prefix("ok ") {
            client_ports.push(port.trim().to_owned());
        }
    }
    assert!(!client_ports.is_empty(), "no client connected");
    clients.ok("write-all GET\\s/\\sHTTP/1.0\\r\\n\\r\\n");
    let trace = tracer.finish_after(Duration::from_millis(2500));
    let drops = trace.of_kind("drop");
    assert!(!drops.is_empty(), "no drop events:\n{}", trace.dump());
    let listener = format!("127.0.0.1:{port}");
    for d in &drops {
        assert_eq!(d["hook"], "tracepoint:skb:kfree_skb", "{d}");
        assert!(
            d["reason"].is_string(),
            "a reason on every kernel with one: {d}"
        );
    }
    let at_listener: Vec<_> = drops
        .iter()
        .filter(|d| d["flow"]["src"] == listener.as_str())
        .collect();
    assert!(!at_listener.is_empty(), "drops at the listener: {drops:?}");
    for d in &at_listener {
        // Joined to the client's connection and to the listener's owner.
        let dst = d["flow"]["dst"].as_str().unwrap_or("");
        assert!(
            client_ports.iter().any(|p| dst.ends_with(&format!(":{p}"))),
            "the flow is one of the clients' connections {client_ports:?}: {d}"
        );
        assert_eq!(d["flow"]["netns"], ns, "{d}");
        if drops_name_socket() {
            // rx_sk (6.12+): the listener itself, and so its owner.
            assert_eq!(d["state"], "LISTEN", "{d}");
            assert_eq!(pid(&d["owner"]), Some(u64::from(server.pid)), "{d}");
            assert_eq!(d["owner"]["comm"], "stalled-api", "{d}");
        } else {
            // No socket in the record: the process listening on the port.
            let who = if d["owner"].is_null() {
                &d["listener"]
            } else {
                &d["owner"]
            };
            assert_eq!(pid(who), Some(u64::from(server.pid)), "{d}");
        }
    }
    if names_listen_overflow_drops() {
        assert!(
            at_listener
                .iter()
                .any(|d| d["reason"] == "TCP_LISTEN_OVERFLOW"
                    && d["segment"]["payload_bytes"].as_u64() > Some(0)),
            "the requests that met the full queue: {at_listener:?}"
        );
    }
}

/// An nftables rule in the namespace rejects connections to a running
/// service with a TCP reset. Where kprobes exist, netfilter's reset builder is
/// hooked and the finding names the firewall; elsewhere `tcpwatch probes` says
/// firewall resets are not seen and the client's reset is all there is.
fn firewall_reject() {
    let ns = netns::enter_private();
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    // Before tcpwatch starts: the first REJECT rule loads nf_reject_ipv4,
    // whose functions tcpwatch looks up at start-up.
    for rule in [
        "add table inet tcpwatch_test".to_owned(),
        "add chain inet tcpwatch_test input { type filter hook input priority 0 ; }".to_owned(),
        format!("add rule inet tcpwatch_test input tcp dport {port} reject with tcp reset"),
    ] {
        let status = std::process::Command::new("nft")
            .args(rule.split(' '))
            .status()
            .expect("nft (nftables)");
        assert!(status.success(), "nft {rule}");
    }
    let seen = capabilities::sees_firewall_resets();
    let tracer = trace(ns, &[]);
    let mut client = Peer::spawn();
    assert_eq!(
        client.cmd(&format!("connect 127.0.0.1 {port}")),
        "err ECONNREFUSED"
    );
    let trace = tracer.finish();
    assert!(
        trace.findings_of("no_listener").is_empty(),
        "a service listens: {}",
        trace.dump()
    );
    assert!(
        !trace.stderr.contains("nf_send_reset not attached"),
        "the kprobes tcpwatch planned must load: {}",
        trace.stderr
    );
    if !seen {
        // This kernel (no kprobes) cannot see netfilter's reset; the client's
        // received reset is reported, with the refusal it caused.
        let f = findings(&trace, "peer_reset")[0];
        assert_eq!(text(f, "error"), "ECONNREFUSED", "{f}");
        return;
    }
    let sent = trace.one("reset_sent", "netfilter's RST", |e| {
        e["hook"] == "kprobe:nf_send_reset"
    });
    assert_eq!(sent["netfilter_hook"], "INPUT", "{sent}");
    assert!(sent["reason"].is_null(), "not a TCP reason: {sent}");
    assert_eq!(
        pid(&sent["listener"]),
        Some(u64::from(server.pid)),
        "{sent}"
    );
    let f = findings(&trace, "firewall_reject")[0];
    assert_eq!(f["confidence"], "exact", "{f}");
    assert_eq!(text(f, "netfilter_hook"), "INPUT", "{f}");
    assert_eq!(f["evidence"][2]["value"], true, "a service listens: {f}");
    assert_eq!(pid(&f["peer_owner"]), Some(u64::from(client.pid)), "{f}");
    assert!(
        trace.findings_of("peer_reset").is_empty(),
        "the client's reset is part of the firewall finding: {}",
        trace.dump()
    );
}

/// A server peer listening on 127.0.0.1 and a client peer connected to it,
/// accepted.
fn connected_pair() -> (Peer, Peer) {
    let mut server = Peer::spawn();
    let port = server.ok("listen 127.0.0.1");
    let mut client = Peer::spawn();
    client.ok(&format!("connect 127.0.0.1 {port}"));
    server.ok("accept");
    (server, client)
}

/// `trace` with failed socket calls too (`--kind all,app_error`).
fn trace_app_errors(ns: u32) -> Tracer {
    let ns = ns.to_string();
    Tracer::start(&["--kind", "all,app_error", "--netns", ns.as_str()])
}

/// The `application_saw` entries of `finding`, each checked to be `pid`'s
/// `error` from one of `syscalls`. Empty where this kernel cannot see such
/// calls (`seen` false: reads and writes before 6.4).
fn assert_application_saw(
    finding: &Value,
    seen: bool,
    pid: u32,
    error: &str,
    syscalls: &[&str],
) -> Vec<Value> {
    let saw = finding["evidence"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["fact"] == "application_saw"))
        .map(|e| e["value"].as_array().cloned().unwrap_or_default());
    if !seen {
        assert!(saw.is_none(), "this kernel has no such hooks: {finding}");
        return Vec::new();
    }
    let saw = saw.unwrap_or_else(|| panic!("no application_saw in {finding}"));
    assert!(!saw.is_empty(), "{finding}");
    for call in &saw {
        assert_eq!(call["pid"], pid, "{finding}");
        assert_eq!(call["error"], error, "{finding}");
        assert!(
            syscalls.contains(&call["syscall"].as_str().unwrap_or("")),
            "one of {syscalls:?}: {finding}"
        );
    }
    saw
}

/// The server stops acknowledging (a socket filter drops all it receives);
/// the client's data is retransmitted until its TCP_USER_TIMEOUT: the kernel
/// closes the connection without a reset and the client's read gets
/// ETIMEDOUT.
fn retransmit_timeout() {
    let ns = netns::enter_private();
    let tracer = trace_app_errors(ns);
    let (mut server, mut client) = connected_pair();
    server.ok("blackhole");
    client.ok("user-timeout 1500");
    client.ok("send 100");
    assert_eq!(client.cmd("recv"), "err ETIMEDOUT");
    let trace = tracer.finish();
    let f = findings(&trace, "retransmit_timeout")[0];
    assert_eq!(f["confidence"], "exact", "{f}");
    assert_eq!(pid(&f["owner"]), Some(u64::from(client.pid)), "{f}");
    assert_eq!(text(f, "error"), "ETIMEDOUT", "{f}");
    assert!(number(f, "retransmits") >= 1.0, "{f}");
    assert_eq!(number(f, "user_timeout_ms"), 1500.0, "{f}");
    let close = trace.one("state", "the client's close", |e| {
        e["new_state"] == "CLOSE" && e["error"] == "ETIMEDOUT"
    });
    assert_eq!(pid(&close["owner"]), Some(u64::from(client.pid)), "{close}");
    assert!(
        trace.events.iter().all(|e| e["kind"] != "reset_sent"),
        "a timeout sends no reset: {}",
        trace.dump()
    );
    assert_application_saw(
        f,
        capabilities::sees_failed_reads_and_writes(),
        client.pid,
        "ETIMEDOUT",
        &["recvfrom"],
    );
}

/// The server aborts (SO_LINGER {1, 0}) while the client waits in read():
/// the finding says the client got ECONNRESET from its read. Then a connect
/// to a closed port: the finding says which connect() got ECONNREFUSED.
fn application_saw_reset() {
    let ns = netns::enter_private();
    let tracer = trace_app_errors(ns);
    let (mut server, mut client) = connected_pair();
    server.ok("linger0");
    server.ok("close");
    assert_eq!(client.cmd("recv"), "err ECONNRESET");
    let trace = tracer.finish();
    let tracer = trace_app_errors(ns);
    let mut refused_client = Peer::spawn();
    assert_eq!(
        refused_client.cmd("connect-blocking 127.0.0.1 9"),
        "err ECONNREFUSED"
    );
    let refused = tracer.finish();

    let f = trace
        .findings
        .iter()
        .find(|f| f["cause"] == "linger_zero_abort" || f["cause"] == "peer_reset")
        .unwrap_or_else(|| panic!("no finding for the abort: {}", trace.dump()));
    let saw = assert_application_saw(
        f,
        capabilities::sees_failed_reads_and_writes(),
        client.pid,
        "ECONNRESET",
        &["recvfrom"],
    );
    if !saw.is_empty() {
        let call = trace.one("app_error", "the client's failed read", |e| {
            e["error"] == "ECONNRESET"
        });
        assert_eq!(pid(&call["actor"]), Some(u64::from(client.pid)), "{call}");
        assert_eq!(pid(&call["owner"]), Some(u64::from(client.pid)), "{call}");
        assert_eq!(call["state"], "CLOSE", "{call}");
    }

    let f = findings(&refused, "no_listener")[0];
    let saw = assert_application_saw(
        f,
        capabilities::sees_failed_connects(),
        refused_client.pid,
        "ECONNREFUSED",
        &["connect"],
    );
    if !saw.is_empty() {
        let call = refused.one("app_error", "the failed connect", |e| {
            e["syscall"] == "connect"
        });
        assert_eq!(
            call["flow"]["dst"], "127.0.0.1:9",
            "the flow its close kept: {call}"
        );
        assert_eq!(
            pid(&call["owner"]),
            Some(u64::from(refused_client.pid)),
            "{call}"
        );
    }
}
