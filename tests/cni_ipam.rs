//! The `sriov` CNI binary with each IPAM plugin it delegates to, on the
//! simulated node in real network namespaces: Debian's static and dhcp
//! (dnsmasq serving the wire, the CNI dhcp daemon on its own socket), the
//! announcements a pod's neighbours see, and CHECK against an IPAM plugin
//! that does not implement it (whereabouts).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::capture::{Capture, Frame};
use common::cni::DEBIAN_CNI_DIR;
use common::dhcp::{process_exists, DhcpDaemon, DnsmasqServer};
use common::require_root;
use serde_json::{json, Value};
use sriov_rs::netlink::{format_mac, AddressOps, Link, LinkOps, Netlink, RouteOps};
use sriov_rs::netns;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

/// VFs of PF `<tag>a` in `two_pf_layout`: netdevs `<tag>av0..2`, wire
/// peers `vf0..2` in the PF's wire namespace.
const VF0: &str = "0000:3b:01.0";
const VF1: &str = "0000:3b:01.1";
const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

use common::cni::CniNode as Setup;

fn setup() -> Setup {
    Setup::new()
}

impl Setup {
    /// The wire namespace of PF `<tag>a`, where its VFs' peers meet.
    fn wire_netns(&self) -> String {
        self.fixture.node.pfs[0].wire_netns.clone()
    }
}

fn host_link(name: &str) -> Option<Link> {
    Netlink::open().unwrap().link_by_name(name).unwrap()
}

fn link_in(netns_path: &Path, name: &str) -> Option<Link> {
    netns::run_in(netns_path, || {
        Netlink::open().unwrap().link_by_name(name).unwrap()
    })
    .unwrap()
}

/// Global addresses of `name` in the pod, as CIDR strings.
fn addresses_in(netns_path: &Path, name: &str) -> BTreeSet<String> {
    netns::run_in(netns_path, || {
        let mut netlink = Netlink::open().unwrap();
        let link = netlink.link_by_name(name).unwrap().expect("link exists");
        netlink
            .addresses(link.index)
            .unwrap()
            .into_iter()
            .filter(|a| match a.address {
                IpAddr::V4(_) => true,
                IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80, // not link-local
            })
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect()
    })
    .unwrap()
}

/// Routes of the pod's main table through `name`, as `dst/len via gw`.
fn routes_in(netns_path: &Path, name: &str) -> BTreeSet<String> {
    netns::run_in(netns_path, || {
        let mut netlink = Netlink::open().unwrap();
        let link = netlink.link_by_name(name).unwrap().expect("link exists");
        netlink
            .routes()
            .unwrap()
            .into_iter()
            .filter(|r| r.oif == link.index)
            .filter_map(|r| {
                r.gateway
                    .map(|gw| format!("{}/{} via {gw}", r.destination, r.prefix_len))
            })
            .collect()
    })
    .unwrap()
}

fn with_prev_result(conf: &Value, result: &Value) -> Value {
    let mut conf = conf.clone();
    conf["prevResult"] = result.clone();
    conf
}

