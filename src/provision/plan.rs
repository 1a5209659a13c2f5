//! The planner (pure): policies + the node as seen + the VFs pods hold →
//! per PF the steps that bring it to the declared state, and the steps
//! refused because they would destroy or rebind a VF a pod holds.
//!
//! Rules (docs/provision.md has the why):
//! - a policy selects a PF when every `nicSelector` key it gives matches;
//! - numVfs and MTU are per PF: policies that give a PF different values
//!   conflict; a PF no policy gives numVfs keeps its count;
//! - a VF's device type comes from the policy whose `#` range covers it,
//!   else from a policy without a range, else `netdevice`; two policies of
//!   the same kind that give one VF different types conflict;
//! - a numVfs change destroys every VF of the PF, so it is refused while a
//!   pod holds any of them; rebinding a held VF is refused; the rest stays.

use super::error::{PolicyError, PolicyErrors, PolicyRef};
use super::node::{NodeView, PfView, VfView};
use super::policy::{last_index, DeviceType, NodePolicies, PfSelector, PfTarget, Policy};
use crate::config::VfRanges;
use crate::pci::PciAddress;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// The VFs pods hold, with who holds each when known (`namespace/pod`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldVfs(BTreeMap<PciAddress, Option<String>>);

impl HeldVfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// From bare addresses (PodResources device IDs), holders unknown.
    pub fn from_addresses<'a>(addresses: impl IntoIterator<Item = &'a PciAddress>) -> Self {
        HeldVfs(addresses.into_iter().map(|a| (*a, None)).collect())
    }

    pub fn insert(&mut self, vf: PciAddress, holder: Option<String>) {
        self.0.insert(vf, holder);
    }

    pub fn holder(&self, vf: PciAddress) -> Option<HeldVf> {
        self.0.get(&vf).map(|holder| HeldVf {
            address: vf,
            holder: holder.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&HashSet<PciAddress>> for HeldVfs {
    fn from(set: &HashSet<PciAddress>) -> Self {
        HeldVfs::from_addresses(set)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldVf {
    pub address: PciAddress,
    /// `namespace/pod`, when the caller knows it.
    pub holder: Option<String>,
}

impl fmt::Display for HeldVf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.holder {
            Some(pod) => write!(f, "{} (pod {pod})", self.address),
            None => write!(f, "{} (held by a pod)", self.address),
        }
    }
}

/// One change to the node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Step {
    /// The PF netdev's MTU.
    Mtu { from: Option<u32>, to: u32 },
    /// `sriov_numvfs`, through 0 when both counts are non-zero.
    NumVfs { from: u32, to: u32 },
    /// A VF to `to`'s driver: for vfio-pci `driver_override`, unbind,
    /// `drivers_probe`; back to the kernel driver by clearing the override
    /// (and unbinding vfio-pci, probing).
    #[serde(rename_all = "camelCase")]
    Bind {
        vf: u32,
        /// None for a VF that the numVfs step creates.
        address: Option<PciAddress>,
        /// Its driver now (None: unbound, or not created yet).
        from: Option<String>,
        to: DeviceType,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mtu { from, to } => match from {
                Some(from) => write!(f, "mtu {from} -> {to}"),
                None => write!(f, "mtu -> {to}"),
            },
            Step::NumVfs { from, to } if *from != 0 && *to != 0 => {
                write!(f, "numVfs {from} -> 0 -> {to}")
            }
            Step::NumVfs { from, to } => write!(f, "numVfs {from} -> {to}"),
            Step::Bind {
                vf,
                address,
                from,
                to,
            } => {
                write!(f, "VF {vf}")?;
                if let Some(address) = address {
                    write!(f, " ({address})")?;
                }
                match (address, from) {
                    (None, _) => write!(f, ": new -> {to}"),
                    (Some(_), Some(driver)) => write!(f, ": {driver} -> {to}"),
                    (Some(_), None) => write!(f, ": unbound -> {to}"),
                }
            }
        }
    }
}

/// A step left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refused {
    pub step: Step,
    pub reason: String,
    /// The held VFs that caused it.
    pub held: Vec<HeldVf>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.reason)?;
        for (i, held) in self.held.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            write!(f, "{held}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PfPlan {
    pub pf: PciAddress,
    pub name: Option<String>,
    /// The policies that select this PF.
    pub policies: Vec<String>,
    /// In order.
    pub steps: Vec<Step>,
    pub refused: Vec<Refused>,
    /// The device type of each VF once the plan is applied (the applier
    /// binds VFs made by the numVfs step from this).
    pub vf_types: BTreeMap<u32, DeviceType>,
}

