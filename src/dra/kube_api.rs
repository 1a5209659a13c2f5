//! [`DraApi`] against a real API server, through the `kube` client: the
//! one module where DRA speaks HTTP. It picks `resource.k8s.io/v1`
//! (Kubernetes 1.34+) or `v1beta1` (1.32, 1.33) by API discovery on the
//! first call, discovers again when the server answers 404 for the chosen
//! group version (an upgrade or downgrade under us), converts v1beta1
//! objects to and from the `v1` ones the rest of `dra` uses, bounds every
//! request with a timeout, and turns HTTP answers into [`ApiError`]s whose
//! messages name the object.

use super::api::{ApiError, ApiFuture, DraApi};
use super::claims::ClaimView;
use super::publish::SliceAction;
use super::v1beta1::{slice_from_v1beta1, slice_to_v1beta1, ConversionError};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::{v1, v1beta1};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The API group of ResourceSlices and ResourceClaims.
pub const RESOURCE_GROUP: &str = "resource.k8s.io";

/// How long one request may take, connection included: a hung API server
/// must not hold up a Prepare call or the publisher for longer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Who writes our slices, as the API server records it (`managedFields`).
pub const FIELD_MANAGER: &str = "sriov-device-plugin";

/// The `resource.k8s.io` versions we speak, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceApiVersion {
    /// GA, Kubernetes 1.34 and later.
    V1,
    /// Kubernetes 1.32 and 1.33 (still served, deprecated, later).
    V1beta1,
}

impl ResourceApiVersion {
    /// Discovery picks the first of these the server offers.
    pub const PREFERENCE: [ResourceApiVersion; 2] =
        [ResourceApiVersion::V1, ResourceApiVersion::V1beta1];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceApiVersion::V1 => "v1",
            ResourceApiVersion::V1beta1 => "v1beta1",
        }
    }

    pub fn parse(version: &str) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|v| v.as_str() == version)
    }

    /// `resource.k8s.io/v1` and so on.
    pub fn group_version(self) -> String {
        format!("{RESOURCE_GROUP}/{}", self.as_str())
    }
}

impl std::fmt::Display for ResourceApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why no client could be built (nothing was asked of the server yet).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("no --kubeconfig, and no usable KUBECONFIG, ~/.kube/config or in-cluster service account: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("API client for {url}: {source}")]
    Client { url: String, source: kube::Error },
}

/// Why one call failed, before it becomes an [`ApiError`].
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Convert(#[from] ConversionError),
}

impl CallError {
    /// A 404 that is about the path, not an object: the API server no
    /// longer serves the group version (its "could not find the requested
    /// resource" Status names no object, or a proxy's plain-text 404).
    fn is_group_version_gone(&self) -> bool {
        match self {
            CallError::Kube(kube::Error::Api(status)) => {
                status.code == 404 && !names_an_object(status)
            }
            _ => false,
        }
    }

    /// `what` (the call, naming the object) failed: what the caller
    /// should do next.
    fn into_api_error(self, what: &str) -> ApiError {
        match self {
            CallError::Kube(kube::Error::Api(status)) => {
                let message = format!(
                    "{what}: {} (HTTP {}{})",
                    status.message,
                    status.code,
                    if status.reason.is_empty() {
                        String::new()
                    } else {
                        format!(", {}", status.reason)
                    }
                );
                match status.code {
                    409 => ApiError::Conflict(message),
                    404 => ApiError::NotFound(message),
                    429 | 500..=599 => ApiError::Unavailable(message),
                    _ => ApiError::Refused(message),
                }
            }
            // not answered: connection refused or reset, TLS, the
            // credentials not readable right now
            CallError::Kube(
                error @ (kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::Auth(_)),
            ) => ApiError::Unavailable(format!("{what}: {error}")),
            CallError::Timeout(_) => ApiError::Unavailable(format!("{what}: {self}")),
            // an answer we cannot read, or an object we cannot convert
            CallError::Kube(_) | CallError::Convert(_) => {
                ApiError::Refused(format!("{what}: {self}"))
            }
        }
    }
}

/// A NotFound Status for an object carries its name in `details`.
fn names_an_object(status: &kube::core::Status) -> bool {
    status
        .details
        .as_ref()
        .is_some_and(|details| !details.name.is_empty())
}

