//! NodePrepareResources and NodeUnprepareResources, as logic over a
//! [`ClaimSource`], the node's [`DraInventory`] and the checkpoint: every
//! claim gets its own answer, and one bad claim never fails the others.

use super::cdi::{
    cdi_device_id, remove_claim_files, remove_orphan_specs, write_claim_files, CdiError,
};
use super::checkpoint::{Checkpoint, CheckpointError, Mismatch, PreparedClaim, PreparedDevice};
use super::claims::{our_devices, ClaimError, ClaimRef, ClaimSource, ClaimSourceError, ClaimView};
use super::inventory::{DraDevice, DraInventory};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the API server said about each claim read, by claim UID.
pub type Fetched = BTreeMap<String, Result<Option<ClaimView>, ClaimSourceError>>;

/// Read `claims` from `source`, one after the other.
pub async fn fetch_claims(source: &impl ClaimSource, claims: &[ClaimRef]) -> Fetched {
    let mut fetched = BTreeMap::new();
    for claim in claims {
        let view = source.get(&claim.namespace, &claim.name).await;
        fetched.insert(claim.uid.clone(), view);
    }
    fetched
}

/// Where Prepare writes, and who we are.
#[derive(Debug, Clone)]
pub struct PrepareSettings {
    /// The DRA driver name (a DNS subdomain).
    pub driver: String,
    pub node: String,
    /// `--cdi-spec-dir`
    pub cdi_dir: PathBuf,
    /// The device-info directory the CNI reads (`--devinfo-dir`).
    pub devinfo_dir: PathBuf,
    /// The prepared-claims checkpoint, e.g.
    /// `/var/lib/kubelet/plugins/<driver>/checkpoint.json`.
    pub checkpoint: PathBuf,
}

/// Why one claim could not be prepared or unprepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("claim {claim}: {source}")]
    Files {
        claim: Box<ClaimRef>,
        #[source]
        source: CdiError,
    },
    #[error("claim {claim}: {source}")]
    Checkpoint {
        claim: Box<ClaimRef>,
        #[source]
        source: CheckpointError,
    },
    #[error("claim {claim}: {}", .errors.join("; "))]
    Cleanup {
        claim: Box<ClaimRef>,
        errors: Vec<String>,
    },
}

/// Device ID → the pod holding it through the device plugin API (from
/// PodResources): devices a new claim must not get.
pub type InUse = BTreeMap<String, String>;

/// The prepared claims of this node, and how to prepare more.
#[derive(Debug)]
pub struct Preparer {
    settings: PrepareSettings,
    inventory: DraInventory,
    checkpoint: Checkpoint,
}

impl Preparer {
    /// Read the checkpoint and check it against `inventory`. The mismatches
    /// are for the caller to report: such a claim stays recorded (its
    /// Unprepare still removes its files) but Prepare refuses it.
    pub fn start(
        settings: PrepareSettings,
        inventory: DraInventory,
    ) -> Result<(Self, Vec<Mismatch>), CheckpointError> {
        let checkpoint = Checkpoint::load(&settings.checkpoint, &settings.driver, &settings.node)?;
        let mismatches = checkpoint.mismatches(&inventory);
        // Specs of claims we never recorded: a crash between writing and
        // recording. The kubelet's retry writes them again if still wanted.
        let (removed, errors) = remove_orphan_specs(&settings.cdi_dir, &|uid| {
            checkpoint.claims.contains_key(uid)
        });
        for uid in removed {
            tracing::info!(claim_uid = %uid, "removed the CDI spec of a claim not in the checkpoint");
        }
        for error in errors {
            tracing::warn!(%error, "cannot remove a CDI spec of a claim not in the checkpoint");
        }
        Ok((
            Preparer {
                settings,
                inventory,
                checkpoint,
            },
            mismatches,
        ))
    }

    /// The node's pools changed (rescan, reload): returns the prepared
    /// devices the new inventory no longer serves as recorded.
    pub fn set_inventory(&mut self, inventory: DraInventory) -> Vec<Mismatch> {
        self.inventory = inventory;
        self.checkpoint.mismatches(&self.inventory)
    }

