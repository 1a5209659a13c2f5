//! `sriovctl inventory`: the node as a person wants to see it, and as JSON
//! (`pools[].resourceName` and `pools[].devices[].id` are a stable contract).
//!
//! With the kubelet's PodResources socket at hand, each VF (and SF) also
//! shows the pod holding it (`List`) and its health as the kubelet counts
//! it: `Healthy` when `GetAllocatableResources` lists it under its pool,
//! `Unhealthy` when it is in a pool but not allocatable (a device the
//! daemon keeps for a pod through a reload, say). Without the socket both
//! are unknown (`-`, JSON null) and a warning says why.

use super::CtlError;
use crate::config;
use crate::deviceplugin::held::{self, HeldDevices};
use crate::kubelet_api::DEFAULT_POD_RESOURCES_SOCKET;
use crate::pool::{self, Discovered, Pools};
use crate::sysfs::SysfsRoot;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// sriov-network-device-plugin config; without it only PFs and VFs are shown
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Default prefix of resource names
    #[arg(long, default_value = config::DEFAULT_RESOURCE_PREFIX)]
    pub resource_prefix: String,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// The kubelet's PodResources socket, for the pod holding each VF and
    /// its health; "" skips it
    // a String, not a PathBuf: clap refuses an empty path
    #[arg(long, default_value = DEFAULT_POD_RESOURCES_SOCKET)]
    pub pod_resources_socket: String,
}

/// What the kubelet told us through PodResources; all None when it could
/// not be asked.
#[derive(Debug, Default)]
pub struct KubeletView {
    pub socket: Option<PathBuf>,
    pub held: Option<HeldDevices>,
    /// Resource name → allocatable device IDs.
    pub allocatable: Option<BTreeMap<String, BTreeSet<String>>>,
    pub error: Option<String>,
}

impl KubeletView {
    /// Asks the kubelet's PodResources API on `socket` (List and
    /// GetAllocatableResources); a failure is kept as `error`.
    pub fn ask(socket: &Path) -> KubeletView {
        let mut view = KubeletView {
            socket: Some(socket.to_owned()),
            ..KubeletView::default()
        };
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                view.error = Some(format!("cannot start an async runtime: {error}"));
                return view;
            }
        };
        let answers = runtime.block_on(async {
            let held = held::list(socket).await?;
            let allocatable = held::allocatable(socket).await?;
            Ok::<_, held::PodResourcesError>((held, allocatable))
        });
        match answers {
            Ok((held, allocatable)) => {
                view.held = Some(held);
                view.allocatable = Some(allocatable);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot ask the kubelet which pods hold devices: pods and health unknown");
                view.error = Some(error.to_string());
            }
        }
        view
    }

    fn pod_of(&self, id: &str) -> Value {
        match self.held.as_ref().and_then(|h| h.holder_of(id)) {
            Some((resource, holder)) => json!({
                "namespace": holder.namespace, "name": holder.pod,
                "container": holder.container, "resource": resource,
            }),
            None => Value::Null,
        }
    }

    fn health_of(&self, id: &str, pool: Option<&str>) -> Value {
        match (self.allocatable.as_ref(), pool) {
            (Some(allocatable), Some(pool)) => {
                if allocatable.get(pool).is_some_and(|ids| ids.contains(id)) {
                    json!("Healthy")
                } else {
                    json!("Unhealthy")
                }
            }
            _ => Value::Null,
        }
    }
}

/// Netdevs carrying an IPv4 default route in this netns; empty (with a
/// warning) if netlink is unavailable.
fn default_route_netdevs() -> Vec<String> {
    crate::netlink::default_route_netdevs().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read routes: no device is excluded for carrying the default route");
        Vec::new()
    })
}

fn model_name(vendor: u16, device: u16) -> String {
    match pci_ids::Device::from_vid_pid(vendor, device) {
        Some(found) => format!("{} {}", found.vendor().name(), found.name()),
        None => format!("{vendor:04x}:{device:04x}"),
    }
}

