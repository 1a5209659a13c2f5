//! A node's DRA pools as the DRA tests serve them: a netdev pool (`iavf`,
//! two VFs) and a DPDK pool (`vfio-pci`, one VF), served as the device
//! plugin serves them, on no real device.

use sriov_rs::config;
use sriov_rs::deviceplugin::served::{serve_pool, NodeFacts, ServedPool};
use sriov_rs::pool::{Pool, PoolDevice};
use sriov_rs::sysfs::{RdmaCharDevices, SysfsError};
use std::error::Error;
use std::sync::Arc;

/// The DRA pools of `served_pools` on node `worker-1`.
pub const NETDEV_POOL: &str = "worker-1/intel.com/sriov-net";
pub const VFIO_POOL: &str = "worker-1/intel.com/sriov-dpdk";

/// No uio, RDMA or no-IOMMU devices; `/dev` has nothing shared.
pub struct NoExtras;

impl NodeFacts for NoExtras {
    fn uio_devices(&self, _id: &str) -> Result<Vec<String>, SysfsError> {
        Ok(Vec::new())
    }
    fn rdma_char_devices(&self, _id: &str) -> Result<RdmaCharDevices, SysfsError> {
        Ok(RdmaCharDevices::default())
    }
    fn is_noiommu_group(&self, _group: u32) -> Result<bool, SysfsError> {
        Ok(false)
    }
    fn dev_node_exists(&self, _path: &str) -> bool {
        false
    }
}

pub fn vf(id: &str, driver: &str, group: u32) -> PoolDevice {
    PoolDevice {
        id: id.into(),
        pf_name: Some("ens1f0".into()),
        pf_pci_address: Some("0000:3b:00.0".into()),
        vf_index: Some(0),
        vendor: "8086".into(),
        device: "154c".into(),
        driver: Some(driver.into()),
        numa_node: Some(0),
        iommu_group: Some(group),
        netdev: None,
        link_type: Some("ether".into()),
        rdma_devices: vec![],
        device_nodes: vec![],
        selector: 0,
        pci_address: id.into(),
        aux_type: None,
        vdpa: None,
        pkey: None,
    }
}

/// A netdev pool (`iavf`) and a DPDK pool (`vfio-pci`), served as the
/// device plugin serves them.
pub fn served_pools() -> Result<Vec<Arc<ServedPool>>, Box<dyn Error>> {
    let loaded = config::parse(
        r#"{"resourceList": [
            {"resourceName": "sriov_net", "selectors": {"drivers": ["iavf"]}},
            {"resourceName": "sriov_dpdk", "selectors": {"drivers": ["vfio-pci"]}}
        ]}"#,
        "intel.com",
    )?;
    let pools = [
        Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices: vec![
                vf("0000:3b:02.0", "iavf", 40),
                vf("0000:3b:02.1", "iavf", 41),
            ],
        },
        Pool {
            resource_name: "intel.com/sriov_dpdk".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 1,
            devices: vec![vf("0000:3b:03.0", "vfio-pci", 50)],
        },
    ];
    Ok(pools
        .iter()
        .map(|p| {
            Arc::new(serve_pool(
                p,
                &loaded.config.resources[p.resource],
                &NoExtras,
            ))
        })
        .collect())
}
