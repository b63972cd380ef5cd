//! Where a process runs: its cgroup v2 path, and the systemd unit and the
//! container that path names.
//!
//! The kernel programs record each task's cgroup v2 id, which is the inode
//! number of its cgroup directory. [`Cgroups`] turns ids into paths: first
//! through `/proc/PID/cgroup` (checked against the id, since the process may
//! have moved, exited, or be another one in a different pid namespace), then
//! through the last walk of the cgroup tree, and a new walk (bounded; at most
//! [`WALKS_PER_SECOND`], in bursts of [`WALK_BURST`]) when that does not know
//! the id. A cgroup removed before its first event is read (a unit that
//! lived for milliseconds) cannot be named. Results are cached (bounded, least recently used out); an id that
//! resolves to nothing is retried after a while.
//!
//! From the path:
//! - the unit is the innermost component ending in `.service`, `.scope`,
//!   `.socket`, `.mount` or `.swap` (`/system.slice/nginx.service` →
//!   `nginx.service`; a delegated subtree such as
//!   `/system.slice/foo.service/payload` still names `foo.service`);
//! - the container id is the innermost component that is, or ends with `-`
//!   and, 64 hex digits, with an optional `.scope` suffix: Docker
//!   (`docker-ID.scope`, `/docker/ID`), containerd and CRI-O under Kubernetes
//!   (`cri-containerd-ID.scope`, `crio-ID.scope`, `/kubepods/.../podUID/ID`),
//!   Podman (`libpod-ID.scope`). Monitor processes (`*-conmon-ID`) are not
//!   containers.

use std::{
    collections::HashMap,
    fs,
    num::NonZeroUsize,
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

use crate::events::model::{EventRecord, Process};

/// Where the cgroup v2 hierarchy is usually mounted (unified, then hybrid).
const ROOTS: [&str; 2] = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
/// Unit types whose cgroups hold processes.
const UNIT_SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];
/// Ids cached.
const CACHE: usize = 4096;
/// Directories read in one walk of the tree at most.
const MAX_WALK: usize = 65_536;
/// Walks of the tree per second at most, on average...
const WALKS_PER_SECOND: f64 = 20.0;
/// ...and at once. A lookup that finds no walk left is not remembered as a miss:
/// the next event tries again. An id that a fresh walk did not find is not
/// looked for again before [`RETRY_AFTER`].
const WALK_BURST: f64 = 5.0;
/// An id that resolved to nothing is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// A cgroup and what its path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Path from the root of the hierarchy (as seen in tcpwatch's cgroup
    /// namespace), e.g. `/system.slice/nginx.service`.
    pub path: String,
    /// The systemd unit, e.g. `nginx.service`.
    pub unit: Option<String>,
    /// The container id (64 hex digits).
    pub container: Option<String>,
}

impl Placement {
    /// Reads the unit and the container from a cgroup path.
    pub fn from_path(path: &str) -> Self {
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let unit = components
            .iter()
            .rev()
            .find(|c| {
                UNIT_SUFFIXES
                    .iter()
                    .any(|s| c.len() > s.len() && c.ends_with(s))
            })
            .map(|c| (*c).to_owned());
        let container = components.iter().rev().find_map(|c| container_id(c));
        Self {
            path: if path.is_empty() { "/" } else { path }.to_owned(),
            unit,
            container,
        }
    }
}

