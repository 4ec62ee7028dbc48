//! Saving the configuration file from the page or the API without ever leaving a broken file.
//!
//! Owns: the on-disk update protocol — write a temp file in the same directory, fsync it,
//! rename it over the file, fsync the directory (POSIX rename(2) is atomic within a file
//! system; the directory fsync makes the rename itself durable) — the last good copy (the
//! text of every successful save and boot, see `boot::last_good_path`; start-up falls back
//! to it when the file cannot boot), how a failed write is reported (a full or read-only
//! card is [`SaveError::no_space`]), and the comment-preserving edit of the user's TOML
//! with `toml_edit`: only the keys whose values changed are touched, so comments, key order
//! and keys left at their defaults stay as the user wrote them.
//!
//! Must not: touch the running configuration (the caller swaps it in only after a successful
//! save), or write anywhere but next to the file and to the last good copy.

use crate::config::Config;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The last good copy's path when there is no state directory: `rillcast.toml` →
/// `rillcast.toml.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

/// A failed save: which file, and the OS error.
#[derive(Debug)]
pub struct SaveError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl SaveError {
    /// The card is full (ENOSPC, EDQUOT) or read-only (EROFS): HTTP 507, not a bug.
    pub fn no_space(&self) -> bool {
        matches!(self.error.raw_os_error(), Some(28 | 30 | 122))
    }
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not write {}: {}", self.path.display(), self.error)
    }
}

