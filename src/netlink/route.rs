//! Route verbs, named like `ip route`: add, list; and the question the
//! device plugin and `sriovctl inventory` ask: which netdevs carry the
//! default route.

use super::{LinkOps, Netlink, NetlinkError};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// A unicast route through one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination and prefix length; `0.0.0.0/0` for a default route.
    pub destination: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub priority: Option<u32>,
    pub table: Option<u32>,
}

pub trait RouteOps {
    fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError>;
    /// Routes of the main table, of both families.
    fn routes(&mut self) -> Result<Vec<Route>, NetlinkError>;
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

impl RouteOps for Netlink {
    fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(route.destination);
        message.header.destination_prefix_length = route.prefix_len;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.kind = RouteType::Unicast;
        // without a gateway the destination is on-link, as `ip route add dev` does
        message.header.scope = if route.gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if route.prefix_len > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    route.destination,
                )));
        }
        if let Some(gateway) = route.gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        }
        message.attributes.push(RouteAttribute::Oif(route.oif));
        if let Some(priority) = route.priority {
            message.attributes.push(RouteAttribute::Priority(priority));
        }
        if let Some(table) = route.table {
            message.attributes.push(RouteAttribute::Table(table));
        }
        let via = route
            .gateway
            .map(|g| format!(" via {g}"))
            .unwrap_or_default();
        self.execute(
            &format!(
                "add route {}/{}{via} dev #{}",
                route.destination, route.prefix_len, route.oif
            ),
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn routes(&mut self) -> Result<Vec<Route>, NetlinkError> {
        let mut all = Vec::new();
        for af in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = af;
            let answers = self.dump("list routes", RouteNetlinkMessage::GetRoute(request))?;
            for answer in answers {
                let RouteNetlinkMessage::NewRoute(message) = answer else {
                    continue;
                };
                if message.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut route = Route {
                    destination: match af {
                        AddressFamily::Inet6 => IpAddr::from([0u16; 8]),
                        _ => IpAddr::from([0u8; 4]),
                    },
                    prefix_len: message.header.destination_prefix_length,
                    gateway: None,
                    oif: 0,
                    priority: None,
                    table: None,
                };
                for attribute in &message.attributes {
                    match attribute {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            route.destination = (*ip).into()
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                            route.destination = (*ip).into()
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                            route.gateway = Some((*ip).into())
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => {
                            route.gateway = Some((*ip).into())
                        }
                        RouteAttribute::Oif(oif) => route.oif = *oif,
                        RouteAttribute::Priority(p) => route.priority = Some(*p),
                        _ => {}
                    }
                }
                all.push(route);
            }
        }
        Ok(all)
    }
}

/// Netdevs carrying an IPv4 default route (main table) in the current
/// netns: upstream keeps them out of netDevice pools.
pub fn default_route_netdevs_with(
    netlink: &mut (impl RouteOps + LinkOps),
) -> Result<Vec<String>, NetlinkError> {
    let routes = netlink.routes()?;
    let mut names = Vec::new();
    for route in routes
        .iter()
        .filter(|r| r.prefix_len == 0 && r.destination.is_ipv4())
    {
        if let Some(link) = netlink.link_by_index(route.oif)? {
            if !names.contains(&link.name) {
                names.push(link.name);
            }
        }
    }
    Ok(names)
}

/// [`default_route_netdevs_with`] on a new socket in the current netns.
pub fn default_route_netdevs() -> Result<Vec<String>, NetlinkError> {
    default_route_netdevs_with(&mut Netlink::open()?)
}
