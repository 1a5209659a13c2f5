//! Finding the node's CNI bin dir under the host root.
//!
//! The node's paths are resolved the way the node would resolve them: a
//! symlink with an absolute target (K3s's `data/current` is one) restarts at
//! the host root, not at this container's `/`.

use super::{BinDirKind, InstallCniError};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// K3s since the October 2024 releases (v1.28.15+k3s1, v1.29.10+k3s1,
/// v1.30.6+k3s1, v1.31.2+k3s1): fixed across upgrades.
pub const K3S_BIN_DIR: &str = "/var/lib/rancher/k3s/data/cni";
/// Older K3s: a symlink to `data/<hash>`, whose `bin` holds the CNI plugins.
pub const K3S_LEGACY_CURRENT: &str = "/var/lib/rancher/k3s/data/current";
/// Everyone else.
pub const GENERIC_BIN_DIR: &str = "/opt/cni/bin";

/// Symlink hops allowed while resolving one path (the kernel's limit).
const MAX_HOPS: usize = 40;

pub(super) fn locate(
    explicit: Option<&Path>,
    root: &Path,
) -> Result<(PathBuf, BinDirKind), InstallCniError> {
    if let Some(dir) = explicit {
        if !dir.is_dir() {
            return Err(InstallCniError::ExplicitDirMissing {
                path: dir.to_path_buf(),
            });
        }
        return Ok((dir.to_path_buf(), BinDirKind::Explicit));
    }

    if let Some(dir) = existing_dir(root, Path::new(K3S_BIN_DIR))? {
        return Ok((dir, BinDirKind::K3s));
    }

    let current = Path::new(K3S_LEGACY_CURRENT);
    if is_symlink_under(root, current)? {
        // From here on this is an older K3s node: falling through to
        // /opt/cni/bin (which may exist for other reasons) would install
        // where K3s's containerd never looks.
        let bin = current.join("bin");
        let Some(bin_dir) = existing_dir(root, &bin)? else {
            return Err(InstallCniError::K3sReleaseWithoutBin {
                link: under(root, current),
                bin_dir: under(root, &bin),
            });
        };
        let release_dir = bin_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| bin_dir.clone());
        return Ok((bin_dir, BinDirKind::K3sLegacy { release_dir }));
    }

    if let Some(dir) = existing_dir(root, Path::new(GENERIC_BIN_DIR))? {
        return Ok((dir, BinDirKind::Generic));
    }

    Err(InstallCniError::NoBinDir {
        root: root.to_path_buf(),
        tried: vec![
            under(root, Path::new(K3S_BIN_DIR)),
            under(root, &current.join("bin")),
            under(root, Path::new(GENERIC_BIN_DIR)),
        ],
    })
}

/// `host_path` resolved under `root`, if it exists and is a directory.
fn existing_dir(root: &Path, host_path: &Path) -> Result<Option<PathBuf>, InstallCniError> {
    match resolve_in_root(root, host_path) {
        Ok(path) if path.is_dir() => Ok(Some(path)),
        Ok(_) => Ok(None),
        Err(e) if is_absent(&e) => Ok(None),
        Err(source) => Err(InstallCniError::Resolve {
            root: root.to_path_buf(),
            path: host_path.to_path_buf(),
            source,
        }),
    }
}

/// Whether `host_path` itself (its last component unresolved) is a symlink.
fn is_symlink_under(root: &Path, host_path: &Path) -> Result<bool, InstallCniError> {
    let parent = host_path.parent().unwrap_or(Path::new("/"));
    let Some(name) = host_path.file_name() else {
        return Ok(false);
    };
    let resolve_err = |source| InstallCniError::Resolve {
        root: root.to_path_buf(),
        path: host_path.to_path_buf(),
        source,
    };
    let parent = match resolve_in_root(root, parent) {
        Ok(parent) => parent,
        Err(e) if is_absent(&e) => return Ok(false),
        Err(e) => return Err(resolve_err(e)),
    };
    match std::fs::symlink_metadata(parent.join(name)) {
        Ok(meta) => Ok(meta.file_type().is_symlink()),
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(resolve_err(e)),
    }
}

/// A missing component, or a file where a directory was expected.
fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// `host_path` joined under `root` without resolving anything (for messages).
fn under(root: &Path, host_path: &Path) -> PathBuf {
    root.join(host_path.strip_prefix("/").unwrap_or(host_path))
}

/// Resolve `host_path` as the node sees it, inside `root`: every symlink met on
/// the way is followed, absolute targets restart at `root`, and `..` never
/// climbs above it. Fails with NotFound when a component is missing.
pub(super) fn resolve_in_root(root: &Path, host_path: &Path) -> io::Result<PathBuf> {
    let mut pending = components(host_path);
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        let meta = std::fs::symlink_metadata(&candidate)?;
        if !meta.file_type().is_symlink() {
            resolved.push(part);
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Err(io::Error::other(format!(
                "too many levels of symbolic links at {}",
                candidate.display()
            )));
        }
        let target = std::fs::read_link(&candidate)?;
        if target.is_absolute() {
            resolved.clear();
        }
        let mut next = components(&target);
        next.extend(pending);
        pending = next;
    }
    Ok(root.join(resolved))
}

/// Normal components and `..`; the root and `.` carry no step.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_links_restart_at_the_root_and_dotdot_stays_inside() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real/dir", r.join("real/up")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/abs/dir")).unwrap(),
            r.join("real/dir")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/real/up")).unwrap(),
            r.join("real/dir")
        );
        let missing = resolve_in_root(r, Path::new("/abs/nope")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn symlink_loops_end_with_an_error() {
        let root = tempfile::tempdir().unwrap();
        symlink("/b", root.path().join("a")).unwrap();
        symlink("/a", root.path().join("b")).unwrap();
        let err = resolve_in_root(root.path(), Path::new("/a")).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }
}
