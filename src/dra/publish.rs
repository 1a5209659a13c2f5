//! From what the API server has to what the node should publish: the
//! ResourceSlice writes that get there. Pure: the caller lists the slices
//! of this node and driver (field selectors `spec.nodeName`, `spec.driver`),
//! applies the actions, and on a conflict lists again and starts over.

use super::slices::{next_generation, pool_slices, SliceContext, SliceError};
use crate::pool::Pool;
use k8s_openapi::api::resource::v1::ResourceSlice;
use std::collections::BTreeMap;

/// One write to the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceAction {
    Create(ResourceSlice),
    /// Carries the listed slice's `resourceVersion`, so a concurrent change
    /// is a conflict, not lost.
    Update(ResourceSlice),
    /// By name.
    Delete(String),
}

/// The highest generation this process published per DRA pool. A pool
/// republished after the kubelet deleted its slices goes on counting from
/// here instead of starting again at 1, so a consumer that still holds the
/// deleted slices (an informer's cache) never prefers them to the new ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generations(BTreeMap<String, i64>);

impl Generations {
    pub fn get(&self, pool: &str) -> i64 {
        self.0.get(pool).copied().unwrap_or(0)
    }
}

/// The slices `pools` should be published as, each pool at the generation
/// [`next_generation`] gives against what is published for it now:
/// unchanged devices keep the generation (a rescan that found the same),
/// anything else (a change, or slices that are gone) takes one above both
/// what is published and what this process published before.
pub fn desired_slices(
    ctx: &SliceContext<'_>,
    pools: &[&Pool],
    published: &[ResourceSlice],
    generations: &mut Generations,
) -> Result<Vec<ResourceSlice>, SliceError> {
    let mut desired = Vec::new();
    for pool in pools {
        let mut slices = pool_slices(ctx, pool, 0)?;
        let pool_name = slices
            .first()
            .map(|s| s.spec.pool.name.clone())
            .unwrap_or_default();
        let current: Vec<ResourceSlice> = published
            .iter()
            .filter(|s| s.spec.pool.name == pool_name)
            .cloned()
            .collect();
        let published_max = current.iter().map(|s| s.spec.pool.generation).max();
        let mut generation = next_generation(&current, &slices);
        if Some(generation) != published_max {
            generation = generation.max(generations.get(&pool_name) + 1);
        }
        generations.0.insert(pool_name.clone(), generation);
        for slice in &mut slices {
            slice.spec.pool.generation = generation;
        }
        desired.extend(slices);
    }
    Ok(desired)
}

