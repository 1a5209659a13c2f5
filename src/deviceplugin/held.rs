//! Devices that pods hold, learnt from the kubelet's PodResources API
//! (`v1.PodResourcesLister`), and what a reload does with them.
//!
//! The kubelet is the one that knows which devices pods hold: its
//! PodResources `List` reports, per running pod and container, the device
//! IDs of every resource. A reload (or a rescan) that would drop a held
//! device from its pool, or move it to another pool, would let the kubelet
//! forget it (capacity shrinks under a running pod) or, worse, hand it to a
//! second pod through the other pool. So such a device stays listed in its
//! old pool as `Unhealthy` (no new pod gets it) and out of the new one,
//! until `List` no longer reports it; then the change applies.
//!
//! When the socket is missing or does not answer, what pods hold is
//! unknown: the change applies as it would without this module (upstream's
//! behaviour), with a warning, and devices already kept stay kept until
//! `List` answers again. Treating unknown as "everything held" instead
//! would make a node without the socket mounted never apply a config edit.

use super::served::ServedPool;
use crate::config::AllocationApi;
use crate::kubelet_api::podresources::v1::{
    pod_resources_lister_client::PodResourcesListerClient, AllocatableResourcesRequest,
    ListPodResourcesRequest, ListPodResourcesResponse,
};
use crate::kubelet_api::uds::{self, UdsError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one PodResources call may take before it counts as unanswered.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PodResourcesError {
    #[error(transparent)]
    Connect(#[from] UdsError),
    #[error("pod resources {socket}: {status}")]
    Call {
        socket: PathBuf,
        status: tonic::Status,
    },
    #[error("pod resources {0}: no answer within {CALL_TIMEOUT:?}")]
    Timeout(PathBuf),
}

/// The pod and container a device is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.pod, self.container)
    }
}

/// A device of a DRA claim as PodResources names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DraDeviceRef {
    pub driver: String,
    pub pool: String,
    pub device: String,
}

/// Resource name → device ID → who holds it (device plugin), and the
/// devices of DRA claims pods use (`dynamic_resources`, kubelets with
/// DRA and PodResources' DRA support).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldDevices {
    by_resource: BTreeMap<String, BTreeMap<String, Holder>>,
    dra: BTreeMap<DraDeviceRef, Holder>,
}

impl HeldDevices {
    pub fn from_list(list: &ListPodResourcesResponse) -> HeldDevices {
        let mut held = HeldDevices::default();
        for pod in &list.pod_resources {
            for container in &pod.containers {
                let holder = || Holder {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.name.clone(),
                };
                for claim in &container.dynamic_resources {
                    for device in &claim.claim_resources {
                        let key = DraDeviceRef {
                            driver: device.driver_name.clone(),
                            pool: device.pool_name.clone(),
                            device: device.device_name.clone(),
                        };
                        held.dra.insert(key, holder());
                    }
                }
                for devices in &container.devices {
                    let ids = held
                        .by_resource
                        .entry(devices.resource_name.clone())
                        .or_default();
                    for id in &devices.device_ids {
                        ids.insert(id.clone(), holder());
                    }
                }
            }
        }
        held
    }

    pub fn holder(&self, resource: &str, id: &str) -> Option<&Holder> {
        self.by_resource.get(resource).and_then(|ids| ids.get(id))
    }

    /// The held devices of one resource: (device ID, holder).
    pub fn of_resource(&self, resource: &str) -> impl Iterator<Item = (&str, &Holder)> {
        self.by_resource
            .get(resource)
            .into_iter()
            .flat_map(|ids| ids.iter().map(|(id, holder)| (id.as_str(), holder)))
    }

    /// Every held device: (resource, device ID, holder).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Holder)> {
        self.by_resource.iter().flat_map(|(resource, ids)| {
            ids.iter()
                .map(move |(id, holder)| (resource.as_str(), id.as_str(), holder))
        })
    }

    /// Every device held through a DRA claim, with its holder.
    pub fn dra_devices(&self) -> impl Iterator<Item = (&DraDeviceRef, &Holder)> {
        self.dra.iter()
    }

    /// Who holds device `id` of pool `resource` through a DRA claim of
    /// `driver`, found by the names this node publishes it under.
    pub fn dra_holder_of(
        &self,
        driver: &str,
        node: &str,
        resource: &str,
        id: &str,
    ) -> Option<&Holder> {
        let key = DraDeviceRef {
            driver: driver.to_owned(),
            pool: crate::dra::slices::pool_name(node, resource)?,
            device: crate::dra::names::device_name(id)?,
        };
        self.dra.get(&key)
    }

    /// Who holds `id` under any resource (the inventory's question).
    pub fn holder_of(&self, id: &str) -> Option<(&str, &Holder)> {
        self.by_resource
            .iter()
            .find_map(|(resource, ids)| ids.get(id).map(|h| (resource.as_str(), h)))
    }
}

