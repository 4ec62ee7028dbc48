//! Built-in test source (`source.kind = "testsrc"`): synthesises an H.264 video elementary stream
//! and an AAC-LC audio stream so rillcast can be exercised with no camera and no ffmpeg.
//!
//! Owns: two pure generators, [`TestPattern`] (H.264 Annex B access units) and [`TestTone`]
//! (AAC-LC ADTS frames), plus a private bit writer with emulation prevention. Must not: read a
//! clock (the caller paces frames and stamps them), do I/O, or allocate per frame — every frame is
//! written into a buffer the caller sized once with `max_frame_len`.
//!
//! # How the picture is coded without an encoder
//! H.264 Constrained Baseline, CAVLC, one slice per picture, deblocking disabled, so every decoded
//! sample is exactly what we put in the stream:
//! - **IDR**: the grey background is `I_16x16` DC prediction with no residual (a flat MB with no
//!   neighbours predicts 128, and so does one whose neighbours are 128). Picture content (the box,
//!   the frame counter) is `I_PCM`. Because DC prediction of a flat MB reads its left and top
//!   neighbours, any MB right of or below a non-grey MB is coded as an `I_PCM` *grey* guard MB, so
//!   no colour smears into the background. The keyframe therefore already shows the full scene.
//! - **P**: `mb_skip_run` over MBs whose content did not change (P_Skip with a zero motion vector:
//!   all neighbours are either intra or zero-MV skips, so the predicted MV is always 0, H.264
//!   §8.4.1.1) and `I_PCM` for MBs that changed — the box's leading column, its erased trailing
//!   column, and the counter bits that flipped.
//!
//! The scene: a box (up to 8x8 MBs, 128x128 px) with a vertical gradient, moving one MB (16 px)
//! per frame and changing colour at each bounce, plus a binary frame counter (black = 0,
//! white = 1, most significant bit left) in the bottom MB row. A P frame codes ~18 I_PCM MBs
//! (~7 KB); an IDR ~100 (~38 KB). Measured at 1280x720@30 with one IDR per second: 746 333 bytes
//! for 90 frames, i.e. 2.0 Mbit/s; 320x240@25 with GOP 12: 1.8 Mbit/s.
//!
//! # Audio
//! AAC-LC, ONLY_LONG windows. Frames are silent (`max_sfb = 0`) except for a ~125 ms beep at the
//! start of every second: one spectral coefficient of value 1 near 1 kHz (ISO 14496-3 §4.6.3,
//! spectrum Huffman codebook 1, table 4.A.2), which an MDCT synthesis with the sine window turns
//! into a steady tone of constant amplitude, faded in and out over one frame by the window.

use core::fmt;

use crate::media::AudioParams;

/// Why a generator refused its parameters or could not write a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestSrcError {
    /// Width or height is not a multiple of 16 or is below 32 pixels.
    BadDimensions,
    /// Frame rate is zero or too high for the VUI timing fields.
    BadFrameRate,
    /// GOP length is zero.
    BadGop,
    /// No H.264 level (up to 5.2) allows this frame size and rate.
    NoLevel,
    /// The caller's buffer is smaller than the frame; the generator state did not advance.
    BufferTooSmall,
    /// The sample rate is not in the MPEG-4 sampling frequency table (ISO 14496-3 §1.6.3.4).
    BadSampleRate,
    /// Only mono (channel configuration 1) and stereo (2) are generated.
    BadChannels,
}

impl fmt::Display for TestSrcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TestSrcError::BadDimensions => {
                "test source: width/height must be multiples of 16, >= 32"
            }
            TestSrcError::BadFrameRate => "test source: frame rate must be 1..=240",
            TestSrcError::BadGop => "test source: GOP length must be at least 1 frame",
            TestSrcError::NoLevel => "test source: frame size/rate exceeds H.264 level 5.2",
            TestSrcError::BufferTooSmall => "test source: output buffer too small",
            TestSrcError::BadSampleRate => "test source: unsupported AAC sample rate",
            TestSrcError::BadChannels => "test source: AAC channels must be 1 or 2",
        };
        f.write_str(s)
    }
}

impl std::error::Error for TestSrcError {}

// ---------------------------------------------------------------------------------------------
// Bit writer
// ---------------------------------------------------------------------------------------------

/// MSB-first bit writer into a caller buffer. With `escape` on it inserts H.264
/// emulation-prevention bytes (§7.4.1: `00 00 0x` with x <= 3 becomes `00 00 03 0x`), so it
/// writes a NAL unit's payload directly from its RBSP. Overflow is sticky and reported by
/// [`BitWriter::finish`], so the field-writing code stays free of error plumbing.
struct BitWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    /// Pending bits (fewer than 8), right-aligned.
    acc: u64,
    acc_bits: u32,
    /// Consecutive zero bytes written in escape mode.
    zeros: u32,
    escape: bool,
    overflow: bool,
}

impl<'a> BitWriter<'a> {
    fn new(buf: &'a mut [u8], escape: bool) -> Self {
        BitWriter {
            buf,
            pos: 0,
            acc: 0,
            acc_bits: 0,
            zeros: 0,
            escape,
            overflow: false,
        }
    }

