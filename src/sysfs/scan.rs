//! The whole node in one pass, for discovery: every PCI function, each VF's
//! index, netdevs and their link types, RDMA, aux (SF) and vDPA devices,
//! PF uplinks.
//!
//! Cost is what matters here (thousands of VFs, every start and rescan), so
//! each fact is read once, where it is cheapest:
//! - netdevs, RDMA, aux and vDPA devices come from one listing per kind
//!   (`class/net`, ...) instead of a listing per function;
//! - a PF's `virtfnN` links are read once; they give each VF's index and
//!   its directory, so a VF needs neither `physfn`, nor a listing of its
//!   directory, nor the `bus/pci/devices` link (a VF has no SR-IOV
//!   capability, and its netdevs come from `class/net`);
//! - VFs are read relative to their parent directory, opened once per PF;
//! - `modalias` gives vendor, device, subsystem IDs and class in one read,
//!   and a PF's VFs share them: the kernel gives every VF the PF's vendor
//!   and VF device ID, and the class and subsystem IDs it read from VF 0
//!   (`pci_read_vf_config_common`), so the first VF's are every VF's;
//! - what only some selectors look at is read only when [`ScanOptions`]
//!   ask for it.
//!
//! Functions come in address order, and a PF's routing ID is below its
//! VFs', so each PF is read before its VFs; a VF met first (never on a real
//! bus) would simply be read the long way.

use super::attr::{io_error, list_dir, read_number, read_optional, resolve_link, Attrs, DirHandle};
use super::auxiliary::{read_aux_devices, AuxDevice};
use super::children::{Child, ChildMap};
use super::device::{driver_name, link_type_name, read_function, PciDevice};
use super::identity::{read_identity, Identity};
use super::runs::{in_runs, threads_for};
use super::vdpa::{read_vdpa_devices, VdpaDevice};
use super::{SysfsError, SysfsRoot};
use crate::pci::PciAddress;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Facts only some users need; off means "not read".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions {
    /// `acpi_index` of VFs (`acpiIndexes`). Other functions' is read when
    /// their directory listing shows one, at no extra cost.
    pub acpi_index: bool,
    /// P_Key at index 0 of each RDMA function's port 1 (`pKeys`).
    pub pkeys: bool,
    /// Every netdev's link type (`linkTypes`, `pKeys`, display).
    pub link_types: bool,
    /// Threads that read VFs side by side: 0 for as many as the machine
    /// has cores (at most 4), 1 to read everything on the calling thread.
    pub max_threads: usize,
}

impl ScanOptions {
    /// Everything (`sriovctl inventory`, tests).
    pub const ALL: ScanOptions = ScanOptions {
        acpi_index: true,
        pkeys: true,
        link_types: true,
        max_threads: 0,
    };
    /// What every pool needs and nothing more.
    pub const POOLS: ScanOptions = ScanOptions {
        acpi_index: false,
        pkeys: false,
        link_types: false,
        max_threads: 0,
    };
}

/// What [`SysfsRoot::scan`] found.
#[derive(Debug, Default)]
pub struct NodeScan {
    /// Every readable PCI function, sorted by address. Netdevs and RDMA
    /// devices are filled from `class/net` and `class/infiniband`.
    pub functions: Vec<PciDevice>,
    /// VF → N of its PF's `virtfnN` link.
    pub vf_indexes: HashMap<PciAddress, u32>,
    /// Link type (`ether`, `infiniband`, ...) of every netdev of a PCI
    /// function or aux device, by netdev name.
    pub link_types: HashMap<String, &'static str>,
    /// A function's switchdev uplink representor: among its netdevs, the
    /// first with a `phys_switch_id` and a `phys_port_name` of `p<N>`.
    /// Looked for where it matters: functions with more than one netdev
    /// (representors appear next to the uplink) or with aux devices.
    pub uplinks: HashMap<PciAddress, String>,
    pub aux_devices: Vec<AuxDevice>,
    pub vdpa_devices: Vec<VdpaDevice>,
    /// P_Key at index 0 of port 1 of the function's first RDMA device (with
    /// [`ScanOptions::pkeys`]).
    pub pkeys: HashMap<PciAddress, u16>,
    /// What could not be read, by the PCI function it belongs to, and why.
    /// A function whose own attributes fail is left out of `functions`;
    /// a broken aux or vDPA device is left out of its list; a broken
    /// uplink or P_Key attribute leaves that fact unknown. The scan goes on.
    pub unreadable: Vec<(PciAddress, SysfsError)>,
}

