//! The Mesibo-compatible endpoints: `/api` (the conferencing demo backend) and
//! `/backend` (the admin backend API), as a Mesibo integration sees them.

mod common;

use common::{Backend, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn body(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 200, "Mesibo endpoints always answer 200");
    let text = r.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `/api` by GET with query parameters.
async fn api_get(s: &Server, q: &[(&str, &str)]) -> Value {
    body(client().get(format!("{}/api", s.base)).query(q).send().await.expect("GET /api")).await
}

/// `/api` by GET with query parameters and the token in `Authorization: Bearer` (tokens are
/// refused in query strings).
async fn api_get_auth(s: &Server, token: &str, q: &[(&str, &str)]) -> Value {
    body(client().get(format!("{}/api", s.base)).bearer_auth(token).query(q).send().await.expect("GET /api")).await
}

/// `/api` by POST with a form body.
async fn api_form(s: &Server, f: &[(&str, &str)]) -> Value {
    body(client().post(format!("{}/api", s.base)).form(f).send().await.expect("POST /api")).await
}

/// `/api` by POST with a JSON body.
async fn api_json(s: &Server, v: Value) -> Value {
    body(client().post(format!("{}/api", s.base)).json(&v).send().await.expect("POST /api")).await
}

/// `/backend` by POST with a JSON body.
async fn be(s: &Server, v: Value) -> Value {
    body(client().post(format!("{}/backend", s.base)).json(&v).send().await.expect("POST /backend")).await
}

/// `/backend` by POST with a legacy form body.
async fn be_form(s: &Server, f: &[(&str, &str)]) -> Value {
    body(client().post(format!("{}/backend", s.base)).form(f).send().await.expect("POST /backend")).await
}

/// `/backend/` by GET with a legacy query and the admin token in `Authorization: Bearer`.
async fn be_get_auth(s: &Server, token: &str, q: &[(&str, &str)]) -> Value {
    body(client().get(format!("{}/backend/", s.base)).bearer_auth(token).query(q).send().await.expect("GET /backend/"))
        .await
}

/// A REST call with a bearer token: status and JSON body (Null when empty).
async fn rest_get(s: &Server, path: &str, token: &str) -> (u16, Value) {
    let r = client().get(format!("{}{path}", s.base)).bearer_auth(token).send().await.expect("REST GET");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Checks `ts` is the server time in seconds, and removes it so the rest can be compared exactly.
fn take_ts(v: &mut Value) {
    let ts = v.as_object_mut().expect("object").remove("ts").unwrap_or_else(|| panic!("no ts in {v}"));
    let ts = ts.as_i64().unwrap_or_else(|| panic!("ts is not an integer: {ts}"));
    assert!((ts - now_secs()).abs() <= 5, "ts {ts} is not now in seconds ({})", now_secs());
}

/// An `/api` failure: exactly `{op, ts, result: "FAIL", error}`.
#[track_caller]
fn assert_api_fail(mut v: Value, op: &str, error: &str) {
    take_ts(&mut v);
    assert_eq!(v, json!({"op": op, "result": "FAIL", "error": error}));
}

/// A `/backend` failure: exactly `{op, result: false, error}`.
#[track_caller]
fn assert_be_fail(v: Value, op: &str, error: &str) {
    assert_eq!(v, json!({"op": op, "result": false, "error": error}));
}

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(v["result"], json!("OK"), "{v}");
    assert!(v.get("error").is_none(), "{v}");
}

#[track_caller]
fn assert_true(v: &Value) {
    assert_eq!(v["result"], json!(true), "{v}");
    assert!(v.get("error").is_none(), "{v}");
}

/// A pin as text: Mesibo pins are numbers, sent as a string of digits or a number.
#[track_caller]
fn pin_of(v: &Value) -> String {
    let p = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("pin is not numeric: {other}"),
    };
    assert!(p.len() >= 8 && p.bytes().all(|b| b.is_ascii_digit()), "pin {p:?} is not 8+ digits");
    p
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

/// Logs in through `/api` (both steps); returns (token, address, uid).
async fn api_user(s: &Server, email: &str, name: &str) -> (String, String, i64) {
    let r = api_get(s, &[("op", "login"), ("appid", "com.test"), ("name", name), ("email", email)]).await;
    assert_ok(&r);
    let code = s.code_for(email);
    let r =
        api_form(s, &[("op", "login"), ("appid", "com.test"), ("name", name), ("email", email), ("code", &code)]).await;
    assert_ok(&r);
    (r["token"].as_str().unwrap().to_string(), r["address"].as_str().unwrap().to_string(), r["uid"].as_i64().unwrap())
}

/// Creates a user through `/backend` with a token; returns (uid, token).
async fn be_user(s: &Server, address: &str, name: &str) -> (i64, String) {
    let r = be(
        s,
        json!({"op": "useradd", "token": ADMIN_TOKEN,
               "user": {"address": address, "name": name, "token": {"appid": "com.x", "expiry": 525600}}}),
    )
    .await;
    assert_true(&r);
    (r["user"]["uid"].as_i64().expect("uid"), r["user"]["token"].as_str().expect("token").to_string())
}

/// The member entry for `address` in a `getmembers` reply.
fn member<'a>(r: &'a Value, address: &str) -> Option<&'a Value> {
    r["members"].as_array().expect("members[]").iter().find(|m| m["address"] == json!(address))
}

// ---------------------------------------------------------------- /api

async fn api_noop_and_badop(b: Backend) {
    let s = Server::start(b).await;
    // No op: the health check reply, exactly.
    assert_eq!(api_get(&s, &[]).await, json!({"code": "NOOP", "result": "FAIL"}));
    assert_eq!(api_form(&s, &[("name", "x")]).await, json!({"code": "NOOP", "result": "FAIL"}));
    assert_eq!(api_json(&s, json!({})).await, json!({"code": "NOOP", "result": "FAIL"}));
    // /api.php is the same endpoint.
    let r = body(client().get(format!("{}/api.php", s.base)).send().await.unwrap()).await;
    assert_eq!(r, json!({"code": "NOOP", "result": "FAIL"}));
    // Unknown op.
    assert_api_fail(api_get(&s, &[("op", "frobnicate")]).await, "frobnicate", "BADOP");
    assert_api_fail(api_json(&s, json!({"op": "upload2"})).await, "upload2", "BADOP");
}

