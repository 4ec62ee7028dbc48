//! The web API over real HTTP against the real daemon: first run, login, live status with a
//! bitrate, push target persisted across a daemon restart, transport caps, and kill -9 during
//! 200 saves never leaving a broken config file.

mod common;

use common::{free_port, temp_dir};
use rillcast::config::Config;
use rillcast::web::auth;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a config with fresh loopback ports (plus `extra`) and returns (path, http port,
/// rtsp port).
fn write_config(dir: &Path, extra: &str) -> (PathBuf, u16, u16) {
    let (rtsp, udp, http) = (free_port(), free_port(), free_port());
    let text = format!(
        "# written by the test: this comment must survive edits from the API\n\
         [rtsp]\nport = {rtsp}\nbind = \"127.0.0.1\"\nudp_port = {udp}\n\
         [http]\nport = {http}\nbind = \"127.0.0.1\"\n{extra}\n\
         [streams.live.source]\nwidth = 320 # small picture\nheight = 240\n"
    );
    let p = dir.join("rillcast.toml");
    std::fs::write(&p, text).unwrap();
    (p, http, rtsp)
}

fn start(cfg: &Path, http: u16) -> Proc {
    let log = cfg.with_extension("log");
    let child = Command::new(env!("CARGO_BIN_EXE_rillcast"))
        .arg("--config")
        .arg(cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rillcast");
    let p = Proc { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, _, _)) = http_req(http, "GET", "/api/v1/health", &[], b"") {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "daemon not answering HTTP; log:\n{}",
        std::fs::read_to_string(&p.log).unwrap_or_default()
    );
}

/// One HTTP/1.1 request with `Connection: close`; (status, head, body).
fn http_req(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// Polls `f` every 100 ms until it returns Some, or panics after `limit`.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn first_run_login_status_push_and_restart() {
    let dir = temp_dir("web-e2e");
    // A webhook receiver: collects POST bodies until told to stop.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let bodies2 = bodies.clone();
    let hook_thread = std::thread::spawn(move || {
        hook.set_nonblocking(false).unwrap();
        for conn in hook.incoming() {
            let Ok(mut c) = conn else { break };
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 4096];
            // Read the head and the Content-Length body.
            loop {
                let n = c.read(&mut b).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
                let t = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = t.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let _ = c.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            let t = String::from_utf8_lossy(&got).to_string();
            if t.contains("STOP-HOOK") {
                break;
            }
            let mut b = bodies2.lock().unwrap();
            b.push_str(&t);
            b.push('\n');
        }
    });
    let (cfg, http, rtsp) = write_config(
        &dir,
        &format!("[[webhooks]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n"),
    );
    let d = start(&cfg, http);
    // Before a password: health yes, everything else no.
    let (st, _, body) = http_req(http, "GET", "/api/v1/health", &[], b"").unwrap();
    assert_eq!(st, 200);
    assert_eq!(json(&body)["up"], true);
    assert_eq!(
        http_req(http, "GET", "/api/v1/status", &[], b"").unwrap().0,
        403
    );
    // DNS rebinding: a foreign Host is refused even for the page.
    let (st, _, _) = http_req(http, "GET", "/", &[("Host", "attacker.example")], b"").unwrap();
    assert_eq!(st, 403);
    let (st, _, page) = http_req(http, "GET", "/", &[], b"").unwrap();
    assert_eq!(st, 200);
    assert!(page.contains("/app.js"));
    // Set the password.
    let ct = ("Content-Type", "application/json");
    let (st, head, body) = http_req(
        http,
        "POST",
        "/api/v1/setup",
        &[ct],
        br#"{"password":"a long password"}"#,
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("Set-Cookie");
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = json(&body)["csrf"].as_str().unwrap().to_string();
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains("password_hash = \"scrypt$14$8$1$"),
        "{saved}"
    );
    // Live with a bitrate within a few seconds.
    let auth_h = [("Cookie", cookie.as_str())];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _, body) = http_req(http, "GET", "/api/v1/status", &auth_h, b"").unwrap();
        assert_eq!(st, 200, "{body}");
        let v = json(&body);
        if v["streams"][0]["live"] == true && v["streams"][0]["bitrate_kbps"].as_u64() > Some(0) {
            assert_eq!(v["streams"][0]["width"], 320);
            break;
        }
        assert!(Instant::now() < deadline, "not live with a bitrate: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A change without the CSRF header is refused; with it, saved.
    let push = br#"{"url":"rtmp://127.0.0.1:1/live","key":"secret-key"}"#;
    let h = [("Cookie", cookie.as_str()), ct];
    assert_eq!(
        http_req(http, "POST", "/api/v1/push", &h, push).unwrap().0,
        403
    );
    let h = [
        ("Cookie", cookie.as_str()),
        ct,
        ("X-CSRF-Token", csrf.as_str()),
    ];
    let (st, _, body) = http_req(http, "POST", "/api/v1/push", &h, push).unwrap();
    assert_eq!(st, 200, "{body}");
    // The body cap is the transport's: 64 KiB + 1 is refused before the handler.
    let big = vec![b' '; 64 * 1024 + 1];
    assert_eq!(
        http_req(http, "POST", "/api/v1/push", &h, &big).unwrap().0,
        413
    );
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains("# written by the test") && saved.contains("width = 320 # small picture")
    );
    assert!(saved.contains("[[push]]"), "{saved}");
    // A viewer watches while a push target is added and the source changes: it stays.
    let mut viewer = common::RtspClient::connect(rtsp).unwrap();
    viewer
        .play_tcp(&format!("rtsp://127.0.0.1:{rtsp}/live"))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let packets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let packets2 = packets.clone();
    let reader = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if viewer.read_interleaved().is_err() {
                break;
            }
            packets2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let viewer_id = wait_for(Duration::from_secs(10), || {
        let (_, _, body) = http_req(http, "GET", "/api/v1/viewers", &auth_h, b"").unwrap();
        json(&body)[0]["id"].as_str().map(str::to_string)
    });
    let push2 = br#"{"url":"rtmp://127.0.0.1:1/other"}"#;
    let (st, _, body) = http_req(http, "POST", "/api/v1/push", &h, push2).unwrap();
    assert_eq!(st, 200, "{body}");
    assert!(json(&body)["result"]["plan"]["restart_sources"]
        .as_array()
        .unwrap()
        .is_empty());
    let (_, _, body) = http_req(http, "GET", "/api/v1/config", &auth_h, b"").unwrap();
    let mut c = json(&body);
    c["streams"]["live"]["source"]["width"] = 640.into();
    let (st, _, body) =
        http_req(http, "PUT", "/api/v1/config", &h, c.to_string().as_bytes()).unwrap();
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        json(&body)["plan"]["restart_sources"],
        serde_json::json!(["live"])
    );
    wait_for(Duration::from_secs(15), || {
        let (_, _, body) = http_req(http, "GET", "/api/v1/status", &auth_h, b"").unwrap();
        (json(&body)["streams"][0]["width"] == 640).then_some(())
    });
    let (_, _, body) = http_req(http, "GET", "/api/v1/viewers", &auth_h, b"").unwrap();
    assert_eq!(
        json(&body)[0]["id"],
        viewer_id.as_str(),
        "the viewer stayed: {body}"
    );
    // ... and still receives media from the new source.
    let after_restart = packets.load(std::sync::atomic::Ordering::Relaxed);
    wait_for(Duration::from_secs(10), || {
        (packets.load(std::sync::atomic::Ordering::Relaxed) > after_restart + 50).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(saved.contains("width = 640 # small picture"), "{saved}");
    // Metrics with the session.
    let (st, _, m) = http_req(http, "GET", "/metrics", &auth_h, b"").unwrap();
    assert_eq!(st, 200);
    assert!(m.contains("rillcast_stream_live{stream=\"live\"} 1"), "{m}");
    // The webhook received the events (config changes, the viewer).
    let wanted = [
        "\"type\":\"config_changed\"",
        "\"type\":\"viewer_connected\"",
        "POST /hook HTTP/1.1",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = bodies.lock().unwrap().clone();
        if wanted.iter().all(|w| b.contains(w)) {
            break;
        }
        let (_, _, ev) = http_req(http, "GET", "/api/v1/events", &auth_h, b"").unwrap();
        assert!(
            Instant::now() < deadline,
            "webhook got:\n{b}\nevents:\n{ev}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stop_hook = TcpStream::connect(("127.0.0.1", hook_port)).unwrap();
    stop_hook
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nSTOP-HOOK")
        .unwrap();
    drop(stop_hook);
    hook_thread.join().unwrap();
    // Restart the daemon: the push target is still there, the key still masked.
    drop(d);
    let _d = start(&cfg, http);
    let (st, _, body) = http_req(http, "GET", "/api/v1/push", &auth_h, b"").unwrap();
    assert_eq!(st, 401, "sessions do not survive a restart: {body}");
    let (st, head, body) = http_req(
        http,
        "POST",
        "/api/v1/login",
        &[ct],
        br#"{"password":"a long password"}"#,
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("Set-Cookie")
        .to_string();
    let (st, _, body) = http_req(http, "GET", "/api/v1/push", &[("Cookie", &cookie)], b"").unwrap();
    assert_eq!(st, 200, "{body}");
    let v = json(&body);
    // The push shell's own view: the key masked, the target retrying (no origin on port 1).
    assert!(
        v[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("rtmp://127.0.0.1:1/live"),
        "{body}"
    );
    assert!(
        v[1]["url"]
            .as_str()
            .unwrap()
            .starts_with("rtmp://127.0.0.1:1/other"),
        "{body}"
    );
    assert!(!body.contains("secret-key"), "{body}");
    let st0 = v[0]["state"].as_str().unwrap();
    assert!(["connecting", "backing_off"].contains(&st0), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// kill -9 at random moments during 200 saves: the file always parses and is the last
/// acknowledged version or the one in flight; the `.bak` always parses too.
#[test]
fn kill_9_during_200_saves_never_breaks_the_config() {
    let dir = temp_dir("web-kill9");
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let extra = format!(
        "password_hash = \"{}\"\napi_tokens = [\"{}\"]\n[[push]]\nurl = \"rtmp://o/app/k0\"\n",
        auth::hash_password_with("unused password", &[1; 16], 4, 8, 1),
        auth::hash_token(token)
    );
    let (cfg, http, _) = write_config(&dir, &extra);
    let bearer = format!("Bearer {token}");
    let mut seed = common::rand_u64() | 1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut saves = 0u32;
    let mut acked = 0u32;
    let mut kills = 0;
    while saves < 200 {
        let mut d = start(&cfg, http);
        // Fire saves from a thread; kill -9 after a random number of them (0..=25), at a
        // random moment inside the next one.
        let burst = (rnd() % 26) as u32;
        for _ in 0..burst.min(200 - saves) {
            saves += 1;
            let body = format!(r#"{{"url":"rtmp://o/app/k{saves}"}}"#);
            let h = [
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
            ];
            let (st, _, b) = http_req(http, "PUT", "/api/v1/push/0", &h, body.as_bytes()).unwrap();
            assert_eq!(st, 200, "{b}");
            acked = saves;
        }
        // One more save in flight while the kill lands.
        saves += 1;
        let in_flight = saves;
        let bearer2 = bearer.clone();
        let t = std::thread::spawn(move || {
            let body = format!(r#"{{"url":"rtmp://o/app/k{in_flight}"}}"#);
            let h = [
                ("Authorization", bearer2.as_str()),
                ("Content-Type", "application/json"),
            ];
            let _ = http_req(http, "PUT", "/api/v1/push/0", &h, body.as_bytes());
        });
        std::thread::sleep(Duration::from_micros(rnd() % 3000));
        d.child.kill().unwrap(); // SIGKILL
        d.child.wait().unwrap();
        let _ = t.join();
        kills += 1;
        let text = std::fs::read_to_string(&cfg).unwrap();
        let c = Config::parse(&text, "after kill").unwrap_or_else(|e| panic!("{e}\n{text}"));
        let url = &c.push[0].url;
        let n: u32 = url.rsplit("/k").next().unwrap().parse().unwrap();
        assert!(
            n == acked || n == in_flight,
            "file has k{n}, acked k{acked}, in flight k{in_flight}"
        );
        if n == in_flight {
            acked = in_flight;
        }
        assert!(
            text.contains("# written by the test"),
            "comments survive: {text}"
        );
        let bak = std::fs::read_to_string(rillcast::web::persist::backup_path(&cfg));
        if let Ok(bak) = bak {
            Config::parse(&bak, "bak").unwrap_or_else(|e| panic!("backup broken: {e}\n{bak}"));
        }
    }
    assert!(kills >= 8, "{kills} kills");
    let _ = std::fs::remove_dir_all(&dir);
}
