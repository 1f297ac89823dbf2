//! A subscriber's downlink estimate, whatever feedback its client sends.
//!
//! Layer selection needs an estimate for every subscriber, but clients differ in what they tell:
//!
//! * **TWCC** (transport-wide congestion control feedback): the server's own send-side estimator
//!   (str0m's GCC, with probes) measures the link. Best; what browsers do.
//! * **REMB** only: the client estimates its downlink itself and reports a bitrate. Taken as is.
//! * **Neither**: nothing measures the link. Staying at the configured start rate forever would
//!   keep such a subscriber on a low layer on any link, so the estimate climbs from the start rate
//!   the way GCC's loss-based controller does without delay feedback (draft-ietf-rmcat-gcc §6):
//!   up 8 % a second while the receiver reports (RTCP receiver reports) under 2 % loss, held
//!   between 2 and 10 %, cut by half the loss fraction above 10 %. It climbs only up to what the
//!   subscriber could use ([`DownlinkEstimate::set_ceiling`]), so it never claims far more than
//!   has been tried.
//!
//! **Restarting a stuck estimator.** A delay-based estimator grows only to about 1.5 times what
//! the link carries. When a subscriber's video pauses for a reason of its own (the publisher's
//! layers stopped arriving, its CPU starved), the link carries audio alone, the TWCC estimate
//! sinks to ~100 kbit/s, and then nothing raises it again: too small to resume the video, so the
//! link keeps carrying audio alone (seen for 30 s and more in `tests/bad_networks.rs`). While a
//! paused track waits for bandwidth the estimate does not grant,
//! [`DownlinkEstimate::poll_restart`] says when to restart the estimator from its current value:
//! a fresh one probes at once (padding bursts at several times the estimate), which measures the
//! link without risking the media on it. If the link really is small the probes say so and the
//! video stays paused; the restarts then back off from [`RESTART_FIRST`] to [`RESTART_MAX`].
//!
//! **A start rate is a guess.** Until the estimator has had [`SETTLE`] to probe the link after the
//! connection came up, its estimate is the configured start rate, not a measurement: the layer
//! selection does not pause video for it ([`DownlinkEstimate::provisional`]). Pausing then cost a
//! subscriber that joined during a crowd's keyframes (which inflate the lowest layers' measured
//! rates) seconds of black tiles: the track resumed only after the estimate rose *and* the
//! selector's hold passed. An estimate that falls below the start rate is a measurement (the
//! estimator saw the link carry less) and counts at once.
//!
//! The source is chosen by what is *arriving*: TWCC while it measured within [`FRESH`], else
//! REMB while one arrived within [`FRESH`], else the loss-based climb (which starts from the last
//! estimate, so a client that stops sending feedback keeps what was learnt).

use std::time::{Duration, Instant};

/// Feedback older than this no longer decides the estimate.
pub const FRESH: Duration = Duration::from_secs(3);
/// The loss-based climb: per second while loss is low.
const CLIMB_PER_SEC: f64 = 0.08;
/// Loss below this lets the estimate climb; above [`LOSS_HIGH`] cuts it.
const LOSS_LOW: f32 = 0.02;
const LOSS_HIGH: f32 = 0.10;
/// The estimate never falls below this (bit/s): the lowest layer and audio must stay possible.
pub const FLOOR_BPS: u64 = 100_000;

/// How long after the connection came up the estimate may still be the start rate's guess (see
/// the module docs): GCC's first probes report within about a second.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How long a paused track waits for the estimate before the estimator is first restarted.
pub const RESTART_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between restarts, on a link that really is too small.
pub const RESTART_MAX: Duration = Duration::from_secs(60);

/// Where the estimate comes from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The server's send-side estimator on TWCC feedback.
    Twcc,
    /// The client's REMB reports.
    Remb,
    /// No feedback: climbing from the start rate while receiver reports show little loss.
    LossBased,
}

/// One subscriber's downlink estimate (see the module doc). Time is an argument.
#[derive(Debug, Clone)]
pub struct DownlinkEstimate {
    /// The loss-based estimate (also the start rate until feedback says more).
    loss_based: f64,
    twcc: Option<u64>,
    twcc_feedback: Option<Instant>,
    remb: Option<(u64, Instant)>,
    /// The most the loss-based climb goes to.
    ceiling: u64,
    last_update: Option<Instant>,
    /// Loss reported since the last update (the worst stream's fraction).
    loss: Option<f32>,
    /// Since when a paused track has waited for bandwidth (see [`DownlinkEstimate::poll_restart`]).
    starved_since: Option<Instant>,
    /// How long to wait before the next restart.
    restart_wait: Duration,
    /// The configured start rate.
    start_bps: u64,
    /// When the subscriber's connection last came up.
    connected: Option<Instant>,
}

impl DownlinkEstimate {
    /// Starts at `start_bps`, which is also the ceiling until [`DownlinkEstimate::set_ceiling`].
    pub fn new(start_bps: u64) -> Self {
        DownlinkEstimate {
            loss_based: start_bps.max(FLOOR_BPS) as f64,
            twcc: None,
            twcc_feedback: None,
            remb: None,
            ceiling: start_bps.max(FLOOR_BPS),
            last_update: None,
            loss: None,
            starved_since: None,
            restart_wait: RESTART_FIRST,
            start_bps,
            connected: None,
        }
    }

