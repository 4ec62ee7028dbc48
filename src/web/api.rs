//! The JSON API (`/api/v1/...`), `/metrics` and the page's assets behind one [`HttpHandler`],
//! with the security rules in front of every route.
//!
//! Owns: the route table ([`ROUTES`], which the OpenAPI test compares with `docs/openapi.yaml`),
//! request validation (JSON only, size-capped, unknown fields and wrong types refused with the
//! field named, nothing applied on any error), the order of checks (Host → route → auth → CSRF
//! → body), the running configuration and its save-then-apply protocol, sessions, the login
//! limiter, the event log and the webhook queue.
//!
//! Must not: touch hubs or sockets directly — everything live goes through [`Runtime`], which
//! the daemon implements (`web::live`) and the tests fake; read the clock (time comes from the
//! injected [`Clock`]); or answer anything but health, the session probe, the page and the
//! set-password call before a password exists.

use super::auth::{self, LoginLimiter, Sessions};
use super::events::{EventKind, EventLog, WebhookQueue};
use super::metrics::{self, ServerCounters};
use super::page;
use super::persist;
use super::status::{mask_push_url, Status};
use crate::config::{Config, PushConfig};
use crate::net::http::{HttpBody, HttpHandler, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::PathBuf;

/// Largest JSON body accepted (a whole config with 16 push targets is ~8 KB).
pub const MAX_JSON_BYTES: usize = 64 * 1024;
/// Logged-in browsers at once.
pub const MAX_SESSIONS: usize = 16;
/// A session unused this long is gone.
pub const SESSION_IDLE_MS: u64 = 12 * 3600 * 1000;
/// A session older than this is gone even if used.
pub const SESSION_MAX_MS: u64 = 7 * 24 * 3600 * 1000;
/// Events kept for the page.
pub const EVENT_LOG_LEN: usize = 256;
/// Webhook deliveries waiting at most.
pub const WEBHOOK_QUEUE_LEN: usize = 64;
/// Attempts per webhook delivery.
pub const WEBHOOK_ATTEMPTS: u32 = 4;
/// Placeholder the API shows instead of a push key; sending it back keeps the stored key.
pub const MASKED_KEY: &str = "********";

/// What the live daemon offers the API.
pub trait Runtime {
    /// A fresh snapshot (streams, viewers, push targets, memory).
    fn status(&self, cfg: &Config, now_ms: u64) -> Status;
    /// Disconnects viewer `id`; false if there is none.
    fn kick_viewer(&self, id: &str) -> bool;
    /// Restarts a stream's source task(s); false if there is no such stream.
    fn restart_source(&self, stream: &str, cfg: &Config) -> bool;
    /// Applies a saved change live as `plan` says (`new` is already the running config).
    fn apply(&self, plan: &ChangePlan, new: &Config);
    /// Server counters for `/metrics`.
    fn counters(&self) -> ServerCounters;
}

/// Time as the API sees it: a monotonic ms clock (sessions, limits) and wall-clock ms (event
/// stamps).
pub trait Clock {
    fn now_ms(&self) -> u64;
    fn unix_ms(&self) -> u64;
}

/// What a configuration change does to the running daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChangePlan {
    /// Streams whose source task restarts (viewers stay connected; they see a short gap).
    pub restart_sources: Vec<String>,
    /// Push targets (indices in the new list) that reconnect; others are untouched.
    pub restart_push: Vec<usize>,
    /// Applied at once without restarting anything.
    pub applied_live: Vec<String>,
    /// Saved, but takes effect only when the daemon restarts.
    pub needs_daemon_restart: Vec<String>,
}

impl ChangePlan {
    /// Compares two valid configurations.
    pub fn between(old: &Config, new: &Config) -> ChangePlan {
        let mut p = ChangePlan::default();
        if old.rtsp != new.rtsp {
            p.needs_daemon_restart.push("rtsp".into());
        }
        if (old.http.port, &old.http.bind) != (new.http.port, &new.http.bind) {
            p.needs_daemon_restart.push("http.port/bind".into());
        }
        if old.http.password_hash != new.http.password_hash {
            p.applied_live.push("password".into());
        }
        if old.http.allowed_hosts != new.http.allowed_hosts {
            p.applied_live.push("http.allowed_hosts".into());
        }
        if old.http.api_tokens != new.http.api_tokens {
            p.applied_live.push("http.api_tokens".into());
        }
        if old.media != new.media {
            p.needs_daemon_restart.push("media".into());
        }
        if old.webhooks != new.webhooks {
            p.applied_live.push("webhooks".into());
        }
        if old.streams.keys().ne(new.streams.keys()) {
            p.needs_daemon_restart
                .push("streams (added or removed)".into());
        }
        for (name, n) in &new.streams {
            let Some(o) = old.streams.get(name) else {
                continue;
            };
            if o.source != n.source || o.audio != n.audio {
                p.restart_sources.push(name.clone());
            }
            if (o.buffer_ms, o.max_bitrate_kbps) != (n.buffer_ms, n.max_bitrate_kbps) {
                p.needs_daemon_restart.push(format!(
                    "streams.{name}.buffer_ms/max_bitrate_kbps (memory plan)"
                ));
            }
            if o.auth != n.auth {
                p.needs_daemon_restart.push(format!("streams.{name}.auth"));
            }
        }
        for (i, t) in new.push.iter().enumerate() {
            if old.push.get(i) != Some(t) {
                p.restart_push.push(i);
            }
        }
        if old.push.len() > new.push.len() {
            p.applied_live.push(format!(
                "{} push target(s) removed",
                old.push.len() - new.push.len()
            ));
        }
        p
    }

