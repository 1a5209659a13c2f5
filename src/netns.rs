//! Network namespaces: create/delete named ones the way `ip netns` does
//! (a bind mount of the namespace under /run/netns), and run code inside one.
//!
//! `setns(2)` changes the namespace of the calling *thread* only, so every
//! switch happens on a short-lived scoped thread: the caller's thread never
//! changes namespace, which keeps a multi-threaded runtime safe.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns {path}: {step}: {source}")]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netns {name:?}: invalid name (use letters, digits, '-', '_', '.')")]
    InvalidName { name: String },
    #[error("netns {path}: the namespace thread panicked")]
    ThreadPanicked { path: PathBuf },
}

fn io_error(path: &Path, step: &'static str, source: impl Into<io::Error>) -> NetnsError {
    NetnsError::Io {
        path: path.to_owned(),
        step,
        source: source.into(),
    }
}

/// The path of the named namespace `name`.
pub fn named_path(name: &str) -> Result<PathBuf, NetnsError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return Err(NetnsError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

/// Create the named namespace `name` (like `ip netns add`). Fails with
/// EEXIST if it exists already, so two users cannot share one by accident.
pub fn create_named(name: &str) -> Result<PathBuf, NetnsError> {
    let path = named_path(name)?;
    prepare_run_dir().map_err(|e| io_error(&path, "prepare /run/netns", e))?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| io_error(&path, "create mount point", e))?;
    let bind_result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), NetnsError> {
                // A fresh namespace for this thread only; the bind mount keeps
                // it alive after the thread exits.
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| io_error(&path, "unshare", e))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| io_error(&path, "bind mount", e))
            })
            .join()
            .unwrap_or_else(|_| Err(NetnsError::ThreadPanicked { path: path.clone() }))
    });
    if let Err(error) = bind_result {
        let _ = std::fs::remove_file(&path);
        return Err(error);
    }
    Ok(path)
}

/// Make /run/netns a shared mount point of its own, exactly as `ip netns add`
/// does, before mounting anything in it. Otherwise a later `ip netns add`
/// bind-mounts /run/netns over itself, our earlier namespace mounts end up
/// hidden beneath that bind, and their files can never be unlinked (EBUSY).
/// Shared propagation also lets containers that bind /run/netns see them.
fn prepare_run_dir() -> io::Result<()> {
    static ONCE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serialised = ONCE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir)?;
    let make_shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet; bind it onto itself, then share it
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            make_shared().map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Delete the named namespace (like `ip netns delete`). Returns false if it
/// did not exist. The namespace itself dies when its last user goes away;
/// links of kind veth die with it, physical netdevs return to the host.
pub fn delete_named(name: &str) -> Result<bool, NetnsError> {
    let path = named_path(name)?;
    delete_path(&path)
}

/// Unmount and remove a namespace mount point anywhere (e.g. a test's temp dir).
pub fn delete_path(path: &Path) -> Result<bool, NetnsError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(false);
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-created namespace); still remove the file
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(io_error(path, "unmount", e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_error(path, "remove mount point", e)),
    }
}

/// Open a namespace file (a named namespace, or /proc/<pid>/ns/net).
pub fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|e| io_error(path, "open", e))
}

/// Run `work` with the calling code inside the namespace at `path`, on a
/// scoped thread so the caller's own thread never switches namespace.
/// Sockets opened inside `work` stay bound to that namespace afterwards.
pub fn run_in<T, F>(path: &Path, work: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let netns = open(path)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| io_error(path, "setns", e))?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetnsError::ThreadPanicked {
                    path: path.to_owned(),
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_run_dir_are_rejected() {
        for bad in ["", ".", "..", "a/b", "../x", "sp ace"] {
            assert!(named_path(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(
            named_path("pod-1_a.b").unwrap(),
            Path::new("/run/netns/pod-1_a.b")
        );
    }
}