impl PfPlan {
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.pf),
            None => self.pf.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Every PF some policy selects, in address order.
    pub pfs: Vec<PfPlan>,
    /// Policies that select no PF on this node (not an error: one file may
    /// serve several nodes).
    pub unmatched_policies: Vec<String>,
}

impl Plan {
    pub fn steps(&self) -> usize {
        self.pfs.iter().map(|pf| pf.steps.len()).sum()
    }

    pub fn refused(&self) -> usize {
        self.pfs.iter().map(|pf| pf.refused.len()).sum()
    }
}

/// Which VFs of a PF a policy covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Coverage {
    Whole,
    Ranges(Vec<VfRanges>),
}

impl Coverage {
    fn covers(&self, index: u32) -> bool {
        match self {
            Coverage::Whole => true,
            Coverage::Ranges(list) => list.iter().any(|r| r.contains(index)),
        }
    }

    fn last(&self) -> Option<u32> {
        match self {
            Coverage::Whole => None,
            Coverage::Ranges(list) => list.iter().filter_map(last_index).max(),
        }
    }
}

fn entry_matches(entry: &PfSelector, pf: &PfView) -> bool {
    match &entry.target {
        PfTarget::Name(name) => pf.name.as_deref() == Some(name.as_str()),
        PfTarget::Address(address) => *address == pf.address,
    }
}

/// Whether `policy` selects `pf`, and which of its VFs.
fn selects(policy: &Policy, pf: &PfView) -> Option<Coverage> {
    let s = &policy.nic_selector;
    if s.vendor.as_ref().is_some_and(|v| *v != pf.vendor)
        || s.device_id.as_ref().is_some_and(|d| *d != pf.device)
    {
        return None;
    }
    let mut matched: Vec<&PfSelector> = Vec::new();
    for list in [&s.pf_names, &s.root_devices] {
        if list.is_empty() {
            continue;
        }
        let hits: Vec<&PfSelector> = list.iter().filter(|e| entry_matches(e, pf)).collect();
        if hits.is_empty() {
            return None;
        }
        matched.extend(hits);
    }
    let ranges: Vec<VfRanges> = matched.iter().filter_map(|e| e.vfs.clone()).collect();
    // validation allows ranges in one key only; an entry of that key without
    // a range takes the whole PF
    let ranged_key_has_whole = [&s.pf_names, &s.root_devices].iter().any(|list| {
        list.iter().any(|e| e.vfs.is_some())
            && list.iter().any(|e| e.vfs.is_none() && entry_matches(e, pf))
    });
    if ranges.is_empty() || ranged_key_has_whole {
        Some(Coverage::Whole)
    } else {
        Some(Coverage::Ranges(ranges))
    }
}

