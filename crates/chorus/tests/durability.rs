//! Durability: the server is killed with SIGKILL while clients send as fast as they can,
//! restarted on the same data, and the clients resend their outbox. Every message the server
//! acknowledged (`sent`) before the kill must be stored exactly once, every resent message
//! exactly once (the server recognises a resend by its client `id`), and nothing else.
//!
//! What is tested is a crash of the *process* (`kill -9`: no shutdown code runs, nothing
//! queued or uncommitted survives), not of the machine. The server answers `sent` only after
//! the writer's transaction has committed (crates/server/src/messaging.rs, "The write path");
//! a commit survives the death of the process whatever the sync settings, because the
//! committed data is in the operating system's hands (SQLite's WAL file; PostgreSQL, which is
//! not killed). Surviving a power cut on top of that is what SQLite's `synchronous = FULL`
//! (the default `sqlite_synchronous`, docs/deployment.md) and PostgreSQL's
//! `synchronous_commit = on` are for; this test cannot observe them.
//!
//! One server per backend lives through every trial. A trial: S sender connections each
//! pipeline up to 64 sends (1:1 to the reader and to a group, alternately), each with a fresh
//! client id entered in the sender's outbox before it goes out; at a random moment of the
//! sending window the server is SIGKILLed and started again on the same data directory or
//! PostgreSQL database; each sender reconnects and resends every outbox entry it has no
//! `sent` for, with the same id; then the reader resumes from its cursor before the trial and
//! must see exactly the trial's messages, once each, with the `mid` and `seq` the senders were
//! answered (the cursor staying valid across restarts). At the end the reader reads the whole
//! history of every conversation over REST and must find every message of every trial exactly
//! once, each conversation's `seq` running 1, 2, 3… without a gap. (History rather than a resume
//! from cursor 0: a sync goes out at most 256 messages a page, and on PostgreSQL a page's query
//! can cost what is left of the sync; the default `sync_limit` of 5,000 keeps that small, but
//! here a resume from cursor 0 through 86k messages took 20 s, the history 2.4 s.)
//!
//! Settings (environment):
//! - `CHORUS_DURABILITY_TRIALS` (20): trials per backend;
//! - `CHORUS_DURABILITY_WINDOW_MS` (1000): the kill comes at a random moment between 30 % and
//!   100 % of this after the senders start;
//! - `CHORUS_DURABILITY_SENDERS` (4): sender connections (users);
//! - `CHORUS_DURABILITY_SEED`: the random seed (printed by every run) to repeat a run's kill times.
//!
//! Each run prints its figures (trials, messages acknowledged, the send rate reached, time);
//! run with `--nocapture` to see them. bench/README.md ("Durability") has the longer form.

mod common;

use chorus_proto::{GroupId, MessageId, Seq};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_client::{Connection, Http};
use chorus_proto::rest::{CreatedGroup, Group, HistoryPage};
use chorus_proto::ws::{ClientFrame, Cursor, Message, ServerFrame};
use common::{Backend, Server};
use serde_json::json;

/// Sends one connection keeps waiting for their `sent` (the server's own per-session bound).
const IN_FLIGHT: usize = 64;

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name} must be a whole number, not {v:?}")),
        Err(_) => default,
    }
}

/// xorshift64*: enough randomness for kill times, and repeatable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Where a message of the outbox goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Reader,
    Group,
}

/// One sender's outbox and the answers it got.
#[derive(Default)]
struct Outbox {
    /// Every message created, in order: entered before its `send` frame goes out.
    items: Vec<(String, To)>,
    /// `sent` answers received before the kill: id → (mid, seq).
    acked: HashMap<String, (i64, i64)>,
}

/// Everything that was sent in one trial: id → (sender address, target, text).
type Expected = HashMap<String, (String, To, String)>;

fn text_of(id: &str) -> String {
    format!("durable {id}")
}

fn send_frame(id: &str, to: To, reader: &str, gid: i64) -> ClientFrame {
    ClientFrame::Send {
        rid: None,
        id: id.into(),
        peer: (to == To::Reader).then(|| reader.to_string()),
        gid: (to == To::Group).then_some(GroupId(gid)),
        text: Some(text_of(id)),
        data: None,
        file: None,
        mtype: None,
    }
}

