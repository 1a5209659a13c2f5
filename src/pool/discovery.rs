//! sysfs → `DeviceFacts`: everything the selectors look at, per PCI
//! function, plus the facts pools carry for the kubelet server.

use super::drain_freeing;
use crate::config::{Config, DeviceFacts, VdpaType};
use crate::pci::PciAddress;
use crate::sysfs::{
    AuxDevice, NodeScan, PciDevice, ScanOptions, SysfsError, SysfsRoot, VdpaDevice,
};
use crate::sysfs::{VHOST_VDPA_DRIVER, VIRTIO_VDPA_DRIVER};
use compact_str::{CompactString, ToCompactString};
use std::collections::HashMap;

/// One PCI function, or one aux device (SF) on a PCI function, as
/// discovery saw it.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub facts: DeviceFacts,
    /// The PCI function; for an aux device, the function it sits on.
    pub device: PciDevice,
    pub pf_address: Option<PciAddress>,
    /// For an aux device: the aux device itself. Boxed, like `vdpa`: few
    /// devices have one, and every VF would otherwise carry the room.
    pub aux: Option<Box<AuxDevice>>,
    /// The function's first vDPA device (by name), if it has one.
    pub vdpa: Option<Box<VdpaDevice>>,
}

/// Why a device is kept out of every netDevice pool, as upstream does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// A PF with VFs enabled: its VFs are the devices to hand out.
    PfWithVfs { num_vfs: u32 },
    /// One of its netdevs carries the IPv4 default route (the node's uplink).
    DefaultRoute { netdev: String },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::PfWithVfs { num_vfs } => write!(f, "PF with {num_vfs} VFs enabled"),
            Exclusion::DefaultRoute { netdev } => write!(f, "{netdev} carries the default route"),
        }
    }
}

impl Discovered {
    /// The device's first netdev, if it has one (an aux device's own, not
    /// its parent's). Looked up, not kept: a copy per VF was a string each.
    pub fn netdev(&self) -> Option<&String> {
        match &self.aux {
            Some(aux) => aux.netdevs.first(),
            None => self.device.netdevs.first(),
        }
    }

    /// The netDevice exclusion that applies, given the netdevs that carry
    /// an IPv4 default route.
    pub fn exclusion(&self, default_route_netdevs: &[String]) -> Option<Exclusion> {
        if self.aux.is_some() {
            return None; // upstream's aux provider excludes nothing
        }
        if let Some(sriov) = self.device.sriov {
            if sriov.num_vfs > 0 {
                return Some(Exclusion::PfWithVfs {
                    num_vfs: sriov.num_vfs,
                });
            }
        }
        self.device
            .netdevs
            .iter()
            .find(|n| default_route_netdevs.contains(n))
            .map(|netdev| Exclusion::DefaultRoute {
                netdev: netdev.clone(),
            })
    }
}

/// What a config's selectors need read beyond what every pool needs.
pub fn scan_options(config: &Config) -> ScanOptions {
    let selectors = || config.resources.iter().flat_map(|r| &r.selectors);
    let pkeys = selectors().any(|s| !s.pkeys.is_empty());
    // a DRA pool publishes each device's link type as an attribute
    let dra = config.has_dra();
    ScanOptions {
        acpi_index: selectors().any(|s| !s.acpi_indexes.is_empty()),
        pkeys,
        // P_Keys are only looked at on infiniband links
        link_types: pkeys || dra || selectors().any(|s| !s.link_types.is_empty()),
        max_threads: 0,
    }
}

/// Read every PCI function and aux device under the root, with every fact
/// any selector can look at.
pub fn discover(sysfs: &SysfsRoot) -> Result<Vec<Discovered>, SysfsError> {
    discover_with(sysfs, &ScanOptions::ALL)
}

/// Like [`discover`], skipping the facts no selector of `config` looks at:
/// the pools come out the same, and everything Allocate needs is there, but
/// `link_type` is only filled when a `linkTypes` or `pKeys` selector or a
/// DRA pool (a slice attribute) needs it. This is what the daemon should call.
pub fn discover_for(sysfs: &SysfsRoot, config: &Config) -> Result<Vec<Discovered>, SysfsError> {
    discover_with(sysfs, &scan_options(config))
}

