//! `live`: one host (the SFU scenario's synthetic 720p simulcast camera + Opus) watched by N
//! subscribe-only viewers at the top layer, then a join storm: S more viewers arrive within a few
//! seconds while the N go on watching. Chorus runs it as a live call (the group's `live`
//! setting: the host is on stage, the viewers are its audience, subscribe-only and counted, not
//! announced); Janus as its VideoRoom with one subscriber handle per viewer, as in `sfu`.
//!
//! The steady part is an [`SfuRun`] of the SFU scenario (1 publisher → N subscribers × 1 stream
//! at 720p, the same join order, warm-up and window, the same statistics); the storm part is a
//! [`StormResult`]. Both targets go through the same [`run`], which drives an [`Audience`]: how
//! a viewer joins and what the viewers have received are all that differ.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chorus_client::call::{Call, CallOptions, SetupSteps, TrackStats};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{chorus, janus, ms, Medium, SfuLoad, SfuRun, SfuTotals, Snapshot};
use crate::proc::{Cost, Window};
use crate::progress::Progress;
use crate::server::{ChorusServer, ServerOptions};

/// A watching viewer stalls when no video frame arrives for longer than this.
pub const STALL: Duration = Duration::from_millis(500);

/// The load of one live run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveLoad {
    /// Viewers watching the host at 720p (the steady part).
    pub viewers: usize,
    /// Viewers that join in the storm (0: no storm).
    pub storm: usize,
    /// The storm's joins are spread evenly over this time.
    #[serde(with = "ms")]
    pub storm_secs: Duration,
    /// The layer storm viewers take: 0 = 180p, 1 = 360p, 2 = 720p.
    pub storm_layer: u8,
    /// Storm viewers take the host's audio too (else video only).
    pub storm_audio: bool,
    /// After the storm's last join, how long newcomers have for a first frame (and the
    /// watching viewers are still watched for stalls).
    #[serde(with = "ms")]
    pub storm_tail: Duration,
    /// Gap between two joins of the steady viewers.
    #[serde(with = "ms")]
    pub join_interval: Duration,
    /// Time after the last steady join before the window opens.
    #[serde(with = "ms")]
    pub warmup: Duration,
    /// The steady window.
    #[serde(with = "ms")]
    pub duration: Duration,
    /// The local address media use (the namespace's veth end).
    pub bind: IpAddr,
}

impl LiveLoad {
    /// The steady part as an SFU load: 1 publisher → `viewers` subscribers × 1 stream at 720p.
    pub fn steady(&self) -> SfuLoad {
        SfuLoad {
            publishers: 1,
            subscribers: self.viewers,
            streams: 1,
            layer: 2,
            join_interval: self.join_interval,
            warmup: self.warmup,
            duration: self.duration,
            bind: self.bind,
            record: false,
            flame: None,
        }
    }

    /// Display height of the storm viewers' layer.
    pub fn storm_height(&self) -> u32 {
        [180, 360, 720][usize::from(self.storm_layer.min(2))]
    }
}

/// What the join storm did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormResult {
    /// Viewers that joined in the storm.
    pub newcomers: usize,
    /// From the first join's start to the last one's, seconds (the spread actually achieved).
    pub spread_secs: f64,
    /// Joins that failed (signalling), with the first few reasons.
    pub join_errors: usize,
    /// The first few join errors.
    pub errors: Vec<String>,
    /// Per newcomer, from its join request to its first video frame, ms (`None`: none came).
    pub first_frame_ms: Vec<Option<f64>>,
    /// Viewers already watching during the storm.
    pub watchers: usize,
    /// Gaps longer than [`STALL`] between two video frames of a watching viewer that overlap
    /// the storm (its joins and the tail), a gap still open at the end included.
    pub stalls: usize,
    /// Watching viewers with at least one stall.
    pub watchers_stalled: usize,
    /// The longest gap between two video frames of any watching viewer during the storm, ms;
    /// `None` when none reached [`chorus_client::call::stats::LONG_GAP`] (100 ms).
    pub longest_gap_ms: Option<f64>,
    /// Video frames the watching viewers lost during the storm, percent.
    pub watcher_video_loss_pct: f64,
    /// How long the server's room took to answer the call requests made during the storm
    /// (`chorus_call_request_seconds`); `None` for a server that does not say.
    pub server_requests: Option<RequestWait>,
    /// Server cost from the storm's first join to the end of the tail.
    pub server: Cost,
    /// The load generator's own cost over the same time.
    pub generator: Cost,
}

