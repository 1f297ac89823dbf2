//! Webhooks against the real `chorus serve`, received by a receiver we did not write the checks
//! of: a Python HTTP server that verifies every post with the Standard Webhooks reference library
//! (`standardwebhooks` from PyPI; scripts/test installs it), answers 204 when the signature holds
//! and 400 when not, and appends what it accepted to a file the test reads.
//!
//! The first test runs on both stores (the delivery table is SQL of its own); the outage test on
//! SQLite; the last one on three cluster nodes (PostgreSQL + NATS).

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_client::call::media::VideoKind;
use chorus_client::call::{CallOptions, PublishOptions};
use chorus_proto::ws::ServerFrame;
use common::calls::{join, member_with_pin, room};
use common::cluster::{shared_nats, Cluster};
use common::{Backend, Server, ADMIN_TOKEN};
use serde_json::Value;

/// The `mid` of a `sent` answer.
fn mid(answer: ServerFrame) -> i64 {
    match answer {
        ServerFrame::Sent { mid, .. } => mid.get(),
        other => panic!("not sent: {other:?}"),
    }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwd2VsY29tZQ==";

const RECEIVER: &str = r#"
import json, sys
from http.server import HTTPServer, BaseHTTPRequestHandler
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

port, secret, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
wh = Webhook(secret)

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        try:
            wh.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except WebhookVerificationError as e:
            self.send_response(400); self.end_headers(); return
        with open(out, "a") as f:
            f.write(json.dumps({"id": self.headers["webhook-id"], "event": json.loads(body)}) + "\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a):
        pass

srv = HTTPServer(("127.0.0.1", port), H)
print("ready", srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// The Python receiver; killed on drop.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    /// Starts it on `port` (0: any), appending accepted events to `out`.
    fn start(port: u16, out: &Path) -> Receiver {
        let mut child = Command::new("python3")
            .args(["-c", RECEIVER, &port.to_string(), SECRET, out.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("receiver did not start (pip install standardwebhooks?): {line:?}"));
        Receiver { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the receiver accepted: (webhook-id, event).
fn accepted(out: &Path) -> Vec<(String, Value)> {
    let Ok(text) = std::fs::read_to_string(out) else { return Vec::new() };
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["event"].clone())
        })
        .collect()
}

/// Waits until `pred` holds for what the receiver accepted.
async fn wait_accepted(out: &Path, what: &str, pred: impl Fn(&[(String, Value)]) -> bool) -> Vec<(String, Value)> {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = accepted(out);
        if pred(&got) {
            return got;
        }
        assert!(tokio::time::Instant::now() < until, "{what}: got {got:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hook_env(url: &str) -> [(&'static str, String); 3] {
    [
        ("CHORUS_WEBHOOK_URLS", url.to_string()),
        ("CHORUS_WEBHOOK_SECRET", SECRET.to_string()),
        ("CHORUS_WEBHOOK_RETRY_MAX_SECS", "1".to_string()),
    ]
}

async fn start_with(b: Backend, env: &[(&'static str, String)]) -> Server {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(b, &env).await
}

async fn deliveries(s: &Server, query: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{}/admin/webhooks{query}", s.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn out_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("accepted.jsonl")
}

async fn room_participant_and_offline_message_events_arrive_signed_and_in_order(b: Backend) {
    let _slot = common::call_slot();
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir);
    let receiver = Receiver::start(0, &out);
    let s = start_with(b, &hook_env(&receiver.url())).await;
    let r = room(&s).await;
    let (bob, bob_address) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;

    // A group message while Bob has no session: `message.offline` for Bob, none for the sender.
    let (mut owner_conn, _) = s.connect(&r.owner).await;
    let sent = mid(owner_conn.send_text(None, Some(r.gid), "m-1", "are you there?").await.expect("send"));
    let got = wait_accepted(&out, "message.offline", |g| !g.is_empty()).await;
    let ev = &got[0].1;
    assert_eq!(ev["type"], "message.offline");
    assert_eq!(ev["data"]["address"], bob_address.as_str());
    assert_eq!(ev["data"]["from"], r.owner_address.as_str());
    assert_eq!((ev["data"]["gid"].as_i64(), ev["data"]["mid"].as_i64()), (Some(r.gid), Some(sent)));
    assert_eq!(ev["data"]["text"], "are you there?");

    // A call: the owner, then Bob, join; Bob leaves, then the owner.
    let owner_call = join(&r.owner, r.gid, CallOptions::default()).await;
    let bob_call = join(&bob, r.gid, CallOptions::default()).await;
    bob_call.leave().await.expect("bob leaves");
    owner_call.leave().await.expect("owner leaves");
    let got = wait_accepted(&out, "the call's events", |g| g.iter().any(|(_, e)| e["type"] == "room.finished")).await;
    let calls: Vec<(String, Option<String>)> = got[1..]
        .iter()
        .map(|(_, e)| (e["type"].as_str().unwrap().to_string(), e["data"]["address"].as_str().map(str::to_string)))
        .collect();
    let (o, b) = (Some(r.owner_address.clone()), Some(bob_address.clone()));
    assert_eq!(
        calls,
        vec![
            ("room.started".to_string(), None),
            ("participant.joined".to_string(), o.clone()),
            ("participant.joined".to_string(), b.clone()),
            ("participant.left".to_string(), b),
            ("participant.left".to_string(), o),
            ("room.finished".to_string(), None),
        ]
    );
    for (_, e) in &got[1..] {
        assert_eq!(e["data"]["gid"].as_i64(), Some(r.gid), "{e}");
    }
    assert_eq!(got[4].1["data"]["reason"], "left");
    assert!(got.last().unwrap().1["data"]["duration_ms"].as_i64().is_some());

    // An upload (tus, the whole body with the creation request) becomes a file: `upload.ready`.
    let created = reqwest::Client::new()
        .post(format!("{}/v1/uploads", s.base))
        .bearer_auth(bob.token().expect("a token"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "12")
        .header("upload-metadata", "filename bm90ZXMudHh0") // notes.txt
        .header("content-type", "application/offset+octet-stream")
        .body("hello, world")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().to_string();
    let got = wait_accepted(&out, "upload.ready", |g| g.iter().any(|(_, e)| e["type"] == "upload.ready")).await;
    let ready = &got.last().unwrap().1;
    assert_eq!(ready["type"], "upload.ready");
    assert_eq!(ready["data"]["id"], id.as_str());
    assert_eq!(ready["data"]["address"], bob_address.as_str(), "the uploader by address, never an email");
    assert_eq!((ready["data"]["name"].as_str(), ready["data"]["size"].as_i64()), (Some("notes.txt"), Some(12)));
    assert!(ready["data"]["type"].as_str().unwrap().starts_with("text/plain"), "{ready}");

    // Every event once, ids in the order of the events.
    let ids: Vec<i64> = got.iter().map(|(id, _)| id.strip_prefix("msg_").unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The admin sees them delivered; members and strangers see nothing.
    let rows = deliveries(&s, "?status=delivered").await;
    assert_eq!(rows.len(), got.len(), "{rows:#?}");
    assert!(rows.iter().all(|d| d["status"] == "delivered" && d["url"] == receiver.url().as_str()));
    let anon = reqwest::get(format!("{}/admin/webhooks", s.base)).await.unwrap();
    assert_eq!(anon.status(), 401);
    let as_member = reqwest::Client::new()
        .get(format!("{}/admin/webhooks", s.base))
        .bearer_auth(r.owner.token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(as_member.status(), 401);
    let bad = reqwest::Client::new()
        .get(format!("{}/admin/webhooks?status=lost", s.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// The issue asks for a 30 s outage; a few seconds show the same thing here (nothing depends on
/// the length: the backoff is capped at 1 s for the test), and the restart is a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_receiver_outage_and_a_server_crash() {
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir);
    // A free port, with nothing listening on it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let mut s = start_with(Backend::Sqlite, &hook_env(&url)).await;
    let r = room(&s).await;
    let (_bob, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let (mut owner_conn, _) = s.connect(&r.owner).await;
    let mut mids = Vec::new();
    for i in 0..5 {
        mids.push(mid(owner_conn.send_text(None, Some(r.gid), &format!("m-{i}"), &format!("n{i}")).await.unwrap()));
    }
    // Stored and tried: pending with attempts and an error.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending = deliveries(&s, "?status=pending").await;
        if pending.len() == 5 && pending.iter().any(|d| d["attempts"].as_i64() >= Some(1)) {
            assert!(pending.iter().any(|d| d["last_error"] == "could not connect"), "{pending:#?}");
            break;
        }
        assert!(tokio::time::Instant::now() < until, "not stored and tried: {pending:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(owner_conn);
    s.kill_and_restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _receiver = Receiver::start(port, &out);
    let got = wait_accepted(&out, "the five events after the outage", |g| g.len() >= 5).await;
    // Anything doubled would arrive within another round of retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_now = accepted(&out);
    assert_eq!(got_now.len(), 5, "every event exactly once: {got_now:#?}");
    let received: Vec<i64> = got.iter().map(|(_, e)| e["data"]["mid"].as_i64().unwrap()).collect();
    assert_eq!(received, mids, "in the order sent");
    let mut ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    assert!(deliveries(&s, "?status=pending").await.is_empty());
}

both_backends!(room_participant_and_offline_message_events_arrive_signed_and_in_order);

/// A recorded call: when the recording stops, `recording.ready` for each file in the library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_ready_arrives_for_each_file() {
    let _slot = common::call_slot();
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir);
    let receiver = Receiver::start(0, &out);
    let s = start_with(Backend::Sqlite, &hook_env(&receiver.url())).await;
    let r = room(&s).await;
    let call = join(&r.owner, r.gid, CallOptions::default()).await;
    let clip = PublishOptions { video_kind: VideoKind::Clip, ..Default::default() };
    call.publish_camera(0, clip).await.expect("publish");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let path = format!("/v1/groups/{}/call/recording", r.gid);
    let _: Value = r.owner.post(&path, &serde_json::json!({})).await.expect("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    r.owner.delete(&path).await.expect("stop");
    let got = wait_accepted(&out, "recording.ready", |g| g.iter().any(|(_, e)| e["type"] == "recording.ready")).await;
    let ready: Vec<&Value> = got.iter().map(|(_, e)| e).filter(|e| e["type"] == "recording.ready").collect();
    assert_eq!(ready.len(), 1, "one stream, one file: {ready:#?}");
    let d = &ready[0]["data"];
    assert_eq!(d["gid"].as_i64(), Some(r.gid));
    assert!(d["name"].as_str().unwrap().ends_with(".webm"), "{d}");
    assert_eq!(d["type"], "video/webm");
    assert!((2_000..6_000).contains(&d["duration_ms"].as_i64().unwrap()), "{d}");
    assert_eq!(d["width"].as_i64(), Some(1280), "{d}");
    // The file is the library's: the same id is there.
    let lib: Value = r.owner.get(&format!("/v1/groups/{}/media", r.gid)).await.unwrap();
    assert!(lib["media"].as_array().unwrap().iter().any(|m| m["id"] == d["id"]), "{lib}");
    call.leave().await.expect("leave");
}

/// In a cluster every node runs the delivery task over the one table: each event is still
/// posted once, and the events made on one node arrive in the order they were made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_posts_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = out_file(&dir);
    let receiver = Receiver::start(0, &out);
    let env = hook_env(&receiver.url());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let c = Cluster::start(3, &shared_nats(), &env).await;
    c.wait_joined().await;
    let r = room(&c.nodes[0]).await;
    // Bob never connects: every message is a `message.offline` for him. One sender per node.
    let _bob = member_with_pin(&c.nodes[0], &r, "bob@example.org", &r.publisher_pin).await;
    let (carol, _) = member_with_pin(&c.nodes[1], &r, "carol@example.org", &r.publisher_pin).await;
    let (dan, _) = member_with_pin(&c.nodes[2], &r, "dan@example.org", &r.publisher_pin).await;
    let (mut a, _) = c.nodes[0].connect(&r.owner).await;
    let (mut b, _) = c.nodes[1].connect(&carol).await;
    let (mut d, _) = c.nodes[2].connect(&dan).await;
    const EACH: usize = 20;
    async fn send_all(conn: &mut chorus_client::Connection, gid: i64, who: &str) -> Vec<i64> {
        let mut mids = Vec::new();
        for i in 0..EACH {
            let answer = conn.send_text(None, Some(gid), &format!("{who}-{i}"), &format!("{who} {i}")).await;
            mids.push(mid(answer.expect("send")));
        }
        mids
    }
    let (ma, mb, md) =
        tokio::join!(send_all(&mut a, r.gid, "a"), send_all(&mut b, r.gid, "b"), send_all(&mut d, r.gid, "d"));
    let got = wait_accepted(&out, "every event", |g| g.len() >= 3 * EACH).await;
    // Anything posted twice would arrive within another round of the delivery tasks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_now = accepted(&out);
    assert_eq!(got_now.len(), 3 * EACH, "every event exactly once: {got_now:#?}");
    let mut ids: Vec<&String> = got.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3 * EACH, "no webhook-id twice");
    let received: Vec<i64> = got.iter().map(|(_, e)| e["data"]["mid"].as_i64().unwrap()).collect();
    for mids in [ma, mb, md] {
        let order: Vec<i64> = received.iter().copied().filter(|m| mids.contains(m)).collect();
        assert_eq!(order, mids, "one node's events in the order they were made");
    }
}
