//! What the kubelet talks to: the `DRAPlugin` service in `v1` and
//! `v1beta1` over one [`Preparer`], the `v1alpha1.DRAResourceHealth` stream,
//! and the plugin-watcher registration that announces them.
//!
//! Sockets, as the kubelet expects them: the DRA services on
//! `<plugin dir>/<driver>/dra.sock`, registration on
//! `<plugins_registry>/<driver>-reg.sock`.

use super::checkpoint::PreparedDevice;
use super::claims::{ClaimRef, ClaimSource};
use super::prepare::{fetch_claims, InUse, PrepareError, Preparer};
use crate::deviceplugin::held;
use crate::kubelet_api::dra::{v1, v1beta1};
use crate::kubelet_api::dra_health::v1alpha1::{
    dra_resource_health_server::{DraResourceHealth, DraResourceHealthServer},
    DeviceHealth, DeviceIdentifier, HealthStatus, NodeWatchResourcesRequest,
    NodeWatchResourcesResponse,
};
use crate::kubelet_api::pluginregistration::{
    registration_server::{Registration, RegistrationServer},
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};
use crate::kubelet_api::{
    DRA_HEALTH_SERVICE_V1ALPHA1, DRA_PLUGIN_SERVICE_V1, DRA_PLUGIN_SERVICE_V1BETA1,
    PLUGIN_TYPE_DRA_PLUGIN,
};
use prost::Message;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Mutex};
use tonic::transport::server::Router;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// `<plugin dir>/<driver>/dra.sock`
pub fn dra_socket_path(plugin_dir: &Path, driver: &str) -> PathBuf {
    plugin_dir.join(driver).join("dra.sock")
}

/// `<plugins_registry>/<driver>-reg.sock`
pub fn registration_socket_path(registry_dir: &Path, driver: &str) -> PathBuf {
    registry_dir.join(format!("{driver}-reg.sock"))
}

/// The `DRAPlugin` service (both versions) over one preparer.
pub struct DraPluginService<C> {
    pub preparer: Arc<Mutex<Preparer>>,
    pub claims: Arc<C>,
    /// The kubelet's PodResources socket: a new claim never gets a VF a pod
    /// holds through the device plugin API. None: not asked.
    pub pod_resources: Option<PathBuf>,
}

impl<C> Clone for DraPluginService<C> {
    fn clone(&self) -> Self {
        DraPluginService {
            preparer: self.preparer.clone(),
            claims: self.claims.clone(),
            pod_resources: self.pod_resources.clone(),
        }
    }
}

/// The devices pods hold through the device plugin API, by device ID, as
/// PodResources says now; empty (logged) when it does not answer: Prepare
/// then relies on the daemon's pools alone, as a reload does.
async fn held_through_device_plugin(socket: &Path) -> InUse {
    match held::list(socket).await {
        Ok(held) => held
            .iter()
            .map(|(_, id, holder)| (id.to_owned(), holder.to_string()))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "Prepare: cannot ask PodResources which VFs pods hold through the device plugin");
            InUse::new()
        }
    }
}

fn claim_refs(claims: Vec<v1::Claim>) -> Vec<ClaimRef> {
    claims
        .into_iter()
        .map(|c| ClaimRef {
            namespace: c.namespace,
            name: c.name,
            uid: c.uid,
        })
        .collect()
}

/// The kubelet's answer for one claim.
pub fn prepare_answer(
    answer: Result<Vec<PreparedDevice>, PrepareError>,
) -> v1::NodePrepareResourceResponse {
    match answer {
        Ok(devices) => v1::NodePrepareResourceResponse {
            devices: devices
                .into_iter()
                .map(|d| v1::Device {
                    request_names: vec![d.request],
                    pool_name: d.pool,
                    device_name: d.device,
                    cdi_device_ids: vec![d.cdi_device_id],
                })
                .collect(),
            error: String::new(),
        },
        Err(error) => v1::NodePrepareResourceResponse {
            devices: Vec::new(),
            error: error.to_string(),
        },
    }
}

