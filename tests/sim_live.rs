//! The live simulated node (root): the tree follows the kernel's links,
//! writes to control attributes act like the kernel's (errors included),
//! every change is announced as a uevent to this node's listeners only, a
//! PF's cable can be pulled, VF counters follow real traffic, and destroy
//! cleans up after a server killed with SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::tree::{device, driver_of, listing, read};

use common::{
    host_link_names, named_netns, plug_into_pod, require_root, two_pf_layout, SimFixture, TestNetns,
};
use sriov_rs::devtools::sim;
use sriov_rs::netlink::{LinkEvent, LinkOps, LinkTable, Netlink};
use sriov_rs::netns;
use sriov_rs::uevent::{Action, Uevent, UeventListener};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

const PF_A: &str = "0000:3b:00.0";

/// Write like `echo value > path`: open (truncating), one write, close.
fn write(path: &Path, value: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(format!("{value}\n").as_bytes())
}

fn errno(result: std::io::Result<()>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// Every event the listener has within `quiet` of the last one.
fn drain(listener: &mut UeventListener, quiet: Duration) -> Vec<Uevent> {
    let mut events = Vec::new();
    while let Some(event) = listener.recv_timeout(quiet).unwrap() {
        events.push(event);
    }
    events
}

fn summary(events: &[Uevent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}{}",
                e.action,
                e.var("PCI_SLOT_NAME").unwrap_or("-"),
                e.driver().map(|d| format!(" {d}")).unwrap_or_default()
            )
        })
        .collect()
}

/// A second node next to the first, to prove its listener hears nothing.
fn other_node() -> SimFixture {
    SimFixture::new(
        |tag| {
            let mut layout = two_pf_layout(tag);
            layout.pfs.truncate(1);
            layout
        },
        true,
    )
}

