//! The documents users read stay true: every route in the OpenAPI document
//! exists on the server with that method, and its error codes are the server's.

mod common;

use chorus_proto::ErrorCode;
use common::{Backend, Server};

#[tokio::test]
async fn openapi_matches_the_server() {
    let s = Server::start(Backend::Sqlite).await;
    let doc: serde_json::Value = s.http().get("/v1/openapi.json").await.unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, on_disk, "the served document is docs/openapi.json");

    // Error codes: exactly the server's list.
    let mut documented: Vec<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum in components.schemas")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut actual: Vec<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect();
    documented.sort();
    actual.sort();
    assert_eq!(documented, actual);

    // Every documented route answers with that method (no 404 "no such endpoint", no 405).
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = path.replace("{gid}", "1234567").replace("{address}", "someone").replace("{pin}", "12345678");
        for method in ["get", "post", "patch", "delete", "put"] {
            if item.get(method).is_none() {
                continue;
            }
            if path == "/v1/ws" {
                continue; // upgrade-only; covered by the messaging tests
            }
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = client.request(m, format!("{}{}", s.base, url)).send().await.unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but not allowed");
            assert!(
                !(status == 404 && body.contains("no such endpoint")),
                "{method} {path} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "checked {checked} operations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_sdk_is_served_from_the_binary() {
    let s = Server::start(Backend::Sqlite).await;
    for (path, mime, needle) in [
        ("/sdk/chorus.js", "text/javascript", "ChorusClient"),
        ("/sdk/chorus.mjs", "text/javascript", "export"),
        ("/sdk/chorus.d.ts", "application/typescript", "export declare class ChorusClient"),
        ("/sdk/mesibo.js", "text/javascript", "MESIBO_MSGSTATUS_READ"),
    ] {
        let r = reqwest::get(format!("{}{path}", s.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(mime), "{path}: {ct}");
        let body = r.text().await.unwrap();
        let on_disk =
            std::fs::read_to_string(format!("{}/../../sdk/dist{}", env!("CARGO_MANIFEST_DIR"), &path[4..])).unwrap();
        assert_eq!(body, on_disk, "{path} is the committed build");
        assert!(body.contains(needle), "{path} has {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_is_served_at_the_root() {
    let s = Server::start(Backend::Sqlite).await;
    for page in ["/", "/?room=1000&pin=12345678"] {
        let r = reqwest::get(format!("{}{page}", s.base)).await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = r.text().await.unwrap();
        assert!(html.contains("<div id=\"app\">"), "{page}: {html}");
        // Every asset the page names is served, with its type.
        let assets: Vec<&str> = html.split("./assets/").skip(1).filter_map(|rest| rest.split('"').next()).collect();
        assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
        for a in assets {
            let r = reqwest::get(format!("{}/assets/{a}", s.base)).await.unwrap();
            assert_eq!(r.status(), 200, "{a}");
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            let want = if a.ends_with(".js") { "text/javascript" } else { "text/css" };
            assert!(ct.starts_with(want), "{a}: {ct}");
        }
    }
    // A path that is neither an endpoint nor a file stays a JSON not_found.
    let r = reqwest::get(format!("{}/no/such/thing.js", s.base)).await.unwrap();
    assert_eq!(r.status(), 404);
}
