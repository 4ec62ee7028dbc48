//! The page: one HTML file, one script, one stylesheet, compiled into the binary from
//! `src/web/assets/` with `include_str!` — no CDN, no build step, nothing fetched at run time
//! but the API. The script picks the screen (set password, log in, status, configure) from
//! `GET /api/v1/session`.
//!
//! Owns: the asset bytes and the security headers they are served with (a Content Security
//! Policy of `default-src 'self'`, which is why script and style are separate files rather
//! than inline; `media-src blob:` lets the live player attach its MediaSource). Must not: hold any state.

use crate::net::http::{HttpBody, HttpResponse};

pub const INDEX_HTML: &str = include_str!("assets/index.html");
pub const APP_JS: &str = include_str!("assets/app.js");
pub const APP_CSS: &str = include_str!("assets/app.css");

/// Total bytes of the page's assets (kept under 60 KB by a test).
pub const TOTAL_BYTES: usize = INDEX_HTML.len() + APP_JS.len() + APP_CSS.len();
const _: () = assert!(TOTAL_BYTES < 60_000, "the page must stay under 60 KB");

/// Headers every page asset and API answer carries.
pub fn security_headers(r: HttpResponse) -> HttpResponse {
    r.with_header("X-Content-Type-Options", "nosniff")
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
}

/// The asset at `path`, if it is one.
pub fn asset(path: &str) -> Option<HttpResponse> {
    let (body, ctype) = match path {
        "/" | "/index.html" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    Some(security_headers(
        HttpResponse::new(200, HttpBody::Static(body.as_bytes()))
            .with_header("Content-Type", ctype)
            .with_header("Cache-Control", "no-cache"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_small_and_self_contained() {
        for text in [INDEX_HTML, APP_JS, APP_CSS] {
            // The one URL allowed is the SVG namespace name (an identifier, never fetched).
            let t = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !t.contains("http://") && !t.contains("https://"),
                "no external fetches"
            );
        }
        assert!(INDEX_HTML.contains("<script src=\"/app.js\""));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script (CSP)");
        assert!(INDEX_HTML.contains("name=\"viewport\""), "phone-friendly");
        assert!(asset("/app.js").is_some() && asset("/x").is_none());
    }
}
