//! The resolved simulated node: every PCI function with its address, driver,
//! IOMMU group and netdev, computed from a layout. Pure: no I/O.

use super::layout::{Layout, PfSpec};
use crate::pci::PciAddress;
use std::collections::HashSet;

pub use super::layout::LayoutError;

pub use crate::sysfs::USERSPACE_DRIVERS;

/// Names of the wire namespace's bridge and of the PF's peer port there.
pub const WIRE_BRIDGE: &str = "wire";
pub const WIRE_UPLINK: &str = "uplink";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNode {
    pub instance: String,
    pub pfs: Vec<SimPf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPf {
    pub address: PciAddress,
    pub spec: PfSpec,
    /// None while no driver is bound (after an unbind).
    pub driver: Option<String>,
    /// `driver_override`: the one driver that may bind this function next.
    pub driver_override: Option<String>,
    /// `sriov_drivers_autoprobe`: new VFs are bound to their driver.
    pub drivers_autoprobe: bool,
    pub iommu_group: u32,
    pub netdev: Option<SimNetdev>,
    pub rdma_device: Option<String>,
    pub vfs: Vec<SimVf>,
    /// The per-PF network namespace where the VF peers meet on a bridge.
    pub wire_netns: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVf {
    pub index: u16,
    pub address: PciAddress,
    /// None while no driver is bound (after an unbind).
    pub driver: Option<String>,
    /// `driver_override`: the one driver that may bind this function next.
    pub driver_override: Option<String>,
    pub iommu_group: u32,
    pub netdev: Option<SimNetdev>,
    pub rdma_device: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNetdev {
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Name of the veth peer inside the wire namespace.
    pub wire_peer: String,
    /// PFs are up (carrier on the wire); VFs start down, as unused VFs do.
    pub up: bool,
}

/// The first IOMMU group number handed out; arbitrary but far from 0 so a
/// test that confuses a group with an index fails.
const FIRST_IOMMU_GROUP: u32 = 40;

impl SimNode {
    pub fn resolve(layout: &Layout, instance: &str) -> Result<SimNode, LayoutError> {
        validate_instance(instance)?;
        let mut next_group = FIRST_IOMMU_GROUP;
        let mut next_rdma = 0u32;
        let mut addresses = HashSet::new();
        let mut names = HashSet::new();
        let mut pfs = Vec::new();
        for spec in &layout.pfs {
            let pf_label = spec.pci_address.to_string();
            let invalid = |detail: String| LayoutError::Invalid {
                pf: pf_label.clone(),
                detail,
            };
            validate_spec(spec).map_err(&invalid)?;
            if !addresses.insert(spec.pci_address) {
                return Err(invalid("PCI address used twice".into()));
            }
            let mut take_rdma = |has_netdev: bool| {
                (spec.rdma && has_netdev).then(|| {
                    next_rdma += 1;
                    rdma_name(&spec.vendor, next_rdma - 1)
                })
            };
            let netdev = match &spec.name {
                Some(name) => {
                    validate_ifname(name).map_err(&invalid)?;
                    Some(SimNetdev {
                        name: name.clone(),
                        mac: derive_mac(instance, spec.pci_address),
                        mtu: spec.mtu,
                        wire_peer: WIRE_UPLINK.into(),
                        up: true,
                    })
                }
                None => None,
            };
            let pf_rdma = take_rdma(netdev.is_some());
            let pf_group = next_group;
            next_group += 1;

            let mut vfs = Vec::new();
            for index in 0..spec.num_vfs {
                let vf =
                    make_vf(spec, instance, index, next_group, &mut take_rdma).map_err(&invalid)?;
                if !addresses.insert(vf.address) {
                    return Err(invalid(format!(
                        "VF {index} address {} is used twice",
                        vf.address
                    )));
                }
                vfs.push(vf);
                next_group += 1;
            }
            if let Some(vf) = spec.vfs.iter().find(|vf| vf.index >= spec.num_vfs) {
                return Err(invalid(format!(
                    "override for VF {} but num_vfs is {}",
                    vf.index, spec.num_vfs
                )));
            }
            let wire_netns = format!(
                "{instance}-wire-{}",
                spec.name
                    .clone()
                    .unwrap_or_else(|| pf_label.replace([':', '.'], "-"))
            );
            pfs.push(SimPf {
                address: spec.pci_address,
                spec: spec.clone(),
                driver: Some(spec.driver.clone()),
                driver_override: None,
                drivers_autoprobe: true,
                iommu_group: pf_group,
                netdev,
                rdma_device: pf_rdma,
                vfs,
                wire_netns,
            });
        }
        for netdev in pfs.iter().flat_map(|pf| pf.netdevs()) {
            if !names.insert(netdev.name.clone()) {
                return Err(LayoutError::Invalid {
                    pf: "-".into(),
                    detail: format!("netdev name {} used twice", netdev.name),
                });
            }
        }
        Ok(SimNode {
            instance: instance.to_owned(),
            pfs,
        })
    }

    pub fn netdevs(&self) -> impl Iterator<Item = &SimNetdev> {
        self.pfs.iter().flat_map(|pf| pf.netdevs())
    }
}

impl SimPf {
    /// The PF's netdev first, then its VFs' netdevs.
    pub fn netdevs(&self) -> impl Iterator<Item = &SimNetdev> {
        self.netdev
            .iter()
            .chain(self.vfs.iter().filter_map(|vf| vf.netdev.as_ref()))
    }
}

/// The address of VF `index` of a PF by the SR-IOV routing-ID arithmetic.
pub fn vf_address(spec: &PfSpec, index: u16) -> Result<PciAddress, String> {
    let rid = u32::from(spec.pci_address.routing_id())
        + u32::from(spec.sriov_offset)
        + u32::from(index) * u32::from(spec.sriov_stride);
    let rid = u16::try_from(rid).map_err(|_| format!("VF {index} falls beyond bus ff"))?;
    Ok(PciAddress::from_routing_id(spec.pci_address.domain, rid))
}

/// VF `index` of the PF `spec` as the PF driver creates it: the layout's
/// per-VF overrides, else the PF's VF driver, a netdev named `<pf>v<index>`
/// unless the driver is a user-space one. `take_rdma` hands out the RDMA
/// device name of a netdev function.
pub fn make_vf(
    spec: &PfSpec,
    instance: &str,
    index: u16,
    iommu_group: u32,
    take_rdma: &mut dyn FnMut(bool) -> Option<String>,
) -> Result<SimVf, String> {
    let address = vf_address(spec, index)?;
    let overrides = spec.vfs.iter().find(|vf| vf.index == index);
    let driver = overrides
        .and_then(|vf| vf.driver.clone())
        .unwrap_or_else(|| spec.vf_driver.clone());
    validate_driver(&driver)?;
    let has_netdev = overrides
        .and_then(|vf| vf.has_netdev)
        .unwrap_or_else(|| driver_has_netdev(spec, &driver));
    let netdev = if has_netdev {
        let name = overrides
            .and_then(|vf| vf.netdev.clone())
            .or_else(|| spec.name.as_ref().map(|pf| format!("{pf}v{index}")))
            .ok_or_else(|| format!("VF {index} needs a netdev name (the PF has none)"))?;
        validate_ifname(&name)?;
        Some(SimNetdev {
            name,
            mac: derive_mac(instance, address),
            mtu: spec.mtu,
            wire_peer: format!("vf{index}"),
            up: false,
        })
    } else {
        None
    };
    let rdma_device = take_rdma(netdev.is_some());
    Ok(SimVf {
        index,
        address,
        driver: Some(driver),
        driver_override: None,
        iommu_group,
        netdev,
        rdma_device,
    })
}

/// Whether a function of this PF bound to `driver` gets a netdev: network
/// functions on a kernel driver do, user-space drivers (vfio-pci, uio)
/// never do.
pub fn driver_has_netdev(spec: &PfSpec, driver: &str) -> bool {
    spec.class.starts_with("0x02") && spec.name.is_some() && !USERSPACE_DRIVERS.contains(&driver)
}

fn validate_instance(instance: &str) -> Result<(), LayoutError> {
    let ok = !instance.is_empty()
        && instance.len() <= 32
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LayoutError::Invalid {
            pf: "-".into(),
            detail: format!("instance name {instance:?}: 1-32 letters, digits, '-' or '_'"),
        })
    }
}

fn validate_spec(spec: &PfSpec) -> Result<(), String> {
    for (key, value) in [
        ("vendor", &spec.vendor),
        ("device", &spec.device),
        ("vf_device", &spec.vf_device),
        ("subsystem_vendor", &spec.subsystem_vendor),
        ("subsystem_device", &spec.subsystem_device),
    ] {
        if value.len() != 4 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{key} {value:?}: expected 4 hex digits such as 8086"
            ));
        }
    }
    let class = spec.class.strip_prefix("0x").unwrap_or("");
    if class.len() != 6 || !class.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "class {:?}: expected 0x plus 6 hex digits such as 0x020000",
            spec.class
        ));
    }
    if spec.num_vfs > spec.total_vfs {
        return Err(format!(
            "num_vfs {} exceeds total_vfs {}",
            spec.num_vfs, spec.total_vfs
        ));
    }
    if spec.num_vfs > 0 && spec.sriov_stride == 0 {
        return Err("sriov_stride must be at least 1".into());
    }
    if !matches!(spec.link_type.as_str(), "ether" | "infiniband") {
        return Err(format!(
            "link_type {:?}: expected ether or infiniband",
            spec.link_type
        ));
    }
    if spec.numa_node < -1 {
        return Err(format!("numa_node {}: use -1 for none", spec.numa_node));
    }
    if !(68..=65535).contains(&spec.mtu) {
        return Err(format!("mtu {} out of range 68-65535", spec.mtu));
    }
    validate_driver(&spec.driver)?;
    validate_driver(&spec.vf_driver)
}

fn validate_driver(driver: &str) -> Result<(), String> {
    if driver.is_empty() || driver.contains('/') || driver.starts_with('.') {
        return Err(format!("driver {driver:?} is not a valid driver name"));
    }
    Ok(())
}

/// Linux interface names: 1-15 bytes, no '/', ':' or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "netdev name {name:?}: 1-15 characters, no '/', ':' or spaces"
        ))
    }
}

fn rdma_name(vendor: &str, n: u32) -> String {
    match vendor {
        "15b3" => format!("mlx5_{n}"),
        _ => format!("rdma{n}"),
    }
}

/// A stable, locally administered unicast MAC for a function of an instance,
/// so the fake tree can state the address before the link exists.
pub fn derive_mac(instance: &str, address: PciAddress) -> [u8; 6] {
    // FNV-1a: tiny, stable across releases (unlike std's hasher).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in instance.bytes().chain(address.to_string().into_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let b = hash.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}
