//! Discovery and pools on simulated trees built here (no root needed): the
//! pools sriov-network-device-plugin would give, written from its rules.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;
#[path = "common/sysfs_extras.rs"]
mod sysfs_extras;

use common::base_pf;
use serde_json::json;
use sriov_rs::config;
use sriov_rs::devtools::sim::layout::{Layout, VfSpec};
use sriov_rs::devtools::sim::{self, CreateOptions, Serve};
use sriov_rs::pool::{self, Exclusion};
use sriov_rs::sysfs::{ScanOptions, SysfsRoot};
use std::path::PathBuf;
use sysfs_extras::Extras;

fn vf(index: u16, driver: &str) -> VfSpec {
    VfSpec {
        index,
        driver: Some(driver.into()),
        netdev: None,
        has_netdev: None,
    }
}

/// E810 (4 VFs, VF 3 on vfio-pci, NUMA 0), X710 (2 VFs, NUMA -1),
/// ConnectX-6 with RDMA (2 VFs, NUMA 1), ACC100 FEC accelerator (2 VFs on
/// vfio-pci), an E810 port with 0 VFs.
fn mixed_node() -> Layout {
    let mut e810 = base_pf("0000:3b:00.0", "ens1f0");
    e810.num_vfs = 4;
    e810.vfs.push(vf(3, "vfio-pci"));
    let mut x710 = base_pf("0000:5e:00.0", "ens2f0");
    (
        x710.device,
        x710.vf_device,
        x710.driver,
        x710.numa_node,
        x710.num_vfs,
        x710.sriov_offset,
    ) = ("1572".into(), "154c".into(), "i40e".into(), -1, 2, 16);
    let mut cx6 = base_pf("0000:d8:00.0", "ens3f0");
    (cx6.vendor, cx6.device, cx6.vf_device, cx6.subsystem_vendor) =
        ("15b3".into(), "101b".into(), "101c".into(), "15b3".into());
    (
        cx6.driver,
        cx6.vf_driver,
        cx6.numa_node,
        cx6.num_vfs,
        cx6.sriov_offset,
        cx6.rdma,
    ) = ("mlx5_core".into(), "mlx5_core".into(), 1, 2, 2, true);
    let mut acc100 = base_pf("0000:af:00.0", "unused");
    acc100.name = None;
    (
        acc100.device,
        acc100.vf_device,
        acc100.class,
        acc100.driver,
        acc100.vf_driver,
        acc100.num_vfs,
    ) = (
        "0d5c".into(),
        "0d5d".into(),
        "0x120000".into(),
        "pci-pf-stub".into(),
        "vfio-pci".into(),
        2,
    );
    let mut spare = base_pf("0000:3b:00.1", "ens1f1");
    spare.num_vfs = 0;
    Layout {
        pfs: vec![e810, x710, cx6, acc100, spare],
    }
}

const MIXED_CONFIG: &str = r#"{"resourceList": [
  {"resourceName": "intel_netdev", "selectors": {"vendors": ["8086"], "drivers": ["iavf"], "pfNames": ["ens1f0#0-1", "ens2f0"]}},
  {"resourceName": "intel_dpdk", "selectors": [{"drivers": ["vfio-pci"], "devices": ["1889"]}]},
  {"resourceName": "mlx_rdma", "resourcePrefix": "nvidia.com", "selectors": {"vendors": ["15b3"], "IsRdma": true}, "SelectorObj": null},
  {"resourceName": "fec", "deviceType": "accelerator", "selectors": {"devices": ["0d5d"]}},
  {"resourceName": "leftover", "selectors": {"vendors": ["8086"]}},
  {"resourceName": "never", "selectors": {"vendors": ["1af4"], "devices": ["0000"]}}
]}"#;

