//! Simulcast layer selection: which layer a subscriber should receive, given what the publisher
//! sends, how big the subscriber shows the video, the room's cap and the subscriber's bandwidth.
//!
//! Rules, in order:
//! 1. Only active layers count; with none, video is paused.
//! 2. Size: the lowest layer at least as tall as the subscriber shows the video (no point sending
//!    720p into a 200 px tile), but never taller than the room allows. If every layer is too tall
//!    for the room, the lowest active one.
//! 3. Bandwidth: the highest layer up to that size whose bitrate fits the estimate. If even the
//!    lowest does not fit, video is paused (audio has its own forwarder and continues).
//! 4. Hysteresis: stepping down happens at once, because an over-budget stream builds queues and
//!    loss within a second. Stepping up (or resuming) waits until the higher layer has fitted with
//!    headroom for a while, so a noisy estimate does not make the picture flap.

use std::time::{Duration, Instant};

use crate::meter::{nominal_bps, Meter};
use crate::Layer;

/// One layer the publisher offers, as the server currently measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// Which layer.
    pub layer: Layer,
    /// Frame height in pixels.
    pub height: u32,
    /// Measured bitrate in bits per second (`0` if not measured yet, which always fits).
    pub bitrate_bps: u64,
    /// Whether the publisher is sending it (browsers drop layers under CPU or bandwidth pressure).
    pub active: bool,
}

/// What the subscriber side asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// The height, in pixels, at which the subscriber shows this video; `None` for "as large as
    /// available".
    pub wanted_height: Option<u32>,
    /// The room's maximum video height; `None` for no cap.
    pub room_max_height: Option<u32>,
    /// The share of the subscriber's bandwidth estimate available to this track, in bits per
    /// second.
    pub available_bps: u64,
}

/// Tuning of the hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectorConfig {
    /// How much more than a layer's bitrate the estimate must be to step up to it, in percent.
    pub up_headroom_percent: u64,
    /// How long a higher layer must fit with headroom before stepping up to it.
    pub up_hold: Duration,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        Self { up_headroom_percent: 25, up_hold: Duration::from_secs(2) }
    }
}

/// Picks the target layer for one subscriber of one video track. See the [module docs](self).
#[derive(Debug)]
pub struct LayerSelector {
    config: SelectorConfig,
    /// The last answer; `None` is paused.
    current: Option<Layer>,
    /// Whether an answer was given yet: the first one needs no hold, there is nothing to flap from.
    decided: bool,
    /// Since when a higher layer than `current` has fitted with headroom.
    upgrade_since: Option<Instant>,
}

impl LayerSelector {
    /// A selector with the given tuning.
    pub fn new(config: SelectorConfig) -> Self {
        Self { config, current: None, decided: false, upgrade_since: None }
    }

    /// The last target chosen; `None` means video is paused.
    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// Chooses the target layer now; `None` pauses video. Call it whenever an input changes and
    /// also periodically, since stepping up depends on time passing.
    pub fn select(&mut self, now: Instant, layers: &[LayerInfo], demand: Demand) -> Option<Layer> {
        let Some(size_cap) = size_cap(layers, demand) else {
            return self.settle(None);
        };
        let within_budget = best_fit(layers, size_cap, demand.available_bps);
        let headroom_budget = demand.available_bps * 100 / (100 + self.config.up_headroom_percent);
        let within_headroom = best_fit(layers, size_cap, headroom_budget);

        let current_usable = self.current.is_none_or(|current| is_active(layers, current) && current <= size_cap);
        if !self.decided || !current_usable || within_budget < self.current {
            // Nothing to flap from, the current layer is gone or too big, or it is over budget.
            return self.settle(within_budget);
        }
        if within_headroom <= self.current {
            self.upgrade_since = None;
            return self.current;
        }
        let since = *self.upgrade_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.config.up_hold {
            return self.settle(within_headroom);
        }
        self.current
    }

