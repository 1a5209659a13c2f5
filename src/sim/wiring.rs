//! The simulated node's real interfaces: for each PF a "wire" network
//! namespace holding a bridge, and a veth pair per netdev whose host end
//! carries the PF/VF netdev name and whose peer is a port of that bridge.
//! So two pods holding VFs of one PF can reach each other, as through the
//! NIC's embedded switch.

use super::model::{SimNode, SimPf, WIRE_BRIDGE};
use super::tree::Ifindexes;
use crate::netlink::{LinkOps, Netlink, NetlinkError};
use crate::netns::{self, NetnsError};
use std::os::fd::AsFd;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("simulated PF {pf}: {source}")]
    Netlink {
        pf: String,
        #[source]
        source: NetlinkError,
    },
    #[error("simulated PF {pf}: {source}")]
    Netns {
        pf: String,
        #[source]
        source: NetnsError,
    },
    #[error("simulated PF {pf}: link {name} vanished right after it was created")]
    Vanished { pf: String, name: String },
    #[error(
        "netdev {name} already exists on this host: destroy the old simulated node \
         (sriovctl sim destroy) or pick other names in the layout"
    )]
    NameTaken { name: String },
}

fn pf_label(pf: &SimPf) -> String {
    pf.address.to_string()
}

/// Create every namespace and link of the node; returns each host-side
/// netdev's ifindex. On error the caller runs `teardown`.
pub fn apply(node: &SimNode, host: &mut Netlink) -> Result<Ifindexes, WiringError> {
    // Check all names first: failing before touching anything is kinder
    // than a half-built node.
    for netdev in node.netdevs() {
        let taken = host
            .link_by_name(&netdev.name)
            .map_err(|source| WiringError::Netlink {
                pf: "-".into(),
                source,
            })?;
        if taken.is_some() {
            return Err(WiringError::NameTaken {
                name: netdev.name.clone(),
            });
        }
    }
    let mut ifindexes = Ifindexes::new();
    for pf in &node.pfs {
        if pf.netdevs().next().is_some() {
            wire_pf(pf, host, &mut ifindexes)?;
        }
    }
    Ok(ifindexes)
}

fn wire_pf(pf: &SimPf, host: &mut Netlink, ifindexes: &mut Ifindexes) -> Result<(), WiringError> {
    let label = pf_label(pf);
    let netlink_error = |source| WiringError::Netlink {
        pf: label.clone(),
        source,
    };
    let netns_error = |source| WiringError::Netns {
        pf: label.clone(),
        source,
    };

    let wire_path = netns::create_named(&pf.wire_netns).map_err(netns_error)?;
    let wire_fd = netns::open(&wire_path).map_err(netns_error)?;
    // One socket inside the wire namespace, usable from this thread afterwards.
    let mut wire = netns::run_in(&wire_path, Netlink::open)
        .map_err(netns_error)?
        .map_err(netlink_error)?;
    wire.add_bridge(WIRE_BRIDGE).map_err(netlink_error)?;
    let bridge = index_of(&mut wire, WIRE_BRIDGE, &label)?;
    wire.set_up(bridge).map_err(netlink_error)?;

    for netdev in pf.netdevs() {
        host.add_veth(
            &netdev.name,
            Some(netdev.mac),
            &netdev.wire_peer,
            None,
            Some(wire_fd.as_fd()),
        )
        .map_err(netlink_error)?;
        let host_index = index_of(host, &netdev.name, &label)?;
        let peer_index = index_of(&mut wire, &netdev.wire_peer, &label)?;
        if netdev.mtu != 1500 {
            host.set_mtu(host_index, netdev.mtu)
                .map_err(netlink_error)?;
            wire.set_mtu(peer_index, netdev.mtu)
                .map_err(netlink_error)?;
        }
        wire.set_master(peer_index, bridge).map_err(netlink_error)?;
        wire.set_up(peer_index).map_err(netlink_error)?;
        if netdev.up {
            host.set_up(host_index).map_err(netlink_error)?;
        }
        ifindexes.insert(netdev.name.clone(), host_index);
    }
    Ok(())
}

fn index_of(netlink: &mut Netlink, name: &str, pf: &str) -> Result<u32, WiringError> {
    netlink
        .link_by_name(name)
        .map_err(|source| WiringError::Netlink {
            pf: pf.to_owned(),
            source,
        })?
        .map(|link| link.index)
        .ok_or_else(|| WiringError::Vanished {
            pf: pf.to_owned(),
            name: name.to_owned(),
        })
}

/// Remove every link and namespace the node may have: keeps going past
/// errors and returns them all. Host ends are deleted explicitly (which is
/// synchronous) because a namespace's links are destroyed asynchronously
/// after `ip netns del`, and a re-create right after must find the names free.
pub fn teardown(node: &SimNode, host: &mut Netlink) -> Vec<String> {
    let mut errors = Vec::new();
    for pf in &node.pfs {
        for netdev in pf.netdevs() {
            match host.link_by_name(&netdev.name) {
                // Only delete our veth: the name might have been reused by
                // someone else since (then its peer is not in our wire netns).
                Ok(Some(link))
                    if link.kind.as_deref() == Some("veth") && link.mac == Some(netdev.mac) =>
                {
                    if let Err(e) = host.delete(link.index) {
                        if !e.is_not_found() {
                            errors.push(format!("delete {}: {e}", netdev.name));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("look up {}: {e}", netdev.name)),
            }
        }
        if let Err(e) = netns::delete_named(&pf.wire_netns) {
            errors.push(e.to_string());
        }
    }
    errors
}