impl<C: ClaimSource + 'static> DraPluginService<C> {
    pub async fn prepare(
        &self,
        request: v1::NodePrepareResourcesRequest,
    ) -> v1::NodePrepareResourcesResponse {
        let claims = claim_refs(request.claims);
        // The lock is not held while the API server answers: a slow read
        // does not hold up the kubelet's other calls.
        let to_fetch = self.preparer.lock().await.to_fetch(&claims);
        let fetched = fetch_claims(self.claims.as_ref(), &to_fetch).await;
        // Asked after the claims were read, just before they are prepared:
        // a VF that joined DRA right after the kubelet allocated it through
        // the device plugin (see docs/dra.md) is refused here.
        let in_use = match &self.pod_resources {
            Some(socket) if !to_fetch.is_empty() => held_through_device_plugin(socket).await,
            _ => InUse::new(),
        };
        let answers = self
            .preparer
            .lock()
            .await
            .prepare_fetched(&claims, fetched, &in_use);
        v1::NodePrepareResourcesResponse {
            claims: answers
                .into_iter()
                .map(|(uid, answer)| (uid, prepare_answer(answer)))
                .collect(),
        }
    }

    pub async fn unprepare(
        &self,
        request: v1::NodeUnprepareResourcesRequest,
    ) -> v1::NodeUnprepareResourcesResponse {
        let claims = claim_refs(request.claims);
        let answers = self.preparer.lock().await.unprepare(&claims);
        v1::NodeUnprepareResourcesResponse {
            claims: answers
                .into_iter()
                .map(|(uid, answer)| {
                    let error = answer.err().map(|e| e.to_string()).unwrap_or_default();
                    (uid, v1::NodeUnprepareResourceResponse { error })
                })
                .collect(),
        }
    }
}

#[tonic::async_trait]
impl<C: ClaimSource + 'static> v1::dra_plugin_server::DraPlugin for DraPluginService<C> {
    async fn node_prepare_resources(
        &self,
        request: Request<v1::NodePrepareResourcesRequest>,
    ) -> Result<Response<v1::NodePrepareResourcesResponse>, Status> {
        Ok(Response::new(self.prepare(request.into_inner()).await))
    }

    async fn node_unprepare_resources(
        &self,
        request: Request<v1::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<v1::NodeUnprepareResourcesResponse>, Status> {
        Ok(Response::new(self.unprepare(request.into_inner()).await))
    }
}

/// v1beta1 and v1 messages are the same on the wire (same fields, same
/// numbers), so one is turned into the other by re-decoding its bytes: one
/// implementation, and no field can be forgotten in a hand conversion.
pub(crate) fn convert<From: Message, To: Message + Default>(message: &From) -> Result<To, Status> {
    To::decode(message.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("convert between DRA API versions: {e}")))
}

#[tonic::async_trait]
impl<C: ClaimSource + 'static> v1beta1::dra_plugin_server::DraPlugin for DraPluginService<C> {
    async fn node_prepare_resources(
        &self,
        request: Request<v1beta1::NodePrepareResourcesRequest>,
    ) -> Result<Response<v1beta1::NodePrepareResourcesResponse>, Status> {
        let request: v1::NodePrepareResourcesRequest = convert(request.get_ref())?;
        Ok(Response::new(convert(&self.prepare(request).await)?))
    }

    async fn node_unprepare_resources(
        &self,
        request: Request<v1beta1::NodeUnprepareResourcesRequest>,
    ) -> Result<Response<v1beta1::NodeUnprepareResourcesResponse>, Status> {
        let request: v1::NodeUnprepareResourcesRequest = convert(request.get_ref())?;
        Ok(Response::new(convert(&self.unprepare(request).await)?))
    }
}

/// One device's health as the daemon's health signals see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHealthReport {
    pub pool: String,
    pub device: String,
    pub healthy: bool,
    /// Unix seconds of the check.
    pub checked_at: i64,
    pub message: String,
}

