//! sriov-rs: an SR-IOV device plugin and CNI plugin for Kubernetes.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md):
//! - `config`: sriov-network-device-plugin's `config.json`, validation and selector matching (pure);
//! - `sysfs`: reads the machine's PCI/SR-IOV tree under an injectable root;
//! - `netlink`, `netns`: the kernel boundary for links and network namespaces;
//! - `uevent`: kernel device events (NETLINK_KOBJECT_UEVENT), heard and, for simulated nodes, sent;
//! - `pci`: PCI addresses.
//! - `kubelet_api`: the kubelet's gRPC APIs (generated) and Unix-socket transport;
//! - `devtools` (feature `devtools`, default): the simulated SR-IOV node and the stand-in kubelet, for
//!   `sriovctl`, the demo and the tests.
//! - `dra`: serving VFs through Dynamic Resource Allocation (slices, claims, prepare).

pub mod atomic_file;
pub mod cni;
pub mod config;
pub mod ctl;
pub mod deviceplugin;
#[cfg(feature = "devtools")]
pub mod devtools;
pub mod dra;
pub mod install_cni;
pub mod kubelet_api;
pub mod logging;
pub mod netlink;
pub mod netns;
pub mod pci;
pub mod pool;
pub mod provision;
pub mod sysfs;
pub mod uevent;
pub mod vf;
