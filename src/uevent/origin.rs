//! Whose uevents a listener takes: the kernel's, or one simulated node's.

use super::UeventError;
use std::path::Path;

/// The variable a simulated node adds to every event it sends: its sysfs
/// root, canonical. The kernel never sends it.
pub const SIM_ROOT_KEY: &str = "SRIOV_SIM_ROOT";

/// The sender a listener for one sysfs root accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The root is a real sysfs mount: take what netlink port 0 (the
    /// kernel) sends, and nothing that carries [`SIM_ROOT_KEY`].
    Kernel,
    /// The root is a simulated node's tree: take only messages whose
    /// [`SIM_ROOT_KEY`] equals this canonical path, whoever sent them.
    Simulated(String),
}

impl Origin {
    /// Decides by what is mounted at the root: a sysfs mount is the kernel's
    /// whatever its path (`/sys`, or a host's `/sys` mounted elsewhere in a
    /// container); anything else is a simulated node, named by its canonical
    /// path so `./sys`, `/tmp/x/sys` and a symlink to it agree.
    pub fn for_root(sysfs_root: &Path) -> Result<Origin, UeventError> {
        let root_error = |source| UeventError::Root {
            path: sysfs_root.to_owned(),
            source,
        };
        let canonical = sysfs_root.canonicalize().map_err(root_error)?;
        let fs = nix::sys::statfs::statfs(&canonical).map_err(|e| root_error(e.into()))?;
        if fs.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC {
            return Ok(Origin::Kernel);
        }
        match canonical.into_os_string().into_string() {
            Ok(path) => Ok(Origin::Simulated(path)),
            Err(_) => Err(UeventError::RootNotUtf8 {
                path: sysfs_root.to_owned(),
            }),
        }
    }

    /// Whether a datagram from netlink port `sender_port` is for this
    /// listener. Works on the raw bytes, so a stranger's message that does
    /// not parse is skipped rather than reported.
    pub fn accepts(&self, sender_port: u32, message: &[u8]) -> bool {
        let root = sim_root(message);
        match self {
            // Only the kernel sends from port 0: a user-space socket never
            // has port 0 (binding to 0 means "pick one for me").
            Origin::Kernel => sender_port == 0 && root.is_none(),
            Origin::Simulated(own) => root == Some(own.as_bytes()),
        }
    }
}

/// The value of the first `SRIOV_SIM_ROOT=` variable (the header, the first
/// field, is skipped).
fn sim_root(message: &[u8]) -> Option<&[u8]> {
    let prefix = SIM_ROOT_KEY.as_bytes();
    message
        .split(|&b| b == 0)
        .skip(1)
        .find_map(|field| field.strip_prefix(prefix)?.strip_prefix(b"="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &[u8] = b"bind@/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0ACTION=bind\0\
DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0SUBSYSTEM=pci\0DRIVER=iavf\0SEQNUM=9\0";

    fn simulated(root: &str) -> Vec<u8> {
        let mut message = b"bind@/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0ACTION=bind\0\
DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0\0SUBSYSTEM=pci\0"
            .to_vec();
        message.extend_from_slice(format!("{SIM_ROOT_KEY}={root}\0SEQNUM=1\0").as_bytes());
        message
    }

    #[test]
    fn the_kernel_listener_takes_port_zero_without_the_key() {
        assert!(Origin::Kernel.accepts(0, KERNEL));
        assert!(
            !Origin::Kernel.accepts(4242, KERNEL),
            "not the kernel's port"
        );
        assert!(
            !Origin::Kernel.accepts(0, &simulated("/tmp/a/sys")),
            "a simulator's message even if rebroadcast from port 0"
        );
    }

    #[test]
    fn a_simulated_listener_takes_only_its_own_root() {
        let a = Origin::Simulated("/tmp/a/sys".into());
        assert!(a.accepts(4242, &simulated("/tmp/a/sys")));
        assert!(a.accepts(0, &simulated("/tmp/a/sys")));
        assert!(!a.accepts(4242, &simulated("/tmp/b/sys")));
        assert!(
            !a.accepts(4242, &simulated("/tmp/a/sys/")),
            "exact match, not a prefix"
        );
        assert!(!a.accepts(4242, &simulated("/tmp/a")), "exact match");
        assert!(
            !a.accepts(0, KERNEL),
            "the kernel's events are not a simulator's"
        );
    }

    #[test]
    fn the_key_in_the_header_or_a_value_does_not_count() {
        let a = Origin::Simulated("/x".into());
        assert!(!a.accepts(1, b"add@/SRIOV_SIM_ROOT=/x\0ACTION=add\0"));
        assert!(!a.accepts(1, b"add@/d\0OTHER=SRIOV_SIM_ROOT=/x\0"));
        assert!(!a.accepts(1, b"add@/d\0SRIOV_SIM_ROOTX=/x\0"));
    }

    #[test]
    fn garbage_is_rejected_not_a_panic() {
        let a = Origin::Simulated("/x".into());
        for message in [&b""[..], b"\0", b"\0\0\0", b"libudev\0\xfe\xed\xca\xfe"] {
            assert!(!a.accepts(1, message));
            assert!(!Origin::Kernel.accepts(1, message));
        }
    }

    #[test]
    fn roots_are_classified_by_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        std::fs::create_dir(&root).unwrap();
        let canonical = root.canonicalize().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            Origin::for_root(&root).unwrap(),
            Origin::Simulated(canonical.clone())
        );
        // A relative spelling through `..` names the same node.
        let roundabout = root.join("..").join("sys");
        assert_eq!(
            Origin::for_root(&roundabout).unwrap(),
            Origin::Simulated(canonical)
        );
        if nix::sys::statfs::statfs("/sys")
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC)
        {
            assert_eq!(Origin::for_root(Path::new("/sys")).unwrap(), Origin::Kernel);
        }
        match Origin::for_root(&dir.path().join("missing")) {
            Err(UeventError::Root { path, .. }) => assert!(path.ends_with("missing")),
            other => panic!("expected a root error, got {other:?}"),
        }
    }
}
