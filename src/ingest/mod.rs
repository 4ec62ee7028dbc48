//! Ingest: turning encoder bytes into stamped frames in a stream's ring.
//!
//! Pure cores: [`annexb`] (access units), [`adts`] (AAC frames), [`stamp`] (timestamps),
//! [`testsrc`] (the built-in generator). The drivers in [`source`] own the processes, pipes,
//! files and sockets and feed the cores.
pub mod adts;
pub mod annexb;
pub mod source;
pub mod stamp;
pub mod testsrc;
