//! RTSP/1.0 request framing and parsing (RFC 2326 §6, §10.12) and the response writer (§7).
//!
//! Owns: turning bytes from one TCP connection into borrowed [`Request`]s or interleaved binary
//! frames, with hard limits on every size, and serialising responses. Must not: touch sockets,
//! read the clock, allocate while parsing, or panic on any input.
//!
//! [`parse`] is stateless: on [`Parsed::Incomplete`] the shell reads more and calls it again on
//! the whole buffer. The cost of that re-scan is bounded by [`MAX_HEAD_BYTES`] (+ body) since a
//! longer head is rejected, and a complete head is only parsed once its blank line is present.

use std::io::Write as _;

/// Largest request head (request line + headers + blank line) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest single line (request line or header line) accepted, in bytes, excluding CRLF.
pub const MAX_LINE_BYTES: usize = 4 * 1024;
/// Most header lines one request may carry.
pub const MAX_HEADERS: usize = 32;
/// Largest request body (Content-Length) accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Largest interleaved frame a client may send us (RTCP receiver reports are ~100 bytes).
pub const MAX_INTERLEAVED_BYTES: usize = 8 * 1024;

/// Why a request could not be framed. After any of these the stream position is lost: the
/// shell answers with [`write_error_response`] and closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// [`MAX_HEAD_BYTES`] passed without the blank line ending the head.
    TooLarge,
    /// A line longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// More than [`MAX_HEADERS`] header lines.
    TooManyHeaders,
    /// Request line is not `Method SP Request-URI SP RTSP-Version` (§6.1).
    BadRequestLine,
    /// `RTSP/x.y` other than `RTSP/1.0` (§3.1).
    UnsupportedVersion,
    /// Header line without `:`, with a bad name, folded (§4.2 LWS continuation), not UTF-8, or
    /// with a control byte (other than HTAB) in its value.
    BadHeader,
    /// Content-Length not a decimal number, or given twice with different values (§12.14).
    BadContentLength,
    /// Content-Length above [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// Interleaved frame (§10.12) longer than [`MAX_INTERLEAVED_BYTES`].
    InterleavedTooLarge,
}

impl RequestError {
    /// The RTSP status to answer with (RFC 2326 §7.1.1).
    pub fn status(self) -> u16 {
        match self {
            RequestError::TooLarge | RequestError::BodyTooLarge => 413,
            RequestError::LineTooLong => 414,
            RequestError::UnsupportedVersion => 505,
            RequestError::TooManyHeaders
            | RequestError::BadRequestLine
            | RequestError::BadHeader
            | RequestError::BadContentLength
            | RequestError::InterleavedTooLarge => 400,
        }
    }
}

/// One header line, name and value trimmed of surrounding whitespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// A parsed request borrowing the caller's buffer (RFC 2326 §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Request-URI as sent: absolute `rtsp://…`, a path, or `*`.
    pub uri: &'a str,
    /// Always `RTSP/1.0` when produced by [`parse`].
    pub version: &'a str,
    pub headers: heapless::Vec<Header<'a>, MAX_HEADERS>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// First header with this name, compared ASCII-case-insensitively (RFC 2326 §4.2).
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The CSeq header value (§12.17), if present.
    pub fn cseq(&self) -> Option<&'a str> {
        self.header("CSeq")
    }
}

/// What [`parse`] found at the start of the buffer.
// ~1.1 KiB on the stack (32 borrowed headers); boxing it would allocate once per request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Need more bytes; call again with the same buffer extended.
    Incomplete,
    /// A full request; drop `consumed` bytes from the buffer after handling it.
    Request { req: Request<'a>, consumed: usize },
    /// An interleaved binary frame (`$`, channel, u16 length; RFC 2326 §10.12).
    Interleaved {
        channel: u8,
        payload: &'a [u8],
        consumed: usize,
    },
}

