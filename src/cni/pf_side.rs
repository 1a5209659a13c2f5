//! VF attributes set through the PF (`vlan`, `vlanQoS`, `vlanProto`, the
//! admin MAC, `min_tx_rate`/`max_tx_rate`, `spoofchk`, `trust`,
//! `link_state`): which ones a config asks for, their original values in
//! the attachment cache, applying them with read-back, and putting them back.
//! Pure logic over `PfOps`; the kernel side is `netlink::vf`.
//!
//! Order. ADD applies in sriov-cni's order, vlan → admin MAC → rate →
//! spoofchk → trust → link_state, before the VF netdev moves. Undoing (a
//! failed ADD, or DEL) runs the other way round and always before the VF
//! netdev is released: drivers such as ice and i40e refuse a MAC change
//! made from the VF side while an administrative MAC is set and trust is
//! off, so the admin MAC has to be back to its original value before the
//! netdev's own MAC is restored.
//!
//! Only what the config asks for is touched, and a setting already in
//! effect is not sent again (some drivers reset the VF on every admin MAC
//! or trust change).

use super::config::NetConf;
use super::error::{CniError, CODE_KERNEL, CODE_UNSUPPORTED_FIELD};
use super::state::{Cache, OrigVfState};
use super::vf_attr::VfAttr;
use crate::netlink::{NetlinkError, PfOps, VfConfig, VfSetting};
use crate::pci::PciAddress;
use std::time::Duration;

/// Where a VF's PF-side settings live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfVf {
    /// The VF's PCI address, for messages.
    pub vf: PciAddress,
    /// The PF's netdev in the host netns (empty if it has none).
    pub pf: String,
    /// The VF's index on its PF.
    pub index: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PfSideError {
    #[error(
        "VF {vf}: {keys} can only be set through PF {pf}, which reports no VF settings \
         (to the kernel it is no SR-IOV PF, or its driver does not manage VFs through netlink)"
    )]
    NoVfInfo {
        vf: PciAddress,
        pf: String,
        keys: String,
    },
    #[error(
        "VF {vf}: {keys} can only be set through its PF, which has no netdev in the host netns"
    )]
    NoPfNetdev { vf: PciAddress, keys: String },
    #[error("VF {vf}: PF {pf} does not list VF {index} in its VF table")]
    NotListed {
        vf: PciAddress,
        pf: String,
        index: u32,
    },
    #[error("VF {vf}: PF {pf} does not support {setting} on its VFs ({key}): {source}")]
    Unsupported {
        vf: PciAddress,
        pf: String,
        setting: VfSetting,
        key: &'static str,
        #[source]
        source: NetlinkError,
    },
    #[error("VF {vf}: {step}: {source}")]
    Kernel {
        vf: PciAddress,
        step: String,
        #[source]
        source: NetlinkError,
    },
    #[error("VF {vf}: PF {pf} vf {index}: set {wanted}, but the driver reports {found}")]
    Mismatch {
        vf: PciAddress,
        pf: String,
        index: u32,
        wanted: VfSetting,
        found: VfSetting,
    },
}

impl From<PfSideError> for CniError {
    fn from(error: PfSideError) -> CniError {
        let code = match error {
            // this node cannot do what the config asks: an unsupported field
            PfSideError::NoVfInfo { .. }
            | PfSideError::NoPfNetdev { .. }
            | PfSideError::Unsupported { .. } => CODE_UNSUPPORTED_FIELD,
            _ => CODE_KERNEL,
        };
        CniError::new(code, error.to_string())
    }
}

/// How often to try a setting the driver reports busy (EAGAIN, EBUSY), or
/// an admin MAC that does not read back yet: drivers such as i40e apply it
/// through a VF reset. sriov-cni tries 20 times 100 ms.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub delay: Duration,
}

pub const DRIVER_RETRY: Retry = Retry {
    attempts: 20,
    delay: Duration::from_millis(100),
};

/// The PF-side settings `conf` asks for, in the order ADD applies them;
/// `mac` is the MAC chosen by precedence (`mac` < CNI_ARGS < runtimeConfig),
/// which also becomes the VF's admin MAC.
pub fn requested(conf: &NetConf, mac: Option<[u8; 6]>) -> Result<Vec<VfSetting>, CniError> {
    let mut settings = Vec::new();
    for attr in VfAttr::ALL {
        settings.extend(attr.requested(conf, mac)?);
    }
    Ok(settings)
}

/// The admin MAC is the one setting a kernel-mode VF can do without: the
/// VF netdev takes the MAC in the pod either way.
fn only_the_pf_can(setting: &VfSetting, userspace_vf: bool) -> bool {
    userspace_vf || !matches!(setting, VfSetting::Mac(_))
}

