//! Talk detection from RFC 6464 audio levels, and an active-speaker order.
//!
//! Every Opus packet from a browser carries the sender's audio level in a header extension:
//! 0 to 127, in -dBov, so *lower is louder* (0 is full scale, 127 is silence). Single packets are
//! noisy (a cough, a door), so levels are smoothed per participant, and a participant
//! * starts talking once the smoothed level has been at or louder than the threshold for
//!   [`TalkConfig::start_after`], and
//! * stops talking once it has been quieter for [`TalkConfig::stop_after`], or once no packet has
//!   arrived for that long (Opus DTX sends next to nothing during silence), checked by
//!   [`TalkDetector::handle_timeout`].
//!
//! Changes come out as [`TalkEvent`]s from [`TalkDetector::poll_event`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The quietest RFC 6464 level: digital silence.
pub const SILENCE: u8 = 127;

/// Tuning of talk detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkConfig {
    /// The quietest smoothed level that counts as voice, in -dBov. Speech into a headset sits
    /// around 20 to 40; room noise around 60 and quieter.
    pub voice_level: u8,
    /// How long the voice must last before a participant counts as talking.
    pub start_after: Duration,
    /// How long the quiet must last before a participant stops talking.
    pub stop_after: Duration,
}

impl Default for TalkConfig {
    fn default() -> Self {
        Self { voice_level: 50, start_after: Duration::from_millis(200), stop_after: Duration::from_secs(1) }
    }
}

/// A participant started or stopped talking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkEvent<K> {
    /// Who.
    pub who: K,
    /// `true` for started talking, `false` for stopped.
    pub talking: bool,
}

/// Talk state of every participant of a call, keyed by the caller's participant id `K`.
///
/// Participants are kept in a small vector searched linearly: a call has tens of speakers, and
/// that beats hashing at this size. Nothing is allocated per audio packet.
#[derive(Debug)]
pub struct TalkDetector<K> {
    config: TalkConfig,
    speakers: Vec<Speaker<K>>,
    events: VecDeque<TalkEvent<K>>,
}

#[derive(Debug)]
struct Speaker<K> {
    who: K,
    /// Smoothed loudness (`SILENCE - level`, so higher is louder) in sixteenths.
    loudness_x16: i32,
    talking: bool,
    /// Start of the current run of voice, or of quiet.
    run_since: Option<Instant>,
    last_packet_at: Instant,
    /// When the participant last stopped talking; orders the quiet ones.
    last_talked_at: Option<Instant>,
}

impl<K: Copy + Eq> TalkDetector<K> {
    /// A detector with the given tuning.
    pub fn new(config: TalkConfig) -> Self {
        Self { config, speakers: Vec::new(), events: VecDeque::new() }
    }

    /// Feeds the audio level of one packet from `who`, received at `now`. Levels above 127 (a
    /// raw extension byte with the voice-activity bit) count as their low seven bits.
    pub fn on_level(&mut self, now: Instant, who: K, level: u8) {
        let config = self.config;
        let index = match self.speakers.iter().position(|speaker| speaker.who == who) {
            Some(index) => index,
            None => {
                self.speakers.push(Speaker::new(who, now));
                self.speakers.len() - 1
            }
        };
        let speaker = &mut self.speakers[index];
        // A gap in packets breaks a run: voice 500 ms ago says nothing about voice now.
        if now.saturating_duration_since(speaker.last_packet_at) > config.start_after {
            speaker.run_since = None;
        }
        // Time never runs backwards here: an early `now` counts as no time passing.
        speaker.last_packet_at = speaker.last_packet_at.max(now);
        let loudness_x16 = i32::from(SILENCE - (level & SILENCE)) * 16;
        // Exponential smoothing with weight 1/4 (about four packets, 80 ms, of memory), rounded
        // away from zero so that a steady level is reached exactly.
        let delta = loudness_x16 - speaker.loudness_x16;
        speaker.loudness_x16 += (delta + 3 * delta.signum()) / 4;

        let voiced = speaker.loudness_x16 >= i32::from(SILENCE.saturating_sub(config.voice_level)) * 16;
        if voiced == speaker.talking {
            // Still in the state we are in: any run toward the other state is over.
            speaker.run_since = None;
            return;
        }
        let since = *speaker.run_since.get_or_insert(now);
        let needed = if voiced { config.start_after } else { config.stop_after };
        if now.saturating_duration_since(since) >= needed {
            self.events.push_back(speaker.set_talking(now, voiced));
        }
    }

    /// Stops participants whose packets stopped arriving while they talked.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stop_after = self.config.stop_after;
        for speaker in &mut self.speakers {
            if speaker.talking && now.saturating_duration_since(speaker.last_packet_at) >= stop_after {
                self.events.push_back(speaker.set_talking(now, false));
            }
        }
    }

    /// When [`TalkDetector::handle_timeout`] next has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stop_after = self.config.stop_after;
        self.speakers.iter().filter(|speaker| speaker.talking).map(|speaker| speaker.last_packet_at + stop_after).min()
    }

    /// The next talking / stopped-talking change, oldest first.
    pub fn poll_event(&mut self) -> Option<TalkEvent<K>> {
        self.events.pop_front()
    }

    /// Forgets a participant who left. If they were talking, no event is emitted: leaving says it.
    pub fn remove(&mut self, who: K) {
        self.speakers.retain(|speaker| speaker.who != who);
        self.events.retain(|event| event.who != who);
    }

    /// Whether `who` is talking.
    pub fn is_talking(&self, who: K) -> bool {
        self.speakers.iter().any(|speaker| speaker.who == who && speaker.talking)
    }

    /// Everyone heard from, in active-speaker order: those talking now, loudest first; then the
    /// others, most recently talking first; then those never heard talking, in order of arrival.
    pub fn active_speakers(&self) -> Vec<K> {
        let mut order: Vec<&Speaker<K>> = self.speakers.iter().collect();
        // Stable sort keeps arrival order among equals.
        order.sort_by(|a, b| {
            b.talking.cmp(&a.talking).then_with(|| {
                if a.talking {
                    b.loudness_x16.cmp(&a.loudness_x16)
                } else {
                    b.last_talked_at.cmp(&a.last_talked_at)
                }
            })
        });
        order.into_iter().map(|speaker| speaker.who).collect()
    }
}

