//! VF attributes held by the PF's driver, the `ip link set <pf> vf N ...`
//! family: read with RTM_GETLINK on the PF asking for IFLA_EXT_MASK =
//! RTEXT_FILTER_VF, set with RTM_SETLINK on the PF carrying
//! IFLA_VFINFO_LIST > IFLA_VF_INFO > one IFLA_VF_* attribute.
//!
//! Kernel facts handled here:
//! - Only a netdev with a parent device whose driver implements
//!   `ndo_get_vf_config` answers with IFLA_VFINFO_LIST. A veth (the
//!   simulated node's "PFs") answers without one, and RTM_SETLINK with VF
//!   attributes on it fails with EOPNOTSUPP.
//! - The kernel applies the IFLA_VF_* attributes of one IFLA_VF_INFO in its
//!   own fixed order and stops at the first error, so a message carrying
//!   several could leave an unknown subset applied. We send one attribute
//!   per message, so a caller always knows exactly what changed.
//! - VLAN goes as IFLA_VF_VLAN_LIST (it carries the protocol); the legacy
//!   IFLA_VF_VLAN cannot say 802.1ad. Rates go as IFLA_VF_RATE (min and
//!   max), not the legacy max-only IFLA_VF_TX_RATE.
//! - The kernel presets spoofchk and trust to -1 before asking the driver;
//!   a driver that does not report them leaves that, which
//!   netlink-packet-route reads as off.
//! - With RTEXT_FILTER_SKIP_STATS the kernel leaves out per-VF counters we
//!   do not need; a PF with hundreds of VFs still answers with a datagram
//!   over 64 KiB, which the socket sizes per datagram. The metrics' read of
//!   those counters ([`Netlink::vf_counters`]) asks without it: each
//!   IFLA_VF_INFO then carries IFLA_VF_STATS, from the driver's
//!   `ndo_get_vf_stats` (no IFLA_VF_STATS when the driver has none).

use super::link::format_mac;
use super::{LinkCounters, Netlink, NetlinkError};
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac,
    VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfStats, VfVlan, VfVlanInfo, VlanProtocol,
};
use netlink_packet_route::RouteNetlinkMessage;
use std::collections::BTreeMap;
use std::fmt;

/// The VLAN protocol of a VF's port VLAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanProto {
    /// 802.1Q, ethertype 0x8100: the kernel's default.
    Dot1Q,
    /// 802.1ad (QinQ service tag), ethertype 0x88a8.
    Dot1Ad,
}

impl VlanProto {
    pub const fn ethertype(self) -> u16 {
        match self {
            VlanProto::Dot1Q => 0x8100,
            VlanProto::Dot1Ad => 0x88a8,
        }
    }

    pub fn from_ethertype(ethertype: u16) -> Option<VlanProto> {
        match ethertype {
            0x8100 => Some(VlanProto::Dot1Q),
            0x88a8 => Some(VlanProto::Dot1Ad),
            _ => None,
        }
    }

    /// As sriov-cni's `vlanProto` key spells it.
    pub const fn name(self) -> &'static str {
        match self {
            VlanProto::Dot1Q => "802.1q",
            VlanProto::Dot1Ad => "802.1ad",
        }
    }

    /// `802.1q` / `802.1ad`, any case.
    pub fn from_name(name: &str) -> Option<VlanProto> {
        match name.to_lowercase().as_str() {
            "802.1q" => Some(VlanProto::Dot1Q),
            "802.1ad" => Some(VlanProto::Dot1Ad),
            _ => None,
        }
    }
}

/// IFLA_VF_LINK_STATE values (uapi `IFLA_VF_LINK_STATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Follow the PF's uplink.
    Auto,
    /// Always up.
    Enable,
    /// Always down.
    Disable,
    /// A value this build does not name, kept so it can be restored.
    Other(u32),
}

impl LinkState {
    pub fn from_name(name: &str) -> Option<LinkState> {
        match name {
            "auto" => Some(LinkState::Auto),
            "enable" => Some(LinkState::Enable),
            "disable" => Some(LinkState::Disable),
            _ => None,
        }
    }
}

impl From<u32> for LinkState {
    fn from(value: u32) -> Self {
        match value {
            0 => LinkState::Auto,
            1 => LinkState::Enable,
            2 => LinkState::Disable,
            other => LinkState::Other(other),
        }
    }
}

