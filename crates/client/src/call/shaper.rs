//! Downlink shaper: emulates a constrained link in front of the client's socket.
//!
//! A token bucket refilled at the link rate, with a burst of [`BURST`] worth of bytes (at least
//! one full-size datagram), feeds a FIFO queue bounded to [`QUEUE`] worth of bytes. A packet
//! that finds tokens and an empty queue goes through at once; otherwise it waits in the queue
//! (queueing delay, which delay-based bandwidth estimation sees) and a packet that does not fit
//! in the queue is dropped (loss, which loss-based estimation sees).
//!
//! It is a pure state machine: every call takes `now`, so tests drive it with made-up instants.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How much the queue holds, in time at the link rate.
pub const QUEUE: Duration = Duration::from_millis(300);

/// How much may pass at once after the link was idle, in time at the link rate.
pub const BURST: Duration = Duration::from_millis(10);

/// The smallest burst, so one full-size datagram can always pass.
const MIN_BURST_BYTES: f64 = 1500.0;

/// What [`Shaper::push`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict<T> {
    /// Deliver it now.
    Pass(T),
    /// Queued: it comes out of [`Shaper::pop`] later.
    Queued,
    /// The queue was full: it is lost.
    Dropped,
}

/// Counters of a [`Shaper`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Packets that went through without waiting.
    pub passed: u64,
    /// Packets that waited in the queue and were delivered.
    pub delayed: u64,
    /// Packets dropped because the queue was full.
    pub dropped: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
    /// Packets in the queue now.
    pub queued: usize,
    /// Bytes in the queue now.
    pub queued_bytes: usize,
    /// The longest time a delivered packet waited.
    pub max_delay: Duration,
}

/// A token-bucket link of a settable rate with a bounded queue; `None` rate: unlimited.
#[derive(Debug)]
pub struct Shaper<T> {
    rate_bps: Option<u32>,
    tokens: f64,
    refilled: Instant,
    queue: VecDeque<(Instant, usize, T)>,
    queued_bytes: usize,
    stats: ShaperStats,
}

impl<T> Shaper<T> {
    /// A shaper at `kbps` (`None`: unlimited), starting with a full bucket.
    pub fn new(now: Instant, kbps: Option<u32>) -> Shaper<T> {
        let mut s = Shaper {
            rate_bps: kbps.map(|k| k.max(1).saturating_mul(1000)),
            tokens: 0.0,
            refilled: now,
            queue: VecDeque::new(),
            queued_bytes: 0,
            stats: ShaperStats::default(),
        };
        s.tokens = s.burst_bytes();
        s
    }

    /// The current rate in kbps (`None`: unlimited).
    pub fn kbps(&self) -> Option<u32> {
        self.rate_bps.map(|b| b / 1000)
    }

    /// Changes the rate. Queued packets stay queued and drain at the new rate (all at once when
    /// unlimited: [`Shaper::pop`] hands them out).
    pub fn set_kbps(&mut self, now: Instant, kbps: Option<u32>) {
        self.refill(now);
        let was_unlimited = self.rate_bps.is_none();
        self.rate_bps = kbps.map(|k| k.max(1).saturating_mul(1000));
        // Coming from unlimited, the link was as good as idle: start with a full bucket.
        self.tokens = if was_unlimited { self.burst_bytes() } else { self.tokens.min(self.burst_bytes()) };
    }

    fn bytes_per_sec(&self) -> Option<f64> {
        self.rate_bps.map(|b| b as f64 / 8.0)
    }

    fn burst_bytes(&self) -> f64 {
        self.bytes_per_sec().map(|r| (r * BURST.as_secs_f64()).max(MIN_BURST_BYTES)).unwrap_or(f64::INFINITY)
    }

    fn queue_limit(&self) -> usize {
        self.bytes_per_sec().map(|r| (r * QUEUE.as_secs_f64()) as usize).unwrap_or(usize::MAX).max(1500)
    }