    /// What this subscriber's link must carry for this track to resume, when it is paused while
    /// the publisher sends a layer it could show: the lowest such layer with the headroom
    /// [`LayerSelector::select`] wants before stepping up. `None` when not paused, or paused
    /// because nothing is being sent.
    ///
    /// A delay-based estimate (GCC) grows only to about 1.5 times what the link carries, so on a
    /// link left with audio alone it settles near 100 kbit/s and would never fund the video
    /// again: the caller restarts the estimator when it stays below this ([`needed_bps`]).
    pub fn resume_bps(&self, layers: &[LayerInfo]) -> Option<u64> {
        if !self.decided || self.current.is_some() {
            return None;
        }
        let lowest = layers.iter().find(|l| l.active)?;
        Some(lowest.bitrate_bps * (100 + self.config.up_headroom_percent) / 100)
    }

    fn settle(&mut self, target: Option<Layer>) -> Option<Layer> {
        self.current = target;
        self.decided = true;
        self.upgrade_since = None;
        target
    }
}

impl Default for LayerSelector {
    fn default() -> Self {
        Self::new(SelectorConfig::default())
    }
}

/// What a subscriber's audio takes off the top of its estimate before video is shared out.
pub const AUDIO_BPS: u64 = 50_000;

/// How long a publisher has to start sending a layer it was asked for before the layer counts as
/// missing: an encoder starts a resumed layer with a keyframe within a few hundred ms.
pub const LAYER_START_GRACE: Duration = Duration::from_millis(1500);
/// How long a missing layer is left out before it is offered to selection (and so asked for)
/// again: the publisher may send it once its CPU or uplink recovers.
pub const LAYER_RETRY: Duration = Duration::from_secs(10);

/// Which layers a publisher can be expected to send, beyond what the meters see arriving.
///
/// A publisher does not always send every layer it declared: browsers leave out the top layers
/// when the captured picture is too small for them (Chromium sends two of three layers of a
/// 640×360 camera) and drop layers under CPU or bandwidth pressure. Choosing such a layer would
/// leave a subscriber waiting forever for its keyframe. A layer counts as available while it is
/// sending, while it is paused by us (asking resumes it), and for [`LAYER_START_GRACE`] after it
/// was asked for; a layer asked for longer than that and not arriving is *missing*, and stays
/// out of selection for [`LAYER_RETRY`] after nobody asks for it any more. Time is an argument.
#[derive(Debug, Clone, Copy)]
pub struct LayerPresence {
    /// Since when each layer has been asked for (`None`: paused by us).
    asked_since: [Option<Instant>; Layer::COUNT],
    /// When each layer was last given up as missing.
    missing_at: [Option<Instant>; Layer::COUNT],
}

impl LayerPresence {
    /// A track published at `now`: a publisher starts sending every layer.
    pub fn new(now: Instant) -> Self {
        LayerPresence { asked_since: [Some(now); Layer::COUNT], missing_at: [None; Layer::COUNT] }
    }

    /// The publisher was told to send the layers marked in `active` (lowest first; layers past its
    /// end are not asked for). A layer no longer asked for that was missing is remembered so.
    pub fn on_told(&mut self, now: Instant, active: &[bool], meters: &[Meter; Layer::COUNT]) {
        for (i, asked) in self.asked_since.iter_mut().enumerate() {
            let on = active.get(i).copied().unwrap_or(false);
            match (*asked, on) {
                (None, true) => *asked = Some(now),
                (Some(since), false) => {
                    if !meters[i].sending(now) && now.saturating_duration_since(since) >= LAYER_START_GRACE {
                        self.missing_at[i] = Some(now);
                    }
                    *asked = None;
                }
                _ => {}
            }
        }
    }

    /// Whether layer `index` can be chosen at `now` (see the type's docs).
    pub fn available(&self, now: Instant, index: usize, meter: &Meter) -> bool {
        if meter.sending(now) {
            return true;
        }
        match self.asked_since[index] {
            Some(since) => now.saturating_duration_since(since) < LAYER_START_GRACE,
            None => self.missing_at[index].is_none_or(|at| now.saturating_duration_since(at) >= LAYER_RETRY),
        }
    }
}

