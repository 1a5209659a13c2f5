//! The kubelet's gRPC APIs, generated from `proto/` by `build.rs`, plus the
//! well-known paths and strings that go with them.
//!
//! Three APIs, each in the module named after its proto package path:
//! - [`deviceplugin::v1beta1`]: `Registration` (kubelet side) and
//!   `DevicePlugin` (our side);
//! - [`pluginregistration`]: the plugin-watcher `Registration` we serve in
//!   `plugins_registry/`;
//! - [`podresources::v1`]: `PodResourcesLister`, served by the kubelet.
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
