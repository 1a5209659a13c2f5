//! The DRA kubelet plugin as the daemon runs it, beside the device plugin
//! pools: the DRA pools' devices known to the [`Preparer`] (kept current on
//! every reconcile), the `DRAPlugin` socket with the health stream, the
//! plugin-watcher registration (recreated when the kubelet's registry dir
//! loses it), and the [`Publisher`] of the node's ResourceSlices.
//!
//! The daemon owns one [`DraNode`] while its config has a DRA pool and
//! hands it the DRA pools after each reconcile ([`DraNode::set_pools`]) and
//! after each link change ([`DraNode::refresh_health`]).

use super::api::DraApi;
use super::checkpoint::CheckpointError;
use super::inventory::DraInventory;
use super::names::{is_dns_subdomain, is_driver_name};
use super::prepare::{PrepareSettings, Preparer};
use super::publisher::{PublishSet, PublishState, Publisher};
use super::service::{
    dra_router, dra_socket_path, registration_router, registration_socket_path, DeviceHealthReport,
    DraHealthService, DraPluginService, DraRegistration,
};
use crate::deviceplugin::dirwatch::{watch_dir, DirEvent};
use crate::deviceplugin::files;
use crate::deviceplugin::link_health::{self, LinkStates};
use crate::deviceplugin::register::Backoff;
use crate::deviceplugin::served::ServedPool;
use crate::kubelet_api::uds::{self, UdsError, UdsListener};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Mutex, Notify, OwnedMutexGuard};

/// Builds the API handle when the config first has a DRA pool, so that a
/// daemon without one never needs an API server (nor RBAC). The binary
/// passes the kube client's `connect`; tests pass the stand-in.
#[derive(Clone)]
pub struct ApiConnector(Arc<dyn Fn() -> ConnectFuture + Send + Sync>);

/// What connecting gives: the handle, or why not (a message for the log
/// and the refused reload).
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn DraApi>, String>> + Send>>;

impl ApiConnector {
    pub fn new(connect: impl Fn() -> ConnectFuture + Send + Sync + 'static) -> Self {
        ApiConnector(Arc::new(connect))
    }

    /// An API handle built already (tests: the stand-in).
    pub fn ready(api: Arc<dyn DraApi>) -> Self {
        ApiConnector::new(move || {
            let api = api.clone();
            Box::pin(async move { Ok(api) })
        })
    }

    async fn connect(&self) -> Result<Arc<dyn DraApi>, String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for ApiConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiConnector")
    }
}

/// The daemon's DRA settings (flags `--dra-driver-name`, `--dra-plugin-path`,
/// `--node-name`, `--kubeconfig` through `api`).
#[derive(Debug, Clone)]
pub struct DraSettings {
    /// The driver name, a DNS subdomain of at most 63 characters.
    pub driver: String,
    /// This node's name; needed only once a DRA pool is configured.
    pub node: Option<String>,
    /// `--dra-plugin-path`: `<dir>/<driver>/dra.sock` and the checkpoint.
    pub plugin_dir: PathBuf,
    pub api: ApiConnector,
    /// The publisher's safety-net re-list; None: only on changes and
    /// re-registrations.
    pub republish_every: Option<Duration>,
}

/// The prepared-claims checkpoint: `<plugin dir>/<driver>/checkpoint.json`.
pub fn checkpoint_path(plugin_dir: &Path, driver: &str) -> PathBuf {
    plugin_dir.join(driver).join("checkpoint.json")
}

/// Where the DRA side writes, from the daemon's settings.
#[derive(Debug, Clone)]
pub struct DraPaths {
    /// `--plugins-registry-path`
    pub registry_dir: PathBuf,
    pub cdi_dir: PathBuf,
    pub devinfo_dir: PathBuf,
    /// The kubelet's PodResources socket (Prepare's check of VFs held
    /// through the device plugin); None: not asked.
    pub pod_resources_socket: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DraError {
    #[error(
        "DRA driver name {0:?} is not a DNS subdomain of at most 63 characters (--dra-driver-name)"
    )]
    DriverName(String),
    #[error("DRA pools need this node's name: --node-name or NODE_NAME")]
    NoNodeName,
    #[error("node name {0:?} is not a DNS subdomain (--node-name or NODE_NAME)")]
    NodeName(String),
    #[error("connecting to the API server for the DRA pools: {0}")]
    Connect(String),
    #[error("DRA prepared claims: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("DRA plugin directory {path}: {source}")]
    PluginDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DRA plugin socket: {0}")]
    Socket(#[from] UdsError),
}

