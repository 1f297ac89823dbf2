//! Login by one-time code, tokens, and bad input on the auth endpoints.

mod common;

use chorus_proto::rest::LoginSession;
use chorus_proto::ws::SessionUser;
use common::{Backend, Server};
use serde_json::json;

async fn login_via_outbox(b: Backend) {
    let s = Server::start(b).await;
    let (sess, http) = s.login("Ann@Example.org", "Ann").await;
    assert_eq!(sess.user.name, "Ann");
    assert!(sess.token.len() >= 22, "token carries at least 128 bits");
    assert!(!sess.user.address.contains('@'), "the address is not the email");
    let me: SessionUser = http.get("/v1/me").await.unwrap();
    assert_eq!(me, sess.user);
    // Same email (any case) is the same user; a second session works beside the first.
    let (again, http2) = s.login("ann@example.org", "Ann B").await;
    assert_eq!(again.user.uid, sess.user.uid);
    assert_ne!(again.token, sess.token);
    assert_eq!(http.get::<SessionUser>("/v1/me").await.unwrap().name, "Ann B");
    // Logout revokes only that token.
    http2.post::<serde_json::Value>("/v1/auth/logout", &json!({})).await.unwrap();
    assert_eq!(http2.get::<SessionUser>("/v1/me").await.unwrap_err().status, 401);
    assert!(http.get::<SessionUser>("/v1/me").await.is_ok());
    // Mail really went to the outbox as .eml.
    let emls = std::fs::read_dir(s.outbox())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "eml")
        .count();
    assert_eq!(emls, 2);
}

async fn wrong_code_five_times_locks(b: Backend) {
    let s = Server::start(b).await;
    let http = s.http();
    http.request_code("bob@example.org").await.unwrap();
    let code = s.code_for("bob@example.org");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for i in 1..=5 {
        let e = http.verify("bob@example.org", wrong, None).await.unwrap_err();
        let expected = if i < 5 { "code_invalid" } else { "code_locked" };
        assert_eq!(e.code(), Some(expected), "attempt {i}: {e}");
    }
    // The right code no longer works.
    let e = http.verify("bob@example.org", &code, None).await.unwrap_err();
    assert_eq!(e.code(), Some("code_locked"));
    assert_eq!(e.status, 429);
    // A new code does.
    http.request_code("bob@example.org").await.unwrap();
    let fresh = s.code_for("bob@example.org");
    let sess: LoginSession = http.verify("bob@example.org", &fresh, Some("Bob")).await.unwrap();
    assert_eq!(sess.user.name, "Bob");
    // A used code cannot be used twice.
    let e = http.verify("bob@example.org", &fresh, None).await.unwrap_err();
    assert_eq!(e.code(), Some("code_expired"));
}

async fn code_requests_are_rate_limited(b: Backend) {
    let s = Server::start(b).await;
    let http = s.http();
    http.request_code("cat@example.org").await.unwrap();
    let code = s.code_for("cat@example.org");
    // A second code within code_request_interval_secs is refused; the first stays valid.
    let e = http.request_code("cat@example.org").await.unwrap_err();
    assert_eq!((e.status, e.code()), (429, Some("rate_limited")));
    assert_eq!(s.code_for("cat@example.org"), code, "no new code was sent");
    // Another email is not affected.
    http.request_code("dog@example.org").await.unwrap();
    http.verify("cat@example.org", &code, Some("Cat")).await.unwrap();
    // Per IP as well.
    let s2 = Server::start_with(b, &[("CHORUS_CODE_REQUESTS_PER_IP", "2")]).await;
    let h2 = s2.http();
    h2.request_code("a1@example.org").await.unwrap();
    h2.request_code("a2@example.org").await.unwrap();
    assert_eq!(h2.request_code("a3@example.org").await.unwrap_err().code(), Some("rate_limited"));
}

async fn bad_input_gets_clear_errors(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_MAX_BODY_BYTES", "2048")]).await;
    let http = s.http();
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (json!({}), 400, "bad_request"),
        (json!({"email": "not-an-email"}), 400, "bad_request"),
        (json!({"email": "a@b.org", "phone": "123456789"}), 400, "bad_request"),
        (json!({"email": "a@b.org", "extra": 1}), 400, "bad_request"),
        (json!({"phone": "12"}), 400, "bad_request"),
        (json!({"email": 5}), 400, "bad_request"),
    ];
    for (body, status, code) in cases {
        let e = http.post::<serde_json::Value>("/v1/auth/code", &body).await.unwrap_err();
        assert_eq!((e.status, e.code()), (status, Some(code)), "{body}: {}", e.body);
    }
    // Malformed JSON and a body over the limit.
    let raw = reqwest::Client::new();
    let r = raw
        .post(format!("{}/v1/auth/code", s.base))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "bad_request");
    let big = format!("{{\"email\":\"{}@b.org\"}}", "a".repeat(5000));
    let r = raw
        .post(format!("{}/v1/auth/code", s.base))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["code"], "too_large");
    // Verify without a request, with a bad name, unknown routes, bad tokens.
    let e = http.verify("nobody@example.org", "123456", None).await.unwrap_err();
    assert_eq!(e.code(), Some("code_expired"));
    let e = http.get::<serde_json::Value>("/v1/nope").await.unwrap_err();
    assert_eq!((e.status, e.code()), (404, Some("not_found")));
    let e = http.with_token("x".repeat(40)).get::<serde_json::Value>("/v1/me").await.unwrap_err();
    assert_eq!((e.status, e.code()), (401, Some("unauthorized")));
    let e = http.get::<serde_json::Value>("/v1/me").await.unwrap_err();
    assert_eq!(e.status, 401);
    let (_, authed) = s.login("n@example.org", "N").await;
    let e = authed.patch::<serde_json::Value>("/v1/me", &json!({"name": ""})).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"));
    let e = authed.patch::<serde_json::Value>("/v1/me", &json!({"name": "a\u{7}b"})).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"));
    // The OpenAPI document is served and parses.
    let doc: serde_json::Value = http.get("/v1/openapi.json").await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}

/// Parallel guesses cannot get past the attempt limit.
async fn parallel_guesses_share_the_attempt_limit(b: Backend) {
    let s = Server::start(b).await;
    let http = s.http();
    http.request_code("par@example.org").await.unwrap();
    let code = s.code_for("par@example.org");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let h = http.clone();
        tasks.push(tokio::spawn(async move { h.verify("par@example.org", wrong, None).await.unwrap_err().code() }));
    }
    let mut invalid = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some("code_invalid") => invalid += 1,
            Some("code_locked") => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(invalid, 4, "attempts 1-4 say invalid, the 5th and later say locked");
    assert_eq!(http.verify("par@example.org", &code, None).await.unwrap_err().code(), Some("code_locked"));
}

both_backends!(
    parallel_guesses_share_the_attempt_limit,
    login_via_outbox,
    wrong_code_five_times_locks,
    code_requests_are_rate_limited,
    bad_input_gets_clear_errors
);