    fn refill(&mut self, now: Instant) {
        if now > self.refilled {
            if let Some(r) = self.bytes_per_sec() {
                let dt = now.duration_since(self.refilled).as_secs_f64();
                self.tokens = (self.tokens + r * dt).min(self.burst_bytes());
            }
            self.refilled = now;
        }
    }

    /// A packet of `len` bytes arrives at `now`.
    pub fn push(&mut self, now: Instant, len: usize, item: T) -> Verdict<T> {
        if self.rate_bps.is_none() && self.queue.is_empty() {
            self.stats.passed += 1;
            return Verdict::Pass(item);
        }
        self.refill(now);
        if self.queue.is_empty() && self.tokens >= len as f64 {
            self.tokens -= len as f64;
            self.stats.passed += 1;
            return Verdict::Pass(item);
        }
        if self.queued_bytes + len > self.queue_limit() {
            self.stats.dropped += 1;
            self.stats.dropped_bytes += len as u64;
            return Verdict::Dropped;
        }
        self.queue.push_back((now, len, item));
        self.queued_bytes += len;
        Verdict::Queued
    }

    /// The next queued packet whose turn has come by `now`, if any. Call until `None`.
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        let &(arrived, len, _) = self.queue.front()?;
        if self.rate_bps.is_some() {
            self.refill(now);
            if self.tokens < len as f64 {
                return None;
            }
            self.tokens -= len as f64;
        }
        let (_, _, item) = self.queue.pop_front()?;
        self.queued_bytes -= len;
        self.stats.delayed += 1;
        self.stats.max_delay = self.stats.max_delay.max(now.saturating_duration_since(arrived));
        Some(item)
    }

    /// When the head of the queue can go (`None`: the queue is empty).
    pub fn next_release(&self) -> Option<Instant> {
        let &(_, len, _) = self.queue.front()?;
        let Some(r) = self.bytes_per_sec() else { return Some(self.refilled) };
        let missing = (len as f64 - self.tokens).max(0.0);
        Some(self.refilled + Duration::from_secs_f64(missing / r))
    }

    /// Counters.
    pub fn stats(&self) -> ShaperStats {
        ShaperStats { queued: self.queue.len(), queued_bytes: self.queued_bytes, ..self.stats }
    }
}

