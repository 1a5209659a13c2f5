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

use super::config::NetConf;
use super::env::CniEnv;
use super::error::CniError;
use super::ipam::Ipam;
use super::node::Node;
use super::restore::{self, Attachment, Releaser};

pub fn del(node: &mut Node, env: &CniEnv, stdin: &[u8], conf: &NetConf) -> Result<(), CniError> {
    let locked = node
        .state
        .load_locked(&env.container_id, &env.ifname, conf.device().ok())?;
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
        node.state.remove_cache(&env.container_id, &env.ifname)?;
        return Ok(());
    };
    let attachment = Attachment {
        env,
        stdin,
        container_id: &env.container_id,
        ifname: &env.ifname,
        ipam_identity: None,
    };
    restore::release(node, &cache, &attachment, Releaser::Del)?.into_result()
}
