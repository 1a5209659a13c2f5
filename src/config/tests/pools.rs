//! Pool assignment across resources. Expected pools are written from upstream's rules, not
//! from our output.

use super::*;
use crate::config::{assign_pools, Config};

/// A node with an E810 (8 VFs: 0-3 iavf, 4-7 vfio-pci, plus one unbound VF), an X710 (4 iavf
/// VFs), a ConnectX-5 (4 RDMA VFs) and an ACC100 FEC card (2 VFs on vfio-pci), sorted by PCI
/// address as discovery yields them.
fn node() -> Vec<DeviceFacts> {
    let e810 = ("ens1f0", "0000:3b:00.0");
    let mut devices = vfs_of(e810, "0000:3b", 1, E810_VF, "iavf", 8);
    for d in &mut devices[4..] {
        d.driver = Some("vfio-pci".into());
        d.link_type = Some("ether".into());
    }
    devices.push(DeviceFacts {
        driver: None,
        ..vf("0000:3b:02.0", E810_VF, "iavf", e810, 8)
    });

    // mlx5 puts the VFs right after the PF functions: 5e:00.2 is VF 0.
    let cx5 = ("ens2f0np0", "0000:5e:00.0");
    for n in 0..4u32 {
        let mut d = vf(
            &format!("0000:5e:00.{}", n + 2),
            CX5_VF,
            "mlx5_core",
            cx5,
            n,
        );
        d.is_rdma = true;
        devices.push(d);
    }

    devices.extend(vfs_of(
        ("ens3f0", "0000:86:00.0"),
        "0000:86",
        2,
        X710_VF,
        "iavf",
        4,
    ));

    for n in 0..2u32 {
        let pci = format!("0000:b2:00.{n}");
        devices.push(DeviceFacts {
            driver: Some("vfio-pci".into()),
            pf_pci_address: Some("0000:b1:00.0".into()),
            vf_index: Some(n),
            ..DeviceFacts::pci(&pci, 0x8086, 0x0d5d, ACCELERATOR)
        });
    }
    devices
}

fn config(text: &str) -> Config {
    load_ok(text).config
}

/// (full resource name, member IDs) for each pool, for compact assertions.
fn pools_of(config: &Config, devices: &[DeviceFacts]) -> Vec<(String, Vec<String>)> {
    assign_pools(&config.resources, devices)
        .into_iter()
        .map(|p| {
            let name = config.resources[p.resource].full_name();
            (name, p.device_ids().into_iter().map(String::from).collect())
        })
        .collect()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn mixed_node_pools_follow_first_match_in_config_order() {
    let cfg = config(
        r#"{"resourceList": [
          {"resourceName": "intel_dpdk", "selectors": {"pfNames": ["ens1f0#4-7"], "drivers": ["vfio-pci"]}},
          {"resourceName": "intel_kernel", "selectors": {"vendors": ["8086"], "drivers": ["iavf"]}},
          {"resourceName": "intel_rest", "selectors": {"vendors": ["8086"]}},
          {"resourceName": "mlnx_rdma", "resourcePrefix": "mellanox.com", "selectors": [
              {"devices": ["1018"], "isRdma": true, "rootDevices": ["0000:5e:00.0#2-3"]},
              {"vendors": ["15b3"], "needVhostNet": true}]},
          {"resourceName": "fec", "deviceType": "accelerator", "selectors": {"vendors": ["8086"], "devices": ["0d5d"]}}
        ]}"#,
    );
    let devices = node();
    let pools = pools_of(&cfg, &devices);
    let expected = vec![
        (
            "intel.com/intel_dpdk".to_string(),
            ids(&[
                "0000:3b:01.4",
                "0000:3b:01.5",
                "0000:3b:01.6",
                "0000:3b:01.7",
            ]),
        ),
        (
            "intel.com/intel_kernel".to_string(),
            ids(&[
                "0000:3b:01.0",
                "0000:3b:01.1",
                "0000:3b:01.2",
                "0000:3b:01.3",
                "0000:86:02.0",
                "0000:86:02.1",
                "0000:86:02.2",
                "0000:86:02.3",
            ]),
        ),
        // intel_rest: everything Intel is taken, the unbound VF is never a candidate, and the
        // FEC VFs are not network devices, so the pool is empty and not listed.
        (
            "mellanox.com/mlnx_rdma".to_string(),
            // Selector by selector: VFs 2-3 through the first, then 0-1 through the second.
            ids(&[
                "0000:5e:00.4",
                "0000:5e:00.5",
                "0000:5e:00.2",
                "0000:5e:00.3",
            ]),
        ),
        (
            "intel.com/fec".to_string(),
            ids(&["0000:b2:00.0", "0000:b2:00.1"]),
        ),
    ];
    assert_eq!(pools, expected);

    // Which selector took each device decides the per-selector extras.
    let assigned = assign_pools(&cfg.resources, &devices);
    let mlnx = &assigned[2];
    let by_selector: Vec<usize> = mlnx.members.iter().map(|m| m.selector).collect();
    assert_eq!(by_selector, vec![0, 0, 1, 1]);
    assert_eq!(devices[mlnx.members[0].device].pci_address, "0000:5e:00.4");
}

