//! Who may use the web page and the API: password hashing, login sessions with CSRF tokens,
//! bearer API tokens, the login rate limit and the Host header check.
//!
//! Owns: the secrets' formats and their checks. Pure: randomness and `now_ms` come from the
//! caller, nothing here reads a clock, a socket or a file. Must not: log a password, a token or
//! a session id, or compare secrets in variable time.
//!
//! Formats (all ASCII, stored in the config file):
//! - password: `scrypt$<log_n>$<r>$<p>$<salt hex>$<key hex>` (scrypt, RFC 7914; 16-byte salt,
//!   32-byte key). The cost is in the string so it can be raised later without breaking logins.
//! - API token: shown once as 64 hex characters; stored as `sha256$<hex>` (FIPS 180-4). A token
//!   is 256 random bits, so a fast hash is enough (no dictionary to guess from).

use sha2::{Digest, Sha256};

/// scrypt cost used for new passwords: N = 2^14, r = 8, p = 1 — 16 MiB and ~50 ms on a desktop
/// core, a few hundred ms on a Raspberry Pi 3. The memory is transient (freed after the hash)
/// and the login limiter bounds how often it is spent.
pub const SCRYPT_LOG_N: u8 = 14;
pub const SCRYPT_R: u32 = 8;
pub const SCRYPT_P: u32 = 1;
/// Highest cost accepted from a stored hash (a config with a larger one is refused rather than
/// allowed to eat the board's memory on every login): 2^17 * 8 * 128 = 128 MiB.
const SCRYPT_MAX_LOG_N: u8 = 17;

pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 256;

/// Why a stored secret or an input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// The stored hash is not in a format this build reads.
    BadStoredHash,
    PasswordTooShort,
    PasswordTooLong,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::BadStoredHash => "the stored password hash is not scrypt$logN$r$p$salt$key",
            AuthError::PasswordTooShort => "must be at least 8 characters",
            AuthError::PasswordTooLong => "must be at most 256 bytes",
        }
    }
}

/// Checks a new password's length (characters, not bytes, for the minimum).
pub fn check_new_password(pw: &str) -> Result<(), AuthError> {
    if pw.chars().count() < PASSWORD_MIN_CHARS {
        return Err(AuthError::PasswordTooShort);
    }
    if pw.len() > PASSWORD_MAX_BYTES {
        return Err(AuthError::PasswordTooLong);
    }
    Ok(())
}

/// Hashes `pw` with scrypt at the given cost (RFC 7914 §2) and a caller-provided random salt.
pub fn hash_password_with(pw: &str, salt: &[u8; 16], log_n: u8, r: u32, p: u32) -> String {
    let mut key = [0u8; 32];
    derive(pw, salt, log_n, r, p, &mut key);
    format!("scrypt${log_n}${r}${p}${}${}", hex(salt), hex(&key))
}

/// Hashes `pw` at the default cost.
pub fn hash_password(pw: &str, salt: &[u8; 16]) -> String {
    hash_password_with(pw, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P)
}

fn derive(pw: &str, salt: &[u8], log_n: u8, r: u32, p: u32, out: &mut [u8; 32]) -> bool {
    let Ok(params) = scrypt::Params::new(log_n, r, p) else {
        return false;
    };
    scrypt::scrypt(pw.as_bytes(), salt, &params, out).is_ok()
}