#[test]
fn numvfs_0_then_6_gives_six_working_vfs_and_announces_each_change_to_this_node_only() {
    if !require_root(
        "numvfs_0_then_6_gives_six_working_vfs_and_announces_each_change_to_this_node_only",
    ) {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let other = other_node();
    let mut listener = UeventListener::open(&node.root).unwrap();
    let mut other_listener = UeventListener::open(&other.root).unwrap();
    let numvfs = device(&node.root, PF_A).join("sriov_numvfs");
    let pf_name = format!("{}a", node.tag);

    write(&numvfs, "0").unwrap();
    assert_eq!(read(&numvfs), "0");
    assert!(!device(&node.root, PF_A).join("virtfn0").exists());
    assert!(!device(&node.root, "0000:3b:01.0").exists());
    let links: Vec<String> = host_link_names();
    assert!(
        links.iter().all(|l| !l.starts_with(&format!("{pf_name}v"))),
        "{links:?}"
    );
    let removed = summary(&drain(&mut listener, Duration::from_millis(300)));
    assert_eq!(
        removed,
        [
            "unbind 0000:3b:01.0",
            "remove 0000:3b:01.0",
            "unbind 0000:3b:01.1",
            "remove 0000:3b:01.1",
            "unbind 0000:3b:01.2",
            "remove 0000:3b:01.2",
            "unbind 0000:3b:01.3",
            "remove 0000:3b:01.3",
        ]
    );

    write(&numvfs, "6").unwrap();
    assert_eq!(read(&numvfs), "6");
    let mut expected = Vec::new();
    for n in 0..6 {
        let bdf = format!("0000:3b:01.{n}");
        let vf_dir = device(&node.root, &bdf);
        assert_eq!(
            std::fs::canonicalize(device(&node.root, PF_A).join(format!("virtfn{n}"))).unwrap(),
            std::fs::canonicalize(&vf_dir).unwrap()
        );
        assert_eq!(driver_of(&node.root, &bdf).as_deref(), Some("iavf"));
        let name = format!("{pf_name}v{n}");
        assert_eq!(listing(&vf_dir.join("net")), vec![name.clone()]);
        // the tree's netdev is the kernel's link
        let link = Netlink::open()
            .unwrap()
            .link_by_name(&name)
            .unwrap()
            .unwrap();
        assert_eq!(
            read(&vf_dir.join("net").join(&name).join("ifindex")),
            link.index.to_string()
        );
        assert!(vf_dir.join("iommu_group").exists());
        expected.push(format!("add {bdf}"));
        expected.push(format!("bind {bdf} iavf"));
    }
    expected.push(format!("change {PF_A} ice"));
    let events = drain(&mut listener, Duration::from_millis(300));
    assert_eq!(summary(&events), expected);
    let add = &events[0];
    assert_eq!(add.action, Action::Add);
    assert_eq!(add.subsystem(), Some("pci"));
    assert_eq!(add.var("PCI_ID"), Some("8086:1889"));
    assert_eq!(add.devpath, "/devices/pci0000:3a/0000:3a:00.0/0000:3b:01.0");

    // an fd held across writes keeps working, as with sysfs (the file's
    // inode changed with its text)
    {
        use std::io::Write as _;
        let mut held = std::fs::OpenOptions::new()
            .write(true)
            .open(&numvfs)
            .unwrap();
        held.write_all(b"0\n").unwrap();
        held.write_all(b"6\n").unwrap();
    }
    assert_eq!(read(&numvfs), "6");
    drain(&mut listener, Duration::from_millis(300));
    // the kernel's refusals, and no event for them
    assert_eq!(errno(write(&numvfs, "3")), Some(nix::libc::EBUSY));
    assert_eq!(errno(write(&numvfs, "65")), Some(nix::libc::ERANGE));
    assert_eq!(errno(write(&numvfs, "many")), Some(nix::libc::EINVAL));
    assert_eq!(errno(write(&numvfs, " 6")), Some(nix::libc::EINVAL));
    // kstrtou16 with base 0: 0x6 is 6, 06 is octal 6
    write(&numvfs, "0x6").unwrap();
    write(&numvfs, "06").unwrap();
    write(&numvfs, "6").unwrap();
    assert_eq!(read(&numvfs), "6");
    assert!(drain(&mut listener, Duration::from_millis(200)).is_empty());
    // and the node next door heard nothing of all this
    assert!(drain(&mut other_listener, Duration::from_millis(100)).is_empty());

    // a packet crosses the wire between two of the new VFs
    let (a, b) = (format!("{pf_name}v4"), format!("{pf_name}v5"));
    let pods = [
        TestNetns::new(&format!("{}-p1", node.tag)),
        TestNetns::new(&format!("{}-p2", node.tag)),
    ];
    plug_into_pod(&a, &pods[0], Ipv4Addr::new(10, 77, 0, 1));
    plug_into_pod(&b, &pods[1], Ipv4Addr::new(10, 77, 0, 2));
    assert!(
        ping(&pods[0], "10.77.0.2"),
        "ping between VFs 4 and 5 of one PF"
    );
}

fn ping(pod: &TestNetns, address: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns", "exec", &pod.name, "ping", "-c", "3", "-i", "0.2", "-W", "2", address,
        ])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
}

#[test]
fn a_vf_in_a_pod_leaves_the_hosts_tree_and_comes_back_under_its_new_name() {
    if !require_root("a_vf_in_a_pod_leaves_the_hosts_tree_and_comes_back_under_its_new_name") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let name = format!("{}av1", node.tag);
    let vf_net = device(&node.root, "0000:3b:01.1").join("net");
    let class_net = node.root.join("class/net");
    assert_eq!(listing(&vf_net), vec![name.clone()]);
    assert!(listing(&class_net).contains(&name));
    let before = read(&vf_net.join(&name).join("address"));

    let pod = TestNetns::new(&format!("{}-pod", node.tag));
    let mut host = Netlink::open().unwrap();
    let link = host.link_by_name(&name).unwrap().unwrap();
    let pod_fd = netns::open(pod.path()).unwrap();
    host.set_netns_and_name(link.index, pod_fd.as_fd(), "eth1")
        .unwrap();
    // gone from the host's view at once, the PCI function unchanged
    assert_eq!(listing(&vf_net), Vec::<String>::new());
    assert!(!listing(&class_net).contains(&name));
    assert!(!class_net.join(&name).exists());
    assert_eq!(
        driver_of(&node.root, "0000:3b:01.1").as_deref(),
        Some("iavf")
    );

    // back home under another name (as a VF returns from a dead pod)
    let back = format!("{}ret", node.tag);
    let host_ns = netns::open(Path::new("/proc/self/ns/net")).unwrap();
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        let link = inside.link_by_name("eth1").unwrap().unwrap();
        inside
            .set_netns_and_name(link.index, host_ns.as_fd(), &back)
            .unwrap();
    })
    .unwrap();
    assert_eq!(listing(&vf_net), vec![back.clone()]);
    assert!(listing(&class_net).contains(&back));
    assert_eq!(
        std::fs::canonicalize(class_net.join(&back)).unwrap(),
        std::fs::canonicalize(vf_net.join(&back)).unwrap()
    );
    assert_eq!(
        std::fs::canonicalize(vf_net.join(&back).join("device")).unwrap(),
        std::fs::canonicalize(device(&node.root, "0000:3b:01.1")).unwrap()
    );
    assert_eq!(read(&vf_net.join(&back).join("address")), before);
    // live attributes follow the link
    let link = host.link_by_name(&back).unwrap().unwrap();
    host.set_mtu(link.index, 1400).unwrap();
    host.set_up(link.index).unwrap();
    assert_eq!(read(&vf_net.join(&back).join("mtu")), "1400");
    assert_eq!(read(&vf_net.join(&back).join("flags")), "0x1003");
    host.set_name(link.index, &name).unwrap_or_else(|_| {
        // a name this long cannot clash; a failure here is the kernel's
        panic!("rename back to {name}")
    });
    assert_eq!(listing(&vf_net), [name]);
}

