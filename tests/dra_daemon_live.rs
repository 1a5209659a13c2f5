//! One daemon serving one pool through the device plugin API and another
//! through DRA, on the live simulated node (root): the stand-in kubelet
//! follows the device plugin pools, a tonic client over the DRA sockets
//! plays the kubelet's DRA side (plugin watcher, `DRAPlugin` v1 and
//! v1beta1), and the in-process API server stand-in holds the slices and
//! claims. Checked: registration, slices, Prepare content equal to what
//! Allocate gives, restarts (daemon, kubelet, API server late), and a pool
//! moved to DRA while a pod holds one of its VFs: nothing handed out twice.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{require_root, two_pf_layout, SimFixture};
use k8s_openapi::api::resource::v1::{
    AllocationResult, DeviceAllocationResult, DeviceRequestAllocationResult, ResourceClaim,
    ResourceClaimStatus, ResourceSlice,
};
use serde_json::Value;
use sriov_rs::deviceplugin::allocate::allocate_container;
use sriov_rs::deviceplugin::daemon::{load_config, scan_with};
use sriov_rs::deviceplugin::served::PoolOwners;
use sriov_rs::deviceplugin::{CdiMode, Control, Daemon, RegistrationMode, Settings};
use sriov_rs::devtools::kubelet_sim::KubeletSim;
use sriov_rs::devtools::sim;
use sriov_rs::dra::api::DraApi;
use sriov_rs::dra::node_plugin::{ApiConnector, DraSettings};
use sriov_rs::dra::standin::ApiServerStandin;
use sriov_rs::kubelet_api::deviceplugin::v1beta1::Device;
use sriov_rs::kubelet_api::dra::{v1, v1beta1};
use sriov_rs::kubelet_api::dra_health::v1alpha1::{
    dra_resource_health_client::DraResourceHealthClient, HealthStatus, NodeWatchResourcesRequest,
};
use sriov_rs::kubelet_api::pluginregistration::{
    registration_client::RegistrationClient, InfoRequest, PluginInfo, RegistrationStatus,
};
use sriov_rs::kubelet_api::uds;
use sriov_rs::sysfs::SysfsRoot;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const DRIVER: &str = "sriov-rs.invalid";
const NODE: &str = "worker-1";
const NODE_UID: &str = "3f6e0a52-node-uid";
const E810: &str = "intel.com/e810";
const CX: &str = "intel.com/cx";
const E810_POOL: &str = "worker-1/intel.com/e810";
const CX_POOL: &str = "worker-1/intel.com/cx";

/// PF `<tag>a`'s iavf VFs in pool e810 (through `e810_api`), PF `<tag>b`'s
/// two ConnectX VFs (RDMA) in pool cx, through DRA.
fn config(tag: &str, e810_api: &str) -> String {
    format!(
        r#"{{"resourceList": [
  {{"resourceName": "e810", "allocationApi": "{e810_api}", "selectors": {{"pfNames": ["{tag}a"], "drivers": ["iavf"]}}}},
  {{"resourceName": "cx", "allocationApi": "dra", "selectors": {{"pfNames": ["{tag}b"], "isRdma": true}}}}
]}}"#
    )
}

struct Setup {
    node: SimFixture,
    dir: tempfile::TempDir,
    kubelet: KubeletSim,
    api: ApiServerStandin,
    /// How often the daemon asked for its API handle.
    connects: Arc<AtomicUsize>,
    /// `--health-addr`, when a test looks at `/readyz`.
    health: Option<std::net::SocketAddr>,
    daemon: Option<(mpsc::Sender<Control>, tokio::task::JoinHandle<()>)>,
}

