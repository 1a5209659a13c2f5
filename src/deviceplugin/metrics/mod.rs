//! Prometheus metrics of the daemon, served as `GET /metrics` (Prometheus
//! text format 0.0.4) on the listener of the probes (see [`super::probes`]).
//!
//! Three kinds of figures, each computed where it is cheapest:
//! - **per pool** (capacity, allocatable, allocated, unhealthy): at scrape
//!   time from each pool's `watch` value (an `Arc` clone each) and one
//!   PodResources `List`, so they are exact at the moment of the scrape,
//!   right after an Allocate or a release, with no bookkeeping on the
//!   daemon's side that could drift from the kubelet's. DRA pools are
//!   there too, under the same names: capacity is what is published,
//!   allocated the devices of the claims the kubelet prepared here (and
//!   their pods where PodResources reports DRA claims);
//! - **per VF** (rx/tx bytes, packets, dropped): sampled by a thread of
//!   their own every [`DEFAULT_VF_COUNTERS_INTERVAL`] ([`sampler`]), because
//!   reading them is the one expensive part: six sysfs files per VF, 24576
//!   opens on a node with 4096 VFs, tens of milliseconds; a scrape only
//!   renders the last sample, and the sampler holds no lock while it reads;
//! - **the daemon's own counters** (registrations, rescans, reloads, health
//!   transitions, errors, provisioning results): incremented where they
//!   happen, through the methods below.
//!
//! The VF counters keep the names and labels of sriov-network-metrics-exporter
//! (`sriov_vf_rx_bytes` with `pf`, `vf`, `pciAddr`, `numa_node`), so its
//! dashboards work unchanged, plus `pool`, `namespace` and `pod`. They are
//! exposed as `untyped`: prometheus-client appends `_total` to every
//! counter's name, which would rename them; PromQL's `rate()` works on them
//! as on any counter.

mod pools;
mod sampler;
mod scrape;

pub use pools::PoolFigures;
pub use sampler::{PfSample, VfSample, VfSampler};

use super::held;
use super::served::ServedPool;
use crate::dra::node_plugin::DraPoolsView;
use crate::sysfs::SysfsRoot;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often the VF counters are read when nothing else is said.
pub const DEFAULT_VF_COUNTERS_INTERVAL: Duration = Duration::from_secs(10);

/// The `Content-Type` of a scrape's answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of a daemon counter: fixed keys, values from the event.
type Labels<const N: usize> = [(&'static str, String); N];

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The config was read and applied.
    Accepted,
    /// The config (or discovery) failed: the pools stay as they were.
    Refused,
}

impl ReloadOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Accepted => "accepted",
            ReloadOutcome::Refused => "refused",
        }
    }
}

/// What became of the part of a provisioning plan that concerns one PF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionOutcome {
    Applied,
    /// Not attempted: it would have taken a VF from a pod.
    Refused,
    /// Attempted, and the kernel said no.
    Failed,
    /// Not attempted: a step it depends on failed.
    Skipped,
}

impl ProvisionOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ProvisionOutcome::Applied => "applied",
            ProvisionOutcome::Refused => "refused",
            ProvisionOutcome::Failed => "failed",
            ProvisionOutcome::Skipped => "skipped",
        }
    }
}

/// The daemon's errors, by where they happened (the log says what).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A rescan (device events, the periodic one) failed.
    Rescan,
    /// A new pool could not start, or its files could not be written.
    Pool,
    /// The kubelet's PodResources API did not answer.
    PodResources,
    /// The node watch could not start or ended.
    NodeWatch,
    /// A PF's VF counters could not be read.
    VfCounters,
    /// The node policy file was refused (invalid, conflicting).
    NodePolicy,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Rescan => "rescan",
            ErrorKind::Pool => "pool",
            ErrorKind::PodResources => "pod_resources",
            ErrorKind::NodeWatch => "node_watch",
            ErrorKind::VfCounters => "vf_counters",
            ErrorKind::NodePolicy => "node_policy",
        }
    }
}