/// Frames one request or interleaved frame at the start of `buf` (RFC 2326 §6, §10.12).
///
/// Leading empty lines are skipped (and counted in `consumed`). Never reads more than
/// [`MAX_HEAD_BYTES`] looking for the end of a head, never panics.
pub fn parse(buf: &[u8]) -> Result<Parsed<'_>, RequestError> {
    if buf.first() == Some(&b'$') {
        return parse_interleaved(buf);
    }
    let skip = buf
        .iter()
        .take(MAX_HEAD_BYTES)
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let Some(head_len) = find_head_end(buf, skip)? else {
        return Ok(Parsed::Incomplete);
    };
    // find_head_end returned an offset within buf.
    let head = &buf[skip..head_len];
    let mut lines = Lines { rest: head };
    let request_line = lines.next().ok_or(RequestError::BadRequestLine)?;
    let (method, uri, version) = parse_request_line(request_line)?;

    let mut headers = heapless::Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let header = parse_header(line)?;
        headers
            .push(header)
            .map_err(|_| RequestError::TooManyHeaders)?;
    }

    let mut content_len: Option<usize> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Content-Length"))
    {
        let len = parse_content_length(h.value)?;
        if content_len.is_some_and(|prev| prev != len) {
            return Err(RequestError::BadContentLength);
        }
        content_len = Some(len);
    }
    let body_len = content_len.unwrap_or(0);
    let total = head_len + body_len;
    if buf.len() < total {
        return Ok(Parsed::Incomplete);
    }
    Ok(Parsed::Request {
        req: Request {
            method,
            uri,
            version,
            headers,
            // head_len + body_len <= buf.len(), checked just above.
            body: &buf[head_len..total],
        },
        consumed: total,
    })
}

fn parse_interleaved(buf: &[u8]) -> Result<Parsed<'_>, RequestError> {
    let [_, channel, hi, lo, ..] = *buf else {
        return Ok(Parsed::Incomplete);
    };
    let len = u16::from_be_bytes([hi, lo]) as usize;
    if len > MAX_INTERLEAVED_BYTES {
        return Err(RequestError::InterleavedTooLarge);
    }
    match buf.get(4..4 + len) {
        Some(payload) => Ok(Parsed::Interleaved {
            channel,
            payload,
            consumed: 4 + len,
        }),
        None => Ok(Parsed::Incomplete),
    }
}

/// Offset just past the blank line ending the head that starts at `start`, or None if not yet
/// there. Enforces the head and line limits on whatever has arrived so far.
fn find_head_end(buf: &[u8], start: usize) -> Result<Option<usize>, RequestError> {
    let mut line_start = start;
    let limit = buf.len().min(MAX_HEAD_BYTES);
    let mut i = start;
    while i < limit {
        // i < limit <= buf.len().
        if buf[i] == b'\n' {
            let mut line = &buf[line_start..i];
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.len() > MAX_LINE_BYTES {
                return Err(RequestError::LineTooLong);
            }
            if line.is_empty() {
                return Ok(Some(i + 1));
            }
            line_start = i + 1;
        }
        i += 1;
    }
    if limit - line_start > MAX_LINE_BYTES + 1 {
        return Err(RequestError::LineTooLong);
    }
    if buf.len() >= MAX_HEAD_BYTES {
        return Err(RequestError::TooLarge);
    }
    Ok(None)
}

/// Splits a complete head into lines without their CRLF / LF.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(self.rest.len());
        let mut line = &self.rest[..end];
        self.rest = self.rest.get(end + 1..).unwrap_or(&[]);
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        Some(line)
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(&str, &str, &str), RequestError> {
    let line = std::str::from_utf8(line).map_err(|_| RequestError::BadRequestLine)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::BadRequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(RequestError::BadRequestLine);
    }
    if uri.is_empty() || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RequestError::BadRequestLine);
    }
    let Some(digits) = version.strip_prefix("RTSP/") else {
        return Err(RequestError::BadRequestLine);
    };
    let mut nums = digits.split('.');
    let ok_num =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    if !(ok_num(nums.next()) && ok_num(nums.next()) && nums.next().is_none()) {
        return Err(RequestError::BadRequestLine);
    }
    if version != "RTSP/1.0" {
        return Err(RequestError::UnsupportedVersion);
    }
    Ok((method, uri, version))
}

