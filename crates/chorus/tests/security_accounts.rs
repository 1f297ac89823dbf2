//! Issue 18, accounts part: each test performs an attack from the adversarial review against a
//! real `chorus serve` and checks that it no longer works.
//!
//! - finding 5: guessing login codes has a total bound across codes; requesting codes for
//!   someone does not lock them out;
//! - finding 6: edits, deletes and reads count against the send rate;
//! - finding 8: the data directory and its secrets are private (0700 / 0600);
//! - finding 9: tokens are refused in the query strings of `/api` and `/backend`;
//! - low items: the admin token is not printed, display names cannot hold text-direction or
//!   invisible characters, expired tokens, codes and outbox files are purged.

mod common;

use chorus_proto::{GroupId, Seq};
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::ErrorCode;
use common::{Backend, Server, ADMIN_TOKEN};
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

/// An HTTP client whose connections come from `ip` (any 127.0.0.0/8 address works on
/// loopback), so the server sees a different client network per attacker.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::from(ip)).build().expect("client")
}

/// POSTs JSON to `path`; returns the status and the error code (None on success) and the body.
async fn post(c: &reqwest::Client, s_base: &str, path: &str, body: Value) -> (u16, Option<String>, Value) {
    let r = c.post(format!("{s_base}{path}")).json(&body).send().await.expect("POST");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().map(str::to_string);
    (status, code, v)
}

/// Asks for a login code: `(200, None)` when one was sent (the server answers 202), else the
/// status and error code.
async fn request_code(c: &reqwest::Client, base: &str, email: &str) -> (u16, Option<String>) {
    match post(c, base, "/v1/auth/code", json!({"email": email})).await {
        (202, None, _) => (200, None),
        (st, code, _) => (st, code),
    }
}

async fn verify(c: &reqwest::Client, base: &str, email: &str, code: &str) -> (u16, Option<String>, Value) {
    post(c, base, "/v1/auth/verify", json!({"email": email, "code": code, "name": "Victim"})).await
}

/// A six-digit code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// `chorus serve` on a data directory the test chooses (to restart on it, or to prepare it),
/// SQLite, started through `sh` with umask 022 like a typical service.
struct Proc {
    child: Child,
    base: String,
    /// Standard output up to "Chorus listening on".
    stdout: Vec<String>,
}

impl Proc {
    fn start(data: &Path, env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env_remove("CHORUS_CONFIG")
            .env_remove("CHORUS_ADMIN_TOKEN")
            .env("CHORUS_RTC_UDP_PORT", "0")
            .env("CHORUS_RTC_TCP_PORT", "0")
            .env("CHORUS_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn chorus");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut sent = false;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                seen.push(line.clone());
                if !sent {
                    if let Some(url) = line.strip_prefix("Chorus listening on ") {
                        let _ = tx.send((url.trim().to_string(), seen.clone()));
                        sent = true;
                    }
                }
            }
        });
        let (base, stdout) = rx.recv_timeout(Duration::from_secs(60)).expect("server did not start within 60 s");
        Proc { child, base, stdout }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// The newest code in `outbox` for `to`.
fn code_in(outbox: &Path, to: &str) -> String {
    let mut newest: Option<(String, String)> = None;
    for e in std::fs::read_dir(outbox).expect("outbox").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let body = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !body.lines().any(|l| l.starts_with("To:") && l.contains(to)) {
            continue;
        }
        if let Some(code) = body.split("login code is ").nth(1).map(|r| r.chars().take(6).collect::<String>()) {
            if newest.as_ref().is_none_or(|(n, _)| name > *n) {
                newest = Some((name, code));
            }
        }
    }
    newest.expect("a code in the outbox").1
}

// ---------------------------------------------------------------- finding 5

