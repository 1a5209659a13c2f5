//! DEL: idempotent and best effort, but never at the expense of a VF.
//!
//! - No cache: still release IPAM with the stdin config (sriov-cni skips it
//!   and leaks the IP), then succeed even if that fails.
//! - IPAM DEL fails: restore the VF anyway, then report it and keep the
//!   cache marked "VF restored", so the retry only releases IPAM.
//! - The VF belongs to a newer pod (the marker names another netns, or ours
//!   is unknown and the marker's netns is alive): leave the VF and the PF
//!   alone (sriov-cni #219), release only IPAM and our own cache.
//! - The pod netns is gone: the kernel put a real VF back in the host netns
//!   under some name; find it by PCI address (or ifindex and MAC) and restore
//!   it. A veth stand-in died with the netns: nothing left to restore.
//! - Restoring fails: report it and keep the state for the retry (sriov-cni
//!   deletes its cache anyway and the VF is lost until reboot).
//! - VF attributes the config set through the PF (vlan, admin MAC, ...) go
//!   back to their cached originals before the netdev is released, because
//!   drivers refuse a VF-side MAC change while an admin MAC is set and
//!   trust is off (see `pf_side`).

use super::add::{restore_through_pf, vf_error};
use super::config::NetConf;
use super::env::CniEnv;
use super::error::{CniError, CODE_KERNEL, CODE_TRY_AGAIN};
use super::ipam::Ipam;
use super::pf_side::{self, PfVf};
use super::state::{Cache, Mode, StateDir, VfLock};
use super::vf_target::resolve;
use crate::netlink::{parse_mac, HostPf, Netlink, PfOps};
use crate::pci::PciAddress;
use crate::sysfs::{SysfsRoot, USERSPACE_DRIVERS};
use crate::vf::{self, Original};
use std::os::fd::AsFd;
use std::path::Path;

pub fn del(env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    del_with_pf(env, stdin, conf, &mut HostPf::default())
}

/// DEL with the PF-side operations going to `pf` (the host's netlink in the
/// plugin, a fake PF in tests); the VF netdev's are always real.
pub(crate) fn del_with_pf(
    env: &CniEnv,
    stdin: &[u8],
    conf: &NetConf,
    pf: &mut dyn PfOps,
) -> Result<(), CniError> {
    let state = StateDir::from_env();
    let locked = load_locked(&state, &env.container_id, &env.ifname, conf.device().ok())?;
    let Some((_lock, cache)) = locked else {
        tracing::info!(container = %env.container_id, ifname = %env.ifname, "DEL: no attachment cache; releasing IPAM only");
        // Nothing of ours exists; releasing IPAM is a courtesy (sriov-cni
        // skips it and leaks the IP). Its failure must not wedge the pod's
        // deletion: an ADD that failed on a bad IPAM config gets the same
        // bad config on DEL, forever. So log it and succeed.
        if let Some(plugin) = conf.ipam_type() {
            let ipam = Ipam::new(plugin, env, stdin, &conf.cni_version);
            if let Err(e) = ipam.del() {
                tracing::warn!(plugin, error = %e.msg, "DEL without an attachment: IPAM DEL failed; ignored");
            }
        }
        if let Ok(vf) = conf.device() {
            super::device_info::remove(conf, &vf.to_string());
        }
        // an ADD killed while writing its first cache leaves only a temp file
        state.remove_cache(&env.container_id, &env.ifname)?;
        return Ok(());
    };
    release(
        &state,
        env,
        stdin,
        &cache,
        &env.container_id,
        &env.ifname,
        None,
        pf,
    )
}

/// Lock the attachment's VF, then read its cache: a copy read before the
/// lock may be stale (a concurrent ADD taking the VF over marks it
/// `vf_restored`, GC removes it). The VF is `device` (the stdin's
/// `deviceID`) or, without one, the cache's, learnt from an unlocked read;
/// if the locked cache names another VF, that one is locked instead.
pub(crate) fn load_locked(
    state: &StateDir,
    container_id: &str,
    ifname: &str,
    device: Option<PciAddress>,
) -> Result<Option<(VfLock, Cache)>, CniError> {
    let mut device = device;
    for _ in 0..3 {
        let vf = match device {
            Some(vf) => vf,
            None => match state.load_cache(container_id, ifname)? {
                Some(cache) => cache.conf.device()?,
                None => return Ok(None),
            },
        };
        let lock = state.lock_vf(vf)?;
        let Some(cache) = state.load_cache(container_id, ifname)? else {
            return Ok(None);
        };
        let cached = cache.conf.device()?;
        if cached == vf {
            return Ok(Some((lock, cache)));
        }
        device = Some(cached);
    }
    Err(CniError::new(
        CODE_TRY_AGAIN,
        format!("the attachment cache {container_id}-{ifname} keeps changing its deviceID"),
    ))
}

