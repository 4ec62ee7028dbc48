//! H.264 / AVC bitstream facts rillcast needs (ITU-T H.264): NAL unit types, the start of a
//! slice header, and the sequence parameter set fields that describe the picture.
//!
//! Owns: [`nal_type`] and friends, [`first_mb_in_slice`], [`parse_sps`] → [`SpsInfo`], and the
//! RFC 6381 `avc1.PPCCLL` codec string.
//!
//! Must not: allocate, keep state between calls, or panic on any input. Every function takes one
//! NAL unit as it sits in the frame payload — header byte included, no start code, emulation
//! prevention bytes still in place.

use core::fmt::Write as _;

use super::bits::{BitReader, BitsError};

/// `nal_unit_type` values (H.264 Table 7-1) rillcast looks at.
pub mod nal {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice data partition A (carries the slice header).
    pub const SLICE_DPA: u8 = 2;
    pub const SLICE_DPB: u8 = 3;
    pub const SLICE_DPC: u8 = 4;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    pub const END_OF_SEQUENCE: u8 = 10;
    pub const END_OF_STREAM: u8 = 11;
    pub const FILLER: u8 = 12;
    pub const SPS_EXT: u8 = 13;
    pub const PREFIX: u8 = 14;
    pub const SUBSET_SPS: u8 = 15;
}

/// Why an H.264 NAL unit could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H264Error {
    /// The NAL unit is empty or ends inside a field.
    Truncated,
    /// An Exp-Golomb code longer than 32 bits.
    BadExpGolomb,
    /// The NAL unit is not of the type this function reads (e.g. not an SPS).
    WrongNalType,
    /// A field is outside the range H.264 allows (chroma format, crop, sizes, loop counts).
    OutOfRange,
}

impl From<BitsError> for H264Error {
    fn from(e: BitsError) -> Self {
        match e {
            BitsError::EndOfData => H264Error::Truncated,
            BitsError::ExpGolombOverflow => H264Error::BadExpGolomb,
            // Only reachable through a bug in this module (read_bits(n > 32)); report as range.
            BitsError::TooManyBits => H264Error::OutOfRange,
        }
    }
}

impl core::fmt::Display for H264Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            H264Error::Truncated => "H.264 NAL unit truncated",
            H264Error::BadExpGolomb => "H.264 Exp-Golomb code too long",
            H264Error::WrongNalType => "unexpected H.264 NAL unit type",
            H264Error::OutOfRange => "H.264 field out of range",
        })
    }
}

/// `nal_unit_type` from the NAL header byte (H.264 §7.3.1: low 5 bits).
pub fn nal_type(header_byte: u8) -> u8 {
    header_byte & 0x1f
}

/// `nal_ref_idc` from the NAL header byte (H.264 §7.3.1: bits 6..5).
pub fn nal_ref_idc(header_byte: u8) -> u8 {
    (header_byte >> 5) & 0x03
}

/// Whether a NAL unit type carries coded slice data (VCL, H.264 Table 7-1: types 1..=5).
pub fn is_vcl(nal_type: u8) -> bool {
    (nal::SLICE..=nal::IDR).contains(&nal_type)
}

/// Whether a NAL unit type is an IDR slice (H.264 §3.69, type 5).
pub fn is_idr(nal_type: u8) -> bool {
    nal_type == nal::IDR
}

/// `first_mb_in_slice` (H.264 §7.3.3), the first field of a slice header. It is 0 for the first
/// slice of a picture unless arbitrary slice order is in use (allowed only in the Baseline and
/// Extended profiles, and not produced by real encoders), so a 0 marks the start of a new
/// picture.
///
/// `nal` is a slice NAL unit of type 1, 2 or 5, header byte included.
pub fn first_mb_in_slice(nal: &[u8]) -> Result<u32, H264Error> {
    let (&header, rbsp) = nal.split_first().ok_or(H264Error::Truncated)?;
    match nal_type(header) {
        nal::SLICE | nal::SLICE_DPA | nal::IDR => {}
        _ => return Err(H264Error::WrongNalType),
    }
    Ok(BitReader::new(rbsp).read_ue()?)
}

