//! Development tools: what `sriovctl`, the demo and the tests use, and
//! neither the device plugin daemon nor the CNI plugin needs. Behind the
//! `devtools` cargo feature (on by default), so
//! `cargo build --no-default-features --bin sriov-device-plugin --bin sriov`
//! shows that the shipped daemons build without them.
//!
//! - [`kubelet_sim`]: a stand-in kubelet (registration, ListAndWatch,
//!   Allocate, PodResources).
//!
//! The simulated node (`crate::sim`) belongs here too and will move once its
//! rewrite for the live simulated node has landed.

pub mod kubelet_sim;