/// Replaces `path` with `text` atomically and durably. On error the file at `path` is the
/// old one, untouched, and no temp file is left. New files are created with mode 0600 (the
/// file holds the password hash); an existing file keeps its mode.
pub fn save_atomic(path: &Path, text: &[u8]) -> Result<(), SaveError> {
    save_inner(path, text).map_err(|error| SaveError {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes the last good copy (0600, atomically) unless it already holds `text`.
pub fn keep_last_good(path: &Path, text: &[u8]) -> Result<(), SaveError> {
    if fs::read(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    save_atomic(path, text)
}

fn save_inner(path: &Path, text: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "config path has no file name"))?
        .to_string_lossy();
    let mode = match fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0o600,
        Err(e) => return Err(e),
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask (the unit's UMask=0027) must not take the group's write bit away.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Renders the new configuration as an edit of `original` (the file's current text): every
/// key whose value differs between `old` and `new` is set, removed or added; everything else,
/// comments included, is kept byte for byte. Fails if `original` is not valid TOML or a config
/// cannot be represented as TOML (the caller then writes `toml::to_string(new)` instead).
pub fn render_preserving(original: &str, old: &Config, new: &Config) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = original.parse().map_err(|e| format!("{e}"))?;
    let old_t = toml::Table::try_from(old).map_err(|e| e.to_string())?;
    let new_t = toml::Table::try_from(new).map_err(|e| e.to_string())?;
    apply(doc.as_table_mut(), &old_t, &new_t);
    Ok(doc.to_string())
}

fn apply(doc: &mut toml_edit::Table, old: &toml::Table, new: &toml::Table) {
    for (k, nv) in new {
        let ov = old.get(k);
        if ov == Some(nv) {
            continue;
        }
        let existing = doc.get_mut(k);
        match (nv, ov, existing) {
            (toml::Value::Table(nt), Some(toml::Value::Table(ot)), Some(item))
                if item.is_table() =>
            {
                // The only arm where `item` is a table: recurse, keeping its decor.
                if let Some(t) = item.as_table_mut() {
                    apply(t, ot, nt);
                }
            }
            (toml::Value::Table(nt), Some(toml::Value::Table(ot)), None) => {
                // The file relies on defaults here: write only what differs from them.
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                apply(&mut t, ot, nt);
                doc.insert(k, toml_edit::Item::Table(t));
            }
            (toml::Value::Table(nt), _, Some(item)) if item.is_inline_table() => {
                if let Some(v) = item.as_value_mut() {
                    let decor = v.decor().clone();
                    *v = edit_value(nv);
                    *v.decor_mut() = decor;
                }
                let _ = nt;
            }
            (toml::Value::Table(nt), _, _) => {
                doc.insert(k, toml_edit::Item::Table(edit_table(nt)));
            }
            (toml::Value::Array(a), _, Some(item)) if a.is_empty() && item.is_array_of_tables() => {
                doc.remove(k);
            }
            (toml::Value::Array(a), _, _) if is_array_of_tables(a) => {
                let mut aot = toml_edit::ArrayOfTables::new();
                for t in a.iter().filter_map(toml::Value::as_table) {
                    aot.push(edit_table(t));
                }
                doc.insert(k, toml_edit::Item::ArrayOfTables(aot));
            }
            (_, _, Some(item)) if item.is_value() => {
                if let Some(v) = item.as_value_mut() {
                    let decor = v.decor().clone();
                    *v = edit_value(nv);
                    *v.decor_mut() = decor;
                }
            }
            _ => {
                doc.insert(k, toml_edit::Item::Value(edit_value(nv)));
            }
        }
    }
    let gone: Vec<String> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    for k in gone {
        doc.remove(&k);
    }
}

fn is_array_of_tables(a: &[toml::Value]) -> bool {
    !a.is_empty() && a.iter().all(toml::Value::is_table)
}

fn edit_table(t: &toml::Table) -> toml_edit::Table {
    let mut out = toml_edit::Table::new();
    // Plain values first, then sub-tables (TOML requires that order for readability).
    for (k, v) in t {
        match v {
            toml::Value::Table(_) => {}
            toml::Value::Array(a) if is_array_of_tables(a) => {}
            _ => {
                out.insert(k, toml_edit::Item::Value(edit_value(v)));
            }
        }
    }
    for (k, v) in t {
        match v {
            toml::Value::Table(st) => {
                out.insert(k, toml_edit::Item::Table(edit_table(st)));
            }
            toml::Value::Array(a) if is_array_of_tables(a) => {
                let mut aot = toml_edit::ArrayOfTables::new();
                for t in a.iter().filter_map(toml::Value::as_table) {
                    aot.push(edit_table(t));
                }
                out.insert(k, toml_edit::Item::ArrayOfTables(aot));
            }
            _ => {}
        }
    }
    out
}

fn edit_value(v: &toml::Value) -> toml_edit::Value {
    match v {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for x in a {
                arr.push(edit_value(x));
            }
            toml_edit::Value::Array(arr)
        }
        toml::Value::Table(t) => {
            let mut it = toml_edit::InlineTable::new();
            for (k, x) in t {
                it.insert(k, edit_value(x));
            }
            toml_edit::Value::InlineTable(it)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rillcast-persist-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn save_replaces_and_keeps_backup() {
        let d = tmpdir("save");
        let p = d.join("rillcast.toml");
        save_atomic(&p, b"a = 1\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "a = 1\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o660)).unwrap();
        save_atomic(&p, b"a = 2\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o660,
            "an existing file keeps its mode"
        );
        let lg = d.join("last-good.toml");
        keep_last_good(&lg, b"a = 2\n").unwrap();
        let m1 = fs::metadata(&lg).unwrap();
        assert_eq!(m1.permissions().mode() & 0o777, 0o600);
        // The same text again writes nothing (one write per boot at most).
        keep_last_good(&lg, b"a = 2\n").unwrap();
        assert_eq!(
            fs::metadata(&lg).unwrap().modified().unwrap(),
            m1.modified().unwrap()
        );
        // No temp files left behind.
        let mut names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["last-good.toml", "rillcast.toml"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failed_save_leaves_old_file() {
        let d = tmpdir("fail");
        let p = d.join("rillcast.toml");
        save_atomic(&p, b"a = 1\n").unwrap();
        // The temp file's name is taken by a directory: the write fails before the rename.
        fs::create_dir(d.join(".rillcast.toml.tmp")).unwrap();
        assert!(save_atomic(&p, b"a = 2\n").is_err());
        assert_eq!(fs::read_to_string(&p).unwrap(), "a = 1\n");
        // A missing directory is an error naming the file, not a panic.
        let e = save_atomic(&d.join("nope/x.toml"), b"").unwrap_err();
        assert!(e.to_string().contains("nope/x.toml"), "{e}");
        assert!(!e.no_space());
        let full = SaveError {
            path: p.clone(),
            error: io::Error::from_raw_os_error(28),
        };
        assert!(full.no_space(), "ENOSPC");
        assert!(
            full.to_string().contains("No space left on device"),
            "{full}"
        );
        let ro = SaveError {
            path: p.clone(),
            error: io::Error::from_raw_os_error(30),
        };
        assert!(ro.no_space(), "EROFS");
        fs::remove_dir_all(&d).unwrap();
    }

    const USER_FILE: &str = "\
# my camera
[rtsp]
port = 9554 # moved off 8554
bind = \"0.0.0.0\"

[streams.live.source]
# the Pi camera
kind = \"testsrc\"
width = 640   # small
height = 480
";

    #[test]
    fn edit_keeps_comments_and_touches_only_changes() {
        let old = Config::parse(USER_FILE, "x").unwrap();
        let mut new = old.clone();
        new.rtsp.port = 9555;
        new.streams.get_mut("live").unwrap().source.width = 320;
        new.http.allowed_hosts = vec!["cam.example.com".into()];
        let out = render_preserving(USER_FILE, &old, &new).unwrap();
        assert!(out.contains("# my camera"), "{out}");
        assert!(out.contains("port = 9555 # moved off 8554"), "{out}");
        assert!(out.contains("# the Pi camera"), "{out}");
        assert!(out.contains("width = 320   # small"), "{out}");
        assert!(out.contains("height = 480\n"), "{out}");
        assert!(
            !out.contains("session_timeout_s"),
            "defaults not written: {out}"
        );
        assert_eq!(Config::parse(&out, "y").unwrap(), new);
    }

    #[test]
    fn edit_adds_and_removes_arrays_of_tables_and_options() {
        let old = Config::parse(USER_FILE, "x").unwrap();
        let mut new = old.clone();
        new.push.push(crate::config::PushConfig {
            url: "rtmp://origin/live".into(),
            key: Some("k".into()),
            stream: "live".into(),
            enabled: true,
            ..Default::default()
        });
        new.http.password_hash = Some("scrypt$1$1$1$00$00".into());
        let out = render_preserving(USER_FILE, &old, &new).unwrap();
        assert!(out.contains("[[push]]"), "{out}");
        assert!(out.contains("# the Pi camera"), "{out}");
        let back = Config::parse(&out, "y").unwrap();
        assert_eq!(back, new);
        // And back again: the push table and the hash go away, comments stay.
        let out2 = render_preserving(&out, &new, &old).unwrap();
        assert!(!out2.contains("push"), "{out2}");
        assert!(!out2.contains("password_hash"), "{out2}");
        assert!(out2.contains("# my camera"));
        assert_eq!(Config::parse(&out2, "z").unwrap(), old);
    }

    #[test]
    fn edit_of_empty_file_writes_only_differences() {
        let old = Config::parse("", "x").unwrap();
        let mut new = old.clone();
        new.http.port = 9090;
        let out = render_preserving("", &old, &new).unwrap();
        assert_eq!(out.trim(), "[http]\nport = 9090");
        assert!(render_preserving("[[[", &old, &new).is_err());
    }
}
