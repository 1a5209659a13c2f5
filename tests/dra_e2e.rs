//! Issue 14's "done when", as the processes of a node (root, live simulated
//! node): `sriovctl apiserver-sim` (a 1.34 API server with the Node),
//! `sriovctl kubelet-sim` (kubelet.sock, the plugin watcher, PodResources,
//! the node's slices wiped at start), the `sriov-device-plugin` binary with
//! two device plugin pools and two DRA pools whose selectors overlap, and
//! the `sriov` CNI binary called as Multus calls it. Checked: each VF is
//! served through exactly one API (the union is the node), the DRA pools'
//! slices carry the attributes in chunks of at most 128, a prepared claim
//! yields a CDI spec and a device-info file, the CNI attaches the claim's VF
//! by the slice's `k8s.cni.cncf.io/deviceID` next to a device plugin VF and
//! the two pods ping over the PF's wire, and DEL and Unprepare put it all
//! back. `/readyz` counts the DRA driver's registration and its slices;
//! `/metrics` has the DRA pools, with the prepared claim's VF allocated.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::cni::CniHarness;
use common::ctl::Ctl;
use common::{require_root, two_pf_layout, SimFixture, TestNetns};
use k8s_openapi::api::resource::v1::{Device, ResourceSlice};
use serde_json::Value;
use sriov_rs::devtools::sim::layout::Layout;
use sriov_rs::dra::api::DraApi;
use sriov_rs::dra::kube_api;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DRIVER: &str = "sriov-rs.invalid";
const NODE: &str = "worker-1";
const WAIT: Duration = Duration::from_secs(20);
/// VFs on the ConnectX PF: more than one slice's worth.
const CX_VFS: u16 = 130;
const NET_POOL: &str = "worker-1/intel.com/sriov-dra";
const CX_POOL: &str = "worker-1/intel.com/cx-rdma";

/// PF `<tag>a`: 4 E810 VFs (VF 3 on vfio-pci); PF `<tag>b`: 130 ConnectX VFs.
fn layout(tag: &str) -> Layout {
    let mut layout = two_pf_layout(tag);
    layout.pfs[1].total_vfs = 256;
    layout.pfs[1].num_vfs = CX_VFS;
    layout
}

/// Overlapping selectors, first match wins: VF 0 of PF a goes to the device
/// plugin pool `sriov_dp` although `sriov_dra` (DRA) selects every iavf VF
/// of PF a; the vfio VF to `sriov_dpdk`; PF b's VFs to `cx_rdma` (DRA).
fn config(tag: &str) -> String {
    format!(
        r#"{{"resourceList": [
  {{"resourceName": "sriov_dp", "selectors": {{"pfNames": ["{tag}a#0"]}}}},
  {{"resourceName": "sriov_dra", "allocationApi": "dra", "selectors": {{"pfNames": ["{tag}a"], "drivers": ["iavf"]}}}},
  {{"resourceName": "sriov_dpdk", "selectors": {{"drivers": ["vfio-pci"]}}}},
  {{"resourceName": "cx_rdma", "allocationApi": "dra", "selectors": {{"pfNames": ["{tag}b"], "isRdma": true}}}}
]}}"#
    )
}

/// The daemon binary; SIGTERM on drop, so a failed test leaves nothing running.
struct DaemonProcess {
    child: Option<Child>,
    log: PathBuf,
}

impl DaemonProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, and the daemon exits 0.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        terminate(&child);
        let status = child.wait().unwrap();
        assert!(status.success(), "daemon: {status}\n{}", self.log());
    }
}

