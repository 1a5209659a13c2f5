//! Dynamic Resource Allocation: serving a node's VFs as DRA devices
//! (docs/dra.md). Self-contained building blocks the daemon wires in:
//!
//! - [`api`]: what the daemon asks of the API server (one object-safe
//!   trait: the kube client, or the stand-in in tests);
//! - [`kube_api`]: that trait over HTTP with the `kube` client, the API
//!   version chosen by discovery;
//! - [`names`]: the API's name rules and the names we derive (pure);
//! - [`slices`]: a pool as ResourceSlices of at most 128 devices (pure);
//! - [`topology`]: the PCIe root of each function, from sysfs;
//! - [`claims`]: reading a claim and the checks before preparing it (pure);
//! - [`inventory`]: (DRA pool, device name) → the served device (pure);
//! - [`cdi`]: a claim's CDI spec and device-info files, from the device
//!   plugin's Allocate content;
//! - [`checkpoint`]: the prepared claims on disk;
//! - [`prepare`]: NodePrepareResources / NodeUnprepareResources;
//! - [`publish`]: the ResourceSlice writes from published to desired (pure);
//! - [`publisher`]: the task that writes them, with retries and republishes;
//! - [`node_plugin`]: the DRA side of the running daemon (sockets,
//!   registration, preparer, health stream, publisher);
//! - [`service`]: the kubelet-facing gRPC services and registration info;
//! - [`v1beta1`]: our slices as `resource.k8s.io/v1beta1` objects (1.32, 1.33);
//! - `standin` (tests and the `devtools` feature): an in-process API
//!   server stand-in for ResourceSlices and ResourceClaims.

pub mod api;
pub mod cdi;
pub mod checkpoint;
pub mod claims;
pub mod inventory;
pub mod kube_api;
pub mod names;
pub mod node_plugin;
pub mod prepare;
pub mod publish;
pub mod publisher;
pub mod service;
pub mod slices;
#[cfg(any(test, feature = "devtools"))]
pub mod standin;
pub mod topology;
pub mod v1beta1;

/// The driver name when `--dra-driver-name` is not given (docs/dra.md says
/// why this one).
pub const DEFAULT_DRIVER_NAME: &str = "sriov-rs.invalid";
