//! VF provisioning inside the daemon (`--node-policy`): the node policy is
//! planned and applied before the first scan, and again whenever the file
//! changes (its directory is watched like the config's: ConfigMap `..data`
//! swaps), on SIGHUP, and while steps are refused, each time pods release
//! VFs. The planner and the applier are `crate::provision`'s; this module
//! decides what the daemon does with their answers:
//!
//! - who holds what comes from the kubelet's PodResources API; when it
//!   cannot be asked, every existing VF counts as held, so a count change or
//!   a rebind is refused rather than risked (a first boot, with no VFs yet,
//!   is not held back by this);
//! - a policy that does not read, or conflicts on this node, stops the
//!   daemon at start (the operator must fix it) and is refused at a later
//!   change: the node stays as the last accepted policy left it;
//! - readiness ([`ProvisioningStatus::readiness`]): not ready until the
//!   first plan was applied, nor while a step failed or the file on disk is
//!   refused; steps refused because pods hold VFs leave it ready and are
//!   listed in its body (docs/provision.md says why).

use super::configwatch::ConfigWatch;
use super::held::{self, HeldDevices};
use super::metrics::{ErrorKind, Metrics, ProvisionOutcome};
use crate::dra::checkpoint::Checkpoint;
use crate::netlink::{Netlink, NetlinkError};
use crate::pci::PciAddress;
use crate::provision::{
    self, ApplyOptions, Format, HeldVfs, NodePolicies, NodeView, PfReport, PolicyErrors, Report,
};
use crate::sysfs::{SysfsError, SysfsRoot};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the node policy comes from, and how it is applied.
#[derive(Debug, Clone)]
pub struct NodePolicySource {
    pub path: PathBuf,
    /// A missing file is "no policy" (nothing to provision) instead of an
    /// error: for a ConfigMap volume marked `optional`, which is an empty
    /// directory while the ConfigMap does not exist.
    pub missing_is_empty: bool,
    /// How long to wait for the VFs (and their drivers) after `sriov_numvfs`.
    pub vf_timeout: Duration,
}

/// Default of [`NodePolicySource::vf_timeout`].
pub const DEFAULT_VF_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// Unreadable, invalid, or conflicting on this node.
    #[error("node policy {path}: {errors}")]
    Policy { path: PathBuf, errors: PolicyErrors },
    #[error("node policy {path}: reading the node: {source}")]
    Observe {
        path: PathBuf,
        #[source]
        source: SysfsError,
    },
    #[error("node policy {path}: opening a netlink socket for the PF MTU: {source}")]
    Netlink {
        path: PathBuf,
        #[source]
        source: NetlinkError,
    },
    #[error("node policy {path}: the provisioning task ended without an answer: {detail}")]
    Task { path: PathBuf, detail: String },
}

/// What provisioning says now, shared with the probe endpoint (the counts
/// go to the metrics: `sriov_dp_provisioning_results_total`).
#[derive(Debug, Clone, Default)]
pub struct ProvisioningStatus {
    /// `--node-policy` given.
    pub enabled: bool,
    /// A plan was applied at least once (until then: not ready).
    pub applied: bool,
    /// The last run's refused steps, one line each (PF, step, VF, pod).
    pub refused: Vec<String>,
    /// The last run's failed and skipped steps, one line each.
    pub failed: Vec<String>,
    /// Why the policy file on disk is not the one applied (None: it is).
    pub policy_refused: Option<String>,
}

pub type SharedProvisioning = Arc<Mutex<ProvisioningStatus>>;

/// Provisioning's part of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready; the lines are said in the body all the same.
    Ready(Vec<String>),
    NotReady(String),
}

impl ProvisioningStatus {
    pub fn readiness(&self) -> Readiness {
        if !self.enabled {
            return Readiness::Ready(Vec::new());
        }
        if let Some(error) = &self.policy_refused {
            return Readiness::NotReady(format!(
                "node policy refused, the node stays as the previous one left it: {error}"
            ));
        }
        if !self.applied {
            return Readiness::NotReady("node policy not applied yet".into());
        }
        if !self.failed.is_empty() {
            return Readiness::NotReady(format!(
                "node policy: {} step(s) failed or skipped:\n{}",
                self.failed.len(),
                self.failed.join("\n")
            ));
        }
        Readiness::Ready(
            self.refused
                .iter()
                .map(|line| format!("node policy step refused (a pod holds the VF): {line}"))
                .collect(),
        )
    }

