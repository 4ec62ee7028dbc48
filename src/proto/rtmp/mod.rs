//! RTMP publish client core (Adobe RTMP specification 1.0, 2012; AMF0; FLV 10.1 tag bodies).
//!
//! Owns: the publish-side protocol state machine ([`RtmpPublisher`]), the simple handshake,
//! the chunk stream writer/reader, AMF0, the FLV tag bodies for H.264/AAC, and the byte-capped
//! outgoing media queue. Everything the origin sends is untrusted and bounded here.
//!
//! Must not: open sockets, read the clock, resolve names, do TLS or generate random numbers.
//! The shell (async, later) owns those and drives the core in the quinn-proto style:
//!
//! ```text
//! let mut p = RtmpPublisher::new(url, key, now_ms, random_c1)?;   // C0+C1 already queued
//! loop {
//!     while let n @ 1.. = p.poll_transmit(&mut buf) { socket.write_all(&buf[..n]) }
//!     on readable: p.handle_input(&bytes, now_ms)?  /  on EOF: p.handle_eof(now_ms)
//!     on p.poll_timeout() deadline: p.handle_timeout(now_ms)
//!     on a ring frame: p.send_video(meta, frame, &params) / p.send_audio(meta, frame, &params)
//! }
//! ```
//!
//! After every `handle_*`/`send_*` call, drain [`RtmpPublisher::poll_transmit`] until it returns 0.

pub mod amf0;
pub mod chunk;
pub mod flv;
pub mod handshake;
pub mod publisher;
pub mod queue;
pub mod url;

#[cfg(test)]
mod hostile_tests;

pub use publisher::{RtmpConfig, RtmpPublisher, RtmpState, RtmpStats, StreamInfo, VideoInfo};
pub use url::RtmpUrl;

use core::fmt;

/// Why an origin refused us (the `code` of an AMF0 info object, RTMP spec 7.2.1 / 7.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// `NetConnection.Connect.Rejected` (wrong app, auth) in `_error` or `onStatus`.
    ConnectRejected,
    /// `NetStream.Publish.BadName`: stream key refused or already in use.
    BadName,
    /// Any other `_error` reply to one of our commands.
    CommandError,
    /// Any other `onStatus` with `level = "error"`.
    StatusError,
}

/// A bounded, `Copy` copy of the origin's human-readable `description` (truncated on a UTF-8
/// boundary to [`OriginText::CAPACITY`] bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OriginText {
    buf: [u8; OriginText::CAPACITY],
    len_bytes: u8,
}

impl OriginText {
    pub const CAPACITY: usize = 96;

    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(Self::CAPACITY);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = [0u8; Self::CAPACITY];
        buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        // `end <= CAPACITY = 96`, fits in u8.
        OriginText {
            buf,
            len_bytes: end as u8,
        }
    }

    /// Concatenates `parts`, truncated like [`OriginText::new`].
    pub fn join(parts: &[&str]) -> Self {
        let mut buf = [0u8; Self::CAPACITY];
        let mut len = 0usize;
        for p in parts {
            let mut end = p.len().min(Self::CAPACITY - len);
            while !p.is_char_boundary(end) {
                end -= 1;
            }
            buf[len..len + end].copy_from_slice(&p.as_bytes()[..end]);
            len += end;
        }
        // `len <= CAPACITY = 96`, fits in u8.
        OriginText {
            buf,
            len_bytes: len as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Built only from a `&str` cut on a char boundary.
        core::str::from_utf8(&self.buf[..self.len_bytes as usize]).unwrap_or("")
    }
}

impl fmt::Debug for OriginText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for OriginText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the RTMP core. Small and `Copy`; the shell adds peer/stream context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtmpError {
    /// The URL is not `rtmp[s]://host[:port]/app[/key]`; the text says which part.
    InvalidUrl(&'static str),
    /// S0 carried a version other than 3 (spec 5.2.2).
    BadHandshakeVersion(u8),
    /// Set Chunk Size outside 1..=0x7FFF_FFFF (spec 5.4.1: the top bit must be 0).
    InvalidChunkSize(u32),
    /// A peer message longer than the core's cap (or ours longer than 2^24-1).
    MessageTooLarge { len_bytes: u32 },
    /// The peer used more chunk streams than the core tracks, or buffered too much at once.
    TooManyChunkStreams,
    /// A malformed chunk or control message; the text says which.
    Protocol(&'static str),
    /// A malformed AMF0 command.
    Amf(amf0::Amf0Error),
    /// The origin refused the connection or the stream.
    Rejected {
        kind: RejectKind,
        description: OriginText,
    },
    /// No `NetStream.Publish.Start` within the configured connect timeout.
    ConnectTimeout,
    /// Bytes sent but not acknowledged for too long: a half-open connection.
    AckStall,
    /// The peer closed the connection.
    PeerClosed,
    /// Media offered before `NetStream.Publish.Start`; not fatal, the frame is ignored.
    NotPublishing,
    /// H.265 has no codec id in classic RTMP/FLV.
    UnsupportedCodec,
    /// A ring frame is not well-formed AVCC (a length runs past the end), or params are unusable.
    BadFrame,
}

impl From<amf0::Amf0Error> for RtmpError {
    fn from(e: amf0::Amf0Error) -> Self {
        RtmpError::Amf(e)
    }
}

impl fmt::Display for RtmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtmpError::InvalidUrl(what) => write!(f, "invalid RTMP URL: {what}"),
            RtmpError::BadHandshakeVersion(v) => write!(f, "handshake: server version {v}, want 3"),
            RtmpError::InvalidChunkSize(n) => write!(f, "peer set invalid chunk size {n}"),
            RtmpError::MessageTooLarge { len_bytes } => {
                write!(f, "message of {len_bytes} bytes exceeds the limit")
            }
            RtmpError::TooManyChunkStreams => f.write_str("peer uses too many chunk streams"),
            RtmpError::Protocol(what) => write!(f, "protocol error: {what}"),
            RtmpError::Amf(e) => write!(f, "AMF0: {e:?}"),
            RtmpError::Rejected { kind, description } => {
                write!(f, "origin rejected ({kind:?}): {description}")
            }
            RtmpError::ConnectTimeout => f.write_str("no publish start before the timeout"),
            RtmpError::AckStall => f.write_str("peer stopped acknowledging (half-open?)"),
            RtmpError::PeerClosed => f.write_str("peer closed the connection"),
            RtmpError::NotPublishing => f.write_str("not publishing yet"),
            RtmpError::UnsupportedCodec => f.write_str("codec not supported over RTMP"),
            RtmpError::BadFrame => f.write_str("malformed frame or codec parameters"),
        }
    }
}
