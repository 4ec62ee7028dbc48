//! The configuration file: TOML text → a validated [`Config`], or an error naming the file, the line
//! and a hint.
//!
//! Owns: every key, its default and its bounds (the user reference is `config/rillcast.toml`,
//! which a test parses and compares against these defaults). Parsing is a pure function of the
//! text; reading the file and applying a board profile happen in the caller. Unknown keys are
//! rejected, so a typo never silently falls back to a default.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The whole configuration, after defaults and validation.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub rtsp: RtspConfig,
    pub http: HttpConfig,
    pub hls: HlsConfig,
    pub fmp4: Fmp4Config,
    pub media: MediaConfig,
    /// One table per stream; empty in the file means one stream `live` from `testsrc`.
    pub streams: BTreeMap<String, StreamConfig>,
    /// RTMP/RTMPS push targets (`[[push]]`), in order; the web API addresses them by index.
    /// Each has its own connection and backoff.
    pub push: Vec<PushConfig>,
    /// Webhook receivers for events (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
}

/// One upstream RTMP(S) origin a stream is published to (`[[push]]`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// `rtmp://host[:port]/app[/key]` or `rtmps://...` (default ports 1935 / 443).
    pub url: String,
    /// The stream key; absent = the last path segment of `url`. Never logged in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Which local stream (a `[streams.NAME]` table) to publish.
    pub stream: String,
    /// false = configured but not started (state `idle`).
    pub enabled: bool,
    /// rtmps: extra trusted CA certificates (PEM), added to the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Cap of the reconnect delay, which doubles per failed attempt (full jitter) up to this.
    pub backoff_max_ms: u32,
    /// Outgoing media queue of this target in KiB (part of the media memory plan); when the
    /// uplink is slower than the stream, whole GOPs are dropped instead of growing latency.
    /// 0 = 2 s at the stream's max_bitrate_kbps (at least 256 KiB).
    pub queue_kib: u32,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            url: String::new(),
            key: None,
            stream: "live".into(),
            enabled: true,
            ca_file: None,
            backoff_max_ms: 30_000,
            queue_kib: 0,
        }
    }
}

/// Debug without the stream key (in `key` or in the URL path).
impl fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = crate::proto::rtmp::RtmpUrl::parse_with_key(&self.url, self.key.as_deref())
            .map(|u| u.redacted().to_string())
            .unwrap_or_else(|_| "<invalid url>".into());
        f.debug_struct("PushConfig")
            .field("url", &url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("stream", &self.stream)
            .field("enabled", &self.enabled)
            .field("ca_file", &self.ca_file)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("queue_kib", &self.queue_kib)
            .finish()
    }
}

impl PushConfig {
    /// Bytes of this target's media queue for a stream of `max_bitrate_kbps`.
    pub fn queue_bytes(&self, max_bitrate_kbps: u32) -> usize {
        match self.queue_kib {
            0 => ((2 * max_bitrate_kbps as usize * 1000) / 8).max(256 * 1024),
            k => k as usize * 1024,
        }
    }
}

