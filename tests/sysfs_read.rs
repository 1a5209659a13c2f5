//! The sysfs reader on simulated trees (and, read-only, on this machine's /sys).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{two_pf_layout, SimFixture};
use sriov_rs::devtools::sim::Layout;
use sriov_rs::pci::PciAddress;
use sriov_rs::sysfs::{ScanOptions, SriovCapability, SysfsError, SysfsRoot};

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

#[test]
fn reads_pf_and_vf_facts_from_the_simulated_e810() {
    let fixture = SimFixture::new(|_| Layout::default_layout().unwrap(), false);
    let sysfs = SysfsRoot::new(&fixture.root);
    let all = sysfs.pci_addresses().unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], addr("0000:3b:00.0"));

    let pf = sysfs.pci_device(addr("0000:3b:00.0")).unwrap();
    assert_eq!((pf.vendor, pf.device), (0x8086, 0x1592));
    assert_eq!(pf.base_class(), 0x02);
    assert_eq!(pf.driver.as_deref(), Some("ice"));
    assert_eq!(pf.numa_node, Some(0));
    assert_eq!(
        pf.sriov,
        Some(SriovCapability {
            total_vfs: 64,
            num_vfs: 4
        })
    );
    assert_eq!(pf.netdevs, vec!["ens1f0".to_string()]);
    assert!(!pf.is_vf());

    let vf = sysfs.pci_device(addr("0000:86:01.2")).unwrap();
    assert_eq!(vf.device, 0x1889);
    assert_eq!(vf.physfn, Some(addr("0000:86:00.0")));
    assert_eq!(vf.numa_node, Some(1));
    assert_eq!(vf.driver.as_deref(), Some("iavf"));
    assert_eq!(vf.netdevs, vec!["ens4f0v2".to_string()]);
    assert_eq!(vf.sriov, None);
    assert_eq!(
        sysfs
            .vf_index(addr("0000:86:00.0"), addr("0000:86:01.2"))
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        sysfs
            .vf_index(addr("0000:3b:00.0"), addr("0000:86:01.2"))
            .unwrap(),
        None
    );
    assert_eq!(
        sysfs.netdev_link_type(vf.address, "ens4f0v2").unwrap(),
        Some("ether")
    );

    let vfio = sysfs.pci_device(addr("0000:86:01.3")).unwrap();
    assert_eq!(vfio.driver.as_deref(), Some("vfio-pci"));
    assert!(vfio.netdevs.is_empty());
    // every function has its own IOMMU group in the simulator
    assert!(vfio.iommu_group.is_some() && vfio.iommu_group != vf.iommu_group);
}

#[test]
fn reads_rdma_devices_and_link_types() {
    let fixture = SimFixture::new(two_pf_layout, false);
    let sysfs = SysfsRoot::new(&fixture.root);
    let vf = sysfs.pci_device(addr("0000:d8:00.3")).unwrap();
    assert_eq!(vf.vendor, 0x15b3);
    assert_eq!(vf.rdma_devices, vec!["mlx5_2".to_string()]);
}

#[test]
fn missing_attributes_read_as_none_and_broken_ones_name_the_path() {
    let fixture = SimFixture::new(|_| Layout::default_layout().unwrap(), false);
    let sysfs = SysfsRoot::new(&fixture.root);
    let dir = sysfs.device_dir(addr("0000:3b:01.1"));
    // an unbound device with no NUMA affinity
    std::fs::remove_file(dir.join("driver")).unwrap();
    std::fs::write(dir.join("numa_node"), "-1\n").unwrap();
    let vf = sysfs.pci_device(addr("0000:3b:01.1")).unwrap();
    assert_eq!((vf.driver, vf.numa_node), (None, None));

    std::fs::write(dir.join("modalias"), "pci:v8086\n").unwrap();
    let err = sysfs.pci_device(addr("0000:3b:01.1")).unwrap_err();
    assert!(matches!(err, SysfsError::Parse { .. }));
    assert!(err.to_string().contains("0000:3b:01.1/modalias"), "{err}");

    // without modalias the IDs are read file by file, errors still naming the file
    std::fs::remove_file(dir.join("modalias")).unwrap();
    std::fs::write(dir.join("vendor"), "intel\n").unwrap();
    let err = sysfs.pci_device(addr("0000:3b:01.1")).unwrap_err();
    assert!(err.to_string().contains("0000:3b:01.1/vendor"), "{err}");

    let err = sysfs.pci_device(addr("0000:3b:07.0")).unwrap_err();
    assert!(err.to_string().contains("0000:3b:07.0"), "{err}");
}

#[test]
fn reads_every_device_of_the_real_sysfs() {
    // read-only; proves the reader copes with a kernel-written tree
    let sysfs = SysfsRoot::new("/sys");
    let Ok(addresses) = sysfs.pci_addresses() else {
        return;
    };
    for address in addresses {
        let device = sysfs
            .pci_device(address)
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        assert_eq!(device.address, address);
        // a real function's vendor is never the "no device" 0xffff
        assert_ne!(device.vendor, 0xffff, "{address}");
    }
}

