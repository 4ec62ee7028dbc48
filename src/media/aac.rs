//! AAC in ADTS framing (ISO/IEC 14496-3 §1.A.2, `adts_frame()`): reading the header in front of
//! each raw AAC frame, and turning it into the decoder configuration other containers want.
//!
//! Owns: [`AdtsHeader`] (parse, header/payload lengths, [`AudioParams`]) and the sampling
//! frequency table (§1.6.3.4, Table 1.18).
//!
//! Must not: allocate, decode audio, or panic on any input. Finding the next sync word in a
//! byte stream and buffering partial frames belong to the ingest layer.

use core::fmt::Write as _;

use super::AudioParams;

/// Why bytes are not a usable ADTS header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdtsError {
    /// Fewer bytes than the header (7, or 9 and more with a CRC).
    Truncated,
    /// The first 12 bits are not the syncword `0xFFF`.
    BadSync,
    /// `layer` is not `00` (§1.A.3.2.1); this is probably MPEG-1/2 Layer I–III audio.
    BadLayer,
    /// `sampling_frequency_index` is 13 or 14 (reserved) or 15 (escape, not allowed in ADTS).
    ReservedSampleRate,
    /// `aac_frame_length` is smaller than the header it includes.
    BadFrameLength,
}

impl core::fmt::Display for AdtsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AdtsError::Truncated => "ADTS header truncated",
            AdtsError::BadSync => "ADTS syncword missing",
            AdtsError::BadLayer => "ADTS layer is not 0",
            AdtsError::ReservedSampleRate => "ADTS sampling_frequency_index reserved",
            AdtsError::BadFrameLength => "ADTS aac_frame_length shorter than its header",
        })
    }
}

/// MPEG-4 sampling frequencies by `sampling_frequency_index` (ISO/IEC 14496-3 §1.6.3.4,
/// Table 1.18); indices 13 and 14 are reserved, 15 is the explicit-frequency escape.
pub const SAMPLE_RATES_HZ: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Bytes of the fixed plus variable ADTS header, without CRC (§1.A.2.2.1).
pub const ADTS_HEADER_LEN_BYTES: usize = 7;

/// Samples per channel in one AAC raw_data_block (the 1024-sample frame of AAC LC).
pub const SAMPLES_PER_RAW_BLOCK: u32 = 1024;

/// A parsed ADTS header (`adts_fixed_header()` + `adts_variable_header()`, ISO/IEC 14496-3
/// §1.A.2.2, plus the CRC fields of `adts_header_error_check()` when present).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// `ID`: false = MPEG-4, true = MPEG-2 AAC. Both carry the same object types here.
    pub mpeg2: bool,
    /// `protection_absent`: false when a CRC follows the 7 header bytes.
    pub protection_absent: bool,
    /// MPEG-4 audio object type: `profile_ObjectType + 1` (2 = AAC LC).
    pub object_type: u8,
    /// `sampling_frequency_index` (0..=12).
    pub sample_rate_index: u8,
    /// `channel_configuration` (§1.6.3.5, Table 1.19): 1..=6 is that many channels, 7 is 8
    /// channels (7.1), 0 means a program_config_element inside the raw data defines them.
    pub channel_configuration: u8,
    /// `aac_frame_length`: the whole ADTS frame in bytes, header and CRC included.
    pub frame_len_bytes: u16,
    /// `adts_buffer_fullness` (0x7FF = variable bit rate).
    pub buffer_fullness: u16,
    /// `number_of_raw_data_blocks_in_frame + 1`: AAC frames of 1024 samples in this ADTS frame.
    pub raw_data_blocks: u8,
}

