//! The node's PCI functions as they are now, and what a write to a control
//! attribute does to them, with the kernel's answers (errno) for what the
//! kernel refuses. Side effects on real links go through the wires; what
//! a change announces is returned as [`DeviceEvent`]s, sent by the caller
//! once the tree shows the change (as the kernel announces a device after
//! its sysfs entries exist).

use crate::devtools::sim::model::{driver_has_netdev, make_vf, SimNetdev, SimNode, SimPf};
use crate::devtools::sim::tree::{Control, Ifindexes};
use crate::devtools::sim::wiring::{self, WirePf, WiringError};
use crate::netlink::{LinkCounters, Netlink};
use crate::pci::PciAddress;
use nix::errno::Errno;
use std::collections::HashMap;
use std::path::PathBuf;

/// A change to a PCI function, with what its uevent says of it (taken
/// when it happened: a removed function is gone by the time it is sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    pub action: DeviceAction,
    pub address: PciAddress,
    /// Root-relative directory of the function (`devices/pci.../<bdf>`).
    pub devpath: PathBuf,
    pub vendor: String,
    pub device: String,
    pub subsystem_vendor: String,
    pub subsystem_device: String,
    /// `0x020000`
    pub class: String,
    /// The driver bound (for `bind`).
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceAction {
    Add,
    Remove,
    Bind,
    Unbind,
    /// A PF after its VFs were enabled.
    Change,
}

/// Why a write failed: the errno the writer gets, and what to log.
#[derive(Debug)]
pub struct WriteError {
    pub errno: Errno,
    pub detail: String,
}

fn refuse(errno: Errno, detail: impl Into<String>) -> WriteError {
    WriteError {
        errno,
        detail: detail.into(),
    }
}

impl From<WiringError> for WriteError {
    fn from(error: WiringError) -> Self {
        refuse(Errno::EIO, error.to_string())
    }
}

pub struct LiveNode {
    pub node: SimNode,
    /// Removed PFs, brought back by a rescan.
    removed: Vec<SimPf>,
    /// Host ifindex of each netdev, by its name in the model.
    pub ifindexes: Ifindexes,
    wires: HashMap<PciAddress, WirePf>,
    host: Netlink,
    next_group: u32,
    next_rdma: u32,
    /// Where `vfio/<group>` nodes appear for functions on vfio-pci.
    dev_root: PathBuf,
    /// The netdev a function had before an unbind: a later bind gives it
    /// back with the same name and MAC, as udev and the driver do.
    remembered: HashMap<PciAddress, SimNetdev>,
    events: Vec<DeviceEvent>,
}

/// Where a function is in the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Pf(usize),
    Vf(usize, usize),
}

impl LiveNode {
    pub fn new(
        node: SimNode,
        ifindexes: Ifindexes,
        wires: HashMap<PciAddress, WirePf>,
        host: Netlink,
        dev_root: PathBuf,
    ) -> Result<LiveNode, WriteError> {
        let next_group = node
            .pfs
            .iter()
            .flat_map(|pf| {
                std::iter::once(pf.iommu_group).chain(pf.vfs.iter().map(|vf| vf.iommu_group))
            })
            .max()
            .map_or(0, |g| g + 1);
        let next_rdma = node
            .pfs
            .iter()
            .flat_map(|pf| {
                pf.rdma_device
                    .iter()
                    .chain(pf.vfs.iter().filter_map(|vf| vf.rdma_device.as_ref()))
            })
            .count() as u32;
        let live = LiveNode {
            node,
            removed: Vec::new(),
            ifindexes,
            wires,
            host,
            next_group,
            next_rdma,
            dev_root,
            remembered: HashMap::new(),
            events: Vec::new(),
        };
        let vfio = live.dev_root.join("vfio");
        std::fs::create_dir_all(&vfio)
            .map_err(|e| refuse(Errno::EIO, format!("{}: {e}", vfio.display())))?;
        touch(&vfio.join("vfio"))?;
        for pf in &live.node.pfs {
            for (driver, group) in std::iter::once((&pf.driver, pf.iommu_group))
                .chain(pf.vfs.iter().map(|vf| (&vf.driver, vf.iommu_group)))
            {
                if driver.as_deref() == Some("vfio-pci") {
                    touch(&vfio.join(group.to_string()))?;
                }
            }
        }
        Ok(live)
    }

