//! The VF netdev's journey: from the host into a pod's namespace, configured
//! there, and back with its original name, MAC and MTU.
//!
//! Kernel facts handled here:
//! - `RTM_SETLINK` with both `IFLA_NET_NS_FD` and `IFLA_IFNAME` is one
//!   request, one move, but not an atomic rename: the kernel moves the
//!   device first, under its current name when that is free in the target
//!   (otherwise directly under the requested name, or EEXIST with nothing
//!   moved if that is taken too), and renames it afterwards. A clash at the
//!   rename returns EEXIST with the device already moved, under its old
//!   name. So after any failed move the VF is looked for in both
//!   namespaces (`locate`) and handled where it really is.
//! - When a pod's namespace is destroyed, a real VF returns to the host
//!   namespace under its pod-side name (or `devN` on a clash); a veth
//!   stand-in is destroyed with it instead. `VfIdentity::on_host` copes with both.

pub mod announce;
mod identity;

pub use identity::{host_netdev_by_parent, host_netdev_named, VfIdentity};

use crate::netlink::{
    format_mac, AddressOps, IfAddress, Link, LinkOps, Netlink, NetlinkError, Route, RouteOps,
};
use crate::netns::{self, NetnsError};
use crate::pci::PciAddress;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum VfError {
    #[error("VF {vf}: {step}: {source}")]
    Netlink {
        vf: PciAddress,
        step: &'static str,
        #[source]
        source: NetlinkError,
    },
    #[error("VF {vf}: {step}: {source}")]
    Netns {
        vf: PciAddress,
        step: &'static str,
        #[source]
        source: NetnsError,
    },
    #[error("VF {vf}: interface {ifname} already exists in the pod netns")]
    IfnameTaken { vf: PciAddress, ifname: String },
    #[error("VF {vf}: {detail}")]
    Missing { vf: PciAddress, detail: String },
    #[error("VF {vf}: {name} is taken on the host; the VF is back as {fallback}")]
    HomeNameTaken {
        vf: PciAddress,
        name: String,
        fallback: String,
    },
}

impl VfError {
    fn netlink(vf: PciAddress, step: &'static str) -> impl Fn(NetlinkError) -> VfError {
        move |source| VfError::Netlink { vf, step, source }
    }
    fn netns(vf: PciAddress, step: &'static str) -> impl Fn(NetnsError) -> VfError {
        move |source| VfError::Netns { vf, step, source }
    }
}

/// What the VF looks like inside the pod after `attach`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// Is `parent`, a link's parent device as the kernel names it, the VF `pci`?
pub(crate) fn is_parent(parent: &str, pci: PciAddress) -> bool {
    parent.parse::<PciAddress>().is_ok_and(|p| p == pci)
}

/// The host's own network namespace, pinned before any thread switches.
pub fn host_netns() -> Result<File, NetnsError> {
    netns::open(Path::new("/proc/thread-self/ns/net"))
}

/// Open a netlink socket inside the namespace at `path`.
pub fn netlink_in(path: &Path, vf: PciAddress) -> Result<Netlink, VfError> {
    netns::run_in(path, Netlink::open)
        .map_err(VfError::netns(vf, "entering the pod netns"))?
        .map_err(VfError::netlink(vf, "opening netlink in the pod netns"))
}

