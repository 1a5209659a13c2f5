//! Resource pools: discovered devices assigned to the config's resources,
//! as sriov-network-device-plugin would assign them. The result is plain
//! data the kubelet server and `sriovctl inventory` both use.

pub mod discovery;
mod freeing;

pub use freeing::drain_freeing;

pub use discovery::{discover, discover_for, discover_with, scan_options, Discovered, Exclusion};

use crate::config::{assign_pools, AllocationPolicy, Config, DeviceType};
use crate::pci::PciAddress;
use compact_str::{format_compact, CompactString, ToCompactString};
use serde::Serialize;

/// One device of a pool, with what Allocate and ListAndWatch need.
///
/// Its names are `CompactString`s, as in `DeviceFacts` and the served
/// device: IDs, PCI addresses, netdev and driver names fit in its 24 bytes,
/// so they live inside the device instead of a dozen heap blocks per VF
/// (the daemon's peak memory at 4096 VFs: README, "Device plugin start-up,
/// memory and Allocate").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDevice {
    /// The kubelet device ID: the PCI address.
    pub id: CompactString,
    pub pf_name: Option<CompactString>,
    pub pf_pci_address: Option<CompactString>,
    pub vf_index: Option<u32>,
    /// PCI vendor and device ID, lower-case hex without `0x` (`8086`,
    /// `154c`); an aux device's are its parent's. For DRA's attributes; left
    /// out of `sriovctl inventory`'s output, which predates them.
    #[serde(skip)]
    pub vendor: CompactString,
    #[serde(skip)]
    pub device: CompactString,
    pub driver: Option<CompactString>,
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
    pub netdev: Option<CompactString>,
    /// Link type of its netdev (its PF's for a VF without one). Filled by
    /// `discover`; by `discover_for` only when a `linkTypes` or `pKeys`
    /// selector or a DRA pool needs it.
    pub link_type: Option<CompactString>,
    pub rdma_devices: Vec<String>,
    /// Host device nodes Allocate hands out (vfio group, uio, ...).
    pub device_nodes: Vec<String>,
    /// Which selector object of the resource took the device.
    #[serde(skip)]
    pub selector: usize,
    /// The PCI function the device is, or, for an aux device (whose `id`
    /// is its aux name), the function it sits on.
    pub pci_address: CompactString,
    /// `sf` for an aux device; None for a PCI function.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux_type: Option<CompactString>,
    /// The function's vDPA device, when it has one. Boxed: few devices
    /// have one, and every device of a pool would otherwise carry the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vdpa: Option<Box<PoolVdpa>>,
    /// InfiniBand P_Key at index 0 (`0x7fff`), when read (infiniband links
    /// and a config with `pKeys`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkey: Option<CompactString>,
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
///
/// Takes discovery's records by value: each becomes its pool device in the
/// records' own buffer, so discovery's facts and the pools' devices are
/// never two lists (at 4096 VFs each is megabytes, and the daemon's peak
/// memory was where they met).
pub fn build(config: &Config, devices: Vec<Discovered>, default_route_netdevs: &[String]) -> Pools {
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
    let places = assign(config, &devices, &excluded);
    // Collected in place: a placed device is smaller than its record, so
    // the records' buffer is reused for the pool devices instead of a
    // second list growing beside the first (at 4096 VFs the two met at
    // 3.3 MB, the daemon's heap peak: README, "Device plugin start-up,
    // memory and Allocate").
    let mut placed: Vec<(Place, PoolDevice)> = devices
        .into_iter()
        .zip(places)
        .filter_map(|(found, place)| {
            let place = place?;
            Some((place, pool_device(found, place.selector)))
        })
        .collect();
    placed.sort_unstable_by_key(|(place, _)| (place.resource, place.rank));
    // Split per resource from the last pool back, so that the first (most
    // often the only) one keeps the buffer instead of being copied.
    let mut pools = Vec::new();
    while let Some((last, _)) = placed.last() {
        let r = last.resource;
        let start = placed.partition_point(|(place, _)| place.resource < r);
        let members = if start == 0 {
            std::mem::take(&mut placed)
        } else {
            placed.split_off(start)
        };
        let resource = &config.resources[r];
        pools.push(Pool {
            resource_name: resource.full_name(),
            device_type: resource.device_type.as_str(),
            exclude_topology: resource.exclude_topology,
            allocation_policy: resource.allocation_policy.map(|p| match p {
                AllocationPolicy::Pack => "pack",
                AllocationPolicy::Spread => "spread",
            }),
            resource: r,
            devices: without_places(members),
        });
    }
    pools.reverse();
    Pools { pools, excluded }
}

