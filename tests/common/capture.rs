//! Frames seen in a network namespace, through an AF_PACKET socket opened
//! there (unbound: it hears every interface of that namespace). Used on
//! the simulated node's wire side to see what a VF put on the wire.

use nix::sys::socket::{
    recvfrom, setsockopt, socket, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::time::TimeVal;
use sriov_rs::netns;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The kernel's PACKET_OUTGOING: a frame this namespace sent, not received.
const PACKET_OUTGOING: u8 = 4;

pub struct Capture {
    socket: OwnedFd,
}

pub struct Frame {
    /// Interface it was seen on, in the capturing namespace.
    pub ifindex: usize,
    pub outgoing: bool,
    pub bytes: Vec<u8>,
}

impl Capture {
    /// Start listening in the namespace at `netns_path`; frames queue in
    /// the socket from now on.
    pub fn start(netns_path: &Path) -> Capture {
        let socket = netns::run_in(netns_path, || {
            socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )
        })
        .unwrap()
        .expect("AF_PACKET socket (needs root)");
        // short reads, so `find` can check its deadline between frames
        setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000)).unwrap();
        Capture { socket }
    }

    /// The first frame, from now until `within` has passed, that `matches`.
    pub fn find(&self, within: Duration, matches: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + within;
        let mut buffer = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok((len, address)) = recvfrom::<LinkAddr>(self.socket.as_raw_fd(), &mut buffer)
            else {
                continue; // timeout (EAGAIN) or EINTR: look at the clock again
            };
            let Some(address) = address else { continue };
            let frame = Frame {
                ifindex: address.ifindex(),
                outgoing: address.pkttype() == PACKET_OUTGOING,
                bytes: buffer[..len].to_vec(),
            };
            if matches(&frame) {
                return Some(frame);
            }
        }
        None
    }
}
