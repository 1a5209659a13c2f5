//! Resource pools: discovered devices assigned to the config's resources,
//! as sriov-network-device-plugin would assign them. The result is plain
//! data the kubelet server and `sriovctl inventory` both use.

pub mod discovery;

pub use discovery::{discover, discover_for, discover_with, scan_options, Discovered, Exclusion};

use crate::config::{assign_pools, AllocationPolicy, Config, DeviceType};
use crate::pci::PciAddress;
use serde::Serialize;

/// One device of a pool, with what Allocate and ListAndWatch need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDevice {
    /// The kubelet device ID: the PCI address.
    pub id: String,
    pub pf_name: Option<String>,
    pub pf_pci_address: Option<String>,
    pub vf_index: Option<u32>,
    /// PCI vendor and device ID, lower-case hex without `0x` (`8086`,
    /// `154c`); an aux device's are its parent's. For DRA's attributes; left
    /// out of `sriovctl inventory`'s output, which predates them.
    #[serde(skip)]
    pub vendor: String,
    #[serde(skip)]
    pub device: String,
    pub driver: Option<String>,
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
    pub netdev: Option<String>,
    /// Link type of its netdev (its PF's for a VF without one). Filled by
    /// `discover`; by `discover_for` only when a `linkTypes` or `pKeys`
    /// selector or a DRA pool needs it.
    pub link_type: Option<String>,
    pub rdma_devices: Vec<String>,
    /// Host device nodes Allocate hands out (vfio group, uio, ...).
    pub device_nodes: Vec<String>,
    /// Which selector object of the resource took the device.
    #[serde(skip)]
    pub selector: usize,
    /// The PCI function the device is, or, for an aux device (whose `id`
    /// is its aux name), the function it sits on.
    pub pci_address: String,
    /// `sf` for an aux device; None for a PCI function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux_type: Option<String>,
    /// The function's vDPA device, when it has one. Boxed: few devices
    /// have one, and every device of a pool would otherwise carry the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vdpa: Option<Box<PoolVdpa>>,
    /// InfiniBand P_Key at index 0 (`0x7fff`), when read (infiniband links
    /// and a config with `pKeys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkey: Option<String>,
}

/// A vDPA device as Allocate and the device-info file need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolVdpa {
    /// `vdpa0`
    pub name: String,
    /// `vhost_vdpa` or `virtio_vdpa`; None when unbound.
    pub driver: Option<String>,
    /// `vhost` or `virtio`, as `vdpaType` spells them.
    pub vdpa_type: Option<&'static str>,
    /// `/dev/vhost-vdpa-N` for a vhost-vdpa device.
    pub device_node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    /// `<prefix>/<name>`
    pub resource_name: String,
    pub device_type: &'static str,
    pub exclude_topology: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<&'static str>,
    /// Index of the resource in the config.
    #[serde(skip)]
    pub resource: usize,
    pub devices: Vec<PoolDevice>,
}

/// A device left out of netDevice pools, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub address: PciAddress,
    pub reason: Exclusion,
}

/// Discovery's verdict for the whole node.
#[derive(Debug, Clone, Default)]
pub struct Pools {
    pub pools: Vec<Pool>,
    pub excluded: Vec<Excluded>,
}

/// Host device nodes for a function bound to a userspace driver.
fn device_nodes(device: &Discovered) -> Vec<String> {
    if device.aux.is_some() {
        return Vec::new(); // the parent's driver does not make the SF a vfio device
    }
    match (device.device.driver.as_deref(), device.device.iommu_group) {
        (Some("vfio-pci"), Some(group)) => {
            vec!["/dev/vfio/vfio".into(), format!("/dev/vfio/{group}")]
        }
        _ => Vec::new(),
    }
}

/// Assign devices to pools in config order, upstream's way: netDevice pools
/// never take excluded devices (PFs with VFs, default-route netdevs);
/// accelerator and aux pools are not subject to those rules.
pub fn build(config: &Config, devices: &[Discovered], default_route_netdevs: &[String]) -> Pools {
    let excluded: Vec<Excluded> = devices
        .iter()
        .filter_map(|device| {
            let reason = device.exclusion(default_route_netdevs)?;
            Some(Excluded {
                address: device.device.address,
                reason,
            })
        })
        .collect();
    // Resource by resource in config order, each seeing the devices no
    // earlier resource took; excluded devices are hidden from netDevice
    // resources only.
    let facts_all: Vec<&crate::config::DeviceFacts> = devices.iter().map(|d| &d.facts).collect();
    let excluded_ids: Vec<String> = excluded.iter().map(|e| e.address.to_string()).collect();
    let mut per_resource: Vec<Vec<(usize, usize)>> = vec![Vec::new(); config.resources.len()];
    let mut taken = std::collections::HashSet::new();
    for (r, resource) in config.resources.iter().enumerate() {
        let visible: Vec<usize> = (0..devices.len())
            .filter(|&d| {
                resource.device_type != DeviceType::NetDevice
                    || !excluded_ids.contains(&facts_all[d].id)
            })
            .filter(|&d| !taken.contains(&d))
            .collect();
        let subset: Vec<&crate::config::DeviceFacts> =
            visible.iter().map(|&d| facts_all[d]).collect();
        let single = std::slice::from_ref(resource);
        for assignment in assign_pools(single, &subset) {
            for member in assignment.members {
                let d = visible[member.device];
                taken.insert(d);
                per_resource[r].push((d, member.selector));
            }
        }
    }
    let mut pools = Vec::new();
    for (r, members) in per_resource.into_iter().enumerate() {
        if members.is_empty() {
            continue; // upstream starts no server for an empty pool
        }
        let resource = &config.resources[r];
        let devices = members
            .into_iter()
            .map(|(d, selector)| {
                let found = &devices[d];
                PoolDevice {
                    id: found.facts.id.clone(),
                    pf_name: found.facts.pf_name.clone(),
                    pf_pci_address: found.facts.pf_pci_address.clone(),
                    vf_index: found.facts.vf_index,
                    vendor: found.device.vendor.clone(),
                    device: found.device.device.clone(),
                    driver: found.device.driver.clone(),
                    numa_node: found.device.numa_node,
                    iommu_group: found.device.iommu_group,
                    netdev: found.netdev.clone(),
                    link_type: found.facts.link_type.clone(),
                    rdma_devices: found.rdma_devices().to_vec(),
                    device_nodes: device_nodes(found),
                    selector,
                    pci_address: found.facts.pci_address.clone(),
                    aux_type: found.facts.aux_type.clone(),
                    vdpa: found.vdpa.as_ref().map(|v| {
                        Box::new(PoolVdpa {
                            name: v.name.clone(),
                            driver: v.driver.clone(),
                            vdpa_type: found.facts.vdpa_type.map(|t| t.as_str()),
                            device_node: v.vhost_device.as_ref().map(|n| format!("/dev/{n}")),
                        })
                    }),
                    pkey: found.facts.pkey.map(|k| format!("{k:#06x}")),
                }
            })
            .collect();
        pools.push(Pool {
            resource_name: resource.full_name(),
            device_type: resource.device_type.as_str(),
            exclude_topology: resource.exclude_topology,
            allocation_policy: resource.allocation_policy.map(|p| match p {
                AllocationPolicy::Pack => "pack",
                AllocationPolicy::Spread => "spread",
            }),
            resource: r,
            devices,
        });
    }
    Pools { pools, excluded }
}