/// The plan for the node, or every error the policies have against it
/// (conflicts, counts the PF cannot take).
pub fn plan(
    policies: &NodePolicies,
    node: &NodeView,
    held: &HeldVfs,
) -> Result<Plan, PolicyErrors> {
    let mut errors = Vec::new();
    let mut plan = Plan::default();
    let mut used: HashSet<&str> = HashSet::new();
    for pf in &node.pfs {
        let selecting: Vec<(&Policy, Coverage)> = policies
            .policies
            .iter()
            .filter_map(|p| selects(p, pf).map(|c| (p, c)))
            .collect();
        if selecting.is_empty() {
            continue;
        }
        used.extend(selecting.iter().map(|(p, _)| p.name.as_str()));
        if let Some(pf_plan) = plan_pf(pf, &selecting, held, &mut errors) {
            plan.pfs.push(pf_plan);
        }
    }
    plan.unmatched_policies = policies
        .policies
        .iter()
        .filter(|p| !used.contains(p.name.as_str()))
        .map(|p| p.name.clone())
        .collect();
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(PolicyErrors(errors))
    }
}

fn pf_label(pf: &PfView) -> String {
    match &pf.name {
        Some(name) => format!("PF {name} ({})", pf.address),
        None => format!("PF {}", pf.address),
    }
}

/// The one value policies agree on for a PF-wide key, or a conflict per
/// policy that disagrees with the first.
fn agreed(
    pf: &PfView,
    key: &str,
    values: impl Iterator<Item = (PolicyRef, Option<u32>)>,
    errors: &mut Vec<PolicyError>,
) -> Option<u32> {
    let mut first: Option<(PolicyRef, u32)> = None;
    for (policy, value) in values {
        let Some(value) = value else { continue };
        match &first {
            None => first = Some((policy, value)),
            Some((first_policy, first_value)) if *first_value != value => {
                errors.push(PolicyError::Conflict {
                    first: first_policy.clone(),
                    second: policy,
                    target: pf_label(pf),
                    key: key.into(),
                    message: format!("{first_value} vs {value}"),
                });
            }
            Some(_) => {}
        }
    }
    first.map(|(_, value)| value)
}

