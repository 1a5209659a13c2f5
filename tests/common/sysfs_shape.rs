//! Structural rules every sysfs tree follows, whether the kernel wrote it or
//! the simulator did. Running the same checks on the machine's real /sys and
//! on a simulated tree is how we know the simulator lays things out the way
//! the kernel does.

use std::path::{Path, PathBuf};

fn is_hex_id(s: &str, digits: usize) -> bool {
    s.strip_prefix("0x").is_some_and(|h| {
        h.len() == digits
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The symlink at `link` is relative and, resolved, lands at `root/expected_under/...`.
fn resolves_under(root: &Path, link: &Path, expected_under: &str) -> PathBuf {
    let target =
        std::fs::read_link(link).unwrap_or_else(|e| panic!("readlink {}: {e}", link.display()));
    assert!(
        target.is_relative(),
        "{} -> {} must be relative, as sysfs writes it",
        link.display(),
        target.display()
    );
    let resolved =
        std::fs::canonicalize(link).unwrap_or_else(|e| panic!("resolve {}: {e}", link.display()));
    let base = std::fs::canonicalize(root.join(expected_under)).expect("base exists");
    assert!(
        resolved.starts_with(&base),
        "{} resolves to {}, expected under {}",
        link.display(),
        resolved.display(),
        base.display()
    );
    resolved
}

/// Check every PCI device of the tree at `root`; returns how many were checked.
pub fn check_pci_tree(root: &Path) -> usize {
    let devices = root.join("bus/pci/devices");
    let mut checked = 0;
    for entry in std::fs::read_dir(&devices).expect("bus/pci/devices") {
        let entry = entry.expect("dir entry");
        let bdf = entry.file_name().to_string_lossy().into_owned();
        assert!(
            bdf.parse::<sriov_rs::pci::PciAddress>().is_ok(),
            "entry {bdf} is not a BDF"
        );
        let link = entry.path();
        let dir = resolves_under(root, &link, "devices");
        assert_eq!(
            dir.file_name().map(|n| n.to_string_lossy().into_owned()),
            Some(bdf.clone())
        );
        // the device dir's parent chain is made of pciDDDD:BB host bridges and BDF bridges
        let relative = dir
            .strip_prefix(std::fs::canonicalize(root.join("devices")).expect("devices"))
            .expect("under devices");
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let host_bridge = parts.next().expect("host bridge");
        assert!(
            host_bridge.starts_with("pci") && host_bridge.len() == 10,
            "{bdf}: host bridge dir {host_bridge}"
        );

        for (file, digits) in [
            ("vendor", 4),
            ("device", 4),
            ("subsystem_vendor", 4),
            ("subsystem_device", 4),
            ("class", 6),
        ] {
            let content = read(&dir.join(file));
            assert!(
                content.ends_with('\n'),
                "{bdf}/{file} must end with a newline"
            );
            assert!(
                is_hex_id(content.trim_end(), digits),
                "{bdf}/{file} = {content:?}"
            );
        }
        let numa = read(&dir.join("numa_node"));
        assert!(
            numa.trim_end().parse::<i32>().is_ok_and(|n| n >= -1),
            "{bdf}/numa_node = {numa:?}"
        );
        resolves_under(root, &dir.join("subsystem"), "bus/pci");
        if dir.join("driver").exists() {
            let driver = resolves_under(root, &dir.join("driver"), "bus/pci/drivers");
            // the driver dir links back to the device
            let back = driver.join(&bdf);
            assert_eq!(
                std::fs::canonicalize(&back).expect("driver back link"),
                dir,
                "{bdf}: driver back link"
            );
        }
        if dir.join("iommu_group").exists() {
            let group = resolves_under(root, &dir.join("iommu_group"), "kernel/iommu_groups");
            assert_eq!(
                std::fs::canonicalize(group.join("devices").join(&bdf)).expect("group member"),
                dir
            );
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("net")) {
            for netdev in entries {
                let netdev = netdev.expect("net entry");
                let name = netdev.file_name();
                for attribute in ["address", "mtu", "ifindex", "type", "operstate"] {
                    let content = read(&netdev.path().join(attribute));
                    assert!(
                        content.ends_with('\n') && content.len() > 1,
                        "{bdf}/net/{name:?}/{attribute} = {content:?}"
                    );
                }
                assert_eq!(
                    std::fs::canonicalize(netdev.path().join("device")).expect("net device link"),
                    dir
                );
                let class_link = root.join("class/net").join(&name);
                assert_eq!(
                    std::fs::canonicalize(&class_link).expect("class/net link"),
                    std::fs::canonicalize(netdev.path()).expect("net dir")
                );
            }
        }
        check_sriov(root, &dir, &bdf);
        checked += 1;
    }
    checked
}

fn check_sriov(root: &Path, dir: &Path, bdf: &str) {
    if let Ok(total) = std::fs::read_to_string(dir.join("sriov_totalvfs")) {
        let total: u32 = total
            .trim_end()
            .parse()
            .expect("sriov_totalvfs is a number");
        let num: u32 = read(&dir.join("sriov_numvfs"))
            .trim_end()
            .parse()
            .expect("sriov_numvfs");
        assert!(num <= total, "{bdf}: numvfs {num} > totalvfs {total}");
        let offset: u32 = read(&dir.join("sriov_offset"))
            .trim_end()
            .parse()
            .expect("sriov_offset");
        let stride: u32 = read(&dir.join("sriov_stride"))
            .trim_end()
            .parse()
            .expect("sriov_stride");
        let pf: sriov_rs::pci::PciAddress = bdf.parse().expect("bdf");
        for n in 0..num {
            let vf_dir = resolves_under(root, &dir.join(format!("virtfn{n}")), "devices");
            let vf_bdf = vf_dir
                .file_name()
                .expect("vf name")
                .to_string_lossy()
                .into_owned();
            // the SR-IOV capability's routing-ID arithmetic places each VF
            let expected = sriov_rs::pci::PciAddress::from_routing_id(
                pf.domain,
                (u32::from(pf.routing_id()) + offset + n * stride) as u16,
            );
            assert_eq!(vf_bdf, expected.to_string(), "{bdf}: virtfn{n}");
            assert_eq!(
                std::fs::canonicalize(vf_dir.join("physfn")).expect("physfn"),
                std::fs::canonicalize(dir).expect("pf dir")
            );
        }
        assert!(
            !dir.join(format!("virtfn{num}")).exists(),
            "{bdf}: a virtfn link beyond sriov_numvfs"
        );
    }
}
