//! The real ADD and DEL code (`add::add`, `del::del`) on the simulated
//! node, with `FakePf` as the PF: the VF netdev (a veth), the pod netns,
//! the state files and the IPAM exec are all real; only the PF's driver,
//! which this kernel cannot have, is the fake. A watcher between the code
//! and the fake records, at every PF-side change, what the attachment cache
//! on disk said and where the VF netdev was, so the order of steps is
//! checked against the real outcome, not against the code's intentions.
//!
//! Root and network namespaces needed: skipped loudly outside CI when not
//! root, never under `CI=true`. Each test hands ADD and DEL its own node
//! context (the simulated sysfs, a temp state dir, the fake PF); they run
//! one at a time because they share the host's netdev namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use super::fake_pf::{FakePf, Shared};
use crate::cni::add::add;
use crate::cni::config::NetConf;
use crate::cni::del::del;
use crate::cni::env::CniEnv;
use crate::cni::error::{CODE_IFNAME_TAKEN, CODE_KERNEL};
use crate::cni::node::Node as CniNode;
use crate::cni::state::{Cache, StateDir};
use crate::devtools::sim::{self, CreateOptions, Layout, Serve};
use crate::netlink::{
    Link, LinkOps, LinkState, Netlink, NetlinkError, PfOps, PfVfs, VfConfig, VfSetting, VlanProto,
};
use crate::pci::PciAddress;
use crate::sysfs::SysfsRoot;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// VF 1 of the built-in layout's first PF (offset 8, stride 1).
const VF: &str = "0000:3b:01.1";
const VF_INDEX: usize = 1;
const POD_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];

/// The host's netdevs are shared: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn may_run(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but not running as root; root/netns tests must run in CI");
    }
    eprintln!("\n!!!! SKIPPED {test}: needs root (network namespaces, veth). Run as root to execute it. !!!!\n");
    false
}

/// A short tag unique to this process and call, so netdev names stay short.
fn unique_tag() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("u{:04x}{:02x}", std::process::id() & 0xffff, n & 0xff)
}

/// Where the VF netdev is at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Netdev {
    /// On the host under its own name.
    Home,
    /// In the pod as `CNI_IFNAME`.
    InPod,
    /// On the host under another name: where the kernel puts a real VF
    /// whose pod netns died (its pod-side name, `devN` on a clash).
    Stranded,
    Elsewhere,
}

/// One PF-side change as the fake PF was asked for it.
#[derive(Debug, Clone)]
struct Event {
    setting: VfSetting,
    /// The attachment cache on disk at that moment.
    cache: Option<Cache>,
    netdev: Netdev,
    /// The VF netdev's own MAC at that moment, wherever it is.
    netdev_mac: Option<[u8; 6]>,
    /// The VF's entry in the fake PF's table just before the change.
    vf: VfConfig,
}

/// The `PfOps` handed to ADD/DEL: forwards to the fake, records events.
#[derive(Clone)]
struct Watched {
    pf: Shared,
    events: Rc<RefCell<Vec<Event>>>,
    state: PathBuf,
    /// The attachment whose cache and pod the events look at.
    container: String,
    pod: PathBuf,
    host_name: String,
    /// The host name a test gives the VF when it plays the kernel
    /// returning a real VF from a dead pod.
    stranded: String,
}

impl Watched {
    fn netdev(&self) -> (Netdev, Option<[u8; 6]>) {
        let mut host = Netlink::open().unwrap();
        let home = host.link_by_name(&self.host_name).unwrap();
        let stranded = host.link_by_name(&self.stranded).unwrap();
        // a dead pod's netns file is gone
        let in_pod = if self.pod.exists() {
            crate::netns::run_in(&self.pod, || {
                Netlink::open().unwrap().link_by_name("net1").unwrap()
            })
            .unwrap()
            .filter(|l| l.parent_device.is_none() && l.kind.as_deref() == Some("veth"))
        } else {
            None
        };
        match (home, stranded, in_pod) {
            (Some(l), None, None) => (Netdev::Home, l.mac),
            (None, Some(l), None) => (Netdev::Stranded, l.mac),
            (None, None, Some(l)) => (Netdev::InPod, l.mac),
            _ => (Netdev::Elsewhere, None),
        }
    }
}

