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

/// What a tree entry is. One description of the tree (this module) feeds
/// two builders: [`FileSink`] writes it as plain files once (tree-only
/// nodes), the live node serves it from memory and acts on writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// An attribute's text as the kernel prints it, without the newline.
    Attr(String),
    /// A writable attribute: its text now, and what a write to it means.
    Control(String, Control),
    /// A symlink to a root-relative target, written relative like sysfs's.
    Link(PathBuf),
    /// A function's netdev (`net/<name>/...` and `class/net/<name>`): plain
    /// files in a written tree, the kernel's live link in a served one.
    Netdev(NetdevEntry),
    /// A VF counter (`sriov/<N>/stats/<name>` on the PF, as ice lays it
    /// out): zero in a written tree, the VF's traffic in a served one.
    Counter {
        pf: PciAddress,
        vf: u16,
        counter: Counter,
    },
}

/// The writable attributes the simulated node acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Control {
    SriovNumvfs(PciAddress),
    SriovDriversAutoprobe(PciAddress),
    DriverOverride(PciAddress),
    Remove(PciAddress),
    Bind(String),
    Unbind(String),
    DriversProbe,
    Rescan,
}

/// The counters ice serves per VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    RxBytes,
    RxPackets,
    TxBytes,
    TxPackets,
    RxDropped,
    TxDropped,
}

impl Counter {
    pub const ALL: [Counter; 6] = [
        Counter::RxBytes,
        Counter::RxPackets,
        Counter::TxBytes,
        Counter::TxPackets,
        Counter::RxDropped,
        Counter::TxDropped,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Counter::RxBytes => "rx_bytes",
            Counter::RxPackets => "rx_packets",
            Counter::TxBytes => "tx_bytes",
            Counter::TxPackets => "tx_packets",
            Counter::RxDropped => "rx_dropped",
            Counter::TxDropped => "tx_dropped",
        }
    }
}

/// A function's netdev as the tree states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetdevEntry {
    pub function: PciAddress,
    /// Root-relative directory of the PCI function.
    pub function_dir: PathBuf,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    /// The link's ifindex (what ties the tree to the kernel's link).
    pub ifindex: u32,
    /// ARPHRD type: 1 Ethernet, 32 InfiniBand.
    pub arphrd: u16,
    pub phys_port_name: Option<String>,
    pub phys_switch_id: Option<String>,
}

/// The live part of a netdev's attributes, as a link shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetdevState {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// IFF_* flags (`flags` file, e.g. 0x1003).
    pub flags: u32,
    /// RFC 2863 operstate as the kernel names it (`up`, `down`,
    /// `lowerlayerdown`, ...).
    pub operstate: &'static str,
    pub carrier: bool,
}

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_MULTICAST: u32 = 0x1000;

impl NetdevEntry {
    /// What a freshly made link looks like: the model's values.
    pub fn initial_state(&self) -> NetdevState {
        let flags = IFF_BROADCAST | IFF_MULTICAST | if self.up { IFF_UP } else { 0 };
        NetdevState {
            ifindex: self.ifindex,
            mac: self.mac,
            mtu: self.mtu,
            flags,
            operstate: if self.up { "up" } else { "down" },
            carrier: self.up,
        }
    }

    /// Every file of `net/<name>/` with its text; None where the kernel
    /// answers the read with an error (`carrier` of a link that is down
    /// gives EINVAL). One list for the written and the served tree.
    pub fn attributes(&self, state: &NetdevState) -> Vec<(&'static str, Option<String>)> {
        let mut attributes = vec![
            ("address", Some(format_mac(&state.mac))),
            ("addr_len", Some("6".to_owned())),
            ("mtu", Some(state.mtu.to_string())),
            ("operstate", Some(state.operstate.to_owned())),
            ("ifindex", Some(state.ifindex.to_string())),
            ("type", Some(self.arphrd.to_string())),
            ("flags", Some(format!("{:#x}", state.flags))),
            (
                "carrier",
                (state.flags & IFF_UP != 0).then(|| u8::from(state.carrier).to_string()),
            ),
        ];
        // Drivers without switchdev support answer EOPNOTSUPP when these
        // are read; we model that by leaving them out, so readers must treat
        // "missing" and "unreadable" alike.
        if let Some(name) = &self.phys_port_name {
            attributes.push(("phys_port_name", Some(name.clone())));
        }
        if let Some(id) = &self.phys_switch_id {
            attributes.push(("phys_switch_id", Some(id.clone())));
        }
        attributes
    }

