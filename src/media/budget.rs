//! `MemoryPlan`: every byte of media memory, decided once at start from the config.
//!
//! Owns: the capacity math — ring sizes, slot counts, per-AU staging, per-viewer send buffers,
//! HLS segment arenas, fMP4 fragment stores, push queues — and the check against the ceiling. The daemon allocates
//! exactly what the plan says and nothing per frame afterwards, so the figure printed at start
//! ("media memory: N MiB") is the figure that holds.

use super::ring::MediaRing;
use crate::config::Config;

/// Per-viewer send buffer for RTSP over TCP (interleaved packets waiting for the socket) plus
/// room for one control response.
pub const VIEWER_TCP_BUFFER_BYTES: usize = 16 * 1024;
/// Read buffer of one RTSP connection (requests and interleaved RTCP from the client).
pub const RTSP_READ_BUFFER_BYTES: usize = 8 * 1024;
/// Read buffer of one ingest input.
pub const INGEST_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Per push target besides its media queue: the socket read and write buffers of the shell
/// (16 KiB each), the publisher's control queue and reader (~32 KiB), and TLS record buffers
/// (~34 KiB for rtmps; planned for every target so the figure does not depend on the scheme).
pub const PUSH_FIXED_BYTES: usize = 128 * 1024;
/// Viewer limit without a board profile or `rtsp.max_viewers`.
pub const DEFAULT_MAX_VIEWERS: u32 = 200;
/// Media memory ceiling without a board profile or `media.memory_mib`.
pub const DEFAULT_MEMORY_MIB: u32 = 24;
/// HLS: segment metadata kept per stored segment (the segmenter's table entry).
pub const HLS_SEGMENT_ENTRY_BYTES: usize = 64;

/// What one stream gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    pub name: String,
    pub ring_bytes: usize,
    pub ring_slots: usize,
    /// Largest access unit accepted (a quarter of the ring); also the ingest staging size.
    pub max_au_bytes: usize,
    /// HLS segment arena (window + retention + the open segment, at the stream's bitrate
    /// ceiling, with TS overhead); 0 when HLS is off.
    pub hls_bytes: usize,
    /// Segments the HLS segmenter keeps: `2 * window + 1` (listed, retained, open).
    pub hls_segments: usize,
    /// fMP4 fragment store for WebSocket/MSE viewers (`fmp4.buffer_ms` at the bitrate
    /// ceiling plus the `moof` of each frame), its scratch buffer and descriptors; 0 when off.
    pub fmp4_bytes: usize,
    /// Of `fmp4_bytes`: the fragment ring's arena.
    pub fmp4_arena_bytes: usize,
    /// Fragment descriptors in the ring.
    pub fmp4_slots: usize,
    pub total_bytes: usize,
}

/// What one `[[push]]` target gets (in config order; disabled targets get nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushPlan {
    /// Index into `cfg.push`.
    pub index: usize,
    /// The publisher's byte-capped media queue (whole GOPs are dropped when it is full).
    pub queue_bytes: usize,
    pub total_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub streams: Vec<StreamPlan>,
    pub pushes: Vec<PushPlan>,
    pub max_viewers: u32,
    pub viewer_bytes: usize,
    /// HTTP connections allowed at once, and their request buffers plus the shared send buffer.
    pub http_connections: u32,
    pub http_bytes: usize,
    pub total_bytes: usize,
    pub ceiling_bytes: usize,
}

/// What the `[[push]]` targets of `cfg` get (the part of the plan that changes live when a
/// target is added or removed from the page).
pub fn push_plans(cfg: &Config) -> Vec<PushPlan> {
    let mut pushes = Vec::new();
    for (index, p) in cfg.push.iter().enumerate() {
        if !p.enabled {
            continue;
        }
        let kbps = cfg
            .streams
            .get(&p.stream)
            .map_or(4000, |s| s.max_bitrate_kbps);
        let queue_bytes = p.queue_bytes(kbps);
        pushes.push(PushPlan {
            index,
            queue_bytes,
            total_bytes: queue_bytes + PUSH_FIXED_BYTES,
        });
    }
    pushes
}