impl DraSettings {
    /// The driver name as the API server would take it.
    pub fn check_driver(&self) -> Result<(), DraError> {
        match is_driver_name(&self.driver) {
            true => Ok(()),
            false => Err(DraError::DriverName(self.driver.clone())),
        }
    }

    /// The node name, required once a DRA pool is configured.
    pub fn node_name(&self) -> Result<&str, DraError> {
        let node = self.node.as_deref().ok_or(DraError::NoNodeName)?;
        match is_dns_subdomain(node) {
            true => Ok(node),
            false => Err(DraError::NodeName(node.to_owned())),
        }
    }
}

/// Each DRA pool as served, by resource name.
type ShownPools = BTreeMap<String, Arc<ServedPool>>;

/// What a metrics scrape reads of the DRA side: the pools as served and
/// the claims prepared on them. Cheap to clone.
#[derive(Clone)]
pub struct DraPoolsView {
    driver: String,
    node: String,
    pools: watch::Receiver<Arc<ShownPools>>,
    preparer: Arc<Mutex<Preparer>>,
}

impl DraPoolsView {
    pub fn driver(&self) -> &str {
        &self.driver
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The DRA pools as served now.
    pub fn pools(&self) -> Vec<Arc<ServedPool>> {
        self.pools.borrow().values().cloned().collect()
    }

    /// (resource name, device ID) → the namespace of the prepared claim
    /// that holds it.
    pub async fn prepared_devices(&self) -> BTreeMap<(String, String), String> {
        let preparer = self.preparer.lock().await;
        preparer
            .prepared_devices()
            .map(|(claim, device)| {
                (
                    (device.resource_name.clone(), device.id.clone()),
                    claim.namespace.clone(),
                )
            })
            .collect()
    }
}

/// The prepared claims held still for one reconcile: no Prepare or
/// Unprepare runs from reading what is prepared ([`Self::by_resource`])
/// until the new inventory is in place ([`DraNode::set_pools`]), so a
/// claim cannot be prepared on a VF that this reconcile is moving to the
/// device plugin.
pub struct PreparedLock(OwnedMutexGuard<Preparer>);

impl PreparedLock {
    /// Resource name → device IDs of the claims prepared and not yet
    /// unprepared: what pods hold through DRA.
    pub fn by_resource(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut prepared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, device) in self.0.prepared_devices() {
            prepared
                .entry(device.resource_name.clone())
                .or_default()
                .insert(device.id.clone());
        }
        prepared
    }
}

/// Grace for the servers to stop at shutdown.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The DRA side of a running daemon.
pub struct DraNode {
    driver: String,
    node: String,
    paths: DraPaths,
    preparer: Arc<Mutex<Preparer>>,
    health: watch::Sender<Arc<Vec<DeviceHealthReport>>>,
    publish: watch::Sender<Arc<PublishSet>>,
    publish_state: watch::Receiver<PublishState>,
    registered: Arc<AtomicBool>,
    /// Each DRA pool before link health, by resource name.
    base: BTreeMap<String, ServedPool>,
    /// Each DRA pool as served (link health on top); a `watch` so that
    /// metrics scrapes read it without the daemon's loop.
    shown: watch::Sender<Arc<ShownPools>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: PathBuf,
}