/// The static IPAM block used below: one IPv4 and one IPv6 address, a
/// default route without `gw` (the parent fills in the IPv4 gateway, as the
/// Go library does) and an IPv6 route with one, and DNS.
fn dual_stack(v4: &str, v6: &str) -> Value {
    let gw4 = v4.rsplit_once('.').unwrap().0.to_owned() + ".1";
    let gw6 = v6.rsplit_once("::").unwrap().0.to_owned() + "::1";
    json!({
        "addresses": [
            {"address": format!("{v4}/24"), "gateway": gw4},
            {"address": format!("{v6}/64"), "gateway": gw6}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd00:99::/64", "gw": gw6}],
        "dns": {"nameservers": ["192.0.2.53"], "domain": "pods.test", "search": ["pods.test"]}
    })
}

#[test]
fn static_ipam_dual_stack_in_every_cni_version() {
    if !require_root("static_ipam_dual_stack_in_every_cni_version") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let before = host_link(&s.vf_name(0)).unwrap();
    for version in VERSIONS {
        let conf = s
            .cni
            .static_conf(version, VF0, dual_stack("10.58.0.10", "fd00:58::10"));
        let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
        assert!(add.ok(), "{version}: {}", add.stdout);
        let r = &add.json;
        assert_eq!(r["cniVersion"], version);
        // the result carries static's addresses on interface 0; 0.x adds
        // ips[].version and knows no interface mtu/pciID
        let old = version.starts_with("0.");
        let mut expected_ips = vec![
            json!({"address": "10.58.0.10/24", "gateway": "10.58.0.1", "interface": 0}),
            json!({"address": "fd00:58::10/64", "gateway": "fd00:58::1", "interface": 0}),
        ];
        if old {
            expected_ips[0]["version"] = json!("4");
            expected_ips[1]["version"] = json!("6");
        }
        assert_eq!(r["ips"], json!(expected_ips), "{version}");
        assert_eq!(
            r["routes"],
            json!([{"dst": "0.0.0.0/0"}, {"dst": "fd00:99::/64", "gw": "fd00:58::1"}]),
            "{version}: routes passed through as IPAM gave them"
        );
        assert_eq!(
            r["dns"],
            json!({"nameservers": ["192.0.2.53"], "domain": "pods.test", "search": ["pods.test"]}),
            "{version}"
        );
        assert_eq!(r["interfaces"][0].get("pciID").is_some(), !old, "{version}");
        assert_eq!(r["interfaces"][0]["mac"], format_mac(&before.mac.unwrap()));

        // what the pod sees
        assert_eq!(
            addresses_in(pod.path(), "net1"),
            BTreeSet::from(["10.58.0.10/24".to_owned(), "fd00:58::10/64".to_owned()]),
            "{version}"
        );
        let routes = routes_in(pod.path(), "net1");
        for route in ["0.0.0.0/0 via 10.58.0.1", "fd00:99::/64 via fd00:58::1"] {
            assert!(routes.contains(route), "{version}: {route} in {routes:?}");
        }

        if !matches!(version, "0.3.0" | "0.3.1") {
            let check = s.cni.run(
                "CHECK",
                "cid",
                Some(pod.path()),
                "net1",
                &with_prev_result(&conf, &add.json),
            );
            assert!(check.ok(), "{version} CHECK: {}", check.stdout);
        }
        let del = s.cni.run("DEL", "cid", Some(pod.path()), "net1", &conf);
        assert!(del.ok(), "{version} DEL: {}", del.stdout);
        let after = host_link(&s.vf_name(0)).expect("VF back on the host");
        assert_eq!((after.mac, after.mtu), (before.mac, before.mtu));
        assert!(link_in(pod.path(), "net1").is_none());
        assert!(s.cni.state_files().is_empty(), "{version}: state left");
    }
}

/// An ARP announcement (RFC 5227 §2.3) of `ip` at `mac`: broadcast ARP
/// request whose sender and target protocol addresses are both `ip`.
fn is_arp_announcement(frame: &[u8], mac: [u8; 6], ip: Ipv4Addr) -> bool {
    frame.len() >= 42
        && frame[0..6] == [0xff; 6]
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0x00, 0x01]
        && frame[22..28] == mac
        && frame[28..32] == ip.octets()
        && frame[38..42] == ip.octets()
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) of `ip` at
/// `mac`: ICMPv6 type 136 to ff02::1, hop limit 255, override set,
/// solicited clear, with the target link-layer address option.
fn is_unsolicited_na(frame: &[u8], mac: [u8; 6], ip: Ipv6Addr) -> bool {
    const IP: usize = 14;
    const ICMP: usize = IP + 40;
    frame.len() >= ICMP + 32
        && frame[12..14] == [0x86, 0xdd]
        && frame[IP + 6] == 58
        && frame[IP + 7] == 255
        && frame[IP + 24..IP + 40] == "ff02::1".parse::<Ipv6Addr>().unwrap().octets()
        && frame[ICMP] == 136
        && frame[ICMP + 4] & 0x20 != 0
        && frame[ICMP + 4] & 0x40 == 0
        && frame[ICMP + 8..ICMP + 24] == ip.octets()
        && frame[ICMP + 24..ICMP + 26] == [2, 1]
        && frame[ICMP + 26..ICMP + 32] == mac
}

