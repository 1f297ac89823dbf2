//! WHIP (`/v1/groups/{gid}/whip`, RFC 9725) and WHEP (`/v1/groups/{gid}/whep`,
//! draft-ietf-wish-whep) on the HTTP port, and the REST routes of stream keys. The sessions
//! live in [`crate::live`]; this is the HTTP shape: content types, `Location`, `ETag`/`If-Match`,
//! `Link` ICE servers, CORS and errors as RFC 9457 problem details.
//!
//! CORS: any origin may use these endpoints (they take a Bearer token, never a cookie), so
//! players and publishers on other sites work whatever `cors_origins` says.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use chorus_proto::ws::IceServer;
use serde::Deserialize;

use super::{bearer_header, AppJson, AppPath, AppQuery, AppState, AuthUser, ClientIp};
use crate::error::ApiResult;
use crate::groups::Actor;
use crate::live::keys::StreamKey;
use crate::live::{Created, Kind, LiveError};

const SDP: &str = "application/sdp";
const FRAG: &str = "application/trickle-ice-sdpfrag";
const EXPOSE: &str = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/groups/{gid}/whip", post(whip_post).options(options_endpoint))
        .route("/v1/groups/{gid}/whep", post(whep_post).head(whep_head).options(options_endpoint))
        .route("/v1/whip/{id}", axum::routing::patch(whip_patch).delete(whip_delete).options(options_session))
        .route("/v1/whep/{id}", axum::routing::patch(whep_patch).delete(whep_delete).options(options_session))
}

/// The stream-key routes (JSON, in the `/v1` group).
pub(super) fn key_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/groups/{gid}/stream_keys", post(create_key).get(list_keys))
        .route("/v1/groups/{gid}/stream_keys/{id}", delete(revoke_key))
}

fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
}

impl IntoResponse for LiveError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or(""),
            "status": self.status,
            "detail": self.detail,
        });
        let mut r = (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response();
        cors(r.headers_mut());
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == 415 {
            r.headers_mut().insert(HeaderName::from_static("accept-post"), HeaderValue::from_static(SDP));
        }
        r
    }
}

/// The media type of a request (its essence, lower case).
fn content_type(h: &HeaderMap) -> String {
    let v = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    v.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn text(body: Bytes) -> Result<String, LiveError> {
    String::from_utf8(body.to_vec()).map_err(|_| LiveError::new(400, "the body is not UTF-8 text"))
}

/// `Link` values for the ICE servers (RFC 9725 §4.6).
fn links(servers: &[IceServer]) -> Vec<HeaderValue> {
    let q = |s: &str| s.replace(['"', '\\'], "");
    servers
        .iter()
        .flat_map(|s| {
            s.urls.iter().filter_map(move |u| {
                let v = format!(
                    "<{u}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    q(&s.username),
                    q(&s.credential)
                );
                HeaderValue::from_str(&v).ok()
            })
        })
        .collect()
}

/// A created session: `status` (201 WHIP answer, 406 WHEP counter-offer) with `Location`,
/// `ETag`, the SDP and the ICE servers.
fn created(status: StatusCode, kind: &str, c: Created) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, SDP)], c.sdp).into_response();
    let h = r.headers_mut();
    cors(h);
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/{kind}/{}", c.id)) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&c.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(HeaderName::from_static("accept-patch"), HeaderValue::from_static(FRAG));
    for l in links(&c.ice_servers) {
        h.append(header::LINK, l);
    }
    r
}

fn preflight(methods: &'static str, accept_post: bool) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(header::ALLOW, HeaderValue::from_static(methods));
    if accept_post {
        h.insert(HeaderName::from_static("accept-post"), HeaderValue::from_static(SDP));
    }
    r
}

/// `OPTIONS /v1/groups/{gid}/whip|whep`: CORS and `Accept-Post: application/sdp`.
async fn options_endpoint() -> Response {
    preflight("POST, HEAD, OPTIONS", true)
}

/// `OPTIONS /v1/whip|whep/{id}`.
async fn options_session() -> Response {
    preflight("PATCH, DELETE, OPTIONS", false)
}

