//! Reading one PCI function's facts from `<root>/bus/pci/devices/<BDF>/`.
//!
//! Attributes that a device may legitimately lack (no driver bound, no IOMMU,
//! not SR-IOV capable, no netdev) read as `None`/empty; any other failure is
//! an error naming the path.

use super::attr::{io_error, link_basename, read_number, resolve_link, Attrs, DirHandle};
use super::identity::read_identity;
use super::{SysfsError, SysfsRoot};
use crate::pci::PciAddress;
use compact_str::CompactString;
use std::collections::HashSet;
use std::path::PathBuf;

// The lead's chardev reader (and older callers) take these from here.
#[allow(unused_imports)] // read_optional: for chardev.rs, which reads through this module
pub(crate) use super::attr::{list_dir, read_optional};

/// The SR-IOV capability of a PF, from its `sriov_*` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SriovCapability {
    pub total_vfs: u32,
    pub num_vfs: u32,
}

/// One PCI function as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PciDevice {
    pub address: PciAddress,
    /// Serialized as selectors spell them: lower-case hex without `0x`,
    /// `8086`.
    #[serde(serialize_with = "hex_id")]
    pub vendor: u16,
    #[serde(serialize_with = "hex_id")]
    pub device: u16,
    #[serde(serialize_with = "hex_id")]
    pub subsystem_vendor: u16,
    #[serde(serialize_with = "hex_id")]
    pub subsystem_device: u16,
    /// The 24-bit class code; the base class is `class >> 16`.
    pub class: u32,
    /// Inline, as the pools' names are (see `pool::PoolDevice`): a driver
    /// name is short, and every VF has one.
    pub driver: Option<CompactString>,
    /// None when the kernel reports -1 (no NUMA affinity).
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
    /// Read when the function's directory listing shows one; for a VF a
    /// scan found through its PF, only when [`super::ScanOptions`] ask.
    pub acpi_index: Option<String>,
    /// For a VF: its PF's address.
    pub physfn: Option<PciAddress>,
    /// For a PF: its SR-IOV capability.
    pub sriov: Option<SriovCapability>,
    /// Netdev names under `net/`, sorted.
    pub netdevs: Vec<String>,
    /// RDMA device names under `infiniband/`, sorted.
    pub rdma_devices: Vec<String>,
}

fn hex_id<S: serde::Serializer>(id: &u16, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{id:04x}"))
}

impl PciDevice {
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }

    pub fn is_vf(&self) -> bool {
        self.physfn.is_some()
    }
}

/// Facts from a function's own directory, given the names one listing of
/// it found; absent optional entries cost no lookup. Netdevs and RDMA
/// devices are left for the caller, which finds them either under the
/// directory or, for a whole node, from `class/*` at once.
pub(crate) fn read_function(
    dir: &Attrs,
    address: PciAddress,
    entries: &HashSet<String>,
) -> Result<PciDevice, SysfsError> {
    let has = |name: &str| entries.contains(name);
    let identity = read_identity(dir)?;
    let numa_node: Option<i64> = dir.read_number("numa_node", "a NUMA node number or -1")?;
    let physfn = if has("physfn") {
        dir.parse_link("physfn", "a link to the PF's PCI address")?
    } else {
        None
    };
    let sriov = if has("sriov_totalvfs") {
        match dir.read_number::<u32>("sriov_totalvfs", "a VF count")? {
            Some(total_vfs) => Some(SriovCapability {
                total_vfs,
                num_vfs: dir.read_number("sriov_numvfs", "a VF count")?.unwrap_or(0),
            }),
            None => None,
        }
    } else {
        None
    };
    Ok(PciDevice {
        address,
        vendor: identity.vendor,
        device: identity.device,
        subsystem_vendor: identity.subsystem_vendor,
        subsystem_device: identity.subsystem_device,
        class: identity.class,
        driver: if has("driver") {
            driver_name(dir)?
        } else {
            None
        },
        numa_node: numa_node.and_then(|n| u32::try_from(n).ok()),
        iommu_group: if has("iommu_group") {
            dir.parse_link("iommu_group", "a link to kernel/iommu_groups/<number>")?
        } else {
            None
        },
        acpi_index: if has("acpi_index") {
            dir.read_optional("acpi_index")?
        } else {
            None
        },
        physfn,
        sriov,
        netdevs: Vec::new(),
        rdma_devices: Vec::new(),
    })
}

/// The name of the driver bound to the function at `dir`, if one is.
pub(crate) fn driver_name(dir: &Attrs) -> Result<Option<CompactString>, SysfsError> {
    Ok(dir.link_basename("driver")?.map(CompactString::from))
}

/// iproute2's names for the ARPHRD types we meet (`net/<if>/type`), which
/// are also the netlink encap names upstream's `linkTypes` selector uses.
pub fn link_type_name(arphrd: u32) -> &'static str {
    match arphrd {
        1 => "ether",
        32 => "infiniband",
        772 => "loopback",
        65534 => "none",
        _ => "unknown",
    }
}

impl SysfsRoot {
    /// Every PCI function on the machine, sorted by address.
    pub fn pci_addresses(&self) -> Result<Vec<PciAddress>, SysfsError> {
        let dir = self.pci_devices();
        let mut addresses = Vec::new();
        for name in list_dir(&dir)? {
            // Skip what is not a BDF rather than fail the whole scan.
            if let Ok(address) = name.parse() {
                addresses.push(address);
            }
        }
        addresses.sort();
        Ok(addresses)
    }