impl PfOps for Watched {
    fn pf_vfs(&mut self, pf: &str) -> Result<Option<PfVfs>, NetlinkError> {
        self.pf.pf_vfs(pf)
    }

    fn set_vf(&mut self, pf_index: u32, vf: u32, setting: VfSetting) -> Result<(), NetlinkError> {
        let cache = StateDir::new(&self.state)
            .load_cache(&self.container, "net1")
            .unwrap();
        let (netdev, netdev_mac) = self.netdev();
        let entry = self.pf.pf().vfs[vf as usize].clone();
        self.events.borrow_mut().push(Event {
            setting,
            cache,
            netdev,
            netdev_mac,
            vf: entry,
        });
        self.pf.set_vf(pf_index, vf, setting)
    }
}

/// The simulated node, a pod netns, state and CNI_PATH dirs, and the fake
/// PF named as the node's first PF. All removed on drop.
struct Node {
    _serial: std::sync::MutexGuard<'static, ()>,
    tag: String,
    dir: tempfile::TempDir,
    root: PathBuf,
    pod_name: String,
    pod: PathBuf,
    /// The VF netdev's host name and state before ADD.
    vf_before: Link,
    watched: Watched,
}

impl Node {
    fn new() -> Node {
        let serial = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tag = unique_tag();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        let mut layout = Layout::default_layout().unwrap();
        for (pf, suffix) in layout.pfs.iter_mut().zip(["a", "b"]) {
            pf.name = Some(format!("{tag}{suffix}"));
        }
        sim::create(&CreateOptions {
            root: &root,
            instance: &tag,
            layout: &layout,
            serve: Serve::Snapshot,
        })
        .unwrap();
        let pod_name = format!("{tag}-pod");
        let pod = crate::netns::create_named(&pod_name).unwrap();
        let state = dir.path().join("state");

        let sysfs = SysfsRoot::resolve(Some(&root));
        let address: PciAddress = VF.parse().unwrap();
        let host_name = sysfs.pci_device(address).unwrap().netdevs[0].clone();
        let vf_before = Netlink::open()
            .unwrap()
            .link_by_name(&host_name)
            .unwrap()
            .unwrap();
        let mut fake = FakePf::sriov(4);
        fake.name = format!("{tag}a");
        // the VF netdev's own MAC, as the driver knows it
        fake.netdev_macs[VF_INDEX] = vf_before.mac.unwrap();
        let watched = Watched {
            pf: fake.shared(),
            events: Rc::default(),
            state,
            container: "cid1".into(),
            pod: pod.clone(),
            host_name,
            stranded: format!("{tag}d"),
        };
        // a labelled stand-in IPAM plugin, for the failure only it can make
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = bin.join("fault-ipam");
        std::fs::write(
            &script,
            "#!/bin/sh\n\
             # Test stand-in, not an IPAM plugin: fails ADD as a real IPAM plugin\n\
             # reports an error; DEL has nothing to release.\n\
             cat >/dev/null\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then\n\
               printf '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected IPAM failure\"}'\n\
               exit 1\n\
             fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Node {
            _serial: serial,
            tag,
            dir,
            root,
            pod_name,
            pod,
            vf_before,
            watched,
        }
    }

    fn env(&self) -> CniEnv {
        self.env_of("cid1", &self.pod)
    }

    fn env_of(&self, container: &str, pod: &std::path::Path) -> CniEnv {
        CniEnv {
            container_id: container.into(),
            netns: Some(pod.to_owned()),
            ifname: "net1".into(),
            args: BTreeMap::new(),
            path: vec![self.dir.path().join("bin")],
            netns_override: false,
        }
    }

