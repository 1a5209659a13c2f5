//! The simulated node with its real interfaces (root + network namespaces):
//! the tree agrees with what the kernel shows for the same links, a packet
//! crosses the wire bridge between two VFs of one PF, and destroy leaves
//! the host as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{
    host_link_names, named_netns, plug_into_pod, require_root, two_pf_layout, SimFixture, TestNetns,
};
use sriov_rs::devtools::sim::{self, CreateOptions, SimError};
use sriov_rs::netlink::{LinkOps, Netlink};
use sriov_rs::netns;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

#[test]
fn simulated_netdev_attributes_match_the_kernels_sysfs() {
    if !require_root("simulated_netdev_attributes_match_the_kernels_sysfs") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let mut checked = 0;
    for pf in &fixture.node.pfs {
        for netdev in pf.netdevs() {
            let fake = fixture.root.join("class/net").join(&netdev.name);
            let real = Path::new("/sys/class/net").join(&netdev.name);
            for attribute in [
                "address",
                "mtu",
                "ifindex",
                "type",
                "addr_len",
                "operstate",
                "flags",
                "carrier",
            ] {
                // the same text, or the same refusal (carrier of a link that is down)
                let read = |path: &Path| {
                    std::fs::read_to_string(path)
                        .map(|text| text.trim_end().to_owned())
                        .map_err(|e| e.raw_os_error())
                };
                assert_eq!(
                    read(&fake.join(attribute)),
                    read(&real.join(attribute)),
                    "{}/{attribute}: simulated tree vs kernel",
                    netdev.name
                );
            }
            checked += 1;
        }
    }
    // 1 + 3 netdev VFs on the E810, 1 + 2 on the ConnectX
    assert_eq!(checked, 7);
}

fn udp_socket_in(pod: &TestNetns, address: Ipv4Addr) -> UdpSocket {
    netns::run_in(pod.path(), || {
        UdpSocket::bind(SocketAddr::from((address, 40_000)))
    })
    .unwrap()
    .unwrap()
}

/// Send datagrams until one arrives or `patience` runs out (the first ones
/// may wait on ARP and on the bridge learning the ports).
fn delivered(
    from: &UdpSocket,
    to: &UdpSocket,
    to_address: Ipv4Addr,
    patience: Duration,
) -> Option<(Vec<u8>, SocketAddr)> {
    to.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + patience;
    let mut buffer = [0u8; 64];
    while Instant::now() < deadline {
        from.send_to(b"over the wire", (to_address, 40_000))
            .unwrap();
        if let Ok((n, source)) = to.recv_from(&mut buffer) {
            return Some((buffer[..n].to_vec(), source));
        }
    }
    None
}

#[test]
fn packet_crosses_the_wire_between_two_vfs_of_one_pf() {
    if !require_root("packet_crosses_the_wire_between_two_vfs_of_one_pf") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let tag = &fixture.tag;
    let pod_a = TestNetns::new(&format!("{tag}-pod-a"));
    let pod_b = TestNetns::new(&format!("{tag}-pod-b"));
    let pod_c = TestNetns::new(&format!("{tag}-pod-c"));
    let (a, b, c) = (
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(192, 0, 2, 2),
        Ipv4Addr::new(192, 0, 2, 3),
    );
    plug_into_pod(&format!("{tag}av0"), &pod_a, a);
    plug_into_pod(&format!("{tag}av1"), &pod_b, b);
    // a VF of the *other* PF: another wire, so it must not hear pod A
    plug_into_pod(&format!("{tag}bv0"), &pod_c, c);

    let socket_a = udp_socket_in(&pod_a, a);
    let socket_b = udp_socket_in(&pod_b, b);
    let socket_c = udp_socket_in(&pod_c, c);
    let (payload, source) = delivered(&socket_a, &socket_b, b, Duration::from_secs(10))
        .expect("pod B receives pod A's datagram over the PF's wire");
    assert_eq!(payload, b"over the wire");
    assert_eq!(source, SocketAddr::from((a, 40_000)));
    assert!(
        delivered(&socket_a, &socket_c, c, Duration::from_secs(1)).is_none(),
        "VFs of different PFs must not share a wire"
    );
}

