//! The API server's REST answers over the stand-in's store, pure: a
//! request (method, path, query, body) in, a status and a JSON body out.
//! [`super::http`] serves them; see there for the paths.
//!
//! Errors are `Status` objects with the code and reason the API server
//! gives; paths it does not serve are its 404 "could not find the
//! requested resource", which names no object. Bodies are refused as the
//! API server refuses them: not JSON, another `apiVersion` than the path's,
//! another `kind`, a name that is not the URL's on replace, then the
//! store's validation.

use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ApiServerStandin, StandinError};
use crate::dra::kube_api::{ResourceApiVersion, RESOURCE_GROUP};
use crate::dra::v1beta1::{slice_from_v1beta1, slice_to_v1beta1};
use hyper::{Method, StatusCode};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::{v1, v1beta1};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ObjectMeta, ServerAddressByClientCIDR,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Mutex;

/// One answer: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            status: StatusCode::OK,
            body,
        }
    }

    fn created(body: Value) -> Self {
        Reply {
            status: StatusCode::CREATED,
            body,
        }
    }

    /// A failure `Status` as the API server writes it.
    fn status(
        status: StatusCode,
        reason: &str,
        message: impl Into<String>,
        details: Value,
    ) -> Self {
        Reply {
            status,
            body: json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message.into(),
                "reason": reason,
                "details": details,
                "code": status.as_u16(),
            }),
        }
    }

    /// A path the server does not serve (a group version it does not
    /// offer, an unknown resource): the Status names no object.
    fn path_not_found() -> Self {
        Self::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            json!({}),
        )
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
    }

    fn method_not_allowed(method: &Method) -> Self {
        Self::status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
            json!({}),
        )
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            message,
            json!({}),
        )
    }
}

fn details(kind: &str, name: &str) -> Value {
    json!({"name": name, "group": RESOURCE_GROUP, "kind": kind})
}

/// The store's refusals as the API server words them.
fn store_error(error: StandinError) -> Reply {
    let qualified = format!("resourceslices.{RESOURCE_GROUP}");
    match error {
        StandinError::Invalid { name, reasons } => {
            let causes: Vec<Value> = reasons
                .iter()
                .map(|reason| {
                    let field = reason.split_once(':').map_or("", |(field, _)| field);
                    json!({"reason": "FieldValueInvalid", "message": reason, "field": field})
                })
                .collect();
            let mut details = details("ResourceSlice", &name);
            details["causes"] = Value::Array(causes);
            Reply::status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "ResourceSlice.{RESOURCE_GROUP} {name:?} is invalid: [{}]",
                    reasons.join(", ")
                ),
                details,
            )
        }
        StandinError::Immutable { name, field } => Reply::status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("ResourceSlice.{RESOURCE_GROUP} {name:?} is invalid: {field}: field is immutable"),
            details("ResourceSlice", &name),
        ),
        StandinError::AlreadyExists { name } => Reply::status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{qualified} {name:?} already exists"),
            details("resourceslices", &name),
        ),
        StandinError::Conflict { name, sent, current } => Reply::status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} {name:?}: the object has been modified \
                 (resourceVersion {} sent, {current} current); please apply your changes to the \
                 latest version and try again",
                sent.as_deref().unwrap_or("none")
            ),
            details("resourceslices", &name),
        ),
        StandinError::NotFound { name } => Reply::status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{qualified} {name:?} not found"),
            details("resourceslices", &name),
        ),
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, Reply> {
    serde_json::to_value(value).map_err(|e| Reply::internal(format!("encoding the answer: {e}")))
}

/// A v1 claim as v1beta1: the requests' `exactly` fields move up into the
/// request (v1beta1 has them there); allocation results are the same. Read
/// back as the typed v1beta1 claim so that the answer is one a v1beta1
/// client reads.
fn claim_to_v1beta1(claim: &v1::ResourceClaim) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(claim)?;
    if let Some(requests) = value
        .pointer_mut("/spec/devices/requests")
        .and_then(Value::as_array_mut)
    {
        for request in requests.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::Object(exactly)) = request.remove("exactly") {
                request.extend(exactly);
            }
        }
    }
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "apiVersion".into(),
            ResourceApiVersion::V1beta1.group_version().into(),
        );
    }
    let typed: v1beta1::ResourceClaim = serde_json::from_value(value)?;
    serde_json::to_value(typed)
}

/// The request's query parameters we read.
#[derive(Default)]
struct Query {
    field_selector: FieldSelector,
    label_selector: LabelSelector,
}

