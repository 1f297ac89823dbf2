//! Mesibo-compatible adapters, thin layers over the same services.
//!
//! - `/api`: the conferencing demo backend (`login`, `logout`, `setgroup`,
//!   `joingroup`, `delgroup`, `rooms`, `setboard`, `getboard`, and `upload`, a multipart
//!   request handled by `media::form`). Parameters by GET query, POST form or
//!   POST JSON, but tokens never in the query string (`TOKENINURL`).
//!   Replies `{op, ts, result: "OK"|"FAIL", error}`.
//! - `/backend`: the admin backend API (`useradd`, `deluser`, `deltoken`,
//!   `groupadd`, `groupset`, `groupdel`, `groupeditmembers`, `getmembers`,
//!   `message`), authorised by the admin token. Replies `{op, result: true|false, error}`.
//!
//! docs/mesibo-compat.md lists every op, field and error code.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::any;
use axum::{Json, Router};
use chorus_proto::flags::{call, group, member, resolution};
use chorus_proto::rest::GroupSettings;
use chorus_proto::ws::SessionUser;
use chorus_proto::ErrorCode;
use serde_json::{json, Map, Value};

use super::{AppState, ClientIp};
use crate::accounts::Identity;
use crate::auth_token::random_hex;
use crate::boards::BoardChange;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::groups::Actor;
use crate::messaging::{Content, Target};

/// `/api` and `/api.php`: called by browser pages (CORS applies, see [`super::cors`]). A
/// refused `op=upload` lets the client finish sending before it answers ([`super::drain`]).
pub(super) fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api", any(api_entry))
        .route("/api.php", any(api_entry))
        .route_layer(axum::middleware::from_fn(super::drain::read_to_end))
}

/// `/backend`: server to server with the admin token; no CORS.
pub(super) fn backend_routes() -> Router<AppState> {
    Router::new().route("/backend", any(backend)).route("/backend/", any(backend))
}

/// Request parameters from the query string, a form body or a JSON body, as one JSON object.
pub(super) fn params(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    if let Some(q) = uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).map_err(|e| format!("bad query: {e}"))?;
        for (k, v) in pairs {
            out.insert(k, Value::String(v));
        }
    }
    if body.is_empty() {
        return Ok(out);
    }
    let ctype = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let trimmed = body.iter().copied().find(|b| !b.is_ascii_whitespace());
    if ctype.starts_with("application/json") || trimmed == Some(b'{') {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => return Err("body is not a JSON object".into()),
        }
    } else {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_bytes(body).map_err(|e| format!("bad form body: {e}"))?;
        for (k, v) in pairs {
            out.insert(k, Value::String(v));
        }
    }
    Ok(out)
}

/// Names of parameters that carry secrets (access and admin tokens). They are refused in a
/// query string, whatever their value: URLs end up in proxy and server logs and in browser
/// history. They go in the body (form or JSON) or in `Authorization: Bearer`.
const SECRET_PARAMS: [&str; 2] = ["token", "usertoken"];

/// The reply error for a secret in the query string.
const TOKEN_IN_URL: &str = "TOKENINURL";

/// True if the query string names a secret parameter (see [`SECRET_PARAMS`]).
pub(super) fn secret_in_query(uri: &Uri) -> bool {
    let Some(q) = uri.query() else { return false };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).unwrap_or_default();
    pairs.iter().any(|(k, _)| SECRET_PARAMS.contains(&k.as_str()))
}

/// The token of a request: the `token` parameter of the body, else `Authorization: Bearer`.
/// (Call after [`secret_in_query`] refused query tokens.)
pub(super) fn request_token(p: &Map<String, Value>, headers: &HeaderMap) -> Option<String> {
    s(p, "token").or_else(|| {
        let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = v.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
    })
}

