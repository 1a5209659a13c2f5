//! A scrape's text: the daemon's counters, then the figures of this moment
//! (pools, VF counters) from one [`View`] (pure).

use super::super::served::ServedPool;
use super::pools::{Holders, PoolFigures};
use super::sampler::VfSample;
use crate::netlink::LinkCounters;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// What one scrape shows besides the daemon's counters.
#[derive(Debug)]
pub(super) struct View {
    pub pools: Vec<ScrapedPool>,
    pub sample: Arc<VfSample>,
}

/// One served pool (device plugin or DRA) at a scrape.
#[derive(Debug)]
pub(super) struct ScrapedPool {
    pub pool: Arc<ServedPool>,
    /// Who holds its devices; None when that is not known (PodResources
    /// was not asked or did not answer, for a device plugin pool).
    pub holders: Option<Holders>,
}

type Figure = (&'static str, &'static str, fn(&PoolFigures) -> Option<u64>);

/// The per-pool gauges.
const POOL_GAUGES: [Figure; 4] = [
    (
        "sriov_dp_pool_capacity",
        "Devices the pool serves: listed on ListAndWatch (api devicePlugin) or prepared and published (api dra).",
        |f| Some(f.capacity),
    ),
    (
        "sriov_dp_pool_allocatable",
        "Healthy devices of the pool (held ones included).",
        |f| Some(f.allocatable),
    ),
    (
        "sriov_dp_pool_allocated",
        "Devices of the pool that pods hold: per the kubelet's PodResources API (devicePlugin), in prepared claims (dra).",
        |f| f.allocated,
    ),
    (
        "sriov_dp_pool_unhealthy",
        "Unhealthy devices of the pool (link down, or kept only for the pod that holds it).",
        |f| Some(f.unhealthy),
    ),
];

type VfCounter = (&'static str, &'static str, fn(&LinkCounters) -> u64);

/// The per-VF counters, named as sriov-network-metrics-exporter names them.
const VF_COUNTERS: [VfCounter; 6] = [
    ("sriov_vf_rx_bytes", "Bytes received by the VF.", |c| {
        c.rx_bytes
    }),
    ("sriov_vf_tx_bytes", "Bytes transmitted by the VF.", |c| {
        c.tx_bytes
    }),
    ("sriov_vf_rx_packets", "Packets received by the VF.", |c| {
        c.rx_packets
    }),
    (
        "sriov_vf_tx_packets",
        "Packets transmitted by the VF.",
        |c| c.tx_packets,
    ),
    (
        "sriov_vf_rx_dropped",
        "Packets dropped on receipt by the VF.",
        |c| c.rx_dropped,
    ),
    (
        "sriov_vf_tx_dropped",
        "Packets dropped on transmission by the VF.",
        |c| c.tx_dropped,
    ),
];

/// One VF's series labels and counters.
struct VfRow<'a> {
    pf: &'a str,
    vf: String,
    pci_addr: &'a str,
    numa_node: String,
    pool: &'a str,
    namespace: &'a str,
    pod: &'a str,
    counters: &'a LinkCounters,
}

impl VfRow<'_> {
    fn labels(&self) -> [(&'static str, &str); 7] {
        [
            ("pf", self.pf),
            ("vf", &self.vf),
            ("pciAddr", self.pci_addr),
            ("numa_node", &self.numa_node),
            ("pool", self.pool),
            ("namespace", self.namespace),
            ("pod", self.pod),
        ]
    }
}

