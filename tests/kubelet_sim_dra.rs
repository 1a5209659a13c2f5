//! The stand-in kubelet's DRA side against the real `DraPluginService` over
//! Unix sockets, with claims read by the `kube` client from the HTTP
//! stand-in API server: registration through the plugin watcher (the
//! service version a 1.34+ and a 1.32/1.33 kubelet pick), Prepare and
//! Unprepare with the files they write, refusals, and the deletion of the
//! node's ResourceSlices when the kubelet starts.

mod common;

use common::dra::{DraDriver, DRIVER, NETDEV_POOL, NODE, VFIO_POOL};
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use serde_json::{json, Value};
use sriov_rs::devtools::kubelet_dra::{DraService, DraSettings, NodeSlicesApi};
use sriov_rs::devtools::kubelet_sim::KubeletSim;
use sriov_rs::dra::api::{ApiError, DraApi};
use sriov_rs::dra::claims::ClaimRef;
use sriov_rs::dra::kube_api::{self, KubeDraApi, ResourceApiVersion};
use sriov_rs::dra::standin::{ApiServerStandin, HttpStandin};
use std::error::Error;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn Error>>;

const TEST_TIMEOUT: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

async fn within_timeout(body: impl Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(TEST_TIMEOUT, body).await?
}

/// A node with the DRA driver served on its sockets, and the cluster's
/// API server (the HTTP stand-in) it reads claims from.
struct DraNode {
    dir: tempfile::TempDir,
    server: HttpStandin,
    kubeconfig: PathBuf,
    driver: DraDriver,
}

impl DraNode {
    async fn start(versions: &[ResourceApiVersion]) -> Result<Self, Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let api = ApiServerStandin::new();
        api.put_node(NODE, "node-uid-1");
        let server = HttpStandin::start(api, "127.0.0.1:0".parse()?, versions).await?;
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig)?;
        let claims: Arc<dyn DraApi> = kube_api::connect(Some(&kubeconfig)).await?;
        let driver = DraDriver::serve(dir.path(), claims).await?;
        Ok(DraNode {
            dir,
            server,
            kubeconfig,
            driver,
        })
    }

    fn registry(&self) -> PathBuf {
        self.dir.path().join("plugins_registry")
    }

    /// A kubelet speaking `services`, deleting the node's slices at start
    /// through the `kube` client.
    async fn kubelet(&self, services: &[DraService]) -> Result<KubeletSim, Box<dyn Error>> {
        let api = KubeDraApi::connect(Some(&self.kubeconfig)).await?;
        let settings = DraSettings {
            services: services.to_vec(),
            node_slices: Some(NodeSlicesApi {
                node: NODE.into(),
                api: Arc::new(api),
            }),
        };
        Ok(KubeletSim::start_plugin_watcher_with(&self.registry(), settings).await?)
    }

    /// A claim as the scheduler leaves it: allocated one device.
    fn put_claim(&self, name: &str, uid: &str, pool: &str, device: &str) -> TestResult {
        let claim: ResourceClaim = serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov-vf"}}]}},
            "status": {"allocation": {"devices": {"results": [
                {"request": "vf", "driver": DRIVER, "pool": pool, "device": device}]}}}
        }))?;
        self.server.api().put_claim(claim);
        Ok(())
    }

    fn cdi_spec(&self, uid: &str) -> Result<Value, Box<dyn Error>> {
        let path = self
            .dir
            .path()
            .join("cdi")
            .join(format!("sriov-dra-{uid}.json"));
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    fn has_cdi_spec(&self, uid: &str) -> bool {
        self.dir
            .path()
            .join("cdi")
            .join(format!("sriov-dra-{uid}.json"))
            .exists()
    }
}

fn claim(name: &str, uid: &str) -> ClaimRef {
    ClaimRef {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
    }
}

async fn registered_as(
    kubelet: &KubeletSim,
    node: &mut DraNode,
    service: DraService,
) -> TestResult {
    let plugins = kubelet
        .wait_for_dra("the driver registered", WAIT, |p| {
            p.get(DRIVER).is_some_and(|v| v.service.is_some())
        })
        .await?;
    let view = &plugins[DRIVER];
    assert_eq!(view.service, Some(service));
    assert_eq!(view.registrations, 1);
    assert!(view.offered.iter().any(|o| o == "v1.DRAPlugin"));
    assert!(view.offered.iter().any(|o| o == "v1beta1.DRAPlugin"));
    let verdict = tokio::time::timeout(WAIT, node.driver.verdicts.recv())
        .await?
        .ok_or("no verdict")?;
    assert!(verdict.plugin_registered, "{verdict:?}");
    Ok(())
}

