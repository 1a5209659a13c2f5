//! The simulated SR-IOV node: a fake sysfs tree laid out like the kernel's
//! plus real veth interfaces standing in for VF netdevs, so the device
//! plugin and the CNI plugin run their real code paths without hardware.
//!
//! `create` records what it is about to make in `<root>/sriov-sim.json`
//! before making it, so `destroy` can always undo a node, even a half-built
//! one, and is a no-op the second time.

pub mod layout;
pub mod live;
pub mod model;
pub mod process;
pub mod tree;
pub mod wiring;

pub use layout::{Layout, LayoutError};
pub use model::SimNode;
pub use wiring::set_carrier;

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
    #[error("the simulated node's server failed to start ({why}); its log ends with:\n{log}")]
    Server { why: String, log: String },
}

/// What `destroy` needs: written before anything else is created.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct State {
    instance: String,
    layout: Layout,
    /// Directories `create` made (outermost first); removed when empty.
    created_dirs: Vec<PathBuf>,
    /// How the node is built; state files from before this field are
    /// snapshots with links.
    #[serde(default = "snapshot")]
    kind: NodeKind,
    /// The process serving a live tree.
    #[serde(default)]
    server_pid: Option<u32>,
    /// Where a live node puts device nodes (`vfio/<group>`).
    #[serde(default)]
    dev_root: Option<PathBuf>,
    /// Whether `create` made the device root (then destroy removes it).
    #[serde(default)]
    dev_root_created: bool,
}

fn snapshot() -> NodeKind {
    NodeKind::Snapshot
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum NodeKind {
    TreeOnly,
    Snapshot,
    Live,
}

/// How the node is served.
#[derive(Debug, Clone, Copy)]
pub enum Serve<'a> {
    /// The tree as plain files and no links: unprivileged tests of readers.
    TreeOnly,
    /// The tree as plain files, written once, plus the links (root): for
    /// tests that cannot start a server and need nothing to change.
    Snapshot,
    /// The tree served live by `<server> sim serve` (an `sriovctl`), which
    /// keeps running after `create` returns (root).
    Live { server: &'a Path },
}

pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub instance: &'a str,
    pub layout: &'a Layout,
    pub serve: Serve<'a>,
}

/// The device root of a live node at `root`: `<root>.dev` beside it, so two
/// nodes never share one (`--dev-root` of the daemon points there).
pub fn dev_root_for(root: &Path) -> PathBuf {
    let mut name = root.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(".dev");
    root.with_file_name(name)
}

/// Build the node. Plain trees: wiring first (it yields the ifindexes the
/// tree states), then the files. Live: the server wires and mounts; this
/// returns once it answers. Any failure undoes everything done so far.
pub fn create(options: &CreateOptions) -> Result<SimNode, SimError> {
    let node = SimNode::resolve(options.layout, options.instance)?;
    let root = options.root;
    refuse_real_sysfs(root)?;
    let created_dirs = prepare_root(root)?;
    let kind = match options.serve {
        Serve::TreeOnly => NodeKind::TreeOnly,
        Serve::Snapshot => NodeKind::Snapshot,
        Serve::Live { .. } => NodeKind::Live,
    };
    let dev_root = (kind == NodeKind::Live).then(|| dev_root_for(root));
    let dev_root_created = dev_root.as_ref().is_some_and(|dir| !dir.exists());
    let state = State {
        instance: options.instance.to_owned(),
        layout: options.layout.clone(),
        created_dirs,
        kind,
        server_pid: None,
        dev_root,
        dev_root_created,
    };
    write_state(root, &state)?;

    let built = match options.serve {
        Serve::TreeOnly => build(&node, root, false),
        Serve::Snapshot => build(&node, root, true),
        Serve::Live { server } => Netlink::open()
            .map_err(SimError::from)
            .and_then(|mut host| Ok(wiring::check_names(&node, &mut host)?))
            .and_then(|()| process::start(server, root)),
    };
    if let Err(error) = built {
        // Undo; the original error is what the user needs to see.
        let _ = destroy(root);
        return Err(error);
    }
    Ok(node)
}

pub(crate) fn read_state(root: &Path) -> Result<Option<State>, SimError> {
    let state_path = root.join(STATE_FILE);
    let text = match std::fs::read_to_string(&state_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SimError::Io {
                path: state_path,
                step: "read state",
                source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| SimError::State {
            path: state_path,
            detail: e.to_string(),
        })
}

pub(crate) fn write_state(root: &Path, state: &State) -> Result<(), SimError> {
    let state_path = root.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|e| SimError::State {
        path: state_path.clone(),
        detail: e.to_string(),
    })?;
    crate::atomic_file::write(&state_path, &json, 0o644).map_err(|source| SimError::Io {
        path: state_path,
        step: "write state",
        source,
    })
}

/// The layout and instance of the node at `root`, as it was created.
pub fn node_at(root: &Path) -> Result<SimNode, SimError> {
    let state = read_state(root)?.ok_or_else(|| SimError::State {
        path: root.join(STATE_FILE),
        detail: "no simulated node here".into(),
    })?;
    Ok(SimNode::resolve(&state.layout, &state.instance)?)
}

fn build(node: &SimNode, root: &Path, wire: bool) -> Result<(), SimError> {
    let ifindexes = if wire {
        let mut host = Netlink::open()?;
        wiring::apply(node, &mut host)?.0
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

/// Remove every namespace, link and file the node at `root` made, and
/// stop the process serving it (alive, hung or already killed).
pub fn destroy(root: &Path) -> Result<Destroyed, SimError> {
    refuse_real_sysfs(root)?;
    let mut errors = Vec::new();
    // The state file of a live node is under its mount: unmount first.
    if let Err(e) = process::unmount(root) {
        errors.push(e);
    }
    let Some(state) = read_state(root)? else {
        return match errors.is_empty() {
            true => Ok(Destroyed::Nothing),
            false => Err(SimError::Teardown(errors)),
        };
    };
    if let Some(pid) = state.server_pid {
        if let Err(e) = process::stop(pid, root) {
            errors.push(e);
        }
    }
    if state.kind != NodeKind::TreeOnly {
        match SimNode::resolve(&state.layout, &state.instance) {
            Ok(node) => errors.extend(wiring::teardown(&node)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for top in tree::TOP_LEVEL.iter().chain(&[process::LOG_FILE]) {
        let path = root.join(top);
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", path.display())),
        }
    }
    if let Some(dev_root) = &state.dev_root {
        // only what the node put there, and the root itself if it made it
        let vfio = dev_root.join("vfio");
        match std::fs::remove_dir_all(&vfio) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", vfio.display())),
        }
        if state.dev_root_created {
            let _ = std::fs::remove_dir(dev_root);
        }
    }
    if !errors.is_empty() {
        // Keep the state file so a second destroy can finish the job.
        return Err(SimError::Teardown(errors));
    }
    let state_path = root.join(STATE_FILE);
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
