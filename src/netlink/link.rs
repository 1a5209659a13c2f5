//! Link verbs, named like `ip link`: add, set, del, show.

use super::{Netlink, NetlinkError};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, Prop,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::os::fd::{AsRawFd, BorrowedFd};

/// What we need to know about a link, decoded from RTM_NEWLINK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    pub up: bool,
    /// IFF_RUNNING: up with carrier, so frames sent now leave the port.
    pub running: bool,
    /// `veth`, `bridge`, ... or None for hardware netdevs.
    pub kind: Option<String>,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    pub link_layer_type: u16,
    /// The bus address of the device behind a hardware netdev
    /// (`0000:3b:01.0` for a VF); None for virtual links such as veth.
    pub parent_device: Option<String>,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: None,
            up: message.header.flags.contains(LinkFlags::Up),
            running: message.header.flags.contains(LinkFlags::Running),
            kind: None,
            master: None,
            link_layer_type: message.header.link_layer_type.into(),
            parent_device: None,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Address(bytes) => {
                    link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                }
                LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
                LinkAttribute::Controller(index) => link.master = Some(*index),
                LinkAttribute::ParentDevName(name) => link.parent_device = Some(name.clone()),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// The link operations the rest of the crate may ask of the kernel.
/// A trait so that logic above it can be tested against a fake that checks
/// what the kernel would have received.
pub trait LinkOps {
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError>;
    fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError>;
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError>;
    /// A veth pair; the peer is created directly in `peer_netns` when given.
    fn add_veth(
        &mut self,
        name: &str,
        mac: Option<[u8; 6]>,
        peer_name: &str,
        peer_mac: Option<[u8; 6]>,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<(), NetlinkError>;
    fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError>;
    fn set_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError>;
    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError>;
    fn set_down(&mut self, index: u32) -> Result<(), NetlinkError>;
    fn set_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError>;
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError>;
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError>;
    fn set_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<(), NetlinkError>;
    /// Move to another namespace and take `name` there, in one RTM_SETLINK:
    /// the kernel renames as part of the move, so the link never exists
    /// under a clashing or temporary name. EEXIST if `name` is taken there.
    fn set_netns_and_name(
        &mut self,
        index: u32,
        netns: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), NetlinkError>;
    fn delete(&mut self, index: u32) -> Result<(), NetlinkError>;
}

fn message_for(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes = attributes;
    message
}

fn with_kind(name: &str, kind: InfoKind, data: Option<InfoData>) -> LinkMessage {
    let mut info = vec![LinkInfo::Kind(kind)];
    info.extend(data.map(LinkInfo::Data));
    message_for(
        0,
        vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(info),
        ],
    )
}

impl Netlink {
    fn set(&mut self, op: String, message: LinkMessage) -> Result<(), NetlinkError> {
        self.execute(&op, RouteNetlinkMessage::SetLink(message), 0)
    }

