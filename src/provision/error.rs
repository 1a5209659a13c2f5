//! What can be wrong with a node policy file: every error names the policy
//! (or its place in the list when it has no usable name) and the key.

use std::fmt;
use std::path::PathBuf;

/// How a policy is referred to in messages: its name, or `policies[N]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct PolicyRef(pub String);

impl PolicyRef {
    pub fn at(index: usize) -> PolicyRef {
        PolicyRef(format!("policies[{index}]"))
    }

    pub fn named(name: &str) -> PolicyRef {
        PolicyRef(format!("policy {name:?}"))
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading node policy {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node policy is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("node policy: {key}: {message}")]
    Document { key: String, message: String },
    /// One policy's key is wrong, alone or against the node.
    #[error("{policy}: {key}: {message}")]
    Key {
        policy: PolicyRef,
        key: String,
        message: String,
    },
    /// Two policies ask different things of the same PF or VF.
    #[error("{first} and {second} conflict on {target}: {key}: {message}")]
    Conflict {
        first: PolicyRef,
        second: PolicyRef,
        target: String,
        key: String,
        message: String,
    },
}

impl PolicyError {
    pub(crate) fn key(
        policy: &PolicyRef,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError::Key {
            policy: policy.clone(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Every error found, not only the first: a person fixing the file wants
/// them all at once.
#[derive(Debug)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl From<PolicyError> for PolicyErrors {
    fn from(error: PolicyError) -> Self {
        PolicyErrors(vec![error])
    }
}
