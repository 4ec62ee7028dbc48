//! H.265 / HEVC bitstream facts rillcast needs (ITU-T H.265): NAL unit types, the first bit of
//! a slice segment header, and the sequence parameter set fields that describe the picture.
//!
//! Owns: [`nal_type`] and friends, [`first_slice_segment_in_pic_flag`], [`parse_sps`] →
//! [`SpsInfo`] (profile_tier_level with sub-layers, conformance window, VUI frame rate), and the
//! ISO/IEC 14496-15 Annex E `hvc1.…` codec string.
//!
//! Must not: allocate, keep state between calls, or panic on any input. Every function takes one
//! NAL unit as it sits in the frame payload — 2-byte header included, no start code, emulation
//! prevention bytes still in place.

use core::fmt::Write as _;

use super::bits::{BitReader, BitsError};
use super::h264::reduce_rate;

/// `nal_unit_type` values (H.265 Table 7-1) rillcast looks at.
pub mod nal {
    pub const TRAIL_N: u8 = 0;
    pub const TRAIL_R: u8 = 1;
    /// First IRAP type: broken link access.
    pub const BLA_W_LP: u8 = 16;
    pub const BLA_W_RADL: u8 = 17;
    pub const BLA_N_LP: u8 = 18;
    pub const IDR_W_RADL: u8 = 19;
    pub const IDR_N_LP: u8 = 20;
    /// Clean random access.
    pub const CRA_NUT: u8 = 21;
    pub const VPS: u8 = 32;
    pub const SPS: u8 = 33;
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    pub const EOS: u8 = 36;
    pub const EOB: u8 = 37;
    pub const FD: u8 = 38;
    pub const PREFIX_SEI: u8 = 39;
    pub const SUFFIX_SEI: u8 = 40;
}

/// Why an H.265 NAL unit could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H265Error {
    /// The NAL unit is shorter than its header or ends inside a field.
    Truncated,
    /// An Exp-Golomb code longer than 32 bits.
    BadExpGolomb,
    /// The NAL unit is not of the type this function reads (e.g. not an SPS).
    WrongNalType,
    /// A field is outside the range H.265 allows (chroma format, sizes, window, loop counts).
    OutOfRange,
}

impl From<BitsError> for H265Error {
    fn from(e: BitsError) -> Self {
        match e {
            BitsError::EndOfData => H265Error::Truncated,
            BitsError::ExpGolombOverflow => H265Error::BadExpGolomb,
            // Only reachable through a bug in this module (read_bits(n > 32)); report as range.
            BitsError::TooManyBits => H265Error::OutOfRange,
        }
    }
}

impl core::fmt::Display for H265Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            H265Error::Truncated => "H.265 NAL unit truncated",
            H265Error::BadExpGolomb => "H.265 Exp-Golomb code too long",
            H265Error::WrongNalType => "unexpected H.265 NAL unit type",
            H265Error::OutOfRange => "H.265 field out of range",
        })
    }
}

/// `nal_unit_type` from the first NAL header byte (H.265 §7.3.1.2: bits 6..1).
pub fn nal_type(header_byte0: u8) -> u8 {
    (header_byte0 >> 1) & 0x3f
}

/// `nuh_layer_id` from the 2-byte NAL header (H.265 §7.3.1.2: 6 bits straddling the bytes).
pub fn nuh_layer_id(header: &[u8]) -> u8 {
    match header {
        [b0, b1, ..] => ((b0 & 0x01) << 5) | (b1 >> 3),
        _ => 0,
    }
}

/// `nuh_temporal_id_plus1 - 1` from the second NAL header byte (H.265 §7.3.1.2), saturating at
/// 0 for the forbidden value `nuh_temporal_id_plus1 == 0`.
pub fn temporal_id(header_byte1: u8) -> u8 {
    (header_byte1 & 0x07).saturating_sub(1)
}

/// Whether a NAL unit type is a VCL (coded slice segment) type, H.265 Table 7-1: 0..=31.
pub fn is_vcl(nal_type: u8) -> bool {
    nal_type < 32
}

/// Whether a NAL unit type is an intra random access point (BLA, IDR, CRA or the reserved IRAP
/// types), H.265 §3.73 / Table 7-1: 16..=23. Decoding can start here.
pub fn is_irap(nal_type: u8) -> bool {
    (nal::BLA_W_LP..=23).contains(&nal_type)
}

/// Whether a NAL unit type is an IDR picture (H.265 Table 7-1: 19, 20).
pub fn is_idr(nal_type: u8) -> bool {
    nal_type == nal::IDR_W_RADL || nal_type == nal::IDR_N_LP
}

/// `first_slice_segment_in_pic_flag` (H.265 §7.3.6.1), the first bit of a slice segment
/// header: true for the first slice segment of a picture, i.e. the start of a new picture.
///
/// `nal` is a VCL NAL unit (types 0..=31), 2-byte header included.
pub fn first_slice_segment_in_pic_flag(nal: &[u8]) -> Result<bool, H265Error> {
    let header = nal.get(..2).ok_or(H265Error::Truncated)?;
    if !is_vcl(nal_type(header[0])) {
        return Err(H265Error::WrongNalType);
    }
    // The header ends in nuh_temporal_id_plus1 != 0 for valid streams, so no 00 00 03 run can
    // straddle it; the flag is the top bit of the third byte.
    let byte = nal.get(2).ok_or(H265Error::Truncated)?;
    Ok(byte & 0x80 != 0)
}

