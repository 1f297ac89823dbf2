//! tus 1.0 (<https://tus.io/protocols/resumable-upload>) under `/v1/uploads`: core, creation,
//! creation-with-upload, termination, expiration and checksum (`sha1`, `sha256`).
//!
//! Every request but `OPTIONS` carries `Tus-Resumable: 1.0.0` (else 412) and the user's
//! `Authorization: Bearer` token (else 401). Refusals carry the JSON error body of the other
//! routes; their statuses are tus's: 409 wrong offset, 413 too large, 415 wrong content type,
//! 460 checksum mismatch, 404 for an upload that is not the caller's, unknown or expired.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chorus_proto::error::{ErrorBody, ErrorDetail};
use chorus_proto::ErrorCode;

use super::{AppendError, Checksum, Upload};
use crate::error::ApiError;
use crate::http::{AppPath, AppState, AuthUser};

/// The protocol version spoken.
const TUS_VERSION: &str = "1.0.0";
/// The extensions implemented.
const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
/// The body type of `PATCH` (and of a `POST` that carries bytes).
const OFFSET_STREAM: &str = "application/offset+octet-stream";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/uploads", post(create).options(options))
        .route("/v1/uploads/{id}", axum::routing::head(head).patch(patch).delete(terminate).options(options))
        // A refused POST or PATCH still lets the client finish sending before it answers.
        .route_layer(axum::middleware::from_fn(crate::http::drain::read_to_end))
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

/// A refusal on its way out (boxed: a response is large, and most calls succeed).
type Refused = Box<Response>;

/// A refusal with a tus status and the usual JSON error body.
fn refuse(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { code, message: message.into() } };
    (status, [(HeaderName::from_static("tus-resumable"), hv(TUS_VERSION))], axum::Json(body)).into_response()
}

/// An [`ApiError`] as a tus answer (its own status, plus `Tus-Resumable`).
fn api_refusal(e: ApiError) -> Response {
    let mut r = e.into_response();
    r.headers_mut().insert("tus-resumable", hv(TUS_VERSION));
    r
}

/// 412 unless the request speaks tus 1.0.0.
fn check_version(h: &HeaderMap) -> Result<(), Refused> {
    if h.get("tus-resumable").and_then(|v| v.to_str().ok()).map(str::trim) == Some(TUS_VERSION) {
        return Ok(());
    }
    let mut r = refuse(
        StatusCode::PRECONDITION_FAILED,
        ErrorCode::BadRequest,
        "tus requests need the header Tus-Resumable: 1.0.0",
    );
    r.headers_mut().insert("tus-version", hv(TUS_VERSION));
    Err(Box::new(r))
}

fn header_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, Refused> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()).map(Some).ok_or_else(|| {
            Box::new(refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("{name} must be a non-negative integer"),
            ))
        }),
    }
}

fn checksum(h: &HeaderMap) -> Result<Option<Checksum>, Refused> {
    match h.get("upload-checksum") {
        None => Ok(None),
        Some(v) => v.to_str().ok().and_then(Checksum::parse).map(Some).ok_or_else(|| {
            Box::new(refuse(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                "Upload-Checksum must be \"sha1 <base64>\" or \"sha256 <base64>\"",
            ))
        }),
    }
}

fn is_offset_stream(h: &HeaderMap) -> bool {
    h.get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(OFFSET_STREAM))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
fn metadata(h: &HeaderMap) -> Result<Vec<(String, String)>, Refused> {
    use base64::Engine as _;
    let Some(v) = h.get("upload-metadata") else { return Ok(Vec::new()) };
    let bad =
        || Box::new(refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "Upload-Metadata is not key base64 pairs"));
    let v = v.to_str().map_err(|_| bad())?;
    let mut out = Vec::new();
    for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut it = pair.split(' ').filter(|s| !s.is_empty());
        let key = it.next().ok_or_else(bad)?;
        let value = match it.next() {
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            None => String::new(),
        };
        if it.next().is_some() {
            return Err(bad());
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The headers every successful answer about an upload carries.
fn upload_headers(up: &Upload, with_offset: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("tus-resumable", hv(TUS_VERSION));
    if with_offset {
        h.insert("upload-offset", hv(&up.received.to_string()));
    }
    if let Some(e) = up.expires_at.filter(|_| up.completed_at.is_none()) {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(e).unwrap_or(0));
        h.insert("upload-expires", hv(&httpdate::fmt_http_date(at)));
    }
    h
}

/// `OPTIONS /v1/uploads` (and `/v1/uploads/{id}`): what this server speaks. No token needed.
async fn options(State(s): State<AppState>) -> Response {
    let mut h = HeaderMap::new();
    h.insert("tus-resumable", hv(TUS_VERSION));
    h.insert("tus-version", hv(TUS_VERSION));
    h.insert("tus-extension", hv(TUS_EXTENSIONS));
    h.insert("tus-max-size", hv(&s.cfg.max_upload_bytes.to_string()));
    h.insert("tus-checksum-algorithm", hv("sha1,sha256"));
    (StatusCode::NO_CONTENT, h).into_response()
}

