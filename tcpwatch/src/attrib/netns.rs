//! Network namespaces: finding them, and running code inside one.
//!
//! `setns(CLONE_NEWNET)` moves only the calling thread, so work in another
//! namespace runs on a short-lived dedicated thread that exits afterwards; the
//! rest of tcpwatch never changes namespace.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    thread,
};

use nix::sched::{CloneFlags, setns};
use procfs::process::Process;

/// Named namespaces (`ip netns add`).
const NAMED_NETNS: &str = "/run/netns";
/// The calling thread's own namespace.
pub const OWN_NETNS: &str = "/proc/thread-self/ns/net";
/// Paths remembered per namespace, tried in turn if a task has exited.
pub const PATHS_PER_NETNS: usize = 4;

/// The namespace inode `path` leads to.
pub fn inode(path: &Path) -> Option<u32> {
    u32::try_from(fs::metadata(path).ok()?.ino()).ok()
}

/// Records the network namespace of each of the process's threads (a thread may
/// have left its process's namespace with `unshare`/`setns`).
pub fn record_threads(process: &Process, namespaces: &mut BTreeMap<u32, Vec<PathBuf>>) {
    let Ok(tasks) = process.tasks() else { return };
    for task in tasks.flatten() {
        let path = PathBuf::from(format!("/proc/{}/task/{}/ns/net", task.pid, task.tid));
        if let Some(netns) = inode(&path) {
            let paths = namespaces.entry(netns).or_default();
            if paths.len() < PATHS_PER_NETNS {
                paths.push(path);
            }
        }
    }
}

/// Adds the namespaces bound under `/run/netns`, if any.
pub fn add_named(namespaces: &mut BTreeMap<u32, Vec<PathBuf>>) {
    let (Ok(entries), Ok(own)) = (fs::read_dir(NAMED_NETNS), fs::metadata(OWN_NETNS)) else {
        return;
    };
    for path in entries.flatten().map(|entry| entry.path()) {
        // A name whose bind mount is gone is a plain file, not an nsfs inode.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if let (true, Ok(netns)) = (meta.dev() == own.dev(), u32::try_from(meta.ino())) {
            namespaces.entry(netns).or_default().insert(0, path);
        }
    }
}

/// Runs `work` on a dedicated thread inside namespace `netns`, entered through
/// the first of `paths` that still leads to it.
pub fn run_in<T: Send + 'static>(
    netns: u32,
    paths: Vec<PathBuf>,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    thread::Builder::new()
        .name("tcpwatch-netns".into())
        .spawn(move || {
            enter(netns, &paths)?;
            work()
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
}

/// Moves the calling thread into namespace `netns` through one of `paths`.
fn enter(netns: u32, paths: &[PathBuf]) -> Result<(), String> {
    if inode(Path::new(OWN_NETNS)) == Some(netns) {
        return Ok(());
    }
    let mut last = "no path leads to it any more".to_string();
    for path in paths {
        match enter_via(netns, path) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("cannot enter via {}: {e}", path.display()),
        }
    }
    Err(last)
}

/// Opens `path`, checks it is still namespace `netns` (pids are reused), enters it.
fn enter_via(netns: u32, path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let inode = file.metadata().map_err(|e| e.to_string())?.ino();
    if u64::from(netns) != inode {
        return Err("it now leads to another namespace".into());
    }
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())
}
