//! Which devices this node serves through DRA, by the names the scheduler
//! uses (DRA pool name, device name), each with its served form from the
//! device plugin's `served` module, so Prepare hands out what Allocate
//! would. Pure.

use super::names::device_name;
use super::slices::pool_name;
use crate::deviceplugin::served::{ServedDevice, ServedPool};
use std::collections::HashMap;
use std::sync::Arc;

/// One device as Prepare finds it.
#[derive(Debug, Clone)]
pub struct DraDevice {
    pub pool: Arc<ServedPool>,
    /// Its ID in the pool (the PCI address).
    pub id: String,
}

impl DraDevice {
    pub fn served(&self) -> Option<&ServedDevice> {
        self.pool.device(&self.id)
    }
}

/// The node's DRA pools: (DRA pool name, device name) → device.
#[derive(Debug, Clone, Default)]
pub struct DraInventory {
    pub node: String,
    devices: HashMap<(String, String), DraDevice>,
}

impl DraInventory {
    /// Index `pools` as [`super::slices::pool_slices`] names them. A device
    /// whose ID has no label form is left out (the slices refuse its pool).
    pub fn new(node: &str, pools: &[Arc<ServedPool>]) -> Self {
        let mut devices = HashMap::new();
        for pool in pools {
            let Some(pool_name) = pool_name(node, &pool.resource_name) else {
                tracing::warn!(pool = %pool.resource_name, node, "no valid DRA pool name: not served through DRA");
                continue;
            };
            for id in pool.device_ids() {
                let Some(name) = device_name(id) else {
                    tracing::warn!(pool = %pool.resource_name, device = id, "no DNS-label form: not served through DRA");
                    continue;
                };
                devices.insert(
                    (pool_name.clone(), name),
                    DraDevice {
                        pool: pool.clone(),
                        id: id.to_owned(),
                    },
                );
            }
        }
        DraInventory {
            node: node.to_owned(),
            devices,
        }
    }

    /// Every device's health as the pools carry it (the same signal
    /// ListAndWatch reports), for the health stream, sorted by pool and name.
    pub fn health_reports(&self, checked_at: i64) -> Vec<super::service::DeviceHealthReport> {
        let mut reports: Vec<_> = self
            .devices
            .iter()
            .map(|((pool, device), dra)| {
                let healthy = dra.served().is_some_and(|d| d.healthy);
                super::service::DeviceHealthReport {
                    pool: pool.clone(),
                    device: device.clone(),
                    healthy,
                    checked_at,
                    message: String::new(),
                }
            })
            .collect();
        reports.sort_by(|a, b| (&a.pool, &a.device).cmp(&(&b.pool, &b.device)));
        reports
    }

    pub fn get(&self, pool: &str, device: &str) -> Option<&DraDevice> {
        self.devices.get(&(pool.to_owned(), device.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::deviceplugin::served::{test_device, test_pool};

    fn device(id: &str, healthy: bool) -> ServedDevice {
        ServedDevice {
            healthy,
            ..test_device(id)
        }
    }

    #[test]
    fn devices_by_dra_names_and_their_health() {
        let pool = test_pool(
            vec![device("0000:3b:02.1", false), device("0000:3b:02.0", true)],
            false,
        );
        let inventory = DraInventory::new("worker-1", &[Arc::new(pool)]);
        assert_eq!(inventory.len(), 2);
        let found = inventory
            .get("worker-1/intel.com/sriov-net", "0000-3b-02-1")
            .unwrap();
        assert_eq!(found.id, "0000:3b:02.1");
        assert!(inventory
            .get("worker-2/intel.com/sriov-net", "0000-3b-02-1")
            .is_none());
        let reports = inventory.health_reports(42);
        let summary: Vec<(&str, bool, i64)> = reports
            .iter()
            .map(|r| (r.device.as_str(), r.healthy, r.checked_at))
            .collect();
        assert_eq!(
            summary,
            [("0000-3b-02-0", true, 42), ("0000-3b-02-1", false, 42)]
        );
    }
}