    /// File the outcome of one run (of the file on disk, or of the policy
    /// last accepted: `policy_refused` is the caller's to clear).
    fn record(&mut self, report: &Report) {
        self.applied = true;
        self.refused = report
            .pfs
            .iter()
            .flat_map(|pf| {
                pf.refused
                    .iter()
                    .map(move |refused| format!("PF {}: {refused}", label(pf)))
            })
            .collect();
        self.failed = report
            .pfs
            .iter()
            .flat_map(|pf| {
                let failed = pf.failed.iter().map(|f| f.message.clone());
                let skipped = pf
                    .skipped
                    .iter()
                    .map(move |s| format!("PF {}: {}: skipped: {}", label(pf), s.step, s.reason));
                failed.chain(skipped)
            })
            .collect();
    }
}

fn label(pf: &PfReport) -> String {
    match &pf.name {
        Some(name) => format!("{name} ({})", pf.pf),
        None => pf.pf.to_string(),
    }
}

/// What PodResources said pods hold, or that it could not be asked.
#[derive(Debug, Clone)]
pub enum Held {
    Known(HeldVfs),
    Unknown,
}

/// The VFs among the devices pods hold: IDs that are PCI addresses (the
/// others, auxiliary devices, are not VFs), through the device plugin or a
/// DRA claim, each with `namespace/pod`.
pub fn held_vfs(held: &HeldDevices) -> HeldVfs {
    let mut vfs = HeldVfs::new();
    for (_, id, holder) in held.iter() {
        if let Ok(address) = id.parse::<PciAddress>() {
            vfs.insert(
                address,
                Some(format!("{}/{}", holder.namespace, holder.pod)),
            );
        }
    }
    // VFs pods use through DRA claims, named as our slices name them
    for (device, holder) in held.dra_devices() {
        if let Some(address) = crate::dra::names::pci_address_of(&device.device) {
            vfs.insert(
                address,
                Some(format!("{}/{}", holder.namespace, holder.pod)),
            );
        }
    }
    vfs
}

impl Held {
    /// The VFs to protect on `node`: when unknown, every VF it has.
    pub fn on(&self, node: &NodeView) -> HeldVfs {
        match self {
            Held::Known(vfs) => vfs.clone(),
            Held::Unknown => HeldVfs::from_addresses(
                node.pfs.iter().flat_map(|pf| &pf.vfs).map(|vf| &vf.address),
            ),
        }
    }
}

/// The VFs of prepared DRA claims, held by their claim's namespace/name.
fn add_prepared(vfs: &mut HeldVfs, checkpoint: &Checkpoint) {
    for claim in checkpoint.claims.values() {
        for device in &claim.devices {
            if let Ok(address) = device.id.parse::<PciAddress>() {
                let holder = format!("{}/{} (DRA claim)", claim.namespace, claim.name);
                vfs.insert(address, Some(holder));
            }
        }
    }
}

/// Why a run happens: the start, or later (the file, SIGHUP, a release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The policy directory changed: a run only if the file's bytes did.
    FileChanged,
    /// SIGHUP: read and apply again, changed or not (a fixed module, say).
    Reload,
    /// Steps were refused: plan again, apply only if something is to do.
    Release,
}

/// The daemon's provisioning: the policy last accepted, the watch on its
/// directory, the shared status.
pub struct Provisioner {
    source: NodePolicySource,
    sysfs: SysfsRoot,
    pod_resources: Option<PathBuf>,
    status: SharedProvisioning,
    /// The file's bytes at the last look, accepted or not (None: missing).
    seen: Option<Vec<u8>>,
    /// The policy last accepted (what a `Release` run plans with).
    policies: NodePolicies,
    watch: Option<ConfigWatch>,
    metrics: Metrics,
    /// The DRA side's prepared claims, whose VFs are held too: the
    /// kubelet's own record, which PodResources reports only where its DRA
    /// support is on. None: this daemon serves no DRA.
    dra_checkpoint: Option<DraCheckpoint>,
}

/// Where the DRA side keeps its prepared claims, and whose they are.
#[derive(Debug, Clone)]
pub struct DraCheckpoint {
    pub path: PathBuf,
    pub driver: String,
    pub node: String,
}