impl AdtsHeader {
    /// Parses the ADTS header at the start of `bytes` (ISO/IEC 14496-3 §1.A.2.2). Only the
    /// header must be present; the frame body may still be arriving.
    pub fn parse(bytes: &[u8]) -> Result<AdtsHeader, AdtsError> {
        let h: &[u8; ADTS_HEADER_LEN_BYTES] = bytes
            .get(..ADTS_HEADER_LEN_BYTES)
            .and_then(|s| s.try_into().ok())
            .ok_or(AdtsError::Truncated)?;
        // syncword: 12 bits of 1.
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(AdtsError::BadSync);
        }
        let mpeg2 = h[1] & 0x08 != 0;
        if h[1] & 0x06 != 0 {
            return Err(AdtsError::BadLayer);
        }
        let protection_absent = h[1] & 0x01 != 0;
        let profile = h[2] >> 6;
        let sample_rate_index = (h[2] >> 2) & 0x0f;
        if usize::from(sample_rate_index) >= SAMPLE_RATES_HZ.len() {
            return Err(AdtsError::ReservedSampleRate);
        }
        // private_bit (h[2] bit 1) is ignored.
        let channel_configuration = ((h[2] & 0x01) << 2) | (h[3] >> 6);
        // original_copy, home, copyright_identification_bit/start: h[3] bits 5..2, ignored.
        let frame_len_bytes =
            (u16::from(h[3] & 0x03) << 11) | (u16::from(h[4]) << 3) | u16::from(h[5] >> 5);
        let buffer_fullness = (u16::from(h[5] & 0x1f) << 6) | u16::from(h[6] >> 2);
        let raw_data_blocks = (h[6] & 0x03) + 1;
        let header = AdtsHeader {
            mpeg2,
            protection_absent,
            object_type: profile + 1,
            sample_rate_index,
            channel_configuration,
            frame_len_bytes,
            buffer_fullness,
            raw_data_blocks,
        };
        if usize::from(frame_len_bytes) < header.header_len_bytes() {
            return Err(AdtsError::BadFrameLength);
        }
        if bytes.len() < header.header_len_bytes() {
            return Err(AdtsError::Truncated);
        }
        Ok(header)
    }

    /// Bytes before the first raw_data_block: 7, or with a CRC (§1.A.2.2.3
    /// `adts_header_error_check()`) 9 for one block and `9 + 2 * (blocks - 1)` when the
    /// `raw_data_block_position` table is present.
    pub fn header_len_bytes(&self) -> usize {
        if self.protection_absent {
            ADTS_HEADER_LEN_BYTES
        } else {
            ADTS_HEADER_LEN_BYTES + 2 + 2 * (usize::from(self.raw_data_blocks) - 1)
        }
    }

    /// Bytes after the header: the raw_data_block(s), plus their per-block CRCs when
    /// `protection_absent` is false and there is more than one block.
    pub fn payload_len_bytes(&self) -> usize {
        // parse() guarantees frame_len_bytes >= header_len_bytes().
        usize::from(self.frame_len_bytes).saturating_sub(self.header_len_bytes())
    }

    /// Sampling frequency in Hz from Table 1.18.
    pub fn sample_rate_hz(&self) -> u32 {
        // parse() rejected indices outside the table; 0 would only show a hand-built header.
        SAMPLE_RATES_HZ
            .get(usize::from(self.sample_rate_index))
            .copied()
            .unwrap_or(0)
    }

    /// Samples per channel in this ADTS frame (1024 per raw_data_block).
    pub fn samples_per_frame(&self) -> u32 {
        SAMPLES_PER_RAW_BLOCK * u32::from(self.raw_data_blocks)
    }

    /// The decoder configuration (for the AudioSpecificConfig of ISO/IEC 14496-3 §1.6.2.1).
    /// `AudioParams::channels` carries the `channel_configuration` code, which is what the
    /// AudioSpecificConfig needs (7 means 8 channels; 0 means "see the PCE").
    pub fn to_audio_params(&self) -> AudioParams {
        AudioParams {
            object_type: self.object_type,
            sample_rate_index: self.sample_rate_index,
            sample_rate: self.sample_rate_hz(),
            channels: self.channel_configuration,
        }
    }

    /// The RFC 6381 §3.3 codec string `mp4a.40.<object type>` (e.g. `mp4a.40.2` for AAC LC).
    pub fn codec_string(&self) -> heapless::String<16> {
        codec_string(self.object_type)
    }
}

/// The RFC 6381 §3.3 codec string for an MPEG-4 audio object type: `mp4a.40.<type>`.
pub fn codec_string(object_type: u8) -> heapless::String<16> {
    let mut s = heapless::String::new();
    // "mp4a.40." + at most 3 digits = 11 bytes, within the capacity of 16.
    let _ = write!(s, "mp4a.40.{object_type}");
    s
}

