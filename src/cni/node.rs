//! The node as one CNI invocation sees it: where sysfs is, where the state
//! lives and how the PF is reached. Built once at the edge (`run_from_env`)
//! and passed to every command, so no command reads the process environment
//! and a test builds its own (a temp sysfs tree, a temp state dir, a fake PF).

use super::state::{StateDir, DEFAULT_STATE_DIR, ENV_STATE_DIR};
use crate::netlink::{HostPf, PfOps};
use crate::sysfs::{SysfsRoot, DEFAULT_SYSFS_ROOT, ENV_SYSFS_ROOT};

pub struct Node {
    pub sysfs: SysfsRoot,
    pub state: StateDir,
    /// The PF-side operations: the host's netlink in the plugin, a fake PF
    /// in tests. The VF netdev's operations are always real.
    pub pf: Box<dyn PfOps>,
}

impl Node {
    pub fn new(sysfs: SysfsRoot, state: StateDir, pf: Box<dyn PfOps>) -> Node {
        Node { sysfs, state, pf }
    }

    /// The node from the plugin's environment, read through `get`:
    /// `SRIOV_SYSFS_ROOT` (else `/sys`), `SRIOV_CNI_STATE_DIR` (else
    /// `/var/lib/cni/sriov`); the PF through the host's netlink.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Node {
        let nonempty = |key: &str| get(key).filter(|v| !v.is_empty());
        let sysfs = nonempty(ENV_SYSFS_ROOT).unwrap_or_else(|| DEFAULT_SYSFS_ROOT.to_owned());
        let state = nonempty(ENV_STATE_DIR).unwrap_or_else(|| DEFAULT_STATE_DIR.to_owned());
        Node::new(
            SysfsRoot::new(sysfs),
            StateDir::new(state),
            Box::new(HostPf::default()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_comes_from_the_lookup_with_defaults_for_unset_or_empty_keys() {
        let node = Node::from_lookup(|key| match key {
            ENV_SYSFS_ROOT => Some("/tmp/fake-sys".into()),
            ENV_STATE_DIR => Some(String::new()),
            _ => None,
        });
        assert_eq!(node.sysfs.path(), std::path::Path::new("/tmp/fake-sys"));
        assert_eq!(node.state.root(), std::path::Path::new(DEFAULT_STATE_DIR));
    }
}
