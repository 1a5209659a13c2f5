//! GetPreferredAllocation: which of the available devices a container
//! should get. The kubelet treats the answer as a hint; we make it a good
//! one: every must-include device, one NUMA node when the request fits on
//! one, then the pool's policy:
//! - `pack` (default): as few PFs as possible, best fit first, so whole PFs
//!   stay free for large requests;
//! - `spread`: round-robin over PFs, so one PF's failure hits as few of the
//!   container's devices as possible.
//!
//! Pure and deterministic: ties break on PF address, then VF index, then ID.

use super::served::{ServedDevice, ServedPool};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One container's preferred devices, in the order we would hand them out.
pub fn preferred_allocation(
    pool: &ServedPool,
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::new();
    let mut taken: HashSet<&str> = HashSet::new();
    for id in must_include {
        if taken.insert(id.as_str()) {
            chosen.push(id.clone());
        }
    }
    if chosen.len() >= size {
        return chosen;
    }
    let candidates: Vec<&String> = available
        .iter()
        .filter(|id| !taken.contains(id.as_str()))
        .collect::<Vec<_>>();
    let mut seen = HashSet::new();
    let candidates: Vec<&String> = candidates
        .into_iter()
        .filter(|id| seen.insert(id.as_str()))
        .collect();
    let numa = |id: &str| pool.device(id).and_then(|d| d.numa_node);
    let need = size - chosen.len();

    // NUMA first. With no must-include device: the node with the most
    // candidates among those that can complete the request (lowest node on
    // ties), else the node with the most candidates. With must-include
    // devices on one node: that node. With must-include devices on several
    // nodes, or without NUMA affinity: no node is preferred.
    let must_nodes: HashSet<Option<u32>> = chosen.iter().map(|id| numa(id)).collect();
    let mut per_node: BTreeMap<u32, usize> = BTreeMap::new();
    for id in &candidates {
        if let Some(node) = numa(id) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let target = match must_nodes.iter().collect::<Vec<_>>().as_slice() {
        [Some(node)] => Some(*node),
        [] => per_node
            .iter()
            .max_by(|a, b| {
                let fits = |n: usize| n >= need;
                (fits(*a.1), a.1, std::cmp::Reverse(a.0)).cmp(&(
                    fits(*b.1),
                    b.1,
                    std::cmp::Reverse(b.0),
                ))
            })
            .map(|(node, _)| *node),
        _ => None,
    };
    let (near, far): (Vec<&String>, Vec<&String>) = candidates
        .iter()
        .partition(|id| target.is_none() || numa(id) == target);

    for tier in [near, far] {
        let missing = size - chosen.len();
        if missing == 0 {
            break;
        }
        let picked = if pool.spread {
            spread(pool, &tier, &chosen, missing)
        } else {
            pack(pool, &tier, &chosen, missing)
        };
        chosen.extend(picked);
    }
    chosen
}

/// Candidates grouped by PF (devices without a PF form one group each),
/// each group sorted by VF index then ID.
fn by_pf<'a>(pool: &ServedPool, ids: &[&'a String]) -> BTreeMap<String, Vec<&'a String>> {
    let mut groups: BTreeMap<String, Vec<&'a String>> = BTreeMap::new();
    for id in ids {
        let key = pool
            .device(id)
            .and_then(|d| d.pf.as_ref().map(|pf| pf.to_string()))
            .unwrap_or_else(|| format!("~{id}")); // sorts after real PF addresses
        groups.entry(key).or_default().push(id);
    }
    let order = |id: &String| {
        let vf = pool.device(id).and_then(|d: &ServedDevice| d.vf_index);
        (vf.unwrap_or(u32::MAX), id.clone())
    };
    for group in groups.values_mut() {
        group.sort_by_key(|id| order(id));
    }
    groups
}

fn pf_use(pool: &ServedPool, chosen: &[String]) -> HashMap<String, usize> {
    let mut used = HashMap::new();
    for id in chosen {
        if let Some(pf) = pool.device(id).and_then(|d| d.pf.as_ref()) {
            let pf = pf.to_string();
            *used.entry(pf).or_default() += 1;
        }
    }
    used
}

fn pack(pool: &ServedPool, ids: &[&String], chosen: &[String], need: usize) -> Vec<String> {
    let used = pf_use(pool, chosen);
    let mut groups: Vec<(String, Vec<&String>)> = by_pf(pool, ids).into_iter().collect();
    // PFs the container already uses first (most used first); then PFs
    // that can finish the request alone, smallest first (best fit); then
    // the largest remaining ones.
    groups.sort_by_key(|(pf, members)| {
        let in_use = used.get(pf).copied().unwrap_or(0);
        let fits = members.len() >= need;
        let size_key = if fits {
            members.len() as isize
        } else {
            -(members.len() as isize)
        };
        (
            in_use == 0,
            std::cmp::Reverse(in_use),
            !fits,
            size_key,
            pf.clone(),
        )
    });
    groups
        .into_iter()
        .flat_map(|(_, members)| members)
        .take(need)
        .cloned()
        .collect()
}