/// The devices of `placed`, in order. Vec's in-place collect reuses the
/// buffer (a device is no larger than itself with its place), so the list
/// is not held twice; the room the places took is then given back.
fn without_places(placed: Vec<(Place, PoolDevice)>) -> Vec<PoolDevice> {
    let mut devices: Vec<PoolDevice> = placed.into_iter().map(|(_, device)| device).collect();
    devices.shrink_to_fit();
    devices
}

// std collects `build`'s placed devices into the records' buffer (an
// optimisation it makes, not a promise) only while a placed device fits in
// a record's room with the same alignment; past that, it would quietly
// allocate a second list.
const _: () = assert!(
    std::mem::size_of::<(Place, PoolDevice)>() <= std::mem::size_of::<Discovered>()
        && std::mem::align_of::<(Place, PoolDevice)>() == std::mem::align_of::<Discovered>()
);

/// Where an assigned device goes: its resource, its position in that pool
/// (the order upstream lists it in), and the selector that took it.
#[derive(Debug, Clone, Copy)]
struct Place {
    resource: usize,
    rank: usize,
    selector: usize,
}

/// Each device's place, if a pool takes it: resource by resource in config
/// order, each seeing the devices no earlier resource took; excluded
/// devices are hidden from netDevice resources only.
fn assign(config: &Config, devices: &[Discovered], excluded: &[Excluded]) -> Vec<Option<Place>> {
    let facts_all: Vec<&crate::config::DeviceFacts> = devices.iter().map(|d| &d.facts).collect();
    let excluded_ids: Vec<CompactString> = excluded
        .iter()
        .map(|e| e.address.to_compact_string())
        .collect();
    let mut places: Vec<Option<Place>> = vec![None; devices.len()];
    for (r, resource) in config.resources.iter().enumerate() {
        let visible: Vec<usize> = (0..devices.len())
            .filter(|&d| {
                resource.device_type != DeviceType::NetDevice
                    || !excluded_ids.contains(&facts_all[d].id)
            })
            .filter(|&d| places[d].is_none())
            .collect();
        let subset: Vec<&crate::config::DeviceFacts> =
            visible.iter().map(|&d| facts_all[d]).collect();
        let single = std::slice::from_ref(resource);
        let mut rank = 0;
        for assignment in assign_pools(single, &subset) {
            for member in assignment.members {
                places[visible[member.device]] = Some(Place {
                    resource: r,
                    rank,
                    selector: member.selector,
                });
                rank += 1;
            }
        }
    }
    places
}

/// An iavf VF (E810, 8086:154c) of PF ens1f0 (0000:3b:00.0), index 0,
/// NUMA 0, ether link, at PCI address `id`: for tests, which change what
/// they look at with struct update syntax.
#[cfg(test)]
pub(crate) fn test_vf(id: &str) -> PoolDevice {
    PoolDevice {
        id: id.into(),
        pf_name: Some("ens1f0".into()),
        pf_pci_address: Some("0000:3b:00.0".into()),
        vf_index: Some(0),
        vendor: "8086".into(),
        device: "154c".into(),
        driver: Some("iavf".into()),
        numa_node: Some(0),
        iommu_group: None,
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

/// A discovered device as its pool keeps it, taken out of discovery's record.
fn pool_device(found: Discovered, selector: usize) -> PoolDevice {
    let device_nodes = device_nodes(&found);
    let Discovered {
        facts,
        device,
        aux,
        vdpa,
        ..
    } = found;
    // the rule of Discovered::netdev, moving instead of copying
    let (netdev, rdma_devices) = match aux {
        Some(aux) => (aux.netdevs.into_iter().next(), aux.rdma_devices),
        None => (device.netdevs.into_iter().next(), device.rdma_devices),
    };
    // inlined (a netdev name is at most 15 bytes), the scan's string freed
    let netdev = netdev.map(CompactString::from);
    let vdpa_type = facts.vdpa_type.map(|t| t.as_str());
    PoolDevice {
        id: facts.id,
        pf_name: facts.pf_name,
        pf_pci_address: facts.pf_pci_address,
        vf_index: facts.vf_index,
        vendor: format_compact!("{:04x}", device.vendor),
        device: format_compact!("{:04x}", device.device),
        driver: facts.driver,
        numa_node: device.numa_node,
        iommu_group: device.iommu_group,
        netdev,
        link_type: facts.link_type,
        // an aux device's own RDMA devices, not its parent's
        rdma_devices,
        device_nodes,
        selector,
        pci_address: facts.pci_address,
        aux_type: facts.aux_type,
        vdpa: vdpa.map(|v| {
            Box::new(PoolVdpa {
                name: v.name,
                driver: v.driver,
                vdpa_type,
                device_node: v.vhost_device.map(|n| format!("/dev/{n}")),
            })
        }),
        pkey: facts.pkey.map(|k| format_compact!("{k:#06x}")),
    }
}
