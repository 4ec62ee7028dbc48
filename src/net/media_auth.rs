//! Who may fetch a stream's media over HTTP (HLS playlists and segments, `/master.m3u8`, and
//! any other HTTP media route): the stream's `streams.X.auth` user/password sent as HTTP Basic
//! (RFC 7617; what ffmpeg, VLC and Safari send for `http://user:pass@host/...`), or a live web
//! session cookie (the page's logged-in user; checked by the web API through a hook).
//!
//! Owns: the per-stream credentials table, the decision ([`MediaAuth::allows`]), the 401
//! answer with its `WWW-Authenticate: Basic realm="rillcast/STREAM"` challenge, and the CORS
//! rule: public streams keep `Access-Control-Allow-Origin: *`, protected ones get no CORS
//! header at all (same-origin only), so a page on another origin cannot read them through a
//! LAN user's browser. Must not: verify passwords itself (Basic is checked by
//! [`crate::proto::rtsp::auth::verify`], in constant time, the same code RTSP uses), or know
//! how sessions work (that is `web::api`'s, behind [`SessionCheck`]).

use crate::config::AuthConfig;
use crate::net::http::{HttpRequest, HttpResponse};
use crate::proto::rtsp::auth::{self as rtsp_auth, Credentials};
use std::cell::{Cell, RefCell};

/// Says whether a request carries a valid web session (cookie and Host as the API requires).
pub type SessionCheck = Box<dyn Fn(&HttpRequest<'_>) -> bool>;

/// The realm prefix of HTTP media challenges: `rillcast/STREAM`.
pub const HTTP_REALM_PREFIX: &str = "rillcast";

/// The credentials of every protected stream, and the session hook.
pub struct MediaAuth {
    /// (stream name, credentials) for protected streams only; a stream not here is public.
    protected: Vec<(String, Credentials)>,
    session: RefCell<Option<SessionCheck>>,
}

/// The answer to one request for one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaAccess {
    /// The stream has no credentials: anyone, any origin.
    Public,
    /// Protected, and the caller proved it may see it.
    Granted,
    /// Protected, and the caller did not: answer [`MediaAuth::challenge`].
    Denied,
}

/// What one request presented, evaluated lazily (the session is looked up at most once, even
/// when `/master.m3u8` asks about every stream).
pub struct Caller<'r, 'a> {
    req: &'r HttpRequest<'a>,
    session: Cell<Option<bool>>,
}

impl<'r, 'a> Caller<'r, 'a> {
    pub fn new(req: &'r HttpRequest<'a>) -> Self {
        Caller {
            req,
            session: Cell::new(None),
        }
    }
}

impl MediaAuth {
    /// From `(stream name, streams.X.auth)` pairs.
    pub fn new<'c>(streams: impl IntoIterator<Item = (&'c str, Option<&'c AuthConfig>)>) -> Self {
        let protected = streams
            .into_iter()
            .filter_map(|(name, a)| {
                let a = a?;
                Some((
                    name.to_string(),
                    Credentials {
                        user: a.user.clone(),
                        password: a.password.clone(),
                        allow_basic: true,
                    },
                ))
            })
            .collect();
        MediaAuth {
            protected,
            session: RefCell::new(None),
        }
    }

    /// Installs the web session check (the web API exists after the media routes).
    pub fn set_session_check(&self, check: SessionCheck) {
        *self.session.borrow_mut() = Some(check);
    }

    pub fn is_protected(&self, stream: &str) -> bool {
        self.credentials(stream).is_some()
    }

    fn credentials(&self, stream: &str) -> Option<&Credentials> {
        self.protected
            .iter()
            .find(|(n, _)| n == stream)
            .map(|(_, c)| c)
    }

    /// May `caller` fetch `stream`'s media? Basic with the stream's user/password, or a valid
    /// web session. A wrong `Authorization` does not stop a valid session cookie.
    pub fn allows(&self, caller: &Caller<'_, '_>, stream: &str) -> MediaAccess {
        let Some(creds) = self.credentials(stream) else {
            return MediaAccess::Public;
        };
        let basic_ok = caller.req.header("authorization").is_some_and(|a| {
            let scheme = a.split_once(' ').map_or(a, |(s, _)| s);
            // Only Basic: Digest would need a nonce this server never issued over HTTP.
            scheme.eq_ignore_ascii_case("Basic") && rtsp_auth::verify(a, "GET", creds, "")
        });
        if basic_ok || self.session_ok(caller) {
            MediaAccess::Granted
        } else {
            MediaAccess::Denied
        }
    }

    fn session_ok(&self, caller: &Caller<'_, '_>) -> bool {
        if let Some(v) = caller.session.get() {
            return v;
        }
        let v = caller.req.header("cookie").is_some()
            && self
                .session
                .borrow()
                .as_ref()
                .is_some_and(|check| check(caller.req));
        caller.session.set(Some(v));
        v
    }

    /// 401 for a protected stream (RFC 9110 §11.6.1, RFC 7617 §2): a Basic challenge with
    /// the stream in the realm, never cached, no CORS header.
    pub fn challenge(stream: &str) -> HttpResponse {
        HttpResponse::text(401, "this stream needs its user and password\n")
            .with_header(
                "WWW-Authenticate",
                format!("Basic realm=\"{HTTP_REALM_PREFIX}/{stream}\""),
            )
            .with_header("Cache-Control", "no-store")
    }
}

