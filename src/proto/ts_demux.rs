//! MPEG-2 transport stream demuxer for ingest (a camera pushing TS over TCP/UDP).
//!
//! Owns: packet sync (resync on 0x47, packets split across pushes), PAT/PMT parsing (CRC
//! checked), and PES reassembly for the first H.264/H.265 stream and the first AAC (ADTS)
//! stream of the first program (ISO/IEC 13818-1 §2.4.3, §2.4.4). Each complete PES is handed
//! to the caller as a [`PesOut`] borrowing the demuxer's buffer.
//!
//! Must not: do I/O, allocate after construction, grow buffers, or panic on any input. A PES
//! larger than the configured maximum is dropped and counted. PSI sections spanning more than
//! one TS packet are not supported (they don't occur for the one-program streams cameras send)
//! and are counted as `psi_errors`.

use super::ts::{
    crc32_mpeg2, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_H265, TS_PACKET_LEN,
};

const SYNC_BYTE: u8 = 0x47;
const STAGE_LEN: usize = TS_PACKET_LEN + 1;

/// One reassembled PES packet's elementary-stream payload.
#[derive(Debug, PartialEq, Eq)]
pub struct PesOut<'a> {
    /// PMT stream_type (0x1b H.264, 0x24 H.265, 0x0f AAC ADTS).
    pub stream_type: u8,
    pub pid: u16,
    /// 33-bit PTS in 90 kHz, if the PES header had one.
    pub pts_90k: Option<u64>,
    /// DTS in 90 kHz; equals `pts_90k` when the header had no separate DTS.
    pub dts_90k: Option<u64>,
    /// Elementary stream bytes (Annex B for video, ADTS frames for audio).
    pub payload: &'a [u8],
}

/// Counters for things the demuxer dropped or repaired. All saturating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    pub packets: u64,
    /// Bytes skipped while looking for a sync byte.
    pub resync_bytes: u64,
    /// Packets with transport_error_indicator or a reserved adaptation_field_control.
    pub bad_packets: u64,
    /// Continuity-counter gaps on a tracked PID (the in-progress PES is dropped).
    pub cc_errors: u64,
    /// PAT/PMT sections that failed length or CRC checks.
    pub psi_errors: u64,
    /// PES packets larger than the configured maximum (dropped).
    pub oversize_pes: u64,
    /// PES packets whose header didn't parse (dropped).
    pub bad_pes: u64,
    pub pes_out: u64,
}

#[derive(Debug)]
struct EsState {
    pid: u16,
    stream_type: u8,
    buf: Box<[u8]>,
    len: usize,
    /// A PES is being collected (we saw its start and nothing went wrong since).
    active: bool,
    /// The in-progress PES overflowed: skip until the next unit start.
    overflow: bool,
    last_cc: Option<u8>,
}

impl EsState {
    fn new(max_pes_bytes: usize) -> Self {
        Self {
            pid: 0x1fff,
            stream_type: 0,
            buf: vec![0u8; max_pes_bytes].into_boxed_slice(),
            len: 0,
            active: false,
            overflow: false,
            last_cc: None,
        }
    }

    fn reset(&mut self, pid: u16, stream_type: u8) {
        self.pid = pid;
        self.stream_type = stream_type;
        self.len = 0;
        self.active = false;
        self.overflow = false;
        self.last_cc = None;
    }
}

/// Sans-IO TS demuxer. Feed bytes with [`TsDemuxer::push`]; complete PES packets come out
/// through the callback. Call [`TsDemuxer::flush`] at end of stream to emit a final PES whose
/// length was unbounded (video).
#[derive(Debug)]
pub struct TsDemuxer {
    /// Bytes of a packet not yet accepted, plus the following byte (the sync check).
    stage: [u8; STAGE_LEN],
    stage_len: usize,
    pmt_pid: Option<u16>,
    pmt_version: Option<u8>,
    video: EsState,
    audio: EsState,
    stats: DemuxStats,
}

impl TsDemuxer {
    /// Allocates two PES buffers of `max_pes_bytes` each (whole PES incl. its header); the
    /// only allocation this type makes.
    pub fn new(max_pes_bytes: usize) -> Self {
        Self {
            stage: [0; STAGE_LEN],
            stage_len: 0,
            pmt_pid: None,
            pmt_version: None,
            video: EsState::new(max_pes_bytes),
            audio: EsState::new(max_pes_bytes),
            stats: DemuxStats::default(),
        }
    }

    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Stream types selected from the PMT so far: (video, audio); 0 = none.
    pub fn stream_types(&self) -> (u8, u8) {
        (self.video.stream_type, self.audio.stream_type)
    }

