//! CNI results: one internal shape (1.1.0) and the conversions to what the
//! config's `cniVersion` asks for, matching the Go library's rules.

use super::error::{CniError, CODE_DECODE, CODE_INCOMPATIBLE_VERSION};
use super::version::CniVersion;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    #[serde(rename = "pciID", default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR, e.g. `10.56.217.10/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// The spec's result. Routes and DNS are kept as JSON objects: we apply
/// `dst`/`gw`/`priority` and pass every other attribute through untouched.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "is_empty_object")]
    pub dns: Map<String, Value>,
}

fn is_empty_object(map: &Map<String, Value>) -> bool {
    map.is_empty()
}

impl CniResult {
    /// Parse a result (from IPAM, or a prevResult) of any supported version.
    pub fn parse(value: Value) -> Result<CniResult, CniError> {
        let version = value
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if matches!(version.as_str(), "0.1.0" | "0.2.0") {
            return Err(CniError::new(
                CODE_INCOMPATIBLE_VERSION,
                format!("results of cniVersion {version} (ip4/ip6 form) are not supported"),
            ));
        }
        // `ips[].version` of 0.3.x/0.4.0 is derived again on output; drop it here
        serde_json::from_value(value)
            .map_err(|e| CniError::new(CODE_DECODE, format!("decoding a CNI result: {e}")))
    }

    /// The result as JSON for `version`.
    pub fn to_version(&self, version: CniVersion) -> Value {
        let mut result = self.clone();
        result.cni_version = version.as_str().to_owned();
        let mut json = serde_json::to_value(&result).unwrap_or_else(|_| Value::Object(Map::new()));
        if !version.result_has_interface_details() {
            if let Some(interfaces) = json.get_mut("interfaces").and_then(Value::as_array_mut) {
                for interface in interfaces.iter_mut().filter_map(Value::as_object_mut) {
                    for key in ["mtu", "socketPath", "pciID"] {
                        interface.remove(key);
                    }
                }
            }
        }
        if version.result_has_ip_version() {
            if let Some(ips) = json.get_mut("ips").and_then(Value::as_array_mut) {
                for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                    let v6 = ip
                        .get("address")
                        .and_then(Value::as_str)
                        .is_some_and(|a| a.contains(':'));
                    ip.insert("version".into(), Value::from(if v6 { "6" } else { "4" }));
                }
            }
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult::parse(json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "mac": "02:00:00:aa:bb:cc", "mtu": 1500, "sandbox": "/var/run/netns/x", "pciID": "0000:3b:02.1"}],
            "ips": [{"address": "10.56.217.10/24", "gateway": "10.56.217.1", "interface": 0},
                    {"address": "fd00::10/64", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.56.217.1"}],
            "dns": {"nameservers": ["10.56.217.1"]}
        }))
        .unwrap()
    }

    #[test]
    fn down_conversion_adds_ip_versions_and_drops_1_1_fields() {
        let old = sample().to_version(CniVersion::V0_3_1);
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(
            old["interfaces"][0].get("pciID").is_none()
                && old["interfaces"][0].get("mtu").is_none()
        );
        assert_eq!(old["interfaces"][0]["sandbox"], "/var/run/netns/x");
        assert_eq!(old["routes"][0]["gw"], "10.56.217.1");
    }

    #[test]
    fn newer_versions_keep_everything_and_old_results_parse() {
        let new = sample().to_version(CniVersion::V1_1_0);
        assert_eq!(new["interfaces"][0]["pciID"], "0000:3b:02.1");
        assert!(new["ips"][0].get("version").is_none());
        // a 0.4.0 IPAM result with ips[].version parses into the same shape
        let ipam = CniResult::parse(
            json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.0.2/16"}]}),
        )
        .unwrap();
        assert_eq!(ipam.ips[0].address, "10.1.0.2/16");
        assert_eq!(
            CniResult::parse(json!({"cniVersion": "0.2.0", "ip4": {}}))
                .unwrap_err()
                .code,
            CODE_INCOMPATIBLE_VERSION
        );
    }
}