/// The layers a track of `layers` simulcast layers (the top one `top_height` pixels tall, each
/// below half the one above) offers at `now`, lowest first, with their measured bitrates (the
/// nominal one of a layer not being sent), whether each can be chosen ([`LayerPresence`]), and
/// how many there are.
pub fn layer_infos(
    now: Instant,
    layers: u8,
    top_height: u32,
    meters: &[Meter; Layer::COUNT],
    presence: &LayerPresence,
) -> ([LayerInfo; Layer::COUNT], usize) {
    let mut infos = [LayerInfo { layer: Layer::LOW, height: 0, bitrate_bps: 0, active: false }; Layer::COUNT];
    let n = usize::from(layers.max(1)).min(Layer::COUNT);
    for (i, info) in infos.iter_mut().enumerate().take(n) {
        let height = top_height >> (n - 1 - i);
        let m = &meters[i];
        let bitrate = if m.sending(now) && m.bps() > 0 { m.bps() } else { nominal_bps(height) };
        *info = LayerInfo {
            layer: Layer::new(i as u8).expect("below COUNT"),
            height,
            bitrate_bps: bitrate,
            active: presence.available(now, i, m),
        };
    }
    (infos, n)
}

/// The bandwidth a track's selector is given out of its `budget` (from [`allocate`]).
///
/// A frozen picture is worse than a congested one: the lowest layer stays while the budget covers
/// half of it (GCC's estimate dips well below the link on every probe and loss burst), a quarter
/// when there is no cheaper layer to fall back to; below that, video pauses.
pub fn available_bps(budget: u64, layers: &[LayerInfo]) -> u64 {
    let Some(lowest) = layers.first().map(|l| l.bitrate_bps) else { return budget };
    let keep = if layers.len() == 1 { lowest / 4 } else { lowest / 2 };
    if budget >= keep {
        budget.max(lowest)
    } else {
        budget
    }
}

/// What a subscriber would take of a track at best (the probe target of its estimate): the
/// highest bitrate among the available layers it would show and the room allows.
pub fn best_bps(layers: &[LayerInfo], wanted_height: Option<u32>, room_max_height: Option<u32>) -> u64 {
    let Some(lowest) = layers.first() else { return 0 };
    layers
        .iter()
        .filter(|l| {
            l.active
                && wanted_height.is_none_or(|h| l.height <= h.max(lowest.height))
                && room_max_height.is_none_or(|m| l.height <= m)
        })
        .map(|l| l.bitrate_bps)
        .max()
        .unwrap_or(0)
}

/// One video track a subscriber receives, as [`allocate`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackRate {
    /// Bitrate of the track's lowest layer.
    pub lowest_bps: u64,
    /// Bitrate of the layer being forwarded to this subscriber now (`0` when paused or not yet
    /// started).
    pub current_bps: u64,
}

/// Splits one subscriber's video budget (its bandwidth estimate less what its audio needs) over
/// the video tracks it receives, given in priority order (screens first, say).
///
/// Each track in turn gets its lowest layer while that still fits, so a cheap camera is never
/// starved by a sibling that cannot be sent anyway; what is left is shared equally by all the
/// tracks: for stepping up, and as the partial budget of a track whose lowest layer did not fit
/// (the caller decides whether that is enough to keep it, see [`LayerSelector::select`]).
///
/// An estimate is a ceiling only when it is below what the subscriber already receives. A
/// subscriber taking small layers leaves its link mostly idle, and a delay-based estimate (GCC)
/// then follows the rate it sees, a little above it: read as a capacity it would pause a stream
/// that flows without trouble, and nothing would bring it back until a probe happens to raise the
/// estimate. So while the budget covers at least [`CONGESTED_PERCENT`] of `sent_bps` (the video
/// this subscriber's link carried lately, measured as the estimate sees it: keyframes included),
/// each track keeps at least its current layer's rate; below that the link is congested and the
/// split above decides alone.
pub fn allocate(total_bps: u64, sent_bps: u64, tracks: &[TrackRate]) -> Vec<u64> {
    let mut out = vec![0; tracks.len()];
    if out.is_empty() {
        return out;
    }
    let mut left = total_bps;
    for (budget, t) in out.iter_mut().zip(tracks) {
        if t.lowest_bps <= left {
            *budget = t.lowest_bps;
            left -= t.lowest_bps;
        }
    }
    let share = left / out.len() as u64;
    for budget in &mut out {
        *budget += share;
    }
    if total_bps.saturating_mul(100) >= sent_bps.saturating_mul(CONGESTED_PERCENT) {
        for (budget, t) in out.iter_mut().zip(tracks) {
            *budget = (*budget).max(t.current_bps);
        }
    }
    out
}

