//! The typed, validated form of `config.json`. Everything here was checked at load time, so the
//! matching code never meets a malformed value.

use std::collections::BTreeMap;
use std::fmt;

use super::vf_range::PfEntry;

/// A whole config: the resources in file order (the order matters: first match wins).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub resources: Vec<Resource>,
}

/// Kind of device a pool is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    /// PCI network functions (VFs, or PFs without VFs); upstream's default.
    NetDevice,
    /// PCI processing accelerators (base class 0x12), e.g. FEC cards.
    Accelerator,
    /// Auxiliary network devices (scalable functions) on a network PF.
    AuxNetDevice,
}

impl DeviceType {
    /// The spelling used in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::NetDevice => "netDevice",
            DeviceType::Accelerator => "accelerator",
            DeviceType::AuxNetDevice => "auxNetDevice",
        }
    }

    /// The PCI base class (top byte of the 24-bit class code) of devices this type takes.
    /// Aux devices are judged by their parent PCI function, which is a network device.
    pub fn pci_base_class(self) -> u8 {
        match self {
            DeviceType::NetDevice | DeviceType::AuxNetDevice => 0x02,
            DeviceType::Accelerator => 0x12,
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// vDPA device flavour a selector can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VdpaType {
    /// vhost-vdpa: a `/dev/vhost-vdpa-N` char device for userspace.
    Vhost,
    /// virtio-vdpa: a kernel virtio-net netdev.
    Virtio,
}

impl VdpaType {
    pub fn as_str(self) -> &'static str {
        match self {
            VdpaType::Vhost => "vhost",
            VdpaType::Virtio => "virtio",
        }
    }
}

/// Our extension (`allocationPolicy`): how GetPreferredAllocation picks devices. Upstream has no
/// such key and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocationPolicy {
    /// Fill one PF before taking VFs from the next.
    Pack,
    /// Take VFs from as many PFs as possible.
    Spread,
}

impl AllocationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationPolicy::Pack => "pack",
            AllocationPolicy::Spread => "spread",
        }
    }
}

/// Our extension (`allocationApi`): which kubelet API serves the pool's devices. Upstream has no
/// such key and ignores it, so a config that moves a pool to DRA still loads there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AllocationApi {
    /// The device plugin API (ListAndWatch, Allocate): the default, as upstream.
    #[default]
    DevicePlugin,
    /// Dynamic Resource Allocation: ResourceSlices and NodePrepareResources (docs/dra.md).
    Dra,
}

impl AllocationApi {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationApi::DevicePlugin => "devicePlugin",
            AllocationApi::Dra => "dra",
        }
    }
}

/// `additionalInfo`: per-device extra key/value pairs, keyed by `"*"` (every device) or a PCI
/// address (that device, overriding `"*"` key by key).
pub type AdditionalInfo = BTreeMap<String, BTreeMap<String, String>>;

/// One entry of `resourceList`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Position in `resourceList`; used in messages.
    pub index: usize,
    /// `resourceName`, without prefix.
    pub name: String,
    /// `resourcePrefix` if given (non-empty), else the default passed to the parser.
    pub prefix: String,
    pub device_type: DeviceType,
    /// Do not report NUMA affinity for this pool.
    pub exclude_topology: bool,
    /// One or more selector objects; a device joins through the first that matches it.
    pub selectors: Vec<SelectorSet>,
    /// True when `selectors` was written as a list (only matters for messages: key paths).
    pub selectors_listed: bool,
    pub additional_info: AdditionalInfo,
    /// Our extension, unset unless the config says so.
    pub allocation_policy: Option<AllocationPolicy>,
    /// Our extension: `devicePlugin` unless the config says `dra`.
    pub allocation_api: AllocationApi,
    /// Our extension (`linkHealth`, default true): devices turn Unhealthy
    /// while their PF has no carrier (or their own netdev, up, has none).
    pub link_health: bool,
}

impl Config {
    /// Whether any pool is served through DRA.
    pub fn has_dra(&self) -> bool {
        self.resources.iter().any(Resource::is_dra)
    }
}

impl Resource {
    /// Served through DRA (`"allocationApi": "dra"`).
    pub fn is_dra(&self) -> bool {
        self.allocation_api == AllocationApi::Dra
    }

    /// `prefix/name`, the extended resource name the kubelet sees.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.prefix, self.name)
    }

    /// The `additionalInfo` pairs for one device: `"*"` first, then the device's own PCI address
    /// key on top, as upstream merges them.
    pub fn additional_info_for(&self, pci_address: &str) -> BTreeMap<String, String> {
        let mut merged = BTreeMap::new();
        for key in ["*", pci_address] {
            if let Some(pairs) = self.additional_info.get(key) {
                merged.extend(pairs.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        merged
    }
}

/// One selector object: every non-empty list is a filter, and a device must pass them all.
/// Lists hold parsed values; keys that do not apply to the resource's device type are never
/// filled (they are ignored with a warning, as upstream ignores them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectorSet {
    /// PCI vendor IDs (`"8086"` → 0x8086).
    pub vendors: Vec<u16>,
    /// PCI device IDs; for aux devices, the parent's.
    pub devices: Vec<u16>,
    /// Bound driver names, exact.
    pub drivers: Vec<String>,
    /// Full PCI addresses, lower case (`0000:03:02.0`).
    pub pci_addresses: Vec<String>,
    /// Values of the device's `acpi_index`.
    pub acpi_indexes: Vec<u32>,
    /// PF netdev names with an optional function range, matched case-insensitively.
    pub pf_names: Vec<PfEntry>,
    /// PF PCI addresses (stored lower case) with an optional function range.
    pub root_devices: Vec<PfEntry>,
    /// Netlink link (encapsulation) types, e.g. `ether`, `infiniband`.
    pub link_types: Vec<String>,
    /// Intel DDP profile names, exact.
    pub ddp_profiles: Vec<String>,
    /// InfiniBand partition keys (value of pkey index 0).
    pub pkeys: Vec<u16>,
    /// Keep only RDMA-capable devices (and mount their RDMA char devices).
    pub is_rdma: bool,
    /// Add `/dev/vhost-net` and `/dev/net/tun` to devices taken through this selector.
    pub need_vhost_net: bool,
    /// Keep only devices with a vDPA device of this type.
    pub vdpa_type: Option<VdpaType>,
    /// Aux device types (`sf`), taken from `<driver>.<type>.<id>`.
    pub aux_types: Vec<String>,
}

impl SelectorSet {
    /// True when no filter is set: the selector takes every device of the resource's type.
    pub fn is_unfiltered(&self) -> bool {
        self.vendors.is_empty()
            && self.devices.is_empty()
            && self.drivers.is_empty()
            && self.pci_addresses.is_empty()
            && self.acpi_indexes.is_empty()
            && self.pf_names.is_empty()
            && self.root_devices.is_empty()
            && self.link_types.is_empty()
            && self.ddp_profiles.is_empty()
            && self.pkeys.is_empty()
            && !self.is_rdma
            && self.vdpa_type.is_none()
            && self.aux_types.is_empty()
    }
}
