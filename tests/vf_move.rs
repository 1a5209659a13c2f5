//! The VF's moves between namespaces when a name is taken, against the real
//! kernel. A netns move with a new name is not an atomic rename: the kernel
//! moves the link under its current name and renames it afterwards, so a
//! clash at the rename leaves it moved under its old name with EEXIST (first
//! test). The vf layer must then find it and put it where it belongs.
//!
//! Each test runs in a "host" namespace of its own (`netns::run_in`), so the
//! machine's real host namespace is never touched; a veth pair stands in for
//! the VF (its parent device is none, so it is recognised by name and MAC).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::cni::CniHarness;
use common::{require_root, two_pf_layout, unique_tag, SimFixture, TestNetns};
use serde_json::json;
use sriov_rs::netlink::{Link, LinkOps, Netlink};
use sriov_rs::netns;
use sriov_rs::vf::{self, Original, VfError};
use std::os::fd::AsFd;
use std::path::Path;

/// For messages and the parent-device check a real VF would get.
const VF: &str = "0000:3b:01.0";

fn vf() -> sriov_rs::pci::PciAddress {
    VF.parse().unwrap()
}

/// A "host" and a "pod" namespace, and a veth whose end `vf_name` stands
/// in for the VF on the host. Everything dies with the namespaces.
struct Stage {
    host: TestNetns,
    pod: TestNetns,
    vf_name: String,
}

impl Stage {
    fn new() -> Stage {
        let tag = unique_tag();
        let host = TestNetns::new(&format!("{tag}-host"));
        let pod = TestNetns::new(&format!("{tag}-pod"));
        let vf_name = format!("{tag}v");
        let peer = format!("{tag}w");
        netns::run_in(host.path(), || {
            let mut netlink = Netlink::open().unwrap();
            netlink.add_veth(&vf_name, None, &peer, None, None).unwrap();
        })
        .unwrap();
        Stage { host, pod, vf_name }
    }

    /// Run `work` with the thread in the stage's host namespace, as the
    /// plugin runs in the node's.
    fn on_host<T: Send>(&self, work: impl FnOnce(&mut Netlink) -> T + Send) -> T {
        netns::run_in(self.host.path(), || work(&mut Netlink::open().unwrap())).unwrap()
    }

    fn in_pod<T: Send>(&self, work: impl FnOnce(&mut Netlink) -> T + Send) -> T {
        netns::run_in(self.pod.path(), || work(&mut Netlink::open().unwrap())).unwrap()
    }

    fn host_link(&self, name: &str) -> Option<Link> {
        self.on_host(|n| n.link_by_name(name).unwrap())
    }

    fn pod_link(&self, name: &str) -> Option<Link> {
        self.in_pod(|n| n.link_by_name(name).unwrap())
    }

    fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .in_pod(|n| n.links().unwrap())
            .into_iter()
            .map(|l| l.name)
            .collect();
        names.sort();
        names
    }

    /// A veth pair named `name`/`peer` in the namespace at `path`: someone
    /// else's interfaces holding a name.
    fn squat(path: &Path, name: &str, peer: &str) -> Link {
        netns::run_in(path, || {
            let mut netlink = Netlink::open().unwrap();
            netlink.add_veth(name, None, peer, None, None).unwrap();
            netlink.link_by_name(name).unwrap().unwrap()
        })
        .unwrap()
    }
}

#[test]
fn the_kernel_moves_first_and_renames_after() {
    if !require_root("the_kernel_moves_first_and_renames_after") {
        return;
    }
    let stage = Stage::new();
    let squatter = Stage::squat(stage.pod.path(), "net1", &format!("{}x", stage.vf_name));
    let pod_fd = netns::open(stage.pod.path()).unwrap();
    let error = stage.on_host(|host| {
        let link = host.link_by_name(&stage.vf_name).unwrap().unwrap();
        host.set_netns_and_name(link.index, pod_fd.as_fd(), "net1")
            .unwrap_err()
    });
    assert!(error.is_exists(), "{error}");
    // EEXIST, and yet the link has left the host: it is in the pod under
    // its old name, which is what the vf layer must expect
    assert!(stage.host_link(&stage.vf_name).is_none());
    assert!(stage.pod_link(&stage.vf_name).is_some());
    assert_eq!(stage.pod_link("net1").unwrap().index, squatter.index);
}

