//! Our slices as `resource.k8s.io/v1beta1` objects, for clusters that serve
//! DRA only in that version (Kubernetes 1.32 and 1.33), and back (what such
//! a cluster lists, as the `v1` objects the rest of `dra` works with). The
//! v1beta1 device wraps its fields in `basic`; the rest is the same. Pure.

use k8s_openapi::api::resource::{v1, v1beta1};

/// A device field we publish that has no conversion here yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "slice {slice}: device {device} uses {field}, which is not converted between v1 and v1beta1"
)]
pub struct ConversionError {
    pub slice: String,
    pub device: String,
    pub field: &'static str,
}

fn device(slice: &str, device: &v1::Device) -> Result<v1beta1::Device, ConversionError> {
    let unconverted = [
        ("capacity", device.capacity.is_some()),
        ("consumesCounters", device.consumes_counters.is_some()),
        ("taints", device.taints.is_some()),
        ("nodeName", device.node_name.is_some()),
        ("nodeSelector", device.node_selector.is_some()),
        ("allNodes", device.all_nodes.is_some()),
        ("bindingConditions", device.binding_conditions.is_some()),
    ];
    if let Some((field, _)) = unconverted.iter().find(|(_, set)| *set) {
        return Err(ConversionError {
            slice: slice.to_owned(),
            device: device.name.clone(),
            field,
        });
    }
    let attributes = device.attributes.as_ref().map(|attrs| {
        attrs
            .iter()
            .map(|(name, a)| {
                let value = v1beta1::DeviceAttribute {
                    bool: a.bool,
                    int: a.int,
                    string: a.string.clone(),
                    version: a.version.clone(),
                };
                (name.clone(), value)
            })
            .collect()
    });
    Ok(v1beta1::Device {
        name: device.name.clone(),
        basic: Some(v1beta1::BasicDevice {
            attributes,
            ..Default::default()
        }),
    })
}

/// The same slice in v1beta1.
pub fn slice_to_v1beta1(
    slice: &v1::ResourceSlice,
) -> Result<v1beta1::ResourceSlice, ConversionError> {
    let name = slice.metadata.name.clone().unwrap_or_default();
    let spec = &slice.spec;
    let devices = spec
        .devices
        .as_ref()
        .map(|devices| devices.iter().map(|d| device(&name, d)).collect())
        .transpose()?;
    Ok(v1beta1::ResourceSlice {
        metadata: slice.metadata.clone(),
        spec: v1beta1::ResourceSliceSpec {
            driver: spec.driver.clone(),
            node_name: spec.node_name.clone(),
            node_selector: spec.node_selector.clone(),
            all_nodes: spec.all_nodes,
            per_device_node_selection: spec.per_device_node_selection,
            pool: v1beta1::ResourcePool {
                name: spec.pool.name.clone(),
                generation: spec.pool.generation,
                resource_slice_count: spec.pool.resource_slice_count,
            },
            devices,
            shared_counters: None,
        },
    })
}

fn device_from_v1beta1(
    slice: &str,
    device: &v1beta1::Device,
) -> Result<v1::Device, ConversionError> {
    let basic = device.basic.clone().unwrap_or_default();
    let unconverted = [
        ("capacity", basic.capacity.is_some()),
        ("consumesCounters", basic.consumes_counters.is_some()),
        ("taints", basic.taints.is_some()),
        ("nodeName", basic.node_name.is_some()),
        ("nodeSelector", basic.node_selector.is_some()),
        ("allNodes", basic.all_nodes.is_some()),
        ("bindingConditions", basic.binding_conditions.is_some()),
    ];
    if let Some((field, _)) = unconverted.iter().find(|(_, set)| *set) {
        return Err(ConversionError {
            slice: slice.to_owned(),
            device: device.name.clone(),
            field,
        });
    }
    let attributes = basic.attributes.map(|attrs| {
        attrs
            .into_iter()
            .map(|(name, a)| {
                let value = v1::DeviceAttribute {
                    bool: a.bool,
                    int: a.int,
                    string: a.string,
                    version: a.version,
                };
                (name, value)
            })
            .collect()
    });
    Ok(v1::Device {
        name: device.name.clone(),
        attributes,
        ..Default::default()
    })
}

