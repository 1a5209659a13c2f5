//! The `#` function-range syntax of `pfNames` and `rootDevices`.

use super::*;
use crate::config::{PfEntry, VfRangeError, VfRanges};

#[test]
fn readme_examples_select_exactly_the_listed_indexes() {
    let e = PfEntry::parse("netpf0#0,2-7,9").unwrap();
    assert_eq!(e.pf, "netpf0");
    let picked: Vec<u32> = (0..12).filter(|i| e.selects(Some(*i))).collect();
    assert_eq!(picked, vec![0, 2, 3, 4, 5, 6, 7, 9]);

    let e = PfEntry::parse("0000:86:00.0#0-1,3,4").unwrap();
    assert_eq!(e.pf, "0000:86:00.0");
    let picked: Vec<u32> = (0..8).filter(|i| e.selects(Some(*i))).collect();
    assert_eq!(picked, vec![0, 1, 3, 4]);
}

#[test]
fn no_range_selects_every_function_and_non_functions() {
    let e = PfEntry::parse("ens1f0").unwrap();
    assert!(e.vfs.is_none());
    assert!(e.selects(Some(0)));
    assert!(e.selects(Some(255)));
    assert!(e.selects(None));
}

#[test]
fn a_range_never_selects_a_device_without_an_index() {
    let e = PfEntry::parse("ens1f0#0-255").unwrap();
    assert!(!e.selects(None));
}

#[test]
fn single_index_range_and_leading_zeros_work_like_atoi() {
    let r = VfRanges::parse("5-5,007").unwrap();
    assert!(r.contains(5));
    assert!(r.contains(7));
    assert!(!r.contains(6));
    assert_eq!(r.to_string(), "5,7");
}

#[test]
fn every_malformed_form_is_refused_with_its_reason() {
    let cases: &[(&str, VfRangeError)] = &[
        ("", VfRangeError::Empty),
        ("#0-3", VfRangeError::EmptyTarget),
        ("ens1f0#", VfRangeError::EmptyList),
        ("ens1f0#0#1", VfRangeError::ExtraHash),
        ("ens1f0#1,,2", VfRangeError::EmptyItem { position: 1 }),
        ("ens1f0#1,", VfRangeError::EmptyItem { position: 1 }),
        ("ens1f0#,1", VfRangeError::EmptyItem { position: 0 }),
        ("ens1f0#-3", VfRangeError::BadRange { item: "-3".into() }),
        ("ens1f0#3-", VfRangeError::BadRange { item: "3-".into() }),
        (
            "ens1f0#1-2-3",
            VfRangeError::BadRange {
                item: "1-2-3".into(),
            },
        ),
        ("ens1f0#a", VfRangeError::NotANumber { item: "a".into() }),
        ("ens1f0#+3", VfRangeError::NotANumber { item: "+3".into() }),
        ("ens1f0# 3", VfRangeError::NotANumber { item: " 3".into() }),
        ("ens1f0#0-x", VfRangeError::NotANumber { item: "x".into() }),
        (
            "ens1f0#99999999999",
            VfRangeError::NotANumber {
                item: "99999999999".into(),
            },
        ),
        ("ens1f0#7-2", VfRangeError::Backwards { start: 7, end: 2 }),
    ];
    for (text, want) in cases {
        assert_eq!(PfEntry::parse(text).as_ref(), Err(want), "{text}");
    }
}

#[test]
fn malformed_pf_names_entry_rejects_the_config_naming_resource_key_and_value() {
    let err = load_err(&one_resource(
        r#"[{"drivers": ["iavf"]}, {"pfNames": ["ens1f0#0-3", "ens1f1#7-2"]}]"#,
    ));
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::InvalidValue { .. }));
    assert!(msg.contains("resource 0 (\"pool_a\")"), "{msg}");
    assert!(msg.contains("`selectors[1].pfNames[1]`"), "{msg}");
    assert!(msg.contains("\"ens1f1#7-2\""), "{msg}");
    assert!(msg.contains("runs backwards"), "{msg}");
}

#[test]
fn malformed_root_devices_entry_rejects_the_config() {
    let err = load_err(&one_resource(r#"{"rootDevices": ["0000:86:00.0#0-1,x"]}"#));
    let msg = err.to_string();
    assert!(msg.contains("`selectors.rootDevices[0]`"), "{msg}");
    assert!(
        msg.contains("\"x\" is not a non-negative whole number"),
        "{msg}"
    );
}

#[test]
fn pf_part_of_an_entry_must_be_a_possible_name_or_address() {
    // A PCI address in pfNames can never equal an interface name.
    let err = load_err(&one_resource(r#"{"pfNames": ["0000:86:00.0#0-3"]}"#));
    assert!(
        err.to_string().contains("belongs in `rootDevices`"),
        "{err}"
    );
    // Longer than IFNAMSIZ-1.
    let err = load_err(&one_resource(r#"{"pfNames": ["a_very_long_ifname0"]}"#));
    assert!(err.to_string().contains("at most 15 characters"), "{err}");
    // A short PCI address never equals sysfs's full one.
    let err = load_err(&one_resource(r#"{"rootDevices": ["86:00.0#0-3"]}"#));
    assert!(err.to_string().contains("\"0000:86:00.0\""), "{err}");
}

#[test]
fn root_devices_accept_upper_case_as_upstream_compares_case_insensitively() {
    let loaded = load_ok(&one_resource(r#"{"rootDevices": ["0000:AF:00.1#0-3"]}"#));
    assert_eq!(
        loaded.config.resources[0].selectors[0].root_devices[0].to_string(),
        "0000:af:00.1#0-3"
    );
}
