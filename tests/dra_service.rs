//! The DRA kubelet plugin over a real Unix socket: a tonic client plays the
//! kubelet (v1 and v1beta1), an in-test claim source plays the API server,
//! and the files Prepare writes are read back and checked.

mod common;

use common::dra::{served_pools, DRIVER, NETDEV_POOL, NODE, VFIO_POOL};
use std::collections::HashMap;
use std::error::Error;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sriov_rs::dra::claims::{AllocatedDevice, ClaimSource, ClaimSourceError, ClaimView};
use sriov_rs::dra::inventory::DraInventory;
use sriov_rs::dra::prepare::{PrepareSettings, Preparer};
use sriov_rs::dra::service::{
    dra_router, dra_socket_path, registration_router, registration_socket_path, DeviceHealthReport,
    DraHealthService, DraPluginService, DraRegistration,
};
use sriov_rs::kubelet_api::dra::{v1, v1beta1};
use sriov_rs::kubelet_api::dra_health::v1alpha1::{
    dra_resource_health_client::DraResourceHealthClient, HealthStatus, NodeWatchResourcesRequest,
};
use sriov_rs::kubelet_api::pluginregistration::{
    registration_client::RegistrationClient, InfoRequest, RegistrationStatus,
};
use sriov_rs::kubelet_api::uds::{self, UdsListener};
use tokio::sync::{mpsc, oneshot};

type TestResult = Result<(), Box<dyn Error>>;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn within_timeout(body: impl Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(TEST_TIMEOUT, body).await?
}

/// The API server's claims: (namespace, name) → claim.
#[derive(Default, Clone)]
struct Claims(Arc<Mutex<HashMap<(String, String), ClaimView>>>);

impl Claims {
    fn put(&self, name: &str, uid: &str, devices: &[(&str, &str, &str)]) {
        let view = ClaimView {
            uid: uid.into(),
            allocated: true,
            devices: devices
                .iter()
                .map(|(driver, pool, device)| AllocatedDevice {
                    request: "vf".into(),
                    driver: driver.to_string(),
                    pool: pool.to_string(),
                    device: device.to_string(),
                })
                .collect(),
        };
        if let Ok(mut claims) = self.0.lock() {
            claims.insert(("default".into(), name.into()), view);
        }
    }
}

impl ClaimSource for Claims {
    async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ClaimView>, ClaimSourceError> {
        let claims = self.0.lock().map_err(|_| ClaimSourceError::Unavailable {
            namespace: namespace.into(),
            name: name.into(),
            message: "poisoned".into(),
        })?;
        Ok(claims.get(&(namespace.into(), name.into())).cloned())
    }
}

struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    claims: Claims,
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), uds::UdsError>>>,
}

impl Node {
    fn settings(root: &Path) -> PrepareSettings {
        PrepareSettings {
            driver: DRIVER.into(),
            node: NODE.into(),
            cdi_dir: root.join("cdi"),
            devinfo_dir: root.join("devinfo"),
            checkpoint: root.join("plugins").join(DRIVER).join("checkpoint.json"),
        }
    }

    /// Start (or restart) the DRA server over the node's directory.
    async fn start(
        root: PathBuf,
        claims: Claims,
        dir: tempfile::TempDir,
    ) -> Result<Self, Box<dyn Error>> {
        let inventory = DraInventory::new(NODE, &served_pools()?);
        let (preparer, mismatches) = Preparer::start(Self::settings(&root), inventory)?;
        assert!(mismatches.is_empty(), "{mismatches:?}");
        let service = DraPluginService {
            preparer: Arc::new(tokio::sync::Mutex::new(preparer)),
            claims: Arc::new(claims.clone()),
            pod_resources: None,
        };
        let socket = dra_socket_path(&root.join("plugins"), DRIVER);
        std::fs::create_dir_all(socket.parent().ok_or("no parent")?)?;
        let listener = UdsListener::bind(&socket)?;
        let router = dra_router(service, None);
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn(uds::serve(router, listener, async {
            let _ = stopped.await;
        }));
        Ok(Node {
            _dir: dir,
            root,
            claims,
            socket,
            stop: Some(stop),
            server: Some(server),
        })
    }

