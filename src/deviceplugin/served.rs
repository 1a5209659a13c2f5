//! What one pool's server serves: each device's kubelet view (ID, health,
//! NUMA) and everything Allocate hands out for it (device nodes, the
//! `_INFO` providers, the device-info file), computed once per pool change
//! so that the gRPC handlers only look things up.
//!
//! Pure: the facts that live outside the pool (uio/RDMA char devices,
//! no-IOMMU groups, `/dev` nodes) come through [`NodeFacts`].

use crate::config::{AllocationApi, DeviceType, Resource};
use crate::pool::{drain_freeing, Pool, PoolDevice};
use crate::sysfs::{RdmaCharDevices, SysfsError, SysfsRoot};
use compact_str::CompactString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One device node for a container: `permissions` is always `rw`, as upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeSpec {
    pub host_path: String,
    pub container_path: String,
}

impl NodeSpec {
    fn same(path: String) -> Self {
        NodeSpec {
            host_path: path.clone(),
            container_path: path,
        }
    }
}

/// `_INFO` content for one device: provider → key → value, serialized as
/// nested maps sorted by key (as Go's JSON encoder sorts them).
///
/// Kept as a short list rather than nested maps: a pool holds one per
/// device, most of them a single `generic.deviceID`, and a map per
/// provider costs about a kilobyte per device (a B-tree node is allocated
/// whole) where the list costs one small allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoProviders {
    /// (provider, key, value); providers and keys are the fixed names
    /// upstream uses.
    entries: Vec<(&'static str, &'static str, CompactString)>,
    /// The `extra` provider: the resource's `additionalInfo` for the
    /// device; present (even empty) when the resource has any.
    /// Boxed: few resources have `additionalInfo`, and every served device
    /// would otherwise carry the map's 24 bytes (boxed, 8).
    #[allow(clippy::box_collection)]
    extra: Option<Box<BTreeMap<String, String>>>,
}

impl InfoProviders {
    /// Set `provider.key`, replacing an earlier value.
    pub fn insert(
        &mut self,
        provider: &'static str,
        key: &'static str,
        value: impl Into<CompactString>,
    ) {
        let value = value.into();
        match self
            .entries
            .iter_mut()
            .find(|(p, k, _)| *p == provider && *k == key)
        {
            Some(entry) => entry.2 = value,
            None => {
                // a plain VF has one entry: growth by doubling would give
                // every device room for four
                self.entries.reserve_exact(1);
                self.entries.push((provider, key, value))
            }
        }
    }

    /// Set the `extra` provider's keys.
    pub fn set_extra(&mut self, extra: BTreeMap<String, String>) {
        self.extra = Some(Box::new(extra));
    }

    /// provider → key → value, sorted.
    pub fn providers(&self) -> BTreeMap<&str, BTreeMap<&str, &str>> {
        let mut providers: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
        for (provider, key, value) in &self.entries {
            providers
                .entry(*provider)
                .or_default()
                .insert(*key, value.as_str());
        }
        if let Some(extra) = &self.extra {
            providers.insert(
                "extra",
                extra
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            );
        }
        providers
    }
}

impl serde::Serialize for InfoProviders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.providers().serialize(serializer)
    }
}

/// The `pci` object of a device-info file (spec 1.1.0). Fields are in
/// key order: files come out with sorted keys, as they always have.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PciDeviceInfo {
    #[serde(rename = "pci-address")]
    pub pci_address: CompactString,
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pub pf_pci_address: Option<CompactString>,
    #[serde(rename = "rdma-device", skip_serializing_if = "Option::is_none")]
    pub rdma_device: Option<String>,
    /// Always `/dev/vhost-net` when present.
    #[serde(rename = "vhost-net", skip_serializing_if = "Option::is_none")]
    pub vhost_net: Option<&'static str>,
}

/// The `vdpa` object of a device-info file (spec 1.1.0), fields in key order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VdpaDeviceInfo {
    /// `vhost` or `virtio`
    pub driver: String,
    #[serde(rename = "parent-device")]
    pub parent_device: String,
    /// `/dev/vhost-vdpa-N`, vhost only
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(rename = "pci-address")]
    pub pci_address: String,
    #[serde(rename = "pf-pci-address", skip_serializing_if = "Option::is_none")]
    pub pf_pci_address: Option<String>,
}

