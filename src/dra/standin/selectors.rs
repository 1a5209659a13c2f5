//! Field and label selectors on ResourceSlices, parsed as the API server
//! parses them and refused where it refuses them. Pure.
//!
//! - Field selectors: `field=value`, `field==value`, `field!=value`, joined
//!   by `,` (a `\` escapes `,`, `=`, `!` and `\` in a value); only the
//!   fields the server indexes for ResourceSlices: `metadata.name`,
//!   `spec.nodeName`, `spec.driver`, `spec.pool.name`.
//! - Label selectors: `key`, `!key`, `key=value`, `key==value`,
//!   `key!=value`, `key in (a,b)`, `key notin (a,b)`, `key>n`, `key<n`;
//!   keys are qualified names, values label values.

use crate::dra::names::is_dns_subdomain;
use k8s_openapi::api::resource::v1::ResourceSlice;
use std::collections::BTreeMap;

/// The fields a ResourceSlice list can be selected by.
pub const SLICE_FIELDS: [&str; 4] = [
    "metadata.name",
    "spec.nodeName",
    "spec.driver",
    "spec.pool.name",
];

/// A slice's value of one of [`SLICE_FIELDS`] (a missing node name is "").
fn slice_field<'a>(slice: &'a ResourceSlice, field: &str) -> &'a str {
    match field {
        "metadata.name" => slice.metadata.name.as_deref().unwrap_or_default(),
        "spec.nodeName" => slice.spec.node_name.as_deref().unwrap_or_default(),
        "spec.driver" => &slice.spec.driver,
        _ => &slice.spec.pool.name,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    equal: bool,
    value: String,
}

/// A parsed field selector; the empty one selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<FieldTerm>);

/// Split on `separator` where it is not escaped with `\`; the escapes stay.
fn split_unescaped(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(String::new());
            continue;
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn unescape(value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                other => {
                    return Err(format!(
                        "invalid field selector value {value:?}: invalid escape sequence \\{}",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            },
            '=' | ',' | '!' => {
                return Err(format!(
                    "invalid field selector value {value:?}: unescaped {c:?}"
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if text.is_empty() {
            return Ok(Self(terms));
        }
        for term in split_unescaped(text, ',') {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ));
            };
            if !SLICE_FIELDS.contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push(FieldTerm {
                field: field.to_owned(),
                equal,
                value: unescape(value)?,
            });
        }
        Ok(Self(terms))
    }

    /// `spec.nodeName=<node>` and/or `spec.driver=<driver>`.
    pub fn node_and_driver(node: Option<&str>, driver: Option<&str>) -> Self {
        let term = |field: &str, value: &str| FieldTerm {
            field: field.to_owned(),
            equal: true,
            value: value.to_owned(),
        };
        let mut terms = Vec::new();
        terms.extend(node.map(|n| term("spec.nodeName", n)));
        terms.extend(driver.map(|d| term("spec.driver", d)));
        Self(terms)
    }

    pub fn matches(&self, slice: &ResourceSlice) -> bool {
        self.0
            .iter()
            .all(|t| (slice_field(slice, &t.field) == t.value) == t.equal)
    }
}

/// A label key: `[prefix/]name`, prefix a DNS subdomain of at most 253
/// characters, name at most 63 alphanumerics, `-`, `_`, `.`, starting and
/// ending alphanumeric.
fn is_label_key(key: &str) -> bool {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.len() > 253 || !is_dns_subdomain(prefix) {
                return false;
            }
            name
        }
        None => key,
    };
    !name.is_empty() && is_label_value(name)
}

