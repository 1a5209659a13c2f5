//! CNI errors as the spec prints them: `{"cniVersion","code","msg","details"}`.

use serde::Serialize;

pub const CODE_INCOMPATIBLE_VERSION: u32 = 1;
pub const CODE_INVALID_ENV: u32 = 4;
pub const CODE_IO: u32 = 5;
pub const CODE_DECODE: u32 = 6;
/// Plugin-specific (100+): a command this build does not serve yet.
pub const CODE_PLUGIN_UNIMPLEMENTED: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            cni_version: super::version::LATEST.to_owned(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn io(step: &str, error: std::io::Error) -> Self {
        CniError::new(CODE_IO, format!("{step}: {error}"))
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and numbers cannot fail; fall back
        // to a hand-built object rather than panic if it ever did.
        serde_json::to_string(self)
            .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"internal error\"}}", self.code))
    }
}