/// What a subscriber's estimate must reach for its paused tracks to resume, given the rates of
/// the video layers it is being sent and what the paused ones need
/// ([`LayerSelector::resume_bps`]); `None` when nothing waits for bandwidth. Below it the
/// subscriber is *starved* (see `downlink::DownlinkEstimate::poll_restart`).
pub fn needed_bps(sending_bps: u64, resume_bps: u64) -> Option<u64> {
    (resume_bps > 0).then_some(AUDIO_BPS + sending_bps + resume_bps)
}

/// Below this share (in percent) of the video a subscriber's link carried lately, its estimate
/// means congestion (see [`allocate`]): GCC answers overuse with 85 % of the rate acknowledged.
pub const CONGESTED_PERCENT: u64 = 90;

fn is_active(layers: &[LayerInfo], layer: Layer) -> bool {
    layers.iter().any(|info| info.layer == layer && info.active)
}

/// The largest layer worth sending for the size asked and the room's cap, or `None` if no layer
/// is active.
fn size_cap(layers: &[LayerInfo], demand: Demand) -> Option<Layer> {
    let active = || layers.iter().filter(|info| info.active);
    let room_allows = |info: &&LayerInfo| demand.room_max_height.is_none_or(|max| info.height <= max);
    let allowed = || active().filter(room_allows);
    let big_enough = allowed()
        .filter(|info| demand.wanted_height.is_some_and(|wanted| info.height >= wanted))
        .min_by_key(|info| info.layer);
    big_enough
        .or_else(|| allowed().max_by_key(|info| info.layer))
        .or_else(|| active().min_by_key(|info| info.layer))
        .map(|info| info.layer)
}

/// The highest active layer up to `cap` whose bitrate fits `budget_bps`.
fn best_fit(layers: &[LayerInfo], cap: Layer, budget_bps: u64) -> Option<Layer> {
    layers
        .iter()
        .filter(|info| info.active && info.layer <= cap && info.bitrate_bps <= budget_bps)
        .map(|info| info.layer)
        .max()
}

#[cfg(test)]
mod tests {
    /// Tracks that are not flowing yet: only the lowest layers and the estimate count.
    fn fresh(lowest: &[u64]) -> Vec<TrackRate> {
        lowest.iter().map(|&lowest_bps| TrackRate { lowest_bps, current_bps: 0 }).collect()
    }

    #[test]
    fn allocate_funds_lowest_layers_in_order_then_shares_the_rest() {
        // 1 Mbit/s for a 1.5 Mbit/s screen and two cameras whose low layers need 150 kbit/s:
        // the screen does not fit, the cameras get their low layer, all share the rest.
        assert_eq!(allocate(1_000_000, 0, &fresh(&[1_500_000, 150_000, 150_000])), vec![233_333, 383_333, 383_333]);
        // Enough for everything: the screen first, then equal shares of what is left.
        assert_eq!(allocate(3_000_000, 0, &fresh(&[1_500_000, 150_000, 150_000])), vec![1_900_000, 550_000, 550_000]);
        // Not even one low layer fits: each gets a share of the little there is.
        assert_eq!(allocate(100_000, 0, &fresh(&[150_000, 150_000])), vec![50_000, 50_000]);
        // Nothing to share out.
        assert!(allocate(1_000_000, 0, &[]).is_empty());
    }

    #[test]
    fn allocate_never_gives_more_than_the_total_to_tracks_not_flowing() {
        for total in [0, 1, 99_999, 150_000, 1_000_000, 7_777_777] {
            for lowest in [&[150_000u64, 500_000, 1_500_000][..], &[0, 150_000], &[2_000_000]] {
                let sum: u64 = allocate(total, 0, &fresh(lowest)).iter().sum();
                assert!(sum <= total, "{total} over {lowest:?} gave {sum}");
            }
        }
    }

