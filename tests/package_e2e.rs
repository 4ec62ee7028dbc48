//! The package as installed, and start-up from the last good copy.
//!
//! `packaged_install_walk` builds a host-architecture `.deb` (scripts/package.sh --host-deb,
//! around the binary under test), installs it with a real `dpkg -i` into a scratch root (an
//! overlay of / in a private mount namespace: scripts/scratch-root.sh) and runs the installed
//! unit's ExecStart as the `rillcast` user with the unit's filesystem view (ProtectSystem=
//! strict, ReadWritePaths=, StateDirectory=). Then the walk an admin does: set the password,
//! add a push target, reinstall, restart, log in, see both kept; no file the service writes is
//! world-readable; a read-only card answers 507 and keeps the running config; a corrupt config
//! boots from the last good copy; purge removes what the service wrote. Needs root.
//!
//! `corrupt_config_at_boot_starts_from_the_last_good_copy` needs nothing but the binary.

mod common;

use common::{http_req, require_tool, run_bounded, temp_dir, Daemon};
use rillcast::web::auth;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PW: &str = "correct horse battery staple";

/// The first-start call that sets the password: `{"password": ...}`, plus the one-time setup
/// code as `code` when the daemon printed one (a log line `setup code: XXXX`).
fn setup_body(log: &str, password: &str) -> String {
    let code = log
        .lines()
        .find_map(|l| l.split_once("setup code: "))
        .and_then(|(_, rest)| rest.split_whitespace().next());
    match code {
        Some(c) => serde_json::json!({"password": password, "code": c}).to_string(),
        None => serde_json::json!({"password": password}).to_string(),
    }
}

/// Cookie and CSRF token from a setup/login answer.
fn session_of(head: &str, body: &str) -> (String, String) {
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no Set-Cookie in {head}"))
        .to_string();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    (cookie, csrf)
}

fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scratch root in a mount namespace held open by a `sleep` child (see
/// scripts/scratch-root.sh); dropping it stops the daemon and the holder, and the namespace
/// with every mount in it goes away.
struct Scratch {
    holder: Child,
    dir: PathBuf,
    script: PathBuf,
    daemon: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = temp_dir("pkg-scratch");
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let s = Scratch {
            holder,
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/scratch-root.sh"),
            log: dir.join("daemon.log"),
            dir,
            daemon: None,
            starts: 0,
        };
        // The holder has its own namespace once its mnt link differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        let pid = s.holder.id();
        wait_until("holder namespace", Duration::from_secs(5), || {
            std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                .ok()
                .filter(|l| *l != ours)
        });
        s
    }

    fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .arg("-m")
            .arg("--")
            .arg(&self.script);
        c
    }

    /// Runs a scratch-root.sh step; panics with its output when it fails.
    fn step(&self, args: &[&str]) -> String {
        let mut c = self.nsenter();
        c.args(args);
        let (ok, out, err) = run_bounded(&mut c, Duration::from_secs(60));
        assert!(ok, "scratch-root.sh {args:?} failed:\n{out}\n{err}");
        out
    }

    fn sh(&self, cmd: &str) -> String {
        let d = self.dir.display().to_string();
        self.step(&["sh", &d, cmd])
    }

    /// A path inside the scratch root, as this process can open it.
    fn path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root{}/root{p}",
            self.holder.id(),
            self.dir.display()
        ))
    }

    /// Starts the installed service; waits until `/api/v1/health` answers on `http`.
    fn start(&mut self, http: u16, extra: &[&str]) {
        self.stop();
        self.starts += 1;
        self.log = self.dir.join(format!("daemon-{}.log", self.starts));
        let d = self.dir.display().to_string();
        let mut c = self.nsenter();
        c.args(["run", &d])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap());
        let mut child = c.spawn().expect("nsenter");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = http_req(http, "GET", "/api/v1/health", &[], b"") {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the installed service did not answer (exit {exited:?}); log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.daemon = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- service log:\n{}", self.log());
        }
        self.stop();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `stat` lines (`MODE USER:GROUP PATH`) for paths in the root.
fn modes(s: &Scratch, paths: &str) -> String {
    s.sh(&format!("stat -c '%a %U:%G %n' {paths}"))
}

