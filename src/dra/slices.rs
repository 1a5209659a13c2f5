//! A node's pools as ResourceSlices (`resource.k8s.io/v1`): one DRA pool per
//! configured pool, split into slices of at most [`MAX_DEVICES_PER_SLICE`]
//! devices that all carry the pool's generation and slice count. Pure: the
//! facts outside the pool (the PCIe root of each function) come in as data.

use super::names::{self, device_name, is_dns_subdomain, is_pool_name, label_of};
use crate::pool::{Pool, PoolDevice};
use k8s_openapi::api::resource::v1::{
    Device, DeviceAttribute, ResourcePool, ResourceSlice, ResourceSliceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use std::collections::{BTreeMap, HashMap};

/// The API server refuses a slice with more devices (64 with taints or
/// counters, which we do not publish).
pub const MAX_DEVICES_PER_SLICE: usize = 128;
/// The API server refuses a device with more attributes plus capacities.
pub const MAX_ATTRIBUTES_PER_DEVICE: usize = 32;

/// Domain of the standard attributes every DRA driver may publish.
pub const STANDARD_DOMAIN: &str = "resource.kubernetes.io";
/// Domain of the attributes Multus reads to fill the CNI's `deviceID`.
pub const CNI_DOMAIN: &str = "k8s.cni.cncf.io";

/// The Node that owns the slices: they vanish with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub name: String,
    pub uid: String,
}

/// What one node publishes for one driver.
#[derive(Debug, Clone)]
pub struct SliceContext<'a> {
    /// The driver name, a DNS subdomain.
    pub driver: &'a str,
    pub node: &'a NodeRef,
    /// PCI address → PCIe root (`pci0000:3a`), for the standard attribute.
    pub pcie_roots: &'a HashMap<String, String>,
}

/// Why a pool cannot be published; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error("driver name {0:?} is not a DNS subdomain")]
    DriverName(String),
    #[error("node name {0:?} is not a DNS subdomain")]
    NodeName(String),
    #[error("pool {resource}: {name:?} is not a valid ResourceSlice pool name")]
    PoolName { resource: String, name: String },
    #[error("pool {resource}: device {id} has no DNS-label form")]
    DeviceName { resource: String, id: String },
    #[error("pool {resource}: devices {first} and {second} would both be named {name}")]
    DeviceNameClash {
        resource: String,
        first: String,
        second: String,
        name: String,
    },
    #[error("pool {resource}: slice name {name:?} is longer than a DNS subdomain may be")]
    SliceName { resource: String, name: String },
}

/// The DRA pool name of a configured pool on a node:
/// `<node>/<prefix>/<name as a label>` (`worker-1/intel.com/sriov-net`).
/// Pool names are unique per driver across the cluster, hence the node.
pub fn pool_name(node: &str, resource_name: &str) -> Option<String> {
    let (prefix, name) = resource_name.split_once('/')?;
    let name = format!("{node}/{}/{}", prefix.to_ascii_lowercase(), label_of(name)?);
    is_pool_name(&name).then_some(name)
}

fn string(value: &str) -> DeviceAttribute {
    DeviceAttribute {
        string: Some(value.to_owned()),
        ..Default::default()
    }
}

fn int(value: u32) -> DeviceAttribute {
    DeviceAttribute {
        int: Some(i64::from(value)),
        ..Default::default()
    }
}

fn boolean(value: bool) -> DeviceAttribute {
    DeviceAttribute {
        bool: Some(value),
        ..Default::default()
    }
}