/// Move the VF netdev `link` from the host into the pod namespace as
/// `ifname`, then set MAC and MTU if asked, enable ARP/NA notifications and
/// bring it up. On error the VF is back on the host as it was.
pub fn attach(
    host: &mut Netlink,
    vf: PciAddress,
    link: &Link,
    pod_netns: &Path,
    ifname: &str,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
) -> Result<Attached, VfError> {
    let pod_fd = netns::open(pod_netns).map_err(VfError::netns(vf, "opening the pod netns"))?;
    let mut pod = netlink_in(pod_netns, vf)?;
    if pod
        .link_by_name(ifname)
        .map_err(VfError::netlink(vf, "looking up the pod's interfaces"))?
        .is_some()
    {
        return Err(VfError::IfnameTaken {
            vf,
            ifname: ifname.to_owned(),
        });
    }
    move_into_pod(host, &mut pod, pod_fd.as_fd(), vf, link, ifname)?;
    let configured = configure_in_pod(&mut pod, vf, pod_netns, ifname, mac, mtu);
    if configured.is_err() {
        // undo the move so the caller's rollback starts from "on the host"
        let host_fd = host_netns().map_err(VfError::netns(vf, "opening the host netns"))?;
        let original = Original {
            name: &link.name,
            mac: link.mac,
            mtu: link.mtu,
            up: link.up,
        };
        let _ = return_to_host(&mut pod, host, host_fd.as_fd(), vf, ifname, &original);
    }
    configured
}

/// Down, then into the pod (`pod` a socket there, `pod_fd` its handle) as
/// `ifname`. If that fails the VF is back on the host as it was: a clash
/// at the rename (`ifname` taken in the pod, e.g. created after `attach`
/// checked) leaves it in the pod under its host name, and it is moved back.
pub fn move_into_pod(
    host: &mut Netlink,
    pod: &mut Netlink,
    pod_fd: BorrowedFd<'_>,
    vf: PciAddress,
    link: &Link,
    ifname: &str,
) -> Result<(), VfError> {
    host.set_down(link.index)
        .map_err(VfError::netlink(vf, "setting the VF down on the host"))?;
    let names = [link.name.as_str(), ifname];
    let id = VfId {
        pci: vf,
        names: &names,
        ifindex: link.index,
        mac: link.mac,
    };
    if let Err(failed) = move_named(host, pod, pod_fd, &id, link.index, ifname) {
        let MoveFailed { error, place } = *failed;
        if let Some(Place::Target(in_pod)) = place {
            // in the pod under its host name, the rename refused: bring it
            // back so ADD fails with the VF where it was
            tracing::warn!(vf = %vf, ifname, error = %error, "the VF moved but was not renamed; bringing it back");
            let host_fd = host_netns().map_err(VfError::netns(vf, "opening the host netns"))?;
            send_home(pod, host, host_fd.as_fd(), vf, &in_pod, &link.name)?;
        }
        if link.up {
            // set down for the move: back up, as it was
            let up_again = find_vf(host, vf, &id).and_then(|home| match home {
                Some(home) => host
                    .set_up(home.index)
                    .map_err(VfError::netlink(vf, "bringing the VF back up on the host")),
                None => Ok(()),
            });
            if let Err(e) = up_again {
                tracing::warn!(vf = %vf, error = %e, "the VF stays down on the host");
            }
        }
        if error.is_exists() {
            // the name appeared in the pod between our check and the move
            return Err(VfError::IfnameTaken {
                vf,
                ifname: ifname.to_owned(),
            });
        }
        return Err(VfError::netlink(vf, "moving the VF into the pod netns")(
            error,
        ));
    }
    Ok(())
}

/// How to recognise the VF's netdev in a namespace. A real VF names its PCI
/// address as parent device, whatever it is called. A veth stand-in has no
/// parent: it is the link with one of `names` and its MAC (a move never
/// changes it), or, when the MAC is not known, its ifindex (kept across a
/// move when free in the target; ifindexes are per namespace, so a name
/// must match too).
#[derive(Debug, Clone, Copy)]
pub struct VfId<'a> {
    pub pci: PciAddress,
    pub names: &'a [&'a str],
    pub ifindex: u32,
    pub mac: Option<[u8; 6]>,
}

impl VfId<'_> {
    pub fn matches(&self, link: &Link) -> bool {
        match link.parent_device.as_deref() {
            Some(parent) => is_parent(parent, self.pci),
            None => {
                self.names.contains(&link.name.as_str())
                    && match self.mac {
                        Some(mac) => link.mac == Some(mac),
                        None => self.ifindex != 0 && link.index == self.ifindex,
                    }
            }
        }
    }
}

