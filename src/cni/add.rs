//! ADD: attach the VF to the pod, transactionally.
//!
//! The attachment cache and the allocation marker are written before the VF
//! is touched, so a plugin killed mid-ADD leaves enough behind for the
//! runtime's DEL to put everything back. Each later step records its
//! progress in the cache (moved, where, which MAC, IPAM done); a failure
//! puts everything back from that record through the same restore path DEL
//! uses (`restore`), reports what could not be undone, and keeps the state
//! files for DEL when something could not.
//!
//! VF attributes held by the PF (vlan, admin MAC, rate, spoofchk, trust,
//! link_state) are read and saved in the cache before the first change,
//! then applied before the VF netdev moves; they are restored before the
//! netdev is (see `pf_side` for why).

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{CniError, CODE_INVALID_CONFIG, CODE_INVALID_ENV, CODE_VF_IN_USE};
use super::ipam::Ipam;
use super::node::Node;
use super::pf_side::{self, Found, PfVf, DRIVER_RETRY};
use super::restore::{self, Attachment, Releaser};
use super::result::{CniResult, Interface};
use super::state::{Cache, Mode, OrigVfState, Progress, StateDir};
use super::vf_target::{resolve, VfTarget};
use crate::netlink::{format_mac, IfAddress, Netlink, PfOps, Route, VfSetting};
use crate::sysfs::SysfsRoot;
use crate::vf;
use serde_json::Value;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn add(node: &mut Node, env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<Value, CniError> {
    conf.validate()?;
    let mac = conf.requested_mac(env.args.get("MAC").map(String::as_str))?;
    let vf_address = conf.device()?;
    let target = resolve(&node.sysfs, vf_address)?;
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
    let _lock = node.state.lock_vf(vf_address)?;

    let (container_id, ifname) = (env.container_id.as_str(), env.ifname.as_str());
    if let Some(owner) = node.state.allocation(vf_address)? {
        if owner != netns_text && Path::new(&owner).exists() {
            return Err(CniError::new(
                CODE_VF_IN_USE,
                format!("pci address {vf_address} is already allocated to the pod netns {owner}"),
            ));
        }
        // Stale (its pod is gone) or this pod's own: nothing is cleared
        // here; the marker is overwritten once ADD has its cache.
        take_over(node, vf_address, &owner, &netns_text, container_id, ifname)?;
    }

    let mut host = Netlink::open()?;
    let host_link = match target.mode {
        Mode::Dpdk => None,
        Mode::Kernel => Some(find_host_netdev(&mut host, &node.sysfs, &target)?),
    };
    // Read what the PF holds for this VF before anything changes; a PF that
    // cannot tell fails here only if the config needs it.
    let pf_vf = PfVf {
        vf: vf_address,
        pf: target.pf_name.clone(),
        index: target.vf_index,
    };
    let wanted = pf_side::requested(conf, mac)?;
    let userspace_vf = target.mode == Mode::Dpdk;
    let (pf_settings, found) = if wanted.is_empty() && !userspace_vf {
        (wanted, None)
    } else {
        pf_side::read_before(&mut *node.pf, &pf_vf, wanted, userspace_vf)?
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
            // the MAC it will carry in the pod, so that a move that fails
            // half-way still finds it there
            pod_mac: mac.map(|m| format_mac(&m)).unwrap_or_default(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            host_up: host_link.as_ref().is_some_and(|l| l.up),
            stand_in: host_link
                .as_ref()
                .is_some_and(|l| l.parent_device.is_none()),
            cni_args: env.args.clone(),
            ..Progress::default()
        }),
    };
    node.state.save_cache(container_id, ifname, &cache)?;
    if let Err(error) = node.state.set_allocation(vf_address, &netns_text) {
        // nothing was touched yet: the cache just written must not stay
        return Err(match node.state.remove_cache(container_id, ifname) {
            Ok(()) => error,
            Err(also) => {
                let details = format!("also: {}", also.msg);
                error.with_details(details)
            }
        });
    }

    let outcome =
        apply_pf_side(&mut *node.pf, &pf_vf, found.as_ref(), &pf_settings).and_then(|()| {
            attach_and_configure(
                env,
                stdin,
                conf,
                &target,
                host_link.as_ref(),
                reported_mac,
                &mut host,
                &mut cache,
                &node.state,
            )
        });
    match outcome {
        Ok(result) => Ok(result.to_version(conf.version()?)),
        Err(error) => {
            tracing::error!(vf = %vf_address, error = %error.msg, "ADD failed; rolling back");
            Err(roll_back(node, env, stdin, &cache, error))
        }
    }
}

