//! The stand-in kubelet's DRA side, from the kubelet's end of the contract:
//! which `DRAPlugin` service to speak to a driver that registers (the
//! newest both know, as the kubelet picks it), the NodePrepareResources /
//! NodeUnprepareResources calls in that version, and the deletion of the
//! node's ResourceSlices that a starting kubelet does. The registration
//! itself (plugin watcher, GetInfo, NotifyRegistrationStatus) is
//! [`super::kubelet_sim`]'s.

use crate::dra::api::{ApiError, ApiFuture};
use crate::dra::claims::ClaimRef;
use crate::dra::kube_api::KubeDraApi;
use crate::dra::service::convert;
use crate::dra::standin::ApiServerStandin;
use crate::kubelet_api::dra::{v1, v1beta1};
use crate::kubelet_api::uds;
use crate::kubelet_api::{DRA_PLUGIN_SERVICE_V1, DRA_PLUGIN_SERVICE_V1BETA1};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the stand-in waits for one Prepare or Unprepare answer.
pub const DRA_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A `DRAPlugin` service version the kubelet speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DraService {
    /// `v1.DRAPlugin`, kubelets 1.34 and later.
    V1,
    /// `v1beta1.DRAPlugin`, kubelets 1.32 to 1.36.
    V1beta1,
}

impl DraService {
    /// As a 1.34+ kubelet knows them, most preferred first.
    pub const ALL: [DraService; 2] = [DraService::V1, DraService::V1beta1];

    /// The `supported_versions` entry naming it.
    pub fn name(self) -> &'static str {
        match self {
            DraService::V1 => DRA_PLUGIN_SERVICE_V1,
            DraService::V1beta1 => DRA_PLUGIN_SERVICE_V1BETA1,
        }
    }

    /// `v1` or `v1beta1`.
    pub fn parse(version: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().split('.').next() == Some(version))
    }
}

/// The service the kubelet speaks to a driver offering `offered`: the
/// first of `known` (the kubelet's own list, most preferred first) that
/// the driver lists; Err names both lists.
pub fn choose_service(known: &[DraService], offered: &[String]) -> Result<DraService, String> {
    known
        .iter()
        .copied()
        .find(|service| offered.iter().any(|o| o == service.name()))
        .ok_or_else(|| {
            let known: Vec<&str> = known.iter().map(|s| s.name()).collect();
            format!(
                "none of the offered services {offered:?} is one this kubelet speaks ({})",
                known.join(", ")
            )
        })
}

/// Where a starting kubelet deletes its node's ResourceSlices.
pub trait NodeSlices: Send + Sync {
    /// Delete every slice of `node`, whatever its driver; how many went.
    fn wipe_node_slices<'a>(&'a self, node: &'a str) -> ApiFuture<'a, usize>;
}

impl NodeSlices for ApiServerStandin {
    fn wipe_node_slices<'a>(&'a self, node: &'a str) -> ApiFuture<'a, usize> {
        Box::pin(async move {
            if self.is_down() {
                return Err(ApiError::Unavailable(
                    "connection refused (stand-in down)".into(),
                ));
            }
            Ok(self.delete_node_slices(node))
        })
    }
}

impl NodeSlices for KubeDraApi {
    fn wipe_node_slices<'a>(&'a self, node: &'a str) -> ApiFuture<'a, usize> {
        Box::pin(self.delete_node_slices(node))
    }
}

/// The node a stand-in kubelet runs as, and the API it deletes its slices
/// through when it starts.
#[derive(Clone)]
pub struct NodeSlicesApi {
    pub node: String,
    pub api: Arc<dyn NodeSlices>,
}

/// What the stand-in kubelet does for DRA.
#[derive(Clone)]
pub struct DraSettings {
    /// The `DRAPlugin` services it speaks, most preferred first:
    /// [`DraService::ALL`] as 1.34+, only `V1beta1` as 1.32 and 1.33.
    pub services: Vec<DraService>,
    /// Set: at start, delete the node's ResourceSlices as the kubelet does.
    pub node_slices: Option<NodeSlicesApi>,
}

impl Default for DraSettings {
    fn default() -> Self {
        DraSettings {
            services: DraService::ALL.to_vec(),
            node_slices: None,
        }
    }
}

/// What the stand-in knows about one registered (or refused) DRA driver.
#[derive(Debug, Clone, Default)]
pub struct DraPluginView {
    /// The DRA socket, as GetInfo gave it.
    pub endpoint: PathBuf,
    /// The service the kubelet chose; None while refused.
    pub service: Option<DraService>,
    /// What GetInfo listed.
    pub offered: Vec<String>,
    pub registrations: u32,
    pub rejections: u32,
    /// The error of the last `plugin_registered: false` sent.
    pub last_rejection: Option<String>,
}