    pub fn settings(&self) -> &PrepareSettings {
        &self.settings
    }

    /// The prepared claims, keyed by UID.
    pub fn prepared(&self) -> &BTreeMap<String, PreparedClaim> {
        &self.checkpoint.claims
    }

    /// Every device of a prepared claim, with its claim.
    pub fn prepared_devices(&self) -> impl Iterator<Item = (&PreparedClaim, &PreparedDevice)> {
        self.checkpoint
            .claims
            .values()
            .flat_map(|claim| claim.devices.iter().map(move |device| (claim, device)))
    }

    /// Prepare every claim; the answer has one entry per claim UID. Reads
    /// the claims it does not know from `source` while holding `self`; the
    /// service uses [`Preparer::to_fetch`] and [`Preparer::prepare_fetched`]
    /// instead, so no lock is held while the API server answers.
    pub async fn prepare(
        &mut self,
        source: &impl ClaimSource,
        claims: &[ClaimRef],
    ) -> BTreeMap<String, Result<Vec<PreparedDevice>, PrepareError>> {
        let fetched = fetch_claims(source, &self.to_fetch(claims)).await;
        self.prepare_fetched(claims, fetched, &InUse::new())
    }

    /// The claims of a request Prepare has to read from the API server:
    /// those not prepared before.
    pub fn to_fetch(&self, claims: &[ClaimRef]) -> Vec<ClaimRef> {
        claims
            .iter()
            .filter(|c| !self.checkpoint.claims.contains_key(&c.uid))
            .cloned()
            .collect()
    }

    /// Prepare every claim, with `fetched` holding what the API server said
    /// about the claims [`Preparer::to_fetch`] named (by UID). A claim
    /// prepared in the meantime takes the known path and its fetched view is
    /// not used; a claim neither known nor fetched is refused as not read;
    /// a new claim naming a device in `in_use` is refused.
    pub fn prepare_fetched(
        &mut self,
        claims: &[ClaimRef],
        mut fetched: Fetched,
        in_use: &InUse,
    ) -> BTreeMap<String, Result<Vec<PreparedDevice>, PrepareError>> {
        let mut answers = BTreeMap::new();
        for claim in claims {
            let view = fetched.remove(&claim.uid);
            let answer = self.prepare_one(claim, view, in_use);
            match &answer {
                Ok(devices) => {
                    tracing::info!(claim = %claim, devices = devices.len(), "claim prepared")
                }
                Err(error) => tracing::warn!(claim = %claim, %error, "claim not prepared"),
            }
            answers.insert(claim.uid.clone(), answer);
        }
        answers
    }

    fn prepare_one(
        &mut self,
        claim: &ClaimRef,
        view: Option<Result<Option<ClaimView>, ClaimSourceError>>,
        in_use: &InUse,
    ) -> Result<Vec<PreparedDevice>, PrepareError> {
        // Prepared before (a kubelet retry or restart): the same answer,
        // without asking the API server, as long as the devices are still
        // here; the files are written again in case they were lost.
        if let Some(known) = self.checkpoint.claims.get(&claim.uid) {
            let devices = known.devices.clone();
            self.write_files(claim, &devices)?;
            return Ok(devices);
        }
        let view = view
            .unwrap_or_else(|| {
                Err(ClaimSourceError::Unavailable {
                    namespace: claim.namespace.clone(),
                    name: claim.name.clone(),
                    message: "not read".into(),
                })
            })
            .map_err(ClaimError::from)?;
        let allocated = our_devices(claim, view, &self.settings.driver)?;
        let devices = allocated
            .into_iter()
            .map(|a| {
                let dra = self.inventory.get(&a.pool, &a.device).ok_or_else(|| {
                    ClaimError::NotOnThisNode {
                        claim: Box::new(claim.clone()),
                        pool: a.pool.clone(),
                        device: a.device.clone(),
                        node: self.settings.node.clone(),
                    }
                })?;
                if let Some(holder) = in_use.get(&dra.id) {
                    return Err(ClaimError::InUseByDevicePlugin {
                        claim: Box::new(claim.clone()),
                        pool: a.pool.clone(),
                        device: a.device.clone(),
                        id: dra.id.clone(),
                        holder: holder.clone(),
                    });
                }
                Ok(PreparedDevice {
                    cdi_device_id: cdi_device_id(&self.settings.driver, &claim.uid, &a.device),
                    request: a.request,
                    pool: a.pool,
                    device: a.device,
                    id: dra.id.clone(),
                    resource_name: dra.pool.resource_name.clone(),
                })
            })
            .collect::<Result<Vec<_>, ClaimError>>()?;
        self.write_files(claim, &devices)?;
        self.checkpoint.claims.insert(
            claim.uid.clone(),
            PreparedClaim {
                namespace: claim.namespace.clone(),
                name: claim.name.clone(),
                devices: devices.clone(),
            },
        );
        if let Err(source) = self.checkpoint.save(&self.settings.checkpoint) {
            // Not recorded means not prepared: take the files back.
            self.checkpoint.claims.remove(&claim.uid);
            let _ = remove_claim_files(
                &self.settings.cdi_dir,
                &self.settings.devinfo_dir,
                &claim.uid,
                &devices,
            );
            return Err(PrepareError::Checkpoint {
                claim: Box::new(claim.clone()),
                source,
            });
        }
        Ok(devices)
    }