/// What rillcast keeps from a sequence parameter set (H.265 §7.3.2.2.1, §7.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// `general_profile_space` (0 for every profile defined so far).
    pub general_profile_space: u8,
    /// `general_tier_flag`: false = Main tier, true = High tier.
    pub general_tier_flag: bool,
    /// `general_profile_idc` (Annex A: 1 Main, 2 Main 10, 3 Main Still Picture, 4 RExt, ...).
    pub general_profile_idc: u8,
    /// `general_profile_compatibility_flag[j]` for j = 0..32, flag j in bit `31 - j` (the
    /// order they are coded in).
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` through
    /// `general_inbld_flag`/`general_reserved_zero_bit`, in coding order, as 6 bytes.
    pub general_constraint_flags: [u8; 6],
    /// `general_level_idc`: 30 × level number (e.g. 93 for level 3.1, 120 for level 4).
    pub general_level_idc: u8,
    /// `sps_max_sub_layers_minus1 + 1`.
    pub max_sub_layers: u8,
    pub sps_seq_parameter_set_id: u32,
    /// `chroma_format_idc` (0 mono, 1 4:2:0, 2 4:2:2, 3 4:4:4).
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8 + 8`.
    pub bit_depth_luma: u8,
    /// Luma width in pixels after the conformance window (§7.4.3.2.1).
    pub width: u32,
    /// Luma height in pixels after the conformance window.
    pub height: u32,
    /// Pictures per second from the VUI as reduced `(num, den)`:
    /// `vui_time_scale / vui_num_units_in_tick` (§E.3.1). With `field_seq_flag` set this is the
    /// field rate. `None` when the VUI or its timing info is absent, zero, or unreadable.
    pub fps: Option<(u32, u32)>,
}

impl SpsInfo {
    /// The codec string of ISO/IEC 14496-15 Annex E.3 for HLS `CODECS` / DASH, e.g.
    /// `hvc1.1.6.L120.90`: profile space letter (none, A, B, C) and `general_profile_idc`; the
    /// 32 compatibility flags in reverse bit order as hex without leading zeros; `L`/`H` tier and
    /// `general_level_idc`; then the 6 constraint bytes as 2-digit hex, trailing zero bytes
    /// omitted. Hex is uppercase, as in Apple's HLS authoring examples (`hvc1.2.4.L123.B0`).
    pub fn codec_string(&self) -> heapless::String<48> {
        let mut s = heapless::String::new();
        let space = match self.general_profile_space {
            0 => "",
            1 => "A",
            2 => "B",
            _ => "C",
        };
        let tier = if self.general_tier_flag { 'H' } else { 'L' };
        // Longest form: "hvc1." 5 + "C31." 4 + 8 hex + "." + "H255" 4 + 6 * ".XX" 18 = 40 < 48,
        // so the writes below cannot run out of capacity.
        let _ = write!(
            s,
            "hvc1.{space}{}.{:X}.{tier}{}",
            self.general_profile_idc,
            self.general_profile_compatibility_flags.reverse_bits(),
            self.general_level_idc
        );
        let used = self
            .general_constraint_flags
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        for b in &self.general_constraint_flags[..used] {
            let _ = write!(s, ".{b:02X}");
        }
        s
    }
}

/// [`SpsInfo::codec_string`] straight from an SPS NAL unit (2-byte header included).
pub fn codec_string(sps_nal: &[u8]) -> Result<heapless::String<48>, H265Error> {
    parse_sps(sps_nal).map(|info| info.codec_string())
}

/// Largest `pic_width/height_in_luma_samples` accepted; level 6.2 tops out at 8444 × 8444
/// luma (sqrt(MaxLumaPs * 8)), so this only guards the arithmetic against absurd values.
const MAX_DIM_SAMPLES: u32 = 16_888;
/// Bound on `NumNegativePics` / `NumPositivePics` of one short-term RPS: H.265 §7.4.8 limits
/// each to `sps_max_dec_pic_buffering_minus1` (at most 15).
const MAX_RPS_PICS: usize = 16;
/// H.265 §7.4.3.2.1: `num_short_term_ref_pic_sets` is in 0..=64.
const MAX_SHORT_TERM_RPS: usize = 64;

