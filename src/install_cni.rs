//! `sriovctl install-cni`: put the `sriov` CNI plugin binary where the node's
//! container runtime looks for CNI plugins, from an init container that sees
//! the node's filesystem under a host root (default `/host`).
//!
//! Where the bin dir is (first match wins; paths are the node's, looked up
//! under the host root):
//! 1. `--cni-bin-dir`, taken as is (a path in this process's view);
//! 2. `/var/lib/rancher/k3s/data/cni`: K3s since the October 2024 releases, a
//!    fixed dir that survives K3s upgrades;
//! 3. `/var/lib/rancher/k3s/data/current/bin`: older K3s, where `current` is a
//!    symlink to `data/<hash>` and the hash changes with every K3s release, so
//!    the plugin has to be installed again after each upgrade;
//! 4. `/opt/cni/bin`: every other Kubernetes.
//!
//! Safe to run on every pod start: a byte-identical plugin is left alone, a new
//! one is written to a temporary file in the same dir, synced, made 0755, asked
//! for `VERSION`, and only then renamed over the old one, so a node never sees
//! a partial or broken `sriov`.
//!
//! K3s upgrades restart the k3s service but not running pods, so an init
//! container alone does not notice that `current` moved. `--watch` keeps the
//! process running and re-checks every interval; the K3s overlay runs it as a
//! sidecar. It also follows a node from the old layout to the new one.

mod copy;
mod locate;
mod verify;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use locate::{GENERIC_BIN_DIR, K3S_BIN_DIR, K3S_LEGACY_CURRENT};

/// Default mount point of the node's root filesystem inside the container.
pub const DEFAULT_HOST_ROOT: &str = "/host";
/// File name of the CNI plugin: NADs say `"type": "sriov"`.
pub const PLUGIN_NAME: &str = "sriov";
/// The CNI version the installed binary must support for the install to count.
pub const REQUIRED_CNI_VERSION: &str = "1.0.0";

/// Arguments of `sriovctl install-cni`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallCniArgs {
    /// CNI bin dir to install into, as this process sees it; skips detection
    #[arg(long, value_name = "DIR")]
    pub cni_bin_dir: Option<PathBuf>,

    /// Where the node's root filesystem is mounted in this container
    #[arg(long, value_name = "DIR", default_value = DEFAULT_HOST_ROOT)]
    pub host_root: PathBuf,

    /// The plugin binary to install [default: `sriov` next to this executable]
    #[arg(long, value_name = "FILE")]
    pub source: Option<PathBuf>,

    /// Keep running and install again whenever the target dir changes (older
    /// K3s upgrades) or the installed file differs; never returns
    #[arg(long)]
    pub watch: bool,

    /// Time between checks in --watch mode: `30`, `30s`, `500ms`, `2m`
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub watch_interval: Duration,

    /// How long the installed binary gets to answer CNI_COMMAND=VERSION
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_interval)]
    pub verify_timeout: Duration,
}

impl Default for InstallCniArgs {
    fn default() -> Self {
        InstallCniArgs {
            cni_bin_dir: None,
            host_root: PathBuf::from(DEFAULT_HOST_ROOT),
            source: None,
            watch: false,
            watch_interval: Duration::from_secs(30),
            verify_timeout: Duration::from_secs(10),
        }
    }
}

/// Which rule chose the bin dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinDirKind {
    /// `--cni-bin-dir`.
    Explicit,
    /// K3s since October 2024: `data/cni`.
    K3s,
    /// K3s before October 2024: `data/current/bin`, resolved to the release dir
    /// `data/<hash>` it pointed to; install again after a K3s upgrade.
    K3sLegacy { release_dir: PathBuf },
    /// `/opt/cni/bin`.
    Generic,
}

impl fmt::Display for BinDirKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinDirKind::Explicit => f.write_str("given with --cni-bin-dir"),
            BinDirKind::K3s => f.write_str("K3s, October 2024 releases and later"),
            BinDirKind::K3sLegacy { release_dir } => write!(
                f,
                "K3s before October 2024, release dir {}; install again after K3s upgrades",
                release_dir.display()
            ),
            BinDirKind::Generic => f.write_str("generic CNI bin dir"),
        }
    }
}

/// What happened to the plugin file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallAction {
    /// There was no `sriov` in the bin dir.
    Created,
    /// A different file was replaced.
    Replaced,
    /// The installed file was already byte-identical (and 0755).
    Unchanged,
}

/// The outcome of one install pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The bin dir, in this process's view (symlinks resolved for K3s).
    pub bin_dir: PathBuf,
    pub kind: BinDirKind,
    /// `bin_dir/sriov`.
    pub installed: PathBuf,
    pub action: InstallAction,
    /// The installed binary's `supportedVersions`; empty when the pass did not
    /// run it (an unchanged file in --watch mode).
    pub supported_versions: Vec<String>,
}

impl fmt::Display for InstallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            InstallAction::Created => "installed",
            InstallAction::Replaced => "replaced",
            InstallAction::Unchanged => "already up to date:",
        };
        write!(f, "{action} {} ({})", self.installed.display(), self.kind)?;
        if !self.supported_versions.is_empty() {
            write!(f, ", speaks CNI {}", self.supported_versions.join(", "))?;
        }
        Ok(())
    }
}

