//! The VF counter sampler: a thread that reads the counters of every VF
//! in a served pool now and then, and swaps the result in whole.
//!
//! A thread of its own, not the daemon's loop: a pass opens six files per
//! VF (tens of milliseconds at 4096 VFs) and may ask netlink, and the loop
//! must keep answering the kubelet meanwhile. No lock is held during a
//! pass: the pools are cloned (`Arc`s) first, the sample is swapped after.
//!
//! Where a PF's counters come from, per pass: `sriov/<N>/stats` in sysfs
//! when the PF has it (ice, i40e), else `IFLA_VF_STATS` from the PF's
//! RTM_GETLINK (drivers with `ndo_get_vf_stats`, such as mlx5), as
//! sriov-network-metrics-exporter prefers them. A PF with neither simply
//! has no VF series.

use super::{ErrorKind, Metrics};
use crate::deviceplugin::served::ServedPool;
use crate::netlink::{LinkCounters, Netlink};
use crate::pci::PciAddress;
use crate::sysfs::SysfsRoot;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a PF's VF counters were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterSource {
    Sysfs,
    Netlink,
}

/// One PF's VF counters as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfSample {
    pub numa_node: Option<u32>,
    pub source: CounterSource,
    /// VF index → counters.
    pub vfs: BTreeMap<u32, LinkCounters>,
}

/// Every PF's VF counters as last read, by PF PCI address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VfSample {
    pub pfs: HashMap<String, PfSample>,
    /// How long the pass took.
    pub took: Duration,
}

/// The VFs of one PF that pools serve.
#[derive(Debug, Default)]
struct PfTarget {
    /// The PF's netdev, for netlink.
    netdev: Option<String>,
    vfs: BTreeSet<u32>,
}

/// PF PCI address → the VFs pools serve on it.
fn targets(pools: &[Arc<ServedPool>]) -> BTreeMap<String, PfTarget> {
    let mut out: BTreeMap<String, PfTarget> = BTreeMap::new();
    for pool in pools {
        for device in &pool.devices {
            let (Some(pf), Some(vf)) = (&device.pf, device.vf_index) else {
                continue;
            };
            let target = out.entry(pf.to_string()).or_default();
            target.vfs.insert(vf);
            if target.netdev.is_none() {
                target.netdev = device.links.pf.as_ref().map(|pf| pf.to_string());
            }
        }
    }
    out
}

/// Reads one pass; remembers which PFs failed last time, so that a PF
/// that keeps failing is logged once at warn, not at every pass.
struct Reader {
    sysfs: SysfsRoot,
    /// Opened on first need: most nodes' PFs have sysfs counters.
    netlink: Option<Netlink>,
    failing: BTreeSet<String>,
    without_counters: BTreeSet<String>,
}

impl Reader {
    fn pass(&mut self, metrics: &Metrics) -> VfSample {
        let started = Instant::now();
        let mut pfs = HashMap::new();
        for (pf, target) in targets(&metrics.served_pools()) {
            match self.read_pf(&pf, &target) {
                Ok(Some(sample)) => {
                    if self.failing.remove(&pf) {
                        tracing::info!(%pf, "VF counters readable again");
                    }
                    self.without_counters.remove(&pf);
                    pfs.insert(pf, sample);
                }
                Ok(None) => {
                    if self.without_counters.insert(pf.clone()) {
                        tracing::info!(%pf, "no VF counters: neither sriov/<N>/stats in sysfs nor IFLA_VF_STATS from the driver");
                    }
                }
                Err(error) => {
                    metrics.error(ErrorKind::VfCounters);
                    if self.failing.insert(pf.clone()) {
                        tracing::warn!(%pf, %error, "cannot read VF counters");
                    } else {
                        tracing::debug!(%pf, %error, "cannot read VF counters");
                    }
                }
            }
        }
        VfSample {
            pfs,
            took: started.elapsed(),
        }
    }

    fn read_pf(&mut self, pf: &str, target: &PfTarget) -> Result<Option<PfSample>, String> {
        let address: PciAddress = pf.parse().map_err(|_| format!("{pf}: not a PCI address"))?;
        let wanted: Vec<u32> = target.vfs.iter().copied().collect();
        let sysfs = self
            .sysfs
            .vf_stats(address, &wanted)
            .map_err(|e| e.to_string())?;
        if let Some(vfs) = sysfs.vfs {
            return Ok(Some(PfSample {
                numa_node: sysfs.numa_node,
                source: CounterSource::Sysfs,
                vfs,
            }));
        }
        let Some(netdev) = &target.netdev else {
            return Ok(None);
        };
        let netlink = match self.netlink.take() {
            Some(netlink) => netlink,
            None => Netlink::open().map_err(|e| e.to_string())?,
        };
        let netlink = self.netlink.insert(netlink);
        let Some(all) = netlink.vf_counters(netdev).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        Ok(Some(PfSample {
            numa_node: sysfs.numa_node,
            source: CounterSource::Netlink,
            vfs: all
                .into_iter()
                .filter(|(vf, _)| target.vfs.contains(vf))
                .collect(),
        }))
    }
}