    /// The bench's smoke run, as the server saw it: two 180p cameras flowing (150 kbit/s each,
    /// measured as 252 kbit/s with the keyframes of the joins in the window, ~400 kbit/s sent) and
    /// an estimate that had followed the traffic down to 420 kbit/s of video. The split alone left
    /// the second camera 102 kbit/s, under half its lowest layer, and paused it for seconds while
    /// the link carried both.
    #[test]
    fn an_estimate_that_follows_the_traffic_pauses_nothing_that_flows() {
        let both = [TrackRate { lowest_bps: 252_000, current_bps: 252_000 }; 2];
        let budgets = allocate(420_000, 400_000, &both);
        assert!(budgets.iter().all(|&b| b >= 252_000), "{budgets:?}");
        // The selector keeps the layer with that budget.
        let layer = LayerInfo { bitrate_bps: 252_000, ..LOW };
        let mut selector = LayerSelector::default();
        for (ms, &budget) in [0u64, 500].iter().zip(&[1_000_000, budgets[1]]) {
            assert_eq!(selector.select(at(*ms), &[layer], demand(Some(180), None, budget)), Some(L::LOW));
        }
    }

    /// The bad-network test's outage, as the server saw it: the publisher's layers stopped, the
    /// subscriber's estimate sank to 98 kbit/s on audio alone; the low layer arrives again
    /// (measured at 260 kbit/s with its first keyframes) and does not fit. The track is starved
    /// until the estimate reaches audio + the low layer with the headroom to resume.
    #[test]
    fn a_paused_track_says_what_it_needs_to_resume() {
        let mut selector = LayerSelector::default();
        let low = LayerInfo { bitrate_bps: 260_000, ..LOW };
        assert_eq!(selector.resume_bps(&[low]), None, "nothing decided yet");
        assert_eq!(selector.select(at(0), &[low], demand(None, None, 1_000_000)), Some(L::LOW));
        assert_eq!(selector.resume_bps(&[low]), None, "flowing");
        // Paused for bandwidth while the layer is sent: it needs 125 % of it.
        assert_eq!(selector.select(at(500), &[low], demand(None, None, 48_000)), None);
        assert_eq!(selector.resume_bps(&[low]), Some(325_000));
        assert_eq!(needed_bps(0, 325_000), Some(AUDIO_BPS + 325_000));
        // Paused because nothing is sent: no bandwidth would help.
        assert_eq!(selector.resume_bps(&[LayerInfo { active: false, ..low }]), None);
        assert_eq!(needed_bps(400_000, 0), None);
        // With that much it resumes (after the hold).
        let enough = available_bps(325_000, &[low]);
        assert_eq!(selector.select(at(1000), &[low], demand(None, None, enough)), None);
        assert_eq!(selector.select(at(3000), &[low], demand(None, None, enough)), Some(L::LOW));
    }

    #[test]
    fn a_congested_estimate_still_steps_down() {
        // A 720p and a 180p camera flowing (1.5 M + 150 k sent) and the estimate falls to 1 Mbit/s
        // (61 % of it): the split decides, the big one cannot keep its layer.
        let tracks = [
            TrackRate { lowest_bps: 150_000, current_bps: 1_500_000 },
            TrackRate { lowest_bps: 150_000, current_bps: 150_000 },
        ];
        assert_eq!(allocate(1_000_000, 1_650_000, &tracks), vec![500_000, 500_000]);
        // Just under the threshold is congestion; at it, not.
        let flowing = [TrackRate { lowest_bps: 150_000, current_bps: 1_000_000 }];
        assert_eq!(allocate(899_999, 1_000_000, &flowing), vec![899_999]);
        assert_eq!(allocate(900_000, 1_000_000, &flowing), vec![1_000_000]);
        // Nothing sent yet (or lately): no sign of congestion, the current layers stay.
        assert_eq!(allocate(100_000, 0, &flowing), vec![1_000_000]);
    }

    use super::*;