fn parse_header(line: &[u8]) -> Result<Header<'_>, RequestError> {
    let line = std::str::from_utf8(line).map_err(|_| RequestError::BadHeader)?;
    let (name, value) = line.split_once(':').ok_or(RequestError::BadHeader)?;
    // A leading space/tab would be an obsolete folded continuation line (§4.2 / RFC 2616 §2.2);
    // no client we know sends them, and unfolding would need a copy.
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(RequestError::BadHeader);
    }
    // §15.1 TEXT excludes CTLs: a bare CR (or NUL, …) inside a value could otherwise travel
    // into a reply that echoes it and split it into headers of the client's choosing.
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(RequestError::BadHeader);
    }
    Ok(Header {
        name,
        value: value.trim_matches(|c| c == ' ' || c == '\t'),
    })
}

fn parse_content_length(value: &str) -> Result<usize, RequestError> {
    if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RequestError::BadContentLength);
    }
    let len: usize = value.parse().map_err(|_| RequestError::BadContentLength)?;
    if len > MAX_BODY_BYTES {
        return Err(RequestError::BodyTooLarge);
    }
    Ok(len)
}

/// Reason phrase for a status code (RFC 2326 §7.1.1).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        451 => "Parameter Not Understood",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version not supported",
        551 => "Option not supported",
        _ => "Unknown",
    }
}

/// Appends one complete response to `out` (RFC 2326 §7): status line, `CSeq` (when known),
/// `Server: rillcast`, `headers` in order, `Content-Length` when `body` is not empty, blank
/// line, body. There is no clock here: a shell that wants `Date` passes it in `headers`.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    cseq: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "RTSP/1.0 {} {}\r\n", status, reason_phrase(status));
    if let Some(cseq) = cseq {
        let _ = write!(out, "CSeq: {cseq}\r\n");
    }
    out.extend_from_slice(b"Server: rillcast\r\n");
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Answers a framing error: the status from [`RequestError::status`], echoing the CSeq if one
/// can be found in the first [`MAX_HEAD_BYTES`] of `buf` so the client can match the reply.
pub fn write_error_response(out: &mut Vec<u8>, err: RequestError, buf: &[u8]) {
    let cseq = find_cseq(buf.get(..MAX_HEAD_BYTES).unwrap_or(buf));
    write_response(out, err.status(), cseq, &[], &[]);
}