/// The VF's netdev among the links of the namespace `netlink` is in.
fn find_vf(netlink: &mut Netlink, vf: PciAddress, id: &VfId) -> Result<Option<Link>, VfError> {
    Ok(netlink
        .links()
        .map_err(VfError::netlink(vf, "listing links"))?
        .into_iter()
        .find(|l| id.matches(l)))
}

/// Where a VF is after a move that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Not moved.
    Source(Link),
    /// Moved, under the name it has there.
    Target(Link),
}

/// A move that failed, and where the VF is now: None if it is in neither
/// namespace or could not be looked for.
struct MoveFailed {
    error: NetlinkError,
    place: Option<Place>,
}

/// Move link `index` (the VF `id`) from the namespace of `from` into the
/// one of `to` (`to_fd`) as `name`. On failure, also where the VF is now:
/// a failed rename leaves it moved (see the module comment).
fn move_named(
    from: &mut Netlink,
    to: &mut Netlink,
    to_fd: BorrowedFd<'_>,
    id: &VfId,
    index: u32,
    name: &str,
) -> Result<(), Box<MoveFailed>> {
    let Err(error) = from.set_netns_and_name(index, to_fd, name) else {
        return Ok(());
    };
    let place = match find_vf(from, id.pci, id) {
        Ok(Some(link)) => Some(Place::Source(link)),
        Ok(None) => find_vf(to, id.pci, id).ok().flatten().map(Place::Target),
        Err(_) => None,
    };
    tracing::debug!(vf = %id.pci, error = %error, place = ?place, "a move failed; the VF located");
    Err(Box::new(MoveFailed { error, place }))
}

/// Move the VF `link`, found in the pod, to the host as `name`. If `name`
/// is taken there, it goes home as `sriov<ifindex in the pod>` instead and
/// the error says so: on the host under its pod-side name (it moved, the
/// rename failed), it is renamed; still in the pod (its pod-side name is
/// taken on the host too), it is moved under the fallback directly.
fn send_home(
    pod: &mut Netlink,
    host: &mut Netlink,
    host_fd: BorrowedFd<'_>,
    vf: PciAddress,
    link: &Link,
    name: &str,
) -> Result<(), VfError> {
    let fallback = format!("sriov{}", link.index);
    let names = [link.name.as_str(), name, fallback.as_str()];
    let id = VfId {
        pci: vf,
        names: &names,
        ifindex: link.index,
        mac: link.mac,
    };
    let taken = || VfError::HomeNameTaken {
        vf,
        name: name.to_owned(),
        fallback: fallback.clone(),
    };
    let moving = VfError::netlink(vf, "moving the VF back to the host");
    let MoveFailed { error, place } = match move_named(pod, host, host_fd, &id, link.index, name) {
        Ok(()) => return Ok(()),
        Err(failed) => *failed,
    };
    match place {
        Some(Place::Target(home)) => rename_on_host(host, vf, &home, name, &fallback),
        Some(Place::Source(still)) if error.is_exists() => {
            match move_named(pod, host, host_fd, &id, still.index, &fallback) {
                Ok(()) => Err(taken()),
                Err(failed) => match *failed {
                    MoveFailed {
                        place: Some(Place::Target(home)),
                        ..
                    } => rename_on_host(host, vf, &home, name, &fallback),
                    MoveFailed { error, .. } => Err(moving(error)),
                },
            }
        }
        Some(Place::Source(_)) => Err(moving(error)),
        None => Err(VfError::Missing {
            vf,
            detail: format!(
                "moving it back to the host failed ({error}) and it is now in neither namespace"
            ),
        }),
    }
}

