//! The links of one network namespace as the kernel has them now: a dump,
//! kept current from the RTNLGRP_LINK multicast group.
//!
//! Reading is synchronous and catches up first: the kernel queues a link's
//! RTM_NEWLINK/RTM_DELLINK on every subscribed socket before the request
//! that changed the link returns to its sender, so draining the queue at
//! read time answers with the state that sender left, with no thread and no
//! window in which a read is stale. A queue that overflowed (ENOBUFS: events
//! lost) is answered with a fresh dump.

use super::{Netlink, NetlinkError};
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkInfo, LinkMessage, State};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::collections::HashMap;
use std::io;

/// RTMGRP_LINK: the legacy bind mask for RTNLGRP_LINK (group 1).
const RTMGRP_LINK: u32 = 1;

/// Receive buffer asked for the event socket.
const EVENT_BUFFER: usize = 8 << 20;

/// What the tree of a simulated node (or a health check) needs of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// IFF_* flags as `ip link` shows them (IFF_UP, IFF_LOWER_UP, ...).
    pub flags: u32,
    /// The kernel's RFC 2863 name for the operational state.
    pub operstate: &'static str,
    /// IFLA_CARRIER: the lower layer has a link.
    pub carrier: bool,
    pub kind: Option<String>,
}

impl LinkStatus {
    pub fn from_message(message: &LinkMessage) -> LinkStatus {
        let mut status = LinkStatus {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            flags: message.header.flags.bits(),
            operstate: "unknown",
            carrier: false,
            kind: None,
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => status.name = name.clone(),
                LinkAttribute::Address(bytes) => {
                    status.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok()
                }
                LinkAttribute::Mtu(mtu) => status.mtu = *mtu,
                LinkAttribute::Carrier(carrier) => status.carrier = *carrier != 0,
                LinkAttribute::OperState(state) => status.operstate = operstate_name(*state),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            status.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        status
    }
}

/// The names `/sys/class/net/<if>/operstate` prints.
fn operstate_name(state: State) -> &'static str {
    match state {
        State::Unknown | State::Other(_) => "unknown",
        State::NotPresent => "notpresent",
        State::Down => "down",
        State::LowerLayerDown => "lowerlayerdown",
        State::Testing => "testing",
        State::Dormant => "dormant",
        State::Up => "up",
        _ => "unknown",
    }
}

/// A change the table saw while catching up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// New or changed (flags, carrier, name, MTU, ...).
    Changed(LinkStatus),
    /// Gone from the namespace: deleted, or moved to another one.
    Removed(u32),
    /// Events were lost; the table was dumped again.
    Resynced,
}

/// The namespace's links by ifindex, current as of the last [`LinkTable::catch_up`].
pub struct LinkTable {
    links: HashMap<u32, LinkStatus>,
    events: Socket,
    requests: Netlink,
    buffer: Vec<u8>,
}

impl LinkTable {
    /// Subscribe, then dump, in the namespace of the calling thread
    /// (subscribing first: a change during the dump is queued, not lost).
    pub fn open() -> Result<LinkTable, NetlinkError> {
        let mut events = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        events
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(NetlinkError::Socket)?;
        events
            .set_non_blocking(true)
            .map_err(NetlinkError::Socket)?;
        // room for a burst (thousands of veths made or destroyed at once)
        // between two reads; past it, see `catch_up`
        use nix::sys::socket::{setsockopt, sockopt};
        if setsockopt(&events, sockopt::RcvBufForce, &EVENT_BUFFER).is_err() {
            let _ = setsockopt(&events, sockopt::RcvBuf, &EVENT_BUFFER);
        }
        let mut table = LinkTable {
            links: HashMap::new(),
            events,
            requests: Netlink::open()?,
            buffer: vec![0; 64 * 1024],
        };
        table.resync()?;
        Ok(table)
    }

