//! A pool's figures, as the kubelet counts them, and who holds its
//! devices (pure).

use super::super::held::{HeldDevices, Holder};
use super::super::served::ServedPool;
use std::collections::{BTreeMap, HashMap};

/// Device ID → the pod holding it, for one pool.
pub type Holders = HashMap<String, Holder>;

/// The holders of a device plugin pool's devices, from PodResources.
pub fn device_plugin_holders(held: &HeldDevices, resource: &str) -> Holders {
    held.of_resource(resource)
        .map(|(id, holder)| (id.to_owned(), holder.clone()))
        .collect()
}

/// The holders of a DRA pool's devices: every device of a claim the kubelet
/// prepared here (`prepared`: (resource name, device ID) → the claim's
/// namespace), with the pod PodResources names for it when the kubelet
/// reports DRA claims there (`held`), else no pod. Prepared claims are the
/// kubelet's own word on what pods on this node use, with or without
/// PodResources' DRA support.
pub fn dra_holders(
    prepared: &BTreeMap<(String, String), String>,
    held: Option<&HeldDevices>,
    driver: &str,
    node: &str,
    resource: &str,
) -> Holders {
    prepared
        .iter()
        .filter(|((r, _), _)| r == resource)
        .map(|((_, id), namespace)| {
            let holder = held
                .and_then(|held| held.dra_holder_of(driver, node, resource, id))
                .cloned()
                .unwrap_or_else(|| Holder {
                    namespace: namespace.clone(),
                    pod: String::new(),
                    container: String::new(),
                });
            (id.clone(), holder)
        })
        .collect()
}

/// One pool's device counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFigures {
    /// Every device listed on ListAndWatch or published (the capacity).
    pub capacity: u64,
    /// The Healthy ones (the kubelet's allocatable, held devices included).
    pub allocatable: u64,
    /// The Unhealthy ones: link down, or kept only because a pod holds it.
    pub unhealthy: u64,
    /// The ones pods hold; None when that is not known (PodResources was
    /// not asked or did not answer).
    pub allocated: Option<u64>,
}

impl PoolFigures {
    pub fn of(pool: &ServedPool, holders: Option<&Holders>) -> PoolFigures {
        let capacity = pool.devices.len() as u64;
        let allocatable = pool.devices.iter().filter(|d| d.healthy).count() as u64;
        let allocated = holders.map(|holders| {
            pool.devices
                .iter()
                .filter(|d| holders.contains_key(d.id.as_str()))
                .count() as u64
        });
        PoolFigures {
            capacity,
            allocatable,
            unhealthy: capacity - allocatable,
            allocated,
        }
    }
}

