//! Files: `GET /v1/files/{id}` (metadata), `GET /v1/files/{id}/content` (the bytes, with
//! byte ranges, so a `<video>` seeks) and `POST /v1/files/{id}/url` (a signed URL for
//! `<video src>`, which cannot send a token).
//!
//! The content answers as a static file server does (RFC 9110): `Accept-Ranges: bytes`; a
//! single `Range` gets `206` with `Content-Range` (parsed by `http-range-header`, the crate
//! tower-http's file server uses; several ranges get the whole file, `200`); a range past the
//! end `416` with `Content-Range: bytes */SIZE`; a strong `ETag` (the id: a file never
//! changes) and `Last-Modified` (when it completed), honoured by `If-None-Match` (`304`) and
//! `If-Range` (a mismatch: the whole file). The type is the sniffed one, with `nosniff`
//! and a `sandbox` CSP so that an uploaded page can never run as this origin; only media,
//! images, PDF and plain text are `inline`, anything else is an `attachment`.
//!
//! The bytes: a stream of ranged reads of the file's parts ([`super::store`]); on a local store
//! the answer also names the part files ([`FileRanges`]), which a plain-HTTP connection sends
//! with `sendfile` instead (crate::http::sendfile; bench/RESULTS.md, "Media").

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{name, rows, File, Upload};
use crate::clock::now_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::sendfile::FileRanges;
use crate::http::{AppJson, AppPath, AppQuery, AppState, AuthUser};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/files/{id}", get(info))
        .route("/v1/files/{id}/content", get(content))
        .route("/v1/files/{id}/url", post(signed_url))
}

/// A file as clients see it.
#[derive(Serialize)]
struct FileInfo {
    id: String,
    name: String,
    size: u64,
    #[serde(rename = "type")]
    mime: String,
    created_ms: i64,
    /// The uploader's address (never an email); `null` if the account was deleted.
    uploader: Option<String>,
}

/// A signed content URL.
#[derive(Serialize)]
struct SignedUrl {
    url: String,
    expires_ms: i64,
}

fn mime(f: &Upload) -> &str {
    f.mime.as_deref().unwrap_or("application/octet-stream")
}

