//! Applying a plan: sysfs writes (through `sysfs::control`) and the PF MTU
//! (through `netlink::LinkOps`). PF by PF, step by step; a failed step is
//! reported with the PF, the VF and what was being done, the steps that
//! depended on it are reported as skipped, and the other PFs go on.

use super::node::{observe_pf, PfView, VfView};
use super::plan::{needs_bind, PfPlan, Plan, Refused, Step};
use super::policy::{DeviceType, VFIO_PCI};
use crate::netlink::{LinkOps, NetlinkError};
use crate::pci::PciAddress;
use crate::sysfs::{SysfsError, SysfsRoot, WriteError, USERSPACE_DRIVERS};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long to wait for the VFs (and their drivers) after `sriov_numvfs`.
    pub vf_timeout: Duration,
    /// How often to look meanwhile.
    pub poll: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            vf_timeout: Duration::from_secs(30),
            poll: Duration::from_millis(50),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{pf}: {step}: {source}")]
    Write {
        pf: String,
        step: String,
        #[source]
        source: WriteError,
    },
    #[error("{pf}: {step}: {source}")]
    Read {
        pf: String,
        step: String,
        #[source]
        source: SysfsError,
    },
    #[error("{pf}: {step}: {source}")]
    Netlink {
        pf: String,
        step: String,
        #[source]
        source: NetlinkError,
    },
    #[error("{pf}: {step}: {detail}")]
    Outcome {
        pf: String,
        step: String,
        detail: String,
    },
}