/// The VF is on the host as `home`, not under `name`: rename it to `name`,
/// or to `fallback` if that is taken.
fn rename_on_host(
    host: &mut Netlink,
    vf: PciAddress,
    home: &Link,
    name: &str,
    fallback: &str,
) -> Result<(), VfError> {
    if home.name == name {
        return Ok(());
    }
    match host.set_name(home.index, name) {
        Ok(()) => Ok(()),
        Err(error) if error.is_exists() => {
            if home.name != fallback {
                host.set_name(home.index, fallback)
                    .map_err(VfError::netlink(
                        vf,
                        "renaming the VF on the host after its name was found taken",
                    ))?;
            }
            Err(VfError::HomeNameTaken {
                vf,
                name: name.to_owned(),
                fallback: fallback.to_owned(),
            })
        }
        Err(error) => Err(VfError::netlink(vf, "renaming the VF on the host")(error)),
    }
}

fn configure_in_pod(
    pod: &mut Netlink,
    vf: PciAddress,
    pod_netns: &Path,
    ifname: &str,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
) -> Result<Attached, VfError> {
    let inside = pod
        .link_by_name(ifname)
        .map_err(VfError::netlink(vf, "finding the VF in the pod netns"))?
        .ok_or_else(|| VfError::Missing {
            vf,
            detail: format!("{ifname} vanished after the move"),
        })?;
    if let Some(mac) = mac {
        pod.set_mac(inside.index, mac)
            .map_err(VfError::netlink(vf, "setting the MAC"))?;
    }
    if let Some(mtu) = mtu {
        pod.set_mtu(inside.index, mtu)
            .map_err(VfError::netlink(vf, "setting the MTU"))?;
    }
    // Announce address changes (as sriov-cni does); best effort: a pod
    // without IPv6 has no ipv6 sysctls.
    let _ = netns::run_in(pod_netns, || {
        for (path, value) in [
            (format!("/proc/sys/net/ipv4/conf/{ifname}/arp_notify"), "1"),
            (
                format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify"),
                "1",
            ),
            (
                format!("/proc/sys/net/ipv6/conf/{ifname}/optimistic_dad"),
                "1",
            ),
        ] {
            let _ = std::fs::write(path, value);
        }
    });
    pod.set_up(inside.index)
        .map_err(VfError::netlink(vf, "bringing the VF up"))?;
    // read back: drivers may apply a MAC asynchronously (iavf)
    let after = pod
        .link_by_index(inside.index)
        .map_err(VfError::netlink(vf, "reading the VF back"))?
        .ok_or_else(|| VfError::Missing {
            vf,
            detail: format!("{ifname} vanished while configuring"),
        })?;
    let actual_mac = after.mac.unwrap_or_default();
    if let Some(wanted) = mac {
        if actual_mac != wanted {
            return Err(VfError::Missing {
                vf,
                detail: format!(
                    "MAC reads back {} instead of {}",
                    format_mac(&actual_mac),
                    format_mac(&wanted)
                ),
            });
        }
    }
    Ok(Attached {
        ifindex: after.index,
        mac: actual_mac,
        mtu: after.mtu.unwrap_or_default(),
    })
}

/// The VF's identity on the host before ADD.
pub struct Original<'a> {
    pub name: &'a str,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// Administratively up on the host: it goes back up there.
    pub up: bool,
}

/// After the VF went home (`returned`: Ok, or under the fallback name),
/// bring it up if it was up before ADD; `returned` is passed through.
fn up_if_it_was(
    host: &mut Netlink,
    vf: PciAddress,
    original: &Original,
    returned: Result<(), VfError>,
) -> Result<(), VfError> {
    if !original.up {
        return returned;
    }
    let name = match &returned {
        Ok(()) => original.name,
        Err(VfError::HomeNameTaken { fallback, .. }) => fallback.as_str(),
        Err(_) => return returned,
    };
    let home = host
        .link_by_name(name)
        .map_err(VfError::netlink(vf, "finding the VF on the host"))?
        .ok_or_else(|| VfError::Missing {
            vf,
            detail: format!("{name} vanished from the host"),
        })?;
    host.set_up(home.index)
        .map_err(VfError::netlink(vf, "bringing the VF up on the host"))?;
    returned
}