impl View {
    /// Every served VF that the last sample has counters for.
    fn vf_rows(&self) -> Vec<VfRow<'_>> {
        let mut rows = Vec::new();
        for ScrapedPool { pool, holders } in &self.pools {
            for device in &pool.devices {
                let (Some(pf), Some(vf)) = (&device.pf, device.vf_index) else {
                    continue;
                };
                let Some(pf_sample) = self.sample.pfs.get(pf.as_str()) else {
                    continue;
                };
                let Some(counters) = pf_sample.vfs.get(&vf) else {
                    continue;
                };
                let holder = holders.as_ref().and_then(|h| h.get(device.id.as_str()));
                rows.push(VfRow {
                    pf: device.links.pf.as_deref().unwrap_or_default(),
                    vf: vf.to_string(),
                    pci_addr: &device.id,
                    // as the exporter: empty when the kernel says -1
                    numa_node: pf_sample
                        .numa_node
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    pool: &pool.resource_name,
                    namespace: holder.map(|h| h.namespace.as_str()).unwrap_or_default(),
                    pod: holder.map(|h| h.pod.as_str()).unwrap_or_default(),
                    counters,
                });
            }
        }
        rows
    }
}

impl Collector for View {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // `api` tells a pool's two halves apart while it moves between the
        // APIs (the same resource name served by both until a pod lets go)
        let figures: Vec<([(&str, &str); 2], PoolFigures)> = self
            .pools
            .iter()
            .map(|scraped| {
                (
                    [
                        ("pool", scraped.pool.resource_name.as_str()),
                        ("api", scraped.pool.api.as_str()),
                    ],
                    PoolFigures::of(&scraped.pool, scraped.holders.as_ref()),
                )
            })
            .collect();
        for (name, help, value) in POOL_GAUGES {
            let values: Vec<(&[(&str, &str); 2], u64)> = figures
                .iter()
                .filter_map(|(labels, f)| value(f).map(|v| (labels, v)))
                .collect();
            if values.is_empty() {
                continue;
            }
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (labels, v) in values {
                metric.encode_family(labels)?.encode_gauge(&v)?;
            }
        }
        let rows = self.vf_rows();
        if !rows.is_empty() {
            let labels: Vec<[(&'static str, &str); 7]> = rows.iter().map(VfRow::labels).collect();
            for (name, help, value) in VF_COUNTERS {
                // untyped: see the module docs of `metrics` on the names
                let mut metric =
                    encoder.encode_descriptor(name, help, None, MetricType::Unknown)?;
                for (row, labels) in rows.iter().zip(&labels) {
                    metric
                        .encode_family(labels)?
                        .encode_gauge(&value(row.counters))?;
                }
            }
        }
        encoder
            .encode_descriptor(
                "sriov_dp_vf_counters_read_seconds",
                "How long the last read of every served VF's counters took.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.sample.took.as_secs_f64())?;
        Ok(())
    }
}

/// The text of a scrape: `counters` (the daemon's registry), then `view`.
pub(super) fn render(counters: &Registry, view: View) -> Result<String, std::fmt::Error> {
    let mut text = String::with_capacity(4096);
    prometheus_text::encode(&mut text, counters)?;
    let mut now = Registry::default();
    now.register_collector(Box::new(view));
    prometheus_text::encode(&mut text, &now)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::pools::device_plugin_holders;
    use super::super::sampler::{CounterSource, PfSample};
    use super::*;
    use crate::deviceplugin::held::{held_by_pod, HeldDevices};
    use crate::deviceplugin::served::{test_pool, DeviceLinks, ServedDevice};
    use std::collections::{BTreeMap, HashMap};

    fn vf(index: u32, healthy: bool) -> ServedDevice {
        ServedDevice {
            id: compact_str::format_compact!("0000:3b:01.{index}"),
            healthy,
            links: DeviceLinks {
                pf: Some("ens1f0".into()),
                own: None,
            },
            numa_node: None,
            pf: Some("0000:3b:00.0".into()),
            vf_index: Some(index),
            nodes: Vec::new(),
            info: Default::default(),
            device_info: None,
        }
    }

    fn view(held: Option<HeldDevices>) -> View {
        let holders = held.map(|h| device_plugin_holders(&h, "intel.com/e810"));
        let mut pool = test_pool(vec![vf(0, true), vf(1, false), vf(2, true)], false);
        pool.resource_name = "intel.com/e810".into();
        let counters = |n: u64| LinkCounters {
            rx_bytes: n,
            rx_packets: n + 1,
            tx_bytes: n + 2,
            tx_packets: n + 3,
            rx_dropped: n + 4,
            tx_dropped: n + 5,
        };
        let sample = VfSample {
            pfs: HashMap::from([(
                "0000:3b:00.0".to_owned(),
                PfSample {
                    numa_node: None,
                    source: CounterSource::Sysfs,
                    // VF 2 has no counters: no series for it
                    vfs: BTreeMap::from([(0, counters(100)), (1, counters(200))]),
                },
            )]),
            took: std::time::Duration::from_millis(3),
        };
        View {
            pools: vec![ScrapedPool {
                pool: Arc::new(pool),
                holders,
            }],
            sample: Arc::new(sample),
        }
    }

    fn held() -> HeldDevices {
        held_by_pod("web-0", "intel.com/e810", &["0000:3b:01.1"])
    }

    fn lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn pools_and_vfs_render_with_the_exporters_names_and_pod_labels() {
        let text = render(&Registry::default(), view(Some(held()))).unwrap();
        assert_eq!(
            lines(&text, "sriov_dp_pool_"),
            [
                r#"sriov_dp_pool_capacity{pool="intel.com/e810",api="devicePlugin"} 3"#,
                r#"sriov_dp_pool_allocatable{pool="intel.com/e810",api="devicePlugin"} 2"#,
                r#"sriov_dp_pool_allocated{pool="intel.com/e810",api="devicePlugin"} 1"#,
                r#"sriov_dp_pool_unhealthy{pool="intel.com/e810",api="devicePlugin"} 1"#,
            ]
        );
        assert_eq!(
            lines(&text, "sriov_vf_rx_bytes"),
            [
                r#"sriov_vf_rx_bytes{pf="ens1f0",vf="0",pciAddr="0000:3b:01.0",numa_node="",pool="intel.com/e810",namespace="",pod=""} 100"#,
                r#"sriov_vf_rx_bytes{pf="ens1f0",vf="1",pciAddr="0000:3b:01.1",numa_node="",pool="intel.com/e810",namespace="ran",pod="web-0"} 200"#,
            ]
        );
        assert!(
            text.contains("# TYPE sriov_vf_tx_dropped untyped\n"),
            "{text}"
        );
        assert_eq!(
            lines(&text, "sriov_vf_tx_dropped{")[1].rsplit(' ').next(),
            Some("205")
        );
        assert!(
            text.contains("sriov_dp_vf_counters_read_seconds 0.003\n"),
            "{text}"
        );
    }

    #[test]
    fn a_pool_moving_between_the_apis_has_one_series_per_api() {
        let mut view = view(Some(held()));
        let mut dra = test_pool(vec![vf(3, true)], false);
        dra.resource_name = "intel.com/e810".into();
        dra.api = crate::config::AllocationApi::Dra;
        view.pools.push(ScrapedPool {
            pool: Arc::new(dra),
            holders: Some(Holders::new()),
        });
        let text = render(&Registry::default(), view).unwrap();
        assert_eq!(
            lines(&text, "sriov_dp_pool_capacity"),
            [
                r#"sriov_dp_pool_capacity{pool="intel.com/e810",api="devicePlugin"} 3"#,
                r#"sriov_dp_pool_capacity{pool="intel.com/e810",api="dra"} 1"#,
            ]
        );
    }

    #[test]
    fn without_pod_resources_there_is_no_allocated_figure_and_no_pod() {
        let text = render(&Registry::default(), view(None)).unwrap();
        assert!(!text.contains("sriov_dp_pool_allocated"), "{text}");
        assert!(lines(&text, "sriov_vf_rx_bytes{")
            .iter()
            .all(|l| l.contains(r#"namespace="",pod="""#)));
    }
}
