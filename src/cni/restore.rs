//! The way home: one restore path for an attachment, whoever asks for it.
//!
//! ADD records its progress in the attachment cache as it goes (the VF's
//! original state, where it moved it, whether IPAM gave it addresses). A
//! failed ADD, a DEL, a GC of a stale attachment and an ADD taking a VF over
//! from a dead pod all put things back from that record, through
//! [`release`] or [`restore_attachment`]: IPAM first, then the PF-side
//! settings, then the VF netdev, then the state files.
//!
//! Each step keeps going past failures, and what could not be undone stays
//! recorded (the cache and the allocation marker), so the next DEL or GC
//! finishes the job.

use super::env::CniEnv;
use super::error::{CniError, CODE_KERNEL};
use super::ipam::Ipam;
use super::node::Node;
use super::pf_side::{self, PfVf, DRIVER_RETRY};
use super::state::{Cache, Mode};
use super::vf_target::resolve;
use crate::netlink::{parse_mac, Netlink, PfOps};
use crate::pci::PciAddress;
use crate::sysfs::{SysfsRoot, USERSPACE_DRIVERS};
use crate::vf::{self, Original};
use std::os::fd::AsFd;
use std::path::Path;

/// Who releases an attachment, which decides what IPAM is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Releaser {
    /// DEL or GC: IPAM DEL always, as an ADD killed between IPAM ADD and
    /// saving its progress would otherwise leak the address (IPAM DEL of
    /// nothing is a no-op); the device-info file goes too.
    Del,
    /// A failed ADD, in the same process: IPAM DEL only if IPAM ADD
    /// succeeded, and the device-info file (the runtime's, written before
    /// ADD) stays for the runtime's DEL.
    FailedAdd,
}

impl Releaser {
    /// A DEL that brought the VF home under a fallback name (its own is
    /// taken) has done all it can, and succeeds; a failed ADD reports it,
    /// keeping the state, so the runtime's DEL tries the name again.
    fn home_name(self) -> HomeName {
        match self {
            Releaser::Del => HomeName::FallbackOk,
            Releaser::FailedAdd => HomeName::Required,
        }
    }
}

/// Whether a VF back home under a fallback name counts as restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HomeName {
    /// Yes: said in the log, and restoring succeeds.
    FallbackOk,
    /// No: restoring fails, naming the fallback.
    Required,
}

/// One attachment being released: its identity and its IPAM's input.
pub(crate) struct Attachment<'a> {
    pub env: &'a CniEnv,
    pub stdin: &'a [u8],
    pub container_id: &'a str,
    pub ifname: &'a str,
    /// GC: the CNI_CONTAINERID/CNI_IFNAME/CNI_NETNS IPAM gets instead of
    /// the invocation's.
    pub ipam_identity: Option<(&'a str, &'a str, Option<&'a str>)>,
}

/// What a release did: the VF (PF side, netdev, marker), IPAM, and the
/// state files.
pub(crate) struct Released {
    pub vf: Result<(), CniError>,
    pub ipam: Option<CniError>,
    pub state: Result<(), CniError>,
}

impl Released {
    /// As DEL reports it: the VF's failure first, IPAM's in its details;
    /// IPAM's own error when only IPAM failed.
    pub fn into_result(self) -> Result<(), CniError> {
        match (self.vf, self.ipam) {
            (Err(error), None) => Err(error),
            (Err(error), Some(ipam)) => {
                let details = format!("{}; IPAM DEL also failed: {}", error.details, ipam.msg);
                Err(error.with_details(details.trim_start_matches("; ").to_owned()))
            }
            (Ok(()), Some(ipam)) => self.state.and(Err(ipam)),
            (Ok(()), None) => self.state,
        }
    }
}