    fn conf(extra: serde_json::Value) -> (Vec<u8>, NetConf) {
        let mut conf = serde_json::json!({
            "cniVersion": "1.0.0", "name": "n", "type": "sriov", "deviceID": VF,
        });
        for (key, value) in extra.as_object().unwrap() {
            conf[key] = value.clone();
        }
        let bytes = conf.to_string().into_bytes();
        let parsed = NetConf::parse(&bytes).unwrap();
        (bytes, parsed)
    }

    /// The node context ADD and DEL get: this node's sysfs and state dir,
    /// the PF reached through `watched`.
    fn context(&self, watched: Watched) -> CniNode {
        CniNode::new(
            SysfsRoot::new(&self.root),
            StateDir::new(&self.watched.state),
            Box::new(watched),
        )
    }

    fn add(
        &self,
        extra: serde_json::Value,
    ) -> Result<serde_json::Value, crate::cni::error::CniError> {
        let (bytes, conf) = Node::conf(extra);
        add(
            &mut self.context(self.watched.clone()),
            &self.env(),
            &bytes,
            &conf,
        )
    }

    fn del(&self, extra: serde_json::Value) -> Result<(), crate::cni::error::CniError> {
        let (bytes, conf) = Node::conf(extra);
        del(
            &mut self.context(self.watched.clone()),
            &self.env(),
            &bytes,
            &conf,
        )
    }

    /// The watcher, looking at attachment `container` in `pod`.
    fn watched_as(&self, container: &str, pod: &std::path::Path) -> Watched {
        Watched {
            container: container.into(),
            pod: pod.to_owned(),
            ..self.watched.clone()
        }
    }

    /// ADD of another attachment, `container` in `pod`.
    fn add_as(
        &self,
        container: &str,
        pod: &std::path::Path,
        extra: serde_json::Value,
    ) -> Result<serde_json::Value, crate::cni::error::CniError> {
        let (bytes, conf) = Node::conf(extra);
        let mut context = self.context(self.watched_as(container, pod));
        add(&mut context, &self.env_of(container, pod), &bytes, &conf)
    }

    /// DEL of attachment `container`, which was in `pod`.
    fn del_as(
        &self,
        container: &str,
        pod: &std::path::Path,
        extra: serde_json::Value,
    ) -> Result<(), crate::cni::error::CniError> {
        let (bytes, conf) = Node::conf(extra);
        let mut context = self.context(self.watched_as(container, pod));
        del(&mut context, &self.env_of(container, pod), &bytes, &conf)
    }

    /// What the kernel does to a real VF when its pod netns dies: it comes
    /// back to the host under another name. A veth stand-in would die with
    /// the netns, so move it out first, then delete the pod's netns.
    fn kill_pod_like_the_kernel(&self) {
        let host = crate::vf::host_netns().unwrap();
        let stranded = self.watched.stranded.clone();
        crate::netns::run_in(&self.pod, || {
            let mut inside = Netlink::open().unwrap();
            let link = inside.link_by_name("net1").unwrap().expect("VF in the pod");
            use std::os::fd::AsFd;
            inside
                .set_netns_and_name(link.index, host.as_fd(), &stranded)
                .unwrap();
        })
        .unwrap();
        assert!(crate::netns::delete_named(&self.pod_name).unwrap());
        assert!(!self.pod.exists());
    }

