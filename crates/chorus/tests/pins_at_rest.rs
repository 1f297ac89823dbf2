//! Pins at rest (issue 17, item 4): the database holds no pin a thief could use. Each pin is
//! stored as a keyed hash (what a join looks it up by) and sealed with the server's pin key
//! (what owners are shown); the key lives outside the database (`DATA/pin-key` or `pin_key`).
//!
//! Here the database is read directly, as someone with a copy of it would, while joining,
//! counting uses, revoking, listing and Mesibo's `/api` answers keep working as before; pins
//! that an older version stored as text are converted at startup; a server started with
//! another key refuses to start unless told to re-issue the pins.

mod common;

use std::path::Path;

use chorus_client::Http;
use chorus_proto::flags::{admin, member};
use chorus_proto::rest::{CreatedGroup, Group, Pin};
use common::{Backend, Server, Store};
use serde_json::{json, Value};
use sqlx::Connection;

/// Every row of the `pins` table as text (every column), read with the backend's own driver.
async fn pin_rows(url: &str, b: Backend) -> Vec<String> {
    match b {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
            sqlx::query_scalar("SELECT p::text FROM pins p").fetch_all(&mut c).await.expect("read pins")
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("open the SQLite file");
            let cols: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info('pins')").fetch_all(&mut c).await.unwrap();
            assert!(cols.len() > 5, "{cols:?}");
            let all = cols.iter().map(|c| format!("quote({c})")).collect::<Vec<_>>().join(" || ',' || ");
            sqlx::query_scalar(&format!("SELECT {all} FROM pins")).fetch_all(&mut c).await.expect("read pins")
        }
    }
}