    /// Feeds arbitrary bytes (any chunking). Between two pushes every complete PES has been
    /// handed to `on_pes`. A packet is accepted once the byte after it is seen to be a sync
    /// byte too (so a stray 0x47 in garbage doesn't lock on); the last packet of a stream is
    /// taken by [`TsDemuxer::flush`].
    pub fn push(&mut self, mut data: &[u8], on_pes: &mut impl FnMut(PesOut<'_>)) {
        while !data.is_empty() {
            if self.stage_len == 0 {
                if data[0] != SYNC_BYTE {
                    let skip = data
                        .iter()
                        .position(|&b| b == SYNC_BYTE)
                        .unwrap_or(data.len());
                    self.count_resync(skip);
                    data = &data[skip..];
                    continue;
                }
                // Fast path: a whole packet plus the next sync byte in view, no copy.
                if data.len() > TS_PACKET_LEN && data[TS_PACKET_LEN] == SYNC_BYTE {
                    let (pkt, rest) = data.split_at(TS_PACKET_LEN);
                    // `pkt` has exactly TS_PACKET_LEN bytes, so the conversion can't fail.
                    if let Ok(pkt) = <&[u8; TS_PACKET_LEN]>::try_from(pkt) {
                        self.handle_packet(pkt, on_pes);
                    }
                    data = rest;
                    continue;
                }
            }
            let take = (STAGE_LEN - self.stage_len).min(data.len());
            self.stage[self.stage_len..self.stage_len + take].copy_from_slice(&data[..take]);
            self.stage_len += take;
            data = &data[take..];
            if self.stage_len < STAGE_LEN {
                continue;
            }
            if self.stage[TS_PACKET_LEN] == SYNC_BYTE {
                let mut pkt = [0u8; TS_PACKET_LEN];
                pkt.copy_from_slice(&self.stage[..TS_PACKET_LEN]);
                self.handle_packet(&pkt, on_pes);
                self.stage[0] = SYNC_BYTE;
                self.stage_len = 1;
            } else {
                // Lost sync: drop up to the next 0x47 after the first byte and retry.
                let skip = self.stage[1..]
                    .iter()
                    .position(|&b| b == SYNC_BYTE)
                    .map_or(STAGE_LEN, |i| i + 1);
                self.count_resync(skip);
                self.stage.copy_within(skip.min(STAGE_LEN).., 0);
                self.stage_len = STAGE_LEN - skip.min(STAGE_LEN);
            }
        }
    }

    fn count_resync(&mut self, n: usize) {
        self.stats.resync_bytes = self.stats.resync_bytes.saturating_add(n as u64);
    }

    /// Emits any PES still being collected (end of stream).
    pub fn flush(&mut self, on_pes: &mut impl FnMut(PesOut<'_>)) {
        if self.stage_len >= TS_PACKET_LEN && self.stage[0] == SYNC_BYTE {
            let mut pkt = [0u8; TS_PACKET_LEN];
            pkt.copy_from_slice(&self.stage[..TS_PACKET_LEN]);
            self.handle_packet(&pkt, on_pes);
        }
        self.stage_len = 0;
        Self::finish(&mut self.video, &mut self.stats, on_pes);
        Self::finish(&mut self.audio, &mut self.stats, on_pes);
    }

    fn handle_packet(&mut self, pkt: &[u8; TS_PACKET_LEN], on_pes: &mut impl FnMut(PesOut<'_>)) {
        self.stats.packets = self.stats.packets.saturating_add(1);
        let tei = pkt[1] & 0x80 != 0;
        let pusi = pkt[1] & 0x40 != 0;
        let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
        let afc = (pkt[3] >> 4) & 0x3;
        let cc = pkt[3] & 0xf;
        if tei || afc == 0 {
            self.stats.bad_packets = self.stats.bad_packets.saturating_add(1);
            return;
        }
        let mut start = 4usize;
        let mut discontinuity = false;
        if afc & 0x2 != 0 {
            let af_len = pkt[4] as usize;
            if af_len > 183 {
                self.stats.bad_packets = self.stats.bad_packets.saturating_add(1);
                return;
            }
            discontinuity = af_len > 0 && pkt[5] & 0x80 != 0;
            start = 5 + af_len;
        }
        let payload: &[u8] = if afc & 0x1 != 0 { &pkt[start..] } else { &[] };

        if pid == 0 {
            if pusi {
                self.parse_pat(payload);
            }
            return;
        }
        if Some(pid) == self.pmt_pid {
            if pusi {
                self.parse_pmt(payload);
            }
            return;
        }
        let stats = &mut self.stats;
        for es in [&mut self.video, &mut self.audio] {
            if es.stream_type == 0 || es.pid != pid {
                continue;
            }
            // Continuity (§2.4.3.3): payload-carrying packets increment; a repeat of the last
            // CC is a duplicate and ignored.
            if afc & 0x1 != 0 {
                if let Some(last) = es.last_cc {
                    if cc == last && !discontinuity {
                        return;
                    }
                    if cc != (last + 1) & 0xf && !discontinuity {
                        stats.cc_errors = stats.cc_errors.saturating_add(1);
                        es.active = false;
                        es.len = 0;
                    }
                }
                es.last_cc = Some(cc);
            }
            if pusi {
                Self::finish(es, stats, on_pes);
                es.active = true;
                es.overflow = false;
                es.len = 0;
            }
            if !es.active || es.overflow {
                return;
            }
            if es.len + payload.len() > es.buf.len() {
                es.overflow = true;
                es.len = 0;
                stats.oversize_pes = stats.oversize_pes.saturating_add(1);
                return;
            }
            es.buf[es.len..es.len + payload.len()].copy_from_slice(payload);
            es.len += payload.len();
            // Bounded PES (audio): emit as soon as it's complete, don't wait for the next one.
            if es.len >= 6 {
                let pes_len = usize::from(u16::from_be_bytes([es.buf[4], es.buf[5]]));
                if pes_len != 0 && es.len >= 6 + pes_len {
                    es.len = 6 + pes_len;
                    Self::finish(es, stats, on_pes);
                }
            }
            return;
        }
    }

    fn finish(es: &mut EsState, stats: &mut DemuxStats, on_pes: &mut impl FnMut(PesOut<'_>)) {
        if !es.active || es.overflow {
            es.active = false;
            return;
        }
        es.active = false;
        let pes = &es.buf[..es.len];
        es.len = 0;
        match parse_pes(pes) {
            Some((pts, dts, payload)) => {
                stats.pes_out = stats.pes_out.saturating_add(1);
                on_pes(PesOut {
                    stream_type: es.stream_type,
                    pid: es.pid,
                    pts_90k: pts,
                    dts_90k: dts,
                    payload,
                });
            }
            None => stats.bad_pes = stats.bad_pes.saturating_add(1),
        }
    }

    /// Returns the section body (table_id..end incl. CRC) if pointer, length and CRC check out.
    fn section<'a>(&mut self, payload: &'a [u8], table_id: u8) -> Option<&'a [u8]> {
        let ptr = *payload.first()? as usize;
        let sec = payload.get(1 + ptr..)?;
        let ok = (|| {
            if *sec.first()? != table_id {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([*sec.get(1)?, *sec.get(2)?]) & 0x0fff);
            let sec = sec.get(..3 + len)?;
            if len < 9 || crc32_mpeg2(sec) != 0 {
                // CRC over a section including its CRC_32 field is 0 for a valid section.
                return None;
            }
            Some(sec)
        })();
        if ok.is_none() {
            self.stats.psi_errors = self.stats.psi_errors.saturating_add(1);
        }
        ok
    }

    fn parse_pat(&mut self, payload: &[u8]) {
        let Some(sec) = self.section(payload, 0x00) else {
            return;
        };
        // Program loop between the 8-byte header and the CRC.
        for prog in sec[8..sec.len() - 4].chunks_exact(4) {
            let number = u16::from_be_bytes([prog[0], prog[1]]);
            let pid = (u16::from(prog[2] & 0x1f) << 8) | u16::from(prog[3]);
            if number != 0 {
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt_version = None;
                }
                return;
            }
        }
    }

    fn parse_pmt(&mut self, payload: &[u8]) {
        let Some(sec) = self.section(payload, 0x02) else {
            return;
        };
        let version = (sec[5] >> 1) & 0x1f;
        if self.pmt_version == Some(version) {
            return;
        }
        let body = &sec[..sec.len() - 4];
        let Some(&[a, b]) = body.get(10..12).and_then(|s| <&[u8; 2]>::try_from(s).ok()) else {
            self.stats.psi_errors = self.stats.psi_errors.saturating_add(1);
            return;
        };
        let info_len = usize::from(u16::from_be_bytes([a, b]) & 0x0fff);
        let mut pos = 12 + info_len;
        let (mut video, mut audio) = (None, None);
        while let Some(es) = body.get(pos..pos + 5) {
            let st = es[0];
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let es_info_len = usize::from(u16::from_be_bytes([es[3], es[4]]) & 0x0fff);
            if video.is_none() && (st == STREAM_TYPE_H264 || st == STREAM_TYPE_H265) {
                video = Some((pid, st));
            } else if audio.is_none() && st == STREAM_TYPE_AAC_ADTS {
                audio = Some((pid, st));
            }
            pos += 5 + es_info_len;
        }
        self.pmt_version = Some(version);
        let (vp, vs) = video.unwrap_or((0x1fff, 0));
        if (self.video.pid, self.video.stream_type) != (vp, vs) {
            self.video.reset(vp, vs);
        }
        let (ap, ast) = audio.unwrap_or((0x1fff, 0));
        if (self.audio.pid, self.audio.stream_type) != (ap, ast) {
            self.audio.reset(ap, ast);
        }
    }
}

fn parse_ts_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 0x7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

/// Parses a PES header (§2.4.3.6): returns (pts, dts, payload).
fn parse_pes(pes: &[u8]) -> Option<(Option<u64>, Option<u64>, &[u8])> {
    if pes.get(..3)? != [0, 0, 1] {
        return None;
    }
    let flags = *pes.get(7)?;
    let hdr_len = usize::from(*pes.get(8)?);
    let payload = pes.get(9 + hdr_len..)?;
    let (pts, dts) = match flags >> 6 {
        0b10 => {
            let p = parse_ts_timestamp(pes.get(9..14).filter(|_| hdr_len >= 5)?);
            (Some(p), Some(p))
        }
        0b11 => {
            let t = pes.get(9..19).filter(|_| hdr_len >= 10)?;
            (
                Some(parse_ts_timestamp(&t[..5])),
                Some(parse_ts_timestamp(&t[5..])),
            )
        }
        _ => (None, None),
    };
    Some((pts, dts, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioParams, Codec, FrameMeta, Track};
    use crate::proto::ts::TsMuxer;

    #[derive(Debug, PartialEq)]
    struct Owned {
        st: u8,
        pts: Option<u64>,
        dts: Option<u64>,
        payload: Vec<u8>,
    }

    fn demux_chunks(d: &mut TsDemuxer, data: &[u8], chunk: usize) -> Vec<Owned> {
        let mut out = Vec::new();
        let mut cb = |p: PesOut<'_>| {
            out.push(Owned {
                st: p.stream_type,
                pts: p.pts_90k,
                dts: p.dts_90k,
                payload: p.payload.to_vec(),
            })
        };
        for c in data.chunks(chunk) {
            d.push(c, &mut cb);
        }
        d.flush(&mut cb);
        out
    }

    fn muxed_sample() -> Vec<u8> {
        let aac = AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 2,
        };
        let mut m = TsMuxer::new(Some(Codec::H264), Some(aac)).unwrap();
        let mut ts = Vec::new();
        let mut sink = |p: &[u8; 188]| ts.extend_from_slice(p);
        m.write_tables(&mut sink);
        let au: Vec<u8> = [&[0, 0, 1, 45, 0x65][..], &[0x11; 300]].concat();
        let v = FrameMeta {
            track: Track::Video,
            pts: 6000,
            dts: 3000,
            keyframe: true,
        };
        m.write_video(&v, &au[..305], &mut sink).unwrap();
        let a = FrameMeta {
            track: Track::Audio,
            pts: 1024,
            dts: 1024,
            keyframe: true,
        };
        m.write_audio(&a, &[0x22; 50], &mut sink).unwrap();
        ts
    }

