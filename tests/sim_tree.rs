//! The simulated sysfs tree, written without wiring: no root needed.
//! Checks exact link targets and attribute contents against the kernel's
//! conventions, and runs the same structural checks on the machine's /sys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{sysfs_shape, two_pf_layout, SimFixture};
use sriov_rs::devtools::sim::{self, CreateOptions, Layout, Serve, SimError};
use std::path::Path;

fn link(root: &Path, path: &str) -> String {
    std::fs::read_link(root.join(path))
        .unwrap_or_else(|e| panic!("readlink {path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn attr(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn default_layout_tree_has_kernel_link_targets() {
    let fixture = SimFixture::new(|_| Layout::default_layout().unwrap(), false);
    let root = &fixture.root;
    let pf = "devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0";
    assert_eq!(
        link(root, "bus/pci/devices/0000:3b:00.0"),
        format!("../../../{pf}")
    );
    assert_eq!(
        link(root, "bus/pci/devices/0000:3b:01.2"),
        "../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:01.2"
    );
    assert_eq!(
        link(root, &format!("{pf}/driver")),
        "../../../../bus/pci/drivers/ice"
    );
    assert_eq!(link(root, &format!("{pf}/virtfn0")), "../0000:3b:01.0");
    assert_eq!(link(root, &format!("{pf}/virtfn3")), "../0000:3b:01.3");
    assert_eq!(
        link(root, "devices/pci0000:3a/0000:3a:00.0/0000:3b:01.3/physfn"),
        "../0000:3b:00.0"
    );
    assert_eq!(
        link(root, "devices/pci0000:3a/0000:3a:00.0/0000:3b:01.1/driver"),
        "../../../../bus/pci/drivers/iavf"
    );
    assert_eq!(
        link(root, &format!("{pf}/iommu_group")),
        "../../../../kernel/iommu_groups/40"
    );
    assert_eq!(
        link(root, &format!("{pf}/subsystem")),
        "../../../../bus/pci"
    );
    assert_eq!(
        link(root, "class/net/ens1f0"),
        format!("../../{pf}/net/ens1f0")
    );
    assert_eq!(
        link(root, &format!("{pf}/net/ens1f0/device")),
        "../../../0000:3b:00.0"
    );
    assert_eq!(
        link(root, "bus/pci/drivers/ice/0000:3b:00.0"),
        format!("../../../../{pf}")
    );
    // the vfio-pci VF of the second PF: no netdev, bound to vfio-pci
    let vfio = "devices/pci0000:85/0000:85:00.0/0000:86:01.3";
    assert_eq!(
        link(root, &format!("{vfio}/driver")),
        "../../../../bus/pci/drivers/vfio-pci"
    );
    assert!(!root.join(vfio).join("net").exists());
}

#[test]
fn default_layout_tree_has_kernel_attribute_contents() {
    let fixture = SimFixture::new(|_| Layout::default_layout().unwrap(), false);
    let root = &fixture.root;
    let pf = "bus/pci/devices/0000:3b:00.0";
    assert_eq!(attr(root, &format!("{pf}/vendor")), "0x8086\n");
    assert_eq!(attr(root, &format!("{pf}/device")), "0x1592\n");
    assert_eq!(attr(root, &format!("{pf}/class")), "0x020000\n");
    assert_eq!(attr(root, &format!("{pf}/numa_node")), "0\n");
    assert_eq!(attr(root, &format!("{pf}/sriov_totalvfs")), "64\n");
    assert_eq!(attr(root, &format!("{pf}/sriov_numvfs")), "4\n");
    assert_eq!(attr(root, &format!("{pf}/sriov_offset")), "8\n");
    assert_eq!(attr(root, &format!("{pf}/sriov_stride")), "1\n");
    assert_eq!(attr(root, &format!("{pf}/sriov_vf_device")), "1889\n");
    assert_eq!(
        attr(root, &format!("{pf}/modalias")),
        "pci:v00008086d00001592sv00008086sd00000002bc02sc00i00\n"
    );
    assert_eq!(
        attr(root, &format!("{pf}/net/ens1f0/phys_port_name")),
        "p0\n"
    );
    assert_eq!(attr(root, &format!("{pf}/net/ens1f0/operstate")), "up\n");
    assert_eq!(attr(root, &format!("{pf}/net/ens1f0/type")), "1\n");
    let vf = "bus/pci/devices/0000:86:01.0";
    assert_eq!(attr(root, &format!("{vf}/device")), "0x1889\n");
    assert_eq!(attr(root, &format!("{vf}/numa_node")), "1\n");
    assert_eq!(
        attr(root, &format!("{vf}/net/ens4f0v0/operstate")),
        "down\n"
    );
    assert_eq!(attr(root, &format!("{vf}/net/ens4f0v0/mtu")), "1500\n");
    let mac = attr(root, &format!("{vf}/net/ens4f0v0/address"));
    assert!(
        mac.starts_with("02:") && mac.len() == 18,
        "locally administered MAC, got {mac:?}"
    );
    // VFs carry no SR-IOV capability files of their own
    assert!(!root.join(vf).join("sriov_numvfs").exists());
}

#[test]
fn rdma_functions_get_infiniband_entries() {
    let fixture = SimFixture::new(two_pf_layout, false);
    let root = &fixture.root;
    let pf = "bus/pci/devices/0000:d8:00.0";
    let rdma: Vec<String> = std::fs::read_dir(root.join(pf).join("infiniband"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(rdma, vec!["mlx5_0".to_string()]);
    assert_eq!(
        attr(
            root,
            "bus/pci/devices/0000:d8:00.3/infiniband_verbs/uverbs2/ibdev"
        ),
        "mlx5_2\n"
    );
    assert!(root.join("class/infiniband/mlx5_1").exists());
    // the E810 has no RDMA in this layout
    assert!(!root
        .join("bus/pci/devices/0000:3b:00.0/infiniband")
        .exists());
}

#[test]
fn simulated_tree_follows_the_same_structural_rules_as_the_real_sysfs() {
    let fixture = SimFixture::new(two_pf_layout, false);
    assert_eq!(sysfs_shape::check_pci_tree(&fixture.root), 2 + 4 + 2);
    let fixture = SimFixture::new(|_| Layout::default_layout().unwrap(), false);
    assert_eq!(sysfs_shape::check_pci_tree(&fixture.root), 2 + 8);
    // The same rules hold on this machine's kernel-written tree, which keeps
    // the checks honest (no SR-IOV devices there, but PCI/net/driver links).
    if Path::new("/sys/bus/pci/devices").exists() {
        assert!(sysfs_shape::check_pci_tree(Path::new("/sys")) > 0);
    }
}

#[test]
fn json_layouts_parse_like_toml() {
    let toml = Layout::default_layout().unwrap();
    let json = serde_json::to_string(&toml).unwrap();
    assert_eq!(Layout::parse_json("<test>", &json).unwrap(), toml);
}

#[test]
fn invalid_layouts_are_rejected_with_the_pf_and_key() {
    type Mutation = Box<dyn Fn(&mut Layout)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("exceeds total_vfs", Box::new(|l| l.pfs[0].num_vfs = 65)),
        (
            "netdev name",
            Box::new(|l| l.pfs[0].name = Some("much-too-long-name".into())),
        ),
        (
            "used twice",
            Box::new(|l| l.pfs[1].pci_address = l.pfs[0].pci_address),
        ),
        ("vendor", Box::new(|l| l.pfs[0].vendor = "80861".into())),
        (
            "link_type",
            Box::new(|l| l.pfs[0].link_type = "wifi".into()),
        ),
        ("override for VF 7", Box::new(|l| l.pfs[1].vfs[0].index = 7)),
    ];
    for (expected, mutate) in cases {
        let mut layout = Layout::default_layout().unwrap();
        mutate(&mut layout);
        let dir = tempfile::tempdir().unwrap();
        let err = sim::create(&CreateOptions {
            root: dir.path(),
            instance: "t",
            layout: &layout,
            serve: Serve::TreeOnly,
        })
        .expect_err(expected);
        let message = err.to_string();
        assert!(
            message.contains(expected),
            "{message:?} should mention {expected:?}"
        );
        assert!(message.contains("pf "), "{message:?} should name the PF");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written on error"
        );
    }
    let err = Layout::parse_toml(
        "x.toml",
        "[[pf]]\npci_address = \"0000:3b:00.0\"\nbogus = 1\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
}

#[test]
fn create_refuses_a_non_empty_root_and_the_real_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), "keep me").unwrap();
    let layout = Layout::default_layout().unwrap();
    let err = sim::create(&CreateOptions {
        root: dir.path(),
        instance: "t",
        layout: &layout,
        serve: Serve::TreeOnly,
    })
    .unwrap_err();
    assert!(matches!(err, SimError::NotEmpty(_)), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious")).unwrap(),
        "keep me"
    );
    let err = sim::create(&CreateOptions {
        root: Path::new("/sys"),
        instance: "t",
        layout: &layout,
        serve: Serve::TreeOnly,
    })
    .unwrap_err();
    assert!(matches!(err, SimError::RealSysfs(_)), "{err}");
    assert!(matches!(
        sim::destroy(Path::new("/sys")).unwrap_err(),
        SimError::RealSysfs(_)
    ));
}

#[test]
fn destroy_restores_the_directory_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/sys");
    let layout = Layout::default_layout().unwrap();
    sim::create(&CreateOptions {
        root: &root,
        instance: "t",
        layout: &layout,
        serve: Serve::TreeOnly,
    })
    .unwrap();
    assert!(root.join("bus/pci/devices/0000:3b:00.0").exists());
    assert_eq!(
        sim::destroy(&root).unwrap(),
        sim::Destroyed::Node {
            instance: "t".into()
        }
    );
    // the directories create made (a, a/b, a/b/sys) are gone, the temp dir is as before
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(sim::destroy(&root).unwrap(), sim::Destroyed::Nothing);
}
