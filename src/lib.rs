//! rillcast: a small, bounded streaming daemon that turns a camera's hardware encoder into an
//! RTSP / HLS / RTMP endpoint.
//!
//! Read `docs/ARCHITECTURE.md` first. In short, data flows one way:
//!
//! ```text
//! encoder bytes ─▶ ingest (Annex B / ADTS / TS parsing, stamping) ─▶ media::ring::MediaRing
//!                                                                      │ (static pool + fan-out)
//!                          ┌───────────────────────────────────────────┼───────────────┐
//!                          ▼                                           ▼               ▼
//!                  RTSP sessions (RTP/RTCP)                      HLS segmenter     RTMP pusher
//! ```
//!
//! Pure cores (`media`, `ingest::annexb`, `proto::*`) take bytes and `now` and write into
//! buffers the caller hands them; the shells (`net`, `ingest` drivers, `daemon`) own sockets,
//! processes and the clock.
#![deny(unsafe_code)]

pub mod board;
pub mod boot;
pub mod cli;
pub mod config;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub mod media;
pub mod net;
pub mod proto;
pub mod sd_notify;
pub mod web;
