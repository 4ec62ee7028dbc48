//! The HTTP/1.1 server shell (RFC 9110 semantics, RFC 9112 message syntax) on the media
//! thread's smol executor: HLS, the web page and the API share its port.
//!
//! Owns: the listener, one task per connection, the request-head parser (sans-IO,
//! [`parse_head`]), every limit a hostile client could push on (request line, header count,
//! head size, body size, time to send a head, idle keep-alive time, time a client may refuse to
//! read, number of connections, connections per client address) and the response framing (Content-Length, keep-alive, HEAD,
//! single-range requests). Must not: know any route, touch the filesystem, or hold a borrow of
//! a handler's state across an await.
//!
//! Why not `tiny_http`: it runs one OS thread per connection with no header caps and no read
//! timeout (see `scripts/measure-tiny-http-threads.sh`); here a thousand idle connections are a
//! thousand small futures on one thread.
//!
//! # The router interface
//!
//! A route is an [`HttpHandler`]; the daemon hands the server a list of them, tried in order.
//! For every request whose head passed the limits and whose path is safe (see
//! [`path_is_safe`]), the server builds an [`HttpRequest`] (the body fully read, at most
//! [`HttpHandler::max_body_bytes`] or [`DEFAULT_MAX_BODY_BYTES`]) and calls
//! [`HttpHandler::handle`] on each handler until one returns `Some(HttpResponse)`; if none
//! does, the answer is 404. Handlers are synchronous and run on the media thread: they must
//! return quickly and never block. The server then adds `Content-Length`, `Connection`,
//! `Accept-Ranges`/`Content-Range` and writes the body:
//!
//! - `HEAD` reaches handlers as `GET`; the server sends the headers without the body.
//! - A `Range: bytes=…` header on a `GET` answered 200 with a body of known length is served
//!   by the server as 206 (one range) or 416; multi-range requests get the full 200.
//! - `OPTIONS` reaches handlers unchanged; a handler that wants CORS preflight answers it with
//!   [`HttpResponse::cors_preflight`]. Unknown paths get 404 for every method.
//! - [`HttpBody::Reader`] bodies (HLS segments) are copied in 16 KiB chunks from the handler's
//!   [`BodyReader`] into one scratch buffer shared by all connections, straight to the socket:
//!   no per-connection send buffer, no copy of the whole body.
//! - [`HttpBody::Events`] is a server-sent-events stream (`text/event-stream`): the server
//!   polls the [`EventSource`] and writes what it produces until it ends or the client leaves.
//! - [`HttpBody::Upgrade`] (a 101 answer, WebSocket) hands the connection to the handler's
//!   [`Upgrade`] once the head is written.
//!
//! Paths are passed raw (percent-decoding is the router's job), but a path that could climb
//! out of a directory in any encoding never reaches a handler: it gets 404.

use crate::proto::rtsp::throttle::peer_key;
use smol::future::FutureExt;
use smol::io::AsyncReadExt;
use smol::Async;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest request line accepted (method, target, version, CRLF); longer gets 414.
pub const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
/// Most header fields in one request; more gets 431.
pub const MAX_HEADERS: usize = 64;
/// Longest request head (request line + header fields + the empty line); longer gets 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Request body cap for handlers that don't say otherwise; larger gets 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Bytes of a [`HttpBody::Reader`] body copied to the socket per write.
pub const SEND_CHUNK_BYTES: usize = 16 * 1024;
/// Memory one open connection may hold for its request head (planned in `MemoryPlan`).
pub const CONNECTION_BUFFER_BYTES: usize = MAX_HEAD_BYTES + 1024;
/// Refused connections (over the cap) being answered 503 at once; beyond it they are dropped.
const MAX_REFUSING: usize = 64;
/// Connections accepted per executor turn before yielding to other tasks (connect storms).
const ACCEPT_BUDGET: usize = 32;

/// One request as a handler sees it. Borrowed from the connection's buffer.
#[derive(Debug)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, `OPTIONS`, … (`HEAD` arrives as `GET`; see the module docs).
    pub method: &'a str,
    /// The request target's path, still percent-encoded, always starting with `/`, already
    /// checked by [`path_is_safe`].
    pub path: &'a str,
    /// What follows `?`, if anything (raw).
    pub query: Option<&'a str>,
    /// Header fields in arrival order, names as sent (compare case-insensitively).
    pub headers: &'a [(&'a str, &'a str)],
    /// The whole request body (Content-Length framed; chunked requests are refused with 501).
    pub body: &'a [u8],
    pub peer: SocketAddr,
}

impl HttpRequest<'_> {
    /// The first header field named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(self.headers, name)
    }
}

fn header<'h>(headers: &[(&'h str, &'h str)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// A handler's answer. The server adds `Content-Length`, `Connection`, `Server` and the range
/// fields; don't set those.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: HttpBody,
}

