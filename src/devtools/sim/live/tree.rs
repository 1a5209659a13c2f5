//! The served tree in memory: every entry of the tree description as a
//! node with an inode number, rebuilt whole after each change the node
//! makes, with inode numbers kept for what did not change.
//!
//! The kernel caches what a FUSE server answers (names, attributes, file
//! pages, link targets). So a node's content never changes under its inode
//! number: an attribute whose text changes gets a new inode, and the diff
//! of two builds says which names and directory listings the kernel must
//! forget. What changes without the node knowing (netdevs, counters) is not
//! in this tree: the file system answers it live.

use crate::devtools::sim::tree::{
    relative_target, Control, Counter, Entry, NetdevEntry, TreeError, TreeSink,
};
use crate::pci::PciAddress;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir(BTreeMap<OsString, Ino>),
    /// Static text, newline included.
    Attr(Vec<u8>),
    Control(Vec<u8>, Control),
    /// The relative target, as readlink gives it.
    Link(PathBuf),
    Counter {
        pf: PciAddress,
        vf: u16,
        counter: Counter,
    },
    /// `<function>/net`: lists the function's netdev while the host has it.
    NetDir(Box<NetdevEntry>),
    /// `class/net`: every function netdev the host has.
    ClassNet,
}

impl Kind {
    fn same_content(&self, other: &Kind) -> bool {
        match (self, other) {
            // a directory keeps its inode; its listing is diffed separately
            (Kind::Dir(_), Kind::Dir(_)) | (Kind::ClassNet, Kind::ClassNet) => true,
            (Kind::NetDir(a), Kind::NetDir(b)) => a == b,
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub parent: Ino,
    pub name: OsString,
    pub kind: Kind,
    /// Bumped whenever a directory's listing changes (served as its mtime,
    /// which is how the kernel learns that its cached listing is stale).
    pub generation: u64,
}

/// One build of the tree.
#[derive(Debug, Default)]
pub struct StaticTree {
    pub nodes: HashMap<Ino, Node>,
    paths: HashMap<PathBuf, Ino>,
    /// The `net/` directories, for `class/net`.
    pub net_dirs: Vec<Ino>,
    /// Inodes a rebuild replaced, by the path they had: a reader or writer
    /// that still holds one (an open fd, a lookup just before the change)
    /// reaches what is at that path now, as with sysfs, not ENOENT.
    retired: HashMap<Ino, PathBuf>,
}

/// What the kernel must forget after a rebuild.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Invalidation {
    /// Names that are gone or now name another inode.
    pub entries: Vec<(Ino, OsString)>,
    /// Directories whose listing changed.
    pub listings: Vec<Ino>,
}

impl Invalidation {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.listings.is_empty()
    }
}

impl StaticTree {
    pub fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn ino_of(&self, path: &Path) -> Option<Ino> {
        self.paths.get(path).copied()
    }

    /// The netdev a function's `net/` directory (inode `ino`) stands for.
    pub fn netdev(&self, ino: Ino) -> Option<&NetdevEntry> {
        match self.node(ino).map(|n| &n.kind) {
            Some(Kind::NetDir(entry)) => Some(entry),
            _ => None,
        }
    }

    /// The node an inode number stands for now: itself, or what is at the
    /// path of a retired one.
    pub fn resolve(&self, ino: Ino) -> Option<Ino> {
        if self.nodes.contains_key(&ino) {
            return Some(ino);
        }
        self.retired.get(&ino).and_then(|path| self.ino_of(path))
    }