    /// `<function>/net/<name>`, root-relative.
    pub fn dir(&self) -> PathBuf {
        self.function_dir.join("net").join(&self.name)
    }
}

/// Where the description goes.
pub trait TreeSink {
    fn put(&mut self, path: &Path, entry: Entry) -> Result<(), TreeError>;
}

/// Writes the tree as plain files under a root, once.
pub struct FileSink<'a> {
    pub root: &'a Path,
}

impl FileSink<'_> {
    fn parent_dirs(&self, path: &Path) -> Result<(), TreeError> {
        match path.parent() {
            Some(parent) => std::fs::create_dir_all(parent).map_err(|source| TreeError {
                path: parent.to_owned(),
                source,
            }),
            None => Ok(()),
        }
    }

    fn text(&self, relative: &Path, content: &str) -> Result<(), TreeError> {
        let path = self.root.join(relative);
        self.parent_dirs(&path)?;
        // sysfs attributes end with a newline, as the kernel prints them
        std::fs::write(&path, format!("{content}\n")).map_err(|source| TreeError { path, source })
    }

    fn link(&self, link: &Path, target: &Path) -> Result<(), TreeError> {
        let path = self.root.join(link);
        self.parent_dirs(&path)?;
        let relative = relative_target(link, target);
        std::os::unix::fs::symlink(&relative, &path).map_err(|source| TreeError { path, source })
    }
}

impl TreeSink for FileSink<'_> {
    fn put(&mut self, path: &Path, entry: Entry) -> Result<(), TreeError> {
        match entry {
            Entry::Dir => {
                let full = self.root.join(path);
                std::fs::create_dir_all(&full).map_err(|source| TreeError { path: full, source })
            }
            Entry::Attr(text) | Entry::Control(text, _) => self.text(path, &text),
            Entry::Counter { .. } => self.text(path, "0"),
            Entry::Link(target) => self.link(path, &target),
            Entry::Netdev(netdev) => {
                let dir = netdev.dir();
                for (name, text) in netdev.attributes(&netdev.initial_state()) {
                    if let Some(text) = text {
                        self.text(&dir.join(name), &text)?;
                    }
                }
                self.link(&dir.join("device"), &netdev.function_dir)?;
                self.link(&Path::new("class/net").join(&netdev.name), &dir)
            }
        }
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

/// Write the node as plain files under `root`.
pub fn write(root: &Path, node: &SimNode, ifindexes: &Ifindexes) -> Result<(), TreeError> {
    describe(node, ifindexes, &mut FileSink { root })
}

/// Drivers every simulated node has loaded, bound or not: what an operator
/// binds VFs to for DPDK.
pub const LOADED_DRIVERS: &[&str] = &["vfio-pci"];

/// The whole tree, entry by entry, parents before children.
pub fn describe(
    node: &SimNode,
    ifindexes: &Ifindexes,
    sink: &mut dyn TreeSink,
) -> Result<(), TreeError> {
    for top in TOP_LEVEL {
        sink.put(Path::new(top), Entry::Dir)?;
    }
    for dir in ["bus/pci", "bus/pci/devices", "bus/pci/drivers", "class/net"] {
        sink.put(Path::new(dir), Entry::Dir)?;
    }
    sink.put(
        Path::new("bus/pci/rescan"),
        Entry::Control(String::new(), Control::Rescan),
    )?;
    sink.put(
        Path::new("bus/pci/drivers_probe"),
        Entry::Control(String::new(), Control::DriversProbe),
    )?;
    let mut drivers: Vec<&str> = LOADED_DRIVERS.to_vec();
    for pf in &node.pfs {
        drivers.push(&pf.spec.driver);
        drivers.push(&pf.spec.vf_driver);
        drivers.extend(pf.driver.as_deref());
        drivers.extend(pf.vfs.iter().filter_map(|vf| vf.driver.as_deref()));
    }
    drivers.sort_unstable();
    drivers.dedup();
    for driver in drivers {
        let dir = Path::new("bus/pci/drivers").join(driver);
        sink.put(&dir, Entry::Dir)?;
        sink.put(
            &dir.join("bind"),
            Entry::Control(String::new(), Control::Bind(driver.to_owned())),
        )?;
        sink.put(
            &dir.join("unbind"),
            Entry::Control(String::new(), Control::Unbind(driver.to_owned())),
        )?;
    }
    for pf in &node.pfs {
        describe_pf(sink, pf, ifindexes)?;
    }
    Ok(())
}

struct Function<'a> {
    address: PciAddress,
    device_id: &'a str,
    driver: Option<&'a str>,
    driver_override: Option<&'a str>,
    iommu_group: u32,
    netdev: Option<&'a SimNetdev>,
    rdma_device: Option<&'a str>,
}

