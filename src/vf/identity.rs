//! "Is this link our VF?", answered in one place.
//!
//! A real VF's netdev names its PCI address as its parent device, whatever
//! it is called and wherever it is: that is the only test for it. The
//! simulated node's VFs are veth stand-ins with no parent; for them, and
//! only when the attachment's state says the VF is one, a link counts by
//! name or ifindex together with a MAC the VF was known to carry. A name
//! alone proves nothing: another device (a bridge, a foreign veth) may have
//! taken it, and must never be "restored".

use super::{is_parent, VfError};
use crate::netlink::{Link, LinkOps, Netlink};
use crate::pci::PciAddress;

/// What an attachment knows of its VF's netdev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfIdentity {
    /// The VF's PCI address, as the kernel prints a parent device.
    pub pci: PciAddress,
    /// Its name on the host before ADD.
    pub home: String,
    /// Its ifindex (kept across namespace moves when free in the target);
    /// 0 when unknown.
    pub ifindex: u32,
    /// MACs it was known to carry: on the host before ADD, in the pod.
    pub macs: Vec<[u8; 6]>,
    /// The VF is a veth stand-in (the simulated node): no parent device.
    pub stand_in: bool,
}

impl VfIdentity {
    fn carries_ours(&self, link: &Link) -> bool {
        link.mac.is_some_and(|mac| self.macs.contains(&mac))
    }

    fn is_stand_in_link(&self, link: &Link) -> bool {
        self.stand_in && link.parent_device.is_none()
    }

    fn is_hardware(&self, link: &Link) -> bool {
        link.parent_device
            .as_deref()
            .is_some_and(|p| is_parent(p, self.pci))
    }

    /// Our VF among the links of a pod's namespace: any link whose parent is
    /// the VF; a stand-in named `ifname` with our ifindex or one of our
    /// MACs, or still under its host name (a move whose rename failed) with
    /// one of our MACs.
    pub fn in_pod(&self, pod: &mut Netlink, ifname: &str) -> Result<Option<Link>, VfError> {
        let links = pod
            .links()
            .map_err(VfError::netlink(self.pci, "listing the pod's links"))?;
        Ok(self.pick(links, |id, l| {
            id.stand_in_as(l, ifname) || (l.name == id.home && id.carries_ours(l))
        }))
    }

    /// Is `link`, found in the pod as `ifname`, our VF (CHECK)?
    pub fn is_in_pod_as(&self, link: &Link, ifname: &str) -> bool {
        self.is_hardware(link) || (self.is_stand_in_link(link) && self.stand_in_as(link, ifname))
    }

    fn stand_in_as(&self, link: &Link, ifname: &str) -> bool {
        link.name == ifname
            && ((self.ifindex != 0 && link.index == self.ifindex) || self.carries_ours(link))
    }

    /// Our VF on the host: any link whose parent is the VF; a stand-in under
    /// its host name, or with our ifindex under any name (where the kernel
    /// leaves a VF whose pod died), carrying one of our MACs.
    pub fn on_host(&self, host: &mut Netlink) -> Result<Option<Link>, VfError> {
        let links = host
            .links()
            .map_err(VfError::netlink(self.pci, "listing host links"))?;
        Ok(self.pick(links, |id, l| {
            id.carries_ours(l) && (l.name == id.home || (id.ifindex != 0 && l.index == id.ifindex))
        }))
    }

    /// Is the host link `link`, found under one of the VF's sysfs netdev
    /// names, the VF itself (and not another device that took the name)?
    pub fn is_host_netdev(&self, link: &Link) -> bool {
        self.is_hardware(link) || self.is_stand_in_link(link)
    }

    fn pick(&self, links: Vec<Link>, stand_in: impl Fn(&Self, &Link) -> bool) -> Option<Link> {
        if let Some(i) = links.iter().position(|l| self.is_hardware(l)) {
            return links.into_iter().nth(i);
        }
        links
            .into_iter()
            .find(|l| self.is_stand_in_link(l) && stand_in(self, l))
    }
}

/// The first of `names` that is a link of the host and is the VF `pci`
/// (a real VF, or a veth stand-in: a link with no parent device).
pub fn host_netdev_named(
    host: &mut Netlink,
    pci: PciAddress,
    names: &[String],
) -> Result<Option<Link>, VfError> {
    for name in names {
        if let Some(link) = host
            .link_by_name(name)
            .map_err(VfError::netlink(pci, "finding the VF on the host"))?
        {
            if link
                .parent_device
                .as_deref()
                .is_none_or(|p| is_parent(p, pci))
            {
                return Ok(Some(link));
            }
        }
    }
    Ok(None)
}

/// The host link whose PCI parent is the VF `pci` (a real VF, whatever
/// its name).
pub fn host_netdev_by_parent(host: &mut Netlink, pci: PciAddress) -> Result<Option<Link>, VfError> {
    Ok(host
        .links()
        .map_err(VfError::netlink(pci, "listing host links"))?
        .into_iter()
        .find(|l| {
            l.parent_device
                .as_deref()
                .is_some_and(|p| is_parent(p, pci))
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, index: u32, parent: Option<&str>, mac: u8) -> Link {
        Link {
            name: name.into(),
            index,
            parent_device: parent.map(str::to_owned),
            mac: Some([2, 0, 0, 0, 0, mac]),
            mtu: Some(1500),
            up: false,
            running: false,
            kind: parent.is_none().then(|| "veth".to_owned()),
            master: None,
            link_layer_type: 1,
        }
    }

    fn id(stand_in: bool) -> VfIdentity {
        VfIdentity {
            pci: "0000:3b:01.1".parse().unwrap(),
            home: "ens1f0v1".into(),
            ifindex: 40,
            macs: vec![[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]],
            stand_in,
        }
    }

    #[test]
    fn a_real_vf_is_known_by_its_parent_only() {
        let real = id(false);
        let pick = |links| real.pick(links, |_, _| true);
        assert_eq!(
            pick(vec![
                link("ens1f0v1", 40, None, 1),
                link("dev9", 9, Some("0000:3b:01.1"), 7)
            ])
            .map(|l| l.name),
            Some("dev9".into())
        );
        // a veth under the VF's name with its MAC is not a real VF
        assert_eq!(pick(vec![link("ens1f0v1", 40, None, 1)]), None);
        assert_eq!(pick(vec![link("x", 40, Some("0000:3b:01.2"), 1)]), None);
    }

    #[test]
    fn a_stand_in_needs_a_name_or_index_and_one_of_its_macs() {
        let sim = id(true);
        let on_host = |links: Vec<Link>| {
            sim.pick(links, |id, l| {
                id.carries_ours(l)
                    && (l.name == id.home || (id.ifindex != 0 && l.index == id.ifindex))
            })
        };
        assert!(on_host(vec![link("ens1f0v1", 3, None, 2)]).is_some());
        assert!(on_host(vec![link("dev4", 40, None, 1)]).is_some());
        // the name taken by a device with another MAC: not ours
        assert!(on_host(vec![link("ens1f0v1", 3, None, 9)]).is_none());
    }
}
