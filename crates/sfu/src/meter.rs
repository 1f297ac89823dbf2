//! Bitrate measurement: how fast a layer (or a leg) is sending, and what a layer nobody
//! measured is assumed to cost.

use std::time::{Duration, Instant};

/// Bitrate meter window.
pub const METER_WINDOW: Duration = Duration::from_millis(500);
/// A layer that sent nothing for this long is not being sent.
pub const LAYER_IDLE: Duration = Duration::from_millis(1500);

/// Measures the bitrate of one stream of packets over windows of [`METER_WINDOW`], smoothed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Meter {
    window_start: Option<Instant>,
    bytes: u64,
    bps: u64,
    last_packet: Option<Instant>,
}

impl Meter {
    /// Counts a packet of `bytes` payload bytes received at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= METER_WINDOW {
            let measured = self.bytes * 8 * 1000 / (elapsed.as_millis() as u64).max(1);
            // Smooth a little: a keyframe window should not look like the layer's steady rate.
            self.bps = if self.bps == 0 { measured } else { (self.bps * 3 + measured) / 4 };
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
        self.last_packet = Some(now);
    }

    /// The last measured bitrate in bits per second (`0` until a window has closed).
    pub fn bps(&self) -> u64 {
        self.bps
    }

    /// Whether a packet came within [`LAYER_IDLE`] of `now`.
    pub fn sending(&self, now: Instant) -> bool {
        self.last_packet.is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }

    /// The measured bitrate while sending, else `0`.
    pub fn sending_bps(&self, now: Instant) -> u64 {
        if self.sending(now) {
            self.bps
        } else {
            0
        }
    }
}

/// Nominal bitrate of a video layer of `height` pixels, for layers not measured (paused).
pub fn nominal_bps(height: u32) -> u64 {
    match height {
        0..=240 => 150_000,
        241..=480 => 500_000,
        481..=720 => 1_500_000,
        721..=1080 => 3_000_000,
        _ => 8_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::at;

    #[test]
    fn measures_over_a_window_then_smooths() {
        let mut m = Meter::default();
        assert!(!m.sending(at(0)));
        // 1000 bytes every 10 ms: 800 kbit/s.
        for i in 0..=50 {
            m.add(at(i * 10), 1000);
        }
        assert_eq!(m.bps(), 800_000);
        assert!(m.sending(at(500)));
        // Half the rate for the next window: three parts old, one part new.
        for i in 1..=25 {
            m.add(at(500 + i * 20), 1000);
        }
        m.add(at(1010), 0);
        assert_eq!(m.bps(), (800_000 * 3 + 400_000) / 4);
    }

    #[test]
    fn idle_after_a_silence() {
        let mut m = Meter::default();
        m.add(at(0), 100);
        m.add(at(600), 100);
        assert!(m.sending(at(2000)));
        assert!(!m.sending(at(2100)));
        assert_eq!(m.sending_bps(at(2100)), 0);
        assert_eq!(m.sending_bps(at(700)), m.bps());
    }

    #[test]
    fn nominal_rates_grow_with_height() {
        assert_eq!(nominal_bps(180), 150_000);
        assert_eq!(nominal_bps(360), 500_000);
        assert_eq!(nominal_bps(720), 1_500_000);
        assert_eq!(nominal_bps(1080), 3_000_000);
        assert_eq!(nominal_bps(2160), 8_000_000);
    }
}