async fn client(
    socket: &Path,
) -> Result<PodResourcesListerClient<tonic::transport::Channel>, PodResourcesError> {
    Ok(PodResourcesListerClient::new(uds::connect(socket).await?))
}

/// `List`: which devices running pods hold.
pub async fn list(socket: &Path) -> Result<HeldDevices, PodResourcesError> {
    let call = async {
        let response = client(socket)
            .await?
            .list(ListPodResourcesRequest {})
            .await
            .map_err(|status| PodResourcesError::Call {
                socket: socket.to_owned(),
                status,
            })?;
        Ok(HeldDevices::from_list(response.get_ref()))
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| PodResourcesError::Timeout(socket.to_owned()))?
}

/// `GetAllocatableResources`: resource name → the device IDs the kubelet
/// counts as allocatable on the node.
pub async fn allocatable(
    socket: &Path,
) -> Result<BTreeMap<String, BTreeSet<String>>, PodResourcesError> {
    let call = async {
        let response = client(socket)
            .await?
            .get_allocatable_resources(AllocatableResourcesRequest {})
            .await
            .map_err(|status| PodResourcesError::Call {
                socket: socket.to_owned(),
                status,
            })?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for devices in &response.get_ref().devices {
            out.entry(devices.resource_name.clone())
                .or_default()
                .extend(devices.device_ids.iter().cloned());
        }
        Ok(out)
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| PodResourcesError::Timeout(socket.to_owned()))?
}

/// A running pool: the API serving it and its resource name. A pool moving
/// between the device plugin and DRA runs under both while a pod holds one
/// of its VFs through the old one.
pub type PoolKey = (AllocationApi, String);

/// The key of `pool`.
pub fn pool_key(pool: &ServedPool) -> PoolKey {
    (pool.api, pool.resource_name.clone())
}

/// Devices kept in a pool past the config, by pool.
pub type Retained = BTreeMap<PoolKey, BTreeSet<String>>;

/// What pods hold, through each API, as far as it is known.
#[derive(Debug, Clone, Copy)]
pub struct Holdings<'a> {
    /// PodResources' answer; None when it could not be asked.
    pub pod_resources: Option<&'a HeldDevices>,
    /// The DRA side: our driver and node (to find PodResources' DRA claims
    /// by the names we publish), and the devices of the claims prepared
    /// and not yet unprepared, by resource name: the kubelet's own record
    /// of what it handed to pods through DRA, known even when PodResources
    /// is not. None when the daemon serves no DRA pool.
    pub dra: Option<DraHoldings<'a>>,
}

#[derive(Debug, Clone, Copy)]
pub struct DraHoldings<'a> {
    pub driver: &'a str,
    pub node: &'a str,
    pub prepared: &'a BTreeMap<String, BTreeSet<String>>,
}

impl Holdings<'_> {
    /// Whether a pod holds device `id` of the running pool `pool` through
    /// `pool`'s API. Unknown (PodResources not answering) counts as held
    /// only for devices kept before.
    fn holds(&self, pool: &ServedPool, id: &str, kept_before: &Retained) -> bool {
        let kept_already = || {
            kept_before
                .get(&pool_key(pool))
                .is_some_and(|ids| ids.contains(id))
        };
        match pool.api {
            AllocationApi::DevicePlugin => match self.pod_resources {
                Some(held) => held.holder(&pool.resource_name, id).is_some(),
                None => kept_already(),
            },
            AllocationApi::Dra => {
                let Some(dra) = &self.dra else {
                    return kept_already();
                };
                let prepared = dra
                    .prepared
                    .get(&pool.resource_name)
                    .is_some_and(|ids| ids.contains(id));
                let listed = match self.pod_resources {
                    Some(held) => held
                        .dra_holder_of(dra.driver, dra.node, &pool.resource_name, id)
                        .is_some(),
                    None => kept_already(),
                };
                prepared || listed
            }
        }
    }
}

