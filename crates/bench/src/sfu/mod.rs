//! SFU scenarios: P publishers (synthetic VP8 simulcast 180p/360p/720p + Opus, paced like
//! cameras, keyframes every few seconds) and S subscribers that each take K of the published
//! streams at one layer, joined one after another; the same load against Chorus and against
//! Janus, inside a network namespace the benchmark makes ([`crate::netns`]).
//!
//! Every target reports the same [`SfuRun`]: per-stream figures over the steady window
//! (packets, bytes, frame loss, jitter, one-way latency from the send time each frame
//! carries) and the server's CPU and RSS from `/proc` over that window.

pub mod chorus;
pub mod flame;
pub mod janus;
pub mod live;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chorus_client::call::{Kind, LatencyHistogram, SetupSteps, TrackStats};
use serde::{Deserialize, Serialize};

use crate::proc::Cost;
use crate::progress::Progress;

/// The load of one SFU run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SfuLoad {
    /// Publishers, each sending one camera (3 simulcast layers) and one microphone.
    pub publishers: usize,
    /// Subscribers (they publish nothing).
    pub subscribers: usize,
    /// Streams (publishers) each subscriber takes, at most `publishers`.
    pub streams: usize,
    /// The simulcast layer subscribers take: 0 = 180p, 1 = 360p, 2 = 720p.
    pub layer: u8,
    /// Gap between two joins.
    #[serde(with = "ms")]
    pub join_interval: Duration,
    /// Time after the last join before the window opens.
    #[serde(with = "ms")]
    pub warmup: Duration,
    /// Length of the measured window.
    #[serde(with = "ms")]
    pub duration: Duration,
    /// The local address media use (the namespace's veth end, [`crate::netns::IFACE`]).
    pub bind: IpAddr,
    /// The server records every publisher ([`crate::record`]): Chorus by its API once all
    /// publish, Janus by its room's `record = true`.
    #[serde(default)]
    pub record: bool,
    /// Where to write a flame graph of the server after the window ([`flame`]), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flame: Option<std::path::PathBuf>,
}

impl SfuLoad {
    /// The publishers subscriber `s` takes: K consecutive ones starting at `s`.
    pub fn streams_of(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        let k = self.streams.min(self.publishers);
        (0..k).map(move |j| (s + j) % self.publishers)
    }

    /// Display height that selects [`SfuLoad::layer`] (layers are 180, 360 and 720 px tall).
    pub fn height(&self) -> u32 {
        [180, 360, 720][usize::from(self.layer.min(2))]
    }
}

/// Durations as whole milliseconds in JSON.
pub mod ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    /// Opus.
    Audio,
    /// VP8.
    Video,
}

impl From<Kind> for Medium {
    fn from(k: Kind) -> Medium {
        match k {
            Kind::Audio => Medium::Audio,
            Kind::Video => Medium::Video,
        }
    }
}

/// Which stream of which publisher a subscriber received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamKey {
    /// Subscriber index.
    pub subscriber: usize,
    /// Publisher index.
    pub publisher: usize,
    /// Audio or video.
    pub kind: Medium,
}

/// What every subscriber has received so far, per stream; taken at both ends of the window.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per stream.
    pub streams: Vec<(StreamKey, TrackStats)>,
}

/// One stream over the window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamResult {
    /// Which.
    #[serde(flatten)]
    pub key: StreamKey,
    /// RTP packets (retransmissions included).
    pub packets: u64,
    /// RTP bytes.
    pub bytes: u64,
    /// Frames received.
    pub frames: u64,
    /// Frames missing from the numbering (a frame is lost when any of its packets is).
    pub lost_frames: u64,
    /// NACKs sent.
    pub nacks: u64,
    /// Interarrival jitter at the end, ms.
    pub jitter_ms: f64,
    /// One-way latency percentiles over the window, ms.
    pub latency_p50_ms: Option<f64>,
    /// p99.
    pub latency_p99_ms: Option<f64>,
    /// Maximum.
    pub latency_max_ms: Option<f64>,
    /// Layer of the last frame (video).
    pub layer: Option<u8>,
    /// From the subscriber's join request to the stream's first frame, ms.
    pub first_frame_ms: Option<f64>,
    /// From the subscriber's join request to the stream's first keyframe, ms (video).
    #[serde(default)]
    pub first_keyframe_ms: Option<f64>,
}

