//! The PF-side steps (read, record, apply, restore) against `FakePf`, which
//! applies the bytes the kernel would receive and follows a real driver's
//! rules. The real ADD and DEL code runs against it in `node_tests`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use super::fake_pf::{vf_config, FakePf, Shared};
use super::*;
use crate::cni::state::Cache;
use crate::netlink::{LinkState, VlanProto};

const NO_WAIT: Retry = Retry {
    attempts: 5,
    delay: Duration::ZERO,
};
const POD_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];

fn conf(json: &str) -> NetConf {
    let conf = NetConf::parse(json.as_bytes()).unwrap();
    conf.validate().unwrap();
    conf
}

fn vf1() -> PfVf {
    PfVf {
        vf: "0000:3b:01.1".parse().unwrap(),
        pf: "ens1f0".into(),
        index: 1,
    }
}

/// What ADD does on the PF side: read, record, apply. Returns the cache DEL
/// would read and what a rollback (or DEL) sets back from it.
fn add(
    pf: &mut Shared,
    conf: &NetConf,
    mac: Option<[u8; 6]>,
) -> (Cache, Vec<VfSetting>, Result<(), PfSideError>) {
    let settings = requested(conf, mac).unwrap();
    let (settings, found) = read_before(pf, &vf1(), settings, false).unwrap();
    let found = found.expect("an SR-IOV PF reports the VF");
    let mut orig = OrigVfState::default();
    record_original(
        &mut orig,
        &found.config,
        settings.iter().any(|s| matches!(s, VfSetting::Mac(_))),
    );
    let applied = apply(pf, &vf1(), &found, &settings, &NO_WAIT);
    let cache = Cache {
        conf: conf.clone(),
        vf_id: 1,
        master: "ens1f0".into(),
        orig,
        progress: None,
    };
    let undo = to_restore(&cache);
    (cache, undo, applied)
}

