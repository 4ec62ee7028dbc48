//! Headless Chromium walks the page against the real daemon: set the password, see the stream
//! live with its bitrate, log out and in, add a push target, reload; then restart the daemon
//! and log in again: the target is still there. Saves `out/web-status.png`.

mod common;

use common::{free_port, require_tool, run_bounded, temp_dir};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cfg: &Path, http: u16) -> Proc {
    let log = std::fs::File::create(cfg.with_extension("log")).unwrap();
    let p = Proc(
        Command::new(env!("CARGO_BIN_EXE_rillcast"))
            .arg("--config")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rillcast"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < deadline, "daemon did not listen on HTTP");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn npm_ready(web: &Path) {
    require_tool("node");
    require_tool("npm");
    if web
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let (ok, out, err) = run_bounded(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(web),
        Duration::from_secs(300),
    );
    assert!(ok, "npm install in tests/web failed:\n{out}\n{err}");
}

fn walk(web: &Path, base: &str, phase: &str, push: &str, shot: &str) -> String {
    let (ok, out, err) = run_bounded(
        Command::new("node")
            .arg("walk-page.mjs")
            .args([base, phase, push, shot])
            .current_dir(web),
        Duration::from_secs(120),
    );
    assert!(ok, "page walk ({phase}) failed:\n{out}\n{err}");
    out
}

#[test]
fn chromium_walks_setup_login_status_push_and_restart() {
    require_tool("chromium");
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    npm_ready(&web);
    let dir = temp_dir("web-page");
    let (rtsp, udp, http) = (free_port(), free_port(), free_port());
    let cfg = dir.join("rillcast.toml");
    std::fs::write(
        &cfg,
        format!(
            "[rtsp]\nport = {rtsp}\nbind = \"127.0.0.1\"\nudp_port = {udp}\n\
             [http]\nport = {http}\nbind = \"127.0.0.1\"\n\
             [streams.live.source]\nwidth = 640\nheight = 352\n"
        ),
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{http}");
    // The origin need not exist for the target to be configured and persisted.
    let push = "rtmp://127.0.0.1:1935/live";
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("web-status.png");
    let _ = std::fs::remove_file(&shot);
    let d = start(&cfg, http);
    let seen = walk(&web, &base, "first", push, shot.to_str().unwrap());
    assert!(seen.contains("kbit/s"), "{seen}");
    assert!(seen.contains("wrong password"), "{seen}");
    assert!(
        seen.contains("rtmp://"),
        "the bad URL was refused with a reason: {seen}"
    );
    assert!(shot.exists(), "screenshot saved");
    let saved = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        saved.contains(push) && saved.contains("page-test-key"),
        "{saved}"
    );
    drop(d);
    let _d = start(&cfg, http);
    let seen = walk(&web, &base, "again", push, "");
    assert!(seen.contains("push target listed"), "{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}