impl Provisioner {
    /// Marks provisioning pending in `status` (not ready until applied).
    /// With `watch`, starts watching the file's directory (inside a tokio
    /// runtime), before the first read so that no change is missed.
    pub fn new(
        source: NodePolicySource,
        sysfs: SysfsRoot,
        pod_resources: Option<PathBuf>,
        status: SharedProvisioning,
        watch: bool,
        metrics: Metrics,
        dra_checkpoint: Option<DraCheckpoint>,
    ) -> Provisioner {
        if let Ok(mut status) = status.lock() {
            status.enabled = true;
        }
        let watch = watch.then(|| ConfigWatch::start(&source.path));
        Provisioner {
            source,
            sysfs,
            pod_resources,
            status,
            seen: None,
            policies: NodePolicies::default(),
            watch,
            metrics,
            dra_checkpoint,
        }
    }

    /// The first run: a policy that cannot be read or planned is the error
    /// that stops the daemon. Failed steps are not: they are in the status.
    pub async fn start(&mut self) -> Result<(), ProvisioningError> {
        let policies = self.read()?;
        self.policies = policies.clone();
        self.run(policies, None).await.map(|_| ())
    }

    /// Waits for the policy's directory to change (never, without a watch).
    pub async fn changed(&mut self) {
        match self.watch.as_mut() {
            Some(watch) => watch.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Steps were refused last time: a `Release` run may apply them.
    pub fn waiting_for_release(&self) -> bool {
        self.status.lock().is_ok_and(|s| !s.refused.is_empty())
    }

    /// A run after start. True when the node may have changed (the caller
    /// rescans). A policy that cannot be read or planned is refused: logged,
    /// in the status, the node left as it is.
    pub async fn again(&mut self, trigger: Trigger) -> bool {
        let policies = match trigger {
            Trigger::Release => self.policies.clone(),
            Trigger::FileChanged | Trigger::Reload => {
                if trigger == Trigger::FileChanged && self.read_bytes() == self.seen {
                    return false;
                }
                match self.read() {
                    Ok(policies) => policies,
                    Err(error) => {
                        self.refuse(&error);
                        return false;
                    }
                }
            }
        };
        if trigger != Trigger::Release {
            // a release retry says something only when it applies (below)
            tracing::info!(policy = %self.source.path.display(), ?trigger, "applying the node policy");
        }
        let release = match trigger {
            Trigger::Release => Some(self.status.lock().map_or(0, |s| s.refused.len())),
            Trigger::FileChanged | Trigger::Reload => None,
        };
        match self.run(policies.clone(), release).await {
            Ok(ran) => {
                if trigger != Trigger::Release {
                    // the file on disk is the policy applied now
                    self.policies = policies;
                    if let Ok(mut status) = self.status.lock() {
                        status.policy_refused = None;
                    }
                }
                ran
            }
            Err(error) if trigger == Trigger::Release => {
                // the policy itself was accepted: a retry that could not
                // look at the node (sysfs, netlink) is no reason to call it
                // refused; the next recheck tries again
                tracing::warn!(%error, "node policy: a retry after a release failed; trying again later");
                self.metrics.error(ErrorKind::NodePolicy);
                false
            }
            Err(error) => {
                self.refuse(&error);
                false
            }
        }
    }

    fn refuse(&self, error: &ProvisioningError) {
        tracing::error!(%error, "node policy refused: the node stays as the previous policy left it");
        self.metrics.error(ErrorKind::NodePolicy);
        if let Ok(mut status) = self.status.lock() {
            status.policy_refused = Some(error.to_string());
        }
    }

    fn read_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(&self.source.path).ok()
    }

    /// The file, parsed; a missing file is no policy when that was asked for.
    fn read(&mut self) -> Result<NodePolicies, ProvisioningError> {
        let path = &self.source.path;
        let policy_error = |errors: PolicyErrors| ProvisioningError::Policy {
            path: path.clone(),
            errors,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error)
                if error.kind() == std::io::ErrorKind::NotFound && self.source.missing_is_empty =>
            {
                tracing::info!(policy = %path.display(), "no node policy file: nothing to provision");
                self.seen = None;
                return Ok(NodePolicies::default());
            }
            Err(source) => {
                self.seen = None;
                return Err(policy_error(
                    provision::PolicyError::Read {
                        path: path.clone(),
                        source,
                    }
                    .into(),
                ));
            }
        };
        self.seen = Some(bytes.clone());
        let text = String::from_utf8(bytes).map_err(|_| {
            policy_error(
                provision::PolicyError::Syntax {
                    format: "UTF-8 text",
                    message: "the file is not UTF-8".into(),
                }
                .into(),
            )
        })?;
        provision::parse(&text, Format::detect(Some(path), &text)).map_err(policy_error)
    }