/// The attack: request a code, guess 5 times, request a new code, guess again, … (before:
/// 25 guesses an hour per account, forever). Now at most `code_failures_per_identity_ip`
/// (10) wrong guesses per day come from one network and `code_failures_per_identity` (30)
/// from all networks together; past that every guess is refused with `code_locked` before
/// it is compared, even on a fresh code and even when it is right.
async fn code_guesses_are_capped_across_codes(b: Backend) {
    // Default limits; a short interval so the attacker may ask for codes as fast as allowed.
    let s = Server::start_with(b, &[("CHORUS_CODE_REQUEST_INTERVAL_SECS", "1")]).await;
    let victim = "victim@example.org";
    let mut counted = 0;
    for net in [2u8, 3, 4] {
        let attacker = client_from([127, 0, 0, net]);
        for _round in 0..2 {
            assert_eq!(request_code(&attacker, &s.base, victim).await, (200, None), "a code after the last one locked");
            let code = s.code_for(victim);
            for i in 1..=5 {
                let (st, err, body) = verify(&attacker, &s.base, victim, wrong(&code)).await;
                let expected = if i < 5 { "code_invalid" } else { "code_locked" };
                assert_eq!((st, err.as_deref()), (if i < 5 { 422 } else { 429 }, Some(expected)), "{body}");
                counted += 1;
            }
        }
        // The network's share is used up: a fresh code takes no guess from it, not even the right one.
        assert_eq!(request_code(&attacker, &s.base, victim).await, (200, None));
        let code = s.code_for(victim);
        for guess in [wrong(&code), code.as_str()] {
            let (st, err, body) = verify(&attacker, &s.base, victim, guess).await;
            assert_eq!((st, err.as_deref()), (429, Some("code_locked")), "network {net}: {body}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains("no code is accepted for up to 24 hours"),
                "{body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(1100)).await; // the live code's request interval
    }
    assert_eq!(counted, 30);
    // All networks together have used the identity's 30: a new network and a fresh code get
    // no guess either. 10^6 codes / 30 guesses a day: brute force is hopeless.
    let fresh_net = client_from([127, 0, 0, 5]);
    assert_eq!(request_code(&fresh_net, &s.base, victim).await, (200, None));
    let code = s.code_for(victim);
    let (st, err, body) = verify(&fresh_net, &s.base, victim, wrong(&code)).await;
    assert_eq!((st, err.as_deref()), (429, Some("code_locked")), "{body}");
    // That is the documented price: the victim too must wait for the window to end.
    let (st, err, body) = verify(&client_from([127, 0, 0, 1]), &s.base, victim, &code).await;
    assert_eq!((st, err.as_deref()), (429, Some("code_locked")), "{body}");
    // Other identities are not affected.
    let (_, http) = s.login("bystander@example.org", "B").await;
    assert!(http.get::<Value>("/v1/me").await.is_ok());
}

/// The count of wrong guesses is stored with the code: a restart does not reset it.
#[tokio::test]
async fn code_guess_count_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("CHORUS_CODE_FAILURES_PER_IDENTITY", "3"), ("CHORUS_CODE_REQUEST_INTERVAL_SECS", "0")];
    let c = client_from([127, 0, 0, 1]);
    let p = Proc::start(&data, &env);
    assert_eq!(request_code(&c, &p.base, "r@example.org").await, (200, None));
    let code = code_in(&data.join("outbox"), "r@example.org");
    for _ in 0..3 {
        assert_eq!(verify(&c, &p.base, "r@example.org", wrong(&code)).await.1.as_deref(), Some("code_invalid"));
    }
    drop(p);
    let p = Proc::start(&data, &env);
    assert_eq!(request_code(&c, &p.base, "r@example.org").await, (200, None));
    let code = code_in(&data.join("outbox"), "r@example.org");
    let (st, err, body) = verify(&c, &p.base, "r@example.org", &code).await;
    assert_eq!((st, err.as_deref()), (429, Some("code_locked")), "the 4th guess of the day is refused: {body}");
}

