//! `sriovctl apiserver-sim` and `sriovctl kubelet-sim` as the processes the
//! demo and end-to-end tests run: the stand-in API server (a 1.33 cluster,
//! v1beta1 only) with a claim given on its stdin, the stand-in kubelet
//! deleting the node's slices through it at start and preparing the claim
//! on the DRA driver this test serves, whose claims are read from the
//! process over HTTP.

mod common;

use common::ctl::Ctl;
use common::dra::{DraDriver, DRIVER, NETDEV_POOL, NODE};
use k8s_openapi::api::resource::v1::ResourceSlice;
use sriov_rs::dra::api::DraApi;
use sriov_rs::dra::kube_api;
use sriov_rs::dra::publish::SliceAction;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;

type TestResult = Result<(), Box<dyn Error>>;

fn write_claim(path: &Path) -> std::io::Result<()> {
    std::fs::write(
        path,
        format!(
            "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\n\
             metadata: {{name: net, namespace: default, uid: uid-net}}\n\
             spec: {{devices: {{requests: [{{name: vf, exactly: {{deviceClassName: sriov-vf}}}}]}}}}\n\
             status: {{allocation: {{devices: {{results: [{{request: vf, driver: {DRIVER}, \
             pool: {NETDEV_POOL}, device: 0000-3b-02-1}}]}}}}}}\n"
        ),
    )
}

fn slice(name: &str) -> ResourceSlice {
    let mut slice = ResourceSlice::default();
    slice.metadata.name = Some(name.into());
    slice.spec.driver = DRIVER.into();
    slice.spec.node_name = Some(NODE.into());
    slice.spec.pool.name = NETDEV_POOL.into();
    slice.spec.pool.resource_slice_count = 1;
    slice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_api_server_and_kubelet_as_processes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let kubeconfig = root.join("kubeconfig");
    let kubeconfig_arg = kubeconfig.to_string_lossy().into_owned();
    let mut apiserver = Ctl::spawn(
        "apiserver-sim",
        &[
            "apiserver-sim",
            "--kubeconfig-out",
            &kubeconfig_arg,
            "--versions",
            "v1beta1",
            "--node",
            &format!("{NODE}=node-uid-1"),
        ],
    )?;
    let ready = apiserver.line().await?;
    assert!(ready.starts_with("ready http://127.0.0.1:"), "{ready}");

    let claim_file = root.join("claim.yaml");
    write_claim(&claim_file)?;
    let answer = apiserver
        .ask(&format!("claim {}", claim_file.display()))
        .await?;
    assert_eq!(answer, "claim default/net uid=uid-net");

    // the daemon's view: the client picks v1beta1, its slice is stored
    let api: Arc<dyn DraApi> = kube_api::connect(Some(&kubeconfig)).await?;
    assert_eq!(api.node_uid(NODE).await?, "node-uid-1");
    api.write_slice(SliceAction::Create(slice("s-0"))).await?;
    let listed = apiserver.ask(&format!("slices {NODE}")).await?;
    assert!(
        listed.starts_with("slice s-0 node=worker-1 driver=sriov-rs.invalid"),
        "{listed}"
    );

    let driver = DraDriver::serve(root, api.clone()).await?;
    let registry = root.join("plugins_registry");
    let registry_arg = registry.to_string_lossy().into_owned();
    let mut kubelet = Ctl::spawn(
        "kubelet-sim",
        &[
            "kubelet-sim",
            "--dir",
            &registry_arg,
            "--plugin-watcher",
            "--dra-services",
            "v1beta1",
            "--kubeconfig",
            &kubeconfig_arg,
            "--node-name",
            NODE,
        ],
    )?;
    // a starting kubelet deletes the node's slices
    assert_eq!(kubelet.line().await?, format!("wiped {NODE} 1"));
    assert!(api.list_slices(NODE, DRIVER).await?.is_empty());

    let registered = kubelet.ask(&format!("wait-dra {DRIVER}")).await?;
    assert!(
        registered.starts_with(&format!(
            "{DRIVER}: registered 1x, refused 0x, service v1beta1.DRAPlugin"
        )),
        "{registered}"
    );
    assert_eq!(
        kubelet.ask("prepare default/net/uid-net").await?,
        format!(
            "prepare uid-net device {NETDEV_POOL} 0000-3b-02-1 requests=vf \
             cdi={DRIVER}/vf=uid-net-0000-3b-02-1"
        )
    );
    assert!(root.join("cdi/sriov-dra-uid-net.json").exists());
    let refused = kubelet.ask("prepare default/net/uid-other").await?;
    assert!(
        refused.starts_with("prepare uid-other error: ") && refused.contains("created again"),
        "{refused}"
    );
    assert_eq!(
        kubelet.ask("unprepare default/net/uid-net").await?,
        "unprepare uid-net ok"
    );
    assert!(!root.join("cdi/sriov-dra-uid-net.json").exists());

    // the API server goes away: the kubelet still starts, and says why it
    // could not delete the slices
    assert_eq!(apiserver.ask("down").await?, "down");
    let restarted = kubelet.ask("restart").await?;
    assert!(
        restarted.starts_with(&format!("wiped {NODE} error: API server unavailable")),
        "{restarted}"
    );
    assert!(kubelet.line().await?.starts_with("kubelet restarted"));
    kubelet.quit().await?;
    assert!(apiserver
        .ask("up")
        .await?
        .starts_with("up http://127.0.0.1:"));
    apiserver.quit().await?;
    drop(driver);
    Ok(())
}