/// Parses a base-layer (`nuh_layer_id` 0) sequence parameter set NAL unit (2-byte header
/// included), H.265 §7.3.2.2.1, through the VUI timing info.
///
/// Scaling lists, short- and long-term reference picture sets are walked and discarded.
/// A VUI that cannot be read only loses `fps`; an error anywhere before it fails the parse.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, H265Error> {
    let header = nal.get(..2).ok_or(H265Error::Truncated)?;
    // Only base-layer SPSes: with nuh_layer_id > 0 (multi-layer extensions, F.7.3.2.2.1) the
    // syntax changes and profile_tier_level may be absent.
    if nal_type(header[0]) != nal::SPS || nuh_layer_id(header) != 0 {
        return Err(H265Error::WrongNalType);
    }
    // Slicing at 2 cannot fail: `get(..2)` just succeeded.
    let mut r = BitReader::new(&nal[2..]);
    let _sps_video_parameter_set_id = r.read_bits(4)?;
    let sps_max_sub_layers_minus1 = r.read_bits(3)?;
    if sps_max_sub_layers_minus1 > 6 {
        return Err(H265Error::OutOfRange);
    }
    let _sps_temporal_id_nesting_flag = r.read_bit()?;
    let ptl = read_profile_tier_level(&mut r, sps_max_sub_layers_minus1)?;

    let sps_seq_parameter_set_id = r.read_ue()?;
    if sps_seq_parameter_set_id > 15 {
        return Err(H265Error::OutOfRange);
    }
    let chroma_format_idc = r.read_ue()?;
    if chroma_format_idc > 3 {
        return Err(H265Error::OutOfRange);
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.read_bit()?;
    let pic_width = r.read_ue()?;
    let pic_height = r.read_ue()?;
    if pic_width == 0
        || pic_height == 0
        || pic_width > MAX_DIM_SAMPLES
        || pic_height > MAX_DIM_SAMPLES
    {
        return Err(H265Error::OutOfRange);
    }
    let mut window = [0u32; 4]; // left, right, top, bottom
    let conformance_window_flag = r.read_bit()?;
    if conformance_window_flag {
        for w in window.iter_mut() {
            *w = r.read_ue()?;
        }
    }
    // §6.2 Table 6-1: SubWidthC/SubHeightC; 1 for monochrome and separate colour planes.
    let (sub_width_c, sub_height_c): (u64, u64) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let crop_w = (u64::from(window[0]) + u64::from(window[1])) * sub_width_c;
    let crop_h = (u64::from(window[2]) + u64::from(window[3])) * sub_height_c;
    if crop_w >= u64::from(pic_width) || crop_h >= u64::from(pic_height) {
        return Err(H265Error::OutOfRange);
    }
    // Both crops are below the u32 sizes they are subtracted from.
    let width = pic_width - crop_w as u32;
    let height = pic_height - crop_h as u32;

    let bit_depth_luma_minus8 = r.read_ue()?;
    let bit_depth_chroma_minus8 = r.read_ue()?;
    if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
        return Err(H265Error::OutOfRange);
    }
    let log2_max_pic_order_cnt_lsb_minus4 = r.read_ue()?;
    if log2_max_pic_order_cnt_lsb_minus4 > 12 {
        return Err(H265Error::OutOfRange);
    }
    let sps_sub_layer_ordering_info_present_flag = r.read_bit()?;
    let first = if sps_sub_layer_ordering_info_present_flag {
        0
    } else {
        sps_max_sub_layers_minus1
    };
    for _ in first..=sps_max_sub_layers_minus1 {
        r.skip_ue()?; // sps_max_dec_pic_buffering_minus1
        r.skip_ue()?; // sps_max_num_reorder_pics
        r.skip_ue()?; // sps_max_latency_increase_plus1
    }
    r.skip_ue()?; // log2_min_luma_coding_block_size_minus3
    r.skip_ue()?; // log2_diff_max_min_luma_coding_block_size
    r.skip_ue()?; // log2_min_luma_transform_block_size_minus2
    r.skip_ue()?; // log2_diff_max_min_luma_transform_block_size
    r.skip_ue()?; // max_transform_hierarchy_depth_inter
    r.skip_ue()?; // max_transform_hierarchy_depth_intra
    let scaling_list_enabled_flag = r.read_bit()?;
    if scaling_list_enabled_flag {
        let sps_scaling_list_data_present_flag = r.read_bit()?;
        if sps_scaling_list_data_present_flag {
            skip_scaling_list_data(&mut r)?;
        }
    }
    let _amp_enabled_flag = r.read_bit()?;
    let _sample_adaptive_offset_enabled_flag = r.read_bit()?;
    let pcm_enabled_flag = r.read_bit()?;
    if pcm_enabled_flag {
        r.skip(8)?; // pcm_sample_bit_depth_luma_minus1, pcm_sample_bit_depth_chroma_minus1
        r.skip_ue()?; // log2_min_pcm_luma_coding_block_size_minus3
        r.skip_ue()?; // log2_diff_max_min_pcm_luma_coding_block_size
        r.skip(1)?; // pcm_loop_filter_disabled_flag
    }
    let num_short_term_ref_pic_sets = r.read_ue()?;
    if num_short_term_ref_pic_sets as usize > MAX_SHORT_TERM_RPS {
        return Err(H265Error::OutOfRange);
    }
    // In the SPS an inter-predicted set always refers to the set just before it
    // (delta_idx_minus1 is only coded in slice headers), so one previous set is enough.
    let mut prev = StRefPicSet::default();
    for idx in 0..num_short_term_ref_pic_sets as usize {
        prev = read_st_ref_pic_set(&mut r, idx, &prev)?;
    }
    let long_term_ref_pics_present_flag = r.read_bit()?;
    if long_term_ref_pics_present_flag {
        let num_long_term_ref_pics_sps = r.read_ue()?;
        // §7.4.3.2.1: 0..=32.
        if num_long_term_ref_pics_sps > 32 {
            return Err(H265Error::OutOfRange);
        }
        let lsb_bits = log2_max_pic_order_cnt_lsb_minus4 as usize + 4;
        for _ in 0..num_long_term_ref_pics_sps {
            r.skip(lsb_bits)?; // lt_ref_pic_poc_lsb_sps
            r.skip(1)?; // used_by_curr_pic_lt_sps_flag
        }
    }
    let _sps_temporal_mvp_enabled_flag = r.read_bit()?;
    let _strong_intra_smoothing_enabled_flag = r.read_bit()?;
    let vui_parameters_present_flag = r.read_bit()?;
    let fps = if vui_parameters_present_flag {
        vui_fps(&mut r).ok().flatten()
    } else {
        None
    };

    Ok(SpsInfo {
        general_profile_space: ptl.profile_space,
        general_tier_flag: ptl.tier_flag,
        general_profile_idc: ptl.profile_idc,
        general_profile_compatibility_flags: ptl.compatibility_flags,
        general_constraint_flags: ptl.constraint_flags,
        general_level_idc: ptl.level_idc,
        // All of these were range-checked above.
        max_sub_layers: sps_max_sub_layers_minus1 as u8 + 1,
        sps_seq_parameter_set_id,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma: bit_depth_luma_minus8 as u8 + 8,
        width,
        height,
        fps,
    })
}

