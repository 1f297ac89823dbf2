//! Call recording against the real `chorus serve`: two publishers (the Rust client: real VP8
//! from libvpx clips in three simulcast layers, Opus-framed audio) are recorded; each file is
//! read by ffprobe (Debian's ffmpeg), as a user checking the recording would.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chorus_client::call::media::VideoKind;
use chorus_client::call::stats::Kind;
use chorus_client::call::{Call, CallNotice, CallOptions, PublishOptions};
use chorus_client::Http;
use chorus_proto::call::{CallEvent, CallRecording, RecordAction, RecordingStopReason};
use chorus_proto::ws::ClientFrame;
use chorus_proto::ErrorCode;
use common::calls::{join, member_with_pin, room, Room};
use common::{Backend, Server};
use serde_json::{json, Value};

const EVENT: Duration = Duration::from_secs(10);

fn clip() -> PublishOptions {
    PublishOptions { video_kind: VideoKind::Clip, ..Default::default() }
}

/// Subscribes to every stream others publish.
fn auto() -> CallOptions {
    CallOptions { subscribe_all: true, ..Default::default() }
}

fn recording_path(gid: i64) -> String {
    format!("/v1/groups/{gid}/call/recording")
}

/// Waits for a `recording` event whose state passes `pred`.
async fn recording_event(c: &mut Call, pred: impl Fn(&CallRecording) -> bool) -> CallRecording {
    let n = c
        .wait_for(EVENT, |n| matches!(n, CallNotice::Event(CallEvent::Recording { recording }) if pred(recording)))
        .await
        .unwrap_or_else(|e| panic!("{} got no recording event: {e}", c.address()));
    match n {
        CallNotice::Event(CallEvent::Recording { recording }) => recording,
        _ => unreachable!(),
    }
}

fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_f64()).unwrap_or(f64::NAN)
}

/// What ffprobe says of one recording: codecs, duration, and each stream's first and last
/// packet time.
struct Probed {
    codecs: Vec<String>,
    width: Option<i64>,
    duration: f64,
    video: (f64, f64),
    audio: (f64, f64),
}

fn probe(path: &Path) -> Probed {
    let p = ffprobe(path);
    let streams = p["streams"].as_array().unwrap();
    let codecs: Vec<String> = streams.iter().map(|s| s["codec_name"].as_str().unwrap_or("").to_string()).collect();
    let width = streams.iter().find(|s| s["codec_name"] == "vp8").and_then(|s| s["width"].as_i64());
    let span = |sel: &str| {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", sel, "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .unwrap();
        let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
            .collect();
        assert!(!times.is_empty(), "{sel} packets in {}", path.display());
        (times[0], *times.last().unwrap())
    };
    Probed { codecs, width, duration: num(&p["format"]["duration"]), video: span("v"), audio: span("a") }
}

/// The group's media library entries.
async fn library(h: &Http, gid: i64) -> Vec<Value> {
    let page: Value = h.get(&format!("/v1/groups/{gid}/media")).await.unwrap();
    page["media"].as_array().cloned().unwrap_or_default()
}

