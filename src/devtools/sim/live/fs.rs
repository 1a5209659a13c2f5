//! The FUSE file system: the [`StaticTree`] plus what is read live from
//! the kernel (netdevs under `net/` and `class/net`, their attributes, VF
//! counters), and writes to control attributes handed to the [`LiveNode`].
//!
//! Caching, which is what keeps discovery fast: open and opendir answer
//! ENOSYS, so the kernel stops asking and keeps file pages and listings
//! cached; what never changes under its inode has a long TTL, what is live
//! has a TTL of zero, so every read asks for its attributes first, and its
//! mtime (a hash of the text) tells the kernel when its cached page is
//! stale (FUSE_AUTO_INVAL_DATA). After a change of the node, the names and
//! listings the rebuild invalidated are pushed to the kernel before the
//! write returns, so the writer reads the new tree.

use super::node::{LiveNode, WriteError};
use super::tree::{Ino, Invalidation, Kind, StaticTree, ROOT_INO};
use super::Announcer;
use crate::devtools::sim::tree::{self, relative_target, Counter, NetdevEntry, NetdevState};
use crate::netlink::{LinkStatus, LinkTable};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, Notifier, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Netdev attributes that are fixed for the life of a netdev.
const NETDEV_CONSTANTS: &[&str] = &["addr_len", "type", "phys_port_name", "phys_switch_id"];

/// How long the kernel may keep what never changes under its inode.
const STABLE: Duration = Duration::from_secs(24 * 3600);
const LIVE: Duration = Duration::ZERO;

/// Entries made on the fly for a netdev the host has now, keyed by what
/// they show so that a key's content never changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DynKey {
    /// `<function>/net/<name>` of the netdev `ifindex` (in `net_dir`).
    NetdevDir {
        net_dir: Ino,
        ifindex: u32,
        name: String,
    },
    NetdevFile {
        net_dir: Ino,
        ifindex: u32,
        name: String,
        file: &'static str,
    },
    /// `<function>/net/<name>/device`
    NetdevDevice {
        net_dir: Ino,
        ifindex: u32,
        name: String,
    },
    /// `class/net/<name>`
    ClassNet {
        net_dir: Ino,
        ifindex: u32,
        name: String,
    },
}

impl DynKey {
    fn netdev(&self) -> (Ino, u32, &str) {
        match self {
            DynKey::NetdevDir {
                net_dir,
                ifindex,
                name,
            }
            | DynKey::NetdevFile {
                net_dir,
                ifindex,
                name,
                ..
            }
            | DynKey::NetdevDevice {
                net_dir,
                ifindex,
                name,
            }
            | DynKey::ClassNet {
                net_dir,
                ifindex,
                name,
            } => (*net_dir, *ifindex, name),
        }
    }
}

pub struct Live {
    pub tree: StaticTree,
    pub node: LiveNode,
    links: LinkTable,
    next_ino: Ino,
    dyn_inos: HashMap<DynKey, Ino>,
    dyn_keys: HashMap<Ino, DynKey>,
    /// See [`class_net`]; None when it must be made again.
    class_net: Option<BTreeMap<String, (Ino, u32)>>,
    /// The last view made, to tell which names changed.
    class_net_seen: BTreeMap<String, (Ino, u32)>,
    /// `class/net` names the kernel must forget, for the invalidator.
    stale_names: Vec<(Ino, OsString)>,
    /// The state file's text, served at the root.
    state_json: Vec<u8>,
}

pub struct LiveFs {
    live: Mutex<Live>,
    notifier: Arc<OnceLock<Notifier>>,
    announcer: Mutex<Announcer>,
    started: SystemTime,
    /// Names for the invalidator thread: `class/net` entries keep a long
    /// TTL (a stale one fails where it leads, at the TTL-0 `net/<name>`),
    /// and a name that now leads elsewhere is forgotten soon after, from a
    /// thread of its own because the request that noticed may hold the
    /// directory's lock that the invalidation needs.
    stale: Mutex<std::sync::mpsc::Sender<(Ino, OsString)>>,
}

