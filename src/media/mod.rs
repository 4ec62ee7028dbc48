//! The media model every protocol shares: tracks, codec parameters, and the frame format kept in
//! the [`ring::MediaRing`].
//!
//! Owns: the types that cross module boundaries between ingest and the protocol shells. Does no
//! I/O and reads no clock.
//!
//! **Frame payload format in the ring** (what every packetizer/muxer reads):
//! - video (H.264/H.265): one access unit as a sequence of NAL units, each prefixed with a 4-byte
//!   big-endian length (the "AVCC" layout with `lengthSizeMinusOne = 3`). No start codes, no
//!   emulation-prevention changes. Keyframes carry their parameter sets (VPS/SPS/PPS) in front.
//! - audio (AAC): one `raw_data_block` with the ADTS header stripped.

pub mod aac;
pub mod bits;
pub mod budget;
pub mod fanout;
pub mod h264;
pub mod h265;
pub mod ring;

/// Which elementary stream of a media stream a frame belongs to. A stream has at most one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Track {
    Video = 0,
    Audio = 1,
}

impl Track {
    pub const ALL: [Track; 2] = [Track::Video, Track::Audio];
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Codecs rillcast carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    H265,
    Aac,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::H265 => "H265",
            Codec::Aac => "AAC",
        }
    }
}

/// Video decoder configuration, captured from the bitstream's parameter sets. Changes rarely
/// (encoder restart, resolution change); held outside the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoParams {
    pub codec: Codec,
    /// H.265 only: the VPS NAL unit (with its 2-byte header, no start code).
    pub vps: Vec<u8>,
    /// SPS NAL unit (with header, no start code).
    pub sps: Vec<u8>,
    /// PPS NAL unit (with header, no start code).
    pub pps: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// Frame rate from the SPS VUI timing info, as (num, den) frames per second, when present.
    pub fps: Option<(u32, u32)>,
}

/// AAC decoder configuration, from the ADTS header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioParams {
    /// MPEG-4 audio object type (2 = AAC LC).
    pub object_type: u8,
    /// Index into the MPEG-4 sampling frequency table.
    pub sample_rate_index: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AudioParams {
    /// The 2-byte AudioSpecificConfig (ISO 14496-3 1.6.2.1) for SDP `config=` and FLV/MP4.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let v: u16 = ((self.object_type as u16) << 11)
            | ((self.sample_rate_index as u16 & 0xf) << 7)
            | ((self.channels as u16 & 0xf) << 3);
        v.to_be_bytes()
    }
}

/// What the ring knows about one stored frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    pub track: Track,
    /// Presentation time in the track's clock (90 kHz for video, the sample rate for audio).
    pub pts: u64,
    /// Decode time in the same clock; equal to `pts` for streams without reordering.
    pub dts: u64,
    /// Video: an IDR/IRAP access unit (parameter sets in front). Audio: always true.
    pub keyframe: bool,
}

/// RTP/MPEG clock rate of video tracks.
pub const VIDEO_CLOCK_HZ: u32 = 90_000;
