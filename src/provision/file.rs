//! Reading a node policy file: JSON or YAML, told apart by the extension
//! (`.json`, `.yaml`, `.yml`), else by the content (a document that starts
//! with `{` is JSON). Both become one tree, so the rules are checked once.

use super::error::{PolicyError, PolicyErrors};
use super::policy::NodePolicies;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn detect(path: Option<&Path>, text: &str) -> Format {
        let extension = path
            .and_then(Path::extension)
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("json") => Format::Json,
            Some("yaml") | Some("yml") => Format::Yaml,
            _ if text.trim_start().starts_with('{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Parse text in the given format.
pub fn parse(text: &str, format: Format) -> Result<NodePolicies, PolicyErrors> {
    let doc: Value = match format {
        Format::Json => serde_json::from_str(text).map_err(|e| PolicyError::Syntax {
            format: "JSON",
            message: e.to_string(),
        })?,
        Format::Yaml => serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Syntax {
            format: "YAML",
            message: e.to_string(),
        })?,
    };
    NodePolicies::from_value(&doc)
}

/// Read and parse a node policy file.
pub fn load(path: &Path) -> Result<NodePolicies, PolicyErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, Format::detect(Some(path), &text))
}
