//! Property tests of the CNI plugin's edge: whatever the runtime sends as
//! config, environment or version, the plugin never panics, and every
//! failure is a CNI error with a code the spec or docs/cni.md defines.
//! Pure: the node context points at empty temp dirs (no sysfs, no state,
//! no IPAM plugins), so no input can reach the kernel or touch a file
//! outside them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sriov_rs::cni::config::NetConf;
use sriov_rs::cni::env::{CniEnv, Command};
use sriov_rs::cni::result::{CniResult, Interface, IpConfig};
use sriov_rs::cni::version::CniVersion;
use std::collections::HashMap;

/// Codes the spec defines and ours (docs/cni.md).
const DOCUMENTED: &[u32] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 100, 101, 102, 103, 104, 105,
];

const COMMANDS: [Command; 6] = [
    Command::Add,
    Command::Del,
    Command::Check,
    Command::Status,
    Command::Gc,
    Command::Version,
];

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "on",
            "off",
            "maybe",
            "auto",
            "enable",
            "disable",
            "802.1q",
            "802.1AD",
            "0000:3b:01.0",
            "02:00:00:00:00:01",
            "01:00:5e:00:00:01",
            "1.0.0",
            "1.1.0",
            "0.4.0",
            "0.2.0",
            "host-local",
            "../x",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Config keys the plugin reads (never `logFile`, `CNIDeviceInfoFile`:
/// paths a test must not let random input write to).
const KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "deviceID",
    "pciBusID",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "mac",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
    "mtu",
    "logLevel",
    "ipam",
    "dns",
    "prevResult",
    "args",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
];

/// A config object: known keys with values of any type, plus noise.
fn any_config() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), any_json(), 0..10),
        prop::option::of(prop::sample::select(
            CniVersion::ALL.map(CniVersion::as_str).to_vec(),
        )),
        prop::option::of(any_json()),
    )
        .prop_map(|(keys, version, runtime)| {
            let mut object: Map<String, Value> =
                keys.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(version) = version {
                object.insert("cniVersion".into(), Value::from(version));
            }
            if let Some(Value::Object(mut runtime)) = runtime {
                runtime.remove("CNIDeviceInfoFile");
                object.insert("runtimeConfig".into(), Value::Object(runtime));
            }
            Value::Object(object)
        })
}

