//! The node policy: sriov-network-operator's SriovNetworkNodePolicy fields
//! that describe one node's NICs, as plain data, and their rules.
//!
//! Parsed from a generic tree (JSON or YAML, see `file.rs`) key by key, so
//! that every error names the policy and the key, and every unknown key is
//! an error (a misspelt `numVfs` must not silently leave a NIC alone).

use super::error::{PolicyError, PolicyErrors, PolicyRef};
use crate::config::{PfEntry, VfRanges};
use crate::pci::PciAddress;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;

/// What the VFs a policy covers are bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DeviceType {
    /// The kernel's VF driver (a netdev): the default.
    #[serde(rename = "netdevice")]
    Netdevice,
    #[serde(rename = "vfio-pci")]
    VfioPci,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Netdevice => "netdevice",
            DeviceType::VfioPci => "vfio-pci",
        }
    }

    /// Whether a function bound to `driver` (None: unbound) is already of this type.
    pub fn is_met_by(self, driver: Option<&str>) -> bool {
        match (self, driver) {
            (DeviceType::VfioPci, Some(d)) => d == VFIO_PCI,
            (DeviceType::Netdevice, Some(d)) => !crate::sysfs::USERSPACE_DRIVERS.contains(&d),
            (_, None) => false,
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const VFIO_PCI: &str = "vfio-pci";

/// Which PF an entry of `pfNames` or `rootDevices` names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum PfTarget {
    Name(String),
    Address(PciAddress),
}

impl fmt::Display for PfTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PfTarget::Name(name) => f.write_str(name),
            PfTarget::Address(address) => write!(f, "{address}"),
        }
    }
}

/// One `pfNames`/`rootDevices` entry: the PF and, after `#`, its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfSelector {
    pub target: PfTarget,
    /// None: every VF of the PF.
    pub vfs: Option<VfRanges>,
}

/// `nicSelector`: every key given must match (operator semantics); within
/// `pfNames` and `rootDevices`, any entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicSelector {
    pub pf_names: Vec<PfSelector>,
    pub root_devices: Vec<PfSelector>,
    /// Lower-case hex, as sysfs prints it: `8086`.
    pub vendor: Option<String>,
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub nic_selector: NicSelector,
    /// The PF's VF count; None leaves it as it is.
    pub num_vfs: Option<u32>,
    /// The PF's MTU; None leaves it as it is.
    pub mtu: Option<u32>,
    /// `netdevice` when not written, as in the operator: a policy claims
    /// the VFs it covers (docs/provision.md, "How policies combine").
    pub device_type: DeviceType,
}

