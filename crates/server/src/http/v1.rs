//! Chorus's own REST API, `/v1/…`. Each handler's doc starts with its route;
//! docs/openapi.json describes the same routes and shapes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use chorus_proto::flags::member;
use chorus_proto::rest::*;
use chorus_proto::ws::SessionUser;
use serde::Deserialize;

use super::{AppJson, AppPath, AppQuery, AppState, AuthUser, ClientIp};
use crate::accounts::Identity;
use crate::boards::BoardChange;
use crate::error::{ApiError, ApiResult};
use crate::groups::Actor;
use crate::messaging::Target;
use chorus_proto::call::{CallRecording, RecordAction};

/// The OpenAPI document, kept in docs/ and served as is.
pub const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/auth/code", post(request_code))
        .route("/v1/auth/verify", post(verify))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/me", get(me).patch(update_me))
        .route("/v1/users/{address}", get(user_profile))
        .route("/v1/users/{address}/messages", get(user_history))
        .route("/v1/users/{address}/receipts", get(user_receipts))
        .route("/v1/conversations", get(conversations))
        .route("/v1/groups", get(my_groups).post(create_group))
        .route("/v1/groups/{gid}", get(get_group).patch(update_group).delete(delete_group))
        .route("/v1/groups/{gid}/members", get(list_members).post(add_members))
        .route("/v1/groups/{gid}/members/{address}", delete(remove_member))
        .route("/v1/groups/{gid}/pins", get(list_pins).post(create_pin))
        .route("/v1/groups/{gid}/pins/{pin}", delete(revoke_pin).patch(edit_pin))
        .route("/v1/groups/{gid}/board", get(get_board).put(put_board).post(append_board))
        .route("/v1/groups/{gid}/join", post(join_group))
        .route("/v1/groups/{gid}/leave", post(leave_group))
        .route("/v1/groups/{gid}/messages", get(group_history))
        .route("/v1/groups/{gid}/receipts", get(group_receipts))
        .route("/v1/groups/{gid}/call/recording", get(recording).post(start_recording).delete(stop_recording))
        .route("/v1/ws", get(super::ws::upgrade))
        .route("/v1/ws/ticket", post(ws_ticket))
}