/// What a reload should serve: `wanted` (config + discovery), except that a
/// device a pod holds through a running pool, which `wanted` would drop from
/// that pool (or serve through the other API), stays in it as `Unhealthy`
/// and leaves any other pool. For a device plugin pool that means listed
/// Unhealthy (no new pod gets it, Allocate still answers for it); for a DRA
/// pool it stays prepared, and the publisher leaves the kept devices out of
/// the slices, so no new claim gets it.
///
/// Returns the pools to serve and the devices now kept. Pure.
pub fn keep_held(
    running: &[&ServedPool],
    wanted: &[ServedPool],
    held: &Holdings<'_>,
    kept_before: &Retained,
) -> (Vec<ServedPool>, Retained) {
    let mut out: BTreeMap<PoolKey, ServedPool> =
        wanted.iter().map(|p| (pool_key(p), p.clone())).collect();
    let mut kept = Retained::new();
    for old in running {
        let key = pool_key(old);
        for device in &old.devices {
            let still_here = out
                .get(&key)
                .is_some_and(|p| p.device(&device.id).is_some());
            if still_here || !held.holds(old, &device.id, kept_before) {
                continue;
            }
            kept.entry(key.clone())
                .or_default()
                .insert(device.id.to_string());
            // not advertised twice: out of the pool it would move to
            for (other, pool) in out.iter_mut() {
                if *other != key && pool.device(&device.id).is_some() {
                    let devices = pool
                        .devices
                        .iter()
                        .filter(|d| d.id != device.id)
                        .cloned()
                        .collect();
                    *pool = pool.with_devices(devices);
                }
            }
            let pool = out
                .entry(key.clone())
                .or_insert_with(|| old.with_devices(Vec::new()));
            let mut devices = pool.devices.clone();
            devices.push(device.with_health(false));
            *pool = pool.with_devices(devices);
        }
    }
    // a pool that only exists in `wanted` and lost every device stays out
    let pools = out
        .into_values()
        .filter(|p| !p.devices.is_empty())
        .collect();
    (pools, kept)
}

