//! The device plugin daemon with `--node-policy` on the live simulated node
//! (root), run as the DaemonSet runs it (the binary), with the stand-in
//! kubelet (registration, ListAndWatch, PodResources): PFs at 0 VFs end up
//! serving exactly the declared VFs and drivers without the test touching
//! sysfs; a count change is refused while a pod holds a VF of that PF, said
//! in the log and `/readyz`, the other PF applied, and the change applies
//! once the pod is gone; a bad policy stops the daemon at start and is
//! refused later, the node and the pools kept as they were.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::configmap::ConfigMapDir;
use common::probe::{free_addr, wait_readyz};
use common::tree::{device, driver_of, read};
use common::{require_root, two_e810_layout, SimFixture};
use sriov_rs::devtools::kubelet_sim::KubeletSim;
use sriov_rs::kubelet_api::deviceplugin::v1beta1::Device;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const PF_A: &str = "0000:3b:00.0";
const PF_B: &str = "0000:5e:00.0";
const E810: &str = "intel.com/e810";
const E810_B: &str = "intel.com/e810b";
const DPDK: &str = "intel.com/dpdk";

/// Pools: PF a's kernel-bound VFs, PF b's kernel-bound VFs, every vfio-pci VF.
fn config(tag: &str) -> String {
    format!(
        r#"{{"resourceList": [
  {{"resourceName": "e810", "selectors": {{"pfNames": ["{tag}a"], "drivers": ["iavf"]}}}},
  {{"resourceName": "e810b", "selectors": {{"pfNames": ["{tag}b"], "drivers": ["iavf"]}}}},
  {{"resourceName": "dpdk", "selectors": {{"drivers": ["vfio-pci"]}}}}
]}}"#
    )
}

/// PF a: `count` VFs, 4 and 5 on vfio-pci; PF b: `b` (its VF 1 on
/// vfio-pci when it has one), or left alone when None.
fn policy(tag: &str, count: u32, b: Option<u32>) -> String {
    let mut text = format!(
        r#"policies:
  - name: fast
    nicSelector: {{pfNames: ["{tag}a"], vendor: "8086"}}
    numVfs: {count}
  - name: dpdk
    nicSelector: {{pfNames: ["{tag}a#4-5"]}}
    deviceType: vfio-pci
"#
    );
    if let Some(b) = b {
        text.push_str(&format!(
            r#"  - name: other
    nicSelector: {{pfNames: ["{tag}b"]}}
    numVfs: {b}
"#
        ));
        if b > 1 {
            text.push_str(&format!(
                r#"  - name: other-dpdk
    nicSelector: {{pfNames: ["{tag}b#1"]}}
    deviceType: vfio-pci
"#
            ));
        }
    }
    text
}

/// The daemon binary; killed and reaped when dropped (a failing test must
/// not leave it holding the node's mount).
struct DaemonProcess(std::process::Child);

impl DaemonProcess {
    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.0.wait().unwrap();
        assert!(status.success(), "daemon exit after SIGTERM: {status}");
    }

    /// Its exit status, within `WAIT` (for a daemon that must stop by itself).
    fn exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// A live node with two E810 PFs, the daemon's dirs, the stand-in kubelet
/// serving PodResources, and the node policy in a ConfigMap volume.
struct Setup {
    node: SimFixture,
    dir: tempfile::TempDir,
    kubelet: KubeletSim,
    policy: ConfigMapDir,
    health: SocketAddr,
}

