//! Fragmented MP4 (ISO/IEC 14496-12 "ISO BMFF", CMAF-shaped) muxer, sans-IO.
//!
//! Owns: the init segment (`ftyp` + `moov` with `avcC`/`hvcC`/`esds` sample entries and
//! `mvex`) built from the stream's parameter sets, and one fragment (`moof` + `mdat`) per
//! ring frame, written into a caller buffer. Must not: do I/O, read a clock, or allocate per
//! frame ([`Fmp4Muxer::write_fragment`] writes into the slice it is given; only
//! [`write_init`], called once per parameter generation, fills a `Vec`). Never panics on
//! input: a malformed access unit or a buffer too small is an [`Fmp4Error`].
//!
//! **One fragment per frame, one track per fragment.** For sub-second latency a fragment
//! closes the moment its frame lands, so a video frame is its own `moof`+`mdat` and so is each
//! AAC frame (one `traf`). Grouping audio into the next video fragment would hold audio back
//! by up to a frame and tie the two tracks' timing together; a `moof` per AAC frame costs
//! 112 bytes (~5 KiB/s at 48 kHz), which is cheap next to the video. MSE and ffmpeg accept
//! fragments that carry only some of the init segment's tracks.
//!
//! A fragment's sample duration is not known until the next frame of its track arrives; it is
//! the track's previous frame interval (the timeline is exact anyway: every `tfdt` is the
//! frame's decode time). MSE keeps a frame that the next one overlaps (coded frame processing,
//! step "remove window timestamp" is 1 µs), so an overestimate is harmless.
//!
//! Parameter sets are carried in the sample entry (`avc1`/`hvc1`), so they (and access unit
//! delimiters) are stripped from the samples: Safari requires `hvc1` for HEVC, and `hvc1` /
//! `avc1` say parameter sets are out of band (ISO/IEC 14496-15 §5.3.2, §8.3.2).

use crate::media::{h264, h265, AudioParams, Codec, FrameMeta, Track, VideoParams};

/// The track ID of video in the init segment and its fragments.
pub const VIDEO_TRACK_ID: u32 = 1;
/// The track ID of audio.
pub const AUDIO_TRACK_ID: u32 = 2;
/// `moof` (with one `traf`) plus the `mdat` header: what a fragment adds to its samples.
pub const FRAGMENT_OVERHEAD_BYTES: usize = MOOF_LEN + 8;
const MOOF_LEN: usize = 8 + 16 + TRAF_LEN;
const TRAF_LEN: usize = 8 + 16 + 20 + 36;
/// Timescale of video tracks (the ring's 90 kHz clock).
const VIDEO_TIMESCALE: u32 = 90_000;
/// An AAC-LC frame's samples (ISO/IEC 14496-3 §4.5.2.1: 1024 per raw_data_block).
const AAC_FRAME_SAMPLES: u32 = 1024;
/// Sample flags (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on nothing.
const FLAGS_SYNC: u32 = 0x0200_0000;
/// sample_depends_on = 1 and sample_is_non_sync_sample.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Why the muxer refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmp4Error {
    /// The caller's buffer cannot hold the box or fragment.
    BufferTooSmall,
    /// The parameter sets could not be parsed (or a codec has none: audio as video).
    BadParams,
    /// An access unit's 4-byte NAL lengths run past its end.
    BadAccessUnit,
    /// A frame for a track the init segment does not have.
    NoSuchTrack,
    /// Nothing to describe: no video and no audio.
    NoTracks,
}

