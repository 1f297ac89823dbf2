//! Messaging over the real WebSocket: permissions, receipts, presence,
//! resume, idempotent retries, offline delivery, edits, history, bad input.

mod common;

use chorus_proto::{GroupId, MessageId, Pos, Seq};
use std::collections::HashMap;
use std::time::Duration;

use chorus_client::{Connection, Http};
use chorus_proto::flags::{member, presence, status};
use chorus_proto::rest::{CreatedGroup, Group, HistoryPage, Receipts};
use chorus_proto::ws::{ClientFrame, Cursor, Message, ServerFrame};
use common::{Backend, Server, QUIET, WAIT};
use serde_json::json;

fn is_msg(f: &ServerFrame) -> bool {
    matches!(f, ServerFrame::Message(_))
}

fn messages(frames: &[ServerFrame]) -> Vec<Message> {
    frames.iter().filter_map(|f| if let ServerFrame::Message(m) = f { Some(m.clone()) } else { None }).collect()
}

/// A room owned by `owner`, with `others` joined through the publisher pin.
async fn room(owner: &Http, others: &[&Http]) -> (i64, CreatedGroup) {
    let g: CreatedGroup = owner.post("/v1/groups", &json!({"name": "Room", "room": true})).await.unwrap();
    for h in others {
        h.post::<Group>(&format!("/v1/groups/{}/join", g.group.gid), &json!({"pin": g.pins[0].pin})).await.unwrap();
    }
    (g.group.gid.get(), g)
}

async fn send_and_receive_permissions(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = s.login("o@example.org", "O").await;
    let (_, hs) = s.login("s@example.org", "Sender").await;
    let (mute, hm) = s.login("m@example.org", "Mute").await;
    let (deaf, hd) = s.login("d@example.org", "Deaf").await;
    let (gid, g) = room(&ho, &[&hs]).await;
    // Mute may receive but not send; Deaf may send but not receive.
    ho.post::<serde_json::Value>(
        &format!("/v1/groups/{gid}/members"),
        &json!({"addresses": [mute.user.address], "flags": member::RECV}),
    )
    .await
    .unwrap();
    ho.post::<serde_json::Value>(
        &format!("/v1/groups/{gid}/members"),
        &json!({"addresses": [deaf.user.address], "flags": member::SEND}),
    )
    .await
    .unwrap();
    let (mut co, _) = s.connect(&ho).await;
    let (mut cs, _) = s.connect(&hs).await;
    let (mut cm, _) = s.connect(&hm).await;
    let (mut cd, _) = s.connect(&hd).await;

    let r = cm.send_text(None, Some(gid), "m-1", "let me talk").await.unwrap();
    match r {
        ServerFrame::Error { code, status: st, id, .. } => {
            assert_eq!(code.as_str(), "forbidden");
            assert_eq!(st, Some(status::NOT_MEMBER));
            assert_eq!(id.as_deref(), Some("m-1"));
        }
        other => panic!("send without the send flag must fail, got {other:?}"),
    }
    let r = cs.send_text(None, Some(gid), "s-1", "hello room").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { status: 1, duplicate: false, .. }), "{r:?}");
    let r = cd.send_text(None, Some(gid), "d-1", "deaf speaks").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");

    for c in [&mut co, &mut cm] {
        let got = messages(&c.drain(QUIET).await);
        assert_eq!(
            got.iter().map(|m| m.text.as_deref().unwrap()).collect::<Vec<_>>(),
            vec!["hello room", "deaf speaks"]
        );
    }
    let got = messages(&cd.drain(QUIET).await);
    assert!(got.is_empty(), "no receive flag, nothing received: {got:?}");
    let e = hd.get::<HistoryPage>(&format!("/v1/groups/{gid}/messages")).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    // Nothing was stored for the refused send.
    let h: HistoryPage = ho.get(&format!("/v1/groups/{gid}/messages")).await.unwrap();
    assert_eq!(h.messages.len(), 2);
    assert!(h.messages.iter().all(|m| m.id != "m-1"));
    // Not a member at all: forbidden, and unknown targets are clear.
    let (_, hx) = s.login("x@example.org", "X").await;
    let (mut cx, _) = s.connect(&hx).await;
    assert!(matches!(
        cx.send_text(None, Some(gid), "x-1", "hi").await.unwrap(),
        ServerFrame::Error { status: Some(status::NOT_MEMBER), .. }
    ));
    assert!(matches!(
        cx.send_text(None, Some(99_999_999), "x-2", "hi").await.unwrap(),
        ServerFrame::Error { status: Some(status::INVALID_DEST), .. }
    ));
    assert!(matches!(
        cx.send_text(Some("no-such-user"), None, "x-3", "hi").await.unwrap(),
        ServerFrame::Error { status: Some(status::INVALID_DEST), .. }
    ));
    drop(g);
}

