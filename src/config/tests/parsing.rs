//! Reading configs: the documented shapes, operator-rendered files, key casing, extras.

use super::*;
use crate::config::{AllocationPolicy, DeviceType, VdpaType};

/// A config in the style of upstream's README: several pools, every device type, both selector
/// forms, resource prefixes.
const README_STYLE: &str = r#"{
  "resourceList": [
    {
      "resourceName": "intel_sriov_netdevice",
      "selectors": {
        "vendors": ["8086"],
        "devices": ["154c", "10ed", "1889"],
        "drivers": ["i40evf", "ixgbevf", "iavf"]
      }
    },
    {
      "resourceName": "intel_sriov_dpdk",
      "resourcePrefix": "intel.com",
      "selectors": {
        "vendors": ["8086"],
        "devices": ["154c", "10ed", "1889"],
        "drivers": ["vfio-pci"],
        "pfNames": ["enp0s0f0", "enp2s2f1#0,2-7,9"]
      }
    },
    {
      "resourceName": "mlnx_sriov_rdma",
      "resourcePrefix": "mellanox.com",
      "excludeTopology": true,
      "selectors": [{
        "vendors": ["15b3"],
        "devices": ["1018"],
        "drivers": ["mlx5_core"],
        "isRdma": true
      }]
    },
    {
      "resourceName": "ib_rdma_netdevs",
      "selectors": {"linkTypes": ["infiniband"], "isRdma": true, "pKeys": ["0x7fff", "0x8001"]}
    },
    {
      "resourceName": "cx6dx_vdpa_vhost",
      "selectors": {"vendors": ["15b3"], "devices": ["101e"], "drivers": ["mlx5_core"], "vdpaType": "vhost"}
    },
    {
      "resourceName": "intel_fec_5g",
      "deviceType": "accelerator",
      "selectors": {"vendors": ["8086"], "devices": ["0d5d"], "drivers": ["vfio-pci"], "pciAddresses": ["0000:b1:00.1"]}
    },
    {
      "resourceName": "bf2_sf",
      "resourcePrefix": "nvidia.com",
      "deviceType": "auxNetDevice",
      "selectors": [{"vendors": ["15b3"], "devices": ["a2d6"], "pfNames": ["p0#1-5"], "auxTypes": ["sf"]}],
      "additionalInfo": {"*": {"token": "abc"}, "0000:03:00.0": {"token": "def", "zone": "a"}}
    }
  ]
}"#;

#[test]
fn readme_style_config_loads_with_every_value_typed() {
    let loaded = load_ok(README_STYLE);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = &loaded.config.resources;
    assert_eq!(r.len(), 7);

    assert_eq!(r[0].full_name(), "intel.com/intel_sriov_netdevice");
    assert_eq!(r[0].device_type, DeviceType::NetDevice);
    assert_eq!(r[0].selectors.len(), 1);
    assert!(!r[0].selectors_listed);
    assert_eq!(r[0].selectors[0].vendors, vec![0x8086]);
    assert_eq!(r[0].selectors[0].devices, vec![0x154c, 0x10ed, 0x1889]);
    assert_eq!(r[0].selectors[0].drivers, vec!["i40evf", "ixgbevf", "iavf"]);

    let pf = &r[1].selectors[0].pf_names;
    assert_eq!(pf[0].pf, "enp0s0f0");
    assert!(pf[0].vfs.is_none());
    assert_eq!(pf[1].to_string(), "enp2s2f1#0,2-7,9");

    assert_eq!(r[2].full_name(), "mellanox.com/mlnx_sriov_rdma");
    assert!(r[2].exclude_topology);
    assert!(r[2].selectors_listed);
    assert!(r[2].selectors[0].is_rdma);

    assert_eq!(r[3].selectors[0].link_types, vec!["infiniband"]);
    assert_eq!(r[3].selectors[0].pkeys, vec![0x7fff, 0x8001]);

    assert_eq!(r[4].selectors[0].vdpa_type, Some(VdpaType::Vhost));

    assert_eq!(r[5].device_type, DeviceType::Accelerator);
    assert_eq!(r[5].selectors[0].pci_addresses, vec!["0000:b1:00.1"]);

    assert_eq!(r[6].device_type, DeviceType::AuxNetDevice);
    assert_eq!(r[6].full_name(), "nvidia.com/bf2_sf");
    assert_eq!(r[6].selectors[0].aux_types, vec!["sf"]);
    assert_eq!(r[6].allocation_policy, None);
}

#[test]
fn additional_info_star_applies_to_all_and_pci_key_overrides() {
    let loaded = load_ok(README_STYLE);
    let aux = &loaded.config.resources[6];
    let other = aux.additional_info_for("0000:3b:00.0");
    assert_eq!(other.len(), 1);
    assert_eq!(other["token"], "abc");
    let own = aux.additional_info_for("0000:03:00.0");
    assert_eq!(own["token"], "def");
    assert_eq!(own["zone"], "a");
    // A resource without additionalInfo gives nothing.
    assert!(loaded.config.resources[0]
        .additional_info_for("0000:03:00.0")
        .is_empty());
}

