//! Whether a configuration can boot — the one check shared by start-up and every save from
//! the page or the API — and start-up from the last good copy when the file cannot boot.
//!
//! Owns: [`check`] (validate → port conflicts → memory plan, with the board's encoder and
//! limits applied exactly as at start-up), where the last good copy lives
//! ([`last_good_path`]), and [`load`]: the file if it boots, else the last good copy with one
//! loud log line (the daemon turns the [`Fallback`] into a `config_fallback` event).
//!
//! Must not: bind sockets or start anything (the daemon does that once this said yes), or
//! write files (the caller keeps the last good copy through `web::persist`).

use crate::config::Config;
use crate::media::budget::MemoryPlan;
use std::fmt;
use std::path::{Path, PathBuf};

/// What start-up takes from the board profile (`--board`), so a save is checked against the
/// same figures the next boot will use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_mib: Option<u32>,
    pub max_viewers: Option<u32>,
    /// The board's encoder command for `exec` sources that give none.
    pub encoder: Option<Vec<String>>,
}

/// Why a configuration cannot boot: the dotted key to change (when one is to blame) and a
/// sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unbootable {
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Unbootable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(k) => write!(f, "{k}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn unbootable(field: impl Into<String>, message: impl Into<String>) -> Unbootable {
    Unbootable {
        field: Some(field.into()),
        message: message.into(),
    }
}

/// The start-up checks on a parsed configuration: cross-field validation, listening ports
/// that would collide, and the memory plan against the ceiling. Returns the plan start-up
/// would allocate.
pub fn check(cfg: &Config, limits: &Limits) -> Result<MemoryPlan, Unbootable> {
    cfg.validate().map_err(|(k, m)| unbootable(k, m))?;
    if cfg.http.port == cfg.rtsp.port && binds_overlap(&cfg.http.bind, &cfg.rtsp.bind) {
        return Err(unbootable(
            "http.port",
            format!(
                "{} is also rtsp.port and the addresses {} and {} overlap",
                cfg.http.port, cfg.http.bind, cfg.rtsp.bind
            ),
        ));
    }
    MemoryPlan::new(cfg, limits.memory_mib, limits.max_viewers).map_err(|message| Unbootable {
        field: Some(plan_culprit(cfg, limits)),
        message,
    })
}

/// Parses config text as start-up does (the board's encoder filled in) and [`check`]s it.
pub fn parse_and_check(
    text: &str,
    file: &str,
    limits: &Limits,
) -> Result<(Config, MemoryPlan), String> {
    let cfg = Config::parse_with_encoder(text, file, limits.encoder.as_deref())
        .map_err(|e| e.to_string())?;
    let plan = check(&cfg, limits).map_err(|e| format!("{file}: {e}"))?;
    Ok((cfg, plan))
}

/// Two listen addresses share a port space when they are equal or either is a wildcard.
fn binds_overlap(a: &str, b: &str) -> bool {
    let wild = |s: &str| matches!(s, "0.0.0.0" | "::" | "[::]" | "");
    a == b || wild(a) || wild(b)
}

/// The key to blame when the plan does not fit: the first push target whose queue tips it
/// over (push targets are what the page adds), else the ceiling itself.
fn plan_culprit(cfg: &Config, limits: &Limits) -> String {
    let mut trial = cfg.clone();
    trial.push.clear();
    if MemoryPlan::new(&trial, limits.memory_mib, limits.max_viewers).is_err() {
        return "media.memory_mib".into();
    }
    for (i, p) in cfg.push.iter().enumerate() {
        trial.push.push(p.clone());
        if p.enabled && MemoryPlan::new(&trial, limits.memory_mib, limits.max_viewers).is_err() {
            return format!("push.{i}.queue_kib");
        }
    }
    "media.memory_mib".into()
}

/// Where the last good copy of `config` is kept: `last-good.toml` in the state directory
/// (systemd's `StateDirectory=`, `/var/lib/rillcast` in the package), else `<config>.bak`
/// next to the file.
pub fn last_good_path(config: &Path, state_dir: Option<&Path>) -> PathBuf {
    match state_dir {
        Some(d) => d.join("last-good.toml"),
        None => crate::web::persist::backup_path(config),
    }
}

/// The state directory from the environment: systemd sets `STATE_DIRECTORY` (a
/// colon-separated list when several are configured; ours is the first).
pub fn state_dir_from_env() -> Option<PathBuf> {
    let v = std::env::var_os("STATE_DIRECTORY")?;
    let s = v.to_string_lossy();
    let first = s.split(':').next().unwrap_or("");
    (!first.is_empty()).then(|| PathBuf::from(first))
}

/// Start-up used the last good copy because the file could not boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The configuration file that failed.
    pub file: String,
    pub error: String,
    /// The copy that was used instead.
    pub used: String,
}

/// The configuration start-up runs.
#[derive(Debug)]
pub struct Loaded {
    pub cfg: Config,
    pub plan: MemoryPlan,
    /// The text it came from (kept as the last good copy once the daemon is up).
    pub text: String,
    pub fallback: Option<Fallback>,
}

