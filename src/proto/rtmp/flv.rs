//! FLV tag bodies carried as RTMP audio/video message payloads (Adobe FLV spec 10.1, E.4.2/E.4.3),
//! and the H.264/AAC decoder configuration records they start with.
//!
//! Owns: the VIDEODATA/AUDIODATA headers, the AVCDecoderConfigurationRecord (ISO/IEC 14496-15
//! 5.2.4.1), and choosing which NAL units of a ring frame go on the wire. Must not allocate per
//! frame: frame bodies are yielded as borrowed slices of the ring frame.

use super::RtmpError;

/// FLV CodecID for AVC (FLV spec E.4.3.1).
pub const VIDEO_CODEC_AVC: u8 = 7;
/// FLV SoundFormat for AAC (FLV spec E.4.2.1).
pub const AUDIO_FORMAT_AAC: u8 = 10;
/// AVCPacketType (FLV spec E.4.3.1).
pub const AVC_SEQUENCE_HEADER: u8 = 0;
pub const AVC_NALU: u8 = 1;
/// AACPacketType (FLV spec E.4.2.1).
pub const AAC_SEQUENCE_HEADER: u8 = 0;
pub const AAC_RAW: u8 = 1;

/// VIDEODATA + AVCVIDEOPACKET header (5 bytes): FrameType (1 key / 2 inter), CodecID 7,
/// AVCPacketType, then the signed 24-bit composition time offset in ms.
pub fn video_tag_header(keyframe: bool, packet_type: u8, composition_time_ms: i32) -> [u8; 5] {
    let frame_type: u8 = if keyframe { 1 } else { 2 };
    let cts = composition_time_ms
        .clamp(-0x80_0000, 0x7F_FFFF)
        .to_be_bytes();
    [
        (frame_type << 4) | VIDEO_CODEC_AVC,
        packet_type,
        cts[1],
        cts[2],
        cts[3],
    ]
}

/// AUDIODATA header for AAC (2 bytes). FLV spec E.4.2.1: for AAC the rate/size/type bits are
/// always 3 (44 kHz), 1 (16-bit), 1 (stereo); the real values come from the AudioSpecificConfig.
pub fn audio_tag_header(packet_type: u8) -> [u8; 2] {
    [
        (AUDIO_FORMAT_AAC << 4) | (3 << 2) | (1 << 1) | 1,
        packet_type,
    ]
}

/// Builds an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1) with one SPS and one PPS
/// and 4-byte NAL lengths, into `out` (cleared first). The profile/compatibility/level bytes are
/// copied from the SPS. The optional High-profile chroma/bit-depth extension is omitted, as
/// ffmpeg's FLV muxer and the decoders reading it do without.
pub fn avc_decoder_config(sps: &[u8], pps: &[u8], out: &mut Vec<u8>) -> Result<(), RtmpError> {
    if sps.len() < 4 || pps.is_empty() || sps.len() > 0xFFFF || pps.len() > 0xFFFF {
        return Err(RtmpError::BadFrame);
    }
    out.clear();
    out.extend_from_slice(&[1, sps[1], sps[2], sps[3], 0xFC | 3, 0xE0 | 1]);
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1);
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    Ok(())
}

/// H.264 NAL unit types that do not belong in an FLV NALU packet: SPS/PPS travel in the
/// sequence header, access unit delimiters are meaningless in FLV (ISO/IEC 14496-15 5.3.2).
fn dropped_h264_nal(nal_type: u8) -> bool {
    // 7 = SPS, 8 = PPS, 9 = access unit delimiter (H.264 Table 7-1).
    matches!(nal_type, 7..=9)
}

/// Checks a ring video frame (4-byte big-endian length + NAL, repeated) and returns the bytes of
/// the records kept on the wire (prefixes included).
pub fn avcc_kept_len(frame: &[u8]) -> Result<usize, RtmpError> {
    let mut pos = 0;
    let mut kept = 0;
    while pos < frame.len() {
        let len_field = frame.get(pos..pos + 4).ok_or(RtmpError::BadFrame)?;
        let n =
            u32::from_be_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]) as usize;
        let end = (pos + 4).checked_add(n).ok_or(RtmpError::BadFrame)?;
        let nal = frame.get(pos + 4..end).ok_or(RtmpError::BadFrame)?;
        if let Some(&h) = nal.first() {
            if !dropped_h264_nal(h & 0x1F) {
                kept += 4 + n;
            }
        }
        pos = end;
    }
    Ok(kept)
}

