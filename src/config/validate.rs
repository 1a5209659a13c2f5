//! Rules across a parsed config, as upstream applies them after reading: the name pattern,
//! unique `prefix/name`, and no `isRdma` together with `vdpaType`. On top of those, warnings
//! for names the kubelet will refuse at registration (upstream lets those through and the pool
//! silently never appears; we keep loading them so existing configs still work).

use std::collections::HashMap;

use super::error::{ConfigError, ResourceRef};
use super::model::Resource;

/// Longest name part the kubelet accepts in an extended resource name.
const KUBELET_NAME_MAX: usize = 63;

pub(crate) fn validate(
    resources: &[Resource],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut seen: HashMap<String, ResourceRef> = HashMap::new();
    for resource in resources {
        let at = ResourceRef {
            index: resource.index,
            name: Some(resource.name.clone()),
        };
        check_name(&at, &resource.name)?;
        warnings.extend(kubelet_name_warnings(&at, &resource.name));
        warnings.extend(kubelet_prefix_warnings(&at, &resource.prefix));

        let full_name = resource.full_name();
        if let Some(first) = seen.get(&full_name) {
            return Err(ConfigError::DuplicateName {
                at,
                full_name,
                first: first.clone(),
            });
        }
        seen.insert(full_name, at.clone());

        for (i, selector) in resource.selectors.iter().enumerate() {
            if selector.is_rdma && selector.vdpa_type.is_some() {
                let key = if resource.selectors_listed {
                    format!("selectors[{i}]")
                } else {
                    "selectors".to_string()
                };
                return Err(ConfigError::RdmaWithVdpa { at, key });
            }
        }
    }
    Ok(())
}

/// Upstream's pattern `^[a-zA-Z0-9_-]+$` (hyphens included, whatever its README says).
fn check_name(at: &ResourceRef, name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        Some("it is empty".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            .map(|c| format!("{c:?} is not allowed; use letters, digits, '_' and '-'"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(ConfigError::InvalidName {
            at: at.clone(),
            name: name.to_string(),
            reason,
        }),
    }
}

/// The kubelet wants the name part to start and end with a letter or digit and to be at most 63
/// characters long.
fn kubelet_name_warnings(at: &ResourceRef, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let edge = |c: Option<char>| c.is_some_and(|c| !c.is_ascii_alphanumeric());
    if edge(name.chars().next()) || edge(name.chars().last()) {
        out.push(format!(
            "{at}: the kubelet refuses resource names that start or end with '_' or '-'; this pool will not register"
        ));
    }
    if name.len() > KUBELET_NAME_MAX {
        out.push(format!(
            "{at}: the kubelet refuses resource names longer than {KUBELET_NAME_MAX} characters ({} here); this pool will not register",
            name.len()
        ));
    }
    out
}

/// The prefix must be a DNS subdomain outside `kubernetes.io` for the kubelet to take it.
fn kubelet_prefix_warnings(at: &ResourceRef, prefix: &str) -> Vec<String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let mut out = Vec::new();
    if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
        out.push(format!(
            "{at}: resource prefix {prefix:?} is not a lower-case DNS name; the kubelet will refuse this pool"
        ));
    } else if prefix == "kubernetes.io" || prefix.ends_with(".kubernetes.io") {
        out.push(format!(
            "{at}: resource prefix {prefix:?} is reserved for Kubernetes; the kubelet will refuse this pool"
        ));
    }
    out
}