impl From<LinkState> for u32 {
    fn from(state: LinkState) -> u32 {
        match state {
            LinkState::Auto => 0,
            LinkState::Enable => 1,
            LinkState::Disable => 2,
            LinkState::Other(value) => value,
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkState::Auto => f.write_str("auto"),
            LinkState::Enable => f.write_str("enable"),
            LinkState::Disable => f.write_str("disable"),
            LinkState::Other(value) => write!(f, "{value}"),
        }
    }
}

/// One VF's settings as its PF's driver reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfConfig {
    pub vf: u32,
    /// The administrative MAC; all zero when none is set.
    pub mac: [u8; 6],
    pub vlan: u32,
    pub qos: u32,
    pub vlan_proto: VlanProto,
    /// Mbit/s, 0 = no limit.
    pub min_tx_rate: u32,
    pub max_tx_rate: u32,
    pub spoofchk: bool,
    pub trust: bool,
    pub link_state: LinkState,
}

impl VfConfig {
    /// Nothing set: no admin MAC, no VLAN (802.1Q), no rate limit, spoofchk
    /// and trust off, link state auto. Where a parse starts, and what fakes
    /// and tests adjust from.
    pub fn unset(vf: u32) -> VfConfig {
        VfConfig {
            vf,
            mac: [0; 6],
            vlan: 0,
            qos: 0,
            vlan_proto: VlanProto::Dot1Q,
            min_tx_rate: 0,
            max_tx_rate: 0,
            spoofchk: false,
            trust: false,
            link_state: LinkState::Auto,
        }
    }
}

/// What RTM_GETLINK on a PF says about its VFs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfVfs {
    pub index: u32,
    /// None: no IFLA_VFINFO_LIST at all (not an SR-IOV PF in the kernel's
    /// eyes, or a driver without `ndo_get_vf_config`).
    pub vfs: Option<Vec<VfConfig>>,
}

impl PfVfs {
    pub fn vf(&self, vf: u32) -> Option<&VfConfig> {
        self.vfs.as_ref()?.iter().find(|c| c.vf == vf)
    }
}

/// One VF attribute to set through the PF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfSetting {
    Vlan {
        vlan: u32,
        qos: u32,
        proto: VlanProto,
    },
    /// The administrative MAC (all zero clears it on most drivers).
    Mac([u8; 6]),
    /// Mbit/s, 0 = no limit.
    Rate {
        min: u32,
        max: u32,
    },
    SpoofChk(bool),
    Trust(bool),
    LinkState(LinkState),
}

impl VfSetting {
    /// The NAD key(s) this attribute comes from, for messages.
    pub const fn key(&self) -> &'static str {
        match self {
            VfSetting::Vlan { .. } => "vlan",
            VfSetting::Mac(_) => "mac",
            VfSetting::Rate { .. } => "min_tx_rate/max_tx_rate",
            VfSetting::SpoofChk(_) => "spoofchk",
            VfSetting::Trust(_) => "trust",
            VfSetting::LinkState(_) => "link_state",
        }
    }

    /// Does the VF, as reported, already have this setting?
    pub fn holds_in(&self, config: &VfConfig) -> bool {
        *self == self.as_found_in(config)
    }

    /// This same attribute with the value the VF has in `config`: what to
    /// set to undo a change of it.
    pub fn as_found_in(&self, config: &VfConfig) -> VfSetting {
        match self {
            VfSetting::Vlan { .. } => VfSetting::Vlan {
                vlan: config.vlan,
                qos: config.qos,
                proto: config.vlan_proto,
            },
            VfSetting::Mac(_) => VfSetting::Mac(config.mac),
            VfSetting::Rate { .. } => VfSetting::Rate {
                min: config.min_tx_rate,
                max: config.max_tx_rate,
            },
            VfSetting::SpoofChk(_) => VfSetting::SpoofChk(config.spoofchk),
            VfSetting::Trust(_) => VfSetting::Trust(config.trust),
            VfSetting::LinkState(_) => VfSetting::LinkState(config.link_state),
        }
    }

    /// The IFLA_VF_* attribute for VF `vf`.
    fn attribute(&self, vf: u32) -> VfInfo {
        match *self {
            VfSetting::Vlan { vlan, qos, proto } => {
                let protocol = match proto {
                    VlanProto::Dot1Q => VlanProtocol::Ieee8021Q,
                    VlanProto::Dot1Ad => VlanProtocol::Ieee8021Ad,
                };
                VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(vf, vlan, qos, protocol))])
            }
            VfSetting::Mac(mac) => VfInfo::Mac(VfInfoMac::new(vf, &mac)),
            VfSetting::Rate { min, max } => VfInfo::Rate(VfInfoRate::new(vf, min, max)),
            VfSetting::SpoofChk(on) => VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)),
            VfSetting::Trust(on) => VfInfo::Trust(VfInfoTrust::new(vf, on)),
            VfSetting::LinkState(state) => {
                VfInfo::LinkState(VfInfoLinkState::new(vf, u32::from(state).into()))
            }
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// As `ip link set <pf> vf N` words it.
impl fmt::Display for VfSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VfSetting::Vlan { vlan, qos, proto } => {
                write!(f, "vlan {vlan} qos {qos} proto {}", proto.name())
            }
            VfSetting::Mac(mac) => write!(f, "mac {}", format_mac(mac)),
            VfSetting::Rate { min, max } => write!(f, "min_tx_rate {min} max_tx_rate {max}"),
            VfSetting::SpoofChk(on) => write!(f, "spoofchk {}", on_off(*on)),
            VfSetting::Trust(on) => write!(f, "trust {}", on_off(*on)),
            VfSetting::LinkState(state) => write!(f, "link_state {state}"),
        }
    }
}

