//! Writes the fake sysfs tree the way the kernel lays it out:
//! real directories under `devices/`, and relative symlinks for
//! `bus/pci/devices`, `driver`, `iommu_group`, `physfn`, `virtfnN`,
//! `class/net` and the rest. Pure file-system work under the given root.

use super::model::{SimNetdev, SimNode, SimPf};
use crate::netlink::format_mac;
use crate::pci::PciAddress;
use std::collections::HashMap;
use std::io;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("writing simulated sysfs {path}: {source}")]
pub struct TreeError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What only the kernel knows once links exist: each netdev's ifindex.
pub type Ifindexes = HashMap<String, u32>;

/// The top-level entries the tree consists of (what destroy removes).
pub const TOP_LEVEL: &[&str] = &["bus", "class", "devices", "kernel"];

struct Writer<'a> {
    root: &'a Path,
}

impl Writer<'_> {
    fn dir(&self, relative: &Path) -> Result<(), TreeError> {
        let path = self.root.join(relative);
        std::fs::create_dir_all(&path).map_err(|source| TreeError { path, source })
    }

    fn file(&self, relative: &Path, content: impl AsRef<str>) -> Result<(), TreeError> {
        let path = self.root.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| TreeError {
                path: parent.to_owned(),
                source,
            })?;
        }
        // sysfs attributes end with a newline, as the kernel prints them
        std::fs::write(&path, format!("{}\n", content.as_ref()))
            .map_err(|source| TreeError { path, source })
    }

    /// A symlink at `link` pointing to `target`, both relative to the root,
    /// written as a relative path the way sysfs does.
    fn link(&self, link: &Path, target: &Path) -> Result<(), TreeError> {
        let path = self.root.join(link);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| TreeError {
                path: parent.to_owned(),
                source,
            })?;
        }
        let relative = relative_target(link, target);
        std::os::unix::fs::symlink(&relative, &path).map_err(|source| TreeError { path, source })
    }
}

/// `link` and `target` are root-relative; the result climbs out of the
/// link's directory and back down to the target.
pub fn relative_target(link: &Path, target: &Path) -> PathBuf {
    let link_dir: Vec<Component> = link
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    let target_parts: Vec<Component> = target.components().collect();
    let common = link_dir
        .iter()
        .zip(&target_parts)
        .take_while(|(a, b)| a == b)
        .count()
        // like the kernel, climb at least to the target's parent: a link to
        // an ancestor reads `../../../0000:3b:00.0`, never `../..`
        .min(target_parts.len().saturating_sub(1));
    let mut relative = PathBuf::new();
    for _ in common..link_dir.len() {
        relative.push("..");
    }
    for part in &target_parts[common..] {
        relative.push(part);
    }
    relative
}

/// `devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0`: the device below a root
/// port on the bus above it (or directly on the host bridge on bus 0).
pub fn device_dir(pf: PciAddress, function: PciAddress) -> PathBuf {
    let mut path = PathBuf::from("devices");
    if pf.bus == 0 {
        path.push(format!("pci{:04x}:00", pf.domain));
    } else {
        let root_bus = pf.bus - 1;
        path.push(format!("pci{:04x}:{root_bus:02x}", pf.domain));
        path.push(format!("{:04x}:{root_bus:02x}:00.0", pf.domain));
    }
    path.push(function.to_string());
    path
}

/// `pci:v00008086d00001592sv00008086sd00000002bc02sc00i00`
fn modalias(vendor: &str, device: &str, sub_vendor: &str, sub_device: &str, class: &str) -> String {
    let class = class.trim_start_matches("0x");
    let (base, rest) = class.split_at(2.min(class.len()));
    let (sub, interface) = rest.split_at(2.min(rest.len()));
    format!(
        "pci:v0000{}d0000{}sv0000{}sd0000{}bc{}sc{}i{}",
        vendor.to_uppercase(),
        device.to_uppercase(),
        sub_vendor.to_uppercase(),
        sub_device.to_uppercase(),
        base.to_uppercase(),
        sub.to_uppercase(),
        interface.to_uppercase()
    )
}

pub fn write(root: &Path, node: &SimNode, ifindexes: &Ifindexes) -> Result<(), TreeError> {
    let w = Writer { root };
    for top in TOP_LEVEL {
        w.dir(Path::new(top))?;
    }
    w.dir(Path::new("bus/pci/devices"))?;
    w.dir(Path::new("class/net"))?;
    for pf in &node.pfs {
        write_pf(&w, pf, ifindexes)?;
    }
    Ok(())
}

struct Function<'a> {
    address: PciAddress,
    device_id: &'a str,
    driver: &'a str,
    iommu_group: u32,
    netdev: Option<&'a SimNetdev>,
    rdma_device: Option<&'a str>,
    operstate_up: bool,
}