    fn resync(&mut self) -> Result<(), NetlinkError> {
        let answers = self.requests.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        self.links = answers
            .iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => {
                    let status = LinkStatus::from_message(link);
                    Some((status.index, status))
                }
                _ => None,
            })
            .collect();
        Ok(())
    }

    /// Apply every queued event; returns them in order.
    pub fn catch_up(&mut self) -> Result<Vec<LinkEvent>, NetlinkError> {
        let mut seen = Vec::new();
        loop {
            let received = match self.events.recv(&mut &mut self.buffer[..], 0) {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(seen),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    // Events were dropped. What is still queued is older
                    // than the dump about to be made: applied after it, it
                    // would turn current state back into old (a rename
                    // undone). Discard it, then dump; what arrives from now
                    // on is newer.
                    self.discard_queued()?;
                    self.resync()?;
                    seen.push(LinkEvent::Resynced);
                    continue;
                }
                Err(source) => {
                    return Err(NetlinkError::Kernel {
                        op: "read link events".into(),
                        source,
                    })
                }
            };
            let mut offset = 0;
            while offset < received {
                let chunk = &self.buffer[offset..received];
                let Ok(length) = NetlinkBuffer::new_checked(chunk).map(|b| b.length() as usize)
                else {
                    break;
                };
                if length == 0 || length > chunk.len() {
                    break;
                }
                offset += (length + 3) & !3;
                let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk) else {
                    continue; // an attribute this crate cannot decode: skip the event
                };
                match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                        let status = LinkStatus::from_message(&link);
                        self.links.insert(status.index, status.clone());
                        seen.push(LinkEvent::Changed(status));
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                        let index = link.header.index;
                        self.links.remove(&index);
                        seen.push(LinkEvent::Removed(index));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Ask for another receive buffer for the event socket (the default is
    /// 8 MiB); returns what the kernel granted.
    pub fn set_event_buffer(&self, bytes: usize) -> Result<usize, NetlinkError> {
        use nix::sys::socket::{getsockopt, setsockopt, sockopt};
        if setsockopt(&self.events, sockopt::RcvBufForce, &bytes).is_err() {
            setsockopt(&self.events, sockopt::RcvBuf, &bytes)
                .map_err(|e| NetlinkError::Socket(e.into()))?;
        }
        getsockopt(&self.events, sockopt::RcvBuf).map_err(|e| NetlinkError::Socket(e.into()))
    }

    fn discard_queued(&mut self) -> Result<(), NetlinkError> {
        loop {
            match self.events.recv(&mut &mut self.buffer[..], 0) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {}
                Err(source) => {
                    return Err(NetlinkError::Kernel {
                        op: "discard stale link events".into(),
                        source,
                    })
                }
            }
        }
    }

    /// The link with that ifindex, as of the last catch-up.
    pub fn get(&self, index: u32) -> Option<&LinkStatus> {
        self.links.get(&index)
    }

    /// The link with that ifindex as the kernel has it this instant, asked
    /// directly: carrier changes reach the event queue only when the
    /// kernel's link watch runs (asynchronously, after the change), while a
    /// direct answer (like sysfs) reads the device itself.
    pub fn fresh(&mut self, index: u32) -> Result<Option<LinkStatus>, NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let answer = match self.requests.get(
            &format!("get link #{index}"),
            RouteNetlinkMessage::GetLink(message),
        ) {
            Ok(answers) => answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(LinkStatus::from_message(&link)),
                _ => None,
            }),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        match &answer {
            Some(status) => {
                self.links.insert(index, status.clone());
            }
            None => {
                self.links.remove(&index);
            }
        }
        Ok(answer)
    }

    /// Every link, as of the last catch-up.
    pub fn all(&self) -> Vec<LinkStatus> {
        self.links.values().cloned().collect()
    }
}

/// The event socket, for poll(2): readable when events are queued.
impl std::os::fd::AsFd for LinkTable {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.events.as_fd()
    }
}

/// A link's counters (IFLA_STATS64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

impl Netlink {
    /// The counters of the link of that name; None if there is none.
    pub fn link_counters(&mut self, name: &str) -> Result<Option<LinkCounters>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        let answers = match self.get(
            &format!("get counters of {name}"),
            RouteNetlinkMessage::GetLink(message),
        ) {
            Ok(answers) => answers,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(answers.iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(link) => {
                link.attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        LinkAttribute::Stats64(stats) => Some(LinkCounters {
                            rx_bytes: stats.rx_bytes,
                            rx_packets: stats.rx_packets,
                            tx_bytes: stats.tx_bytes,
                            tx_packets: stats.tx_packets,
                            rx_dropped: stats.rx_dropped,
                            tx_dropped: stats.tx_dropped,
                        }),
                        _ => None,
                    })
            }
            _ => None,
        }))
    }
}