    /// Build from the description `describe` feeds, reusing `previous`'s
    /// inode numbers where the content is the same; `next_ino` hands out
    /// new ones (never reused: the kernel may still hold an old one).
    pub fn build(
        previous: Option<&StaticTree>,
        next_ino: &mut Ino,
        describe: impl FnOnce(&mut dyn TreeSink) -> Result<(), TreeError>,
    ) -> Result<(StaticTree, Invalidation), TreeError> {
        let mut builder = Builder {
            previous,
            next_ino,
            tree: StaticTree::default(),
        };
        builder.tree.nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: OsString::new(),
                kind: Kind::Dir(BTreeMap::new()),
                generation: previous
                    .and_then(|p| p.node(ROOT_INO))
                    .map_or(0, |n| n.generation),
            },
        );
        builder.tree.paths.insert(PathBuf::new(), ROOT_INO);
        describe(&mut builder)?;
        let mut tree = builder.tree;
        let invalidation = match previous {
            Some(previous) => diff(previous, &mut tree),
            None => Invalidation::default(),
        };
        Ok((tree, invalidation))
    }
}

struct Builder<'a> {
    previous: Option<&'a StaticTree>,
    next_ino: &'a mut Ino,
    tree: StaticTree,
}

impl Builder<'_> {
    fn insert(&mut self, path: &Path, kind: Kind) -> Result<Ino, TreeError> {
        if let Some(&ino) = self.tree.paths.get(path) {
            // a directory met again (a parent made on the way) stays as it is
            return match (&self.tree.nodes[&ino].kind, &kind) {
                (Kind::Dir(_), Kind::Dir(_)) => Ok(ino),
                _ => Err(TreeError {
                    path: path.to_owned(),
                    source: std::io::ErrorKind::AlreadyExists.into(),
                }),
            };
        }
        let parent_path = path.parent().unwrap_or(Path::new(""));
        let parent = self.dir(parent_path)?;
        let name = path.file_name().unwrap_or(OsStr::new("")).to_owned();
        let reused = self.previous.and_then(|previous| {
            let ino = previous.ino_of(path)?;
            previous
                .node(ino)
                .filter(|old| old.kind.same_content(&kind))
                .map(|_| ino)
        });
        let ino = reused.unwrap_or_else(|| {
            let ino = *self.next_ino;
            *self.next_ino += 1;
            ino
        });
        if matches!(kind, Kind::NetDir(_)) {
            self.tree.net_dirs.push(ino);
        }
        self.tree.nodes.insert(
            ino,
            Node {
                parent,
                name: name.clone(),
                kind,
                generation: 0,
            },
        );
        self.tree.paths.insert(path.to_owned(), ino);
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = self.tree.nodes.get_mut(&parent)
        {
            children.insert(name, ino);
        }
        Ok(ino)
    }

    /// The directory at `path`, made (with its parents) if missing.
    fn dir(&mut self, path: &Path) -> Result<Ino, TreeError> {
        match self.tree.paths.get(path) {
            Some(&ino) => match self.tree.nodes[&ino].kind {
                Kind::Dir(_) => Ok(ino),
                _ => Err(TreeError {
                    path: path.to_owned(),
                    source: std::io::ErrorKind::NotADirectory.into(),
                }),
            },
            None => self.insert(path, Kind::Dir(BTreeMap::new())),
        }
    }
}

impl TreeSink for Builder<'_> {
    fn put(&mut self, path: &Path, entry: Entry) -> Result<(), TreeError> {
        let kind = match entry {
            Entry::Dir if path == Path::new("class/net") => Kind::ClassNet,
            Entry::Dir => {
                self.dir(path)?;
                return Ok(());
            }
            Entry::Attr(text) => Kind::Attr(format!("{text}\n").into_bytes()),
            Entry::Control(text, control) => {
                let text = if text.is_empty() {
                    Vec::new()
                } else {
                    format!("{text}\n").into_bytes()
                };
                Kind::Control(text, control)
            }
            Entry::Link(target) => Kind::Link(relative_target(path, &target)),
            Entry::Counter { pf, vf, counter } => Kind::Counter { pf, vf, counter },
            Entry::Netdev(netdev) => Kind::NetDir(Box::new(netdev)),
        };
        self.insert(path, kind).map(drop)
    }
}

