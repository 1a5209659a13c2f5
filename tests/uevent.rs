//! Uevents over the real NETLINK_KOBJECT_UEVENT socket: a simulated node's
//! sender and listeners for its root, another root and the real /sys.
//!
//! Sending to group 1 needs root (CAP_NET_ADMIN); those tests call
//! `require_root`. Every test uses its own temp-dir roots, so tests running
//! side by side (and other processes' uevents) only ever reach the filters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::require_root;
use netlink_sys::{protocols::NETLINK_KOBJECT_UEVENT, Socket, SocketAddr};
use sriov_rs::uevent::{
    Action, Origin, PciFunction, Uevent, UeventError, UeventListener, UeventSender, SIM_ROOT_KEY,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Long enough for a broadcast on an idle host to arrive many times over.
const QUIET: Duration = Duration::from_millis(500);
const ARRIVES: Duration = Duration::from_secs(5);

/// A fresh directory standing in for a simulated node's sysfs root.
fn sim_root(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let root = dir.path().join(name).join("sys");
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn vf(index: u8) -> PciFunction {
    let slot = format!("0000:3b:{:02x}.{}", 1 + index / 8, index % 8);
    PciFunction {
        devpath: format!("/devices/pci0000:3a/0000:3a:00.0/{slot}"),
        slot: slot.parse().unwrap(),
        vendor: 0x8086,
        device: 0x1889,
        subsystem_vendor: 0x8086,
        subsystem_device: 0,
        class: 0x020000,
    }
}

/// What a listener receives for `sent`: the same variables, then the root
/// tag and the sender's SEQNUM.
fn as_received(sent: &Uevent, root: &str, seqnum: u64) -> Uevent {
    let mut expected = sent.clone();
    expected.push(SIM_ROOT_KEY, root);
    expected.push("SEQNUM", seqnum.to_string());
    expected
}

fn canonical(root: &Path) -> String {
    root.canonicalize().unwrap().to_str().unwrap().to_owned()
}

#[test]
fn a_listener_takes_its_roots_events_and_another_roots_listener_none() {
    if !require_root("a_listener_takes_its_roots_events_and_another_roots_listener_none") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (sim_root(&dir, "a"), sim_root(&dir, "b"));
    let mut listener_a = UeventListener::open(&root_a).unwrap();
    let mut listener_b = UeventListener::open(&root_b).unwrap();
    assert_eq!(listener_a.origin(), &Origin::Simulated(canonical(&root_a)));
    let mut sender = UeventSender::open(&root_a).unwrap();
    assert_eq!(sender.root(), canonical(&root_a));

    // A VF's life as the kernel tells it: appears, driver binds, driver
    // lets go, gone.
    let function = vf(0);
    let sent = [
        Uevent::pci_add(&function),
        Uevent::pci_bind(&function, "iavf"),
        Uevent::pci_unbind(&function),
        Uevent::pci_remove(&function),
    ];
    let seqnums: Vec<u64> = sent.iter().map(|e| sender.send(e).unwrap()).collect();
    assert_eq!(seqnums, [1, 2, 3, 4]);

    for (event, seqnum) in sent.iter().zip(seqnums) {
        let received = listener_a
            .recv_timeout(ARRIVES)
            .unwrap()
            .unwrap_or_else(|| panic!("{}@{} never arrived", event.action, event.devpath));
        assert_eq!(received, as_received(event, sender.root(), seqnum));
    }
    let bind = &as_received(&sent[1], sender.root(), 2);
    assert_eq!(bind.driver(), Some("iavf"));
    assert_eq!(bind.pci_slot(), Some(function.slot));

    assert_eq!(
        listener_a.recv_timeout(QUIET).unwrap(),
        None,
        "nothing more for A"
    );
    assert_eq!(
        listener_b.recv_timeout(QUIET).unwrap(),
        None,
        "B must not see A's events"
    );
}

#[test]
fn the_kernel_listener_ignores_a_simulators_events() {
    if !require_root("the_kernel_listener_ignores_a_simulators_events") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "node");
    let mut kernel = UeventListener::open(Path::new("/sys")).unwrap();
    assert_eq!(kernel.origin(), &Origin::Kernel);
    let mut own = UeventListener::open(&root).unwrap();
    let mut sender = UeventSender::open(&root).unwrap();

    // A devpath no real device has, so real kernel events arriving meanwhile
    // (other tests create veths) cannot be mistaken for ours.
    let devpath = format!("/devices/sriov-rs-test-{}/0000:3b:01.0", std::process::id());
    let event = Uevent::new(Action::Add, devpath.as_str(), "pci");
    sender.send(&event).unwrap();

    // The simulator's own listener proves the message was broadcast...
    let arrived = own
        .recv_timeout(ARRIVES)
        .unwrap()
        .expect("the event arrives");
    assert_eq!(arrived.devpath, devpath);
    // ...and the /sys listener skipped it: whatever it takes is the kernel's.
    while let Some(taken) = kernel.recv_timeout(QUIET).unwrap() {
        assert_ne!(taken.devpath, devpath, "took a simulator's event");
        assert_eq!(taken.var(SIM_ROOT_KEY), None);
    }
}

#[test]
fn the_kernel_listener_hears_the_kernel() {
    if !require_root("the_kernel_listener_hears_the_kernel") {
        return;
    }
    // Asking the kernel to re-announce a device (a synthetic "change"
    // written to its uevent file, tagged with a UUID of ours) produces a
    // real event from port 0: the one sender the /sys listener takes.
    // /dev/null's device is always there and nothing acts on its changes.
    let mut kernel = UeventListener::open(Path::new("/sys")).unwrap();
    let uuid = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            & 0xffff_ffff_ffff
    );
    std::fs::write(
        "/sys/devices/virtual/mem/null/uevent",
        format!("change {uuid}"),
    )
    .unwrap();
    let mut found = None;
    while let Some(event) = kernel.recv_timeout(ARRIVES).unwrap() {
        if event.var("SYNTH_UUID") == Some(uuid.as_str()) {
            found = Some(event);
            break;
        }
    }
    let event = found.expect("the kernel's change event for /dev/null");
    assert_eq!(event.action, Action::Change);
    assert_eq!(event.devpath, "/devices/virtual/mem/null");
    assert_eq!(event.subsystem(), Some("mem"));
    assert!(event.seqnum().is_some(), "the kernel numbers every event");
}