    /// `<root>/bus/pci/devices/<BDF>`
    pub fn device_dir(&self, address: PciAddress) -> PathBuf {
        self.pci_devices().join(address.to_string())
    }

    /// Every fact of one function, from one listing of its directory (the
    /// CNI plugin asks this for the VF it moves; discovery uses [`SysfsRoot::scan`]).
    pub fn pci_device(&self, address: PciAddress) -> Result<PciDevice, SysfsError> {
        let dir = self.real_device_dir(address)?;
        let entries: HashSet<String> = list_dir(&dir)?.into_iter().collect();
        let mut device = read_function(&DirHandle::open(&dir)?.attrs(), address, &entries)?;
        if entries.contains("net") {
            device.netdevs = list_dir(&dir.join("net"))?;
        }
        if entries.contains("infiniband") {
            device.rdma_devices = list_dir(&dir.join("infiniband"))?;
        }
        Ok(device)
    }

    /// The PCI root complex a function sits under, as the kernel names its
    /// directory below `devices/` (`pci0000:3a`): the value of DRA's
    /// standard `resource.kubernetes.io/pcieRoot` attribute. None when the
    /// function's directory is not below such a root (a hand-built tree).
    pub fn pcie_root(&self, address: PciAddress) -> Result<Option<String>, SysfsError> {
        let dir = self.real_device_dir(address)?;
        let devices = self.path().join("devices");
        let root = dir
            .strip_prefix(&devices)
            .ok()
            .and_then(|below| below.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("pci"));
        Ok(root)
    }

    /// The directory `bus/pci/devices/<BDF>` links to, found with one
    /// readlink (not canonicalize, which would readlink every component), so
    /// reads below it skip the symlink walk.
    pub(crate) fn real_device_dir(&self, address: PciAddress) -> Result<PathBuf, SysfsError> {
        let link = self.device_dir(address);
        match std::fs::read_link(&link) {
            Ok(target) => Ok(match link.parent() {
                Some(bus) => resolve_link(bus, &target),
                None => target,
            }),
            // a hand-built tree may hold the directory itself
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(link),
            Err(e) => Err(io_error(&link, e)),
        }
    }

    /// Walk a PF's `virtfnN` links as (N, target basename) until `visit`
    /// returns true; one listing, one readlink per link visited.
    fn walk_virtfns(
        &self,
        pf: PciAddress,
        mut visit: impl FnMut(u32, &str) -> bool,
    ) -> Result<(), SysfsError> {
        let pf_dir = self.device_dir(pf);
        for name in list_dir(&pf_dir)? {
            let Some(index) = name
                .strip_prefix("virtfn")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(target) = link_basename(&pf_dir.join(&name))? {
                if visit(index, &target) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Every `virtfnN` link of a PF: (N, VF address).
    pub fn virtfns(&self, pf: PciAddress) -> Result<Vec<(u32, PciAddress)>, SysfsError> {
        let mut found = Vec::new();
        self.walk_virtfns(pf, |index, target| {
            if let Ok(address) = target.parse() {
                found.push((index, address));
            }
            false
        })?;
        Ok(found)
    }

    /// The index N of `virtfnN` under `pf` that points at `vf` (stops at the
    /// first hit: the CNI plugin asks this on every ADD).
    pub fn vf_index(&self, pf: PciAddress, vf: PciAddress) -> Result<Option<u32>, SysfsError> {
        let wanted = vf.to_string();
        let mut found = None;
        self.walk_virtfns(pf, |index, target| {
            if target == wanted {
                found = Some(index);
            }
            found.is_some()
        })?;
        Ok(found)
    }

    /// The link type of a netdev (`ether`, `infiniband`, ...) from its `type`.
    pub fn netdev_link_type(
        &self,
        address: PciAddress,
        netdev: &str,
    ) -> Result<Option<&'static str>, SysfsError> {
        let path = self
            .device_dir(address)
            .join("net")
            .join(netdev)
            .join("type");
        Ok(read_number::<u32>(&path, "an ARPHRD number")?.map(link_type_name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pcie_root_is_the_root_complex_directory_the_function_sits_under() {
        let dir = tempfile::tempdir().unwrap();
        let function = dir
            .path()
            .join("devices/pci0000:3a/0000:3a:00.0/0000:3b:02.0");
        std::fs::create_dir_all(&function).unwrap();
        let bus = dir.path().join("bus/pci/devices");
        std::fs::create_dir_all(&bus).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:02.0",
            bus.join("0000:3b:02.0"),
        )
        .unwrap();
        // a hand-built tree that holds the directory itself
        std::fs::create_dir_all(bus.join("0000:5e:00.0")).unwrap();
        let sysfs = SysfsRoot::new(dir.path());
        let address: PciAddress = "0000:3b:02.0".parse().unwrap();
        assert_eq!(
            sysfs.pcie_root(address).unwrap().as_deref(),
            Some("pci0000:3a")
        );
        let flat: PciAddress = "0000:5e:00.0".parse().unwrap();
        assert_eq!(sysfs.pcie_root(flat).unwrap(), None);
        let absent: PciAddress = "0000:99:00.0".parse().unwrap();
        assert!(sysfs.pcie_root(absent).is_err());
    }
}