/// The SQLite database's files as bytes (the database, its WAL and any journal).
fn sqlite_files(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["chorus.db", "chorus.db-wal", "chorus.db-journal"] {
        if let Ok(bytes) = std::fs::read(data.join(name)) {
            all.extend(bytes);
        }
    }
    assert!(!all.is_empty(), "no database file under {}", data.display());
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Asserts that none of `pins` can be read from the database: in no column of the `pins` table
/// and, for SQLite, nowhere in its files. `rows` is how many pins the table must hold.
async fn assert_no_pin_text(url: &str, b: Backend, data: &Path, rows: usize, pins: &[&str]) {
    let text = pin_rows(url, b).await;
    assert_eq!(text.len(), rows, "{text:?}");
    for pin in pins {
        for row in &text {
            assert!(!row.contains(pin), "pin {pin} is readable in the pins row {row}");
        }
        if b == Backend::Sqlite {
            assert!(!contains(&sqlite_files(data), pin), "pin {pin} is in the SQLite files");
        }
    }
}

async fn api(s: &Server, v: Value) -> Value {
    let r = reqwest::Client::new().post(format!("{}/api", s.base)).json(&v).send().await.expect("POST /api");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

async fn join(h: &Http, gid: i64, pin: &str) -> Result<Group, (u16, Option<&'static str>)> {
    h.post::<Group>(&format!("/v1/groups/{gid}/join"), &json!({ "pin": pin })).await.map_err(|e| (e.status, e.code()))
}

/// A pin of 8 digits that is none of `pins`.
fn wrong_pin(pins: &[&str]) -> String {
    (0..).map(|i| format!("{:08}", 12_345_678 + i)).find(|p| !pins.contains(&p.as_str())).unwrap()
}

async fn pins_are_stored_hashed_and_sealed(b: Backend) {
    let s = Server::start(b).await;
    let (owner, ho) = s.login("owner@example.org", "Owner").await;
    let (_, hp) = s.login("p@example.org", "P").await;
    let (_, hq) = s.login("q@example.org", "Q").await;
    let (_, hr) = s.login("r@example.org", "R").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Vault", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let guest: Pin = ho
        .post(
            &format!("/v1/groups/{gid}/pins"),
            &json!({"flags": member::SEND | member::RECV, "label": "guest", "uses": 1}),
        )
        .await
        .unwrap();
    let (ppin, vpin, gpin) = (room.pins[0].pin.clone(), room.pins[1].pin.clone(), guest.pin.clone());
    let all = [ppin.as_str(), vpin.as_str(), gpin.as_str()];

    // A copy of the database shows none of them.
    assert_no_pin_text(&s.db_url(), b, s.data.path(), 3, &all).await;

    // The key is a file of its own, readable by the server's user only.
    let key = std::fs::read_to_string(s.data.path().join("pin-key")).expect("DATA/pin-key");
    assert!(key.trim().len() == 64 && key.trim().bytes().all(|c| c.is_ascii_hexdigit()), "{key:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data.path().join("pin-key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    // Owners see their pins as before: `/v1` lists them (publisher, viewer, then by age), and
    // Mesibo's `rooms` shows pin and spin.
    let listed: Vec<Pin> = ho.get(&format!("/v1/groups/{gid}/pins")).await.unwrap();
    let mut expected = vec![room.pins[0].clone(), room.pins[1].clone(), guest.clone()];
    assert_eq!(listed, expected);
    let rooms = api(&s, json!({"op": "rooms", "token": owner.token})).await;
    assert_eq!(rooms["rooms"][0]["gid"], gid.get(), "{rooms}");
    assert_eq!((rooms["rooms"][0]["pin"].as_str(), rooms["rooms"][0]["spin"].as_str()), (Some(&*ppin), Some(&*vpin)));

    // Joining works as before; a wrong pin is refused with `pin_invalid`.
    assert_eq!(join(&hp, gid.get(), &ppin).await.unwrap().membership.unwrap().flags, member::ALL);
    assert_eq!(join(&hr, gid.get(), &wrong_pin(&all)).await.unwrap_err(), (403, Some("pin_invalid")));
    // Mesibo's `/api joingroup` with the viewer pin.
    let (qs, _) = s.login("q2@example.org", "Q2").await;
    let j = api(&s, json!({"op": "joingroup", "token": qs.token, "gid": gid, "pin": vpin})).await;
    assert_eq!((j["result"].as_str(), j["publish"].as_i64()), (Some("OK"), Some(0)), "{j}");
    // A one-use pin is counted: the second join is refused.
    assert_eq!(join(&hq, gid.get(), &gpin).await.unwrap().membership.unwrap().flags, member::SEND | member::RECV);
    assert_eq!(join(&hr, gid.get(), &gpin).await.unwrap_err(), (403, Some("pin_invalid")));
    expected[2].uses_left = Some(0);
    let listed: Vec<Pin> = ho.get(&format!("/v1/groups/{gid}/pins")).await.unwrap();
    assert_eq!(listed, expected);

    // A pin opens only its own group.
    let other: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Other", "room": true})).await.unwrap();
    assert_eq!(join(&hr, other.group.gid.get(), &ppin).await.unwrap_err(), (403, Some("pin_invalid")));

    // Revoking by the pin works; the pin then fails; a second revoke finds nothing.
    ho.delete(&format!("/v1/groups/{gid}/pins/{vpin}")).await.unwrap();
    assert_eq!(join(&hr, gid.get(), &vpin).await.unwrap_err(), (403, Some("pin_invalid")));
    assert_eq!(ho.delete(&format!("/v1/groups/{gid}/pins/{vpin}")).await.unwrap_err().code(), Some("not_found"));
    let listed: Vec<Pin> = ho.get(&format!("/v1/groups/{gid}/pins")).await.unwrap();
    assert_eq!(listed, vec![expected[0].clone(), expected[2].clone()]);

    let other_pins: Vec<&str> = other.pins.iter().map(|p| p.pin.as_str()).collect();
    assert_no_pin_text(&s.db_url(), b, s.data.path(), 4, &[&ppin, &vpin, &gpin, other_pins[0], other_pins[1]]).await;
}

const OLD_GID: i64 = 4_361_627;
const OLD_GID2: i64 = 4_361_628;
const OLD_PUBLISHER: &str = "86195492";
const OLD_VIEWER: &str = "79325173";
const OLD_ONCE: &str = "55501234";

/// Makes `store` what a server before pins at rest left: its migrations (those before 1704) and
/// a room with a publisher and a viewer pin, and a group with a one-use pin, stored as text.
async fn old_store(b: Backend) -> Store {
    let store = Store::new(b).await;
    let flavour = if b == Backend::Sqlite { "sqlite" } else { "postgres" };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/migrations").join(flavour);
    let mut old = sqlx::migrate::Migrator::new(dir).await.expect("read the migrations");
    let before: Vec<_> = old.migrations.iter().filter(|m| m.version < 1704).cloned().collect();
    assert!(before.len() >= 3 && before.len() < old.migrations.len());
    old.migrations = before.into();
    let rows = [
        format!(
            "INSERT INTO groups (gid, name, owner_uid, flags, call_flags, video_resolution, call_duration, kind, created_at) \
             VALUES ({OLD_GID}, 'Old room', NULL, 0, 3, 0, 0, 0, 1), ({OLD_GID2}, 'Old group', NULL, 0, 3, 0, 0, 0, 1)"
        ),
        format!("INSERT INTO conversations (gid, last_seq) VALUES ({OLD_GID}, 0), ({OLD_GID2}, 0)"),
        format!(
            "INSERT INTO pins (pin, gid, flags, admin_flags, label, expires_at, uses_left, created_by, created_at) VALUES \
             ('{OLD_PUBLISHER}', {OLD_GID}, 31, 0, 'publisher', NULL, NULL, NULL, 1), \
             ('{OLD_VIEWER}', {OLD_GID}, 27, 0, 'viewer', NULL, NULL, NULL, 1), \
             ('{OLD_ONCE}', {OLD_GID2}, 3, 0, 'member', NULL, 1, NULL, 2)"
        ),
    ];
    match b {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&store.url()).await.unwrap();
            old.run(&mut c).await.expect("old migrations");
            for r in &rows {
                sqlx::query(r).execute(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&store.url()).await.unwrap();
            old.run(&mut c).await.expect("old migrations");
            for r in &rows {
                sqlx::query(r).execute(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
        }
    }
    // The test is worth something only if the pins were readable before.
    let text = pin_rows(&store.url(), b).await;
    assert!(text.iter().any(|r| r.contains(OLD_PUBLISHER)), "{text:?}");
    if b == Backend::Sqlite {
        assert!(contains(&sqlite_files(store.data.path()), OLD_PUBLISHER));
    }
    store
}

async fn pins_stored_as_text_by_older_versions_are_converted(b: Backend) {
    let s = Server::start_on(old_store(b).await, &[]).await;
    let old = [OLD_PUBLISHER, OLD_VIEWER, OLD_ONCE];
    assert_no_pin_text(&s.db_url(), b, s.data.path(), 3, &old).await;

    // The old pins still work, and members are shown them as before.
    let (ps, hp) = s.login("p@example.org", "P").await;
    assert_eq!(join(&hp, OLD_GID, OLD_PUBLISHER).await.unwrap().membership.unwrap().flags, member::ALL);
    let rooms = api(&s, json!({"op": "rooms", "token": ps.token})).await;
    assert_eq!(
        (rooms["rooms"][0]["gid"].as_i64(), rooms["rooms"][0]["pin"].as_str()),
        (Some(OLD_GID), Some(OLD_PUBLISHER))
    );
    let (vs, _) = s.login("v@example.org", "V").await;
    let j = api(&s, json!({"op": "joingroup", "token": vs.token, "gid": OLD_GID, "pin": OLD_VIEWER})).await;
    assert_eq!((j["result"].as_str(), j["publish"].as_i64()), (Some("OK"), Some(0)), "{j}");
    let (_, hx) = s.login("x@example.org", "X").await;
    let (_, hy) = s.login("y@example.org", "Y").await;
    assert_eq!(join(&hx, OLD_GID, &wrong_pin(&old)).await.unwrap_err(), (403, Some("pin_invalid")));
    assert!(join(&hx, OLD_GID2, OLD_ONCE).await.is_ok());
    assert_eq!(join(&hy, OLD_GID2, OLD_ONCE).await.unwrap_err(), (403, Some("pin_invalid")), "its one use is spent");

    // A second start converts nothing more and changes nothing.
    let s = Server::start_on(s.stop(), &[]).await;
    let hy = Http::new(&s.base).with_token(hy.token().unwrap());
    assert!(join(&hy, OLD_GID, OLD_PUBLISHER).await.is_ok());
    assert_no_pin_text(&s.db_url(), b, s.data.path(), 3, &old).await;

    // Another key: the server refuses to start, saying how to recover.
    let store = s.stop();
    let other_key = "ab".repeat(32);
    let err = store.start_fails(&[("CHORUS_PIN_KEY", &other_key)]);
    assert!(err.contains("pin_key_reset") && err.contains("3 pins"), "{err}");
    // With pin_key_reset the pins get new values under the new key; the old ones stop working.
    let s = Server::start_on(store, &[("CHORUS_PIN_KEY", &other_key), ("CHORUS_PIN_KEY_RESET", "true")]).await;
    let (_, hz) = s.login("z@example.org", "Z").await;
    assert_eq!(join(&hz, OLD_GID, OLD_PUBLISHER).await.unwrap_err(), (403, Some("pin_invalid")));
    let (ps, _) = s.login("p@example.org", "P").await;
    let rooms = api(&s, json!({"op": "rooms", "token": ps.token})).await;
    let new_pin = rooms["rooms"][0]["pin"].as_str().expect("the room still has its publisher pin").to_string();
    assert!(new_pin.len() == 8 && new_pin != OLD_PUBLISHER, "{rooms}");
    assert_eq!(join(&hz, OLD_GID, &new_pin).await.unwrap().membership.unwrap().flags, member::ALL);
    // The new key is now the database's: it starts without the reset too.
    let s = Server::start_on(s.stop(), &[("CHORUS_PIN_KEY", &other_key)]).await;
    let (_, hw) = s.login("w@example.org", "W").await;
    assert!(join(&hw, OLD_GID, &new_pin).await.is_ok());
    assert_no_pin_text(&s.db_url(), b, s.data.path(), 3, &[&new_pin]).await;
}

/// `PATCH /v1/groups/{gid}/pins/{pin}` (Mesibo's `editPin`) changes what it names, under the
/// rules of creating a pin: `ADD_PIN`, and `ADD_ADMIN` with only admin rights the editor holds.
async fn admins_edit_pins_within_their_rights(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = s.login("owner@example.org", "Owner").await;
    let (adm, ha) = s.login("admin@example.org", "Admin").await;
    let (pinner, hp) = s.login("pinner@example.org", "Pinner").await;
    let (_, hm) = s.login("member@example.org", "Member").await;
    let (_, hj) = s.login("joiner@example.org", "Joiner").await;
    let room: CreatedGroup = ho.post("/v1/groups", &json!({"name": "Edits", "room": true})).await.unwrap();
    let gid = room.group.gid;
    let members = format!("/v1/groups/{gid}/members");
    let add = |addr: String, admin_flags: u32| {
        let ho = ho.clone();
        let members = members.clone();
        async move {
            let body = json!({"addresses": [addr], "flags": member::ALL | member::ADMIN, "admin_flags": admin_flags});
            ho.post::<Value>(&members, &body).await.unwrap();
        }
    };
    add(adm.user.address.clone(), admin::ADD_PIN | admin::ADD_ADMIN | admin::MODIFY).await;
    add(pinner.user.address.clone(), admin::ADD_PIN).await;
    let vpin = room.pins[1].pin.clone();
    join(&hm, gid.get(), &vpin).await.unwrap();
    let ppin = room.pins[0].pin.clone();
    let url = format!("/v1/groups/{gid}/pins/{ppin}");
    let list = || async { ho.get::<Vec<Pin>>(&format!("/v1/groups/{gid}/pins")).await.unwrap() };
    let listed = |pin: String| async move { list().await.into_iter().find(|p| p.pin == pin).expect("listed") };

    // The owner changes flags, label, expiry and uses; the value stays, and joins get the new rights.
    let edited: Pin = ho
        .patch(&url, &json!({"flags": member::SEND | member::RECV, "label": "talkers", "uses": 2, "expires_in": 3600}))
        .await
        .unwrap();
    assert_eq!(
        (edited.pin.as_str(), edited.flags, edited.label.as_str()),
        (ppin.as_str(), member::SEND | member::RECV, "talkers")
    );
    assert_eq!(edited.uses_left, Some(2));
    let expires = edited.expires_at.expect("an expiry");
    assert_eq!(listed(ppin.clone()).await, edited);
    assert_eq!(join(&hj, gid.get(), &ppin).await.unwrap().membership.unwrap().flags, member::SEND | member::RECV);
    assert_eq!(listed(ppin.clone()).await.uses_left, Some(1));
    // `null` removes the limits; what is not named is kept.
    let edited: Pin = ho.patch(&url, &json!({"uses": null, "expires_in": null})).await.unwrap();
    assert_eq!((edited.uses_left, edited.expires_at, edited.label.as_str()), (None, None, "talkers"));
    assert!(expires > 0);

    // Bad values are refused with bad_request and change nothing.
    let before = list().await;
    for body in [
        json!({"label": ""}),
        json!({"uses": 0}),
        json!({"expires_in": 0}),
        json!({"flags": 0x4000_0000u32}),
        json!({"pin": "11111111"}),
    ] {
        let e = ho.patch::<Pin>(&url, &body).await.unwrap_err();
        assert_eq!((e.status, e.code()), (400, Some("bad_request")), "{body}");
    }
    assert_eq!(list().await, before);
    let e = ho.patch::<Pin>(&format!("/v1/groups/{gid}/pins/{}", wrong_pin(&[&ppin, &vpin])), &json!({})).await;
    assert_eq!(e.unwrap_err().code(), Some("not_found"));

    // Rights: a member cannot edit; an admin with ADD_PIN edits member flags but grants no admin
    // part without ADD_ADMIN; an admin with ADD_ADMIN grants only what they hold.
    assert_eq!(hm.patch::<Pin>(&url, &json!({"label": "x"})).await.unwrap_err().code(), Some("forbidden"));
    let p: Pin = hp.patch(&url, &json!({"flags": member::ALL})).await.unwrap();
    assert_eq!(p.flags, member::ALL);
    let e = hp.patch::<Pin>(&url, &json!({"flags": member::ALL | member::ADMIN})).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
    let p: Pin = ha.patch(&url, &json!({"admin_flags": admin::MODIFY})).await.unwrap();
    assert_eq!(p.admin_flags, admin::MODIFY);
    for grant in [admin::DELETE_GROUP, admin::HANGUP, admin::OWNER] {
        let e = ha.patch::<Pin>(&url, &json!({"admin_flags": grant})).await.unwrap_err();
        assert_eq!(e.code(), Some("forbidden"), "{grant:#x}");
    }
    assert_eq!(listed(ppin.clone()).await.admin_flags, admin::MODIFY, "nothing stored");
    // The owner grants owner-level rights, never ownership.
    let e = ho.patch::<Pin>(&url, &json!({"admin_flags": admin::OWNER})).await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));

    // Still stored as hash and seal only.
    assert_no_pin_text(&s.db_url(), b, s.data.path(), 2, &[&ppin, &vpin]).await;
}

both_backends!(
    pins_are_stored_hashed_and_sealed,
    pins_stored_as_text_by_older_versions_are_converted,
    admins_edit_pins_within_their_rights,
);
