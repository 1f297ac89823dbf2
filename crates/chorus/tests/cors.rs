//! Use from pages on other origins (`cors_origins`, docs/configuration.md): preflights and
//! answers carry CORS headers for listed origins on `/api`, `/v1` and `/sdk`; any other origin
//! is refused (403, no CORS headers, nothing served), also on the WebSocket; requests without
//! `Origin` and same-origin ones are unchanged; `/backend` never answers CORS; with the list
//! empty nothing changes.

mod common;

use std::process::Command;

use common::{Backend, Server};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "http://app.example.test:5173";
const OTHER_APP: &str = "https://second.example.test";
const EVIL: &str = "http://evil.example.test:5173";

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().expect("ASCII header"))
}

/// The comma-separated values of a header, lower-cased.
fn list(h: &HeaderMap, name: &str) -> Vec<String> {
    header(h, name).unwrap_or("").split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

async fn preflight(s: &Server, path: &str, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{}{path}", s.base))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("OPTIONS")
}

/// SMS files in the outbox addressed to `phone`.
fn sms_to(s: &Server, phone: &str) -> usize {
    let Ok(dir) = std::fs::read_dir(s.outbox()) else { return 0 };
    dir.flatten()
        .filter(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().any(|l| l == format!("To: +{phone}")))
        .count()
}

/// Opens the WebSocket with `origin` (none: no header); Ok, or the HTTP status it was refused with.
async fn ws_with_origin(s: &Server, token: &str, origin: Option<&str>) -> Result<(), u16> {
    let url = format!("{}/v1/ws", s.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("WebSocket failed otherwise: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_origins_get_cors_others_are_refused() {
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_CORS_ORIGINS", &format!("{APP}, {OTHER_APP}"))]).await;
    let (sess, _) = s.login("cors@example.org", "Cors").await;
    let token = sess.token.clone();
    let c = reqwest::Client::new();

    // Preflights of the routes an app on another origin calls: /api with a JSON body (what
    // Mesibo's login does), /v1/groups with a bearer token (it answered 405 before).
    for (path, method, methods) in
        [("/api", "POST", &["get", "post"][..]), ("/v1/groups", "POST", &["get", "post", "put", "patch", "delete"][..])]
    {
        let r = preflight(&s, path, APP, method, "authorization,content-type").await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let h = r.headers();
        assert_eq!(header(h, "access-control-allow-origin"), Some(APP), "{path}");
        assert_eq!(list(h, "access-control-allow-methods"), methods, "{path}");
        let allowed = list(h, "access-control-allow-headers");
        assert!(allowed.contains(&"authorization".into()) && allowed.contains(&"content-type".into()), "{allowed:?}");
        assert!(list(h, "vary").contains(&"origin".into()), "{path}");
        assert_eq!(header(h, "access-control-max-age"), Some("600"));
        assert!(header(h, "access-control-allow-credentials").is_none(), "no credentials: bearer tokens only");
    }
    // The second listed origin is echoed too.
    let r = preflight(&s, "/api", OTHER_APP, "POST", "content-type").await;
    assert_eq!(header(r.headers(), "access-control-allow-origin"), Some(OTHER_APP));

    // The requests themselves: Mesibo's phone login (JSON) and a REST list with the Link header exposed.
    let r = c
        .post(format!("{}/api", s.base))
        .header("origin", APP)
        .json(&serde_json::json!({"op": "login", "appid": "com.mesibo.firstapp", "name": "Phone", "phone": "15550001111", "dt": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(r.headers(), "access-control-allow-origin"), Some(APP));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["result"], "OK", "{body}");
    assert_eq!(sms_to(&s, "15550001111"), 1);
    let r = c.get(format!("{}/v1/groups", s.base)).header("origin", APP).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), Some(APP));
    assert!(list(r.headers(), "access-control-expose-headers").contains(&"link".into()));
    let r = c.get(format!("{}/sdk/chorus.mjs", s.base)).header("origin", APP).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(r.headers(), "access-control-allow-origin"), Some(APP), "module import of the SDK");

    // A method a route does not take is still 405 in Chorus's error shape, with the CORS header
    // (so the page can read why).
    for path in ["/v1/groups", "/sdk/mesibo.js"] {
        let r = c.put(format!("{}{path}", s.base)).header("origin", APP).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(header(r.headers(), "access-control-allow-origin"), Some(APP), "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed", "{path}: {body}");
    }

    // An origin not listed: preflight refused without CORS headers, and a request that needs no
    // preflight (a form post) is not served either: no code is texted.
    for path in ["/api", "/v1/groups", "/api.php"] {
        let r = preflight(&s, path, EVIL, "POST", "content-type").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(header(r.headers(), "access-control-allow-origin").is_none(), "{path}");
    }
    let r = c
        .post(format!("{}/api", s.base))
        .header("origin", EVIL)
        .form(&[("op", "login"), ("appid", "x"), ("name", "Evil"), ("phone", "15550002222")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(header(r.headers(), "access-control-allow-origin").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert_eq!(sms_to(&s, "15550002222"), 0, "nothing served to a disallowed origin");
    // A look-alike origin (a listed one as a prefix) and `null` are not listed.
    for origin in ["http://app.example.test:5173.evil.test", "http://app.example.test", "null"] {
        let r = c.get(format!("{}/v1/me", s.base)).header("origin", origin).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origin}");
    }

    // Same origin and no Origin (non-browser clients) work as before.
    let own = s.base.trim_end_matches('/').to_string();
    for origin in [Some(own.as_str()), None] {
        let mut req = c.get(format!("{}/v1/me", s.base)).bearer_auth(&token);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        assert_eq!(req.send().await.unwrap().status(), StatusCode::OK, "{origin:?}");
    }

    // The WebSocket's origin check: refused for an origin not listed, open for a listed one, the
    // server's own and none.
    assert_eq!(ws_with_origin(&s, &token, Some(EVIL)).await, Err(403));
    assert_eq!(ws_with_origin(&s, &token, Some("null")).await, Err(403));
    assert_eq!(ws_with_origin(&s, &token, Some(APP)).await, Ok(()));
    assert_eq!(ws_with_origin(&s, &token, Some(&own)).await, Ok(()));
    assert_eq!(ws_with_origin(&s, &token, None).await, Ok(()));

    // /backend is server to server: no CORS, whatever the origin.
    let r = preflight(&s, "/backend", APP, "POST", "content-type").await;
    assert!(header(r.headers(), "access-control-allow-origin").is_none());
    let r = c
        .post(format!("{}/backend", s.base))
        .header("origin", APP)
        .json(&serde_json::json!({"op": "useradd", "token": common::ADMIN_TOKEN, "user": {"address": "cors-b"}}))
        .send()
        .await
        .unwrap();
    assert!(header(r.headers(), "access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_and_the_default() {
    // "*": every origin, answered with `*` (no credentials are ever allowed).
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_CORS_ORIGINS", "*")]).await;
    let (sess, _) = s.login("star@example.org", "Star").await;
    let r = preflight(&s, "/v1/me", EVIL, "PATCH", "authorization,content-type").await;
    assert!(r.status().is_success());
    assert_eq!(header(r.headers(), "access-control-allow-origin"), Some("*"));
    assert_eq!(ws_with_origin(&s, &sess.token, Some(EVIL)).await, Ok(()));
    drop(s);

    // The default (empty list): no CORS headers, no origin check, as before.
    let s = Server::start(Backend::Sqlite).await;
    let (sess, _) = s.login("plain@example.org", "Plain").await;
    let r = preflight(&s, "/api", APP, "POST", "content-type").await;
    assert!(header(r.headers(), "access-control-allow-origin").is_none());
    let r = reqwest::Client::new()
        .get(format!("{}/v1/me", s.base))
        .header("origin", EVIL)
        .bearer_auth(&sess.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(r.headers(), "access-control-allow-origin").is_none());
    assert_eq!(ws_with_origin(&s, &sess.token, Some(EVIL)).await, Ok(()));
}

/// A list in the config file works; an entry that is not an origin stops the start with a clear message.
#[tokio::test]
async fn origins_in_the_config_file_and_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chorus.toml");
    std::fs::write(&cfg, format!("cors_origins = [\"{APP}\", \"{OTHER_APP}\"]\n")).unwrap();
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_CONFIG", cfg.to_str().unwrap())]).await;
    for o in [APP, OTHER_APP] {
        let r = preflight(&s, "/api", o, "POST", "content-type").await;
        assert_eq!(header(r.headers(), "access-control-allow-origin"), Some(o));
    }
    assert_eq!(preflight(&s, "/api", EVIL, "POST", "content-type").await.status(), StatusCode::FORBIDDEN);
    drop(s);

    let data = dir.path().join("data");
    for (bad, says) in [
        ("https://app.example.com/", "no path"),
        ("app.example.com", "http://"),
        ("https://app.example.com:443", "default port"),
        ("*, https://app.example.com", "only entry"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .env_remove("CHORUS_CONFIG")
            .env("CHORUS_CORS_ORIGINS", bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("cors_origins") && err.contains(says), "{bad}: {err}");
    }
}
