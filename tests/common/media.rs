//! Media helpers the end-to-end tests share: splitting what real tools (ffmpeg, x264) wrote
//! back into units to compare, written independently of the code under test.

/// NAL units of an Annex B stream (3- or 4-byte start codes), without start codes.
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        // A 4-byte start code leaves a zero byte at the end of the previous NAL.
        while k + 1 < starts.len() && e > s && data[e - 1] == 0 {
            e -= 1;
        }
        nals.push(&data[s..e]);
    }
    nals
}