    #[test]
    fn demuxes_own_muxer_output_at_any_chunking() {
        let ts = muxed_sample();
        for chunk in [1, 7, 187, 188, 189, 1000] {
            let mut d = TsDemuxer::new(4096);
            let out = demux_chunks(&mut d, &ts, chunk);
            assert_eq!(out.len(), 2, "chunk {chunk}");
            // Audio is bounded and comes out at once; video at flush.
            assert_eq!(out[0].st, 0x0f);
            assert_eq!(out[0].pts, Some(1920));
            assert_eq!(out[0].payload.len(), 57);
            assert_eq!(&out[0].payload[..2], &[0xff, 0xf1]);
            assert_eq!(out[1].st, 0x1b);
            assert_eq!((out[1].pts, out[1].dts), (Some(6000), Some(3000)));
            assert_eq!(&out[1].payload[..10], &[0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1]);
            assert_eq!(out[1].payload.len(), 6 + 305);
            assert_eq!(d.stats().resync_bytes, 0);
        }
    }

    #[test]
    fn resyncs_after_garbage_and_counts_oversize() {
        let ts = muxed_sample();
        let mut data = vec![0x47, 1, 2, 3, 0x47, 0x47];
        data.extend_from_slice(&ts);
        let mut d = TsDemuxer::new(4096);
        let out = demux_chunks(&mut d, &data, 50);
        assert_eq!(out.len(), 2);
        assert_eq!(d.stats().resync_bytes, 6);

        let mut d = TsDemuxer::new(100);
        let out = demux_chunks(&mut d, &ts, 188);
        assert_eq!(out.len(), 1, "video PES (> 100 bytes) dropped, audio kept");
        assert_eq!(d.stats().oversize_pes, 1);
    }

