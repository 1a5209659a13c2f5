//! 500 ADD/DEL cycles with a fault every few cycles: an IPAM failure, the
//! pod netns destroyed before DEL, the plugin SIGKILLed mid-ADD followed by
//! the runtime's DEL. Afterwards every VF is on the host under its original
//! name and MAC, and neither IPs nor state files are left.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::cni::CniHarness;
use common::{require_root, two_pf_layout, SimFixture, TestNetns};
use serde_json::json;
use sriov_rs::netlink::{Link, LinkOps, Netlink};
use sriov_rs::netns;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

const CYCLES: usize = 500;
const DEVICES: [&str; 3] = ["0000:3b:01.0", "0000:3b:01.1", "0000:3b:01.2"];

fn host_link(name: &str) -> Option<Link> {
    Netlink::open().unwrap().link_by_name(name).unwrap()
}

/// What the kernel does to a real VF when its pod netns dies: it comes back
/// to the host under its pod-side name, or `devN` on a clash. (A veth
/// stand-in would die instead; moving it first keeps the simulation honest.)
fn destroy_pod_like_the_kernel(pod: TestNetns, spare_name: &str) {
    let host = sriov_rs::vf::host_netns().unwrap();
    netns::run_in(pod.path(), || {
        let mut inside = Netlink::open().unwrap();
        if let Some(link) = inside.link_by_name("net1").unwrap() {
            inside
                .set_netns_and_name(link.index, host.as_fd(), spare_name)
                .unwrap();
        }
    })
    .unwrap();
    drop(pod);
}

/// Start the plugin's ADD as a runtime would, stdin written, output ignored.
fn spawn_add(
    cni: &CniHarness,
    cid: &str,
    pod: &TestNetns,
    conf: &serde_json::Value,
) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sriov"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", &cni.cni_path)
        .env("SRIOV_SYSFS_ROOT", &cni.sysfs_root)
        .env("SRIOV_CNI_STATE_DIR", cni.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    child
}

/// Start an ADD and SIGKILL it after `delay`: the runtime's timeout.
fn killed_add(
    cni: &CniHarness,
    cid: &str,
    pod: &TestNetns,
    conf: &serde_json::Value,
    delay: Duration,
) {
    let mut child = spawn_add(cni, cid, pod, conf);
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL; it may have finished already
    child.wait().unwrap();
}