/// The locked state; on release, hands the names that went stale to the
/// invalidator.
struct Locked<'a> {
    live: Option<MutexGuard<'a, Live>>,
    stale: &'a Mutex<std::sync::mpsc::Sender<(Ino, OsString)>>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Live;
    fn deref(&self) -> &Live {
        self.live
            .as_deref()
            .unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Live {
        self.live
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let names = match self.live.as_mut() {
            Some(live) => std::mem::take(&mut live.stale_names),
            None => return,
        };
        self.live = None;
        if !names.is_empty() {
            let sender = self.stale.lock().unwrap_or_else(|p| p.into_inner());
            for name in names {
                let _ = sender.send(name);
            }
        }
    }
}

/// What a lookup or getattr found.
enum Found {
    Static(Ino),
    Dyn(DynKey),
}

impl LiveFs {
    pub fn new(
        node: LiveNode,
        links: LinkTable,
        state_json: Vec<u8>,
        announcer: Announcer,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> Result<LiveFs, tree::TreeError> {
        let mut next_ino = ROOT_INO + 1;
        let (tree, _) = StaticTree::build(None, &mut next_ino, |sink| {
            tree::describe(&node.node, &node.ifindexes, sink)
        })?;
        let (stale, stale_names) = std::sync::mpsc::channel::<(Ino, OsString)>();
        let for_thread = notifier.clone();
        std::thread::spawn(move || {
            for (parent, name) in stale_names {
                if let Some(notifier) = for_thread.get() {
                    report(notifier.inval_entry(INodeNo(parent), &name), "name");
                }
            }
        });
        Ok(LiveFs {
            stale: Mutex::new(stale),
            live: Mutex::new(Live {
                tree,
                node,
                links,
                next_ino,
                dyn_inos: HashMap::new(),
                dyn_keys: HashMap::new(),
                class_net: None,
                class_net_seen: BTreeMap::new(),
                stale_names: Vec::new(),
                state_json,
            }),
            notifier,
            announcer: Mutex::new(announcer),
            started: SystemTime::now(),
        })
    }

    fn lock(&self) -> Locked<'_> {
        // a panic while holding the lock leaves a tree that is still whole
        Locked {
            live: Some(
                self.live
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            ),
            stale: &self.stale,
        }
    }

    fn attr(&self, ino: Ino, kind: FileType, size: u64, perm: u16, mtime: SystemTime) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: self.started,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Attributes and TTL of a node.
    fn describe(&self, live: &mut Live, found: &Found) -> Result<(FileAttr, Duration), Errno> {
        match found {
            Found::Static(ino) => {
                let node = live.tree.node(*ino).ok_or(Errno::ENOENT)?;
                let stamp = self.started + Duration::from_nanos(node.generation);
                Ok(match &node.kind {
                    Kind::Dir(_) => (
                        self.attr(*ino, FileType::Directory, 0, 0o755, stamp),
                        STABLE,
                    ),
                    Kind::Attr(text) => (
                        self.attr(*ino, FileType::RegularFile, text.len() as u64, 0o444, stamp),
                        STABLE,
                    ),
                    Kind::Control(text, _) => {
                        let perm = if text.is_empty() { 0o200 } else { 0o644 };
                        (
                            self.attr(*ino, FileType::RegularFile, text.len() as u64, perm, stamp),
                            LIVE,
                        )
                    }
                    Kind::Link(target) => (
                        self.attr(
                            *ino,
                            FileType::Symlink,
                            target.as_os_str().len() as u64,
                            0o777,
                            stamp,
                        ),
                        STABLE,
                    ),
                    Kind::Counter { .. } => {
                        let text = read_static(live, *ino)?;
                        (
                            self.attr(
                                *ino,
                                FileType::RegularFile,
                                text.len() as u64,
                                0o444,
                                hashed(&text),
                            ),
                            LIVE,
                        )
                    }
                    Kind::NetDir(_) | Kind::ClassNet => {
                        let names = listing(live, *ino)?;
                        (
                            self.attr(*ino, FileType::Directory, 0, 0o755, hashed(&names)),
                            LIVE,
                        )
                    }
                })
            }
            Found::Dyn(key) => {
                let ino = dyn_ino(live, key);
                let (entry, status) = current(live, key).ok_or(Errno::ENOENT)?;
                Ok(match key {
                    DynKey::NetdevDir { .. } => (
                        self.attr(ino, FileType::Directory, 0, 0o755, self.started),
                        LIVE,
                    ),
                    DynKey::NetdevFile { file, .. } => {
                        // a read the kernel refuses still has to reach us:
                        // sysfs's own size (a page) rather than an empty file
                        let (size, stamp) = match netdev_file(&entry, &status, file)? {
                            Some(text) => (text.len() as u64, hashed(&text)),
                            None => (4096, hashed(b"")),
                        };
                        // what a netdev never changes may stay cached as long
                        // as the key (netdev, name) lives
                        let ttl = if NETDEV_CONSTANTS.contains(file) {
                            STABLE
                        } else {
                            LIVE
                        };
                        (
                            self.attr(ino, FileType::RegularFile, size, 0o444, stamp),
                            ttl,
                        )
                    }
                    DynKey::NetdevDevice { .. } | DynKey::ClassNet { .. } => {
                        let target = dyn_link(&entry, key);
                        (
                            self.attr(
                                ino,
                                FileType::Symlink,
                                target.as_os_str().len() as u64,
                                0o777,
                                self.started,
                            ),
                            LIVE,
                        )
                    }
                })
            }
        }
    }

