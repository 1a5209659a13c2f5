//! The key names `config.json` may use, and which selector keys each device type understands.
//! Names are the canonical spellings; the input is matched against them case-insensitively.

use super::model::DeviceType;

pub(crate) const TOP_KEYS: &[&str] = &["resourceList"];

pub(crate) const RESOURCE_KEYS: &[&str] = &[
    "resourceName",
    "resourcePrefix",
    "deviceType",
    "excludeTopology",
    "selectors",
    "additionalInfo",
    // Ours; upstream ignores them.
    "allocationPolicy",
    "allocationApi",
    "linkHealth",
    // Go struct fields without a JSON tag that sriov-network-operator serialises (as `null`)
    // into the configs it renders. Known, so they are skipped without a warning.
    "SelectorObj",
    "SelectorObjs",
];

/// Every selector key of every device type, in upstream's filter order (`auxTypes` last).
pub(crate) const SELECTOR_KEYS: &[&str] = &[
    "vendors",
    "devices",
    "drivers",
    "pciAddresses",
    "acpiIndexes",
    "pfNames",
    "rootDevices",
    "linkTypes",
    "ddpProfiles",
    "pKeys",
    "isRdma",
    "needVhostNet",
    "vdpaType",
    "auxTypes",
];

/// Whether upstream's selector struct for `device_type` has this key. Keys it lacks are dropped
/// by Go's decoder without a word; we drop them too, but warn.
pub(crate) fn applies(key: &str, device_type: DeviceType) -> bool {
    use DeviceType::*;
    match key {
        "vendors" | "devices" | "drivers" => true,
        "pciAddresses" | "acpiIndexes" => matches!(device_type, NetDevice | Accelerator),
        "pfNames" | "rootDevices" | "linkTypes" | "isRdma" | "needVhostNet" => {
            matches!(device_type, NetDevice | AuxNetDevice)
        }
        "ddpProfiles" | "pKeys" | "vdpaType" => device_type == NetDevice,
        "auxTypes" => device_type == AuxNetDevice,
        _ => false,
    }
}

/// For an unknown key, a known key it was probably meant to be (`pfName` → `pfNames`).
pub(crate) fn suggestion(unknown: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = unknown.to_ascii_lowercase();
    known.iter().copied().find(|k| {
        let k = k.to_ascii_lowercase();
        k == format!("{lower}s")
            || lower == format!("{k}s")
            || k.replace('_', "") == lower.replace(['_', '-'], "")
    })
}