/// A string parameter (numbers are accepted and rendered).
pub(super) fn s(p: &Map<String, Value>, k: &str) -> Option<String> {
    match p.get(k)? {
        Value::String(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1".into() } else { "0".into() }),
        _ => None,
    }
}

/// An integer parameter; `Err` if present but not a number.
pub(super) fn n(p: &Map<String, Value>, k: &str) -> Result<Option<i64>, ()> {
    match p.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(v)) => v.as_i64().map(Some).ok_or(()),
        Some(Value::Bool(b)) => Ok(Some(i64::from(*b))),
        Some(Value::String(v)) if v.trim().is_empty() => Ok(None),
        Some(Value::String(v)) => v.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

// ---------------------------------------------------------------- /api

fn api_reply(op: &str, fields: Value) -> Json<Value> {
    let mut m = Map::new();
    m.insert("op".into(), json!(op));
    m.insert("ts".into(), json!(now_ms() / 1000));
    m.insert("result".into(), json!("OK"));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Json(Value::Object(m))
}

fn api_fail(op: &str, error: &str) -> Json<Value> {
    Json(json!({"op": op, "ts": now_ms() / 1000, "result": "FAIL", "error": error}))
}

/// Maps a service error to the conferencing API's error code.
fn api_code(e: &ApiError, default: &'static str) -> &'static str {
    match e.code {
        ErrorCode::RateLimited => "RATELIMIT",
        ErrorCode::Internal => "FAIL",
        ErrorCode::Unauthorized => "AUTHFAIL",
        _ => default,
    }
}

/// `/api`: a multipart body is `op=upload` (streamed by [`crate::media::mesibo_upload`], never
/// buffered); anything else is read whole (within `max_body_bytes`) and goes to [`api`].
async fn api_entry(State(st): State<AppState>, ip: ClientIp, req: axum::extract::Request) -> axum::response::Response {
    use axum::extract::FromRequest;
    use axum::response::IntoResponse;
    if crate::media::form::is_multipart(req.headers()) {
        return crate::media::mesibo_upload(st, req).await.into_response();
    }
    let (m, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers().clone());
    match Bytes::from_request(req, &st).await {
        Ok(body) => api(State(st), ip, m, uri, headers, body).await.into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

/// `/api`: the Mesibo conferencing demo backend.
async fn api(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    _m: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let p = match params(&uri, &headers, &body) {
        Ok(p) => p,
        Err(_) => return api_fail("", "BADREQUEST"),
    };
    let Some(op) = s(&p, "op") else {
        return Json(json!({"code": "NOOP", "result": "FAIL"}));
    };
    if secret_in_query(&uri) {
        return api_fail(&op, TOKEN_IN_URL);
    }
    match op.as_str() {
        "login" => api_login(&st, ip, &p).await,
        "logout" => {
            if let Some(t) = request_token(&p, &headers) {
                let _ = st.accounts.revoke(&t).await;
            }
            api_reply("logout", json!({}))
        }
        "setgroup" | "joingroup" | "delgroup" | "rooms" | "setboard" | "getboard" => {
            let user = match request_token(&p, &headers) {
                Some(t) => st.accounts.authenticate(&t).await.ok(),
                None => None,
            };
            let Some(user) = user else { return api_fail(&op, "AUTHFAIL") };
            match op.as_str() {
                "setgroup" => api_setgroup(&st, user.uid.get(), &p).await,
                "joingroup" => api_joingroup(&st, user.uid.get(), ip, &p).await,
                "delgroup" => api_delgroup(&st, user.uid.get(), &p).await,
                "setboard" => api_setboard(&st, &user, &p).await,
                "getboard" => api_getboard(&st, &user, &p).await,
                _ => api_rooms(&st, user.uid.get()).await,
            }
        }
        // `upload` comes as a multipart form (see `api_entry`); anything else has no file.
        "upload" => api_fail(&op, "MISSINGFILE"),
        _ => api_fail(&op, "BADOP"),
    }
}

async fn api_login(st: &AppState, ip: std::net::IpAddr, p: &Map<String, Value>) -> Json<Value> {
    let email = s(p, "email");
    let phone = s(p, "phone");
    let name = s(p, "name");
    let appid = s(p, "appid").unwrap_or_else(|| "javascript".into());
    let code = s(p, "code").or_else(|| s(p, "otp"));
    let id = match (&email, &phone) {
        (Some(e), _) => match Identity::parse(Some(e), None) {
            Ok(id) => id,
            Err(_) => return api_fail("login", "BADEMAIL"),
        },
        (None, Some(ph)) => match Identity::parse(None, Some(ph)) {
            Ok(id) => id,
            Err(_) => return api_fail("login", "BADPHONE"),
        },
        (None, None) => return api_fail("login", "MISSINGEMAIL"),
    };
    let is_phone = matches!(id, Identity::Phone(_));
    if !is_phone && name.is_none() {
        return api_fail("login", "MISSINGNAME");
    }
    match code {
        None => match st.accounts.request_code(&id, ip).await {
            Ok(_) if is_phone => api_reply(
                "login",
                json!({"title": "Verification code sent", "message": "Enter the code sent to your phone.", "delay": 2000}),
            ),
            Ok(_) => api_reply("login", json!({})),
            Err(e) => api_fail("login", api_code(&e, "FAIL")),
        },
        Some(code) => match st.accounts.verify(&id, &code, name.as_deref(), ip, &appid).await {
            Ok(sess) => {
                let mut f = json!({"token": sess.token, "name": sess.user.name, "address": sess.user.address, "uid": sess.user.uid});
                if let Identity::Phone(ph) = &id {
                    f["phone"] = json!(ph);
                }
                api_reply("login", f)
            }
            Err(e) if e.code == ErrorCode::BadRequest => api_fail("login", "MISSINGNAME"),
            Err(e) => api_fail("login", api_code(&e, "BADCODE")),
        },
    }
}

async fn api_setgroup(st: &AppState, uid: i64, p: &Map<String, Value>) -> Json<Value> {
    let (Ok(gid), Ok(res), Ok(kind)) = (n(p, "gid"), n(p, "resolution"), n(p, "type")) else {
        return api_fail("setgroup", "MISSINGPARA");
    };
    // Out-of-range resolutions fall back to the default, as Mesibo's demo backend did.
    let res = res.map(|r| if (0..=5).contains(&r) { r as u32 } else { 0 });
    let name = s(p, "name");
    // An update changes only what it names; a create defaults the rest.
    let settings = GroupSettings { name: name.clone(), video_resolution: res, ..Default::default() };
    let gid = gid.unwrap_or(0);
    let created = gid <= 0;
    if created && name.is_none() {
        return api_fail("setgroup", "MISSINGPARA");
    }
    // A new room gets Mesibo's default call flags; an update keeps what it has.
    let settings = if created { GroupSettings { call_flags: Some(call::DEFAULT), ..settings } } else { settings };
    let (g, info) = match st.groups.set_room(uid, (!created).then_some(gid), &settings, kind).await {
        Ok(r) => r,
        Err(e) => return api_fail("setgroup", api_code(&e, "BADGROUP")),
    };
    let res = if created { res.unwrap_or(0) } else { g.video_resolution };
    api_reply(
        "setgroup",
        json!({"gid": g.gid, "name": g.name, "type": info.kind, "resolution": res,
               "publish": i32::from(g.allows(group::Action::Publish)), "pin": info.pin, "spin": info.spin}),
    )
}

async fn api_joingroup(st: &AppState, uid: i64, ip: std::net::IpAddr, p: &Map<String, Value>) -> Json<Value> {
    let gid = n(p, "gid").ok().flatten().filter(|g| *g > 0);
    let Some(gid) = gid else { return api_fail("joingroup", "MISSINGPARA") };
    let info = match st.groups.room_info(gid).await {
        Ok(Some(i)) => i,
        Ok(None) => return api_fail("joingroup", "BADGROUP"),
        Err(_) => return api_fail("joingroup", "FAIL"),
    };
    let owner = info.owner == Some(uid);
    let group = if owner {
        st.groups.get(gid, Actor::User(uid)).await
    } else {
        let Some(pin) = s(p, "pin") else { return api_fail("joingroup", "MISSINGPARA") };
        st.groups.join(gid, uid, &pin, ip).await
    };
    let g = match group {
        Ok(g) => g,
        Err(e) => return api_fail("joingroup", api_code(&e, "BADGROUP")),
    };
    let publish = g.allows(group::Action::Publish);
    let mut f = json!({"gid": gid, "name": g.name, "type": info.kind, "publish": i32::from(publish)});
    if owner {
        f["pin"] = json!(info.pin);
        f["spin"] = json!(info.spin);
    }
    api_reply("joingroup", f)
}

async fn api_delgroup(st: &AppState, uid: i64, p: &Map<String, Value>) -> Json<Value> {
    let Some(gid) = n(p, "gid").ok().flatten().filter(|g| *g > 0) else { return api_fail("delgroup", "MISSINGPARA") };
    match st.groups.delete_room(gid, uid).await {
        Ok(()) => api_reply("delgroup", json!({"gid": gid})),
        Err(e) => api_fail("delgroup", api_code(&e, "BADGROUP")),
    }
}

async fn api_rooms(st: &AppState, uid: i64) -> Json<Value> {
    let groups = match st.groups.rooms_of(uid).await {
        Ok(g) => g,
        Err(_) => return api_fail("rooms", "FAIL"),
    };
    let mut rooms = Vec::new();
    for (g, info) in groups {
        if info.pin.is_none() && info.spin.is_none() {
            continue; // a plain group, not a room
        }
        let owner = info.owner == Some(uid);
        let publish = g.allows(group::Action::Publish);
        let mut r = json!({"uid": info.owner.unwrap_or(0), "gid": g.gid, "name": g.name});
        r["pin"] = json!(if owner || publish { info.pin } else { info.spin.clone() });
        if owner {
            r["spin"] = json!(info.spin);
        }
        rooms.push(r);
    }
    api_reply("rooms", json!({"count": rooms.len(), "rooms": rooms}))
}

/// Maps a board service error to the conferencing API's error code.
fn board_code(e: &ApiError) -> &'static str {
    match e.code {
        ErrorCode::NotFound => "BADGROUP",
        ErrorCode::Forbidden => "DENIED",
        ErrorCode::TooLarge => "TOOLARGE",
        ErrorCode::BadRequest => "BADOBJ",
        _ => api_code(e, "FAIL"),
    }
}

/// The `obj` of `setboard`: JSON text (form or query), or a JSON object or array of objects
/// (JSON body). `Err` if it is not JSON, or not an object or a list of objects.
fn board_objs(v: &Value) -> Result<Vec<Value>, ()> {
    let v = match v {
        Value::String(t) => serde_json::from_str::<Value>(t).map_err(|_| ())?,
        other => other.clone(),
    };
    match v {
        Value::Object(_) => Ok(vec![v]),
        Value::Array(a) if a.iter().all(Value::is_object) => Ok(a),
        _ => Err(()),
    }
}

async fn api_setboard(st: &AppState, user: &SessionUser, p: &Map<String, Value>) -> Json<Value> {
    let op = "setboard";
    let (Ok(Some(gid)), Ok(reset)) = (n(p, "gid"), n(p, "reset")) else { return api_fail(op, "MISSINGPARA") };
    // `pin` is accepted and not needed: membership (from `joingroup`) is what counts.
    let change = match reset.unwrap_or(0) {
        1 => BoardChange::ClearMine,
        2 => BoardChange::ClearAll,
        0 => match p.get("obj").filter(|v| !v.is_null() && v.as_str().is_none_or(|t| !t.trim().is_empty())) {
            None => return api_fail(op, "MISSINGPARA"),
            Some(v) => match board_objs(v) {
                Ok(objs) => BoardChange::Append(objs),
                Err(()) => return api_fail(op, "BADOBJ"),
            },
        },
        _ => return api_fail(op, "MISSINGPARA"),
    };
    match st.boards.change(gid, user, change).await {
        Ok(b) => api_reply(op, json!({"gid": gid, "version": b.version, "count": b.count})),
        Err(e) => api_fail(op, board_code(&e)),
    }
}

async fn api_getboard(st: &AppState, user: &SessionUser, p: &Map<String, Value>) -> Json<Value> {
    let Ok(Some(gid)) = n(p, "gid") else { return api_fail("getboard", "MISSINGPARA") };
    match st.boards.get(gid, user.uid.get()).await {
        Ok(b) => api_reply("getboard", json!({"gid": gid, "version": b.version, "count": b.count, "objs": b.objs})),
        Err(e) => api_fail("getboard", board_code(&e)),
    }
}

// ---------------------------------------------------------------- /backend

fn be_ok(op: &str, fields: Value, id: &Option<Value>) -> Json<Value> {
    let mut m = Map::new();
    m.insert("op".into(), json!(op));
    m.insert("result".into(), json!(true));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Json(Value::Object(m))
}

fn be_fail(op: &str, error: &str, id: &Option<Value>) -> Json<Value> {
    let mut v = json!({"op": op, "result": false, "error": error});
    if let Some(id) = id {
        v["id"] = id.clone();
    }
    Json(v)
}

fn be_code(e: &ApiError) -> &'static str {
    match e.code {
        ErrorCode::BadRequest => "BADPARA",
        ErrorCode::NotFound => "NOTFOUND",
        ErrorCode::Forbidden => "DENIED",
        ErrorCode::LimitExceeded => "LIMIT",
        ErrorCode::RateLimited => "RATELIMIT",
        ErrorCode::TooLarge => "TOOLARGE",
        _ => "FAIL",
    }
}

/// The nested object `key` if present, else the top level (legacy flat form).
fn obj<'a>(p: &'a Map<String, Value>, key: &str) -> &'a Map<String, Value> {
    match p.get(key) {
        Some(Value::Object(m)) => m,
        _ => p,
    }
}