impl MemoryPlan {
    /// Plans memory for `cfg`; `board_memory_mib`/`board_max_viewers` come from `--board`.
    /// Fails with a sentence saying what to change when the plan exceeds the ceiling.
    pub fn new(
        cfg: &Config,
        board_memory_mib: Option<u32>,
        board_max_viewers: Option<u32>,
    ) -> Result<MemoryPlan, String> {
        let ceiling_mib = match cfg.media.memory_mib {
            0 => board_memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            m => m,
        };
        let max_viewers = match cfg.rtsp.max_viewers {
            0 => board_max_viewers.unwrap_or(DEFAULT_MAX_VIEWERS),
            v => v,
        };
        let mut streams = Vec::new();
        for (name, s) in &cfg.streams {
            let ring_bytes = s.ring_bytes().max(64 * 1024);
            // ~75 frames/s of video + audio, for the buffer's duration, at least 256.
            let ring_slots = ((s.buffer_ms as usize * 75) / 1000).clamp(256, 16_384);
            let max_au_bytes = ring_bytes / 4;
            // Staging: the assembler's NAL and AU buffers, the ADTS splitter, read buffers.
            let ingest = 2 * max_au_bytes + 8192 + 2 * INGEST_READ_BUFFER_BYTES;
            // HLS: `window` segments listed + as many retained (RFC 8216 §6.2.2: a segment
            // stays available for a playlist duration after it leaves) + the one being
            // written, at the bitrate ceiling, plus 1/8 for TS overhead (188/184 framing, PES
            // headers, AAC frames padded to whole packets); at least 3 x the largest frame.
            let (hls_bytes, hls_segments) = if cfg.hls.enabled {
                // + 1 more of headroom: a segment that left the playlist must survive a full
                // playlist duration even when the next segment completes while a client is
                // between fetching the playlist and fetching the segment.
                let segs = 2 * cfg.hls.window as usize + 2;
                let es = segs * cfg.hls.segment_ms as usize * s.max_bitrate_kbps as usize / 8;
                let arena = (es + es / 8).max(3 * max_au_bytes);
                (arena + segs * HLS_SEGMENT_ENTRY_BYTES, segs)
            } else {
                (0, 0)
            };
            // fMP4: buffer_ms of fragments at the ceiling, each frame with its moof (~75
            // frames/s); at least 4 x the largest fragment (the ring's per-frame cap is a
            // quarter). Plus one fragment of scratch.
            let (fmp4_bytes, fmp4_arena_bytes, fmp4_slots) = if cfg.fmp4.enabled {
                let ms = cfg.fmp4.buffer_ms as usize;
                let frag = max_au_bytes + crate::proto::fmp4::FRAGMENT_OVERHEAD_BYTES;
                let arena = (ms * s.max_bitrate_kbps as usize / 8
                    + ms * 75 / 1000 * crate::proto::fmp4::FRAGMENT_OVERHEAD_BYTES)
                    .max(4 * frag); // the ring takes frames up to a quarter of it
                let slots = (ms * 75 / 1000).clamp(256, 16_384);
                (MediaRing::memory_bytes(arena, slots) + frag, arena, slots)
            } else {
                (0, 0, 0)
            };
            let total =
                MediaRing::memory_bytes(ring_bytes, ring_slots) + ingest + hls_bytes + fmp4_bytes;
            streams.push(StreamPlan {
                name: name.clone(),
                ring_bytes,
                ring_slots,
                max_au_bytes,
                hls_bytes,
                hls_segments,
                fmp4_bytes,
                fmp4_arena_bytes,
                fmp4_slots,
                total_bytes: total,
            });
        }
        let viewer_bytes =
            max_viewers as usize * (VIEWER_TCP_BUFFER_BYTES + RTSP_READ_BUFFER_BYTES);
        let pushes = push_plans(cfg);
        let push_bytes = pushes.iter().map(|p| p.total_bytes).sum::<usize>();
        let http_connections = match cfg.http.max_connections {
            0 => max_viewers,
            n => n,
        };
        let http_bytes = http_connections as usize * crate::net::http::CONNECTION_BUFFER_BYTES
            + crate::net::http::SEND_CHUNK_BYTES;
        let total_bytes = streams.iter().map(|s| s.total_bytes).sum::<usize>()
            + viewer_bytes
            + http_bytes
            + push_bytes;
        let ceiling_bytes = ceiling_mib as usize * 1024 * 1024;
        if total_bytes > ceiling_bytes {
            return Err(format!(
                "media memory needed is {:.1} MiB but the ceiling is {} MiB: raise media.memory_mib, \
                 or lower buffer_ms / max_bitrate_kbps of the streams, rtsp.max_viewers, \
                 http.max_connections, hls.window, fmp4.buffer_ms or push queue_kib",
                total_bytes as f64 / 1048576.0,
                ceiling_mib
            ));
        }
        Ok(MemoryPlan {
            streams,
            pushes,
            max_viewers,
            viewer_bytes,
            http_connections,
            http_bytes,
            total_bytes,
            ceiling_bytes,
        })
    }