/// How one subscriber's connection came up, ms after its join request (the steps between the
/// join and its first frame).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SetupResult {
    /// The server's offer for the subscriber's connection accepted.
    pub offer_ms: Option<f64>,
    /// ICE connected.
    pub ice_ms: Option<f64>,
    /// DTLS done (SRTP keyed).
    pub dtls_ms: Option<f64>,
    /// The first RTP datagram.
    pub first_rtp_ms: Option<f64>,
}

/// One target's run of one load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SfuRun {
    /// "chorus" or "janus".
    pub target: String,
    /// The load.
    pub load: SfuLoad,
    /// Server cost over the window.
    pub cost: Cost,
    /// Per stream.
    pub streams: Vec<StreamResult>,
    /// Streams expected (S × K × 2) and how many delivered anything in the window.
    pub expected_streams: usize,
    /// Streams with at least one packet in the window.
    pub live_streams: usize,
    /// One-way latency over every frame of every stream in the window, ms: p50, p99, max.
    pub latency_ms: [Option<f64>; 3],
    /// What recording did (record runs only).
    #[serde(default)]
    pub recording: Option<crate::record::Recording>,
    /// Per subscriber, how its connection came up.
    #[serde(default)]
    pub setup: Vec<SetupResult>,
}

/// Cross-stream totals of an [`SfuRun`].
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct SfuTotals {
    /// Packets forwarded to subscribers in the window, per second.
    pub packets_per_sec: f64,
    /// Megabits per second forwarded.
    pub mbps: f64,
    /// Forwarded packets per server CPU second.
    pub packets_per_cpu_sec: f64,
    /// Server CPU per forwarded packet, µs.
    pub cpu_us_per_packet: f64,
    /// Server cores busy.
    pub server_cores: f64,
    /// Server RSS at the end, MiB.
    pub server_rss_mib: f64,
    /// Lost frames / (received + lost), percent.
    pub frame_loss_pct: f64,
    /// Video frames lost, percent.
    pub video_frame_loss_pct: f64,
    /// One-way latency over every stream, ms.
    pub latency_p50_ms: f64,
    /// p99.
    pub latency_p99_ms: f64,
    /// Max.
    pub latency_max_ms: f64,
    /// Mean jitter over streams, ms.
    pub jitter_ms: f64,
    /// Join → first frame, median over streams, ms.
    pub first_frame_p50_ms: f64,
    /// Join → first frame, maximum, ms.
    pub first_frame_max_ms: f64,
    /// Join → the subscriber's offer accepted, median over subscribers, ms.
    pub offer_p50_ms: f64,
    /// Join → ICE connected, median, ms.
    pub ice_p50_ms: f64,
    /// Join → DTLS done, median, ms.
    pub dtls_p50_ms: f64,
    /// Join → first RTP datagram, median, ms.
    pub first_rtp_p50_ms: f64,
    /// Join → first keyframe, median over video streams, ms.
    pub first_keyframe_p50_ms: f64,
}

