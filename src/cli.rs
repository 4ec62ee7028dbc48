//! The command line: `rillcast [--config PATH] [--board NAME] [--check-config]
//! [--print-config] [--log-level LEVEL]`.
//!
//! Owns: argument parsing (by hand: a parser crate would cost more binary than this file),
//! reading the config file, applying the board profile, and the exit codes: 0 ok, 1 runtime
//! failure, 2 usage or configuration error.

use crate::board;
use crate::daemon::{self, BoardLimits};

const USAGE: &str = "\
usage: rillcast [--config PATH] [--board NAME] [--state-dir DIR] [--check-config]
                [--print-config] [--log-level error|warn|info|debug|trace] [--version] [--help]

  --config PATH    TOML configuration (see config/rillcast.toml); without it, built-in
                   defaults: one stream `live` from the built-in test source,
                   RTSP on :8554, HTTP on :8080
  --board NAME     board profile (boards/README.md): memory and viewer limits, and the
                   encoder command for `exec` sources that give none
  --state-dir DIR  where the last good copy of the config is kept (last-good.toml);
                   default $STATE_DIRECTORY (systemd's StateDirectory=), else PATH.bak.
                   A config file that cannot boot falls back to that copy
  --check-config   validate (as start-up and the web page do: keys, ports, memory
                   plan), print the memory plan, and exit
  --print-config   print the effective configuration as TOML and exit
";

#[derive(Debug)]
struct Args {
    config: Option<String>,
    board: Option<String>,
    state_dir: Option<String>,
    check: bool,
    print: bool,
    log_level: log::LevelFilter,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        board: None,
        state_dir: None,
        check: false,
        print: false,
        log_level: log::LevelFilter::Info,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--config" | "-c" => a.config = Some(value("--config")?),
            "--board" => a.board = Some(value("--board")?),
            "--state-dir" => a.state_dir = Some(value("--state-dir")?),
            "--check-config" => a.check = true,
            "--print-config" => a.print = true,
            "--log-level" => {
                let v = value("--log-level")?;
                a.log_level = v
                    .parse()
                    .map_err(|_| format!("--log-level: unknown level `{v}`"))?;
            }
            "--version" | "-V" => {
                println!("rillcast {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(a))
}

/// Runs the program; returns the process exit code.
pub fn main() -> i32 {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => return 0,
        Err(e) => {
            eprintln!("rillcast: {e}\n{USAGE}");
            return 2;
        }
    };
    let _ = simple_logger::SimpleLogger::new()
        .with_level(args.log_level)
        .env()
        .init();
    let board = match args.board.as_deref().map(board::find).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("rillcast: {e}");
            return 2;
        }
    };
    let limits = crate::boot::Limits {
        memory_mib: board.as_ref().map(|b| b.media_memory_mib),
        max_viewers: board.as_ref().map(|b| b.max_viewers),
        encoder: board.as_ref().map(|b| b.encoder_command.clone()),
    };
    let config_path = args.config.as_ref().map(std::path::PathBuf::from);
    let state_dir = args
        .state_dir
        .as_ref()
        .map(std::path::PathBuf::from)
        .or_else(crate::boot::state_dir_from_env);
    let last_good = config_path
        .as_deref()
        .map(|p| crate::boot::last_good_path(p, state_dir.as_deref()));
    let file = args
        .config
        .clone()
        .unwrap_or_else(|| "<built-in defaults>".to_string());
    if args.check {
        // The file itself, no fallback: the admin asks about this file.
        let text = match &config_path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("rillcast: cannot read config {file}: {e}");
                    return 2;
                }
            },
            None => String::new(),
        };
        return match crate::boot::parse_and_check(&text, &file, &limits) {
            Ok((_, p)) => {
                println!("{file}: ok");
                println!("{}", p.summary());
                0
            }
            Err(e) => {
                eprintln!("rillcast: {e}");
                2
            }
        };
    }
    let loaded = match (&config_path, &last_good) {
        (Some(p), Some(lg)) => crate::boot::load(p, lg, &limits),
        _ => crate::boot::parse_and_check("", &file, &limits).map(|(cfg, plan)| {
            crate::boot::Loaded {
                cfg,
                plan,
                text: String::new(),
                fallback: None,
            }
        }),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rillcast: {e}");
            return 2;
        }
    };
    let cfg = loaded.cfg;
    let limits = BoardLimits {
        memory_mib: limits.memory_mib,
        max_viewers: limits.max_viewers,
        config_path,
        encoder_command: limits.encoder,
        last_good_path: last_good.clone(),
        fallback: loaded.fallback.clone(),
    };
    if args.print {
        match toml::to_string(&cfg) {
            Ok(t) => print!("{t}"),
            Err(e) => {
                eprintln!("rillcast: {e}");
                return 1;
            }
        }
        return 0;
    }
    if let Some(b) = &board {
        log::info!("board {}: {}", b.name, b.description);
    }
    // Booted from the file: it is the last good copy now (unless start-up fell back).
    let keep = match (&last_good, &loaded.fallback) {
        (Some(lg), None) => Some((lg.clone(), loaded.text)),
        _ => None,
    };
    match daemon::run(cfg, limits, move |b| {
        log::info!("ready: rtsp://{}/<stream>", b.rtsp);
        if let Some((lg, text)) = keep {
            if let Err(e) = crate::web::persist::keep_last_good(&lg, text.as_bytes()) {
                log::warn!("the last good copy of the config was not kept: {e}");
            }
        }
    }) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Result<Option<Args>, String> {
        parse_args(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_flags_and_rejects_unknown() {
        let a = args(&["--config", "x.toml", "--board", "rpi-3", "--check-config"])
            .unwrap()
            .unwrap();
        assert_eq!(a.config.as_deref(), Some("x.toml"));
        assert_eq!(a.board.as_deref(), Some("rpi-3"));
        assert!(a.check && !a.print);
        assert!(args(&["--config"]).unwrap_err().contains("needs a value"));
        assert!(args(&["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(args(&["--log-level", "loud"]).is_err());
    }
}
