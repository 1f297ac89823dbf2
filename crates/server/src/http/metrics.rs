//! `GET /metrics`: the server's metrics ([`crate::metrics`]) for Prometheus, in OpenMetrics text.
//! Only with the admin token (`Authorization: Bearer <admin token>`): the figures tell how busy
//! the server is and are not for members. Anything else is `401 unauthorized`.

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::error::ApiError;

/// The `/metrics` route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !is_admin(&st, &headers) {
        return ApiError::unauthorized().into_response();
    }
    ([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], crate::metrics::render()).into_response()
}

/// Whether the request carries the admin token as `Authorization: Bearer`.
pub(crate) fn is_admin(st: &AppState, headers: &HeaderMap) -> bool {
    let token = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    token.is_some_and(|t| crate::auth_token::ct_eq(t.trim(), &st.admin_token))
}