/// A device-info file's content: a PCI device, or a vDPA device on one.
/// The vDPA one is boxed: few devices have one, and every served device
/// would otherwise carry its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceInfo {
    Pci(PciDeviceInfo),
    Vdpa(Box<VdpaDeviceInfo>),
}

/// A device-info file, keys in sorted order. Serialized straight from the
/// structs: a file per device is written at start when PodResources is
/// off, and a `serde_json::Value` on the way costs a map per object.
#[derive(serde::Serialize)]
struct DeviceInfoFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pci: Option<&'a PciDeviceInfo>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vdpa: Option<&'a VdpaDeviceInfo>,
    version: &'static str,
}

impl DeviceInfo {
    /// The file's JSON: `{"pci":{...},"type":"pci","version":"1.1.0"}`.
    pub fn file_content(&self) -> String {
        let file = match self {
            DeviceInfo::Pci(pci) => DeviceInfoFile {
                pci: Some(pci),
                kind: "pci",
                vdpa: None,
                version: "1.1.0",
            },
            DeviceInfo::Vdpa(vdpa) => DeviceInfoFile {
                pci: None,
                kind: "vdpa",
                vdpa: Some(vdpa),
                version: "1.1.0",
            },
        };
        // structs of strings always serialize
        serde_json::to_string(&file).unwrap_or_default()
    }
}

/// One device as the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedDevice {
    pub id: CompactString,
    pub healthy: bool,
    /// The links its health follows (see [`super::link_health`]).
    pub links: DeviceLinks,
    /// Reported to the kubelet unless the pool excludes topology.
    pub numa_node: Option<u32>,
    /// PF PCI address: the unit `pack`/`spread` count in.
    pub pf: Option<CompactString>,
    pub vf_index: Option<u32>,
    pub nodes: Vec<NodeSpec>,
    pub info: InfoProviders,
    /// Only for netDevice pools, whose devices the CNI consumes.
    pub device_info: Option<DeviceInfo>,
}

impl ServedDevice {
    /// This device with `healthy`: the same shared device when that is its
    /// health already, else a copy.
    pub fn with_health(self: &Arc<Self>, healthy: bool) -> Arc<ServedDevice> {
        if self.healthy == healthy {
            return self.clone();
        }
        Arc::new(ServedDevice {
            healthy,
            ..(**self).clone()
        })
    }
}

/// CDI kind suffix per device type (`<prefix>/net-pci`, ...), as upstream names them.
pub fn cdi_kind_short(device_type: DeviceType) -> &'static str {
    match device_type {
        DeviceType::NetDevice => "net-pci",
        DeviceType::Accelerator => "net-accel",
        DeviceType::AuxNetDevice => "net-sf",
    }
}

/// The netdevs a device's traffic depends on, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceLinks {
    /// Its PF's netdev.
    pub pf: Option<CompactString>,
    /// Its own netdev on the host (a VF's, a PF's own).
    pub own: Option<CompactString>,
}

/// A pool ready to serve.
///
/// Devices are shared (`Arc`): the daemon keeps a pool as discovery gave
/// it, as served with link health, and as handed to the runner, and a
/// copy of the pool should cost a pointer per device, not the device;
/// only a device whose health changes is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedPool {
    /// `<prefix>/<name>`
    pub resource_name: String,
    pub prefix: String,
    pub name: String,
    pub device_type: DeviceType,
    pub exclude_topology: bool,
    /// `pack` unless the config asks for `spread` (see docs/device-plugin.md).
    pub spread: bool,
    /// Devices follow their links' state (`linkHealth`, default true).
    pub link_health: bool,
    /// Which kubelet API serves it (`allocationApi`): a running pool is
    /// known by this and its resource name, since a pool moving between
    /// the two APIs is served by both while a pod holds one of its VFs.
    pub api: AllocationApi,
    pub devices: Vec<Arc<ServedDevice>>,
    /// Device ID → position; shared by copies with the same devices.
    index: Arc<IdIndex>,
}

impl ServedPool {
    pub fn device(&self, id: &str) -> Option<&ServedDevice> {
        let position = self.index.find(&self.devices, id)?;
        self.devices.get(position).map(|device| &**device)
    }

