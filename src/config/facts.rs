//! What the selectors look at, as plain data. The sysfs layer fills it in; nothing here reads
//! the machine.

use super::model::VdpaType;
use compact_str::CompactString;

/// One candidate device: a PCI function, or an auxiliary device on a PCI function.
/// `None` means "this device has no such property", which never matches a filter on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFacts {
    /// The ID the kubelet sees and pools are keyed by: the PCI address, or for an aux device its
    /// name (`mlx5_core.sf.4`).
    pub id: CompactString,
    /// PCI address (`0000:3b:02.0`); for an aux device, its parent function's.
    pub pci_address: CompactString,
    /// PCI vendor ID; for an aux device, the parent's.
    pub vendor_id: u16,
    /// PCI device ID; for an aux device, the parent's.
    pub device_id: u16,
    /// 24-bit PCI class code from the `class` file (0x020000 = Ethernet); parent's for aux.
    pub class_code: u32,
    /// Bound driver (basename of the `driver` link); `None` when unbound.
    pub driver: Option<CompactString>,
    /// Content of `acpi_index`, when the file exists.
    pub acpi_index: Option<u32>,
    /// PF netdev name (the uplink representor in switchdev mode); `None` for a device that is
    /// not a VF or SF, or whose PF has no netdev.
    pub pf_name: Option<CompactString>,
    /// PF PCI address; `None` for a device that is not a VF or SF.
    pub pf_pci_address: Option<CompactString>,
    /// N of the PF's `virtfnN` link for a VF, or the SF number for an aux device.
    pub vf_index: Option<u32>,
    /// Netlink link type of the device's netdev, or of the PF's when it has none (vfio-pci).
    pub link_type: Option<CompactString>,
    /// Intel DDP profile loaded on the device's port.
    pub ddp_profile: Option<CompactString>,
    /// InfiniBand partition key at index 0 (only for `infiniband` links).
    pub pkey: Option<u16>,
    /// Whether the device has RDMA resources.
    pub is_rdma: bool,
    /// The type of the vDPA device on it, if any.
    pub vdpa_type: Option<VdpaType>,
    /// For an aux device, the `<type>` of `<driver>.<type>.<id>` (`sf`); `None` for PCI devices.
    pub aux_type: Option<CompactString>,
}

impl DeviceFacts {
    /// A PCI function with just its identity filled in; set the other fields as needed.
    pub fn pci(pci_address: &str, vendor_id: u16, device_id: u16, class_code: u32) -> Self {
        DeviceFacts {
            id: pci_address.into(),
            pci_address: pci_address.into(),
            vendor_id,
            device_id,
            class_code,
            ..DeviceFacts::default()
        }
    }

    /// Whether this is an auxiliary device rather than a PCI function.
    pub fn is_aux(&self) -> bool {
        self.aux_type.is_some()
    }
}
