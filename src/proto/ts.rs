//! MPEG-2 transport stream muxer (ISO/IEC 13818-1) for HLS segments.
//!
//! Owns: PAT/PMT sections (with CRC-32), PES packetization of ring frames (H.264/H.265 access
//! units converted from 4-byte length-prefixed NALs to Annex B with an AUD in front; AAC raw
//! frames with an ADTS header re-added), PCR in the adaptation field, continuity counters and
//! adaptation-field stuffing. Output is whole 188-byte packets handed to a caller sink or written
//! into a caller buffer.
//!
//! Must not: do I/O, read a clock, or allocate. Every packet is built in a stack `[u8; 188]`.
//!
//! Why not the `mpeg2ts` crate: measured with a counting global allocator (mpeg2ts 0.6.1,
//! release build, writing into a `Cursor<&mut [u8]>`): building + writing a PAT costs 3 heap
//! allocations, a PMT 4, and every `Error` value 4–5 (it carries a formatted `String`); PES
//! packets cost 0 allocations but each packet's payload is copied twice (into its `Bytes`
//! `[u8; 184]`, then into a stack buffer, then into the writer). With PAT/PMT at the start of
//! every segment that is a steady-state allocation, which rillcast's "zero allocations in steady
//! state" rule forbids, so the writer is hand-rolled here (about as much code as driving the
//! crate's types).

use crate::media::{AudioParams, Codec, FrameMeta};

/// Size of one transport stream packet (ISO/IEC 13818-1 §2.4.3.2).
pub const TS_PACKET_LEN: usize = 188;
/// PID of the program map table.
pub const PID_PMT: u16 = 0x1000;
/// PID of the video elementary stream.
pub const PID_VIDEO: u16 = 0x0100;
/// PID of the audio elementary stream.
pub const PID_AUDIO: u16 = 0x0101;
/// stream_type for H.264 (ISO/IEC 13818-1 Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// stream_type for H.265.
pub const STREAM_TYPE_H265: u8 = 0x24;
/// stream_type for AAC with ADTS transport syntax (ISO/IEC 13818-7).
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;

const SYNC_BYTE: u8 = 0x47;
const PTS_MASK: u64 = (1 << 33) - 1;
const AUD_H264: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
const AUD_H265: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];
/// Longest PES header this muxer writes: 9 fixed bytes + PTS + DTS.
const PES_HEADER_MAX: usize = 19;
/// Largest AAC frame an ADTS header can describe (13-bit frame_length incl. the 7-byte header).
const ADTS_MAX_FRAME: usize = 8191;

/// Why a frame could not be muxed. The muxer state (continuity counters) is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsError {
    /// A 4-byte NAL length prefix points past the end of the access unit.
    BadNalLength,
    /// The stream has no track of that kind, or the codec can't go in TS.
    NoSuchTrack,
    /// AAC frame longer than ADTS can express (8184 bytes).
    AudioFrameTooLong,
    /// The caller's output buffer is smaller than the packets this frame needs.
    BufferTooSmall,
}

/// CRC-32/MPEG-2 (ISO/IEC 13818-1 Annex A): poly 0x04C11DB7, init all ones, no reflection, no
/// final xor. Bitwise: it only runs over ~40 bytes of PSI per segment.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Converts a timestamp in a `clock_hz` clock to the 90 kHz MPEG clock (wrapped to 33 bits).
pub fn to_90k(ts: u64, clock_hz: u32) -> u64 {
    if clock_hz == 90_000 || clock_hz == 0 {
        return ts & PTS_MASK;
    }
    ((ts as u128 * 90_000 / clock_hz as u128) as u64) & PTS_MASK
}

