//! Helpers shared by the unit tests: simulated time and a small deterministic random generator.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `ms` milliseconds after an arbitrary origin. The origin is read once, because `Instant` has
/// no other constructor; tests only ever depend on offsets from it.
pub fn at(ms: u64) -> Instant {
    at_us(ms * 1000)
}

/// `us` microseconds after the same origin as [`at`].
pub fn at_us(us: u64) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now) + Duration::from_micros(us)
}

/// xorshift64*: good enough to shuffle test scenarios, and reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