impl Policy {
    pub fn reference(&self) -> PolicyRef {
        PolicyRef::named(&self.name)
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodePolicies {
    pub policies: Vec<Policy>,
}

const POLICY_KEYS: &[&str] = &["name", "nicSelector", "numVfs", "mtu", "deviceType"];
const SELECTOR_KEYS: &[&str] = &["pfNames", "rootDevices", "vendor", "deviceID"];

/// The operator's keys this file does not take, and why (an operator user
/// pasting a spec gets a reason rather than "unknown key").
fn operator_only(key: &str) -> Option<&'static str> {
    Some(match key {
        "resourceName" => "pools are named in the device plugin's config.json, not here",
        "nodeSelector" => {
            "this file is the node's own policy; choose the node by where the file goes"
        }
        "priority" => "policies are not ranked: policies that disagree are an error to fix",
        "isRdma" | "needVhostNet" | "linkType" | "eSwitchMode" | "vdpaType" | "excludeTopology"
        | "externallyManaged" | "bridge" | "eSwitchParams" | "netFilter" => {
            "an operator field sriov-rs does not provision (yet)"
        }
        _ => return None,
    })
}

/// The largest MTU accepted here; the driver has the last word (EINVAL).
pub const MAX_MTU: u32 = 65535;
/// ETH_MIN_MTU
pub const MIN_MTU: u32 = 68;

impl NodePolicies {
    /// Parse and validate a document already read into a tree.
    pub fn from_value(doc: &Value) -> Result<NodePolicies, PolicyErrors> {
        let Value::Object(top) = doc else {
            return Err(PolicyError::Document {
                key: "(document)".into(),
                message: format!("expected a mapping with `policies`, found {}", kind(doc)),
            }
            .into());
        };
        let mut errors = Vec::new();
        for key in top.keys().filter(|k| k.as_str() != "policies") {
            errors.push(PolicyError::Document {
                key: key.clone(),
                message: "unknown key (the file holds one key, `policies`)".into(),
            });
        }
        let items = match top.get("policies") {
            Some(Value::Array(items)) => items.as_slice(),
            Some(Value::Null) | None => &[],
            Some(other) => {
                errors.push(PolicyError::Document {
                    key: "policies".into(),
                    message: format!("expected a list of policies, found {}", kind(other)),
                });
                &[]
            }
        };
        let mut policies = Vec::new();
        let mut names = HashSet::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(policy) = parse_policy(index, item, &mut errors) {
                if !names.insert(policy.name.clone()) {
                    errors.push(PolicyError::key(
                        &PolicyRef::at(index),
                        "name",
                        format!(
                            "{:?} is the name of an earlier policy: names must be unique",
                            policy.name
                        ),
                    ));
                    continue;
                }
                policies.push(policy);
            }
        }
        if errors.is_empty() {
            Ok(NodePolicies { policies })
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// One policy; None (with its errors pushed) when anything is wrong.
fn parse_policy(index: usize, item: &Value, errors: &mut Vec<PolicyError>) -> Option<Policy> {
    let Value::Object(fields) = item else {
        errors.push(PolicyError::key(
            &PolicyRef::at(index),
            "(policy)",
            format!("expected a mapping, found {}", kind(item)),
        ));
        return None;
    };
    let before = errors.len();
    // the name first, so every other message can use it
    let name = match fields.get("name") {
        Some(Value::String(name)) if valid_name(name) => Some(name.clone()),
        Some(Value::String(name)) => {
            errors.push(PolicyError::key(
                &PolicyRef::at(index),
                "name",
                format!("{name:?}: use letters, digits, '-', '_' and '.', at most 253"),
            ));
            None
        }
        Some(other) => {
            errors.push(PolicyError::key(
                &PolicyRef::at(index),
                "name",
                format!("expected a string, found {}", kind(other)),
            ));
            None
        }
        None => {
            errors.push(PolicyError::key(
                &PolicyRef::at(index),
                "name",
                "missing: every policy needs a name",
            ));
            None
        }
    };
    let policy = name
        .as_deref()
        .map(PolicyRef::named)
        .unwrap_or_else(|| PolicyRef::at(index));
    for key in fields.keys().filter(|k| !POLICY_KEYS.contains(&k.as_str())) {
        errors.push(unknown_key(&policy, key, key, POLICY_KEYS));
    }
    let nic_selector = match fields.get("nicSelector") {
        Some(Value::Object(selector)) => parse_selector(&policy, selector, errors),
        Some(other) => {
            errors.push(PolicyError::key(
                &policy,
                "nicSelector",
                format!("expected a mapping, found {}", kind(other)),
            ));
            None
        }
        None => {
            errors.push(PolicyError::key(
                &policy,
                "nicSelector",
                "missing: a policy without a selector would select no NIC",
            ));
            None
        }
    };
    let num_vfs = count(&policy, fields, "numVfs", 0, u32::from(u16::MAX), errors);
    let mtu = count(&policy, fields, "mtu", MIN_MTU, MAX_MTU, errors);
    let device_type = match fields.get("deviceType") {
        None => DeviceType::Netdevice,
        Some(Value::String(text)) => match text.as_str() {
            "netdevice" => DeviceType::Netdevice,
            "vfio-pci" => DeviceType::VfioPci,
            other => {
                errors.push(PolicyError::key(
                    &policy,
                    "deviceType",
                    format!("{other:?}: expected `netdevice` or `vfio-pci`"),
                ));
                DeviceType::Netdevice
            }
        },
        Some(other) => {
            errors.push(PolicyError::key(
                &policy,
                "deviceType",
                format!("expected `netdevice` or `vfio-pci`, found {}", kind(other)),
            ));
            DeviceType::Netdevice
        }
    };
    if let (Some(selector), Some(num_vfs)) = (&nic_selector, num_vfs) {
        // the operator's rule: a range must fit in the policy's own numVfs
        for (key, entries) in [
            ("nicSelector.pfNames", &selector.pf_names),
            ("nicSelector.rootDevices", &selector.root_devices),
        ] {
            for entry in entries {
                if let Some(last) = entry.vfs.as_ref().and_then(last_index) {
                    if last >= num_vfs {
                        errors.push(PolicyError::key(
                            &policy,
                            key,
                            format!(
                                "{}#{}: VF {last} does not exist with numVfs {num_vfs} (VFs are numbered from 0)",
                                entry.target,
                                entry.vfs.as_ref().map(ToString::to_string).unwrap_or_default()
                            ),
                        ));
                    }
                }
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(Policy {
        name: name?,
        nic_selector: nic_selector?,
        num_vfs,
        mtu,
        device_type,
    })
}

pub(crate) fn last_index(ranges: &VfRanges) -> Option<u32> {
    ranges.ranges().iter().map(|r| *r.end()).max()
}

/// Kubernetes object names: DNS subdomain characters (plus `_`, harmless here).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn unknown_key(policy: &PolicyRef, key: &str, shown: &str, known: &[&str]) -> PolicyError {
    let message = match operator_only(key) {
        Some(why) => format!("not supported: {why}"),
        None => format!("unknown key (known: {})", known.join(", ")),
    };
    PolicyError::key(policy, shown, message)
}

/// A whole number in `min..=max`; None when absent or wrong (error pushed).
fn count(
    policy: &PolicyRef,
    fields: &Map<String, Value>,
    key: &str,
    min: u32,
    max: u32,
    errors: &mut Vec<PolicyError>,
) -> Option<u32> {
    let value = fields.get(key)?;
    match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            errors.push(PolicyError::key(
                policy,
                key,
                format!("{value}: expected a whole number from {min} to {max}"),
            ));
            None
        }
    }
}

fn parse_selector(
    policy: &PolicyRef,
    fields: &Map<String, Value>,
    errors: &mut Vec<PolicyError>,
) -> Option<NicSelector> {
    let before = errors.len();
    for key in fields
        .keys()
        .filter(|k| !SELECTOR_KEYS.contains(&k.as_str()))
    {
        errors.push(unknown_key(
            policy,
            key,
            &format!("nicSelector.{key}"),
            SELECTOR_KEYS,
        ));
    }
    let pf_names = entries(policy, fields, "pfNames", errors, |text| {
        if text.is_empty()
            || text.len() > 15
            || text.contains('/')
            || text.contains(char::is_whitespace)
        {
            Err("not a netdev name (1 to 15 characters, no '/' or spaces)".to_string())
        } else {
            Ok(PfTarget::Name(text.to_string()))
        }
    });
    let root_devices = entries(policy, fields, "rootDevices", errors, |text| {
        text.parse::<PciAddress>()
            .map(PfTarget::Address)
            .map_err(|e| e.to_string())
    });
    let vendor = hex_id(policy, fields, "vendor", errors);
    let device_id = hex_id(policy, fields, "deviceID", errors);
    if errors.len() > before {
        return None;
    }
    let selector = NicSelector {
        pf_names,
        root_devices,
        vendor,
        device_id,
    };
    if selector == NicSelector::default() {
        errors.push(PolicyError::key(
            policy,
            "nicSelector",
            "empty: give pfNames, rootDevices, vendor or deviceID (the operator's empty selector selects nothing)",
        ));
        return None;
    }
    let ranged = |list: &[PfSelector]| list.iter().any(|e| e.vfs.is_some());
    if ranged(&selector.pf_names) && ranged(&selector.root_devices) {
        errors.push(PolicyError::key(
            policy,
            "nicSelector.rootDevices",
            "a VF range is given in pfNames too: give it in one of them",
        ));
        return None;
    }
    Some(selector)
}

/// A list of `<pf>[#<vfs>]` strings.
fn entries(
    policy: &PolicyRef,
    fields: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<PolicyError>,
    target: impl Fn(&str) -> Result<PfTarget, String>,
) -> Vec<PfSelector> {
    let shown = format!("nicSelector.{key}");
    let items = match fields.get(key) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push(PolicyError::key(
                policy,
                shown,
                format!("expected a list of strings, found {}", kind(other)),
            ));
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{shown}[{i}]");
        let Value::String(text) = item else {
            errors.push(PolicyError::key(
                policy,
                at,
                format!("expected a string, found {}", kind(item)),
            ));
            continue;
        };
        let entry = match PfEntry::parse(text) {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(PolicyError::key(policy, at, format!("{text:?}: {e}")));
                continue;
            }
        };
        match target(&entry.pf) {
            Ok(target) => found.push(PfSelector {
                target,
                vfs: entry.vfs,
            }),
            Err(why) => errors.push(PolicyError::key(
                policy,
                at,
                format!("{:?}: {why}", entry.pf),
            )),
        }
    }
    found
}

/// `vendor`/`deviceID`: four hex digits as a string (a bare YAML number
/// would lose leading zeros, and the operator's API takes strings too).
fn hex_id(
    policy: &PolicyRef,
    fields: &Map<String, Value>,
    key: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<String> {
    let shown = format!("nicSelector.{key}");
    match fields.get(key)? {
        Value::String(text) => {
            let hex = text.strip_prefix("0x").unwrap_or(text).to_ascii_lowercase();
            if hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                Some(hex)
            } else {
                errors.push(PolicyError::key(
                    policy,
                    shown,
                    format!("{text:?}: expected four hex digits such as \"8086\""),
                ));
                None
            }
        }
        other => {
            errors.push(PolicyError::key(
                policy,
                shown,
                format!(
                    "expected a quoted string of four hex digits (\"8086\"), found {}",
                    kind(other)
                ),
            ));
            None
        }
    }
}
