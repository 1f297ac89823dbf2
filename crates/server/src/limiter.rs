//! Counters of events per key per fixed window: login codes per email and IP,
//! wrong pins per user, network and group. A key that reaches its limit is refused until
//! its window ends.
//!
//! Keys live in two generations, each about one window long. A key is written to the current
//! generation; once a window has passed, the older generation is dropped whole. Every entry in
//! it was last written before the current generation began, so its window has ended by then:
//! nothing live is lost, no request scans the table, and memory holds only the keys used in
//! the last two windows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The key of a client address for per-IP limits: an IPv4 address as is, an IPv6 address by
/// its /64 network (one subscriber usually holds a whole /64, so single addresses would give
/// them a fresh limit each). IPv4-mapped IPv6 addresses count as IPv4.
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Start of this key's window.
    start: Instant,
    count: u32,
}

#[derive(Debug, Default)]
struct Generations {
    /// When `current` began (unset before the first event).
    began: Option<Instant>,
    current: HashMap<String, Entry>,
    previous: HashMap<String, Entry>,
}

impl Generations {
    /// Starts a new generation when the current one is a window old.
    fn rotate(&mut self, now: Instant, window: Duration) {
        let began = *self.began.get_or_insert(now);
        let age = now.saturating_duration_since(began);
        if age < window {
            return;
        }
        self.previous = if age >= window * 2 { HashMap::new() } else { std::mem::take(&mut self.current) };
        self.current.clear();
        self.began = Some(now);
    }

    /// The live entry of `key`, moved into the current generation.
    fn entry(&mut self, key: &str, now: Instant, window: Duration) -> Option<&mut Entry> {
        if !self.current.contains_key(key) {
            let moved = self.previous.remove(key)?;
            self.current.insert(key.to_string(), moved);
        }
        let e = self.current.get_mut(key)?;
        if now.saturating_duration_since(e.start) >= window {
            self.current.remove(key);
            return None;
        }
        self.current.get_mut(key)
    }

    fn peek(&self, key: &str) -> Option<&Entry> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }
}

/// Fixed-window event counter.
#[derive(Debug)]
pub struct WindowLimiter {
    window: Duration,
    limit: u32,
    state: Mutex<Generations>,
}

impl WindowLimiter {
    /// A limiter allowing `limit` events per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        WindowLimiter { window, limit, state: Mutex::new(Generations::default()) }
    }

    /// True if `key` has used up its window.
    pub fn exceeded(&self, key: &str, now: Instant) -> bool {
        let g = self.state.lock().expect("limiter lock poisoned");
        matches!(g.peek(key), Some(e) if now.saturating_duration_since(e.start) < self.window && e.count >= self.limit)
    }

    /// Counts one event; returns false (and does not count) if over the limit. Check and count
    /// are one step, so concurrent callers can never pass more than `limit` events.
    pub fn hit(&self, key: &str, now: Instant) -> bool {
        self.hit_n(key, 1, now)
    }

    /// Counts `n` events at once, all or none: false (and nothing counted) if they would pass
    /// the limit.
    pub fn hit_n(&self, key: &str, n: u32, now: Instant) -> bool {
        let mut g = self.state.lock().expect("limiter lock poisoned");
        g.rotate(now, self.window);
        if g.entry(key, now, self.window).is_none() {
            g.current.insert(key.to_string(), Entry { start: now, count: 0 });
        }
        let e = g.current.get_mut(key).expect("entry just made live");
        if e.count.saturating_add(n) > self.limit {
            return false;
        }
        e.count += n;
        true
    }

    /// Gives back one event that `hit` counted at `at` (the attempt turned out not to be one
    /// that should count). Nothing happens if the key's window began after `at`.
    pub fn undo(&self, key: &str, at: Instant) {
        self.undo_n(key, 1, at)
    }

    /// Gives back `n` events that `hit_n` counted at `at` (see [`WindowLimiter::undo`]).
    pub fn undo_n(&self, key: &str, n: u32, at: Instant) {
        let mut g = self.state.lock().expect("limiter lock poisoned");
        if let Some(e) = g.entry(key, at, self.window) {
            if e.start <= at {
                e.count = e.count.saturating_sub(n);
            }
        }
    }

    /// Keys held (both generations), for tests.
    #[cfg(test)]
    fn held(&self) -> usize {
        let g = self.state.lock().expect("limiter lock poisoned");
        g.current.len() + g.previous.len()
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

    #[test]
    fn a_key_keeps_its_count_across_a_generation_change() {
        let w = Duration::from_secs(10);
        let l = WindowLimiter::new(2, w);
        let t0 = Instant::now();
        assert!(l.hit("other", t0)); // starts the first generation at t0
        let t1 = t0 + Duration::from_secs(8);
        assert!(l.hit("a", t1));
        assert!(l.hit("a", t1));
        // t0 + 12 s: a new generation began, but a's window (from t1) is still open.
        let t2 = t0 + Duration::from_secs(12);
        assert!(!l.hit("a", t2), "a is still over its limit");
        assert!(l.exceeded("a", t2));
        // A's window ended at t1 + 10 s.
        assert!(l.hit("a", t1 + w));
    }

    #[test]
    fn old_keys_are_dropped_without_a_scan() {
        let w = Duration::from_secs(10);
        let l = WindowLimiter::new(5, w);
        let t0 = Instant::now();
        for i in 0..1000 {
            assert!(l.hit(&format!("k{i}"), t0));
        }
        assert_eq!(l.held(), 1000);
        // One window later they move to the previous generation; two windows later they are gone.
        assert!(l.hit("new", t0 + w));
        assert_eq!(l.held(), 1001);
        assert!(l.hit("newer", t0 + w * 2));
        assert_eq!(l.held(), 2, "only the keys of the last two windows are held");
        assert!(l.hit("latest", t0 + w * 5));
        assert_eq!(l.held(), 1, "a long pause drops both generations");
        assert!(!l.exceeded("k1", t0 + w * 5));
    }

    #[test]
    fn undo_gives_back_one_event_of_the_same_window() {
        let w = Duration::from_secs(10);
        let l = WindowLimiter::new(1, w);
        let t0 = Instant::now();
        assert!(l.hit("a", t0));
        assert!(!l.hit("a", t0));
        l.undo("a", t0);
        assert!(l.hit("a", t0), "the slot was given back");
        // An undo for a hit of an earlier window does not touch the new window's count.
        let t1 = t0 + w;
        assert!(l.hit("a", t1));
        l.undo("a", t0);
        assert!(!l.hit("a", t1));
    }

    #[test]
    fn hit_n_counts_all_or_none() {
        let l = WindowLimiter::new(5, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(l.hit_n("a", 3, t0));
        assert!(!l.hit_n("a", 3, t0), "3 more would pass 5");
        assert!(l.hit_n("a", 2, t0), "the refused 3 were not counted");
        assert!(!l.hit("a", t0));
        l.undo_n("a", 2, t0);
        assert!(l.hit_n("a", 2, t0));
        assert!(!l.hit_n("b", 6, t0), "more than the limit at once");
    }

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        let k = |s: &str| ip_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_eq!(k("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_ne!(k("192.0.2.7"), k("192.0.2.8"), "IPv4 addresses are keyed exactly");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7", "IPv4-mapped counts as IPv4");
    }
}
