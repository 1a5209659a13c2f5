//! vDPA devices on a PCI function (`bus/vdpa/devices/vdpaN`, a directory
//! under the function). The bound vDPA bus driver decides what the device
//! is for: `vhost_vdpa` gives userspace a `/dev/vhost-vdpa-N` char device,
//! `virtio_vdpa` gives the kernel a virtio-net netdev.

use super::attr::{link_basename, list_dir};
use super::children::ChildMap;
use super::SysfsError;
use crate::pci::PciAddress;

pub const VHOST_VDPA_DRIVER: &str = "vhost_vdpa";
pub const VIRTIO_VDPA_DRIVER: &str = "virtio_vdpa";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VdpaDevice {
    /// `vdpa0`
    pub name: String,
    pub parent: PciAddress,
    /// `vhost_vdpa`, `virtio_vdpa`, or None when unbound.
    pub driver: Option<String>,
    /// The vhost-vdpa char device (`vhost-vdpa-0`, i.e. `/dev/vhost-vdpa-0`)
    /// when bound to `vhost_vdpa`.
    pub vhost_device: Option<String>,
}

/// Every vDPA device whose parent is a PCI function, sorted by parent,
/// then name; one that cannot be read goes to `unreadable` under its parent.
pub(crate) fn read_vdpa_devices(
    vdpa: &ChildMap,
    unreadable: &mut Vec<(PciAddress, SysfsError)>,
) -> Vec<VdpaDevice> {
    let mut found = Vec::new();
    for (parent, children) in vdpa.iter() {
        let Ok(parent) = parent.parse::<PciAddress>() else {
            continue;
        };
        for child in children {
            let read = || -> Result<VdpaDevice, SysfsError> {
                let driver = link_basename(&child.dir.join("driver"))?;
                let vhost_device = if driver.as_deref() == Some(VHOST_VDPA_DRIVER) {
                    list_dir(&child.dir)?
                        .into_iter()
                        .find(|n| n.starts_with("vhost-vdpa-"))
                } else {
                    None
                };
                Ok(VdpaDevice {
                    name: child.name.clone(),
                    parent,
                    driver,
                    vhost_device,
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