#[test]
fn packaged_install_walk() {
    let t0 = Instant::now();
    let uid = run_bounded(Command::new("id").arg("-u"), Duration::from_secs(5)).1;
    assert_eq!(
        uid.trim(),
        "0",
        "the packaged-install test needs root (mount namespaces, overlayfs, setpriv); \
         run the suite as root as CI does"
    );
    for tool in [
        "dpkg-deb", "dpkg", "unshare", "nsenter", "setpriv", "chroot", "strip",
    ] {
        require_tool(tool);
    }
    let work = temp_dir("pkg-deb");
    let root = env!("CARGO_MANIFEST_DIR");
    let (ok, out, err) = run_bounded(
        Command::new(format!("{root}/scripts/package.sh"))
            .arg("--host-deb")
            .arg(env!("CARGO_BIN_EXE_rillcast"))
            .arg(&work),
        Duration::from_secs(120),
    );
    assert!(ok, "package.sh --host-deb failed:\n{out}\n{err}");
    let deb = out.lines().last().unwrap_or("").trim().to_string();
    assert!(deb.ends_with(".deb"), "{out}");
    let t_deb = t0.elapsed();

    let mut s = Scratch::new();
    let d = s.dir.display().to_string();
    let out = s.step(&["install", &d, &deb]);
    assert!(out.contains("Setting up rillcast"), "{out}");
    // What postinst made: the config dir is the service's to write, the config is not
    // world-readable and is not a conffile (dpkg would prompt on every upgrade).
    assert_eq!(
        modes(
            &s,
            "/etc/rillcast /etc/rillcast/rillcast.toml /var/lib/rillcast"
        ),
        "2770 root:rillcast /etc/rillcast\n\
         660 root:rillcast /etc/rillcast/rillcast.toml\n\
         750 rillcast:rillcast /var/lib/rillcast\n"
    );
    let conffiles = s.sh("dpkg-query -W -f='${Conffiles}' rillcast");
    assert!(
        conffiles.contains("/etc/default/rillcast") && !conffiles.contains("rillcast.toml"),
        "{conffiles}"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("/etc/rillcast/rillcast.toml")).unwrap(),
        std::fs::read_to_string(format!("{root}/config/rillcast.toml")).unwrap(),
        "first install: the shipped reference config"
    );

    // The admin moves the ports onto free loopback ones (the file is root's to edit too).
    let (rtsp, udp, http) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let cfg_path = s.path("/etc/rillcast/rillcast.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let mut edited = text.clone();
    for (from, to) in [
        ("\nport = 8554\n", format!("\nport = {rtsp}\n")),
        ("\nport = 8080\n", format!("\nport = {http}\n")),
        ("\nudp_port = 8000\n", format!("\nudp_port = {udp}\n")),
        (
            "\nbind = \"0.0.0.0\"\n",
            "\nbind = \"127.0.0.1\"\n".to_string(),
        ),
    ] {
        assert!(edited.contains(from), "reference config lacks {from:?}");
        edited = edited.replace(from, &to);
    }
    std::fs::write(&cfg_path, &edited).unwrap();

    // 1. First start: set the password, add a push target.
    s.start(http, &[]);
    let (st, _, b) = http_req(http, "GET", "/api/v1/session", &[], b"").unwrap();
    assert!(st == 200 && b.contains("\"setup_required\":true"), "{b}");
    let body = setup_body(&s.log(), PW);
    let json = [("Content-Type", "application/json")];
    let (st, head, b) = http_req(http, "POST", "/api/v1/setup", &json, body.as_bytes()).unwrap();
    assert_eq!(st, 200, "setup: {b}");
    let (cookie, csrf) = session_of(&head, &b);
    let auth_h = |cookie: &str, csrf: &str| -> Vec<(String, String)> {
        vec![
            ("Cookie".into(), cookie.into()),
            ("X-CSRF-Token".into(), csrf.into()),
            ("Content-Type".into(), "application/json".into()),
        ]
    };
    let h = auth_h(&cookie, &csrf);
    let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let planned = |hv: &[(&str, &str)]| -> u64 {
        let (_, _, b) = http_req(http, "GET", "/api/v1/status", hv, b"").unwrap();
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        v["memory"]["planned_bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{b}"))
    };
    let before = planned(&hv);
    let push = br#"{"url":"rtmp://127.0.0.1:9/live","key":"push-key-secret"}"#;
    let (st, _, b) = http_req(http, "POST", "/api/v1/push", &hv, push).unwrap();
    assert_eq!(st, 200, "add push target: {b}");
    // The target added live is in the memory figure, as the plan sizes it.
    let queue = rillcast::config::PushConfig::default().queue_bytes(4000);
    assert_eq!(
        planned(&hv) - before,
        (queue + rillcast::media::budget::PUSH_FIXED_BYTES) as u64
    );

    // The files the service wrote: its own, group rillcast, nothing for others; the last good
    // copy is the saved file; no temp file left.
    let saved = std::fs::read_to_string(&cfg_path).unwrap();
    assert!(
        saved.contains("password_hash = \"scrypt$") && saved.contains("push-key-secret"),
        "{saved}"
    );
    assert_eq!(
        modes(
            &s,
            "/etc/rillcast/rillcast.toml /var/lib/rillcast/last-good.toml"
        ),
        "660 rillcast:rillcast /etc/rillcast/rillcast.toml\n\
         600 rillcast:rillcast /var/lib/rillcast/last-good.toml\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.path("/var/lib/rillcast/last-good.toml")).unwrap(),
        saved
    );
    let listing = s.sh("ls -A /etc/rillcast /var/lib/rillcast");
    assert_eq!(
        listing,
        "/etc/rillcast:\nrillcast.toml\n\n/var/lib/rillcast:\nlast-good.toml\n"
    );
    let readable = s.sh("find /etc/rillcast /var/lib/rillcast -perm /o=rwx");
    assert_eq!(readable, "", "world-accessible: {readable}");

    // 2. Upgrade (reinstall the package): the admin's config stays as it is, no prompt.
    s.stop();
    let out = s.step(&["dpkg", &d, "-i", "/tmp/rillcast.deb"]);
    assert!(!out.contains("Configuration file"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), saved);
    assert!(modes(&s, "/etc/rillcast/rillcast.toml").starts_with("660 rillcast:rillcast"));

    // 3. Restart: log in with the password, the push target is there.
    s.start(http, &[]);
    let (st, _, b) = http_req(http, "GET", "/api/v1/session", &[], b"").unwrap();
    assert!(st == 200 && b.contains("\"setup_required\":false"), "{b}");
    let login = serde_json::json!({"password": PW}).to_string();
    let (st, head, b) = http_req(http, "POST", "/api/v1/login", &json, login.as_bytes()).unwrap();
    assert_eq!(st, 200, "login after restart: {b}");
    let (cookie, csrf) = session_of(&head, &b);
    let h = auth_h(&cookie, &csrf);
    let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (st, _, b) = http_req(http, "GET", "/api/v1/push", &hv, b"").unwrap();
    assert!(
        st == 200 && b.contains("rtmp://127.0.0.1:9/live") && !b.contains("push-key-secret"),
        "push targets after restart: {b}"
    );

    // 4. A read-only card: a save answers 507 naming the file; the running config stays.
    s.start(http, &["--read-only-config"]);
    let (st, head, b) = http_req(http, "POST", "/api/v1/login", &json, login.as_bytes()).unwrap();
    assert_eq!(st, 200, "login on a read-only card: {b}");
    let (cookie, csrf) = session_of(&head, &b);
    let h = auth_h(&cookie, &csrf);
    let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (st, _, b) = http_req(http, "POST", "/api/v1/push", &hv, push).unwrap();
    assert_eq!(st, 507, "{b}");
    assert!(
        b.contains("/etc/rillcast/rillcast.toml") && b.contains("Read-only file system"),
        "{b}"
    );
    let (_, _, b) = http_req(http, "GET", "/api/v1/push", &hv, b"").unwrap();
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(1),
        "running config kept: {b}"
    );
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), saved);
    assert!(s.log().contains("config not saved"), "{}", s.log());

    // 5. A corrupt config at boot: the last good copy runs, one loud line, an event.
    std::fs::write(&cfg_path, "[http\nport = \n").unwrap();
    s.start(http, &[]);
    let log = s.log();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONFIG NOT USED"))
        .collect();
    assert_eq!(loud.len(), 1, "{log}");
    assert!(
        loud[0].starts_with("ERROR")
            && loud[0].contains("/etc/rillcast/rillcast.toml")
            && loud[0].contains("/var/lib/rillcast/last-good.toml"),
        "{}",
        loud[0]
    );
    let (st, head, b) = http_req(http, "POST", "/api/v1/login", &json, login.as_bytes()).unwrap();
    assert_eq!(st, 200, "login from the last good copy: {b}");
    let (cookie, csrf) = session_of(&head, &b);
    let h = auth_h(&cookie, &csrf);
    let hv: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (_, _, b) = http_req(http, "GET", "/api/v1/events", &hv, b"").unwrap();
    assert!(
        b.contains("\"type\":\"config_fallback\"") && b.contains("last-good.toml"),
        "{b}"
    );
    assert_eq!(
        std::fs::read_to_string(&cfg_path).unwrap(),
        "[http\nport = \n",
        "the broken file is left for the admin (the page saves over it)"
    );

    // 6. Purge: what the service wrote goes too.
    s.stop();
    s.step(&["dpkg", &d, "--purge", "rillcast"]);
    let left = s.sh("ls -d /etc/rillcast /var/lib/rillcast /usr/bin/rillcast 2>&1 || true");
    assert_eq!(left.matches("No such file").count(), 3, "{left}");
    drop(s);
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "packaged_install_walk: .deb built in {:.1} s, whole walk {:.1} s",
        t_deb.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn corrupt_config_at_boot_starts_from_the_last_good_copy() {
    let token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let extra = format!(
        "password_hash = \"{}\"\napi_tokens = [\"{}\"]\n[hls]\nwindow = 5\n",
        auth::hash_password_with("unused password", &[1; 16], 4, 8, 1),
        auth::hash_token(token)
    );
    let mut d = Daemon::start_with("boot-fallback", &extra, &[], Duration::from_secs(20));
    let cfg = d.dir.join("rillcast.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    // A successful boot keeps the file as the last good copy (no state dir: next to it).
    let last_good = d.dir.join("rillcast.toml.bak");
    wait_until("last good copy", Duration::from_secs(5), || {
        std::fs::read_to_string(&last_good)
            .ok()
            .filter(|t| *t == good)
    });
    let bearer = format!("Bearer {token}");
    let h = [("Authorization", bearer.as_str())];
    for (broken, what) in [
        ("[rtsp\nport = 1\n", "parse"),
        // Parses, but the memory plan does not fit: start-up's own check refuses it.
        (
            &*good.replace("window = 5", "window = 5\n[media]\nmemory_mib = 1"),
            "media.memory_mib",
        ),
    ] {
        std::fs::write(&cfg, broken).unwrap();
        d.restart(Duration::from_secs(20));
        let log = d.log();
        let loud: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("CONFIG NOT USED"))
            .collect();
        assert_eq!(loud.len(), 1, "{what}: {log}");
        assert!(
            loud[0].contains("rillcast.toml.bak") && loud[0].contains("rillcast.toml"),
            "{}",
            loud[0]
        );
        if what != "parse" {
            assert!(loud[0].contains(what), "{}", loud[0]);
        }
        // It runs the last good copy: its ports, its token, its HLS window.
        let (st, _, b) = http_req(d.http_port, "GET", "/api/v1/config", &h, b"").unwrap();
        assert_eq!(st, 200, "{b}");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["hls"]["window"], 5, "{b}");
        assert_eq!(v["media"]["memory_mib"], 0, "{b}");
        let (_, _, b) = http_req(d.http_port, "GET", "/api/v1/events", &h, b"").unwrap();
        assert!(b.contains("\"type\":\"config_fallback\""), "{b}");
        // Neither the broken file nor the good copy was overwritten.
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), broken);
        assert_eq!(std::fs::read_to_string(&last_good).unwrap(), good);
    }
    // No good copy: exit 2 with both reasons, as before.
    let _ = d.child.kill();
    let _ = d.child.wait();
    std::fs::remove_file(&last_good).unwrap();
    let (ok, _, err) = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_rillcast"))
            .arg("--config")
            .arg(&cfg)
            .arg("--state-dir")
            .arg(d.dir.join("state")),
        Duration::from_secs(20),
    );
    assert!(!ok, "{err}");
    assert!(
        err.contains("rillcast.toml") && err.contains("no last good copy"),
        "{err}"
    );
}
