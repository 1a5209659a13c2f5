//! Turn the JSON tree into typed resources: types, value formats and key placement.
//! Cross-resource rules (names, duplicates, isRdma with vdpaType) live in `validate.rs`.
//!
//! Differences from upstream made here (all listed in `docs/config-compat.md`):
//! - a `selectors` value that does not decode (wrong JSON type, bad value) makes upstream log a
//!   warning and drop the whole resource; we refuse the config and say where;
//! - a missing or null `selectors` crashes upstream (nil pointer); we refuse it;
//! - a selector key the device type does not have, an unknown key, a key written twice or a
//!   `pfNames`/`rootDevices` entry that a previous one for the same PF hides: upstream is silent,
//!   we warn (and behave the same);
//! - `vdpaType` other than `vhost`/`virtio` matches nothing upstream; we refuse it;
//! - `additionalInfo` keys other than `*` or a PCI address never apply upstream; we refuse them.

use std::collections::BTreeMap;

use super::error::{ConfigError, ResourceRef};
use super::json::{Fields, Json};
use super::keys::{RESOURCE_KEYS, SELECTOR_KEYS, TOP_KEYS};
use super::model::{AdditionalInfo, AllocationApi, AllocationPolicy, DeviceType, Resource};
use super::read::{boolean, note_repeats, string, unknown_key_warning, wrong_type};
use super::selector::parse_selector;
use super::values;

/// Parse the text of `config.json`. Warnings are appended to `warnings`.
pub(crate) fn parse_document(
    text: &str,
    default_prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<Resource>, ConfigError> {
    let doc: Json = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        ConfigError::Syntax {
            line: e.line(),
            column: e.column(),
            message: full.strip_suffix(&suffix).unwrap_or(&full).to_string(),
        }
    })?;
    let Json::Object(entries) = &doc else {
        return Err(ConfigError::TopLevel {
            key: "(document)".to_string(),
            expected: "an object with a `resourceList`",
            found: doc.kind().to_string(),
        });
    };
    let fields = Fields::collect(entries, TOP_KEYS);
    for key in &fields.unknown {
        warnings.push(format!("config: unknown top-level key `{key}` ignored"));
    }
    let list = match fields.get("resourceList") {
        None => return Err(ConfigError::NoResources),
        Some(Json::Array(items)) => items,
        Some(other) => {
            return Err(ConfigError::TopLevel {
                key: "resourceList".to_string(),
                expected: "a list of resource objects",
                found: other.kind().to_string(),
            })
        }
    };
    if list.is_empty() {
        return Err(ConfigError::NoResources);
    }
    list.iter()
        .enumerate()
        .map(|(index, item)| parse_resource(index, item, default_prefix, warnings))
        .collect()
}

