//! The HTTP edge: routes, typed extractors and shared state.
//!
//! Handlers are thin: they parse, call one service method, and shape the
//! answer. They never run SQL. Every rejection (bad JSON, bad path, missing
//! token) is turned into the one error shape of [`crate::error::ApiError`].
//!
//! - [`v1`]: Chorus's own REST API under `/v1` (described by `/v1/openapi.json`).
//! - [`ws`]: the WebSocket at `/v1/ws`; [`ticket`]: the tickets that open it.
//! - [`server`]: the listener (connection cap, timeouts).
//! - [`mesibo`]: Mesibo-compatible adapters at `/api` and `/backend`.
//! - [`sdk`]: the browser SDK bundles at `/sdk/`.
//! - [`web`]: the web app at `/`.
//! - [`cors`]: use from pages on other origins (`cors_origins`).
//! - [`metrics`]: `/metrics` for Prometheus (admin token).
//! - [`admin`]: `/admin/webhooks`, webhook deliveries (admin token).
//! - Uploads (`/v1/uploads`, tus) and files (`/v1/files`) are [`crate::media`]'s routes,
//!   merged into the `/v1` group here.

pub mod acme;
pub mod admin;
pub mod cors;
pub mod drain;
pub mod forward;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzz;
pub mod live;
pub mod mesibo;
pub mod metrics;
pub mod sdk;
pub mod sendfile;
pub mod server;
pub mod ticket;
pub mod v1;
pub mod web;
pub mod ws;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chorus_proto::ws::SessionUser;
use chorus_proto::ErrorCode;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::error::ApiError;
use crate::groups::Groups;
use crate::messaging::Messaging;
use crate::presence::Presence;

/// Everything handlers need, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub cfg: Arc<Config>,
    /// Accounts service.
    pub accounts: Arc<Accounts>,
    /// Groups service.
    pub groups: Arc<Groups>,
    /// Whiteboards service.
    pub boards: Arc<crate::boards::Boards>,
    /// Messaging service.
    pub messaging: Arc<Messaging>,
    /// Presence announcer.
    pub presence: Arc<Presence>,
    /// Group calls.
    pub calls: Arc<crate::call::Calls>,
    /// 1:1 calls.
    pub direct: Arc<crate::call::direct::DirectCalls>,
    /// Webhooks (deliveries for the admin view).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The admin (app) token.
    pub admin_token: Arc<str>,
    /// Session id counter.
    pub next_session: Arc<AtomicU64>,
    /// Store epoch (see [`crate::db::Db::epoch`]).
    pub epoch: Arc<str>,
    /// Unused WebSocket tickets.
    pub tickets: Arc<ticket::Tickets>,
    /// Uploads and files.
    pub media: Arc<crate::media::Media>,
    /// WHIP ingest and WHEP playback.
    pub live: Arc<crate::live::Live>,
    /// This node's id (`node_id`, else random at each start).
    pub node_id: Arc<str>,
    /// Cluster mode: the other nodes and the NATS link.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Cluster mode: group calls joined on whichever node holds them.
    pub call_router: Option<Arc<crate::cluster::calls::CallRouter>>,
    /// Cluster mode: WHIP, WHEP and recording requests sent to the node holding their call.
    pub forward: Option<Arc<crate::cluster::forward::HttpForward>>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    // The routes pages on other origins may use: with `cors_origins` set, each group answers
    // preflights for its methods, and the origin guard runs first (see [`cors`]).
    // The 405 answer is set on each group before its layers, so that the layers also wrap it
    // (a preflight is an OPTIONS that would otherwise be a 405 on most routes): the top-level
    // `method_not_allowed_fallback` below only fills routes that have none yet.
    let mut v1 = v1::routes()
        .merge(crate::media::routes())
        .merge(live::key_routes())
        .method_not_allowed_fallback(method_not_allowed);
    let mut api = mesibo::api_routes();
    let mut sdk = sdk::routes().method_not_allowed_fallback(method_not_allowed);
    let mut live = live::routes();
    let mut internal = Router::new();
    if state.forward.is_some() {
        internal = internal.route("/internal/ws-ticket", axum::routing::post(ws::redeem_forwarded));
        // Cluster mode: a request about a call held by another node runs there (see [`forward`]).
        let layer = || axum::middleware::from_fn_with_state(state.clone(), forward::layer);
        v1 = v1.route_layer(layer());
        live = live.route_layer(layer());
    }
    let cfg = &state.cfg;
    if !cfg.cors_origins.is_empty() {
        use axum::http::Method;
        let guard = || axum::middleware::from_fn_with_state(state.clone(), cors::guard);
        v1 = v1
            .layer(cors::layer(cfg, &[Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE]))
            .layer(guard());
        api = api.layer(cors::layer(cfg, &[Method::GET, Method::POST])).layer(guard());
        sdk = sdk.layer(cors::layer(cfg, &[Method::GET])).layer(guard());
    }
    Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .merge(live)
        .merge(internal)
        .merge(api)
        .merge(mesibo::backend_routes())
        .merge(metrics::routes())
        .merge(admin::routes())
        .merge(sdk)
        .merge(web::routes())
        .layer(axum::extract::DefaultBodyLimit::max(state.cfg.max_body_bytes))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// `200 ok` while the node serves; in cluster mode `503` while its NATS link is down (it still
/// serves its own sessions, but messages from other nodes do not reach them).
async fn healthz(axum::extract::State(st): axum::extract::State<AppState>) -> (StatusCode, &'static str) {
    match &st.cluster {
        Some(c) if !c.healthy() => (StatusCode::SERVICE_UNAVAILABLE, "nats unreachable"),
        _ => (StatusCode::OK, "ok"),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not accept that HTTP method")
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::TooLarge, "request body is too large"),
            _ => ApiError::bad_request(r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

/// JSON body with our error shape on rejection.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for AppJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters with our error shape on rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// Query string with our error shape on rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// The client's IP: the socket peer, or, when `trust_forwarded_for` is set, the
/// last `X-Forwarded-For` entry: the one our own proxy appended (earlier
/// entries come from the client and could be forged).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.cfg.trust_forwarded_for {
            let fwd = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
            if let Some(ip) = fwd.and_then(|v| v.rsplit(',').next()).and_then(|s| s.trim().parse().ok()) {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientIp(peer.unwrap_or(IpAddr::from([127, 0, 0, 1]))))
    }
}

/// The bearer token of a request, from `Authorization: Bearer …`.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_header(&parts.headers)
}

/// The bearer token in `headers`, from `Authorization: Bearer …`.
pub fn bearer_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

/// True if a Mesibo `/api` request names a token in its query string (refused: `TOKENINURL`).
pub fn mesibo_secret_in_query(uri: &axum::http::Uri) -> bool {
    mesibo::secret_in_query(uri)
}

/// A request authenticated with a user access token.
pub struct AuthUser(pub SessionUser, pub String);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?.to_string();
        let user = state.accounts.authenticate(&token).await?;
        Ok(AuthUser(user, token))
    }
}