/// `GET /v1/files/{id}`: a finished upload the caller may read.
async fn info(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<AppJson<FileInfo>> {
    let file = s.media.file_for(u.uid.get(), &id).await?;
    let f = &file.upload;
    let uploader = rows::address(&s.media.db, f.uid).await?;
    Ok(AppJson(FileInfo {
        mime: mime(f).to_string(),
        created_ms: f.created_at,
        size: f.size,
        name: f.name.clone(),
        id: f.id.clone(),
        uploader,
    }))
}

/// `POST /v1/files/{id}/url`: a URL of the content that works without a token until
/// `expires_ms` (`file_url_ttl_secs`).
async fn signed_url(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(id): AppPath<String>,
) -> ApiResult<AppJson<SignedUrl>> {
    let f = &s.media.file_for(u.uid.get(), &id).await?.upload;
    let ttl = i64::try_from(s.cfg.file_url_ttl_secs).unwrap_or(600) * 1000;
    let expires_ms = now_ms() + ttl;
    let sig = s.media.key.sign(&f.id, expires_ms);
    let path = format!("/v1/files/{}/content?expires={expires_ms}&sig={sig}", f.id);
    let url = match s.cfg.public_url.as_deref() {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    Ok(AppJson(SignedUrl { url, expires_ms }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    expires: Option<i64>,
    sig: Option<String>,
}

/// `GET /v1/files/{id}/content`, with the Bearer token or a signed URL's `expires` and `sig`.
async fn content(
    State(s): State<AppState>,
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<Signed>,
    headers: HeaderMap,
) -> Response {
    let file = match (q.expires, q.sig) {
        (Some(expires), Some(sig)) => {
            if !s.media.key.check(&id, expires, &sig, now_ms()) {
                return ApiError::forbidden("this link is invalid or has expired; ask for a new one").into_response();
            }
            s.media.file(&id).await
        }
        (None, None) => {
            let Some(token) = crate::http::bearer_header(&headers) else {
                return ApiError::unauthorized().into_response();
            };
            match s.accounts.authenticate(token).await {
                Ok(u) => s.media.file_for(u.uid.get(), &id).await,
                Err(e) => Err(e),
            }
        }
        _ => Err(ApiError::bad_request("a signed URL has both expires and sig")),
    };
    match file {
        Ok(f) => respond(&s, &headers, f).await.unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

/// Whether a type is shown in the page (`inline`) rather than saved (`attachment`).
fn inline(mime: &str) -> bool {
    ["image/", "video/", "audio/", "text/plain", "application/pdf"].iter().any(|p| mime.starts_with(p))
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

/// What the request's conditional and range headers ask of `f`.
enum Answer {
    NotModified,
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

fn decide(h: &HeaderMap, etag: &str, modified_secs: u64, size: u64) -> Answer {
    let text = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    if let Some(inm) = text(header::IF_NONE_MATCH) {
        // Weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
        if inm.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t == etag) {
            return Answer::NotModified;
        }
    }
    let Some(range) = text(header::RANGE) else { return Answer::Whole };
    if let Some(cond) = text(header::IF_RANGE) {
        // Strong comparison for an entity tag; an exact date otherwise.
        let same = if cond.starts_with('"') {
            cond == etag
        } else {
            httpdate::parse_http_date(cond)
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|d| d.as_secs() == modified_secs)
        };
        if !same {
            return Answer::Whole;
        }
    }
    match http_range_header::parse_range_header(range).and_then(|r| r.validate(size)) {
        Ok(ranges) if ranges.len() == 1 => Answer::Part(*ranges[0].start(), *ranges[0].end()),
        Ok(_) => Answer::Whole,
        Err(_) => Answer::Unsatisfiable,
    }
}

async fn respond(s: &AppState, h: &HeaderMap, file: Arc<File>) -> ApiResult<Response> {
    let (f, parts) = (&file.upload, &file.parts);
    let etag = format!("\"{}\"", f.id);
    let modified_secs = u64::try_from(f.completed_at.unwrap_or(f.created_at)).unwrap_or(0) / 1000;
    let mut out = HeaderMap::new();
    out.insert(header::ACCEPT_RANGES, hv("bytes"));
    out.insert(header::ETAG, hv(&etag));
    out.insert(header::LAST_MODIFIED, hv(&httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(modified_secs))));
    out.insert(header::CACHE_CONTROL, hv("private, max-age=0, must-revalidate"));
    let (status, range) = match decide(h, &etag, modified_secs, f.size) {
        Answer::NotModified => return Ok((StatusCode::NOT_MODIFIED, out).into_response()),
        Answer::Unsatisfiable => {
            out.insert(header::CONTENT_RANGE, hv(&format!("bytes */{}", f.size)));
            let body = ApiError::bad_request(format!("the range is not within the file's {} bytes", f.size));
            let mut r = body.into_response();
            *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            r.headers_mut().extend(out);
            return Ok(r);
        }
        Answer::Whole => (StatusCode::OK, 0..f.size),
        Answer::Part(first, last) => {
            out.insert(header::CONTENT_RANGE, hv(&format!("bytes {first}-{last}/{}", f.size)));
            (StatusCode::PARTIAL_CONTENT, first..last + 1)
        }
    };
    let mime = mime(f);
    out.insert(header::CONTENT_TYPE, hv(mime));
    out.insert(header::CONTENT_LENGTH, hv(&(range.end - range.start).to_string()));
    let kind = if inline(mime) { "inline" } else { "attachment" };
    out.insert(header::CONTENT_DISPOSITION, hv(&name::disposition(kind, &f.name)));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, hv("nosniff"));
    out.insert(header::CONTENT_SECURITY_POLICY, hv("sandbox; default-src 'none'; media-src 'self'; img-src 'self'"));
    // On a local store, also which files hold the bytes: on a plain-HTTP connection the
    // listener sends those with `sendfile` instead of this stream (crate::http::sendfile).
    let files = s.media.store.local_pieces(&f.id, parts, range.clone());
    let body = Body::from_stream(s.media.store.read(&f.id, parts, range));
    let mut r = (status, out, body).into_response();
    if let Some(files) = files {
        r.extensions_mut().insert(FileRanges(files));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, hv(v));
        }
        h
    }

    #[test]
    fn ranges_and_conditions() {
        let etag = "\"abc\"";
        let size = 1000;
        assert!(matches!(decide(&req(&[]), etag, 5, size), Answer::Whole));
        assert!(matches!(decide(&req(&[("range", "bytes=0-99")]), etag, 5, size), Answer::Part(0, 99)));
        assert!(matches!(decide(&req(&[("range", "bytes=-10")]), etag, 5, size), Answer::Part(990, 999)));
        assert!(matches!(decide(&req(&[("range", "bytes=900-")]), etag, 5, size), Answer::Part(900, 999)));
        assert!(matches!(decide(&req(&[("range", "bytes=1000-")]), etag, 5, size), Answer::Unsatisfiable));
        assert!(matches!(decide(&req(&[("range", "bytes=0-1,5-6")]), etag, 5, size), Answer::Whole));
        assert!(matches!(decide(&req(&[("if-none-match", "\"abc\"")]), etag, 5, size), Answer::NotModified));
        let stale = req(&[("range", "bytes=0-9"), ("if-range", "\"old\"")]);
        assert!(matches!(decide(&stale, etag, 5, size), Answer::Whole));
        let fresh = req(&[("range", "bytes=0-9"), ("if-range", "\"abc\"")]);
        assert!(matches!(decide(&fresh, etag, 5, size), Answer::Part(0, 9)));
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(5));
        let by_date = req(&[("range", "bytes=0-9"), ("if-range", &date)]);
        assert!(matches!(decide(&by_date, etag, 5, size), Answer::Part(0, 9)));
    }
}