/// A simulated tree (no wiring) in a temp dir, to add extras to and read.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Node {
    fn new(layout: &Layout) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        sim::create(&CreateOptions {
            root: &root,
            instance: "t",
            layout,
            serve: Serve::TreeOnly,
        })
        .unwrap();
        Node { _dir: dir, root }
    }

    fn sysfs(&self) -> SysfsRoot {
        SysfsRoot::new(&self.root)
    }

    fn extras(&self) -> Extras {
        Extras::new(&self.root)
    }

    /// The pools for `config_text`, with `default_route` netdevs. Reads
    /// every fact, and checks on the way that reading only what the
    /// config's selectors need (what the daemon does) gives the same pools.
    fn pools_with_routes(&self, config_text: &str, default_route: &[String]) -> pool::Pools {
        let loaded = config::parse(config_text, config::DEFAULT_RESOURCE_PREFIX).unwrap();
        let all = pool::discover(&self.sysfs()).unwrap();
        let pools = pool::build(&loaded.config, all, default_route);
        let needed = pool::discover_for(&self.sysfs(), &loaded.config).unwrap();
        let lean = pool::build(&loaded.config, needed, default_route);
        let shape = |p: &pool::Pools| -> Vec<(String, Vec<String>)> {
            p.pools
                .iter()
                .map(|p| {
                    (
                        p.resource_name.clone(),
                        p.devices.iter().map(|d| d.id.to_string()).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(
            shape(&pools),
            shape(&lean),
            "discover_for must give discover's pools"
        );
        assert_eq!(pools.excluded, lean.excluded);
        pools
    }

    fn pools(&self, config_text: &str) -> pool::Pools {
        self.pools_with_routes(config_text, &[])
    }
}

fn pools_for(layout: &Layout, config_text: &str) -> (pool::Pools, Node) {
    let node = Node::new(layout);
    (node.pools(config_text), node)
}

fn device<'p>(pools: &'p pool::Pools, name: &str, id: &str) -> &'p pool::PoolDevice {
    pools
        .pools
        .iter()
        .find(|p| p.resource_name == name)
        .and_then(|p| p.devices.iter().find(|d| d.id == id))
        .unwrap_or_else(|| panic!("{id} not in {name}"))
}

fn ids(pools: &pool::Pools, name: &str) -> Vec<String> {
    pools
        .pools
        .iter()
        .find(|p| p.resource_name == name)
        .map(|p| p.devices.iter().map(|d| d.id.to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn mixed_node_pools_follow_upstreams_rules() {
    let (pools, _dir) = pools_for(&mixed_node(), MIXED_CONFIG);
    // 1. iavf VFs of ens1f0 with index 0-1, and every VF of ens2f0 (X710, offset 16)
    assert_eq!(
        ids(&pools, "intel.com/intel_netdev"),
        [
            "0000:3b:01.0",
            "0000:3b:01.1",
            "0000:5e:02.0",
            "0000:5e:02.1"
        ]
    );
    // 2. the vfio-pci E810 VF; the ACC100 VFs are vfio-pci too but device 0d5d
    assert_eq!(ids(&pools, "intel.com/intel_dpdk"), ["0000:3b:01.3"]);
    // 3. RDMA VFs; the ConnectX PF has VFs enabled, so it is excluded
    assert_eq!(
        ids(&pools, "nvidia.com/mlx_rdma"),
        ["0000:d8:00.2", "0000:d8:00.3"]
    );
    // 4. accelerators match on base class 0x12
    assert_eq!(
        ids(&pools, "intel.com/fec"),
        ["0000:af:01.0", "0000:af:01.1"]
    );
    // 5. first match wins: only what is left; the 0-VF PF is advertised like any device
    assert_eq!(
        ids(&pools, "intel.com/leftover"),
        ["0000:3b:00.1", "0000:3b:01.2"]
    );
    // 6. empty pools are not advertised
    assert_eq!(pools.pools.len(), 5);
    let excluded: Vec<String> = pools
        .excluded
        .iter()
        .map(|e| e.address.to_string())
        .collect();
    assert_eq!(
        excluded,
        [
            "0000:3b:00.0",
            "0000:5e:00.0",
            "0000:af:00.0",
            "0000:d8:00.0"
        ]
    );
    assert!(pools
        .excluded
        .iter()
        .all(|e| matches!(e.reason, Exclusion::PfWithVfs { .. })));
}

#[test]
fn pool_devices_carry_what_the_kubelet_server_needs() {
    let (pools, _dir) = pools_for(&mixed_node(), MIXED_CONFIG);
    let find = |name: &str, id: &str| {
        pools
            .pools
            .iter()
            .find(|p| p.resource_name == name)
            .unwrap()
            .devices
            .iter()
            .find(|d| d.id == id)
            .unwrap()
            .clone()
    };
    let vf = find("intel.com/intel_netdev", "0000:3b:01.1");
    assert_eq!(
        (
            vf.pf_name.as_deref(),
            vf.pf_pci_address.as_deref(),
            vf.vf_index,
            vf.numa_node,
            vf.netdev.as_deref(),
            vf.link_type.as_deref()
        ),
        (
            Some("ens1f0"),
            Some("0000:3b:00.0"),
            Some(1),
            Some(0),
            Some("ens1f0v1"),
            Some("ether")
        )
    );
    assert_eq!(
        find("intel.com/intel_netdev", "0000:5e:02.0").numa_node,
        None,
        "NUMA -1 means none"
    );
    let dpdk = find("intel.com/intel_dpdk", "0000:3b:01.3");
    let group = dpdk.iommu_group.unwrap();
    assert_eq!(
        dpdk.device_nodes,
        ["/dev/vfio/vfio".to_string(), format!("/dev/vfio/{group}")]
    );
    assert_eq!(
        dpdk.link_type.as_deref(),
        Some("ether"),
        "a vfio-pci VF takes its PF's link type"
    );
    assert_eq!(
        find("nvidia.com/mlx_rdma", "0000:d8:00.3").rdma_devices,
        ["mlx5_2".to_string()]
    );
}

#[test]
fn unbound_devices_and_default_route_netdevs_never_join_netdevice_pools() {
    let node = Node::new(&mixed_node());
    std::fs::remove_file(
        node.sysfs()
            .device_dir("0000:3b:01.2".parse().unwrap())
            .join("driver"),
    )
    .unwrap();
    let pools = node.pools_with_routes(MIXED_CONFIG, &["ens1f1".to_string()]);
    assert!(
        ids(&pools, "intel.com/leftover").is_empty(),
        "unbound VF and default-route PF both left out"
    );
    assert!(pools.excluded.iter().any(|e| e.reason
        == Exclusion::DefaultRoute {
            netdev: "ens1f1".into()
        }));
}

#[test]
fn eight_pfs_of_256_vfs_are_discovered_and_pooled() {
    let pfs = (0..8)
        .map(|n| {
            let mut pf = base_pf(
                &format!("0000:{:02x}:00.0", 0x10 * (n + 1)),
                &format!("ens{}f0", n + 1),
            );
            (pf.total_vfs, pf.num_vfs) = (256, 256);
            pf
        })
        .collect();
    let config = r#"{"resourceList": [{"resourceName": "all_vfs", "selectors": {"devices": ["1889"]}},
                                        {"resourceName": "first_pf_low", "selectors": {"pfNames": ["ens1f0#0-9"]}}]}"#;
    let (pools, _dir) = pools_for(&Layout { pfs }, config);
    assert_eq!(ids(&pools, "intel.com/all_vfs").len(), 2048);
    assert!(
        ids(&pools, "intel.com/first_pf_low").is_empty(),
        "first match wins: all VFs already taken"
    );
    assert_eq!(pools.excluded.len(), 8);
}

fn connectx6(address: &str, name: &str, num_vfs: u16) -> sriov_rs::devtools::sim::layout::PfSpec {
    let mut pf = base_pf(address, name);
    (pf.vendor, pf.device, pf.vf_device, pf.subsystem_vendor) =
        ("15b3".into(), "101b".into(), "101c".into(), "15b3".into());
    (
        pf.driver,
        pf.vf_driver,
        pf.numa_node,
        pf.num_vfs,
        pf.sriov_offset,
    ) = ("mlx5_core".into(), "mlx5_core".into(), 1, num_vfs, 2);
    pf.rdma = true;
    (pf.phys_port_name, pf.phys_switch_id) = (None, None);
    pf
}

/// A ConnectX-6 PF in switchdev mode (uplink `ens3f0`, port `p0`, plus a VF
/// representor whose name sorts first) with 2 VFs and scalable functions
/// 0, 1, 5 and 88 (88 with RDMA), the aux devices mlx5 puts next to them
/// (`eth`, `rdma`, no sfnum) and one nested under an SF; and a ConnectX-5
/// PF in legacy mode (no switch ID) that has an SF all the same.
fn sf_node() -> Node {
    let mut cx6 = connectx6("0000:d8:00.0", "ens3f0", 2);
    (cx6.phys_port_name, cx6.phys_switch_id) = (Some("p0".into()), Some("b8cef60300a1b2c3".into()));
    let mut cx5 = connectx6("0000:af:00.0", "ens2f0", 0);
    (cx5.device, cx5.vf_device, cx5.rdma) = ("1017".into(), "1018".into(), false);
    let node = Node::new(&Layout {
        pfs: vec![cx6, cx5],
    });
    let x = node.extras();
    let pf = x.pci_dir("0000:d8:00.0");
    let representor = x.netdev(&pf, "enp216s0pf0vf0", 1);
    x.switch_port(&representor, "b8cef60300a1b2c3", "pf0vf0");
    x.aux_device(&pf, "mlx5_core.eth.0", None, "mlx5_core.eth");
    x.aux_device(&pf, "mlx5_core.rdma.0", None, "mlx5_ib.rdma");
    for (id, sfnum) in [(2, 0), (3, 1), (4, 88), (6, 5)] {
        let sf = x.aux_device(
            &pf,
            &format!("mlx5_core.sf.{id}"),
            Some(sfnum),
            "mlx5_core.sf",
        );
        x.netdev(&sf, &format!("ens3f0s{sfnum}"), 1);
        if sfnum == 88 {
            x.rdma_device(&sf, "mlx5_8");
        }
        if sfnum == 0 {
            x.aux_device(&sf, "mlx5_core.eth.2", None, "mlx5_core.eth");
        }
    }
    let legacy = x.pci_dir("0000:af:00.0");
    let sf = x.aux_device(&legacy, "mlx5_core.sf.7", Some(0), "mlx5_core.sf");
    x.netdev(&sf, "ens2f0s0", 1);
    node
}

#[test]
fn discovery_lists_pci_functions_by_address_then_the_sfs() {
    // discovery drains the scan's list last first and turns it back: the
    // order must come out as the scan's, whatever the pools do with it
    let ids: Vec<String> = pool::discover(&sf_node().sysfs())
        .unwrap()
        .iter()
        .map(|d| d.facts.id.to_string())
        .collect();
    let functions = ids.iter().take_while(|id| id.starts_with("0000:")).count();
    assert!(functions > 2, "{ids:?}");
    assert!(ids[..functions].is_sorted(), "{ids:?}");
    let mut sfs = ids[functions..].to_vec();
    sfs.sort();
    assert_eq!(
        sfs,
        [
            "mlx5_core.sf.2",
            "mlx5_core.sf.3",
            "mlx5_core.sf.4",
            "mlx5_core.sf.6"
        ],
        "only SFs after the PCI functions: {ids:?}"
    );
}

#[test]
fn scalable_functions_join_aux_pools_by_sf_number() {
    let pools = sf_node().pools(
        r#"{"resourceList": [
      {"resourceName": "sf_first_two", "deviceType": "auxNetDevice", "selectors": {"auxTypes": ["sf"], "pfNames": ["ens3f0#0-1"]}},
      {"resourceName": "sf_rdma", "resourcePrefix": "nvidia.com", "deviceType": "auxNetDevice", "selectors": [{"auxTypes": ["sf"], "isRdma": true}]},
      {"resourceName": "sf_rest", "deviceType": "auxNetDevice", "selectors": {"auxTypes": ["sf"], "rootDevices": ["0000:d8:00.0"], "vendors": ["15b3"], "devices": ["101b"], "drivers": ["mlx5_core"], "linkTypes": ["ether"]}},
      {"resourceName": "cx6_vfs", "selectors": {"vendors": ["15b3"], "pfNames": ["ens3f0"]}},
      {"resourceName": "anything_aux", "deviceType": "auxNetDevice", "selectors": {"auxTypes": ["sf", "eth", "rdma"]}}
    ]}"#,
    );
    // the SF number is the index of `#` ranges; the PF name is the uplink
    // representor, not the first netdev of the PF
    assert_eq!(
        ids(&pools, "intel.com/sf_first_two"),
        ["mlx5_core.sf.2", "mlx5_core.sf.3"]
    );
    assert_eq!(ids(&pools, "nvidia.com/sf_rdma"), ["mlx5_core.sf.4"]);
    // vendor, device and driver are the parent PCI function's
    assert_eq!(ids(&pools, "intel.com/sf_rest"), ["mlx5_core.sf.6"]);
    // aux devices never join netDevice pools; VFs see the uplink as PF name
    assert_eq!(
        ids(&pools, "intel.com/cx6_vfs"),
        ["0000:d8:00.2", "0000:d8:00.3"]
    );
    // not devices at all: aux devices without sfnum (eth, rdma), the one
    // nested under an SF, and the SF of a PF without a switchdev uplink
    assert!(ids(&pools, "intel.com/anything_aux").is_empty());
    assert_eq!(pools.pools.len(), 4);

    let sf = device(&pools, "nvidia.com/sf_rdma", "mlx5_core.sf.4");
    assert_eq!(sf.pci_address, "0000:d8:00.0");
    assert_eq!(sf.aux_type.as_deref(), Some("sf"));
    assert_eq!(
        (
            sf.pf_name.as_deref(),
            sf.pf_pci_address.as_deref(),
            sf.vf_index
        ),
        (Some("ens3f0"), Some("0000:d8:00.0"), Some(88))
    );
    assert_eq!(
        (sf.driver.as_deref(), sf.numa_node, sf.netdev.as_deref()),
        (Some("mlx5_core"), Some(1), Some("ens3f0s88"))
    );
    assert_eq!(sf.link_type.as_deref(), Some("ether"));
    assert_eq!(sf.rdma_devices, ["mlx5_8".to_string()]);
    assert!(sf.device_nodes.is_empty());
    // SFs are never excluded, though their PF has VFs enabled
    assert!(pools
        .excluded
        .iter()
        .all(|e| !e.address.to_string().contains("sf")));
}

