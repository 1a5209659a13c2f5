//! A stand-in kubelet for development, demos and tests: it serves the
//! `Registration` service on `kubelet.sock` (or, in plugin-watcher mode,
//! finds plugin sockets in a `plugins_registry` directory), dials every
//! registered plugin back, keeps each resource's latest ListAndWatch list,
//! and calls Allocate / GetPreferredAllocation on request. DRA drivers found
//! by the watcher are registered too (GetInfo type `DRAPlugin`), and
//! NodePrepareResources / NodeUnprepareResources are called on request
//! ([`super::kubelet_dra`]). Written against the same protos as the plugin,
//! from the kubelet's side of the contract.

use super::kubelet_dra::{
    self, choose_service, DraClaimAnswer, DraPluginView, DraService, DraSettings,
};
use crate::dra::api::ApiError;
use crate::dra::claims::ClaimRef;
use crate::kubelet_api::deviceplugin::v1beta1::{
    device_plugin_client::DevicePluginClient,
    registration_server::{Registration, RegistrationServer},
    AllocateRequest, AllocateResponse, ContainerAllocateRequest,
    ContainerPreferredAllocationRequest, Device, DevicePluginOptions, Empty,
    PreferredAllocationRequest, RegisterRequest,
};
use crate::kubelet_api::pluginregistration::PluginInfo;
use crate::kubelet_api::pluginregistration::{
    registration_client::RegistrationClient as WatcherClient, InfoRequest, RegistrationStatus,
};
use crate::kubelet_api::podresources::v1::{
    pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer},
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices,
    ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, PodResources,
};
use crate::kubelet_api::uds::{self, UdsError, UdsListener};
use crate::kubelet_api::{
    DEVICE_PLUGIN_API_VERSION, HEALTHY, KUBELET_SOCKET_NAME, PLUGIN_TYPE_DEVICE_PLUGIN,
    PLUGIN_TYPE_DRA_PLUGIN,
};
use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// What the stand-in knows about one resource.
#[derive(Debug, Clone, Default)]
pub struct PluginView {
    /// Socket the plugin serves DevicePlugin on.
    pub endpoint: PathBuf,
    /// How many times the plugin registered (or was found by the watcher).
    pub registrations: u32,
    pub options: Option<DevicePluginOptions>,
    /// The latest ListAndWatch list, if one arrived on the current stream.
    pub devices: Option<Vec<Device>>,
    /// Lists received over all streams.
    pub updates: u32,
    pub stream_open: bool,
    /// Plugin-watcher verdicts `plugin_registered: false` sent to it.
    pub rejections: u32,
}

impl PluginView {
    pub fn healthy_ids(&self) -> Vec<String> {
        self.devices
            .iter()
            .flatten()
            .filter(|d| d.health == HEALTHY)
            .map(|d| d.id.clone())
            .collect()
    }
}

/// Devices the stand-in kubelet allocated to one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub resource: String,
    pub ids: Vec<String>,
}