/// A missing object (not a missing group version).
fn is_object_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404 && names_an_object(status))
}

/// The API server, as the DRA side of the daemon needs it.
pub struct KubeDraApi {
    client: Client,
    timeout: Duration,
    /// What discovery chose; None before the first call and after the
    /// server stopped serving it. Never held across an await.
    version: Mutex<Option<ResourceApiVersion>>,
}

/// The daemon's handle: `kubeconfig` given, that file; None, what
/// `kube::Config::infer` finds (`KUBECONFIG`, `~/.kube/config`, then the
/// in-cluster service account, which is what a pod has). Asks the server
/// nothing: a server that is not up yet fails the first call
/// ([`ApiError::Unavailable`]), not this.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Arc<dyn DraApi>, ConnectError> {
    Ok(Arc::new(KubeDraApi::connect(kubeconfig).await?))
}

impl KubeDraApi {
    /// See [`connect`].
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, ConnectError> {
        let config = match kubeconfig {
            Some(path) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|source| ConnectError::Kubeconfig {
                        path: path.to_owned(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|source| ConnectError::Kubeconfig {
                        path: path.to_owned(),
                        source,
                    })?
            }
            None => Config::infer().await?,
        };
        let url = config.cluster_url.to_string();
        let client =
            Client::try_from(config).map_err(|source| ConnectError::Client { url, source })?;
        Ok(Self::new(client))
    }

    pub fn new(client: Client) -> Self {
        KubeDraApi {
            client,
            timeout: REQUEST_TIMEOUT,
            version: Mutex::new(None),
        }
    }