    /// One-line summaries for the page and the `config_changed` event.
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .restart_sources
            .iter()
            .map(|s| format!("restarted the source of stream {s}"))
            .collect();
        v.extend(
            self.restart_push
                .iter()
                .map(|i| format!("(re)started push target {i}")),
        );
        v.extend(
            self.applied_live
                .iter()
                .map(|s| format!("applied live: {s}")),
        );
        v.extend(
            self.needs_daemon_restart
                .iter()
                .map(|s| format!("saved; takes effect after a daemon restart: {s}")),
        );
        v
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
enum Caller {
    Session(auth::Session),
    Token,
}

/// Which checks a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Anyone (subject to the Host check).
    Public,
    /// A session or a bearer token; a session also needs the CSRF header on changes.
    User,
}

/// Every route: method, path template (`{x}` = one path segment), access, handler id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Page,
    Health,
    Session,
    Setup,
    Login,
    Logout,
    Password,
    Status,
    Streams,
    Stream,
    StreamRestart,
    Viewers,
    ViewerKick,
    PushList,
    PushAdd,
    PushUpdate,
    PushRemove,
    ConfigGet,
    ConfigPut,
    ConfigValidate,
    Events,
    Tokens,
    TokenAdd,
    TokenRemove,
    Metrics,
}

/// The route table. `docs/openapi.yaml` lists exactly the `/api` and `/metrics` entries.
pub const ROUTES: &[(&str, &str, Route)] = &[
    ("GET", "/api/v1/health", Route::Health),
    ("GET", "/api/v1/session", Route::Session),
    ("POST", "/api/v1/setup", Route::Setup),
    ("POST", "/api/v1/login", Route::Login),
    ("POST", "/api/v1/logout", Route::Logout),
    ("PUT", "/api/v1/password", Route::Password),
    ("GET", "/api/v1/status", Route::Status),
    ("GET", "/api/v1/streams", Route::Streams),
    ("GET", "/api/v1/streams/{name}", Route::Stream),
    (
        "POST",
        "/api/v1/streams/{name}/restart",
        Route::StreamRestart,
    ),
    ("GET", "/api/v1/viewers", Route::Viewers),
    ("DELETE", "/api/v1/viewers/{id}", Route::ViewerKick),
    ("GET", "/api/v1/push", Route::PushList),
    ("POST", "/api/v1/push", Route::PushAdd),
    ("PUT", "/api/v1/push/{index}", Route::PushUpdate),
    ("DELETE", "/api/v1/push/{index}", Route::PushRemove),
    ("GET", "/api/v1/config", Route::ConfigGet),
    ("PUT", "/api/v1/config", Route::ConfigPut),
    ("POST", "/api/v1/config/validate", Route::ConfigValidate),
    ("GET", "/api/v1/events", Route::Events),
    ("GET", "/api/v1/tokens", Route::Tokens),
    ("POST", "/api/v1/tokens", Route::TokenAdd),
    ("DELETE", "/api/v1/tokens/{index}", Route::TokenRemove),
    ("GET", "/metrics", Route::Metrics),
];

fn access(r: Route) -> Access {
    match r {
        Route::Page | Route::Health | Route::Session | Route::Setup | Route::Login => {
            Access::Public
        }
        _ => Access::User,
    }
}

/// Matches `path` against a template; fills `param` with the `{x}` segment (percent-decoded).
fn match_template(tpl: &str, path: &str, param: &mut String) -> bool {
    let (mut t, mut p) = (tpl.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') => match percent_decode(ps) {
                Some(d) if !d.is_empty() => *param = d,
                _ => return false,
            },
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Finds the route; Err(405) when the path exists with other methods, Err(404) otherwise.
pub fn route(method: &str, path: &str) -> Result<(Route, String), u16> {
    if page::asset(path).is_some() {
        return if method == "GET" {
            Ok((Route::Page, String::new()))
        } else {
            Err(405)
        };
    }
    let mut param = String::new();
    let mut path_known = false;
    for &(m, tpl, r) in ROUTES {
        if match_template(tpl, path, &mut param) {
            if m == method {
                return Ok((r, param));
            }
            path_known = true;
        }
    }
    Err(if path_known { 405 } else { 404 })
}

/// An API error: status, the offending field (dotted path) if any, and a sentence.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

fn err(status: u16, msg: impl Into<String>) -> ApiError {
    ApiError {
        status,
        error: msg.into(),
        field: None,
    }
}

fn field_err(field: impl Into<String>, msg: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        error: msg.into(),
        field: Some(field.into()),
    }
}

fn json_response(status: u16, v: &impl Serialize) -> HttpResponse {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    page::security_headers(
        HttpResponse::new(status, HttpBody::Bytes(body))
            .with_header("Content-Type", "application/json")
            .with_header("Cache-Control", "no-store"),
    )
}

fn error_response(e: ApiError) -> HttpResponse {
    let r = json_response(e.status, &e);
    if e.status == 401 {
        r.with_header("WWW-Authenticate", "Bearer realm=\"rillcast\"")
    } else {
        r
    }
}

