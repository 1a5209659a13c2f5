//! Typed reads of JSON values and the shared warning texts; every error names the resource
//! and the key path.

use super::error::{ConfigError, ResourceRef};
use super::json::{Fields, Json};
use super::keys;

pub(crate) fn note_repeats(
    at: &ResourceRef,
    path: &str,
    fields: &Fields<'_>,
    warnings: &mut Vec<String>,
) {
    for (key, spellings) in &fields.repeated {
        let shown = spellings
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let key_path = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        warnings.push(format!(
            "{at}: `{key_path}` is given more than once ({shown}); the last non-null one is used, as upstream"
        ));
    }
}

pub(crate) fn unknown_key_warning(
    at: &ResourceRef,
    key: &str,
    path: &str,
    known: &[&'static str],
) -> String {
    let where_ = if path.is_empty() {
        String::new()
    } else {
        format!(" in `{path}`")
    };
    match keys::suggestion(key, known) {
        Some(k) => format!("{at}: unknown key `{key}`{where_} ignored; did you mean `{k}`?"),
        None => format!("{at}: unknown key `{key}`{where_} ignored"),
    }
}

pub(crate) fn wrong_type(
    at: &ResourceRef,
    key: &str,
    expected: &'static str,
    found: &Json,
) -> ConfigError {
    let found = match found {
        Json::Number(n) => format!("the number {n} (put it in quotes)"),
        Json::Bool(b) => format!("{b}"),
        Json::String(s) => format!("the string {s:?}"),
        other => other.kind().to_string(),
    };
    ConfigError::WrongType {
        at: at.clone(),
        key: key.to_string(),
        expected,
        found,
    }
}

pub(crate) fn string<'a>(
    at: &ResourceRef,
    key: &str,
    value: &'a Json,
) -> Result<&'a str, ConfigError> {
    match value {
        Json::String(s) => Ok(s),
        other => Err(wrong_type(at, key, "a string", other)),
    }
}

pub(crate) fn boolean(at: &ResourceRef, key: &str, value: &Json) -> Result<bool, ConfigError> {
    match value {
        Json::Bool(b) => Ok(*b),
        other => Err(wrong_type(at, key, "true or false", other)),
    }
}

/// A list of strings, each checked by `check`; errors name the element (`pfNames[2]`).
pub(crate) fn list<T>(
    at: &ResourceRef,
    key: &str,
    value: &Json,
    check: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    let Json::Array(items) = value else {
        return Err(wrong_type(at, key, "a list of strings", value));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_key = format!("{key}[{i}]");
        let text = match item {
            Json::String(s) => s,
            // Go decodes a null list element as "", which matches nothing.
            other => return Err(wrong_type(at, &item_key, "a string", other)),
        };
        let parsed = check(text).map_err(|reason| ConfigError::InvalidValue {
            at: at.clone(),
            key: item_key,
            value: item.brief(),
            reason,
        })?;
        out.push(parsed);
    }
    Ok(out)
}