fn keys_of(settings: &[&VfSetting]) -> String {
    let keys: Vec<&str> = settings.iter().map(|s| s.key()).collect();
    keys.join(", ")
}

/// What ADD found on the PF before changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pf_index: u32,
    pub config: VfConfig,
}

/// Read the VF's PF-side settings before ADD changes them, and settle what
/// to apply. A PF that cannot tell (no netdev, no VF table) is fine when
/// nothing the config asks for needs it: the admin MAC of a kernel-mode VF
/// is then dropped (the netdev gets the MAC) and ADD goes on without
/// PF-side state. Otherwise it fails naming the keys, before anything
/// changed. `userspace_vf`: a DPDK VF has no netdev, only the PF can give
/// it a MAC.
pub fn read_before(
    pf: &mut dyn PfOps,
    at: &PfVf,
    settings: Vec<VfSetting>,
    userspace_vf: bool,
) -> Result<(Vec<VfSetting>, Option<Found>), PfSideError> {
    let needed: Vec<&VfSetting> = settings
        .iter()
        .filter(|s| only_the_pf_can(s, userspace_vf))
        .collect();
    let without_pf = |why: &str| {
        let kept: Vec<VfSetting> = settings
            .iter()
            .copied()
            .filter(|s| !matches!(s, VfSetting::Mac(_)))
            .collect();
        if kept.len() < settings.len() {
            tracing::info!(vf = %at.vf, pf = %at.pf, "{why}: the MAC is set on the VF netdev only, not as the VF's admin MAC");
        }
        (kept, None)
    };
    if at.pf.is_empty() {
        if needed.is_empty() {
            return Ok(without_pf("the PF has no netdev"));
        }
        return Err(PfSideError::NoPfNetdev {
            vf: at.vf,
            keys: keys_of(&needed),
        });
    }
    let table = match pf.pf_vfs(&at.pf) {
        Ok(table) => table,
        Err(source) if needed.is_empty() => {
            tracing::warn!(vf = %at.vf, pf = %at.pf, error = %source, "cannot read the PF's VF table");
            return Ok(without_pf("the PF's VF table cannot be read"));
        }
        Err(source) => {
            return Err(PfSideError::Kernel {
                vf: at.vf,
                step: format!("reading the VF table of PF {}", at.pf),
                source,
            })
        }
    };
    let table = match table {
        None if needed.is_empty() => return Ok(without_pf("the PF has no netdev")),
        None => {
            return Err(PfSideError::NoPfNetdev {
                vf: at.vf,
                keys: keys_of(&needed),
            })
        }
        Some(table) if table.vfs.is_none() => {
            if needed.is_empty() {
                return Ok(without_pf("the PF reports no VF settings"));
            }
            return Err(PfSideError::NoVfInfo {
                vf: at.vf,
                pf: at.pf.clone(),
                keys: keys_of(&needed),
            });
        }
        Some(table) => table,
    };
    match table.vf(at.index) {
        Some(config) => Ok((
            settings,
            Some(Found {
                pf_index: table.index,
                config: config.clone(),
            }),
        )),
        None if settings.is_empty() => Ok((settings, None)),
        None => Err(PfSideError::NotListed {
            vf: at.vf,
            pf: at.pf.clone(),
            index: at.index,
        }),
    }
}

/// Keep the VF's settings from before ADD in sriov-cni's `OrigVfState`
/// fields. `AdminMAC` only when ADD sets the admin MAC, because DEL (ours
/// and sriov-cni's) restores it whenever the cache holds one.
pub fn record_original(orig: &mut OrigVfState, found: &VfConfig, sets_admin_mac: bool) {
    for attr in VfAttr::ALL {
        if attr != VfAttr::Mac || sets_admin_mac {
            attr.save(orig, found);
        }
    }
}

/// What DEL puts back, from the cache (ours or sriov-cni's): the original
/// value of each attribute the cached config set, in the reverse of ADD's
/// order, and the admin MAC whenever the cache holds one (as sriov-cni).
pub fn to_restore(cache: &Cache) -> Vec<VfSetting> {
    VfAttr::ALL
        .iter()
        .rev()
        .filter_map(|attr| attr.restore(cache))
        .collect()
}

/// The VF's entry in its PF's table now.
fn read_vf(pf: &mut dyn PfOps, at: &PfVf) -> Result<(u32, VfConfig), PfSideError> {
    let table = pf
        .pf_vfs(&at.pf)
        .map_err(|source| PfSideError::Kernel {
            vf: at.vf,
            step: format!("reading the VF table of PF {}", at.pf),
            source,
        })?
        .filter(|t| t.vfs.is_some())
        .ok_or_else(|| PfSideError::NoVfInfo {
            vf: at.vf,
            pf: at.pf.clone(),
            keys: "PF-side settings".into(),
        })?;
    let config = table
        .vf(at.index)
        .cloned()
        .ok_or_else(|| PfSideError::NotListed {
            vf: at.vf,
            pf: at.pf.clone(),
            index: at.index,
        })?;
    Ok((table.index, config))
}