/// What sriov-network-operator renders: Go field names without JSON tags (`IsRdma`,
/// `NeedVhostNet`) and `"SelectorObj": null` next to the selectors.
#[test]
fn operator_rendered_config_with_go_field_names_loads() {
    let text = r#"{"resourceList":[
      {"resourceName":"intelnics","selectors":{"vendors":["8086"],"devices":["1889"],"drivers":["iavf"],
        "pfNames":["ens1f0#0-3"],"IsRdma":false,"NeedVhostNet":true},"SelectorObj":null},
      {"resourceName":"mlxnics","selectors":{"vendors":["15b3"],"devices":["1018"],"drivers":["mlx5_core"],
        "pfNames":["ens2f0"],"rootDevices":["0000:3b:00.0"],"linkTypes":["ether"],"IsRdma":true,"NeedVhostNet":false},
        "SelectorObj":null}
    ]}"#;
    let loaded = load_ok(text);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = &loaded.config.resources;
    assert!(!r[0].selectors[0].is_rdma);
    assert!(r[0].selectors[0].need_vhost_net);
    assert!(r[1].selectors[0].is_rdma);
    assert!(!r[1].selectors[0].need_vhost_net);
    assert_eq!(r[1].selectors[0].root_devices[0].pf, "0000:3b:00.0");
}

#[test]
fn every_key_matches_case_insensitively_like_go() {
    let text = r#"{"ResourceList":[{"RESOURCENAME":"pool_a","ResourcePrefix":"example.com","DeviceType":"netDevice",
      "EXCLUDETOPOLOGY":true,"Selectors":{"VENDORS":["8086"],"PfNames":["ens1f0"],"vdpatype":"virtio"}}]}"#;
    let loaded = load_ok(text);
    let r = &loaded.config.resources[0];
    assert_eq!(r.full_name(), "example.com/pool_a");
    assert!(r.exclude_topology);
    assert_eq!(r.selectors[0].vendors, vec![0x8086]);
    assert_eq!(r.selectors[0].pf_names[0].pf, "ens1f0");
    assert_eq!(r.selectors[0].vdpa_type, Some(VdpaType::Virtio));
}

#[test]
fn repeated_key_in_two_casings_last_wins_with_a_warning() {
    let loaded = load_ok(&one_resource(
        r#"{"isRdma": true, "IsRdma": false, "vendors": ["15b3"]}"#,
    ));
    assert!(!loaded.config.resources[0].selectors[0].is_rdma);
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].contains("`selectors.isRdma` is given more than once"));
}

#[test]
fn null_leaves_a_key_unset_as_in_go() {
    // Go's decoder skips null, so an earlier value survives a later null.
    let loaded = load_ok(&one_resource(
        r#"{"isRdma": true, "IsRdma": null, "vendors": null, "vdpaType": null, "drivers": ["mlx5_core"]}"#,
    ));
    let s = &loaded.config.resources[0].selectors[0];
    assert!(s.is_rdma);
    assert!(s.vendors.is_empty());
    assert_eq!(s.vdpa_type, None);
}

#[test]
fn selector_list_keeps_order() {
    let loaded = load_ok(&one_resource(
        r#"[{"vendors": ["8086"], "devices": ["1889"]}, {"vendors": ["8086"], "needVhostNet": true}]"#,
    ));
    let r = &loaded.config.resources[0];
    assert!(r.selectors_listed);
    assert_eq!(r.selectors.len(), 2);
    assert_eq!(r.selectors[0].devices, vec![0x1889]);
    assert!(r.selectors[1].need_vhost_net);
}

#[test]
fn resource_prefix_defaults_to_the_given_one_and_empty_means_default() {
    let text = r#"{"resourceList":[{"resourceName":"a","resourcePrefix":"","selectors":{"drivers":["iavf"]}},
      {"resourceName":"b","selectors":{"drivers":["iavf"]}}]}"#;
    let loaded = parse(text, "example.org").unwrap();
    let names: Vec<_> = loaded
        .config
        .resources
        .iter()
        .map(|r| r.full_name())
        .collect();
    assert_eq!(names, vec!["example.org/a", "example.org/b"]);
}

#[test]
fn empty_device_type_means_net_device() {
    let text = r#"{"resourceList":[{"resourceName":"a","deviceType":"","selectors":{"drivers":["iavf"]}}]}"#;
    assert_eq!(
        load_ok(text).config.resources[0].device_type,
        DeviceType::NetDevice
    );
}

#[test]
fn allocation_policy_is_read_and_defaults_to_unset() {
    let text = r#"{"resourceList":[
      {"resourceName":"a","allocationPolicy":"pack","selectors":{"drivers":["iavf"]}},
      {"resourceName":"b","allocationPolicy":"spread","selectors":{"drivers":["iavf"]}},
      {"resourceName":"c","selectors":{"drivers":["iavf"]}}]}"#;
    let r = load_ok(text).config.resources;
    assert_eq!(r[0].allocation_policy, Some(AllocationPolicy::Pack));
    assert_eq!(r[1].allocation_policy, Some(AllocationPolicy::Spread));
    assert_eq!(r[2].allocation_policy, None);
}

