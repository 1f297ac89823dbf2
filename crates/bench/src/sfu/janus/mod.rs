//! The SFU load against Janus (the Debian package's `janus`, VideoRoom plugin, multistream
//! API of 1.x), shaped exactly like the Chorus run ([`super::chorus`]): the same publishers,
//! subscribers, synthetic media, join order, warm-up and measured window.
//!
//! # How Janus is configured
//!
//! Each run writes a private configuration folder in a tempdir ([`config`]) and starts
//! `janus -F <dir> -C <dir>/janus.jcfg` as a child process ([`server`]):
//!
//! * only the VideoRoom plugin and the WebSocket transport are loaded (every other plugin and
//!   transport, every event handler and logger is listed in `disable`); event broadcasting is
//!   off; `debug_level` 3 (warnings; `CHORUS_BENCH_JANUS_LOG=<level>` changes it and shows the
//!   log);
//! * the WebSocket API listens on 127.0.0.1 (a free port), plain `ws`, compact JSON, no admin API;
//! * ICE gathers on the namespace's veth end only (`ice_enforce_list = "bench0"`, the
//!   address media use; libnice ignores `lo`), no STUN/TURN, no IPv6, no mDNS, half trickle
//!   (Janus puts its candidates in its SDP), full ICE (not ICE-lite), RTP ports 10000–30000
//!   (clear of the ephemeral ports the benchmark's own sockets take);
//! * one static room (`room-1234`): VP8 + Opus only, `publishers` = P, `bitrate = 0` (no REMB
//!   cap: Janus never asks publishers to slow down), `fir_freq = 0` (no periodic keyframe
//!   requests: the synthetic cameras send a keyframe every 3 s anyway, as for Chorus), no
//!   recording (but in the record runs, [`crate::record`]: `record = true` and a `rec_dir`),
//!   no join notifications, no audio-level events.
//!
//! Everything else keeps Janus's defaults, which is what a deployment gets: one event-loop
//! thread per handle, NACK buffer with retransmissions, TWCC feedback, RTCP. Nothing is
//! added that Chorus does not do too.
//!
//! # How it is driven
//!
//! One WebSocket to the Janus API ([`api`]) carries every request; each participant has its
//! own session (kept alive every 25 s) and VideoRoom handle, and its own str0m peer
//! connection with one UDP socket on the load's address ([`peer`]):
//!
//! * **publisher** `i`: `join` as `ptype: publisher` with feed id `1 + i`, then `publish`
//!   with the client's offer — Opus and VP8 with three simulcast layers by rid (`q`, `h`,
//!   `f` = 180p, 360p, 720p, lowest first, hence `rid_order: "lmh"` in the JSEP; the rid and
//!   mid header extensions are str0m's defaults). Janus answers; the runner waits for
//!   `webrtcup` (a feed is subscribable only once its peer connection is up).
//! * **subscriber** `s`: one handle that `join`s as `ptype: subscriber` with
//!   `streams: [{feed, mid, substream: layer, temporal: 2}…]` for the audio and video of its K
//!   publishers — one peer connection carrying 2K m-lines, like Chorus's one subscribe
//!   connection. Janus offers (the `attached` event lists each m-line's `mid`, `feed_id` and
//!   type: that is how received frames are mapped to publishers); str0m answers and `start`
//!   sends the answer.
//!
//! The client's SDP carries its host candidate and `trickle: false`, so neither side trickles.
//! Frames are counted per (subscriber, publisher, medium) with the same [`TrackStats`] as the
//! Chorus run, packets/bytes/NACKs from str0m's receive statistics; the trailer of each frame
//! tells the layer received and the one-way latency.
//!
//! [`TrackStats`]: chorus_client::call::TrackStats

pub mod api;
pub mod config;
pub mod peer;
pub mod server;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;
use str0m::media::Mid;
use tokio::task::JoinHandle;

use super::{Medium, SfuLoad, SfuRun, Snapshot, StreamKey};
use crate::progress::Progress;
use api::{Api, Handle};
use config::ROOM;
use peer::{Peer, Received, Setup};
use server::JanusServer;

/// The plugin every handle attaches to.
const VIDEOROOM: &str = "janus.plugin.videoroom";

/// How long a publisher's peer connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How to run Janus.
#[derive(Debug, Clone)]
pub struct JanusOptions {
    /// The `janus` binary (Debian package `janus`).
    pub bin: PathBuf,
    /// `janus-pp-rec` (Debian package `janus-tools`), for the record runs' post-processing.
    pub pp_rec: PathBuf,
}

impl JanusOptions {
    /// `bin`, with `janus-pp-rec` beside it.
    pub fn new(bin: PathBuf) -> JanusOptions {
        let pp_rec = bin.with_file_name("janus-pp-rec");
        JanusOptions { bin, pp_rec }
    }
}