async fn api_login(b: Backend) {
    let s = Server::start(b).await;
    // Step 1 by GET query.
    let mut r =
        api_get(&s, &[("op", "login"), ("appid", "com.test"), ("name", "Ann"), ("email", "Ann@Example.org")]).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "login", "result": "OK"}));
    let code = s.code_for("ann@example.org");
    assert!(code.len() == 6 && code.bytes().all(|c| c.is_ascii_digit()), "code {code:?}");

    // Step 1 errors.
    assert_api_fail(api_get(&s, &[("op", "login"), ("email", "bob@example.org")]).await, "login", "MISSINGNAME");
    assert_api_fail(
        api_get(&s, &[("op", "login"), ("email", "bob@example.org"), ("name", "  ")]).await,
        "login",
        "MISSINGNAME",
    );
    assert_api_fail(api_get(&s, &[("op", "login"), ("name", "Bob")]).await, "login", "MISSINGEMAIL");
    assert_api_fail(api_get(&s, &[("op", "login"), ("name", "Bob"), ("email", "")]).await, "login", "MISSINGEMAIL");
    assert_api_fail(
        api_get(&s, &[("op", "login"), ("name", "Bob"), ("email", "not-an-email")]).await,
        "login",
        "BADEMAIL",
    );
    assert_api_fail(api_form(&s, &[("op", "login"), ("name", "Bob"), ("email", "a@b@c")]).await, "login", "BADEMAIL");

    // Step 2 with a wrong code.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = api_form(
        &s,
        &[("op", "login"), ("appid", "com.test"), ("name", "Ann"), ("email", "ann@example.org"), ("code", wrong)],
    )
    .await;
    assert_api_fail(r, "login", "BADCODE");

    // Step 2 with the right code (POST form).
    let mut r = api_form(
        &s,
        &[("op", "login"), ("appid", "com.test"), ("name", "Ann"), ("email", "ann@example.org"), ("code", &code)],
    )
    .await;
    take_ts(&mut r);
    assert_eq!(sorted_keys(&r), ["address", "name", "op", "result", "token", "uid"], "{r}");
    assert_eq!(r["op"], json!("login"));
    assert_eq!(r["result"], json!("OK"));
    assert_eq!(r["name"], json!("Ann"));
    let token = r["token"].as_str().expect("token string").to_string();
    assert!(token.len() > 16, "token longer than 16 characters");
    let address = r["address"].as_str().expect("address string").to_string();
    assert!(!address.is_empty());
    assert_ne!(address.to_lowercase(), "ann@example.org");
    assert!(!address.contains('@'), "the address does not expose the email: {address}");
    let uid = r["uid"].as_i64().expect("numeric uid");
    assert!(uid > 0);
    // The token is a real session.
    let (st, me) = rest_get(&s, "/v1/me", &token).await;
    assert_eq!(st, 200);
    assert_eq!(me, json!({"uid": uid, "address": address, "name": "Ann"}));

    // A used code does not work twice.
    let r = api_form(&s, &[("op", "login"), ("name", "Ann"), ("email", "ann@example.org"), ("code", &code)]).await;
    assert_api_fail(r, "login", "BADCODE");

    // Logging in again (JSON body) is the same user, with a new token.
    api_json(&s, json!({"op": "login", "name": "Ann B", "email": "ann@example.org"})).await;
    let code2 = s.code_for("ann@example.org");
    let r = api_json(&s, json!({"op": "login", "name": "Ann B", "email": "ann@example.org", "code": code2})).await;
    assert_ok(&r);
    assert_eq!(r["uid"], json!(uid));
    assert_eq!(r["address"], json!(address));
    assert_eq!(r["name"], json!("Ann B"));
    assert_ne!(r["token"], json!(token));
}

async fn api_login_phone(b: Backend) {
    let s = Server::start(b).await;
    // Step 1: the messenger demo's JSON body.
    let mut r = api_json(
        &s,
        json!({"op": "login", "appid": "com.mesibo.firstapp", "name": "Pat", "phone": "+1 555 123 4567", "dt": 5}),
    )
    .await;
    take_ts(&mut r);
    assert_eq!(r["op"], json!("login"));
    assert_eq!(r["result"], json!("OK"));
    assert_eq!(r["delay"], json!(2000));
    assert!(r["title"].is_string() && r["message"].is_string(), "{r}");
    assert!(r.get("error").is_none());
    // The code went out as a text message, not as mail.
    let files: Vec<String> =
        std::fs::read_dir(s.outbox()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".sms"), "{files:?}");
    let code = s.code_for("+15551234567");

    // Wrong otp.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = api_json(
        &s,
        json!({"op": "login", "appid": "com.mesibo.firstapp", "name": "Pat", "phone": "+1 555 123 4567", "otp": wrong}),
    )
    .await;
    assert_api_fail(r, "login", "BADCODE");

    // Step 2 with `otp`.
    let r = api_json(
        &s,
        json!({"op": "login", "appid": "com.mesibo.firstapp", "name": "Pat", "phone": "+1 555 123 4567", "otp": code, "dt": 5}),
    )
    .await;
    assert_ok(&r);
    assert_eq!(r["phone"], json!("15551234567"), "digits only");
    assert_eq!(r["name"], json!("Pat"));
    let token = r["token"].as_str().expect("token").to_string();
    let address = r["address"].as_str().expect("address").to_string();
    assert!(!address.contains("5551234567"), "the address does not expose the phone: {address}");
    let (st, me) = rest_get(&s, "/v1/me", &token).await;
    assert_eq!(st, 200);
    assert_eq!(me["address"], json!(address));
    assert_eq!(me["name"], json!("Pat"));

    // Too short (fewer than 9 digits) or not a number.
    let r =
        api_json(&s, json!({"op": "login", "appid": "com.mesibo.firstapp", "name": "Pat", "phone": "+1 555 12"})).await;
    assert_api_fail(r, "login", "BADPHONE");
    let r = api_json(&s, json!({"op": "login", "name": "Pat", "phone": "call me maybe"})).await;
    assert_api_fail(r, "login", "BADPHONE");
    // No text message was sent for those.
    let sms = std::fs::read_dir(s.outbox())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".sms"))
        .count();
    assert_eq!(sms, 1);
}