#[test]
fn neighbours_see_a_gratuitous_arp_and_an_unsolicited_na() {
    if !require_root("neighbours_see_a_gratuitous_arp_and_an_unsolicited_na") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let wire = netns::named_path(&s.wire_netns()).unwrap();
    let peer = netns::run_in(&wire, || {
        Netlink::open()
            .unwrap()
            .link_by_name("vf1")
            .unwrap()
            .unwrap()
            .index as usize
    })
    .unwrap();
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02];
    let (v4, v6): (Ipv4Addr, Ipv6Addr) = (
        "10.58.1.10".parse().unwrap(),
        "fd00:58:1::10".parse().unwrap(),
    );
    let mut conf = s
        .cni
        .static_conf("1.0.0", VF1, dual_stack(&v4.to_string(), &v6.to_string()));
    conf["mac"] = json!(format_mac(&mac));

    let capture = Capture::start(&wire);
    let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    // received from the VF on its wire port (the bridge then floods copies)
    let from_vf = |f: &Frame| f.ifindex == peer && !f.outgoing;
    // the kernel announces the address (and repeats it at the neighbour
    // retransmit interval, 1 s: a second announcement shows it was the
    // kernel, our own packet socket sends one); it sends the NA once
    // duplicate address detection is done
    let (garps, na) = (std::cell::Cell::new(0), std::cell::Cell::new(false));
    capture.find(Duration::from_secs(10), |f| {
        if from_vf(f) && is_arp_announcement(&f.bytes, mac, v4) {
            garps.set(garps.get() + 1);
        }
        if from_vf(f) && is_unsolicited_na(&f.bytes, mac, v6) {
            na.set(true);
        }
        garps.get() >= 2 && na.get()
    });
    assert!(
        garps.get() >= 1,
        "no gratuitous ARP for {v4} reached the wire"
    );
    assert!(
        garps.get() >= 2,
        "the announcement of {v4} was not repeated: not sent by the kernel"
    );
    assert!(na.get(), "no unsolicited NA for {v6} reached the wire");

    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(host_link(&s.vf_name(1)).is_some());
}

#[test]
fn a_secondary_address_is_announced_too_with_itself_as_sender() {
    if !require_root("a_secondary_address_is_announced_too_with_itself_as_sender") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let wire = netns::named_path(&s.wire_netns()).unwrap();
    let peer = netns::run_in(&wire, || {
        Netlink::open()
            .unwrap()
            .link_by_name("vf1")
            .unwrap()
            .unwrap()
            .index as usize
    })
    .unwrap();
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x03];
    // the second address of a subnet is secondary: the kernel would ask
    // for it with the first as sender, so the plugin sends its frames
    let (first, second): (Ipv4Addr, Ipv4Addr) =
        ("10.58.3.10".parse().unwrap(), "10.58.3.11".parse().unwrap());
    let ipam = json!({"addresses": [{"address": format!("{first}/24")}, {"address": format!("{second}/24")}]});
    let mut conf = s.cni.static_conf("1.0.0", VF1, ipam);
    conf["mac"] = json!(format_mac(&mac));
    let capture = Capture::start(&wire);
    let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);
    let seen = std::cell::RefCell::new(BTreeSet::new());
    capture.find(Duration::from_secs(5), |f| {
        for ip in [first, second] {
            if f.ifindex == peer && !f.outgoing && is_arp_announcement(&f.bytes, mac, ip) {
                seen.borrow_mut().insert(ip);
            }
        }
        seen.borrow().len() == 2
    });
    assert_eq!(seen.borrow().len(), 2, "announced: {:?}", seen.borrow());
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
}

