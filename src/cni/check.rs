//! CHECK: the attachment is still what ADD made it (sriov-cni's is a no-op).

use super::config::NetConf;
use super::env::CniEnv;
use super::error::{CniError, CODE_UNKNOWN_CONTAINER};
use super::ipam::Ipam;
use super::node::Node;
use super::result::CniResult;
use super::state::{Cache, Mode};
use crate::netlink::{format_mac, AddressOps, LinkOps};
use crate::vf;
use std::path::Path;

fn failed(msg: String) -> CniError {
    CniError::new(CODE_UNKNOWN_CONTAINER, msg)
}

pub fn check(node: &Node, env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let cache = node
        .state
        .load_cache(&env.container_id, &env.ifname)?
        .ok_or_else(|| {
            failed(format!(
                "no attachment {}/{} on this node",
                env.container_id, env.ifname
            ))
        })?;
    let vf_name = cache.conf.device()?;
    let progress = cache.progress.as_ref();
    if progress.is_none_or(|p| p.mode == Mode::Kernel) {
        let netns = env.netns.as_deref().unwrap_or(Path::new(""));
        let mut pod = vf::netlink_in(netns, vf_name)?;
        let link = pod
            .link_by_name(&env.ifname)
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| {
                failed(format!(
                    "VF {vf_name}: {} is missing from the pod netns",
                    env.ifname
                ))
            })?;
        if !super::restore::identity(&cache, vf_name).is_in_pod_as(&link, &env.ifname) {
            return Err(failed(format!(
                "VF {vf_name}: {} in the pod netns is another device",
                env.ifname
            )));
        }
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
        let prev = conf
            .prev_result
            .as_ref()
            .map(|p| CniResult::parse(p.clone()))
            .transpose()?;
        if let (Some(expected), Some(actual)) = (
            expected_mtu(conf, prev.as_ref(), &cache, &env.ifname),
            link.mtu,
        ) {
            if expected != actual {
                return Err(failed(format!(
                    "VF {vf_name}: {} has MTU {actual}, expected {expected}",
                    env.ifname
                )));
            }
        }
        if let Some(prev) = &prev {
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
            Err(e) if ipam_lacks_check(&e) => {
                tracing::info!(plugin, error = %e.msg, "IPAM plugin does not implement CHECK; skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The MTU the VF must have in the pod: the config's `mtu`, else what
/// `prevResult` reported for the interface (1.0.0+ results carry it), else
/// what ADD saw after configuring it (our cache; a sriov-cni cache has none).
fn expected_mtu(
    conf: &NetConf,
    prev: Option<&CniResult>,
    cache: &Cache,
    ifname: &str,
) -> Option<u32> {
    conf.mtu
        .or_else(|| {
            prev?
                .interfaces
                .iter()
                .find(|i| i.name == ifname && i.sandbox.is_some())
                .and_then(|i| i.mtu)
        })
        .or_else(|| {
            cache
                .progress
                .as_ref()
                .map(|p| p.pod_mtu)
                .filter(|m| *m > 0)
        })
}

/// An IPAM plugin that cannot CHECK is not a broken attachment. whereabouts
/// answers "CNI CHECK method is not implemented" (a plain Go error, which
/// the CNI library prints as code 999); plugins built on a CNI library older
/// than CHECK (spec 0.4.0) answer "unknown CNI_COMMAND: CHECK". There is no
/// code for either, so the message decides; any other failure counts.
fn ipam_lacks_check(error: &CniError) -> bool {
    let msg = error.msg.to_lowercase();
    msg.contains("check method is not implemented") || msg.contains("unknown cni_command: check")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_check_is_tolerated() {
        let whereabouts = CniError::new(
            999,
            "IPAM plugin whereabouts CHECK: CNI CHECK method is not implemented",
        );
        let old_library = CniError::new(4, "IPAM plugin old CHECK: unknown CNI_COMMAND: CHECK");
        let real = CniError::new(
            999,
            "IPAM plugin host-local CHECK: host-local: Failed to find address added by container cid",
        );
        assert!(ipam_lacks_check(&whereabouts) && ipam_lacks_check(&old_library));
        assert!(!ipam_lacks_check(&real));
    }
}
