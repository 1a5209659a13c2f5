//! The NETLINK_KOBJECT_UEVENT sockets: a listener on multicast group 1 for
//! one sysfs root, and a simulated node's sender.

use super::message::is_action_word;
use super::origin::{Origin, SIM_ROOT_KEY};
use super::{Uevent, UeventError};
use netlink_sys::{protocols::NETLINK_KOBJECT_UEVENT, Socket, SocketAddr};
use nix::errno::Errno;
use nix::libc::{MSG_PEEK, MSG_TRUNC};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The kernel's uevent multicast group. udevd re-broadcasts processed events
/// on group 2 in its own format; we never join it.
const KERNEL_GROUP: u32 = 1;

/// Room for a burst: a VF create/destroy of 128 VFs is ~4 events per VF
/// (add, bind and the netdev's), each ~1 KiB of socket memory. The kernel
/// doubles what is asked for.
pub const DEFAULT_RECEIVE_BUFFER: usize = 4 << 20;

/// The largest event a sender emits. The kernel's own are at most 2 KiB of
/// variables (UEVENT_BUFFER_SIZE) plus the header; the limit also keeps the
/// copy the kernel receives harmless (see [`UeventSender::send`]).
pub const MAX_EVENT_SIZE: usize = 8192;

/// First read size; larger datagrams are peeked and the buffer grows.
const INITIAL_BUFFER: usize = 4096;

/// Receives the uevents of one sysfs root (see [`Origin`]).
///
/// The socket is non-blocking: [`try_recv`](Self::try_recv) never waits, and
/// the fd ([`AsFd`]) can be registered with `tokio::io::unix::AsyncFd`;
/// [`recv`](Self::recv) and [`recv_timeout`](Self::recv_timeout) wait with
/// `poll`. The fd is the listener's own socket, open and unchanged for the
/// listener's whole life: the promise `AsyncFd::register` asks for.
pub struct UeventListener {
    socket: Socket,
    origin: Origin,
    buffer: Vec<u8>,
}

impl UeventListener {
    /// Joins group 1 in the calling thread's network namespace for the
    /// events of `sysfs_root`. Needs no privilege. Like
    /// [`UeventSender::open`], it resolves the root through whatever is
    /// mounted there.
    pub fn open(sysfs_root: &Path) -> Result<Self, UeventError> {
        Self::for_origin(Origin::for_root(sysfs_root)?)
    }

    /// Like [`open`](Self::open), for an origin decided elsewhere.
    pub fn for_origin(origin: Origin) -> Result<Self, UeventError> {
        let socket_error = |op| move |source| UeventError::Socket { op, source };
        let socket = Socket::new(NETLINK_KOBJECT_UEVENT)
            .map_err(socket_error("opening a NETLINK_KOBJECT_UEVENT socket"))?;
        socket
            .set_non_blocking(true)
            .map_err(socket_error("making the uevent socket non-blocking"))?;
        let mut listener = UeventListener {
            socket,
            origin,
            buffer: vec![0; INITIAL_BUFFER],
        };
        // The buffer first, so no burst arrives into the default one.
        listener.set_receive_buffer(DEFAULT_RECEIVE_BUFFER)?;
        listener
            .socket
            .bind(&SocketAddr::new(0, KERNEL_GROUP))
            .map_err(socket_error("joining uevent multicast group 1"))?;
        Ok(listener)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Sets the socket's receive buffer. With CAP_NET_ADMIN the size is
    /// forced past `net.core.rmem_max` (SO_RCVBUFFORCE); without it the
    /// kernel caps it there. Returns what the kernel granted (it doubles the
    /// request for its bookkeeping).
    pub fn set_receive_buffer(&self, bytes: usize) -> Result<usize, UeventError> {
        if setsockopt(&self.socket, sockopt::RcvBufForce, &bytes).is_err() {
            setsockopt(&self.socket, sockopt::RcvBuf, &bytes).map_err(|e| UeventError::Socket {
                op: "setting the uevent socket's receive buffer",
                source: e.into(),
            })?;
        }
        nix::sys::socket::getsockopt(&self.socket, sockopt::RcvBuf).map_err(|e| {
            UeventError::Socket {
                op: "reading the uevent socket's receive buffer",
                source: e.into(),
            }
        })
    }

    /// Waits for the next event of this listener's root; others' events are
    /// skipped. [`UeventError::Overrun`] means events were lost (the caller
    /// rescans); the listener stays usable after it and after
    /// [`UeventError::Malformed`].
    pub fn recv(&mut self) -> Result<Uevent, UeventError> {
        loop {
            if let Some(event) = self.try_recv()? {
                return Ok(event);
            }
            self.wait_readable(PollTimeout::NONE)?;
        }
    }

    /// Like [`recv`](Self::recv), giving up after `timeout` with `Ok(None)`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Uevent>, UeventError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.try_recv()? {
                return Ok(Some(event));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Round up so a sub-millisecond remainder waits instead of spinning.
            let millis = left.as_micros().div_ceil(1000);
            self.wait_readable(PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX))?;
        }
    }

    /// The next pending event of this root, or `Ok(None)` when nothing for
    /// it is queued. Never blocks: what an `AsyncFd` readiness loop calls
    /// until it returns `None`.
    pub fn try_recv(&mut self) -> Result<Option<Uevent>, UeventError> {
        loop {
            let Some((length, sender)) = self.next_datagram()? else {
                return Ok(None);
            };
            let message = &self.buffer[..length];
            if self.origin.accepts(sender, message) {
                return Uevent::parse(message).map(Some);
            }
        }
    }

    /// Reads one whole datagram into the buffer: its length and the sender's
    /// port, or `None` when the queue is empty.
    fn next_datagram(&mut self) -> Result<Option<(usize, u32)>, UeventError> {
        loop {
            // Peek at the full size first so a large message (a simulator's,
            // or a future kernel's) is never truncated.
            let size = match self
                .socket
                .recv(&mut &mut self.buffer[..0], MSG_PEEK | MSG_TRUNC)
            {
                Ok(size) => size,
                Err(e) => match classify(e)? {
                    Some(()) => continue,
                    None => return Ok(None),
                },
            };
            if size > self.buffer.len() {
                self.buffer.resize(size, 0);
            }
            match self.socket.recv_from(&mut &mut self.buffer[..], 0) {
                Ok((length, sender)) => {
                    return Ok(Some((length.min(self.buffer.len()), sender.port_number())))
                }
                Err(e) => match classify(e)? {
                    Some(()) => continue,
                    None => return Ok(None),
                },
            }
        }
    }

    fn wait_readable(&self, timeout: PollTimeout) -> Result<(), UeventError> {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            // Readable, an error (ENOBUFS shows as POLLERR), or time is up:
            // the caller's next try_recv tells which.
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(UeventError::Socket {
                op: "waiting for uevents",
                source: e.into(),
            }),
        }
    }
}