impl StormResult {
    /// Newcomers that got a first video frame.
    pub fn with_first_frame(&self) -> usize {
        self.first_frame_ms.iter().flatten().count()
    }

    /// The `q` quantile of the newcomers' first-frame times (those that got one), ms.
    pub fn first_frame_quantile(&self, q: f64) -> f64 {
        let mut v: Vec<f64> = self.first_frame_ms.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }
}

/// Call requests a server answered over a window, from the difference of two readings of its
/// `chorus_call_request_seconds` histogram: whether a slow join waited on the server's room or
/// on the load generator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestWait {
    /// Requests answered.
    pub count: f64,
    /// The bucket bound at or under which half of them were answered, seconds.
    pub p50_s: f64,
    /// … and 99 % of them.
    pub p99_s: f64,
    /// The largest bucket bound up to 8 s (a client gives up at 10 s) …
    pub slow_s: f64,
    /// … and the requests answered after it.
    pub slower: f64,
}

impl RequestWait {
    /// The window's requests, from cumulative buckets `(upper bound, count)` read before and
    /// after (the same bounds, in order, `+Inf` last).
    pub fn between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<RequestWait> {
        if before.len() != after.len() || after.is_empty() {
            return None;
        }
        let diff: Vec<(f64, f64)> = after.iter().zip(before).map(|(&(le, a), &(_, b))| (le, a - b)).collect();
        let count = diff.last()?.1;
        let quantile = |q: f64| diff.iter().find(|(_, c)| *c >= q * count).map_or(f64::INFINITY, |(le, _)| *le);
        let (slow_s, within) = diff.iter().rev().find(|(le, _)| *le <= 8.0).copied().unwrap_or((0.0, 0.0));
        Some(RequestWait { count, p50_s: quantile(0.5), p99_s: quantile(0.99), slow_s, slower: count - within })
    }
}

/// The cumulative buckets `(upper bound, count)` of histogram `name` in a Prometheus text page.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// The stalls of watching viewers over `[from, to]`, from their video tracks at `to`: (stalls,
/// viewers with one, the longest gap seen).
pub fn stalls(video: &[(usize, &TrackStats)], from: Instant, to: Instant) -> (usize, usize, Option<Duration>) {
    let mut count = 0;
    let mut stalled = std::collections::BTreeSet::new();
    let mut longest: Option<Duration> = None;
    for &(viewer, t) in video {
        let open = t.last_at.map(|l| to.saturating_duration_since(l)).filter(|g| *g >= STALL);
        let gaps = t
            .long_gaps
            .iter()
            .filter(|(end, gap)| *end > from && end.checked_sub(*gap).is_none_or(|start| start < to))
            .map(|(_, gap)| *gap)
            .chain(open);
        for gap in gaps {
            longest = longest.max(Some(gap));
            if gap > STALL {
                count += 1;
                stalled.insert(viewer);
            }
        }
    }
    (count, stalled.len(), longest)
}

/// One target's live run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveRun {
    /// "chorus" or "janus".
    pub target: String,
    /// The load.
    pub load: LiveLoad,
    /// The steady window, as an SFU run.
    pub steady: SfuRun,
    /// The load generator's own cost over the steady window.
    pub generator: Cost,
    /// The storm, if there was one.
    pub storm: Option<StormResult>,
}