/// Checks the content type and size of a JSON body.
fn check_json_body(req: &HttpRequest<'_>) -> Result<(), ApiError> {
    let ctype = req.header("content-type").unwrap_or("");
    if !ctype
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(err(415, "send Content-Type: application/json"));
    }
    if req.body.len() > MAX_JSON_BYTES {
        return Err(err(413, format!("body over {MAX_JSON_BYTES} bytes")));
    }
    Ok(())
}

/// Parses a small JSON body into `T` (which denies unknown fields); serde's messages name a
/// missing or unknown field.
fn parse_json<T: DeserializeOwned>(req: &HttpRequest<'_>) -> Result<T, ApiError> {
    check_json_body(req)?;
    serde_json::from_slice(req.body).map_err(|e| {
        let s = e.to_string();
        let msg = s.split(" at line ").next().unwrap_or(&s).to_string();
        if e.is_syntax() || e.is_eof() {
            err(400, format!("malformed JSON: {msg}"))
        } else {
            err(400, msg)
        }
    })
}

/// A JSON object body as TOML text, so it goes through the same typed parser as the config
/// file (and the binary carries one deserializer per type, not two). `null` means "absent"
/// (the default). Errors name the field: the TOML is regular, so an error's line gives the
/// dotted path (see [`toml_path_at`]).
fn json_body_as_toml(req: &HttpRequest<'_>) -> Result<String, ApiError> {
    check_json_body(req)?;
    let v: serde_json::Value = serde_json::from_slice(req.body).map_err(|e| {
        let s = e.to_string();
        err(
            400,
            format!(
                "malformed JSON: {}",
                s.split(" at line ").next().unwrap_or(&s)
            ),
        )
    })?;
    fn strip_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    let mut v = v;
    if !v.is_object() {
        return Err(err(400, "expected a JSON object"));
    }
    strip_nulls(&mut v);
    let t: toml::Table = serde_json::from_value(v)
        .map_err(|e| err(400, format!("not representable as configuration: {e}")))?;
    toml::to_string(&t).map_err(|e| err(400, e.to_string()))
}

/// Parses TOML text made by [`json_body_as_toml`] into `T`, naming the field on error.
fn from_toml_body<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    toml::from_str(text).map_err(|e| {
        let field = e.span().map(|sp| toml_path_at(text, sp.start));
        ApiError {
            status: 400,
            error: e.message().trim_end().to_string(),
            field: field.filter(|f| !f.is_empty()),
        }
    })
}

/// The dotted path (`streams.live.source.fps`, `push.0.url`) of whatever is at byte `offset`
/// of TOML text written by `toml::to_string` (one `key = value` per line under `[table]` and
/// `[[array]]` headers).
pub fn toml_path_at(text: &str, offset: usize) -> String {
    let mut prefix = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let t = line.trim();
        let here = offset >= start && offset < pos;
        if let Some(name) = t.strip_prefix("[[").and_then(|x| x.strip_suffix("]]")) {
            let name = name.replace('"', "");
            let i = match counts.iter_mut().find(|c| c.0 == name) {
                Some(c) => {
                    c.1 += 1;
                    c.1
                }
                None => {
                    counts.push((name.clone(), 0));
                    0
                }
            };
            prefix = format!("{name}.{i}");
            if here {
                return prefix;
            }
        } else if let Some(name) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            prefix = name.replace('"', "");
            // A sub-table of an array of tables: `[push.source]` continues `push.N`.
            for (n, i) in &counts {
                if let Some(rest) = prefix.strip_prefix(&format!("{n}.")) {
                    prefix = format!("{n}.{i}.{rest}");
                }
            }
            if here {
                return prefix;
            }
        } else if here {
            let key = t.split('=').next().unwrap_or("").trim().replace('"', "");
            return if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
        }
    }
    prefix
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current: String,
    new: String,
}

/// A push target as the API takes it (same fields as `[[push]]`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    url: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default = "live")]
    stream: String,
    #[serde(default = "yes")]
    enabled: bool,
}

fn live() -> String {
    "live".into()
}

fn yes() -> bool {
    true
}

/// Everything behind the HTTP port except media.
pub struct WebApi<R: Runtime, C: Clock> {
    pub rt: R,
    pub clock: C,
    st: RefCell<WebState>,
}

struct WebState {
    cfg: Config,
    config_path: Option<PathBuf>,
    last_good_path: Option<PathBuf>,
    board: crate::boot::Limits,
    own_names: Vec<String>,
    sessions: Sessions,
    limiter: LoginLimiter,
    events: EventLog,
    webhooks: WebhookQueue,
    random: RandomFill,
    metrics_buf: String,
    /// Last snapshot the observer diffed against.
    last_seen: Option<Status>,
    /// Woken when a webhook delivery is queued.
    webhook_wake: Option<smol::channel::Sender<()>>,
    /// Test hook: scrypt cost for new passwords.
    scrypt_log_n: u8,
}

/// Fills a buffer with random bytes (the OS's in the daemon, a counter in tests).
pub type RandomFill = Box<dyn FnMut(&mut [u8])>;

/// Options for [`WebApi::new`].
pub struct WebOptions {
    pub config_path: Option<PathBuf>,
    /// Where each successful save is also kept as the last good copy (see `crate::boot`).
    pub last_good_path: Option<PathBuf>,
    /// The board's figures and encoder, so a save is checked as the next start-up will be.
    pub board: crate::boot::Limits,
    /// This machine's names (hostname, hostname.local) accepted in `Host`.
    pub own_names: Vec<String>,
    pub random: RandomFill,
    pub scrypt_log_n: u8,
}

