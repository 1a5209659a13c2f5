//! The network configuration on stdin: sriov-cni's NetConf keys, plus `mtu`.
//!
//! Decoding names the offending key (serde_path_to_error), and every value
//! is validated before the VF is touched, so a bad NAD fails with code 7
//! and a message a person can act on.

use super::error::{CniError, CODE_DECODE, CODE_INVALID_CONFIG};
use super::version::CniVersion;
use crate::netlink::parse_mac;
use crate::pci::PciAddress;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(rename = "deviceID", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(
        rename = "CNIDeviceInfoFile",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_info_file: Option<String>,
    /// Everything else the runtime passes (ips, ...), kept for the cache.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    #[serde(rename = "deviceID", default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Multus also injects the device as `pciBusID`; upstream ignores it,
    /// we accept it when `deviceID` is missing.
    #[serde(rename = "pciBusID", default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<i64>,
    #[serde(rename = "vlanQoS", default, skip_serializing_if = "Option::is_none")]
    pub vlan_qos: Option<i64>,
    #[serde(rename = "vlanProto", default, skip_serializing_if = "Option::is_none")]
    pub vlan_proto: Option<String>,
    /// sriov-cni's cache spells it `MAC` (Go matches keys case-insensitively).
    #[serde(alias = "MAC", default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spoofchk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_rate: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tx_rate: Option<i64>,
    /// Ours: the VF's MTU inside the pod (upstream ignores `mtu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(rename = "logLevel", default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(rename = "logFile", default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Value>,
    #[serde(
        rename = "runtimeConfig",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_config: Option<RuntimeConfig>,
    #[serde(
        rename = "prevResult",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub prev_result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// GC's list of attachments to keep (`cni.dev/valid-attachments`, or
    /// `cni.dev/attachments` as the 1.1.0 tag text named it).
    #[serde(rename = "cni.dev/valid-attachments", default, skip_serializing)]
    pub valid_attachments: Option<Vec<Attachment>>,
    #[serde(rename = "cni.dev/attachments", default, skip_serializing)]
    pub attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

fn invalid(msg: String) -> CniError {
    CniError::new(CODE_INVALID_CONFIG, msg)
}

impl NetConf {
    /// Decode stdin: malformed JSON is code 6, a wrong type for a known key
    /// is code 7 naming the key.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::new(CODE_DECODE, format!("decoding the network config: {e}")))?;
        if !value.is_object() {
            return Err(CniError::new(
                CODE_DECODE,
                "the network config must be a JSON object",
            ));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            invalid(format!(
                "network config key {:?}: {}",
                e.path().to_string(),
                e.inner()
            ))
        })
    }

    /// The config's `cniVersion`, one of ours (code 1 otherwise).
    pub fn version(&self) -> Result<CniVersion, CniError> {
        CniVersion::require(&self.cni_version)
    }

    /// The IPAM plugin's name, if IPAM is configured.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .and_then(|ipam| ipam.get("type"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The VF's PCI address: `deviceID`, then `runtimeConfig.deviceID`, then `pciBusID`.
    pub fn device(&self) -> Result<PciAddress, CniError> {
        let raw = self
            .device_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .or_else(|| self.runtime_config.as_ref().and_then(|r| r.device_id.as_deref()).filter(|s| !s.is_empty()))
            .or(self.pci_bus_id.as_deref().filter(|s| !s.is_empty()))
            .ok_or_else(|| {
                invalid(
                    "VF pci addr is required: the config has no deviceID. Multus injects it only when the \
                     NetworkAttachmentDefinition has the k8s.v1.cni.cncf.io/resourceName annotation and the pod \
                     requests that resource"
                        .into(),
                )
            })?;
        raw.parse().map_err(|_| {
            invalid(format!(
                "deviceID {raw:?} is not a PCI address such as 0000:3b:02.1"
            ))
        })
    }

    /// The MAC to give the VF: `mac` < CNI_ARGS `MAC=` < `runtimeConfig.mac`.
    pub fn requested_mac(&self, cni_args_mac: Option<&str>) -> Result<Option<[u8; 6]>, CniError> {
        let chosen = self
            .runtime_config
            .as_ref()
            .and_then(|r| r.mac.as_deref())
            .or(cni_args_mac)
            .or(self.mac.as_deref())
            .filter(|m| !m.is_empty());
        match chosen {
            None => Ok(None),
            Some(text) => parse_mac(text)
                .filter(|mac| mac[0] & 1 == 0)
                .map(Some)
                .ok_or_else(|| {
                    invalid(format!(
                        "mac {text:?} is not a unicast MAC address such as 02:00:00:aa:bb:cc"
                    ))
                }),
        }
    }

    /// Checks that need no kernel: every key's value, before anything changes.
    pub fn validate(&self) -> Result<(), CniError> {
        if let Some(mtu) = self.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(invalid(format!("mtu {mtu} is out of range 68-65535")));
            }
        }
        for attr in super::vf_attr::VfAttr::ALL {
            attr.validate(self)?;
        }
        if self.ipam.is_some() && self.ipam_type().is_none() {
            return Err(invalid("ipam is set but ipam.type is missing".into()));
        }
        if let Some(ipam) = self.ipam_type() {
            if ipam.contains('/') || ipam.starts_with('.') {
                return Err(invalid(format!("ipam.type {ipam:?} is not a plugin name")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_nad_and_multus_injection() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.3.1","name":"sriov-net","type":"sriov","vlan":100,"spoofchk":"off",
                 "deviceID":"0000:3b:01.2","pciBusID":"0000:3b:01.2","ipam":{"type":"host-local","subnet":"10.56.217.0/24"},
                 "unknownKey":true}"#,
        )
        .unwrap();
        assert_eq!(conf.device().unwrap().to_string(), "0000:3b:01.2");
        assert_eq!(conf.ipam_type(), Some("host-local"));
        conf.validate().unwrap();
    }

    #[test]
    fn malformed_json_is_code_6_and_wrong_types_are_code_7_naming_the_key() {
        assert_eq!(
            NetConf::parse(b"{\"cniVersion\":").unwrap_err().code,
            CODE_DECODE
        );
        assert_eq!(NetConf::parse(b"[1,2]").unwrap_err().code, CODE_DECODE);
        let err = NetConf::parse(br#"{"cniVersion":"1.0.0","vlan":"100"}"#).unwrap_err();
        assert_eq!(err.code, CODE_INVALID_CONFIG);
        assert!(err.msg.contains("vlan"), "{}", err.msg);
    }

    #[test]
    fn each_invalid_value_is_rejected_naming_the_key() {
        let cases = [
            (r#"{"vlan":4095}"#, "vlan"),
            (r#"{"vlanQoS":3}"#, "vlanQoS"),
            (r#"{"vlan":0,"vlanQoS":3}"#, "vlanQoS"),
            (r#"{"vlan":5,"vlanProto":"802.1x"}"#, "vlanProto"),
            (r#"{"vlan":0,"vlanProto":"802.1ad"}"#, "vlanProto"),
            (r#"{"link_state":"up"}"#, "link_state"),
            (r#"{"min_tx_rate":100,"max_tx_rate":10}"#, "min_tx_rate"),
            (r#"{"max_tx_rate":-1}"#, "max_tx_rate"),
            (r#"{"max_tx_rate":4294967296}"#, "max_tx_rate"),
            (r#"{"vlan":-1}"#, "vlan"),
            (r#"{"vlan":1,"vlanQoS":8}"#, "vlanQoS"),
            (r#"{"vlanProto":"802.1q"}"#, "vlanProto"),
            (r#"{"mtu":20}"#, "mtu"),
            (r#"{"ipam":{"type":"../evil"}}"#, "ipam.type"),
        ];
        for (json, key) in cases {
            let err = NetConf::parse(json.as_bytes())
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(err.code, CODE_INVALID_CONFIG, "{json}");
            assert!(
                err.msg.contains(key),
                "{json}: {} should name {key}",
                err.msg
            );
        }
    }

    #[test]
    fn mac_precedence_is_key_then_cni_args_then_runtime_config() {
        let conf = NetConf::parse(br#"{"mac":"02:00:00:00:00:01"}"#).unwrap();
        assert_eq!(conf.requested_mac(None).unwrap(), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            conf.requested_mac(Some("02:00:00:00:00:02")).unwrap(),
            Some([2, 0, 0, 0, 0, 2])
        );
        let conf = NetConf::parse(
            br#"{"mac":"02:00:00:00:00:01","runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#,
        )
        .unwrap();
        assert_eq!(
            conf.requested_mac(Some("02:00:00:00:00:02")).unwrap(),
            Some([2, 0, 0, 0, 0, 3])
        );
        let bad = NetConf::parse(br#"{"mac":"01:00:5e:00:00:01"}"#).unwrap();
        assert!(bad.requested_mac(None).unwrap_err().msg.contains("mac"));
    }

    #[test]
    fn missing_device_id_explains_the_usual_cause() {
        let err = NetConf::parse(b"{}").unwrap().device().unwrap_err();
        assert!(err.msg.contains("resourceName"), "{}", err.msg);
        let from_runtime =
            NetConf::parse(br#"{"runtimeConfig":{"deviceID":"0000:3b:01.0"}}"#).unwrap();
        assert_eq!(from_runtime.device().unwrap().to_string(), "0000:3b:01.0");
    }
}
