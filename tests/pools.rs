//! Discovery and pools on simulated trees built here (no root needed): the
//! pools sriov-network-device-plugin would give, written from its rules.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::base_pf;
use sriov_rs::config;
use sriov_rs::pool::{self, Exclusion};
use sriov_rs::sim::layout::{Layout, VfSpec};
use sriov_rs::sim::{self, CreateOptions};
use sriov_rs::sysfs::SysfsRoot;

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

fn pools_for(layout: &Layout, config_text: &str) -> (pool::Pools, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    sim::create(&CreateOptions {
        root: &root,
        instance: "t",
        layout,
        wire: false,
    })
    .unwrap();
    let devices = pool::discover(&SysfsRoot::new(&root)).unwrap();
    let loaded = config::parse(config_text, config::DEFAULT_RESOURCE_PREFIX).unwrap();
    (pool::build(&loaded.config, &devices, &[]), dir)
}

fn ids(pools: &pool::Pools, name: &str) -> Vec<String> {
    pools
        .pools
        .iter()
        .find(|p| p.resource_name == name)
        .map(|p| p.devices.iter().map(|d| d.id.clone()).collect())
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
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    sim::create(&CreateOptions {
        root: &root,
        instance: "t",
        layout: &mixed_node(),
        wire: false,
    })
    .unwrap();
    let sysfs = SysfsRoot::new(&root);
    std::fs::remove_file(
        sysfs
            .device_dir("0000:3b:01.2".parse().unwrap())
            .join("driver"),
    )
    .unwrap();
    let devices = pool::discover(&sysfs).unwrap();
    let loaded = config::parse(MIXED_CONFIG, "intel.com").unwrap();
    let pools = pool::build(&loaded.config, &devices, &["ens1f1".to_string()]);
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
