//! Serving gRPC clients that send the Unix socket path as `:authority`.
//!
//! Kubelets before 1.26 (grpc-go of that time), Python's grpc and older
//! grpcurl put the socket path (`/var/lib/kubelet/device-plugins/x.sock`) in
//! the HTTP/2 `:authority` pseudo-header. h2, under tonic, checks that value
//! as a URI authority and resets every such stream with `PROTOCOL_ERROR`,
//! with no setting to relax it (hyperium/h2 PR #487 and hyperium/tonic #243
//! are still open). The Go plugin serves these clients.
//!
//! So, on our Unix sockets only, each accepted connection is put behind a
//! small relay that reads the client's frames before h2 does: every header
//! block (HEADERS plus its CONTINUATIONs) is decoded with an HPACK decoder
//! that mirrors the client's encoder, an `:authority` that is not a valid
//! authority becomes `localhost` (what grpc-go sends for Unix targets today),
//! and the block is re-encoded as plain literals that never touch h2's
//! dynamic table, so both HPACK contexts stay consistent. All other frames,
//! and everything the server sends back, pass through byte for byte.
//!
//! A connection that does not start with the HTTP/2 preface is passed
//! through untouched; one whose header blocks cannot be decoded is closed,
//! as h2 would have done with a `COMPRESSION_ERROR`.

use std::borrow::Cow;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tonic::codegen::http::uri::Authority;

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Bytes of the stream dependency and weight a PRIORITY flag adds.
const PRIORITY_LEN: usize = 5;

/// Largest frame payload we send: the protocol's minimum for
/// SETTINGS_MAX_FRAME_SIZE, so the server always accepts it.
const MAX_OUT_FRAME: usize = 16_384;

/// Largest header block (all its fragments) we accept from a client.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The dynamic table size the client may use: h2 advertises no other, so
/// the protocol default holds.
const HPACK_TABLE_SIZE: usize = 4096;

/// What a rewritten invalid `:authority` becomes.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// Size of the in-process pipe between the relay and the gRPC server.
const PIPE_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("undecodable header block: {0}")]
    Hpack(String),
    #[error("http/2 protocol error: {0}")]
    Protocol(&'static str),
}

/// Puts an accepted client connection behind the relay and returns the end
/// the gRPC server reads from. The relay task ends with the connection.
pub fn relay(client: UnixStream) -> DuplexStream {
    let (server_side, relay_side) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        if let Err(error) = run(client, relay_side).await {
            tracing::debug!(%error, "grpc connection relay ended");
        }
    });
    server_side
}

async fn run(client: UnixStream, server: DuplexStream) -> Result<(), RelayError> {
    let (client_read, mut client_write) = client.into_split();
    let (server_read, server_write) = tokio::io::split(server);
    let requests = forward_requests(client_read, server_write);
    let responses = async move {
        let mut server_read = server_read;
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    tokio::pin!(requests, responses);
    tokio::select! {
        // The server is done with the connection: nothing more to relay.
        result = &mut responses => Ok(result?),
        // The client stopped sending (or broke the protocol): let the
        // server finish its answers, which end once it sees the close.
        result = &mut requests => {
            let sent = responses.await;
            result?;
            Ok(sent?)
        }
    }
}

/// Copies the client's side of the connection to `server`, rewriting
/// invalid `:authority` values in header blocks. Returns at the client's
/// end of stream, after shutting down `server`'s write side.
pub async fn forward_requests<R, W>(mut client: R, mut server: W) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    let got = read_up_to(&mut client, &mut preface).await?;
    server.write_all(&preface[..got]).await?;
    if got < preface.len() || &preface != PREFACE {
        // not HTTP/2 with prior knowledge: not ours to fix
        tokio::io::copy(&mut client, &mut server).await?;
        server.shutdown().await?;
        return Ok(());
    }
    let mut rewriter = Rewriter::new();
    let mut pending: Option<PendingBlock> = None;
    loop {
        let mut header = [0u8; FRAME_HEADER_LEN];
        let got = read_up_to(&mut client, &mut header).await?;
        if got == 0 {
            break;
        }
        if got < header.len() {
            return Err(RelayError::Protocol(
                "connection closed inside a frame header",
            ));
        }
        let frame = FrameHeader::parse(&header);
        let mut payload = vec![0u8; frame.length];
        client.read_exact(&mut payload).await?;
        match (&mut pending, frame.kind) {
            (None, TYPE_HEADERS) => {
                let block = PendingBlock::start(&frame, &payload)?;
                if frame.flags & FLAG_END_HEADERS != 0 {
                    server.write_all(&rewriter.rewrite(&block)?).await?;
                } else {
                    pending = Some(block);
                }
            }
            (Some(block), TYPE_CONTINUATION) if frame.stream == block.stream => {
                if block.fragment.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(RelayError::Protocol("header block too large"));
                }
                block.fragment.extend_from_slice(&payload);
                if frame.flags & FLAG_END_HEADERS != 0 {
                    if let Some(block) = pending.take() {
                        server.write_all(&rewriter.rewrite(&block)?).await?;
                    }
                }
            }
            (Some(_), _) => {
                return Err(RelayError::Protocol(
                    "frame other than CONTINUATION inside a header block",
                ))
            }
            (None, _) => {
                server.write_all(&header).await?;
                server.write_all(&payload).await?;
            }
        }
    }
    server.shutdown().await?;
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
async fn read_up_to<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

