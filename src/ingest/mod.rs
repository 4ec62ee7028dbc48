//! Ingest: turning encoder bytes into stamped frames in the ring.

pub mod testsrc;