/// `/backend`: the Mesibo backend API, authorised by the admin token.
async fn backend(State(st): State<AppState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let p = match params(&uri, &headers, &body) {
        Ok(p) => p,
        Err(_) => return be_fail("", "BADREQUEST", &None),
    };
    let id = p.get("id").cloned();
    let op = s(&p, "op").unwrap_or_default();
    if secret_in_query(&uri) {
        return be_fail(&op, TOKEN_IN_URL, &id);
    }
    let token = request_token(&p, &headers).unwrap_or_default();
    if !crate::auth_token::ct_eq(&token, &st.admin_token) {
        return be_fail(&op, "AUTHFAIL", &id);
    }
    let r = match op.as_str() {
        "useradd" | "userset" | "usertoken" => be_useradd(&st, &op, &p).await,
        "deluser" => be_deluser(&st, &p).await,
        "deltoken" => be_deltoken(&st, &p).await,
        "groupadd" | "groupset" => be_groupset(&st, &op, &p).await,
        "groupdel" => be_groupdel(&st, &p).await,
        "groupeditmembers" => be_editmembers(&st, &p).await,
        "getmembers" => be_getmembers(&st, &p).await,
        "usersget" => be_usersget(&st, &p).await,
        "groupsget" => be_groupsget(&st, &p).await,
        "message" => be_message(&st, &p).await,
        "" => Err("BADOP"),
        _ => Err("BADOP"),
    };
    match r {
        Ok(fields) => be_ok(&op, fields, &id),
        Err(code) => be_fail(&op, code, &id),
    }
}