/// Janus's version (`janus --version`), e.g. "Janus 1.1.2", if it is installed.
pub fn version(opts: &JanusOptions) -> Option<String> {
    let out = std::process::Command::new(&opts.bin).arg("--version").output().ok()?;
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    server::parse_version(&text)
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

/// Feed id of publisher `i`.
fn feed_id(i: usize) -> u64 {
    1 + i as u64
}

/// A publisher in the room.
pub struct Publisher {
    audio_mid: Mid,
    video_mid: Mid,
    task: JoinHandle<()>,
    _handle: Handle,
}

/// A subscriber's connection.
pub struct Subscriber {
    /// What it received, per (publisher, medium).
    pub received: Received,
    /// How its connection came up.
    pub setup: Setup,
    /// The task driving its peer connection.
    pub task: JoinHandle<()>,
    _handle: Handle,
}

async fn join_publisher(api: &Api, load: &SfuLoad, i: usize) -> anyhow::Result<Publisher> {
    let session = api.create_session().await?;
    let mut handle = api.attach(session, VIDEOROOM).await?;
    let joined = api
        .message(
            &handle,
            json!({"request": "join", "ptype": "publisher", "room": ROOM, "id": feed_id(i), "display": format!("pub{i}")}),
            None,
        )
        .await
        .context("join as publisher")?;
    if joined.data["videoroom"] != "joined" {
        bail!("unexpected answer to join: {}", joined.data);
    }
    let mut peer = Peer::new(load.bind, false).await?;
    let (offer, pending, audio_mid, video_mid) = peer.publish_offer()?;
    let reply = api
        .message(
            &handle,
            json!({"request": "publish", "audiocodec": "opus", "videocodec": "vp8"}),
            Some(json!({"type": "offer", "sdp": offer, "trickle": false, "rid_order": "lmh"})),
        )
        .await
        .context("publish")?;
    let answer = reply.jsep.ok_or_else(|| anyhow!("publish answered without SDP: {}", reply.data))?;
    let (audio_pt, video_pt) = peer.accept_answer(pending, &answer.sdp, audio_mid, video_mid)?;
    let task = peer.spawn_publisher((audio_mid, audio_pt), (video_mid, video_pt));
    api::wait_event(&mut handle, "webrtcup", CONNECT_TIMEOUT).await.context("publisher connection")?;
    Ok(Publisher { audio_mid, video_mid, task, _handle: handle })
}

/// A subscriber handle that takes the video (at simulcast `layer`) and, with `audio`, the audio
/// of each publisher in `streams` (indices into `pubs`), over one peer connection on `bind`.
pub async fn join_subscriber(
    api: &Api,
    bind: IpAddr,
    pubs: &[Publisher],
    streams: &[usize],
    layer: u8,
    audio: bool,
) -> anyhow::Result<Subscriber> {
    let session = api.create_session().await?;
    let handle = api.attach(session, VIDEOROOM).await?;
    let mut wanted = Vec::new();
    for &p in streams {
        let feed = feed_id(p);
        if audio {
            wanted.push(json!({"feed": feed, "mid": pubs[p].audio_mid.to_string()}));
        }
        wanted.push(
            json!({"feed": feed, "mid": pubs[p].video_mid.to_string(), "substream": layer.min(2), "temporal": 2}),
        );
    }
    let attached = api
        .message(&handle, json!({"request": "join", "ptype": "subscriber", "room": ROOM, "streams": wanted}), None)
        .await
        .context("join as subscriber")?;
    if attached.data["videoroom"] != "attached" {
        bail!("unexpected answer to a subscriber join: {}", attached.data);
    }
    let offer = attached.jsep.ok_or_else(|| anyhow!("the subscription came without an offer"))?;
    let feeds: HashMap<u64, usize> = (0..pubs.len()).map(|p| (feed_id(p), p)).collect();
    let tracks: HashMap<Mid, (usize, Medium)> = api::map_streams(&api::sub_streams(&attached.data), &feeds)
        .into_iter()
        .map(|(m, k)| (Mid::from(m.as_str()), k))
        .collect();
    let expected = streams.len() * (1 + usize::from(audio));
    if tracks.len() != expected {
        bail!("Janus offered {} of {expected} streams: {}", tracks.len(), attached.data);
    }
    let mut peer = Peer::new(bind, true).await?;
    let answer = peer.accept_offer(&offer.sdp)?;
    let setup = Setup::default();
    setup.lock().unwrap_or_else(|e| e.into_inner()).on_offer(Instant::now());
    let received = Received::default();
    let task = peer.spawn_subscriber(tracks, received.clone(), setup.clone());
    let started = api
        .message(&handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer, "trickle": false})))
        .await
        .context("start")?;
    if started.data["started"] != "ok" {
        bail!("unexpected answer to start: {}", started.data);
    }
    Ok(Subscriber { received, setup, task, _handle: handle })
}

/// What every subscriber of `subs` has received, per stream.
pub fn snapshot(subs: &[Subscriber]) -> Snapshot {
    Snapshot {
        streams: subs
            .iter()
            .enumerate()
            .flat_map(|(s, sub)| {
                let r = sub.received.lock().unwrap_or_else(|e| e.into_inner());
                r.iter()
                    .map(|(&(publisher, kind), t)| (StreamKey { subscriber: s, publisher, kind }, t.clone()))
                    .collect::<Vec<_>>()
            })
            .collect(),
    }
}

