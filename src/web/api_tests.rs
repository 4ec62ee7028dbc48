//! Handler-level tests of the API: every route and every rejection (Host, auth, CSRF, caps,
//! bad JSON, wrong types, unknown fields, out-of-range values), against a fake runtime and a
//! simulated clock — no sockets.

use super::api::*;
use super::status::{Status, StreamStatus, ViewerInfo};
use crate::config::Config;
use crate::net::http::{HttpBody, HttpHandler, HttpRequest, HttpResponse};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

#[derive(Default)]
struct Fake {
    kicked: RefCell<Vec<String>>,
    applied: RefCell<Vec<ChangePlan>>,
    restarted: RefCell<Vec<String>>,
    live: Cell<bool>,
    viewers: RefCell<Vec<ViewerInfo>>,
}

impl Runtime for Rc<Fake> {
    fn status(&self, cfg: &Config, _now_ms: u64) -> Status {
        Status {
            version: "t",
            streams: cfg
                .streams
                .keys()
                .map(|n| StreamStatus {
                    name: n.clone(),
                    live: self.live.get(),
                    bitrate_kbps: 1500,
                    rtsp_path: format!("/{n}"),
                    ..Default::default()
                })
                .collect(),
            viewers: self.viewers.borrow().clone(),
            rtsp_port: 8554,
            http_port: 8080,
            ..Default::default()
        }
    }
    fn kick_viewer(&self, id: &str) -> bool {
        self.kicked.borrow_mut().push(id.into());
        id == "rtsp-1.2.3.4:5"
    }
    fn restart_source(&self, stream: &str, cfg: &Config) -> bool {
        self.restarted.borrow_mut().push(stream.into());
        cfg.streams.contains_key(stream)
    }
    fn apply(&self, plan: &ChangePlan, _new: &Config) {
        self.applied.borrow_mut().push(plan.clone());
    }
    fn counters(&self) -> super::metrics::ServerCounters {
        Default::default()
    }
}

#[derive(Clone)]
struct TestClock(Rc<Cell<u64>>);
impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
    fn unix_ms(&self) -> u64 {
        1_700_000_000_000 + self.0.get()
    }
}

struct T {
    api: WebApi<Rc<Fake>, TestClock>,
    fake: Rc<Fake>,
    clock: Rc<Cell<u64>>,
    path: PathBuf,
    cookie: String,
    csrf: String,
}

const PW: &str = "correct horse battery";

