//! The device plugin on the live simulated node (root), with the stand-in
//! kubelet following ListAndWatch: a pulled cable turns exactly that PF's
//! VFs Unhealthy within 500 ms (not an opted-out pool's), and back; VFs made
//! and destroyed through `sriov_numvfs` reach the kubelet within a second,
//! without a restart; a VF rebound to vfio-pci moves pool.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{require_root, two_pf_layout, SimFixture};
use sriov_rs::deviceplugin::{CdiMode, Control, Daemon, RegistrationMode, Settings};
use sriov_rs::devtools::kubelet_sim::KubeletSim;
use sriov_rs::devtools::sim;
use sriov_rs::kubelet_api::deviceplugin::v1beta1::Device;
use sriov_rs::sysfs::SysfsRoot;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// PF `<tag>a` (E810, 0000:3b:00.0): VFs 0-2 on iavf, 3 on vfio-pci. PF
/// `<tag>b` (ConnectX, 0000:d8:00.0): VFs 0000:d8:00.2-3, in a pool that
/// opted out of link health.
fn config(tag: &str) -> String {
    format!(
        r#"{{"resourceList": [
  {{"resourceName": "e810", "selectors": {{"pfNames": ["{tag}a"], "drivers": ["iavf"]}}}},
  {{"resourceName": "dpdk", "selectors": {{"drivers": ["vfio-pci"]}}}},
  {{"resourceName": "cx", "linkHealth": false, "selectors": {{"pfNames": ["{tag}b"]}}}}
]}}"#
    )
}

const E810: &str = "intel.com/e810";
const DPDK: &str = "intel.com/dpdk";
const CX: &str = "intel.com/cx";