/// The attack: use up the victim's code requests (before: 5 an hour, then an hour's lock-out).
/// Now a request only has to wait for `code_request_interval_secs` while the earlier code is
/// live, and a refused request does not touch that code: the victim logs in.
async fn code_request_spam_does_not_lock_the_victim_out(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_CODE_REQUEST_INTERVAL_SECS", "2")]).await;
    let victim = "v@example.org";
    let attacker = client_from([127, 0, 0, 9]);
    let me = client_from([127, 0, 0, 1]);
    let mut sent = 0;
    for _ in 0..20 {
        match request_code(&attacker, &s.base, victim).await {
            (200, None) => sent += 1,
            (429, Some(c)) if c == "rate_limited" => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sent, 1, "one code per interval");
    // The victim asks too soon after the attacker: told to wait, not locked out.
    assert_eq!(request_code(&me, &s.base, victim).await, (429, Some("rate_limited".into())));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(request_code(&me, &s.base, victim).await, (200, None));
    let code = s.code_for(victim);
    // The attacker goes on; the victim's code is not replaced.
    for _ in 0..20 {
        assert_eq!(request_code(&attacker, &s.base, victim).await, (429, Some("rate_limited".into())));
    }
    assert_eq!(s.code_for(victim), code);
    let (st, err, body) = verify(&me, &s.base, victim, &code).await;
    assert_eq!((st, err), (200, None), "{body}");
    assert_eq!(body["user"]["name"], "Victim");
}

/// A code whose mail could not be sent holds nobody up: asking again right away is not
/// refused by the request interval.
#[tokio::test]
async fn an_unsent_code_does_not_hold_up_a_retry() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let s = Server::start_with(
        Backend::Sqlite,
        &[("CHORUS_SMTP_HOST", "127.0.0.1"), ("CHORUS_SMTP_PORT", &closed), ("CHORUS_SMTP_SECURITY", "none")],
    )
    .await;
    let c = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(request_code(&c, &s.base, "w@example.org").await, (500, Some("internal".into())));
    }
}

// ---------------------------------------------------------------- finding 6

