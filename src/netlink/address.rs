//! Address verbs, named like `ip addr`: add, list.

use super::{Netlink, NetlinkError};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// An interface address with its prefix length, e.g. 10.56.217.10/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
}

pub trait AddressOps {
    fn add_address(&mut self, index: u32, address: IfAddress) -> Result<(), NetlinkError>;
    fn addresses(&mut self, index: u32) -> Result<Vec<IfAddress>, NetlinkError>;
}

impl AddressOps for Netlink {
    fn add_address(&mut self, index: u32, address: IfAddress) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = family(address.address);
        message.header.prefix_len = address.prefix_len;
        message.header.index = index;
        // IFA_LOCAL is the address itself; IFA_ADDRESS the peer, equal on
        // broadcast links. `ip addr add` sends both.
        message
            .attributes
            .push(AddressAttribute::Local(address.address));
        message
            .attributes
            .push(AddressAttribute::Address(address.address));
        self.execute(
            &format!(
                "add address {}/{} to link #{index}",
                address.address, address.prefix_len
            ),
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn addresses(&mut self, index: u32) -> Result<Vec<IfAddress>, NetlinkError> {
        let answers = self.dump(
            &format!("list addresses of link #{index}"),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        Ok(answers
            .iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewAddress(message) if message.header.index == index => {
                    let address = message
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            AddressAttribute::Local(ip) => Some(*ip),
                            _ => None,
                        });
                    let address = address.or_else(|| {
                        message
                            .attributes
                            .iter()
                            .find_map(|attribute| match attribute {
                                AddressAttribute::Address(ip) => Some(*ip),
                                _ => None,
                            })
                    })?;
                    Some(IfAddress {
                        address,
                        prefix_len: message.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }
}

fn family(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}
