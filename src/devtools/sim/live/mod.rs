//! The live simulated node: one process (`sriovctl sim serve`) that owns
//! the node's links, serves its sysfs tree over FUSE at the root, acts on
//! writes the way the kernel does, and announces device changes as uevents.
//!
//! It is started by `create` and ends when `destroy` unmounts the tree;
//! killed any other way it leaves a dead mount, which `destroy` removes with
//! everything else (the state file under the mount point says what).

mod fs;
mod node;
mod tree;

pub use node::{DeviceAction, DeviceEvent};

use super::wiring;
use super::{SimError, SimNode};
use crate::netlink::{LinkTable, Netlink};
use crate::uevent::{PciFunction, Uevent, UeventSender};
use fs::LiveFs;
use fuser::{Config, MountOption, Session, SessionACL};
use node::LiveNode;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The file system type the tree is mounted as (`fuse.sriov-sim`), which is
/// how `destroy` recognises a mount as a simulated node's.
pub const FS_SUBTYPE: &str = "sriov-sim";

/// What `serve` prints on stdout once the tree is mounted and answering.
pub const READY: &str = "ready";

/// Sends what the node's changes announce, as the kernel would: a uevent
/// per change of a PCI function, tagged with the node's root so that only
/// listeners of this node take it (see [`crate::uevent`]).
pub struct Announcer {
    sender: UeventSender,
}

impl Announcer {
    /// Opened before the tree is mounted: the sender looks the root up, and
    /// a lookup through our own mount from the serving thread would wait on
    /// itself.
    fn open(root: &Path) -> Result<Announcer, SimError> {
        let sender = UeventSender::open(root).map_err(|e| SimError::Io {
            path: root.to_owned(),
            step: "open the uevent socket",
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Announcer { sender })
    }

    pub fn announce(&mut self, event: &DeviceEvent) {
        let Some(function) = pci_function(event) else {
            tracing::warn!(device = %event.address, "cannot describe the device for its uevent");
            return;
        };
        let uevent = match event.action {
            DeviceAction::Add => Uevent::pci_add(&function),
            DeviceAction::Remove => Uevent::pci_remove(&function),
            DeviceAction::Unbind => Uevent::pci_unbind(&function),
            DeviceAction::Bind => {
                Uevent::pci_bind(&function, event.driver.as_deref().unwrap_or(""))
            }
            DeviceAction::Change => Uevent::pci_change(&function, event.driver.as_deref()),
        };
        if let Err(e) = self.sender.send(&uevent) {
            tracing::warn!(device = %event.address, error = %e, "sending a uevent");
        }
    }
}

fn pci_function(event: &DeviceEvent) -> Option<PciFunction> {
    let hex16 = |text: &str| u16::from_str_radix(text.trim_start_matches("0x"), 16).ok();
    Some(PciFunction {
        devpath: format!("/{}", event.devpath.display()),
        slot: event.address,
        vendor: hex16(&event.vendor)?,
        device: hex16(&event.device)?,
        subsystem_vendor: hex16(&event.subsystem_vendor)?,
        subsystem_device: hex16(&event.subsystem_device)?,
        class: u32::from_str_radix(event.class.trim_start_matches("0x"), 16).ok()?,
    })
}

/// Serve the node whose state file is in `root` until the tree is
/// unmounted. Prints [`READY`] on stdout once readers can use it.
pub fn serve(root: &Path) -> Result<(), SimError> {
    let mut state = super::read_state(root)?.ok_or_else(|| SimError::State {
        path: root.join(super::STATE_FILE),
        detail: "no simulated node here".into(),
    })?;
    let node = SimNode::resolve(&state.layout, &state.instance)?;
    let mut host = Netlink::open()?;
    let (ifindexes, wires) = wiring::apply(&node, &mut host)?;
    let dev_root = state
        .dev_root
        .clone()
        .unwrap_or_else(|| super::dev_root_for(root));
    let live_node =
        LiveNode::new(node, ifindexes, wires, host, dev_root).map_err(|e| SimError::Io {
            path: root.to_owned(),
            step: "prepare the device root",
            source: std::io::Error::other(e.detail),
        })?;
    let links = LinkTable::open()?;
    let announcer = Announcer::open(root)?;

    // Written before the mount hides the directory: destroy reads it there.
    state.server_pid = Some(std::process::id());
    super::write_state(root, &state)?;
    let json = serde_json::to_vec_pretty(&state).map_err(|e| SimError::State {
        path: root.join(super::STATE_FILE),
        detail: e.to_string(),
    })?;

    let notifier = Arc::new(OnceLock::new());
    let fs = LiveFs::new(live_node, links, json, announcer, notifier.clone())?;
    let config = {
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FS_SUBTYPE.into()),
            MountOption::Subtype(FS_SUBTYPE.into()),
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoExec,
        ];
        config.acl = SessionACL::All;
        // readers wait on the tree's lock while a write makes VFs; the
        // other threads answer the kernel's own requests meanwhile (an
        // invalidation may need a lookup answered)
        config.n_threads = Some(4);
        config
    };
    let session = Session::new(fs, root, &config).map_err(|source| SimError::Io {
        path: root.to_owned(),
        step: "mount the live tree",
        source,
    })?;
    let _ = notifier.set(session.notifier());
    let mut stdout = std::io::stdout();
    // create waits for this line; if it is gone, nobody is waiting any more
    let _ = writeln!(stdout, "{READY}").and_then(|()| stdout.flush());
    session.run().map_err(|source| SimError::Io {
        path: root.to_owned(),
        step: "serve the live tree",
        source,
    })
}