    /// The same pool serving `devices` instead of its own.
    pub fn with_devices(&self, devices: Vec<Arc<ServedDevice>>) -> ServedPool {
        // the same IDs in the same order (a health change): same index
        let same_ids = devices.len() == self.devices.len()
            && devices.iter().zip(&self.devices).all(|(a, b)| a.id == b.id);
        let index = if same_ids {
            self.index.clone()
        } else {
            index_by_id(&devices)
        };
        ServedPool {
            resource_name: self.resource_name.clone(),
            prefix: self.prefix.clone(),
            name: self.name.clone(),
            device_type: self.device_type,
            exclude_topology: self.exclude_topology,
            spread: self.spread,
            link_health: self.link_health,
            api: self.api,
            devices,
            index,
        }
    }

    /// `PCIDEVICE_<PREFIX>_<NAME>`: dots of the prefix become `_`, then
    /// everything is upper-cased; hyphens stay, as upstream.
    pub fn env_name(&self) -> String {
        format!("PCIDEVICE_{}_{}", self.prefix.replace('.', "_"), self.name).to_uppercase()
    }

    /// The socket file name upstream uses: `<prefix>_<name>.sock`.
    pub fn socket_name(&self) -> String {
        format!("{}_{}.sock", self.prefix, self.name)
    }

    /// `<prefix>/<kind>`, the CDI kind of this pool's devices.
    pub fn cdi_kind(&self) -> String {
        format!("{}/{}", self.prefix, cdi_kind_short(self.device_type))
    }

    pub fn device_ids(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.devices.iter().map(|d| d.id.as_str())
    }
}

/// Which of our pools a device ID belongs to, for Allocate's "a device of
/// pool X" message: the pools' own ID indexes, shared, rather than a map
/// with a copy of every ID and pool name (half a megabyte at 4096 VFs).
#[derive(Debug, Clone, Default)]
pub struct PoolOwners(Vec<ServedPool>);

impl PoolOwners {
    /// A copy of each pool costs a pointer per device.
    pub fn of(pools: &[ServedPool]) -> Self {
        PoolOwners(pools.to_vec())
    }

    /// The pool that lists `id`; the last one given when several do (a
    /// held VF on its way between pools is listed by both).
    pub fn owner_of(&self, id: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|pool| pool.device(id).is_some())
            .map(|pool| pool.resource_name.as_str())
    }
}

/// Facts outside the pool that Allocate needs; the real one reads sysfs and
/// checks `/dev` under an injectable root.
pub trait NodeFacts {
    fn uio_devices(&self, id: &str) -> Result<Vec<String>, SysfsError>;
    fn rdma_char_devices(&self, id: &str) -> Result<RdmaCharDevices, SysfsError>;
    fn is_noiommu_group(&self, group: u32) -> Result<bool, SysfsError>;
    /// Whether a device node exists (`/dev/vhost-net`, `/dev/infiniband/rdma_cm`).
    fn dev_node_exists(&self, path: &str) -> bool;
}

/// [`NodeFacts`] from a sysfs tree and a root under which `/dev` paths are checked.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub sysfs: SysfsRoot,
    pub dev_root: PathBuf,
}

impl HostFacts {
    fn address(id: &str) -> Result<crate::pci::PciAddress, SysfsError> {
        id.parse().map_err(|_| SysfsError::Parse {
            path: PathBuf::from(id),
            content: id.to_owned(),
            expected: "a PCI address as device ID",
        })
    }
}

impl NodeFacts for HostFacts {
    fn uio_devices(&self, id: &str) -> Result<Vec<String>, SysfsError> {
        self.sysfs.uio_devices(Self::address(id)?)
    }
    fn rdma_char_devices(&self, id: &str) -> Result<RdmaCharDevices, SysfsError> {
        self.sysfs.rdma_char_devices(Self::address(id)?)
    }
    fn is_noiommu_group(&self, group: u32) -> Result<bool, SysfsError> {
        self.sysfs.is_vfio_noiommu_group(group)
    }
    fn dev_node_exists(&self, path: &str) -> bool {
        let relative = Path::new(path).strip_prefix("/").unwrap_or(Path::new(path));
        self.dev_root.join(relative).exists()
    }
}

pub const VFIO_CONTAINER_NODE: &str = "/dev/vfio/vfio";
pub const VHOST_NET_NODE: &str = "/dev/vhost-net";
pub const TUN_NODE: &str = "/dev/net/tun";
pub const RDMA_CM_NODE: &str = "/dev/infiniband/rdma_cm";