impl Setup {
    async fn new(a: u16, b: u16, policy: impl FnOnce(&str) -> String) -> Setup {
        let node = SimFixture::new(|tag| two_e810_layout(tag, a, b), true);
        let dir = tempfile::tempdir().unwrap();
        for sub in ["device-plugins", "devinfo", "cdi", "pcidp"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("pcidp/config.json"), config(&node.tag)).unwrap();
        let policy = ConfigMapDir::new(
            dir.path().join("node-policy"),
            "node-policy.yaml",
            &policy(&node.tag),
        );
        let mut kubelet = KubeletSim::start(&dir.path().join("device-plugins"))
            .await
            .unwrap();
        kubelet
            .serve_pod_resources(&dir.path().join("pod-resources.sock"))
            .await
            .unwrap();
        Setup {
            node,
            dir,
            kubelet,
            policy,
            health: free_addr(),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon binary as the DaemonSet runs it, plus `extra` flags.
    fn daemon(&self, extra: &[String]) -> DaemonProcess {
        let path = |sub: &str| self.dir.path().join(sub).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sriov-device-plugin"))
            .arg(format!("--config-file={}", path("pcidp/config.json")))
            .arg(format!("--sysfs-root={}", self.node.root.display()))
            .arg(format!("--device-plugin-path={}", path("device-plugins")))
            .arg(format!("--devinfo-dir={}", path("devinfo")))
            .arg(format!("--cdi-spec-dir={}", path("cdi")))
            .arg(format!(
                "--pod-resources-socket={}",
                path("pod-resources.sock")
            ))
            .arg(format!("--health-addr={}", self.health))
            .arg("--registration-mode=kubelet-socket")
            .arg("--vf-timeout=10")
            .args(extra)
            .stderr(log)
            .spawn()
            .unwrap();
        DaemonProcess(child)
    }

    fn with_policy(&self) -> DaemonProcess {
        self.daemon(&[format!("--node-policy={}", self.policy.file().display())])
    }

    async fn ids(&self, resource: &str, want: &[&str]) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        self.kubelet
            .wait_for_devices(resource, WAIT, |d| ids(d) == want)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{resource}: {e}; now {:?}\n{}",
                    self.kubelet.plugin(resource),
                    self.log()
                )
            });
    }

    fn num_vfs(&self, pf: &str) -> String {
        read(&device(&self.node.root, pf).join("sriov_numvfs"))
    }

    fn driver(&self, bdf: &str) -> Option<String> {
        driver_of(&self.node.root, bdf)
    }
}

fn ids(devices: &[Device]) -> Vec<String> {
    let mut ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids
}

fn vfs_of_a(indexes: impl IntoIterator<Item = u32>) -> Vec<String> {
    indexes
        .into_iter()
        .map(|n| format!("0000:3b:01.{n}"))
        .collect()
}