type BeResult = Result<Value, &'static str>;

/// `useradd` (create or update, `active` defaulting to 1, a token when asked for), `userset`
/// (update an existing user's `name`/`active` only) and `usertoken` (issue a token to an
/// existing user, changing nothing else).
async fn be_useradd(st: &AppState, op: &str, p: &Map<String, Value>) -> BeResult {
    let u = obj(p, "user");
    let address = s(u, "address").or_else(|| s(p, "addr")).ok_or("MISSINGPARA")?;
    let (name, active) = if op == "usertoken" {
        (None, None)
    } else {
        let active = n(u, "active").map_err(|_| "BADPARA")?.map(|a| a != 0);
        (s(u, "name").or_else(|| s(p, "name")), if op == "useradd" { Some(active.unwrap_or(true)) } else { active })
    };
    // A token is issued when asked for: JSON `user.token {appid, expiry}` or legacy `appid`;
    // `usertoken` always issues one.
    let token_req = match u.get("token") {
        _ if op == "userset" => None,
        Some(Value::Object(t)) => Some((s(t, "appid").unwrap_or_default(), n(t, "expiry").map_err(|_| "BADPARA")?)),
        _ => s(p, "appid").map(|a| (a, n(p, "expiry").ok().flatten())),
    };
    let token_req = if op == "usertoken" { token_req.or(Some((String::new(), None))) } else { token_req };
    let token = token_req.as_ref().map(|(appid, expiry)| {
        let minutes = expiry.unwrap_or(525_600).clamp(1, 10 * 525_600) as u64;
        (appid.as_str(), minutes * 60)
    });
    let (user, token) = st
        .accounts
        .admin_upsert(&address, name.as_deref(), active, token, op == "useradd")
        .await
        .map_err(|e| if e.code == ErrorCode::NotFound { "BADUSER" } else { be_code(&e) })?;
    let mut out = json!({"uid": user.uid, "address": user.address, "name": user.name});
    if let Some(t) = token {
        out["token"] = json!(t);
    }
    Ok(json!({"user": out}))
}