fn write_pf(w: &Writer, pf: &SimPf, ifindexes: &Ifindexes) -> Result<(), TreeError> {
    let spec = &pf.spec;
    let dir = device_dir(pf.address, pf.address);
    write_function(
        w,
        pf,
        &Function {
            address: pf.address,
            device_id: &spec.device,
            driver: &spec.driver,
            iommu_group: pf.iommu_group,
            netdev: pf.netdev.as_ref(),
            rdma_device: pf.rdma_device.as_deref(),
            operstate_up: true,
        },
        ifindexes,
    )?;
    w.file(&dir.join("sriov_totalvfs"), spec.total_vfs.to_string())?;
    w.file(&dir.join("sriov_numvfs"), spec.num_vfs.to_string())?;
    w.file(&dir.join("sriov_offset"), spec.sriov_offset.to_string())?;
    w.file(&dir.join("sriov_stride"), spec.sriov_stride.to_string())?;
    // the kernel prints the VF device ID as bare hex, unlike `device`
    w.file(&dir.join("sriov_vf_device"), spec.vf_device.to_lowercase())?;
    w.file(&dir.join("sriov_drivers_autoprobe"), "1")?;
    for vf in &pf.vfs {
        let vf_dir = device_dir(pf.address, vf.address);
        w.link(&dir.join(format!("virtfn{}", vf.index)), &vf_dir)?;
        write_function(
            w,
            pf,
            &Function {
                address: vf.address,
                device_id: &spec.vf_device,
                driver: &vf.driver,
                iommu_group: vf.iommu_group,
                netdev: vf.netdev.as_ref(),
                rdma_device: vf.rdma_device.as_deref(),
                operstate_up: false,
            },
            ifindexes,
        )?;
        w.link(&vf_dir.join("physfn"), &dir)?;
    }
    Ok(())
}

fn write_function(
    w: &Writer,
    pf: &SimPf,
    f: &Function,
    ifindexes: &Ifindexes,
) -> Result<(), TreeError> {
    let spec = &pf.spec;
    let dir = device_dir(pf.address, f.address);
    let bdf = f.address.to_string();
    w.dir(&dir)?;
    w.file(
        &dir.join("vendor"),
        format!("0x{}", spec.vendor.to_lowercase()),
    )?;
    w.file(
        &dir.join("device"),
        format!("0x{}", f.device_id.to_lowercase()),
    )?;
    w.file(&dir.join("class"), spec.class.to_lowercase())?;
    w.file(
        &dir.join("subsystem_vendor"),
        format!("0x{}", spec.subsystem_vendor.to_lowercase()),
    )?;
    w.file(
        &dir.join("subsystem_device"),
        format!("0x{}", spec.subsystem_device.to_lowercase()),
    )?;
    w.file(
        &dir.join("modalias"),
        modalias(
            &spec.vendor,
            f.device_id,
            &spec.subsystem_vendor,
            &spec.subsystem_device,
            &spec.class,
        ),
    )?;
    w.file(&dir.join("numa_node"), spec.numa_node.to_string())?;
    if let (Some(index), true) = (spec.acpi_index, f.address == pf.address) {
        w.file(&dir.join("acpi_index"), index.to_string())?;
    }
    w.link(&dir.join("subsystem"), Path::new("bus/pci"))?;
    w.link(&Path::new("bus/pci/devices").join(&bdf), &dir)?;

    let driver_dir = Path::new("bus/pci/drivers").join(f.driver);
    w.dir(&driver_dir)?;
    w.link(&dir.join("driver"), &driver_dir)?;
    w.link(&driver_dir.join(&bdf), &dir)?;

    let group_dir = Path::new("kernel/iommu_groups").join(f.iommu_group.to_string());
    w.link(&dir.join("iommu_group"), &group_dir)?;
    w.link(&group_dir.join("devices").join(&bdf), &dir)?;

    if let Some(netdev) = f.netdev {
        let net_dir = dir.join("net").join(&netdev.name);
        w.file(&net_dir.join("address"), format_mac(&netdev.mac))?;
        w.file(&net_dir.join("addr_len"), "6")?;
        w.file(&net_dir.join("mtu"), netdev.mtu.to_string())?;
        w.file(
            &net_dir.join("operstate"),
            if f.operstate_up { "up" } else { "down" },
        )?;
        let ifindex = ifindexes.get(&netdev.name).copied().unwrap_or(0);
        w.file(&net_dir.join("ifindex"), ifindex.to_string())?;
        let arphrd = if spec.link_type == "infiniband" {
            32
        } else {
            1
        };
        w.file(&net_dir.join("type"), arphrd.to_string())?;
        // Drivers without switchdev support answer EOPNOTSUPP when these are
        // read; we model that by leaving them out, so readers must treat
        // "missing" and "unreadable" alike.
        if f.address == pf.address {
            if let Some(name) = &spec.phys_port_name {
                w.file(&net_dir.join("phys_port_name"), name)?;
            }
            if let Some(id) = &spec.phys_switch_id {
                w.file(&net_dir.join("phys_switch_id"), id)?;
            }
        }
        w.link(&net_dir.join("device"), &dir)?;
        w.link(&Path::new("class/net").join(&netdev.name), &net_dir)?;
    }
    if let Some(rdma) = f.rdma_device {
        let ib_dir = dir.join("infiniband").join(rdma);
        w.file(&ib_dir.join("node_type"), "1: CA")?;
        w.link(&ib_dir.join("device"), &dir)?;
        w.link(&Path::new("class/infiniband").join(rdma), &ib_dir)?;
        // uverbs char device numbering follows the RDMA device's position
        let number = rdma
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("0");
        let uverbs = format!("uverbs{number}");
        let verbs_dir = dir.join("infiniband_verbs").join(&uverbs);
        w.file(&verbs_dir.join("ibdev"), rdma)?;
        w.link(
            &Path::new("class/infiniband_verbs").join(&uverbs),
            &verbs_dir,
        )?;
    }
    Ok(())
}