impl SfuRun {
    /// Builds a run from the snapshots at both ends of the window. `joined[s]` is when
    /// subscriber `s` sent its join, `setups[s]` how its connection came up.
    pub fn from_window(
        target: &str,
        load: &SfuLoad,
        cost: Cost,
        (before, after): (&Snapshot, &Snapshot),
        joined: &[Instant],
        setups: &[SetupSteps],
    ) -> SfuRun {
        let mut streams = Vec::new();
        let mut all = LatencyHistogram::default();
        let ms = |us: Option<u64>| us.map(|v| v as f64 / 1000.0);
        let since = |at: Option<Instant>, s: usize| {
            at.zip(joined.get(s)).map(|(t, j)| t.saturating_duration_since(*j).as_secs_f64() * 1000.0)
        };
        for (key, end) in &after.streams {
            let start = before.streams.iter().find(|(k, _)| k == key).map(|(_, t)| t.clone()).unwrap_or_default();
            let window = end.latency_histogram.since(&start.latency_histogram);
            all.merge(&window);
            let first = since(end.first_at, key.subscriber);
            let first_keyframe = match key.kind {
                Medium::Video => since(end.first_keyframe_at, key.subscriber),
                Medium::Audio => None,
            };
            streams.push(StreamResult {
                key: *key,
                packets: end.packets.saturating_sub(start.packets),
                bytes: end.rtp_bytes.saturating_sub(start.rtp_bytes),
                frames: end.frames.saturating_sub(start.frames),
                lost_frames: end.lost.saturating_sub(start.lost),
                nacks: end.nacks.saturating_sub(start.nacks),
                jitter_ms: end.jitter_us / 1000.0,
                latency_p50_ms: ms(window.quantile_us(0.5)),
                latency_p99_ms: ms(window.quantile_us(0.99)),
                latency_max_ms: ms(window.quantile_us(1.0)),
                layer: end.layer,
                first_frame_ms: first,
                first_keyframe_ms: first_keyframe,
            });
        }
        streams.sort_by_key(|s| s.key);
        let expected_streams = load.subscribers * load.streams.min(load.publishers) * 2;
        let live_streams = streams.iter().filter(|s| s.packets > 0).count();
        let latency_ms = [ms(all.quantile_us(0.5)), ms(all.quantile_us(0.99)), ms(all.quantile_us(1.0))];
        SfuRun {
            target: target.into(),
            load: load.clone(),
            cost,
            streams,
            expected_streams,
            live_streams,
            latency_ms,
            recording: None,
            setup: setups
                .iter()
                .enumerate()
                .map(|(s, st)| SetupResult {
                    offer_ms: since(st.offer_at, s),
                    ice_ms: since(st.ice_at, s),
                    dtls_ms: since(st.dtls_at, s),
                    first_rtp_ms: since(st.first_rtp_at, s),
                })
                .collect(),
        }
    }

    /// Totals over every stream of the window.
    pub fn summary(&self) -> SfuTotals {
        let secs = self.cost.wall_secs.max(1e-9);
        let packets: u64 = self.streams.iter().map(|s| s.packets).sum();
        let bytes: u64 = self.streams.iter().map(|s| s.bytes).sum();
        let loss = |video_only: bool| {
            let (got, lost) = self
                .streams
                .iter()
                .filter(|s| !video_only || s.key.kind == Medium::Video)
                .fold((0u64, 0u64), |(g, l), s| (g + s.frames, l + s.lost_frames));
            if got + lost == 0 {
                0.0
            } else {
                lost as f64 * 100.0 / (got + lost) as f64
            }
        };
        let mut firsts: Vec<f64> = self.streams.iter().filter_map(|s| s.first_frame_ms).collect();
        firsts.sort_by(f64::total_cmp);
        let median = |v: &[f64]| if v.is_empty() { f64::NAN } else { v[v.len() / 2] };
        let p50 = |v: &mut dyn Iterator<Item = Option<f64>>| {
            let mut v: Vec<f64> = v.flatten().collect();
            v.sort_by(f64::total_cmp);
            median(&v)
        };
        let setup = |f: fn(&SetupResult) -> Option<f64>| p50(&mut self.setup.iter().map(f));
        SfuTotals {
            packets_per_sec: packets as f64 / secs,
            mbps: bytes as f64 * 8.0 / 1e6 / secs,
            packets_per_cpu_sec: if self.cost.cpu_secs > 0.0 { packets as f64 / self.cost.cpu_secs } else { f64::NAN },
            cpu_us_per_packet: if packets > 0 { self.cost.cpu_secs * 1e6 / packets as f64 } else { f64::NAN },
            server_cores: self.cost.cores,
            server_rss_mib: self.cost.rss_kib as f64 / 1024.0,
            frame_loss_pct: loss(false),
            video_frame_loss_pct: loss(true),
            latency_p50_ms: self.latency_ms[0].unwrap_or(f64::NAN),
            latency_p99_ms: self.latency_ms[1].unwrap_or(f64::NAN),
            latency_max_ms: self.latency_ms[2].unwrap_or(f64::NAN),
            jitter_ms: if self.streams.is_empty() {
                f64::NAN
            } else {
                self.streams.iter().map(|s| s.jitter_ms).sum::<f64>() / self.streams.len() as f64
            },
            first_frame_p50_ms: median(&firsts),
            first_frame_max_ms: firsts.last().copied().unwrap_or(f64::NAN),
            offer_p50_ms: setup(|s| s.offer_ms),
            ice_p50_ms: setup(|s| s.ice_ms),
            dtls_p50_ms: setup(|s| s.dtls_ms),
            first_rtp_p50_ms: setup(|s| s.first_rtp_ms),
            first_keyframe_p50_ms: p50(&mut self.streams.iter().map(|s| s.first_keyframe_ms)),
        }
    }
}