#[test]
fn scanning_the_real_sysfs_reads_every_function() {
    // read-only; the whole-node reader copes with a kernel-written tree
    let sysfs = SysfsRoot::new("/sys");
    let Ok(addresses) = sysfs.pci_addresses() else {
        return;
    };
    let scan = sysfs.scan(&ScanOptions::ALL).unwrap();
    assert!(scan.unreadable.is_empty(), "{:?}", scan.unreadable);
    let scanned: Vec<PciAddress> = scan.functions.iter().map(|d| d.address).collect();
    assert_eq!(scanned, addresses);
    for device in &scan.functions {
        // the same facts as the one-device reader
        let mut one = sysfs.pci_device(device.address).unwrap();
        one.netdevs.retain(|n| device.netdevs.contains(n));
        assert_eq!(&one, device);
    }
}

#[test]
fn a_scan_gives_what_device_by_device_reads_give() {
    let fixture = SimFixture::new(two_pf_layout, false);
    let sysfs = SysfsRoot::new(&fixture.root);
    let scan = sysfs.scan(&ScanOptions::ALL).unwrap();
    assert!(scan.unreadable.is_empty());
    assert_eq!(scan.functions.len(), 1 + 4 + 1 + 2);
    for device in &scan.functions {
        assert_eq!(device, &sysfs.pci_device(device.address).unwrap());
        if let Some(pf) = device.physfn {
            assert_eq!(
                scan.vf_indexes.get(&device.address).copied(),
                sysfs.vf_index(pf, device.address).unwrap()
            );
        }
    }
    let a = format!("{}a", fixture.tag);
    let vf_netdev = format!("{}v2", a);
    assert_eq!(scan.link_types.get(&a).copied(), Some("ether"));
    assert_eq!(scan.link_types.get(&vf_netdev).copied(), Some("ether"));
    // one netdev per PF: no uplink to look for
    assert!(scan.uplinks.is_empty());
    assert!(scan.aux_devices.is_empty() && scan.vdpa_devices.is_empty());
}

#[test]
fn a_lean_scan_skips_only_what_it_was_told_to() {
    let fixture = SimFixture::new(two_pf_layout, false);
    let sysfs = SysfsRoot::new(&fixture.root);
    let vf = sysfs.device_dir(addr("0000:3b:01.1"));
    std::fs::write(vf.join("acpi_index"), "9\n").unwrap();
    let all = sysfs.scan(&ScanOptions::ALL).unwrap();
    let lean = sysfs.scan(&ScanOptions::POOLS).unwrap();
    assert!(lean.link_types.is_empty() && !all.link_types.is_empty());
    assert_eq!(lean.vf_indexes, all.vf_indexes);
    for (lean, all) in lean.functions.iter().zip(&all.functions) {
        if lean.address == addr("0000:3b:01.1") {
            // a VF's acpi_index only when asked
            assert_eq!(
                (lean.acpi_index.as_deref(), all.acpi_index.as_deref()),
                (None, Some("9"))
            );
            let mut lean = lean.clone();
            lean.acpi_index = all.acpi_index.clone();
            assert_eq!(&lean, all);
        } else {
            assert_eq!(lean, all);
        }
    }
}

#[test]
fn an_unreadable_function_is_reported_and_the_scan_goes_on() {
    let fixture = SimFixture::new(two_pf_layout, false);
    let sysfs = SysfsRoot::new(&fixture.root);
    let dir = sysfs.device_dir(addr("0000:d8:00.3"));
    std::fs::write(dir.join("numa_node"), "far\n").unwrap();
    let vf = sysfs.device_dir(addr("0000:3b:01.1"));
    std::fs::remove_file(vf.join("numa_node")).unwrap();
    let scan = sysfs.scan(&ScanOptions::ALL).unwrap();
    assert_eq!(scan.unreadable.len(), 1);
    let (address, error) = &scan.unreadable[0];
    assert_eq!(*address, addr("0000:d8:00.3"));
    assert!(
        error.to_string().contains("0000:d8:00.3/numa_node"),
        "{error}"
    );
    // a missing numa_node is "no affinity", not an error
    let vf = scan
        .functions
        .iter()
        .find(|d| d.address == addr("0000:3b:01.1"))
        .unwrap();
    assert_eq!(vf.numa_node, None);
    assert_eq!(scan.functions.len(), 7);
}

#[test]
fn many_vfs_read_on_threads_give_what_one_thread_gives() {
    let fixture = SimFixture::new(
        |tag| {
            let mut layout = two_pf_layout(tag);
            (layout.pfs[0].total_vfs, layout.pfs[0].num_vfs) = (160, 160);
            (layout.pfs[1].total_vfs, layout.pfs[1].num_vfs) = (120, 120);
            layout
        },
        false,
    );
    let sysfs = SysfsRoot::new(&fixture.root);
    let threads = ScanOptions {
        max_threads: 4,
        ..ScanOptions::ALL
    };
    let one = ScanOptions {
        max_threads: 1,
        ..ScanOptions::ALL
    };
    let (a, b) = (sysfs.scan(&threads).unwrap(), sysfs.scan(&one).unwrap());
    assert_eq!(a.functions.len(), 2 + 160 + 120);
    assert_eq!(a.functions, b.functions);
    assert_eq!(a.vf_indexes, b.vf_indexes);
    assert_eq!(a.link_types, b.link_types);
}
