//! Selector matching: which devices a selector object takes. Pure functions over
//! [`DeviceFacts`]; the order of the checks is upstream's filter order.

use super::facts::DeviceFacts;
use super::model::{DeviceType, SelectorSet};
use super::vf_range::PfEntry;

/// Whether `device` passes every filter of `selector`. Empty lists are no filter; the filters
/// combine with AND, in upstream's order: vendors, devices, drivers, pciAddresses, acpiIndexes,
/// pfNames, rootDevices, linkTypes, ddpProfiles, pKeys, isRdma, vdpaType, then auxTypes.
pub fn matches(selector: &SelectorSet, device: &DeviceFacts) -> bool {
    let s = selector;
    let d = device;
    within(&s.vendors, Some(&d.vendor_id))
        && within(&s.devices, Some(&d.device_id))
        && within_str(&s.drivers, d.driver.as_deref())
        && within_str(&s.pci_addresses, Some(d.pci_address.as_str()))
        && within(&s.acpi_indexes, d.acpi_index.as_ref())
        && pf_filter(&s.pf_names, d.pf_name.as_deref(), d.vf_index)
        && pf_filter(&s.root_devices, d.pf_pci_address.as_deref(), d.vf_index)
        && within_str(&s.link_types, d.link_type.as_deref())
        && within_str(&s.ddp_profiles, d.ddp_profile.as_deref())
        && within(&s.pkeys, d.pkey.as_ref())
        && (!s.is_rdma || d.is_rdma)
        && s.vdpa_type.is_none_or(|t| d.vdpa_type == Some(t))
        && within_str(&s.aux_types, d.aux_type.as_deref())
}

/// The index of the first selector object that takes `device` (selector lists are OR-ed, tried
/// in order; the one that matched decides per-selector extras such as `needVhostNet`).
pub fn first_match(selectors: &[SelectorSet], device: &DeviceFacts) -> Option<usize> {
    selectors.iter().position(|s| matches(s, device))
}

/// Upstream's device-class rule: netDevice and auxNetDevice pools take PCI base class 0x02
/// (network), accelerator pools 0x12 (processing accelerator). `class_code` is the 24-bit code.
pub fn class_matches(device_type: DeviceType, class_code: u32) -> bool {
    (class_code >> 16) & 0xff == u32::from(device_type.pci_base_class())
}

/// Whether `device` is a candidate for a pool of `device_type` at all, before any selector:
/// the right class, the right kind (aux devices only for auxNetDevice pools, PCI functions for
/// the others), and bound to a driver (upstream drops unbound devices while building its device
/// list, so they can never be in a pool).
pub fn eligible(device_type: DeviceType, device: &DeviceFacts) -> bool {
    class_matches(device_type, device.class_code)
        && device.driver.as_deref().is_some_and(|d| !d.is_empty())
        && (device_type == DeviceType::AuxNetDevice) == device.is_aux()
}

fn within<T: PartialEq>(wanted: &[T], have: Option<&T>) -> bool {
    wanted.is_empty() || have.is_some_and(|h| wanted.contains(h))
}

fn within_str(wanted: &[String], have: Option<&str>) -> bool {
    wanted.is_empty() || have.is_some_and(|h| wanted.iter().any(|w| w == h))
}

/// `pfNames` / `rootDevices`: a device without a PF never matches; otherwise the FIRST entry that
/// names its PF decides (a later entry for the same PF is not consulted, as upstream).
fn pf_filter(entries: &[PfEntry], pf: Option<&str>, index: Option<u32>) -> bool {
    if entries.is_empty() {
        return true;
    }
    let Some(pf) = pf.filter(|p| !p.is_empty()) else {
        return false;
    };
    entries
        .iter()
        .find(|e| e.is_for(pf))
        .is_some_and(|e| e.selects(index))
}