fn terminate(child: &Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let _ = child.wait();
        }
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The slices of our driver on this node, once `ready` holds for them.
async fn wait_slices(
    api: &Arc<dyn DraApi>,
    daemon: &DaemonProcess,
    ready: impl Fn(&[ResourceSlice]) -> bool,
) -> Vec<ResourceSlice> {
    let deadline = Instant::now() + WAIT;
    loop {
        let slices = api.list_slices(NODE, DRIVER).await.unwrap();
        if ready(&slices) {
            return slices;
        }
        assert!(
            Instant::now() < deadline,
            "slices never as expected: {:?}\n{}",
            slices
                .iter()
                .map(|s| (&s.spec.pool.name, s.spec.devices.as_ref().map(Vec::len)))
                .collect::<Vec<_>>(),
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pool_devices<'a>(slices: &'a [ResourceSlice], pool: &str) -> Vec<&'a Device> {
    slices
        .iter()
        .filter(|s| s.spec.pool.name == pool)
        .flat_map(|s| s.spec.devices.iter().flatten())
        .collect()
}

fn attr(device: &Device, name: &str) -> String {
    let value = device.attributes.as_ref().and_then(|a| a.get(name));
    match value {
        Some(v) if v.string.is_some() => v.string.clone().unwrap(),
        Some(v) if v.int.is_some() => v.int.unwrap().to_string(),
        Some(v) if v.bool.is_some() => v.bool.unwrap().to_string(),
        _ => panic!("device {} has no attribute {name}", device.name),
    }
}

/// Every VF of the node, from its sysfs tree.
fn node_vfs(sysfs: &Path) -> BTreeSet<String> {
    let mut vfs = BTreeSet::new();
    for entry in std::fs::read_dir(sysfs.join("bus/pci/devices")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().join("physfn").exists() {
            vfs.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    vfs
}

/// The IDs a `kubelet-sim list` shows for `resource`.
fn listed(lines: &[String], resource: &str) -> BTreeSet<String> {
    let header = lines
        .iter()
        .position(|l| l.starts_with(&format!("{resource}: registered")))
        .unwrap_or_else(|| panic!("{resource} not listed: {lines:#?}"));
    lines[header + 1..]
        .iter()
        .map_while(|l| l.strip_prefix("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

fn write_claim(path: &Path, uid: &str, pool: &str, device: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\n\
             metadata: {{name: net, namespace: default, uid: {uid}}}\n\
             spec: {{devices: {{requests: [{{name: vf, exactly: {{deviceClassName: sriov-vf}}}}]}}}}\n\
             status: {{allocation: {{devices: {{results: [{{request: vf, driver: {DRIVER}, \
             pool: {pool}, device: {device}}}]}}}}}}\n"
        ),
    )
    .unwrap();
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

fn ping(pod: &TestNetns, address: &str) {
    let out = Command::new("timeout")
        .args([
            "10", "ip", "netns", "exec", &pod.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            address,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ping {address}: {out:?}");
}

/// The first series of `text` that starts with `prefix` and has every one
/// of `labels`: (the line before the value, the value).
fn series(text: &str, prefix: &str, labels: &[&str]) -> Option<(String, u64)> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| {
            let (labels, value) = l.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
}

/// `/metrics` until `done` says yes.
async fn scrape_until(addr: std::net::SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, text) =
            tokio::task::spawn_blocking(move || common::probe::http_get(addr, "/metrics"))
                .await
                .unwrap();
        assert_eq!(status, 200, "{text}");
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never as expected:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The address (first IP of the result) a CNI ADD gave.
fn added_ip(result: &Value) -> String {
    let address = result["ips"][0]["address"].as_str().unwrap();
    address.split('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_two_apis_and_the_cni_attaches_a_prepared_vf() {
    if !require_root("one_daemon_two_apis_and_the_cni_attaches_a_prepared_vf") {
        return;
    }
    let node = SimFixture::new(layout, true);
    let tag = node.tag.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = |sub: &str| dir.path().join(sub);
    std::fs::write(path("config.json"), config(&tag)).unwrap();

    // the API server: v1 and v1beta1 (1.34+), the Node that owns the slices
    let kubeconfig = path_arg(&path("kubeconfig"));
    let mut apiserver = Ctl::spawn(
        "apiserver-sim",
        &[
            "apiserver-sim",
            "--kubeconfig-out",
            &kubeconfig,
            "--node",
            &format!("{NODE}=node-uid-e2e"),
        ],
    )
    .unwrap();
    let ready = apiserver.line().await.unwrap();
    assert!(ready.starts_with("ready http://127.0.0.1:"), "{ready}");

    let health = common::probe::free_addr();
    let log = path("device-plugin.log");
    let daemon = DaemonProcess {
        child: Some(
            Command::new(env!("CARGO_BIN_EXE_sriov-device-plugin"))
                .arg(format!("--config-file={}", path("config.json").display()))
                .arg(format!("--sysfs-root={}", node.root.display()))
                .arg(format!(
                    "--device-plugin-path={}",
                    path("device-plugins").display()
                ))
                .arg("--registration-mode=kubelet-socket")
                .arg(format!(
                    "--plugins-registry-path={}",
                    path("plugins_registry").display()
                ))
                .arg(format!("--dra-plugin-path={}", path("plugins").display()))
                .arg(format!("--cdi-spec-dir={}", path("cdi").display()))
                .arg(format!("--devinfo-dir={}", path("devinfo").display()))
                .arg(format!(
                    "--pod-resources-socket={}",
                    path("pod-resources.sock").display()
                ))
                .arg(format!("--kubeconfig={kubeconfig}"))
                .arg(format!("--node-name={NODE}"))
                .arg(format!("--health-addr={health}"))
                .arg("--vf-counters-interval=1")
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        ),
        log,
    };

    // no kubelet yet: not ready (after "starting"), naming what is not registered
    let waiting = format!(
        "not registered with the kubelet: DRA driver {DRIVER}, intel.com/sriov_dp, \
         intel.com/sriov_dpdk\n"
    );
    let (status, _) = common::probe::wait_readyz(health, WAIT, |_, body| body == waiting).await;
    assert_eq!(status, 503);

    // the kubelet: device plugins on kubelet.sock, DRA drivers through the
    // plugin watcher, PodResources, the node's slices wiped as it starts
    let mut kubelet = Ctl::spawn(
        "kubelet-sim",
        &[
            "--log-level",
            "warn",
            "kubelet-sim",
            "--dir",
            &path_arg(&path("device-plugins")),
            "--plugins-registry",
            &path_arg(&path("plugins_registry")),
            "--pod-resources-socket",
            &path_arg(&path("pod-resources.sock")),
            "--kubeconfig",
            &kubeconfig,
            "--node-name",
            NODE,
        ],
    )
    .unwrap();
    // it deletes what the daemon may have published already; the daemon
    // publishes again when the kubelet registers its driver
    let wiped = kubelet.line().await.unwrap();
    assert!(wiped.starts_with(&format!("wiped {NODE} ")), "{wiped}");

    for (wait, answer) in [
        (
            "wait intel.com/sriov_dp 1",
            "intel.com/sriov_dp: 1 device(s) listed".to_owned(),
        ),
        (
            "wait intel.com/sriov_dpdk 1",
            "intel.com/sriov_dpdk: 1 device(s) listed".to_owned(),
        ),
        (
            &format!("wait-dra {DRIVER}"),
            format!("{DRIVER}: registered 1x, refused 0x"),
        ),
    ] {
        let got = kubelet.ask(wait).await.unwrap();
        assert!(got.starts_with(&answer), "{wait}: {got}\n{}", daemon.log());
    }
    let lines = kubelet.ask_all("list").await.unwrap();
    let dp_vf = "0000:3b:01.0".to_owned(); // VF 0 of PF a: the first pool matched it
    assert_eq!(
        listed(&lines, "intel.com/sriov_dp"),
        BTreeSet::from([dp_vf.clone()])
    );
    assert_eq!(
        listed(&lines, "intel.com/sriov_dpdk"),
        BTreeSet::from(["0000:3b:01.3".to_owned()])
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("sriov_dra") || l.contains("cx_rdma")),
        "a DRA pool registered as a device plugin: {lines:#?}"
    );

    // the slices, read as Multus and the scheduler read them
    let api = kube_api::connect(Some(&path("kubeconfig"))).await.unwrap();
    let slices = wait_slices(&api, &daemon, |s| {
        pool_devices(s, NET_POOL).len() == 2
            && pool_devices(s, CX_POOL).len() == usize::from(CX_VFS)
    })
    .await;
    let cx_slices: Vec<&ResourceSlice> = slices
        .iter()
        .filter(|s| s.spec.pool.name == CX_POOL)
        .collect();
    assert_eq!(cx_slices.len(), 2, "130 devices: two slices");
    for slice in &cx_slices {
        assert!(slice.spec.devices.as_ref().unwrap().len() <= 128);
        assert_eq!(slice.spec.pool.resource_slice_count, 2);
        assert_eq!(slice.spec.node_name.as_deref(), Some(NODE));
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", "node-uid-e2e")
        );
    }
    let net_devices = pool_devices(&slices, NET_POOL);
    let dra_vf = net_devices[0];
    assert_eq!(dra_vf.name, "0000-3b-01-1");
    for (name, want) in [
        ("k8s.cni.cncf.io/deviceID", "0000:3b:01.1"),
        ("k8s.cni.cncf.io/resourceName", "intel.com/sriov_dra"),
        ("resource.kubernetes.io/pciBusID", "0000:3b:01.1"),
        ("pfName", &format!("{tag}a")),
        ("pfPciAddress", "0000:3b:00.0"),
        ("vfIndex", "1"),
        ("driver", "iavf"),
        ("vendor", "8086"),
        ("numaNode", "0"),
        ("linkType", "ether"),
        ("rdmaCapable", "false"),
    ] {
        assert_eq!(attr(dra_vf, name), want, "{name}");
    }
    assert!(attr(dra_vf, "resource.kubernetes.io/pcieRoot").starts_with("pci0000:"));
    assert_eq!(
        attr(pool_devices(&slices, CX_POOL)[0], "rdmaCapable"),
        "true"
    );

    // ready: both device plugin pools and the DRA driver registered, the
    // slices published (one for sriov_dra, two for cx_rdma)
    let (_, body) = common::probe::wait_readyz(health, WAIT, |status, _| status == 200).await;
    assert_eq!(body, "ready\nDRA ResourceSlices published: 3\n");

    // each VF through exactly one API, and every VF of the node served
    let dp: BTreeSet<String> = listed(&lines, "intel.com/sriov_dp")
        .into_iter()
        .chain(listed(&lines, "intel.com/sriov_dpdk"))
        .collect();
    let dra: BTreeSet<String> = slices
        .iter()
        .flat_map(|s| s.spec.devices.iter().flatten())
        .map(|d| attr(d, "k8s.cni.cncf.io/deviceID"))
        .collect();
    assert_eq!(
        dra.len(),
        2 + usize::from(CX_VFS),
        "a device twice in the slices"
    );
    assert!(
        dp.is_disjoint(&dra),
        "in both APIs: {:?}",
        dp.intersection(&dra)
    );
    assert_eq!(
        dp.union(&dra).cloned().collect::<BTreeSet<_>>(),
        node_vfs(&node.root)
    );

    // the device plugin pod: Allocate through the kubelet
    let allocated = kubelet
        .ask_all("allocate intel.com/sriov_dp preferred:1")
        .await
        .unwrap();
    assert_eq!(
        allocated[0],
        format!("intel.com/sriov_dp: allocated {dp_vf}")
    );

    // the DRA pod: the scheduler allocated the claim, the kubelet prepares it
    write_claim(&path("claim.yaml"), "uid-net", NET_POOL, &dra_vf.name);
    let stored = apiserver
        .ask(&format!("claim {}", path("claim.yaml").display()))
        .await
        .unwrap();
    assert_eq!(stored, "claim default/net uid=uid-net");
    assert_eq!(
        kubelet.ask("prepare default/net/uid-net").await.unwrap(),
        format!(
            "prepare uid-net device {NET_POOL} 0000-3b-01-1 requests=vf \
             cdi={DRIVER}/vf=uid-net-0000-3b-01-1"
        )
    );
    let spec = read_json(&path("cdi/sriov-dra-uid-net.json")).expect("the claim's CDI spec");
    assert_eq!(spec["kind"], format!("{DRIVER}/vf"));
    assert_eq!(spec["devices"][0]["name"], "uid-net-0000-3b-01-1");
    let env: Vec<&str> = spec["devices"][0]["containerEdits"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"PCIDEVICE_INTEL_COM_SRIOV_DRA=0000:3b:01.1"),
        "{env:?}"
    );
    let devinfo_file = path("devinfo").join("intel.com-sriov_dra-0000:3b:01.1-device.json");
    let devinfo = read_json(&devinfo_file).expect("the device-info file Multus reads");
    assert_eq!(devinfo["pci"]["pci-address"], "0000:3b:01.1");
    assert_eq!(devinfo["pci"]["pf-pci-address"], "0000:3b:00.0");

    // Multus calls the sriov CNI with the deviceID it found for each pod
    let cni = CniHarness::new(&node.root);
    let pod_dp = TestNetns::new(&format!("{tag}-dp"));
    let pod_dra = TestNetns::new(&format!("{tag}-dra"));
    let dra_device_id = attr(dra_vf, "k8s.cni.cncf.io/deviceID");
    let mut ips = Vec::new();
    for (pod, device) in [(&pod_dp, &dp_vf), (&pod_dra, &dra_device_id)] {
        let conf = cni.host_local_conf("1.0.0", device, "10.77.14.0/24");
        let added = cni.run("ADD", &pod.name, Some(pod.path()), "net1", &conf);
        assert!(added.ok(), "ADD {device}: {}", added.stderr);
        ips.push(added_ip(&added.json));
        let vf_net = node.root.join("bus/pci/devices").join(device).join("net");
        let left: Vec<_> = std::fs::read_dir(&vf_net).unwrap().collect();
        assert!(
            left.is_empty(),
            "{device} still has a host netdev: {left:?}"
        );
    }
    ping(&pod_dp, &ips[1]);
    ping(&pod_dra, &ips[0]);

    // /metrics: the DRA pools beside the device plugin pools, the prepared
    // claim's VF allocated, its counters labelled with the claim's namespace
    let text = scrape_until(health, |text| {
        series(text, "sriov_vf_rx_packets{", &["pciAddr=\"0000:3b:01.1\""])
            .is_some_and(|(labels, value)| value > 0 && labels.contains("namespace=\"default\""))
    })
    .await;
    for (line, want) in [
        (
            "sriov_dp_pool_capacity{pool=\"intel.com/cx_rdma\",api=\"dra\"}",
            130,
        ),
        (
            "sriov_dp_pool_capacity{pool=\"intel.com/sriov_dra\",api=\"dra\"}",
            2,
        ),
        (
            "sriov_dp_pool_allocated{pool=\"intel.com/sriov_dra\",api=\"dra\"}",
            1,
        ),
        (
            "sriov_dp_pool_allocated{pool=\"intel.com/cx_rdma\",api=\"dra\"}",
            0,
        ),
        (
            "sriov_dp_pool_allocated{pool=\"intel.com/sriov_dp\",api=\"devicePlugin\"}",
            1,
        ),
    ] {
        assert_eq!(
            series(&text, line, &[]).map(|(_, v)| v),
            Some(want),
            "{line}"
        );
    }

    for (pod, device, index) in [(&pod_dp, &dp_vf, 0), (&pod_dra, &dra_device_id, 1)] {
        let conf = cni.host_local_conf("1.0.0", device, "10.77.14.0/24");
        let deleted = cni.run("DEL", &pod.name, Some(pod.path()), "net1", &conf);
        assert!(deleted.ok(), "DEL {device}: {}", deleted.stderr);
        let host_name = format!("{tag}av{index}");
        assert!(
            common::host_link_names().contains(&host_name),
            "{host_name} not back on the host"
        );
    }
    assert!(cni.allocated_ips().is_empty(), "{:?}", cni.allocated_ips());

    // Unprepare removes what Prepare wrote; the slices still list the VF
    assert_eq!(
        kubelet.ask("unprepare default/net/uid-net").await.unwrap(),
        "unprepare uid-net ok"
    );
    assert!(!path("cdi/sriov-dra-uid-net.json").exists());
    assert!(!devinfo_file.exists());
    let after = api.list_slices(NODE, DRIVER).await.unwrap();
    assert_eq!(pool_devices(&after, NET_POOL).len(), 2);
    let text = scrape_until(health, |_| true).await;
    assert_eq!(
        series(
            &text,
            "sriov_dp_pool_allocated{pool=\"intel.com/sriov_dra\",api=\"dra\"}",
            &[]
        )
        .map(|(_, v)| v),
        Some(0)
    );

    kubelet.quit().await.unwrap();
    daemon.stop();
    apiserver.quit().await.unwrap();
    let pods = [pod_dp.name.clone(), pod_dra.name.clone()];
    drop((pod_dp, pod_dra));
    assert!(!common::named_netns().iter().any(|n| pods.contains(n)));
}
