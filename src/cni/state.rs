//! What the plugin keeps on the node, in sriov-cni's layout so a node can
//! be upgraded with pods running (and back):
//!
//! - `<dir>/pci/vf_lock/<bdf>.lock`: flock serialising ADD/DEL/GC on one VF;
//! - `<dir>/pci/<bdf>`: the allocation marker, holding the owner's netns path;
//! - `<dir>/<containerID>-<ifname>`: the attachment cache (NetConf + the VF's
//!   original state), written atomically with mode 0600.
//!
//! The directory is `/var/lib/cni/sriov`, or `SRIOV_CNI_STATE_DIR` (tests).

use super::config::NetConf;
use super::env::{valid_container_id, valid_ifname};
use super::error::{CniError, CODE_IO, CODE_TRY_AGAIN};
use crate::pci::PciAddress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/sriov";
pub const ENV_STATE_DIR: &str = "SRIOV_CNI_STATE_DIR";
/// As upstream: how long to wait for another operation on the same VF.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The VF's state before ADD, in sriov-cni's `OrigVfState` keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrigVfState {
    #[serde(rename = "HostIFName", default)]
    pub host_ifname: String,
    #[serde(rename = "EffectiveMAC", default)]
    pub effective_mac: String,
    #[serde(rename = "AdminMAC", default, skip_serializing_if = "String::is_empty")]
    pub admin_mac: String,
    #[serde(rename = "MTU", default)]
    pub mtu: u32,
    #[serde(rename = "SpoofChk", default)]
    pub spoofchk: bool,
    #[serde(rename = "Trust", default)]
    pub trust: bool,
    #[serde(rename = "Vlan", default)]
    pub vlan: i64,
    #[serde(rename = "VlanQoS", default)]
    pub vlan_qos: i64,
    /// The ethertype, as sriov-cni writes it (33024 = 802.1q, 34984 =
    /// 802.1ad); 0 when the PF was not read. Older caches may name it.
    #[serde(
        rename = "VlanProto",
        default,
        deserialize_with = "vlan_proto_number_or_name"
    )]
    pub vlan_proto: u16,
    #[serde(rename = "MinTxRate", default)]
    pub min_tx_rate: i64,
    #[serde(rename = "MaxTxRate", default)]
    pub max_tx_rate: i64,
    #[serde(rename = "LinkState", default)]
    pub link_state: u32,
}

/// `VlanProto` as a number (sriov-cni since it switched to netlink's
/// ethertype) or a name (`802.1q`/`802.1ad`); anything else reads as 0,
/// which DEL treats as 802.1q, as sriov-cni does for caches without it.
fn vlan_proto_number_or_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u16, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        serde_json::Value::String(name) => {
            crate::netlink::VlanProto::from_name(&name).map(|p| p.ethertype())
        }
        _ => None,
    }
    .unwrap_or(0))
}

/// How the VF was attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A kernel netdev moved into the pod.
    #[default]
    Kernel,
    /// A userspace-driver VF (vfio-pci, uio): nothing moved.
    Dpdk,
}

/// Our additions to the cache, under one key that the Go plugin ignores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub netns: String,
    pub mode: Mode,
    /// The VF netdev's ifindex; kept across namespace moves unless taken.
    #[serde(default)]
    pub ifindex: u32,
    /// The MAC the VF carries in the pod (to recognise it after its netns died).
    #[serde(default)]
    pub pod_mac: String,
    /// Set once the VF is in the pod netns.
    #[serde(default)]
    pub moved: bool,
    /// Set once IPAM ADD succeeded.
    #[serde(default)]
    pub ipam_added: bool,
    /// The MTU the VF has in the pod (what CHECK expects when the config
    /// sets none); 0 when unknown.
    #[serde(default)]
    pub pod_mtu: u32,
    /// Nothing of the VF is left to undo: it is back as it was (or belongs
    /// to another pod now), and its allocation marker is no longer ours.
    /// Only IPAM is left to release; DEL and GC then drop the cache.
    #[serde(default)]
    pub vf_restored: bool,
    /// The attachment's `CNI_CONTAINERID` and `CNI_IFNAME`. The file name
    /// `<containerID>-<ifname>` cannot tell them apart when either holds a
    /// `-` (`net-1`), and GC must give IPAM DEL the right ones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ifname: String,
    /// The VF netdev was up on the host before ADD: it goes back up.
    #[serde(default)]
    pub host_up: bool,
    /// The VF netdev is a veth stand-in (the simulated node), which has no
    /// PCI parent: only then is it recognised by name, ifindex and MAC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
    /// The CNI_ARGS ADD got (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, ...),
    /// given again to every later IPAM call for this attachment: GC has
    /// none, and an IPAM plugin such as whereabouts keys its allocations on
    /// the pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cni_args: BTreeMap<String, String>,
}

