#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use super::*;
use crate::provision::file::{parse, Format};

fn addr(text: &str) -> PciAddress {
    text.parse().unwrap()
}

/// PF `name` at `0000:<bus>:00.0` with `num_vfs` VFs at `<bus>:01.N`, all
/// on iavf except those listed as vfio.
fn pf(bus: &str, name: &str, num_vfs: u32, vfio: &[u32]) -> PfView {
    PfView {
        address: addr(&format!("0000:{bus}:00.0")),
        name: Some(name.into()),
        vendor: "8086".into(),
        device: "1592".into(),
        driver: Some("ice".into()),
        total_vfs: 64,
        num_vfs,
        mtu: Some(1500),
        drivers_autoprobe: true,
        vfs: (0..num_vfs)
            .map(|index| VfView {
                index,
                address: addr(&format!("0000:{bus}:01.{index}")),
                driver: Some(
                    if vfio.contains(&index) {
                        "vfio-pci"
                    } else {
                        "iavf"
                    }
                    .into(),
                ),
                driver_override: vfio.contains(&index).then(|| "vfio-pci".into()),
                netdev: (!vfio.contains(&index)).then(|| format!("{name}v{index}")),
            })
            .collect(),
    }
}

fn node(pfs: Vec<PfView>) -> NodeView {
    NodeView { pfs }
}