#[test]
fn a_pod_name_taken_at_the_move_leaves_the_vf_on_the_host_as_it_was() {
    if !require_root("a_pod_name_taken_at_the_move_leaves_the_vf_on_the_host_as_it_was") {
        return;
    }
    let stage = Stage::new();
    let before = stage.host_link(&stage.vf_name).unwrap();
    // `net1` appears in the pod after ADD checked for it: the race, played
    // by calling the move itself with a name that exists
    let squatter = Stage::squat(stage.pod.path(), "net1", &format!("{}x", stage.vf_name));
    let pod_fd = netns::open(stage.pod.path()).unwrap();
    let result = stage.on_host(|host| {
        let mut pod = vf::netlink_in(stage.pod.path(), vf()).unwrap();
        vf::move_into_pod(host, &mut pod, pod_fd.as_fd(), vf(), &before, "net1")
    });
    assert!(
        matches!(result, Err(VfError::IfnameTaken { ref ifname, .. }) if ifname == "net1"),
        "{result:?}"
    );
    let after = stage
        .host_link(&stage.vf_name)
        .expect("the VF is back on the host under its own name");
    assert_eq!((after.mac, after.mtu), (before.mac, before.mtu));
    // the pod holds only what it had: lo and the squatter, untouched
    let peer = format!("{}x", stage.vf_name);
    assert_eq!(stage.pod_names(), {
        let mut names = vec!["lo".to_owned(), "net1".to_owned(), peer];
        names.sort();
        names
    });
    let net1 = stage.pod_link("net1").unwrap();
    assert_eq!((net1.index, net1.mac), (squatter.index, squatter.mac));
}

#[test]
fn a_pod_name_taken_when_the_host_name_is_taken_in_the_pod_too_moves_nothing() {
    if !require_root("a_pod_name_taken_when_the_host_name_is_taken_in_the_pod_too_moves_nothing") {
        return;
    }
    let stage = Stage::new();
    let before = stage.host_link(&stage.vf_name).unwrap();
    // both names are taken in the pod: the kernel refuses before moving
    Stage::squat(stage.pod.path(), "net1", &stage.vf_name);
    let pod_fd = netns::open(stage.pod.path()).unwrap();
    let result = stage.on_host(|host| {
        let mut pod = vf::netlink_in(stage.pod.path(), vf()).unwrap();
        vf::move_into_pod(host, &mut pod, pod_fd.as_fd(), vf(), &before, "net1")
    });
    assert!(
        matches!(result, Err(VfError::IfnameTaken { .. })),
        "{result:?}"
    );
    let after = stage.host_link(&stage.vf_name).unwrap();
    assert_eq!((after.index, after.mac), (before.index, before.mac));
}

/// Attach the stage's VF to the pod as `net1`; returns its host identity.
fn attached(stage: &Stage) -> Link {
    let before = stage.host_link(&stage.vf_name).unwrap();
    stage.on_host(|host| {
        vf::attach(
            host,
            vf(),
            &before,
            stage.pod.path(),
            "net1",
            Some([0x02, 0, 0, 0, 0xbe, 0xef]),
            Some(1400),
        )
        .unwrap()
    });
    before
}

fn return_home(stage: &Stage, original: &Link) -> Result<(), VfError> {
    stage.on_host(|host| {
        let host_fd = vf::host_netns().unwrap();
        let mut pod = vf::netlink_in(stage.pod.path(), vf()).unwrap();
        let original = Original {
            name: &original.name,
            mac: original.mac,
            mtu: original.mtu,
            up: original.up,
        };
        vf::return_to_host(&mut pod, host, host_fd.as_fd(), vf(), "net1", &original)
    })
}

