//! Where the VM matrix keeps what it builds once (kernel packages, the Debian
//! root), outside the repository, and how each piece is made exactly once: built
//! in a temporary directory beside its final place, then renamed, under a lock
//! so that two runs never build the same piece together.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

/// Environment variable that moves the cache.
pub const CACHE_ENV: &str = "TCPWATCH_VM_CACHE";
/// Default cache location.
const DEFAULT_CACHE: &str = "/var/cache/tcpwatch-vm";

/// The cache directory.
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `$TCPWATCH_VM_CACHE`, default `/var/cache/tcpwatch-vm`.
    pub fn locate() -> Result<Self> {
        let root = std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(Self { root })
    }

    /// A subdirectory, created if needed.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Makes sure `path` exists, building it with `build` (given a scratch
    /// directory that becomes `path`) if it does not. `stamp` describes what
    /// `path` must have been built from; a different stamp rebuilds it.
    pub fn build_once(
        &self,
        path: &Path,
        stamp: &str,
        build: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let stamp_file = path.with_extension("stamp");
        let current = || fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) && path.is_dir();
        if current() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if current() {
            // Another run built it while we waited.
            return Ok(());
        }
        let scratch = path.with_extension("tmp");
        remove_dir(&scratch)?;
        remove_dir(path)?;
        fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        if let Err(e) = build(&scratch) {
            let _ = remove_dir(&scratch);
            return Err(e);
        }
        fs::rename(&scratch, path)
            .with_context(|| format!("renaming {} to {}", scratch.display(), path.display()))?;
        fs::write(&stamp_file, stamp).with_context(|| format!("writing {}", stamp_file.display()))
    }

    /// A scratch directory for one VM run, removed when the guard drops.
    pub fn run_dir(&self) -> Result<RunDir> {
        let runs = self.dir("runs")?;
        let dir = runs.join(format!("run-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(RunDir(dir))
    }

    fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking {}", path.display()))
    }
}

/// A per-run directory, removed on drop.
pub struct RunDir(PathBuf);

impl RunDir {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u128 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nanos ^ u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

fn remove_dir(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