/// Writes a 7-byte ADTS header (ISO/IEC 14496-3 §1.A.2.2, no CRC) for a raw AAC frame of
/// `raw_len_bytes`.
pub fn adts_header(params: &AudioParams, raw_len_bytes: usize) -> Result<[u8; 7], TsError> {
    let frame_len = raw_len_bytes + 7;
    if frame_len > ADTS_MAX_FRAME {
        return Err(TsError::AudioFrameTooLong);
    }
    let profile = params.object_type.saturating_sub(1) & 0x3;
    let sr = params.sample_rate_index & 0xf;
    let ch = params.channels & 0x7;
    Ok([
        0xff,
        0xf1, // syncword low nibble, MPEG-4, layer 0, protection_absent
        (profile << 6) | (sr << 2) | (ch >> 2),
        ((ch & 3) << 6) | ((frame_len >> 11) as u8 & 0x3),
        (frame_len >> 3) as u8,
        (((frame_len & 7) as u8) << 5) | 0x1f, // + buffer fullness 0x7ff (VBR)
        0xfc,
    ])
}

/// The bytes of one PES: a small header (PES header + AUD/ADTS) followed by the frame body.
/// For video the body is length-prefixed NALs, read out with each 4-byte length replaced by a
/// 4-byte start code (so the Annex B length equals the input length).
struct PesBody<'a> {
    head: [u8; PES_HEADER_MAX + 7],
    head_len: usize,
    head_pos: usize,
    body: &'a [u8],
    body_pos: usize,
    avcc: bool,
    /// Offset in `body` of the next 4-byte length field (video only).
    next_len_at: usize,
}

impl PesBody<'_> {
    fn remaining(&self) -> usize {
        (self.head_len - self.head_pos) + (self.body.len() - self.body_pos)
    }

    fn read(&mut self, dst: &mut [u8]) -> usize {
        let mut n = 0;
        while n < dst.len() && self.head_pos < self.head_len {
            dst[n] = self.head[self.head_pos];
            self.head_pos += 1;
            n += 1;
        }
        while n < dst.len() && self.body_pos < self.body.len() {
            if self.avcc && self.body_pos >= self.next_len_at {
                let i = self.body_pos - self.next_len_at;
                if i < 4 {
                    dst[n] = if i == 3 { 1 } else { 0 };
                    n += 1;
                    self.body_pos += 1;
                    if i == 3 {
                        // validate_avcc() proved the 4 length bytes are in range.
                        let l = &self.body[self.next_len_at..self.next_len_at + 4];
                        let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
                        self.next_len_at += 4 + len;
                    }
                    continue;
                }
            }
            let end = if self.avcc {
                self.next_len_at.min(self.body.len())
            } else {
                self.body.len()
            };
            let take = (end - self.body_pos).min(dst.len() - n);
            dst[n..n + take].copy_from_slice(&self.body[self.body_pos..self.body_pos + take]);
            self.body_pos += take;
            n += take;
        }
        n
    }
}

/// Checks that the length prefixes tile the access unit exactly.
fn validate_avcc(au: &[u8]) -> Result<(), TsError> {
    let mut pos = 0usize;
    while pos < au.len() {
        let Some(l) = au.get(pos..pos + 4) else {
            return Err(TsError::BadNalLength);
        };
        let len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
        // `len + 4` can overflow a 32-bit usize (ARMv6/v7): checked, not `4 + len`.
        pos = len
            .checked_add(4)
            .and_then(|n| pos.checked_add(n))
            .filter(|&p| p <= au.len())
            .ok_or(TsError::BadNalLength)?;
    }
    Ok(())
}

fn write_ts_timestamp(out: &mut [u8], prefix: u8, ts: u64) {
    let ts = ts & PTS_MASK;
    out[0] = (prefix << 4) | (((ts >> 29) as u8) & 0x0e) | 1;
    out[1] = (ts >> 22) as u8;
    out[2] = (((ts >> 14) as u8) & 0xfe) | 1;
    out[3] = (ts >> 7) as u8;
    out[4] = (((ts << 1) as u8) & 0xfe) | 1;
}

