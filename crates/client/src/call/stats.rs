//! Receive (and send) statistics of a call, per (publisher, stream, kind).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_proto::call::MediaKind;

use super::media::Trailer;
use super::Transport;

/// Latency samples kept per track for percentiles (the most recent ones).
const LATENCY_SAMPLES: usize = 2048;

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
    /// Last frame.
    pub last_at: Option<Instant>,
    /// One-way latency of the last frame, µs.
    pub last_latency_us: Option<u64>,
    /// Highest one-way latency, µs.
    pub max_latency_us: u64,
    /// RFC 6464 level of the last audio frame (dBov, negative), with voice activity.
    pub audio_level: Option<(i8, bool)>,
    latencies: VecDeque<u64>,
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
