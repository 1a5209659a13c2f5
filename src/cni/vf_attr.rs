//! The VF attributes set through the PF, each described once: its config
//! keys, how its value is validated, its place in the order ADD applies
//! them, what of the VF's state is saved before it changes (in sriov-cni's
//! `OrigVfState` fields) and what puts it back. Adding one is a variant
//! here: every `match` below then asks for its part.

use super::config::NetConf;
use super::error::{CniError, CODE_INVALID_CONFIG};
use super::state::{Cache, OrigVfState};
use crate::netlink::{format_mac, parse_mac, LinkState, VfConfig, VfSetting, VlanProto};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfAttr {
    Vlan,
    /// The administrative MAC (the MAC chosen for the VF, see
    /// `NetConf::requested_mac`).
    Mac,
    Rate,
    SpoofChk,
    Trust,
    LinkState,
}

fn invalid(msg: String) -> CniError {
    CniError::new(CODE_INVALID_CONFIG, msg)
}

fn non_negative_u32(key: &str, value: i64) -> Result<u32, CniError> {
    u32::try_from(value).map_err(|_| invalid(format!("{key} {value} is out of range")))
}

/// `on` or `off`, nothing else: sriov-cni takes any other value as off, so
/// a typo would silently turn spoof checking off.
fn on_off(key: &str, value: &str) -> Result<bool, CniError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(invalid(format!("{key} {other:?} is not on or off"))),
    }
}

fn link_state(value: &str) -> Result<LinkState, CniError> {
    LinkState::from_name(value).ok_or_else(|| {
        invalid(format!(
            "link_state {value:?} is not auto, enable or disable"
        ))
    })
}

impl VfAttr {
    /// ADD applies them in sriov-cni's order; restoring runs the other way.
    pub const ALL: [VfAttr; 6] = [
        VfAttr::Vlan,
        VfAttr::Mac,
        VfAttr::Rate,
        VfAttr::SpoofChk,
        VfAttr::Trust,
        VfAttr::LinkState,
    ];