#[test]
fn destroy_removes_every_namespace_link_and_file() {
    if !require_root("destroy_removes_every_namespace_link_and_file") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let tag = fixture.tag.clone();
    let ours = |names: Vec<String>| {
        names
            .into_iter()
            .filter(|n| n.starts_with(&tag))
            .collect::<Vec<_>>()
    };
    assert_eq!(ours(named_netns()).len(), 2, "one wire netns per PF");
    assert_eq!(
        ours(host_link_names()).len(),
        7,
        "PF and VF netdevs on the host"
    );

    assert!(matches!(
        sim::destroy(&fixture.root).unwrap(),
        sim::Destroyed::Node { .. }
    ));
    assert_eq!(ours(named_netns()), Vec::<String>::new());
    assert_eq!(ours(host_link_names()), Vec::<String>::new());
    assert_eq!(
        std::fs::read_dir(fixture.dir.path()).unwrap().count(),
        0,
        "temp dir as before"
    );
    assert_eq!(
        sim::destroy(&fixture.root).unwrap(),
        sim::Destroyed::Nothing
    );
}

#[test]
fn create_fails_cleanly_when_a_netdev_name_is_taken() {
    if !require_root("create_fails_cleanly_when_a_netdev_name_is_taken") {
        return;
    }
    let tag = common::unique_tag();
    let mut host = Netlink::open().unwrap();
    // someone else's interface already carries the name of our VF 1
    host.add_veth(&format!("{tag}av1"), None, &format!("{tag}x"), None, None)
        .unwrap();
    let _foreign = common::LinkOnDrop(format!("{tag}av1"));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    let layout = two_pf_layout(&tag);
    let err = sim::create(&CreateOptions {
        root: &root,
        instance: &tag,
        layout: &layout,
        serve: common::live(),
    })
    .unwrap_err();
    assert!(matches!(err, SimError::Wiring(_)), "{err}");
    assert!(err.to_string().contains(&format!("{tag}av1")), "{err}");
    let names: Vec<String> = host_link_names()
        .into_iter()
        .filter(|n| n.starts_with(&tag))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(
        names,
        vec![format!("{tag}av1"), format!("{tag}x")],
        "only the foreign pair remains"
    );
    assert!(named_netns().iter().all(|n| !n.starts_with(&tag)));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sriovctl_sim_create_then_destroy_leaves_the_host_as_before() {
    if !require_root("sriovctl_sim_create_then_destroy_leaves_the_host_as_before") {
        return;
    }
    let tag = common::unique_tag();
    let dir = tempfile::tempdir().unwrap();
    let layout_path = dir.path().join("layout.toml");
    std::fs::write(&layout_path, toml::to_string(&two_pf_layout(&tag)).unwrap()).unwrap();
    let root = dir.path().join("sim");
    // if an assertion fails half-way, still take the node down
    let _guard = common::DestroyOnDrop(root.clone());
    let sriovctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sriovctl"))
            .args(args)
            .env("SRIOV_SYSFS_ROOT", &root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sriovctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = |names: Vec<String>| names.into_iter().filter(|n| n.starts_with(&tag)).count();
    let out = sriovctl(&[
        "sim",
        "create",
        "--name",
        &tag,
        "--layout",
        layout_path.to_str().unwrap(),
    ]);
    assert!(
        out.contains("VF 3 0000:3b:01.3 driver vfio-pci (no netdev)"),
        "{out}"
    );
    assert!(root.join("bus/pci/devices/0000:d8:00.2/physfn").exists());
    assert_eq!(ours(host_link_names()), 7);
    let out = sriovctl(&["sim", "destroy"]);
    assert!(out.contains("destroyed"), "{out}");
    assert_eq!(ours(host_link_names()), 0);
    assert_eq!(ours(named_netns()), 0);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only our layout file is left"
    );
    let out = sriovctl(&["sim", "destroy"]);
    assert!(out.contains("nothing to do"), "{out}");
}
