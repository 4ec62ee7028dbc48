//! RTMP chunk streams (RTMP spec 5.3): the writer that splits our messages into chunks with
//! compressed headers, and the reader that reassembles the origin's chunks into messages.
//!
//! Owns: chunk header encoding/decoding (basic header, fmt 0–3 message headers, extended
//! timestamps), per-chunk-stream header state, chunk-size handling and every bound on what the
//! peer can make us buffer. Must not interpret message payloads (that is `publisher`) or do I/O.
//!
//! Extended timestamps follow spec 5.3.1.3: the 4-byte field is also present in fmt 3 chunks when
//! the last fmt 0/1/2 header of that chunk stream had one (what ffmpeg and nginx-rtmp do).

use super::RtmpError;

/// Message type ids (spec 5.4, 6.2, 7.1).
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
}

/// Chunk size every RTMP peer starts with (spec 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size allowed by spec 5.4.1 (the top bit must be zero).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest message the reader assembles. An origin talking to a publisher only sends control
/// messages and short AMF0 commands; anything longer is refused, not buffered.
pub const MAX_PEER_MESSAGE_BYTES: u32 = 64 * 1024;
/// Upper bound on bytes buffered across all partially received messages at once.
pub const MAX_PEER_BUFFERED_BYTES: usize = 128 * 1024;
/// How many distinct chunk stream ids the reader tracks (nginx-rtmp uses 2–3 toward a publisher).
pub const MAX_PEER_CHUNK_STREAMS: usize = 8;
/// Per-stream reassembly buffers above this are released after use, so one hostile message
/// does not pin its memory for the life of the connection.
const RETAINED_BUFFER_BYTES: usize = 4096;
/// Reassembly buffer allocated up front per chunk stream: control messages, acks and pings
/// (all under 64 bytes) never allocate after construction.
const PREALLOCATED_BUFFER_BYTES: usize = 256;
/// Largest chunk header: 3-byte basic header + 11-byte fmt 0 header + 4-byte extended timestamp.
const MAX_HEADER_BYTES: usize = 3 + 11 + 4;
/// A 24-bit timestamp field with this value means "see the extended timestamp" (spec 5.3.1.3).
const EXTENDED_TS: u32 = 0x00FF_FFFF;
/// Message lengths are 24-bit (spec 5.3.1.2.1).
pub const MAX_MESSAGE_BYTES: u32 = 0x00FF_FFFF;

/// The header of one RTMP message (spec 5.3.1.2), timestamps in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageHeader {
    pub timestamp_ms: u32,
    pub len_bytes: u32,
    pub type_id: u8,
    pub stream_id: u32,
}

/// Where the writer puts chunk bytes. Callers check capacity first (see
/// [`ChunkWriter::encoded_len`]), so `put` cannot fail.
pub trait ChunkSink {
    fn put(&mut self, bytes: &[u8]);
}

impl ChunkSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Basic header (spec 5.3.1.1): 1, 2 or 3 bytes depending on the chunk stream id.
fn basic_header(fmt: u8, csid: u32, out: &mut [u8; 3]) -> usize {
    match csid {
        2..=63 => {
            out[0] = (fmt << 6) | csid as u8;
            1
        }
        64..=319 => {
            out[0] = fmt << 6;
            out[1] = (csid - 64) as u8;
            2
        }
        _ => {
            // Writer csids are validated to 2..=65599 before we get here.
            let v = csid - 64;
            out[0] = (fmt << 6) | 1;
            out[1] = (v & 0xFF) as u8;
            out[2] = (v >> 8) as u8;
            3
        }
    }
}

