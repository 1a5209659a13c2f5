//! Writes to the kernel's SR-IOV and driver-binding control files, and the
//! few reads that go with them. Each write is one `open(O_WRONLY)` + one
//! `write` of the whole value, as `echo value > file` does; the kernel acts
//! inside the write and answers with an errno, which is kept (not turned
//! into a string) so callers can tell `EBUSY` from `ENODEV`.
//!
//! Kernel quirks handled here:
//! - `sriov_numvfs` refuses N while M≠0 VFs exist (`EBUSY`): callers write 0 first;
//! - `driver_override` reads `(null)` when unset, and an empty write (a lone
//!   newline) clears it;
//! - `bind`/`unbind`/`drivers_probe` take the BDF; a probe that finds no
//!   driver still succeeds, so callers check the `driver` link afterwards.

use super::attr::{link_basename, read_number, read_optional};
use super::{SysfsError, SysfsRoot};
use crate::pci::PciAddress;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A control-file write the kernel refused, with the path and its errno.
#[derive(Debug, thiserror::Error)]
#[error("writing {value:?} to {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub value: String,
    #[source]
    pub source: std::io::Error,
}

impl WriteError {
    /// The kernel's errno (`EBUSY`, `ERANGE`, `ENODEV`, ...).
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// `echo value > path`: one write of the value and a newline.
fn write_attr(path: &Path, value: &str) -> Result<(), WriteError> {
    let error = |source| WriteError {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(error)?;
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(error)
}

impl SysfsRoot {
    /// `<root>/bus/pci/drivers/<driver>`
    pub fn pci_driver_dir(&self, driver: &str) -> PathBuf {
        self.path().join("bus/pci/drivers").join(driver)
    }

    /// Write a PF's `sriov_numvfs` (the caller goes through 0 first).
    pub fn write_num_vfs(&self, pf: PciAddress, num_vfs: u32) -> Result<(), WriteError> {
        write_attr(
            &self.device_dir(pf).join("sriov_numvfs"),
            &num_vfs.to_string(),
        )
    }

    /// Set a function's `driver_override`; `None` clears it.
    pub fn write_driver_override(
        &self,
        function: PciAddress,
        driver: Option<&str>,
    ) -> Result<(), WriteError> {
        write_attr(
            &self.device_dir(function).join("driver_override"),
            driver.unwrap_or(""),
        )
    }

    /// `bus/pci/drivers/<driver>/unbind` ← BDF
    pub fn unbind_driver(&self, function: PciAddress, driver: &str) -> Result<(), WriteError> {
        write_attr(
            &self.pci_driver_dir(driver).join("unbind"),
            &function.to_string(),
        )
    }

    /// `bus/pci/drivers_probe` ← BDF: binds by override, else by ID tables.
    pub fn probe_driver(&self, function: PciAddress) -> Result<(), WriteError> {
        write_attr(
            &self.path().join("bus/pci/drivers_probe"),
            &function.to_string(),
        )
    }

    /// A function's `driver_override`; None when unset (`(null)`) or absent.
    pub fn driver_override(&self, function: PciAddress) -> Result<Option<String>, SysfsError> {
        Ok(
            read_optional(&self.device_dir(function).join("driver_override"))?
                .filter(|text| !text.is_empty() && text != "(null)"),
        )
    }

    /// The driver a function is bound to now; None when unbound or gone.
    pub fn bound_driver(&self, function: PciAddress) -> Result<Option<String>, SysfsError> {
        link_basename(&self.device_dir(function).join("driver"))
    }

    /// `sriov_drivers_autoprobe` of a PF (true when absent: the kernel's default).
    pub fn drivers_autoprobe(&self, pf: PciAddress) -> Result<bool, SysfsError> {
        Ok(read_number::<u32>(
            &self.device_dir(pf).join("sriov_drivers_autoprobe"),
            "0 or 1",
        )?
        .is_none_or(|n| n != 0))
    }

    /// A netdev's MTU from `class/net/<name>/mtu`; None if the netdev is not
    /// in this namespace.
    pub fn netdev_mtu(&self, netdev: &str) -> Result<Option<u32>, SysfsError> {
        read_number(&self.class_net().join(netdev).join("mtu"), "an MTU")
    }
}