pub fn run(args: &InventoryArgs, sysfs_root: Option<&Path>) -> Result<(), CtlError> {
    let sysfs = SysfsRoot::resolve(sysfs_root);
    // every fact, not only what the config's selectors need: this is for a person
    let devices = pool::discover(&sysfs).map_err(|e| CtlError::Usage(e.to_string()))?;
    let pools = match &args.config_file {
        Some(path) => {
            let loaded = config::load(path, &args.resource_prefix)
                .map_err(|e| CtlError::Usage(e.to_string()))?;
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            pool::build(&loaded.config, devices.clone(), &default_route_netdevs())
        }
        None => Pools::default(),
    };
    let kubelet = if args.pod_resources_socket.is_empty() {
        KubeletView::default()
    } else {
        KubeletView::ask(Path::new(&args.pod_resources_socket))
    };
    let text = match args.output {
        Output::Json => {
            let mut json = serde_json::to_string_pretty(&to_json(&devices, &pools, &kubelet))
                .map_err(|e| CtlError::Usage(format!("rendering the inventory: {e}")))?;
            json.push('\n');
            json
        }
        Output::Table => table(&devices, &pools, &kubelet),
    };
    write_stdout(&text)
}

/// Print the whole report; a reader that goes away early (`| head`) is
/// not an error.
fn write_stdout(text: &str) -> Result<(), CtlError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CtlError::Usage(format!("writing the inventory: {e}")))
        }
        _ => Ok(()),
    }
}

pub fn to_json(devices: &[Discovered], pools: &Pools, kubelet: &KubeletView) -> Value {
    let pool_by_device: std::collections::HashMap<&str, &str> = pools
        .pools
        .iter()
        .flat_map(|p| {
            p.devices
                .iter()
                .map(move |d| (d.id.as_str(), p.resource_name.as_str()))
        })
        .collect();
    let pool_of = |id: &str| pool_by_device.get(id).copied();
    let on_pf = |pf: &Discovered, device: &Discovered| device.pf_address == Some(pf.device.address);
    let pfs: Vec<Value> = devices
        .iter()
        .filter(|d| d.aux.is_none() && d.device.sriov.is_some())
        .map(|pf| {
            let vfs: Vec<Value> = devices
                .iter()
                .filter(|vf| vf.aux.is_none() && on_pf(pf, vf))
                .map(|vf| {
                    json!({
                        "vfIndex": vf.facts.vf_index, "pciAddress": vf.facts.id, "driver": vf.device.driver,
                        "netdev": vf.netdev(), "numaNode": vf.device.numa_node,
                        "vdpa": vf.vdpa.as_ref().map(|v| &v.name), "pool": pool_of(&vf.facts.id),
                        "pod": kubelet.pod_of(&vf.facts.id),
                        "health": kubelet.health_of(&vf.facts.id, pool_of(&vf.facts.id)),
                    })
                })
                .collect();
            let sfs: Vec<Value> = devices
                .iter()
                .filter(|sf| sf.aux.is_some() && on_pf(pf, sf))
                .map(|sf| {
                    json!({
                        "sfNumber": sf.facts.vf_index, "id": sf.facts.id, "auxType": sf.facts.aux_type,
                        "netdev": sf.netdev(), "pool": pool_of(&sf.facts.id),
                        "pod": kubelet.pod_of(&sf.facts.id),
                        "health": kubelet.health_of(&sf.facts.id, pool_of(&sf.facts.id)),
                    })
                })
                .collect();
            let sriov = pf.device.sriov.unwrap_or(crate::sysfs::SriovCapability { total_vfs: 0, num_vfs: 0 });
            json!({
                "name": pf.netdev(), "pciAddress": pf.facts.id, "model": model_name(pf.device.vendor, pf.device.device),
                "vendor": format!("{:04x}", pf.device.vendor), "device": format!("{:04x}", pf.device.device), "driver": pf.device.driver,
                "numaNode": pf.device.numa_node, "numVfs": sriov.num_vfs, "totalVfs": sriov.total_vfs,
                "vfsInPools": vfs.iter().filter(|v| !v["pool"].is_null()).count(), "vfs": vfs, "sfs": sfs,
            })
        })
        .collect();
    let excluded: Vec<Value> = pools
        .excluded
        .iter()
        .map(|e| json!({"pciAddress": e.address.to_string(), "reason": e.reason.to_string()}))
        .collect();
    let pod_resources = json!({
        "socket": kubelet.socket.as_ref().map(|p| p.display().to_string()),
        "error": kubelet.error,
    });
    json!({ "pools": pools.pools, "pfs": pfs, "excluded": excluded, "podResources": pod_resources })
}