    fn get_one(&mut self, op: &str, message: LinkMessage) -> Result<Option<Link>, NetlinkError> {
        match self.get(op, RouteNetlinkMessage::GetLink(message)) {
            Ok(answers) => Ok(answers.iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Alternative names (`ip link property`, kernel 5.5+). Not part of
/// `LinkOps`: only the real kernel has them, and only the VF's way home
/// needs them (a rename to a name the device holds as an altname is
/// refused with EEXIST).
impl Netlink {
    /// The link's altnames (IFLA_PROP_LIST), empty when it has none.
    pub fn alt_names(&mut self, index: u32) -> Result<Vec<String>, NetlinkError> {
        let op = format!("get link #{index}");
        let answers = match self.get(
            &op,
            RouteNetlinkMessage::GetLink(message_for(index, Vec::new())),
        ) {
            Ok(answers) => answers,
            Err(error) if error.is_not_found() => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names = Vec::new();
        for answer in &answers {
            if let RouteNetlinkMessage::NewLink(link) = answer {
                for attribute in &link.attributes {
                    if let LinkAttribute::PropList(props) = attribute {
                        names.extend(props.iter().filter_map(|p| match p {
                            Prop::AltIfName(name) => Some(name.clone()),
                            _ => None,
                        }));
                    }
                }
            }
        }
        Ok(names)
    }

    /// `ip link property add dev <index> altname <name>` (RTM_NEWLINKPROP).
    pub fn add_alt_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let message = alt_name_message(index, name);
        self.execute(
            &format!("add altname {name} to link #{index}"),
            RouteNetlinkMessage::NewLinkProp(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `ip link property del dev <index> altname <name>` (RTM_DELLINKPROP).
    pub fn del_alt_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.execute(
            &format!("delete altname {name} of link #{index}"),
            RouteNetlinkMessage::DelLinkProp(alt_name_message(index, name)),
            0,
        )
    }
}

fn alt_name_message(index: u32, name: &str) -> LinkMessage {
    message_for(
        index,
        vec![LinkAttribute::PropList(vec![Prop::AltIfName(
            name.to_owned(),
        )])],
    )
}

impl LinkOps for Netlink {
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let message = message_for(0, vec![LinkAttribute::IfName(name.to_owned())]);
        self.get_one(&format!("get link {name}"), message)
    }

    fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        self.get_one(
            &format!("get link #{index}"),
            message_for(index, Vec::new()),
        )
    }

    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let answers = self.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(answers
            .iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(Link::from_message(link)),
                _ => None,
            })
            .collect())
    }

    fn add_veth(
        &mut self,
        name: &str,
        mac: Option<[u8; 6]>,
        peer_name: &str,
        peer_mac: Option<[u8; 6]>,
        peer_netns: Option<BorrowedFd<'_>>,
    ) -> Result<(), NetlinkError> {
        let mut peer = message_for(0, vec![LinkAttribute::IfName(peer_name.to_owned())]);
        peer.attributes
            .extend(peer_mac.map(|mac| LinkAttribute::Address(mac.to_vec())));
        peer.attributes
            .extend(peer_netns.map(|fd| LinkAttribute::NetNsFd(fd.as_raw_fd())));
        let mut message = with_kind(
            name,
            InfoKind::Veth,
            Some(InfoData::Veth(InfoVeth::Peer(peer))),
        );
        message
            .attributes
            .extend(mac.map(|mac| LinkAttribute::Address(mac.to_vec())));
        self.execute(
            &format!("add veth {name} peer {peer_name}"),
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        self.execute(
            &format!("add bridge {name}"),
            RouteNetlinkMessage::NewLink(with_kind(name, InfoKind::Bridge, None)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    fn set_master(&mut self, index: u32, master: u32) -> Result<(), NetlinkError> {
        let message = message_for(index, vec![LinkAttribute::Controller(master)]);
        self.set(format!("set link #{index} master #{master}"), message)
    }

    fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = message_for(index, Vec::new());
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.set(format!("set link #{index} up"), message)
    }

    fn set_down(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = message_for(index, Vec::new());
        message.header.change_mask = LinkFlags::Up;
        self.set(format!("set link #{index} down"), message)
    }

    fn set_name(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let message = message_for(index, vec![LinkAttribute::IfName(name.to_owned())]);
        self.set(format!("rename link #{index} to {name}"), message)
    }

    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let message = message_for(index, vec![LinkAttribute::Address(mac.to_vec())]);
        self.set(
            format!("set link #{index} address {}", format_mac(&mac)),
            message,
        )
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let message = message_for(index, vec![LinkAttribute::Mtu(mtu)]);
        self.set(format!("set link #{index} mtu {mtu}"), message)
    }

    fn set_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<(), NetlinkError> {
        let message = message_for(index, vec![LinkAttribute::NetNsFd(netns.as_raw_fd())]);
        self.set(format!("move link #{index} to another netns"), message)
    }

    fn set_netns_and_name(
        &mut self,
        index: u32,
        netns: BorrowedFd<'_>,
        name: &str,
    ) -> Result<(), NetlinkError> {
        let message = message_for(
            index,
            vec![
                LinkAttribute::NetNsFd(netns.as_raw_fd()),
                LinkAttribute::IfName(name.to_owned()),
            ],
        );
        self.set(
            format!("move link #{index} to another netns as {name}"),
            message,
        )
    }

    fn delete(&mut self, index: u32) -> Result<(), NetlinkError> {
        self.execute(
            &format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(message_for(index, Vec::new())),
            0,
        )
    }
}

/// Parse `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `aa:bb:cc:dd:ee:ff`, the way sysfs and `ip` print it.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}