/// Sorts a receive error: `Ok(Some(()))` retry (interrupted), `Ok(None)`
/// nothing queued, `Err` a real failure.
fn classify(error: io::Error) -> Result<Option<()>, UeventError> {
    match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EINTR) => Ok(Some(())),
        Some(Errno::EAGAIN) => Ok(None),
        // The kernel dropped broadcasts because our receive queue was full;
        // it reports that once, then delivers what it did queue.
        Some(Errno::ENOBUFS) => Err(UeventError::Overrun),
        _ => Err(UeventError::Socket {
            op: "receiving a uevent",
            source: error,
        }),
    }
}

impl AsFd for UeventListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// For `tokio::io::unix::AsyncFd`, which asks for a raw fd.
impl AsRawFd for UeventListener {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Announces a simulated node's device changes on group 1, tagged with its
/// root so only that node's listeners take them. Needs CAP_NET_ADMIN.
pub struct UeventSender {
    socket: Socket,
    root: String,
    next_seqnum: u64,
}

impl UeventSender {
    /// A sender for the simulated node at `sysfs_root` (which must exist).
    /// Refuses a real sysfs mount: only the kernel announces those devices.
    ///
    /// Resolving the root asks whatever is mounted there, so a FUSE-served
    /// node opens its sender before serving, or off the thread that answers
    /// FUSE requests. One sender per node: each numbers its events from 1.
    pub fn open(sysfs_root: &Path) -> Result<Self, UeventError> {
        let root = match Origin::for_root(sysfs_root)? {
            Origin::Simulated(root) => root,
            Origin::Kernel => {
                return Err(UeventError::KernelRoot {
                    path: sysfs_root.to_owned(),
                })
            }
        };
        let mut socket =
            Socket::new(NETLINK_KOBJECT_UEVENT).map_err(|source| UeventError::Socket {
                op: "opening a NETLINK_KOBJECT_UEVENT socket",
                source,
            })?;
        // Any port: listeners for a simulated root go by the root variable,
        // and a non-zero port is what tells every other listener (ours for
        // /sys, udevd) that this is not the kernel.
        socket.bind_auto().map_err(|source| UeventError::Socket {
            op: "binding the uevent sender",
            source,
        })?;
        Ok(UeventSender {
            socket,
            root,
            next_seqnum: 1,
        })
    }

