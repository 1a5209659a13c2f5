//! The sysfs root contract: every reader of the machine's PCI/SR-IOV tree
//! takes its root as a parameter, so tests and the simulated node can point
//! it at a fake tree.
//!
//! Resolution order: an explicit `--sysfs-root` flag, then the
//! `SRIOV_SYSFS_ROOT` environment variable, then `/sys`.

mod chardev;
mod control;
mod device;

pub use chardev::{RdmaCharDevices, VFIO_NOIOMMU_GROUP_NAME};
pub use control::WriteError;
pub use device::{link_type_name, PciDevice, SriovCapability};

use std::io;
use std::path::{Path, PathBuf};

// Discovery's whole-node reader and the devices it finds beside PCI functions.
mod attr;
mod auxiliary;
mod children;
mod identity;
mod runs;
mod scan;
mod vdpa;
mod vf_stats;
pub use auxiliary::{aux_type_of, AuxDevice};
pub use scan::{NodeScan, ScanOptions};
pub use vdpa::{VdpaDevice, VHOST_VDPA_DRIVER, VIRTIO_VDPA_DRIVER};
pub use vf_stats::SysfsVfStats;

/// A sysfs read that failed; always names the path.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected content {content:?}: {expected}")]
    Parse {
        path: PathBuf,
        content: String,
        expected: &'static str,
    },
}

/// Drivers that take a function away from the kernel network stack (no
/// netdev): the CNI plugin's DPDK mode, the device plugin's vfio/uio specs.
pub const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "uio_pci_generic", "igb_uio"];

pub const ENV_SYSFS_ROOT: &str = "SRIOV_SYSFS_ROOT";
pub const DEFAULT_SYSFS_ROOT: &str = "/sys";

/// The root of a sysfs tree (the real `/sys` or a simulated one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoot(PathBuf);

impl SysfsRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SysfsRoot(path.into())
    }

    /// Flag first, then `SRIOV_SYSFS_ROOT`, then `/sys`; an empty value counts as unset.
    pub fn resolve(flag: Option<&Path>) -> Self {
        Self::resolve_with(flag, std::env::var_os(ENV_SYSFS_ROOT).map(PathBuf::from))
    }

    fn resolve_with(flag: Option<&Path>, env: Option<PathBuf>) -> Self {
        let non_empty = |p: &PathBuf| !p.as_os_str().is_empty();
        flag.map(Path::to_path_buf)
            .filter(non_empty)
            .or(env.filter(non_empty))
            .map(SysfsRoot)
            .unwrap_or_else(|| SysfsRoot(PathBuf::from(DEFAULT_SYSFS_ROOT)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `<root>/bus/pci/devices`
    pub fn pci_devices(&self) -> PathBuf {
        self.0.join("bus/pci/devices")
    }

    /// `<root>/class/net`
    pub fn class_net(&self) -> PathBuf {
        self.0.join("class/net")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_environment_beats_default() {
        let env = Some(PathBuf::from("/env/root"));
        assert_eq!(
            SysfsRoot::resolve_with(Some(Path::new("/flag/root")), env.clone()).path(),
            Path::new("/flag/root")
        );
        assert_eq!(
            SysfsRoot::resolve_with(None, env).path(),
            Path::new("/env/root")
        );
        assert_eq!(
            SysfsRoot::resolve_with(None, None).path(),
            Path::new("/sys")
        );
        // empty values are "unset", never the current directory
        assert_eq!(
            SysfsRoot::resolve_with(Some(Path::new("")), Some(PathBuf::new())).path(),
            Path::new("/sys")
        );
    }
}