    /// Another bound than [`REQUEST_TIMEOUT`] for each request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn cached_version(&self) -> Option<ResourceApiVersion> {
        *self
            .version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_version(&self, version: Option<ResourceApiVersion>) {
        *self
            .version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = version;
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// The version this client speaks: the cached choice, or discovery's
    /// (`GET /apis`, then the chosen group version's resource list).
    pub async fn resource_version(&self) -> Result<ResourceApiVersion, ApiError> {
        if let Some(version) = self.cached_version() {
            return Ok(version);
        }
        let what = format!("discover {RESOURCE_GROUP} (GET /apis)");
        let groups = self
            .timed(async { Ok(self.client.list_api_groups().await?) })
            .await
            .map_err(|e| e.into_api_error(&what))?;
        let offered: Vec<String> = groups
            .groups
            .iter()
            .filter(|group| group.name == RESOURCE_GROUP)
            .flat_map(|group| group.versions.iter().map(|v| v.version.clone()))
            .collect();
        let version = ResourceApiVersion::PREFERENCE
            .into_iter()
            .find(|v| offered.iter().any(|o| o == v.as_str()))
            .ok_or_else(|| {
                ApiError::Refused(format!(
                    "{what}: the API server offers {RESOURCE_GROUP} versions {offered:?}, none of \
                     v1 (Kubernetes 1.34+) or v1beta1 (1.32 and 1.33 with the DRA API enabled)"
                ))
            })?;
        let group_version = version.group_version();
        let what = format!("discover {group_version} (GET /apis/{group_version})");
        let resources = self
            .timed(async { Ok(self.client.list_api_group_resources(&group_version).await?) })
            .await
            .map_err(|e| e.into_api_error(&what))?;
        let missing: Vec<&str> = ["resourceslices", "resourceclaims"]
            .into_iter()
            .filter(|name| !resources.resources.iter().any(|r| r.name == *name))
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::Refused(format!(
                "{what}: the API server does not serve {}",
                missing.join(", ")
            )));
        }
        tracing::info!(api = %group_version, "DRA: speaking this API version, chosen by discovery");
        self.set_version(Some(version));
        Ok(version)
    }

    /// One call in the discovered version; if the server answers that it
    /// no longer serves that version, discover again and try once more.
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ApiError>
    where
        F: Fn(ResourceApiVersion) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let version = self.resource_version().await?;
        match self.timed(call(version)).await {
            Err(error) if error.is_group_version_gone() => {
                tracing::warn!(api = %version.group_version(), %error, "DRA: the API server no longer serves this version; discovering again");
                self.set_version(None);
                let again = self.resource_version().await?;
                self.timed(call(again))
                    .await
                    .map_err(|e| e.into_api_error(&format!("{what} ({})", again.group_version())))
            }
            answer => answer
                .map_err(|e| e.into_api_error(&format!("{what} ({})", version.group_version()))),
        }
    }

    fn post_params() -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        }
    }

    /// What the kubelet does when it starts: delete every ResourceSlice of
    /// `node`, whatever the driver (one DeleteCollection with the field
    /// selector `spec.nodeName`). For the stand-in kubelet; the daemon
    /// never deletes other drivers' slices. Answers how many went.
    pub async fn delete_node_slices(&self, node: &str) -> Result<usize, ApiError> {
        let what = format!("delete the ResourceSlices of node {node}");
        let selector = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let params = DeleteParams::default();
        let (selector, params) = (&selector, &params);
        self.call(&what, |version| async move {
            let deleted = match version {
                ResourceApiVersion::V1 => Api::<v1::ResourceSlice>::all(self.client.clone())
                    .delete_collection(params, selector)
                    .await?
                    .left()
                    .map_or(0, |list| list.items.len()),
                ResourceApiVersion::V1beta1 => {
                    Api::<v1beta1::ResourceSlice>::all(self.client.clone())
                        .delete_collection(params, selector)
                        .await?
                        .left()
                        .map_or(0, |list| list.items.len())
                }
            };
            Ok(deleted)
        })
        .await
    }

    async fn get_claim_view(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ClaimView>, ApiError> {
        let what = format!("get ResourceClaim {namespace}/{name}");
        self.call(&what, |version| async move {
            let claim = match version {
                ResourceApiVersion::V1 => {
                    Api::<v1::ResourceClaim>::namespaced(self.client.clone(), namespace)
                        .get(name)
                        .await
                        .map(|claim| ClaimView::from_v1(&claim))
                }
                ResourceApiVersion::V1beta1 => {
                    Api::<v1beta1::ResourceClaim>::namespaced(self.client.clone(), namespace)
                        .get(name)
                        .await
                        .map(|claim| ClaimView::from_v1beta1(&claim))
                }
            };
            match claim {
                Ok(view) => Ok(Some(view)),
                Err(error) if is_object_not_found(&error) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    async fn get_node_uid(&self, node: &str) -> Result<String, ApiError> {
        let what = format!("get Node {node}");
        let found = self
            .timed(async { Ok(Api::<Node>::all(self.client.clone()).get(node).await?) })
            .await
            .map_err(|e| e.into_api_error(&what))?;
        found
            .metadata
            .uid
            .filter(|uid| !uid.is_empty())
            .ok_or_else(|| ApiError::Refused(format!("{what}: the Node has no metadata.uid")))
    }

    async fn list(&self, node: &str, driver: &str) -> Result<Vec<v1::ResourceSlice>, ApiError> {
        let what = format!("list ResourceSlices of node {node} and driver {driver}");
        let selector =
            ListParams::default().fields(&format!("spec.nodeName={node},spec.driver={driver}"));
        let selector = &selector;
        self.call(&what, |version| async move {
            match version {
                ResourceApiVersion::V1 => Ok(Api::<v1::ResourceSlice>::all(self.client.clone())
                    .list(selector)
                    .await?
                    .items),
                ResourceApiVersion::V1beta1 => {
                    let listed = Api::<v1beta1::ResourceSlice>::all(self.client.clone())
                        .list(selector)
                        .await?;
                    let slices: Result<Vec<_>, _> =
                        listed.items.iter().map(slice_from_v1beta1).collect();
                    Ok(slices?)
                }
            }
        })
        .await
    }

    async fn write(&self, action: SliceAction) -> Result<(), ApiError> {
        let (verb, name) = match &action {
            SliceAction::Create(slice) => ("create", slice.metadata.name.clone()),
            SliceAction::Update(slice) => ("replace", slice.metadata.name.clone()),
            SliceAction::Delete(name) => ("delete", Some(name.clone())),
        };
        let name = name.unwrap_or_default();
        let what = format!("{verb} ResourceSlice {name}");
        let (action, name, params) = (&action, name.as_str(), &Self::post_params());
        self.call(&what, |version| async move {
            match (version, action) {
                (ResourceApiVersion::V1, SliceAction::Create(slice)) => {
                    Api::<v1::ResourceSlice>::all(self.client.clone())
                        .create(params, slice)
                        .await?;
                }
                (ResourceApiVersion::V1, SliceAction::Update(slice)) => {
                    Api::<v1::ResourceSlice>::all(self.client.clone())
                        .replace(name, params, slice)
                        .await?;
                }
                (ResourceApiVersion::V1beta1, SliceAction::Create(slice)) => {
                    Api::<v1beta1::ResourceSlice>::all(self.client.clone())
                        .create(params, &slice_to_v1beta1(slice)?)
                        .await?;
                }
                (ResourceApiVersion::V1beta1, SliceAction::Update(slice)) => {
                    Api::<v1beta1::ResourceSlice>::all(self.client.clone())
                        .replace(name, params, &slice_to_v1beta1(slice)?)
                        .await?;
                }
                (ResourceApiVersion::V1, SliceAction::Delete(_)) => {
                    Api::<v1::ResourceSlice>::all(self.client.clone())
                        .delete(name, &DeleteParams::default())
                        .await?;
                }
                (ResourceApiVersion::V1beta1, SliceAction::Delete(_)) => {
                    Api::<v1beta1::ResourceSlice>::all(self.client.clone())
                        .delete(name, &DeleteParams::default())
                        .await?;
                }
            }
            Ok(())
        })
        .await
    }
}

impl DraApi for KubeDraApi {
    fn get_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<ClaimView>> {
        Box::pin(self.get_claim_view(namespace, name))
    }

    fn node_uid<'a>(&'a self, node: &'a str) -> ApiFuture<'a, String> {
        Box::pin(self.get_node_uid(node))
    }

    fn list_slices<'a>(
        &'a self,
        node: &'a str,
        driver: &'a str,
    ) -> ApiFuture<'a, Vec<v1::ResourceSlice>> {
        Box::pin(self.list(node, driver))
    }

    fn write_slice(&self, action: SliceAction) -> ApiFuture<'_, ()> {
        Box::pin(self.write(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::StatusDetails;
    use kube::core::Status;

    fn status(code: u16, reason: &str, object: Option<&str>) -> CallError {
        let mut status = Status::failure("the message", reason).with_code(code);
        // as the API server sends them: an object's name, or nothing
        status.details = object.map(|name| StatusDetails {
            name: name.into(),
            group: RESOURCE_GROUP.into(),
            kind: "resourceslices".into(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds: 0,
        });
        CallError::Kube(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn http_answers_become_what_to_do_next() {
        let what = "replace ResourceSlice s-0";
        let cases = [
            (409, "Conflict", ApiError::Conflict(String::new())),
            (429, "TooManyRequests", ApiError::Unavailable(String::new())),
            (500, "InternalError", ApiError::Unavailable(String::new())),
            (
                503,
                "ServiceUnavailable",
                ApiError::Unavailable(String::new()),
            ),
            (403, "Forbidden", ApiError::Refused(String::new())),
            (404, "NotFound", ApiError::NotFound(String::new())),
            (422, "Invalid", ApiError::Refused(String::new())),
        ];
        for (code, reason, expected) in cases {
            let error = status(code, reason, Some("s-0")).into_api_error(what);
            assert_eq!(
                std::mem::discriminant(&error),
                std::mem::discriminant(&expected),
                "{code}: {error}"
            );
            assert!(
                error.to_string().contains(what) && error.to_string().contains("the message"),
                "{error}"
            );
        }
        let timeout = CallError::Timeout(Duration::from_secs(10)).into_api_error(what);
        assert!(matches!(timeout, ApiError::Unavailable(ref m) if m.contains("no answer within")));
    }

    #[test]
    fn a_404_naming_no_object_is_the_group_version_gone() {
        assert!(status(404, "NotFound", None).is_group_version_gone());
        assert!(status(404, "Failed to parse error data", None).is_group_version_gone());
        assert!(!status(404, "NotFound", Some("s-0")).is_group_version_gone());
        assert!(!status(409, "Conflict", None).is_group_version_gone());
    }

    #[test]
    fn versions_in_preference_order() {
        assert_eq!(
            ResourceApiVersion::parse("v1beta1"),
            Some(ResourceApiVersion::V1beta1)
        );
        assert_eq!(ResourceApiVersion::parse("v1beta2"), None);
        assert_eq!(ResourceApiVersion::V1.group_version(), "resource.k8s.io/v1");
    }
}
