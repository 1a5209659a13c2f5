//! One NETLINK_ROUTE socket and the request/response loop on it.

use super::NetlinkError;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::libc::{MSG_PEEK, MSG_TRUNC};

/// A connected rtnetlink socket in the network namespace that was current
/// for the calling thread when it was opened.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

/// Large enough for a full dump datagram of links with VF info lists.
const RECV_BUFFER: usize = 64 * 1024;

impl Netlink {
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Extended acks make the kernel put a reason in some errors; harmless if refused.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            sequence: 0,
            buffer: vec![0; RECV_BUFFER],
        })
    }

    /// Send a request that the kernel acknowledges (NEW/SET/DEL).
    pub(crate) fn execute(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<(), NetlinkError> {
        self.exchange(op, message, NLM_F_REQUEST | NLM_F_ACK | extra_flags)
            .map(drop)
    }

    /// Send a GET for one object and return the kernel's answer.
    pub(crate) fn get(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(op, message, NLM_F_REQUEST)
    }

    /// Send a dump request and collect every object of the multipart answer.
    pub(crate) fn dump(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(op, message, NLM_F_REQUEST | NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        op: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let bytes = request_bytes(message, flags, sequence);
        self.socket
            .send(&bytes, 0)
            .map_err(|source| NetlinkError::Kernel {
                op: op.to_owned(),
                source,
            })?;

        let multipart = flags & NLM_F_DUMP == NLM_F_DUMP;
        let wants_ack = flags & NLM_F_ACK != 0;
        let mut answers = Vec::new();
        loop {
            // A PF's VF table (~200 bytes per VF) can exceed any fixed
            // buffer: peek at the datagram's size and grow to fit, rather
            // than let the kernel truncate it.
            let size = self
                .socket
                .recv(&mut &mut self.buffer[..0], MSG_PEEK | MSG_TRUNC)
                .map_err(|source| NetlinkError::Kernel {
                    op: op.to_owned(),
                    source,
                })?;
            if size > self.buffer.len() {
                self.buffer.resize(size, 0);
            }
            let received = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(|source| NetlinkError::Kernel {
                    op: op.to_owned(),
                    source,
                })?;
            let mut offset = 0;
            while offset < received {
                let chunk = &self.buffer[offset..received];
                let length = NetlinkBuffer::new_checked(chunk)
                    .map_err(|e| decode_error(op, e))?
                    .length() as usize;
                if length == 0 || length > chunk.len() {
                    return Err(NetlinkError::Decode {
                        op: op.to_owned(),
                        detail: format!("bad message length {length}"),
                    });
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&chunk[..length])
                    .map_err(|e| decode_error(op, e))?;
                // netlink messages are 4-byte aligned inside a datagram
                offset += (length + 3) & !3;
                if parsed.header.sequence_number != sequence {
                    continue; // a late answer to an earlier request
                }
                match parsed.payload {
                    NetlinkPayload::Error(error) => {
                        if error.code.is_some() {
                            return Err(NetlinkError::Kernel {
                                op: op.to_owned(),
                                source: error.to_io(),
                            });
                        }
                        return Ok(answers); // the ACK: always the last message
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if !multipart && !wants_ack {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The bytes of one request as they go to the kernel: nlmsghdr, then the
/// rtnetlink message.
pub(crate) fn request_bytes(message: RouteNetlinkMessage, flags: u16, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    bytes
}

fn decode_error(op: &str, error: impl std::fmt::Display) -> NetlinkError {
    NetlinkError::Decode {
        op: op.to_owned(),
        detail: error.to_string(),
    }
}
