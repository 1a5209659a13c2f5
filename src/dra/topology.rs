//! The one fact slices need from the machine beyond the pools: which PCIe
//! root complex each function sits under (`resource.kubernetes.io/pcieRoot`,
//! what `matchAttribute` aligns a VF and a GPU on).

use crate::pci::PciAddress;
use crate::pool::Pool;
use crate::sysfs::SysfsRoot;
use std::collections::HashMap;

/// PCI address → PCIe root for every function of `pools`. A function
/// whose root cannot be read is left out with a warning (its devices are
/// published without the attribute), never fatal.
pub fn pcie_roots(sysfs: &SysfsRoot, pools: &[&Pool]) -> HashMap<String, String> {
    let mut roots = HashMap::new();
    for device in pools.iter().flat_map(|p| &p.devices) {
        if roots.contains_key(device.pci_address.as_str()) {
            continue;
        }
        let Ok(address) = device.pci_address.parse::<PciAddress>() else {
            tracing::warn!(device = %device.id, address = %device.pci_address, "not a PCI address: no pcieRoot");
            continue;
        };
        match sysfs.pcie_root(address) {
            Ok(Some(root)) => {
                roots.insert(device.pci_address.to_string(), root);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(device = %device.id, %error, "cannot read the PCIe root"),
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pool::PoolDevice;

    fn device(address: &str) -> PoolDevice {
        PoolDevice {
            id: address.into(),
            pf_name: None,
            pf_pci_address: None,
            vf_index: None,
            vendor: Default::default(),
            device: Default::default(),
            driver: None,
            numa_node: None,
            iommu_group: None,
            netdev: None,
            link_type: None,
            rdma_devices: vec![],
            device_nodes: vec![],
            selector: 0,
            pci_address: address.into(),
            aux_type: None,
            vdpa: None,
            pkey: None,
        }
    }

    #[test]
    fn roots_of_readable_functions_and_nothing_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let bus = dir.path().join("bus/pci/devices");
        std::fs::create_dir_all(&bus).unwrap();
        for (root, bridge, function) in [
            ("pci0000:3a", "0000:3a:00.0", "0000:3b:02.0"),
            ("pci0000:d7", "0000:d7:00.0", "0000:d8:02.0"),
        ] {
            let path = format!("devices/{root}/{bridge}/{function}");
            std::fs::create_dir_all(dir.path().join(&path)).unwrap();
            std::os::unix::fs::symlink(format!("../../../{path}"), bus.join(function)).unwrap();
        }
        let pool = Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices: vec![
                device("0000:3b:02.0"),
                device("0000:d8:02.0"),
                device("0000:99:00.0"), // gone from sysfs
                device("not-an-address"),
            ],
        };
        let roots = pcie_roots(&SysfsRoot::new(dir.path()), &[&pool]);
        assert_eq!(
            roots,
            HashMap::from([
                ("0000:3b:02.0".to_string(), "pci0000:3a".to_string()),
                ("0000:d8:02.0".to_string(), "pci0000:d7".to_string()),
            ])
        );
    }
}
