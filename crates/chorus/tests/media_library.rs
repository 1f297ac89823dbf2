//! Group media libraries and files in chat against a real `chorus serve`, on SQLite and
//! PostgreSQL: who may add, list, read and delete; metadata of media made at test time by
//! ffmpeg (Debian's package); live `group_media` frames; a 20 MB file in a 1:1 chat; the group
//! quota.

mod common;

use std::path::Path;
use std::process::Command;

use chorus_client::Http;
use chorus_proto::flags::{admin, member};
use chorus_proto::rest::CreatedGroup;
use chorus_proto::ws::{ClientFrame, FileRef, MediaAction, MediaEntry, ServerFrame};
use chorus_proto::GroupId;
use common::{Backend, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Uploads `bytes` by tus (creation, then one PATCH); returns the upload id.
async fn upload(s: &Server, token: &str, name: &str, bytes: &[u8]) -> String {
    use base64::Engine as _;
    let http = reqwest::Client::new();
    let meta = format!("filename {}", base64::engine::general_purpose::STANDARD.encode(name));
    let r = http
        .post(format!("{}/v1/uploads", s.base))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", bytes.len().to_string())
        .header("Upload-Metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let id = r.headers()["location"].to_str().unwrap().strip_prefix("/v1/uploads/").unwrap().to_string();
    if !bytes.is_empty() {
        let r = http
            .patch(format!("{}/v1/uploads/{id}", s.base))
            .bearer_auth(token)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", "0")
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{:?}", r.text().await);
    }
    id
}

/// Makes a file with ffmpeg in `dir`; returns its bytes.
fn ffmpeg(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("ffmpeg (Debian package ffmpeg) must be installed");
    assert!(st.success(), "ffmpeg {args:?}");
    std::fs::read(out).unwrap()
}

/// A raw request: status and body.
async fn raw(method: reqwest::Method, url: String, token: Option<&str>, body: Option<Value>) -> (u16, Vec<u8>) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

async fn add(s: &Server, token: &str, gid: i64, upload: &str) -> (u16, Value) {
    let (st, body) = raw(
        reqwest::Method::POST,
        format!("{}/v1/groups/{gid}/media", s.base),
        Some(token),
        Some(json!({ "upload": upload })),
    )
    .await;
    (st, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn status(s: &Server, method: reqwest::Method, token: &str, path: &str) -> u16 {
    raw(method, format!("{}{path}", s.base), Some(token), None).await.0
}

fn sha(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

/// The file's content as `token` reads it: status and bytes.
async fn content(s: &Server, token: &str, id: &str) -> (u16, Vec<u8>) {
    raw(reqwest::Method::GET, format!("{}/v1/files/{id}/content", s.base), Some(token), None).await
}

/// A group of `owner`'s with `members` added at the given member flags.
async fn group(owner: &Http, members: &[(&str, u32, u32)]) -> i64 {
    let g: CreatedGroup = owner.post("/v1/groups", &json!({"name": "Media"})).await.unwrap();
    let g = g.group;
    for (address, flags, admin_flags) in members {
        owner
            .post::<Value>(
                &format!("/v1/groups/{}/members", g.gid),
                &json!({"addresses": [address], "flags": flags, "admin_flags": admin_flags}),
            )
            .await
            .unwrap();
    }
    g.gid.0
}

/// Add, list, play and delete with the rights of senders, receivers, admins and outsiders;
/// metadata of WebM, MP4, PNG and a truncated video; live frames.
async fn library(b: Backend) {
    let s = Server::start(b).await;
    let (_, ho) = s.login("owner@example.org", "O").await;
    let (su, hs) = s.login("sender@example.org", "S").await;
    let (ru, hr) = s.login("receiver@example.org", "R").await;
    let (au, ha) = s.login("admin@example.org", "A").await;
    let (wu, hw) = s.login("writeonly@example.org", "W").await;
    let (_, hn) = s.login("nobody@example.org", "N").await;
    let gid = group(
        &ho,
        &[
            (&su.user.address, member::SEND | member::RECV, 0),
            (&ru.user.address, member::RECV, 0),
            (&au.user.address, member::RECV | member::ADMIN, admin::REMOVE_MEMBER),
            (&wu.user.address, member::SEND, 0),
        ],
    )
    .await;
    let (st, sr, sa, sw, sn) =
        (hs.token().unwrap(), hr.token().unwrap(), ha.token().unwrap(), hw.token().unwrap(), hn.token().unwrap());
    let (mut cr, _) = s.connect(&hr).await;

    let dir = tempfile::tempdir().unwrap();
    let webm = ffmpeg(
        dir.path(),
        "clip.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:v",
            "libvpx",
            "-c:a",
            "libopus",
            "-shortest",
        ],
    );
    let mp4 = ffmpeg(
        dir.path(),
        "clip.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            "-movflags",
            "+faststart",
        ],
    );
    let png = ffmpeg(dir.path(), "frame.png", &["-f", "lavfi", "-i", "testsrc=size=640x480", "-frames:v", "1"]);

    // A sender adds a WebM: its metadata, and the live frame to a receiver.
    let webm_id = upload(&s, st, "clip.webm", &webm).await;
    let (code, e) = add(&s, st, gid, &webm_id).await;
    assert_eq!(code, 201, "{e}");
    let e: MediaEntry = serde_json::from_value(e).unwrap();
    assert_eq!(
        (e.id.as_str(), e.gid, e.name.as_str(), e.size),
        (webm_id.as_str(), GroupId(gid), "clip.webm", webm.len() as u64)
    );
    assert_eq!(e.mime, "video/webm");
    assert!(e.duration_ms.is_some_and(|d| (1900..=2100).contains(&d)), "{e:?}");
    assert_eq!((e.width, e.height), (Some(320), Some(240)));
    assert_eq!((e.video_codec.as_deref(), e.audio_codec.as_deref()), (Some("vp8"), Some("opus")));
    assert_eq!(e.uploader.as_deref(), Some(su.user.address.as_str()));
    assert!(e.thumbnail.is_none());
    let f = cr
        .expect(common::WAIT, |f| matches!(f, ServerFrame::GroupMedia { action: MediaAction::Added, .. }))
        .await
        .unwrap();
    assert!(
        matches!(&f, ServerFrame::GroupMedia { gid: g, id, entry: Some(en), .. } if *g == GroupId(gid) && *id == webm_id && *en == e),
        "{f:?}"
    );
    // Twice: 409.
    assert_eq!(add(&s, st, gid, &webm_id).await.0, 409);

    // An MP4 (H.264/AAC).
    let mp4_id = upload(&s, st, "clip.mp4", &mp4).await;
    let (code, e) = add(&s, st, gid, &mp4_id).await;
    assert_eq!(code, 201, "{e}");
    let e: MediaEntry = serde_json::from_value(e).unwrap();
    assert_eq!(e.mime, "video/mp4");
    assert!(e.duration_ms.is_some_and(|d| (1900..=2100).contains(&d)), "{e:?}");
    assert_eq!((e.width, e.height), (Some(320), Some(240)));
    assert_eq!((e.video_codec.as_deref(), e.audio_codec.as_deref()), (Some("h264"), Some("aac")));

    // A PNG gets a thumbnail (a JPEG) that receivers fetch and outsiders do not.
    let png_id = upload(&s, st, "frame.png", &png).await;
    let (code, e) = add(&s, st, gid, &png_id).await;
    assert_eq!(code, 201, "{e}");
    let e: MediaEntry = serde_json::from_value(e).unwrap();
    assert_eq!((e.mime.as_str(), e.width, e.height, e.duration_ms), ("image/png", Some(640), Some(480), None));
    let thumb = e.thumbnail.clone().expect("a PNG has a thumbnail");
    assert_eq!(thumb, format!("/v1/groups/{gid}/media/{png_id}/thumbnail"));
    let (code, jpeg) = raw(reqwest::Method::GET, format!("{}{thumb}", s.base), Some(sr), None).await;
    assert_eq!(code, 200);
    assert_eq!(&jpeg[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    let img = image_size(&jpeg);
    assert!(img.0 <= 320 && img.1 <= 320 && img.0 > 0, "{img:?}");
    assert_eq!(status(&s, reqwest::Method::GET, sn, &thumb).await, 404);

    // A truncated video is a plain file: no duration, no crash.
    let cut = &mp4[..mp4.len() / 2];
    let cut_id = upload(&s, st, "cut.mp4", cut).await;
    let (code, e) = add(&s, st, gid, &cut_id).await;
    assert_eq!(code, 201, "{e}");
    let e: MediaEntry = serde_json::from_value(e).unwrap();
    assert_eq!((e.duration_ms, e.width, e.video_codec.as_deref()), (None, None, None), "{e:?}");

    // Who may add: a receiver without send 403, an outsider 404, someone else's upload 404
    // (it is not the caller's), an unfinished upload 409.
    let r_file = upload(&s, sr, "r.bin", b"receiver's bytes").await;
    assert_eq!(add(&s, sr, gid, &r_file).await.0, 403);
    let n_file = upload(&s, sn, "n.bin", b"outsider's bytes").await;
    assert_eq!(add(&s, sn, gid, &n_file).await.0, 404);
    assert_eq!(add(&s, sw, gid, &r_file).await.0, 404);
    let unfinished = unfinished_upload(&s, st).await;
    let (code, e) = add(&s, st, gid, &unfinished).await;
    assert_eq!(code, 409, "{e}");

    // Listing: newest first, paged; receivers only.
    let page: Value = hr.get(&format!("/v1/groups/{gid}/media?limit=3")).await.unwrap();
    let ids: Vec<&str> = page["media"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [cut_id.as_str(), png_id.as_str(), mp4_id.as_str()]);
    let before = page["before"].as_str().expect("a next page");
    let page: Value = hr.get(&format!("/v1/groups/{gid}/media?limit=3&before={before}")).await.unwrap();
    let ids: Vec<&str> = page["media"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [webm_id.as_str()]);
    assert!(page.get("before").is_none());
    assert!(page["media"][0].get("uploader").is_some() && !page.to_string().contains("@example.org"), "no emails");
    assert_eq!(status(&s, reqwest::Method::GET, sn, &format!("/v1/groups/{gid}/media")).await, 404);
    assert_eq!(status(&s, reqwest::Method::GET, sw, &format!("/v1/groups/{gid}/media")).await, 403);
    assert_eq!(status(&s, reqwest::Method::GET, sr, &format!("/v1/groups/{gid}/media/{mp4_id}")).await, 200);
    assert_eq!(status(&s, reqwest::Method::GET, sn, &format!("/v1/groups/{gid}/media/{mp4_id}")).await, 404);
    assert_eq!(status(&s, reqwest::Method::GET, sr, &format!("/v1/groups/{gid}/media/{r_file}")).await, 404);

    // Playing: a receiver reads the file (token and signed URL); outsiders and members
    // without receive do not.
    let (code, bytes) = content(&s, sr, &webm_id).await;
    assert_eq!((code, sha(&bytes)), (200, sha(&webm)));
    let signed: Value = hr.post(&format!("/v1/files/{webm_id}/url"), &json!({})).await.unwrap();
    let (code, bytes) =
        raw(reqwest::Method::GET, format!("{}{}", s.base, signed["url"].as_str().unwrap()), None, None).await;
    assert_eq!((code, sha(&bytes)), (200, sha(&webm)));
    assert_eq!(content(&s, sn, &webm_id).await.0, 404);
    assert_eq!(content(&s, sw, &webm_id).await.0, 404);
    assert_eq!(status(&s, reqwest::Method::POST, sn, &format!("/v1/files/{webm_id}/url")).await, 404);

    // Deleting: not a receiver who did not add it (403), not an outsider (404); the adder and
    // an admin do, and receivers hear of it.
    let del = |id: &str| format!("/v1/groups/{gid}/media/{id}");
    assert_eq!(status(&s, reqwest::Method::DELETE, sr, &del(&cut_id)).await, 403);
    assert_eq!(status(&s, reqwest::Method::DELETE, sn, &del(&cut_id)).await, 404);
    assert_eq!(status(&s, reqwest::Method::DELETE, st, &del(&cut_id)).await, 204);
    assert_eq!(status(&s, reqwest::Method::DELETE, sa, &del(&mp4_id)).await, 204);
    assert_eq!(status(&s, reqwest::Method::DELETE, sa, &del(&mp4_id)).await, 404);
    let f = cr
        .expect(
            common::WAIT,
            |f| matches!(f, ServerFrame::GroupMedia { action: MediaAction::Deleted, id, .. } if *id == mp4_id),
        )
        .await
        .unwrap();
    assert!(matches!(f, ServerFrame::GroupMedia { entry: None, .. }));
    // Out of the library, the file is its uploader's again.
    assert_eq!(content(&s, sr, &mp4_id).await.0, 404);
    assert_eq!(content(&s, st, &mp4_id).await.0, 200);
    let page: Value = hr.get(&format!("/v1/groups/{gid}/media")).await.unwrap();
    assert_eq!(page["media"].as_array().unwrap().len(), 2);
    // The uploader deleting the upload takes it out of every library.
    let r = reqwest::Client::new()
        .delete(format!("{}/v1/uploads/{webm_id}", s.base))
        .bearer_auth(st)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let page: Value = hr.get(&format!("/v1/groups/{gid}/media")).await.unwrap();
    let ids: Vec<&str> = page["media"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [png_id.as_str()]);
    assert_eq!(content(&s, sr, &webm_id).await.0, 404);
}

/// The width and height of a baseline or progressive JPEG (its SOF marker).
fn image_size(jpeg: &[u8]) -> (u32, u32) {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        let (m, len) = (jpeg[i + 1], u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize);
        if (0xC0..=0xC3).contains(&m) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return (w.into(), h.into());
        }
        i += 2 + len;
    }
    (0, 0)
}

/// An upload of 10 bytes with none sent yet.
async fn unfinished_upload(s: &Server, token: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/uploads", s.base))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.headers()["location"].to_str().unwrap().strip_prefix("/v1/uploads/").unwrap().to_string()
}

/// A library holds at most `group_media_quota_bytes`.
async fn quota(b: Backend) {
    let s = Server::start_with(b, &[("CHORUS_GROUP_MEDIA_QUOTA_BYTES", "1000")]).await;
    let (_, ho) = s.login("owner@example.org", "O").await;
    let gid = group(&ho, &[]).await;
    let t = ho.token().unwrap();
    let a = upload(&s, t, "a.bin", &[1u8; 600]).await;
    let bb = upload(&s, t, "b.bin", &[2u8; 600]).await;
    assert_eq!(add(&s, t, gid, &a).await.0, 201);
    let (code, e) = add(&s, t, gid, &bb).await;
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["error"]["code"], "limit_exceeded");
    assert!(e["error"]["message"].as_str().unwrap().contains("quota"), "{e}");
    let page: Value = ho.get(&format!("/v1/groups/{gid}/media")).await.unwrap();
    assert_eq!(page["media"].as_array().unwrap().len(), 1);
    // Deleting frees room.
    assert_eq!(status(&s, reqwest::Method::DELETE, t, &format!("/v1/groups/{gid}/media/{a}")).await, 204);
    assert_eq!(add(&s, t, gid, &bb).await.0, 201);
}

fn file_frame(id: &str, peer: Option<&str>, gid: Option<i64>, upload: &str) -> ClientFrame {
    ClientFrame::Send {
        rid: Some(format!("r-{id}")),
        id: id.into(),
        peer: peer.map(str::to_string),
        gid: gid.map(GroupId),
        text: None,
        data: None,
        file: Some(Box::new(FileRef {
            url: String::new(),
            upload: Some(upload.into()),
            thumbnail: None,
            name: Some("ignored".into()),
            mime: None,
            size: Some(1),
            filetype: None,
        })),
        mtype: None,
    }
}

/// Files in chat: 20 MB in a 1:1 reaches the other person only; a group's file its members.
async fn chat_files(b: Backend) {
    let s = Server::start(b).await;
    let (_, ha) = s.login("alice@example.org", "A").await;
    let (bu, hb) = s.login("bob@example.org", "B").await;
    let (cu, hc) = s.login("carol@example.org", "C").await;
    let (ta, tb, tc) = (ha.token().unwrap(), hb.token().unwrap(), hc.token().unwrap());
    let (mut ca, _) = s.connect(&ha).await;
    let (mut cb, _) = s.connect(&hb).await;

    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let id = upload(&s, ta, "big.bin", &big).await;
    ca.send(&file_frame("m1", Some(&bu.user.address), None, &id)).await.unwrap();
    let sent = ca.reply("r-m1").await.unwrap();
    assert!(matches!(sent, ServerFrame::Sent { .. }), "{sent:?}");
    let f = cb.expect(common::WAIT, |f| matches!(f, ServerFrame::Message(_))).await.unwrap();
    let ServerFrame::Message(m) = f else { unreachable!() };
    let file = m.file.expect("a file message");
    assert_eq!(file.url, format!("/v1/files/{id}/content"));
    assert_eq!(
        (file.upload.as_deref(), file.name.as_deref(), file.size),
        (Some(id.as_str()), Some("big.bin"), Some(20_000_000))
    );
    assert_eq!(file.mime.as_deref(), Some("application/octet-stream"));
    let (code, bytes) = content(&s, tb, &id).await;
    assert_eq!(code, 200);
    assert_eq!(sha(&bytes), sha(&big));
    // Bob's signed URL works without a token; Carol gets nothing.
    let signed: Value = hb.post(&format!("/v1/files/{id}/url"), &json!({})).await.unwrap();
    let (code, _) =
        raw(reqwest::Method::HEAD, format!("{}{}", s.base, signed["url"].as_str().unwrap()), None, None).await;
    assert_eq!(code, 200);
    assert_eq!(content(&s, tc, &id).await.0, 404);
    assert_eq!(status(&s, reqwest::Method::POST, tc, &format!("/v1/files/{id}/url")).await, 404);

    // Only the uploader sends an upload: Bob sending Alice's gets a clear error.
    cb.send(&file_frame("m2", Some(&cu.user.address), None, &id)).await.unwrap();
    let r = cb.reply("r-m2").await.unwrap();
    assert!(
        matches!(&r, ServerFrame::Error { code: chorus_proto::ErrorCode::BadRequest, message, .. } if message.contains("not an upload of yours")),
        "{r:?}"
    );
    assert_eq!(content(&s, tc, &id).await.0, 404);

    // A group file: members who receive read it, an outsider does not.
    let gid = group(&ha, &[(&bu.user.address, member::SEND | member::RECV, 0)]).await;
    let small = upload(&s, ta, "note.txt", b"hello group").await;
    ca.send(&file_frame("m3", None, Some(gid), &small)).await.unwrap();
    let sent = ca.reply("r-m3").await.unwrap();
    assert!(matches!(sent, ServerFrame::Sent { .. }), "{sent:?}");
    let (code, bytes) = content(&s, tb, &small).await;
    assert_eq!((code, bytes.as_slice()), (200, &b"hello group"[..]));
    assert_eq!(content(&s, tc, &small).await.0, 404);
    // Bob leaves: no longer.
    hb.post::<Value>(&format!("/v1/groups/{gid}/leave"), &json!({})).await.ok();
    assert_eq!(content(&s, tb, &small).await.0, 404);
}

both_backends!(library, quota, chat_files);