/// The health stream: every device's health at once, then again whenever
/// the daemon sends a new list on `reports`.
#[derive(Clone)]
pub struct DraHealthService {
    pub reports: watch::Receiver<Arc<Vec<DeviceHealthReport>>>,
}

fn health_message(reports: &[DeviceHealthReport]) -> NodeWatchResourcesResponse {
    NodeWatchResourcesResponse {
        devices: reports
            .iter()
            .map(|r| DeviceHealth {
                device: Some(DeviceIdentifier {
                    pool_name: r.pool.clone(),
                    device_name: r.device.clone(),
                }),
                health: if r.healthy {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unhealthy
                }
                .into(),
                last_updated_time: r.checked_at,
                health_check_timeout_seconds: 0,
                message: r.message.clone(),
            })
            .collect(),
    }
}

type HealthStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<NodeWatchResourcesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DraResourceHealth for DraHealthService {
    type NodeWatchResourcesStream = HealthStream;

    async fn node_watch_resources(
        &self,
        _request: Request<NodeWatchResourcesRequest>,
    ) -> Result<Response<Self::NodeWatchResourcesStream>, Status> {
        let mut reports = self.reports.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let message = health_message(&reports.borrow_and_update());
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = reports.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The health service as a server, for the DRA socket's router.
pub fn health_server(service: DraHealthService) -> DraResourceHealthServer<DraHealthService> {
    DraResourceHealthServer::new(service)
}

/// Everything the DRA socket serves: `DRAPlugin` in v1 and v1beta1 over
/// the same preparer, and the health stream when given. Serve it with
/// `kubelet_api::uds::serve` on [`dra_socket_path`].
pub fn dra_router<C: ClaimSource + 'static>(
    plugin: DraPluginService<C>,
    health: Option<DraHealthService>,
) -> Router {
    Server::builder()
        .add_service(v1::dra_plugin_server::DraPluginServer::new(plugin.clone()))
        .add_service(v1beta1::dra_plugin_server::DraPluginServer::new(plugin))
        .add_optional_service(health.map(health_server))
}

/// The registration socket's router: serve it on
/// [`registration_socket_path`] once the DRA socket listens.
pub fn registration_router(registration: DraRegistration) -> Router {
    Server::builder().add_service(RegistrationServer::new(registration))
}

/// The plugin-watcher registration of the DRA driver.
#[derive(Clone)]
pub struct DraRegistration {
    pub driver: String,
    /// Full path of the DRA socket, as the kubelet dials it on the node.
    pub endpoint: String,
    /// Whether the DRA socket serves `v1alpha1.DRAResourceHealth`.
    pub health: bool,
    pub verdicts: mpsc::UnboundedSender<RegistrationStatus>,
}

impl DraRegistration {
    /// Both `DRAPlugin` versions always (a 1.32 kubelet knows only
    /// v1beta1), and the health stream when served.
    pub fn supported_versions(&self) -> Vec<String> {
        let mut versions = vec![
            DRA_PLUGIN_SERVICE_V1.to_owned(),
            DRA_PLUGIN_SERVICE_V1BETA1.to_owned(),
        ];
        if self.health {
            versions.push(DRA_HEALTH_SERVICE_V1ALPHA1.to_owned());
        }
        versions
    }
}

#[tonic::async_trait]
impl Registration for DraRegistration {
    async fn get_info(
        &self,
        _request: Request<InfoRequest>,
    ) -> Result<Response<PluginInfo>, Status> {
        tracing::info!(driver = %self.driver, "kubelet plugin watcher asked for our DRA info");
        Ok(Response::new(PluginInfo {
            r#type: PLUGIN_TYPE_DRA_PLUGIN.into(),
            name: self.driver.clone(),
            endpoint: self.endpoint.clone(),
            supported_versions: self.supported_versions(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            tracing::info!(driver = %self.driver, "kubelet registered the DRA driver");
        } else {
            tracing::warn!(driver = %self.driver, error = %status.error, "kubelet refused the DRA driver");
        }
        let _ = self.verdicts.send(status);
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