#[test]
fn allocation_api_is_read_and_defaults_to_the_device_plugin() {
    let text = r#"{"resourceList":[
      {"resourceName":"a","allocationApi":"dra","selectors":{"drivers":["iavf"]}},
      {"resourceName":"b","allocationApi":"devicePlugin","selectors":{"drivers":["iavf"]}},
      {"resourceName":"c","selectors":{"drivers":["iavf"]}}]}"#;
    let loaded = load_ok(text);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let r = loaded.config.resources;
    assert_eq!(r[0].allocation_api, crate::config::AllocationApi::Dra);
    assert_eq!(
        r[1].allocation_api,
        crate::config::AllocationApi::DevicePlugin
    );
    assert_eq!(
        r[2].allocation_api,
        crate::config::AllocationApi::DevicePlugin
    );
}

#[test]
fn unknown_keys_are_ignored_with_a_warning_and_a_hint() {
    let text = r#"{"resourceList":[{"resourceName":"a","sriovMode":true,
      "selectors":{"drivers":["iavf"],"pfName":["ens1f0"]}}],"comment":"x"}"#;
    let loaded = load_ok(text);
    let w = loaded.warnings.join("\n");
    assert!(w.contains("unknown top-level key `comment`"), "{w}");
    assert!(w.contains("unknown key `sriovMode` ignored"), "{w}");
    assert!(
        w.contains("unknown key `pfName` in `selectors` ignored; did you mean `pfNames`?"),
        "{w}"
    );
    // The misspelt key really is ignored, as upstream ignores it.
    assert!(loaded.config.resources[0].selectors[0].pf_names.is_empty());
}

#[test]
fn selector_key_at_resource_level_is_ignored_with_a_warning() {
    // The pre-3.x layout put isRdma next to resourceName; current upstream ignores it there.
    let text = r#"{"resourceList":[{"resourceName":"a","isRdma":true,"selectors":{"drivers":["mlx5_core"]}}]}"#;
    let loaded = load_ok(text);
    assert!(!loaded.config.resources[0].selectors[0].is_rdma);
    assert!(
        loaded.warnings[0].contains("belongs inside `selectors`"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn keys_of_another_device_type_are_ignored_with_a_warning() {
    let text = r#"{"resourceList":[{"resourceName":"fec","deviceType":"accelerator",
      "selectors":{"vendors":["8086"],"pfNames":["ens1f0"],"isRdma":true}}]}"#;
    let loaded = load_ok(text);
    let s = &loaded.config.resources[0].selectors[0];
    assert!(s.pf_names.is_empty());
    assert!(!s.is_rdma);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0]
        .contains("resource 0 (\"fec\"): `selectors.pfNames` does not apply to accelerator"));
    assert!(loaded.warnings[1].contains("`selectors.isRdma` does not apply to accelerator"));
}

#[test]
fn ignored_key_of_another_type_is_not_even_type_checked() {
    // Go's decoder has no field for it, so its value cannot fail the config either.
    let text = r#"{"resourceList":[{"resourceName":"fec","deviceType":"accelerator",
      "selectors":{"vendors":["8086"],"pfNames":"not-a-list"}}]}"#;
    assert_eq!(
        load_ok(text).config.resources[0].selectors[0].vendors,
        vec![0x8086]
    );
}

#[test]
fn empty_selector_object_loads_with_a_warning() {
    let loaded = load_ok(&one_resource("{}"));
    assert!(loaded.config.resources[0].selectors[0].is_unfiltered());
    assert!(loaded.warnings[0].contains("has no filters"));
}

#[test]
fn more_than_one_link_type_warns_like_upstream() {
    let loaded = load_ok(&one_resource(r#"{"linkTypes": ["ether", "infiniband"]}"#));
    assert!(loaded.warnings[0].contains("`selectors.linkTypes` should have a single value"));
}

#[test]
fn pf_entry_shadowed_by_an_earlier_one_for_the_same_pf_warns() {
    let loaded = load_ok(&one_resource(
        r#"{"pfNames": ["ens1f0#0-3", "ENS1F0#8-9", "ens2f0"]}"#,
    ));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert!(
        w.contains("`selectors.pfNames[1]` \"ENS1F0#8-9\" is never used"),
        "{w}"
    );
    assert!(w.contains("\"ens1f0#0-3,8-9\""), "{w}");
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, one_resource(r#"{"drivers": ["iavf"]}"#)).unwrap();
    let loaded = crate::config::load(&path, "intel.com").unwrap();
    assert_eq!(loaded.config.resources[0].name, "pool_a");

    let missing = dir.path().join("nope.json");
    let err = crate::config::load(&missing, "intel.com").unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("nope.json"), "{err}");
}
