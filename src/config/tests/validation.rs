//! Refused configs: every error names the resource (index and name) and the key.

use super::*;

fn resource_of(err: &ConfigError) -> (usize, Option<String>) {
    let at = err.resource().expect("error should name a resource");
    (at.index, at.name.clone())
}

#[test]
fn not_json_reports_line_and_column() {
    let err = load_err("{\"resourceList\": [\n  {\"resourceName\": \"a\",}\n]}");
    match err {
        ConfigError::Syntax { line, .. } => assert_eq!(line, 2),
        other => panic!("wrong error: {other}"),
    }
}

#[test]
fn no_resources_is_an_error_as_upstream_exits() {
    assert!(matches!(
        load_err(r#"{"resourceList": []}"#),
        ConfigError::NoResources
    ));
    assert!(matches!(load_err(r#"{}"#), ConfigError::NoResources));
    assert!(matches!(
        load_err(r#"{"resourceList": null}"#),
        ConfigError::NoResources
    ));
}

#[test]
fn wrong_document_shape_is_named() {
    let err = load_err(r#"[1, 2]"#);
    assert!(matches!(err, ConfigError::TopLevel { .. }), "{err}");
    let err = load_err(r#"{"resourceList": {"resourceName": "a"}}"#);
    assert!(
        err.to_string()
            .contains("`resourceList` must be a list of resource objects"),
        "{err}"
    );
    let err = load_err(r#"{"resourceList": [{"resourceName": "a", "selectors": {}}, 7]}"#);
    assert!(
        err.to_string()
            .contains("`resourceList[1]` must be an object"),
        "{err}"
    );
}

#[test]
fn missing_name_is_named() {
    let err = load_err(r#"{"resourceList": [{"selectors": {"drivers": ["iavf"]}}]}"#);
    assert!(matches!(err, ConfigError::Missing { .. }));
    assert_eq!(resource_of(&err), (0, None));
    assert!(
        err.to_string()
            .contains("resource 0 (no resourceName): `resourceName` is required"),
        "{err}"
    );
}

#[test]
fn invalid_name_characters_are_fatal() {
    for bad in ["intel sriov", "intel.sriov", "intel/sriov", ""] {
        let text =
            format!(r#"{{"resourceList": [{{"resourceName": {bad:?}, "selectors": {{}}}}]}}"#);
        let err = load_err(&text);
        assert!(
            matches!(err, ConfigError::InvalidName { .. }),
            "{bad}: {err}"
        );
        assert_eq!(resource_of(&err).0, 0);
        assert!(err.to_string().contains("`resourceName`"), "{err}");
    }
}

#[test]
fn hyphens_are_accepted_in_names_like_upstream() {
    let loaded = load_ok(
        r#"{"resourceList": [{"resourceName": "sriov-net-a", "selectors": {"drivers": ["iavf"]}}]}"#,
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn names_the_kubelet_refuses_only_warn() {
    let long = "a".repeat(64);
    let text = format!(
        r#"{{"resourceList": [{{"resourceName": "_lead", "selectors": {{"drivers": ["iavf"]}}}},
            {{"resourceName": "{long}", "selectors": {{"drivers": ["iavf"]}}}},
            {{"resourceName": "ok", "resourcePrefix": "Example.COM", "selectors": {{"drivers": ["iavf"]}}}}]}}"#
    );
    let loaded = load_ok(&text);
    assert_eq!(loaded.config.resources.len(), 3);
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("resource 0 (\"_lead\")"));
    assert!(loaded.warnings[0].contains("start or end with '_' or '-'"));
    assert!(loaded.warnings[1].contains("longer than 63 characters (64 here)"));
    assert!(loaded.warnings[2].contains("\"Example.COM\" is not a lower-case DNS name"));
}

#[test]
fn duplicate_prefix_and_name_is_fatal_naming_both_resources() {
    let text = r#"{"resourceList": [
      {"resourceName": "net", "selectors": {"drivers": ["iavf"]}},
      {"resourceName": "net", "resourcePrefix": "other.io", "selectors": {"drivers": ["iavf"]}},
      {"resourceName": "net", "resourcePrefix": "intel.com", "selectors": {"drivers": ["vfio-pci"]}}]}"#;
    let err = load_err(text);
    match &err {
        ConfigError::DuplicateName {
            at,
            full_name,
            first,
        } => {
            assert_eq!(at.index, 2);
            assert_eq!(full_name, "intel.com/net");
            assert_eq!(first.index, 0);
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains(
        "resource 2 (\"net\"): resource \"intel.com/net\" is already defined by resource 0"
    ));
}

#[test]
fn is_rdma_with_vdpa_type_is_fatal_naming_the_selector() {
    let err = load_err(&one_resource(
        r#"[{"drivers": ["iavf"]}, {"isRdma": true, "vdpaType": "vhost"}]"#,
    ));
    assert!(matches!(err, ConfigError::RdmaWithVdpa { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("resource 0 (\"pool_a\"): `selectors[1]`: isRdma and vdpaType"),
        "{msg}"
    );
}

#[test]
fn unknown_device_type_is_an_error() {
    let text =
        r#"{"resourceList": [{"resourceName": "a", "deviceType": "NetDevice", "selectors": {}}]}"#;
    let err = load_err(text);
    assert!(matches!(err, ConfigError::UnknownDeviceType { .. }));
    assert!(
        err.to_string()
            .contains("resource 0 (\"a\"): `deviceType` \"NetDevice\" is unknown"),
        "{err}"
    );
}

#[test]
fn bad_vdpa_type_is_an_error() {
    let err = load_err(&one_resource(r#"{"vdpaType": "vdpa"}"#));
    let msg = err.to_string();
    assert!(
        msg.contains("`selectors.vdpaType` value \"vdpa\": use \"vhost\" or \"virtio\""),
        "{msg}"
    );
}

#[test]
fn bad_allocation_policy_is_an_error() {
    let text = r#"{"resourceList": [{"resourceName": "a", "allocationPolicy": "packed", "selectors": {}}]}"#;
    let err = load_err(text);
    assert!(
        err.to_string()
            .contains("`allocationPolicy` value \"packed\""),
        "{err}"
    );
}

#[test]
fn bad_allocation_api_is_an_error() {
    let text =
        r#"{"resourceList": [{"resourceName": "a", "allocationApi": "DRA", "selectors": {}}]}"#;
    let err = load_err(text);
    assert!(
        err.to_string()
            .contains("`allocationApi` value \"DRA\": use \"devicePlugin\" or \"dra\""),
        "{err}"
    );
}

#[test]
fn missing_null_or_empty_selectors_are_errors() {
    let err = load_err(r#"{"resourceList": [{"resourceName": "a"}]}"#);
    assert!(
        err.to_string()
            .contains("resource 0 (\"a\"): `selectors` is required"),
        "{err}"
    );
    let err = load_err(r#"{"resourceList": [{"resourceName": "a", "selectors": null}]}"#);
    assert!(matches!(err, ConfigError::Missing { .. }));
    let err = load_err(r#"{"resourceList": [{"resourceName": "a", "selectors": []}]}"#);
    assert!(matches!(err, ConfigError::EmptySelectorList { .. }));
    let err = load_err(r#"{"resourceList": [{"resourceName": "a", "selectors": [{}, null]}]}"#);
    assert!(
        err.to_string()
            .contains("`selectors[1]` must be a selector object, found null"),
        "{err}"
    );
    let err = load_err(r#"{"resourceList": [{"resourceName": "a", "selectors": "vendors"}]}"#);
    assert!(
        err.to_string()
            .contains("`selectors` must be a selector object or a list"),
        "{err}"
    );
}

#[test]
fn wrong_json_types_name_the_key() {
    let cases = [
        (
            r#"{"vendors": "8086"}"#,
            "`selectors.vendors` must be a list of strings",
        ),
        (
            r#"{"devices": ["154c", 1889]}"#,
            "`selectors.devices[1]` must be a string, found the number 1889 (put it in quotes)",
        ),
        (
            r#"{"isRdma": "true"}"#,
            "`selectors.isRdma` must be true or false, found the string \"true\"",
        ),
        (
            r#"{"drivers": [null]}"#,
            "`selectors.drivers[0]` must be a string, found null",
        ),
    ];
    for (selectors, want) in cases {
        let err = load_err(&one_resource(selectors));
        assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
        assert!(err.to_string().contains(want), "{selectors}: {err}");
        assert_eq!(resource_of(&err), (0, Some("pool_a".to_string())));
    }
    let text = r#"{"resourceList": [{"resourceName": 5, "selectors": {}}]}"#;
    assert!(load_err(text)
        .to_string()
        .contains("`resourceName` must be a string"));
    let text =
        r#"{"resourceList": [{"resourceName": "a", "excludeTopology": "yes", "selectors": {}}]}"#;
    assert!(load_err(text)
        .to_string()
        .contains("`excludeTopology` must be true or false"));
}

/// Values upstream would keep but that can never equal what sysfs reports.
#[test]
fn values_that_could_never_match_are_refused_with_a_fix() {
    let cases = [
        (
            r#"{"vendors": ["15B3"]}"#,
            "`selectors.vendors[0]` value \"15B3\": write it in lower case (\"15b3\")",
        ),
        (
            r#"{"vendors": ["0x8086"]}"#,
            "without \"0x\", e.g. \"8086\"",
        ),
        (r#"{"devices": ["154"]}"#, "must be exactly 4 hex digits"),
        (
            r#"{"drivers": [""]}"#,
            "`selectors.drivers[0]` value \"\": is empty",
        ),
        (r#"{"pciAddresses": ["03:02.0"]}"#, "\"0000:03:02.0\""),
        (
            r#"{"pciAddresses": ["0000:3B:02.0"]}"#,
            "lower case (\"0000:3b:02.0\")",
        ),
        (
            r#"{"pciAddresses": ["0000:03:22.0"]}"#,
            "must be a full PCI address",
        ),
        (
            r#"{"acpiIndexes": ["0101"]}"#,
            "drop the leading zeros (\"101\")",
        ),
        (r#"{"acpiIndexes": ["x"]}"#, "must be a decimal number"),
        (
            r#"{"linkTypes": ["eth"]}"#,
            "the link type is called \"ether\"",
        ),
        (
            r#"{"linkTypes": ["IB"]}"#,
            "the link type is called \"infiniband\"",
        ),
        (r#"{"linkTypes": ["Ether"]}"#, "lower case"),
        (r#"{"pKeys": ["8001"]}"#, "in hex with \"0x\""),
        (r#"{"pKeys": ["0x18001"]}"#, "1 to 4 hex digits"),
        (r#"{"ddpProfiles": [""]}"#, "is empty"),
    ];
    for (selectors, want) in cases {
        let err = load_err(&one_resource(selectors));
        assert!(matches!(err, ConfigError::InvalidValue { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("resource 0 (\"pool_a\"): `selectors."),
            "{msg}"
        );
        assert!(msg.contains(want), "{selectors}: {msg}");
    }
}

#[test]
fn additional_info_keys_must_be_star_or_a_pci_address() {
    let text = r#"{"resourceList": [{"resourceName": "a", "selectors": {},
      "additionalInfo": {"*": {"k": "v"}, "0000:86:00.0": {"k": "w"}, "ens1f0": {"k": "x"}}}]}"#;
    let err = load_err(text);
    assert!(
        err.to_string()
            .contains("`additionalInfo` value key \"ens1f0\""),
        "{err}"
    );
    let text = r#"{"resourceList": [{"resourceName": "a", "selectors": {}, "additionalInfo": {"*": {"k": 1}}}]}"#;
    assert!(load_err(text).to_string().contains("must be a string"));
}

#[test]
fn ddp_profiles_are_refused_because_they_cannot_be_read() {
    let err = load_err(
        r#"{"resourceList": [
            {"resourceName": "ok", "selectors": {"ddpProfiles": []}},
            {"resourceName": "gtp", "selectors": [{"vendors": ["8086"]}, {"ddpProfiles": ["GTPv1-C/U IPv4/IPv6 payload"]}]}
        ]}"#,
    );
    assert!(matches!(err, ConfigError::Unsupported { .. }), "{err}");
    assert_eq!(resource_of(&err), (1, Some("gtp".into())));
    let msg = err.to_string();
    assert!(
        msg.starts_with("resource 1 (\"gtp\"): `selectors[1].ddpProfiles` is not supported"),
        "{msg}"
    );
    assert!(
        msg.contains("DDP profile") && msg.contains("instead"),
        "{msg}"
    );
    // an empty list is no filter, as upstream: the first resource loaded
}

#[test]
fn aux_net_device_needs_aux_types_as_upstream() {
    let text = r#"{"resourceList": [{"resourceName": "sf", "deviceType": "auxNetDevice",
      "selectors": [{"auxTypes": ["sf"]}, {"pfNames": ["p0"]}]}]}"#;
    let err = load_err(text);
    assert!(
        err.to_string()
            .contains("resource 0 (\"sf\"): `selectors[1].auxTypes` is required"),
        "{err}"
    );
}

#[test]
fn reading_stops_at_the_first_bad_resource() {
    let text = r#"{"resourceList": [
      {"resourceName": "good", "selectors": {"drivers": ["iavf"]}},
      {"resourceName": "bad1", "selectors": {"vendors": ["80861"]}},
      {"resourceName": "bad 2", "selectors": {}}]}"#;
    let err = load_err(text);
    assert_eq!(resource_of(&err), (1, Some("bad1".to_string())));
}
