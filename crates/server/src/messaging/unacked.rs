//! What one session has written to its client and not yet had acknowledged, kept small.
//!
//! An `ack {pos}` raises the user's delivered watermark, in each conversation, to the highest
//! `seq` among the messages written to this session with `pos` at or below it. The session
//! does not keep every message for that: consecutive messages of one conversation are kept as
//! one *run* (its first and last `pos`, the first message's `seq` and the highest `seq`), at
//! most [`RUN_MESSAGES`] messages a run, and a run is closed by every ack. So a client that
//! never acks costs at most [`MAX_RUNS`] runs (about 48 KiB), however many messages it is sent,
//! where one entry per message cost up to 10,000 entries (320 KiB).
//!
//! Exactness: an ack that covers a run's last message covers the run exactly. An ack that ends
//! inside a run (messages written after the one the client acknowledged, and in the same run)
//! raises the watermark to the run's first message only; the next ack that covers the run
//! raises the rest. Watermarks are therefore never raised past what the client acknowledged,
//! at worst late by part of one run. Beyond [`MAX_RUNS`] the oldest run is forgotten: a later
//! ack in the same conversation still covers its messages (a watermark is one number per
//! conversation), a conversation with no later message stays where it was (its messages come
//! again in a fresh start's backlog; `read` raises it too).

use std::collections::{HashMap, VecDeque};

use crate::bus::MsgMeta;

/// Most messages in one run, so that a conversation with steady traffic is acknowledged in
/// steps even when the client's acks always trail what was just written.
pub const RUN_MESSAGES: u32 = 64;
/// Most runs one session keeps.
pub const MAX_RUNS: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Run {
    conv_id: i64,
    first_pos: i64,
    last_pos: i64,
    /// The first message's `seq`: what an ack ending inside the run may raise the watermark to.
    first_seq: i64,
    /// The highest `seq` in the run (an edit carries its message's `seq` with a new `pos`).
    max_seq: i64,
    messages: u32,
}

/// The unacknowledged messages of one session, as runs in `pos` order.
#[derive(Debug, Default)]
pub struct Unacked {
    runs: VecDeque<Run>,
    /// The last run takes no more messages (an ack came since it began).
    sealed: bool,
}

impl Unacked {
    /// Remembers a message written to the client.
    pub fn remember(&mut self, m: MsgMeta) {
        if let Some(r) = self.runs.back_mut() {
            if !self.sealed && r.conv_id == m.conv_id && r.messages < RUN_MESSAGES && m.pos > r.last_pos {
                r.last_pos = m.pos;
                r.max_seq = r.max_seq.max(m.seq);
                r.messages += 1;
                return;
            }
        }
        if self.runs.len() >= MAX_RUNS {
            self.runs.pop_front();
        }
        self.runs.push_back(Run {
            conv_id: m.conv_id,
            first_pos: m.pos,
            last_pos: m.pos,
            first_seq: m.seq,
            max_seq: m.seq,
            messages: 1,
        });
        self.sealed = false;
    }

    /// Takes what `ack {pos}` covers: per conversation, the `seq` its delivered watermark may
    /// rise to.
    pub fn ack(&mut self, pos: i64) -> HashMap<i64, i64> {
        let mut highest: HashMap<i64, i64> = HashMap::new();
        let mut raise = |conv: i64, seq: i64| {
            let e = highest.entry(conv).or_insert(seq);
            *e = (*e).max(seq);
        };
        while let Some(r) = self.runs.front().copied() {
            if r.last_pos <= pos {
                raise(r.conv_id, r.max_seq);
                self.runs.pop_front();
            } else {
                if r.first_pos <= pos {
                    raise(r.conv_id, r.first_seq);
                }
                break;
            }
        }
        self.sealed = true;
        // A queue that was long once does not keep its memory.
        if self.runs.capacity() > 64 && self.runs.len() < self.runs.capacity() / 4 {
            self.runs.shrink_to(self.runs.len() * 2);
        }
        highest
    }

    /// Runs held (for tests).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pos: i64, conv_id: i64, seq: i64) -> MsgMeta {
        MsgMeta { pos, conv_id, seq, sender: 9 }
    }

    #[test]
    fn acks_covering_runs_are_exact() {
        let mut u = Unacked::default();
        for (pos, conv, seq) in [(1, 10, 1), (2, 10, 2), (3, 20, 7), (4, 10, 3), (5, 10, 4)] {
            u.remember(m(pos, conv, seq));
        }
        assert_eq!(u.runs(), 3);
        assert_eq!(u.ack(3), HashMap::from([(10, 2), (20, 7)]));
        assert_eq!(u.ack(5), HashMap::from([(10, 4)]));
        assert_eq!(u.runs(), 0);
        assert!(u.ack(9).is_empty());
    }

    #[test]
    fn an_ack_inside_a_run_raises_to_its_first_message_only() {
        let mut u = Unacked::default();
        for pos in 1..=5 {
            u.remember(m(pos, 10, pos));
        }
        assert_eq!(u.ack(3), HashMap::from([(10, 1)]), "never past what was acknowledged");
        // Messages after the ack start a new run: the next ack covers them exactly.
        u.remember(m(6, 10, 6));
        assert_eq!(u.ack(5), HashMap::from([(10, 5)]));
        assert_eq!(u.ack(6), HashMap::from([(10, 6)]));
    }

    #[test]
    fn edits_count_with_their_seq() {
        let mut u = Unacked::default();
        u.remember(m(1, 10, 5));
        u.remember(m(2, 10, 2)); // an edit of an older message
        assert_eq!(u.ack(2), HashMap::from([(10, 5)]));
    }

    #[test]
    fn memory_is_bounded_however_many_messages_arrive() {
        let mut u = Unacked::default();
        // One busy conversation: 64 messages a run.
        for pos in 1..=(RUN_MESSAGES as i64 * 10) {
            u.remember(m(pos, 10, pos));
        }
        assert_eq!(u.runs(), 10);
        // Alternating conversations, never acknowledged: the oldest runs are forgotten.
        for pos in 1000..(1000 + 3 * MAX_RUNS as i64) {
            u.remember(m(pos, pos % 2, pos));
        }
        assert_eq!(u.runs(), MAX_RUNS);
        let all = u.ack(i64::MAX);
        assert_eq!(all.len(), 2);
        assert_eq!(all[&1], 1000 + 3 * MAX_RUNS as i64 - 1);
    }
}