impl<R: Runtime, C: Clock> WebApi<R, C> {
    pub fn new(cfg: Config, rt: R, clock: C, o: WebOptions) -> Self {
        WebApi {
            rt,
            clock,
            st: RefCell::new(WebState {
                cfg,
                config_path: o.config_path,
                last_good_path: o.last_good_path,
                board: o.board,
                own_names: o.own_names,
                sessions: Sessions::new(MAX_SESSIONS, SESSION_IDLE_MS, SESSION_MAX_MS),
                limiter: LoginLimiter::new(64, 60_000, 5, 20),
                events: EventLog::new(EVENT_LOG_LEN),
                webhooks: WebhookQueue::new(WEBHOOK_QUEUE_LEN, WEBHOOK_ATTEMPTS, 2000),
                random: o.random,
                metrics_buf: String::new(),
                last_seen: None,
                webhook_wake: None,
                scrypt_log_n: o.scrypt_log_n,
            }),
        }
    }

    /// The running configuration.
    pub fn config(&self) -> Config {
        self.st.borrow().cfg.clone()
    }

    /// True when push targets are configured.
    pub fn has_push_targets(&self) -> bool {
        !self.st.borrow().cfg.push.is_empty()
    }

    /// Records an event and queues it for the webhooks.
    pub fn emit(&self, kind: EventKind) {
        let unix = self.clock.unix_ms();
        let now = self.clock.now_ms();
        let mut st = self.st.borrow_mut();
        let WebState {
            events,
            webhooks,
            cfg,
            ..
        } = &mut *st;
        let e = events.push(kind, unix);
        let urls: Vec<String> = cfg.webhooks.iter().map(|w| w.url.clone()).collect();
        webhooks.enqueue(e, &urls, now);
        if !urls.is_empty() {
            if let Some(w) = &st.webhook_wake {
                // Full means a wake-up is already pending: nothing lost.
                let _ = w.try_send(());
            }
        }
    }

    /// A receiver that gets a message whenever a webhook delivery is queued (one slot: several
    /// queued deliveries may share one wake-up).
    pub fn webhook_wakeups(&self) -> smol::channel::Receiver<()> {
        let (tx, rx) = smol::channel::bounded(1);
        self.st.borrow_mut().webhook_wake = Some(tx);
        rx
    }

    /// A viewer started (`joined`) or stopped watching; called by the protocol servers at the
    /// moment it happens (a viewer that comes and goes between two samples is still seen).
    pub fn viewer_event(&self, stream: &str, protocol: &str, viewer: &str, joined: bool) {
        let (stream, protocol, viewer) = (stream.into(), protocol.into(), viewer.into());
        self.emit(if joined {
            EventKind::ViewerConnected {
                stream,
                protocol,
                viewer,
            }
        } else {
            EventKind::ViewerDisconnected {
                stream,
                protocol,
                viewer,
            }
        });
    }

    /// Takes the next webhook delivery that is due (for the sender task).
    pub fn webhook_due(&self) -> Option<super::events::Delivery> {
        let now = self.clock.now_ms();
        self.st.borrow_mut().webhooks.take_due(now)
    }

    /// Milliseconds until the earliest waiting delivery is due (0 = now), if any.
    pub fn webhook_next_due_in_ms(&self) -> Option<u64> {
        let now = self.clock.now_ms();
        let due = self.st.borrow().webhooks.next_due_ms()?;
        Some(due.saturating_sub(now))
    }

    /// Hands a delivery's outcome back.
    pub fn webhook_done(&self, d: super::events::Delivery, ok: bool) {
        let now = self.clock.now_ms();
        self.st.borrow_mut().webhooks.finished(d, ok, now);
    }