    /// The canonical root every event is tagged with.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Broadcasts `event` on group 1 as the kernel formats it, with this
    /// node's [`SIM_ROOT_KEY`] and a SEQNUM of this sender's own (increasing
    /// by one per event sent) in place of any the event carried. Returns the
    /// SEQNUM.
    ///
    /// The datagram goes to port 0 with group 1: the kernel delivers it to
    /// every group-1 socket of this network namespace, and also hands a copy
    /// to its own uevent socket (port 0), whose input parses it as a netlink
    /// header, finds a length far beyond the datagram (the first four bytes
    /// are the ASCII action and `@`) and drops it without an answer. Sending
    /// to another port would deliver that copy to whoever owns it, or fail
    /// with ECONNREFUSED after the broadcast went out.
    pub fn send(&mut self, event: &Uevent) -> Result<u64, UeventError> {
        check_sendable(event)?;
        let seqnum = self.next_seqnum;
        let mut tagged = event.clone();
        tagged
            .vars
            .retain(|(key, _)| key != SIM_ROOT_KEY && key != "SEQNUM");
        tagged.push(SIM_ROOT_KEY, self.root.as_str());
        tagged.push("SEQNUM", seqnum.to_string());
        let bytes = tagged.encode();
        if bytes.len() > MAX_EVENT_SIZE {
            return Err(UeventError::Invalid(format!(
                "{}@{}: {} bytes encoded, more than {MAX_EVENT_SIZE}",
                event.action,
                event.devpath,
                bytes.len()
            )));
        }
        let destination = SocketAddr::new(0, KERNEL_GROUP);
        loop {
            match self.socket.send_to(&bytes, &destination, 0) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(Errno::EINTR as i32) => continue,
                Err(source) => {
                    return Err(UeventError::Send {
                        event: format!("{}@{}", event.action, event.devpath),
                        source,
                    })
                }
            }
        }
        self.next_seqnum += 1;
        Ok(seqnum)
    }
}

/// What a sender refuses: anything the kernel would not send, and events of
/// the `net` subsystem, which systemd-udevd acts on where it runs (renaming,
/// configuring links) if it ever took one.
fn check_sendable(event: &Uevent) -> Result<(), UeventError> {
    let name = || format!("{}@{}", event.action, event.devpath);
    let invalid = |detail: String| Err(UeventError::Invalid(format!("{}: {detail}", name())));
    if !is_action_word(event.action.as_str()) {
        return invalid("the action is not a lower-case word".into());
    }
    if !event.devpath.starts_with('/') || event.devpath.contains('\0') {
        return invalid("the devpath must start with '/' and hold no NUL".into());
    }
    for (key, value) in &event.vars {
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return invalid(format!(
                "variable {key:?} needs a non-empty key without '=' or NUL and a value without NUL"
            ));
        }
    }
    if event.var("ACTION") != Some(event.action.as_str())
        || event.var("DEVPATH") != Some(event.devpath.as_str())
    {
        return invalid("ACTION and DEVPATH variables must repeat the header".into());
    }
    if event.subsystem() == Some("net") {
        return invalid(
            "net-subsystem events are never announced: systemd-udevd acts on group-1 messages"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uevent::Action;

    fn invalid(event: &Uevent) -> String {
        match check_sendable(event) {
            Err(UeventError::Invalid(detail)) => detail,
            other => panic!("{event:?}: expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_built_event_is_sendable() {
        check_sendable(&Uevent::new(Action::Add, "/devices/x", "pci")).unwrap();
    }

    #[test]
    fn refuses_what_the_kernel_would_not_send() {
        let good = Uevent::new(Action::Add, "/devices/x", "pci");

        let mut event = good.clone();
        event.action = Action::Other("a@b".into());
        assert!(invalid(&event).contains("lower-case word"));

        let mut event = good.clone();
        event.devpath = "devices/x".into();
        assert!(invalid(&event).contains("devpath"));

        let mut event = good.clone();
        event.push("K=EY", "v");
        assert!(invalid(&event).contains("K=EY"));

        let mut event = good.clone();
        event.push("KEY", "v\0w");
        assert!(invalid(&event).contains("KEY"));

        let mut event = good.clone();
        event.devpath = "/devices/y".into();
        assert!(invalid(&event).contains("repeat the header"));
    }

    #[test]
    fn refuses_net_subsystem_events() {
        let event = Uevent::new(Action::Add, "/devices/virtual/net/ens1f0v0", "net");
        assert!(invalid(&event).contains("net-subsystem"));
    }

    #[test]
    fn a_sent_message_cannot_pass_for_a_netlink_header() {
        // The kernel's copy is read as an nlmsghdr whose length is the first
        // four bytes; check_sendable plus MAX_EVENT_SIZE keep that length far
        // beyond any message we send, so the kernel drops the copy.
        for action in ["a", "ab", "add", "unbind"] {
            let event = Uevent::new(Action::from_word(action), "/", "pci");
            check_sendable(&event).unwrap();
            let bytes = event.encode();
            let length = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            assert!(length as usize > MAX_EVENT_SIZE, "{action}: {length}");
        }
    }
}