/// Wait for dnsmasq to drop `mac`'s lease (it handles the DHCPRELEASE a
/// moment after the daemon sent it).
fn lease_released(server: &DnsmasqServer, mac: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if !server.leases().iter().any(|(m, _)| m == mac) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn dhcp_ipam_leases_from_dnsmasq_on_the_wire_and_releases_on_del_and_rollback() {
    if !require_root("dhcp_ipam_leases_from_dnsmasq_on_the_wire_and_releases_on_del_and_rollback") {
        return;
    }
    let s = setup();
    let server = DnsmasqServer::start(
        &s.wire_netns(),
        sriov_rs::devtools::sim::model::WIRE_BRIDGE,
        "10.57.0.1/24",
        ("10.57.0.50", "10.57.0.99"),
    );
    let daemon = DhcpDaemon::start();
    let (server_pid, daemon_pid) = (server.pid(), daemon.pid());
    let temp_dirs = [server.dir.path().to_owned(), daemon.dir.path().to_owned()];
    let conf_in = |version: &str, device: &str| {
        json!({
            "cniVersion": version,
            "name": "dhcp-net",
            "type": "sriov",
            "deviceID": device,
            "ipam": {"type": "dhcp", "daemonSocketPath": daemon.socket()}
        })
    };
    let conf = |device: &str| conf_in("1.0.0", device);
    let pod = s.pod("pod");
    let vf0 = host_link(&s.vf_name(0)).unwrap();
    let mac0 = format_mac(&vf0.mac.unwrap());

    for version in VERSIONS {
        let conf = conf_in(version, VF0);
        let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
        assert!(
            add.ok(),
            "{version}: {}\ndnsmasq: {}\ndaemon: {}",
            add.stdout,
            server.log(),
            daemon.log()
        );
        assert_eq!(add.json["cniVersion"], version);
        let address = add.json["ips"][0]["address"].as_str().unwrap().to_owned();
        let (ip, prefix) = address.split_once('/').unwrap();
        let ip: Ipv4Addr = ip.parse().unwrap();
        assert!(
            (Ipv4Addr::new(10, 57, 0, 50)..=Ipv4Addr::new(10, 57, 0, 99)).contains(&ip)
                && prefix == "24",
            "{version}: {address} is not from dnsmasq's range"
        );
        // dnsmasq names itself the router; the dhcp plugin turns that into
        // the gateway and a default route
        assert_eq!(add.json["ips"][0]["gateway"], server.server, "{version}");
        assert!(
            routes_in(pod.path(), "net1").contains(&format!("0.0.0.0/0 via {}", server.server)),
            "{version}"
        );
        assert_eq!(
            addresses_in(pod.path(), "net1"),
            BTreeSet::from([address.clone()]),
            "{version}"
        );
        assert!(
            server.leases().contains(&(mac0.clone(), ip.to_string())),
            "{version}: dnsmasq leased {ip} to {mac0}: {:?}",
            server.leases()
        );
        if !matches!(version, "0.3.0" | "0.3.1") {
            let check = s.cni.run(
                "CHECK",
                "cid",
                Some(pod.path()),
                "net1",
                &with_prev_result(&conf, &add.json),
            );
            assert!(check.ok(), "{version} CHECK: {}", check.stdout);
        }
        let del = s.cni.run("DEL", "cid", Some(pod.path()), "net1", &conf);
        assert!(del.ok(), "{version}: {}", del.stdout);
        assert!(
            lease_released(&server, &mac0),
            "{version}: lease of {mac0} not released"
        );
    }
    let after = host_link(&s.vf_name(0)).expect("VF0 back on the host");
    assert_eq!((after.index, after.mac), (vf0.index, vf0.mac));

    // A failure after the lease (the device-info file cannot be written:
    // its directory would be under a regular file) rolls back the lease too.
    let pod1 = s.pod("pod1");
    let vf1 = host_link(&s.vf_name(1)).unwrap();
    let mac1 = format_mac(&vf1.mac.unwrap());
    let blocker = s.cni.dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let mut failing = conf(VF1);
    failing["runtimeConfig"] = json!({"CNIDeviceInfoFile": blocker.join("devinfo.json")});
    let out = s
        .cni
        .run("ADD", "cid1", Some(pod1.path()), "net1", &failing);
    assert_eq!(out.error_code(), 5, "{}", out.stdout);
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("DHCPACK(wire)") && l.contains(&mac1)),
        "a lease was granted to {mac1} before the failure: {}",
        server.log()
    );
    assert!(
        lease_released(&server, &mac1),
        "rollback kept the lease of {mac1}"
    );
    let now = host_link(&s.vf_name(1)).expect("VF1 back on the host");
    assert_eq!((now.index, now.mac, now.up), (vf1.index, vf1.mac, vf1.up));
    assert!(link_in(pod1.path(), "net1").is_none());
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());

    // nothing of the DHCP setup outlives it
    drop(daemon);
    drop(server);
    assert!(!process_exists(server_pid) && !process_exists(daemon_pid));
    assert!(temp_dirs.iter().all(|d| !d.exists()));
}