fn strs(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pfs_at_zero_vfs_end_up_serving_exactly_the_declared_vfs_and_drivers() {
    if !require_root("pfs_at_zero_vfs_end_up_serving_exactly_the_declared_vfs_and_drivers") {
        return;
    }
    let setup = Setup::new(0, 0, |tag| policy(tag, 6, None)).await;
    assert_eq!(setup.num_vfs(PF_A), "0");
    let started = Instant::now();
    let daemon = setup.with_policy();
    // the first ready answer comes after the plan was applied and the
    // pools registered (an empty pool list alone would be "ready")
    let (_, body) = wait_readyz(setup.health, WAIT, |status, _| status == 200).await;
    let ready_after = started.elapsed();
    assert_eq!(setup.num_vfs(PF_A), "6", "ready before provisioning");
    assert!(setup
        .kubelet
        .plugin(E810)
        .is_some_and(|p| p.registrations > 0));
    assert_eq!(body, "ready\n", "no step refused or failed");

    setup.ids(E810, &strs(&vfs_of_a(0..4))).await;
    setup.ids(DPDK, &strs(&vfs_of_a(4..6))).await;
    assert_eq!(setup.num_vfs(PF_A), "6");
    for n in 0..6 {
        let want = if n >= 4 { "vfio-pci" } else { "iavf" };
        assert_eq!(
            setup.driver(&format!("0000:3b:01.{n}")).as_deref(),
            Some(want),
            "VF {n}"
        );
    }
    // PF b is in no policy: untouched, and its pool not advertised
    assert_eq!(setup.num_vfs(PF_B), "0");
    assert!(setup.kubelet.plugin(E810_B).is_none());
    let log = setup.log();
    assert!(log.contains("node policy applied"), "{log}");
    daemon.stop();

    // the baseline: the same node, already provisioned, served without a policy
    let started = Instant::now();
    let daemon = setup.daemon(&[]);
    wait_readyz(setup.health, WAIT, |status, _| status == 200).await;
    let baseline = started.elapsed();
    // and with the policy again: nothing to do
    daemon.stop();
    let started = Instant::now();
    let daemon = setup.with_policy();
    wait_readyz(setup.health, WAIT, |status, _| status == 200).await;
    let again = started.elapsed();
    eprintln!(
        "start to ready: provisioning 0 -> 6 VFs {ready_after:?}; provisioned node, no policy \
         {baseline:?}; provisioned node, policy with nothing to do {again:?} ({:.2}x)",
        again.as_secs_f64() / baseline.as_secs_f64()
    );
    assert_eq!(setup.num_vfs(PF_A), "6");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_change_is_refused_while_a_pod_holds_a_vf_the_other_pf_applies_and_it_follows_the_release(
) {
    if !require_root(
        "a_count_change_is_refused_while_a_pod_holds_a_vf_the_other_pf_applies_and_it_follows_the_release",
    ) {
        return;
    }
    let mut setup = Setup::new(0, 0, |tag| policy(tag, 6, None)).await;
    let daemon = setup.with_policy();
    setup.ids(E810, &strs(&vfs_of_a(0..4))).await;
    wait_readyz(setup.health, WAIT, |status, _| status == 200).await;

    // a pod gets VF 1 through the kubelet: PodResources reports it
    let held = "0000:3b:01.1";
    setup
        .kubelet
        .allocate_to_pod("ran", "du-0", "app", E810, &[held.to_owned()])
        .await
        .unwrap();
    let tag = setup.node.tag.clone();
    setup.policy.publish(&policy(&tag, 8, Some(2)));

    // PF b applied: two VFs, VF 1 on vfio-pci, each in its pool
    setup.ids(E810_B, &["0000:5e:01.0"]).await;
    let mut dpdk = vfs_of_a(4..6);
    dpdk.push("0000:5e:01.1".into());
    setup.ids(DPDK, &strs(&dpdk)).await;
    assert_eq!(setup.driver("0000:5e:01.1").as_deref(), Some("vfio-pci"));
    // PF a refused: its six VFs stay, the held one on its driver
    assert_eq!(setup.num_vfs(PF_A), "6");
    assert_eq!(setup.driver(held).as_deref(), Some("iavf"));
    let (status, body) = wait_readyz(setup.health, WAIT, |_, body| body.contains("refused")).await;
    assert_eq!(status, 200, "refused to protect a pod: still ready: {body}");
    for part in [
        &format!("{tag}a ({PF_A})"),
        "numVfs 6 -> 0 -> 8",
        held,
        "ran/du-0",
    ] {
        assert!(body.contains(part), "/readyz names {part}: {body}");
    }
    let log = setup.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("provisioning step refused"))
        .unwrap_or_else(|| panic!("no refusal in the log:\n{log}"));
    for part in [PF_A, "numVfs 6 -> 0 -> 8", held, "ran/du-0"] {
        assert!(refusal.contains(part), "the log names {part}: {refusal}");
    }
    // ... and in /metrics: steps counted per PF and outcome
    let health = setup.health;
    let (_, metrics) =
        tokio::task::spawn_blocking(move || common::probe::http_get(health, "/metrics"))
            .await
            .unwrap();
    let refused =
        format!("sriov_dp_provisioning_results_total{{pf=\"{tag}a\",outcome=\"refused\"}} ");
    let applied_b =
        format!("sriov_dp_provisioning_results_total{{pf=\"{tag}b\",outcome=\"applied\"}} ");
    for series in [&refused, &applied_b] {
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(count >= 1, "{series}{count}");
    }
    // the pod's VF was never taken away from the kubelet's view
    let e810 = setup.kubelet.plugin(E810).unwrap();
    assert_eq!(ids(&e810.devices.unwrap()), vfs_of_a(0..4));

    // the pod goes: the pending change applies without anyone asking
    setup.kubelet.delete_pod("ran", "du-0");
    let released = Instant::now();
    setup.ids(E810, &strs(&vfs_of_a([0, 1, 2, 3, 6, 7]))).await;
    eprintln!(
        "pod deleted -> refused count change applied: {:?}",
        released.elapsed()
    );
    assert_eq!(setup.num_vfs(PF_A), "8");
    let (_, body) = wait_readyz(setup.health, WAIT, |s, b| s == 200 && b == "ready\n").await;
    assert_eq!(body, "ready\n");
    // the new VFs 4-5 are on vfio-pci again
    setup.ids(DPDK, &strs(&dpdk)).await;
    daemon.stop();
    setup.kubelet.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_or_conflicting_or_missing_policy_at_start_stops_the_daemon_naming_it() {
    if !require_root(
        "a_garbage_or_conflicting_or_missing_policy_at_start_stops_the_daemon_naming_it",
    ) {
        return;
    }
    let setup = Setup::new(0, 0, |tag| {
        format!(
            "policies:\n  - name: fast\n    nicSelector: {{pfNames: [\"{tag}a\"]}}\n    numVfs: six\n"
        )
    })
    .await;
    let status = setup.with_policy().exit();
    assert_eq!(status.code(), Some(1));
    let log = setup.log();
    let path = setup.policy.file().display().to_string();
    for part in [path.as_str(), "policy \"fast\"", "numVfs"] {
        assert!(log.contains(part), "the error names {part}:\n{log}");
    }

    // two policies that disagree about PF a: both named
    let tag = setup.node.tag.clone();
    let conflict = format!(
        "policies:\n  - name: four\n    nicSelector: {{pfNames: [\"{tag}a\"]}}\n    numVfs: 4\n  - name: eight\n    nicSelector: {{rootDevices: [\"{PF_A}\"]}}\n    numVfs: 8\n"
    );
    let conflict_file = setup.dir.path().join("conflict.yaml");
    std::fs::write(&conflict_file, conflict).unwrap();
    let status = setup
        .daemon(&[format!("--node-policy={}", conflict_file.display())])
        .exit();
    assert_eq!(status.code(), Some(1));
    let log = setup.log();
    assert!(
        log.contains("policy \"four\" and policy \"eight\" conflict on PF"),
        "{log}"
    );

    // a missing file is an error, unless told that it means "no policy"
    let missing = setup.dir.path().join("absent/node-policy.yaml");
    let status = setup
        .daemon(&[format!("--node-policy={}", missing.display())])
        .exit();
    assert_eq!(status.code(), Some(1));
    assert!(setup.log().contains("No such file"), "{}", setup.log());
    assert_eq!(setup.num_vfs(PF_A), "0", "nothing applied");
    assert!(setup.kubelet.plugins().is_empty(), "nothing served");

    let daemon = setup.daemon(&[
        format!("--node-policy={}", missing.display()),
        "--node-policy-optional".into(),
    ]);
    let (_, body) = wait_readyz(setup.health, WAIT, |status, _| status == 200).await;
    assert_eq!(body, "ready\n");
    assert!(setup
        .log()
        .contains("no node policy file: nothing to provision"));
    assert_eq!(setup.num_vfs(PF_A), "0");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_policy_later_is_refused_and_the_node_and_pools_stay_as_they_were() {
    if !require_root("a_garbage_policy_later_is_refused_and_the_node_and_pools_stay_as_they_were") {
        return;
    }
    let mut setup = Setup::new(0, 0, |tag| policy(tag, 6, None)).await;
    let daemon = setup.with_policy();
    setup.ids(E810, &strs(&vfs_of_a(0..4))).await;
    setup.ids(DPDK, &strs(&vfs_of_a(4..6))).await;
    wait_readyz(setup.health, WAIT, |status, _| status == 200).await;
    let updates = setup.kubelet.plugin(E810).unwrap().updates;

    let tag = setup.node.tag.clone();
    setup
        .policy
        .publish(&policy(&tag, 8, None).replace("numVfs: 8", "numVfz: 8"));
    let (status, body) = wait_readyz(setup.health, WAIT, |status, _| status == 503).await;
    for part in ["node policy refused", "policy \"fast\"", "numVfz"] {
        assert!(body.contains(part), "/readyz names {part}: {body}");
    }
    assert_eq!(status, 503);
    assert!(
        setup.log().contains("node policy refused"),
        "{}",
        setup.log()
    );
    // nothing changed: the node, the pools
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(setup.num_vfs(PF_A), "6");
    assert_eq!(setup.driver("0000:3b:01.4").as_deref(), Some("vfio-pci"));
    let e810 = setup.kubelet.plugin(E810).unwrap();
    assert_eq!(e810.updates, updates, "the refused policy changed nothing");
    assert_eq!(ids(&e810.devices.unwrap()), vfs_of_a(0..4));

    // fixed: applied, ready again
    setup.policy.publish(&policy(&tag, 7, None));
    setup.ids(E810, &strs(&vfs_of_a([0, 1, 2, 3, 6]))).await;
    wait_readyz(setup.health, WAIT, |status, _| status == 200).await;
    assert_eq!(setup.num_vfs(PF_A), "7");
    daemon.stop();
}
