//! sysfs → `DeviceFacts`: everything the selectors look at, per PCI
//! function, plus the facts pools carry for the kubelet server.

use crate::config::DeviceFacts;
use crate::pci::PciAddress;
use crate::sysfs::{PciDevice, SysfsError, SysfsRoot};
use std::collections::HashMap;

/// One PCI function as discovery saw it.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub facts: DeviceFacts,
    pub device: PciDevice,
    pub pf_address: Option<PciAddress>,
    /// The function's first netdev, if it has one.
    pub netdev: Option<String>,
}

/// Why a device is kept out of every netDevice pool, as upstream does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// A PF with VFs enabled: its VFs are the devices to hand out.
    PfWithVfs { num_vfs: u32 },
    /// One of its netdevs carries the IPv4 default route (the node's uplink).
    DefaultRoute { netdev: String },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::PfWithVfs { num_vfs } => write!(f, "PF with {num_vfs} VFs enabled"),
            Exclusion::DefaultRoute { netdev } => write!(f, "{netdev} carries the default route"),
        }
    }
}

impl Discovered {
    /// The netDevice exclusion that applies, given the netdevs that carry
    /// an IPv4 default route.
    pub fn exclusion(&self, default_route_netdevs: &[String]) -> Option<Exclusion> {
        if let Some(sriov) = self.device.sriov {
            if sriov.num_vfs > 0 {
                return Some(Exclusion::PfWithVfs {
                    num_vfs: sriov.num_vfs,
                });
            }
        }
        self.device
            .netdevs
            .iter()
            .find(|n| default_route_netdevs.contains(n))
            .map(|netdev| Exclusion::DefaultRoute {
                netdev: netdev.clone(),
            })
    }
}

fn parse_hex_u16(hex: &str) -> u16 {
    u16::from_str_radix(hex, 16).unwrap_or_default()
}

/// Read every PCI function under the root. Devices whose attributes cannot
/// be read are skipped with a warning naming the path, not fatal: one odd
/// device must not take the whole node's pools down.
pub fn discover(sysfs: &SysfsRoot) -> Result<Vec<Discovered>, SysfsError> {
    let mut found = Vec::new();
    let mut devices = Vec::new();
    for address in sysfs.pci_addresses()? {
        match sysfs.pci_device(address) {
            Ok(device) => devices.push(device),
            Err(error) => {
                tracing::warn!(%address, %error, "skipping a PCI device that cannot be read")
            }
        }
    }
    let by_address: HashMap<PciAddress, &PciDevice> =
        devices.iter().map(|d| (d.address, d)).collect();
    // Each PF's virtfnN links, read once: looking them up per VF would read
    // every link of the PF for every VF (quadratic in VFs per PF).
    let mut vf_indexes: HashMap<PciAddress, u32> = HashMap::new();
    for pf in devices
        .iter()
        .filter(|d| d.sriov.is_some_and(|s| s.num_vfs > 0))
    {
        for (index, vf) in sysfs.virtfns(pf.address)? {
            vf_indexes.insert(vf, index);
        }
    }
    for device in &devices {
        let pf = device
            .physfn
            .and_then(|address| by_address.get(&address).copied());
        let netdev = device.netdevs.first().cloned();
        let link_type = match &netdev {
            Some(name) => sysfs.netdev_link_type(device.address, name)?,
            // no netdev (vfio-pci): the PF's link type, as upstream
            None => match pf.and_then(|pf| pf.netdevs.first().map(|n| (pf.address, n))) {
                Some((pf_address, name)) => sysfs.netdev_link_type(pf_address, name)?,
                None => None,
            },
        };
        let vf_index = device
            .physfn
            .and_then(|_| vf_indexes.get(&device.address).copied());
        let mut facts = DeviceFacts::pci(
            &device.address.to_string(),
            parse_hex_u16(&device.vendor),
            parse_hex_u16(&device.device),
            device.class,
        );
        facts.driver = device.driver.clone();
        facts.acpi_index = device.acpi_index.as_deref().and_then(|a| a.parse().ok());
        facts.pf_name = pf.and_then(|pf| pf.netdevs.first().cloned());
        facts.pf_pci_address = device.physfn.map(|a| a.to_string());
        facts.vf_index = vf_index;
        facts.link_type = link_type.map(str::to_owned);
        facts.is_rdma = !device.rdma_devices.is_empty();
        found.push(Discovered {
            facts,
            device: device.clone(),
            pf_address: device.physfn,
            netdev,
        });
    }
    Ok(found)
}
