//! STATUS and GC (CNI 1.1.0), which sriov-cni does not implement.

use super::config::{Attachment, NetConf};
use super::del::release;
use super::env::CniEnv;
use super::error::{CniError, CODE_NOT_AVAILABLE};
use super::ipam::Ipam;
use super::state::StateDir;
use crate::sysfs::SysfsRoot;

/// Ready for ADD: sysfs readable, state directory usable, IPAM ready.
pub fn status(env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let sysfs = SysfsRoot::resolve(None);
    if let Err(e) = sysfs.pci_addresses() {
        return Err(CniError::new(
            CODE_NOT_AVAILABLE,
            format!("cannot read PCI devices: {e}"),
        ));
    }
    if let Some(plugin) = conf.ipam_type() {
        Ipam::new(plugin, env, stdin, &conf.cni_version).status()?;
    }
    Ok(())
}

/// Release every attachment of this network that is not in the valid list,
/// keep going past failures and report them all at the end; then forward
/// GC to IPAM.
pub fn gc(env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let valid: Vec<Attachment> = conf
        .valid_attachments
        .clone()
        .or_else(|| conf.attachments.clone())
        .unwrap_or_default();
    let state = StateDir::from_env();
    let mut failures = Vec::new();
    for name in state.cache_names()? {
        let cache = match state.load_cache_file(&name) {
            Ok(cache) => cache,
            Err(e) => {
                failures.push(e.msg);
                continue;
            }
        };
        if cache.conf.name != conf.name {
            continue; // another network's attachment
        }
        // `<containerID>-<ifname>`: the ifname is whatever follows the last
        // '-' that leaves a valid container ID in front
        let Some((container_id, ifname)) = split_cache_name(&name) else {
            continue;
        };
        if valid
            .iter()
            .any(|a| a.container_id == container_id && a.ifname == ifname)
        {
            continue;
        }
        tracing::info!(
            container = container_id,
            ifname,
            "GC: releasing a stale attachment"
        );
        let netns = cache.progress.as_ref().map(|p| p.netns.clone());
        if let Err(e) = release(
            &state,
            env,
            stdin,
            &cache,
            container_id,
            ifname,
            Some((container_id, ifname, netns.as_deref())),
        ) {
            failures.push(format!("{container_id}/{ifname}: {}", e.msg));
        }
    }
    if let Some(plugin) = conf.ipam_type() {
        if let Err(e) = Ipam::new(plugin, env, stdin, &conf.cni_version).gc() {
            failures.push(e.msg);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            super::error::CODE_IO,
            format!("GC: {}", failures.join("; ")),
        ))
    }
}

fn split_cache_name(name: &str) -> Option<(&str, &str)> {
    name.char_indices()
        .rev()
        .filter(|(_, c)| *c == '-')
        .find_map(|(i, _)| {
            let (id, ifname) = (&name[..i], &name[i + 1..]);
            (super::env::valid_container_id(id) && super::env::valid_ifname(ifname))
                .then_some((id, ifname))
        })
}
