//! The operator's view, `/admin/*`, and `chorus admin …` reading it from a shell, against the
//! real `chorus serve`: the admin token is required; nodes, calls, users and groups show what
//! users are doing (a call appears with its participants while it runs and is gone after).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use chorus_client::call::CallOptions;
use common::calls::{join, member_with_pin, room};
use common::{Backend, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

async fn admin_get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `/admin/calls` until `ok` holds for it (media set-up and leaving are asynchronous).
async fn calls_until(s: &Server, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + common::WAIT;
    loop {
        let (_, calls) = admin_get(s, "/admin/calls", Some(ADMIN_TOKEN)).await;
        if ok(&calls) || Instant::now() > deadline {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn chorus_admin(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("admin")
        .args(args)
        .args(["--url", &s.base])
        .env_remove("CHORUS_ADMIN_TOKEN")
        .output()
        .expect("run chorus admin");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

async fn admin_view(b: Backend) {
    let s = Server::start(b).await;
    // Without the admin token, or with a user's token, nothing is shown.
    let (user, _) = s.login("someone@example.org", "Someone").await;
    for path in ["/admin/nodes", "/admin/calls", "/admin/users", "/admin/groups", "/admin/webhooks"] {
        let (status, body) = admin_get(&s, path, None).await;
        assert_eq!((status, &body["error"]["code"]), (401, &json!("unauthorized")), "{path}: {body}");
        assert_eq!(admin_get(&s, path, Some(&user.token)).await.0, 401, "{path} with a user's token");
    }

    // Users and groups, paged in id order.
    let r = room(&s).await;
    let (bob, bob_address) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (_, users) = admin_get(&s, "/admin/users?limit=2", Some(ADMIN_TOKEN)).await;
    assert_eq!(users["users"].as_array().map(Vec::len), Some(2), "{users}");
    let next = users["next"].as_i64().expect("a next page");
    let (_, rest) = admin_get(&s, &format!("/admin/users?after={next}"), Some(ADMIN_TOKEN)).await;
    let mut addresses: Vec<String> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["users"].as_array().unwrap())
        .map(|u| u["address"].as_str().unwrap().to_string())
        .collect();
    addresses.sort();
    let mut expected = vec![user.user.address.clone(), r.owner_address.clone(), bob_address.clone()];
    expected.sort();
    assert_eq!(addresses, expected);
    assert!(!rest.to_string().contains("example.org"), "no emails in the admin view: {rest}");
    let (_, groups) = admin_get(&s, "/admin/groups", Some(ADMIN_TOKEN)).await;
    assert_eq!(groups["groups"][0]["gid"], json!(r.gid), "{groups}");
    assert_eq!(groups["groups"][0]["members"], json!(2), "{groups}");
    let (status, bad) = admin_get(&s, "/admin/users?limit=0", Some(ADMIN_TOKEN)).await;
    assert_eq!((status, &bad["error"]["code"]), (400, &json!("bad_request")), "{bad}");

    // A call shows while it runs, with its participants, in calls and in the node's totals.
    let (_, calls) = admin_get(&s, "/admin/calls", Some(ADMIN_TOKEN)).await;
    assert_eq!(calls, json!([]));
    let owner_call = join(&r.owner, r.gid, CallOptions::default()).await;
    let bob_call = join(&bob, r.gid, CallOptions::default()).await;
    let calls = calls_until(&s, |c| c[0]["participants"] == json!(2)).await;
    assert_eq!((&calls[0]["gid"], &calls[0]["participants"]), (&json!(r.gid), &json!(2)), "{calls}");
    let started = calls[0]["started_at"].as_i64().expect("started_at");
    let (_, nodes) = admin_get(&s, "/admin/nodes", Some(ADMIN_TOKEN)).await;
    let node = &nodes[0];
    assert_eq!((&node["calls"], &node["participants"]), (&json!(1), &json!(2)), "{nodes}");
    assert!(node["sessions"].as_i64().unwrap() >= 2, "{nodes}");
    assert!(node["started_at"].as_i64().unwrap() <= started, "{nodes}");
    let store = if matches!(b, Backend::Postgres) { "postgresql" } else { "sqlite" };
    assert_eq!(node["store"], json!(store));
    assert_eq!(node["media"], json!(s.media_udp.to_string()), "where call media goes: {nodes}");
    assert_eq!(calls[0]["node"], node["id"], "the node holding the call: {calls}");

    // A client we did not write (curl), as docs/deployment.md describes the API.
    let out = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {ADMIN_TOKEN}"), &format!("{}/admin/calls", s.base)])
        .output()
        .expect("curl");
    let by_curl: Value = serde_json::from_slice(&out.stdout).expect("curl got JSON");
    assert_eq!(by_curl[0]["gid"], json!(r.gid), "{by_curl}");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", &format!("{}/admin/users", s.base)])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401", "curl without the token");

    // The same from a shell.
    let (ok, out, err) = chorus_admin(&s, &["calls", "--token", ADMIN_TOKEN]);
    assert!(ok, "{err}");
    let row: Vec<&str> = out.lines().nth(1).expect("a row").split_whitespace().collect();
    assert_eq!(row[..2], [r.gid.to_string().as_str(), "2"], "{out}");
    let (ok, out, err) = chorus_admin(&s, &["users", "--limit", "2", "--token", ADMIN_TOKEN]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "header, two users, the next page's hint: {out}");
    assert!(out.lines().last().unwrap().starts_with("(more: --after "), "{out}");
    let (ok, out, _) = chorus_admin(&s, &["groups", "--json", "--token", ADMIN_TOKEN]);
    assert!(ok);
    let parsed: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(parsed["groups"][0]["gid"], json!(r.gid));
    // The token file of the server's data directory serves when no token is given.
    std::fs::write(s.data.path().join("admin-token"), ADMIN_TOKEN).unwrap();
    let data = s.data.path().to_str().unwrap().to_string();
    let (ok, out, err) = chorus_admin(&s, &["nodes", "--data", &data]);
    assert!(ok && out.contains(env!("CARGO_PKG_VERSION")), "{out} {err}");
    let (ok, _, err) = chorus_admin(&s, &["nodes", "--token", "wrong-token-0123456789"]);
    assert!(!ok && err.contains("401"), "a wrong token fails clearly: {err}");

    // Gone once everyone has left.
    owner_call.leave().await.expect("leave");
    bob_call.leave().await.expect("leave");
    let calls = calls_until(&s, |c| c == &json!([])).await;
    assert_eq!(calls, json!([]), "the call is gone after everyone left");
}

both_backends!(admin_view);