    /// The events the last writes produced, oldest first.
    pub fn take_events(&mut self) -> Vec<DeviceEvent> {
        std::mem::take(&mut self.events)
    }

    /// A write of `data` to a control attribute.
    pub fn write(&mut self, control: &Control, data: &[u8]) -> Result<(), WriteError> {
        let text = std::str::from_utf8(data)
            .map_err(|_| refuse(Errno::EINVAL, "not text"))?
            .trim_end_matches('\n');
        match control {
            Control::SriovNumvfs(pf) => self.set_num_vfs(*pf, text),
            Control::SriovDriversAutoprobe(pf) => {
                let on = parse_bool(text)?;
                let index = self.pf_index(*pf)?;
                self.node.pfs[index].drivers_autoprobe = on;
                Ok(())
            }
            Control::DriverOverride(address) => {
                let value = (!text.is_empty()).then(|| text.to_owned());
                match self.place(*address)? {
                    Place::Pf(p) => self.node.pfs[p].driver_override = value,
                    Place::Vf(p, v) => self.node.pfs[p].vfs[v].driver_override = value,
                }
                Ok(())
            }
            Control::Unbind(driver) => {
                let address = parse_address(text)?;
                let place = self.place(address)?;
                if self.driver_of(place) != Some(driver.as_str()) {
                    return Err(refuse(
                        Errno::ENODEV,
                        format!("{address} is not bound to {driver}"),
                    ));
                }
                self.unbind(place)
            }
            Control::Bind(driver) => {
                let address = parse_address(text)?;
                let place = self.place(address)?;
                // bind_store: driver_match_device first, then "bound already"
                if !self.matches(place, driver) {
                    return Err(refuse(
                        Errno::ENODEV,
                        format!("{driver} does not match {address} (see driver_override)"),
                    ));
                }
                if let Some(bound) = self.driver_of(place) {
                    return Err(refuse(
                        Errno::EBUSY,
                        format!("{address} is bound to {bound} already"),
                    ));
                }
                self.bind(place, driver)
            }
            Control::DriversProbe => {
                let address = parse_address(text)?;
                let place = self.place(address)?;
                if self.driver_of(place).is_some() {
                    return Ok(());
                }
                match self.probe_driver(place) {
                    Some(driver) => self.bind(place, &driver),
                    // nothing matches: the kernel leaves it unbound, and says so with success
                    None => Ok(()),
                }
            }
            Control::Remove(address) => {
                if parse_unsigned(text)? == 0 {
                    return Ok(());
                }
                self.remove(*address)
            }
            Control::Rescan => {
                if parse_unsigned(text)? == 0 {
                    return Ok(());
                }
                self.rescan()
            }
        }
    }

    /// The counters of VF `vf` of `pf`, from the VF's side of the wire (the
    /// wire peer's receive is the VF's transmit).
    pub fn vf_counters(&mut self, pf: PciAddress, vf: u16) -> Option<LinkCounters> {
        let wire = self.wires.get_mut(&pf)?;
        let peer = wire.netlink.link_counters(&format!("vf{vf}")).ok()??;
        Some(LinkCounters {
            rx_bytes: peer.tx_bytes,
            rx_packets: peer.tx_packets,
            tx_bytes: peer.rx_bytes,
            tx_packets: peer.rx_packets,
            rx_dropped: peer.tx_dropped,
            tx_dropped: peer.rx_dropped,
        })
    }