/// Test fixture: one pod `ran/<pod>` (container `app`) holding `ids` of
/// `resource`, as PodResources `List` reports it.
#[cfg(test)]
pub(crate) fn held_by_pod(pod: &str, resource: &str, ids: &[&str]) -> HeldDevices {
    use crate::kubelet_api::podresources::v1::{
        ContainerDevices, ContainerResources, ListPodResourcesResponse, PodResources,
    };
    HeldDevices::from_list(&ListPodResourcesResponse {
        pod_resources: vec![PodResources {
            name: pod.into(),
            namespace: "ran".into(),
            containers: vec![ContainerResources {
                name: "app".into(),
                devices: vec![ContainerDevices {
                    resource_name: resource.into(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                    topology: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deviceplugin::served::{test_device, test_pool};
    use crate::kubelet_api::podresources::v1::{
        ClaimResource, ContainerResources, DynamicResource, PodResources,
    };

    fn pool(name: &str, ids: &[&str]) -> ServedPool {
        let mut pool = test_pool(ids.iter().map(|id| test_device(id)).collect(), false);
        pool.name = name.into();
        pool.resource_name = format!("intel.com/{name}");
        pool
    }

    fn held(resource: &str, ids: &[&str]) -> HeldDevices {
        held_by_pod("web-0", resource, ids)
    }

    fn view(pools: &[ServedPool]) -> Vec<(String, Vec<(String, bool)>)> {
        pools
            .iter()
            .map(|p| {
                let mut devices: Vec<(String, bool)> = p
                    .devices
                    .iter()
                    .map(|d| (d.id.to_string(), d.healthy))
                    .collect();
                devices.sort();
                (p.resource_name.clone(), devices)
            })
            .collect()
    }

    fn dp(held: Option<&HeldDevices>) -> Holdings<'_> {
        Holdings {
            pod_resources: held,
            dra: None,
        }
    }

    fn key(resource: &str) -> PoolKey {
        (AllocationApi::DevicePlugin, resource.into())
    }

    fn d(id: &str, healthy: bool) -> (String, bool) {
        (id.into(), healthy)
    }

    #[test]
    fn a_held_device_moving_to_another_pool_stays_in_the_old_one_unhealthy() {
        let a = pool("a", &["01.0", "01.1"]);
        let wanted = [pool("a", &["01.0"]), pool("b", &["01.1", "02.0"])];
        let held = held("intel.com/a", &["01.1"]);
        let (pools, kept) = keep_held(&[&a], &wanted, &dp(Some(&held)), &Retained::new());
        assert_eq!(
            view(&pools),
            [
                (
                    "intel.com/a".into(),
                    vec![d("01.0", true), d("01.1", false)]
                ),
                ("intel.com/b".into(), vec![d("02.0", true)]),
            ]
        );
        assert_eq!(
            kept[&key("intel.com/a")],
            BTreeSet::from(["01.1".to_owned()])
        );
    }

    #[test]
    fn once_released_the_change_applies() {
        // the running pool already carries the kept device
        let mut a = pool("a", &["01.0", "01.1"]);
        a.devices[1] = a.devices[1].with_health(false);
        let wanted = [pool("a", &["01.0"]), pool("b", &["01.1"])];
        let before = Retained::from([(key("intel.com/a"), BTreeSet::from(["01.1".into()]))]);
        let nothing = HeldDevices::default();
        let (pools, kept) = keep_held(&[&a], &wanted, &dp(Some(&nothing)), &before);
        assert_eq!(
            view(&pools),
            [
                ("intel.com/a".into(), vec![d("01.0", true)]),
                ("intel.com/b".into(), vec![d("01.1", true)]),
            ]
        );
        assert!(kept.is_empty());
    }

    #[test]
    fn a_pool_dropped_from_the_config_lives_on_with_its_held_devices_only() {
        let a = pool("a", &["01.0", "01.1"]);
        let held = held("intel.com/a", &["01.0"]);
        let (pools, _) = keep_held(&[&a], &[], &dp(Some(&held)), &Retained::new());
        assert_eq!(
            view(&pools),
            [("intel.com/a".into(), vec![d("01.0", false)])]
        );
    }

    #[test]
    fn unknown_holders_keep_only_what_was_kept_before() {
        let a = pool("a", &["01.0", "01.1", "01.2"]);
        let before = Retained::from([(key("intel.com/a"), BTreeSet::from(["01.2".into()]))]);
        let (pools, kept) = keep_held(&[&a], &[pool("a", &["01.0"])], &dp(None), &before);
        assert_eq!(
            view(&pools),
            [(
                "intel.com/a".into(),
                vec![d("01.0", true), d("01.2", false)]
            )]
        );
        assert_eq!(kept, before);
    }

    #[test]
    fn a_device_held_under_another_resource_is_not_ours_to_keep() {
        let a = pool("a", &["01.0"]);
        let held = held("intel.com/other", &["01.0"]);
        let (pools, kept) = keep_held(
            &[&a],
            &[pool("b", &["01.0"])],
            &dp(Some(&held)),
            &Retained::new(),
        );
        assert_eq!(
            view(&pools),
            [("intel.com/b".into(), vec![d("01.0", true)])]
        );
        assert!(kept.is_empty());
    }

    #[test]
    fn holders_are_found_by_resource_and_by_id() {
        let held = held("intel.com/a", &["01.0"]);
        let holder = held.holder("intel.com/a", "01.0").map(|h| h.to_string());
        assert_eq!(holder.as_deref(), Some("ran/web-0 (app)"));
        assert!(held.holder("intel.com/b", "01.0").is_none());
        assert_eq!(held.holder_of("01.0").map(|(r, _)| r), Some("intel.com/a"));
    }

    fn dra_pool(name: &str, ids: &[&str]) -> ServedPool {
        let mut pool = pool(name, ids);
        pool.api = AllocationApi::Dra;
        pool
    }

    /// Each pool's API, name, and (device, healthy) pairs.
    type PoolView = (AllocationApi, String, Vec<(String, bool)>);

    fn views(pools: &[ServedPool]) -> Vec<PoolView> {
        let apis = pools.iter().map(|p| p.api);
        apis.zip(view(pools))
            .map(|(api, (name, devices))| (api, name, devices))
            .collect()
    }

    const DP: AllocationApi = AllocationApi::DevicePlugin;
    const DRA: AllocationApi = AllocationApi::Dra;

    #[test]
    fn a_pool_moved_to_dra_keeps_a_vf_held_through_the_device_plugin_there() {
        let a = pool("a", &["0000:3b:02.0", "0000:3b:02.1"]);
        let wanted = [dra_pool("a", &["0000:3b:02.0", "0000:3b:02.1"])];
        let held = held("intel.com/a", &["0000:3b:02.1"]);
        let prepared = BTreeMap::new();
        let holdings = Holdings {
            pod_resources: Some(&held),
            dra: Some(DraHoldings {
                driver: "sriov-rs.invalid",
                node: "worker-1",
                prepared: &prepared,
            }),
        };
        let (pools, kept) = keep_held(&[&a], &wanted, &holdings, &Retained::new());
        assert_eq!(
            views(&pools),
            [
                (DP, "intel.com/a".into(), vec![d("0000:3b:02.1", false)]),
                (DRA, "intel.com/a".into(), vec![d("0000:3b:02.0", true)]),
            ]
        );
        assert_eq!(
            kept,
            Retained::from([(key("intel.com/a"), BTreeSet::from(["0000:3b:02.1".into()]))])
        );
    }

    #[test]
    fn a_pool_moved_back_keeps_a_prepared_vf_in_dra_even_without_pod_resources() {
        let a = dra_pool("a", &["0000:3b:02.0", "0000:3b:02.1"]);
        let wanted = [pool("a", &["0000:3b:02.0", "0000:3b:02.1"])];
        let prepared = BTreeMap::from([(
            "intel.com/a".to_string(),
            BTreeSet::from(["0000:3b:02.0".to_string()]),
        )]);
        let holdings = Holdings {
            pod_resources: None,
            dra: Some(DraHoldings {
                driver: "sriov-rs.invalid",
                node: "worker-1",
                prepared: &prepared,
            }),
        };
        let (pools, kept) = keep_held(&[&a], &wanted, &holdings, &Retained::new());
        assert_eq!(
            views(&pools),
            [
                (DP, "intel.com/a".into(), vec![d("0000:3b:02.1", true)]),
                (DRA, "intel.com/a".into(), vec![d("0000:3b:02.0", false)]),
            ]
        );
        assert_eq!(
            kept,
            Retained::from([(
                (DRA, "intel.com/a".into()),
                BTreeSet::from(["0000:3b:02.0".into()])
            )])
        );
    }

    #[test]
    fn a_dra_claim_in_pod_resources_holds_the_device_it_names() {
        let list = ListPodResourcesResponse {
            pod_resources: vec![PodResources {
                name: "web-0".into(),
                namespace: "ran".into(),
                containers: vec![ContainerResources {
                    name: "app".into(),
                    dynamic_resources: vec![DynamicResource {
                        claim_name: "vf".into(),
                        claim_namespace: "ran".into(),
                        claim_resources: vec![ClaimResource {
                            cdi_devices: vec![],
                            driver_name: "sriov-rs.invalid".into(),
                            pool_name: "worker-1/intel.com/a".into(),
                            device_name: "0000-3b-02-1".into(),
                        }],
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let held = HeldDevices::from_list(&list);
        let holder = held.dra_holder_of(
            "sriov-rs.invalid",
            "worker-1",
            "intel.com/a",
            "0000:3b:02.1",
        );
        assert_eq!(
            holder.map(ToString::to_string).as_deref(),
            Some("ran/web-0 (app)")
        );
        assert!(held
            .dra_holder_of(
                "other.example.com",
                "worker-1",
                "intel.com/a",
                "0000:3b:02.1"
            )
            .is_none());
        assert!(held
            .dra_holder_of(
                "sriov-rs.invalid",
                "worker-2",
                "intel.com/a",
                "0000:3b:02.1"
            )
            .is_none());
        // held through DRA, not through the device plugin's resource
        assert!(held.holder("intel.com/a", "0000:3b:02.1").is_none());

        let a = dra_pool("a", &["0000:3b:02.0", "0000:3b:02.1"]);
        let prepared = BTreeMap::new();
        let holdings = Holdings {
            pod_resources: Some(&held),
            dra: Some(DraHoldings {
                driver: "sriov-rs.invalid",
                node: "worker-1",
                prepared: &prepared,
            }),
        };
        let (pools, _) = keep_held(
            &[&a],
            &[pool("a", &["0000:3b:02.0", "0000:3b:02.1"])],
            &holdings,
            &Retained::new(),
        );
        assert_eq!(
            views(&pools),
            [
                (DP, "intel.com/a".into(), vec![d("0000:3b:02.0", true)]),
                (DRA, "intel.com/a".into(), vec![d("0000:3b:02.1", false)]),
            ]
        );
    }
}