    fn store(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(slot) => {
                *slot = b;
                self.pos += 1;
            }
            None => self.overflow = true,
        }
    }

    fn push_byte(&mut self, b: u8) {
        if self.escape && self.zeros >= 2 && b <= 3 {
            self.store(3);
            self.zeros = 0;
        }
        self.store(b);
        self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
    }

    /// Writes the low `n` bits of `value`, most significant first. `n <= 56`.
    fn bits(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 56);
        if n == 0 {
            return;
        }
        // acc holds < 8 bits, so n <= 56 new bits fit in the u64.
        self.acc = (self.acc << n) | (value & ((1u64 << n) - 1));
        self.acc_bits += n;
        while self.acc_bits >= 8 {
            self.acc_bits -= 8;
            let b = (self.acc >> self.acc_bits) as u8;
            self.push_byte(b);
        }
        self.acc &= (1u64 << self.acc_bits) - 1;
    }

    fn flag(&mut self, b: bool) {
        self.bits(u64::from(b), 1);
    }

    /// ue(v), H.264 §9.1: `leadingZeroBits` zeros, then `codeNum + 1` in `leadingZeroBits + 1` bits.
    fn ue(&mut self, v: u32) {
        self.ue_code(u64::from(v));
    }

    /// ue(v) of a codeNum up to 2^32 (what se(v) of an i32 can need): at most 33 + 32 bits.
    fn ue_code(&mut self, code_num: u64) {
        let x = code_num + 1;
        let len = 64 - x.leading_zeros();
        self.bits(0, len - 1);
        self.bits(x, len);
    }

    /// se(v), H.264 §9.1.1: k > 0 maps to codeNum 2k-1, k <= 0 to -2k.
    fn se(&mut self, v: i32) {
        let k = i64::from(v);
        // Non-negative, at most 2^32 for v = i32::MIN.
        let code = if k > 0 { 2 * k - 1 } else { -2 * k };
        self.ue_code(code.unsigned_abs());
    }

    fn is_aligned(&self) -> bool {
        self.acc_bits == 0
    }

    /// Zero bits up to the next byte boundary (pcm_alignment_zero_bit, ADTS byte_alignment).
    fn align_zero(&mut self) {
        if self.acc_bits != 0 {
            self.bits(0, 8 - self.acc_bits);
        }
    }

    /// rbsp_trailing_bits(), H.264 §7.3.2.11: a stop bit 1, then zeros to the byte boundary.
    fn rbsp_trailing(&mut self) {
        self.bits(1, 1);
        self.align_zero();
    }

    /// Copies bytes verbatim (start codes, already escaped NAL units). Byte aligned only.
    fn raw(&mut self, bytes: &[u8]) {
        debug_assert!(self.is_aligned());
        for &b in bytes {
            self.store(b);
        }
        self.zeros = 0;
    }

    /// Starts a NAL unit: 4-byte start code (zero_byte + start code prefix, §B.1.1) and header.
    fn start_nal(&mut self, nal_ref_idc: u8, nal_unit_type: u8) {
        self.raw(&[0, 0, 0, 1]);
        self.push_byte((nal_ref_idc << 5) | nal_unit_type);
    }

    fn finish(self) -> Result<usize, TestSrcError> {
        debug_assert!(self.is_aligned());
        if self.overflow {
            Err(TestSrcError::BufferTooSmall)
        } else {
            Ok(self.pos)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Video
// ---------------------------------------------------------------------------------------------

/// Colours of the box, BT.601 limited range (Y, Cb, Cr): red, green, blue, yellow, cyan, magenta.
const BOX_COLOURS: [(u8, u8, u8); 6] = [
    (81, 90, 240),
    (145, 54, 34),
    (41, 240, 110),
    (210, 16, 146),
    (170, 166, 16),
    (106, 202, 222),
];
const GREY: u8 = 128;
const BLACK_Y: u8 = 16;
const WHITE_Y: u8 = 235;
/// Counter bits drawn in the bottom MB row (fewer if the picture is narrower).
const COUNTER_BITS_MAX: u32 = 16;
/// Box side in MBs at most (128 px).
const BOX_MBS_MAX: u32 = 8;
/// log2_max_frame_num_minus4 = 0: frame_num is 4 bits and wraps at 16.
const LOG2_MAX_FRAME_NUM: u32 = 4;
/// SPS and PPS RBSPs are far below this (about 25 and 8 bytes).
const PARAM_SET_CAP: usize = 48;
/// Bytes of an I_PCM macroblock's samples: 256 luma + 2 x 64 chroma (4:2:0, 8 bit).
const PCM_SAMPLE_BYTES: usize = 384;

/// Levels from H.264 Table A-1 as (level_idc, MaxFS in MBs, MaxMBPS). Level 3.0 is the floor so
/// that small pictures still get a bitrate limit (10 Mbit/s) above what the test pattern sends.
const LEVELS: [(u8, u32, u32); 9] = [
    (30, 1620, 40_500),
    (31, 3600, 108_000),
    (32, 5120, 216_000),
    (40, 8192, 245_760),
    (41, 8192, 245_760),
    (42, 8704, 522_240),
    (50, 22_080, 589_824),
    (51, 36_864, 983_040),
    (52, 36_864, 2_073_600),
];

/// What one macroblock shows. Two MBs with equal content have equal samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MbContent {
    Grey,
    /// Part of the box: colour index and MB row inside the box (the gradient runs top to bottom).
    Box {
        colour: u8,
        row: u8,
    },
    /// A counter bit: white when set.
    Bit(bool),
}

/// The scene of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scene {
    frame: u64,
    /// What the counter row shows: the frame number, or a stamp ([`TestPattern::set_stamp`]).
    counter: u64,
    box_x_mbs: u32,
    forward: bool,
    colour: u8,
}

/// Fixed layout derived from the picture size.
#[derive(Clone, Copy, Debug)]
struct Layout {
    mb_w: u32,
    mb_h: u32,
    box_mbs: u32,
    box_y_mbs: u32,
    counter_bits: u32,
}

impl Layout {
    fn new(mb_w: u32, mb_h: u32) -> Self {
        // The box fits above the counter row and leaves room to move sideways.
        let box_mbs = ((mb_h - 1) / 2).min(mb_w / 2).clamp(1, BOX_MBS_MAX);
        Layout {
            mb_w,
            mb_h,
            box_mbs,
            box_y_mbs: (mb_h - 1 - box_mbs) / 2,
            counter_bits: mb_w.min(COUNTER_BITS_MAX),
        }
    }

    fn content(&self, scene: &Scene, x: u32, y: u32) -> MbContent {
        if y == self.mb_h - 1 && x < self.counter_bits {
            let shift = self.counter_bits - 1 - x;
            return MbContent::Bit((scene.counter >> shift) & 1 == 1);
        }
        let in_rows = y >= self.box_y_mbs && y < self.box_y_mbs + self.box_mbs;
        let in_cols = x >= scene.box_x_mbs && x < scene.box_x_mbs + self.box_mbs;
        if in_rows && in_cols {
            MbContent::Box {
                colour: scene.colour,
                // Fits: row < box_mbs <= 8.
                row: (y - self.box_y_mbs) as u8,
            }
        } else {
            MbContent::Grey
        }
    }

    fn is_grey(&self, scene: &Scene, x: u32, y: u32) -> bool {
        self.content(scene, x, y) == MbContent::Grey
    }

    /// IDR coding decision: I_PCM for content and for grey guards right of / below content, so
    /// that every I_16x16 DC-predicted MB only sees 128-valued neighbours.
    fn idr_is_pcm(&self, scene: &Scene, x: u32, y: u32) -> bool {
        !self.is_grey(scene, x, y)
            || (x > 0 && !self.is_grey(scene, x - 1, y))
            || (y > 0 && !self.is_grey(scene, x, y - 1))
    }

    fn advance(&self, s: Scene) -> Scene {
        let max_x = self.mb_w - self.box_mbs;
        let mut next = Scene {
            frame: s.frame.wrapping_add(1),
            counter: s.frame.wrapping_add(1),
            ..s
        };
        if s.forward && s.box_x_mbs < max_x {
            next.box_x_mbs += 1;
        } else if !s.forward && s.box_x_mbs > 0 {
            next.box_x_mbs -= 1;
        } else {
            next.forward = !s.forward;
            next.colour = (s.colour + 1) % BOX_COLOURS.len() as u8;
        }
        next
    }

    /// Upper bound of I_PCM MBs in any frame: IDR = box + counter + guards (right of the box,
    /// below it, right of the counter); P = old box + new box + counter.
    fn max_pcm_mbs(&self) -> u32 {
        let b = self.box_mbs;
        let bound = 2 * b * b + 2 * b + self.counter_bits + 1;
        bound.min(self.mb_w * self.mb_h)
    }

    /// Writes an I_PCM macroblock's samples (§7.3.5: 256 luma, then Cb 8x8, then Cr 8x8).
    fn write_pcm_samples(&self, w: &mut BitWriter<'_>, content: MbContent) {
        match content {
            MbContent::Grey => self.write_flat(w, GREY, GREY, GREY),
            MbContent::Bit(set) => {
                self.write_flat(w, if set { WHITE_Y } else { BLACK_Y }, GREY, GREY)
            }
            MbContent::Box { colour, row } => {
                // In bounds: reduced modulo the table length.
                let (y0, cb, cr) = BOX_COLOURS[usize::from(colour) % BOX_COLOURS.len()];
                let total_px = self.box_mbs * 16;
                let row_px = u32::from(row) * 16;
                self.write_gradient(w, (y0, cb, cr), row_px, total_px);
            }
        }
    }

    fn write_flat(&self, w: &mut BitWriter<'_>, y: u8, cb: u8, cr: u8) {
        for _ in 0..256 {
            w.push_byte(y);
        }
        for _ in 0..64 {
            w.push_byte(cb);
        }
        for _ in 0..64 {
            w.push_byte(cr);
        }
    }

    /// Luma falls off from +24 at the top of the box to -24 at its bottom.
    fn write_gradient(
        &self,
        w: &mut BitWriter<'_>,
        colour: (u8, u8, u8),
        row_px: u32,
        total_px: u32,
    ) {
        let (y0, cb, cr) = colour;
        for r in 0..16 {
            let offset = 24 - (48 * (row_px + r) / total_px) as i32;
            let v = (i32::from(y0) + offset).clamp(i32::from(BLACK_Y), i32::from(WHITE_Y)) as u8;
            for _ in 0..16 {
                w.push_byte(v);
            }
        }
        for _ in 0..64 {
            w.push_byte(cb);
        }
        for _ in 0..64 {
            w.push_byte(cr);
        }
    }
}