impl SysfsRoot {
    pub fn scan(&self, options: &ScanOptions) -> Result<NodeScan, SysfsError> {
        let threads = options.max_threads;
        let netdevs = ChildMap::read(&self.class_net(), Some("net"), threads)?;
        let rdma = ChildMap::read(
            &self.path().join("class/infiniband"),
            Some("infiniband"),
            threads,
        )?;
        let aux = ChildMap::read(&self.path().join("bus/auxiliary/devices"), None, threads)?;
        let vdpa = ChildMap::read(&self.path().join("bus/vdpa/devices"), None, threads)?;

        let mut scan = NodeScan::default();
        // First every function no PF has announced as its VF, in address
        // order (so PFs, which announce their VFs); then the VFs, side by
        // side when there are many.
        let mut announced: HashMap<PciAddress, KnownVf> = HashMap::new();
        let mut vfs: Vec<(PciAddress, KnownVf)> = Vec::new();
        let mut others: Vec<Option<(PciAddress, FunctionRead)>> = Vec::new();
        for address in self.pci_addresses()? {
            match announced.remove(&address) {
                Some(vf) => vfs.push((address, vf)),
                None => {
                    let result = self.read_other(
                        address,
                        &netdevs,
                        options,
                        &mut announced,
                        &mut scan.vf_indexes,
                    );
                    others.push(Some((address, result)));
                }
            }
        }
        // the VFs' list (the long one) with room for the others, so that
        // neither is copied into a third
        let mut read = read_vfs(&vfs, &netdevs, options, others.len());
        read.append(&mut others);
        // addresses are unique: unstable is the same order, without a
        // scratch list the size of this one
        read.sort_unstable_by_key(|slot| slot.as_ref().map(|(address, _)| *address));
        // Collected from `read` by value: std reuses its buffer, so the
        // functions do not take a second one beside it (two buffers, one
        // grown by doubling, were the largest part of a 4096-VF daemon's
        // peak heap).
        scan.functions = read
            .into_iter()
            .filter_map(|slot| {
                let (address, result) = slot?;
                match result {
                    Ok((mut device, link_types)) => {
                        let name = address.to_string();
                        scan.link_types.extend(link_types);
                        device.netdevs = netdevs.names_of(&name);
                        device.rdma_devices = rdma.names_of(&name);
                        Some(device)
                    }
                    Err(error) => {
                        scan.unreadable.push((address, error));
                        None
                    }
                }
            })
            .collect();

        scan.aux_devices = read_aux_devices(&aux, &netdevs, &rdma, &mut scan.unreadable);
        scan.vdpa_devices = read_vdpa_devices(&vdpa, &mut scan.unreadable);
        if options.link_types {
            for aux in &scan.aux_devices {
                for netdev in netdevs.of(&aux.name) {
                    match read_link_type(&netdev.dir) {
                        Ok(Some(link_type)) => {
                            scan.link_types.insert(netdev.name.clone(), link_type);
                        }
                        Ok(None) => {}
                        Err(error) => scan.unreadable.push((aux.parent, error)),
                    }
                }
            }
        }
        let with_aux: HashSet<PciAddress> = scan.aux_devices.iter().map(|a| a.parent).collect();
        for device in &scan.functions {
            let name = device.address.to_string();
            let children = netdevs.of(&name);
            if children.len() > 1 || (with_aux.contains(&device.address) && !children.is_empty()) {
                match find_uplink(children) {
                    Ok(Some(uplink)) => {
                        scan.uplinks.insert(device.address, uplink);
                    }
                    Ok(None) => {}
                    Err(error) => scan.unreadable.push((device.address, error)),
                }
            }
            let first_rdma = rdma.of(&name).first();
            if let (true, Some(first)) = (options.pkeys, first_rdma) {
                match read_pkey(&first.dir) {
                    Ok(Some(pkey)) => {
                        scan.pkeys.insert(device.address, pkey);
                    }
                    Ok(None) => {}
                    Err(error) => scan.unreadable.push((device.address, error)),
                }
            }
        }
        Ok(scan)
    }

