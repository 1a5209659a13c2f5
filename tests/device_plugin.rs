//! The device plugin daemon against a stand-in kubelet, over real gRPC on
//! real Unix sockets in temp dirs, on simulated sysfs trees built here (no
//! root needed). Expected values are written from upstream's rules
//! (docs/device-plugin.md), not from our output.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;
#[path = "common/sysfs_extras.rs"]
mod sysfs_extras;

use common::configmap::ConfigMapDir;
use common::probe::{free_addr, http_get, try_http_get, wait_readyz};
use serde_json::{json, Value};
use sriov_rs::deviceplugin::{CdiMode, Control, Daemon, RegistrationMode, Settings};
use sriov_rs::devtools::kubelet_sim::{KubeletSim, SimError};
use sriov_rs::devtools::sim::{self, CreateOptions, Serve};
use sriov_rs::kubelet_api::deviceplugin::v1beta1::{Device, DeviceSpec};
use sriov_rs::sysfs::SysfsRoot;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// E810 PF 0000:3b:00.0 (NUMA 0): VFs 0-2 iavf at 0000:3b:01.0-2, VF 3 on
/// vfio-pci at 0000:3b:01.3. ConnectX PF 0000:d8:00.0 (NUMA 1, RDMA): VFs
/// at 0000:d8:00.2-3 on mlx5_core.
const CONFIG: &str = r#"{"resourceList": [
  {"resourceName": "intel_netdev", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}},
  {"resourceName": "intel_dpdk", "selectors": {"drivers": ["vfio-pci"]}, "allocationPolicy": "spread"},
  {"resourceName": "mlx_rdma", "resourcePrefix": "nvidia.com", "excludeTopology": true,
   "selectors": {"vendors": ["15b3"], "isRdma": true, "needVhostNet": true},
   "additionalInfo": {"*": {"team": "ran"}, "0000:d8:00.3": {"team": "core"}}}
]}"#;

const NETDEV: &str = "intel.com/intel_netdev";
const DPDK: &str = "intel.com/intel_dpdk";
const RDMA: &str = "nvidia.com/mlx_rdma";

struct Node {
    dir: tempfile::TempDir,
    sysfs: PathBuf,
}