/// Writes a PES header (ISO/IEC 13818-1 §2.4.3.6) into `out`, returns its length.
/// `body_len` is the number of bytes after the header; 0 in PES_packet_length means
/// "unbounded", allowed for video in TS.
fn pes_header(out: &mut [u8], stream_id: u8, pts_90k: u64, dts_90k: u64, body_len: usize) -> usize {
    let with_dts = (pts_90k & PTS_MASK) != (dts_90k & PTS_MASK);
    let hdr_data_len = if with_dts { 10 } else { 5 };
    let pes_len = 3 + hdr_data_len + body_len;
    let pes_len_field = if stream_id & 0xf0 == 0xe0 || pes_len > 0xffff {
        0
    } else {
        pes_len as u16
    };
    out[..4].copy_from_slice(&[0, 0, 1, stream_id]);
    out[4..6].copy_from_slice(&pes_len_field.to_be_bytes());
    out[6] = 0x84; // '10', not scrambled, data_alignment_indicator: each PES starts an AU
    out[7] = if with_dts { 0xc0 } else { 0x80 };
    out[8] = hdr_data_len as u8;
    if with_dts {
        write_ts_timestamp(&mut out[9..14], 0x3, pts_90k);
        write_ts_timestamp(&mut out[14..19], 0x1, dts_90k);
        19
    } else {
        write_ts_timestamp(&mut out[9..14], 0x2, pts_90k);
        14
    }
}

/// One muxed program: PAT, PMT, up to one video and one audio PID. Continuity counters persist
/// across segments so a player reading consecutive segments sees no CC discontinuity.
#[derive(Clone, Debug)]
pub struct TsMuxer {
    video: Option<Codec>,
    audio: Option<AudioParams>,
    /// Continuity counters: PAT, PMT, video, audio.
    cc: [u8; 4],
}

impl TsMuxer {
    /// A muxer for a stream with the given tracks. `video` must be H.264 or H.265.
    pub fn new(video: Option<Codec>, audio: Option<AudioParams>) -> Result<Self, TsError> {
        if matches!(video, Some(Codec::Aac)) || (video.is_none() && audio.is_none()) {
            return Err(TsError::NoSuchTrack);
        }
        Ok(Self {
            video,
            audio,
            cc: [0; 4],
        })
    }

