//! `/metrics` against the real `chorus serve`, read by a parser we did not write: the Prometheus
//! project's own Python client (`prometheus_client.openmetrics.parser`, from PyPI; scripts/test
//! installs it). The counters must move with what users do: sessions, messages, a call's media.
//!
//! SQLite only: the metrics are the same code on both stores.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chorus_client::call::stats::Kind;
use chorus_client::call::{CallOptions, PublishOptions};
use common::calls::{join, member_with_pin, room, wait_frames};
use common::{Backend, Server, ADMIN_TOKEN};

/// Parses an exposition with the Prometheus client's OpenMetrics parser; sample name (with its
/// labels, as `name{k="v"}`) → value. A document it rejects fails the test.
fn parse(text: &str) -> HashMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics (pip install prometheus-client?): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

async fn scrape(s: &Server) -> HashMap<String, f64> {
    let r = reqwest::Client::new()
        .get(format!("{}/metrics", s.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    parse(&r.text().await.unwrap())
}

fn get(m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name).unwrap_or_else(|| panic!("{name} missing from /metrics: {:?}", m.keys()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_admin_token() {
    let s = Server::start(Backend::Sqlite).await;
    let (_, member) = s.login("ann@example.org", "Ann").await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", s.base);
    for auth in [None, Some("wrong-token-wrong-token-wrong"), member.token()] {
        let mut req = http.get(&url);
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "with {auth:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_messages_and_calls() {
    let _slot = common::call_slot();
    let s = Server::start(Backend::Sqlite).await;
    let before = scrape(&s).await;
    assert_eq!(get(&before, "chorus_sessions"), 0.0);
    assert_eq!(get(&before, "chorus_calls"), 0.0);

    // Messaging: a group of two, ten sends.
    let r = room(&s).await;
    let (bob, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (mut owner_conn, _) = s.connect(&r.owner).await;
    let (_bob_conn, _) = s.connect(&bob).await;
    for i in 0..10 {
        owner_conn.send_text(None, Some(r.gid), &format!("m-{i}"), "hello").await.expect("send");
    }
    let m = scrape(&s).await;
    assert_eq!(get(&m, "chorus_sessions"), 2.0);
    assert!(get(&m, "chorus_sessions_opened_total") >= 2.0);
    assert_eq!(get(&m, "chorus_messages_stored_total") - get(&before, "chorus_messages_stored_total"), 10.0);
    // Bob's session gets each one (the sender's own session has its answer instead).
    assert!(get(&m, "chorus_messages_delivered_total") >= 10.0, "{m:?}");
    assert!(get(&m, "chorus_store_commit_seconds_count") >= 1.0);
    assert!(get(&m, "chorus_store_batch_size_sum") >= 10.0);
    assert!(get(&m, "chorus_login_codes_sent_total") >= 2.0);

    // An upload (tus creation with the whole body in one request) becomes a file.
    let r2 = reqwest::Client::new()
        .post(format!("{}/v1/uploads", s.base))
        .bearer_auth(r.owner.token().expect("a token"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "5000")
        .header("content-type", "application/offset+octet-stream")
        .body(vec![7u8; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), 201);
    let m2 = scrape(&s).await;
    assert_eq!(get(&m2, "chorus_uploads_completed_total") - get(&m, "chorus_uploads_completed_total"), 1.0);
    assert_eq!(get(&m2, "chorus_upload_bytes_total") - get(&m, "chorus_upload_bytes_total"), 5000.0);

    // A call: the owner publishes, Bob watches.
    let publisher = join(&r.owner, r.gid, CallOptions::default()).await;
    publisher.publish_camera(0, PublishOptions::default()).await.expect("publish");
    // Bob's downlink is narrower than the camera's top layer, so some packets are lost before the
    // estimate settles: NACKs and receiver-report loss to count.
    let viewer =
        join(&bob, r.gid, CallOptions { subscribe_all: true, downlink_kbps: Some(300), ..Default::default() }).await;
    wait_frames(&viewer, publisher.address(), Kind::Video, 30).await;
    let during = scrape(&s).await;
    assert_eq!(get(&during, "chorus_calls"), 1.0);
    assert_eq!(get(&during, "chorus_call_participants"), 2.0);
    let packets = get(&during, "chorus_forwarded_packets_total");
    assert!(packets >= 30.0, "30 video frames arrived, {packets} packets counted");
    assert!(get(&during, "chorus_forwarded_bytes_total") > packets * 50.0);
    // Two joins and a publish at least, each answered by the room.
    let requests =
        get(&during, "chorus_call_request_seconds_count") - get(&before, "chorus_call_request_seconds_count");
    assert!(requests >= 3.0, "{requests} call requests counted");
    get(&during, "chorus_keyframe_requests_total");
    get(&during, "chorus_layer_switches_total");
    // A two-person call on an idle machine keeps up with its input and sends everything.
    assert_eq!(get(&during, "chorus_media_datagrams_dropped_in_total"), 0.0);
    assert_eq!(get(&during, "chorus_media_datagrams_dropped_out_total"), 0.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = scrape(&s).await;
    assert!(get(&later, "chorus_forwarded_packets_total") > packets + 30.0, "media keeps being counted");
    assert!(get(&later, "chorus_subscriber_loss_ratio_count") >= 1.0, "receiver reports observed: {later:?}");
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = scrape(&s).await;
        if get(&m, "chorus_nacks_received_total") >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "no NACK counted from the lossy viewer: {m:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    documents_name_only_real_metrics(&later);

    publisher.abort();
    viewer.abort();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&s).await;
        if get(&m, "chorus_call_participants") == 0.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "participants never went back to 0: {m:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every `chorus_*` name in docs/deployment.md and in the Grafana dashboard is a metric served.
fn documents_name_only_real_metrics(m: &HashMap<String, f64>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/");
    for doc in ["deployment.md", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(format!("{root}{doc}")).unwrap();
        let mut names = 0;
        for (at, _) in text.match_indices("chorus_") {
            let name: String =
                text[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
            // Environment variables (CHORUS_*) are upper case; `chorus_` inside other words is not a metric.
            if at > 0 && text[..at].ends_with(|c: char| c.is_ascii_alphanumeric()) {
                continue;
            }
            names += 1;
            let served = m.keys().any(|k| {
                let base = k.split('{').next().unwrap_or(k);
                base == name || ["_bucket", "_sum", "_count"].iter().any(|s| base == format!("{name}{s}"))
            });
            assert!(served, "{doc} names {name}, which /metrics does not serve");
        }
        assert!(names >= 10, "{doc}: only {names} metric names found");
    }
}
