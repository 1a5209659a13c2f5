//! VF counters that a PF's driver keeps in sysfs: Intel ice (and recent
//! i40e) lay them out as `<pf>/sriov/<N>/stats/{rx,tx}_{bytes,packets,dropped}`,
//! one number per file. Drivers without that directory report VF counters
//! through netlink only (`IFLA_VF_STATS`, see `netlink::vf_stats`).
//!
//! Cost matters here: a node with 4096 VFs has 24576 such files. The PF's
//! directory is opened once and every file below it is opened relative to
//! it (openat), so each costs a lookup of four components, not a walk from
//! the root.

use super::attr::DirHandle;
use super::{SysfsError, SysfsRoot};
use crate::netlink::LinkCounters;
use crate::pci::PciAddress;
use std::collections::BTreeMap;

/// The six counter files, in [`LinkCounters`] field order.
const FILES: [&str; 6] = [
    "rx_bytes",
    "rx_packets",
    "tx_bytes",
    "tx_packets",
    "rx_dropped",
    "tx_dropped",
];

/// What one PF says of its VFs in sysfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysfsVfStats {
    /// The PF's NUMA node; None when the kernel reports -1.
    pub numa_node: Option<u32>,
    /// VF index → counters; None when the PF has no `sriov/` directory
    /// (its driver does not keep VF counters in sysfs). A VF whose
    /// `stats/` directory or one of whose six files is missing is left out.
    pub vfs: Option<BTreeMap<u32, LinkCounters>>,
}

impl SysfsRoot {
    /// The counters of VFs `vfs` of `pf` from `sriov/<N>/stats`, and the
    /// PF's NUMA node. An unreadable or unparsable `numa_node` is an error naming
    /// it; a VF whose counter file cannot be read is left out, as one without
    /// counters.
    pub fn vf_stats(&self, pf: PciAddress, vfs: &[u32]) -> Result<SysfsVfStats, SysfsError> {
        let dir = DirHandle::open(&self.device_dir(pf))?;
        let attrs = dir.attrs();
        let numa: Option<i64> = attrs.read_number("numa_node", "a NUMA node number or -1")?;
        let numa_node = numa.and_then(|n| u32::try_from(n).ok());
        if !dir.path().join("sriov").is_dir() {
            return Ok(SysfsVfStats {
                numa_node,
                vfs: None,
            });
        }
        let mut found = BTreeMap::new();
        for &vf in vfs {
            let stats = format!("sriov/{vf}/stats");
            let stats_attrs = dir.attrs_of(&stats);
            let mut values = [0u64; 6];
            let mut complete = true;
            for (value, file) in values.iter_mut().zip(FILES) {
                match stats_attrs.read_number::<u64>(file, "a counter") {
                    Ok(Some(read)) => *value = read,
                    Ok(None) => {
                        complete = false;
                        break;
                    }
                    // one VF's unreadable file (a VF being destroyed:
                    // ENODEV) costs that VF's series, not its PF's
                    Err(error) => {
                        tracing::debug!(%error, vf, "VF counters unreadable");
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                let [rx_bytes, rx_packets, tx_bytes, tx_packets, rx_dropped, tx_dropped] = values;
                found.insert(
                    vf,
                    LinkCounters {
                        rx_bytes,
                        rx_packets,
                        tx_bytes,
                        tx_packets,
                        rx_dropped,
                        tx_dropped,
                    },
                );
            }
        }
        Ok(SysfsVfStats {
            numa_node,
            vfs: Some(found),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(path: &Path, text: &str) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    fn pf_tree(root: &Path) -> std::path::PathBuf {
        let pf = root.join("bus/pci/devices/0000:3b:00.0");
        write(&pf.join("numa_node"), "1\n");
        pf
    }

    #[test]
    fn counters_come_from_each_vfs_stats_directory() {
        let dir = tempfile::tempdir().unwrap();
        let pf = pf_tree(dir.path());
        for (n, file) in FILES.iter().enumerate() {
            write(
                &pf.join(format!("sriov/0/stats/{file}")),
                &format!("{}\n", n + 1),
            );
            write(&pf.join(format!("sriov/2/stats/{file}")), "0\n");
        }
        // VF 1 lacks a file: left out rather than reported as zero
        write(&pf.join("sriov/1/stats/rx_bytes"), "5\n");
        let sysfs = SysfsRoot::new(dir.path());
        let address: PciAddress = "0000:3b:00.0".parse().unwrap();
        let stats = sysfs.vf_stats(address, &[0, 1, 2, 7]).unwrap();
        assert_eq!(stats.numa_node, Some(1));
        let vfs = stats.vfs.unwrap_or_default();
        assert_eq!(vfs.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(
            vfs[&0],
            LinkCounters {
                rx_bytes: 1,
                rx_packets: 2,
                tx_bytes: 3,
                tx_packets: 4,
                rx_dropped: 5,
                tx_dropped: 6,
            }
        );
    }

    #[test]
    fn a_pf_without_sriov_stats_says_so_and_garbage_costs_only_its_vf() {
        let dir = tempfile::tempdir().unwrap();
        let pf = pf_tree(dir.path());
        write(&pf.join("numa_node"), "-1\n");
        let sysfs = SysfsRoot::new(dir.path());
        let address: PciAddress = "0000:3b:00.0".parse().unwrap();
        let stats = sysfs.vf_stats(address, &[0]).unwrap();
        assert_eq!(
            stats,
            SysfsVfStats::default(),
            "no sriov/: the netlink path's turn"
        );

        // garbage in one VF's file costs that VF only, not its PF's others
        for vf in [0, 1] {
            for file in FILES {
                write(&pf.join(format!("sriov/{vf}/stats/{file}")), "1\n");
            }
        }
        write(&pf.join("sriov/0/stats/tx_bytes"), "lots\n");
        let stats = sysfs.vf_stats(address, &[0, 1]).unwrap();
        let vfs = stats.vfs.unwrap();
        assert_eq!(vfs.keys().copied().collect::<Vec<_>>(), vec![1]);
        // garbage in the PF's numa_node is the PF's error, naming the file
        write(&pf.join("numa_node"), "lots\n");
        let error = sysfs.vf_stats(address, &[0]).unwrap_err().to_string();
        assert!(
            error.contains("numa_node") && error.contains("lots"),
            "{error}"
        );
    }
}
