//! Protocol cores: sans-IO, no sockets, no clock reads. Each takes bytes and `now` and writes
//! into buffers the caller hands it.

pub mod fmp4;
pub mod hls;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod ts;
pub mod ts_demux;
pub mod ws;