#[test]
fn an_sf_needs_its_pf_in_switchdev_mode() {
    let node = sf_node();
    let sf7 = |node: &Node| {
        pool::discover(&node.sysfs())
            .unwrap()
            .into_iter()
            .find(|d| d.facts.id == "mlx5_core.sf.7")
    };
    assert!(sf7(&node).is_none(), "ens2f0 has no switch ID");
    let x = node.extras();
    x.switch_port(
        &x.pci_dir("0000:af:00.0").join("net/ens2f0"),
        "b8cef60300d4e5f6",
        "p0",
    );
    let found = sf7(&node).expect("an uplink now");
    assert_eq!(
        (
            found.facts.pf_name.as_deref(),
            found.facts.vf_index,
            found.facts.aux_type.as_deref()
        ),
        (Some("ens2f0"), Some(0), Some("sf"))
    );
}

#[test]
fn vfs_of_a_switchdev_pf_are_named_after_the_uplink() {
    let node = sf_node();
    let devices = pool::discover(&node.sysfs()).unwrap();
    let vf = devices
        .iter()
        .find(|d| d.facts.id == "0000:d8:00.2")
        .unwrap();
    assert_eq!(vf.facts.pf_name.as_deref(), Some("ens3f0"));
    // the PF lists both netdevs, the representor first
    let pf = devices
        .iter()
        .find(|d| d.facts.id == "0000:d8:00.0")
        .unwrap();
    assert_eq!(pf.device.netdevs, ["enp216s0pf0vf0", "ens3f0"]);
}

