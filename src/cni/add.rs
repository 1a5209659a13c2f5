//! ADD: attach the VF to the pod, transactionally.
//!
//! The attachment cache and the allocation marker are written before the VF
//! is touched, so a plugin killed mid-ADD leaves enough behind for the
//! runtime's DEL to put everything back. Every later step registers its
//! undo; any failure runs them all in reverse and reports what could not be
//! undone, so the VF ends exactly as it was and no IP stays allocated.
//!
//! VF attributes held by the PF (vlan, admin MAC, rate, spoofchk, trust,
//! link_state) are read and saved in the cache before the first change,
//! then applied before the VF netdev moves; their undo runs before the
//! netdev's (see `pf_side` for why).

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{CniError, CODE_INVALID_CONFIG, CODE_INVALID_ENV, CODE_KERNEL, CODE_VF_IN_USE};
use super::ipam::Ipam;
use super::pf_side::{self, Found, PfVf, SharedPfOps, DRIVER_RETRY};
use super::result::{CniResult, Interface};
use super::state::{Cache, Mode, OrigVfState, Progress, StateDir};
use super::vf_target::{resolve, VfTarget};
use crate::netlink::{format_mac, HostPf, IfAddress, LinkOps, Netlink, PfOps, Route, VfSetting};
use crate::sysfs::SysfsRoot;
use crate::vf::{self, Original};
use serde_json::Value;
use std::cell::RefCell;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;

type Undo = Box<dyn FnOnce() -> Result<(), CniError>>;

/// Undo steps, run last-registered first.
#[derive(Default)]
struct Rollback {
    steps: Vec<(&'static str, Undo)>,
}

/// The rollback step that puts the VF back (PF side and netdev).
const RESTORE_THE_VF: &str = "restore the VF";

/// What a rollback left undone.
struct Undone {
    error: CniError,
    /// Names of the steps that failed.
    failed: Vec<&'static str>,
}

impl Rollback {
    fn push(&mut self, what: &'static str, undo: impl FnOnce() -> Result<(), CniError> + 'static) {
        self.steps.push((what, Box::new(undo)));
    }