/// A live node and the daemon's dirs (sockets, device-info, CDI) with the
/// test config written.
fn node_and_dirs() -> (SimFixture, tempfile::TempDir) {
    let node = SimFixture::new(two_pf_layout, true);
    let dir = tempfile::tempdir().unwrap();
    for sub in ["device-plugins", "devinfo", "cdi"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::write(dir.path().join("config.json"), config(&node.tag)).unwrap();
    (node, dir)
}

/// VFs 0 and 1 of PF a into two pods (`<tag>-<name>1`, `-<name>2`),
/// addressed in 10.<subnet>.0.0/24: their netdevs leave the host's sysfs.
fn two_vfs_into_pods(node: &SimFixture, name: &str, subnet: u8) -> [common::TestNetns; 2] {
    let pods = [1, 2].map(|n| common::TestNetns::new(&format!("{}-{name}{n}", node.tag)));
    for (n, pod) in pods.iter().enumerate() {
        common::plug_into_pod(
            &format!("{}av{n}", node.tag),
            pod,
            std::net::Ipv4Addr::new(10, subnet, 0, n as u8 + 1),
        );
    }
    pods
}

struct Setup {
    node: SimFixture,
    dir: tempfile::TempDir,
    kubelet: KubeletSim,
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

impl Setup {
    async fn new() -> Setup {
        let (node, dir) = node_and_dirs();
        let path = |sub: &str| -> PathBuf { dir.path().join(sub) };
        let kubelet = KubeletSim::start(&path("device-plugins")).await.unwrap();
        let settings = Settings {
            config_file: path("config.json"),
            resource_prefix: "intel.com".into(),
            sysfs: SysfsRoot::new(&node.root),
            dev_root: sim::dev_root_for(&node.root),
            device_plugin_dir: path("device-plugins"),
            plugins_registry_dir: path("plugins_registry"),
            registration: RegistrationMode::KubeletSocket,
            devinfo_dir: path("devinfo"),
            cdi: CdiMode::Off,
            cdi_spec_dir: path("cdi"),
            default_route_netdevs: Some(vec![]),
            health_addr: None,
            pod_resources_socket: None,
            held_recheck: Duration::from_millis(100),
            watch_config: false,
            watch_node: true,
            link_health: true,
            rescan_interval: None,
            node_policy: None,
            vf_counters_interval: sriov_rs::deviceplugin::DEFAULT_VF_COUNTERS_INTERVAL,
            dra: None,
        };
        let daemon = Daemon::start(settings).await.unwrap();
        let (control, commands) = mpsc::channel(4);
        let task = tokio::spawn(daemon.run(commands));
        let setup = Setup {
            node,
            dir,
            kubelet,
            control,
            task,
        };
        for (resource, count) in [(E810, 3), (DPDK, 1), (CX, 2)] {
            setup.wait(resource, |d| d.len() == count).await;
        }
        setup
    }

    async fn wait(&self, resource: &str, ready: impl Fn(&[Device]) -> bool) -> Vec<Device> {
        self.kubelet
            .wait_for_devices(resource, WAIT, ready)
            .await
            .unwrap_or_else(|e| panic!("{resource}: {e}; now {:?}", self.kubelet.plugin(resource)))
    }

    fn pf_dir(&self, pf: &str) -> PathBuf {
        self.node.root.join("bus/pci/devices").join(pf)
    }

    async fn stop(self) {
        self.control.send(Control::Shutdown).await.unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        drop(self.dir);
    }
}

fn health(devices: &[Device]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = devices
        .iter()
        .map(|d| (d.id.clone(), d.health.clone()))
        .collect();
    all.sort();
    all
}

fn all_are(devices: &[Device], state: &str) -> bool {
    !devices.is_empty() && devices.iter().all(|d| d.health == state)
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, format!("{value}\n"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_cable_turns_that_pfs_vfs_unhealthy_within_500_ms_and_back() {
    if !require_root("a_pulled_cable_turns_that_pfs_vfs_unhealthy_within_500_ms_and_back") {
        return;
    }
    let setup = Setup::new().await;
    assert!(all_are(
        &setup.wait(E810, |d| all_are(d, "Healthy")).await,
        "Healthy"
    ));
    let pf_a = format!("{}a", setup.node.tag);
    let pf_b = format!("{}b", setup.node.tag);

    let pulled = Instant::now();
    sim::set_carrier(&setup.node.root, &pf_a, false).unwrap();
    setup.wait(E810, |d| all_are(d, "Unhealthy")).await;
    let took = pulled.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "Unhealthy after {took:?}"
    );
    eprintln!("cable pulled -> Unhealthy on ListAndWatch: {took:?}");
    // the other PF's VFs are untouched
    assert!(all_are(
        &setup.kubelet.plugin(CX).unwrap().devices.unwrap(),
        "Healthy"
    ));

    let plugged = Instant::now();
    sim::set_carrier(&setup.node.root, &pf_a, true).unwrap();
    setup.wait(E810, |d| all_are(d, "Healthy")).await;
    let took = plugged.elapsed();
    assert!(took < Duration::from_millis(500), "Healthy after {took:?}");

    // a pool that opted out stays Healthy without its cable: pull b, then
    // a; once a's VFs are Unhealthy, b's event (earlier, same thread, same
    // loop) has been handled too
    let updates = setup.kubelet.plugin(CX).unwrap().updates;
    sim::set_carrier(&setup.node.root, &pf_b, false).unwrap();
    sim::set_carrier(&setup.node.root, &pf_a, false).unwrap();
    setup.wait(E810, |d| all_are(d, "Unhealthy")).await;
    let cx = setup.kubelet.plugin(CX).unwrap();
    assert!(all_are(&cx.devices.unwrap(), "Healthy"));
    assert_eq!(cx.updates, updates, "no update for an opted-out pool");
    sim::set_carrier(&setup.node.root, &pf_b, true).unwrap();
    sim::set_carrier(&setup.node.root, &pf_a, true).unwrap();
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vfs_made_and_destroyed_through_sriov_numvfs_reach_the_kubelet_within_a_second() {
    if !require_root(
        "vfs_made_and_destroyed_through_sriov_numvfs_reach_the_kubelet_within_a_second",
    ) {
        return;
    }
    let setup = Setup::new().await;
    let numvfs = setup.pf_dir("0000:3b:00.0").join("sriov_numvfs");

    // timed from the write's return: the kernel's events are out by then
    write(&numvfs, "0");
    let start = Instant::now();
    setup.wait(E810, |d| d.is_empty()).await;
    setup.wait(DPDK, |d| d.is_empty()).await;
    let emptied = start.elapsed();

    write(&numvfs, "6");
    let start = Instant::now();
    let devices = setup.wait(E810, |d| d.len() == 6).await;
    let made = start.elapsed();
    eprintln!("sriov_numvfs 4 -> 0: {emptied:?}; 0 -> 6: {made:?}");
    assert!(emptied < Duration::from_secs(1), "{emptied:?}");
    assert!(made < Duration::from_secs(1), "{made:?}");
    let expected: Vec<(String, String)> = (0..6)
        .map(|n| (format!("0000:3b:01.{n}"), "Healthy".to_owned()))
        .collect();
    assert_eq!(health(&devices), expected);
    // the ConnectX pool was never touched
    assert_eq!(setup.kubelet.plugin(CX).unwrap().devices.unwrap().len(), 2);
    setup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vf_rebound_to_vfio_pci_moves_from_the_netdev_pool_to_the_dpdk_pool() {
    if !require_root("a_vf_rebound_to_vfio_pci_moves_from_the_netdev_pool_to_the_dpdk_pool") {
        return;
    }
    let setup = Setup::new().await;
    let vf = "0000:3b:01.1";
    let drivers = setup.node.root.join("bus/pci/drivers");
    write(&setup.pf_dir(vf).join("driver_override"), "vfio-pci");
    write(&drivers.join("iavf/unbind"), vf);
    write(&setup.node.root.join("bus/pci/drivers_probe"), vf);
    let dpdk = setup.wait(DPDK, |d| d.iter().any(|d| d.id == vf)).await;
    assert_eq!(dpdk.len(), 2);
    let e810 = setup.wait(E810, |d| d.len() == 2).await;
    assert!(e810.iter().all(|d| d.id != vf));
    setup.stop().await;
}

/// The daemon binary; killed and reaped when dropped (a failing test must
/// not leave it holding the node's mount), its log in the test's dir.
struct DaemonProcess(std::process::Child);

impl DaemonProcess {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The daemon binary, as a DaemonSet runs it, on the node and dirs.
fn daemon_binary(node: &SimFixture, dir: &Path) -> DaemonProcess {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("daemon.log"))
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_sriov-device-plugin"))
        .arg(format!(
            "--config-file={}",
            dir.join("config.json").display()
        ))
        .arg(format!("--sysfs-root={}", node.root.display()))
        .arg(format!(
            "--device-plugin-path={}",
            dir.join("device-plugins").display()
        ))
        .arg(format!("--devinfo-dir={}", dir.join("devinfo").display()))
        .arg(format!("--cdi-spec-dir={}", dir.join("cdi").display()))
        .arg("--registration-mode=kubelet-socket")
        .arg("--pod-resources-socket=")
        .arg("--no-config-watch")
        .stderr(log)
        .spawn()
        .unwrap();
    DaemonProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_while_pods_hold_vfs_comes_back_with_the_same_devices() {
    if !require_root("a_daemon_killed_while_pods_hold_vfs_comes_back_with_the_same_devices") {
        return;
    }
    let (node, dir) = node_and_dirs();
    let kubelet = KubeletSim::start(&dir.path().join("device-plugins"))
        .await
        .unwrap();
    let mut daemon = daemon_binary(&node, dir.path());
    let before = kubelet
        .wait_for_devices(E810, WAIT, |d| d.len() == 3)
        .await
        .unwrap();

    let _pods = two_vfs_into_pods(&node, "h", 81);
    let vf0_net = node.root.join("bus/pci/devices/0000:3b:01.0/net");
    assert_eq!(std::fs::read_dir(&vf0_net).unwrap().count(), 0);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let _ = daemon.wait();
    daemon = daemon_binary(&node, dir.path());
    let plugins = kubelet
        .wait_until("the restarted daemon registered again", WAIT, |p| {
            p.get(E810).is_some_and(|v| {
                v.registrations >= 2 && v.devices.as_ref().is_some_and(|d| d.len() == 3)
            })
        })
        .await
        .unwrap();
    let window = killed.elapsed();
    eprintln!("daemon SIGKILLed -> full list again: {window:?}");
    let after = plugins[E810].devices.clone().unwrap();
    assert_eq!(health(&after), health(&before), "same IDs, same health");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = daemon.wait();
}

/// Issue 12's soak: 100 kubelet restarts and 20 daemon restarts (SIGTERM and
/// SIGKILL in turn) on the live node with two VFs in pods: every restart ends
/// with every pool registered and the same devices listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_kubelet_and_twenty_daemon_restarts_lose_no_registration() {
    if !require_root("a_hundred_kubelet_and_twenty_daemon_restarts_lose_no_registration") {
        return;
    }
    let (node, dir) = node_and_dirs();
    let sockets = dir.path().join("device-plugins");
    let mut kubelet = KubeletSim::start(&sockets).await.unwrap();
    let mut daemon = daemon_binary(&node, dir.path());
    let lists = |kubelet: &KubeletSim| -> Vec<Vec<(String, String)>> {
        [E810, DPDK, CX]
            .iter()
            .map(|r| {
                health(
                    &kubelet
                        .plugin(r)
                        .and_then(|v| v.devices)
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    let all_listed =
        |p: &std::collections::BTreeMap<String, sriov_rs::devtools::kubelet_sim::PluginView>| {
            [(E810, 3), (DPDK, 1), (CX, 2)].iter().all(|(r, n)| {
                p.get(*r).is_some_and(|v| {
                    v.stream_open && v.devices.as_ref().is_some_and(|d| d.len() == *n)
                })
            })
        };
    kubelet
        .wait_until("all pools listed", WAIT, all_listed)
        .await
        .unwrap();
    let _pods = two_vfs_into_pods(&node, "s", 82);
    let expected = lists(&kubelet);

    let mut slowest_kubelet = Duration::ZERO;
    for restart in 1..=100 {
        kubelet.stop();
        KubeletSim::wipe_sockets(&sockets).unwrap();
        let began = Instant::now();
        kubelet = KubeletSim::start(&sockets).await.unwrap();
        kubelet
            .wait_until(&format!("kubelet restart {restart}"), WAIT, all_listed)
            .await
            .unwrap();
        slowest_kubelet = slowest_kubelet.max(began.elapsed());
        assert_eq!(lists(&kubelet), expected, "kubelet restart {restart}");
    }
    let mut slowest_daemon = Duration::ZERO;
    for restart in 1..=20 {
        let signal = if restart % 2 == 0 {
            nix::sys::signal::Signal::SIGKILL
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        let before = kubelet.plugin(E810).unwrap().registrations;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), signal).unwrap();
        let began = Instant::now();
        let _ = daemon.wait();
        daemon = daemon_binary(&node, dir.path());
        kubelet
            .wait_until(&format!("daemon restart {restart}"), WAIT, |p| {
                all_listed(p) && p.get(E810).is_some_and(|v| v.registrations > before)
            })
            .await
            .unwrap();
        slowest_daemon = slowest_daemon.max(began.elapsed());
        assert_eq!(
            lists(&kubelet),
            expected,
            "daemon restart {restart} ({signal:?})"
        );
    }
    eprintln!("slowest: kubelet restart {slowest_kubelet:?}, daemon restart {slowest_daemon:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = daemon.wait();
}
