//! Selector matching on single devices.

use super::*;
use crate::config::{
    class_matches, eligible, first_match, matches, DeviceType, SelectorSet, VdpaType,
};

fn selector(json: &str) -> SelectorSet {
    load_ok(&one_resource(json)).config.resources[0].selectors[0].clone()
}

fn e810_vf(index: u32) -> DeviceFacts {
    vf(
        &format!("0000:3b:01.{index}"),
        E810_VF,
        "iavf",
        ("ens1f0", "0000:3b:00.0"),
        index,
    )
}

#[test]
fn empty_selector_matches_anything() {
    assert!(matches(&SelectorSet::default(), &e810_vf(0)));
}

#[test]
fn each_id_filter_compares_exactly() {
    let d = e810_vf(0);
    assert!(matches(&selector(r#"{"vendors": ["15b3", "8086"]}"#), &d));
    assert!(!matches(&selector(r#"{"vendors": ["15b3"]}"#), &d));
    assert!(matches(&selector(r#"{"devices": ["1889"]}"#), &d));
    assert!(!matches(&selector(r#"{"devices": ["154c"]}"#), &d));
    assert!(matches(&selector(r#"{"drivers": ["iavf"]}"#), &d));
    assert!(!matches(&selector(r#"{"drivers": ["vfio-pci"]}"#), &d));
    assert!(matches(
        &selector(r#"{"pciAddresses": ["0000:3b:01.0"]}"#),
        &d
    ));
    assert!(!matches(
        &selector(r#"{"pciAddresses": ["0000:3b:01.1"]}"#),
        &d
    ));
}

#[test]
fn filters_combine_with_and() {
    let d = e810_vf(2);
    assert!(matches(
        &selector(r#"{"vendors": ["8086"], "drivers": ["iavf"], "pfNames": ["ens1f0#2"]}"#),
        &d
    ));
    assert!(!matches(
        &selector(r#"{"vendors": ["8086"], "drivers": ["vfio-pci"], "pfNames": ["ens1f0"]}"#),
        &d
    ));
}

#[test]
fn pf_names_ignore_case_and_honour_ranges() {
    let s = selector(r#"{"pfNames": ["ENS1F0#0-1,3"]}"#);
    let picked: Vec<u32> = (0..5).filter(|i| matches(&s, &e810_vf(*i))).collect();
    assert_eq!(picked, vec![0, 1, 3]);
}

#[test]
fn root_devices_match_the_pf_address_with_ranges() {
    let s = selector(r#"{"rootDevices": ["0000:3B:00.0#1"]}"#);
    assert!(matches(&s, &e810_vf(1)));
    assert!(!matches(&s, &e810_vf(0)));
    assert!(!matches(
        &selector(r#"{"rootDevices": ["0000:5e:00.0"]}"#),
        &e810_vf(1)
    ));
}

#[test]
fn devices_without_a_pf_never_match_pf_filters() {
    // A PF (or a NIC without SR-IOV) has no PF name or PF address of its own.
    let pf = DeviceFacts {
        driver: Some("ice".into()),
        ..DeviceFacts::pci("0000:3b:00.0", 0x8086, 0x1593, ETHERNET)
    };
    assert!(!matches(&selector(r#"{"pfNames": ["ens1f0"]}"#), &pf));
    assert!(!matches(
        &selector(r#"{"rootDevices": ["0000:3b:00.0"]}"#),
        &pf
    ));
    assert!(matches(
        &selector(r#"{"pciAddresses": ["0000:3b:00.0"]}"#),
        &pf
    ));
    let empty_name = DeviceFacts {
        pf_name: Some("".into()),
        ..e810_vf(0)
    };
    assert!(!matches(
        &selector(r#"{"pfNames": ["ens1f0"]}"#),
        &empty_name
    ));
}

#[test]
fn only_the_first_entry_for_a_pf_counts_as_upstream() {
    // VF 8 is in the second entry, which upstream never consults for ens1f0.
    let s = selector(r#"{"pfNames": ["ens1f0#0-3", "ens1f0#8"]}"#);
    assert!(matches(&s, &e810_vf(3)));
    assert!(!matches(&s, &e810_vf(8)));
}

#[test]
fn link_type_ddp_and_pkey_need_the_property() {
    let mut d = e810_vf(0);
    assert!(matches(&selector(r#"{"linkTypes": ["ether"]}"#), &d));
    assert!(!matches(&selector(r#"{"linkTypes": ["infiniband"]}"#), &d));
    d.link_type = None;
    assert!(!matches(&selector(r#"{"linkTypes": ["ether"]}"#), &d));

    // configs with `ddpProfiles` are refused (no reader); the matcher keeps the rule
    let ddp = SelectorSet {
        ddp_profiles: vec!["GTPv1-C/U IPv4/IPv6 payload".into()],
        ..SelectorSet::default()
    };
    assert!(!matches(&ddp, &d));
    d.ddp_profile = Some("GTPv1-C/U IPv4/IPv6 payload".into());
    assert!(matches(&ddp, &d));

    let mut ib = vf(
        "0000:5e:00.2",
        CX5_VF,
        "mlx5_core",
        ("ibp94s0f0", "0000:5e:00.0"),
        0,
    );
    ib.class_code = INFINIBAND;
    ib.link_type = Some("infiniband".into());
    assert!(!matches(&selector(r#"{"pKeys": ["0x8001"]}"#), &ib));
    ib.pkey = Some(0x8001);
    assert!(matches(&selector(r#"{"pKeys": ["0x8001"]}"#), &ib));
    assert!(matches(&selector(r#"{"pKeys": ["0X8001", "0x1"]}"#), &ib));
    assert!(!matches(&selector(r#"{"pKeys": ["0x7fff"]}"#), &ib));
}

#[test]
fn is_rdma_and_vdpa_type_filter_on_capability() {
    let mut d = vf(
        "0000:5e:00.2",
        CX6DX_VF,
        "mlx5_core",
        ("ens2f0np0", "0000:5e:00.0"),
        0,
    );
    let rdma = selector(r#"{"isRdma": true}"#);
    assert!(!matches(&rdma, &d));
    d.is_rdma = true;
    assert!(matches(&rdma, &d));
    // isRdma false is no filter at all.
    assert!(matches(
        &selector(r#"{"isRdma": false}"#),
        &DeviceFacts {
            is_rdma: false,
            ..d.clone()
        }
    ));

    let vhost = selector(r#"{"vdpaType": "vhost"}"#);
    assert!(!matches(&vhost, &d));
    d.vdpa_type = Some(VdpaType::Virtio);
    assert!(!matches(&vhost, &d));
    d.vdpa_type = Some(VdpaType::Vhost);
    assert!(matches(&vhost, &d));
}

#[test]
fn selector_list_is_ored_in_order() {
    let r = load_ok(&one_resource(
        r#"[{"vendors": ["8086"], "devices": ["1889"]}, {"vendors": ["8086"], "needVhostNet": true}, {"vendors": ["15b3"]}]"#,
    ))
    .config
    .resources
    .remove(0);
    let e810 = e810_vf(0);
    let x710 = vf(
        "0000:86:02.0",
        X710_VF,
        "iavf",
        ("ens3f0", "0000:86:00.0"),
        0,
    );
    let cx5 = vf(
        "0000:5e:00.2",
        CX5_VF,
        "mlx5_core",
        ("ens2f0", "0000:5e:00.0"),
        0,
    );
    let other = DeviceFacts {
        driver: Some("bnxt_en".into()),
        ..DeviceFacts::pci("0000:af:00.0", 0x14e4, 0x16d7, ETHERNET)
    };
    assert_eq!(first_match(&r.selectors, &e810), Some(0));
    // The second selector takes the X710 VF, so it (alone) gets vhost-net.
    assert_eq!(first_match(&r.selectors, &x710), Some(1));
    assert_eq!(first_match(&r.selectors, &cx5), Some(2));
    assert_eq!(first_match(&r.selectors, &other), None);
}

#[test]
fn class_rule_per_device_type() {
    assert!(class_matches(DeviceType::NetDevice, ETHERNET));
    assert!(class_matches(DeviceType::NetDevice, INFINIBAND));
    assert!(class_matches(DeviceType::AuxNetDevice, ETHERNET));
    assert!(!class_matches(DeviceType::NetDevice, ACCELERATOR));
    assert!(class_matches(DeviceType::Accelerator, ACCELERATOR));
    assert!(class_matches(DeviceType::Accelerator, 0x12_01_00));
    assert!(!class_matches(DeviceType::Accelerator, ETHERNET));
    // NVMe (0x0108xx) belongs to nobody.
    assert!(!class_matches(DeviceType::NetDevice, 0x01_08_02));
}

#[test]
fn eligibility_needs_class_kind_and_a_driver() {
    let d = e810_vf(0);
    assert!(eligible(DeviceType::NetDevice, &d));
    assert!(!eligible(DeviceType::Accelerator, &d));
    assert!(!eligible(DeviceType::AuxNetDevice, &d));
    let unbound = DeviceFacts {
        driver: None,
        ..d.clone()
    };
    assert!(!eligible(DeviceType::NetDevice, &unbound));
    let sf = DeviceFacts {
        id: "mlx5_core.sf.2".into(),
        aux_type: Some("sf".into()),
        ..d
    };
    assert!(eligible(DeviceType::AuxNetDevice, &sf));
    assert!(!eligible(DeviceType::NetDevice, &sf));
}