fn find_cseq(head: &[u8]) -> Option<&str> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let (name, value) = line.split_once(':')?;
        if !name.eq_ignore_ascii_case("CSeq") {
            return None;
        }
        let value = value.trim();
        (!value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
            .then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG_DESCRIBE: &[u8] =
        include_bytes!("../../../tests/fixtures/rtsp/ffmpeg_describe.txt");
    const GST_SETUP_UDP: &[u8] =
        include_bytes!("../../../tests/fixtures/rtsp/gstreamer_setup_udp.txt");
    const FIXTURES: [&[u8]; 6] = [
        FFMPEG_DESCRIBE,
        GST_SETUP_UDP,
        include_bytes!("../../../tests/fixtures/rtsp/ffmpeg_setup_tcp.txt"),
        include_bytes!("../../../tests/fixtures/rtsp/ffmpeg_digest_qop_describe.txt"),
        include_bytes!("../../../tests/fixtures/rtsp/gstreamer_play_udp.txt"),
        include_bytes!("../../../tests/fixtures/rtsp/ffmpeg_teardown_tcp.txt"),
    ];

    fn request(buf: &[u8]) -> (Request<'_>, usize) {
        match parse(buf) {
            Ok(Parsed::Request { req, consumed }) => (req, consumed),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn ffmpeg_describe_fixture() {
        let (req, consumed) = request(FFMPEG_DESCRIBE);
        assert_eq!(consumed, FFMPEG_DESCRIBE.len());
        assert_eq!(req.method, "DESCRIBE");
        assert_eq!(req.uri, "rtsp://127.0.0.1:18554/live");
        assert_eq!(req.version, "RTSP/1.0");
        assert_eq!(req.headers.len(), 3);
        assert_eq!(req.header("accept"), Some("application/sdp"));
        assert_eq!(req.header("USER-AGENT"), Some("Lavf59.27.100"));
        assert_eq!(req.cseq(), Some("2"));
        assert_eq!(req.header("Session"), None);
        assert!(req.body.is_empty());
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        for fx in FIXTURES {
            for n in 0..fx.len() {
                assert_eq!(parse(&fx[..n]), Ok(Parsed::Incomplete), "prefix {n}");
            }
        }
    }

    #[test]
    fn pipelined_requests_and_interleaved_frames() {
        let mut buf = b"\r\n".to_vec(); // a stray CRLF between requests is skipped
        buf.extend_from_slice(GST_SETUP_UDP);
        buf.extend_from_slice(b"$\x01\x00\x03abc");
        buf.extend_from_slice(FFMPEG_DESCRIBE);
        let (req, consumed) = request(&buf);
        assert_eq!(req.method, "SETUP");
        assert_eq!(
            req.header("transport"),
            Some("RTP/AVP;unicast;client_port=51992-51993")
        );
        assert_eq!(consumed, 2 + GST_SETUP_UDP.len());
        let rest = &buf[consumed..];
        assert_eq!(
            parse(rest),
            Ok(Parsed::Interleaved {
                channel: 1,
                payload: b"abc",
                consumed: 7
            })
        );
        assert_eq!(parse(&rest[..6]), Ok(Parsed::Incomplete));
        assert_eq!(parse(&rest[..3]), Ok(Parsed::Incomplete));
        let (req, consumed) = request(&rest[7..]);
        assert_eq!((req.method, consumed), ("DESCRIBE", FFMPEG_DESCRIBE.len()));
    }

    #[test]
    fn body_by_content_length() {
        let msg = b"SET_PARAMETER rtsp://h/live RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 12\r\n\r\nbarparam: x\nNEXT";
        let full = msg.len() - 4;
        for n in 0..full {
            assert_eq!(parse(&msg[..n]), Ok(Parsed::Incomplete));
        }
        let (req, consumed) = request(msg);
        assert_eq!(consumed, full);
        assert_eq!(req.body, b"barparam: x\n");
        // Same value twice is fine; different values are not.
        let dup = b"X * RTSP/1.0\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nZ";
        assert_eq!(request(dup).0.body, b"Z");
        let bad = b"X * RTSP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nZZ";
        assert_eq!(parse(bad), Err(RequestError::BadContentLength));
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let (req, consumed) = request(b"OPTIONS * RTSP/1.0\nCSeq: 1\n\n");
        assert_eq!((req.uri, req.cseq(), consumed), ("*", Some("1"), 28));
    }

    #[test]
    fn head_limit_is_enforced_as_soon_as_8k_pass() {
        let mut buf = b"OPTIONS * RTSP/1.0\r\n".to_vec();
        while buf.len() < MAX_HEAD_BYTES + 100 {
            buf.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\r\n");
        }
        // Under 8 KiB without a blank line: keep reading (header count is only checked once
        // the head is complete, so this is the size limit speaking).
        assert_eq!(parse(&buf[..MAX_HEAD_BYTES - 1]), Ok(Parsed::Incomplete));
        assert_eq!(parse(&buf[..MAX_HEAD_BYTES]), Err(RequestError::TooLarge));
        assert_eq!(parse(&buf), Err(RequestError::TooLarge));
        // Only CRLFs: also bounded.
        assert_eq!(parse(&[b'\n'; MAX_HEAD_BYTES]), Err(RequestError::TooLarge));
    }

    #[test]
    fn limit_errors() {
        let long_line = [b'a'; MAX_LINE_BYTES + 2];
        assert_eq!(parse(&long_line), Err(RequestError::LineTooLong));
        assert_eq!(parse(&long_line[..MAX_LINE_BYTES]), Ok(Parsed::Incomplete));
        let mut many = b"OPTIONS * RTSP/1.0\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(RequestError::TooManyHeaders));
        let big_body = b"X * RTSP/1.0\r\nContent-Length: 4097\r\n\r\n";
        assert_eq!(parse(big_body), Err(RequestError::BodyTooLarge));
        assert_eq!(
            parse(b"$\x00\x20\x01"),
            Err(RequestError::InterleavedTooLarge)
        );
    }

    #[test]
    fn malformed_requests() {
        use RequestError::*;
        let cases: [(&[u8], RequestError); 15] = [
            (b"OPTIONS *\r\n\r\n", BadRequestLine),
            (b"OPTIONS  * RTSP/1.0\r\n\r\n", BadRequestLine),
            (b"OPTIONS * RTSP/1.0 x\r\n\r\n", BadRequestLine),
            (b"GET / HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"OPT(IONS * RTSP/1.0\r\n\r\n", BadRequestLine),
            (b"OPTIONS * RTSP/1\r\n\r\n", BadRequestLine),
            (b"OPTIONS * RTSP/2.0\r\n\r\n", UnsupportedVersion),
            (b"OPTIONS * RTSP/1.1\r\n\r\n", UnsupportedVersion),
            (b"OPTIONS * RTSP/1.0\r\nNoColon\r\n\r\n", BadHeader),
            (b"OPTIONS * RTSP/1.0\r\nA: b\r\n folded\r\n\r\n", BadHeader),
            (
                b"OPTIONS * RTSP/1.0\r\nRequire: a\rX-Evil: 1\r\n\r\n",
                BadHeader,
            ),
            (
                b"OPTIONS * RTSP/1.0\r\nUser-Agent: a\x00b\r\n\r\n",
                BadHeader,
            ),
            (
                b"OPTIONS * RTSP/1.0\r\nUser-Agent: a\x7f\r\n\r\n",
                BadHeader,
            ),
            (
                b"OPTIONS * RTSP/1.0\r\nContent-Length: -1\r\n\r\n",
                BadContentLength,
            ),
            (
                b"OPTIONS * RTSP/1.0\r\nContent-Length: 1e3\r\n\r\n",
                BadContentLength,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse(b"OPTIONS * RTSP/1.0\r\nX: \xff\r\n\r\n"),
            Err(BadHeader)
        );
    }

    #[test]
    fn response_bytes() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            200,
            Some("3"),
            &[("Session", "ABC;timeout=60")],
            b"",
        );
        assert_eq!(
            out,
            b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nServer: rillcast\r\nSession: ABC;timeout=60\r\n\r\n"
        );
        out.clear();
        write_response(&mut out, 461, None, &[], b"xy");
        assert_eq!(
            out,
            b"RTSP/1.0 461 Unsupported Transport\r\nServer: rillcast\r\nContent-Length: 2\r\n\r\nxy"
        );
        for (status, phrase) in [
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (451, "Parameter Not Understood"),
            (453, "Not Enough Bandwidth"),
            (454, "Session Not Found"),
            (455, "Method Not Valid in This State"),
            (459, "Aggregate Operation Not Allowed"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (505, "RTSP Version not supported"),
            (551, "Option not supported"),
        ] {
            assert_eq!(reason_phrase(status), phrase);
        }
    }

    #[test]
    fn error_response_echoes_cseq_when_found() {
        let input = b"OPTIONS * RTSP/2.0\r\nCSeq: 17\r\n\r\n";
        let err = parse(input).unwrap_err();
        let mut out = Vec::new();
        write_error_response(&mut out, err, input);
        assert_eq!(
            out,
            b"RTSP/1.0 505 RTSP Version not supported\r\nCSeq: 17\r\nServer: rillcast\r\n\r\n"
        );
        out.clear();
        write_error_response(&mut out, RequestError::TooLarge, &[b'x'; 9000]);
        assert_eq!(
            out,
            b"RTSP/1.0 413 Request Entity Too Large\r\nServer: rillcast\r\n\r\n"
        );
    }

    /// Bounded random-input test: 20k random and mutated buffers. `parse` must not panic,
    /// `consumed` must stay within the buffer and the limits, and the answer must depend only on
    /// the first `MAX_HEAD_BYTES + MAX_BODY_BYTES` bytes (it never looks further).
    #[test]
    fn random_and_mutated_inputs_never_panic_or_overread() {
        const WINDOW: usize = MAX_HEAD_BYTES + MAX_BODY_BYTES;
        let mut state = 0x5eed_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        const ALPHABET: &[u8] = b"\r\n\r\n: $-0123456789RTSP/1.0 CSeq Content-Length\x00\xff\t";
        let mut counts = [0usize; 4];
        for i in 0..20_000 {
            let mut buf: Vec<u8> = if i % 2 == 0 {
                let fx = FIXTURES[(next() % FIXTURES.len() as u64) as usize];
                let mut b = fx.to_vec();
                for _ in 0..1 + next() % 8 {
                    let pos = (next() % (b.len() as u64 + 1)) as usize;
                    match next() % 5 {
                        0 if pos < b.len() => b[pos] = next() as u8,
                        1 => b.insert(pos, ALPHABET[(next() % ALPHABET.len() as u64) as usize]),
                        2 if pos < b.len() => {
                            b.remove(pos);
                        }
                        3 => b.truncate(pos),
                        _ => {
                            let tail = b[pos..].to_vec();
                            b.extend_from_slice(&tail);
                        }
                    }
                }
                b
            } else {
                let len = match next() % 4 {
                    0 => (next() % 16) as usize,
                    1 => (next() % 512) as usize,
                    _ => (next() % (WINDOW as u64 + 2000)) as usize,
                };
                (0..len)
                    .map(|_| {
                        if next() % 4 == 0 {
                            next() as u8
                        } else {
                            ALPHABET[(next() % ALPHABET.len() as u64) as usize]
                        }
                    })
                    .collect()
            };
            if next() % 8 == 0 {
                // An interleaved frame header with a length around the limit.
                let hdr = [b'$', next() as u8, (next() % 0x21) as u8, next() as u8];
                buf.splice(0..0, hdr);
            }
            if i % 1000 == 0 {
                // Exercise the size limits with long inputs too.
                buf.resize(WINDOW + 100, b'a');
            }
            let got = parse(&buf);
            match &got {
                Ok(Parsed::Incomplete) => {
                    counts[0] += 1;
                    assert!(
                        buf.len() < WINDOW,
                        "buffered past the limits: {}",
                        buf.len()
                    );
                }
                Ok(Parsed::Request { consumed, req }) => {
                    counts[1] += 1;
                    assert!(*consumed <= buf.len() && *consumed <= WINDOW);
                    assert!(req.headers.len() <= MAX_HEADERS && req.body.len() <= MAX_BODY_BYTES);
                }
                Ok(Parsed::Interleaved {
                    consumed, payload, ..
                }) => {
                    counts[2] += 1;
                    assert!(*consumed <= buf.len() && payload.len() + 4 == *consumed);
                }
                Err(_) => counts[3] += 1,
            }
            if buf.len() > WINDOW {
                assert_eq!(
                    parse(&buf[..WINDOW]),
                    got,
                    "looked past the first {WINDOW} bytes"
                );
            }
        }
        // Every outcome was reached, so the mutations did exercise the parser.
        assert!(counts.iter().all(|&c| c > 100), "outcome counts {counts:?}");
    }
}