/// The sampler's thread; dropping this stops it (at once: it waits on the
/// channel whose sender this holds).
pub struct VfSampler {
    _stop: mpsc::Sender<()>,
}

impl VfSampler {
    /// A first pass at once, then one every `every`. None (logged) if the
    /// thread cannot be started.
    pub(super) fn start(metrics: Metrics, sysfs: SysfsRoot, every: Duration) -> Option<VfSampler> {
        let (stop, stopped) = mpsc::channel::<()>();
        let mut reader = Reader {
            sysfs,
            netlink: None,
            failing: BTreeSet::new(),
            without_counters: BTreeSet::new(),
        };
        let spawned = std::thread::Builder::new()
            .name("vf-counters".into())
            .spawn(move || loop {
                let sample = reader.pass(&metrics);
                tracing::trace!(took = ?sample.took, pfs = sample.pfs.len(), "VF counters read");
                metrics.store_sample(sample);
                match stopped.recv_timeout(every) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    // the handle was dropped (or sent): stop
                    _ => break,
                }
            });
        match spawned {
            Ok(_) => Some(VfSampler { _stop: stop }),
            Err(error) => {
                tracing::error!(%error, "cannot start the VF counter sampler: no VF metrics");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deviceplugin::served::{test_pool, DeviceLinks, ServedDevice};

    fn vf(id: &str, pf: Option<&str>, index: Option<u32>) -> ServedDevice {
        ServedDevice {
            id: id.into(),
            healthy: true,
            links: DeviceLinks {
                pf: pf.map(|_| "ens1f0".into()),
                own: None,
            },
            numa_node: None,
            pf: pf.map(Into::into),
            vf_index: index,
            nodes: Vec::new(),
            info: Default::default(),
            device_info: None,
        }
    }

    #[test]
    fn targets_are_the_vfs_pools_serve_grouped_by_pf() {
        let a = test_pool(
            vec![
                vf("0000:3b:01.0", Some("0000:3b:00.0"), Some(0)),
                // a PF in a pool: no VF counters to read
                vf("0000:3b:00.1", None, None),
            ],
            false,
        );
        let b = test_pool(
            vec![vf("0000:3b:01.3", Some("0000:3b:00.0"), Some(3))],
            false,
        );
        let found = targets(&[Arc::new(a), Arc::new(b)]);
        assert_eq!(found.len(), 1);
        let pf = &found["0000:3b:00.0"];
        assert_eq!(pf.vfs, BTreeSet::from([0, 3]));
        assert_eq!(pf.netdev.as_deref(), Some("ens1f0"));
    }

    #[test]
    fn a_pass_reads_sysfs_counters_and_records_the_failures() {
        let dir = tempfile::tempdir().unwrap();
        let pf_dir = dir.path().join("bus/pci/devices/0000:3b:00.0");
        for file in [
            "rx_bytes",
            "rx_packets",
            "tx_bytes",
            "tx_packets",
            "rx_dropped",
            "tx_dropped",
        ] {
            let stats = pf_dir.join("sriov/0/stats");
            std::fs::create_dir_all(&stats).unwrap();
            std::fs::write(stats.join(file), "7\n").unwrap();
        }
        std::fs::write(pf_dir.join("numa_node"), "0\n").unwrap();
        let metrics = Metrics::new(None);
        let pool = test_pool(
            vec![
                vf("0000:3b:01.0", Some("0000:3b:00.0"), Some(0)),
                // a PF directory that is not there: an error, counted
                vf("0000:5e:01.0", Some("0000:5e:00.0"), Some(0)),
            ],
            false,
        );
        let (_sender, receiver) = tokio::sync::watch::channel(Arc::new(pool));
        metrics.watch_pool("intel.com/a", receiver);
        let mut reader = Reader {
            sysfs: SysfsRoot::new(dir.path()),
            netlink: None,
            failing: BTreeSet::new(),
            without_counters: BTreeSet::new(),
        };
        let sample = reader.pass(&metrics);
        let pf = &sample.pfs["0000:3b:00.0"];
        assert_eq!(pf.source, CounterSource::Sysfs);
        assert_eq!(pf.numa_node, Some(0));
        assert_eq!(pf.vfs[&0].tx_dropped, 7);
        assert!(!sample.pfs.contains_key("0000:5e:00.0"));
        assert!(reader.failing.contains("0000:5e:00.0"));
    }
}