/// Verifies `pw` against a stored `scrypt$...` string in constant time over the key.
pub fn verify_password(pw: &str, stored: &str) -> Result<bool, AuthError> {
    let mut it = stored.split('$');
    let (Some("scrypt"), Some(ln), Some(r), Some(p), Some(salt), Some(key), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(AuthError::BadStoredHash);
    };
    let log_n: u8 = ln.parse().map_err(|_| AuthError::BadStoredHash)?;
    let r: u32 = r.parse().map_err(|_| AuthError::BadStoredHash)?;
    let p: u32 = p.parse().map_err(|_| AuthError::BadStoredHash)?;
    // r * p bounds the memory too (128 * r * p bytes per block); keep both small.
    if !(1..=SCRYPT_MAX_LOG_N).contains(&log_n) || !(1..=32).contains(&r) || !(1..=4).contains(&p) {
        return Err(AuthError::BadStoredHash);
    }
    let mut salt_b = [0u8; 64];
    let salt_len = unhex(salt, &mut salt_b).ok_or(AuthError::BadStoredHash)?;
    let mut want = [0u8; 32];
    if unhex(key, &mut want) != Some(32) || salt_len == 0 {
        return Err(AuthError::BadStoredHash);
    }
    let mut got = [0u8; 32];
    if pw.len() > PASSWORD_MAX_BYTES {
        return Ok(false);
    }
    if !derive(pw, &salt_b[..salt_len], log_n, r, p, &mut got) {
        return Err(AuthError::BadStoredHash);
    }
    Ok(ct_eq(&got, &want))
}

/// True when `stored` is a password hash this build can verify (for config validation).
pub fn is_valid_password_hash(stored: &str) -> bool {
    // An empty password can never match a real hash, so this only checks the format — but it
    // runs scrypt once; callers use it on config load and save, not per request.
    !matches!(verify_password("", stored), Err(AuthError::BadStoredHash))
}

/// The stored form of an API token: `sha256$<hex>`.
pub fn hash_token(token: &str) -> String {
    format!("sha256${}", hex(&Sha256::digest(token.as_bytes())))
}

/// True when `stored` has the `sha256$<64 hex>` shape.
pub fn is_valid_token_hash(stored: &str) -> bool {
    let mut b = [0u8; 32];
    stored
        .strip_prefix("sha256$")
        .is_some_and(|h| unhex(h, &mut b) == Some(32))
}

/// Finds `presented` among stored token hashes; every entry is compared (constant time each).
pub fn token_matches(presented: &str, stored: &[String]) -> bool {
    let want = hash_token(presented);
    let mut hit = false;
    for s in stored {
        hit |= ct_eq(s.as_bytes(), want.as_bytes());
    }
    hit
}

/// Constant-time equality for equal-length secrets (length itself is not secret here).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Decodes lowercase or uppercase hex into `out`; returns the byte count, None if malformed or
/// too long for `out`.
fn unhex(s: &str, out: &mut [u8]) -> Option<usize> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) || b.len() / 2 > out.len() {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = nib(pair[0])? << 4 | nib(pair[1])?;
    }
    Some(b.len() / 2)
}

/// A logged-in browser: the cookie value and its CSRF token, both 128 random bits in hex.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub csrf: String,
    pub created_ms: u64,
    pub last_used_ms: u64,
}

/// The table of logged-in browsers: bounded, oldest evicted, idle and absolute expiry.
#[derive(Debug)]
pub struct Sessions {
    list: Vec<Session>,
    max: usize,
    idle_ms: u64,
    absolute_ms: u64,
}

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "rillcast_session";

impl Sessions {
    pub fn new(max: usize, idle_ms: u64, absolute_ms: u64) -> Self {
        Sessions {
            list: Vec::with_capacity(max),
            max,
            idle_ms,
            absolute_ms,
        }
    }

    /// Creates a session from 32 random bytes; evicts the least recently used when full.
    pub fn create(&mut self, random: &[u8; 32], now_ms: u64) -> Session {
        self.expire(now_ms);
        if self.list.len() >= self.max {
            if let Some(i) = (0..self.list.len()).min_by_key(|&i| self.list[i].last_used_ms) {
                self.list.swap_remove(i);
            }
        }
        let s = Session {
            id: hex(&random[..16]),
            csrf: hex(&random[16..]),
            created_ms: now_ms,
            last_used_ms: now_ms,
        };
        self.list.push(s.clone());
        s
    }

    /// Looks up a cookie value; refreshes the idle timer. Expired sessions are gone.
    pub fn check(&mut self, id: &str, now_ms: u64) -> Option<Session> {
        self.expire(now_ms);
        let s = self
            .list
            .iter_mut()
            .find(|s| ct_eq(s.id.as_bytes(), id.as_bytes()))?;
        s.last_used_ms = now_ms;
        Some(s.clone())
    }