    fn record(
        &mut self,
        action: DeviceAction,
        pf: PciAddress,
        address: PciAddress,
        driver: Option<String>,
    ) {
        let spec = self
            .node
            .pfs
            .iter()
            .chain(&self.removed)
            .find(|candidate| candidate.address == pf)
            .map(|pf| &pf.spec);
        let Some(spec) = spec else {
            return;
        };
        self.events.push(DeviceEvent {
            action,
            address,
            devpath: crate::devtools::sim::tree::device_dir(pf, address),
            vendor: spec.vendor.clone(),
            device: if address == pf {
                spec.device.clone()
            } else {
                spec.vf_device.clone()
            },
            subsystem_vendor: spec.subsystem_vendor.clone(),
            subsystem_device: spec.subsystem_device.clone(),
            class: spec.class.clone(),
            driver,
        });
    }

    fn pf_index(&self, address: PciAddress) -> Result<usize, WriteError> {
        match self.place(address)? {
            Place::Pf(p) => Ok(p),
            Place::Vf(..) => Err(refuse(Errno::EINVAL, format!("{address} is a VF"))),
        }
    }

    fn place(&self, address: PciAddress) -> Result<Place, WriteError> {
        for (p, pf) in self.node.pfs.iter().enumerate() {
            if pf.address == address {
                return Ok(Place::Pf(p));
            }
            if let Some(v) = pf.vfs.iter().position(|vf| vf.address == address) {
                return Ok(Place::Vf(p, v));
            }
        }
        Err(refuse(Errno::ENODEV, format!("no PCI function {address}")))
    }

    fn driver_of(&self, place: Place) -> Option<&str> {
        match place {
            Place::Pf(p) => self.node.pfs[p].driver.as_deref(),
            Place::Vf(p, v) => self.node.pfs[p].vfs[v].driver.as_deref(),
        }
    }

    /// The driver whose ID table claims the function.
    fn native_driver(&self, place: Place) -> &str {
        match place {
            Place::Pf(p) => &self.node.pfs[p].spec.driver,
            Place::Vf(p, _) => &self.node.pfs[p].spec.vf_driver,
        }
    }

    fn override_of(&self, place: Place) -> Option<&str> {
        match place {
            Place::Pf(p) => self.node.pfs[p].driver_override.as_deref(),
            Place::Vf(p, v) => self.node.pfs[p].vfs[v].driver_override.as_deref(),
        }
    }

    /// The kernel's `driver_match_device` for PCI: with an override only
    /// that driver; else the ID table, which vfio-pci and uio do not have.
    fn matches(&self, place: Place, driver: &str) -> bool {
        match self.override_of(place) {
            Some(chosen) => chosen == driver,
            None => self.native_driver(place) == driver,
        }
    }

    fn probe_driver(&self, place: Place) -> Option<String> {
        let candidate = self
            .override_of(place)
            .unwrap_or_else(|| self.native_driver(place));
        // an override naming a driver this node does not have binds nothing
        let known = crate::devtools::sim::tree::LOADED_DRIVERS.contains(&candidate)
            || self
                .node
                .pfs
                .iter()
                .any(|pf| pf.spec.driver == candidate || pf.spec.vf_driver == candidate);
        known.then(|| candidate.to_owned())
    }

    fn set_num_vfs(&mut self, pf: PciAddress, text: &str) -> Result<(), WriteError> {
        // sriov_numvfs_store: kstrtou16, then the total, then "same as now"
        let wanted = kstrtou16(text)
            .ok_or_else(|| refuse(Errno::EINVAL, format!("{text:?} is not a VF count")))?;
        let p = self.pf_index(pf)?;
        let current = self.node.pfs[p].spec.num_vfs;
        let total = self.node.pfs[p].spec.total_vfs;
        if wanted > total {
            return Err(refuse(
                Errno::ERANGE,
                format!("{wanted} VFs asked, sriov_totalvfs is {total}"),
            ));
        }
        if wanted == current {
            return Ok(());
        }
        if self.node.pfs[p].driver.is_none() {
            return Err(refuse(
                Errno::ENOENT,
                format!("{pf}: no driver bound, cannot configure SR-IOV"),
            ));
        }
        if wanted == 0 {
            return self.disable_sriov(p);
        }
        if current != 0 {
            return Err(refuse(
                Errno::EBUSY,
                format!("{pf}: {current} VFs already enabled (write 0 first)"),
            ));
        }
        self.enable_sriov(p, wanted)
    }

