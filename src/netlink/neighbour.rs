//! Neighbour verbs, named like `ip neigh`: the one we need, `use`.

use super::{Netlink, NetlinkError};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::Ipv4Addr;

pub trait NeighbourOps {
    /// `ip neigh replace <ip> dev #<index> use`: ask the kernel to resolve
    /// `ip` on the link now (NTF_USE), creating its entry if needed. The
    /// kernel sends the ARP request at once and retransmits it until an
    /// answer comes or the probes (`mcast_solicit`) run out.
    fn solicit_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<(), NetlinkError>;
}

impl NeighbourOps for Netlink {
    fn solicit_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.ifindex = index;
        message.header.state = NeighbourState::None;
        message.header.flags = NeighbourFlags::Use;
        message.header.kind = RouteType::Unspec;
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        self.execute(
            &format!("solicit neighbour {ip} on link #{index}"),
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }
}