    /// The PID that carries the PCR: video if present, else audio.
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            PID_VIDEO
        } else {
            PID_AUDIO
        }
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let i = match pid {
            0 => 0,
            PID_PMT => 1,
            PID_VIDEO => 2,
            _ => 3,
        };
        let c = self.cc[i];
        self.cc[i] = (c + 1) & 0xf;
        c
    }

    fn psi_packet(
        &mut self,
        pid: u16,
        section: &[u8],
        sink: &mut impl FnMut(&[u8; TS_PACKET_LEN]),
    ) {
        let mut pkt = [0xffu8; TS_PACKET_LEN];
        let cc = self.next_cc(pid);
        pkt[0] = SYNC_BYTE;
        pkt[1] = 0x40 | (pid >> 8) as u8;
        pkt[2] = pid as u8;
        pkt[3] = 0x10 | cc;
        pkt[4] = 0; // pointer_field
                    // Sections here are at most 4 + 12 + 2*5 + 4 bytes, always < 183.
        pkt[5..5 + section.len()].copy_from_slice(section);
        let crc = crc32_mpeg2(section);
        pkt[5 + section.len()..9 + section.len()].copy_from_slice(&crc.to_be_bytes());
        sink(&pkt);
    }

    /// Writes one PAT and one PMT packet (ISO/IEC 13818-1 §2.4.4.3, §2.4.4.8). Call at the
    /// start of every segment so each segment decodes on its own.
    pub fn write_tables(&mut self, sink: &mut impl FnMut(&[u8; TS_PACKET_LEN])) {
        // PAT: one program (number 1) whose PMT is on PID_PMT; section_length 13.
        let pat = [
            0x00,
            0xb0,
            0x0d,
            0x00,
            0x01, // transport_stream_id 1
            0xc1, // version 0, current_next 1
            0x00,
            0x00,
            0x00,
            0x01,
            0xe0 | (PID_PMT >> 8) as u8,
            PID_PMT as u8,
        ];
        self.psi_packet(0, &pat, sink);

        let mut pmt = [0u8; 22];
        let mut n = 12;
        let mut es = |stream_type: u8, pid: u16, pmt: &mut [u8; 22]| {
            pmt[n..n + 5].copy_from_slice(&[
                stream_type,
                0xe0 | (pid >> 8) as u8,
                pid as u8,
                0xf0,
                0,
            ]);
            n += 5;
        };
        if let Some(codec) = self.video {
            let st = if codec == Codec::H265 {
                STREAM_TYPE_H265
            } else {
                STREAM_TYPE_H264
            };
            es(st, PID_VIDEO, &mut pmt);
        }
        if self.audio.is_some() {
            es(STREAM_TYPE_AAC_ADTS, PID_AUDIO, &mut pmt);
        }
        let section_length = (n - 3 + 4) as u16; // after the length field, incl. CRC
        let pcr = self.pcr_pid();
        pmt[..12].copy_from_slice(&[
            0x02,
            0xb0 | (section_length >> 8) as u8,
            section_length as u8,
            0x00,
            0x01, // program_number 1
            0xc1,
            0x00,
            0x00,
            0xe0 | (pcr >> 8) as u8,
            pcr as u8,
            0xf0,
            0x00, // program_info_length 0
        ]);
        self.psi_packet(PID_PMT, &pmt[..n], sink);
    }

    /// Muxes one video access unit (ring format: 4-byte length-prefixed NALs) as one PES with
    /// an AUD in front. Keyframes get random_access_indicator; every video PES carries a PCR
    /// equal to its DTS. Returns the number of packets written.
    pub fn write_video(
        &mut self,
        meta: &FrameMeta,
        au: &[u8],
        sink: &mut impl FnMut(&[u8; TS_PACKET_LEN]),
    ) -> Result<usize, TsError> {
        let body = self.video_body(meta, au)?;
        Ok(self.write_pes(
            PID_VIDEO,
            body,
            meta.keyframe,
            Some(meta.dts & PTS_MASK),
            sink,
        ))
    }

    /// Muxes one raw AAC frame as one PES with an ADTS header. `meta` timestamps are in the
    /// sample-rate clock and converted to 90 kHz. Audio-only streams carry the PCR here.
    pub fn write_audio(
        &mut self,
        meta: &FrameMeta,
        raw: &[u8],
        sink: &mut impl FnMut(&[u8; TS_PACKET_LEN]),
    ) -> Result<usize, TsError> {
        let (body, pts) = self.audio_body(meta, raw)?;
        let pcr = if self.video.is_none() {
            Some(pts)
        } else {
            None
        };
        Ok(self.write_pes(PID_AUDIO, body, self.video.is_none(), pcr, sink))
    }

    /// Like [`Self::write_video`], into `out`; returns bytes written. Fails without touching
    /// state if `out` is too small.
    pub fn write_video_into(
        &mut self,
        meta: &FrameMeta,
        au: &[u8],
        out: &mut [u8],
    ) -> Result<usize, TsError> {
        let body = self.video_body(meta, au)?;
        let need = packet_count(body.remaining(), true, true) * TS_PACKET_LEN;
        if need > out.len() {
            return Err(TsError::BufferTooSmall);
        }
        let mut n = 0;
        self.write_pes(
            PID_VIDEO,
            body,
            meta.keyframe,
            Some(meta.dts & PTS_MASK),
            &mut |p| {
                out[n..n + TS_PACKET_LEN].copy_from_slice(p);
                n += TS_PACKET_LEN;
            },
        );
        Ok(n)
    }

    /// Like [`Self::write_audio`], into `out`; returns bytes written.
    pub fn write_audio_into(
        &mut self,
        meta: &FrameMeta,
        raw: &[u8],
        out: &mut [u8],
    ) -> Result<usize, TsError> {
        let (body, pts) = self.audio_body(meta, raw)?;
        let af = self.video.is_none();
        let need = packet_count(body.remaining(), af, af) * TS_PACKET_LEN;
        if need > out.len() {
            return Err(TsError::BufferTooSmall);
        }
        let pcr = if af { Some(pts) } else { None };
        let mut n = 0;
        self.write_pes(PID_AUDIO, body, af, pcr, &mut |p| {
            out[n..n + TS_PACKET_LEN].copy_from_slice(p);
            n += TS_PACKET_LEN;
        });
        Ok(n)
    }

    fn video_body<'a>(&self, meta: &FrameMeta, au: &'a [u8]) -> Result<PesBody<'a>, TsError> {
        let codec = self.video.ok_or(TsError::NoSuchTrack)?;
        validate_avcc(au)?;
        let aud: &[u8] = if codec == Codec::H265 {
            &AUD_H265
        } else {
            &AUD_H264
        };
        let mut head = [0u8; PES_HEADER_MAX + 7];
        let h = pes_header(&mut head, 0xe0, meta.pts, meta.dts, aud.len() + au.len());
        head[h..h + aud.len()].copy_from_slice(aud);
        Ok(PesBody {
            head,
            head_len: h + aud.len(),
            head_pos: 0,
            body: au,
            body_pos: 0,
            avcc: true,
            next_len_at: 0,
        })
    }

    fn audio_body<'a>(
        &self,
        meta: &FrameMeta,
        raw: &'a [u8],
    ) -> Result<(PesBody<'a>, u64), TsError> {
        let params = self.audio.ok_or(TsError::NoSuchTrack)?;
        let adts = adts_header(&params, raw.len())?;
        let pts = to_90k(meta.pts, params.sample_rate);
        let mut head = [0u8; PES_HEADER_MAX + 7];
        // Audio never reorders: PTS only.
        let h = pes_header(&mut head, 0xc0, pts, pts, adts.len() + raw.len());
        head[h..h + 7].copy_from_slice(&adts);
        Ok((
            PesBody {
                head,
                head_len: h + 7,
                head_pos: 0,
                body: raw,
                body_pos: 0,
                avcc: false,
                next_len_at: 0,
            },
            pts,
        ))
    }

    fn write_pes(
        &mut self,
        pid: u16,
        mut body: PesBody<'_>,
        random_access: bool,
        pcr_90k: Option<u64>,
        sink: &mut impl FnMut(&[u8; TS_PACKET_LEN]),
    ) -> usize {
        let mut first = true;
        let mut count = 0;
        while body.remaining() > 0 {
            let mut pkt = [0xffu8; TS_PACKET_LEN];
            let cc = self.next_cc(pid);
            pkt[0] = SYNC_BYTE;
            pkt[1] = (if first { 0x40 } else { 0 }) | (pid >> 8) as u8 & 0x1f;
            pkt[2] = pid as u8;
            // Adaptation field with flags (2 bytes) + PCR (6) on the first packet when needed.
            let pcr = if first { pcr_90k } else { None };
            let flags_af = first && (random_access || pcr.is_some());
            let af_min = if flags_af {
                2 + if pcr.is_some() { 6 } else { 0 }
            } else {
                0
            };
            let avail = 184 - af_min;
            let n = body.remaining().min(avail);
            let stuffing = avail - n;
            let af_len = af_min + stuffing; // total bytes incl. the length byte
            let payload_at = 4 + af_len;
            if af_len > 0 {
                pkt[3] = 0x30 | cc;
                pkt[4] = (af_len - 1) as u8;
                if af_len >= 2 {
                    let mut flags = 0u8;
                    if flags_af && random_access {
                        flags |= 0x40;
                    }
                    if let Some(pcr) = pcr {
                        flags |= 0x10;
                        // PCR base (33 bits), 6 reserved bits, extension 0 (§2.4.3.5).
                        let b = pcr & PTS_MASK;
                        pkt[6] = (b >> 25) as u8;
                        pkt[7] = (b >> 17) as u8;
                        pkt[8] = (b >> 9) as u8;
                        pkt[9] = (b >> 1) as u8;
                        pkt[10] = ((b as u8 & 1) << 7) | 0x7e;
                        pkt[11] = 0;
                    }
                    pkt[5] = flags;
                }
                // The remaining adaptation bytes are already 0xff stuffing.
            } else {
                pkt[3] = 0x10 | cc;
            }
            let got = body.read(&mut pkt[payload_at..payload_at + n]);
            debug_assert_eq!(got, n);
            sink(&pkt);
            count += 1;
            first = false;
        }
        count
    }
}

