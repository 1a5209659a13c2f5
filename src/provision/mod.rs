//! VF provisioning from a node policy (sriov-network-operator's
//! SriovNetworkNodePolicy fields): read the policy file, plan the changes
//! against the node as discovery saw it, apply them through sysfs and
//! netlink. See docs/provision.md.
//!
//! - `policy`, `file`: the policy format and its validation (pure);
//! - `node`: the node as the planner needs it (from discovery);
//! - `plan`: the pure planner, which refuses what would take a VF from a pod;
//! - `apply`: the sysfs writes and the MTU, each failure naming PF, VF and step;
//! - `render`: the plan and the report for people.

mod apply;
mod error;
mod file;
mod node;
mod plan;
mod policy;
mod render;

pub use apply::{apply, ApplyError, ApplyOptions, Failed, PfReport, Report, Skipped};
pub use error::{PolicyError, PolicyErrors, PolicyRef};
pub use file::{load, parse, Format};
pub use node::{observe, observe_pf, NodeView, PfView, VfView};
pub use plan::{needs_bind, plan, HeldVf, HeldVfs, PfPlan, Plan, Refused, Step};
pub use policy::{DeviceType, NicSelector, NodePolicies, PfSelector, PfTarget, Policy};