/// Devices in both `old` and `new` whose health changed, counted by the
/// new health (`healthy`, `unhealthy`); zero counts left out.
pub fn health_transitions(old: &ServedPool, new: &ServedPool) -> Vec<(&'static str, u64)> {
    let before: HashMap<&str, bool> = old
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.healthy))
        .collect();
    let (mut healthy, mut unhealthy) = (0, 0);
    for device in &new.devices {
        match before.get(device.id.as_str()) {
            Some(&was) if was != device.healthy => {
                if device.healthy {
                    healthy += 1;
                } else {
                    unhealthy += 1;
                }
            }
            _ => {}
        }
    }
    [("healthy", healthy), ("unhealthy", unhealthy)]
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deviceplugin::held::held_by_pod;
    use crate::deviceplugin::served::{test_device, test_pool, ServedDevice};
    use crate::kubelet_api::podresources::v1::{
        ClaimResource, ContainerResources, DynamicResource, ListPodResourcesResponse, PodResources,
    };

    fn device(id: &str, healthy: bool) -> ServedDevice {
        ServedDevice {
            healthy,
            ..test_device(id)
        }
    }

    fn pool(devices: &[(&str, bool)]) -> ServedPool {
        let mut pool = test_pool(
            devices.iter().map(|(id, h)| device(id, *h)).collect(),
            false,
        );
        pool.resource_name = "intel.com/a".into();
        pool
    }

    fn held(resource: &str, ids: &[&str]) -> HeldDevices {
        held_by_pod("web-0", resource, ids)
    }

    #[test]
    fn figures_count_health_and_what_pods_hold_in_this_pool_only() {
        let pool = pool(&[("01.0", true), ("01.1", true), ("01.2", false)]);
        // a held device counts whatever its health (01.2: kept for its pod)
        let list = device_plugin_holders(&held("intel.com/a", &["01.1", "01.2"]), "intel.com/a");
        let figures = PoolFigures::of(&pool, Some(&list));
        assert_eq!(
            figures,
            PoolFigures {
                capacity: 3,
                allocatable: 2,
                unhealthy: 1,
                allocated: Some(2),
            }
        );
        // the same ID held under another resource is not this pool's
        let other = device_plugin_holders(&held("intel.com/b", &["01.0"]), "intel.com/a");
        assert_eq!(PoolFigures::of(&pool, Some(&other)).allocated, Some(0));
        assert_eq!(PoolFigures::of(&pool, None).allocated, None);
    }

    #[test]
    fn dra_devices_are_held_by_prepared_claims_with_the_pod_when_podresources_names_it() {
        let prepared = BTreeMap::from([
            (
                ("intel.com/a".to_owned(), "01.0".to_owned()),
                "ran".to_owned(),
            ),
            (
                ("intel.com/a".to_owned(), "01.1".to_owned()),
                "core".to_owned(),
            ),
            (
                ("intel.com/b".to_owned(), "01.2".to_owned()),
                "ran".to_owned(),
            ),
        ]);
        let without = dra_holders(
            &prepared,
            None,
            "sriov-rs.invalid",
            "worker-1",
            "intel.com/a",
        );
        assert_eq!(without.len(), 2, "{without:?}");
        assert_eq!(
            (
                without["01.1"].namespace.as_str(),
                without["01.1"].pod.as_str()
            ),
            ("core", "")
        );
        // PodResources with DRA support names the pod of 01.0
        let mut list = ListPodResourcesResponse::default();
        list.pod_resources.push(PodResources {
            name: "du-0".into(),
            namespace: "ran".into(),
            cpu_ids: Vec::new(),
            memory: Vec::new(),
            containers: vec![ContainerResources {
                name: "main".into(),
                dynamic_resources: vec![DynamicResource {
                    claim_name: "net".into(),
                    claim_namespace: "ran".into(),
                    claim_resources: vec![ClaimResource {
                        driver_name: "sriov-rs.invalid".into(),
                        pool_name: "worker-1/intel.com/a".into(),
                        device_name: "01-0".into(),
                        ..Default::default()
                    }],
                }],
                ..Default::default()
            }],
        });
        let held = HeldDevices::from_list(&list);
        let with = dra_holders(
            &prepared,
            Some(&held),
            "sriov-rs.invalid",
            "worker-1",
            "intel.com/a",
        );
        assert_eq!(
            (with["01.0"].namespace.as_str(), with["01.0"].pod.as_str()),
            ("ran", "du-0")
        );
        assert_eq!(with["01.1"].pod, "");
        let pool = pool(&[("01.0", true), ("01.1", true), ("01.3", true)]);
        assert_eq!(PoolFigures::of(&pool, Some(&with)).allocated, Some(2));
    }

    #[test]
    fn only_devices_in_both_values_make_transitions() {
        let old = pool(&[("01.0", true), ("01.1", true), ("01.2", false)]);
        let new = pool(&[
            ("01.0", false),
            ("01.1", true),
            ("01.2", true),
            ("01.3", false),
        ]);
        assert_eq!(
            health_transitions(&old, &new),
            vec![("healthy", 1), ("unhealthy", 1)]
        );
        assert!(health_transitions(&old, &old).is_empty());
        let gone = pool(&[]);
        assert!(health_transitions(&old, &gone).is_empty());
    }
}
