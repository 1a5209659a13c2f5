//! The CNI_* environment of one invocation, validated.

use super::error::{CniError, CODE_INVALID_ENV};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub container_id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `K=V;K=V` pairs of CNI_ARGS.
    pub args: BTreeMap<String, String>,
    pub path: Vec<PathBuf>,
    /// CNI_NETNS_OVERRIDE=true/1: the runtime means it when CNI_NETNS is
    /// the plugin's own namespace (the Go library's escape hatch).
    pub netns_override: bool,
}

fn invalid(msg: String) -> CniError {
    CniError::new(CODE_INVALID_ENV, msg)
}

pub fn command(value: &str) -> Result<Command, CniError> {
    Ok(match value {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "STATUS" => Command::Status,
        "GC" => Command::Gc,
        "VERSION" => Command::Version,
        "" => return Err(invalid("CNI_COMMAND is not set".into())),
        other => {
            return Err(invalid(format!(
                "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
            )))
        }
    })
}

/// Container IDs as the spec allows: an alphanumeric, then alphanumerics,
/// `_`, `.` or `-`. This also keeps `/` and `..` out of state file names.
pub fn valid_container_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Interface names the kernel accepts: 1-15 bytes, not `.`/`..`, no `/`,
/// `:` or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

impl CniEnv {
    /// Read and validate what `command` needs, from `get` (the process
    /// environment in production, a map in tests).
    pub fn from_lookup(
        command: Command,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<CniEnv, CniError> {
        let nonempty = |key: &str| get(key).filter(|v| !v.is_empty());
        let mut env = CniEnv::default();
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        if needs_attachment {
            env.container_id = nonempty("CNI_CONTAINERID")
                .ok_or_else(|| invalid("CNI_CONTAINERID is not set".into()))?;
            if !valid_container_id(&env.container_id) {
                return Err(invalid(format!(
                    "CNI_CONTAINERID {:?} is invalid: it must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
                    env.container_id
                )));
            }
            env.ifname =
                nonempty("CNI_IFNAME").ok_or_else(|| invalid("CNI_IFNAME is not set".into()))?;
            if !valid_ifname(&env.ifname) {
                return Err(invalid(format!(
                    "CNI_IFNAME {:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
                    env.ifname
                )));
            }
        }
        env.netns = nonempty("CNI_NETNS").map(PathBuf::from);
        // honoured as the Go library does: "true" in any case, or "1"
        env.netns_override = nonempty("CNI_NETNS_OVERRIDE")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        if matches!(command, Command::Add | Command::Check) && env.netns.is_none() {
            return Err(invalid("CNI_NETNS is not set".into()));
        }
        if let Some(args) = nonempty("CNI_ARGS") {
            for pair in args.split(';').filter(|p| !p.is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("CNI_ARGS: {pair:?} is not KEY=VALUE")))?;
                env.args.insert(key.to_owned(), value.to_owned());
            }
        }
        env.path = nonempty("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        if matches!(
            command,
            Command::Add | Command::Del | Command::Check | Command::Gc
        ) && env.path.is_empty()
        {
            return Err(invalid("CNI_PATH is not set".into()));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn add_needs_container_netns_ifname_and_path() {
        let full = [
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "net1"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
            ("CNI_ARGS", "IgnoreUnknown=true;MAC=02:00:00:00:00:01"),
        ];
        let parsed = CniEnv::from_lookup(Command::Add, env(&full)).unwrap();
        assert_eq!(parsed.path.len(), 2);
        assert_eq!(
            parsed.args.get("MAC").map(String::as_str),
            Some("02:00:00:00:00:01")
        );
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            let partial: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = CniEnv::from_lookup(Command::Add, env(&partial)).unwrap_err();
            assert_eq!(err.code, CODE_INVALID_ENV);
            assert!(
                err.msg.contains(missing),
                "{} should name {missing}",
                err.msg
            );
        }
        // DEL may come without a netns
        let no_netns: Vec<_> = full
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .collect();
        assert!(CniEnv::from_lookup(Command::Del, env(&no_netns))
            .unwrap()
            .netns
            .is_none());
    }

    #[test]
    fn names_that_could_escape_the_state_dir_are_rejected() {
        for id in ["../etc", "a/b", "..", ".hidden", "", "a b"] {
            assert!(!valid_container_id(id), "{id:?}");
        }
        for name in ["..", ".", "a/b", "", "way-too-long-ifname", "eth0:1"] {
            assert!(!valid_ifname(name), "{name:?}");
        }
        assert!(valid_container_id("8f7d-abc_1.2") && valid_ifname("net1"));
    }
}
