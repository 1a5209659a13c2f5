//! A pool's figures, as the kubelet counts them (pure).

use super::super::held::HeldDevices;
use super::super::served::ServedPool;
use std::collections::HashMap;

/// One pool's device counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFigures {
    /// Every device listed on ListAndWatch (the kubelet's capacity).
    pub capacity: u64,
    /// The Healthy ones (the kubelet's allocatable, held devices included).
    pub allocatable: u64,
    /// The Unhealthy ones: link down, or kept only because a pod holds it.
    pub unhealthy: u64,
    /// The ones pods hold according to PodResources; None when it was not
    /// asked or did not answer.
    pub allocated: Option<u64>,
}

impl PoolFigures {
    pub fn of(pool: &ServedPool, held: Option<&HeldDevices>) -> PoolFigures {
        let capacity = pool.devices.len() as u64;
        let allocatable = pool.devices.iter().filter(|d| d.healthy).count() as u64;
        let allocated = held.map(|held| {
            pool.devices
                .iter()
                .filter(|d| held.holder(&pool.resource_name, &d.id).is_some())
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
    use crate::deviceplugin::served::{test_pool, ServedDevice};

    fn device(id: &str, healthy: bool) -> ServedDevice {
        ServedDevice {
            id: id.into(),
            healthy,
            links: Default::default(),
            numa_node: None,
            pf: None,
            vf_index: None,
            nodes: Vec::new(),
            info: Default::default(),
            device_info: None,
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
        let list = held("intel.com/a", &["01.1", "01.2"]);
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
        let other = held("intel.com/b", &["01.0"]);
        assert_eq!(PoolFigures::of(&pool, Some(&other)).allocated, Some(0));
        assert_eq!(PoolFigures::of(&pool, None).allocated, None);
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