    #[test]
    fn never_panics_on_garbage() {
        // Deterministic pseudo-random bytes with frequent sync bytes, plus mutated real TS.
        let mut x = 0x1234_5678u32;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let base = muxed_sample();
        for round in 0..200 {
            let mut data = base.clone();
            for _ in 0..(round % 20) {
                let i = rnd() as usize % data.len();
                data[i] = rnd() as u8;
            }
            if round % 3 == 0 {
                for b in data.iter_mut().step_by(5) {
                    *b = if rnd() % 4 == 0 { 0x47 } else { rnd() as u8 };
                }
            }
            let mut d = TsDemuxer::new(512);
            let _ = demux_chunks(&mut d, &data, 1 + round % 200);
        }
    }

    /// Fixture: `ffmpeg -f lavfi -i testsrc2=size=160x120:rate=10 -f lavfi -i sine -t 1
    /// -c:v libx264 -bf 0 -c:a aac -f mpegts` (tests/fixtures/README.md). ffmpeg packs several
    /// ADTS frames into one audio PES; ffprobe lists frames, so audio PES are split here by
    /// ADTS frame_length, each later frame stamped +1024 samples (floored, as ffmpeg does).
    #[test]
    fn demuxes_ffmpeg_fixture_like_ffprobe() {
        let ts = include_bytes!("../../tests/fixtures/ffmpeg_testsrc2_sine_1s.ts");
        let expect =
            include_str!("../../tests/fixtures/ffmpeg_testsrc2_sine_1s.ffprobe_packets.csv");
        let mut d = TsDemuxer::new(256 * 1024);
        let out = demux_chunks(&mut d, ts, 1316);
        assert_eq!(d.stats().cc_errors, 0);
        assert_eq!(d.stats().psi_errors, 0);
        assert_eq!(d.stats().resync_bytes, 0);
        assert_eq!(d.stream_types(), (0x1b, 0x0f));
        let mut video = String::new();
        let mut audio = Vec::new(); // (pts, first frame of its PES, size)
        use std::fmt::Write;
        for p in &out {
            let (pts, dts) = (p.pts.unwrap(), p.dts.unwrap());
            if p.st == 0x1b {
                writeln!(video, "video,{pts},{dts},{}", p.payload.len()).unwrap();
                continue;
            }
            let mut rest = &p.payload[..];
            let mut k = 0u64;
            while rest.len() >= 7 {
                assert_eq!(&rest[..2], &[0xff, 0xf1]);
                let sr = [96_000u64, 88_200, 64_000, 48_000, 44_100, 32_000]
                    [((rest[2] >> 2) & 0xf) as usize];
                let len = ((rest[3] as usize & 3) << 11)
                    | ((rest[4] as usize) << 3)
                    | (rest[5] as usize >> 5);
                audio.push((pts + k * 1024 * 90_000 / sr, k == 0, len));
                rest = &rest[len..];
                k += 1;
            }
            assert!(rest.is_empty());
        }
        let n_video = video.lines().count();
        let expect_video: String = expect
            .lines()
            .take(n_video)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(video, expect_video);
        let expect_audio: Vec<&str> = expect.lines().skip(n_video).collect();
        assert_eq!(audio.len(), expect_audio.len());
        for ((pts, pes_start, len), line) in audio.iter().zip(expect_audio) {
            let f: Vec<u64> = line
                .split(',')
                .skip(1)
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(f[2], *len as u64, "{line}");
            // A PES's own PTS must match exactly; ffprobe interpolates later frames with its
            // own rounding, so allow 1 tick there.
            if *pes_start {
                assert_eq!(f[0], *pts, "{line}");
            } else {
                assert!(f[0].abs_diff(*pts) <= 1, "{line} vs {pts}");
            }
        }
    }
}