#[test]
fn swapping_two_resources_moves_the_shared_devices() {
    let devices = node();
    let kernel_first = config(
        r#"{"resourceList": [
          {"resourceName": "intel_any", "selectors": {"vendors": ["8086"], "pfNames": ["ens1f0"]}},
          {"resourceName": "intel_vfio", "selectors": {"drivers": ["vfio-pci"], "pfNames": ["ens1f0"]}}]}"#,
    );
    let pools = pools_of(&kernel_first, &devices);
    assert_eq!(pools.len(), 1, "the second pool gets nothing: {pools:?}");
    assert_eq!(pools[0].0, "intel.com/intel_any");
    assert_eq!(pools[0].1.len(), 8);

    let vfio_first = config(
        r#"{"resourceList": [
          {"resourceName": "intel_vfio", "selectors": {"drivers": ["vfio-pci"], "pfNames": ["ens1f0"]}},
          {"resourceName": "intel_any", "selectors": {"vendors": ["8086"], "pfNames": ["ens1f0"]}}]}"#,
    );
    let pools = pools_of(&vfio_first, &devices);
    assert_eq!(
        pools,
        vec![
            (
                "intel.com/intel_vfio".to_string(),
                ids(&[
                    "0000:3b:01.4",
                    "0000:3b:01.5",
                    "0000:3b:01.6",
                    "0000:3b:01.7"
                ])
            ),
            (
                "intel.com/intel_any".to_string(),
                ids(&[
                    "0000:3b:01.0",
                    "0000:3b:01.1",
                    "0000:3b:01.2",
                    "0000:3b:01.3"
                ])
            ),
        ]
    );
}

#[test]
fn a_device_matched_by_two_selectors_of_one_resource_is_listed_once() {
    let cfg = config(&one_resource(
        r#"[{"pfNames": ["ens3f0"]}, {"devices": ["154c"]}]"#,
    ));
    let pools = pools_of(&cfg, &node());
    assert_eq!(pools.len(), 1);
    assert_eq!(
        pools[0].1,
        ids(&[
            "0000:86:02.0",
            "0000:86:02.1",
            "0000:86:02.2",
            "0000:86:02.3"
        ])
    );
}

#[test]
fn aux_devices_only_join_aux_pools_and_keep_their_own_ids() {
    let parent = DeviceFacts {
        driver: Some("mlx5_core".into()),
        link_type: Some("ether".into()),
        ..DeviceFacts::pci("0000:03:00.0", 0x15b3, 0xa2d6, ETHERNET)
    };
    let sfs: Vec<DeviceFacts> = (1..=7u32)
        .map(|n| DeviceFacts {
            id: compact_str::format_compact!("mlx5_core.sf.{n}"),
            pf_name: Some("p0".into()),
            pf_pci_address: Some("0000:03:00.0".into()),
            vf_index: Some(n),
            aux_type: Some("sf".into()),
            ..parent.clone()
        })
        .collect();
    let mut devices = vec![parent];
    devices.extend(sfs);

    let cfg = config(
        r#"{"resourceList": [
          {"resourceName": "bf2_sf", "resourcePrefix": "nvidia.com", "deviceType": "auxNetDevice",
           "selectors": [{"vendors": ["15b3"], "pfNames": ["p0#1-3,6"], "auxTypes": ["sf"]}]},
          {"resourceName": "bf2_pf", "resourcePrefix": "nvidia.com", "selectors": {"vendors": ["15b3"]}}]}"#,
    );
    let pools = pools_of(&cfg, &devices);
    assert_eq!(
        pools,
        vec![
            (
                "nvidia.com/bf2_sf".to_string(),
                ids(&[
                    "mlx5_core.sf.1",
                    "mlx5_core.sf.2",
                    "mlx5_core.sf.3",
                    "mlx5_core.sf.6"
                ])
            ),
            // The netDevice pool takes the PCI function, never the SFs on it.
            ("nvidia.com/bf2_pf".to_string(), ids(&["0000:03:00.0"])),
        ]
    );
}

#[test]
fn eight_pfs_of_256_vfs_are_split_by_ranges() {
    let mut devices = Vec::new();
    for pf in 0..8u32 {
        let name = format!("ens{pf}f0");
        let pf_pci = format!("0000:{:02x}:00.0", 0x10 + pf);
        let bus = format!("0000:{:02x}", 0x10 + pf);
        devices.extend(vfs_of((&name, &pf_pci), &bus, 0, E810_VF, "iavf", 256));
    }
    assert_eq!(devices.len(), 2048);
    let cfg = config(
        r#"{"resourceList": [
          {"resourceName": "low", "selectors": {"pfNames": ["ens0f0#0-127", "ens1f0#0-127", "ens2f0#0-127", "ens3f0#0-127"]}},
          {"resourceName": "high", "selectors": {"rootDevices": ["0000:10:00.0#128-255", "0000:11:00.0#200"]}},
          {"resourceName": "rest", "selectors": {"vendors": ["8086"], "devices": ["1889"]}}]}"#,
    );
    let pools = assign_pools(&cfg.resources, &devices);
    let sizes: Vec<usize> = pools.iter().map(|p| p.members.len()).collect();
    // low: 4 PFs x 128; high: 128 from ens0f0 + VF 200 of ens1f0; rest: everything else.
    assert_eq!(sizes, vec![512, 129, 2048 - 512 - 129]);
    let high = &pools[1];
    assert_eq!(
        high.members.last().map(|m| devices[m.device].vf_index),
        Some(Some(200))
    );
}
