//! The forwarder of one subscriber track: a [`LayerSwitcher`] deciding which packets go out and a
//! [`Rewriter`] giving them the subscriber's numbering.

use std::time::{Duration, Instant};

use crate::rewrite::{RewriteError, Rewriter};
use crate::switch::{Gate, LayerSwitcher};
use crate::{Layer, PacketInfo, TrackKind};

/// What to do with one incoming packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the packet with these header fields written over the publisher's. Everything else
    /// (marker, payload type, extensions, payload) is unchanged.
    Forward {
        /// SSRC for the outgoing header.
        ssrc: u32,
        /// Sequence number for the outgoing header, extended to 64 bits (see
        /// [`Rewritten::seq`](crate::rewrite::Rewritten::seq)): what str0m's `SeqNo` takes.
        seq: u64,
        /// RTP timestamp for the outgoing header.
        ts: u32,
    },
    /// Do not send the packet to this subscriber.
    Drop(DropReason),
}

/// Why a packet was not forwarded. Useful as a metrics label; none of these is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The subscriber's track is paused (no bandwidth, or nobody watches it).
    Paused,
    /// The packet's layer is neither forwarded nor wanted.
    NotSelected,
    /// The packet is from the wanted layer, which cannot start before a keyframe.
    WaitingForKeyframe,
    /// Padding-only packet (bandwidth probe from the publisher); the subscriber's own probing is
    /// the sender's business.
    Padding,
    /// The forwarded layer's SSRC changed; forwarding resumes at the next switch point.
    SourceChanged,
    /// A late packet from before the point where forwarding of its layer began.
    BeforeSwitchPoint,
    /// Too late to be mapped (further back than the reorder window).
    TooOld,
    /// Already forwarded or dropped once.
    Duplicate,
}

impl From<RewriteError> for DropReason {
    fn from(error: RewriteError) -> Self {
        match error {
            RewriteError::OtherSource => DropReason::SourceChanged,
            RewriteError::BeforeStart => DropReason::BeforeSwitchPoint,
            RewriteError::TooOld => DropReason::TooOld,
            RewriteError::Duplicate => DropReason::Duplicate,
        }
    }
}

/// Settings of one [`Forwarder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Audio or video.
    pub kind: TrackKind,
    /// RTP clock rate of the track's codec, in Hz.
    pub clock_rate: u32,
    /// How often a forwarder that is waiting for a keyframe asks for one again.
    pub keyframe_retry: Duration,
}

impl ForwarderConfig {
    /// An Opus track: 48 kHz clock, no keyframes.
    pub const OPUS: ForwarderConfig =
        ForwarderConfig { kind: TrackKind::Audio, clock_rate: 48_000, keyframe_retry: Duration::from_millis(500) };

    /// A video track (VP8, VP9, H.264, AV1 all use a 90 kHz clock).
    pub const VIDEO: ForwarderConfig =
        ForwarderConfig { kind: TrackKind::Video, clock_rate: 90_000, keyframe_retry: Duration::from_millis(500) };
}

/// Forwards one published track to one subscriber.
///
/// The caller feeds every packet of every layer of the track to [`Forwarder::on_packet`] and
/// sends what it says to send; it sets the layer with [`Forwarder::set_target`] (from
/// [`crate::select`]), and after each packet or periodically drains
/// [`Forwarder::poll_keyframe_request`] into the publisher track's
/// [`crate::switch::KeyframeThrottle`].
#[derive(Debug)]
pub struct Forwarder {
    switcher: LayerSwitcher,
    rewriter: Rewriter,
}

impl Forwarder {
    /// A forwarder that writes `out_ssrc` into every packet and starts on the lowest layer.
    pub fn new(out_ssrc: u32, config: ForwarderConfig) -> Self {
        Self {
            switcher: LayerSwitcher::new(config.kind, Some(Layer::LOW), config.keyframe_retry),
            rewriter: Rewriter::new(out_ssrc, config.clock_rate),
        }
    }

    /// An Opus audio forwarder.
    pub fn audio(out_ssrc: u32) -> Self {
        Self::new(out_ssrc, ForwarderConfig::OPUS)
    }