    fn enable_sriov(&mut self, p: usize, count: u16) -> Result<(), WriteError> {
        if let Err(error) = self.add_vfs(p, count) {
            // sriov_enable undoes a half-made enable: 0 VFs, not some
            if let Err(undo) = self.disable_sriov(p) {
                tracing::error!(detail = %undo.detail, "undoing a failed sriov_numvfs write");
            }
            return Err(error);
        }
        // the kernel announces the PF's new state once its VFs exist
        let pf = self.node.pfs[p].address;
        let driver = self.node.pfs[p].driver.clone();
        self.record(DeviceAction::Change, pf, pf, driver);
        Ok(())
    }

    fn add_vfs(&mut self, p: usize, count: u16) -> Result<(), WriteError> {
        let instance = self.node.instance.clone();
        // VFs made now are the driver's: the layout's per-VF overrides
        // described how the node was set up at boot, not what a new VF gets
        self.node.pfs[p].spec.vfs.clear();
        self.node.pfs[p].spec.num_vfs = count;
        for index in 0..count {
            let spec = self.node.pfs[p].spec.clone();
            let rdma_base = self.next_rdma;
            let mut rdma_used = 0;
            let mut take_rdma = |has_netdev: bool| {
                (spec.rdma && has_netdev).then(|| {
                    rdma_used += 1;
                    match spec.vendor.as_str() {
                        "15b3" => format!("mlx5_{}", rdma_base + rdma_used - 1),
                        _ => format!("rdma{}", rdma_base + rdma_used - 1),
                    }
                })
            };
            let mut vf = make_vf(&spec, &instance, index, self.next_group, &mut take_rdma)
                .map_err(|detail| refuse(Errno::EINVAL, detail))?;
            self.next_rdma += rdma_used;
            self.next_group += 1;
            let driver = vf.driver.take();
            let netdev = vf.netdev.take();
            let address = vf.address;
            self.node.pfs[p].vfs.push(vf);
            self.record(DeviceAction::Add, spec.pci_address, address, None);
            let v = self.node.pfs[p].vfs.len() - 1;
            if let (true, Some(driver)) = (self.node.pfs[p].drivers_autoprobe, driver) {
                self.node.pfs[p].vfs[v].netdev = netdev;
                self.bind(Place::Vf(p, v), &driver)?;
            }
        }
        Ok(())
    }

    fn disable_sriov(&mut self, p: usize) -> Result<(), WriteError> {
        // sriov_del_vfs: VF 0 first
        while !self.node.pfs[p].vfs.is_empty() {
            if self.node.pfs[p].vfs[0].driver.is_some() {
                self.unbind(Place::Vf(p, 0))?;
            }
            let vf = self.node.pfs[p].vfs.remove(0);
            self.record(
                DeviceAction::Remove,
                self.node.pfs[p].address,
                vf.address,
                None,
            );
        }
        self.node.pfs[p].spec.num_vfs = 0;
        self.node.pfs[p].spec.vfs.clear();
        Ok(())
    }