fn plan_pf(
    pf: &PfView,
    selecting: &[(&Policy, Coverage)],
    held: &HeldVfs,
    errors: &mut Vec<PolicyError>,
) -> Option<PfPlan> {
    let before = errors.len();
    let num_vfs = agreed(
        pf,
        "numVfs",
        selecting.iter().map(|(p, _)| (p.reference(), p.num_vfs)),
        errors,
    );
    let mtu = agreed(
        pf,
        "mtu",
        selecting.iter().map(|(p, _)| (p.reference(), p.mtu)),
        errors,
    );
    let target = num_vfs.unwrap_or(pf.num_vfs);
    if let Some((policy, _)) = selecting.iter().find(|(p, _)| p.num_vfs == Some(target)) {
        if target > pf.total_vfs {
            errors.push(PolicyError::key(
                &policy.reference(),
                "numVfs",
                format!(
                    "{target} is more than {} can have (sriov_totalvfs {})",
                    pf_label(pf),
                    pf.total_vfs
                ),
            ));
        }
    }
    for (policy, coverage) in selecting {
        if let Some(last) = coverage.last() {
            if last >= target {
                let key = if policy.nic_selector.pf_names.iter().any(|e| e.vfs.is_some()) {
                    "nicSelector.pfNames"
                } else {
                    "nicSelector.rootDevices"
                };
                errors.push(PolicyError::key(
                    &policy.reference(),
                    key,
                    format!(
                        "VF {last} does not exist: {} has {target} VFs (numbered from 0)",
                        pf_label(pf)
                    ),
                ));
            }
        }
    }
    // device types: ranged claims beat whole-PF claims; same-kind claims must agree
    let span = target.max(pf.num_vfs);
    let mut vf_types = BTreeMap::new();
    let mut reported: HashSet<(String, String)> = HashSet::new();
    for index in 0..span {
        let claims = |ranged: bool| -> Vec<(&Policy, DeviceType)> {
            selecting
                .iter()
                .filter(|(_, c)| matches!(c, Coverage::Ranges(_)) == ranged && c.covers(index))
                .map(|(p, _)| (*p, p.device_type))
                .collect()
        };
        let ranged = claims(true);
        let chosen = if ranged.is_empty() {
            claims(false)
        } else {
            ranged
        };
        let Some((first, first_type)) = chosen.first().copied() else {
            vf_types.insert(index, DeviceType::Netdevice);
            continue;
        };
        for (other, other_type) in &chosen[1..] {
            if *other_type != first_type
                && reported.insert((first.name.clone(), other.name.clone()))
            {
                errors.push(PolicyError::Conflict {
                    first: first.reference(),
                    second: other.reference(),
                    target: format!("VF {index} of {}", pf_label(pf)),
                    key: "deviceType".into(),
                    message: format!("{first_type} vs {other_type}"),
                });
            }
        }
        vf_types.insert(index, first_type);
    }
    if errors.len() > before {
        return None;
    }
    vf_types.retain(|index, _| *index < target);

    let mut pf_plan = PfPlan {
        pf: pf.address,
        name: pf.name.clone(),
        policies: selecting.iter().map(|(p, _)| p.name.clone()).collect(),
        steps: Vec::new(),
        refused: Vec::new(),
        vf_types,
    };
    if let Some(mtu) = mtu {
        if pf.mtu != Some(mtu) {
            let step = Step::Mtu {
                from: pf.mtu,
                to: mtu,
            };
            if pf.name.is_some() {
                pf_plan.steps.push(step);
            } else {
                pf_plan.refused.push(Refused {
                    step,
                    reason: "the PF has no netdev in this network namespace".into(),
                    held: Vec::new(),
                });
            }
        }
    }
    let mut recreated = false;
    if target != pf.num_vfs {
        let step = Step::NumVfs {
            from: pf.num_vfs,
            to: target,
        };
        let holding: Vec<HeldVf> = pf
            .vfs
            .iter()
            .filter_map(|vf| held.holder(vf.address))
            .collect();
        if holding.is_empty() {
            pf_plan.steps.push(step);
            recreated = true;
        } else {
            pf_plan.refused.push(Refused {
                step,
                reason: "changing numVfs destroys every VF of the PF, and pods hold some".into(),
                held: holding,
            });
        }
    }
    let existing: BTreeMap<u32, &VfView> = pf.vfs.iter().map(|vf| (vf.index, vf)).collect();
    for (&index, &to) in &pf_plan.vf_types {
        if recreated {
            // a new VF binds to the kernel's VF driver by itself (autoprobe)
            if to == DeviceType::VfioPci || !pf.drivers_autoprobe {
                pf_plan.steps.push(Step::Bind {
                    vf: index,
                    address: None,
                    from: None,
                    to,
                });
            }
            continue;
        }
        let Some(vf) = existing.get(&index) else {
            // would exist only after the refused numVfs change
            if to == DeviceType::VfioPci || !pf.drivers_autoprobe {
                pf_plan.refused.push(Refused {
                    step: Step::Bind {
                        vf: index,
                        address: None,
                        from: None,
                        to,
                    },
                    reason: "the VF exists only after the refused numVfs change".into(),
                    held: Vec::new(),
                });
            }
            continue;
        };
        if !needs_bind(vf, to) {
            continue;
        }
        let step = Step::Bind {
            vf: index,
            address: Some(vf.address),
            from: vf.driver.clone(),
            to,
        };
        match held.holder(vf.address) {
            Some(holder) => pf_plan.refused.push(Refused {
                step,
                reason: "rebinding takes the VF from the pod that holds it".into(),
                held: vec![holder],
            }),
            None => pf_plan.steps.push(step),
        }
    }
    Some(pf_plan)
}

/// Whether a VF must be rebound (or its stale override cleared) to be `to`.
pub fn needs_bind(vf: &VfView, to: DeviceType) -> bool {
    if !to.is_met_by(vf.driver.as_deref()) {
        return true;
    }
    // a kernel driver bound, but an override left from vfio-pci would take
    // the VF away at the next probe
    to == DeviceType::Netdevice
        && vf
            .driver_override
            .as_deref()
            .is_some_and(|o| Some(o) != vf.driver.as_deref())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