/// Where events are POSTed as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host[:port]/path` (plain HTTP; put a TLS proxy on the receiver's side if needed).
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspConfig {
    /// TCP port of the RTSP server.
    pub port: u16,
    /// Address to listen on.
    pub bind: String,
    /// First of the two server UDP ports (RTP; RTCP is +1) for UDP viewers. 0 = pick free ports.
    pub udp_port: u16,
    /// A UDP session with no keep-alive (RTSP request or RTCP) for this long is torn down.
    pub session_timeout_s: u32,
    /// A TCP viewer whose socket accepted nothing for this long is disconnected.
    pub stall_timeout_ms: u32,
    /// Viewers across all streams; further SETUPs get 453. 0 = the board's (or built-in) limit.
    pub max_viewers: u32,
    /// RTP packet size in bytes (header included); keep under the path MTU.
    pub max_packet_bytes: u16,
    /// A request must be complete within this time of its first byte; bytes trickling in or
    /// blank lines do not extend it (slowloris).
    pub request_timeout_ms: u32,
    /// Connections from one client address (IPv6: one /64) that are not playing yet; more
    /// are closed at once. A playing viewer frees its slot.
    pub max_pending_per_address: u32,
    /// Wrong credentials from one address within `auth_lockout_s` that lock it out for
    /// `auth_lockout_s` (answered 403). 0 = no lockout.
    pub auth_max_failures: u32,
    pub auth_lockout_s: u32,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig {
            port: 8554,
            bind: "0.0.0.0".into(),
            udp_port: 8000,
            session_timeout_s: 60,
            stall_timeout_ms: 10_000,
            max_viewers: 0,
            max_packet_bytes: 1400,
            request_timeout_ms: 10_000,
            max_pending_per_address: 8,
            auth_max_failures: 5,
            auth_lockout_s: 60,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// TCP port of the HTTP server (web page, API, HLS).
    pub port: u16,
    pub bind: String,
    /// The web password as `scrypt$logN$r$p$salt$key`; absent = not set yet (the page asks
    /// for one, and until then only the set-password screen and `/api/v1/health` answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Host names the page and API answer to besides IP addresses, `localhost` and the
    /// machine's own hostname (DNS-rebinding guard): e.g. `["cam.example.com", "*.home.arpa"]`.
    pub allowed_hosts: Vec<String>,
    /// Bearer tokens for machines, stored hashed as `sha256$hex` (create them on the page).
    pub api_tokens: Vec<String>,
    /// Open connections (HLS viewers, page, API); more are answered 503. Each may hold a
    /// 17 KiB request buffer, counted in the memory plan. 0 = the viewer limit.
    pub max_connections: u32,
    /// A request head (and body) must arrive within this time of its first byte (slowloris).
    pub request_timeout_ms: u32,
    /// An idle keep-alive connection is closed after this long.
    pub keepalive_timeout_ms: u32,
    /// A client that accepts no response bytes for this long is disconnected.
    pub send_timeout_ms: u32,
    /// Open connections from one client address (IPv6: one /64); more are answered 503.
    pub max_connections_per_address: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: 8080,
            bind: "0.0.0.0".into(),
            password_hash: None,
            allowed_hosts: Vec::new(),
            api_tokens: Vec::new(),
            max_connections: 0,
            request_timeout_ms: 10_000,
            keepalive_timeout_ms: 15_000,
            send_timeout_ms: 10_000,
            max_connections_per_address: 32,
        }
    }
}

/// HLS from RAM (RFC 8216): `http://HOST:PORT/STREAM/index.m3u8` and `/master.m3u8`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    pub enabled: bool,
    /// Target segment duration; segments are cut at the first keyframe after it, so a GOP
    /// longer than this makes longer segments.
    pub segment_ms: u32,
    /// Segments listed in the media playlist; as many again stay downloadable after they
    /// leave it. Memory: (2 * window + 1) segments at the stream's max_bitrate_kbps.
    pub window: u32,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            enabled: true,
            segment_ms: 1000,
            window: 6,
        }
    }
}

/// fMP4 over WebSocket for browsers (Media Source Extensions): `ws://HOST:PORT/STREAM/ws`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fmp4Config {
    pub enabled: bool,
    /// Fragments kept per stream, as media time at max_bitrate_kbps: how far a slow viewer
    /// may fall behind before it skips to the newest keyframe (it skips at half of this).
    pub buffer_ms: u32,
    /// WebSocket viewers per stream at once; more are refused.
    pub max_viewers: u32,
}