/// The general part of `profile_tier_level()`.
struct GeneralPtl {
    profile_space: u8,
    tier_flag: bool,
    profile_idc: u8,
    compatibility_flags: u32,
    constraint_flags: [u8; 6],
    level_idc: u8,
}

/// Reads `profile_tier_level(1, maxNumSubLayersMinus1)` (H.265 §7.3.3), skipping the
/// sub-layer entries.
fn read_profile_tier_level(
    r: &mut BitReader<'_>,
    max_sub_layers_minus1: u32,
) -> Result<GeneralPtl, H265Error> {
    // read_bits(n) < 2^n, so the narrowing casts below are exact.
    let profile_space = r.read_bits(2)? as u8;
    let tier_flag = r.read_bit()?;
    let profile_idc = r.read_bits(5)? as u8;
    let compatibility_flags = r.read_bits(32)?;
    let mut constraint_flags = [0u8; 6];
    for b in constraint_flags.iter_mut() {
        *b = r.read_u8()?;
    }
    let level_idc = r.read_u8()?;

    // max_sub_layers_minus1 <= 6 (checked by the caller), so 7 entries cover it.
    let mut profile_present = [false; 7];
    let mut level_present = [false; 7];
    let n = max_sub_layers_minus1 as usize;
    for i in 0..n {
        profile_present[i] = r.read_bit()?;
        level_present[i] = r.read_bit()?;
    }
    if n > 0 {
        r.skip(2 * (8 - n))?; // reserved_zero_2bits for i in n..8
    }
    for i in 0..n {
        if profile_present[i] {
            // sub_layer_profile_space .. sub_layer_inbld_flag: 2+1+5+32+4+43+1 bits.
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?; // sub_layer_level_idc
        }
    }
    Ok(GeneralPtl {
        profile_space,
        tier_flag,
        profile_idc,
        compatibility_flags,
        constraint_flags,
        level_idc,
    })
}

/// Walks `scaling_list_data()` (H.265 §7.3.4) without keeping it.
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Result<(), H265Error> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _matrix_id in (0..6).step_by(step) {
            let scaling_list_pred_mode_flag = r.read_bit()?;
            if !scaling_list_pred_mode_flag {
                r.skip_ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coef_num = 64.min(1u32 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.read_se()?; // scaling_list_dc_coef_minus8
                }
                for _ in 0..coef_num {
                    r.read_se()?; // scaling_list_delta_coef
                }
            }
        }
    }
    Ok(())
}

/// The derived delta POCs of one short-term reference picture set (H.265 §7.4.8), kept only
/// so that the next set can be predicted from it.
#[derive(Clone, Copy, Default)]
struct StRefPicSet {
    /// `DeltaPocS0`, negative and decreasing.
    s0: [i32; MAX_RPS_PICS],
    /// `DeltaPocS1`, positive and increasing.
    s1: [i32; MAX_RPS_PICS],
    num_negative: usize,
    num_positive: usize,
}

impl StRefPicSet {
    fn num_delta_pocs(&self) -> usize {
        self.num_negative + self.num_positive
    }
    fn push_s0(&mut self, d: i32) -> Result<(), H265Error> {
        let slot = self.s0.get_mut(self.num_negative);
        *slot.ok_or(H265Error::OutOfRange)? = d;
        self.num_negative += 1;
        Ok(())
    }
    fn push_s1(&mut self, d: i32) -> Result<(), H265Error> {
        let slot = self.s1.get_mut(self.num_positive);
        *slot.ok_or(H265Error::OutOfRange)? = d;
        self.num_positive += 1;
        Ok(())
    }
}

/// H.265 §7.4.8: `delta_poc_s0/s1_minus1` and `abs_delta_rps_minus1` are in 0..=2^15 - 1.
const MAX_DELTA_POC_MINUS1: u32 = (1 << 15) - 1;

