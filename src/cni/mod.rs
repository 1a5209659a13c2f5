//! The `sriov` CNI plugin: the protocol edge (env, stdin, versions, the error
//! contract) and the commands ADD, DEL, CHECK, STATUS, GC and VERSION.

pub mod add;
pub mod check;
pub mod config;
pub mod del;
pub mod device_info;
pub mod env;
pub mod error;
pub mod ipam;
pub mod lifecycle;
pub mod netns_guard;
pub mod node;
pub mod pf_side;
pub mod restore;
pub mod result;
pub mod state;
pub mod version;
pub mod vf_attr;
pub mod vf_target;

pub use error::CniError;

use config::NetConf;
use env::{CniEnv, Command};
use error::CODE_INCOMPATIBLE_VERSION;
use std::io::Read;

/// Run one CNI invocation from the process environment: what to print on
/// stdout (a result, or nothing), or the error to print.
pub fn run_from_env(stdin: &mut dyn Read) -> Result<Option<String>, CniError> {
    let command = env::command(&std::env::var("CNI_COMMAND").unwrap_or_default())?;
    let mut input = Vec::new();
    stdin
        .read_to_end(&mut input)
        .map_err(|e| CniError::io("reading stdin", e))?;
    if command == Command::Version {
        return version::answer(&String::from_utf8_lossy(&input)).map(Some);
    }
    let conf = NetConf::parse(&input).map_err(|e| e.with_version(&declared_version(&input)))?;
    init_logging(&conf);
    let version = conf.cni_version.as_str();
    let fail_version = |e: CniError| e.with_version(version);
    if !version::SUPPORTED.contains(&version) {
        return Err(CniError::new(
            CODE_INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
        )
        .with_details(format!(
            "supported versions: {}",
            version::SUPPORTED.join(", ")
        )));
    }
    // As the Go library: CHECK needs 0.4.0+, STATUS and GC need 1.1.0.
    let too_old = |needed: &str| version::compare(version, needed).is_lt();
    match command {
        Command::Check if too_old("0.4.0") => {
            return Err(CniError::new(
                CODE_INCOMPATIBLE_VERSION,
                format!("CHECK needs cniVersion 0.4.0 or later, not {version}"),
            ));
        }
        Command::Status | Command::Gc if too_old("1.1.0") => {
            return Err(CniError::new(
                CODE_INCOMPATIBLE_VERSION,
                format!("STATUS and GC need cniVersion 1.1.0, not {version}"),
            ));
        }
        _ => {}
    }
    let lookup = |key: &str| std::env::var(key).ok();
    let env = CniEnv::from_lookup(command, lookup).map_err(fail_version)?;
    let mut node = node::Node::from_lookup(lookup);
    let node = &mut node;
    let outcome = match command {
        Command::Add => add::add(node, &env, &input, &conf).map(|result| Some(result.to_string())),
        Command::Del => del::del(node, &env, &input, &conf).map(|()| None),
        Command::Check => check::check(node, &env, &input, &conf).map(|()| None),
        Command::Status => lifecycle::status(node, &env, &input, &conf).map(|()| None),
        Command::Gc => lifecycle::gc(node, &env, &input, &conf).map(|()| None),
        // answered above, before the config is parsed; kept so the match is total
        Command::Version => version::answer("").map(Some),
    };
    outcome.map_err(fail_version)
}

/// The `cniVersion` a config declares, even when the rest does not decode,
/// so that its error is reported in that version.
fn declared_version(input: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|v| version::SUPPORTED.contains(&v.as_str()))
        .unwrap_or_default()
}

/// Logs go to `logFile` (appended) or stderr, never stdout; `logLevel` as
/// sriov-cni spells it (`panic`, `error`, `warning`, `info`, `debug`,
/// `verbose`); an unknown level means `info`.
fn init_logging(conf: &NetConf) {
    use tracing::Level;
    let level = match conf.log_level.as_deref().map(str::to_lowercase).as_deref() {
        Some("panic") | Some("error") => Level::ERROR,
        Some("warning") => Level::WARN,
        Some("debug") | Some("verbose") => Level::DEBUG,
        _ => Level::INFO,
    };
    let file = conf
        .log_file
        .as_deref()
        .filter(|f| !f.is_empty())
        .map(std::path::Path::new);
    crate::logging::init_cni(level, file);
}