/// The PF operations the CNI needs. A trait so the logic above it can be
/// tested against a fake that models what a PF's driver does.
pub trait PfOps {
    /// The PF's ifindex and VF table; Ok(None) if there is no link `pf`.
    fn pf_vfs(&mut self, pf: &str) -> Result<Option<PfVfs>, NetlinkError>;
    /// Set one attribute of VF `vf` of the PF with ifindex `pf_index`.
    fn set_vf(&mut self, pf_index: u32, vf: u32, setting: VfSetting) -> Result<(), NetlinkError>;
}

/// RTM_GETLINK for the PF named `pf`, asking for its VF table without the
/// per-VF counters.
pub(crate) fn vf_table_request(pf: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(pf.to_owned()));
    message.attributes.push(LinkAttribute::ExtMask(vec![
        LinkExtentMask::Vf,
        LinkExtentMask::SkipStats,
    ]));
    message
}

/// RTM_GETLINK for the PF named `pf`, asking for its VF table with the
/// per-VF counters (IFLA_VF_STATS).
pub(crate) fn vf_stats_request(pf: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(pf.to_owned()));
    message
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Vf]));
    message
}

/// VF index → counters, from an RTM_NEWLINK answer to [`vf_stats_request`];
/// None without IFLA_VFINFO_LIST (not a PF, or a driver without VF info).
/// A VF without IFLA_VF_STATS (a driver without `ndo_get_vf_stats`) is
/// left out.
pub(crate) fn vf_counters_from(message: &LinkMessage) -> Option<BTreeMap<u32, LinkCounters>> {
    let list = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::VfInfoList(list) => Some(list),
            _ => None,
        })?;
    let mut out = BTreeMap::new();
    for info in list {
        let vf = info.0.iter().find_map(|attribute| match attribute {
            VfInfo::Mac(mac) => Some(mac.vf_id),
            _ => None,
        });
        let stats = info.0.iter().find_map(|attribute| match attribute {
            VfInfo::Stats(stats) => Some(stats),
            _ => None,
        });
        let (Some(vf), Some(stats)) = (vf, stats) else {
            continue;
        };
        let mut counters = LinkCounters::default();
        for stat in stats {
            match stat {
                VfStats::RxBytes(v) => counters.rx_bytes = *v,
                VfStats::RxPackets(v) => counters.rx_packets = *v,
                VfStats::TxBytes(v) => counters.tx_bytes = *v,
                VfStats::TxPackets(v) => counters.tx_packets = *v,
                VfStats::RxDropped(v) => counters.rx_dropped = *v,
                VfStats::TxDropped(v) => counters.tx_dropped = *v,
                _ => {}
            }
        }
        out.insert(vf, counters);
    }
    Some(out)
}

impl Netlink {
    /// The per-VF counters PF `pf`'s driver reports (what `ip -s link show
    /// <pf>` prints under each VF): VF index → counters. Ok(None) if there
    /// is no link `pf` or it has no VF table.
    pub fn vf_counters(
        &mut self,
        pf: &str,
    ) -> Result<Option<BTreeMap<u32, LinkCounters>>, NetlinkError> {
        let op = format!("read the VF counters of {pf}");
        match self.get(&op, RouteNetlinkMessage::GetLink(vf_stats_request(pf))) {
            Ok(answers) => Ok(answers.iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => vf_counters_from(link),
                _ => None,
            })),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// RTM_SETLINK on the PF with ifindex `pf_index` setting one attribute of
/// VF `vf`.
pub(crate) fn set_vf_request(pf_index: u32, vf: u32, setting: VfSetting) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = pf_index;
    message
        .attributes
        .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(vec![
            setting.attribute(vf)
        ])]));
    message
}

