//! Recovery paths of the `sriov` CNI binary on the simulated node: a failed
//! ADD whose rollback fails too, an IPAM DEL that fails, a late DEL of an old
//! attachment after a newer pod took the VF, and a new ADD on a VF whose
//! previous pod died before its DEL ran. Real netns, veth VFs, Debian's
//! host-local; the shell scripts below are fault injectors, not IPAM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::cni::{CniHarness, DEBIAN_CNI_DIR};
use common::{require_root, two_pf_layout, LinkOnDrop, SimFixture, TestNetns};
use serde_json::{json, Value};
use sriov_rs::netlink::{Link, LinkOps, Netlink};
use sriov_rs::netns;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// VF 0 of `two_pf_layout`'s first PF; its netdev is `<tag>av0`.
const VF0: &str = "0000:3b:01.0";

fn host_link(name: &str) -> Option<Link> {
    Netlink::open().unwrap().link_by_name(name).unwrap()
}

fn link_in(netns_path: &Path, name: &str) -> Option<Link> {
    netns::run_in(netns_path, || {
        Netlink::open().unwrap().link_by_name(name).unwrap()
    })
    .unwrap()
}

struct Setup {
    fixture: SimFixture,
    cni: CniHarness,
    /// Holds the fault injectors; first in CNI_PATH.
    faults: PathBuf,
}

fn setup() -> Setup {
    let fixture = SimFixture::new(two_pf_layout, true);
    let mut cni = CniHarness::new(&fixture.root);
    let faults = cni.dir.path().join("faults");
    std::fs::create_dir(&faults).unwrap();
    cni.cni_path = format!("{}:{DEBIAN_CNI_DIR}", faults.display());
    Setup {
        fixture,
        cni,
        faults,
    }
}

impl Setup {
    /// FAULT INJECTOR, not IPAM: `occupy-ipam`'s ADD takes the VF's host
    /// name (a bridge named `$FAULT_OCCUPY`), so putting the VF back fails,
    /// then ADD fails.
    fn occupying_ipam(&self) {
        self.fault_ipam(
            "occupy-ipam",
            r#"if [ "$CNI_COMMAND" = ADD ]; then
  ip link add "$FAULT_OCCUPY" type bridge >&2
  echo '{"cniVersion":"1.0.0","code":11,"msg":"injected IPAM ADD failure"}'
  exit 1
fi
"#,
        );
    }
    /// FAULT INJECTOR, not IPAM: `flaky-ipam` lets Debian's host-local do
    /// the work, but its DEL fails while the returned flag file exists.
    fn flaky_del_ipam(&self) -> PathBuf {
        let flag = self.faults.join("fail-del");
        self.fault_ipam(
            "flaky-ipam",
            &format!(
                r#"if [ "$CNI_COMMAND" = DEL ] && [ -e {flag} ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"injected IPAM DEL failure"}}'
  exit 1
fi
exec {DEBIAN_CNI_DIR}/host-local
"#,
                flag = flag.display()
            ),
        );
        flag
    }
    fn vf_name(&self, index: u32) -> String {
        format!("{}av{index}", self.fixture.tag)
    }
    fn pod(&self, name: &str) -> TestNetns {
        TestNetns::new(&format!("{}-{name}", self.fixture.tag))
    }
    /// An interface name for the pod side, unique to this test, so a VF
    /// stranded on the host under it can clash with nothing else.
    fn ifname(&self) -> String {
        format!("{}p", self.fixture.tag)
    }
    /// Install a fault-injecting IPAM stand-in named `name`.
    fn fault_ipam(&self, name: &str, script: &str) {
        let path = self.faults.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fn marker(&self, vf: &str) -> Option<String> {
        std::fs::read_to_string(self.cni.state_dir().join("pci").join(vf)).ok()
    }
}

/// What the kernel does to a real VF when its pod netns dies: it comes back
/// to the host under its pod-side name (`devN` on a clash). A veth stand-in
/// would die with the netns instead, so move it first.
fn kill_pod_like_the_kernel(pod: TestNetns, ifname: &str, host_name: &str) -> PathBuf {
    let host = sriov_rs::vf::host_netns().unwrap();
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let link = inside.link_by_name(ifname).unwrap().expect("VF in the pod");
        inside
            .set_netns_and_name(link.index, host.as_fd(), host_name)
            .unwrap();
    })
    .unwrap();
    let path = pod.path().to_owned();
    drop(pod);
    path
}