fn basic_header_len(csid: u32) -> usize {
    match csid {
        2..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn message_header_len(fmt: u8) -> usize {
    match fmt {
        0 => 11,
        1 => 7,
        2 => 3,
        _ => 0,
    }
}

#[derive(Clone, Copy, Default)]
struct WriterStream {
    used: bool,
    timestamp_ms: u32,
    /// The delta carried by the last fmt 1/2 header; `None` after fmt 0 so that we never rely on
    /// the spec's ambiguous "fmt 3 after fmt 0" delta rule.
    delta_ms: Option<u32>,
    len_bytes: u32,
    type_id: u8,
    stream_id: u32,
    ext: bool,
}

/// The header format chosen for a message's first chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    fmt: u8,
    /// The timestamp (fmt 0) or delta (fmt 1/2/3) value.
    field: u32,
    ext: bool,
    delta_ms: Option<u32>,
}

/// Number of chunk stream ids the writer keeps header state for (ids 2..=63, 1-byte basic header).
const WRITER_STREAMS: usize = 64;

/// Splits outgoing messages into chunks, choosing the smallest header the previous message on
/// the same chunk stream allows (spec 5.3.1.2).
pub struct ChunkWriter {
    chunk_size: u32,
    streams: [WriterStream; WRITER_STREAMS],
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    pub fn new() -> Self {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: [WriterStream::default(); 64],
        }
    }

    /// Our outgoing chunk size. Call right after queueing a Set Chunk Size message (spec 5.4.1).
    pub fn set_chunk_size(&mut self, chunk_size: u32) {
        self.chunk_size = chunk_size.clamp(1, MAX_CHUNK_SIZE);
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    fn plan(&self, csid: u32, h: &MessageHeader) -> Plan {
        // `csid` checked to be < 64 by callers.
        let p = &self.streams[csid as usize];
        let (fmt, field, delta_ms) =
            if !p.used || p.stream_id != h.stream_id || h.timestamp_ms < p.timestamp_ms {
                (0, h.timestamp_ms, None)
            } else {
                let d = h.timestamp_ms - p.timestamp_ms;
                if p.len_bytes != h.len_bytes || p.type_id != h.type_id {
                    (1, d, Some(d))
                } else if p.delta_ms != Some(d) {
                    (2, d, Some(d))
                } else {
                    (3, d, Some(d))
                }
            };
        let ext = if fmt == 3 {
            p.ext
        } else {
            field >= EXTENDED_TS
        };
        Plan {
            fmt,
            field,
            ext,
            delta_ms,
        }
    }

    fn check(&self, csid: u32, h: &MessageHeader) -> Result<(), RtmpError> {
        if !(2..WRITER_STREAMS as u32).contains(&csid) {
            return Err(RtmpError::Protocol("writer chunk stream id must be 2..=63"));
        }
        if h.len_bytes > MAX_MESSAGE_BYTES {
            return Err(RtmpError::MessageTooLarge {
                len_bytes: h.len_bytes,
            });
        }
        Ok(())
    }

    /// Exact number of bytes [`ChunkWriter::write`] will produce for this message now.
    pub fn encoded_len(&self, csid: u32, h: &MessageHeader) -> Result<usize, RtmpError> {
        self.check(csid, h)?;
        let plan = self.plan(csid, h);
        let ext = if plan.ext { 4 } else { 0 };
        let basic = basic_header_len(csid);
        let chunks = (h.len_bytes as usize)
            .div_ceil(self.chunk_size as usize)
            .max(1);
        Ok(basic
            + message_header_len(plan.fmt)
            + ext
            + (chunks - 1) * (basic + ext)
            + h.len_bytes as usize)
    }

    /// Upper bound of the encoded size of a `len_bytes` message on a 1-byte-basic-header chunk
    /// stream, whatever header gets chosen; for admission checks spanning several messages.
    pub fn max_encoded_len(&self, len_bytes: usize) -> usize {
        let chunks = len_bytes.div_ceil(self.chunk_size as usize).max(1);
        1 + 11 + 4 + (chunks - 1) * (1 + 4) + len_bytes
    }

    /// Writes one message as chunks. `parts` concatenated are the payload and must total
    /// `h.len_bytes` bytes.
    pub fn write<'p, S: ChunkSink, I: IntoIterator<Item = &'p [u8]>>(
        &mut self,
        sink: &mut S,
        csid: u32,
        h: &MessageHeader,
        parts: I,
    ) -> Result<(), RtmpError> {
        self.check(csid, h)?;
        let plan = self.plan(csid, h);
        let mut hdr = [0u8; MAX_HEADER_BYTES];
        let mut b = [0u8; 3];
        let n = basic_header(plan.fmt, csid, &mut b);
        hdr[..n].copy_from_slice(&b[..n]);
        let mut at = n;
        if plan.fmt <= 2 {
            let ts24 = plan.field.min(EXTENDED_TS).to_be_bytes();
            hdr[at..at + 3].copy_from_slice(&ts24[1..]);
            at += 3;
        }
        if plan.fmt <= 1 {
            hdr[at..at + 3].copy_from_slice(&h.len_bytes.to_be_bytes()[1..]);
            hdr[at + 3] = h.type_id;
            at += 4;
        }
        if plan.fmt == 0 {
            // The message stream id is the one little-endian field in RTMP (spec 5.3.1.2.1).
            hdr[at..at + 4].copy_from_slice(&h.stream_id.to_le_bytes());
            at += 4;
        }
        if plan.ext {
            hdr[at..at + 4].copy_from_slice(&plan.field.to_be_bytes());
            at += 4;
        }
        sink.put(&hdr[..at]);

        // Continuation header: fmt 3 plus the extended timestamp again when present.
        let mut cont = [0u8; 3 + 4];
        let cn = basic_header(3, csid, &mut b);
        cont[..cn].copy_from_slice(&b[..cn]);
        let cont_len = if plan.ext {
            cont[cn..cn + 4].copy_from_slice(&plan.field.to_be_bytes());
            cn + 4
        } else {
            cn
        };
        let chunk = self.chunk_size as usize;
        let mut in_chunk = 0usize;
        let mut written = 0usize;
        for mut part in parts {
            while !part.is_empty() {
                if in_chunk == chunk {
                    sink.put(&cont[..cont_len]);
                    in_chunk = 0;
                }
                let n = part.len().min(chunk - in_chunk);
                sink.put(&part[..n]);
                part = &part[n..];
                in_chunk += n;
                written += n;
            }
        }
        debug_assert_eq!(
            written, h.len_bytes as usize,
            "payload parts must match len_bytes"
        );
        self.streams[csid as usize] = WriterStream {
            used: true,
            timestamp_ms: h.timestamp_ms,
            delta_ms: plan.delta_ms,
            len_bytes: h.len_bytes,
            type_id: h.type_id,
            stream_id: h.stream_id,
            ext: plan.ext,
        };
        Ok(())
    }
}

#[derive(Default)]
struct ReaderStream {
    in_use: bool,
    csid: u32,
    timestamp_ms: u32,
    delta_ms: u32,
    len_bytes: u32,
    type_id: u8,
    stream_id: u32,
    ext: bool,
    in_progress: bool,
    received_bytes: u32,
    buf: Vec<u8>,
}

/// A complete message from the peer; its payload is [`ChunkReader::payload`] until the next
/// [`ChunkReader::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub header: MessageHeader,
    slot: usize,
}

