//! CHECK: the attachment is still what ADD made it (sriov-cni's is a no-op).

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{CniError, CODE_UNKNOWN_CONTAINER};
use super::ipam::Ipam;
use super::result::CniResult;
use super::state::{Mode, StateDir};
use crate::netlink::{format_mac, AddressOps, LinkOps};
use crate::vf;
use std::path::Path;

fn failed(msg: String) -> CniError {
    CniError::new(CODE_UNKNOWN_CONTAINER, msg)
}

pub fn check(env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let state = StateDir::from_env();
    let cache = state
        .load_cache(&env.container_id, &env.ifname)?
        .ok_or_else(|| {
            failed(format!(
                "no attachment {}/{} on this node",
                env.container_id, env.ifname
            ))
        })?;
    let vf_name = cache.conf.device()?.to_string();
    let progress = cache.progress.as_ref();
    if progress.is_none_or(|p| p.mode == Mode::Kernel) {
        let netns = env.netns.as_deref().unwrap_or(Path::new(""));
        let mut pod = vf::netlink_in(netns, &vf_name).map_err(super::add::vf_error)?;
        let link = pod
            .link_by_name(&env.ifname)
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| {
                failed(format!(
                    "VF {vf_name}: {} is missing from the pod netns",
                    env.ifname
                ))
            })?;
        if let Some(expected) = progress
            .map(|p| p.pod_mac.as_str())
            .filter(|m| !m.is_empty())
        {
            let actual = link.mac.map(|m| format_mac(&m)).unwrap_or_default();
            if actual != expected {
                return Err(failed(format!(
                    "VF {vf_name}: {} has MAC {actual}, expected {expected}",
                    env.ifname
                )));
            }
        }
        if let (Some(expected), Some(actual)) = (conf.mtu, link.mtu) {
            if expected != actual {
                return Err(failed(format!(
                    "VF {vf_name}: {} has MTU {actual}, expected {expected}",
                    env.ifname
                )));
            }
        }
        if let Some(prev) = &conf.prev_result {
            let prev = CniResult::parse(prev.clone())?;
            let present = pod
                .addresses(link.index)
                .map_err(|e| failed(e.to_string()))?;
            for ip in &prev.ips {
                let found = present
                    .iter()
                    .any(|a| format!("{}/{}", a.address, a.prefix_len) == ip.address);
                if !found {
                    return Err(failed(format!(
                        "VF {vf_name}: address {} is missing from {}",
                        ip.address, env.ifname
                    )));
                }
            }
        }
    }
    if let Some(plugin) = conf.ipam_type() {
        match Ipam::new(plugin, env, stdin, &conf.cni_version).check() {
            Ok(()) => {}
            // whereabouts answers CHECK with "not implemented": that is not a broken attachment
            Err(e) if e.msg.to_lowercase().contains("not implemented") => {
                tracing::info!(plugin, "IPAM plugin does not implement CHECK; skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