    /// A video forwarder.
    pub fn video(out_ssrc: u32) -> Self {
        Self::new(out_ssrc, ForwarderConfig::VIDEO)
    }

    /// Decides what to do with one packet of the published track, received at `now`.
    pub fn on_packet(&mut self, now: Instant, pkt: &PacketInfo) -> Decision {
        match self.switcher.gate(pkt) {
            Gate::Drop(reason) => Decision::Drop(reason),
            Gate::SwitchHere => forward(self.rewriter.start(now, pkt)),
            Gate::Forward if pkt.is_padding() => match self.rewriter.skip(pkt) {
                Ok(()) | Err(RewriteError::OtherSource) => Decision::Drop(DropReason::Padding),
                Err(error) => Decision::Drop(error.into()),
            },
            Gate::Forward => match self.rewriter.forward(now, pkt) {
                Ok(rewritten) => forward(rewritten),
                // Same layer, new SSRC (the publisher renegotiated): a new stream to start.
                Err(RewriteError::OtherSource) if self.switcher.is_switch_point(pkt) => {
                    forward(self.rewriter.start(now, pkt))
                }
                Err(RewriteError::OtherSource) => {
                    self.switcher.lose_current();
                    Decision::Drop(DropReason::SourceChanged)
                }
                Err(error) => Decision::Drop(error.into()),
            },
        }
    }

    /// Sets the layer to forward (`None` pauses). See [`LayerSwitcher::set_target`].
    pub fn set_target(&mut self, target: Option<Layer>) {
        self.switcher.set_target(target);
    }

    /// Tells the forwarder the publisher stopped sending `layer`. See
    /// [`LayerSwitcher::layer_stopped`].
    pub fn layer_stopped(&mut self, layer: Layer) {
        self.switcher.layer_stopped(layer);
    }

    /// The layer a keyframe is needed on, if one should be requested now. See
    /// [`LayerSwitcher::poll_keyframe_request`].
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<Layer> {
        self.switcher.poll_keyframe_request(now)
    }

    /// The layer being forwarded, if any.
    pub fn current_layer(&self) -> Option<Layer> {
        self.switcher.current()
    }

    /// The layer wanted, or `None` if paused.
    pub fn target_layer(&self) -> Option<Layer> {
        self.switcher.target()
    }
}

