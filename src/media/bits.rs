//! Bit-level reading of H.264/H.265 RBSP data straight out of a NAL unit's payload.
//!
//! Owns: [`BitReader`], which reads fixed-width fields and Exp-Golomb codes (H.264 §9.1,
//! H.265 §9.2) MSB-first and drops emulation-prevention bytes (`00 00 03`, H.264 §7.4.1 /
//! H.265 §7.4.2) on the fly, so callers can hand it the NAL bytes as they sit in a buffer.
//!
//! Must not: allocate, copy the input, or panic. Running off the end, or an Exp-Golomb code too
//! long for `u32`, is a [`BitsError`].

/// Why a read from a [`BitReader`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitsError {
    /// The data ended before the requested bits.
    EndOfData,
    /// An Exp-Golomb code with 32 or more leading zero bits: its value does not fit in `u32`
    /// (H.264 §9.1 limits `ue(v)` to `0..=2^32 - 2`).
    ExpGolombOverflow,
    /// `read_bits` was asked for more than 32 bits (a caller bug, reported rather than panicking).
    TooManyBits,
}

impl core::fmt::Display for BitsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BitsError::EndOfData => "bitstream ended early",
            BitsError::ExpGolombOverflow => "Exp-Golomb code longer than 32 bits",
            BitsError::TooManyBits => "read of more than 32 bits",
        })
    }
}

/// An MSB-first reader over RBSP bytes that still carry their emulation-prevention bytes
/// (the NAL unit payload after its header, H.264 §7.3.1 / H.265 §7.3.1.1).
///
/// Any `0x03` that follows two `0x00` bytes is skipped without being returned, as the
/// `emulation_prevention_three_byte` rule says. Start the reader *after* the NAL header so that
/// its zero-run tracking starts fresh (headers are never `00 00`).
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Index of the next raw byte to load.
    pos: usize,
    /// The current byte; its low `bits_left` bits are unread.
    cur: u8,
    bits_left: u8,
    /// Consecutive `0x00` bytes loaded just before `cur` (including `cur`), saturating.
    zero_run: u8,
}

