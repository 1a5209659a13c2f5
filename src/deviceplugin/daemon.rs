//! The daemon: config + discovery → served pools → one runner per pool,
//! the files that go with them, reloads, and a clean shutdown.

use super::allocate::CdiMode;
use super::configwatch::ConfigWatch;
use super::dirwatch::{watch_dir, DirEvent};
use super::files;
use super::held::{self, DraHoldings, HeldDevices, Holdings, Retained};
use super::link_health::{self, LinkStates};
use super::metrics::{ErrorKind, Metrics, ReloadOutcome, VfSampler};
use super::node_watch::{self, NodeEvent};
use super::probes::{self, ProbeState};
use super::provisioning::{
    DraCheckpoint, NodePolicySource, Provisioner, ProvisioningError, ProvisioningStatus, Trigger,
};
use super::runner::{Registration, Runner};
use super::served::{serve_pool, HostFacts, PoolOwners, ServedPool};
use super::service::DeviceOwners;
use crate::config::{self, AllocationApi, ConfigError};
use crate::dra::node_plugin::{
    checkpoint_path, DraError, DraNode, DraPaths, DraSettings, PreparedLock,
};
use crate::dra::publisher::PublishSet;
use crate::pool::{self, Pool};
use crate::sysfs::{SysfsError, SysfsRoot};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};

/// Which registration mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMode {
    /// Upstream's rule: the plugin watcher if its directory exists, else `kubelet.sock`.
    Auto,
    KubeletSocket,
    PluginsRegistry,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub config_file: PathBuf,
    pub resource_prefix: String,
    pub sysfs: SysfsRoot,
    /// Root under which `/dev` nodes are checked (`/` on a node).
    pub dev_root: PathBuf,
    pub device_plugin_dir: PathBuf,
    pub plugins_registry_dir: PathBuf,
    pub registration: RegistrationMode,
    pub devinfo_dir: PathBuf,
    pub cdi: CdiMode,
    pub cdi_spec_dir: PathBuf,
    /// Netdevs carrying the default route; None asks the kernel (tests pin it).
    pub default_route_netdevs: Option<Vec<String>>,
    /// Where to serve `/healthz` and `/readyz`; None: no health endpoint.
    pub health_addr: Option<std::net::SocketAddr>,
    /// The kubelet's PodResources socket, asked which devices pods hold
    /// before a reload drops or moves one; None: never asked.
    pub pod_resources_socket: Option<PathBuf>,
    /// While devices are kept for pods, how often PodResources is asked
    /// whether they were released.
    pub held_recheck: Duration,
    /// Watch the config file's directory and reload on a change (a
    /// ConfigMap's `..data` swap, an edit), as SIGHUP does; the node
    /// policy's directory too.
    pub watch_config: bool,
    /// Follow the node as it changes: link state (device health) from
    /// rtnetlink, PCI devices from kernel uevents (see [`node_watch`]).
    pub watch_node: bool,
    /// Devices follow their links' state (unless their pool opts out).
    pub link_health: bool,
    /// A rescan this often whatever events said: the safety net for lost
    /// events. None: never.
    pub rescan_interval: Option<Duration>,
    /// Provision VFs from this node policy before serving, and again when
    /// it changes (see [`super::provisioning`]). None: the VFs are as
    /// someone else made them.
    pub node_policy: Option<NodePolicySource>,
    /// How often the VF counters are read for `/metrics` (only while the
    /// HTTP endpoint is served); see [`super::metrics`].
    pub vf_counters_interval: Duration,
    /// Serving pools with `"allocationApi": "dra"` (docs/dra.md); None: such
    /// a pool refuses the config.
    pub dra: Option<DraSettings>,
}

/// Default of [`Settings::held_recheck`].
pub const DEFAULT_HELD_RECHECK: Duration = Duration::from_secs(5);

