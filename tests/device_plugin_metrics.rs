//! `/metrics` of the device plugin on the live simulated node (root), read
//! with a Prometheus text parser: pool gauges right after an Allocate and a
//! release (the stand-in kubelet's PodResources answers), VF counters that
//! rise with a ping across the simulated wire, pod labels from PodResources,
//! and the daemon's own counters (registrations, health transitions,
//! reloads).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{plug_into_pod, require_root, two_pf_layout, SimFixture, TestNetns};
use prometheus_parse::{Scrape, Value};
use sriov_rs::deviceplugin::{CdiMode, Control, Daemon, RegistrationMode, Settings};
use sriov_rs::devtools::kubelet_sim::KubeletSim;
use sriov_rs::devtools::sim;
use sriov_rs::sysfs::SysfsRoot;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const E810: &str = "intel.com/e810";
const CX: &str = "intel.com/cx";
/// VFs 0 and 1 of PF a.
const VF0: &str = "0000:3b:01.0";
const VF1: &str = "0000:3b:01.1";

/// PF `<tag>a` (NUMA 0): VFs 0-2 on iavf; PF `<tag>b` (NUMA 1): two VFs.
fn config(tag: &str) -> String {
    format!(
        r#"{{"resourceList": [
  {{"resourceName": "e810", "selectors": {{"pfNames": ["{tag}a"], "drivers": ["iavf"]}}}},
  {{"resourceName": "cx", "selectors": {{"pfNames": ["{tag}b"]}}}}
]}}"#
    )
}

/// `GET path` on the daemon's listener, off the runtime: (status, headers, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    })
    .await
    .unwrap()
}

