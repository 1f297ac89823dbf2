//! Group whiteboards (issue 10, item 5): `/api` `setboard` / `getboard` as Mesibo's
//! conferencing app calls them, `GET`/`PUT`/`POST /v1/groups/{gid}/board`, the live `board`
//! frame, the size limit and the refusals, each leaving the stored board as it was.

mod common;

use std::time::Duration;

use chorus_client::Connection;
use chorus_proto::ws::{BoardAction, ServerFrame};
use common::{Backend, Server};
use serde_json::{json, Value};

/// The board limit the tests run with (small, so a few objects pass it).
const MAX_BOARD: usize = 2048;
const WAIT: Duration = Duration::from_secs(5);

async fn api(s: &Server, form: &[(&str, &str)]) -> Value {
    let r = reqwest::Client::new().post(format!("{}/api", s.base)).form(form).send().await.expect("POST /api");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON reply")
}

async fn api_json(s: &Server, body: Value) -> Value {
    let r = reqwest::Client::new().post(format!("{}/api", s.base)).json(&body).send().await.expect("POST /api");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON reply")
}

/// A REST call with a bearer token and an optional JSON body: status and JSON reply.
async fn rest(s: &Server, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().request(method, format!("{}{path}", s.base)).bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("REST");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[track_caller]
fn assert_fail(v: &Value, error: &str) {
    assert_eq!(v["result"], "FAIL", "{v}");
    assert_eq!(v["error"], error, "{v}");
}

#[track_caller]
fn assert_ok(v: &Value) {
    assert_eq!(v["result"], "OK", "{v}");
}

/// The board as `/api getboard` shows it to `token`: (version, objs).
async fn board(s: &Server, token: &str, gid: &str) -> (i64, Vec<Value>) {
    let v = api(s, &[("op", "getboard"), ("token", token), ("gid", gid)]).await;
    assert_ok(&v);
    let objs = v["objs"].as_array().unwrap_or_else(|| panic!("no objs in {v}")).clone();
    assert_eq!(v["count"], objs.len(), "{v}");
    (v["version"].as_i64().expect("version"), objs)
}

async fn next_board(c: &mut Connection) -> ServerFrame {
    c.expect(WAIT, |f| matches!(f, ServerFrame::Board { .. })).await.expect("a board frame")
}

/// The `board` frame of `version` (frames of other versions stay buffered).
async fn board_frame(c: &mut Connection, version: i64) -> ServerFrame {
    c.expect(WAIT, |f| matches!(f, ServerFrame::Board { version: v, .. } if *v == version))
        .await
        .unwrap_or_else(|e| panic!("no board frame of version {version}: {e}"))
}

/// Owner A makes a room with `/api setgroup`; B joins with its publisher pin, V with its viewer
/// pin; C is not a member. Returns the gid and the four logins.
struct Room {
    gid: String,
    a: chorus_proto::rest::LoginSession,
    b: chorus_proto::rest::LoginSession,
    v: chorus_proto::rest::LoginSession,
    c: chorus_proto::rest::LoginSession,
    http_b: chorus_client::Http,
    http_a: chorus_client::Http,
}

async fn room(s: &Server) -> Room {
    let (a, http_a) = s.login("a@example.com", "Ann").await;
    let (b, http_b) = s.login("b@example.com", "Bob").await;
    let (v, _) = s.login("v@example.com", "Viv").await;
    let (c, _) = s.login("c@example.com", "Cat").await;
    let made = api(s, &[("op", "setgroup"), ("token", &a.token), ("name", "Board room")]).await;
    assert_ok(&made);
    let gid = made["gid"].to_string();
    let (pin, spin) = (made["pin"].as_str().unwrap().to_string(), made["spin"].as_str().unwrap().to_string());
    assert_ok(&api(s, &[("op", "joingroup"), ("token", &b.token), ("gid", &gid), ("pin", &pin)]).await);
    assert_ok(&api(s, &[("op", "joingroup"), ("token", &v.token), ("gid", &gid), ("pin", &spin)]).await);
    Room { gid, a, b, v, c, http_a, http_b }
}

async fn start(backend: Backend) -> Server {
    Server::start_with(backend, &[("CHORUS_MAX_BOARD_BYTES", &MAX_BOARD.to_string())]).await
}

/// Two members round-trip the board through `/api` (Mesibo's form posts) and `/v1`, and each
/// change reaches the other member's WebSocket as a `board` frame.
async fn round_trip_and_live_push(backend: Backend) {
    let s = start(backend).await;
    let r = room(&s).await;
    let (mut conn_b, _) = s.connect(&r.http_b).await;
    let (mut conn_a, _) = s.connect(&r.http_a).await;

    // Never written: empty, version 0.
    assert_eq!(board(&s, &r.b.token, &r.gid).await, (0, vec![]));

    // A draws (the app's form post: `obj` is the JSON text, `pin` is sent along).
    let line = json!({"type": "line", "x1": 1, "y1": 2, "id": {"uid": r.a.user.uid, "muid": r.a.user.uid, "ts": 1}});
    let set = api(
        &s,
        &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("pin", "00000000"), ("obj", &line.to_string())],
    )
    .await;
    assert_ok(&set);
    assert_eq!((set["version"].as_i64(), set["count"].as_i64()), (Some(1), Some(1)), "{set}");

    // B sees it live, and reads it back.
    match next_board(&mut conn_b).await {
        ServerFrame::Board { gid, version, from, action, objs } => {
            assert_eq!(gid.to_string(), r.gid);
            assert_eq!((version, action), (1, BoardAction::Append));
            assert_eq!(from, r.a.user.address);
            assert_eq!(objs, vec![line.clone()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(board(&s, &r.b.token, &r.gid).await, (1, vec![line.clone()]));
    // The writer's own sessions get the frame too.
    let f = next_board(&mut conn_a).await;
    assert!(matches!(&f, ServerFrame::Board { version: 1, .. }), "{f:?}");

    // B draws through a JSON body (`obj` a JSON object); A sees it live and over /v1.
    let rect = json!({"type": "rect", "w": 10, "id": {"uid": r.b.user.uid}});
    assert_ok(&api_json(&s, json!({"op": "setboard", "token": r.b.token, "gid": r.gid, "obj": rect})).await);
    let f = next_board(&mut conn_a).await;
    assert!(
        matches!(&f, ServerFrame::Board { version: 2, action: BoardAction::Append, objs, from, .. }
            if *objs == vec![rect.clone()] && *from == r.b.user.address),
        "{f:?}"
    );
    let (st, got) = rest(&s, reqwest::Method::GET, &format!("/v1/groups/{}/board", r.gid), &r.a.token, None).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["objs"], json!([line, rect]));
    assert_eq!((got["version"].as_i64(), got["count"].as_i64()), (Some(2), Some(2)));
    assert_eq!(got["updated_by"], r.b.user.address);
    assert_eq!(got["bytes"].as_u64(), Some(serde_json::to_string(&json!([line, rect])).unwrap().len() as u64));

    // The viewer-pin member may send, so draws too (POST /v1 appends).
    let text = json!({"type": "text", "t": "hi"});
    let (st, got) = rest(
        &s,
        reqwest::Method::POST,
        &format!("/v1/groups/{}/board", r.gid),
        &r.v.token,
        Some(json!({"objs": [text]})),
    )
    .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["count"], 3);
    let f = board_frame(&mut conn_b, 3).await;
    assert!(matches!(&f, ServerFrame::Board { version: 3, action: BoardAction::Append, .. }), "{f:?}");

    // reset=1 clears only the caller's objects (by `id.uid`); the frame carries the whole board.
    assert_ok(&api(&s, &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("reset", "1")]).await);
    let f = board_frame(&mut conn_b, 4).await;
    assert!(
        matches!(&f, ServerFrame::Board { version: 4, action: BoardAction::Set, objs, .. } if *objs == vec![rect.clone(), text.clone()]),
        "{f:?}"
    );
    assert_eq!(board(&s, &r.a.token, &r.gid).await, (4, vec![rect.clone(), text.clone()]));

    // PUT replaces, with a version check.
    let path = format!("/v1/groups/{}/board", r.gid);
    let (st, got) =
        rest(&s, reqwest::Method::PUT, &path, &r.b.token, Some(json!({"objs": [line], "version": 3}))).await;
    assert_eq!((st, got["error"]["code"].as_str()), (409, Some("conflict")), "{got}");
    let (st, got) =
        rest(&s, reqwest::Method::PUT, &path, &r.b.token, Some(json!({"objs": [line], "version": 4}))).await;
    assert_eq!((st, got["version"].as_i64()), (200, Some(5)), "{got}");
    let f = board_frame(&mut conn_a, 5).await;
    assert!(
        matches!(&f, ServerFrame::Board { version: 5, action: BoardAction::Set, objs, .. } if *objs == vec![line.clone()]),
        "{f:?}"
    );

    // reset=2 clears everything.
    assert_ok(&api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", &r.gid), ("reset", "2")]).await);
    assert_eq!(board(&s, &r.a.token, &r.gid).await, (6, vec![]));
    let f = board_frame(&mut conn_a, 6).await;
    assert!(
        matches!(&f, ServerFrame::Board { version: 6, action: BoardAction::Set, objs, .. } if objs.is_empty()),
        "{f:?}"
    );
}

/// A change that would take the board past `max_board_bytes` is refused with a clear error
/// (`TOOLARGE`, `too_large` 413), and the old board is kept; nobody is told of a change.
async fn oversize_keeps_old_board(backend: Backend) {
    let s = start(backend).await;
    let r = room(&s).await;
    let (mut conn_b, _) = s.connect(&r.http_b).await;
    let small = json!({"type": "dot", "id": {"uid": r.a.user.uid}});
    assert_ok(
        &api(&s, &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("obj", &small.to_string())]).await,
    );
    next_board(&mut conn_b).await;
    let before = board(&s, &r.b.token, &r.gid).await;
    assert_eq!(before, (1, vec![small.clone()]));

    // One object alone past the limit.
    let big = json!({"type": "path", "d": "x".repeat(MAX_BOARD)});
    let v = api(&s, &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("obj", &big.to_string())]).await;
    assert_fail(&v, "TOOLARGE");
    // Objects that each fit but together do not: appended until one would not fit.
    let half = json!({"type": "path", "d": "y".repeat(MAX_BOARD / 2)});
    assert_ok(
        &api(&s, &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("obj", &half.to_string())]).await,
    );
    next_board(&mut conn_b).await;
    let kept = board(&s, &r.b.token, &r.gid).await;
    assert_eq!(kept, (2, vec![small.clone(), half.clone()]));
    let v = api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", &r.gid), ("obj", &half.to_string())]).await;
    assert_fail(&v, "TOOLARGE");
    assert_eq!(board(&s, &r.b.token, &r.gid).await, kept);

    // /v1: 413 too_large, with the limit named.
    let path = format!("/v1/groups/{}/board", r.gid);
    let (st, got) = rest(&s, reqwest::Method::PUT, &path, &r.b.token, Some(json!({"objs": [big]}))).await;
    assert_eq!((st, got["error"]["code"].as_str()), (413, Some("too_large")), "{got}");
    assert!(got["error"]["message"].as_str().unwrap().contains("max_board_bytes"), "{got}");
    let (st, got) = rest(&s, reqwest::Method::POST, &path, &r.b.token, Some(json!({"objs": [half]}))).await;
    assert_eq!(st, 413, "{got}");
    assert_eq!(board(&s, &r.b.token, &r.gid).await, kept);

    // No frame was sent for the refused changes.
    let frames = conn_b.drain(Duration::from_millis(300)).await;
    assert!(!frames.iter().any(|f| matches!(f, ServerFrame::Board { .. })), "{frames:?}");
}