#[tokio::test]
async fn a_134_kubelet_registers_the_driver_in_v1_and_prepares_its_claims() -> TestResult {
    within_timeout(async {
        let mut node =
            DraNode::start(&[ResourceApiVersion::V1, ResourceApiVersion::V1beta1]).await?;
        let kubelet = node.kubelet(&DraService::ALL).await?;
        registered_as(&kubelet, &mut node, DraService::V1).await?;

        node.put_claim("net", "uid-net", NETDEV_POOL, "0000-3b-02-1")?;
        let answers = kubelet.prepare(DRIVER, &[claim("net", "uid-net")]).await?;
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].error, None);
        let device = &answers[0].devices[0];
        assert_eq!(device.pool_name, NETDEV_POOL);
        assert_eq!(device.device_name, "0000-3b-02-1");
        assert_eq!(device.request_names, ["vf"]);
        assert_eq!(
            device.cdi_device_ids,
            ["sriov-rs.invalid/vf=uid-net-0000-3b-02-1"]
        );
        let spec = node.cdi_spec("uid-net")?;
        assert_eq!(spec["devices"][0]["name"], "uid-net-0000-3b-02-1");
        assert_eq!(
            spec["devices"][0]["containerEdits"]["env"][0],
            "PCIDEVICE_INTEL_COM_SRIOV_NET=0000:3b:02.1"
        );
        // the kubelet calls Prepare again after it restarts: the same answer
        let again = kubelet.prepare(DRIVER, &[claim("net", "uid-net")]).await?;
        assert_eq!(again, answers);

        // a claim deleted and created again under the same name, and one
        // the API server does not have: each its own error, in order
        let answers = kubelet
            .prepare(
                DRIVER,
                &[claim("net", "uid-old"), claim("gone", "uid-gone")],
            )
            .await?;
        let errors: Vec<&str> = answers
            .iter()
            .map(|a| a.error.as_deref().unwrap_or_default())
            .collect();
        assert!(
            errors[0].contains("deleted and created again"),
            "{errors:?}"
        );
        assert!(errors[1].contains("not found"), "{errors:?}");

        let answers = kubelet
            .unprepare(
                DRIVER,
                &[claim("net", "uid-net"), claim("never", "uid-never")],
            )
            .await?;
        assert!(answers.iter().all(|a| a.error.is_none()), "{answers:?}");
        assert!(!node.has_cdi_spec("uid-net"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_133_kubelet_speaks_v1beta1_to_the_driver() -> TestResult {
    within_timeout(async {
        // a 1.33 cluster: the API server serves DRA in v1beta1 only too
        let mut node = DraNode::start(&[ResourceApiVersion::V1beta1]).await?;
        let kubelet = node.kubelet(&[DraService::V1beta1]).await?;
        registered_as(&kubelet, &mut node, DraService::V1beta1).await?;

        node.put_claim("dpdk", "uid-dpdk", VFIO_POOL, "0000-3b-03-0")?;
        let answers = kubelet
            .prepare(DRIVER, &[claim("dpdk", "uid-dpdk")])
            .await?;
        assert_eq!(answers[0].error, None);
        assert_eq!(
            answers[0].devices[0].cdi_device_ids,
            ["sriov-rs.invalid/vf=uid-dpdk-0000-3b-03-0"]
        );
        let spec = node.cdi_spec("uid-dpdk")?;
        assert_eq!(
            spec["devices"][0]["containerEdits"]["deviceNodes"][1]["path"],
            "/dev/vfio/50"
        );
        let answers = kubelet
            .unprepare(DRIVER, &[claim("dpdk", "uid-dpdk")])
            .await?;
        assert_eq!(answers[0].error, None);
        assert!(!node.has_cdi_spec("uid-dpdk"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_refused_driver_hears_why_and_cannot_be_called() -> TestResult {
    within_timeout(async {
        let mut node = DraNode::start(&[ResourceApiVersion::V1]).await?;
        // a kubelet that speaks none of the services the driver offers
        let kubelet = node.kubelet(&[]).await?;
        let verdict = tokio::time::timeout(WAIT, node.driver.verdicts.recv())
            .await?
            .ok_or("no verdict")?;
        assert!(!verdict.plugin_registered);
        assert!(
            verdict.error.contains("none of the offered services"),
            "{verdict:?}"
        );
        let view = &kubelet.dra_plugins()[DRIVER];
        assert_eq!((view.service, view.rejections), (None, 1));
        let call = kubelet.prepare(DRIVER, &[claim("net", "uid-net")]).await;
        assert!(
            matches!(&call, Err(e) if e.to_string().contains("not registered")),
            "{call:?}"
        );
        Ok(())
    })
    .await
}

fn slice(name: &str, node: &str, driver: &str) -> ResourceSlice {
    let mut slice = ResourceSlice::default();
    slice.metadata.name = Some(name.into());
    slice.spec.driver = driver.into();
    slice.spec.node_name = Some(node.into());
    slice.spec.pool.name = format!("{node}/pool");
    slice.spec.pool.resource_slice_count = 1;
    slice
}

#[tokio::test]
async fn a_starting_kubelet_deletes_the_nodes_slices() -> TestResult {
    within_timeout(async {
        let mut node = DraNode::start(&[ResourceApiVersion::V1]).await?;
        let api = node.server.api().clone();
        api.create_slice(slice("ours", NODE, DRIVER))?;
        api.create_slice(slice("gpu", NODE, "gpu.example.com"))?;
        api.create_slice(slice("elsewhere", "worker-2", DRIVER))?;
        let kubelet = node.kubelet(&DraService::ALL).await?;
        assert_eq!(kubelet.wiped().cloned(), Some(Ok(2)));
        registered_as(&kubelet, &mut node, DraService::V1).await?;
        let left: Vec<String> = api
            .list_slices(None, None)
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        assert_eq!(left, ["elsewhere"]);
        drop(kubelet);

        // an API server that is down does not keep the kubelet from
        // starting and registering the driver
        node.server.take_down().await;
        let kubelet = node.kubelet(&DraService::ALL).await?;
        assert!(
            matches!(kubelet.wiped(), Some(Err(ApiError::Unavailable(_)))),
            "{:?}",
            kubelet.wiped()
        );
        registered_as(&kubelet, &mut node, DraService::V1).await?;
        Ok(())
    })
    .await
}