#[cfg(test)]
mod tests {
    use super::super::bits::test_support::XorShift;
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    /// Walks a whole ADTS file frame by frame; every frame must parse and the lengths must tile
    /// the file exactly.
    fn walk(stream: &[u8]) -> Vec<AdtsHeader> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < stream.len() {
            let h = AdtsHeader::parse(&stream[pos..])
                .unwrap_or_else(|e| panic!("frame at byte {pos}: {e:?}"));
            pos += usize::from(h.frame_len_bytes);
            out.push(h);
        }
        assert_eq!(pos, stream.len(), "frames tile the file");
        out
    }

    /// ffmpeg's aac encoder, 44.1 kHz stereo (see tests/fixtures/README.md). The first header
    /// is `ff f1 50 80 2b 3f fc`: MPEG-4, no CRC, profile 1 (LC), index 4, channels 2,
    /// frame length 0x159 = 345, fullness 0x7ff, one raw block.
    #[test]
    fn ffmpeg_44100_stereo() {
        let stream = fixture("aac_lc_44100_stereo.adts");
        let frames = walk(&stream);
        assert_eq!(
            frames[0],
            AdtsHeader {
                mpeg2: false,
                protection_absent: true,
                object_type: 2,
                sample_rate_index: 4,
                channel_configuration: 2,
                frame_len_bytes: 345,
                buffer_fullness: 0x7ff,
                raw_data_blocks: 1,
            }
        );
        // `ffprobe -count_packets` reports 6 packets (4410 samples plus encoder priming).
        assert_eq!(frames.len(), 6);
        let h = frames[0];
        assert_eq!((h.header_len_bytes(), h.payload_len_bytes()), (7, 338));
        assert_eq!((h.sample_rate_hz(), h.samples_per_frame()), (44_100, 1024));
        let p = h.to_audio_params();
        assert_eq!(
            p,
            AudioParams {
                object_type: 2,
                sample_rate_index: 4,
                sample_rate: 44_100,
                channels: 2
            }
        );
        // AudioSpecificConfig 00010 0100 0010 000 = 0x12 0x10, as ffmpeg writes in MP4/FLV.
        assert_eq!(p.audio_specific_config(), [0x12, 0x10]);
        assert_eq!(h.codec_string().as_str(), "mp4a.40.2");
    }

    /// 48 kHz mono: first header `ff f1 4c 40 1b 7f fc` -> index 3, channels 1, length 219.
    #[test]
    fn ffmpeg_48000_mono() {
        let stream = fixture("aac_lc_48000_mono.adts");
        let frames = walk(&stream);
        assert_eq!(frames.len(), 6, "ffprobe -count_packets reports 6");
        let h = frames[0];
        assert_eq!(
            (h.object_type, h.sample_rate_index, h.channel_configuration),
            (2, 3, 1)
        );
        assert_eq!((h.frame_len_bytes, h.sample_rate_hz()), (219, 48_000));
        assert!(frames.iter().all(|f| f.sample_rate_index == 3
            && f.channel_configuration == 1
            && f.raw_data_blocks == 1));
        assert_eq!(h.to_audio_params().audio_specific_config(), [0x11, 0x88]);
    }

    /// A header with CRC (protection_absent 0) and 2 raw blocks, built by hand:
    /// FFF, ID 1 (MPEG-2), layer 00, protection_absent 0 -> `ff f8`;
    /// profile 1, index 11 (8 kHz), private 0, channels 7 (bit 2 = 1) -> 01 1011 0 1 = `6d`;
    /// channels low bits 11, four zero bits, frame length 300 = 0b0_0001_0010_1100 ->
    /// 11 0000 00 = `c0`, `25`, `80` | fullness high 5 bits 0; fullness 0 and blocks-1 = 1
    /// -> `01`.
    #[test]
    fn crc_and_multiple_blocks() {
        let bytes = [0xff, 0xf8, 0x6d, 0xc0, 0x25, 0x80, 0x01, 0, 0, 0, 0];
        let h = AdtsHeader::parse(&bytes).unwrap();
        assert!(h.mpeg2 && !h.protection_absent);
        assert_eq!((h.object_type, h.sample_rate_hz()), (2, 8_000));
        assert_eq!((h.channel_configuration, h.frame_len_bytes), (7, 300));
        assert_eq!((h.raw_data_blocks, h.samples_per_frame()), (2, 2048));
        // 7 + raw_data_block_position[1] (2) + crc_check (2).
        assert_eq!((h.header_len_bytes(), h.payload_len_bytes()), (11, 289));
        // The header needs all 11 bytes.
        assert_eq!(AdtsHeader::parse(&bytes[..10]), Err(AdtsError::Truncated));
        // One block with CRC: 9 bytes.
        let mut one = bytes;
        one[6] = 0x00;
        let h = AdtsHeader::parse(&one[..9]).unwrap();
        assert_eq!(h.header_len_bytes(), 9);
    }

    #[test]
    fn errors() {
        let good = [0xff, 0xf1, 0x50, 0x80, 0x2b, 0x3f, 0xfc];
        assert!(AdtsHeader::parse(&good).is_ok());
        assert_eq!(AdtsHeader::parse(&good[..6]), Err(AdtsError::Truncated));
        assert_eq!(AdtsHeader::parse(&[]), Err(AdtsError::Truncated));
        let mut b = good;
        b[1] = 0xe1; // 11 sync bits only
        assert_eq!(AdtsHeader::parse(&b), Err(AdtsError::BadSync));
        let mut b = good;
        b[0] = 0x7f;
        assert_eq!(AdtsHeader::parse(&b), Err(AdtsError::BadSync));
        let mut b = good;
        b[1] = 0xfb; // MPEG-1 Layer III: ff fb
        assert_eq!(AdtsHeader::parse(&b), Err(AdtsError::BadLayer));
        for index in 13..=15u8 {
            let mut b = good;
            b[2] = (b[2] & !0x3c) | (index << 2);
            assert_eq!(
                AdtsHeader::parse(&b),
                Err(AdtsError::ReservedSampleRate),
                "{index}"
            );
        }
        // Index 12 (7350 Hz) is the last valid one.
        let mut b = good;
        b[2] = (b[2] & !0x3c) | (12 << 2);
        assert_eq!(AdtsHeader::parse(&b).unwrap().sample_rate_hz(), 7_350);
        // frame length 6 (< 7): 0b0_0000_0000_0110 -> h[3] low 2 bits 0, h[4] 0, h[5] top 3 110.
        let mut b = good;
        b[3] &= !0x03;
        b[4] = 0;
        b[5] = (b[5] & 0x1f) | (6 << 5);
        assert_eq!(AdtsHeader::parse(&b), Err(AdtsError::BadFrameLength));
        // Exactly 7 is a header with an empty payload.
        b[5] = (b[5] & 0x1f) | (7 << 5);
        assert_eq!(AdtsHeader::parse(&b).unwrap().payload_len_bytes(), 0);
        // With a CRC the minimum is 9.
        b[1] = 0xf0;
        let mut with_crc = [0u8; 9];
        with_crc[..7].copy_from_slice(&b);
        assert_eq!(AdtsHeader::parse(&with_crc), Err(AdtsError::BadFrameLength));
        assert_eq!(codec_string(5).as_str(), "mp4a.40.5");
    }

    /// Every truncation of the fixtures and bounded seeded random headers must never panic,
    /// and whatever parses must satisfy the length invariants.
    #[test]
    fn malformed_input_never_panics() {
        let stream = fixture("aac_lc_44100_stereo.adts");
        for len in 0..64 {
            let _ = AdtsHeader::parse(&stream[..len]);
        }
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut buf = [0u8; 16];
        let mut parsed = 0;
        for _ in 0..50_000 {
            let len = (rng.next() % 17) as usize;
            for b in buf.iter_mut() {
                *b = rng.next() as u8;
            }
            // Keep the syncword most of the time so the later checks are reached.
            if !rng.next().is_multiple_of(4) {
                buf[0] = 0xff;
                buf[1] |= 0xf0;
            }
            if let Ok(h) = AdtsHeader::parse(&buf[..len]) {
                parsed += 1;
                assert!(usize::from(h.frame_len_bytes) >= h.header_len_bytes());
                assert!(h.header_len_bytes() <= len);
                assert!(h.sample_rate_hz() > 0);
                let _ = h.to_audio_params().audio_specific_config();
            }
        }
        assert!(
            parsed > 1000,
            "the random loop should reach valid headers ({parsed})"
        );
    }
}
