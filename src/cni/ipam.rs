//! IPAM delegation: exec `ipam.type` from CNI_PATH with the same stdin and
//! the same environment, as the spec says.
//!
//! Version bridge (ours): Debian's IPAM plugins speak CNI up to 1.0.0. When
//! one answers "incompatible version" to a newer config, we ask its VERSION
//! and retry with the newest version both sides speak, then convert its
//! result up. Upstream sriov-cni would fail the pod instead.

use super::env::CniEnv;
use super::error::{CniError, CODE_INCOMPATIBLE_VERSION, CODE_IPAM};
use super::result::CniResult;
use super::version::CniVersion;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Ipam<'a> {
    pub plugin: &'a str,
    pub env: &'a CniEnv,
    /// The whole network config, exactly as we received it.
    pub stdin: &'a [u8],
    pub cni_version: &'a str,
    /// CNI_CONTAINERID/CNI_IFNAME/CNI_NETNS to use instead of ours (GC
    /// releases other attachments' addresses).
    pub attachment: Option<(&'a str, &'a str, Option<&'a str>)>,
    /// CNI_ARGS to use instead of ours: what ADD got, for later calls on
    /// the same attachment (GC has none; a runtime's DEL may pass fewer).
    pub cni_args: Option<&'a str>,
}

/// CNI_ARGS text (`K=V;K=V`) from parsed pairs.
pub fn cni_args_text(args: &std::collections::BTreeMap<String, String>) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn find_plugin(plugin: &str, path: &[PathBuf]) -> Result<PathBuf, CniError> {
    // a name, never a path: DEL, CHECK and GC do not run ADD's validation,
    // and `dir.join("/abs/path")` would be that path
    if plugin.contains('/') || plugin.starts_with('.') || plugin.is_empty() {
        return Err(CniError::new(
            super::error::CODE_INVALID_CONFIG,
            format!("ipam.type {plugin:?} is not a plugin name"),
        ));
    }
    if path.is_empty() {
        // STATUS may come without CNI_PATH; the other commands require it
        return Err(CniError::new(
            CODE_IPAM,
            format!("IPAM plugin {plugin:?} cannot be found: CNI_PATH is not set"),
        ));
    }
    path.iter()
        .map(|dir| dir.join(plugin))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            CniError::new(
                CODE_IPAM,
                format!(
                    "IPAM plugin {plugin:?} not found in CNI_PATH {}",
                    path.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            )
        })
}

