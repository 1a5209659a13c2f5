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

pub use error::{CniError, ErrorReply};

use config::NetConf;
use env::{CniEnv, Command};
use std::io::Read;
use version::CniVersion;

/// Run one CNI invocation from the process environment: what to print on
/// stdout (a result, or nothing), or the error to print. The only place
/// that reads the environment: the commands get a [`CniEnv`] and a
/// [`node::Node`] built here.
pub fn run_from_env(stdin: &mut dyn Read) -> Result<Option<String>, ErrorReply> {
    run(|key| std::env::var(key).ok(), stdin)
}

/// One CNI invocation with the environment read through `lookup`.
pub fn run(
    lookup: impl Fn(&str) -> Option<String> + Copy,
    stdin: &mut dyn Read,
) -> Result<Option<String>, ErrorReply> {
    let command =
        env::command(&lookup("CNI_COMMAND").unwrap_or_default()).map_err(|e| e.reply(None))?;
    let mut input = Vec::new();
    stdin
        .read_to_end(&mut input)
        .map_err(|e| CniError::io("reading stdin", e).reply(None))?;
    if command == Command::Version {
        return version::answer(&String::from_utf8_lossy(&input))
            .map(Some)
            .map_err(|e| e.reply(None));
    }
    let conf = NetConf::parse(&input).map_err(|e| e.reply(declared_version(&input)))?;
    init_logging(&conf);
    let version = CniVersion::require(&conf.cni_version).map_err(|e| e.reply(None))?;
    let fail = |e: CniError| e.reply(Some(version));
    version.allows(command).map_err(fail)?;
    let env = CniEnv::from_lookup(command, lookup).map_err(fail)?;
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
    outcome.map_err(fail)
}

/// The `cniVersion` a config declares, even when the rest does not decode,
/// so that its error is reported in that version.
fn declared_version(input: &[u8]) -> Option<CniVersion> {
    serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(CniVersion::parse))
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
