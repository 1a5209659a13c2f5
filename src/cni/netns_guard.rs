//! CNI_NETNS must not be the plugin's own network namespace: "moving" the
//! VF there would only rename it on the host, and a runtime that passes
//! its own namespace has lost track of the pod's. The Go library (skel)
//! refuses this with code 8 unless CNI_NETNS_OVERRIDE is set; it checks
//! after ADD has run, we check before anything changes.

use super::error::{CniError, CODE_INVALID_ENV, CODE_INVALID_NETNS};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Our own namespace, as seen by the thread that runs ADD (the main
/// thread, which never switches namespace).
const OWN_NETNS: &str = "/proc/thread-self/ns/net";

/// Two namespace files name the same namespace when they have the same
/// device and inode (what `ip netns identify` compares).
fn same_namespace(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

pub fn refuse_own_netns(netns: &Path, netns_override: bool) -> Result<(), CniError> {
    if netns_override {
        return Ok(());
    }
    match same_namespace(netns, Path::new(OWN_NETNS)) {
        Ok(false) => Ok(()),
        Ok(true) => Err(CniError::new(
            CODE_INVALID_NETNS,
            format!(
                "CNI_NETNS {} is the plugin's own network namespace, not a pod's (set CNI_NETNS_OVERRIDE=true if that is intended)",
                netns.display()
            ),
        )),
        Err(e) => Err(CniError::new(
            CODE_INVALID_ENV,
            format!("CNI_NETNS {}: {e}", netns.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_namespace_is_refused_unless_overridden() {
        // /proc/self/ns/net is another path to the same namespace
        let own = Path::new("/proc/self/ns/net");
        assert_eq!(
            refuse_own_netns(own, false).unwrap_err().code,
            CODE_INVALID_NETNS
        );
        assert!(refuse_own_netns(own, true).is_ok());
    }
}
