//! Character devices a PCI function hands to a container: its uio device,
//! the RDMA char devices of its RDMA devices, and whether its IOMMU group
//! is a vfio no-IOMMU group. Read only for devices Allocate serves, never
//! during discovery, so they cost nothing on the scan path.

use super::device::{list_dir, read_optional};
use super::{SysfsError, SysfsRoot};
use crate::pci::PciAddress;

/// The RDMA char devices of one PCI function, as names under
/// `/dev/infiniband/` (`uverbs2`, `umad0`, `issm0`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RdmaCharDevices {
    pub uverbs: Vec<String>,
    pub umad: Vec<String>,
    pub issm: Vec<String>,
}

impl RdmaCharDevices {
    pub fn is_empty(&self) -> bool {
        self.uverbs.is_empty() && self.umad.is_empty() && self.issm.is_empty()
    }
}

/// The name `/sys/kernel/iommu_groups/<n>/name` holds for a group created
/// by vfio's no-IOMMU mode; its device node is `/dev/vfio/noiommu-<n>`.
pub const VFIO_NOIOMMU_GROUP_NAME: &str = "vfio-noiommu";

impl SysfsRoot {
    /// The function's uio devices (`uio/uioN`), sorted; empty when it is
    /// not bound to a uio driver.
    pub fn uio_devices(&self, address: PciAddress) -> Result<Vec<String>, SysfsError> {
        list_dir(&self.device_dir(address).join("uio"))
    }

    /// The kernel registers a function's RDMA char devices as class devices
    /// under its PCI directory: `infiniband_verbs/uverbsN` and
    /// `infiniband_mad/{umadN,issmN}`. Each appears as `/dev/infiniband/<name>`.
    pub fn rdma_char_devices(&self, address: PciAddress) -> Result<RdmaCharDevices, SysfsError> {
        let dir = self.device_dir(address);
        let uverbs = list_dir(&dir.join("infiniband_verbs"))?
            .into_iter()
            .filter(|n| n.starts_with("uverbs"))
            .collect();
        let mut umad = Vec::new();
        let mut issm = Vec::new();
        for name in list_dir(&dir.join("infiniband_mad"))? {
            if name.starts_with("umad") {
                umad.push(name);
            } else if name.starts_with("issm") {
                issm.push(name);
            }
        }
        Ok(RdmaCharDevices { uverbs, umad, issm })
    }

    /// True when IOMMU group `group` was created by vfio's no-IOMMU mode.
    pub fn is_vfio_noiommu_group(&self, group: u32) -> Result<bool, SysfsError> {
        let path = self
            .path()
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("name");
        Ok(read_optional(&path)?.as_deref() == Some(VFIO_NOIOMMU_GROUP_NAME))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs;

    #[test]
    fn reads_uio_rdma_and_noiommu_facts_from_a_built_tree() {
        let root = tempfile::tempdir().unwrap();
        let address: PciAddress = "0000:d8:00.2".parse().unwrap();
        let sysfs = SysfsRoot::new(root.path());
        let dir = sysfs.device_dir(address);
        fs::create_dir_all(dir.join("uio/uio3")).unwrap();
        fs::create_dir_all(dir.join("infiniband_verbs/uverbs2")).unwrap();
        fs::create_dir_all(dir.join("infiniband_mad/umad1")).unwrap();
        fs::create_dir_all(dir.join("infiniband_mad/issm1")).unwrap();
        fs::create_dir_all(root.path().join("kernel/iommu_groups/7")).unwrap();
        fs::write(
            root.path().join("kernel/iommu_groups/7/name"),
            "vfio-noiommu\n",
        )
        .unwrap();
        fs::create_dir_all(root.path().join("kernel/iommu_groups/8")).unwrap();

        assert_eq!(sysfs.uio_devices(address).unwrap(), vec!["uio3"]);
        assert_eq!(
            sysfs.rdma_char_devices(address).unwrap(),
            RdmaCharDevices {
                uverbs: vec!["uverbs2".into()],
                umad: vec!["umad1".into()],
                issm: vec!["issm1".into()],
            }
        );
        assert!(sysfs.is_vfio_noiommu_group(7).unwrap());
        assert!(!sysfs.is_vfio_noiommu_group(8).unwrap());
        assert!(!sysfs.is_vfio_noiommu_group(9).unwrap());
        let other: PciAddress = "0000:d8:00.3".parse().unwrap();
        assert!(sysfs.rdma_char_devices(other).unwrap().is_empty());
        assert!(sysfs.uio_devices(other).unwrap().is_empty());
    }
}