impl Default for Fmp4Config {
    fn default() -> Self {
        Fmp4Config {
            enabled: true,
            buffer_ms: 2000,
            max_viewers: 32,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Ceiling for all media memory (frame rings, HLS segments, viewer buffers) in MiB.
    /// 0 = the board profile's figure (or 24 MiB without a board). Start-up fails if the
    /// streams' buffers do not fit.
    pub memory_mib: u32,
}

/// One stream: a video source (and optionally a second input for AAC audio).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    pub source: SourceConfig,
    /// A second input carrying AAC in ADTS (e.g. a second pipe or command). Not needed for
    /// `testsrc`, which makes its own tone.
    pub audio: Option<SourceConfig>,
    /// How much media the stream's ring holds, in milliseconds at `max_bitrate_kbps`. Must
    /// cover at least one GOP (new viewers start at the last keyframe) plus viewer lag.
    pub buffer_ms: u32,
    /// The highest bitrate the encoder produces; sizes the ring.
    pub max_bitrate_kbps: u32,
    /// RTSP authentication for this stream; absent = open.
    pub auth: Option<AuthConfig>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            source: SourceConfig::default(),
            audio: None,
            buffer_ms: 3000,
            max_bitrate_kbps: 4000,
            auth: None,
        }
    }
}

impl StreamConfig {
    /// Bytes of the stream's frame ring.
    pub fn ring_bytes(&self) -> usize {
        (self.buffer_ms as u64 * self.max_bitrate_kbps as u64 / 8) as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub user: String,
    pub password: String,
}

/// Where a stream's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Built in: a moving test pattern (H.264) with a tone (AAC). Needs no camera, no ffmpeg.
    Testsrc,
    /// An encoder process rillcast starts and supervises, reading its stdout.
    Exec,
    /// A file, looped at real-time pace.
    File,
    /// rillcast's own standard input.
    Stdin,
    /// Connect to a TCP server that sends the stream (reconnecting with backoff).
    Tcp,
    /// Receive datagrams on a UDP address.
    Udp,
}

/// What the bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// H.264 Annex B elementary stream.
    H264,
    /// H.265 Annex B elementary stream.
    H265,
    /// AAC in ADTS (audio inputs).
    Adts,
    /// MPEG-TS carrying H.264/H.265 and AAC; PES timestamps are used.
    Mpegts,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Byte format of the input (ignored for testsrc).
    pub format: SourceFormat,
    /// `exec`: the encoder as an argument vector, run without a shell.
    pub command: Vec<String>,
    /// `exec`: a shell line run with `sh -c`, only when you want a pipeline on purpose.
    pub shell: Option<String>,
    /// `file`: the path.
    pub path: Option<PathBuf>,
    /// `tcp`: host:port to connect to; `udp`: local address to bind.
    pub address: Option<String>,
    /// Nominal frame rate; 0 = from the SPS timing info, else 30.
    pub fps: f64,
    /// `testsrc`: picture size and GOP length.
    pub width: u32,
    pub height: u32,
    pub gop_frames: u32,
    /// `testsrc`: also make an AAC tone.
    pub audio: bool,
    /// `testsrc`: the binary strip in the bottom row shows the capture time (Unix ms, low 16
    /// bits) instead of the frame number, so a player can measure glass-to-glass latency.
    pub paint_clock: bool,
    /// `exec`/`tcp`: first restart delay; doubles up to `restart_max_ms`.
    pub restart_min_ms: u32,
    pub restart_max_ms: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Testsrc,
            format: SourceFormat::H264,
            command: Vec::new(),
            shell: None,
            path: None,
            address: None,
            fps: 0.0,
            width: 1280,
            height: 720,
            gop_frames: 30,
            audio: true,
            paint_clock: false,
            restart_min_ms: 500,
            restart_max_ms: 30_000,
        }
    }
}

