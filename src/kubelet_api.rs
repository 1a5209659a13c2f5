//! The kubelet's gRPC APIs, generated from `proto/` by `build.rs`, plus the
//! well-known paths and strings that go with them.
//!
//! Three APIs, each in the module named after its proto package path:
//! - [`deviceplugin::v1beta1`]: `Registration` (kubelet side) and
//!   `DevicePlugin` (our side);
//! - [`pluginregistration`]: the plugin-watcher `Registration` we serve in
//!   `plugins_registry/`;
//! - [`podresources::v1`]: `PodResourcesLister`, served by the kubelet;
//! - [`dra::v1`], [`dra::v1beta1`]: the DRA plugin service `DRAPlugin` (our
//!   side), the same messages under two packages;
//! - [`dra_health::v1alpha1`]: `DRAResourceHealth`, the device health stream.
//!
//! [`uds`] serves and dials these over Unix sockets, which is the only
//! transport the kubelet speaks for them; [`authority`] lets the server
//! answer clients that send the socket path as `:authority`.
//!
//! prost renames some identifiers in Rust while the wire keeps the proto
//! names: `ID` becomes `id`, `available_deviceIDs` becomes
//! `available_device_i_ds`, `deviceIDs` becomes `device_i_ds`, and the
//! types `NUMANode`/`CDIDevice` become `NumaNode`/`CdiDevice`.

pub mod authority;
pub mod uds;

/// Device plugin API v1beta1 (proto package `v1beta1`).
pub mod deviceplugin {
    /// Generated messages, `registration_client`/`registration_server` and
    /// `device_plugin_client`/`device_plugin_server`.
    pub mod v1beta1 {
        tonic::include_proto!("v1beta1");
    }
}

/// Plugin watcher registration API v1 (proto package `pluginregistration`).
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

/// PodResources API v1 (proto package `v1`).
pub mod podresources {
    /// Generated messages and `pod_resources_lister_client`/`_server`.
    pub mod v1 {
        tonic::include_proto!("v1");
    }
}

/// Kubelet DRA plugin API (proto packages `k8s.io.kubelet.pkg.apis.dra.v1`
/// and `...v1beta1`): `dra_plugin_server`/`dra_plugin_client` in each.
pub mod dra {
    /// Served to kubelets 1.34 and later (`v1.DRAPlugin`).
    pub mod v1 {
        tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1");
    }
    /// Served to kubelets 1.32 and 1.33, which know only this version
    /// (`v1beta1.DRAPlugin`).
    pub mod v1beta1 {
        tonic::include_proto!("k8s.io.kubelet.pkg.apis.dra.v1beta1");
    }
}

/// Kubelet DRA device health API (proto package `v1alpha1`).
pub mod dra_health {
    /// `dra_resource_health_server`/`_client`.
    pub mod v1alpha1 {
        tonic::include_proto!("v1alpha1");
    }
}

/// `PluginInfo.type` for a DRA driver in plugin watcher mode.
pub const PLUGIN_TYPE_DRA_PLUGIN: &str = "DRAPlugin";

/// `supported_versions` entries naming the DRA services we serve. A kubelet
/// picks the newest it knows; a 1.32 kubelet offered only `v1.DRAPlugin`
/// falls back to an older name and fails, so both are always listed.
pub const DRA_PLUGIN_SERVICE_V1: &str = "v1.DRAPlugin";
pub const DRA_PLUGIN_SERVICE_V1BETA1: &str = "v1beta1.DRAPlugin";
/// `supported_versions` entry of the health stream (kubelets 1.34 to 1.36).
pub const DRA_HEALTH_SERVICE_V1ALPHA1: &str = "v1alpha1.DRAResourceHealth";

/// Where DRA drivers keep their sockets: `<dir>/<driver-name>/dra.sock`.
pub const DEFAULT_DRA_PLUGIN_DIR: &str = "/var/lib/kubelet/plugins/";

/// Value of `RegisterRequest.version`; the only version kubelets accept.
pub const DEVICE_PLUGIN_API_VERSION: &str = "v1beta1";

/// Where the kubelet expects device plugin sockets and serves `kubelet.sock`.
pub const DEFAULT_DEVICE_PLUGIN_DIR: &str = "/var/lib/kubelet/device-plugins/";

/// File name of the kubelet's `Registration` socket inside the device plugin dir.
pub const KUBELET_SOCKET_NAME: &str = "kubelet.sock";

/// File name of the kubelet's device checkpoint (JSON) inside the device plugin dir.
pub const KUBELET_CHECKPOINT_NAME: &str = "kubelet_internal_checkpoint";

/// Directory the kubelet's plugin watcher scans for plugin sockets.
pub const DEFAULT_PLUGINS_REGISTRY_DIR: &str = "/var/lib/kubelet/plugins_registry/";

/// Socket of the kubelet's PodResources API.
pub const DEFAULT_POD_RESOURCES_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// `PluginInfo.type` for a device plugin in plugin watcher mode.
pub const PLUGIN_TYPE_DEVICE_PLUGIN: &str = "DevicePlugin";

/// `Device.health` of a usable device (exact case matters to the kubelet).
pub const HEALTHY: &str = "Healthy";

/// `Device.health` of a device that stays in capacity but leaves allocatable.
pub const UNHEALTHY: &str = "Unhealthy";

/// How long the kubelet waits for `PreStartContainer`, in seconds.
pub const PRE_START_CONTAINER_TIMEOUT_SECS: u64 = 30;

#[cfg(test)]
mod tests {
    //! The field numbers are the wire contract with the kubelet, so check the
    //! encoded tags against the reference tables by hand-built bytes: a typo
    //! in a .proto file would still compile and round-trip, but not match.