impl<'a> BitReader<'a> {
    /// A reader positioned at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            cur: 0,
            bits_left: 0,
            zero_run: 0,
        }
    }

    /// Loads the next RBSP byte into `cur`, skipping an emulation-prevention byte.
    fn load_byte(&mut self) -> Result<(), BitsError> {
        let mut b = *self.data.get(self.pos).ok_or(BitsError::EndOfData)?;
        self.pos += 1;
        if self.zero_run >= 2 && b == 0x03 {
            // emulation_prevention_three_byte: not part of the RBSP.
            self.zero_run = 0;
            b = *self.data.get(self.pos).ok_or(BitsError::EndOfData)?;
            self.pos += 1;
        }
        self.zero_run = if b == 0 {
            self.zero_run.saturating_add(1)
        } else {
            0
        };
        self.cur = b;
        self.bits_left = 8;
        Ok(())
    }

    /// Reads one bit, `u(1)`.
    pub fn read_bit(&mut self) -> Result<bool, BitsError> {
        if self.bits_left == 0 {
            self.load_byte()?;
        }
        self.bits_left -= 1;
        Ok((self.cur >> self.bits_left) & 1 == 1)
    }

    /// Reads `n` bits (`n <= 32`) as an unsigned big-endian number, `u(n)`. `n == 0` reads
    /// nothing and returns 0.
    pub fn read_bits(&mut self, n: u32) -> Result<u32, BitsError> {
        if n > 32 {
            return Err(BitsError::TooManyBits);
        }
        let mut remaining = n;
        let mut value: u32 = 0;
        while remaining > 0 {
            if self.bits_left == 0 {
                self.load_byte()?;
            }
            // take is 1..=8, so the shifts below stay in range.
            let take = remaining.min(u32::from(self.bits_left));
            let shift = u32::from(self.bits_left) - take;
            let mask = (1u32 << take) - 1;
            let chunk = (u32::from(self.cur) >> shift) & mask;
            // `value` has at most 32 - take significant bits here, so nothing is lost.
            value = (value << take) | chunk;
            self.bits_left -= take as u8;
            remaining -= take;
        }
        Ok(value)
    }

    /// Reads 8 bits.
    pub fn read_u8(&mut self) -> Result<u8, BitsError> {
        // read_bits(8) is < 256.
        self.read_bits(8).map(|v| v as u8)
    }

    /// Reads an unsigned Exp-Golomb code, `ue(v)` (H.264 §9.1): `2^lz - 1 + u(lz)` where `lz`
    /// is the number of leading zero bits.
    pub fn read_ue(&mut self) -> Result<u32, BitsError> {
        let mut leading_zeros = 0u32;
        while !self.read_bit()? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(BitsError::ExpGolombOverflow);
            }
        }
        let suffix = self.read_bits(leading_zeros)?;
        // leading_zeros <= 31: 2^31 - 1 + (2^31 - 1) = 2^32 - 2 fits in u32.
        Ok(((1u32 << leading_zeros) - 1) + suffix)
    }

    /// Reads a signed Exp-Golomb code, `se(v)` (H.264 §9.1.1, Table 9-3): code numbers
    /// 0, 1, 2, 3, 4 map to 0, 1, -1, 2, -2.
    pub fn read_se(&mut self) -> Result<i32, BitsError> {
        let k = i64::from(self.read_ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= (2^32 - 2 + 1) / 2 < 2^31, so it fits in i32.
        Ok(v as i32)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), BitsError> {
        let mut remaining = n;
        while remaining > 0 {
            let step = remaining.min(32);
            // step <= 32 fits in u32.
            self.read_bits(step as u32)?;
            remaining -= step;
        }
        Ok(())
    }

    /// Skips one `ue(v)`.
    pub fn skip_ue(&mut self) -> Result<(), BitsError> {
        self.read_ue().map(|_| ())
    }

    /// `true` when the reader sits on a byte boundary.
    pub fn is_byte_aligned(&self) -> bool {
        self.bits_left == 0 || self.bits_left == 8
    }

    /// `more_rbsp_data()` (H.264 §7.2): whether any RBSP data remains before the
    /// `rbsp_stop_one_bit` (the last 1 bit of the NAL unit). Scans a copy of the reader;
    /// cost is linear in the remaining length.
    pub fn more_rbsp_data(&self) -> bool {
        let mut probe = self.clone();
        // The first 1 bit from here is either data or the stop bit; any later 1 bit proves
        // the first was data.
        let mut seen_one = false;
        while let Ok(bit) = probe.read_bit() {
            if bit {
                if seen_one {
                    return true;
                }
                seen_one = true;
            }
        }
        false
    }
}

/// Test-only writer producing RBSP/NAL bytes, used to build parameter sets field by field in
/// spec order (and to round-trip the reader).
#[cfg(test)]
pub(crate) mod test_support {
    /// MSB-first bit writer (test helper; allocates).
    #[derive(Default)]
    pub(crate) struct BitWriter {
        bytes: Vec<u8>,
        cur: u8,
        nbits: u8,
    }

    impl BitWriter {
        pub(crate) fn new() -> Self {
            Self::default()
        }
        pub(crate) fn bit(&mut self, b: bool) -> &mut Self {
            self.cur = (self.cur << 1) | u8::from(b);
            self.nbits += 1;
            if self.nbits == 8 {
                self.bytes.push(self.cur);
                self.cur = 0;
                self.nbits = 0;
            }
            self
        }
        pub(crate) fn bits(&mut self, n: u32, v: u64) -> &mut Self {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
            self
        }
        pub(crate) fn ue(&mut self, v: u32) -> &mut Self {
            let x = u64::from(v) + 1;
            let len = 64 - x.leading_zeros();
            self.bits(len - 1, 0);
            self.bits(len, x)
        }
        pub(crate) fn se(&mut self, v: i32) -> &mut Self {
            let k = if v > 0 {
                (2 * i64::from(v) - 1) as u32
            } else {
                (-2 * i64::from(v)) as u32
            };
            self.ue(k)
        }
        /// rbsp_trailing_bits(): a stop bit, then zero bits to the byte boundary.
        pub(crate) fn trailing(&mut self) -> &mut Self {
            self.bit(true);
            while self.nbits != 0 {
                self.bit(false);
            }
            self
        }
        /// The RBSP so far (must be byte aligned).
        pub(crate) fn rbsp(&self) -> Vec<u8> {
            assert_eq!(self.nbits, 0, "writer not byte aligned");
            self.bytes.clone()
        }
        /// `header` followed by the RBSP with emulation-prevention bytes inserted.
        pub(crate) fn nal(&self, header: &[u8]) -> Vec<u8> {
            let mut out = header.to_vec();
            out.extend_from_slice(&escape(&self.rbsp()));
            out
        }
    }

