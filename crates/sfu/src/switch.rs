//! Layer switching: which simulcast layer a subscriber track is fed from, and when it may change.
//!
//! A decoder can only join a video stream at a keyframe, so a [`LayerSwitcher`] moves to a new
//! target layer only at a keyframe *of that layer*. Until one arrives it keeps feeding the current
//! layer; if the current layer is gone (paused by the publisher, or video paused for this
//! subscriber) the subscriber gets nothing until the keyframe. While it waits the switcher asks
//! for a keyframe, and a [`KeyframeThrottle`] per publisher track keeps many waiting subscribers
//! from flooding the publisher with requests.

use std::time::{Duration, Instant};

use crate::{DropReason, Layer, PacketInfo, TrackKind};

/// What the switcher says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The packet belongs to the layer being forwarded.
    Forward,
    /// The packet is a keyframe of the target layer: forwarding switches to it here.
    SwitchHere,
    /// The packet is not forwarded.
    Drop(DropReason),
}

/// Chooses, packet by packet, whether a subscriber track is fed from a packet's layer.
#[derive(Debug)]
pub struct LayerSwitcher {
    kind: TrackKind,
    /// The layer being forwarded; `None` before the first switch point and after a loss.
    current: Option<Layer>,
    /// The layer wanted; `None` pauses the track.
    target: Option<Layer>,
    keyframe_retry: Duration,
    last_keyframe_request: Option<Instant>,
}

impl LayerSwitcher {
    /// A switcher that wants `target` from the start and repeats its keyframe request every
    /// `keyframe_retry` while it waits (the first request may have been throttled or lost).
    pub fn new(kind: TrackKind, target: Option<Layer>, keyframe_retry: Duration) -> Self {
        Self { kind, current: None, target, keyframe_retry, last_keyframe_request: None }
    }

    /// The layer being forwarded, if any.
    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// The layer wanted, or `None` if the track is paused.
    pub fn target(&self) -> Option<Layer> {
        self.target
    }

    /// Sets the layer to forward. Pausing (`None`) takes effect at once; a new layer takes
    /// effect at its next keyframe, and the current one is forwarded until then.
    pub fn set_target(&mut self, target: Option<Layer>) {
        if target == self.target {
            return;
        }
        self.target = target;
        // A new target deserves its own request right away, whatever was asked for before.
        self.last_keyframe_request = None;
        if target.is_none() {
            self.current = None;
        }
    }

    /// Tells the switcher that the publisher stopped sending `layer`. If it was being forwarded,
    /// the subscriber gets nothing until a keyframe of the target layer arrives.
    pub fn layer_stopped(&mut self, layer: Layer) {
        if self.current == Some(layer) {
            self.lose_current();
        }
    }

    /// Forgets the current layer, so that forwarding resumes only at a switch point of the target.
    pub fn lose_current(&mut self) {
        self.current = None;
        self.last_keyframe_request = None;
    }

    /// Decides what to do with `pkt`.
    pub fn gate(&mut self, pkt: &PacketInfo) -> Gate {
        let layer = Some(pkt.layer);
        if layer == self.target && self.current != self.target && self.is_switch_point(pkt) {
            self.current = self.target;
            return Gate::SwitchHere;
        }
        if layer == self.current {
            return Gate::Forward;
        }
        Gate::Drop(match self.target {
            None => DropReason::Paused,
            Some(target) if target == pkt.layer => DropReason::WaitingForKeyframe,
            Some(_) => DropReason::NotSelected,
        })
    }

    /// Whether forwarding may start at `pkt`: any media packet of an audio track, the first
    /// packet of a keyframe of a video track. Padding carries no media and never qualifies.
    pub fn is_switch_point(&self, pkt: &PacketInfo) -> bool {
        !pkt.is_padding() && (self.kind == TrackKind::Audio || pkt.keyframe)
    }

    /// The layer a keyframe should be requested on, if the switcher is waiting for one and has
    /// not asked within the retry interval. Pass the answer through the publisher track's
    /// [`KeyframeThrottle`] before sending a PLI.
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<Layer> {
        let target = self.target?;
        let waiting = self.kind == TrackKind::Video && self.current != Some(target);
        let due = self.last_keyframe_request.is_none_or(|at| now.saturating_duration_since(at) >= self.keyframe_retry);
        if waiting && due {
            self.last_keyframe_request = Some(now);
            Some(target)
        } else {
            None
        }
    }
}