    /// Run every undo, keep going past failures, and attach them to `error`.
    fn run(self, error: CniError) -> Undone {
        let mut failures = Vec::new();
        let mut failed = Vec::new();
        for (what, undo) in self.steps.into_iter().rev() {
            if let Err(e) = undo() {
                tracing::error!(step = what, error = %e.msg, "rollback step failed");
                failures.push(format!("{what}: {}", e.msg));
                failed.push(what);
            }
        }
        if failures.is_empty() {
            return Undone { error, failed };
        }
        let details = format!(
            "{}; rollback also failed: {}",
            error.details,
            failures.join("; ")
        );
        Undone {
            error: error.with_details(details.trim_start_matches("; ").to_owned()),
            failed,
        }
    }
}

/// What a failed ADD puts back on the VF, filled in as ADD goes and run as
/// one rollback step: the PF-side settings first, then the netdev, because
/// drivers refuse a VF-side MAC change while an admin MAC is set and trust
/// is off (see `pf_side`).
#[derive(Default)]
struct VfUndo {
    /// Undo of each PF-side change, in the order the changes were made.
    pf: Option<(PfVf, Vec<VfSetting>)>,
    netdev: Option<Undo>,
}

impl VfUndo {
    fn run(&mut self, pf_ops: &SharedPfOps) -> Result<(), CniError> {
        let netdev = self.netdev.take();
        let release = || netdev.map_or(Ok(()), |undo| undo());
        let Some((at, mut settings)) = self.pf.take().filter(|(_, s)| !s.is_empty()) else {
            return release();
        };
        settings.reverse();
        restore_through_pf(&mut *pf_ops.borrow_mut(), &at, &settings, release)
    }
}

/// Put PF-side `settings` back through `pf`, then run `release_netdev`
/// (also when the PF cannot be reached).
pub(crate) fn restore_through_pf(
    pf: &mut dyn PfOps,
    at: &PfVf,
    settings: &[VfSetting],
    release_netdev: impl FnOnce() -> Result<(), CniError>,
) -> Result<(), CniError> {
    pf_side::restore_in_order(pf, at, settings, &DRIVER_RETRY, release_netdev)
}

pub fn add(env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<Value, CniError> {
    add_with_pf(env, stdin, conf, Rc::new(RefCell::new(HostPf::default())))
}

/// ADD with the PF-side operations going to `pf_ops` (the host's netlink in
/// the plugin, a fake PF in tests); the VF netdev's are always real.
pub(crate) fn add_with_pf(
    env: &CniEnv,
    stdin: &[u8],
    conf: &NetConf,
    pf_ops: SharedPfOps,
) -> Result<Value, CniError> {
    conf.validate()?;
    let mac = conf.requested_mac(env.args.get("MAC").map(String::as_str))?;
    let vf_address = conf.device()?;
    let sysfs = SysfsRoot::resolve(None);
    let target = resolve(&sysfs, vf_address)?;
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::new(CODE_INVALID_ENV, "CNI_NETNS is not set"))?;
    if crate::netns::open(netns).is_err() {
        return Err(CniError::new(
            CODE_INVALID_ENV,
            format!(
                "CNI_NETNS {} cannot be opened: the pod's network namespace does not exist",
                netns.display()
            ),
        ));
    }
    super::netns_guard::refuse_own_netns(netns, env.netns_override)?;
    let netns_text = netns.display().to_string();
    let state = StateDir::from_env();
    let _lock = state.lock_vf(vf_address)?;

    let (container_id, ifname) = (env.container_id.clone(), env.ifname.clone());
    if let Some(owner) = state.allocation(vf_address)? {
        if owner != netns_text && Path::new(&owner).exists() {
            return Err(CniError::new(
                CODE_VF_IN_USE,
                format!("pci address {vf_address} is already allocated to the pod netns {owner}"),
            ));
        }
        // Stale (its pod is gone) or this pod's own: nothing is cleared
        // here; the marker is overwritten once ADD has its cache.
        take_over(
            &pf_ops,
            &state,
            vf_address,
            &owner,
            &netns_text,
            &container_id,
            &ifname,
        )?;
    }

    let mut host =
        Netlink::open().map_err(|e| CniError::new(super::error::CODE_KERNEL, e.to_string()))?;
    let host_link = match target.mode {
        Mode::Dpdk => None,
        Mode::Kernel => Some(find_host_netdev(&mut host, &sysfs, &target)?),
    };
    // Read what the PF holds for this VF before anything changes; a PF that
    // cannot tell fails here only if the config needs it.
    let pf_vf = PfVf {
        vf: vf_address.to_string(),
        pf: target.pf_name.clone(),
        index: target.vf_index,
    };
    let wanted = pf_side::requested(conf, mac)?;
    let userspace_vf = target.mode == Mode::Dpdk;
    let (pf_settings, found) = if wanted.is_empty() && !userspace_vf {
        (wanted, None)
    } else {
        pf_side::read_before(&mut *pf_ops.borrow_mut(), &pf_vf, wanted, userspace_vf)?
    };
    // a DPDK VF's MAC is its admin MAC (as sriov-cni reports it)
    let reported_mac = match target.mode {
        Mode::Dpdk => mac.or_else(|| {
            found
                .as_ref()
                .map(|f| f.config.mac)
                .filter(|m| *m != [0; 6])
        }),
        Mode::Kernel => mac,
    };
    let mut orig = OrigVfState {
        host_ifname: host_link
            .as_ref()
            .map(|l| l.name.clone())
            .unwrap_or_default(),
        effective_mac: host_link
            .as_ref()
            .and_then(|l| l.mac)
            .map(|m| format_mac(&m))
            .unwrap_or_default(),
        mtu: host_link.as_ref().and_then(|l| l.mtu).unwrap_or_default(),
        ..OrigVfState::default()
    };
    if let Some(found) = &found {
        let sets_admin_mac = pf_settings.iter().any(|s| matches!(s, VfSetting::Mac(_)));
        pf_side::record_original(&mut orig, &found.config, sets_admin_mac);
    }
    let mut cache = Cache {
        conf: conf.clone(),
        vf_id: i64::from(target.vf_index),
        master: target.pf_name.clone(),
        orig,
        progress: Some(Progress {
            netns: netns_text.clone(),
            mode: target.mode,
            ifindex: host_link.as_ref().map(|l| l.index).unwrap_or_default(),
            pod_mac: String::new(),
            moved: false,
            ipam_added: false,
            pod_mtu: 0,
            vf_restored: false,
            container_id: container_id.clone(),
            ifname: ifname.clone(),
            host_up: host_link.as_ref().is_some_and(|l| l.up),
        }),
    };
    state.save_cache(&container_id, &ifname, &cache)?;
    if let Err(error) = state.set_allocation(vf_address, &netns_text) {
        // nothing was touched yet: the cache just written must not stay
        return Err(match state.remove_cache(&container_id, &ifname) {
            Ok(()) => error,
            Err(also) => {
                let details = format!("also: {}", also.msg);
                error.with_details(details)
            }
        });
    }

    // The state files are released after the rollback, and only when every
    // undo succeeded: otherwise the runtime's DEL needs them to finish.
    let mut rollback = Rollback::default();
    let undo: Rc<RefCell<VfUndo>> = Rc::default();
    {
        let undo = undo.clone();
        let pf_ops = pf_ops.clone();
        rollback.push(RESTORE_THE_VF, move || undo.borrow_mut().run(&pf_ops));
    }
    let outcome =
        apply_pf_side(&pf_ops, &pf_vf, found.as_ref(), &pf_settings, &undo).and_then(|()| {
            attach_and_configure(
                env,
                stdin,
                conf,
                &target,
                host_link.as_ref(),
                reported_mac,
                &mut host,
                &mut cache,
                &state,
                &mut rollback,
                &undo,
            )
        });
    match outcome {
        Ok(result) => {
            drop(rollback); // success: nothing to undo
            Ok(result.to_version(&conf.cni_version))
        }
        Err(error) => {
            tracing::error!(vf = %vf_address, error = %error.msg, "ADD failed; rolling back");
            let undone = rollback.run(error);
            Err(after_rollback(
                &state,
                vf_address,
                &container_id,
                &ifname,
                &mut cache,
                undone,
            ))
        }
    }
}

/// After a failed ADD's rollback: release the cache and the marker if
/// everything was undone. Otherwise keep them (with ADD's progress) so the
/// runtime's DEL, or GC, finishes the job; if only IPAM is left, the VF is
/// back and its marker is released, and the cache says so.
fn after_rollback(
    state: &StateDir,
    vf_address: crate::pci::PciAddress,
    container_id: &str,
    ifname: &str,
    cache: &mut Cache,
    undone: Undone,
) -> CniError {
    let Undone { error, failed } = undone;
    let released = if failed.is_empty() {
        state
            .clear_allocation(vf_address)
            .and_then(|()| state.remove_cache(container_id, ifname))
    } else if !failed.contains(&RESTORE_THE_VF) {
        if let Some(progress) = cache.progress.as_mut() {
            progress.vf_restored = true;
        }
        state
            .save_cache(container_id, ifname, cache)
            .and_then(|()| state.clear_allocation(vf_address))
    } else {
        tracing::error!(vf = %vf_address, container = container_id, ifname, "ADD: rollback incomplete; the attachment cache and allocation marker stay so DEL can finish it");
        Ok(())
    };
    match released {
        Ok(()) => error,
        Err(e) => {
            let details = format!("{}; releasing the state files: {}", error.details, e.msg);
            error.with_details(details.trim_start_matches("; ").to_owned())
        }
    }
}

/// The VF's allocation marker names `owner`: a pod that is gone, or this
/// same pod. Before ADD records the VF's state as "original", put the VF
/// back as the attachment that left the marker found it (its cache: name,
/// MAC, MTU, PF-side settings), so a new pod never inherits the previous
/// pod's leftovers (name `net1`/`devN`, MAC, vlan, trust) as originals.
/// That attachment's cache is then marked "VF restored": its late DEL (or
/// GC) only releases its IPAM, with its own config. Another attachment of
/// this same pod holding the VF (a DPDK VF has no netdev to show it) is
/// refused.
fn take_over(
    pf_ops: &SharedPfOps,
    state: &StateDir,
    vf_address: crate::pci::PciAddress,
    owner: &str,
    our_netns: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    let ours = format!("{container_id}-{ifname}");
    let caches: Vec<(String, Cache)> = state
        .caches_of_vf(vf_address)?
        .into_iter()
        .filter(|(name, cache)| !cache.vf_restored() && cache.attachment(name).is_some())
        .collect();
    let netns_of = |cache: &Cache| cache.progress.as_ref().map(|p| p.netns.clone());
    let same_pod = owner == our_netns;
    if same_pod {
        if let Some((name, _)) = caches
            .iter()
            .find(|(name, cache)| *name != ours && netns_of(cache).as_deref() == Some(our_netns))
        {
            return Err(CniError::new(
                CODE_VF_IN_USE,
                format!(
                    "pci address {vf_address} is already attached to this pod (attachment {name})"
                ),
            ));
        }
    }
    let previous = if same_pod {
        caches.iter().find(|(name, _)| *name == ours)
    } else {
        let of_owner = caches
            .iter()
            .find(|(_, cache)| netns_of(cache).as_deref() == Some(owner));
        // a sriov-cni cache does not say its netns: take it if it is the only one
        let unknown: Vec<_> = caches
            .iter()
            .filter(|(_, c)| c.progress.is_none())
            .collect();
        of_owner.or(match unknown.as_slice() {
            [only] => Some(*only),
            _ => None,
        })
    };
    let Some((name, previous)) = previous else {
        if !same_pod {
            tracing::warn!(vf = %vf_address, stale = owner, "stale allocation marker without the attachment cache that wrote it: the VF's current state is taken as its original");
        }
        return Ok(());
    };
    let (old_id, old_ifname) = previous.attachment(name).unwrap_or((container_id, ifname));
    let old_netns = netns_of(previous).unwrap_or_else(|| owner.to_owned());
    tracing::info!(vf = %vf_address, previous = name, netns = old_netns, "putting the VF back as the previous attachment found it before taking it over");
    let restored = {
        let mut pf = pf_ops.borrow_mut();
        super::del::restore_attachment(&mut *pf, previous, vf_address, &old_netns, old_ifname)
    };
    restored.map_err(|e| {
        let msg = format!(
            "VF {vf_address}: restoring it from the previous attachment {name} before taking it over: {}",
            e.msg
        );
        CniError::new(e.code, msg).with_details(e.details)
    })?;
    if *name != ours {
        let mut marked = previous.clone();
        let mode = super::del::mode_of(previous, &vf_address.to_string());
        marked.mark_vf_restored(&old_netns, mode);
        state.save_cache(old_id, old_ifname, &marked)?;
    }
    Ok(())
}

/// Apply the PF-side settings, each one's undo recorded before it is sent.
fn apply_pf_side(
    pf: &SharedPfOps,
    at: &PfVf,
    found: Option<&Found>,
    settings: &[VfSetting],
    undo: &Rc<RefCell<VfUndo>>,
) -> Result<(), CniError> {
    let Some(found) = found.filter(|_| !settings.is_empty()) else {
        return Ok(());
    };
    undo.borrow_mut().pf = Some((at.clone(), Vec::new()));
    let mut record = |setting: VfSetting| {
        if let Some((_, undone)) = undo.borrow_mut().pf.as_mut() {
            undone.push(setting);
        }
    };
    let mut pf = pf.borrow_mut();
    pf_side::apply(&mut *pf, at, found, settings, &DRIVER_RETRY, &mut record)
        .map_err(CniError::from)
}

fn find_host_netdev(
    host: &mut Netlink,
    sysfs: &SysfsRoot,
    target: &VfTarget,
) -> Result<crate::netlink::Link, CniError> {
    let vf = target.address.to_string();
    let in_use = || {
        CniError::new(
            CODE_VF_IN_USE,
            format!("VF {vf}: its netdev is not in the host netns (in use by another pod, or not yet back from one)"),
        )
    };
    let names = sysfs
        .pci_device(target.address)
        .map_err(|e| CniError::new(CODE_INVALID_CONFIG, e.to_string()))?
        .netdevs;
    for name in names {
        if let Some(link) = host
            .link_by_name(&name)
            .map_err(|e| CniError::new(super::error::CODE_KERNEL, e.to_string()))?
        {
            // a real VF names its PCI parent; a veth stand-in has none
            if link.parent_device.as_deref().is_none_or(|p| p == vf) {
                return Ok(link);
            }
        }
    }
    Err(in_use())
}

#[allow(clippy::too_many_arguments)] // one transaction's context; splitting it would hide the order
fn attach_and_configure(
    env: &CniEnv,
    stdin: &[u8],
    conf: &NetConf,
    target: &VfTarget,
    host_link: Option<&crate::netlink::Link>,
    mac: Option<[u8; 6]>,
    host: &mut Netlink,
    cache: &mut Cache,
    state: &StateDir,
    rollback: &mut Rollback,
    undo: &Rc<RefCell<VfUndo>>,
) -> Result<CniResult, CniError> {
    let vf = target.address.to_string();
    let netns = env.netns.as_deref().unwrap_or(Path::new(""));
    let mut interface = Interface {
        name: env.ifname.clone(),
        sandbox: Some(netns.display().to_string()),
        pci_id: Some(vf.clone()),
        ..Interface::default()
    };
    let mut pod_ifindex = None;
    if let Some(link) = host_link {
        // Armed before the move: attach returns the VF itself when it fails
        // half-way, but that return can be refused while PF-side settings
        // are still applied; then the VF is found in the pod and returned
        // after they are undone.
        undo.borrow_mut().netdev = Some(return_to_host_undo(
            &vf,
            link,
            netns,
            &env.ifname,
            mac,
            None,
        ));
        let attached =
            vf::attach(host, &vf, link, netns, &env.ifname, mac, conf.mtu).map_err(vf_error)?;
        // in the pod now, under a known ifindex
        undo.borrow_mut().netdev = Some(return_to_host_undo(
            &vf,
            link,
            netns,
            &env.ifname,
            mac,
            Some(attached.ifindex),
        ));
        pod_ifindex = Some(attached.ifindex);
        interface.mac = Some(format_mac(&attached.mac));
        interface.mtu = Some(attached.mtu);
        if let Some(progress) = cache.progress.as_mut() {
            progress.moved = true;
            progress.pod_mac = format_mac(&attached.mac);
            progress.ifindex = attached.ifindex;
            progress.pod_mtu = attached.mtu;
        }
        state.save_cache(&env.container_id, &env.ifname, cache)?;
    } else {
        interface.mac = mac.map(|m| format_mac(&m));
    }

    let mut result = CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces: vec![interface],
        ..CniResult::default()
    };
    if let Some(plugin) = conf.ipam_type() {
        let ipam = Ipam::new(plugin, env, stdin, &conf.cni_version);
        let ipam_result = ipam.add()?;
        {
            let (plugin, env, stdin, version) = (
                plugin.to_owned(),
                env.clone(),
                stdin.to_vec(),
                conf.cni_version.clone(),
            );
            rollback.push("release the IP addresses (IPAM DEL)", move || {
                Ipam::new(&plugin, &env, &stdin, &version).del()
            });
        }
        if let Some(progress) = cache.progress.as_mut() {
            progress.ipam_added = true;
        }
        state.save_cache(&env.container_id, &env.ifname, cache)?;
        if let Some(ifindex) = pod_ifindex {
            let (addresses, routes) = addresses_and_routes(&ipam_result, ifindex)?;
            let mut pod = vf::netlink_in(netns, &vf).map_err(vf_error)?;
            vf::configure_ips(&mut pod, &vf, ifindex, &addresses, &routes).map_err(vf_error)?;
            let mac = result.interfaces[0]
                .mac
                .as_deref()
                .and_then(crate::netlink::parse_mac);
            vf::announce::best_effort(netns, &vf, ifindex, &env.ifname, mac, &addresses);
        }
        result.ips = ipam_result.ips;
        result.routes = ipam_result.routes;
        result.dns = ipam_result.dns;
    }
    if result.dns.is_empty() {
        if let Some(Value::Object(dns)) = &conf.dns {
            result.dns = dns.clone();
        }
    }
    if let Some(path) = super::device_info::requested_path(conf) {
        super::device_info::write(path, target)?;
    }
    Ok(result)
}