/// Boxes written into a slice, sizes patched when a box ends. Every write checks the room.
struct BoxWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> BoxWriter<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        BoxWriter {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        let end = self.pos.saturating_add(b.len());
        match self.buf.get_mut(self.pos..end) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(b);
                self.pos = end;
            }
            _ => self.overflow = true,
        }
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.u8(0);
        }
    }

    /// Starts a box; returns where its size goes, for [`BoxWriter::end`].
    fn begin(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.pos;
        self.u32(0);
        self.bytes(kind);
        at
    }
    /// Starts a full box (version and flags).
    fn begin_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.begin(kind);
        self.u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
        at
    }
    fn end(&mut self, at: usize) {
        let len = self.pos.saturating_sub(at) as u32;
        self.patch_u32(at, len);
    }
    fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(dst) = self.buf.get_mut(at..at + 4) {
            dst.copy_from_slice(&v.to_be_bytes());
        }
    }

    fn finish(self) -> Result<usize, Fmp4Error> {
        if self.overflow {
            Err(Fmp4Error::BufferTooSmall)
        } else {
            Ok(self.pos)
        }
    }
}

/// The unity matrix of `mvhd`/`tkhd` (§8.2.2.3).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// What an init segment describes, for the fragments that follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitInfo {
    pub video: Option<Codec>,
    /// Audio sample rate (the audio track's timescale).
    pub audio_rate_hz: Option<u32>,
}

/// Writes the init segment (`ftyp` + `moov`) for these tracks into `out` (cleared first).
/// Called once per parameter generation, not per frame, so it may grow `out`.
pub fn write_init(
    video: Option<&VideoParams>,
    audio: Option<&AudioParams>,
    out: &mut Vec<u8>,
) -> Result<InitInfo, Fmp4Error> {
    if video.is_none() && audio.is_none() {
        return Err(Fmp4Error::NoTracks);
    }
    let ps_len = video.map_or(0, |v| v.vps.len() + v.sps.len() + v.pps.len());
    out.clear();
    // Both tracks' boxes take ~1.1 KiB besides the parameter sets.
    out.resize(2048 + ps_len, 0);
    let len = {
        let mut w = BoxWriter::new(out);
        let ftyp = w.begin(b"ftyp");
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"isom", b"mp41"] {
            w.bytes(brand);
        }
        w.end(ftyp);
        let moov = w.begin(b"moov");
        let mvhd = w.begin_full(b"mvhd", 0, 0);
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(1000); // timescale
        w.u32(0); // duration: unknown (live)
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(10);
        for m in MATRIX {
            w.u32(m);
        }
        w.zeros(24); // pre_defined
        w.u32(AUDIO_TRACK_ID + 1); // next_track_ID
        w.end(mvhd);
        if let Some(v) = video {
            write_video_trak(&mut w, v)?;
        }
        if let Some(a) = audio {
            write_audio_trak(&mut w, a);
        }
        let mvex = w.begin(b"mvex");
        for (id, present) in [
            (VIDEO_TRACK_ID, video.is_some()),
            (AUDIO_TRACK_ID, audio.is_some()),
        ] {
            if present {
                let trex = w.begin_full(b"trex", 0, 0);
                w.u32(id);
                w.u32(1); // default_sample_description_index
                w.u32(0); // default_sample_duration
                w.u32(0); // default_sample_size
                w.u32(0); // default_sample_flags
                w.end(trex);
            }
        }
        w.end(mvex);
        w.end(moov);
        w.finish()?
    };
    out.truncate(len);
    Ok(InitInfo {
        video: video.map(|v| v.codec),
        audio_rate_hz: audio.map(|a| a.sample_rate),
    })
}

fn write_tkhd(w: &mut BoxWriter<'_>, id: u32, audio: bool, width: u32, height: u32) {
    // flags: track_enabled | track_in_movie.
    let tkhd = w.begin_full(b"tkhd", 0, 3);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(id);
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if audio { 0x0100 } else { 0 }); // volume
    w.u16(0);
    for m in MATRIX {
        w.u32(m);
    }
    w.u32(width << 16);
    w.u32(height << 16);
    w.end(tkhd);
}

fn write_mdhd_hdlr(w: &mut BoxWriter<'_>, timescale: u32, handler: &[u8; 4], name: &[u8]) {
    let mdhd = w.begin_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(timescale);
    w.u32(0);
    w.u16(0x55c4); // language "und" (ISO 639-2/T, 5 bits per letter)
    w.u16(0);
    w.end(mdhd);
    let hdlr = w.begin_full(b"hdlr", 0, 0);
    w.u32(0); // pre_defined
    w.bytes(handler);
    w.zeros(12);
    w.bytes(name);
    w.u8(0);
    w.end(hdlr);
}

