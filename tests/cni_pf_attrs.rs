//! VF attributes set through the PF, against the real kernel. This kernel
//! has no SR-IOV PF (no netdevsim), so what can be asked of it is asked:
//! what a netdev without VF support answers to the VF table request and to
//! each VF attribute, that it checks the attribute layout before saying no,
//! and how the `sriov` binary behaves on the simulated node, whose "PFs" are
//! such netdevs (veths). The PF-side logic itself is tested against a fake
//! PF in `src/cni/pf_side/tests.rs` (the real ADD/DEL code with that fake
//! on the simulated node in `node_tests.rs`), the exact message bytes in
//! `src/netlink/vf/tests.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{require_root, unique_tag, TestNetns};
use serde_json::{json, Value};
use sriov_rs::netlink::{libc_errno, LinkOps, LinkState, Netlink, PfOps, VfSetting, VlanProto};
use sriov_rs::netns;

const VF0: &str = "0000:3b:01.0";
const VF_VFIO: &str = "0000:3b:01.3";

/// A veth pair inside a fresh netns: `(netns, name of one end, its ifindex)`.
fn veth_in_netns() -> (TestNetns, String, u32) {
    let tag = unique_tag();
    let ns = TestNetns::new(&format!("{tag}-pf"));
    let name = format!("{tag}p");
    let index = netns::run_in(ns.path(), || {
        let mut netlink = Netlink::open().unwrap();
        netlink
            .add_veth(&name, None, &format!("{tag}q"), None, None)
            .unwrap();
        netlink.link_by_name(&name).unwrap().unwrap().index
    })
    .unwrap();
    (ns, name, index)
}

#[test]
fn a_netdev_without_vf_support_answers_without_a_vf_table() {
    if !require_root("a_netdev_without_vf_support_answers_without_a_vf_table") {
        return;
    }
    let (ns, name, index) = veth_in_netns();
    let (table, missing) = netns::run_in(ns.path(), || {
        let mut netlink = Netlink::open().unwrap();
        (
            netlink.pf_vfs(&name).unwrap(),
            netlink.pf_vfs("nosuchpf0").unwrap(),
        )
    })
    .unwrap();
    let table = table.expect("the veth exists");
    assert_eq!(table.index, index);
    assert_eq!(
        table.vfs, None,
        "RTEXT_FILTER_VF on a veth: no IFLA_VFINFO_LIST"
    );
    assert!(missing.is_none());
}

#[test]
fn a_netdev_without_vf_support_refuses_each_vf_attribute_with_eopnotsupp() {
    if !require_root("a_netdev_without_vf_support_refuses_each_vf_attribute_with_eopnotsupp") {
        return;
    }
    let (ns, _, index) = veth_in_netns();
    let settings = [
        VfSetting::Vlan {
            vlan: 100,
            qos: 2,
            proto: VlanProto::Dot1Ad,
        },
        VfSetting::Mac([0x02, 0, 0, 0, 0, 1]),
        VfSetting::Rate { min: 10, max: 100 },
        VfSetting::SpoofChk(false),
        VfSetting::Trust(true),
        VfSetting::LinkState(LinkState::Disable),
    ];
    let answers = netns::run_in(ns.path(), || {
        let mut netlink = Netlink::open().unwrap();
        settings
            .iter()
            .map(|s| netlink.set_vf(index, 0, *s).unwrap_err().errno())
            .collect::<Vec<_>>()
    })
    .unwrap();
    // The kernel validates each IFLA_VF_* against its minimum size
    // (ifla_vf_policy) before it asks the driver; EOPNOTSUPP means ours
    // passed and only the driver said no.
    for (setting, errno) in settings.iter().zip(answers) {
        assert_eq!(errno, Some(libc_errno::EOPNOTSUPP), "{setting}");
    }
}