fn describe_pf(
    sink: &mut dyn TreeSink,
    pf: &SimPf,
    ifindexes: &Ifindexes,
) -> Result<(), TreeError> {
    let spec = &pf.spec;
    let dir = device_dir(pf.address, pf.address);
    describe_function(
        sink,
        pf,
        &Function {
            address: pf.address,
            device_id: &spec.device,
            driver: pf.driver.as_deref(),
            driver_override: pf.driver_override.as_deref(),
            iommu_group: pf.iommu_group,
            netdev: pf.netdev.as_ref(),
            rdma_device: pf.rdma_device.as_deref(),
        },
        ifindexes,
    )?;
    let attr = |value: String| Entry::Attr(value);
    sink.put(
        &dir.join("sriov_totalvfs"),
        attr(spec.total_vfs.to_string()),
    )?;
    sink.put(
        &dir.join("sriov_numvfs"),
        Entry::Control(spec.num_vfs.to_string(), Control::SriovNumvfs(pf.address)),
    )?;
    sink.put(
        &dir.join("sriov_offset"),
        attr(spec.sriov_offset.to_string()),
    )?;
    sink.put(
        &dir.join("sriov_stride"),
        attr(spec.sriov_stride.to_string()),
    )?;
    // the kernel prints the VF device ID as bare hex, unlike `device`
    sink.put(
        &dir.join("sriov_vf_device"),
        attr(spec.vf_device.to_lowercase()),
    )?;
    sink.put(
        &dir.join("sriov_drivers_autoprobe"),
        Entry::Control(
            u8::from(pf.drivers_autoprobe).to_string(),
            Control::SriovDriversAutoprobe(pf.address),
        ),
    )?;
    for vf in &pf.vfs {
        let vf_dir = device_dir(pf.address, vf.address);
        sink.put(
            &dir.join(format!("virtfn{}", vf.index)),
            Entry::Link(vf_dir.clone()),
        )?;
        describe_function(
            sink,
            pf,
            &Function {
                address: vf.address,
                device_id: &spec.vf_device,
                driver: vf.driver.as_deref(),
                driver_override: vf.driver_override.as_deref(),
                iommu_group: vf.iommu_group,
                netdev: vf.netdev.as_ref(),
                rdma_device: vf.rdma_device.as_deref(),
            },
            ifindexes,
        )?;
        sink.put(&vf_dir.join("physfn"), Entry::Link(dir.clone()))?;
        let stats = dir.join(format!("sriov/{}/stats", vf.index));
        for counter in Counter::ALL {
            sink.put(
                &stats.join(counter.file_name()),
                Entry::Counter {
                    pf: pf.address,
                    vf: vf.index,
                    counter,
                },
            )?;
        }
    }
    Ok(())
}