    /// The subscriber's connection came up (again: a new connection's estimator starts over).
    pub fn on_connected(&mut self, now: Instant) {
        self.connected = Some(now);
    }

    /// Whether an estimate of `bps` at `now` is still the start rate's guess rather than a
    /// measurement: before the connection is up and for [`SETTLE`] after, unless it is below the
    /// start rate. The caller does not pause video for a provisional estimate.
    pub fn provisional(&self, now: Instant, bps: u64) -> bool {
        let settling = self.connected.is_none_or(|at| now.saturating_duration_since(at) < SETTLE);
        settling && bps >= self.start_bps
    }

    /// The send-side (TWCC) estimator's latest estimate. It counts only while TWCC feedback is
    /// seen arriving ([`DownlinkEstimate::on_twcc_feedback`]): an estimator that hears nothing
    /// repeats its start rate.
    pub fn on_twcc(&mut self, bps: u64) {
        self.twcc = Some(bps);
    }

    /// TWCC feedback arrived (it covered packets sent recently).
    pub fn on_twcc_feedback(&mut self, now: Instant) {
        self.twcc_feedback = Some(now);
    }

    /// A REMB report from the client.
    pub fn on_remb(&mut self, now: Instant, bps: u64) {
        self.remb = Some((bps, now));
    }

    /// A receiver report's loss fraction (0–1) for one of the streams sent to this subscriber.
    pub fn on_loss(&mut self, loss: f32) {
        if loss.is_finite() {
            let loss = loss.clamp(0.0, 1.0);
            self.loss = Some(self.loss.map_or(loss, |l| l.max(loss)));
        }
    }

    /// The most the loss-based climb may reach: what the subscriber would use at best.
    pub fn set_ceiling(&mut self, bps: u64) {
        self.ceiling = bps.max(FLOOR_BPS);
    }

    /// Where the estimate comes from at `now`.
    pub fn source(&self, now: Instant) -> Source {
        let fresh = |at: Option<Instant>| at.is_some_and(|at| now.saturating_duration_since(at) < FRESH);
        if self.twcc.is_some() && fresh(self.twcc_feedback) {
            Source::Twcc
        } else if fresh(self.remb.map(|(_, at)| at)) {
            Source::Remb
        } else {
            Source::LossBased
        }
    }

    /// Whether to restart the send-side estimator now (see the module docs). `starved` says
    /// whether a paused video track waits for more bandwidth than the estimate grants. Only a
    /// TWCC estimate is restarted: REMB is the client's own, and the loss-based climb needs none.
    /// Each restart doubles the wait before the next, up to [`RESTART_MAX`]; a starvation that
    /// ends (the track resumed, or nothing waits any more) starts again from [`RESTART_FIRST`].
    pub fn poll_restart(&mut self, now: Instant, starved: bool) -> bool {
        if !starved || self.source(now) != Source::Twcc {
            if !starved {
                self.starved_since = None;
                self.restart_wait = RESTART_FIRST;
            }
            return false;
        }
        let since = *self.starved_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.restart_wait {
            return false;
        }
        self.starved_since = Some(now);
        self.restart_wait = (self.restart_wait * 2).min(RESTART_MAX);
        true
    }

