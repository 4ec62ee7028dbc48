//! Typed events: what happened to streams, viewers, push targets and the configuration, kept
//! in a bounded ring for the page (`GET /api/v1/events?since=N`) and delivered to webhooks.
//!
//! Owns: the event vocabulary (its JSON is the webhook body), the ring, the webhook queue
//! policy (bounded queue, oldest dropped and counted; bounded retries with doubling delay) and
//! a minimal HTTP/1.1 POST client on smol (RFC 9112: request line, Host, Content-Type,
//! Content-Length, `Connection: close`; only the status line of the answer is read).
//!
//! Must not: block or be called from the media path. Events are produced by the web layer's
//! once-a-second observer (diffing hub and server state) and by API actions, never by a
//! frame callback; a slow or dead webhook receiver only fills the bounded queue.

use serde::Serialize;
use std::collections::VecDeque;

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    StreamStarted {
        stream: String,
    },
    StreamStopped {
        stream: String,
    },
    SourceRestarted {
        stream: String,
        reason: String,
    },
    ParametersChanged {
        stream: String,
        codec: String,
        width: u32,
        height: u32,
    },
    ViewerConnected {
        stream: String,
        protocol: String,
        viewer: String,
    },
    ViewerDisconnected {
        stream: String,
        protocol: String,
        viewer: String,
    },
    PushConnected {
        target: usize,
        stream: String,
    },
    PushFailed {
        target: usize,
        stream: String,
        error: String,
    },
    PushBackingOff {
        target: usize,
        stream: String,
        attempt: u32,
        retry_in_ms: u64,
    },
    ConfigChanged {
        restarted: Vec<String>,
    },
    /// Start-up could not use the configuration file and ran the last good copy instead.
    ConfigFallback {
        file: String,
        error: String,
        used: String,
    },
}

/// One event with its sequence number (monotonic from 1) and wall-clock time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub seq: u64,
    pub unix_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The newest `cap` events.
#[derive(Debug)]
pub struct EventLog {
    ring: VecDeque<Event>,
    cap: usize,
    next_seq: u64,
}

impl EventLog {
    pub fn new(cap: usize) -> Self {
        EventLog {
            ring: VecDeque::with_capacity(cap),
            cap,
            next_seq: 1,
        }
    }

    /// Appends an event, dropping the oldest when full; returns it.
    pub fn push(&mut self, kind: EventKind, unix_ms: u64) -> &Event {
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back(Event {
            seq: self.next_seq,
            unix_ms,
            kind,
        });
        self.next_seq += 1;
        // Just pushed, so the ring is not empty.
        self.ring.back().expect("non-empty after push")
    }

    /// Events with `seq > since`, oldest first, at most `max`.
    pub fn since(&self, since: u64, max: usize) -> impl Iterator<Item = &Event> {
        self.ring.iter().filter(move |e| e.seq > since).take(max)
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// One delivery to one URL.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub url: String,
    pub body: String,
    pub attempts: u32,
    pub due_ms: u64,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    pub delivered: u64,
    pub failed: u64,
    pub dropped_queue_full: u64,
    pub retries: u64,
}

/// The webhook queue policy, without sockets: at most `cap` deliveries waiting; each tried at
/// most `max_attempts` times, the delay doubling from `first_retry_ms`.
#[derive(Debug)]
pub struct WebhookQueue {
    q: VecDeque<Delivery>,
    cap: usize,
    max_attempts: u32,
    first_retry_ms: u64,
    pub stats: WebhookStats,
}

impl WebhookQueue {
    pub fn new(cap: usize, max_attempts: u32, first_retry_ms: u64) -> Self {
        WebhookQueue {
            q: VecDeque::with_capacity(cap),
            cap,
            max_attempts,
            first_retry_ms,
            stats: WebhookStats::default(),
        }
    }

    /// Queues `event` for every URL; when full, the oldest waiting delivery is dropped.
    pub fn enqueue(&mut self, event: &Event, urls: &[String], now_ms: u64) {
        if urls.is_empty() {
            return;
        }
        let body = serde_json::to_string(event).unwrap_or_default();
        for url in urls {
            if self.q.len() == self.cap {
                self.q.pop_front();
                self.stats.dropped_queue_full += 1;
            }
            self.q.push_back(Delivery {
                url: url.clone(),
                body: body.clone(),
                attempts: 0,
                due_ms: now_ms,
            });
        }
    }

    /// The next delivery due at `now_ms`, taken out of the queue (hand it back with
    /// [`WebhookQueue::finished`]).
    pub fn take_due(&mut self, now_ms: u64) -> Option<Delivery> {
        let i = self.q.iter().position(|d| d.due_ms <= now_ms)?;
        self.q.remove(i)
    }

    /// When the earliest waiting delivery is due, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.q.iter().map(|d| d.due_ms).min()
    }

    /// Records the outcome of a taken delivery; a failure is re-queued while attempts remain
    /// (and there is room).
    pub fn finished(&mut self, mut d: Delivery, ok: bool, now_ms: u64) {
        d.attempts += 1;
        if ok {
            self.stats.delivered += 1;
            return;
        }
        if d.attempts >= self.max_attempts || self.q.len() >= self.cap {
            self.stats.failed += 1;
            return;
        }
        self.stats.retries += 1;
        d.due_ms = now_ms + (self.first_retry_ms << (d.attempts - 1).min(16));
        self.q.push_back(d);
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// `http://host[:port]/path` → (host, port, path). Only plain HTTP; no userinfo.
pub fn parse_http_url(url: &str) -> Option<(&str, u16, &str)> {
    let rest = url.strip_prefix("http://")?;
    if url.len() > 512 || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.contains('@') || hostport.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => 80,
            None => return None,
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 80),
        }
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port, path))
}

