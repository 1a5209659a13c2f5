//! Provisioning on the live simulated node (root): a node policy brings PFs
//! with no VFs to the declared VFs, drivers and MTU through the kernel's
//! files; a count change is refused while a pod holds a VF of that PF and
//! the rest applies; `--dry-run` changes nothing; bad and conflicting
//! policies are errors naming the policy and the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::tree::{device, driver_of, listing, read};

use common::{require_root, two_e810_layout as layout, SimFixture, TestNetns};
use sriov_rs::devtools::sim;
use sriov_rs::devtools::sim::layout::VfSpec;
use sriov_rs::netlink::{LinkOps, Netlink};
use sriov_rs::netns;
use sriov_rs::pci::PciAddress;
use sriov_rs::provision::{self, ApplyOptions, DeviceType, HeldVfs, PfPlan, Plan, Step};
use sriov_rs::sysfs::SysfsRoot;
use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Output;

const PF_A: &str = "0000:3b:00.0";
const PF_B: &str = "0000:5e:00.0";

fn iommu_group(root: &Path, bdf: &str) -> String {
    let link = std::fs::read_link(device(root, bdf).join("iommu_group")).unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

fn write_policy(node: &SimFixture, file: &str, text: &str) -> PathBuf {
    let path = node.dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn sriovctl(node: &SimFixture, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sriovctl"))
        .args(args)
        .arg("--sysfs-root")
        .arg(&node.root)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a test compares before and after: every function, its driver and
/// override, every PF's count, the PF MTUs, the device root.
fn snapshot(node: &SimFixture) -> Vec<String> {
    let mut lines = Vec::new();
    for bdf in listing(&node.root.join("bus/pci/devices")) {
        let dir = device(&node.root, &bdf);
        lines.push(format!(
            "{bdf} driver={:?} override={:?} numvfs={:?} net={:?}",
            driver_of(&node.root, &bdf),
            std::fs::read_to_string(dir.join("driver_override")).ok(),
            std::fs::read_to_string(dir.join("sriov_numvfs")).ok(),
            listing(&dir.join("net")),
        ));
    }
    for pf in ["a", "b"] {
        let mtu = node
            .root
            .join("class/net")
            .join(format!("{}{pf}", node.tag))
            .join("mtu");
        lines.push(format!("mtu {pf} {}", read(&mtu)));
    }
    lines.push(format!(
        "dev {:?}",
        listing(&sim::dev_root_for(&node.root).join("vfio"))
    ));
    lines
}

#[test]
fn six_vfs_from_none_two_on_vfio_pci_and_the_pf_mtu() {
    if !require_root("six_vfs_from_none_two_on_vfio_pci_and_the_pf_mtu") {
        return;
    }
    let node = SimFixture::new(|tag| layout(tag, 0, 0), true);
    let a = format!("{}a", node.tag);
    let policy = write_policy(
        &node,
        "policy.yaml",
        &format!(
            r#"
policies:
  - name: fast
    nicSelector: {{pfNames: ["{a}"], vendor: "8086", deviceID: "1592"}}
    numVfs: 6
    mtu: 9000
  - name: dpdk
    nicSelector: {{pfNames: ["{a}#4-5"]}}
    deviceType: vfio-pci
"#
        ),
    );
    let out = sriovctl(
        &node,
        &["provision", "--node-policy", policy.to_str().unwrap()],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("numVfs 0 -> 6"), "{stdout}");
    assert!(
        stdout.contains("0 failed, 0 skipped, 0 refused"),
        "{stdout}"
    );

    let pf = device(&node.root, PF_A);
    assert_eq!(read(&pf.join("sriov_numvfs")), "6");
    let dev_root = sim::dev_root_for(&node.root);
    for n in 0..6 {
        let bdf = format!("0000:3b:01.{n}");
        assert_eq!(
            std::fs::canonicalize(pf.join(format!("virtfn{n}"))).unwrap(),
            std::fs::canonicalize(device(&node.root, &bdf)).unwrap()
        );
        let group = iommu_group(&node.root, &bdf);
        if n >= 4 {
            assert_eq!(
                driver_of(&node.root, &bdf).as_deref(),
                Some("vfio-pci"),
                "VF {n}"
            );
            assert_eq!(
                read(&device(&node.root, &bdf).join("driver_override")),
                "vfio-pci"
            );
            assert!(
                dev_root.join("vfio").join(&group).exists(),
                "VF {n}: /dev/vfio/{group}"
            );
            assert_eq!(
                listing(&device(&node.root, &bdf).join("net")),
                Vec::<String>::new()
            );
        } else {
            assert_eq!(
                driver_of(&node.root, &bdf).as_deref(),
                Some("iavf"),
                "VF {n}"
            );
            assert!(!dev_root.join("vfio").join(&group).exists(), "VF {n}");
            assert_eq!(
                listing(&device(&node.root, &bdf).join("net")),
                [format!("{a}v{n}")]
            );
        }
    }
    assert_eq!(
        read(&node.root.join("class/net").join(&a).join("mtu")),
        "9000"
    );
    // PF b untouched
    assert_eq!(read(&device(&node.root, PF_B).join("sriov_numvfs")), "0");

    // applied again: nothing left to do
    let before = snapshot(&node);
    let again = sriovctl(
        &node,
        &["provision", "--node-policy", policy.to_str().unwrap()],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("nothing to do"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(snapshot(&node), before);
}

#[test]
fn a_count_change_is_refused_for_the_pf_whose_vf_a_pod_holds_and_the_rest_applies() {
    if !require_root(
        "a_count_change_is_refused_for_the_pf_whose_vf_a_pod_holds_and_the_rest_applies",
    ) {
        return;
    }
    let node = SimFixture::new(|tag| layout(tag, 6, 0), true);
    let (a, b) = (format!("{}a", node.tag), format!("{}b", node.tag));
    let policies = provision::parse(
        &format!(
            r#"
policies:
  - name: grow
    nicSelector: {{pfNames: ["{a}"]}}
    numVfs: 8
    mtu: 9000
  - name: other
    nicSelector: {{pfNames: ["{b}#1"]}}
    numVfs: 2
    deviceType: vfio-pci
"#
        ),
        provision::Format::Yaml,
    )
    .unwrap();
    let sysfs = SysfsRoot::new(&node.root);
    let view = provision::observe(&sysfs).unwrap();
    let held_vf: PciAddress = "0000:3b:01.2".parse().unwrap();
    let held: HashSet<PciAddress> = [held_vf].into();
    let plan = provision::plan(&policies, &view, &HeldVfs::from(&held)).unwrap();
    let mut netlink = Netlink::open().unwrap();
    let report = provision::apply(&plan, &sysfs, &mut netlink, &ApplyOptions::default());

    assert_eq!(report.failed(), 0, "{report}");
    let pf_a = &report.pfs[0];
    assert_eq!(pf_a.pf, PF_A.parse().unwrap());
    assert_eq!(pf_a.refused.len(), 1, "{report}");
    assert_eq!(pf_a.refused[0].step, Step::NumVfs { from: 6, to: 8 });
    assert_eq!(pf_a.refused[0].held[0].address, held_vf);
    assert!(
        report.to_string().contains("REFUSED numVfs 6 -> 0 -> 8"),
        "{report}"
    );
    // PF a keeps its six VFs, the held one included; its MTU is applied
    assert_eq!(read(&device(&node.root, PF_A).join("sriov_numvfs")), "6");
    assert_eq!(
        driver_of(&node.root, "0000:3b:01.2").as_deref(),
        Some("iavf")
    );
    assert_eq!(
        read(&node.root.join("class/net").join(&a).join("mtu")),
        "9000"
    );
    assert!(pf_a.applied.contains(&Step::Mtu {
        from: Some(1500),
        to: 9000
    }));
    // PF b: two VFs, VF 1 on vfio-pci
    let pf_b = &report.pfs[1];
    assert!(
        pf_b.refused.is_empty() && pf_b.failed.is_empty(),
        "{report}"
    );
    assert_eq!(read(&device(&node.root, PF_B).join("sriov_numvfs")), "2");
    assert_eq!(
        driver_of(&node.root, "0000:5e:01.0").as_deref(),
        Some("iavf")
    );
    assert_eq!(
        driver_of(&node.root, "0000:5e:01.1").as_deref(),
        Some("vfio-pci")
    );
    assert!(pf_b.applied.iter().any(|s| matches!(
        s,
        Step::Bind {
            vf: 1,
            to: DeviceType::VfioPci,
            address: Some(_),
            ..
        }
    )));
    assert!(!report.complete());
}

#[test]
fn vfs_move_between_vfio_pci_and_the_kernel_driver_without_a_count_change() {
    if !require_root("vfs_move_between_vfio_pci_and_the_kernel_driver_without_a_count_change") {
        return;
    }
    let node = SimFixture::new(
        |tag| {
            let mut layout = layout(tag, 4, 0);
            layout.pfs[0].vfs.push(VfSpec {
                index: 3,
                driver: Some("vfio-pci".into()),
                netdev: None,
                has_netdev: None,
            });
            layout
        },
        true,
    );
    let a = format!("{}a", node.tag);
    let group3 = iommu_group(&node.root, "0000:3b:01.3");
    let dev_root = sim::dev_root_for(&node.root);
    assert!(dev_root.join("vfio").join(&group3).exists());
    let policy = write_policy(
        &node,
        "policy.json",
        &format!(
            r#"{{"policies": [
              {{"name": "net", "nicSelector": {{"rootDevices": ["{PF_A}"]}}, "numVfs": 4}},
              {{"name": "dpdk", "nicSelector": {{"rootDevices": ["{PF_A}#1"]}}, "deviceType": "vfio-pci"}}
            ]}}"#
        ),
    );
    let out = sriovctl(
        &node,
        &["provision", "--node-policy", policy.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(read(&device(&node.root, PF_A).join("sriov_numvfs")), "4");
    assert_eq!(
        driver_of(&node.root, "0000:3b:01.1").as_deref(),
        Some("vfio-pci")
    );
    assert_eq!(
        driver_of(&node.root, "0000:3b:01.3").as_deref(),
        Some("iavf")
    );
    assert_eq!(
        read(&device(&node.root, "0000:3b:01.3").join("driver_override")),
        "(null)"
    );
    assert!(!dev_root.join("vfio").join(&group3).exists());
    assert_eq!(
        listing(&device(&node.root, "0000:3b:01.3").join("net")),
        [format!("{a}v3")]
    );
    assert_eq!(
        listing(&device(&node.root, "0000:3b:01.1").join("net")),
        Vec::<String>::new()
    );
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing_and_bad_policies_name_policy_and_key() {
    if !require_root(
        "dry_run_prints_the_plan_and_changes_nothing_and_bad_policies_name_policy_and_key",
    ) {
        return;
    }
    let node = SimFixture::new(|tag| layout(tag, 0, 2), true);
    let (a, b) = (format!("{}a", node.tag), format!("{}b", node.tag));
    let policy = write_policy(
        &node,
        "policy.yaml",
        &format!(
            "policies:\n  - name: p\n    nicSelector: {{pfNames: [\"{a}\", \"{b}#0\"]}}\n    numVfs: 6\n    mtu: 9000\n    deviceType: vfio-pci\n"
        ),
    );
    let before = snapshot(&node);
    let out = sriovctl(
        &node,
        &[
            "provision",
            "--node-policy",
            policy.to_str().unwrap(),
            "--dry-run",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(&format!("PF {a} ({PF_A}) [p]")), "{stdout}");
    assert!(stdout.contains("numVfs 0 -> 6"), "{stdout}");
    assert!(stdout.contains("numVfs 2 -> 0 -> 6"), "{stdout}");
    assert!(stdout.contains("mtu 1500 -> 9000"), "{stdout}");
    assert!(stdout.contains("VF 5: new -> vfio-pci"), "{stdout}");
    assert_eq!(snapshot(&node), before, "--dry-run changed the node");

    let json = sriovctl(
        &node,
        &[
            "provision",
            "--node-policy",
            policy.to_str().unwrap(),
            "--dry-run",
            "--output",
            "json",
        ],
    );
    assert!(json.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["dryRun"], true);
    assert!(doc["report"].is_null());
    assert_eq!(doc["plan"]["pfs"][0]["pf"], PF_A);
    assert_eq!(doc["plan"]["pfs"][0]["steps"][1]["step"], "numVfs");
    assert_eq!(doc["plan"]["pfs"][0]["steps"][1]["to"], 6);
    assert_eq!(snapshot(&node), before);

    // garbage: every error names the policy and the key, nothing changes
    let garbage = write_policy(
        &node,
        "garbage.yaml",
        "policies:\n  - name: typo\n    nicSelector: {pfNames: [x]}\n    numVf: 4\n    deviceType: dpdk\n",
    );
    let out = sriovctl(
        &node,
        &["provision", "--node-policy", garbage.to_str().unwrap()],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("policy \"typo\": numVf: unknown key"),
        "{stderr}"
    );
    assert!(
        stderr.contains("policy \"typo\": deviceType: \"dpdk\""),
        "{stderr}"
    );
    let not_yaml = write_policy(&node, "broken.yaml", "policies: [\n");
    let out = sriovctl(
        &node,
        &["provision", "--node-policy", not_yaml.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not valid YAML"),
        "{}",
        text(&out.stderr)
    );

    // conflicting: one error naming both policies, nothing changes
    let conflict = write_policy(
        &node,
        "conflict.yaml",
        &format!(
            "policies:\n  - name: four\n    nicSelector: {{pfNames: [\"{a}\"]}}\n    numVfs: 4\n  - name: eight\n    nicSelector: {{rootDevices: [\"{PF_A}\"]}}\n    numVfs: 8\n"
        ),
    );
    let out = sriovctl(
        &node,
        &["provision", "--node-policy", conflict.to_str().unwrap()],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("policy \"four\" and policy \"eight\" conflict on PF")
            && stderr.contains("numVfs: 4 vs 8"),
        "{stderr}"
    );
    assert_eq!(snapshot(&node), before);
}

#[test]
fn a_refused_write_names_pf_step_and_errno_and_a_vf_in_a_pod_is_never_destroyed() {
    if !require_root("a_refused_write_names_pf_step_and_errno_and_a_vf_in_a_pod_is_never_destroyed")
    {
        return;
    }
    let node = SimFixture::new(|tag| layout(tag, 2, 0), true);
    let (a, b) = (format!("{}a", node.tag), format!("{}b", node.tag));
    let sysfs = SysfsRoot::new(&node.root);

    // a plan the kernel refuses (more VFs than sriov_totalvfs): ERANGE, and
    // the binding that depended on it is skipped
    let plan = Plan {
        pfs: vec![PfPlan {
            pf: PF_B.parse().unwrap(),
            name: Some(b.clone()),
            policies: vec!["by-hand".into()],
            steps: vec![
                Step::NumVfs { from: 0, to: 65 },
                Step::Bind {
                    vf: 0,
                    address: None,
                    from: None,
                    to: DeviceType::VfioPci,
                },
            ],
            refused: Vec::new(),
            vf_types: BTreeMap::new(),
        }],
        unmatched_policies: Vec::new(),
    };
    let mut netlink = Netlink::open().unwrap();
    let report = provision::apply(&plan, &sysfs, &mut netlink, &ApplyOptions::default());
    assert_eq!(report.failed(), 1, "{report}");
    assert_eq!(report.skipped(), 1, "{report}");
    let failed = &report.pfs[0].failed[0];
    assert_eq!(failed.error.errno(), Some(nix::libc::ERANGE));
    assert!(
        failed.message.contains(&format!("PF {b} ({PF_B})"))
            && failed.message.contains("writing 65 to sriov_numvfs"),
        "{}",
        failed.message
    );
    assert_eq!(read(&device(&node.root, PF_B).join("sriov_numvfs")), "0");

    // a VF whose netdev is in a pod: sriovctl counts it as held
    let pod = TestNetns::new(&format!("{}-pp", node.tag));
    let vf_netdev = format!("{a}v1");
    let link = netlink.link_by_name(&vf_netdev).unwrap().unwrap();
    let fd = netns::open(pod.path()).unwrap();
    netlink.set_netns(link.index, fd.as_fd()).unwrap();
    let policy = write_policy(
        &node,
        "grow.yaml",
        &format!(
            "policies:\n  - name: grow\n    nicSelector: {{pfNames: [\"{a}\"]}}\n    numVfs: 4\n"
        ),
    );
    let out = sriovctl(
        &node,
        &["provision", "--node-policy", policy.to_str().unwrap()],
    );
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("REFUSED numVfs 2 -> 0 -> 4") && stdout.contains("0000:3b:01.1"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("1 refused"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(read(&device(&node.root, PF_A).join("sriov_numvfs")), "2");
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        assert!(inside.link_by_name(&vf_netdev).unwrap().is_some());
    })
    .unwrap();
}