    /// The observer: diffs a fresh snapshot against the last one and emits stream and push
    /// events (viewer events come from [`WebApi::viewer_event`]). The daemon calls it when its sampler thread sees a change.
    pub fn observe(&self) {
        let now = self.clock.now_ms();
        let snap = {
            let st = self.st.borrow();
            self.rt.status(&st.cfg, now)
        };
        let prev = self.st.borrow_mut().last_seen.take();
        let mut out = Vec::new();
        if let Some(prev) = &prev {
            diff_events(prev, &snap, &mut out);
        }
        for k in out {
            self.emit(k);
        }
        self.st.borrow_mut().last_seen = Some(snap);
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// True when `req` carries a live web session cookie and a Host the API accepts: lets
    /// the media routes (HLS of a protected stream) serve the page's logged-in user. Media
    /// is GET-only, so no CSRF token is asked; the cookie is SameSite=Strict.
    pub fn session_valid(&self, req: &HttpRequest<'_>) -> bool {
        let now = self.clock.now_ms();
        let mut st = self.st.borrow_mut();
        if !auth::host_allowed(
            req.header("host"),
            &st.cfg.http.allowed_hosts,
            &st.own_names,
        ) {
            return false;
        }
        req.header("cookie")
            .and_then(|c| auth::cookie(c, auth::SESSION_COOKIE))
            .is_some_and(|sid| st.sessions.check(sid, now).is_some())
    }

    fn random<const N: usize>(&self) -> [u8; N] {
        let mut b = [0u8; N];
        (self.st.borrow_mut().random)(&mut b);
        b
    }

    /// Who is calling, if anyone valid.
    fn caller(&self, req: &HttpRequest<'_>) -> Result<Caller, ApiError> {
        let mut st = self.st.borrow_mut();
        if let Some(a) = req.header("authorization") {
            let tok = a
                .strip_prefix("Bearer ")
                .ok_or_else(|| err(401, "Authorization must be `Bearer TOKEN`"))?;
            return if auth::token_matches(tok.trim(), &st.cfg.http.api_tokens) {
                Ok(Caller::Token)
            } else {
                Err(err(401, "unknown API token"))
            };
        }
        let now = self.clock.now_ms();
        let sid = req
            .header("cookie")
            .and_then(|c| auth::cookie(c, auth::SESSION_COOKIE))
            .ok_or_else(|| err(401, "log in first"))?;
        st.sessions
            .check(sid, now)
            .map(Caller::Session)
            .ok_or_else(|| err(401, "session expired: log in again"))
    }

    fn dispatch(&self, req: &HttpRequest<'_>) -> Result<HttpResponse, ApiError> {
        {
            let st = self.st.borrow();
            if !auth::host_allowed(
                req.header("host"),
                &st.cfg.http.allowed_hosts,
                &st.own_names,
            ) {
                return Err(err(
                    403,
                    "Host not allowed: add it to [http] allowed_hosts (DNS-rebinding guard)",
                ));
            }
        }
        let (route, param) = route(req.method, req.path).map_err(|s| match s {
            405 => err(405, "method not allowed"),
            _ => err(404, "no such endpoint"),
        })?;
        if route == Route::Page {
            // The asset exists: route() checked.
            return page::asset(req.path).ok_or_else(|| err(404, "no such page"));
        }
        let password_set = self.st.borrow().cfg.http.password_hash.is_some();
        if access(route) == Access::User {
            if !password_set {
                return Err(err(403, "set a password first (POST /api/v1/setup)"));
            }
            let caller = self.caller(req)?;
            if req.method != "GET" {
                if let Caller::Session(s) = &caller {
                    let ok = req
                        .header("x-csrf-token")
                        .is_some_and(|t| auth::ct_eq(t.as_bytes(), s.csrf.as_bytes()));
                    if !ok {
                        return Err(err(403, "missing or wrong X-CSRF-Token header"));
                    }
                }
            }
            return self.user_route(route, &param, req, &caller);
        }
        self.public_route(route, req, password_set)
    }

    fn public_route(
        &self,
        route: Route,
        req: &HttpRequest<'_>,
        password_set: bool,
    ) -> Result<HttpResponse, ApiError> {
        match route {
            Route::Health => {
                let st = self.st.borrow();
                let s = self.rt.status(&st.cfg, self.now());
                #[derive(Serialize)]
                struct Health<'a> {
                    up: bool,
                    version: &'a str,
                    streams_live: Vec<(String, bool)>,
                }
                Ok(json_response(
                    200,
                    &Health {
                        up: true,
                        version: env!("CARGO_PKG_VERSION"),
                        streams_live: s.streams.iter().map(|x| (x.name.clone(), x.live)).collect(),
                    },
                ))
            }
            Route::Session => {
                let caller = self.caller(req).ok();
                let csrf = match &caller {
                    Some(Caller::Session(s)) => Some(s.csrf.clone()),
                    _ => None,
                };
                Ok(json_response(
                    200,
                    &serde_json::json!({
                        "setup_required": !password_set,
                        "logged_in": caller.is_some() && password_set,
                        "csrf": csrf,
                    }),
                ))
            }
            Route::Setup => {
                if password_set {
                    return Err(err(409, "a password is already set; log in"));
                }
                let b: PasswordBody = parse_json(req)?;
                auth::check_new_password(&b.password)
                    .map_err(|e| field_err("password", e.message()))?;
                let salt = self.random::<16>();
                let log_n = self.st.borrow().scrypt_log_n;
                let mut new = self.config();
                new.http.password_hash = Some(auth::hash_password_with(
                    &b.password,
                    &salt,
                    log_n,
                    auth::SCRYPT_R,
                    auth::SCRYPT_P,
                ));
                self.save_and_apply(new)?;
                Ok(self.new_session_response())
            }
            Route::Login => {
                if !password_set {
                    return Err(err(403, "set a password first (POST /api/v1/setup)"));
                }
                let b: PasswordBody = parse_json(req)?;
                self.check_password(req, &b.password)?;
                Ok(self.new_session_response())
            }
            // Every other route is Access::User.
            _ => Err(err(404, "no such endpoint")),
        }
    }

    /// Rate-limited password check.
    fn check_password(&self, req: &HttpRequest<'_>, pw: &str) -> Result<(), ApiError> {
        let now = self.now();
        let ip = req.peer.ip();
        let mut st = self.st.borrow_mut();
        if let Err(wait_s) = st.limiter.allow(ip, now) {
            return Err(err(
                429,
                format!("too many attempts; try again in {wait_s} s"),
            ));
        }
        let stored = st.cfg.http.password_hash.clone().unwrap_or_default();
        match auth::verify_password(pw, &stored) {
            Ok(true) => {
                st.limiter.succeeded(ip);
                Ok(())
            }
            Ok(false) => {
                st.limiter.failed(ip, now);
                Err(err(401, "wrong password"))
            }
            Err(e) => Err(err(500, e.message())),
        }
    }

    fn new_session_response(&self) -> HttpResponse {
        let r = self.random::<32>();
        let now = self.now();
        let s = self.st.borrow_mut().sessions.create(&r, now);
        json_response(200, &serde_json::json!({ "csrf": s.csrf })).with_header(
            "Set-Cookie",
            auth::session_cookie(&s.id, SESSION_MAX_MS / 1000),
        )
    }

