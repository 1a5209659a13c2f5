//! The `sriov` CNI binary on the simulated node, in real network namespaces,
//! with Debian's real IPAM plugins. Each test has its own node, pods, state
//! and IPAM directories.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{require_root, TestNetns};
use serde_json::{json, Value};
use sriov_rs::netlink::{format_mac, AddressOps, Link, LinkOps, Netlink};
use sriov_rs::netns;
use std::path::Path;

/// The VF addresses of `two_pf_layout`: E810 PF `<tag>a` VFs 0-2 have
/// netdevs `<tag>av0..2`, VF 3 is on vfio-pci.
const VF0: &str = "0000:3b:01.0";
const VF1: &str = "0000:3b:01.1";
const VF_VFIO: &str = "0000:3b:01.3";

fn link_in(netns_path: &Path, name: &str) -> Option<Link> {
    netns::run_in(netns_path, || {
        Netlink::open().unwrap().link_by_name(name).unwrap()
    })
    .unwrap()
}

fn host_link(name: &str) -> Option<Link> {
    Netlink::open().unwrap().link_by_name(name).unwrap()
}

fn addresses_in(netns_path: &Path, name: &str) -> Vec<String> {
    netns::run_in(netns_path, || {
        let mut netlink = Netlink::open().unwrap();
        let link = netlink.link_by_name(name).unwrap().expect("link exists");
        netlink
            .addresses(link.index)
            .unwrap()
            .into_iter()
            .filter(|a| a.address.is_ipv4())
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect()
    })
    .unwrap()
}

use common::cni::CniNode as Setup;

fn setup() -> Setup {
    Setup::new()
}

impl Setup {}