/// Drivers whose functions get a uio device node. Upstream lists `uio` and
/// `igb_uio`; we also count `uio_pci_generic`, the in-tree uio driver, whose
/// functions have the same `/dev/uioN` (docs/device-plugin.md).
const UIO_DRIVERS: &[&str] = &["uio", "igb_uio", "uio_pci_generic"];

/// Which shared device nodes exist on the node.
#[derive(Debug, Clone, Copy)]
struct DevNodes {
    vhost_net: bool,
    tun: bool,
    rdma_cm: bool,
}

/// Build the served form of `pool`, whose config entry is `resource`.
/// A device whose char devices cannot be read is still served (the error
/// is logged with its ID): one odd device must not take its pool down.
///
/// Takes the pool by value: each device's strings move into its served
/// form while the pool's list gives its memory back (see
/// [`crate::pool::drain_freeing`]), so the two lists are not both alive
/// whole.
pub fn serve_pool(pool: Pool, resource: &Resource, facts: &dyn NodeFacts) -> ServedPool {
    // The node's /dev is the same for every device: look once per pool.
    let dev = DevNodes {
        vhost_net: facts.dev_node_exists(VHOST_NET_NODE),
        tun: facts.dev_node_exists(TUN_NODE),
        rdma_cm: facts.dev_node_exists(RDMA_CM_NODE),
    };
    let exclude_topology = pool.exclude_topology;
    let mut devices: Vec<Arc<ServedDevice>> = Vec::with_capacity(pool.devices.len());
    for device in drain_freeing(pool.devices) {
        devices.push(Arc::new(serve_device(
            device,
            exclude_topology,
            resource,
            facts,
            dev,
        )));
    }
    devices.reverse(); // drained last first
    let index = index_by_id(&devices);
    ServedPool {
        resource_name: pool.resource_name,
        prefix: resource.prefix.clone(),
        name: resource.name.clone(),
        device_type: resource.device_type,
        exclude_topology: pool.exclude_topology,
        spread: resource.allocation_policy == Some(crate::config::AllocationPolicy::Spread),
        link_health: resource.link_health,
        api: resource.allocation_api,
        devices,
        index,
    }
}

/// A pool's devices by ID: their positions sorted by ID, searched by
/// halving. A map from IDs would hold a copy of every ID (at 4096 VFs,
/// 0.4 MB for the map and the copies); this holds 4 bytes a device, and a
/// lookup is a dozen string comparisons at 4096.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdIndex(Vec<u32>);

impl IdIndex {
    /// The position of `id` in `devices`. `devices` is public on the pool:
    /// were it changed without the index, a position past its end reads as
    /// "not this one" and the answer is checked, so a lookup is never a
    /// panic in an Allocate, at worst "unknown device".
    fn find(&self, devices: &[Arc<ServedDevice>], id: &str) -> Option<usize> {
        let id_at = |i: u32| devices.get(i as usize).map(|d| d.id.as_str());
        let at = self
            .0
            .binary_search_by(|&i| id_at(i).map_or(std::cmp::Ordering::Less, |d| d.cmp(id)))
            .ok()?;
        let position = *self.0.get(at)?;
        (id_at(position) == Some(id)).then_some(position as usize)
    }
}

fn index_by_id(devices: &[Arc<ServedDevice>]) -> Arc<IdIndex> {
    // a pool has far fewer than 2^32 devices (the kernel's VF count is 16 bits)
    let mut order: Vec<u32> = (0..devices.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| devices[a as usize].id.cmp(&devices[b as usize].id));
    Arc::new(IdIndex(order))
}

