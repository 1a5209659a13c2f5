//! CHECK on the simulated node: the VF's MTU is checked even when the config
//! sets none, against `prevResult` or what ADD recorded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::cni::CniHarness;
use common::{require_root, two_pf_layout, SimFixture, TestNetns};
use sriov_rs::netlink::{LinkOps, Netlink};
use sriov_rs::netns;
use std::path::Path;

fn set_mtu_in(netns_path: &Path, name: &str, mtu: u32) {
    netns::run_in(netns_path, || {
        let mut inside = Netlink::open().unwrap();
        let link = inside.link_by_name(name).unwrap().unwrap();
        inside.set_mtu(link.index, mtu).unwrap();
    })
    .unwrap();
}

#[test]
fn check_finds_a_changed_mtu_without_the_mtu_key() {
    if !require_root("check_finds_a_changed_mtu_without_the_mtu_key") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let cni = CniHarness::new(&fixture.root);
    let pod = TestNetns::new(&format!("{}-pod", fixture.tag));
    let conf = cni.host_local_conf("1.0.0", "0000:3b:01.0", "10.59.0.0/24");
    let add = cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    assert_eq!(add.json["interfaces"][0]["mtu"], 1500);
    let mut checked = conf.clone();
    checked["prevResult"] = add.json.clone();
    assert!(cni
        .run("CHECK", "cid", Some(pod.path()), "net1", &checked)
        .ok());

    set_mtu_in(pod.path(), "net1", 1400);
    // a 1.0.0 prevResult says 1500
    let out = cni.run("CHECK", "cid", Some(pod.path()), "net1", &checked);
    assert_eq!(out.error_code(), 3, "{}", out.stdout);
    let msg = out.json["msg"].as_str().unwrap();
    assert!(msg.contains("MTU 1400") && msg.contains("1500"), "{msg}");
    // a 0.4.0 prevResult has no MTU: what ADD recorded decides
    let mut old = checked.clone();
    old["cniVersion"] = "0.4.0".into();
    old["prevResult"]["cniVersion"] = "0.4.0".into();
    old["prevResult"]["interfaces"][0]
        .as_object_mut()
        .unwrap()
        .remove("mtu");
    let out = cni.run("CHECK", "cid", Some(pod.path()), "net1", &old);
    assert_eq!(out.error_code(), 3, "{}", out.stdout);

    set_mtu_in(pod.path(), "net1", 1500);
    assert!(cni.run("CHECK", "cid", Some(pod.path()), "net1", &old).ok());
    assert!(cni.run("DEL", "cid", Some(pod.path()), "net1", &conf).ok());
    assert!(cni.state_files().is_empty() && cni.allocated_ips().is_empty());
}

#[test]
fn check_tells_another_device_under_the_vf_name_from_the_vf() {
    if !require_root("check_tells_another_device_under_the_vf_name_from_the_vf") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let cni = CniHarness::new(&fixture.root);
    let pod = TestNetns::new(&format!("{}-pod", fixture.tag));
    let conf = cni.host_local_conf("1.0.0", "0000:3b:01.0", "10.59.1.0/24");
    let add = cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    // inside the pod, the VF is renamed and a veth takes its name
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let vf = inside.link_by_name("net1").unwrap().unwrap();
        inside.set_down(vf.index).unwrap();
        inside.set_name(vf.index, "moved").unwrap();
        inside
            .add_veth("net1", None, "net1peer", None, None)
            .unwrap();
    })
    .unwrap();
    let out = cni.run("CHECK", "cid", Some(pod.path()), "net1", &conf);
    assert_eq!(out.error_code(), 3, "{}", out.stdout);
    let msg = out.json["msg"].as_str().unwrap();
    assert!(msg.contains("another device"), "{msg}");
    // put the VF back under its name, then DEL restores it
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let squatter = inside.link_by_name("net1").unwrap().unwrap();
        inside.delete(squatter.index).unwrap();
        let vf = inside.link_by_name("moved").unwrap().unwrap();
        inside.set_name(vf.index, "net1").unwrap();
    })
    .unwrap();
    assert!(cni.run("DEL", "cid", Some(pod.path()), "net1", &conf).ok());
    assert!(cni.state_files().is_empty() && cni.allocated_ips().is_empty());
}
