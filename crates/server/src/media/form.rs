//! Mesibo's `op=upload` on `/api`: one `multipart/form-data` request with the file, answered
//! `{op, ts, result, file: URL}`. It is a whole upload in one request, through the same path
//! as tus: the limits are checked before a byte is stored (against the request's
//! `Content-Length`, an upper bound of the file's size, which the request must carry), the
//! file part is streamed into a part of the store (never held in memory), and a request that
//! fails or breaks off leaves nothing behind. A request whose length is over the limit is
//! refused before its body is read; one refused later has the rest of its body read and
//! dropped before the answer goes out ([`crate::http::drain`]), so the client gets the answer.
//!
//! Fields: `op` (`upload`, or in the query string), `token` (or `Authorization: Bearer`; it
//! must come **before** the file, so that nothing is stored for an unknown caller; a token in
//! the query string is refused as elsewhere on `/api`), then `file`. The answer's `file` is
//! the content URL, `/v1/files/{id}/content` (after `public_url` when that is set), read with
//! the uploader's token, or through a signed URL (`POST /v1/files/{id}/url`).
//! Errors: `AUTHFAIL`, `MISSINGFILE`, `TOOLARGE` (over `max_upload_bytes`), `QUOTA` (over
//! `upload_quota_bytes` or `max_unfinished_uploads`), `BADREQUEST`, `FAIL`.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::Json;
use chorus_proto::ErrorCode;
use serde_json::{json, Value};

use super::AppendError;
use crate::clock::now_ms;
use crate::http::AppState;

/// Room for the form's boundaries and small fields around the file in `Content-Length`.
const FORM_OVERHEAD: u64 = 64 * 1024;

fn fail(error: &str) -> Json<Value> {
    Json(json!({"op": "upload", "ts": now_ms() / 1000, "result": "FAIL", "error": error}))
}

/// True for a `multipart/form-data` request (the only kind `op=upload` comes in).
pub fn is_multipart(h: &HeaderMap) -> bool {
    h.get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// `/api` with a multipart body: `op=upload`. Runs in its own task, so a client that goes away
/// mid-file still has its half-stored upload deleted.
pub async fn mesibo_upload(st: AppState, req: Request) -> Json<Value> {
    match tokio::spawn(upload(st, req)).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::error!(error = %e, "op=upload task");
            fail("FAIL")
        }
    }
}

async fn upload(st: AppState, req: Request) -> Json<Value> {
    let (parts, body) = req.into_parts();
    if crate::http::mesibo_secret_in_query(&parts.uri) {
        return fail("TOKENINURL");
    }
    let query: Vec<(String, String)> =
        parts.uri.query().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
    let mut op = query.iter().find(|(k, _)| k == "op").map(|(_, v)| v.clone());
    let ctype = parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(boundary) = multer::parse_boundary(ctype) else { return fail("BADREQUEST") };
    let Some(bound) = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return fail("BADREQUEST");
    };
    // Refused before the body is read: a client that waits for `100 Continue` (curl does for
    // large files) then never sends the file.
    if bound > st.cfg.max_upload_bytes.saturating_add(FORM_OVERHEAD) {
        return fail("TOOLARGE");
    }
    let mut token = crate::http::bearer_header(&parts.headers).map(str::to_string);
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(st.cfg.max_upload_bytes.saturating_add(FORM_OVERHEAD))
            .for_field("op", 64)
            .for_field("token", 1024),
    );
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return fail("MISSINGFILE"),
            Err(_) => return fail("BADREQUEST"),
        };
        match field.name() {
            Some("op") => op = field.text().await.ok().map(|s| s.trim().to_string()),
            Some("token") => token = field.text().await.ok().map(|s| s.trim().to_string()),
            Some("file") => {
                if op.as_deref() != Some("upload") {
                    return Json(json!({"op": op.unwrap_or_default(), "result": "FAIL", "error": "BADOP"}));
                }
                let user = match token.as_deref() {
                    Some(t) => st.accounts.authenticate(t).await.ok(),
                    None => None,
                };
                let Some(user) = user else { return fail("AUTHFAIL") };
                let name = field.file_name().unwrap_or("file").to_string();
                return store_file(&st, user.uid.get(), &name, bound, field).await;
            }
            // Other fields (`profile`, `gid`, …) are read and ignored.
            _ => {
                if field.bytes().await.is_err() {
                    return fail("BADREQUEST");
                }
            }
        }
    }
}

async fn store_file(st: &AppState, uid: i64, name: &str, bound: u64, field: multer::Field<'static>) -> Json<Value> {
    let media = &st.media;
    // The file is at most the request's length (checked against `max_upload_bytes` in
    // `upload`): the quotas are checked against that, and the row takes the exact size once
    // the file part ended.
    let declared = bound.min(st.cfg.max_upload_bytes);
    let up = match media.create(uid, declared, name).await {
        Ok(up) => up,
        Err(e) => return fail(if e.code == ErrorCode::TooLarge { "TOOLARGE" } else { "QUOTA" }),
    };
    let appended = media.append(uid, &up.id, 0, None, None, field).await;
    // The file part ended normally (a break-off is an error): the upload takes its exact size.
    let done = match &appended {
        Ok(s) => super::rows::finish_at(&media.db, &s.id, s.received, now_ms()).await,
        Err(_) => Ok(false),
    };
    if !matches!(done, Ok(true)) {
        let _ = media.remove(&up.id).await;
        return fail(match appended {
            Err(AppendError::Api(e)) if e.code == ErrorCode::TooLarge => "TOOLARGE",
            _ => "FAIL",
        });
    }
    if let Ok(s) = &appended {
        let up = super::Upload { size: s.received, completed_at: Some(now_ms()), ..s.clone() };
        media.completed(&up).await;
    }
    let path = format!("/v1/files/{}/content", up.id);
    let file = match st.cfg.public_url.as_deref() {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    Json(json!({"op": "upload", "ts": now_ms() / 1000, "result": "OK", "file": file, "id": up.id}))
}