/// Run `binary` with CNI_COMMAND=`command` and our own environment (the
/// CNI_* variables as the runtime gave them); Ok(stdout) on exit 0, the
/// plugin's own CNI error otherwise.
fn exec(
    binary: &Path,
    command: &str,
    stdin: &[u8],
    attachment: Attachment,
    cni_args: Option<&str>,
) -> Result<Vec<u8>, CniError> {
    let mut process = tie_to_parent(binary);
    process.env("CNI_COMMAND", command);
    if let Some(args) = cni_args {
        process.env("CNI_ARGS", args);
    }
    if let Some((container_id, ifname, netns)) = attachment {
        process
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", ifname);
        match netns {
            Some(netns) => process.env("CNI_NETNS", netns),
            None => process.env_remove("CNI_NETNS"),
        };
    }
    let mut child = process
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CniError::new(
                CODE_IPAM,
                format!("starting IPAM plugin {}: {e}", binary.display()),
            )
        })?;
    if let Some(mut pipe) = child.stdin.take() {
        // a plugin that exits without reading stdin closes the pipe: its exit status tells the story
        let _ = pipe.write_all(stdin);
    }
    let output = child.wait_with_output().map_err(|e| {
        CniError::new(
            CODE_IPAM,
            format!("waiting for IPAM plugin {}: {e}", binary.display()),
        )
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match serde_json::from_slice::<Value>(&output.stdout) {
        Ok(error) if error.get("code").is_some() => {
            let code = error
                .get("code")
                .and_then(Value::as_u64)
                .unwrap_or(u64::from(CODE_IPAM)) as u32;
            let msg = error.get("msg").and_then(Value::as_str).unwrap_or("failed");
            let details = error
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Err(
                CniError::new(code, format!("IPAM plugin {name} {command}: {msg}"))
                    .with_details(details),
            )
        }
        _ => Err(CniError::new(
            CODE_IPAM,
            format!(
                "IPAM plugin {name} {command} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim()
            ),
        )),
    }
}

static LAUNCHER_ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Called by the `sriov` binary: this executable understands
/// `TIED_EXEC_ARG`, so IPAM plugins are started through it.
pub fn enable_launcher() {
    LAUNCHER_ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The hidden first argument that makes `sriov` the IPAM plugin's launcher
/// (see `exec_tied_to_parent`). Runtimes never pass arguments to a plugin.
pub const TIED_EXEC_ARG: &str = "--sriov-exec-ipam-tied-to-parent";

/// If we are killed (a runtime timeout's SIGKILL), the IPAM plugin must not
/// finish an allocation behind our back after the runtime's DEL already ran:
/// it gets SIGKILL when we die. Setting that up between fork and exec would
/// need `pre_exec` (unsafe), so we start ourselves as a launcher instead,
/// which sets it on itself and then becomes the IPAM plugin by exec (the
/// setting survives exec). Our pid goes along to close the race where we die
/// before the launcher has set it.
///
/// Only the `sriov` binary can be its own launcher (it handles
/// `TIED_EXEC_ARG` first thing in `main` and calls [`enable_launcher`]);
/// any other program using this library (tests, the benches) execs the
/// plugin directly, without the tie.
fn tie_to_parent(binary: &Path) -> Command {
    if !LAUNCHER_ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
        return Command::new(binary);
    }
    let mut process = Command::new("/proc/self/exe");
    process
        .arg(TIED_EXEC_ARG)
        .arg(std::process::id().to_string())
        .arg(binary);
    process
}

/// The launcher's side (`sriov <TIED_EXEC_ARG> <parent pid> <plugin>`): ask
/// for SIGKILL when the parent dies, make sure the parent is still the one
/// that started us (had it died before that, nothing would kill us), then
/// exec the plugin with the same stdin, stdout, stderr and environment.
/// Returns only on failure, with the exit code to use.
pub fn exec_tied_to_parent(mut args: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    use std::os::unix::process::CommandExt;
    let parent = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse::<i32>().ok()));
    let (Some(parent), Some(plugin)) = (parent, args.next()) else {
        return launcher_failed("usage: sriov --sriov-exec-ipam-tied-to-parent <pid> <plugin>");
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        return launcher_failed(&format!("setting the parent-death signal: {e}"));
    }
    if nix::unistd::getppid().as_raw() != parent {
        // the plugin that started us is gone: nobody will read the result,
        // and its DEL may already have run
        return 1;
    }
    let error = Command::new(&plugin).exec();
    launcher_failed(&format!(
        "starting IPAM plugin {}: {error}",
        Path::new(&plugin).display()
    ))
}

/// The launcher's own failure, as a CNI error on the stdout the parent reads.
fn launcher_failed(msg: &str) -> i32 {
    println!("{}", CniError::new(CODE_IPAM, msg).reply(None).to_json());
    1
}

/// The versions a plugin says it speaks (CNI_COMMAND=VERSION).
fn supported_versions(binary: &Path) -> Result<Vec<String>, CniError> {
    let versions = exec(binary, "VERSION", br#"{"cniVersion":"0.3.1"}"#, None, None)?;
    let versions: Value = serde_json::from_slice(&versions).unwrap_or_default();
    Ok(versions
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

type Attachment<'a> = Option<(&'a str, &'a str, Option<&'a str>)>;

/// The newest version in both lists.
fn best_common_version(theirs: &[String]) -> Option<CniVersion> {
    CniVersion::ALL
        .into_iter()
        .rev()
        .find(|v| theirs.iter().any(|t| t == v.as_str()))
}

fn with_version(stdin: &[u8], version: CniVersion) -> Result<Vec<u8>, CniError> {
    let mut config: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            super::error::CODE_DECODE,
            format!("re-reading the config for IPAM: {e}"),
        )
    })?;
    if let Some(object) = config.as_object_mut() {
        object.insert("cniVersion".into(), Value::from(version.as_str()));
        // prevResult (CHECK, DEL) is in the config's version: the plugin
        // parses it as the version we now claim, so convert it too
        if let Some(prev) = object.get("prevResult").filter(|p| p.is_object()) {
            let converted = CniResult::parse(prev.clone())?.to_version(version);
            object.insert("prevResult".into(), converted);
        }
    }
    Ok(serde_json::to_vec(&config).unwrap_or_default())
}

impl<'a> Ipam<'a> {
    /// Delegate for our own attachment, in the config's version.
    pub fn new(plugin: &'a str, env: &'a CniEnv, stdin: &'a [u8], cni_version: &'a str) -> Self {
        Ipam {
            plugin,
            env,
            stdin,
            cni_version,
            attachment: None,
            cni_args: None,
        }
    }

