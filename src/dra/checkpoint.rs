//! The prepared claims, on disk: written atomically after every change and
//! read back at start, so a restarted daemon answers Prepare and Unprepare
//! as before. A checkpoint is checked against the node, not trusted: a
//! device it names that the node no longer serves is reported.

use super::inventory::DraInventory;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Bumped when the format changes incompatibly; another version is refused.
pub const CHECKPOINT_VERSION: u32 = 1;

/// One device of a prepared claim, with everything Unprepare needs even
/// when the device has left the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreparedDevice {
    pub request: String,
    /// DRA pool and device name, as the allocation names them.
    pub pool: String,
    pub device: String,
    /// The device's ID in its pool (PCI address) and the pool's resource name.
    pub id: String,
    pub resource_name: String,
    pub cdi_device_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedClaim {
    pub namespace: String,
    pub name: String,
    pub devices: Vec<PreparedDevice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub driver: String,
    pub node: String,
    /// Keyed by claim UID.
    pub claims: BTreeMap<String, PreparedClaim>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("read checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("checkpoint {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "checkpoint {path} has version {found}, this daemon reads version {CHECKPOINT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("checkpoint {path} belongs to driver {driver} on node {node}")]
    Foreign {
        path: PathBuf,
        driver: String,
        node: String,
    },
    #[error("write checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A prepared device the node does not serve (any more) as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub claim_uid: String,
    pub pool: String,
    pub device: String,
    /// What the checkpoint says the device is.
    pub id: String,
    /// What the node serves under that name now, if anything.
    pub now: Option<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.now {
            None => write!(
                f,
                "claim {}: prepared device {}/{} ({}) is no longer served by this node",
                self.claim_uid, self.pool, self.device, self.id
            ),
            Some(now) => write!(
                f,
                "claim {}: prepared device {}/{} was {}, the node now serves {} under that name",
                self.claim_uid, self.pool, self.device, self.id, now
            ),
        }
    }
}

impl Checkpoint {
    pub fn empty(driver: &str, node: &str) -> Self {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            driver: driver.to_owned(),
            node: node.to_owned(),
            claims: BTreeMap::new(),
        }
    }

    /// Read `path`; a missing file is an empty checkpoint. One written for
    /// another driver or node is refused rather than acted on.
    pub fn load(path: &Path, driver: &str, node: &str) -> Result<Self, CheckpointError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::empty(driver, node)),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let checkpoint: Checkpoint =
            serde_json::from_slice(&text).map_err(|source| CheckpointError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if checkpoint.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version {
                path: path.to_owned(),
                found: checkpoint.version,
            });
        }
        if checkpoint.driver != driver || checkpoint.node != node {
            return Err(CheckpointError::Foreign {
                path: path.to_owned(),
                driver: checkpoint.driver,
                node: checkpoint.node,
            });
        }
        Ok(checkpoint)
    }

    /// Write atomically (temp file + rename), creating the directory.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let write_error = |source| CheckpointError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_error)?;
        }
        // serializing plain strings and maps cannot fail
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::atomic_file::write(path, &bytes, 0o600).map_err(write_error)
    }

    /// Every recorded device the inventory does not serve as recorded.
    pub fn mismatches(&self, inventory: &DraInventory) -> Vec<Mismatch> {
        self.claims
            .iter()
            .flat_map(|(uid, claim)| claim.devices.iter().map(move |d| (uid, d)))
            .filter_map(|(uid, d)| {
                let now = inventory.get(&d.pool, &d.device).map(|n| n.id.clone());
                (now.as_deref() != Some(d.id.as_str())).then(|| Mismatch {
                    claim_uid: uid.clone(),
                    pool: d.pool.clone(),
                    device: d.device.clone(),
                    id: d.id.clone(),
                    now,
                })
            })
            .collect()
    }
}