/// Return the VF from the pod to the host, if it is there: the pod's
/// `ifname` counts as our VF when it names the VF's PCI address as parent
/// (a real VF), has the ifindex attach reported (`pod_index`), or, before
/// that is known, for a veth stand-in, kept the host ifindex and a MAC we
/// gave or found it with.
fn return_to_host_undo(
    vf: &str,
    link: &crate::netlink::Link,
    netns: &Path,
    ifname: &str,
    mac: Option<[u8; 6]>,
    pod_index: Option<u32>,
) -> Undo {
    let (vf, netns, ifname) = (vf.to_owned(), netns.to_owned(), ifname.to_owned());
    let original = (link.name.clone(), link.mac, link.mtu, link.index, link.up);
    Box::new(move || {
        let mut pod = vf::netlink_in(&netns, &vf).map_err(vf_error)?;
        let found = match pod.link_by_name(&ifname) {
            Ok(Some(found)) => match (found.parent_device.as_deref(), pod_index) {
                (Some(parent), _) => parent == vf,
                (None, Some(index)) => found.index == index,
                (None, None) => {
                    found.index == original.3
                        && (found.mac == original.1 || (mac.is_some() && found.mac == mac))
                }
            }
            .then_some(found),
            Ok(None) => None,
            Err(e) => return Err(CniError::new(CODE_KERNEL, e.to_string())),
        };
        let found = match found {
            Some(found) => Some(found),
            // a move whose rename failed leaves the VF under its host name
            None => {
                let names = [original.0.as_str()];
                let id = vf::VfId {
                    pci: &vf,
                    names: &names,
                    ifindex: original.3,
                    mac: original.1,
                };
                vf::find_vf(&mut pod, &vf, &id).map_err(vf_error)?
            }
        };
        let Some(found) = found else {
            return Ok(()); // never moved, or attach already brought it back
        };
        super::del::drop_home_alt_name(&mut pod, &vf, found.index, &original.0)?;
        let host_fd = vf::host_netns().map_err(|e| CniError::new(CODE_KERNEL, e.to_string()))?;
        let mut host = Netlink::open().map_err(|e| CniError::new(CODE_KERNEL, e.to_string()))?;
        let original = Original {
            name: &original.0,
            mac: original.1,
            mtu: original.2,
            up: original.4,
        };
        use std::os::fd::AsFd;
        vf::return_link_to_host(&mut pod, &mut host, host_fd.as_fd(), &vf, &found, &original)
            .map_err(vf_error)
    })
}

