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
    /// Publish `set` at once; false: wait for the first change of `set`
    /// (its first value is not known yet).
    pub first_pass: bool,
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
        let mut retry_in: Option<Duration> = self.first_pass.then_some(Duration::ZERO);
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
                    // deleted since listed (a restarting kubelet wipes the
                    // node's slices): as a conflict, list again at once
                    Err(ApiError::Conflict(message) | ApiError::NotFound(message)) => {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dra::standin::ApiServerStandin;
    use crate::pool::PoolDevice;

    const NODE: &str = "worker-1";
    const DRIVER: &str = "sriov-rs.invalid";

    fn vf(i: u32) -> PoolDevice {
        let id = format!(
            "0000:{:02x}:{:02x}.{}",
            0x3b + i / 128,
            (i % 128) / 8,
            i % 8
        );
        PoolDevice {
            vf_index: Some(i),
            ..crate::pool::test_vf(&id)
        }
    }

    fn set(vfs: u32) -> Arc<PublishSet> {
        Arc::new(PublishSet {
            pools: vec![Pool {
                resource_name: "intel.com/sriov_net".into(),
                device_type: "netDevice",
                exclude_topology: false,
                allocation_policy: None,
                resource: 0,
                devices: (0..vfs).map(vf).collect(),
            }],
            pcie_roots: HashMap::new(),
        })
    }

    /// Slice count per generation and devices per slice, as listed.
    fn published(api: &ApiServerStandin) -> Vec<(i64, i64, usize)> {
        api.list_slices(Some(NODE), Some(DRIVER))
            .iter()
            .map(|s| {
                (
                    s.spec.pool.generation,
                    s.spec.pool.resource_slice_count,
                    s.spec.devices.as_ref().map_or(0, Vec::len),
                )
            })
            .collect()
    }

    async fn until(
        state: &mut watch::Receiver<PublishState>,
        what: impl Fn(&PublishState) -> bool,
    ) {
        tokio::time::timeout(Duration::from_secs(10), state.wait_for(|s| what(s)))
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn publishes_in_chunks_retries_a_late_api_server_and_relists_periodically() {
        let api = ApiServerStandin::new();
        api.set_down(true);
        let (set_tx, set_rx) = watch::channel(set(300));
        let (state_tx, mut state) = watch::channel(PublishState::Pending);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(
            Publisher {
                api: Arc::new(api.clone()),
                driver: DRIVER.into(),
                node: NODE.into(),
                set: set_rx,
                republish: Arc::new(Notify::new()),
                every: Some(Duration::from_millis(200)),
                first_pass: true,
                stop: stop_rx,
                state: state_tx,
            }
            .run(),
        );
        // down: failed, retried with backoff, never ends the task
        until(
            &mut state,
            |s| matches!(s, PublishState::Failed(e) if e.contains("unavailable")),
        )
        .await;
        // up, but the Node is unknown: refused (and said so) until it exists
        api.set_down(false);
        until(
            &mut state,
            |s| matches!(s, PublishState::Failed(e) if e.contains("not found")),
        )
        .await;
        api.put_node(NODE, "node-uid");
        // the periodic pass picks it up: 300 VFs are 3 slices
        until(&mut state, |s| *s == PublishState::Published { slices: 3 }).await;
        assert_eq!(published(&api), [(1, 3, 128), (1, 3, 128), (1, 3, 44)]);

        // slices deleted behind our back (a kubelet restart we missed): the
        // periodic re-list puts them back, one generation on
        api.delete_node_slices(NODE);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while published(&api).is_empty() {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(published(&api), [(2, 3, 128), (2, 3, 128), (2, 3, 44)]);

        // the pool shrinks: one slice, the next generation
        set_tx.send_replace(set(100));
        until(&mut state, |s| *s == PublishState::Published { slices: 1 }).await;
        assert_eq!(published(&api), [(3, 1, 100)]);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