/// Writes the SPS NAL unit (header included, no start code), H.264 §7.3.2.1.1 and Annex E.1.1.
fn write_sps(w: &mut BitWriter<'_>, mb_w: u32, mb_h: u32, level_idc: u8, fps: u32) {
    w.push_byte(0x67); // forbidden_zero_bit 0, nal_ref_idc 3, nal_unit_type 7 (SPS)
    w.bits(66, 8); // profile_idc: Baseline
    w.bits(0b1100_0000, 8); // constraint_set0+1 (Constrained Baseline), reserved_zero_2bits
    w.bits(u64::from(level_idc), 8);
    w.ue(0); // seq_parameter_set_id
    w.ue(LOG2_MAX_FRAME_NUM - 4); // log2_max_frame_num_minus4
    w.ue(2); // pic_order_cnt_type 2: POC follows decode order, no POC syntax in slices
    w.ue(1); // max_num_ref_frames
    w.flag(false); // gaps_in_frame_num_value_allowed_flag
    w.ue(mb_w - 1); // pic_width_in_mbs_minus1
    w.ue(mb_h - 1); // pic_height_in_map_units_minus1
    w.flag(true); // frame_mbs_only_flag
    w.flag(true); // direct_8x8_inference_flag
    w.flag(false); // frame_cropping_flag
    w.flag(true); // vui_parameters_present_flag
                  // vui_parameters(), §E.1.1
    w.flag(false); // aspect_ratio_info_present_flag
    w.flag(false); // overscan_info_present_flag
    w.flag(false); // video_signal_type_present_flag
    w.flag(false); // chroma_loc_info_present_flag
    w.flag(true); // timing_info_present_flag
    w.bits(1, 32); // num_units_in_tick
    w.bits(u64::from(2 * fps), 32); // time_scale: a frame is two ticks (§E.2.1)
    w.flag(true); // fixed_frame_rate_flag
    w.flag(false); // nal_hrd_parameters_present_flag
    w.flag(false); // vcl_hrd_parameters_present_flag
    w.flag(false); // pic_struct_present_flag
    w.flag(true); // bitstream_restriction_flag: lets decoders output each frame at once
    w.flag(true); // motion_vectors_over_pic_boundaries_flag
    w.ue(0); // max_bytes_per_pic_denom: no limit
    w.ue(0); // max_bits_per_mb_denom: no limit (I_PCM MBs are 3072+ bits)
    w.ue(16); // log2_max_mv_length_horizontal
    w.ue(16); // log2_max_mv_length_vertical
    w.ue(0); // max_num_reorder_frames
    w.ue(1); // max_dec_frame_buffering
    w.rbsp_trailing();
}

/// Writes the PPS NAL unit (header included, no start code), H.264 §7.3.2.2.
fn write_pps(w: &mut BitWriter<'_>) {
    w.push_byte(0x68); // nal_ref_idc 3, nal_unit_type 8 (PPS)
    w.ue(0); // pic_parameter_set_id
    w.ue(0); // seq_parameter_set_id
    w.flag(false); // entropy_coding_mode_flag: CAVLC
    w.flag(false); // bottom_field_pic_order_in_frame_present_flag
    w.ue(0); // num_slice_groups_minus1
    w.ue(0); // num_ref_idx_l0_default_active_minus1
    w.ue(0); // num_ref_idx_l1_default_active_minus1
    w.flag(false); // weighted_pred_flag
    w.bits(0, 2); // weighted_bipred_idc
    w.se(0); // pic_init_qp_minus26
    w.se(0); // pic_init_qs_minus26
    w.se(0); // chroma_qp_index_offset
    w.flag(true); // deblocking_filter_control_present_flag: slices turn deblocking off
    w.flag(false); // constrained_intra_pred_flag
    w.flag(false); // redundant_pic_cnt_present_flag
    w.rbsp_trailing();
}

/// H.264 test picture generator: one Annex B access unit per call, GOP of `gop_frames`
/// (an IDR with SPS/PPS, then P frames). See the module docs for how the picture is coded.
pub struct TestPattern {
    layout: Layout,
    fps: u32,
    gop_frames: u32,
    level_idc: u8,
    sps: [u8; PARAM_SET_CAP],
    sps_len: usize,
    pps: [u8; PARAM_SET_CAP],
    pps_len: usize,
    /// Scene of the next frame to write.
    next: Scene,
    /// Scene of the last frame written: what the decoder holds as its reference.
    shown: Scene,
    /// Position of the next frame in its GOP (0 = IDR).
    gop_pos: u32,
    /// idr_pic_id of the next IDR; consecutive IDRs must differ (§7.4.3).
    idr_pic_id: u32,
    max_frame_len: usize,
}

impl TestPattern {
    /// A generator for `width` x `height` (multiples of 16, at least 32) at `fps` frames per
    /// second with an IDR every `gop_frames` frames. The level is the smallest of H.264 Table A-1
    /// (from 3.0 up) that fits the frame size and macroblock rate.
    pub fn new(width: u32, height: u32, fps: u32, gop_frames: u32) -> Result<Self, TestSrcError> {
        if !width.is_multiple_of(16) || !height.is_multiple_of(16) || width < 32 || height < 32 {
            return Err(TestSrcError::BadDimensions);
        }
        if fps == 0 || fps > 240 {
            return Err(TestSrcError::BadFrameRate);
        }
        if gop_frames == 0 {
            return Err(TestSrcError::BadGop);
        }
        let (mb_w, mb_h) = (width / 16, height / 16);
        let frame_mbs = u64::from(mb_w) * u64::from(mb_h);
        let level_idc = LEVELS
            .iter()
            .find(|&&(_, max_fs, max_mbps)| {
                let max_fs = u64::from(max_fs);
                // Table A-1 note: each dimension <= sqrt(8 * MaxFS) MBs.
                frame_mbs <= max_fs
                    && u64::from(mb_w).pow(2) <= 8 * max_fs
                    && u64::from(mb_h).pow(2) <= 8 * max_fs
                    && frame_mbs * u64::from(fps) <= u64::from(max_mbps)
            })
            .map(|&(idc, _, _)| idc)
            .ok_or(TestSrcError::NoLevel)?;

        let mut sps = [0u8; PARAM_SET_CAP];
        let mut w = BitWriter::new(&mut sps, true);
        write_sps(&mut w, mb_w, mb_h, level_idc, fps);
        let sps_len = w.finish()?;
        let mut pps = [0u8; PARAM_SET_CAP];
        let mut w = BitWriter::new(&mut pps, true);
        write_pps(&mut w);
        let pps_len = w.finish()?;

        let layout = Layout::new(mb_w, mb_h);
        let first = Scene {
            frame: 0,
            counter: 0,
            box_x_mbs: 0,
            forward: true,
            colour: 0,
        };
        let mut me = TestPattern {
            layout,
            fps,
            gop_frames,
            level_idc,
            sps,
            sps_len,
            pps,
            pps_len,
            next: first,
            shown: first,
            gop_pos: 0,
            idr_pic_id: 0,
            max_frame_len: 0,
        };
        me.max_frame_len = me.frame_len_bound();
        Ok(me)
    }

    fn frame_len_bound(&self) -> usize {
        let total_mbs = (self.layout.mb_w * self.layout.mb_h) as usize;
        let pcm = self.layout.max_pcm_mbs() as usize;
        // AUD (start code + 2 bytes), SPS and PPS with start codes: written verbatim.
        let verbatim = 6 + 4 + self.sps_len + 4 + self.pps_len + 5;
        // Slice header (< 16 bytes), flat I_16x16 MBs (<= 13 bits each), and per I_PCM MB a skip
        // run (<= 33 bits), its mb_type (<= 9 bits) and alignment (<= 7 bits), plus a final run.
        let escaped = 16 + total_mbs * 2 + (pcm + 1) * 8 + 2;
        // Emulation prevention: one 0x03 per two zero bytes; PCM samples (>= 16) are never zero.
        verbatim + escaped + escaped / 2 + 1 + pcm * PCM_SAMPLE_BYTES
    }