/// The daemon's metrics: cheap to clone, shared by the daemon's loop, the
/// pools' runners, the HTTP listener and the VF counter sampler.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct Inner {
    /// The daemon's counters below, for encoding.
    registry: Registry,
    registrations: Family<Labels<1>, Counter>,
    rescans: Counter,
    reloads: Family<Labels<1>, Counter>,
    health_transitions: Family<Labels<2>, Counter>,
    errors: Family<Labels<1>, Counter>,
    provisioning: Family<Labels<2>, Counter>,
    /// Each served device plugin pool's value, by resource name.
    pools: Mutex<BTreeMap<String, watch::Receiver<Arc<ServedPool>>>>,
    /// The DRA pools and their prepared claims, once the DRA side runs.
    dra: Mutex<Option<DraPoolsView>>,
    /// Asked at each scrape who holds which device; None: never asked.
    pod_resources_socket: Option<PathBuf>,
    /// The VF counters as last read (swapped whole, never locked across a read).
    sample: Mutex<Arc<VfSample>>,
}

impl Metrics {
    pub fn new(pod_resources_socket: Option<PathBuf>) -> Metrics {
        let mut registry = Registry::with_prefix("sriov_dp");
        let registrations = Family::<Labels<1>, Counter>::default();
        registry.register(
            "registrations",
            "Registrations of a pool with the kubelet (by kubelet.sock or the plugin watcher)",
            registrations.clone(),
        );
        let rescans = Counter::default();
        registry.register(
            "rescans",
            "Rescans of the node with the config last accepted (device events, the periodic rescan)",
            rescans.clone(),
        );
        let reloads = Family::<Labels<1>, Counter>::default();
        registry.register(
            "reloads",
            "Config reloads (SIGHUP, a config file change), by outcome: accepted or refused",
            reloads.clone(),
        );
        let health_transitions = Family::<Labels<2>, Counter>::default();
        registry.register(
            "device_health_transitions",
            "Devices turning Healthy or Unhealthy on ListAndWatch, by pool and new health",
            health_transitions.clone(),
        );
        let errors = Family::<Labels<1>, Counter>::default();
        registry.register(
            "errors",
            "Errors the daemon logged, by kind: rescan, pool, pod_resources, node_watch, vf_counters",
            errors.clone(),
        );
        let provisioning = Family::<Labels<2>, Counter>::default();
        registry.register(
            "provisioning_results",
            "Provisioning of a PF from the node policy, by PF and outcome: applied, refused (a pod holds a VF it would change) or failed",
            provisioning.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                registrations,
                rescans,
                reloads,
                health_transitions,
                errors,
                provisioning,
                pools: Mutex::new(BTreeMap::new()),
                dra: Mutex::new(None),
                pod_resources_socket,
                sample: Mutex::new(Arc::new(VfSample::default())),
            }),
        }
    }

    /// A pool now served: its figures follow `pool` from the next scrape on.
    pub fn watch_pool(&self, name: &str, pool: watch::Receiver<Arc<ServedPool>>) {
        if let Ok(mut pools) = self.inner.pools.lock() {
            pools.insert(name.to_owned(), pool);
        }
    }

    /// A pool no longer served.
    pub fn forget_pool(&self, name: &str) {
        if let Ok(mut pools) = self.inner.pools.lock() {
            pools.remove(name);
        }
    }

    /// The DRA pools from now on: their figures and VF counters, with the
    /// device plugin pools'.
    pub fn watch_dra(&self, view: DraPoolsView) {
        if let Ok(mut dra) = self.inner.dra.lock() {
            *dra = Some(view);
        }
    }

    fn dra_view(&self) -> Option<DraPoolsView> {
        self.inner.dra.lock().ok().and_then(|dra| dra.clone())
    }

    /// Every served device plugin pool as it is now (the lock is held only
    /// to clone).
    fn device_plugin_pools(&self) -> Vec<Arc<ServedPool>> {
        self.inner
            .pools
            .lock()
            .map(|pools| pools.values().map(|pool| pool.borrow().clone()).collect())
            .unwrap_or_default()
    }

    /// Every served pool, device plugin and DRA, as it is now.
    fn served_pools(&self) -> Vec<Arc<ServedPool>> {
        let mut pools = self.device_plugin_pools();
        if let Some(dra) = self.dra_view() {
            pools.extend(dra.pools());
        }
        pools
    }

    /// The counter a pool's runner increments at each registration.
    pub fn registrations(&self, pool: &str) -> Counter {
        self.inner
            .registrations
            .get_or_create(&[("pool", pool.to_owned())])
            .clone()
    }

    pub fn rescanned(&self) {
        self.inner.rescans.inc();
    }

    pub fn reloaded(&self, outcome: ReloadOutcome) {
        self.inner
            .reloads
            .get_or_create(&[("outcome", outcome.as_str().to_owned())])
            .inc();
    }

    pub fn error(&self, kind: ErrorKind) {
        self.inner
            .errors
            .get_or_create(&[("kind", kind.as_str().to_owned())])
            .inc();
    }

    /// `count` steps of a node policy run on one PF ended as `outcome`
    /// (a family member appears at its first step, not for zero).
    pub fn provisioning_steps(&self, pf: &str, outcome: ProvisionOutcome, count: u64) {
        if count == 0 {
            return;
        }
        self.inner
            .provisioning
            .get_or_create(&[
                ("pf", pf.to_owned()),
                ("outcome", outcome.as_str().to_owned()),
            ])
            .inc_by(count);
    }

    /// A pool's value is replaced by `new`: counts the devices whose health
    /// changed (devices that come or go are not transitions).
    pub fn pool_changed(&self, old: &ServedPool, new: &ServedPool) {
        for (health, count) in pools::health_transitions(old, new) {
            self.inner
                .health_transitions
                .get_or_create(&[
                    ("pool", new.resource_name.clone()),
                    ("health", health.to_owned()),
                ])
                .inc_by(count);
        }
    }

    /// Start reading the VF counters of the served pools every `every`
    /// under `sysfs`; the sampler stops when the handle is dropped.
    pub fn start_sampler(&self, sysfs: SysfsRoot, every: Duration) -> Option<VfSampler> {
        VfSampler::start(self.clone(), sysfs, every)
    }

    fn store_sample(&self, sample: VfSample) {
        if let Ok(mut slot) = self.inner.sample.lock() {
            *slot = Arc::new(sample);
        }
    }

    fn sample(&self) -> Arc<VfSample> {
        self.inner
            .sample
            .lock()
            .map(|slot| slot.clone())
            .unwrap_or_default()
    }

    /// One scrape: the text of every metric now. Asks PodResources (unless
    /// told not to), then renders off the async thread.
    pub async fn scrape(&self) -> Result<String, ScrapeError> {
        let held = match &self.inner.pod_resources_socket {
            None => None,
            Some(socket) => match held::list(socket).await {
                Ok(held) => Some(held),
                Err(error) => {
                    tracing::debug!(%error, "scrape: PodResources did not answer; no allocated figures or pod labels this time");
                    self.error(ErrorKind::PodResources);
                    None
                }
            },
        };
        let mut pools: Vec<scrape::ScrapedPool> = self
            .device_plugin_pools()
            .into_iter()
            .map(|pool| scrape::ScrapedPool {
                holders: held
                    .as_ref()
                    .map(|held| pools::device_plugin_holders(held, &pool.resource_name)),
                pool,
            })
            .collect();
        if let Some(dra) = self.dra_view() {
            let prepared = dra.prepared_devices().await;
            pools.extend(dra.pools().into_iter().map(|pool| scrape::ScrapedPool {
                holders: Some(pools::dra_holders(
                    &prepared,
                    held.as_ref(),
                    dra.driver(),
                    dra.node(),
                    &pool.resource_name,
                )),
                pool,
            }));
        }
        let view = scrape::View {
            pools,
            sample: self.sample(),
        };
        let metrics = self.clone();
        // thousands of series: rendered on a blocking thread, so the
        // daemon's single-threaded loop keeps answering the kubelet
        tokio::task::spawn_blocking(move || scrape::render(&metrics.inner.registry, view))
            .await
            .map_err(|error| ScrapeError(error.to_string()))?
            .map_err(|_| ScrapeError("formatting the text failed".into()))
    }
}