    fn bind(&mut self, place: Place, driver: &str) -> Result<(), WriteError> {
        let (p, address, group, has_netdev) = {
            let pf = match place {
                Place::Pf(p) | Place::Vf(p, _) => &self.node.pfs[p],
            };
            let (address, group) = match place {
                Place::Pf(_) => (pf.address, pf.iommu_group),
                Place::Vf(_, v) => (pf.vfs[v].address, pf.vfs[v].iommu_group),
            };
            let p = match place {
                Place::Pf(p) | Place::Vf(p, _) => p,
            };
            (p, address, group, driver_has_netdev(&pf.spec, driver))
        };
        if has_netdev {
            let netdev = self.netdev_for(place);
            let wire = self
                .wires
                .get_mut(&self.node.pfs[p].address)
                .ok_or_else(|| refuse(Errno::EIO, format!("{address}: its PF has no wire")))?;
            let ifindex = wiring::plug(wire, &mut self.host, &netdev)?;
            self.ifindexes.insert(netdev.name.clone(), ifindex);
            self.set_netdev(place, Some(netdev));
        } else {
            self.set_netdev(place, None);
        }
        if driver == "vfio-pci" {
            touch(&self.dev_root.join("vfio").join(group.to_string()))?;
        }
        match place {
            Place::Pf(p) => self.node.pfs[p].driver = Some(driver.to_owned()),
            Place::Vf(p, v) => self.node.pfs[p].vfs[v].driver = Some(driver.to_owned()),
        }
        self.record(
            DeviceAction::Bind,
            self.node.pfs[p].address,
            address,
            Some(driver.to_owned()),
        );
        Ok(())
    }

    fn unbind(&mut self, place: Place) -> Result<(), WriteError> {
        let p = match place {
            Place::Pf(p) | Place::Vf(p, _) => p,
        };
        if let Place::Pf(_) = place {
            // a PF driver going away disables SR-IOV first
            self.disable_sriov(p)?;
        }
        let pf_address = self.node.pfs[p].address;
        let (address, group, netdev) = match place {
            Place::Pf(p) => {
                let pf = &mut self.node.pfs[p];
                (pf.address, pf.iommu_group, pf.netdev.take())
            }
            Place::Vf(p, v) => {
                let vf = &mut self.node.pfs[p].vfs[v];
                (vf.address, vf.iommu_group, vf.netdev.take())
            }
        };
        if let Some(netdev) = &netdev {
            if let Some(wire) = self.wires.get_mut(&pf_address) {
                wiring::unplug(wire, netdev)?;
            }
            self.ifindexes.remove(&netdev.name);
            self.remembered.insert(address, netdev.clone());
        }
        let node = self.dev_root.join("vfio").join(group.to_string());
        match std::fs::remove_file(&node) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(refuse(Errno::EIO, format!("{}: {e}", node.display()))),
        }
        match place {
            Place::Pf(p) => self.node.pfs[p].driver = None,
            Place::Vf(p, v) => self.node.pfs[p].vfs[v].driver = None,
        }
        self.record(DeviceAction::Unbind, pf_address, address, None);
        Ok(())
    }

    fn remove(&mut self, address: PciAddress) -> Result<(), WriteError> {
        match self.place(address)? {
            Place::Pf(p) => {
                if self.node.pfs[p].driver.is_some() {
                    self.unbind(Place::Pf(p))?;
                }
                self.disable_sriov(p)?;
                let mut pf = self.node.pfs.remove(p);
                pf.driver_override = None;
                pf.drivers_autoprobe = true;
                self.removed.push(pf);
                self.record(DeviceAction::Remove, address, address, None);
            }
            Place::Vf(p, v) => {
                if self.node.pfs[p].vfs[v].driver.is_some() {
                    self.unbind(Place::Vf(p, v))?;
                }
                self.node.pfs[p].vfs.remove(v);
                self.record(
                    DeviceAction::Remove,
                    self.node.pfs[p].address,
                    address,
                    None,
                );
            }
        }
        Ok(())
    }

    /// Removed PFs come back with SR-IOV off, bound to their driver; a
    /// removed VF does not (only its PF's driver makes VFs).
    fn rescan(&mut self) -> Result<(), WriteError> {
        for pf in std::mem::take(&mut self.removed) {
            let address = pf.address;
            let driver = pf.spec.driver.clone();
            let at = self
                .node
                .pfs
                .iter()
                .position(|other| other.address > address)
                .unwrap_or(self.node.pfs.len());
            self.node.pfs.insert(at, pf);
            self.record(DeviceAction::Add, address, address, None);
            self.bind(Place::Pf(at), &driver)?;
        }
        Ok(())
    }

    /// The netdev a kernel driver gives the function: the one it had, else
    /// the model's name and MAC for it.
    fn netdev_for(&self, place: Place) -> SimNetdev {
        let address = match place {
            Place::Pf(p) => self.node.pfs[p].address,
            Place::Vf(p, v) => self.node.pfs[p].vfs[v].address,
        };
        self.remembered.get(&address).cloned().unwrap_or_else(|| {
            let pf = match place {
                Place::Pf(p) | Place::Vf(p, _) => &self.node.pfs[p],
            };
            let (address, name, wire_peer, up) = match place {
                Place::Pf(_) => (
                    pf.address,
                    pf.spec.name.clone().unwrap_or_default(),
                    crate::devtools::sim::model::WIRE_UPLINK.to_owned(),
                    true,
                ),
                Place::Vf(_, v) => (
                    pf.vfs[v].address,
                    format!(
                        "{}v{}",
                        pf.spec.name.as_deref().unwrap_or("vf"),
                        pf.vfs[v].index
                    ),
                    format!("vf{}", pf.vfs[v].index),
                    false,
                ),
            };
            SimNetdev {
                name,
                mac: crate::devtools::sim::model::derive_mac(&self.node.instance, address),
                mtu: pf.spec.mtu,
                wire_peer,
                up,
            }
        })
    }

    fn set_netdev(&mut self, place: Place, netdev: Option<SimNetdev>) {
        match place {
            Place::Pf(p) => self.node.pfs[p].netdev = netdev,
            Place::Vf(p, v) => self.node.pfs[p].vfs[v].netdev = netdev,
        }
    }
}