/// Loads `path`; if it cannot be read, parsed or planned, loads `last_good` instead and logs
/// one ERROR line naming the file, the error and the copy used. Fails (with both reasons)
/// when neither boots.
pub fn load(path: &Path, last_good: &Path, limits: &Limits) -> Result<Loaded, String> {
    let file = path.display().to_string();
    let first = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {file}: {e}"))
        .and_then(|text| {
            let (cfg, plan) = parse_and_check(&text, &file, limits)?;
            Ok((cfg, plan, text))
        });
    let error = match first {
        Ok((cfg, plan, text)) => {
            return Ok(Loaded {
                cfg,
                plan,
                text,
                fallback: None,
            })
        }
        Err(e) => e,
    };
    let used = last_good.display().to_string();
    let text = match std::fs::read_to_string(last_good) {
        Ok(t) => t,
        Err(e) => return Err(format!("{error} (no last good copy: {used}: {e})")),
    };
    let (cfg, plan) = parse_and_check(&text, &used, limits)
        .map_err(|e| format!("{error} (and the last good copy does not boot either: {e})"))?;
    log::error!(
        "CONFIG NOT USED: {error}; started from the last good copy {used} instead \
         (fix or re-save {file}; the page saves over it)"
    );
    Ok(Loaded {
        cfg,
        plan,
        text,
        fallback: Some(Fallback { file, error, used }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_key() {
        let l = Limits::default();
        let c = Config::parse("", "t").unwrap();
        assert!(check(&c, &l).is_ok());
        // Same port on a wildcard and a specific address: validate() lets it through, the
        // port check does not.
        let c = Config::parse(
            "[http]\nport = 9000\nbind = \"127.0.0.1\"\n[rtsp]\nport = 9000\n",
            "t",
        )
        .unwrap();
        let e = check(&c, &l).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("http.port"), "{e}");
        // The ceiling alone is too small: blame the ceiling.
        let c = Config::parse("[media]\nmemory_mib = 2\n", "t").unwrap();
        let e = check(&c, &l).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("media.memory_mib"));
        assert!(e.message.contains("ceiling is 2 MiB"), "{e}");
        // The second push target tips it over: blame its queue.
        let t = "[media]\nmemory_mib = 24\n\
                 [[push]]\nurl = \"rtmp://a/live/k\"\nqueue_kib = 1024\n\
                 [[push]]\nurl = \"rtmp://b/live/k\"\nqueue_kib = 8192\n";
        let c = Config::parse(t, "t").unwrap();
        assert!(MemoryPlan::new(&c, None, None).is_err());
        let e = check(&c, &l).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("push.1.queue_kib"), "{e}");
        // The board's ceiling counts as at start-up.
        let c = Config::parse("", "t").unwrap();
        let small = Limits {
            memory_mib: Some(4),
            ..Limits::default()
        };
        assert_eq!(
            check(&c, &small).unwrap_err().field.as_deref(),
            Some("media.memory_mib")
        );
    }

    #[test]
    fn load_falls_back_to_the_last_good_copy() {
        let d = std::env::temp_dir().join(format!("rillcast-boot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let (p, lg) = (d.join("rillcast.toml"), d.join("last-good.toml"));
        let l = Limits::default();
        std::fs::write(&p, "[http]\nport = 9001\n").unwrap();
        let ok = load(&p, &lg, &l).unwrap();
        assert_eq!((ok.cfg.http.port, ok.fallback), (9001, None));
        // Broken file, no copy: a clear error naming both.
        std::fs::write(&p, "[http\nport = 9001\n").unwrap();
        let e = load(&p, &lg, &l).unwrap_err();
        assert!(
            e.contains("rillcast.toml") && e.contains("no last good copy"),
            "{e}"
        );
        // Broken file, good copy: the copy, with what went wrong.
        std::fs::write(&lg, "[http]\nport = 9002\n").unwrap();
        let f = load(&p, &lg, &l).unwrap();
        assert_eq!(f.cfg.http.port, 9002);
        assert_eq!(f.text, "[http]\nport = 9002\n");
        let fb = f.fallback.unwrap();
        assert_eq!(fb.used, lg.display().to_string());
        assert!(fb.error.contains("rillcast.toml"), "{}", fb.error);
        // A file that parses but cannot plan falls back too; so does a missing one.
        std::fs::write(&p, "[media]\nmemory_mib = 1\n").unwrap();
        let f = load(&p, &lg, &l).unwrap();
        assert!(f.fallback.unwrap().error.contains("media.memory_mib"));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(load(&p, &lg, &l).unwrap().cfg.http.port, 9002);
        // Neither boots: both reasons.
        std::fs::write(&p, "x = \n").unwrap();
        std::fs::write(&lg, "[media]\nmemory_mib = 1\n").unwrap();
        let e = load(&p, &lg, &l).unwrap_err();
        assert!(e.contains("does not boot either"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn last_good_lives_in_the_state_dir() {
        let p = Path::new("/etc/rillcast/rillcast.toml");
        assert_eq!(
            last_good_path(p, Some(Path::new("/var/lib/rillcast"))),
            PathBuf::from("/var/lib/rillcast/last-good.toml")
        );
        assert_eq!(
            last_good_path(p, None),
            PathBuf::from("/etc/rillcast/rillcast.toml.bak")
        );
    }
}