/// Waits out the warm-up with a countdown.
pub async fn settle(progress: &Progress, target: &str, warmup: Duration) {
    let end = Instant::now() + warmup;
    while Instant::now() < end {
        progress.status(format!("{target}: warming up, {:.0} s left", (end - Instant::now()).as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(500).min(end - Instant::now())).await;
    }
}

/// The measured window of one run: the subscribers' statistics before and after it and the
/// server's cost over it, with the live forwarding rate on the status line meanwhile.
pub async fn measure(
    progress: &Progress,
    target: &str,
    server_pid: u32,
    duration: Duration,
    snapshot: impl Fn() -> Snapshot,
) -> anyhow::Result<(Snapshot, Snapshot, Cost)> {
    let packets = |s: &Snapshot| s.streams.iter().map(|(_, t)| t.packets).sum::<u64>();
    let before = snapshot();
    let window = crate::proc::Window::open(server_pid)?;
    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed()))).await;
        let forwarded = packets(&snapshot()) - packets(&before);
        let cpu = crate::proc::sample(server_pid).map(|x| x.cpu_secs - window.start().cpu_secs).unwrap_or(0.0);
        let secs = started.elapsed().as_secs_f64();
        progress.status(format!(
            "{target}: {secs:.0}/{:.0} s, {:.0} pkt/s forwarded, server {:.2} cores",
            duration.as_secs_f64(),
            forwarded as f64 / secs,
            cpu / secs
        ));
    }
    let after = snapshot();
    Ok((before, after, window.close()?))
}

/// With `--flame`, profiles the server after the window (not counted) and says where the flame
/// graph went, or why there is none; a failed profile fails nothing else.
pub async fn flame(progress: &Progress, target: &str, load: &SfuLoad, server_pid: u32) {
    let Some(dir) = &load.flame else { return };
    progress.status(format!("{target}: profiling the server for {} s (not counted)", flame::LENGTH.as_secs()));
    match flame::profile(dir, target, load.subscribers, server_pid).await {
        Ok(svg) => progress.step(format!("{target}: flame graph written to {}", svg.display())),
        Err(e) => progress.step(format!("{target}: no flame graph: {e:#}")),
    }
}

