//! WebSocket (RFC 6455), sans-IO, for a server that only sends: the opening handshake check
//! and `Sec-WebSocket-Accept` (§4.2), server frame headers (§5.2), and a reader of client
//! frames that keeps only what a sending server must answer (ping, close).
//!
//! Owns: byte-level framing. Must not: do I/O, allocate (the reader holds one control payload
//! of at most 125 bytes), or panic on input: a hostile client gets [`WsError`] and the shell
//! closes the connection.
//!
//! Why our own and not `tungstenite`: the media path writes a frame header and then the
//! fragment straight from the store's arena, with no message object per frame; tungstenite's
//! `Message` owns its payload (a copy per frame per viewer). What we need of the protocol is
//! ~200 lines: SHA-1 comes from the `sha1` crate (RustCrypto, sharing `digest` with `sha2`).

use sha1::{Digest, Sha1};

/// §1.3: appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Opcodes (§5.2).
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;
/// Longest server frame header: 2 bytes + a 64-bit length.
pub const MAX_HEADER_BYTES: usize = 10;
/// Control frames carry at most this much (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Why an upgrade request is refused, with the HTTP status to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a WebSocket upgrade at all (no `Upgrade: websocket`): answer as plain HTTP.
    NotUpgrade,
    /// An upgrade with a missing or malformed key or a non-GET method (400).
    Malformed,
    /// `Sec-WebSocket-Version` is not 13 (426 with `Sec-WebSocket-Version: 13`, §4.4).
    Version,
}

impl HandshakeError {
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::NotUpgrade | HandshakeError::Malformed => 400,
            HandshakeError::Version => 426,
        }
    }
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Checks a client's opening handshake (§4.2.1) given its method and a header lookup; returns
/// the `Sec-WebSocket-Accept` value to send with 101.
pub fn check_upgrade<'h>(
    method: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<heapless::String<28>, HandshakeError> {
    if !has_token(header("upgrade"), "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    if method != "GET" || !has_token(header("connection"), "upgrade") {
        return Err(HandshakeError::Malformed);
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(HandshakeError::Version);
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .ok_or(HandshakeError::Malformed)?;
    // A base64-encoded 16-byte nonce is 24 characters ending in "==".
    if key.len() != 24
        || !key.ends_with("==")
        || !key.as_bytes()[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    {
        return Err(HandshakeError::Malformed);
    }
    Ok(accept_key(key))
}

/// `base64(SHA-1(key + GUID))` (§4.2.2 step 5.4).
pub fn accept_key(key: &str) -> heapless::String<28> {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID);
    let digest: [u8; 20] = h.finalize().into();
    base64_20(&digest)
}

/// Standard base64 (RFC 4648 §4) of 20 bytes: 28 characters with one `=`.
fn base64_20(b: &[u8; 20]) -> heapless::String<28> {
    let mut s = heapless::String::new();
    base64_each(b, |c| {
        let _ = s.push(c);
    });
    s
}

/// Appends standard base64 (RFC 4648 §4, padded) of `b` to `out`.
pub fn base64_encode(b: &[u8], out: &mut String) {
    base64_each(b, |c| out.push(c));
}

fn base64_each(b: &[u8], mut push: impl FnMut(char)) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in b.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
        for (k, d) in [n >> 18, n >> 12, n >> 6, n].into_iter().enumerate() {
            // A chunk of k bytes gives k + 1 digits; the rest is padding.
            push(if k <= c.len() {
                ALPHABET[(d & 63) as usize] as char
            } else {
                '='
            });
        }
    }
}

/// Writes an unmasked, final server frame header for `len` payload bytes; returns its length.
pub fn frame_header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER_BYTES]) -> usize {
    out[0] = 0x80 | (opcode & 0x0f);
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= 0xffff {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Why a client's frames ended the connection; [`WsError::close_code`] is the status to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsError {
    /// Unmasked client frame, reserved bits, an unknown opcode, a fragmented or oversized
    /// control frame (1002).
    Protocol,
    /// A data frame larger than the reader's cap (1009): this server reads no messages.
    TooBig,
}

impl WsError {
    pub fn close_code(self) -> u16 {
        match self {
            WsError::Protocol => 1002,
            WsError::TooBig => 1009,
        }
    }
}

/// What the client said that the server must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// Answer with a pong carrying the same payload (§5.5.2).
    Ping(heapless::Vec<u8, MAX_CONTROL_PAYLOAD>),
    /// The client closes (§5.5.1): echo the status code, then close the TCP connection.
    Close(Option<u16>),
}