impl ApplyError {
    /// The kernel's errno, when the kernel refused a write or a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ApplyError::Write { source, .. } => source.errno(),
            ApplyError::Netlink { source, .. } => source.errno(),
            _ => None,
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Failed {
    pub step: Step,
    /// The error as text (for JSON); `error` keeps the typed one.
    pub message: String,
    #[serde(skip)]
    pub error: ApplyError,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub step: Step,
    pub reason: String,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PfReport {
    pub pf: PciAddress,
    pub name: Option<String>,
    pub applied: Vec<Step>,
    pub skipped: Vec<Skipped>,
    pub refused: Vec<Refused>,
    pub failed: Vec<Failed>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub pfs: Vec<PfReport>,
}

impl Report {
    pub fn applied(&self) -> usize {
        self.pfs.iter().map(|p| p.applied.len()).sum()
    }
    pub fn failed(&self) -> usize {
        self.pfs.iter().map(|p| p.failed.len()).sum()
    }
    pub fn refused(&self) -> usize {
        self.pfs.iter().map(|p| p.refused.len()).sum()
    }
    pub fn skipped(&self) -> usize {
        self.pfs.iter().map(|p| p.skipped.len()).sum()
    }
    /// Everything planned was applied: nothing failed, refused or skipped.
    pub fn complete(&self) -> bool {
        self.failed() == 0 && self.refused() == 0 && self.skipped() == 0
    }
}

/// Apply `plan` to the node under `sysfs`; `links` sets PF MTUs (a socket
/// in the namespace the PF netdevs are in).
pub fn apply(
    plan: &Plan,
    sysfs: &SysfsRoot,
    links: &mut dyn LinkOps,
    options: &ApplyOptions,
) -> Report {
    Report {
        pfs: plan
            .pfs
            .iter()
            .map(|pf| apply_pf(pf, sysfs, links, options))
            .collect(),
    }
}

fn apply_pf(
    pf_plan: &PfPlan,
    sysfs: &SysfsRoot,
    links: &mut dyn LinkOps,
    options: &ApplyOptions,
) -> PfReport {
    let label = format!("PF {}", pf_plan.label());
    let mut report = PfReport {
        pf: pf_plan.pf,
        name: pf_plan.name.clone(),
        applied: Vec::new(),
        skipped: Vec::new(),
        refused: pf_plan.refused.clone(),
        failed: Vec::new(),
    };
    for refused in &pf_plan.refused {
        tracing::warn!(pf = %pf_plan.pf, %refused, "provisioning step refused");
    }
    // Set when the numVfs step ran: the VFs are new, and are bound as they
    // are then (read back), not as the plan predicted them.
    let mut recreated: Option<PfView> = None;
    let mut num_vfs_failed = false;
    for step in &pf_plan.steps {
        let result = match step {
            Step::Mtu { to, .. } => set_mtu(pf_plan, *to, links, &label),
            Step::NumVfs { from, to } => {
                match set_num_vfs(pf_plan.pf, *from, *to, sysfs, options, &label) {
                    Ok(fresh) => {
                        recreated = Some(fresh);
                        Ok(())
                    }
                    Err(error) => {
                        num_vfs_failed = true;
                        Err(error)
                    }
                }
            }
            Step::Bind { .. } if num_vfs_failed => {
                report.skipped.push(Skipped {
                    step: step.clone(),
                    reason: "the numVfs step failed".into(),
                });
                continue;
            }
            // bound below, from what the kernel made
            Step::Bind { .. } if recreated.is_some() => continue,
            Step::Bind {
                vf, address, to, ..
            } => match address {
                Some(address) => bind(*vf, *address, *to, sysfs, &label),
                None => {
                    report.skipped.push(Skipped {
                        step: step.clone(),
                        reason: "the VF was to be made by a numVfs step that did not run".into(),
                    });
                    continue;
                }
            },
        };
        record(&mut report, step.clone(), result);
    }
    if let Some(fresh) = recreated {
        bind_new_vfs(pf_plan, &fresh, sysfs, &label, &mut report);
    }
    report
}

/// Log a step's outcome and file it in the report.
fn record(report: &mut PfReport, step: Step, result: Result<(), ApplyError>) {
    match result {
        Ok(()) => {
            tracing::info!(pf = %report.pf, step = %step, "provisioning step applied");
            report.applied.push(step);
        }
        Err(error) => {
            tracing::warn!(pf = %report.pf, step = %step, %error, "provisioning step failed");
            report.failed.push(Failed {
                step,
                message: error.to_string(),
                error,
            });
        }
    }
}

fn set_mtu(
    pf_plan: &PfPlan,
    mtu: u32,
    links: &mut dyn LinkOps,
    label: &str,
) -> Result<(), ApplyError> {
    let step = format!("setting the MTU to {mtu}");
    let netlink = |source| ApplyError::Netlink {
        pf: label.to_owned(),
        step: step.clone(),
        source,
    };
    let Some(name) = &pf_plan.name else {
        return Err(ApplyError::Outcome {
            pf: label.to_owned(),
            step,
            detail: "the PF has no netdev".into(),
        });
    };
    let link = links
        .link_by_name(name)
        .map_err(netlink)?
        .ok_or_else(|| ApplyError::Outcome {
            pf: label.to_owned(),
            step: step.clone(),
            detail: format!("no link {name} in this network namespace"),
        })?;
    links.set_mtu(link.index, mtu).map_err(netlink)
}

/// `sriov_numvfs` through 0, then wait for the VFs and their drivers.
fn set_num_vfs(
    pf: PciAddress,
    from: u32,
    to: u32,
    sysfs: &SysfsRoot,
    options: &ApplyOptions,
    label: &str,
) -> Result<PfView, ApplyError> {
    let write = |count: u32| {
        sysfs
            .write_num_vfs(pf, count)
            .map_err(|source| ApplyError::Write {
                pf: label.to_owned(),
                step: format!("writing {count} to sriov_numvfs"),
                source,
            })
    };
    // the kernel takes a new count only from 0 (EBUSY otherwise)
    if from != 0 {
        write(0)?;
    }
    if to != 0 {
        write(to)?;
    }
    wait_for_vfs(pf, to, sysfs, options, label)
}

fn wait_for_vfs(
    pf: PciAddress,
    count: u32,
    sysfs: &SysfsRoot,
    options: &ApplyOptions,
    label: &str,
) -> Result<PfView, ApplyError> {
    let step = format!("waiting for {count} VFs");
    let started = Instant::now();
    let template = PfView {
        address: pf,
        name: None,
        vendor: String::new(),
        device: String::new(),
        driver: None,
        total_vfs: 0,
        num_vfs: 0,
        mtu: None,
        drivers_autoprobe: true,
        vfs: Vec::new(),
    };
    loop {
        let fresh = observe_pf(sysfs, &template).map_err(|source| ApplyError::Read {
            pf: label.to_owned(),
            step: step.clone(),
            source,
        })?;
        let all_there =
            fresh.num_vfs == count && (0..count).all(|i| fresh.vfs.iter().any(|vf| vf.index == i));
        let bound = !fresh.drivers_autoprobe || fresh.vfs.iter().all(|vf| vf.driver.is_some());
        if all_there && bound {
            return Ok(fresh);
        }
        if started.elapsed() >= options.vf_timeout {
            let unbound = fresh.vfs.iter().filter(|vf| vf.driver.is_none()).count();
            return Err(ApplyError::Outcome {
                pf: label.to_owned(),
                step,
                detail: format!(
                    "after {:?}: {} VFs, {unbound} without a driver",
                    options.vf_timeout,
                    fresh.vfs.len()
                ),
            });
        }
        std::thread::sleep(options.poll);
    }
}

fn bind_new_vfs(
    pf_plan: &PfPlan,
    fresh: &PfView,
    sysfs: &SysfsRoot,
    label: &str,
    report: &mut PfReport,
) {
    for vf in &fresh.vfs {
        let to = pf_plan
            .vf_types
            .get(&vf.index)
            .copied()
            .unwrap_or(DeviceType::Netdevice);
        if !needs_bind(vf, to) {
            continue;
        }
        let step = Step::Bind {
            vf: vf.index,
            address: Some(vf.address),
            from: vf.driver.clone(),
            to,
        };
        let result = bind(vf.index, vf.address, to, sysfs, label);
        record(report, step, result);
    }
}

/// Bind one VF to vfio-pci (override, unbind, probe) or back to its kernel
/// driver (clear the override, unbind a userspace driver, probe), reading
/// its state first: it may have changed since the plan was made.
fn bind(
    index: u32,
    vf: PciAddress,
    to: DeviceType,
    sysfs: &SysfsRoot,
    label: &str,
) -> Result<(), ApplyError> {
    let step = |what: &str| format!("VF {index} ({vf}) to {to}: {what}");
    let read = |what: &str, source| ApplyError::Read {
        pf: label.to_owned(),
        step: step(what),
        source,
    };
    let write = |what: &str, source| ApplyError::Write {
        pf: label.to_owned(),
        step: step(what),
        source,
    };
    let now = VfView {
        index,
        address: vf,
        driver: sysfs
            .bound_driver(vf)
            .map_err(|e| read("reading its driver", e))?,
        driver_override: sysfs
            .driver_override(vf)
            .map_err(|e| read("reading driver_override", e))?,
        netdev: None,
    };
    if !needs_bind(&now, to) {
        return Ok(());
    }
    match to {
        DeviceType::VfioPci => {
            sysfs
                .write_driver_override(vf, Some(VFIO_PCI))
                .map_err(|e| write("setting driver_override", e))?;
            if let Some(driver) = &now.driver {
                sysfs
                    .unbind_driver(vf, driver)
                    .map_err(|e| write(&format!("unbinding {driver}"), e))?;
            }
        }
        DeviceType::Netdevice => {
            if now.driver_override.is_some() {
                sysfs
                    .write_driver_override(vf, None)
                    .map_err(|e| write("clearing driver_override", e))?;
            }
            match now.driver.as_deref() {
                Some(driver) if USERSPACE_DRIVERS.contains(&driver) => sysfs
                    .unbind_driver(vf, driver)
                    .map_err(|e| write(&format!("unbinding {driver}"), e))?,
                // a kernel driver already: only the override was stale
                Some(_) => return Ok(()),
                None => {}
            }
        }
    }
    sysfs
        .probe_driver(vf)
        .map_err(|e| write("drivers_probe", e))?;
    let after = sysfs
        .bound_driver(vf)
        .map_err(|e| read("reading its driver after drivers_probe", e))?;
    if to.is_met_by(after.as_deref()) {
        Ok(())
    } else {
        // a probe that finds no driver succeeds: say what is missing
        Err(ApplyError::Outcome {
            pf: label.to_owned(),
            step: step("drivers_probe"),
            detail: match after {
                Some(driver) => format!("bound to {driver} instead"),
                None if to == DeviceType::VfioPci => {
                    "no driver took it (is the vfio-pci module loaded?)".into()
                }
                None => "no driver took it (is the VF driver module loaded?)".into(),
            },
        })
    }
}