/// Decode the VF table of an RTM_NEWLINK answer.
pub(crate) fn pf_vfs_from(message: &LinkMessage) -> PfVfs {
    let vfs = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::VfInfoList(list) => Some(list.iter().filter_map(vf_config).collect()),
            _ => None,
        });
    PfVfs {
        index: message.header.index,
        vfs,
    }
}

/// One IFLA_VF_INFO; None without IFLA_VF_MAC, which names the VF (the
/// kernel always sends it).
fn vf_config(info: &LinkVfInfo) -> Option<VfConfig> {
    let mut config = VfConfig::unset(0);
    let mut named = false;
    let mut rate_seen = false;
    let mut max_only = None;
    let mut vlan_list_seen = false;
    for attribute in &info.0 {
        match attribute {
            VfInfo::Mac(mac) => {
                config.vf = mac.vf_id;
                config.mac.copy_from_slice(&mac.mac[..6]);
                named = true;
            }
            // the legacy attribute, superseded by the list when both come
            VfInfo::Vlan(vlan) if !vlan_list_seen => {
                config.vlan = vlan.vlan_id;
                config.qos = vlan.qos;
            }
            VfInfo::VlanList(list) => {
                for entry in list {
                    if let VfVlan::Info(info) = entry {
                        config.vlan = info.vlan_id;
                        config.qos = info.qos;
                        config.vlan_proto = match info.protocol {
                            VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
                            _ => VlanProto::Dot1Q,
                        };
                        vlan_list_seen = true;
                    }
                }
            }
            VfInfo::Rate(rate) => {
                config.min_tx_rate = rate.min_tx_rate;
                config.max_tx_rate = rate.max_tx_rate;
                rate_seen = true;
            }
            VfInfo::TxRate(rate) => max_only = Some(rate.rate),
            VfInfo::SpoofCheck(check) => config.spoofchk = check.enabled,
            VfInfo::Trust(trust) => config.trust = trust.enabled,
            VfInfo::LinkState(state) => config.link_state = u32::from(state.state).into(),
            _ => {}
        }
    }
    if !rate_seen {
        if let Some(max) = max_only {
            config.max_tx_rate = max;
        }
    }
    named.then_some(config)
}

impl PfOps for Netlink {
    fn pf_vfs(&mut self, pf: &str) -> Result<Option<PfVfs>, NetlinkError> {
        let op = format!("read the VF table of {pf}");
        match self.get(&op, RouteNetlinkMessage::GetLink(vf_table_request(pf))) {
            Ok(answers) => Ok(answers.iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(pf_vfs_from(link)),
                _ => None,
            })),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn set_vf(&mut self, pf_index: u32, vf: u32, setting: VfSetting) -> Result<(), NetlinkError> {
        self.execute(
            &format!("set link #{pf_index} vf {vf} {setting}"),
            RouteNetlinkMessage::SetLink(set_vf_request(pf_index, vf, setting)),
            0,
        )
    }
}

/// The real PF operations, on a netlink socket in the namespace of the
/// thread that first uses it (the host's, in the plugin), opened only then:
/// most ADDs and DELs set nothing through the PF. An open failure is
/// reported by the first operation.
#[derive(Default)]
pub struct HostPf(Option<Netlink>);

impl HostPf {
    fn netlink(&mut self) -> Result<&mut Netlink, NetlinkError> {
        let netlink = match self.0.take() {
            Some(netlink) => netlink,
            None => Netlink::open()?,
        };
        Ok(self.0.insert(netlink))
    }
}

impl PfOps for HostPf {
    fn pf_vfs(&mut self, pf: &str) -> Result<Option<PfVfs>, NetlinkError> {
        self.netlink()?.pf_vfs(pf)
    }

    fn set_vf(&mut self, pf_index: u32, vf: u32, setting: VfSetting) -> Result<(), NetlinkError> {
        self.netlink()?.set_vf(pf_index, vf, setting)
    }
}

#[cfg(test)]
mod tests;