/// Runs an append in its own task, so that the bytes that arrived are committed even when the
/// client goes away and the connection (with this request's future) is dropped mid-body.
async fn append(
    s: &AppState,
    uid: i64,
    id: String,
    offset: u64,
    headers: &HeaderMap,
    body: Body,
) -> Result<Upload, Refused> {
    let content_length = header_u64(headers, "content-length")?;
    let sum = checksum(headers)?;
    let media = s.media.clone();
    let task =
        tokio::spawn(async move { media.append(uid, &id, offset, content_length, sum, body.into_data_stream()).await });
    match task.await {
        Ok(Ok(up)) => Ok(up),
        Ok(Err(AppendError::Api(e))) => Err(Box::new(api_refusal(e))),
        Ok(Err(AppendError::ChecksumMismatch)) => Err(Box::new(refuse(
            StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorCode::BadRequest,
            "the body does not match Upload-Checksum; nothing of it was kept",
        ))),
        Err(e) => Err(Box::new(api_refusal(ApiError::internal(format_args!("append task: {e}"))))),
    }
}

/// `POST /v1/uploads`: creates an upload of `Upload-Length` bytes (`Upload-Metadata`:
/// `filename`; `filetype` is not trusted). With a body of type `application/offset+octet-stream`
/// its bytes are stored at once (creation-with-upload). 201 with `Location`.
async fn create(State(s): State<AppState>, AuthUser(u, _): AuthUser, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if let Err(r) = check_version(h) {
        return *r;
    }
    if h.contains_key("upload-defer-length") {
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "Upload-Defer-Length is not supported");
    }
    let length = match header_u64(h, "upload-length") {
        Ok(Some(n)) => n,
        Ok(None) => return refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "Upload-Length is required"),
        Err(r) => return *r,
    };
    let meta = match metadata(h) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let name = meta.iter().find(|(k, _)| k == "filename").map(|(_, v)| v.as_str()).unwrap_or("");
    let with_body = is_offset_stream(h);
    if with_body {
        if let Err(r) = header_u64(h, "content-length").and(checksum(h)) {
            return *r;
        }
    }
    let up = match s.media.create(u.uid.get(), length, name).await {
        Ok(up) => up,
        Err(e) => return api_refusal(e),
    };
    let location = format!("/v1/uploads/{}", up.id);
    let up = if with_body {
        match append(&s, u.uid.get(), up.id.clone(), 0, h, body).await {
            Ok(up) => up,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                // More bytes than announced: the upload is refused whole.
                let _ = s.media.delete(u.uid.get(), &up.id).await;
                return *r;
            }
            // Created, but its first bytes were not (all) kept: the client resumes at the offset.
            Err(_) => s.media.upload(u.uid.get(), &up.id).await.unwrap_or(up),
        }
    } else {
        up
    };
    let mut headers = upload_headers(&up, with_body);
    headers.insert(axum::http::header::LOCATION, hv(&location));
    (StatusCode::CREATED, headers).into_response()
}

/// `HEAD /v1/uploads/{id}`: `Upload-Offset` (where to resume) and `Upload-Length`.
async fn head(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(id): AppPath<String>,
    h: HeaderMap,
) -> Response {
    use base64::Engine as _;
    if let Err(r) = check_version(&h) {
        return *r;
    }
    // Wait for a request still writing to it (a cut connection being wound up), so that the
    // offset reported is the one a resume must use.
    let lock = s.media.locks.get(&id);
    let _settled = tokio::time::timeout(super::LOCK_WAIT, lock.lock_owned()).await;
    let up = match s.media.upload(u.uid.get(), &id).await {
        Ok(up) => up,
        Err(e) => return api_refusal(e),
    };
    let mut headers = upload_headers(&up, true);
    headers.insert("upload-length", hv(&up.size.to_string()));
    headers.insert(axum::http::header::CACHE_CONTROL, hv("no-store"));
    let name = base64::engine::general_purpose::STANDARD.encode(up.name.as_bytes());
    headers.insert("upload-metadata", hv(&format!("filename {name}")));
    (StatusCode::OK, headers).into_response()
}

/// `PATCH /v1/uploads/{id}`: appends the body at `Upload-Offset` (409 if that is not the
/// stored offset). 204 with the new `Upload-Offset`.
async fn patch(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(id): AppPath<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    if let Err(r) = check_version(h) {
        return *r;
    }
    if !is_offset_stream(h) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            "PATCH bodies must be Content-Type: application/offset+octet-stream",
        );
    }
    let offset = match header_u64(h, "upload-offset") {
        Ok(Some(n)) => n,
        Ok(None) => return refuse(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, "Upload-Offset is required"),
        Err(r) => return *r,
    };
    match append(&s, u.uid.get(), id, offset, h, body).await {
        Ok(up) => (StatusCode::NO_CONTENT, upload_headers(&up, true)).into_response(),
        Err(r) => *r,
    }
}

/// `DELETE /v1/uploads/{id}`: deletes the upload (finished or not) and its bytes. 204.
async fn terminate(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(id): AppPath<String>,
    h: HeaderMap,
) -> Response {
    if let Err(r) = check_version(&h) {
        return *r;
    }
    match s.media.delete(u.uid.get(), &id).await {
        Ok(()) => {
            (StatusCode::NO_CONTENT, [(HeaderName::from_static("tus-resumable"), hv(TUS_VERSION))]).into_response()
        }
        Err(e) => api_refusal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_metadata() {
        let mut h = HeaderMap::new();
        h.insert("upload-metadata", hv("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"));
        let m = metadata(&h).unwrap();
        assert_eq!(m[0], ("filename".into(), "world_domination_plan.pdf".into()));
        assert_eq!(m[1], ("is_confidential".into(), String::new()));
        h.insert("upload-metadata", hv("filename !!!"));
        assert!(metadata(&h).is_err());
    }
}
