//! `chorus-bot` as a subprocess against a real Chorus server.
//!
//! The bot binary is this package's (`CARGO_BIN_EXE_chorus-bot`, always built for these tests).
//! The `chorus` binary belongs to another package and is not built for them, so the server runs
//! in-process instead, the way `chorus serve` runs it: `Config::load` with the overrides the
//! `crates/chorus` harness passes as flags and variables (free ports, a fresh SQLite data dir,
//! login codes in the outbox), the app from `chorus_server::build`, on its own runtime and
//! thread, stopped when the test drops it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chorus_client::call::{Call, CallOptions, PublishOptions};
use chorus_client::Http;
use chorus_proto::rest::{CreatedGroup, Group, LoginSession};
use serde_json::{json, Value};

/// How long a bot may take beyond its `--duration` (join, leave, process start).
const SLACK: Duration = Duration::from_secs(30);

struct Server {
    base: String,
    data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let overrides = json!({
            "listen": "127.0.0.1:0",
            "data": data.path(),
            "admin_token": "test-admin-token-0123456789abcdef",
            "code_requests_per_ip": 100000,
            "pin_failures_per_ip": 100000,
            "presence_grace_secs": 1,
            "rtc_udp_port": 0,
            "rtc_tcp_port": 0,
        });
        let cfg = chorus_server::config::Config::load(None, overrides).expect("server config");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            rt.block_on(async move {
                let started = async {
                    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
                    let app = chorus_server::build(cfg).await?;
                    anyhow::Ok((listener, app))
                };
                let (listener, app) = match started.await {
                    Ok(v) => v,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                let _ = ready_tx.send(listener.local_addr().map_err(Into::into));
                let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>());
                tokio::select! {
                    r = serve => r.expect("server failed"),
                    _ = stopped => {}
                }
            });
            // Everything the server spawned is dropped with its runtime.
            rt.shutdown_background();
        });
        let addr = ready.recv_timeout(Duration::from_secs(60)).expect("server started").expect("server start");
        Server { base: format!("http://{addr}"), data, stop: Some(stop), thread: Some(thread) }
    }

    fn http(&self) -> Http {
        Http::new(&self.base)
    }

    /// The newest login code mailed to `to`.
    fn code_for(&self, to: &str) -> String {
        let mut newest: Option<(String, String)> = None;
        for e in std::fs::read_dir(self.data.path().join("outbox")).expect("outbox exists").flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let body = std::fs::read_to_string(e.path()).unwrap_or_default();
            if !body.lines().any(|l| l.starts_with("To:") && l.to_lowercase().contains(&to.to_lowercase())) {
                continue;
            }
            let Some(code) = body.split("login code is ").nth(1).map(|r| r.chars().take(6).collect::<String>()) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(n, _)| name > *n) {
                newest = Some((name, code));
            }
        }
        newest.unwrap_or_else(|| panic!("no code for {to} in the outbox")).1
    }

    async fn login(&self, email: &str) -> (LoginSession, Http) {
        let http = self.http();
        http.request_code(email).await.expect("request code");
        let code = self.code_for(email);
        let sess = http.verify(email, &code, email.split('@').next()).await.expect("verify");
        let authed = http.with_token(&sess.token);
        (sess, authed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Room {
    gid: i64,
    owner: Http,
    owner_token: String,
    owner_address: String,
    publisher_pin: String,
    viewer_pin: String,
}

async fn room(s: &Server) -> Room {
    let (sess, owner) = s.login("owner@example.org").await;
    let created: CreatedGroup = owner.post("/v1/groups", &json!({"name": "Call", "room": true})).await.unwrap();
    Room {
        gid: created.group.gid.get(),
        owner,
        owner_token: sess.token,
        owner_address: sess.user.address,
        publisher_pin: created.pins[0].pin.clone(),
        viewer_pin: created.pins[1].pin.clone(),
    }
}

/// Logs a user in and makes them a member with `pin`; returns their token and address.
async fn member_with_pin(s: &Server, r: &Room, email: &str, pin: &str) -> (String, String) {
    let (sess, h) = s.login(email).await;
    let _: Group = h.post(&format!("/v1/groups/{}/join", r.gid), &json!({ "pin": pin })).await.unwrap();
    (sess.token, sess.user.address)
}

/// What a bot run left behind.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `chorus-bot` against `s` with `token`, `--group gid` and `args`.
async fn bot(s: &Server, token: &str, gid: i64, args: &[&str]) -> Run {
    let exe = Path::new(env!("CARGO_BIN_EXE_chorus-bot"));
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--server")
        .arg(&s.base)
        .arg("--token")
        .arg(token)
        .arg("--group")
        .arg(gid.to_string())
        .args(args)
        .env_remove("CHORUS_SERVER")
        .env_remove("CHORUS_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SLACK + Duration::from_secs(10), cmd.output())
        .await
        .expect("chorus-bot did not finish in time")
        .expect("run chorus-bot");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("chorus-bot {args:?} → {:?}\n--- stdout\n{}--- stderr\n{}", run.code, run.stdout, run.stderr);
    run
}

/// The numbers of the table row for `publisher`: `[sid, audio, video]`.
fn table_row(stdout: &str, publisher: &str) -> Option<[u64; 3]> {
    let line = stdout.lines().find(|l| l.split_whitespace().next() == Some(publisher))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    Some([cols.get(1)?.parse().ok()?, cols.get(2)?.parse().ok()?, cols.get(3)?.parse().ok()?])
}

fn json_report(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

/// Two publishing bots at once: each gets the other's audio and video and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishing_bots_receive_each_other() {
    let s = Server::start();
    let r = room(&s).await;
    let (bob_token, bob) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let args = ["--publish", "--expect-publishers", "1", "--duration", "4s"];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let (a, b) = tokio::join!(bot(&s, &r.owner_token, r.gid, &args), bot(&s, &bob_token, r.gid, &json_args));

    // The owner's bot printed a table: a row for Bob with audio (50/s) and video (30/s).
    assert_eq!(a.code, Some(0), "{a:?}");
    assert!(a.stdout.contains(&format!("{} in the call for", r.owner_address)), "{a:?}");
    assert!(a.stdout.contains("published: true"), "{a:?}");
    let [sid, audio, video] = table_row(&a.stdout, &bob).unwrap_or_else(|| panic!("no row for {bob}: {a:?}"));
    assert_eq!(sid, 0);
    assert!(audio >= 25 && video >= 15, "too little from {bob}: audio {audio}, video {video}");
    assert!(table_row(&a.stdout, &r.owner_address).is_none(), "no row for itself: {a:?}");

    // Bob's bot printed JSON: one complete publisher, the owner.
    assert_eq!(b.code, Some(0), "{b:?}");
    let report = json_report(&b.stdout);
    assert_eq!(report["ok"], true);
    assert_eq!(report["address"], bob.as_str());
    assert_eq!(report["complete_publishers"], 1);
    let rows = report["publishers"].as_array().expect("publishers");
    assert_eq!(rows.len(), 1, "{report:#}");
    assert_eq!(rows[0]["publisher"], r.owner_address.as_str());
    assert!(rows[0]["audio_frames"].as_u64() >= Some(25), "{report:#}");
    assert!(rows[0]["video_frames"].as_u64() >= Some(15), "{report:#}");
}

/// A view-only member's bot cannot publish: it says so and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_only_bot_publishing_is_refused() {
    let s = Server::start();
    let r = room(&s).await;
    let (viewer_token, _) = member_with_pin(&s, &r, "viewer@example.org", &r.viewer_pin).await;
    let run = bot(&s, &viewer_token, r.gid, &["--publish", "--duration", "3s"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("publish refused"), "{run:?}");
    assert!(run.stderr.contains("forbidden"), "{run:?}");
    // Refused at once, not after the duration: nothing was reported.
    assert!(!run.stdout.contains("in the call for"), "{run:?}");
}

/// `--expect-publishers 2` with only one publisher in the call fails, after reporting that one
/// (received over ICE-TCP: `--transport tcp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_publishers_fail_the_bot() {
    let s = Server::start();
    let r = room(&s).await;
    let (bob_token, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    // The owner publishes from this process.
    let (conn, _) = chorus_client::Connection::connect(&r.owner, None).await.expect("ws");
    let owner = Call::join(conn, r.gid, CallOptions::default()).await.expect("owner joins");
    owner.publish_camera(0, PublishOptions::default()).await.expect("owner publishes");

    let args = &["--publish", "--expect-publishers", "2", "--duration", "3s", "--json", "--transport", "tcp"];
    let run = bot(&s, &bob_token, r.gid, args).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("from 1 publisher(s), expected at least 2"), "{run:?}");
    let report = json_report(&run.stdout);
    assert_eq!(report["ok"], false);
    assert_eq!((report["complete_publishers"].as_u64(), report["expected_publishers"].as_u64()), (Some(1), Some(2)));
    assert_eq!(report["publishers"][0]["publisher"], r.owner_address.as_str(), "{report:#}");
    owner.leave().await.expect("leave");
}

/// A bad token: the bot fails at once and says the token was rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_fails_clearly() {
    let s = Server::start();
    let r = room(&s).await;
    let run = bot(&s, "not-a-valid-token", r.gid, &["--publish", "--duration", "2s"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("rejected the access token (401 unauthorized)"), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
}