/// The kept records of a frame validated by [`avcc_kept_len`], as borrowed slices.
pub struct KeptNals<'a> {
    frame: &'a [u8],
    pos: usize,
}

impl<'a> KeptNals<'a> {
    pub fn new(frame: &'a [u8]) -> Self {
        KeptNals { frame, pos: 0 }
    }
}

impl<'a> Iterator for KeptNals<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            // Malformed input simply ends the iteration; callers validate with avcc_kept_len.
            let l = self.frame.get(self.pos..self.pos + 4)?;
            let n = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            let end = (self.pos + 4).checked_add(n)?;
            let rec = self.frame.get(self.pos..end)?;
            self.pos = end;
            match rec.get(4) {
                Some(&h) if !dropped_h264_nal(h & 0x1F) => return Some(rec),
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS/PPS of `ffmpeg -f lavfi -i testsrc2=size=320x240:rate=25 -c:v libx264 -bf 0` (High
    /// profile 0x64, level 1.3 = 0x0D), copied from
    /// the encoder's Annex B output (ffmpeg 5.1.9, x264 default preset).
    const SPS: [u8; 23] = [
        0x67, 0x64, 0x00, 0x0D, 0xAC, 0xB2, 0x02, 0x83, 0xF6, 0x02, 0x20, 0x00, 0x00, 0x03, 0x00,
        0x20, 0x00, 0x00, 0x06, 0x41, 0xE2, 0x85, 0x49,
    ];
    const PPS: [u8; 6] = [0x68, 0xEB, 0xC3, 0xCB, 0x22, 0xC0];

    #[test]
    fn avc_decoder_configuration_record() {
        let mut out = Vec::new();
        avc_decoder_config(&SPS, &PPS, &mut out).unwrap();
        let mut want = vec![0x01, 0x64, 0x00, 0x0D, 0xFF, 0xE1, 0x00, 23];
        want.extend_from_slice(&SPS);
        want.extend_from_slice(&[0x01, 0x00, 0x06]);
        want.extend_from_slice(&PPS);
        assert_eq!(out, want);
        assert_eq!(
            avc_decoder_config(&[0x67, 0x42], &PPS, &mut out),
            Err(RtmpError::BadFrame)
        );
    }

    #[test]
    fn tag_headers() {
        assert_eq!(
            video_tag_header(true, AVC_SEQUENCE_HEADER, 0),
            [0x17, 0, 0, 0, 0]
        );
        assert_eq!(video_tag_header(false, AVC_NALU, 80), [0x27, 1, 0, 0, 80]);
        assert_eq!(
            video_tag_header(true, AVC_NALU, -40),
            [0x17, 1, 0xFF, 0xFF, 0xD8]
        );
        assert_eq!(audio_tag_header(AAC_SEQUENCE_HEADER), [0xAF, 0x00]);
        assert_eq!(audio_tag_header(AAC_RAW), [0xAF, 0x01]);
    }

    #[test]
    fn frame_body_drops_parameter_sets_and_aud() {
        let mut frame = Vec::new();
        for nal in [
            &[0x09, 0xF0][..],
            &SPS,
            &PPS,
            &[0x06, 5, 1, 0xAA, 0x80],
            &[0x65, 0x88, 0x84],
        ] {
            frame.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            frame.extend_from_slice(nal);
        }
        assert_eq!(avcc_kept_len(&frame).unwrap(), 4 + 5 + 4 + 3);
        let kept: Vec<u8> = KeptNals::new(&frame).flatten().copied().collect();
        assert_eq!(
            kept,
            [0, 0, 0, 5, 0x06, 5, 1, 0xAA, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        assert_eq!(avcc_kept_len(&[0, 0, 0, 9, 0x65]), Err(RtmpError::BadFrame));
        assert_eq!(avcc_kept_len(&[0, 0, 0]), Err(RtmpError::BadFrame));
    }
}