    pub fn remove(&mut self, id: &str) {
        self.list.retain(|s| !ct_eq(s.id.as_bytes(), id.as_bytes()));
    }

    /// Logs everyone out (after a password change).
    pub fn clear(&mut self) {
        self.list.clear();
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        let (idle, abs) = (self.idle_ms, self.absolute_ms);
        self.list.retain(|s| {
            now_ms.saturating_sub(s.last_used_ms) < idle
                && now_ms.saturating_sub(s.created_ms) < abs
        });
    }
}

/// Login attempts: per client address at most `per_peer` failures per window, and at most
/// `global` attempts (of any outcome) per window — the global cap bounds the CPU and memory
/// scrypt costs under a distributed guess attack. The table is bounded; when full the oldest
/// window is recycled.
#[derive(Debug)]
pub struct LoginLimiter {
    peers: Vec<(std::net::IpAddr, u64, u32)>,
    max_peers: usize,
    window_ms: u64,
    per_peer: u32,
    global: u32,
    global_window_start_ms: u64,
    global_count: u32,
}

impl LoginLimiter {
    pub fn new(max_peers: usize, window_ms: u64, per_peer: u32, global: u32) -> Self {
        LoginLimiter {
            peers: Vec::with_capacity(max_peers),
            max_peers,
            window_ms,
            per_peer,
            global,
            global_window_start_ms: 0,
            global_count: 0,
        }
    }

    /// May `ip` try now? If not, the seconds until it may (for `Retry-After`).
    pub fn allow(&mut self, ip: std::net::IpAddr, now_ms: u64) -> Result<(), u64> {
        if now_ms.saturating_sub(self.global_window_start_ms) >= self.window_ms {
            self.global_window_start_ms = now_ms;
            self.global_count = 0;
        }
        let w = self.window_ms;
        if let Some(&(_, start, n)) = self.peers.iter().find(|p| p.0 == ip) {
            if now_ms.saturating_sub(start) < w && n >= self.per_peer {
                return Err((w - now_ms.saturating_sub(start)).div_ceil(1000));
            }
        }
        if self.global_count >= self.global {
            let left = w - now_ms.saturating_sub(self.global_window_start_ms).min(w);
            return Err(left.div_ceil(1000).max(1));
        }
        self.global_count += 1;
        Ok(())
    }

    /// Records a failed attempt by `ip`.
    pub fn failed(&mut self, ip: std::net::IpAddr, now_ms: u64) {
        let w = self.window_ms;
        if let Some(p) = self.peers.iter_mut().find(|p| p.0 == ip) {
            if now_ms.saturating_sub(p.1) >= w {
                *p = (ip, now_ms, 0);
            }
            p.2 += 1;
            return;
        }
        if self.peers.len() >= self.max_peers {
            if let Some(i) = (0..self.peers.len()).min_by_key(|&i| self.peers[i].1) {
                self.peers.swap_remove(i);
            }
        }
        self.peers.push((ip, now_ms, 1));
    }

    /// A successful login clears the address's failures.
    pub fn succeeded(&mut self, ip: std::net::IpAddr) {
        self.peers.retain(|p| p.0 != ip);
    }
}

/// DNS-rebinding guard: is the request's `Host` one we answer to?
///
/// Accepted: an IP literal (v4, or v6 in brackets) — a rebinding attack needs a name the
/// attacker controls, so an address is safe; `localhost`; the machine's own names
/// (`own_names`, e.g. the hostname and `hostname.local`); and every `allowed` entry (exact,
/// case-insensitive, or `*.example.com` for subdomains). The port is ignored. A missing Host
/// (HTTP/1.0) is refused.
pub fn host_allowed(host: Option<&str>, allowed: &[String], own_names: &[String]) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.trim_end_matches('.');
    if name.parse::<std::net::Ipv4Addr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let matches = |pat: &str| {
        let pat = pat.trim_end_matches('.');
        match pat.strip_prefix("*.") {
            // Bytes, not str slices: a Host may hold UTF-8, and a str cut inside a character
            // panics.
            Some(suffix) => name
                .len()
                .checked_sub(suffix.len() + 1)
                .filter(|&dot| dot > 0)
                .is_some_and(|dot| {
                    let n = name.as_bytes();
                    n.get(dot) == Some(&b'.')
                        && n.get(dot + 1..)
                            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
                }),
            None => name.eq_ignore_ascii_case(pat),
        }
    };
    own_names.iter().any(|n| matches(n)) || allowed.iter().any(|n| matches(n))
}