/// One claim's answer, as the kubelet reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DraClaimAnswer {
    pub uid: String,
    /// The prepared devices (empty for Unprepare).
    pub devices: Vec<v1::Device>,
    /// The claim's error; a claim the driver did not answer is an error too.
    pub error: Option<String>,
}

fn proto_claim(claim: &ClaimRef) -> v1::Claim {
    v1::Claim {
        namespace: claim.namespace.clone(),
        uid: claim.uid.clone(),
        name: claim.name.clone(),
    }
}

fn error_of(error: &str) -> Option<String> {
    (!error.is_empty()).then(|| error.to_owned())
}

/// The answers in request order; a claim missing from the response is
/// an error, as the kubelet counts it.
fn in_order<A>(
    claims: &[ClaimRef],
    answers: &std::collections::HashMap<String, A>,
    read: impl Fn(&A) -> (Vec<v1::Device>, Option<String>),
) -> Vec<DraClaimAnswer> {
    claims
        .iter()
        .map(|claim| {
            let (devices, error) = answers.get(&claim.uid).map(&read).unwrap_or_else(|| {
                (
                    Vec::new(),
                    Some(format!("the driver gave no answer for claim {claim}")),
                )
            });
            DraClaimAnswer {
                uid: claim.uid.clone(),
                devices,
                error,
            }
        })
        .collect()
}

async fn timed<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(DRA_CALL_TIMEOUT, call)
        .await
        .map_err(|_| {
            tonic::Status::deadline_exceeded(format!(
                "{what}: no answer within {DRA_CALL_TIMEOUT:?}"
            ))
        })?
}

/// NodePrepareResources on `endpoint` in `service`.
pub async fn prepare(
    endpoint: &Path,
    service: DraService,
    claims: &[ClaimRef],
) -> Result<Vec<DraClaimAnswer>, super::kubelet_sim::SimError> {
    let channel = uds::connect(endpoint).await?;
    let request = v1::NodePrepareResourcesRequest {
        claims: claims.iter().map(proto_claim).collect(),
    };
    let response: v1::NodePrepareResourcesResponse = match service {
        DraService::V1 => {
            let mut client = v1::dra_plugin_client::DraPluginClient::new(channel);
            timed("NodePrepareResources", async {
                Ok(client.node_prepare_resources(request).await?.into_inner())
            })
            .await?
        }
        DraService::V1beta1 => {
            let mut client = v1beta1::dra_plugin_client::DraPluginClient::new(channel);
            let request: v1beta1::NodePrepareResourcesRequest = convert(&request)?;
            let response = timed("NodePrepareResources", async {
                Ok(client.node_prepare_resources(request).await?.into_inner())
            })
            .await?;
            convert(&response)?
        }
    };
    Ok(in_order(claims, &response.claims, |a| {
        (a.devices.clone(), error_of(&a.error))
    }))
}

/// NodeUnprepareResources on `endpoint` in `service`.
pub async fn unprepare(
    endpoint: &Path,
    service: DraService,
    claims: &[ClaimRef],
) -> Result<Vec<DraClaimAnswer>, super::kubelet_sim::SimError> {
    let channel = uds::connect(endpoint).await?;
    let request = v1::NodeUnprepareResourcesRequest {
        claims: claims.iter().map(proto_claim).collect(),
    };
    let response: v1::NodeUnprepareResourcesResponse = match service {
        DraService::V1 => {
            let mut client = v1::dra_plugin_client::DraPluginClient::new(channel);
            timed("NodeUnprepareResources", async {
                Ok(client.node_unprepare_resources(request).await?.into_inner())
            })
            .await?
        }
        DraService::V1beta1 => {
            let mut client = v1beta1::dra_plugin_client::DraPluginClient::new(channel);
            let request: v1beta1::NodeUnprepareResourcesRequest = convert(&request)?;
            let response = timed("NodeUnprepareResources", async {
                Ok(client.node_unprepare_resources(request).await?.into_inner())
            })
            .await?;
            convert(&response)?
        }
    };
    Ok(in_order(claims, &response.claims, |a| {
        (Vec::new(), error_of(&a.error))
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_kubelet_picks_the_newest_service_both_know() {
        let both = offered(&["v1beta1.DRAPlugin", "v1.DRAPlugin"]);
        assert_eq!(choose_service(&DraService::ALL, &both), Ok(DraService::V1));
        // a 1.32/1.33 kubelet
        assert_eq!(
            choose_service(&[DraService::V1beta1], &both),
            Ok(DraService::V1beta1)
        );
        // a driver offering only v1 to an older kubelet is refused
        let error =
            choose_service(&[DraService::V1beta1], &offered(&["v1.DRAPlugin"])).unwrap_err();
        assert!(error.contains("v1beta1.DRAPlugin"), "{error}");
        assert!(choose_service(&DraService::ALL, &[]).is_err());
        assert_eq!(DraService::parse("v1beta1"), Some(DraService::V1beta1));
        assert_eq!(DraService::parse("v1alpha4"), None);
    }
}
