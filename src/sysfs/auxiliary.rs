//! Auxiliary-bus devices on a PCI function: `<driver>.<type>.<id>`, e.g.
//! the scalable function `mlx5_core.sf.2` (`bus/auxiliary/devices/*` link
//! into the PCI function's directory). Only direct children of a function
//! count; the aux devices a driver hangs under an SF (`mlx5_core.sf.2/
//! mlx5_core.eth.2`) are the SF's business.

use super::attr::{link_basename, read_number};
use super::children::ChildMap;
use super::SysfsError;
use crate::pci::PciAddress;
use std::path::PathBuf;

/// One auxiliary device directly under a PCI function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuxDevice {
    /// `mlx5_core.sf.2`: the kubelet device ID of an `auxNetDevice` pool.
    pub name: String,
    /// The PCI function it sits under (the PF for an SF).
    pub parent: PciAddress,
    /// The driver bound to the aux device itself (`mlx5_core.sf`).
    pub driver: Option<String>,
    /// `sfnum` of a scalable function; None for other aux devices.
    pub sfnum: Option<u32>,
    /// Its netdevs and RDMA devices, sorted.
    pub netdevs: Vec<String>,
    pub rdma_devices: Vec<String>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl AuxDevice {
    /// The `<type>` of `<driver>.<type>.<id>` (`sf`).
    pub fn aux_type(&self) -> Option<&str> {
        aux_type_of(&self.name)
    }
}

/// The middle part of an aux device name of the kernel's shape
/// `<driver>.<type>.<id>`: three non-empty parts without blanks, the last
/// one digits (upstream splits on dots and wants exactly three parts).
pub fn aux_type_of(name: &str) -> Option<&str> {
    let mut parts = name.split('.');
    let (driver, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
    let plain = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none() && digits && plain(driver) && plain(kind)).then_some(kind)
}

/// Every aux device whose parent is a PCI function, with its `sfnum`,
/// driver, netdevs and RDMA devices; one that cannot be read goes to
/// `unreadable` under its parent.
pub(crate) fn read_aux_devices(
    aux: &ChildMap,
    netdevs: &ChildMap,
    rdma: &ChildMap,
    unreadable: &mut Vec<(PciAddress, SysfsError)>,
) -> Vec<AuxDevice> {
    let mut found = Vec::new();
    for (parent, children) in aux.iter() {
        let Ok(parent) = parent.parse::<PciAddress>() else {
            continue; // nested under another aux device
        };
        for child in children.iter().filter(|c| aux_type_of(&c.name).is_some()) {
            let read = || -> Result<AuxDevice, SysfsError> {
                Ok(AuxDevice {
                    name: child.name.clone(),
                    parent,
                    driver: link_basename(&child.dir.join("driver"))?,
                    sfnum: read_number(&child.dir.join("sfnum"), "an SF number")?,
                    netdevs: netdevs.names_of(&child.name),
                    rdma_devices: rdma.names_of(&child.name),
                    dir: child.dir.clone(),
                })
            };
            match read() {
                Ok(device) => found.push(device),
                Err(error) => unreadable.push((parent, error)),
            }
        }
    }
    found.sort_by(|a, b| (a.parent, &a.name).cmp(&(b.parent, &b.name)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aux_types_come_from_the_middle_of_the_name() {
        assert_eq!(aux_type_of("mlx5_core.sf.2"), Some("sf"));
        assert_eq!(aux_type_of("mlx5_core.eth.0"), Some("eth"));
        for bad in [
            "mlx5_core.sf",
            "mlx5_core.sf.x",
            "sf.2",
            ".sf.2",
            "a..2",
            "a.b.c.12",
            "vdpa0",
        ] {
            assert_eq!(aux_type_of(bad), None, "{bad}");
        }
    }
}