/// A v1beta1 slice as v1: the inverse of [`slice_to_v1beta1`], refusing
/// the same device fields.
pub fn slice_from_v1beta1(
    slice: &v1beta1::ResourceSlice,
) -> Result<v1::ResourceSlice, ConversionError> {
    let name = slice.metadata.name.clone().unwrap_or_default();
    let spec = &slice.spec;
    if spec.shared_counters.is_some() {
        return Err(ConversionError {
            slice: name,
            device: String::new(),
            field: "sharedCounters",
        });
    }
    let devices = spec
        .devices
        .as_ref()
        .map(|devices| {
            devices
                .iter()
                .map(|d| device_from_v1beta1(&name, d))
                .collect()
        })
        .transpose()?;
    Ok(v1::ResourceSlice {
        metadata: slice.metadata.clone(),
        spec: v1::ResourceSliceSpec {
            driver: spec.driver.clone(),
            node_name: spec.node_name.clone(),
            node_selector: spec.node_selector.clone(),
            all_nodes: spec.all_nodes,
            per_device_node_selection: spec.per_device_node_selection,
            pool: v1::ResourcePool {
                name: spec.pool.name.clone(),
                generation: spec.pool.generation,
                resource_slice_count: spec.pool.resource_slice_count,
            },
            devices,
            shared_counters: None,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dra::slices::{pool_slices, NodeRef, SliceContext};
    use crate::pool::{Pool, PoolDevice};
    use std::collections::HashMap;

    #[test]
    fn a_slice_converts_with_every_attribute() {
        let id = "0000:3b:02.0".to_string();
        let pool = Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices: vec![PoolDevice {
                numa_node: Some(1),
                ..crate::pool::test_vf(&id)
            }],
        };
        let node = NodeRef {
            name: "worker-1".into(),
            uid: "u".into(),
        };
        let roots = HashMap::new();
        let ctx = SliceContext {
            driver: "sriov-rs.invalid",
            node: &node,
            pcie_roots: &roots,
        };
        let slice = pool_slices(&ctx, &pool, 4).unwrap().remove(0);
        let beta = slice_to_v1beta1(&slice).unwrap();
        assert_eq!(beta.metadata, slice.metadata);
        assert_eq!(beta.spec.pool.generation, 4);
        assert_eq!(beta.spec.node_name.as_deref(), Some("worker-1"));
        let v1_device = &slice.spec.devices.as_ref().unwrap()[0];
        let beta_device = &beta.spec.devices.as_ref().unwrap()[0];
        assert_eq!(beta_device.name, "0000-3b-02-0");
        let attrs = beta_device
            .basic
            .as_ref()
            .unwrap()
            .attributes
            .as_ref()
            .unwrap();
        assert_eq!(attrs.len(), v1_device.attributes.as_ref().unwrap().len());
        assert_eq!(attrs["numaNode"].int, Some(1));
        assert_eq!(
            attrs["k8s.cni.cncf.io/resourceName"].string.as_deref(),
            Some("intel.com/sriov_net")
        );

        // and back: the same v1 slice, so a listed v1beta1 slice compares
        // equal to the one we would publish
        assert_eq!(slice_from_v1beta1(&beta).unwrap(), slice);
        let mut beta_tainted = beta;
        beta_tainted.spec.devices.as_mut().unwrap()[0]
            .basic
            .as_mut()
            .unwrap()
            .taints = Some(vec![]);
        assert_eq!(
            slice_from_v1beta1(&beta_tainted).unwrap_err().field,
            "taints"
        );

        let mut tainted = slice;
        tainted.spec.devices.as_mut().unwrap()[0].taints = Some(vec![]);
        assert_eq!(slice_to_v1beta1(&tainted).unwrap_err().field, "taints");
    }
}