    /// `quiet`: a retry every few seconds, whose warnings were said already.
    async fn held(&self, quiet: bool) -> Held {
        let Some(socket) = self.pod_resources.as_deref() else {
            if !quiet {
                tracing::warn!("PodResources is not asked (--pod-resources-socket \"\"): every existing VF counts as held by a pod");
            }
            return Held::Unknown;
        };
        let mut vfs = match held::list(socket).await {
            Ok(devices) => held_vfs(&devices),
            Err(error) => {
                if !quiet {
                    tracing::warn!(%error, "cannot learn which VFs pods hold: every existing VF counts as held");
                }
                return Held::Unknown;
            }
        };
        if let Some(dra) = &self.dra_checkpoint {
            match Checkpoint::load(&dra.path, &dra.driver, &dra.node) {
                Ok(checkpoint) => add_prepared(&mut vfs, &checkpoint),
                Err(error) => {
                    if !quiet {
                        tracing::warn!(%error, "cannot read the prepared DRA claims: every existing VF counts as held");
                    }
                    return Held::Unknown;
                }
            }
        }
        Held::Known(vfs)
    }

    /// Observe, plan, apply (off the runtime: the applier sleeps while it
    /// waits for VFs), file the report. `release`: a retry while this many
    /// steps were refused; it applies only when a release made fewer of
    /// them refused (so steps that failed are not retried every few
    /// seconds: that is for a change or SIGHUP). True when applied.
    async fn run(
        &mut self,
        policies: NodePolicies,
        release: Option<usize>,
    ) -> Result<bool, ProvisioningError> {
        let held = self.held(release.is_some()).await;
        let sysfs = self.sysfs.clone();
        let path = self.source.path.clone();
        let options = ApplyOptions {
            vf_timeout: self.source.vf_timeout,
            ..ApplyOptions::default()
        };
        let task = tokio::task::spawn_blocking(move || {
            apply_blocking(&path, &policies, &held, &sysfs, &options, release)
        });
        let report = task.await.map_err(|error| ProvisioningError::Task {
            path: self.source.path.clone(),
            detail: error.to_string(),
        })??;
        let report = match report {
            Applied::Report(report) => report,
            Applied::Nothing { refused } => {
                if refused == 0 {
                    // nothing refused any more, and nothing to do
                    if let Ok(mut status) = self.status.lock() {
                        status.refused.clear();
                    }
                }
                return Ok(false);
            }
        };
        if report.complete() {
            tracing::info!(policy = %self.source.path.display(), applied = report.applied(), "node policy applied");
        } else {
            tracing::warn!(
                policy = %self.source.path.display(),
                applied = report.applied(),
                refused = report.refused(),
                failed = report.failed(),
                skipped = report.skipped(),
                "node policy applied in part"
            );
        }
        if let Ok(mut status) = self.status.lock() {
            status.record(&report);
        }
        for pf in &report.pfs {
            let name = pf.name.clone().unwrap_or_else(|| pf.pf.to_string());
            let steps = [
                (pf.applied.len(), ProvisionOutcome::Applied),
                (pf.refused.len(), ProvisionOutcome::Refused),
                (pf.failed.len(), ProvisionOutcome::Failed),
                (pf.skipped.len(), ProvisionOutcome::Skipped),
            ];
            for (count, outcome) in steps {
                self.metrics
                    .provisioning_steps(&name, outcome, count as u64);
            }
        }
        Ok(true)
    }
}

/// What a run did: applied a plan, or nothing (a release retry with no
/// fewer refusals, or nothing to do).
enum Applied {
    Report(Report),
    Nothing { refused: usize },
}