/// Undo one attachment described by `cache`; the caller holds its VF's
/// lock (see `load_locked`). `attachment` overrides the CNI_* identity
/// given to IPAM (GC releasing other attachments).
#[allow(clippy::too_many_arguments)] // one attachment's identity and where its PF is reached
pub(crate) fn release(
    state: &StateDir,
    env: &CniEnv,
    stdin: &[u8],
    cache: &Cache,
    container_id: &str,
    ifname: &str,
    attachment: Option<(&str, &str, Option<&str>)>,
    pf: &mut dyn PfOps,
) -> Result<(), CniError> {
    let vf_address = cache.conf.device()?;
    let vf = vf_address.to_string();

    // Always: an ADD killed between IPAM ADD and saving its progress would
    // otherwise leak the address; IPAM DEL of nothing is a no-op. Its
    // failure does not stop the VF from going home (a retry then only has
    // IPAM left to do), but is reported after that.
    let ipam_failed = match cache.conf.ipam_type() {
        Some(plugin) => Ipam {
            plugin,
            env,
            stdin,
            cni_version: &cache.conf.cni_version,
            attachment,
        }
        .del()
        .err(),
        None => None,
    };
    if let Some(e) = &ipam_failed {
        tracing::error!(vf = %vf, error = %e.msg, "DEL: IPAM DEL failed; restoring the VF anyway, the cache stays for the retry");
    }

    let our_netns = cache
        .progress
        .as_ref()
        .map(|p| p.netns.clone())
        .or_else(|| env.netns.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_default();
    let vf_done = if cache.vf_restored() {
        tracing::info!(vf = %vf, "DEL: the VF was already put back; releasing IPAM and the cache only");
        Ok(())
    } else {
        match state.allocation(vf_address)? {
            Some(owner) if owned_by_another(&owner, &our_netns) => {
                tracing::warn!(vf = %vf, owner, "DEL: the VF now belongs to another pod; leaving it and its PF settings alone");
                Ok(())
            }
            _ => restore_attachment(pf, cache, vf_address, &our_netns, ifname)
                .and_then(|()| state.clear_allocation(vf_address)),
        }
    };
    match (vf_done, ipam_failed) {
        (Err(error), None) => Err(error),
        (Err(error), Some(ipam)) => {
            let details = format!("{}; IPAM DEL also failed: {}", error.details, ipam.msg);
            Err(error.with_details(details.trim_start_matches("; ").to_owned()))
        }
        (Ok(()), Some(ipam)) => {
            // The VF is done: a retry must not touch it again (it may be
            // another pod's by then), only release IPAM.
            if !cache.vf_restored() {
                let mut cache = cache.clone();
                cache.mark_vf_restored(&our_netns, mode_of(&cache, &vf));
                state.save_cache(container_id, ifname, &cache)?;
            }
            Err(ipam)
        }
        (Ok(()), None) => {
            super::device_info::remove(&cache.conf, &vf);
            state.remove_cache(container_id, ifname)
        }
    }
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
    pf: &mut dyn PfOps,
    cache: &Cache,
    vf_address: PciAddress,
    netns: &str,
    ifname: &str,
) -> Result<(), CniError> {
    let vf = vf_address.to_string();
    restore_pf_then_vf(cache, vf_address, pf, || {
        restore_vf(cache, &vf, netns, ifname)
    })
}

/// The PF-side settings the cached config set go back first, then the VF
/// netdev. The VF's PF and index are looked up again (the PF may have been
/// renamed); a VF that no longer exists has no PF-side state left.
fn restore_pf_then_vf(
    cache: &Cache,
    vf_address: PciAddress,
    pf: &mut dyn PfOps,
    release_netdev: impl FnOnce() -> Result<(), CniError>,
) -> Result<(), CniError> {
    let settings = pf_side::to_restore(cache);
    if settings.is_empty() {
        return release_netdev();
    }
    let at = match resolve(&SysfsRoot::resolve(None), vf_address) {
        Ok(target) => PfVf {
            vf: vf_address.to_string(),
            pf: target.pf_name,
            index: target.vf_index,
        },
        Err(e) => {
            tracing::warn!(vf = %vf_address, error = %e.msg, "DEL: the VF is gone; no PF-side settings to restore");
            return release_netdev();
        }
    };
    restore_through_pf(pf, &at, &settings, release_netdev)
}

pub(crate) fn mode_of(cache: &Cache, vf: &str) -> Mode {
    if let Some(progress) = &cache.progress {
        return progress.mode;
    }
    // A cache written by sriov-cni does not record the mode: re-detect it.
    let sysfs = SysfsRoot::resolve(None);
    let driver = vf
        .parse()
        .ok()
        .and_then(|address| sysfs.pci_device(address).ok())
        .and_then(|d| d.driver);
    match driver {
        Some(driver) if USERSPACE_DRIVERS.contains(&driver.as_str()) => Mode::Dpdk,
        _ => Mode::Kernel,
    }
}

fn restore_vf(cache: &Cache, vf: &str, netns: &str, ifname: &str) -> Result<(), CniError> {
    if mode_of(cache, vf) == Mode::Dpdk {
        return Ok(()); // nothing was moved
    }
    // `moved` may be stale (an ADD killed right after the move), so look in
    // the pod regardless, but only take an interface that is our VF.
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
    let ifindex = cache
        .progress
        .as_ref()
        .map(|p| p.ifindex)
        .unwrap_or_default();
    // 1. In the pod netns, if it still exists.
    if !netns.is_empty() && Path::new(netns).exists() {
        let mut pod = vf::netlink_in(Path::new(netns), vf).map_err(vf_error)?;
        let mut host = Netlink::open().map_err(|e| kernel(e.to_string()))?;
        let returned = if is_our_vf(&mut pod, vf, ifname, ifindex) {
            if let Ok(Some(link)) = crate::netlink::LinkOps::link_by_name(&mut pod, ifname) {
                drop_home_alt_name(&mut pod, vf, link.index, original.name)?;
            }
            vf::return_to_host(&mut pod, &mut host, host_fd.as_fd(), vf, ifname, &original)
        } else {
            // an ADD whose move failed at the rename left it under its host name
            let names = [original.name];
            let id = vf::VfId {
                pci: vf,
                names: &names,
                ifindex,
                mac: original.mac,
            };
            match vf::find_vf(&mut pod, vf, &id).map_err(vf_error)? {
                Some(link) => {
                    drop_home_alt_name(&mut pod, vf, link.index, original.name)?;
                    vf::return_link_to_host(
                        &mut pod,
                        &mut host,
                        host_fd.as_fd(),
                        vf,
                        &link,
                        &original,
                    )
                }
                None => return restore_from_host(cache, vf, &original),
            }
        };
        match returned {
            Ok(()) => return Ok(()),
            Err(e @ vf::VfError::HomeNameTaken { .. }) => {
                // home with its MAC and MTU, only the name differs: say so, succeed
                tracing::warn!(vf, error = %e, "DEL: VF restored under another name");
                return Ok(());
            }
            Err(vf::VfError::Missing { .. }) if !has_link(&mut pod, ifname) => {} // not there: look on the host
            Err(e) => return Err(vf_error(e)),
        }
    }
    restore_from_host(cache, vf, &original)
}

/// The VF is not in the pod: the netns died and the kernel brought it home,
/// or it never left (an ADD killed before the move). Restore it in place.
fn restore_from_host(cache: &Cache, vf: &str, original: &Original) -> Result<(), CniError> {
    let kernel = |e: String| CniError::new(CODE_KERNEL, e);
    let mut host = Netlink::open().map_err(|e| kernel(e.to_string()))?;
    let progress = cache.progress.as_ref();
    let ifindex = progress.map(|p| p.ifindex).unwrap_or_default();
    let pod_mac = progress.and_then(|p| parse_mac(&p.pod_mac));
    // the pod's MAC (the netns died), or the original one (a return home
    // that failed half-way, the rename refused after the move)
    let found = vf::find_on_host(
        &mut host,
        vf,
        original.name,
        ifindex,
        &[pod_mac, original.mac],
    )
    .map_err(vf_error)?;
    match found {
        Some(link) => {
            if link.name != original.name {
                drop_home_alt_name(&mut host, vf, link.index, original.name)?;
            }
            match vf::restore_on_host(&mut host, vf, &link, original) {
                Ok(()) => Ok(()),
                Err(e @ vf::VfError::HomeNameTaken { .. }) => {
                    // home with its MAC and MTU, only the name differs: say so, succeed
                    tracing::warn!(vf, error = %e, "DEL: VF restored under another name");
                    Ok(())
                }
                Err(e) => Err(vf_error(e)),
            }
        }
        None => {
            tracing::warn!(
                vf,
                "DEL: the VF netdev is in neither the pod nor the host netns; a veth stand-in dies with its netns"
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
pub(crate) fn drop_home_alt_name(
    netlink: &mut Netlink,
    vf: &str,
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
            vf,
            altname = home,
            "removing the altname that equals the VF's host name"
        );
        netlink.del_alt_name(index, home).map_err(kernel)?;
    }
    Ok(())
}

/// Is the pod's `ifname` our VF? A real VF names its PCI parent; a veth
/// stand-in keeps its ifindex across the move (the kernel keeps it when free).
fn is_our_vf(pod: &mut Netlink, vf: &str, ifname: &str, ifindex: u32) -> bool {
    use crate::netlink::LinkOps;
    match pod.link_by_name(ifname) {
        Ok(Some(link)) => match link.parent_device.as_deref() {
            Some(parent) => parent == vf,
            None => ifindex == 0 || link.index == ifindex,
        },
        _ => false,
    }
}

fn has_link(pod: &mut Netlink, ifname: &str) -> bool {
    use crate::netlink::LinkOps;
    matches!(pod.link_by_name(ifname), Ok(Some(_)))
}