/// A scrape that could not be answered (HTTP 500).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct ScrapeError(String);

#[cfg(test)]
mod tests {
    use super::*;

    fn counters_text(metrics: &Metrics) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.inner.registry)
            .unwrap();
        text
    }

    #[test]
    fn each_event_lands_in_its_family_with_its_labels() {
        let metrics = Metrics::new(None);
        let registrations = metrics.registrations("intel.com/a");
        registrations.inc();
        registrations.inc();
        metrics.rescanned();
        metrics.reloaded(ReloadOutcome::Accepted);
        metrics.reloaded(ReloadOutcome::Refused);
        metrics.reloaded(ReloadOutcome::Refused);
        metrics.error(ErrorKind::PodResources);
        metrics.provisioning_steps("ens1f0", ProvisionOutcome::Applied, 1);
        metrics.provisioning_steps("ens1f0", ProvisionOutcome::Refused, 0);
        metrics.provisioning_steps("ens2f0", ProvisionOutcome::Refused, 1);
        metrics.provisioning_steps("ens2f0", ProvisionOutcome::Failed, 3);
        let text = counters_text(&metrics);
        for line in [
            r#"sriov_dp_registrations_total{pool="intel.com/a"} 2"#,
            "sriov_dp_rescans_total 1",
            r#"sriov_dp_reloads_total{outcome="accepted"} 1"#,
            r#"sriov_dp_reloads_total{outcome="refused"} 2"#,
            r#"sriov_dp_errors_total{kind="pod_resources"} 1"#,
            r#"sriov_dp_provisioning_results_total{pf="ens1f0",outcome="applied"} 1"#,
            r#"sriov_dp_provisioning_results_total{pf="ens2f0",outcome="refused"} 1"#,
            r#"sriov_dp_provisioning_results_total{pf="ens2f0",outcome="failed"} 3"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // no series for zero steps
        assert!(!text.contains(r#"pf="ens1f0",outcome="refused""#), "{text}");
        // another handle on the same pool's counter counts into the same series
        metrics.registrations("intel.com/a").inc();
        assert!(counters_text(&metrics)
            .lines()
            .any(|l| l == r#"sriov_dp_registrations_total{pool="intel.com/a"} 3"#));
    }

    #[tokio::test]
    async fn a_scrape_shows_the_pools_watched_and_forgets_the_ones_stopped() {
        use crate::deviceplugin::served::test_pool;
        let metrics = Metrics::new(None);
        let mut pool = test_pool(Vec::new(), false);
        pool.resource_name = "intel.com/a".into();
        let (sender, receiver) = watch::channel(Arc::new(pool));
        metrics.watch_pool("intel.com/a", receiver);
        let text = metrics.scrape().await.unwrap();
        assert!(
            text.contains("sriov_dp_pool_capacity{pool=\"intel.com/a\",api=\"devicePlugin\"} 0\n"),
            "{text}"
        );
        // a change is seen by the next scrape, with no call from the daemon
        let grown = sender.borrow().with_devices(vec![std::sync::Arc::new(
            crate::deviceplugin::served::ServedDevice {
                healthy: false,
                ..crate::deviceplugin::served::test_device("0000:3b:01.0")
            },
        )]);
        sender.send_replace(Arc::new(grown));
        let text = metrics.scrape().await.unwrap();
        assert!(
            text.contains("sriov_dp_pool_unhealthy{pool=\"intel.com/a\",api=\"devicePlugin\"} 1\n"),
            "{text}"
        );
        metrics.forget_pool("intel.com/a");
        let text = metrics.scrape().await.unwrap();
        assert!(!text.contains("intel.com/a"), "{text}");
    }
}