/// A user who is not a member neither reads nor writes the board, through either API, and
/// gets no frames; an unknown group answers the same.
async fn non_member_refused(backend: Backend) {
    let s = start(backend).await;
    let r = room(&s).await;
    let obj = json!({"type": "dot"});
    assert_ok(&api(&s, &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("obj", &obj.to_string())]).await);
    let (mut conn_c, _) = s.connect(&s.http().with_token(&r.c.token)).await;

    assert_fail(&api(&s, &[("op", "getboard"), ("token", &r.c.token), ("gid", &r.gid)]).await, "BADGROUP");
    let v = api(&s, &[("op", "setboard"), ("token", &r.c.token), ("gid", &r.gid), ("obj", "{\"type\":\"x\"}")]).await;
    assert_fail(&v, "BADGROUP");
    assert_fail(
        &api(&s, &[("op", "setboard"), ("token", &r.c.token), ("gid", &r.gid), ("reset", "2")]).await,
        "BADGROUP",
    );
    // A wrong pin does not help: membership is what counts.
    let v = api(&s, &[("op", "getboard"), ("token", &r.c.token), ("gid", &r.gid), ("pin", "12345678")]).await;
    assert_fail(&v, "BADGROUP");
    assert_fail(&api(&s, &[("op", "getboard"), ("token", &r.c.token), ("gid", "999")]).await, "BADGROUP");
    assert_fail(&api(&s, &[("op", "getboard"), ("gid", &r.gid)]).await, "AUTHFAIL");

    let path = format!("/v1/groups/{}/board", r.gid);
    let (st, got) = rest(&s, reqwest::Method::GET, &path, &r.c.token, None).await;
    assert_eq!((st, got["error"]["code"].as_str()), (404, Some("not_found")), "{got}");
    let (st, _) = rest(&s, reqwest::Method::PUT, &path, &r.c.token, Some(json!({"objs": []}))).await;
    assert_eq!(st, 404);
    let (st, _) = rest(&s, reqwest::Method::POST, &path, &r.c.token, Some(json!({"objs": [obj]}))).await;
    assert_eq!(st, 404);
    let (st, _) = reqwest::Client::new()
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("GET");
    assert_eq!(st, 401);

    assert_eq!(board(&s, &r.a.token, &r.gid).await, (1, vec![obj]));
    let frames = conn_c.drain(Duration::from_millis(300)).await;
    assert!(!frames.iter().any(|f| matches!(f, ServerFrame::Board { .. })), "{frames:?}");

    // A member who may not send (a group whose members send only when selected) reads, but
    // does not write: DENIED / 403.
    let (st, got) = rest(
        &s,
        reqwest::Method::PATCH,
        &format!("/v1/groups/{}", r.gid),
        &r.a.token,
        Some(json!({"flags": chorus_proto::flags::group::SEND_BY_SELECTED})),
    )
    .await;
    assert_eq!(st, 200, "{got}");
    let (st, got) = rest(
        &s,
        reqwest::Method::POST,
        &format!("/v1/groups/{}/members", r.gid),
        &r.a.token,
        Some(json!({"addresses": [r.v.user.address], "flags": chorus_proto::flags::member::RECV})),
    )
    .await;
    assert!([200, 201, 204].contains(&st), "{st} {got}");
    assert_eq!(board(&s, &r.v.token, &r.gid).await.0, 1);
    let v = api(&s, &[("op", "setboard"), ("token", &r.v.token), ("gid", &r.gid), ("obj", "{\"type\":\"x\"}")]).await;
    assert_fail(&v, "DENIED");
    let (st, got) = rest(&s, reqwest::Method::PUT, &path, &r.v.token, Some(json!({"objs": []}))).await;
    assert_eq!((st, got["error"]["code"].as_str()), (403, Some("forbidden")), "{got}");
    assert_eq!(board(&s, &r.a.token, &r.gid).await.0, 1);
}

