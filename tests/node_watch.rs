//! The daemon's view of a changing node, on the live simulated node (root):
//! a burst of VFs made through `sriov_numvfs` is one rescan request within
//! a second; a pulled cable arrives as a link change at once; another
//! node's changes are not heard.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{require_root, two_pf_layout, SimFixture};
use sriov_rs::deviceplugin::node_watch::{self, link_usable, Debounce, NodeEvent};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

async fn next(events: &mut UnboundedReceiver<NodeEvent>, within: Duration) -> Option<NodeEvent> {
    tokio::time::timeout(within, events.recv())
        .await
        .ok()
        .flatten()
}

/// The next event that is not about links (other tests' links come and go).
async fn next_device_event(
    events: &mut UnboundedReceiver<NodeEvent>,
    within: Duration,
) -> Option<NodeEvent> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(events, left).await? {
            NodeEvent::Links { .. } | NodeEvent::LinksResynced(_) => continue,
            other => return Some(other),
        }
    }
}

#[tokio::test]
async fn vfs_made_together_are_one_rescan_and_a_pulled_cable_is_heard_at_once() {
    if !require_root("vfs_made_together_are_one_rescan_and_a_pulled_cable_is_heard_at_once") {
        return;
    }
    let node = SimFixture::new(two_pf_layout, true);
    let other = SimFixture::new(
        |tag| {
            let mut layout = two_pf_layout(tag);
            layout.pfs.truncate(1);
            layout
        },
        true,
    );
    let mut events = node_watch::spawn(&node.root, Debounce::default()).unwrap();
    match next(&mut events, Duration::from_secs(1)).await {
        Some(NodeEvent::LinksResynced(links)) => {
            assert!(links.iter().any(|l| l.name == format!("{}a", node.tag)));
        }
        other => panic!("first the links as they are: {other:?}"),
    }

    // another node's VFs: nothing for us
    let other_numvfs = other.root.join("bus/pci/devices/0000:3b:00.0/sriov_numvfs");
    std::fs::write(&other_numvfs, "0\n").unwrap();
    assert_eq!(
        next_device_event(&mut events, Duration::from_millis(800)).await,
        None
    );

    let numvfs = node.root.join("bus/pci/devices/0000:3b:00.0/sriov_numvfs");
    std::fs::write(&numvfs, "0\n").unwrap();
    std::fs::write(&numvfs, "32\n").unwrap();
    // timed from the write's return: the 32 VFs and their events exist
    let start = Instant::now();
    let made = next_device_event(&mut events, Duration::from_secs(2)).await;
    let took = start.elapsed();
    // the first burst (4 VFs gone) may or may not have been folded in
    let events_seen = match made {
        Some(NodeEvent::DevicesChanged { events }) => events,
        other => panic!("a rescan request: {other:?}"),
    };
    let events_seen = if events_seen < 64 {
        match next_device_event(&mut events, Duration::from_secs(2)).await {
            Some(NodeEvent::DevicesChanged { events }) => events,
            other => panic!("the 32 VFs as one rescan request: {other:?}"),
        }
    } else {
        events_seen
    };
    // add + bind per VF and the PF's change: one request for all of them
    assert!(events_seen >= 65, "{events_seen} events in one request");
    assert!(
        took < Duration::from_secs(1) + Duration::from_millis(500),
        "{took:?}"
    );
    assert_eq!(
        next_device_event(&mut events, Duration::from_millis(500)).await,
        None,
        "one request, not many"
    );

    // the cable: a link change with the PF's carrier gone, at once
    let pf = format!("{}a", node.tag);
    let pulled = Instant::now();
    sriov_rs::devtools::sim::set_carrier(&node.root, &pf, false).unwrap();
    let deadline = Instant::now() + Duration::from_millis(500);
    let status = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next(&mut events, left).await {
            Some(NodeEvent::Links { changed, .. }) => {
                if let Some(status) = changed.into_iter().find(|s| s.name == pf) {
                    break status;
                }
            }
            Some(_) => {}
            None => panic!("no link event for {pf} within 500 ms"),
        }
    };
    assert!(!link_usable(&status, true));
    assert!(pulled.elapsed() < Duration::from_millis(500));
    sriov_rs::devtools::sim::set_carrier(&node.root, &pf, true).unwrap();
}