    /// The config keys it comes from.
    pub const fn keys(self) -> &'static [&'static str] {
        match self {
            VfAttr::Vlan => &["vlan", "vlanQoS", "vlanProto"],
            VfAttr::Mac => &["mac"],
            VfAttr::Rate => &["min_tx_rate", "max_tx_rate"],
            VfAttr::SpoofChk => &["spoofchk"],
            VfAttr::Trust => &["trust"],
            VfAttr::LinkState => &["link_state"],
        }
    }

    /// Check what `conf` says of it, naming the key (code 7); nothing to
    /// check when unset.
    pub fn validate(self, conf: &NetConf) -> Result<(), CniError> {
        match self {
            VfAttr::Vlan => validate_vlan(conf),
            // with CNI_ARGS and runtimeConfig, by NetConf::requested_mac
            VfAttr::Mac => Ok(()),
            VfAttr::Rate => validate_rate(conf),
            VfAttr::SpoofChk => conf
                .spoofchk
                .as_deref()
                .map_or(Ok(()), |v| on_off("spoofchk", v).map(drop)),
            VfAttr::Trust => conf
                .trust
                .as_deref()
                .map_or(Ok(()), |v| on_off("trust", v).map(drop)),
            VfAttr::LinkState => conf
                .link_state
                .as_deref()
                .map_or(Ok(()), |v| link_state(v).map(drop)),
        }
    }

    /// The setting `conf` asks for, if any; `mac` is the MAC chosen by
    /// precedence (`mac` < CNI_ARGS < runtimeConfig).
    pub fn requested(
        self,
        conf: &NetConf,
        mac: Option<[u8; 6]>,
    ) -> Result<Option<VfSetting>, CniError> {
        Ok(match self {
            VfAttr::Vlan => match conf.vlan {
                None => None,
                Some(vlan) => {
                    let proto = match conf.vlan_proto.as_deref() {
                        None => VlanProto::Dot1Q,
                        Some(name) => VlanProto::from_name(name).ok_or_else(|| {
                            invalid(format!("vlanProto {name:?} is not 802.1q or 802.1ad"))
                        })?,
                    };
                    Some(VfSetting::Vlan {
                        vlan: non_negative_u32("vlan", vlan)?,
                        qos: non_negative_u32("vlanQoS", conf.vlan_qos.unwrap_or(0))?,
                        proto,
                    })
                }
            },
            VfAttr::Mac => mac.map(VfSetting::Mac),
            // as sriov-cni: either key sends both, the missing one as 0 (no limit)
            VfAttr::Rate if conf.min_tx_rate.is_some() || conf.max_tx_rate.is_some() => {
                Some(VfSetting::Rate {
                    min: non_negative_u32("min_tx_rate", conf.min_tx_rate.unwrap_or(0))?,
                    max: non_negative_u32("max_tx_rate", conf.max_tx_rate.unwrap_or(0))?,
                })
            }
            VfAttr::Rate => None,
            VfAttr::SpoofChk => conf
                .spoofchk
                .as_deref()
                .map(|v| on_off("spoofchk", v).map(VfSetting::SpoofChk))
                .transpose()?,
            VfAttr::Trust => conf
                .trust
                .as_deref()
                .map(|v| on_off("trust", v).map(VfSetting::Trust))
                .transpose()?,
            VfAttr::LinkState => conf
                .link_state
                .as_deref()
                .map(|v| link_state(v).map(VfSetting::LinkState))
                .transpose()?,
        })
    }

    /// Keep the VF's value before ADD in sriov-cni's `OrigVfState` fields.
    pub fn save(self, orig: &mut OrigVfState, found: &VfConfig) {
        match self {
            VfAttr::Vlan => {
                orig.vlan = i64::from(found.vlan);
                orig.vlan_qos = i64::from(found.qos);
                orig.vlan_proto = found.vlan_proto.ethertype();
            }
            VfAttr::Mac => orig.admin_mac = format_mac(&found.mac),
            VfAttr::Rate => {
                orig.min_tx_rate = i64::from(found.min_tx_rate);
                orig.max_tx_rate = i64::from(found.max_tx_rate);
            }
            VfAttr::SpoofChk => orig.spoofchk = found.spoofchk,
            VfAttr::Trust => orig.trust = found.trust,
            VfAttr::LinkState => orig.link_state = u32::from(found.link_state),
        }
    }

    /// What puts it back from `cache` (ours or sriov-cni's): its original
    /// value when the cached config set it; the admin MAC whenever the
    /// cache holds one (as sriov-cni).
    pub fn restore(self, cache: &Cache) -> Option<VfSetting> {
        let (conf, orig) = (&cache.conf, &cache.orig);
        let number = |key: &str, value: i64| match u32::try_from(value) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(
                    key,
                    value,
                    "the cache's original value is out of range; not restored"
                );
                None
            }
        };
        match self {
            VfAttr::Vlan => {
                conf.vlan?;
                // a cache from before vlanProto existed has none: 802.1q, as sriov-cni
                let proto = VlanProto::from_ethertype(orig.vlan_proto).unwrap_or(VlanProto::Dot1Q);
                let (vlan, qos) = (number("Vlan", orig.vlan), number("VlanQoS", orig.vlan_qos));
                Some(VfSetting::Vlan {
                    vlan: vlan?,
                    qos: qos?,
                    proto,
                })
            }
            VfAttr::Mac => parse_mac(&orig.admin_mac).map(VfSetting::Mac),
            VfAttr::Rate => {
                if conf.min_tx_rate.is_none() && conf.max_tx_rate.is_none() {
                    return None;
                }
                let min = number("MinTxRate", orig.min_tx_rate);
                let max = number("MaxTxRate", orig.max_tx_rate);
                Some(VfSetting::Rate {
                    min: min?,
                    max: max?,
                })
            }
            VfAttr::SpoofChk => conf
                .spoofchk
                .as_ref()
                .map(|_| VfSetting::SpoofChk(orig.spoofchk)),
            VfAttr::Trust => conf.trust.as_ref().map(|_| VfSetting::Trust(orig.trust)),
            VfAttr::LinkState => conf
                .link_state
                .as_ref()
                .map(|_| VfSetting::LinkState(orig.link_state.into())),
        }
    }
}