#[test]
fn vdpa_devices_select_vfs_by_their_bus_driver() {
    let node = Node::new(&Layout {
        pfs: vec![connectx6("0000:3b:00.0", "ens1f0", 4)],
    });
    let x = node.extras();
    x.vdpa_device(&x.pci_dir("0000:3b:00.2"), "vdpa0", Some("vhost_vdpa"), 0);
    x.vdpa_device(&x.pci_dir("0000:3b:00.3"), "vdpa1", Some("virtio_vdpa"), 1);
    x.vdpa_device(&x.pci_dir("0000:3b:00.4"), "vdpa2", None, 2);
    let pools = node.pools(
        r#"{"resourceList": [
      {"resourceName": "vhost", "selectors": {"vdpaType": "vhost"}},
      {"resourceName": "virtio", "selectors": [{"vendors": ["15b3"], "vdpaType": "virtio"}]},
      {"resourceName": "rest", "selectors": {"vendors": ["15b3"]}}
    ]}"#,
    );
    assert_eq!(ids(&pools, "intel.com/vhost"), ["0000:3b:00.2"]);
    assert_eq!(ids(&pools, "intel.com/virtio"), ["0000:3b:00.3"]);
    // an unbound vDPA device has no type: its VF is like any other
    assert_eq!(
        ids(&pools, "intel.com/rest"),
        ["0000:3b:00.4", "0000:3b:00.5"]
    );
    let vhost = device(&pools, "intel.com/vhost", "0000:3b:00.2");
    let vdpa = vhost.vdpa.as_ref().unwrap();
    assert_eq!(
        (
            vdpa.name.as_str(),
            vdpa.driver.as_deref(),
            vdpa.vdpa_type,
            vdpa.device_node.as_deref()
        ),
        (
            "vdpa0",
            Some("vhost_vdpa"),
            Some("vhost"),
            Some("/dev/vhost-vdpa-0")
        )
    );
    let virtio = device(&pools, "intel.com/virtio", "0000:3b:00.3");
    assert_eq!(virtio.vdpa.as_ref().unwrap().device_node, None);
}