impl HttpResponse {
    pub fn new(status: u16, body: HttpBody) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A `text/plain` answer, e.g. `HttpResponse::text(503, "not live yet\n")`.
    pub fn text(status: u16, text: &'static str) -> Self {
        HttpResponse::new(status, HttpBody::Static(text.as_bytes()))
            .with_header("Content-Type", "text/plain; charset=utf-8")
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The CORS preflight answer (Fetch standard §3.2.2) for public, credential-less GET/HEAD
    /// resources such as HLS: any origin, the `Range` header allowed.
    pub fn cors_preflight() -> Self {
        HttpResponse::new(204, HttpBody::Empty)
            .with_header("Access-Control-Allow-Origin", "*")
            .with_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            .with_header("Access-Control-Allow-Headers", "Range")
            .with_header("Access-Control-Max-Age", "600")
    }
}

/// A response body.
pub enum HttpBody {
    Empty,
    Bytes(Vec<u8>),
    Static(&'static [u8]),
    /// `len` bytes read at send time from `reader` (an HLS segment in RAM), chunk by chunk.
    Reader {
        len: usize,
        reader: Rc<dyn BodyReader>,
    },
    /// A server-sent-events stream (give it `Content-Type: text/event-stream`); the connection
    /// closes when it ends.
    Events(Box<dyn EventSource>),
    /// A protocol switch (status 101, e.g. WebSocket): after the head, the connection is
    /// handed to the [`Upgrade`] until it ends. The handler sets `Upgrade:` and its own
    /// fields; the server adds `Connection: Upgrade`.
    Upgrade(Box<dyn Upgrade>),
}

/// Takes over a connection after a 101 response (RFC 9110 §7.8).
pub trait Upgrade {
    /// Runs the new protocol on `stream` until it ends; the server then closes the socket.
    /// The connection keeps counting against the connection cap while this runs.
    fn run(
        self: Box<Self>,
        stream: Arc<Async<TcpStream>>,
        peer: SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
}

/// Random access to a body that lives elsewhere (an HLS segment arena).
pub trait BodyReader {
    /// Copies bytes from `offset` into `buf`; returns the count (0 at the end), or None when
    /// the body is gone (evicted): the server then closes the connection mid-body.
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Option<usize>;
}

/// What [`EventSource::poll_event`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventPoll {
    /// `out` holds bytes to send (complete `data: …\n\n` events).
    Ready,
    /// Nothing now; the server asks again after [`EVENT_POLL_MS`].
    Idle,
    /// The stream is over: the connection closes.
    End,
}

/// How often an idle [`EventSource`] is polled.
pub const EVENT_POLL_MS: u64 = 250;

/// A server-sent-events producer (HTML Living Standard §9.2).
pub trait EventSource {
    /// Appends the next events to `out` (cleared by the server after each send).
    fn poll_event(&mut self, out: &mut Vec<u8>) -> EventPoll;
}

/// A route. See the module docs for the contract.
pub trait HttpHandler {
    /// Answers `req`, or None when `req.path` is not this handler's.
    fn handle(&self, req: &HttpRequest<'_>) -> Option<HttpResponse>;
    /// Largest request body this handler accepts for `path` (None: not its path, or the
    /// default [`DEFAULT_MAX_BODY_BYTES`]).
    fn max_body_bytes(&self, _path: &str) -> Option<usize> {
        None
    }
}

/// Why a request head was refused; [`HeadError::status`] is the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Request line over [`MAX_REQUEST_LINE_BYTES`] (414, RFC 9112 §3).
    RequestLineTooLong,
    /// More than [`MAX_HEADERS`] fields (431, RFC 6585 §5).
    TooManyHeaders,
    /// Head over [`MAX_HEAD_BYTES`] (431).
    HeadTooLarge,
    /// Not an HTTP/1.x request head (400).
    Malformed,
    /// `HTTP/2.0`, `HTTP/0.9`, … (505).
    BadVersion,
    /// Unparsable or conflicting Content-Length (400, RFC 9112 §6.3).
    BadContentLength,
    /// A Transfer-Encoding request body (501: only Content-Length bodies are accepted).
    TransferEncoding,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::RequestLineTooLong => 414,
            HeadError::TooManyHeaders | HeadError::HeadTooLarge => 431,
            HeadError::Malformed | HeadError::BadContentLength => 400,
            HeadError::BadVersion => 505,
            HeadError::TransferEncoding => 501,
        }
    }
}

/// A parsed request head, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead<'b> {
    pub method: &'b str,
    pub path: &'b str,
    pub query: Option<&'b str>,
    /// Fields used: `headers[..header_count]` of the array given to [`parse_head`].
    pub header_count: usize,
    /// Bytes of the head including the empty line; the body starts here.
    pub head_len: usize,
    pub content_length: usize,
    /// After the response, keep the connection (HTTP/1.1 unless `close`; 1.0 only with
    /// `keep-alive`; RFC 9112 §9.3).
    pub keep_alive: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a request head from the start of `buf` (RFC 9112 §2-§6). `Ok(None)`: incomplete,