    /// Each device must still be served as recorded: a claim whose VF left
    /// the node (or whose name now means another VF) is refused.
    fn write_files(
        &self,
        claim: &ClaimRef,
        devices: &[PreparedDevice],
    ) -> Result<(), PrepareError> {
        let mut served: Vec<(&PreparedDevice, &DraDevice)> = Vec::new();
        for device in devices {
            match self.inventory.get(&device.pool, &device.device) {
                Some(dra) if dra.id == device.id => served.push((device, dra)),
                _ => {
                    return Err(ClaimError::NotOnThisNode {
                        claim: Box::new(claim.clone()),
                        pool: device.pool.clone(),
                        device: device.device.clone(),
                        node: self.settings.node.clone(),
                    }
                    .into())
                }
            }
        }
        write_claim_files(
            &self.settings.cdi_dir,
            &self.settings.devinfo_dir,
            &self.settings.driver,
            &claim.uid,
            &served,
        )
        .map_err(|source| PrepareError::Files {
            claim: Box::new(claim.clone()),
            source,
        })
    }

    /// Write the files of every prepared claim again, where its devices are
    /// still served as recorded (the others are reported by
    /// [`Preparer::set_inventory`]): something else may have removed them,
    /// such as the device plugin side cleaning up the files of a pool that
    /// moved to DRA under the same resource name.
    pub fn rewrite_files(&self) -> Vec<PrepareError> {
        self.checkpoint
            .claims
            .iter()
            .filter_map(|(uid, known)| {
                let claim = ClaimRef {
                    namespace: known.namespace.clone(),
                    name: known.name.clone(),
                    uid: uid.clone(),
                };
                self.write_files(&claim, &known.devices).err()
            })
            .collect()
    }

    /// Unprepare every claim; an unknown claim is a success.
    pub fn unprepare(&mut self, claims: &[ClaimRef]) -> BTreeMap<String, Result<(), PrepareError>> {
        let mut answers = BTreeMap::new();
        for claim in claims {
            let answer = self.unprepare_one(claim);
            if let Err(error) = &answer {
                tracing::warn!(claim = %claim, %error, "claim not unprepared");
            }
            answers.insert(claim.uid.clone(), answer);
        }
        answers
    }