    fn fake(&self) -> std::cell::RefMut<'_, FakePf> {
        self.watched.pf.pf()
    }

    fn vfs(&self) -> Vec<VfConfig> {
        self.fake().vfs.clone()
    }

    fn events(&self) -> Vec<Event> {
        self.watched.events.borrow().clone()
    }

    fn host_vf(&self) -> Option<Link> {
        Netlink::open()
            .unwrap()
            .link_by_name(&self.watched.host_name)
            .unwrap()
    }

    fn state_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![self.watched.state.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    dirs.push(entry.path());
                } else if !entry.file_name().to_string_lossy().ends_with(".lock") {
                    found.push(entry.path().display().to_string());
                }
            }
        }
        found
    }

    /// The VF is on the host under its name with the MAC and MTU it had.
    fn assert_vf_home_as_before(&self) {
        let now = self.host_vf().expect("the VF netdev is on the host");
        assert_eq!(
            (now.mac, now.mtu),
            (self.vf_before.mac, self.vf_before.mtu),
            "the VF netdev as before ADD"
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = crate::netns::delete_named(&self.pod_name);
        let _ = crate::netns::delete_named(&format!("{}-pb", self.tag));
        // a VF left stranded by a failed test
        if let Ok(mut host) = Netlink::open() {
            if let Ok(Some(link)) = host.link_by_name(&self.watched.stranded) {
                let _ = host.delete(link.index);
            }
        }
        if let Err(e) = sim::destroy(&self.root) {
            eprintln!("cleanup of the simulated node: {e}");
        }
    }
}

fn pf_side_conf() -> serde_json::Value {
    serde_json::json!({
        "vlan": 100, "vlanQoS": 2, "spoofchk": "off", "trust": "on",
        "link_state": "enable", "max_tx_rate": 500,
        "mac": "02:00:00:aa:bb:cc", "mtu": 1400,
    })
}

#[test]
fn add_saves_the_original_pf_side_state_before_changing_the_pf_and_del_restores_it_first() {
    if !may_run(
        "add_saves_the_original_pf_side_state_before_changing_the_pf_and_del_restores_it_first",
    ) {
        return;
    }
    let node = Node::new();
    // an operator-set state that is not the driver's default
    node.fake().vfs[VF_INDEX].vlan = 7;
    node.fake().vfs[VF_INDEX].link_state = LinkState::Disable;
    let before = node.vfs();

    let result = node.add(pf_side_conf()).unwrap();
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:aa:bb:cc");

    // ADD: the fake PF holds exactly what the config asked, for VF 1 only
    let vfs = node.vfs();
    assert_eq!(
        vfs[VF_INDEX],
        VfConfig {
            vf: 1,
            mac: POD_MAC,
            vlan: 100,
            qos: 2,
            vlan_proto: VlanProto::Dot1Q,
            min_tx_rate: 0,
            max_tx_rate: 500,
            spoofchk: false,
            trust: true,
            link_state: LinkState::Enable,
        }
    );
    assert_eq!(vfs[0], before[0]);
    let events = node.events();
    assert_eq!(events.len(), 6, "{events:?}");
    // (1) the cache on disk held the originals before the first PF change,
    // and every change was made with the netdev still on the host
    let first = events[0]
        .cache
        .as_ref()
        .expect("cache written before any PF change");
    assert_eq!((first.orig.vlan, first.orig.vlan_qos), (7, 0));
    assert_eq!(first.orig.admin_mac, "00:00:00:00:00:00");
    assert_eq!(
        (first.orig.spoofchk, first.orig.trust, first.orig.link_state),
        (true, false, 2)
    );
    assert_eq!((first.orig.min_tx_rate, first.orig.max_tx_rate), (0, 0));
    assert!(
        events.iter().all(|e| e.netdev == Netdev::Home),
        "{events:?}"
    );

    let host_mac = node.vf_before.mac.unwrap();
    node.watched.events.borrow_mut().clear();

    // (3) DEL: PF side back first, with the netdev still in the pod
    node.del(pf_side_conf()).unwrap();
    let events = node.events();
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(
        events.iter().all(|e| e.netdev == Netdev::InPod),
        "every PF-side restore ran before the netdev left the pod: {events:?}"
    );
    assert_eq!(node.vfs(), before, "the PF side exactly as before ADD");
    node.assert_vf_home_as_before();
    // the netdev took its own MAC back after the admin MAC was cleared, which
    // the driver accepts (trust is off again, no admin MAC)
    assert_eq!(node.fake().vf_sets_own_mac(1, host_mac), Ok(()));
    assert!(node.state_files().is_empty(), "{:?}", node.state_files());
}