impl Query {
    fn parse(query: &str) -> Result<Self, Reply> {
        let mut parsed = Query::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "fieldSelector" => {
                    parsed.field_selector =
                        FieldSelector::parse(&value).map_err(Reply::bad_request)?
                }
                "labelSelector" => {
                    parsed.label_selector =
                        LabelSelector::parse(&value).map_err(Reply::bad_request)?
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// What the server answers from: the store, the versions it offers now,
/// its address (for `/api`).
pub(super) struct Routes {
    pub(super) api: ApiServerStandin,
    pub(super) versions: Mutex<Vec<ResourceApiVersion>>,
    /// Where it listens, for `/api`.
    pub(super) addr: SocketAddr,
}

impl Routes {
    fn versions(&self) -> Vec<ResourceApiVersion> {
        self.versions
            .lock()
            .map(|v| v.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub(super) fn answer(&self, method: &Method, path: &str, query: &str, body: &[u8]) -> Reply {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let get = method == Method::GET;
        match segments.as_slice() {
            ["api"] if get => self.core_versions(),
            ["api", "v1"] if get => Self::core_resources(),
            ["api", "v1", "nodes", name] if get => self.node(name),
            ["apis"] if get => Self::ok_json(&APIGroupList {
                groups: self.group().into_iter().collect(),
            }),
            ["apis", group] if get && *group == RESOURCE_GROUP => match self.group() {
                Some(group) => Self::ok_json(&group),
                None => Reply::path_not_found(),
            },
            ["apis", group, version, rest @ ..] if *group == RESOURCE_GROUP => {
                match ResourceApiVersion::parse(version).filter(|v| self.versions().contains(v)) {
                    Some(version) => self.resource(method, version, rest, query, body),
                    None => Reply::path_not_found(),
                }
            }
            ["api"] | ["api", "v1"] | ["api", "v1", "nodes", _] | ["apis"] | ["apis", _] => {
                Reply::method_not_allowed(method)
            }
            _ => Reply::path_not_found(),
        }
    }

    fn ok_json(value: &impl serde::Serialize) -> Reply {
        to_json(value).map_or_else(|reply| reply, Reply::ok)
    }

    fn core_versions(&self) -> Reply {
        Self::ok_json(&APIVersions {
            versions: vec!["v1".into()],
            server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                client_cidr: "0.0.0.0/0".into(),
                server_address: self.addr.to_string(),
            }],
        })
    }

    fn resource_entry(name: &str, kind: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        APIResource {
            name: name.into(),
            singular_name: kind.to_lowercase(),
            namespaced,
            kind: kind.into(),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    fn core_resources() -> Reply {
        Self::ok_json(&APIResourceList {
            group_version: "v1".into(),
            resources: vec![Self::resource_entry("nodes", "Node", false, &["get"])],
        })
    }

    /// `resource.k8s.io` with the versions offered now; None if none.
    fn group(&self) -> Option<APIGroup> {
        let versions: Vec<GroupVersionForDiscovery> = self
            .versions()
            .into_iter()
            .map(|v| GroupVersionForDiscovery {
                group_version: v.group_version(),
                version: v.as_str().into(),
            })
            .collect();
        Some(APIGroup {
            name: RESOURCE_GROUP.into(),
            preferred_version: Some(versions.first()?.clone()),
            server_address_by_client_cidrs: None,
            versions,
        })
    }

    fn node(&self, name: &str) -> Reply {
        match self.api.node_uid(name) {
            Some(uid) => Self::ok_json(&Node {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    uid: Some(uid),
                    ..Default::default()
                },
                ..Default::default()
            }),
            None => Reply::status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("nodes {name:?} not found"),
                json!({"name": name, "kind": "nodes"}),
            ),
        }
    }

    fn resource(
        &self,
        method: &Method,
        version: ResourceApiVersion,
        rest: &[&str],
        query: &str,
        body: &[u8],
    ) -> Reply {
        let answer = match (rest, method) {
            ([], &Method::GET) => Ok(Self::ok_json(&APIResourceList {
                group_version: version.group_version(),
                resources: vec![
                    Self::resource_entry(
                        "resourceslices",
                        "ResourceSlice",
                        false,
                        &[
                            "create",
                            "delete",
                            "deletecollection",
                            "get",
                            "list",
                            "update",
                        ],
                    ),
                    Self::resource_entry("resourceclaims", "ResourceClaim", true, &["get"]),
                ],
            })),
            (["resourceslices"], &Method::GET) => self.list_slices(version, query),
            (["resourceslices"], &Method::POST) => self.create_slice(version, body),
            (["resourceslices"], &Method::DELETE) => self.delete_slices(version, query),
            (["resourceslices", name], &Method::GET) => self.get_slice(version, name),
            (["resourceslices", name], &Method::PUT) => self.replace_slice(version, name, body),
            (["resourceslices", name], &Method::DELETE) => {
                self.api.delete_slice(name).map_err(store_error).map(|()| {
                    Reply::ok(json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "details": details("resourceslices", name),
                    }))
                })
            }
            (["namespaces", namespace, "resourceclaims", name], &Method::GET) => {
                self.get_claim(version, namespace, name)
            }
            ([] | ["resourceslices"] | ["resourceslices", _], _)
            | (["namespaces", _, "resourceclaims", _], _) => Err(Reply::method_not_allowed(method)),
            _ => Err(Reply::path_not_found()),
        };
        answer.unwrap_or_else(|reply| reply)
    }

    fn encode_slice(
        version: ResourceApiVersion,
        slice: &v1::ResourceSlice,
    ) -> Result<Value, Reply> {
        match version {
            ResourceApiVersion::V1 => to_json(slice),
            ResourceApiVersion::V1beta1 => {
                let converted =
                    slice_to_v1beta1(slice).map_err(|e| Reply::internal(e.to_string()))?;
                to_json(&converted)
            }
        }
    }

    fn encode_list(
        version: ResourceApiVersion,
        slices: &[v1::ResourceSlice],
    ) -> Result<Reply, Reply> {
        let items: Result<Vec<Value>, Reply> = slices
            .iter()
            .map(|s| Self::encode_slice(version, s))
            .collect();
        Ok(Reply::ok(json!({
            "kind": "ResourceSliceList",
            "apiVersion": version.group_version(),
            "metadata": {},
            "items": items?,
        })))
    }

    fn selected(&self, query: &str) -> Result<Vec<v1::ResourceSlice>, Reply> {
        let query = Query::parse(query)?;
        Ok(self
            .api
            .select_slices(&query.field_selector)
            .into_iter()
            .filter(|s| query.label_selector.matches(s.metadata.labels.as_ref()))
            .collect())
    }

    fn list_slices(&self, version: ResourceApiVersion, query: &str) -> Result<Reply, Reply> {
        Self::encode_list(version, &self.selected(query)?)
    }

    /// deletecollection: every selected slice goes; the answer lists them.
    fn delete_slices(&self, version: ResourceApiVersion, query: &str) -> Result<Reply, Reply> {
        let mut deleted = Vec::new();
        for slice in self.selected(query)? {
            let name = slice.metadata.name.clone().unwrap_or_default();
            match self.api.delete_slice(&name) {
                Ok(()) => deleted.push(slice),
                // gone in between: the collection is deleted all the same
                Err(StandinError::NotFound { .. }) => {}
                Err(error) => return Err(store_error(error)),
            }
        }
        Self::encode_list(version, &deleted)
    }

    fn get_slice(&self, version: ResourceApiVersion, name: &str) -> Result<Reply, Reply> {
        let slice = self
            .api
            .select_slices(&FieldSelector::default())
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| store_error(StandinError::NotFound { name: name.into() }))?;
        Ok(Reply::ok(Self::encode_slice(version, &slice)?))
    }