impl Node {
    fn new(config: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = dir.path().join("sys");
        let tag = common::unique_tag();
        sim::create(&CreateOptions {
            root: &sysfs,
            instance: &tag,
            layout: &common::two_pf_layout(&tag),
            serve: Serve::TreeOnly,
        })
        .unwrap();
        for sub in [
            "device-plugins",
            "devinfo",
            "cdi",
            "dev/infiniband",
            "dev/net",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        for node in ["dev/infiniband/rdma_cm", "dev/vhost-net", "dev/net/tun"] {
            std::fs::write(dir.path().join(node), "").unwrap();
        }
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        Node { dir, sysfs }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn settings(&self, registration: RegistrationMode, cdi: CdiMode) -> Settings {
        Settings {
            config_file: self.path("config.json"),
            resource_prefix: "intel.com".into(),
            sysfs: SysfsRoot::new(&self.sysfs),
            dev_root: self.path(""),
            device_plugin_dir: self.path("device-plugins"),
            plugins_registry_dir: self.path("plugins_registry"),
            registration,
            devinfo_dir: self.path("devinfo"),
            cdi,
            cdi_spec_dir: self.path("cdi"),
            default_route_netdevs: Some(vec![]),
            health_addr: None,
            pod_resources_socket: Some(self.path("pod-resources.sock")),
            held_recheck: Duration::from_millis(100),
            watch_config: true,
            watch_node: true,
            link_health: true,
            rescan_interval: None,
            node_policy: None,
            vf_counters_interval: sriov_rs::deviceplugin::DEFAULT_VF_COUNTERS_INTERVAL,
            dra: None,
        }
    }

    /// The IOMMU group the tree gives a function (basename of its link).
    fn iommu_group(&self, bdf: &str) -> String {
        let link = self
            .sysfs
            .join("bus/pci/devices")
            .join(bdf)
            .join("iommu_group");
        std::fs::read_link(link)
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn only_entry(&self, bdf: &str, sub: &str) -> String {
        let dir = self.sysfs.join("bus/pci/devices").join(bdf).join(sub);
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{bdf}/{sub}: {names:?}");
        names[0].clone()
    }
}

struct Running {
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(settings: Settings) -> Running {
    let daemon = Daemon::start(settings).await.unwrap();
    let (control, commands) = mpsc::channel(4);
    let task = tokio::spawn(daemon.run(commands));
    Running { control, task }
}

impl Running {
    async fn stop(self) {
        self.control.send(Control::Shutdown).await.unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn ids(devices: &[Device]) -> Vec<String> {
    let mut ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn all_registered(kubelet: &KubeletSim) {
    kubelet
        .wait_until("three pools registered with a device list", WAIT, |p| {
            [NETDEV, DPDK, RDMA]
                .iter()
                .all(|r| p.get(*r).is_some_and(|v| v.devices.is_some()))
        })
        .await
        .unwrap();
}

fn specs(list: &[DeviceSpec]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|d| {
            (
                d.host_path.clone(),
                d.container_path.clone(),
                d.permissions.clone(),
            )
        })
        .collect()
}

fn spec(host: &str, container: &str) -> (String, String, String) {
    (host.into(), container.into(), "rw".into())
}

#[tokio::test]
async fn registers_every_pool_and_lists_devices_with_topology() {
    let node = Node::new(CONFIG);
    let kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::Auto, CdiMode::Off)).await;
    all_registered(&kubelet).await;

    let plugins = kubelet.plugins();
    assert_eq!(
        plugins.len(),
        3,
        "empty pools are not advertised: {:?}",
        plugins.keys()
    );
    for (resource, socket) in [
        (NETDEV, "intel.com_intel_netdev.sock"),
        (DPDK, "intel.com_intel_dpdk.sock"),
        (RDMA, "nvidia.com_mlx_rdma.sock"),
    ] {
        let view = &plugins[resource];
        assert_eq!(view.endpoint, node.path("device-plugins").join(socket));
        assert_eq!(view.registrations, 1);
        let options = view.options.unwrap();
        assert!(options.get_preferred_allocation_available && !options.pre_start_required);
        assert!(view
            .devices
            .as_ref()
            .unwrap()
            .iter()
            .all(|d| d.health == "Healthy"));
    }
    let netdev = plugins[NETDEV].devices.clone().unwrap();
    assert_eq!(
        ids(&netdev),
        strings(&["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"])
    );
    // NUMA 0 reported; the RDMA pool excludes topology although its PF is on node 1
    for device in &netdev {
        let nodes: Vec<i64> = device
            .topology
            .clone()
            .unwrap()
            .nodes
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(nodes, vec![0], "{}", device.id);
    }
    assert_eq!(
        ids(&plugins[DPDK].devices.clone().unwrap()),
        strings(&["0000:3b:01.3"])
    );
    let rdma = plugins[RDMA].devices.clone().unwrap();
    assert_eq!(ids(&rdma), strings(&["0000:d8:00.2", "0000:d8:00.3"]));
    assert!(rdma.iter().all(|d| d.topology.is_none()));
    daemon.stop().await;
}

#[tokio::test]
async fn allocate_answers_as_upstream_for_netdev_vfio_and_rdma_vhost_pools() {
    let node = Node::new(CONFIG);
    let (kubelet, daemon) = serving(&node, CdiMode::Off).await;

    // kernel netdev VFs: env only, no device nodes
    let r = kubelet
        .allocate(NETDEV, &strings(&["0000:3b:01.2", "0000:3b:01.0"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    assert_eq!(
        c.envs,
        HashMap::from([
            ("PCIDEVICE_INTEL_COM_INTEL_NETDEV".to_string(), "0000:3b:01.2,0000:3b:01.0".to_string()),
            (
                "PCIDEVICE_INTEL_COM_INTEL_NETDEV_INFO".to_string(),
                r#"{"0000:3b:01.0":{"generic":{"deviceID":"0000:3b:01.0"}},"0000:3b:01.2":{"generic":{"deviceID":"0000:3b:01.2"}}}"#.to_string()
            ),
        ])
    );
    assert!(c.devices.is_empty() && c.mounts.is_empty() && c.annotations.is_empty());

    // vfio-pci: the container node and the VF's IOMMU group
    let group = node.iommu_group("0000:3b:01.3");
    let r = kubelet
        .allocate(DPDK, &strings(&["0000:3b:01.3"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    assert_eq!(
        specs(&c.devices),
        vec![
            spec("/dev/vfio/vfio", "/dev/vfio/vfio"),
            spec(&format!("/dev/vfio/{group}"), &format!("/dev/vfio/{group}"))
        ]
    );
    assert_eq!(
        c.envs["PCIDEVICE_INTEL_COM_INTEL_DPDK_INFO"],
        format!(
            r#"{{"0000:3b:01.3":{{"generic":{{"deviceID":"0000:3b:01.3"}},"vfio":{{"dev-mount":"/dev/vfio/{group}","mount":"/dev/vfio/vfio"}}}}}}"#
        )
    );

    // RDMA + vhost-net, with additionalInfo ("*" overridden per device)
    let rdma_dev = node.only_entry("0000:d8:00.3", "infiniband");
    let uverbs = node.only_entry("0000:d8:00.3", "infiniband_verbs");
    let r = kubelet
        .allocate(RDMA, &strings(&["0000:d8:00.3"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    assert_eq!(c.envs["PCIDEVICE_NVIDIA_COM_MLX_RDMA"], "0000:d8:00.3");
    let info: Value = serde_json::from_str(&c.envs["PCIDEVICE_NVIDIA_COM_MLX_RDMA_INFO"]).unwrap();
    assert_eq!(
        info,
        json!({"0000:d8:00.3": {
            "extra": {"team": "core"},
            "generic": {"deviceID": "0000:d8:00.3"},
            "rdma": {"rdma_cm": "/dev/infiniband/rdma_cm", "rdma_dev": rdma_dev, "uverbs": format!("/dev/infiniband/{uverbs}")},
            "vhost": {"net-mount": "/dev/vhost-net", "tun-mount": "/dev/net/tun"}
        }})
    );
    let uverbs_path = format!("/dev/infiniband/{uverbs}");
    assert_eq!(
        specs(&c.devices),
        vec![
            spec(&uverbs_path, &uverbs_path),
            spec("/dev/infiniband/rdma_cm", "/dev/infiniband/rdma_cm"),
            spec("/dev/vhost-net", "/dev/vhost-net"),
            spec("/dev/net/tun", "/dev/net/tun"),
        ]
    );

    // IDs that are not the pool's are refused, naming them (and their pool)
    let err = kubelet
        .allocate(NETDEV, &strings(&["0000:3b:01.3", "0000:ff:1f.7"]))
        .await
        .unwrap_err();
    let SimError::Rpc(status) = err else {
        panic!("expected an RPC error, got {err}")
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "devices not in pool intel.com/intel_netdev: 0000:3b:01.3 (a device of pool intel.com/intel_dpdk), 0000:ff:1f.7"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn device_info_files_are_written_read_only_and_removed_at_shutdown() {
    let node = Node::new(CONFIG);
    let (_kubelet, daemon) = serving(&node, CdiMode::Off).await;
    let devinfo = node.path("devinfo");
    let read = |name: &str| -> (Value, u32) {
        let path = devinfo.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        (
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            mode,
        )
    };
    assert_eq!(
        read("intel.com-intel_netdev-0000:3b:01.1-device.json"),
        (
            json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:3b:01.1", "pf-pci-address": "0000:3b:00.0"}}),
            0o444
        )
    );
    let rdma_dev = node.only_entry("0000:d8:00.2", "infiniband");
    assert_eq!(
        read("nvidia.com-mlx_rdma-0000:d8:00.2-device.json"),
        (
            json!({"type": "pci", "version": "1.1.0", "pci": {
            "pci-address": "0000:d8:00.2", "pf-pci-address": "0000:d8:00.0",
            "vhost-net": "/dev/vhost-net", "rdma-device": rdma_dev}}),
            0o444
        )
    );
    let mut names: Vec<String> = std::fs::read_dir(&devinfo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "one file per netDevice device: {names:?}");
    daemon.stop().await;
    assert_eq!(
        std::fs::read_dir(&devinfo).unwrap().count(),
        0,
        "device-info files removed at shutdown"
    );
    let sockets: Vec<_> = std::fs::read_dir(node.path("device-plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        sockets,
        vec![std::ffi::OsString::from("kubelet.sock")],
        "only the kubelet's socket is left"
    );
}

#[tokio::test]
async fn preferred_allocation_keeps_must_include_and_follows_the_pool_policy() {
    let node = Node::new(CONFIG);
    let (kubelet, daemon) = serving(&node, CdiMode::Off).await;
    let available = strings(&["0000:3b:01.2", "0000:3b:01.0", "0000:3b:01.1"]);
    // one PF: pack takes VFs in index order, after the must-include one
    let got = kubelet
        .preferred(NETDEV, &available, &strings(&["0000:3b:01.2"]), 2)
        .await
        .unwrap();
    assert_eq!(got, strings(&["0000:3b:01.2", "0000:3b:01.0"]));
    let got = kubelet.preferred(NETDEV, &available, &[], 3).await.unwrap();
    assert_eq!(
        got,
        strings(&["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"])
    );
    daemon.stop().await;
}

#[tokio::test]
async fn cdi_mode_writes_specs_before_advertising_and_references_them() {
    let node = Node::new(CONFIG);
    let kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    std::fs::write(node.path("cdi/sriov-dp-stale.json"), "{}").unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Annotation)).await;
    all_registered(&kubelet).await;
    let group = node.iommu_group("0000:3b:01.3");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(node.path("cdi/sriov-dp-intel.com_intel_dpdk.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        spec,
        json!({"cdiVersion": "0.5.0", "kind": "intel.com/net-pci", "devices": [{"name": "0000:3b:01.3", "containerEdits": {"deviceNodes": [
            {"path": "/dev/vfio/vfio", "hostPath": "/dev/vfio/vfio", "permissions": "rw"},
            {"path": format!("/dev/vfio/{group}"), "hostPath": format!("/dev/vfio/{group}"), "permissions": "rw"}]}}]})
    );
    assert!(
        !node.path("cdi/sriov-dp-stale.json").exists(),
        "stale specs removed at start"
    );
    assert!(
        !node
            .path("cdi/sriov-dp-intel.com_intel_netdev.json")
            .exists(),
        "kernel netdevs need no CDI device"
    );
    let r = kubelet
        .allocate(DPDK, &strings(&["0000:3b:01.3"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    assert!(c.devices.is_empty());
    assert_eq!(
        c.annotations["cdi.k8s.io/intel.com_net-pci"],
        "intel.com/net-pci=0000:3b:01.3"
    );
    daemon.stop().await;
    assert_eq!(
        std::fs::read_dir(node.path("cdi")).unwrap().count(),
        0,
        "specs removed at shutdown"
    );
}

#[tokio::test]
async fn a_pool_change_is_pushed_to_the_open_stream_without_re_registering() {
    let node = Node::new(CONFIG);
    let (kubelet, daemon) = serving(&node, CdiMode::Off).await;
    let before = kubelet.plugin(NETDEV).unwrap();
    // The operator narrows the pool to VFs 0-1 of the PF and reloads (SIGHUP).
    let pf_name = std::fs::read_dir(node.sysfs.join("bus/pci/devices/0000:3b:00.0/net"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let narrowed = CONFIG.replace(
        r#""drivers": ["iavf"]}"#,
        &format!(
            r#""drivers": ["iavf"], "pfNames": ["{}#0-1"]}}"#,
            pf_name.to_string_lossy()
        ),
    );
    std::fs::write(node.path("config.json"), narrowed).unwrap();
    daemon.control.send(Control::Reload).await.unwrap();
    let devices = kubelet
        .wait_for_devices(NETDEV, WAIT, |d| d.len() == 2)
        .await
        .unwrap();
    assert_eq!(ids(&devices), strings(&["0000:3b:01.0", "0000:3b:01.1"]));
    let after = kubelet.plugin(NETDEV).unwrap();
    assert_eq!(
        after.registrations, before.registrations,
        "no re-registration for a change"
    );
    assert!(after.stream_open);
    assert!(
        !node
            .path("devinfo/intel.com-intel_netdev-0000:3b:01.2-device.json")
            .exists(),
        "the device that left lost its device-info file"
    );
    // unchanged pools were not resent
    assert_eq!(kubelet.plugin(DPDK).unwrap().updates, 1);
    daemon.stop().await;
}

/// The daemon (kubelet.sock mode) and a stand-in kubelet it registered
/// every pool of `CONFIG` with.
async fn serving(node: &Node, cdi: CdiMode) -> (KubeletSim, Running) {
    let kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, cdi)).await;
    all_registered(&kubelet).await;
    (kubelet, daemon)
}

/// Waits until `resource` has registered `count` times and has a device list.
async fn registered_times(kubelet: &KubeletSim, resource: &str, count: u32) {
    kubelet
        .wait_until(&format!("{resource} registered {count} times"), WAIT, |p| {
            p.get(resource)
                .is_some_and(|v| v.registrations >= count && v.devices.is_some())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn survives_twenty_kubelet_restarts_re_registering_within_a_second() {
    let node = Node::new(CONFIG);
    let dir = node.path("device-plugins");
    let mut kubelet = KubeletSim::start(&dir).await.unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    let mut slowest = Duration::ZERO;
    for restart in 1..=20u32 {
        // what a kubelet restart looks like from the plugin: its socket is
        // wiped, the stream breaks, kubelet.sock comes back with a new inode
        kubelet.stop();
        KubeletSim::wipe_sockets(&dir).unwrap();
        let began = Instant::now();
        kubelet = KubeletSim::start(&dir).await.unwrap();
        all_registered(&kubelet).await;
        let took = began.elapsed();
        slowest = slowest.max(took);
        assert!(
            took < Duration::from_secs(1),
            "restart {restart}: re-registration took {took:?}"
        );
        for resource in [NETDEV, DPDK, RDMA] {
            assert_eq!(kubelet.plugin(resource).unwrap().registrations, 1);
        }
    }
    eprintln!("20 kubelet restarts: slowest re-registration of all three pools {slowest:?}");
    // still fully working
    let r = kubelet
        .allocate(DPDK, &strings(&["0000:3b:01.3"]))
        .await
        .unwrap();
    assert_eq!(
        r.container_responses[0].envs["PCIDEVICE_INTEL_COM_INTEL_DPDK"],
        "0000:3b:01.3"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn registers_when_the_kubelet_comes_up_late_and_after_losing_its_socket() {
    let node = Node::new(CONFIG);
    let dir = node.path("device-plugins");
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // several failed attempts
    assert!(
        dir.join("intel.com_intel_netdev.sock").exists(),
        "serving while the kubelet is down"
    );
    let kubelet = KubeletSim::start(&dir).await.unwrap();
    all_registered(&kubelet).await;
    // someone deletes our socket while the kubelet stays: serve again and re-register
    std::fs::remove_file(dir.join("intel.com_intel_dpdk.sock")).unwrap();
    registered_times(&kubelet, DPDK, 2).await;
    assert!(dir.join("intel.com_intel_dpdk.sock").exists());
    assert_eq!(kubelet.plugin(NETDEV).unwrap().registrations, 1);
    daemon.stop().await;
}

#[tokio::test]
async fn plugin_watcher_mode_is_chosen_when_plugins_registry_exists() {
    let node = Node::new(CONFIG);
    let registry = node.path("plugins_registry");
    std::fs::create_dir_all(&registry).unwrap();
    let kubelet = KubeletSim::start_plugin_watcher(&registry).await.unwrap();
    let daemon = start(node.settings(RegistrationMode::Auto, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    let view = kubelet.plugin(NETDEV).unwrap();
    assert_eq!(
        view.endpoint,
        registry.join("intel.com_intel_netdev.sock"),
        "endpoint is the full path of the same socket"
    );
    assert!(!node
        .path("device-plugins/intel.com_intel_netdev.sock")
        .exists());
    let r = kubelet
        .allocate(NETDEV, &strings(&["0000:3b:01.0"]))
        .await
        .unwrap();
    assert_eq!(
        r.container_responses[0].envs["PCIDEVICE_INTEL_COM_INTEL_NETDEV"],
        "0000:3b:01.0"
    );
    // the socket deleted: recreated, and found by the watcher again
    std::fs::remove_file(registry.join("intel.com_intel_netdev.sock")).unwrap();
    registered_times(&kubelet, NETDEV, 2).await;
    daemon.stop().await;
    assert_eq!(
        std::fs::read_dir(&registry).unwrap().count(),
        0,
        "sockets removed at shutdown"
    );
}

/// The daemon binary pointed at `node`'s tree and dirs; `config_flag`
/// spells the config flag (upstream DaemonSets use `-config-file`).
fn daemon_command(node: &Node, config_flag: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sriov-device-plugin"));
    command
        .arg(format!(
            "{config_flag}={}",
            node.path("config.json").display()
        ))
        .arg(format!("--sysfs-root={}", node.sysfs.display()))
        .arg(format!(
            "--device-plugin-path={}",
            node.path("device-plugins").display()
        ))
        .arg(format!("--devinfo-dir={}", node.path("devinfo").display()));
    command
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_binary_cleans_up_and_exits_zero_on_sigterm() {
    let node = Node::new(CONFIG);
    let dir = node.path("device-plugins");
    let kubelet = KubeletSim::start(&dir).await.unwrap();
    // upstream's single-dash spelling, as existing DaemonSets pass it
    let mut child = daemon_command(&node, "-config-file")
        .arg(format!(
            "--plugins-registry-path={}",
            node.path("absent").display()
        ))
        .arg("--log-level=10")
        // PodResources off: an empty value is accepted
        .args(["--pod-resources-socket", ""])
        // glog's flags as upstream DaemonSets pass them: accepted, ignored
        .args([
            "-v=5",
            "-logtostderr",
            "-alsologtostderr=true",
            "-log_dir=/tmp/unused",
            "-vmodule=x=1",
            "-stderrthreshold=INFO",
        ])
        .spawn()
        .unwrap();
    all_registered(&kubelet).await;
    assert!(std::fs::read_dir(node.path("devinfo")).unwrap().count() > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read_dir(node.path("devinfo")).unwrap().count(), 0);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("kubelet.sock")]);
}

#[tokio::test]
async fn a_bad_config_stops_start_up_with_a_message() {
    let node = Node::new(r#"{"resourceList": [{"resourceName": "bad name!", "selectors": {}}]}"#);
    let error = Daemon::start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off))
        .await
        .err()
        .expect("invalid config refused");
    let message = error.to_string();
    assert!(message.contains("bad name!"), "{message}");
    let empty = Node::new(r#"{"resourceList": []}"#);
    let error = Daemon::start(empty.settings(RegistrationMode::KubeletSocket, CdiMode::Off))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("no resources"), "{error}");
    let _unused: &Path = node.dir.path();
}

#[tokio::test]
async fn a_pool_added_by_reload_survives_a_later_kubelet_restart() {
    // At start nothing matches (the VFs "are not created yet"), so no pool is served.
    let none =
        r#"{"resourceList": [{"resourceName": "later", "selectors": {"vendors": ["1af4"]}}]}"#;
    let node = Node::new(none);
    let dir = node.path("device-plugins");
    let mut kubelet = KubeletSim::start(&dir).await.unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(kubelet.plugins().is_empty());
    std::fs::write(node.path("config.json"), CONFIG).unwrap();
    daemon.control.send(Control::Reload).await.unwrap();
    all_registered(&kubelet).await;
    // the directory watch must still be running for pools born after start-up
    kubelet.stop();
    KubeletSim::wipe_sockets(&dir).unwrap();
    kubelet = KubeletSim::start(&dir).await.unwrap();
    all_registered(&kubelet).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_recreated_kubelet_sock_alone_triggers_exactly_one_registration() {
    let node = Node::new(CONFIG);
    let dir = node.path("device-plugins");
    let mut kubelet = KubeletSim::start(&dir).await.unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    // a kubelet that comes back without wiping the plugin sockets
    kubelet.stop();
    kubelet = KubeletSim::start(&dir).await.unwrap();
    all_registered(&kubelet).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for resource in [NETDEV, DPDK, RDMA] {
        assert_eq!(
            kubelet.plugin(resource).unwrap().registrations,
            1,
            "{resource}"
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_rejected_plugin_recreates_its_socket_and_is_registered_on_the_retry() {
    let node = Node::new(CONFIG);
    let registry = node.path("plugins_registry");
    std::fs::create_dir_all(&registry).unwrap();
    let kubelet = KubeletSim::start_plugin_watcher(&registry).await.unwrap();
    kubelet.reject_next(1);
    let daemon = start(node.settings(RegistrationMode::PluginsRegistry, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    let rejected: u32 = kubelet.plugins().values().map(|v| v.rejections).sum();
    assert_eq!(rejected, 1, "one plugin was rejected once");
    let rejected_pool = kubelet
        .plugins()
        .into_iter()
        .find(|(_, v)| v.rejections == 1)
        .unwrap();
    assert_eq!(
        rejected_pool.1.registrations, 1,
        "{}: registered after recreating its socket",
        rejected_pool.0
    );
    daemon.stop().await;
}

#[tokio::test]
async fn vfio_no_iommu_groups_uio_functions_and_the_cdi_field() {
    let node = Node::new(CONFIG);
    // the vfio VF's group is a no-IOMMU group; VF 2 is rebound to igb_uio (uio0)
    let group = node.iommu_group("0000:3b:01.3");
    std::fs::write(
        node.sysfs
            .join("kernel/iommu_groups")
            .join(&group)
            .join("name"),
        "vfio-noiommu\n",
    )
    .unwrap();
    let vf2 = node.sysfs.join("bus/pci/devices/0000:3b:01.2");
    let vf2_dir = vf2
        .parent()
        .unwrap()
        .join(std::fs::read_link(&vf2).unwrap());
    std::fs::remove_file(vf2_dir.join("driver")).unwrap();
    std::fs::create_dir_all(node.sysfs.join("bus/pci/drivers/igb_uio")).unwrap();
    std::os::unix::fs::symlink(
        node.sysfs.join("bus/pci/drivers/igb_uio"),
        vf2_dir.join("driver"),
    )
    .unwrap();
    std::fs::remove_dir_all(vf2_dir.join("net")).unwrap();
    std::fs::create_dir_all(vf2_dir.join("uio/uio0")).unwrap();
    let config = CONFIG.replace(
        r#""drivers": ["vfio-pci"]}"#,
        r#""drivers": ["vfio-pci", "igb_uio"]}"#,
    );
    std::fs::write(node.path("config.json"), config).unwrap();

    let (kubelet, daemon) = serving(&node, CdiMode::Off).await;
    let r = kubelet
        .allocate(DPDK, &strings(&["0000:3b:01.3", "0000:3b:01.2"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    assert_eq!(
        specs(&c.devices),
        vec![
            spec("/dev/vfio/vfio", "/dev/vfio/vfio"),
            spec(
                &format!("/dev/vfio/noiommu-{group}"),
                &format!("/dev/vfio/{group}")
            ),
            spec("/dev/uio0", "/dev/uio0"),
        ]
    );
    let info: Value = serde_json::from_str(&c.envs["PCIDEVICE_INTEL_COM_INTEL_DPDK_INFO"]).unwrap();
    assert_eq!(info["0000:3b:01.2"]["uio"], json!({"mount": "/dev/uio0"}));
    assert_eq!(
        info["0000:3b:01.3"]["vfio"]["dev-mount"],
        json!(format!("/dev/vfio/{group}"))
    );
    daemon.stop().await;

    // the same pool with CDI references in the cdi_devices field
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Field)).await;
    registered_times(&kubelet, DPDK, 2).await;
    let r = kubelet
        .allocate(DPDK, &strings(&["0000:3b:01.2"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    let names: Vec<&str> = c.cdi_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["intel.com/net-pci=0000:3b:01.2"]);
    assert!(c.devices.is_empty() && c.annotations.is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn health_endpoint_reports_liveness_and_registration() {
    let node = Node::new(CONFIG);
    let dir = node.path("device-plugins");
    let addr = free_addr();
    let mut child = daemon_command(&node, "--config-file")
        .arg("--registration-mode=kubelet-socket")
        .arg(format!("--health-addr={addr}"))
        .spawn()
        .unwrap();
    // no kubelet yet: alive, not ready, and it says which pools wait
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        match try_http_get(addr, "/readyz") {
            // start-up not over: the pools are not all there yet
            Ok((503, body)) if body == "starting\n" => {}
            Ok(answer) => break answer,
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "health endpoint never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "not registered with the kubelet: intel.com/intel_dpdk, intel.com/intel_netdev, nvidia.com/mlx_rdma\n");
    assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_string()));
    let kubelet = KubeletSim::start(&dir).await.unwrap();
    all_registered(&kubelet).await;
    let deadline = Instant::now() + WAIT;
    while http_get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "never ready after registration");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn vhost_vdpa_devices_get_their_char_device_and_a_vdpa_device_info_file() {
    let config = r#"{"resourceList": [
      {"resourceName": "vdpa_vhost", "resourcePrefix": "nvidia.com", "selectors": {"vdpaType": "vhost"}}
    ]}"#;
    let node = Node::new(config);
    let extras = sysfs_extras::Extras::new(&node.sysfs);
    extras.vdpa_device(
        &extras.pci_dir("0000:d8:00.2"),
        "vdpa0",
        Some("vhost_vdpa"),
        0,
    );
    let kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    let resource = "nvidia.com/vdpa_vhost";
    let devices = kubelet
        .wait_for_devices(resource, WAIT, |d| !d.is_empty())
        .await
        .unwrap();
    assert_eq!(ids(&devices), strings(&["0000:d8:00.2"]));
    let r = kubelet
        .allocate(resource, &strings(&["0000:d8:00.2"]))
        .await
        .unwrap();
    let c = &r.container_responses[0];
    assert_eq!(
        specs(&c.devices),
        vec![spec("/dev/vhost-vdpa-0", "/dev/vhost-vdpa-0")]
    );
    let info: Value =
        serde_json::from_str(&c.envs["PCIDEVICE_NVIDIA_COM_VDPA_VHOST_INFO"]).unwrap();
    assert_eq!(
        info,
        json!({"0000:d8:00.2": {"generic": {"deviceID": "0000:d8:00.2"}, "vdpa": {"mount": "/dev/vhost-vdpa-0"}}})
    );
    let file = node.path("devinfo/nvidia.com-vdpa_vhost-0000:d8:00.2-device.json");
    let body: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"type": "vdpa", "version": "1.1.0", "vdpa": {
            "parent-device": "vdpa0", "driver": "vhost", "path": "/dev/vhost-vdpa-0",
            "pci-address": "0000:d8:00.2", "pf-pci-address": "0000:d8:00.0"}})
    );
    daemon.stop().await;
}

const MOVED: &str = "intel.com/intel_moved";

/// `CONFIG` with the netdev pool narrowed to VFs 0-1 of the E810 PF and
/// its VF 2 (0000:3b:01.2) moved to a new pool, `intel_moved`.
fn config_moving_vf2(node: &Node) -> String {
    let pf_name = std::fs::read_dir(node.sysfs.join("bus/pci/devices/0000:3b:00.0/net"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let pf = pf_name.to_string_lossy();
    CONFIG
        .replace(
            r#""drivers": ["iavf"]}"#,
            &format!(r#""drivers": ["iavf"], "pfNames": ["{pf}#0-1"]}}"#),
        )
        .replace(
            r#""resourceList": ["#,
            &format!(
                r#""resourceList": [{{"resourceName": "intel_moved", "selectors": {{"pfNames": ["{pf}#2"]}}}},"#
            ),
        )
}

fn health(devices: &[Device]) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = devices
        .iter()
        .map(|d| (d.id.clone(), d.health.clone()))
        .collect();
    list.sort();
    list
}

fn healths(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(id, h)| (id.to_string(), h.to_string()))
        .collect()
}

/// Issue 12, point 4: a reload that would move a VF a pod holds to another
/// pool keeps it in its old pool as Unhealthy (so no second pod gets it
/// through the new pool) until the kubelet's PodResources stops listing it;
/// then the move applies.
#[tokio::test]
async fn a_held_vf_stays_unhealthy_in_its_pool_through_a_reload_until_released() {
    let node = Node::new(CONFIG);
    let mut kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    kubelet
        .serve_pod_resources(&node.path("pod-resources.sock"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    kubelet
        .allocate_to_pod("ran", "du-0", "app", NETDEV, &strings(&["0000:3b:01.2"]))
        .await
        .unwrap();

    std::fs::write(node.path("config.json"), config_moving_vf2(&node)).unwrap();
    daemon.control.send(Control::Reload).await.unwrap();
    let kept = healths(&[
        ("0000:3b:01.0", "Healthy"),
        ("0000:3b:01.1", "Healthy"),
        ("0000:3b:01.2", "Unhealthy"),
    ]);
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| health(d) == kept)
        .await
        .unwrap();
    // several rechecks later, still kept, and never offered by the new pool
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        health(&kubelet.plugin(NETDEV).unwrap().devices.unwrap()),
        kept
    );
    assert!(
        kubelet.plugin(MOVED).is_none(),
        "the new pool would only have the held VF: not advertised yet"
    );
    assert!(node
        .path("devinfo/intel.com-intel_netdev-0000:3b:01.2-device.json")
        .exists());
    // the inventory (config on disk) puts it in the new pool, where the
    // kubelet cannot allocate it yet, and names its pod
    let socket = node.path("pod-resources.sock");
    let out = inventory(
        &node,
        &[
            "--pod-resources-socket",
            socket.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
    .await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vf = inventory_vf(&json, "0000:3b:01.2");
    assert_eq!(
        (&vf["pool"], &vf["health"], &vf["pod"]["name"]),
        (&json!(MOVED), &json!("Unhealthy"), &json!("du-0"))
    );

    let released = Instant::now();
    kubelet.delete_pod("ran", "du-0");
    kubelet
        .wait_for_devices(MOVED, WAIT, |d| {
            health(d) == healths(&[("0000:3b:01.2", "Healthy")])
        })
        .await
        .unwrap();
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| d.len() == 2)
        .await
        .unwrap();
    eprintln!("moved {:?} after the pod was deleted", released.elapsed());
    assert!(!node
        .path("devinfo/intel.com-intel_netdev-0000:3b:01.2-device.json")
        .exists());
    // the new pool's file comes with its first Allocate
    kubelet
        .allocate_to_pod("ran", "du-1", "app", MOVED, &strings(&["0000:3b:01.2"]))
        .await
        .unwrap();
    assert!(node
        .path("devinfo/intel.com-intel_moved-0000:3b:01.2-device.json")
        .exists());
    daemon.stop().await;
}

fn devinfo_names(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(node.path("devinfo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Issue 12, point 7: with PodResources answering, device-info files are
/// written when Multus needs them (by Allocate, before the CNI runs), not
/// all before serving; at start only the files of devices pods hold are
/// written, so a restarted daemon still has them for a sandbox re-created
/// without a new Allocate.
#[tokio::test]
async fn device_info_files_are_written_at_allocate_and_at_start_for_held_devices() {
    let node = Node::new(CONFIG);
    let mut kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    kubelet
        .serve_pod_resources(&node.path("pod-resources.sock"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    assert_eq!(
        devinfo_names(&node),
        Vec::<String>::new(),
        "nothing held, nothing written"
    );
    kubelet
        .allocate_to_pod("ran", "du-0", "app", NETDEV, &strings(&["0000:3b:01.1"]))
        .await
        .unwrap();
    let file = "intel.com-intel_netdev-0000:3b:01.1-device.json";
    assert_eq!(devinfo_names(&node), [file]);
    let body: Value =
        serde_json::from_str(&std::fs::read_to_string(node.path("devinfo").join(file)).unwrap())
            .unwrap();
    assert_eq!(body["pci"]["pci-address"], "0000:3b:01.1");

    // a restart: files removed at shutdown, the held one back at start
    daemon.stop().await;
    assert_eq!(devinfo_names(&node), Vec::<String>::new());
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    assert_eq!(devinfo_names(&node), [file], "written before serving");
    daemon.stop().await;
}

/// Without a PodResources socket (not mounted, kubelet down) what pods hold
/// is unknown: the daemon keeps running and the reload applies as upstream
/// would apply it.
#[tokio::test]
async fn without_pod_resources_a_reload_applies_and_the_daemon_keeps_serving() {
    let node = Node::new(CONFIG);
    let (kubelet, daemon) = serving(&node, CdiMode::Off).await;
    kubelet
        .allocate(NETDEV, &strings(&["0000:3b:01.2"]))
        .await
        .unwrap();
    assert!(!node.path("pod-resources.sock").exists());
    std::fs::write(node.path("config.json"), config_moving_vf2(&node)).unwrap();
    daemon.control.send(Control::Reload).await.unwrap();
    kubelet
        .wait_for_devices(MOVED, WAIT, |d| ids(d) == strings(&["0000:3b:01.2"]))
        .await
        .unwrap();
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| d.len() == 2)
        .await
        .unwrap();
    daemon.stop().await;
}

/// Issue 12, point 3: a ConfigMap update applies without SIGHUP; an invalid
/// one is refused naming the resource and key, the pools keep serving the
/// old config, and /readyz says why until a valid config comes.
#[tokio::test]
async fn a_configmap_swap_applies_and_an_invalid_one_is_refused_with_readyz_saying_why() {
    let node = Node::new(CONFIG);
    let mut volume = ConfigMapDir::new(node.path("pcidp"), "config.json", CONFIG);
    let kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    let addr = free_addr();
    let mut settings = node.settings(RegistrationMode::KubeletSocket, CdiMode::Off);
    settings.config_file = volume.file();
    settings.health_addr = Some(addr);
    let daemon = start(settings).await;
    all_registered(&kubelet).await;
    wait_readyz(addr, WAIT, |status, _| status == 200).await;
    let registrations = kubelet.plugin(NETDEV).unwrap().registrations;

    // a valid update: the netdev pool narrowed to VFs 0-1, no SIGHUP
    let started = Instant::now();
    volume.publish(&config_moving_vf2(&node));
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| d.len() == 2)
        .await
        .unwrap();
    kubelet
        .wait_for_devices(MOVED, WAIT, |d| ids(d) == strings(&["0000:3b:01.2"]))
        .await
        .unwrap();
    eprintln!("configmap swap applied in {:?}", started.elapsed());
    assert_eq!(kubelet.plugin(NETDEV).unwrap().registrations, registrations);

    // an invalid update: refused, old pools stay, /readyz names resource and key
    let updates = kubelet.plugin(NETDEV).unwrap().updates;
    volume.publish(&CONFIG.replace(r#""drivers": ["iavf"]"#, r#""drivers": "iavf""#));
    // (a 503 for the moved pool's registration, a moment after its first
    // list, is not the answer this waits for)
    let (status, body) = wait_readyz(addr, WAIT, |_, body| body.contains("config refused")).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("intel_netdev") && body.contains("drivers"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = kubelet.plugin(NETDEV).unwrap();
    assert!(view.stream_open);
    assert_eq!(view.updates, updates, "the refused config changed nothing");
    assert_eq!(
        ids(&view.devices.unwrap()),
        strings(&["0000:3b:01.0", "0000:3b:01.1"])
    );
    assert!(kubelet.plugin(MOVED).unwrap().stream_open);

    // fixed: applies, ready again
    volume.publish(CONFIG);
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| d.len() == 3)
        .await
        .unwrap();
    wait_readyz(addr, WAIT, |status, _| status == 200).await;
    daemon.stop().await;
}

/// `sriovctl inventory` with `args`, off the runtime (the stand-in kubelet
/// answering it runs on the test's runtime).
async fn inventory(node: &Node, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sriovctl"));
    command
        .arg("--sysfs-root")
        .arg(&node.sysfs)
        .arg("inventory")
        .arg("--config-file")
        .arg(node.path("config.json"))
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn inventory_vf<'a>(json: &'a Value, id: &str) -> &'a Value {
    json["pfs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|pf| pf["vfs"].as_array().unwrap())
        .find(|vf| vf["pciAddress"] == id)
        .unwrap_or_else(|| panic!("{id} not in the inventory"))
}

/// Issue 12, point 8: the inventory shows, per VF, the pod holding it and
/// its health as the kubelet counts it, from PodResources; JSON and table.
#[tokio::test]
async fn inventory_shows_the_pod_holding_each_vf_and_its_health() {
    let node = Node::new(CONFIG);
    let mut kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    kubelet
        .serve_pod_resources(&node.path("pod-resources.sock"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    kubelet
        .allocate_to_pod("ran", "du-0", "app", NETDEV, &strings(&["0000:3b:01.1"]))
        .await
        .unwrap();
    let socket = node.path("pod-resources.sock");
    let socket = socket.to_str().unwrap();

    let out = inventory(
        &node,
        &["--pod-resources-socket", socket, "--output", "json"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let held = inventory_vf(&json, "0000:3b:01.1");
    assert_eq!(
        held["pod"],
        json!({"namespace": "ran", "name": "du-0", "container": "app", "resource": NETDEV})
    );
    assert_eq!(held["health"], "Healthy");
    let free = inventory_vf(&json, "0000:3b:01.0");
    assert_eq!(
        (&free["pod"], &free["health"]),
        (&Value::Null, &json!("Healthy"))
    );
    assert_eq!(json["podResources"]["error"], Value::Null);

    let out = inventory(&node, &["--pod-resources-socket", socket]).await;
    let table = String::from_utf8(out.stdout).unwrap();
    let line = table
        .lines()
        .find(|l| l.contains("0000:3b:01.1"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("ran/du-0") && line.contains("Healthy"),
        "{line}"
    );

    // no kubelet socket: pods and health unknown, said once, not a failure
    let missing = node.path("missing.sock");
    let out = inventory(
        &node,
        &[
            "--pod-resources-socket",
            missing.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
    .await;
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["podResources"]["error"]
        .as_str()
        .unwrap()
        .contains("missing.sock"));
    assert_eq!(inventory_vf(&json, "0000:3b:01.1")["pod"], Value::Null);
    assert_eq!(inventory_vf(&json, "0000:3b:01.1")["health"], Value::Null);
    daemon.stop().await;
}

/// Issue 12, point 4: a held VF that vanished from the node (hot-unplug,
/// `sriov_numvfs` lowered) stays listed as Unhealthy until released; here
/// it vanishes from a built tree and a reload rescans.
#[tokio::test]
async fn a_held_vf_that_vanished_stays_unhealthy_until_released() {
    let node = Node::new(CONFIG);
    let mut kubelet = KubeletSim::start(&node.path("device-plugins"))
        .await
        .unwrap();
    kubelet
        .serve_pod_resources(&node.path("pod-resources.sock"))
        .await
        .unwrap();
    let daemon = start(node.settings(RegistrationMode::KubeletSocket, CdiMode::Off)).await;
    all_registered(&kubelet).await;
    kubelet
        .allocate_to_pod("ran", "du-0", "app", NETDEV, &strings(&["0000:3b:01.2"]))
        .await
        .unwrap();

    // VF 2 leaves the tree: its bus entry and its PF's virtfn2 link
    std::fs::remove_file(node.sysfs.join("bus/pci/devices/0000:3b:01.2")).unwrap();
    std::fs::remove_file(node.sysfs.join("bus/pci/devices/0000:3b:00.0/virtfn2")).unwrap();
    daemon.control.send(Control::Reload).await.unwrap();
    let kept = healths(&[
        ("0000:3b:01.0", "Healthy"),
        ("0000:3b:01.1", "Healthy"),
        ("0000:3b:01.2", "Unhealthy"),
    ]);
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| health(d) == kept)
        .await
        .unwrap();
    kubelet.delete_pod("ran", "du-0");
    kubelet
        .wait_for_devices(NETDEV, WAIT, |d| {
            ids(d) == strings(&["0000:3b:01.0", "0000:3b:01.1"])
        })
        .await
        .unwrap();
    daemon.stop().await;
}