    fn unprepare_one(&mut self, claim: &ClaimRef) -> Result<(), PrepareError> {
        let Some(known) = self.checkpoint.claims.get(&claim.uid) else {
            return Ok(());
        };
        let errors = remove_claim_files(
            &self.settings.cdi_dir,
            &self.settings.devinfo_dir,
            &claim.uid,
            &known.devices,
        );
        if !errors.is_empty() {
            // still recorded, so a retry tries again
            return Err(PrepareError::Cleanup {
                claim: Box::new(claim.clone()),
                errors: errors.iter().map(ToString::to_string).collect(),
            });
        }
        let removed = self.checkpoint.claims.remove(&claim.uid);
        if let Err(source) = self.checkpoint.save(&self.settings.checkpoint) {
            if let Some(removed) = removed {
                self.checkpoint.claims.insert(claim.uid.clone(), removed);
            }
            return Err(PrepareError::Checkpoint {
                claim: Box::new(claim.clone()),
                source,
            });
        }
        tracing::info!(claim = %claim, "claim unprepared");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::deviceplugin::served::{test_device, test_pool};
    use crate::dra::claims::{ClaimSourceError, ClaimView};
    use std::sync::Arc;

    /// The API server is down: only the checkpoint can answer.
    struct Down;

    impl ClaimSource for Down {
        async fn get(&self, ns: &str, name: &str) -> Result<Option<ClaimView>, ClaimSourceError> {
            Err(ClaimSourceError::Unavailable {
                namespace: ns.into(),
                name: name.into(),
                message: "connection refused".into(),
            })
        }
    }

    fn inventory(ids: &[&str]) -> DraInventory {
        let pool = test_pool(ids.iter().map(|id| test_device(id)).collect(), false);
        DraInventory::new("worker-1", &[Arc::new(pool)])
    }

    fn settings(dir: &std::path::Path) -> PrepareSettings {
        PrepareSettings {
            driver: "sriov-rs.invalid".into(),
            node: "worker-1".into(),
            cdi_dir: dir.join("cdi"),
            devinfo_dir: dir.join("devinfo"),
            checkpoint: dir.join("checkpoint.json"),
        }
    }

    fn claim() -> ClaimRef {
        ClaimRef {
            namespace: "ns".into(),
            name: "c".into(),
            uid: "uid-1".into(),
        }
    }

    fn record(checkpoint: &mut Checkpoint, device: &str, id: &str) {
        checkpoint.claims.insert(
            "uid-1".into(),
            PreparedClaim {
                namespace: "ns".into(),
                name: "c".into(),
                devices: vec![PreparedDevice {
                    request: "vf".into(),
                    pool: "worker-1/intel.com/sriov-net".into(),
                    device: device.into(),
                    id: id.into(),
                    resource_name: "intel.com/sriov_net".into(),
                    cdi_device_id: format!("sriov-rs.invalid/vf=uid-1-{device}"),
                }],
            },
        );
    }

    #[tokio::test]
    async fn a_checkpoint_naming_a_device_the_node_lost_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let mut checkpoint = Checkpoint::empty("sriov-rs.invalid", "worker-1");
        record(&mut checkpoint, "0000-3b-02-7", "0000:3b:02.7");
        checkpoint.save(&settings.checkpoint).unwrap();
        std::fs::create_dir_all(&settings.cdi_dir).unwrap();
        std::fs::write(settings.cdi_dir.join("sriov-dra-uid-1.json"), "{}").unwrap();

        let (mut preparer, mismatches) =
            Preparer::start(settings.clone(), inventory(&["0000:3b:02.0"])).unwrap();
        assert_eq!(mismatches.len(), 1);
        assert_eq!(mismatches[0].id, "0000:3b:02.7");
        assert_eq!(mismatches[0].now, None);
        assert!(mismatches[0].to_string().contains("no longer served"));

        // Prepare refuses it (per claim), Unprepare still cleans up.
        let answers = preparer.prepare(&Down, &[claim()]).await;
        let error = answers["uid-1"].as_ref().unwrap_err().to_string();
        assert!(
            error.contains("is not a device of node worker-1"),
            "{error}"
        );
        let answers = preparer.unprepare(&[claim()]);
        assert!(answers["uid-1"].is_ok());
        assert!(!settings.cdi_dir.join("sriov-dra-uid-1.json").exists());
        assert!(preparer.prepared().is_empty());
        let reread =
            Checkpoint::load(&settings.checkpoint, "sriov-rs.invalid", "worker-1").unwrap();
        assert!(reread.claims.is_empty());
    }

