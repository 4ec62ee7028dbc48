//! Board profiles: what rillcast knows about each supported board (`boards/*.toml`).
//!
//! Owns the embedded profiles (compiled in with `include_str!`, so the binary needs no data
//! files) and their typed form, [`Board`]. A profile gives the Rust target triple the board's
//! binary is built for, the encoder command whose stdout (H.264 Annex B) rillcast reads, and the
//! sizing figures the daemon uses to size its memory once at start.
//!
//! Must not: read files, spawn the encoder, or decide policy from the figures; the daemon and
//! the config layer do that. The build scripts (`scripts/build.sh`) read the same TOML files.

use serde::Deserialize;
use std::fmt;

/// One board profile, as written in `boards/<name>.toml`. Unknown keys are rejected, so a typo
/// in a profile fails the tests instead of being ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Profile name; equals the file name without `.toml` (e.g. `rpi-zero`).
    pub name: String,
    /// One line for people: which boards and OSes this profile covers.
    pub description: String,
    /// Rust target triple the board's binary is built for (e.g. `arm-unknown-linux-musleabihf`).
    pub target: String,
    /// Encoder argument vector: program first, then its arguments. It must write an H.264
    /// Annex B elementary stream (ITU-T H.264 Annex B byte stream) to stdout.
    pub encoder_command: Vec<String>,
    /// Memory the daemon may allocate once at start for media buffers, in MiB.
    pub media_memory_mib: u32,
    /// Viewer sessions (RTSP + HLS) the board is sized for.
    pub max_viewers: u32,
    /// RAM of the smallest board model this profile targets, in MiB.
    pub ram_mib: u32,
    /// Cargo features the board's build uses (`scripts/build.sh`): absent = the defaults;
    /// a list = `--no-default-features --features <list>` (e.g. a flash-constrained camera
    /// drops `rtmps`, whose TLS stack costs ~0.5 MB).
    #[serde(default)]
    pub cargo_features: Option<Vec<String>>,
    /// Stripped-size budget for the board's release binary, checked by `scripts/build.sh`.
    #[serde(default)]
    pub max_binary_bytes: Option<u64>,
}

/// The embedded profiles as `(file stem, TOML text)`, in the order `all()` returns them.
const PROFILES: &[(&str, &str)] = &[
    ("rpi-zero", include_str!("../boards/rpi-zero.toml")),
    ("rpi-3", include_str!("../boards/rpi-3.toml")),
    ("rpi-4", include_str!("../boards/rpi-4.toml")),
    ("rpi-5", include_str!("../boards/rpi-5.toml")),
    (
        "generic-armv7-camera",
        include_str!("../boards/generic-armv7-camera.toml"),
    ),
];

/// A board name that has no profile. Its `Display` lists the known names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownBoard {
    /// The name that was asked for.
    pub name: String,
}

impl fmt::Display for UnknownBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown board `{}`; known boards: ", self.name)?;
        for (i, name) in names().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownBoard {}

/// Names of all embedded profiles, in a stable order.
pub fn names() -> impl Iterator<Item = &'static str> {
    PROFILES.iter().map(|(name, _)| *name)
}

/// The profile called `name`.
pub fn find(name: &str) -> Result<Board, UnknownBoard> {
    PROFILES
        .iter()
        .find(|(stem, _)| *stem == name)
        .map(|(_, text)| parse_embedded(text))
        .ok_or_else(|| UnknownBoard {
            name: name.to_owned(),
        })
}

/// Every embedded profile, in the order of [`names`].
pub fn all() -> Vec<Board> {
    PROFILES
        .iter()
        .map(|(_, text)| parse_embedded(text))
        .collect()
}

