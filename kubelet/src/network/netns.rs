//! Named network namespaces, as `ip netns` makes them: a namespace kept alive by a bind
//! mount of its `/proc/.../ns/net` onto a file, so it outlives the thread that made it (and
//! the kubelet: a restarted kubelet finds its pods' namespaces where it left them).
//!
//! Entering one is per thread (`setns(2)`), so work that must happen inside a pod's
//! namespace (starting its processes, an exec probe) runs on a short-lived thread of its
//! own that enters it, never on a thread the async runtime reuses.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{FsType, statfs};

/// The magic number of the `nsfs` file system a namespace file is on.
const NSFS_MAGIC: FsType = FsType(0x6e73_6673);

fn nix_io(what: &str, path: &Path, e: nix::Error) -> io::Error {
    io::Error::other(format!("{what} {}: {e}", path.display()))
}

/// Whether `path` is a live network namespace (an nsfs bind mount).
pub fn exists(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Makes a new, empty network namespace pinned at `path` (nothing when one is there).
pub fn create(path: &Path) -> io::Result<()> {
    if exists(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> io::Result<()> {
        // This thread alone moves to the new namespace; it ends right after.
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| nix_io("unshare(CLONE_NEWNET) for", &target, e))?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| nix_io("bind-mounting the namespace onto", &target, e))
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Removes the namespace pinned at `path` (nothing when there is none). Interfaces still
/// in it go with it once no process uses it.
pub fn remove(path: &Path) -> io::Result<()> {
    if exists(path) {
        umount2(path, MntFlags::MNT_DETACH).map_err(|e| nix_io("unmounting", path, e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `f` on a thread of its own inside the namespace at `path` (the calling thread's
/// namespace when `path` is `None`), with the caller's tokio runtime entered so that
/// `tokio::process` can spawn there. What `f` spawns is born in that namespace.
pub async fn run_in<T, F>(path: Option<&Path>, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let Some(path) = path else { return f() };
    let ns = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
    let path: PathBuf = path.to_path_buf();
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let result = setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| nix_io("entering", &path, e)).and_then(|()| f());
        let _ = tx.send(result);
    });
    rx.await.map_err(|_| io::Error::other("the namespace thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    }

    #[tokio::test]
    async fn a_namespace_is_made_entered_and_removed() {
        if !root() {
            eprintln!("skipped: making network namespaces needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ns");
        create(&path).expect("create");
        assert!(exists(&path));
        create(&path).expect("a second create finds it");
        let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("our namespace");
        let inside = run_in(Some(&path), || std::fs::read_link("/proc/thread-self/ns/net")).await.expect("enter");
        assert_ne!(ours, inside, "the closure ran in the new namespace");
        // A new namespace has only `lo`.
        let dev = run_in(Some(&path), || std::fs::read_to_string("/proc/thread-self/net/dev")).await.expect("dev");
        let links: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
        assert_eq!(links, ["lo"]);
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").expect("ours"), ours, "this thread did not move");
        remove(&path).expect("remove");
        assert!(!exists(&path) && !path.exists());
        remove(&path).expect("removing nothing is fine");
    }
}
