//! `GET /admin/webhooks`: webhook deliveries for the operator (admin token, as `/metrics`):
//! the newest first, each with its status (`pending`, `delivered`, `failed`), attempts and last
//! error. Query: `status` (one of those three; all when absent) and `limit` (1–1000, default 100).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use super::metrics::is_admin;
use super::{AppJson, AppQuery, AppState};
use crate::error::{ApiError, ApiResult};
use crate::webhooks::Delivery;

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/webhooks", get(webhooks))
}

#[derive(Deserialize)]
struct Page {
    status: Option<String>,
    limit: Option<i64>,
}

async fn webhooks(
    State(st): State<AppState>,
    headers: HeaderMap,
    AppQuery(page): AppQuery<Page>,
) -> ApiResult<AppJson<Vec<Delivery>>> {
    if !is_admin(&st, &headers) {
        return Err(ApiError::unauthorized());
    }
    Ok(AppJson(st.webhooks.deliveries(page.status.as_deref(), page.limit.unwrap_or(100)).await?))
}
