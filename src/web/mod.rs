//! The web edge: the page, the JSON API, events, webhooks and `/metrics`, served by our own
//! HTTP server (`net::http`) on the HTTP port it shares with HLS.
//!
//! Owns: everything a person or a program does over HTTP other than fetching media. The pure
//! parts ([`auth`], [`persist`]'s rendering, [`events`]' queue policy, [`status`]' sampler,
//! [`metrics`], [`api`]'s router) are tested without sockets; [`live`] connects them to the
//! running daemon (hubs, the RTSP server, source tasks) and runs the once-a-second observer
//! and the webhook sender.
//!
//! Must not: sit on the media path. Nothing here is called per frame; the API reads counters
//! that the hubs and servers keep anyway.

pub mod api;
#[cfg(test)]
mod api_tests;
pub mod auth;
pub mod events;
pub mod live;
pub mod metrics;
pub mod page;
pub mod persist;
pub mod status;