    /// Upper bound of the bytes any [`TestPattern::next_frame`] call writes: size the buffer once.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The SPS NAL unit (header included, no start code), as repeated in front of every IDR.
    pub fn sps(&self) -> &[u8] {
        &self.sps[..self.sps_len]
    }

    /// The PPS NAL unit (header included, no start code).
    pub fn pps(&self) -> &[u8] {
        &self.pps[..self.pps_len]
    }

    /// Picture width in pixels.
    pub fn width(&self) -> u32 {
        self.layout.mb_w * 16
    }

    /// Picture height in pixels.
    pub fn height(&self) -> u32 {
        self.layout.mb_h * 16
    }

    /// Frames per second, as signalled in the SPS VUI (`time_scale / (2 * num_units_in_tick)`).
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// `level_idc` written in the SPS (e.g. 31 for level 3.1).
    pub fn level_idc(&self) -> u8 {
        self.level_idc
    }

    /// The counter row of the next frame shows the low bits of `stamp` (MSB left, white = 1)
    /// instead of the frame number: with the capture time in Unix ms, a viewer that reads the
    /// row back from the decoded picture measures glass-to-glass latency with no decoder of
    /// ours. The row has `min(width / 16, 16)` bits.
    pub fn set_stamp(&mut self, stamp: u64) {
        self.next.counter = stamp;
    }

    /// Bits in the counter row.
    pub fn counter_bits(&self) -> u32 {
        self.layout.counter_bits
    }

    /// Writes the next access unit in Annex B form into `out`: an access unit delimiter, then
    /// SPS + PPS + IDR slice on keyframes, else a P slice (H.264 §7.4.1.2.3 order). Returns the
    /// bytes written and whether the frame is a keyframe. On `BufferTooSmall` nothing advances,
    /// so the same frame can be asked for again with a larger buffer.
    pub fn next_frame(&mut self, out: &mut [u8]) -> Result<(usize, bool), TestSrcError> {
        let scene = self.next;
        let keyframe = self.gop_pos == 0;
        let mut w = BitWriter::new(out, true);

        // access_unit_delimiter_rbsp, §7.3.2.4: primary_pic_type 0 = I only, 1 = I and P.
        w.start_nal(0, 9);
        w.bits(if keyframe { 0 } else { 1 }, 3);
        w.rbsp_trailing();

        if keyframe {
            w.raw(&[0, 0, 0, 1]);
            w.raw(self.sps());
            w.raw(&[0, 0, 0, 1]);
            w.raw(self.pps());
            w.start_nal(3, 5); // IDR slice
            self.write_slice_header(&mut w, true);
            self.write_idr_data(&mut w, &scene);
        } else {
            w.start_nal(2, 1); // non-IDR slice, used for reference
            self.write_slice_header(&mut w, false);
            self.write_p_data(&mut w, &scene);
        }
        let len = w.finish()?;

        self.shown = scene;
        self.next = self.layout.advance(scene);
        if keyframe {
            self.idr_pic_id ^= 1;
        }
        self.gop_pos = (self.gop_pos + 1) % self.gop_frames;
        Ok((len, keyframe))
    }

    /// slice_header(), §7.3.3, for the only slice of the picture.
    fn write_slice_header(&self, w: &mut BitWriter<'_>, idr: bool) {
        w.ue(0); // first_mb_in_slice
        w.ue(if idr { 7 } else { 5 }); // slice_type: I or P, all slices of the picture alike
        w.ue(0); // pic_parameter_set_id
        let frame_num = self.gop_pos % (1 << LOG2_MAX_FRAME_NUM);
        w.bits(u64::from(frame_num), LOG2_MAX_FRAME_NUM); // frame_num
        if idr {
            w.ue(self.idr_pic_id);
        } else {
            w.flag(false); // num_ref_idx_active_override_flag
            w.flag(false); // ref_pic_list_modification_flag_l0
        }
        // dec_ref_pic_marking(), §7.3.3.3
        if idr {
            w.flag(false); // no_output_of_prior_pics_flag
            w.flag(false); // long_term_reference_flag
        } else {
            w.flag(false); // adaptive_ref_pic_marking_mode_flag: sliding window
        }
        w.se(0); // slice_qp_delta
        w.ue(1); // disable_deblocking_filter_idc: off, so PCM/skip samples stay exact
    }

    /// slice_data() of an IDR, §7.3.4: I_PCM for content and guards, I_16x16 DC elsewhere.
    fn write_idr_data(&self, w: &mut BitWriter<'_>, scene: &Scene) {
        let l = &self.layout;
        for y in 0..l.mb_h {
            for x in 0..l.mb_w {
                if l.idr_is_pcm(scene, x, y) {
                    w.ue(25); // mb_type I_PCM (Table 7-11)
                    w.align_zero(); // pcm_alignment_zero_bit
                    l.write_pcm_samples(w, l.content(scene, x, y));
                    continue;
                }
                w.ue(3); // mb_type I_16x16_2_0_0: DC prediction, no coded luma/chroma AC
                w.ue(0); // intra_chroma_pred_mode: DC
                w.se(0); // mb_qp_delta
                         // Intra16x16DCLevel: coeff_token with TotalCoeff = 0, TrailingOnes = 0. Its VLC
                         // depends on nC (§9.2.1): neighbours' total_coeff is 16 for I_PCM, 0 here.
                let n_of = |px: u32, py: u32| if l.idr_is_pcm(scene, px, py) { 16 } else { 0 };
                let n_a = (x > 0).then(|| n_of(x - 1, y));
                let n_b = (y > 0).then(|| n_of(x, y - 1));
                let n_c = match (n_a, n_b) {
                    (Some(a), Some(b)) => (a + b + 1) >> 1,
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => 0,
                };
                match n_c {
                    0..=1 => w.bits(0b1, 1),
                    2..=3 => w.bits(0b11, 2),
                    4..=7 => w.bits(0b1111, 4),
                    _ => w.bits(0b00_0011, 6),
                }
            }
        }
        w.rbsp_trailing();
    }

    /// slice_data() of a P picture, §7.3.4: skip runs over unchanged MBs, I_PCM for changed ones.
    fn write_p_data(&self, w: &mut BitWriter<'_>, scene: &Scene) {
        let l = &self.layout;
        let mut skip_run = 0u32;
        for y in 0..l.mb_h {
            for x in 0..l.mb_w {
                let now = l.content(scene, x, y);
                if now == l.content(&self.shown, x, y) {
                    skip_run += 1;
                    continue;
                }
                w.ue(skip_run); // mb_skip_run
                skip_run = 0;
                w.ue(30); // mb_type I_PCM in a P slice: 5 + 25 (Table 7-13)
                w.align_zero();
                l.write_pcm_samples(w, now);
            }
        }
        if skip_run > 0 {
            w.ue(skip_run);
        }
        w.rbsp_trailing();
    }
}

// ---------------------------------------------------------------------------------------------
// Audio
// ---------------------------------------------------------------------------------------------

/// MPEG-4 sampling frequency table, ISO 14496-3 §1.6.3.4; the position is the index.
const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Leading entries of swb_offset_long_window (ISO 14496-3 tables 4.129-4.138), up to the first
/// offset past bin 300; the beep bin (about 1 kHz) is always below that.
const SWB_LONG_96: &[u16] = &[
    0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 64, 72, 80, 88, 96, 108, 120, 132,
    144, 156, 172, 188, 212, 240, 276, 320,
];
const SWB_LONG_64: &[u16] = &[
    0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 64, 72, 80, 88, 100, 112, 124, 140,
    156, 172, 192, 216, 240, 268, 304,
];
/// Shared by 48, 44.1 and 32 kHz in this range.
const SWB_LONG_48: &[u16] = &[
    0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 72, 80, 88, 96, 108, 120, 132, 144, 160,
    176, 196, 216, 240, 264, 292, 320,
];
const SWB_LONG_24: &[u16] = &[
    0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 52, 60, 68, 76, 84, 92, 100, 108, 116, 124, 136,
    148, 160, 172, 188, 204, 220, 240, 260, 284, 308,
];
const SWB_LONG_16: &[u16] = &[
    0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 100, 112, 124, 136, 148, 160, 172, 184, 196, 212,
    228, 244, 260, 280, 300, 320,
];
const SWB_LONG_8: &[u16] = &[
    0, 12, 24, 36, 48, 60, 72, 84, 96, 108, 120, 132, 144, 156, 172, 188, 204, 220, 236, 252, 268,
    288, 308,
];