#[derive(Default)]
struct Shared {
    /// What `allocate_to_pod` handed out, until `delete_pod`: what the
    /// PodResources API reports.
    assignments: Vec<Assignment>,
    /// Plugin-watcher mode: reject this many registrations before accepting.
    reject_next: u32,
    plugins: BTreeMap<String, PluginView>,
    /// DRA drivers found by the watcher, by driver name.
    dra: BTreeMap<String, DraPluginView>,
    /// The `DRAPlugin` services this kubelet speaks, most preferred first.
    dra_services: Vec<DraService>,
    channels: BTreeMap<String, Channel>,
    streams: BTreeMap<String, JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Uds(#[from] UdsError),
    #[error("watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    #[error("resource {0} is not registered")]
    Unknown(String),
    #[error("DRA driver {0} is not registered")]
    UnknownDriver(String),
    #[error("{0}")]
    Rpc(#[from] Status),
}

/// A running stand-in kubelet. Dropping it stops it like [`KubeletSim::stop`].
pub struct KubeletSim {
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    changed: watch::Sender<u64>,
    tasks: Vec<JoinHandle<()>>,
    kubelet_socket: Option<PathBuf>,
    pod_resources_socket: Option<PathBuf>,
    /// What deleting the node's ResourceSlices at start gave, if asked.
    wiped: Option<Result<usize, ApiError>>,
}

fn bump(changed: &watch::Sender<u64>) {
    changed.send_modify(|n| *n += 1);
}

/// Dial a plugin, fetch its options and follow its ListAndWatch stream,
/// recording each list. Replaces any earlier stream for the resource.
async fn follow_plugin(
    resource: String,
    endpoint: PathBuf,
    shared: Arc<Mutex<Shared>>,
    changed: watch::Sender<u64>,
) -> Result<(), SimError> {
    let channel = uds::connect(&endpoint).await?;
    let mut client = DevicePluginClient::new(channel.clone());
    let options = client
        .get_device_plugin_options(Empty {})
        .await?
        .into_inner();
    let mut stream = client.list_and_watch(Empty {}).await?.into_inner();
    if let Ok(mut s) = shared.lock() {
        s.channels.insert(resource.clone(), channel);
        let view = s.plugins.entry(resource.clone()).or_default();
        view.options = Some(options);
        view.stream_open = true;
        view.devices = None;
    }
    bump(&changed);
    loop {
        let next = stream.message().await;
        let mut s = match shared.lock() {
            Ok(s) => s,
            Err(_) => return Ok(()),
        };
        let view = s.plugins.entry(resource.clone()).or_default();
        match next {
            Ok(Some(list)) => {
                view.devices = Some(list.devices);
                view.updates += 1;
            }
            Ok(None) | Err(_) => {
                // as the kubelet does: a broken stream makes the devices unusable
                view.stream_open = false;
                view.devices = None;
                drop(s);
                bump(&changed);
                return Ok(());
            }
        }
        drop(s);
        bump(&changed);
    }
}

fn start_following(
    resource: &str,
    endpoint: PathBuf,
    shared: &Arc<Mutex<Shared>>,
    changed: &watch::Sender<u64>,
) {
    let task = tokio::spawn({
        let (resource, shared, changed) = (resource.to_owned(), shared.clone(), changed.clone());
        async move {
            if let Err(error) = follow_plugin(resource.clone(), endpoint, shared, changed).await {
                tracing::warn!(%resource, %error, "kubelet-sim: cannot follow the plugin");
            }
        }
    });
    if let Ok(mut s) = shared.lock() {
        if let Some(old) = s.streams.insert(resource.to_owned(), task) {
            old.abort();
        }
    }
}

struct RegistrationService {
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
    changed: watch::Sender<u64>,
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        // the kubelet's own checks
        if r.version != DEVICE_PLUGIN_API_VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported version {:?}",
                r.version
            )));
        }
        if !r.resource_name.contains('/') || r.resource_name.starts_with("kubernetes.io/") {
            return Err(Status::invalid_argument(format!(
                "invalid resource name {:?}",
                r.resource_name
            )));
        }
        if r.endpoint.contains('/') || r.endpoint.is_empty() {
            return Err(Status::invalid_argument(format!(
                "endpoint {:?} must be a file name",
                r.endpoint
            )));
        }
        let endpoint = self.dir.join(&r.endpoint);
        tracing::info!(resource = %r.resource_name, endpoint = %endpoint.display(), "kubelet-sim: plugin registered");
        if let Ok(mut s) = self.shared.lock() {
            let view = s.plugins.entry(r.resource_name.clone()).or_default();
            view.registrations += 1;
            view.endpoint = endpoint.clone();
            // the kubelet drops the old endpoint's devices until the new stream lists them
            view.devices = None;
            view.stream_open = false;
        }
        bump(&self.changed);
        start_following(&r.resource_name, endpoint, &self.shared, &self.changed);
        Ok(Response::new(Empty {}))
    }
}

