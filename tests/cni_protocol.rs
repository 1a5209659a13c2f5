//! The `sriov` binary's contract with the runtime, beyond ADD/DEL of one
//! VF: STATUS, the device-info file Multus asks for, error codes and exit
//! status, state paths that cannot escape, logs that never touch stdout,
//! GC's attachment lists. Tests that only read the simulated sysfs tree
//! run anywhere; those that move VFs need root (and run under CI=true).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::cni::{CniHarness, Outcome};
use common::{require_root, two_pf_layout, SimFixture, TestNetns};
use serde_json::{json, Value};
use sriov_rs::netlink::{Link, LinkOps, Netlink};
use sriov_rs::netns;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `two_pf_layout`: PF `<tag>a` is 0000:3b:00.0, VFs 0000:3b:01.0-2 have
/// netdevs `<tag>av0..2`, VF 0000:3b:01.3 is on vfio-pci.
const PF: &str = "0000:3b:00.0";
const VF0: &str = "0000:3b:01.0";
const VF1: &str = "0000:3b:01.1";
const VF_VFIO: &str = "0000:3b:01.3";

fn host_link(name: &str) -> Option<Link> {
    Netlink::open().unwrap().link_by_name(name).unwrap()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A failed invocation as the spec wants it: non-zero exit, exactly one
/// JSON error object on stdout with `code` and a message.
fn assert_cni_error(out: &Outcome, code: u64, case: &str) {
    assert_ne!(out.code, 0, "{case}: exit status");
    assert_eq!(out.error_code(), code, "{case}: {}", out.stdout);
    assert!(
        out.json["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: msg"
    );
    assert_eq!(out.stdout.trim().lines().count(), 1, "{case}: one line");
}

/// A tree-only node: STATUS, VERSION and every check that comes before a
/// VF is touched need no links, so no root either.
fn tree_only() -> (SimFixture, CniHarness) {
    let fixture = SimFixture::new(two_pf_layout, false);
    let cni = CniHarness::new(&fixture.root);
    (fixture, cni)
}

/// STATUS carries no attachment: no container ID, ifname or netns.
const NO_ATTACHMENT: [(&str, &str); 2] = [("CNI_CONTAINERID", ""), ("CNI_IFNAME", "")];

fn status(cni: &CniHarness, conf: &Value, extra: &[(&str, &str)]) -> Outcome {
    let env: Vec<(&str, &str)> = NO_ATTACHMENT.iter().chain(extra).copied().collect();
    cni.run_raw("STATUS", "", None, "", conf.to_string().as_bytes(), &env)
}

#[test]
fn status_is_ready_with_debian_ipam_and_50_when_anything_is_missing() {
    let (_fixture, cni) = tree_only();
    let host_local = cni.host_local_conf("1.1.0", VF0, "10.60.0.0/24");

    // Debian's plugins (CNI <= 1.0.0) predate STATUS: not asked, ready
    for ipam in [
        json!({"type": "host-local", "subnet": "10.60.0.0/24"}),
        json!({"type": "static", "addresses": [{"address": "10.60.0.2/24"}]}),
        json!({"type": "dhcp"}),
    ] {
        let mut conf = host_local.clone();
        conf["ipam"] = ipam.clone();
        let out = status(&cni, &conf, &[]);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{ipam}");
    }
    let mut no_ipam = host_local.clone();
    no_ipam.as_object_mut().unwrap().remove("ipam");
    assert!(status(&cni, &no_ipam, &[]).ok());
    // CNI_PATH is optional for STATUS: fine without IPAM...
    assert!(status(&cni, &no_ipam, &[("CNI_PATH", "")]).ok());
    // ...but an IPAM plugin that cannot be found means ADD would fail
    let out = status(&cni, &host_local, &[("CNI_PATH", "")]);
    assert_cni_error(&out, 50, "no CNI_PATH");
    assert!(out.json["msg"]
        .as_str()
        .unwrap()
        .contains("CNI_PATH is not set"));
    let mut missing = host_local.clone();
    missing["ipam"]["type"] = json!("no-such-ipam");
    let out = status(&cni, &missing, &[]);
    assert_cni_error(&out, 50, "IPAM binary missing");
    assert!(out.json["msg"].as_str().unwrap().contains("no-such-ipam"));

    // no sysfs to find VFs in
    let out = status(
        &cni,
        &host_local,
        &[("SRIOV_SYSFS_ROOT", "/nonexistent/sriov-sys")],
    );
    assert_cni_error(&out, 50, "sysfs missing");
    // a state directory that cannot be made
    let file = cni.dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let state = file.join("state").display().to_string();
    let out = status(&cni, &host_local, &[("SRIOV_CNI_STATE_DIR", &state)]);
    assert_cni_error(&out, 50, "state dir unusable");
    assert!(out.json["msg"]
        .as_str()
        .unwrap()
        .contains("state directory"));

    // STATUS exists from 1.1.0 on
    let out = status(
        &cni,
        &cni.host_local_conf("1.0.0", VF0, "10.60.0.0/24"),
        &[],
    );
    assert_cni_error(&out, 1, "STATUS with 1.0.0");
}

#[test]
fn error_codes_and_exit_status_follow_the_spec() {
    let (_fixture, cni) = tree_only();
    let netns = Path::new("/run/netns/does-not-matter");
    let conf = |patch: Value| {
        let mut conf = cni.host_local_conf("1.0.0", VF0, "10.61.0.0/24");
        for (key, value) in patch.as_object().unwrap() {
            if value.is_null() {
                conf.as_object_mut().unwrap().remove(key);
            } else {
                conf[key] = value.clone();
            }
        }
        conf.to_string()
    };
    // (case, CNI_COMMAND, stdin, env overrides, expected code)
    type Case<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>, u64);
    let cases: Vec<Case> = vec![
        ("no command", "", conf(json!({})), vec![], 4),
        ("unknown command", "BOGUS", conf(json!({})), vec![], 4),
        (
            "no container ID",
            "ADD",
            conf(json!({})),
            vec![("CNI_CONTAINERID", "")],
            4,
        ),
        (
            "no ifname",
            "ADD",
            conf(json!({})),
            vec![("CNI_IFNAME", "")],
            4,
        ),
        (
            "no CNI_PATH",
            "ADD",
            conf(json!({})),
            vec![("CNI_PATH", "")],
            4,
        ),
        (
            "no netns",
            "ADD",
            conf(json!({})),
            vec![("CNI_NETNS", "")],
            4,
        ),
        ("netns missing", "ADD", conf(json!({})), vec![], 4),
        (
            "malformed JSON",
            "ADD",
            "{\"cniVersion\":".into(),
            vec![],
            6,
        ),
        ("not an object", "ADD", "[1]".into(), vec![], 6),
        ("wrong type", "ADD", conf(json!({"mtu": "big"})), vec![], 7),
        (
            "unknown version",
            "ADD",
            conf(json!({"cniVersion": "0.2.0"})),
            vec![],
            1,
        ),
        (
            "CHECK before 0.4.0",
            "CHECK",
            conf(json!({"cniVersion": "0.3.1"})),
            vec![],
            1,
        ),
        (
            "GC before 1.1.0",
            "GC",
            conf(json!({"cniVersion": "1.0.0"})),
            vec![],
            1,
        ),
        (
            "no deviceID",
            "ADD",
            conf(json!({"deviceID": null})),
            vec![],
            7,
        ),
        (
            "deviceID not PCI",
            "ADD",
            conf(json!({"deviceID": "3b:01.0x"})),
            vec![],
            7,
        ),
        (
            "deviceID is the PF",
            "ADD",
            conf(json!({"deviceID": PF})),
            vec![],
            105,
        ),
        (
            "deviceID unknown",
            "ADD",
            conf(json!({"deviceID": "0000:3b:09.7"})),
            vec![],
            105,
        ),
        (
            "ipam without type",
            "ADD",
            conf(json!({"ipam": {"subnet": "10.61.0.0/24"}})),
            vec![],
            7,
        ),
        (
            "mtu out of range",
            "ADD",
            conf(json!({"mtu": 20})),
            vec![],
            7,
        ),
        (
            "multicast mac",
            "ADD",
            conf(json!({"mac": "01:00:5e:00:00:01"})),
            vec![],
            7,
        ),
        // the plugin's own network namespace, which the runtime never means
        (
            "own netns",
            "ADD",
            conf(json!({})),
            vec![("CNI_NETNS", "/proc/self/ns/net")],
            8,
        ),
    ];
    for (case, command, stdin, env, code) in cases {
        let out = cni.run_raw(command, "cid", Some(netns), "net1", stdin.as_bytes(), &env);
        assert_cni_error(&out, code, case);
        if code == 7 || code == 105 {
            // the config's version is known by then: errors carry it
            assert_eq!(out.json["cniVersion"], "1.0.0", "{case}");
        }
    }
    // messages name what is wrong
    let out = cni.run_raw(
        "ADD",
        "cid",
        Some(netns),
        "net1",
        conf(json!({"mtu": "big"})).as_bytes(),
        &[],
    );
    assert!(
        out.json["msg"].as_str().unwrap().contains("mtu"),
        "{}",
        out.stdout
    );
    let out = cni.run_raw(
        "ADD",
        "cid",
        Some(netns),
        "net1",
        conf(json!({"deviceID": null})).as_bytes(),
        &[],
    );
    assert!(out.json["msg"]
        .as_str()
        .unwrap()
        .contains("VF pci addr is required"));
    let out = cni.run_raw(
        "ADD",
        "",
        Some(netns),
        "net1",
        conf(json!({})).as_bytes(),
        &[],
    );
    assert!(out.json["msg"]
        .as_str()
        .unwrap()
        .contains("CNI_CONTAINERID"));

    // VERSION: echoes a version we speak and lists all of them
    let out = cni.run_raw("VERSION", "", None, "", br#"{"cniVersion":"0.4.0"}"#, &[]);
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(
        out.json,
        json!({"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    let out = cni.run_raw("VERSION", "", None, "", br#"{"cniVersion":"9.9.9"}"#, &[]);
    assert_cni_error(&out, 1, "VERSION 9.9.9");
    assert!(cni.state_files().is_empty());
}

#[test]
fn container_id_and_ifname_cannot_name_a_path_outside_the_state_dir() {
    let (_fixture, cni) = tree_only();
    let conf = cni.host_local_conf("1.0.0", VF0, "10.62.0.0/24");
    // a netns that does not exist: the values must be refused before it
    // is even looked at
    let netns = Path::new("/run/netns/does-not-matter");
    // what `<state>/<containerID>-<ifname>` would reach with `../`
    let victim = cni.dir.path().join("victim-net1");
    std::fs::write(&victim, b"{}").unwrap();
    let state_parent = cni.state_dir().parent().unwrap().to_owned();
    assert_eq!(victim.parent().unwrap(), state_parent);
    for command in ["ADD", "DEL", "CHECK"] {
        for (cid, ifname) in [
            ("../victim", "net1"),
            ("a/../../victim", "net1"),
            ("..", "net1"),
            ("cid", "../victim"),
            ("cid", "a/b"),
            ("cid", ".."),
        ] {
            let out = cni.run_raw(
                command,
                cid,
                Some(netns),
                ifname,
                conf.to_string().as_bytes(),
                &[],
            );
            let case = format!("{command} {cid:?}/{ifname:?}");
            assert_cni_error(&out, 4, &case);
            // refused for the unsafe value itself, not for the netns
            // (which does not exist either) or anything later
            let culprit = if cid == "cid" {
                "CNI_IFNAME"
            } else {
                "CNI_CONTAINERID"
            };
            let msg = out.json["msg"].as_str().unwrap_or_default();
            assert!(msg.contains(culprit), "{case}: {msg}");
        }
    }
    assert!(victim.exists(), "nothing outside the state dir was touched");
    assert!(cni.state_files().is_empty());
}

use common::cni::CniNode as Node;

fn node() -> Node {
    Node::new()
}

/// A config as Multus passes it: the capability declared, the path in
/// runtimeConfig.
fn with_device_info(mut conf: Value, path: &Path) -> Value {
    conf["capabilities"] = json!({"CNIDeviceInfoFile": true});
    conf["runtimeConfig"] = json!({"CNIDeviceInfoFile": path});
    conf
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn device_info_file_is_written_on_add_and_removed_on_del() {
    if !require_root("device_info_file_is_written_on_add_and_removed_on_del") {
        return;
    }
    let n = node();
    let pod = n.pod("pod");
    // Multus's layout: devinfo/cni/<network>-<containerID>-<ifname>
    let dir = n.cni.dir.path().join("devinfo/cni");
    let path = dir.join("sriov-net-cid-net1");
    let conf = with_device_info(n.cni.host_local_conf("1.1.0", VF0, "10.63.0.0/24"), &path);
    let add = n.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    // device-info spec 1.1.0, type pci: the VF and its PF
    assert_eq!(
        read_json(&path),
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": VF0, "pf-pci-address": PF}})
    );
    assert_eq!(
        mode_of(&path),
        0o444,
        "read-only, as the spec's library writes it"
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["sriov-net-cid-net1"], "no temp file left");
    assert!(n
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(!path.exists(), "removed on DEL");

    // The file Multus copied from the device plugin (device-info 1.0.0,
    // read-only) is kept and completed, then removed on DEL.
    let path1 = dir.join("sriov-net-cid1-net1");
    std::fs::write(
        &path1,
        json!({"type": "pci", "version": "1.0.0", "pci": {"pci-address": VF1, "rdma-device": "mlx5_7"}})
            .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&path1, std::fs::Permissions::from_mode(0o444)).unwrap();
    let conf1 = with_device_info(n.cni.host_local_conf("1.1.0", VF1, "10.63.0.0/24"), &path1);
    assert!(n
        .cni
        .run("ADD", "cid1", Some(pod.path()), "net2", &conf1)
        .ok());
    assert_eq!(
        read_json(&path1),
        json!({"type": "pci", "version": "1.1.0",
               "pci": {"pci-address": VF1, "pf-pci-address": PF, "rdma-device": "mlx5_7"}})
    );
    assert!(n
        .cni
        .run("DEL", "cid1", Some(pod.path()), "net2", &conf1)
        .ok());
    assert!(!path1.exists());

    // A DPDK VF gets one too; a file naming another device is not ours
    let conf2 = with_device_info(
        n.cni.host_local_conf("1.1.0", VF_VFIO, "10.63.0.0/24"),
        &path,
    );
    assert!(n
        .cni
        .run("ADD", "cid", Some(pod.path()), "net1", &conf2)
        .ok());
    assert_eq!(read_json(&path)["pci"]["pci-address"], VF_VFIO);
    std::fs::remove_file(&path).unwrap();
    let other = json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:d8:00.2"}});
    std::fs::write(&path, other.to_string()).unwrap();
    assert!(n
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf2)
        .ok());
    assert_eq!(read_json(&path), other, "another device's file stays");
    assert!(n.cni.state_files().is_empty());
}

#[test]
fn logs_go_to_log_file_at_log_level_and_never_to_stdout() {
    if !require_root("logs_go_to_log_file_at_log_level_and_never_to_stdout") {
        return;
    }
    let n = node();
    let pod = n.pod("pod");
    let log = n.cni.dir.path().join("sriov.log");
    let vf0 = n.vf_name(0);
    let before = host_link(&vf0).unwrap();

    // a failure after the VF moved: the log names the VF and the step
    let mut conf = n.cni.host_local_conf("1.1.0", VF0, "10.64.0.0/24");
    conf["logFile"] = json!(log);
    conf["ipam"]["type"] = json!("no-such-ipam");
    let out = n.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert_cni_error(&out, 103, "IPAM binary missing");
    assert_eq!(out.stderr, "", "logs went to logFile, not stderr");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(VF0) && text.contains("rolling back") && text.contains("no-such-ipam"),
        "{text}"
    );
    let now = host_link(&vf0).unwrap();
    assert_eq!(
        (now.index, now.mac, now.up),
        (before.index, before.mac, before.up)
    );

    // logLevel: debug shows the IPAM version bridge (1.1.0 config, Debian
    // plugin speaking 1.0.0), the default level does not
    let mut conf = n.cni.host_local_conf("1.1.0", VF0, "10.64.0.0/24");
    conf["logFile"] = json!(log);
    std::fs::remove_file(&log).unwrap();
    let add = n.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok() && add.stderr.is_empty(), "{}", add.stderr);
    assert_eq!(
        add.json["cniVersion"], "1.1.0",
        "stdout is the result alone"
    );
    assert!(n
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    let info_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!info_text.contains("older cniVersion"), "{info_text}");
    conf["logLevel"] = json!("debug");
    assert!(n
        .cni
        .run("ADD", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    let debug_text = std::fs::read_to_string(&log).unwrap();
    assert!(debug_text.contains("older cniVersion"), "{debug_text}");

    // while attached: the state is private to root
    let state = n.cni.state_dir();
    assert_eq!(mode_of(&state), 0o700);
    assert_eq!(mode_of(&state.join("cid-net1")), 0o600);
    assert_eq!(mode_of(&state.join("pci").join(VF0)), 0o600);
    assert!(n
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
}

#[test]
fn own_netns_is_refused_before_the_vf_is_touched_unless_overridden() {
    if !require_root("own_netns_is_refused_before_the_vf_is_touched_unless_overridden") {
        return;
    }
    let n = node();
    let vf0 = n.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let conf = n.cni.host_local_conf("1.0.0", VF0, "10.65.0.0/24");
    // the harness runs the plugin in the test's (host) namespace
    let own = Path::new("/proc/self/ns/net");
    let out = n.cni.run("ADD", "cid", Some(own), "net1", &conf);
    assert_cni_error(&out, 8, "own netns");
    let now = host_link(&vf0).expect("VF still on the host under its name");
    assert_eq!(
        (now.index, now.mac, now.up),
        (before.index, before.mac, before.up)
    );
    assert!(n.cni.allocated_ips().is_empty() && n.cni.state_files().is_empty());
    // a named namespace of a pod passes the same check
    let pod = n.pod("pod");
    assert!(n
        .cni
        .run("ADD", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(n
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
}

#[test]
fn gc_honours_the_legacy_attachments_key_and_leaves_other_networks_alone() {
    if !require_root("gc_honours_the_legacy_attachments_key_and_leaves_other_networks_alone") {
        return;
    }
    let n = node();
    let pods: Vec<TestNetns> = (0..3).map(|i| n.pod(&format!("p{i}"))).collect();
    let ours = |device: &str| n.cni.host_local_conf("1.1.0", device, "10.66.0.0/24");
    let mut other_network = ours("0000:3b:01.2");
    other_network["name"] = json!("other-net");
    let attachments = [
        ("keep", ours(VF0)),
        ("stale", ours(VF1)),
        ("other", other_network.clone()),
    ];
    for ((cid, conf), pod) in attachments.iter().zip(&pods) {
        let add = n.cni.run("ADD", cid, Some(pod.path()), "net1", conf);
        assert!(add.ok(), "{cid}: {}", add.stdout);
    }
    // the spec-v1.1.0 tag text's key, which libcni also sends
    let mut gc = ours(VF0);
    gc.as_object_mut().unwrap().remove("deviceID");
    gc["cni.dev/attachments"] = json!([{"containerID": "keep", "ifname": "net1"}]);
    let out = n.cni.run_raw(
        "GC",
        "",
        None,
        "",
        gc.to_string().as_bytes(),
        &NO_ATTACHMENT,
    );
    assert!(out.ok(), "{}", out.stdout);
    let in_pod = |pod: &TestNetns| {
        netns::run_in(pod.path(), || {
            Netlink::open().unwrap().link_by_name("net1").unwrap()
        })
        .unwrap()
        .is_some()
    };
    assert!(in_pod(&pods[0]), "listed: kept");
    assert!(!in_pod(&pods[1]), "not listed: released");
    assert!(host_link(&n.vf_name(1)).is_some(), "its VF is home");
    assert!(
        in_pod(&pods[2]),
        "another network's attachment is not ours to GC"
    );
    for ((cid, conf), pod) in attachments.iter().zip(&pods) {
        assert!(n.cni.run("DEL", cid, Some(pod.path()), "net1", conf).ok());
    }
    assert!(n.cni.state_files().is_empty());
    assert!(n.cni.allocated_ips().is_empty());
}

#[test]
fn device_from_pci_bus_id_or_runtime_config_and_mac_from_cni_args() {
    if !require_root("device_from_pci_bus_id_or_runtime_config_and_mac_from_cni_args") {
        return;
    }
    let n = node();
    let pod = n.pod("pod");
    let link_in_pod = |name: &str| {
        netns::run_in(pod.path(), || {
            Netlink::open().unwrap().link_by_name(name).unwrap()
        })
        .unwrap()
    };
    let base = n.cni.host_local_conf("1.0.0", VF0, "10.67.0.0/24");

    // only `pciBusID`, which Multus injects beside `deviceID`
    let mut by_bus = base.clone();
    by_bus.as_object_mut().unwrap().remove("deviceID");
    by_bus["pciBusID"] = json!(VF0);
    let add = n.cni.run("ADD", "c0", Some(pod.path()), "net1", &by_bus);
    assert!(add.ok(), "{}", add.stdout);
    assert_eq!(add.json["interfaces"][0]["pciID"], VF0);
    assert!(link_in_pod("net1").is_some());

    // only runtimeConfig.deviceID (the `deviceID` capability), and the MAC
    // from CNI_ARGS, as Multus passes a selection element's `mac`
    let vf1 = host_link(&n.vf_name(1)).unwrap();
    let mut by_capability = base.clone();
    by_capability.as_object_mut().unwrap().remove("deviceID");
    by_capability["capabilities"] = json!({"deviceID": true});
    by_capability["runtimeConfig"] = json!({"deviceID": VF1});
    let args =
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo;MAC=02:00:00:00:00:0a";
    let add = n.cni.run_raw(
        "ADD",
        "c1",
        Some(pod.path()),
        "net2",
        by_capability.to_string().as_bytes(),
        &[("CNI_ARGS", args)],
    );
    assert!(add.ok(), "{}", add.stdout);
    assert_eq!(add.json["interfaces"][0]["pciID"], VF1);
    assert_eq!(add.json["interfaces"][0]["mac"], "02:00:00:00:00:0a");
    assert_eq!(
        link_in_pod("net2").unwrap().mac,
        Some([2, 0, 0, 0, 0, 0x0a])
    );

    assert!(n
        .cni
        .run("DEL", "c0", Some(pod.path()), "net1", &by_bus)
        .ok());
    assert!(n
        .cni
        .run("DEL", "c1", Some(pod.path()), "net2", &by_capability)
        .ok());
    let after = host_link(&n.vf_name(1)).expect("VF1 home");
    assert_eq!(after.mac, vf1.mac, "original MAC restored");
    assert!(host_link(&n.vf_name(0)).is_some());
    assert!(n.cni.state_files().is_empty() && n.cni.allocated_ips().is_empty());
}