struct FrameHeader {
    length: usize,
    kind: u8,
    flags: u8,
    /// Stream identifier, reserved bit cleared.
    stream: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            length: usize::from(bytes[0]) << 16
                | usize::from(bytes[1]) << 8
                | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }
}

/// A header block being collected from HEADERS and CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

impl PendingBlock {
    /// Takes the block fragment out of a HEADERS payload, dropping padding.
    fn start(frame: &FrameHeader, payload: &[u8]) -> Result<PendingBlock, RelayError> {
        let mut body = payload;
        let mut pad = 0usize;
        if frame.flags & FLAG_PADDED != 0 {
            let (&len, rest) = body
                .split_first()
                .ok_or(RelayError::Protocol("PADDED HEADERS without a pad length"))?;
            pad = usize::from(len);
            body = rest;
        }
        let mut priority = None;
        if frame.flags & FLAG_PRIORITY != 0 {
            let (fields, rest) = body
                .split_at_checked(PRIORITY_LEN)
                .ok_or(RelayError::Protocol("HEADERS too short for its priority"))?;
            let mut bytes = [0u8; PRIORITY_LEN];
            bytes.copy_from_slice(fields);
            priority = Some(bytes);
            body = rest;
        }
        let end = body.len().checked_sub(pad).ok_or(RelayError::Protocol(
            "HEADERS padding longer than the frame",
        ))?;
        Ok(PendingBlock {
            stream: frame.stream,
            end_stream: frame.flags & FLAG_END_STREAM != 0,
            priority,
            fragment: body[..end].to_vec(),
        })
    }
}

/// The client-to-server HPACK context, and the re-encoding.
struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    /// Logged once per connection.
    rewrote: bool,
}

impl Rewriter {
    fn new() -> Rewriter {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_SIZE);
        Rewriter {
            decoder,
            rewrote: false,
        }
    }

    /// Decodes `block`, fixes its `:authority`, and returns the frames to
    /// send in its place.
    fn rewrite(&mut self, block: &PendingBlock) -> Result<Vec<u8>, RelayError> {
        let mut encoded = Vec::with_capacity(block.fragment.len() + 16);
        let mut rewrote = false;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                let value = if name.as_ref() == b":authority" && !is_valid_authority(&value) {
                    rewrote = true;
                    Cow::Borrowed(REPLACEMENT_AUTHORITY)
                } else {
                    value
                };
                encode_literal(&mut encoded, &name, &value);
            })
            .map_err(|error| RelayError::Hpack(format!("{error:?}")))?;
        if rewrote && !self.rewrote {
            self.rewrote = true;
            tracing::debug!(
                stream = block.stream,
                "client sent an invalid :authority (a socket path?): serving it as localhost"
            );
        }
        Ok(frame_block(block, &encoded))
    }
}

fn is_valid_authority(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

/// One header as a "literal header field never indexed" with a literal
/// name (RFC 7541 §6.2.3), without Huffman coding: it leaves the server's
/// dynamic table alone and keeps any sensitivity the client asked for.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x10);
    encode_string(out, name);
    encode_string(out, value);
}

