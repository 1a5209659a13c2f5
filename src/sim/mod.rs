//! The simulated SR-IOV node: a fake sysfs tree laid out like the kernel's
//! plus real veth interfaces standing in for VF netdevs, so the device
//! plugin and the CNI plugin run their real code paths without hardware.
//!
//! `create` records what it is about to make in `<root>/sriov-sim.json`
//! before making it, so `destroy` can always undo a node, even a half-built
//! one, and is a no-op the second time.

pub mod layout;
pub mod model;
pub mod tree;
pub mod wiring;

pub use layout::{Layout, LayoutError};
pub use model::SimNode;

use crate::netlink::Netlink;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// The state file inside the root; its presence means "a node lives here".
pub const STATE_FILE: &str = "sriov-sim.json";
/// Root used by `sriovctl sim` when neither `--sysfs-root` nor
/// `SRIOV_SYSFS_ROOT` is given.
pub const DEFAULT_ROOT: &str = "/run/sriov-sim/sys";
pub const DEFAULT_INSTANCE: &str = "sriovsim";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("refusing to build a simulated node in {0}: that is the real sysfs")]
    RealSysfs(PathBuf),
    #[error("{path}: {step}: {source}")]
    Io {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not empty: a simulated node needs an empty or missing directory")]
    NotEmpty(PathBuf),
    #[error("{path}: corrupt state file: {detail}")]
    State { path: PathBuf, detail: String },
    #[error(transparent)]
    Wiring(#[from] wiring::WiringError),
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    #[error("netlink: {0}")]
    Netlink(#[from] crate::netlink::NetlinkError),
    #[error("destroying the simulated node left errors: {}", .0.join("; "))]
    Teardown(Vec<String>),
}

/// What `destroy` needs: written before anything else is created.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    instance: String,
    layout: Layout,
    /// Directories `create` made (outermost first); removed when empty.
    created_dirs: Vec<PathBuf>,
}

pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub instance: &'a str,
    pub layout: &'a Layout,
    /// Create the veth wiring (needs root); false writes only the tree, for
    /// unprivileged tests of readers.
    pub wire: bool,
}

/// Build the node: wiring first (it yields the ifindexes the tree states),
/// then the tree. Any failure undoes everything done so far.
pub fn create(options: &CreateOptions) -> Result<SimNode, SimError> {
    let node = SimNode::resolve(options.layout, options.instance)?;
    let root = options.root;
    refuse_real_sysfs(root)?;
    let created_dirs = prepare_root(root)?;
    let state = State {
        instance: options.instance.to_owned(),
        layout: options.layout.clone(),
        created_dirs,
    };
    let state_path = root.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(&state).map_err(|e| SimError::State {
        path: state_path.clone(),
        detail: e.to_string(),
    })?;
    std::fs::write(&state_path, json).map_err(|source| SimError::Io {
        path: state_path.clone(),
        step: "write state",
        source,
    })?;

    let built = build(&node, root, options.wire);
    if let Err(error) = built {
        // Undo; the original error is what the user needs to see.
        let _ = destroy(root);
        return Err(error);
    }
    Ok(node)
}

fn build(node: &SimNode, root: &Path, wire: bool) -> Result<(), SimError> {
    let ifindexes = if wire {
        let mut host = Netlink::open()?;
        wiring::apply(node, &mut host)?
    } else {
        // Tree only: plausible ifindexes so readers have something to parse.
        node.netdevs()
            .enumerate()
            .map(|(n, netdev)| (netdev.name.clone(), 1000 + n as u32))
            .collect()
    };
    tree::write(root, node, &ifindexes)?;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Destroyed {
    /// A node was found and removed.
    Node { instance: String },
    /// No state file: nothing to do (destroy is idempotent).
    Nothing,
}

/// Remove every namespace, link and file the node at `root` made.
pub fn destroy(root: &Path) -> Result<Destroyed, SimError> {
    refuse_real_sysfs(root)?;
    let state_path = root.join(STATE_FILE);
    let text = match std::fs::read_to_string(&state_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Destroyed::Nothing),
        Err(source) => {
            return Err(SimError::Io {
                path: state_path,
                step: "read state",
                source,
            })
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|e| SimError::State {
        path: state_path.clone(),
        detail: e.to_string(),
    })?;
    let mut errors = Vec::new();
    match SimNode::resolve(&state.layout, &state.instance) {
        Ok(node) if node.netdevs().next().is_some() => match Netlink::open() {
            Ok(mut host) => errors.extend(wiring::teardown(&node, &mut host)),
            Err(e) => errors.push(e.to_string()),
        },
        Ok(_) => {}
        Err(e) => errors.push(e.to_string()),
    }
    for top in tree::TOP_LEVEL {
        let path = root.join(top);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", path.display())),
        }
    }
    if !errors.is_empty() {
        // Keep the state file so a second destroy can finish the job.
        return Err(SimError::Teardown(errors));
    }
    std::fs::remove_file(&state_path).map_err(|source| SimError::Io {
        path: state_path.clone(),
        step: "remove state",
        source,
    })?;
    for dir in state.created_dirs.iter().rev() {
        // Only removes empty directories: never anything someone else put there.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(Destroyed::Node {
        instance: state.instance,
    })
}

fn refuse_real_sysfs(root: &Path) -> Result<(), SimError> {
    let canonical = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    if canonical == Path::new("/sys") || canonical.starts_with("/sys/") {
        return Err(SimError::RealSysfs(root.to_owned()));
    }
    Ok(())
}

/// Create the root (and missing parents), returning the directories made,
/// outermost first. An existing root must be empty.
fn prepare_root(root: &Path) -> Result<Vec<PathBuf>, SimError> {
    let mut missing = Vec::new();
    let mut cursor = Some(root);
    while let Some(dir) = cursor {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        missing.push(dir.to_owned());
        cursor = dir.parent();
    }
    missing.reverse();
    if missing.is_empty() {
        let mut entries = std::fs::read_dir(root).map_err(|source| SimError::Io {
            path: root.to_owned(),
            step: "read directory",
            source,
        })?;
        if entries.next().is_some() {
            return Err(SimError::NotEmpty(root.to_owned()));
        }
    }
    for dir in &missing {
        std::fs::create_dir(dir).map_err(|source| SimError::Io {
            path: dir.clone(),
            step: "create directory",
            source,
        })?;
    }
    Ok(missing)
}
