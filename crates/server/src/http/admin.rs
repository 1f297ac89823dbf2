//! The operator's view (admin token as `Authorization: Bearer`, as `/metrics`), read by the
//! web app's admin page and by `chorus admin …`:
//!
//! - `GET /admin/nodes` — the Chorus processes serving this store (in cluster mode every node
//!   heard from within three heartbeats, this one first): id, address, version, start time,
//!   store kind, sessions, calls and call participants now, last heartbeat;
//! - `GET /admin/calls` — the calls in progress: group, participants, start time, the node
//!   holding it (in cluster mode every live node's calls: the others are asked over NATS);
//! - `GET /admin/users?after=&limit=` and `GET /admin/groups?after=&limit=` — pages in id order
//!   (`limit` 1–1000, default 100; `next` is the `after` of the next page, absent on the last);
//! - `GET /admin/webhooks?status=&limit=` — webhook deliveries, the newest first, each with its
//!   status (`pending`, `delivered`, `failed`), attempts and last error (`limit` 1–1000, default 100).

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::get;
use axum::Extension;
use axum::Router;
use chorus_proto::rest::Group;
use serde::{Deserialize, Serialize};

use super::metrics::is_admin;
use super::{AppJson, AppQuery, AppState};
use crate::call::{Calls, LiveCall};
use crate::cluster::forward::{Forwarded, MAX_BODY};
use crate::cluster::NodeInfo;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::webhooks::Delivery;

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/nodes", get(nodes))
        .route("/admin/calls", get(calls))
        .route("/admin/users", get(users))
        .route("/admin/groups", get(groups))
        .route("/admin/webhooks", get(webhooks))
}

static STARTED_MS: OnceLock<i64> = OnceLock::new();

/// Notes the process's start time for `/admin/nodes` (called once as the server starts).
pub fn mark_started() {
    STARTED_MS.get_or_init(crate::clock::now_ms);
}

/// A request that carries the admin token; anything else is answered `401 unauthorized`.
struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if is_admin(st, &parts.headers) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

static ADDRESS: OnceLock<String> = OnceLock::new();

/// Notes the URL the server listens on, for `/admin/nodes` (called once, after binding).
pub fn mark_listening(url: String) {
    let _ = ADDRESS.set(url);
}

/// This node as `/admin/nodes` shows it (and, in cluster mode, its heartbeat carries it).
pub fn this_node(cfg: &Config, calls: Option<&Calls>, id: &str) -> NodeInfo {
    let live = calls.map(Calls::live).unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let store = match cfg.database.as_deref() {
        Some(url) if url.starts_with("postgres") => "postgresql",
        _ => "sqlite",
    };
    NodeInfo {
        id: id.to_string(),
        node: Some(host.trim()).filter(|h| !h.is_empty()).unwrap_or("chorus").to_string(),
        address: ADDRESS.get().cloned().unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: STARTED_MS.get().copied().unwrap_or_default(),
        store: store.to_string(),
        sessions: crate::metrics::metrics().sessions.get(),
        calls: live.len(),
        participants: live.iter().map(|c| c.participants).sum(),
        media: calls.map(|c| c.media_addresses().0.to_string()).unwrap_or_default(),
        last_heartbeat: crate::clock::now_ms(),
    }
}

/// This node first, then (cluster mode) every other node alive, by id.
async fn nodes(_: Admin, State(st): State<AppState>) -> AppJson<Vec<NodeInfo>> {
    let mut list = vec![this_node(&st.cfg, Some(&st.calls), &st.node_id)];
    if let Some(c) = &st.cluster {
        list.extend(c.peers());
    }
    AppJson(list)
}

async fn calls(
    _: Admin,
    State(st): State<AppState>,
    forwarded: Option<Extension<Forwarded>>,
    headers: HeaderMap,
) -> AppJson<Vec<LiveCall>> {
    let mut list = st.calls.live();
    for c in &mut list {
        c.node = st.node_id.to_string();
    }
    // Cluster mode: every other live node's calls too (a node asked this way answers its own).
    if let (None, Some(fwd), Some(cluster)) = (forwarded, &st.forward, &st.cluster) {
        let uri = Uri::from_static("/admin/calls");
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let peers = cluster.peers();
        let asks = peers.iter().map(|p| fwd.forward(&p.id, &Method::GET, &uri, &headers, ip, Bytes::new()));
        for (p, answer) in peers.iter().zip(futures_util::future::join_all(asks).await) {
            let theirs = match answer {
                Ok(r) if r.status().is_success() => axum::body::to_bytes(r.into_body(), MAX_BODY).await.ok(),
                _ => None,
            };
            match theirs.and_then(|b| serde_json::from_slice::<Vec<LiveCall>>(&b).ok()) {
                Some(calls) => list.extend(calls),
                None => tracing::warn!(node = %p.id, "admin: a node did not list its calls"),
            }
        }
        list.sort_by_key(|c| c.gid);
    }
    AppJson(list)
}

#[derive(Deserialize)]
struct Page {
    after: Option<i64>,
    limit: Option<u32>,
}

/// A user as the operator sees them (with their address, never their email).
#[derive(Serialize)]
struct User {
    uid: i64,
    address: String,
    name: String,
    active: bool,
    created_at: i64,
}

#[derive(Serialize)]
struct Users {
    users: Vec<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

async fn users(_: Admin, State(st): State<AppState>, AppQuery(page): AppQuery<Page>) -> ApiResult<AppJson<Users>> {
    let (list, next) = st.accounts.admin_list(page.after.unwrap_or(0), page.limit.unwrap_or(100), None).await?;
    let users = list
        .into_iter()
        .map(|u| User { uid: u.uid, address: u.address, name: u.name, active: u.active, created_at: u.created_at })
        .collect();
    Ok(AppJson(Users { users, next }))
}

/// A group with its member count.
#[derive(Serialize)]
struct AdminGroup {
    #[serde(flatten)]
    group: Group,
    members: i64,
}

#[derive(Serialize)]
struct Groups {
    groups: Vec<AdminGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

async fn groups(_: Admin, State(st): State<AppState>, AppQuery(page): AppQuery<Page>) -> ApiResult<AppJson<Groups>> {
    let (list, next) = st.groups.admin_list(page.after.unwrap_or(0), page.limit.unwrap_or(100), None).await?;
    let groups = list.into_iter().map(|(group, members)| AdminGroup { group, members }).collect();
    Ok(AppJson(Groups { groups, next }))
}

#[derive(Deserialize)]
struct DeliveryPage {
    status: Option<String>,
    limit: Option<i64>,
}

async fn webhooks(
    _: Admin,
    State(st): State<AppState>,
    AppQuery(page): AppQuery<DeliveryPage>,
) -> ApiResult<AppJson<Vec<Delivery>>> {
    Ok(AppJson(st.webhooks.deliveries(page.status.as_deref(), page.limit.unwrap_or(100)).await?))
}