async fn receipts_reach_the_sender_only(b: Backend) {
    let s = Server::start(b).await;
    let (a, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (c, hc) = s.login("c@example.org", "C").await;
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;
    let (mut cc, _) = s.connect(&hc).await;

    // 1:1: sent → delivered → read.
    let sent = ca.send_text(Some(&bb.user.address), None, "a-1", "hi B").await.unwrap();
    let ServerFrame::Sent { seq, .. } = sent else { panic!("{sent:?}") };
    let m = cb.expect(WAIT, is_msg).await.unwrap();
    let ServerFrame::Message(m) = m else { unreachable!() };
    assert_eq!(
        (m.from.as_str(), m.peer.as_deref(), m.seq),
        (a.user.address.as_str(), Some(bb.user.address.as_str()), seq)
    );
    cb.ack().await.unwrap();
    let r = ca.expect(WAIT, |f| matches!(f, ServerFrame::Receipt { .. })).await.unwrap();
    assert!(
        matches!(&r, ServerFrame::Receipt { status: 2, by, seq: s2, peer: Some(p), .. } if *by == bb.user.address && *s2 == seq && *p == bb.user.address),
        "{r:?}"
    );
    let ok =
        cb.request(|rid| ClientFrame::Read { rid, peer: Some(a.user.address.clone()), gid: None, seq }).await.unwrap();
    assert!(matches!(ok, ServerFrame::Ok { .. }), "{ok:?}");
    let r = ca.expect(WAIT, |f| matches!(f, ServerFrame::Receipt { .. })).await.unwrap();
    assert!(matches!(&r, ServerFrame::Receipt { status: 3, .. }), "{r:?}");
    let rec: Receipts = ha.get(&format!("/v1/users/{}/receipts", bb.user.address)).await.unwrap();
    let b_state = rec.members.iter().find(|m| m.address == bb.user.address).unwrap();
    assert_eq!((b_state.delivered, b_state.read), (seq, seq));
    // C shares nothing with them: sees no message, no receipt.
    assert!(cc.drain(QUIET).await.iter().all(|f| !matches!(f, ServerFrame::Message(_) | ServerFrame::Receipt { .. })));
    // B gets no receipts for its own reading.
    assert!(cb.drain(QUIET).await.iter().all(|f| !matches!(f, ServerFrame::Receipt { .. })));

    // Group: one delivered receipt per member, to the sender.
    let (gid, _) = room(&ha, &[&hb, &hc]).await;
    let sent = ca.send_text(None, Some(gid), "a-g1", "hi all").await.unwrap();
    let ServerFrame::Sent { seq, .. } = sent else { panic!("{sent:?}") };
    for conn in [&mut cb, &mut cc] {
        conn.expect(WAIT, is_msg).await.unwrap();
        conn.ack().await.unwrap();
    }
    let mut by = Vec::new();
    for _ in 0..2 {
        match ca.expect(WAIT, |f| matches!(f, ServerFrame::Receipt { .. })).await.unwrap() {
            ServerFrame::Receipt { gid: Some(g), by: who, status: 2, seq: s2, .. } if g == gid && s2 == seq => {
                by.push(who)
            }
            other => panic!("{other:?}"),
        }
    }
    by.sort();
    let mut want = vec![bb.user.address.clone(), c.user.address.clone()];
    want.sort();
    assert_eq!(by, want);
    // Acking again changes nothing and sends no duplicate receipt.
    cb.ack().await.unwrap();
    assert!(ca.drain(QUIET).await.iter().all(|f| !matches!(f, ServerFrame::Receipt { .. })));
}

async fn presence_and_typing_reach_the_right_people(b: Backend) {
    let s = Server::start(b).await;
    let (a, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (_, hc) = s.login("c@example.org", "C").await;
    // A and B share a conversation; C shares nothing.
    let (mut ca, _) = s.connect(&ha).await;
    let r = ca.send_text(Some(&bb.user.address), None, "p-1", "hello").await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }));
    let (mut cc, _) = s.connect(&hc).await;
    let (mut cb, _) = s.connect(&hb).await;
    let online = ca.expect(WAIT, |f| matches!(f, ServerFrame::Presence { .. })).await.unwrap();
    assert!(
        matches!(&online, ServerFrame::Presence { from, presence: presence::ONLINE, .. } if *from == bb.user.address),
        "{online:?}"
    );
    // B learned on connect that A is online.
    let seen = cb.expect(WAIT, |f| matches!(f, ServerFrame::Presence { .. })).await.unwrap();
    assert!(
        matches!(&seen, ServerFrame::Presence { from, presence: presence::ONLINE, .. } if *from == a.user.address),
        "{seen:?}"
    );

    // Typing: throttled, then cleared.
    for _ in 0..3 {
        cb.send(&ClientFrame::Typing { peer: Some(a.user.address.clone()), gid: None, on: true }).await.unwrap();
    }
    cb.send(&ClientFrame::Typing { peer: Some(a.user.address.clone()), gid: None, on: false }).await.unwrap();
    let frames = ca.drain(QUIET).await;
    let typing: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Presence { presence: p, peer: Some(to), from, .. }
                if *to == a.user.address && *from == bb.user.address =>
            {
                Some(*p)
            }
            _ => None,
        })
        .collect();
    assert_eq!(typing, vec![presence::TYPING, presence::TYPING_CLEARED]);

    // B goes away: A sees offline after the grace period; C never saw anything about B.
    cb.close().await;
    let off = ca.expect(Duration::from_secs(5), |f| matches!(f, ServerFrame::Presence { .. })).await.unwrap();
    assert!(
        matches!(&off, ServerFrame::Presence { from, presence: presence::OFFLINE, .. } if *from == bb.user.address),
        "{off:?}"
    );
    assert!(
        cc.drain(QUIET).await.iter().all(|f| !matches!(f, ServerFrame::Presence { .. })),
        "C shares no conversation"
    );
}

