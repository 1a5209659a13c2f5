//! Real gRPC over real Unix sockets in a temp dir: the generated kubelet API
//! code and the `uds` helpers, end to end, with both peers in this process.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sriov_rs::kubelet_api::deviceplugin::v1beta1::{
    device_plugin_client::DevicePluginClient,
    device_plugin_server::{DevicePlugin, DevicePluginServer},
    registration_client::RegistrationClient,
    registration_server::{Registration, RegistrationServer},
    AllocateRequest, AllocateResponse, Device, DevicePluginOptions, Empty, ListAndWatchResponse,
    NumaNode, PreStartContainerRequest, PreStartContainerResponse, PreferredAllocationRequest,
    PreferredAllocationResponse, RegisterRequest, TopologyInfo,
};
use sriov_rs::kubelet_api::uds::{self, UdsError, UdsListener};
use sriov_rs::kubelet_api::{DEVICE_PLUGIN_API_VERSION, HEALTHY, UNHEALTHY};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

type TestResult = Result<(), Box<dyn Error>>;

/// Every test body runs under this limit, so a hung peer fails the test
/// instead of hanging the suite.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn within_timeout(body: impl Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(TEST_TIMEOUT, body).await?
}

/// A stand-in kubelet `Registration` service that hands every request it
/// receives to the test.
struct RecordingKubelet {
    received: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for RecordingKubelet {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        self.received
            .send(request.into_inner())
            .map_err(|_| Status::internal("test dropped its receiver"))?;
        Ok(Response::new(Empty {}))
    }
}

/// A device plugin whose ListAndWatch plays back a fixed list of updates and
/// then ends the stream; the other calls are not under test.
struct ScriptedPlugin {
    updates: Vec<ListAndWatchResponse>,
}

type UpdateStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for ScriptedPlugin {
    type ListAndWatchStream = UpdateStream;

    async fn get_device_plugin_options(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Err(Status::unimplemented("not under test"))
    }

    async fn list_and_watch(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let updates = self.updates.clone().into_iter().map(Ok);
        Ok(Response::new(Box::pin(tokio_stream::iter(updates))))
    }

    async fn get_preferred_allocation(
        &self,
        _request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        Err(Status::unimplemented("not under test"))
    }

    async fn allocate(
        &self,
        _request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        Err(Status::unimplemented("not under test"))
    }

    async fn pre_start_container(
        &self,
        _request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Err(Status::unimplemented("not under test"))
    }
}

/// Stops a server started by a test and returns how it ended.
async fn stop(
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), UdsError>>,
) -> TestResult {
    // The server may already be gone if it failed; its result says why.
    let _ = shutdown.send(());
    server.await??;
    Ok(())
}

fn shutdown_signal() -> (oneshot::Sender<()>, impl Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        // A dropped sender also means "stop".
        let _ = rx.await;
    })
}

#[tokio::test]
async fn register_request_reaches_kubelet_unchanged() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("kubelet.sock");

        let (received_tx, mut received_rx) = mpsc::unbounded_channel();
        let kubelet = RecordingKubelet {
            received: received_tx,
        };
        let listener = UdsListener::bind(&socket)?;
        let (shutdown, signal) = shutdown_signal();
        let router = Server::builder().add_service(RegistrationServer::new(kubelet));
        let server = tokio::spawn(uds::serve(router, listener, signal));

        let sent = RegisterRequest {
            version: DEVICE_PLUGIN_API_VERSION.to_owned(),
            endpoint: "sriov-intel_sriov_netdevice.sock".to_owned(),
            resource_name: "intel.com/intel_sriov_netdevice".to_owned(),
            options: Some(DevicePluginOptions {
                pre_start_required: false,
                get_preferred_allocation_available: true,
            }),
        };
        let mut client = RegistrationClient::new(uds::connect(&socket).await?);
        client.register(sent.clone()).await?;

        let got = received_rx.recv().await.ok_or("kubelet saw no request")?;
        assert_eq!(got, sent);
        assert_eq!(got.version, "v1beta1");
        assert!(
            received_rx.try_recv().is_err(),
            "kubelet saw more than one Register call"
        );

        stop(shutdown, server).await
    })
    .await
}

