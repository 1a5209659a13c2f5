//! The simulated node's real interfaces: for each PF a "wire" network
//! namespace holding a bridge, and a veth pair per netdev whose host end
//! carries the PF/VF netdev name and whose peer is a port of that bridge.
//! So two pods holding VFs of one PF can reach each other, as through the
//! NIC's embedded switch.

use super::model::SimNetdev;
use super::model::{SimNode, SimPf, WIRE_BRIDGE};
use super::tree::Ifindexes;
use crate::netlink::{LinkOps, Netlink, NetlinkError};
use crate::netns::{self, NetnsError};
use crate::pci::PciAddress;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

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
    #[error("the simulated node has no PF named {name}")]
    UnknownPf { name: String },
}

fn pf_label(pf: &SimPf) -> String {
    pf.address.to_string()
}

/// A PF's wire namespace, kept open by whoever adds and removes VFs later.
pub struct WirePf {
    pub label: String,
    /// A socket inside the wire namespace.
    pub netlink: Netlink,
    pub fd: OwnedFd,
    pub bridge: u32,
}

/// Create every namespace and link of the node; returns each host-side
/// netdev's ifindex and each PF's open wire. On error the caller runs
/// `teardown`.
pub fn apply(
    node: &SimNode,
    host: &mut Netlink,
) -> Result<(Ifindexes, HashMap<PciAddress, WirePf>), WiringError> {
    check_names(node, host)?;
    let mut ifindexes = Ifindexes::new();
    let mut wires = HashMap::new();
    for pf in &node.pfs {
        if pf.netdevs().next().is_some() {
            let mut wire = open_wire(pf)?;
            for netdev in pf.netdevs() {
                let index = plug(&mut wire, host, netdev)?;
                ifindexes.insert(netdev.name.clone(), index);
            }
            wires.insert(pf.address, wire);
        }
    }
    Ok((ifindexes, wires))
}

/// Fail before touching anything if a netdev name of the node is taken:
/// kinder than a half-built node.
pub fn check_names(node: &SimNode, host: &mut Netlink) -> Result<(), WiringError> {
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
    Ok(())
}

/// The PF's wire namespace with its bridge, made.
pub fn open_wire(pf: &SimPf) -> Result<WirePf, WiringError> {
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
    let fd = netns::open(&wire_path).map_err(netns_error)?;
    // One socket inside the wire namespace, usable from this thread afterwards.
    let mut netlink = netns::run_in(&wire_path, Netlink::open)
        .map_err(netns_error)?
        .map_err(netlink_error)?;
    netlink.add_bridge(WIRE_BRIDGE).map_err(netlink_error)?;
    let bridge = index_of(&mut netlink, WIRE_BRIDGE, &label)?;
    netlink.set_up(bridge).map_err(netlink_error)?;
    Ok(WirePf {
        label,
        netlink,
        fd: fd.into(),
        bridge,
    })
}

/// A netdev of the PF: a veth pair, host end `netdev.name`, peer a port of
/// the wire bridge. Returns the host end's ifindex.
pub fn plug(wire: &mut WirePf, host: &mut Netlink, netdev: &SimNetdev) -> Result<u32, WiringError> {
    let label = wire.label.clone();
    let netlink_error = |source| WiringError::Netlink {
        pf: label.clone(),
        source,
    };
    host.add_veth(
        &netdev.name,
        Some(netdev.mac),
        &netdev.wire_peer,
        None,
        Some(wire.fd.as_fd()),
    )
    .map_err(netlink_error)?;
    let host_index = index_of(host, &netdev.name, &label)?;
    let peer_index = index_of(&mut wire.netlink, &netdev.wire_peer, &label)?;
    if netdev.mtu != 1500 {
        host.set_mtu(host_index, netdev.mtu)
            .map_err(netlink_error)?;
        wire.netlink
            .set_mtu(peer_index, netdev.mtu)
            .map_err(netlink_error)?;
    }
    wire.netlink
        .set_master(peer_index, wire.bridge)
        .map_err(netlink_error)?;
    wire.netlink.set_up(peer_index).map_err(netlink_error)?;
    if netdev.up {
        host.set_up(host_index).map_err(netlink_error)?;
    }
    Ok(host_index)
}

/// Remove a netdev of the PF wherever its host end is now (on the host,
/// renamed, in a pod): deleting the peer on the wire deletes the pair, as a
/// destroyed VF takes its netdev from the pod that held it.
pub fn unplug(wire: &mut WirePf, netdev: &SimNetdev) -> Result<(), WiringError> {
    let peer = wire
        .netlink
        .link_by_name(&netdev.wire_peer)
        .map_err(|source| WiringError::Netlink {
            pf: wire.label.clone(),
            source,
        })?;
    match peer {
        Some(peer) => match wire.netlink.delete(peer.index) {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(source) => Err(WiringError::Netlink {
                pf: wire.label.clone(),
                source,
            }),
        },
        // its pod's namespace died and took the veth with it
        None => Ok(()),
    }
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
/// errors and returns them all. Each veth is deleted from its wire end,
/// which deletes the host end wherever it is now (renamed, in a pod) and is
/// synchronous, unlike the links a deleted namespace takes with it: a
/// re-create right after must find the names free.
pub fn teardown(node: &SimNode) -> Vec<String> {
    let mut errors = Vec::new();
    for pf in &node.pfs {
        let path = match netns::named_path(&pf.wire_netns) {
            Ok(path) => path,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        if !path.exists() {
            continue;
        }
        let deleted = netns::run_in(&path, || -> Result<(), NetlinkError> {
            let mut wire = Netlink::open()?;
            for link in wire.links()? {
                if link.kind.as_deref() == Some("veth") {
                    match wire.delete(link.index) {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        });
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(format!("{}: {e}", pf.wire_netns)),
            Err(e) => errors.push(e.to_string()),
        }
        if let Err(e) = netns::delete_named(&pf.wire_netns) {
            errors.push(e.to_string());
        }
    }
    errors
}

/// The PF's cable: its peer on the wire (`uplink`) down or up, so the PF
/// netdev loses or regains carrier and the kernel announces it.
pub fn set_carrier(root: &std::path::Path, pf_name: &str, on: bool) -> Result<(), super::SimError> {
    let node = super::node_at(root)?;
    let pf = node
        .pfs
        .iter()
        .find(|pf| pf.spec.name.as_deref() == Some(pf_name))
        .ok_or_else(|| WiringError::UnknownPf {
            name: pf_name.to_owned(),
        })?;
    let label = pf_label(pf);
    let path = netns::named_path(&pf.wire_netns).map_err(|source| WiringError::Netns {
        pf: label.clone(),
        source,
    })?;
    netns::run_in(&path, || -> Result<(), NetlinkError> {
        let mut wire = Netlink::open()?;
        let uplink = wire
            .link_by_name(super::model::WIRE_UPLINK)?
            .ok_or_else(|| NetlinkError::Kernel {
                op: format!("find {}", super::model::WIRE_UPLINK),
                source: std::io::ErrorKind::NotFound.into(),
            })?;
        if on {
            wire.set_up(uplink.index)
        } else {
            wire.set_down(uplink.index)
        }
    })
    .map_err(|source| WiringError::Netns {
        pf: label.clone(),
        source,
    })?
    .map_err(|source| WiringError::Netlink { pf: label, source })?;
    Ok(())
}