impl<K: Copy + Eq> Default for TalkDetector<K> {
    fn default() -> Self {
        Self::new(TalkConfig::default())
    }
}

impl<K: Copy> Speaker<K> {
    fn new(who: K, now: Instant) -> Self {
        Self { who, loudness_x16: 0, talking: false, run_since: None, last_packet_at: now, last_talked_at: None }
    }

    fn set_talking(&mut self, now: Instant, talking: bool) -> TalkEvent<K> {
        self.talking = talking;
        self.run_since = None;
        if !talking {
            self.last_talked_at = Some(now);
        }
        TalkEvent { who: self.who, talking }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::at;

    const LOUD: u8 = 30;
    const QUIET: u8 = 90;

    /// Feeds `level` for `who` every 20 ms over `[from_ms, to_ms)`, returning the events as
    /// `(ms, talking)`.
    fn speak(detector: &mut TalkDetector<u32>, who: u32, from_ms: u64, to_ms: u64, level: u8) -> Vec<(u64, bool)> {
        let mut events = vec![];
        for ms in (from_ms..to_ms).step_by(20) {
            detector.on_level(at(ms), who, level);
            while let Some(event) = detector.poll_event() {
                assert_eq!(event.who, who);
                events.push((ms, event.talking));
            }
        }
        events
    }

    #[test]
    fn starts_after_the_start_delay_and_stops_after_the_hangover() {
        let mut detector = TalkDetector::default();
        assert_eq!(speak(&mut detector, 1, 0, 1000, QUIET), []);
        let started = speak(&mut detector, 1, 1000, 3000, LOUD);
        // Smoothing needs a few packets to cross the threshold, then 200 ms.
        assert_eq!(started.len(), 1);
        let (start_ms, talking) = started[0];
        assert!(talking && (1200..=1300).contains(&start_ms), "started at {start_ms}");
        let stopped = speak(&mut detector, 1, 3000, 5000, QUIET);
        assert_eq!(stopped.len(), 1);
        let (stop_ms, talking) = stopped[0];
        assert!(!talking && (4000..=4100).contains(&stop_ms), "stopped at {stop_ms}");
    }

    #[test]
    fn short_bursts_and_short_pauses_change_nothing() {
        let mut detector = TalkDetector::default();
        // Cough: 100 ms loud.
        assert_eq!(speak(&mut detector, 1, 0, 100, LOUD), []);
        assert_eq!(speak(&mut detector, 1, 100, 1000, QUIET), []);
        assert_eq!(speak(&mut detector, 1, 1000, 2000, LOUD).len(), 1);
        // Breath between sentences: 600 ms quiet.
        assert_eq!(speak(&mut detector, 1, 2000, 2600, QUIET), []);
        assert_eq!(speak(&mut detector, 1, 2600, 4000, LOUD), []);
        assert!(detector.is_talking(1));
    }

    #[test]
    fn threshold_is_inclusive_and_levels_are_masked_to_seven_bits() {
        let cases = [(50, true), (51, false), (0, true), (127, false), (0x80 | 30, true), (0x80 | 100, false)];
        for (level, talks) in cases {
            let mut detector = TalkDetector::default();
            speak(&mut detector, 1, 0, 2000, level);
            assert_eq!(detector.is_talking(1), talks, "level {level:#x}");
        }
    }

    #[test]
    fn silence_without_packets_stops_talking_on_timeout() {
        let mut detector = TalkDetector::default();
        speak(&mut detector, 1, 0, 1000, LOUD);
        assert!(detector.is_talking(1));
        let deadline = detector.poll_timeout().expect("a talker has a deadline");
        assert_eq!(deadline, at(980) + Duration::from_secs(1));
        detector.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(detector.poll_event(), None);
        detector.handle_timeout(deadline);
        assert_eq!(detector.poll_event(), Some(TalkEvent { who: 1, talking: false }));
        assert_eq!(detector.poll_timeout(), None);
    }

    #[test]
    fn active_speakers_puts_the_loudest_talker_first_then_the_most_recent() {
        let mut detector = TalkDetector::default();
        // 1 never talks; 2 talks then stops; 3 talks then stops later; 4 and 5 talk now, 5 louder.
        speak(&mut detector, 1, 0, 500, QUIET);
        speak(&mut detector, 2, 0, 1000, LOUD);
        speak(&mut detector, 2, 1000, 2500, QUIET);
        speak(&mut detector, 3, 0, 2000, LOUD);
        speak(&mut detector, 3, 2000, 3500, QUIET);
        speak(&mut detector, 4, 3000, 4000, 40);
        speak(&mut detector, 5, 3000, 4000, 10);
        assert_eq!(detector.active_speakers(), [5, 4, 3, 2, 1]);
        detector.remove(5);
        assert_eq!(detector.active_speakers(), [4, 3, 2, 1]);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut detector = TalkDetector::default();
        speak(&mut detector, 1, 1000, 2000, LOUD);
        detector.on_level(at(500), 1, QUIET);
        detector.handle_timeout(at(0));
        assert!(detector.is_talking(1));
    }
}