#[test]
fn del_restores_the_admin_mac_before_the_netdev_takes_its_own_back_with_trust_off() {
    if !may_run("del_restores_the_admin_mac_before_the_netdev_takes_its_own_back_with_trust_off") {
        return;
    }
    let node = Node::new();
    let conf = serde_json::json!({"mac": "02:00:00:aa:bb:cc", "vlan": 10});
    node.add(conf.clone()).unwrap();
    let host_mac = node.vf_before.mac.unwrap();
    // attached: admin MAC set, trust off: the driver refuses the VF netdev
    // its original MAC, so a DEL that released the netdev first would fail
    assert_eq!(node.fake().vfs[VF_INDEX].mac, POD_MAC);
    assert!(!node.fake().vfs[VF_INDEX].trust);
    assert!(node.fake().vf_sets_own_mac(1, host_mac).is_err());
    node.watched.events.borrow_mut().clear();

    node.del(conf).unwrap();
    let events = node.events();
    let order: Vec<String> = events.iter().map(|e| e.setting.to_string()).collect();
    assert_eq!(
        order,
        ["mac 00:00:00:00:00:00", "vlan 0 qos 0 proto 802.1q"],
        "reverse of ADD's order"
    );
    assert!(
        events.iter().all(|e| e.netdev == Netdev::InPod),
        "{events:?}"
    );
    // the netdev's MAC changed back only after: the driver accepts it now
    assert_eq!(node.fake().vfs[VF_INDEX].mac, [0; 6]);
    assert_eq!(node.fake().vf_sets_own_mac(1, host_mac), Ok(()));
    node.assert_vf_home_as_before();
}

#[test]
fn an_ifname_taken_in_the_pod_after_the_pf_side_was_applied_leaves_the_pf_as_before() {
    if !may_run("an_ifname_taken_in_the_pod_after_the_pf_side_was_applied_leaves_the_pf_as_before")
    {
        return;
    }
    let node = Node::new();
    let before = node.vfs();
    crate::netns::run_in(&node.pod, || {
        Netlink::open()
            .unwrap()
            .add_veth("net1", None, "net1peer", None, None)
            .unwrap();
    })
    .unwrap();

    let error = node.add(pf_side_conf()).unwrap_err();
    assert_eq!(error.code, CODE_IFNAME_TAKEN, "{}", error.msg);
    let events = node.events();
    assert_eq!(events.len(), 12, "six applied, six undone: {events:?}");
    assert_eq!(node.vfs(), before, "the fake PF's VFs exactly as before");
    node.assert_vf_home_as_before();
    assert!(node.state_files().is_empty(), "{:?}", node.state_files());
}

#[test]
fn an_ipam_failure_after_the_move_undoes_the_pf_side_then_the_netdev() {
    if !may_run("an_ipam_failure_after_the_move_undoes_the_pf_side_then_the_netdev") {
        return;
    }
    let node = Node::new();
    let before = node.vfs();
    let mut conf = pf_side_conf();
    conf["ipam"] = serde_json::json!({"type": "fault-ipam"});

    let error = node.add(conf).unwrap_err();
    assert!(error.msg.contains("injected IPAM failure"), "{}", error.msg);
    assert_ne!(error.code, CODE_KERNEL, "the IPAM plugin's error, not ours");
    let events = node.events();
    assert_eq!(events.len(), 12, "{events:?}");
    assert!(events[..6].iter().all(|e| e.netdev == Netdev::Home));
    assert!(
        events[6..].iter().all(|e| e.netdev == Netdev::InPod),
        "the rollback restored the PF side before releasing the netdev: {events:?}"
    );
    assert_eq!(node.vfs(), before, "the fake PF's VFs exactly as before");
    node.assert_vf_home_as_before();
    let in_pod =
        crate::netns::run_in(&node.pod, || Netlink::open().unwrap().links().unwrap()).unwrap();
    assert!(in_pod.iter().all(|l| l.name == "lo"), "{in_pod:?}");
    assert!(node.state_files().is_empty(), "{:?}", node.state_files());
}

