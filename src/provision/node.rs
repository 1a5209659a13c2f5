//! What the planner needs to know of the node: its SR-IOV PFs and their VFs,
//! as plain data. Built from discovery (`pool::Discovered`) plus the few
//! facts discovery does not read (PF MTU, `driver_override`, autoprobe),
//! which [`observe`] reads through the sysfs layer.

use crate::pci::PciAddress;
use crate::pool::{self, Discovered};
use crate::sysfs::{ScanOptions, SysfsError, SysfsRoot};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VfView {
    /// N of the PF's `virtfnN`.
    pub index: u32,
    pub address: PciAddress,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    /// Its netdev in this network namespace, as discovery saw it (a VF on a
    /// kernel driver without one has its netdev elsewhere: in a pod).
    pub netdev: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PfView {
    pub address: PciAddress,
    /// The PF's netdev, when it has one in this namespace.
    pub name: Option<String>,
    /// Lower-case hex: `8086`.
    pub vendor: String,
    pub device: String,
    pub driver: Option<String>,
    pub total_vfs: u32,
    pub num_vfs: u32,
    pub mtu: Option<u32>,
    /// `sriov_drivers_autoprobe`: new VFs bind to their driver by themselves.
    pub drivers_autoprobe: bool,
    /// By index.
    pub vfs: Vec<VfView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeView {
    /// SR-IOV capable PFs, by address.
    pub pfs: Vec<PfView>,
}

impl NodeView {
    /// The SR-IOV PFs and VFs discovery saw (pure). MTU and
    /// `driver_override` are unknown (None) and autoprobe assumed on, until
    /// filled in by [`observe`] or the caller.
    pub fn from_discovered(devices: &[Discovered]) -> NodeView {
        let mut pfs: BTreeMap<PciAddress, PfView> = BTreeMap::new();
        for device in devices.iter().filter(|d| d.aux.is_none()) {
            if let Some(sriov) = device.device.sriov {
                pfs.insert(
                    device.device.address,
                    PfView {
                        address: device.device.address,
                        name: device.device.netdevs.first().cloned(),
                        vendor: format!("{:04x}", device.device.vendor),
                        device: format!("{:04x}", device.device.device),
                        driver: device.device.driver.as_ref().map(|d| d.to_string()),
                        total_vfs: sriov.total_vfs,
                        num_vfs: sriov.num_vfs,
                        mtu: None,
                        drivers_autoprobe: true,
                        vfs: Vec::new(),
                    },
                );
            }
        }
        for device in devices.iter().filter(|d| d.aux.is_none()) {
            let (Some(pf), Some(index)) = (device.pf_address, device.facts.vf_index) else {
                continue;
            };
            if let Some(pf) = pfs.get_mut(&pf) {
                pf.vfs.push(VfView {
                    index,
                    address: device.device.address,
                    driver: device.device.driver.as_ref().map(|d| d.to_string()),
                    driver_override: None,
                    netdev: device.netdev().cloned(),
                });
            }
        }
        let mut pfs: Vec<PfView> = pfs.into_values().collect();
        for pf in &mut pfs {
            pf.vfs.sort_by_key(|vf| vf.index);
        }
        NodeView { pfs }
    }

    /// VFs on a kernel driver whose netdev is not in this namespace: moved
    /// into a pod, as far as a node without the kubelet's word can tell.
    pub fn vfs_with_netdev_elsewhere(&self) -> Vec<PciAddress> {
        self.pfs
            .iter()
            .flat_map(|pf| &pf.vfs)
            .filter(|vf| {
                vf.netdev.is_none()
                    && vf
                        .driver
                        .as_deref()
                        .is_some_and(|d| !crate::sysfs::USERSPACE_DRIVERS.contains(&d))
            })
            .map(|vf| vf.address)
            .collect()
    }

    pub fn pf(&self, address: PciAddress) -> Option<&PfView> {
        self.pfs.iter().find(|pf| pf.address == address)
    }
}

/// Discover the node under `sysfs` and read what planning needs beyond
/// discovery: each PF's MTU and autoprobe, each VF's `driver_override`.
pub fn observe(sysfs: &SysfsRoot) -> Result<NodeView, SysfsError> {
    let devices = pool::discover_with(sysfs, &ScanOptions::POOLS)?;
    let mut node = NodeView::from_discovered(&devices);
    for pf in &mut node.pfs {
        fill_pf(sysfs, pf)?;
    }
    Ok(node)
}

/// One PF again, as it is now (the applier reads it after `sriov_numvfs`).
pub fn observe_pf(sysfs: &SysfsRoot, pf: &PfView) -> Result<PfView, SysfsError> {
    let mut fresh = pf.clone();
    fresh.vfs.clear();
    for (index, address) in sysfs.virtfns(pf.address)? {
        fresh.vfs.push(VfView {
            index,
            address,
            driver: sysfs.bound_driver(address)?,
            driver_override: None,
            netdev: None,
        });
    }
    fresh.vfs.sort_by_key(|vf| vf.index);
    fresh.num_vfs = u32::try_from(fresh.vfs.len()).unwrap_or(u32::MAX);
    fill_pf(sysfs, &mut fresh)?;
    Ok(fresh)
}

fn fill_pf(sysfs: &SysfsRoot, pf: &mut PfView) -> Result<(), SysfsError> {
    pf.drivers_autoprobe = sysfs.drivers_autoprobe(pf.address)?;
    if let Some(name) = &pf.name {
        pf.mtu = sysfs.netdev_mtu(name)?;
    }
    for vf in &mut pf.vfs {
        vf.driver_override = sysfs.driver_override(vf.address)?;
    }
    Ok(())
}