#[test]
fn a_burst_of_300_arrives_complete_and_in_order() {
    if !require_root("a_burst_of_300_arrives_complete_and_in_order") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "burst");
    let mut listener = UeventListener::open(&root).unwrap();
    let mut sender = UeventSender::open(&root).unwrap();

    // Sent before anything is read: the default receive buffer holds them.
    let sent: Vec<Uevent> = (0..300u32)
        .map(|i| {
            let function = vf((i % 64) as u8);
            match i % 4 {
                0 => Uevent::pci_add(&function),
                1 => Uevent::pci_bind(&function, "iavf"),
                2 => Uevent::pci_unbind(&function),
                _ => Uevent::pci_remove(&function),
            }
        })
        .collect();
    for event in &sent {
        sender.send(event).unwrap();
    }
    for (i, event) in sent.iter().enumerate() {
        let seqnum = i as u64 + 1;
        match listener.recv_timeout(ARRIVES) {
            Ok(Some(received)) => assert_eq!(received, as_received(event, sender.root(), seqnum)),
            Ok(None) => panic!("event {seqnum} of 300 never arrived"),
            Err(e) => panic!("event {seqnum} of 300: {e}"),
        }
    }
    assert_eq!(listener.recv_timeout(QUIET).unwrap(), None);
}

#[test]
fn an_overrun_is_reported_as_lost_events_and_the_listener_goes_on() {
    if !require_root("an_overrun_is_reported_as_lost_events_and_the_listener_goes_on") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "overrun");
    let mut listener = UeventListener::open(&root).unwrap();
    // The kernel's minimum: room for a handful of messages.
    let granted = listener.set_receive_buffer(1).unwrap();
    assert!(granted < 16 * 1024, "granted {granted}");
    let mut sender = UeventSender::open(&root).unwrap();
    for i in 0..300u32 {
        sender.send(&Uevent::pci_add(&vf((i % 64) as u8))).unwrap();
    }

    let mut overruns = 0;
    let mut seqnums = Vec::new();
    loop {
        match listener.recv_timeout(QUIET) {
            Ok(Some(event)) => seqnums.push(event.seqnum().unwrap()),
            Ok(None) => break,
            Err(UeventError::Overrun) => overruns += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(overruns >= 1, "the loss must be reported");
    assert!(
        seqnums.len() < 300,
        "got all {} despite the overrun",
        seqnums.len()
    );
    assert!(
        seqnums.windows(2).all(|w| w[0] < w[1]),
        "what did arrive is in order: {seqnums:?}"
    );

    // After the report the listener works as before.
    listener.set_receive_buffer(1 << 20).unwrap();
    let last = sender.send(&Uevent::pci_remove(&vf(0))).unwrap();
    let event = listener.recv_timeout(ARRIVES).unwrap().expect("arrives");
    assert_eq!(event.seqnum(), Some(last));
}

#[test]
fn strangers_datagrams_on_group_1_are_skipped() {
    if !require_root("strangers_datagrams_on_group_1_are_skipped") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "strangers");
    let tag = canonical(&root);
    let mut listener = UeventListener::open(&root).unwrap();

    // Raw datagrams another program might put on group 1: garbage, a udev
    // (group 2 style) message, a simulator's event for another root.
    let mut raw = Socket::new(NETLINK_KOBJECT_UEVENT).unwrap();
    raw.bind_auto().unwrap();
    let group_1 = SocketAddr::new(0, 1);
    let other_root = format!("add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=pci\0{SIM_ROOT_KEY}={tag}-other\0");
    for junk in [
        &b"\xff\xfe\x00garbage"[..],
        b"libudev\0\xfe\xed\xca\xfe",
        other_root.as_bytes(),
    ] {
        raw.send_to(junk, &group_1, 0).unwrap();
    }
    assert_eq!(listener.recv_timeout(QUIET).unwrap(), None);

    // A malformed message that does carry our root is reported, not
    // skipped: it names this node, so losing it silently would hide a bug.
    let broken =
        format!("add@/devices/x\0ACTION=remove\0DEVPATH=/devices/x\0{SIM_ROOT_KEY}={tag}\0");
    raw.send_to(broken.as_bytes(), &group_1, 0).unwrap();
    match listener.recv_timeout(ARRIVES) {
        Err(UeventError::Malformed(detail)) => assert!(detail.contains("disagrees"), "{detail}"),
        other => panic!("expected a malformed-uevent error, got {other:?}"),
    }
}

