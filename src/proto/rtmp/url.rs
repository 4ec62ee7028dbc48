//! `rtmp://` / `rtmps://` publish URLs: parsing, the `tcUrl`, and a display that hides the key.
//!
//! Owns: splitting `rtmp[s]://host[:port]/app[/stream-key]`. Must not resolve names or log the
//! stream key (it is a credential): `Debug` and [`RtmpUrl::redacted`] show only its first 2 chars.

use super::RtmpError;
use core::fmt;

/// A parsed publish target. Allocated once at setup.
#[derive(Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// `rtmps://` (TLS is the shell's job; the core only reports it).
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port: explicit, else 1935 (`rtmp`) / 443 (`rtmps`).
    pub port: u16,
    /// Whether the port was written in the URL (kept in the `tcUrl` as the user wrote it).
    pub port_explicit: bool,
    /// Application name, the `app` of the `connect` command.
    pub app: String,
    /// Stream key, the name in `releaseStream`/`FCPublish`/`publish`. May be empty until set.
    pub key: String,
}

impl RtmpUrl {
    /// Parses `rtmp[s]://host[:port]/app[/stream-key]`. The first path segment is the app; the
    /// rest (which may contain `/` or a `?query`) is the stream key.
    pub fn parse(url: &str) -> Result<Self, RtmpError> {
        let (tls, rest) = if let Some(r) = strip_prefix_ci(url, "rtmps://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ci(url, "rtmp://") {
            (false, r)
        } else {
            return Err(RtmpError::InvalidUrl("scheme must be rtmp:// or rtmps://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(RtmpError::InvalidUrl("user info in URL is not supported"));
        }
        let (host, port_str) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or(RtmpError::InvalidUrl("unclosed [ in host"))?;
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(RtmpError::InvalidUrl("garbage after ]")),
            };
            (&v6[..end], port)
        } else {
            match authority.rfind(':') {
                Some(i) => (&authority[..i], Some(&authority[i + 1..])),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(RtmpError::InvalidUrl("empty host"));
        }
        let port = match port_str {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 => n,
                _ => return Err(RtmpError::InvalidUrl("bad port")),
            },
            None if tls => 443,
            None => 1935,
        };
        let (app, key) = match path.find('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (path, ""),
        };
        if app.is_empty() {
            return Err(RtmpError::InvalidUrl("missing app"));
        }
        Ok(RtmpUrl {
            tls,
            host: host.to_string(),
            port,
            port_explicit: port_str.is_some(),
            app: app.to_string(),
            key: key.to_string(),
        })
    }

    /// Parses `url` and, when `key` is given, uses the whole URL path as the app and `key` as the
    /// stream key (so `rtmp://host/app/instance` + key works for origins with multi-part apps).
    pub fn parse_with_key(url: &str, key: Option<&str>) -> Result<Self, RtmpError> {
        let mut u = Self::parse(url)?;
        if let Some(k) = key {
            if !u.key.is_empty() {
                u.app = format!("{}/{}", u.app, u.key);
            }
            u.key = k.to_string();
        }
        Ok(u)
    }

    /// The `tcUrl` of the `connect` command (spec 7.2.1.1): the URL without the stream key.
    pub fn tc_url(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port_explicit {
            format!("{scheme}://{host}:{}/{}", self.port, self.app)
        } else {
            format!("{scheme}://{host}/{}", self.app)
        }
    }

    /// A display form safe for logs: the key shows at most its first 2 characters then `…`.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// See [`RtmpUrl::redacted`].
pub struct Redacted<'a>(&'a RtmpUrl);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.tc_url())?;
        if !self.0.key.is_empty() {
            let shown: String = self.0.key.chars().take(2).collect();
            write!(f, "/{shown}…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtmpUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_key() {
        let u = RtmpUrl::parse("rtmp://a.example/live2/abcd-efgh").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "a.example", 1935));
        assert_eq!((u.app.as_str(), u.key.as_str()), ("live2", "abcd-efgh"));
        assert_eq!(u.tc_url(), "rtmp://a.example/live2");
        let s = RtmpUrl::parse("RTMPS://h:8443/app").unwrap();
        assert_eq!((s.tls, s.port, s.key.as_str()), (true, 8443, ""));
        assert_eq!(RtmpUrl::parse("rtmps://h/app").unwrap().port, 443);
        let v6 = RtmpUrl::parse("rtmp://[::1]:1936/app/k").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1936));
        assert_eq!(v6.tc_url(), "rtmp://[::1]:1936/app");
    }

    #[test]
    fn separate_key_keeps_whole_path_as_app() {
        let u = RtmpUrl::parse_with_key("rtmp://h/app/inst", Some("sk")).unwrap();
        assert_eq!((u.app.as_str(), u.key.as_str()), ("app/inst", "sk"));
        let u = RtmpUrl::parse_with_key("rtmp://h/app", Some("sk")).unwrap();
        assert_eq!((u.app.as_str(), u.key.as_str()), ("app", "sk"));
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://h/app",
            "rtmp:///app",
            "rtmp://h",
            "rtmp://h:0/a",
            "rtmp://h:x/a",
        ] {
            assert!(RtmpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redaction_never_shows_the_key() {
        let u = RtmpUrl::parse("rtmp://h:1935/live/supersecret").unwrap();
        let shown = format!("{} {:?}", u.redacted(), u);
        assert!(
            !shown.contains("supersecret") && !shown.contains("per"),
            "{shown}"
        );
        assert_eq!(u.redacted().to_string(), "rtmp://h:1935/live/su…");
    }
}
