//! One selector object: each key read, checked against the device type and parsed into a
//! [`SelectorSet`]. See `parse.rs` for the differences from upstream made while reading.

use super::error::{ConfigError, ResourceRef};
use super::json::{Fields, Json};
use super::keys::{self, SELECTOR_KEYS};
use super::model::{DeviceType, SelectorSet, VdpaType};
use super::read::{boolean, list, note_repeats, string, unknown_key_warning};
use super::values;
use super::vf_range::{fold_eq, PfEntry};

/// Why `ddpProfiles` is refused (docs/config-compat.md, "DDP profiles").
const DDP_UNSUPPORTED: &str = "sriov-rs cannot read the DDP profile loaded on an Intel NIC \
(upstream asks devlink for `fw.app.name` or runs ddptool; the kernel shows it nowhere in sysfs), \
so this pool would differ from upstream's; select the devices with `devices`, `pfNames` or \
`rootDevices` instead";

/// Read one selector object found at `path` (`selectors` or `selectors[i]`).
pub(crate) fn parse_selector(
    at: &ResourceRef,
    device_type: DeviceType,
    entries: &[(String, Json)],
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<SelectorSet, ConfigError> {
    let fields = Fields::collect(entries, SELECTOR_KEYS);
    note_repeats(at, path, &fields, warnings);
    for key in &fields.unknown {
        warnings.push(unknown_key_warning(at, key, path, SELECTOR_KEYS));
    }

    let mut set = SelectorSet::default();
    for key in fields.present() {
        let key_path = format!("{path}.{key}");
        if !keys::applies(key, device_type) {
            warnings.push(format!(
                "{at}: `{key_path}` does not apply to {device_type} resources and is ignored, as upstream ignores it"
            ));
            continue;
        }
        let Some(value) = fields.get(key) else {
            continue;
        };
        match key {
            "vendors" => set.vendors = list(at, &key_path, value, values::hex_id)?,
            "devices" => set.devices = list(at, &key_path, value, values::hex_id)?,
            "drivers" => set.drivers = list(at, &key_path, value, values::driver)?,
            "pciAddresses" => {
                set.pci_addresses = list(at, &key_path, value, |s| values::pci_address(s, false))?
            }
            "acpiIndexes" => set.acpi_indexes = list(at, &key_path, value, values::acpi_index)?,
            "pfNames" => {
                set.pf_names = list(at, &key_path, value, pf_name_entry)?;
                note_shadowed(at, &key_path, &set.pf_names, warnings);
            }
            "rootDevices" => {
                set.root_devices = list(at, &key_path, value, root_device_entry)?;
                note_shadowed(at, &key_path, &set.root_devices, warnings);
            }
            "linkTypes" => {
                set.link_types = list(at, &key_path, value, values::link_type)?;
                if set.link_types.len() > 1 {
                    warnings.push(format!(
                        "{at}: `{key_path}` should have a single value (upstream warns the same)"
                    ));
                }
            }
            "ddpProfiles" => {
                set.ddp_profiles = list(at, &key_path, value, values::non_empty)?;
                // An empty list is no filter, upstream and here alike.
                if !set.ddp_profiles.is_empty() {
                    return Err(ConfigError::Unsupported {
                        at: at.clone(),
                        key: key_path,
                        reason: DDP_UNSUPPORTED,
                    });
                }
            }
            "pKeys" => set.pkeys = list(at, &key_path, value, values::pkey)?,
            "isRdma" => set.is_rdma = boolean(at, &key_path, value)?,
            "needVhostNet" => set.need_vhost_net = boolean(at, &key_path, value)?,
            "vdpaType" => {
                set.vdpa_type = match string(at, &key_path, value)? {
                    // Go's zero value: not set.
                    "" => None,
                    "vhost" => Some(VdpaType::Vhost),
                    "virtio" => Some(VdpaType::Virtio),
                    other => {
                        return Err(ConfigError::InvalidValue {
                            at: at.clone(),
                            key: key_path,
                            value: format!("{other:?}"),
                            reason: "use \"vhost\" or \"virtio\"".to_string(),
                        })
                    }
                }
            }
            "auxTypes" => set.aux_types = list(at, &key_path, value, values::non_empty)?,
            _ => {}
        }
    }

    if device_type == DeviceType::AuxNetDevice {
        // Upstream's auxNetDevice validation refuses a selector without auxTypes.
        if set.aux_types.is_empty() {
            return Err(ConfigError::Missing {
                at: at.clone(),
                key: format!("{path}.auxTypes"),
            });
        }
        for t in set.aux_types.iter().filter(|t| t.as_str() != "sf") {
            warnings.push(format!(
                "{at}: `{path}.auxTypes` has {t:?}; upstream only supports \"sf\" (scalable functions)"
            ));
        }
    }
    if set.is_unfiltered() {
        warnings.push(format!(
            "{at}: `{path}` has no filters, so it takes every {device_type} device not already in a pool"
        ));
    }
    Ok(set)
}

fn pf_name_entry(text: &str) -> Result<PfEntry, String> {
    let entry = PfEntry::parse(text).map_err(|e| e.to_string())?;
    values::if_name(&entry.pf)?;
    Ok(entry)
}

fn root_device_entry(text: &str) -> Result<PfEntry, String> {
    let mut entry = PfEntry::parse(text).map_err(|e| e.to_string())?;
    entry.pf = values::pci_address(&entry.pf, true)?;
    Ok(entry)
}

/// Upstream consults only the first entry naming a PF, so a later entry for the same PF is dead
/// (`["ens1f0#0-3", "ens1f0#8-9"]` never selects VF 8). We keep that behaviour and say so.
fn note_shadowed(
    at: &ResourceRef,
    key_path: &str,
    entries: &[PfEntry],
    warnings: &mut Vec<String>,
) {
    for (j, later) in entries.iter().enumerate() {
        if let Some((i, first)) = entries[..j]
            .iter()
            .enumerate()
            .find(|(_, e)| fold_eq(&e.pf, &later.pf))
        {
            let merged = match (&first.vfs, &later.vfs) {
                (Some(a), Some(b)) => format!("{}#{a},{b}", first.pf),
                _ => first.pf.clone(),
            };
            warnings.push(format!(
                "{at}: `{key_path}[{j}]` {:?} is never used: only the first entry for a PF counts (`[{i}]` {:?}), as upstream; write one entry such as {merged:?}",
                later.to_string(),
                first.to_string()
            ));
        }
    }
}
