//! Allocate: the container's env, device nodes and (in CDI mode) CDI
//! references for a set of device IDs, exactly as sriov-network-device-plugin
//! builds them. Pure.

use super::served::{InfoProviders, PoolOwners, ServedPool};
use crate::kubelet_api::deviceplugin::v1beta1::{CdiDevice, ContainerAllocateResponse, DeviceSpec};
use std::collections::{BTreeMap, HashSet};

/// How device nodes reach the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdiMode {
    /// DeviceSpecs in the response (upstream's default).
    Off,
    /// CDI references in a `cdi.k8s.io/...` annotation (upstream's `-use-cdi`).
    Annotation,
    /// CDI references in `cdi_devices` (field 5; kubelet >= 1.28 with the gate, GA in 1.31).
    Field,
}

/// Why an Allocate request cannot be served; the message names every offender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("{}", describe_unknown(pool, ids, elsewhere))]
    UnknownDevices {
        pool: String,
        ids: Vec<String>,
        /// For IDs that belong to another of our pools: (ID, that pool).
        elsewhere: Vec<(String, String)>,
    },
    #[error("allocate request for pool {pool} has no device IDs")]
    Empty { pool: String },
}

fn describe_unknown(pool: &str, ids: &[String], elsewhere: &[(String, String)]) -> String {
    let parts: Vec<String> = ids
        .iter()
        .map(|id| match elsewhere.iter().find(|(other, _)| other == id) {
            Some((_, owner)) => format!("{id} (a device of pool {owner})"),
            None => id.clone(),
        })
        .collect();
    format!("devices not in pool {pool}: {}", parts.join(", "))
}

/// Go's JSON encoder escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings;
/// doing the same keeps `_INFO` byte-identical to upstream's. These
/// characters never occur outside strings in JSON, so a plain replace is safe.
fn go_json_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The `_INFO` value: `{"<id>": {"<provider>": {"<key>": "<value>"}}}`.
fn info_json(pool: &ServedPool, ids: &[String]) -> String {
    let map: BTreeMap<&str, &InfoProviders> = ids
        .iter()
        .filter_map(|id| pool.device(id).map(|d| (id.as_str(), &d.info)))
        .collect();
    // serializing maps of strings cannot fail
    go_json_escape(serde_json::to_string(&map).unwrap_or_default())
}

