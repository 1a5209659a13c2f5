//! sriov-network-device-plugin's `config.json`: parsing, validation and selector matching.
//!
//! Pure apart from [`load`], which reads the file and hands the text to [`parse`].
//!
//! The rule we follow where upstream is lax: a config we accept gives the same pools as
//! upstream; a value that upstream would silently turn into "matches nothing" (a malformed
//! `#` range, an upper-case vendor ID, a short PCI address, ...) is refused with a message that
//! names the resource, the key and the value. Harmless oddities (unknown keys, keys that do not
//! apply to the device type, names the kubelet will refuse) load with a warning. Each difference
//! is listed in `docs/config-compat.md`.

mod assign;
mod error;
mod facts;
mod json;
mod keys;
mod matching;
mod model;
mod parse;
mod read;
mod selector;
mod validate;
mod values;
mod vf_range;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use assign::{assign_pools, PoolAssignment, PoolMember};
pub use error::{ConfigError, ResourceRef};
pub use facts::DeviceFacts;
pub use matching::{class_matches, eligible, first_match, matches};
pub use model::{
    AdditionalInfo, AllocationApi, AllocationPolicy, Config, DeviceType, Resource, SelectorSet,
    VdpaType,
};
pub use vf_range::{PfEntry, VfRangeError, VfRanges};

/// Upstream's default for `-resource-prefix`.
pub const DEFAULT_RESOURCE_PREFIX: &str = "intel.com";

/// A config that passed validation, with the warnings for the caller to log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Read and validate the config file. `default_prefix` is the `-resource-prefix` value, used for
/// resources without their own `resourcePrefix`.
pub fn load(path: &Path, default_prefix: &str) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, default_prefix)
}

/// Parse and validate the text of a config file.
pub fn parse(text: &str, default_prefix: &str) -> Result<LoadedConfig, ConfigError> {
    let mut warnings = Vec::new();
    let resources = parse::parse_document(text, default_prefix, &mut warnings)?;
    validate::validate(&resources, &mut warnings)?;
    Ok(LoadedConfig {
        config: Config { resources },
        warnings,
    })
}
