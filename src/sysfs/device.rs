//! Reading one PCI function's facts from `<root>/bus/pci/devices/<BDF>/`.
//!
//! Attributes that a device may legitimately lack (no driver bound, no IOMMU,
//! not SR-IOV capable, no netdev) read as `None`/empty; any other failure is
//! an error naming the path.

use super::{SysfsError, SysfsRoot};
use crate::pci::PciAddress;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Lower-case hex without `0x`, as selectors spell them: `8086`.
    pub vendor: String,
    pub device: String,
    pub subsystem_vendor: String,
    pub subsystem_device: String,
    /// The 24-bit class code; the base class is `class >> 16`.
    pub class: u32,
    pub driver: Option<String>,
    /// None when the kernel reports -1 (no NUMA affinity).
    pub numa_node: Option<u32>,
    pub iommu_group: Option<u32>,
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

impl PciDevice {
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }

    pub fn is_vf(&self) -> bool {
        self.physfn.is_some()
    }
}

fn io_error(path: &Path, source: io::Error) -> SysfsError {
    SysfsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Read a whole attribute, trimmed; None if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, SysfsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn read_required(path: &Path) -> Result<String, SysfsError> {
    read_optional(path)?.ok_or_else(|| io_error(path, io::ErrorKind::NotFound.into()))
}

/// `0x8086` → `8086`
fn read_hex_id(path: &Path) -> Result<String, SysfsError> {
    let text = read_required(path)?;
    let hex = text.strip_prefix("0x").unwrap_or(&text).to_lowercase();
    if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SysfsError::Parse {
            path: path.to_owned(),
            content: text,
            expected: "a 16-bit hex id such as 0x8086",
        });
    }
    Ok(hex)
}

fn read_number<T: std::str::FromStr>(
    path: &Path,
    expected: &'static str,
) -> Result<Option<T>, SysfsError> {
    match read_optional(path)? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| SysfsError::Parse {
            path: path.to_owned(),
            content: text,
            expected,
        }),
    }
}

/// The last component of a symlink's target (`driver` → `iavf`); None if absent.
pub(crate) fn link_basename(path: &Path) -> Result<Option<String>, SysfsError> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The basename of `dir/name`'s link target, parsed (`physfn` → PCI address,
/// `iommu_group` → number); None when the entry is absent.
fn parse_link<T: std::str::FromStr>(
    dir: &Path,
    present: bool,
    name: &str,
    expected: &'static str,
) -> Result<Option<T>, SysfsError> {
    if !present {
        return Ok(None);
    }
    let path = dir.join(name);
    match link_basename(&path)? {
        Some(target) => target.parse().map(Some).map_err(|_| SysfsError::Parse {
            path,
            content: target,
            expected,
        }),
        None => Ok(None),
    }
}

/// Entry names of a directory, sorted; empty if it does not exist.
pub(crate) fn list_dir(path: &Path) -> Result<Vec<String>, SysfsError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(
            entry
                .map_err(|e| io_error(path, e))?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    Ok(names)
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

    pub fn pci_device(&self, address: PciAddress) -> Result<PciDevice, SysfsError> {
        // Resolve bus/pci/devices/<BDF> once: every read below then skips the
        // symlink walk. One directory listing tells which optional entries
        // exist, so absent ones cost no failed lookup (discovery of thousands
        // of VFs is syscall-bound).
        let link = self.device_dir(address);
        // one readlink, not canonicalize: realpath would readlink every component
        let target = std::fs::read_link(&link).map_err(|e| io_error(&link, e))?;
        let dir = link.parent().map(|bus| bus.join(&target)).unwrap_or(target);
        let entries: std::collections::HashSet<String> = list_dir(&dir)?.into_iter().collect();
        let has = |name: &str| entries.contains(name);
        let class_path = dir.join("class");
        let class_text = read_required(&class_path)?;
        let class = u32::from_str_radix(class_text.trim_start_matches("0x"), 16).map_err(|_| {
            SysfsError::Parse {
                path: class_path.clone(),
                content: class_text.clone(),
                expected: "a hex class code such as 0x020000",
            }
        })?;
        let numa_node: Option<i64> =
            read_number(&dir.join("numa_node"), "a NUMA node number or -1")?;
        let physfn = parse_link(
            &dir,
            has("physfn"),
            "physfn",
            "a link to the PF's PCI address",
        )?;
        let total_vfs = if has("sriov_totalvfs") {
            read_number::<u32>(&dir.join("sriov_totalvfs"), "a VF count")?
        } else {
            None
        };
        let sriov = match total_vfs {
            Some(total_vfs) => Some(SriovCapability {
                total_vfs,
                num_vfs: read_number(&dir.join("sriov_numvfs"), "a VF count")?.unwrap_or(0),
            }),
            None => None,
        };
        let iommu_group = parse_link(
            &dir,
            has("iommu_group"),
            "iommu_group",
            "a link to kernel/iommu_groups/<number>",
        )?;
        Ok(PciDevice {
            address,
            vendor: read_hex_id(&dir.join("vendor"))?,
            device: read_hex_id(&dir.join("device"))?,
            subsystem_vendor: read_hex_id(&dir.join("subsystem_vendor"))?,
            subsystem_device: read_hex_id(&dir.join("subsystem_device"))?,
            class,
            driver: if has("driver") {
                link_basename(&dir.join("driver"))?
            } else {
                None
            },
            numa_node: numa_node.and_then(|n| u32::try_from(n).ok()),
            iommu_group,
            acpi_index: if has("acpi_index") {
                read_optional(&dir.join("acpi_index"))?
            } else {
                None
            },
            physfn,
            sriov,
            netdevs: if has("net") {
                list_dir(&dir.join("net"))?
            } else {
                Vec::new()
            },
            rdma_devices: if has("infiniband") {
                list_dir(&dir.join("infiniband"))?
            } else {
                Vec::new()
            },
        })
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
