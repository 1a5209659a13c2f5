//! What the simulator does not write, added to a built tree the way the
//! kernel lays it out: auxiliary devices (scalable functions), vDPA devices,
//! InfiniBand P_Keys, switchdev representors. Paths are relative to the
//! sysfs root, links relative as sysfs writes them.
//!
//! Included with `#[path]` by the tests that need it.
#![allow(dead_code)] // each test crate uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use sriov_rs::devtools::sim::tree::relative_target;
use std::path::{Path, PathBuf};

pub struct Extras {
    root: PathBuf,
}

impl Extras {
    pub fn new(root: &Path) -> Extras {
        Extras {
            root: root.to_owned(),
        }
    }

    /// `devices/.../<bdf>`: where `bus/pci/devices/<bdf>` points.
    pub fn pci_dir(&self, bdf: &str) -> PathBuf {
        let target = std::fs::read_link(self.root.join("bus/pci/devices").join(bdf)).unwrap();
        target
            .components()
            .skip_while(|c| matches!(c, std::path::Component::ParentDir))
            .collect()
    }

    fn mkdir(&self, dir: &Path) {
        std::fs::create_dir_all(self.root.join(dir)).unwrap();
    }

    fn write(&self, file: &Path, content: &str) {
        if let Some(parent) = file.parent() {
            self.mkdir(parent);
        }
        std::fs::write(self.root.join(file), format!("{content}\n")).unwrap();
    }

    fn link(&self, link: &Path, target: &Path) {
        if let Some(parent) = link.parent() {
            self.mkdir(parent);
        }
        std::os::unix::fs::symlink(relative_target(link, target), self.root.join(link)).unwrap();
    }

    /// An auxiliary device `name` under `parent` (a device directory),
    /// bound to `driver`, with `sfnum` for a scalable function.
    pub fn aux_device(
        &self,
        parent: &Path,
        name: &str,
        sfnum: Option<u32>,
        driver: &str,
    ) -> PathBuf {
        let dir = parent.join(name);
        self.mkdir(&dir);
        if let Some(sfnum) = sfnum {
            self.write(&dir.join("sfnum"), &sfnum.to_string());
        }
        let driver_dir = Path::new("bus/auxiliary/drivers").join(driver);
        self.mkdir(&driver_dir);
        self.link(&dir.join("driver"), &driver_dir);
        self.link(&Path::new("bus/auxiliary/devices").join(name), &dir);
        dir
    }

    /// A netdev of `parent` with ARPHRD `arphrd` (1 ether, 32 infiniband).
    pub fn netdev(&self, parent: &Path, name: &str, arphrd: u32) -> PathBuf {
        let dir = parent.join("net").join(name);
        self.write(&dir.join("type"), &arphrd.to_string());
        self.link(&Path::new("class/net").join(name), &dir);
        dir
    }

    /// A switchdev port attribute pair on a netdev directory.
    pub fn switch_port(&self, netdev_dir: &Path, switch_id: &str, port_name: &str) {
        self.write(&netdev_dir.join("phys_switch_id"), switch_id);
        self.write(&netdev_dir.join("phys_port_name"), port_name);
    }

    /// An RDMA device of `parent`.
    pub fn rdma_device(&self, parent: &Path, name: &str) -> PathBuf {
        let dir = parent.join("infiniband").join(name);
        self.write(&dir.join("node_type"), "1: CA");
        self.link(&Path::new("class/infiniband").join(name), &dir);
        dir
    }

    /// P_Key table entry 0 of port 1 of an RDMA device, as the kernel prints it.
    pub fn pkey(&self, rdma_dir: &Path, pkey: &str) {
        self.write(&rdma_dir.join("ports/1/pkeys/0"), pkey);
        self.write(&rdma_dir.join("ports/1/pkeys/1"), "0x0000");
    }

    /// A vDPA device under `parent`, bound to `driver` (`vhost_vdpa` adds
    /// its `vhost-vdpa-<n>` char device), or unbound.
    pub fn vdpa_device(&self, parent: &Path, name: &str, driver: Option<&str>, vhost_index: u32) {
        let dir = parent.join(name);
        self.mkdir(&dir);
        if let Some(driver) = driver {
            let driver_dir = Path::new("bus/vdpa/drivers").join(driver);
            self.mkdir(&driver_dir);
            self.link(&dir.join("driver"), &driver_dir);
            if driver == "vhost_vdpa" {
                let vhost = format!("vhost-vdpa-{vhost_index}");
                self.write(&dir.join(&vhost).join("dev"), &format!("510:{vhost_index}"));
            }
        }
        self.link(&Path::new("bus/vdpa/devices").join(name), &dir);
    }
}