async fn api_rooms_lifecycle(b: Backend) {
    let s = Server::start(b).await;
    let (owner, _owner_addr, owner_uid) = api_user(&s, "owner@example.org", "Olga").await;
    let (pub_tok, _, _) = api_user(&s, "pub@example.org", "Paul").await;
    let (sub_tok, _, _) = api_user(&s, "sub@example.org", "Sue").await;
    let (other, _, _) = api_user(&s, "other@example.org", "Otto").await;

    // Authorisation and parameters.
    assert_api_fail(api_form(&s, &[("op", "setgroup"), ("name", "Standup")]).await, "setgroup", "AUTHFAIL");
    let bad = "x".repeat(40);
    assert_api_fail(
        api_form(&s, &[("op", "setgroup"), ("token", &bad), ("name", "Standup")]).await,
        "setgroup",
        "AUTHFAIL",
    );
    assert_api_fail(api_form(&s, &[("op", "setgroup"), ("token", &owner)]).await, "setgroup", "MISSINGPARA");
    assert_api_fail(api_get_auth(&s, &bad, &[("op", "rooms")]).await, "rooms", "AUTHFAIL");
    assert_api_fail(
        api_get(&s, &[("op", "joingroup"), ("gid", "1000"), ("pin", "12345678")]).await,
        "joingroup",
        "AUTHFAIL",
    );
    assert_api_fail(api_get_auth(&s, "short", &[("op", "delgroup")]).await, "delgroup", "AUTHFAIL");

    // Create (no gid).
    let mut r =
        api_form(&s, &[("op", "setgroup"), ("token", &owner), ("name", "Standup"), ("resolution", "2"), ("type", "1")])
            .await;
    take_ts(&mut r);
    assert_eq!(sorted_keys(&r), ["gid", "name", "op", "pin", "publish", "resolution", "result", "spin", "type"], "{r}");
    assert_eq!((&r["op"], &r["result"]), (&json!("setgroup"), &json!("OK")));
    let gid = r["gid"].as_i64().expect("numeric gid");
    assert!(gid >= 1000, "gid {gid}");
    assert_eq!(r["name"], json!("Standup"));
    assert_eq!(r["type"], json!(1));
    assert_eq!(r["resolution"], json!(2));
    assert_eq!(r["publish"], json!(1));
    let pin = pin_of(&r["pin"]);
    let spin = pin_of(&r["spin"]);
    assert_ne!(pin, spin);
    let gids = gid.to_string();

    // Create with gid=0 (GET query) is a create too.
    let r2 = api_get_auth(&s, &owner, &[("op", "setgroup"), ("name", "Second"), ("gid", "0")]).await;
    assert_ok(&r2);
    let gid2 = r2["gid"].as_i64().unwrap();
    assert!(gid2 >= 1000 && gid2 != gid);
    assert_eq!(r2["resolution"], json!(0));
    assert_eq!(r2["type"], json!(0));
    assert_ne!(pin_of(&r2["pin"]), pin);

    // Join with the publisher pin.
    let mut r = api_form(&s, &[("op", "joingroup"), ("token", &pub_tok), ("gid", &gids), ("pin", &pin)]).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "joingroup", "result": "OK", "gid": gid, "name": "Standup", "type": 1, "publish": 1}));
    // Join with the view-only pin.
    let mut r = api_json(&s, json!({"op": "joingroup", "token": sub_tok, "gid": gid, "pin": spin})).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "joingroup", "result": "OK", "gid": gid, "name": "Standup", "type": 1, "publish": 0}));

    // The rights are real.
    let (st, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &sub_tok).await;
    assert_eq!(st, 200, "{g}");
    let flags = g["membership"]["flags"].as_u64().expect("membership.flags");
    assert_eq!(flags & 0x4, 0, "no publish with the spin: {flags:#x}");
    assert_eq!(flags & 0x8, 0x8, "subscribe with the spin: {flags:#x}");
    assert_eq!(flags, 0x1B, "cs, cr, cansub, canlist: {flags:#x}");
    let (st, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &pub_tok).await;
    assert_eq!(st, 200, "{g}");
    let flags = g["membership"]["flags"].as_u64().expect("membership.flags");
    assert_eq!(flags & 0x4, 0x4, "publish with the pin: {flags:#x}");
    assert_eq!(flags, 0x1F, "cs, cr, canpub, cansub, canlist: {flags:#x}");
    assert_eq!(g["video_resolution"], json!(2));

    // Join errors.
    let wrong = ["00000000", "11111111", "22222222"].into_iter().find(|w| *w != pin && *w != spin).unwrap();
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", &gids), ("pin", wrong)]).await,
        "joingroup",
        "BADGROUP",
    );
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", &gids), ("pin", "12")]).await,
        "joingroup",
        "BADGROUP",
    );
    // A pin of another room does not open this one.
    let pin2 = pin_of(&r2["pin"]);
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", &gids), ("pin", &pin2)]).await,
        "joingroup",
        "BADGROUP",
    );
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("pin", &pin)]).await,
        "joingroup",
        "MISSINGPARA",
    );
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", "0"), ("pin", &pin)]).await,
        "joingroup",
        "MISSINGPARA",
    );
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", &gids)]).await,
        "joingroup",
        "MISSINGPARA",
    );
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", "98765432"), ("pin", &pin)]).await,
        "joingroup",
        "BADGROUP",
    );
    let (st, _) = rest_get(&s, &format!("/v1/groups/{gid}"), &other).await;
    assert_eq!(st, 404, "wrong pins let nobody in");

    // The owner needs no pin and gets both.
    let mut r = api_form(&s, &[("op", "joingroup"), ("token", &owner), ("gid", &gids)]).await;
    take_ts(&mut r);
    assert_eq!(
        r,
        json!({"op": "joingroup", "result": "OK", "gid": gid, "name": "Standup", "type": 1, "publish": 1, "pin": pin, "spin": spin})
    );

    // rooms: the owner sees both pins, others only theirs.
    let mut r = api_get_auth(&s, &owner, &[("op", "rooms")]).await;
    take_ts(&mut r);
    assert_eq!((&r["op"], &r["result"], &r["count"]), (&json!("rooms"), &json!("OK"), &json!(2)), "{r}");
    let rooms = r["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 2);
    let mine = rooms.iter().find(|x| x["gid"] == json!(gid)).expect("room listed");
    assert_eq!(mine["name"], json!("Standup"));
    assert_eq!(mine["uid"], json!(owner_uid));
    assert_eq!(pin_of(&mine["pin"]), pin);
    assert_eq!(pin_of(&mine["spin"]), spin);
    assert_eq!((&rooms[0]["gid"], &rooms[0]["name"]), (&json!(gid2), &json!("Second")), "newest first");

    let r = api_get_auth(&s, &pub_tok, &[("op", "rooms")]).await;
    assert_ok(&r);
    assert_eq!(r["count"], json!(1));
    let room = &r["rooms"][0];
    assert_eq!((&room["gid"], &room["name"], &room["uid"]), (&json!(gid), &json!("Standup"), &json!(owner_uid)));
    assert_eq!(pin_of(&room["pin"]), pin);
    assert!(room.get("spin").is_none(), "spin only for the owner: {room}");

    let r = api_get_auth(&s, &sub_tok, &[("op", "rooms")]).await;
    assert_ok(&r);
    assert_eq!(r["count"], json!(1));
    let room = &r["rooms"][0];
    assert_eq!(room["gid"], json!(gid));
    assert_eq!(pin_of(&room["pin"]), spin, "a viewer's pin is the view-only one");
    assert!(room.get("spin").is_none(), "spin only for the owner: {room}");

    let r = api_get_auth(&s, &other, &[("op", "rooms")]).await;
    assert_ok(&r);
    assert_eq!((&r["count"], &r["rooms"]), (&json!(0), &json!([])));

    // Update: only the owner.
    for tok in [&pub_tok, &sub_tok, &other] {
        let r = api_form(&s, &[("op", "setgroup"), ("token", tok), ("gid", &gids), ("name", "Retro")]).await;
        assert_api_fail(r, "setgroup", "BADGROUP");
    }
    let r = api_form(&s, &[("op", "setgroup"), ("token", &pub_tok), ("gid", "98765432"), ("name", "Retro")]).await;
    assert_api_fail(r, "setgroup", "BADGROUP");
    let (_, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &pub_tok).await;
    assert_eq!(g["name"], json!("Standup"), "failed updates changed nothing");
    let mut r = api_form(
        &s,
        &[("op", "setgroup"), ("token", &owner), ("gid", &gids), ("name", "Retro"), ("type", "1"), ("resolution", "2")],
    )
    .await;
    take_ts(&mut r);
    assert_eq!(
        r,
        json!({"op": "setgroup", "result": "OK", "gid": gid, "name": "Retro", "type": 1, "resolution": 2, "publish": 1, "pin": pin, "spin": spin})
    );
    let (_, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &sub_tok).await;
    assert_eq!(g["name"], json!("Retro"));
    // A partial update changes only what it names.
    let mut r = api_form(&s, &[("op", "setgroup"), ("token", &owner), ("gid", &gids), ("name", "Retro 2")]).await;
    take_ts(&mut r);
    assert_eq!(
        r,
        json!({"op": "setgroup", "result": "OK", "gid": gid, "name": "Retro 2", "type": 1, "resolution": 2, "publish": 1, "pin": pin, "spin": spin})
    );

    // Delete: only the owner.
    for tok in [&pub_tok, &sub_tok, &other] {
        assert_api_fail(
            api_form(&s, &[("op", "delgroup"), ("token", tok), ("gid", &gids)]).await,
            "delgroup",
            "BADGROUP",
        );
    }
    assert_api_fail(api_form(&s, &[("op", "delgroup"), ("token", &owner)]).await, "delgroup", "MISSINGPARA");
    assert_api_fail(
        api_form(&s, &[("op", "delgroup"), ("token", &owner), ("gid", "98765432")]).await,
        "delgroup",
        "BADGROUP",
    );
    let (st, _) = rest_get(&s, &format!("/v1/groups/{gid}"), &pub_tok).await;
    assert_eq!(st, 200, "still there");
    let mut r = api_form(&s, &[("op", "delgroup"), ("token", &owner), ("gid", &gids)]).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "delgroup", "result": "OK", "gid": gid}));
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &other), ("gid", &gids), ("pin", &pin)]).await,
        "joingroup",
        "BADGROUP",
    );
    assert_api_fail(
        api_form(&s, &[("op", "joingroup"), ("token", &owner), ("gid", &gids)]).await,
        "joingroup",
        "BADGROUP",
    );
    assert_api_fail(
        api_form(&s, &[("op", "delgroup"), ("token", &owner), ("gid", &gids)]).await,
        "delgroup",
        "BADGROUP",
    );
    let (st, _) = rest_get(&s, &format!("/v1/groups/{gid}"), &pub_tok).await;
    assert_eq!(st, 404);
    let r = api_get_auth(&s, &owner, &[("op", "rooms")]).await;
    assert_eq!(r["count"], json!(1));
    assert_eq!(r["rooms"][0]["gid"], json!(gid2));
}