impl LiveRun {
    /// Viewers per server core busy in the steady window.
    pub fn viewers_per_core(&self) -> f64 {
        let cores = self.steady.cost.cores;
        if cores > 0.0 {
            self.load.viewers as f64 / cores
        } else {
            f64::NAN
        }
    }
}

/// How viewers join one target, and what they have received.
pub trait Audience {
    /// A viewer's connection.
    type Viewer;
    /// Viewer `i` (each index at most once) joins and takes the host's video at `layer`, and
    /// its audio with `audio`.
    async fn join(&self, i: usize, layer: u8, audio: bool) -> anyhow::Result<Self::Viewer>;
    /// What each of `viewers` has received, per stream (the host is publisher 0).
    fn snapshot(&self, viewers: &[Self::Viewer]) -> Snapshot;
    /// How each of `viewers`'s connection came up.
    fn setups(&self, viewers: &[Self::Viewer]) -> Vec<SetupSteps>;
    /// The server's process id.
    fn pid(&self) -> u32;
    /// The server's call request histogram now (see [`RequestWait`]); empty when it has none.
    async fn request_buckets(&self) -> Vec<(f64, f64)>;
    /// Drops `viewers`' connections.
    fn drop_viewers(&self, viewers: Vec<Self::Viewer>);
    /// Stops the host (the server stops when dropped).
    fn close(self);
}

/// The video tracks of `snap`, by viewer.
fn video(snap: &Snapshot) -> Vec<(usize, &TrackStats)> {
    snap.streams.iter().filter(|(k, _)| k.kind == Medium::Video).map(|(k, t)| (k.subscriber, t)).collect()
}

/// Runs `load` against `audience`: the steady viewers join one after another, the window is
/// measured, then the storm.
pub async fn run<A: Audience>(
    target: &str,
    audience: A,
    load: &LiveLoad,
    progress: &Progress,
) -> anyhow::Result<LiveRun> {
    let steady = load.steady();
    let mut viewers = Vec::with_capacity(load.viewers);
    let mut joined = Vec::with_capacity(load.viewers);
    for i in 0..load.viewers {
        progress.status(format!("{target}: viewer {}/{} joining", i + 1, load.viewers));
        joined.push(Instant::now());
        viewers.push(audience.join(i, 2, true).await.with_context(|| format!("viewer {i}"))?);
        tokio::time::sleep(load.join_interval).await;
    }
    super::settle(progress, target, load.warmup).await;
    let me = Window::open(std::process::id())?;
    let (before, after, cost) =
        super::measure(progress, target, audience.pid(), load.duration, || audience.snapshot(&viewers)).await?;
    let generator = me.close()?;
    let run = SfuRun::from_window(target, &steady, cost, (&before, &after), &joined, &audience.setups(&viewers));
    let storm = if load.storm > 0 { Some(storm(target, &audience, &viewers, load, progress).await?) } else { None };
    audience.drop_viewers(viewers);
    audience.close();
    Ok(LiveRun { target: target.into(), load: load.clone(), steady: run, generator, storm })
}

