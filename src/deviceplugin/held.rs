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

/// Resource name → device ID → who holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldDevices {
    by_resource: BTreeMap<String, BTreeMap<String, Holder>>,
}

impl HeldDevices {
    pub fn from_list(list: &ListPodResourcesResponse) -> HeldDevices {
        let mut held = HeldDevices::default();
        for pod in &list.pod_resources {
            for container in &pod.containers {
                for devices in &container.devices {
                    let ids = held
                        .by_resource
                        .entry(devices.resource_name.clone())
                        .or_default();
                    for id in &devices.device_ids {
                        ids.insert(
                            id.clone(),
                            Holder {
                                namespace: pod.namespace.clone(),
                                pod: pod.name.clone(),
                                container: container.name.clone(),
                            },
                        );
                    }
                }
            }
        }
        held
    }

    pub fn holder(&self, resource: &str, id: &str) -> Option<&Holder> {
        self.by_resource.get(resource).and_then(|ids| ids.get(id))
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

/// Devices kept in a pool past the config, by resource name.
pub type Retained = BTreeMap<String, BTreeSet<String>>;

/// What a reload should serve: `wanted` (config + discovery), except that a
/// device a pod holds through a running pool, which `wanted` would drop from
/// that pool, stays in it as `Unhealthy` and leaves any other pool.
///
/// `held` is None when PodResources could not be asked: then only the
/// devices in `kept_before` stay kept. Returns the pools to serve and the
/// devices now kept. Pure.
pub fn keep_held(
    running: &[&ServedPool],
    wanted: &[ServedPool],
    held: Option<&HeldDevices>,
    kept_before: &Retained,
) -> (Vec<ServedPool>, Retained) {
    let mut out: BTreeMap<String, ServedPool> = wanted
        .iter()
        .map(|p| (p.resource_name.clone(), p.clone()))
        .collect();
    let mut kept = Retained::new();
    for old in running {
        for device in &old.devices {
            let is_held = match held {
                Some(held) => held.holder(&old.resource_name, &device.id).is_some(),
                None => kept_before
                    .get(&old.resource_name)
                    .is_some_and(|ids| ids.contains(&device.id)),
            };
            let still_here = out
                .get(&old.resource_name)
                .is_some_and(|p| p.device(&device.id).is_some());
            if !is_held || still_here {
                continue;
            }
            kept.entry(old.resource_name.clone())
                .or_default()
                .insert(device.id.clone());
            // not advertised twice: out of the pool it would move to
            for pool in out.values_mut() {
                if pool.resource_name != old.resource_name && pool.device(&device.id).is_some() {
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
                .entry(old.resource_name.clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deviceplugin::served::{test_pool, ServedDevice};
    use crate::kubelet_api::podresources::v1::{
        ContainerDevices, ContainerResources, PodResources,
    };

    fn device(id: &str) -> ServedDevice {
        ServedDevice {
            id: id.into(),
            healthy: true,
            links: Default::default(),
            numa_node: None,
            pf: None,
            vf_index: None,
            nodes: Vec::new(),
            info: Default::default(),
            device_info: None,
        }
    }

    fn pool(name: &str, ids: &[&str]) -> ServedPool {
        let mut pool = test_pool(ids.iter().map(|id| device(id)).collect(), false);
        pool.name = name.into();
        pool.resource_name = format!("intel.com/{name}");
        pool
    }

    fn held(resource: &str, ids: &[&str]) -> HeldDevices {
        HeldDevices::from_list(&ListPodResourcesResponse {
            pod_resources: vec![PodResources {
                name: "web-0".into(),
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

    fn view(pools: &[ServedPool]) -> Vec<(String, Vec<(String, bool)>)> {
        pools
            .iter()
            .map(|p| {
                let mut devices: Vec<(String, bool)> = p
                    .devices
                    .iter()
                    .map(|d| (d.id.clone(), d.healthy))
                    .collect();
                devices.sort();
                (p.resource_name.clone(), devices)
            })
            .collect()
    }

    fn d(id: &str, healthy: bool) -> (String, bool) {
        (id.into(), healthy)
    }

    #[test]
    fn a_held_device_moving_to_another_pool_stays_in_the_old_one_unhealthy() {
        let a = pool("a", &["01.0", "01.1"]);
        let wanted = [pool("a", &["01.0"]), pool("b", &["01.1", "02.0"])];
        let held = held("intel.com/a", &["01.1"]);
        let (pools, kept) = keep_held(&[&a], &wanted, Some(&held), &Retained::new());
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
        assert_eq!(kept["intel.com/a"], BTreeSet::from(["01.1".to_owned()]));
    }

    #[test]
    fn once_released_the_change_applies() {
        // the running pool already carries the kept device
        let mut a = pool("a", &["01.0", "01.1"]);
        a.devices[1] = a.devices[1].with_health(false);
        let wanted = [pool("a", &["01.0"]), pool("b", &["01.1"])];
        let before = Retained::from([("intel.com/a".into(), BTreeSet::from(["01.1".into()]))]);
        let nothing = HeldDevices::default();
        let (pools, kept) = keep_held(&[&a], &wanted, Some(&nothing), &before);
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
        let (pools, _) = keep_held(&[&a], &[], Some(&held), &Retained::new());
        assert_eq!(
            view(&pools),
            [("intel.com/a".into(), vec![d("01.0", false)])]
        );
    }

    #[test]
    fn unknown_holders_keep_only_what_was_kept_before() {
        let a = pool("a", &["01.0", "01.1", "01.2"]);
        let before = Retained::from([("intel.com/a".into(), BTreeSet::from(["01.2".into()]))]);
        let (pools, kept) = keep_held(&[&a], &[pool("a", &["01.0"])], None, &before);
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
            Some(&held),
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
}