#[test]
fn the_host_name_taken_on_return_brings_the_vf_home_under_the_fallback() {
    if !require_root("the_host_name_taken_on_return_brings_the_vf_home_under_the_fallback") {
        return;
    }
    let stage = Stage::new();
    let before = attached(&stage);
    let pod_index = stage.pod_link("net1").unwrap().index;
    // while the pod runs, something on the host takes the VF's name
    let squatter = Stage::squat(
        stage.host.path(),
        &stage.vf_name,
        &format!("{}x", stage.vf_name),
    );
    let result = return_home(&stage, &before);
    let fallback = format!("sriov{pod_index}");
    assert!(
        matches!(result, Err(VfError::HomeNameTaken { fallback: ref f, .. }) if *f == fallback),
        "{result:?}"
    );
    // home, under the fallback, with its own MAC and MTU; no `net1` left
    // on the host and none in the pod
    let home = stage
        .host_link(&fallback)
        .expect("the VF is on the host under the fallback name");
    assert_eq!((home.mac, home.mtu), (before.mac, before.mtu));
    assert!(stage.host_link("net1").is_none());
    assert!(stage.pod_link("net1").is_none());
    let name_holder = stage.host_link(&stage.vf_name).unwrap();
    assert_eq!(
        name_holder.index, squatter.index,
        "the squatter is untouched"
    );
}

#[test]
fn the_host_name_and_the_pod_name_both_taken_on_return_still_bring_the_vf_home() {
    if !require_root("the_host_name_and_the_pod_name_both_taken_on_return_still_bring_the_vf_home")
    {
        return;
    }
    let stage = Stage::new();
    let before = attached(&stage);
    let pod_index = stage.pod_link("net1").unwrap().index;
    // both names taken on the host: the kernel cannot move it under either
    Stage::squat(stage.host.path(), &stage.vf_name, "net1");
    let result = return_home(&stage, &before);
    let fallback = format!("sriov{pod_index}");
    assert!(
        matches!(result, Err(VfError::HomeNameTaken { fallback: ref f, .. }) if *f == fallback),
        "{result:?}"
    );
    let home = stage.host_link(&fallback).expect("home under the fallback");
    assert_eq!((home.mac, home.mtu), (before.mac, before.mtu));
    assert!(stage.pod_link("net1").is_none());
}

#[test]
fn a_free_host_name_on_return_restores_the_vf_exactly() {
    if !require_root("a_free_host_name_on_return_restores_the_vf_exactly") {
        return;
    }
    let stage = Stage::new();
    let before = attached(&stage);
    let inside = stage.pod_link("net1").unwrap();
    assert_eq!(
        (inside.mac, inside.mtu),
        (Some([0x02, 0, 0, 0, 0xbe, 0xef]), Some(1400))
    );
    return_home(&stage, &before).unwrap();
    let home = stage.host_link(&stage.vf_name).unwrap();
    assert_eq!((home.mac, home.mtu), (before.mac, before.mtu));
    assert!(stage.pod_link("net1").is_none());
}

#[test]
fn del_finds_a_vf_left_in_the_pod_under_its_host_name() {
    if !require_root("del_finds_a_vf_left_in_the_pod_under_its_host_name") {
        return;
    }
    // the simulated node: the VF is a veth in the machine's host namespace
    let fixture = SimFixture::new(two_pf_layout, true);
    let cni = CniHarness::new(&fixture.root);
    let vf_name = format!("{}av0", fixture.tag);
    let pod = TestNetns::new(&format!("{}-pod", fixture.tag));
    let host_link = |name: &str| Netlink::open().unwrap().link_by_name(name).unwrap();
    let before = host_link(&vf_name).expect("VF on the host");
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "sriov", "deviceID": VF});
    let add = cni.run("ADD", "cid1", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    // what a move whose rename failed leaves behind: the VF in the pod
    // under its host name, not as CNI_IFNAME
    netns::run_in(pod.path(), || {
        let mut netlink = Netlink::open().unwrap();
        let link = netlink.link_by_name("net1").unwrap().unwrap();
        netlink.set_down(link.index).unwrap();
        netlink.set_name(link.index, &vf_name).unwrap();
    })
    .unwrap();

    let del = cni.run("DEL", "cid1", Some(pod.path()), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let after = host_link(&vf_name).expect("DEL brought the VF home under its name");
    assert_eq!((after.mac, after.mtu), (before.mac, before.mtu));
    let in_pod = netns::run_in(pod.path(), || Netlink::open().unwrap().links().unwrap()).unwrap();
    assert!(
        in_pod.iter().all(|l| l.name == "lo"),
        "nothing of ours left in the pod: {in_pod:?}"
    );
    assert!(cni.state_files().is_empty(), "{:?}", cni.state_files());
}
