//! The stand-in's objects: ResourceSlices (create, update with
//! `resourceVersion` conflicts, delete, list by the field selectors the API
//! supports) and ResourceClaims (put by tests, read as a
//! [`ClaimSource`]).

use super::selectors::FieldSelector;
use super::validate::validate_slice;
use crate::dra::api::{ApiError, ApiFuture, DraApi};
use crate::dra::claims::{ClaimSource, ClaimSourceError, ClaimView};
use crate::dra::publish::SliceAction;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What the API server would answer instead of the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandinError {
    /// 422 Unprocessable Entity.
    #[error("ResourceSlice {name:?} is invalid: {}", .reasons.join("; "))]
    Invalid { name: String, reasons: Vec<String> },
    /// 409 on create.
    #[error("ResourceSlice {name} already exists")]
    AlreadyExists { name: String },
    /// 409 on update: someone else changed it since it was read.
    #[error("ResourceSlice {name}: resourceVersion {sent:?} is not the current {current}")]
    Conflict {
        name: String,
        sent: Option<String>,
        current: String,
    },
    /// 404.
    #[error("ResourceSlice {name} not found")]
    NotFound { name: String },
    /// 422 for a field the API server keeps as it was created.
    #[error("ResourceSlice {name}: {field} is immutable")]
    Immutable { name: String, field: &'static str },
}

#[derive(Debug, Default)]
struct State {
    slices: BTreeMap<String, ResourceSlice>,
    claims: BTreeMap<(String, String), ResourceClaim>,
    /// Node name → UID.
    nodes: BTreeMap<String, String>,
    /// While set, every call through [`DraApi`] is unavailable (an API
    /// server that is down or not up yet).
    down: bool,
    /// Every write takes the next value, cluster-wide, as etcd's revision.
    revision: u64,
}

/// Shared by clones: every clone sees the same objects.
#[derive(Debug, Clone, Default)]
pub struct ApiServerStandin {
    state: Arc<Mutex<State>>,
}

impl ApiServerStandin {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // a panicking test thread cannot leave the maps half-changed
        // (every change is one insert or remove), so go on with them
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn name_of(slice: &ResourceSlice) -> String {
        slice.metadata.name.clone().unwrap_or_default()
    }

    fn check(slice: &ResourceSlice) -> Result<(), StandinError> {
        let reasons = validate_slice(slice);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(StandinError::Invalid {
                name: Self::name_of(slice),
                reasons,
            })
        }
    }

    /// Create; the answer carries the new `resourceVersion`.
    pub fn create_slice(&self, mut slice: ResourceSlice) -> Result<ResourceSlice, StandinError> {
        Self::check(&slice)?;
        let name = Self::name_of(&slice);
        let mut state = self.state();
        if state.slices.contains_key(&name) {
            return Err(StandinError::AlreadyExists { name });
        }
        state.revision += 1;
        slice.metadata.resource_version = Some(state.revision.to_string());
        slice.metadata.uid = Some(format!("slice-uid-{}", state.revision));
        state.slices.insert(name, slice.clone());
        Ok(slice)
    }

    /// Update: `metadata.resourceVersion` must be the stored one (an
    /// update without it is refused too, as we always send it).
    pub fn update_slice(&self, mut slice: ResourceSlice) -> Result<ResourceSlice, StandinError> {
        Self::check(&slice)?;
        let name = Self::name_of(&slice);
        let mut state = self.state();
        let current = state
            .slices
            .get(&name)
            .ok_or_else(|| StandinError::NotFound { name: name.clone() })?;
        let current_version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        if slice.metadata.resource_version.as_deref() != Some(current_version.as_str()) {
            return Err(StandinError::Conflict {
                name,
                sent: slice.metadata.resource_version,
                current: current_version,
            });
        }
        if current.spec.driver != slice.spec.driver {
            return Err(StandinError::Immutable {
                name,
                field: "spec.driver",
            });
        }
        if current.spec.node_name != slice.spec.node_name {
            return Err(StandinError::Immutable {
                name,
                field: "spec.nodeName",
            });
        }
        slice.metadata.uid = current.metadata.uid.clone();
        state.revision += 1;
        slice.metadata.resource_version = Some(state.revision.to_string());
        state.slices.insert(name, slice.clone());
        Ok(slice)
    }

    pub fn delete_slice(&self, name: &str) -> Result<(), StandinError> {
        let mut state = self.state();
        state
            .slices
            .remove(name)
            .ok_or_else(|| StandinError::NotFound { name: name.into() })?;
        state.revision += 1;
        Ok(())
    }

    /// List by `spec.nodeName` and `spec.driver`, in name order.
    pub fn list_slices(&self, node_name: Option<&str>, driver: Option<&str>) -> Vec<ResourceSlice> {
        self.select_slices(&FieldSelector::node_and_driver(node_name, driver))
    }

    /// List by any field selector the API server supports on slices, in
    /// name order.
    pub fn select_slices(&self, selector: &FieldSelector) -> Vec<ResourceSlice> {
        self.state()
            .slices
            .values()
            .filter(|s| selector.matches(s))
            .cloned()
            .collect()
    }

    /// What the kubelet does at start: delete every slice of the node.
    pub fn delete_node_slices(&self, node_name: &str) -> usize {
        let mut state = self.state();
        let before = state.slices.len();
        state
            .slices
            .retain(|_, s| s.spec.node_name.as_deref() != Some(node_name));
        before - state.slices.len()
    }

    /// Store a claim as the scheduler left it (allocation included).
    pub fn put_claim(&self, claim: ResourceClaim) {
        let key = (
            claim.metadata.namespace.clone().unwrap_or_default(),
            claim.metadata.name.clone().unwrap_or_default(),
        );
        let mut state = self.state();
        state.revision += 1;
        state.claims.insert(key, claim);
    }

    pub fn delete_claim(&self, namespace: &str, name: &str) -> bool {
        self.state()
            .claims
            .remove(&(namespace.to_owned(), name.to_owned()))
            .is_some()
    }

    pub fn get_claim(&self, namespace: &str, name: &str) -> Option<ResourceClaim> {
        self.state()
            .claims
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

impl ApiServerStandin {
    /// A Node object, for the UID that owns its slices.
    pub fn put_node(&self, name: &str, uid: &str) {
        let mut state = self.state();
        state.revision += 1;
        state.nodes.insert(name.to_owned(), uid.to_owned());
    }

    /// The UID of the Node object `name`, if there is one.
    pub fn node_uid(&self, name: &str) -> Option<String> {
        self.state().nodes.get(name).cloned()
    }

    /// Take the stand-in down (every [`DraApi`] call unavailable) or up.
    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    pub fn is_down(&self) -> bool {
        self.state().down
    }

    fn up(&self) -> Result<(), ApiError> {
        match self.state().down {
            true => Err(ApiError::Unavailable(
                "connection refused (stand-in down)".into(),
            )),
            false => Ok(()),
        }
    }
}

impl From<StandinError> for ApiError {
    fn from(error: StandinError) -> Self {
        match error {
            StandinError::AlreadyExists { .. } | StandinError::Conflict { .. } => {
                ApiError::Conflict(error.to_string())
            }
            StandinError::NotFound { .. } => ApiError::NotFound(error.to_string()),
            StandinError::Invalid { .. } | StandinError::Immutable { .. } => {
                ApiError::Refused(error.to_string())
            }
        }
    }
}

impl DraApi for ApiServerStandin {
    fn get_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<ClaimView>> {
        Box::pin(async move {
            self.up()?;
            Ok(ApiServerStandin::get_claim(self, namespace, name)
                .as_ref()
                .map(ClaimView::from_v1))
        })
    }

    fn node_uid<'a>(&'a self, node: &'a str) -> ApiFuture<'a, String> {
        Box::pin(async move {
            self.up()?;
            self.node_uid(node)
                .ok_or_else(|| ApiError::NotFound(format!("nodes \"{node}\" not found")))
        })
    }

    fn list_slices<'a>(
        &'a self,
        node: &'a str,
        driver: &'a str,
    ) -> ApiFuture<'a, Vec<ResourceSlice>> {
        Box::pin(async move {
            self.up()?;
            Ok(ApiServerStandin::list_slices(
                self,
                Some(node),
                Some(driver),
            ))
        })
    }

    fn write_slice(&self, action: SliceAction) -> ApiFuture<'_, ()> {
        Box::pin(async move {
            self.up()?;
            match action {
                SliceAction::Create(slice) => self.create_slice(slice).map(drop)?,
                SliceAction::Update(slice) => self.update_slice(slice).map(drop)?,
                SliceAction::Delete(name) => self.delete_slice(&name)?,
            }
            Ok(())
        })
    }
}