#[test]
fn a_pulled_cable_shows_in_the_tree_and_on_rtnetlink() {
    if !require_root("a_pulled_cable_shows_in_the_tree_and_on_rtnetlink") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let pf = format!("{}a", node.tag);
    let pf_net = node.root.join("class/net").join(&pf);
    assert_eq!(read(&pf_net.join("carrier")), "1");
    assert_eq!(read(&pf_net.join("operstate")), "up");
    let mut table = LinkTable::open().unwrap();
    let index: u32 = read(&pf_net.join("ifindex")).parse().unwrap();

    let sriovctl = env!("CARGO_BIN_EXE_sriovctl");
    let pull = std::process::Command::new(sriovctl)
        .args(["sim", "carrier", &pf, "off", "--sysfs-root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    // carrier is the device's own bit: at once, as in sysfs
    assert_eq!(read(&pf_net.join("carrier")), "0");
    // operstate follows when the kernel's link watch has run
    let deadline = Instant::now() + Duration::from_secs(2);
    while read(&pf_net.join("operstate")) == "up" {
        assert!(Instant::now() < deadline, "operstate still up");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        read(&pf_net.join("operstate")),
        read(&Path::new("/sys/class/net").join(&pf).join("operstate"))
    );
    // the kernel's link watch sets operstate before it queues the event
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let lost = table.catch_up().unwrap();
        if lost
            .iter()
            .any(|e| matches!(e, LinkEvent::Changed(l) if l.index == index && !l.carrier))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no carrier-off event for {pf}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ip = std::process::Command::new("ip")
        .args(["link", "show", &pf])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ip.stdout).contains("NO-CARRIER"));

    let plug = std::process::Command::new(sriovctl)
        .args(["sim", "carrier", &pf, "on", "--sysfs-root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert!(plug.status.success());
    assert_eq!(read(&pf_net.join("carrier")), "1");
    // the kernel's link watch announces it soon after
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let back = table.catch_up().unwrap();
        if back
            .iter()
            .any(|e| matches!(e, LinkEvent::Changed(l) if l.index == index && l.carrier))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no carrier event for {pf}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // an unknown PF is an error naming it
    let unknown = std::process::Command::new(sriovctl)
        .args(["sim", "carrier", "nosuchpf", "off", "--sysfs-root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nosuchpf"));
}

#[test]
fn a_vf_moves_to_vfio_pci_and_back_through_override_unbind_and_probe() {
    if !require_root("a_vf_moves_to_vfio_pci_and_back_through_override_unbind_and_probe") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let mut listener = UeventListener::open(&node.root).unwrap();
    let bdf = "0000:3b:01.0";
    let vf = device(&node.root, bdf);
    let name = format!("{}av0", node.tag);
    let mac = read(&vf.join("net").join(&name).join("address"));
    let group = std::fs::read_link(vf.join("iommu_group")).unwrap();
    let group = group.file_name().unwrap().to_string_lossy().into_owned();
    let dev_root = sim::dev_root_for(&node.root);
    let drivers = node.root.join("bus/pci/drivers");

    assert_eq!(read(&vf.join("driver_override")), "(null)");
    // wrong driver, unknown device: the kernel's ENODEV
    assert_eq!(
        errno(write(&drivers.join("vfio-pci/unbind"), bdf)),
        Some(nix::libc::ENODEV)
    );
    assert_eq!(
        errno(write(&drivers.join("iavf/unbind"), "0000:3b:1f.7")),
        Some(nix::libc::ENODEV)
    );
    // bound already: EBUSY
    assert_eq!(
        errno(write(&drivers.join("iavf/bind"), bdf)),
        Some(nix::libc::EBUSY)
    );

    write(&vf.join("driver_override"), "vfio-pci").unwrap();
    assert_eq!(read(&vf.join("driver_override")), "vfio-pci");
    write(&drivers.join("iavf/unbind"), bdf).unwrap();
    assert_eq!(driver_of(&node.root, bdf), None);
    assert_eq!(listing(&vf.join("net")), Vec::<String>::new());
    assert!(
        !host_link_names().contains(&name),
        "the netdev is gone with the driver"
    );
    // with the override, iavf may not bind it
    assert_eq!(
        errno(write(&drivers.join("iavf/bind"), bdf)),
        Some(nix::libc::ENODEV)
    );
    write(&node.root.join("bus/pci/drivers_probe"), bdf).unwrap();
    assert_eq!(driver_of(&node.root, bdf).as_deref(), Some("vfio-pci"));
    assert!(dev_root.join("vfio").join(&group).exists());
    assert!(dev_root.join("vfio/vfio").exists());
    assert!(!vf.join("net").exists());
    assert_eq!(
        std::fs::canonicalize(drivers.join("vfio-pci").join(bdf)).unwrap(),
        std::fs::canonicalize(&vf).unwrap()
    );

    // and back to the kernel driver: the same netdev name and MAC
    write(&drivers.join("vfio-pci/unbind"), bdf).unwrap();
    assert!(!dev_root.join("vfio").join(&group).exists());
    write(&vf.join("driver_override"), "").unwrap();
    assert_eq!(read(&vf.join("driver_override")), "(null)");
    write(&drivers.join("iavf/bind"), bdf).unwrap();
    assert_eq!(driver_of(&node.root, bdf).as_deref(), Some("iavf"));
    assert_eq!(listing(&vf.join("net")), vec![name.clone()]);
    assert_eq!(read(&vf.join("net").join(&name).join("address")), mac);

    assert_eq!(
        summary(&drain(&mut listener, Duration::from_millis(300))),
        [
            format!("unbind {bdf}"),
            format!("bind {bdf} vfio-pci"),
            format!("unbind {bdf}"),
            format!("bind {bdf} iavf"),
        ]
    );
}

#[test]
fn remove_and_rescan_act_like_a_hot_unplug() {
    if !require_root("remove_and_rescan_act_like_a_hot_unplug") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let mut listener = UeventListener::open(&node.root).unwrap();
    let pf = "0000:d8:00.0";
    let pf_name = format!("{}b", node.tag);
    let vf = "0000:d8:00.2";
    assert!(device(&node.root, vf).exists());

    assert_eq!(
        errno(write(&device(&node.root, vf).join("remove"), "x")),
        Some(nix::libc::EINVAL)
    );
    write(&device(&node.root, vf).join("remove"), "1").unwrap();
    assert!(!device(&node.root, vf).exists());
    assert_eq!(
        summary(&drain(&mut listener, Duration::from_millis(300))),
        [format!("unbind {vf}"), format!("remove {vf}")]
    );

    write(&device(&node.root, pf).join("remove"), "1").unwrap();
    assert!(!device(&node.root, pf).exists());
    assert!(!node.root.join("class/net").join(&pf_name).exists());
    assert!(!host_link_names().contains(&pf_name));
    let gone = summary(&drain(&mut listener, Duration::from_millis(300)));
    assert_eq!(
        gone.last().map(String::as_str),
        Some(format!("remove {pf}").as_str()),
        "{gone:?}"
    );

    write(&node.root.join("bus/pci/rescan"), "1").unwrap();
    assert!(device(&node.root, pf).exists());
    assert_eq!(read(&device(&node.root, pf).join("sriov_numvfs")), "0");
    assert_eq!(driver_of(&node.root, pf).as_deref(), Some("mlx5_core"));
    assert_eq!(
        listing(&device(&node.root, pf).join("net")),
        vec![pf_name.clone()]
    );
    assert!(host_link_names().contains(&pf_name));
    assert_eq!(
        summary(&drain(&mut listener, Duration::from_millis(300))),
        [format!("add {pf}"), format!("bind {pf} mlx5_core")]
    );
    // it can make VFs again
    write(&device(&node.root, pf).join("sriov_numvfs"), "2").unwrap();
    assert_eq!(
        listing(&device(&node.root, vf).join("net")),
        [format!("{pf_name}v0")]
    );
}

#[test]
fn vf_counters_follow_traffic_across_the_wire() {
    if !require_root("vf_counters_follow_traffic_across_the_wire") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let stats = |vf: u16, counter: &str| -> u64 {
        read(&device(&node.root, PF_A).join(format!("sriov/{vf}/stats/{counter}")))
            .parse()
            .unwrap()
    };
    let before = (
        stats(0, "tx_packets"),
        stats(1, "rx_packets"),
        stats(1, "rx_bytes"),
    );
    let pods = [
        TestNetns::new(&format!("{}-c1", node.tag)),
        TestNetns::new(&format!("{}-c2", node.tag)),
    ];
    plug_into_pod(
        &format!("{}av0", node.tag),
        &pods[0],
        Ipv4Addr::new(10, 78, 0, 1),
    );
    plug_into_pod(
        &format!("{}av1", node.tag),
        &pods[1],
        Ipv4Addr::new(10, 78, 0, 2),
    );
    assert!(ping(&pods[0], "10.78.0.2"));
    // three echo requests out of VF 0 and into VF 1, at least
    assert!(stats(0, "tx_packets") >= before.0 + 3);
    assert!(stats(1, "rx_packets") >= before.1 + 3);
    assert!(stats(1, "rx_bytes") >= before.2 + 3 * 84);
    assert!(stats(0, "rx_packets") >= 3, "the replies came back");
    assert_eq!(
        stats(2, "rx_packets"),
        0,
        "VF 2 saw nothing but what floods reach"
    );
}

#[test]
fn destroy_after_the_server_was_killed_leaves_nothing() {
    if !require_root("destroy_after_the_server_was_killed_leaves_nothing") {
        return;
    }
    let mut node = SimFixture::new(two_pf_layout, true);
    let tag = node.tag.clone();
    let dev_root = sim::dev_root_for(&node.root);
    assert!(dev_root.join("vfio/vfio").exists());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(node.root.join(sim::STATE_FILE)).unwrap())
            .unwrap();
    let pid = state["server_pid"]
        .as_u64()
        .expect("the server's pid is recorded") as i32;
    // a VF in a pod too: destroy must take it from there
    let pod = TestNetns::new(&format!("{tag}-k"));
    plug_into_pod(&format!("{tag}av2"), &pod, Ipv4Addr::new(10, 79, 0, 1));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}/status")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("zombie")
    {
        assert!(Instant::now() < deadline, "the server survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the mount is dead now
    assert!(std::fs::read_dir(node.root.join("bus")).is_err());

    let destroyed = sim::destroy(&node.root).unwrap();
    assert!(matches!(destroyed, sim::Destroyed::Node { .. }));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(node.root.to_str().unwrap()),
        "no mount left"
    );
    assert!(named_netns()
        .iter()
        .all(|n| !n.starts_with(&format!("{tag}-wire"))));
    assert!(host_link_names().iter().all(|n| !n.starts_with(&tag)));
    netns::run_in(pod.path(), || {
        let links = Netlink::open().unwrap().links().unwrap();
        assert!(links.iter().all(|l| l.name == "lo"), "{links:?}");
    })
    .unwrap();
    assert!(!dev_root.exists());
    assert_eq!(
        listing(node.dir.path()),
        Vec::<String>::new(),
        "no file left"
    );
    node.root = node.dir.path().join("gone"); // nothing left for Drop to do
}