/// Checks an `allowed_hosts` entry: a host name, `*.domain`, or an IP address; no port.
pub fn valid_host_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// The value of cookie `name` in a `Cookie` header (RFC 6265 §5.4).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `Set-Cookie` for a new session: HttpOnly (no script reads it), SameSite=Strict (no
/// cross-site request carries it), Path=/, and a lifetime matching the absolute expiry.
pub fn session_cookie(id: &str, max_age_s: u64) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn scrypt_matches_rfc7914_vector() {
        // RFC 7914 §12, second vector: P="password", S="NaCl", N=1024, r=8, p=16, dkLen=64.
        let params = scrypt::Params::new(10, 8, 16).unwrap();
        let mut out = [0u8; 64];
        scrypt::scrypt(b"password", b"NaCl", &params, &mut out).unwrap();
        assert_eq!(
            hex(&out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }

    #[test]
    fn password_round_trip_and_wrong_password() {
        let h = hash_password_with("correct horse", &[7; 16], 4, 8, 1);
        assert!(h.starts_with("scrypt$4$8$1$07070707"), "{h}");
        assert_eq!(verify_password("correct horse", &h), Ok(true));
        assert_eq!(verify_password("correct horsf", &h), Ok(false));
        assert_eq!(verify_password("", &h), Ok(false));
        assert!(is_valid_password_hash(&h));
    }

    #[test]
    fn malformed_stored_hashes_are_errors_not_panics() {
        for bad in [
            "",
            "scrypt",
            "argon2$1$2$3$aa$bb",
            "scrypt$4$8$1$zz$00",
            "scrypt$4$8$1$0707$0011",
            "scrypt$40$8$1$0707$0000000000000000000000000000000000000000000000000000000000000000",
            "scrypt$4$0$1$0707$0000000000000000000000000000000000000000000000000000000000000000",
            "scrypt$4$8$1$$0000000000000000000000000000000000000000000000000000000000000000",
            "scrypt$4$8$1$07$00$extra",
        ] {
            assert_eq!(
                verify_password("x", bad),
                Err(AuthError::BadStoredHash),
                "{bad}"
            );
            assert!(!is_valid_password_hash(bad));
        }
    }

    #[test]
    fn new_password_length_rules() {
        assert_eq!(
            check_new_password("1234567"),
            Err(AuthError::PasswordTooShort)
        );
        assert_eq!(check_new_password("12345678"), Ok(()));
        // 8 characters, 16 bytes: characters count for the minimum.
        assert_eq!(check_new_password("éééééééé"), Ok(()));
        assert_eq!(
            check_new_password(&"a".repeat(257)),
            Err(AuthError::PasswordTooLong)
        );
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        // FIPS 180-4 test vector "abc".
        assert_eq!(
            hash_token("abc"),
            "sha256$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let stored = vec![hash_token("t1"), hash_token("t2")];
        assert!(token_matches("t2", &stored));
        assert!(!token_matches("t3", &stored));
        assert!(is_valid_token_hash(&stored[0]));
        assert!(!is_valid_token_hash("sha256$abc"));
        assert!(!is_valid_token_hash("t1"));
    }

    #[test]
    fn sessions_expire_and_evict() {
        let mut s = Sessions::new(2, 1000, 5000);
        let r = |x: u8| core::array::from_fn::<u8, 32, _>(|i| x.wrapping_mul(37) ^ i as u8);
        let a = s.create(&r(1), 0);
        assert_eq!(a.id.len(), 32);
        assert_ne!(a.id, a.csrf);
        assert!(s.check(&a.id, 900).is_some());
        assert!(
            s.check(&a.id, 1800).is_some(),
            "idle timer refreshed at 900"
        );
        assert!(s.check(&a.id, 2900).is_none(), "idle > 1000 ms");
        let b = s.create(&r(2), 3000);
        let c = s.create(&r(3), 3001);
        s.check(&b.id, 3002);
        let d = s.create(&r(4), 3003);
        assert_eq!(s.len(), 2);
        assert!(
            s.check(&c.id, 3004).is_none(),
            "least recently used evicted"
        );
        assert!(s.check(&b.id, 3004).is_some() && s.check(&d.id, 3004).is_some());
        // Absolute expiry even when used constantly.
        let mut t = 3004;
        while t < 8100 {
            t += 500;
            s.check(&b.id, t);
        }
        assert!(s.check(&b.id, t).is_none());
        assert!(s.check("", 0).is_none());
    }

    #[test]
    fn login_limiter_per_peer_and_global() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut l = LoginLimiter::new(4, 60_000, 3, 10);
        for t in 0..3 {
            assert!(l.allow(ip, t).is_ok());
            l.failed(ip, t);
        }
        assert_eq!(l.allow(ip, 10), Err(60));
        assert!(l.allow(other, 10).is_ok(), "other peers unaffected");
        assert!(l.allow(ip, 60_002).is_ok(), "window passed");
        l.succeeded(ip);
        // Global: 10 attempts per window in all.
        let mut l = LoginLimiter::new(64, 60_000, 3, 10);
        for i in 0..10u8 {
            assert!(l.allow(IpAddr::from([10, 0, 1, i]), 5).is_ok());
        }
        assert!(l.allow(IpAddr::from([10, 0, 2, 1]), 6).is_err());
        // The table stays bounded.
        let mut l = LoginLimiter::new(4, 60_000, 3, 1000);
        for i in 0..100u8 {
            l.failed(IpAddr::from([10, 0, 3, i]), i as u64);
        }
        assert_eq!(l.peers.len(), 4);
    }

    /// A Host with UTF-8 against a `*.` pattern, cut at every byte: no str slicing panic.
    #[test]
    fn host_check_with_utf8_never_panics() {
        let allowed = vec!["*.home.arpa".to_string()];
        for host in [
            "a\u{e9}12345678",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "x.h\u{f6}me.arpa",
        ] {
            assert!(!host_allowed(Some(host), &allowed, &[]), "{host}");
        }
        assert!(host_allowed(Some("cam.HOME.arpa:80"), &allowed, &[]));
        assert!(host_allowed(Some("\u{e9}.home.arpa"), &allowed, &[]));
        assert!(!host_allowed(Some(".home.arpa"), &allowed, &[]));
        assert!(!host_allowed(Some("xhome.arpa"), &allowed, &[]));
    }

    #[test]
    fn host_check() {
        let allowed = vec!["cam.example.com".to_string(), "*.home.arpa".to_string()];
        let own = vec!["raspberrypi".to_string(), "raspberrypi.local".to_string()];
        let ok = |h: &str| host_allowed(Some(h), &allowed, &own);
        for h in [
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:8080",
            "LOCALHOST",
            "raspberrypi.local:8080",
            "cam.example.com",
            "CAM.example.com.:80",
            "a.home.arpa",
        ] {
            assert!(ok(h), "{h} should pass");
        }
        for h in [
            "evil.com",
            "evil.com:8080",
            "home.arpa",
            "xhome.arpa",
            "cam.example.com.evil.com",
            "127.0.0.1:80x",
            "[::1",
            "[nothex]",
            "",
        ] {
            assert!(!ok(h), "{h} should fail");
        }
        assert!(!host_allowed(None, &allowed, &own));
        assert!(valid_host_pattern("*.home.arpa") && valid_host_pattern("cam"));
        assert!(
            !valid_host_pattern("cam:80") && !valid_host_pattern("") && !valid_host_pattern("a b")
        );
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie("a=1; rillcast_session=abc; b=2", SESSION_COOKIE),
            Some("abc")
        );
        assert_eq!(cookie("xrillcast_session=abc", SESSION_COOKIE), None);
        let c = session_cookie("abc", 60);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age=60")
        );
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