fn touch(path: &std::path::Path) -> Result<(), WriteError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| refuse(Errno::EIO, format!("{}: {e}", path.display())))
}

fn parse_address(text: &str) -> Result<PciAddress, WriteError> {
    text.trim()
        .parse()
        .map_err(|_| refuse(Errno::ENODEV, format!("{text:?} is not a PCI address")))
}

/// kstrtou16 with base 0, as `sriov_numvfs` reads its argument: `0x` is
/// hex, a leading `0` octal, else decimal; an optional `+`; no spaces.
fn kstrtou16(text: &str) -> Option<u16> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u16::from_str_radix(digits, radix).ok()
}

/// kstrtoul, as `remove` and `rescan` read their argument.
fn parse_unsigned(text: &str) -> Result<u64, WriteError> {
    text.trim()
        .parse()
        .map_err(|_| refuse(Errno::EINVAL, format!("{text:?} is not a number")))
}

/// kstrtobool's common spellings.
fn parse_bool(text: &str) -> Result<bool, WriteError> {
    match text.trim() {
        "1" | "y" | "Y" | "on" => Ok(true),
        "0" | "n" | "N" | "off" => Ok(false),
        other => Err(refuse(Errno::EINVAL, format!("{other:?} is not a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use super::kstrtou16;

    #[test]
    fn vf_counts_are_read_as_the_kernel_reads_them() {
        assert_eq!(kstrtou16("6"), Some(6));
        assert_eq!(kstrtou16("+6"), Some(6));
        assert_eq!(kstrtou16("0x10"), Some(16));
        assert_eq!(kstrtou16("010"), Some(8));
        assert_eq!(kstrtou16("0"), Some(0));
        for bad in ["", " 6", "6 ", "-1", "09", "0x", "65536", "six"] {
            assert_eq!(kstrtou16(bad), None, "{bad:?}");
        }
    }
}