/// A configuration error, formatted for a person: file, line, what is wrong, and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates config text. `file` only names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Self::parse_with_encoder(text, file, None)
    }

    /// Like [`Config::parse`], with a board's encoder command for `exec` sources (video) that
    /// set neither `command` nor `shell`.
    pub fn parse_with_encoder(
        text: &str,
        file: &str,
        board_encoder: Option<&[String]>,
    ) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            let msg = e.message().trim_end().to_string();
            ConfigError {
                file: file.into(),
                line,
                message: with_hint(msg),
            }
        })?;
        if cfg.streams.is_empty() {
            cfg.streams.insert("live".into(), StreamConfig::default());
        }
        if let Some(cmd) = board_encoder {
            for s in cfg.streams.values_mut() {
                let src = &mut s.source;
                if src.kind == SourceKind::Exec && src.command.is_empty() && src.shell.is_none() {
                    src.command = cmd.to_vec();
                }
            }
        }
        cfg.validate().map_err(|(key, message)| ConfigError {
            file: file.into(),
            line: line_of_key(text, &key),
            message: format!("{key}: {message}"),
        })?;
        Ok(cfg)
    }

    /// Cross-field checks that serde cannot express. Returns the dotted key and the problem.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if self.rtsp.port == 0 {
            return err("rtsp.port", "must be 1..=65535");
        }
        if self.http.port == 0 {
            return err("http.port", "must be 1..=65535");
        }
        if self.http.port == self.rtsp.port && self.http.bind == self.rtsp.bind {
            return err("http.port", "must differ from rtsp.port");
        }
        if !(1000..=600_000).contains(&self.http.request_timeout_ms) {
            return err("http.request_timeout_ms", "must be 1000..=600000");
        }
        if !(1000..=600_000).contains(&self.http.keepalive_timeout_ms) {
            return err("http.keepalive_timeout_ms", "must be 1000..=600000");
        }
        if !(1000..=600_000).contains(&self.http.send_timeout_ms) {
            return err("http.send_timeout_ms", "must be 1000..=600000");
        }
        if !(200..=30_000).contains(&self.hls.segment_ms) {
            return err("hls.segment_ms", "must be 200..=30000");
        }
        if !(2..=60).contains(&self.hls.window) {
            return err("hls.window", "must be 2..=60");
        }
        if !(500..=30_000).contains(&self.fmp4.buffer_ms) {
            return err("fmp4.buffer_ms", "must be 500..=30000");
        }
        if !(1..=1000).contains(&self.fmp4.max_viewers) {
            return err("fmp4.max_viewers", "must be 1..=1000");
        }
        if self.rtsp.udp_port != 0
            && (self.rtsp.udp_port == u16::MAX
                || [self.rtsp.udp_port, self.rtsp.udp_port + 1].contains(&self.rtsp.port))
        {
            return err(
                "rtsp.udp_port",
                "needs two free ports (RTP, RTCP) apart from rtsp.port",
            );
        }
        if !(5..=3600).contains(&self.rtsp.session_timeout_s) {
            return err("rtsp.session_timeout_s", "must be 5..=3600");
        }
        if !(500..=600_000).contains(&self.rtsp.stall_timeout_ms) {
            return err("rtsp.stall_timeout_ms", "must be 500..=600000");
        }
        if !(576..=9000).contains(&self.rtsp.max_packet_bytes) {
            return err("rtsp.max_packet_bytes", "must be 576..=9000");
        }
        if !(1000..=600_000).contains(&self.rtsp.request_timeout_ms) {
            return err("rtsp.request_timeout_ms", "must be 1000..=600000");
        }
        if self.rtsp.max_pending_per_address == 0 {
            return err("rtsp.max_pending_per_address", "must be at least 1");
        }
        if !(1..=86_400).contains(&self.rtsp.auth_lockout_s) {
            return err("rtsp.auth_lockout_s", "must be 1..=86400");
        }
        if self.http.max_connections_per_address == 0 {
            return err("http.max_connections_per_address", "must be at least 1");
        }
        if let Some(h) = &self.http.password_hash {
            if !h.starts_with("scrypt$") || h.len() > 256 {
                return err(
                    "http.password_hash",
                    "must be scrypt$logN$r$p$salt$key (set it on the web page)",
                );
            }
        }
        if self.http.allowed_hosts.len() > 32 {
            return err("http.allowed_hosts", "at most 32 entries");
        }
        for h in &self.http.allowed_hosts {
            if !crate::web::auth::valid_host_pattern(h) {
                return err(
                    "http.allowed_hosts",
                    "entries are host names, *.domain or addresses, without a port",
                );
            }
        }
        if self.http.api_tokens.len() > 32 {
            return err("http.api_tokens", "at most 32 tokens");
        }
        if !self
            .http
            .api_tokens
            .iter()
            .all(|t| crate::web::auth::is_valid_token_hash(t))
        {
            return err(
                "http.api_tokens",
                "entries are sha256$<64 hex> (create tokens on the web page)",
            );
        }
        if self.push.len() > 16 {
            return err("push", "at most 16 push targets");
        }
        for (i, p) in self.push.iter().enumerate() {
            if let Err((f, m)) = validate_push(p, &self.streams) {
                return Err((format!("push.{i}.{f}"), m.into()));
            }
        }
        if self.webhooks.len() > 8 {
            return err("webhooks", "at most 8 webhooks");
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if crate::web::events::parse_http_url(&w.url).is_none() {
                return Err((
                    format!("webhooks.{i}.url"),
                    "expected http://host[:port]/path".into(),
                ));
            }
        }
        for (name, s) in &self.streams {
            let k = |f: &str| format!("streams.{name}.{f}");
            if name.is_empty()
                || name.len() > 32
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err((
                    format!("streams.{name}"),
                    "stream names are 1-32 characters of A-Z a-z 0-9 _ -".into(),
                ));
            }
            if !(500..=60_000).contains(&s.buffer_ms) {
                return Err((k("buffer_ms"), "must be 500..=60000".into()));
            }
            if !(64..=100_000).contains(&s.max_bitrate_kbps) {
                return Err((k("max_bitrate_kbps"), "must be 64..=100000".into()));
            }
            validate_source(&s.source, &k("source"), false)?;
            if let Some(a) = &s.audio {
                validate_source(a, &k("audio"), true)?;
            }
            if let Some(a) = &s.auth {
                if a.user.is_empty() || a.user.contains(':') || a.password.is_empty() {
                    return Err((
                        k("auth"),
                        "user (no ':') and password must be non-empty".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks one push target; returns the field and the problem.
pub fn validate_push(
    p: &PushConfig,
    streams: &BTreeMap<String, StreamConfig>,
) -> Result<(), (&'static str, &'static str)> {
    let rest = p
        .url
        .strip_prefix("rtmp://")
        .or_else(|| p.url.strip_prefix("rtmps://"));
    match rest {
        _ if p.url.len() > 512 => return Err(("url", "at most 512 characters")),
        None => return Err(("url", "must start with rtmp:// or rtmps://")),
        Some(r) => {
            let (host, path) = r.split_once('/').unwrap_or((r, ""));
            if host.is_empty() || path.is_empty() {
                return Err(("url", "expected rtmp://host[:port]/app[/key]"));
            }
            if p.url.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(("url", "no spaces or control characters"));
            }
        }
    }
    if let Some(k) = &p.key {
        if k.is_empty() || k.len() > 256 || k.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(("key", "1-256 characters, no spaces or control characters"));
        }
    }
    if !streams.contains_key(&p.stream) {
        return Err(("stream", "no such stream"));
    }
    // The same parser the push shell uses; its messages never contain the key.
    let url = match crate::proto::rtmp::RtmpUrl::parse_with_key(&p.url, p.key.as_deref()) {
        Ok(u) => u,
        Err(crate::proto::rtmp::RtmpError::InvalidUrl(why)) => return Err(("url", why)),
        Err(_) => return Err(("url", "expected rtmp://host[:port]/app[/key]")),
    };
    #[cfg(not(feature = "rtmps"))]
    if url.tls {
        return Err(("url", "rtmps:// needs a build with the `rtmps` feature"));
    }
    // A missing stream key is allowed here (the page saves a target before its key is known);
    // the push shell reports it in the target's state instead of connecting.
    if p.ca_file.is_some() && !url.tls {
        return Err(("ca_file", "only applies to rtmps:// URLs"));
    }
    if !(1000..=600_000).contains(&p.backoff_max_ms) {
        return Err(("backoff_max_ms", "must be 1000..=600000"));
    }
    if p.queue_kib != 0 && !(64..=65_536).contains(&p.queue_kib) {
        return Err(("queue_kib", "must be 0 (auto) or 64..=65536"));
    }
    Ok(())
}

fn validate_source(s: &SourceConfig, key: &str, audio: bool) -> Result<(), (String, String)> {
    let e = |f: &str, m: &str| Err((format!("{key}.{f}"), m.to_string()));
    if audio {
        if s.kind == SourceKind::Testsrc {
            return e(
                "kind",
                "testsrc makes its own audio; use source.audio = true",
            );
        }
        if s.format != SourceFormat::Adts {
            return e(
                "format",
                "audio inputs carry AAC in ADTS: format = \"adts\"",
            );
        }
    } else if s.format == SourceFormat::Adts {
        return e(
            "format",
            "the video source must be h264, h265 or mpegts (audio goes in the audio table)",
        );
    }
    if !(s.fps == 0.0 || (1.0..=240.0).contains(&s.fps)) {
        return e("fps", "must be 0 (auto) or 1..=240");
    }
    if s.restart_min_ms == 0 || s.restart_min_ms > s.restart_max_ms {
        return e("restart_min_ms", "must be > 0 and <= restart_max_ms");
    }
    match s.kind {
        SourceKind::Testsrc => {
            if s.width == 0 || s.height == 0 || !s.width.is_multiple_of(16) || !s.height.is_multiple_of(16) {
                return e(
                    "width",
                    "testsrc width and height must be non-zero multiples of 16",
                );
            }
            if s.width > 1920 || s.height > 1088 {
                return e("width", "testsrc is at most 1920x1088");
            }
            if !(1..=600).contains(&s.gop_frames) {
                return e("gop_frames", "must be 1..=600");
            }
            if s.format != SourceFormat::H264 {
                return e("format", "testsrc makes H.264 only");
            }
        }
        SourceKind::Exec => match (&s.shell, s.command.is_empty()) {
            (Some(_), false) => return e("shell", "set either command or shell, not both"),
            (None, true) => {
                return e(
                    "command",
                    "exec needs command = [\"program\", \"arg\", ...] (or shell = \"...\", or --board NAME)",
                )
            }
            _ => {}
        },
        SourceKind::File => {
            if s.path.is_none() {
                return e("path", "file sources need path = \"...\"");
            }
        }
        SourceKind::Stdin => {}
        SourceKind::Tcp | SourceKind::Udp => match &s.address {
            None => return e("address", "needs address = \"host:port\""),
            Some(a) if !a.contains(':') => {
                return e("address", "expected host:port, e.g. \"127.0.0.1:9000\"")
            }
            _ => {}
        },
    }
    Ok(())
}

fn with_hint(msg: String) -> String {
    if msg.starts_with("unknown field") {
        format!("{msg} (see config/rillcast.toml for every key)")
    } else {
        msg
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Best-effort line of a dotted key (`streams.live.source.path`): the last assignment of its
/// final component inside the right table, else the table header.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let (last, tables) = parts.split_last()?;
    let mut table_line = None;
    let mut in_table = tables.is_empty();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix('[') {
            let h = h.trim_end_matches(']').trim();
            let h: String = h.chars().filter(|c| !c.is_whitespace()).collect();
            in_table = tables.join(".") == h || tables.len() > 1 && h == tables[..2].join(".");
            if tables.join(".") == h {
                table_line = Some(i + 1);
            }
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if in_table && (key == *last || key.ends_with(&format!(".{last}"))) {
            return Some(i + 1);
        }
    }
    table_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_one_testsrc_stream() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.rtsp.port, 8554);
        assert_eq!(c.http.port, 8080);
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.streams["live"].source.kind, SourceKind::Testsrc);
    }

    #[test]
    fn ports_only_is_valid() {
        let c = Config::parse("[rtsp]\nport = 9554\n[http]\nport = 9080\n", "t").unwrap();
        assert_eq!((c.rtsp.port, c.http.port), (9554, 9080));
        assert!(c.streams.contains_key("live"));
    }

    #[test]
    fn unknown_key_names_line_and_hint() {
        let e = Config::parse("[rtsp]\nport = 1\nprot = 2\n", "x.toml").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().starts_with("x.toml:3:"), "{e}");
        assert!(e.message.contains("prot"), "{e}");
        assert!(e.message.contains("config/rillcast.toml"), "{e}");
    }

    #[test]
    fn bad_kind_lists_choices() {
        let e = Config::parse("[streams.a.source]\nkind = \"usb\"\n", "x").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("testsrc"), "{e}");
    }

    #[test]
    fn cross_field_errors_name_key_and_line() {
        let t = "[streams.cam]\nbuffer_ms = 3000\n[streams.cam.source]\nkind = \"file\"\n";
        let e = Config::parse(t, "x").unwrap_err();
        assert!(e.message.starts_with("streams.cam.source.path"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        let t = "[streams.cam.source]\nkind = \"tcp\"\naddress = \"nohost\"\n";
        let e = Config::parse(t, "x").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn several_streams_side_by_side() {
        let t = r#"
[streams.live.source]
kind = "exec"
command = ["rpicam-vid", "-t", "0", "--inline", "-o", "-"]
[streams.sub.source]
kind = "tcp"
address = "127.0.0.1:9000"
format = "mpegts"
[streams.sub.audio]
kind = "exec"
format = "adts"
shell = "arecord -f S16_LE | faac -o - -"
"#;
        let c = Config::parse(t, "x").unwrap();
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.streams["live"].source.command[0], "rpicam-vid");
        assert_eq!(
            c.streams["sub"].audio.as_ref().unwrap().format,
            SourceFormat::Adts
        );
    }

    #[test]
    fn rejects_bad_values() {
        for (t, key) in [
            ("[rtsp]\nport = 0\n", "rtsp.port"),
            ("[rtsp]\nport = 8080\n", "http.port"),
            ("[streams.\"a b\"]\n", "streams.a b"),
            ("[streams.x]\nbuffer_ms = 10\n", "streams.x.buffer_ms"),
            (
                "[streams.x.source]\nkind = \"exec\"\n",
                "streams.x.source.command",
            ),
            (
                "[streams.x.source]\nwidth = 100\n",
                "streams.x.source.width",
            ),
            (
                "[streams.x.audio]\nkind = \"stdin\"\n",
                "streams.x.audio.format",
            ),
            (
                "[rtsp]\nrequest_timeout_ms = 10\n",
                "rtsp.request_timeout_ms",
            ),
            (
                "[rtsp]\nmax_pending_per_address = 0\n",
                "rtsp.max_pending_per_address",
            ),
            ("[rtsp]\nauth_lockout_s = 0\n", "rtsp.auth_lockout_s"),
            (
                "[http]\nmax_connections_per_address = 0\n",
                "http.max_connections_per_address",
            ),
        ] {
            let e = Config::parse(t, "x").unwrap_err();
            assert!(e.message.starts_with(key), "{t:?} -> {e}");
        }
        let e = Config::parse("[rtsp]\nport = 70000\n", "x").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn shipped_reference_config_matches_defaults() {
        let text = include_str!("../config/rillcast.toml");
        let c = Config::parse(text, "config/rillcast.toml").unwrap();
        assert_eq!(c, Config::parse("", "").unwrap());
    }

    #[test]
    fn board_encoder_fills_empty_exec_command() {
        let t = "[streams.live.source]\nkind = \"exec\"\n";
        assert!(Config::parse(t, "x").is_err());
        let cmd = vec!["rpicam-vid".to_string(), "-o".into(), "-".into()];
        let c = Config::parse_with_encoder(t, "x", Some(&cmd)).unwrap();
        assert_eq!(c.streams["live"].source.command, cmd);
    }

    #[test]
    fn push_entries_parse_with_defaults() {
        let t = r#"
[[push]]
url = "rtmp://origin.example/live/abcdef123"
[[push]]
url = "rtmps://a.example:4443/app"
key = "secret-key"
enabled = false
backoff_max_ms = 5000
queue_kib = 512
ca_file = "/etc/rillcast/ca.pem"
"#;
        let c = Config::parse(t, "x").unwrap();
        assert_eq!(c.push.len(), 2);
        assert_eq!(c.push[0].stream, "live");
        assert!(c.push[0].enabled);
        assert_eq!(c.push[0].backoff_max_ms, 30_000);
        // 0 = 2 s at 4000 kbit/s = 1 MB.
        assert_eq!(c.push[0].queue_bytes(4000), 1_000_000);
        assert_eq!(c.push[0].queue_bytes(500), 256 * 1024);
        assert_eq!(c.push[1].queue_bytes(4000), 512 * 1024);
        assert!(!c.push[1].enabled);
        let dbg = format!("{:?}", c.push[1]);
        assert!(!dbg.contains("secret-key"), "{dbg}");
        assert!(dbg.contains("se…"), "{dbg}");
        let dbg = format!("{:?}", c.push[0]);
        assert!(!dbg.contains("abcdef123"), "{dbg}");
    }

    #[test]
    fn push_errors_name_entry_and_hide_key() {
        for (t, key, hint) in [
            ("[[push]]\nurl = \"http://x/live/k\"\n", "push.0.url", "rtmp://"),
            ("[[push]]\nurl = \"rtmp://x:0/live/k\"\n", "push.0.url", "bad port"),
            (
                "[[push]]\nurl = \"rtmp://x/live/k\"\nstream = \"cam\"\n",
                "push.0.stream",
                "no such stream",
            ),
            (
                "[[push]]\nurl = \"rtmp://x/live/k\"\nca_file = \"/a.pem\"\n",
                "push.0.ca_file",
                "rtmps",
            ),
            (
                "[[push]]\nurl = \"rtmp://x/live/k\"\nbackoff_max_ms = 10\n",
                "push.0.backoff_max_ms",
                "1000",
            ),
            (
                "[[push]]\nurl = \"rtmp://x/live/k\"\n[[push]]\nurl = \"rtmp://x/live/k\"\nqueue_kib = 1\n",
                "push.1.queue_kib",
                "64",
            ),
            ("[[push]]\nurl = \"rtmp://x/live\"\nkey = \"\"\n", "push.0.key", "1-256"),
        ] {
            let e = Config::parse(t, "x").unwrap_err();
            assert!(e.message.starts_with(key), "{t:?} -> {e}");
            assert!(e.message.contains(hint), "{t:?} -> {e}");
        }
        let e = Config::parse("[[push]]\nurl = \"rtmp://h:0/live/topsecret\"\n", "x").unwrap_err();
        assert!(!e.message.contains("topsecret"), "{e}");
    }

    #[test]
    fn print_config_round_trips() {
        let c = Config::parse("[rtsp]\nport = 9554\n", "x").unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, "y").unwrap(), c);
    }

    /// Mutations of the shipped example (a byte changed, a line cut short, a value swapped for
    /// another type): parsing returns a config or an error with a line, never a panic.
    #[test]
    fn mutated_config_files_never_panic() {
        let base = include_str!("../config/rillcast.toml");
        let base = format!(
            "{base}\n[[push]]\nurl = \"rtmp://h/app\"\nkey = \"k\"\n[streams.live.auth]\n\
             user = \"u\"\npassword = \"p\"\n"
        );
        let swaps = [
            "= -1",
            "= 99999999999999999999",
            "= \"\u{e9}\"",
            "= []",
            "= {}",
            "= 1.5",
            "=",
        ];
        let mut x = 0x0c0f_f1ce_0000_0001u64;
        for round in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut text = base.clone().into_bytes();
            let i = (x as usize) % text.len();
            match round % 3 {
                0 => text[i] = (x >> 32) as u8,
                1 => text.truncate(i),
                _ => {
                    let t = String::from_utf8_lossy(&text).into_owned();
                    let lines: Vec<&str> = t.lines().collect();
                    let n = (x as usize >> 8) % lines.len();
                    let swap = swaps[(x >> 40) as usize % swaps.len()];
                    let mut out = String::new();
                    for (k, l) in lines.iter().enumerate() {
                        match l.split_once('=') {
                            Some((key, _)) if k == n => out.push_str(&format!("{key}{swap}\n")),
                            _ => out.push_str(&format!("{l}\n")),
                        }
                    }
                    text = out.into_bytes();
                }
            }
            let text = String::from_utf8_lossy(&text);
            let _ = Config::parse(&text, "mutated.toml");
        }
    }
}