/// read more. Header fields go into `headers` (at least [`MAX_HEADERS`] long).
///
/// Accepts bare-LF line ends and up to one leading empty line (RFC 9112 §2.2); rejects
/// obs-fold, whitespace before the colon, control characters, an absolute-form target, and
/// every limit breach — as soon as the limit is passed, without waiting for the rest.
pub fn parse_head<'b>(
    buf: &'b [u8],
    headers: &mut [(&'b str, &'b str)],
) -> Result<Option<RequestHead<'b>>, HeadError> {
    let mut pos = 0;
    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    if buf.starts_with(b"\r\n") {
        pos = 2;
    } else if buf.starts_with(b"\n") {
        pos = 1;
    }
    let Some(line_end) = buf[pos..].iter().position(|&b| b == b'\n') else {
        return if buf.len() - pos > MAX_REQUEST_LINE_BYTES {
            Err(HeadError::RequestLineTooLong)
        } else {
            Ok(None)
        };
    };
    if line_end + 1 > MAX_REQUEST_LINE_BYTES {
        return Err(HeadError::RequestLineTooLong);
    }
    let request_line = trim_cr(&buf[pos..pos + line_end]);
    pos += line_end + 1;
    // Header lines, up to the empty line.
    let mut count = 0;
    let mut content_length: Option<usize> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let head_len = loop {
        let Some(end) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return if buf.len() > MAX_HEAD_BYTES {
                Err(HeadError::HeadTooLarge)
            } else {
                Ok(None)
            };
        };
        let line = trim_cr(&buf[pos..pos + end]);
        pos += end + 1;
        if pos > MAX_HEAD_BYTES {
            return Err(HeadError::HeadTooLarge);
        }
        if line.is_empty() {
            break pos;
        }
        if count == MAX_HEADERS || count == headers.len() {
            return Err(HeadError::TooManyHeaders);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::Malformed)?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // Also rejects obs-fold (a line starting with SP/HT) and "Name :" (RFC 9112 §5.1).
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::Malformed);
        }
        let value = trim_ows(value);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeadError::Malformed);
        }
        // Names are tchar (ASCII); values may hold obs-text, which must still be UTF-8 here.
        let name = std::str::from_utf8(name).map_err(|_| HeadError::Malformed)?;
        let value = std::str::from_utf8(value).map_err(|_| HeadError::Malformed)?;
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::BadContentLength);
            }
            let n: usize = value.parse().map_err(|_| HeadError::BadContentLength)?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HeadError::BadContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                connection_close |= token.eq_ignore_ascii_case("close");
                connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        headers[count] = (name, value);
        count += 1;
    };
    // Request line: method SP request-target SP HTTP-version (RFC 9112 §3).
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::Malformed);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.starts_with(b"HTTP/") => return Err(HeadError::BadVersion),
        _ => return Err(HeadError::Malformed),
    };
    // Origin-form only, visible ASCII only (raw NUL, spaces, UTF-8 bytes are refused), and
    // no fragment (never sent by clients).
    if !target.starts_with(b"/")
        || !target
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && b != b'#')
    {
        return Err(HeadError::Malformed);
    }
    // Both are ASCII, checked just above.
    let method = std::str::from_utf8(method).map_err(|_| HeadError::Malformed)?;
    let target = std::str::from_utf8(target).map_err(|_| HeadError::Malformed)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    Ok(Some(RequestHead {
        method,
        path,
        query,
        header_count: count,
        head_len,
        content_length: content_length.unwrap_or(0),
        keep_alive: if http11 {
            !connection_close
        } else {
            connection_keep_alive && !connection_close
        },
    }))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Whether a raw (still percent-encoded) path may reach a handler. Refused: `.` and `..`
/// segments, empty segments (`//`), backslashes, and percent-encodings of `.`, `/`, `\`,
/// `%` (double encoding), NUL and other control characters, or a malformed `%`. So no
/// decoding, once or twice, by any router can turn an accepted path into a traversal.
pub fn path_is_safe(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') || b.contains(&b'\\') {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) else {
                return false;
            };
            let (Some(h), Some(l)) = ((h as char).to_digit(16), (l as char).to_digit(16)) else {
                return false;
            };
            let c = (h * 16 + l) as u8;
            if c < 0x20 || c == 0x7f || matches!(c, b'.' | b'/' | b'\\' | b'%') {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    // Segments after the leading '/'; a single trailing '/' (directory index) is fine.
    let rest = &path[1..];
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.is_empty()
        || rest
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// The outcome of a `Range` header against a body of `len` bytes (RFC 9110 §14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// No usable single range: send everything (200).
    Full,
    /// Send `start..end` (end exclusive) as 206.
    Partial { start: usize, end: usize },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Evaluates one `Range` value. Multi-range and unknown units are ignored (Full), as §14.2
/// allows.
pub fn evaluate_range(value: &str, len: usize) -> RangeOutcome {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let num = |s: &str| -> Option<usize> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            // Absurdly long numbers saturate: a start beyond the body is unsatisfiable anyway.
            Some(s.parse().unwrap_or(usize::MAX))
        }
    };
    match (num(a.trim()), num(b.trim())) {
        (Some(first), last) => {
            if last.is_some_and(|l| l < first) {
                return RangeOutcome::Full; // invalid: ignore the header
            }
            if first >= len {
                return RangeOutcome::Unsatisfiable;
            }
            let end = last.map_or(len, |l| l.saturating_add(1).min(len));
            RangeOutcome::Partial { start: first, end }
        }
        (None, Some(suffix)) if b.trim() == b => {
            if suffix == 0 || len == 0 {
                return RangeOutcome::Unsatisfiable;
            }
            RangeOutcome::Partial {
                start: len.saturating_sub(suffix),
                end: len,
            }
        }
        _ => RangeOutcome::Full,
    }
}

