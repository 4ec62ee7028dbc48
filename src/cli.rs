//! The command line: `rillcast [--config PATH] [--board NAME] [--check-config]
//! [--print-config] [--log-level LEVEL]`.
//!
//! Owns: argument parsing (by hand: a parser crate would cost more binary than this file),
//! reading the config file, applying the board profile, and the exit codes: 0 ok, 1 runtime
//! failure, 2 usage or configuration error.

use crate::board;
use crate::config::Config;
use crate::daemon::{self, BoardLimits};

const USAGE: &str = "\
usage: rillcast [--config PATH] [--board NAME] [--check-config] [--print-config]
                [--log-level error|warn|info|debug|trace] [--version] [--help]

  --config PATH    TOML configuration (see config/rillcast.toml); without it, built-in
                   defaults: one stream `live` from the built-in test source,
                   RTSP on :8554, HTTP on :8080
  --board NAME     board profile (boards/README.md): memory and viewer limits, and the
                   encoder command for `exec` sources that give none
  --check-config   validate, print the memory plan, and exit
  --print-config   print the effective configuration as TOML and exit
";

#[derive(Debug)]
struct Args {
    config: Option<String>,
    board: Option<String>,
    check: bool,
    print: bool,
    log_level: log::LevelFilter,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        config: None,
        board: None,
        check: false,
        print: false,
        log_level: log::LevelFilter::Info,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--config" | "-c" => a.config = Some(value("--config")?),
            "--board" => a.board = Some(value("--board")?),
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
    let (text, file) = match &args.config {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (t, p.clone()),
            Err(e) => {
                eprintln!("rillcast: cannot read config {p}: {e}");
                return 2;
            }
        },
        None => (String::new(), "<built-in defaults>".to_string()),
    };
    let encoder = board.as_ref().map(|b| b.encoder_command.as_slice());
    let cfg = match Config::parse_with_encoder(&text, &file, encoder) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rillcast: {e}");
            return 2;
        }
    };
    let limits = BoardLimits {
        memory_mib: board.as_ref().map(|b| b.media_memory_mib),
        max_viewers: board.as_ref().map(|b| b.max_viewers),
        config_path: args.config.as_ref().map(std::path::PathBuf::from),
        encoder_command: board.as_ref().map(|b| b.encoder_command.clone()),
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
    if args.check {
        return match crate::media::budget::MemoryPlan::new(
            &cfg,
            limits.memory_mib,
            limits.max_viewers,
        ) {
            Ok(p) => {
                println!("{file}: ok");
                println!("{}", p.summary());
                0
            }
            Err(e) => {
                eprintln!("rillcast: {file}: {e}");
                2
            }
        };
    }
    if let Some(b) = &board {
        log::info!("board {}: {}", b.name, b.description);
    }
    match daemon::run(cfg, limits, |b| {
        log::info!("ready: rtsp://{}/<stream>", b.rtsp);
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