/// The join storm, with `watching` watching.
async fn storm<A: Audience>(
    target: &str,
    audience: &A,
    watching: &[A::Viewer],
    load: &LiveLoad,
    progress: &Progress,
) -> anyhow::Result<StormResult> {
    let n = load.storm;
    let gap = load.storm_secs / n as u32;
    let before = audience.snapshot(watching);
    let requests_before = audience.request_buckets().await;
    let (server, me) = (Window::open(audience.pid())?, Window::open(std::process::id())?);
    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let joins = futures_util::stream::iter(0..n)
        .map(|k| {
            let done = &done;
            async move {
                tokio::time::sleep_until((started + gap * k as u32).into()).await;
                let at = Instant::now();
                let viewer = audience.join(load.viewers + k, load.storm_layer, load.storm_audio).await;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress.status(format!("{target}: storm, {d}/{n} joined, {:.1} s", started.elapsed().as_secs_f64()));
                (k, at, viewer)
            }
        })
        .buffer_unordered(n);
    let mut results: Vec<_> = joins.collect().await;
    results.sort_by_key(|(k, _, _)| *k);
    let last_start = results.iter().map(|(_, at, _)| *at).max().unwrap_or(started);
    let tail_end = (started + load.storm_secs).max(last_start) + load.storm_tail;
    while Instant::now() < tail_end {
        progress.status(format!("{target}: storm tail, {:.0} s left", (tail_end - Instant::now()).as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(500).min(tail_end.saturating_duration_since(Instant::now()))).await;
    }
    let end = Instant::now();
    let after = audience.snapshot(watching);
    let (server, generator) = (server.close()?, me.close()?);
    let server_requests = RequestWait::between(&requests_before, &audience.request_buckets().await);
    let mut errors = Vec::new();
    let mut newcomers = Vec::new();
    let mut first_frame_ms = Vec::with_capacity(n);
    for (k, at, viewer) in results {
        match viewer {
            Ok(v) => {
                newcomers.push(v);
                let snap = audience.snapshot(std::slice::from_ref(newcomers.last().expect("pushed")));
                let first = video(&snap).iter().filter_map(|(_, t)| t.first_at).min();
                first_frame_ms.push(first.map(|f| f.saturating_duration_since(at).as_secs_f64() * 1000.0));
            }
            Err(e) => {
                if errors.len() < 5 {
                    errors.push(format!("storm viewer {k}: {e:#}"));
                }
                first_frame_ms.push(None);
            }
        }
    }
    let join_errors = n - newcomers.len();
    let (stall_count, watchers_stalled, longest) = stalls(&video(&after), started, end);
    let (mut got, mut lost) = (0u64, 0u64);
    for (key, t) in after.streams.iter().filter(|(k, _)| k.kind == Medium::Video) {
        let start = before.streams.iter().find(|(k, _)| k == key).map(|(_, t)| (t.frames, t.lost)).unwrap_or_default();
        got += t.frames.saturating_sub(start.0);
        lost += t.lost.saturating_sub(start.1);
    }
    audience.drop_viewers(newcomers);
    Ok(StormResult {
        newcomers: n,
        spread_secs: last_start.saturating_duration_since(started).as_secs_f64(),
        join_errors,
        errors,
        first_frame_ms,
        watchers: watching.len(),
        stalls: stall_count,
        watchers_stalled,
        longest_gap_ms: longest.map(|g| g.as_secs_f64() * 1000.0),
        watcher_video_loss_pct: if got + lost == 0 { 0.0 } else { lost as f64 * 100.0 / (got + lost) as f64 },
        server_requests,
        server,
        generator,
    })
}

/// Chorus: a live group (the `live` setting) whose owner is the host and whose other members may
/// subscribe but not publish (the audience); the real `chorus` binary, the Rust client.
pub struct ChorusAudience {
    srv: ChorusServer,
    /// One HTTP client for every viewer (with each one's token).
    http: chorus_client::Http,
    gid: i64,
    host: Call,
    host_address: String,
    viewers: Vec<crate::server::BenchUser>,
    options: CallOptions,
    index: HashMap<String, usize>,
}

impl ChorusAudience {
    /// Starts the server, makes the group and its `viewers + storm` audience members, and the
    /// host joins and publishes.
    pub async fn start(load: &LiveLoad, server: &ServerOptions, progress: &Progress) -> anyhow::Result<ChorusAudience> {
        let srv = ChorusServer::start(&server.clone().env("CHORUS_RTC_BIND_IP", load.bind))?;
        progress.status(format!("chorus: creating {} viewers", load.viewers + load.storm));
        let host = srv.users("host", 1).await?.remove(0);
        let viewers = srv.users("viewer", load.viewers + load.storm).await?;
        let created: serde_json::Value = srv
            .client(&host.token)
            .post("/v1/groups", &json!({"name": "live", "live": true, "call_flags": chorus::CALL_FLAGS}))
            .await
            .map_err(|e| anyhow::anyhow!("creating the live group: {e:?}"))?;
        let gid = created["group"]["gid"].as_i64().context("the new group has no gid")?;
        if created["group"]["live"] != true {
            bail!("the group is not live: {created}");
        }
        for chunk in viewers.chunks(5000) {
            let m: Vec<&str> = chunk.iter().map(|u| u.address.as_str()).collect();
            srv.backend(json!({"op": "groupeditmembers", "group": {"gid": gid, "m": m, "canpub": 0}})).await?;
        }
        let options = CallOptions { subscribe_all: false, bind: load.bind, ..Default::default() };
        progress.status("chorus: the host joins and publishes");
        let http = srv.client(&host.token);
        let host_call = chorus::join_publisher(&http, gid, &options).await?;
        if !host_call.joined().settings.live {
            bail!("the host's call is not live");
        }
        let index = HashMap::from([(host.address.clone(), 0)]);
        Ok(ChorusAudience { srv, http, gid, host: host_call, host_address: host.address, viewers, options, index })
    }
}

impl Audience for ChorusAudience {
    type Viewer = Call;

    async fn join(&self, i: usize, layer: u8, audio: bool) -> anyhow::Result<Call> {
        let want = chorus::Want { audio, video: true, height: [180, 360, 720][usize::from(layer.min(2))] };
        let host = [self.host_address.as_str()];
        let http = self.http.with_token(&self.viewers[i].token);
        let call = chorus::join_subscriber(&http, self.gid, &self.options, &host, want).await?;
        if call.joined().audience.is_none() || call.joined().permissions.publish {
            bail!("viewer {i} joined the call, but not as its audience");
        }
        Ok(call)
    }

    fn snapshot(&self, viewers: &[Call]) -> Snapshot {
        chorus::snapshot(viewers, &self.index)
    }

    fn setups(&self, viewers: &[Call]) -> Vec<SetupSteps> {
        viewers.iter().map(|c| c.stats().subscribe_setup).collect()
    }

    fn pid(&self) -> u32 {
        self.srv.pid()
    }

    async fn request_buckets(&self) -> Vec<(f64, f64)> {
        match self.srv.metrics().await {
            Ok(text) => buckets(&text, "chorus_call_request_seconds"),
            Err(_) => Vec::new(),
        }
    }

    fn drop_viewers(&self, viewers: Vec<Call>) {
        for c in viewers {
            c.abort();
        }
    }

    fn close(self) {
        self.host.abort();
    }
}

/// Janus: the SFU scenario's VideoRoom with the host as its one publisher; each viewer is a
/// subscriber handle.
pub struct JanusAudience {
    room: janus::Room,
    bind: IpAddr,
}

impl JanusAudience {
    /// Starts Janus and the host publishes.
    pub async fn start(
        load: &LiveLoad,
        opts: &janus::JanusOptions,
        progress: &Progress,
    ) -> anyhow::Result<JanusAudience> {
        let room = janus::Room::start(&load.steady(), opts, None, progress).await?;
        Ok(JanusAudience { room, bind: load.bind })
    }
}

impl Audience for JanusAudience {
    type Viewer = janus::Subscriber;

    async fn join(&self, i: usize, layer: u8, audio: bool) -> anyhow::Result<janus::Subscriber> {
        janus::join_subscriber(&self.room.api, self.bind, &self.room.publishers, &[0], layer, audio)
            .await
            .with_context(|| format!("viewer {i}"))
    }

    fn snapshot(&self, viewers: &[janus::Subscriber]) -> Snapshot {
        janus::snapshot(viewers)
    }

    fn setups(&self, viewers: &[janus::Subscriber]) -> Vec<SetupSteps> {
        janus::setups(viewers)
    }

    fn pid(&self) -> u32 {
        self.room.srv.pid()
    }

    async fn request_buckets(&self) -> Vec<(f64, f64)> {
        Vec::new()
    }

    fn drop_viewers(&self, viewers: Vec<janus::Subscriber>) {
        self.room.stop(&viewers);
    }

    fn close(self) {
        self.room.stop(&[]);
    }
}

/// Runs `load` against each of `targets` in order.
pub async fn run_targets(
    targets: &[String],
    load: &LiveLoad,
    chorus_bin: &std::path::Path,
    janus: &janus::JanusOptions,
    progress: &Progress,
) -> anyhow::Result<Vec<LiveRun>> {
    let mut runs = Vec::new();
    for target in targets {
        progress.step(format!(
            "live {target}: 1 host → {} viewers at 720p, then a storm of {} in {} s",
            load.viewers,
            load.storm,
            load.storm_secs.as_secs_f64()
        ));
        let run = match target.as_str() {
            "chorus" => {
                let a = ChorusAudience::start(load, &ServerOptions::new(chorus_bin.to_path_buf()), progress).await?;
                run("chorus", a, load, progress).await?
            }
            "janus" => run("janus", JanusAudience::start(load, janus, progress).await?, load, progress).await?,
            other => bail!("unknown live target {other:?} (chorus, janus)"),
        };
        let t = run.steady.summary();
        progress.step(format!(
            "  {target}: server {:.2} cores = {:.0} viewers per core, {:.1} µs per packet, loss {:.3} %, {}/{} streams",
            t.server_cores,
            run.viewers_per_core(),
            t.cpu_us_per_packet,
            t.frame_loss_pct,
            run.steady.live_streams,
            run.steady.expected_streams
        ));
        if let Some(s) = &run.storm {
            progress.step(format!(
                "  {target} storm: {}/{} got a first frame, p50 {:.0} ms, p99 {:.0} ms; {} stalls of {} watching",
                s.with_first_frame(),
                s.newcomers,
                s.first_frame_quantile(0.5),
                s.first_frame_quantile(0.99),
                s.stalls,
                s.watchers
            ));
        }
        runs.push(run);
    }
    Ok(runs)
}

/// The `q` quantile of the steady viewers' join → first frame (every stream), ms.
fn steady_first_frame(run: &LiveRun, q: f64) -> f64 {
    let s = StormResult {
        first_frame_ms: run.steady.streams.iter().map(|s| s.first_frame_ms).collect(),
        ..Default::default()
    };
    s.first_frame_quantile(q)
}

/// The report: the steady part and the storm, Chorus beside Janus.
pub fn sections(runs: &[LiveRun], janus_name: Option<&str>) -> Vec<crate::report::Section> {
    use crate::report::{Better, Metric, Section};
    let find = |target: &str| runs.iter().find(|r| r.target == target);
    let (c, j) = (find("chorus"), find("janus"));
    let Some(load) = c.or(j).map(|r| &r.load) else { return Vec::new() };
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    let m = |name: &str, unit: &str, better: Better, f: &dyn Fn(&LiveRun) -> f64| Metric {
        name: name.into(),
        unit: unit.into(),
        chorus: c.and_then(|r| finite(f(r))),
        peer: j.and_then(|r| finite(f(r))),
        better,
        target: None,
    };
    let t = |f: fn(&SfuTotals) -> f64| move |r: &LiveRun| f(&r.steady.summary());
    let title = format!("Live: 1 host (720p simulcast + Opus) → {} subscribe-only viewers at 720p", load.viewers);
    let mut steady = Section::new("live", &title, serde_json::to_value(load).unwrap_or_default());
    steady.peer_name = janus_name.map(str::to_string);
    steady.metrics = vec![
        m("viewers", "", Better::Higher, &|r| r.load.viewers as f64),
        m("viewers receiving 720p at the window's end", "", Better::Higher, &|r| {
            r.steady.streams.iter().filter(|s| s.key.kind == Medium::Video && s.layer == Some(2)).count() as f64
        }),
        m("server CPU", "cores", Better::Lower, &t(|t| t.server_cores)),
        m("viewers per server core", "viewers", Better::Higher, &LiveRun::viewers_per_core).target("≥ 600", 600.0),
        m("server CPU per forwarded packet", "µs", Better::Lower, &t(|t| t.cpu_us_per_packet))
            .target_vs_peer("≤ 1/3 of Janus", 1.0 / 3.0),
        m("forwarded packets per server CPU second", "pkt", Better::Higher, &t(|t| t.packets_per_cpu_sec)),
        m("forwarded packets", "pkt/s", Better::Higher, &t(|t| t.packets_per_sec)),
        m("forwarded", "Mbit/s", Better::Higher, &t(|t| t.mbps)),
        m("frame loss", "%", Better::Lower, &t(|t| t.frame_loss_pct)).target("< 0.1", 0.1),
        m("one-way latency p50", "ms", Better::Lower, &t(|t| t.latency_p50_ms)),
        m("one-way latency p99", "ms", Better::Lower, &t(|t| t.latency_p99_ms)),
        m("join → first frame p50", "ms", Better::Lower, &|r| steady_first_frame(r, 0.5)),
        m("join → first frame p99", "ms", Better::Lower, &|r| steady_first_frame(r, 0.99)),
        m("join → first frame max", "ms", Better::Lower, &|r| steady_first_frame(r, 1.0)),
        m("server RSS", "MiB", Better::Lower, &t(|t| t.server_rss_mib)),
        m("load generator CPU", "cores", Better::Lower, &|r| r.generator.cores),
    ];
    for r in [c, j].into_iter().flatten() {
        if r.steady.live_streams < r.steady.expected_streams {
            steady.notes.push(format!(
                "{}: only {} of {} streams delivered in the window",
                r.target, r.steady.live_streams, r.steady.expected_streams
            ));
        }
    }
    steady.notes.push(
        "viewers per server core = viewers / server cores busy in the window; the load generator shares the \
         machine's cores with the server"
            .into(),
    );
    steady.details = json!({ "runs": [c.map(|r| &r.steady), j.map(|r| &r.steady)] });
    let mut out = vec![steady];
    if load.storm > 0 {
        let s = |f: fn(&StormResult) -> f64| move |r: &LiveRun| r.storm.as_ref().map_or(f64::NAN, f);
        let title = format!(
            "Live: join storm, {} viewers in {} s at {}p{} while {} watch at 720p",
            load.storm,
            load.storm_secs.as_secs_f64(),
            load.storm_height(),
            if load.storm_audio { " + audio" } else { ", video only" },
            load.viewers
        );
        let mut sec = Section::new("live-storm", &title, serde_json::to_value(load).unwrap_or_default());
        sec.peer_name = janus_name.map(str::to_string);
        sec.metrics = vec![
            m("newcomers with a first frame", "", Better::Higher, &s(|s| s.with_first_frame() as f64))
                .target(&format!("all {}", load.storm), load.storm as f64),
            m("newcomers' joins refused or failed", "", Better::Lower, &s(|s| s.join_errors as f64)),
            m("join → first frame p50", "ms", Better::Lower, &s(|s| s.first_frame_quantile(0.5))),
            m("join → first frame p99", "ms", Better::Lower, &s(|s| s.first_frame_quantile(0.99)))
                .target("≤ 1000", 1000.0),
            m("join → first frame max", "ms", Better::Lower, &s(|s| s.first_frame_quantile(1.0))),
            m(
                "stalls (> 500 ms without video) of viewers already watching",
                "",
                Better::Lower,
                &s(|s| s.stalls as f64),
            )
            .target("0", 0.0),
            m("viewers already watching who stalled", "", Better::Lower, &s(|s| s.watchers_stalled as f64)),
            m(
                "longest video gap of a watching viewer",
                "ms",
                Better::Lower,
                &s(|s| s.longest_gap_ms.unwrap_or(chorus_client::call::stats::LONG_GAP.as_secs_f64() * 1000.0)),
            ),
            m("video frame loss of watching viewers", "%", Better::Lower, &s(|s| s.watcher_video_loss_pct)),
            m("joins spread over", "s", Better::Lower, &s(|s| s.spread_secs)),
            m("server CPU during the storm", "cores", Better::Lower, &s(|s| s.server.cores)),
            m("load generator CPU during the storm", "cores", Better::Lower, &s(|s| s.generator.cores)),
        ];
        sec.notes.push(format!(
            "the storm window runs from the first join to {} s after the last; a longest gap of 100 ms means \
             none reached 100 ms",
            load.storm_tail.as_secs_f64()
        ));
        for r in [c, j].into_iter().flatten() {
            if let Some(w) = r.storm.as_ref().and_then(|s| s.server_requests.as_ref()) {
                sec.notes.push(format!(
                    "{}: its rooms answered {} call requests during the storm, half within {} s and 99 % within \
                     {} s of reaching the room's queue, {} after more than {} s (bucket bounds of \
                     chorus_call_request_seconds)",
                    r.target, w.count, w.p50_s, w.p99_s, w.slower, w.slow_s
                ));
            }
            for e in r.storm.iter().flat_map(|s| &s.errors) {
                sec.notes.push(format!("{}: {e}", r.target));
            }
        }
        sec.details = json!({ "storms": [c.map(|r| &r.storm), j.map(|r| &r.storm)] });
        out.push(sec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wait_from_two_readings() {
        let page = |n: [u32; 4]| {
            format!(
                "# TYPE chorus_call_request_seconds histogram\n\
                 chorus_call_request_seconds_bucket{{le=\"0.5\"}} {}\n\
                 chorus_call_request_seconds_bucket{{le=\"4.0\"}} {}\n\
                 chorus_call_request_seconds_bucket{{le=\"16.0\"}} {}\n\
                 chorus_call_request_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 chorus_call_request_seconds_count {}\n",
                n[0], n[1], n[2], n[3], n[3]
            )
        };
        let before = buckets(&page([10, 10, 10, 10]), "chorus_call_request_seconds");
        assert_eq!(before.len(), 4);
        assert_eq!(before[3], (f64::INFINITY, 10.0));
        // 100 more: 60 within 0.5 s, 39 within 4 s, 1 within 16 s.
        let after = buckets(&page([70, 109, 110, 110]), "chorus_call_request_seconds");
        let w = RequestWait::between(&before, &after).expect("same buckets");
        assert_eq!((w.count, w.p50_s, w.p99_s, w.slow_s, w.slower), (100.0, 0.5, 4.0, 4.0, 1.0));
        assert!(RequestWait::between(&[], &after).is_none(), "no reading before");
    }

    #[test]
    fn stalls_overlapping_the_storm_are_counted_once_each() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = TrackStats::default();
        // Before the storm (ends at 900 < 1000): not counted.
        for ms in [0, 800, 900] {
            a.record(at(ms), 0, 10, false, None);
        }
        // A 700 ms gap ending at 1,600 (inside), and a 300 ms one (long, not a stall).
        for ms in [1600, 1900].into_iter().chain((1933..3000).step_by(33)) {
            a.record(at(ms), 0, 10, false, None);
        }
        let mut b = TrackStats::default();
        // Watching, then silent from 2,000 to the end at 3,000: an open stall.
        for ms in [1000, 2000] {
            b.record(at(ms), 0, 10, false, None);
        }
        let (count, stalled, longest) = stalls(&[(0, &a), (1, &b)], at(1000), at(3000));
        assert_eq!((count, stalled), (3, 2), "a: 700 ms, b: 1,000 ms and the open 1,000 ms");
        assert_eq!(longest, Some(Duration::from_millis(1000)));
    }

    #[test]
    fn first_frame_quantiles_skip_those_without_one() {
        let s = StormResult { first_frame_ms: vec![Some(30.0), None, Some(10.0), Some(20.0)], ..Default::default() };
        assert_eq!(s.with_first_frame(), 3);
        assert_eq!((s.first_frame_quantile(0.5), s.first_frame_quantile(1.0)), (20.0, 30.0));
        assert!(StormResult::default().first_frame_quantile(0.5).is_nan());
    }
}