/// Sends new messages as fast as the server answers (keeping [`IN_FLIGHT`] unanswered) until
/// the connection dies under it; returns the outbox and the connection's resume cursor.
async fn send_until_killed(
    mut conn: Connection,
    prefix: String,
    reader: String,
    gid: i64,
    go: Arc<tokio::sync::Barrier>,
) -> (Outbox, Cursor) {
    let mut out = Outbox::default();
    let mut waiting = 0usize;
    go.wait().await;
    let mut alive = true;
    loop {
        if alive && waiting < IN_FLIGHT {
            let n = out.items.len();
            let id = format!("{prefix}-{n}");
            let to = if n % 2 == 0 { To::Reader } else { To::Group };
            out.items.push((id.clone(), to));
            if conn.send(&send_frame(&id, to, &reader, gid)).await.is_err() {
                alive = false; // the server is gone: read what answers reached us, then stop
            } else {
                waiting += 1;
            }
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(30), conn.recv()).await {
            Ok(Ok(ServerFrame::Sent { id, mid, seq, duplicate, .. })) => {
                assert!(!duplicate, "a new id {id} was answered as a duplicate");
                assert!(out.acked.insert(id.clone(), (mid.get(), seq.get())).is_none(), "two answers for {id}");
                waiting -= 1;
            }
            Ok(Ok(ServerFrame::Error { id, code, message, .. })) => {
                panic!("send {id:?} refused while the server was up: {} {message}", code.as_str())
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return (out, conn.cursor()),
            Err(_) => panic!("no answer and no disconnect within 30 s: was the server killed?"),
        }
    }
}

/// Connects a sender, resuming from its cursor as a client does (the senders receive each
/// other's group messages: a fresh start would bring all they never acked).
async fn connect_resuming(http: &Http, cursor: Option<Cursor>) -> Connection {
    let (conn, hs) = Connection::connect(http, cursor.clone()).await.expect("sender connects");
    assert!(cursor.is_none() || hs.resumed, "a sender's cursor must be honoured after a restart: {:?}", hs.reason);
    conn
}

/// Reconnects (resuming from `cursor`) and resends every outbox entry that has no `sent`, with
/// its id; returns id → (mid, seq, duplicate) and the cursor after.
async fn resend(
    http: Http,
    cursor: Cursor,
    out: &Outbox,
    reader: &str,
    gid: i64,
) -> (HashMap<String, (MessageId, Seq, bool)>, Cursor) {
    let mut conn = connect_resuming(&http, Some(cursor)).await;
    let pending: Vec<&(String, To)> = out.items.iter().filter(|(id, _)| !out.acked.contains_key(id)).collect();
    let mut answers = HashMap::new();
    let mut next = 0;
    while answers.len() < pending.len() {
        while next < pending.len() && next - answers.len() < IN_FLIGHT {
            let (id, to) = pending[next];
            conn.send(&send_frame(id, *to, reader, gid)).await.expect("resend");
            next += 1;
        }
        match conn.next(Duration::from_secs(30)).await.expect("an answer to a resend") {
            ServerFrame::Sent { id, mid, seq, duplicate, .. } => {
                assert!(answers.insert(id.clone(), (mid, seq, duplicate)).is_none(), "two answers for resent {id}");
            }
            ServerFrame::Error { id, code, message, .. } => {
                panic!("resend of {id:?} refused: {} {message}", code.as_str())
            }
            _ => {}
        }
    }
    let cursor = conn.cursor();
    conn.close().await;
    (answers, cursor)
}

/// Checks that `got` holds every message of `want` exactly once, as sent, and nothing else,
/// and that each one acknowledged by the server (`answered`: id → (mid, seq)) is the message
/// that answer named. Returns a description of every difference.
fn compare(got: &[Message], want: &Expected, answered: &HashMap<String, (i64, i64)>, gid: i64) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in got {
        *seen.entry(m.id.as_str()).or_default() += 1;
        let Some((from, to, text)) = want.get(&m.id) else {
            problems.push(format!("stored but never sent: {} (mid {})", m.id, m.mid));
            continue;
        };
        let target_ok = match to {
            To::Reader => m.gid.is_none(),
            To::Group => m.gid == Some(GroupId(gid)),
        };
        if m.from != *from || !target_ok || m.text.as_deref() != Some(text.as_str()) {
            problems.push(format!("{} stored differently from what was sent: {m:?}", m.id));
        }
        if let Some(&(mid, seq)) = answered.get(&m.id) {
            if (m.mid, m.seq) != (MessageId(mid), Seq(seq)) {
                problems
                    .push(format!("{} answered as mid {mid} seq {seq}, stored as mid {} seq {}", m.id, m.mid, m.seq));
            }
        }
    }
    for (id, n) in &seen {
        if *n > 1 {
            problems.push(format!("stored {n} times: {id}"));
        }
    }
    let mut lost: Vec<&String> = want.keys().filter(|id| !seen.contains_key(id.as_str())).collect();
    lost.sort();
    for id in lost {
        let acked = if answered.contains_key(id) { "acknowledged" } else { "resent" };
        problems.push(format!("{acked} message lost: {id}"));
    }
    problems
}