/// Reads `st_ref_pic_set(stRpsIdx)` as it appears in the SPS (H.265 §7.3.7) and derives its
/// delta POCs (§7.4.8, equations 7-61 and 7-62). The derivation matters: in an inter-predicted
/// set an entry whose predicted delta POC is 0 is dropped even with `use_delta_flag` set, and
/// the next set's flag count depends on the survivors.
#[allow(clippy::needless_range_loop)] // mirrors the spec's equations; see the comment inside
fn read_st_ref_pic_set(
    r: &mut BitReader<'_>,
    idx: usize,
    prev: &StRefPicSet,
) -> Result<StRefPicSet, H265Error> {
    let mut rps = StRefPicSet::default();
    let inter_ref_pic_set_prediction_flag = idx != 0 && r.read_bit()?;
    if inter_ref_pic_set_prediction_flag {
        let delta_rps_sign = r.read_bit()?;
        let abs_delta_rps_minus1 = r.read_ue()?;
        if abs_delta_rps_minus1 > MAX_DELTA_POC_MINUS1 {
            return Err(H265Error::OutOfRange);
        }
        // |delta_rps| <= 2^15 and every stored delta POC is within 16 * 2^15 * 64 of 0 (each
        // set adds at most one delta_rps), so the sums below stay far inside i32.
        let magnitude = abs_delta_rps_minus1 as i32 + 1;
        let delta_rps = if delta_rps_sign {
            -magnitude
        } else {
            magnitude
        };
        // use_delta_flag[j] for j in 0..=NumDeltaPocs[RefRpsIdx], inferred 1 when absent. The
        // reference has at most 2 * MAX_RPS_PICS entries, plus one for delta_rps itself.
        let mut use_delta = [false; 2 * MAX_RPS_PICS + 1];
        let ref_count = prev.num_delta_pocs();
        for flag in use_delta.iter_mut().take(ref_count + 1) {
            let used_by_curr_pic_flag = r.read_bit()?;
            *flag = used_by_curr_pic_flag || r.read_bit()?;
        }
        let (neg, pos) = (prev.num_negative, prev.num_positive);
        // Indexing below cannot go out of bounds: neg, pos <= MAX_RPS_PICS (push_s0/push_s1
        // refuse more), so neg + j < 2 * MAX_RPS_PICS and ref_count <= 2 * MAX_RPS_PICS, both
        // inside `use_delta`. The loops keep the index form of (7-61)/(7-62) to be checkable
        // against the spec line by line.
        // (7-61): the negative pictures, closest first.
        for j in (0..pos).rev() {
            let d = prev.s1[j] + delta_rps;
            if d < 0 && use_delta[neg + j] {
                rps.push_s0(d)?;
            }
        }
        if delta_rps < 0 && use_delta[ref_count] {
            rps.push_s0(delta_rps)?;
        }
        for j in 0..neg {
            let d = prev.s0[j] + delta_rps;
            if d < 0 && use_delta[j] {
                rps.push_s0(d)?;
            }
        }
        // (7-62): the positive pictures.
        for j in (0..neg).rev() {
            let d = prev.s0[j] + delta_rps;
            if d > 0 && use_delta[j] {
                rps.push_s1(d)?;
            }
        }
        if delta_rps > 0 && use_delta[ref_count] {
            rps.push_s1(delta_rps)?;
        }
        for j in 0..pos {
            let d = prev.s1[j] + delta_rps;
            if d > 0 && use_delta[neg + j] {
                rps.push_s1(d)?;
            }
        }
    } else {
        let num_negative_pics = r.read_ue()?;
        let num_positive_pics = r.read_ue()?;
        if num_negative_pics as usize > MAX_RPS_PICS || num_positive_pics as usize > MAX_RPS_PICS {
            return Err(H265Error::OutOfRange);
        }
        // (7-65)..(7-68): cumulative deltas.
        let mut poc = 0i32;
        for _ in 0..num_negative_pics {
            let delta_poc_s0_minus1 = r.read_ue()?;
            if delta_poc_s0_minus1 > MAX_DELTA_POC_MINUS1 {
                return Err(H265Error::OutOfRange);
            }
            poc -= delta_poc_s0_minus1 as i32 + 1;
            r.skip(1)?; // used_by_curr_pic_s0_flag
            rps.push_s0(poc)?;
        }
        poc = 0;
        for _ in 0..num_positive_pics {
            let delta_poc_s1_minus1 = r.read_ue()?;
            if delta_poc_s1_minus1 > MAX_DELTA_POC_MINUS1 {
                return Err(H265Error::OutOfRange);
            }
            poc += delta_poc_s1_minus1 as i32 + 1;
            r.skip(1)?; // used_by_curr_pic_s1_flag
            rps.push_s1(poc)?;
        }
    }
    Ok(rps)
}