/// Reassembles the peer's chunk streams into messages with bounded memory: at most
/// [`MAX_PEER_CHUNK_STREAMS`] chunk streams, messages of at most [`MAX_PEER_MESSAGE_BYTES`], and
/// [`MAX_PEER_BUFFERED_BYTES`] in partial messages. The peer's chunk size does not affect memory.
pub struct ChunkReader {
    chunk_size: u32,
    streams: Vec<ReaderStream>,
    hdr: [u8; MAX_HEADER_BYTES],
    hdr_len: usize,
    /// (slot, bytes left in the current chunk) while reading a chunk's payload.
    payload: Option<(usize, u32)>,
    buffered_bytes: usize,
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkReader {
    pub fn new() -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: (0..MAX_PEER_CHUNK_STREAMS)
                .map(|_| ReaderStream {
                    buf: Vec::with_capacity(PREALLOCATED_BUFFER_BYTES),
                    ..ReaderStream::default()
                })
                .collect(),
            hdr: [0; MAX_HEADER_BYTES],
            hdr_len: 0,
            payload: None,
            buffered_bytes: 0,
        }
    }

    /// Applies the peer's Set Chunk Size (spec 5.4.1); 0 or a set top bit is an error.
    pub fn set_chunk_size(&mut self, chunk_size: u32) -> Result<(), RtmpError> {
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(RtmpError::InvalidChunkSize(chunk_size));
        }
        self.chunk_size = chunk_size;
        Ok(())
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Drops the partial message on `csid` (Abort Message, spec 5.4.2).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.in_use && s.csid == csid) {
            if s.in_progress {
                self.buffered_bytes -= s.len_bytes as usize;
                s.in_progress = false;
                s.received_bytes = 0;
                s.buf.clear();
            }
        }
    }

    /// The payload of a message returned by the last [`ChunkReader::push`].
    pub fn payload(&self, m: &Message) -> &[u8] {
        // `slot` was produced by this reader and the slot vector never shrinks.
        self.streams
            .get(m.slot)
            .map(|s| s.buf.as_slice())
            .unwrap_or(&[])
    }

    /// Bytes of chunk header still needed before the header can be decoded.
    fn header_need(&self) -> usize {
        if self.hdr_len == 0 {
            return 1;
        }
        let b0 = self.hdr[0];
        let basic = match b0 & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        if self.hdr_len < basic {
            return basic;
        }
        let fmt = b0 >> 6;
        let base = basic + message_header_len(fmt);
        if self.hdr_len < base {
            return base;
        }
        let ext = if fmt < 3 {
            let t = &self.hdr[basic..basic + 3];
            u32::from_be_bytes([0, t[0], t[1], t[2]]) == EXTENDED_TS
        } else {
            let csid = self.csid();
            self.streams
                .iter()
                .any(|s| s.in_use && s.csid == csid && s.ext)
        };
        base + if ext { 4 } else { 0 }
    }

    fn csid(&self) -> u32 {
        match self.hdr[0] & 0x3F {
            0 => 64 + self.hdr[1] as u32,
            1 => 64 + self.hdr[1] as u32 + 256 * self.hdr[2] as u32,
            n => n as u32,
        }
    }

    /// Feeds peer bytes. Returns how many were consumed and, when a message completed, the
    /// message: handle it (e.g. apply Set Chunk Size) before pushing the remaining bytes.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), RtmpError> {
        let mut pos = 0;
        loop {
            if let Some((slot, left)) = self.payload {
                if pos == input.len() {
                    return Ok((pos, None));
                }
                let n = (left as usize).min(input.len() - pos);
                let s = &mut self.streams[slot]; // slot < MAX_PEER_CHUNK_STREAMS by construction
                s.buf.extend_from_slice(&input[pos..pos + n]);
                s.received_bytes += n as u32;
                pos += n;
                let left = left - n as u32;
                if left > 0 {
                    self.payload = Some((slot, left));
                    continue;
                }
                self.payload = None;
                if s.received_bytes == s.len_bytes {
                    return Ok((pos, Some(self.complete(slot))));
                }
                continue;
            }
            let need = self.header_need();
            if self.hdr_len < need {
                if pos == input.len() {
                    return Ok((pos, None));
                }
                let n = (need - self.hdr_len).min(input.len() - pos);
                self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&input[pos..pos + n]);
                self.hdr_len += n;
                pos += n;
                continue;
            }
            let done = self.apply_header()?;
            self.hdr_len = 0;
            if let Some(m) = done {
                return Ok((pos, Some(m)));
            }
        }
    }

    fn complete(&mut self, slot: usize) -> Message {
        let s = &mut self.streams[slot];
        s.in_progress = false;
        self.buffered_bytes -= s.len_bytes as usize;
        Message {
            csid: s.csid,
            header: MessageHeader {
                timestamp_ms: s.timestamp_ms,
                len_bytes: s.len_bytes,
                type_id: s.type_id,
                stream_id: s.stream_id,
            },
            slot,
        }
    }

    fn apply_header(&mut self) -> Result<Option<Message>, RtmpError> {
        let csid = self.csid();
        let fmt = self.hdr[0] >> 6;
        let basic = match self.hdr[0] & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let h = &self.hdr[basic..self.hdr_len];
        let field24 = |h: &[u8]| u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let mh = message_header_len(fmt);
        let ext_value = if self.hdr_len == basic + mh + 4 {
            let e = &self.hdr[basic + mh..basic + mh + 4];
            Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
        } else {
            None
        };
        let slot = match self.streams.iter().position(|s| s.in_use && s.csid == csid) {
            Some(i) => i,
            None if fmt == 0 => {
                let i = self
                    .streams
                    .iter()
                    .position(|s| !s.in_use)
                    .ok_or(RtmpError::TooManyChunkStreams)?;
                let s = &mut self.streams[i];
                s.in_use = true;
                s.csid = csid;
                i
            }
            None => {
                return Err(RtmpError::Protocol(
                    "compressed chunk header on a new stream",
                ))
            }
        };
        let s = &mut self.streams[slot];
        if s.in_progress {
            if fmt != 3 {
                return Err(RtmpError::Protocol(
                    "new message header inside an unfinished message",
                ));
            }
        } else {
            // The lengths below were checked by header_need: fmt 0 has 11 bytes, fmt 1 has 7.
            match fmt {
                0 => {
                    let ts = field24(h);
                    s.ext = ts == EXTENDED_TS;
                    s.timestamp_ms = ext_value.unwrap_or(ts);
                    s.delta_ms = 0;
                    s.len_bytes = field24(&h[3..]);
                    s.type_id = h[6];
                    s.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
                }
                1 | 2 => {
                    let d = field24(h);
                    s.ext = d == EXTENDED_TS;
                    s.delta_ms = ext_value.unwrap_or(d);
                    s.timestamp_ms = s.timestamp_ms.wrapping_add(s.delta_ms);
                    if fmt == 1 {
                        s.len_bytes = field24(&h[3..]);
                        s.type_id = h[6];
                    }
                }
                _ => s.timestamp_ms = s.timestamp_ms.wrapping_add(s.delta_ms),
            }
            if s.len_bytes > MAX_PEER_MESSAGE_BYTES {
                return Err(RtmpError::MessageTooLarge {
                    len_bytes: s.len_bytes,
                });
            }
            if self.buffered_bytes + s.len_bytes as usize > MAX_PEER_BUFFERED_BYTES {
                return Err(RtmpError::TooManyChunkStreams);
            }
            s.buf.clear();
            if s.buf.capacity() > RETAINED_BUFFER_BYTES {
                s.buf.shrink_to(RETAINED_BUFFER_BYTES);
            }
            s.received_bytes = 0;
            s.in_progress = true;
            self.buffered_bytes += s.len_bytes as usize;
            if s.len_bytes == 0 {
                return Ok(Some(self.complete(slot)));
            }
        }
        let s = &self.streams[slot];
        let left = self.chunk_size.min(s.len_bytes - s.received_bytes);
        self.payload = Some((slot, left));
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(ts: u32, len: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            timestamp_ms: ts,
            len_bytes: len,
            type_id,
            stream_id,
        }
    }

    fn write(w: &mut ChunkWriter, csid: u32, h: MessageHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let expect = w.encoded_len(csid, &h).unwrap();
        w.write(&mut out, csid, &h, [payload]).unwrap();
        assert_eq!(out.len(), expect, "encoded_len must be exact");
        out
    }

    /// Spec 5.3.1.2.1–5.3.1.2.4, derived by hand: fmt 0 carries everything, fmt 1 drops the
    /// stream id and carries a delta, fmt 2 only a delta, fmt 3 repeats the previous delta.
    #[test]
    fn fmt0_to_fmt3_headers() {
        let mut w = ChunkWriter::new();
        assert_eq!(
            write(&mut w, 3, hdr(0, 5, 20, 1), &[1, 2, 3, 4, 5]),
            [0x03, 0, 0, 0, 0, 0, 5, 20, 1, 0, 0, 0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            write(&mut w, 3, hdr(40, 3, 20, 1), &[7, 8, 9]),
            [0x43, 0, 0, 40, 0, 0, 3, 20, 7, 8, 9]
        );
        assert_eq!(
            write(&mut w, 3, hdr(70, 3, 20, 1), &[1, 1, 1]),
            [0x83, 0, 0, 30, 1, 1, 1]
        );
        assert_eq!(
            write(&mut w, 3, hdr(100, 3, 20, 1), &[2, 2, 2]),
            [0xC3, 2, 2, 2]
        );
        // A different message stream id forces fmt 0 again.
        assert_eq!(
            write(&mut w, 3, hdr(130, 1, 20, 2), &[9]),
            [0x03, 0, 0, 130, 0, 0, 1, 20, 2, 0, 0, 0, 9]
        );
        // Timestamps going backwards force fmt 0 (deltas are unsigned).
        assert_eq!(write(&mut w, 3, hdr(5, 1, 20, 2), &[9])[0], 0x03);
    }

    #[test]
    fn continuation_chunks_and_long_basic_headers() {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(4);
        assert_eq!(
            write(&mut w, 6, hdr(0, 6, 9, 1), &[1, 2, 3, 4, 5, 6]),
            [0x06, 0, 0, 0, 0, 0, 6, 9, 1, 0, 0, 0, 1, 2, 3, 4, 0xC6, 5, 6]
        );
        // Basic header forms for csid 64..319 (2 bytes) and 320.. (3 bytes), spec 5.3.1.1.
        let mut b = [0u8; 3];
        assert_eq!((basic_header(0, 100, &mut b), b), (2, [0x00, 36, 0]));
        assert_eq!((basic_header(3, 400, &mut b), b), (3, [0xC1, 0x50, 0x01]));
        assert!(
            w.encoded_len(64, &hdr(0, 1, 9, 1)).is_err(),
            "writer uses 1-byte ids only"
        );
    }

    /// Spec 5.3.1.3: a 24-bit field of 0xFFFFFF plus a 4-byte extended timestamp, repeated in the
    /// fmt 3 continuation chunk.
    #[test]
    fn extended_timestamp() {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(1);
        assert_eq!(
            write(&mut w, 4, hdr(0x0100_0000, 2, 8, 1), &[0xAB, 0xCD]),
            [
                0x04, 0xFF, 0xFF, 0xFF, 0, 0, 2, 8, 1, 0, 0, 0, 0x01, 0, 0, 0, 0xAB, //
                0xC4, 0x01, 0, 0, 0, 0xCD
            ]
        );
        // Delta 0x01000000 → fmt 1 with extended delta; then the same delta → fmt 3 with ext.
        w.set_chunk_size(128);
        assert_eq!(
            write(&mut w, 4, hdr(0x0200_0000, 1, 8, 1), &[1]),
            [0x44, 0xFF, 0xFF, 0xFF, 0, 0, 1, 8, 0x01, 0, 0, 0, 1]
        );
        assert_eq!(
            write(&mut w, 4, hdr(0x0300_0000, 1, 8, 1), &[2]),
            [0xC4, 0x01, 0, 0, 0, 2]
        );
    }

    fn read_all(r: &mut ChunkReader, bytes: &[u8], step: usize) -> Vec<(MessageHeader, Vec<u8>)> {
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (n, m) = r.push(rest).unwrap();
                rest = &rest[n..];
                if let Some(m) = m {
                    out.push((m.header, r.payload(&m).to_vec()));
                }
            }
        }
        out
    }

    #[test]
    fn reader_roundtrips_writer_output_at_any_split() {
        let mut w = ChunkWriter::new();
        w.set_chunk_size(7);
        let msgs = [
            (3, hdr(0, 20, 20, 0)),
            (6, hdr(0, 30, 9, 1)),
            (6, hdr(40, 30, 9, 1)),
            (6, hdr(80, 30, 9, 1)),
            (6, hdr(120, 11, 9, 1)),
            (4, hdr(0x0123_4567, 9, 8, 1)),
            (4, hdr(0x0123_4567 + 23, 9, 8, 1)),
            (3, hdr(5, 0, 20, 0)),
        ];
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (i, (csid, h)) in msgs.iter().enumerate() {
            let payload: Vec<u8> = (0..h.len_bytes)
                .map(|j| (i as u32 * 31 + j) as u8)
                .collect();
            w.write(&mut wire, *csid, h, [&payload[..]]).unwrap();
            want.push((*h, payload));
        }
        for step in [1, 2, 5, 64, wire.len()] {
            let mut r = ChunkReader::new();
            r.set_chunk_size(7).unwrap();
            assert_eq!(read_all(&mut r, &wire, step), want, "step {step}");
        }
    }
}
