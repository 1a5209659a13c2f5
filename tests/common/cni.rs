//! Driving the real `sriov` binary the way a runtime does: env vars, stdin,
//! stdout JSON, exit code. Each `CniHarness` has its own state and IPAM dirs.

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Debian's containernetworking-plugins install here.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

pub struct CniHarness {
    pub sysfs_root: PathBuf,
    pub dir: tempfile::TempDir,
    pub cni_path: String,
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
    /// The CNI error code, or 0 on success.
    pub fn error_code(&self) -> u64 {
        self.json.get("code").and_then(Value::as_u64).unwrap_or(0)
    }
}

impl CniHarness {
    pub fn new(sysfs_root: &Path) -> CniHarness {
        assert!(
            Path::new(DEBIAN_CNI_DIR).join("host-local").exists(),
            "Debian's containernetworking-plugins are missing: run hack/test.sh, which installs them"
        );
        CniHarness {
            sysfs_root: sysfs_root.to_owned(),
            dir: tempfile::tempdir().expect("temp dir"),
            cni_path: DEBIAN_CNI_DIR.to_owned(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// A NAD-style config for `device` with host-local on `subnet`.
    pub fn host_local_conf(&self, version: &str, device: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "sriov-net",
            "type": "sriov",
            "deviceID": device,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": self.ipam_dir()}
        })
    }

    /// A NAD-style config for `device` with Debian's static IPAM: `ipam` is
    /// the rest of the ipam object (addresses, routes, dns).
    pub fn static_conf(&self, version: &str, device: &str, mut ipam: Value) -> Value {
        ipam["type"] = json!("static");
        json!({
            "cniVersion": version,
            "name": "static-net",
            "type": "sriov",
            "deviceID": device,
            "ipam": ipam
        })
    }

    /// Addresses host-local still holds for the network (files named by IP).
    pub fn allocated_ips(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir().join("sriov-net"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// State files of the plugin (caches and allocation markers), not locks.
    pub fn state_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        for dir in [self.state_dir(), self.state_dir().join("pci")] {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_file()) {
                        found.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
        }
        found
    }

    pub fn run(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&Path>,
        ifname: &str,
        conf: &Value,
    ) -> Outcome {
        self.run_raw(
            command,
            container_id,
            netns,
            ifname,
            conf.to_string().as_bytes(),
            &[],
        )
    }

    pub fn run_raw(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&Path>,
        ifname: &str,
        stdin: &[u8],
        extra_env: &[(&str, &str)],
    ) -> Outcome {
        let mut process = Command::new(env!("CARGO_BIN_EXE_sriov"));
        process
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.cni_path)
            .env(
                "CNI_ARGS",
                "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo",
            )
            .env("SRIOV_SYSFS_ROOT", &self.sysfs_root)
            .env("SRIOV_CNI_STATE_DIR", self.state_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(netns) = netns {
            process.env("CNI_NETNS", netns);
        }
        for (key, value) in extra_env {
            process.env(key, value);
        }
        let mut child = process.spawn().expect("spawn sriov");
        let written = child.stdin.take().expect("stdin").write_all(stdin);
        // the plugin may answer (an env error) without reading stdin
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
        let output = child.wait_with_output().expect("wait for sriov");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let code = output.status.code().unwrap_or(-1);
        if code != 0 {
            eprintln!("sriov {command} exited {code}: {stdout}\nstderr: {stderr}");
        }
        Outcome {
            code,
            stdout,
            stderr,
            json,
        }
    }
}

/// What most CNI tests start from: the two-PF simulated node, wired, with a
/// CNI harness on it. Test files add their own methods in `impl` blocks.
pub struct CniNode {
    pub fixture: super::SimFixture,
    pub cni: CniHarness,
}

impl CniNode {
    pub fn new() -> CniNode {
        let fixture = super::SimFixture::new(super::two_pf_layout, true);
        let cni = CniHarness::new(&fixture.root);
        CniNode { fixture, cni }
    }

    /// Host name of VF `index` of PF `<tag>a`.
    pub fn vf_name(&self, index: u32) -> String {
        format!("{}av{index}", self.fixture.tag)
    }

    /// A "pod": a network namespace named after this node's tag.
    pub fn pod(&self, name: &str) -> super::TestNetns {
        super::TestNetns::new(&format!("{}-{name}", self.fixture.tag))
    }
}