#[test]
fn five_hundred_cycles_with_faults_lose_no_vf_ip_or_file() {
    if !require_root("five_hundred_cycles_with_faults_lose_no_vf_ip_or_file") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let cni = CniHarness::new(&fixture.root);
    let names: Vec<String> = (0..3).map(|i| format!("{}av{i}", fixture.tag)).collect();
    let originals: Vec<Link> = names.iter().map(|n| host_link(n).unwrap()).collect();
    let mut faults = [0usize; 3];

    for cycle in 0..CYCLES {
        let slot = cycle % DEVICES.len();
        let conf = cni.host_local_conf("1.0.0", DEVICES[slot], "10.77.0.0/16");
        let cid = format!("c{cycle}");
        let pod = TestNetns::new(&format!("{}-f{cycle}", fixture.tag));
        match cycle % 7 {
            3 => {
                // IPAM failure after the VF moved: ADD must undo the move
                let mut bad = conf.clone();
                bad["ipam"]["rangeStart"] = json!("10.99.0.1");
                assert!(
                    !cni.run("ADD", &cid, Some(pod.path()), "net1", &bad).ok(),
                    "cycle {cycle}"
                );
                assert!(
                    cni.run("DEL", &cid, Some(pod.path()), "net1", &bad).ok(),
                    "cycle {cycle}"
                );
                faults[0] += 1;
            }
            5 => {
                assert!(
                    cni.run("ADD", &cid, Some(pod.path()), "net1", &conf).ok(),
                    "cycle {cycle}"
                );
                let path = pod.path().to_owned();
                destroy_pod_like_the_kernel(pod, &format!("dev{cycle}"));
                assert!(
                    cni.run("DEL", &cid, Some(&path), "net1", &conf).ok(),
                    "cycle {cycle}"
                );
                faults[1] += 1;
                continue;
            }
            6 => {
                // kill points spread over the whole ADD (0-12 ms)
                let delay = Duration::from_micros(((cycle * 7919) % 12_000) as u64);
                killed_add(&cni, &cid, &pod, &conf, delay);
                assert!(
                    cni.run("DEL", &cid, Some(pod.path()), "net1", &conf).ok(),
                    "cycle {cycle}"
                );
                faults[2] += 1;
            }
            _ => {
                assert!(
                    cni.run("ADD", &cid, Some(pod.path()), "net1", &conf).ok(),
                    "cycle {cycle}"
                );
                assert!(
                    cni.run("DEL", &cid, Some(pod.path()), "net1", &conf).ok(),
                    "cycle {cycle}"
                );
            }
        }
        // after every cycle the VF is home, as it was
        let now = host_link(&names[slot])
            .unwrap_or_else(|| panic!("cycle {cycle}: {} is not on the host", names[slot]));
        assert_eq!(
            (now.mac, now.mtu),
            (originals[slot].mac, originals[slot].mtu),
            "cycle {cycle}"
        );
    }
    for (name, original) in names.iter().zip(&originals) {
        let now = host_link(name).expect("VF on the host");
        assert_eq!((now.index, now.mac), (original.index, original.mac));
    }
    assert!(
        cni.allocated_ips().is_empty(),
        "IPs left: {:?}",
        cni.allocated_ips()
    );
    assert!(
        cni.state_files().is_empty(),
        "state left: {:?}",
        cni.state_files()
    );
    assert!(
        faults.iter().all(|&n| n >= 70),
        "each fault injected often: {faults:?}"
    );
}

/// Is the process gone (or a zombie waiting for its new parent to reap it)?
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // state is the field after the parenthesised command name
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn the_ipam_plugin_dies_with_a_killed_sriov() {
    if !require_root("the_ipam_plugin_dies_with_a_killed_sriov") {
        return;
    }
    let fixture = SimFixture::new(two_pf_layout, true);
    let mut cni = CniHarness::new(&fixture.root);
    let vf0 = format!("{}av0", fixture.tag);
    let before = host_link(&vf0).unwrap();
    let bin = cni.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let pid_file = cni.dir.path().join("ipam.pid");
    // STAND-IN, not IPAM: an IPAM ADD that never finishes (a slow DHCP
    // server, a stuck whereabouts), telling its pid
    let script = bin.join("slow-ipam");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 60; fi\n",
            pid_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    cni.cni_path = bin.display().to_string();
    let pod = TestNetns::new(&format!("{}-slow", fixture.tag));
    let mut conf = cni.host_local_conf("1.0.0", DEVICES[0], "10.78.0.0/24");
    conf["ipam"]["type"] = json!("slow-ipam");

    let mut child = spawn_add(&cni, "slow", &pod, &conf);
    let mut waited = Duration::ZERO;
    while !pid_file.exists() {
        assert!(
            waited < Duration::from_secs(30),
            "the IPAM stand-in never started"
        );
        std::thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        !process_gone(&pid),
        "the stand-in runs while sriov waits for it"
    );
    child.kill().unwrap(); // SIGKILL: the runtime's timeout
    child.wait().unwrap();
    let mut waited = Duration::ZERO;
    while !process_gone(&pid) {
        if waited > Duration::from_secs(30) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("the IPAM plugin {pid} outlived the killed sriov");
        }
        std::thread::sleep(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    // the runtime's DEL puts everything back
    let del = cni.run("DEL", "slow", Some(pod.path()), "net1", &conf);
    assert!(del.ok(), "{}", del.stdout);
    let after = host_link(&vf0).unwrap();
    assert_eq!((after.index, after.mac), (before.index, before.mac));
    assert!(cni.state_files().is_empty());
}