    #[test]
    fn specs_of_claims_not_in_the_checkpoint_go_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let mut checkpoint = Checkpoint::empty("sriov-rs.invalid", "worker-1");
        record(&mut checkpoint, "0000-3b-02-0", "0000:3b:02.0");
        checkpoint.save(&settings.checkpoint).unwrap();
        std::fs::create_dir_all(&settings.cdi_dir).unwrap();
        for name in [
            "sriov-dra-uid-1.json",
            "sriov-dra-uid-orphan.json",
            "sriov-dp-intel.com_x.json",
            "other.json",
        ] {
            std::fs::write(settings.cdi_dir.join(name), "{}").unwrap();
        }
        let (_preparer, mismatches) =
            Preparer::start(settings.clone(), inventory(&["0000:3b:02.0"])).unwrap();
        assert!(mismatches.is_empty());
        let mut left: Vec<String> = std::fs::read_dir(&settings.cdi_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other.json",
                "sriov-dp-intel.com_x.json",
                "sriov-dra-uid-1.json"
            ]
        );
    }

    #[tokio::test]
    async fn a_name_that_now_means_another_vf_is_a_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let (mut preparer, _) = Preparer::start(settings, inventory(&["0000:3b:02.0"])).unwrap();
        let mut checkpoint = Checkpoint::empty("sriov-rs.invalid", "worker-1");
        record(&mut checkpoint, "0000-3b-02-0", "0000:3b:02.1");
        preparer.checkpoint = checkpoint;
        let mismatches = preparer.set_inventory(inventory(&["0000:3b:02.0"]));
        assert_eq!(mismatches[0].now.as_deref(), Some("0000:3b:02.0"));
    }

    #[test]
    fn a_foreign_or_corrupt_checkpoint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        Checkpoint::empty("other.example.com", "worker-1")
            .save(&path)
            .unwrap();
        assert!(matches!(
            Checkpoint::load(&path, "sriov-rs.invalid", "worker-1"),
            Err(CheckpointError::Foreign { .. })
        ));
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            Checkpoint::load(&path, "sriov-rs.invalid", "worker-1"),
            Err(CheckpointError::Parse { .. })
        ));
        let missing = dir.path().join("absent.json");
        let empty = Checkpoint::load(&missing, "sriov-rs.invalid", "worker-1").unwrap();
        assert!(empty.claims.is_empty());
    }

    #[test]
    fn a_claim_prepared_meanwhile_ignores_its_fetched_view_and_an_unread_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let mut checkpoint = Checkpoint::empty("sriov-rs.invalid", "worker-1");
        record(&mut checkpoint, "0000-3b-02-0", "0000:3b:02.0");
        checkpoint.save(&settings.checkpoint).unwrap();
        let (mut preparer, _) = Preparer::start(settings, inventory(&["0000:3b:02.0"])).unwrap();
        assert!(preparer.to_fetch(&[claim()]).is_empty());
        // a view fetched before another call prepared it: a wrong UID that
        // would be refused, but the known claim is answered as recorded
        let stale: Fetched = [(
            "uid-1".to_string(),
            Ok(Some(ClaimView {
                uid: "uid-other".into(),
                devices: vec![],
                allocated: true,
            })),
        )]
        .into();
        let answers = preparer.prepare_fetched(&[claim()], stale, &InUse::new());
        assert_eq!(answers["uid-1"].as_ref().unwrap()[0].id, "0000:3b:02.0");
        let unread = ClaimRef {
            uid: "uid-2".into(),
            ..claim()
        };
        let to_fetch = preparer.to_fetch(std::slice::from_ref(&unread));
        assert_eq!(to_fetch.len(), 1);
        assert_eq!(to_fetch[0].uid, "uid-2");
        let answers = preparer.prepare_fetched(&[unread], Fetched::new(), &InUse::new());
        let error = answers["uid-2"].as_ref().unwrap_err().to_string();
        assert!(error.contains("not read"), "{error}");
    }

    #[tokio::test]
    async fn api_server_down_is_a_per_claim_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut preparer, _) =
            Preparer::start(settings(dir.path()), inventory(&["0000:3b:02.0"])).unwrap();
        let answers = preparer.prepare(&Down, &[claim()]).await;
        let error = answers["uid-1"].as_ref().unwrap_err().to_string();
        assert!(error.contains("connection refused"), "{error}");
    }
}
