//! The files the daemon keeps in step with its pools: device-info files for
//! the CNI (`/var/run/k8s.cni.cncf.io/devinfo/dp/`) and CDI specs
//! (`/var/run/cdi/`). Both are written atomically (temp file + rename) so a
//! reader never sees half a file, and rewritten whenever a pool changes so
//! they are never stale.

use super::served::ServedPool;
use serde_json::json;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

/// A file operation that failed, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct FileError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn file_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FileError + 'a {
    move |source| FileError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Write `bytes` to `path` with `mode` atomically, creating the directory.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(file_error("create directory", dir))?;
    write_in_existing_dir(path, bytes, mode)
}

/// [`write_atomically`] into a directory known to exist (one check per
/// batch of device-info files rather than one per file).
fn write_in_existing_dir(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    crate::atomic_file::write(path, bytes, mode).map_err(file_error("write", path))
}

/// Remove a file; a missing file is fine.
pub fn remove_if_present(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(file_error("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Mode of device-info files, as upstream (readers only).
pub const DEVICE_INFO_MODE: u32 = 0o444;

/// `<dir>/<prefix>-<name>-<id>-device.json` (the resource name with `/` → `-`).
pub fn device_info_path(dir: &Path, resource_name: &str, id: &str) -> PathBuf {
    dir.join(format!(
        "{}-{id}-device.json",
        resource_name.replace('/', "-")
    ))
}

/// The device-info file (spec 1.1.0) of every netDevice device of `pool`.
pub fn write_device_info(dir: &Path, pool: &ServedPool) -> Result<(), FileError> {
    write_device_info_for(dir, pool, pool.device_ids())
}

/// The device-info files of the devices `ids` of `pool` that have one
/// (netDevice pools); IDs not in the pool are skipped.
pub fn write_device_info_for<'a>(
    dir: &Path,
    pool: &ServedPool,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), FileError> {
    let mut dir_ready = false;
    for id in ids {
        if let Some(info) = pool.device(id).and_then(|d| d.device_info.as_ref()) {
            if !dir_ready {
                std::fs::create_dir_all(dir).map_err(file_error("create directory", dir))?;
                dir_ready = true;
            }
            let path = device_info_path(dir, &pool.resource_name, id);
            write_in_existing_dir(&path, info.file_content().as_bytes(), DEVICE_INFO_MODE)?;
        }
    }
    Ok(())
}

/// Remove the device-info files of `ids` in `pool`, keeping going on errors
/// and returning them all.
pub fn remove_device_info<'a>(
    dir: &Path,
    resource_name: &str,
    ids: impl Iterator<Item = &'a str>,
) -> Vec<FileError> {
    ids.filter_map(|id| remove_if_present(&device_info_path(dir, resource_name, id)).err())
        .collect()
}

/// Device-info files an earlier run left for this pool's resource, of
/// devices no longer in it (upstream deletes them before listening). Only
/// names that are exactly `<prefix>-<name>-<BDF>-device.json` count, so a
/// pool named `sriov` never touches the files of a pool named `sriov-dpdk`.
pub fn remove_stale_device_info(dir: &Path, pool: &ServedPool) -> Vec<FileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![file_error("list", dir)(e)],
    };
    let prefix = format!("{}-", pool.resource_name.replace('/', "-"));
    let current: HashSet<&str> = pool.device_ids().collect();
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix("-device.json"));
            id.is_some_and(|id| {
                id.parse::<crate::pci::PciAddress>().is_ok() && !current.contains(id)
            })
        })
        .filter_map(|entry| remove_if_present(&entry.path()).err())
        .collect()
}

