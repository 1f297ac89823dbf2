//! Writer batches into position order, whichever node wrote them (sans-IO: time passed in).
//!
//! A committed writer batch hands out the stream positions `from + 1..=to`, and the batches
//! of all nodes tile the position line: each starts where the one committed before it ended
//! (the `stream` row lock serialises them, ARCHITECTURE.md). A node releases a batch to its
//! sessions only once every batch before it was released, so a session never receives a
//! `pos` before a smaller one, and a client's resume cursor (the highest `pos` it received)
//! never jumps over a message still on its way from another node.
//!
//! A batch that does not come (its node died between commit and publish, or NATS lost it)
//! leaves a hole. After [`Sequencer::give_up`]'s wait the hole is skipped with everything
//! pending, and the caller ends its local sessions so they resume from the store, which
//! holds every committed batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::Outbound;

/// The fan-outs of one batch, in order: recipients and frame.
pub type Fanouts = Vec<(Vec<i64>, Arc<Outbound>)>;

/// Batches waiting for those before them.
#[derive(Default)]
pub struct Sequencer {
    /// The end of the last batch released; `None` until [`Sequencer::start_at`].
    next: Option<i64>,
    /// By `from`: `(to, fan-outs)`.
    pending: BTreeMap<i64, (i64, Fanouts)>,
    /// Since when the first pending batch has waited for a hole before it.
    waiting_since: Option<Instant>,
}

impl Sequencer {
    /// Starts releasing after `pos` (the store's position when the node started): batches
    /// that end at or before it are dropped. Returns what can be released now.
    pub fn start_at(&mut self, pos: i64, now: Instant) -> Vec<Fanouts> {
        self.next = Some(pos);
        self.release(now)
    }

    /// Takes a committed batch; returns the batches now releasable, in position order.
    pub fn offer(&mut self, from: i64, to: i64, fanouts: Fanouts, now: Instant) -> Vec<Fanouts> {
        if self.next.is_some_and(|n| to <= n) {
            return Vec::new(); // released or skipped already
        }
        self.pending.insert(from, (to, fanouts));
        self.release(now)
    }

    fn release(&mut self, now: Instant) -> Vec<Fanouts> {
        let mut out = Vec::new();
        let Some(mut next) = self.next else { return out };
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > next {
                break; // a hole before it
            }
            let (to, fanouts) = entry.remove();
            if to > next {
                next = to;
                out.push(fanouts);
            }
        }
        self.next = Some(next);
        self.waiting_since = match (self.pending.is_empty(), out.is_empty()) {
            (true, _) => None,
            (false, true) => self.waiting_since.or(Some(now)),
            (false, false) => Some(now),
        };
        out
    }

    /// Whether a hole has been waited on for `wait` already: then everything pending is
    /// dropped and releasing goes on after it. The caller must bring its sessions up to date
    /// from the store (they end, and resume).
    pub fn give_up(&mut self, now: Instant, wait: Duration) -> bool {
        match self.waiting_since {
            Some(since) if now.duration_since(since) >= wait => {
                let last = self.pending.values().map(|(to, _)| *to).max();
                self.next = self.next.max(last);
                self.pending.clear();
                self.waiting_since = None;
                true
            }
            _ => false,
        }
    }

    /// Batches waiting.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch whose one frame's text names it.
    fn batch(name: &str) -> Fanouts {
        vec![(vec![1], Arc::new(Outbound { json: name.to_string().into(), msg: None, origin: 0, close: None }))]
    }

    fn names(out: Vec<Fanouts>) -> Vec<String> {
        out.into_iter().flat_map(|f| f.into_iter().map(|(_, o)| o.json.to_string())).collect()
    }

    #[test]
    fn batches_are_released_in_position_order() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        assert!(names(s.offer(12, 15, batch("b"), t)).is_empty(), "nothing before start_at");
        assert!(names(s.offer(3, 10, batch("old"), t)).is_empty());
        assert!(names(s.start_at(10, t)).is_empty(), "10..12 is a hole");
        assert_eq!(s.pending(), 1, "the batch ending at or before 10 was dropped");
        assert!(names(s.offer(15, 16, batch("c"), t)).is_empty());
        assert_eq!(names(s.offer(10, 12, batch("a"), t)), ["a", "b", "c"]);
        assert_eq!(names(s.offer(16, 17, batch("d"), t)), ["d"]);
        assert!(names(s.offer(12, 15, batch("b again"), t)).is_empty(), "released already");
        assert!(!s.give_up(t + Duration::from_secs(60), Duration::from_secs(1)), "no hole");
    }

    #[test]
    fn a_hole_is_skipped_after_the_wait() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        assert!(s.start_at(0, t).is_empty());
        assert!(s.offer(5, 6, batch("x"), t).is_empty());
        assert!(s.offer(6, 8, batch("y"), t + Duration::from_millis(500)).is_empty());
        assert!(!s.give_up(t + Duration::from_millis(900), Duration::from_secs(1)));
        assert!(s.give_up(t + Duration::from_secs(1), Duration::from_secs(1)), "waited since the first");
        assert_eq!(s.pending(), 0);
        assert!(s.offer(0, 5, batch("late"), t).is_empty(), "the hole came too late: in the store only");
        assert_eq!(names(s.offer(8, 9, batch("z"), t)), ["z"]);
    }

    #[test]
    fn the_wait_restarts_when_a_hole_fills() {
        let t = Instant::now();
        let mut s = Sequencer::default();
        s.start_at(0, t);
        s.offer(1, 2, batch("b"), t);
        s.offer(3, 4, batch("d"), t);
        let later = t + Duration::from_millis(800);
        assert_eq!(names(s.offer(0, 1, batch("a"), later)), ["a", "b"]);
        assert!(
            !s.give_up(t + Duration::from_millis(1500), Duration::from_secs(1)),
            "the second hole waits from 0.8 s"
        );
        assert!(s.give_up(t + Duration::from_millis(1800), Duration::from_secs(1)));
    }
}