async fn be_deluser(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let u = obj(p, "user");
    let address = s(u, "address").or_else(|| s(p, "addr")).ok_or("MISSINGPARA")?;
    match st.accounts.admin_delete(&address).await {
        Ok(true) => {
            // Their uploads went with the account: no kept copy may still serve them.
            st.media.forget_files();
            Ok(json!({}))
        }
        Ok(false) => Err("BADUSER"),
        Err(e) => Err(be_code(&e)),
    }
}

async fn be_deltoken(st: &AppState, p: &Map<String, Value>) -> BeResult {
    // The top-level `token` is the admin token: the user's token is `user.token`
    // (JSON) or `usertoken` (legacy form).
    let token = match p.get("user") {
        Some(Value::Object(u)) => s(u, "token"),
        _ => None,
    };
    let token = token.or_else(|| s(p, "usertoken")).ok_or("MISSINGPARA")?;
    match st.accounts.revoke(&token).await {
        Ok(true) => Ok(json!({})),
        Ok(false) => Err("BADTOKEN"),
        Err(e) => Err(be_code(&e)),
    }
}

/// Group settings from Mesibo fields: `flag`/`flags`, `callflags`, `resolution`,
/// `duration`, or legacy `sflags` = resolution << 24 | call flags.
fn be_settings(g: &Map<String, Value>) -> Result<GroupSettings, &'static str> {
    let num = |k: &str| n(g, k).map_err(|_| "BADPARA");
    let flags = num("flags")?.or(num("flag")?);
    let sflags = num("sflags")?;
    let call_flags = num("callflags")?.or(sflags.map(|v| v & 0x00FF_FFFF));
    let res = num("resolution")?.or(sflags.map(|v| (v >> 24) & 0xFF));
    let dur = num("duration")?.or(num("callduration")?);
    let u32_of = |v: Option<i64>| v.map(|x| u32::try_from(x).map_err(|_| "BADPARA")).transpose();
    let res = u32_of(res)?;
    if res.is_some_and(|r| resolution::height(r).is_none()) {
        return Err("BADPARA");
    }
    Ok(GroupSettings {
        name: s(g, "name"),
        flags: u32_of(flags)?,
        call_flags: u32_of(call_flags)?,
        video_resolution: res,
        call_duration: u32_of(dur)?,
        live: None,
        auto_record: None,
        public_viewing: None,
    })
}

