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

/// Inode of the calling thread's network namespace.
pub fn current() -> u32 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat /proc/thread-self/ns/net")
        .ino() as u32
}
