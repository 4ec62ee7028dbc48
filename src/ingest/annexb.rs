//! `AnnexBAssembler`: H.264 / H.265 Annex B byte stream → whole access units in the ring's
//! format (4-byte length-prefixed NAL units).
//!
//! Owns: start-code scanning across arbitrary read boundaries, access-unit boundary detection,
//! the parameter-set cache, and putting the cached VPS/SPS/PPS in front of every keyframe that
//! lacks them (so every keyframe in the ring is a place a viewer can start). No I/O, no clock:
//! the caller stamps what comes out.
//!
//! An access unit is closed, and handed out at once, by the first of:
//! - its delimiter or the next AU's first NAL (AUD, parameter set, SEI, or a VCL NAL that starts a
//!   new picture — H.264 §7.4.1.2.3, H.265 §7.4.2.4.4);
//! - [`AnnexBAssembler::end_of_write`]: the caller saw the encoder finish a write. This is what
//!   keeps added latency near zero: we never wait for the next frame to learn this one ended.
//!
//! Limits (set at construction, never grown): a NAL larger than `max_au_bytes` or an AU larger
//! than that is dropped and counted; bytes before the first start code are counted as garbage.
//! Nothing is handed out before the first keyframe with known parameter sets.

use crate::media::Codec;

/// One complete access unit, borrowed from the assembler until the callback returns.
#[derive(Debug)]
pub struct AccessUnit<'a> {
    /// NAL units, each with a 4-byte big-endian length prefix; AUD and filler removed.
    pub data: &'a [u8],
    pub keyframe: bool,
    /// The parameter sets differ from the previous AU's (first AU included).
    pub params_changed: bool,
    /// The current VPS (H.265 only, else empty), SPS and PPS, without start codes.
    pub vps: &'a [u8],
    pub sps: &'a [u8],
    pub pps: &'a [u8],
}

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    pub access_units: u64,
    pub garbage_bytes: u64,
    pub nal_too_large: u64,
    pub au_too_large: u64,
    pub forbidden_bit: u64,
    /// AUs dropped while waiting for the first keyframe with parameter sets.
    pub waiting_for_keyframe: u64,
    /// A write ended mid-NAL and the rest came later: the continuation was dropped.
    pub split_writes: u64,
}

/// Largest parameter set kept; real SPS/PPS/VPS are well under 200 bytes.
const MAX_PARAM_BYTES: usize = 512;

#[derive(Clone)]
struct ParamSet {
    bytes: [u8; MAX_PARAM_BYTES],
    len: usize,
}

impl ParamSet {
    const EMPTY: ParamSet = ParamSet {
        bytes: [0; MAX_PARAM_BYTES],
        len: 0,
    };
    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
    /// Stores `nal`; returns whether it changed.
    fn set(&mut self, nal: &[u8]) -> bool {
        if nal.len() > MAX_PARAM_BYTES || self.get() == nal {
            return false;
        }
        self.bytes[..nal.len()].copy_from_slice(nal);
        self.len = nal.len();
        true
    }
}

/// NAL unit classes the assembler cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NalClass {
    Aud,
    Vps,
    Sps,
    Pps,
    /// SEI and other non-VCL NAL units that may only precede the first VCL NAL of an AU.
    StartsAu,
    /// A slice; `first` = first slice of a picture, `key` = IDR / IRAP.
    Vcl {
        first: bool,
        key: bool,
    },
    Filler,
    /// Everything else: kept in the current AU.
    Other,
}

fn classify(codec: Codec, nal: &[u8]) -> Option<NalClass> {
    let h0 = *nal.first()?;
    if h0 & 0x80 != 0 {
        return None; // forbidden_zero_bit
    }
    Some(match codec {
        Codec::H265 => {
            let t = (h0 >> 1) & 0x3f;
            match t {
                0..=31 => {
                    // first_slice_segment_in_pic_flag is the first bit after the 2-byte header.
                    let first = nal.get(2).is_some_and(|b| b & 0x80 != 0);
                    if nal.len() < 3 {
                        return None;
                    }
                    NalClass::Vcl {
                        first,
                        key: (16..=23).contains(&t),
                    }
                }
                32 => NalClass::Vps,
                33 => NalClass::Sps,
                34 => NalClass::Pps,
                35 => NalClass::Aud,
                38 => NalClass::Filler,
                39 | 41..=44 | 48..=55 => NalClass::StartsAu,
                _ => NalClass::Other,
            }
        }
        _ => {
            let t = h0 & 0x1f;
            match t {
                1 | 5 => {
                    // first_mb_in_slice is ue(v); value 0 is the single bit '1'.
                    let first = nal.get(1).is_some_and(|b| b & 0x80 != 0);
                    if nal.len() < 2 {
                        return None;
                    }
                    NalClass::Vcl { first, key: t == 5 }
                }
                7 => NalClass::Sps,
                8 => NalClass::Pps,
                9 => NalClass::Aud,
                12 => NalClass::Filler,
                6 | 14..=18 => NalClass::StartsAu,
                _ => NalClass::Other,
            }
        }
    })
}