/// STAND-IN for whereabouts, for one behaviour only: its answer to CHECK.
/// whereabouts needs a Kubernetes API, which this machine does not have;
/// its cmdCheck returns a plain Go error, which the CNI library prints as
/// code 999 (internal). The script records its stdin and CNI_* environment
/// so the test can see what reached the IPAM plugin, and refuses any other
/// command so it cannot stand in for more than that.
const FAKE_WHEREABOUTS: &str = r#"#!/bin/sh
# TEST STAND-IN for whereabouts' CHECK reply only (see tests/cni_ipam.rs)
dir=$(dirname "$0")
cat > "$dir/stdin.json"
env | grep '^CNI_' | sort > "$dir/env.txt"
if [ "$CNI_COMMAND" != CHECK ]; then
  echo '{"code":999,"msg":"test stand-in: only CHECK is answered"}'
  exit 1
fi
echo '{"code":999,"msg":"CNI CHECK method is not implemented"}'
exit 1
"#;

#[test]
fn check_tolerates_whereabouts_not_implemented_but_not_a_real_ipam_failure() {
    if !require_root("check_tolerates_whereabouts_not_implemented_but_not_a_real_ipam_failure") {
        return;
    }
    let s = setup();
    let pod = s.pod("pod");
    let conf = s.cni.host_local_conf("1.0.0", VF0, "10.59.0.0/24");
    let add = s.cni.run("ADD", "cid", Some(pod.path()), "net1", &conf);
    assert!(add.ok(), "{}", add.stdout);

    let fake_dir = tempfile::tempdir().unwrap();
    let fake = fake_dir.path().join("whereabouts");
    std::fs::write(&fake, FAKE_WHEREABOUTS).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // a K3s whereabouts NAD, as docs/k3s.md shows it
    let mut whereabouts = with_prev_result(&conf, &add.json);
    whereabouts["ipam"] = json!({
        "type": "whereabouts",
        "range": "10.59.0.0/24",
        "exclude": ["10.59.0.1/32"],
        "configuration_path": "/var/lib/rancher/k3s/agent/etc/cni/net.d/whereabouts.d/whereabouts.conf",
        "log_level": "debug"
    });
    let cni_path = format!("{}:{DEBIAN_CNI_DIR}", fake_dir.path().display());
    let stdin = whereabouts.to_string();
    let check = s.cni.run_raw(
        "CHECK",
        "cid",
        Some(pod.path()),
        "net1",
        stdin.as_bytes(),
        &[("CNI_PATH", &cni_path)],
    );
    assert!(check.ok(), "{}", check.stdout);
    // the IPAM plugin got our stdin byte for byte and the pod's identity
    let seen = std::fs::read_to_string(fake_dir.path().join("stdin.json")).unwrap();
    assert_eq!(seen, stdin);
    let env = std::fs::read_to_string(fake_dir.path().join("env.txt")).unwrap();
    for line in [
        "CNI_COMMAND=CHECK".to_owned(),
        "CNI_CONTAINERID=cid".to_owned(),
        "CNI_IFNAME=net1".to_owned(),
        format!("CNI_NETNS={}", pod.path().display()),
        "CNI_ARGS=IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=demo".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from {env}");
    }

    // A real IPAM CHECK failure still fails: host-local no longer holds
    // the address (its allocation file is gone).
    let ip = add.json["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    std::fs::remove_file(s.cni.ipam_dir().join("sriov-net").join(&ip)).unwrap();
    let check = s.cni.run(
        "CHECK",
        "cid",
        Some(pod.path()),
        "net1",
        &with_prev_result(&conf, &add.json),
    );
    assert!(!check.ok());
    assert!(
        check.json["msg"]
            .as_str()
            .unwrap()
            .contains("IPAM plugin host-local CHECK"),
        "{}",
        check.stdout
    );
    assert!(s
        .cni
        .run("DEL", "cid", Some(pod.path()), "net1", &conf)
        .ok());
    assert!(s.cni.state_files().is_empty());
}

/// STAND-IN, not an IPAM plugin: keys each allocation on the pod, as
/// whereabouts does (`<namespace>/<name>` from CNI_ARGS), and on DEL
/// releases only the allocation of the pod CNI_ARGS names; a DEL that names
/// no pod, or another, finds nothing and exits 0, leaving the address held.
const POD_KEYED_IPAM: &str = r#"#!/bin/sh
cat >/dev/null
dir="$POD_KEYED_DIR"
pod=""
for pair in $(echo "$CNI_ARGS" | tr ';' ' '); do
  case "$pair" in
    K8S_POD_NAMESPACE=*) ns="${pair#K8S_POD_NAMESPACE=}" ;;
    K8S_POD_NAME=*) name="${pair#K8S_POD_NAME=}" ;;
  esac
