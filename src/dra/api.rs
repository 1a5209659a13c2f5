//! What the DRA side of the daemon asks of the API server, as one
//! object-safe trait: the daemon holds an `Arc<dyn DraApi>`, the `kube`
//! client implements it against a real API server (choosing
//! `resource.k8s.io/v1` or `v1beta1` itself), and the in-process stand-in
//! implements it for tests. Objects cross it as `resource.k8s.io/v1`
//! types whatever version the server speaks.

use super::claims::{ClaimSource, ClaimSourceError, ClaimView};
use super::publish::SliceAction;
use k8s_openapi::api::resource::v1::ResourceSlice;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A call's answer, boxed so that the trait stays object-safe.
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Why a call did not do what was asked; the variant says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Not answered (connection refused, timeout, 5xx, 429): retry with
    /// backoff.
    #[error("API server unavailable: {0}")]
    Unavailable(String),
    /// 409: the object changed since it was read (or already exists): list
    /// again and start over.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 404: the object named is not there (a slice deleted since it was
    /// listed, say by a restarting kubelet: list again; a missing Node).
    #[error("not found: {0}")]
    NotFound(String),
    /// Refused for good (422 invalid, 403 forbidden): a bug or missing
    /// RBAC; logged, not retried at once.
    #[error("refused: {0}")]
    Refused(String),
}

pub trait DraApi: Send + Sync {
    /// A ResourceClaim; None when there is none.
    fn get_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<ClaimView>>;

    /// The Node object's UID, which owns the node's slices.
    fn node_uid<'a>(&'a self, node: &'a str) -> ApiFuture<'a, String>;

    /// The slices of one node and driver (field selectors `spec.nodeName`
    /// and `spec.driver`), with their `resourceVersion`s.
    fn list_slices<'a>(
        &'a self,
        node: &'a str,
        driver: &'a str,
    ) -> ApiFuture<'a, Vec<ResourceSlice>>;

    /// One write, as [`super::publish::reconcile`] planned it.
    fn write_slice(&self, action: SliceAction) -> ApiFuture<'_, ()>;
}

/// Claims read through the daemon's API handle, for the `DRAPlugin`
/// service.
impl ClaimSource for Arc<dyn DraApi> {
    async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ClaimView>, ClaimSourceError> {
        self.get_claim(namespace, name)
            .await
            .map_err(|error| ClaimSourceError::Unavailable {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                message: error.to_string(),
            })
    }
}
