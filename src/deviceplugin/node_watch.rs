//! What changes on the node, as the daemon needs to hear it: link state
//! from rtnetlink at once (device health), PCI device changes from kernel
//! uevents debounced into one rescan (256 VFs made together are one
//! update), and lost events as a request to rescan.
//!
//! One blocking thread owns both sockets and waits on them with poll(2);
//! what it sees goes to the daemon's async loop through a channel, so no
//! socket is registered with the runtime (tokio's safe `AsyncFd::new` is
//! deprecated as unsound, and this needs no `unsafe`).

use crate::netlink::{LinkEvent, LinkStatus, LinkTable};
use crate::uevent::{UeventError, UeventListener};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a burst of device events may go quiet before it becomes one
/// rescan, and the most a rescan waits for a burst that does not stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    pub quiet: Duration,
    pub longest: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        // well inside the second in which new VFs must reach the kubelet
        Debounce {
            quiet: Duration::from_millis(150),
            longest: Duration::from_millis(600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// PCI functions were added, removed, bound or unbound: rescan.
    DevicesChanged { events: usize },
    /// Links whose state changed (new state), or that left the namespace.
    Links {
        changed: Vec<LinkStatus>,
        gone: Vec<u32>,
    },
    /// Every link as the kernel has it now (at start, and after lost events).
    LinksResynced(Vec<LinkStatus>),
    /// Device events were lost (socket overrun): rescan to catch up.
    Lost,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeWatchError {
    #[error("device events: {0}")]
    Uevent(#[from] UeventError),
    #[error("link events: {0}")]
    Links(#[from] crate::netlink::NetlinkError),
}

/// Start watching the node whose sysfs is at `sysfs_root` (the kernel's or
/// a simulated node's: the listener takes only that node's events). The
/// thread ends when the receiver is dropped.
pub fn spawn(
    sysfs_root: &Path,
    debounce: Debounce,
) -> Result<mpsc::UnboundedReceiver<NodeEvent>, NodeWatchError> {
    let devices = UeventListener::open(sysfs_root)?;
    let links = LinkTable::open()?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let _ = sender.send(NodeEvent::LinksResynced(links.all()));
    std::thread::Builder::new()
        .name("node-watch".into())
        .spawn(move || watch(devices, links, debounce, sender))
        .map_err(|e| NodeWatchError::Links(crate::netlink::NetlinkError::Socket(e)))?;
    Ok(receiver)
}

fn watch(
    mut devices: UeventListener,
    mut links: LinkTable,
    debounce: Debounce,
    sender: mpsc::UnboundedSender<NodeEvent>,
) {
    // (first event of the burst, last event, count)
    let mut burst: Option<(Instant, Instant, usize)> = None;
    // the burst lost events: say so (the rescan is the same)
    let mut lost = false;
    loop {
        if sender.is_closed() {
            return;
        }
        let timeout = match burst {
            Some((first, last, _)) => {
                let due = (last + debounce.quiet).min(first + debounce.longest);
                due.saturating_duration_since(Instant::now())
            }
            // wake now and then to notice a daemon that went away
            None => Duration::from_secs(1),
        };
        let ready = {
            let mut fds = [
                PollFd::new(devices.as_fd(), PollFlags::POLLIN),
                PollFd::new(links.as_fd(), PollFlags::POLLIN),
            ];
            let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut fds, PollTimeout::from(millis)) {
                Ok(_) => [0, 1].map(|i| {
                    fds[i]
                        .revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
                }),
                Err(nix::errno::Errno::EINTR) => [false, false],
                Err(error) => {
                    tracing::error!(%error, "waiting for node events: the watch stops");
                    return;
                }
            }
        };
        if ready[0] {
            loop {
                match devices.try_recv() {
                    Ok(Some(event)) => {
                        if event.subsystem() == Some("pci") {
                            let now = Instant::now();
                            burst = Some(match burst {
                                Some((first, _, count)) => (first, now, count + 1),
                                None => (now, now, 1),
                            });
                        }
                    }
                    Ok(None) => break,
                    Err(UeventError::Overrun) => {
                        // lost events are a burst too: one rescan for all
                        tracing::warn!("device events were lost: rescanning");
                        let now = Instant::now();
                        lost = true;
                        burst = Some(match burst {
                            Some((first, _, count)) => (first, now, count),
                            None => (now, now, 0),
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "an unreadable device event");
                    }
                }
            }
        }
        if ready[1] {
            match links.catch_up() {
                Ok(events) => {
                    if let Some(event) = link_event(&links, events) {
                        let _ = sender.send(event);
                    }
                }
                Err(error) => tracing::warn!(%error, "reading link events"),
            }
        }
        if let Some((first, last, count)) = burst {
            let now = Instant::now();
            if now >= last + debounce.quiet || now >= first + debounce.longest {
                let event = match lost {
                    true => NodeEvent::Lost,
                    false => NodeEvent::DevicesChanged { events: count },
                };
                let _ = sender.send(event);
                burst = None;
                lost = false;
            }
        }
    }
}

/// The changes of one catch-up as one message (the last state of each link).
fn link_event(links: &LinkTable, events: Vec<LinkEvent>) -> Option<NodeEvent> {
    if events.iter().any(|e| matches!(e, LinkEvent::Resynced)) {
        return Some(NodeEvent::LinksResynced(links.all()));
    }
    let mut changed: Vec<LinkStatus> = Vec::new();
    let mut gone = Vec::new();
    for event in events {
        match event {
            LinkEvent::Changed(status) => {
                gone.retain(|index| *index != status.index);
                changed.retain(|s| s.index != status.index);
                changed.push(status);
            }
            LinkEvent::Removed(index) => {
                changed.retain(|s| s.index != index);
                gone.push(index);
            }
            LinkEvent::Resynced => {}
        }
    }
    (!changed.is_empty() || !gone.is_empty()).then_some(NodeEvent::Links { changed, gone })
}

/// Whether a link can carry a VF's traffic: a PF must be up with carrier
/// (a pulled cable, an admin down); a VF's own netdev only fails when it is
/// up without carrier, since an idle VF is down on the host and fine.
pub fn link_usable(status: &LinkStatus, is_pf: bool) -> bool {
    const IFF_UP: u32 = 0x1;
    let up = status.flags & IFF_UP != 0;
    if is_pf {
        up && status.carrier
    } else {
        !up || status.carrier
    }
}

/// A link as rtnetlink would report it, for the pure tests here and in
/// `link_health`.
#[cfg(test)]
pub(crate) fn test_status(index: u32, name: &str, up: bool, carrier: bool) -> LinkStatus {
    LinkStatus {
        index,
        name: name.into(),
        mac: None,
        mtu: 1500,
        flags: if up { 0x1003 } else { 0x1002 },
        operstate: if up && carrier { "up" } else { "down" },
        carrier,
        kind: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(index: u32, name: &str, up: bool, carrier: bool) -> LinkStatus {
        test_status(index, name, up, carrier)
    }

    #[test]
    fn a_pf_needs_up_and_carrier_a_vf_only_fails_up_without_carrier() {
        assert!(link_usable(&status(1, "pf", true, true), true));
        assert!(
            !link_usable(&status(1, "pf", true, false), true),
            "pulled cable"
        );
        assert!(
            !link_usable(&status(1, "pf", false, false), true),
            "admin down"
        );
        assert!(
            link_usable(&status(2, "vf", false, false), false),
            "idle VF"
        );
        assert!(link_usable(&status(2, "vf", true, true), false));
        assert!(!link_usable(&status(2, "vf", true, false), false));
    }
}