done
[ -n "$ns" ] && [ -n "$name" ] && pod="$ns.$name"
case "$CNI_COMMAND" in
  ADD)
    [ -n "$pod" ] || { echo '{"cniVersion":"1.0.0","code":7,"msg":"no pod in CNI_ARGS"}'; exit 1; }
    echo "$CNI_CONTAINERID" > "$dir/$pod"
    echo '{"cniVersion":"1.0.0","ips":[{"address":"10.77.0.5/24"}]}'
    ;;
  DEL)
    [ -n "$pod" ] && rm -f "$dir/$pod"
    ;;
  VERSION)
    echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'
    ;;
esac
exit 0
"#;

/// Held allocations of the pod-keyed stand-in, by pod.
fn held(dir: &Path) -> Vec<String> {
    let mut pods: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pods.sort();
    pods
}

#[test]
fn gc_and_a_del_without_pod_args_release_through_an_ipam_that_keys_on_the_pod() {
    if !require_root("gc_and_a_del_without_pod_args_release_through_an_ipam_that_keys_on_the_pod") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut s = setup();
    let bin = s.cni.dir.path().join("stand-ins");
    let allocations = s.cni.dir.path().join("allocations");
    std::fs::create_dir(&bin).unwrap();
    std::fs::create_dir(&allocations).unwrap();
    let script = bin.join("pod-keyed-ipam");
    std::fs::write(&script, POD_KEYED_IPAM).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    s.cni.cni_path = format!("{}:{DEBIAN_CNI_DIR}", bin.display());
    let dir = allocations.display().to_string();
    let conf = |device: &str| {
        json!({"cniVersion": "1.1.0", "name": "keyed", "type": "sriov", "deviceID": device,
               "ipam": {"type": "pod-keyed-ipam"}})
    };
    let (pod_a, pod_b) = (s.pod("a"), s.pod("b"));
    let args = |pod: &str| format!("IgnoreUnknown=true;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME={pod}");
    for (cid, pod, device, name) in [("ca", &pod_a, VF0, "a"), ("cb", &pod_b, VF1, "b")] {
        let stdin = conf(device).to_string();
        let add = s.cni.run_raw(
            "ADD",
            cid,
            Some(pod.path()),
            "net1",
            stdin.as_bytes(),
            &[("CNI_ARGS", &args(name)), ("POD_KEYED_DIR", &dir)],
        );
        assert!(add.ok(), "{}", add.stdout);
    }
    assert_eq!(held(&allocations), ["ns1.a", "ns1.b"]);

    // GC, which has no CNI_ARGS, for a node where only `cb` is valid
    let mut gc = conf(VF0);
    gc.as_object_mut().unwrap().remove("deviceID");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "cb", "ifname": "net1"}]);
    let out = s.cni.run_raw(
        "GC",
        "",
        None,
        "",
        gc.to_string().as_bytes(),
        &[("CNI_ARGS", ""), ("POD_KEYED_DIR", &dir)],
    );
    assert!(out.ok(), "{}", out.stdout);
    assert_eq!(held(&allocations), ["ns1.b"], "GC released pod a's address");
    assert!(host_link(&s.vf_name(0)).is_some(), "VF 0 is home");

    // a runtime's DEL that passes no pod args still releases pod b's
    let stdin = conf(VF1).to_string();
    let del = s.cni.run_raw(
        "DEL",
        "cb",
        Some(pod_b.path()),
        "net1",
        stdin.as_bytes(),
        &[("CNI_ARGS", "IgnoreUnknown=true"), ("POD_KEYED_DIR", &dir)],
    );
    assert!(del.ok(), "{}", del.stdout);
    assert!(held(&allocations).is_empty(), "{:?}", held(&allocations));
    assert!(s.cni.state_files().is_empty(), "{:?}", s.cni.state_files());
}