    fn run(&self, command: &str) -> Result<Vec<u8>, CniError> {
        let binary = find_plugin(self.plugin, &self.env.path)?;
        match exec(&binary, command, self.stdin, self.attachment, self.cni_args) {
            // STATUS and GC exist from 1.1.0 only: no older version to fall back to
            Err(error)
                if error.code == CODE_INCOMPATIBLE_VERSION
                    && !matches!(command, "STATUS" | "GC") =>
            {
                let theirs = supported_versions(&binary)?;
                let Some(common) = best_common_version(&theirs) else {
                    return Err(error);
                };
                if common.as_str() == self.cni_version {
                    return Err(error);
                }
                tracing::debug!(
                    plugin = self.plugin,
                    from = self.cni_version,
                    to = common.as_str(),
                    "IPAM: retrying with an older cniVersion"
                );
                exec(
                    &binary,
                    command,
                    &with_version(self.stdin, common)?,
                    self.attachment,
                    self.cni_args,
                )
            }
            other => other,
        }
    }

    /// IPAM ADD: the result, with every IP assigned to interface 0.
    pub fn add(&self) -> Result<CniResult, CniError> {
        let stdout = self.run("ADD")?;
        let value: Value = serde_json::from_slice(&stdout).map_err(|e| {
            CniError::new(
                CODE_IPAM,
                format!(
                    "IPAM plugin {} ADD printed no JSON result: {e}",
                    self.plugin
                ),
            )
        })?;
        let mut result = CniResult::parse(value)?;
        if result.ips.is_empty() {
            return Err(CniError::new(
                CODE_IPAM,
                format!("IPAM plugin {} returned no IP addresses", self.plugin),
            ));
        }
        for ip in &mut result.ips {
            ip.interface = Some(0);
        }
        Ok(result)
    }

    pub fn del(&self) -> Result<(), CniError> {
        self.run("DEL").map(drop)
    }

    pub fn check(&self) -> Result<(), CniError> {
        self.run("CHECK").map(drop)
    }

    /// STATUS, forwarded; Ok(false) when the plugin predates STATUS (it
    /// does not speak 1.1.0), which we document and tolerate.
    pub fn status(&self) -> Result<bool, CniError> {
        self.forward_1_1("STATUS")
    }

    /// GC, forwarded; Ok(false) when the plugin predates GC.
    pub fn gc(&self) -> Result<bool, CniError> {
        self.forward_1_1("GC")
    }

    fn forward_1_1(&self, command: &str) -> Result<bool, CniError> {
        // Plugins built before CNI 1.1.0 do not know these commands and
        // answer with misleading errors (host-local 1.1.1: "missing
        // containerID"), so ask first.
        let binary = find_plugin(self.plugin, &self.env.path)?;
        let needed = CniVersion::V1_1_0.as_str();
        if !supported_versions(&binary)?.iter().any(|v| v == needed) {
            tracing::info!(
                plugin = self.plugin,
                command,
                "IPAM plugin does not speak CNI 1.1.0: not forwarded"
            );
            return Ok(false);
        }
        self.run(command).map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_version_applies_to_the_prev_result_too() {
        let config = serde_json::json!({
            "cniVersion": "1.1.0", "name": "n", "ipam": {"type": "static"},
            "prevResult": {"cniVersion": "1.1.0",
                "interfaces": [{"name": "net1", "mtu": 1500, "pciID": "0000:3b:01.0"}],
                "ips": [{"address": "10.1.0.2/24", "interface": 0}]}
        });
        let bytes = with_version(config.to_string().as_bytes(), CniVersion::V0_4_0).unwrap();
        let old: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(old["cniVersion"], "0.4.0");
        assert_eq!(old["prevResult"]["cniVersion"], "0.4.0");
        assert_eq!(old["prevResult"]["ips"][0]["version"], "4");
        assert!(old["prevResult"]["interfaces"][0].get("pciID").is_none());
        assert_eq!(old["ipam"]["type"], "static", "the rest is untouched");
    }

    #[test]
    fn an_ipam_type_that_is_a_path_is_never_run() {
        // DEL does not validate the config: `/bin/sh` must not be exec'd
        let path = [PathBuf::from("/usr/lib/cni")];
        for plugin in ["/bin/sh", "../sbin/x", ".hidden", ""] {
            assert_eq!(find_plugin(plugin, &path).unwrap_err().code, 7, "{plugin}");
        }
    }

    #[test]
    fn the_newest_common_version_wins() {
        let debian = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"].map(String::from);
        assert_eq!(best_common_version(&debian), Some(CniVersion::V1_0_0));
        assert_eq!(best_common_version(&["0.2.0".to_owned()]), None);
    }
}