#[test]
fn infiniband_vfs_are_selected_by_their_default_pkey() {
    let mut ib = connectx6("0000:5e:00.0", "ibs1f0", 3);
    ib.link_type = "infiniband".into();
    let mut roce = connectx6("0000:86:00.0", "ens4f0", 1);
    (roce.device, roce.vf_device) = ("1017".into(), "1018".into());
    let node = Node::new(&Layout {
        pfs: vec![ib, roce],
    });
    let x = node.extras();
    for (vf, pkey) in [
        ("0000:5e:00.2", "0x8001"),
        ("0000:5e:00.3", "0xffff"),
        ("0000:5e:00.4", "0x7fff"),
        // RoCE ports have a P_Key table too; upstream only reads it on infiniband links
        ("0000:86:00.2", "0xffff"),
    ] {
        let rdma = node
            .sysfs()
            .pci_device(vf.parse().unwrap())
            .unwrap()
            .rdma_devices;
        let dir = x.pci_dir(vf).join("infiniband").join(&rdma[0]);
        x.pkey(&dir, pkey);
    }
    let pools = node.pools(
        r#"{"resourceList": [
      {"resourceName": "tenant_a", "selectors": {"pKeys": ["0x8001"]}},
      {"resourceName": "default_partition", "selectors": {"linkTypes": ["infiniband"], "pKeys": ["0xFFFF", "0x7fff"]}},
      {"resourceName": "roce_by_pkey", "selectors": {"pKeys": ["0xffff"]}},
      {"resourceName": "roce", "selectors": {"devices": ["1018"], "isRdma": true}}
    ]}"#,
    );
    assert_eq!(ids(&pools, "intel.com/tenant_a"), ["0000:5e:00.2"]);
    assert_eq!(
        ids(&pools, "intel.com/default_partition"),
        ["0000:5e:00.3", "0000:5e:00.4"]
    );
    assert!(ids(&pools, "intel.com/roce_by_pkey").is_empty());
    assert_eq!(ids(&pools, "intel.com/roce"), ["0000:86:00.2"]);
    let vf = device(&pools, "intel.com/tenant_a", "0000:5e:00.2");
    assert_eq!(
        (vf.link_type.as_deref(), vf.pkey.as_deref()),
        (Some("infiniband"), Some("0x8001"))
    );
}