/// Names gone or changed since `previous`, and listings that changed (whose
/// generation is bumped in `tree`).
fn diff(previous: &StaticTree, tree: &mut StaticTree) -> Invalidation {
    let mut invalidation = Invalidation::default();
    tree.retired = previous
        .retired
        .iter()
        .filter(|(_, path)| tree.paths.contains_key(*path))
        .map(|(ino, path)| (*ino, path.clone()))
        .collect();
    for (path, &old_ino) in &previous.paths {
        if tree.paths.get(path) != Some(&old_ino) {
            if tree.paths.contains_key(path) {
                tree.retired.insert(old_ino, path.clone());
            }
            if let Some(old) = previous.node(old_ino) {
                if old_ino != ROOT_INO {
                    invalidation.entries.push((old.parent, old.name.clone()));
                }
            }
        }
    }
    for (ino, node) in tree.nodes.iter_mut() {
        let Some(old) = previous.node(*ino) else {
            continue;
        };
        node.generation = old.generation;
        if let (Kind::Dir(new), Kind::Dir(before)) = (&node.kind, &old.kind) {
            if new != before {
                node.generation += 1;
                invalidation.listings.push(*ino);
            }
        }
    }
    invalidation.entries.sort();
    invalidation.listings.sort_unstable();
    invalidation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devtools::sim::{tree, Layout, SimNode};

    fn build(
        node: &SimNode,
        previous: Option<&StaticTree>,
        next: &mut Ino,
    ) -> (StaticTree, Invalidation) {
        StaticTree::build(previous, next, |sink| {
            tree::describe(node, &tree::Ifindexes::new(), sink)
        })
        .unwrap()
    }

    #[test]
    fn a_rebuild_of_the_same_node_keeps_every_inode_and_invalidates_nothing() {
        let node = SimNode::resolve(&Layout::default_layout().unwrap(), "t").unwrap();
        let mut next = ROOT_INO + 1;
        let (first, _) = build(&node, None, &mut next);
        let used = next;
        let (second, invalidation) = build(&node, Some(&first), &mut next);
        assert_eq!(next, used, "no new inode for an unchanged tree");
        assert!(invalidation.is_empty(), "{invalidation:?}");
        assert_eq!(first.paths, second.paths);
    }

    #[test]
    fn fewer_vfs_invalidate_their_names_and_the_listings_that_held_them() {
        let layout = Layout::default_layout().unwrap();
        let node = SimNode::resolve(&layout, "t").unwrap();
        let mut next = ROOT_INO + 1;
        let (first, _) = build(&node, None, &mut next);
        let mut smaller = node.clone();
        smaller.pfs[0].vfs.truncate(2);
        smaller.pfs[0].spec.num_vfs = 2;
        let (second, invalidation) = build(&smaller, Some(&first), &mut next);

        let pf_dir = tree::device_dir(node.pfs[0].address, node.pfs[0].address);
        let pf_ino = second.ino_of(&pf_dir).unwrap();
        assert_eq!(
            first.ino_of(&pf_dir),
            Some(pf_ino),
            "the PF keeps its inode"
        );
        let names: Vec<&OsStr> = invalidation
            .entries
            .iter()
            .filter(|(parent, _)| *parent == pf_ino)
            .map(|(_, name)| name.as_os_str())
            .collect();
        // virtfn2/3 are gone, sriov_numvfs now says 2, the VFs' counters went
        for gone in ["virtfn2", "virtfn3", "sriov_numvfs"] {
            assert!(names.contains(&OsStr::new(gone)), "{gone} in {names:?}");
        }
        assert!(!names.contains(&OsStr::new("virtfn1")));
        let devices = second.ino_of(Path::new("bus/pci/devices")).unwrap();
        assert!(invalidation.listings.contains(&devices));
        assert!(invalidation.listings.contains(&pf_ino));
        assert_eq!(second.node(devices).unwrap().generation, 1);
        let numvfs = second.ino_of(&pf_dir.join("sriov_numvfs")).unwrap();
        assert!(
            matches!(&second.node(numvfs).unwrap().kind, Kind::Control(text, _) if text == b"2\n")
        );
        assert_ne!(first.ino_of(&pf_dir.join("sriov_numvfs")), Some(numvfs));
    }
}
