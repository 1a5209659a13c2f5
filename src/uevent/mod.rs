//! Kernel uevents: device add/remove/bind/unbind as the kernel announces them
//! on NETLINK_KOBJECT_UEVENT (protocol 15), multicast group 1, and the same
//! announcements made by a simulated node.
//!
//! - `message` (pure): [`Uevent`] parsed from and encoded to the kernel's
//!   datagram, `ACTION@DEVPATH\0ACTION=..\0DEVPATH=..\0SUBSYSTEM=..\0...SEQNUM=..\0`,
//!   and builders for what a PCI function's add/bind/unbind/remove carry.
//! - `origin` (pure): [`Origin`], whose events a listener takes.
//! - `socket`: [`UeventListener`] and [`UeventSender`].
//!
//! # One listener, one sysfs root
//!
//! Several simulated nodes can run side by side next to the real kernel, and
//! they all share group 1 of one network namespace. A listener is opened for
//! one sysfs root and skips everything else:
//!
//! - a root that is a **sysfs mount** (`/sys`) takes messages from netlink
//!   port 0, which only the kernel sends from, that carry no
//!   [`SIM_ROOT_KEY`];
//! - any other root is a **simulated node**, named by its canonical path; its
//!   listener takes only messages whose `SRIOV_SIM_ROOT` variable is exactly
//!   that path. [`UeventSender`] adds the variable (and a SEQNUM of its own)
//!   to every event it sends.
//!
//! So two simulated nodes never see each other's events, and a daemon on a
//! real node never takes a simulator's.
//!
//! # Sending to group 1
//!
//! Tried on this kernel (6.18): a root process's `sendto` with destination
//! port 0 and groups 1 is delivered to every group-1 listener in the
//! namespace, with the sender's own (non-zero) port as source, and the call
//! succeeds; the kernel's uevent socket also gets a copy and drops it (see
//! [`UeventSender::send`]). Without CAP_NET_ADMIN the send fails with EPERM;
//! listening needs no privilege. Destination ports other than 0 either hand
//! the sender's copy to that socket or fail with ECONNREFUSED after the
//! broadcast already went out. Wrapping the message in a netlink header and
//! sending it to the kernel (the injection path for containers, which needs
//! CAP_SYS_ADMIN) makes the kernel rebroadcast it from port 0 with one of its
//! own SEQNUMs: that would impersonate the kernel and take a number from the
//! real sequence, so we do not use it.
//!
//! systemd-udevd ignores group-1 messages from non-zero ports, but where it
//! runs it acts on what it does take, so a sender refuses `net`-subsystem
//! events outright.
//!
//! Events can be lost when a listener's receive queue fills: the next read
//! reports [`UeventError::Overrun`] (ENOBUFS), and the caller rescans sysfs.
//! Listeners ask for a [`DEFAULT_RECEIVE_BUFFER`] to make that rare.
//!
//! Netlink sockets belong to a network namespace: a simulator and its
//! listeners must share one (the host's, in practice).

mod message;
mod origin;
mod socket;

pub use message::{Action, PciFunction, Uevent};
pub use origin::{Origin, SIM_ROOT_KEY};
pub use socket::{UeventListener, UeventSender, DEFAULT_RECEIVE_BUFFER, MAX_EVENT_SIZE};

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    #[error("malformed uevent: {0}")]
    Malformed(String),
    #[error("not sending uevent {0}")]
    Invalid(String),
    #[error("uevents were lost: the listener's receive buffer overran (ENOBUFS); rescan sysfs")]
    Overrun,
    #[error("sysfs root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("sysfs root {path} is not valid UTF-8, so uevents cannot name it")]
    RootNotUtf8 { path: PathBuf },
    #[error("refusing to send uevents for {path}: it is a real sysfs, whose events only the kernel sends")]
    KernelRoot { path: PathBuf },
    #[error("uevent socket: {op}: {source}")]
    Socket { op: &'static str, source: io::Error },
    #[error("sending uevent {event} to group 1 (needs CAP_NET_ADMIN): {source}")]
    Send { event: String, source: io::Error },
}
