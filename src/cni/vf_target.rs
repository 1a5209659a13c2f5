//! From `deviceID` to the VF's PF, index and mode, through sysfs.

use super::error::{CniError, CODE_NO_SUCH_VF};
use super::state::Mode;
use crate::pci::PciAddress;
use crate::sysfs::{SysfsRoot, USERSPACE_DRIVERS};

#[derive(Debug, Clone)]
pub struct VfTarget {
    pub address: PciAddress,
    pub pf_address: PciAddress,
    pub pf_name: String,
    pub vf_index: u32,
    pub driver: String,
    pub mode: Mode,
}

pub fn resolve(sysfs: &SysfsRoot, vf: PciAddress) -> Result<VfTarget, CniError> {
    let no_such =
        |detail: String| CniError::new(CODE_NO_SUCH_VF, format!("deviceID {vf}: {detail}"));
    let device = sysfs
        .pci_device(vf)
        .map_err(|e| no_such(format!("not a PCI device of this node ({e})")))?;
    let pf_address = device
        .physfn
        .ok_or_else(|| no_such("not a VF (no physfn link)".into()))?;
    let pf = sysfs
        .pci_device(pf_address)
        .map_err(|e| no_such(format!("its PF: {e}")))?;
    let vf_index = sysfs
        .vf_index(pf_address, vf)
        .map_err(|e| no_such(e.to_string()))?
        .ok_or_else(|| no_such(format!("PF {pf_address} lists no virtfn link to it")))?;
    let driver = device
        .driver
        .ok_or_else(|| no_such("no driver is bound".into()))?;
    let mode = if USERSPACE_DRIVERS.contains(&driver.as_str()) {
        Mode::Dpdk
    } else {
        Mode::Kernel
    };
    Ok(VfTarget {
        address: vf,
        pf_address,
        pf_name: pf.netdevs.first().cloned().unwrap_or_default(),
        vf_index,
        driver: driver.to_string(),
        mode,
    })
}