/// The writes that turn `published` into `desired`: create the new names,
/// update the changed ones, delete the rest (a pool that went away, or
/// shrank to fewer slices).
pub fn reconcile(published: &[ResourceSlice], desired: Vec<ResourceSlice>) -> Vec<SliceAction> {
    let mut existing: BTreeMap<String, &ResourceSlice> = published
        .iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, s)))
        .collect();
    let mut actions = Vec::new();
    for mut slice in desired {
        let name = slice.metadata.name.clone().unwrap_or_default();
        match existing.remove(&name) {
            None => actions.push(SliceAction::Create(slice)),
            Some(current) => {
                if current.spec != slice.spec
                    || current.metadata.owner_references != slice.metadata.owner_references
                {
                    slice.metadata.resource_version = current.metadata.resource_version.clone();
                    actions.push(SliceAction::Update(slice));
                }
            }
        }
    }
    actions.extend(existing.into_keys().map(SliceAction::Delete));
    actions
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dra::slices::NodeRef;
    use crate::dra::standin::ApiServerStandin;
    use crate::pool::PoolDevice;
    use std::collections::HashMap;

    fn vf(i: u32) -> PoolDevice {
        let id = format!(
            "0000:{:02x}:{:02x}.{}",
            0x3b + i / 100,
            (i % 100) / 8 + 1,
            i % 8
        );
        PoolDevice {
            vf_index: Some(i % 100),
            numa_node: None,
            link_type: None,
            ..crate::pool::test_vf(&id)
        }
    }

    fn pool(vfs: u32) -> Pool {
        Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices: (0..vfs).map(vf).collect(),
        }
    }

    /// List, reconcile, apply: what the publisher loop does once.
    fn publish(
        api: &ApiServerStandin,
        generations: &mut Generations,
        pools: &[&Pool],
    ) -> Vec<SliceAction> {
        let node = NodeRef {
            name: "worker-1".into(),
            uid: "node-uid".into(),
        };
        let roots = HashMap::new();
        let ctx = SliceContext {
            driver: "sriov-rs.invalid",
            node: &node,
            pcie_roots: &roots,
        };
        let published = api.list_slices(Some("worker-1"), Some("sriov-rs.invalid"));
        let desired = desired_slices(&ctx, pools, &published, generations).unwrap();
        let actions = reconcile(&published, desired);
        for action in &actions {
            match action.clone() {
                SliceAction::Create(s) => {
                    api.create_slice(s).unwrap();
                }
                SliceAction::Update(s) => {
                    api.update_slice(s).unwrap();
                }
                SliceAction::Delete(name) => api.delete_slice(&name).unwrap(),
            }
        }
        actions
    }

    fn generations_of(api: &ApiServerStandin) -> Vec<(i64, i64, usize)> {
        api.list_slices(None, None)
            .iter()
            .map(|s| {
                (
                    s.spec.pool.generation,
                    s.spec.pool.resource_slice_count,
                    s.spec.devices.as_ref().map_or(0, Vec::len),
                )
            })
            .collect()
    }

    #[test]
    fn publish_republish_after_kubelet_restart_and_shrink() {
        let api = ApiServerStandin::new();
        let mut generations = Generations::default();
        let g = &mut generations;
        let big = pool(300);
        let actions = publish(&api, g, &[&big]);
        assert_eq!(actions.len(), 3);
        assert!(actions.iter().all(|a| matches!(a, SliceAction::Create(_))));
        assert_eq!(
            generations_of(&api),
            vec![(1, 3, 128), (1, 3, 128), (1, 3, 44)]
        );

        // nothing changed: nothing written
        assert!(publish(&api, g, &[&big]).is_empty());

        // the kubelet restarted and deleted the node's slices: all back,
        // one generation on (a cache may still hold the deleted ones)
        assert_eq!(api.delete_node_slices("worker-1"), 3);
        assert_eq!(publish(&api, g, &[&big]).len(), 3);
        assert_eq!(
            generations_of(&api),
            vec![(2, 3, 128), (2, 3, 128), (2, 3, 44)]
        );

        // a rescan found 100 VFs: one slice updated at the next
        // generation, two deleted
        let small = pool(100);
        let actions = publish(&api, g, &[&small]);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, SliceAction::Update(_)))
                .count(),
            1
        );
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, SliceAction::Delete(_)))
                .count(),
            2
        );
        assert_eq!(generations_of(&api), vec![(3, 1, 100)]);

        // the pool moved away from DRA: its slice goes
        let actions = publish(&api, g, &[]);
        assert_eq!(actions.len(), 1);
        assert!(api.list_slices(None, None).is_empty());
    }

    #[test]
    fn an_update_from_a_stale_list_is_a_conflict() {
        let api = ApiServerStandin::new();
        publish(&api, &mut Generations::default(), &[&pool(10)]);
        let stale = api.list_slices(None, None);
        // someone else (a second daemon instance) wrote in between
        let mut other = stale[0].clone();
        other.spec.pool.generation = 9;
        api.update_slice(other).unwrap();
        let mut mine = stale[0].clone();
        mine.spec.pool.generation = 2;
        assert!(matches!(
            api.update_slice(mine),
            Err(crate::dra::standin::StandinError::Conflict { .. })
        ));
    }
}
