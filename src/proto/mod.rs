//! Protocol cores: sans-IO, no sockets, no clock reads.

pub mod rtsp;
