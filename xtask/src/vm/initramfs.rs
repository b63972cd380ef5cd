//! The guest's initramfs: the root's static busybox, the kernel modules needed
//! to mount the shared root (virtio, 9p, overlay; whichever of them this kernel
//! builds as modules, with their dependencies from `modules.dep`), the two init
//! stages, and the run's own files (share mounts and the command).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{cpio::Archive, kernels::Kernel, qemu::Share};
use crate::command::output_of;

/// Stage 1, PID 1 of the initramfs.
const STAGE1: &str = include_str!("initramfs-init.sh");
/// Stage 2, PID 1 of the Debian root.
const STAGE2: &str = include_str!("guest-init.sh");

/// What the root mount needs, by module name (built-in ones are skipped).
const ROOT_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Builds the initramfs for one run of `command` (a shell script run by the
/// root's /bin/sh) with `shares` mounted first.
pub fn build(kernel: &Kernel, root: &Path, shares: &[Share], command: &str) -> Result<Vec<u8>> {
    let mut a = Archive::default();
    for dir in [
        "/bin",
        "/dev",
        "/proc",
        "/sys",
        "/etc",
        "/lib",
        "/lib/modules",
        "/lower",
        "/upper",
        "/newroot",
        "/vm",
    ] {
        a.dir(dir);
    }
    let busybox = root.join("bin/busybox");
    a.file(
        "/bin/busybox",
        0o755,
        &fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?,
    );
    a.symlink("/bin/sh", "busybox");
    a.file("/init", 0o755, STAGE1.as_bytes());

    let mut order = String::new();
    for module in modules_for_root(&kernel.modules)? {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .context("module file name")?;
        let name = name
            .strip_suffix(".xz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(name);
        let guest = format!("/lib/modules/{name}");
        a.file(&guest, 0o644, &module_bytes(&kernel.modules.join(&module))?);
        order.push_str(&guest);
        order.push('\n');
    }
    a.file("/etc/modules-order", 0o644, order.as_bytes());

    a.file("/vm/guest-init", 0o755, STAGE2.as_bytes());
    a.file("/vm/mounts", 0o644, mounts(shares).as_bytes());
    a.file("/vm/command", 0o644, command.as_bytes());
    Ok(a.finish())
}

/// The modules (paths relative to the modules tree) to load, dependencies first.
fn modules_for_root(tree: &Path) -> Result<Vec<PathBuf>> {
    let dep_file = tree.join("modules.dep");
    let deps =
        fs::read_to_string(&dep_file).with_context(|| format!("reading {}", dep_file.display()))?;
    let builtin = fs::read_to_string(tree.join("modules.builtin")).unwrap_or_default();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in ROOT_MODULES {
        match find_module(&deps, name) {
            Some(path) => add_with_deps(&deps, path, &mut seen, &mut order)?,
            None if find_module(&builtin, name).is_some() => {}
            None => bail!(
                "{}: module {name} is neither in modules.dep nor built in",
                tree.display()
            ),
        }
    }
    Ok(order.into_iter().map(PathBuf::from).collect())
}

/// The `modules.dep`-style line key (relative path) of module `name`.
fn find_module<'a>(index: &'a str, name: &str) -> Option<&'a str> {
    index
        .lines()
        .map(|l| l.split(':').next().unwrap_or(l).trim())
        .find(|path| {
            let file = path.rsplit('/').next().unwrap_or(path);
            let stem = file.split(".ko").next().unwrap_or(file);
            stem.replace('-', "_") == name.replace('-', "_")
        })
}

fn add_with_deps(
    deps: &str,
    path: &str,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) -> Result<()> {
    if !seen.insert(path.to_owned()) {
        return Ok(());
    }
    let line = deps
        .lines()
        .find(|l| l.split(':').next() == Some(path))
        .with_context(|| format!("{path} not in modules.dep"))?;
    // modules.dep lists every dependency, already in load order reversed:
    // load each one's own dependencies first anyway.
    for dep in line.split(':').nth(1).unwrap_or("").split_whitespace() {
        add_with_deps(deps, dep, seen, order)?;
    }
    order.push(path.to_owned());
    Ok(())
}

/// A module file's bytes, decompressed (busybox insmod takes plain ELF).
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        _ => return fs::read(path).with_context(|| format!("reading {}", path.display())),
    };
    output_of(Command::new(tool).arg("-dc").arg(path)).with_context(|| {
        format!(
            "decompressing {} (apt-get install xz-utils zstd)",
            path.display()
        )
    })
}

/// Stage 2's share mounts, as shell commands.
fn mounts(shares: &[Share]) -> String {
    let mut s = String::new();
    for share in shares {
        // Read-only shares do not change under the guest: cache everything.
        // Writable ones keep the page cache for mmap (executables) only.
        let (mode, cache) = if share.writable {
            ("rw", "mmap")
        } else {
            ("ro", "loose")
        };
        let guest = sh_quote(&share.guest.to_string_lossy());
        s.push_str(&format!(
            "mkdir -p {guest} && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,{mode},cache={cache} {} {guest} || fail \"mounting {}\"\n",
            share.tag, share.tag
        ));
    }
    s
}

/// Quotes `word` for a POSIX shell.
pub fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/overlayfs/overlay.ko.xz:\nkernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\nkernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz\nkernel/fs/netfs/netfs.ko.xz:\nkernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz\n";

    #[test]
    fn dependencies_load_first() {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in ["9pnet_virtio", "9p", "overlay"] {
            let path = find_module(DEP, name).unwrap();
            add_with_deps(DEP, path, &mut seen, &mut order).unwrap();
        }
        assert_eq!(
            order,
            [
                "kernel/fs/netfs/netfs.ko.xz",
                "kernel/net/9p/9pnet.ko.xz",
                "kernel/net/9p/9pnet_virtio.ko.xz",
                "kernel/fs/9p/9p.ko.xz",
                "kernel/fs/overlayfs/overlay.ko.xz"
            ]
        );
        assert_eq!(find_module(DEP, "9pnet"), Some("kernel/net/9p/9pnet.ko.xz"));
        assert_eq!(find_module(DEP, "virtio_pci"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/work/wt-vm"), "/work/wt-vm");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn mount_lines() {
        let m = mounts(&[Share {
            tag: "project".into(),
            host: "/w".into(),
            guest: "/w".into(),
            writable: true,
        }]);
        assert!(m.contains("rw,cache=mmap project /w"), "{m}");
    }
}
