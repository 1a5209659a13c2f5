//! Telling the pod's neighbours where its new addresses live, once ADD has
//! put them on the VF, so switches and peers stop sending to wherever the
//! address was before (a restarted pod, a VF that moved).
//!
//! - IPv4: one ARP announcement per address, as RFC 5227 §2.3 defines it
//!   (broadcast request, sender = target = the address, target MAC zero).
//!   The kernel's `arp_notify` does not cover this case: it fires when the
//!   link comes up or changes MAC, and the VF came up before IPAM gave it an
//!   address (dhcp needs it up to get one). So we ask the kernel to resolve
//!   the address itself as a neighbour (`ip neigh replace <ip> dev <vf>
//!   use`, NTF_USE): it sends an ARP request whose sender address is the
//!   primary address of that subnet on the VF, which for a primary address
//!   is the address itself: exactly the announcement, sent at once, and
//!   again at the neighbour retransmit interval (1 s) until `mcast_solicit`
//!   (3) probes are spent, as RFC 5227 repeats its announcements. Nobody
//!   answers for our own address (but a duplicate would, and is then
//!   visible in the pod's neighbour table); the entry ends FAILED and the
//!   kernel collects it. Traffic to the address itself is local and never
//!   looks at this entry.
//! - A secondary address (a second one in the same subnet) would be asked
//!   with the primary as sender: not an announcement. Then, as before this
//!   module used the kernel, we send the frames ourselves on an AF_PACKET
//!   socket, whose close waits for an RCU grace period (`synchronize_net`
//!   in `packet_release`, about 10 ms, the cost sriov-cni pays on every
//!   ADD).
//! - IPv6: the kernel sends the unsolicited neighbour advertisement itself
//!   (to ff02::1, override flag, target link-layer address) when duplicate
//!   address detection has confirmed the address, because ADD enables
//!   `ndisc_notify` on the VF. sriov-cni sends its own NA right away, for an
//!   address that is still tentative and may yet turn out a duplicate; we
//!   leave it to the kernel, which announces only addresses it keeps.
//!
//! (Setting the VF's MAC to the address it already has also makes the
//! kernel announce, through `arp_notify`, but that is undocumented
//! behaviour and may reach the VF driver: not used.)

use crate::netlink::{IfAddress, LinkOps, NeighbourOps, Netlink, NetlinkError};
use crate::netns::{self, NetnsError};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("gratuitous ARP on {ifname}: {source}")]
    Netns {
        ifname: String,
        #[source]
        source: NetnsError,
    },
    #[error("gratuitous ARP on {ifname}: {source}")]
    Netlink {
        ifname: String,
        #[source]
        source: NetlinkError,
    },
    #[error("gratuitous ARP on {ifname}: {step}: {source}")]
    Socket {
        ifname: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame carrying an ARP announcement of `ip` at `mac`:
/// broadcast, ARP request, sender and target protocol address both `ip`,
/// target hardware address zero (RFC 5227 §2.3).
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP);
    // hardware type Ethernet (1), protocol IPv4 (0x0800), lengths 6 and 4
    frame[14..20].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4]);
    frame[20..22].copy_from_slice(&[0x00, 0x01]); // operation: request
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    // 32..38: target hardware address, zero
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// How long to wait for carrier before sending anyway (sriov-cni waits the
/// same): a frame sent before the port is running is dropped, and a VF
/// whose link takes longer must not hold up the pod.
const CARRIER_WAIT: Duration = Duration::from_millis(200);

/// Who sends the announcements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcer {
    /// The kernel, resolving each address as a neighbour.
    Kernel,
    /// We, on a packet socket (an address is secondary).
    PacketSocket,
}