impl ClaimSource for ApiServerStandin {
    async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ClaimView>, ClaimSourceError> {
        Ok(self
            .get_claim(namespace, name)
            .as_ref()
            .map(ClaimView::from_v1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dra::slices::{pool_slices, NodeRef, SliceContext};
    use crate::pool::{Pool, PoolDevice};
    use std::collections::HashMap;

    fn slice(name: &str, node: &str) -> ResourceSlice {
        let mut s = ResourceSlice::default();
        s.metadata.name = Some(name.into());
        s.spec.driver = "sriov-rs.invalid".into();
        s.spec.node_name = Some(node.into());
        s.spec.pool.name = format!("{node}/intel.com/sriov-net");
        s.spec.pool.resource_slice_count = 1;
        s
    }

    #[test]
    fn create_update_conflict_delete() {
        let api = ApiServerStandin::new();
        let created = api.create_slice(slice("a", "worker-1")).unwrap();
        assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
        assert_eq!(
            api.create_slice(slice("a", "worker-1")).unwrap_err(),
            StandinError::AlreadyExists { name: "a".into() }
        );
        // an update from a stale read is a conflict
        let mut stale = created.clone();
        stale.spec.pool.generation = 2;
        let updated = api.update_slice(stale.clone()).unwrap();
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("2"));
        assert!(matches!(
            api.update_slice(stale).unwrap_err(),
            StandinError::Conflict { ref current, .. } if current == "2"
        ));
        let mut no_version = updated.clone();
        no_version.metadata.resource_version = None;
        assert!(matches!(
            api.update_slice(no_version),
            Err(StandinError::Conflict { sent: None, .. })
        ));
        let mut moved = updated.clone();
        moved.spec.node_name = Some("worker-2".into());
        moved.spec.pool.name = "worker-2/intel.com/sriov-net".into();
        assert_eq!(
            api.update_slice(moved).unwrap_err(),
            StandinError::Immutable {
                name: "a".into(),
                field: "spec.nodeName"
            }
        );
        api.delete_slice("a").unwrap();
        assert_eq!(
            api.update_slice(updated).unwrap_err(),
            StandinError::NotFound { name: "a".into() }
        );
        assert!(api.delete_slice("a").is_err());
    }

    #[test]
    fn invalid_slices_are_refused_with_reasons() {
        let api = ApiServerStandin::new();
        let mut bad = slice("b", "worker-1");
        bad.spec.all_nodes = Some(true);
        let error = api.create_slice(bad).unwrap_err();
        assert!(
            error.to_string().contains("exactly one of nodeName"),
            "{error}"
        );
        assert!(api.list_slices(None, None).is_empty());
    }

    #[test]
    fn field_selectors_and_the_kubelets_cleanup() {
        let api = ApiServerStandin::new();
        api.create_slice(slice("a", "worker-1")).unwrap();
        api.create_slice(slice("b", "worker-2")).unwrap();
        let mut other = slice("c", "worker-1");
        other.spec.driver = "gpu.example.com".into();
        api.create_slice(other).unwrap();
        let names = |slices: Vec<ResourceSlice>| -> Vec<String> {
            slices.into_iter().filter_map(|s| s.metadata.name).collect()
        };
        assert_eq!(
            names(api.list_slices(Some("worker-1"), Some("sriov-rs.invalid"))),
            ["a"]
        );
        assert_eq!(names(api.list_slices(Some("worker-1"), None)), ["a", "c"]);
        assert_eq!(api.delete_node_slices("worker-1"), 2);
        assert_eq!(names(api.list_slices(None, None)), ["b"]);
    }

    #[test]
    fn what_slices_builds_for_300_vfs_is_accepted() {
        let devices: Vec<PoolDevice> = (0..300u32)
            .map(|i| {
                let id = format!(
                    "0000:{:02x}:{:02x}.{}",
                    0x3b + i / 100,
                    (i % 100) / 8 + 1,
                    i % 8
                );
                PoolDevice {
                    vf_index: Some(i % 100),
                    numa_node: Some(1),
                    ..crate::pool::test_vf(&id)
                }
            })
            .collect();
        let pool = Pool {
            resource_name: "intel.com/sriov_net".into(),
            device_type: "netDevice",
            exclude_topology: false,
            allocation_policy: None,
            resource: 0,
            devices,
        };
        let node = NodeRef {
            name: "worker-1".into(),
            uid: "u".into(),
        };
        let roots = HashMap::from([("0000:3b:01.0".to_string(), "pci0000:3a".to_string())]);
        let ctx = SliceContext {
            driver: "sriov-rs.invalid",
            node: &node,
            pcie_roots: &roots,
        };
        let api = ApiServerStandin::new();
        for slice in pool_slices(&ctx, &pool, 1).unwrap() {
            api.create_slice(slice).unwrap();
        }
        let listed = api.list_slices(Some("worker-1"), Some("sriov-rs.invalid"));
        assert_eq!(listed.len(), 3);
        // one slice too many devices: what dra-driver-sriov publishes
        let mut one = listed[0].clone();
        one.metadata.name = Some("all-in-one".into());
        one.metadata.resource_version = None;
        one.spec.devices = Some(
            listed
                .iter()
                .flat_map(|s| s.spec.devices.clone().unwrap())
                .collect(),
        );
        assert!(matches!(
            api.create_slice(one),
            Err(StandinError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn claims_are_served_as_a_claim_source() {
        let api = ApiServerStandin::new();
        let mut claim = ResourceClaim::default();
        claim.metadata.namespace = Some("default".into());
        claim.metadata.name = Some("net".into());
        claim.metadata.uid = Some("uid-1".into());
        api.put_claim(claim);
        let view = api.get("default", "net").await.unwrap().unwrap();
        assert_eq!(view.uid, "uid-1");
        assert!(!view.allocated);
        assert_eq!(api.get("default", "other").await.unwrap(), None);
        assert!(api.delete_claim("default", "net"));
    }

    #[tokio::test]
    async fn through_the_dra_api_handle_as_the_daemon_sees_it() {
        let standin = ApiServerStandin::new();
        standin.put_node("worker-1", "node-uid-1");
        let api: Arc<dyn DraApi> = Arc::new(standin.clone());
        assert_eq!(api.node_uid("worker-1").await.unwrap(), "node-uid-1");
        assert!(matches!(
            api.node_uid("worker-2").await,
            Err(ApiError::NotFound(_))
        ));
        api.write_slice(SliceAction::Create(slice("a", "worker-1")))
            .await
            .unwrap();
        // a second create is the API's 409
        assert!(matches!(
            api.write_slice(SliceAction::Create(slice("a", "worker-1")))
                .await,
            Err(ApiError::Conflict(_))
        ));
        let listed = api
            .list_slices("worker-1", "sriov-rs.invalid")
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert!(api
            .list_slices("worker-1", "other.example.com")
            .await
            .unwrap()
            .is_empty());
        // down: every call unavailable, nothing written
        standin.set_down(true);
        assert!(matches!(
            api.write_slice(SliceAction::Delete("a".into())).await,
            Err(ApiError::Unavailable(_))
        ));
        assert!(matches!(
            ClaimSource::get(&api, "default", "net").await,
            Err(ClaimSourceError::Unavailable { .. })
        ));
        standin.set_down(false);
        api.write_slice(SliceAction::Delete("a".into()))
            .await
            .unwrap();
        assert!(standin.list_slices(None, None).is_empty());
    }
}