pub struct AnnexBAssembler {
    codec: Codec,
    /// The NAL being scanned (bytes after its start code).
    nal: Box<[u8]>,
    nal_len: usize,
    nal_overflow: bool,
    /// Inside a NAL (a start code was seen since the last reset).
    in_nal: bool,
    /// Zero bytes seen but not yet appended (they may belong to the next start code).
    pending_zeros: usize,
    /// The access unit being built, in ring format.
    au: Box<[u8]>,
    au_len: usize,
    au_overflow: bool,
    au_has_vcl: bool,
    au_key: bool,
    au_has: [bool; 3], // VPS, SPS, PPS present in this AU
    params: [ParamSet; 3],
    params_changed: bool,
    seen_keyframe: bool,
    /// After `end_of_write` closed a NAL: the next byte should start a start code.
    expect_start_code: bool,
    stats: AssemblerStats,
}

impl AnnexBAssembler {
    /// `max_au_bytes` bounds both one NAL and one access unit; allocated here, once.
    pub fn new(codec: Codec, max_au_bytes: usize) -> Self {
        assert!(matches!(codec, Codec::H264 | Codec::H265));
        AnnexBAssembler {
            codec,
            nal: vec![0; max_au_bytes].into_boxed_slice(),
            nal_len: 0,
            nal_overflow: false,
            in_nal: false,
            pending_zeros: 0,
            au: vec![0; max_au_bytes].into_boxed_slice(),
            au_len: 0,
            au_overflow: false,
            au_has_vcl: false,
            au_key: false,
            au_has: [false; 3],
            params: [ParamSet::EMPTY, ParamSet::EMPTY, ParamSet::EMPTY],
            params_changed: false,
            seen_keyframe: false,
            expect_start_code: false,
            stats: AssemblerStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// The current VPS (H.265), SPS and PPS, without start codes; empty until seen.
    pub fn vps(&self) -> &[u8] {
        self.params[0].get()
    }
    pub fn sps(&self) -> &[u8] {
        self.params[1].get()
    }
    pub fn pps(&self) -> &[u8] {
        self.params[2].get()
    }

    /// Feeds bytes read from the source; complete AUs are passed to `emit`.
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(AccessUnit<'_>)) {
        let mut i = 0;
        if self.expect_start_code && !data.is_empty() {
            // A write that `end_of_write` took as complete went on: the NAL already handed out
            // was cut. Drop the continuation up to the next start code.
            self.expect_start_code = false;
            if !starts_with_start_code(data) {
                self.stats.split_writes += 1;
                self.in_nal = false;
            }
        }
        while i < data.len() {
            // Copy the run of non-zero bytes in one go.
            let run_end = data[i..]
                .iter()
                .position(|&b| b == 0)
                .map_or(data.len(), |p| i + p);
            if run_end > i {
                if self.pending_zeros >= 2 && data[i] == 1 {
                    // Start code: 00 00 01 (any extra zeros are trailing_zero_8bits).
                    self.pending_zeros = 0;
                    self.finish_nal(emit);
                    self.in_nal = true;
                    i += 1;
                    continue;
                }
                self.flush_zeros();
                self.append_nal(&data[i..run_end]);
                i = run_end;
            } else {
                self.pending_zeros += 1;
                i += 1;
            }
        }
    }

    /// The producer finished a write: the last NAL is complete, and if the AU holds a picture it
    /// is closed now rather than when the next frame arrives.
    pub fn end_of_write(&mut self, emit: &mut dyn FnMut(AccessUnit<'_>)) {
        if self.in_nal {
            self.pending_zeros = 0;
            self.finish_nal(emit);
            self.in_nal = false;
            self.expect_start_code = true;
        }
        if self.au_has_vcl {
            self.emit_au(emit);
        }
    }

    /// The source restarted: drop the partial NAL and AU. Parameter sets stay cached.
    pub fn reset_partial(&mut self) {
        self.nal_len = 0;
        self.nal_overflow = false;
        self.in_nal = false;
        self.pending_zeros = 0;
        self.au_len = 0;
        self.au_overflow = false;
        self.au_has_vcl = false;
        self.au_key = false;
        self.au_has = [false; 3];
        self.expect_start_code = false;
    }

    fn flush_zeros(&mut self) {
        const ZEROS: [u8; 16] = [0; 16];
        while self.pending_zeros > 0 {
            let n = self.pending_zeros.min(ZEROS.len());
            self.append_nal(&ZEROS[..n]);
            self.pending_zeros -= n;
        }
    }

    fn append_nal(&mut self, bytes: &[u8]) {
        if !self.in_nal {
            self.stats.garbage_bytes += bytes.len() as u64;
            return;
        }
        if self.nal_overflow {
            return;
        }
        // Keep what fits, so an oversized NAL can still be classified when it ends.
        let n = bytes.len().min(self.nal.len() - self.nal_len);
        self.nal[self.nal_len..self.nal_len + n].copy_from_slice(&bytes[..n]);
        self.nal_len += n;
        self.nal_overflow = n < bytes.len();
    }

    /// The NAL in `self.nal` is complete: route it.
    fn finish_nal(&mut self, emit: &mut dyn FnMut(AccessUnit<'_>)) {
        let len = std::mem::take(&mut self.nal_len);
        let overflow = std::mem::take(&mut self.nal_overflow);
        if !self.in_nal || len == 0 {
            return;
        }
        // An oversized NAL is still classified from the bytes kept, so it closes the previous
        // AU (which is intact) and poisons only its own.
        let Some(class) = classify(self.codec, &self.nal[..len]) else {
            self.stats.forbidden_bit += 1;
            return;
        };
        let starts_new_au = match class {
            NalClass::Aud | NalClass::Vps | NalClass::Sps | NalClass::Pps | NalClass::StartsAu => {
                true
            }
            NalClass::Vcl { first, .. } => first,
            NalClass::Filler | NalClass::Other => false,
        };
        if starts_new_au && self.au_has_vcl {
            self.emit_au(emit);
        }
        if overflow {
            self.stats.nal_too_large += 1;
            self.au_overflow = true; // this AU lost a NAL: it is dropped when it closes
            if let NalClass::Vcl { .. } = class {
                self.au_has_vcl = true;
            }
            return;
        }
        match class {
            NalClass::Aud | NalClass::Filler => return,
            NalClass::Vps | NalClass::Sps | NalClass::Pps => {
                let idx = match class {
                    NalClass::Vps => 0,
                    NalClass::Sps => 1,
                    _ => 2,
                };
                // Split borrow: copy via a temporary slice of `self.nal` is fine because
                // `params` and `nal` are distinct fields.
                let changed = self.params[idx].set(&self.nal[..len]);
                self.params_changed |= changed;
                self.au_has[idx] = true;
            }
            NalClass::Vcl { key, .. } => {
                self.au_has_vcl = true;
                self.au_key |= key;
            }
            NalClass::StartsAu | NalClass::Other => {}
        }
        self.append_au_nal(len);
    }

    fn append_au_nal(&mut self, len: usize) {
        if self.au_overflow {
            return;
        }
        if self.au_len + 4 + len > self.au.len() {
            self.au_overflow = true;
            return;
        }
        let at = self.au_len;
        self.au[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
        self.au[at + 4..at + 4 + len].copy_from_slice(&self.nal[..len]);
        self.au_len += 4 + len;
    }

    fn emit_au(&mut self, emit: &mut dyn FnMut(AccessUnit<'_>)) {
        let key = self.au_key;
        let overflow = self.au_overflow;
        let len = self.au_len;
        let has = self.au_has;
        self.au_len = 0;
        self.au_overflow = false;
        self.au_has_vcl = false;
        self.au_key = false;
        self.au_has = [false; 3];
        if overflow {
            self.stats.au_too_large += 1;
            return;
        }
        let needed: &[usize] = match self.codec {
            Codec::H265 => &[0, 1, 2],
            _ => &[1, 2],
        };
        let have_params = needed.iter().all(|&i| self.params[i].len > 0);
        if key && have_params {
            // Put the cached parameter sets the AU lacks in front of it.
            let missing: usize = needed
                .iter()
                .filter(|&&i| !has[i])
                .map(|&i| 4 + self.params[i].len)
                .sum();
            if missing > 0 {
                if len + missing > self.au.len() {
                    self.stats.au_too_large += 1;
                    return;
                }
                self.au.copy_within(0..len, missing);
                let mut at = 0;
                for &i in needed.iter().filter(|&&i| !has[i]) {
                    let p = self.params[i].get();
                    self.au[at..at + 4].copy_from_slice(&(p.len() as u32).to_be_bytes());
                    self.au[at + 4..at + 4 + p.len()].copy_from_slice(p);
                    at += 4 + p.len();
                }
            }
            self.seen_keyframe = true;
            self.stats.access_units += 1;
            let params_changed = std::mem::take(&mut self.params_changed);
            emit(AccessUnit {
                data: &self.au[..len + missing],
                keyframe: true,
                params_changed,
                vps: self.params[0].get(),
                sps: self.params[1].get(),
                pps: self.params[2].get(),
            });
            return;
        }
        if !self.seen_keyframe || (key && !have_params) {
            self.stats.waiting_for_keyframe += 1;
            return;
        }
        self.stats.access_units += 1;
        let params_changed = std::mem::take(&mut self.params_changed);
        emit(AccessUnit {
            data: &self.au[..len],
            keyframe: false,
            params_changed,
            vps: self.params[0].get(),
            sps: self.params[1].get(),
            pps: self.params[2].get(),
        });
    }
}

fn starts_with_start_code(d: &[u8]) -> bool {
    d.starts_with(&[0, 0, 1]) || d.starts_with(&[0, 0, 0, 1])
}

/// Iterates the NAL units of a ring-format frame (4-byte length prefixes). Stops at the first
/// malformed length.
pub fn nal_units(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = frame;
    std::iter::from_fn(move || {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        // Checked: `4 + len` overflows a 32-bit usize for a length near u32::MAX.
        let end = len.checked_add(4)?;
        let nal = rest.get(4..end)?;
        rest = &rest[end..];
        Some(nal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x00, 0x03, 0x00, 0x21];
    const P1: &[u8] = &[0x41, 0x9a, 0x02, 0x03];
    const P2: &[u8] = &[0x41, 0x9a, 0x04, 0x05, 0x06];

    fn annexb(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, n) in nals.iter().enumerate() {
            // Mix 4- and 3-byte start codes.
            if i % 2 == 0 {
                v.extend_from_slice(&[0, 0, 0, 1]);
            } else {
                v.extend_from_slice(&[0, 0, 1]);
            }
            v.extend_from_slice(n);
        }
        v
    }

    /// Annex B with a trailing start code, so the last NAL is known complete.
    fn closed(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = annexb(nals);
        v.extend_from_slice(&[0, 0, 1]);
        v
    }

    fn ring(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    fn collect(a: &mut AnnexBAssembler, chunks: &[&[u8]], eow: bool) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        for c in chunks {
            a.push(c, &mut |au| out.push((au.data.to_vec(), au.keyframe)));
            if eow {
                a.end_of_write(&mut |au| out.push((au.data.to_vec(), au.keyframe)));
            }
        }
        out
    }

    #[test]
    fn splits_on_next_picture_byte_exact() {
        let aud: &[u8] = &[0x09, 0xf0];
        let s = closed(&[aud, SPS, PPS, IDR, aud, P1, aud, P2, aud]);
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        let aus = collect(&mut a, &[&s], false);
        assert_eq!(
            aus,
            vec![
                (ring(&[SPS, PPS, IDR]), true),
                (ring(&[P1]), false),
                (ring(&[P2]), false)
            ]
        );
        assert_eq!(a.sps(), SPS);
        assert_eq!(a.pps(), PPS);
    }

    #[test]
    fn end_of_write_closes_without_waiting_for_next_frame() {
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        let w1 = annexb(&[SPS, PPS, IDR]);
        let w2 = annexb(&[P1]);
        let aus = collect(&mut a, &[&w1], true);
        assert_eq!(aus, vec![(ring(&[SPS, PPS, IDR]), true)]);
        let aus = collect(&mut a, &[&w2], true);
        assert_eq!(aus, vec![(ring(&[P1]), false)]);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_units() {
        let s = closed(&[SPS, PPS, IDR, P1, P2, SPS, PPS, IDR, P1]);
        let mut whole = AnnexBAssembler::new(Codec::H264, 4096);
        let expect = collect(&mut whole, &[&s], false);
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        let chunks: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(collect(&mut a, &chunks, false), expect);
        assert_eq!(expect.len(), 4); // the last P1 waits for more data
    }

    #[test]
    fn keyframe_without_params_gets_cached_ones() {
        let s = closed(&[SPS, PPS, IDR, P1, IDR, P2, IDR]);
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        let aus = collect(&mut a, &[&s], false);
        assert_eq!(aus[2], (ring(&[SPS, PPS, IDR]), true));
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        // Only a new PPS in front of the IDR: SPS is inserted in front of it.
        let s = closed(&[SPS, PPS, IDR, PPS, IDR, P1]);
        let aus = collect(&mut a, &[&s], false);
        assert_eq!(aus[1], (ring(&[SPS, PPS, IDR]), true));
    }

    #[test]
    fn nothing_before_first_keyframe_with_params() {
        let s = closed(&[P1, P2, IDR, P1, SPS, PPS, IDR, P2, P1]);
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        let aus = collect(&mut a, &[&s], false);
        assert_eq!(aus[0], (ring(&[SPS, PPS, IDR]), true));
        assert_eq!(aus.len(), 2);
        assert_eq!(a.stats().waiting_for_keyframe, 4);
    }

    #[test]
    fn garbage_oversize_and_forbidden_bit_are_counted_not_fatal() {
        let mut s = vec![0xde, 0xad, 0xbe, 0xef];
        s.extend(closed(&[
            SPS,
            PPS,
            IDR,
            &[0x80, 1, 2],
            &[
                0x41, 0x9a, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
                9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
            ],
            P1,
            P2,
        ]));
        let mut a = AnnexBAssembler::new(Codec::H264, 32);
        let aus = collect(&mut a, &[&s], false);
        assert_eq!(a.stats().garbage_bytes, 4);
        assert_eq!(a.stats().forbidden_bit, 1);
        assert_eq!(a.stats().nal_too_large, 1);
        assert_eq!(
            aus,
            vec![(ring(&[SPS, PPS, IDR]), true), (ring(&[P1]), false)]
        );
    }

    #[test]
    fn split_write_drops_the_continuation() {
        let mut a = AnnexBAssembler::new(Codec::H264, 4096);
        let mut w = annexb(&[SPS, PPS, IDR, P1]);
        let tail = w.split_off(w.len() - 2); // P1 cut in two writes
        let mut out = collect(&mut a, &[&w], true);
        out.extend(collect(&mut a, &[&tail, &annexb(&[P2])], true));
        assert_eq!(a.stats().split_writes, 1);
        assert_eq!(out.len(), 3); // IDR AU, the cut P1, P2
        assert_eq!(out[2], (ring(&[P2]), false));
    }

    #[test]
    fn h265_boundaries_and_irap() {
        let vps: &[u8] = &[0x40, 0x01, 0x0c];
        let sps: &[u8] = &[0x42, 0x01, 0x01];
        let pps: &[u8] = &[0x44, 0x01, 0xc1];
        let idr: &[u8] = &[0x26, 0x01, 0xaf, 0x05]; // IDR_W_RADL, first slice
        let idr2: &[u8] = &[0x26, 0x01, 0x20, 0x05]; // second slice of the same picture
        let trail: &[u8] = &[0x02, 0x01, 0xd0, 0x07];
        let aud: &[u8] = &[0x46, 0x01, 0x50];
        let s = closed(&[aud, vps, sps, pps, idr, idr2, aud, trail, aud, idr, trail]);
        let mut a = AnnexBAssembler::new(Codec::H265, 4096);
        let aus = collect(&mut a, &[&s], false);
        assert_eq!(
            aus,
            vec![
                (ring(&[vps, sps, pps, idr, idr2]), true),
                (ring(&[trail]), false),
                (ring(&[vps, sps, pps, idr]), true),
            ]
        );
    }

    #[test]
    fn random_input_never_panics_and_stays_bounded() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for codec in [Codec::H264, Codec::H265] {
            let mut a = AnnexBAssembler::new(codec, 256);
            let mut buf = [0u8; 97];
            for _ in 0..20_000 {
                let n = (rnd() % 97) as usize;
                for b in buf[..n].iter_mut() {
                    // Bias toward zeros and ones so start codes happen.
                    let r = rnd();
                    *b = match r % 4 {
                        0 | 1 => 0,
                        2 => 1,
                        _ => (r >> 8) as u8,
                    };
                }
                a.push(&buf[..n], &mut |au| assert!(au.data.len() <= 256));
                if rnd() % 3 == 0 {
                    a.end_of_write(&mut |au| assert!(au.data.len() <= 256));
                }
            }
        }
    }

    #[test]
    fn nal_units_iterates_and_stops_on_bad_length() {
        let f = ring(&[SPS, PPS]);
        assert_eq!(nal_units(&f).collect::<Vec<_>>(), vec![SPS, PPS]);
        let mut bad = f.clone();
        bad.extend_from_slice(&[0, 0, 0, 99, 1]);
        assert_eq!(nal_units(&bad).count(), 2);
    }
}
