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

/// A bare HTTP/2 client, written frame by frame, that behaves like
/// kubelets before 1.26 and Python's grpc: it sends the socket path as
/// `:authority`. No Rust HTTP/2 client can (their URIs refuse it).
mod legacy_client {
    use std::error::Error;
    use std::path::Path;

    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const END_STREAM: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;

    pub struct Client {
        stream: UnixStream,
        decoder: loona_hpack::Decoder<'static>,
        next_stream: u32,
        authority: Vec<u8>,
    }

    /// What came back on one stream.
    #[derive(Debug, Default)]
    pub struct Reply {
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl Reply {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A string literal, no Huffman (lengths below 127 only: test data).
    fn string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }

    impl Client {
        pub async fn connect(socket: &Path) -> Result<Client, Box<dyn Error>> {
            let mut stream = UnixStream::connect(socket).await?;
            stream.write_all(PREFACE).await?;
            stream.write_all(&frame(SETTINGS, 0, 0, &[])).await?;
            Ok(Client {
                stream,
                decoder: loona_hpack::Decoder::new(),
                next_stream: 1,
                authority: socket.display().to_string().into_bytes(),
            })
        }

        /// One unary call. The first call indexes `:authority` (literal
        /// with incremental indexing, as grpc-go and grpc C-core do); later
        /// ones refer to it in the dynamic table (index 62).
        pub async fn unary(
            &mut self,
            path: &str,
            request: &impl Message,
        ) -> Result<Reply, Box<dyn Error>> {
            let id = self.next_stream;
            self.next_stream += 2;
            let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
            if id == 1 {
                block.push(0x41); // :authority, indexed name 1, incremental indexing
                let authority = self.authority.clone();
                string(&mut block, &authority);
            } else {
                block.push(0x80 | 62);
            }
            block.push(0x04); // :path, indexed name 4, without indexing
            string(&mut block, path.as_bytes());
            for (name, value) in [("content-type", "application/grpc"), ("te", "trailers")] {
                block.push(0x00);
                string(&mut block, name.as_bytes());
                string(&mut block, value.as_bytes());
            }
            let message = request.encode_to_vec();
            let mut body = vec![0u8];
            body.extend_from_slice(&(message.len() as u32).to_be_bytes());
            body.extend_from_slice(&message);
            self.stream
                .write_all(&frame(HEADERS, END_HEADERS, id, &block))
                .await?;
            self.stream
                .write_all(&frame(DATA, END_STREAM, id, &body))
                .await?;
            self.read_reply(id).await
        }

        async fn read_reply(&mut self, id: u32) -> Result<Reply, Box<dyn Error>> {
            let mut reply = Reply::default();
            loop {
                let mut header = [0u8; 9];
                self.stream.read_exact(&mut header).await?;
                let len = usize::from(header[0]) << 16
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]);
                let (kind, flags) = (header[3], header[4]);
                let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
                let mut payload = vec![0u8; len];
                self.stream.read_exact(&mut payload).await?;
                match kind {
                    SETTINGS if flags & ACK == 0 => {
                        self.stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await?;
                    }
                    // Decode every block in order: the server's encoder
                    // indexes too. (The server sends no CONTINUATION for
                    // blocks this small.)
                    HEADERS => {
                        let fields = self
                            .decoder
                            .decode(&payload)
                            .map_err(|e| format!("{e:?}"))?;
                        if stream == id {
                            for (n, v) in fields {
                                reply
                                    .headers
                                    .push((String::from_utf8(n)?, String::from_utf8(v)?));
                            }
                        }
                    }
                    DATA if stream == id => reply.body.extend_from_slice(&payload),
                    RST_STREAM if stream == id => {
                        return Err(format!("stream reset by the server: {payload:?}").into())
                    }
                    GOAWAY => return Err(format!("connection closed: {payload:?}").into()),
                    _ => {}
                }
                if stream == id && flags & END_STREAM != 0 && (kind == HEADERS || kind == DATA) {
                    return Ok(reply);
                }
            }
        }
    }
}

/// Kubelets before 1.26 and Python's grpc send the socket path as
/// `:authority`; h2 alone resets such streams with PROTOCOL_ERROR
/// (hyperium/tonic#243). Both calls on one connection are served, and the
/// service sees `localhost`.
#[tokio::test]
async fn client_sending_the_socket_path_as_authority_is_served() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("kubelet.sock");

        let authorities = Arc::new(Mutex::new(Vec::<Option<String>>::new()));
        let recorder = {
            let authorities = Arc::clone(&authorities);
            tower::util::MapRequestLayer::new(
                move |req: tonic::codegen::http::Request<tonic::body::Body>| {
                    if let Ok(mut seen) = authorities.lock() {
                        seen.push(req.uri().authority().map(|a| a.to_string()));
                    }
                    req
                },
            )
        };
        let (received_tx, mut received_rx) = mpsc::unbounded_channel();
        let listener = UdsListener::bind(&socket)?;
        let (shutdown, signal) = shutdown_signal();
        let router = Server::builder()
            .layer(recorder)
            .add_service(RegistrationServer::new(RecordingKubelet {
                received: received_tx,
            }));
        let server = tokio::spawn(uds::serve(router, listener, signal));

        let mut client = legacy_client::Client::connect(&socket).await?;
        for endpoint in ["first.sock", "second.sock"] {
            let sent = RegisterRequest {
                version: DEVICE_PLUGIN_API_VERSION.to_owned(),
                endpoint: endpoint.to_owned(),
                resource_name: "intel.com/intel_sriov_netdevice".to_owned(),
                options: None,
            };
            let reply = client
                .unary("/v1beta1.Registration/Register", &sent)
                .await?;
            assert_eq!(reply.header(":status"), Some("200"), "{reply:?}");
            assert_eq!(reply.header("grpc-status"), Some("0"), "{reply:?}");
            assert_eq!(received_rx.recv().await, Some(sent));
        }
        let seen = authorities.lock().map_err(|_| "recorder poisoned")?.clone();
        assert_eq!(
            seen,
            [Some("localhost".to_owned()), Some("localhost".to_owned())]
        );

        drop(client);
        stop(shutdown, server).await
    })
    .await
}

/// The control for the test above: the same client against tonic alone
/// (no relay) has its stream reset, so the test client does send what h2
/// refuses.
#[tokio::test]
async fn without_the_relay_h2_resets_the_socket_path_authority() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("kubelet.sock");
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(
            tokio::net::UnixListener::bind(&socket)?,
        );
        let (received_tx, _received_rx) = mpsc::unbounded_channel();
        let (shutdown, signal) = shutdown_signal();
        let server = tokio::spawn(
            Server::builder()
                .add_service(RegistrationServer::new(RecordingKubelet {
                    received: received_tx,
                }))
                .serve_with_incoming_shutdown(incoming, signal),
        );
        let mut client = legacy_client::Client::connect(&socket).await?;
        let err = client
            .unary(
                "/v1beta1.Registration/Register",
                &RegisterRequest::default(),
            )
            .await
            .err()
            .ok_or("h2 served the socket path as :authority: the relay is no longer needed")?;
        // RST_STREAM with error code 1, PROTOCOL_ERROR
        assert!(
            err.to_string()
                .contains("reset by the server: [0, 0, 0, 1]"),
            "{err}"
        );
        drop(client);
        let _ = shutdown.send(());
        server.await??;
        Ok(())
    })
    .await
}