/// Number of packets a PES of `pes_len` bytes needs; `af_first`: the first packet carries an
/// adaptation field with flags, `pcr`: and a PCR.
fn packet_count(pes_len: usize, af_first: bool, pcr: bool) -> usize {
    let first = 184
        - if af_first {
            2 + if pcr { 6 } else { 0 }
        } else {
            0
        };
    if pes_len <= first {
        1
    } else {
        1 + (pes_len - first).div_ceil(184)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Track;

    fn collect(f: impl FnOnce(&mut dyn FnMut(&[u8; TS_PACKET_LEN]))) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut |p| v.extend_from_slice(p));
        v
    }

    #[test]
    fn crc_matches_known_pat() {
        // ffmpeg's default PAT (tsid 1, PMT PID 0x1000) ends in CRC 2a b1 04 b2.
        let pat = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&pat), 0x2ab1_04b2);
        // CRC-32/MPEG-2 check value over "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn tables_byte_exact() {
        let aac = AudioParams {
            object_type: 2,
            sample_rate_index: 4,
            sample_rate: 44_100,
            channels: 2,
        };
        let mut m = TsMuxer::new(Some(Codec::H264), Some(aac)).unwrap();
        let out = collect(|s| m.write_tables(&mut |p| s(p)));
        assert_eq!(out.len(), 376);
        assert_eq!(
            &out[..21],
            &[
                0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00,
                0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2
            ]
        );
        assert!(out[21..188].iter().all(|&b| b == 0xff));
        // PMT: PCR on 0x100, H.264 on 0x100, ADTS AAC on 0x101; section_length 23.
        let pmt = &out[188..188 + 5 + 27];
        assert_eq!(
            &pmt[..27],
            &[
                0x47, 0x50, 0x00, 0x10, 0x00, 0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1,
                0x00, 0xf0, 0x00, 0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00
            ]
        );
        assert_eq!(crc32_mpeg2(&pmt[5..27]).to_be_bytes(), pmt[27..31]);
        // Second call: continuity counters advance.
        let out2 = collect(|s| m.write_tables(&mut |p| s(p)));
        assert_eq!(out2[3], 0x11);
        assert_eq!(out2[188 + 3], 0x11);
    }

    #[test]
    fn adts_header_byte_exact() {
        // AAC LC, 44.1 kHz (index 4), stereo, 100-byte raw frame -> frame_length 107.
        let p = AudioParams {
            object_type: 2,
            sample_rate_index: 4,
            sample_rate: 44_100,
            channels: 2,
        };
        assert_eq!(
            adts_header(&p, 100).unwrap(),
            [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]
        );
        assert_eq!(adts_header(&p, 8185), Err(TsError::AudioFrameTooLong));
    }

    #[test]
    fn small_keyframe_single_packet_byte_exact() {
        let mut m = TsMuxer::new(Some(Codec::H264), None).unwrap();
        // One NAL of 3 bytes (IDR header 0x65 + 2 bytes).
        let au = [0, 0, 0, 3, 0x65, 0xaa, 0xbb];
        let meta = FrameMeta {
            track: Track::Video,
            pts: 90_000,
            dts: 90_000,
            keyframe: true,
        };
        let out = collect(|s| {
            m.write_video(&meta, &au, &mut |p| s(p)).unwrap();
        });
        assert_eq!(out.len(), 188);
        // PES: 14-byte header + 6 AUD + 7 = 27 bytes; AF = 184 - 27 = 157 bytes (len byte 156).
        assert_eq!(&out[..6], &[0x47, 0x41, 0x00, 0x30, 156, 0x50]);
        // PCR base 90000 = 0x15f90: base>>1 = 0xafc8, low bit 0.
        assert_eq!(&out[6..12], &[0x00, 0x00, 0xaf, 0xc8, 0x7e, 0x00]);
        assert!(out[12..161].iter().all(|&b| b == 0xff));
        // PTS 90000: 0x21 0x00 0x05 0xbf 0x21 (prefix 0010).
        assert_eq!(
            &out[161..],
            &[
                0, 0, 1, 0xe0, 0, 0, 0x84, 0x80, 5, 0x21, 0x00, 0x05, 0xbf, 0x21, 0, 0, 0, 1, 0x09,
                0xf0, 0, 0, 0, 1, 0x65, 0xaa, 0xbb
            ]
        );
    }

    #[test]
    fn long_frame_converts_to_annexb_across_packets() {
        let mut m = TsMuxer::new(Some(Codec::H265), None).unwrap();
        // Two NALs, the second straddling packet boundaries.
        let mut au = Vec::new();
        let nal1: Vec<u8> = (0..170u32).map(|i| i as u8).collect();
        let nal2: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        for n in [&nal1, &nal2] {
            au.extend_from_slice(&(n.len() as u32).to_be_bytes());
            au.extend_from_slice(n);
        }
        let meta = FrameMeta {
            track: Track::Video,
            pts: 3003,
            dts: 0,
            keyframe: false,
        };
        let mut buf = [0u8; 188 * 8];
        let n = m.write_video_into(&meta, &au, &mut buf).unwrap();
        assert_eq!(n % 188, 0);
        // Reassemble payloads.
        let mut pes = Vec::new();
        for (i, p) in buf[..n].chunks(188).enumerate() {
            assert_eq!(p[0], 0x47);
            assert_eq!(p[3] & 0x0f, i as u8, "continuity counter");
            let start = if p[3] & 0x20 != 0 {
                5 + p[4] as usize
            } else {
                4
            };
            pes.extend_from_slice(&p[start..]);
        }
        assert_eq!(pes[7], 0xc0, "PTS and DTS");
        assert_eq!(&pes[19..26], &AUD_H265);
        let mut expect = Vec::new();
        for n in [&nal1, &nal2] {
            expect.extend_from_slice(&[0, 0, 0, 1]);
            expect.extend_from_slice(n);
        }
        assert_eq!(&pes[26..], &expect[..]);
        // Too small a buffer: error, state untouched (next CC continues from the last one).
        let mut small = [0u8; 188];
        assert_eq!(
            m.write_video_into(&meta, &au, &mut small),
            Err(TsError::BufferTooSmall)
        );
    }

    #[test]
    fn rejects_bad_nal_lengths() {
        let mut m = TsMuxer::new(Some(Codec::H264), None).unwrap();
        let meta = FrameMeta {
            track: Track::Video,
            pts: 0,
            dts: 0,
            keyframe: true,
        };
        for au in [
            &[0u8, 0, 0, 9, 1][..],
            &[0, 0, 1][..],
            &[0xff, 0xff, 0xff, 0xff, 0][..],
        ] {
            assert_eq!(
                m.write_video(&meta, au, &mut |_| {}),
                Err(TsError::BadNalLength)
            );
        }
        assert_eq!(
            TsMuxer::new(Some(Codec::Aac), None).err(),
            Some(TsError::NoSuchTrack)
        );
    }

    #[test]
    fn audio_timestamps_convert_to_90k() {
        assert_eq!(to_90k(1024, 48_000), 1920);
        assert_eq!(to_90k(44_100, 44_100), 90_000);
        let p = AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 1,
        };
        let mut m = TsMuxer::new(None, Some(p)).unwrap();
        let meta = FrameMeta {
            track: Track::Audio,
            pts: 48_000,
            dts: 48_000,
            keyframe: true,
        };
        let out = collect(|s| {
            m.write_audio(&meta, &[0x21; 10], &mut |pk| s(pk)).unwrap();
        });
        assert_eq!(out.len(), 188);
        let pes = &out[188 - 31..];
        // PES_packet_length = 3 + 5 + 7 + 10 = 25; PTS 90000.
        assert_eq!(
            &pes[..14],
            &[0, 0, 1, 0xc0, 0, 25, 0x84, 0x80, 5, 0x21, 0x00, 0x05, 0xbf, 0x21]
        );
        assert_eq!(&pes[14..17], &[0xff, 0xf1, 0x4c]);
    }
}