async fn api_logout(b: Backend) {
    let s = Server::start(b).await;
    let (token, _, _) = api_user(&s, "ann@example.org", "Ann").await;
    let (keep, _, _) = api_user(&s, "ann@example.org", "Ann").await;
    assert_eq!(rest_get(&s, "/v1/me", &token).await.0, 200);
    let mut r = api_form(&s, &[("op", "logout"), ("token", &token)]).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "logout", "result": "OK"}));
    assert_eq!(rest_get(&s, "/v1/me", &token).await.0, 401);
    assert_api_fail(api_get_auth(&s, &token, &[("op", "rooms")]).await, "rooms", "AUTHFAIL");
    // Only that token.
    assert_eq!(rest_get(&s, "/v1/me", &keep).await.0, 200);
    // A bad token, or none, still logs out fine.
    let mut r = api_form(&s, &[("op", "logout"), ("token", &"y".repeat(40))]).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "logout", "result": "OK"}));
    let mut r = api_get(&s, &[("op", "logout")]).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "logout", "result": "OK"}));
    let mut r = api_json(&s, json!({"op": "logout", "token": token})).await;
    take_ts(&mut r);
    assert_eq!(r, json!({"op": "logout", "result": "OK"}));
    assert_eq!(rest_get(&s, "/v1/me", &keep).await.0, 200);
}

// ---------------------------------------------------------------- /backend

async fn backend_protocol(b: Backend) {
    let s = Server::start(b).await;
    // Wrong or missing app token.
    let r = be(&s, json!({"op": "useradd", "token": "wrong-token", "user": {"address": "alice"}})).await;
    assert_be_fail(r, "useradd", "AUTHFAIL");
    let r = be(&s, json!({"op": "useradd", "user": {"address": "alice"}})).await;
    assert_be_fail(r, "useradd", "AUTHFAIL");
    let r = be_get_auth(&s, "x", &[("op", "getmembers"), ("gid", "1000")]).await;
    assert_be_fail(r, "getmembers", "AUTHFAIL");
    let r =
        be_form(&s, &[("op", "useradd"), ("token", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]), ("addr", "alice")]).await;
    assert_be_fail(r, "useradd", "AUTHFAIL");
    // Nothing was created by those.
    let r = be(&s, json!({"op": "deluser", "token": ADMIN_TOKEN, "user": {"address": "alice"}})).await;
    assert_be_fail(r, "deluser", "BADUSER");
    // The request id is echoed, success or not.
    let r = be(&s, json!({"op": "useradd", "token": "wrong", "id": 42})).await;
    assert_eq!(r, json!({"op": "useradd", "result": false, "error": "AUTHFAIL", "id": 42}));
    let r = be(&s, json!({"op": "frobnicate", "token": ADMIN_TOKEN, "id": "req-7"})).await;
    assert_eq!(r, json!({"op": "frobnicate", "result": false, "error": "BADOP", "id": "req-7"}));
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "id": 9, "user": {"address": "alice"}})).await;
    assert_true(&r);
    assert_eq!((&r["op"], &r["id"], &r["user"]["address"]), (&json!("useradd"), &json!(9), &json!("alice")));
    let r = be_get_auth(&s, ADMIN_TOKEN, &[("op", "bogus"), ("id", "abc")]).await;
    assert_eq!(r, json!({"op": "bogus", "result": false, "error": "BADOP", "id": "abc"}));
    // Unknown or missing op.
    assert_be_fail(be(&s, json!({"op": "frobnicate", "token": ADMIN_TOKEN})).await, "frobnicate", "BADOP");
    assert_be_fail(be(&s, json!({"token": ADMIN_TOKEN})).await, "", "BADOP");
    // A body that is not JSON.
    let r = body(
        client()
            .post(format!("{}/backend", s.base))
            .header("content-type", "application/json")
            .body("{this is not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["result"], json!(false), "{r}");
    assert_eq!(r["error"], json!("BADREQUEST"), "{r}");
    let r = body(
        client()
            .post(format!("{}/backend", s.base))
            .header("content-type", "application/json")
            .body("[1,2,3]")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((&r["result"], &r["error"]), (&json!(false), &json!("BADREQUEST")), "{r}");
}

async fn backend_users(b: Backend) {
    let s = Server::start(b).await;
    // JSON useradd with a token.
    let r = be(
        &s,
        json!({"op": "useradd", "token": ADMIN_TOKEN,
               "user": {"address": "alice", "name": "Alice", "token": {"appid": "com.x", "expiry": 525600}}}),
    )
    .await;
    assert_eq!((&r["op"], &r["result"]), (&json!("useradd"), &json!(true)), "{r}");
    assert!(r.get("error").is_none());
    let uid = r["user"]["uid"].as_i64().expect("numeric uid");
    assert!(uid > 0);
    assert_eq!(r["user"]["address"], json!("alice"));
    let t1 = r["user"]["token"].as_str().expect("token string").to_string();
    assert!(t1.len() > 16);
    let (st, me) = rest_get(&s, "/v1/me", &t1).await;
    assert_eq!(st, 200);
    assert_eq!(me, json!({"uid": uid, "address": "alice", "name": "Alice"}));

    // Same op again: same user, a new token; the name can change.
    let r = be(
        &s,
        json!({"op": "useradd", "token": ADMIN_TOKEN,
               "user": {"address": "alice", "name": "Alice B", "token": {"appid": "com.x", "expiry": 60}}}),
    )
    .await;
    assert_true(&r);
    assert_eq!(r["user"]["uid"], json!(uid));
    let t2 = r["user"]["token"].as_str().expect("token").to_string();
    assert_ne!(t1, t2);
    let (st, me) = rest_get(&s, "/v1/me", &t2).await;
    assert_eq!((st, &me["name"]), (200, &json!("Alice B")));

    // Without user.token: no token.
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"address": "carol", "name": "Carol"}})).await;
    assert_true(&r);
    assert_eq!(r["user"]["address"], json!("carol"));
    assert!(r["user"]["uid"].as_i64().is_some());
    assert!(r["user"].get("token").is_none(), "no token asked for: {r}");

    // Legacy form: addr + appid issues a token.
    let r = be_form(&s, &[("op", "useradd"), ("addr", "bob"), ("appid", "x"), ("token", ADMIN_TOKEN)]).await;
    assert_true(&r);
    assert_eq!(r["op"], json!("useradd"));
    assert_eq!(r["user"]["address"], json!("bob"));
    let tb = r["user"]["token"].as_str().expect("legacy token").to_string();
    let (st, me) = rest_get(&s, "/v1/me", &tb).await;
    assert_eq!((st, &me["address"]), (200, &json!("bob")));
    // Legacy query string.
    let r =
        be_get_auth(&s, ADMIN_TOKEN, &[("op", "useradd"), ("addr", "dave"), ("name", "Dave"), ("appid", "x")]).await;
    assert_true(&r);
    let td = r["user"]["token"].as_str().expect("legacy token").to_string();
    let (st, me) = rest_get(&s, "/v1/me", &td).await;
    assert_eq!((st, &me["address"], &me["name"]), (200, &json!("dave"), &json!("Dave")));

    // Bad input.
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"address": "bad addr", "name": "X"}})).await;
    assert_be_fail(r, "useradd", "BADPARA");
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"address": "x".repeat(64)}})).await;
    assert_be_fail(r, "useradd", "BADPARA");
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"name": "Nobody"}})).await;
    assert_be_fail(r, "useradd", "MISSINGPARA");

    // deltoken: that token stops working, others do not.
    let r = be(&s, json!({"op": "deltoken", "token": ADMIN_TOKEN, "user": {"token": t1}})).await;
    assert_eq!(r, json!({"op": "deltoken", "result": true}));
    assert_eq!(rest_get(&s, "/v1/me", &t1).await.0, 401);
    assert_eq!(rest_get(&s, "/v1/me", &t2).await.0, 200);
    let r = be(&s, json!({"op": "deltoken", "token": ADMIN_TOKEN, "user": {"token": t1}})).await;
    assert_be_fail(r, "deltoken", "BADTOKEN");

    // deluser: the user and its tokens are gone.
    let r = be(&s, json!({"op": "deluser", "token": ADMIN_TOKEN, "user": {"address": "alice"}})).await;
    assert_eq!(r, json!({"op": "deluser", "result": true}));
    assert_eq!(rest_get(&s, "/v1/me", &t2).await.0, 401);
    let r = be(&s, json!({"op": "deluser", "token": ADMIN_TOKEN, "user": {"address": "alice"}})).await;
    assert_be_fail(r, "deluser", "BADUSER");
    // Legacy deluser by addr.
    let r = be_form(&s, &[("op", "deluser"), ("addr", "bob"), ("token", ADMIN_TOKEN)]).await;
    assert_eq!(r, json!({"op": "deluser", "result": true}));
    assert_eq!(rest_get(&s, "/v1/me", &tb).await.0, 401);
    assert_eq!(rest_get(&s, "/v1/me", &td).await.0, 200);
    // The address can be used again: a new user.
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"address": "alice"}})).await;
    assert_true(&r);
    assert_ne!(r["user"]["uid"], json!(uid));
}

