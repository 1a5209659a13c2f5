//! The task that keeps this node's ResourceSlices as the DRA pools are:
//! node UID (the slices' owner), list, [`desired_slices`], [`reconcile`],
//! write. It never blocks the daemon's loop (the daemon only sends the
//! pools on a `watch`) and never ends on an API error:
//!
//! - `Conflict` (someone wrote in between): list again and redo at once;
//! - `Unavailable` (API server down, not up yet): again after a capped
//!   exponential backoff;
//! - `Refused` (RBAC, an invalid slice: a bug or a deploy error) and pools
//!   that cannot be named: logged, tried again at the next change or
//!   periodic pass.
//!
//! It publishes again when the pools change, when told to (the kubelet
//! registered the plugin again: a restarted kubelet deletes the node's
//! slices) and every `every` as a safety net (a kubelet restart we did not
//! notice, slices deleted by hand).

use super::api::{ApiError, DraApi};
use super::publish::{desired_slices, reconcile, Generations};
use super::slices::{NodeRef, SliceContext, SliceError};
use crate::deviceplugin::register::Backoff;
use crate::pool::Pool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// What to publish: the DRA pools (only the devices to offer: kept
/// devices are left out) and the PCIe root of each function.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishSet {
    pub pools: Vec<Pool>,
    /// PCI address → PCIe root (see [`super::topology::pcie_roots`]).
    pub pcie_roots: HashMap<String, String>,
}

/// The default of the periodic re-list.
pub const DEFAULT_REPUBLISH_EVERY: Duration = Duration::from_secs(60);

/// How many conflicts in a row one pass takes before it waits.
const MAX_CONFLICTS: u32 = 5;

/// The outcome of the last pass, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishState {
    /// Not tried yet.
    Pending,
    /// The API server holds what the pools were at this pass.
    Published { slices: usize },
    /// The last pass failed; the next is scheduled.
    Failed(String),
}

pub struct Publisher {
    pub api: Arc<dyn DraApi>,
    pub driver: String,
    pub node: String,
    pub set: watch::Receiver<Arc<PublishSet>>,
    /// Publish again now (the kubelet re-registered the plugin).
    pub republish: Arc<Notify>,
    pub every: Option<Duration>,
    pub stop: watch::Receiver<bool>,
    pub state: watch::Sender<PublishState>,
}

/// Why a pass did not finish.
enum PassError {
    Api(ApiError),
    Slices(SliceError),
    Conflicts(String),
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Api(error) => error.fmt(f),
            PassError::Slices(error) => error.fmt(f),
            PassError::Conflicts(last) => {
                write!(f, "{MAX_CONFLICTS} conflicts in a row, the last: {last}")
            }
        }
    }
}

impl Publisher {
    pub async fn run(mut self) {
        let mut generations = Generations::default();
        let mut backoff = Backoff::default();
        let mut periodic = self.every.map(|every| {
            let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            clock
        });
        // the first pass at once
        let mut retry_in: Option<Duration> = Some(Duration::ZERO);
        loop {
            let retry = async {
                match retry_in {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
            };
            let tick = async {
                match periodic.as_mut() {
                    Some(clock) => drop(clock.tick().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.stop.wait_for(|s| *s) => return,
                changed = self.set.changed() => if changed.is_err() { return },
                _ = self.republish.notified() => {
                    tracing::info!(driver = %self.driver, "publishing the ResourceSlices again (plugin registered)");
                }
                _ = tick => tracing::debug!(driver = %self.driver, "periodic ResourceSlice check"),
                _ = retry => {}
            }
            let set = self.set.borrow_and_update().clone();
            retry_in = match self.pass(&set, &mut generations).await {
                Ok(slices) => {
                    backoff.reset();
                    self.state.send_replace(PublishState::Published { slices });
                    None
                }
                Err(error) => {
                    let delay = match &error {
                        PassError::Api(ApiError::Unavailable(_)) | PassError::Conflicts(_) => {
                            Some(backoff.next_delay())
                        }
                        // not fixed by retrying soon: the next change or
                        // periodic pass tries again
                        PassError::Api(_) | PassError::Slices(_) => None,
                    };
                    tracing::warn!(driver = %self.driver, node = %self.node, %error, retry_in = ?delay, "ResourceSlices not published");
                    self.state
                        .send_replace(PublishState::Failed(error.to_string()));
                    delay
                }
            };
        }
    }

    /// One pass: the slices of `set` written, relisting after a conflict.
    /// Returns how many slices the node has now.
    async fn pass(
        &self,
        set: &PublishSet,
        generations: &mut Generations,
    ) -> Result<usize, PassError> {
        // asked every pass: a Node deleted and created again has a new UID
        let uid = self
            .api
            .node_uid(&self.node)
            .await
            .map_err(PassError::Api)?;
        let node = NodeRef {
            name: self.node.clone(),
            uid,
        };
        let ctx = SliceContext {
            driver: &self.driver,
            node: &node,
            pcie_roots: &set.pcie_roots,
        };
        let pools: Vec<&Pool> = set.pools.iter().collect();
        let mut last_conflict = String::new();
        for _ in 0..MAX_CONFLICTS {
            let published = self
                .api
                .list_slices(&self.node, &self.driver)
                .await
                .map_err(PassError::Api)?;
            let desired =
                desired_slices(&ctx, &pools, &published, generations).map_err(PassError::Slices)?;
            let count = desired.len();
            let actions = reconcile(&published, desired);
            let writes = actions.len();
            let mut conflict = None;
            for action in actions {
                match self.api.write_slice(action).await {
                    Ok(()) => {}
                    Err(ApiError::Conflict(message)) => {
                        conflict = Some(message);
                        break;
                    }
                    Err(error) => return Err(PassError::Api(error)),
                }
            }
            match conflict {
                None => {
                    if writes > 0 {
                        tracing::info!(driver = %self.driver, node = %self.node, slices = count, writes, "ResourceSlices published");
                    }
                    return Ok(count);
                }
                Some(message) => {
                    tracing::debug!(driver = %self.driver, %message, "conflict: listing again");
                    last_conflict = message;
                }
            }
        }
        Err(PassError::Conflicts(last_conflict))
    }
}