fn parse_embedded(text: &str) -> Board {
    // The profiles are compiled in, not user input; `tests::every_profile_parses` parses each
    // one, so this cannot fail in a binary whose tests passed.
    toml::from_str(text).expect("embedded board profile parses (checked by board tests)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_profile_parses_and_name_matches_file_name() {
        for (stem, text) in PROFILES {
            let board: Board = toml::from_str(text)
                .unwrap_or_else(|e| panic!("boards/{stem}.toml does not parse: {e}"));
            assert_eq!(board.name, *stem, "name field must equal the file name");
        }
        assert_eq!(all().len(), PROFILES.len());
    }

    #[test]
    fn every_file_in_boards_dir_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/boards");
        let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
            .expect("boards/ directory exists")
            .map(|e| e.expect("readable dir entry").file_name())
            .filter_map(|n| n.to_str()?.strip_suffix(".toml").map(str::to_owned))
            .collect();
        let embedded: BTreeSet<String> = names().map(str::to_owned).collect();
        assert_eq!(on_disk, embedded, "boards/*.toml and PROFILES differ");
    }

    #[test]
    fn find_returns_the_profile_and_unknown_lists_names() {
        let zero = find("rpi-zero").expect("rpi-zero is known");
        assert_eq!(zero.target, "arm-unknown-linux-musleabihf");
        assert_eq!(find("rpi-4").map(|b| b.ram_mib), Ok(2048));

        let err = find("rpi-6").expect_err("rpi-6 is not a profile");
        assert_eq!(err.name, "rpi-6");
        assert_eq!(
            err.to_string(),
            "unknown board `rpi-6`; known boards: rpi-zero, rpi-3, rpi-4, rpi-5, \
             generic-armv7-camera"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = format!("{}\nram_mb = 512\n", PROFILES[0].1);
        let err = toml::from_str::<Board>(&text).expect_err("typo'd key must be rejected");
        assert!(err.to_string().contains("ram_mb"), "{err}");
    }

    #[test]
    fn figures_are_sane() {
        for b in all() {
            assert!(b.max_viewers >= 1, "{}", b.name);
            assert!(b.media_memory_mib >= 1, "{}", b.name);
            // The media pool is allocated once at start; keep it to at most an eighth of RAM
            // so the OS, the encoder and its buffers keep the rest.
            assert!(b.media_memory_mib * 8 <= b.ram_mib, "{}", b.name);
            assert!(!b.description.is_empty(), "{}", b.name);
        }
    }

    /// The packages install config/rillcast.toml as /etc/rillcast/rillcast.toml and the init
    /// scripts pass `--board`: that pair must start on every board, or a fresh install fails.
    #[test]
    fn shipped_config_fits_every_board() {
        let text = include_str!("../config/rillcast.toml");
        for b in all() {
            let cfg = crate::config::Config::parse_with_encoder(
                text,
                "config/rillcast.toml",
                Some(&b.encoder_command),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
            let plan = crate::media::budget::MemoryPlan::new(
                &cfg,
                Some(b.media_memory_mib),
                Some(b.max_viewers),
            );
            assert!(plan.is_ok(), "{}: {}", b.name, plan.unwrap_err());
        }
    }

    #[test]
    fn encoder_commands_write_annex_b_to_stdout() {
        for b in all() {
            let argv = &b.encoder_command;
            let program = argv.first().map(String::as_str).unwrap_or("");
            assert!(!program.is_empty(), "{}: empty encoder_command", b.name);
            match program {
                "rpicam-vid" => {
                    // `-o -` is stdout; `--inline` repeats SPS/PPS so viewers can join at
                    // any IDR; `-t 0` runs forever.
                    let pairs: Vec<_> = argv.windows(2).collect();
                    assert!(
                        pairs.iter().any(|w| w[0] == "-o" && w[1] == "-"),
                        "{}",
                        b.name
                    );
                    assert!(
                        pairs.iter().any(|w| w[0] == "-t" && w[1] == "0"),
                        "{}",
                        b.name
                    );
                    assert!(argv.iter().any(|a| a == "--inline"), "{}", b.name);
                }
                "v4l2-ctl" => {
                    assert!(argv.iter().any(|a| a == "--stream-to=-"), "{}", b.name);
                }
                other => panic!("{}: add a check for encoder `{other}`", b.name),
            }
        }
    }

    #[test]
    fn rpi5_uses_software_encoder_others_hardware() {
        for b in all() {
            let libav = b.encoder_command.iter().any(|a| a == "libav");
            assert_eq!(libav, b.name == "rpi-5", "{}", b.name);
        }
        let five = find("rpi-5").expect("rpi-5 is known");
        let argv = five.encoder_command;
        assert!(argv
            .windows(2)
            .any(|w| w[0] == "--libav-format" && w[1] == "h264"));
        assert!(argv
            .windows(2)
            .any(|w| w[0] == "--libav-video-codec" && w[1] == "libx264"));
    }

    fn toml_file(rel: &str) -> toml::Table {
        let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        toml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn every_board_target_has_cross_and_qemu_runner_entries() {
        let cross = toml_file("Cross.toml");
        let cargo = toml_file(".cargo/config.toml");
        for b in all() {
            let in_cross = cross.get("target").and_then(|t| t.get(&b.target)).is_some();
            assert!(
                in_cross,
                "Cross.toml lacks [target.{}] ({})",
                b.target, b.name
            );
            let runner = cargo
                .get("target")
                .and_then(|t| t.get(&b.target))
                .and_then(|t| t.get("runner"))
                .and_then(|r| r.as_array())
                .unwrap_or_else(|| panic!(".cargo/config.toml: no runner for {}", b.target));
            let cpu = runner
                .windows(2)
                .find(|w| w[0].as_str() == Some("-cpu"))
                .and_then(|w| w[1].as_str());
            assert!(
                cpu.is_some(),
                "{}: runner must name a real CPU model",
                b.target
            );
        }
    }
}