fn forward(rewritten: crate::rewrite::Rewritten) -> Decision {
    Decision::Forward { ssrc: rewritten.ssrc, seq: rewritten.seq, ts: rewritten.timestamp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at, at_us, Rng};
    use DropReason::*;
    use Layer as L;

    const OUT: u32 = 0xABCD;

    /// A simulcast publisher: per layer its own SSRC, sequence numbers and timestamp origin (all
    /// near their wrap points), 30 fps, keyframes every `gop` frames at staggered positions.
    struct Publisher {
        layers: Vec<Stream>,
        frame: u64,
    }

    struct Stream {
        layer: Layer,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        packets_per_frame: u16,
        gop: u64,
    }

    impl Publisher {
        fn new(gop: u64) -> Self {
            let stream = |index: u8, packets_per_frame| Stream {
                layer: Layer::new(index).unwrap(),
                ssrc: 1000 + u32::from(index),
                seq: 65_000 + 100 * u16::from(index),
                timestamp: u32::MAX - 90_000 * u32::from(index + 1),
                packets_per_frame,
                gop,
            };
            Self { layers: vec![stream(0, 1), stream(1, 3), stream(2, 8)], frame: 0 }
        }

        /// The next frame of every layer, and when it arrives (microseconds).
        fn next_frame(&mut self) -> (u64, Vec<PacketInfo>) {
            let frame = self.frame;
            self.frame += 1;
            let mut packets = vec![];
            for stream in &mut self.layers {
                let keyframe = (frame + 7 * stream.layer.index() as u64) % stream.gop == 0;
                for i in 0..stream.packets_per_frame {
                    packets.push(PacketInfo {
                        ssrc: stream.ssrc,
                        seq: stream.seq,
                        timestamp: stream.timestamp,
                        marker: i + 1 == stream.packets_per_frame,
                        payload_len: 1000,
                        keyframe: keyframe && i == 0,
                        layer: stream.layer,
                    });
                    stream.seq = stream.seq.wrapping_add(1);
                }
                stream.timestamp = stream.timestamp.wrapping_add(3000);
            }
            (frame * 33_333, packets)
        }
    }

    fn audio(seq: u16, timestamp: u32, payload_len: usize) -> PacketInfo {
        PacketInfo { ssrc: 7, seq, timestamp, marker: false, payload_len, keyframe: false, layer: L::LOW }
    }

    #[test]
    fn audio_passes_straight_through_with_only_the_ssrc_rewritten() {
        let mut forwarder = Forwarder::audio(OUT);
        assert_eq!(forwarder.poll_keyframe_request(at(0)), None);
        let cases = [
            (audio(500, 48_000, 80), Decision::Forward { ssrc: OUT, seq: 500, ts: 48_000 }),
            (audio(501, 48_960, 80), Decision::Forward { ssrc: OUT, seq: 501, ts: 48_960 }),
            (audio(502, 49_920, 0), Decision::Drop(Padding)),
            (audio(503, 50_880, 80), Decision::Forward { ssrc: OUT, seq: 502, ts: 50_880 }),
            (audio(503, 50_880, 80), Decision::Drop(Duplicate)),
        ];
        for (i, (pkt, want)) in cases.into_iter().enumerate() {
            assert_eq!(forwarder.on_packet(at(20 * i as u64), &pkt), want, "packet {i}");
        }
        // Muted (paused) and unmuted: continues without a gap.
        forwarder.set_target(None);
        assert_eq!(forwarder.on_packet(at(100), &audio(504, 51_840, 80)), Decision::Drop(Paused));
        forwarder.set_target(Some(L::LOW));
        assert!(matches!(forwarder.on_packet(at(120), &audio(505, 52_800, 80)), Decision::Forward { seq: 503, .. }));
    }

    #[test]
    fn video_starts_at_a_keyframe_and_asks_for_one_meanwhile() {
        let mut forwarder = Forwarder::video(OUT);
        assert_eq!(forwarder.poll_keyframe_request(at(0)), Some(L::LOW));
        let pkt = |seq, keyframe, layer| PacketInfo {
            ssrc: 1,
            seq,
            timestamp: 0,
            marker: false,
            payload_len: 1000,
            keyframe,
            layer,
        };
        let cases = [
            (pkt(10, false, L::LOW), Decision::Drop(WaitingForKeyframe)),
            (pkt(11, true, L::MID), Decision::Drop(NotSelected)),
            (pkt(12, true, L::LOW), Decision::Forward { ssrc: OUT, seq: 12, ts: 0 }),
            (pkt(13, false, L::LOW), Decision::Forward { ssrc: OUT, seq: 13, ts: 0 }),
            (PacketInfo { payload_len: 0, ..pkt(14, false, L::LOW) }, Decision::Drop(Padding)),
            (pkt(15, false, L::LOW), Decision::Forward { ssrc: OUT, seq: 14, ts: 0 }),
            (pkt(12, false, L::LOW), Decision::Drop(Duplicate)),
            (pkt(11, false, L::LOW), Decision::Drop(BeforeSwitchPoint)),
        ];
        for (i, (pkt, want)) in cases.into_iter().enumerate() {
            assert_eq!(forwarder.on_packet(at(i as u64), &pkt), want, "packet {i}");
        }
        assert_eq!(forwarder.current_layer(), Some(L::LOW));
        assert_eq!(forwarder.poll_keyframe_request(at(1000)), None);
    }

    #[test]
    fn a_new_ssrc_on_the_current_layer_waits_for_its_keyframe() {
        let mut forwarder = Forwarder::video(OUT);
        let pkt = |ssrc, seq, keyframe| PacketInfo {
            ssrc,
            seq,
            timestamp: 0,
            marker: false,
            payload_len: 1000,
            keyframe,
            layer: L::LOW,
        };
        assert!(matches!(forwarder.on_packet(at(0), &pkt(1, 100, true)), Decision::Forward { seq: 100, .. }));
        assert_eq!(forwarder.on_packet(at(10), &pkt(2, 7, false)), Decision::Drop(SourceChanged));
        assert_eq!(forwarder.poll_keyframe_request(at(10)), Some(L::LOW));
        assert_eq!(forwarder.on_packet(at(20), &pkt(2, 8, false)), Decision::Drop(WaitingForKeyframe));
        assert!(matches!(forwarder.on_packet(at(30), &pkt(2, 9, true)), Decision::Forward { seq: 101, .. }));
    }

    #[test]
    fn switching_up_and_down_keeps_one_continuous_stream() {
        let mut publisher = Publisher::new(30);
        let mut forwarder = Forwarder::video(OUT);
        let mut out = vec![];
        for frame in 0..300 {
            match frame {
                100 => forwarder.set_target(Some(L::HIGH)),
                200 => forwarder.set_target(Some(L::MID)),
                _ => {}
            }
            let (us, packets) = publisher.next_frame();
            for pkt in packets {
                if let Decision::Forward { seq, ts, .. } = forwarder.on_packet(at_us(us), &pkt) {
                    out.push((pkt.layer, seq, ts));
                }
            }
        }
        // Layer keyframes: LOW at frames 0, 30, ..; MID at 23, 53, ..; HIGH at 16, 46, ...
        let first_of = |layer| out.iter().position(|&(l, _, _)| l == layer).unwrap();
        let (high_at, mid_at) = (first_of(L::HIGH), first_of(L::MID));
        assert_eq!(high_at, 107, "low frames 0..=106 (one packet each), then high from its keyframe in frame 106");
        assert!(out[high_at..mid_at].iter().all(|&(l, _, _)| l == L::HIGH));
        assert!(out[mid_at..].iter().all(|&(l, _, _)| l == L::MID));
        for pair in out.windows(2) {
            let ((_, seq_a, ts_a), (_, seq_b, ts_b)) = (pair[0], pair[1]);
            // Extended: the publisher's numbers start at 65 000 and wrap; ours count on.
            assert_eq!(seq_b, seq_a + 1);
            let step = ts_b.wrapping_sub(ts_a);
            assert!(step == 0 || step == 3000, "timestamp step {step}");
        }
    }

    /// Thousands of frames with random target changes, pauses, vanishing layers, padding and
    /// keyframe requests: the subscriber never sees a sequence gap, a step backwards, a timestamp
    /// going backwards, or a layer starting anywhere but at a keyframe.
    #[test]
    fn random_switching_never_breaks_the_stream() {
        for seed in 1..=20 {
            let mut rng = Rng::new(seed);
            let mut publisher = Publisher::new(10 + rng.below(50));
            let mut forwarder = Forwarder::video(OUT);
            let mut last: Option<(u64, u32)> = None;
            let mut last_layer = None;
            let mut forwarded = 0;
            for _ in 0..3000 {
                if rng.chance(0.03) {
                    let target = if rng.chance(0.1) { None } else { Layer::new(rng.below(3) as u8) };
                    forwarder.set_target(target);
                }
                if rng.chance(0.005) {
                    forwarder.layer_stopped(Layer::new(rng.below(3) as u8).unwrap());
                }
                if forwarder.current_layer().is_none() {
                    // Whatever comes next is a fresh start and must be a keyframe.
                    last_layer = None;
                }
                let (us, packets) = publisher.next_frame();
                forwarder.poll_keyframe_request(at_us(us));
                for mut pkt in packets {
                    if rng.chance(0.05) {
                        pkt.payload_len = 0;
                        pkt.keyframe = false;
                    }
                    let Decision::Forward { ssrc, seq, ts } = forwarder.on_packet(at_us(us), &pkt) else {
                        continue;
                    };
                    assert_eq!(ssrc, OUT);
                    assert!(!pkt.is_padding());
                    if last_layer != Some(pkt.layer) {
                        assert!(pkt.keyframe, "seed {seed}: layer {:?} started without a keyframe", pkt.layer);
                        last_layer = Some(pkt.layer);
                    }
                    if let Some((last_seq, last_ts)) = last {
                        assert_eq!(seq, last_seq + 1, "seed {seed}: sequence gap");
                        assert!((ts.wrapping_sub(last_ts) as i32) >= 0, "seed {seed}: timestamp went backwards");
                    }
                    last = Some((seq, ts));
                    forwarded += 1;
                }
            }
            assert!(forwarded > 3000, "seed {seed}: only {forwarded} packets forwarded");
        }
    }
}