fn describe_function(
    sink: &mut dyn TreeSink,
    pf: &SimPf,
    f: &Function,
    ifindexes: &Ifindexes,
) -> Result<(), TreeError> {
    let spec = &pf.spec;
    let dir = device_dir(pf.address, f.address);
    let bdf = f.address.to_string();
    sink.put(&dir, Entry::Dir)?;
    let hex = |value: &str| Entry::Attr(format!("0x{}", value.to_lowercase()));
    sink.put(&dir.join("vendor"), hex(&spec.vendor))?;
    sink.put(&dir.join("device"), hex(f.device_id))?;
    sink.put(&dir.join("class"), Entry::Attr(spec.class.to_lowercase()))?;
    sink.put(&dir.join("subsystem_vendor"), hex(&spec.subsystem_vendor))?;
    sink.put(&dir.join("subsystem_device"), hex(&spec.subsystem_device))?;
    sink.put(
        &dir.join("modalias"),
        Entry::Attr(modalias(
            &spec.vendor,
            f.device_id,
            &spec.subsystem_vendor,
            &spec.subsystem_device,
            &spec.class,
        )),
    )?;
    sink.put(
        &dir.join("numa_node"),
        Entry::Attr(spec.numa_node.to_string()),
    )?;
    if let (Some(index), true) = (spec.acpi_index, f.address == pf.address) {
        sink.put(&dir.join("acpi_index"), Entry::Attr(index.to_string()))?;
    }
    sink.put(
        &dir.join("driver_override"),
        Entry::Control(
            f.driver_override.unwrap_or("(null)").to_owned(),
            Control::DriverOverride(f.address),
        ),
    )?;
    sink.put(
        &dir.join("remove"),
        Entry::Control(String::new(), Control::Remove(f.address)),
    )?;
    sink.put(
        &dir.join("subsystem"),
        Entry::Link(PathBuf::from("bus/pci")),
    )?;
    sink.put(
        &Path::new("bus/pci/devices").join(&bdf),
        Entry::Link(dir.clone()),
    )?;

    if let Some(driver) = f.driver {
        let driver_dir = Path::new("bus/pci/drivers").join(driver);
        sink.put(&dir.join("driver"), Entry::Link(driver_dir.clone()))?;
        sink.put(&driver_dir.join(&bdf), Entry::Link(dir.clone()))?;
    }

    let group_dir = Path::new("kernel/iommu_groups").join(f.iommu_group.to_string());
    sink.put(&dir.join("iommu_group"), Entry::Link(group_dir.clone()))?;
    sink.put(
        &group_dir.join("devices").join(&bdf),
        Entry::Link(dir.clone()),
    )?;

    if let Some(netdev) = f.netdev {
        sink.put(
            &dir.join("net"),
            Entry::Netdev(NetdevEntry {
                function: f.address,
                function_dir: dir.clone(),
                name: netdev.name.clone(),
                mac: netdev.mac,
                mtu: netdev.mtu,
                up: netdev.up,
                ifindex: ifindexes.get(&netdev.name).copied().unwrap_or(0),
                arphrd: if spec.link_type == "infiniband" {
                    32
                } else {
                    1
                },
                phys_port_name: (f.address == pf.address)
                    .then(|| spec.phys_port_name.clone())
                    .flatten(),
                phys_switch_id: (f.address == pf.address)
                    .then(|| spec.phys_switch_id.clone())
                    .flatten(),
            }),
        )?;
    }
    if let Some(rdma) = f.rdma_device {
        let ib_dir = dir.join("infiniband").join(rdma);
        sink.put(&ib_dir.join("node_type"), Entry::Attr("1: CA".into()))?;
        sink.put(&ib_dir.join("device"), Entry::Link(dir.clone()))?;
        sink.put(
            &Path::new("class/infiniband").join(rdma),
            Entry::Link(ib_dir.clone()),
        )?;
        // uverbs char device numbering follows the RDMA device's position
        let number = rdma
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("0");
        let uverbs = format!("uverbs{number}");
        let verbs_dir = dir.join("infiniband_verbs").join(&uverbs);
        sink.put(&verbs_dir.join("ibdev"), Entry::Attr(rdma.to_owned()))?;
        sink.put(
            &Path::new("class/infiniband_verbs").join(&uverbs),
            Entry::Link(verbs_dir),
        )?;
    }
    Ok(())
}
