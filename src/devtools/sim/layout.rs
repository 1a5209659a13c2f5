//! The layout file: what the simulated node's PCI functions look like.
//! TOML (or JSON, by file extension); every key but the PF address is optional.

use crate::pci::PciAddress;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const DEFAULT_LAYOUT_TOML: &str = include_str!("default-layout.toml");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(rename = "pf", default)]
    pub pfs: Vec<PfSpec>,
}

/// One physical function and its virtual functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PfSpec {
    pub pci_address: PciAddress,
    /// PF netdev name; None for devices without a netdev (accelerators).
    pub name: Option<String>,
    #[serde(default = "intel")]
    pub vendor: String,
    #[serde(default = "e810")]
    pub device: String,
    #[serde(default = "e810_vf")]
    pub vf_device: String,
    /// PCI class code of PF and VFs: 0x020000 Ethernet, 0x120000 accelerator.
    #[serde(default = "ethernet_class")]
    pub class: String,
    #[serde(default = "intel")]
    pub subsystem_vendor: String,
    #[serde(default = "default_subsystem_device")]
    pub subsystem_device: String,
    #[serde(default = "ice")]
    pub driver: String,
    #[serde(default = "iavf")]
    pub vf_driver: String,
    /// -1 means "no NUMA affinity", as the kernel writes it.
    #[serde(default)]
    pub numa_node: i32,
    #[serde(default = "default_total_vfs")]
    pub total_vfs: u16,
    #[serde(default)]
    pub num_vfs: u16,
    #[serde(default = "default_offset")]
    pub sriov_offset: u16,
    #[serde(default = "default_stride")]
    pub sriov_stride: u16,
    /// `ether` or `infiniband` (written as the netdev `type`: 1 or 32).
    #[serde(default = "ether")]
    pub link_type: String,
    /// RDMA capable: every netdev function gets an `infiniband/<dev>` entry.
    #[serde(default)]
    pub rdma: bool,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
    pub acpi_index: Option<u32>,
    pub phys_port_name: Option<String>,
    pub phys_switch_id: Option<String>,
    /// Per-VF overrides.
    #[serde(rename = "vf", default)]
    pub vfs: Vec<VfSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfSpec {
    pub index: u16,
    /// Bound driver; `vfio-pci`, `uio_pci_generic` and `igb_uio` have no netdev.
    pub driver: Option<String>,
    /// VF netdev name; default `<pf name>v<index>`.
    pub netdev: Option<String>,
    /// Force a netdev on or off regardless of the driver.
    pub has_netdev: Option<bool>,
}

fn intel() -> String {
    "8086".into()
}
fn e810() -> String {
    "1592".into()
}
fn e810_vf() -> String {
    "1889".into()
}
fn ethernet_class() -> String {
    "0x020000".into()
}
fn default_subsystem_device() -> String {
    "0002".into()
}
fn ice() -> String {
    "ice".into()
}
fn iavf() -> String {
    "iavf".into()
}
fn default_total_vfs() -> u16 {
    64
}
fn default_offset() -> u16 {
    8
}
fn default_stride() -> u16 {
    1
}
fn ether() -> String {
    "ether".into()
}
fn default_mtu() -> u32 {
    1500
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("layout {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layout {path}: {detail}")]
    Parse { path: String, detail: String },
    #[error("layout: pf {pf}: {detail}")]
    Invalid { pf: String, detail: String },
}

impl Layout {
    pub fn default_layout() -> Result<Layout, LayoutError> {
        Layout::parse_toml("<built-in>", DEFAULT_LAYOUT_TOML)
    }

    pub fn parse_toml(origin: &str, text: &str) -> Result<Layout, LayoutError> {
        toml::from_str(text).map_err(|e| LayoutError::Parse {
            path: origin.to_owned(),
            detail: e.to_string(),
        })
    }

    pub fn parse_json(origin: &str, text: &str) -> Result<Layout, LayoutError> {
        serde_json::from_str(text).map_err(|e| LayoutError::Parse {
            path: origin.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Read a layout file: JSON if it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Layout, LayoutError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LayoutError::Read {
            path: origin.clone(),
            source,
        })?;
        if path.extension().is_some_and(|ext| ext == "json") {
            Layout::parse_json(&origin, &text)
        } else {
            Layout::parse_toml(&origin, &text)
        }
    }
}