/// Reads `vui_parameters()` (H.265 §E.2.1) up to the timing info and returns the picture rate.
fn vui_fps(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, H265Error> {
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
            r.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coeffs
        }
    }
    if r.read_bit()? {
        r.skip_ue()?; // chroma_sample_loc_type_top_field
        r.skip_ue()?; // chroma_sample_loc_type_bottom_field
    }
    // neutral_chroma_indication_flag, field_seq_flag, frame_field_info_present_flag
    r.skip(3)?;
    let default_display_window_flag = r.read_bit()?;
    if default_display_window_flag {
        for _ in 0..4 {
            r.skip_ue()?;
        }
    }
    let vui_timing_info_present_flag = r.read_bit()?;
    if !vui_timing_info_present_flag {
        return Ok(None);
    }
    let vui_num_units_in_tick = r.read_bits(32)?;
    let vui_time_scale = r.read_bits(32)?;
    Ok(reduce_rate(
        u64::from(vui_time_scale),
        u64::from(vui_num_units_in_tick),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::bits::test_support::{annexb_nals, mutate, BitWriter, XorShift};
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    fn first_of_type(stream: &[u8], t: u8) -> &[u8] {
        annexb_nals(stream)
            .into_iter()
            .find(|n| nal_type(n[0]) == t)
            .expect("fixture has the NAL type")
    }

    /// Expected values from `ffmpeg -bsf:v trace_headers` on the fixture (see
    /// tests/fixtures/README.md): Main profile (idc 1, compatibility flags 1 and 2), Main tier,
    /// level 120 (4.0), progressive_source and frame_only_constraint set, 1920x1080 with no
    /// conformance window, VUI time_scale 25 / num_units_in_tick 1.
    #[test]
    fn x265_main_1080p25() {
        let stream = fixture("x265_main_1920x1080_25fps.h265");
        let sps = first_of_type(&stream, nal::SPS);
        let info = parse_sps(sps).unwrap();
        assert_eq!(
            info,
            SpsInfo {
                general_profile_space: 0,
                general_tier_flag: false,
                general_profile_idc: 1,
                general_profile_compatibility_flags: 0x6000_0000,
                general_constraint_flags: [0x90, 0, 0, 0, 0, 0],
                general_level_idc: 120,
                max_sub_layers: 1,
                sps_seq_parameter_set_id: 0,
                chroma_format_idc: 1,
                bit_depth_luma: 8,
                width: 1920,
                height: 1080,
                fps: Some((25, 1)),
            }
        );
        // Compatibility flags reversed: bits 1 and 2 -> 0b110 = 6.
        assert_eq!(info.codec_string().as_str(), "hvc1.1.6.L120.90");
        assert_eq!(codec_string(sps).unwrap().as_str(), "hvc1.1.6.L120.90");
    }

    /// Main 10, 426x240: pic_width_in_luma_samples 432 with conf_win_right_offset 3 in chroma
    /// units (SubWidthC 2) -> 426. Compatibility flag 2 only -> "4". Level 60 (2.0), 30 fps.
    #[test]
    fn x265_main10_conformance_window() {
        let stream = fixture("x265_main10_426x240_30fps.h265");
        let info = parse_sps(first_of_type(&stream, nal::SPS)).unwrap();
        assert_eq!((info.general_profile_idc, info.bit_depth_luma), (2, 10));
        assert_eq!((info.width, info.height), (426, 240));
        assert_eq!(info.fps, Some((30, 1)));
        assert_eq!(info.codec_string().as_str(), "hvc1.2.4.L60.90");
    }

    /// Two pictures of two slices each (x265 `slices=2`): the flag is set on the first slice
    /// segment of each picture only; the first picture is IDR_N_LP (20), the second TRAIL_R.
    #[test]
    fn x265_slices_first_slice_flag() {
        let stream = fixture("x265_main_1920x1080_25fps.h265");
        let mut seen = Vec::new();
        for n in annexb_nals(&stream) {
            let t = nal_type(n[0]);
            if is_vcl(t) {
                seen.push((t, first_slice_segment_in_pic_flag(n).unwrap()));
            } else {
                assert_eq!(
                    first_slice_segment_in_pic_flag(n),
                    Err(H265Error::WrongNalType)
                );
            }
        }
        assert_eq!(
            seen,
            [(20, true), (20, false), (1, true), (1, false)],
            "trace_headers shows IDR_N_LP x2 then TRAIL_R x2"
        );
        assert!(is_irap(20) && is_idr(20) && !is_irap(1));
        assert_eq!(
            first_slice_segment_in_pic_flag(&[0x28]),
            Err(H265Error::Truncated)
        );
        assert_eq!(
            first_slice_segment_in_pic_flag(&[0x28, 0x01]),
            Err(H265Error::Truncated)
        );
    }

    #[test]
    fn nal_header_helpers() {
        // 40 01 = VPS, 42 01 = SPS, 44 01 = PPS, 26 01 = IDR_W_RADL, 02 01 = TRAIL_R, 46 01 AUD.
        assert_eq!(nal_type(0x40), nal::VPS);
        assert_eq!(nal_type(0x42), nal::SPS);
        assert_eq!(nal_type(0x44), nal::PPS);
        assert_eq!(nal_type(0x26), nal::IDR_W_RADL);
        assert_eq!(nal_type(0x2a), nal::CRA_NUT);
        assert_eq!(nal_type(0x02), nal::TRAIL_R);
        assert_eq!(nal_type(0x46), nal::AUD);
        assert_eq!(nal_type(0x4e), nal::PREFIX_SEI);
        assert_eq!(nal_type(0x50), nal::SUFFIX_SEI);
        assert_eq!(
            (temporal_id(0x01), temporal_id(0x03), temporal_id(0)),
            (0, 2, 0)
        );
        assert_eq!(
            (nuh_layer_id(&[0x42, 0x01]), nuh_layer_id(&[0x43, 0x09])),
            (0, 33)
        );
        assert_eq!(parse_sps(&[0x42, 0x09, 0x01]), Err(H265Error::WrongNalType));
        assert!(is_vcl(0) && is_vcl(31) && !is_vcl(32));
        assert!(!is_irap(15) && is_irap(16) && is_irap(23) && !is_irap(24));
        assert!(is_idr(19) && !is_idr(21));
    }

    /// Options for an SPS built field by field in H.265 §7.3.2.2.1 order.
    struct Built {
        sub_layers_minus1: u32,
        chroma_format_idc: u32,
        window: Option<[u32; 4]>,
        scaling_lists: bool,
        pcm: bool,
        inter_rps: bool,
        long_term: bool,
        vui_extras: bool,
    }

    fn build_sps(o: &Built) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.bits(4, 0)
            .bits(3, u64::from(o.sub_layers_minus1))
            .bit(true);
        // general PTL: space 1, high tier, profile 4 (RExt), compat flag 4, constraints.
        w.bits(2, 1).bit(true).bits(5, 4).bits(32, 0x0800_0000);
        w.bits(48, 0xb0_12_00_00_00_40).bits(8, 153);
        let n = o.sub_layers_minus1;
        for i in 0..n {
            w.bit(i % 2 == 0).bit(true); // profile present on even, level on all
        }
        if n > 0 {
            w.bits(2 * (8 - n), 0);
        }
        for i in 0..n {
            if i % 2 == 0 {
                w.bits(40, 0x01_6000_0000).bits(48, 0x9000_0000_0000); // Main, progressive
            }
            w.bits(8, 90);
        }
        w.ue(3).ue(o.chroma_format_idc);
        if o.chroma_format_idc == 3 {
            w.bit(false);
        }
        w.ue(1288).ue(728);
        match o.window {
            Some(win) => {
                w.bit(true);
                for v in win {
                    w.ue(v);
                }
            }
            None => {
                w.bit(false);
            }
        }
        w.ue(0).ue(0).ue(4); // 8-bit, log2_max_poc_lsb = 8
        w.bit(true); // ordering info for every sub-layer
        for _ in 0..=n {
            w.ue(4).ue(2).ue(0);
        }
        w.ue(0).ue(3).ue(0).ue(3).ue(1).ue(1);
        w.bit(o.scaling_lists);
        if o.scaling_lists {
            w.bit(true);
            for size_id in 0..4u32 {
                let step = if size_id == 3 { 3 } else { 1 };
                for m in (0..6).step_by(step) {
                    if m % 2 == 1 {
                        w.bit(false).ue(1); // copy from the previous matrix
                    } else {
                        w.bit(true);
                        if size_id > 1 {
                            w.se(8);
                        }
                        let coefs = 64.min(1 << (4 + (size_id << 1)));
                        for j in 0..coefs {
                            w.se(if j % 3 == 0 { -7 } else { 2 });
                        }
                    }
                }
            }
        }
        w.bit(true).bit(true).bit(o.pcm);
        if o.pcm {
            w.bits(4, 7).bits(4, 7).ue(0).ue(1).bit(true);
        }
        if o.inter_rps {
            w.ue(3);
            // RPS 0: DeltaPocS0 = [-1, -3], DeltaPocS1 = [1].
            w.ue(2)
                .ue(1)
                .ue(0)
                .bit(true)
                .ue(1)
                .bit(false)
                .ue(0)
                .bit(true);
            // RPS 1 from RPS 0 with deltaRps = +1, 4 flag entries (S0[0], S0[1], S1[0], and
            // deltaRps itself): used, unused with use_delta 0, used, unused with use_delta 1.
            // -1 + 1 = 0 is dropped, -3 is not used, so DeltaPocS1 = [1, 2]: 2 pictures.
            w.bit(true).bit(false).ue(0);
            w.bit(true)
                .bit(false)
                .bit(false)
                .bit(true)
                .bit(false)
                .bit(true);
            // RPS 2 from RPS 1 with deltaRps = -2: 3 flag entries, all used. 2 - 2 = 0 drops.
            w.bit(true).bit(true).ue(1);
            w.bit(true).bit(true).bit(true);
        } else {
            w.ue(1).ue(1).ue(0).ue(0).bit(true);
        }
        w.bit(o.long_term);
        if o.long_term {
            w.ue(2).bits(8, 0x55).bit(true).bits(8, 0xaa).bit(false);
        }
        w.bit(true).bit(true); // temporal MVP, strong intra smoothing
        w.bit(true); // vui_parameters_present_flag
        if o.vui_extras {
            w.bit(true).bits(8, 255).bits(16, 1).bits(16, 1);
            w.bit(true).bit(true);
            w.bit(true)
                .bits(3, 5)
                .bit(true)
                .bit(true)
                .bits(24, 0x09_10_09);
            w.bit(true).ue(2).ue(2);
            w.bit(false).bit(false).bit(true);
            w.bit(true).ue(0).ue(4).ue(0).ue(4);
        } else {
            w.bits(4, 0).bits(3, 0).bit(false);
        }
        w.bit(true)
            .bits(32, 1001)
            .bits(32, 60_000)
            .bit(false)
            .bit(false);
        w.bit(false); // bitstream_restriction_flag
        w.bit(false); // sps_extension_present_flag
        w.trailing();
        w.nal(&[0x42, 0x01])
    }

    #[test]
    fn hand_built_sps_sub_layers_rps_scaling_lists() {
        let base = Built {
            sub_layers_minus1: 0,
            chroma_format_idc: 1,
            window: None,
            scaling_lists: false,
            pcm: false,
            inter_rps: false,
            long_term: false,
            vui_extras: false,
        };
        let info = parse_sps(&build_sps(&base)).unwrap();
        assert_eq!(
            (info.width, info.height, info.fps),
            (1288, 728, Some((60000, 1001)))
        );
        assert_eq!(
            info.codec_string().as_str(),
            "hvc1.A4.10.H153.B0.12.00.00.00.40"
        );

        let full = Built {
            sub_layers_minus1: 3,
            chroma_format_idc: 1,
            window: Some([0, 4, 0, 4]),
            scaling_lists: true,
            pcm: true,
            inter_rps: true,
            long_term: true,
            vui_extras: true,
        };
        for sub_layers_minus1 in 1..=6 {
            let o = Built {
                sub_layers_minus1,
                ..full
            };
            let info = parse_sps(&build_sps(&o))
                .unwrap_or_else(|e| panic!("sub_layers_minus1 {sub_layers_minus1}: {e:?}"));
            // Window offsets are in chroma units: (4 * 2) off each dimension.
            assert_eq!((info.width, info.height), (1280, 720));
            assert_eq!(info.max_sub_layers as u32, sub_layers_minus1 + 1);
            assert_eq!(info.general_level_idc, 153);
            assert_eq!(info.fps, Some((60000, 1001)), "VUI reached after the walk");
        }
        // 4:4:4: the window is in luma units (SubWidthC = SubHeightC = 1).
        let o = Built {
            chroma_format_idc: 3,
            window: Some([4, 4, 4, 4]),
            ..full
        };
        let info = parse_sps(&build_sps(&o)).unwrap();
        assert_eq!(
            (info.chroma_format_idc, info.width, info.height),
            (3, 1280, 720)
        );
        // Window as large as the picture is rejected.
        let o = Built {
            window: Some([0, 644, 0, 0]),
            ..base
        };
        assert_eq!(parse_sps(&build_sps(&o)), Err(H265Error::OutOfRange));
    }

    /// `build_sps` output (with general_profile_space 0 and RExt-legal constraint flags, which
    /// ffmpeg insists on) behind x265's VPS, read back by ffmpeg's own parser (`trace_headers`
    /// reaches rbsp_stop_one_bit: 1288x728, conf_win_right/bottom 4, num_long_term_ref_pics_sps
    /// 2, vui_time_scale 60000 / vui_num_units_in_tick 1001). This checks the builder — and so
    /// the inter-RPS derivation the tests above rely on — against an independent reader.
    #[test]
    fn ffmpeg_checked_hand_built_sps_fixtures() {
        for (name, chroma, size) in [
            (
                "handbuilt_h265_sps_4sublayers_rps_scaling_420.h265",
                1,
                (1280, 720),
            ),
            (
                "handbuilt_h265_sps_4sublayers_rps_scaling_444.h265",
                3,
                (1284, 724),
            ),
        ] {
            let stream = fixture(name);
            let info = parse_sps(first_of_type(&stream, nal::SPS)).unwrap();
            assert_eq!(info.chroma_format_idc, chroma, "{name}");
            assert_eq!((info.width, info.height), size, "{name}");
            assert_eq!(info.max_sub_layers, 4, "{name}");
            assert_eq!(info.fps, Some((60000, 1001)), "{name}");
            assert_eq!(
                info.codec_string().as_str(),
                "hvc1.4.10.H153.B0.10",
                "{name}"
            );
        }
    }

    #[test]
    fn rejects_wrong_type_and_truncation() {
        assert_eq!(parse_sps(&[0x42]), Err(H265Error::Truncated));
        assert_eq!(parse_sps(&[0x40, 0x01, 0]), Err(H265Error::WrongNalType));
        assert_eq!(parse_sps(&[0x42, 0x01, 0x01]), Err(H265Error::Truncated));
        // A truncated VUI loses only the frame rate.
        let stream = fixture("x265_main_1920x1080_25fps.h265");
        let sps = first_of_type(&stream, nal::SPS);
        let info = parse_sps(&sps[..sps.len() - 6]).unwrap();
        assert_eq!(((info.width, info.height), info.fps), ((1920, 1080), None));
    }

    /// Truncations of real NAL units and bounded seeded random bytes must never panic.
    #[test]
    fn malformed_input_never_panics() {
        for name in [
            "x265_main_1920x1080_25fps.h265",
            "x265_main10_426x240_30fps.h265",
        ] {
            let stream = fixture(name);
            for n in annexb_nals(&stream) {
                for len in 0..n.len().min(96) {
                    let _ = parse_sps(&n[..len]);
                    let _ = first_slice_segment_in_pic_flag(&n[..len]);
                }
            }
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            for b in buf[..len].iter_mut() {
                let x = rng.next();
                *b = if x.is_multiple_of(3) {
                    0
                } else {
                    (x >> 8) as u8
                };
            }
            if len >= 2 {
                buf[0] = 0x42;
                buf[1] = 0x01;
            }
            let _ = parse_sps(&buf[..len]);
            let _ = first_slice_segment_in_pic_flag(&buf[..len]);
        }
        // Mutated real and hand-built SPSes: whatever still parses obeys the invariants.
        let mut ok = 0;
        let mut nal = Vec::new();
        for name in [
            "x265_main_1920x1080_25fps.h265",
            "x265_main10_426x240_30fps.h265",
            "handbuilt_h265_sps_4sublayers_rps_scaling_420.h265",
            "handbuilt_h265_sps_4sublayers_rps_scaling_444.h265",
        ] {
            let stream = fixture(name);
            let sps = first_of_type(&stream, nal::SPS);
            for _ in 0..5_000 {
                mutate(&mut rng, sps, &mut nal);
                if let Ok(info) = parse_sps(&nal) {
                    ok += 1;
                    assert!(info.width > 0 && info.width <= MAX_DIM_SAMPLES);
                    assert!(info.height > 0 && info.height <= MAX_DIM_SAMPLES);
                    assert!(info.codec_string().len() <= 40);
                }
            }
        }
        assert!(ok > 1_000, "mutations should often still parse ({ok})");
    }
}