fn swb_long(sample_rate_index: usize) -> &'static [u16] {
    match sample_rate_index {
        0 | 1 => SWB_LONG_96,
        2 => SWB_LONG_64,
        3..=5 => SWB_LONG_48,
        6 | 7 => SWB_LONG_24,
        8..=10 => SWB_LONG_16,
        _ => SWB_LONG_8,
    }
}

/// Spectrum codebook 1 (ISO 14496-3 table 4.A.2, signed quads, index 27w+9x+3y+z+40) codewords
/// as (code, length) for a quad with a single +1 at position 0..3: indices 67, 49, 43, 41.
const CB1_SINGLE_ONE: [(u64, u32); 4] = [(0x10, 5), (0x13, 5), (0x16, 5), (0x14, 5)];
/// Codebook 1 codeword of the all-zero quad (index 40).
const CB1_ZERO_QUAD: (u64, u32) = (0x0, 1);
/// Scalefactor codebook (table 4.A.1) codeword of difference 0 (index 60).
const SF_DIFF_ZERO: (u64, u32) = (0x0, 1);
/// Beep level: the scalefactor of the tone's band (gain 2^((sf - 100) / 4), +6 dB per 4).
/// Measured with ffmpeg's decoder: 188 gives a sine of peak 4096/32768, i.e. -18 dBFS.
const BEEP_GLOBAL_GAIN: u8 = 188;
/// Beep frequency target in Hz.
const BEEP_HZ: u32 = 1000;
/// Bytes of the longest ADTS frame TestTone writes (stereo beep is about 30).
const TONE_MAX_FRAME_LEN: usize = 64;
/// ADTS header without CRC, ISO 14496-3 §1.A.2.2.
const ADTS_HEADER_LEN: usize = 7;

/// AAC-LC test tone: one ADTS frame (1024 samples per channel) per call; silence with a beep of
/// about 125 ms near 1 kHz at the start of every second.
pub struct TestTone {
    sample_rate: u32,
    sample_rate_index: u8,
    channels: u8,
    /// Index of the next frame.
    frame: u64,
    /// Scalefactor band holding the beep bin, its first bin and width.
    tone_sfb: u8,
    tone_sfb_start: u16,
    tone_sfb_width: u16,
    tone_bin: u16,
}

impl TestTone {
    /// Samples per channel in each frame (AAC-LC, ONLY_LONG).
    pub const SAMPLES_PER_FRAME: u32 = 1024;

    /// A generator for `sample_rate` (one of the 13 MPEG-4 rates) and 1 or 2 channels.
    pub fn new(sample_rate: u32, channels: u8) -> Result<Self, TestSrcError> {
        let idx = AAC_SAMPLE_RATES
            .iter()
            .position(|&r| r == sample_rate)
            .ok_or(TestSrcError::BadSampleRate)?;
        if !(1..=2).contains(&channels) {
            return Err(TestSrcError::BadChannels);
        }
        // A constant coefficient in bin k of every frame overlap-adds (sine window, TDAC) into a
        // steady sine at k * fs / 2048 Hz when k is even, (k + 1) * fs / 2048 when odd: use the
        // even bin nearest BEEP_HZ. Fits: clamped below 300.
        let half_bin =
            (u64::from(BEEP_HZ) * 1024 + u64::from(sample_rate) / 2) / u64::from(sample_rate);
        let bin = (2 * half_bin).clamp(4, 298) as u16;
        let table = swb_long(idx);
        // The table ends past bin 300, so some band holds `bin`.
        let sfb = table
            .windows(2)
            .position(|b| b[0] <= bin && bin < b[1])
            .ok_or(TestSrcError::BadSampleRate)?;
        Ok(TestTone {
            sample_rate,
            // Fits: idx < 13.
            sample_rate_index: idx as u8,
            channels,
            frame: 0,
            // Fits: sfb < 33.
            tone_sfb: sfb as u8,
            // In bounds: `windows(2)` found sfb, so sfb + 1 < table.len().
            tone_sfb_start: table[sfb],
            tone_sfb_width: table[sfb + 1] - table[sfb],
            tone_bin: bin,
        })
    }

    /// Upper bound of the bytes any [`TestTone::next_frame`] call writes.
    pub fn max_frame_len(&self) -> usize {
        TONE_MAX_FRAME_LEN
    }

    /// Decoder configuration of the stream, as an ADTS parser would report it.
    pub fn params(&self) -> AudioParams {
        AudioParams {
            object_type: 2,
            sample_rate_index: self.sample_rate_index,
            sample_rate: self.sample_rate,
            channels: self.channels,
        }
    }

    /// Writes the next ADTS frame (ISO 14496-3 §1.A.2: 7-byte header, no CRC, one
    /// raw_data_block) into `out` and returns its length. On `BufferTooSmall` nothing advances.
    pub fn next_frame(&mut self, out: &mut [u8]) -> Result<usize, TestSrcError> {
        let start_sample = self.frame * u64::from(Self::SAMPLES_PER_FRAME);
        let rate = u64::from(self.sample_rate);
        let beep = start_sample % rate < rate / 8;

        let body = out
            .get_mut(ADTS_HEADER_LEN..)
            .ok_or(TestSrcError::BufferTooSmall)?;
        let mut w = BitWriter::new(body, false);
        // raw_data_block(), §4.4.2.1
        if self.channels == 1 {
            w.bits(0, 3); // id_syn_ele: ID_SCE
            w.bits(0, 4); // element_instance_tag
            self.write_ics(&mut w, beep);
        } else {
            w.bits(1, 3); // id_syn_ele: ID_CPE
            w.bits(0, 4); // element_instance_tag
            w.flag(false); // common_window: each channel has its own ics_info
            self.write_ics(&mut w, beep);
            self.write_ics(&mut w, beep);
        }
        w.bits(7, 3); // id_syn_ele: ID_END
        w.align_zero(); // byte_alignment()
        let body_len = w.finish()?;
        let frame_len = ADTS_HEADER_LEN + body_len;

        // Checked above: out has at least ADTS_HEADER_LEN bytes.
        let mut h = BitWriter::new(&mut out[..ADTS_HEADER_LEN], false);
        h.bits(0xFFF, 12); // syncword
        h.flag(false); // ID: MPEG-4
        h.bits(0, 2); // layer
        h.flag(true); // protection_absent: no CRC
        h.bits(1, 2); // profile_ObjectType: AAC LC (object type 2) - 1
        h.bits(u64::from(self.sample_rate_index), 4);
        h.flag(false); // private_bit
        h.bits(u64::from(self.channels), 3); // channel_configuration 1 or 2
        h.flag(false); // original_copy
        h.flag(false); // home
        h.flag(false); // copyright_identification_bit
        h.flag(false); // copyright_identification_start
        h.bits(frame_len as u64, 13); // aac_frame_length, header included
        h.bits(0x7FF, 11); // adts_buffer_fullness: VBR
        h.bits(0, 2); // number_of_raw_data_blocks_in_frame - 1
        h.finish()?;

        self.frame = self.frame.wrapping_add(1);
        Ok(frame_len)
    }