    fn find(&self, live: &mut Live, ino: Ino) -> Result<Found, Errno> {
        if let Some(current) = live.tree.resolve(ino) {
            return Ok(Found::Static(current));
        }
        live.dyn_keys
            .get(&ino)
            .cloned()
            .map(Found::Dyn)
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, live: &mut Live, parent: Ino, name: &OsStr) -> Result<Found, Errno> {
        match self.find(live, parent)? {
            Found::Static(parent) => {
                let node = live.tree.node(parent).ok_or(Errno::ENOENT)?;
                match &node.kind {
                    Kind::Dir(children) => children
                        .get(name)
                        .map(|ino| Found::Static(*ino))
                        .ok_or(Errno::ENOENT),
                    Kind::NetDir(_) => {
                        let (ifindex, current) = netdev_of(live, parent)?;
                        if OsStr::new(&current) != name {
                            return Err(Errno::ENOENT);
                        }
                        Ok(Found::Dyn(DynKey::NetdevDir {
                            net_dir: parent,
                            ifindex,
                            name: current,
                        }))
                    }
                    Kind::ClassNet => {
                        let name = name.to_string_lossy();
                        class_net(live)
                            .get(name.as_ref())
                            .map(|&(net_dir, ifindex)| {
                                Found::Dyn(DynKey::ClassNet {
                                    net_dir,
                                    ifindex,
                                    name: name.into_owned(),
                                })
                            })
                            .ok_or(Errno::ENOENT)
                    }
                    _ => Err(Errno::ENOTDIR),
                }
            }
            Found::Dyn(DynKey::NetdevDir {
                net_dir,
                ifindex,
                name: netdev,
            }) => {
                let (entry, status) = current(
                    live,
                    &DynKey::NetdevDir {
                        net_dir,
                        ifindex,
                        name: netdev.clone(),
                    },
                )
                .ok_or(Errno::ENOENT)?;
                if name == "device" {
                    return Ok(Found::Dyn(DynKey::NetdevDevice {
                        net_dir,
                        ifindex,
                        name: netdev,
                    }));
                }
                entry
                    .attributes(&state_of(&entry, &status))
                    .into_iter()
                    .find(|(file, _)| OsStr::new(file) == name)
                    .map(|(file, _)| {
                        Found::Dyn(DynKey::NetdevFile {
                            net_dir,
                            ifindex,
                            name: netdev,
                            file,
                        })
                    })
                    .ok_or(Errno::ENOENT)
            }
            Found::Dyn(_) => Err(Errno::ENOTDIR),
        }
    }

    /// Push what a rebuild invalidated to the kernel. Never called with
    /// the lock held: the kernel may need to ask us something (a lookup
    /// holding the directory's lock) before it can apply it.
    fn invalidate(&self, invalidation: &Invalidation) {
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        for (parent, name) in &invalidation.entries {
            report(notifier.inval_entry(INodeNo(*parent), name), "name");
        }
        for dir in &invalidation.listings {
            report(notifier.inval_inode(INodeNo(*dir), 0, 0), "listing");
        }
    }
}

/// ENOENT: the kernel had already forgotten the name or inode.
fn report(result: io::Result<()>, what: &str) {
    if let Err(e) = result {
        if e.raw_os_error() != Some(nix::libc::ENOENT) {
            tracing::warn!(error = %e, "invalidating a cached {what}");
        }
    }
}