/// `userset` changes an existing user's name or active state and nothing else; `usertoken`
/// issues a token to an existing user and changes nothing else; both answer `BADUSER` for an
/// unknown address and create nobody.
async fn backend_userset_and_usertoken(b: Backend) {
    let s = Server::start(b).await;
    let r = be(&s, json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"address": "alice", "name": "Alice"}})).await;
    assert_true(&r);
    let uid = r["user"]["uid"].as_i64().unwrap();

    // usertoken (JSON): a working token, the name unchanged.
    let r = be(
        &s,
        json!({"op": "usertoken", "token": ADMIN_TOKEN, "user": {"address": "alice", "token": {"appid": "com.x", "expiry": 60}}}),
    )
    .await;
    assert_true(&r);
    assert_eq!((&r["op"], &r["user"]["uid"], &r["user"]["name"]), (&json!("usertoken"), &json!(uid), &json!("Alice")));
    let t1 = r["user"]["token"].as_str().expect("a token").to_string();
    let (st, me) = rest_get(&s, "/v1/me", &t1).await;
    assert_eq!((st, &me["name"]), (200, &json!("Alice")));
    // Without token parameters (legacy form): still a token, default lifetime.
    let r = be_form(&s, &[("op", "usertoken"), ("addr", "alice"), ("token", ADMIN_TOKEN)]).await;
    assert_true(&r);
    let t2 = r["user"]["token"].as_str().expect("a legacy token").to_string();
    assert_ne!(t1, t2);
    assert_eq!(rest_get(&s, "/v1/me", &t2).await.0, 200);

    // userset: the name changes, no token is issued, the tokens keep working.
    let r = be(&s, json!({"op": "userset", "token": ADMIN_TOKEN, "user": {"address": "alice", "name": "Alice C", "token": {"appid": "x"}}})).await;
    assert_true(&r);
    assert_eq!(r["user"], json!({"uid": uid, "address": "alice", "name": "Alice C"}), "no token from userset");
    let (st, me) = rest_get(&s, "/v1/me", &t1).await;
    assert_eq!((st, &me["name"]), (200, &json!("Alice C")));
    // userset active=0 deactivates (tokens stop working); usertoken does not reactivate;
    // userset active=1 does, and the earlier tokens work again.
    let r = be(&s, json!({"op": "userset", "token": ADMIN_TOKEN, "user": {"address": "alice", "active": 0}})).await;
    assert_true(&r);
    assert_eq!(r["user"]["name"], json!("Alice C"), "the name is kept when absent");
    assert_eq!(rest_get(&s, "/v1/me", &t1).await.0, 401);
    let r = be(&s, json!({"op": "usertoken", "token": ADMIN_TOKEN, "user": {"address": "alice"}})).await;
    assert_true(&r);
    let t3 = r["user"]["token"].as_str().unwrap().to_string();
    assert_eq!(rest_get(&s, "/v1/me", &t3).await.0, 401, "usertoken does not reactivate");
    let r = be_form(&s, &[("op", "userset"), ("addr", "alice"), ("active", "1"), ("token", ADMIN_TOKEN)]).await;
    assert_true(&r);
    assert_eq!(rest_get(&s, "/v1/me", &t1).await.0, 200);
    assert_eq!(rest_get(&s, "/v1/me", &t3).await.0, 200);

    // Bad input: unknown address (nobody is created), no address, bad values.
    for op in ["userset", "usertoken"] {
        let r = be(&s, json!({"op": op, "token": ADMIN_TOKEN, "user": {"address": "nobody", "name": "N"}})).await;
        assert_be_fail(r, op, "BADUSER");
        let r = be(&s, json!({"op": op, "token": ADMIN_TOKEN, "user": {"name": "N"}})).await;
        assert_be_fail(r, op, "MISSINGPARA");
    }
    let r = be(&s, json!({"op": "userset", "token": ADMIN_TOKEN, "user": {"address": "alice", "active": "yes"}})).await;
    assert_be_fail(r, "userset", "BADPARA");
    let r =
        be(&s, json!({"op": "userset", "token": ADMIN_TOKEN, "user": {"address": "alice", "name": "\u{202e}x"}})).await;
    assert_be_fail(r, "userset", "BADPARA");
    let r = be(
        &s,
        json!({"op": "usertoken", "token": ADMIN_TOKEN, "user": {"address": "alice", "token": {"expiry": "soon"}}}),
    )
    .await;
    assert_be_fail(r, "usertoken", "BADPARA");
    let (st, me) = rest_get(&s, "/v1/me", &t1).await;
    assert_eq!((st, &me["name"]), (200, &json!("Alice C")), "nothing changed by the refused requests");
}