fn validate_vlan(conf: &NetConf) -> Result<(), CniError> {
    if let Some(vlan) = conf.vlan {
        if !(0..=4094).contains(&vlan) {
            return Err(invalid(format!("vlan {vlan} is out of range 0-4094")));
        }
    }
    if let Some(qos) = conf.vlan_qos {
        if conf.vlan.is_none() {
            return Err(invalid("vlanQoS is set without vlan".into()));
        }
        if !(0..=7).contains(&qos) {
            return Err(invalid(format!("vlanQoS {qos} is out of range 0-7")));
        }
        if qos != 0 && conf.vlan == Some(0) {
            return Err(invalid("vlanQoS needs a non-zero vlan".into()));
        }
    }
    if let Some(proto) = &conf.vlan_proto {
        if conf.vlan.is_none() {
            return Err(invalid("vlanProto is set without vlan".into()));
        }
        match VlanProto::from_name(proto) {
            Some(VlanProto::Dot1Q) => {}
            Some(VlanProto::Dot1Ad) if conf.vlan != Some(0) => {}
            Some(VlanProto::Dot1Ad) => {
                return Err(invalid("vlanProto 802.1ad needs a non-zero vlan".into()))
            }
            None => {
                return Err(invalid(format!(
                    "vlanProto {proto:?} is not 802.1q or 802.1ad"
                )))
            }
        }
    }
    Ok(())
}

fn validate_rate(conf: &NetConf) -> Result<(), CniError> {
    for (key, rate) in [
        ("min_tx_rate", conf.min_tx_rate),
        ("max_tx_rate", conf.max_tx_rate),
    ] {
        if rate.is_some_and(|r| r < 0) {
            return Err(invalid(format!("{key} must not be negative")));
        }
        if rate.is_some_and(|r| r > i64::from(u32::MAX)) {
            return Err(invalid(format!(
                "{key} is in Mbit/s and must be at most {}",
                u32::MAX
            )));
        }
    }
    if let (Some(min), Some(max)) = (conf.min_tx_rate, conf.max_tx_rate) {
        if max != 0 && min > max {
            return Err(invalid(format!(
                "min_tx_rate {min} exceeds max_tx_rate {max}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each attribute's keys are ones the config knows, and `ALL` lists
    /// every attribute once (a new variant must be placed in the order).
    #[test]
    fn every_attribute_is_in_the_order_once_with_config_keys() {
        for attr in VfAttr::ALL {
            // exhaustive: a new variant fails to compile here until placed
            let placed = match attr {
                VfAttr::Vlan
                | VfAttr::Mac
                | VfAttr::Rate
                | VfAttr::SpoofChk
                | VfAttr::Trust
                | VfAttr::LinkState => VfAttr::ALL.iter().filter(|a| **a == attr).count(),
            };
            assert_eq!(placed, 1, "{attr:?}");
            // the config keeps each key (an unknown key would be dropped)
            for key in attr.keys() {
                let value = match *key {
                    "vlanProto" | "mac" | "spoofchk" | "trust" | "link_state" => {
                        serde_json::json!("x")
                    }
                    _ => serde_json::json!(1),
                };
                let conf =
                    NetConf::parse(serde_json::json!({ *key: value }).to_string().as_bytes())
                        .unwrap();
                let back = serde_json::to_value(&conf).unwrap();
                assert_eq!(back.get(*key), Some(&value), "{key}");
            }
        }
    }

    #[test]
    fn spoofchk_and_trust_take_on_or_off_only() {
        for key in ["spoofchk", "trust"] {
            for good in ["on", "off"] {
                let conf = NetConf::parse(format!(r#"{{"{key}":"{good}"}}"#).as_bytes()).unwrap();
                conf.validate().unwrap();
            }
            for bad in ["maybe", "On", "true", "", "1"] {
                let conf = NetConf::parse(format!(r#"{{"{key}":"{bad}"}}"#).as_bytes()).unwrap();
                let error = conf.validate().unwrap_err();
                assert_eq!(error.code, CODE_INVALID_CONFIG);
                assert!(
                    error.msg.contains(key) && error.msg.contains("on or off"),
                    "{}",
                    error.msg
                );
            }
        }
    }
}