/// The PodResources API over what this kubelet allocated, as the kubelet
/// serves it on `pod-resources/kubelet.sock`.
struct PodResourcesService {
    shared: Arc<Mutex<Shared>>,
}

impl PodResourcesService {
    fn assignments(&self) -> Vec<Assignment> {
        self.shared
            .lock()
            .map(|s| s.assignments.clone())
            .unwrap_or_default()
    }
}

/// Groups assignments by pod, then container, in allocation order.
fn pod_resources(assignments: &[Assignment]) -> Vec<PodResources> {
    let mut pods: Vec<PodResources> = Vec::new();
    for a in assignments {
        let pod = match pods
            .iter_mut()
            .position(|p| p.namespace == a.namespace && p.name == a.pod)
        {
            Some(i) => &mut pods[i],
            None => {
                pods.push(PodResources {
                    name: a.pod.clone(),
                    namespace: a.namespace.clone(),
                    ..Default::default()
                });
                let last = pods.len() - 1;
                &mut pods[last]
            }
        };
        let container = match pod.containers.iter().position(|c| c.name == a.container) {
            Some(i) => &mut pod.containers[i],
            None => {
                pod.containers.push(ContainerResources {
                    name: a.container.clone(),
                    ..Default::default()
                });
                let last = pod.containers.len() - 1;
                &mut pod.containers[last]
            }
        };
        container.devices.push(ContainerDevices {
            resource_name: a.resource.clone(),
            device_ids: a.ids.clone(),
            topology: None,
        });
    }
    pods
}

#[tonic::async_trait]
impl PodResourcesLister for PodResourcesService {
    async fn list(
        &self,
        _request: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        Ok(Response::new(ListPodResourcesResponse {
            pod_resources: pod_resources(&self.assignments()),
        }))
    }

    /// The healthy devices of every resource, from the latest lists.
    async fn get_allocatable_resources(
        &self,
        _request: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        let plugins = self
            .shared
            .lock()
            .map(|s| s.plugins.clone())
            .unwrap_or_default();
        let devices = plugins
            .iter()
            .filter(|(_, view)| view.devices.is_some())
            .map(|(resource, view)| ContainerDevices {
                resource_name: resource.clone(),
                device_ids: view.healthy_ids(),
                topology: None,
            })
            .collect();
        Ok(Response::new(AllocatableResourcesResponse {
            devices,
            ..Default::default()
        }))
    }

    async fn get(
        &self,
        request: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        let wanted = request.into_inner();
        pod_resources(&self.assignments())
            .into_iter()
            .find(|p| p.namespace == wanted.pod_namespace && p.name == wanted.pod_name)
            .map(|pod| {
                Response::new(GetPodResourcesResponse {
                    pod_resources: Some(pod),
                })
            })
            .ok_or_else(|| {
                Status::not_found(format!(
                    "pod {}/{} not found",
                    wanted.pod_namespace, wanted.pod_name
                ))
            })
    }
}

/// Whether to refuse a plugin that passed the checks, because
/// [`KubeletSim::reject_next`] asked for it (counting it down).
fn rejected_on_request(shared: &Arc<Mutex<Shared>>) -> bool {
    shared
        .lock()
        .map(|mut s| {
            let reject = s.reject_next > 0;
            if reject {
                s.reject_next -= 1;
            }
            reject
        })
        .unwrap_or(false)
}