#[test]
fn a_failed_rollback_keeps_the_state_so_del_restores_the_vf() {
    if !require_root("a_failed_rollback_keeps_the_state_so_del_restores_the_vf") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let ifname = s.ifname();
    let _stranded = LinkOnDrop(ifname.clone());
    let _occupier = LinkOnDrop(vf0.clone());
    s.occupying_ipam();
    let pod = s.pod("pod");
    let mut conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.1.0/24");
    conf["ipam"]["type"] = json!("occupy-ipam");
    conf["mac"] = json!("02:58:00:00:00:01");
    let stdin = conf.to_string();
    let add = s.cni.run_raw(
        "ADD",
        "cid",
        Some(pod.path()),
        &ifname,
        stdin.as_bytes(),
        &[("FAULT_OCCUPY", &vf0)],
    );
    assert!(!add.ok());
    let msg = format!("{} {}", add.json["msg"], add.json["details"]);
    assert!(msg.contains("injected IPAM ADD failure"), "{msg}");
    assert!(msg.contains("rollback also failed"), "{msg}");
    // the VF is not home: what DEL needs to put it back must still be there
    assert!(
        s.cni.state_dir().join(format!("cid-{ifname}")).exists(),
        "cache kept: {:?}",
        s.cni.state_files()
    );
    assert_eq!(s.marker(VF0).as_deref(), Some(pod.path().to_str().unwrap()));

    // the name is free again (an operator removed the intruder); the
    // runtime's DEL finishes the job
    let occupier = host_link(&vf0).expect("the injector's bridge");
    Netlink::open().unwrap().delete(occupier.index).unwrap();
    let del = s.cni.run_raw(
        "DEL",
        "cid",
        Some(pod.path()),
        &ifname,
        stdin.as_bytes(),
        &[],
    );
    assert!(del.ok(), "{}", del.stdout);
    let after = host_link(&vf0).expect("the VF is back under its original name");
    assert_eq!(
        (after.index, after.mac, after.mtu),
        (before.index, before.mac, before.mtu)
    );
    assert!(host_link(&ifname).is_none() && link_in(pod.path(), &ifname).is_none());
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
}

