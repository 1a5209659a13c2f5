//! ResourceSlice validation as the API server does it for
//! `resource.k8s.io/v1`, for the rules our publisher could break. Pure.
//! Each refusal is one message naming the field, like the API server's
//! field errors.

use crate::dra::names::{
    is_dns_label, is_dns_subdomain, is_pool_name, is_qualified_attribute_name,
};
use crate::dra::slices::{MAX_ATTRIBUTES_PER_DEVICE, MAX_DEVICES_PER_SLICE};
use k8s_openapi::api::resource::v1::ResourceSlice;
use std::collections::HashSet;

/// A driver name is a DNS subdomain of at most 63 characters.
pub const DRIVER_NAME_MAX: usize = 63;
/// Longest string or version attribute value.
pub const ATTRIBUTE_VALUE_MAX: usize = 64;

/// Every reason the API server would refuse `slice`; empty when valid.
pub fn validate_slice(slice: &ResourceSlice) -> Vec<String> {
    let mut errors = Vec::new();
    let mut refuse = |message: String| errors.push(message);
    match slice.metadata.name.as_deref() {
        Some(name) if is_dns_subdomain(name) => {}
        Some(name) => refuse(format!("metadata.name: {name:?} is not a DNS subdomain")),
        None => refuse("metadata.name: required".into()),
    }
    let spec = &slice.spec;
    if spec.driver.len() > DRIVER_NAME_MAX || !is_dns_subdomain(&spec.driver) {
        refuse(format!(
            "spec.driver: {:?} is not a DNS subdomain of at most {DRIVER_NAME_MAX} characters",
            spec.driver
        ));
    }
    if !is_pool_name(&spec.pool.name) {
        refuse(format!(
            "spec.pool.name: {:?} is not DNS subdomains separated by '/'",
            spec.pool.name
        ));
    }
    if spec.pool.generation < 0 {
        refuse(format!(
            "spec.pool.generation: {} is negative",
            spec.pool.generation
        ));
    }
    if spec.pool.resource_slice_count <= 0 {
        refuse(format!(
            "spec.pool.resourceSliceCount: {} must be positive",
            spec.pool.resource_slice_count
        ));
    }
    let node_name = spec.node_name.as_deref().filter(|n| !n.is_empty());
    let selectors = [
        node_name.is_some(),
        spec.node_selector.is_some(),
        spec.all_nodes == Some(true),
        spec.per_device_node_selection == Some(true),
    ];
    let set = selectors.iter().filter(|s| **s).count();
    if set != 1 {
        refuse(format!(
            "spec: exactly one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection must be set, found {set}"
        ));
    }
    if let Some(node) = node_name {
        if !is_dns_subdomain(node) {
            refuse(format!("spec.nodeName: {node:?} is not a DNS subdomain"));
        }
    }
    let devices = spec.devices.as_deref().unwrap_or_default();
    if devices.len() > MAX_DEVICES_PER_SLICE {
        refuse(format!(
            "spec.devices: {} devices, at most {MAX_DEVICES_PER_SLICE} allowed",
            devices.len()
        ));
    }
    let mut names = HashSet::new();
    for (i, device) in devices.iter().enumerate() {
        let at = format!("spec.devices[{i}]");
        if !is_dns_label(&device.name) {
            refuse(format!("{at}.name: {:?} is not a DNS label", device.name));
        }
        if !names.insert(device.name.as_str()) {
            refuse(format!("{at}.name: {:?} is a duplicate", device.name));
        }
        let attributes = device.attributes.as_ref();
        let capacity = device.capacity.as_ref();
        let total = attributes.map_or(0, |a| a.len()) + capacity.map_or(0, |c| c.len());
        if total > MAX_ATTRIBUTES_PER_DEVICE {
            refuse(format!(
                "{at}: {total} attributes and capacities, at most {MAX_ATTRIBUTES_PER_DEVICE} allowed"
            ));
        }
        let capacity_names = capacity.into_iter().flat_map(|c| c.keys());
        for name in attributes
            .into_iter()
            .flat_map(|a| a.keys())
            .chain(capacity_names)
        {
            if !is_qualified_attribute_name(name) {
                refuse(format!(
                    "{at}: {name:?} is not a valid attribute or capacity name"
                ));
            }
        }
        for (name, value) in attributes.into_iter().flatten() {
            let set = [
                value.bool.is_some(),
                value.int.is_some(),
                value.string.is_some(),
                value.version.is_some(),
            ];
            let count = set.iter().filter(|s| **s).count();
            if count != 1 {
                refuse(format!(
                    "{at}.attributes[{name}]: exactly one of bool, int, string, version must be set, found {count}"
                ));
            }
            for text in [&value.string, &value.version].into_iter().flatten() {
                if text.len() > ATTRIBUTE_VALUE_MAX {
                    refuse(format!(
                        "{at}.attributes[{name}]: value longer than {ATTRIBUTE_VALUE_MAX} characters"
                    ));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelector;
    use k8s_openapi::api::resource::v1::{
        Device, DeviceAttribute, ResourcePool, ResourceSliceSpec,
    };
    use std::collections::BTreeMap;

    pub(crate) fn slice(devices: usize) -> ResourceSlice {
        let mut slice = ResourceSlice::default();
        slice.metadata.name = Some("worker-1.sriov-rs.invalid.sriov-net-0".into());
        slice.spec = ResourceSliceSpec {
            driver: "sriov-rs.invalid".into(),
            node_name: Some("worker-1".into()),
            pool: ResourcePool {
                name: "worker-1/intel.com/sriov-net".into(),
                generation: 1,
                resource_slice_count: 1,
            },
            devices: Some(
                (0..devices)
                    .map(|i| Device {
                        name: format!("dev-{i}"),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        slice
    }

    fn refused(slice: &ResourceSlice, needle: &str) {
        let errors = validate_slice(slice);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{needle:?} not in {errors:?}"
        );
    }

    #[test]
    fn a_good_slice_passes() {
        assert_eq!(validate_slice(&slice(128)), Vec::<String>::new());
    }

    #[test]
    fn too_many_devices() {
        refused(&slice(129), "129 devices, at most 128");
    }

    #[test]
    fn device_names_must_be_unique_dns_labels() {
        let mut s = slice(2);
        s.spec.devices.as_mut().unwrap()[0].name = "0000:3b:02.0".into();
        refused(&s, "is not a DNS label");
        let mut s = slice(2);
        s.spec.devices.as_mut().unwrap()[1].name = "dev-0".into();
        refused(&s, "is a duplicate");
    }

    #[test]
    fn attribute_limits_names_and_values() {
        let mut s = slice(1);
        let device = &mut s.spec.devices.as_mut().unwrap()[0];
        let string = |v: &str| DeviceAttribute {
            string: Some(v.into()),
            ..Default::default()
        };
        device.attributes = Some((0..33).map(|i| (format!("a{i}"), string("x"))).collect());
        refused(&s, "33 attributes and capacities, at most 32");
        let device = &mut s.spec.devices.as_mut().unwrap()[0];
        device.attributes = Some(BTreeMap::from([
            ("bad-name".to_string(), string("x")),
            ("long".to_string(), string(&"x".repeat(65))),
            (
                "two".to_string(),
                DeviceAttribute {
                    int: Some(1),
                    bool: Some(true),
                    ..Default::default()
                },
            ),
        ]));
        refused(&s, "\"bad-name\" is not a valid attribute");
        refused(&s, "longer than 64");
        refused(
            &s,
            "exactly one of bool, int, string, version must be set, found 2",
        );
    }

    #[test]
    fn exactly_one_node_selector_field() {
        let mut s = slice(1);
        s.spec.all_nodes = Some(true);
        refused(&s, "exactly one of nodeName, nodeSelector, allNodes, perDeviceNodeSelection must be set, found 2");
        let mut s = slice(1);
        s.spec.node_name = None;
        refused(&s, "found 0");
        let mut s = slice(1);
        s.spec.node_name = None;
        s.spec.node_selector = Some(NodeSelector::default());
        assert!(validate_slice(&s).is_empty());
    }

    #[test]
    fn names_of_the_slice_driver_and_pool() {
        let mut s = slice(1);
        s.metadata.name = Some("Worker_1".into());
        s.spec.driver = "x".repeat(64);
        s.spec.pool.name = "worker-1/sriov_net".into();
        s.spec.pool.resource_slice_count = 0;
        refused(&s, "metadata.name");
        refused(&s, "spec.driver");
        refused(&s, "spec.pool.name");
        refused(&s, "resourceSliceCount: 0 must be positive");
    }
}