/// One scrape, parsed.
async fn scrape(addr: SocketAddr) -> Metrics {
    let (status, head, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Metrics(Scrape::parse(lines).unwrap())
}

struct Metrics(Scrape);

impl Metrics {
    /// The value of the one sample of `metric` whose labels include `labels`.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{metric}: unexpected {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
        found.first().copied()
    }

    fn pool(&self, figure: &str, pool: &str) -> Option<f64> {
        self.value(&format!("sriov_dp_pool_{figure}"), &[("pool", pool)])
    }

    /// The labels of VF `pci`'s `sriov_vf_rx_bytes` series.
    fn vf_labels(&self, pci: &str) -> std::collections::BTreeMap<String, String> {
        let sample = self
            .0
            .samples
            .iter()
            .find(|s| s.metric == "sriov_vf_rx_bytes" && s.labels.get("pciAddr") == Some(pci))
            .unwrap_or_else(|| panic!("no sriov_vf_rx_bytes for {pci}"));
        [
            "pf",
            "vf",
            "pciAddr",
            "numa_node",
            "pool",
            "namespace",
            "pod",
        ]
        .into_iter()
        .map(|k| {
            let v = sample
                .labels
                .get(k)
                .unwrap_or_else(|| panic!("{pci}: no {k}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
    }

    fn vf(&self, counter: &str, pci: &str) -> f64 {
        self.value(&format!("sriov_vf_{counter}"), &[("pciAddr", pci)])
            .unwrap_or_else(|| panic!("no sriov_vf_{counter} for {pci}"))
    }
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ping(pod: &TestNetns, address: &str) {
    let out = std::process::Command::new("timeout")
        .args([
            "10", "ip", "netns", "exec", &pod.name, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            address,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ping {address}: {out:?}");
}

/// Scrapes until `done` holds (the VF counters are a sample, read every 100 ms here).
async fn scrape_until(addr: SocketAddr, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = scrape(addr).await;
        if done(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_allocations_traffic_pods_and_health() {
    if !require_root("metrics_follow_allocations_traffic_pods_and_health") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let dir = tempfile::tempdir().unwrap();
    let path = |sub: &str| -> PathBuf { dir.path().join(sub) };
    for sub in ["device-plugins", "devinfo", "cdi"] {
        std::fs::create_dir_all(path(sub)).unwrap();
    }
    std::fs::write(path("config.json"), config(&node.tag)).unwrap();
    let mut kubelet = KubeletSim::start(&path("device-plugins")).await.unwrap();
    kubelet
        .serve_pod_resources(&path("pod-resources.sock"))
        .await
        .unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
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
        health_addr: Some(addr),
        pod_resources_socket: Some(path("pod-resources.sock")),
        held_recheck: Duration::from_millis(100),
        watch_config: false,
        watch_node: true,
        link_health: true,
        rescan_interval: None,
        vf_counters_interval: Duration::from_millis(100),
        node_policy: None,
        dra: None,
    };
    let daemon = Daemon::start(settings).await.unwrap();
    let (control, commands) = mpsc::channel(4);
    let task = tokio::spawn(daemon.run(commands));
    for (resource, count) in [(E810, 3), (CX, 2)] {
        kubelet
            .wait_for_devices(resource, WAIT, |d| d.len() == count)
            .await
            .unwrap();
    }

    // pools as served, nobody holding anything; registered once each
    let m = scrape_until(addr, "VF counters sampled", |m| {
        m.value("sriov_vf_rx_bytes", &[("pciAddr", VF0)]).is_some()
    })
    .await;
    for (figure, value) in [
        ("capacity", 3.0),
        ("allocatable", 3.0),
        ("allocated", 0.0),
        ("unhealthy", 0.0),
    ] {
        assert_eq!(m.pool(figure, E810), Some(value), "{figure}");
    }
    assert_eq!(m.pool("capacity", CX), Some(2.0));
    assert_eq!(
        m.value("sriov_dp_registrations_total", &[("pool", E810)]),
        Some(1.0)
    );
    let pf_a = format!("{}a", node.tag);
    let pf_b = format!("{}b", node.tag);
    assert_eq!(
        m.vf_labels(VF0),
        labels(&[
            ("pf", &pf_a),
            ("vf", "0"),
            ("pciAddr", VF0),
            ("numa_node", "0"),
            ("pool", E810),
            ("namespace", ""),
            ("pod", ""),
        ])
    );
    assert_eq!(m.vf_labels("0000:d8:00.2")["numa_node"], "1");
    assert_eq!(m.vf_labels("0000:d8:00.2")["pf"], pf_b);

    // an Allocate to a pod: counted by the very next scrape, with its labels
    kubelet
        .allocate_to_pod("ran", "web-0", "app", E810, &[VF0.to_owned()])
        .await
        .unwrap();
    let m = scrape(addr).await;
    assert_eq!(m.pool("allocated", E810), Some(1.0));
    assert_eq!(
        m.pool("allocatable", E810),
        Some(3.0),
        "held devices stay allocatable"
    );
    assert_eq!(m.pool("allocated", CX), Some(0.0));
    let vf0 = m.vf_labels(VF0);
    assert_eq!(
        (vf0["namespace"].as_str(), vf0["pod"].as_str()),
        ("ran", "web-0")
    );
    assert_eq!(m.vf_labels(VF1)["pod"], "");

    // traffic across the simulated wire: VF 0 in one pod pings VF 1 in another
    let pods = [1, 2].map(|n| TestNetns::new(&format!("{}-m{n}", node.tag)));
    plug_into_pod(&format!("{pf_a}v0"), &pods[0], Ipv4Addr::new(10, 93, 0, 1));
    plug_into_pod(&format!("{pf_a}v1"), &pods[1], Ipv4Addr::new(10, 93, 0, 2));
    let before = scrape(addr).await;
    ping(&pods[0], "10.93.0.2");
    let after = scrape_until(addr, "VF counters rising after the ping", |m| {
        m.vf("tx_packets", VF0) >= before.vf("tx_packets", VF0) + 3.0
            && m.vf("rx_packets", VF1) >= before.vf("rx_packets", VF1) + 3.0
    })
    .await;
    // 3 echo requests out of VF 0 and 3 replies back, 84 bytes each at least
    for (counter, pci) in [
        ("tx_bytes", VF0),
        ("rx_bytes", VF0),
        ("tx_bytes", VF1),
        ("rx_bytes", VF1),
    ] {
        assert!(
            after.vf(counter, pci) >= before.vf(counter, pci) + 3.0 * 84.0,
            "{counter} of {pci}: {} -> {}",
            before.vf(counter, pci),
            after.vf(counter, pci)
        );
    }
    assert!(after.vf("rx_packets", VF0) >= before.vf("rx_packets", VF0) + 3.0);
    // VF 2 carried none of it
    assert_eq!(
        after.vf("tx_packets", "0000:3b:01.2"),
        before.vf("tx_packets", "0000:3b:01.2")
    );

    // the pod is deleted: released at once
    kubelet.delete_pod("ran", "web-0");
    let m = scrape(addr).await;
    assert_eq!(m.pool("allocated", E810), Some(0.0));
    assert_eq!(m.vf_labels(VF0)["pod"], "");

    // a pulled cable: three health transitions, the pool's figures follow
    sim::set_carrier(&node.root, &pf_a, false).unwrap();
    kubelet
        .wait_for_devices(E810, WAIT, |d| d.iter().all(|d| d.health == "Unhealthy"))
        .await
        .unwrap();
    let m = scrape(addr).await;
    assert_eq!(m.pool("unhealthy", E810), Some(3.0));
    assert_eq!(m.pool("allocatable", E810), Some(0.0));
    assert_eq!(
        m.value(
            "sriov_dp_device_health_transitions_total",
            &[("pool", E810), ("health", "unhealthy")]
        ),
        Some(3.0)
    );
    sim::set_carrier(&node.root, &pf_a, true).unwrap();

    // a reload is counted as accepted
    control.send(Control::Reload).await.unwrap();
    scrape_until(addr, "the reload counted", |m| {
        m.value("sriov_dp_reloads_total", &[("outcome", "accepted")]) == Some(1.0)
    })
    .await;

    control.send(Control::Shutdown).await.unwrap();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    drop(pods);
}