    /// A function not announced as a VF: resolve its directory, list it
    /// once, read what the listing shows, and, for a PF, its `virtfnN`
    /// links.
    fn read_other(
        &self,
        address: PciAddress,
        netdevs: &ChildMap,
        options: &ScanOptions,
        announced: &mut HashMap<PciAddress, KnownVf>,
        vf_indexes: &mut HashMap<PciAddress, u32>,
    ) -> FunctionRead {
        let path = self.real_device_dir(address)?;
        let names = list_dir(&path)?;
        let entries: HashSet<String> = names.iter().cloned().collect();
        let handle = DirHandle::open(&path)?;
        let dir = handle.attrs();
        let device = read_function(&dir, address, &entries)?;
        // one copy of the VFs' parent directory, not one per VF
        let mut parent: Option<Arc<Path>> = None;
        for name in &names {
            let Some(index) = name
                .strip_prefix("virtfn")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(target) = dir.read_link(name)? else {
                continue;
            };
            let vf_dir = resolve_link(&path, &target);
            let vf = vf_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<PciAddress>().ok())
                .ok_or_else(|| SysfsError::Parse {
                    path: path.join(name),
                    content: target.display().to_string(),
                    expected: "a link to the VF's PCI directory",
                })?;
            let vf_parent = vf_dir.parent().unwrap_or(Path::new(""));
            let parent = match &parent {
                Some(known) if **known == *vf_parent => known.clone(),
                _ => parent.insert(Arc::from(vf_parent)).clone(),
            };
            vf_indexes.insert(vf, index);
            announced.insert(
                vf,
                KnownVf {
                    parent,
                    pf: address,
                },
            );
        }
        let link_types = read_link_types(&dir, netdevs, address, options)?;
        Ok((device, link_types))
    }
}

/// A function's facts and its netdevs' link types.
type FunctionRead = Result<(PciDevice, Vec<(String, &'static str)>), SysfsError>;

/// A VF found through its PF's `virtfnN` link.
struct KnownVf {
    /// The directory holding the VF's directory (VFs are their PF's
    /// siblings in the device tree), shared by a PF's VFs.
    parent: Arc<Path>,
    pf: PciAddress,
}

/// Read the announced VFs, in contiguous runs side by side (see `runs`),
/// with room for `spare` more results.
fn read_vfs(
    vfs: &[(PciAddress, KnownVf)],
    netdevs: &ChildMap,
    options: &ScanOptions,
    spare: usize,
) -> Vec<Option<(PciAddress, FunctionRead)>> {
    let threads = threads_for(vfs.len(), options.max_threads);
    in_runs(vfs, threads, spare, |run, slots| {
        read_vf_run(run, netdevs, options, slots)
    })
}

/// A run of VFs, each read relative to its parent directory (opened once
/// per run of siblings), with the identity shared per PF.
fn read_vf_run(
    vfs: &[(PciAddress, KnownVf)],
    netdevs: &ChildMap,
    options: &ScanOptions,
    read: &mut [Option<(PciAddress, FunctionRead)>],
) {
    let mut parent: Option<DirHandle> = None;
    let mut identities: HashMap<PciAddress, Identity> = HashMap::new();
    for ((address, vf), slot) in vfs.iter().zip(read) {
        let result = open_parent(&mut parent, &vf.parent).and_then(|dir| {
            let name = address.to_string();
            let attrs = dir.attrs_of(&name);
            let identity = match identities.get(&vf.pf) {
                Some(identity) => *identity,
                None => {
                    let identity = read_identity(&attrs)?;
                    identities.insert(vf.pf, identity);
                    identity
                }
            };
            let device = read_vf(&attrs, *address, vf.pf, identity, options)?;
            let link_types = read_link_types(&attrs, netdevs, *address, options)?;
            Ok((device, link_types))
        });
        *slot = Some((*address, result));
    }
}

/// The open parent directory, reopened only when the run of siblings changes.
fn open_parent<'p>(
    parent: &'p mut Option<DirHandle>,
    path: &Path,
) -> Result<&'p DirHandle, SysfsError> {
    if parent.as_ref().is_none_or(|dir| dir.path() != path) {
        *parent = Some(DirHandle::open(path)?);
    }
    parent
        .as_ref()
        .ok_or_else(|| io_error(path, std::io::ErrorKind::NotFound.into()))
}