/// The largest request body the handlers accept for `path`; a longer Content-Length is 413.
pub fn body_cap(handlers: &[Rc<dyn HttpHandler>], path: &str) -> usize {
    handlers
        .iter()
        .find_map(|h| h.max_body_bytes(path))
        .unwrap_or(DEFAULT_MAX_BODY_BYTES)
}

/// A routed request, ready to be framed by [`frame_response`].
pub struct Routed {
    pub response: HttpResponse,
    /// The request was `HEAD`: send the head only.
    pub is_head: bool,
    /// The `Range` value of a `GET` without `If-Range`, copied out of the read buffer.
    pub range: Option<String>,
}

/// Routes one complete request (`request` = head + body, as [`parse_head`] framed it), sans-IO:
/// `HEAD` reaches handlers as `GET`, an unsafe path reaches none, a path no handler takes is
/// 404. None when `request` does not start with a complete head. The server calls exactly
/// this for every request; so does the HTTP fuzz target.
pub fn route_request(
    handlers: &[Rc<dyn HttpHandler>],
    request: &[u8],
    peer: SocketAddr,
) -> Option<Routed> {
    let mut fields = [("", ""); MAX_HEADERS];
    let h = parse_head(request, &mut fields).ok()??;
    let headers = fields.get(..h.header_count).unwrap_or_default();
    let is_head = h.method == "HEAD";
    let range = if h.method == "GET" {
        header(headers, "range").filter(|_| header(headers, "if-range").is_none())
    } else {
        None
    };
    let req = HttpRequest {
        method: if is_head { "GET" } else { h.method },
        path: h.path,
        query: h.query,
        headers,
        body: request.get(h.head_len..).unwrap_or_default(),
        peer,
    };
    let response = if path_is_safe(req.path) {
        handlers.iter().find_map(|r| r.handle(&req))
    } else {
        None
    };
    Some(Routed {
        response: response.unwrap_or_else(|| HttpResponse::text(404, "not found\n")),
        is_head,
        range: range.map(str::to_string),
    })
}

/// Applies `range` to `resp` (206 / 416 / the full 200, RFC 9110 §14) and writes the response
/// head into `out` (cleared first). Returns the body span to send and whether the connection
/// stays open. A header value holding CR or LF (response splitting) is dropped and logged: no
/// handler should put one there, and this way no input can.
pub fn frame_response(
    resp: &mut HttpResponse,
    range: Option<&str>,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> ((usize, usize), bool) {
    let len = match &resp.body {
        HttpBody::Empty => Some(0),
        HttpBody::Bytes(b) => Some(b.len()),
        HttpBody::Static(b) => Some(b.len()),
        HttpBody::Reader { len, .. } => Some(*len),
        HttpBody::Events(_) | HttpBody::Upgrade(_) => None,
    };
    let mut span = (0, len.unwrap_or(0));
    let ranged_body = matches!(
        resp.body,
        HttpBody::Bytes(_) | HttpBody::Static(_) | HttpBody::Reader { .. }
    );
    if let (Some(len), true, 200) = (len, ranged_body, resp.status) {
        resp.headers.push(("Accept-Ranges", "bytes".into()));
        match range.map(|r| evaluate_range(r, len)) {
            // evaluate_range: start < end <= len.
            Some(RangeOutcome::Partial { start, end }) if start < end && end <= len => {
                resp.status = 206;
                resp.headers
                    .push(("Content-Range", format!("bytes {start}-{}/{len}", end - 1)));
                span = (start, end);
            }
            Some(RangeOutcome::Unsatisfiable) => {
                resp.status = 416;
                resp.headers
                    .push(("Content-Range", format!("bytes */{len}")));
                resp.body = HttpBody::Empty;
                span = (0, 0);
            }
            _ => {}
        }
    }
    let events = matches!(resp.body, HttpBody::Events(_));
    let upgrade = matches!(resp.body, HttpBody::Upgrade(_)) && resp.status == 101;
    let keep_alive = keep_alive && !events && !upgrade;
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: rillcast\r\n",
        resp.status,
        reason(resp.status)
    );
    for (k, v) in &resp.headers {
        if v.bytes().any(|b| b == b'\r' || b == b'\n') {
            log::warn!("HTTP: dropped response header {k} holding CR/LF");
            continue;
        }
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if !events && !upgrade {
        let _ = write!(out, "Content-Length: {}\r\n", span.1.saturating_sub(span.0));
    }
    out.extend_from_slice(if upgrade {
        b"Connection: Upgrade\r\n\r\n"
    } else if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    (span, keep_alive)
}

/// The standard reason phrase of the statuses rillcast sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// Limits of the server (from `[http]` and the memory plan).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request head (and its body) must arrive within this much time of its first byte.
    pub request_timeout_ms: u64,
    /// An idle keep-alive connection (and a new one that sends nothing) is closed after this.
    pub keepalive_timeout_ms: u64,
    /// A client that accepts no response bytes for this long is disconnected.
    pub send_timeout_ms: u64,
    /// Open connections from one client address (IPv6: one /64, see
    /// [`crate::proto::rtsp::throttle::peer_key`]); more are answered 503 and closed.
    pub max_connections_per_address: usize,
}

/// Server-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    pub connections: u64,
    pub connections_refused: u64,
    pub requests: u64,
    pub bad_requests: u64,
    pub timeouts: u64,
    pub open_now: u64,
    /// Refused because their address had `max_connections_per_address` open (also counted
    /// in `connections_refused`).
    pub refused_per_address: u64,
}