/// A device's attributes. Unqualified names are in the driver's domain
/// (`device.attributes["<driver>"].vfIndex` in CEL). At most 15, far below
/// [`MAX_ATTRIBUTES_PER_DEVICE`].
pub fn device_attributes(
    pool: &Pool,
    device: &PoolDevice,
    pcie_root: Option<&str>,
) -> BTreeMap<String, DeviceAttribute> {
    let mut attrs = BTreeMap::new();
    let mut put = |name: &str, value: DeviceAttribute| {
        attrs.insert(name.to_owned(), value);
    };
    // An SF is not a PCI function: the standard bus ID would name its parent.
    if device.aux_type.is_none() {
        put(
            &format!("{STANDARD_DOMAIN}/pciBusID"),
            string(&device.pci_address),
        );
    }
    if let Some(root) = pcie_root {
        put(&format!("{STANDARD_DOMAIN}/pcieRoot"), string(root));
    }
    // What Multus needs: the ID the CNI gets as `deviceID`, and the resource
    // name a NetworkAttachmentDefinition's annotation names.
    put(&format!("{CNI_DOMAIN}/deviceID"), string(&device.id));
    put(
        &format!("{CNI_DOMAIN}/resourceName"),
        string(&pool.resource_name),
    );
    put("pciAddress", string(&device.pci_address));
    put("deviceType", string(pool.device_type));
    if !device.vendor.is_empty() {
        put("vendor", string(&device.vendor));
    }
    if !device.device.is_empty() {
        put("deviceID", string(&device.device));
    }
    if let Some(driver) = &device.driver {
        put("driver", string(driver));
    }
    if let Some(numa) = device.numa_node {
        put("numaNode", int(numa));
    }
    if let Some(pf) = &device.pf_name {
        put("pfName", string(pf));
    }
    if let Some(pf) = &device.pf_pci_address {
        put("pfPciAddress", string(pf));
    }
    if let Some(index) = device.vf_index {
        put("vfIndex", int(index));
    }
    if let Some(link) = &device.link_type {
        put("linkType", string(link));
    }
    put("rdmaCapable", boolean(!device.rdma_devices.is_empty()));
    attrs
}

/// The slices of one pool at `generation`, devices sorted by name and split
/// into chunks of at most [`MAX_DEVICES_PER_SLICE`]. A pool without devices
/// is one empty slice, so the pool still exists with a count of one.
/// Slice names are `<node>.<driver>.<prefix>.<name label>-<index>`
/// (the pool name's parts after the node): stable, so a publisher updates
/// a slice in place, and distinct for pools that differ only in prefix.
pub fn pool_slices(
    ctx: &SliceContext<'_>,
    pool: &Pool,
    generation: i64,
) -> Result<Vec<ResourceSlice>, SliceError> {
    if !is_dns_subdomain(ctx.driver) {
        return Err(SliceError::DriverName(ctx.driver.to_owned()));
    }
    if !is_dns_subdomain(&ctx.node.name) {
        return Err(SliceError::NodeName(ctx.node.name.clone()));
    }
    let resource = || pool.resource_name.clone();
    let pool_name =
        pool_name(&ctx.node.name, &pool.resource_name).ok_or_else(|| SliceError::PoolName {
            resource: resource(),
            name: pool.resource_name.clone(),
        })?;
    let mut named: BTreeMap<String, &PoolDevice> = BTreeMap::new();
    for device in &pool.devices {
        let name = device_name(&device.id).ok_or_else(|| SliceError::DeviceName {
            resource: resource(),
            id: device.id.to_string(),
        })?;
        if let Some(first) = named.insert(name.clone(), device) {
            return Err(SliceError::DeviceNameClash {
                resource: resource(),
                first: first.id.to_string(),
                second: device.id.to_string(),
                name,
            });
        }
    }
    let devices: Vec<Device> = named
        .into_iter()
        .map(|(name, device)| Device {
            name,
            attributes: Some(device_attributes(
                pool,
                device,
                ctx.pcie_roots
                    .get(device.pci_address.as_str())
                    .map(String::as_str),
            )),
            ..Default::default()
        })
        .collect();
    let chunks: Vec<Vec<Device>> = if devices.is_empty() {
        vec![Vec::new()]
    } else {
        devices
            .chunks(MAX_DEVICES_PER_SLICE)
            .map(<[Device]>::to_vec)
            .collect()
    };
    let count = chunks.len() as i64;
    // the label after the last '/' of the pool name: the config's name
    let pool_part = pool_name
        .split_once('/')
        .map(|(_, rest)| rest.replace('/', "."))
        .unwrap_or_default();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, devices)| {
            let name = format!("{}.{}.{pool_part}-{index}", ctx.node.name, ctx.driver);
            if name.len() > names::DNS_SUBDOMAIN_MAX {
                return Err(SliceError::SliceName {
                    resource: resource(),
                    name,
                });
            }
            Ok(ResourceSlice {
                metadata: ObjectMeta {
                    name: Some(name),
                    owner_references: Some(vec![node_owner(ctx.node)]),
                    ..Default::default()
                },
                spec: ResourceSliceSpec {
                    driver: ctx.driver.to_owned(),
                    node_name: Some(ctx.node.name.clone()),
                    pool: ResourcePool {
                        name: pool_name.clone(),
                        generation,
                        resource_slice_count: count,
                    },
                    devices: Some(devices),
                    ..Default::default()
                },
            })
        })
        .collect()
}