/// RTM_SETLINK with one IFLA_VF_MAC whose payload is `mac_payload`, written
/// by hand from the uapi layout, sent on a raw socket; the kernel's errno.
fn raw_set_vf_mac(index: u32, mac_payload: &[u8]) -> i32 {
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    let nlattr = |kind: u16, payload: &[u8]| {
        let mut out = ((4 + payload.len()) as u16).to_le_bytes().to_vec();
        out.extend(kind.to_le_bytes());
        out.extend(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    };
    // IFLA_VFINFO_LIST (22) > IFLA_VF_INFO (1) > IFLA_VF_MAC (1)
    let attrs = nlattr(22, &nlattr(1, &nlattr(1, mac_payload)));
    let mut message = ((32 + attrs.len()) as u32).to_le_bytes().to_vec();
    message.extend(19u16.to_le_bytes()); // RTM_SETLINK
    message.extend(5u16.to_le_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    message.extend(1u32.to_le_bytes());
    message.extend(0u32.to_le_bytes());
    message.extend([0u8; 4]); // family, pad, type
    message.extend(index.to_le_bytes());
    message.extend([0u8; 8]); // flags, change
    message.extend(attrs);
    let mut socket = Socket::new(NETLINK_ROUTE).unwrap();
    socket.bind_auto().unwrap();
    socket.connect(&SocketAddr::new(0, 0)).unwrap();
    socket.send(&message, 0).unwrap();
    let mut buffer = vec![0u8; 8192];
    let n = socket.recv(&mut &mut buffer[..], 0).unwrap();
    assert!(n >= 20, "an NLMSG_ERROR answer");
    assert_eq!(u16::from_le_bytes([buffer[4], buffer[5]]), 2, "NLMSG_ERROR");
    -i32::from_le_bytes(buffer[16..20].try_into().unwrap())
}

#[test]
fn the_kernel_checks_the_vf_attribute_layout_before_the_driver() {
    if !require_root("the_kernel_checks_the_vf_attribute_layout_before_the_driver") {
        return;
    }
    let (ns, _, index) = veth_in_netns();
    // struct ifla_vf_mac { __u32 vf; __u8 mac[32]; }
    let mut full = 0u32.to_le_bytes().to_vec();
    full.extend([0x02, 0, 0, 0, 0, 1]);
    full.extend([0u8; 26]);
    let (whole, short) = netns::run_in(ns.path(), || {
        (
            raw_set_vf_mac(index, &full),
            raw_set_vf_mac(index, &full[..10]),
        )
    })
    .unwrap();
    assert_eq!(whole, libc_errno::EOPNOTSUPP, "36 bytes reach the driver");
    assert!(
        whole != short && [libc_errno::ERANGE, libc_errno::EINVAL].contains(&short),
        "a 10-byte ifla_vf_mac is refused by the kernel's policy, not the driver: errno {short}"
    );
}

fn host_link(name: &str) -> Option<sriov_rs::netlink::Link> {
    Netlink::open().unwrap().link_by_name(name).unwrap()
}

use common::cni::CniNode as Setup;

impl Setup {
    fn vf0(&self) -> String {
        format!("{}av0", self.fixture.tag)
    }
    fn pf(&self) -> String {
        format!("{}a", self.fixture.tag)
    }
}

#[test]
fn pf_side_keys_on_a_pf_without_vf_settings_fail_cleanly_and_leave_the_vf_untouched() {
    if !require_root(
        "pf_side_keys_on_a_pf_without_vf_settings_fail_cleanly_and_leave_the_vf_untouched",
    ) {
        return;
    }
    let s = Setup::new();
    let pod = s.pod("pod");
    let before = host_link(&s.vf0()).unwrap();
    let base = s.cni.host_local_conf("1.0.0", VF0, "10.56.230.0/24");
    let cases: [(Value, &str); 7] = [
        (json!({"vlan": 100}), "vlan"),
        (json!({"vlan": 0, "vlanQoS": 0}), "vlan"),
        (json!({"spoofchk": "off"}), "spoofchk"),
        (json!({"trust": "on"}), "trust"),
        (json!({"link_state": "enable"}), "link_state"),
        (json!({"max_tx_rate": 100}), "max_tx_rate"),
        (json!({"vlan": 7, "mac": "02:00:00:00:00:07"}), "vlan"),
    ];
    for (keys, named) in cases {
        let mut conf = base.clone();
        for (key, value) in keys.as_object().unwrap() {
            conf[key] = value.clone();
        }
        let out = s.cni.run("ADD", "c1", Some(pod.path()), "net1", &conf);
        assert_eq!(out.error_code(), 2, "{keys}: {}", out.stdout);
        let msg = out.json["msg"].as_str().unwrap();
        for needle in [named, &s.pf(), VF0] {
            assert!(msg.contains(needle), "{keys}: {msg:?} should name {needle}");
        }
        let now = host_link(&s.vf0()).expect("the VF stays on the host");
        assert_eq!(
            (now.index, now.mac, now.mtu, now.up),
            (before.index, before.mac, before.mtu, before.up),
            "{keys}"
        );
        assert!(
            s.cni.state_files().is_empty(),
            "{keys}: {:?}",
            s.cni.state_files()
        );
        assert!(s.cni.allocated_ips().is_empty(), "{keys}: IPAM never ran");
    }
    // a bad value is a config error (7) found before the PF is asked,
    // naming the key and what it takes; sriov-cni would take a spoofchk
    // or trust typo as "off" and go on
    for (key, value, allowed) in [
        ("vlan", json!(4095), "0-4094"),
        ("spoofchk", json!("maybe"), "on or off"),
        ("trust", json!("yes"), "on or off"),
        ("link_state", json!("up"), "auto, enable or disable"),
    ] {
        let mut bad = base.clone();
        bad[key] = value;
        let out = s.cni.run("ADD", "c1", Some(pod.path()), "net1", &bad);
        assert_eq!(out.error_code(), 7, "{}", out.stdout);
        let msg = out.json["msg"].as_str().unwrap();
        assert!(msg.contains(key) && msg.contains(allowed), "{msg}");
        assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
    }
}

#[test]
fn without_pf_side_keys_the_plugin_works_without_pf_state() {
    if !require_root("without_pf_side_keys_the_plugin_works_without_pf_state") {
        return;
    }
    let s = Setup::new();
    let pod = s.pod("pod");
    let before = host_link(&s.vf0()).unwrap();
    let mut conf = s.cni.host_local_conf("1.1.0", VF0, "10.56.231.0/24");
    // a MAC is not PF-only for a kernel VF: its netdev takes it in the pod
    conf["mac"] = json!("02:00:00:12:34:56");
    let add = s.cni.run("ADD", "c1", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    assert_eq!(add.json["interfaces"][0]["mac"], "02:00:00:12:34:56");
    let cache: Value =
        serde_json::from_slice(&std::fs::read(s.cni.state_dir().join("c1-net1")).unwrap()).unwrap();
    assert!(
        cache["OrigVfState"].get("AdminMAC").is_none(),
        "no admin MAC recorded: the PF was not changed, so DEL will not touch it"
    );
    let del = s.cni.run("DEL", "c1", Some(pod.path()), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let after = host_link(&s.vf0()).unwrap();
    assert_eq!((after.mac, after.mtu), (before.mac, before.mtu));
    assert!(s.cni.state_files().is_empty());
}

#[test]
fn a_dpdk_vf_gets_no_mac_on_a_pf_that_cannot_set_it() {
    if !require_root("a_dpdk_vf_gets_no_mac_on_a_pf_that_cannot_set_it") {
        return;
    }
    // A VF on vfio-pci has no netdev: only its PF could give it the MAC the
    // result would claim.
    let s = Setup::new();
    let pod = s.pod("pod");
    let mut conf = s.cni.host_local_conf("1.1.0", VF_VFIO, "10.56.232.0/24");
    conf["mac"] = json!("02:00:00:12:34:57");
    let out = s.cni.run("ADD", "c1", Some(pod.path()), "net1", &conf);
    assert_eq!(out.error_code(), 2, "{}", out.stdout);
    assert!(out.json["msg"].as_str().unwrap().contains("mac"));
    assert!(s.cni.state_files().is_empty() && s.cni.allocated_ips().is_empty());
    // without a MAC it attaches as before
    conf.as_object_mut().unwrap().remove("mac");
    let out = s.cni.run("ADD", "c1", Some(pod.path()), "net1", &conf);
    assert!(out.ok(), "{}", out.stdout);
    assert!(s.cni.run("DEL", "c1", Some(pod.path()), "net1", &conf).ok());
}

#[test]
fn del_of_an_sriov_cni_cache_with_pf_side_keys_releases_the_vf_when_the_pf_has_nothing_to_restore()
{
    if !require_root(
        "del_of_an_sriov_cni_cache_with_pf_side_keys_releases_the_vf_when_the_pf_has_nothing_to_restore",
    ) {
        return;
    }
    // A cache as sriov-cni writes it (VlanProto as a number, AdminMAC
    // always), for a VF whose PF reports no VF settings: DEL asks the PF,
    // finds nothing to restore, and still releases everything.
    let s = Setup::new();
    let pod = s.pod("pod");
    let vf = host_link(&s.vf0()).unwrap();
    let mac = sriov_rs::netlink::format_mac(&vf.mac.unwrap());
    let cache = json!({
        "cniVersion": "1.0.0", "name": "sriov-net", "type": "sriov", "deviceID": VF0,
        "vlan": 100, "vlanQoS": 0, "vlanProto": "802.1q", "spoofchk": "off", "trust": "on",
        "VFID": 0, "Master": s.pf(), "MAC": "",
        "OrigVfState": {"HostIFName": s.vf0(), "SpoofChk": true, "Trust": false,
            "AdminMAC": "00:00:00:00:00:00", "EffectiveMAC": mac, "Vlan": 0, "VlanQoS": 0,
            "VlanProto": 33024, "MinTxRate": 0, "MaxTxRate": 0, "LinkState": 0, "MTU": 1500}
    });
    std::fs::create_dir_all(s.cni.state_dir().join("pci")).unwrap();
    std::fs::write(s.cni.state_dir().join("c1-net1"), cache.to_string()).unwrap();
    std::fs::write(
        s.cni.state_dir().join("pci").join(VF0),
        pod.path().display().to_string(),
    )
    .unwrap();
    let del = s.cni.run("DEL", "c1", Some(pod.path()), "net1", &cache);
    assert!(del.ok(), "{}", del.stdout);
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
    let after = host_link(&s.vf0()).unwrap();
    assert_eq!((after.index, after.mac), (vf.index, vf.mac));
}
