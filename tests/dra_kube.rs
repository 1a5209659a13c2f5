//! The `kube` client behind `DraApi` against the stand-in API server over
//! real HTTP on loopback: version discovery (1.34+ and 1.32/1.33 servers),
//! a server that comes up late, conflicts, refusals, claims, timeouts.

use k8s_openapi::api::resource::v1::{self as resource, ResourceClaim, ResourceSlice};
use serde_json::json;
use sriov_rs::dra::api::{ApiError, DraApi};
use sriov_rs::dra::claims::AllocatedDevice;
use sriov_rs::dra::kube_api::{self, KubeDraApi, ResourceApiVersion};
use sriov_rs::dra::publish::SliceAction;
use sriov_rs::dra::standin::{ApiServerStandin, HttpStandin};
use std::error::Error;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn Error>>;

const TEST_TIMEOUT: Duration = Duration::from_secs(20);
const DRIVER: &str = "sriov-rs.invalid";
const NODE: &str = "worker-1";
const BOTH: [ResourceApiVersion; 2] = [ResourceApiVersion::V1, ResourceApiVersion::V1beta1];
const BETA_ONLY: [ResourceApiVersion; 1] = [ResourceApiVersion::V1beta1];

async fn within_timeout(body: impl Future<Output = TestResult>) -> TestResult {
    tokio::time::timeout(TEST_TIMEOUT, body).await?
}

/// The stand-in on a free loopback port, a node, and a client built from
/// the kubeconfig the stand-in writes (as the daemon builds it).
struct Cluster {
    server: HttpStandin,
    client: KubeDraApi,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(versions: &[ResourceApiVersion]) -> Result<Self, Box<dyn Error>> {
        let api = ApiServerStandin::new();
        api.put_node(NODE, "node-uid-1");
        let server = HttpStandin::start(api, "127.0.0.1:0".parse()?, versions).await?;
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig)?;
        let client = KubeDraApi::connect(Some(&kubeconfig)).await?;
        Ok(Cluster {
            server,
            client,
            _dir: dir,
        })
    }
}

fn slice(name: &str, devices: usize) -> ResourceSlice {
    let mut slice = ResourceSlice::default();
    slice.metadata.name = Some(name.into());
    slice.spec.driver = DRIVER.into();
    slice.spec.node_name = Some(NODE.into());
    slice.spec.pool = resource::ResourcePool {
        name: format!("{NODE}/intel.com/sriov-net"),
        generation: 1,
        resource_slice_count: 1,
    };
    slice.spec.devices = Some(
        (0..devices)
            .map(|i| resource::Device {
                name: format!("0000-3b-{:02x}-{}", 2 + i / 8, i % 8),
                attributes: Some(
                    [(
                        "vfIndex".to_string(),
                        resource::DeviceAttribute {
                            int: Some(i as i64),
                            ..Default::default()
                        },
                    )]
                    .into(),
                ),
                ..Default::default()
            })
            .collect(),
    );
    slice
}

fn allocated_claim(name: &str, uid: &str) -> Result<ResourceClaim, serde_json::Error> {
    serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov-vf"}}]}},
        "status": {"allocation": {"devices": {"results": [
            {"request": "vf", "driver": DRIVER, "pool": "worker-1/intel.com/sriov-net", "device": "0000-3b-02-1"}]}}}
    }))
}