pub(crate) fn vf_error(error: vf::VfError) -> CniError {
    match error {
        vf::VfError::IfnameTaken { .. } => {
            CniError::new(super::error::CODE_IFNAME_TAKEN, error.to_string())
        }
        other => CniError::new(super::error::CODE_KERNEL, other.to_string()),
    }
}

fn parse_cidr(cidr: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

/// The IPAM result as kernel objects. A route without `gw` uses the gateway
/// of the first address of its family, as the Go library does.
fn addresses_and_routes(
    result: &CniResult,
    ifindex: u32,
) -> Result<(Vec<IfAddress>, Vec<Route>), CniError> {
    let bad = |what: &str, value: &str| {
        CniError::new(
            super::error::CODE_IPAM,
            format!("IPAM result: {what} {value:?} is not valid"),
        )
    };
    let mut addresses = Vec::new();
    let mut gateways: Vec<IpAddr> = Vec::new();
    for ip in &result.ips {
        let (address, prefix_len) =
            parse_cidr(&ip.address).ok_or_else(|| bad("address", &ip.address))?;
        addresses.push(IfAddress {
            address,
            prefix_len,
        });
        if let Some(gw) = &ip.gateway {
            gateways.push(gw.parse().map_err(|_| bad("gateway", gw))?);
        }
    }
    let mut routes = Vec::new();
    for route in &result.routes {
        let dst = route.get("dst").and_then(Value::as_str).unwrap_or_default();
        let (destination, prefix_len) = parse_cidr(dst).ok_or_else(|| bad("route dst", dst))?;
        let gateway = match route.get("gw").and_then(Value::as_str) {
            Some(gw) => Some(gw.parse::<IpAddr>().map_err(|_| bad("route gw", gw))?),
            None => gateways
                .iter()
                .copied()
                .find(|g| g.is_ipv4() == destination.is_ipv4()),
        };
        let priority = route
            .get("priority")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok());
        let table = route
            .get("table")
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok());
        routes.push(Route {
            destination,
            prefix_len,
            gateway,
            oif: ifindex,
            priority,
            table,
        });
    }
    Ok((addresses, routes))
}