/// Everything that can stop an install; each variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum InstallCniError {
    #[error("finding the running executable, to use the sriov binary next to it: {0}")]
    CurrentExe(#[source] io::Error),
    #[error("reading source binary {}: {source}", path.display())]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("source binary {} is not a regular file", path.display())]
    SourceNotAFile { path: PathBuf },
    #[error("--cni-bin-dir {} is not a directory", path.display())]
    ExplicitDirMissing { path: PathBuf },
    #[error("resolving {} under host root {}: {source}", path.display(), root.display())]
    Resolve {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "K3s link {} exists but {} is missing (K3s may be mid-upgrade; retry)",
        link.display(), bin_dir.display()
    )]
    K3sReleaseWithoutBin { link: PathBuf, bin_dir: PathBuf },
    #[error("no CNI bin dir found under host root {}: tried {}", root.display(), join_paths(tried))]
    NoBinDir { root: PathBuf, tried: Vec<PathBuf> },
    #[error("reading installed {}: {source}", path.display())]
    ReadInstalled {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{step} {}: {source}", path.display())]
    Write {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("renaming {} to {}: {source}", from.display(), to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running {} with CNI_COMMAND=VERSION: {source}", path.display())]
    VerifySpawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} did not answer CNI_COMMAND=VERSION within {timeout:?}", path.display())]
    VerifyTimeout { path: PathBuf, timeout: Duration },
    #[error("{} failed CNI_COMMAND=VERSION ({status}): {output}", path.display())]
    VerifyFailed {
        path: PathBuf,
        status: String,
        output: String,
    },
    #[error("{} answered CNI_COMMAND=VERSION with no CNI version result ({reason}): {output}", path.display())]
    VerifyNotCni {
        path: PathBuf,
        reason: String,
        output: String,
    },
    #[error(
        "{} does not support CNI {wanted} (supportedVersions: {})",
        path.display(), supported.join(", ")
    )]
    VerifyUnsupported {
        path: PathBuf,
        wanted: &'static str,
        supported: Vec<String>,
    },
}

fn join_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// Install once; with `--watch`, then keep checking forever (this function
/// only returns if the first install fails). The first install always runs the
/// binary with `VERSION`, even when the file was already in place, so a
/// `noexec` mount or a broken copy is caught on every pod start.
pub fn run(args: &InstallCniArgs) -> Result<InstallReport, InstallCniError> {
    let report = install(args, true)?;
    if args.watch {
        tracing::info!(%report, "install-cni: watching every {:?}", args.watch_interval);
        watch(args, &|| false);
    }
    Ok(report)
}

/// The --watch loop: every `watch_interval`, locate the bin dir again and
/// reinstall if the file there is missing or differs. Errors are logged and
/// retried at the next tick (K3s briefly has a dangling `current` link during
/// an upgrade). Returns when `stop` says so, checked at least every 100 ms.
pub fn watch(args: &InstallCniArgs, stop: &dyn Fn() -> bool) {
    loop {
        if sleep_unless_stopped(args.watch_interval, stop) {
            return;
        }
        // An unchanged file is not run again: that would fork every tick.
        match install(args, false) {
            Ok(report) if report.action == InstallAction::Unchanged => {
                tracing::debug!(%report, "install-cni");
            }
            Ok(report) => tracing::info!(%report, "install-cni"),
            Err(error) => tracing::warn!(%error, "install-cni: will retry"),
        }
    }
}

/// One pass: locate, compare, copy, verify.
fn install(
    args: &InstallCniArgs,
    verify_unchanged: bool,
) -> Result<InstallReport, InstallCniError> {
    let source = match &args.source {
        Some(path) => path.clone(),
        None => default_source()?,
    };
    let bytes = read_source(&source)?;
    let (bin_dir, kind) = locate::locate(args.cni_bin_dir.as_deref(), &args.host_root)?;
    let installed = bin_dir.join(PLUGIN_NAME);
    let timeout = args.verify_timeout;
    let mut supported_versions = Vec::new();
    let action = copy::install_atomically(&bytes, &installed, |candidate| {
        supported_versions = verify::verify(candidate, REQUIRED_CNI_VERSION, timeout)?;
        Ok(())
    })?;
    if action == InstallAction::Unchanged && verify_unchanged {
        supported_versions = verify::verify(&installed, REQUIRED_CNI_VERSION, timeout)?;
    }
    Ok(InstallReport {
        bin_dir,
        kind,
        installed,
        action,
        supported_versions,
    })
}

fn default_source() -> Result<PathBuf, InstallCniError> {
    let exe = std::env::current_exe().map_err(InstallCniError::CurrentExe)?;
    Ok(exe.with_file_name(PLUGIN_NAME))
}

fn read_source(path: &Path) -> Result<Vec<u8>, InstallCniError> {
    let read_err = |source| InstallCniError::ReadSource {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(InstallCniError::SourceNotAFile {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(read_err)
}

/// Sleep `total` in slices; true if `stop` asked to end.
fn sleep_unless_stopped(total: Duration, stop: &dyn Fn() -> bool) -> bool {
    let deadline = Instant::now() + total;
    loop {
        if stop() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// Parse `30`, `30s`, `500ms` or `2m` (clap value parser for --watch-interval).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(value),
        "ms" => Duration::from_millis(value),
        "m" => Duration::from_secs(value.saturating_mul(60)),
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    if duration.is_zero() {
        return Err("the interval must be more than zero".to_string());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_and_without_units() {
        assert_eq!(parse_interval("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("5h").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