/// Waits (30 s at most) until the group's library holds at least `n` entries; returns them.
async fn library_with(h: &Http, gid: i64, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let e = library(h, gid).await;
        if e.len() >= n {
            return e;
        }
        assert!(Instant::now() < until, "the recordings never reached the library: {e:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn download(s: &Server, h: &Http, id: &str, dir: &Path) -> PathBuf {
    let url: Value = h.post(&format!("/v1/files/{id}/url"), &json!({})).await.unwrap();
    let bytes =
        reqwest::get(format!("{}{}", s.base, url["url"].as_str().unwrap())).await.unwrap().bytes().await.unwrap();
    let path = dir.join(format!("{id}.webm"));
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// Two publishers in a call; `bob` is a member without admin rights.
async fn two_publishers(s: &Server) -> (Room, Http, Call, Call) {
    let r = room(s).await;
    let (bob, _) = member_with_pin(s, &r, "bob@example.org", &r.publisher_pin).await;
    let a = join(&r.owner, r.gid, auto()).await;
    a.publish_camera(0, clip()).await.expect("owner publishes");
    let b = join(&bob, r.gid, auto()).await;
    b.publish_camera(0, clip()).await.expect("bob publishes");
    // Media flowing before the recording starts.
    common::calls::wait_frames(&a, b.address(), Kind::Video, 10).await;
    common::calls::wait_frames(&b, a.address(), Kind::Video, 10).await;
    (r, bob, a, b)
}

async fn a_call_is_recorded_into_the_media_library(backend: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(backend).await;
    let (r, bob, mut a, mut b) = two_publishers(&s).await;
    let path = recording_path(r.gid);

    // Bad input first: a member without call control, and a stop with nothing recording.
    let refused = bob.post::<Value>(&path, &json!({})).await.unwrap_err();
    assert_eq!((refused.status, refused.code()), (403, Some("forbidden")));
    let err = b.request(ClientFrame::CallRecord { rid: None, action: RecordAction::Start }).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let conflict = r.owner.delete(&path).await.unwrap_err();
    assert_eq!((conflict.status, conflict.code()), (409, Some("conflict")));
    let state: CallRecording = r.owner.get(&path).await.unwrap();
    assert!(!state.active);

    // The recording runs from some moment of the start request to some moment of the stop
    // request: `outer` spans both requests, `inner` only the time between them.
    let before_start = Instant::now();
    let started: CallRecording = r.owner.post(&path, &json!({})).await.unwrap();
    let after_start = Instant::now();
    assert!(started.active && started.by.as_deref() == Some(r.owner_address.as_str()), "{started:?}");
    let again: CallRecording = r.owner.post(&path, &json!({})).await.unwrap();
    assert_eq!(again, started, "starting twice changes nothing");
    for c in [&mut a, &mut b] {
        let ev = recording_event(c, |r| r.active).await;
        assert_eq!((ev.by.as_deref(), ev.since), (started.by.as_deref(), started.since));
    }
    // A participant joining a recorded call is told in call_joined.
    let (cat, _) = member_with_pin(&s, &r, "cat@example.org", &r.viewer_pin).await;
    let c = join(&cat, r.gid, Default::default()).await;
    assert_eq!(c.joined().recording.as_ref(), Some(&started));

    tokio::time::sleep_until((after_start + Duration::from_secs(10)).into()).await;
    let before_stop = Instant::now();
    r.owner.delete(&path).await.expect("stop");
    let (inner, outer) = ((before_stop - after_start).as_secs_f64(), before_start.elapsed().as_secs_f64());
    let recorded = (inner + outer) / 2.0;
    let stopped: CallRecording = r.owner.get(&path).await.unwrap();
    assert!(!stopped.active);
    for c in [&mut a, &mut b] {
        let ev = recording_event(c, |r| !r.active).await;
        assert_eq!(ev.reason, Some(RecordingStopReason::Stopped));
    }

    // Both files reach the library, probed: duration and size.
    let entries = library_with(&r.owner, r.gid, 2).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let dir = tempfile::tempdir().unwrap();
    for e in &entries {
        let ms = e["duration_ms"].as_f64().expect("a duration in the library") / 1000.0;
        assert!((ms - recorded).abs() < 1.0, "library duration {ms} s of a {recorded:.1} s recording: {e}");
        // The best layer sent when the recording started (the top one is asked for and taken
        // when it comes): one of the clips' sizes, the same in the library and the file.
        let (w, h) = (e["width"].as_i64(), e["height"].as_i64());
        assert!([(320, 180), (640, 360), (1280, 720)].iter().any(|&(a, b)| (Some(a), Some(b)) == (w, h)), "{e}");
        let name = e["name"].as_str().unwrap();
        assert!(name.starts_with("recording-") && name.ends_with("-0.webm"), "{name}");
        let file = download(&s, &bob, e["id"].as_str().unwrap(), dir.path()).await;
        let p = probe(&file);
        assert!(p.codecs.contains(&"vp8".to_string()) && p.codecs.contains(&"opus".to_string()), "{:?}", p.codecs);
        assert_eq!(p.width, w, "the file's size is the library's");
        assert!(
            p.duration > inner - 0.5 && p.duration < outer + 0.5,
            "{} s in the file, recorded for {inner:.2} to {outer:.2} s",
            p.duration
        );
        assert!((p.video.0 - p.audio.0).abs() < 0.1, "video starts at {}, audio at {}", p.video.0, p.audio.0);
        assert!((p.video.1 - p.audio.1).abs() < 0.2, "video ends at {}, audio at {}", p.video.1, p.audio.1);
    }
    drop(c);
}

both_backends!(a_call_is_recorded_into_the_media_library);

/// A group set to record its calls (`auto_record`): the call is recorded from its first join, for
/// the owner, who need not be in it; the joiner is told in `call_joined`; when the call ends the
/// file is the owner's, in the library.
async fn a_group_records_its_calls_by_itself(backend: Backend) {
    let _slot = common::call_slot();
    let s = Server::start(backend).await;
    let r = room(&s).await;
    let g: chorus_proto::rest::Group =
        r.owner.patch(&format!("/v1/groups/{}", r.gid), &json!({"auto_record": true})).await.unwrap();
    assert!(g.auto_record);
    let (bob, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let b = join(&bob, r.gid, auto()).await;
    let rec = b.joined().recording.clone().expect("told in call_joined");
    assert!(rec.active && rec.by.as_deref() == Some(r.owner_address.as_str()), "{rec:?}");
    b.publish_camera(0, clip()).await.expect("bob publishes");
    let state: CallRecording = r.owner.get(&recording_path(r.gid)).await.unwrap();
    assert!(state.active);
    tokio::time::sleep(Duration::from_secs(4)).await;
    b.leave().await.expect("leave: the call ends, and its recording");

    let entry = library_with(&r.owner, r.gid, 1).await.remove(0);
    assert_eq!(entry["uploader"].as_str(), Some(r.owner_address.as_str()), "{entry}");
    let secs = entry["duration_ms"].as_f64().expect("a duration") / 1000.0;
    assert!(secs > 2.0 && secs < 6.0, "{secs} s recorded of a call of about 4 s: {entry}");
}

both_backends!(a_group_records_its_calls_by_itself);

/// A server killed mid-recording leaves files that play up to the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_playable_recordings() {
    let _slot = common::call_slot();
    let s = Server::start(Backend::Sqlite).await;
    let (r, _bob, _a, _b) = two_publishers(&s).await;
    let started: CallRecording = r.owner.post(&recording_path(r.gid), &json!({})).await.unwrap();
    assert!(started.active);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let store = s.stop(); // SIGKILL
    let recorded = t0.elapsed().as_secs_f64();
    let mut files = Vec::new();
    for d in std::fs::read_dir(store.data.path().join("recordings")).expect("recordings dir").flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "webm") {
                files.push(f.path());
            }
        }
    }
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let p = probe(f);
        assert!(p.codecs.contains(&"vp8".to_string()) && p.codecs.contains(&"opus".to_string()), "{:?}", p.codecs);
        assert!((p.duration - recorded).abs() < 1.0, "{}: {} s, killed after {recorded:.1} s", f.display(), p.duration);
        assert!((p.video.1 - recorded).abs() < 1.0, "{}: media up to {} s", f.display(), p.video.1);
    }
    // Started again, the server publishes what the killed one left.
    let s = Server::start_on(store, &[]).await;
    let (_, owner) = s.login("owner@example.org", "Owner").await;
    let entries = library_with(&owner, r.gid, 2).await;
    for e in &entries {
        let secs = e["duration_ms"].as_f64().expect("a duration") / 1000.0;
        assert!((secs - recorded).abs() < 1.0, "{secs} s in the library, killed after {recorded:.1} s: {e}");
    }
    // A recording's directory goes after its last file's library entry is made (then that file,
    // then the manifest): soon after the entries show, not with them.
    let gone_by = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = std::fs::read_dir(s.data.path().join("recordings")).unwrap().flatten().collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < gone_by, "published recordings leave nothing behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The duration limit stops a recording by itself: everyone is told why, the files (as long as
