//! RTSP/1.0 server core (RFC 2326), sans-IO: the smol shell in `net` reads bytes, calls
//! [`request::parse`], feeds each request to a [`session::RtspConn`], writes the response bytes
//! it gets back and acts on the returned [`session::SessionEvent`].
//!
//! Owns: request framing and limits (`request`), the Transport header (`transport`), Basic and
//! Digest auth (`auth`), the password-guessing throttle (`throttle`), and the per-connection
//! state machine (`session`). Must not: open
//! sockets, read the clock, or use OS randomness (a seed is passed in).
//!
//! We parse RTSP ourselves instead of using the `rtsp-types` crate: it depends on `url`, which
//! pulls `idna` and its Unicode/ICU tables into a binary that must stay ≤ 1.5 MB, and its
//! "incomplete" result means re-parsing from the buffer start without a size cap. Here a head
//! is scanned at most up to [`request::MAX_HEAD_BYTES`] and parsed once complete.

pub mod auth;
pub mod request;
pub mod session;
pub mod throttle;
pub mod transport;

pub use auth::Credentials;
pub use request::{parse, write_response, Parsed, Request, RequestError};
pub use session::{RtspConn, SessionEvent, StreamCatalog, TrackSetup, TrackTransport};
