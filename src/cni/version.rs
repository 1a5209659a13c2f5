//! CNI spec versions: which we accept and the VERSION answer.

use super::error::{CniError, CODE_DECODE, CODE_INCOMPATIBLE_VERSION};
use serde::Deserialize;

pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// Order two dotted versions numerically (`0.4.0` < `1.0.0`).
pub fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parts(a).cmp(&parts(b))
}

#[derive(Deserialize)]
struct VersionRequest {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
}

/// The VERSION answer: echoes the caller's version when we speak it (an
/// empty stdin asks for our latest), lists every version we speak.
pub fn answer(stdin: &str) -> Result<String, CniError> {
    let requested = if stdin.trim().is_empty() {
        None
    } else {
        let request: VersionRequest = serde_json::from_str(stdin)
            .map_err(|e| CniError::new(CODE_DECODE, format!("decoding VERSION stdin: {e}")))?;
        request.cni_version
    };
    let version = match requested.as_deref() {
        None | Some("") => LATEST,
        Some(v) if SUPPORTED.contains(&v) => v,
        Some(v) => {
            return Err(CniError::new(
                CODE_INCOMPATIBLE_VERSION,
                format!("cniVersion {v:?} is not supported"),
            )
            .with_details(format!("supported versions: {}", SUPPORTED.join(", "))))
        }
    };
    Ok(serde_json::json!({ "cniVersion": version, "supportedVersions": SUPPORTED }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_echoes_a_supported_request_and_lists_all() {
        let out: serde_json::Value =
            serde_json::from_str(&answer(r#"{"cniVersion":"0.3.1"}"#).unwrap()).unwrap();
        assert_eq!(out["cniVersion"], "0.3.1");
        assert_eq!(
            out["supportedVersions"].as_array().unwrap().len(),
            SUPPORTED.len()
        );
        let out: serde_json::Value = serde_json::from_str(&answer("").unwrap()).unwrap();
        assert_eq!(out["cniVersion"], LATEST);
    }

    #[test]
    fn version_rejects_unknown_versions_and_garbage_with_spec_codes() {
        assert_eq!(
            answer(r#"{"cniVersion":"9.9.9"}"#).unwrap_err().code,
            CODE_INCOMPATIBLE_VERSION
        );
        assert_eq!(answer("{not json").unwrap_err().code, CODE_DECODE);
    }
}