/// `POST /v1/groups/{gid}/whip`: an SDP offer (`application/sdp`) → `201` with the answer.
async fn whip_post(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(gid): AppPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LiveError> {
    s.live.rate(ip)?;
    if content_type(&headers) != SDP {
        return Err(LiveError::new(415, "the offer must be application/sdp"));
    }
    let token = bearer_header(&headers);
    let cred = s.live.credential(gid, token, Kind::Whip).await?;
    let offer = text(body)?;
    let c = s.live.whip(gid, token.unwrap_or_default(), cred, offer).await?;
    Ok(created(StatusCode::CREATED, "whip", c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhepQuery {
    /// The publisher (address) and stream to watch; the first live one when absent.
    address: Option<String>,
    sid: Option<u32>,
}

/// `POST /v1/groups/{gid}/whep`: `406` with the server's offer (the player PATCHes its answer),
/// `409` + `Retry-After` when nothing is live.
async fn whep_post(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(gid): AppPath<i64>,
    AppQuery(q): AppQuery<WhepQuery>,
    headers: HeaderMap,
    _body: Bytes,
) -> Result<Response, LiveError> {
    s.live.rate(ip)?;
    if content_type(&headers) != SDP {
        return Err(LiveError::new(415, "the offer must be application/sdp"));
    }
    let token = bearer_header(&headers);
    let cred = s.live.credential(gid, token, Kind::Whep).await?;
    let want = q.address.map(|a| (a, q.sid.unwrap_or(0)));
    let c = s.live.whep(gid, token.unwrap_or_default(), cred, want).await?;
    Ok(created(StatusCode::NOT_ACCEPTABLE, "whep", c))
}

/// `HEAD /v1/groups/{gid}/whep`: tells players this is a WHEP endpoint.
async fn whep_head() -> Response {
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, SDP)]).into_response();
    cors(r.headers_mut());
    r.headers_mut().insert(HeaderName::from_static("accept-post"), HeaderValue::from_static(SDP));
    r
}

async fn patch(s: &AppState, kind: Kind, id: &str, headers: &HeaderMap, body: Bytes) -> Result<Response, LiveError> {
    let token = bearer_header(headers);
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
    let ct = content_type(headers);
    if kind == Kind::Whep && ct == SDP {
        s.live.whep_answer(id, token, text(body)?).await?;
        let mut r = StatusCode::NO_CONTENT.into_response();
        cors(r.headers_mut());
        return Ok(r);
    }
    if ct != FRAG {
        return Err(LiveError::new(415, "a PATCH carries application/trickle-ice-sdpfrag"));
    }
    let frag = text(body)?;
    match s.live.patch_ice(id, kind, token, if_match, &frag).await? {
        None => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            cors(r.headers_mut());
            Ok(r)
        }
        Some((etag, frag)) => {
            let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, FRAG)], frag).into_response();
            cors(r.headers_mut());
            if let Ok(v) = HeaderValue::from_str(&etag) {
                r.headers_mut().insert(header::ETAG, v);
            }
            Ok(r)
        }
    }
}

/// `PATCH /v1/whip/{id}`: trickle ICE (`204`) or ICE restart (`200`, new `ETag`).
async fn whip_patch(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LiveError> {
    s.live.rate(ip)?;
    patch(&s, Kind::Whip, &id, &headers, body).await
}

/// `PATCH /v1/whep/{id}`: the player's answer (`application/sdp`), or trickle ICE.
async fn whep_patch(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LiveError> {
    s.live.rate(ip)?;
    patch(&s, Kind::Whep, &id, &headers, body).await
}

async fn end(s: &AppState, kind: Kind, id: &str, headers: &HeaderMap) -> Result<Response, LiveError> {
    s.live.delete(id, kind, bearer_header(headers)).await?;
    let mut r = StatusCode::OK.into_response();
    cors(r.headers_mut());
    Ok(r)
}

/// `DELETE /v1/whip/{id}`: ends the stream.
async fn whip_delete(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, LiveError> {
    s.live.rate(ip)?;
    end(&s, Kind::Whip, &id, &headers).await
}

/// `DELETE /v1/whep/{id}`: stops watching.
async fn whep_delete(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, LiveError> {
    s.live.rate(ip)?;
    end(&s, Kind::Whep, &id, &headers).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    label: String,
}

/// `POST /v1/groups/{gid}/stream_keys`: a new stream key (shown once).
async fn create_key(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<CreateKey>,
) -> ApiResult<(StatusCode, AppJson<StreamKey>)> {
    let k = s.live.keys.create(gid, Actor::User(u.uid.get()), &req.label).await?;
    Ok((StatusCode::CREATED, AppJson(k)))
}

/// `GET /v1/groups/{gid}/stream_keys`
async fn list_keys(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<Vec<StreamKey>>> {
    Ok(AppJson(s.live.keys.list(gid, Actor::User(u.uid.get())).await?))
}

/// `DELETE /v1/groups/{gid}/stream_keys/{id}`: revokes the key and ends its stream.
async fn revoke_key(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, id)): AppPath<(i64, i64)>,
) -> ApiResult<StatusCode> {
    s.live.keys.revoke(gid, Actor::User(u.uid.get()), id).await?;
    s.live.end_key(id);
    // In a cluster its stream may be on another node.
    s.messaging.bus().invalidate(crate::bus::Invalidation::StreamKey(id));
    Ok(StatusCode::NO_CONTENT)
}
