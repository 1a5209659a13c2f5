//! Development tools: what `sriovctl`, the demo and the tests use, and
//! neither the device plugin daemon nor the CNI plugin needs. Behind the
//! `devtools` cargo feature (on by default), so
//! `cargo build --no-default-features --bin sriov-device-plugin --bin sriov`
//! shows that the shipped daemons build without them.
//!
//! - [`kubelet_sim`]: a stand-in kubelet (registration, ListAndWatch,
//!   Allocate, PodResources, DRA drivers);
//! - [`kubelet_dra`]: its DRA side (service choice, Prepare/Unprepare, the
//!   node's ResourceSlices deleted at start);
//! - [`sim`]: the simulated SR-IOV node (see docs/sim.md).

pub mod kubelet_dra;
pub mod kubelet_sim;
pub mod sim;