fn setup(tag: &str, file: &str) -> T {
    let dir = std::env::temp_dir().join(format!("rillcast-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rillcast.toml");
    std::fs::write(&path, file).unwrap();
    let cfg = Config::parse(file, "t").unwrap();
    let fake = Rc::new(Fake::default());
    fake.live.set(true);
    let clock = Rc::new(Cell::new(1000));
    let mut n = 0u8;
    let api = WebApi::new(
        cfg,
        fake.clone(),
        TestClock(clock.clone()),
        WebOptions {
            config_path: Some(path.clone()),
            last_good_path: Some(dir.join("last-good.toml")),
            board: crate::boot::Limits::default(),
            own_names: vec!["camera".into()],
            random: Box::new(move |b: &mut [u8]| {
                for x in b {
                    n = n.wrapping_add(1);
                    *x = n;
                }
            }),
            scrypt_log_n: 4,
        },
    );
    T {
        api,
        fake,
        clock,
        path,
        cookie: String::new(),
        csrf: String::new(),
    }
}

struct Resp {
    status: u16,
    json: serde_json::Value,
    text: String,
    headers: Vec<(&'static str, String)>,
}

impl T {
    fn req_full(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let req = HttpRequest {
            method,
            path,
            query,
            headers,
            body,
            peer: "10.0.0.9:5000".parse().unwrap(),
        };
        let r: HttpResponse = self.api.handle(&req).expect("our path");
        let bytes = match r.body {
            HttpBody::Bytes(b) => b,
            HttpBody::Static(b) => b.to_vec(),
            HttpBody::Empty => Vec::new(),
            _ => panic!("unexpected body kind"),
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Resp {
            status: r.status,
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            text,
            headers: r.headers,
        }
    }

    /// A browser request: right Host, session cookie and CSRF header when we have them.
    fn req(&self, method: &str, target: &str, body: Option<&str>) -> Resp {
        let cookie = format!("rillcast_session={}", self.cookie);
        let mut h = vec![("Host", "192.168.1.5:8080")];
        if !self.cookie.is_empty() {
            h.push(("Cookie", cookie.as_str()));
            h.push(("X-CSRF-Token", self.csrf.as_str()));
        }
        if body.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        self.req_full(method, target, &h, body.unwrap_or("").as_bytes())
    }

    fn login_from(&mut self, r: &Resp) {
        let sc = r
            .headers
            .iter()
            .find(|(k, _)| *k == "Set-Cookie")
            .map(|(_, v)| v.clone())
            .expect("Set-Cookie");
        assert!(
            sc.contains("HttpOnly") && sc.contains("SameSite=Strict"),
            "{sc}"
        );
        self.cookie = sc
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .into();
        self.csrf = r.json["csrf"].as_str().unwrap().into();
    }

    fn set_password(&mut self) {
        let r = self.req(
            "POST",
            "/api/v1/setup",
            Some(&format!(r#"{{"password":"{PW}"}}"#)),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        self.login_from(&r);
    }
}

#[test]
fn before_a_password_only_health_session_page_and_setup_answer() {
    let mut t = setup("first", "");
    let r = t.req("GET", "/api/v1/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json["up"], true);
    assert_eq!(r.json["streams_live"][0], serde_json::json!(["live", true]));
    let r = t.req("GET", "/api/v1/session", None);
    assert_eq!(r.json["setup_required"], true);
    assert_eq!(t.req("GET", "/", None).status, 200);
    for (m, p) in [
        ("GET", "/api/v1/status"),
        ("GET", "/api/v1/config"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/push"),
    ] {
        let r = t.req(m, p, Some("{}"));
        assert_eq!(r.status, 403, "{m} {p}: {}", r.text);
        assert!(r.text.contains("set a password"), "{}", r.text);
    }
    assert_eq!(
        t.req("POST", "/api/v1/login", Some(r#"{"password":"x"}"#))
            .status,
        403
    );
    // Too short: 400 naming the field, nothing saved.
    let r = t.req("POST", "/api/v1/setup", Some(r#"{"password":"short"}"#));
    assert_eq!(
        (r.status, r.json["field"].as_str()),
        (400, Some("password"))
    );
    assert_eq!(std::fs::read_to_string(&t.path).unwrap(), "");
    t.set_password();
    let saved = std::fs::read_to_string(&t.path).unwrap();
    assert!(saved.contains("password_hash = \"scrypt$4$8$1$"), "{saved}");
    // Only once.
    let r = t.req(
        "POST",
        "/api/v1/setup",
        Some(r#"{"password":"another password"}"#),
    );
    assert_eq!(r.status, 409);
    assert_eq!(t.req("GET", "/api/v1/status", None).status, 200);
}

#[test]
fn host_header_is_checked_everywhere() {
    let t = setup("host", "");
    for host in ["evil.example", "evil.example:8080", "camera.evil.example"] {
        let r = t.req_full("GET", "/api/v1/health", &[("Host", host)], b"");
        assert_eq!(r.status, 403, "{host}");
        let r = t.req_full("GET", "/", &[("Host", host)], b"");
        assert_eq!(r.status, 403, "{host}");
    }
    assert_eq!(
        t.req_full("GET", "/api/v1/health", &[], b"").status,
        403,
        "no Host"
    );
    for host in ["camera:8080", "127.0.0.1", "[::1]:8080", "localhost"] {
        assert_eq!(
            t.req_full("GET", "/api/v1/health", &[("Host", host)], b"")
                .status,
            200,
            "{host}"
        );
    }
}

#[test]
fn login_logout_rate_limit_and_session_expiry() {
    let mut t = setup("login", "");
    t.set_password();
    let r = t.req("POST", "/api/v1/logout", Some("{}"));
    assert_eq!(r.status, 200);
    assert_eq!(
        t.req("GET", "/api/v1/status", None).status,
        401,
        "logged out"
    );
    t.cookie.clear();
    assert_eq!(
        t.req("GET", "/api/v1/status", None).status,
        401,
        "no cookie"
    );
    for _ in 0..5 {
        let r = t.req(
            "POST",
            "/api/v1/login",
            Some(r#"{"password":"wrong password"}"#),
        );
        assert_eq!(r.status, 401);
    }
    let r = t.req(
        "POST",
        "/api/v1/login",
        Some(&format!(r#"{{"password":"{PW}"}}"#)),
    );
    assert_eq!(r.status, 429, "5 failures a minute per address: {}", r.text);
    t.clock.set(t.clock.get() + 61_000);
    let r = t.req(
        "POST",
        "/api/v1/login",
        Some(&format!(r#"{{"password":"{PW}"}}"#)),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    t.login_from(&r);
    assert_eq!(t.req("GET", "/api/v1/status", None).status, 200);
    t.clock.set(t.clock.get() + SESSION_IDLE_MS + 1);
    assert_eq!(
        t.req("GET", "/api/v1/status", None).status,
        401,
        "idle expiry"
    );
}

#[test]
fn csrf_is_required_for_changes_by_session_but_not_by_token() {
    let mut t = setup("csrf", "");
    t.set_password();
    let cookie = format!("rillcast_session={}", t.cookie);
    let body = br#"{"url":"rtmp://o/live"}"#;
    for csrf in [None, Some("0000"), Some("")] {
        let mut h = vec![
            ("Host", "camera"),
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/json"),
        ];
        if let Some(c) = csrf {
            h.push(("X-CSRF-Token", c));
        }
        let r = t.req_full("POST", "/api/v1/push", &h, body);
        assert_eq!(r.status, 403, "{csrf:?}");
        assert!(r.text.contains("CSRF"));
    }
    assert!(t.api.config().push.is_empty(), "nothing applied");
    // GET needs no CSRF token.
    let r = t.req_full(
        "GET",
        "/api/v1/push",
        &[("Host", "camera"), ("Cookie", &cookie)],
        b"",
    );
    assert_eq!(r.status, 200);
    // A bearer token needs none either.
    let r = t.req("POST", "/api/v1/tokens", None);
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert!(std::fs::read_to_string(&t.path)
        .unwrap()
        .contains("sha256$"));
    assert!(
        !std::fs::read_to_string(&t.path).unwrap().contains(&token),
        "only the hash is stored"
    );
    let bearer = format!("Bearer {token}");
    let h = [
        ("Host", "camera"),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(t.req_full("POST", "/api/v1/push", &h, body).status, 200);
    assert_eq!(t.req_full("GET", "/metrics", &h, b"").status, 200);
    let h = [("Host", "camera"), ("Authorization", "Bearer nope")];
    assert_eq!(t.req_full("GET", "/api/v1/status", &h, b"").status, 401);
    let h = [("Host", "camera"), ("Authorization", "Basic eDp5")];
    assert_eq!(t.req_full("GET", "/api/v1/status", &h, b"").status, 401);
    let r = t.req("GET", "/api/v1/tokens", None);
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert_eq!(t.req("DELETE", "/api/v1/tokens/0", None).status, 200);
    assert_eq!(t.req("DELETE", "/api/v1/tokens/0", None).status, 404);
    let h = [("Host", "camera"), ("Authorization", bearer.as_str())];
    assert_eq!(
        t.req_full("GET", "/api/v1/status", &h, b"").status,
        401,
        "revoked"
    );
}

#[test]
fn body_rejections_name_the_field_and_apply_nothing() {
    let mut t = setup(
        "bodies",
        "[streams.live.source]\nwidth = 320\nheight = 240\n",
    );
    t.set_password();
    let before = std::fs::read_to_string(&t.path).unwrap();
    let cases: &[(&str, &str, &str, u16, Option<&str>)] = &[
        ("POST", "/api/v1/push", "{", 400, None),
        ("POST", "/api/v1/push", "[]", 400, None),
        (
            "POST",
            "/api/v1/push",
            r#"{"url":"rtmp://o/live"} x"#,
            400,
            None,
        ),
        ("POST", "/api/v1/push", r#"{"url":5}"#, 400, Some("url")),
        (
            "POST",
            "/api/v1/push",
            r#"{"url":"rtmp://o/live","enabled":"yes"}"#,
            400,
            Some("enabled"),
        ),
        (
            "POST",
            "/api/v1/push",
            r#"{"url":"rtmp://o/live","extra":1}"#,
            400,
            Some("extra"),
        ),
        (
            "POST",
            "/api/v1/push",
            r#"{"url":"http://o/live"}"#,
            400,
            Some("url"),
        ),
        (
            "POST",
            "/api/v1/push",
            r#"{"url":"rtmp://o/live","stream":"nope"}"#,
            400,
            Some("stream"),
        ),
        (
            "POST",
            "/api/v1/push",
            r#"{"url":"rtmp://o/live","key":"a b"}"#,
            400,
            Some("key"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"rtsp":{"port":"x"}}"#,
            400,
            Some("rtsp.port"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"rtsp":{"port":70000}}"#,
            400,
            Some("rtsp.port"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"rtsp":{"port":0}}"#,
            400,
            Some("rtsp.port"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"rtsp":{"prot":1}}"#,
            400,
            Some("rtsp.prot"),
        ),
        ("PUT", "/api/v1/config", r#"{"nope":{}}"#, 400, Some("nope")),
        (
            "PUT",
            "/api/v1/config",
            r#"{"streams":{"live":{"source":{"kind":"testsrc","fps":500}}}}"#,
            400,
            Some("streams.live.source.fps"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"streams":{"live":{"source":{"kind":"usb"}}}}"#,
            400,
            Some("streams.live.source.kind"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"http":{"allowed_hosts":["a:80"]}}"#,
            400,
            Some("http.allowed_hosts"),
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"webhooks":[{"url":"https://x/"}]}"#,
            400,
            Some("webhooks.0.url"),
        ),
        (
            "POST",
            "/api/v1/config/validate",
            r#"{"media":{"memory_mib":-1}}"#,
            400,
            Some("media.memory_mib"),
        ),
        ("PUT", "/api/v1/password", r#"{"current":"x"}"#, 400, None),
        (
            "PUT",
            "/api/v1/password",
            &format!(r#"{{"current":"{PW}","new":"short"}}"#),
            400,
            Some("new"),
        ),
        (
            "PUT",
            "/api/v1/password",
            r#"{"current":"wrong password","new":"long enough"}"#,
            400,
            Some("current"),
        ),
    ];
    for &(m, p, body, status, field) in cases {
        let r = t.req(m, p, Some(body));
        assert_eq!(r.status, status, "{m} {p} {body}: {}", r.text);
        assert_eq!(
            r.json["field"].as_str(),
            field,
            "{m} {p} {body}: {}",
            r.text
        );
        assert!(
            !r.json["error"].as_str().unwrap_or("").is_empty(),
            "{}",
            r.text
        );
    }
    assert_eq!(
        std::fs::read_to_string(&t.path).unwrap(),
        before,
        "nothing saved"
    );
    assert_eq!(
        t.fake.applied.borrow().len(),
        1,
        "nothing applied after the password setup"
    );
    // Wrong content type and oversized bodies.
    let cookie = format!("rillcast_session={}", t.cookie);
    let h = [
        ("Host", "camera"),
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", t.csrf.as_str()),
        ("Content-Type", "text/plain"),
    ];
    assert_eq!(t.req_full("POST", "/api/v1/push", &h, b"{}").status, 415);
    let big = format!(r#"{{"url":"{}"}}"#, "a".repeat(MAX_JSON_BYTES));
    assert_eq!(t.req("POST", "/api/v1/push", Some(&big)).status, 413);
    assert_eq!(t.api.max_body_bytes("/api/v1/push"), Some(MAX_JSON_BYTES));
    // Routing errors.
    assert_eq!(t.req("GET", "/api/v1/nope", None).status, 404);
    assert_eq!(t.req("PATCH", "/api/v1/push", None).status, 405);
    assert_eq!(t.req("POST", "/", None).status, 405);
    assert_eq!(
        t.req("GET", "/api/v1/events?since=x", None).json["field"],
        "since"
    );
    let req = HttpRequest {
        method: "GET",
        path: "/hls/live/index.m3u8",
        query: None,
        headers: &[],
        body: b"",
        peer: "10.0.0.9:5000".parse().unwrap(),
    };
    assert!(t.api.handle(&req).is_none(), "not ours: HLS passes on");
}

#[test]
fn push_targets_add_update_remove_are_persisted_and_applied() {
    let file = "# keep me\n[streams.live.source]\nwidth = 320 # small\nheight = 240\n";
    let mut t = setup("push", file);
    t.set_password();
    let r = t.req(
        "POST",
        "/api/v1/push",
        Some(r#"{"url":"rtmp://o/app","key":"sekrit123"}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["index"], 0);
    let saved = std::fs::read_to_string(&t.path).unwrap();
    assert!(
        saved.contains("# keep me") && saved.contains("width = 320 # small"),
        "{saved}"
    );
    assert!(
        saved.contains("[[push]]") && saved.contains("sekrit123"),
        "{saved}"
    );
    assert_eq!(Config::parse(&saved, "x").unwrap(), t.api.config());
    let plan = t.fake.applied.borrow().last().unwrap().clone();
    assert_eq!(plan.restart_push, vec![0]);
    assert!(
        plan.restart_sources.is_empty(),
        "adding a push target touches no source"
    );
    // The key never comes back out.
    let r = t.req("GET", "/api/v1/config", None);
    assert_eq!(r.json["push"][0]["key"], MASKED_KEY);
    assert!(
        !r.text.contains("sekrit") && !r.text.contains("scrypt$"),
        "{}",
        r.text
    );
    let r = t.req("GET", "/api/v1/push", None);
    assert_eq!(r.status, 200);
    // Update with the masked key keeps the stored one.
    let r = t.req(
        "PUT",
        "/api/v1/push/0",
        Some(r#"{"url":"rtmp://o/app","key":"********","enabled":false}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.api.config().push[0].key.as_deref(), Some("sekrit123"));
    assert!(!t.api.config().push[0].enabled);
    assert_eq!(
        t.req("PUT", "/api/v1/push/3", Some(r#"{"url":"rtmp://o/app"}"#))
            .status,
        404
    );
    assert_eq!(t.req("DELETE", "/api/v1/push/x", None).status, 404);
    assert_eq!(t.req("DELETE", "/api/v1/push/0", None).status, 200);
    assert!(t.api.config().push.is_empty());
    let saved = std::fs::read_to_string(&t.path).unwrap();
    assert!(
        !saved.contains("push") && saved.contains("# keep me"),
        "{saved}"
    );
    assert_eq!(
        std::fs::read_to_string(t.path.with_file_name("last-good.toml")).unwrap(),
        saved,
        "every save is kept as the last good copy"
    );
}

#[test]
fn config_put_restarts_only_the_changed_source_and_round_trips() {
    let mut t = setup("cfg", "[streams.live.source]\nwidth = 320\nheight = 240\n");
    t.set_password();
    let mut c = t.req("GET", "/api/v1/config", None).json;
    // Sending back what we got changes nothing.
    let r = t.req("PUT", "/api/v1/config", Some(&c.to_string()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["changes"].as_array().unwrap().len(), 0, "{}", r.text);
    assert!(
        t.api.config().http.password_hash.is_some(),
        "hash kept though not shown"
    );
    c["streams"]["live"]["source"]["width"] = 640.into();
    c["rtsp"]["max_viewers"] = 10.into();
    let r = t.req("POST", "/api/v1/config/validate", Some(&c.to_string()));
    assert_eq!(r.status, 200);
    assert_eq!(
        t.api.config().streams["live"].source.width,
        320,
        "validate applies nothing"
    );
    let r = t.req("PUT", "/api/v1/config", Some(&c.to_string()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["plan"]["restart_sources"],
        serde_json::json!(["live"])
    );
    assert_eq!(
        r.json["plan"]["needs_daemon_restart"],
        serde_json::json!(["rtsp"])
    );
    assert_eq!(t.api.config().streams["live"].source.width, 640);
    let saved = std::fs::read_to_string(&t.path).unwrap();
    assert_eq!(Config::parse(&saved, "x").unwrap(), t.api.config());
    // Events: config_changed is there.
    let r = t.req("GET", "/api/v1/events?since=0", None);
    assert!(r.text.contains("config_changed"), "{}", r.text);
}

#[test]
fn failed_save_reports_and_keeps_the_running_config() {
    let mut t = setup("ro", "");
    t.set_password();
    // Make the save fail: the temp file's name is taken by a directory.
    let dir = t.path.parent().unwrap().to_path_buf();
    std::fs::create_dir(dir.join(".rillcast.toml.tmp")).unwrap();
    let r = t.req("POST", "/api/v1/push", Some(r#"{"url":"rtmp://o/app"}"#));
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(
        r.text.contains("could not write") && r.text.contains("rillcast.toml"),
        "names the file: {}",
        r.text
    );
    assert!(r.text.contains("running configuration stays"), "{}", r.text);
    assert!(t.api.config().push.is_empty(), "running config unchanged");
    assert_eq!(
        t.fake.applied.borrow().len(),
        1,
        "only the setup was applied"
    );
}

#[test]
fn status_streams_viewers_events_metrics() {
    let mut t = setup("status", "");
    t.set_password();
    t.fake.viewers.borrow_mut().push(ViewerInfo {
        id: "rtsp-1.2.3.4:5".into(),
        stream: "live".into(),
        protocol: "rtsp",
        peer: "1.2.3.4:5".into(),
    });
    let r = t.req("GET", "/api/v1/status", None);
    assert_eq!(r.json["streams"][0]["bitrate_kbps"], 1500);
    let r = t.req("GET", "/api/v1/streams", None);
    assert_eq!(r.json[0]["rtsp_url"], "rtsp://192.168.1.5:8554/live");
    assert_eq!(
        t.req("GET", "/api/v1/streams/live", None).json["name"],
        "live"
    );
    assert_eq!(t.req("GET", "/api/v1/streams/nope", None).status, 404);
    assert_eq!(
        t.req("POST", "/api/v1/streams/live/restart", Some("{}"))
            .status,
        200
    );
    assert_eq!(
        t.req("POST", "/api/v1/streams/nope/restart", Some("{}"))
            .status,
        404
    );
    assert_eq!(
        t.req("GET", "/api/v1/viewers", None).json[0]["peer"],
        "1.2.3.4:5"
    );
    assert_eq!(
        t.req("DELETE", "/api/v1/viewers/rtsp-1.2.3.4%3A5", None)
            .status,
        200
    );
    assert_eq!(
        t.fake.kicked.borrow()[0],
        "rtsp-1.2.3.4:5",
        "percent-decoded"
    );
    assert_eq!(t.req("DELETE", "/api/v1/viewers/rtsp-9", None).status, 404);
    // The observer turns state changes into events; viewer events come from the servers.
    t.api.observe();
    t.fake.live.set(false);
    t.api.observe();
    t.api.viewer_event("live", "rtsp", "rtsp-1.2.3.4:5", false);
    let r = t.req("GET", "/api/v1/events?since=0", None);
    let kinds: Vec<&str> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"stream_stopped") && kinds.contains(&"viewer_disconnected"),
        "{kinds:?}"
    );
    let next = r.json["next"].as_u64().unwrap();
    let r = t.req("GET", &format!("/api/v1/events?since={}", next - 1), None);
    assert_eq!(r.json["events"].as_array().unwrap().len(), 0);
    let r = t.req("GET", "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(
        r.text
            .contains("rillcast_stream_bitrate_kbps{stream=\"live\"} 1500"),
        "{}",
        r.text
    );
    let ct = r
        .headers
        .iter()
        .find(|(k, _)| *k == "Content-Type")
        .unwrap();
    assert!(ct.1.starts_with("text/plain; version=0.0.4"));
}

#[test]
fn password_change_logs_everyone_else_out() {
    let mut t = setup("pwchange", "");
    t.set_password();
    let old_cookie = t.cookie.clone();
    let r = t.req(
        "PUT",
        "/api/v1/password",
        Some(&format!(r#"{{"current":"{PW}","new":"a new password"}}"#)),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    t.login_from(&r);
    assert_eq!(t.req("GET", "/api/v1/status", None).status, 200);
    let h = format!("rillcast_session={old_cookie}");
    let r = t.req_full(
        "GET",
        "/api/v1/status",
        &[("Host", "camera"), ("Cookie", &h)],
        b"",
    );
    assert_eq!(r.status, 401);
    t.cookie.clear();
    let r = t.req(
        "POST",
        "/api/v1/login",
        Some(r#"{"password":"a new password"}"#),
    );
    assert_eq!(r.status, 200);
}

/// The OpenAPI document lists exactly the routes the router serves.
#[test]
fn openapi_matches_routes() {
    let doc = include_str!("../../docs/openapi.yaml");
    let mut documented = Vec::new();
    let mut path = None;
    for line in doc.lines() {
        // `  /api/v1/x:` at indent 2 is a path; `    get:` at indent 4 an operation.
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if let (Some(p), Some(m)) = (
            &path,
            line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')),
        ) {
            if ["get", "put", "post", "delete"].contains(&m) {
                documented.push((m.to_uppercase(), p.clone()));
            }
        } else if !line.starts_with(' ') && !line.is_empty() {
            path = None;
        }
    }
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    // And every table entry really routes to itself.
    for (m, p, r) in ROUTES {
        let concrete = p
            .replace("{name}", "live")
            .replace("{id}", "x")
            .replace("{index}", "0");
        assert_eq!(route(m, &concrete).map(|x| x.0), Ok(*r), "{m} {p}");
    }
}

#[test]
fn toml_paths_from_offsets() {
    let text = "a = 1\n[rtsp]\nport = 2\n[streams.\"x y\".source]\nfps = 3\n[[push]]\nurl = \"u\"\n[[push]]\nurl = \"v\"\n";
    let at = |needle: &str| toml_path_at(text, text.find(needle).unwrap());
    assert_eq!(at("a = 1"), "a");
    assert_eq!(at("port"), "rtsp.port");
    assert_eq!(at("[rtsp]"), "rtsp");
    assert_eq!(at("fps"), "streams.x y.source.fps");
    assert_eq!(at("url = \"u\""), "push.0.url");
    assert_eq!(at("url = \"v\""), "push.1.url");
    assert_eq!(toml_path_at(text, 10_000), "push.1");
}

#[test]
fn a_save_that_cannot_boot_is_refused_with_the_key_and_nothing_changes() {
    let file = "# keep me\n[media]\nmemory_mib = 24\n";
    let mut t = setup("unbootable", file);
    t.set_password();
    let saved = std::fs::read_to_string(&t.path).unwrap();
    let last_good = t.path.with_file_name("last-good.toml");
    // The memory plan does not fit the ceiling: 400 naming the key, for a save and a
    // validate alike; the file, the last good copy and the running config stay.
    for (m, p) in [
        ("PUT", "/api/v1/config"),
        ("POST", "/api/v1/config/validate"),
    ] {
        let r = t.req(m, p, Some(r#"{"media":{"memory_mib":2}}"#));
        assert_eq!(r.status, 400, "{m} {p}: {}", r.text);
        assert_eq!(r.json["field"], "media.memory_mib", "{}", r.text);
        assert!(
            r.json["error"]
                .as_str()
                .unwrap()
                .contains("ceiling is 2 MiB"),
            "{}",
            r.text
        );
    }
    assert_eq!(std::fs::read_to_string(&t.path).unwrap(), saved);
    assert_eq!(std::fs::read_to_string(&last_good).unwrap(), saved);
    assert_eq!(t.api.config().media.memory_mib, 24);
    // A listening port another process holds: 400 on that key.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let r = t.req(
        "PUT",
        "/api/v1/config",
        Some(&format!(
            r#"{{"media":{{"memory_mib":24}},"http":{{"port":{port}}}}}"#
        )),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["field"], "http.port", "{}", r.text);
    assert!(r.text.contains("cannot be listened on"), "{}", r.text);
    drop(held);
    // Push targets added live until the plan is full: each one accepted is planned (the
    // config with it still fits), and the first that does not fit is refused on its queue.
    let mut accepted = 0;
    let refused = loop {
        let r = t.req("POST", "/api/v1/push", Some(r#"{"url":"rtmp://o/app/k"}"#));
        if r.status != 200 {
            break r;
        }
        accepted += 1;
        let cfg = t.api.config();
        assert_eq!(cfg.push.len(), accepted);
        crate::media::budget::MemoryPlan::new(&cfg, None, None).expect("accepted = planned");
        assert!(accepted < 16, "the plan never filled up");
    };
    assert!(accepted >= 1, "the first push target fits 24 MiB");
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(
        refused.json["field"],
        format!("push.{accepted}.queue_kib"),
        "{}",
        refused.text
    );
    assert_eq!(t.api.config().push.len(), accepted);
    let on_disk = std::fs::read_to_string(&t.path).unwrap();
    assert_eq!(on_disk.matches("[[push]]").count(), accepted, "{on_disk}");
    assert!(on_disk.contains("# keep me"), "{on_disk}");
    assert_eq!(std::fs::read_to_string(&last_good).unwrap(), on_disk);
}