    /// Moves the loss-based estimate on to `now` and returns the estimate (bit/s). Call it
    /// regularly (every few hundred ms).
    pub fn update(&mut self, now: Instant) -> u64 {
        let elapsed = self.last_update.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last_update = Some(now);
        let loss = self.loss.take();
        match self.source(now) {
            Source::Twcc => {
                let bps = self.twcc.unwrap_or(0);
                self.loss_based = bps as f64;
                bps
            }
            Source::Remb => {
                let bps = self.remb.map_or(0, |(b, _)| b);
                self.loss_based = bps as f64;
                bps
            }
            Source::LossBased => {
                match loss {
                    Some(l) if l > LOSS_HIGH => self.loss_based *= 1.0 - 0.5 * f64::from(l),
                    Some(l) if l >= LOSS_LOW => {}
                    _ => {
                        let grown = self.loss_based * (1.0 + CLIMB_PER_SEC).powf(elapsed.as_secs_f64());
                        // Never climbs past the ceiling, and never pulls an estimate down to it.
                        self.loss_based = grown.min((self.ceiling as f64).max(self.loss_based));
                    }
                }
                self.loss_based = self.loss_based.max(FLOOR_BPS as f64);
                self.loss_based as u64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn without_feedback_it_climbs_from_the_start_rate_while_loss_is_low() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(1_000_000);
        assert_eq!(e.update(t0), 1_000_000);
        assert_eq!(e.update(t0 + secs(5.0)), 1_000_000, "no climb past what the subscriber uses");
        e.set_ceiling(10_000_000);
        let t0 = t0 + secs(5.0);
        for i in 1..=40 {
            e.on_loss(0.0);
            e.update(t0 + secs(0.25 * i as f64));
        }
        // 10 s at 8 %/s: ×2.16.
        let bps = e.update(t0 + secs(10.0));
        assert!((2_100_000..2_200_000).contains(&bps), "{bps}");
        assert_eq!(e.source(t0 + secs(10.0)), Source::LossBased);
    }

    #[test]
    fn the_start_rate_is_provisional_until_the_estimator_had_time_or_measured_less() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(1_000_000);
        assert!(e.provisional(t0 + secs(30.0), 1_000_000), "not connected yet: nothing measured");
        e.on_connected(t0);
        assert!(e.provisional(t0 + secs(1.9), 1_060_000));
        assert!(!e.provisional(t0 + secs(1.9), 990_000), "below the start rate: measured");
        assert!(!e.provisional(t0 + SETTLE, 1_060_000), "settled");
        e.on_connected(t0 + secs(10.0));
        assert!(e.provisional(t0 + secs(10.5), 1_000_000), "a new connection starts over");
    }

    #[test]
    fn a_starved_twcc_estimator_is_restarted_with_backoff() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(1_000_000);
        // No TWCC yet: nothing to restart.
        assert!(!e.poll_restart(t0, true));
        e.on_twcc(98_000);
        e.on_twcc_feedback(t0);
        let at = |s: f64| t0 + secs(s);
        let feedback = |e: &mut DownlinkEstimate, s: f64| e.on_twcc_feedback(at(s));
        // Starved from 0 s: the first restart after RESTART_FIRST, then 2 s, 4 s, 8 s later.
        let mut restarts = Vec::new();
        for tenth in 0..=160 {
            let s = f64::from(tenth) / 10.0;
            feedback(&mut e, s);
            if e.poll_restart(at(s), true) {
                restarts.push(s);
            }
        }
        assert_eq!(restarts, vec![1.0, 3.0, 7.0, 15.0]);
        // The track resumed: the next starvation waits RESTART_FIRST again.
        assert!(!e.poll_restart(at(16.1), false));
        feedback(&mut e, 18.1);
        assert!(!e.poll_restart(at(16.2), true));
        assert!(!e.poll_restart(at(17.1), true));
        assert!(e.poll_restart(at(17.2), true));
        // The waits stop growing at RESTART_MAX.
        let mut t = 17.2;
        for _ in 0..10 {
            t += 100.0;
            feedback(&mut e, t);
            assert!(e.poll_restart(at(t), true));
        }
        feedback(&mut e, t + 59.0);
        assert!(!e.poll_restart(at(t + 59.0), true));
        feedback(&mut e, t + 60.0);
        assert!(e.poll_restart(at(t + 60.0), true));
    }

    #[test]
    fn only_a_twcc_estimate_is_restarted() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(300_000);
        e.on_remb(t0, 98_000);
        assert!(!e.poll_restart(t0, true));
        assert!(!e.poll_restart(t0 + secs(2.5), true), "REMB is the client's");
        // Feedback stopped: the loss-based climb moves on by itself.
        assert!(!e.poll_restart(t0 + secs(30.0), true));
    }

    #[test]
    fn loss_holds_or_cuts_the_climb() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(1_000_000);
        e.update(t0);
        e.on_loss(0.05);
        assert_eq!(e.update(t0 + secs(1.0)), 1_000_000, "2–10 % holds");
        e.on_loss(0.01);
        e.on_loss(0.5); // the worst stream counts
        assert_eq!(e.update(t0 + secs(2.0)), 750_000, "50 % loss: ×0.75");
    }

    #[test]
    fn the_climb_stops_at_the_ceiling_and_the_floor_holds() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(1_000_000);
        e.set_ceiling(1_200_000);
        e.update(t0);
        assert_eq!(e.update(t0 + secs(60.0)), 1_200_000);
        for i in 0..50 {
            e.on_loss(1.0);
            e.update(t0 + secs(61.0 + i as f64));
        }
        assert_eq!(e.update(t0 + secs(110.0)), FLOOR_BPS);
    }

    #[test]
    fn remb_decides_while_it_arrives_and_twcc_over_it() {
        let t0 = Instant::now();
        let mut e = DownlinkEstimate::new(1_000_000);
        e.on_remb(t0, 4_000_000);
        assert_eq!(e.update(t0), 4_000_000);
        assert_eq!(e.source(t0), Source::Remb);
        e.on_twcc(2_500_000);
        assert_eq!(e.source(t0 + secs(1.0)), Source::Remb, "an estimate without feedback is not TWCC's");
        e.on_twcc_feedback(t0 + secs(1.0));
        assert_eq!(e.update(t0 + secs(1.0)), 2_500_000);
        assert_eq!(e.source(t0 + secs(1.0)), Source::Twcc);
        // TWCC stops (REMB went stale before it): the climb goes on from the last estimate.
        let later = t0 + secs(1.0) + FRESH;
        assert_eq!(e.source(later), Source::LossBased);
        let bps = e.update(later);
        assert!(bps >= 2_500_000, "{bps}");
    }
}
