//! A small log-linear latency histogram (µs) with percentiles: 32 sub-buckets per power of
//! two, so any reported value is within ~3 % of a recorded one. Cheap to record into and to
//! merge, so each receiving task keeps its own and they are summed at the end.

/// Values below this are counted exactly.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB: u64 = 32;
/// Highest power of two covered (2^40 µs ≈ 12 days).
const MAX_EXP: u64 = 40;
const BUCKETS: usize = (LINEAR + (MAX_EXP - 5) * SUB) as usize;

/// Latency counts in µs.
#[derive(Debug, Clone)]
pub struct Hist {
    counts: Vec<u64>,
    /// Samples recorded.
    pub samples: u64,
    /// Highest value recorded, µs.
    pub max_us: u64,
    /// Sum of the values, µs (for the mean).
    pub sum_us: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros()); // ≥ 6
    if e > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (v >> (e - 5)) & (SUB - 1);
    (LINEAR + (e - 6) * SUB + sub) as usize
}

/// The lowest value and the width of bucket `i`.
fn bucket(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let e = (i - LINEAR) / SUB + 6;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (e - 5);
    ((1u64 << e) + sub * width, width)
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        Hist { counts: vec![0; BUCKETS], samples: 0, max_us: 0, sum_us: 0 }
    }

    /// Records one value.
    pub fn record(&mut self, us: u64) {
        self.counts[index(us)] += 1;
        self.samples += 1;
        self.max_us = self.max_us.max(us);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.samples += other.samples;
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// The value at quantile `q` (0..=1), µs: the middle of the bucket holding it, never above
    /// the maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.samples == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.samples as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = bucket(i);
                return (lo + w / 2).min(self.max_us);
            }
        }
        self.max_us
    }

    /// p50, ms.
    pub fn p50_ms(&self) -> f64 {
        self.quantile(0.50) as f64 / 1000.0
    }

    /// p99, ms.
    pub fn p99_ms(&self) -> f64 {
        self.quantile(0.99) as f64 / 1000.0
    }

    /// Maximum, ms.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }

    /// Mean, ms.
    pub fn mean_ms(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.samples as f64 / 1000.0
        }
    }

    /// `{samples, p50_ms, p99_ms, max_ms, mean_ms}` for a report's details.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "p50_ms": self.p50_ms(),
            "p90_ms": self.quantile(0.90) as f64 / 1000.0,
            "p99_ms": self.p99_ms(),
            "p999_ms": self.quantile(0.999) as f64 / 1000.0,
            "max_ms": self.max_ms(),
            "mean_ms": self.mean_ms(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values() {
        for v in [0u64, 1, 63, 64, 65, 100, 127, 128, 1000, 4095, 4096, 123_456, 9_999_999, 1 << 39] {
            let (lo, w) = bucket(index(v));
            assert!(lo <= v && v < lo + w, "{v}: bucket [{lo}, {})", lo + w);
            // Relative width at most 1/32.
            assert!(w == 1 || (w as f64) / (lo as f64) <= 1.0 / 32.0 + 1e-9, "{v}: width {w} at {lo}");
        }
        // Buckets are contiguous and increasing.
        for i in 1..BUCKETS {
            let (lo0, w0) = bucket(i - 1);
            assert_eq!(lo0 + w0, bucket(i).0, "gap before bucket {i}");
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles() {
        let mut h = Hist::new();
        assert_eq!(h.quantile(0.5), 0);
        for v in 1..=1000u64 {
            h.record(v * 10); // 10 µs … 10 ms
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.04, "p50 {p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.04, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.max_us, 10_000);
        assert!((h.mean_ms() - 5.005).abs() < 1e-9);

        let mut a = Hist::new();
        let mut b = Hist::new();
        for _ in 0..99 {
            a.record(100);
        }
        b.record(50_000);
        a.merge(&b);
        assert_eq!(a.samples, 100);
        assert_eq!(a.max_us, 50_000);
        assert!(a.quantile(0.99) <= 101 && a.quantile(0.99) >= 99);
        assert_eq!(a.quantile(0.999), 50_000.min(a.quantile(0.999)));
        assert!(a.quantile(0.999) > 48_000);
    }
}
