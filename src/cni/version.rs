//! CNI spec versions: the ones we speak, what each allows and carries, and
//! the VERSION answer.

use super::env::Command;
use super::error::{CniError, CODE_DECODE, CODE_INCOMPATIBLE_VERSION};
use serde::Deserialize;
use std::fmt;

/// A CNI version we speak. Ordered oldest first, so `<` compares versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    /// Every version we speak, oldest first.
    pub const ALL: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub const fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// One of ours, spelled exactly; None for anything else.
    pub fn parse(text: &str) -> Option<CniVersion> {
        CniVersion::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// `text` as one of ours, or code 1 naming it and listing ours.
    pub fn require(text: &str) -> Result<CniVersion, CniError> {
        CniVersion::parse(text).ok_or_else(|| {
            CniError::new(
                CODE_INCOMPATIBLE_VERSION,
                format!("cniVersion {text:?} is not supported"),
            )
            .with_details(format!("supported versions: {}", supported_list()))
        })
    }

    /// The oldest version that has `command` (as the Go library: CHECK
    /// came with 0.4.0, STATUS and GC with 1.1.0).
    pub const fn first_with(command: Command) -> CniVersion {
        match command {
            Command::Add | Command::Del | Command::Version => CniVersion::V0_3_0,
            Command::Check => CniVersion::V0_4_0,
            Command::Status | Command::Gc => CniVersion::V1_1_0,
        }
    }

    /// Does a config of this version allow `command`? Code 1 if not.
    pub fn allows(self, command: Command) -> Result<(), CniError> {
        let needed = CniVersion::first_with(command);
        if self >= needed {
            return Ok(());
        }
        Err(CniError::new(
            CODE_INCOMPATIBLE_VERSION,
            format!("{command} needs cniVersion {needed} or later, not {self}"),
        ))
    }

    /// Results of this version carry `interfaces[].mtu`, `socketPath` and
    /// `pciID` (Go's libcni: its 1.0.0 and 1.1.0 result types are one).
    pub fn result_has_interface_details(self) -> bool {
        self >= CniVersion::V1_0_0
    }

    /// Results of this version carry `ips[].version` ("4"/"6").
    pub fn result_has_ip_version(self) -> bool {
        self < CniVersion::V1_0_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Our versions as the VERSION answer and messages list them.
pub fn supported_list() -> String {
    CniVersion::ALL.map(CniVersion::as_str).join(", ")
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
        None | Some("") => CniVersion::LATEST,
        Some(v) => CniVersion::require(v)?,
    };
    let supported = CniVersion::ALL.map(CniVersion::as_str);
    Ok(
        serde_json::json!({ "cniVersion": version.as_str(), "supportedVersions": supported })
            .to_string(),
    )
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
            CniVersion::ALL.len()
        );
        let out: serde_json::Value = serde_json::from_str(&answer("").unwrap()).unwrap();
        assert_eq!(out["cniVersion"], CniVersion::LATEST.as_str());
    }

    #[test]
    fn version_rejects_unknown_versions_and_garbage_with_spec_codes() {
        assert_eq!(
            answer(r#"{"cniVersion":"9.9.9"}"#).unwrap_err().code,
            CODE_INCOMPATIBLE_VERSION
        );
        assert_eq!(answer("{not json").unwrap_err().code, CODE_DECODE);
    }

    #[test]
    fn versions_are_ordered_and_know_their_commands() {
        assert!(CniVersion::ALL.windows(2).all(|w| w[0] < w[1]));
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(CniVersion::parse("0.2.0"), None);
        assert!(CniVersion::V0_3_1.allows(Command::Check).is_err());
        assert!(CniVersion::V0_4_0.allows(Command::Check).is_ok());
        assert!(CniVersion::V1_0_0.allows(Command::Gc).is_err());
        assert!(CniVersion::V1_1_0.allows(Command::Status).is_ok());
    }
}