#[test]
fn a_large_event_arrives_whole() {
    if !require_root("a_large_event_arrives_whole") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "large");
    let mut listener = UeventListener::open(&root).unwrap();
    let mut sender = UeventSender::open(&root).unwrap();
    // Larger than the listener's first read buffer and the kernel's own
    // 2 KiB of variables.
    let mut event = Uevent::pci_bind(&vf(3), "vfio-pci");
    for i in 0..100 {
        event.push(format!("EXTRA_{i:03}"), "x".repeat(60));
    }
    let seqnum = sender.send(&event).unwrap();
    let received = listener.recv_timeout(ARRIVES).unwrap().expect("arrives");
    assert_eq!(received, as_received(&event, sender.root(), seqnum));
    assert!(received.encode().len() > 6000);

    event.push("TOO_MUCH", "y".repeat(2000));
    match sender.send(&event) {
        Err(UeventError::Invalid(detail)) => assert!(detail.contains("8192"), "{detail}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn try_recv_never_blocks_and_recv_waits() {
    if !require_root("try_recv_never_blocks_and_recv_waits") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "nonblocking");
    let mut listener = UeventListener::open(&root).unwrap();
    assert_eq!(listener.try_recv().unwrap(), None);

    let sender_root = root.clone();
    let sending = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut sender = UeventSender::open(&sender_root).unwrap();
        sender.send(&Uevent::pci_add(&vf(1))).unwrap()
    });
    let event = listener.recv().unwrap();
    let seqnum = sending.join().unwrap();
    assert_eq!(event.seqnum(), Some(seqnum));
    assert_eq!(event.pci_slot(), Some(vf(1).slot));
    assert_eq!(listener.try_recv().unwrap(), None);
}

#[test]
fn the_listener_works_under_tokio_async_fd() {
    if !require_root("the_listener_works_under_tokio_async_fd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = sim_root(&dir, "async");
    let listener = UeventListener::open(&root).unwrap();
    let mut sender = UeventSender::open(&root).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let received = runtime.block_on(async move {
        // tokio 1.54 deprecates the safe constructor in favour of an unsafe
        // `register` whose promise (one fd, open for the wrapper's whole
        // life) the listener keeps by owning its socket; the crate denies
        // unsafe code, so the test takes the deprecated spelling.
        #[allow(deprecated)]
        let mut fd = tokio::io::unix::AsyncFd::new(listener).unwrap();
        let first = sender.send(&Uevent::pci_add(&vf(2))).unwrap();
        let second = sender.send(&Uevent::pci_bind(&vf(2), "iavf")).unwrap();
        let mut received = Vec::new();
        while received.len() < 2 {
            let mut guard = tokio::time::timeout(ARRIVES, fd.readable_mut())
                .await
                .expect("readable in time")
                .unwrap();
            // The daemon's loop: drain with try_recv, then clear readiness.
            while let Some(event) = guard.get_inner_mut().try_recv().unwrap() {
                received.push(event.seqnum().unwrap());
            }
            guard.clear_ready();
        }
        assert_eq!(received, [first, second]);
        received
    });
    assert_eq!(received.len(), 2);
}

#[test]
fn a_sender_refuses_the_real_sysfs_and_a_missing_root() {
    // No privilege needed: both are refused before any socket is opened.
    match UeventSender::open(Path::new("/sys")) {
        Err(UeventError::KernelRoot { path }) => assert_eq!(path, Path::new("/sys")),
        Err(e) => panic!("expected a refusal for /sys, got {e}"),
        Ok(_) => panic!("a sender for /sys must be refused"),
    }
    let dir = tempfile::tempdir().unwrap();
    match UeventListener::open(&dir.path().join("missing")) {
        Err(UeventError::Root { path, source }) => {
            assert!(path.ends_with("missing"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        Err(e) => panic!("expected a root error, got {e}"),
        Ok(_) => panic!("a listener for a missing root must be refused"),
    }
}