/// The server: the handlers, the limits, one shared send buffer.
pub struct HttpServer {
    limits: HttpLimits,
    handlers: Vec<Rc<dyn HttpHandler>>,
    scratch: RefCell<Box<[u8]>>,
    stats: Cell<HttpStats>,
    refusing: Cell<usize>,
    /// Open connections per client address.
    per_address: RefCell<HashMap<IpAddr, usize>>,
}

enum ConnEnd {
    /// Keep the connection for the next request.
    KeepAlive,
    Close,
    /// A 101 was sent: the connection belongs to this protocol now.
    Upgrade(Box<dyn Upgrade>),
}

impl HttpServer {
    pub fn new(limits: HttpLimits, handlers: Vec<Rc<dyn HttpHandler>>) -> Rc<Self> {
        Rc::new(HttpServer {
            limits,
            handlers,
            scratch: RefCell::new(vec![0u8; SEND_CHUNK_BYTES].into_boxed_slice()),
            stats: Cell::new(HttpStats::default()),
            refusing: Cell::new(0),
            per_address: RefCell::new(HashMap::new()),
        })
    }

    pub fn stats(&self) -> HttpStats {
        self.stats.get()
    }

    fn bump(&self, f: impl FnOnce(&mut HttpStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Accepts connections forever.
    pub async fn serve(self: Rc<Self>, listener: Async<TcpListener>) {
        log::info!(
            "HTTP listening on {} (up to {} connections)",
            listener
                .get_ref()
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            self.limits.max_connections
        );
        let mut accepted = 0usize;
        loop {
            // A connect storm keeps accept() ready: let the other tasks run now and then.
            accepted = accepted.wrapping_add(1);
            if accepted.is_multiple_of(ACCEPT_BUDGET) {
                smol::future::yield_now().await;
            }
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("HTTP accept failed: {e}");
                    smol::Timer::after(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.get_ref().set_nodelay(true);
            let key = peer_key(peer.ip());
            let from_peer = self.per_address.borrow().get(&key).copied().unwrap_or(0);
            let per_address_full = from_peer >= self.limits.max_connections_per_address;
            if per_address_full || self.stats.get().open_now as usize >= self.limits.max_connections
            {
                self.bump(|s| {
                    s.connections_refused += 1;
                    s.refused_per_address += u64::from(per_address_full);
                });
                self.refuse(stream);
                continue;
            }
            self.bump(|s| {
                s.connections += 1;
                s.open_now += 1;
            });
            *self.per_address.borrow_mut().entry(key).or_insert(0) += 1;
            let server = self.clone();
            crate::net::spawn(async move {
                server.connection(stream, peer).await;
                server.bump(|s| s.open_now -= 1);
                let mut per_address = server.per_address.borrow_mut();
                if let Some(n) = per_address.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        per_address.remove(&key);
                    }
                }
            })
            .detach();
        }
    }

    /// Over the connection cap: 503, then close after draining what the client sent (so the
    /// close doesn't turn into a reset that destroys the answer). Bounded: at most
    /// [`MAX_REFUSING`] at once, for at most a second each.
    fn refuse(self: &Rc<Self>, stream: Async<TcpStream>) {
        const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: rillcast\r\n\
            Content-Type: text/plain\r\nContent-Length: 13\r\nRetry-After: 1\r\n\
            Connection: close\r\n\r\ntoo many now\n";
        // A fresh socket's send buffer is empty: this non-blocking write completes.
        let _ = stream.get_ref().write(BUSY);
        let _ = stream.get_ref().shutdown(Shutdown::Write);
        if self.refusing.get() >= MAX_REFUSING {
            return;
        }
        self.refusing.set(self.refusing.get() + 1);
        let server = self.clone();
        crate::net::spawn(async move {
            let mut sink = [0u8; 1024];
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut drained = 0;
            while drained < MAX_HEAD_BYTES {
                match read_until(&stream, &mut sink, deadline).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
            server.refusing.set(server.refusing.get() - 1);
        })
        .detach();
    }

    async fn connection(&self, stream: Async<TcpStream>, peer: SocketAddr) {
        // Shared only with an upgraded protocol (whose writers may run on another thread).
        let stream = Arc::new(stream);
        // Grows up to the head cap (plus a body, while one is being read).
        let mut buf: Vec<u8> = Vec::with_capacity(2048);
        let mut out: Vec<u8> = Vec::with_capacity(512);
        let mut first = true;
        loop {
            match self
                .one_request(&stream, peer, &mut buf, &mut out, first)
                .await
            {
                Ok(ConnEnd::KeepAlive) => first = false,
                Ok(ConnEnd::Close) => break,
                Ok(ConnEnd::Upgrade(u)) => {
                    drop((buf, out));
                    u.run(stream.clone(), peer).await;
                    break;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::TimedOut {
                        self.bump(|s| s.timeouts += 1);
                    }
                    log::debug!("HTTP {peer}: {e}");
                    break;
                }
            }
        }
        let _ = stream.get_ref().shutdown(Shutdown::Both);
    }

    /// Reads one request, answers it. Errors end the connection.
    async fn one_request(
        &self,
        stream: &Async<TcpStream>,
        peer: SocketAddr,
        buf: &mut Vec<u8>,
        out: &mut Vec<u8>,
        first: bool,
    ) -> io::Result<ConnEnd> {
        let lim = self.limits;
        let idle_ms = if first {
            lim.request_timeout_ms.min(lim.keepalive_timeout_ms)
        } else {
            lim.keepalive_timeout_ms
        };
        // Phase 1: a complete head, within the idle time for its first byte and the request
        // timeout from there.
        let mut head_deadline = (!buf.is_empty())
            .then(|| Instant::now() + Duration::from_millis(lim.request_timeout_ms));
        let idle_deadline = Instant::now() + Duration::from_millis(idle_ms);
        let (head_len, body_len, keep_alive) = loop {
            let mut fields = [("", ""); MAX_HEADERS];
            match parse_head(buf, &mut fields) {
                Ok(Some(h)) => {
                    let cap = self.body_cap(h.path);
                    if h.content_length > cap {
                        self.bump(|s| s.bad_requests += 1);
                        self.write_error(stream, out, 413).await?;
                        return Ok(ConnEnd::Close);
                    }
                    break (h.head_len, h.content_length, h.keep_alive);
                }
                Ok(None) => {}
                Err(e) => {
                    self.bump(|s| s.bad_requests += 1);
                    self.write_error(stream, out, e.status()).await?;
                    return Ok(ConnEnd::Close);
                }
            }
            let deadline = *head_deadline.get_or_insert(idle_deadline);
            let n = read_more(stream, buf, MAX_HEAD_BYTES + 1, deadline).await?;
            if n == 0 {
                return Ok(ConnEnd::Close);
            }
            if head_deadline == Some(idle_deadline) {
                // The first byte of this request arrived: the head has this long.
                head_deadline =
                    Some(Instant::now() + Duration::from_millis(lim.request_timeout_ms));
            }
        };
        // Phase 2: the body, within the same request timeout.
        let total = head_len + body_len;
        let deadline = head_deadline.unwrap_or(idle_deadline);
        while buf.len() < total {
            if read_more(stream, buf, total, deadline).await? == 0 {
                return Ok(ConnEnd::Close);
            }
        }
        // Phase 3: route. The head is parsed again (cheap) to borrow it for the handler.
        self.bump(|s| s.requests += 1);
        let Some(routed) = buf
            .get(..total)
            .and_then(|request| route_request(&self.handlers, request, peer))
        else {
            // Parsed above from the same bytes.
            return Ok(ConnEnd::Close);
        };
        buf.drain(..total);
        self.respond(stream, out, routed, keep_alive).await
    }

    fn body_cap(&self, path: &str) -> usize {
        body_cap(&self.handlers, path)
    }

    async fn write_error(
        &self,
        stream: &Async<TcpStream>,
        out: &mut Vec<u8>,
        status: u16,
    ) -> io::Result<()> {
        out.clear();
        let _ = write!(
            out,
            "HTTP/1.1 {status} {}\r\nServer: rillcast\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            reason(status)
        );
        self.write_all(stream, out).await
    }

    async fn respond(
        &self,
        stream: &Async<TcpStream>,
        out: &mut Vec<u8>,
        routed: Routed,
        keep_alive: bool,
    ) -> io::Result<ConnEnd> {
        let Routed {
            response: mut resp,
            is_head,
            range,
        } = routed;
        let upgrade = matches!(resp.body, HttpBody::Upgrade(_)) && resp.status == 101;
        let (span, keep_alive) = frame_response(&mut resp, range.as_deref(), keep_alive, out);
        let body: &[u8] = match &resp.body {
            HttpBody::Bytes(b) => b.get(span.0..span.1).unwrap_or_default(),
            HttpBody::Static(b) => b.get(span.0..span.1).unwrap_or_default(),
            _ => &[],
        };
        if is_head {
            self.write_all(stream, out).await?;
        } else if body.len() <= 4096 {
            // One write for head and small bodies (playlists).
            out.extend_from_slice(body);
            self.write_all(stream, out).await?;
        } else {
            self.write_all(stream, out).await?;
            self.write_all(stream, body).await?;
        }
        if !is_head {
            match resp.body {
                HttpBody::Reader { reader, .. } => {
                    self.send_reader(stream, &*reader, span.0, span.1).await?;
                }
                HttpBody::Events(mut source) => {
                    self.send_events(stream, &mut *source, out).await?;
                    return Ok(ConnEnd::Close);
                }
                HttpBody::Upgrade(u) if upgrade => return Ok(ConnEnd::Upgrade(u)),
                _ => {}
            }
        }
        Ok(if keep_alive {
            ConnEnd::KeepAlive
        } else {
            ConnEnd::Close
        })
    }

    /// Writes `data` or fails after `send_timeout_ms` without progress.
    async fn write_all(&self, stream: &Async<TcpStream>, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let deadline = Instant::now() + Duration::from_millis(self.limits.send_timeout_ms);
            let n = stream
                .write_with(|mut s| s.write(data))
                .or(timeout(deadline))
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Copies `reader[start..end]` to the socket through the shared scratch buffer. The
    /// scratch and the reader are borrowed only inside the (synchronous) write attempt.
    async fn send_reader(
        &self,
        stream: &Async<TcpStream>,
        reader: &dyn BodyReader,
        start: usize,
        end: usize,
    ) -> io::Result<()> {
        let mut off = start;
        while off < end {
            let deadline = Instant::now() + Duration::from_millis(self.limits.send_timeout_ms);
            let n = stream
                .write_with(|mut s| {
                    let mut scratch = self.scratch.borrow_mut();
                    let want = (end - off).min(scratch.len());
                    let got = reader
                        .read_at(off, &mut scratch[..want])
                        .filter(|&g| g > 0)
                        .ok_or_else(|| io::Error::other("body gone while sending"))?;
                    s.write(scratch.get(..got.min(want)).unwrap_or_default())
                })
                .or(timeout(deadline))
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            off += n;
        }
        Ok(())
    }

    async fn send_events(
        &self,
        stream: &Async<TcpStream>,
        source: &mut dyn EventSource,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut idle_ms = 0u64;
        loop {
            out.clear();
            match source.poll_event(out) {
                EventPoll::Ready => {
                    self.write_all(stream, out).await?;
                    idle_ms = 0;
                }
                EventPoll::Idle => {
                    smol::Timer::after(Duration::from_millis(EVENT_POLL_MS)).await;
                    idle_ms += EVENT_POLL_MS;
                    if idle_ms >= 15_000 {
                        // A comment line keeps proxies from timing the stream out.
                        self.write_all(stream, b": keep-alive\n\n").await?;
                        idle_ms = 0;
                    }
                }
                EventPoll::End => return Ok(()),
            }
        }
    }
}

async fn timeout<T>(deadline: Instant) -> io::Result<T> {
    smol::Timer::at(deadline).await;
    Err(io::ErrorKind::TimedOut.into())
}

async fn read_until(
    stream: &Async<TcpStream>,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    let mut s = stream;
    s.read(buf).or(timeout(deadline)).await
}

/// Reads more bytes into `buf` (growing it up to `cap`), by `deadline`.
async fn read_more(
    stream: &Async<TcpStream>,
    buf: &mut Vec<u8>,
    cap: usize,
    deadline: Instant,
) -> io::Result<usize> {
    let old = buf.len();
    let room = cap.saturating_sub(old).clamp(1, 4096);
    buf.resize(old + room, 0);
    let r = read_until(stream, &mut buf[old..], deadline).await;
    buf.truncate(old + *r.as_ref().unwrap_or(&0));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, path, query, headers, head_len, content_length, keep_alive)
    type Parsed = (
        String,
        String,
        Option<String>,
        Vec<(String, String)>,
        usize,
        usize,
        bool,
    );

    fn parse(s: &[u8]) -> Result<Option<Parsed>, HeadError> {
        let mut f = [("", ""); MAX_HEADERS];
        parse_head(s, &mut f).map(|o| {
            o.map(|h| {
                (
                    h.method.to_string(),
                    h.path.to_string(),
                    h.query.map(str::to_string),
                    f[..h.header_count]
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                    h.head_len,
                    h.content_length,
                    h.keep_alive,
                )
            })
        })
    }

    #[test]
    fn parses_a_browser_request_and_its_framing() {
        // As Chromium sends it for an hls.js segment fetch (trimmed).
        let req = b"GET /live/seg12.ts?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
                    Connection: keep-alive\r\nRange:  bytes=0-  \r\nOrigin: http://a\r\n\r\nNEXT";
        let (m, p, q, h, len, cl, ka) = parse(req).unwrap().unwrap();
        assert_eq!(
            (m.as_str(), p.as_str(), q.as_deref()),
            ("GET", "/live/seg12.ts", Some("x=1"))
        );
        assert_eq!(h[2], ("Range".to_string(), "bytes=0-".to_string()));
        assert_eq!(h.len(), 4);
        assert_eq!((len, cl, ka), (req.len() - 4, 0, true));
        // Every prefix is "incomplete", never an error.
        for n in 0..req.len() - 4 {
            assert_eq!(parse(&req[..n]), Ok(None), "prefix {n}");
        }
        // HTTP/1.0 closes unless asked; 1.1 keeps unless asked; bare LF works; body length.
        let r = parse(b"POST /api HTTP/1.0\nContent-Length: 5\n\nhello")
            .unwrap()
            .unwrap();
        assert_eq!((r.4, r.5, r.6), (38, 5, false));
        let r = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.6);
        let r = parse(b"\r\nGET / HTTP/1.1\r\nConnection: x, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.6);
    }

    #[test]
    fn refuses_bad_heads_with_the_right_status() {
        let cases: &[(&[u8], HeadError)] = &[
            (b"GET /a HTTP/2.0\r\n\r\n", HeadError::BadVersion),
            (b"GET /a\r\n\r\n", HeadError::Malformed),
            (b"GET  /a HTTP/1.1\r\n\r\n", HeadError::Malformed),
            (b"GET http://x/a HTTP/1.1\r\n\r\n", HeadError::Malformed),
            (b"GET /a\x00b HTTP/1.1\r\n\r\n", HeadError::Malformed),
            (b"GET /a#f HTTP/1.1\r\n\r\n", HeadError::Malformed),
            (b"G@T /a HTTP/1.1\r\n\r\n", HeadError::Malformed),
            (b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", HeadError::Malformed),
            (
                b"GET /a HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
                HeadError::Malformed,
            ),
            (b"GET /a HTTP/1.1\r\nNoColon\r\n\r\n", HeadError::Malformed),
            (
                b"GET /a HTTP/1.1\r\nA: b\x01c\r\n\r\n",
                HeadError::Malformed,
            ),
            (
                b"POST /a HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
                HeadError::BadContentLength,
            ),
            (
                b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                HeadError::BadContentLength,
            ),
            (
                b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HeadError::BadContentLength,
            ),
            (
                b"POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                HeadError::BadContentLength,
            ),
            (
                b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
        ];
        for (req, want) in cases {
            assert_eq!(parse(req), Err(*want), "{}", String::from_utf8_lossy(req));
        }
        assert_eq!(HeadError::TooManyHeaders.status(), 431);
        assert_eq!(HeadError::RequestLineTooLong.status(), 414);
    }

    #[test]
    fn limits_fail_as_soon_as_they_are_passed() {
        // A request line longer than 8 KiB, before its end arrives.
        let mut long = b"GET /".to_vec();
        long.resize(MAX_REQUEST_LINE_BYTES + 1, b'a');
        assert_eq!(parse(&long), Err(HeadError::RequestLineTooLong));
        long.truncate(MAX_REQUEST_LINE_BYTES - 1);
        assert_eq!(parse(&long), Ok(None));
        // Exactly 64 fields pass; 65 fail.
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            h.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        let mut ok = h.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(parse(&ok).unwrap().is_some());
        h.extend_from_slice(b"X-last: v\r\n\r\n");
        assert_eq!(parse(&h), Err(HeadError::TooManyHeaders));
        // A 1 MiB header line fails at 16 KiB, without its end.
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 1, b'a');
        assert_eq!(parse(&big), Err(HeadError::HeadTooLarge));
        // Many small lines adding up past 16 KiB.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..40 {
            many.extend_from_slice(b"X: ");
            many.extend_from_slice(&[b'b'; 500]);
            many.extend_from_slice(b"\r\n");
        }
        assert_eq!(parse(&many), Err(HeadError::HeadTooLarge));
    }

    #[test]
    fn parser_never_panics_on_noise() {
        // xorshift noise and mutations of a valid head, at every length.
        let base = b"GET /live/index.m3u8 HTTP/1.1\r\nHost: a\r\nRange: bytes=1-2\r\n\r\n";
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20_000 {
            let mut v = base.to_vec();
            for _ in 0..(round % 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % v.len();
                v[i] = (x >> 32) as u8;
            }
            let n = (x >> 40) as usize % (v.len() + 1);
            let _ = parse(&v[..n]);
        }
    }

    #[test]
    fn traversal_in_every_encoding_is_unsafe() {
        for bad in [
            "/../etc/passwd",
            "/live/../../etc/passwd",
            "/live/..",
            "/./live/index.m3u8",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/x",
            "/live%2f..%2fx",
            "/live%2F..%2Fx",
            "/%252e%252e/etc/passwd",
            "/%25252e/x",
            "/live\\..\\x",
            "/live%5c..%5cx",
            "/live/seg1.ts%00.m3u8",
            "/live/%0a",
            "//etc/passwd",
            "/live//seg1.ts",
            "/a%2",
            "/a%zz",
            "relative",
            "",
        ] {
            assert!(!path_is_safe(bad), "{bad}");
        }
        for good in [
            "/",
            "/live/index.m3u8",
            "/master.m3u8",
            "/api/streams/",
            "/a%20b",
            "/x.y/z..w",
        ] {
            assert!(path_is_safe(good), "{good}");
        }
    }

    #[test]
    fn ranges() {
        use RangeOutcome::*;
        let len = 1000;
        assert_eq!(
            evaluate_range("bytes=0-99", len),
            Partial { start: 0, end: 100 }
        );
        assert_eq!(
            evaluate_range("bytes=900-", len),
            Partial {
                start: 900,
                end: 1000
            }
        );
        assert_eq!(
            evaluate_range("bytes=900-5000", len),
            Partial {
                start: 900,
                end: 1000
            }
        );
        assert_eq!(
            evaluate_range("bytes=-100", len),
            Partial {
                start: 900,
                end: 1000
            }
        );
        assert_eq!(
            evaluate_range("bytes=-5000", len),
            Partial {
                start: 0,
                end: 1000
            }
        );
        assert_eq!(evaluate_range("bytes=1000-", len), Unsatisfiable);
        assert_eq!(
            evaluate_range("bytes=99999999999999999999999-", len),
            Unsatisfiable
        );
        assert_eq!(evaluate_range("bytes=-0", len), Unsatisfiable);
        assert_eq!(evaluate_range("bytes=5-1", len), Full);
        assert_eq!(evaluate_range("bytes=0-1,5-6", len), Full);
        assert_eq!(evaluate_range("items=0-1", len), Full);
        assert_eq!(evaluate_range("bytes=a-b", len), Full);
        assert_eq!(evaluate_range("bytes=-", len), Full);
    }
}