#[test]
fn an_ipam_del_failure_still_restores_the_vf_and_the_retry_only_releases_ipam() {
    if !require_root("an_ipam_del_failure_still_restores_the_vf_and_the_retry_only_releases_ipam") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let flag = s.flaky_del_ipam();
    let pod_a = s.pod("a");
    let mut conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.2.0/24");
    conf["ipam"]["type"] = json!("flaky-ipam");
    conf["mac"] = json!("02:58:00:00:00:02");
    conf["mtu"] = json!(1400);
    assert!(s
        .cni
        .run("ADD", "ca", Some(pod_a.path()), "net1", &conf)
        .ok());
    assert_eq!(s.cni.allocated_ips().len(), 1);

    std::fs::write(&flag, b"").unwrap();
    let del = s.cni.run("DEL", "ca", Some(pod_a.path()), "net1", &conf);
    assert!(!del.ok());
    assert!(
        del.json["msg"]
            .as_str()
            .unwrap()
            .contains("injected IPAM DEL failure"),
        "{}",
        del.stdout
    );
    // the VF went home anyway, and its marker is released
    let home = host_link(&vf0).expect("VF restored despite the IPAM failure");
    assert_eq!(
        (home.index, home.mac, home.mtu),
        (before.index, before.mac, before.mtu)
    );
    assert!(link_in(pod_a.path(), "net1").is_none());
    assert_eq!(s.marker(VF0), None);
    assert_eq!(s.cni.allocated_ips().len(), 1, "the IP is still held");

    // pod B takes the VF before the runtime retries A's DEL: the retry
    // must release A's IP and nothing of B's
    let pod_b = s.pod("b");
    let conf_b = s.cni.host_local_conf("1.0.0", VF0, "10.58.2.0/24");
    assert!(s
        .cni
        .run("ADD", "cb", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    std::fs::remove_file(&flag).unwrap();
    assert!(s
        .cni
        .run("DEL", "ca", Some(pod_a.path()), "net1", &conf)
        .ok());
    assert!(link_in(pod_b.path(), "net1").is_some(), "B keeps the VF");
    assert_eq!(
        s.marker(VF0).as_deref(),
        Some(pod_b.path().to_str().unwrap())
    );
    assert_eq!(s.cni.allocated_ips().len(), 1, "only B's IP is left");
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    assert!(s.cni.allocated_ips().is_empty());
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
    let after = host_link(&vf0).unwrap();
    assert_eq!((after.mac, after.mtu), (before.mac, before.mtu));
}

#[test]
fn a_late_del_without_netns_leaves_a_newer_pods_vf_alone() {
    if !require_root("a_late_del_without_netns_leaves_a_newer_pods_vf_alone") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let pod_b = s.pod("b");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.3.0/24");
    let add = s.cni.run("ADD", "cb", Some(pod_b.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    let in_b = link_in(pod_b.path(), "net1").unwrap();
    // An older attachment of the same VF, as sriov-cni caches it (no netns
    // recorded), whose pod is gone; the runtime's late DEL has no netns.
    let old: Value = json!({
        "cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov", "deviceID": VF0,
        "ipam": conf["ipam"],
        "VFID": 0, "Master": format!("{}a", s.fixture.tag),
        "OrigVfState": {"HostIFName": vf0, "EffectiveMAC": "02:58:00:00:00:99", "MTU": 9000}
    });
    std::fs::write(s.cni.state_dir().join("old-net1"), old.to_string()).unwrap();
    let del = s.cni.run("DEL", "old", None, "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert_eq!(
        s.marker(VF0).as_deref(),
        Some(pod_b.path().to_str().unwrap()),
        "B's marker stays"
    );
    let still = link_in(pod_b.path(), "net1").expect("B keeps its VF");
    assert_eq!(
        (still.index, still.mac, still.mtu),
        (in_b.index, in_b.mac, in_b.mtu)
    );
    assert!(!s.cni.state_dir().join("old-net1").exists());
    assert_eq!(s.cni.allocated_ips().len(), 1, "B's IP stays");
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf)
        .ok());
    assert!(host_link(&vf0).is_some());
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

#[test]
fn a_new_pod_gets_the_vf_as_it_was_before_a_dead_pod_changed_it() {
    if !require_root("a_new_pod_gets_the_vf_as_it_was_before_a_dead_pod_changed_it") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let stranded = format!("{}d", s.fixture.tag);
    let _cleanup = LinkOnDrop(stranded.clone());
    // pod A changes MAC and MTU, then dies before its DEL: the VF is back
    // on the host under another name, with A's MAC and MTU, marker stale
    let pod_a = s.pod("a");
    let mut conf_a = s.cni.host_local_conf("1.0.0", VF0, "10.58.4.0/24");
    conf_a["mac"] = json!("02:58:00:00:00:04");
    conf_a["mtu"] = json!(1400);
    assert!(s
        .cni
        .run("ADD", "ca", Some(pod_a.path()), "net1", &conf_a)
        .ok());
    let path_a = kill_pod_like_the_kernel(pod_a, "net1", &stranded);
    assert_eq!(s.marker(VF0).as_deref(), Some(path_a.to_str().unwrap()));

    // pod B, no MAC or MTU of its own: gets the VF as it originally was
    let pod_b = s.pod("b");
    let conf_b = s.cni.host_local_conf("1.0.0", VF0, "10.58.4.0/24");
    let add = s.cni.run("ADD", "cb", Some(pod_b.path()), "net1", &conf_b);
    assert!(add.ok(), "{}", add.stdout);
    let in_b = link_in(pod_b.path(), "net1").unwrap();
    assert_eq!((in_b.mac, in_b.mtu), (before.mac, before.mtu));
    assert!(host_link(&stranded).is_none());

    // A's late DEL releases A's IP and nothing of B's
    assert_eq!(s.cni.allocated_ips().len(), 2);
    assert!(s.cni.run("DEL", "ca", Some(&path_a), "net1", &conf_a).ok());
    assert_eq!(s.cni.allocated_ips().len(), 1);
    assert!(link_in(pod_b.path(), "net1").is_some());
    assert_eq!(
        s.marker(VF0).as_deref(),
        Some(pod_b.path().to_str().unwrap())
    );

    // B's DEL: the VF's true original name, MAC and MTU
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    let after = host_link(&vf0).expect("VF home under its original name");
    assert_eq!(
        (after.index, after.mac, after.mtu),
        (before.index, before.mac, before.mtu)
    );
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

#[test]
fn a_second_attachment_of_one_vf_in_the_same_pod_is_refused() {
    if !require_root("a_second_attachment_of_one_vf_in_the_same_pod_is_refused") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    // a DPDK VF has no netdev whose absence from the host would show it in use
    let dpdk = "0000:3b:01.3";
    let conf = s.cni.host_local_conf("1.0.0", dpdk, "10.58.5.0/24");
    assert!(s
        .cni
        .run("ADD", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    let again = s.cni.run("ADD", "cid", Some(pod.path()), "net2", &conf);
    assert_eq!(again.error_code(), 102, "{}", again.stdout);
    assert_eq!(
        s.marker(dpdk).as_deref(),
        Some(pod.path().to_str().unwrap()),
        "the refused ADD keeps the live marker"
    );
    assert_eq!(s.cni.allocated_ips().len(), 1);
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net2", &conf)
        .ok());
    assert_eq!(
        s.marker(dpdk).as_deref(),
        Some(pod.path().to_str().unwrap()),
        "the refused attachment's DEL keeps it too"
    );
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

#[test]
fn an_altname_equal_to_the_host_name_does_not_keep_the_vf_from_home() {
    if !require_root("an_altname_equal_to_the_host_name_does_not_keep_the_vf_from_home") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let ifname = s.ifname();
    let _stranded = LinkOnDrop(ifname.clone());
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.6.0/24");
    assert!(s
        .cni
        .run("ADD", "cid", Some(pod.path()), &ifname, &conf)
        .ok());
    // what udev's alternative names (or an agent keeping the old name on
    // rename) leave: the VF's host name as an altname of the VF in the pod
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let link = inside.link_by_name(&ifname).unwrap().unwrap();
        inside.add_alt_name(link.index, &vf0).unwrap();
        assert_eq!(inside.alt_names(link.index).unwrap(), vec![vf0.clone()]);
    })
    .unwrap();
    let del = s.cni.run("DEL", "cid", Some(pod.path()), &ifname, &conf);
    assert!(del.ok(), "{}", del.stdout);
    let after = host_link(&vf0).expect("VF home under its host name");
    assert_eq!(after.name, vf0, "its own name, not an altname match");
    assert_eq!((after.index, after.mac), (before.index, before.mac));
    assert!(Netlink::open()
        .unwrap()
        .alt_names(after.index)
        .unwrap()
        .is_empty());
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

/// A bridge named `name` on the host, as something else on the node would
/// create it; returns it as netlink sees it.
fn squat_on_host(name: &str) -> Link {
    let status = std::process::Command::new("ip")
        .args(["link", "add", name, "type", "bridge"])
        .status()
        .unwrap();
    assert!(status.success(), "ip link add {name} type bridge");
    host_link(name).unwrap()
}

/// The host link with ifindex `index`, whatever its name.
fn host_link_by_index(index: u32) -> Option<Link> {
    Netlink::open().unwrap().link_by_index(index).unwrap()
}

fn same_link(a: &Link, b: &Link) -> bool {
    (a.index, &a.name, a.mac, a.mtu, a.up) == (b.index, &b.name, b.mac, b.mtu, b.up)
}

#[test]
fn a_del_while_the_host_name_is_taken_leaves_the_squatter_alone_and_restores_the_vf() {
    if !require_root(
        "a_del_while_the_host_name_is_taken_leaves_the_squatter_alone_and_restores_the_vf",
    ) {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let ifname = s.ifname();
    let _stranded = LinkOnDrop(ifname.clone());
    let fallback = format!("sriov{}", before.index);
    let _fallback = LinkOnDrop(fallback.clone());
    s.occupying_ipam();
    let pod = s.pod("pod");
    let mut conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.7.0/24");
    conf["ipam"]["type"] = json!("occupy-ipam");
    conf["mac"] = json!("02:58:00:00:00:07");
    conf["mtu"] = json!(1400);
    let stdin = conf.to_string();
    let add = s.cni.run_raw(
        "ADD",
        "cid",
        Some(pod.path()),
        &ifname,
        stdin.as_bytes(),
        &[("FAULT_OCCUPY", &vf0)],
    );
    assert!(!add.ok());
    let _occupier = LinkOnDrop(vf0.clone());
    let squatter = host_link(&vf0).expect("the injector's bridge");
    assert_eq!(squatter.kind.as_deref(), Some("bridge"));
    assert!(s.cni.state_dir().join(format!("cid-{ifname}")).exists());

    // the runtime's DEL while the name is still taken
    let del = s.cni.run_raw(
        "DEL",
        "cid",
        Some(pod.path()),
        &ifname,
        stdin.as_bytes(),
        &[],
    );
    assert!(del.ok(), "{}", del.stdout);
    let still = host_link(&vf0).expect("the squatter stays");
    assert!(same_link(&still, &squatter), "{still:?} vs {squatter:?}");
    let vf = host_link_by_index(before.index).expect("the VF is on the host");
    assert_eq!(
        (vf.name.as_str(), vf.mac, vf.mtu),
        (fallback.as_str(), before.mac, before.mtu),
        "original MAC and MTU under the fallback name"
    );
    assert!(link_in(pod.path(), &ifname).is_none());
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
    assert!(s.cni.allocated_ips().is_empty());

    // the squatter goes: nothing is left for the runtime to do; the VF is
    // usable under its fallback name (an operator or udev may rename it)
    Netlink::open().unwrap().delete(squatter.index).unwrap();
    let again = s.cni.run_raw(
        "DEL",
        "cid",
        Some(pod.path()),
        &ifname,
        stdin.as_bytes(),
        &[],
    );
    assert!(again.ok(), "{}", again.stdout);
    let vf = host_link_by_index(before.index).unwrap();
    assert_eq!((vf.name.as_str(), vf.mac), (fallback.as_str(), before.mac));
    assert!(s.cni.state_files().is_empty());
    // left under its fallback name: the live node follows it there, and
    // tears it down from the wire side wherever it is
}

#[test]
fn a_del_after_the_pod_died_restores_mac_and_mtu_even_when_the_host_name_is_taken() {
    if !require_root(
        "a_del_after_the_pod_died_restores_mac_and_mtu_even_when_the_host_name_is_taken",
    ) {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let stranded = format!("{}d", s.fixture.tag);
    let _cleanup = LinkOnDrop(stranded.clone());
    let fallback = format!("sriov{}", before.index);
    let _fallback = LinkOnDrop(fallback.clone());
    let pod_a = s.pod("a");
    let mut conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.8.0/24");
    conf["mac"] = json!("02:58:00:00:00:08");
    conf["mtu"] = json!(1400);
    assert!(s
        .cni
        .run("ADD", "ca", Some(pod_a.path()), "net1", &conf)
        .ok());
    // the pod dies: the VF is home under another name with the pod's MAC
    // and MTU, and something takes its original name meanwhile
    let path_a = kill_pod_like_the_kernel(pod_a, "net1", &stranded);
    let _occupier = LinkOnDrop(vf0.clone());
    let squatter = squat_on_host(&vf0);

    let del = s.cni.run("DEL", "ca", Some(&path_a), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    assert!(same_link(&host_link(&vf0).unwrap(), &squatter));
    let vf = host_link_by_index(before.index).expect("the VF is on the host");
    assert_eq!(
        (vf.name.as_str(), vf.mac, vf.mtu),
        (fallback.as_str(), before.mac, before.mtu)
    );
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
    assert!(s.cni.allocated_ips().is_empty());
    Netlink::open().unwrap().delete(squatter.index).unwrap();
}

#[test]
fn gc_releases_the_ip_of_an_attachment_whose_ifname_holds_a_dash() {
    if !require_root("gc_releases_the_ip_of_an_attachment_whose_ifname_holds_a_dash") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.1.0", VF0, "10.58.9.0/24");
    // cache file `cid-net-1`: read from its name alone, `cid-net` / `1`
    assert!(s
        .cni
        .run("ADD", "cid", Some(pod.path()), "net-1", &conf)
        .ok());
    assert_eq!(s.cni.allocated_ips().len(), 1);
    let mut gc = conf.clone();
    gc.as_object_mut().unwrap().remove("deviceID");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "other", "ifname": "net1"}]);
    let out = s.cni.run_raw(
        "GC",
        "",
        None,
        "",
        gc.to_string().as_bytes(),
        &[("CNI_CONTAINERID", ""), ("CNI_IFNAME", "")],
    );
    assert!(out.ok(), "{}", out.stdout);
    assert!(link_in(pod.path(), "net-1").is_none());
    let home = host_link(&vf0).expect("the VF is home");
    assert_eq!((home.index, home.mac), (before.index, before.mac));
    assert!(
        s.cni.allocated_ips().is_empty(),
        "IPAM DEL got the attachment's own ifname: {:?}",
        s.cni.allocated_ips()
    );
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
}

#[test]
fn a_vf_up_on_the_host_is_up_again_after_a_failed_add_and_after_del() {
    if !require_root("a_vf_up_on_the_host_is_up_again_after_a_failed_add_and_after_del") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let stranded = format!("{}d", s.fixture.tag);
    let _cleanup = LinkOnDrop(stranded.clone());
    let index = host_link(&vf0).unwrap().index;
    Netlink::open().unwrap().set_up(index).unwrap();
    let before = host_link(&vf0).unwrap();
    assert!(before.up);
    let as_before = |what: &str| {
        let now = host_link(&vf0).unwrap_or_else(|| panic!("{what}: VF not home"));
        assert_eq!(
            (now.index, now.mac, now.mtu, now.up),
            (before.index, before.mac, before.mtu, true),
            "{what}"
        );
    };
    let mut conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.10.0/24");
    conf["mac"] = json!("02:58:00:00:00:0a");
    conf["mtu"] = json!(1400);

    // a failed ADD: its IPAM fails after the VF moved into the pod
    // (FAULT INJECTOR, not IPAM)
    s.fault_ipam(
        "failing-ipam",
        r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"injected IPAM failure"}'
exit 1
"#,
    );
    let pod = s.pod("pod");
    let mut broken = conf.clone();
    broken["ipam"]["type"] = json!("failing-ipam");
    let add = s.cni.run("ADD", "c1", Some(pod.path()), "net1", &broken);
    assert!(!add.ok());
    as_before("after a failed ADD");

    // ADD, then DEL from the pod
    assert!(s.cni.run("ADD", "c2", Some(pod.path()), "net1", &conf).ok());
    assert!(s.cni.run("DEL", "c2", Some(pod.path()), "net1", &conf).ok());
    as_before("after DEL");

    // ADD, the pod dies (the kernel brings the VF home down), then DEL
    let pod_b = s.pod("b");
    assert!(s
        .cni
        .run("ADD", "c3", Some(pod_b.path()), "net1", &conf)
        .ok());
    let gone = kill_pod_like_the_kernel(pod_b, "net1", &stranded);
    assert!(!host_link(&stranded).unwrap().up);
    assert!(s.cni.run("DEL", "c3", Some(&gone), "net1", &conf).ok());
    as_before("after DEL of a dead pod");
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

/// The attachment cache as a JSON value.
fn cache_json(s: &Setup, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(s.cni.state_dir().join(name)).unwrap()).unwrap()
}

#[test]
fn a_rollback_whose_only_failure_is_ipam_del_returns_the_vf_and_keeps_the_ip_for_del() {
    if !require_root(
        "a_rollback_whose_only_failure_is_ipam_del_returns_the_vf_and_keeps_the_ip_for_del",
    ) {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    let flag = s.flaky_del_ipam();
    std::fs::write(&flag, b"").unwrap();
    // the step after IPAM fails: the device-info file's directory is a file
    let not_a_dir = s.cni.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"").unwrap();
    let pod_a = s.pod("a");
    let mut conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.11.0/24");
    conf["ipam"]["type"] = json!("flaky-ipam");
    conf["mac"] = json!("02:58:00:00:00:0b");
    conf["runtimeConfig"] = json!({"CNIDeviceInfoFile": not_a_dir.join("devinfo")});
    let add = s.cni.run("ADD", "ca", Some(pod_a.path()), "net1", &conf);
    assert!(!add.ok());
    let msg = format!("{} {}", add.json["msg"], add.json["details"]);
    assert!(msg.contains("injected IPAM DEL failure"), "{msg}");
    // the VF is back and free; only the IP is left, and the cache says so
    let home = host_link(&vf0).expect("the VF is home");
    assert_eq!(
        (home.index, home.mac, home.mtu),
        (before.index, before.mac, before.mtu)
    );
    assert_eq!(s.marker(VF0), None);
    assert_eq!(
        cache_json(&s, "ca-net1")["sriovRs"]["vf_restored"],
        json!(true)
    );
    assert_eq!(s.cni.allocated_ips().len(), 1);

    // a newer pod takes the VF; A's DEL then releases A's IP, nothing else
    let pod_b = s.pod("b");
    let conf_b = s.cni.host_local_conf("1.0.0", VF0, "10.58.11.0/24");
    assert!(s
        .cni
        .run("ADD", "cb", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    let in_b = link_in(pod_b.path(), "net1").unwrap();
    std::fs::remove_file(&flag).unwrap();
    let del = s.cni.run("DEL", "ca", Some(pod_a.path()), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let still = link_in(pod_b.path(), "net1").expect("B keeps the VF");
    assert_eq!((still.index, still.mac), (in_b.index, in_b.mac));
    assert_eq!(
        s.marker(VF0).as_deref(),
        Some(pod_b.path().to_str().unwrap())
    );
    assert_eq!(s.cni.allocated_ips().len(), 1, "only B's IP is left");
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf_b)
        .ok());
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

/// Clears the immutable attribute again, so the temp dir can be removed.
struct Mutable(PathBuf);

impl Drop for Mutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn an_add_that_cannot_write_the_marker_leaves_no_cache_and_the_vf_untouched() {
    if !require_root("an_add_that_cannot_write_the_marker_leaves_no_cache_and_the_vf_untouched") {
        return;
    }
    let s = setup();
    let vf0 = s.vf_name(0);
    let before = host_link(&vf0).unwrap();
    // `pci/` refuses new files (immutable, which binds root too); the VF
    // locks below it stay usable
    let pci = s.cni.state_dir().join("pci");
    std::fs::create_dir_all(pci.join("vf_lock")).unwrap();
    let _mutable = Mutable(pci.clone());
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&pci)
        .status()
        .unwrap();
    assert!(chattr.success(), "chattr +i {}", pci.display());
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.12.0/24");
    let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert_eq!(add.error_code(), 5, "{}", add.stdout);
    let marker = pci.join(VF0).display().to_string();
    assert!(
        add.json["msg"].as_str().unwrap().contains(&marker),
        "it failed at the marker: {}",
        add.stdout
    );
    assert!(
        !s.cni.state_dir().join("cid-net1").exists(),
        "the cache written just before is removed"
    );
    let now = host_link(&vf0).expect("the VF never left");
    assert_eq!(
        (now.index, now.mac, now.mtu, now.up),
        (before.index, before.mac, before.mtu, before.up)
    );
    assert!(link_in(pod.path(), "net1").is_none());
    assert!(s.cni.allocated_ips().is_empty());
}

#[test]
fn a_late_del_without_netns_of_our_own_cache_leaves_a_newer_pods_vf_alone() {
    if !require_root("a_late_del_without_netns_of_our_own_cache_leaves_a_newer_pods_vf_alone") {
        return;
    }
    let s = setup();
    let pod_b = s.pod("b");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.13.0/24");
    assert!(s
        .cni
        .run("ADD", "cb", Some(pod_b.path()), "net1", &conf)
        .ok());
    let in_b = link_in(pod_b.path(), "net1").unwrap();
    // An older attachment of the same VF, as ADD caches it, whose pod is
    // gone (its netns path no longer exists); the runtime's late DEL comes
    // without CNI_NETNS.
    let mut old = cache_json(&s, "cb-net1");
    let gone = format!("/run/netns/{}-gone", s.fixture.tag);
    assert!(!Path::new(&gone).exists());
    old["sriovRs"]["netns"] = json!(gone);
    old["sriovRs"]["container_id"] = json!("old");
    old["sriovRs"]["pod_mac"] = json!("02:58:00:00:00:0d");
    std::fs::write(s.cni.state_dir().join("old-net1"), old.to_string()).unwrap();
    let del = s.cni.run("DEL", "old", None, "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let still = link_in(pod_b.path(), "net1").expect("B keeps its VF");
    assert_eq!(
        (still.index, still.mac, still.mtu, still.up),
        (in_b.index, in_b.mac, in_b.mtu, in_b.up)
    );
    assert_eq!(
        s.marker(VF0).as_deref(),
        Some(pod_b.path().to_str().unwrap()),
        "B's marker stays"
    );
    assert!(!s.cni.state_dir().join("old-net1").exists());
    assert_eq!(s.cni.allocated_ips().len(), 1, "B's IP stays");
    assert!(s
        .cni
        .run("DEL", "cb", Some(pod_b.path()), "net1", &conf)
        .ok());
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
}

/// Does a process other than this one hold `path` open?
fn opened_by_another_process(path: &Path) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    let me = std::process::id().to_string();
    // numeric entries only: `self` and `thread-self` are this process
    let others = procs.flatten().filter(|p| {
        let name = p.file_name();
        let name = name.to_string_lossy();
        name.bytes().all(|b| b.is_ascii_digit()) && name != me.as_str()
    });
    others.into_iter().any(|p| {
        std::fs::read_dir(p.path().join("fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
        })
    })
}

#[test]
fn del_reads_the_cache_only_once_it_holds_the_vf_lock() {
    if !require_root("del_reads_the_cache_only_once_it_holds_the_vf_lock") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.58.14.0/24");
    assert!(s
        .cni
        .run("ADD", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    let in_pod = link_in(pod.path(), "net1").unwrap();
    // the test takes the VF's lock, as a concurrent ADD or GC would
    let lock_path = s
        .cni
        .state_dir()
        .join("pci/vf_lock")
        .join(format!("{VF0}.lock"));
    let lock = std::fs::File::open(&lock_path).unwrap();
    lock.lock().unwrap();
    std::thread::scope(|scope| {
        let del = scope.spawn(|| s.cni.run("DEL", "cid", Some(pod.path()), "net1", &conf));
        // DEL opens the lock file and waits for it
        while !opened_by_another_process(&lock_path) && !del.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // meanwhile the lock's holder changed the attachment: the VF is
        // accounted for (what a newer ADD taking it over writes)
        let name = s.cni.state_dir().join("cid-net1");
        let mut cache: Value = serde_json::from_slice(&std::fs::read(&name).unwrap()).unwrap();
        cache["sriovRs"]["vf_restored"] = json!(true);
        std::fs::write(&name, cache.to_string()).unwrap();
        lock.unlock().unwrap();
        let del = del.join().unwrap();
        assert!(del.ok(), "{}", del.stdout);
    });
    // DEL acted on what the holder wrote: only IPAM, the VF left alone
    let still = link_in(pod.path(), "net1").expect("the VF was not touched");
    assert_eq!((still.index, still.mac), (in_pod.index, in_pod.mac));
    assert!(s.cni.allocated_ips().is_empty());
    assert!(!s.cni.state_dir().join("cid-net1").exists());
}