/// A DRA driver found by the watcher: choose the service, record, notify.
async fn adopt_dra_plugin(
    mut client: WatcherClient<Channel>,
    info: PluginInfo,
    shared: Arc<Mutex<Shared>>,
    changed: watch::Sender<u64>,
) -> Result<(), SimError> {
    let known = shared
        .lock()
        .map(|s| s.dra_services.clone())
        .unwrap_or_default();
    let chosen = if info.name.is_empty() {
        Err("empty driver name".to_owned())
    } else if info.endpoint.is_empty() {
        Err("empty endpoint".to_owned())
    } else {
        choose_service(&known, &info.supported_versions)
    };
    let chosen = match chosen {
        Ok(_) if rejected_on_request(&shared) => {
            Err("rejected on request (kubelet-sim)".to_owned())
        }
        other => other,
    };
    if let Ok(mut s) = shared.lock() {
        let view = s.dra.entry(info.name.clone()).or_default();
        view.endpoint = PathBuf::from(&info.endpoint);
        view.offered = info.supported_versions.clone();
        match &chosen {
            Ok(service) => {
                view.service = Some(*service);
                view.registrations += 1;
            }
            Err(error) => {
                view.service = None;
                view.rejections += 1;
                view.last_rejection = Some(error.clone());
            }
        }
    }
    bump(&changed);
    let status = match chosen {
        Ok(service) => {
            tracing::info!(driver = %info.name, service = service.name(), "kubelet-sim: DRA driver registered");
            RegistrationStatus {
                plugin_registered: true,
                error: String::new(),
            }
        }
        Err(error) => RegistrationStatus {
            plugin_registered: false,
            error,
        },
    };
    client.notify_registration_status(status).await?;
    Ok(())
}

/// A plugin socket found by the watcher: GetInfo, validate, follow, notify.
async fn adopt_watched_socket(
    socket: PathBuf,
    shared: Arc<Mutex<Shared>>,
    changed: watch::Sender<u64>,
) -> Result<(), SimError> {
    let mut client = WatcherClient::new(uds::connect(&socket).await?);
    let info = client.get_info(InfoRequest {}).await?.into_inner();
    if info.r#type == PLUGIN_TYPE_DRA_PLUGIN {
        return adopt_dra_plugin(client, info, shared, changed).await;
    }
    let problem = if info.r#type != PLUGIN_TYPE_DEVICE_PLUGIN {
        Some(format!(
            "plugin type {:?} is not {PLUGIN_TYPE_DEVICE_PLUGIN}",
            info.r#type
        ))
    } else if !info
        .supported_versions
        .iter()
        .any(|v| v == DEVICE_PLUGIN_API_VERSION)
    {
        Some(format!(
            "no supported version in {:?}",
            info.supported_versions
        ))
    } else {
        None
    };
    let rejected = problem.is_none() && rejected_on_request(&shared);
    if rejected {
        if let Ok(mut s) = shared.lock() {
            s.plugins.entry(info.name.clone()).or_default().rejections += 1;
        }
    }
    let problem =
        problem.or_else(|| rejected.then(|| "rejected on request (kubelet-sim)".to_owned()));
    if let Some(error) = problem {
        client
            .notify_registration_status(RegistrationStatus {
                plugin_registered: false,
                error,
            })
            .await?;
        bump(&changed);
        return Ok(());
    }
    let endpoint = PathBuf::from(&info.endpoint);
    if let Ok(mut s) = shared.lock() {
        let view = s.plugins.entry(info.name.clone()).or_default();
        view.registrations += 1;
        view.endpoint = endpoint.clone();
        view.devices = None;
        view.stream_open = false;
    }
    start_following(&info.name, endpoint, &shared, &changed);
    client
        .notify_registration_status(RegistrationStatus {
            plugin_registered: true,
            error: String::new(),
        })
        .await?;
    tracing::info!(resource = %info.name, "kubelet-sim: plugin found by the watcher");
    Ok(())
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

impl KubeletSim {
    fn new(dir: &Path) -> Self {
        KubeletSim {
            dir: dir.to_owned(),
            shared: Arc::default(),
            changed: watch::channel(0).0,
            tasks: Vec::new(),
            kubelet_socket: None,
            pod_resources_socket: None,
            wiped: None,
        }
    }

    /// A kubelet in device-plugins mode: serves `Registration` on `<dir>/kubelet.sock`.
    pub async fn start(dir: &Path) -> Result<Self, SimError> {
        let mut sim = Self::new(dir);
        let socket = dir.join(KUBELET_SOCKET_NAME);
        let listener = UdsListener::bind(&socket)?;
        let service = RegistrationService {
            dir: dir.to_owned(),
            shared: sim.shared.clone(),
            changed: sim.changed.clone(),
        };
        let router =
            tonic::transport::Server::builder().add_service(RegistrationServer::new(service));
        sim.tasks.push(tokio::spawn(async move {
            if let Err(error) = uds::serve(router, listener, std::future::pending()).await {
                tracing::error!(%error, "kubelet-sim: registration server failed");
            }
        }));
        sim.kubelet_socket = Some(socket);
        Ok(sim)
    }