impl DraNode {
    /// Connect to the API server, load the prepared claims, serve the DRA
    /// socket, register with the plugin watcher and start publishing.
    /// `pools` are the DRA pools before link health, `publish` what to
    /// publish of them; None: nothing is published until the first
    /// [`DraNode::set_pools`] (slices a previous run published stay).
    pub async fn start(
        settings: &DraSettings,
        paths: DraPaths,
        pools: Vec<ServedPool>,
        links: Option<&LinkStates>,
        publish: Option<PublishSet>,
    ) -> Result<DraNode, DraError> {
        settings.check_driver()?;
        let node = settings.node_name()?.to_owned();
        let api = settings.api.connect().await.map_err(DraError::Connect)?;
        let driver = settings.driver.clone();
        let own_dir = settings.plugin_dir.join(&driver);
        std::fs::create_dir_all(&own_dir).map_err(|source| DraError::PluginDir {
            path: own_dir.clone(),
            source,
        })?;
        let (base, shown) = with_health(pools, links);
        let inventory = DraInventory::new(&node, &shown.values().cloned().collect::<Vec<_>>());
        let (preparer, mismatches) = Preparer::start(
            PrepareSettings {
                driver: driver.clone(),
                node: node.clone(),
                cdi_dir: paths.cdi_dir.clone(),
                devinfo_dir: paths.devinfo_dir.clone(),
                checkpoint: checkpoint_path(&settings.plugin_dir, &driver),
            },
            inventory,
        )?;
        report_mismatches(&mismatches);
        remove_unprepared_device_info(&paths.devinfo_dir, &shown, &preparer);
        let reports = health_reports(&node, &shown);
        let (health, health_rx) = watch::channel(Arc::new(reports));
        let preparer = Arc::new(Mutex::new(preparer));
        let (stop, stop_rx) = watch::channel(false);
        let socket = dra_socket_path(&settings.plugin_dir, &driver);
        let listener = UdsListener::bind(&socket)?;
        let plugin = DraPluginService {
            preparer: preparer.clone(),
            claims: Arc::new(api.clone()),
            pod_resources: paths.pod_resources_socket.clone(),
        };
        let router = dra_router(plugin, Some(DraHealthService { reports: health_rx }));
        let mut tasks = Vec::new();
        let mut server_stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(error) = uds::serve(router, listener, shutdown).await {
                tracing::error!(%error, "DRA plugin server failed");
            }
        }));
        tracing::info!(driver = %driver, node = %node, socket = %socket.display(), "serving the DRA plugin");

        let republish = Arc::new(Notify::new());
        let registered = Arc::new(AtomicBool::new(false));
        let (events, _) = broadcast::channel(64);
        let registrar = Registrar {
            registration: DraRegistration {
                driver: driver.clone(),
                endpoint: socket.display().to_string(),
                health: true,
                verdicts: mpsc::unbounded_channel().0,
            },
            socket: registration_socket_path(&paths.registry_dir, &driver),
            events: events.subscribe(),
            stop: stop_rx.clone(),
            republish: republish.clone(),
            registered: registered.clone(),
        };
        tasks.push(tokio::spawn(watch_dir(
            paths.registry_dir.clone(),
            events,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(registrar.run()));

        let first_pass = publish.is_some();
        let (publish_tx, publish_rx) = watch::channel(Arc::new(publish.unwrap_or_default()));
        let (state_tx, publish_state) = watch::channel(PublishState::Pending);
        let publisher = Publisher {
            api,
            driver: driver.clone(),
            node: node.clone(),
            set: publish_rx,
            republish,
            every: settings.republish_every,
            first_pass,
            stop: stop_rx,
            state: state_tx,
        };
        tasks.push(tokio::spawn(publisher.run()));
        let dra = DraNode {
            driver,
            node,
            paths,
            preparer,
            health,
            publish: publish_tx,
            publish_state,
            registered,
            base,
            shown: watch::channel(Arc::new(shown)).0,
            stop,
            tasks,
            socket,
        };
        dra.refresh_prepared_files().await;
        Ok(dra)
    }

    pub fn driver(&self) -> &str {
        &self.driver
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The DRA pools as served now (link health on top).
    pub fn served(&self) -> Vec<Arc<ServedPool>> {
        self.shown.borrow().values().cloned().collect()
    }

    /// The pools and prepared claims, for metrics scrapes.
    pub fn pools_view(&self) -> DraPoolsView {
        DraPoolsView {
            driver: self.driver.clone(),
            node: self.node.clone(),
            pools: self.shown.subscribe(),
            preparer: self.preparer.clone(),
        }
    }

    /// Whether the kubelet's plugin watcher has registered us, as it
    /// changes: for the readiness probe.
    pub fn registration_flag(&self) -> Arc<AtomicBool> {
        self.registered.clone()
    }

    /// Each publishing pass's outcome from now on, for the readiness probe.
    pub fn publish_states(&self) -> watch::Receiver<PublishState> {
        self.publish_state.clone()
    }

    /// The prepared claims, held still until [`DraNode::set_pools`] gets
    /// the lock back (Prepare and Unprepare wait meanwhile).
    pub async fn lock_prepared(&self) -> PreparedLock {
        PreparedLock(self.preparer.clone().lock_owned().await)
    }

    /// The DRA pools after a reconcile: the preparer serves exactly these
    /// devices from now on (a Prepare for one that left is that claim's
    /// error) and the health stream lists them; `prepared` is released
    /// once the inventory is in place. What is published changes only at
    /// [`DraNode::publish`].
    pub fn set_pools(
        &mut self,
        pools: Vec<ServedPool>,
        links: Option<&LinkStates>,
        mut prepared: PreparedLock,
    ) {
        let (base, shown) = with_health(pools, links);
        self.base = base;
        if shown != **self.shown.borrow() {
            let reports = health_reports(&self.node, &shown);
            self.shown.send_replace(Arc::new(shown));
            let inventory = DraInventory::new(&self.node, &self.served());
            let mismatches = prepared.0.set_inventory(inventory);
            report_mismatches(&mismatches);
            self.health.send_replace(Arc::new(reports));
        }
    }

    /// Hand `publish` to the publisher, and write the prepared claims'
    /// device-info files again (the device plugin side may have removed
    /// files of the same names when a pool moved: prepared claims keep
    /// theirs).
    pub async fn publish(&self, publish: PublishSet) {
        self.publish.send_if_modified(|current| {
            let changed = **current != publish;
            if changed {
                *current = Arc::new(publish);
            }
            changed
        });
        self.refresh_prepared_files().await;
    }

    /// Links changed: the health stream gets the DRA pools' new health.
    /// The preparer keeps its inventory: health changes no device's
    /// identity, and Prepare does not look at it.
    pub fn refresh_health(&mut self, links: &LinkStates) {
        let shown: ShownPools = self
            .base
            .iter()
            .map(|(name, pool)| (name.clone(), Arc::new(link_health::apply(pool, links))))
            .collect();
        if shown == **self.shown.borrow() {
            return;
        }
        self.health
            .send_replace(Arc::new(health_reports(&self.node, &shown)));
        self.shown.send_replace(Arc::new(shown));
    }

    async fn refresh_prepared_files(&self) {
        for error in self.preparer.lock().await.rewrite_files() {
            tracing::debug!(%error, "prepared claim's files not rewritten");
        }
    }

    /// Stop serving: the sockets go; prepared claims, their files and the
    /// published slices stay (pods still use them; a restarted daemon
    /// answers from the checkpoint).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
        for socket in [
            self.socket,
            registration_socket_path(&self.paths.registry_dir, &self.driver),
        ] {
            if let Err(error) = files::remove_if_present(&socket) {
                tracing::warn!(%error, "cannot remove a DRA socket");
            }
        }
        tracing::info!(driver = %self.driver, "DRA plugin stopped");
    }
}

