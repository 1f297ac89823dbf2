//! Fuzzing entry points of the HTTP edge (see [`crate::fuzzing`]): the same extractors and
//! parameter readers the handlers use, fed arbitrary bytes, without a database behind them.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, HeaderMap, HeaderValue, Request, Uri};
use axum::response::IntoResponse;
use chorus_proto::rest::{AddMembers, CodeRequest, CreateGroup, CreatePin, GroupSettings, JoinGroup, PageQuery};
use chorus_proto::rest::{EditPin, UpdateMe, VerifyRequest};
use futures_util::FutureExt;

use super::{mesibo, v1, ws, AppJson, AppQuery};
use crate::accounts::{validate_address, validate_name, Identity};
use crate::error::ApiResult;
use crate::groups::{cursor, validate_member_flags, validate_settings};

/// Parameter names the `/api` and `/backend` ops read.
const MESIBO_KEYS: [&str; 16] = [
    "op",
    "token",
    "usertoken",
    "gid",
    "pin",
    "name",
    "email",
    "phone",
    "code",
    "otp",
    "flags",
    "type",
    "resolution",
    "address",
    "message",
    "members",
];

/// `/api` and `/backend` parameters: the query string, a NUL, then the body (read as a form,
/// then as JSON).
pub(crate) fn mesibo_params(data: &[u8]) {
    let (query, body) = split_nul(data);
    let Ok(query) = std::str::from_utf8(query) else { return };
    let Ok(uri) = format!("/api?{query}").parse::<Uri>() else { return };
    let _ = mesibo::secret_in_query(&uri);
    let body = Bytes::copy_from_slice(body);
    for ctype in ["application/x-www-form-urlencoded", "application/json"] {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        if let Ok(v) = HeaderValue::from_bytes(query.as_bytes()) {
            headers.insert(header::AUTHORIZATION, v);
        }
        let Ok(p) = mesibo::params(&uri, &headers, &body) else { continue };
        let _ = mesibo::request_token(&p, &headers);
        for k in MESIBO_KEYS {
            let _ = mesibo::s(&p, k);
            let _ = mesibo::n(&p, k);
        }
    }
}

/// A `/v1` JSON body: the first byte picks the request type, the rest is the body. Each body
/// goes through the handler's extractor and then the checks its service runs before storing.
pub(crate) fn rest_body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else { return };
    let body = Bytes::copy_from_slice(body);
    let checked: ApiResult<()> = match kind % 9 {
        0 => json::<CodeRequest>(body).and_then(|r| Identity::parse(r.email.as_deref(), r.phone.as_deref()).map(drop)),
        1 => json::<VerifyRequest>(body).and_then(|r| {
            Identity::parse(r.email.as_deref(), r.phone.as_deref())?;
            r.name.as_deref().map(validate_name).transpose().map(drop)
        }),
        2 => json::<UpdateMe>(body).and_then(|r| validate_name(&r.name).map(drop)),
        3 => json::<CreateGroup>(body).and_then(|r| validate_settings(&r.settings, false)),
        4 => json::<GroupSettings>(body).and_then(|r| validate_settings(&r, true)),
        5 => json::<AddMembers>(body).and_then(|r| {
            validate_member_flags(r.flags.unwrap_or(0), r.admin_flags.unwrap_or(0))?;
            r.addresses.iter().try_for_each(|a| validate_address(a).map(drop))
        }),
        6 => json::<CreatePin>(body).and_then(|r| validate_member_flags(r.flags, r.admin_flags.unwrap_or(0))),
        7 => json::<JoinGroup>(body).map(drop),
        _ => {
            json::<EditPin>(body).and_then(|r| validate_member_flags(r.flags.unwrap_or(0), r.admin_flags.unwrap_or(0)))
        }
    };
    if let Err(e) = checked {
        let _ = e.into_response();
    }
}

/// The query strings of `/v1`: paged lists, history and the WebSocket upgrade.
pub(crate) fn query(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("/v1/groups?{q}").parse::<Uri>() else { return };
    if let Ok(AppQuery(page)) = extract_query::<PageQuery>(&uri) {
        let _ = page.size();
        let _ = cursor(page.after.as_deref());
    }
    let _ = extract_query::<v1::HistoryQuery>(&uri);
    let _ = serde_urlencoded::from_str::<ws::WsQuery>(q);
}

fn json<T: serde::de::DeserializeOwned>(body: Bytes) -> ApiResult<T> {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/x")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a valid request");
    // The body is in memory: the extractor finishes on its first poll.
    let AppJson(v) = AppJson::<T>::from_request(req, &()).now_or_never().expect("ready")?;
    Ok(v)
}

fn extract_query<T: serde::de::DeserializeOwned + Send>(uri: &Uri) -> ApiResult<AppQuery<T>> {
    let (mut parts, ()) = Request::builder().uri(uri.clone()).body(()).expect("a valid request").into_parts();
    AppQuery::<T>::from_request_parts(&mut parts, &()).now_or_never().expect("ready")
}

fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
