//! A node's DRA pools as the DRA tests serve them: a netdev pool (`iavf`,
//! two VFs) and a DPDK pool (`vfio-pci`, one VF), served as the device
//! plugin serves them, on no real device.

use sriov_rs::config;
use sriov_rs::deviceplugin::served::{serve_pool, NodeFacts, ServedPool};
use sriov_rs::dra::api::DraApi;
use sriov_rs::dra::inventory::DraInventory;
use sriov_rs::dra::prepare::{PrepareSettings, Preparer};
use sriov_rs::dra::service::{
    dra_router, dra_socket_path, registration_router, registration_socket_path, DraPluginService,
    DraRegistration,
};
use sriov_rs::kubelet_api::pluginregistration::RegistrationStatus;
use sriov_rs::kubelet_api::uds::{self, UdsListener};
use sriov_rs::pool::{Pool, PoolDevice};
use sriov_rs::sysfs::{RdmaCharDevices, SysfsError};
use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The driver and node the DRA tests serve.
pub const DRIVER: &str = "sriov-rs.invalid";
pub const NODE: &str = "worker-1";

/// The DRA pools of `served_pools` on node `worker-1`.
pub const NETDEV_POOL: &str = "worker-1/intel.com/sriov-net";
pub const VFIO_POOL: &str = "worker-1/intel.com/sriov-dpdk";

/// No uio, RDMA or no-IOMMU devices; `/dev` has nothing shared.
pub struct NoExtras;

impl NodeFacts for NoExtras {
    fn uio_devices(&self, _id: &str) -> Result<Vec<String>, SysfsError> {
        Ok(Vec::new())
    }
    fn rdma_char_devices(&self, _id: &str) -> Result<RdmaCharDevices, SysfsError> {
        Ok(RdmaCharDevices::default())
    }
    fn is_noiommu_group(&self, _group: u32) -> Result<bool, SysfsError> {
        Ok(false)
    }
    fn dev_node_exists(&self, _path: &str) -> bool {
        false
    }
}

pub fn vf(id: &str, driver: &str, group: u32) -> PoolDevice {
    PoolDevice {
        id: id.into(),
        pf_name: Some("ens1f0".into()),
        pf_pci_address: Some("0000:3b:00.0".into()),
        vf_index: Some(0),
        vendor: "8086".into(),
        device: "154c".into(),
        driver: Some(driver.into()),
        numa_node: Some(0),
        iommu_group: Some(group),
        netdev: None,
        link_type: Some("ether".into()),
        rdma_devices: vec![],
        device_nodes: vec![],
        selector: 0,
        pci_address: id.into(),
        aux_type: None,
        vdpa: None,
        pkey: None,
    }
}

/// A netdev pool (`iavf`) and a DPDK pool (`vfio-pci`), served as the
/// device plugin serves them.
pub fn served_pools() -> Result<Vec<Arc<ServedPool>>, Box<dyn Error>> {
    let loaded = config::parse(
        r#"{"resourceList": [
            {"resourceName": "sriov_net", "selectors": {"drivers": ["iavf"]}},
            {"resourceName": "sriov_dpdk", "selectors": {"drivers": ["vfio-pci"]}}
        ]}"#,
        "intel.com",
    )?;
    let pools = [
        Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices: vec![
                vf("0000:3b:02.0", "iavf", 40),
                vf("0000:3b:02.1", "iavf", 41),
            ],
        },
        Pool {
            resource_name: "intel.com/sriov_dpdk".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 1,
            devices: vec![vf("0000:3b:03.0", "vfio-pci", 50)],
        },
    ];
    Ok(pools
        .into_iter()
        .map(|p| {
            let resource = &loaded.config.resources[p.resource];
            Arc::new(serve_pool(p, resource, &NoExtras))
        })
        .collect())
}

/// The DRA driver of [`served_pools`] on node [`NODE`], served on the
/// sockets of a node under `root` (`plugins/<driver>/dra.sock` and
/// `plugins_registry/<driver>-reg.sock`; CDI specs in `cdi/`, device-info
/// files in `devinfo/`), reading claims through `claims`. Stops when
/// dropped.
pub struct DraDriver {
    /// What the kubelet answered to each registration.
    pub verdicts: mpsc::UnboundedReceiver<RegistrationStatus>,
    tasks: Vec<JoinHandle<Result<(), uds::UdsError>>>,
}

impl DraDriver {
    pub async fn serve(root: &Path, claims: Arc<dyn DraApi>) -> Result<Self, Box<dyn Error>> {
        let settings = PrepareSettings {
            driver: DRIVER.into(),
            node: NODE.into(),
            cdi_dir: root.join("cdi"),
            devinfo_dir: root.join("devinfo"),
            checkpoint: root.join("plugins").join(DRIVER).join("checkpoint.json"),
        };
        let (preparer, _) = Preparer::start(settings, DraInventory::new(NODE, &served_pools()?))?;
        let service = DraPluginService {
            preparer: Arc::new(tokio::sync::Mutex::new(preparer)),
            claims: Arc::new(claims),
            pod_resources: None,
        };
        let socket = dra_socket_path(&root.join("plugins"), DRIVER);
        std::fs::create_dir_all(socket.parent().ok_or("no parent")?)?;
        let dra_listener = UdsListener::bind(&socket)?;
        let mut tasks = vec![tokio::spawn(uds::serve(
            dra_router(service, None),
            dra_listener,
            std::future::pending(),
        ))];
        let registry = root.join("plugins_registry");
        std::fs::create_dir_all(&registry)?;
        let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
        let registration = DraRegistration {
            driver: DRIVER.into(),
            endpoint: socket.to_string_lossy().into_owned(),
            health: false,
            verdicts: verdicts_tx,
        };
        let registration_listener = UdsListener::bind(registration_socket_path(&registry, DRIVER))?;
        tasks.push(tokio::spawn(uds::serve(
            registration_router(registration),
            registration_listener,
            std::future::pending(),
        )));
        Ok(DraDriver { verdicts, tasks })
    }
}

impl Drop for DraDriver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