/// `dinf` + the empty sample tables of a fragmented file (§8.8.1: samples are in fragments).
fn write_dinf(w: &mut BoxWriter<'_>) {
    let dinf = w.begin(b"dinf");
    let dref = w.begin_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.begin_full(b"url ", 0, 1); // flags 1: media in this file
    w.end(url);
    w.end(dref);
    w.end(dinf);
}

fn write_empty_tables(w: &mut BoxWriter<'_>) {
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = w.begin_full(kind, 0, 0);
        w.u32(0);
        w.end(b);
    }
    let stsz = w.begin_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.end(stsz);
}

fn write_video_trak(w: &mut BoxWriter<'_>, v: &VideoParams) -> Result<(), Fmp4Error> {
    let trak = w.begin(b"trak");
    write_tkhd(w, VIDEO_TRACK_ID, false, v.width, v.height);
    let mdia = w.begin(b"mdia");
    write_mdhd_hdlr(w, VIDEO_TIMESCALE, b"vide", b"VideoHandler");
    let minf = w.begin(b"minf");
    let vmhd = w.begin_full(b"vmhd", 0, 1);
    w.zeros(8); // graphicsmode, opcolor
    w.end(vmhd);
    write_dinf(w);
    let stbl = w.begin(b"stbl");
    let stsd = w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    let entry = w.begin(match v.codec {
        Codec::H264 => b"avc1",
        Codec::H265 => b"hvc1",
        Codec::Aac => return Err(Fmp4Error::BadParams),
    });
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved
    w.u16(v.width.min(0xffff) as u16);
    w.u16(v.height.min(0xffff) as u16);
    w.u32(0x0048_0000); // 72 dpi
    w.u32(0x0048_0000);
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1
    match v.codec {
        Codec::H264 => write_avcc(w, v)?,
        _ => write_hvcc(w, v)?,
    }
    w.end(entry);
    w.end(stsd);
    write_empty_tables(w);
    w.end(stbl);
    w.end(minf);
    w.end(mdia);
    w.end(trak);
    Ok(())
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
fn write_avcc(w: &mut BoxWriter<'_>, v: &VideoParams) -> Result<(), Fmp4Error> {
    let info = h264::parse_sps(&v.sps).map_err(|_| Fmp4Error::BadParams)?;
    let sps_len = u16::try_from(v.sps.len()).map_err(|_| Fmp4Error::BadParams)?;
    let pps_len = u16::try_from(v.pps.len()).map_err(|_| Fmp4Error::BadParams)?;
    let avcc = w.begin(b"avcC");
    w.u8(1);
    w.u8(info.profile_idc);
    w.u8(info.constraint_flags);
    w.u8(info.level_idc);
    w.u8(0xfc | 3); // lengthSizeMinusOne = 3
    w.u8(0xe0 | 1); // one SPS
    w.u16(sps_len);
    w.bytes(&v.sps);
    w.u8(1); // one PPS
    w.u16(pps_len);
    w.bytes(&v.pps);
    if matches!(info.profile_idc, 100 | 110 | 122 | 144) {
        let depth = info.bit_depth_luma.saturating_sub(8) & 7;
        w.u8(0xfc | (info.chroma_format_idc & 3));
        w.u8(0xf8 | depth);
        w.u8(0xf8 | depth); // chroma depth: the luma's (rillcast keeps one)
        w.u8(0); // numOfSequenceParameterSetExt
    }
    w.end(avcc);
    Ok(())
}

/// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1).
fn write_hvcc(w: &mut BoxWriter<'_>, v: &VideoParams) -> Result<(), Fmp4Error> {
    let info = h265::parse_sps(&v.sps).map_err(|_| Fmp4Error::BadParams)?;
    // sps_temporal_id_nesting_flag: the last bit of the byte after the 2-byte NAL header.
    let nested = v.sps.get(2).ok_or(Fmp4Error::BadParams)? & 1;
    let hvcc = w.begin(b"hvcC");
    w.u8(1);
    w.u8((info.general_profile_space & 3) << 6
        | u8::from(info.general_tier_flag) << 5
        | (info.general_profile_idc & 0x1f));
    w.u32(info.general_profile_compatibility_flags);
    w.bytes(&info.general_constraint_flags);
    w.u8(info.general_level_idc);
    w.u16(0xf000); // min_spatial_segmentation_idc = 0
    w.u8(0xfc); // parallelismType = 0 (unknown)
    w.u8(0xfc | (info.chroma_format_idc & 3));
    let depth = info.bit_depth_luma.saturating_sub(8) & 7;
    w.u8(0xf8 | depth);
    w.u8(0xf8 | depth);
    w.u16(0); // avgFrameRate: unspecified
              // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne = 3.
    w.u8((info.max_sub_layers & 7) << 3 | nested << 2 | 3);
    w.u8(3); // numOfArrays
    for (nal_type, nal) in [(32u8, &v.vps), (33, &v.sps), (34, &v.pps)] {
        let len = u16::try_from(nal.len()).map_err(|_| Fmp4Error::BadParams)?;
        w.u8(0x80 | nal_type); // array_completeness = 1
        w.u16(1);
        w.u16(len);
        w.bytes(nal);
    }
    w.end(hvcc);
    Ok(())
}

fn write_audio_trak(w: &mut BoxWriter<'_>, a: &AudioParams) {
    let trak = w.begin(b"trak");
    write_tkhd(w, AUDIO_TRACK_ID, true, 0, 0);
    let mdia = w.begin(b"mdia");
    write_mdhd_hdlr(w, a.sample_rate.max(1), b"soun", b"SoundHandler");
    let minf = w.begin(b"minf");
    let smhd = w.begin_full(b"smhd", 0, 0);
    w.u32(0); // balance, reserved
    w.end(smhd);
    write_dinf(w);
    let stbl = w.begin(b"stbl");
    let stsd = w.begin_full(b"stsd", 0, 0);
    w.u32(1);
    let mp4a = w.begin(b"mp4a");
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(u16::from(a.channels.max(1)));
    w.u16(16); // samplesize
    w.u32(0); // pre_defined, reserved
    w.u32(a.sample_rate.min(0xffff) << 16);
    write_esds(w, a);
    w.end(mp4a);
    w.end(stsd);
    write_empty_tables(w);
    w.end(stbl);
    w.end(minf);
    w.end(mdia);
    w.end(trak);
}

/// `esds`: ES_Descriptor with the AudioSpecificConfig (ISO/IEC 14496-1 §7.2.6.5, 14496-14
/// §5.6). Every descriptor is shorter than 128 bytes, so each length is one byte.
fn write_esds(w: &mut BoxWriter<'_>, a: &AudioParams) {
    let asc = a.audio_specific_config();
    let esds = w.begin_full(b"esds", 0, 0);
    w.u8(0x03); // ES_DescrTag
    w.u8(3 + 2 + 13 + 2 + asc.len() as u8 + 3);
    w.u16(AUDIO_TRACK_ID as u16); // ES_ID
    w.u8(0); // no dependency, URL, OCR
    w.u8(0x04); // DecoderConfigDescrTag
    w.u8(13 + 2 + asc.len() as u8);
    w.u8(0x40); // objectTypeIndication: MPEG-4 Audio
    w.u8(0x15); // streamType 5 (audio) << 2 | upStream 0 | reserved 1
    w.bytes(&[0, 0, 0]); // bufferSizeDB
    w.u32(0); // maxBitrate
    w.u32(0); // avgBitrate
    w.u8(0x05); // DecSpecificInfoTag
    w.u8(asc.len() as u8);
    w.bytes(&asc);
    w.u8(0x06); // SLConfigDescrTag
    w.u8(1);
    w.u8(0x02); // predefined: MP4
    w.end(esds);
}

/// Whether a NAL unit is a parameter set or delimiter (carried in the sample entry instead).
fn out_of_band(codec: Codec, nal: &[u8]) -> bool {
    match (codec, nal.first()) {
        (Codec::H264, Some(&h)) => matches!(h264::nal_type(h), 7..=9),
        (Codec::H265, Some(&h)) => matches!(h265::nal_type(h), 32..=35),
        _ => false,
    }
}

/// Per-track fragment state: the `mfhd` sequence and the last decode time (for durations).
#[derive(Clone, Copy, Debug, Default)]
struct TrackState {
    last_dts: Option<u64>,
    last_duration: u32,
}

/// Writes fragments for the tracks of one init segment. Holds only counters: no buffers.
#[derive(Clone, Debug)]
pub struct Fmp4Muxer {
    info: InitInfo,
    sequence: u32,
    tracks: [TrackState; 2],
}

impl Fmp4Muxer {
    /// A muxer for the tracks [`write_init`] described.
    pub fn new(info: InitInfo) -> Self {
        Fmp4Muxer {
            info,
            sequence: 0,
            tracks: [TrackState::default(); 2],
        }
    }

    pub fn info(&self) -> InitInfo {
        self.info
    }

    /// Writes one frame (ring payload format, see `crate::media`) as `moof` + `mdat` into
    /// `out`; returns the fragment's length. Video parameter sets and delimiters are left out
    /// of the sample (they are in the init segment).
    pub fn write_fragment(
        &mut self,
        meta: &FrameMeta,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Fmp4Error> {
        let (track_id, state_ix) = match meta.track {
            Track::Video if self.info.video.is_some() => (VIDEO_TRACK_ID, 0),
            Track::Audio if self.info.audio_rate_hz.is_some() => (AUDIO_TRACK_ID, 1),
            _ => return Err(Fmp4Error::NoSuchTrack),
        };
        // The samples first, after the headers, so their length is known when those are
        // written.
        let body = out
            .get_mut(FRAGMENT_OVERHEAD_BYTES..)
            .ok_or(Fmp4Error::BufferTooSmall)?;
        let sample_len = match (meta.track, self.info.video) {
            (Track::Video, Some(codec)) => copy_sample(codec, data, body)?,
            _ => {
                let dst = body
                    .get_mut(..data.len())
                    .ok_or(Fmp4Error::BufferTooSmall)?;
                dst.copy_from_slice(data);
                data.len()
            }
        };
        let (duration, flags) = match meta.track {
            Track::Video => {
                let st = &mut self.tracks[state_ix];
                let d = match st.last_dts {
                    // A sane interval (up to 1 s): this frame probably lasts as long.
                    Some(prev) if meta.dts > prev && meta.dts - prev <= 90_000 => {
                        (meta.dts - prev) as u32
                    }
                    _ if st.last_duration > 0 => st.last_duration,
                    _ => VIDEO_TIMESCALE / 30,
                };
                st.last_dts = Some(meta.dts);
                st.last_duration = d;
                let f = if meta.keyframe {
                    FLAGS_SYNC
                } else {
                    FLAGS_NON_SYNC
                };
                (d, f)
            }
            Track::Audio => (AAC_FRAME_SAMPLES, FLAGS_SYNC),
        };
        let cto = meta.pts.wrapping_sub(meta.dts) as i64;
        let cto = cto.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        self.sequence = self.sequence.wrapping_add(1);
        let mut w = BoxWriter::new(out);
        let moof = w.begin(b"moof");
        let mfhd = w.begin_full(b"mfhd", 0, 0);
        w.u32(self.sequence);
        w.end(mfhd);
        let traf = w.begin(b"traf");
        let tfhd = w.begin_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
        w.u32(track_id);
        w.end(tfhd);
        let tfdt = w.begin_full(b"tfdt", 1, 0);
        w.u64(meta.dts);
        w.end(tfdt);
        // data-offset, sample-duration, -size, -flags, -composition-time-offset present.
        let trun = w.begin_full(b"trun", 1, 0x0f01);
        w.u32(1);
        w.u32(FRAGMENT_OVERHEAD_BYTES as u32); // data_offset from the moof's first byte
        w.u32(duration);
        w.u32(sample_len as u32);
        w.u32(flags);
        w.u32(cto as u32);
        w.end(trun);
        w.end(traf);
        w.end(moof);
        w.u32((8 + sample_len) as u32);
        w.bytes(b"mdat");
        let head = w.finish()?;
        debug_assert_eq!(head, FRAGMENT_OVERHEAD_BYTES);
        Ok(FRAGMENT_OVERHEAD_BYTES + sample_len)
    }
}

/// Copies the NAL units of an access unit (4-byte lengths) into `dst`, leaving out parameter
/// sets and delimiters. Returns the bytes written.
fn copy_sample(codec: Codec, au: &[u8], dst: &mut [u8]) -> Result<usize, Fmp4Error> {
    let mut rest = au;
    let mut n = 0;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(Fmp4Error::BadAccessUnit)?;
        let len = u32::from_be_bytes(*len) as usize;
        let nal = tail.get(..len).ok_or(Fmp4Error::BadAccessUnit)?;
        rest = &tail[len..];
        if out_of_band(codec, nal) {
            continue;
        }
        let d = dst
            .get_mut(n..n + 4 + len)
            .ok_or(Fmp4Error::BufferTooSmall)?;
        d[..4].copy_from_slice(&(len as u32).to_be_bytes());
        d[4..].copy_from_slice(nal);
        n += 4 + len;
    }
    Ok(n)
}

/// The `tfdt` decode time of a fragment this muxer wrote (for tests and the store's checks).
pub fn fragment_decode_time(fragment: &[u8]) -> Option<u64> {
    // moof(8) mfhd(16) traf(8) tfhd(16) tfdt header(12) → the u64.
    let at = 8 + 16 + 8 + 16;
    if fragment.get(at + 4..at + 8)? != b"tfdt" {
        return None;
    }
    Some(u64::from_be_bytes(
        fragment.get(at + 12..at + 20)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Baseline 3.1 320x240 SPS and PPS (the HLS tests' testsrc vectors).
    fn h264_params() -> VideoParams {
        crate::ingest::source::video_params(
            Codec::H264,
            &[],
            &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x05, 0x07, 0xe8, 0x40],
            &[0x68, 0xce, 0x3c, 0x80],
        )
    }

    fn aac() -> AudioParams {
        AudioParams {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48_000,
            channels: 1,
        }
    }

    /// NAL units of an Annex B byte stream (start codes of 3 or 4 bytes).
    pub(crate) fn annexb_nals(b: &[u8]) -> Vec<&[u8]> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= b.len() {
            if b[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let mut out = Vec::new();
        for (k, &s) in starts.iter().enumerate() {
            let mut e = starts.get(k + 1).map_or(b.len(), |&n| n - 3);
            while e > s && b[e - 1] == 0 {
                e -= 1;
            }
            out.push(&b[s..e]);
        }
        out
    }

    fn find<'a>(hay: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
        let i = hay
            .windows(4)
            .position(|w| w == kind)
            .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(kind)));
        let len = u32::from_be_bytes(hay[i - 4..i].try_into().unwrap()) as usize;
        &hay[i - 4..i - 4 + len]
    }

    #[test]
    fn avcc_is_byte_exact() {
        let mut init = Vec::new();
        write_init(Some(&h264_params()), None, &mut init).unwrap();
        let avcc = find(&init, b"avcC");
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 32, b'a', b'v', b'c', b'C',
            1, 0x42, 0xc0, 0x1f, 0xff, 0xe1,
            0, 9, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x05, 0x07, 0xe8, 0x40,
            1, 0, 4, 0x68, 0xce, 0x3c, 0x80,
        ];
        assert_eq!(avcc, want);
        // avc1 sample entry: width 320, height 240 after 24 bytes of zeros/index.
        let avc1 = find(&init, b"avc1");
        assert_eq!(&avc1[32..36], &[0x01, 0x40, 0x00, 0xf0]);
        // tkhd width/height are 16.16 fixed point.
        let tkhd = find(&init, b"tkhd");
        assert_eq!(&tkhd[tkhd.len() - 8..], &[1, 0x40, 0, 0, 0, 0xf0, 0, 0]);
        assert_eq!(&init[..8], b"\0\0\0\x1cftyp");
        // Every box's size adds up to the whole.
        let moov = find(&init, b"moov");
        assert_eq!(28 + moov.len(), init.len());
    }

    #[test]
    fn esds_is_byte_exact() {
        let mut init = Vec::new();
        let info = write_init(None, Some(&aac()), &mut init).unwrap();
        assert_eq!(info.audio_rate_hz, Some(48_000));
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 39, b'e', b's', b'd', b's', 0, 0, 0, 0,
            0x03, 25, 0, 2, 0,
            0x04, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0x05, 2, 0x11, 0x88,
            0x06, 1, 0x02,
        ];
        assert_eq!(find(&init, b"esds"), want);
        let mdhd = find(&init, b"mdhd");
        assert_eq!(&mdhd[20..24], &48_000u32.to_be_bytes());
        let mp4a = find(&init, b"mp4a");
        // channelcount 1, samplesize 16, then the rate in 16.16.
        assert_eq!(&mp4a[24..28], &[0, 1, 0, 16]);
        assert_eq!(&mp4a[32..36], &[0xbb, 0x80, 0, 0]);
    }

    #[test]
    fn hvcc_from_x265_parameter_sets() {
        let nals = annexb_nals(include_bytes!(
            "../../tests/fixtures/ffmpeg_testsrc_160x120_x265.h265"
        ));
        let of = |t: u8| {
            nals.iter()
                .find(|n| h265::nal_type(n[0]) == t)
                .unwrap()
                .to_vec()
        };
        let (vps, sps, pps) = (of(32), of(33), of(34));
        let v = crate::ingest::source::video_params(Codec::H265, &vps, &sps, &pps);
        assert_eq!((v.width, v.height), (160, 120));
        let mut init = Vec::new();
        write_init(Some(&v), None, &mut init).unwrap();
        let hvcc = find(&init, b"hvcC");
        let info = h265::parse_sps(&sps).unwrap();
        assert_eq!(hvcc[8], 1);
        assert_eq!(hvcc[9], info.general_profile_idc);
        assert_eq!(
            &hvcc[10..14],
            &info.general_profile_compatibility_flags.to_be_bytes()
        );
        assert_eq!(hvcc[20], info.general_level_idc);
        assert_eq!(hvcc[29] & 3, 3, "lengthSizeMinusOne");
        assert_eq!(hvcc[30], 3, "three arrays");
        assert_eq!(hvcc[31], 0x80 | 32);
        let vlen = vps.len();
        assert_eq!(&hvcc[36..36 + vlen], &vps[..]);
        assert!(find(&init, b"hvc1").len() > 86);
    }

    #[test]
    fn fragment_is_byte_exact_and_strips_parameter_sets() {
        let mut m = Fmp4Muxer::new(InitInfo {
            video: Some(Codec::H264),
            audio_rate_hz: Some(48_000),
        });
        // SPS, PPS and an IDR slice: only the slice goes into mdat.
        let au: &[u8] = &[
            0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 0, 3, 0x65, 0xaa, 0xbb,
        ];
        let meta = FrameMeta {
            track: Track::Video,
            pts: 0x1_0000_0000 + 3000,
            dts: 0x1_0000_0000,
            keyframe: true,
        };
        let mut out = [0u8; 256];
        let n = m.write_fragment(&meta, au, &mut out).unwrap();
        #[rustfmt::skip]
        let want: &[u8] = &[
            0, 0, 0, 104, b'm', b'o', b'o', b'f',
            0, 0, 0, 16, b'm', b'f', b'h', b'd', 0, 0, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 80, b't', b'r', b'a', b'f',
            0, 0, 0, 16, b't', b'f', b'h', b'd', 0, 2, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 20, b't', b'f', b'd', b't', 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
            0, 0, 0, 36, b't', b'r', b'u', b'n', 1, 0, 0x0f, 0x01, 0, 0, 0, 1,
            0, 0, 0, 112, 0, 0, 0x0b, 0xb8, 0, 0, 0, 7, 2, 0, 0, 0, 0, 0, 0x0b, 0xb8,
            0, 0, 0, 15, b'm', b'd', b'a', b't',
            0, 0, 0, 3, 0x65, 0xaa, 0xbb,
        ];
        assert_eq!(&out[..n], want);
        assert_eq!(fragment_decode_time(&out[..n]), Some(0x1_0000_0000));
        // The next frame's duration is the interval just seen; a non-sync sample's flags.
        let meta2 = FrameMeta {
            pts: meta.dts + 3003,
            dts: meta.dts + 3003,
            keyframe: false,
            ..meta
        };
        let n = m
            .write_fragment(&meta2, &[0, 0, 0, 1, 0x41], &mut out)
            .unwrap();
        assert_eq!(&out[20..24], &[0, 0, 0, 2], "mfhd sequence");
        assert_eq!(&out[88..92], &3003u32.to_be_bytes(), "duration");
        assert_eq!(&out[96..100], &FLAGS_NON_SYNC.to_be_bytes());
        assert_eq!(&out[100..104], &[0; 4], "cto");
        assert_eq!(n, 112 + 5);
        // Audio: its own track, 1024 samples, the raw frame as is.
        let a = FrameMeta {
            track: Track::Audio,
            pts: 48_000,
            dts: 48_000,
            keyframe: true,
        };
        let n = m.write_fragment(&a, &[0x21, 0x10, 0x04], &mut out).unwrap();
        assert_eq!(&out[44..48], &AUDIO_TRACK_ID.to_be_bytes());
        assert_eq!(&out[88..92], &1024u32.to_be_bytes());
        assert_eq!(&out[112..n], &[0x21, 0x10, 0x04]);
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let mut m = Fmp4Muxer::new(InitInfo {
            video: Some(Codec::H265),
            audio_rate_hz: None,
        });
        let v = FrameMeta {
            track: Track::Video,
            pts: 0,
            dts: 0,
            keyframe: true,
        };
        let mut out = [0u8; 200];
        assert_eq!(
            m.write_fragment(&v, &[0, 0, 0, 9, 1], &mut out),
            Err(Fmp4Error::BadAccessUnit)
        );
        assert_eq!(
            m.write_fragment(&v, &[0, 0, 0, 200, 0], &mut out[..10]),
            Err(Fmp4Error::BufferTooSmall)
        );
        assert_eq!(
            m.write_fragment(&v, &[0; 100], &mut out[..150]),
            Err(Fmp4Error::BufferTooSmall)
        );
        let a = FrameMeta {
            track: Track::Audio,
            ..v
        };
        assert_eq!(
            m.write_fragment(&a, &[1], &mut out),
            Err(Fmp4Error::NoSuchTrack)
        );
        let mut init = Vec::new();
        assert_eq!(write_init(None, None, &mut init), Err(Fmp4Error::NoTracks));
        let mut bad = h264_params();
        bad.sps = vec![0x67];
        assert_eq!(
            write_init(Some(&bad), None, &mut init),
            Err(Fmp4Error::BadParams)
        );
        // Random access units: never a panic.
        let mut x: u32 = 12345;
        let mut au = [0u8; 64];
        for _ in 0..2000 {
            for b in au.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 24) as u8 & 0x0f;
            }
            let n = (x as usize) % au.len();
            let _ = m.write_fragment(&v, &au[..n], &mut out);
        }
    }
}
