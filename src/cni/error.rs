//! CNI errors as the spec prints them: `{"cniVersion","code","msg","details"}`.

use super::version::CniVersion;
use serde::Serialize;

pub const CODE_INCOMPATIBLE_VERSION: u32 = 1;
pub const CODE_UNSUPPORTED_FIELD: u32 = 2;
pub const CODE_UNKNOWN_CONTAINER: u32 = 3;
pub const CODE_INVALID_ENV: u32 = 4;
pub const CODE_IO: u32 = 5;
pub const CODE_DECODE: u32 = 6;
pub const CODE_INVALID_CONFIG: u32 = 7;
pub const CODE_TRY_AGAIN: u32 = 11;
/// CNI_NETNS is the plugin's own network namespace (the Go library's code).
pub const CODE_INVALID_NETNS: u32 = 8;
pub const CODE_NOT_AVAILABLE: u32 = 50;
/// STATUS: not available, and existing pods may have limited connectivity.
pub const CODE_LIMITED_CONNECTIVITY: u32 = 51;
/// Plugin-specific (100+): the kernel refused an operation on the VF.
pub const CODE_KERNEL: u32 = 101;
/// Plugin-specific: the VF is attached to another live pod.
pub const CODE_VF_IN_USE: u32 = 102;
/// Plugin-specific: the delegated IPAM plugin failed without a CNI error.
pub const CODE_IPAM: u32 = 103;
/// Plugin-specific: CNI_IFNAME already exists in the pod netns.
pub const CODE_IFNAME_TAKEN: u32 = 104;
/// Plugin-specific: deviceID is not a VF this node has.
pub const CODE_NO_SUCH_VF: u32 = 105;
/// Plugin-specific (100+): a command this build does not serve yet.
pub const CODE_PLUGIN_UNIMPLEMENTED: u32 = 100;

/// What went wrong inside the plugin: the CNI code it maps to, a message a
/// person can act on, and details. Printed only at the edge, as an
/// [`ErrorReply`] in the config's version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
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

    /// The error as the spec prints it, in `version` (the config's, when it
    /// is known and one of ours; else our latest).
    pub fn reply(self, version: Option<CniVersion>) -> ErrorReply {
        ErrorReply {
            cni_version: version.unwrap_or(CniVersion::LATEST).as_str(),
            code: self.code,
            msg: self.msg,
            details: self.details,
        }
    }
}

/// A CNI error on the wire: `{"cniVersion","code","msg","details"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReply {
    #[serde(rename = "cniVersion")]
    pub cni_version: &'static str,
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl ErrorReply {
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and numbers cannot fail; fall back
        // to a hand-built object rather than panic if it ever did.
        serde_json::to_string(self)
            .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"internal error\"}}", self.code))
    }
}

/// The VF layer's errors, in the CNI's codes: an interface name taken in
/// the pod is 104, anything else the kernel refused is 101.
impl From<crate::vf::VfError> for CniError {
    fn from(error: crate::vf::VfError) -> CniError {
        let code = match error {
            crate::vf::VfError::IfnameTaken { .. } => CODE_IFNAME_TAKEN,
            _ => CODE_KERNEL,
        };
        CniError::new(code, error.to_string())
    }
}

/// A netlink request the kernel refused, or a socket we could not open: 101.
impl From<crate::netlink::NetlinkError> for CniError {
    fn from(error: crate::netlink::NetlinkError) -> CniError {
        CniError::new(CODE_KERNEL, error.to_string())
    }
}