/// the limit) reach the library, the call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_limit_stops_a_recording() {
    let _slot = common::call_slot();
    let s = Server::start_with(Backend::Sqlite, &[("CHORUS_RECORDING_MAX_SECS", "3")]).await;
    let (r, _bob, mut a, mut b) = two_publishers(&s).await;
    let _: CallRecording = r.owner.post(&recording_path(r.gid), &json!({})).await.unwrap();
    for c in [&mut a, &mut b] {
        let ev = recording_event(c, |r| !r.active).await;
        assert_eq!(ev.reason, Some(RecordingStopReason::DurationLimit));
    }
    let entries = library_with(&r.owner, r.gid, 2).await;
    for e in &entries {
        let secs = e["duration_ms"].as_f64().unwrap() / 1000.0;
        assert!((secs - 3.0).abs() < 0.6, "{secs} s of a 3 s limit: {e}");
    }
    // The call goes on: media still flows between the two.
    let before = common::calls::frames(&a.stats(), b.address(), Kind::Video);
    common::calls::wait_frames(&a, b.address(), Kind::Video, before + 30).await;
}

/// Storage that fails (here the recordings directory cannot be made) stops the recording with
/// `storage_failed`; the call is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_stops_the_recording_not_the_call() {
    let _slot = common::call_slot();
    let s = Server::start(Backend::Sqlite).await;
    std::fs::write(s.data.path().join("recordings"), b"not a directory").unwrap();
    let r = room(&s).await;
    let (bob, _) = member_with_pin(&s, &r, "bob@example.org", &r.publisher_pin).await;
    let mut a = join(&r.owner, r.gid, auto()).await;
    a.publish_camera(0, clip()).await.expect("owner publishes");
    let b = join(&bob, r.gid, auto()).await;
    b.publish_camera(0, clip()).await.expect("bob publishes");
    common::calls::wait_frames(&a, b.address(), Kind::Video, 10).await;
    let _: CallRecording = r.owner.post(&recording_path(r.gid), &json!({})).await.unwrap();
    let ev = recording_event(&mut a, |r| !r.active).await;
    assert_eq!(ev.reason, Some(RecordingStopReason::StorageFailed));
    let state: CallRecording = r.owner.get(&recording_path(r.gid)).await.unwrap();
    assert!(!state.active);
    let before = common::calls::frames(&a.stats(), b.address(), Kind::Video);
    common::calls::wait_frames(&a, b.address(), Kind::Video, before + 30).await;
}