fn dyn_ino(live: &mut Live, key: &DynKey) -> Ino {
    if let Some(ino) = live.dyn_inos.get(key) {
        return *ino;
    }
    let ino = live.next_ino;
    live.next_ino += 1;
    live.dyn_inos.insert(key.clone(), ino);
    live.dyn_keys.insert(ino, key.clone());
    ino
}

/// The netdev behind a `net/` directory, if the host has it now: its
/// ifindex and current name.
fn netdev_of(live: &mut Live, net_dir: Ino) -> Result<(u32, String), Errno> {
    let ifindex = live.tree.netdev(net_dir).ok_or(Errno::ENOENT)?.ifindex;
    catch_up(live);
    host_link(&live.links, ifindex)
        .map(|link| (ifindex, link.name.clone()))
        .ok_or(Errno::ENOENT)
}

/// The function netdev with that ifindex, if the host has it now (our
/// veth, not a link that came to hold the number).
fn host_link(links: &LinkTable, ifindex: u32) -> Option<&LinkStatus> {
    links
        .get(ifindex)
        .filter(|link| link.kind.as_deref() == Some("veth"))
}

fn catch_up(live: &mut Live) {
    match live.links.catch_up() {
        Ok(events) if events.is_empty() => {}
        Ok(_) => live.class_net = None,
        Err(e) => tracing::warn!(error = %e, "reading link events"),
    }
}

/// `class/net` now: each function netdev the host has, by its current
/// name, with its `net/` directory and ifindex. Made again only after a
/// link changed or the tree was rebuilt, so a lookup there costs no scan.
fn class_net(live: &mut Live) -> &BTreeMap<String, (Ino, u32)> {
    catch_up(live);
    if live.class_net.is_none() {
        let mut view = BTreeMap::new();
        for &net_dir in &live.tree.net_dirs {
            let Some(entry) = live.tree.netdev(net_dir) else {
                continue;
            };
            if let Some(link) = host_link(&live.links, entry.ifindex) {
                view.insert(link.name.clone(), (net_dir, entry.ifindex));
            }
        }
        // names that no longer lead where the kernel may have cached them
        if let Some(class_dir) = live.tree.ino_of(Path::new("class/net")) {
            for (name, was) in &live.class_net_seen {
                if view.get(name) != Some(was) {
                    live.stale_names.push((class_dir, OsString::from(name)));
                }
            }
        }
        live.class_net_seen = view.clone();
        live.class_net = Some(view);
    }
    live.class_net.get_or_insert_with(BTreeMap::new)
}

/// The netdev a dynamic key shows, if it is still there under that name.
/// An attribute's value is asked of the kernel directly (see
/// [`LinkTable::fresh`]); the rest comes from the event-driven table.
fn current(live: &mut Live, key: &DynKey) -> Option<(NetdevEntry, LinkStatus)> {
    let (net_dir, ifindex, name) = key.netdev();
    let entry = live
        .tree
        .netdev(net_dir)
        .filter(|entry| entry.ifindex == ifindex)?
        .clone();
    catch_up(live);
    let status = match key {
        DynKey::NetdevFile { .. } => match live.links.fresh(ifindex) {
            Ok(status) => {
                let status = status?;
                if status.name != name {
                    // a rename the events have not brought yet: class/net too
                    live.class_net = None;
                }
                status
            }
            Err(e) => {
                tracing::warn!(error = %e, ifindex, "reading a link");
                live.links.get(ifindex)?.clone()
            }
        },
        _ => live.links.get(ifindex)?.clone(),
    };
    (status.name == name).then_some((entry, status))
}

fn state_of(entry: &NetdevEntry, status: &LinkStatus) -> NetdevState {
    NetdevState {
        ifindex: status.index,
        mac: status.mac.unwrap_or(entry.mac),
        mtu: status.mtu,
        // sysfs shows the flags one sets, netlink adds the kernel's
        // IFF_RUNNING, IFF_LOWER_UP and IFF_DORMANT
        flags: status.flags & !(0x40 | 0x1_0000 | 0x2_0000),
        operstate: status.operstate,
        carrier: status.carrier,
    }
}