    fn user_route(
        &self,
        route: Route,
        param: &str,
        req: &HttpRequest<'_>,
        caller: &Caller,
    ) -> Result<HttpResponse, ApiError> {
        let host = req
            .header("host")
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| !p.contains(']'))
                    .map_or(h, |(h, _)| h)
            })
            .unwrap_or("localhost")
            .to_string();
        match route {
            Route::Logout => {
                if let Caller::Session(s) = caller {
                    self.st.borrow_mut().sessions.remove(&s.id);
                }
                Ok(json_response(200, &serde_json::json!({}))
                    .with_header("Set-Cookie", auth::clear_cookie()))
            }
            Route::Password => {
                let b: PasswordChange = parse_json(req)?;
                auth::check_new_password(&b.new).map_err(|e| field_err("new", e.message()))?;
                self.check_password(req, &b.current).map_err(|e| {
                    if e.status == 401 {
                        field_err("current", "wrong password")
                    } else {
                        e
                    }
                })?;
                let salt = self.random::<16>();
                let log_n = self.st.borrow().scrypt_log_n;
                let mut new = self.config();
                new.http.password_hash = Some(auth::hash_password_with(
                    &b.new,
                    &salt,
                    log_n,
                    auth::SCRYPT_R,
                    auth::SCRYPT_P,
                ));
                self.save_and_apply(new)?;
                self.st.borrow_mut().sessions.clear();
                Ok(self.new_session_response())
            }
            Route::Status => {
                let st = self.st.borrow();
                Ok(json_response(200, &self.rt.status(&st.cfg, self.now())))
            }
            Route::Streams | Route::Stream => {
                let st = self.st.borrow();
                let s = self.rt.status(&st.cfg, self.now());
                let with_urls = |x: &super::status::StreamStatus| {
                    let mut v = serde_json::to_value(x).unwrap_or_default();
                    v["rtsp_url"] = format!("rtsp://{host}:{}{}", s.rtsp_port, x.rtsp_path).into();
                    v["hls_url"] = format!("http://{host}:{}{}", s.http_port, x.hls_path).into();
                    v
                };
                if route == Route::Streams {
                    let v: Vec<_> = s.streams.iter().map(with_urls).collect();
                    return Ok(json_response(200, &v));
                }
                let x = s
                    .streams
                    .iter()
                    .find(|x| x.name == param)
                    .ok_or_else(|| err(404, "no such stream"))?;
                Ok(json_response(200, &with_urls(x)))
            }
            Route::StreamRestart => {
                if !self.rt.restart_source(param, &self.config()) {
                    return Err(err(404, "no such stream"));
                }
                self.emit(EventKind::SourceRestarted {
                    stream: param.into(),
                    reason: "restarted from the API".into(),
                });
                Ok(json_response(200, &serde_json::json!({"restarted": param})))
            }
            Route::Viewers => {
                let st = self.st.borrow();
                Ok(json_response(
                    200,
                    &self.rt.status(&st.cfg, self.now()).viewers,
                ))
            }
            Route::ViewerKick => {
                if self.rt.kick_viewer(param) {
                    Ok(json_response(200, &serde_json::json!({"kicked": param})))
                } else {
                    Err(err(404, "no such viewer"))
                }
            }
            Route::PushList => {
                let st = self.st.borrow();
                Ok(json_response(
                    200,
                    &self.rt.status(&st.cfg, self.now()).push,
                ))
            }
            Route::PushAdd | Route::PushUpdate => {
                let b: PushBody = from_toml_body(&json_body_as_toml(req)?)?;
                let mut new = self.config();
                let target = PushConfig {
                    url: b.url,
                    key: b.key,
                    stream: b.stream,
                    enabled: b.enabled,
                    ..Default::default()
                };
                let index = if route == Route::PushAdd {
                    new.push.push(target);
                    new.push.len() - 1
                } else {
                    let i = push_index(param, new.push.len())?;
                    let mut target = target;
                    if target.key.as_deref() == Some(MASKED_KEY) {
                        target.key = new.push[i].key.clone();
                    }
                    // Settings the API does not carry (ca_file, backoff, queue) are kept.
                    let old = &new.push[i];
                    target.ca_file = old.ca_file.clone();
                    target.backoff_max_ms = old.backoff_max_ms;
                    target.queue_kib = old.queue_kib;
                    new.push[i] = target;
                    i
                };
                if let Err((f, m)) = crate::config::validate_push(&new.push[index], &new.streams) {
                    return Err(field_err(f, m));
                }
                let r = self.save_and_apply(new)?;
                Ok(json_response(
                    200,
                    &serde_json::json!({"index": index, "result": r}),
                ))
            }
            Route::PushRemove => {
                let mut new = self.config();
                let i = push_index(param, new.push.len())?;
                new.push.remove(i);
                let r = self.save_and_apply(new)?;
                Ok(json_response(200, &serde_json::json!({"result": r})))
            }
            Route::ConfigGet => Ok(json_response(200, &redact(&self.config()))),
            Route::ConfigPut | Route::ConfigValidate => {
                let new = self.complete_config(&json_body_as_toml(req)?)?;
                let plan = ChangePlan::between(&self.config(), &new);
                if route == Route::ConfigValidate {
                    self.check_bootable(&new)?;
                    return Ok(json_response(
                        200,
                        &serde_json::json!({"ok": true, "plan": plan}),
                    ));
                }
                let r = self.save_and_apply(new)?;
                Ok(json_response(200, &r))
            }
            Route::Events => {
                let since = req
                    .query
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("since=")))
                    .map(|v| {
                        v.parse::<u64>()
                            .map_err(|_| field_err("since", "must be a number"))
                    })
                    .transpose()?
                    .unwrap_or(0);
                let st = self.st.borrow();
                let ev: Vec<_> = st.events.since(since, 100).collect();
                Ok(json_response(
                    200,
                    &serde_json::json!({"next": st.events.next_seq(), "events": ev}),
                ))
            }
            Route::Tokens => {
                let st = self.st.borrow();
                let v: Vec<_> = st
                    .cfg
                    .http
                    .api_tokens
                    .iter()
                    .enumerate()
                    .map(|(i, h)| serde_json::json!({"index": i, "hash_prefix": h.get(..15).unwrap_or(h)}))
                    .collect();
                Ok(json_response(200, &v))
            }
            Route::TokenAdd => {
                let raw = self.random::<32>();
                let token = auth::hex(&raw);
                let mut new = self.config();
                new.http.api_tokens.push(auth::hash_token(&token));
                let index = new.http.api_tokens.len() - 1;
                self.save_and_apply(new)?;
                Ok(json_response(
                    200,
                    &serde_json::json!({"index": index, "token": token}),
                ))
            }
            Route::TokenRemove => {
                let mut new = self.config();
                let i = push_index(param, new.http.api_tokens.len())?;
                new.http.api_tokens.remove(i);
                self.save_and_apply(new)?;
                Ok(json_response(200, &serde_json::json!({"removed": i})))
            }
            Route::Metrics => {
                let s = {
                    let st = self.st.borrow();
                    self.rt.status(&st.cfg, self.now())
                };
                let c = ServerCounters {
                    webhooks: self.st.borrow().webhooks.stats,
                    events: self.st.borrow().events.next_seq() - 1,
                    ..self.rt.counters()
                };
                let mut st = self.st.borrow_mut();
                metrics::render(&mut st.metrics_buf, &s, &c);
                Ok(
                    HttpResponse::new(200, HttpBody::Bytes(st.metrics_buf.as_bytes().to_vec()))
                        .with_header("Content-Type", metrics::CONTENT_TYPE)
                        .with_header("Cache-Control", "no-store"),
                )
            }
            _ => Err(err(404, "no such endpoint")),
        }
    }

    /// A config from the API (as TOML text) → a full valid config: typed parse (errors name
    /// the field), then the same defaults, board encoder and validation as the file; secrets
    /// the API never shows are taken from the running config.
    fn complete_config(&self, text: &str) -> Result<Config, ApiError> {
        let (running, encoder) = {
            let st = self.st.borrow();
            (st.cfg.clone(), st.board.encoder.clone())
        };
        // Type errors and unknown keys, with their field.
        let _: Config = from_toml_body(text)?;
        // Defaults, the board's encoder and cross-field checks: "dotted.key: problem".
        let mut c =
            Config::parse_with_encoder(text, "request", encoder.as_deref()).map_err(|e| {
                let (field, msg) = e
                    .message
                    .split_once(": ")
                    .map_or((None, e.message.as_str()), |(f, m)| {
                        (Some(f.to_string()), m)
                    });
                ApiError {
                    status: 400,
                    error: msg.to_string(),
                    field,
                }
            })?;
        c.http.password_hash = running.http.password_hash.clone();
        c.http.api_tokens = running.http.api_tokens.clone();
        for (i, p) in c.push.iter_mut().enumerate() {
            if p.key.as_deref() == Some(MASKED_KEY) {
                p.key = running.push.get(i).and_then(|r| r.key.clone());
            }
        }
        c.validate().map_err(|(f, m)| field_err(f, m))?;
        Ok(c)
    }

    /// Start-up's own checks (`boot::check`: validation, port conflicts, memory plan with the
    /// board's figures) on a config about to be saved, plus: a listening port that changes
    /// must be free now. A config that could not boot is refused with the key to change.
    fn check_bootable(&self, new: &Config) -> Result<(), ApiError> {
        let (old, limits) = {
            let st = self.st.borrow();
            (st.cfg.clone(), st.board.clone())
        };
        crate::boot::check(new, &limits).map_err(|e| ApiError {
            status: 400,
            error: e.message,
            field: e.field,
        })?;
        let tcp = [
            (
                "http.port",
                (&old.http.bind, old.http.port),
                (&new.http.bind, new.http.port),
            ),
            (
                "rtsp.port",
                (&old.rtsp.bind, old.rtsp.port),
                (&new.rtsp.bind, new.rtsp.port),
            ),
        ];
        for (key, was, now) in tcp {
            if was == now {
                continue;
            }
            // Our own other listener may hold it (ports swapped): the next start frees it.
            let ours = [
                (&old.http.bind, old.http.port),
                (&old.rtsp.bind, old.rtsp.port),
            ];
            if ours.contains(&now) {
                continue;
            }
            if let Err(e) = std::net::TcpListener::bind((now.0.as_str(), now.1)) {
                return Err(field_err(
                    key,
                    format!("{}:{} cannot be listened on: {e}", now.0, now.1),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `new` boots, saves it (if there is a config file) and keeps it as the last
    /// good copy, then makes it the running config and applies it. On a refused or failed
    /// save nothing changes.
    fn save_and_apply(&self, new: Config) -> Result<serde_json::Value, ApiError> {
        self.check_bootable(&new)?;
        let (old, path, last_good) = {
            let st = self.st.borrow();
            (
                st.cfg.clone(),
                st.config_path.clone(),
                st.last_good_path.clone(),
            )
        };
        if let Some(path) = &path {
            let original = std::fs::read_to_string(path).unwrap_or_default();
            let encoder = self.st.borrow().board.encoder.clone();
            let rendered = persist::render_preserving(&original, &old, &new)
                .ok()
                .filter(|t| {
                    Config::parse_with_encoder(t, "x", encoder.as_deref()).as_ref() == Ok(&new)
                });
            // Fallback when the file is not valid TOML any more: the whole config, comments lost.
            let text = match rendered {
                Some(t) => t,
                None => toml::to_string(&new).map_err(|e| err(500, e.to_string()))?,
            };
            persist::save_atomic(path, text.as_bytes()).map_err(|e| {
                log::error!("config not saved: {e}; the running configuration stays");
                // 507 Insufficient Storage (RFC 4918 §11.5): a full or read-only card.
                err(
                    if e.no_space() { 507 } else { 500 },
                    format!("{e}; nothing was changed, the running configuration stays"),
                )
            })?;
            if let Some(lg) = &last_good {
                if let Err(e) = persist::keep_last_good(lg, text.as_bytes()) {
                    log::warn!("saved, but the last good copy was not updated: {e}");
                }
            }
        }
        let plan = ChangePlan::between(&old, &new);
        self.st.borrow_mut().cfg = new.clone();
        self.rt.apply(&plan, &new);
        let summary = plan.describe();
        if plan != ChangePlan::default() {
            self.emit(EventKind::ConfigChanged {
                restarted: summary.clone(),
            });
        }
        Ok(serde_json::json!({
            "saved": path.is_some(),
            "file": path.map(|p| p.display().to_string()),
            "changes": summary,
            "plan": plan,
        }))
    }
}

fn push_index(param: &str, len: usize) -> Result<usize, ApiError> {
    match param.parse::<usize>() {
        Ok(i) if i < len => Ok(i),
        _ => Err(err(404, "no such index")),
    }
}

/// The config as the API shows it: no password hash, no token hashes, push keys masked.
pub fn redact(c: &Config) -> Config {
    let mut c = c.clone();
    c.http.password_hash = None;
    c.http.api_tokens.clear();
    for p in &mut c.push {
        if p.key.is_some() {
            p.key = Some(MASKED_KEY.into());
        }
        p.url = if p.url.splitn(5, '/').count() > 4 {
            mask_push_url(&p.url)
        } else {
            p.url.clone()
        };
    }
    c
}

/// Events implied by two consecutive snapshots.
pub fn diff_events(prev: &Status, now: &Status, out: &mut Vec<EventKind>) {
    for s in &now.streams {
        let p = prev.streams.iter().find(|p| p.name == s.name);
        let was_live = p.is_some_and(|p| p.live);
        if s.live && !was_live {
            out.push(EventKind::StreamStarted {
                stream: s.name.clone(),
            });
        }
        if !s.live && was_live {
            out.push(EventKind::StreamStopped {
                stream: s.name.clone(),
            });
        }
        if let Some(p) = p {
            if s.source_restarts > p.source_restarts {
                out.push(EventKind::SourceRestarted {
                    stream: s.name.clone(),
                    reason: "the source restarted (it ended, failed, or was changed)".into(),
                });
            }
            if p.live && s.live && (p.codec, p.width, p.height) != (s.codec, s.width, s.height) {
                out.push(EventKind::ParametersChanged {
                    stream: s.name.clone(),
                    codec: s.codec.unwrap_or("").into(),
                    width: s.width,
                    height: s.height,
                });
            }
        }
    }
    for t in &now.push {
        let p = prev.push.iter().find(|p| p.index == t.index);
        let (pstate, perr) = p.map_or(("", None), |p| (p.state, p.last_error.as_deref()));
        if t.state == pstate && t.last_error.as_deref() == perr {
            continue;
        }
        match t.state {
            "publishing" => out.push(EventKind::PushConnected {
                target: t.index,
                stream: t.stream.clone(),
            }),
            "backing_off" => {
                if let Some(e) = &t.last_error {
                    out.push(EventKind::PushFailed {
                        target: t.index,
                        stream: t.stream.clone(),
                        error: e.clone(),
                    });
                }
                out.push(EventKind::PushBackingOff {
                    target: t.index,
                    stream: t.stream.clone(),
                    attempt: t.attempt,
                    retry_in_ms: t.next_retry_s.unwrap_or(0) * 1000,
                });
            }
            _ => {}
        }
    }
}

impl<R: Runtime, C: Clock> HttpHandler for WebApi<R, C> {
    fn handle(&self, req: &HttpRequest<'_>) -> Option<HttpResponse> {
        let ours = req.path.starts_with("/api/")
            || req.path == "/metrics"
            || page::asset(req.path).is_some();
        if !ours {
            return None;
        }
        Some(self.dispatch(req).unwrap_or_else(error_response))
    }

    fn max_body_bytes(&self, path: &str) -> Option<usize> {
        path.starts_with("/api/").then_some(MAX_JSON_BYTES)
    }
}