fn with_health(
    pools: Vec<ServedPool>,
    links: Option<&LinkStates>,
) -> (
    BTreeMap<String, ServedPool>,
    BTreeMap<String, Arc<ServedPool>>,
) {
    let shown = pools
        .iter()
        .map(|pool| {
            let shown = match links {
                Some(links) => link_health::apply(pool, links),
                None => pool.clone(),
            };
            (pool.resource_name.clone(), Arc::new(shown))
        })
        .collect();
    let base = pools
        .into_iter()
        .map(|p| (p.resource_name.clone(), p))
        .collect();
    (base, shown)
}

fn health_reports(
    node: &str,
    shown: &BTreeMap<String, Arc<ServedPool>>,
) -> Vec<DeviceHealthReport> {
    let pools: Vec<Arc<ServedPool>> = shown.values().cloned().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    DraInventory::new(node, &pools).health_reports(now)
}

fn report_mismatches(mismatches: &[super::checkpoint::Mismatch]) {
    for m in mismatches {
        let now = m.now.as_deref().unwrap_or("nothing");
        tracing::warn!(claim_uid = %m.claim_uid, pool = %m.pool, device = %m.device, recorded = %m.id, now, "a prepared claim's device is not served as recorded: Prepare refuses that claim, Unprepare still cleans it up");
    }
}