/// Create, list, update, a stale update, delete: the publisher's calls,
/// whatever version the client speaks; the stand-in stores v1 either way.
async fn publish_round(cluster: &Cluster) -> TestResult {
    let api = &cluster.client;
    api.write_slice(SliceAction::Create(slice("s-0", 3)))
        .await?;
    let listed = api.list_slices(NODE, DRIVER).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec.devices.as_ref().map(Vec::len), Some(3));
    // what was listed compares equal to what was written, so a republish of
    // the same devices writes nothing
    let mut written = slice("s-0", 3);
    written.metadata = listed[0].metadata.clone();
    assert_eq!(listed[0], written);
    assert!(api.list_slices("worker-2", DRIVER).await?.is_empty());
    assert!(api.list_slices(NODE, "gpu.example.com").await?.is_empty());

    let mut newer = listed[0].clone();
    newer.spec.pool.generation = 2;
    api.write_slice(SliceAction::Update(newer)).await?;
    // the same listed version again: someone wrote in between
    let mut stale = listed[0].clone();
    stale.spec.pool.generation = 3;
    let conflict = api.write_slice(SliceAction::Update(stale)).await;
    assert!(
        matches!(&conflict, Err(ApiError::Conflict(m)) if m.contains("s-0")),
        "{conflict:?}"
    );
    let stored = cluster.server.api().list_slices(None, None);
    assert_eq!(stored[0].spec.pool.generation, 2);

    api.write_slice(SliceAction::Delete("s-0".into())).await?;
    assert!(cluster.server.api().list_slices(None, None).is_empty());
    let gone = api.write_slice(SliceAction::Delete("s-0".into())).await;
    assert!(
        matches!(&gone, Err(ApiError::NotFound(m)) if m.contains("\"s-0\" not found")),
        "{gone:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_134_server_is_spoken_to_in_v1() -> TestResult {
    within_timeout(async {
        let cluster = Cluster::start(&BOTH).await?;
        assert_eq!(
            cluster.client.resource_version().await?,
            ResourceApiVersion::V1
        );
        publish_round(&cluster).await?;
        assert_eq!(cluster.client.node_uid(NODE).await?, "node-uid-1");
        let missing = cluster.client.node_uid("worker-9").await;
        assert!(
            matches!(&missing, Err(ApiError::NotFound(m)) if m.contains("worker-9")),
            "{missing:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_133_server_is_spoken_to_in_v1beta1() -> TestResult {
    within_timeout(async {
        let cluster = Cluster::start(&BETA_ONLY).await?;
        assert_eq!(
            cluster.client.resource_version().await?,
            ResourceApiVersion::V1beta1
        );
        publish_round(&cluster).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn claims_are_read_and_converted_in_either_version() -> TestResult {
    within_timeout(async {
        for versions in [&BOTH[..], &BETA_ONLY[..]] {
            let cluster = Cluster::start(versions).await?;
            cluster
                .server
                .api()
                .put_claim(allocated_claim("net", "uid-net")?);
            let view = cluster
                .client
                .get_claim("default", "net")
                .await?
                .ok_or("the claim is there")?;
            assert_eq!(view.uid, "uid-net");
            assert!(view.allocated);
            assert_eq!(
                view.devices,
                [AllocatedDevice {
                    request: "vf".into(),
                    driver: DRIVER.into(),
                    pool: "worker-1/intel.com/sriov-net".into(),
                    device: "0000-3b-02-1".into(),
                }]
            );
            // a missing claim is None, not an error
            assert_eq!(cluster.client.get_claim("default", "other").await?, None);
            assert_eq!(cluster.client.get_claim("kube-system", "net").await?, None);
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_server_that_comes_up_late() -> TestResult {
    within_timeout(async {
        let mut cluster = Cluster::start(&BOTH).await?;
        cluster.server.take_down().await;
        let down = cluster.client.list_slices(NODE, DRIVER).await;
        assert!(
            matches!(&down, Err(ApiError::Unavailable(m)) if m.contains("resource.k8s.io")),
            "{down:?}"
        );
        let down = cluster.client.get_claim("default", "net").await;
        assert!(matches!(down, Err(ApiError::Unavailable(_))), "{down:?}");
        cluster.server.bring_up().await?;
        assert!(cluster.client.list_slices(NODE, DRIVER).await?.is_empty());
        assert_eq!(
            cluster.client.resource_version().await?,
            ResourceApiVersion::V1
        );
        // and down again after it was used: the pooled connection is cut
        cluster.server.take_down().await;
        let down = cluster.client.node_uid(NODE).await;
        assert!(matches!(down, Err(ApiError::Unavailable(_))), "{down:?}");
        cluster.server.bring_up().await?;
        assert_eq!(cluster.client.node_uid(NODE).await?, "node-uid-1");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_server_that_stops_serving_v1_is_discovered_again() -> TestResult {
    within_timeout(async {
        let cluster = Cluster::start(&BOTH).await?;
        cluster
            .client
            .write_slice(SliceAction::Create(slice("s-0", 1)))
            .await?;
        assert_eq!(
            cluster.client.resource_version().await?,
            ResourceApiVersion::V1
        );
        // a downgrade to 1.33: v1 paths answer 404 naming no object
        cluster.server.set_versions(&BETA_ONLY);
        let listed = cluster.client.list_slices(NODE, DRIVER).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(
            cluster.client.resource_version().await?,
            ResourceApiVersion::V1beta1
        );
        // a server with no DRA API at all is refused, saying so
        cluster.server.set_versions(&[]);
        let none = cluster.client.list_slices(NODE, DRIVER).await;
        assert!(
            matches!(&none, Err(ApiError::Refused(m)) if m.contains("none of v1")),
            "{none:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_slice_the_server_refuses_is_refused_naming_why() -> TestResult {
    within_timeout(async {
        for versions in [&BOTH[..], &BETA_ONLY[..]] {
            let cluster = Cluster::start(versions).await?;
            let refused = cluster
                .client
                .write_slice(SliceAction::Create(slice("too-big", 129)))
                .await;
            assert!(
                matches!(&refused, Err(ApiError::Refused(m))
                    if m.contains("too-big") && m.contains("129 devices, at most 128")),
                "{refused:?}"
            );
            let mut bad_name = slice("bad-device", 1);
            if let Some(devices) = bad_name.spec.devices.as_mut() {
                devices[0].name = "0000:3b:02.0".into();
            }
            let refused = cluster
                .client
                .write_slice(SliceAction::Create(bad_name))
                .await;
            assert!(
                matches!(&refused, Err(ApiError::Refused(m)) if m.contains("0000:3b:02.0")),
                "{refused:?}"
            );
            assert!(cluster.server.api().list_slices(None, None).is_empty());
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() -> TestResult {
    within_timeout(async {
        // accepts connections, reads nothing, answers nothing
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse()?);
        let client = KubeDraApi::new(kube::Client::try_from(config)?)
            .with_timeout(Duration::from_millis(300));
        let hung = client.list_slices(NODE, DRIVER).await;
        assert!(
            matches!(&hung, Err(ApiError::Unavailable(m)) if m.contains("no answer within")),
            "{hung:?}"
        );
        hold.abort();
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_kubelets_wipe_deletes_every_slice_of_the_node() -> TestResult {
    within_timeout(async {
        let cluster = Cluster::start(&BOTH).await?;
        let api = cluster.server.api();
        api.create_slice(slice("a", 1))?;
        let mut other_driver = slice("b", 1);
        other_driver.spec.driver = "gpu.example.com".into();
        api.create_slice(other_driver)?;
        let mut other_node = slice("c", 1);
        other_node.spec.node_name = Some("worker-2".into());
        other_node.spec.pool.name = "worker-2/intel.com/sriov-net".into();
        api.create_slice(other_node)?;
        assert_eq!(cluster.client.delete_node_slices(NODE).await?, 2);
        let left: Vec<_> = api
            .list_slices(None, None)
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        assert_eq!(left, ["c"]);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn connect_gives_the_daemons_handle() -> TestResult {
    within_timeout(async {
        let cluster = Cluster::start(&BOTH).await?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kubeconfig");
        cluster.server.write_kubeconfig(&path)?;
        let api: Arc<dyn DraApi> = kube_api::connect(Some(&path)).await?;
        assert_eq!(api.node_uid(NODE).await?, "node-uid-1");
        let missing = kube_api::connect(Some(&dir.path().join("nope"))).await;
        assert!(
            matches!(&missing, Err(e) if e.to_string().contains("nope")),
            "a missing kubeconfig is named"
        );
        Ok(())
    })
    .await
}
