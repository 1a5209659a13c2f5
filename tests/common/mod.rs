//! Test helpers shared by the integration tests: privilege gates, unique
//! names, and fixtures that always clean up (Drop), even when a test fails.
//!
//! Tiers: tests that only read/write temp dirs run everywhere; tests that
//! need root and network namespaces call `require_root`, which skips loudly
//! outside CI and fails under `CI=true`, where nothing may skip.
#![allow(dead_code)] // each test crate uses a different subset of these helpers
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

pub mod capture;
pub mod cni;
pub mod configmap;
pub mod ctl;
pub mod dhcp;
pub mod dra;
pub mod probe;
pub mod sysfs_shape;
pub mod tree;

use sriov_rs::devtools::sim::layout::{Layout, PfSpec, VfSpec};
use sriov_rs::devtools::sim::{self, CreateOptions, Serve, SimNode};
use sriov_rs::netns;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// True when the test may use root-only kernel features.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but not running as root; root/netns tests must run in CI");
    }
    eprintln!("\n!!!! SKIPPED {test}: needs root (network namespaces, veth). Run as root to execute it. !!!!\n");
    false
}

/// A short tag unique to this process and call: `s` + 4 hex of the pid + 2
/// hex of a counter, so netdev names built from it stay within 15 bytes.
pub fn unique_tag() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("s{:04x}{:02x}", std::process::id() & 0xffff, n & 0xff)
}

/// A two-PF layout with names derived from `tag`: PF `<tag>a` (E810-like,
/// 4 iavf VFs, VF 3 on vfio-pci, NUMA 0) and PF `<tag>b` (ConnectX-like,
/// RDMA, 2 VFs, NUMA 1).
pub fn two_pf_layout(tag: &str) -> Layout {
    let mut e810 = base_pf("0000:3b:00.0", &format!("{tag}a"));
    e810.num_vfs = 4;
    e810.vfs.push(VfSpec {
        index: 3,
        driver: Some("vfio-pci".into()),
        netdev: None,
        has_netdev: None,
    });
    let mut cx = base_pf("0000:d8:00.0", &format!("{tag}b"));
    cx.vendor = "15b3".into();
    cx.device = "101d".into();
    cx.vf_device = "101e".into();
    cx.subsystem_vendor = "15b3".into();
    cx.driver = "mlx5_core".into();
    cx.vf_driver = "mlx5_core".into();
    cx.numa_node = 1;
    cx.num_vfs = 2;
    cx.total_vfs = 8;
    cx.sriov_offset = 2;
    cx.rdma = true;
    Layout {
        pfs: vec![e810, cx],
    }
}

/// Two E810-like PFs, `<tag>a` (0000:3b:00.0) and `<tag>b` (0000:5e:00.0),
/// with `a` and `b` VFs on iavf: what the provisioning tests start from.
pub fn two_e810_layout(tag: &str, a: u16, b: u16) -> Layout {
    let mut pf_a = base_pf("0000:3b:00.0", &format!("{tag}a"));
    pf_a.num_vfs = a;
    let mut pf_b = base_pf("0000:5e:00.0", &format!("{tag}b"));
    pf_b.num_vfs = b;
    Layout {
        pfs: vec![pf_a, pf_b],
    }
}

pub fn base_pf(address: &str, name: &str) -> PfSpec {
    // Start from the built-in layout's first PF so defaults stay in one place.
    let mut pf = Layout::default_layout()
        .expect("built-in layout parses")
        .pfs[0]
        .clone();
    pf.pci_address = address.parse().expect("valid test address");
    pf.name = Some(name.to_owned());
    pf.vfs.clear();
    pf
}

/// The live node, served by this build's `sriovctl`.
pub fn live() -> Serve<'static> {
    Serve::Live {
        server: Path::new(env!("CARGO_BIN_EXE_sriovctl")),
    }
}

/// A simulated node in its own temp dir; destroyed on drop. `wire`: a live
/// node with links (root), else the tree alone as plain files.
pub struct SimFixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub node: SimNode,
    pub tag: String,
}

