//! `sriovctl install-cni` on fake node filesystems in temp dirs: both K3s
//! layouts, the generic one, an explicit dir, repeat runs, failures that must
//! leave nothing half-written, and the VERSION check. Tier: temp dirs only,
//! no root. The `sriov` plugin is played by small shell scripts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the test failure

use clap::Parser;
use sriov_rs::install_cni::{
    self, BinDirKind, InstallAction, InstallCniArgs, InstallCniError, InstallReport,
};
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stand-in plugin that answers VERSION like a CNI plugin; `build` makes
/// different builds differ in bytes.
fn good_plugin(build: &str) -> String {
    format!(
        r#"#!/bin/sh
# stand-in sriov plugin, build {build}
[ "$CNI_COMMAND" = VERSION ] || {{ echo '{{"code":4,"msg":"only VERSION"}}'; exit 1; }}
echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}}'
"#
    )
}

struct Node {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
}

impl Node {
    fn new() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("host");
        fs::create_dir(&root).unwrap();
        let source = tmp.path().join("image/usr/bin/sriov");
        fs::create_dir_all(source.parent().unwrap()).unwrap();
        let node = Node {
            _tmp: tmp,
            root,
            source,
        };
        node.set_source(&good_plugin("1"));
        node
    }

    fn set_source(&self, script: &str) {
        fs::write(&self.source, script).unwrap();
        fs::set_permissions(&self.source, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn dir(&self, host_path: &str) -> PathBuf {
        let path = self.root.join(host_path.trim_start_matches('/'));
        fs::create_dir_all(&path).unwrap();
        path
    }

    /// An older K3s: `data/<hash>/bin` and `data/current` → its absolute
    /// host path, as K3s itself writes it.
    fn k3s_legacy_release(&self, hash: &str) -> PathBuf {
        let release = self.dir(&format!("/var/lib/rancher/k3s/data/{hash}"));
        fs::create_dir_all(release.join("bin")).unwrap();
        let current = self.root.join("var/lib/rancher/k3s/data/current");
        let _ = fs::remove_file(&current);
        symlink(format!("/var/lib/rancher/k3s/data/{hash}"), &current).unwrap();
        release
    }

    fn args(&self) -> InstallCniArgs {
        InstallCniArgs {
            host_root: self.root.clone(),
            source: Some(self.source.clone()),
            verify_timeout: Duration::from_secs(5),
            ..InstallCniArgs::default()
        }
    }

    fn run(&self) -> Result<InstallReport, InstallCniError> {
        install_cni::run(&self.args())
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_installed(path: &Path, script: &str) {
    assert_eq!(fs::read_to_string(path).unwrap(), script);
    let mode = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "{} has mode {mode:o}", path.display());
}

#[test]
fn k3s_data_cni_wins_over_the_old_link_and_opt_cni_bin() {
    let node = Node::new();
    // A node upgraded past October 2024 still has `current`, and often /opt/cni/bin.
    node.k3s_legacy_release("aaaa");
    node.dir("/opt/cni/bin");
    let cni = node.dir(install_cni::K3S_BIN_DIR);

    let report = node.run().unwrap();
    assert_eq!(report.kind, BinDirKind::K3s);
    assert_eq!(report.bin_dir, cni);
    assert_eq!(report.action, InstallAction::Created);
    assert!(report.supported_versions.contains(&"1.0.0".to_string()));
    assert_installed(&cni.join("sriov"), &good_plugin("1"));
    assert_eq!(entries(&cni), ["sriov"]);
    assert!(entries(&node.root.join("opt/cni/bin")).is_empty());
}

#[test]
fn old_k3s_installs_into_the_release_dir_that_current_points_to() {
    let node = Node::new();
    let release = node.k3s_legacy_release("0123abcd");

    let report = node.run().unwrap();
    assert_eq!(
        report.kind,
        BinDirKind::K3sLegacy {
            release_dir: release.clone()
        }
    );
    assert_eq!(report.bin_dir, release.join("bin"));
    assert_installed(&release.join("bin/sriov"), &good_plugin("1"));
    // The link itself is untouched.
    let current = node.root.join("var/lib/rancher/k3s/data/current");
    assert!(fs::symlink_metadata(&current)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(report
        .to_string()
        .contains("install again after K3s upgrades"));
}

#[test]
fn old_k3s_mid_upgrade_with_a_dangling_link_is_an_error_not_opt_cni_bin() {
    let node = Node::new();
    node.dir("/opt/cni/bin");
    node.dir("/var/lib/rancher/k3s/data");
    // K3s points `current` at the new release before renaming it into place.
    symlink(
        "/var/lib/rancher/k3s/data/not-yet-there",
        node.root.join("var/lib/rancher/k3s/data/current"),
    )
    .unwrap();
    let err = node.run().unwrap_err();
    assert!(
        matches!(err, InstallCniError::K3sReleaseWithoutBin { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("data/current"), "{err}");
    assert!(entries(&node.root.join("opt/cni/bin")).is_empty());
}

#[test]
fn generic_layout_uses_opt_cni_bin() {
    let node = Node::new();
    let bin = node.dir(install_cni::GENERIC_BIN_DIR);
    let report = node.run().unwrap();
    assert_eq!(report.kind, BinDirKind::Generic);
    assert_installed(&bin.join("sriov"), &good_plugin("1"));
}

#[test]
fn explicit_dir_wins_over_detection() {
    let node = Node::new();
    node.dir(install_cni::K3S_BIN_DIR);
    let elsewhere = node._tmp.path().join("my-cni-bin");
    fs::create_dir(&elsewhere).unwrap();
    let args = InstallCniArgs {
        cni_bin_dir: Some(elsewhere.clone()),
        ..node.args()
    };
    let report = install_cni::run(&args).unwrap();
    assert_eq!(report.kind, BinDirKind::Explicit);
    assert_installed(&elsewhere.join("sriov"), &good_plugin("1"));
    assert!(entries(&node.root.join("var/lib/rancher/k3s/data/cni")).is_empty());

    let missing = InstallCniArgs {
        cni_bin_dir: Some(node._tmp.path().join("nope")),
        ..node.args()
    };
    let err = install_cni::run(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn no_known_layout_names_every_place_it_looked() {
    let node = Node::new();
    let err = node.run().unwrap_err();
    let text = err.to_string();
    for tried in [
        "var/lib/rancher/k3s/data/cni",
        "data/current/bin",
        "opt/cni/bin",
    ] {
        assert!(text.contains(tried), "{text}");
    }
}

#[test]
fn second_run_is_a_no_op_and_a_new_build_replaces_the_file() {
    let node = Node::new();
    let bin = node.dir(install_cni::K3S_BIN_DIR);
    assert_eq!(node.run().unwrap().action, InstallAction::Created);
    let before = fs::metadata(bin.join("sriov")).unwrap();

    let again = node.run().unwrap();
    assert_eq!(again.action, InstallAction::Unchanged);
    // It still ran the installed file: a noexec mount would show up here.
    assert!(!again.supported_versions.is_empty());
    let after = fs::metadata(bin.join("sriov")).unwrap();
    assert_eq!(
        before.ino(),
        after.ino(),
        "an unchanged file is not rewritten"
    );

    node.set_source(&good_plugin("2"));
    assert_eq!(node.run().unwrap().action, InstallAction::Replaced);
    assert_installed(&bin.join("sriov"), &good_plugin("2"));
    assert_eq!(entries(&bin), ["sriov"]);
}

#[test]
fn missing_source_leaves_no_file_behind_and_names_the_path() {
    let node = Node::new();
    let bin = node.dir(install_cni::K3S_BIN_DIR);
    fs::remove_file(&node.source).unwrap();
    let err = node.run().unwrap_err();
    assert!(matches!(err, InstallCniError::ReadSource { .. }), "{err}");
    assert!(err.to_string().contains("image/usr/bin/sriov"), "{err}");
    assert!(entries(&bin).is_empty(), "left behind: {:?}", entries(&bin));
}

#[test]
fn default_source_is_the_sriov_file_next_to_the_running_executable() {
    let node = Node::new();
    node.dir(install_cni::K3S_BIN_DIR);
    let args = InstallCniArgs {
        source: None,
        ..node.args()
    };
    // The test binary has no `sriov` beside it, so the error shows where it looked.
    let expected = std::env::current_exe().unwrap().with_file_name("sriov");
    match install_cni::run(&args) {
        Err(InstallCniError::ReadSource { path, .. }) => assert_eq!(path, expected),
        other => panic!(
            "expected ReadSource for {}, got {other:?}",
            expected.display()
        ),
    }
}

/// Each broken plugin must fail with its own clear error, and must not
/// replace the good plugin already installed, nor leave a temporary file.
#[test]
fn a_binary_that_does_not_answer_version_fails_clearly_and_replaces_nothing() {
    let node = Node::new();
    let bin = node.dir(install_cni::K3S_BIN_DIR);
    node.run().unwrap();

    let cases: [(&str, &str); 4] = [
        ("#!/bin/sh\necho 'plugin crashed' >&2\nexit 3\n", "exit status: 3"),
        ("#!/bin/sh\necho hello\n", "no CNI version result"),
        (
            "#!/bin/sh\necho '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\"]}'\n",
            "does not support CNI 1.0.0",
        ),
        ("\x7fELF not really a binary", "running"),
    ];
    for (script, expected) in cases {
        node.set_source(script);
        let err = node.run().unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expected), "{script:?}: {text}");
        assert!(text.contains("/var/lib/rancher/k3s/data/cni/"), "{text}");
        assert_installed(&bin.join("sriov"), &good_plugin("1"));
        assert_eq!(entries(&bin), ["sriov"], "after {script:?}");
    }
    let crashed = {
        node.set_source(cases[0].0);
        node.run().unwrap_err().to_string()
    };
    assert!(
        crashed.contains("plugin crashed"),
        "stderr is quoted: {crashed}"
    );
}

#[test]
fn a_hanging_binary_times_out() {
    let node = Node::new();
    let bin = node.dir(install_cni::K3S_BIN_DIR);
    node.set_source("#!/bin/sh\nexec sleep 30\n");
    let args = InstallCniArgs {
        verify_timeout: Duration::from_millis(300),
        ..node.args()
    };
    let started = Instant::now();
    let err = install_cni::run(&args).unwrap_err();
    assert!(
        matches!(err, InstallCniError::VerifyTimeout { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(entries(&bin).is_empty());
}

#[test]
fn the_plugin_sees_only_the_version_environment() {
    let node = Node::new();
    let bin = node.dir(install_cni::K3S_BIN_DIR);
    // cargo sets CARGO_MANIFEST_DIR for this test process; a runtime would
    // not pass it (nor any CNI_* variable of ours) to a plugin.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    node.set_source(
        "#!/bin/sh\n[ -z \"$CARGO_MANIFEST_DIR\" ] || exit 9\nread -r conf\ncase \"$conf\" in *1.0.0*) ;; *) exit 8;; esac\necho '{\"supportedVersions\":[\"1.0.0\"]}'\n",
    );
    node.run().unwrap();
    assert_eq!(entries(&bin), ["sriov"]);
}

/// Older K3s moves `current` on every upgrade while pods keep running, so the
/// sidecar's watch loop must follow it, and follow the node to `data/cni`
/// when an upgrade crosses October 2024.
#[test]
fn watch_follows_k3s_upgrades() {
    let node = Node::new();
    let first = node.k3s_legacy_release("1111");
    let args = InstallCniArgs {
        watch_interval: Duration::from_millis(50),
        ..node.args()
    };
    install_cni::run(&args).unwrap();
    assert!(first.join("bin/sriov").exists());

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (args, stop) = (args.clone(), stop.clone());
        std::thread::spawn(move || install_cni::watch(&args, &|| stop.load(Ordering::Relaxed)))
    };

    let second = node.k3s_legacy_release("2222");
    wait_for(&second.join("bin/sriov"));
    assert_installed(&second.join("bin/sriov"), &good_plugin("1"));

    let cni = node.dir(install_cni::K3S_BIN_DIR);
    wait_for(&cni.join("sriov"));
    assert_installed(&cni.join("sriov"), &good_plugin("1"));

    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: InstallCniArgs,
}

#[test]
fn command_line_defaults_and_flags() {
    let defaults = Cli::try_parse_from(["install-cni"]).unwrap().args;
    assert_eq!(defaults.host_root, PathBuf::from("/host"));
    assert_eq!(defaults.cni_bin_dir, None);
    assert_eq!(defaults.source, None);
    assert!(!defaults.watch);
    assert_eq!(defaults.watch_interval, Duration::from_secs(30));
    assert_eq!(defaults.verify_timeout, Duration::from_secs(10));

    let set = Cli::try_parse_from([
        "install-cni",
        "--cni-bin-dir=/host/opt/cni/bin",
        "--host-root",
        "/node",
        "--source=/usr/bin/sriov",
        "--watch",
        "--watch-interval=5s",
        "--verify-timeout=500ms",
    ])
    .unwrap()
    .args;
    assert_eq!(set.cni_bin_dir, Some(PathBuf::from("/host/opt/cni/bin")));
    assert_eq!(set.host_root, PathBuf::from("/node"));
    assert_eq!(set.source, Some(PathBuf::from("/usr/bin/sriov")));
    assert!(set.watch);
    assert_eq!(set.watch_interval, Duration::from_secs(5));
    assert_eq!(set.verify_timeout, Duration::from_millis(500));
    assert!(Cli::try_parse_from(["install-cni", "--watch-interval=0"]).is_err());
}