fn spread(pool: &ServedPool, ids: &[&String], chosen: &[String], need: usize) -> Vec<String> {
    let used = pf_use(pool, chosen);
    let mut groups: Vec<(String, Vec<&String>)> = by_pf(pool, ids).into_iter().collect();
    // Least-used PFs first, then the ones with the most free devices.
    groups.sort_by_key(|(pf, members)| {
        (
            used.get(pf).copied().unwrap_or(0),
            std::cmp::Reverse(members.len()),
            pf.clone(),
        )
    });
    let mut picked = Vec::new();
    let mut round = 0;
    while picked.len() < need {
        let mut any = false;
        for (_, members) in &groups {
            if let Some(id) = members.get(round) {
                any = true;
                if picked.len() < need {
                    picked.push((*id).clone());
                }
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    picked
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::served::{test_pool, ServedDevice};
    use super::*;

    /// PF A (0000:3b:00.0, NUMA 0) VFs 0-3 at 3b:01.0-3; PF B (0000:5e:00.0,
    /// NUMA 0) VFs 0-1 at 5e:01.0-1; PF C (0000:d8:00.0, NUMA 1) VFs 0-2.
    fn node(spread: bool) -> ServedPool {
        let mut devices = Vec::new();
        for (pf, bus, numa, count) in [
            ("0000:3b:00.0", "3b", 0, 4),
            ("0000:5e:00.0", "5e", 0, 2),
            ("0000:d8:00.0", "d8", 1, 3),
        ] {
            for vf in 0..count {
                devices.push(ServedDevice {
                    id: compact_str::format_compact!("0000:{bus}:01.{vf}"),
                    healthy: true,
                    links: Default::default(),
                    numa_node: Some(numa),
                    pf: Some(pf.into()),
                    vf_index: Some(vf),
                    nodes: vec![],
                    info: Default::default(),
                    device_info: None,
                });
            }
        }
        test_pool(devices, spread)
    }

    fn all(pool: &ServedPool) -> Vec<String> {
        // reversed, so the answer cannot just echo the input order
        pool.device_ids().rev().map(String::from).collect()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pack_prefers_the_smallest_pf_that_fits_on_the_biggest_numa_node() {
        let pool = node(false);
        // NUMA 0 has 6 candidates; PF B (2 free) fits 2 exactly.
        assert_eq!(
            preferred_allocation(&pool, &all(&pool), &[], 2),
            ids(&["0000:5e:01.0", "0000:5e:01.1"])
        );
        // 3 fit in PF A only on NUMA 0 (PF B is too small).
        assert_eq!(
            preferred_allocation(&pool, &all(&pool), &[], 3),
            ids(&["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"])
        );
    }

    #[test]
    fn must_include_pins_the_numa_node_and_pack_stays_on_its_pf() {
        let pool = node(false);
        let got = preferred_allocation(&pool, &all(&pool), &ids(&["0000:d8:01.2"]), 2);
        assert_eq!(got, ids(&["0000:d8:01.2", "0000:d8:01.0"]));
        let got = preferred_allocation(&pool, &all(&pool), &ids(&["0000:3b:01.3"]), 3);
        assert_eq!(got, ids(&["0000:3b:01.3", "0000:3b:01.0", "0000:3b:01.1"]));
    }

    #[test]
    fn spread_round_robins_over_pfs_of_one_numa_node() {
        let pool = node(true);
        assert_eq!(
            preferred_allocation(&pool, &all(&pool), &[], 3),
            ids(&["0000:3b:01.0", "0000:5e:01.0", "0000:3b:01.1"])
        );
        // A must-include device's PF is used last.
        assert_eq!(
            preferred_allocation(&pool, &all(&pool), &ids(&["0000:3b:01.2"]), 2),
            ids(&["0000:3b:01.2", "0000:5e:01.0"])
        );
    }

    #[test]
    fn spills_to_other_numa_nodes_only_when_one_is_not_enough() {
        let pool = node(false);
        let got = preferred_allocation(&pool, &all(&pool), &[], 8);
        assert_eq!(got.len(), 8);
        let numa0 = got.iter().take(6).all(|id| !id.starts_with("0000:d8"));
        assert!(numa0, "{got:?}");
        assert_eq!(&got[6..], &ids(&["0000:d8:01.0", "0000:d8:01.1"])[..]);
    }

    #[test]
    fn respects_the_available_list_and_oversized_must_include() {
        let pool = node(false);
        let available = ids(&["0000:3b:01.1", "0000:d8:01.0", "0000:d8:01.1"]);
        assert_eq!(
            preferred_allocation(&pool, &available, &[], 2),
            ids(&["0000:d8:01.0", "0000:d8:01.1"])
        );
        let must = ids(&["0000:3b:01.1", "0000:d8:01.0"]);
        assert_eq!(preferred_allocation(&pool, &available, &must, 2), must);
        // more than available: everything, without duplicates
        assert_eq!(preferred_allocation(&pool, &available, &[], 5).len(), 3);
    }
}
