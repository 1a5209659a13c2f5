//! The gRPC services one pool's socket serves: `v1beta1.DevicePlugin`, and
//! in plugin-watcher mode `pluginregistration.Registration` beside it.

use super::allocate::{allocate_container, CdiMode};
use super::preferred::preferred_allocation;
use super::served::{PoolOwners, ServedPool};
use crate::kubelet_api::deviceplugin::v1beta1::{
    device_plugin_server::DevicePlugin, AllocateRequest, AllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, Empty, ListAndWatchResponse,
    NumaNode, PreStartContainerRequest, PreStartContainerResponse, PreferredAllocationRequest,
    PreferredAllocationResponse, TopologyInfo,
};
use crate::kubelet_api::pluginregistration::{
    registration_server::Registration, InfoRequest, PluginInfo, RegistrationStatus,
    RegistrationStatusResponse,
};
use crate::kubelet_api::{HEALTHY, PLUGIN_TYPE_DEVICE_PLUGIN, UNHEALTHY};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

/// Which of all our pools lists a device ID, for Allocate's "this ID
/// belongs to pool X" message.
pub type DeviceOwners = Arc<RwLock<PoolOwners>>;

/// The options we advertise: preferred allocation on, no PreStartContainer.
pub fn plugin_options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// The kubelet's view of a pool: every device, with health and NUMA node.
pub fn device_list(pool: &ServedPool) -> ListAndWatchResponse {
    ListAndWatchResponse {
        devices: pool
            .devices
            .iter()
            .map(|d| Device {
                id: d.id.to_string(),
                health: if d.healthy { HEALTHY } else { UNHEALTHY }.into(),
                topology: d.numa_node.map(|n| TopologyInfo {
                    nodes: vec![NumaNode { id: i64::from(n) }],
                }),
            })
            .collect(),
    }
}

/// One server instance's DevicePlugin service. `pool` carries every change
/// to the pool: a new value is one update to every open ListAndWatch.
#[derive(Clone)]
pub struct PoolService {
    pub pool: Arc<watch::Sender<Arc<ServedPool>>>,
    pub cdi: CdiMode,
    pub owners: DeviceOwners,
    /// Where the device-info files of allocated devices are written.
    pub devinfo_dir: Arc<std::path::PathBuf>,
    /// Flips to true when this server instance stops, ending its streams
    /// (a graceful shutdown would otherwise wait for them forever).
    pub stopping: watch::Receiver<bool>,
}

type UpdateStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for PoolService {
    type ListAndWatchStream = UpdateStream;

    async fn get_device_plugin_options(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(plugin_options()))
    }

    async fn list_and_watch(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut updates = self.pool.subscribe();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let resource = updates.borrow().resource_name.clone();
            tracing::info!(pool = %resource, "kubelet opened ListAndWatch");
            loop {
                let list = device_list(&updates.borrow_and_update());
                let count = list.devices.len();
                if tx.send(Ok(list)).await.is_err() {
                    tracing::info!(pool = %resource, "kubelet closed ListAndWatch");
                    return;
                }
                tracing::debug!(pool = %resource, devices = count, "sent device list");
                tokio::select! {
                    changed = updates.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => {
                        tracing::debug!(pool = %resource, "server stopping: ending ListAndWatch");
                        return;
                    }
                    _ = tx.closed() => {
                        tracing::info!(pool = %resource, "kubelet closed ListAndWatch");
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let pool = self.pool.borrow().clone();
        let mut response = PreferredAllocationResponse::default();
        for container in request.into_inner().container_requests {
            let size = usize::try_from(container.allocation_size).map_err(|_| {
                Status::invalid_argument(format!(
                    "allocation_size {} for pool {} is negative",
                    container.allocation_size, pool.resource_name
                ))
            })?;
            let ids = preferred_allocation(
                &pool,
                &container.available_device_i_ds,
                &container.must_include_device_i_ds,
                size,
            );
            tracing::info!(pool = %pool.resource_name, size, preferred = ?ids, "preferred allocation");
            response
                .container_responses
                .push(ContainerPreferredAllocationResponse { device_i_ds: ids });
        }
        Ok(Response::new(response))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let pool = self.pool.borrow().clone();
        // Read under the lock, not cloned: a copy of every device's owner
        // per call made Allocate's cost grow with the node's device count.
        // Nothing below awaits, so the guard never crosses an await.
        let no_owners = PoolOwners::default();
        let guard = self.owners.read();
        let owners = guard.as_deref().unwrap_or(&no_owners);
        let mut response = AllocateResponse::default();
        for container in request.into_inner().container_requests {
            match allocate_container(&pool, &container.devices_ids, self.cdi, owners) {
                Ok(answer) => {
                    // Multus reads a device's file when the CNI runs, after
                    // this answer: written now, not all of them at start.
                    let ids = container.devices_ids.iter().map(String::as_str);
                    if let Err(error) =
                        super::files::write_device_info_for(&self.devinfo_dir, &pool, ids)
                    {
                        tracing::error!(pool = %pool.resource_name, %error, "allocate failed: cannot write a device-info file");
                        return Err(Status::internal(error.to_string()));
                    }
                    tracing::info!(pool = %pool.resource_name, devices = ?container.devices_ids, "allocated");
                    response.container_responses.push(answer);
                }
                Err(error) => {
                    tracing::warn!(pool = %pool.resource_name, %error, "allocate refused");
                    // The kubelet's list may be stale: resend ours, as the
                    // API asks of a plugin whose Allocate fails.
                    self.pool.send_modify(|_| {});
                    return Err(Status::invalid_argument(error.to_string()));
                }
            }
        }
        Ok(Response::new(response))
    }

    async fn pre_start_container(
        &self,
        _request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// What the kubelet told us through `NotifyRegistrationStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherVerdict {
    pub registered: bool,
    pub error: String,
}

/// The plugin-watcher side of one pool's socket.
#[derive(Clone)]
pub struct WatcherRegistration {
    pub resource_name: String,
    /// Full path of the socket that serves DevicePlugin (this same socket).
    pub endpoint: String,
    pub verdicts: mpsc::UnboundedSender<WatcherVerdict>,
}

/// Versions upstream reports in plugin-watcher mode.
pub const WATCHER_SUPPORTED_VERSIONS: &[&str] = &["v1alpha1", "v1beta1"];

#[tonic::async_trait]
impl Registration for WatcherRegistration {
    async fn get_info(
        &self,
        _request: Request<InfoRequest>,
    ) -> Result<Response<PluginInfo>, Status> {
        tracing::info!(pool = %self.resource_name, "kubelet plugin watcher asked for our info");
        Ok(Response::new(PluginInfo {
            r#type: PLUGIN_TYPE_DEVICE_PLUGIN.into(),
            name: self.resource_name.clone(),
            endpoint: self.endpoint.clone(),
            supported_versions: WATCHER_SUPPORTED_VERSIONS
                .iter()
                .map(|v| v.to_string())
                .collect(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        let _ = self.verdicts.send(WatcherVerdict {
            registered: status.plugin_registered,
            error: status.error,
        });
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