/// The IPv4 addresses among `addresses` (in the order they were added),
/// and whether each is its subnet's primary on the link: the kernel makes
/// an address secondary when one added before it has the same prefix
/// length and network.
pub fn ipv4_announcements(addresses: &[IfAddress]) -> (Vec<Ipv4Addr>, bool) {
    let v4: Vec<(Ipv4Addr, u8)> = addresses
        .iter()
        .filter_map(|a| match a.address {
            IpAddr::V4(ip) => Some((ip, a.prefix_len)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let network = |ip: Ipv4Addr, len: u8| {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0);
        u32::from(ip) & mask
    };
    let all_primary = v4.iter().enumerate().all(|(i, (ip, len))| {
        !v4[..i].iter().any(|(other, other_len)| {
            other_len == len && network(*other, *len) == network(*ip, *len)
        })
    });
    (v4.into_iter().map(|(ip, _)| ip).collect(), all_primary)
}

/// From inside the pod netns, announce each of `addresses` on the VF
/// (`ifindex`, named `ifname` there, with `mac`): through the kernel when
/// `all_primary`, otherwise on a packet socket.
pub fn gratuitous_arp(
    pod_netns: &Path,
    ifindex: u32,
    ifname: &str,
    mac: [u8; 6],
    addresses: &[Ipv4Addr],
    all_primary: bool,
) -> Result<Option<Announcer>, AnnounceError> {
    if addresses.is_empty() {
        return Ok(None);
    }
    netns::run_in(pod_netns, || {
        let mut netlink = Netlink::open().map_err(|source| AnnounceError::Netlink {
            ifname: ifname.to_owned(),
            source,
        })?;
        wait_for_carrier(&mut netlink, ifindex, ifname)?;
        if all_primary {
            for ip in addresses {
                netlink.solicit_neighbour(ifindex, *ip).map_err(|source| {
                    AnnounceError::Netlink {
                        ifname: ifname.to_owned(),
                        source,
                    }
                })?;
                tracing::debug!(ifname, %ip, "ARP announcement asked of the kernel");
            }
            Ok(Some(Announcer::Kernel))
        } else {
            send_frames(ifindex, ifname, mac, addresses).map(|()| Some(Announcer::PacketSocket))
        }
    })
    .map_err(|source| AnnounceError::Netns {
        ifname: ifname.to_owned(),
        source,
    })?
}

fn wait_for_carrier(
    netlink: &mut Netlink,
    ifindex: u32,
    ifname: &str,
) -> Result<(), AnnounceError> {
    let netlink_error = |source| AnnounceError::Netlink {
        ifname: ifname.to_owned(),
        source,
    };
    let deadline = Instant::now() + CARRIER_WAIT;
    loop {
        let running = netlink
            .link_by_index(ifindex)
            .map_err(netlink_error)?
            .is_some_and(|link| link.running);
        if running {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::debug!(ifname, "no carrier yet; announcing anyway");
            return Ok(());
        }
        // IFF_RUNNING follows carrier through the kernel's linkwatch work,
        // a moment after the link came up: poll finely so a short wait
        // stays short
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs inside the pod netns: the packet socket belongs to the namespace
/// it is created in, and binds to the VF's ifindex there.
fn send_frames(
    ifindex: u32,
    ifname: &str,
    mac: [u8; 6],
    addresses: &[Ipv4Addr],
) -> Result<(), AnnounceError> {
    use pnet_datalink::{Channel, Config, MacAddr, NetworkInterface};
    let socket_error = |step, source| AnnounceError::Socket {
        ifname: ifname.to_owned(),
        step,
        source,
    };
    let interface = NetworkInterface {
        name: ifname.to_owned(),
        description: String::new(),
        index: ifindex,
        mac: Some(MacAddr::new(mac[0], mac[1], mac[2], mac[3], mac[4], mac[5])),
        ips: Vec::new(),
        flags: 0,
    };
    let config = Config {
        // we only send: no promiscuous mode, a small receive buffer
        promiscuous: false,
        read_buffer_size: 64,
        write_timeout: Some(Duration::from_millis(100)),
        ..Config::default()
    };
    let mut sender = match pnet_datalink::channel(&interface, config) {
        Ok(Channel::Ethernet(sender, _receiver)) => sender,
        Ok(_) => {
            return Err(socket_error(
                "opening a packet socket",
                std::io::Error::other("not an Ethernet channel"),
            ))
        }
        Err(e) => return Err(socket_error("opening a packet socket", e)),
    };
    for ip in addresses {
        let frame = arp_announcement(mac, *ip);
        match sender.send_to(&frame, None) {
            Some(Ok(())) => tracing::debug!(ifname, %ip, "gratuitous ARP sent"),
            Some(Err(e)) => return Err(socket_error("sending", e)),
            None => {
                return Err(socket_error(
                    "sending",
                    std::io::Error::other("frame larger than the write buffer"),
                ))
            }
        }
    }
    Ok(())
}

/// ADD's last step, as in sriov-cni: announce the VF's IPv4 addresses;
/// a failure is logged, never fails the pod (its addresses are in place,
/// peers just learn them a little later, by ARP).
pub fn best_effort(
    pod_netns: &Path,
    vf: crate::pci::PciAddress,
    ifindex: u32,
    ifname: &str,
    mac: Option<[u8; 6]>,
    addresses: &[IfAddress],
) {
    let Some(mac) = mac else { return };
    let (ipv4, all_primary) = ipv4_announcements(addresses);
    match gratuitous_arp(pod_netns, ifindex, ifname, mac, &ipv4, all_primary) {
        Ok(announcer) => tracing::debug!(vf = %vf, ?announcer, "IPv4 addresses announced"),
        Err(e) => tracing::warn!(vf = %vf, error = %e, "ADD: gratuitous ARP not sent; ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> IfAddress {
        let (ip, len) = text.split_once('/').unwrap();
        IfAddress {
            address: ip.parse().unwrap(),
            prefix_len: len.parse().unwrap(),
        }
    }

    #[test]
    fn a_second_address_in_a_subnet_is_secondary_and_needs_our_own_frames() {
        let (v4, primary) = ipv4_announcements(&[address("10.1.0.5/24"), address("fd00::5/64")]);
        assert_eq!(v4, ["10.1.0.5".parse::<Ipv4Addr>().unwrap()]);
        assert!(primary);
        let two_subnets = [address("10.1.0.5/24"), address("10.2.0.5/24")];
        assert!(ipv4_announcements(&two_subnets).1);
        // same network, other prefix length: the kernel keeps both primary
        let other_len = [address("10.1.0.5/24"), address("10.1.0.6/16")];
        assert!(ipv4_announcements(&other_len).1);
        let same_subnet = [address("10.1.0.5/24"), address("10.1.0.6/24")];
        assert!(!ipv4_announcements(&same_subnet).1);
        assert!(!ipv4_announcements(&[address("10.1.0.5/0"), address("10.9.0.5/0")]).1);
    }

    #[test]
    fn arp_announcement_follows_rfc_5227() {
        let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01];
        let frame = arp_announcement(mac, Ipv4Addr::new(10, 56, 217, 10));
        // Ethernet: broadcast destination, our source, type ARP
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &mac);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        // ARP: Ethernet/IPv4, 6/4 byte addresses, request
        assert_eq!(&frame[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
        // sender: our MAC and address; target: zero MAC, the same address
        assert_eq!(&frame[22..28], &mac);
        assert_eq!(&frame[28..32], &[10, 56, 217, 10]);
        assert_eq!(&frame[32..38], &[0; 6]);
        assert_eq!(&frame[38..42], &[10, 56, 217, 10]);
    }
}
