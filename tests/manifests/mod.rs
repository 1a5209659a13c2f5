//! Reading the deploy/ manifests strictly: kustomize output and example files
//! are split into documents and parsed into k8s-openapi types, or into the
//! local CRD types below, and any field the type does not know fails the test.
//!
//! k8s-openapi's types skip unknown fields silently, so each document goes
//! through `serde_ignored`, which reports every key that was skipped: a
//! misspelled `readOnlyRootFileSystem` becomes a failure instead of a
//! silently writable root filesystem.

// Shared by tests/deploy_manifests.rs and tests/deploy_dra.rs, each using a
// part of it.
#![allow(dead_code)]

pub mod crds;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaimTemplate};
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use crds::{HelmChart, NetworkAttachmentDefinition};

/// Every kind deploy/ may contain.
#[derive(Debug)]
pub enum Doc {
    ServiceAccount(Box<ServiceAccount>),
    ConfigMap(Box<ConfigMap>),
    DaemonSet(Box<DaemonSet>),
    Deployment(Box<Deployment>),
    HelmChart(Box<HelmChart>),
    Nad(Box<NetworkAttachmentDefinition>),
    ClusterRole(Box<ClusterRole>),
    ClusterRoleBinding(Box<ClusterRoleBinding>),
    DeviceClass(Box<DeviceClass>),
    ResourceClaimTemplate(Box<ResourceClaimTemplate>),
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `kubectl kustomize deploy/overlays/<name>`, or None (with a SKIPPED line)
/// when kubectl is missing outside CI. Under CI=true a missing kubectl fails.
pub fn kustomize(overlay: &str) -> Option<String> {
    kustomize_dir(&repo_path(&format!("deploy/overlays/{overlay}")))
}

/// An overlay rendered with a component of deploy/components added, as a
/// user's own kustomization would add it (a temp dir that refers to both;
/// kustomize takes only relative paths there).
pub fn kustomize_with_component(overlay: &str, component: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = std::fs::canonicalize(dir.path())
        .expect("temp dir path")
        .components()
        .skip(1)
        .map(|_| "..")
        .collect::<Vec<_>>()
        .join("/");
    let repo = repo_path("deploy");
    let repo = repo.to_string_lossy();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [\"{up}{repo}/overlays/{overlay}\"]\n\
             components: [\"{up}{repo}/components/{component}\"]\n"
        ),
    )
    .expect("writing the kustomization");
    kustomize_dir(dir.path())
}

/// `kubectl kustomize` of any kustomization dir; None as [`kustomize`].
pub fn kustomize_dir(dir: &Path) -> Option<String> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "kubectl is required under CI=true to render {}",
                dir.display()
            );
            eprintln!(
                "SKIPPED: kubectl not found; cannot render {}",
                dir.display()
            );
            return None;
        }
        Err(e) => panic!("running kubectl kustomize {}: {e}", dir.display()),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("kustomize output is UTF-8"))
}

/// Parse every YAML document of `text`; `origin` names it in failures.
pub fn parse_all(text: &str, origin: &str) -> Vec<Doc> {
    try_parse_all(text, origin).unwrap_or_else(|e| panic!("{e}"))
}

/// As `parse_all`, with the first problem as an error.
pub fn try_parse_all(text: &str, origin: &str) -> Result<Vec<Doc>, String> {
    let mut docs = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(document)
            .map_err(|e| format!("{origin}: document {index} is not YAML: {e}"))?;
        if value.is_null() {
            continue;
        }
        docs.push(parse_doc(value, &format!("{origin} (document {index})"))?);
    }
    Ok(docs)
}

fn parse_doc(value: serde_yaml_ng::Value, origin: &str) -> Result<Doc, String> {
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{origin}: no {name}"))
    };
    let (api_version, kind) = (field("apiVersion")?, field("kind")?);
    let is = |api: &str, k: &str| api_version == api && kind == k;
    Ok(if is(ServiceAccount::API_VERSION, ServiceAccount::KIND) {
        Doc::ServiceAccount(try_strict(value, origin)?)
    } else if is(ConfigMap::API_VERSION, ConfigMap::KIND) {
        Doc::ConfigMap(try_strict(value, origin)?)
    } else if is(DaemonSet::API_VERSION, DaemonSet::KIND) {
        Doc::DaemonSet(try_strict(value, origin)?)
    } else if is(Deployment::API_VERSION, Deployment::KIND) {
        Doc::Deployment(try_strict(value, origin)?)
    } else if is(crds::HELM_CHART_API_VERSION, "HelmChart") {
        Doc::HelmChart(try_strict(value, origin)?)
    } else if is(crds::NAD_API_VERSION, "NetworkAttachmentDefinition") {
        Doc::Nad(try_strict(value, origin)?)
    } else if is(ClusterRole::API_VERSION, ClusterRole::KIND) {
        Doc::ClusterRole(try_strict(value, origin)?)
    } else if is(ClusterRoleBinding::API_VERSION, ClusterRoleBinding::KIND) {
        Doc::ClusterRoleBinding(try_strict(value, origin)?)
    } else if is(DeviceClass::API_VERSION, DeviceClass::KIND) {
        Doc::DeviceClass(try_strict(value, origin)?)
    } else if is(
        ResourceClaimTemplate::API_VERSION,
        ResourceClaimTemplate::KIND,
    ) {
        Doc::ResourceClaimTemplate(try_strict(value, origin)?)
    } else {
        return Err(format!("{origin}: unexpected {api_version} {kind}"));
    })
}

/// Deserialize, failing on any field the type ignored.
pub fn strict<T: DeserializeOwned>(value: serde_yaml_ng::Value, origin: &str) -> Box<T> {
    try_strict(value, origin).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_strict<T: DeserializeOwned>(
    value: serde_yaml_ng::Value,
    origin: &str,
) -> Result<Box<T>, String> {
    let mut ignored = Vec::new();
    let parsed: T = serde_ignored::deserialize(value, |path| ignored.push(path.to_string()))
        .map_err(|e| format!("{origin}: {e}"))?;
    if !ignored.is_empty() {
        return Err(format!(
            "{origin}: unknown fields (misspelled?): {}",
            ignored.join(", ")
        ));
    }
    Ok(Box::new(parsed))
}

/// Strict JSON (a CNI config or config.json inside a manifest string).
pub fn strict_json<T: DeserializeOwned>(text: &str, origin: &str) -> T {
    let mut ignored = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: T = serde_ignored::deserialize(&mut de, |path| ignored.push(path.to_string()))
        .unwrap_or_else(|e| panic!("{origin}: {e}"));
    assert!(
        ignored.is_empty(),
        "{origin}: unknown fields (misspelled?): {}",
        ignored.join(", ")
    );
    parsed
}

/// Every file of `dir` (relative to the repo) ending in .yaml, parsed.
pub fn parse_dir(dir: &str) -> Vec<(String, Vec<Doc>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = format!(
                "{dir}/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            let docs = parse_all(&text, &name);
            (name, docs)
        })
        .collect()
}

/// The value of `--name=value` or `--name value` in an argument list.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let with_eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix(&with_eq) {
            Some(value)
        } else if arg == name {
            args.get(i + 1).map(String::as_str)
        } else {
            None
        }
    })
}