/// Connects the reader resuming from `cursor`; returns its backlog and the cursor after it.
async fn read_from(http: &Http, cursor: Cursor) -> (Vec<Message>, Cursor) {
    let (conn, hs) = Connection::connect(http, Some(cursor.clone())).await.expect("reader connects");
    assert!(hs.resumed, "the reader's cursor {cursor:?} must be honoured after a restart: {:?}", hs.reason);
    assert!(hs.complete, "the whole backlog in one sync");
    let after = conn.cursor();
    conn.close().await;
    (hs.backlog, after)
}

fn fail(seed: u64, what: &str, problems: &[String]) -> ! {
    let shown = problems.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ");
    panic!("{what} (seed {seed}, CHORUS_DURABILITY_SEED={seed} repeats it): {} problems:\n  {shown}", problems.len())
}

async fn acked_messages_survive_kill_9(b: Backend) {
    let _slot = common::call_slot(); // alone: the rate figures are the whole machine's
    let trials = setting("CHORUS_DURABILITY_TRIALS", 20);
    let window = setting("CHORUS_DURABILITY_WINDOW_MS", 1000).max(10);
    let senders = setting("CHORUS_DURABILITY_SENDERS", 4).max(1) as usize;
    let seed = match std::env::var("CHORUS_DURABILITY_SEED") {
        Ok(v) => v.parse().expect("CHORUS_DURABILITY_SEED must be a whole number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1,
    };
    let mut rng = Rng(seed);
    let began = Instant::now();
    let mut s = Server::start_with(
        b,
        &[
            ("CHORUS_SENDS_PER_SECOND", "1000000"),
            ("CHORUS_SEND_BURST", "1000000"),
            // The final check resumes from cursor 0 through everything the run stored.
            ("CHORUS_SYNC_LIMIT", "10000000"),
        ],
    )
    .await;
    let (reader, reader_http) = s.login("reader@example.org", "Reader").await;
    let g: CreatedGroup = reader_http.post("/v1/groups", &json!({"name": "Durable", "room": true})).await.unwrap();
    let gid = g.group.gid;
    let mut tokens = Vec::new();
    let mut cursors: Vec<Option<Cursor>> = vec![None; senders];
    let mut addresses = Vec::new();
    for k in 0..senders {
        let (sess, h) = s.login(&format!("sender{k}@example.org"), &format!("Sender {k}")).await;
        h.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": g.pins[0].pin})).await.unwrap();
        tokens.push(sess.token);
        addresses.push(sess.user.address);
    }
    let reader_token = reader.token;
    let http = |s: &Server, token: &str| Http::new(&s.base).with_token(token);
    let (conn, _) = Connection::connect(&http(&s, &reader_token), None).await.unwrap();
    let mut cursor = conn.cursor();
    conn.close().await;

    let mut everything: Expected = HashMap::new();
    let mut all_answers: HashMap<String, (i64, i64)> = HashMap::new();
    let (mut acked_total, mut unacked_total, mut stored_unacked_total) = (0usize, 0usize, 0usize);
    let mut sending = Duration::ZERO;
    let mut restarts = Duration::ZERO;
    for trial in 0..trials {
        // Senders connect, then all start at once.
        let go = Arc::new(tokio::sync::Barrier::new(senders + 1));
        let mut tasks = Vec::new();
        for k in 0..senders {
            let conn = connect_resuming(&http(&s, &tokens[k]), cursors[k].clone()).await;
            let task =
                send_until_killed(conn, format!("t{trial}-s{k}"), reader.user.address.clone(), gid.get(), go.clone());
            tasks.push(tokio::spawn(task));
        }
        let kill_after = Duration::from_millis(window * 3 / 10 + rng.next() % (window - window * 3 / 10 + 1));
        go.wait().await;
        let start = Instant::now();
        tokio::time::sleep(kill_after).await;
        let killed_at = start.elapsed();
        s.kill_and_restart().await;
        restarts += start.elapsed() - killed_at;
        sending += killed_at;
        let mut outboxes = Vec::new();
        for (k, t) in tasks.into_iter().enumerate() {
            let (out, cursor) = t.await.expect("sender task");
            outboxes.push(out);
            cursors[k] = Some(cursor);
        }
        let acked: usize = outboxes.iter().map(|o| o.acked.len()).sum();
        let items: usize = outboxes.iter().map(|o| o.items.len()).sum();
        assert!(
            outboxes.iter().all(|o| !o.acked.is_empty()),
            "trial {trial}: every sender had sends answered before the kill ({kill_after:?} in)"
        );
        assert!(items > acked, "trial {trial}: the kill came while sends were unanswered");

        // Each sender resends what it has no answer for, with the same ids.
        let mut want: Expected = HashMap::new();
        let mut answered: HashMap<String, (i64, i64)> = HashMap::new();
        let mut stored_unacked = 0;
        let outboxes: Vec<Arc<Outbox>> = outboxes.into_iter().map(Arc::new).collect();
        let mut resends = Vec::new();
        for (k, out) in outboxes.iter().enumerate() {
            for (id, to) in &out.items {
                want.insert(id.clone(), (addresses[k].clone(), *to, text_of(id)));
            }
            answered.extend(out.acked.iter().map(|(id, v)| (id.clone(), *v)));
            let cursor = cursors[k].take().expect("a cursor from the trial");
            let (h, out, to) = (http(&s, &tokens[k]), out.clone(), reader.user.address.clone());
            resends.push(tokio::spawn(async move { resend(h, cursor, &out, &to, gid.get()).await }));
        }
        for (k, r) in resends.into_iter().enumerate() {
            let (again, cursor) = r.await.expect("resend task");
            cursors[k] = Some(cursor);
            for (id, (mid, seq, duplicate)) in again {
                stored_unacked += usize::from(duplicate);
                answered.insert(id, (mid.get(), seq.get()));
            }
        }

        // The reader sees this trial's messages: each once, as answered, nothing else.
        let (got, after) = read_from(&http(&s, &reader_token), cursor.clone()).await;
        let problems = compare(&got, &want, &answered, gid.get());
        if !problems.is_empty() {
            fail(seed, &format!("{b:?} trial {trial}, killed {killed_at:?} into sending"), &problems);
        }
        cursor = after;
        acked_total += acked;
        unacked_total += items - acked;
        stored_unacked_total += stored_unacked;
        everything.extend(want);
        all_answers.extend(answered);
    }

    // Everything from the start, as history: every message of every trial once, each
    // conversation's `seq` running 1, 2, 3… without a gap, and no `pos` handed out twice.
    let reading = Instant::now();
    let reader_http = http(&s, &reader_token);
    let mut got = Vec::new();
    let mut conversations: Vec<String> = addresses.iter().map(|a| format!("/v1/users/{a}/messages")).collect();
    conversations.push(format!("/v1/groups/{gid}/messages"));
    for path in &conversations {
        let mut conv: Vec<Message> = Vec::new();
        let mut before: Option<i64> = None;
        loop {
            let page_path = match before {
                Some(seq) => format!("{path}?limit=500&before={seq}"),
                None => format!("{path}?limit=500"),
            };
            let page: HistoryPage = reader_http.get(&page_path).await.expect("history page");
            conv.splice(0..0, page.messages);
            match page.before {
                Some(seq) => before = Some(seq.get()),
                None => break,
            }
        }
        assert!(conv.iter().map(|m| m.seq).eq(1..=conv.len() as i64), "{path}: seq must run 1, 2, 3… without a gap");
        assert!(conv.windows(2).all(|w| w[0].pos < w[1].pos), "{path}: pos rises with seq");
        got.extend(conv);
    }
    let reading = reading.elapsed();
    let problems = compare(&got, &everything, &all_answers, gid.get());
    if !problems.is_empty() {
        fail(seed, &format!("{b:?} after {trials} kills, the whole history"), &problems);
    }
    let mut positions: Vec<i64> = got.iter().map(|m| m.pos.get()).collect();
    positions.sort_unstable();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "no pos is handed out twice");

    let secs = sending.as_secs_f64();
    println!(
        "durability {b:?}: {trials} kills (seed {seed}), {senders} senders; {acked_total} sends acknowledged \
         before the kills in {secs:.1} s of sending = {:.0} sends/s; {unacked_total} unanswered at the kills \
         (resent), of which {stored_unacked_total} had been stored (answered duplicate); {} messages checked \
         in the history (read in {:.1} s); restarts {:.2} s on average; {:.1} s in all",
        acked_total as f64 / secs,
        got.len(),
        reading.as_secs_f64(),
        restarts.as_secs_f64() / trials.max(1) as f64,
        began.elapsed().as_secs_f64(),
    );
}

both_backends!(acked_messages_survive_kill_9);