/// Member flags from `cs, cr, canpub, cansub, canlist` (each defaults to 1) and `admin`.
fn be_member_flags(m: &Map<String, Value>) -> Result<(u32, u32), &'static str> {
    let bit = |k: &str, f: u32| -> Result<u32, &'static str> {
        Ok(if n(m, k).map_err(|_| "BADPARA")?.unwrap_or(1) != 0 { f } else { 0 })
    };
    let flags = bit("cs", member::SEND)?
        | bit("cr", member::RECV)?
        | bit("canpub", member::PUBLISH)?
        | bit("cansub", member::SUBSCRIBE)?
        | bit("canlist", member::LIST)?;
    let admin = n(m, "admin").map_err(|_| "BADPARA")?.unwrap_or(0) != 0;
    Ok(if admin { (flags | member::ADMIN, chorus_proto::flags::admin::ALL) } else { (flags, 0) })
}

/// `m` as a comma-separated string or an array of addresses.
fn be_addresses(m: &Map<String, Value>) -> Vec<String> {
    match m.get("m").or_else(|| m.get("members")) {
        Some(Value::String(v)) => v.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

fn be_gid(p: &Map<String, Value>) -> Result<i64, &'static str> {
    let g = obj(p, "group");
    n(g, "gid").ok().flatten().or_else(|| n(p, "gid").ok().flatten()).filter(|g| *g > 0).ok_or("MISSINGPARA")
}

async fn be_groupset(st: &AppState, op: &str, p: &Map<String, Value>) -> BeResult {
    let g = obj(p, "group");
    let settings = be_settings(g)?;
    // Check the initial members before changing anything: all or nothing.
    let members = be_addresses(g);
    let member_flags = be_member_flags(g)?;
    for a in &members {
        match st.accounts.by_address(a).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err("BADUSER"),
            Err(e) => return Err(be_code(&e)),
        }
    }
    let gid = if op == "groupadd" {
        if settings.name.is_none() {
            return Err("MISSINGPARA");
        }
        None
    } else {
        Some(be_gid(p)?)
    };
    let (flags, admin) = member_flags;
    let gid = st.groups.backend_set_group(gid, &settings, &members, flags, admin).await.map_err(|e| match e.code {
        ErrorCode::NotFound if e.message.contains("address") => "BADUSER",
        ErrorCode::NotFound => "BADGROUP",
        _ => be_code(&e),
    })?;
    Ok(json!({"group": {"gid": gid}}))
}