#[test]
fn acpi_indexes_select_functions_that_have_one() {
    let mut onboard = base_pf("0000:19:00.0", "eno1");
    (onboard.num_vfs, onboard.acpi_index) = (0, Some(101));
    let mut vfs = base_pf("0000:3b:00.0", "ens1f0");
    vfs.num_vfs = 2;
    let node = Node::new(&Layout {
        pfs: vec![onboard, vfs],
    });
    let x = node.extras();
    std::fs::write(
        node.root.join(x.pci_dir("0000:3b:01.1")).join("acpi_index"),
        "7\n",
    )
    .unwrap();
    let pools = node.pools(
        r#"{"resourceList": [
      {"resourceName": "onboard", "selectors": {"acpiIndexes": ["101"]}},
      {"resourceName": "seventh", "selectors": {"acpiIndexes": ["7", "8"]}},
      {"resourceName": "rest", "selectors": {"drivers": ["iavf"]}}
    ]}"#,
    );
    assert_eq!(ids(&pools, "intel.com/onboard"), ["0000:19:00.0"]);
    assert_eq!(ids(&pools, "intel.com/seventh"), ["0000:3b:01.1"]);
    assert_eq!(ids(&pools, "intel.com/rest"), ["0000:3b:01.0"]);
}

#[test]
fn connectx5_rdma_vfs_and_numa_minus_one() {
    let mut cx5 = connectx6("0000:12:00.0", "ens5f0", 3);
    (cx5.device, cx5.vf_device, cx5.numa_node) = ("1017".into(), "1018".into(), -1);
    cx5.vfs.push(vf(2, "vfio-pci"));
    let (pools, _node) = pools_for(
        &Layout { pfs: vec![cx5] },
        r#"{"resourceList": [
      {"resourceName": "cx5_rdma", "selectors": {"devices": ["1018"], "isRdma": true}},
      {"resourceName": "cx5_dpdk", "selectors": {"devices": ["1018"], "drivers": ["vfio-pci"]}}
    ]}"#,
    );
    // the vfio-pci VF has no netdev, hence no RDMA device
    assert_eq!(
        ids(&pools, "intel.com/cx5_rdma"),
        ["0000:12:00.2", "0000:12:00.3"]
    );
    assert_eq!(ids(&pools, "intel.com/cx5_dpdk"), ["0000:12:00.4"]);
    let rdma = device(&pools, "intel.com/cx5_rdma", "0000:12:00.3");
    assert_eq!((rdma.numa_node, rdma.rdma_devices.len()), (None, 1));
    let dpdk = device(&pools, "intel.com/cx5_dpdk", "0000:12:00.4");
    let group = dpdk
        .iommu_group
        .expect("vfio-pci VFs carry their IOMMU group");
    assert_eq!(
        dpdk.device_nodes,
        ["/dev/vfio/vfio".to_string(), format!("/dev/vfio/{group}")]
    );
}

