//! The device plugin daemon: serves each resource pool to the kubelet over
//! the device plugin API v1beta1.
//!
//! - [`served`]: a pool as served (kubelet view + what Allocate hands out), pure;
//! - [`allocate`], [`preferred`]: Allocate and GetPreferredAllocation, pure;
//! - [`files`]: device-info files and CDI specs, kept in step with the pools;
//! - [`held`]: what pods hold (the kubelet's PodResources API), kept through reloads;
//! - [`service`]: the gRPC services of one pool's socket;
//! - [`register`], [`dirwatch`], [`runner`]: registration, the kubelet
//!   directory watch, and one pool's serve/register/restart loop;
//! - [`probes`]: the daemon's HTTP listener: `/healthz` and `/readyz` for the
//!   kubelet's probes (not device health, which ListAndWatch carries), and
//!   `/metrics`;
//! - [`metrics`]: Prometheus metrics per pool, per VF and of the daemon;
//! - [`configwatch`]: the config file's directory, watched for edits (the
//!   node policy's too);
//! - [`provisioning`]: the node policy (`--node-policy`) applied before
//!   serving and after each change, VFs held by pods left alone;
//! - [`node_watch`]: link state and device changes as they happen;
//! - [`link_health`]: device health from link state (pure);
//! - [`daemon`]: everything together, with reload and shutdown.

pub mod allocate;
pub mod configwatch;
pub mod daemon;
pub mod dirwatch;
pub mod files;
pub mod held;
pub mod link_health;
pub mod metrics;
pub mod node_watch;
pub mod preferred;
pub mod probes;
pub mod provisioning;
pub mod register;
pub mod runner;
pub mod served;
pub mod service;

pub use allocate::CdiMode;
pub use daemon::{Control, Daemon, DaemonError, RegistrationMode, Settings, DEFAULT_HELD_RECHECK};
pub use metrics::{Metrics, DEFAULT_VF_COUNTERS_INTERVAL};
pub use provisioning::{NodePolicySource, DEFAULT_VF_TIMEOUT};