/// The owner reference that ties a slice to its Node.
pub fn node_owner(node: &NodeRef) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name.clone(),
        uid: node.uid.clone(),
        controller: Some(true),
        ..Default::default()
    }
}

/// The generation to publish a pool's new slices at: the published one
/// when the devices are unchanged, else one more, so consumers drop slices
/// of the old generation. With nothing published this is 1;
/// `publish::Generations` keeps a restarted pool counting on.
pub fn next_generation(published: &[ResourceSlice], fresh: &[ResourceSlice]) -> i64 {
    let current = published
        .iter()
        .map(|s| s.spec.pool.generation)
        .max()
        .unwrap_or(0);
    let devices = |slices: &[ResourceSlice]| -> Vec<Device> {
        slices
            .iter()
            .flat_map(|s| s.spec.devices.clone().unwrap_or_default())
            .collect()
    };
    if !published.is_empty()
        && published.len() == fresh.len()
        && devices(published) == devices(fresh)
    {
        current
    } else {
        current + 1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dra::names::{is_dns_label, is_qualified_attribute_name};

    pub(crate) fn vf(pf: u8, index: u32) -> PoolDevice {
        let fn_no = index % 8;
        let slot = index / 8 + 1;
        let id = format!("0000:{pf:02x}:{slot:02x}.{fn_no}");
        PoolDevice {
            pf_name: Some(compact_str::format_compact!("ens{pf}f0")),
            pf_pci_address: Some(compact_str::format_compact!("0000:{pf:02x}:00.0")),
            vf_index: Some(index),
            iommu_group: Some(index),
            ..crate::pool::test_vf(&id)
        }
    }

    fn pool(devices: Vec<PoolDevice>) -> Pool {
        Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices,
        }
    }

    fn node() -> NodeRef {
        NodeRef {
            name: "worker-1".into(),
            uid: "node-uid".into(),
        }
    }

    #[test]
    fn a_300_vf_pool_is_three_slices_of_one_generation() {
        // 300 VFs over 3 PFs: 100 each
        let devices = (0..300)
            .map(|i| vf(0x3b + (i / 100) as u8, i % 100))
            .collect();
        let roots = HashMap::new();
        let node = node();
        let ctx = SliceContext {
            driver: "sriov-rs.invalid",
            node: &node,
            pcie_roots: &roots,
        };
        let slices = pool_slices(&ctx, &pool(devices), 7).unwrap();
        let counts: Vec<usize> = slices
            .iter()
            .map(|s| s.spec.devices.as_ref().unwrap().len())
            .collect();
        assert_eq!(counts, vec![128, 128, 44]);
        for (i, slice) in slices.iter().enumerate() {
            assert_eq!(slice.spec.pool.resource_slice_count, 3);
            assert_eq!(slice.spec.pool.generation, 7);
            assert_eq!(slice.spec.pool.name, "worker-1/intel.com/sriov-net");
            assert_eq!(slice.spec.driver, "sriov-rs.invalid");
            assert_eq!(
                slice.metadata.name.as_deref(),
                Some(format!("worker-1.sriov-rs.invalid.intel.com.sriov-net-{i}").as_str())
            );
            let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str()),
                ("Node", "node-uid")
            );
            // exactly one node selector field
            let spec = &slice.spec;
            let set = [
                spec.node_name.is_some(),
                spec.node_selector.is_some(),
                spec.all_nodes.is_some(),
                spec.per_device_node_selection.is_some(),
            ];
            assert_eq!(set.iter().filter(|s| **s).count(), 1);
            assert_eq!(spec.node_name.as_deref(), Some("worker-1"));
        }
        let mut all: Vec<&str> = slices
            .iter()
            .flat_map(|s| s.spec.devices.as_ref().unwrap())
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(all.len(), 300);
        assert!(all.iter().all(|n| is_dns_label(n)), "{all:?}");
        all.dedup();
        assert_eq!(all.len(), 300, "names unique");
    }

    #[test]
    fn attributes_are_the_ones_peers_read_and_within_limits() {
        let mut device = vf(0x3b, 1);
        device.rdma_devices = vec!["mlx5_0".into()];
        let p = pool(vec![device.clone()]);
        let attrs = device_attributes(&p, &device, Some("pci0000:3a"));
        // every attribute this driver publishes, within the API's limit
        assert_eq!(attrs.len(), 15);
        assert!(attrs.len() <= MAX_ATTRIBUTES_PER_DEVICE);
        assert!(
            attrs.keys().all(|k| is_qualified_attribute_name(k)),
            "{attrs:?}"
        );
        let s = |k: &str| attrs[k].string.clone().unwrap();
        assert_eq!(s("resource.kubernetes.io/pciBusID"), "0000:3b:01.1");
        assert_eq!(s("resource.kubernetes.io/pcieRoot"), "pci0000:3a");
        assert_eq!(s("k8s.cni.cncf.io/deviceID"), "0000:3b:01.1");
        assert_eq!(s("k8s.cni.cncf.io/resourceName"), "intel.com/sriov_net");
        assert_eq!(s("pfName"), "ens59f0");
        assert_eq!(s("pfPciAddress"), "0000:3b:00.0");
        assert_eq!((s("vendor"), s("deviceID")), ("8086".into(), "154c".into()));
        assert_eq!(s("driver"), "iavf");
        assert_eq!(s("linkType"), "ether");
        assert_eq!(attrs["vfIndex"].int, Some(1));
        assert_eq!(attrs["numaNode"].int, Some(0));
        assert_eq!(attrs["rdmaCapable"].bool, Some(true));
        // every attribute has exactly one value
        for value in attrs.values() {
            let set = [
                value.string.is_some(),
                value.int.is_some(),
                value.bool.is_some(),
                value.version.is_some(),
            ];
            assert_eq!(set.iter().filter(|s| **s).count(), 1);
        }
        // an SF has no PCI bus ID of its own
        let mut sf = device;
        sf.id = "mlx5_core.sf.2".into();
        sf.aux_type = Some("sf".into());
        let attrs = device_attributes(&p, &sf, None);
        assert!(!attrs.contains_key("resource.kubernetes.io/pciBusID"));
        assert_eq!(
            attrs["k8s.cni.cncf.io/deviceID"].string.as_deref(),
            Some("mlx5_core.sf.2")
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_offender() {
        let roots = HashMap::new();
        let node = node();
        let ctx = SliceContext {
            driver: "Not_A_Domain",
            node: &node,
            pcie_roots: &roots,
        };
        let p = pool(vec![vf(0x3b, 0)]);
        assert_eq!(
            pool_slices(&ctx, &p, 1).unwrap_err(),
            SliceError::DriverName("Not_A_Domain".into())
        );
        let ctx = SliceContext {
            driver: "sriov-rs.invalid",
            ..ctx
        };
        let mut clash = vf(0x3b, 0);
        clash.id = "0000-3b-01-0".into();
        let p = pool(vec![vf(0x3b, 0), clash]);
        assert!(matches!(
            pool_slices(&ctx, &p, 1),
            Err(SliceError::DeviceNameClash { .. })
        ));
        // pools that differ only in prefix get distinct pools and slices
        let mut other = pool(vec![vf(0x3b, 0)]);
        other.resource_name = "example.com/sriov_net".into();
        let a = pool_slices(&ctx, &pool(vec![vf(0x3b, 0)]), 1).unwrap();
        let b = pool_slices(&ctx, &other, 1).unwrap();
        assert_ne!(a[0].metadata.name, b[0].metadata.name);
        assert_ne!(a[0].spec.pool.name, b[0].spec.pool.name);
        let empty = pool_slices(&ctx, &pool(vec![]), 1).unwrap();
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].spec.pool.resource_slice_count, 1);
    }

    #[test]
    fn generation_moves_only_when_devices_change() {
        let roots = HashMap::new();
        let node = node();
        let ctx = SliceContext {
            driver: "sriov-rs.invalid",
            node: &node,
            pcie_roots: &roots,
        };
        let p = pool(vec![vf(0x3b, 0), vf(0x3b, 1)]);
        let first = pool_slices(&ctx, &p, 1).unwrap();
        assert_eq!(next_generation(&[], &first), 1);
        let again = pool_slices(&ctx, &p, 1).unwrap();
        assert_eq!(next_generation(&first, &again), 1);
        let fewer = pool_slices(&ctx, &pool(vec![vf(0x3b, 0)]), 1).unwrap();
        assert_eq!(next_generation(&first, &fewer), 2);
    }
}