/// Empty, or at most 63 alphanumerics, `-`, `_`, `.`, starting and ending
/// alphanumeric.
fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(value.chars().next())
        && edge(value.chars().last())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelTerm {
    Exists(String),
    Missing(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Greater(String, i64),
    Less(String, i64),
}

/// A parsed label selector; the empty one selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelTerm>);

/// Split on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        if text.trim().is_empty() {
            return Ok(Self(terms));
        }
        let bad_key = |key: &str| format!("unable to parse requirement: invalid label key {key:?}");
        let bad_value =
            |value: &str| format!("unable to parse requirement: invalid label value {value:?}");
        for raw in split_terms(text) {
            let term = raw.trim();
            let checked_key = |key: &str| -> Result<String, String> {
                let key = key.trim();
                if is_label_key(key) {
                    Ok(key.to_owned())
                } else {
                    Err(bad_key(key))
                }
            };
            let set = |key: &str, rest: &str| -> Result<(String, Vec<String>), String> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("found '{rest}', expected: '(' ... ')' in {term:?}"))?;
                let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
                if let Some(bad) = values.iter().find(|v| !is_label_value(v)) {
                    return Err(bad_value(bad));
                }
                Ok((checked_key(key)?, values))
            };
            let parsed = if let Some(key) = term.strip_prefix('!') {
                LabelTerm::Missing(checked_key(key)?)
            } else if let Some((key, rest)) = term.split_once(" notin ") {
                let (key, values) = set(key, rest)?;
                LabelTerm::NotIn(key, values)
            } else if let Some((key, rest)) = term.split_once(" in ") {
                let (key, values) = set(key, rest)?;
                LabelTerm::In(key, values)
            } else if let Some((key, value)) = term.split_once("!=") {
                let value = value.trim();
                if !is_label_value(value) {
                    return Err(bad_value(value));
                }
                LabelTerm::NotIn(checked_key(key)?, vec![value.to_owned()])
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                let value = value.trim();
                if !is_label_value(value) {
                    return Err(bad_value(value));
                }
                LabelTerm::In(checked_key(key)?, vec![value.to_owned()])
            } else if let Some((key, n)) = term.split_once('>') {
                let n = n.trim().parse().map_err(|_| {
                    format!(
                        "unable to parse requirement: for 'gt', value must be an integer: {n:?}"
                    )
                })?;
                LabelTerm::Greater(checked_key(key)?, n)
            } else if let Some((key, n)) = term.split_once('<') {
                let n = n.trim().parse().map_err(|_| {
                    format!(
                        "unable to parse requirement: for 'lt', value must be an integer: {n:?}"
                    )
                })?;
                LabelTerm::Less(checked_key(key)?, n)
            } else {
                LabelTerm::Exists(checked_key(term)?)
            };
            terms.push(parsed);
        }
        Ok(Self(terms))
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key));
        let number = |key: &str| get(key).and_then(|v| v.parse::<i64>().ok());
        self.0.iter().all(|term| match term {
            LabelTerm::Exists(key) => get(key).is_some(),
            LabelTerm::Missing(key) => get(key).is_none(),
            LabelTerm::In(key, values) => get(key).is_some_and(|v| values.contains(v)),
            LabelTerm::NotIn(key, values) => !get(key).is_some_and(|v| values.contains(v)),
            LabelTerm::Greater(key, n) => number(key).is_some_and(|v| v > *n),
            LabelTerm::Less(key, n) => number(key).is_some_and(|v| v < *n),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn slice(name: &str, node: &str, driver: &str) -> ResourceSlice {
        let mut s = ResourceSlice::default();
        s.metadata.name = Some(name.into());
        s.metadata.labels = Some(BTreeMap::from([("tier".into(), "2".into())]));
        s.spec.node_name = Some(node.into());
        s.spec.driver = driver.into();
        s
    }

    #[test]
    fn field_selectors_as_the_server_reads_them() {
        let a = slice("a", "worker-1", "sriov-rs.invalid");
        let selector =
            FieldSelector::parse("spec.nodeName=worker-1,spec.driver==sriov-rs.invalid").unwrap();
        assert!(selector.matches(&a));
        assert!(!FieldSelector::parse("spec.nodeName!=worker-1")
            .unwrap()
            .matches(&a));
        assert!(FieldSelector::parse("").unwrap().matches(&a));
        let escaped = slice("a", "x,y", "d");
        assert!(FieldSelector::parse(r"spec.nodeName=x\,y")
            .unwrap()
            .matches(&escaped));
        assert_eq!(
            FieldSelector::parse("spec.devices=3").unwrap_err(),
            "field label not supported: spec.devices"
        );
        assert!(FieldSelector::parse("spec.nodeName")
            .unwrap_err()
            .contains("can't understand"));
        assert!(FieldSelector::parse(r"spec.nodeName=a\x")
            .unwrap_err()
            .contains("escape"));
    }

    #[test]
    fn label_selectors_as_the_server_reads_them() {
        let labels = BTreeMap::from([
            ("app".to_string(), "sriov".to_string()),
            ("tier".to_string(), "2".to_string()),
        ]);
        let labels = Some(&labels);
        let yes = [
            "",
            "app",
            "!other",
            "app=sriov",
            "app==sriov",
            "app!=gpu",
            "app in (sriov, gpu)",
            "app notin (gpu)",
            "tier>1",
            "tier<3",
            "app,tier in (2)",
            "example.com/x notin (a)",
        ];
        for text in yes {
            assert!(
                LabelSelector::parse(text).unwrap().matches(labels),
                "{text}"
            );
        }
        let no = [
            "other",
            "!app",
            "app=gpu",
            "app in (gpu)",
            "tier>2",
            "app,other",
        ];
        for text in no {
            assert!(
                !LabelSelector::parse(text).unwrap().matches(labels),
                "{text}"
            );
        }
        let refused = [
            "-app",
            "app=-x",
            "app in sriov",
            "tier>two",
            "Bad_Prefix!/x=1",
            "app=a b",
        ];
        for text in refused {
            assert!(LabelSelector::parse(text).is_err(), "{text}");
        }
    }
}