/// A netdev attribute's text; Err for a read the kernel refuses.
fn netdev_file(
    entry: &NetdevEntry,
    status: &LinkStatus,
    file: &str,
) -> Result<Option<Vec<u8>>, Errno> {
    let attributes = entry.attributes(&state_of(entry, status));
    let (_, text) = attributes
        .into_iter()
        .find(|(name, _)| *name == file)
        .ok_or(Errno::ENOENT)?;
    Ok(text.map(|t| format!("{t}\n").into_bytes()))
}

fn dyn_link(entry: &NetdevEntry, key: &DynKey) -> PathBuf {
    let (_, _, name) = key.netdev();
    let dir = entry.function_dir.join("net").join(name);
    match key {
        DynKey::ClassNet { .. } => relative_target(&Path::new("class/net").join(name), &dir),
        _ => relative_target(&dir.join("device"), &entry.function_dir),
    }
}

/// Names of a dynamic directory now.
fn listing(live: &mut Live, ino: Ino) -> Result<Vec<u8>, Errno> {
    let names = dyn_children(live, ino)?;
    Ok(names
        .into_iter()
        .flat_map(|(name, _)| name.into_encoded_bytes().into_iter().chain([0]))
        .collect())
}

/// A static node's kind, owned (what follows needs `live` mutably).
fn kind_of(live: &Live, ino: Ino) -> Result<Kind, Errno> {
    live.tree
        .node(ino)
        .map(|n| n.kind.clone())
        .ok_or(Errno::ENOENT)
}

fn dyn_children(live: &mut Live, ino: Ino) -> Result<Vec<(OsString, DynKey)>, Errno> {
    let kind = kind_of(live, ino)?;
    match kind {
        Kind::NetDir(_) => Ok(netdev_of(live, ino)
            .ok()
            .map(|(ifindex, name)| {
                (
                    OsString::from(&name),
                    DynKey::NetdevDir {
                        net_dir: ino,
                        ifindex,
                        name,
                    },
                )
            })
            .into_iter()
            .collect()),
        Kind::ClassNet => Ok(class_net(live)
            .iter()
            .map(|(name, &(net_dir, ifindex))| {
                (
                    OsString::from(name),
                    DynKey::ClassNet {
                        net_dir,
                        ifindex,
                        name: name.clone(),
                    },
                )
            })
            .collect()),
        _ => Err(Errno::ENOTDIR),
    }
}

/// A static node's text (counters read now).
fn read_static(live: &mut Live, ino: Ino) -> Result<Vec<u8>, Errno> {
    let kind = kind_of(live, ino)?;
    match kind {
        Kind::Attr(text) | Kind::Control(text, _) => Ok(text),
        Kind::Counter { pf, vf, counter } => {
            let counters = live.node.vf_counters(pf, vf).unwrap_or_default();
            let value = match counter {
                Counter::RxBytes => counters.rx_bytes,
                Counter::RxPackets => counters.rx_packets,
                Counter::TxBytes => counters.tx_bytes,
                Counter::TxPackets => counters.tx_packets,
                Counter::RxDropped => counters.rx_dropped,
                Counter::TxDropped => counters.tx_dropped,
            };
            Ok(format!("{value}\n").into_bytes())
        }
        Kind::Dir(_) | Kind::NetDir(_) | Kind::ClassNet => Err(Errno::EISDIR),
        Kind::Link(_) => Err(Errno::EINVAL),
    }
}

/// A stable stamp for content: what changes it tells the kernel to drop
/// its cached page.
fn hashed(content: &[u8]) -> SystemTime {
    let mut hasher = DefaultHasher::new();
    content.hash(&mut hasher);
    // within the range every file system's timestamps handle
    UNIX_EPOCH + Duration::from_nanos(hasher.finish() % (1 << 60))
}

fn slice(text: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    let end = start.saturating_add(size as usize).min(text.len());
    &text[start..end]
}