impl Setup {
    /// The node, the stand-in kubelet (device plugins and PodResources) and
    /// API server; the daemon is not started yet.
    async fn new(e810_api: &str) -> Setup {
        let node = SimFixture::new(two_pf_layout, true);
        let dir = tempfile::tempdir().unwrap();
        for sub in [
            "device-plugins",
            "plugins_registry",
            "plugins",
            "devinfo",
            "cdi",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("config.json"), config(&node.tag, e810_api)).unwrap();
        let mut kubelet = KubeletSim::start(&dir.path().join("device-plugins"))
            .await
            .unwrap();
        kubelet
            .serve_pod_resources(&dir.path().join("pod-resources.sock"))
            .await
            .unwrap();
        let api = ApiServerStandin::new();
        api.put_node(NODE, NODE_UID);
        Setup {
            node,
            dir,
            kubelet,
            api,
            connects: Arc::default(),
            health: None,
            daemon: None,
        }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn settings(&self) -> Settings {
        let api: Arc<dyn DraApi> = Arc::new(self.api.clone());
        let connects = self.connects.clone();
        let connector = ApiConnector::new(move || {
            connects.fetch_add(1, Ordering::SeqCst);
            let api = api.clone();
            Box::pin(async move { Ok(api) })
        });
        Settings {
            config_file: self.path("config.json"),
            resource_prefix: "intel.com".into(),
            sysfs: SysfsRoot::new(&self.node.root),
            dev_root: sim::dev_root_for(&self.node.root),
            device_plugin_dir: self.path("device-plugins"),
            plugins_registry_dir: self.path("plugins_registry"),
            registration: RegistrationMode::KubeletSocket,
            devinfo_dir: self.path("devinfo"),
            cdi: CdiMode::Off,
            cdi_spec_dir: self.path("cdi"),
            default_route_netdevs: Some(vec![]),
            health_addr: self.health,
            pod_resources_socket: Some(self.path("pod-resources.sock")),
            held_recheck: Duration::from_millis(100),
            watch_config: false,
            watch_node: true,
            link_health: true,
            rescan_interval: None,
            node_policy: None,
            vf_counters_interval: sriov_rs::deviceplugin::DEFAULT_VF_COUNTERS_INTERVAL,
            dra: Some(DraSettings {
                driver: DRIVER.into(),
                node: Some(NODE.into()),
                plugin_dir: self.path("plugins"),
                api: connector,
                republish_every: None,
            }),
        }
    }

    async fn start_daemon(&mut self) {
        let daemon = Daemon::start(self.settings()).await.unwrap();
        let (control, commands) = mpsc::channel(4);
        let task = tokio::spawn(daemon.run(commands));
        self.daemon = Some((control, task));
    }

    async fn stop_daemon(&mut self) {
        let (control, task) = self.daemon.take().expect("a running daemon");
        control.send(Control::Shutdown).await.unwrap();
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }

    async fn reload(&self) {
        let (control, _) = self.daemon.as_ref().expect("a running daemon");
        control.send(Control::Reload).await.unwrap();
    }

    async fn wait_dp(&self, resource: &str, ready: impl Fn(&[Device]) -> bool) -> Vec<Device> {
        self.kubelet
            .wait_for_devices(resource, WAIT, ready)
            .await
            .unwrap_or_else(|e| panic!("{resource}: {e}; now {:?}", self.kubelet.plugin(resource)))
    }

    /// This node's slices of our driver, once `ready` holds for them.
    async fn wait_slices(
        &self,
        what: &str,
        ready: impl Fn(&[ResourceSlice]) -> bool,
    ) -> Vec<ResourceSlice> {
        let deadline = Instant::now() + WAIT;
        loop {
            let slices = self.api.list_slices(Some(NODE), Some(DRIVER));
            if ready(&slices) {
                return slices;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: slices now {:#?}",
                names(&slices)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon serving e810 through the device plugin and cx through
    /// DRA, registered, and pod ran/du-0 holding e810's first VF: every
    /// e810 VF ID, sorted, and the held one.
    async fn e810_vf_held_by_du0(&mut self) -> (Vec<String>, String) {
        self.start_daemon().await;
        let e810 = self.wait_dp(E810, |d| d.len() == 3).await;
        self.plugin_watcher_registers().await;
        self.wait_slices("cx", |s| device_names(s, CX_POOL).len() == 2)
            .await;
        let all: Vec<String> = ids(&e810).into_iter().collect();
        let held = all[0].clone();
        self.kubelet
            .allocate_to_pod("ran", "du-0", "app", E810, std::slice::from_ref(&held))
            .await
            .unwrap();
        (all, held)
    }

    /// The config with e810 on DRA, applied.
    /// Waits until the e810 pool's slices publish exactly the VFs `ids`.
    async fn wait_e810_published(&self, what: &str, ids: &[String]) -> Vec<ResourceSlice> {
        let mut names: Vec<String> = ids.iter().map(|id| label(id)).collect();
        names.sort();
        self.wait_slices(what, |s| device_names(s, E810_POOL) == names)
            .await
    }

    async fn move_e810_to_dra(&self) {
        std::fs::write(self.path("config.json"), config(&self.node.tag, "dra")).unwrap();
        self.reload().await;
    }

    fn registration_socket(&self) -> PathBuf {
        self.path("plugins_registry")
            .join(format!("{DRIVER}-reg.sock"))
    }

    fn dra_socket(&self) -> PathBuf {
        self.path("plugins").join(DRIVER).join("dra.sock")
    }

    /// What the kubelet's plugin watcher does on finding our socket:
    /// GetInfo, then NotifyRegistrationStatus(true).
    async fn plugin_watcher_registers(&self) -> PluginInfo {
        let socket = self.registration_socket();
        let deadline = Instant::now() + WAIT;
        while !socket.exists() {
            assert!(Instant::now() < deadline, "no {}", socket.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut client = RegistrationClient::new(uds::connect(&socket).await.unwrap());
        let info = client.get_info(InfoRequest {}).await.unwrap().into_inner();
        client
            .notify_registration_status(RegistrationStatus {
                plugin_registered: true,
                error: String::new(),
            })
            .await
            .unwrap();
        info
    }

    async fn v1(&self) -> v1::dra_plugin_client::DraPluginClient<tonic::transport::Channel> {
        v1::dra_plugin_client::DraPluginClient::new(uds::connect(self.dra_socket()).await.unwrap())
    }

    async fn prepare(&self, name: &str, uid: &str) -> v1::NodePrepareResourceResponse {
        let response = self
            .v1()
            .await
            .node_prepare_resources(v1::NodePrepareResourcesRequest {
                claims: vec![claim_ref(name, uid)],
            })
            .await
            .unwrap()
            .into_inner();
        response.claims[uid].clone()
    }

    async fn unprepare(&self, name: &str, uid: &str) -> String {
        let response = self
            .v1()
            .await
            .node_unprepare_resources(v1::NodeUnprepareResourcesRequest {
                claims: vec![claim_ref(name, uid)],
            })
            .await
            .unwrap()
            .into_inner();
        response.claims[uid].error.clone()
    }

    fn spec(&self, uid: &str) -> Option<Value> {
        let path = self.path("cdi").join(format!("sriov-dra-{uid}.json"));
        let text = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }

    fn devinfo(&self, resource: &str, id: &str) -> Option<Value> {
        let path = self
            .path("devinfo")
            .join(format!("{}-{id}-device.json", resource.replace('/', "-")));
        let text = std::fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }
}

fn claim_ref(name: &str, uid: &str) -> v1::Claim {
    v1::Claim {
        namespace: "default".into(),
        name: name.into(),
        uid: uid.into(),
    }
}

/// A claim as the scheduler leaves it: allocated to `devices` (pool, device).
fn put_claim(api: &ApiServerStandin, name: &str, uid: &str, devices: &[(&str, &str)]) {
    let mut claim = ResourceClaim::default();
    claim.metadata.name = Some(name.into());
    claim.metadata.namespace = Some("default".into());
    claim.metadata.uid = Some(uid.into());
    claim.status = Some(ResourceClaimStatus {
        allocation: Some(AllocationResult {
            devices: Some(DeviceAllocationResult {
                results: Some(
                    devices
                        .iter()
                        .map(|(pool, device)| DeviceRequestAllocationResult {
                            request: "vf".into(),
                            driver: DRIVER.into(),
                            pool: pool.to_string(),
                            device: device.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    api.put_claim(claim);
}

fn names(slices: &[ResourceSlice]) -> Vec<(String, String, i64, Vec<String>)> {
    slices
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                s.spec.pool.name.clone(),
                s.spec.pool.generation,
                device_names(std::slice::from_ref(s), &s.spec.pool.name),
            )
        })
        .collect()
}

/// The device names of `pool` over `slices`, sorted.
fn device_names(slices: &[ResourceSlice], pool: &str) -> Vec<String> {
    let mut all: Vec<String> = slices
        .iter()
        .filter(|s| s.spec.pool.name == pool)
        .flat_map(|s| s.spec.devices.iter().flatten())
        .map(|d| d.name.clone())
        .collect();
    all.sort();
    all
}

fn label(id: &str) -> String {
    id.replace([':', '.'], "-")
}

fn ids(devices: &[Device]) -> BTreeSet<String> {
    devices.iter().map(|d| d.id.clone()).collect()
}

fn healthy(devices: &[Device]) -> BTreeSet<String> {
    devices
        .iter()
        .filter(|d| d.health == "Healthy")
        .map(|d| d.id.clone())
        .collect()
}

fn string_attr(
    slice_device: &k8s_openapi::api::resource::v1::Device,
    name: &str,
) -> Option<String> {
    slice_device.attributes.as_ref()?.get(name)?.string.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_serves_a_device_plugin_pool_and_a_dra_pool() {
    if !require_root("one_daemon_serves_a_device_plugin_pool_and_a_dra_pool") {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    let began = Instant::now();
    setup.start_daemon().await;
    let e810 = setup.wait_dp(E810, |d| d.len() == 3).await;
    eprintln!(
        "with a DRA pool: start -> e810 listed {:?}",
        began.elapsed()
    );

    // registration through the plugin watcher, both DRAPlugin versions
    let info = setup.plugin_watcher_registers().await;
    assert_eq!(info.r#type, "DRAPlugin");
    assert_eq!(info.name, DRIVER);
    assert_eq!(info.endpoint, setup.dra_socket().display().to_string());
    assert_eq!(
        info.supported_versions,
        [
            "v1.DRAPlugin",
            "v1beta1.DRAPlugin",
            "v1alpha1.DRAResourceHealth"
        ]
    );

    // the DRA pool's two VFs published, owned by the Node; the kubelet's
    // device plugin side never hears of it
    let slices = setup
        .wait_slices("cx published", |s| device_names(s, CX_POOL).len() == 2)
        .await;
    eprintln!(
        "with a DRA pool: start -> cx published {:?}",
        began.elapsed()
    );
    assert_eq!(slices.len(), 1, "{:#?}", names(&slices));
    let slice = &slices[0];
    assert_eq!(slice.spec.pool.resource_slice_count, 1);
    assert_eq!(slice.spec.node_name.as_deref(), Some(NODE));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Node", NODE_UID)
    );
    let cx_ids = ["0000:d8:00.2", "0000:d8:00.3"];
    assert_eq!(
        device_names(&slices, CX_POOL),
        cx_ids.iter().map(|id| label(id)).collect::<Vec<_>>()
    );
    for device in slice.spec.devices.as_ref().unwrap() {
        let attrs = device.attributes.as_ref().unwrap();
        assert!(attrs.len() <= 32);
        let id = string_attr(device, "resource.kubernetes.io/pciBusID").unwrap();
        assert_eq!(label(&id), device.name);
        assert_eq!(
            string_attr(device, "k8s.cni.cncf.io/deviceID").as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            string_attr(device, "k8s.cni.cncf.io/resourceName").as_deref(),
            Some(CX)
        );
        assert_eq!(
            string_attr(device, "pfName"),
            Some(format!("{}b", setup.node.tag))
        );
        assert_eq!(
            string_attr(device, "pfPciAddress").as_deref(),
            Some("0000:d8:00.0")
        );
        assert_eq!(attrs["rdmaCapable"].bool, Some(true));
        assert_eq!(attrs["numaNode"].int, Some(1));
    }
    assert!(
        setup.kubelet.plugin(CX).is_none(),
        "cx is not a device plugin pool"
    );
    // no VF is offered through both APIs
    let offered_dra: BTreeSet<String> = device_names(&slices, CX_POOL).into_iter().collect();
    assert!(ids(&e810)
        .iter()
        .all(|id| !offered_dra.contains(&label(id))));

    // Prepare through v1: the CDI spec and device-info file are what
    // Allocate gives for that device (computed by the daemon's own scan)
    put_claim(&setup.api, "vf-a", "uid-a", &[(CX_POOL, &label(cx_ids[0]))]);
    let prepare_began = Instant::now();
    let answer = setup.prepare("vf-a", "uid-a").await;
    eprintln!("Prepare (connect + call): {:?}", prepare_began.elapsed());
    assert_eq!(answer.error, "");
    assert_eq!(answer.devices.len(), 1);
    assert_eq!(answer.devices[0].pool_name, CX_POOL);
    assert_eq!(answer.devices[0].request_names, ["vf"]);
    assert_eq!(
        answer.devices[0].cdi_device_ids,
        [format!("{DRIVER}/vf=uid-a-{}", label(cx_ids[0]))]
    );
    let settings = setup.settings();
    let scan = scan_with(&settings, &load_config(&settings).unwrap()).unwrap();
    let served = scan.pools.iter().find(|p| p.resource_name == CX).unwrap();
    let allocated = allocate_container(
        served,
        &[cx_ids[0].to_string()],
        CdiMode::Off,
        &PoolOwners::default(),
    )
    .unwrap();
    let spec = setup.spec("uid-a").unwrap();
    let edits = &spec["devices"][0]["containerEdits"];
    let env: BTreeMap<String, String> = edits["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let allocate_env: BTreeMap<String, String> = allocated.envs.clone().into_iter().collect();
    assert_eq!(env, allocate_env);
    let nodes: Vec<(String, String)> = edits["deviceNodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    (
                        n["path"].as_str().unwrap().to_owned(),
                        n["hostPath"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let allocate_nodes: Vec<(String, String)> = allocated
        .devices
        .iter()
        .map(|d| (d.container_path.clone(), d.host_path.clone()))
        .collect();
    assert!(
        !allocate_nodes.is_empty(),
        "isRdma gives the VF its RDMA char devices"
    );
    assert_eq!(nodes, allocate_nodes);
    let device_info = served
        .device(cx_ids[0])
        .unwrap()
        .device_info
        .as_ref()
        .unwrap();
    assert_eq!(
        setup.devinfo(CX, cx_ids[0]),
        Some(serde_json::from_str(&device_info.file_content()).unwrap())
    );

    // the other VF through v1beta1
    put_claim(&setup.api, "vf-b", "uid-b", &[(CX_POOL, &label(cx_ids[1]))]);
    let mut beta = v1beta1::dra_plugin_client::DraPluginClient::new(
        uds::connect(setup.dra_socket()).await.unwrap(),
    );
    let response = beta
        .node_prepare_resources(v1beta1::NodePrepareResourcesRequest {
            claims: vec![v1beta1::Claim {
                namespace: "default".into(),
                name: "vf-b".into(),
                uid: "uid-b".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.claims["uid-b"].error, "");
    assert!(setup.spec("uid-b").is_some());

    // a device plugin pool's VF named as a DRA device is refused, per claim
    let e810_id = e810[0].id.clone();
    put_claim(
        &setup.api,
        "wrong",
        "uid-wrong",
        &[(E810_POOL, &label(&e810_id))],
    );
    let refused = setup.prepare("wrong", "uid-wrong").await;
    assert!(
        refused.error.contains("is not a device of node"),
        "{}",
        refused.error
    );
    assert!(setup.spec("uid-wrong").is_none());

    // Unprepare removes what Prepare wrote
    assert_eq!(setup.unprepare("vf-a", "uid-a").await, "");
    assert!(setup.spec("uid-a").is_none());
    assert!(setup.devinfo(CX, cx_ids[0]).is_none());
    assert!(
        setup.spec("uid-b").is_some(),
        "the other claim stays prepared"
    );

    // the device plugin pool was never touched: same devices, all Healthy
    let now = setup.kubelet.plugin(E810).unwrap();
    assert_eq!(now.devices.as_deref().map(ids), Some(ids(&e810)));
    assert_eq!(now.devices.as_deref().map(healthy), Some(ids(&e810)));
    let allocated = setup
        .kubelet
        .allocate(E810, std::slice::from_ref(&e810_id))
        .await
        .unwrap();
    assert_eq!(
        allocated.container_responses[0].envs["PCIDEVICE_INTEL_COM_E810"],
        e810_id
    );

    // the health stream follows the same link health as ListAndWatch: PF
    // b's cable pulled turns the DRA pool's devices Unhealthy, not e810's
    let mut health = DraResourceHealthClient::new(uds::connect(setup.dra_socket()).await.unwrap());
    let mut stream = health
        .node_watch_resources(NodeWatchResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.devices.len(), 2);
    assert!(first
        .devices
        .iter()
        .all(|d| d.health == i32::from(HealthStatus::Healthy)));
    let pf_b = format!("{}b", setup.node.tag);
    sim::set_carrier(&setup.node.root, &pf_b, false).unwrap();
    let pulled = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(pulled
        .devices
        .iter()
        .all(|d| d.health == i32::from(HealthStatus::Unhealthy)));
    assert!(pulled
        .devices
        .iter()
        .all(|d| d.device.as_ref().unwrap().pool_name == CX_POOL));
    assert_eq!(
        healthy(&setup.kubelet.plugin(E810).unwrap().devices.unwrap()),
        ids(&e810)
    );
    sim::set_carrier(&setup.node.root, &pf_b, true).unwrap();
    let back = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(back
        .devices
        .iter()
        .all(|d| d.health == i32::from(HealthStatus::Healthy)));
    drop(stream);
    setup.stop_daemon().await;
    // the sockets go, the prepared claim's files stay (a pod uses them)
    assert!(!setup.dra_socket().exists());
    assert!(!setup.registration_socket().exists());
    assert!(setup.spec("uid-b").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_of_the_daemon_the_kubelet_and_a_late_api_server() {
    if !require_root("restarts_of_the_daemon_the_kubelet_and_a_late_api_server") {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    // the API server is down at start: the daemon starts anyway and serves
    // its device plugin pool
    setup.api.set_down(true);
    setup.start_daemon().await;
    setup.wait_dp(E810, |d| d.len() == 3).await;
    setup.plugin_watcher_registers().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(setup.api.list_slices(Some(NODE), Some(DRIVER)).is_empty());
    let up = Instant::now();
    setup.api.set_down(false);
    let slices = setup
        .wait_slices("published once the API server is up", |s| {
            device_names(s, CX_POOL).len() == 2
        })
        .await;
    eprintln!("API server up -> slices published: {:?}", up.elapsed());
    let generation = slices[0].spec.pool.generation;

    // a kubelet restart: it deletes the node's slices, then its plugin
    // watcher registers us again
    assert_eq!(setup.api.delete_node_slices(NODE), 1);
    let restarted = Instant::now();
    setup.plugin_watcher_registers().await;
    let slices = setup
        .wait_slices("republished after the kubelet restart", |s| {
            device_names(s, CX_POOL).len() == 2
        })
        .await;
    eprintln!(
        "kubelet re-registration -> slices back: {:?}",
        restarted.elapsed()
    );
    assert!(
        slices[0].spec.pool.generation > generation,
        "a new generation"
    );

    // the kubelet wipes its registry dir: the registration socket comes back
    std::fs::remove_file(setup.registration_socket()).unwrap();
    setup.plugin_watcher_registers().await;
    // ... or removes and recreates the directory itself
    std::fs::remove_dir_all(setup.path("plugins_registry")).unwrap();
    std::fs::create_dir(setup.path("plugins_registry")).unwrap();
    setup.plugin_watcher_registers().await;

    // a claim prepared, then the daemon restarts while the API server is
    // down: the checkpoint answers the same, and Unprepare still works
    let cx0 = label("0000:d8:00.2");
    put_claim(&setup.api, "vf", "uid-1", &[(CX_POOL, &cx0)]);
    let before = setup.prepare("vf", "uid-1").await;
    assert_eq!(before.error, "");
    setup.stop_daemon().await;
    setup.api.set_down(true);
    setup.start_daemon().await;
    setup.wait_dp(E810, |d| d.len() == 3).await;
    let deadline = Instant::now() + WAIT;
    while !setup.dra_socket().exists() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = setup.prepare("vf", "uid-1").await;
    assert_eq!(before, after);
    // a claim the daemon never saw cannot be read while the API is down
    put_claim(
        &setup.api,
        "new",
        "uid-2",
        &[(CX_POOL, &label("0000:d8:00.3"))],
    );
    let unread = setup.prepare("new", "uid-2").await;
    assert!(
        unread.error.contains("unavailable") || unread.error.contains("refused"),
        "{}",
        unread.error
    );
    assert_eq!(setup.unprepare("vf", "uid-1").await, "");
    assert!(setup.spec("uid-1").is_none());
    setup.api.set_down(false);

    // the DRA pool's VFs are destroyed: its slices go, and a claim that
    // names one of them is that claim's error
    let numvfs = setup
        .node
        .root
        .join("bus/pci/devices/0000:d8:00.0/sriov_numvfs");
    std::fs::write(&numvfs, "0\n").unwrap();
    setup
        .wait_slices("cx gone", |s| device_names(s, CX_POOL).is_empty())
        .await;
    let gone = setup.prepare("new", "uid-2").await;
    assert!(
        gone.error.contains("is not a device of node"),
        "{}",
        gone.error
    );
    assert_eq!(
        setup.kubelet.plugin(E810).unwrap().devices.unwrap().len(),
        3
    );
    setup.stop_daemon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_moved_back_to_the_device_plugin_keeps_a_prepared_vf_in_dra_until_unprepared() {
    if !require_root(
        "a_pool_moved_back_to_the_device_plugin_keeps_a_prepared_vf_in_dra_until_unprepared",
    ) {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    setup.start_daemon().await;
    setup.wait_dp(E810, |d| d.len() == 3).await;
    setup.plugin_watcher_registers().await;
    setup
        .wait_slices("cx", |s| device_names(s, CX_POOL).len() == 2)
        .await;
    let (prepared, other) = ("0000:d8:00.2", "0000:d8:00.3");
    put_claim(&setup.api, "vf", "uid-1", &[(CX_POOL, &label(prepared))]);
    assert_eq!(setup.prepare("vf", "uid-1").await.error, "");

    // cx moves to the device plugin while the claim is prepared: the
    // prepared VF stays with DRA (Prepare still answers for it), the other
    // one is offered through the device plugin, and no slice offers either
    let tag = setup.node.tag.clone();
    let moved_back = config(&tag, "devicePlugin").replacen(
        r#""resourceName": "cx", "allocationApi": "dra""#,
        r#""resourceName": "cx", "allocationApi": "devicePlugin""#,
        1,
    );
    std::fs::write(setup.path("config.json"), moved_back).unwrap();
    setup.reload().await;
    let dp = setup.wait_dp(CX, |d| !d.is_empty()).await;
    assert_eq!(ids(&dp), BTreeSet::from([other.to_owned()]));
    setup
        .wait_slices("cx no longer published", |s| {
            device_names(s, CX_POOL).is_empty()
        })
        .await;
    let again = setup.prepare("vf", "uid-1").await;
    assert_eq!(again.error, "", "still prepared through DRA");
    assert!(setup.devinfo(CX, prepared).is_some());

    // Unprepare: the VF joins the device plugin pool
    assert_eq!(setup.unprepare("vf", "uid-1").await, "");
    let dp = setup.wait_dp(CX, |d| d.len() == 2).await;
    assert_eq!(
        healthy(&dp),
        BTreeSet::from([prepared.to_owned(), other.to_owned()])
    );
    assert!(setup.spec("uid-1").is_none());
    setup.stop_daemon().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_moved_to_dra_keeps_a_held_vf_in_the_device_plugin_until_released() {
    if !require_root("a_pool_moved_to_dra_keeps_a_held_vf_in_the_device_plugin_until_released") {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    let (all, held) = setup.e810_vf_held_by_du0().await;

    // e810 moves to DRA while du-0 holds one of its VFs
    setup.move_e810_to_dra().await;
    let others: Vec<String> = all[1..].iter().map(|id| label(id)).collect();
    let slices = setup
        .wait_e810_published("e810 published without the held VF", &all[1..])
        .await;
    let dp = setup.wait_dp(E810, |d| d.len() == 1).await;
    assert_eq!(ids(&dp), BTreeSet::from([held.clone()]));
    assert!(healthy(&dp).is_empty(), "the held VF is listed Unhealthy");
    assert!(!device_names(&slices, E810_POOL).contains(&label(&held)));
    // nobody gets it through DRA meanwhile
    put_claim(
        &setup.api,
        "grab",
        "uid-grab",
        &[(E810_POOL, &label(&held))],
    );
    let refused = setup.prepare("grab", "uid-grab").await;
    assert!(
        refused.error.contains("is not a device of node"),
        "{}",
        refused.error
    );
    // the others can be prepared
    put_claim(&setup.api, "ok", "uid-ok", &[(E810_POOL, &others[0])]);
    assert_eq!(setup.prepare("ok", "uid-ok").await.error, "");

    // du-0 is gone: the VF joins the DRA pool, and the device plugin pool
    // stops offering it
    setup.kubelet.delete_pod("ran", "du-0");
    setup
        .wait_e810_published("e810 with the released VF", &all)
        .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let offered = setup
            .kubelet
            .plugin(E810)
            .and_then(|p| p.stream_open.then_some(p.devices).flatten())
            .map(|d| healthy(&d))
            .unwrap_or_default();
        if offered.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still offered through the device plugin: {offered:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let claimed = setup.prepare("grab", "uid-grab").await;
    assert_eq!(claimed.error, "", "released: now a DRA device");
    setup.stop_daemon().await;
}

/// `/readyz` with a DRA pool: not ready until the kubelet registered the
/// driver and its slices are published (an API server that is down keeps
/// it unready, saying so); once the config has no DRA pool left, neither
/// counts any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_dra_driver_and_its_slices_while_dra_pools_are_served() {
    if !require_root("readiness_waits_for_the_dra_driver_and_its_slices_while_dra_pools_are_served")
    {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    let health = common::probe::free_addr();
    setup.health = Some(health);
    setup.api.set_down(true);
    setup.start_daemon().await;
    setup.wait_dp(E810, |d| d.len() == 3).await;
    // the e810 pool's own flag follows its registration a moment later
    let waiting = format!("not registered with the kubelet: DRA driver {DRIVER}\n");
    let (status, _) = common::probe::wait_readyz(health, WAIT, |_, body| body == waiting).await;
    assert_eq!(status, 503);
    setup.plugin_watcher_registers().await;
    let (_, body) = common::probe::wait_readyz(health, WAIT, |_, body| {
        body.starts_with("DRA ResourceSlices not published (retrying): ")
    })
    .await;
    assert!(
        body.contains("connection refused (stand-in down)"),
        "{body}"
    );
    setup.api.set_down(false);
    let (_, body) = common::probe::wait_readyz(health, WAIT, |status, _| status == 200).await;
    assert_eq!(body, "ready\nDRA ResourceSlices published: 1\n");

    // no DRA pool any more: the API server going away changes nothing
    setup.api.set_down(true);
    let tag = setup.node.tag.clone();
    std::fs::write(
        setup.path("config.json"),
        format!(
            r#"{{"resourceList": [{{"resourceName": "e810", "selectors": {{"pfNames": ["{tag}a"], "drivers": ["iavf"]}}}}]}}"#
        ),
    )
    .unwrap();
    setup.reload().await;
    let (_, body) = common::probe::wait_readyz(health, WAIT, |_, body| body == "ready\n").await;
    assert_eq!(body, "ready\n");
    setup.stop_daemon().await;
}

/// The window no reload can see: the kubelet handed a VF to a pod through
/// the device plugin, but PodResources did not say so when the pool moved
/// to DRA (here: it did not answer then), so the VF was published. A claim
/// naming it is refused at Prepare, which asks PodResources itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_refuses_a_vf_a_pod_holds_through_the_device_plugin() {
    if !require_root("prepare_refuses_a_vf_a_pod_holds_through_the_device_plugin") {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    let (all, held) = setup.e810_vf_held_by_du0().await;

    // PodResources unreachable while e810 moves to DRA: nothing was kept
    // before, so every VF moves and is published
    let socket = setup.path("pod-resources.sock");
    let away = setup.path("pod-resources.sock.away");
    std::fs::rename(&socket, &away).unwrap();
    setup.move_e810_to_dra().await;
    setup
        .wait_e810_published("every e810 VF published", &all)
        .await;
    std::fs::rename(&away, &socket).unwrap();

    put_claim(
        &setup.api,
        "grab",
        "uid-grab",
        &[(E810_POOL, &label(&held))],
    );
    let refused = setup.prepare("grab", "uid-grab").await;
    assert!(
        refused.error.contains(&format!(
            "({held}) is in use by ran/du-0 (app) through the device plugin"
        )),
        "{}",
        refused.error
    );
    assert!(
        setup.spec("uid-grab").is_none(),
        "no CDI spec for a refused claim"
    );
    put_claim(&setup.api, "ok", "uid-ok", &[(E810_POOL, &label(&all[1]))]);
    assert_eq!(setup.prepare("ok", "uid-ok").await.error, "");
    // once du-0 is gone, the claim gets the VF
    setup.kubelet.delete_pod("ran", "du-0");
    assert_eq!(setup.prepare("grab", "uid-grab").await.error, "");
    setup.stop_daemon().await;
}

/// The shipped binary: a config with a DRA pool needs the API server, and
/// the error says what is missing; a driver name the API server would
/// refuse is refused at start.
#[test]
fn the_binary_names_what_a_dra_pool_needs() {
    let node = SimFixture::new(two_pf_layout, false);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, self::config(&node.tag, "devicePlugin")).unwrap();
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sriov-device-plugin"))
            .arg("--config-file")
            .arg(&config)
            .arg("--sysfs-root")
            .arg(&node.root)
            .arg("--device-plugin-path")
            .arg(dir.path())
            .arg("--plugins-registry-path")
            .arg(dir.path())
            .arg("--dra-plugin-path")
            .arg(dir.path())
            .args([
                "--pod-resources-socket",
                "",
                "--registration-mode",
                "kubelet-socket",
            ])
            .args(extra)
            .env_remove("NODE_NAME")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--dra-driver-name", "Not_A_Domain"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--dra-driver-name \"Not_A_Domain\""),
        "{stderr}"
    );
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--node-name or NODE_NAME"), "{stderr}");
    let (code, stderr) = run(&[
        "--node-name",
        NODE,
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dra_pool_no_api_server_until_a_reload_adds_one() {
    if !require_root("no_dra_pool_no_api_server_until_a_reload_adds_one") {
        return;
    }
    let mut setup = Setup::new("devicePlugin").await;
    let tag = setup.node.tag.clone();
    let no_dra = config(&tag, "devicePlugin").replacen(
        r#""resourceName": "cx", "allocationApi": "dra""#,
        r#""resourceName": "cx""#,
        1,
    );
    std::fs::write(setup.path("config.json"), no_dra).unwrap();
    let began = Instant::now();
    setup.start_daemon().await;
    setup.wait_dp(E810, |d| d.len() == 3).await;
    eprintln!("no DRA pool: start -> e810 listed {:?}", began.elapsed());
    setup.wait_dp(CX, |d| d.len() == 2).await;
    // as today: no API handle asked for, no DRA socket, no slice
    assert_eq!(setup.connects.load(Ordering::SeqCst), 0);
    assert!(!setup.registration_socket().exists());
    assert!(!setup.dra_socket().exists());

    // a reload makes cx a DRA pool: the DRA side starts and publishes it,
    // and the device plugin stops offering it
    std::fs::write(setup.path("config.json"), config(&tag, "devicePlugin")).unwrap();
    setup.reload().await;
    setup.plugin_watcher_registers().await;
    setup
        .wait_slices("cx published after the reload", |s| {
            device_names(s, CX_POOL).len() == 2
        })
        .await;
    assert_eq!(setup.connects.load(Ordering::SeqCst), 1);
    let deadline = Instant::now() + WAIT;
    while setup.kubelet.plugin(CX).is_some_and(|p| p.stream_open) {
        assert!(
            Instant::now() < deadline,
            "cx still served through the device plugin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    setup.stop_daemon().await;
}
