//! A private network namespace for the calling test thread.
//!
//! `unshare(CLONE_NEWNET)` on a thread moves only that thread; processes it
//! spawns inherit the namespace. The namespace disappears when the thread and
//! its children are gone, so nothing is left behind.

use std::{os::unix::fs::MetadataExt, process::Command};

use nix::sched::{CloneFlags, unshare};

/// Moves the calling thread into a new network namespace with `lo` up; returns
/// the namespace's inode.
pub fn enter_private() -> u32 {
    unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET) needs root");
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run `ip` (iproute2)");
    assert!(status.success(), "ip link set lo up failed");
    current()
}

/// Connects the calling thread's namespace to the namespace of process `pid`
/// (a peer after `unshare-net`) with a veth pair: `here` on this side, `there`
/// on the other (both /24 addresses in one subnet). Returns the other
/// namespace's inode. The pair disappears with the peer's namespace.
pub fn veth_to(pid: u32, here: &str, there: &str) -> u32 {
    let pid = pid.to_string();
    let run = |args: &[&str]| {
        let status = Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
        assert!(status.success(), "{args:?} failed");
    };
    run(&[
        "ip", "link", "add", "twa", "type", "veth", "peer", "name", "twb", "netns", &pid,
    ]);
    run(&["ip", "addr", "add", &format!("{here}/24"), "dev", "twa"]);
    run(&["ip", "link", "set", "twa", "up"]);
    let inside = ["nsenter", "-t", pid.as_str(), "-n", "ip"];
    let there = format!("{there}/24");
    for args in [
        &["addr", "add", there.as_str(), "dev", "twb"][..],
        &["link", "set", "twb", "up"],
        &["link", "set", "lo", "up"],
    ] {
        run(&[&inside[..], args].concat());
    }
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .expect("stat the peer's namespace")
        .ino() as u32
}

/// Inode of the calling thread's network namespace.
pub fn current() -> u32 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat /proc/thread-self/ns/net")
        .ino() as u32
}