/// The inventory as a person reads it: PFs with their VFs and SFs, then the
/// pools and the devices kept out of netDevice pools.
fn table(devices: &[Discovered], pools: &Pools, kubelet: &KubeletView) -> String {
    use std::fmt::Write;
    // writing into a String cannot fail: the `let _ =` below drop an Ok
    let mut out = String::new();
    let json = to_json(devices, pools, kubelet);
    let text = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for pf in json["pfs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "PF {} {}  {}  NUMA {}  VFs {}/{} enabled, {} in pools",
            text(&pf["name"]),
            text(&pf["pciAddress"]),
            text(&pf["model"]),
            text(&pf["numaNode"]),
            text(&pf["numVfs"]),
            text(&pf["totalVfs"]),
            text(&pf["vfsInPools"]),
        );
        let vfs = pf["vfs"].as_array().map(Vec::as_slice).unwrap_or_default();
        if !vfs.is_empty() {
            let _ = writeln!(
                out,
                "  {:<5} {:<14} {:<10} {:<14} {:<32} {:<10} POD",
                "VF", "PCI", "DRIVER", "NETDEV", "POOL", "HEALTH"
            );
        }
        for vf in vfs {
            let _ = writeln!(
                out,
                "  {:<5} {:<14} {:<10} {:<14} {:<32} {:<10} {}",
                text(&vf["vfIndex"]),
                text(&vf["pciAddress"]),
                text(&vf["driver"]),
                text(&vf["netdev"]),
                text(&vf["pool"]),
                text(&vf["health"]),
                pod_text(&vf["pod"]),
            );
        }
        let sfs = pf["sfs"].as_array().map(Vec::as_slice).unwrap_or_default();
        if !sfs.is_empty() {
            let _ = writeln!(
                out,
                "  {:<5} {:<20} {:<14} {:<32} {:<10} POD",
                "SF", "AUX DEVICE", "NETDEV", "POOL", "HEALTH"
            );
        }
        for sf in sfs {
            let _ = writeln!(
                out,
                "  {:<5} {:<20} {:<14} {:<32} {:<10} {}",
                text(&sf["sfNumber"]),
                text(&sf["id"]),
                text(&sf["netdev"]),
                text(&sf["pool"]),
                text(&sf["health"]),
                pod_text(&sf["pod"]),
            );
        }
    }
    if !pools.pools.is_empty() {
        let _ = writeln!(out, "POOLS");
        for pool in &pools.pools {
            let _ = writeln!(
                out,
                "  {:<40} {:<12} {} devices",
                pool.resource_name,
                pool.device_type,
                pool.devices.len()
            );
        }
    }
    for excluded in &pools.excluded {
        let _ = writeln!(out, "excluded {}: {}", excluded.address, excluded.reason);
    }
    if let Some(error) = &kubelet.error {
        let _ = writeln!(out, "pods and health unknown: {error}");
    }
    out
}

/// `namespace/name` of a VF's pod, `-` when none (or unknown).
fn pod_text(pod: &Value) -> String {
    match (pod["namespace"].as_str(), pod["name"].as_str()) {
        (Some(namespace), Some(name)) => format!("{namespace}/{name}"),
        _ => "-".to_owned(),
    }
}
