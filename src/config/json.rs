//! A JSON tree that keeps object keys in document order, and case-insensitive key lookup on it.
//!
//! Why not `serde_json::Value`: its map is sorted by key, so two spellings of one key (`isRdma` and
//! `IsRdma`) lose their order, and Go's decoder — whose behaviour we copy — lets the later one win.
//! Walking our own tree also lets every type error name the resource and the key, which serde's
//! derive cannot do.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One JSON value, objects kept as an ordered list of entries (duplicates included).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// The number as written; we never compute with it, only report it.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The JSON type name, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// A short rendering of the value for messages (strings quoted, containers summarised).
    pub(crate) fn brief(&self) -> String {
        match self {
            Json::Null => "null".to_string(),
            Json::Bool(b) => b.to_string(),
            Json::Number(n) => n.clone(),
            Json::String(s) => format!("{s:?}"),
            Json::Array(_) => "an array".to_string(),
            Json::Object(_) => "an object".to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// The entries of one JSON object, matched against a list of known keys the way Go's
/// `encoding/json` does: ASCII case-insensitively, `null` meaning "leave unset", the last
/// non-null occurrence winning.
pub(crate) struct Fields<'a> {
    /// (canonical key, every non-null value given for it in document order)
    known: Vec<(&'static str, Vec<&'a Json>)>,
    /// Keys that matched nothing in the known list, as written.
    pub(crate) unknown: Vec<&'a str>,
    /// Canonical keys written more than once (in any casing), with the spellings used.
    pub(crate) repeated: Vec<(&'static str, Vec<&'a str>)>,
}

impl<'a> Fields<'a> {
    pub(crate) fn collect(entries: &'a [(String, Json)], known_keys: &[&'static str]) -> Self {
        let mut known: Vec<(&'static str, Vec<&'a Json>)> = Vec::new();
        let mut spellings: Vec<(&'static str, Vec<&'a str>)> = Vec::new();
        let mut unknown = Vec::new();
        for (key, value) in entries {
            let Some(canonical) = known_keys.iter().find(|k| k.eq_ignore_ascii_case(key)) else {
                unknown.push(key.as_str());
                continue;
            };
            match spellings.iter_mut().find(|(k, _)| k == canonical) {
                Some((_, seen)) => seen.push(key.as_str()),
                None => spellings.push((canonical, vec![key.as_str()])),
            }
            // Go leaves a field untouched when the JSON value is null.
            if matches!(value, Json::Null) {
                continue;
            }
            match known.iter_mut().find(|(k, _)| k == canonical) {
                Some((_, values)) => values.push(value),
                None => known.push((canonical, vec![value])),
            }
        }
        let repeated = spellings.into_iter().filter(|(_, s)| s.len() > 1).collect();
        Fields {
            known,
            unknown,
            repeated,
        }
    }

    /// The value that wins for `key` (the last non-null one), if any.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Json> {
        self.all(key).last().copied()
    }

    /// Every non-null value given for `key`, in document order.
    pub(crate) fn all(&self, key: &str) -> &[&'a Json] {
        self.known
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// Canonical keys that carry a non-null value, in first-seen order.
    pub(crate) fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.known.iter().map(|(k, _)| *k)
    }
}
