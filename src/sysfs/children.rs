//! Which netdevs, RDMA devices, auxiliary devices and vDPA devices belong to
//! which device, read for the whole node at once.
//!
//! sysfs lists every device of a kind in one directory (`class/net`,
//! `class/infiniband`, `bus/auxiliary/devices`, `bus/vdpa/devices`) as links
//! into the device tree, and each link's target names the device it sits
//! under: `../../devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0/net/ens1f0v0`.
//! One readlink per netdev replaces listing `net/` (and `infiniband/`, and
//! the device directory for aux and vDPA children) of every PCI function,
//! and gives the same answer: the kernel puts a netdev under exactly the
//! device it links to.

use super::attr::{list_dir, resolve_link, DirHandle};
use super::runs::{in_runs, threads_for};
use super::SysfsError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One device found through a class or bus listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Child {
    pub name: String,
    /// Its directory in the device tree, resolved.
    pub dir: PathBuf,
}

/// Children keyed by the name of the device directory they sit under
/// (a PCI address, or an aux device name such as `mlx5_core.sf.2`); each
/// list sorted by name, as a directory listing would be.
#[derive(Debug, Default)]
pub(crate) struct ChildMap(HashMap<String, Vec<Child>>);

impl ChildMap {
    /// Read `listing` (e.g. `<root>/class/net`). `group` is the directory
    /// the kernel puts these children in under their device (`net`,
    /// `infiniband`), or None when they sit directly under it (aux and vDPA
    /// devices). Links that point elsewhere (virtual netdevs) are skipped;
    /// a missing listing is an empty map.
    /// (a link per device: with many, the links are read in runs side by
    /// side, `max_threads` as in [`super::ScanOptions`]).
    pub fn read(
        listing: &Path,
        group: Option<&str>,
        max_threads: usize,
    ) -> Result<ChildMap, SysfsError> {
        let names = list_dir(listing)?;
        if names.is_empty() {
            return Ok(ChildMap::default());
        }
        let dir = DirHandle::open(listing)?;
        let threads = threads_for(names.len(), max_threads);
        let targets = in_runs(&names, threads, 0, |run, slots| {
            for (name, slot) in run.iter().zip(slots) {
                *slot = Some(dir.attrs().read_link(name));
            }
        });
        let mut map: HashMap<String, Vec<Child>> = HashMap::new();
        for (name, target) in names.into_iter().zip(targets) {
            let Some(target) = target.transpose()?.flatten() else {
                continue; // gone since the listing
            };
            let dir = resolve_link(listing, &target);
            let Some(parent) = parent_name(&dir, group) else {
                continue;
            };
            // most devices have one child (a VF's netdev): room for one, not
            // the four a first push would make
            map.entry(parent)
                .or_insert_with(|| Vec::with_capacity(1))
                .push(Child { name, dir });
        }
        for children in map.values_mut() {
            children.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(ChildMap(map))
    }

    pub fn of(&self, parent: &str) -> &[Child] {
        self.0.get(parent).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn names_of(&self, parent: &str) -> Vec<String> {
        self.of(parent).iter().map(|c| c.name.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Child])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// `…/<parent>/<group>/<name>` or `…/<parent>/<name>` → `<parent>`.
fn parent_name(dir: &Path, group: Option<&str>) -> Option<String> {
    let mut up = dir.parent()?;
    if let Some(group) = group {
        if up.file_name()? != group {
            return None;
        }
        up = up.parent()?;
    }
    Some(up.file_name()?.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn links_are_grouped_under_the_device_they_point_into() {
        let root = tempfile::tempdir().unwrap();
        let class = root.path().join("class/net");
        std::fs::create_dir_all(&class).unwrap();
        for (name, target) in [
            (
                "ens1f0v1",
                "../../devices/pci0000:3a/0000:3a:00.0/0000:3b:01.1/net/ens1f0v1",
            ),
            (
                "ens1f0v0",
                "../../devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0/net/ens1f0v0",
            ),
            ("lo", "../../devices/virtual/net/lo"),
            (
                "en3f0pf0sf2",
                "../../devices/pci0000:00/0000:00:02.0/0000:03:00.0/mlx5_core.sf.2/net/en3f0pf0sf2",
            ),
            ("odd", "../../devices/pci0000:00/0000:03:00.0/queues/odd"),
        ] {
            std::os::unix::fs::symlink(target, class.join(name)).unwrap();
        }
        let map = ChildMap::read(&class, Some("net"), 1).unwrap();
        assert_eq!(map.names_of("0000:3b:01.0"), ["ens1f0v0"]);
        assert_eq!(
            map.of("0000:3b:01.1")[0].dir,
            root.path()
                .join("devices/pci0000:3a/0000:3a:00.0/0000:3b:01.1/net/ens1f0v1")
        );
        assert_eq!(map.names_of("mlx5_core.sf.2"), ["en3f0pf0sf2"]);
        assert_eq!(map.names_of("virtual"), ["lo"]);
        assert!(map.names_of("0000:03:00.0").is_empty(), "not under net/");
        let none = ChildMap::read(&root.path().join("class/absent"), None, 0).unwrap();
        assert!(none.of("0000:3b:01.0").is_empty());
    }
}
