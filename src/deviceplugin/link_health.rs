//! Device health from link state (pure): a VF cannot pass traffic while its
//! PF has no carrier or is down, nor while its own netdev, up on the host,
//! has no carrier. Applied to a pool as served, on top of the health it
//! already has (a device kept for a pod is Unhealthy whatever its links).

use super::node_watch::{link_usable, NodeEvent};
use super::served::ServedPool;
use crate::netlink::LinkStatus;
use std::collections::HashMap;

/// The host's links as the node watch last reported them.
#[derive(Debug, Default, Clone)]
pub struct LinkStates {
    by_index: HashMap<u32, LinkStatus>,
    by_name: HashMap<String, u32>,
}

impl LinkStates {
    /// Take in a node event; true if any link changed.
    pub fn update(&mut self, event: &NodeEvent) -> bool {
        match event {
            NodeEvent::LinksResynced(all) => {
                self.by_index = all.iter().map(|s| (s.index, s.clone())).collect();
            }
            NodeEvent::Links { changed, gone } => {
                for index in gone {
                    self.by_index.remove(index);
                }
                for status in changed {
                    self.by_index.insert(status.index, status.clone());
                }
            }
            NodeEvent::DevicesChanged { .. } | NodeEvent::Lost => return false,
        }
        self.by_name = self
            .by_index
            .values()
            .map(|s| (s.name.clone(), s.index))
            .collect();
        true
    }

    fn get(&self, name: &str) -> Option<&LinkStatus> {
        self.by_name.get(name).and_then(|i| self.by_index.get(i))
    }

    /// Whether the named link can carry traffic; a link the host does not
    /// have (a VF's netdev in a pod) says nothing against it.
    pub fn usable(&self, name: &str, is_pf: bool) -> bool {
        self.get(name)
            .is_none_or(|status| link_usable(status, is_pf))
    }
}

/// `pool` with each device Unhealthy whose links cannot carry traffic; the
/// pool unchanged if it opted out (`linkHealth: false`).
pub fn apply(pool: &ServedPool, links: &LinkStates) -> ServedPool {
    if !pool.link_health {
        return pool.clone();
    }
    let devices = pool
        .devices
        .iter()
        .map(|device| {
            let pf_ok = device
                .links
                .pf
                .as_deref()
                .is_none_or(|pf| links.usable(pf, true));
            let own_ok = device
                .links
                .own
                .as_deref()
                .is_none_or(|own| links.usable(own, false));
            device.with_health(device.healthy && pf_ok && own_ok)
        })
        .collect();
    pool.with_devices(devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deviceplugin::served::{test_device, test_pool, DeviceLinks, ServedDevice};

    use crate::deviceplugin::node_watch::test_status as status;

    fn device(id: &str, pf: &str, own: Option<&str>, healthy: bool) -> ServedDevice {
        ServedDevice {
            healthy,
            links: DeviceLinks {
                pf: Some(pf.into()),
                own: own.map(Into::into),
            },
            ..test_device(id)
        }
    }

    fn pool(link_health: bool) -> ServedPool {
        let mut pool = test_pool(
            vec![
                device("0000:3b:01.0", "ens1f0", Some("ens1f0v0"), true),
                device("0000:3b:01.1", "ens1f0", None, true),
                device("0000:86:01.0", "ens4f0", Some("ens4f0v0"), true),
                device("0000:86:01.1", "ens4f0", None, false),
            ],
            false,
        );
        pool.link_health = link_health;
        pool
    }

    fn health(pool: &ServedPool) -> Vec<bool> {
        pool.devices.iter().map(|d| d.healthy).collect()
    }

    #[test]
    fn a_pf_without_carrier_makes_its_vfs_unhealthy_and_only_them() {
        let mut links = LinkStates::default();
        links.update(&NodeEvent::LinksResynced(vec![
            status(3, "ens1f0", true, true),
            status(4, "ens4f0", true, true),
            status(5, "ens1f0v0", false, false),
        ]));
        assert_eq!(
            health(&apply(&pool(true), &links)),
            [true, true, true, false]
        );
        links.update(&NodeEvent::Links {
            changed: vec![status(3, "ens1f0", true, false)],
            gone: vec![],
        });
        assert_eq!(
            health(&apply(&pool(true), &links)),
            [false, false, true, false]
        );
        // opted out: the pool as it was
        assert_eq!(
            health(&apply(&pool(false), &links)),
            [true, true, true, false]
        );
        // carrier back
        links.update(&NodeEvent::Links {
            changed: vec![status(3, "ens1f0", true, true)],
            gone: vec![],
        });
        assert_eq!(
            health(&apply(&pool(true), &links)),
            [true, true, true, false]
        );
    }

    #[test]
    fn a_vf_netdev_up_without_carrier_fails_an_idle_one_does_not() {
        let mut links = LinkStates::default();
        links.update(&NodeEvent::LinksResynced(vec![
            status(3, "ens1f0", true, true),
            status(5, "ens1f0v0", false, false),
        ]));
        assert!(apply(&pool(true), &links).devices[0].healthy);
        links.update(&NodeEvent::Links {
            changed: vec![status(5, "ens1f0v0", true, false)],
            gone: vec![],
        });
        assert!(!apply(&pool(true), &links).devices[0].healthy);
        // gone from the host (into a pod): its PF decides
        links.update(&NodeEvent::Links {
            changed: vec![],
            gone: vec![5],
        });
        assert!(apply(&pool(true), &links).devices[0].healthy);
    }
}