/// `usersget`: users in uid order, in bounded pages chained by `next`; one user by address.
async fn backend_usersget(b: Backend) {
    let s = Server::start(b).await;
    let mut uids = Vec::new();
    for a in ["u1", "u2", "u3", "u4", "u5"] {
        uids.push(be_user(&s, a, &a.to_uppercase()).await.0);
    }
    let r = be(&s, json!({"op": "userset", "token": ADMIN_TOKEN, "user": {"address": "u3", "active": 0}})).await;
    assert_true(&r);
    // Pages of 2: u1 u2 | u3 u4 | u5, chained by `next`.
    let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN, "user": {"count": 2}})).await;
    assert_true(&r);
    assert_eq!(r["count"], json!(2), "{r}");
    let u1 = &r["users"][0];
    assert_eq!(
        (&u1["uid"], &u1["address"], &u1["name"], &u1["active"]),
        (&json!(uids[0]), &json!("u1"), &json!("U1"), &json!(1))
    );
    assert!((u1["created"].as_i64().expect("created") - now_secs()).abs() <= 60, "{u1}");
    assert_eq!(r["users"][1]["address"], json!("u2"));
    let next = r["next"].as_i64().expect("next");
    let r =
        be_form(&s, &[("op", "usersget"), ("token", ADMIN_TOKEN), ("count", "2"), ("after", &next.to_string())]).await;
    assert_true(&r);
    let addrs: Vec<&Value> = r["users"].as_array().unwrap().iter().map(|u| &u["address"]).collect();
    assert_eq!(addrs, [&json!("u3"), &json!("u4")]);
    assert_eq!(r["users"][0]["active"], json!(0), "u3 is deactivated");
    let next = r["next"].as_i64().expect("next");
    let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN, "count": 2, "after": next})).await;
    assert_true(&r);
    assert_eq!((&r["count"], &r["users"][0]["address"]), (&json!(1), &json!("u5")));
    assert!(r.get("next").is_none(), "the last page has no next: {r}");
    // Default page: all five.
    let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN})).await;
    assert_eq!(r["count"], json!(5), "{r}");
    assert!(r.get("next").is_none());
    // One user by address (JSON and legacy).
    let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN, "user": {"address": "u4"}})).await;
    assert_eq!((&r["count"], &r["users"][0]["uid"]), (&json!(1), &json!(uids[3])), "{r}");
    let r = be_form(&s, &[("op", "usersget"), ("token", ADMIN_TOKEN), ("addr", "u2")]).await;
    assert_eq!((&r["count"], &r["users"][0]["address"]), (&json!(1), &json!("u2")), "{r}");

    // Bad input.
    let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN, "user": {"address": "nobody"}})).await;
    assert_be_fail(r, "usersget", "BADUSER");
    for bad in [
        json!({"count": 0}),
        json!({"count": 1001}),
        json!({"count": "many"}),
        json!({"after": -1}),
        json!({"after": "x"}),
    ] {
        let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN, "user": bad})).await;
        assert_be_fail(r, "usersget", "BADPARA");
    }
    let r = be_form(&s, &[("op", "usersget"), ("token", ADMIN_TOKEN), ("count", "x")]).await;
    assert_be_fail(r, "usersget", "BADPARA");
    let r = be(&s, json!({"op": "usersget", "token": "wrong"})).await;
    assert_be_fail(r, "usersget", "AUTHFAIL");
    // Nothing changed: still five users, u3 still inactive.
    let r = be(&s, json!({"op": "usersget", "token": ADMIN_TOKEN, "count": 1000})).await;
    assert_eq!(r["count"], json!(5), "{r}");
    assert_eq!(r["users"][2]["active"], json!(0));
}

/// `groupsget`: every group in gid order with its settings and member count, in bounded pages
/// chained by `next`; one group by gid.
async fn backend_groupsget(b: Backend) {
    let s = Server::start(b).await;
    be_user(&s, "alice", "Alice").await;
    be_user(&s, "bob", "Bob").await;
    let mut gids = Vec::new();
    for (name, m) in [("G1", "alice,bob"), ("G2", "alice"), ("G3", "")] {
        let r = be(
            &s,
            json!({"op": "groupadd", "token": ADMIN_TOKEN,
                   "group": {"name": name, "flag": 2, "callflags": 7, "resolution": 3, "duration": 600, "m": m}}),
        )
        .await;
        assert_true(&r);
        gids.push(r["group"]["gid"].as_i64().unwrap());
    }
    gids.sort();
    let r = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN, "group": {"count": 2}})).await;
    assert_true(&r);
    assert_eq!(r["count"], json!(2), "{r}");
    let got: Vec<i64> = r["groups"].as_array().unwrap().iter().map(|g| g["gid"].as_i64().unwrap()).collect();
    assert_eq!(got, gids[..2]);
    let next = r["next"].as_i64().expect("next");
    assert_eq!(next, gids[1]);
    let r =
        be_form(&s, &[("op", "groupsget"), ("token", ADMIN_TOKEN), ("count", "2"), ("after", &next.to_string())]).await;
    assert_true(&r);
    assert_eq!((&r["count"], &r["groups"][0]["gid"]), (&json!(1), &json!(gids[2])), "{r}");
    assert!(r.get("next").is_none(), "{r}");
    // One group by gid, with its settings and member count.
    let all = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN})).await;
    let g1 = all["groups"].as_array().unwrap().iter().find(|g| g["name"] == json!("G1")).expect("G1").clone();
    let r = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN, "group": {"gid": g1["gid"]}})).await;
    assert_eq!(r["count"], json!(1), "{r}");
    let mut g = r["groups"][0].clone();
    assert!((g["created"].as_i64().expect("created") - now_secs()).abs() <= 60, "{g}");
    g.as_object_mut().unwrap().remove("created");
    assert_eq!(
        g,
        json!({"gid": g1["gid"], "name": "G1", "flags": 2, "callflags": 7, "resolution": 3, "duration": 600,
               "owner": "", "members": 2})
    );
    let r = be_form(&s, &[("op", "groupsget"), ("token", ADMIN_TOKEN), ("gid", &gids[0].to_string())]).await;
    assert_eq!((&r["count"], &r["groups"][0]["gid"]), (&json!(1), &json!(gids[0])), "{r}");
    // A deleted group is gone from the listing.
    let r = be(&s, json!({"op": "groupdel", "token": ADMIN_TOKEN, "group": {"gid": gids[2]}})).await;
    assert_true(&r);
    let r = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN})).await;
    assert_eq!(r["count"], json!(2), "{r}");

    // Bad input.
    let r = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN, "group": {"gid": gids[2]}})).await;
    assert_be_fail(r, "groupsget", "BADGROUP");
    for bad in
        [json!({"gid": "x"}), json!({"gid": -5}), json!({"count": 0}), json!({"count": 5000}), json!({"after": -1})]
    {
        let r = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN, "group": bad})).await;
        assert_be_fail(r, "groupsget", "BADPARA");
    }
    let r = be(&s, json!({"op": "groupsget", "token": "wrong"})).await;
    assert_be_fail(r, "groupsget", "AUTHFAIL");
    let r = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN})).await;
    assert_eq!(r["count"], json!(2), "nothing changed: {r}");
}

/// `otp` and `uacset` stay unimplemented (docs/mesibo-compat.md section 4 says why).
async fn backend_unimplemented(b: Backend) {
    let s = Server::start(b).await;
    for op in ["otp", "uacset"] {
        let r = be(&s, json!({"op": op, "token": ADMIN_TOKEN, "otp": {"address": "x"}, "uac": {"id": 1}})).await;
        assert_be_fail(r, op, "BADOP");
    }
}