/// `sriovctl inventory` end to end on a built tree: the JSON contract,
/// the PF table, and a refused config.
#[test]
fn inventory_shows_pfs_vfs_and_pools_and_refuses_bad_configs() {
    let node = Node::new(&mixed_node());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, MIXED_CONFIG).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sriovctl"))
            .arg("--sysfs-root")
            .arg(&node.root)
            .arg("inventory")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--config-file",
        config.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool_names: Vec<&str> = json["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["resourceName"].as_str().unwrap())
        .collect();
    assert_eq!(
        pool_names,
        [
            "intel.com/intel_netdev",
            "intel.com/intel_dpdk",
            "nvidia.com/mlx_rdma",
            "intel.com/fec",
            "intel.com/leftover"
        ]
    );
    let fec: Vec<&str> = json["pools"][3]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(fec, ["0000:af:01.0", "0000:af:01.1"]);
    let e810 = json["pfs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pf| pf["pciAddress"] == "0000:3b:00.0")
        .unwrap();
    assert_eq!(
        (
            &e810["name"],
            &e810["numVfs"],
            &e810["totalVfs"],
            &e810["vfsInPools"]
        ),
        (&json!("ens1f0"), &json!(4), &json!(64), &json!(4))
    );
    assert_eq!(e810["vfs"][3]["pool"], "intel.com/intel_dpdk");
    assert_eq!(e810["vfs"][3]["driver"], "vfio-pci");
    assert!(
        e810["model"].as_str().unwrap().contains("E810"),
        "{}",
        e810["model"]
    );

    let table = run(&["--config-file", config.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("PF ens1f0 0000:3b:00.0"), "{text}");
    assert!(text.contains("VFs 4/64 enabled, 4 in pools"), "{text}");
    assert!(text.contains("intel.com/fec"), "{text}");

    std::fs::write(
        &config,
        r#"{"resourceList": [{"resourceName": "bad", "selectors": {"pfNames": ["ens1f0#3-1"]}}]}"#,
    )
    .unwrap();
    let refused = run(&["--config-file", config.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("resource 0 (\"bad\")") && err.contains("selectors.pfNames[0]"),
        "{err}"
    );
}

/// The shipped ConfigMap on the simulator's built-in node: what a first
/// deployment on the simulated node advertises.
#[test]
fn shipped_config_on_the_simulated_node() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/configmap.yaml"),
    )
    .unwrap();
    let configmap: serde_yaml_ng::Value = serde_yaml_ng::from_str(&manifest).unwrap();
    let config = configmap["data"]["config.json"].as_str().unwrap();
    let (pools, _node) = pools_for(&Layout::default_layout().unwrap(), config);
    // two E810 ports, 4 VFs each (iavf) but VF 3 of the second on vfio-pci;
    // both PFs have VFs enabled, so they are excluded
    assert_eq!(
        ids(&pools, "intel.com/intel_sriov_netdevice"),
        [
            "0000:3b:01.0",
            "0000:3b:01.1",
            "0000:3b:01.2",
            "0000:3b:01.3",
            "0000:86:01.0",
            "0000:86:01.1",
            "0000:86:01.2"
        ]
    );
    assert_eq!(ids(&pools, "intel.com/intel_sriov_dpdk"), ["0000:86:01.3"]);
    assert_eq!(pools.excluded.len(), 2);
}

#[test]
fn root_devices_and_pf_names_with_ranges_on_a_built_tree() {
    let mut e810 = base_pf("0000:3b:00.0", "ens1f0");
    e810.num_vfs = 6;
    let (pools, _node) = pools_for(
        &Layout { pfs: vec![e810] },
        r#"{"resourceList": [
      {"resourceName": "by_address", "selectors": {"rootDevices": ["0000:3B:00.0#1,3"]}},
      {"resourceName": "by_name", "selectors": {"pfNames": ["ENS1F0#0-1"]}},
      {"resourceName": "listed", "selectors": [{"pfNames": ["ens1f0#4"]}, {"rootDevices": ["0000:3b:00.0#2-5"]}]}
    ]}"#,
    );
    // rootDevices and pfNames compare ignoring case, as upstream
    assert_eq!(
        ids(&pools, "intel.com/by_address"),
        ["0000:3b:01.1", "0000:3b:01.3"]
    );
    // VF 1 is already taken: first match wins
    assert_eq!(ids(&pools, "intel.com/by_name"), ["0000:3b:01.0"]);
    // selector by selector: VF 4 through the first, then 2 and 5 through the second
    assert_eq!(
        ids(&pools, "intel.com/listed"),
        ["0000:3b:01.4", "0000:3b:01.2", "0000:3b:01.5"]
    );
    let listed = &pools.pools[2].devices;
    assert_eq!(
        listed.iter().map(|d| d.selector).collect::<Vec<_>>(),
        [0, 1, 1]
    );
}