    async fn new() -> Result<Self, Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_owned();
        Self::start(root, Claims::default(), dir).await
    }

    /// Stop the server and start a new one (a daemon restart) on the same dirs.
    async fn restart(mut self) -> Result<Self, Box<dyn Error>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await??;
        }
        let Node {
            _dir, root, claims, ..
        } = self;
        Self::start(root, claims, _dir).await
    }

    async fn v1(
        &self,
    ) -> Result<v1::dra_plugin_client::DraPluginClient<tonic::transport::Channel>, Box<dyn Error>>
    {
        Ok(v1::dra_plugin_client::DraPluginClient::new(
            uds::connect(&self.socket).await?,
        ))
    }

    fn spec(&self, uid: &str) -> Result<Value, Box<dyn Error>> {
        let path = self.root.join("cdi").join(format!("sriov-dra-{uid}.json"));
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    fn devinfo(&self, file: &str) -> PathBuf {
        self.root.join("devinfo").join(file)
    }
}

fn claim(name: &str, uid: &str) -> v1::Claim {
    v1::Claim {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
    }
}

async fn prepare(
    node: &Node,
    claims: Vec<v1::Claim>,
) -> Result<HashMap<String, v1::NodePrepareResourceResponse>, Box<dyn Error>> {
    let response = node
        .v1()
        .await?
        .node_prepare_resources(v1::NodePrepareResourcesRequest { claims })
        .await?
        .into_inner();
    Ok(response.claims)
}

async fn unprepare(
    node: &Node,
    claims: Vec<v1::Claim>,
) -> Result<HashMap<String, v1::NodeUnprepareResourceResponse>, Box<dyn Error>> {
    let response = node
        .v1()
        .await?
        .node_unprepare_resources(v1::NodeUnprepareResourcesRequest { claims })
        .await?
        .into_inner();
    Ok(response.claims)
}