#[derive(Clone, Copy, Debug)]
enum ReadState {
    Header,
    Payload {
        opcode: u8,
        remaining: u64,
        mask: [u8; 4],
        offset: usize,
    },
}

/// Incremental reader of client frames. Data frames (which this server ignores) are skipped
/// as they stream by; a frame declaring more than `max_data_frame_bytes` is an error.
pub struct ClientFrameReader {
    state: ReadState,
    header: [u8; 14],
    header_len: usize,
    control: heapless::Vec<u8, MAX_CONTROL_PAYLOAD>,
    max_data_frame_bytes: u64,
}

impl ClientFrameReader {
    pub fn new(max_data_frame_bytes: u64) -> Self {
        ClientFrameReader {
            state: ReadState::Header,
            header: [0; 14],
            header_len: 0,
            control: heapless::Vec::new(),
            max_data_frame_bytes,
        }
    }

    /// Consumes bytes from `input`; returns how many were used and, when a control frame
    /// completed, the event (call again with the rest).
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<ClientEvent>), WsError> {
        let mut used = 0;
        while used < input.len() {
            match self.state {
                ReadState::Header => {
                    self.header[self.header_len] = input[used];
                    self.header_len += 1;
                    used += 1;
                    if let Some(ev) = self.try_header()? {
                        return Ok((used, Some(ev)));
                    }
                }
                ReadState::Payload {
                    opcode,
                    remaining,
                    mask,
                    offset,
                } => {
                    let take = (input.len() - used).min(remaining.min(usize::MAX as u64) as usize);
                    if opcode >= OP_CLOSE {
                        for (i, &b) in input[used..used + take].iter().enumerate() {
                            let _ = self.control.push(b ^ mask[(offset + i) % 4]);
                        }
                    }
                    used += take;
                    let remaining = remaining - take as u64;
                    self.state = ReadState::Payload {
                        opcode,
                        remaining,
                        mask,
                        offset: offset + take,
                    };
                    if remaining == 0 {
                        self.state = ReadState::Header;
                        if let Some(ev) = self.finish(opcode) {
                            return Ok((used, Some(ev)));
                        }
                    }
                }
            }
        }
        Ok((used, None))
    }

    /// A whole header collected? Then move to its payload (or finish an empty frame).
    fn try_header(&mut self) -> Result<Option<ClientEvent>, WsError> {
        let h = &self.header[..self.header_len];
        if h.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (h[0], h[1]);
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            return Err(WsError::Protocol); // reserved bits, or an unmasked client frame
        }
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        if h.len() < 2 + ext + 4 {
            return Ok(None);
        }
        let len = match ext {
            0 => u64::from(b1 & 0x7f),
            2 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            _ => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                u64::from_be_bytes(b)
            }
        };
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&h[2 + ext..2 + ext + 4]);
        self.header_len = 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                if len > self.max_data_frame_bytes {
                    return Err(WsError::TooBig);
                }
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(WsError::Protocol);
                }
            }
            _ => return Err(WsError::Protocol),
        }
        self.control.clear();
        if len == 0 {
            return Ok(self.finish(opcode));
        }
        self.state = ReadState::Payload {
            opcode,
            remaining: len,
            mask,
            offset: 0,
        };
        Ok(None)
    }

    fn finish(&mut self, opcode: u8) -> Option<ClientEvent> {
        match opcode {
            OP_PING => Some(ClientEvent::Ping(self.control.clone())),
            OP_CLOSE => {
                let code = match self.control.as_slice() {
                    [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
                    _ => None,
                };
                Some(ClientEvent::Close(code))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        // §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ==").as_str(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("fooba", "Zm9vYmE="),
        ] {
            let mut s = String::new();
            base64_encode(i.as_bytes(), &mut s);
            assert_eq!(s, o);
        }
    }

    #[test]
    fn handshake_checks() {
        let ok = |name: &str| -> Option<&'static str> {
            match name {
                "upgrade" => Some("websocket"),
                "connection" => Some("keep-alive, Upgrade"),
                "sec-websocket-version" => Some("13"),
                "sec-websocket-key" => Some("dGhlIHNhbXBsZSBub25jZQ=="),
                _ => None,
            }
        };
        assert_eq!(
            check_upgrade("GET", ok).unwrap().as_str(),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(check_upgrade("POST", ok), Err(HandshakeError::Malformed));
        assert_eq!(
            check_upgrade("GET", |_| None),
            Err(HandshakeError::NotUpgrade)
        );
        let v8 = |n: &str| match n {
            "sec-websocket-version" => Some("8"),
            other => ok(other),
        };
        assert_eq!(check_upgrade("GET", v8), Err(HandshakeError::Version));
        assert_eq!(HandshakeError::Version.status(), 426);
        let bad_key = |n: &str| match n {
            "sec-websocket-key" => Some("short"),
            other => ok(other),
        };
        assert_eq!(
            check_upgrade("GET", bad_key),
            Err(HandshakeError::Malformed)
        );
    }

    #[test]
    fn server_frame_headers() {
        let mut h = [0u8; MAX_HEADER_BYTES];
        assert_eq!(frame_header(OP_BINARY, 5, &mut h), 2);
        assert_eq!(&h[..2], &[0x82, 5]);
        assert_eq!(frame_header(OP_BINARY, 126, &mut h), 4);
        assert_eq!(&h[..4], &[0x82, 126, 0, 126]);
        assert_eq!(frame_header(OP_BINARY, 70_000, &mut h), 10);
        assert_eq!(&h[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(frame_header(OP_CLOSE, 2, &mut h), 2);
        assert_eq!(&h[..2], &[0x88, 2]);
    }

    #[test]
    fn reads_masked_ping_and_close_byte_by_byte() {
        // §5.7: a masked "Hello" ping, then a masked close 1000, with a data frame between.
        let ping = [
            0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let text = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];
        let all: Vec<u8> = [&ping[..], &text, &close].concat();
        let mut r = ClientFrameReader::new(1024);
        let mut events = Vec::new();
        for b in &all {
            let (n, ev) = r.push(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            events.extend(ev);
        }
        assert_eq!(
            events,
            vec![
                ClientEvent::Ping(heapless::Vec::from_slice(b"Hello").unwrap()),
                ClientEvent::Close(Some(1000)),
            ]
        );
        // All at once: the reader stops after each event.
        let mut r = ClientFrameReader::new(1024);
        let (n, ev) = r.push(&all).unwrap();
        assert_eq!(n, ping.len());
        assert!(matches!(ev, Some(ClientEvent::Ping(_))));
        let (m, ev) = r.push(&all[n..]).unwrap();
        assert_eq!(m, all.len() - n);
        assert_eq!(ev, Some(ClientEvent::Close(Some(1000))));
    }

    #[test]
    fn hostile_frames_are_errors() {
        let mut r = ClientFrameReader::new(16);
        assert_eq!(r.push(&[0x82, 0x05]), Err(WsError::Protocol), "unmasked");
        let mut r = ClientFrameReader::new(16);
        assert_eq!(
            r.push(&[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0]),
            Err(WsError::TooBig)
        );
        let mut r = ClientFrameReader::new(16);
        assert_eq!(
            r.push(&[0x09, 0x80, 0, 0, 0, 0]),
            Err(WsError::Protocol),
            "fragmented ping"
        );
        let mut r = ClientFrameReader::new(16);
        assert_eq!(r.push(&[0x83, 0x80, 0, 0, 0, 0]), Err(WsError::Protocol));
        // Noise never panics.
        let mut x: u32 = 99;
        for _ in 0..500 {
            let mut r = ClientFrameReader::new(64);
            for _ in 0..64 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let b = [(x >> 24) as u8 | 0x80, (x >> 16) as u8 | 0x80];
                if r.push(&b).is_err() {
                    break;
                }
            }
        }
    }
}