impl Filesystem for LiveFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Each is an optimisation the kernel may lack; none is required.
        for flag in [
            InitFlags::FUSE_AUTO_INVAL_DATA,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_NO_OPEN_SUPPORT,
            InitFlags::FUSE_NO_OPENDIR_SUPPORT,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut live = self.lock();
        if parent.0 == ROOT_INO && name == crate::devtools::sim::STATE_FILE {
            let size = live.state_json.len() as u64;
            let attr = self.attr(STATE_INO, FileType::RegularFile, size, 0o444, self.started);
            return reply.entry_with_ttls(&STABLE, &STABLE, &attr, Generation(0));
        }
        let result = self
            .child(&mut live, parent.0, name)
            .and_then(|found| self.describe(&mut live, &found));
        match result {
            Ok((attr, ttl)) => {
                // A static directory's names change only with a rebuild,
                // which invalidates them; class/net's, see `stale`. A
                // function's net/ and a netdev's own directory answer live.
                // and a netdev directory's names: it is reached only through
                // the live net/<name>, which fails once the netdev left
                let in_netdev_dir =
                    matches!(live.dyn_keys.get(&parent.0), Some(DynKey::NetdevDir { .. }));
                let entry_ttl = match live.tree.node(parent.0).map(|n| &n.kind) {
                    Some(Kind::Dir(_) | Kind::ClassNet) => STABLE,
                    _ if in_netdev_dir => STABLE,
                    _ => LIVE,
                };
                reply.entry_with_ttls(&ttl, &entry_ttl, &attr, Generation(0))
            }
            Err(errno) => reply.error(errno),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut live = self.lock();
        if ino.0 == STATE_INO {
            let size = live.state_json.len() as u64;
            return reply.attr(
                &STABLE,
                &self.attr(STATE_INO, FileType::RegularFile, size, 0o444, self.started),
            );
        }
        match self
            .find(&mut live, ino.0)
            .and_then(|found| self.describe(&mut live, &found))
        {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(errno) => reply.error(errno),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // `echo N > attr` truncates first: sysfs ignores that for the
        // attributes one may write, and refuses it for the others
        let writable = {
            let live = self.lock();
            let current = live.tree.resolve(ino.0).unwrap_or(ino.0);
            matches!(
                live.tree.node(current).map(|n| &n.kind),
                Some(Kind::Control(..))
            )
        };
        if writable {
            self.getattr(req, ino, fh, reply)
        } else {
            reply.error(Errno::EACCES)
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let mut live = self.lock();
        match self.find(&mut live, ino.0) {
            Ok(Found::Static(ino)) => match live.tree.node(ino).map(|n| &n.kind) {
                Some(Kind::Link(target)) => reply.data(target.as_os_str().as_encoded_bytes()),
                _ => reply.error(Errno::EINVAL),
            },
            Ok(Found::Dyn(key)) => match current(&mut live, &key) {
                Some((entry, _))
                    if matches!(key, DynKey::ClassNet { .. } | DynKey::NetdevDevice { .. }) =>
                {
                    reply.data(dyn_link(&entry, &key).as_os_str().as_encoded_bytes())
                }
                Some(_) => reply.error(Errno::EINVAL),
                None => reply.error(Errno::ENOENT),
            },
            Err(errno) => reply.error(errno),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // ENOSYS: the kernel stops sending opens and keeps pages cached
        reply.error(Errno::ENOSYS)
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut live = self.lock();
        if ino.0 == STATE_INO {
            return reply.data(slice(&live.state_json, offset, size));
        }
        let text = match self.find(&mut live, ino.0) {
            Ok(Found::Static(ino)) => read_static(&mut live, ino),
            Ok(Found::Dyn(key @ DynKey::NetdevFile { .. })) => match current(&mut live, &key) {
                Some((entry, status)) => {
                    let DynKey::NetdevFile { file, .. } = key else {
                        return reply.error(Errno::EINVAL);
                    };
                    // the kernel refuses some reads (carrier of a link that is down)
                    netdev_file(&entry, &status, file).and_then(|t| t.ok_or(Errno::EINVAL))
                }
                None => Err(Errno::ENOENT),
            },
            Ok(Found::Dyn(_)) => Err(Errno::EISDIR),
            Err(errno) => Err(errno),
        };
        match text {
            Ok(text) => reply.data(slice(&text, offset, size)),
            Err(errno) => reply.error(errno),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut live = self.lock();
        let current = live.tree.resolve(ino.0).unwrap_or(ino.0);
        let control = match live.tree.node(current).map(|n| &n.kind) {
            Some(Kind::Control(_, control)) => control.clone(),
            Some(_) => return reply.error(Errno::EACCES),
            None => return reply.error(Errno::ENOENT),
        };
        let outcome = live.node.write(&control, data);
        let events = live.node.take_events();
        // rebuild even after an error: a change may have been half made
        let rebuilt = {
            let Live {
                tree,
                node,
                next_ino,
                ..
            } = &mut *live;
            StaticTree::build(Some(tree), next_ino, |sink| {
                tree::describe(&node.node, &node.ifindexes, sink)
            })
        };
        let invalidation = match rebuilt {
            Ok((tree, invalidation)) => {
                live.tree = tree;
                live.class_net = None;
                invalidation
            }
            Err(e) => {
                tracing::error!(error = %e, "rebuilding the tree after a write");
                Invalidation::default()
            }
        };
        // Taken before the tree is let go: two writes announce in the order
        // they changed the node (live, then announcer; never the reverse).
        let mut announcer = self.announcer.lock().unwrap_or_else(|p| p.into_inner());
        drop(live);
        self.invalidate(&invalidation);
        for event in &events {
            announcer.announce(event);
        }
        drop(announcer);
        match outcome {
            Ok(()) => reply.written(data.len() as u32),
            Err(WriteError { errno, detail }) => {
                tracing::info!(?control, %detail, "write refused");
                reply.error(Errno::from_i32(errno as i32))
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut live = self.lock();
        let mut entries: Vec<(Ino, FileType, OsString)> = Vec::new();
        match self.find(&mut live, ino.0) {
            Ok(Found::Static(dir)) => {
                let parent = live.tree.node(dir).map_or(ROOT_INO, |n| n.parent);
                entries.push((dir, FileType::Directory, ".".into()));
                entries.push((parent, FileType::Directory, "..".into()));
                let kind = live.tree.node(dir).map(|n| n.kind.clone());
                match kind {
                    Some(Kind::Dir(children)) => {
                        if dir == ROOT_INO {
                            entries.push((
                                STATE_INO,
                                FileType::RegularFile,
                                crate::devtools::sim::STATE_FILE.into(),
                            ));
                        }
                        for (name, child) in children {
                            let kind = match live.tree.node(child).map(|n| &n.kind) {
                                Some(Kind::Dir(_) | Kind::NetDir(_) | Kind::ClassNet) => {
                                    FileType::Directory
                                }
                                Some(Kind::Link(_)) => FileType::Symlink,
                                _ => FileType::RegularFile,
                            };
                            entries.push((child, kind, name));
                        }
                    }
                    Some(Kind::NetDir(_) | Kind::ClassNet) => match dyn_children(&mut live, dir) {
                        Ok(children) => {
                            for (name, key) in children {
                                let kind = if matches!(key, DynKey::ClassNet { .. }) {
                                    FileType::Symlink
                                } else {
                                    FileType::Directory
                                };
                                entries.push((dyn_ino(&mut live, &key), kind, name));
                            }
                        }
                        Err(errno) => return reply.error(errno),
                    },
                    _ => return reply.error(Errno::ENOTDIR),
                }
            }
            Ok(Found::Dyn(key @ DynKey::NetdevDir { .. })) => {
                let Some((entry, status)) = current(&mut live, &key) else {
                    return reply.error(Errno::ENOENT);
                };
                let (net_dir, ifindex, name) = key.netdev();
                let name = name.to_owned();
                entries.push((dyn_ino(&mut live, &key), FileType::Directory, ".".into()));
                entries.push((net_dir, FileType::Directory, "..".into()));
                let device = DynKey::NetdevDevice {
                    net_dir,
                    ifindex,
                    name: name.clone(),
                };
                entries.push((
                    dyn_ino(&mut live, &device),
                    FileType::Symlink,
                    "device".into(),
                ));
                for (file, _) in entry.attributes(&state_of(&entry, &status)) {
                    let key = DynKey::NetdevFile {
                        net_dir,
                        ifindex,
                        name: name.clone(),
                        file,
                    };
                    entries.push((dyn_ino(&mut live, &key), FileType::RegularFile, file.into()));
                }
            }
            Ok(Found::Dyn(_)) => return reply.error(Errno::ENOTDIR),
            Err(errno) => return reply.error(errno),
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (index, (child, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            if reply.add(INodeNo(child), (index + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok()
    }
}

/// The state file's inode: not in the tree (it is the node's, not the
/// kernel's), served at the root so that every reader finds it there.
pub const STATE_INO: Ino = u64::MAX - 1;