/// Whether a datagram is RTP or RTCP (RFC 7983: first byte 128..=191) and so goes through the
/// shaper; STUN and DTLS bypass it so that the connection itself is not what breaks.
pub fn is_media(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(128..=191))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn unlimited_passes_everything() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0, None);
        for i in 0..1000 {
            assert_eq!(s.push(t0, 1200, i), Verdict::Pass(i));
        }
        assert_eq!(s.next_release(), None);
        assert_eq!(s.stats().passed, 1000);
    }

    #[test]
    fn delays_at_the_link_rate() {
        // 800 kbps = 100 bytes/ms; burst 10 ms = 1000 bytes -> at least 1500.
        let t0 = Instant::now();
        let mut s = Shaper::new(t0, Some(800));
        assert_eq!(s.push(t0, 1000, 1), Verdict::Pass(1), "the burst passes at once");
        assert_eq!(s.push(t0, 1000, 2), Verdict::Queued, "500 bytes of tokens left: waits");
        assert_eq!(s.push(t0, 1000, 3), Verdict::Queued);
        // Packet 2 needs 500 more bytes: 5 ms.
        assert_eq!(s.next_release(), Some(t0 + 5 * MS));
        assert_eq!(s.pop(t0 + 4 * MS), None, "not yet");
        assert_eq!(s.pop(t0 + 5 * MS), Some(2));
        assert_eq!(s.pop(t0 + 5 * MS), None, "packet 3 needs 10 ms more");
        assert_eq!(s.next_release(), Some(t0 + 15 * MS));
        assert_eq!(s.pop(t0 + 15 * MS), Some(3));
        assert_eq!(s.pop(t0 + 100 * MS), None);
        let st = s.stats();
        assert_eq!((st.passed, st.delayed, st.dropped, st.queued), (1, 2, 0, 0));
        assert_eq!(st.max_delay, 15 * MS);
        // Later arrivals queue behind waiting packets even when tokens exist (FIFO).
        let t1 = t0 + 200 * MS;
        assert_eq!(s.push(t1, 1500, 4), Verdict::Pass(4));
        assert_eq!(s.push(t1, 100, 5), Verdict::Queued);
        assert_eq!(s.push(t1 + MS, 100, 6), Verdict::Queued, "FIFO: behind packet 5");
        assert_eq!(s.pop(t1 + MS), Some(5));
        assert_eq!(s.pop(t1 + MS), None, "100 bytes at 100 bytes/ms: 5 got the 1 ms worth");
        assert_eq!(s.pop(t1 + 2 * MS), Some(6));
    }

    #[test]
    fn sustained_throughput_is_the_rate_and_excess_is_dropped() {
        // Offer 2 Mbps for 2 s to a 500 kbps link: ~500 kbps gets through, the queue never
        // exceeds 300 ms worth, and the rest is dropped.
        let t0 = Instant::now();
        let mut s = Shaper::new(t0, Some(500));
        let mut delivered = 0usize;
        let mut max_wait = Duration::ZERO;
        for ms in 0..2000u32 {
            let now = t0 + ms * MS;
            // 2 Mbps = 250 bytes/ms: one 1000-byte packet every 4 ms.
            if ms % 4 == 0 {
                if let Verdict::Pass(_) = s.push(now, 1000, now) {
                    delivered += 1000;
                }
            }
            while let Some(arrived) = s.pop(now) {
                delivered += 1000;
                max_wait = max_wait.max(now - arrived);
            }
            assert!(s.stats().queued_bytes <= 500_000 / 8 * 3 / 10);
        }
        let kbps = delivered as f64 * 8.0 / 2000.0;
        assert!((kbps - 500.0).abs() < 30.0, "{kbps} kbps");
        assert!(max_wait <= QUEUE + 20 * MS && max_wait >= QUEUE - 40 * MS, "{max_wait:?}");
        let st = s.stats();
        assert!(st.dropped > 300, "{st:?}");
    }

    #[test]
    fn rate_changes_at_runtime() {
        let t0 = Instant::now();
        let mut s = Shaper::new(t0, Some(100)); // 12.5 bytes/ms, queue 3750 bytes
        assert_eq!(s.push(t0, 1500, 0), Verdict::Pass(0));
        for i in 1..=3 {
            assert_eq!(s.push(t0, 1200, i), Verdict::Queued);
        }
        assert_eq!(s.push(t0, 1200, 4), Verdict::Dropped, "4 x 1200 > 3750");
        s.set_kbps(t0 + MS, None);
        assert_eq!(s.next_release(), Some(t0 + MS));
        assert_eq!((s.pop(t0 + MS), s.pop(t0 + MS), s.pop(t0 + MS), s.pop(t0 + MS)), (Some(1), Some(2), Some(3), None));
        assert_eq!(s.push(t0 + MS, 1200, 5), Verdict::Pass(5));
        s.set_kbps(t0 + 2 * MS, Some(8000));
        assert_eq!(s.kbps(), Some(8000));
        assert_eq!(s.push(t0 + 2 * MS, 1200, 6), Verdict::Pass(6), "starts with a full burst after a change");
    }

    #[test]
    fn classifies_datagrams() {
        assert!(is_media(&[0x80, 0x60]));
        assert!(is_media(&[0x81, 200]));
        assert!(!is_media(&[0x00, 0x01]), "STUN");
        assert!(!is_media(&[22, 0xfe]), "DTLS");
        assert!(!is_media(&[]));
    }
}