/// The attachment cache file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cache {
    #[serde(flatten)]
    pub conf: NetConf,
    #[serde(rename = "VFID", default)]
    pub vf_id: i64,
    #[serde(rename = "Master", default)]
    pub master: String,
    #[serde(rename = "OrigVfState", default)]
    pub orig: OrigVfState,
    #[serde(rename = "sriovRs", default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

impl Cache {
    /// Has everything of the VF already been put back?
    pub fn vf_restored(&self) -> bool {
        self.progress.as_ref().is_some_and(|p| p.vf_restored)
    }

    /// Record that only IPAM is left to release. A cache written by
    /// sriov-cni gets our progress key for it (sriov-cni ignores the key).
    pub fn mark_vf_restored(&mut self, netns: &str, mode: Mode) {
        let progress = self.progress.get_or_insert_with(|| Progress {
            netns: netns.to_owned(),
            mode,
            ..Progress::default()
        });
        progress.vf_restored = true;
    }

    /// The (containerID, ifname) of the attachment this cache, stored under
    /// the file name `name`, belongs to: as ADD recorded them (ours), or,
    /// for a sriov-cni cache, which records neither, split at the last `-`
    /// that leaves a valid container ID (see `cache_name_splits`).
    pub fn attachment<'a>(&'a self, name: &'a str) -> Option<(&'a str, &'a str)> {
        if let Some(p) = &self.progress {
            let recorded = !p.container_id.is_empty() && !p.ifname.is_empty();
            if recorded && format!("{}-{}", p.container_id, p.ifname) == name {
                return Some((&p.container_id, &p.ifname));
            }
        }
        cache_name_splits(name).next()
    }

    /// Does this cache, stored as `name`, belong to one of `attachments`?
    /// Ours say exactly; a sriov-cni cache counts if any way of splitting
    /// its name matches, so an ambiguous name is never released by mistake.
    pub fn is_one_of(&self, name: &str, attachments: &[(&str, &str)]) -> bool {
        let recorded = self
            .progress
            .as_ref()
            .is_some_and(|p| !p.container_id.is_empty() && !p.ifname.is_empty());
        if recorded {
            return self
                .attachment(name)
                .is_some_and(|a| attachments.contains(&a));
        }
        cache_name_splits(name).any(|a| attachments.contains(&a))
    }
}