/// Device-info files an earlier run left for the DRA pools' devices that
/// no prepared claim holds (the device plugin side does the same for its
/// pools at start).
fn remove_unprepared_device_info(
    dir: &Path,
    shown: &BTreeMap<String, Arc<ServedPool>>,
    preparer: &Preparer,
) {
    for pool in shown.values() {
        let prepared: BTreeSet<&str> = preparer
            .prepared_devices()
            .filter(|(_, d)| d.resource_name == pool.resource_name)
            .map(|(_, d)| d.id.as_str())
            .collect();
        let keep = pool
            .devices
            .iter()
            .filter(|d| prepared.contains(d.id.as_str()))
            .cloned()
            .collect();
        for error in files::remove_stale_device_info(dir, &pool.with_devices(keep)) {
            tracing::warn!(pool = %pool.resource_name, %error, "cannot remove a stale device-info file");
        }
    }
}

/// The registration socket's life: bind, serve, and bind again when the
/// kubelet's registry directory loses it (a wiped or recreated directory)
/// or the kubelet refuses us; every successful registration makes the
/// publisher check the slices (a restarted kubelet deleted them).
struct Registrar {
    registration: DraRegistration,
    socket: PathBuf,
    events: broadcast::Receiver<DirEvent>,
    stop: watch::Receiver<bool>,
    republish: Arc<Notify>,
    registered: Arc<AtomicBool>,
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

enum Next {
    Stop,
    Rebind(Duration),
}

impl Registrar {
    async fn run(mut self) {
        let name = self
            .socket
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut backoff = Backoff::default();
        loop {
            if *self.stop.borrow() {
                return;
            }
            let listener = match UdsListener::bind(&self.socket) {
                Ok(listener) => listener,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, retry_in = ?delay, "cannot listen on the DRA registration socket");
                    if self.sleep_or_stop(delay).await {
                        return;
                    }
                    continue;
                }
            };
            let ours = inode(&self.socket);
            let (verdicts, mut heard) = mpsc::unbounded_channel();
            let registration = DraRegistration {
                verdicts,
                ..self.registration.clone()
            };
            let (server_stop, mut server_stopping) = watch::channel(false);
            let server = tokio::spawn(uds::serve(
                registration_router(registration),
                listener,
                async move {
                    let _ = server_stopping.wait_for(|s| *s).await;
                },
            ));
            tracing::info!(socket = %self.socket.display(), "DRA registration socket ready for the plugin watcher");
            let still_ours = |socket: &Path| ours.is_some() && inode(socket) == ours;
            let next = loop {
                tokio::select! {
                    _ = self.stop.wait_for(|s| *s) => break Next::Stop,
                    verdict = heard.recv() => match verdict {
                        Some(v) if v.plugin_registered => {
                            self.registered.store(true, Ordering::Relaxed);
                            backoff.reset();
                            self.republish.notify_one();
                        }
                        Some(v) => {
                            self.registered.store(false, Ordering::Relaxed);
                            let delay = backoff.next_delay();
                            tracing::error!(error = %v.error, retry_in = ?delay, "kubelet refused the DRA plugin; recreating the registration socket");
                            break Next::Rebind(delay);
                        }
                        None => break Next::Rebind(backoff.next_delay()),
                    },
                    event = self.events.recv() => match event {
                        Ok(DirEvent::Removed(removed)) if removed == name && !still_ours(&self.socket) => {
                            tracing::warn!("the DRA registration socket was removed (kubelet restart?): serving it again");
                            break Next::Rebind(Duration::ZERO);
                        }
                        Ok(DirEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) if !still_ours(&self.socket) => {
                            break Next::Rebind(Duration::ZERO);
                        }
                        Err(broadcast::error::RecvError::Closed) => break Next::Stop,
                        _ => {}
                    },
                }
            };
            self.registered.store(false, Ordering::Relaxed);
            let _ = server_stop.send(true);
            let mut server = server;
            if tokio::time::timeout(STOP_GRACE, &mut server).await.is_err() {
                server.abort();
            }
            // gone before the pause: the plugin watcher sees it come back
            if still_ours(&self.socket) {
                let _ = std::fs::remove_file(&self.socket);
            }
            match next {
                Next::Stop => return,
                Next::Rebind(delay) => {
                    if self.sleep_or_stop(delay).await {
                        return;
                    }
                }
            }
        }
    }

    async fn sleep_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = self.stop.wait_for(|s| *s) => true,
        }
    }
}