impl Settings {
    pub fn resolve_registration(&self) -> Registration {
        let watcher = match self.registration {
            RegistrationMode::Auto => self.plugins_registry_dir.is_dir(),
            RegistrationMode::KubeletSocket => false,
            RegistrationMode::PluginsRegistry => true,
        };
        if watcher {
            Registration::PluginsRegistry {
                dir: self.plugins_registry_dir.clone(),
            }
        } else {
            Registration::KubeletSocket {
                dir: self.device_plugin_dir.clone(),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}: no resources configured (resourceList is empty)")]
    NoResources(PathBuf),
    #[error("device discovery: {0}")]
    Discovery(#[from] SysfsError),
    #[error(transparent)]
    Files(#[from] files::FileError),
    #[error(transparent)]
    Provisioning(#[from] ProvisioningError),
    #[error(transparent)]
    Dra(#[from] DraError),
    #[error("{0}: a pool has \"allocationApi\": \"dra\" but this daemon serves no DRA")]
    NoDra(PathBuf),
    #[error("health endpoint on {addr}: {source}")]
    Health {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// What the binary (or a test) can ask of a running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the config and rescan sysfs; changed pools are pushed to the
    /// kubelet without re-registering, new pools start, gone pools stop.
    Reload,
    Shutdown,
}

/// The config file, read and validated.
pub fn load_config(settings: &Settings) -> Result<config::Config, DaemonError> {
    let loaded = config::load(&settings.config_file, &settings.resource_prefix)?;
    for warning in &loaded.warnings {
        tracing::warn!(config = %settings.config_file.display(), "{warning}");
    }
    if loaded.config.resources.is_empty() {
        return Err(DaemonError::NoResources(settings.config_file.clone()));
    }
    Ok(loaded.config)
}

/// What one discovery gives.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The pools to serve (non-empty ones), through either API.
    pub pools: Vec<ServedPool>,
    /// The full names of every resource configured for the device plugin.
    pub configured: BTreeSet<String>,
    /// The DRA pools as discovered, by resource name: the facts their
    /// ResourceSlices carry.
    pub dra_sources: BTreeMap<String, Pool>,
    /// Whether the config has a DRA pool (with devices or not).
    pub has_dra: bool,
}

/// Discovery with a loaded config → the pools to serve.
pub fn scan_with(settings: &Settings, config: &config::Config) -> Result<Scan, DaemonError> {
    // only the facts the config's selectors need (see pool::discover_for)
    let devices = pool::discover_for(&settings.sysfs, config)?;
    let routes = match &settings.default_route_netdevs {
        Some(pinned) => pinned.clone(),
        None => crate::netlink::default_route_netdevs().unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read routes: no device is excluded for carrying the default route");
            Vec::new()
        }),
    };
    // discovery's records become the pools' devices (see pool::build)
    let pools = pool::build(config, devices, &routes);
    for excluded in &pools.excluded {
        tracing::info!(device = %excluded.address, reason = %excluded.reason, "excluded from netDevice pools");
    }
    let facts = HostFacts {
        sysfs: settings.sysfs.clone(),
        dev_root: settings.dev_root.clone(),
    };
    // A DRA pool is served and also kept as discovered (its ResourceSlices
    // carry those facts); the others are consumed by serving.
    let mut dra_sources = BTreeMap::new();
    let mut served = Vec::with_capacity(pools.pools.len());
    for pool in pools.pools {
        let resource = &config.resources[pool.resource];
        if resource.is_dra() {
            dra_sources.insert(pool.resource_name.clone(), pool.clone());
        }
        served.push(serve_pool(pool, resource, &facts));
    }
    for resource in &config.resources {
        if !served
            .iter()
            .any(|p| p.resource_name == resource.full_name())
        {
            tracing::warn!(pool = %resource.full_name(), "no device matches: pool not advertised");
        }
    }
    let configured = config
        .resources
        .iter()
        .filter(|r| !r.is_dra())
        .map(|r| r.full_name())
        .collect();
    let has_dra = config.has_dra();
    if has_dra && settings.dra.is_none() {
        return Err(DaemonError::NoDra(settings.config_file.clone()));
    }
    Ok(Scan {
        pools: served,
        configured,
        dra_sources,
        has_dra,
    })
}

struct RunningPool {
    pool: Arc<watch::Sender<Arc<ServedPool>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Grace for every runner to stop at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct Daemon {
    settings: Settings,
    registration: Registration,
    owners: DeviceOwners,
    events: broadcast::Sender<DirEvent>,
    running: BTreeMap<String, RunningPool>,
    /// What the probe endpoint reports: registrations, a refused config.
    probe_state: ProbeState,
    health_task: Option<tokio::task::JoinHandle<()>>,
    /// What `/metrics` reports on.
    metrics: Metrics,
    /// Reads the VF counters while `/metrics` is served; stops when dropped.
    _vf_sampler: Option<VfSampler>,
    /// Ends the directory watch at shutdown.
    watcher_stop: watch::Sender<bool>,
    /// The pools config + discovery asked for at the last successful scan,
    /// before devices held by pods were kept (see [`held`]).
    wanted: Vec<ServedPool>,
    /// Devices served only because a pod holds them, by pool.
    kept: Retained,
    config_watch: Option<ConfigWatch>,
    /// The config file's bytes at the last load, refused or not: a watch
    /// event without a change in them is no reload.
    config_seen: Option<Vec<u8>>,
    /// What the node watch reports; None when not watching (or it ended).
    node_events: Option<mpsc::UnboundedReceiver<NodeEvent>>,
    /// The host's links, for device health.
    links: LinkStates,
    /// Each running pool as `apply` was given it, before link health.
    base: BTreeMap<String, ServedPool>,
    /// The DRA side, once the config has had a DRA pool.
    dra: Option<DraNode>,
    /// The DRA pools as the last scan discovered them (the slices' facts).
    dra_sources: BTreeMap<String, Pool>,
    /// The periodic rescan's clock.
    rescan: Option<tokio::time::Interval>,
    /// The config last accepted: what a rescan (device events, the
    /// periodic one) applies; only a reload reads the file again.
    config: config::Config,
    /// Asks PodResources again while devices are kept for pods; a clock of
    /// its own, so that other wakes do not keep putting it off.
    held_clock: tokio::time::Interval,
    /// Every configured resource: a running pool whose devices all went
    /// stays registered with an empty list (the kubelet sees capacity 0 at
    /// once, rather than keeping the devices through a 5-minute grace).
    configured: BTreeSet<String>,
    /// The node policy, when one is given.
    provisioner: Option<Provisioner>,
}

/// What woke the daemon's loop.
enum Wake {
    Command(Option<Control>),
    HeldRecheck,
    ConfigDirChanged,
    NodePolicyDirChanged,
    Node(Option<NodeEvent>),
    Rescan,
}

impl Daemon {
    /// Scan, write the files, start one runner per pool. Fails only on what
    /// the operator must fix: an unreadable or invalid config, unreadable sysfs.
    pub async fn start(settings: Settings) -> Result<Daemon, DaemonError> {
        let metrics = Metrics::new(settings.pod_resources_socket.clone());
        // Watching starts before the scan: a change during it is not missed.
        let mut node_events = None;
        let mut links = LinkStates::default();
        if settings.watch_node {
            match node_watch::spawn(settings.sysfs.path(), node_watch::Debounce::default()) {
                Ok(mut receiver) => {
                    // the links as they are now come first
                    if let Ok(event) = receiver.try_recv() {
                        links.update(&event);
                    }
                    node_events = Some(receiver);
                }
                Err(error) => {
                    metrics.error(ErrorKind::NodeWatch);
                    tracing::error!(%error, "cannot watch the node: no device health, rescans only on reload")
                }
            }
        }
        let config = load_config(&settings)?;
        let probe_state = ProbeState::default();
        let mut provisioner = settings.node_policy.clone().map(|source| {
            Provisioner::new(
                source,
                settings.sysfs.clone(),
                settings.pod_resources_socket.clone(),
                probe_state.provisioning.clone(),
                settings.watch_config,
                metrics.clone(),
                settings.dra.as_ref().and_then(|dra| {
                    Some(DraCheckpoint {
                        path: checkpoint_path(&dra.plugin_dir, &dra.driver),
                        driver: dra.driver.clone(),
                        node: dra.node.clone()?,
                    })
                }),
            )
        });
        // Probes first: liveness answers (and readiness says "not applied
        // yet") while provisioning waits for VFs.
        let health_task = match settings.health_addr {
            Some(addr) => Some(
                probes::serve(addr, probe_state.clone(), metrics.clone())
                    .await
                    .map_err(|source| DaemonError::Health { addr, source })?,
            ),
            None => None,
        };
        let provisioned = match provisioner.as_mut() {
            Some(provisioner) => provisioner.start().await.map_err(DaemonError::from),
            None => Ok(()),
        };
        let scanned = provisioned.and_then(|()| scan_with(&settings, &config));
        let Scan {
            pools,
            configured,
            dra_sources,
            has_dra,
        } = match scanned {
            Ok(scanned) => scanned,
            Err(error) => {
                if let Some(task) = health_task {
                    task.abort();
                }
                return Err(error);
            }
        };
        let held_recheck = settings.held_recheck;
        let registration = settings.resolve_registration();
        tracing::info!(?registration, pools = pools.len(), "starting");
        if settings.cdi != CdiMode::Off {
            for error in files::remove_cdi_specs(&settings.cdi_spec_dir) {
                tracing::warn!(%error, "cannot remove a stale CDI spec");
            }
        }
        let config_seen = std::fs::read(&settings.config_file).ok();
        // nobody can scrape without the endpoint: no reads then
        let vf_sampler = match settings.health_addr {
            Some(_) => metrics.start_sampler(settings.sysfs.clone(), settings.vf_counters_interval),
            None => None,
        };
        let (events, _) = broadcast::channel(256);
        let (watcher_stop, watcher_stop_rx) = watch::channel(false);
        tokio::spawn(watch_dir(
            registration.dir().to_path_buf(),
            events.clone(),
            watcher_stop_rx,
        ));
        let mut daemon = Daemon {
            settings,
            registration,
            owners: Arc::new(RwLock::new(PoolOwners::default())),
            events,
            running: BTreeMap::new(),
            probe_state,
            health_task,
            metrics,
            _vf_sampler: vf_sampler,
            watcher_stop,
            wanted: pools.clone(),
            kept: Retained::new(),
            config_watch: None,
            config_seen,
            node_events,
            links,
            base: BTreeMap::new(),
            dra: None,
            dra_sources,
            rescan: None,
            configured,
            config,
            provisioner,
            held_clock: {
                let mut clock = tokio::time::interval(held_recheck);
                clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                clock
            },
        };
        if let Some(every) = daemon.settings.rescan_interval {
            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            daemon.rescan = Some(interval);
        }
        if daemon.settings.watch_config {
            daemon.config_watch = Some(ConfigWatch::start(&daemon.settings.config_file));
        }
        // device-info files now only for devices pods hold (all of them if
        // that is unknown): the rest are written at Allocate
        let held = daemon.held_devices().await;
        let (dra_pools, pools): (Vec<ServedPool>, Vec<ServedPool>) =
            pools.into_iter().partition(|p| p.api == AllocationApi::Dra);
        // the device plugin pools' devices only, as every reconcile gives
        daemon.update_owners(&pools);
        for pool in pools {
            let pool = daemon.shown(pool);
            if let Err(error) = daemon.start_pool(pool, held.as_ref()) {
                // leave nothing behind: the pools started so far go, files included
                daemon.shutdown().await;
                return Err(error);
            }
        }
        // after the device plugin pools, which remove stale device-info
        // files of their resources: a claim prepared before a pool moved
        // keeps its files
        if has_dra {
            if let Err(error) = daemon.start_dra(Some(dra_pools)).await {
                daemon.shutdown().await;
                return Err(error);
            }
        }
        daemon.probe_state.started.store(true, Ordering::Relaxed);
        Ok(daemon)
    }

    /// Start the DRA side with the DRA pools `pools` (none kept yet), or,
    /// at a reload, with none until the reconcile that follows gives them
    /// (None: nothing is published before).
    async fn start_dra(&mut self, pools: Option<Vec<ServedPool>>) -> Result<(), DaemonError> {
        let Some(settings) = &self.settings.dra else {
            return Err(DaemonError::NoDra(self.settings.config_file.clone()));
        };
        let paths = DraPaths {
            registry_dir: self.settings.plugins_registry_dir.clone(),
            cdi_dir: self.settings.cdi_spec_dir.clone(),
            devinfo_dir: self.settings.devinfo_dir.clone(),
            pod_resources_socket: self.settings.pod_resources_socket.clone(),
        };
        let publish = pools.as_deref().map(|pools| self.publish_set(pools));
        let links = self.settings.link_health.then_some(&self.links);
        let pools = pools.unwrap_or_default();
        let dra = DraNode::start(settings, paths, pools, links, publish).await?;
        self.metrics.watch_dra(dra.pools_view());
        self.dra = Some(dra);
        self.count_dra_in_readiness(true);
        Ok(())
    }

    /// Whether `/readyz` waits for the DRA driver's registration and its
    /// slices: while DRA pools are served. Without any (a config that no
    /// longer has one), the DRA side only answers for claims prepared
    /// before, and readiness needs neither the API server nor the kubelet's
    /// registration of it, as before the first DRA pool.
    fn count_dra_in_readiness(&self, counted: bool) {
        let Some(dra) = &self.dra else {
            return;
        };
        let key = format!("DRA driver {}", dra.driver());
        if let Ok(mut flags) = self.probe_state.registrations.lock() {
            if counted {
                flags.insert(key, dra.registration_flag());
            } else {
                flags.remove(&key);
            }
        }
        if let Ok(mut publishing) = self.probe_state.dra_publishing.lock() {
            *publishing = counted.then(|| dra.publish_states());
        }
    }

    /// What the DRA pools `pools` publish: each pool's discovered devices
    /// that it serves, except those kept for pods (no new claim gets them).
    fn publish_set(&self, pools: &[ServedPool]) -> PublishSet {
        let sources: Vec<Pool> = pools
            .iter()
            .filter_map(|served| {
                let source = self.dra_sources.get(&served.resource_name)?;
                let kept = self.kept.get(&held::pool_key(served));
                let devices = source
                    .devices
                    .iter()
                    .filter(|d| served.device(&d.id).is_some())
                    .filter(|d| !kept.is_some_and(|k| k.contains(d.id.as_str())))
                    .cloned()
                    .collect();
                Some(Pool {
                    devices,
                    ..source.clone()
                })
            })
            .collect();
        let refs: Vec<&Pool> = sources.iter().collect();
        let pcie_roots = crate::dra::topology::pcie_roots(&self.settings.sysfs, &refs);
        PublishSet {
            pools: sources,
            pcie_roots,
        }
    }

    fn update_owners(&self, pools: &[ServedPool]) {
        if let Ok(mut owners) = self.owners.write() {
            *owners = PoolOwners::of(pools);
        }
    }

    /// A starting pool's files: its CDI spec, and the device-info files of
    /// the devices pods hold (`held`), or of every device when what pods
    /// hold is unknown (None). The others are written at Allocate.
    fn write_start_files(
        &self,
        pool: &ServedPool,
        held: Option<&HeldDevices>,
    ) -> Result<(), DaemonError> {
        let dir = &self.settings.devinfo_dir;
        match held {
            None => files::write_device_info(dir, pool)?,
            Some(held) => {
                let ids = pool
                    .device_ids()
                    .filter(|id| held.holder(&pool.resource_name, id).is_some());
                files::write_device_info_for(dir, pool, ids)?;
            }
        }
        if self.settings.cdi != CdiMode::Off {
            files::write_cdi_spec(&self.settings.cdi_spec_dir, pool)?;
        }
        Ok(())
    }

    fn write_files(&self, old: Option<&ServedPool>, pool: &ServedPool) -> Result<(), DaemonError> {
        files::sync_device_info(&self.settings.devinfo_dir, old, pool)?;
        if self.settings.cdi != CdiMode::Off {
            files::write_cdi_spec(&self.settings.cdi_spec_dir, pool)?;
        }
        Ok(())
    }

    fn remove_files(&self, pool: &ServedPool) {
        for error in files::remove_device_info(
            &self.settings.devinfo_dir,
            &pool.resource_name,
            pool.device_ids(),
        ) {
            tracing::warn!(pool = %pool.resource_name, %error, "cannot remove a device-info file");
        }
        if self.settings.cdi != CdiMode::Off {
            if let Err(error) =
                files::remove_if_present(&files::cdi_spec_path(&self.settings.cdi_spec_dir, pool))
            {
                tracing::warn!(pool = %pool.resource_name, %error, "cannot remove the CDI spec");
            }
        }
    }

    fn start_pool(
        &mut self,
        pool: ServedPool,
        held: Option<&HeldDevices>,
    ) -> Result<(), DaemonError> {
        for error in files::remove_stale_device_info(&self.settings.devinfo_dir, &pool) {
            tracing::warn!(pool = %pool.resource_name, %error, "cannot remove a stale device-info file");
        }
        // Files first: the kubelet may Allocate (and Multus read the
        // device-info file) as soon as the pool is advertised.
        if let Err(error) = self.write_start_files(&pool, held) {
            self.remove_files(&pool);
            return Err(error);
        }
        let name = pool.resource_name.clone();
        let sender = Arc::new(watch::channel(Arc::new(pool)).0);
        let (stop, stop_rx) = watch::channel(false);
        let registered = Arc::new(AtomicBool::new(false));
        self.metrics.watch_pool(&name, sender.subscribe());
        let runner = Runner {
            registrations: self.metrics.registrations(&name),
            registration: self.registration.clone(),
            pool: sender.clone(),
            cdi: self.settings.cdi,
            owners: self.owners.clone(),
            devinfo_dir: Arc::new(self.settings.devinfo_dir.clone()),
            events: self.events.subscribe(),
            stop: stop_rx,
            registered: registered.clone(),
        };
        let task = tokio::spawn(runner.run());
        if let Ok(mut flags) = self.probe_state.registrations.lock() {
            flags.insert(name.clone(), registered);
        }
        self.running.insert(
            name,
            RunningPool {
                pool: sender,
                stop,
                task,
            },
        );
        Ok(())
    }

    async fn stop_pool(&mut self, name: &str) {
        self.base.remove(name);
        if let Some(running) = self.running.remove(name) {
            if let Ok(mut flags) = self.probe_state.registrations.lock() {
                flags.remove(name);
            }
            self.metrics.forget_pool(name);
            let _ = running.stop.send(true);
            let mut task = running.task;
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                tracing::warn!(pool = %name, "runner did not stop in time; aborting it");
                task.abort();
            }
            let pool = running.pool.borrow().clone();
            self.remove_files(&pool);
        }
    }

    /// Rescan and apply the differences. A config that no longer loads is
    /// logged and the pools keep being served as they were. Devices that
    /// pods hold are not dropped or moved while held (see [`held`]).
    pub async fn reload(&mut self) {
        self.config_seen = std::fs::read(&self.settings.config_file).ok();
        let scanned = load_config(&self.settings)
            .and_then(|config| Ok((scan_with(&self.settings, &config)?, config)));
        let mut scanned = scanned;
        if let Ok((scan, _)) = &scanned {
            // the first DRA pool: the DRA side starts (API server, sockets)
            // before the config is taken, so a failure refuses it
            if scan.has_dra && self.dra.is_none() {
                if let Err(error) = self.start_dra(None).await {
                    scanned = Err(error);
                }
            }
        }
        let (scan, config) = match scanned {
            Ok(scanned) => scanned,
            Err(error) => {
                tracing::error!(%error, "reload refused: keeping the current pools");
                self.metrics.reloaded(ReloadOutcome::Refused);
                self.set_refusal(Some(error.to_string()));
                return;
            }
        };
        self.metrics.reloaded(ReloadOutcome::Accepted);
        self.set_refusal(None);
        self.config = config;
        self.take_scan(scan);
        self.reconcile().await;
    }

    /// Discovery again with the config last accepted (device events, the
    /// periodic rescan): a config file half-edited on disk is not applied.
    pub async fn rescan(&mut self) {
        self.metrics.rescanned();
        match scan_with(&self.settings, &self.config) {
            Ok(scan) => {
                self.take_scan(scan);
                self.reconcile().await;
            }
            Err(error) => {
                self.metrics.error(ErrorKind::Rescan);
                tracing::error!(%error, "rescan failed: keeping the current pools")
            }
        }
    }

    fn take_scan(&mut self, scan: Scan) {
        self.configured = scan.configured;
        self.wanted = scan.pools;
        self.dra_sources = scan.dra_sources;
    }

    /// Why the config on disk is not served (None: it is), for `/readyz`.
    fn set_refusal(&self, refusal: Option<String>) {
        if let Ok(mut refused) = self.probe_state.config_refused.lock() {
            *refused = refusal;
        }
    }

    /// Why the last reload was refused, if it was (what `/readyz` says).
    pub fn refusal(&self) -> Option<String> {
        self.probe_state
            .config_refused
            .lock()
            .ok()
            .and_then(|r| r.clone())
    }

    /// Provisioning as it stands (readiness, refused and failed steps, the
    /// counters); `enabled` is false without a node policy.
    pub fn provisioning(&self) -> ProvisioningStatus {
        self.probe_state
            .provisioning
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Plans and applies the node policy again (see [`Trigger`]), then
    /// rescans if the node may have changed: the uevents of the change
    /// would bring a rescan too, but the pools should not wait for them.
    async fn reprovision(&mut self, trigger: Trigger) {
        let Some(provisioner) = self.provisioner.as_mut() else {
            return;
        };
        if provisioner.again(trigger).await {
            self.rescan().await;
        }
    }

    /// Asks PodResources which devices pods hold; None (logged) when it
    /// cannot be asked.
    async fn held_devices(&self) -> Option<HeldDevices> {
        let socket = self.settings.pod_resources_socket.as_deref()?;
        match held::list(socket).await {
            Ok(held) => Some(held),
            Err(error) => {
                self.metrics.error(ErrorKind::PodResources);
                tracing::warn!(%error, "cannot learn which devices pods hold: a reload may drop or move a device in use");
                None
            }
        }
    }

    /// Serves the last wanted pools, keeping held devices where they are.
    async fn reconcile(&mut self) {
        let held = self.held_devices().await;
        let mut running: Vec<Arc<ServedPool>> = self
            .running
            .values()
            .map(|r| r.pool.borrow().clone())
            .collect();
        // held from here until the DRA side has its new inventory
        let mut prepared_lock = None;
        if let Some(dra) = &self.dra {
            running.extend(dra.served());
            prepared_lock = Some(dra.lock_prepared().await);
        }
        let prepared = prepared_lock
            .as_ref()
            .map(PreparedLock::by_resource)
            .unwrap_or_default();
        let holdings = Holdings {
            pod_resources: held.as_ref(),
            dra: self.dra.as_ref().map(|dra| DraHoldings {
                driver: dra.driver(),
                node: dra.node(),
                prepared: &prepared,
            }),
        };
        let running_refs: Vec<&ServedPool> = running.iter().map(|p| p.as_ref()).collect();
        let (pools, kept) = held::keep_held(&running_refs, &self.wanted, &holdings, &self.kept);
        for (key @ (api, resource), ids) in &kept {
            for id in ids {
                if !self.kept.get(key).is_some_and(|k| k.contains(id)) {
                    let holder = match (api, held.as_ref(), &holdings.dra) {
                        (AllocationApi::DevicePlugin, Some(h), _) => h.holder(resource, id),
                        (AllocationApi::Dra, Some(h), Some(dra)) => {
                            h.dra_holder_of(dra.driver, dra.node, resource, id)
                        }
                        _ => None,
                    }
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "a prepared claim".into());
                    tracing::info!(pool = %resource, api = api.as_str(), device = %id, %holder, "a pod holds this device: kept where it is served, not offered, until released");
                }
            }
        }
        for (key @ (api, resource), ids) in &self.kept {
            for id in ids {
                if !kept.get(key).is_some_and(|k| k.contains(id)) {
                    tracing::info!(pool = %resource, api = api.as_str(), device = %id, "released by its pod: the pending change applies");
                }
            }
        }
        self.kept = kept;
        self.apply(pools, held.as_ref(), prepared_lock).await;
    }

    /// The daemon's metrics, for parts that report into them (provisioning).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Devices kept for pods, by pool (empty when none).
    pub fn kept(&self) -> &Retained {
        &self.kept
    }

    /// Serves `pools`: changed pools get the new list, new ones start, gone
    /// ones stop. `prepared`: the DRA side's prepared claims as `pools`
    /// were computed from, held still until its inventory is updated.
    async fn apply(
        &mut self,
        pools: Vec<ServedPool>,
        held: Option<&HeldDevices>,
        prepared: Option<PreparedLock>,
    ) {
        let (dra_pools, pools): (Vec<ServedPool>, Vec<ServedPool>) =
            pools.into_iter().partition(|p| p.api == AllocationApi::Dra);
        if self.dra.is_none() {
            if !dra_pools.is_empty() {
                tracing::error!("DRA pools without the DRA side: not served");
            }
            self.apply_device_plugin(pools, held).await;
            return;
        }
        // A VF moving between the APIs is never offered by both: the DRA
        // side stops preparing a VF that leaves it before the device plugin
        // side lists it (and no Prepare ran since the holdings were read:
        // `prepared` was held), and publishes a VF that joins it only after
        // the device plugin side took it off ListAndWatch. (A VF joining
        // DRA is preparable from the first step, but no claim can name it
        // before it is published.)
        self.count_dra_in_readiness(!dra_pools.is_empty());
        let publish = self.publish_set(&dra_pools);
        let links = self.settings.link_health.then_some(&self.links);
        if let Some(dra) = self.dra.as_mut() {
            let prepared = match prepared {
                Some(prepared) => prepared,
                None => dra.lock_prepared().await,
            };
            dra.set_pools(dra_pools, links, prepared);
        }
        self.apply_device_plugin(pools, held).await;
        if let Some(dra) = &self.dra {
            dra.publish(publish).await;
        }
    }

    async fn apply_device_plugin(&mut self, pools: Vec<ServedPool>, held: Option<&HeldDevices>) {
        self.update_owners(&pools);
        let pools: Vec<ServedPool> = pools.into_iter().map(|pool| self.shown(pool)).collect();
        let wanted: Vec<String> = pools.iter().map(|p| p.resource_name.clone()).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.contains(name))
            .cloned()
            .collect();
        for name in gone {
            if self.configured.contains(&name) {
                self.empty_pool(&name);
            } else {
                tracing::info!(pool = %name, "pool no longer in config: stopping it");
                self.stop_pool(&name).await;
            }
        }
        for pool in pools {
            let current = self
                .running
                .get(&pool.resource_name)
                .map(|r| r.pool.borrow().clone());
            match current {
                None => {
                    tracing::info!(pool = %pool.resource_name, devices = pool.devices.len(), "new pool");
                    if let Err(error) = self.start_pool(pool, held) {
                        self.metrics.error(ErrorKind::Pool);
                        tracing::error!(%error, "cannot start a new pool");
                    }
                }
                Some(current) if *current != pool => {
                    if let Err(error) = self.write_files(Some(&current), &pool) {
                        self.metrics.error(ErrorKind::Pool);
                        tracing::error!(pool = %pool.resource_name, %error, "cannot update the pool's files");
                    }
                    self.metrics.pool_changed(&current, &pool);
                    tracing::info!(pool = %pool.resource_name, devices = pool.devices.len(), "pool changed: pushing the new device list");
                    if let Some(running) = self.running.get(&pool.resource_name) {
                        running.pool.send_replace(Arc::new(pool));
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// A running pool whose devices are all gone: an empty list for the
    /// kubelet, its device-info files removed.
    fn empty_pool(&mut self, name: &str) {
        let Some(running) = self.running.get(name) else {
            return;
        };
        let current = running.pool.borrow().clone();
        if current.devices.is_empty() {
            return;
        }
        let empty = current.with_devices(Vec::new());
        if let Err(error) = self.write_files(Some(&current), &empty) {
            tracing::error!(pool = %name, %error, "cannot update the pool's files");
        }
        tracing::info!(pool = %name, "no device left: the kubelet gets an empty list");
        self.base.insert(name.to_owned(), empty.clone());
        running.pool.send_replace(Arc::new(empty));
    }

    /// `pool` as the kubelet sees it: with link health on top. Remembers
    /// the pool as given, to apply link changes to later.
    fn shown(&mut self, pool: ServedPool) -> ServedPool {
        let shown = if self.settings.link_health {
            link_health::apply(&pool, &self.links)
        } else {
            pool.clone()
        };
        self.base.insert(pool.resource_name.clone(), pool);
        shown
    }

    /// Links changed: push every pool whose devices' health changed.
    fn refresh_health(&mut self) {
        if !self.settings.link_health {
            return;
        }
        if let Some(dra) = self.dra.as_mut() {
            dra.refresh_health(&self.links);
        }
        for (name, base) in &self.base {
            let Some(running) = self.running.get(name) else {
                continue;
            };
            let shown = link_health::apply(base, &self.links);
            let current = running.pool.borrow().clone();
            if *current == shown {
                continue;
            }
            for (before, after) in current.devices.iter().zip(&shown.devices) {
                if before.id == after.id && before.healthy != after.healthy {
                    let health = if after.healthy {
                        "Healthy"
                    } else {
                        "Unhealthy"
                    };
                    tracing::info!(pool = %name, device = %after.id, health, "link state changed");
                }
            }
            self.metrics.pool_changed(&current, &shown);
            running.pool.send_replace(Arc::new(shown));
        }
    }

    /// Stop every pool: sockets, device-info files and CDI specs removed.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.stop_pool(&name).await;
        }
        if self.settings.cdi != CdiMode::Off {
            for error in files::remove_cdi_specs(&self.settings.cdi_spec_dir) {
                tracing::warn!(%error, "cannot remove a CDI spec");
            }
        }
        if let Some(dra) = self.dra.take() {
            dra.shutdown().await;
        }
        let _ = self.watcher_stop.send(true);
        if let Some(task) = self.health_task.take() {
            task.abort();
        }
        tracing::info!("stopped");
    }

    /// Serve until told to shut down (or until every sender of `control` is gone).
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) {
        loop {
            // while devices are kept for pods, ask now and then whether
            // they were released
            // (and, while provisioning steps are refused, whether pods
            // released the VFs that stood in the way)
            let any_kept = !self.kept.is_empty()
                || self
                    .provisioner
                    .as_ref()
                    .is_some_and(Provisioner::waiting_for_release);
            let held_clock = &mut self.held_clock;
            let recheck = async {
                match any_kept {
                    true => drop(held_clock.tick().await),
                    false => std::future::pending().await,
                }
            };
            let config_watch = self.config_watch.as_mut();
            let config_changed = async {
                match config_watch {
                    Some(watch) => watch.changed().await,
                    None => std::future::pending().await,
                }
            };
            let provisioner = self.provisioner.as_mut();
            let policy_changed = async {
                match provisioner {
                    Some(provisioner) => provisioner.changed().await,
                    None => std::future::pending().await,
                }
            };
            let node_events = self.node_events.as_mut();
            let node_changed = async {
                match node_events {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            let rescan_clock = self.rescan.as_mut();
            let rescan = async {
                match rescan_clock {
                    Some(clock) => drop(clock.tick().await),
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                command = control.recv() => Wake::Command(command),
                _ = recheck => Wake::HeldRecheck,
                _ = config_changed => Wake::ConfigDirChanged,
                _ = policy_changed => Wake::NodePolicyDirChanged,
                event = node_changed => Wake::Node(event),
                _ = rescan => Wake::Rescan,
            };
            match wake {
                Wake::Command(Some(Control::Reload)) => {
                    tracing::info!("reloading config and rescanning devices");
                    self.reprovision(Trigger::Reload).await;
                    self.reload().await;
                }
                Wake::Command(Some(Control::Shutdown) | None) => break,
                Wake::HeldRecheck => {
                    self.reprovision(Trigger::Release).await;
                    self.reconcile().await;
                }
                Wake::Node(None) => {
                    self.metrics.error(ErrorKind::NodeWatch);
                    tracing::error!(
                        "the node watch ended: no device health, rescans only on reload"
                    );
                    self.node_events = None;
                }
                Wake::Node(Some(event)) => match event {
                    NodeEvent::DevicesChanged { events } => {
                        tracing::info!(events, "PCI devices changed: rescanning");
                        self.rescan().await;
                    }
                    NodeEvent::Lost => self.rescan().await,
                    links => {
                        if self.links.update(&links) {
                            self.refresh_health();
                        }
                    }
                },
                Wake::Rescan => {
                    tracing::debug!("periodic rescan");
                    self.rescan().await;
                }
                Wake::NodePolicyDirChanged => self.reprovision(Trigger::FileChanged).await,
                Wake::ConfigDirChanged => {
                    let now = std::fs::read(&self.settings.config_file).ok();
                    if now != self.config_seen {
                        tracing::info!(config = %self.settings.config_file.display(), "config file changed: reloading");
                        self.reload().await;
                    }
                }
            }
        }
        self.shutdown().await;
    }
}