    fn infos(rates: &[(u32, u64)]) -> Vec<LayerInfo> {
        rates
            .iter()
            .enumerate()
            .map(|(i, &(height, bitrate_bps))| LayerInfo {
                layer: Layer::new(i as u8).unwrap(),
                height,
                bitrate_bps,
                active: true,
            })
            .collect()
    }

    #[test]
    fn layer_infos_halve_heights_and_fall_back_to_nominal_rates() {
        let mut meters = [Meter::default(); Layer::COUNT];
        let t0 = crate::test_util::at(0);
        for i in 0..=50u64 {
            meters[1].add(crate::test_util::at(i * 10), 1000);
        }
        let now = crate::test_util::at(500);
        let presence = LayerPresence::new(t0);
        let (l, n) = layer_infos(now, 3, 720, &meters, &presence);
        assert_eq!(n, 3);
        assert_eq!([l[0].height, l[1].height, l[2].height], [180, 360, 720]);
        assert_eq!(l[0].bitrate_bps, nominal_bps(180), "not sending: nominal");
        assert_eq!(l[1].bitrate_bps, 800_000, "measured");
        assert_eq!(l[2].bitrate_bps, nominal_bps(720));
        let (l, n) = layer_infos(t0, 0, 480, &meters, &presence);
        assert_eq!((n, l[0].height, l[0].layer), (1, 480, Layer::LOW), "a single layer counts as one");
    }

    #[test]
    fn a_layer_the_publisher_never_sends_drops_out_of_selection_and_is_retried_later() {
        use crate::test_util::at;
        // Chromium with a 640x360 camera and three layers asked: it sends the lower two only.
        let mut presence = LayerPresence::new(at(0));
        let mut meters = [Meter::default(); Layer::COUNT];
        let mut selector = LayerSelector::default();
        let demand = Demand { wanted_height: None, room_max_height: None, available_bps: 5_000_000 };
        let mut pick = |presence: &LayerPresence, meters: &[Meter; Layer::COUNT], ms| {
            let (l, n) = layer_infos(at(ms), 3, 360, meters, presence);
            selector.select(at(ms), &l[..n], demand)
        };
        for ms in (0..=1400).step_by(20) {
            meters[0].add(at(ms), 300);
            meters[1].add(at(ms), 600);
        }
        assert_eq!(pick(&presence, &meters, 1400), Some(Layer::new(2).unwrap()), "still within the grace");
        for ms in (1420..=1600).step_by(20) {
            meters[0].add(at(ms), 300);
            meters[1].add(at(ms), 600);
        }
        assert_eq!(
            pick(&presence, &meters, 1600),
            Some(Layer::new(1).unwrap()),
            "missing: the best layer that arrives"
        );
        // Nobody asks for it any more: it stays out while it is missing, then is offered again.
        presence.on_told(at(1600), &[true, true, false], &meters);
        let (l, _) = layer_infos(at(5000), 3, 360, &meters, &presence);
        assert!(!l[2].active, "left out for LAYER_RETRY");
        let (l, _) = layer_infos(at(11_600), 3, 360, &meters, &presence);
        assert!(l[2].active, "offered again after LAYER_RETRY");
        presence.on_told(at(11_600), &[true, true, true], &meters);
        let (l, _) = layer_infos(at(12_000), 3, 360, &meters, &presence);
        assert!(l[2].active, "asked again: a new grace");
        // A layer we paused ourselves is always available: asking resumes it.
        let mut paused = LayerPresence::new(at(0));
        paused.on_told(at(100), &[true, false, false], &meters);
        let (l, _) = layer_infos(at(60_000), 3, 360, &[Meter::default(); Layer::COUNT], &paused);
        assert!(l[1].active && l[2].active, "paused by us, not missing");
        // A layer that arrives is available however long ago it was asked for.
        let mut m = [Meter::default(); Layer::COUNT];
        m[2].add(at(60_000), 1000);
        let (l, _) = layer_infos(at(60_000), 3, 360, &m, &LayerPresence::new(at(0)));
        assert!(l[2].active);
    }

