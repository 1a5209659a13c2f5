//! Putting devices into pools: upstream's "first match wins".

use std::borrow::Borrow;
use std::collections::HashSet;

use super::facts::DeviceFacts;
use super::matching::{eligible, matches};
use super::model::Resource;

/// One device in a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolMember {
    /// Index into the `devices` slice given to [`assign_pools`].
    pub device: usize,
    /// The device's ID (`DeviceFacts::id`).
    pub id: String,
    /// Index of the selector object that took it (decides `needVhostNet`, `isRdma` mounts).
    pub selector: usize,
}

/// A non-empty pool: which resource, and its devices in the order they were taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAssignment {
    /// Index into the `resources` slice given to [`assign_pools`].
    pub resource: usize,
    pub members: Vec<PoolMember>,
}

impl PoolAssignment {
    /// The member IDs, in order.
    pub fn device_ids(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.id.as_str()).collect()
    }
}

/// Assign devices to pools the way upstream does: resource by resource in config order, within a
/// resource selector by selector, within a selector in the order of `devices` (give them in
/// discovery order, i.e. sorted by PCI address). A device already in a pool is skipped, so it
/// lands in the first pool that wants it. Pools that end up empty are left out (upstream
/// starts no server for them).
///
/// Generic over anything that can lend [`DeviceFacts`], so the discovery layer can pass its own
/// device records.
pub fn assign_pools<D: Borrow<DeviceFacts>>(
    resources: &[Resource],
    devices: &[D],
) -> Vec<PoolAssignment> {
    let mut taken: HashSet<&str> = HashSet::new();
    let mut pools = Vec::new();
    for (r, resource) in resources.iter().enumerate() {
        let mut members = Vec::new();
        for (s, selector) in resource.selectors.iter().enumerate() {
            for (d, device) in devices.iter().enumerate() {
                let facts: &DeviceFacts = device.borrow();
                if !eligible(resource.device_type, facts) || !matches(selector, facts) {
                    continue;
                }
                // Already in a pool (an earlier resource, or an earlier selector of this one).
                if !taken.insert(facts.id.as_str()) {
                    continue;
                }
                members.push(PoolMember {
                    device: d,
                    id: facts.id.to_string(),
                    selector: s,
                });
            }
        }
        if !members.is_empty() {
            pools.push(PoolAssignment {
                resource: r,
                members,
            });
        }
    }
    pools
}