fn policies(yaml: &str) -> NodePolicies {
    parse(yaml, Format::Yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn none() -> HeldVfs {
    HeldVfs::new()
}

fn errors(yaml: &str, node: &NodeView) -> Vec<String> {
    match plan(&policies(yaml), node, &none()) {
        Ok(plan) => panic!("expected errors, got {plan:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const SIX_WITH_TWO_VFIO: &str = r#"
policies:
  - name: fast
    nicSelector: {pfNames: ["eth9"]}
    numVfs: 6
    mtu: 9000
  - name: dpdk
    nicSelector: {pfNames: ["eth9#4-5"]}
    deviceType: vfio-pci
"#;

#[test]
fn from_zero_vfs_the_count_is_set_then_the_vfio_vfs_bound() {
    let node = node(vec![pf("3b", "eth9", 0, &[])]);
    let plan = plan(&policies(SIX_WITH_TWO_VFIO), &node, &none()).unwrap();
    assert_eq!(plan.pfs.len(), 1);
    let pf = &plan.pfs[0];
    assert_eq!(pf.policies, ["fast", "dpdk"]);
    assert_eq!(
        pf.steps,
        [
            Step::Mtu {
                from: Some(1500),
                to: 9000
            },
            Step::NumVfs { from: 0, to: 6 },
            Step::Bind {
                vf: 4,
                address: None,
                from: None,
                to: DeviceType::VfioPci
            },
            Step::Bind {
                vf: 5,
                address: None,
                from: None,
                to: DeviceType::VfioPci
            },
        ]
    );
    assert!(pf.refused.is_empty());
    let types: Vec<DeviceType> = pf.vf_types.values().copied().collect();
    use DeviceType::{Netdevice as N, VfioPci as V};
    assert_eq!(types, [N, N, N, N, V, V]);
    assert!(plan.unmatched_policies.is_empty());
}

#[test]
fn a_node_already_as_declared_needs_nothing() {
    let mut pf = pf("3b", "eth9", 6, &[4, 5]);
    pf.mtu = Some(9000);
    let plan = plan(&policies(SIX_WITH_TWO_VFIO), &node(vec![pf]), &none()).unwrap();
    assert_eq!(plan.steps(), 0);
    assert_eq!(plan.refused(), 0);
    assert!(plan.to_string().contains("nothing to do"));
}

#[test]
fn a_count_change_goes_through_zero_and_rebinds_what_the_new_vfs_need() {
    let plan = plan(
        &policies(SIX_WITH_TWO_VFIO),
        &node(vec![pf("3b", "eth9", 4, &[3])]),
        &none(),
    )
    .unwrap();
    let steps = &plan.pfs[0].steps;
    assert!(steps.contains(&Step::NumVfs { from: 4, to: 6 }));
    assert_eq!(
        Step::NumVfs { from: 4, to: 6 }.to_string(),
        "numVfs 4 -> 0 -> 6"
    );
    // the old VF 3 on vfio-pci is destroyed; only 4 and 5 are bound after
    let binds: Vec<u32> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Bind { vf, .. } => Some(*vf),
            _ => None,
        })
        .collect();
    assert_eq!(binds, [4, 5]);
}

#[test]
fn existing_vfs_are_rebound_both_ways_without_a_count_change() {
    // VF 1 on vfio-pci must go back; VF 4 must go to vfio-pci
    let node = node(vec![pf("3b", "eth9", 6, &[1, 5])]);
    let mut pf_plan = plan(&policies(SIX_WITH_TWO_VFIO), &node, &none())
        .unwrap()
        .pfs
        .remove(0);
    pf_plan.steps.retain(|s| !matches!(s, Step::Mtu { .. }));
    assert_eq!(
        pf_plan.steps,
        [
            Step::Bind {
                vf: 1,
                address: Some(addr("0000:3b:01.1")),
                from: Some("vfio-pci".into()),
                to: DeviceType::Netdevice
            },
            Step::Bind {
                vf: 4,
                address: Some(addr("0000:3b:01.4")),
                from: Some("iavf".into()),
                to: DeviceType::VfioPci
            },
        ]
    );
}

#[test]
fn a_stale_override_on_a_kernel_bound_vf_is_cleared() {
    let mut pf = pf("3b", "eth9", 6, &[4, 5]);
    pf.mtu = Some(9000);
    pf.vfs[0].driver_override = Some("vfio-pci".into());
    let plan = plan(&policies(SIX_WITH_TWO_VFIO), &node(vec![pf]), &none()).unwrap();
    assert_eq!(
        plan.pfs[0].steps,
        [Step::Bind {
            vf: 0,
            address: Some(addr("0000:3b:01.0")),
            from: Some("iavf".into()),
            to: DeviceType::Netdevice
        }]
    );
}

#[test]
fn a_count_change_is_refused_while_a_pod_holds_a_vf_and_the_rest_is_kept() {
    let yaml = r#"
policies:
  - name: a
    nicSelector: {pfNames: ["eth9"]}
    numVfs: 8
    mtu: 9000
  - name: b
    nicSelector: {pfNames: ["eth8"]}
    numVfs: 3
"#;
    let node = node(vec![pf("3b", "eth9", 6, &[]), pf("5e", "eth8", 0, &[])]);
    let mut held = HeldVfs::new();
    held.insert(addr("0000:3b:01.2"), Some("default/web".into()));
    let plan = plan(&policies(yaml), &node, &held).unwrap();
    let a = &plan.pfs[0];
    assert_eq!(
        a.steps,
        [Step::Mtu {
            from: Some(1500),
            to: 9000
        }]
    );
    assert_eq!(a.refused.len(), 1);
    assert_eq!(a.refused[0].step, Step::NumVfs { from: 6, to: 8 });
    assert_eq!(
        a.refused[0].held,
        [HeldVf {
            address: addr("0000:3b:01.2"),
            holder: Some("default/web".into())
        }]
    );
    let text = a.refused[0].to_string();
    assert!(
        text.contains("0000:3b:01.2") && text.contains("default/web"),
        "{text}"
    );
    // the other PF is untouched by the refusal
    assert_eq!(plan.pfs[1].steps, [Step::NumVfs { from: 0, to: 3 }]);
    assert!(plan.pfs[1].refused.is_empty());
}

#[test]
fn a_vf_that_exists_only_after_a_refused_change_is_refused_too() {
    let node = node(vec![pf("3b", "eth9", 4, &[])]);
    let held = HeldVfs::from_addresses(&[addr("0000:3b:01.0")]);
    let plan = plan(&policies(SIX_WITH_TWO_VFIO), &node, &held).unwrap();
    let refused: Vec<&Step> = plan.pfs[0].refused.iter().map(|r| &r.step).collect();
    assert_eq!(
        refused,
        [
            &Step::NumVfs { from: 4, to: 6 },
            &Step::Bind {
                vf: 4,
                address: None,
                from: None,
                to: DeviceType::VfioPci
            },
            &Step::Bind {
                vf: 5,
                address: None,
                from: None,
                to: DeviceType::VfioPci
            },
        ]
    );
}

#[test]
fn rebinding_a_held_vf_is_refused_other_vfs_are_rebound() {
    let mut pf = pf("3b", "eth9", 6, &[]);
    pf.mtu = Some(9000);
    let set: HashSet<PciAddress> = [addr("0000:3b:01.4")].into();
    let plan = plan(
        &policies(SIX_WITH_TWO_VFIO),
        &node(vec![pf]),
        &HeldVfs::from(&set),
    )
    .unwrap();
    let pf = &plan.pfs[0];
    assert_eq!(pf.steps.len(), 1);
    assert!(matches!(pf.steps[0], Step::Bind { vf: 5, .. }));
    assert_eq!(pf.refused.len(), 1);
    assert!(matches!(pf.refused[0].step, Step::Bind { vf: 4, .. }));
    assert_eq!(pf.refused[0].held[0].address, addr("0000:3b:01.4"));
}

#[test]
fn a_held_vf_on_a_pf_without_changes_refuses_nothing() {
    let yaml = "policies:\n  - name: a\n    nicSelector: {pfNames: [eth9]}\n    numVfs: 4\n";
    let held = HeldVfs::from_addresses(&[addr("0000:3b:01.0")]);
    let plan = plan(
        &policies(yaml),
        &node(vec![pf("3b", "eth9", 4, &[])]),
        &held,
    )
    .unwrap();
    assert_eq!(plan.steps() + plan.refused(), 0);
}

#[test]
fn different_counts_for_one_pf_are_one_error_naming_both_policies() {
    let yaml = r#"
policies:
  - name: by-name
    nicSelector: {pfNames: ["eth9"]}
    numVfs: 4
  - name: by-address
    nicSelector: {rootDevices: ["0000:3b:00.0"]}
    numVfs: 8
"#;
    let errors = errors(yaml, &node(vec![pf("3b", "eth9", 0, &[])]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(
        e.contains("\"by-name\"") && e.contains("\"by-address\""),
        "{e}"
    );
    assert!(
        e.contains("numVfs") && e.contains("4 vs 8") && e.contains("eth9"),
        "{e}"
    );
}

#[test]
fn different_mtus_for_one_pf_conflict() {
    let yaml = r#"
policies:
  - name: a
    nicSelector: {vendor: "8086"}
    mtu: 9000
  - name: b
    nicSelector: {pfNames: ["eth9"]}
    mtu: 1500
"#;
    let errors = errors(yaml, &node(vec![pf("3b", "eth9", 0, &[])]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("mtu") && errors[0].contains("\"a\"") && errors[0].contains("\"b\"")
    );
}

#[test]
fn overlapping_ranges_with_different_types_conflict_once_per_pair() {
    let yaml = r#"
policies:
  - name: net
    nicSelector: {pfNames: ["eth9#0-3"]}
    numVfs: 6
  - name: dpdk
    nicSelector: {pfNames: ["eth9#2-5"]}
    deviceType: vfio-pci
"#;
    let errors = errors(yaml, &node(vec![pf("3b", "eth9", 0, &[])]));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(
        e.contains("VF 2 of PF eth9") && e.contains("deviceType"),
        "{e}"
    );
    assert!(e.contains("\"net\"") && e.contains("\"dpdk\""), "{e}");
}

#[test]
fn two_whole_pf_policies_with_different_types_conflict() {
    let yaml = r#"
policies:
  - name: net
    nicSelector: {pfNames: ["eth9"]}
  - name: dpdk
    nicSelector: {deviceID: "1592"}
    deviceType: vfio-pci
"#;
    let errors = errors(yaml, &node(vec![pf("3b", "eth9", 2, &[])]));
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn overlapping_ranges_with_one_type_agree() {
    let yaml = r#"
policies:
  - name: a
    nicSelector: {pfNames: ["eth9#0-3"]}
    numVfs: 6
    deviceType: vfio-pci
  - name: b
    nicSelector: {pfNames: ["eth9#2-5"]}
    deviceType: vfio-pci
"#;
    let plan = plan(
        &policies(yaml),
        &node(vec![pf("3b", "eth9", 0, &[])]),
        &none(),
    )
    .unwrap();
    assert!(plan.pfs[0]
        .vf_types
        .values()
        .all(|t| *t == DeviceType::VfioPci));
}

#[test]
fn vfs_no_policy_covers_go_to_the_kernel_driver() {
    let yaml = "policies:\n  - name: d\n    nicSelector: {pfNames: [\"eth9#1\"]}\n    deviceType: vfio-pci\n";
    let plan = plan(
        &policies(yaml),
        &node(vec![pf("3b", "eth9", 3, &[2])]),
        &none(),
    )
    .unwrap();
    let steps = &plan.pfs[0].steps;
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(matches!(
        steps[0],
        Step::Bind {
            vf: 1,
            to: DeviceType::VfioPci,
            ..
        }
    ));
    assert!(matches!(
        steps[1],
        Step::Bind {
            vf: 2,
            to: DeviceType::Netdevice,
            ..
        }
    ));
}

#[test]
fn a_range_beyond_the_pfs_count_names_the_policy_and_key() {
    let yaml = "policies:\n  - name: d\n    nicSelector: {pfNames: [\"eth9#6-7\"]}\n    deviceType: vfio-pci\n";
    let errors = errors(yaml, &node(vec![pf("3b", "eth9", 4, &[])]));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("policy \"d\": nicSelector.pfNames: VF 7"),
        "{}",
        errors[0]
    );
}

#[test]
fn more_vfs_than_the_pf_has_names_the_policy_and_key() {
    let yaml = "policies:\n  - name: big\n    nicSelector: {pfNames: [eth9]}\n    numVfs: 65\n";
    let errors = errors(yaml, &node(vec![pf("3b", "eth9", 0, &[])]));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("policy \"big\": numVfs: 65"),
        "{}",
        errors[0]
    );
}

#[test]
fn selector_keys_must_all_match() {
    let yaml = r#"
policies:
  - name: wrong-vendor
    nicSelector: {pfNames: ["eth9"], vendor: "15b3"}
    numVfs: 2
  - name: by-address
    nicSelector: {rootDevices: ["0000:5e:00.0"], deviceID: "1592"}
    numVfs: 2
"#;
    let node = node(vec![pf("3b", "eth9", 0, &[]), pf("5e", "eth8", 0, &[])]);
    let plan = plan(&policies(yaml), &node, &none()).unwrap();
    assert_eq!(plan.pfs.len(), 1);
    assert_eq!(plan.pfs[0].pf, addr("0000:5e:00.0"));
    assert_eq!(plan.unmatched_policies, ["wrong-vendor"]);
    assert!(plan
        .to_string()
        .contains("policy \"wrong-vendor\" selects no PF"));
}

#[test]
fn zero_vfs_removes_them_all() {
    let yaml = "policies:\n  - name: off\n    nicSelector: {pfNames: [eth9]}\n    numVfs: 0\n";
    let plan = plan(
        &policies(yaml),
        &node(vec![pf("3b", "eth9", 4, &[1])]),
        &none(),
    )
    .unwrap();
    assert_eq!(plan.pfs[0].steps, [Step::NumVfs { from: 4, to: 0 }]);
    assert!(plan.pfs[0].vf_types.is_empty());
}

#[test]
fn without_autoprobe_new_vfs_are_probed_for_both_types() {
    let mut pf = pf("3b", "eth9", 0, &[]);
    pf.drivers_autoprobe = false;
    let plan = plan(&policies(SIX_WITH_TWO_VFIO), &node(vec![pf]), &none()).unwrap();
    let binds = plan.pfs[0]
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Bind { .. }))
        .count();
    assert_eq!(binds, 6);
}

#[test]
fn an_mtu_without_a_pf_netdev_is_refused_not_planned() {
    let mut pf = pf("3b", "eth9", 0, &[]);
    pf.name = None;
    let yaml = "policies:\n  - name: m\n    nicSelector: {rootDevices: [\"0000:3b:00.0\"]}\n    mtu: 9000\n";
    let plan = plan(&policies(yaml), &node(vec![pf]), &none()).unwrap();
    assert!(plan.pfs[0].steps.is_empty());
    assert!(matches!(
        plan.pfs[0].refused[0].step,
        Step::Mtu { to: 9000, .. }
    ));
}

#[test]
fn the_plan_serializes_with_step_tags() {
    let node = node(vec![pf("3b", "eth9", 0, &[])]);
    let plan = plan(&policies(SIX_WITH_TWO_VFIO), &node, &none()).unwrap();
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["pfs"][0]["pf"], "0000:3b:00.0");
    assert_eq!(json["pfs"][0]["steps"][1]["step"], "numVfs");
    assert_eq!(json["pfs"][0]["steps"][1]["to"], 6);
    assert_eq!(json["pfs"][0]["steps"][2]["to"], "vfio-pci");
}

#[test]
fn a_kernel_bound_vf_without_a_netdev_here_counts_as_in_a_pod() {
    let mut pf = pf("3b", "eth9", 4, &[3]);
    pf.vfs[1].netdev = None; // moved into a pod
    pf.vfs[2].driver = None; // unbound: no netdev expected
    pf.vfs[2].netdev = None;
    assert_eq!(
        node(vec![pf]).vfs_with_netdev_elsewhere(),
        [addr("0000:3b:01.1")]
    );
}