fn parse_resource(
    index: usize,
    item: &Json,
    default_prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<Resource, ConfigError> {
    let Json::Object(entries) = item else {
        return Err(ConfigError::TopLevel {
            key: format!("resourceList[{index}]"),
            expected: "an object",
            found: item.kind().to_string(),
        });
    };
    let fields = Fields::collect(entries, RESOURCE_KEYS);
    let mut at = ResourceRef { index, name: None };

    // The name first, so that every later message can carry it.
    let name = match fields.get("resourceName") {
        None => {
            return Err(ConfigError::Missing {
                at,
                key: "resourceName".to_string(),
            })
        }
        Some(value) => string(&at, "resourceName", value)?.to_string(),
    };
    at.name = Some(name.clone());

    note_repeats(&at, "", &fields, warnings);
    for key in &fields.unknown {
        if let Some(selector_key) = SELECTOR_KEYS.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            warnings.push(format!(
                "{at}: `{key}` is a selector key and belongs inside `selectors`; ignored here, as upstream ignores it (`{selector_key}`)"
            ));
        } else {
            warnings.push(unknown_key_warning(&at, key, "", RESOURCE_KEYS));
        }
    }

    let prefix = match fields.get("resourcePrefix") {
        None => default_prefix.to_string(),
        // Upstream treats an empty prefix as "not given".
        Some(value) => match string(&at, "resourcePrefix", value)? {
            "" => default_prefix.to_string(),
            p => p.to_string(),
        },
    };
    let device_type = match fields.get("deviceType") {
        None => DeviceType::NetDevice,
        Some(value) => match string(&at, "deviceType", value)? {
            "" | "netDevice" => DeviceType::NetDevice,
            "accelerator" => DeviceType::Accelerator,
            "auxNetDevice" => DeviceType::AuxNetDevice,
            other => {
                return Err(ConfigError::UnknownDeviceType {
                    at,
                    value: other.to_string(),
                })
            }
        },
    };
    let exclude_topology = match fields.get("excludeTopology") {
        None => false,
        Some(value) => boolean(&at, "excludeTopology", value)?,
    };
    let allocation_policy = match fields.get("allocationPolicy") {
        None => None,
        Some(value) => match string(&at, "allocationPolicy", value)? {
            "pack" => Some(AllocationPolicy::Pack),
            "spread" => Some(AllocationPolicy::Spread),
            other => {
                return Err(ConfigError::InvalidValue {
                    at,
                    key: "allocationPolicy".to_string(),
                    value: format!("{other:?}"),
                    reason: "use \"pack\" or \"spread\"".to_string(),
                })
            }
        },
    };
    let allocation_api = match fields.get("allocationApi") {
        None => AllocationApi::default(),
        Some(value) => match string(&at, "allocationApi", value)? {
            "devicePlugin" => AllocationApi::DevicePlugin,
            "dra" => AllocationApi::Dra,
            other => {
                return Err(ConfigError::InvalidValue {
                    at,
                    key: "allocationApi".to_string(),
                    value: format!("{other:?}"),
                    reason: "use \"devicePlugin\" or \"dra\"".to_string(),
                })
            }
        },
    };
    // ours: a pool whose VFs switch traffic among themselves without the
    // PF's cable (link_state enable) opts out of link health
    let link_health = match fields.get("linkHealth") {
        None => true,
        Some(value) => boolean(&at, "linkHealth", value)?,
    };
    let additional_info = parse_additional_info(&at, fields.all("additionalInfo"))?;

    let (selectors, selectors_listed) = match fields.get("selectors") {
        // Upstream dereferences a nil pointer here and crashes; we say what is missing.
        None => {
            return Err(ConfigError::Missing {
                at,
                key: "selectors".to_string(),
            })
        }
        Some(Json::Object(entries)) => {
            let set = parse_selector(&at, device_type, entries, "selectors", warnings)?;
            (vec![set], false)
        }
        Some(Json::Array(items)) => {
            if items.is_empty() {
                return Err(ConfigError::EmptySelectorList { at });
            }
            let mut sets = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let path = format!("selectors[{i}]");
                let Json::Object(entries) = item else {
                    return Err(wrong_type(&at, &path, "a selector object", item));
                };
                sets.push(parse_selector(&at, device_type, entries, &path, warnings)?);
            }
            (sets, true)
        }
        Some(other) => {
            return Err(wrong_type(
                &at,
                "selectors",
                "a selector object or a list of selector objects",
                other,
            ))
        }
    };

    Ok(Resource {
        index,
        name,
        prefix,
        device_type,
        exclude_topology,
        selectors,
        selectors_listed,
        additional_info,
        allocation_policy,
        allocation_api,
        link_health,
    })
}

/// `additionalInfo` may be given more than once (in different casings); Go decodes each into the
/// same map, so later outer keys replace earlier ones and the rest is kept. We do the same.
fn parse_additional_info(
    at: &ResourceRef,
    values: &[&Json],
) -> Result<AdditionalInfo, ConfigError> {
    let mut info = AdditionalInfo::new();
    for value in values {
        let Json::Object(outer) = value else {
            return Err(wrong_type(at, "additionalInfo", "an object", value));
        };
        for (device, pairs) in outer {
            let key = format!("additionalInfo.{device:?}");
            // Upstream looks the device up by its exact PCI address; any other key is dead.
            if device != "*" && !values::is_full_bdf(device) {
                return Err(ConfigError::InvalidValue {
                    at: at.clone(),
                    key: "additionalInfo".to_string(),
                    value: format!("key {device:?}"),
                    reason: "keys are \"*\" (every device) or a full lower-case PCI address like \"0000:86:00.0\"".to_string(),
                });
            }
            let inner = match pairs {
                Json::Null => BTreeMap::new(),
                Json::Object(inner) => {
                    let mut map = BTreeMap::new();
                    for (k, v) in inner {
                        match v {
                            Json::String(s) => {
                                map.insert(k.clone(), s.clone());
                            }
                            // Go leaves a null map value as the empty string.
                            Json::Null => {
                                map.insert(k.clone(), String::new());
                            }
                            other => {
                                return Err(wrong_type(
                                    at,
                                    &format!("{key}.{k:?}"),
                                    "a string",
                                    other,
                                ))
                            }
                        }
                    }
                    map
                }
                other => return Err(wrong_type(at, &key, "an object of strings", other)),
            };
            info.insert(device.clone(), inner);
        }
    }
    Ok(info)
}