/// CORS for a media response: `*` for public media; nothing (same-origin only) for protected
/// media, which also must not sit in a shared cache.
pub fn media_cors(r: HttpResponse, access: MediaAccess) -> HttpResponse {
    match access {
        MediaAccess::Public => r
            .with_header("Access-Control-Allow-Origin", "*")
            .with_header(
                "Access-Control-Expose-Headers",
                "Content-Length, Content-Range",
            ),
        MediaAccess::Granted | MediaAccess::Denied => {
            r.with_header("Vary", "Authorization, Cookie")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(headers: &'a [(&'a str, &'a str)]) -> HttpRequest<'a> {
        HttpRequest {
            method: "GET",
            path: "/cam/index.m3u8",
            query: None,
            headers,
            body: &[],
            peer: "127.0.0.1:1".parse().unwrap(),
        }
    }

    fn auth() -> MediaAuth {
        let a = AuthConfig {
            user: "viewer".into(),
            password: "s3cret".into(),
        };
        MediaAuth::new([("cam", Some(&a)), ("open", None)])
    }

    #[test]
    fn basic_and_session_grant_protected_streams_only() {
        let m = auth();
        // base64("viewer:s3cret"), base64("viewer:wrong"), base64("other:s3cret").
        let good = [("Authorization", "Basic dmlld2VyOnMzY3JldA==")];
        let wrong_pw = [("Authorization", "Basic dmlld2VyOndyb25n")];
        let wrong_user = [("Authorization", "Basic b3RoZXI6czNjcmV0")];
        let garbage = [("Authorization", "Basic !!!")];
        let digest = [("Authorization", "Digest username=\"viewer\", nonce=\"\"")];
        let lower = [("authorization", "basic dmlld2VyOnMzY3JldA==")];
        let check = |h: &[(&str, &str)], s| m.allows(&Caller::new(&req(h)), s);
        assert_eq!(check(&[], "open"), MediaAccess::Public);
        assert_eq!(check(&wrong_pw, "open"), MediaAccess::Public);
        assert_eq!(check(&[], "cam"), MediaAccess::Denied);
        assert_eq!(check(&good, "cam"), MediaAccess::Granted);
        assert_eq!(check(&lower, "cam"), MediaAccess::Granted);
        for bad in [&wrong_pw, &wrong_user, &garbage, &digest] {
            assert_eq!(check(bad, "cam"), MediaAccess::Denied, "{bad:?}");
        }
        // Sessions: only through the hook, only with a cookie, looked up once per caller.
        let calls = std::rc::Rc::new(Cell::new(0));
        let c = calls.clone();
        m.set_session_check(Box::new(move |r| {
            c.set(c.get() + 1);
            r.header("cookie") == Some("rillcast_session=ok")
        }));
        assert_eq!(check(&[], "cam"), MediaAccess::Denied);
        assert_eq!(calls.get(), 0, "no cookie, no lookup");
        let cookie = [("Cookie", "rillcast_session=ok"), wrong_pw[0]];
        let r = req(&cookie);
        let caller = Caller::new(&r);
        assert_eq!(m.allows(&caller, "cam"), MediaAccess::Granted);
        assert_eq!(m.allows(&caller, "cam"), MediaAccess::Granted);
        assert_eq!(calls.get(), 1);
        assert_eq!(
            check(&[("Cookie", "rillcast_session=no")], "cam"),
            MediaAccess::Denied
        );
    }

    #[test]
    fn challenge_names_the_stream_and_protected_media_gets_no_cors() {
        let r = MediaAuth::challenge("cam");
        assert_eq!(r.status, 401);
        let h = |r: &HttpResponse, n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            h(&r, "www-authenticate").as_deref(),
            Some("Basic realm=\"rillcast/cam\"")
        );
        let p = media_cors(HttpResponse::text(200, "x"), MediaAccess::Granted);
        assert_eq!(h(&p, "access-control-allow-origin"), None);
        let o = media_cors(HttpResponse::text(200, "x"), MediaAccess::Public);
        assert_eq!(h(&o, "access-control-allow-origin").as_deref(), Some("*"));
    }

    #[test]
    fn random_authorization_values_never_panic() {
        let m = auth();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"Basic Digest=:,\" dmlld2VyOnMzY3JldA==\xff\x00";
        for _ in 0..5000 {
            let mut v = Vec::new();
            for _ in 0..(x % 60) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let s = String::from_utf8_lossy(&v);
            let h = [("Authorization", s.as_ref())];
            let _ = m.allows(&Caller::new(&req(&h)), "cam");
        }
    }
}