fn serve_device(
    device: PoolDevice,
    exclude_topology: bool,
    resource: &Resource,
    facts: &dyn NodeFacts,
    dev: DevNodes,
) -> ServedDevice {
    let selector = resource.selectors.get(device.selector);
    let want_rdma = selector.is_some_and(|s| s.is_rdma);
    let want_vhost = selector.is_some_and(|s| s.need_vhost_net);
    let mut nodes = Vec::new();
    // copies of inline strings (see PoolDevice), not heap blocks
    let id = device.id.clone();
    let pf_pci_address = device.pf_pci_address.clone();
    let mut info = InfoProviders::default();
    info.insert("generic", "deviceID", id.clone());

    match device.driver.as_deref() {
        Some("vfio-pci") => {
            nodes.push(NodeSpec::same(VFIO_CONTAINER_NODE.into()));
            info.insert("vfio", "mount", VFIO_CONTAINER_NODE);
            if let Some(group) = device.iommu_group {
                let container_path = format!("/dev/vfio/{group}");
                let noiommu = facts.is_noiommu_group(group).unwrap_or_else(|error| {
                    tracing::warn!(device = %device.id, %error, "cannot tell whether the IOMMU group is no-IOMMU; assuming it is not");
                    false
                });
                let host_path = if noiommu {
                    format!("/dev/vfio/noiommu-{group}")
                } else {
                    container_path.clone()
                };
                info.insert("vfio", "dev-mount", container_path.clone());
                nodes.push(NodeSpec {
                    host_path,
                    container_path,
                });
            }
        }
        Some(driver) if UIO_DRIVERS.contains(&driver) => match facts
            .uio_devices(&device.pci_address)
        {
            Ok(uio) => {
                if let Some(first) = uio.first() {
                    let path = format!("/dev/{first}");
                    info.insert("uio", "mount", path.clone());
                    nodes.push(NodeSpec::same(path));
                }
            }
            Err(error) => tracing::warn!(device = %device.id, %error, "cannot read uio devices"),
        },
        _ => {}
    }

    let mut rdma_device = None;
    // An SF's RDMA char devices hang under its auxiliary device, not under
    // the PCI function we would read here (that would hand out the PF's):
    // not served yet, see docs/device-plugin.md.
    let sf = device.aux_type.is_some();
    if want_rdma && !device.rdma_devices.is_empty() && !sf {
        match facts.rdma_char_devices(&device.pci_address) {
            // As upstream (rdmamap): the first issm, umad and uverbs of the
            // function, in that order, then rdma_cm.
            Ok(chars) => {
                for (key, names) in [
                    ("issm", &chars.issm),
                    ("umad", &chars.umad),
                    ("uverbs", &chars.uverbs),
                ] {
                    if let Some(name) = names.first() {
                        let path = format!("/dev/infiniband/{name}");
                        info.insert("rdma", key, path.clone());
                        nodes.push(NodeSpec::same(path));
                    }
                }
            }
            Err(error) => {
                tracing::warn!(device = %device.id, %error, "cannot read RDMA char devices")
            }
        }
        if dev.rdma_cm {
            info.insert("rdma", "rdma_cm", RDMA_CM_NODE);
            nodes.push(NodeSpec::same(RDMA_CM_NODE.into()));
        }
        info.insert("rdma", "rdma_dev", device.rdma_devices[0].clone());
        rdma_device = Some(device.rdma_devices.join(","));
    }

    // As upstream: the info keys when /dev/vhost-net exists, the device
    // nodes only when /dev/net/tun exists too.
    let mut vhost_net = None;
    if want_vhost {
        if dev.vhost_net {
            info.insert("vhost", "net-mount", VHOST_NET_NODE);
            info.insert("vhost", "tun-mount", TUN_NODE);
            vhost_net = Some(VHOST_NET_NODE);
        }
        if dev.vhost_net && dev.tun {
            nodes.push(NodeSpec::same(VHOST_NET_NODE.into()));
            nodes.push(NodeSpec::same(TUN_NODE.into()));
        } else {
            tracing::warn!(device = %device.id, "needVhostNet is set but /dev/vhost-net or /dev/net/tun is missing");
        }
    }

    // Upstream adds the `extra` provider whenever the resource has
    // additionalInfo, so a device without matching keys gets `"extra":{}`.
    if !resource.additional_info.is_empty() {
        info.set_extra(resource.additional_info_for(&device.id));
    }

    // vhost-vdpa: the char device, as upstream's vdpa provider
    let vdpa_vhost_node = device
        .vdpa
        .as_ref()
        .filter(|v| v.vdpa_type == Some("vhost"))
        .and_then(|v| v.device_node.clone());
    if let Some(node) = &vdpa_vhost_node {
        info.insert("vdpa", "mount", node.clone());
        nodes.push(NodeSpec::same(node.clone()));
    }

    let device_info = (resource.device_type == DeviceType::NetDevice).then(|| {
        match device.vdpa.as_ref().and_then(|v| Some((v, v.vdpa_type?))) {
            Some((vdpa, kind)) => DeviceInfo::Vdpa(Box::new(VdpaDeviceInfo {
                parent_device: vdpa.name.clone(),
                driver: kind.to_owned(),
                path: vdpa_vhost_node.clone(),
                pci_address: device.pci_address.to_string(),
                pf_pci_address: device.pf_pci_address.as_ref().map(|pf| pf.to_string()),
            })),
            None => DeviceInfo::Pci(PciDeviceInfo {
                pci_address: id.clone(),
                pf_pci_address: pf_pci_address.clone(),
                vhost_net,
                rdma_device,
            }),
        }
    });
    ServedDevice {
        id,
        healthy: true,
        links: DeviceLinks {
            pf: device.pf_name,
            own: device.netdev,
        },
        numa_node: device.numa_node.filter(|_| !exclude_topology),
        pf: pf_pci_address,
        vf_index: device.vf_index,
        nodes,
        info,
        device_info,
    }
}