/// The container id a path component names, if any.
fn container_id(component: &str) -> Option<String> {
    if component.contains("conmon") {
        return None;
    }
    let name = component.strip_suffix(".scope").unwrap_or(component);
    let id = name.rsplit('-').next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

/// The mount point of the cgroup v2 hierarchy, if mounted where expected.
pub fn hierarchy_root() -> Option<PathBuf> {
    ROOTS
        .iter()
        .map(PathBuf::from)
        .find(|path| statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
}

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/PID/cgroup`), unless
/// it lies outside tcpwatch's cgroup namespace.
pub fn process_path(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let inside = Path::new(path).strip_prefix("/").ok()?;
    if inside.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    Some(path.to_owned())
}

/// The id (directory inode) of the cgroup at `path` under `root`.
pub fn id_of(root: &Path, path: &str) -> Option<u64> {
    let relative = path.trim_start_matches('/');
    Some(fs::metadata(root.join(relative)).ok()?.ino())
}

struct Entry {
    placement: Option<Arc<Placement>>,
    at: Instant,
}

/// Resolves cgroup ids to placements, with a bounded cache.
pub struct Cgroups {
    root: Option<PathBuf>,
    cache: LruCache<u64, Entry>,
    tree: HashMap<u64, String>,
    walks: f64,
    refilled: Instant,
}

impl Default for Cgroups {
    fn default() -> Self {
        Self::new()
    }
}

impl Cgroups {
    /// A resolver for this host's cgroup v2 hierarchy (resolves nothing when
    /// there is none).
    pub fn new() -> Self {
        Self::with_root(hierarchy_root())
    }

    /// A resolver for the hierarchy mounted at `root`.
    pub fn with_root(root: Option<PathBuf>) -> Self {
        Self {
            root,
            cache: LruCache::new(NonZeroUsize::new(CACHE).unwrap_or(NonZeroUsize::MIN)),
            tree: HashMap::new(),
            walks: WALK_BURST,
            refilled: Instant::now(),
        }
    }

    /// The placement of cgroup `id`, which process `pid` was seen in.
    pub fn resolve(&mut self, id: u64, pid: u32) -> Option<Arc<Placement>> {
        if id == 0 {
            return None;
        }
        if let Some(entry) = self.cache.get(&id)
            && (entry.placement.is_some() || entry.at.elapsed() < RETRY_AFTER)
        {
            return entry.placement.clone();
        }
        let root = self.root.clone()?;
        let path = match process_path(pid).filter(|path| id_of(&root, path) == Some(id)) {
            Some(path) => Some(path),
            None => match self.lookup_tree(&root, id) {
                Lookup::Found(path) => Some(path),
                Lookup::Missing => None,
                Lookup::NotNow => return None,
            },
        };
        let placement = path.map(|p| Arc::new(Placement::from_path(&p)));
        self.cache.put(
            id,
            Entry {
                placement: placement.clone(),
                at: Instant::now(),
            },
        );
        placement
    }

    /// Fills in `cgroup`, `unit` and `container` of a process.
    pub fn annotate(&mut self, process: &mut Process) {
        if let Some(placement) = self.resolve(process.cgroup_id, process.pid) {
            process.cgroup = Some(placement.path.clone());
            process.unit.clone_from(&placement.unit);
            process.container.clone_from(&placement.container);
        }
    }

    /// Annotates the owner and the listener of an event (not the on-CPU actor:
    /// in softirq it is whoever was interrupted, and this runs for every event).
    pub fn annotate_event(&mut self, event: &mut EventRecord) {
        if let Some(owner) = &mut event.owner {
            self.annotate(owner);
        }
        if let Some(listener) = &mut event.listener {
            self.annotate(listener);
        }
    }

    fn lookup_tree(&mut self, root: &Path, id: u64) -> Lookup {
        if let Some(path) = self.tree.get(&id) {
            return Lookup::Found(path.clone());
        }
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * WALKS_PER_SECOND;
        self.walks = (self.walks + earned).min(WALK_BURST);
        self.refilled = now;
        if self.walks < 1.0 {
            return Lookup::NotNow;
        }
        self.walks -= 1.0;
        self.tree = walk(root);
        match self.tree.get(&id) {
            Some(path) => Lookup::Found(path.clone()),
            None => Lookup::Missing,
        }
    }
}

/// What the tree says about an id.
enum Lookup {
    Found(String),
    /// A fresh walk did not find it.
    Missing,
    /// No walk left for now.
    NotNow,
}

/// Every cgroup directory under `root` (at most [`MAX_WALK`]), by id.
fn walk(root: &Path) -> HashMap<u64, String> {
    let mut found = HashMap::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, path)) = pending.pop() {
        if found.len() >= MAX_WALK {
            break;
        }
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        found.insert(
            meta.ino(),
            if path.is_empty() {
                "/".to_owned()
            } else {
                path.clone()
            },
        );
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                pending.push((entry.path(), format!("{path}/{name}")));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e";

    #[test]
    fn units_and_containers_from_paths() {
        let p = Placement::from_path("/system.slice/nginx.service");
        assert_eq!(p.unit.as_deref(), Some("nginx.service"));
        assert_eq!(p.container, None);
        let p = Placement::from_path("/system.slice/foo.service/payload");
        assert_eq!(p.unit.as_deref(), Some("foo.service"));
        let p = Placement::from_path("/user.slice/user-1000.slice/session-3.scope");
        assert_eq!(p.unit.as_deref(), Some("session-3.scope"));
        let p = Placement::from_path(&format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(p.container.as_deref(), Some(ID));
        assert_eq!(p.unit, Some(format!("docker-{ID}.scope")));
        let p = Placement::from_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"
        ));
        assert_eq!(p.container.as_deref(), Some(ID));
        let p = Placement::from_path(&format!("/kubepods/besteffort/pod12/{ID}"));
        assert_eq!(p.container.as_deref(), Some(ID));
        assert_eq!(p.unit, None);
        let p = Placement::from_path(&format!("/machine.slice/libpod-conmon-{ID}.scope"));
        assert_eq!(p.container, None);
        let p = Placement::from_path("/");
        assert_eq!((p.path.as_str(), p.unit, p.container), ("/", None, None));
        assert_eq!(
            Placement::from_path("/init.scope").unit.as_deref(),
            Some("init.scope")
        );
        assert_eq!(Placement::from_path("/system.slice").unit, None);
    }

    #[test]
    fn resolves_ids_through_proc_and_the_tree() {
        let dir = std::env::temp_dir().join(format!("tcpwatch-cgroup-test-{}", std::process::id()));
        let unit = dir.join("system.slice/web.service");
        fs::create_dir_all(&unit).unwrap();
        let id = fs::metadata(&unit).unwrap().ino();
        let mut cgroups = Cgroups::with_root(Some(dir.clone()));
        // pid 0 has no /proc entry: found through the walk.
        let placement = cgroups.resolve(id, 0).expect("found in the tree");
        assert_eq!(placement.path, "/system.slice/web.service");
        assert_eq!(placement.unit.as_deref(), Some("web.service"));
        assert!(cgroups.resolve(u64::MAX, 0).is_none());
        assert!(cgroups.resolve(0, 0).is_none());
        // A cgroup made after the last walk is found by the next one.
        let later = dir.join("system.slice/later.service");
        fs::create_dir_all(&later).unwrap();
        let later_id = fs::metadata(&later).unwrap().ino();
        assert_eq!(
            cgroups
                .resolve(later_id, 0)
                .and_then(|p| p.unit.clone())
                .as_deref(),
            Some("later.service")
        );
        fs::remove_dir_all(&dir).unwrap();
        // Cached: still answers after the directory is gone.
        assert!(cgroups.resolve(id, 0).is_some());
    }

    #[test]
    fn resolves_this_process() {
        let Some(root) = hierarchy_root() else { return };
        let pid = std::process::id();
        let path = process_path(pid).expect("own cgroup path");
        let id = id_of(&root, &path).expect("own cgroup id");
        let mut cgroups = Cgroups::with_root(Some(root));
        assert_eq!(cgroups.resolve(id, pid).map(|p| p.path.clone()), Some(path));
    }
}