/// Undo one attachment described by `cache`; the caller holds its VF's
/// lock. The VF is left alone when it was already put back or belongs to
/// another pod now. The state files go when everything is undone; if only
/// IPAM is left, the cache says so ("VF restored") for the retry.
pub(crate) fn release(
    node: &mut Node,
    cache: &Cache,
    at: &Attachment,
    releaser: Releaser,
) -> Result<Released, CniError> {
    let vf_address = cache.conf.device()?;
    let vf = vf_address;

    let ipam_added = cache.progress.as_ref().is_some_and(|p| p.ipam_added);
    // what ADD's IPAM call got in CNI_ARGS, with this call's on top: an
    // IPAM plugin such as whereabouts finds the allocation by the pod
    let mut args = cache
        .progress
        .as_ref()
        .map(|p| p.cni_args.clone())
        .unwrap_or_default();
    args.extend(at.env.args.clone());
    let args = (!args.is_empty()).then(|| super::ipam::cni_args_text(&args));
    let ipam_failed = match cache.conf.ipam_type() {
        Some(plugin) if releaser == Releaser::Del || ipam_added => Ipam {
            plugin,
            env: at.env,
            stdin: at.stdin,
            cni_version: &cache.conf.cni_version,
            attachment: at.ipam_identity,
            cni_args: args.as_deref(),
        }
        .del()
        .err(),
        _ => None,
    };
    if let Some(e) = &ipam_failed {
        tracing::error!(vf = %vf, error = %e.msg, "IPAM DEL failed; restoring the VF anyway, the cache stays for the retry");
    }

    let our_netns = cache
        .progress
        .as_ref()
        .map(|p| p.netns.clone())
        .or_else(|| at.env.netns.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_default();
    let vf_done = if cache.vf_restored() {
        tracing::info!(vf = %vf, "the VF was already put back; releasing IPAM and the cache only");
        Ok(())
    } else {
        match node.state.allocation(vf_address)? {
            Some(owner) if owned_by_another(&owner, &our_netns) => {
                tracing::warn!(vf = %vf, owner, "the VF now belongs to another pod; leaving it and its PF settings alone");
                Ok(())
            }
            _ => restore_attachment(
                node,
                cache,
                vf_address,
                &our_netns,
                at.ifname,
                releaser.home_name(),
            )
            .and_then(|()| node.state.clear_allocation(vf_address)),
        }
    };
    let state = match (&vf_done, &ipam_failed) {
        (Err(_), _) => {
            tracing::error!(vf = %vf, container = at.container_id, ifname = at.ifname, "the VF is not back; the attachment cache and allocation marker stay so DEL can finish it");
            Ok(())
        }
        (Ok(()), Some(_)) => {
            // The VF is done: a retry must not touch it again (it may be
            // another pod's by then), only release IPAM.
            if cache.vf_restored() {
                Ok(())
            } else {
                let mut cache = cache.clone();
                cache.mark_vf_restored(&our_netns, mode_of(&node.sysfs, &cache, vf));
                node.state.save_cache(at.container_id, at.ifname, &cache)
            }
        }
        (Ok(()), None) => {
            if releaser == Releaser::Del {
                super::device_info::remove(&cache.conf, &vf.to_string());
            }
            node.state.remove_cache(at.container_id, at.ifname)
        }
    };
    Ok(Released {
        vf: vf_done,
        ipam: ipam_failed,
        state,
    })
}

/// Does the allocation marker naming `owner` mean the VF is another pod's?
/// It names another netns than ours; or ours is unknown (a sriov-cni cache
/// and a runtime that sends no CNI_NETNS once the pod is gone) and the
/// marker's netns is alive, so a running pod holds the VF. When ours is
/// unknown and the marker's netns is gone, the VF is in no pod: it is
/// restored from our cache, as a new ADD would treat the marker as stale.
fn owned_by_another(owner: &str, our_netns: &str) -> bool {
    if our_netns.is_empty() {
        Path::new(owner).exists()
    } else {
        owner != our_netns
    }
}

/// Put the VF of `cache` back as its original state says, PF side first:
/// from the pod netns `netns` (interface `ifname`) if it is still there,
/// otherwise wherever it is on the host.
pub(crate) fn restore_attachment(
    node: &mut Node,
    cache: &Cache,
    vf_address: PciAddress,
    netns: &str,
    ifname: &str,
    home_name: HomeName,
) -> Result<(), CniError> {
    let sysfs = &node.sysfs;
    restore_pf_then_vf(sysfs, &mut *node.pf, cache, vf_address, || {
        restore_vf(sysfs, cache, vf_address, netns, ifname, home_name)
    })
}

/// The PF-side settings the cached config set go back first (each to its
/// cached original, skipped when already there), then the VF netdev. The
/// VF's PF and index are looked up again (the PF may have been renamed); a
/// VF that no longer exists has no PF-side state left.
fn restore_pf_then_vf(
    sysfs: &SysfsRoot,
    pf: &mut dyn PfOps,
    cache: &Cache,
    vf_address: PciAddress,
    release_netdev: impl FnOnce() -> Result<(), CniError>,
) -> Result<(), CniError> {
    let settings = pf_side::to_restore(cache);
    if settings.is_empty() {
        return release_netdev();
    }
    let at = match resolve(sysfs, vf_address) {
        Ok(target) => PfVf {
            vf: vf_address,
            pf: target.pf_name,
            index: target.vf_index,
        },
        Err(e) => {
            tracing::warn!(vf = %vf_address, error = %e.msg, "the VF is gone; no PF-side settings to restore");
            return release_netdev();
        }
    };
    pf_side::restore_in_order(pf, &at, &settings, &DRIVER_RETRY, release_netdev)
}

/// How the VF was attached: as ADD recorded it, or, for a cache written by
/// sriov-cni (which does not record it), from the driver bound now.
pub(crate) fn mode_of(sysfs: &SysfsRoot, cache: &Cache, vf: PciAddress) -> Mode {
    if let Some(progress) = &cache.progress {
        return progress.mode;
    }
    let driver = sysfs.pci_device(vf).ok().and_then(|d| d.driver);
    match driver {
        Some(driver) if USERSPACE_DRIVERS.contains(&driver.as_str()) => Mode::Dpdk,
        _ => Mode::Kernel,
    }
}

fn restore_vf(
    sysfs: &SysfsRoot,
    cache: &Cache,
    vf: PciAddress,
    netns: &str,
    ifname: &str,
    home_name: HomeName,
) -> Result<(), CniError> {
    if mode_of(sysfs, cache, vf) == Mode::Dpdk {
        return Ok(()); // nothing was moved
    }
    // `moved` may be stale (an ADD killed right after the move, or one
    // whose move failed half-way), so look in the pod regardless, but only
    // take an interface that is our VF.
    let kernel = |e: String| CniError::new(CODE_KERNEL, e);
    let original = Original {
        name: &cache.orig.host_ifname,
        mac: parse_mac(&cache.orig.effective_mac),
        mtu: (cache.orig.mtu > 0).then_some(cache.orig.mtu),
        up: cache.progress.as_ref().is_some_and(|p| p.host_up),
    };
    if original.name.is_empty() {
        return Err(kernel(format!(
            "VF {vf}: the cache has no original host name to restore"
        )));
    }
    let host_fd = vf::host_netns().map_err(|e| kernel(e.to_string()))?;
    let id = identity(cache, vf);
    // 1. In the pod netns, if it still exists.
    if !netns.is_empty() && Path::new(netns).exists() {
        let mut pod = vf::netlink_in(Path::new(netns), vf)?;
        let mut host = Netlink::open()?;
        if let Some(link) = id.in_pod(&mut pod, ifname)? {
            drop_home_alt_name(&mut pod, vf, link.index, original.name)?;
            let returned =
                vf::return_link_to_host(&mut pod, &mut host, host_fd.as_fd(), vf, &link, &original);
            return home_under_fallback(vf, returned, home_name);
        }
    }
    // 2. Not in the pod: on the host.
    restore_from_host(&id, vf, &original, home_name)
}

/// A VF home with its MAC and MTU under a fallback name, its own being
/// taken: say so, and succeed if `home_name` allows.
fn home_under_fallback(
    vf: PciAddress,
    returned: Result<(), vf::VfError>,
    home_name: HomeName,
) -> Result<(), CniError> {
    match returned {
        Err(e @ vf::VfError::HomeNameTaken { .. }) if home_name == HomeName::FallbackOk => {
            tracing::warn!(vf = %vf, error = %e, "VF restored under another name");
            Ok(())
        }
        other => Ok(other?),
    }
}

/// How to recognise this attachment's VF, from what ADD recorded.
pub(crate) fn identity(cache: &Cache, vf: PciAddress) -> vf::VfIdentity {
    let progress = cache.progress.as_ref();
    vf::VfIdentity {
        pci: vf,
        home: cache.orig.host_ifname.clone(),
        ifindex: progress.map(|p| p.ifindex).unwrap_or_default(),
        macs: [
            parse_mac(&cache.orig.effective_mac),
            progress.and_then(|p| parse_mac(&p.pod_mac)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        stand_in: progress.is_some_and(|p| p.stand_in),
    }
}

/// The VF is not in the pod: the netns died and the kernel brought it home,
/// or it never left (an ADD that failed or was killed before the move).
/// Restore it in place.
fn restore_from_host(
    id: &vf::VfIdentity,
    vf: PciAddress,
    original: &Original,
    home_name: HomeName,
) -> Result<(), CniError> {
    let mut host = Netlink::open()?;
    match id.on_host(&mut host)? {
        Some(link) => {
            if link.name != original.name {
                drop_home_alt_name(&mut host, vf, link.index, original.name)?;
            }
            let restored = vf::restore_on_host(&mut host, vf, &link, original);
            home_under_fallback(vf, restored, home_name)
        }
        None => {
            tracing::warn!(
                vf = %vf,
                "the VF netdev is in neither the pod nor the host netns; a veth stand-in dies with its netns"
            );
            Ok(())
        }
    }
}

/// The kernel refuses to rename a device to a name it holds as an altname
/// (EEXIST), and an altname equal to the VF's host name is what udev's
/// alternative names, or an agent keeping the old name on rename, leave
/// behind. sriov-cni deletes it when the VF leaves the host; we delete it on
/// the way home, which also covers VFs attached before it appeared.
fn drop_home_alt_name(
    netlink: &mut Netlink,
    vf: PciAddress,
    index: u32,
    home: &str,
) -> Result<(), CniError> {
    let kernel = |e: crate::netlink::NetlinkError| {
        CniError::new(
            CODE_KERNEL,
            format!("VF {vf}: removing the altname {home} so it can take that name again: {e}"),
        )
    };
    if netlink
        .alt_names(index)
        .map_err(kernel)?
        .iter()
        .any(|n| n == home)
    {
        tracing::info!(
            vf = %vf,
            altname = home,
            "removing the altname that equals the VF's host name"
        );
        netlink.del_alt_name(index, home).map_err(kernel)?;
    }
    Ok(())
}