/// The attack: 1,000 edits of 16 KiB, each fanned out to the group, past the send limit.
/// Now edits (and deletes and reads) take from the same budget as sends: past it they are
/// refused with `rate_limited`, and the group receives only what was accepted.
async fn edits_deletes_and_reads_count_against_the_send_rate(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_SENDS_PER_SECOND", "1"), ("CHORUS_SEND_BURST", "10")]).await;
    let (a, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let r = s
        .backend(json!({"op": "groupadd", "token": ADMIN_TOKEN,
                        "group": {"name": "G", "m": format!("{},{}", a.user.address, bb.user.address)}}))
        .await;
    let gid = r["group"]["gid"].as_i64().unwrap_or_else(|| panic!("{r}"));
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;
    let started = Instant::now();
    let sent = ca.send_text(None, Some(gid), "m1", "hello").await.unwrap();
    let ServerFrame::Sent { mid, .. } = sent else { panic!("{sent:?}") };
    // 60 edits of 16 KiB, pipelined.
    let big = "x".repeat(16 * 1024 - 100);
    let mut rids = Vec::new();
    for i in 0..60 {
        let rid = ca.rid();
        let text = format!("{i} {big}");
        ca.send(&ClientFrame::Edit { rid: Some(rid.clone()), mid, text: Some(text), data: None }).await.unwrap();
        rids.push(rid);
    }
    let (mut ok, mut limited) = (0, 0);
    for rid in &rids {
        match ca.reply(rid).await.unwrap() {
            ServerFrame::Ok { .. } => ok += 1,
            ServerFrame::Error { code: ErrorCode::RateLimited, .. } => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Burst 10, one of them used by the send; plus one per second that passed.
    let allowed = 9 + elapsed.ceil() as usize;
    assert!(ok >= 9 && ok <= allowed, "{ok} edits accepted in {elapsed:.1} s; at most {allowed}");
    assert_eq!(ok + limited, 60);
    // The group receives the message and only the accepted edits.
    let frames = cb.drain(Duration::from_millis(800)).await;
    let messages = frames.iter().filter(|f| matches!(f, ServerFrame::Message(m) if m.mid == mid)).count();
    assert_eq!(messages, 1 + ok, "one message frame per accepted send or edit");
    // Deletes are counted too (A's budget is spent: at most a slot or two came back since).
    let mut rids = Vec::new();
    for _ in 0..20 {
        let rid = ca.rid();
        ca.send(&ClientFrame::Delete { rid: Some(rid.clone()), mid }).await.unwrap();
        rids.push(rid);
    }
    let mut delete_limited = 0;
    for rid in &rids {
        if matches!(ca.reply(rid).await.unwrap(), ServerFrame::Error { code: ErrorCode::RateLimited, .. }) {
            delete_limited += 1;
        }
    }
    assert!(delete_limited >= 15, "only {delete_limited} of 20 deletes refused");
    // And reads: B has sent nothing, so B has the full burst of 10 and one more a second.
    let t = Instant::now();
    let mut rids = Vec::new();
    for _ in 0..30 {
        let rid = cb.rid();
        cb.send(&ClientFrame::Read { rid: Some(rid.clone()), peer: None, gid: Some(GroupId(gid)), seq: Seq(1) })
            .await
            .unwrap();
        rids.push(rid);
    }
    let mut read_ok = 0;
    for rid in &rids {
        match cb.reply(rid).await.unwrap() {
            ServerFrame::Ok { .. } => read_ok += 1,
            ServerFrame::Error { code: ErrorCode::RateLimited, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let allowed = 10 + t.elapsed().as_secs_f64().ceil() as usize;
    assert!(read_ok >= 10 && read_ok <= allowed, "{read_ok} of 30 reads accepted; at most {allowed}");
}

// ---------------------------------------------------------------- finding 8 and the admin token

/// The data directory, the database (with its -wal and -shm), the outbox and the admin token
/// are private however the umask is set, and a start makes them private again if they are
/// not (a server upgraded from a version that made them world-readable). The generated admin
/// token is not printed.
#[cfg(unix)]
#[tokio::test]
async fn data_directory_and_secrets_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Proc::start(&data, &[]);
    let token = std::fs::read_to_string(data.join("admin-token")).expect("generated admin token").trim().to_string();
    let out = p.stdout.join("\n");
    assert!(!out.contains(&token), "the admin token is not printed: {out}");
    assert!(out.contains(&data.join("admin-token").display().to_string()), "where it is stored is: {out}");
    let c = reqwest::Client::new();
    assert_eq!(request_code(&c, &p.base, "m@example.org").await, (200, None));
    let outbox = data.join("outbox");
    let mail = std::fs::read_dir(&outbox).unwrap().next().unwrap().unwrap().path();
    let files = |d: &Path| -> Vec<(PathBuf, u32)> {
        ["admin-token", "chorus.db", "chorus.db-wal", "chorus.db-shm"]
            .iter()
            .map(|f| d.join(f))
            .chain([mail.clone()])
            .map(|f| {
                let m = mode(&f);
                (f, m)
            })
            .collect()
    };
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&outbox), 0o700);
    for (f, m) in files(&data) {
        assert_eq!(m, 0o600, "{}", f.display());
    }
    drop(p);

    // As an older version (or a careless operator) left them.
    set_mode(&data, 0o755);
    set_mode(&outbox, 0o755);
    for (f, _) in files(&data) {
        set_mode(&f, 0o644);
    }
    let p = Proc::start(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&outbox), 0o700);
    for (f, m) in files(&data) {
        assert_eq!(m, 0o600, "{} is made private at start", f.display());
    }
    // The stored token is still the admin token, and nothing new was printed about it.
    assert!(!p.stdout.join("\n").contains("admin token"), "{:?}", p.stdout);
    let r: Value = c
        .post(format!("{}/backend", p.base))
        .json(&json!({"op": "useradd", "token": token, "user": {"address": "bot"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], true, "{r}");
}

// ---------------------------------------------------------------- finding 9

async fn mesibo_get(c: &reqwest::Client, url: String, bearer: Option<&str>) -> Value {
    let mut r = c.get(url);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap().json().await.unwrap()
}

/// The attack: read the admin token (or a user's token) from a proxy's access log, where a
/// `GET /backend?token=…` or `/api?token=…` left it. Now no token is accepted in a query
/// string, right or wrong, so none is in the logs: the reply is `TOKENINURL` and nothing is done.
#[tokio::test]
async fn tokens_are_refused_in_query_strings() {
    let s = Server::start(Backend::Sqlite).await;
    let c = reqwest::Client::new();
    let be = |q: &str| format!("{}/backend/?{q}", s.base);
    // The admin token in the query: refused, the user is not created.
    let r = mesibo_get(&c, be(&format!("op=useradd&addr=mallory&token={ADMIN_TOKEN}")), None).await;
    assert_eq!((r["result"].clone(), r["error"].clone()), (json!(false), json!("TOKENINURL")), "{r}");
    let r = s.backend(json!({"op": "deluser", "token": ADMIN_TOKEN, "user": {"address": "mallory"}})).await;
    assert_eq!(r["error"], "BADUSER", "mallory was never created: {r}");
    // Also with a POST body, also a wrong token, also beside a right header.
    let r: Value = c
        .post(format!("{}/backend?token={ADMIN_TOKEN}", s.base))
        .json(&json!({"op": "useradd", "user": {"address": "mallory"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"], "TOKENINURL", "{r}");
    let r = mesibo_get(&c, be("op=useradd&addr=mallory&token=wrong"), None).await;
    assert_eq!(r["error"], "TOKENINURL", "{r}");
    // A user token to revoke (`usertoken`) in the query is refused too; the token keeps working.
    let (sess, http) = s.login("u@example.org", "U").await;
    let r = mesibo_get(&c, be(&format!("op=deltoken&usertoken={}", sess.token)), Some(ADMIN_TOKEN)).await;
    assert_eq!(r["error"], "TOKENINURL", "{r}");
    assert!(http.get::<Value>("/v1/me").await.is_ok());
    // The legacy GET form works with the admin token in `Authorization: Bearer`.
    let r = mesibo_get(&c, be("op=useradd&addr=bot&name=Bot"), Some(ADMIN_TOKEN)).await;
    assert_eq!(r["result"], true, "{r}");
    let r = mesibo_get(&c, be("op=useradd&addr=bot2"), Some("wrong-token-wrong-token")).await;
    assert_eq!(r["error"], "AUTHFAIL", "{r}");

    // /api: a user token in the query is refused (rooms, setgroup, logout …).
    let api = |q: &str| format!("{}/api?{q}", s.base);
    let r = mesibo_get(&c, api(&format!("op=rooms&token={}", sess.token)), None).await;
    assert_eq!((r["result"].clone(), r["error"].clone()), (json!("FAIL"), json!("TOKENINURL")), "{r}");
    let r = mesibo_get(&c, api(&format!("op=logout&token={}", sess.token)), None).await;
    assert_eq!(r["error"], "TOKENINURL", "{r}");
    assert!(http.get::<Value>("/v1/me").await.is_ok(), "the logout in the URL did nothing");
    // In a form body or a header it works.
    let r = mesibo_get(&c, api("op=rooms"), Some(&sess.token)).await;
    assert_eq!(r["result"], "OK", "{r}");
    let r: Value = c
        .post(format!("{}/api", s.base))
        .form(&[("op", "rooms"), ("token", &sess.token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], "OK", "{r}");
}

// ---------------------------------------------------------------- low items

/// The attack: a display name with U+202E (right-to-left override) or zero-width characters,
/// which shows as another text ("Ann\u{202E}gpj.exe" reads "Annexe.jpg") or as a name that
/// looks like someone else's. Refused wherever a name is set.
#[tokio::test]
async fn display_names_cannot_hold_direction_or_invisible_characters() {
    let s = Server::start(Backend::Sqlite).await;
    let spoofs = ["Ann\u{202E}gpj.exe", "Ad\u{200B}min", "\u{2067}Bob", "Eve\u{FEFF}"];
    // Login (verify) with a name.
    for (i, name) in spoofs.iter().enumerate() {
        let email = format!("n{i}@example.org");
        let http = s.http();
        http.request_code(&email).await.unwrap();
        let e = http.verify(&email, &s.code_for(&email), Some(name)).await.unwrap_err();
        assert_eq!((e.status, e.code()), (400, Some("bad_request")), "{name:?}");
    }
    // Profile update.
    let (_, http) = s.login("ann@example.org", "Ann").await;
    for name in spoofs {
        let e = http.patch::<Value>("/v1/me", &json!({ "name": name })).await.unwrap_err();
        assert_eq!(e.code(), Some("bad_request"), "{name:?}");
    }
    assert_eq!(http.get::<Value>("/v1/me").await.unwrap()["name"], "Ann");
    // Real names with joiners still work.
    let family = "Kim \u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    let me: Value = http.patch("/v1/me", &json!({ "name": family })).await.unwrap();
    assert_eq!(me["name"], family);
    // Mesibo /backend useradd and /api login.
    for name in spoofs {
        let r =
            s.backend(json!({"op": "useradd", "token": ADMIN_TOKEN, "user": {"address": "x1", "name": name}})).await;
        assert_eq!(r["error"], "BADPARA", "{name:?}: {r}");
    }
    let c = reqwest::Client::new();
    let api = |f: Vec<(&'static str, String)>| {
        let c = c.clone();
        let url = format!("{}/api", s.base);
        async move { c.post(url).form(&f).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let r = api(vec![("op", "login".into()), ("email", "m@example.org".into()), ("name", "Mo".into())]).await;
    assert_eq!(r["result"], "OK", "{r}");
    let code = s.code_for("m@example.org");
    let r = api(vec![
        ("op", "login".into()),
        ("email", "m@example.org".into()),
        ("name", spoofs[0].into()),
        ("code", code),
    ])
    .await;
    assert_eq!(r["error"], "MISSINGNAME", "an invalid name: {r}");
}

/// Expired tokens, old login codes and outbox files older than twice the code lifetime are
/// deleted by the purge task (here every second, with one-second lifetimes).
#[tokio::test]
async fn expired_tokens_codes_and_outbox_files_are_purged() {
    let s = Server::start_with(
        Backend::Sqlite,
        &[
            ("CHORUS_TOKEN_TTL_SECS", "1"),
            ("CHORUS_CODE_TTL_SECS", "2"),
            ("CHORUS_CODE_FAILURE_WINDOW_SECS", "1"),
            ("CHORUS_PURGE_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let (_, http) = s.login("p@example.org", "P").await;
    // A code that is never used, with a wrong guess.
    let h = s.http();
    h.request_code("q@example.org").await.unwrap();
    let code = s.code_for("q@example.org");
    assert_eq!(h.verify("q@example.org", wrong(&code), None).await.unwrap_err().code(), Some("code_invalid"));
    let db = format!("sqlite://{}?mode=ro", s.data.path().join("chorus.db").display());
    let count = |table: &'static str| {
        let db = db.clone();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut c).await.unwrap()
        }
    };
    assert_eq!(count("tokens").await, 1);
    assert_eq!(count("login_codes").await, 2);
    let outbox_files = || std::fs::read_dir(s.outbox()).unwrap().count();
    assert_eq!(outbox_files(), 2);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (t, c, f) = (count("tokens").await, count("login_codes").await, outbox_files());
        if (t, c, f) == (0, 0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "still {t} tokens, {c} codes, {f} outbox files");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(http.get::<Value>("/v1/me").await.unwrap_err().status, 401);
}

both_backends!(
    code_guesses_are_capped_across_codes,
    code_request_spam_does_not_lock_the_victim_out,
    edits_deletes_and_reads_count_against_the_send_rate,
);