fn encode_string(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

/// HPACK integer with an N-bit prefix (RFC 7541 §5.1); `flags` fills the
/// bits of the first octet above the prefix.
fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u8, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A header block as HEADERS plus as many CONTINUATIONs as it needs, each
/// within [`MAX_OUT_FRAME`].
fn frame_block(block: &PendingBlock, encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + 2 * FRAME_HEADER_LEN + PRIORITY_LEN);
    let first_room = MAX_OUT_FRAME - block.priority.map_or(0, |_| PRIORITY_LEN);
    let first_len = encoded.len().min(first_room);
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = 0u8;
    if block.end_stream {
        flags |= FLAG_END_STREAM;
    }
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    let priority = block.priority.as_ref().map_or(&[][..], |p| &p[..]);
    push_frame_header(
        &mut out,
        priority.len() + first.len(),
        TYPE_HEADERS,
        flags,
        block.stream,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
        let flags = if tail.is_empty() { FLAG_END_HEADERS } else { 0 };
        push_frame_header(
            &mut out,
            chunk.len(),
            TYPE_CONTINUATION,
            flags,
            block.stream,
        );
        out.extend_from_slice(chunk);
        rest = tail;
    }
    out
}

fn push_frame_header(out: &mut Vec<u8>, length: usize, kind: u8, flags: u8, stream: u32) {
    // length fits: every payload we build is at most MAX_OUT_FRAME
    out.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame_header(&mut out, payload.len(), TYPE_HEADERS, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// Runs `input` through the relay and returns what the server would read.
    async fn relayed(input: Vec<u8>) -> Result<Vec<u8>, RelayError> {
        let mut out = Vec::new();
        forward_requests(&input[..], &mut out).await?;
        Ok(out)
    }

    /// Splits the relay's output into frames (after the preface) and decodes
    /// every header block with a fresh decoder, as the server would.
    /// One decoded header block: (name, value) pairs in order.
    type Block = Vec<(Vec<u8>, Vec<u8>)>;

    fn server_view(bytes: &[u8]) -> Result<Vec<Block>, String> {
        let mut rest = bytes.strip_prefix(&PREFACE[..]).ok_or("no preface")?;
        let mut decoder = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let header: [u8; FRAME_HEADER_LEN] = rest
                .get(..FRAME_HEADER_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or("short frame header")?;
            let frame = FrameHeader::parse(&header);
            let payload = rest
                .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + frame.length)
                .ok_or("short payload")?;
            rest = &rest[FRAME_HEADER_LEN + frame.length..];
            if frame.length > MAX_OUT_FRAME {
                return Err("frame over 16 KiB".into());
            }
            match frame.kind {
                TYPE_HEADERS => {
                    let skip = if frame.flags & FLAG_PRIORITY != 0 {
                        PRIORITY_LEN
                    } else {
                        0
                    };
                    block.extend_from_slice(&payload[skip..]);
                }
                TYPE_CONTINUATION => block.extend_from_slice(payload),
                _ => continue,
            }
            if frame.flags & FLAG_END_HEADERS != 0 {
                blocks.push(decoder.decode(&block).map_err(|e| format!("{e:?}"))?);
                block.clear();
            }
        }
        Ok(blocks)
    }

    fn authority_of(block: &[(Vec<u8>, Vec<u8>)]) -> Option<&[u8]> {
        block
            .iter()
            .find(|(n, _)| n == b":authority")
            .map(|(_, v)| v.as_slice())
    }

    fn request(authority: &str) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (
                b":path",
                b"/v1beta1.DevicePlugin/GetDevicePluginOptions".to_vec(),
            ),
            (b":authority", authority.as_bytes().to_vec()),
            (b"te", b"trailers".to_vec()),
        ]
    }

    #[tokio::test]
    async fn socket_path_authority_becomes_localhost_even_through_the_dynamic_table(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // grpc-go and grpc C-core index the authority (literal with
        // incremental indexing, name from static entry 1); the second request
        // then refers to it by dynamic index 62: the relay must follow.
        let path = "/var/lib/kubelet/device-plugins/sriov_netdevice.sock";
        let mut input = PREFACE.to_vec();
        for (stream, authority) in [(1u32, None), (3, Some(0x80 | 62))] {
            let mut block = Vec::new();
            match authority {
                None => {
                    block.push(0x41);
                    encode_string(&mut block, path.as_bytes());
                }
                Some(indexed) => block.push(indexed),
            }
            for (name, value) in request("").iter().filter(|(n, _)| *n != b":authority") {
                encode_literal(&mut block, name, value);
            }
            input.extend(headers_frame(stream, FLAG_END_HEADERS, &block));
        }
        // a DATA frame passes through as it came
        let data = [0, 0, 5, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0];
        input.extend_from_slice(&data);
        let out = relayed(input).await?;
        assert!(out.ends_with(&data));
        let blocks = server_view(&out)?;
        assert_eq!(blocks.len(), 2);
        for block in &blocks {
            assert_eq!(authority_of(block), Some(&b"localhost"[..]));
            assert!(block
                .iter()
                .any(|(n, v)| n == b":path" && v.ends_with(b"GetDevicePluginOptions")));
        }
        Ok(())
    }

    #[tokio::test]
    async fn valid_authority_and_other_headers_are_kept() -> Result<(), Box<dyn std::error::Error>>
    {
        let mut encoder = loona_hpack::Encoder::new();
        let headers = request("localhost:1234");
        let block = encoder.encode(headers.iter().map(|(n, v)| (*n, v.as_slice())));
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, FLAG_END_HEADERS | FLAG_END_STREAM, &block));
        let blocks = server_view(&relayed(input).await?)?;
        let want: Vec<(Vec<u8>, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_vec(), v.clone()))
            .collect();
        assert_eq!(blocks, vec![want]);
        Ok(())
    }

    #[tokio::test]
    async fn padded_prioritised_block_split_over_continuations_is_reassembled(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut encoder = loona_hpack::Encoder::new();
        let mut headers = request("");
        // a header large enough that the rewritten block needs CONTINUATIONs
        headers.push((b"x-big", vec![b'a'; 40_000]));
        let block = encoder.encode(headers.iter().map(|(n, v)| (*n, v.as_slice())));
        let (head, tail) = block.split_at(10);
        let mut payload = vec![3u8]; // pad length
        payload.extend_from_slice(&[0, 0, 0, 0, 15]); // priority
        payload.extend_from_slice(head);
        payload.extend_from_slice(&[0, 0, 0]); // padding
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(5, FLAG_PADDED | FLAG_PRIORITY, &payload));
        let mut cont = Vec::new();
        push_frame_header(
            &mut cont,
            tail.len(),
            TYPE_CONTINUATION,
            FLAG_END_HEADERS,
            5,
        );
        cont.extend_from_slice(tail);
        input.extend(cont);
        let out = relayed(input).await?;
        let blocks = server_view(&out)?;
        assert_eq!(blocks.len(), 1);
        assert_eq!(authority_of(&blocks[0]), Some(&b"localhost"[..]));
        assert!(blocks[0]
            .iter()
            .any(|(n, v)| n == b"x-big" && v.len() == 40_000));
        Ok(())
    }

    #[tokio::test]
    async fn not_http2_passes_through() -> Result<(), Box<dyn std::error::Error>> {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(relayed(input.clone()).await?, input);
        Ok(())
    }

    #[tokio::test]
    async fn undecodable_block_closes_the_connection() {
        let mut input = PREFACE.to_vec();
        // indexed field 70: not in the static table, dynamic table empty
        input.extend(headers_frame(1, FLAG_END_HEADERS, &[0x80 | 70]));
        assert!(matches!(relayed(input).await, Err(RelayError::Hpack(_))));
    }

    /// The release build aborts on panic, and the relay decodes what any
    /// local client sends: arbitrary header blocks (and arbitrary block
    /// sequences, which grow the dynamic table) must end in Ok or Err.
    #[test]
    fn arbitrary_header_blocks_never_panic() {
        // xorshift64*: deterministic, no extra dependency
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut decoded = 0;
        for _ in 0..200 {
            let mut rewriter = Rewriter::new();
            for _ in 0..50 {
                let len = (next() % 64) as usize;
                let mut fragment: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // now and then a well-formed start, so decoding gets deeper
                if next() % 4 == 0 {
                    fragment.insert(0, 0x41);
                }
                let block = PendingBlock {
                    stream: 1,
                    end_stream: false,
                    priority: None,
                    fragment,
                };
                if rewriter.rewrite(&block).is_ok() {
                    decoded += 1;
                }
            }
        }
        assert!(
            decoded > 0,
            "no random block decoded: the test tests nothing"
        );
    }

    #[test]
    fn integers_use_the_continuation_octets() {
        let mut out = Vec::new();
        encode_integer(&mut out, 0, 5, 1337);
        // RFC 7541 C.1.2
        assert_eq!(out, [0x1f, 0x9a, 0x0a]);
    }
}