/// Bring the device-info files from `old` to `new`: rewrite the files that
/// exist of devices still in the pool (their facts may have changed),
/// remove the files of devices that left. Files are written at Allocate
/// (and at start for devices pods hold), so a device without one needs
/// none yet.
pub fn sync_device_info(
    dir: &Path,
    old: Option<&ServedPool>,
    new: &ServedPool,
) -> Result<(), FileError> {
    let present = new
        .device_ids()
        .filter(|id| device_info_path(dir, &new.resource_name, id).exists());
    write_device_info_for(dir, new, present)?;
    if let Some(old) = old {
        let current: HashSet<&str> = new.device_ids().collect();
        let gone = old.device_ids().filter(|id| !current.contains(id));
        if let Some(error) = remove_device_info(dir, &old.resource_name, gone)
            .into_iter()
            .next()
        {
            return Err(error);
        }
    }
    Ok(())
}

/// Prefix of our CDI spec files; every file with it is ours to delete.
pub const CDI_SPEC_PREFIX: &str = "sriov-dp-";

/// CDI spec version we write: 0.5.0 is the oldest with everything we use and
/// is read by containerd >= 1.7 and CRI-O.
pub const CDI_VERSION: &str = "0.5.0";

pub fn cdi_spec_path(dir: &Path, pool: &ServedPool) -> PathBuf {
    dir.join(format!(
        "{CDI_SPEC_PREFIX}{}_{}.json",
        pool.prefix, pool.name
    ))
}

/// The CDI spec of a pool: one CDI device per device with nodes. A pool
/// without any (kernel netdevs only) has no spec, and its file is removed.
pub fn write_cdi_spec(dir: &Path, pool: &ServedPool) -> Result<(), FileError> {
    let devices: Vec<serde_json::Value> = pool
        .devices
        .iter()
        .filter(|d| !d.nodes.is_empty())
        .map(|d| {
            let nodes: Vec<serde_json::Value> = d
                .nodes
                .iter()
                .map(|n| json!({"path": n.container_path, "hostPath": n.host_path, "permissions": "rw"}))
                .collect();
            json!({"name": d.id, "containerEdits": {"deviceNodes": nodes}})
        })
        .collect();
    let path = cdi_spec_path(dir, pool);
    if devices.is_empty() {
        return remove_if_present(&path);
    }
    let spec = json!({"cdiVersion": CDI_VERSION, "kind": pool.cdi_kind(), "devices": devices});
    write_atomically(&path, spec.to_string().as_bytes(), 0o644)
}