/// From inside the pod (`pod` is a socket there, `host` one on the host):
/// down, original MAC and MTU, then back to the host under the original
/// name. If that name is taken on the host meanwhile, the VF still goes
/// home, as `sriov<ifindex>`, and the error says so.
pub fn return_to_host(
    pod: &mut Netlink,
    host: &mut Netlink,
    host_fd: BorrowedFd<'_>,
    vf: PciAddress,
    ifname: &str,
    original: &Original,
) -> Result<(), VfError> {
    let link = pod
        .link_by_name(ifname)
        .map_err(VfError::netlink(vf, "finding the VF in the pod netns"))?
        .ok_or_else(|| VfError::Missing {
            vf,
            detail: format!("no {ifname} in the pod netns"),
        })?;
    return_link_to_host(pod, host, host_fd, vf, &link, original)
}

/// `return_to_host` for the VF already found in the pod as `link`, under
/// whatever name it has there.
pub fn return_link_to_host(
    pod: &mut Netlink,
    host: &mut Netlink,
    host_fd: BorrowedFd<'_>,
    vf: PciAddress,
    link: &Link,
    original: &Original,
) -> Result<(), VfError> {
    pod.set_down(link.index)
        .map_err(VfError::netlink(vf, "setting the VF down"))?;
    let mut link = link.clone();
    if let Some(mac) = original.mac.filter(|m| Some(*m) != link.mac) {
        pod.set_mac(link.index, mac)
            .map_err(VfError::netlink(vf, "restoring the MAC"))?;
        link.mac = Some(mac);
    }
    if let Some(mtu) = original.mtu.filter(|m| Some(*m) != link.mtu) {
        pod.set_mtu(link.index, mtu)
            .map_err(VfError::netlink(vf, "restoring the MTU"))?;
    }
    let returned = send_home(pod, host, host_fd, vf, &link, original.name);
    up_if_it_was(host, vf, original, returned)
}

/// Restore a VF found on the host (its pod namespace died): MAC and MTU
/// first, then the original name. If that name is taken on the host (a
/// device created there meanwhile), the VF keeps its MAC and MTU and is
/// named `sriov<ifindex>` instead, and the error says so: renaming first
/// would fail the same way forever and leave the pod's MAC and MTU on it).
/// Back up if it was up before ADD.
pub fn restore_on_host(
    host: &mut Netlink,
    vf: PciAddress,
    link: &Link,
    original: &Original,
) -> Result<(), VfError> {
    host.set_down(link.index)
        .map_err(VfError::netlink(vf, "setting the VF down"))?;
    if let Some(mac) = original.mac.filter(|m| Some(*m) != link.mac) {
        host.set_mac(link.index, mac)
            .map_err(VfError::netlink(vf, "restoring the MAC"))?;
    }
    if let Some(mtu) = original.mtu.filter(|m| Some(*m) != link.mtu) {
        host.set_mtu(link.index, mtu)
            .map_err(VfError::netlink(vf, "restoring the MTU"))?;
    }
    let fallback = format!("sriov{}", link.index);
    let renamed = rename_on_host(host, vf, link, original.name, &fallback);
    up_if_it_was(host, vf, original, renamed)
}

/// Add the IPAM result's addresses and routes to the VF in the pod.
pub fn configure_ips(
    pod: &mut Netlink,
    vf: PciAddress,
    ifindex: u32,
    addresses: &[IfAddress],
    routes: &[Route],
) -> Result<(), VfError> {
    for address in addresses {
        pod.add_address(ifindex, *address)
            .map_err(VfError::netlink(vf, "adding an address"))?;
    }
    for route in routes {
        match pod.add_route(route) {
            Ok(()) => {}
            // the kernel already made the prefix route for the address
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(VfError::netlink(vf, "adding a route")(e)),
        }
    }
    Ok(())
}