#[test]
fn add_moves_the_vf_into_the_pod_with_an_address_and_del_restores_it() {
    if !require_root("add_moves_the_vf_into_the_pod_with_an_address_and_del_restores_it") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let before = host_link(&s.vf_name(0)).expect("VF on the host");
    let conf = s.cni.host_local_conf("1.1.0", VF0, "10.56.217.0/24");

    let add = s.cni.run("ADD", "cid1", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    let r = &add.json;
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(r["interfaces"][0]["name"], "net1");
    assert_eq!(r["interfaces"][0]["pciID"], VF0);
    assert_eq!(
        r["interfaces"][0]["sandbox"],
        pod.path().display().to_string()
    );
    assert_eq!(r["interfaces"][0]["mac"], format_mac(&before.mac.unwrap()));
    assert_eq!(r["interfaces"][0]["mtu"], 1500);
    assert_eq!(r["ips"][0]["interface"], 0);
    let address = r["ips"][0]["address"].as_str().unwrap().to_owned();
    assert!(address.starts_with("10.56.217."), "{address}");

    // seen from inside the pod: named net1, up, with the address
    let inside = link_in(pod.path(), "net1").expect("net1 in the pod");
    assert!(inside.up);
    assert_eq!(inside.mac, before.mac);
    assert_eq!(addresses_in(pod.path(), "net1"), vec![address.clone()]);
    assert!(host_link(&s.vf_name(0)).is_none(), "VF left the host netns");
    assert_eq!(
        s.cni.allocated_ips(),
        vec![address.split('/').next().unwrap().to_owned()]
    );

    let del = s.cni.run("DEL", "cid1", Some(pod.path()), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(del.stdout.trim(), "", "DEL prints nothing on success");
    let after = host_link(&s.vf_name(0)).expect("VF back on the host under its name");
    assert_eq!(
        (after.mac, after.mtu, after.up),
        (before.mac, before.mtu, false)
    );
    assert!(link_in(pod.path(), "net1").is_none());
    assert!(s.cni.allocated_ips().is_empty(), "IP released");
    assert!(
        s.cni.state_files().is_empty(),
        "no state left: {:?}",
        s.cni.state_files()
    );

    // DEL again: idempotent
    assert!(s
        .cni
        .run("DEL", "cid1", Some(pod.path()), "net1", &conf)
        .ok());
}

#[test]
fn two_pods_on_one_pf_reach_each_other() {
    if !require_root("two_pods_on_one_pf_reach_each_other") {
        return;
    }
    let s = setup();
    let (pod_a, pod_b) = (s.pod("a"), s.pod("b"));
    let conf_a = s.cni.host_local_conf("0.3.1", VF0, "10.56.217.0/24");
    let conf_b = s.cni.host_local_conf("0.3.1", VF1, "10.56.217.0/24");
    let a = s.cni.run("ADD", "ca", Some(pod_a.path()), "net1", &conf_a);
    let b = s.cni.run("ADD", "cb", Some(pod_b.path()), "net1", &conf_b);
    assert!(a.ok() && b.ok());
    let ip = |o: &common::cni::Outcome| {
        o.json["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let (ip_a, ip_b) = (ip(&a), ip(&b));
    assert_ne!(ip_a, ip_b);
    let ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod_a.name,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            &ip_b,
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "ping {ip_a} -> {ip_b}: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert!(s
        .cni
        .run("DEL", "ca", Some(pod_a.path()), "net1", &conf_a)
        .ok());
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    assert!(host_link(&s.vf_name(0)).is_some() && host_link(&s.vf_name(1)).is_some());
}

#[test]
fn results_follow_every_cni_version() {
    if !require_root("results_follow_every_cni_version") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let conf = s.cni.host_local_conf(version, VF0, "10.56.218.0/24");
        let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
        assert!(add.ok(), "{version}: {}", add.stdout);
        assert_eq!(add.json["cniVersion"], version);
        let old = version.starts_with("0.");
        assert_eq!(
            add.json["ips"][0].get("version").is_some(),
            old,
            "{version}: ips[].version"
        );
        assert_eq!(
            add.json["interfaces"][0].get("pciID").is_some(),
            !old,
            "{version}: pciID"
        );
        if version != "0.3.0" && version != "0.3.1" {
            let check = s.cni.run(
                "CHECK",
                "cid",
                Some(pod.path()),
                "net1",
                &with_prev_result(&conf, &add.json),
            );
            assert!(check.ok(), "{version} CHECK: {}", check.stdout);
        }
        assert!(
            s.cni
                .run("DEL", "cid", Some(pod.path()), "net1", &conf)
                .ok(),
            "{version} DEL"
        );
        assert!(
            s.cni.allocated_ips().is_empty() && s.cni.state_files().is_empty(),
            "{version}: clean after DEL"
        );
    }
}

fn with_prev_result(conf: &Value, result: &Value) -> Value {
    let mut conf = conf.clone();
    conf["prevResult"] = result.clone();
    conf
}

#[test]
fn del_after_the_netns_is_gone_releases_everything() {
    if !require_root("del_after_the_netns_is_gone_releases_everything") {
        return;
    }
    let s = setup();
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.56.219.0/24");

    // A veth stand-in dies with its netns: DEL still releases IP and state.
    let pod = s.pod("gone");
    assert!(s
        .cni
        .run("ADD", "cid1", Some(pod.path()), "net1", &conf)
        .ok());
    let pod_path = pod.path().to_owned();
    drop(pod);
    let del = s.cni.run("DEL", "cid1", Some(&pod_path), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert!(s.cni.allocated_ips().is_empty() && s.cni.state_files().is_empty());

    // A real VF comes back to the host under another name when its netns
    // dies (sriov-cni #126): emulate that and check DEL finds and restores it.
    let vf1 = s.vf_name(1);
    let before = host_link(&vf1).unwrap();
    let pod = s.pod("returns");
    let conf1 = s.cni.host_local_conf("1.0.0", VF1, "10.56.219.0/24");
    let mut conf1_mac = conf1.clone();
    conf1_mac["mac"] = json!("02:aa:bb:cc:dd:01");
    assert!(s
        .cni
        .run("ADD", "cid2", Some(pod.path()), "net1", &conf1_mac)
        .ok());
    let host = sriov_rs::vf::host_netns().unwrap();
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let link = inside.link_by_name("net1").unwrap().unwrap();
        use std::os::fd::AsFd;
        inside
            .set_netns_and_name(link.index, host.as_fd(), "dev7")
            .unwrap();
    })
    .unwrap();
    let pod_path = pod.path().to_owned();
    drop(pod);
    let _cleanup = common::LinkOnDrop("dev7".into());
    let del = s
        .cni
        .run("DEL", "cid2", Some(&pod_path), "net1", &conf1_mac);
    assert!(del.ok(), "{}", del.stdout);
    let after = host_link(&vf1).expect("the VF has its host name again");
    assert_eq!(
        (after.index, after.mac),
        (before.index, before.mac),
        "same VF, original MAC"
    );
    assert!(host_link("dev7").is_none());
    assert!(s.cni.allocated_ips().is_empty() && s.cni.state_files().is_empty());
}

#[test]
fn del_without_a_cache_still_releases_the_ip() {
    if !require_root("del_without_a_cache_still_releases_the_ip") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.56.220.0/24");
    assert!(s
        .cni
        .run("ADD", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    std::fs::remove_file(s.cni.state_dir().join("cid-net1")).unwrap();
    assert_eq!(s.cni.allocated_ips().len(), 1);
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(
        s.cni.allocated_ips().is_empty(),
        "sriov-cni would leak this IP"
    );
}

/// After a failed ADD: VF on the host as before, no IP, no state.
fn assert_untouched(s: &Setup, vf_name: &str, before: &Link) {
    let now = host_link(vf_name).unwrap_or_else(|| panic!("{vf_name} must still be on the host"));
    assert_eq!(
        (now.index, now.mac, now.mtu, now.up),
        (before.index, before.mac, before.mtu, before.up)
    );
    assert!(
        s.cni.allocated_ips().is_empty(),
        "IP leaked: {:?}",
        s.cni.allocated_ips()
    );
    assert!(
        s.cni.state_files().is_empty(),
        "state leaked: {:?}",
        s.cni.state_files()
    );
}

#[test]
fn failed_adds_leave_the_vf_untouched_and_nothing_allocated() {
    if !require_root("failed_adds_leave_the_vf_untouched_and_nothing_allocated") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let base = s.cni.host_local_conf("1.0.0", VF0, "10.56.221.0/24");

    // bad IPAM config: host-local rejects it after the VF moved
    let mut bad_ipam = base.clone();
    bad_ipam["ipam"]["subnet"] = json!("not-a-subnet");
    let out = s.cni.run("ADD", "c", Some(pod.path()), "net1", &bad_ipam);
    assert!(!out.ok() && out.error_code() != 0);
    assert_untouched(&s, &vf0, &before);
    assert!(link_in(pod.path(), "net1").is_none());

    // IPAM binary missing
    let mut missing = base.clone();
    missing["ipam"]["type"] = json!("no-such-ipam");
    let out = s.cni.run("ADD", "c", Some(pod.path()), "net1", &missing);
    assert!(
        out.json["msg"].as_str().unwrap().contains("no-such-ipam"),
        "{}",
        out.stdout
    );
    assert_untouched(&s, &vf0, &before);

    // unknown deviceID
    let out = s.cni.run(
        "ADD",
        "c",
        Some(pod.path()),
        "net1",
        &s.cni
            .host_local_conf("1.0.0", "0000:3b:09.7", "10.56.221.0/24"),
    );
    assert_eq!(out.error_code(), 105, "{}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("0000:3b:09.7"));

    // netns path missing
    let out = s.cni.run(
        "ADD",
        "c",
        Some(Path::new("/run/netns/does-not-exist-sriov")),
        "net1",
        &base,
    );
    assert_eq!(out.error_code(), 4, "{}", out.stdout);
    assert_untouched(&s, &vf0, &before);

    // ifname already taken in the pod: a veth named net1 lives there
    netns::run_in(pod.path(), || {
        Netlink::open()
            .unwrap()
            .add_veth("net1", None, "net1peer", None, None)
            .unwrap()
    })
    .unwrap();
    let out = s.cni.run("ADD", "c", Some(pod.path()), "net1", &base);
    assert_eq!(out.error_code(), 104, "{}", out.stdout);
    assert_untouched(&s, &vf0, &before);

    // PF-side attributes on a PF that reports no VF settings (a veth) are
    // refused before anything changes
    let mut vlan = base.clone();
    vlan["vlan"] = json!(100);
    let out = s.cni.run("ADD", "c", Some(pod.path()), "net2", &vlan);
    assert_eq!(out.error_code(), 2, "{}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("vlan"));
    assert_untouched(&s, &vf0, &before);
}

#[test]
fn a_vf_in_use_by_a_live_pod_cannot_be_taken() {
    if !require_root("a_vf_in_use_by_a_live_pod_cannot_be_taken") {
        return;
    }
    let s = setup();
    let (pod_a, pod_b) = (s.pod("a"), s.pod("b"));
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.56.222.0/24");
    assert!(s
        .cni
        .run("ADD", "ca", Some(pod_a.path()), "net1", &conf)
        .ok());
    let out = s.cni.run("ADD", "cb", Some(pod_b.path()), "net1", &conf);
    assert_eq!(out.error_code(), 102, "{}", out.stdout);
    // pod A keeps its VF and its single address
    assert!(link_in(pod_a.path(), "net1").is_some());
    assert_eq!(s.cni.allocated_ips().len(), 1);
    // a late DEL of pod B (never attached) must not touch pod A's VF
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf)
        .ok());
    assert!(link_in(pod_a.path(), "net1").is_some());
    assert!(s
        .cni
        .run("DEL", "ca", Some(pod_a.path()), "net1", &conf)
        .ok());
    assert!(s.cni.allocated_ips().is_empty());
}

#[test]
fn mtu_and_mac_are_applied_in_the_pod_and_restored() {
    if !require_root("mtu_and_mac_are_applied_in_the_pod_and_restored") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let before = host_link(&s.vf_name(0)).unwrap();
    let mut conf = s.cni.host_local_conf("1.1.0", VF0, "10.56.223.0/24");
    conf["mtu"] = json!(1400);
    conf["mac"] = json!("02:00:00:00:00:01");
    conf["capabilities"] = json!({"mac": true});
    conf["runtimeConfig"] = json!({"mac": "02:00:00:00:00:02"});
    let out = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(
        out.json["interfaces"][0]["mac"], "02:00:00:00:00:02",
        "runtimeConfig.mac wins"
    );
    assert_eq!(out.json["interfaces"][0]["mtu"], 1400);
    let inside = link_in(pod.path(), "net1").unwrap();
    assert_eq!(
        (inside.mac, inside.mtu),
        (Some([2, 0, 0, 0, 0, 2]), Some(1400))
    );
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    let after = host_link(&s.vf_name(0)).unwrap();
    assert_eq!((after.mac, after.mtu), (before.mac, before.mtu));
}

#[test]
fn check_detects_drift() {
    if !require_root("check_detects_drift") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.56.224.0/24");
    let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    let checked = with_prev_result(&conf, &add.json);
    assert!(s
        .cni
        .run("CHECK", "cid", Some(pod.path()), "net1", &checked)
        .ok());
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let link = inside.link_by_name("net1").unwrap().unwrap();
        inside.set_mac(link.index, [2, 9, 9, 9, 9, 9]).unwrap();
    })
    .unwrap();
    let out = s
        .cni
        .run("CHECK", "cid", Some(pod.path()), "net1", &checked);
    assert!(!out.ok());
    assert!(
        out.json["msg"].as_str().unwrap().contains("MAC"),
        "{}",
        out.stdout
    );
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
}

#[test]
fn dpdk_vfs_get_addresses_reported_and_del_works() {
    if !require_root("dpdk_vfs_get_addresses_reported_and_del_works") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.1.0", VF_VFIO, "10.56.225.0/24");
    let out = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(out.json["interfaces"][0]["pciID"], VF_VFIO);
    assert!(out.json["ips"][0]["address"]
        .as_str()
        .unwrap()
        .starts_with("10.56.225."));
    assert!(
        link_in(pod.path(), "net1").is_none(),
        "nothing moved for a vfio-pci VF"
    );
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(s.cni.allocated_ips().is_empty() && s.cni.state_files().is_empty());
}

#[test]
fn bad_input_gets_the_right_error_codes() {
    if !require_root("bad_input_gets_the_right_error_codes") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let out = s.cni.run_raw(
        "ADD",
        "cid",
        Some(pod.path()),
        "net1",
        b"{\"cniVersion\": ",
        &[],
    );
    assert_eq!(out.error_code(), 6, "{}", out.stdout);
    let out = s.cni.run_raw(
        "ADD",
        "cid",
        Some(pod.path()),
        "net1",
        br#"{"cniVersion":"1.0.0","type":"sriov","vlan":"ten"}"#,
        &[],
    );
    assert_eq!(out.error_code(), 7, "{}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("vlan"));
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.56.226.0/24");
    for (cid, ifname) in [("../../etc", "net1"), ("cid", "../x"), ("cid", "a/b")] {
        let out = s.cni.run("ADD", cid, Some(pod.path()), ifname, &conf);
        assert_eq!(out.error_code(), 4, "{cid}/{ifname}: {}", out.stdout);
    }
    let out = s.cni.run(
        "ADD",
        "cid",
        Some(pod.path()),
        "net1",
        &s.cni.host_local_conf("9.9.9", VF0, "10.56.226.0/24"),
    );
    assert_eq!(out.error_code(), 1, "{}", out.stdout);
    assert!(s.cni.state_files().is_empty());
    assert!(!s.cni.state_dir().parent().unwrap().join("etc").exists());
}

#[test]
fn concurrent_adds_on_one_pf_and_add_del_races_on_one_vf() {
    if !require_root("concurrent_adds_on_one_pf_and_add_del_races_on_one_vf") {
        return;
    }
    let s = setup();
    let pods: Vec<TestNetns> = (0..3).map(|i| s.pod(&format!("p{i}"))).collect();
    let devices = [VF0, VF1, "0000:3b:01.2"];
    let confs: Vec<Value> = devices
        .iter()
        .map(|d| s.cni.host_local_conf("1.0.0", d, "10.56.227.0/24"))
        .collect();
    std::thread::scope(|scope| {
        for (i, pod) in pods.iter().enumerate() {
            let (cni, conf) = (&s.cni, &confs[i]);
            scope.spawn(move || {
                assert!(cni
                    .run("ADD", &format!("c{i}"), Some(pod.path()), "net1", conf)
                    .ok())
            });
        }
    });
    let mut ips = s.cni.allocated_ips();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "three distinct addresses");
    for pod in &pods {
        assert!(link_in(pod.path(), "net1").is_some());
    }
    // ADD for pod 3 and DEL for pod 0 race on VF0: whatever the order, the
    // VF ends up either with pod 3 or on the host, never half-way
    let extra = s.pod("p3");
    std::thread::scope(|scope| {
        let (cni, conf) = (&s.cni, &confs[0]);
        let extra_path = extra.path();
        let pod0 = pods[0].path();
        scope.spawn(move || cni.run("ADD", "c3", Some(extra_path), "net1", conf));
        scope.spawn(move || assert!(cni.run("DEL", "c0", Some(pod0), "net1", conf).ok()));
    });
    let in_extra = link_in(extra.path(), "net1").is_some();
    let on_host = host_link(&s.vf_name(0)).is_some();
    assert!(
        in_extra ^ on_host,
        "VF0 in exactly one place (extra pod: {in_extra}, host: {on_host})"
    );
    for (i, pod) in pods.iter().enumerate().skip(1) {
        assert!(s
            .cni
            .run("DEL", &format!("c{i}"), Some(pod.path()), "net1", &confs[i])
            .ok());
    }
    assert!(s
        .cni
        .run("DEL", "c3", Some(extra.path()), "net1", &confs[0])
        .ok());
    assert!(s.cni.allocated_ips().is_empty() && s.cni.state_files().is_empty());
    for i in 0..3 {
        assert!(
            host_link(&s.vf_name(i)).is_some(),
            "VF {i} back on the host"
        );
    }
}

#[test]
fn gc_releases_attachments_that_are_no_longer_valid() {
    if !require_root("gc_releases_attachments_that_are_no_longer_valid") {
        return;
    }
    let s = setup();
    let (pod_a, pod_b) = (s.pod("a"), s.pod("b"));
    let conf_a = s.cni.host_local_conf("1.1.0", VF0, "10.56.228.0/24");
    let conf_b = s.cni.host_local_conf("1.1.0", VF1, "10.56.228.0/24");
    assert!(s
        .cni
        .run("ADD", "keep", Some(pod_a.path()), "net1", &conf_a)
        .ok());
    assert!(s
        .cni
        .run("ADD", "stale", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    let mut gc = conf_a.clone();
    gc.as_object_mut().unwrap().remove("deviceID");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "net1"}]);
    let out = s.cni.run("GC", "", None, "", &gc);
    assert!(out.ok(), "{}", out.stdout);
    assert!(
        link_in(pod_a.path(), "net1").is_some(),
        "the valid attachment stays"
    );
    assert!(
        host_link(&s.vf_name(1)).is_some(),
        "the stale VF is back on the host"
    );
    assert_eq!(s.cni.allocated_ips().len(), 1, "the stale IP is released");
    assert!(s
        .cni
        .run("DEL", "keep", Some(pod_a.path()), "net1", &conf_a)
        .ok());
    assert!(s.cni.state_files().is_empty());
}