/// Delete every `sriov-dp-*` spec in `dir` (at start-up and shutdown, as upstream).
pub fn remove_cdi_specs(dir: &Path) -> Vec<FileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![file_error("list", dir)(e)],
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(CDI_SPEC_PREFIX))
        .filter_map(|e| remove_if_present(&e.path()).err())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::served::{
        test_pool, DeviceInfo, NodeSpec, PciDeviceInfo, ServedDevice, VdpaDeviceInfo,
    };
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn device(id: &str, nodes: Vec<NodeSpec>) -> ServedDevice {
        ServedDevice {
            id: id.into(),
            healthy: true,
            links: Default::default(),
            numa_node: None,
            pf: Some("0000:3b:00.0".into()),
            vf_index: Some(0),
            nodes,
            info: Default::default(),
            device_info: Some(DeviceInfo::Pci(PciDeviceInfo {
                pci_address: id.into(),
                pf_pci_address: Some("0000:3b:00.0".into()),
                vhost_net: None,
                rdma_device: None,
            })),
        }
    }

    #[test]
    fn device_info_files_follow_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let old = test_pool(
            vec![
                device("0000:3b:01.0", vec![]),
                device("0000:3b:01.1", vec![]),
            ],
            false,
        );
        write_device_info(dir.path(), &old).unwrap();
        let path = dir
            .path()
            .join("intel.com-sriov_net-0000:3b:01.0-device.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:3b:01.0","pf-pci-address":"0000:3b:00.0"}})
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        // rewriting a read-only file works; a device that left loses its file
        let new = test_pool(vec![device("0000:3b:01.1", vec![])], false);
        sync_device_info(dir.path(), Some(&old), &new).unwrap();
        assert!(!path.exists());
        assert!(dir
            .path()
            .join("intel.com-sriov_net-0000:3b:01.1-device.json")
            .exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp files left: {names:?}");
    }

    #[test]
    fn device_info_files_have_sorted_keys_and_no_whitespace() {
        // the exact bytes earlier releases wrote (keys sorted, compact), so
        // readers comparing files see no change
        let pci = DeviceInfo::Pci(PciDeviceInfo {
            pci_address: "0000:3b:01.0".into(),
            pf_pci_address: Some("0000:3b:00.0".into()),
            vhost_net: Some("/dev/vhost-net"),
            rdma_device: Some("mlx5_2".into()),
        });
        assert_eq!(
            pci.file_content(),
            r#"{"pci":{"pci-address":"0000:3b:01.0","pf-pci-address":"0000:3b:00.0","rdma-device":"mlx5_2","vhost-net":"/dev/vhost-net"},"type":"pci","version":"1.1.0"}"#
        );
        let vdpa = DeviceInfo::Vdpa(Box::new(VdpaDeviceInfo {
            parent_device: "vdpa0".into(),
            driver: "vhost".into(),
            path: Some("/dev/vhost-vdpa-0".into()),
            pci_address: "0000:3b:01.0".into(),
            pf_pci_address: None,
        }));
        assert_eq!(
            vdpa.file_content(),
            r#"{"type":"vdpa","vdpa":{"driver":"vhost","parent-device":"vdpa0","path":"/dev/vhost-vdpa-0","pci-address":"0000:3b:01.0"},"version":"1.1.0"}"#
        );
    }

    #[test]
    fn stale_files_of_the_pool_go_and_other_pools_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "intel.com-sriov_net-0000:3b:01.7-device.json", // stale, ours
            "intel.com-sriov_net-0000:3b:01.1-device.json", // current, ours
            "intel.com-sriov_net-dpdk-0000:3b:01.7-device.json", // pool sriov_net-dpdk
            "intel.com-sriov_net-notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let pool = test_pool(vec![device("0000:3b:01.1", vec![])], false);
        assert!(remove_stale_device_info(dir.path(), &pool).is_empty());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "intel.com-sriov_net-0000:3b:01.1-device.json",
                "intel.com-sriov_net-dpdk-0000:3b:01.7-device.json",
                "intel.com-sriov_net-notes.txt",
            ]
        );
    }

    #[test]
    fn cdi_spec_lists_devices_with_nodes_and_goes_away_without_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sriov-dp-stale.json"), "{}").unwrap();
        std::fs::write(dir.path().join("other-vendor.json"), "{}").unwrap();
        assert!(remove_cdi_specs(dir.path()).is_empty());
        assert!(!dir.path().join("sriov-dp-stale.json").exists());
        assert!(dir.path().join("other-vendor.json").exists());

        let vfio = NodeSpec {
            host_path: "/dev/vfio/noiommu-41".into(),
            container_path: "/dev/vfio/41".into(),
        };
        let pool = test_pool(
            vec![
                device("0000:3b:01.0", vec![vfio]),
                device("0000:3b:01.1", vec![]),
            ],
            false,
        );
        write_cdi_spec(dir.path(), &pool).unwrap();
        let path = dir.path().join("sriov-dp-intel.com_sriov_net.json");
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            spec,
            json!({"cdiVersion":"0.5.0","kind":"intel.com/net-pci","devices":[
                {"name":"0000:3b:01.0","containerEdits":{"deviceNodes":[
                    {"path":"/dev/vfio/41","hostPath":"/dev/vfio/noiommu-41","permissions":"rw"}]}}]})
        );
        let netdevs_only = test_pool(vec![device("0000:3b:01.1", vec![])], false);
        write_cdi_spec(dir.path(), &netdevs_only).unwrap();
        assert!(!path.exists());
    }
}
