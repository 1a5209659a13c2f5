//! Reading a sysfs tree (simulated or real) the way the tests look at it.

use std::path::{Path, PathBuf};

/// An attribute's text without its newline.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim_end()
        .to_owned()
}

/// `bus/pci/devices/<bdf>` under `root`.
pub fn device(root: &Path, bdf: &str) -> PathBuf {
    root.join("bus/pci/devices").join(bdf)
}

/// The driver a function is bound to, from its `driver` link.
pub fn driver_of(root: &Path, bdf: &str) -> Option<String> {
    std::fs::read_link(device(root, bdf).join("driver"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// A directory's names, sorted; empty when it does not exist.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}
