//! Use from pages on other origins (`cors_origins`).
//!
//! A Mesibo app is usually hosted on its own origin and talks to the server on another. With
//! `cors_origins` set, the public browser routes — `/api` and `/api.php` (the conferencing
//! backend), `/v1/…` (REST and the WebSocket) and `/sdk/…` (the bundles) — are wrapped by:
//!
//! 1. [`guard`] (outermost): a request carrying an `Origin` header that is neither listed nor
//!    the server's own origin is refused with 403 `forbidden` before anything else runs, and
//!    without CORS headers: a disallowed page's preflight fails, and its "simple" requests
//!    (form posts, which a browser sends without asking first) are not served either. This is
//!    also the WebSocket's origin check (browsers send `Origin` on every WebSocket handshake).
//!    Requests without `Origin` (non-browser clients, a browser's plain navigation or script
//!    tag) and same-origin requests pass as before.
//! 2. [`layer`]: tower-http's `CorsLayer`: a listed origin gets `Access-Control-Allow-Origin`
//!    (its own origin echoed, or `*` when the list is `["*"]`) on answers, and preflights are
//!    answered with the route group's methods, `Authorization` and `Content-Type` as allowed
//!    headers, `Link` exposed (list pages) and a 10-minute cache. No credentials: Chorus
//!    authenticates with bearer tokens, never cookies, which is also why `*` is acceptable.
//!
//! With `cors_origins` empty (the default) neither runs: no CORS headers and no origin check,
//! as before. `/backend` (admin token, server to server), `/` (the web app) and `/healthz` are
//! never wrapped.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, LINK, ORIGIN};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chorus_proto::ErrorCode;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::AppState;
use crate::config::Config;
use crate::error::ApiError;

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// True if `origin` is listed in `cors_origins` (or the list is `["*"]`).
pub fn listed(cfg: &Config, origin: &str) -> bool {
    cfg.cors_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

/// True if `origin` is the server's own: its `host[:port]` is the request's `Host`, or it is
/// the origin of `public_url` (for a proxy that passes another `Host`).
fn same_origin(cfg: &Config, origin: &str, headers: &HeaderMap) -> bool {
    let Some((_, authority)) = origin.split_once("://") else { return false };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
        return true;
    }
    let public = cfg.public_url.as_deref().map(|u| u.trim_end_matches('/'));
    public.is_some_and(|u| {
        // The origin of the URL: scheme://authority, without the path.
        let end = u.find("://").map(|i| i + 3).and_then(|i| u[i..].find('/').map(|j| i + j)).unwrap_or(u.len());
        u[..end].eq_ignore_ascii_case(origin)
    })
}

/// The origin check (see the module docs). Runs only when `cors_origins` is set.
pub async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !listed(&s.cfg, origin) && !same_origin(&s.cfg, origin, req.headers()) {
            tracing::debug!(origin, path = %req.uri().path(), "refused: origin not in cors_origins");
            return ApiError::new(
                ErrorCode::Forbidden,
                "this page's origin may not use this server (it is not in the server's cors_origins)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Request headers of tus uploads and ranged reads (see `media`) a page may send.
const TUS_REQUEST: [&str; 9] = [
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "upload-defer-length",
    "range",
    "if-range",
    "if-none-match",
];

/// Response headers of tus uploads and ranged reads a page may read.
const TUS_RESPONSE: [&str; 13] = [
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-expires",
    "upload-metadata",
    "content-range",
    "accept-ranges",
    "etag",
];

/// The CORS headers for a group of routes accepting `methods`.
pub fn layer(cfg: &Config, methods: &[Method]) -> CorsLayer {
    let origins = if cfg.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list = cfg.cors_origins.clone();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin.to_str().is_ok_and(|o| list.iter().any(|l| l.eq_ignore_ascii_case(o)))
        })
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods.to_vec())
        .allow_headers(
            [AUTHORIZATION, CONTENT_TYPE]
                .into_iter()
                .chain(TUS_REQUEST.iter().map(|h| HeaderName::from_static(h)))
                .collect::<Vec<_>>(),
        )
        .expose_headers(
            [LINK].into_iter().chain(TUS_RESPONSE.iter().map(|h| HeaderName::from_static(h))).collect::<Vec<_>>(),
        )
        .max_age(PREFLIGHT_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_by_host_or_public_url() {
        let mut cfg = Config::default();
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("chat.example.org:8080"));
        assert!(same_origin(&cfg, "http://chat.example.org:8080", &h));
        assert!(same_origin(&cfg, "https://CHAT.example.org:8080", &h));
        assert!(!same_origin(&cfg, "http://chat.example.org", &h));
        assert!(!same_origin(&cfg, "null", &h));
        cfg.public_url = Some("https://chat.example.org/chorus/".into());
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&cfg, "https://chat.example.org", &h));
        assert!(!same_origin(&cfg, "https://evil.example.org", &h));
        cfg.cors_origins = vec!["https://app.example.com".into()];
        assert!(listed(&cfg, "https://APP.example.com"));
        assert!(!listed(&cfg, "https://app.example.com.evil.org"));
        cfg.cors_origins = vec!["*".into()];
        assert!(listed(&cfg, "https://anything.example"));
    }
}