/// Janus with its room and the load's publishers in it, each one's connection up.
pub struct Room {
    /// The server.
    pub srv: JanusServer,
    /// Its API.
    pub api: Api,
    /// The publishers, in order.
    pub publishers: Vec<Publisher>,
}

impl Room {
    /// Starts Janus (recording into `rec_dir`, if any) and joins the load's publishers one after
    /// another.
    pub async fn start(
        load: &SfuLoad,
        opts: &JanusOptions,
        rec_dir: Option<&std::path::Path>,
        progress: &Progress,
    ) -> anyhow::Result<Room> {
        install_crypto();
        progress.status("janus: starting");
        let (srv, api) = JanusServer::start(opts, load.publishers, rec_dir).await?;
        let mut publishers = Vec::new();
        for i in 0..load.publishers {
            progress.status(format!("janus: publisher {}/{} joining", i + 1, load.publishers));
            let p = join_publisher(&api, load, i)
                .await
                .with_context(|| format!("publisher {i}"))
                .map_err(|e| e.context(format!("Janus log:\n{}", srv.log_tail())))?;
            publishers.push(p);
            tokio::time::sleep(load.join_interval).await;
        }
        Ok(Room { srv, api, publishers })
    }

    /// Subscriber `s` of `load` joins (its K streams at the load's layer, audio and video).
    pub async fn join_subscriber(&self, load: &SfuLoad, s: usize) -> anyhow::Result<Subscriber> {
        let streams: Vec<usize> = load.streams_of(s).collect();
        join_subscriber(&self.api, load.bind, &self.publishers, &streams, load.layer, true)
            .await
            .with_context(|| format!("subscriber {s}"))
            .map_err(|e| e.context(format!("Janus log:\n{}", self.srv.log_tail())))
    }

    /// Stops every publisher's and subscriber's peer connection.
    pub fn stop(&self, subscribers: &[Subscriber]) {
        for t in subscribers.iter().map(|s| &s.task).chain(self.publishers.iter().map(|p| &p.task)) {
            t.abort();
        }
    }
}

/// The setup steps of every subscriber of `subs`.
pub fn setups(subs: &[Subscriber]) -> Vec<chorus_client::call::SetupSteps> {
    subs.iter().map(|s| *s.setup.lock().unwrap_or_else(|e| e.into_inner())).collect()
}

/// Runs `load` against a Janus started for it.
pub async fn run(load: &SfuLoad, opts: &JanusOptions, progress: &Progress) -> anyhow::Result<SfuRun> {
    // Record runs: the room records every publisher into this folder (`record = true`).
    let rec_dir =
        if load.record { Some(tempfile::Builder::new().prefix("chorus-bench-janus-rec-").tempdir()?) } else { None };
    let room = Room::start(load, opts, rec_dir.as_ref().map(|d| d.path()), progress).await?;
    let mut subscribers = Vec::new();
    let mut joined = Vec::new();
    for s in 0..load.subscribers {
        progress.status(format!("janus: subscriber {}/{} joining", s + 1, load.subscribers));
        joined.push(Instant::now());
        subscribers.push(room.join_subscriber(load, s).await?);
        tokio::time::sleep(load.join_interval).await;
    }
    let Room { mut srv, api, publishers } = room;
    super::settle(progress, "janus", load.warmup).await;
    srv.check_alive()?;
    let bytes = |d: &Option<tempfile::TempDir>| d.as_ref().map_or(0, |d| crate::record::dir_bytes(d.path()));
    let written = bytes(&rec_dir);
    let (before, after, cost) =
        super::measure(progress, "janus", srv.pid(), load.duration, || snapshot(&subscribers)).await?;
    super::flame(progress, "janus", load, srv.pid()).await;
    let written = bytes(&rec_dir).saturating_sub(written);
    for t in subscribers.iter().map(|s| &s.task).chain(publishers.iter().map(|p| &p.task)) {
        t.abort();
    }
    drop(api);
    drop(srv);
    let mut run = SfuRun::from_window("janus", load, cost, (&before, &after), &joined, &setups(&subscribers));
    if let Some(dir) = &rec_dir {
        progress.status("janus: post-processing the recordings (janus-pp-rec)");
        let files = crate::record::files_with(dir.path(), ".mjr");
        let mut rec = crate::record::Recording {
            window_bytes: written,
            files: files.len(),
            playable_as_written: files
                .iter()
                .filter(|f| crate::record::ffprobe(f).is_some_and(|(c, _)| c.iter().any(|c| c == "vp8" || c == "opus")))
                .count(),
            ..Default::default()
        };
        crate::record::post_process(&opts.pp_rec, dir.path(), &mut rec)?;
        run.recording = Some(rec);
    }
    Ok(run)
}