fn documented(code: u32) -> bool {
    DOCUMENTED.contains(&code)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Decoding and validating any config, and every question ADD asks of
    /// it before the kernel, answers or fails with code 6 or 7 (1 for the
    /// version), never panics.
    #[test]
    fn any_config_decodes_or_fails_with_a_config_code(config in any_config(), args_mac in ".{0,20}") {
        let bytes = config.to_string().into_bytes();
        match NetConf::parse(&bytes) {
            Err(e) => prop_assert!([6, 7].contains(&e.code), "{e:?}"),
            Ok(conf) => {
                for outcome in [
                    conf.validate(),
                    conf.device().map(drop),
                    conf.requested_mac(Some(&args_mac)).map(drop),
                    conf.version().map(drop),
                    conf.requested_mac(None)
                        .and_then(|mac| sriov_rs::cni::pf_side::requested(&conf, mac))
                        .map(drop),
                ] {
                    if let Err(e) = outcome {
                        prop_assert!([1, 7].contains(&e.code), "{e:?}");
                        prop_assert!(!e.msg.is_empty());
                    }
                }
            }
        }
    }

    /// Bytes that are not JSON at all: code 6.
    #[test]
    fn arbitrary_bytes_are_a_decode_error(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if serde_json::from_slice::<Value>(&bytes).is_err() {
            prop_assert_eq!(NetConf::parse(&bytes).unwrap_err().code, 6);
        }
    }

    /// Any CNI_* environment, for every command: the invocation's
    /// environment or code 4, never a panic; what is accepted is valid.
    #[test]
    fn any_environment_is_accepted_or_code_4(
        vars in prop::collection::hash_map(
            prop::sample::select(vec![
                "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH",
                "CNI_NETNS_OVERRIDE",
            ]),
            prop_oneof![".{0,20}", "[a-z0-9=;:/._-]{0,20}"],
            0..6,
        ),
    ) {
        let vars: HashMap<&str, String> = vars;
        for command in COMMANDS {
            match CniEnv::from_lookup(command, |k| vars.get(k).cloned()) {
                Ok(env) => {
                    if matches!(command, Command::Add | Command::Del | Command::Check) {
                        prop_assert!(sriov_rs::cni::env::valid_container_id(&env.container_id));
                        prop_assert!(sriov_rs::cni::env::valid_ifname(&env.ifname));
                    }
                }
                Err(e) => prop_assert_eq!(e.code, 4, "{:?}", e),
            }
        }
    }

    /// The whole edge, `cni::run`, with any command, config and
    /// environment, on an empty node: stdout is a JSON result or nothing,
    /// or the error is a documented code whose JSON names a version we
    /// speak.
    #[test]
    fn the_edge_answers_every_input_with_a_documented_code(
        command in prop::sample::select(vec!["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "", "add", "NOPE"]),
        config in prop_oneof![any_config(), any_json()],
        container in prop_oneof![Just("c1".to_owned()), ".{0,8}"],
        ifname in prop_oneof![Just("net1".to_owned()), ".{0,18}"],
        args in ".{0,24}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (sys, state, bin) = (dir.path().join("sys"), dir.path().join("state"), dir.path().join("bin"));
        std::fs::create_dir(&sys).unwrap();
        std::fs::create_dir(&bin).unwrap();
        let netns = dir.path().join("no-such-netns");
        let vars: HashMap<&str, String> = HashMap::from([
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", container),
            ("CNI_IFNAME", ifname),
            ("CNI_NETNS", netns.display().to_string()),
            ("CNI_PATH", bin.display().to_string()),
            ("CNI_ARGS", args),
            ("SRIOV_SYSFS_ROOT", sys.display().to_string()),
            ("SRIOV_CNI_STATE_DIR", state.display().to_string()),
        ]);
        let lookup = |k: &str| vars.get(k).cloned();
        let stdin = config.to_string();
        match sriov_rs::cni::run(lookup, &mut stdin.as_bytes()) {
            Ok(Some(out)) => {
                let out: Value = serde_json::from_str(&out).unwrap();
                prop_assert!(out.get("cniVersion").is_some(), "{out}");
            }
            Ok(None) => {}
            Err(reply) => {
                prop_assert!(documented(reply.code), "{reply:?}");
                let json: Value = serde_json::from_str(&reply.to_json()).unwrap();
                prop_assert!(CniVersion::parse(json["cniVersion"].as_str().unwrap()).is_some());
                prop_assert_eq!(json["code"].as_u64(), Some(u64::from(reply.code)));
            }
        }
    }

    /// Result conversion to every version: 0.x results carry
    /// `ips[].version` and no `mtu`/`pciID`/`socketPath`; 1.x the reverse;
    /// every conversion parses back with the same addresses.
    #[test]
    fn results_convert_to_every_version_and_back(
        ips in prop::collection::vec(
            (any::<[u8; 4]>(), 0u8..=32, any::<bool>(), any::<[u16; 8]>()),
            0..4,
        ),
        mtu in prop::option::of(68u32..9000),
        pci in prop::option::of("[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]"),
    ) {
        let result = CniResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![Interface {
                name: "net1".into(),
                mtu,
                pci_id: pci,
                ..Interface::default()
            }],
            ips: ips
                .iter()
                .map(|(v4, len, six, v6)| IpConfig {
                    address: if *six {
                        format!("{}/64", std::net::Ipv6Addr::from(*v6))
                    } else {
                        format!("{}/{len}", std::net::Ipv4Addr::from(*v4))
                    },
                    interface: Some(0),
                    ..IpConfig::default()
                })
                .collect(),
            ..CniResult::default()
        };
        for version in CniVersion::ALL {
            let json = result.to_version(version);
            prop_assert_eq!(json["cniVersion"].as_str(), Some(version.as_str()));
            let interface = &json["interfaces"][0];
            for key in ["mtu", "pciID", "socketPath"] {
                if !version.result_has_interface_details() {
                    prop_assert!(interface.get(key).is_none(), "{version}: {key}");
                }
            }
            if version.result_has_interface_details() {
                prop_assert_eq!(interface.get("mtu").and_then(Value::as_u64), mtu.map(u64::from));
            }
            for (ip, json_ip) in result.ips.iter().zip(json["ips"].as_array().into_iter().flatten()) {
                let expected = if ip.address.contains(':') { "6" } else { "4" };
                match version.result_has_ip_version() {
                    true => prop_assert_eq!(json_ip["version"].as_str(), Some(expected)),
                    false => prop_assert!(json_ip.get("version").is_none()),
                }
            }
            let back = CniResult::parse(json).unwrap();
            prop_assert_eq!(&back.ips.iter().map(|i| &i.address).collect::<Vec<_>>(),
                &result.ips.iter().map(|i| &i.address).collect::<Vec<_>>());
        }
    }
}
