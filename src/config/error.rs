//! Errors from reading and validating `config.json`.
//!
//! Every variant about one resource carries a [`ResourceRef`] (its index in `resourceList` and,
//! once known, its name) and the key path (`selectors[1].pfNames[0]`), so the message alone tells
//! a person what to edit.

use std::fmt;
use std::path::PathBuf;

/// Which entry of `resourceList` a problem is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    /// 0-based position in `resourceList`.
    pub index: usize,
    /// `resourceName` when it could be read.
    pub name: Option<String>,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "resource {} ({name:?})", self.index),
            None => write!(f, "resource {} (no resourceName)", self.index),
        }
    }
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("config is not valid json (line {line}, column {column}): {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },

    /// The document itself has the wrong shape (not an object, `resourceList` not an array).
    #[error("config: `{key}` must be {expected}, found {found}")]
    TopLevel {
        key: String,
        expected: &'static str,
        found: String,
    },

    /// Upstream exits with "no resource configuration" in this case.
    #[error("config has no resources: `resourceList` is missing or empty")]
    NoResources,

    #[error("{at}: `{key}` must be {expected}, found {found}")]
    WrongType {
        at: ResourceRef,
        key: String,
        expected: &'static str,
        found: String,
    },

    #[error("{at}: `{key}` is required")]
    Missing { at: ResourceRef, key: String },

    #[error("{at}: `resourceName` {name:?} is not allowed: {reason}")]
    InvalidName {
        at: ResourceRef,
        name: String,
        reason: String,
    },

    #[error("{at}: resource {full_name:?} is already defined by {first}")]
    DuplicateName {
        at: ResourceRef,
        full_name: String,
        first: ResourceRef,
    },

    #[error("{at}: `deviceType` {value:?} is unknown; use \"netDevice\", \"accelerator\" or \"auxNetDevice\"")]
    UnknownDeviceType { at: ResourceRef, value: String },

    #[error("{at}: `selectors` is an empty list; give at least one selector object")]
    EmptySelectorList { at: ResourceRef },

    /// A value that upstream would accept but that can never match anything (or a value
    /// upstream rejects); `reason` says what is wrong and, where we can, what to write instead.
    #[error("{at}: `{key}` value {value}: {reason}")]
    InvalidValue {
        at: ResourceRef,
        key: String,
        value: String,
        reason: String,
    },

    #[error("{at}: `{key}`: isRdma and vdpaType cannot be used together")]
    RdmaWithVdpa { at: ResourceRef, key: String },

    /// A selector sriov-rs cannot evaluate; refused rather than let the pool
    /// silently differ from upstream's.
    #[error("{at}: `{key}` is not supported: {reason}")]
    Unsupported {
        at: ResourceRef,
        key: String,
        reason: &'static str,
    },
}

impl ConfigError {
    /// The resource the error is about, when it is about one.
    pub fn resource(&self) -> Option<&ResourceRef> {
        match self {
            ConfigError::WrongType { at, .. }
            | ConfigError::Missing { at, .. }
            | ConfigError::InvalidName { at, .. }
            | ConfigError::DuplicateName { at, .. }
            | ConfigError::UnknownDeviceType { at, .. }
            | ConfigError::EmptySelectorList { at }
            | ConfigError::InvalidValue { at, .. }
            | ConfigError::RdmaWithVdpa { at, .. }
            | ConfigError::Unsupported { at, .. } => Some(at),
            ConfigError::Read { .. }
            | ConfigError::Syntax { .. }
            | ConfigError::TopLevel { .. }
            | ConfigError::NoResources => None,
        }
    }
}
