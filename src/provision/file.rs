//! Reading a node policy file: JSON or YAML, told apart by the extension
//! (`.json`, `.yaml`, `.yml`), else by the content (a document that starts
//! with `{` is JSON). Both become one tree, so the rules are checked once.

use super::error::{PolicyError, PolicyErrors};
use super::policy::NodePolicies;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn detect(path: Option<&Path>, text: &str) -> Format {
        let extension = path
            .and_then(Path::extension)
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Format::Json,
            Some("yaml") | Some("yml") => Format::Yaml,
            _ if text.trim_start().starts_with('{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parse text in the given format.
pub fn parse(text: &str, format: Format) -> Result<NodePolicies, PolicyErrors> {
    // Read into serde_yaml_ng's tree from either format: its mappings refuse
    // a key written twice, where serde_json's would keep the last silently.
    let (name, tree): (&'static str, Result<serde_yaml_ng::Value, String>) = match format {
        Format::Json => (
            "JSON",
            serde_json::from_str(text).map_err(|e| e.to_string()),
        ),
        Format::Yaml => (
            "YAML",
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
        ),
    };
    let syntax = |message: String| PolicyError::Syntax {
        format: name,
        message,
    };
    let tree = tree.map_err(syntax)?;
    let doc: Value = serde_json::to_value(&tree).map_err(|e| syntax(e.to_string()))?;
    NodePolicies::from_value(&doc)
}

/// Read and parse a node policy file.
pub fn load(path: &Path) -> Result<NodePolicies, PolicyErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, Format::detect(Some(path), &text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
    use super::*;
    use crate::provision::policy::{DeviceType, PfTarget};

    fn errors(text: &str, format: Format) -> Vec<String> {
        match parse(text, format) {
            Ok(p) => panic!("expected errors, got {p:?}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_issue_example_parses_in_yaml_and_json() {
        let yaml = r#"
policies:
  - name: e810-fast
    nicSelector: {pfNames: ["ens1f0"], rootDevices: [], vendor: "8086", deviceID: "1592"}
    numVfs: 8
    mtu: 9000
    deviceType: netdevice
  - name: e810-dpdk
    nicSelector: {pfNames: ["ens1f0#6-7"]}
    deviceType: vfio-pci
"#;
        let parsed = parse(yaml, Format::Yaml).unwrap();
        assert_eq!(parsed.policies.len(), 2);
        let fast = &parsed.policies[0];
        assert_eq!(fast.num_vfs, Some(8));
        assert_eq!(fast.mtu, Some(9000));
        assert_eq!(fast.nic_selector.vendor.as_deref(), Some("8086"));
        assert_eq!(fast.nic_selector.device_id.as_deref(), Some("1592"));
        let dpdk = &parsed.policies[1];
        assert_eq!(dpdk.device_type, DeviceType::VfioPci);
        assert_eq!(dpdk.num_vfs, None);
        let entry = &dpdk.nic_selector.pf_names[0];
        assert_eq!(entry.target, PfTarget::Name("ens1f0".into()));
        let vfs = entry.vfs.as_ref().unwrap();
        assert!(!vfs.contains(5) && vfs.contains(6) && vfs.contains(7) && !vfs.contains(8));

        let json = r#"{"policies": [{"name": "p", "nicSelector": {"rootDevices": ["0000:3B:00.0"]}, "numVfs": 2}]}"#;
        let parsed = parse(json, Format::detect(None, json)).unwrap();
        assert_eq!(
            parsed.policies[0].nic_selector.root_devices[0].target,
            PfTarget::Address("0000:3b:00.0".parse().unwrap())
        );
        assert_eq!(parsed.policies[0].device_type, DeviceType::Netdevice);
    }

    #[test]
    fn format_follows_the_extension_then_the_content() {
        assert_eq!(
            Format::detect(Some(Path::new("a.json")), "x: 1"),
            Format::Json
        );
        assert_eq!(Format::detect(Some(Path::new("a.YML")), "{}"), Format::Yaml);
        assert_eq!(
            Format::detect(Some(Path::new("policy")), "  {\"a\":1}"),
            Format::Json
        );
        assert_eq!(Format::detect(None, "policies: []"), Format::Yaml);
    }

    #[test]
    fn unknown_and_operator_only_keys_name_the_policy_and_key() {
        let yaml = r#"
policies:
  - name: typo
    nicSelector: {pfNames: [eth9], pfName: [eth9]}
    numVf: 4
  - name: pasted
    resourceName: intelnics
    nicSelector: {pfNames: [eth9]}
    numVfs: 4
"#;
        let errors = errors(yaml, Format::Yaml);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("policy \"typo\": numVf: unknown key")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("policy \"typo\": nicSelector.pfName: unknown key")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(
                |e| e.starts_with("policy \"pasted\": resourceName: not supported")
                    && e.contains("config.json")
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn bad_values_name_the_policy_and_key() {
        let yaml = r#"
policies:
  - name: bad
    nicSelector: {pfNames: ["eth9#7-6"], rootDevices: ["3b:00.0"], vendor: 8086}
    numVfs: -1
    mtu: 10
    deviceType: dpdk
  - nicSelector: {pfNames: [eth9]}
  - name: range
    nicSelector: {pfNames: ["eth9#2-9"]}
    numVfs: 8
"#;
        let errors = errors(yaml, Format::Yaml);
        let has = |prefix: &str| errors.iter().any(|e| e.starts_with(prefix));
        assert!(
            has("policy \"bad\": nicSelector.pfNames[0]: \"eth9#7-6\""),
            "{errors:?}"
        );
        assert!(
            has("policy \"bad\": nicSelector.rootDevices[0]"),
            "{errors:?}"
        );
        assert!(
            has("policy \"bad\": nicSelector.vendor: expected a quoted string"),
            "{errors:?}"
        );
        assert!(has("policy \"bad\": numVfs: -1"), "{errors:?}");
        assert!(has("policy \"bad\": mtu: 10"), "{errors:?}");
        assert!(has("policy \"bad\": deviceType: \"dpdk\""), "{errors:?}");
        assert!(has("policies[1]: name: missing"), "{errors:?}");
        assert!(
            has("policy \"range\": nicSelector.pfNames: eth9#2-9: VF 9"),
            "{errors:?}"
        );
    }

    #[test]
    fn names_are_unique_and_selectors_not_empty() {
        let yaml = r#"
policies:
  - name: a
    nicSelector: {pfNames: [eth9]}
  - name: a
    nicSelector: {pfNames: [eth8]}
  - name: empty
    nicSelector: {}
"#;
        let errors = errors(yaml, Format::Yaml);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("policies[1]: name: \"a\""),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("policy \"empty\": nicSelector: empty"),
            "{errors:?}"
        );
    }

    #[test]
    fn garbage_is_a_syntax_or_document_error() {
        assert!(errors("policies: [", Format::Yaml)[0].starts_with("node policy is not valid YAML"));
        assert!(
            errors("{\"policies\": ", Format::Json)[0].starts_with("node policy is not valid JSON")
        );
        let e = errors("- just\n- a list\n", Format::Yaml);
        assert!(e[0].contains("(document)"), "{e:?}");
        let e = errors("policy: []\n", Format::Yaml);
        assert!(
            e[0].starts_with("node policy: policy: unknown key"),
            "{e:?}"
        );
        let e = errors("policies: [3]\n", Format::Yaml);
        assert!(
            e[0].starts_with("policies[0]: (policy): expected a mapping"),
            "{e:?}"
        );
    }

    #[test]
    fn an_empty_file_has_no_policies() {
        assert!(parse("policies: []\n", Format::Yaml)
            .unwrap()
            .policies
            .is_empty());
        assert!(parse("policies:\n", Format::Yaml)
            .unwrap()
            .policies
            .is_empty());
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let e = load(Path::new("/nonexistent/policy.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/policy.yaml"), "{e}");
    }
}

#[cfg(test)]
mod duplicate_keys {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn a_key_written_twice_is_refused_not_silently_overwritten() {
        let yaml = "policies:\n  - name: a\n    nicSelector: {pfNames: [eth9]}\n    numVfs: 2\n    numVfs: 4\n";
        let e = parse(yaml, Format::Yaml).unwrap_err().to_string();
        assert!(e.contains("numVfs"), "{e}");
        let json =
            r#"{"policies": [{"name": "a", "name": "b", "nicSelector": {"pfNames": ["eth9"]}}]}"#;
        let e = parse(json, Format::Json).unwrap_err().to_string();
        assert!(
            e.starts_with("node policy is not valid JSON") && e.contains("name"),
            "{e}"
        );
        let e = parse(
            "policies:\n  - name: a\n    nicSelector: {1: x}\n",
            Format::Yaml,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("policy \"a\": nicSelector.1: unknown key"),
            "{e}"
        );
    }
}