/// A tmpfs of `bytes` mounted on a directory (the test runs as root), unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, bytes: u64) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0700"), "chorus-test-recordings"])
            .arg(path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(SmallDisk { path: path.to_path_buf() })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the server may still hold a file there while it is being killed.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The disk fills while a call is recorded: the recordings directory is a 3 MiB file system of
/// its own, which two 720p cameras fill within seconds. The recording stops with
/// `storage_failed` (everyone in the call is told), the call goes on (both still in it, media
/// still flowing both ways), and what was written before the disk filled is kept: both partial
/// files reach the library, and ffprobe reads them.
///
/// Needs root to mount the file system: without it the test says so and passes without
/// running (an unprivileged `cargo test` cannot make a disk fill on purpose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_recording_not_the_call() {
    const DISK: u64 = 3 << 20;
    let _slot = common::call_slot();
    let store = common::Store::new(Backend::Sqlite).await;
    let disk = match SmallDisk::mount(&store.data.path().join("recordings"), DISK) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "SKIPPED a_full_disk_stops_the_recording_not_the_call: no small file system to fill ({e}); run as root"
            );
            return;
        }
    };
    let s = Server::start_on(store, &[]).await;
    let _disk = disk; // unmounted before the server's data directory goes
    let (r, _bob, mut a, mut b) = two_publishers(&s).await;

    let started: CallRecording = r.owner.post(&recording_path(r.gid), &json!({})).await.unwrap();
    assert!(started.active);
    let t0 = Instant::now();
    for c in [&mut a, &mut b] {
        let n = c
            .wait_for(
                Duration::from_secs(90),
                |n| matches!(n, CallNotice::Event(CallEvent::Recording { recording }) if !recording.active),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: the recording did not stop as the disk filled: {e}", c.address()));
        let CallNotice::Event(CallEvent::Recording { recording }) = n else { unreachable!() };
        assert_eq!(recording.reason, Some(RecordingStopReason::StorageFailed), "{recording:?}");
    }
    let recorded = t0.elapsed().as_secs_f64();
    let state: CallRecording = r.owner.get(&recording_path(r.gid)).await.unwrap();
    assert!(!state.active, "{state:?}");

    // The call goes on: media flows both ways, and someone joining now finds both in the call,
    // not recorded.
    for (to, from) in [(&a, &b), (&b, &a)] {
        let before = common::calls::frames(&to.stats(), from.address(), Kind::Video);
        common::calls::wait_frames(to, from.address(), Kind::Video, before + 30).await;
    }
    let (cat, _) = member_with_pin(&s, &r, "cat@example.org", &r.viewer_pin).await;
    let c = join(&cat, r.gid, Default::default()).await;
    let mut present: Vec<&str> = c.joined().participants.iter().map(|p| p.address.as_str()).collect();
    present.sort_unstable();
    let mut expected = vec![a.address(), b.address(), c.address()];
    expected.sort_unstable();
    assert_eq!(present, expected);
    assert_eq!(c.joined().recording, None);

    // Both partial files are kept and listed; together they are about the whole disk (it did
    // fill), and each plays: ffprobe reads VP8 and Opus up to about when the disk filled.
    let entries = library_with(&r.owner, r.gid, 2).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let total: u64 = entries.iter().map(|e| e["size"].as_u64().unwrap()).sum();
    assert!(total > DISK * 8 / 10 && total <= DISK, "{total} bytes recorded on a {DISK}-byte disk: {entries:?}");
    let dir = tempfile::tempdir().unwrap();
    for e in &entries {
        let secs = e["duration_ms"].as_f64().expect("a duration in the library") / 1000.0;
        assert!(secs > 0.5 && secs < recorded + 1.0, "{secs} s in the library, stopped after {recorded:.1} s: {e}");
        let file = download(&s, &r.owner, e["id"].as_str().unwrap(), dir.path()).await;
        let p = probe(&file);
        assert!(p.codecs.contains(&"vp8".to_string()) && p.codecs.contains(&"opus".to_string()), "{:?}", p.codecs);
        assert!(p.video.1 > 0.5 && p.video.1 < recorded + 1.0, "{}: video up to {} s", e["name"], p.video.1);
        assert!((p.video.0 - p.audio.0).abs() < 0.1, "video starts at {}, audio at {}", p.video.0, p.audio.0);
    }
    drop(c);
}