/// Writes the POST request head and body into `out` (cleared first).
pub fn write_post(out: &mut Vec<u8>, host: &str, port: u16, path: &str, body: &[u8]) {
    use std::io::Write;
    out.clear();
    let host_hdr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: {host_hdr}\r\nUser-Agent: rillcast/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    out.extend_from_slice(body);
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 204 No Content`).
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut it = line.split(' ');
    let v = it.next()?;
    if !v.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = it.next()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

/// POSTs `body` to `url`, bounded by `timeout_ms` overall; Ok(status) or a short reason.
pub async fn post_json(url: &str, body: &[u8], timeout_ms: u64) -> Result<u16, String> {
    use smol::future::FutureExt;
    let (host, port, path) = parse_http_url(url).ok_or("bad webhook URL")?;
    let work = async {
        use smol::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = smol::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut req = Vec::with_capacity(256 + body.len());
        write_post(&mut req, host, port, path, body);
        s.write_all(&req).await.map_err(|e| format!("send: {e}"))?;
        let mut head = [0u8; 64];
        let mut n = 0;
        while n < head.len() {
            let k = s
                .read(&mut head[n..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if k == 0 || head[..n + k].contains(&b'\n') {
                n += k;
                break;
            }
            n += k;
        }
        parse_status_line(&head[..n]).ok_or_else(|| "no HTTP status line".to_string())
    };
    work.or(async {
        smol::Timer::after(std::time::Duration::from_millis(timeout_ms)).await;
        Err("timed out".to_string())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(log: &mut EventLog, i: u64) -> Event {
        log.push(
            EventKind::StreamStarted {
                stream: format!("s{i}"),
            },
            1000 + i,
        )
        .clone()
    }

    #[test]
    fn ring_is_bounded_and_since_filters() {
        let mut log = EventLog::new(3);
        for i in 0..5 {
            ev(&mut log, i);
        }
        let seqs: Vec<u64> = log.since(0, 10).map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let seqs: Vec<u64> = log.since(4, 10).map(|e| e.seq).collect();
        assert_eq!(seqs, [5]);
        assert_eq!(log.since(3, 1).count(), 1);
        assert_eq!(log.next_seq(), 6);
    }

    #[test]
    fn event_json_shape() {
        let e = Event {
            seq: 7,
            unix_ms: 1,
            kind: EventKind::PushBackingOff {
                target: 0,
                stream: "live".into(),
                attempt: 3,
                retry_in_ms: 4000,
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"seq":7,"unix_ms":1,"type":"push_backing_off","target":0,"stream":"live","attempt":3,"retry_in_ms":4000}"#
        );
    }

    #[test]
    fn webhook_queue_bounds_and_retries() {
        let mut log = EventLog::new(8);
        let mut q = WebhookQueue::new(2, 3, 1000);
        let urls = vec!["http://a/".to_string()];
        for i in 0..3 {
            let e = ev(&mut log, i);
            q.enqueue(&e, &urls, 0);
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.stats.dropped_queue_full, 1);
        let d = q.take_due(0).unwrap();
        assert!(
            d.body.contains("\"seq\":2"),
            "oldest surviving first: {}",
            d.body
        );
        q.finished(d, false, 0);
        assert_eq!(q.next_due_ms(), Some(0), "the other one is still due");
        let d = q.take_due(0).unwrap();
        q.finished(d, true, 0);
        assert!(q.take_due(999).is_none(), "retry waits 1000 ms");
        let d = q.take_due(1000).unwrap();
        assert_eq!(d.attempts, 1);
        q.finished(d, false, 1000);
        assert_eq!(q.next_due_ms(), Some(3000), "delay doubles");
        let d = q.take_due(3000).unwrap();
        q.finished(d, false, 3000);
        assert!(q.is_empty(), "3 attempts, then given up");
        assert_eq!(
            q.stats,
            WebhookStats {
                delivered: 1,
                failed: 1,
                dropped_queue_full: 1,
                retries: 2
            }
        );
    }

    #[test]
    fn urls_and_status_lines() {
        assert_eq!(parse_http_url("http://h:81/x?y"), Some(("h", 81, "/x?y")));
        assert_eq!(parse_http_url("http://h"), Some(("h", 80, "/")));
        assert_eq!(parse_http_url("http://[::1]:90/p"), Some(("::1", 90, "/p")));
        for bad in [
            "https://h/",
            "http://",
            "http://u@h/",
            "http://h:0/",
            "http://h:x/",
            "http://h /",
            "ftp://h",
        ] {
            assert_eq!(parse_http_url(bad), None, "{bad}");
        }
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status_line(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 99999 x"), None);
        let mut out = Vec::new();
        write_post(&mut out, "h", 81, "/x", b"{}");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("POST /x HTTP/1.1\r\nHost: h:81\r\n"), "{s}");
        assert!(
            s.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n{}"),
            "{s}"
        );
    }

    #[test]
    fn post_json_over_loopback() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            while !got.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "client closed early");
                got.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let url = format!("http://127.0.0.1:{port}/hook");
        let st = smol::block_on(post_json(&url, br#"{"a":1}"#, 10_000));
        assert_eq!(st, Ok(202));
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
        // Nobody listening: an error, not a hang.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let url = format!("http://127.0.0.1:{dead_port}/");
        assert!(smol::block_on(post_json(&url, b"{}", 10_000)).is_err());
    }
}
