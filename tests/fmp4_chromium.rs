//! The page's live player in Debian's headless Chromium: fMP4 over WebSocket into Media
//! Source Extensions, from the real daemon. For 10 s the video's currentTime advances every
//! second (no stall), the picture is decoded (`videoWidth > 0`) and not blank (pixel spread
//! of a canvas copy), the frame shown is less than a second old, and the stream with
//! credentials plays too for the logged-in user. Glass-to-glass: the test source paints its
//! capture time into the picture, and the browser reads it back from every presented frame
//! (`requestVideoFrameCallback` + canvas), with no decoder of ours: median under a second.
//! Saves `out/mse-player.png`.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn page_player_plays_mse_ten_seconds_without_stall() {
    let web = web_dir_ready();
    let d = Daemon::start(
        "fmp4-chromium",
        r#"
[media]
memory_mib = 48

[streams.live.source]
kind = "testsrc"
width = 320
height = 240
paint_clock = true

[streams.cam.source]
kind = "testsrc"
width = 160
height = 128
audio = false

[streams.cam.auth]
user = "viewer"
password = "s3cret"
"#,
    );
    d.wait_live("live", Duration::from_secs(20));
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("mse-player.png");
    let _ = std::fs::remove_file(&shot);
    let base = format!("http://127.0.0.1:{}", d.http_port);
    let (ok, out, err) = run_bounded(
        Command::new("node")
            .arg("play-mse.mjs")
            .args([&base, "10", shot.to_str().unwrap(), "live", "cam"])
            .current_dir(&web),
        Duration::from_secs(120),
    );
    println!("{out}");
    assert!(
        ok,
        "the page's player did not play:\n{out}\n{err}\n{}",
        d.log()
    );
    assert!(
        out.contains("\"width\":320") && out.contains("\"width\":160"),
        "{out}"
    );
    let png = std::fs::read(&shot).expect("screenshot saved");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot too small"
    );
    assert!(
        d.log().contains("[cam] WebSocket viewer"),
        "the protected stream was watched"
    );
}