    #[test]
    fn a_short_budget_keeps_the_lowest_layer_down_to_half_or_a_quarter() {
        let simulcast = infos(&[(180, 200_000), (360, 500_000)]);
        assert_eq!(available_bps(100_000, &simulcast), 200_000, "half of the lowest: kept at its rate");
        assert_eq!(available_bps(99_999, &simulcast), 99_999, "below half: pauses");
        assert_eq!(available_bps(600_000, &simulcast), 600_000);
        let single = infos(&[(720, 1_000_000)]);
        assert_eq!(available_bps(250_000, &single), 1_000_000, "no cheaper layer: a quarter keeps it");
        assert_eq!(available_bps(249_999, &single), 249_999);
        assert_eq!(available_bps(7, &[]), 7);
    }

    #[test]
    fn best_is_the_top_layer_the_subscriber_would_show() {
        let layers = infos(&[(180, 150_000), (360, 500_000), (720, 1_500_000)]);
        assert_eq!(best_bps(&layers, None, None), 1_500_000);
        assert_eq!(best_bps(&layers, Some(400), None), 500_000);
        assert_eq!(best_bps(&layers, Some(100), None), 150_000, "never below the lowest layer");
        assert_eq!(best_bps(&layers, None, Some(360)), 500_000, "the room's cap");
        assert_eq!(best_bps(&[], None, None), 0);
    }
    use crate::test_util::at;
    use Layer as L;

    const LOW: LayerInfo = LayerInfo { layer: L::LOW, height: 180, bitrate_bps: 150_000, active: true };
    const MID: LayerInfo = LayerInfo { layer: L::MID, height: 360, bitrate_bps: 500_000, active: true };
    const HIGH: LayerInfo = LayerInfo { layer: L::HIGH, height: 720, bitrate_bps: 1_500_000, active: true };
    const ALL: [LayerInfo; 3] = [LOW, MID, HIGH];

    fn demand(wanted_height: Option<u32>, room_max_height: Option<u32>, available_bps: u64) -> Demand {
        Demand { wanted_height, room_max_height, available_bps }
    }

    fn paused(info: LayerInfo) -> LayerInfo {
        LayerInfo { active: false, ..info }
    }

    /// A fresh selector's first answer: no hysteresis involved.
    #[test]
    fn first_choice_follows_size_room_cap_and_bandwidth() {
        let plenty = 10_000_000;
        let cases: &[(&str, &[LayerInfo], Demand, Option<Layer>)] = &[
            ("largest by default", &ALL, demand(None, None, plenty), Some(L::HIGH)),
            ("lowest layer tall enough", &ALL, demand(Some(200), None, plenty), Some(L::MID)),
            ("exact height", &ALL, demand(Some(180), None, plenty), Some(L::LOW)),
            ("tiny tile gets the lowest", &ALL, demand(Some(50), None, plenty), Some(L::LOW)),
            ("huge tile gets the highest", &ALL, demand(Some(2160), None, plenty), Some(L::HIGH)),
            ("room cap wins over size", &ALL, demand(Some(720), Some(360), plenty), Some(L::MID)),
            ("room cap below every layer", &ALL, demand(None, Some(90), plenty), Some(L::LOW)),
            ("bandwidth for mid only", &ALL, demand(None, None, 600_000), Some(L::MID)),
            ("bandwidth exactly the bitrate", &ALL, demand(None, None, 1_500_000), Some(L::HIGH)),
            ("bandwidth below the lowest pauses", &ALL, demand(None, None, 100_000), None),
            ("inactive layers are skipped", &[LOW, paused(MID), HIGH], demand(Some(300), None, plenty), Some(L::HIGH)),
            ("only a too-tall layer is active", &[paused(LOW), MID], demand(None, Some(180), plenty), Some(L::MID)),
            ("nothing active pauses", &[paused(LOW), paused(MID)], demand(None, None, plenty), None),
            ("no layers at all pauses", &[], demand(None, None, plenty), None),
            ("unmeasured bitrate fits", &[LayerInfo { bitrate_bps: 0, ..LOW }], demand(None, None, 0), Some(L::LOW)),
        ];
        for &(name, layers, demand, want) in cases {
            let mut selector = LayerSelector::default();
            assert_eq!(selector.select(at(0), layers, demand), want, "{name}");
        }
    }