/// One container's response. `other_pools` tells which of our other pools
/// lists a device ID, so a misrouted ID gets a useful message.
pub fn allocate_container(
    pool: &ServedPool,
    ids: &[String],
    cdi: CdiMode,
    other_pools: &PoolOwners,
) -> Result<ContainerAllocateResponse, AllocateError> {
    if ids.is_empty() {
        return Err(AllocateError::Empty {
            pool: pool.resource_name.clone(),
        });
    }
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| pool.device(id).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        let elsewhere = unknown
            .iter()
            .filter_map(|id| other_pools.owner_of(id).map(|p| (id.clone(), p.to_owned())))
            .collect();
        return Err(AllocateError::UnknownDevices {
            pool: pool.resource_name.clone(),
            ids: unknown,
            elsewhere,
        });
    }

    let env = pool.env_name();
    let mut response = ContainerAllocateResponse::default();
    response
        .envs
        .insert(format!("{env}_INFO"), info_json(pool, ids));
    response.envs.insert(env, ids.join(","));

    let devices = ids.iter().filter_map(|id| pool.device(id));
    match cdi {
        CdiMode::Off => {
            let mut seen = HashSet::new();
            for node in devices.flat_map(|d| d.nodes.iter()) {
                if seen.insert(node.host_path.clone()) {
                    response.devices.push(DeviceSpec {
                        container_path: node.container_path.clone(),
                        host_path: node.host_path.clone(),
                        permissions: "rw".into(),
                    });
                }
            }
        }
        CdiMode::Annotation | CdiMode::Field => {
            // Only devices with nodes are in the CDI spec (a CDI device
            // needs at least one edit); kernel netdevs need none.
            let kind = pool.cdi_kind();
            let names: Vec<String> = devices
                .filter(|d| !d.nodes.is_empty())
                .map(|d| format!("{kind}={}", d.id))
                .collect();
            if !names.is_empty() {
                if cdi == CdiMode::Annotation {
                    let key = format!(
                        "cdi.k8s.io/{}_{}",
                        pool.prefix,
                        super::served::cdi_kind_short(pool.device_type)
                    );
                    response.annotations.insert(key, names.join(","));
                } else {
                    response.cdi_devices =
                        names.into_iter().map(|name| CdiDevice { name }).collect();
                }
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::served::{test_device, test_pool, NodeSpec, ServedDevice};
    use super::*;

    fn device(
        id: &str,
        nodes: &[(&str, &str)],
        info: &[(&'static str, &'static str, &str)],
    ) -> ServedDevice {
        let mut providers = InfoProviders::default();
        for (p, k, v) in info {
            providers.insert(p, k, *v);
        }
        ServedDevice {
            nodes: nodes
                .iter()
                .map(|(h, c)| NodeSpec {
                    host_path: h.to_string(),
                    container_path: c.to_string(),
                })
                .collect(),
            info: providers,
            ..test_device(id)
        }
    }

    fn vfio_pool() -> ServedPool {
        test_pool(
            vec![
                device(
                    "0000:3b:02.0",
                    &[
                        ("/dev/vfio/vfio", "/dev/vfio/vfio"),
                        ("/dev/vfio/40", "/dev/vfio/40"),
                    ],
                    &[
                        ("generic", "deviceID", "0000:3b:02.0"),
                        ("vfio", "mount", "/dev/vfio/vfio"),
                        ("vfio", "dev-mount", "/dev/vfio/40"),
                    ],
                ),
                device(
                    "0000:3b:02.1",
                    &[
                        ("/dev/vfio/vfio", "/dev/vfio/vfio"),
                        ("/dev/vfio/noiommu-41", "/dev/vfio/41"),
                    ],
                    &[
                        ("generic", "deviceID", "0000:3b:02.1"),
                        ("vfio", "mount", "/dev/vfio/vfio"),
                        ("vfio", "dev-mount", "/dev/vfio/41"),
                    ],
                ),
            ],
            false,
        )
    }

    #[test]
    fn env_names_follow_upstream() {
        let mut pool = vfio_pool();
        assert_eq!(pool.env_name(), "PCIDEVICE_INTEL_COM_SRIOV_NET");
        pool.prefix = "example-vendor.io".into();
        pool.name = "fec-acc".into();
        assert_eq!(pool.env_name(), "PCIDEVICE_EXAMPLE-VENDOR_IO_FEC-ACC");
    }

    #[test]
    fn vfio_devices_get_container_node_once_and_their_groups() {
        let pool = vfio_pool();
        let ids = vec!["0000:3b:02.1".to_string(), "0000:3b:02.0".to_string()];
        let r = allocate_container(&pool, &ids, CdiMode::Off, &PoolOwners::default()).unwrap();
        assert_eq!(
            r.envs["PCIDEVICE_INTEL_COM_SRIOV_NET"],
            "0000:3b:02.1,0000:3b:02.0"
        );
        assert_eq!(
            r.envs["PCIDEVICE_INTEL_COM_SRIOV_NET_INFO"],
            r#"{"0000:3b:02.0":{"generic":{"deviceID":"0000:3b:02.0"},"vfio":{"dev-mount":"/dev/vfio/40","mount":"/dev/vfio/vfio"}},"0000:3b:02.1":{"generic":{"deviceID":"0000:3b:02.1"},"vfio":{"dev-mount":"/dev/vfio/41","mount":"/dev/vfio/vfio"}}}"#
        );
        let specs: Vec<(&str, &str, &str)> = r
            .devices
            .iter()
            .map(|d| {
                (
                    d.host_path.as_str(),
                    d.container_path.as_str(),
                    d.permissions.as_str(),
                )
            })
            .collect();
        assert_eq!(
            specs,
            vec![
                ("/dev/vfio/vfio", "/dev/vfio/vfio", "rw"),
                ("/dev/vfio/noiommu-41", "/dev/vfio/41", "rw"),
                ("/dev/vfio/40", "/dev/vfio/40", "rw"),
            ]
        );
        assert!(r.mounts.is_empty() && r.annotations.is_empty() && r.cdi_devices.is_empty());
    }

    #[test]
    fn unknown_and_foreign_ids_are_named() {
        let pool = vfio_pool();
        let mut other = test_pool(vec![device("0000:5e:02.0", &[], &[])], false);
        other.resource_name = "intel.com/other".into();
        let others = PoolOwners::of(&[other]);
        let ids = vec![
            "0000:3b:02.0".to_string(),
            "0000:5e:02.0".into(),
            "bogus".into(),
        ];
        let err = allocate_container(&pool, &ids, CdiMode::Off, &others).unwrap_err();
        assert_eq!(
            err.to_string(),
            "devices not in pool intel.com/sriov_net: 0000:5e:02.0 (a device of pool intel.com/other), bogus"
        );
        assert!(matches!(
            allocate_container(&pool, &[], CdiMode::Off, &others),
            Err(AllocateError::Empty { .. })
        ));
    }

    #[test]
    fn cdi_modes_reference_devices_with_nodes_only() {
        let mut devices = vfio_pool().devices;
        devices.push(std::sync::Arc::new(device(
            "0000:3b:02.2",
            &[],
            &[("generic", "deviceID", "0000:3b:02.2")],
        )));
        let pool = vfio_pool().with_devices(devices);
        let ids = vec!["0000:3b:02.0".to_string(), "0000:3b:02.2".into()];
        let a =
            allocate_container(&pool, &ids, CdiMode::Annotation, &PoolOwners::default()).unwrap();
        assert!(a.devices.is_empty());
        assert_eq!(
            a.annotations["cdi.k8s.io/intel.com_net-pci"],
            "intel.com/net-pci=0000:3b:02.0"
        );
        let f = allocate_container(&pool, &ids, CdiMode::Field, &PoolOwners::default()).unwrap();
        assert!(f.annotations.is_empty() && f.devices.is_empty());
        assert_eq!(f.cdi_devices.len(), 1);
        assert_eq!(f.cdi_devices[0].name, "intel.com/net-pci=0000:3b:02.0");
        assert_eq!(
            f.envs["PCIDEVICE_INTEL_COM_SRIOV_NET"],
            "0000:3b:02.0,0000:3b:02.2"
        );
    }

    #[test]
    fn extra_info_is_escaped_like_go() {
        let pool = test_pool(
            vec![device(
                "0000:3b:02.0",
                &[],
                &[
                    ("generic", "deviceID", "0000:3b:02.0"),
                    ("extra", "note", "a<b>&c"),
                ],
            )],
            false,
        );
        let r = allocate_container(
            &pool,
            &["0000:3b:02.0".into()],
            CdiMode::Off,
            &PoolOwners::default(),
        )
        .unwrap();
        assert_eq!(
            r.envs["PCIDEVICE_INTEL_COM_SRIOV_NET_INFO"],
            r#"{"0000:3b:02.0":{"extra":{"note":"a\u003cb\u003e\u0026c"},"generic":{"deviceID":"0000:3b:02.0"}}}"#
        );
    }
}