    /// Splits an Annex B byte stream (H.264 Annex B) into NAL units without start codes.
    /// Test-only; the real splitter lives in `ingest`.
    pub(crate) fn annexb_nals(stream: &[u8]) -> Vec<&[u8]> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= stream.len() {
            if stream[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        let mut nals = Vec::new();
        for (n, &s) in starts.iter().enumerate() {
            let mut end = starts.get(n + 1).map_or(stream.len(), |&next| next - 3);
            while end > s && stream[end - 1] == 0 {
                end -= 1; // trailing_zero_8bits / the leading zero of a 4-byte start code
            }
            nals.push(&stream[s..end]);
        }
        nals
    }

    /// xorshift64 (Marsaglia 2003): a seeded PRNG without a dependency.
    pub(crate) struct XorShift(pub u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Copies `src` into `dst` with 1..=4 random bit flips or byte replacements and, one time
    /// in four, a random truncation: mutations of real parameter sets reach the deep parser
    /// paths (VUI, RPS, scaling lists) that uniform random bytes rarely do.
    pub(crate) fn mutate(rng: &mut XorShift, src: &[u8], dst: &mut Vec<u8>) {
        dst.clear();
        dst.extend_from_slice(src);
        if dst.is_empty() {
            return;
        }
        for _ in 0..=(rng.next() % 4) {
            let i = (rng.next() % dst.len() as u64) as usize;
            let x = rng.next();
            if x.is_multiple_of(2) {
                dst[i] ^= 1 << ((x >> 8) % 8);
            } else {
                dst[i] = (x >> 16) as u8;
            }
        }
        if rng.next().is_multiple_of(4) {
            let keep = (rng.next() % dst.len() as u64) as usize;
            dst.truncate(keep.max(1));
        }
    }

    /// Inserts emulation-prevention bytes (H.264 §7.4.1).
    pub(crate) fn escape(rbsp: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rbsp.len() + 8);
        let mut zeros = 0;
        for &b in rbsp {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{escape, BitWriter};
    use super::*;

    #[test]
    fn fixed_width_reads() {
        let mut r = BitReader::new(&[0b1010_1100, 0xff, 0x12, 0x34, 0x56, 0x78]);
        assert_eq!(r.read_bit(), Ok(true));
        assert_eq!(r.read_bits(3), Ok(0b010));
        assert_eq!(r.read_bits(0), Ok(0));
        assert_eq!(r.read_bits(12), Ok(0b1100_1111_1111));
        assert_eq!(r.read_bits(32), Ok(0x1234_5678));
        assert_eq!(r.read_bit(), Err(BitsError::EndOfData));
        assert_eq!(
            BitReader::new(&[0; 8]).read_bits(33),
            Err(BitsError::TooManyBits)
        );
    }

    /// H.264 §9.1 Table 9-2: the bit strings of code numbers 0..=14 and the prefix/suffix rule,
    /// plus the largest legal value (31 leading zeros) and one too long.
    #[test]
    fn exp_golomb_table_9_2() {
        // "1" "010" "011" "00100" "00101" "00110" "00111" "0001000" ... "0001110"
        let strings = [
            "1",
            "010",
            "011",
            "00100",
            "00101",
            "00110",
            "00111",
            "0001000",
            "0001001",
            "0001010",
            "0001011",
            "0001100",
            "0001101",
            "0001110",
            "0001111",
            "000010000",
        ];
        for (code_num, s) in strings.iter().enumerate() {
            let mut w = BitWriter::new();
            for c in s.chars() {
                w.bit(c == '1');
            }
            w.trailing();
            let rbsp = w.rbsp();
            assert_eq!(BitReader::new(&rbsp).read_ue(), Ok(code_num as u32), "{s}");
        }
        // 31 zeros, a 1, then 31 ones: 2^32 - 2.
        let max = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(BitReader::new(&max).read_ue(), Ok(u32::MAX - 1));
        // 32 zeros then a 1: overflow, not a panic.
        let over = [0, 0, 0, 0, 0x80, 0, 0, 0, 0];
        assert_eq!(
            BitReader::new(&over).read_ue(),
            Err(BitsError::ExpGolombOverflow)
        );
        // A prefix that runs off the end.
        assert_eq!(BitReader::new(&[0x00]).read_ue(), Err(BitsError::EndOfData));
        assert_eq!(BitReader::new(&[0x01]).read_ue(), Err(BitsError::EndOfData));
    }

    /// H.264 §9.1.1 Table 9-3: codeNum k -> (-1)^(k+1) * ceil(k / 2).
    #[test]
    fn signed_exp_golomb_table_9_3() {
        let expected = [0, 1, -1, 2, -2, 3, -3, 4, -4];
        for (k, want) in expected.iter().enumerate() {
            let mut w = BitWriter::new();
            w.ue(k as u32).trailing();
            assert_eq!(BitReader::new(&w.rbsp()).read_se(), Ok(*want), "k={k}");
        }
        let max = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(BitReader::new(&max).read_se(), Ok(-(i32::MAX)));
    }

    #[test]
    fn emulation_prevention_bytes_are_skipped() {
        // RBSP 00 00 00 01 00 00 03 escapes to 00 00 03 00 01 00 00 03 03.
        let raw = [0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x03];
        let mut r = BitReader::new(&raw);
        assert_eq!(r.read_bits(32), Ok(0x0000_0001));
        assert_eq!(r.read_bits(24), Ok(0x00_0003));
        assert_eq!(r.read_bit(), Err(BitsError::EndOfData));
        // Back-to-back escapes: RBSP 00 00 00 00 00 -> 00 00 03 00 00 03 00.
        let raw = [0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00];
        let mut r = BitReader::new(&raw);
        assert_eq!(r.read_bits(32), Ok(0));
        assert_eq!(r.read_bits(8), Ok(0));
        assert_eq!(r.read_bit(), Err(BitsError::EndOfData));
        // A 03 after only one zero is data.
        let mut r = BitReader::new(&[0x00, 0x03, 0x00, 0x00, 0x03]);
        assert_eq!(r.read_bits(16), Ok(0x0003));
        // Trailing escape with nothing after it: end of data, no panic.
        assert_eq!(r.read_bits(16), Ok(0));
        assert_eq!(r.read_bit(), Err(BitsError::EndOfData));
    }

    #[test]
    fn round_trip_through_escaping() {
        let mut w = BitWriter::new();
        let values = [0u32, 1, 2, 0, 0, 0, 1000, 65535, 0, u32::MAX - 1, 7];
        for &v in &values {
            w.ue(v).bits(24, 0).se(-(v as i32 % 1000));
        }
        w.trailing();
        let nal = escape(&w.rbsp());
        assert!(nal.len() > w.rbsp().len(), "test should exercise escaping");
        let mut r = BitReader::new(&nal);
        for &v in &values {
            assert_eq!(r.read_ue(), Ok(v));
            assert_eq!(r.read_bits(24), Ok(0));
            assert_eq!(r.read_se(), Ok(-(v as i32 % 1000)));
        }
        assert!(!r.more_rbsp_data());
    }

    #[test]
    fn more_rbsp_data_and_skip() {
        // 1 data bit, then stop bit and alignment: 0b1100_0000.
        let mut r = BitReader::new(&[0b1100_0000]);
        assert!(r.more_rbsp_data());
        assert_eq!(r.read_bit(), Ok(true));
        assert!(!r.more_rbsp_data());
        let mut r = BitReader::new(&[0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        assert_eq!(r.skip(36), Ok(()));
        assert!(!r.is_byte_aligned());
        assert_eq!(r.read_bits(4), Ok(0xe));
        assert!(r.is_byte_aligned());
        assert_eq!(r.skip(1), Err(BitsError::EndOfData));
        assert_eq!(BitReader::new(&[]).skip(0), Ok(()));
    }
}