impl SimFixture {
    pub fn new(layout_for_tag: impl FnOnce(&str) -> Layout, wire: bool) -> SimFixture {
        let tag = unique_tag();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("sys");
        let layout = layout_for_tag(&tag);
        let node = sim::create(&CreateOptions {
            root: &root,
            instance: &tag,
            layout: &layout,
            serve: if wire { live() } else { Serve::TreeOnly },
        })
        .unwrap_or_else(|e| panic!("creating simulated node {tag}: {e}"));
        SimFixture {
            dir,
            root,
            node,
            tag,
        }
    }
}

impl Drop for SimFixture {
    fn drop(&mut self) {
        if let Err(e) = sim::destroy(&self.root) {
            eprintln!("cleanup of simulated node {}: {e}", self.tag);
        }
    }
}

/// Destroys whatever simulated node lives at the path when dropped.
pub struct DestroyOnDrop(pub PathBuf);

impl Drop for DestroyOnDrop {
    fn drop(&mut self) {
        if let Err(e) = sim::destroy(&self.0) {
            eprintln!("cleanup of simulated node at {}: {e}", self.0.display());
        }
    }
}

/// Deletes the host link of that name (and so its veth peer) when dropped.
pub struct LinkOnDrop(pub String);

impl Drop for LinkOnDrop {
    fn drop(&mut self) {
        use sriov_rs::netlink::{LinkOps, Netlink};
        let deleted =
            Netlink::open().and_then(|mut netlink| match netlink.link_by_name(&self.0)? {
                Some(link) => netlink.delete(link.index),
                None => Ok(()),
            });
        if let Err(e) = deleted {
            eprintln!("cleanup of link {}: {e}", self.0);
        }
    }
}

/// A named network namespace standing in for a pod; deleted on drop.
pub struct TestNetns {
    pub name: String,
    pub path: PathBuf,
}

impl TestNetns {
    pub fn new(name: &str) -> TestNetns {
        let path =
            netns::create_named(name).unwrap_or_else(|e| panic!("creating netns {name}: {e}"));
        TestNetns {
            name: name.to_owned(),
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Err(e) = netns::delete_named(&self.name) {
            eprintln!("cleanup of netns {}: {e}", self.name);
        }
    }
}

/// Names of the host's named network namespaces (`ip netns list`).
pub fn named_netns() -> Vec<String> {
    std::fs::read_dir(netns::NETNS_RUN_DIR)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of the host netns's links, straight from netlink.
pub fn host_link_names() -> Vec<String> {
    use sriov_rs::netlink::{LinkOps, Netlink};
    let mut netlink = Netlink::open().expect("netlink socket");
    netlink
        .links()
        .expect("list links")
        .into_iter()
        .map(|l| l.name)
        .collect()
}

/// Move a VF's host end into `pod`, give it `address`/24, bring it up.
pub fn plug_into_pod(vf_name: &str, pod: &TestNetns, address: std::net::Ipv4Addr) {
    use sriov_rs::netlink::{AddressOps, IfAddress, LinkOps, Netlink};
    use std::os::fd::AsFd;
    let mut host = Netlink::open().expect("netlink socket");
    let link = host
        .link_by_name(vf_name)
        .expect("look up the VF")
        .expect("VF netdev exists on the host");
    let pod_fd = netns::open(pod.path()).expect("open the pod netns");
    host.set_netns(link.index, pod_fd.as_fd())
        .expect("move the VF into the pod");
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().expect("netlink socket in the pod");
        let link = inside
            .link_by_name(vf_name)
            .expect("look up the VF in the pod")
            .expect("VF arrived in the pod netns");
        inside
            .add_address(
                link.index,
                IfAddress {
                    address: address.into(),
                    prefix_len: 24,
                },
            )
            .expect("address the VF");
        inside.set_up(link.index).expect("VF up");
    })
    .expect("enter the pod netns");
}