async fn be_groupdel(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let gid = be_gid(p)?;
    st.groups.delete(gid, Actor::Admin).await.map_err(|e| {
        if e.code == ErrorCode::NotFound {
            "BADGROUP"
        } else {
            be_code(&e)
        }
    })?;
    Ok(json!({}))
}

async fn be_editmembers(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let gid = be_gid(p)?;
    let m = match p.get("members") {
        Some(Value::Object(m)) => m,
        _ => obj(p, "group"),
    };
    let addresses = {
        let a = be_addresses(m);
        if a.is_empty() {
            be_addresses(p)
        } else {
            a
        }
    };
    if addresses.is_empty() {
        return Err("MISSINGPARA");
    }
    let delete = match (n(m, "delete"), n(p, "delete")) {
        (Err(_), _) | (_, Err(_)) => return Err("BADPARA"),
        (Ok(a), Ok(b)) => a.or(b).unwrap_or(0) != 0,
    };
    if delete {
        // Addresses that are not members are skipped, as Mesibo does.
        return match st.groups.remove_members(gid, Actor::Admin, &addresses).await {
            Ok(()) => Ok(json!({})),
            Err(e) if e.code == ErrorCode::NotFound => Err("BADGROUP"),
            Err(e) => Err(be_code(&e)),
        };
    }
    let has_perms = |o: &Map<String, Value>| {
        ["cs", "cr", "canpub", "cansub", "canlist", "admin"].iter().any(|k| o.contains_key(*k))
    };
    let (flags, admin) = be_member_flags(if has_perms(m) { m } else { p })?;
    match st.groups.add_members(gid, Actor::Admin, &addresses, flags, admin).await {
        Ok(()) => Ok(json!({})),
        Err(e) if e.code == ErrorCode::NotFound && e.message.contains("address") => Err("BADUSER"),
        Err(e) if e.code == ErrorCode::NotFound => Err("BADGROUP"),
        Err(e) => Err(be_code(&e)),
    }
}

async fn be_getmembers(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let gid = be_gid(p)?;
    let members = st.groups.members(gid, Actor::Admin).await.map_err(|e| {
        if e.code == ErrorCode::NotFound {
            "BADGROUP"
        } else {
            be_code(&e)
        }
    })?;
    let list: Vec<Value> = members
        .iter()
        .map(|m| {
            let b = |f: u32| i32::from(m.flags & f != 0);
            json!({
                "address": m.address, "name": m.name, "flags": m.flags, "adminflags": m.admin_flags,
                "cs": b(member::SEND), "cr": b(member::RECV), "canpub": b(member::PUBLISH),
                "cansub": b(member::SUBSCRIBE), "canlist": b(member::LIST), "admin": b(member::ADMIN),
            })
        })
        .collect();
    Ok(json!({"gid": gid, "count": list.len(), "members": list}))
}

/// Paging of `usersget`/`groupsget`: `count` (1 ..= 1000, default 100) and `after` (the
/// `next` of the previous page, default 0), in the op's object or at the top level.
fn be_page(o: &Map<String, Value>, p: &Map<String, Value>) -> Result<(i64, u32), &'static str> {
    let num = |k: &str| -> Result<Option<i64>, &'static str> {
        Ok(n(o, k).map_err(|_| "BADPARA")?.or(n(p, k).map_err(|_| "BADPARA")?))
    };
    let after = num("after")?.unwrap_or(0);
    let count = num("count")?.unwrap_or(100);
    if after < 0 || !(1..=i64::from(crate::accounts::ADMIN_PAGE_MAX)).contains(&count) {
        return Err("BADPARA");
    }
    Ok((after, count as u32))
}