#[tokio::test]
async fn list_and_watch_streams_every_update_on_the_kubelet_path() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("plugin.sock");

        let updates = vec![
            ListAndWatchResponse {
                devices: vec![
                    Device {
                        id: "0000:3b:02.0".to_owned(),
                        health: HEALTHY.to_owned(),
                        topology: Some(TopologyInfo {
                            nodes: vec![NumaNode { id: 0 }],
                        }),
                    },
                    Device {
                        id: "0000:3b:02.1".to_owned(),
                        health: HEALTHY.to_owned(),
                        topology: None,
                    },
                ],
            },
            ListAndWatchResponse {
                devices: vec![Device {
                    id: "0000:3b:02.0".to_owned(),
                    health: UNHEALTHY.to_owned(),
                    topology: Some(TopologyInfo {
                        nodes: vec![NumaNode { id: 1 }],
                    }),
                }],
            },
        ];

        // Record the HTTP/2 path of every request the server receives: the
        // kubelet calls fixed paths, so the proto package must produce them.
        let paths = Arc::new(Mutex::new(Vec::<String>::new()));
        let recorder = {
            let paths = Arc::clone(&paths);
            tower::util::MapRequestLayer::new(
                move |req: tonic::codegen::http::Request<tonic::body::Body>| {
                    if let Ok(mut paths) = paths.lock() {
                        paths.push(req.uri().path().to_owned());
                    }
                    req
                },
            )
        };

        let listener = UdsListener::bind(&socket)?;
        let (shutdown, signal) = shutdown_signal();
        let router = Server::builder()
            .layer(recorder)
            .add_service(DevicePluginServer::new(ScriptedPlugin {
                updates: updates.clone(),
            }));
        let server = tokio::spawn(uds::serve(router, listener, signal));

        let mut client = DevicePluginClient::new(uds::connect(&socket).await?);
        let mut stream = client.list_and_watch(Empty {}).await?.into_inner();
        let mut seen = Vec::new();
        while let Some(update) = stream.message().await? {
            seen.push(update);
        }
        assert_eq!(seen, updates);

        let paths = paths.lock().map_err(|_| "path recorder poisoned")?.clone();
        assert_eq!(paths, ["/v1beta1.DevicePlugin/ListAndWatch"]);

        stop(shutdown, server).await
    })
    .await
}

#[tokio::test]
async fn bind_replaces_a_stale_socket() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("plugin.sock");

        // Dropping a listener leaves its socket file behind, as a crash would.
        drop(UdsListener::bind(&socket)?);
        assert!(socket.exists());

        let (received_tx, mut received_rx) = mpsc::unbounded_channel();
        let listener = UdsListener::bind(&socket)?;
        let (shutdown, signal) = shutdown_signal();
        let router = Server::builder().add_service(RegistrationServer::new(RecordingKubelet {
            received: received_tx,
        }));
        let server = tokio::spawn(uds::serve(router, listener, signal));

        let mut client = RegistrationClient::new(uds::connect(&socket).await?);
        client.register(RegisterRequest::default()).await?;
        assert_eq!(received_rx.recv().await, Some(RegisterRequest::default()));

        stop(shutdown, server).await
    })
    .await
}

#[tokio::test]
async fn bind_refuses_to_delete_a_regular_file() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("not-a-socket.sock");
        std::fs::write(&path, b"keep me")?;

        let err = UdsListener::bind(&path).err().ok_or("bind succeeded")?;
        assert!(matches!(err, UdsError::NotASocket { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path)?, b"keep me");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn connect_to_a_missing_socket_names_the_path() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kubelet.sock");

        let err = uds::connect(&path).await.err().ok_or("connect succeeded")?;
        assert!(matches!(err, UdsError::Connect { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        // The io error from the dial is carried into the one-line message.
        assert!(message.contains("No such file or directory"), "{message}");
        Ok(())
    })
    .await
}
