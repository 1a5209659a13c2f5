//! sriov-rs: an SR-IOV device plugin and CNI plugin for Kubernetes.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md):
//! - `sim`: the simulated SR-IOV node (fake sysfs tree + veth wiring) for demos and tests;
//! - `sysfs`: reads the machine's PCI/SR-IOV tree under an injectable root;
//! - `netlink`, `netns`: the kernel boundary for links and network namespaces;
//! - `kubelet_api`: the kubelet's gRPC APIs (generated) and Unix-socket transport.

pub mod kubelet_api;
pub mod netlink;
pub mod netns;
pub mod sim;
pub mod sysfs;