/// NUMA node, driver, IOMMU group: no listing, and the identity its PF's
/// VFs share (see the module comment).
fn read_vf(
    dir: &Attrs,
    address: PciAddress,
    pf: PciAddress,
    identity: Identity,
    options: &ScanOptions,
) -> Result<PciDevice, SysfsError> {
    let numa_node: Option<i64> = dir.read_number("numa_node", "a NUMA node number or -1")?;
    let driver = driver_name(dir)?;
    Ok(PciDevice {
        address,
        vendor: identity.vendor,
        device: identity.device,
        subsystem_vendor: identity.subsystem_vendor,
        subsystem_device: identity.subsystem_device,
        class: identity.class,
        driver,
        numa_node: numa_node.and_then(|n| u32::try_from(n).ok()),
        iommu_group: dir.parse_link("iommu_group", "a link to kernel/iommu_groups/<number>")?,
        acpi_index: if options.acpi_index {
            dir.read_optional("acpi_index")?
        } else {
            None
        },
        physfn: Some(pf),
        sriov: None,
        netdevs: Vec::new(),
        rdma_devices: Vec::new(),
    })
}

/// `net/<netdev>/type` of the function's netdevs, as link type names (when
/// [`ScanOptions::link_types`] asks).
fn read_link_types(
    dir: &Attrs,
    netdevs: &ChildMap,
    address: PciAddress,
    options: &ScanOptions,
) -> Result<Vec<(String, &'static str)>, SysfsError> {
    if !options.link_types {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for netdev in netdevs.of(&address.to_string()) {
        let path = format!("net/{}/type", netdev.name);
        if let Some(arphrd) = dir.read_number::<u32>(&path, "an ARPHRD number")? {
            found.push((netdev.name.clone(), link_type_name(arphrd)));
        }
    }
    Ok(found)
}

fn read_link_type(netdev_dir: &Path) -> Result<Option<&'static str>, SysfsError> {
    Ok(read_number::<u32>(&netdev_dir.join("type"), "an ARPHRD number")?.map(link_type_name))
}

/// sriovnet's uplink test: `phys_switch_id` readable and non-empty, and
/// `phys_port_name` `p<N>`. Drivers without switchdev answer EOPNOTSUPP when
/// these are read, which counts as "not an uplink", like a missing file.
fn find_uplink(netdevs: &[Child]) -> Result<Option<String>, SysfsError> {
    for netdev in netdevs {
        let switch_id = optional_attr(&netdev.dir.join("phys_switch_id"))?;
        if switch_id.is_none_or(|id| id.is_empty()) {
            continue;
        }
        let port = optional_attr(&netdev.dir.join("phys_port_name"))?;
        let is_uplink = port.as_deref().is_some_and(|p| {
            p.strip_prefix('p')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if is_uplink {
            return Ok(Some(netdev.name.clone()));
        }
    }
    Ok(None)
}

/// An attribute that may be absent or refuse to be read (EOPNOTSUPP).
fn optional_attr(path: &Path) -> Result<Option<String>, SysfsError> {
    match read_optional(path) {
        Ok(value) => Ok(value),
        Err(SysfsError::Io { source, .. })
            if source.raw_os_error() == Some(nix::errno::Errno::EOPNOTSUPP as i32) =>
        {
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// `<rdma dev>/ports/1/pkeys/0`, printed by the kernel as `0xffff`.
fn read_pkey(rdma_dir: &Path) -> Result<Option<u16>, SysfsError> {
    let path = rdma_dir.join("ports/1/pkeys/0");
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let digits = text.strip_prefix("0x").unwrap_or(&text);
    u16::from_str_radix(digits, 16)
        .map(Some)
        .map_err(|_| SysfsError::Parse {
            path,
            content: text.clone(),
            expected: "a partition key such as 0xffff",
        })
}