/// What DEL (or a takeover) puts back after `pf_side_conf()`: each key's
/// value from before, in the reverse of ADD's order (link_state → trust →
/// spoofchk → rate → admin MAC → vlan), for a VF whose operator state was
/// vlan 7 and link_state disable, the rest driver defaults.
fn restore_of_pf_side_conf() -> Vec<VfSetting> {
    vec![
        VfSetting::LinkState(LinkState::Disable),
        VfSetting::Trust(false),
        VfSetting::SpoofChk(true),
        VfSetting::Rate { min: 0, max: 0 },
        VfSetting::Mac([0; 6]),
        VfSetting::Vlan {
            vlan: 7,
            qos: 0,
            proto: VlanProto::Dot1Q,
        },
    ]
}

#[test]
fn a_pod_taking_over_from_a_dead_pod_gets_the_pf_side_as_it_was_before_the_dead_pod() {
    if !may_run("a_pod_taking_over_from_a_dead_pod_gets_the_pf_side_as_it_was_before_the_dead_pod")
    {
        return;
    }
    let node = Node::new();
    node.fake().vfs[VF_INDEX].vlan = 7;
    node.fake().vfs[VF_INDEX].link_state = LinkState::Disable;
    let before = node.vfs();
    let host_mac = node.vf_before.mac.unwrap();
    let state = StateDir::new(&node.watched.state);
    let vf: PciAddress = VF.parse().unwrap();

    // pod A sets every PF-side key, then its netns dies without a DEL: the
    // VF is back on the host under another name with A's MAC, the marker
    // (naming A's netns) is stale, A's cache still holds the originals
    node.add(pf_side_conf()).unwrap();
    node.kill_pod_like_the_kernel();
    assert_eq!(
        state.allocation(vf).unwrap().as_deref(),
        Some(node.pod.to_str().unwrap())
    );
    node.watched.events.borrow_mut().clear();

    // pod B asks for a vlan and an admin MAC of its own
    let pod_b = crate::netns::create_named(&format!("{}-pb", node.tag)).unwrap();
    const B_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbb, 0xbb, 0xbb];
    let conf_b = serde_json::json!({"vlan": 200, "mac": "02:00:00:bb:bb:bb"});
    let result = node.add_as("cid2", &pod_b, conf_b.clone()).unwrap();
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:bb:bb:bb");

    let events = node.events();
    let settings: Vec<VfSetting> = events.iter().map(|e| e.setting).collect();
    let mut expected = restore_of_pf_side_conf();
    expected.extend([
        VfSetting::Vlan {
            vlan: 200,
            qos: 0,
            proto: VlanProto::Dot1Q,
        },
        VfSetting::Mac(B_MAC),
    ]);
    assert_eq!(settings, expected, "A's settings undone, then B's applied");
    // the takeover restored the PF side while the netdev was still stranded
    // with A's MAC: the admin MAC was back before the netdev took its own
    assert!(
        events[..6]
            .iter()
            .all(|e| e.netdev == Netdev::Stranded && e.netdev_mac == Some(POD_MAC)),
        "{events:?}"
    );
    // B's first change found the VF's entry exactly as before A, its cache
    // on disk already holding those originals, the netdev home as before
    let first_of_b = &events[6];
    assert_eq!(first_of_b.vf, before[VF_INDEX], "the PF table as before A");
    assert_eq!(first_of_b.netdev, Netdev::Home);
    assert_eq!(first_of_b.netdev_mac, Some(host_mac));
    let orig = &first_of_b
        .cache
        .as_ref()
        .expect("B's cache written before its first PF change")
        .orig;
    assert_eq!((orig.vlan, orig.vlan_qos, orig.vlan_proto), (7, 0, 0x8100));
    assert_eq!(orig.admin_mac, "00:00:00:00:00:00", "not A's admin MAC");
    assert_eq!(
        (orig.spoofchk, orig.trust, orig.link_state),
        (true, false, 2)
    );
    assert_eq!((orig.min_tx_rate, orig.max_tx_rate), (0, 0));
    assert_eq!(orig.host_ifname, node.watched.host_name);
    assert_eq!(orig.effective_mac, crate::netlink::format_mac(&host_mac));
    assert_eq!(Some(orig.mtu), node.vf_before.mtu, "not A's MTU");
    let mut with_b = before[VF_INDEX].clone();
    (with_b.vlan, with_b.mac) = (200, B_MAC);
    assert_eq!(node.vfs()[VF_INDEX], with_b);
    assert!(state
        .load_cache("cid1", "net1")
        .unwrap()
        .unwrap()
        .vf_restored());

    // A's late DEL: nothing on the PF side, B's VF stays in B
    node.watched.events.borrow_mut().clear();
    node.del(pf_side_conf()).unwrap();
    assert!(node.events().is_empty(), "{:?}", node.events());
    assert_eq!(node.vfs()[VF_INDEX], with_b);
    assert_eq!(node.watched_as("cid2", &pod_b).netdev().0, Netdev::InPod);
    assert_eq!(
        state.allocation(vf).unwrap().as_deref(),
        Some(pod_b.to_str().unwrap())
    );
    assert!(state.load_cache("cid1", "net1").unwrap().is_none());

    // B's DEL: B's keys back to the true originals, PF side first
    node.del_as("cid2", &pod_b, conf_b).unwrap();
    let events = node.events();
    let settings: Vec<VfSetting> = events.iter().map(|e| e.setting).collect();
    assert_eq!(
        settings,
        restore_of_pf_side_conf()[4..],
        "admin MAC, then vlan"
    );
    assert!(
        events.iter().all(|e| e.netdev == Netdev::InPod),
        "{events:?}"
    );
    assert_eq!(node.vfs(), before, "the PF side exactly as before A");
    node.assert_vf_home_as_before();
    assert_eq!(node.fake().vf_sets_own_mac(1, host_mac), Ok(()));
    assert!(node.state_files().is_empty(), "{:?}", node.state_files());
}