/// `usersget`: one page of users in uid order, or the one user `address`/`addr`.
async fn be_usersget(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let u = obj(p, "user");
    let (after, count) = be_page(u, p)?;
    let address = s(u, "address").or_else(|| s(p, "addr"));
    let (users, next) = st.accounts.admin_list(after, count, address.as_deref()).await.map_err(|e| be_code(&e))?;
    if address.is_some() && users.is_empty() && after == 0 {
        return Err("BADUSER");
    }
    let list: Vec<Value> = users
        .iter()
        .map(|u| {
            json!({"uid": u.uid, "address": u.address, "name": u.name, "active": i32::from(u.active),
                   "created": u.created_at / 1000})
        })
        .collect();
    let mut out = json!({"count": list.len(), "users": list});
    if let Some(next) = next {
        out["next"] = json!(next);
    }
    Ok(out)
}

/// `groupsget`: one page of all groups in gid order, or the one group `gid`.
async fn be_groupsget(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let g = obj(p, "group");
    let (after, count) = be_page(g, p)?;
    let gid = n(g, "gid").map_err(|_| "BADPARA")?.or(n(p, "gid").map_err(|_| "BADPARA")?);
    if gid.is_some_and(|g| g <= 0) {
        return Err("BADPARA");
    }
    let (groups, next) = st.groups.admin_list(after, count, gid).await.map_err(|e| be_code(&e))?;
    if gid.is_some() && groups.is_empty() && after == 0 {
        return Err("BADGROUP");
    }
    let list: Vec<Value> = groups
        .iter()
        .map(|(g, members)| {
            json!({"gid": g.gid, "name": g.name, "flags": g.flags, "callflags": g.call_flags,
                   "resolution": g.video_resolution, "duration": g.call_duration, "owner": g.owner,
                   "members": members, "created": g.created_at / 1000})
        })
        .collect();
    let mut out = json!({"count": list.len(), "groups": list});
    if let Some(next) = next {
        out["next"] = json!(next);
    }
    Ok(out)
}

async fn be_message(st: &AppState, p: &Map<String, Value>) -> BeResult {
    let m = obj(p, "message");
    let from = s(m, "from").ok_or("MISSINGPARA")?;
    let sender = st.accounts.by_address(&from).await.map_err(|e| be_code(&e))?.ok_or("BADUSER")?;
    let text = s(m, "message").or_else(|| s(m, "msg"));
    let file = s(m, "url").map(|url| chorus_proto::ws::FileRef {
        url,
        upload: None,
        thumbnail: None,
        name: s(m, "title"),
        mime: None,
        size: None,
        filetype: None,
    });
    let data = m.get("data").cloned().filter(|d| !d.is_null());
    let mtype = n(m, "type").map_err(|_| "BADPARA")?.unwrap_or(0);
    let mtype = u32::try_from(mtype).map_err(|_| "BADPARA")?;
    let content = Content { text, data, file };
    let gid = n(m, "gid").map_err(|_| "BADPARA")?.filter(|g| *g > 0);
    let targets: Vec<Target> = match gid {
        Some(g) => vec![Target::Group(g)],
        None => s(m, "to")
            .ok_or("MISSINGPARA")?
            .split(',')
            .map(|a| Target::Peer(a.trim().to_string()))
            .filter(|t| t != &Target::Peer(String::new()))
            .collect(),
    };
    if targets.is_empty() {
        return Err("MISSINGPARA");
    }
    // Every recipient must exist before anything is sent.
    for t in &targets {
        if let Target::Peer(a) = t {
            match st.accounts.by_address(a).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("BADUSER"),
                Err(e) => return Err(be_code(&e)),
            }
        }
    }
    let mut mids = Vec::new();
    // With a request `id`, the message ids derive from it, so a retried request
    // stores nothing twice; without one, every request is new.
    let request_key = match p.get("id") {
        Some(Value::String(v)) if !v.is_empty() && v.len() <= 40 => v.clone(),
        Some(Value::Number(v)) => v.to_string(),
        _ => random_hex(8),
    };
    for (i, t) in targets.iter().enumerate() {
        let client_id = format!("backend-{request_key}-{i}");
        let info =
            st.messaging.send(&sender, t, &client_id, mtype, &content, 0).await.map_err(|e| match (e.code, t) {
                (ErrorCode::NotFound, Target::Group(_)) => "BADGROUP",
                (ErrorCode::NotFound, Target::Peer(_)) => "BADUSER",
                _ => be_code(&e),
            })?;
        mids.push(info.mid);
    }
    Ok(json!({"mid": mids[0], "mids": mids}))
}