/// `GET /v1/groups/{gid}/call/recording`: whether the group's call is being recorded.
async fn recording(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<CallRecording>> {
    Ok(AppJson(s.calls.recording(u.uid.get(), gid).await?))
}

/// `POST /v1/groups/{gid}/call/recording`: starts recording the call (call control needed).
async fn start_recording(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<CallRecording>> {
    Ok(AppJson(s.calls.record(u.uid.get(), u.address.clone(), gid, RecordAction::Start).await?))
}

/// `DELETE /v1/groups/{gid}/call/recording`: stops it; the files go to the media library.
async fn stop_recording(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<CallRecording>> {
    Ok(AppJson(s.calls.record(u.uid.get(), u.address.clone(), gid, RecordAction::Stop).await?))
}

/// `GET /v1/openapi.json`
async fn openapi() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `POST /v1/auth/code`: mails (or texts) a 6-digit login code.
async fn request_code(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(req): AppJson<CodeRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = Identity::parse(req.email.as_deref(), req.phone.as_deref())?;
    let expires_in = s.accounts.request_code(&id, ip).await?;
    Ok((StatusCode::ACCEPTED, AppJson(CodeSent { expires_in })))
}

/// `POST /v1/auth/verify`: exchanges a code for an access token.
async fn verify(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(req): AppJson<VerifyRequest>,
) -> ApiResult<AppJson<LoginSession>> {
    let id = Identity::parse(req.email.as_deref(), req.phone.as_deref())?;
    Ok(AppJson(s.accounts.verify(&id, &req.code, req.name.as_deref(), ip, "web").await?))
}

/// `POST /v1/auth/logout`: revokes the presented token.
async fn logout(State(s): State<AppState>, AuthUser(_, token): AuthUser) -> ApiResult<StatusCode> {
    s.accounts.revoke(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A WebSocket ticket.
#[derive(serde::Serialize)]
struct WsTicket {
    ticket: String,
    /// Seconds it stays valid.
    expires_in: u64,
}

/// `POST /v1/ws/ticket`: a single-use, short-lived ticket for `GET /v1/ws?ticket=…`, so the
/// access token need not be in the WebSocket's URL.
async fn ws_ticket(State(s): State<AppState>, AuthUser(u, token): AuthUser) -> ApiResult<AppJson<WsTicket>> {
    let ticket = s.tickets.issue(u.uid.get(), &token, std::time::Instant::now())?;
    Ok(AppJson(WsTicket { ticket, expires_in: super::ticket::TICKET_TTL.as_secs() }))
}

/// `GET /v1/me`
async fn me(AuthUser(u, _): AuthUser) -> AppJson<SessionUser> {
    AppJson(u)
}

/// `PATCH /v1/me`: changes the display name.
async fn update_me(
    State(s): State<AppState>,
    AuthUser(mut u, _): AuthUser,
    AppJson(req): AppJson<UpdateMe>,
) -> ApiResult<AppJson<SessionUser>> {
    u.name = s.accounts.rename(u.uid.get(), &req.name).await?;
    Ok(AppJson(u))
}

/// Public profile: address and name, never the email.
#[derive(serde::Serialize)]
struct Profile {
    address: String,
    name: String,
}

/// `GET /v1/users/{address}`
async fn user_profile(
    State(s): State<AppState>,
    _u: AuthUser,
    AppPath(address): AppPath<String>,
) -> ApiResult<AppJson<Profile>> {
    let u = s.accounts.by_address(&address).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
    Ok(AppJson(Profile { address: u.address, name: u.name }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/users/{address}/messages?before=SEQ&limit=N`: 1:1 history.
async fn user_history(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(address): AppPath<String>,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> ApiResult<AppJson<HistoryPage>> {
    Ok(AppJson(s.messaging.history(&u, &Target::Peer(address), q.before, q.limit.unwrap_or(50)).await?))
}

/// `GET /v1/users/{address}/receipts`
async fn user_receipts(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(address): AppPath<String>,
) -> ApiResult<AppJson<Receipts>> {
    Ok(AppJson(s.messaging.receipts(&u, &Target::Peer(address)).await?))
}

/// `GET /v1/conversations`: the caller's conversations, most recent first.
async fn conversations(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
) -> ApiResult<AppJson<Vec<ConversationSummary>>> {
    Ok(AppJson(s.messaging.conversations(&u).await?))
}

/// One page of a list as a JSON array; when more follow, a `Link: <path?limit=N&after=CURSOR>;
/// rel="next"` header names the next page.
fn paged<T: serde::Serialize>(items: Vec<T>, next: Option<String>, path: &str, q: &PageQuery) -> ApiResult<Response> {
    let mut resp = AppJson(items).into_response();
    if let Some(next) = next {
        let query = serde_urlencoded::to_string([("limit", q.size().to_string()), ("after", next)])
            .map_err(|e| ApiError::internal(format_args!("next link: {e}")))?;
        let link = axum::http::HeaderValue::from_str(&format!("<{path}?{query}>; rel=\"next\""))
            .map_err(|e| ApiError::internal(format_args!("next link: {e}")))?;
        resp.headers_mut().insert(axum::http::header::LINK, link);
    }
    Ok(resp)
}

/// `GET /v1/groups?limit=N&after=CURSOR`: the caller's groups, one page.
async fn my_groups(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<Response> {
    let (groups, next) = s.groups.list_mine(u.uid.get(), &q).await?;
    paged(groups, next, "/v1/groups", &q)
}

/// `POST /v1/groups`: creates a group (with `room: true`, its two pins too).
async fn create_group(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppJson(req): AppJson<CreateGroup>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, AppJson(s.groups.create(Actor::User(u.uid.get()), &req, false).await?)))
}

/// `GET /v1/groups/{gid}`
async fn get_group(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<Group>> {
    Ok(AppJson(s.groups.get(gid, Actor::User(u.uid.get())).await?))
}

/// `PATCH /v1/groups/{gid}`
async fn update_group(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<GroupSettings>,
) -> ApiResult<AppJson<Group>> {
    Ok(AppJson(s.groups.update(gid, Actor::User(u.uid.get()), &req, false).await?))
}

/// `DELETE /v1/groups/{gid}`
async fn delete_group(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<StatusCode> {
    s.groups.delete(gid, Actor::User(u.uid.get())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/groups/{gid}/members?limit=N&after=CURSOR`: one page.
async fn list_members(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppQuery(q): AppQuery<PageQuery>,
) -> ApiResult<Response> {
    let (members, next) = s.groups.members_page(gid, Actor::User(u.uid.get()), Some(&q)).await?;
    paged(members, next, &format!("/v1/groups/{gid}/members"), &q)
}

/// `POST /v1/groups/{gid}/members`
async fn add_members(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<AddMembers>,
) -> ApiResult<StatusCode> {
    let flags = req.flags.unwrap_or(member::ALL);
    s.groups.add_members(gid, Actor::User(u.uid.get()), &req.addresses, flags, req.admin_flags.unwrap_or(0)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/groups/{gid}/members/{address}`
async fn remove_member(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, address)): AppPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    s.groups.remove_member(gid, Actor::User(u.uid.get()), &address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/groups/{gid}/pins`
async fn list_pins(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<Vec<Pin>>> {
    Ok(AppJson(s.groups.list_pins(gid, Actor::User(u.uid.get())).await?))
}

/// `GET /v1/groups/{gid}/board`: the group's whiteboard (members).
async fn get_board(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<Board>> {
    Ok(AppJson(s.boards.get(gid, u.uid.get()).await?))
}

/// `PUT /v1/groups/{gid}/board`: replaces the whole board (members who may send).
async fn put_board(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<PutBoard>,
) -> ApiResult<AppJson<Board>> {
    let change = BoardChange::Replace { objs: req.objs, version: req.version };
    Ok(AppJson(s.boards.change(gid, &u, change).await?))
}

/// `POST /v1/groups/{gid}/board`: adds objects at the end of the board (members who may send).
async fn append_board(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<AppendBoard>,
) -> ApiResult<AppJson<Board>> {
    Ok(AppJson(s.boards.change(gid, &u, BoardChange::Append(req.objs)).await?))
}

/// `POST /v1/groups/{gid}/pins`
async fn create_pin(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<CreatePin>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, AppJson(s.groups.create_pin(gid, Actor::User(u.uid.get()), &req).await?)))
}

/// `PATCH /v1/groups/{gid}/pins/{pin}`: changes a pin (Mesibo's `editPin`).
async fn edit_pin(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, pin)): AppPath<(i64, String)>,
    AppJson(req): AppJson<EditPin>,
) -> ApiResult<AppJson<Pin>> {
    Ok(AppJson(s.groups.edit_pin(gid, Actor::User(u.uid.get()), &pin, &req).await?))
}

/// `DELETE /v1/groups/{gid}/pins/{pin}`
async fn revoke_pin(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath((gid, pin)): AppPath<(i64, String)>,
) -> ApiResult<StatusCode> {
    s.groups.revoke_pin(gid, Actor::User(u.uid.get()), &pin).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/groups/{gid}/join`: joins with a pin.
async fn join_group(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    ClientIp(ip): ClientIp,
    AppPath(gid): AppPath<i64>,
    AppJson(req): AppJson<JoinGroup>,
) -> ApiResult<AppJson<Group>> {
    Ok(AppJson(s.groups.join(gid, u.uid.get(), &req.pin, ip).await?))
}

/// `POST /v1/groups/{gid}/leave`
async fn leave_group(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<StatusCode> {
    s.groups.remove_member(gid, Actor::User(u.uid.get()), &u.address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/groups/{gid}/messages?before=SEQ&limit=N`
async fn group_history(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
    AppQuery(q): AppQuery<HistoryQuery>,
) -> ApiResult<AppJson<HistoryPage>> {
    Ok(AppJson(s.messaging.history(&u, &Target::Group(gid), q.before, q.limit.unwrap_or(50)).await?))
}

/// `GET /v1/groups/{gid}/receipts`
async fn group_receipts(
    State(s): State<AppState>,
    AuthUser(u, _): AuthUser,
    AppPath(gid): AppPath<i64>,
) -> ApiResult<AppJson<Receipts>> {
    Ok(AppJson(s.messaging.receipts(&u, &Target::Group(gid)).await?))
}