/// Every way to read a cache file name `<containerID>-<ifname>` as a valid
/// container ID and interface name, the last `-` first.
pub fn cache_name_splits(name: &str) -> impl Iterator<Item = (&str, &str)> {
    name.char_indices()
        .rev()
        .filter(|(_, c)| *c == '-')
        .filter_map(|(i, _)| {
            let (id, ifname) = (&name[..i], &name[i + 1..]);
            (valid_container_id(id) && valid_ifname(ifname)).then_some((id, ifname))
        })
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

fn io_error(step: &str, path: &Path, e: io::Error) -> CniError {
    CniError::new(CODE_IO, format!("{step} {}: {e}", path.display()))
}

/// Holds the per-VF flock until dropped (or the process exits).
pub struct VfLock {
    _file: File,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), CniError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error("creating state directory", dir, e))
    }

    /// Lock one VF, waiting up to a minute for a concurrent operation.
    pub fn lock_vf(&self, vf: PciAddress) -> Result<VfLock, CniError> {
        let dir = self.root.join("pci/vf_lock");
        self.ensure_dir(&dir)?;
        let path = dir.join(format!("{vf}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("opening VF lock", &path, e))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(VfLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(CniError::new(
                        CODE_TRY_AGAIN,
                        format!(
                            "VF {vf}: another operation holds {} for over a minute",
                            path.display()
                        ),
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_error("locking", &path, e)),
            }
        }
    }

    fn marker_path(&self, vf: PciAddress) -> PathBuf {
        self.root.join("pci").join(vf.to_string())
    }

    /// The netns path of the pod the VF is allocated to, if any.
    pub fn allocation(&self, vf: PciAddress) -> Result<Option<String>, CniError> {
        let path = self.marker_path(vf);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading allocation marker", &path, e)),
        }
    }

    pub fn set_allocation(&self, vf: PciAddress, netns: &str) -> Result<(), CniError> {
        self.ensure_dir(&self.root.join("pci"))?;
        write_atomically(&self.marker_path(vf), netns.as_bytes())
    }

    pub fn clear_allocation(&self, vf: PciAddress) -> Result<(), CniError> {
        remove_if_present(&self.marker_path(vf))
    }

    /// Lock the attachment's VF, then read its cache: a copy read before
    /// the lock may be stale (a concurrent ADD taking the VF over marks it
    /// `vf_restored`, GC removes it). The VF is `device` (the stdin's
    /// `deviceID`) or, without one, the cache's, learnt from an unlocked
    /// read; if the locked cache names another VF, that one is locked
    /// instead.
    pub fn load_locked(
        &self,
        container_id: &str,
        ifname: &str,
        device: Option<PciAddress>,
    ) -> Result<Option<(VfLock, Cache)>, CniError> {
        let mut device = device;
        for _ in 0..3 {
            let vf = match device {
                Some(vf) => vf,
                None => match self.load_cache(container_id, ifname)? {
                    Some(cache) => cache.conf.device()?,
                    None => return Ok(None),
                },
            };
            let lock = self.lock_vf(vf)?;
            let Some(cache) = self.load_cache(container_id, ifname)? else {
                return Ok(None);
            };
            let cached = cache.conf.device()?;
            if cached == vf {
                return Ok(Some((lock, cache)));
            }
            device = Some(cached);
        }
        Err(CniError::new(
            CODE_TRY_AGAIN,
            format!("the attachment cache {container_id}-{ifname} keeps changing its deviceID"),
        ))
    }

    /// `<dir>/<containerID>-<ifname>`; both parts are validated so that no
    /// value can name a path outside the directory.
    pub fn cache_path(&self, container_id: &str, ifname: &str) -> Result<PathBuf, CniError> {
        if !valid_container_id(container_id) || !valid_ifname(ifname) {
            return Err(CniError::new(
                super::error::CODE_INVALID_ENV,
                format!(
                    "container ID {container_id:?} / ifname {ifname:?} cannot name a state file"
                ),
            ));
        }
        Ok(self.root.join(format!("{container_id}-{ifname}")))
    }

    pub fn load_cache(&self, container_id: &str, ifname: &str) -> Result<Option<Cache>, CniError> {
        let path = self.cache_path(container_id, ifname)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("reading attachment cache", &path, e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CniError::new(
                super::error::CODE_DECODE,
                format!("attachment cache {}: {e}", path.display()),
            )
        })
    }

    pub fn save_cache(
        &self,
        container_id: &str,
        ifname: &str,
        cache: &Cache,
    ) -> Result<(), CniError> {
        let path = self.cache_path(container_id, ifname)?;
        self.ensure_dir(&self.root)?;
        let bytes = serde_json::to_vec(cache)
            .map_err(|e| CniError::new(CODE_IO, format!("encoding attachment cache: {e}")))?;
        write_atomically(&path, &bytes)
    }

    pub fn remove_cache(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        remove_if_present(&self.cache_path(container_id, ifname)?)
    }

    /// Every attachment cache in the directory, as (containerID, ifname).
    /// Cache names are `<containerID>-<ifname>`: container IDs may hold `-`,
    /// interface names in caches we list may too, so the split is confirmed
    /// against the cache's own content by the caller.
    pub fn cache_names(&self) -> Result<Vec<String>, CniError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("listing", &self.root, e)),
        };
        let mut names = Vec::new();
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every readable cache (file name, content) whose `deviceID` is `vf`.
    /// Unreadable files are skipped: they cannot tell whose VF they held.
    pub fn caches_of_vf(&self, vf: PciAddress) -> Result<Vec<(String, Cache)>, CniError> {
        let mut found = Vec::new();
        for name in self.cache_names()? {
            match self.load_cache_file(&name) {
                Ok(cache) if cache.conf.device().is_ok_and(|d| d == vf) => {
                    found.push((name, cache))
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(file = name, error = %e.msg, "skipping an unreadable cache")
                }
            }
        }
        Ok(found)
    }

    pub fn load_cache_file(&self, name: &str) -> Result<Cache, CniError> {
        let path = self.root.join(name);
        let bytes =
            std::fs::read(&path).map_err(|e| io_error("reading attachment cache", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            CniError::new(
                super::error::CODE_DECODE,
                format!("attachment cache {}: {e}", path.display()),
            )
        })
    }
}

/// Remove `path` and any temp file a killed writer left beside it (see
/// `write_atomically`); callers hold the lock that serialises its writers.
fn remove_if_present(path: &Path) -> Result<(), CniError> {
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!(".{}.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let entry_name = entry.file_name().to_string_lossy().into_owned();
                if entry_name.starts_with(&prefix) && entry_name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path, e)),
    }
}

/// Write `path` (0600) atomically: readers, and a DEL after this process was
/// killed, see the old or the new content, never half of it (see
/// `crate::atomic_file` for why there is no fsync).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CniError> {
    crate::atomic_file::write(path, bytes, 0o600).map_err(|e| io_error("writing", path, e))
}
