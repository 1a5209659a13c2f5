//! Real DHCP for the dhcp IPAM tests: dnsmasq as the server inside a wire
//! namespace of the simulated node (where the VF's veth peer meets the
//! bridge, so its DHCP traffic reaches the pod's VF), and Debian's CNI
//! `dhcp daemon` on a socket of its own. Both are children of the test,
//! killed and reaped on drop, with their files in temp dirs.
//!
//! dnsmasq is started so it can touch nothing outside the test: its own
//! config only (`--conf-file=/dev/null`), no DNS (`--port=0`), bound to the
//! one bridge in the wire namespace, in the foreground, leases and log in
//! the temp dir. A system dnsmasq, if one ran, lives in the host namespace
//! and never sees that bridge.

use sriov_rs::netlink::{AddressOps, IfAddress, LinkOps, Netlink};
use sriov_rs::netns;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DHCP_PLUGIN: &str = "/usr/lib/cni/dhcp";
const STARTUP: Duration = Duration::from_secs(10);

/// Poll `ready` until it holds or `STARTUP` passes.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + STARTUP;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not start in time");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Child, what: &str) {
    // SIGKILL and reap: nothing of ours may outlive the test
    if let Err(e) = child.kill() {
        eprintln!("stopping {what}: {e}");
    }
    let _ = child.wait();
}

pub struct DnsmasqServer {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The server's own address: dnsmasq also hands it out as the router.
    pub server: String,
}

impl DnsmasqServer {
    /// Serve `range` (first, last) on the bridge `bridge` of the named
    /// namespace `wire_netns`, from `server_cidr` (e.g. 10.57.0.1/24).
    pub fn start(
        wire_netns: &str,
        bridge: &str,
        server_cidr: &str,
        range: (&str, &str),
    ) -> DnsmasqServer {
        let wire_path = netns::named_path(wire_netns).unwrap();
        let (server, prefix) = server_cidr.split_once('/').unwrap();
        netns::run_in(&wire_path, || {
            let mut wire = Netlink::open().unwrap();
            let link = wire.link_by_name(bridge).unwrap().expect("wire bridge");
            wire.add_address(
                link.index,
                IfAddress {
                    address: server.parse().unwrap(),
                    prefix_len: prefix.parse().unwrap(),
                },
            )
            .unwrap();
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dnsmasq.log");
        let mask = prefix_to_mask(prefix.parse().unwrap());
        // `ip netns exec` switches namespace and execs dnsmasq in place, so
        // the child's pid is dnsmasq's (checked below).
        let child = Command::new("ip")
            .args(["netns", "exec", wire_netns, "dnsmasq"])
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--port=0")
            .arg(format!("--interface={bridge}"))
            .arg("--bind-interfaces")
            .arg(format!("--dhcp-range={},{},{mask},1h", range.0, range.1))
            .arg(format!(
                "--dhcp-leasefile={}",
                dir.path().join("leases").display()
            ))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-facility={}", log.display()))
            .args([
                "--log-dhcp",
                "--no-resolv",
                "--no-hosts",
                // no ping probe before an offer: it only delays the test
                "--no-ping",
                "--dhcp-authoritative",
                "--user=root",
                "--group=root",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dnsmasq (hack/test.sh installs dnsmasq-base)");
        let mut server = DnsmasqServer {
            child,
            dir,
            server: server.to_owned(),
        };
        wait_until("dnsmasq", || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("dnsmasq exited at start ({status}): {}", server.log());
            }
            server.log().contains("DHCP, sockets bound exclusively")
        });
        let exe = std::fs::read_link(format!("/proc/{}/exe", server.child.id())).unwrap();
        assert!(
            exe.ends_with("dnsmasq"),
            "the child is {}, not dnsmasq: stopping it would leak the server",
            exe.display()
        );
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// dnsmasq's lease file: `<expiry> <mac> <ip> <hostname> <client-id>`.
    pub fn leases(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.path().join("leases"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.len() >= 3).then(|| (fields[1].to_owned(), fields[2].to_owned()))
            })
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DnsmasqServer {
    fn drop(&mut self) {
        stop(&mut self.child, "dnsmasq");
    }
}

fn prefix_to_mask(prefix: u8) -> std::net::Ipv4Addr {
    let bits = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    std::net::Ipv4Addr::from(bits)
}

/// Debian's `dhcp daemon`, listening on a socket in its own temp dir.
pub struct DhcpDaemon {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl DhcpDaemon {
    pub fn start() -> DhcpDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("dhcp.sock");
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(DHCP_PLUGIN)
            .arg("daemon")
            .arg("-socketpath")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the CNI dhcp daemon (containernetworking-plugins)");
        let mut daemon = DhcpDaemon { child, dir };
        wait_until("dhcp daemon", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("dhcp daemon exited at start ({status}): {}", daemon.log());
            }
            socket.exists()
        });
        daemon
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("dhcp.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DhcpDaemon {
    fn drop(&mut self) {
        stop(&mut self.child, "dhcp daemon");
    }
}

/// True while a process with that pid exists (a reaped child is gone).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
