//! STATUS and GC (CNI 1.1.0), which sriov-cni does not implement.

use super::config::{Attachment, NetConf};
use super::env::CniEnv;
use super::error::{CniError, CODE_LIMITED_CONNECTIVITY, CODE_NOT_AVAILABLE};
use super::ipam::Ipam;
use super::node::Node;
use super::restore::{self, Releaser};

/// Ready for ADD: sysfs readable, state directory usable, IPAM ready.
/// Any "no" is code 50, except an IPAM plugin's own 51, which passes.
pub fn status(node: &Node, env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let not_available = |msg: String| CniError::new(CODE_NOT_AVAILABLE, msg);
    let sysfs = &node.sysfs;
    match sysfs.pci_addresses() {
        Err(e) => return Err(not_available(format!("cannot read PCI devices: {e}"))),
        // every machine has some: none means sysfs is not mounted where we look
        Ok(devices) if devices.is_empty() => {
            return Err(not_available(format!(
                "no PCI devices under {}: is sysfs mounted there?",
                sysfs.path().join("bus/pci/devices").display()
            )))
        }
        Ok(_) => {}
    }
    let state = &node.state;
    state_dir_usable(state.root()).map_err(|e| {
        not_available(format!(
            "state directory {} is not usable: {e}",
            state.root().display()
        ))
    })?;
    if let Some(plugin) = conf.ipam_type() {
        Ipam::new(plugin, env, stdin, &conf.cni_version)
            .status()
            .map_err(ipam_not_ready)?;
    }
    Ok(())
}

/// ADD creates the directory and writes files in it: so must we be able to.
/// access(2) also answers "no" on a read-only mount, even to root.
fn state_dir_usable(root: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| e.to_string())?;
    nix::unistd::access(
        root,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|e| e.desc().to_lowercase())
}

/// STATUS errors are 50 or 51 (spec): an IPAM plugin that says so itself
/// is passed through; any other IPAM failure (binary missing, VERSION
/// unreadable, an unexpected error) means ADD would fail too: 50.
fn ipam_not_ready(error: CniError) -> CniError {
    if matches!(error.code, CODE_NOT_AVAILABLE | CODE_LIMITED_CONNECTIVITY) {
        return error;
    }
    let details = error.details.clone();
    CniError::new(CODE_NOT_AVAILABLE, format!("IPAM not ready: {}", error.msg))
        .with_details(details)
}

/// Release every attachment of this network that is not in the valid list,
/// keep going past failures and report them all at the end; then forward
/// GC to IPAM.
pub fn gc(node: &mut Node, env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let valid: Vec<Attachment> = conf
        .valid_attachments
        .clone()
        .or_else(|| conf.attachments.clone())
        .unwrap_or_default();
    let listed: Vec<(&str, &str)> = valid
        .iter()
        .map(|a| (a.container_id.as_str(), a.ifname.as_str()))
        .collect();
    let mut failures = Vec::new();
    for name in node.state.cache_names()? {
        let cache = match node.state.load_cache_file(&name) {
            Ok(cache) => cache,
            Err(e) => {
                failures.push(e.msg);
                continue;
            }
        };
        if cache.conf.name != conf.name {
            continue; // another network's attachment
        }
        if cache.is_one_of(&name, &listed) {
            continue;
        }
        // the identity ADD recorded (ours), or the name's likeliest split
        let Some((container_id, ifname)) = cache.attachment(&name) else {
            continue;
        };
        tracing::info!(
            container = container_id,
            ifname,
            "GC: releasing a stale attachment"
        );
        // read again under the VF's lock: a DEL or ADD may have changed it
        let (container_id, ifname) = (container_id.to_owned(), ifname.to_owned());
        let (container_id, ifname) = (container_id.as_str(), ifname.as_str());
        let (_lock, cache) =
            match node
                .state
                .load_locked(container_id, ifname, cache.conf.device().ok())
            {
                Ok(Some(locked)) => locked,
                Ok(None) => continue, // released meanwhile
                Err(e) => {
                    failures.push(format!("{container_id}/{ifname}: {}", e.msg));
                    continue;
                }
            };
        let netns = cache.progress.as_ref().map(|p| p.netns.clone());
        let attachment = restore::Attachment {
            env,
            stdin,
            container_id,
            ifname,
            ipam_identity: Some((container_id, ifname, netns.as_deref())),
        };
        let released = restore::release(node, &cache, &attachment, Releaser::Del)
            .and_then(restore::Released::into_result);
        if let Err(e) = released {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::state::cache_name_splits;

    #[test]
    fn status_errors_are_always_50_or_51() {
        let missing = CniError::new(103, "IPAM plugin \"x\" not found in CNI_PATH /opt/cni/bin");
        let mapped = ipam_not_ready(missing);
        assert_eq!(mapped.code, CODE_NOT_AVAILABLE);
        assert!(mapped.msg.contains("not found"), "{}", mapped.msg);
        for own in [CODE_NOT_AVAILABLE, CODE_LIMITED_CONNECTIVITY] {
            assert_eq!(ipam_not_ready(CniError::new(own, "down")).code, own);
        }
    }

    #[test]
    fn cache_names_split_at_the_last_valid_dash_first() {
        let splits: Vec<_> = cache_name_splits("abc-def-net1").collect();
        assert_eq!(splits, vec![("abc-def", "net1"), ("abc", "def-net1")]);
        assert_eq!(cache_name_splits("nodash").next(), None);
    }
}
