//! `netlink::LinkTable` in a network namespace of its own (root): it
//! follows renames at once, and after lost events (a receive queue that
//! overflowed) it shows the links as they are now, not as the stale events
//! still queued said they were.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{require_root, unique_tag, TestNetns};
use sriov_rs::netlink::{LinkEvent, LinkOps, LinkTable, Netlink};
use sriov_rs::netns;

#[test]
fn after_lost_events_the_table_shows_the_last_name_not_a_stale_one() {
    if !require_root("after_lost_events_the_table_shows_the_last_name_not_a_stale_one") {
        return;
    }
    let ns = TestNetns::new(&format!("{}-lt", unique_tag()));
    netns::run_in(ns.path(), || {
        let mut table = LinkTable::open().unwrap();
        let mut netlink = Netlink::open().unwrap();
        netlink.add_veth("lta", None, "ltb", None, None).unwrap();
        let index = netlink.link_by_name("lta").unwrap().unwrap().index;
        table.catch_up().unwrap();
        assert_eq!(table.get(index).unwrap().name, "lta");
        // a rename is seen at the next read, no waiting
        netlink.set_name(index, "ltc").unwrap();
        table.catch_up().unwrap();
        assert_eq!(table.get(index).unwrap().name, "ltc");

        // a tiny queue, and far more renames than it holds
        table.set_event_buffer(4096).unwrap();
        for n in 0..400 {
            netlink.set_name(index, &format!("ltn{n}")).unwrap();
        }
        netlink.set_name(index, "ltlast").unwrap();
        let events = table.catch_up().unwrap();
        assert!(
            events.iter().any(|e| matches!(e, LinkEvent::Resynced)),
            "the queue overflowed: {} events",
            events.len()
        );
        assert_eq!(table.get(index).unwrap().name, "ltlast");
    })
    .unwrap();
}