async fn resume_after_disconnect_gets_every_message_once(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (_, hb) = s.login("b@example.org", "B").await;
    let (gid, _) = room(&ha, &[&hb]).await;
    let (mut cb, hs) = s.connect(&hb).await;
    assert!(hs.backlog.is_empty());
    const N: usize = 120;
    // A sends N messages from its own task while B drops mid-stream.
    let sender = {
        let ha = ha.clone();
        tokio::spawn(async move {
            let (mut ca, _) = Connection::connect(&ha, None).await.unwrap();
            for i in 0..N {
                let r = ca.send_text(None, Some(gid), &format!("m{i}"), &format!("message {i}")).await.unwrap();
                assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let mut got: Vec<Message> = Vec::new();
    while got.len() < N / 3 {
        if let ServerFrame::Message(m) = cb.expect(WAIT, is_msg).await.unwrap() {
            got.push(m);
        }
    }
    let cursor: Cursor = cb.cursor();
    cb.abort(); // network gone, no close handshake
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (mut cb, hs) = Connection::connect(&hb, Some(cursor.clone())).await.unwrap();
    assert!(hs.resumed, "resume honoured: {:?}", hs.reason);
    got.extend(hs.backlog);
    while got.len() < N {
        match cb.expect(WAIT, is_msg).await {
            Ok(ServerFrame::Message(m)) => got.push(m),
            Ok(_) => unreachable!(),
            Err(e) => panic!("only {} of {N} messages: {e}", got.len()),
        }
    }
    sender.await.unwrap();
    // Exactly once, in order, nothing extra afterwards.
    assert!(messages(&cb.drain(QUIET).await).is_empty(), "no duplicates after the last message");
    let ids: Vec<String> = got.iter().map(|m| m.id.clone()).collect();
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(ids, want);
    let seqs: Vec<i64> = got.iter().map(|m| m.seq.get()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous seq");
    assert!(got.windows(2).all(|w| w[1].pos > w[0].pos), "increasing pos");
}

async fn resume_that_cannot_be_served_says_so(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_SYNC_LIMIT", "5")]).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (cb, hs) = s.connect(&hb).await;
    let epoch = hs.epoch.clone();
    let cursor = cb.cursor();
    cb.close().await;
    let (mut ca, _) = s.connect(&ha).await;
    for i in 0..8 {
        ca.send_text(Some(&bb.user.address), None, &format!("g{i}"), "x").await.unwrap();
    }
    let (_, h) = Connection::connect(&hb, Some(cursor)).await.unwrap();
    assert!(!h.resumed);
    assert_eq!(h.reason.as_deref(), Some("gap_too_large"));
    let (_, h) = Connection::connect(&hb, Some(Cursor { epoch: "other".into(), pos: Pos(1) })).await.unwrap();
    assert_eq!((h.resumed, h.reason.as_deref()), (false, Some("epoch_mismatch")));
    let (_, h) = Connection::connect(&hb, Some(Cursor { epoch, pos: Pos(1_000_000) })).await.unwrap();
    assert_eq!((h.resumed, h.reason.as_deref()), (false, Some("cursor_ahead")));
    // Without resume, the undelivered backlog is capped at sync_limit and says it is incomplete.
    assert_eq!(h.backlog.len(), 5);
    assert!(!h.complete);
    // History over REST has all of it.
    let page: HistoryPage = hb.get(&format!("/v1/users/{}/messages?limit=3", ca_address(&ha).await)).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["g5", "g6", "g7"]);
    let before = page.before.expect("more pages");
    let page: HistoryPage =
        hb.get(&format!("/v1/users/{}/messages?limit=10&before={before}", ca_address(&ha).await)).await.unwrap();
    assert_eq!(page.messages.len(), 5);
    assert_eq!(page.before, None);
}

async fn ca_address(h: &Http) -> String {
    h.get::<chorus_proto::ws::SessionUser>("/v1/me").await.unwrap().address
}

async fn retried_send_is_not_duplicated(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (mut cb, _) = s.connect(&hb).await;
    let (mut ca, _) = s.connect(&ha).await;
    let first = ca.send_text(Some(&bb.user.address), None, "same-id", "once").await.unwrap();
    let again = ca.send_text(Some(&bb.user.address), None, "same-id", "once").await.unwrap();
    let (
        ServerFrame::Sent { mid: m1, seq: s1, duplicate: d1, .. },
        ServerFrame::Sent { mid: m2, seq: s2, duplicate: d2, .. },
    ) = (&first, &again)
    else {
        panic!("{first:?} {again:?}")
    };
    assert_eq!((m1, s1, *d1, *d2), (m2, s2, false, true));
    // A retry from a new connection (after a drop) is recognised too.
    ca.abort();
    let (mut ca, _) = s.connect(&ha).await;
    let third = ca.send_text(Some(&bb.user.address), None, "same-id", "once").await.unwrap();
    assert!(matches!(third, ServerFrame::Sent { mid, duplicate: true, .. } if mid == *m1));
    let got = messages(&cb.drain(QUIET).await);
    assert_eq!(got.len(), 1, "delivered once: {got:?}");
    let page: HistoryPage = hb.get(&format!("/v1/users/{}/messages", ca_address(&ha).await)).await.unwrap();
    assert_eq!(page.messages.len(), 1, "stored once");
    // Many concurrent retries of one id from several connections: still one.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let ha = ha.clone();
        let to = bb.user.address.clone();
        tasks.push(tokio::spawn(async move {
            let (mut c, _) = Connection::connect(&ha, None).await.unwrap();
            match c.send_text(Some(&to), None, "race-id", "race").await.unwrap() {
                ServerFrame::Sent { mid, .. } => mid,
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut mids = Vec::new();
    for t in tasks {
        mids.push(t.await.unwrap());
    }
    mids.dedup();
    assert_eq!(mids.len(), 1, "one message id for all retries");
    assert_eq!(messages(&cb.drain(QUIET).await).len(), 1);
}

async fn offline_delivery_and_every_session(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (mut ca, _) = s.connect(&ha).await;
    for i in 0..3 {
        ca.send_text(Some(&bb.user.address), None, &format!("off{i}"), &format!("while you were out {i}"))
            .await
            .unwrap();
    }
    // B was offline: a fresh connection gets the three.
    let (mut b1, h) = s.connect(&hb).await;
    assert_eq!(h.backlog.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["off0", "off1", "off2"]);
    b1.ack().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Delivered now: a second fresh device gets no backlog.
    let (mut b2, h2) = s.connect(&hb).await;
    assert!(h2.backlog.is_empty(), "{:?}", h2.backlog);
    // A live message reaches both of B's sessions, and A's second session, not A's sending one.
    let (mut a2, _) = s.connect(&ha).await;
    ca.send_text(Some(&bb.user.address), None, "live", "to every tab").await.unwrap();
    for c in [&mut b1, &mut b2, &mut a2] {
        let got = messages(&c.drain(QUIET).await);
        assert_eq!(got.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["live"]);
    }
    assert!(messages(&ca.drain(QUIET).await).is_empty(), "no echo to the sending session");
}

async fn edit_and_delete_own_messages(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (_, hb) = s.login("b@example.org", "B").await;
    let (gid, _) = room(&ha, &[&hb]).await;
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;
    let ServerFrame::Sent { mid, pos, .. } = ca.send_text(None, Some(gid), "e1", "tpyo").await.unwrap() else {
        panic!()
    };
    cb.expect(WAIT, is_msg).await.unwrap();
    let ok = ca.request(|rid| ClientFrame::Edit { rid, mid, text: Some("typo".into()), data: None }).await.unwrap();
    assert!(matches!(ok, ServerFrame::Ok { .. }), "{ok:?}");
    let ServerFrame::Message(e) = cb.expect(WAIT, is_msg).await.unwrap() else { unreachable!() };
    assert_eq!((e.mid, e.text.as_deref(), e.edited, e.deleted), (mid, Some("typo"), true, false));
    assert!(e.pos > pos, "a change takes a new stream position");
    // B cannot edit or delete A's message.
    let err = cb.request(|rid| ClientFrame::Edit { rid, mid, text: Some("hacked".into()), data: None }).await.unwrap();
    assert!(matches!(err, ServerFrame::Error { code, .. } if code.as_str() == "forbidden"), "{err:?}");
    let err = cb.request(|rid| ClientFrame::Delete { rid, mid }).await.unwrap();
    assert!(matches!(err, ServerFrame::Error { code, .. } if code.as_str() == "forbidden"), "{err:?}");
    let err = cb.request(|rid| ClientFrame::Delete { rid, mid: MessageId(987_654) }).await.unwrap();
    assert!(matches!(err, ServerFrame::Error { code, .. } if code.as_str() == "not_found"), "{err:?}");
    ca.request(|rid| ClientFrame::Delete { rid, mid }).await.unwrap();
    let ServerFrame::Message(d) = cb.expect(WAIT, is_msg).await.unwrap() else { unreachable!() };
    assert!(d.deleted && d.text.is_none());
    let err = ca.request(|rid| ClientFrame::Edit { rid, mid, text: Some("again".into()), data: None }).await.unwrap();
    assert!(matches!(err, ServerFrame::Error { code, .. } if code.as_str() == "conflict"), "{err:?}");
    let h: HistoryPage = hb.get(&format!("/v1/groups/{gid}/messages")).await.unwrap();
    assert_eq!(h.messages.len(), 1);
    assert!(h.messages[0].deleted);
}

async fn bad_frames_get_error_frames(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_MAX_MESSAGE_BYTES", "1000"), ("CHORUS_MAX_FRAME_BYTES", "4096")]).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (mut ca, _) = s.connect(&ha).await;
    let err_code = |f: ServerFrame| match f {
        ServerFrame::Error { code, .. } => code.as_str().to_string(),
        other => panic!("expected an error frame, got {other:?}"),
    };
    for raw in ["not json", "{\"type\":\"nope\"}", "{\"type\":\"send\"}", "{\"type\":\"hello\"}", "[]"] {
        ca.send_raw(raw).await.unwrap();
        let f = ca.expect(WAIT, |f| matches!(f, ServerFrame::Error { .. })).await.unwrap();
        assert_eq!(err_code(f), "bad_request", "{raw}");
    }
    let both = ca
        .request(|rid| ClientFrame::Send {
            rid,
            id: "x".into(),
            peer: Some(bb.user.address.clone()),
            gid: Some(GroupId(1000)),
            text: Some("x".into()),
            data: None,
            file: None,
            mtype: None,
        })
        .await
        .unwrap();
    assert_eq!(err_code(both), "bad_request");
    let empty = ca
        .request(|rid| ClientFrame::Send {
            rid,
            id: "x".into(),
            peer: Some(bb.user.address.clone()),
            gid: None,
            text: None,
            data: None,
            file: None,
            mtype: None,
        })
        .await
        .unwrap();
    assert_eq!(err_code(empty), "bad_request");
    let long_id = ca.send_text(Some(&bb.user.address), None, &"i".repeat(65), "x").await.unwrap();
    assert_eq!(err_code(long_id), "bad_request");
    let big = ca.send_text(Some(&bb.user.address), None, "big", &"x".repeat(2000)).await.unwrap();
    assert!(matches!(&big, ServerFrame::Error { status: Some(status::RETRY_LATER), .. }));
    assert_eq!(err_code(big), "too_large");
    // Still usable after all that.
    let pong = ca.request(|rid| ClientFrame::Ping { rid }).await.unwrap();
    assert!(matches!(pong, ServerFrame::Pong { .. }));
    assert!(matches!(
        ca.send_text(Some(&bb.user.address), None, "fine", "ok").await.unwrap(),
        ServerFrame::Sent { .. }
    ));
    // A frame over max_frame_bytes closes the connection; nothing was stored.
    ca.send_raw(&format!("{{\"type\":\"ping\",\"rid\":\"{}\"}}", "p".repeat(8000))).await.unwrap();
    assert!(
        ca.expect(WAIT, |f| matches!(f, ServerFrame::Pong { .. })).await.is_err(),
        "oversized frame is not answered"
    );
    let page: HistoryPage = hb.get(&format!("/v1/users/{}/messages", ca_address(&ha).await)).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["fine"]);
    // A bad token is refused before the upgrade.
    let url = format!("{}/v1/ws?token=nope-nope-nope-nope", s.base.replacen("http", "ws", 1));
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // The first frame must be hello.
    let h2 = hb.clone();
    let url = format!("{}/v1/ws?token={}", s.base.replacen("http", "ws", 1), h2.token().unwrap());
    let (mut raw, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    raw.send(tokio_tungstenite::tungstenite::Message::Text("{\"type\":\"ping\"}".into())).await.unwrap();
    let first = raw.next().await.unwrap().unwrap();
    let f: ServerFrame = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(err_code(f), "bad_request");
    // Rate limit on sends.
    let s2 = Server::start_with(b, &[("CHORUS_SENDS_PER_SECOND", "1"), ("CHORUS_SEND_BURST", "3")]).await;
    let (_, ha) = s2.login("a@example.org", "A").await;
    let (bb, _) = s2.login("b@example.org", "B").await;
    let (mut ca, _) = s2.connect(&ha).await;
    let mut codes = HashMap::new();
    for i in 0..6 {
        let f = ca.send_text(Some(&bb.user.address), None, &format!("r{i}"), "x").await.unwrap();
        let k = match f {
            ServerFrame::Sent { .. } => "sent".to_string(),
            other => err_code(other),
        };
        *codes.entry(k).or_insert(0) += 1;
    }
    assert_eq!(codes.get("sent"), Some(&3));
    assert_eq!(codes.get("rate_limited"), Some(&3));
    // A retry of a stored message is answered even while rate limited.
    let again = ca.send_text(Some(&bb.user.address), None, "r0", "x").await.unwrap();
    assert!(matches!(again, ServerFrame::Sent { duplicate: true, .. }), "{again:?}");
}

/// Logging out (or deleting the user) ends their live sessions at once; other tokens' sessions stay.
async fn revoked_tokens_end_sessions(b: Backend) {
    let s = Server::start(b).await;
    let (_, h1) = s.login("a@example.org", "A").await;
    let (_, h2) = s.login("a@example.org", "A").await;
    let (mut c1, _) = s.connect(&h1).await;
    let (mut c2, _) = s.connect(&h2).await;
    h1.post::<serde_json::Value>("/v1/auth/logout", &json!({})).await.unwrap();
    let f = c1.expect(WAIT, |f| matches!(f, ServerFrame::Error { .. })).await.unwrap();
    assert!(matches!(f, ServerFrame::Error { code: chorus_proto::ErrorCode::Unauthorized, .. }), "{f:?}");
    assert!(c1.next(WAIT).await.is_err(), "connection closed");
    let pong = c2.request(|rid| ClientFrame::Ping { rid }).await.unwrap();
    assert!(matches!(pong, ServerFrame::Pong { .. }), "the other token's session stays");
    // Deleting the user through the backend ends every session.
    let me = ca_address(&h2).await;
    let r = s.backend(json!({"op": "deluser", "token": common::ADMIN_TOKEN, "user": {"address": me}})).await;
    assert_eq!(r["result"], true, "{r}");
    let f = c2.expect(WAIT, |f| matches!(f, ServerFrame::Error { .. })).await.unwrap();
    assert!(matches!(f, ServerFrame::Error { code: chorus_proto::ErrorCode::Unauthorized, .. }), "{f:?}");
}

/// A member's sync never includes what the group said before they joined.
async fn backlog_starts_at_join(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (_, hb) = s.login("b@example.org", "B").await;
    let (cb, _) = s.connect(&hb).await;
    let early = cb.cursor();
    cb.close().await;
    let (gid, g) = room(&ha, &[]).await;
    let (mut ca, _) = s.connect(&ha).await;
    for i in 0..3 {
        ca.send_text(None, Some(gid), &format!("before{i}"), "before you came").await.unwrap();
    }
    hb.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({"pin": g.pins[0].pin})).await.unwrap();
    ca.send_text(None, Some(gid), "after", "welcome").await.unwrap();
    let (_, h) = Connection::connect(&hb, Some(early)).await.unwrap();
    assert!(h.resumed);
    assert_eq!(h.backlog.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["after"]);
    let (_, h) = Connection::connect(&hb, None).await.unwrap();
    assert_eq!(h.backlog.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["after"]);
}

/// The permission rule for messages: a member's flags bind in every group mode (a member
/// without SEND never sends, whatever the mode); the mode decides only for non-members, who
/// may send under `SEND_BY_ANYONE` alone.
///
/// Before pins bound (issue 10), group flags 0 let every member send whatever their flags, and
/// this test asserted that ("members may send"); that was the hole, and it now asserts the rule.
async fn group_policy_modes(b: Backend) {
    use chorus_proto::flags::group;
    let s = Server::start(b).await;
    let (_, ho) = s.login("o@example.org", "O").await;
    let (m, hm) = s.login("m@example.org", "M").await;
    let (w, hw) = s.login("w@example.org", "W").await;
    let (_, hx) = s.login("x@example.org", "X").await;
    let (mut cm, _) = s.connect(&hm).await;
    let (mut cw, _) = s.connect(&hw).await;
    let (mut cx, _) = s.connect(&hx).await;
    let g: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Policy", "flags": 0})).await.unwrap();
    let gid = g.group.gid;
    // A member with no flags at all, and one who may send (and nothing else).
    for (who, flags) in [(&m.user.address, 0), (&w.user.address, member::SEND)] {
        ho.post::<serde_json::Value>(
            &format!("/v1/groups/{gid}/members"),
            &json!({"addresses": [who], "flags": flags}),
        )
        .await
        .unwrap();
    }
    let sent = |f: &ServerFrame| matches!(f, ServerFrame::Sent { .. });
    let mut n = 0;
    for mode in [0, group::SEND_BY_SELECTED, group::SEND_BY_ANYONE] {
        ho.patch::<Group>(&format!("/v1/groups/{gid}"), &json!({"flags": mode})).await.unwrap();
        n += 1;
        let r = cm.send_text(None, Some(gid.get()), &format!("m{n}"), "no flags").await.unwrap();
        assert!(!sent(&r), "a member without SEND sent under {mode:#x}: {r:?}");
        let r = cw.send_text(None, Some(gid.get()), &format!("w{n}"), "send flag").await.unwrap();
        assert!(sent(&r), "a member with SEND could not send under {mode:#x}: {r:?}");
        let r = cx.send_text(None, Some(gid.get()), &format!("x{n}"), "outsider").await.unwrap();
        assert_eq!(sent(&r), mode == group::SEND_BY_ANYONE, "a non-member under {mode:#x}: {r:?}");
    }
    let h: HistoryPage = ho.get(&format!("/v1/groups/{gid}/messages")).await.unwrap();
    assert_eq!(h.messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["w1", "w2", "w3", "x3"]);
}

/// The conversation list: newest first, names, unread counts that reading clears.
async fn conversation_list(b: Backend) {
    use chorus_proto::rest::ConversationSummary;
    let s = Server::start(b).await;
    let (a, ha) = s.login("a@example.org", "Ann").await;
    let (bb, hb) = s.login("b@example.org", "Bob").await;
    let (gid, _) = room(&ha, &[&hb]).await;
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;
    ca.send_text(Some(&bb.user.address), None, "c1", "one").await.unwrap();
    ca.send_text(Some(&bb.user.address), None, "c2", "two").await.unwrap();
    cb.send_text(None, Some(gid), "c3", "in the room").await.unwrap();
    let list: Vec<ConversationSummary> = hb.get("/v1/conversations").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].gid, list[0].name.as_str(), list[0].unread),
        (Some(GroupId(gid)), "Room", 0),
        "own message is not unread"
    );
    assert_eq!(
        (list[1].peer.as_deref(), list[1].name.as_str(), list[1].unread),
        (Some(a.user.address.as_str()), "Ann", 2)
    );
    assert_eq!(list[1].last.as_ref().and_then(|m| m.text.as_deref()), Some("two"));
    cb.request(|rid| ClientFrame::Read { rid, peer: Some(a.user.address.clone()), gid: None, seq: Seq(2) })
        .await
        .unwrap();
    let list: Vec<ConversationSummary> = hb.get("/v1/conversations").await.unwrap();
    assert_eq!((list[1].unread, list[1].read_seq), (0, Seq(2)));
    let list: Vec<ConversationSummary> = ha.get("/v1/conversations").await.unwrap();
    assert_eq!(list.iter().map(|c| c.unread).collect::<Vec<_>>(), vec![1, 0]);
    assert_eq!(list[1].name, "Bob");
}

/// Sends may be pipelined: answers come back in request order and messages are stored in that order.
async fn pipelined_sends_keep_their_order(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;
    const N: usize = 100;
    for i in 0..N {
        let frame = ClientFrame::Send {
            rid: Some(format!("r{i}")),
            id: format!("p{i}"),
            peer: Some(bb.user.address.clone()),
            gid: None,
            text: Some(format!("#{i}")),
            data: None,
            file: None,
            mtype: None,
        };
        ca.send(&frame).await.unwrap();
    }
    // A request that is answered at once still waits its turn behind the sends.
    ca.send(&ClientFrame::Ping { rid: Some("last".into()) }).await.unwrap();
    let mut answers = Vec::new();
    while answers.len() < N + 1 {
        match ca.next(WAIT).await.unwrap() {
            ServerFrame::Sent { rid, seq, .. } => answers.push((rid.unwrap(), seq)),
            ServerFrame::Pong { rid } => answers.push((rid.unwrap(), Seq(-1))),
            _ => {}
        }
    }
    let rids: Vec<String> = answers.iter().map(|(r, _)| r.clone()).collect();
    let mut want: Vec<String> = (0..N).map(|i| format!("r{i}")).collect();
    want.push("last".into());
    assert_eq!(rids, want);
    assert!(answers[..N].iter().enumerate().all(|(i, (_, seq))| *seq == i as i64 + 1), "stored in order");
    let mut got = Vec::new();
    while got.len() < N {
        if let ServerFrame::Message(m) = cb.expect(WAIT, is_msg).await.unwrap() {
            got.push(m.id);
        }
    }
    assert_eq!(got, (0..N).map(|i| format!("p{i}")).collect::<Vec<_>>());
}

/// Messages a member may not receive never crowd out the ones they may.
async fn unreceivable_messages_do_not_block_sync(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_SYNC_LIMIT", "5")]).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (gid, _) = room(&ha, &[]).await;
    ha.post::<serde_json::Value>(
        &format!("/v1/groups/{gid}/members"),
        &json!({"addresses": [bb.user.address], "flags": member::SEND}),
    )
    .await
    .unwrap();
    let (mut ca, _) = s.connect(&ha).await;
    for i in 0..8 {
        ca.send_text(None, Some(gid), &format!("g{i}"), "not for B").await.unwrap();
    }
    ca.send_text(Some(&bb.user.address), None, "direct", "for B").await.unwrap();
    let (_, h) = Connection::connect(&hb, None).await.unwrap();
    assert_eq!(h.backlog.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), vec!["direct"]);
    assert!(h.complete);
}

/// A member who left can no longer edit or delete what they said in the group.
async fn former_members_cannot_change_group_messages(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (_, hb) = s.login("b@example.org", "B").await;
    let (gid, _) = room(&ha, &[&hb]).await;
    let (mut cb, _) = s.connect(&hb).await;
    let ServerFrame::Sent { mid, .. } = cb.send_text(None, Some(gid), "b1", "hello").await.unwrap() else { panic!() };
    hb.post::<serde_json::Value>(&format!("/v1/groups/{gid}/leave"), &json!({})).await.unwrap();
    let r = cb.request(|rid| ClientFrame::Edit { rid, mid, text: Some("changed".into()), data: None }).await.unwrap();
    assert!(matches!(r, ServerFrame::Error { code: chorus_proto::ErrorCode::Forbidden, .. }), "{r:?}");
    let r = cb.request(|rid| ClientFrame::Delete { rid, mid }).await.unwrap();
    assert!(matches!(r, ServerFrame::Error { code: chorus_proto::ErrorCode::Forbidden, .. }), "{r:?}");
    let h: HistoryPage = ha.get(&format!("/v1/groups/{gid}/messages")).await.unwrap();
    assert_eq!(h.messages[0].text.as_deref(), Some("hello"));
}

/// Messages larger than the socket buffers (4 KiB) travel whole, both ways.
async fn large_messages_travel_whole(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("a@example.org", "A").await;
    let (bb, hb) = s.login("b@example.org", "B").await;
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;
    let big: String = (0..12_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let r = ca.send_text(Some(&bb.user.address), None, "big", &big).await.unwrap();
    assert!(matches!(r, ServerFrame::Sent { .. }), "{r:?}");
    let ServerFrame::Message(m) = cb.expect(WAIT, is_msg).await.unwrap() else { unreachable!() };
    assert_eq!(m.text.as_deref(), Some(big.as_str()));
}

both_backends!(
    large_messages_travel_whole,
    unreceivable_messages_do_not_block_sync,
    former_members_cannot_change_group_messages,
    pipelined_sends_keep_their_order,
    revoked_tokens_end_sessions,
    backlog_starts_at_join,
    conversation_list,
    group_policy_modes,
    send_and_receive_permissions,
    receipts_reach_the_sender_only,
    presence_and_typing_reach_the_right_people,
    resume_after_disconnect_gets_every_message_once,
    resume_that_cannot_be_served_says_so,
    retried_send_is_not_duplicated,
    offline_delivery_and_every_session,
    edit_and_delete_own_messages,
    bad_frames_get_error_frames,
);
