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