/// The report of a sweep: one section per load (Chorus beside Janus) and one with the plots
/// against subscriber count.
pub fn sections(runs: &[SfuRun], janus_name: Option<&str>) -> Vec<crate::report::Section> {
    use crate::report::{Better, Metric, Plot, Section, Series};
    let mut out = Vec::new();
    let mut loads: Vec<&SfuLoad> = Vec::new();
    for r in runs {
        if !loads.iter().any(|l| l.subscribers == r.load.subscribers) {
            loads.push(&r.load);
        }
    }
    let find = |target: &str, subs: usize| runs.iter().find(|r| r.target == target && r.load.subscribers == subs);
    for load in &loads {
        let c = find("chorus", load.subscribers);
        let j = find("janus", load.subscribers);
        let (ct, jt) = (c.map(SfuRun::summary), j.map(SfuRun::summary));
        let title = format!(
            "SFU: {} publishers → {} subscribers × {} streams at {}p",
            load.publishers,
            load.subscribers,
            load.streams.min(load.publishers),
            load.height()
        );
        let mut sec =
            Section::new(&format!("sfu-{}", load.subscribers), &title, serde_json::to_value(load).unwrap_or_default());
        sec.peer_name = janus_name.map(str::to_string);
        let pick = |t: Option<SfuTotals>, f: fn(&SfuTotals) -> f64| t.map(|t| f(&t)).filter(|v| v.is_finite());
        let m = |name: &str, unit: &str, better: Better, f: fn(&SfuTotals) -> f64| Metric {
            name: name.into(),
            unit: unit.into(),
            chorus: pick(ct, f),
            peer: pick(jt, f),
            better,
            target: None,
        };
        sec.metrics = vec![
            m("forwarded packets", "pkt/s", Better::Higher, |t| t.packets_per_sec),
            m("forwarded", "Mbit/s", Better::Higher, |t| t.mbps),
            m("server CPU", "cores", Better::Lower, |t| t.server_cores),
            m("server CPU per forwarded packet", "µs", Better::Lower, |t| t.cpu_us_per_packet)
                .target_vs_peer("≤ 1/3 of Janus", 1.0 / 3.0),
            m("forwarded packets per server core", "pkt/s", Better::Higher, |t| t.packets_per_cpu_sec)
                .target("≥ 250,000", 250_000.0),
            m("frame loss", "%", Better::Lower, |t| t.frame_loss_pct).target("< 0.1", 0.1),
            m("one-way latency p50", "ms", Better::Lower, |t| t.latency_p50_ms),
            m("one-way latency p99", "ms", Better::Lower, |t| t.latency_p99_ms),
            m("one-way latency max", "ms", Better::Lower, |t| t.latency_max_ms),
            m("jitter (mean of streams)", "ms", Better::Lower, |t| t.jitter_ms),
            m("join → subscriber's offer accepted p50", "ms", Better::Lower, |t| t.offer_p50_ms),
            m("join → ICE connected p50", "ms", Better::Lower, |t| t.ice_p50_ms),
            m("join → DTLS done p50", "ms", Better::Lower, |t| t.dtls_p50_ms),
            m("join → first RTP p50", "ms", Better::Lower, |t| t.first_rtp_p50_ms),
            m("join → first frame p50", "ms", Better::Lower, |t| t.first_frame_p50_ms),
            m("join → first keyframe p50", "ms", Better::Lower, |t| t.first_keyframe_p50_ms),
            m("join → first frame max", "ms", Better::Lower, |t| t.first_frame_max_ms),
            m("server RSS", "MiB", Better::Lower, |t| t.server_rss_mib),
        ];
        for r in [c, j].into_iter().flatten() {
            if r.live_streams < r.expected_streams {
                sec.notes.push(format!(
                    "{}: only {} of {} streams delivered in the window",
                    r.target, r.live_streams, r.expected_streams
                ));
            }
        }
        sec.details = serde_json::json!({ "runs": [c, j] });
        out.push(sec);
    }
    if loads.len() > 1 {
        let series = |target: &str, name: &str, f: fn(&SfuTotals) -> f64| Series {
            name: name.into(),
            points: runs
                .iter()
                .filter(|r| r.target == target)
                .map(|r| (r.load.subscribers as f64, f(&r.summary())))
                .filter(|p| p.1.is_finite())
                .collect(),
        };
        let plot = |file: &str, title: &str, y: &str, f: fn(&SfuTotals) -> f64| Plot {
            file: file.into(),
            title: title.into(),
            x_label: "subscribers".into(),
            y_label: y.into(),
            series: [series("chorus", "Chorus", f), series("janus", janus_name.unwrap_or("Janus"), f)]
                .into_iter()
                .filter(|s| !s.points.is_empty())
                .collect(),
        };
        let mut sec = Section::new("sfu-sweep", "SFU: cost and loss against subscriber count", serde_json::json!({}));
        sec.plots = vec![
            plot("sfu-cpu", "Server CPU against subscribers", "cores", |t| t.server_cores),
            plot("sfu-cpu-per-packet", "Server CPU per forwarded packet", "µs", |t| t.cpu_us_per_packet),
            plot("sfu-loss", "Frame loss against subscribers", "%", |t| t.frame_loss_pct),
            plot("sfu-latency", "One-way latency p99 against subscribers", "ms", |t| t.latency_p99_ms),
        ];
        out.push(sec);
    }
    out
}