#[test]
fn a_broken_aux_device_or_pkey_is_reported_and_discovery_goes_on() {
    let node = sf_node();
    let x = node.extras();
    let sf3 = node
        .root
        .join(x.pci_dir("0000:d8:00.0"))
        .join("mlx5_core.sf.3");
    std::fs::write(sf3.join("sfnum"), "one\n").unwrap();
    let vf = x.pci_dir("0000:d8:00.2");
    let rdma = node
        .sysfs()
        .pci_device("0000:d8:00.2".parse().unwrap())
        .unwrap()
        .rdma_devices;
    x.pkey(&vf.join("infiniband").join(&rdma[0]), "partition");
    let scan = node.sysfs().scan(&ScanOptions::ALL).unwrap();
    let problems: Vec<String> = scan
        .unreadable
        .iter()
        .map(|(address, error)| format!("{address}: {error}"))
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("mlx5_core.sf.3/sfnum"), "{problems:?}");
    assert!(problems[1].contains("ports/1/pkeys/0"), "{problems:?}");
    let names: Vec<&str> = scan.aux_devices.iter().map(|a| a.name.as_str()).collect();
    assert!(!names.contains(&"mlx5_core.sf.3") && names.contains(&"mlx5_core.sf.2"));
    assert!(scan
        .functions
        .iter()
        .any(|f| f.address.to_string() == "0000:d8:00.2"));
    let pools = node.pools(
        r#"{"resourceList": [{"resourceName": "sfs", "deviceType": "auxNetDevice", "selectors": {"auxTypes": ["sf"]}}]}"#,
    );
    assert_eq!(
        ids(&pools, "intel.com/sfs"),
        ["mlx5_core.sf.2", "mlx5_core.sf.4", "mlx5_core.sf.6"]
    );
}

#[test]
fn inventory_output_cut_short_by_its_reader_is_not_an_error() {
    let node = Node::new(&mixed_node());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sriovctl"))
        .arg("--sysfs-root")
        .arg(&node.root)
        .arg("inventory")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // like `| head -0`: close the pipe without reading
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