#[tokio::test]
async fn prepare_netdev_claim_writes_cdi_env_and_device_info() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims.put("net", "uid-net", &[(DRIVER, NETDEV_POOL, "0000-3b-02-1")]);
        let answers = prepare(&node, vec![claim("net", "uid-net")]).await?;
        let answer = &answers["uid-net"];
        assert_eq!(answer.error, "");
        assert_eq!(answer.devices.len(), 1);
        let device = &answer.devices[0];
        assert_eq!(device.pool_name, NETDEV_POOL);
        assert_eq!(device.device_name, "0000-3b-02-1");
        assert_eq!(device.request_names, ["vf"]);
        assert_eq!(device.cdi_device_ids, ["sriov-rs.invalid/vf=uid-net-0000-3b-02-1"]);

        // The same env vars Allocate gives for that device; a kernel netdev
        // needs no device node.
        let spec = node.spec("uid-net")?;
        assert_eq!(
            spec,
            json!({"cdiVersion": "0.5.0", "kind": "sriov-rs.invalid/vf", "devices": [
                {"name": "uid-net-0000-3b-02-1", "containerEdits": {"env": [
                    "PCIDEVICE_INTEL_COM_SRIOV_NET=0000:3b:02.1",
                    "PCIDEVICE_INTEL_COM_SRIOV_NET_INFO={\"0000:3b:02.1\":{\"generic\":{\"deviceID\":\"0000:3b:02.1\"}}}",
                ]}}]})
        );
        // The device-info file the CNI reads, where the device plugin puts it.
        let info: Value = serde_json::from_str(&std::fs::read_to_string(
            node.devinfo("intel.com-sriov_net-0000:3b:02.1-device.json"),
        )?)?;
        assert_eq!(
            info,
            json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:3b:02.1", "pf-pci-address": "0000:3b:00.0"}})
        );

        // Unprepare removes both; a second Unprepare is a success too.
        let answers = unprepare(&node, vec![claim("net", "uid-net")]).await?;
        assert_eq!(answers["uid-net"].error, "");
        assert!(!node.root.join("cdi/sriov-dra-uid-net.json").exists());
        assert!(!node.devinfo("intel.com-sriov_net-0000:3b:02.1-device.json").exists());
        let answers = unprepare(&node, vec![claim("net", "uid-net")]).await?;
        assert_eq!(answers["uid-net"].error, "");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn prepare_vfio_claim_over_v1beta1_has_device_nodes() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims.put("dpdk", "uid-dpdk", &[(DRIVER, VFIO_POOL, "0000-3b-03-0")]);
        let mut client =
            v1beta1::dra_plugin_client::DraPluginClient::new(uds::connect(&node.socket).await?);
        let response = client
            .node_prepare_resources(v1beta1::NodePrepareResourcesRequest {
                claims: vec![v1beta1::Claim {
                    namespace: "default".into(),
                    name: "dpdk".into(),
                    uid: "uid-dpdk".into(),
                }],
            })
            .await?
            .into_inner();
        let answer = &response.claims["uid-dpdk"];
        assert_eq!(answer.error, "");
        assert_eq!(answer.devices[0].cdi_device_ids, ["sriov-rs.invalid/vf=uid-dpdk-0000-3b-03-0"]);
        let spec = node.spec("uid-dpdk")?;
        let edits = &spec["devices"][0]["containerEdits"];
        assert_eq!(
            edits["deviceNodes"],
            json!([
                {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
                {"path": "/dev/vfio/50", "hostPath": "/dev/vfio/50", "permissions": "rw"},
            ])
        );
        assert_eq!(
            edits["env"],
            json!([
                "PCIDEVICE_INTEL_COM_SRIOV_DPDK=0000:3b:03.0",
                "PCIDEVICE_INTEL_COM_SRIOV_DPDK_INFO={\"0000:3b:03.0\":{\"generic\":{\"deviceID\":\"0000:3b:03.0\"},\"vfio\":{\"dev-mount\":\"/dev/vfio/50\",\"mount\":\"/dev/vfio/vfio\"}}}",
            ])
        );
        let response = client
            .node_unprepare_resources(v1beta1::NodeUnprepareResourcesRequest {
                claims: vec![v1beta1::Claim {
                    namespace: "default".into(),
                    name: "dpdk".into(),
                    uid: "uid-dpdk".into(),
                }],
            })
            .await?
            .into_inner();
        assert_eq!(response.claims["uid-dpdk"].error, "");
        assert!(!node.root.join("cdi/sriov-dra-uid-dpdk.json").exists());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn prepare_is_idempotent() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims
            .put("net", "uid-net", &[(DRIVER, NETDEV_POOL, "0000-3b-02-0")]);
        let first = prepare(&node, vec![claim("net", "uid-net")]).await?;
        std::fs::remove_file(node.root.join("cdi/sriov-dra-uid-net.json"))?;
        // A retry after the files were lost: same answer, files back, even
        // though the API server no longer has the claim.
        node.claims.0.lock().map_err(|_| "poisoned")?.clear();
        let second = prepare(&node, vec![claim("net", "uid-net")]).await?;
        assert_eq!(first, second);
        assert_eq!(second["uid-net"].error, "");
        assert!(node.spec("uid-net").is_ok());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn bad_claims_get_their_own_errors_and_good_ones_are_prepared() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims
            .put("good", "uid-good", &[(DRIVER, NETDEV_POOL, "0000-3b-02-0")]);
        // deleted and created again: the API server has another UID
        node.claims.put(
            "recreated",
            "uid-new",
            &[(DRIVER, NETDEV_POOL, "0000-3b-02-1")],
        );
        node.claims.put(
            "gpu",
            "uid-gpu",
            &[("gpu.example.com", "worker-1/gpus", "gpu-0")],
        );
        node.claims.put(
            "elsewhere",
            "uid-else",
            &[(DRIVER, "worker-2/intel.com/sriov-net", "0000-3b-02-1")],
        );
        let answers = prepare(
            &node,
            vec![
                claim("good", "uid-good"),
                claim("recreated", "uid-old"),
                claim("gpu", "uid-gpu"),
                claim("elsewhere", "uid-else"),
                claim("missing", "uid-missing"),
            ],
        )
        .await?;
        assert_eq!(answers.len(), 5);
        assert_eq!(answers["uid-good"].error, "");
        let error = |uid: &str| answers[uid].error.clone();
        assert!(
            error("uid-old").contains("UID uid-new"),
            "{}",
            error("uid-old")
        );
        assert!(
            error("uid-gpu").contains("no device of driver sriov-rs.invalid"),
            "{}",
            error("uid-gpu")
        );
        assert!(
            error("uid-else").contains("is not a device of node worker-1"),
            "{}",
            error("uid-else")
        );
        assert!(
            error("uid-missing").contains("not found"),
            "{}",
            error("uid-missing")
        );
        for uid in ["uid-old", "uid-gpu", "uid-else", "uid-missing"] {
            assert!(answers[uid].devices.is_empty());
            assert!(!node.root.join(format!("cdi/sriov-dra-{uid}.json")).exists());
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn restart_answers_from_the_checkpoint() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims
            .put("net", "uid-net", &[(DRIVER, NETDEV_POOL, "0000-3b-02-0")]);
        let before = prepare(&node, vec![claim("net", "uid-net")]).await?;
        // The claim is gone from the API server: only the checkpoint knows it.
        node.claims.0.lock().map_err(|_| "poisoned")?.clear();
        let node = node.restart().await?;
        let after = prepare(&node, vec![claim("net", "uid-net")]).await?;
        assert_eq!(before, after);
        let answers = unprepare(&node, vec![claim("net", "uid-net")]).await?;
        assert_eq!(answers["uid-net"].error, "");
        assert!(!node.root.join("cdi/sriov-dra-uid-net.json").exists());
        let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(
            node.root
                .join("plugins")
                .join(DRIVER)
                .join("checkpoint.json"),
        )?)?;
        assert_eq!(checkpoint["claims"], json!({}));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn registration_offers_both_versions_and_the_endpoint() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = registration_socket_path(dir.path(), DRIVER);
        assert_eq!(
            socket.file_name().and_then(|n| n.to_str()),
            Some("sriov-rs.invalid-reg.sock")
        );
        let (verdicts, mut heard) = mpsc::unbounded_channel();
        let registration = DraRegistration {
            driver: DRIVER.into(),
            endpoint: "/var/lib/kubelet/plugins/sriov-rs.invalid/dra.sock".into(),
            health: true,
            verdicts,
        };
        let listener = UdsListener::bind(&socket)?;
        let router = registration_router(registration);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(uds::serve(router, listener, async {
            let _ = stopped.await;
        }));
        let mut client = RegistrationClient::new(uds::connect(&socket).await?);
        let info = client.get_info(InfoRequest {}).await?.into_inner();
        assert_eq!(info.r#type, "DRAPlugin");
        assert_eq!(info.name, DRIVER);
        assert_eq!(
            info.endpoint,
            "/var/lib/kubelet/plugins/sriov-rs.invalid/dra.sock"
        );
        assert_eq!(
            info.supported_versions,
            [
                "v1.DRAPlugin",
                "v1beta1.DRAPlugin",
                "v1alpha1.DRAResourceHealth"
            ]
        );
        client
            .notify_registration_status(RegistrationStatus {
                plugin_registered: false,
                error: "no".into(),
            })
            .await?;
        let verdict = heard.recv().await.ok_or("no verdict")?;
        assert!(!verdict.plugin_registered);
        assert_eq!(verdict.error, "no");
        let _ = stop.send(());
        server.await??;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn health_stream_sends_the_list_then_every_change() -> TestResult {
    within_timeout(async {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("dra.sock");
        let report = |healthy: bool| DeviceHealthReport {
            pool: NETDEV_POOL.into(),
            device: "0000-3b-02-0".into(),
            healthy,
            checked_at: 1_700_000_000,
            message: if healthy {
                String::new()
            } else {
                "PF ens1f0 has no carrier".into()
            },
        };
        let (reports, watched) = tokio::sync::watch::channel(Arc::new(vec![report(true)]));
        let listener = UdsListener::bind(&socket)?;
        // the health stream beside a DRAPlugin service, as the daemon serves it
        let (preparer, _) = Preparer::start(Node::settings(dir.path()), DraInventory::default())?;
        let plugin = DraPluginService {
            preparer: Arc::new(tokio::sync::Mutex::new(preparer)),
            claims: Arc::new(Claims::default()),
            pod_resources: None,
        };
        let router = dra_router(plugin, Some(DraHealthService { reports: watched }));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(uds::serve(router, listener, async {
            let _ = stopped.await;
        }));
        let mut client = DraResourceHealthClient::new(uds::connect(&socket).await?);
        let mut stream = client
            .node_watch_resources(NodeWatchResourcesRequest {})
            .await?
            .into_inner();
        let first = stream.message().await?.ok_or("stream ended")?;
        assert_eq!(first.devices.len(), 1);
        let device = &first.devices[0];
        assert_eq!(device.health, i32::from(HealthStatus::Healthy));
        let id = device.device.as_ref().ok_or("no device id")?;
        assert_eq!(
            (id.pool_name.as_str(), id.device_name.as_str()),
            (NETDEV_POOL, "0000-3b-02-0")
        );
        assert_eq!(device.last_updated_time, 1_700_000_000);

        reports.send(Arc::new(vec![report(false)]))?;
        let second = stream.message().await?.ok_or("stream ended")?;
        assert_eq!(second.devices[0].health, i32::from(HealthStatus::Unhealthy));
        assert_eq!(second.devices[0].message, "PF ens1f0 has no carrier");
        drop(stream);
        let _ = stop.send(());
        server.await??;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn two_devices_of_one_request_share_the_env_list() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims.put(
            "pair",
            "uid-pair",
            &[
                (DRIVER, NETDEV_POOL, "0000-3b-02-0"),
                (DRIVER, NETDEV_POOL, "0000-3b-02-1"),
            ],
        );
        let answers = prepare(&node, vec![claim("pair", "uid-pair")]).await?;
        assert_eq!(answers["uid-pair"].error, "");
        assert_eq!(answers["uid-pair"].devices.len(), 2);
        let spec = node.spec("uid-pair")?;
        let devices = spec["devices"].as_array().ok_or("no devices")?;
        assert_eq!(devices.len(), 2);
        for device in devices {
            // as Allocate gives one container both devices of the pool
            assert_eq!(
                device["containerEdits"]["env"][0],
                "PCIDEVICE_INTEL_COM_SRIOV_NET=0000:3b:02.0,0000:3b:02.1"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn both_versions_give_the_same_answer_for_one_claim() -> TestResult {
    within_timeout(async {
        let node = Node::new().await?;
        node.claims
            .put("net", "uid-net", &[(DRIVER, NETDEV_POOL, "0000-3b-02-0")]);
        // a 1.33 kubelet prepares it, and after an upgrade to 1.34 the new
        // kubelet prepares it again through v1
        let mut beta =
            v1beta1::dra_plugin_client::DraPluginClient::new(uds::connect(&node.socket).await?);
        let from_beta = beta
            .node_prepare_resources(v1beta1::NodePrepareResourcesRequest {
                claims: vec![v1beta1::Claim {
                    namespace: "default".into(),
                    name: "net".into(),
                    uid: "uid-net".into(),
                }],
            })
            .await?
            .into_inner();
        let from_v1 = prepare(&node, vec![claim("net", "uid-net")]).await?;
        let beta_device = &from_beta.claims["uid-net"].devices[0];
        let v1_device = &from_v1["uid-net"].devices[0];
        assert_eq!(beta_device.cdi_device_ids, v1_device.cdi_device_ids);
        assert_eq!(beta_device.request_names, v1_device.request_names);
        assert_eq!(
            (&beta_device.pool_name, &beta_device.device_name),
            (&v1_device.pool_name, &v1_device.device_name)
        );
        Ok(())
    })
    .await
}
