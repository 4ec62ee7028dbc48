//! Ingest: turning encoder bytes into stamped frames in the ring.
pub mod annexb;
pub mod stamp;