/// A healthy device with nothing but its ID, for tests.
#[cfg(test)]
pub(crate) fn test_device(id: &str) -> ServedDevice {
    ServedDevice {
        id: id.into(),
        healthy: true,
        links: Default::default(),
        numa_node: None,
        pf: None,
        vf_index: None,
        nodes: Vec::new(),
        info: Default::default(),
        device_info: None,
    }
}

/// A pool built by hand, for the pure modules' tests.
#[cfg(test)]
pub(crate) fn test_pool(devices: Vec<ServedDevice>, spread: bool) -> ServedPool {
    let devices: Vec<Arc<ServedDevice>> = devices.into_iter().map(Arc::new).collect();
    let index = index_by_id(&devices);
    ServedPool {
        resource_name: "intel.com/sriov_net".into(),
        prefix: "intel.com".into(),
        name: "sriov_net".into(),
        device_type: DeviceType::NetDevice,
        exclude_topology: false,
        spread,
        link_health: true,
        api: AllocationApi::DevicePlugin,
        devices,
        index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(resource: &str, ids: &[&str]) -> ServedPool {
        let mut pool = test_pool(ids.iter().map(|id| test_device(id)).collect(), false);
        pool.resource_name = resource.into();
        pool
    }

    #[test]
    fn devices_are_found_by_id_in_any_order_and_after_a_change() {
        // as pools really hold them: PCI addresses, SF names that sort as
        // text (sf.10 before sf.2), a held VF added at the end
        let ids = [
            "0000:3b:01.2",
            "mlx5_core.sf.2",
            "0000:3b:01.0",
            "mlx5_core.sf.10",
            "0000:3b:00.7",
        ];
        let pool = pool("intel.com/a", &ids);
        for id in ids {
            assert_eq!(pool.device(id).map(|d| d.id.as_str()), Some(id));
        }
        assert!(pool.device("0000:3b:01.1").is_none());
        assert!(pool.device("").is_none());

        let mut devices = pool.devices.clone();
        devices.push(Arc::new(test_device("0000:18:02.0")));
        let grown = pool.with_devices(devices);
        for id in ids.iter().copied().chain(["0000:18:02.0"]) {
            assert_eq!(grown.device(id).map(|d| d.id.as_str()), Some(id), "{id}");
        }
        let shrunk = grown.with_devices(grown.devices[1..].to_vec());
        assert!(shrunk.device(ids[0]).is_none());
        assert!(shrunk.device("0000:18:02.0").is_some());
    }

    #[test]
    fn a_pool_whose_devices_changed_behind_its_index_never_panics() {
        let mut pool = pool(
            "intel.com/a",
            &["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"],
        );
        pool.devices.truncate(1);
        // positions past the end read as "not this one": not found, no panic
        for id in [
            "0000:3b:01.0",
            "0000:3b:01.1",
            "0000:3b:01.2",
            "0000:ff:1f.7",
        ] {
            let found = pool.device(id).map(|d| d.id.as_str());
            assert!(found.is_none() || found == Some(id), "{id}: {found:?}");
        }
        assert!(pool.device("0000:3b:01.2").is_none());
    }

    #[test]
    fn the_owner_of_a_device_listed_twice_is_the_last_pool() {
        let owners = PoolOwners::of(&[
            pool("intel.com/old", &["0000:3b:01.0", "0000:3b:01.1"]),
            pool("intel.com/new", &["0000:3b:01.1"]),
        ]);
        assert_eq!(owners.owner_of("0000:3b:01.1"), Some("intel.com/new"));
        assert_eq!(owners.owner_of("0000:3b:01.0"), Some("intel.com/old"));
        assert_eq!(owners.owner_of("0000:3b:01.9"), None);
    }
}