async fn backend_groups(b: Backend) {
    let s = Server::start(b).await;
    let (_, alice) = be_user(&s, "alice", "Alice").await;
    let (_, bob) = be_user(&s, "bob", "Bob").await;
    let (_, carol) = be_user(&s, "carol", "Carol").await;

    // groupadd with initial members.
    let r =
        be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "Team", "flag": 0, "m": "alice,bob"}}))
            .await;
    let gid = r["group"]["gid"].as_i64().unwrap_or_else(|| panic!("no gid: {r}"));
    assert!(gid >= 1000, "gid {gid}");
    assert_eq!(r, json!({"group": {"gid": gid}, "op": "groupadd", "result": true}));
    let r = be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"flag": 0, "m": "alice"}})).await;
    assert_be_fail(r, "groupadd", "MISSINGPARA");
    let r =
        be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "Ghosts", "m": "alice,nobody"}})).await;
    assert_be_fail(r, "groupadd", "BADUSER");

    // getmembers.
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "group": {"gid": gid}})).await;
    assert_true(&r);
    assert_eq!((&r["op"], &r["count"]), (&json!("getmembers"), &json!(2)), "{r}");
    assert_eq!(r["members"].as_array().unwrap().len(), 2);
    for (addr, name) in [("alice", "Alice"), ("bob", "Bob")] {
        let m = member(&r, addr).unwrap_or_else(|| panic!("{addr} is a member: {r}"));
        assert_eq!(m["name"], json!(name));
        for k in ["cs", "cr", "canpub", "cansub", "canlist"] {
            assert_eq!(m[k], json!(1), "{addr}.{k}: {m}");
        }
        assert_eq!(m["admin"], json!(0), "{m}");
    }
    // The same through the flat legacy form.
    let r2 = be_get_auth(&s, ADMIN_TOKEN, &[("op", "getmembers"), ("gid", &gid.to_string())]).await;
    assert_eq!(r2, r);
    // Membership is real.
    let (st, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &alice).await;
    assert_eq!(st, 200, "{g}");
    assert_eq!((&g["name"], &g["membership"]["flags"]), (&json!("Team"), &json!(0x1F)));
    assert_eq!(rest_get(&s, &format!("/v1/groups/{gid}"), &carol).await.0, 404);

    // groupeditmembers: bob may no longer publish.
    let r =
        be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": gid, "m": "bob", "canpub": 0, "delete": 0}})).await;
    assert_eq!(r, json!({"op": "groupeditmembers", "result": true}));
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "gid": gid})).await;
    let m = member(&r, "bob").expect("bob");
    assert_eq!(
        (&m["canpub"], &m["cs"], &m["cr"], &m["cansub"], &m["canlist"]),
        (&json!(0), &json!(1), &json!(1), &json!(1), &json!(1)),
        "{m}"
    );
    assert_eq!(member(&r, "alice").expect("alice")["canpub"], json!(1));
    let (_, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &bob).await;
    assert_eq!(g["membership"]["flags"], json!(0x1B));
    // The documented legacy form adds carol.
    let gs = gid.to_string();
    let f = [
        ("op", "groupeditmembers"),
        ("token", ADMIN_TOKEN),
        ("gid", &gs),
        ("m", "carol"),
        ("canpub", "1"),
        ("cansub", "1"),
        ("canlist", "1"),
        ("delete", "0"),
    ];
    let r = be_form(&s, &f).await;
    assert_eq!(r, json!({"op": "groupeditmembers", "result": true}));
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "gid": gid})).await;
    assert_eq!(r["count"], json!(3));
    assert_eq!(rest_get(&s, &format!("/v1/groups/{gid}"), &carol).await.0, 200);
    // The JSON form with a `members` object and an address array.
    let r = be(
        &s,
        json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": gid},
               "members": {"m": ["carol"], "cs": 1, "cr": 1, "canpub": 0, "cansub": 1, "canlist": 0}}),
    )
    .await;
    assert_eq!(r, json!({"op": "groupeditmembers", "result": true}));
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "gid": gid})).await;
    let m = member(&r, "carol").expect("carol");
    assert_eq!(
        (&m["canpub"], &m["canlist"], &m["cansub"], &m["flags"]),
        (&json!(0), &json!(0), &json!(1), &json!(0xB)),
        "{m}"
    );
    // delete:1 removes bob.
    let r =
        be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": gid, "m": "bob", "delete": 1}}))
            .await;
    assert_eq!(r, json!({"op": "groupeditmembers", "result": true}));
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "gid": gid})).await;
    assert_eq!(r["count"], json!(2));
    assert!(member(&r, "bob").is_none(), "{r}");
    assert!(member(&r, "alice").is_some() && member(&r, "carol").is_some(), "{r}");
    assert_eq!(rest_get(&s, &format!("/v1/groups/{gid}"), &bob).await.0, 404);
    // Errors.
    let r = be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": gid, "m": "nobody"}})).await;
    assert_be_fail(r, "groupeditmembers", "BADUSER");
    let r =
        be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": 98765432, "m": "bob"}})).await;
    assert_be_fail(r, "groupeditmembers", "BADGROUP");
    let r = be(
        &s,
        json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": 98765432, "m": "bob", "delete": 1}}),
    )
    .await;
    assert_be_fail(r, "groupeditmembers", "BADGROUP");
    let r = be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"m": "bob"}})).await;
    assert_be_fail(r, "groupeditmembers", "MISSINGPARA");
    let r = be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "group": {"gid": gid}})).await;
    assert_be_fail(r, "groupeditmembers", "MISSINGPARA");
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "group": {"gid": 98765432}})).await;
    assert_be_fail(r, "getmembers", "BADGROUP");
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN})).await;
    assert_be_fail(r, "getmembers", "MISSINGPARA");
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "group": {"gid": gid}})).await;
    assert_eq!(r["count"], json!(2), "failed edits changed nothing");

    // groupset renames.
    let r = be(&s, json!({"op": "groupset", "token": ADMIN_TOKEN, "group": {"gid": gid, "name": "Team 2"}})).await;
    assert_eq!(r, json!({"group": {"gid": gid}, "op": "groupset", "result": true}));
    let (st, g) = rest_get(&s, &format!("/v1/groups/{gid}"), &alice).await;
    assert_eq!((st, &g["name"]), (200, &json!("Team 2")));
    let r = be(&s, json!({"op": "groupset", "token": ADMIN_TOKEN, "group": {"gid": 98765432, "name": "X"}})).await;
    assert_be_fail(r, "groupset", "BADGROUP");
    let r = be(&s, json!({"op": "groupset", "token": ADMIN_TOKEN, "group": {"name": "X"}})).await;
    assert_be_fail(r, "groupset", "MISSINGPARA");

    // groupdel.
    let r = be(&s, json!({"op": "groupdel", "token": ADMIN_TOKEN, "group": {"gid": gid}})).await;
    assert_eq!(r, json!({"op": "groupdel", "result": true}));
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "group": {"gid": gid}})).await;
    assert_be_fail(r, "getmembers", "BADGROUP");
    assert_eq!(rest_get(&s, &format!("/v1/groups/{gid}"), &alice).await.0, 404);
    let r = be(&s, json!({"op": "groupdel", "token": ADMIN_TOKEN, "group": {"gid": gid}})).await;
    assert_be_fail(r, "groupdel", "BADGROUP");
    let r = be(&s, json!({"op": "groupdel", "token": ADMIN_TOKEN})).await;
    assert_be_fail(r, "groupdel", "MISSINGPARA");
}