    /// A kubelet's plugin watcher on `dir` (`plugins_registry`): every socket
    /// that appears is asked for its info and, if valid, followed; sockets
    /// already there are found at start, as the kubelet rescans then.
    pub async fn start_plugin_watcher(dir: &Path) -> Result<Self, SimError> {
        Self::start_plugin_watcher_with(dir, DraSettings::default()).await
    }

    /// [`KubeletSim::start_plugin_watcher`], with DRA as `dra` says.
    pub async fn start_plugin_watcher_with(dir: &Path, dra: DraSettings) -> Result<Self, SimError> {
        let mut sim = Self::new(dir);
        sim.watch_plugins_registry(dir, dra).await?;
        Ok(sim)
    }

    /// Also act as the plugin watcher on `dir` (a kubelet serving
    /// `kubelet.sock` watches its `plugins_registry` too). First, as a
    /// starting kubelet, delete the node's ResourceSlices if `dra` says
    /// where ([`KubeletSim::wiped`] tells how that went; an API server that
    /// is down does not stop the start).
    pub async fn watch_plugins_registry(
        &mut self,
        dir: &Path,
        dra: DraSettings,
    ) -> Result<(), SimError> {
        use crate::deviceplugin::dirwatch::{watch_dir, DirEvent};
        use tokio::sync::broadcast::{self, error::RecvError};
        if !dir.is_dir() {
            return Err(SimError::Watch {
                path: dir.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        if let Some(wipe) = &dra.node_slices {
            let wiped = wipe.api.wipe_node_slices(&wipe.node).await;
            match &wiped {
                Ok(count) => {
                    tracing::info!(node = %wipe.node, count, "kubelet-sim: deleted the node's ResourceSlices")
                }
                Err(error) => {
                    tracing::warn!(node = %wipe.node, %error, "kubelet-sim: cannot delete the node's ResourceSlices")
                }
            }
            self.wiped = Some(wiped);
        }
        if let Ok(mut s) = self.shared.lock() {
            s.dra_services = dra.services;
        }
        let sim = self;
        // subscribed before the watch starts, so its first Resync is seen
        let (events, mut received) = broadcast::channel(64);
        let (keep_watching, stop) = watch::channel(false);
        sim.tasks
            .push(tokio::spawn(watch_dir(dir.to_owned(), events, stop)));
        let (shared, changed, dir) = (sim.shared.clone(), sim.changed.clone(), dir.to_owned());
        sim.tasks.push(tokio::spawn(async move {
            let _keep_watching = keep_watching;
            let adopt = |path: PathBuf| {
                let (shared, changed) = (shared.clone(), changed.clone());
                async move {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if name.starts_with('.') || !is_socket(&path) {
                        return;
                    }
                    // the plugin may still be between bind and listen
                    for _ in 0..20 {
                        match adopt_watched_socket(path.clone(), shared.clone(), changed.clone())
                            .await
                        {
                            Ok(()) => return,
                            Err(error) => {
                                tracing::debug!(socket = %path.display(), %error, "kubelet-sim: retrying");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            };
            // names adopted and still there, so a resync adopts only new ones
            let mut known = std::collections::HashSet::new();
            loop {
                match received.recv().await {
                    Ok(DirEvent::Created(name)) => {
                        known.insert(name.clone());
                        tokio::spawn(adopt(dir.join(name)));
                    }
                    Ok(DirEvent::Removed(name)) => {
                        known.remove(&name);
                    }
                    Ok(DirEvent::Written(_)) => {}
                    Ok(DirEvent::Resync) | Err(RecvError::Lagged(_)) => {
                        let entries = std::fs::read_dir(&dir).into_iter().flatten();
                        for entry in entries.filter_map(Result::ok) {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            if known.insert(name) {
                                tokio::spawn(adopt(entry.path()));
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }));
        Ok(())
    }

    /// What deleting the node's ResourceSlices at start gave; None if this
    /// stand-in was not told where.
    pub fn wiped(&self) -> Option<&Result<usize, ApiError>> {
        self.wiped.as_ref()
    }

    /// Every DRA driver seen so far.
    pub fn dra_plugins(&self) -> BTreeMap<String, DraPluginView> {
        self.shared
            .lock()
            .map(|s| s.dra.clone())
            .unwrap_or_default()
    }

    /// Waits until `ready` holds for the DRA drivers, or fails after
    /// `timeout` naming `what`.
    pub async fn wait_for_dra(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&BTreeMap<String, DraPluginView>) -> bool,
    ) -> Result<BTreeMap<String, DraPluginView>, SimError> {
        let mut changes = self.changed.subscribe();
        let wait = async {
            loop {
                let plugins = self.dra_plugins();
                if ready(&plugins) {
                    return plugins;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| SimError::Timeout(timeout, what.to_owned()))
    }

    /// A registered driver's socket and the service chosen for it.
    fn dra_endpoint(&self, driver: &str) -> Result<(PathBuf, DraService), SimError> {
        self.dra_plugins()
            .remove(driver)
            .and_then(|view| Some((view.endpoint, view.service?)))
            .ok_or_else(|| SimError::UnknownDriver(driver.to_owned()))
    }

    /// NodePrepareResources for `claims` on `driver`, in the service
    /// chosen at registration; answers in the order of `claims`.
    pub async fn prepare(
        &self,
        driver: &str,
        claims: &[ClaimRef],
    ) -> Result<Vec<DraClaimAnswer>, SimError> {
        let (endpoint, service) = self.dra_endpoint(driver)?;
        kubelet_dra::prepare(&endpoint, service, claims).await
    }

    /// NodeUnprepareResources for `claims` on `driver`.
    pub async fn unprepare(
        &self,
        driver: &str,
        claims: &[ClaimRef],
    ) -> Result<Vec<DraClaimAnswer>, SimError> {
        let (endpoint, service) = self.dra_endpoint(driver)?;
        kubelet_dra::unprepare(&endpoint, service, claims).await
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Plugin-watcher mode: answer the next `count` plugins found with
    /// `NotifyRegistrationStatus(false)`, as a kubelet that rejects them.
    pub fn reject_next(&self, count: u32) {
        if let Ok(mut s) = self.shared.lock() {
            s.reject_next = count;
        }
    }

    /// Every resource seen so far.
    pub fn plugins(&self) -> BTreeMap<String, PluginView> {
        self.shared
            .lock()
            .map(|s| s.plugins.clone())
            .unwrap_or_default()
    }

    pub fn plugin(&self, resource: &str) -> Option<PluginView> {
        self.plugins().remove(resource)
    }

    /// Waits until `ready` holds for the plugins, or fails after `timeout`
    /// naming `what`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&BTreeMap<String, PluginView>) -> bool,
    ) -> Result<BTreeMap<String, PluginView>, SimError> {
        let mut changes = self.changed.subscribe();
        let wait = async {
            loop {
                let plugins = self.plugins();
                if ready(&plugins) {
                    return plugins;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| SimError::Timeout(timeout, what.to_owned()))
    }

    /// Waits for a device list of `resource` that satisfies `ready`.
    pub async fn wait_for_devices(
        &self,
        resource: &str,
        timeout: Duration,
        ready: impl Fn(&[Device]) -> bool,
    ) -> Result<Vec<Device>, SimError> {
        let plugins = self
            .wait_until(&format!("a device list of {resource}"), timeout, |p| {
                p.get(resource)
                    .and_then(|v| v.devices.as_deref())
                    .is_some_and(&ready)
            })
            .await?;
        Ok(plugins
            .get(resource)
            .and_then(|v| v.devices.clone())
            .unwrap_or_default())
    }

    fn client(&self, resource: &str) -> Result<DevicePluginClient<Channel>, SimError> {
        self.shared
            .lock()
            .ok()
            .and_then(|s| s.channels.get(resource).cloned())
            .map(DevicePluginClient::new)
            .ok_or_else(|| SimError::Unknown(resource.to_owned()))
    }

    /// Allocate for one container, as the kubelet does at container creation.
    pub async fn allocate(
        &self,
        resource: &str,
        ids: &[String],
    ) -> Result<AllocateResponse, SimError> {
        let request = AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids.to_vec(),
            }],
        };
        Ok(self.client(resource)?.allocate(request).await?.into_inner())
    }

    /// Allocate for `container` of pod `namespace/pod` and remember it, so
    /// the PodResources API reports it until [`KubeletSim::delete_pod`].
    pub async fn allocate_to_pod(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        resource: &str,
        ids: &[String],
    ) -> Result<AllocateResponse, SimError> {
        let response = self.allocate(resource, ids).await?;
        if let Ok(mut s) = self.shared.lock() {
            s.assignments.push(Assignment {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                container: container.to_owned(),
                resource: resource.to_owned(),
                ids: ids.to_vec(),
            });
        }
        Ok(response)
    }

    /// The pod is gone: its devices leave the PodResources answers.
    pub fn delete_pod(&self, namespace: &str, pod: &str) {
        if let Ok(mut s) = self.shared.lock() {
            s.assignments
                .retain(|a| !(a.namespace == namespace && a.pod == pod));
        }
    }

    /// Everything allocated to pods and not deleted.
    pub fn assignments(&self) -> Vec<Assignment> {
        self.shared
            .lock()
            .map(|s| s.assignments.clone())
            .unwrap_or_default()
    }

    /// Serve the PodResources API (`v1.PodResourcesLister`) on `socket`,
    /// reporting what [`KubeletSim::allocate_to_pod`] handed out. Stops
    /// with the stand-in; the socket is removed then.
    pub async fn serve_pod_resources(&mut self, socket: &Path) -> Result<(), SimError> {
        let listener = UdsListener::bind(socket)?;
        let service = PodResourcesService {
            shared: self.shared.clone(),
        };
        let router =
            tonic::transport::Server::builder().add_service(PodResourcesListerServer::new(service));
        self.tasks.push(tokio::spawn(async move {
            if let Err(error) = uds::serve(router, listener, std::future::pending()).await {
                tracing::error!(%error, "kubelet-sim: pod resources server failed");
            }
        }));
        self.pod_resources_socket = Some(socket.to_owned());
        Ok(())
    }

    /// GetPreferredAllocation for one container.
    pub async fn preferred(
        &self,
        resource: &str,
        available: &[String],
        must_include: &[String],
        size: i32,
    ) -> Result<Vec<String>, SimError> {
        let request = PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: available.to_vec(),
                must_include_device_i_ds: must_include.to_vec(),
                allocation_size: size,
            }],
        };
        let response = self
            .client(resource)?
            .get_preferred_allocation(request)
            .await?;
        Ok(response
            .into_inner()
            .container_responses
            .into_iter()
            .next()
            .map(|c| c.device_i_ds)
            .unwrap_or_default())
    }

    /// Stop like a kubelet going down: no more registration, streams cut,
    /// `kubelet.sock` removed.
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Ok(mut s) = self.shared.lock() {
            for (_, task) in std::mem::take(&mut s.streams) {
                task.abort();
            }
            s.channels.clear();
        }
        for socket in [self.kubelet_socket.take(), self.pod_resources_socket.take()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// What a starting kubelet does to the device-plugins dir: delete every
    /// socket in it (the checkpoint file stays).
    pub fn wipe_sockets(dir: &Path) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if is_socket(&path) {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Drop for KubeletSim {
    fn drop(&mut self) {
        self.stop();
    }
}