    /// individual_channel_stream(common_window = 0), §4.4.2.7: silence (max_sfb = 0) or one
    /// spectral line of value +1 in the tone band, all lower bands ZERO_HCB.
    fn write_ics(&self, w: &mut BitWriter<'_>, beep: bool) {
        w.bits(u64::from(BEEP_GLOBAL_GAIN), 8); // global_gain: the tone band's scalefactor
                                                // ics_info(), §4.4.2.1
        w.flag(false); // ics_reserved_bit
        w.bits(0, 2); // window_sequence: ONLY_LONG_SEQUENCE
        w.flag(false); // window_shape: sine
        let max_sfb = if beep { self.tone_sfb + 1 } else { 0 };
        w.bits(u64::from(max_sfb), 6);
        w.flag(false); // predictor_data_present
        if beep {
            // section_data(), §4.4.2.7: sect_len in 5-bit pieces for long windows, 31 = escape.
            let mut sect = |cb: u64, mut len: u32| {
                w.bits(cb, 4);
                while len >= 31 {
                    w.bits(31, 5);
                    len -= 31;
                }
                w.bits(u64::from(len), 5);
            };
            if self.tone_sfb > 0 {
                sect(0, u32::from(self.tone_sfb)); // ZERO_HCB below the tone
            }
            sect(1, 1); // codebook 1 for the tone band
                        // scale_factor_data(): the first scalefactor is coded against global_gain.
            w.bits(SF_DIFF_ZERO.0, SF_DIFF_ZERO.1);
        }
        w.flag(false); // pulse_data_present
        w.flag(false); // tns_data_present
        w.flag(false); // gain_control_data_present
        if beep {
            // spectral_data(): quads of the tone band.
            for quad in 0..self.tone_sfb_width / 4 {
                let first = self.tone_sfb_start + 4 * quad;
                let (code, len) = if (first..first + 4).contains(&self.tone_bin) {
                    // In bounds: tone_bin - first < 4 by the range check.
                    CB1_SINGLE_ONE[usize::from(self.tone_bin - first)]
                } else {
                    CB1_ZERO_QUAD
                };
                w.bits(code, len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from a string of '0'/'1' (spaces ignored); the string must fill whole bytes.
    fn bits(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert_eq!(digits.len() % 8, 0, "bit string must fill whole bytes");
        digits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |acc, &d| (acc << 1) | (d - b'0')))
            .collect()
    }

    fn write(escape: bool, f: impl FnOnce(&mut BitWriter<'_>)) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let mut w = BitWriter::new(&mut buf, escape);
        f(&mut w);
        let n = w.finish().expect("fits");
        buf[..n].to_vec()
    }

    #[test]
    fn ue_matches_h264_table_9_2() {
        // codeNum 0..8: 1, 010, 011, 00100, 00101, 00110, 00111, 0001000, 0001001 (41 bits)
        // followed by seven 1 bits of padding.
        let got = write(false, |w| {
            for v in 0..=8 {
                w.ue(v);
            }
            w.bits(0b111_1111, 7);
        });
        assert_eq!(
            got,
            bits("1 010 011 00100 00101 00110 00111 0001000 0001001 1111111")
        );
    }

    #[test]
    fn ue_handles_the_largest_code_num() {
        // 2^32 - 2: 31 zeros, then 2^32 - 1 in 32 bits (all ones); 63 bits + 1 bit of padding.
        let got = write(false, |w| {
            w.ue(u32::MAX - 1);
            w.bits(1, 1);
        });
        assert_eq!(got, [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn se_matches_h264_table_9_3() {
        // se 0, 1, -1, 2, -2, 3 -> codeNum 0, 1, 2, 3, 4, 5 (24 bits).
        let got = write(false, |w| {
            for v in [0, 1, -1, 2, -2, 3] {
                w.se(v);
            }
            w.rbsp_trailing();
        });
        assert_eq!(got, bits("1 010 011 00100 00101 00110 1 0"));
    }

    #[test]
    fn se_handles_i32_extremes() {
        // i32::MIN -> codeNum 2^32: 32 zeros, then 2^32 + 1 in 33 bits; 65 bits + 7 padding.
        let got = write(false, |w| {
            w.se(i32::MIN);
            w.bits(0, 7);
        });
        assert_eq!(got, [0, 0, 0, 0, 0x80, 0, 0, 0, 0x80]);
        // i32::MAX -> codeNum 2 * (2^31 - 1) - 1 = 2^32 - 3: 31 zeros, then 2^32 - 2 in 32 bits
        // (...1110), then one padding 1 bit.
        let got = write(false, |w| {
            w.se(i32::MAX);
            w.bits(1, 1);
        });
        assert_eq!(got, [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfd]);
    }

    #[test]
    fn emulation_prevention_escapes_00_00_0x_for_x_up_to_3() {
        let input = [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0];
        let got = write(true, |w| {
            input.iter().for_each(|&b| w.bits(u64::from(b), 8))
        });
        // 00 00 |03| 00 00 |03| 00 01 (a lone zero then 01 needs nothing), 00 00 |03| 02,
        // 00 00 |03| 03, 00 00 04 untouched; a trailing 00 00 is not escaped by this writer.
        let want = [
            0, 0, 3, 0, 0, 3, 0, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0, 0, 4, 0, 0,
        ];
        assert_eq!(got, want);
        // Without escaping the bytes pass through.
        let plain = write(false, |w| {
            input.iter().for_each(|&b| w.bits(u64::from(b), 8))
        });
        assert_eq!(plain, input);
    }

    #[test]
    fn emulation_prevention_works_across_unaligned_fields() {
        // 20 zero bits, then 100 0010 0001, then a 0: bytes 00 00 08 42 -> no escape (08 > 3)
        // even though the 1 bit arrives mid-byte; 23 zero bits then a 1 -> 00 00 01 -> escaped.
        assert_eq!(
            write(true, |w| {
                w.bits(0, 20);
                w.bits(0b100_0010_0001, 11);
                w.bits(0, 1);
            }),
            [0, 0, 8, 0x42]
        );
        assert_eq!(write(true, |w| w.bits(1, 24)), [0, 0, 3, 1]);
    }

    #[test]
    fn writer_reports_overflow_instead_of_panicking() {
        let mut buf = [0u8; 2];
        let mut w = BitWriter::new(&mut buf, false);
        w.bits(0xABCDEF, 24);
        assert_eq!(w.finish(), Err(TestSrcError::BufferTooSmall));
    }

    /// SPS of 1280x720@30, level 3.1 (field by field; ffmpeg's trace_headers bsf parses the
    /// same values):
    /// ```text
    /// 67        nal_ref_idc 3, nal_unit_type 7
    /// 42 c0 1f  profile_idc 66, constraint_set0+1, level_idc 31
    /// da        sps_id ue(0)=1, log2_max_frame_num_minus4 ue(0)=1, poc_type ue(2)=011,
    ///           max_num_ref_frames ue(1)=010
    /// 01 40 16  gaps 0, width_in_mbs_minus1 ue(79)=0000001010000,
    ///           height_in_map_units_minus1 ue(44)=00000101101 (first 10 bits)
    /// e8        ..1, frame_mbs_only 1, direct_8x8 1, cropping 0, vui 1, aspect 0, overscan 0,
    ///           video_signal 0
    /// 40        chroma_loc 0, timing_info 1, num_units_in_tick (32 bits = 1) starts: 000000
    /// 00 00 03 00  ...zeros, with an emulation prevention byte after two zero bytes
    /// 40        ..01 (tick = 1), time_scale (32 bits = 60) starts: 000000
    /// 00 00 0f  ..zeros, then 1111
    /// 23        ..00 (60 = 111100), fixed_frame_rate 1, nal_hrd 0, vcl_hrd 0, pic_struct 0,
    ///           bitstream_restriction 1, mv_over_pic_boundaries 1
    /// c2 21 1a  max_bytes_per_pic_denom ue(0), max_bits_per_mb_denom ue(0),
    ///           log2_max_mv_length_h ue(16)=000010001, _v ue(16), max_num_reorder ue(0),
    ///           max_dec_frame_buffering ue(1)=010
    /// 80        rbsp_stop_one_bit + alignment
    /// ```
    #[test]
    fn sps_720p30_bytes() {
        let p = TestPattern::new(1280, 720, 30, 30).unwrap();
        assert_eq!(p.level_idc(), 31);
        assert_eq!(
            p.sps(),
            [
                0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0x40, 0x00, 0x00, 0x03, 0x00,
                0x40, 0x00, 0x00, 0x0f, 0x23, 0xc2, 0x21, 0x1a, 0x80
            ]
        );
    }

    /// PPS: 68 (nal_ref_idc 3, type 8), then pps_id ue(0) 1, sps_id ue(0) 1, CAVLC 0,
    /// bottom_field_pic_order 0, num_slice_groups_minus1 ue(0) 1, num_ref_idx_l0/l1 ue(0) 1 1,
    /// weighted_pred 0, weighted_bipred 00, pic_init_qp/qs se(0) 1 1, chroma_qp_offset se(0) 1,
    /// deblocking_filter_control_present 1, constrained_intra 0, redundant_pic_cnt 0, stop bit:
    /// 1100 1110 | 0011 1100 | 1000 0000 = ce 3c 80.
    #[test]
    fn pps_bytes() {
        let p = TestPattern::new(1280, 720, 30, 30).unwrap();
        assert_eq!(p.pps(), [0x68, 0xce, 0x3c, 0x80]);
    }

    /// 32x32@30: level 3.0 (0x1e); width/height_minus1 ue(1) = 010; fps 30 -> time_scale 60.
    #[test]
    fn sps_32x32_bytes() {
        let p = TestPattern::new(32, 32, 30, 2).unwrap();
        let mut want = vec![0x67, 0x42, 0xc0, 0x1e];
        // sps_id 1, log2_max_frame_num 1, poc_type 011, max_ref 010 | gaps 0, width 010,
        // height 010, frame_mbs_only 1 | direct_8x8 1, crop 0, vui 1, aspect 0, overscan 0,
        // signal 0, chroma_loc 0, timing 1
        want.extend(bits("11011010 00100101 10100001"));
        // num_units_in_tick = 1, time_scale = 60, both escaped after their two leading zeros.
        want.extend([0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c]);
        // fixed 1, hrd 0 0, pic_struct 0, restriction 1, mv_over 1, denoms 1 1 |
        // mv_h 000010001 | mv_v 000010001 | reorder 1 | dpb 010 | stop 1 + 0
        want.extend(bits("10001111 00001000 1 0000100 01 1 010 1 0"));
        assert_eq!(p.sps(), want.as_slice());
    }

    fn pcm(y: &[u8; 16], cb: u8, cr: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for &row in y {
            v.extend([row; 16]);
        }
        v.extend([cb; 64]);
        v.extend([cr; 64]);
        v
    }

    /// A 32x32 box MB (box is 1 MB tall): red, luma 105 at the top falling by 3 per row.
    fn red_box_mb() -> Vec<u8> {
        let mut y = [0u8; 16];
        for (r, v) in y.iter_mut().enumerate() {
            *v = 105 - 3 * r as u8;
        }
        pcm(&y, 90, 240)
    }

    /// 32x32 = 2x2 MBs: box at MB (0,0), grey guard at (1,0) (right of the box), counter bits
    /// (MSB, LSB) at (0,1), (1,1). Frame 0 is all I_PCM; frame 1 moves the box right and sets
    /// the counter LSB, so MB (0,1) is skipped.
    #[test]
    fn tiny_idr_and_p_frame_bytes() {
        let mut p = TestPattern::new(32, 32, 30, 2).unwrap();
        let mut buf = vec![0u8; p.max_frame_len()];

        let (n, key) = p.next_frame(&mut buf).unwrap();
        assert!(key);
        let mut want = vec![0, 0, 0, 1, 0x09, 0x10]; // AUD, primary_pic_type 0 (I)
        want.extend([0, 0, 0, 1]);
        want.extend(p.sps());
        want.extend([0, 0, 0, 1]);
        want.extend(p.pps());
        want.extend([0, 0, 0, 1, 0x65]); // IDR, nal_ref_idc 3
                                         // first_mb 1, slice_type ue(7) 0001000, pps_id 1, frame_num 0000, idr_pic_id ue(0) 1,
                                         // no_output_of_prior_pics 0, long_term_ref 0, slice_qp_delta 1,
                                         // disable_deblocking_filter_idc ue(1) 010, MB 0: mb_type ue(25) 000011010 + align 000
        want.extend(bits("1 0001000 1 0000 1 0 0 1 010 000011010 000"));
        want.extend(red_box_mb());
        let grey = pcm(&[128; 16], 128, 128);
        let black = pcm(&[16; 16], 128, 128);
        let white = pcm(&[235; 16], 128, 128);
        for mb in [&grey, &black, &black] {
            want.extend(bits("000011010 0000000")); // I_PCM + pcm_alignment_zero_bits
            want.extend(mb);
        }
        want.push(0x80); // rbsp_trailing_bits
        assert_eq!(&buf[..n], want.as_slice());

        let (n, key) = p.next_frame(&mut buf).unwrap();
        assert!(!key);
        let mut want = vec![0, 0, 0, 1, 0x09, 0x30]; // AUD, primary_pic_type 1 (I, P)
        want.extend([0, 0, 0, 1, 0x41]); // non-IDR slice, nal_ref_idc 2
                                         // first_mb 1, slice_type ue(5) 00110, pps_id 1, frame_num 0001,
                                         // num_ref_idx_active_override 0, ref_pic_list_modification_l0 0,
                                         // adaptive_ref_pic_marking 0, slice_qp_delta 1, disable_deblocking 010,
                                         // MB 0: mb_skip_run ue(0) 1, mb_type ue(30) 000011111, align 0000
        want.extend(bits("1 00110 1 0001 0 0 0 1 010 1 000011111 0000"));
        want.extend(&grey); // the box left MB (0,0)
        want.extend(bits("1 000011111 000000")); // MB 1: no skip, I_PCM
        want.extend(red_box_mb());
        want.extend(bits("010 000011111 0000")); // skip MB 2 (MSB still 0), MB 3 I_PCM
        want.extend(&white); // LSB set
        want.push(0x80);
        assert_eq!(&buf[..n], want.as_slice());

        // GOP of 2: frame 2 is an IDR again, with the other idr_pic_id (ue(1) = 010).
        let (n, key) = p.next_frame(&mut buf).unwrap();
        assert!(key);
        let slice = 6 + 4 + p.sps().len() + 4 + p.pps().len() + 5;
        assert_eq!(
            &buf[slice..slice + 3],
            bits("1 0001000 1 0000 010 0 0 1 010 00")
        );
        assert!(n <= p.max_frame_len());
    }

    /// Flat MBs: I_16x16_2_0_0 ue(3) = 00100, chroma DC ue(0) = 1, mb_qp_delta se(0) = 1, then
    /// coeff_token for TotalCoeff 0 by nC (0 -> "1", PCM neighbours -> 8 or 16 -> "000011").
    #[test]
    fn idr_flat_macroblocks_use_nc_dependent_coeff_token() {
        // 64x64: 4x4 MBs, box 1x1 at (0,1), counter bits in row 3. Row 0 is all flat grey.
        let mut p = TestPattern::new(64, 64, 30, 30).unwrap();
        assert_eq!(p.layout.box_mbs, 1);
        assert_eq!(p.layout.box_y_mbs, 1);
        let mut buf = vec![0u8; p.max_frame_len()];
        let (n, _) = p.next_frame(&mut buf).unwrap();
        let slice = 6 + 4 + p.sps().len() + 4 + p.pps().len() + 5;
        // Header (20 bits, as in the 32x32 test), then row 0: MB (0,0) has no neighbours: nC 0;
        // MBs (1..3,0) have a flat left neighbour: nC 0. Then MB (0,1) is the box: I_PCM.
        let want = bits(
            "1 0001000 1 0000 1 0 0 1 010 00100 1 1 1 00100 1 1 1 00100 1 1 1 00100 1 1 1 \
             000011010 000",
        );
        assert_eq!(&buf[slice..slice + want.len()], want.as_slice());
        // Row 1 after the box: (1,1) is a grey guard (I_PCM); (2,1) has a PCM left neighbour
        // (16) and a flat top one (0): nC = (16 + 0 + 1) >> 1 = 8 -> 000011.
        let after_box = slice + want.len() + PCM_SAMPLE_BYTES;
        let want = bits("000011010 0000000");
        assert_eq!(&buf[after_box..after_box + 2], want.as_slice());
        let after_guard = after_box + 2 + PCM_SAMPLE_BYTES;
        // (2,1): 00100 1 1 000011, (3,1): left flat, top flat: 00100 1 1 1, then row 2: (0,2)
        // is below the box -> guard: 000011010 + align.
        let want = bits("00100 1 1 000011 00100 1 1 1 000011010 00");
        assert_eq!(&buf[after_guard..after_guard + want.len()], want.as_slice());
        assert!(n <= p.max_frame_len());
    }

    #[test]
    fn frames_stay_within_max_frame_len() {
        for (w, h, gop) in [(32, 32, 1), (64, 48, 7), (320, 240, 30), (1280, 720, 60)] {
            let mut p = TestPattern::new(w, h, 30, gop).unwrap();
            let mut buf = vec![0u8; p.max_frame_len()];
            for i in 0..300u32 {
                let (n, key) = p.next_frame(&mut buf).unwrap();
                assert_eq!(key, i.is_multiple_of(gop), "{w}x{h} frame {i}");
                assert!(n <= p.max_frame_len(), "{w}x{h} frame {i}: {n} bytes");
            }
        }
    }

    #[test]
    fn small_buffer_is_an_error_and_does_not_advance() {
        let mut p = TestPattern::new(320, 240, 30, 30).unwrap();
        let mut fresh = TestPattern::new(320, 240, 30, 30).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(p.next_frame(&mut small), Err(TestSrcError::BufferTooSmall));
        let mut a = vec![0u8; p.max_frame_len()];
        let mut b = vec![0u8; p.max_frame_len()];
        let (na, _) = p.next_frame(&mut a).unwrap();
        let (nb, _) = fresh.next_frame(&mut b).unwrap();
        assert_eq!(a[..na], b[..nb]);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            TestPattern::new(1270, 720, 30, 30).err(),
            Some(TestSrcError::BadDimensions)
        );
        assert_eq!(
            TestPattern::new(16, 720, 30, 30).err(),
            Some(TestSrcError::BadDimensions)
        );
        assert_eq!(
            TestPattern::new(1280, 720, 0, 30).err(),
            Some(TestSrcError::BadFrameRate)
        );
        assert_eq!(
            TestPattern::new(1280, 720, 30, 0).err(),
            Some(TestSrcError::BadGop)
        );
        assert_eq!(
            TestPattern::new(8192, 8192, 30, 30).err(),
            Some(TestSrcError::NoLevel)
        );
        assert_eq!(
            TestPattern::new(1920, 1088, 30, 30).unwrap().level_idc(),
            40
        );
        assert_eq!(
            TestTone::new(44_000, 2).err(),
            Some(TestSrcError::BadSampleRate)
        );
        assert_eq!(
            TestTone::new(48_000, 3).err(),
            Some(TestSrcError::BadChannels)
        );
        assert_eq!(
            TestTone::new(48_000, 0).err(),
            Some(TestSrcError::BadChannels)
        );
    }

    /// ADTS header for 48 kHz mono, 11 bytes: syncword FFF, ID 0, layer 00, protection_absent
    /// 1 | profile 01 (LC), sf_index 0011, private 0, channel_configuration 001, original 0,
    /// home 0, copyright bits 0 0, aac_frame_length 11 (13 bits), buffer_fullness 0x7FF,
    /// one raw_data_block (00).
    const ADTS_48K_MONO_11: [u8; 7] = [0xff, 0xf1, 0x4c, 0x40, 0x01, 0x7f, 0xfc];

    #[test]
    fn silent_mono_frame_bytes() {
        let mut t = TestTone::new(48_000, 1).unwrap();
        let mut buf = [0u8; 64];
        // Frame 0 starts a second: the beep. Skip to frame 6 (6 * 1024 >= 48000 / 8).
        for _ in 0..6 {
            t.next_frame(&mut buf).unwrap();
        }
        let n = t.next_frame(&mut buf).unwrap();
        let mut want = ADTS_48K_MONO_11.to_vec();
        // SCE 000, tag 0000, global_gain 188, ics_reserved 0, ONLY_LONG 00, sine 0, max_sfb 0,
        // predictor 0, pulse 0, tns 0, gain_control 0, END 111.
        want.extend(bits("000 0000 10111100 0 00 0 000000 0 0 0 0 111"));
        assert_eq!(&buf[..n], want.as_slice());
    }

    #[test]
    fn beep_mono_frame_bytes() {
        let mut t = TestTone::new(48_000, 1).unwrap();
        // Beep bin 42 = 2 * round(1000 * 1024 / 48000): 984.375 Hz, in band 10 (bins 40..48).
        assert_eq!(
            (t.tone_bin, t.tone_sfb, t.tone_sfb_start, t.tone_sfb_width),
            (42, 10, 40, 8)
        );
        let mut buf = [0u8; 64];
        let n = t.next_frame(&mut buf).unwrap();
        let raw = bits(
            "000 0000 10111100 0 00 0 001011 0 \
             0000 01010 0001 00001 0 000 10110 0 111 0000000",
        );
        // SCE, tag, global_gain 188, ics_info with max_sfb 11; sections: ZERO_HCB x 10 bands,
        // codebook 1 x 1 band; scalefactor diff 0 = "0"; no pulse/tns/gain; spectral: quad
        // 40..43 = (0,0,+1,0) = index 43 = 10110, quad 44..47 = zero = 0; END; align.
        // ADTS header as for the silent frame but aac_frame_length 15: 0000000001111.
        let mut want = vec![0xff, 0xf1, 0x4c, 0x40, 0x01, 0xff, 0xfc];
        assert_eq!(7 + raw.len(), 15);
        want.extend(raw);
        assert_eq!(&buf[..n], want.as_slice());
    }

    #[test]
    fn tone_frames_stay_within_max_frame_len() {
        for rate in AAC_SAMPLE_RATES {
            for ch in [1, 2] {
                let mut t = TestTone::new(rate, ch).unwrap();
                let mut buf = [0u8; TONE_MAX_FRAME_LEN];
                for _ in 0..100 {
                    let n = t.next_frame(&mut buf).unwrap();
                    assert!(n <= t.max_frame_len());
                }
                assert!(t.next_frame(&mut buf[..9]).is_err());
            }
        }
    }

    #[test]
    fn stamp_replaces_the_counter_row() {
        let mut plain = TestPattern::new(320, 240, 30, 30).unwrap();
        let mut stamped = TestPattern::new(320, 240, 30, 30).unwrap();
        assert_eq!(stamped.counter_bits(), 16);
        let mut a = vec![0u8; plain.max_frame_len()];
        let mut b = vec![0u8; stamped.max_frame_len()];
        for n in 0..40u64 {
            // The stamp equal to the frame number paints the same picture, byte for byte...
            stamped.set_stamp(n);
            let (la, ka) = plain.next_frame(&mut a).unwrap();
            let (lb, kb) = stamped.next_frame(&mut b).unwrap();
            assert_eq!((ka, &a[..la]), (kb, &b[..lb]), "frame {n}");
        }
        // ...and any other changes it, within the frame size bound, every frame.
        for n in 40..80u64 {
            stamped.set_stamp(0xa5a5 ^ (n * 7919));
            let (la, _) = plain.next_frame(&mut a).unwrap();
            let (lb, _) = stamped.next_frame(&mut b).unwrap();
            assert_ne!(&a[..la], &b[..lb], "frame {n}");
        }
    }
}
