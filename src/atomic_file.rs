//! Replacing a file so that readers see the old or the new content, never
//! half of it: write a temp file beside it, then rename over it (which also
//! replaces a read-only file). Used for the CNI plugin's state and
//! device-info files and the daemon's device-info files and CDI specs.
//!
//! No fsync, on purpose: a killed process loses nothing that was written,
//! and every file here describes state that a power loss wipes anyway (pod
//! network namespaces, kubelet registrations); syncing would cost more than
//! the CNI plugin's own work per ADD. `mode` is subject to the umask.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `.<name>.<pid>.tmp` beside `path`: hidden, and unique per writer process.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `bytes` to `path` with `mode`, atomically; the temp file is
/// removed if anything fails.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(bytes)?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_even_a_read_only_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        write(&path, b"old", 0o444).unwrap();
        write(&path, b"new", 0o444).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o222,
            0
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing_dir = dir.path().join("absent/device.json");
        assert!(write(&missing_dir, b"x", 0o600).is_err());
    }
}