/// Devices whose attributes cannot be read are skipped with a warning
/// naming the path, not fatal: one odd device must not take the whole
/// node's pools down.
pub fn discover_with(
    sysfs: &SysfsRoot,
    options: &ScanOptions,
) -> Result<Vec<Discovered>, SysfsError> {
    let scan = sysfs.scan(options)?;
    for (address, error) in &scan.unreadable {
        tracing::warn!(%address, %error, "left out of discovery: cannot be read");
    }
    let by_address: HashMap<PciAddress, &PciDevice> =
        scan.functions.iter().map(|d| (d.address, d)).collect();
    let mut vdpa_by_parent: HashMap<PciAddress, &VdpaDevice> = HashMap::new();
    for vdpa in &scan.vdpa_devices {
        // upstream takes the first vDPA device of a function
        vdpa_by_parent.entry(vdpa.parent).or_insert(vdpa);
    }
    let link_type = |netdev: Option<&str>| link_type_of(&scan.link_types, netdev?);
    // PF name as upstream: the switchdev uplink representor when the PF
    // has one, else its first netdev.
    let pf_name = |pf: &PciDevice| {
        scan.uplinks
            .get(&pf.address)
            .or(pf.netdevs.first())
            .map(CompactString::from)
    };

    // Aux devices borrow their parent function (and copy it): find them
    // first, so that the functions can then be moved, not copied.
    let mut aux_found = Vec::new();
    for aux in &scan.aux_devices {
        match aux_device(aux, &by_address, &scan) {
            Ok(device) => aux_found.push(device),
            Err(why) => {
                tracing::debug!(device = %aux.name, parent = %aux.parent, "not an aux net device: {why}")
            }
        }
    }
    // A VF's PF name, by PF address, so that the functions can be moved
    // (not copied) into the result in one pass.
    let pf_names: HashMap<PciAddress, CompactString> = scan
        .functions
        .iter()
        .filter(|device| device.physfn.is_none())
        .filter_map(|pf| Some((pf.address, pf_name(pf)?)))
        .collect();
    drop(by_address);
    // Taken from the scan's list while it gives its memory back (see
    // drain_freeing), last first: the records are the larger list, and
    // beside the whole scan list they were the daemon's peak memory at
    // 4096 VFs. The room reserved for them is only resident once written.
    let mut found = Vec::with_capacity(scan.functions.len() + aux_found.len());
    for device in drain_freeing(scan.functions) {
        let mut facts = DeviceFacts::pci(
            &device.address.to_compact_string(),
            device.vendor,
            device.device,
            device.class,
        );
        facts.driver = device.driver.clone();
        facts.acpi_index = device.acpi_index.as_deref().and_then(|a| a.parse().ok());
        facts.pf_name = device.physfn.and_then(|pf| pf_names.get(&pf).cloned());
        facts.pf_pci_address = device.physfn.map(|a| a.to_compact_string());
        facts.vf_index = device
            .physfn
            .and_then(|_| scan.vf_indexes.get(&device.address).copied());
        // no netdev (vfio-pci): the PF's link type, as upstream
        facts.link_type = link_type(device.netdevs.first().map(String::as_str))
            .or_else(|| link_type(facts.pf_name.as_deref()));
        if facts.link_type.as_deref() == Some("infiniband") {
            facts.pkey = scan.pkeys.get(&device.address).copied();
        }
        facts.is_rdma = !device.rdma_devices.is_empty();
        let vdpa = vdpa_by_parent
            .get(&device.address)
            .map(|v| Box::new((*v).clone()));
        facts.vdpa_type = vdpa.as_deref().and_then(vdpa_type);
        found.push(Discovered {
            facts,
            pf_address: device.physfn,
            device,
            aux: None,
            vdpa,
        });
    }
    found.reverse(); // drained last first
    found.extend(aux_found);
    Ok(found)
}

/// The link type the scan read for `netdev`, if it read one.
fn link_type_of(link_types: &HashMap<String, &'static str>, netdev: &str) -> Option<CompactString> {
    link_types.get(netdev).map(|t| CompactString::from(*t))
}

fn vdpa_type(vdpa: &VdpaDevice) -> Option<VdpaType> {
    match vdpa.driver.as_deref() {
        Some(VHOST_VDPA_DRIVER) => Some(VdpaType::Vhost),
        Some(VIRTIO_VDPA_DRIVER) => Some(VdpaType::Virtio),
        _ => None,
    }
}

/// An aux device as upstream's auxNetDevice provider sees it: only on a
/// function that has netdevs, only with an SF number (its index for
/// `#` ranges), only when the parent has a switchdev uplink (its PF name);
/// vendor, device, class, driver and NUMA node are the parent's.
fn aux_device(
    aux: &AuxDevice,
    functions: &HashMap<PciAddress, &PciDevice>,
    scan: &NodeScan,
) -> Result<Discovered, &'static str> {
    let parent = functions
        .get(&aux.parent)
        .copied()
        .ok_or("its PCI function could not be read")?;
    if parent.netdevs.is_empty() {
        return Err("its PCI function has no netdev");
    }
    let aux_type = aux
        .aux_type()
        .ok_or("the name is not <driver>.<type>.<id>")?;
    let sfnum = aux.sfnum.ok_or("no sfnum: not a scalable function")?;
    let uplink = scan
        .uplinks
        .get(&parent.address)
        .ok_or("its PCI function has no switchdev uplink representor")?;
    let link_type = link_type_of(&scan.link_types, aux.netdevs.first().unwrap_or(uplink));
    let mut facts = DeviceFacts::pci(
        &parent.address.to_compact_string(),
        parent.vendor,
        parent.device,
        parent.class,
    );
    facts.id = aux.name.as_str().into();
    facts.driver = parent.driver.clone();
    facts.pf_name = Some(uplink.as_str().into());
    facts.pf_pci_address = Some(parent.address.to_compact_string());
    facts.vf_index = Some(sfnum);
    facts.link_type = link_type;
    facts.is_rdma = !aux.rdma_devices.is_empty();
    facts.aux_type = Some(aux_type.into());
    Ok(Discovered {
        facts,
        device: parent.clone(),
        pf_address: Some(parent.address),
        aux: Some(Box::new(aux.clone())),
        vdpa: None,
    })
}

#[cfg(test)]
mod tests {
    use super::scan_options;
    use crate::config;

    fn options(text: &str) -> crate::sysfs::ScanOptions {
        let loaded = config::parse(text, "intel.com").unwrap_or_else(|e| panic!("{text}: {e}"));
        scan_options(&loaded.config)
    }

    #[test]
    fn link_types_are_read_when_a_selector_or_a_dra_pool_needs_them() {
        let plain =
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"drivers": ["iavf"]}}]}"#;
        assert!(!options(plain).link_types);
        let selected =
            r#"{"resourceList": [{"resourceName": "a", "selectors": {"linkTypes": ["ether"]}}]}"#;
        assert!(options(selected).link_types);
        let dra = r#"{"resourceList": [
            {"resourceName": "a", "selectors": {"drivers": ["iavf"]}},
            {"resourceName": "b", "allocationApi": "dra", "selectors": {"drivers": ["mlx5_core"]}}]}"#;
        assert!(options(dra).link_types);
    }
}
