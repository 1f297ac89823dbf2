//! Counters of events per key per fixed window: login codes per email and IP,
//! wrong pins per user and IP. A key that reaches its limit is refused until
//! its window ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fixed-window event counter.
#[derive(Debug)]
pub struct WindowLimiter {
    window: Duration,
    limit: u32,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl WindowLimiter {
    /// A limiter allowing `limit` events per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        WindowLimiter { window, limit, counts: Mutex::new(HashMap::new()) }
    }

    /// True if `key` has used up its window.
    pub fn exceeded(&self, key: &str, now: Instant) -> bool {
        let map = self.counts.lock().expect("limiter lock poisoned");
        matches!(map.get(key), Some((start, n)) if now.duration_since(*start) < self.window && *n >= self.limit)
    }

    /// Counts one event; returns false (and does not count) if over the limit.
    pub fn hit(&self, key: &str, now: Instant) -> bool {
        let mut map = self.counts.lock().expect("limiter lock poisoned");
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_resets() {
        let l = WindowLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(l.hit("a", t0));
        assert!(l.hit("a", t0));
        assert!(!l.hit("a", t0));
        assert!(l.exceeded("a", t0));
        assert!(l.hit("b", t0), "keys are independent");
        assert!(l.hit("a", t0 + Duration::from_secs(11)));
    }
}
