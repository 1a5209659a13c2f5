//! Replacing a file so that readers only ever see the old or the new one:
//! temporary file in the same directory, fsync, chmod 0755, check, rename,
//! fsync the directory.

use super::{InstallAction, InstallCniError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const MODE: u32 = 0o755;
/// Temporary files of ours older than this were left by a killed installer.
const STALE_AFTER: Duration = Duration::from_secs(600);

/// Make `dest` hold `bytes` with mode 0755. `check` runs on the finished
/// temporary file before it replaces anything; if it fails, `dest` is left as
/// it was and the temporary file is removed.
pub(super) fn install_atomically(
    bytes: &[u8],
    dest: &Path,
    check: impl FnOnce(&Path) -> Result<(), InstallCniError>,
) -> Result<InstallAction, InstallCniError> {
    let existed = match fs::symlink_metadata(dest) {
        Ok(meta) => {
            if meta.is_file()
                && meta.permissions().mode() & 0o7777 == MODE
                && meta.len() == bytes.len() as u64
                && read_installed(dest)? == bytes
            {
                return Ok(InstallAction::Unchanged);
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(InstallCniError::ReadInstalled {
                path: dest.to_path_buf(),
                source,
            })
        }
    };

    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temporaries(dir, &name);

    let (temp, file) = TempFile::create(dir, &name)?;
    temp.fill(file, bytes)?;
    check(&temp.path)?;
    temp.rename_to(dest)?;
    sync_dir(dir)?;
    Ok(if existed {
        InstallAction::Replaced
    } else {
        InstallAction::Created
    })
}

fn read_installed(path: &Path) -> Result<Vec<u8>, InstallCniError> {
    fs::read(path).map_err(|source| InstallCniError::ReadInstalled {
        path: path.to_path_buf(),
        source,
    })
}

fn temp_prefix(name: &str) -> String {
    format!(".{name}.install-")
}

/// A temporary file that removes itself unless renamed into place.
struct TempFile {
    path: PathBuf,
    renamed: bool,
}

impl TempFile {
    fn create(dir: &Path, name: &str) -> Result<(TempFile, File), InstallCniError> {
        // pid + counter: unique across concurrent installers on one node
        // (each pod has its own pid namespace, but the counter and
        // create_new still keep two writers from sharing a file).
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("{}{}-{n}", temp_prefix(name), std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o700)
                .open(&path)
            {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        renamed: false,
                    };
                    return Ok((temp, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(InstallCniError::Write {
                        step: "creating temporary file",
                        path,
                        source,
                    })
                }
            }
        }
    }

    /// Write, sync and chmod; the file is closed on return, which matters:
    /// exec'ing a file that is still open for writing fails with ETXTBSY.
    fn fill(&self, mut file: File, bytes: &[u8]) -> Result<(), InstallCniError> {
        let err = |step, source| InstallCniError::Write {
            step,
            path: self.path.clone(),
            source,
        };
        file.write_all(bytes).map_err(|e| err("writing", e))?;
        // An explicit chmod: the create mode is filtered by the umask.
        file.set_permissions(fs::Permissions::from_mode(MODE))
            .map_err(|e| err("setting mode 0755 on", e))?;
        file.sync_all().map_err(|e| err("syncing", e))?;
        Ok(())
    }

    fn rename_to(mut self, dest: &Path) -> Result<(), InstallCniError> {
        fs::rename(&self.path, dest).map_err(|source| InstallCniError::Rename {
            from: self.path.clone(),
            to: dest.to_path_buf(),
            source,
        })?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: the error that got us here is the one to report.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Make the rename durable: a crash right after must not bring back the old
/// directory entry.
fn sync_dir(dir: &Path) -> Result<(), InstallCniError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| InstallCniError::Write {
            step: "syncing directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Remove temporary files of ours that an installer killed mid-copy left
/// behind. Recent ones may belong to an installer running right now, so they
/// stay. Best effort: a failure here must not block the install.
fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_check_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sriov");
        fs::write(&dest, b"old").unwrap();
        let err = install_atomically(b"new", &dest, |p| {
            assert!(p.exists());
            Err(InstallCniError::SourceNotAFile { path: p.into() })
        })
        .unwrap_err();
        assert!(matches!(err, InstallCniError::SourceNotAFile { .. }));
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["sriov"]);
    }

    #[test]
    fn same_bytes_but_wrong_mode_is_reinstalled() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sriov");
        fs::write(&dest, b"same").unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644)).unwrap();
        let action = install_atomically(b"same", &dest, |_| Ok(())).unwrap();
        assert_eq!(action, InstallAction::Replaced);
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
        assert_eq!(
            install_atomically(b"same", &dest, |_| Ok(())).unwrap(),
            InstallAction::Unchanged
        );
    }

    #[test]
    fn stale_temporaries_are_swept_but_fresh_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".sriov.install-1-0");
        let fresh = dir.path().join(".sriov.install-2-0");
        let other = dir.path().join(".other.install-1-0");
        for p in [&stale, &fresh, &other] {
            fs::write(p, b"x").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        for p in [&stale, &other] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        remove_stale_temporaries(dir.path(), "sriov");
        assert_eq!(
            names(dir.path()),
            [".other.install-1-0", ".sriov.install-2-0"]
        );
    }
}