async fn backend_messages(b: Backend) {
    let s = Server::start(b).await;
    let (_, _alice) = be_user(&s, "alice", "Alice").await;
    let (_, bob) = be_user(&s, "bob", "Bob").await;
    let (_, carol) = be_user(&s, "carol", "Carol").await;

    // One to one.
    let r = be(
        &s,
        json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "to": "bob", "message": "hi"}}),
    )
    .await;
    assert_eq!((&r["op"], &r["result"]), (&json!("message"), &json!(true)), "{r}");
    assert!(r.get("error").is_none());
    let mid = r["mid"].as_i64().unwrap_or_else(|| panic!("numeric mid: {r}"));
    assert!(mid > 0);
    let (st, h) = rest_get(&s, "/v1/users/alice/messages", &bob).await;
    assert_eq!(st, 200, "{h}");
    let msgs = h["messages"].as_array().expect("messages[]");
    assert_eq!(msgs.len(), 1, "{h}");
    assert_eq!((&msgs[0]["mid"], &msgs[0]["from"], &msgs[0]["text"]), (&json!(mid), &json!("alice"), &json!("hi")));
    // Carol is not part of that conversation.
    let (_, h) = rest_get(&s, "/v1/users/alice/messages", &carol).await;
    assert_eq!(h["messages"], json!([]));

    // To several addresses at once.
    let r = be(&s, json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "to": "bob,carol", "message": "all"}})).await;
    assert_true(&r);
    assert_eq!(r["mids"].as_array().map(Vec::len), Some(2), "{r}");
    let (_, h) = rest_get(&s, "/v1/users/alice/messages", &carol).await;
    assert_eq!(h["messages"][0]["text"], json!("all"));

    // Errors.
    let r = be(
        &s,
        json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "nobody", "to": "bob", "message": "hi"}}),
    )
    .await;
    assert_be_fail(r, "message", "BADUSER");
    let r = be(
        &s,
        json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "to": "nobody", "message": "hi"}}),
    )
    .await;
    assert_be_fail(r, "message", "BADUSER");
    let r = be(&s, json!({"op": "message", "token": ADMIN_TOKEN, "message": {"to": "bob", "message": "hi"}})).await;
    assert_be_fail(r, "message", "MISSINGPARA");
    let r = be(&s, json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "message": "hi"}})).await;
    assert_be_fail(r, "message", "MISSINGPARA");
    let r = be(
        &s,
        json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "gid": 98765432, "message": "hi"}}),
    )
    .await;
    assert_be_fail(r, "message", "BADGROUP");
    let (_, h) = rest_get(&s, "/v1/users/alice/messages", &bob).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 2, "failed sends stored nothing: {h}");

    // To a group.
    let r = be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "Team", "m": "alice,bob"}})).await;
    let gid = r["group"]["gid"].as_i64().expect("gid");
    let r = be(&s, json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "gid": gid, "message": "hello team"}})).await;
    assert_true(&r);
    let gmid = r["mid"].as_i64().expect("mid");
    let (st, h) = rest_get(&s, &format!("/v1/groups/{gid}/messages"), &bob).await;
    assert_eq!(st, 200, "{h}");
    let msgs = h["messages"].as_array().expect("messages[]");
    assert_eq!(msgs.len(), 1, "{h}");
    assert_eq!(
        (&msgs[0]["mid"], &msgs[0]["from"], &msgs[0]["gid"], &msgs[0]["text"]),
        (&json!(gmid), &json!("alice"), &json!(gid), &json!("hello team"))
    );
    // A non-member cannot read it.
    assert_eq!(rest_get(&s, &format!("/v1/groups/{gid}/messages"), &carol).await.0, 404);
}

/// Backend requests that fail change nothing; legacy forms reach the user token and nested permissions.
async fn backend_all_or_nothing(b: Backend) {
    let s = Server::start(b).await;
    let (_, alice) = be_user(&s, "alice", "Alice").await;
    be_user(&s, "bob", "Bob").await;
    // groupadd naming an unknown member creates no group.
    let r = be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "G", "m": "alice,nobody"}})).await;
    assert_be_fail(r, "groupadd", "BADUSER");
    let (_, mine) = rest_get(&s, "/v1/groups", &alice).await;
    assert_eq!(mine, json!([]), "no group was created");
    // message to several recipients with one unknown sends to none.
    let r = be(&s, json!({"op": "message", "token": ADMIN_TOKEN, "message": {"from": "alice", "to": "bob,nobody", "message": "x"}})).await;
    assert_be_fail(r, "message", "BADUSER");
    let (_, conv) = rest_get(&s, "/v1/conversations", &alice).await;
    assert_eq!(conv, json!([]), "nothing was sent");
    // With a request id, a retried message request stores nothing twice.
    let req = json!({"op": "message", "token": ADMIN_TOKEN, "id": "req-1", "message": {"from": "alice", "to": "bob", "message": "once"}});
    let first = be(&s, req.clone()).await;
    let again = be(&s, req).await;
    assert_true(&first);
    assert_eq!(first["mid"], again["mid"]);
    let (_, conv) = rest_get(&s, "/v1/conversations", &alice).await;
    assert_eq!(conv[0]["last_seq"], json!(1), "stored once: {conv}");
    // groupeditmembers reads permissions (incl. admin) from the nested members object.
    let r = be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "G", "m": "alice"}})).await;
    let gid = r["group"]["gid"].as_i64().unwrap();
    let r = be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "gid": gid, "members": {"m": ["bob"], "admin": 1, "canpub": 0}})).await;
    assert_true(&r);
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "gid": gid})).await;
    let bob = member(&r, "bob").expect("bob added");
    assert_eq!((bob["admin"].clone(), bob["canpub"].clone()), (json!(1), json!(0)));
    let r =
        be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "gid": gid, "m": "bob", "delete": "yes"})).await;
    assert_be_fail(r, "groupeditmembers", "BADPARA");
    // Legacy form deltoken takes the user's token as `usertoken`.
    let r = be_form(&s, &[("op", "deltoken"), ("token", ADMIN_TOKEN), ("usertoken", &alice)]).await;
    assert_true(&r);
    assert_eq!(rest_get(&s, "/v1/me", &alice).await.0, 401);
}

/// An adapter op that composes several changes makes them in one transaction: when the last
/// part fails, the first is not left behind.
async fn adapter_ops_are_one_transaction(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_MAX_GROUP_MEMBERS", "2")]).await;
    let (_, alice) = be_user(&s, "alice", "Alice").await;
    be_user(&s, "bob", "Bob").await;
    be_user(&s, "carol", "Carol").await;
    // groupadd with more initial members than a group may hold: refused, and no group exists
    // (the group used to be created before its members were refused).
    let r =
        be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "Big", "m": "alice,bob,carol"}})).await;
    assert_be_fail(r, "groupadd", "BADPARA");
    let all = be(&s, json!({"op": "groupsget", "token": ADMIN_TOKEN})).await;
    assert_eq!(all["count"], json!(0), "no group was created: {all}");
    // groupset renaming a group while adding one member too many: neither happens.
    let r = be(&s, json!({"op": "groupadd", "token": ADMIN_TOKEN, "group": {"name": "Small", "m": "alice"}})).await;
    let gid = r["group"]["gid"].as_i64().unwrap();
    let r = be(
        &s,
        json!({"op": "groupset", "token": ADMIN_TOKEN, "gid": gid, "group": {"name": "Renamed", "m": "bob,carol"}}),
    )
    .await;
    assert_be_fail(r, "groupset", "LIMIT");
    let (_, mine) = rest_get(&s, "/v1/groups", &alice).await;
    assert_eq!(mine[0]["name"], json!("Small"), "the rename was rolled back: {mine}");
    // groupeditmembers delete takes the listed members out in one transaction, skipping non-members.
    let r = be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "gid": gid, "m": "bob"})).await;
    assert_true(&r);
    let r = be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "gid": gid, "m": "carol,bob", "delete": 1}))
        .await;
    assert_true(&r);
    let r = be(&s, json!({"op": "getmembers", "token": ADMIN_TOKEN, "gid": gid})).await;
    assert!(member(&r, "alice").is_some() && member(&r, "bob").is_none(), "bob removed, alice kept: {r}");
    let r =
        be(&s, json!({"op": "groupeditmembers", "token": ADMIN_TOKEN, "gid": 999, "m": "alice", "delete": 1})).await;
    assert_be_fail(r, "groupeditmembers", "BADGROUP");
}

both_backends!(
    adapter_ops_are_one_transaction,
    backend_all_or_nothing,
    api_noop_and_badop,
    api_login,
    api_login_phone,
    api_rooms_lifecycle,
    api_logout,
    backend_protocol,
    backend_users,
    backend_userset_and_usertoken,
    backend_usersget,
    backend_groupsget,
    backend_unimplemented,
    backend_groups,
    backend_messages,
);