    /// A request body as the stored v1 slice, refused as the API server
    /// refuses it before validation.
    fn decode_slice(version: ResourceApiVersion, body: &[u8]) -> Result<v1::ResourceSlice, Reply> {
        let expected = version.group_version();
        let cannot = |what: &str, error: &dyn std::fmt::Display| {
            Reply::bad_request(format!(
                "{what} in version {:?} cannot be handled as a ResourceSlice: {error}",
                version.as_str()
            ))
        };
        let mut value: Value = serde_json::from_slice(body).map_err(|e| cannot("the body", &e))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| cannot("the body", &"not a JSON object"))?;
        match object.get("apiVersion") {
            None => {}
            Some(Value::String(sent)) if *sent == expected => {}
            Some(sent) => {
                return Err(Reply::bad_request(format!(
                    "the API version in the data ({}) does not match the expected API version ({expected})",
                    sent.as_str().map_or_else(|| sent.to_string(), str::to_owned)
                )))
            }
        }
        match object.get("kind") {
            None => {}
            Some(Value::String(kind)) if kind == "ResourceSlice" => {}
            Some(kind) => {
                let kind = kind
                    .as_str()
                    .map_or_else(|| kind.to_string(), str::to_owned);
                return Err(cannot(&kind, &"the kind is not ResourceSlice"));
            }
        }
        // the server takes both from the path when the body leaves them out
        object.insert("apiVersion".into(), expected.into());
        object.insert("kind".into(), "ResourceSlice".into());
        match version {
            ResourceApiVersion::V1 => {
                serde_json::from_value(value).map_err(|e| cannot("ResourceSlice", &e))
            }
            ResourceApiVersion::V1beta1 => {
                let beta: v1beta1::ResourceSlice =
                    serde_json::from_value(value).map_err(|e| cannot("ResourceSlice", &e))?;
                slice_from_v1beta1(&beta).map_err(|e| {
                    Reply::status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        format!("the stand-in API server cannot store this v1beta1 slice: {e}"),
                        details("ResourceSlice", &e.slice),
                    )
                })
            }
        }
    }

    fn create_slice(&self, version: ResourceApiVersion, body: &[u8]) -> Result<Reply, Reply> {
        let slice = Self::decode_slice(version, body)?;
        let created = self.api.create_slice(slice).map_err(store_error)?;
        Ok(Reply::created(Self::encode_slice(version, &created)?))
    }

    fn replace_slice(
        &self,
        version: ResourceApiVersion,
        name: &str,
        body: &[u8],
    ) -> Result<Reply, Reply> {
        let slice = Self::decode_slice(version, body)?;
        let sent = slice.metadata.name.as_deref().unwrap_or_default();
        if sent != name {
            return Err(Reply::bad_request(format!(
                "the name of the object ({sent}) does not match the name on the URL ({name})"
            )));
        }
        let updated = self.api.update_slice(slice).map_err(store_error)?;
        Ok(Reply::ok(Self::encode_slice(version, &updated)?))
    }

    fn get_claim(
        &self,
        version: ResourceApiVersion,
        namespace: &str,
        name: &str,
    ) -> Result<Reply, Reply> {
        let claim = self.api.get_claim(namespace, name).ok_or_else(|| {
            Reply::status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("resourceclaims.{RESOURCE_GROUP} {name:?} not found"),
                details("resourceclaims", name),
            )
        })?;
        let body = match version {
            ResourceApiVersion::V1 => to_json(&claim)?,
            ResourceApiVersion::V1beta1 => claim_to_v1beta1(&claim).map_err(|e| {
                Reply::internal(format!("claim {namespace}/{name} as v1beta1: {e}"))
            })?,
        };
        Ok(Reply::ok(body))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn routes(versions: &[ResourceApiVersion]) -> Routes {
        Routes {
            api: ApiServerStandin::new(),
            versions: Mutex::new(versions.to_vec()),
            addr: "127.0.0.1:6443".parse().unwrap(),
        }
    }

    /// A slice as a client sends it, in the shape of `api_version` (a
    /// v1beta1 device keeps its attributes under `basic`).
    fn slice_body(name: &str, api_version: &str) -> Vec<u8> {
        let attributes = json!({"vfIndex": {"int": 0}});
        let device = if api_version.ends_with("v1beta1") {
            json!({"name": "0000-3b-02-0", "basic": {"attributes": attributes}})
        } else {
            json!({"name": "0000-3b-02-0", "attributes": attributes})
        };
        json!({
            "apiVersion": api_version, "kind": "ResourceSlice",
            "metadata": {"name": name},
            "spec": {"driver": "sriov-rs.invalid", "nodeName": "worker-1",
                     "pool": {"name": "worker-1/p", "generation": 1, "resourceSliceCount": 1},
                     "devices": [device]}
        })
        .to_string()
        .into_bytes()
    }

    const V1_SLICES: &str = "/apis/resource.k8s.io/v1/resourceslices";
    const V1BETA1_SLICES: &str = "/apis/resource.k8s.io/v1beta1/resourceslices";

    #[test]
    fn discovery_offers_the_configured_versions() {
        let old = routes(&[ResourceApiVersion::V1beta1]);
        let groups = old.answer(&Method::GET, "/apis", "", b"");
        assert_eq!(
            groups.body["groups"][0]["versions"],
            json!([{"groupVersion": "resource.k8s.io/v1beta1", "version": "v1beta1"}])
        );
        let missing = old.answer(&Method::GET, V1_SLICES, "", b"");
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["details"], json!({}));
        let none = routes(&[]);
        assert_eq!(
            none.answer(&Method::GET, "/apis", "", b"").body["groups"],
            json!([])
        );
        assert_eq!(
            none.answer(&Method::GET, "/apis/resource.k8s.io", "", b"")
                .status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn bodies_are_refused_as_the_api_server_refuses_them() {
        let r = routes(&[ResourceApiVersion::V1, ResourceApiVersion::V1beta1]);
        let post = |path: &str, body: &[u8]| r.answer(&Method::POST, path, "", body);
        let wrong_version = post(V1_SLICES, &slice_body("a", "resource.k8s.io/v1beta1"));
        assert_eq!(wrong_version.status, StatusCode::BAD_REQUEST);
        assert!(wrong_version.body["message"]
            .as_str()
            .unwrap()
            .contains("does not match the expected API version (resource.k8s.io/v1)"));
        let mut claim: Value =
            serde_json::from_slice(&slice_body("a", "resource.k8s.io/v1")).unwrap();
        claim["kind"] = "ResourceClaim".into();
        let wrong_kind = post(V1_SLICES, claim.to_string().as_bytes());
        assert_eq!(wrong_kind.status, StatusCode::BAD_REQUEST);
        assert!(wrong_kind.body["message"]
            .as_str()
            .unwrap()
            .contains("ResourceClaim"));
        assert_eq!(post(V1_SLICES, b"{").status, StatusCode::BAD_REQUEST);

        assert_eq!(
            post(V1_SLICES, &slice_body("a", "resource.k8s.io/v1")).status,
            StatusCode::CREATED
        );
        let again = post(V1_SLICES, &slice_body("a", "resource.k8s.io/v1"));
        assert_eq!(
            (again.status, again.body["reason"].as_str()),
            (StatusCode::CONFLICT, Some("AlreadyExists"))
        );

        // replace: the URL's name must be the body's
        let renamed = r.answer(
            &Method::PUT,
            &format!("{V1_SLICES}/b"),
            "",
            &slice_body("a", "resource.k8s.io/v1"),
        );
        assert_eq!(renamed.status, StatusCode::BAD_REQUEST);
        assert!(renamed.body["message"]
            .as_str()
            .unwrap()
            .contains("(a) does not match the name on the URL (b)"));

        // a v1beta1 create is stored as v1 and read back in either version
        assert_eq!(
            post(V1BETA1_SLICES, &slice_body("c", "resource.k8s.io/v1beta1")).status,
            StatusCode::CREATED
        );
        let as_v1 = r.answer(&Method::GET, &format!("{V1_SLICES}/c"), "", b"");
        assert_eq!(
            as_v1.body["spec"]["devices"][0]["attributes"]["vfIndex"]["int"],
            0
        );
        let as_beta = r.answer(&Method::GET, &format!("{V1BETA1_SLICES}/c"), "", b"");
        assert_eq!(
            as_beta.body["spec"]["devices"][0]["basic"]["attributes"]["vfIndex"]["int"],
            0
        );
        assert_eq!(as_beta.body["apiVersion"], "resource.k8s.io/v1beta1");
    }

    #[test]
    fn lists_take_the_selectors_the_server_takes() {
        let r = routes(&[ResourceApiVersion::V1]);
        r.answer(
            &Method::POST,
            V1_SLICES,
            "",
            &slice_body("a", "resource.k8s.io/v1"),
        );
        let list = |query: &str| r.answer(&Method::GET, V1_SLICES, query, b"");
        let selected =
            list("fieldSelector=spec.nodeName%3Dworker-1%2Cspec.driver%3Dsriov-rs.invalid");
        assert_eq!(selected.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(
            list("fieldSelector=spec.nodeName%3Dworker-2").body["items"],
            json!([])
        );
        let refused = list("fieldSelector=spec.devices%3D1");
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            refused.body["message"],
            "field label not supported: spec.devices"
        );
        assert_eq!(
            list("labelSelector=a%20in%20b").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            list("labelSelector=!tier").body["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_claim_reads_in_v1beta1_with_its_request_fields_flat() {
        let mut claim: v1::ResourceClaim = serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "net", "namespace": "default", "uid": "uid-1"},
            "spec": {"devices": {"requests": [{"name": "vf", "exactly": {"deviceClassName": "sriov", "count": 1}}]}},
            "status": {"allocation": {"devices": {"results": [
                {"request": "vf", "driver": "sriov-rs.invalid", "pool": "worker-1/p", "device": "0000-3b-02-0"}]}}}
        }))
        .unwrap();
        claim.metadata.resource_version = Some("7".into());
        let beta = claim_to_v1beta1(&claim).unwrap();
        assert_eq!(beta["apiVersion"], "resource.k8s.io/v1beta1");
        assert_eq!(
            beta["spec"]["devices"]["requests"][0]["deviceClassName"],
            "sriov"
        );
        assert_eq!(beta["spec"]["devices"]["requests"][0]["count"], 1);
        assert_eq!(
            beta["status"]["allocation"]["devices"]["results"][0]["device"],
            "0000-3b-02-0"
        );
    }
}
