//! Protocol cores: sans-IO, no sockets, no clock reads.

pub mod hls;
pub mod ts;
pub mod ts_demux;