    use super::deviceplugin::v1beta1::{
        CdiDevice, ContainerAllocateResponse, ContainerPreferredAllocationRequest,
        DevicePluginOptions, RegisterRequest,
    };
    use super::pluginregistration::RegistrationStatus;
    use super::podresources::v1::{ClaimResource, DynamicResource};
    use prost::Message;

    #[test]
    fn dra_messages_use_reference_field_numbers_in_both_versions() {
        use super::dra::{v1, v1beta1};
        let device = v1::Device {
            request_names: vec!["r".to_owned()],
            pool_name: "p".to_owned(),
            device_name: "d".to_owned(),
            cdi_device_ids: vec!["c".to_owned()],
        };
        // 1:"r" 2:"p" 3:"d" 4:"c"
        let want = [0x0a, 1, b'r', 0x12, 1, b'p', 0x1a, 1, b'd', 0x22, 1, b'c'];
        assert_eq!(device.encode_to_vec(), want);
        let beta = v1beta1::Device::decode(&want[..]).unwrap_or_default();
        assert_eq!(beta.cdi_device_ids, ["c"]);
        let claim = v1::Claim {
            namespace: "n".to_owned(),
            uid: "u".to_owned(),
            name: "m".to_owned(),
        };
        // 1:"n" 2:"u" 3:"m"
        assert_eq!(
            claim.encode_to_vec(),
            [0x0a, 1, b'n', 0x12, 1, b'u', 0x1a, 1, b'm']
        );
        let prepared = v1::NodePrepareResourceResponse {
            devices: Vec::new(),
            error: "e".to_owned(),
        };
        assert_eq!(prepared.encode_to_vec(), [0x12, 1, b'e']);
        let unprepared = v1beta1::NodeUnprepareResourceResponse {
            error: "e".to_owned(),
        };
        assert_eq!(unprepared.encode_to_vec(), [0x0a, 1, b'e']);
        // map<string, ...> claims = 1: one entry {1:"u" 2:{1:"e"}}
        let response = v1::NodeUnprepareResourcesResponse {
            claims: [("u".to_owned(), unprepared_v1("e"))].into(),
        };
        let want = [0x0a, 8, 0x0a, 1, b'u', 0x12, 3, 0x0a, 1, b'e'];
        assert_eq!(response.encode_to_vec(), want);
    }

    fn unprepared_v1(error: &str) -> super::dra::v1::NodeUnprepareResourceResponse {
        super::dra::v1::NodeUnprepareResourceResponse {
            error: error.to_owned(),
        }
    }

    #[test]
    fn device_health_uses_reference_field_numbers() {
        use super::dra_health::v1alpha1::{DeviceHealth, DeviceIdentifier, HealthStatus};
        let msg = DeviceHealth {
            device: Some(DeviceIdentifier {
                pool_name: "p".to_owned(),
                device_name: "d".to_owned(),
            }),
            health: HealthStatus::Unhealthy.into(),
            last_updated_time: 5,
            health_check_timeout_seconds: 7,
            message: "m".to_owned(),
        };
        // 1:{1:"p" 2:"d"} 2:2 3:5 4:7 5:"m"
        let want = [
            0x0a, 6, 0x0a, 1, b'p', 0x12, 1, b'd', 0x10, 2, 0x18, 5, 0x20, 7, 0x2a, 1, b'm',
        ];
        assert_eq!(msg.encode_to_vec(), want);
    }

    #[test]
    fn register_request_uses_reference_field_numbers() {
        let msg = RegisterRequest {
            version: "v".to_owned(),
            endpoint: "e".to_owned(),
            resource_name: "r".to_owned(),
            options: Some(DevicePluginOptions {
                pre_start_required: false,
                get_preferred_allocation_available: true,
            }),
        };
        // 1:"v" 2:"e" 3:"r" 4:{2:true}
        let want = [
            0x0a, 1, b'v', 0x12, 1, b'e', 0x1a, 1, b'r', 0x22, 2, 0x10, 1,
        ];
        assert_eq!(msg.encode_to_vec(), want);
    }

    #[test]
    fn preferred_allocation_request_uses_reference_field_numbers() {
        let msg = ContainerPreferredAllocationRequest {
            available_device_i_ds: vec!["a".to_owned()],
            must_include_device_i_ds: vec!["m".to_owned()],
            allocation_size: 2,
        };
        // 1:"a" 2:"m" 3:varint 2
        let want = [0x0a, 1, b'a', 0x12, 1, b'm', 0x18, 2];
        assert_eq!(msg.encode_to_vec(), want);
    }

    #[test]
    fn cdi_devices_is_field_five() {
        let msg = ContainerAllocateResponse {
            cdi_devices: vec![CdiDevice {
                name: "x".to_owned(),
            }],
            ..Default::default()
        };
        // 5:{1:"x"}
        assert_eq!(msg.encode_to_vec(), [0x2a, 3, 0x0a, 1, b'x']);
    }

    #[test]
    fn registration_status_uses_reference_field_numbers() {
        let msg = RegistrationStatus {
            plugin_registered: true,
            error: "e".to_owned(),
        };
        // 1:true 2:"e"
        assert_eq!(msg.encode_to_vec(), [0x08, 1, 0x12, 1, b'e']);
    }

    #[test]
    fn dynamic_resource_numbering_starts_at_two() {
        let msg = DynamicResource {
            claim_name: "c".to_owned(),
            claim_namespace: "n".to_owned(),
            claim_resources: vec![ClaimResource {
                driver_name: "d".to_owned(),
                ..Default::default()
            }],
        };
        // 2:"c" 3:"n" 4:{2:"d"}
        let want = [0x12, 1, b'c', 0x1a, 1, b'n', 0x22, 3, 0x12, 1, b'd'];
        assert_eq!(msg.encode_to_vec(), want);
    }
}