    /// Runs a script of `(ms, layers, demand, expected target)` through one selector.
    fn script(steps: &[(u64, &[LayerInfo], Demand, Option<Layer>)]) {
        let mut selector = LayerSelector::default();
        for &(ms, layers, demand, want) in steps {
            assert_eq!(selector.select(at(ms), layers, demand), want, "at {ms} ms");
        }
    }

    #[test]
    fn steps_down_at_once_and_up_only_after_the_hold_with_headroom() {
        script(&[
            (0, &ALL, demand(None, None, 2_000_000), Some(L::HIGH)),
            (100, &ALL, demand(None, None, 1_000_000), Some(L::MID)),
            // High fits again but without 25 % headroom: stay.
            (200, &ALL, demand(None, None, 1_600_000), Some(L::MID)),
            (5_000, &ALL, demand(None, None, 1_600_000), Some(L::MID)),
            // With headroom, for the hold time.
            (5_100, &ALL, demand(None, None, 1_900_000), Some(L::MID)),
            (7_000, &ALL, demand(None, None, 1_900_000), Some(L::MID)),
            (7_100, &ALL, demand(None, None, 1_900_000), Some(L::HIGH)),
        ]);
    }

    #[test]
    fn a_dip_during_the_hold_restarts_it() {
        script(&[
            (0, &ALL, demand(None, None, 700_000), Some(L::MID)),
            (100, &ALL, demand(None, None, 2_000_000), Some(L::MID)),
            (1_000, &ALL, demand(None, None, 1_700_000), Some(L::MID)),
            (1_500, &ALL, demand(None, None, 2_000_000), Some(L::MID)),
            (3_400, &ALL, demand(None, None, 2_000_000), Some(L::MID)),
            (3_500, &ALL, demand(None, None, 2_000_000), Some(L::HIGH)),
        ]);
    }

    #[test]
    fn pauses_below_the_lowest_and_resumes_only_with_headroom() {
        script(&[
            (0, &ALL, demand(None, None, 160_000), Some(L::LOW)),
            (100, &ALL, demand(None, None, 120_000), None),
            (200, &ALL, demand(None, None, 160_000), None),
            (300, &ALL, demand(None, None, 200_000), None),
            (2_300, &ALL, demand(None, None, 200_000), Some(L::LOW)),
        ]);
    }

    #[test]
    fn size_changes_down_apply_at_once_and_up_after_the_hold() {
        let plenty = 10_000_000;
        script(&[
            (0, &ALL, demand(Some(720), None, plenty), Some(L::HIGH)),
            (100, &ALL, demand(Some(180), None, plenty), Some(L::LOW)),
            (200, &ALL, demand(Some(360), None, plenty), Some(L::LOW)),
            (2_200, &ALL, demand(Some(360), None, plenty), Some(L::MID)),
        ]);
    }

    #[test]
    fn a_vanished_current_layer_is_replaced_at_once() {
        let plenty = 10_000_000;
        script(&[
            (0, &ALL, demand(None, None, plenty), Some(L::HIGH)),
            (100, &[LOW, MID, paused(HIGH)], demand(None, None, plenty), Some(L::MID)),
            (200, &[paused(LOW), paused(MID), paused(HIGH)], demand(None, None, plenty), None),
            // Coming back from "nothing sent" is not a bandwidth question, but it still waits.
            (300, &ALL, demand(None, None, plenty), None),
            (2_300, &ALL, demand(None, None, plenty), Some(L::HIGH)),
        ]);
    }

    /// A noisy estimate around a layer's bitrate must not make the target change on every update.
    #[test]
    fn noisy_estimate_does_not_flap() {
        let mut rng = crate::test_util::Rng::new(3);
        let mut selector = LayerSelector::default();
        let mut changes = 0;
        let mut last = None;
        for step in 0..3_000u64 {
            // 1.5 Mbps ± 10 %, updated every 100 ms for five minutes.
            let estimate = 1_350_000 + rng.below(300_000);
            let target = selector.select(at(step * 100), &ALL, demand(None, None, estimate));
            changes += usize::from(step > 0 && target != last);
            last = target;
        }
        assert!(changes <= 2, "{changes} changes");
    }
}