/// Set one attribute and read it back, retrying what drivers do
/// asynchronously. Returns the VF's entry afterwards.
fn set_verified(
    pf: &mut dyn PfOps,
    at: &PfVf,
    pf_index: u32,
    setting: VfSetting,
    retry: &Retry,
) -> Result<VfConfig, PfSideError> {
    let mut attempt = 1;
    loop {
        let last = attempt >= retry.attempts;
        match pf.set_vf(pf_index, at.index, setting) {
            Ok(()) => {}
            Err(source) if source.is_not_supported() => {
                return Err(PfSideError::Unsupported {
                    vf: at.vf,
                    pf: at.pf.clone(),
                    setting,
                    key: setting.key(),
                    source,
                })
            }
            Err(source) if source.is_transient() && !last => {
                tracing::debug!(vf = %at.vf, %setting, error = %source, "driver busy; trying again");
                std::thread::sleep(retry.delay);
                attempt += 1;
                continue;
            }
            Err(source) => {
                return Err(PfSideError::Kernel {
                    vf: at.vf,
                    step: format!("setting {setting} on PF {} vf {}", at.pf, at.index),
                    source,
                })
            }
        }
        let (_, now) = read_vf(pf, at)?;
        if setting.holds_in(&now) {
            return Ok(now);
        }
        if matches!(setting, VfSetting::Mac(_)) && !last {
            std::thread::sleep(retry.delay);
            attempt += 1;
            continue;
        }
        return Err(PfSideError::Mismatch {
            vf: at.vf,
            pf: at.pf.clone(),
            index: at.index,
            wanted: setting,
            found: setting.as_found_in(&now),
        });
    }
}

/// Apply `settings` one at a time, each verified by reading the VF table
/// back. Settings already in effect are skipped. What puts them back is
/// not tracked here: the originals are in the cache before the first change
/// (`record_original`), and `to_restore` sets back each one the config
/// names, so a change the driver made but then reported as failed is
/// undone too.
pub fn apply(
    pf: &mut dyn PfOps,
    at: &PfVf,
    found: &Found,
    settings: &[VfSetting],
    retry: &Retry,
) -> Result<(), PfSideError> {
    let mut current = found.config.clone();
    for &setting in settings {
        if setting.holds_in(&current) {
            tracing::debug!(vf = %at.vf, %setting, "already in effect");
            continue;
        }
        current = set_verified(pf, at, found.pf_index, setting, retry)?;
        tracing::info!(vf = %at.vf, pf = %at.pf, index = at.index, %setting, "set through the PF");
    }
    Ok(())
}

/// Put PF-side settings back, in the order given, then release the VF
/// netdev (see the module comment for why in this order). Keeps going past
/// failures and reports them all. A PF that no longer lists the VF has
/// nothing left to restore (its VFs were destroyed and recreated fresh).
pub fn restore_in_order(
    pf: &mut dyn PfOps,
    at: &PfVf,
    settings: &[VfSetting],
    retry: &Retry,
    release_netdev: impl FnOnce() -> Result<(), CniError>,
) -> Result<(), CniError> {
    let mut failures: Vec<CniError> = Vec::new();
    if !settings.is_empty() {
        match read_vf(pf, at) {
            Ok((pf_index, mut current)) => {
                for &setting in settings {
                    if setting.holds_in(&current) {
                        continue;
                    }
                    match set_verified(pf, at, pf_index, setting, retry) {
                        Ok(now) => {
                            tracing::info!(vf = %at.vf, pf = %at.pf, index = at.index, %setting, "restored through the PF");
                            current = now;
                        }
                        Err(error) => {
                            tracing::error!(vf = %at.vf, error = %error, "restoring a PF-side setting failed");
                            failures.push(error.into());
                        }
                    }
                }
            }
            Err(error @ (PfSideError::NoVfInfo { .. } | PfSideError::NotListed { .. })) => {
                tracing::warn!(vf = %at.vf, error = %error, "nothing to restore on the PF");
            }
            Err(error) => failures.push(error.into()),
        }
    }
    if let Err(error) = release_netdev() {
        failures.push(error);
    }
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some(first) => {
            let rest: Vec<String> = failures.map(|e| e.msg).collect();
            if rest.is_empty() {
                Err(first)
            } else {
                let details = format!("also: {}", rest.join("; "));
                Err(first.with_details(details))
            }
        }
    }
}

#[cfg(test)]
mod fake_pf;
// on the simulated node, a development tool
#[cfg(all(test, feature = "devtools"))]
mod node_tests;
#[cfg(test)]
mod tests;