/// A failed ADD puts back what its cache says it did, through the restore
/// path DEL uses: IPAM (if it gave addresses), the PF side, the netdev; then
/// the state files go, or stay (with ADD's progress) for the runtime's DEL
/// when something could not be undone. Every failure of the way back is
/// added to `error`'s details.
fn roll_back(
    node: &mut Node,
    env: &CniEnv,
    stdin: &[u8],
    cache: &Cache,
    error: CniError,
) -> CniError {
    let attachment = Attachment {
        env,
        stdin,
        container_id: &env.container_id,
        ifname: &env.ifname,
        ipam_identity: None,
    };
    let mut failures = Vec::new();
    match restore::release(node, cache, &attachment, Releaser::FailedAdd) {
        Ok(released) => {
            if let Some(ipam) = released.ipam {
                failures.push(format!("release the IP addresses (IPAM DEL): {}", ipam.msg));
            }
            if let Err(vf) = released.vf {
                failures.push(format!("restore the VF: {}", vf.msg));
            }
            if let Err(state) = released.state {
                failures.push(format!("releasing the state files: {}", state.msg));
            }
        }
        Err(e) => failures.push(format!("restore the VF: {}", e.msg)),
    }
    if failures.is_empty() {
        return error;
    }
    for failure in &failures {
        tracing::error!(failure, "rollback step failed");
    }
    let details = format!(
        "{}; rollback also failed: {}",
        error.details,
        failures.join("; ")
    );
    error.with_details(details.trim_start_matches("; ").to_owned())
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
    node: &mut Node,
    vf_address: crate::pci::PciAddress,
    owner: &str,
    our_netns: &str,
    container_id: &str,
    ifname: &str,
) -> Result<(), CniError> {
    let ours = format!("{container_id}-{ifname}");
    let caches: Vec<(String, Cache)> = node
        .state
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
    let restored = restore::restore_attachment(
        node,
        previous,
        vf_address,
        &old_netns,
        old_ifname,
        restore::HomeName::FallbackOk,
    );
    restored.map_err(
        |e| {
            let msg = format!(
                "VF {vf_address}: restoring it from the previous attachment {name} before taking it over: {}",
                e.msg
            );
            CniError::new(e.code, msg).with_details(e.details)
        },
    )?;
    if *name != ours {
        let mut marked = previous.clone();
        let mode = restore::mode_of(&node.sysfs, previous, vf_address);
        marked.mark_vf_restored(&old_netns, mode);
        node.state.save_cache(old_id, old_ifname, &marked)?;
    }
    Ok(())
}

/// Apply the PF-side settings; what to put back is already in the cache
/// (the originals `read_before` found).
fn apply_pf_side(
    pf: &mut dyn PfOps,
    at: &PfVf,
    found: Option<&Found>,
    settings: &[VfSetting],
) -> Result<(), CniError> {
    let Some(found) = found.filter(|_| !settings.is_empty()) else {
        return Ok(());
    };
    pf_side::apply(pf, at, found, settings, &DRIVER_RETRY).map_err(CniError::from)
}

/// How long ADD keeps re-reading the VF's netdev name when sysfs names one
/// the host netns does not have.
const RENAME_SETTLE: Duration = Duration::from_secs(1);

/// The VF's netdev on the host, by the name sysfs gives it. sysfs can name
/// a netdev the host does not have for a moment: a rename in flight (udev
/// naming a VF that just came home; the simulated node's served tree
/// follows renames a moment late). Then a real VF is found by its PCI
/// parent, and the name is read again for up to a second. A VF whose
/// sysfs lists no netdev in this netns is in a pod: refused at once.
fn find_host_netdev(
    host: &mut Netlink,
    sysfs: &SysfsRoot,
    target: &VfTarget,
) -> Result<crate::netlink::Link, CniError> {
    let vf = target.address;
    let deadline = Instant::now() + RENAME_SETTLE;
    loop {
        let names = sysfs
            .pci_device(vf)
            .map_err(|e| CniError::new(CODE_INVALID_CONFIG, e.to_string()))?
            .netdevs;
        if let Some(link) = vf::host_netdev_named(host, vf, &names)? {
            return Ok(link);
        }
        if names.is_empty() || Instant::now() >= deadline {
            return Err(CniError::new(
                CODE_VF_IN_USE,
                format!(
                    "VF {vf}: its netdev is not in the host netns (in use by another pod, or not yet back from one)"
                ),
            ));
        }
        if let Some(link) = vf::host_netdev_by_parent(host, vf)? {
            return Ok(link);
        }
        tracing::debug!(vf = %vf, ?names, "sysfs names a netdev the host does not have; reading it again");
        std::thread::sleep(Duration::from_millis(10));
    }
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
) -> Result<CniResult, CniError> {
    let vf = target.address;
    let netns = env.netns.as_deref().unwrap_or(Path::new(""));
    let mut interface = Interface {
        name: env.ifname.clone(),
        sandbox: Some(netns.display().to_string()),
        pci_id: Some(vf.to_string()),
        ..Interface::default()
    };
    let mut pod_ifindex = None;
    if let Some(link) = host_link {
        // attach returns the VF itself when it fails half-way; when that
        // return is refused (PF-side settings still applied), the rollback
        // finds it in the pod by what the cache says
        let attached = vf::attach(host, vf, link, netns, &env.ifname, mac, conf.mtu)?;
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
        if let Some(progress) = cache.progress.as_mut() {
            progress.ipam_added = true;
        }
        state.save_cache(&env.container_id, &env.ifname, cache)?;
        if let Some(ifindex) = pod_ifindex {
            let (addresses, routes) = addresses_and_routes(&ipam_result, ifindex)?;
            let mut pod = vf::netlink_in(netns, vf)?;
            vf::configure_ips(&mut pod, vf, ifindex, &addresses, &routes)?;
            let mac = result.interfaces[0]
                .mac
                .as_deref()
                .and_then(crate::netlink::parse_mac);
            vf::announce::best_effort(netns, vf, ifindex, &env.ifname, mac, &addresses);
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