/// `obj` that is not JSON, or not an object (or list of objects), is refused (`BADOBJ`,
/// `bad_request`); a missing `gid` or `obj` is `MISSINGPARA`. The board is unchanged.
async fn bad_json_refused(backend: Backend) {
    let s = start(backend).await;
    let r = room(&s).await;
    let obj = json!({"type": "dot"});
    assert_ok(&api(&s, &[("op", "setboard"), ("token", &r.a.token), ("gid", &r.gid), ("obj", &obj.to_string())]).await);
    let before = board(&s, &r.b.token, &r.gid).await;

    for bad in ["{not json", "[1, 2]", "42", "\"text\"", "{\"a\":1} trailing", "[{\"a\":1}, 3]"] {
        let v = api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", &r.gid), ("obj", bad)]).await;
        assert_fail(&v, "BADOBJ");
    }
    let v = api_json(&s, json!({"op": "setboard", "token": r.b.token, "gid": r.gid, "obj": [1]})).await;
    assert_fail(&v, "BADOBJ");
    assert_fail(&api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", &r.gid)]).await, "MISSINGPARA");
    assert_fail(
        &api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", &r.gid), ("obj", " ")]).await,
        "MISSINGPARA",
    );
    assert_fail(&api(&s, &[("op", "setboard"), ("token", &r.b.token), ("obj", "{}")]).await, "MISSINGPARA");
    assert_fail(
        &api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", "x"), ("obj", "{}")]).await,
        "MISSINGPARA",
    );
    let v = api(&s, &[("op", "setboard"), ("token", &r.b.token), ("gid", &r.gid), ("reset", "7")]).await;
    assert_fail(&v, "MISSINGPARA");
    assert_fail(&api(&s, &[("op", "getboard"), ("token", &r.b.token)]).await, "MISSINGPARA");

    let path = format!("/v1/groups/{}/board", r.gid);
    for body in [json!({"objs": [1]}), json!({"objs": {"a": 1}}), json!({"objs": [{}], "extra": 1}), json!({})] {
        let (st, got) = rest(&s, reqwest::Method::PUT, &path, &r.b.token, Some(body.clone())).await;
        assert_eq!((st, got["error"]["code"].as_str()), (400, Some("bad_request")), "{body}: {got}");
    }
    let r2 = reqwest::Client::new()
        .put(format!("{}{path}", s.base))
        .bearer_auth(&r.b.token)
        .header("content-type", "application/json")
        .body("{\"objs\": [")
        .send()
        .await
        .expect("PUT");
    assert_eq!(r2.status(), 400);
    assert_eq!(board(&s, &r.b.token, &r.gid).await, before);
}

both_backends!(round_trip_and_live_push, oversize_keeps_old_board, non_member_refused, bad_json_refused);