#[test]
fn requested_settings_follow_sriov_cni_order_and_defaults() {
    let all = conf(
        r#"{"vlan":100,"vlanProto":"802.1AD","spoofchk":"off","trust":"on","link_state":"enable",
            "max_tx_rate":500,"mac":"02:00:00:aa:bb:cc"}"#,
    );
    assert_eq!(
        requested(&all, Some(POD_MAC)).unwrap(),
        vec![
            VfSetting::Vlan {
                vlan: 100,
                qos: 0,
                proto: VlanProto::Dot1Ad
            },
            VfSetting::Mac(POD_MAC),
            // either rate key sends both, the missing one as 0
            VfSetting::Rate { min: 0, max: 500 },
            VfSetting::SpoofChk(false),
            VfSetting::Trust(true),
            VfSetting::LinkState(LinkState::Enable),
        ]
    );
    assert_eq!(
        requested(&conf(r#"{"vlan":0}"#), None).unwrap(),
        vec![VfSetting::Vlan {
            vlan: 0,
            qos: 0,
            proto: VlanProto::Dot1Q
        }]
    );
    // unlike sriov-cni, which takes any value but "on" as off: refused
    let typo = NetConf::parse(br#"{"spoofchk":"maybe"}"#).unwrap();
    assert_eq!(requested(&typo, None).unwrap_err().code, 7);
    // nothing PF-side asked: nothing to do, and the PF is never asked
    assert!(requested(&conf(r#"{"mtu":9000}"#), None)
        .unwrap()
        .is_empty());
}

#[test]
fn add_sets_each_attribute_verified_and_del_restores_exactly_the_original() {
    let mut pf = FakePf::sriov(4).shared();
    // VF 1 starts with an operator-set state that is not the driver default
    pf.pf().vfs[1].max_tx_rate = 1000;
    pf.pf().vfs[1].link_state = LinkState::Disable;
    let before = pf.pf().vfs.clone();
    let conf = conf(
        r#"{"vlan":100,"vlanQoS":3,"spoofchk":"off","trust":"on","link_state":"enable",
            "min_tx_rate":10,"max_tx_rate":200}"#,
    );
    let (cache, _, applied) = add(&mut pf, &conf, Some(POD_MAC));
    applied.unwrap();
    assert_eq!(
        pf.pf().vfs[1],
        VfConfig {
            vf: 1,
            mac: POD_MAC,
            vlan: 100,
            qos: 3,
            vlan_proto: VlanProto::Dot1Q,
            min_tx_rate: 10,
            max_tx_rate: 200,
            spoofchk: false,
            trust: true,
            link_state: LinkState::Enable,
        }
    );
    assert_eq!(pf.pf().vfs[0], before[0], "other VFs untouched");
    assert_eq!(
        pf.pf().log,
        [
            "vlan 1",
            "mac 1",
            "rate 1",
            "spoofchk 1",
            "trust 1",
            "link_state 1"
        ]
    );
    // the cache keeps the originals in sriov-cni's fields
    assert_eq!(cache.orig.admin_mac, "00:00:00:00:00:00");
    assert_eq!((cache.orig.vlan, cache.orig.vlan_proto), (0, 0x8100));
    assert_eq!((cache.orig.max_tx_rate, cache.orig.link_state), (1000, 2));
    assert!(cache.orig.spoofchk && !cache.orig.trust);

    // DEL, from the cache as it would be read back from disk
    let cache: Cache = serde_json::from_slice(&serde_json::to_vec(&cache).unwrap()).unwrap();
    pf.pf().log.clear();
    restore_in_order(&mut pf, &vf1(), &to_restore(&cache), &NO_WAIT, || Ok(())).unwrap();
    assert_eq!(pf.pf().vfs, before);
    assert_eq!(
        pf.pf().log,
        [
            "link_state 1",
            "trust 1",
            "spoofchk 1",
            "rate 1",
            "mac 1",
            "vlan 1"
        ],
        "reverse of ADD's order"
    );
}

#[test]
fn a_failure_half_way_through_add_undoes_what_was_applied() {
    // sriov-cni #119: an unsupported link_state left the VF with its vlan
    let mut pf = FakePf::sriov(2).shared();
    pf.pf().unsupported = vec!["link_state"];
    let before = pf.pf().vfs.clone();
    let conf = conf(r#"{"vlan":42,"trust":"on","link_state":"disable"}"#);
    let (_, undo, applied) = add(&mut pf, &conf, Some(POD_MAC));
    let error = CniError::from(applied.unwrap_err());
    assert_eq!(error.code, CODE_UNSUPPORTED_FIELD, "{}", error.msg);
    assert!(
        error.msg.contains("link_state") && error.msg.contains("ens1f0"),
        "{}",
        error.msg
    );
    assert_eq!(pf.pf().vfs[1].vlan, 42, "applied before the failure");

    // the rollback: PF first, then the netdev
    let mut released = false;
    restore_in_order(&mut pf, &vf1(), &undo, &NO_WAIT, || {
        released = true;
        Ok(())
    })
    .unwrap();
    assert!(released);
    assert_eq!(pf.pf().vfs, before, "the VF is exactly as it was");
}

#[test]
fn settings_already_in_effect_are_neither_sent_nor_undone() {
    let mut pf = FakePf::sriov(2).shared();
    pf.pf().vfs[1].vlan = 100;
    let (_, undo, applied) = add(&mut pf, &conf(r#"{"vlan":100,"trust":"on"}"#), None);
    applied.unwrap();
    assert_eq!(pf.pf().log, ["trust 1"]);
    pf.pf().log.clear();
    restore_in_order(&mut pf, &vf1(), &undo, &NO_WAIT, || Ok(())).unwrap();
    assert_eq!(pf.pf().log, ["trust 1"], "the vlan it already had stays");
    assert_eq!(pf.pf().vfs[1].vlan, 100);
}

#[test]
fn a_pf_without_vf_settings_fails_what_needs_it_and_is_not_needed_otherwise() {
    let mut pf = FakePf::veth().shared();
    let at = PfVf {
        pf: "ens1f0".into(),
        ..vf1()
    };
    let vlan = requested(&conf(r#"{"vlan":100,"spoofchk":"on"}"#), None).unwrap();
    let error = CniError::from(read_before(&mut pf, &at, vlan, false).unwrap_err());
    assert_eq!(error.code, CODE_UNSUPPORTED_FIELD);
    for needle in [
        "vlan, spoofchk",
        "ens1f0",
        "0000:3b:01.1",
        "reports no VF settings",
    ] {
        assert!(error.msg.contains(needle), "{needle}: {}", error.msg);
    }
    // a kernel-mode VF takes the MAC on its netdev: no PF needed
    let mac = vec![VfSetting::Mac(POD_MAC)];
    assert_eq!(
        read_before(&mut pf, &at, mac.clone(), false).unwrap(),
        (vec![], None)
    );
    // a DPDK VF has no netdev: only the PF could give it the MAC
    let error = CniError::from(read_before(&mut pf, &at, mac, true).unwrap_err());
    assert_eq!(error.code, CODE_UNSUPPORTED_FIELD);
    assert!(error.msg.contains("mac"), "{}", error.msg);
    assert_eq!(
        read_before(&mut pf, &at, vec![], false).unwrap(),
        (vec![], None)
    );
    // a PF with no netdev at all
    let nameless = PfVf {
        pf: String::new(),
        ..vf1()
    };
    let settings = vec![VfSetting::Trust(true)];
    let error = CniError::from(read_before(&mut pf, &nameless, settings, false).unwrap_err());
    assert_eq!(error.code, CODE_UNSUPPORTED_FIELD);
    assert!(error.msg.contains("trust"), "{}", error.msg);
    // and the PF itself refuses any VF attribute, as the kernel does for a veth
    let error = pf.set_vf(4, 0, VfSetting::Trust(true)).unwrap_err();
    assert!(error.is_not_supported());
}

#[test]
fn del_restores_the_pf_side_before_the_netdev_because_drivers_refuse_vf_side_mac_changes() {
    let mut pf = FakePf::sriov(2).shared();
    let host_mac = pf.pf().netdev_macs[1];
    let (cache, _, applied) = add(
        &mut pf,
        &conf(r#"{"mac":"02:00:00:aa:bb:cc"}"#),
        Some(POD_MAC),
    );
    applied.unwrap();
    assert_eq!(pf.pf().netdev_macs[1], POD_MAC, "the VF took its admin MAC");

    // the wrong order: the netdev's own MAC first, with the admin MAC still
    // set and trust off, is refused by the driver
    assert_eq!(pf.pf().vf_sets_own_mac(1, host_mac), Err(1));

    // DEL's order: PF-side first, then the netdev
    let netdev = pf.clone();
    restore_in_order(&mut pf, &vf1(), &to_restore(&cache), &NO_WAIT, || {
        netdev
            .pf()
            .vf_sets_own_mac(1, host_mac)
            .map_err(|errno| CniError::new(CODE_KERNEL, format!("errno {errno}")))
    })
    .unwrap();
    assert_eq!(
        pf.pf().vfs[1].mac,
        [0; 6],
        "admin MAC cleared, as before ADD"
    );
    assert_eq!(pf.pf().netdev_macs[1], host_mac);
}

#[test]
fn del_keeps_going_past_a_failed_restore_and_reports_it() {
    let mut pf = FakePf::sriov(2).shared();
    let (cache, _, applied) = add(&mut pf, &conf(r#"{"vlan":7,"trust":"on"}"#), None);
    applied.unwrap();
    // the driver loses trust support meanwhile (say, a firmware change)
    pf.pf().unsupported = vec!["trust"];
    let mut released = false;
    let error = restore_in_order(&mut pf, &vf1(), &to_restore(&cache), &NO_WAIT, || {
        released = true;
        Ok(())
    })
    .unwrap_err();
    assert!(error.msg.contains("trust"), "{}", error.msg);
    assert_eq!(
        pf.pf().vfs[1].vlan,
        0,
        "vlan restored although trust failed"
    );
    assert!(released, "the netdev is still released");
}

#[test]
fn a_busy_driver_and_a_late_admin_mac_are_retried() {
    let mut pf = FakePf::sriov(2).shared();
    pf.pf().busy = 2;
    pf.pf().mac_lag = 2;
    let (_, _, applied) = add(&mut pf, &conf("{}"), Some(POD_MAC));
    applied.unwrap();
    assert_eq!(pf.pf().vfs[1].mac, POD_MAC);

    // with fewer attempts than the driver needs: a clear error, not a hang
    let mut pf = FakePf::sriov(2).shared();
    pf.pf().busy = 10;
    let found = Found {
        pf_index: 4,
        config: vf_config(1),
    };
    let two = Retry {
        attempts: 2,
        delay: Duration::ZERO,
    };
    let error = apply(&mut pf, &vf1(), &found, &[VfSetting::Trust(true)], &two).unwrap_err();
    let error = CniError::from(error);
    assert_eq!(error.code, CODE_KERNEL);
    assert!(error.msg.contains("busy"), "{}", error.msg);
}

#[test]
fn a_value_the_driver_changes_is_reported_not_accepted() {
    // i40e rounds max_tx_rate up to a multiple of 50 Mbit/s
    let mut pf = FakePf::sriov(2).shared();
    pf.pf().rate_step = Some(50);
    let before = pf.pf().vfs.clone();
    let (_, undo, applied) = add(&mut pf, &conf(r#"{"max_tx_rate":10}"#), None);
    let error = CniError::from(applied.unwrap_err());
    assert_eq!(error.code, CODE_KERNEL);
    assert!(
        error.msg.contains(
            "set min_tx_rate 0 max_tx_rate 10, but the driver reports min_tx_rate 0 max_tx_rate 50"
        ),
        "{}",
        error.msg
    );
    restore_in_order(&mut pf, &vf1(), &undo, &NO_WAIT, || Ok(())).unwrap();
    assert_eq!(pf.pf().vfs, before);
}

#[test]
fn a_driver_without_qinq_refuses_802_1ad_with_a_kernel_error() {
    let mut pf = FakePf::sriov(2).shared();
    pf.pf().no_qinq = true;
    let (_, undo, applied) = add(&mut pf, &conf(r#"{"vlan":10,"vlanProto":"802.1ad"}"#), None);
    let error = CniError::from(applied.unwrap_err());
    assert_eq!(error.code, CODE_KERNEL);
    assert!(
        error.msg.contains("vlan 10 qos 0 proto 802.1ad"),
        "{}",
        error.msg
    );
    assert_eq!(pf.pf().vfs[1].vlan, 0);
    // the original is in the cache before the attempt; restoring it is harmless
    restore_in_order(&mut pf, &vf1(), &undo, &NO_WAIT, || Ok(())).unwrap();
}

#[test]
fn sriov_cni_caches_restore_with_their_own_field_types() {
    // sriov-cni writes VlanProto as the ethertype and always an AdminMAC
    let upstream = r#"{"cniVersion":"1.0.0","name":"n","type":"sriov","deviceID":"0000:3b:01.1",
        "vlan":100,"vlanQoS":2,"vlanProto":"802.1ad","spoofchk":"on","VFID":1,"Master":"ens1f0",
        "OrigVfState":{"HostIFName":"ens1f0v1","SpoofChk":false,"Trust":false,"AdminMAC":"00:00:00:00:00:00",
        "EffectiveMAC":"02:ee:00:00:00:01","Vlan":5,"VlanQoS":1,"VlanProto":34984,"MinTxRate":0,
        "MaxTxRate":0,"LinkState":0,"MTU":1500}}"#;
    let cache: Cache = serde_json::from_str(upstream).unwrap();
    assert_eq!(
        to_restore(&cache),
        vec![
            VfSetting::SpoofChk(false),
            VfSetting::Mac([0; 6]),
            VfSetting::Vlan {
                vlan: 5,
                qos: 1,
                proto: VlanProto::Dot1Ad
            },
        ]
    );
    // a cache without VlanProto, or naming it, still restores a VLAN
    for (proto, expected) in [
        ("", VlanProto::Dot1Q),
        (r#","VlanProto":"802.1ad""#, VlanProto::Dot1Ad),
    ] {
        let json = format!(r#"{{"vlan":3,"OrigVfState":{{"Vlan":9{proto}}}}}"#);
        let cache: Cache = serde_json::from_str(&json).unwrap();
        assert_eq!(
            to_restore(&cache),
            vec![VfSetting::Vlan {
                vlan: 9,
                qos: 0,
                proto: expected
            }]
        );
    }
    // and we write the number, so sriov-cni can read our caches
    let mut orig = OrigVfState::default();
    record_original(&mut orig, &vf_config(0), false);
    let json = serde_json::to_value(&orig).unwrap();
    assert_eq!(json["VlanProto"], 33024);
    assert!(
        json.get("AdminMAC").is_none(),
        "no admin MAC recorded when ADD does not set it"
    );
}

#[test]
fn a_config_with_no_pf_side_keys_restores_nothing() {
    let cache: Cache =
        serde_json::from_str(r#"{"mtu":9000,"OrigVfState":{"HostIFName":"x","Vlan":5}}"#).unwrap();
    assert!(to_restore(&cache).is_empty());
    // and the release still runs
    let mut pf = FakePf::veth().shared();
    let mut released = false;
    restore_in_order(&mut pf, &vf1(), &[], &NO_WAIT, || {
        released = true;
        Ok(())
    })
    .unwrap();
    assert!(released);
    assert!(pf.pf().log.is_empty());
}