fn apply_blocking(
    path: &Path,
    policies: &NodePolicies,
    held: &Held,
    sysfs: &SysfsRoot,
    options: &ApplyOptions,
    release: Option<usize>,
) -> Result<Applied, ProvisioningError> {
    let node = provision::observe(sysfs).map_err(|source| ProvisioningError::Observe {
        path: path.to_owned(),
        source,
    })?;
    let plan = provision::plan(policies, &node, &held.on(&node)).map_err(|errors| {
        ProvisioningError::Policy {
            path: path.to_owned(),
            errors,
        }
    })?;
    if let Some(refused_before) = release {
        if plan.steps() == 0 || plan.refused() >= refused_before {
            return Ok(Applied::Nothing {
                refused: plan.refused(),
            });
        }
    }
    for name in &plan.unmatched_policies {
        tracing::info!(policy = %name, "node policy selects no PF on this node");
    }
    let mut links = Netlink::open().map_err(|source| ProvisioningError::Netlink {
        path: path.to_owned(),
        source,
    })?;
    Ok(Applied::Report(provision::apply(
        &plan, sysfs, &mut links, options,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;
    use crate::kubelet_api::podresources::v1::{
        ContainerResources, ListPodResourcesResponse, PodResources,
    };
    use crate::provision::{Failed, PfView, Refused, Skipped, Step, VfView};

    fn held_devices(ids: &[&str]) -> HeldDevices {
        held::held_by_pod("du-0", "intel.com/e810", ids)
    }

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn vfs_of_prepared_dra_claims_are_held_even_when_pod_resources_does_not_say() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        let mut checkpoint = Checkpoint::empty("sriov-rs.invalid", "worker-1");
        checkpoint.claims.insert(
            "uid-1".into(),
            crate::dra::checkpoint::PreparedClaim {
                namespace: "ran".into(),
                name: "vf".into(),
                devices: vec![crate::dra::checkpoint::PreparedDevice {
                    request: "vf".into(),
                    pool: "worker-1/intel.com/e810".into(),
                    device: "0000-3b-01-5".into(),
                    id: "0000:3b:01.5".into(),
                    resource_name: "intel.com/e810".into(),
                    cdi_device_id: "sriov-rs.invalid/vf=uid-1-0000-3b-01-5".into(),
                }],
            },
        );
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path, "sriov-rs.invalid", "worker-1").unwrap();
        let mut vfs = held_vfs(&held_devices(&["0000:3b:01.2"]));
        add_prepared(&mut vfs, &loaded);
        assert_eq!(
            vfs.holder(pci("0000:3b:01.5")).unwrap().holder.as_deref(),
            Some("ran/vf (DRA claim)")
        );
        assert!(vfs.holder(pci("0000:3b:01.2")).is_some());
        // a checkpoint of another node is not read as this one's
        assert!(Checkpoint::load(&path, "sriov-rs.invalid", "worker-2").is_err());
    }

    #[test]
    fn vfs_of_dra_claims_are_held_too() {
        use crate::kubelet_api::podresources::v1::{ClaimResource, DynamicResource};
        let list = ListPodResourcesResponse {
            pod_resources: vec![PodResources {
                name: "cu-1".into(),
                namespace: "ran".into(),
                containers: vec![ContainerResources {
                    name: "app".into(),
                    dynamic_resources: vec![DynamicResource {
                        claim_name: "vf".into(),
                        claim_namespace: "ran".into(),
                        claim_resources: vec![
                            ClaimResource {
                                driver_name: "sriov-rs.invalid".into(),
                                pool_name: "worker-1/intel.com/e810".into(),
                                device_name: "0000-3b-01-4".into(),
                                ..Default::default()
                            },
                            ClaimResource {
                                driver_name: "sriov-rs.invalid".into(),
                                pool_name: "worker-1/mellanox.com/sf".into(),
                                device_name: "mlx5-core-sf-2".into(),
                                ..Default::default()
                            },
                        ],
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let vfs = held_vfs(&HeldDevices::from_list(&list));
        let mut expected = HeldVfs::new();
        expected.insert(pci("0000:3b:01.4"), Some("ran/cu-1".into()));
        assert_eq!(vfs, expected);
    }

    #[test]
    fn held_device_ids_become_held_vfs_with_their_pod_and_non_pci_ids_are_left_out() {
        let vfs = held_vfs(&held_devices(&["0000:3b:01.2", "mlx5_core.sf.4"]));
        let held = vfs.holder(pci("0000:3b:01.2")).unwrap();
        assert_eq!(held.holder.as_deref(), Some("ran/du-0"));
        assert_eq!(vfs.holder(pci("0000:3b:01.3")), None);
        let mut only_one = HeldVfs::new();
        only_one.insert(pci("0000:3b:01.2"), Some("ran/du-0".into()));
        assert_eq!(vfs, only_one);
    }

    fn node_with_vfs(addresses: &[&str]) -> NodeView {
        NodeView {
            pfs: vec![PfView {
                address: pci("0000:3b:00.0"),
                name: Some("ens1f0".into()),
                vendor: "8086".into(),
                device: "1592".into(),
                driver: Some("ice".into()),
                total_vfs: 8,
                num_vfs: addresses.len() as u32,
                mtu: Some(1500),
                drivers_autoprobe: true,
                vfs: addresses
                    .iter()
                    .enumerate()
                    .map(|(index, a)| VfView {
                        index: index as u32,
                        address: pci(a),
                        driver: Some("iavf".into()),
                        driver_override: None,
                        netdev: None,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn when_pod_resources_cannot_be_asked_every_existing_vf_counts_as_held() {
        let node = node_with_vfs(&["0000:3b:01.0", "0000:3b:01.1"]);
        let held = Held::Unknown.on(&node);
        assert!(held.holder(pci("0000:3b:01.0")).is_some());
        assert!(held.holder(pci("0000:3b:01.1")).is_some());
        // a PF with no VFs yet holds nothing back: a first boot provisions
        assert!(Held::Unknown.on(&node_with_vfs(&[])).is_empty());
        let known = Held::Known(HeldVfs::new());
        assert!(known.on(&node).is_empty());
    }

    fn report(refused: Vec<Refused>, failed: Vec<Failed>, skipped: Vec<Skipped>) -> Report {
        Report {
            pfs: vec![PfReport {
                pf: pci("0000:3b:00.0"),
                name: Some("ens1f0".into()),
                applied: vec![Step::Mtu {
                    from: Some(1500),
                    to: 9000,
                }],
                skipped,
                refused,
                failed,
            }],
        }
    }

    fn refused_count_change() -> Refused {
        let mut held = HeldVfs::new();
        held.insert(pci("0000:3b:01.2"), Some("ran/du-0".into()));
        Refused {
            step: Step::NumVfs { from: 6, to: 8 },
            reason: "pods hold some".into(),
            held: vec![held.holder(pci("0000:3b:01.2")).unwrap()],
        }
    }

    #[test]
    fn readiness_waits_for_the_first_run_and_refused_steps_leave_it_ready_but_said() {
        let mut status = ProvisioningStatus::default();
        assert_eq!(status.readiness(), Readiness::Ready(vec![]), "no policy");
        status.enabled = true;
        assert!(
            matches!(status.readiness(), Readiness::NotReady(why) if why.contains("not applied yet"))
        );

        status.record(&report(vec![refused_count_change()], vec![], vec![]));
        let Readiness::Ready(notes) = status.readiness() else {
            panic!(
                "refused steps keep the node ready: {:?}",
                status.readiness()
            );
        };
        assert_eq!(notes.len(), 1);
        for part in [
            "ens1f0 (0000:3b:00.0)",
            "numVfs 6 -> 0 -> 8",
            "0000:3b:01.2",
            "ran/du-0",
        ] {
            assert!(notes[0].contains(part), "{part}: {}", notes[0]);
        }
    }

    #[test]
    fn a_failed_step_or_a_refused_policy_makes_the_node_not_ready_until_a_clean_run() {
        let mut status = ProvisioningStatus {
            enabled: true,
            ..Default::default()
        };
        let step = Step::NumVfs { from: 0, to: 6 };
        let failed = Failed {
            step: step.clone(),
            message: "PF ens1f0 (0000:3b:00.0): waiting for 6 VFs: after 30s: 0 VFs".into(),
            error: provision::ApplyError::Outcome {
                pf: "PF ens1f0 (0000:3b:00.0)".into(),
                step: "waiting for 6 VFs".into(),
                detail: "after 30s: 0 VFs".into(),
            },
        };
        let skipped = Skipped {
            step: Step::Bind {
                vf: 5,
                address: None,
                from: None,
                to: provision::DeviceType::VfioPci,
            },
            reason: "the numVfs step failed".into(),
        };
        status.record(&report(vec![], vec![failed], vec![skipped]));
        let Readiness::NotReady(why) = status.readiness() else {
            panic!("a failed step: not ready");
        };
        assert!(
            why.contains("waiting for 6 VFs") && why.contains("VF 5"),
            "{why}"
        );

        status.policy_refused = Some("policy \"fast\": numVfs: bad".into());
        assert!(
            matches!(status.readiness(), Readiness::NotReady(why) if why.contains("policy \"fast\": numVfs"))
        );

        // a retry of the policy last accepted does not make the refused file good
        status.record(&report(vec![], vec![], vec![]));
        assert!(matches!(status.readiness(), Readiness::NotReady(why) if why.contains("refused")));
        status.policy_refused = None;
        assert_eq!(status.readiness(), Readiness::Ready(vec![]));
    }
}