    pub fn summary(&self) -> String {
        let per: Vec<String> = self
            .streams
            .iter()
            .map(|s| {
                format!(
                    "{} {:.1} incl. HLS {:.1}, fMP4 {:.1}",
                    s.name,
                    s.total_bytes as f64 / 1048576.0,
                    s.hls_bytes as f64 / 1048576.0,
                    s.fmp4_bytes as f64 / 1048576.0
                )
            })
            .collect();
        let mut s = format!(
            "media memory: {:.1} MiB of {} MiB ceiling (streams: {}; {} viewers {:.1}; \
             {} HTTP connections {:.1}",
            self.total_bytes as f64 / 1048576.0,
            self.ceiling_bytes / 1048576,
            per.join(", "),
            self.max_viewers,
            self.viewer_bytes as f64 / 1048576.0,
            self.http_connections,
            self.http_bytes as f64 / 1048576.0
        );
        if !self.pushes.is_empty() {
            let push: usize = self.pushes.iter().map(|p| p.total_bytes).sum();
            s.push_str(&format!(
                "; {} push {:.1}",
                self.pushes.len(),
                push as f64 / 1048576.0
            ));
        }
        s.push(')');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_fits_default_ceiling() {
        let cfg = Config::parse("", "t").unwrap();
        let p = MemoryPlan::new(&cfg, None, None).unwrap();
        assert_eq!(p.streams[0].ring_bytes, 3000 * 4000 / 8);
        assert_eq!(p.streams[0].max_au_bytes, 375_000);
        assert_eq!(p.max_viewers, 200);
        assert!(p.total_bytes <= p.ceiling_bytes);
        assert!(p.summary().starts_with("media memory: "));
        // HLS: 14 one-second segments at 4000 kbps (7 MB) + 1/8 TS overhead + the table.
        assert_eq!(p.streams[0].hls_segments, 14);
        assert_eq!(p.streams[0].hls_bytes, 7_000_000 + 875_000 + 14 * 64);
        assert_eq!(p.http_connections, 200);
        let off = Config::parse("[hls]\nenabled = false\n", "t").unwrap();
        let q = MemoryPlan::new(&off, None, None).unwrap();
        assert_eq!(q.streams[0].hls_bytes, 0);
        assert_eq!(p.total_bytes - q.total_bytes, p.streams[0].hls_bytes);
        // fMP4: 2 s at 4000 kbps (1 MB) + 150 frames' moof is less than 4 of the largest
        // fragments, which the arena needs at least; plus the descriptors and one fragment
        // of scratch; all of it in the figure.
        let f = &p.streams[0];
        assert_eq!(f.fmp4_arena_bytes, 4 * 375_112);
        let big = Config::parse("[fmp4]\nbuffer_ms = 10000\n", "t").unwrap();
        let b = MemoryPlan::new(&big, None, None).unwrap();
        assert_eq!(b.streams[0].fmp4_arena_bytes, 5_000_000 + 750 * 112);
        assert_eq!(f.fmp4_slots, 256);
        assert_eq!(
            f.fmp4_bytes,
            MediaRing::memory_bytes(f.fmp4_arena_bytes, 256) + 375_000 + 112
        );
        let shown = format!("fMP4 {:.1}", f.fmp4_bytes as f64 / 1048576.0);
        assert!(p.summary().contains(&shown), "{}", p.summary());
        let off = Config::parse("[fmp4]\nenabled = false\n", "t").unwrap();
        let q = MemoryPlan::new(&off, None, None).unwrap();
        assert_eq!(q.streams[0].fmp4_bytes, 0);
        assert_eq!(p.total_bytes - q.total_bytes, f.fmp4_bytes);
    }

    #[test]
    fn too_much_is_refused_with_advice() {
        let cfg = Config::parse("[media]\nmemory_mib = 2\n", "t").unwrap();
        let e = MemoryPlan::new(&cfg, None, None).unwrap_err();
        assert!(e.contains("ceiling is 2 MiB"), "{e}");
        // A board's figures apply when the config leaves them at 0.
        let cfg = Config::parse("", "t").unwrap();
        let p = MemoryPlan::new(&cfg, Some(64), Some(20)).unwrap();
        assert_eq!((p.ceiling_bytes, p.max_viewers), (64 << 20, 20));
    }

    #[test]
    fn push_queues_are_planned() {
        let base = MemoryPlan::new(&Config::parse("", "t").unwrap(), None, None).unwrap();
        let t = "[[push]]\nurl = \"rtmp://a/live/k\"\nqueue_kib = 300\n\
                 [[push]]\nurl = \"rtmp://b/live/k\"\nenabled = false\n\
                 [[push]]\nurl = \"rtmp://c/live/k\"\n";
        let p = MemoryPlan::new(&Config::parse(t, "t").unwrap(), None, None).unwrap();
        // The disabled target gets nothing; the auto queue is 2 s at 4000 kbit/s.
        assert_eq!(p.pushes.len(), 2);
        assert_eq!(
            (p.pushes[0].index, p.pushes[0].queue_bytes),
            (0, 300 * 1024)
        );
        assert_eq!((p.pushes[1].index, p.pushes[1].queue_bytes), (2, 1_000_000));
        let added = 300 * 1024 + 1_000_000 + 2 * PUSH_FIXED_BYTES;
        assert_eq!(p.total_bytes, base.total_bytes + added);
        assert!(p.summary().contains("2 push 1.5"), "{}", p.summary());
        let t =
            "[media]\nmemory_mib = 16\n[[push]]\nurl = \"rtmp://a/live/k\"\nqueue_kib = 65536\n";
        let e = MemoryPlan::new(&Config::parse(t, "t").unwrap(), None, None).unwrap_err();
        assert!(e.contains("push queue_kib"), "{e}");
    }
}
