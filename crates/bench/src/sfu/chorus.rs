//! The SFU load against Chorus: the real `chorus` binary, participants from the Rust client
//! (`chorus_client::call`), each with its own two peer connections.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use chorus_client::call::{Call, CallOptions, PublishOptions};
use chorus_client::{Connection, Http};

use super::{SfuLoad, SfuRun, Snapshot, StreamKey};
use crate::progress::Progress;
use crate::server::{ChorusServer, ServerOptions};

/// Call flags of the benchmark's group: Mesibo's defaults with simulcast on (as REST rooms).
pub const CALL_FLAGS: u32 = 0x8307;

/// What a subscriber takes of each stream it subscribes to.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// The microphone.
    pub audio: bool,
    /// The camera.
    pub video: bool,
    /// The display height that picks the layer.
    pub height: u32,
}

/// The user of `http` (its token) joins the call of `gid` and publishes a camera (3-layer
/// simulcast) and microphone.
pub async fn join_publisher(http: &Http, gid: i64, options: &CallOptions) -> anyhow::Result<Call> {
    let (conn, _) = Connection::connect(http, None).await?;
    let call = Call::join(conn, gid, options.clone()).await.context("publisher join")?;
    call.publish_camera(0, PublishOptions::default()).await.context("publish")?;
    Ok(call)
}

/// The user of `http` (its token) joins the call of `gid` and subscribes to stream 0 of each of
/// `publishers`. (Give each user `http.with_token(…)` of one [`Http`]: a new one per user builds
/// a new HTTP client, which takes milliseconds of CPU, too many for a join storm.)
pub async fn join_subscriber(
    http: &Http,
    gid: i64,
    options: &CallOptions,
    publishers: &[&str],
    want: Want,
) -> anyhow::Result<Call> {
    let (conn, _) = Connection::connect(http, None).await?;
    let call = Call::join(conn, gid, options.clone()).await.context("subscriber join")?;
    for p in publishers {
        call.subscribe(p, 0, want.audio, want.video, Some(want.height)).await.context("subscribe")?;
    }
    Ok(call)
}

/// What every call of `calls` has received, per stream; `index` numbers the publishers by
/// address (streams of others are left out).
pub fn snapshot(calls: &[Call], index: &HashMap<String, usize>) -> Snapshot {
    Snapshot {
        streams: calls
            .iter()
            .enumerate()
            .flat_map(|(s, c)| {
                let stats = c.stats();
                stats.received.into_iter().filter_map(move |(k, t)| {
                    let publisher = *index.get(&k.publisher)?;
                    Some((StreamKey { subscriber: s, publisher, kind: k.kind.into() }, t))
                })
            })
            .collect(),
    }
}

/// Runs `load` against a Chorus server started for it.
pub async fn run(load: &SfuLoad, server: &ServerOptions, progress: &Progress) -> anyhow::Result<SfuRun> {
    let options = server.clone().env("CHORUS_RTC_BIND_IP", load.bind);
    let srv = ChorusServer::start(&options)?;
    let pubs = srv.users("pub", load.publishers).await?;
    let subs = srv.users("sub", load.subscribers).await?;
    let everyone: Vec<_> = pubs.iter().chain(&subs).cloned().collect();
    let gid = srv.group("bench", &everyone, Some(CALL_FLAGS)).await?;
    let index: HashMap<String, usize> = pubs.iter().enumerate().map(|(i, u)| (u.address.clone(), i)).collect();
    let options = CallOptions { subscribe_all: false, bind: load.bind, ..Default::default() };
    let http = srv.client("");

    let mut publishers = Vec::new();
    for (i, u) in pubs.iter().enumerate() {
        progress.status(format!("chorus: publisher {}/{} joining", i + 1, pubs.len()));
        publishers.push(join_publisher(&http.with_token(&u.token), gid, &options).await?);
        tokio::time::sleep(load.join_interval).await;
    }
    let mut subscribers = Vec::new();
    let mut joined = Vec::new();
    for (s, u) in subs.iter().enumerate() {
        progress.status(format!("chorus: subscriber {}/{} joining", s + 1, subs.len()));
        joined.push(Instant::now());
        let streams: Vec<&str> = load.streams_of(s).map(|p| pubs[p].address.as_str()).collect();
        let want = Want { audio: true, video: true, height: load.height() };
        subscribers.push(join_subscriber(&http.with_token(&u.token), gid, &options, &streams, want).await?);
        tokio::time::sleep(load.join_interval).await;
    }
    let snapshot = |calls: &[Call]| snapshot(calls, &index);
    // Record runs: the first publisher, made an admin, starts the call's recording.
    let recordings = srv.data().join("recordings");
    if load.record {
        let first = pubs.first().context("a record run needs a publisher")?;
        srv.backend(
            serde_json::json!({"op": "groupeditmembers", "group": {"gid": gid, "m": [first.address], "admin": 1}}),
        )
        .await?;
        let state: serde_json::Value = srv
            .client(&first.token)
            .post(&format!("/v1/groups/{gid}/call/recording"), &serde_json::json!({}))
            .await
            .map_err(|e| anyhow::anyhow!("starting the recording: {e:?}"))?;
        if state["active"] != true {
            anyhow::bail!("the recording did not start: {state}");
        }
    }
    super::settle(progress, "chorus", load.warmup).await;
    let written = crate::record::dir_bytes(&recordings);
    let (before, after, cost) =
        super::measure(progress, "chorus", srv.pid(), load.duration, || snapshot(&subscribers)).await?;
    super::flame(progress, "chorus", load, srv.pid()).await;
    let written = crate::record::dir_bytes(&recordings).saturating_sub(written);
    let setups: Vec<_> = subscribers.iter().map(|c| c.stats().subscribe_setup).collect();
    let mut run = SfuRun::from_window("chorus", load, cost, (&before, &after), &joined, &setups);
    if load.record {
        // Read as the server left them, still recording: no post-processing.
        let files = crate::record::files_with(&recordings, ".webm");
        let playable_as_written = crate::record::playable_webm(&files);
        run.recording = Some(crate::record::Recording {
            window_bytes: written,
            files: files.len(),
            playable_as_written,
            ..Default::default()
        });
    }
    for c in subscribers.into_iter().chain(publishers) {
        c.abort();
    }
    Ok(run)
}