/// Limits keyframe requests (PLI) sent to one publisher track, per layer: each layer is its own
/// RTP stream with its own encoder, so a keyframe on one does not help another.
///
/// It coalesces, it does not delay: while a request is outstanding (no keyframe of the layer
/// arrived since), further requests are left out — the keyframe on its way serves them all — for
/// up to `min_interval` (then the request counts as lost and goes again). Once the keyframe has
/// arrived ([`KeyframeThrottle::on_keyframe`]), the next request goes at once: a newcomer asking
/// just after a keyframe does not wait out the window.
#[derive(Debug)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: [Option<Instant>; Layer::COUNT],
}

impl KeyframeThrottle {
    /// The default spacing of requests on one layer, as LiveKit uses for its low layer: long
    /// enough for the keyframe to arrive, short enough that a lost one is soon asked for again.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);

    /// A throttle that lets through at most one request per layer every `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, last_sent: [None; Layer::COUNT] }
    }

    /// A keyframe of `layer` arrived: the outstanding request (if any) is served.
    pub fn on_keyframe(&mut self, layer: Layer) {
        self.last_sent[layer.index()] = None;
    }

    /// Whether a keyframe request for `layer` should be sent now. A `true` counts as sent.
    pub fn allow(&mut self, now: Instant, layer: Layer) -> bool {
        let last_sent = &mut self.last_sent[layer.index()];
        let allowed = last_sent.is_none_or(|at| now.saturating_duration_since(at) >= self.min_interval);
        if allowed {
            *last_sent = Some(now);
        }
        allowed
    }
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::at;

    const RETRY: Duration = Duration::from_millis(500);

    fn video(layer: Layer, keyframe: bool) -> PacketInfo {
        PacketInfo { ssrc: 1, seq: 0, timestamp: 0, marker: false, payload_len: 900, keyframe, layer }
    }

    fn padding(layer: Layer) -> PacketInfo {
        PacketInfo { payload_len: 0, ..video(layer, false) }
    }

    /// Feeds packets to a fresh video switcher targeting LOW and checks each gate, with an
    /// optional target change before the packet.
    fn check(steps: &[(Option<Option<Layer>>, PacketInfo, Gate)]) {
        let mut switcher = LayerSwitcher::new(TrackKind::Video, Some(Layer::LOW), RETRY);
        for (i, &(new_target, pkt, want)) in steps.iter().enumerate() {
            if let Some(target) = new_target {
                switcher.set_target(target);
            }
            assert_eq!(switcher.gate(&pkt), want, "step {i}");
        }
    }

    use DropReason::*;
    use Gate::*;
    use Layer as L;

    #[test]
    fn starts_only_at_a_keyframe_of_the_target() {
        check(&[
            (None, video(L::LOW, false), Drop(WaitingForKeyframe)),
            (None, video(L::MID, true), Drop(NotSelected)),
            (None, padding(L::LOW), Drop(WaitingForKeyframe)),
            (None, video(L::LOW, true), SwitchHere),
            (None, video(L::LOW, false), Forward),
            (None, video(L::LOW, true), Forward),
        ]);
    }

    #[test]
    fn keeps_forwarding_the_current_layer_until_the_targets_keyframe() {
        check(&[
            (None, video(L::LOW, true), SwitchHere),
            (Some(Some(L::HIGH)), video(L::LOW, false), Forward),
            (None, video(L::HIGH, false), Drop(WaitingForKeyframe)),
            (None, video(L::MID, true), Drop(NotSelected)),
            (None, video(L::LOW, false), Forward),
            (None, video(L::HIGH, true), SwitchHere),
            (None, video(L::LOW, false), Drop(NotSelected)),
            (None, video(L::HIGH, false), Forward),
        ]);
    }

    #[test]
    fn pausing_stops_at_once_and_resuming_waits_for_a_keyframe() {
        check(&[
            (None, video(L::LOW, true), SwitchHere),
            (Some(None), video(L::LOW, false), Drop(Paused)),
            (None, video(L::LOW, true), Drop(Paused)),
            (Some(Some(L::LOW)), video(L::LOW, false), Drop(WaitingForKeyframe)),
            (None, video(L::LOW, true), SwitchHere),
        ]);
    }

    #[test]
    fn a_stopped_current_layer_forwards_nothing_and_asks_for_a_keyframe() {
        let mut switcher = LayerSwitcher::new(TrackKind::Video, Some(L::MID), RETRY);
        assert_eq!(switcher.poll_keyframe_request(at(0)), Some(L::MID));
        assert_eq!(switcher.gate(&video(L::MID, true)), SwitchHere);
        assert_eq!(switcher.poll_keyframe_request(at(600)), None, "nothing to wait for");
        switcher.layer_stopped(L::LOW);
        assert_eq!(switcher.current(), Some(L::MID), "another layer stopping changes nothing");
        switcher.layer_stopped(L::MID);
        assert_eq!(switcher.current(), None);
        assert_eq!(switcher.gate(&video(L::MID, false)), Drop(WaitingForKeyframe));
        assert_eq!(switcher.poll_keyframe_request(at(601)), Some(L::MID));
    }

    #[test]
    fn keyframe_requests_repeat_at_the_retry_interval_while_waiting() {
        let mut switcher = LayerSwitcher::new(TrackKind::Video, Some(L::LOW), RETRY);
        let asked: Vec<u64> =
            (0..=1500).step_by(100).filter(|&ms| switcher.poll_keyframe_request(at(ms)).is_some()).collect();
        assert_eq!(asked, [0, 500, 1000, 1500]);
        // A new target asks at once.
        switcher.set_target(Some(L::HIGH));
        assert_eq!(switcher.poll_keyframe_request(at(1501)), Some(L::HIGH));
        // Paused: nothing to ask for.
        switcher.set_target(None);
        assert_eq!(switcher.poll_keyframe_request(at(5000)), None);
    }

    #[test]
    fn audio_starts_on_any_media_packet_and_never_asks_for_keyframes() {
        let mut switcher = LayerSwitcher::new(TrackKind::Audio, Some(L::LOW), RETRY);
        assert_eq!(switcher.poll_keyframe_request(at(0)), None);
        assert_eq!(switcher.gate(&padding(L::LOW)), Drop(WaitingForKeyframe));
        assert_eq!(switcher.gate(&video(L::LOW, false)), SwitchHere);
        assert_eq!(switcher.gate(&video(L::LOW, false)), Forward);
    }

    #[test]
    fn throttle_allows_one_request_per_layer_per_interval() {
        let mut throttle = KeyframeThrottle::default();
        let cases = [
            (0, L::LOW, true),
            (100, L::LOW, false),
            (100, L::HIGH, true),
            (499, L::LOW, false),
            (500, L::LOW, true),
            (550, L::HIGH, false),
            (600, L::HIGH, true),
            (999, L::LOW, false),
        ];
        for (ms, layer, want) in cases {
            assert_eq!(throttle.allow(at(ms), layer), want, "{layer:?} at {ms} ms");
        }
    }

    #[test]
    fn throttle_is_shared_by_all_subscribers_of_a_track() {
        let mut throttle = KeyframeThrottle::default();
        let mut subscribers: Vec<_> =
            (0..100).map(|_| LayerSwitcher::new(TrackKind::Video, Some(L::HIGH), RETRY)).collect();
        let mut sent = 0;
        for ms in (0..2000).step_by(20) {
            for subscriber in &mut subscribers {
                if let Some(layer) = subscriber.poll_keyframe_request(at(ms)) {
                    sent += usize::from(throttle.allow(at(ms), layer));
                }
            }
        }
        assert_eq!(sent, 4, "one PLI per 500 ms for 2 s, however many subscribers wait");
    }

    #[test]
    fn the_throttle_coalesces_while_a_keyframe_is_on_its_way_and_not_after() {
        let mut t = KeyframeThrottle::default();
        assert!(t.allow(at(0), L::LOW));
        assert!(!t.allow(at(100), L::LOW), "outstanding: the coming keyframe serves this one");
        assert!(t.allow(at(100), L::MID), "another layer is another encoder");
        t.on_keyframe(L::LOW);
        assert!(t.allow(at(150), L::LOW), "after the keyframe a new request goes at once");
        assert!(!t.allow(at(200), L::LOW));
        assert!(t.allow(at(650), L::LOW), "an unanswered request is repeated after the window");
    }
}