#[test]
fn del_after_the_pod_netns_died_restores_the_pf_side_then_the_vf_found_on_the_host() {
    if !may_run("del_after_the_pod_netns_died_restores_the_pf_side_then_the_vf_found_on_the_host") {
        return;
    }
    let node = Node::new();
    node.fake().vfs[VF_INDEX].vlan = 7;
    node.fake().vfs[VF_INDEX].link_state = LinkState::Disable;
    let before = node.vfs();
    let host_mac = node.vf_before.mac.unwrap();
    node.add(pf_side_conf()).unwrap();
    // the pod netns dies; the runtime's DEL comes after
    node.kill_pod_like_the_kernel();
    assert!(node.host_vf().is_none());
    node.watched.events.borrow_mut().clear();

    node.del(pf_side_conf()).unwrap();
    let events = node.events();
    let settings: Vec<VfSetting> = events.iter().map(|e| e.setting).collect();
    assert_eq!(
        settings,
        restore_of_pf_side_conf(),
        "reverse of ADD's order"
    );
    // every PF-side change ran while the netdev was still stranded with the
    // pod's MAC: the admin MAC was cleared (and trust back off) before the
    // netdev asked for its own MAC back
    assert!(
        events
            .iter()
            .all(|e| e.netdev == Netdev::Stranded && e.netdev_mac == Some(POD_MAC)),
        "{events:?}"
    );
    assert_eq!(node.vfs(), before, "the PF side exactly as before ADD");
    node.assert_vf_home_as_before();
    assert_eq!(
        node.host_vf().unwrap().index,
        node.vf_before.index,
        "the same netdev, renamed back"
    );
    assert_eq!(
        node.watched.netdev().0,
        Netdev::Home,
        "no stranded name left"
    );
    assert_eq!(node.fake().vf_sets_own_mac(1, host_mac), Ok(()));
    assert!(node.state_files().is_empty(), "{:?}", node.state_files());
}