/// What rillcast keeps from a sequence parameter set (H.264 §7.3.2.1.1, §7.4.2.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc` (Annex A: 66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The byte after `profile_idc`: `constraint_set0_flag`..`constraint_set5_flag` and
    /// `reserved_zero_2bits`, MSB first — the "profile-iop" byte of RFC 6381 / RFC 6184.
    pub constraint_flags: u8,
    /// `level_idc` (Annex A: 10 × level number, e.g. 31 for level 3.1).
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// `chroma_format_idc` (0 mono, 1 4:2:0, 2 4:2:2, 3 4:4:4); 1 when not coded.
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8 + 8`.
    pub bit_depth_luma: u8,
    /// `frame_mbs_only_flag`: false when the stream may contain field pictures (interlaced).
    pub frame_mbs_only: bool,
    /// Luma width in pixels after frame cropping (§7.4.2.1.1, equations 7-19/7-20 and the crop
    /// rectangle).
    pub width: u32,
    /// Luma height of a frame in pixels after frame cropping.
    pub height: u32,
    /// Frame rate from the VUI timing info as reduced `(num, den)` frames per second:
    /// `time_scale / (2 * num_units_in_tick)` (§E.2.1, assuming the usual field-based tick).
    /// `None` when the VUI or its timing info is absent, zero, or unreadable.
    pub fps: Option<(u32, u32)>,
}

impl SpsInfo {
    /// The RFC 6381 §3.3 codec string `avc1.PPCCLL` (lowercase hex of profile_idc, the
    /// constraint byte and level_idc), e.g. `avc1.64001f`, for HLS `CODECS` and DASH.
    pub fn codec_string(&self) -> heapless::String<16> {
        let mut s = heapless::String::new();
        // "avc1." + 6 hex digits = 11 bytes, within the capacity of 16.
        let _ = write!(
            s,
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        );
        s
    }
}

/// [`SpsInfo::codec_string`] straight from an SPS NAL unit (header byte included).
pub fn codec_string(sps_nal: &[u8]) -> Result<heapless::String<16>, H264Error> {
    let (&header, rbsp) = sps_nal.split_first().ok_or(H264Error::Truncated)?;
    if nal_type(header) != nal::SPS {
        return Err(H264Error::WrongNalType);
    }
    let mut r = BitReader::new(rbsp);
    let info = SpsInfo {
        profile_idc: r.read_u8()?,
        constraint_flags: r.read_u8()?,
        level_idc: r.read_u8()?,
        seq_parameter_set_id: 0,
        chroma_format_idc: 1,
        bit_depth_luma: 8,
        frame_mbs_only: true,
        width: 0,
        height: 0,
        fps: None,
    };
    Ok(info.codec_string())
}

/// Profiles whose SPS carries `chroma_format_idc` and the fields after it (H.264 §7.3.2.1.1).
fn has_chroma_format(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// Largest picture dimension in macroblocks we accept (level 6.2 allows 8192x4320 = 512x270 MBs;
/// this guards the size arithmetic against absurd values).
const MAX_DIM_MBS: u32 = 1024;

/// Parses a sequence parameter set NAL unit (header byte included), H.264 §7.3.2.1.1.
///
/// Scaling lists are walked and discarded (§7.3.2.1.1.1). A VUI that cannot be read only loses
/// `fps`; an error anywhere before it fails the whole parse.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, H264Error> {
    let (&header, rbsp) = nal.split_first().ok_or(H264Error::Truncated)?;
    if nal_type(header) != nal::SPS {
        return Err(H264Error::WrongNalType);
    }
    let mut r = BitReader::new(rbsp);
    let profile_idc = r.read_u8()?;
    let constraint_flags = r.read_u8()?;
    let level_idc = r.read_u8()?;
    let seq_parameter_set_id = r.read_ue()?;
    if seq_parameter_set_id > 31 {
        return Err(H264Error::OutOfRange);
    }

    let mut chroma_format_idc = 1u32;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma_minus8 = 0u32;
    if has_chroma_format(profile_idc) {
        chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return Err(H264Error::OutOfRange);
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.read_bit()?;
        }
        bit_depth_luma_minus8 = r.read_ue()?;
        let bit_depth_chroma_minus8 = r.read_ue()?;
        if bit_depth_luma_minus8 > 6 || bit_depth_chroma_minus8 > 6 {
            return Err(H264Error::OutOfRange);
        }
        let _qpprime_y_zero_transform_bypass_flag = r.read_bit()?;
        let seq_scaling_matrix_present_flag = r.read_bit()?;
        if seq_scaling_matrix_present_flag {
            let lists = if chroma_format_idc != 3 { 8 } else { 12 };
            for i in 0..lists {
                let seq_scaling_list_present_flag = r.read_bit()?;
                if seq_scaling_list_present_flag {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }

    let _log2_max_frame_num_minus4 = r.read_ue()?;
    let pic_order_cnt_type = r.read_ue()?;
    match pic_order_cnt_type {
        0 => {
            let _log2_max_pic_order_cnt_lsb_minus4 = r.read_ue()?;
        }
        1 => {
            let _delta_pic_order_always_zero_flag = r.read_bit()?;
            let _offset_for_non_ref_pic = r.read_se()?;
            let _offset_for_top_to_bottom_field = r.read_se()?;
            let num_ref_frames_in_pic_order_cnt_cycle = r.read_ue()?;
            // §7.4.2.1.1: 0..=255. Bounding it also bounds this loop on hostile input.
            if num_ref_frames_in_pic_order_cnt_cycle > 255 {
                return Err(H264Error::OutOfRange);
            }
            for _ in 0..num_ref_frames_in_pic_order_cnt_cycle {
                let _offset_for_ref_frame = r.read_se()?;
            }
        }
        2 => {}
        _ => return Err(H264Error::OutOfRange),
    }
    let _max_num_ref_frames = r.read_ue()?;
    let _gaps_in_frame_num_value_allowed_flag = r.read_bit()?;
    let pic_width_in_mbs_minus1 = r.read_ue()?;
    let pic_height_in_map_units_minus1 = r.read_ue()?;
    let frame_mbs_only = r.read_bit()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field_flag = r.read_bit()?;
    }
    let _direct_8x8_inference_flag = r.read_bit()?;
    let frame_cropping_flag = r.read_bit()?;
    let mut crop = [0u32; 4]; // left, right, top, bottom
    if frame_cropping_flag {
        for c in crop.iter_mut() {
            *c = r.read_ue()?;
        }
    }

    if pic_width_in_mbs_minus1 >= MAX_DIM_MBS || pic_height_in_map_units_minus1 >= MAX_DIM_MBS {
        return Err(H264Error::OutOfRange);
    }
    // Both are < 1024 now, so the products below stay far from u32::MAX.
    let frame_height_in_mbs =
        (2 - u32::from(frame_mbs_only)) * (pic_height_in_map_units_minus1 + 1);
    let full_width = (pic_width_in_mbs_minus1 + 1) * 16;
    let full_height = frame_height_in_mbs * 16;
    // §7.4.2.1.1 (7-21..7-24): crop units depend on ChromaArrayType and field coding.
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y): (u64, u64) = match chroma_array_type {
        0 => (1, 2 - u64::from(frame_mbs_only)),
        1 => (2, 2 * (2 - u64::from(frame_mbs_only))),
        2 => (2, 2 - u64::from(frame_mbs_only)),
        _ => (1, 2 - u64::from(frame_mbs_only)),
    };
    let crop_w = (u64::from(crop[0]) + u64::from(crop[1])) * crop_unit_x;
    let crop_h = (u64::from(crop[2]) + u64::from(crop[3])) * crop_unit_y;
    if crop_w >= u64::from(full_width) || crop_h >= u64::from(full_height) {
        return Err(H264Error::OutOfRange);
    }
    // Both crops are below the u32 sizes they are subtracted from.
    let width = full_width - crop_w as u32;
    let height = full_height - crop_h as u32;

    let vui_parameters_present_flag = r.read_bit()?;
    let fps = if vui_parameters_present_flag {
        vui_fps(&mut r).ok().flatten()
    } else {
        None
    };

    Ok(SpsInfo {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        // chroma_format_idc <= 3 and bit depth <= 14 were checked above.
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: bit_depth_luma_minus8 as u8 + 8,
        frame_mbs_only,
        width,
        height,
        fps,
    })
}

/// Walks `scaling_list(sizeOfScalingList)` (H.264 §7.3.2.1.1.1) without keeping it: the list
/// stops reading deltas once `nextScale` becomes 0 (`useDefaultScalingMatrixFlag`).
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), H264Error> {
    let mut last_scale: i64 = 8;
    let mut next_scale: i64 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let delta_scale = i64::from(r.read_se()?);
            // §7.4.2.1.1.1: delta_scale is in -128..=127.
            if !(-128..=127).contains(&delta_scale) {
                return Err(H264Error::OutOfRange);
            }
            next_scale = (last_scale + delta_scale + 256).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// Reads `vui_parameters()` (H.264 §E.1.1) up to the timing info and returns the frame rate.
fn vui_fps(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, H264Error> {
    let aspect_ratio_info_present_flag = r.read_bit()?;
    if aspect_ratio_info_present_flag {
        let aspect_ratio_idc = r.read_u8()?;
        const EXTENDED_SAR: u8 = 255;
        if aspect_ratio_idc == EXTENDED_SAR {
            r.skip(32)?; // sar_width, sar_height
        }
    }
    if r.read_bit()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_bit()? {
        // video_format(3), video_full_range_flag(1)
        r.skip(4)?;
        if r.read_bit()? {
            r.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coefficients
        }
    }
    if r.read_bit()? {
        r.skip_ue()?; // chroma_sample_loc_type_top_field
        r.skip_ue()?; // chroma_sample_loc_type_bottom_field
    }
    let timing_info_present_flag = r.read_bit()?;
    if !timing_info_present_flag {
        return Ok(None);
    }
    let num_units_in_tick = r.read_bits(32)?;
    let time_scale = r.read_bits(32)?;
    Ok(reduce_rate(
        u64::from(time_scale),
        2 * u64::from(num_units_in_tick),
    ))
}

/// `num / den` reduced to lowest terms; `None` if either is zero or the result won't fit u32.
pub(crate) fn reduce_rate(num: u64, den: u64) -> Option<(u32, u32)> {
    if num == 0 || den == 0 {
        return None;
    }
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    // a is the gcd, non-zero because num is.
    let (n, d) = (num / a, den / a);
    Some((u32::try_from(n).ok()?, u32::try_from(d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::bits::test_support::{annexb_nals, mutate, BitWriter, XorShift};
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    fn first_sps(stream: &[u8]) -> &[u8] {
        annexb_nals(stream)
            .into_iter()
            .find(|n| nal_type(n[0]) == nal::SPS)
            .expect("fixture has an SPS")
    }

    /// Expected values are from `ffmpeg -bsf:v trace_headers` on the same file (see
    /// tests/fixtures/README.md): profile 66, constraint_set0/1 = 1, level 13, 20x15 MBs,
    /// no cropping, num_units_in_tick 1, time_scale 50.
    #[test]
    fn x264_baseline_320x240_25() {
        let stream = fixture("x264_baseline_320x240_25fps_2slices.h264");
        let sps = first_sps(&stream);
        let info = parse_sps(sps).unwrap();
        assert_eq!(
            info,
            SpsInfo {
                profile_idc: 66,
                constraint_flags: 0xc0,
                level_idc: 13,
                seq_parameter_set_id: 0,
                chroma_format_idc: 1,
                bit_depth_luma: 8,
                frame_mbs_only: true,
                width: 320,
                height: 240,
                fps: Some((25, 1)),
            }
        );
        assert_eq!(info.codec_string().as_str(), "avc1.42c00d");
        assert_eq!(codec_string(sps).unwrap().as_str(), "avc1.42c00d");
    }

    /// Two pictures of two slices each: trace_headers shows first_mb_in_slice 0, 160, 0, 160
    /// (20x15 MBs split at MB 160), with an IDR first and a non-IDR second picture.
    #[test]
    fn x264_slices_first_mb_marks_new_picture() {
        let stream = fixture("x264_baseline_320x240_25fps_2slices.h264");
        let mut seen = Vec::new();
        for n in annexb_nals(&stream) {
            let t = nal_type(n[0]);
            if is_vcl(t) {
                seen.push((t, first_mb_in_slice(n).unwrap()));
            } else {
                assert_eq!(first_mb_in_slice(n), Err(H264Error::WrongNalType));
            }
        }
        assert_eq!(seen, [(5, 0), (5, 160), (1, 0), (1, 160)]);
        assert!(is_idr(seen[0].0) && !is_idr(seen[2].0));
        assert_eq!(first_mb_in_slice(&[]), Err(H264Error::Truncated));
        assert_eq!(first_mb_in_slice(&[0x65]), Err(H264Error::Truncated));
    }

    /// High profile 1920x1080: 120x68 MBs = 1920x1088, frame_crop_bottom_offset 4 with
    /// CropUnitY 2 (4:2:0, frames only) -> 1080. time_scale 60 / (2 * 1) -> 30 fps.
    #[test]
    fn x264_high_1080p_cropping() {
        let stream = fixture("x264_high_1920x1080_30fps_cqmjvt.h264");
        let info = parse_sps(first_sps(&stream)).unwrap();
        assert_eq!(
            (info.profile_idc, info.constraint_flags, info.level_idc),
            (100, 0, 40)
        );
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.fps, Some((30, 1)));
        assert!(info.frame_mbs_only);
        assert_eq!(info.codec_string().as_str(), "avc1.640028");
    }

    /// Interlaced: frame_mbs_only 0, 34 map units (field MB pairs) -> 34*2*16 = 1088 lines,
    /// frame_crop_bottom_offset 2 with CropUnitY = 2 * 2 = 4 -> 1080.
    /// time_scale 60000 / (2 * 1001) -> 30000/1001.
    #[test]
    fn x264_high_1080i_field_cropping() {
        let stream = fixture("x264_high_1920x1080_2997_interlaced.h264");
        let info = parse_sps(first_sps(&stream)).unwrap();
        assert!(!info.frame_mbs_only);
        assert_eq!((info.width, info.height), (1920, 1080));
        assert_eq!(info.fps, Some((30000, 1001)));
    }

    /// High 4:4:4 Predictive (profile 244), chroma_format_idc 3: CropUnitY is 1, so
    /// 23 MBs = 368 lines minus frame_crop_bottom_offset 8 -> 360.
    #[test]
    fn x264_high444_chroma_format_3() {
        let stream = fixture("x264_high444_640x360_30fps_cqmjvt.h264");
        let info = parse_sps(first_sps(&stream)).unwrap();
        assert_eq!((info.profile_idc, info.chroma_format_idc), (244, 3));
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.fps, Some((30, 1)));
        assert_eq!(info.codec_string().as_str(), "avc1.f4001e");
    }

    /// Writes an SPS field by field (H.264 §7.3.2.1.1) with the given scaling-list deltas, so
    /// the scaling-list walk is checked on bits an encoder would emit. x264 never writes SPS
    /// scaling lists, hence the hand-built SPS.
    fn build_high_sps(chroma_format_idc: u32, lists: &[Option<&[i32]>], poc_type: u32) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.bits(8, 100).bits(8, 0).bits(8, 41).ue(0);
        w.ue(chroma_format_idc);
        if chroma_format_idc == 3 {
            w.bit(false);
        }
        w.ue(2).ue(2).bit(false); // 10-bit, no transform bypass
        w.bit(true); // seq_scaling_matrix_present_flag
        for l in lists {
            match l {
                None => {
                    w.bit(false);
                }
                Some(deltas) => {
                    w.bit(true);
                    for &d in deltas.iter() {
                        w.se(d);
                    }
                }
            }
        }
        w.ue(0).ue(poc_type); // log2_max_frame_num_minus4, pic_order_cnt_type
        if poc_type == 0 {
            w.ue(2);
        } else if poc_type == 1 {
            w.bit(false).se(-3).se(7).ue(3).se(1).se(-1).se(100);
        }
        w.ue(4).bit(false); // max_num_ref_frames, gaps
        w.ue(79).ue(44).bit(true).bit(true); // 80x45 MBs, frame_mbs_only, direct_8x8
        w.bit(true).ue(0).ue(0).ue(0).ue(0); // cropping flag with zero offsets
        w.bit(true); // vui_parameters_present_flag
        w.bit(true).bits(8, 255).bits(16, 4).bits(16, 3); // extended SAR
        w.bit(true).bit(false); // overscan
        w.bit(true)
            .bits(3, 5)
            .bit(false)
            .bit(true)
            .bits(24, 0x010101);
        w.bit(true).ue(1).ue(1); // chroma loc
        w.bit(true).bits(32, 1001).bits(32, 120_000).bit(true);
        w.bit(false).bit(false).bit(false).bit(false); // no HRD, pic_struct, bitstream_restriction
        w.trailing();
        w.nal(&[0x67])
    }

    #[test]
    fn hand_built_sps_with_scaling_lists() {
        // A 4x4 list whose 3rd delta drives nextScale to 0 (use default): only 3 deltas are
        // coded. 8 - 8 = 0 at j = 2 stops the reads.
        let early_stop: &[i32] = &[4, -4, -8];
        let full4x4: &[i32] = &[1; 16];
        // 8, 7, 8, 7, ...: all 64 deltas coded.
        let alternating: Vec<i32> = (0..64).map(|j| if j % 2 == 0 { -1 } else { 1 }).collect();
        let full8x8: &[i32] = &alternating;
        // Wrap-around by the mod-256 rule: 8 -> 135 -> 6 (not 262), then 7, 8, ... never 0.
        let wrapping: Vec<i32> = [127, 127].into_iter().chain([1; 62]).collect();
        let wrap8x8: &[i32] = &wrapping;
        let lists420 = [
            Some(early_stop),
            None,
            Some(full4x4),
            None,
            None,
            Some(full4x4),
            Some(full8x8),
            Some(wrap8x8),
        ];
        for poc_type in 0..3 {
            let sps = build_high_sps(1, &lists420, poc_type);
            let info = parse_sps(&sps).unwrap_or_else(|e| panic!("poc {poc_type}: {e:?}"));
            assert_eq!((info.width, info.height), (1280, 720), "poc {poc_type}");
            assert_eq!(info.bit_depth_luma, 10);
            assert_eq!(info.fps, Some((60000, 1001)));
            assert_eq!(info.codec_string().as_str(), "avc1.640029");
        }
        // 4:4:4 has 12 lists; the last four are 8x8.
        let mut lists444 = lists420.to_vec();
        lists444.extend([Some(full8x8), None, Some(wrap8x8), Some(full8x8)]);
        let sps = build_high_sps(3, &lists444, 0);
        let info = parse_sps(&sps).unwrap();
        assert_eq!(
            (info.chroma_format_idc, info.width, info.height),
            (3, 1280, 720)
        );
        assert_eq!(info.fps, Some((60000, 1001)));
        // Parsing the 4:4:4 SPS as if it had 8 lists would misread everything after; a wrong
        // list count would not land on 1280x720 (checked by reusing the 4:2:0 layout):
        let sps_wrong = build_high_sps(1, &lists444, 0);
        assert_ne!(
            parse_sps(&sps_wrong).map(|i| (i.width, i.height)),
            Ok((1280, 720))
        );
    }

    /// The builder's output, written once to fixtures and read back by ffmpeg's own parser
    /// (`trace_headers`, which reads every scaling-list delta and stops at rbsp_stop_one_bit
    /// with 80x45 MBs and time_scale 120000 / num_units_in_tick 1001), so the builder is
    /// checked against an independent reader, not only against `parse_sps`.
    #[test]
    fn ffmpeg_checked_hand_built_sps_fixtures() {
        for (name, chroma) in [
            ("handbuilt_h264_high10_scaling_lists_420_sps.h264", 1),
            ("handbuilt_h264_high10_scaling_lists_444_sps.h264", 3),
        ] {
            let stream = fixture(name);
            let info = parse_sps(first_sps(&stream)).unwrap();
            assert_eq!(
                (info.chroma_format_idc, info.bit_depth_luma),
                (chroma, 10),
                "{name}"
            );
            assert_eq!((info.width, info.height), (1280, 720), "{name}");
            assert_eq!(info.fps, Some((60000, 1001)), "{name}");
        }
    }

    #[test]
    fn rejects_wrong_type_and_bad_fields() {
        assert_eq!(parse_sps(&[]), Err(H264Error::Truncated));
        assert_eq!(parse_sps(&[0x68, 0x42]), Err(H264Error::WrongNalType));
        assert_eq!(parse_sps(&[0x67, 0x42, 0xc0]), Err(H264Error::Truncated));
        assert_eq!(codec_string(&[0x68, 1, 2, 3]), Err(H264Error::WrongNalType));
        // chroma_format_idc 4.
        let mut w = BitWriter::new();
        w.bits(24, 0x64_00_28).ue(0).ue(4).trailing();
        assert_eq!(parse_sps(&w.nal(&[0x67])), Err(H264Error::OutOfRange));
        // Cropping away the whole picture.
        let mut w = BitWriter::new();
        w.bits(24, 0x42_c0_1e)
            .ue(0)
            .ue(0)
            .ue(0)
            .ue(1)
            .ue(1)
            .bit(false);
        w.ue(0)
            .ue(0)
            .bit(true)
            .bit(true)
            .bit(true)
            .ue(8)
            .ue(0)
            .ue(0)
            .ue(0)
            .bit(false);
        w.trailing();
        assert_eq!(parse_sps(&w.nal(&[0x67])), Err(H264Error::OutOfRange));
        // Same SPS with crop_left 7 of 8 units: 16 - 14 = 2 pixels wide, valid.
        let mut w = BitWriter::new();
        w.bits(24, 0x42_c0_1e)
            .ue(0)
            .ue(0)
            .ue(0)
            .ue(1)
            .ue(1)
            .bit(false);
        w.ue(0)
            .ue(0)
            .bit(true)
            .bit(true)
            .bit(true)
            .ue(7)
            .ue(0)
            .ue(0)
            .ue(0)
            .bit(false);
        w.trailing();
        let info = parse_sps(&w.nal(&[0x67])).unwrap();
        assert_eq!((info.width, info.height, info.fps), (2, 16, None));
        // A truncated VUI loses only the frame rate.
        let stream = fixture("x264_baseline_320x240_25fps_2slices.h264");
        let sps = first_sps(&stream);
        let cut = &sps[..sps.len() - 6];
        let info = parse_sps(cut).unwrap();
        assert_eq!(((info.width, info.height), info.fps), ((320, 240), None));
    }

    #[test]
    fn nal_header_helpers() {
        assert_eq!(nal_type(0x67), nal::SPS);
        assert_eq!(nal_type(0x68), nal::PPS);
        assert_eq!(nal_type(0x65), nal::IDR);
        assert_eq!(nal_type(0x41), nal::SLICE);
        assert_eq!(nal_type(0x09), nal::AUD);
        assert_eq!(nal_ref_idc(0x65), 3);
        assert_eq!(nal_ref_idc(0x06), 0);
        assert!(is_vcl(1) && is_vcl(5) && !is_vcl(0) && !is_vcl(6) && !is_vcl(7));
        assert!(is_idr(5) && !is_idr(1));
        assert_eq!(reduce_rate(50, 2), Some((25, 1)));
        assert_eq!(reduce_rate(0, 2), None);
        assert_eq!(reduce_rate(u64::from(u32::MAX) + 1, 1), None);
    }

    /// Truncations of real SPSes and bounded seeded random bytes must never panic.
    #[test]
    fn malformed_input_never_panics() {
        let names = [
            "x264_baseline_320x240_25fps_2slices.h264",
            "x264_high_1920x1080_30fps_cqmjvt.h264",
            "x264_high_1920x1080_2997_interlaced.h264",
            "x264_high444_640x360_30fps_cqmjvt.h264",
        ];
        for name in names {
            let stream = fixture(name);
            for n in annexb_nals(&stream) {
                for len in 0..n.len().min(64) {
                    let _ = parse_sps(&n[..len]);
                    let _ = first_mb_in_slice(&n[..len]);
                    let _ = codec_string(&n[..len]);
                }
            }
        }
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut buf = [0u8; 48];
        for _ in 0..20_000 {
            let len = (rng.next() % 48) as usize;
            for b in buf[..len].iter_mut() {
                // Bias toward zeros so Exp-Golomb prefixes and 00 00 03 runs show up.
                let x = rng.next();
                *b = if x.is_multiple_of(3) {
                    0
                } else {
                    (x >> 8) as u8
                };
            }
            if len > 0 {
                buf[0] = 0x67;
            }
            let _ = parse_sps(&buf[..len]);
            if len > 0 {
                buf[0] = 0x65;
            }
            let _ = first_mb_in_slice(&buf[..len]);
        }
        // Mutated real and hand-built SPSes: whatever still parses obeys the invariants.
        let mut ok = 0;
        let mut nal = Vec::new();
        for name in [
            "x264_baseline_320x240_25fps_2slices.h264",
            "x264_high_1920x1080_2997_interlaced.h264",
            "x264_high444_640x360_30fps_cqmjvt.h264",
            "handbuilt_h264_high10_scaling_lists_420_sps.h264",
            "handbuilt_h264_high10_scaling_lists_444_sps.h264",
        ] {
            let stream = fixture(name);
            let sps = first_sps(&stream);
            for _ in 0..5_000 {
                mutate(&mut rng, sps, &mut nal);
                if let Ok(info) = parse_sps(&nal) {
                    ok += 1;
                    assert!(info.width > 0 && info.width <= 16 * MAX_DIM_MBS);
                    assert!(info.height > 0 && info.height <= 32 * MAX_DIM_MBS);
                    assert_eq!(info.codec_string().len(), 11);
                }
            }
        }
        assert!(ok > 1_000, "mutations should often still parse ({ok})");
    }
}
