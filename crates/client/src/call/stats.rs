//! Receive (and send) statistics of a call, per (publisher, stream, kind).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_proto::call::MediaKind;

use super::media::Trailer;
use super::Transport;

/// Latency samples kept per track for percentiles (the most recent ones).
const LATENCY_SAMPLES: usize = 2048;

/// How often str0m reports receive statistics ([`TrackStats::packets`] and friends).
pub const INGRESS_STATS_INTERVAL: Duration = Duration::from_millis(250);

/// Width of a [`LatencyHistogram`] bucket, µs.
const BUCKET_US: u64 = 50;
/// Buckets of a [`LatencyHistogram`]: 50 µs wide up to 250 ms, then one overflow bucket.
const BUCKETS: usize = 5000;

/// Counts of one-way latencies in 50 µs buckets up to 250 ms (and one above). Cumulative:
/// [`LatencyHistogram::since`] gives the latencies recorded after an earlier snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyHistogram {
    counts: Vec<u32>,
    /// Highest latency recorded, µs.
    pub max_us: u64,
    /// Samples recorded.
    pub samples: u64,
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&mut self, us: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS + 1];
        }
        let i = ((us / BUCKET_US) as usize).min(BUCKETS);
        self.counts[i] += 1;
        self.samples += 1;
        self.max_us = self.max_us.max(us);
    }

    /// What was recorded after `earlier` (a snapshot of this histogram). The maximum is the
    /// upper edge of the highest bucket that grew (exact for the overflow: the all-time max).
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut out = LatencyHistogram { counts: vec![0; BUCKETS + 1], max_us: 0, samples: 0 };
        for (i, c) in self.counts.iter().enumerate() {
            let d = c - earlier.counts.get(i).copied().unwrap_or(0);
            out.counts[i] = d;
            out.samples += u64::from(d);
            if d > 0 {
                out.max_us = if i == BUCKETS { self.max_us } else { (i as u64 + 1) * BUCKET_US };
            }
        }
        out
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS + 1];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.samples += other.samples;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q` quantile (0.0..=1.0), µs: the upper edge of its bucket (the maximum for the
    /// overflow bucket).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.samples == 0 {
            return None;
        }
        let rank = ((self.samples as f64 * q.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(if i == BUCKETS {
                    self.max_us
                } else {
                    ((i as u64 + 1) * BUCKET_US).min(self.max_us.max(1))
                });
            }
        }
        Some(self.max_us)
    }
}

/// Gaps between two frames at least this long are kept in [`TrackStats::long_gaps`].
pub const LONG_GAP: Duration = Duration::from_millis(100);

/// How many [`TrackStats::long_gaps`] are kept (the most recent ones).
const LONG_GAPS_KEPT: usize = 256;

/// The window of [`TrackStats::recent_kbps`].
pub const RECENT_WINDOW: Duration = Duration::from_secs(2);

/// Names one received track: whose stream, which stream, audio or video.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey {
    /// The publisher's address.
    pub publisher: String,
    /// Their stream id.
    pub sid: u32,
    /// Audio or video.
    pub kind: Kind,
}

/// Audio or video, ordered (audio first) so stats print in a stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl From<MediaKind> for Kind {
    fn from(k: MediaKind) -> Kind {
        match k {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        }
    }
}

/// What arrived on one track.
#[derive(Debug, Clone, Default)]
pub struct TrackStats {
    /// Frames received.
    pub frames: u64,
    /// Payload bytes received (depacketized frames).
    pub bytes: u64,
    /// Keyframes received (video).
    pub keyframes: u64,
    /// Frames without a Chorus trailer (not from a synthetic source).
    pub untagged: u64,
    /// Frames missing by frame number within one layer (see the module docs of `call`).
    pub lost: u64,
    /// Frames that came with a frame number at or below one already seen.
    pub reordered: u64,
    /// Layer of the last frame (video).
    pub layer: Option<u8>,
    /// Highest layer received so far (video).
    pub max_layer: Option<u8>,
    /// Times the received layer changed.
    pub layer_switches: u64,
    /// Frames received per layer, lowest first.
    pub frames_per_layer: Vec<u64>,
    /// First frame.
    pub first_at: Option<Instant>,
    /// First keyframe (video; for audio every frame counts as one).
    pub first_keyframe_at: Option<Instant>,
    /// Last frame.
    pub last_at: Option<Instant>,
    /// Gaps of at least [`LONG_GAP`] between two frames, as (arrival of the frame that ended
    /// the gap, length), oldest first; the last [`LONG_GAPS_KEPT`] (a viewer's stalls).
    pub long_gaps: VecDeque<(Instant, Duration)>,
    /// One-way latency of the last frame, µs.
    pub last_latency_us: Option<u64>,
    /// Highest one-way latency, µs.
    pub max_latency_us: u64,
    /// RFC 6464 level of the last audio frame (dBov, negative), with voice activity.
    pub audio_level: Option<(i8, bool)>,
    /// RTP packets received, retransmissions included (str0m's receive statistics, updated
    /// every [`INGRESS_STATS_INTERVAL`]).
    pub packets: u64,
    /// RTP bytes received (headers included), as `packets`.
    pub rtp_bytes: u64,
    /// NACKs sent for this track, as `packets`.
    pub nacks: u64,
    /// Interarrival jitter of frames (RFC 3550 §6.4.1 estimator over the trailer's send
    /// times), µs.
    pub jitter_us: f64,
    /// Every one-way latency since the track began, as a histogram (subtract two snapshots
    /// for a window's percentiles).
    pub latency_histogram: LatencyHistogram,
    latencies: VecDeque<u64>,
    last_transit: Option<(u64, u64)>,
    last_frame: Option<(u8, u32)>,
    recent: VecDeque<(Instant, usize)>,
}

impl TrackStats {
    /// Records one frame received at `now` (`now_us` on the trailer clock).
    pub fn record(&mut self, now: Instant, now_us: u64, len: usize, key: bool, trailer: Option<Trailer>) {
        self.frames += 1;
        self.bytes += len as u64;
        self.keyframes += key as u64;
        self.first_at.get_or_insert(now);
        if key {
            self.first_keyframe_at.get_or_insert(now);
        }
        if let Some(gap) = self.last_at.map(|t| now.saturating_duration_since(t)).filter(|g| *g >= LONG_GAP) {
            if self.long_gaps.len() == LONG_GAPS_KEPT {
                self.long_gaps.pop_front();
            }
            self.long_gaps.push_back((now, gap));
        }
        self.last_at = Some(now);
        self.recent.push_back((now, len));
        while self.recent.front().is_some_and(|&(t, _)| now.duration_since(t) > RECENT_WINDOW) {
            self.recent.pop_front();
        }
        let Some(t) = trailer else {
            self.untagged += 1;
            return;
        };
        let latency = now_us.saturating_sub(t.sent_us);
        if let Some((sent, recv)) = self.last_transit {
            if t.sent_us > sent {
                let d = (now_us as f64 - recv as f64) - (t.sent_us as f64 - sent as f64);
                self.jitter_us += (d.abs() - self.jitter_us) / 16.0;
            }
        }
        self.last_transit = Some((t.sent_us, now_us));
        self.latency_histogram.record(latency);
        self.last_latency_us = Some(latency);
        self.max_latency_us = self.max_latency_us.max(latency);
        if self.latencies.len() == LATENCY_SAMPLES {
            self.latencies.pop_front();
        }
        self.latencies.push_back(latency);
        let layer = t.layer as usize;
        if self.frames_per_layer.len() <= layer {
            self.frames_per_layer.resize(layer + 1, 0);
        }
        self.frames_per_layer[layer] += 1;
        if self.layer.is_some_and(|l| l != t.layer) {
            self.layer_switches += 1;
        }
        self.layer = Some(t.layer);
        self.max_layer = self.max_layer.max(Some(t.layer));
        // Frame numbers count per layer: compare only within the layer we were receiving.
        match self.last_frame {
            Some((l, n)) if l == t.layer => {
                if t.frame > n {
                    self.lost += u64::from(t.frame - n - 1);
                } else {
                    self.reordered += 1;
                }
            }
            _ => {}
        }
        if self.last_frame.is_none_or(|(l, n)| l != t.layer || t.frame > n) {
            self.last_frame = Some((t.layer, t.frame));
        }
    }

    /// Forgets the frame number reference: the next frame starts a new run. Used when the
    /// server says it paused or switched the stream, so the skipped numbers are not loss.
    pub fn restart_run(&mut self) {
        self.last_frame = None;
    }

    /// Average kbps from the first to the last frame.
    pub fn kbps(&self) -> f64 {
        match (self.first_at, self.last_at) {
            (Some(a), Some(b)) if b > a => self.bytes as f64 * 8.0 / 1000.0 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// kbps over the last [`RECENT_WINDOW`] before `now`.
    pub fn recent_kbps(&self, now: Instant) -> f64 {
        let bytes: usize =
            self.recent.iter().filter(|&&(t, _)| now.duration_since(t) <= RECENT_WINDOW).map(|x| x.1).sum();
        bytes as f64 * 8.0 / 1000.0 / RECENT_WINDOW.as_secs_f64()
    }

    /// The `q` quantile (0.0..=1.0) of the recent one-way latencies, µs.
    pub fn latency_quantile_us(&self, q: f64) -> Option<u64> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v: Vec<u64> = self.latencies.iter().copied().collect();
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(v[i])
    }

    /// Median one-way latency, µs.
    pub fn latency_p50_us(&self) -> Option<u64> {
        self.latency_quantile_us(0.5)
    }
}

/// What was sent on one published medium.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentStats {
    /// Frames written, per layer (audio: one entry).
    pub frames: Vec<u64>,
    /// Bytes written, per layer.
    pub bytes: Vec<u64>,
    /// Keyframes written, per layer.
    pub keyframes: Vec<u64>,
    /// Keyframe requests received.
    pub keyframe_requests: u64,
}

impl SentStats {
    pub(crate) fn record(&mut self, layer: usize, len: usize, key: bool) {
        for v in [&mut self.frames, &mut self.bytes, &mut self.keyframes] {
            if v.len() <= layer {
                v.resize(layer + 1, 0);
            }
        }
        self.frames[layer] += 1;
        self.bytes[layer] += len as u64;
        self.keyframes[layer] += key as u64;
    }
}

/// State of one of the two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegState {
    /// Not negotiated yet.
    #[default]
    New,
    /// ICE is checking.
    Checking,
    /// ICE and DTLS are up: media flows.
    Connected,
    /// ICE lost the peer (may come back).
    Disconnected,
    /// Closed (the call ended, or the client froze).
    Closed,
}

/// When each step of a connection's first setup happened, the first time only: what a
/// join → first frame time is made of (the bench reports each against the join).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetupSteps {
    /// The remote offer was accepted (the subscribe connection: the server's `call_offer`).
    pub offer_at: Option<Instant>,
    /// ICE connected (a candidate pair answered its checks).
    pub ice_at: Option<Instant>,
    /// DTLS done and SRTP keyed (str0m's `Event::Connected`).
    pub dtls_at: Option<Instant>,
    /// The first RTP datagram arrived.
    pub first_rtp_at: Option<Instant>,
}

impl SetupSteps {
    /// The remote offer was accepted at `now`.
    pub fn on_offer(&mut self, now: Instant) {
        self.offer_at.get_or_insert(now);
    }

    /// Notes the connection's event `e` at `now`.
    pub fn on_event(&mut self, now: Instant, e: &str0m::Event) {
        use str0m::{Event, IceConnectionState};
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Connected | IceConnectionState::Completed) => {
                self.ice_at.get_or_insert(now);
            }
            Event::Connected => {
                self.dtls_at.get_or_insert(now);
            }
            _ => {}
        }
    }

    /// Notes a datagram the connection accepted at `now`. Returns whether it was the first RTP.
    pub fn on_datagram(&mut self, now: Instant, data: &[u8]) -> bool {
        if self.first_rtp_at.is_some() || !is_rtp(data) {
            return false;
        }
        self.first_rtp_at = Some(now);
        true
    }
}

/// An RTP (not RTCP) datagram, told apart as RFC 7983 and RFC 5761 do: first byte 128–191,
/// second byte (marker bit and payload type) outside RTCP's packet types 192–223.
pub fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && (128..=191).contains(&data[0]) && !(192..=223).contains(&data[1])
}

/// A snapshot of everything measured.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    /// Per received track.
    pub received: BTreeMap<TrackKey, TrackStats>,
    /// Per own stream id and kind.
    pub sent: BTreeMap<(u32, Kind), SentStats>,
    /// The publish connection.
    pub publish: LegState,
    /// The subscribe connection.
    pub subscribe: LegState,
    /// The downlink shaper's counters.
    pub shaper: super::shaper::ShaperStats,
    /// Media frames that arrived on a mid no `call_offer` track named.
    pub unmapped_frames: u64,
    /// The transport the call uses ([`CallOptions::transport`](super::CallOptions::transport)).
    pub transport: Transport,
    /// Where the publish connection's packets go (with TCP: once its connection is up).
    pub publish_path: Option<MediaPath>,
    /// Where the subscribe connection's packets go (with TCP: once its connection is up).
    pub subscribe_path: Option<MediaPath>,
    /// The steps of the subscribe connection's first setup.
    pub subscribe_setup: SetupSteps,
}

/// The two ends of one peer connection's media path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPath {
    /// UDP, or the leg's TCP connection.
    pub transport: Transport,
    /// The local end: the UDP socket, or the TCP connection's local address.
    pub local: SocketAddr,
    /// The server's address packets go to (`None` before the first one is sent).
    pub remote: Option<SocketAddr>,
}

impl CallStats {
    /// The stats of `publisher`'s stream `sid`, `kind`.
    pub fn track(&self, publisher: &str, sid: u32, kind: Kind) -> Option<&TrackStats> {
        self.received.get(&TrackKey { publisher: publisher.to_string(), sid, kind })
    }

    /// Publishers from whom at least one audio and one video frame arrived.
    pub fn publishers_with_audio_and_video(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, s) in &self.received {
            if k.kind == Kind::Video && s.frames > 0 {
                let audio = self
                    .received
                    .iter()
                    .any(|(a, s)| a.publisher == k.publisher && a.kind == Kind::Audio && s.frames > 0);
                if audio && !out.contains(&k.publisher) {
                    out.push(k.publisher.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only gaps of at least [`LONG_GAP`] between two frames are kept, with when they ended.
    #[test]
    fn long_gaps_between_frames_are_kept() {
        let t0 = Instant::now();
        let mut t = TrackStats::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for ms in [0, 33, 66, 666, 699, 799] {
            t.record(at(ms), 0, 100, false, None);
        }
        assert_eq!(t.long_gaps, [(at(666), Duration::from_millis(600)), (at(799), Duration::from_millis(100))]);
    }

    /// RTP is told from RTCP, STUN and DTLS by its first two bytes; each step keeps its first time.
    #[test]
    fn setup_steps_keep_the_first_time_of_each() {
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        rtp[1] = 96; // VP8, no marker
        let mut marked = rtp;
        marked[1] = 0x80 | 111; // Opus with the marker bit
        let mut rtcp = rtp;
        rtcp[1] = 200; // sender report
        let stun = [0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let dtls = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(is_rtp(&rtp) && is_rtp(&marked));
        assert!(!is_rtp(&rtcp) && !is_rtp(&stun) && !is_rtp(&dtls) && !is_rtp(&rtp[..8]));

        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(5);
        let mut s = SetupSteps::default();
        s.on_offer(t0);
        s.on_offer(t1);
        s.on_event(t0, &str0m::Event::IceConnectionStateChange(str0m::IceConnectionState::Checking));
        assert_eq!(s.ice_at, None, "checking is not connected");
        s.on_event(t1, &str0m::Event::IceConnectionStateChange(str0m::IceConnectionState::Connected));
        s.on_event(t1, &str0m::Event::Connected);
        assert!(!s.on_datagram(t0, &rtcp));
        assert!(s.on_datagram(t1, &rtp));
        assert!(!s.on_datagram(t1 + t1.duration_since(t0), &rtp), "only the first counts");
        assert_eq!(s, SetupSteps { offer_at: Some(t0), ice_at: Some(t1), dtls_at: Some(t1), first_rtp_at: Some(t1) });
    }

    #[test]
    fn latency_histogram_windows() {
        let mut h = LatencyHistogram::default();
        for us in [100, 120, 130, 900] {
            h.record(us);
        }
        let snap = h.clone();
        for _ in 0..99 {
            h.record(1_000);
        }
        h.record(400_000); // overflow bucket
        let w = h.since(&snap);
        assert_eq!(w.samples, 100);
        assert_eq!(w.quantile_us(0.5), Some(1_050));
        assert_eq!(w.quantile_us(0.99), Some(1_050));
        assert_eq!(w.quantile_us(1.0), Some(400_000));
        assert_eq!(h.quantile_us(0.0), Some(150));
        let mut m = LatencyHistogram::default();
        m.merge(&w);
        m.merge(&snap);
        assert_eq!(m.samples, 104);
    }

    #[test]
    fn jitter_from_trailers() {
        let t0 = Instant::now();
        let mut s = TrackStats::default();
        // Sent every 33 ms, received with alternating 0 / 10 ms extra delay.
        for i in 0..200u32 {
            let sent = u64::from(i) * 33_000;
            let recv = sent + 5_000 + if i % 2 == 0 { 0 } else { 10_000 };
            s.record(t0, recv, 100, false, Some(Trailer { layer: 0, frame: i, sent_us: sent }));
        }
        assert!((s.jitter_us - 10_000.0).abs() < 500.0, "{}", s.jitter_us);
    }

    #[test]
    fn counts_gaps_per_layer() {
        let t0 = Instant::now();
        let mut s = TrackStats::default();
        let tr = |layer, frame| Some(Trailer { layer, frame, sent_us: 1000 });
        s.record(t0, 3000, 100, true, tr(0, 0));
        s.record(t0, 3000, 100, false, tr(0, 1));
        s.record(t0, 3000, 100, false, tr(0, 4)); // 2, 3 lost
        assert_eq!(s.lost, 2);
        s.record(t0, 3000, 100, true, tr(2, 50)); // switch: no loss
        s.record(t0, 3000, 100, false, tr(2, 51));
        assert_eq!((s.lost, s.layer, s.max_layer, s.layer_switches), (2, Some(2), Some(2), 1));
        s.record(t0, 3000, 100, false, tr(2, 51));
        assert_eq!(s.reordered, 1);
        s.restart_run();
        s.record(t0, 3000, 100, true, tr(2, 90));
        assert_eq!(s.lost, 2, "a restarted run does not count the skipped frames");
        assert_eq!(s.last_latency_us, Some(2000));
        assert_eq!(s.latency_p50_us(), Some(2000));
        assert_eq!(s.frames_per_layer, vec![3, 0, 4]);
        assert_eq!(s.keyframes, 3);
    }

    #[test]
    fn rates() {
        let t0 = Instant::now();
        let mut s = TrackStats::default();
        for i in 0..=50u32 {
            s.record(t0 + Duration::from_millis(20 * i as u64), 0, 100, false, None);
        }
        // 5100 bytes over 1 s.
        assert!((s.kbps() - 40.8).abs() < 0.01, "{}", s.kbps());
        assert_eq!(s.untagged, 51);
        let r = s.recent_kbps(t0 + Duration::from_secs(1));
        assert!((r - 5100.0 * 8.0 / 1000.0 / 2.0).abs() < 0.01, "{r}");
    }
}
