//! Sequence number, timestamp and SSRC rewriting for one subscriber track.
//!
//! A subscriber must see one RTP stream per track: one SSRC, sequence numbers that only have gaps
//! where packets were really lost upstream (so its NACKs ask for packets that exist), and
//! timestamps that advance with media time. The publisher, though, sends one stream per simulcast
//! layer, each with its own SSRC, sequence numbers and timestamp origin, and the forwarder
//! deliberately leaves some packets out (padding). The [`Rewriter`] hides all of that.
//!
//! It maps one *source* (an input SSRC) at a time. [`Rewriter::start`] begins a source at a packet
//! the caller chose as a switch point; the first output packet of the new source continues right
//! after the last one sent. [`Rewriter::forward`] maps a packet of the current source and
//! [`Rewriter::skip`] closes the gap a deliberately dropped one would leave.
//!
//! Late packets are mapped to the number they would have had in order, as long as they are within
//! [`REORDER_WINDOW`] of the newest. Anything that would reuse an output number (duplicates, late
//! copies of skipped packets, stragglers from before the switch point) is refused, so the mapping
//! from input to output is injective and order-preserving within a source.

use std::time::Instant;

use crate::PacketInfo;

/// How many sequence numbers behind the newest packet a late packet may be and still be mapped.
/// 512 packets is two seconds or more of 720p video: far beyond reordering or an RTX round trip.
pub const REORDER_WINDOW: u64 = 512;

/// Extended sequence numbers of a source start here, so unwrapping a late packet never goes
/// below zero.
const EXTENDED_ORIGIN: u64 = 1 << 32;

/// The header fields to write into a forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// The subscriber-facing SSRC of this track.
    pub ssrc: u32,
    /// The subscriber-facing sequence number, extended to 64 bits: the first packet keeps the
    /// publisher's number and the count goes on past 65 535 (the header takes its low 16 bits;
    /// SRTP takes the rollover count from the rest).
    pub seq: u64,
    /// The subscriber-facing RTP timestamp.
    pub timestamp: u32,
}

/// Why a packet could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// The packet is not from the source currently mapped, or no source is mapped yet.
    OtherSource,
    /// The packet is older than the switch point where this source began: its frame was never
    /// started for the subscriber, and its number belongs to the previous source.
    BeforeStart,
    /// The packet is more than [`REORDER_WINDOW`] behind the newest one; its mapping is forgotten.
    TooOld,
    /// The packet was already forwarded or skipped.
    Duplicate,
}

/// Rewrites the packets of one subscriber track. See the [module docs](self).
#[derive(Debug)]
pub struct Rewriter {
    out_ssrc: u32,
    clock_rate: u32,
    source: Option<Source>,
    last_out: Option<LastOut>,
    /// Recent media time between two frames, in RTP ticks; used to place the first frame of a new
    /// source when little wall-clock time has passed.
    frame_ticks: u32,
}

/// The newest packet sent to the subscriber.
#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u64,
    timestamp: u32,
    at: Instant,
}

impl Rewriter {
    /// A rewriter that sends as `out_ssrc`, for media with the given RTP clock rate
    /// (48 000 for Opus, 90 000 for video).
    pub fn new(out_ssrc: u32, clock_rate: u32) -> Self {
        // Until two frames have been seen, guess 20 ms (an Opus frame; a touch short for video).
        let frame_ticks = clock_rate / 50;
        Self { out_ssrc, clock_rate: clock_rate.max(1), source: None, last_out: None, frame_ticks }
    }

    /// The SSRC of the source being mapped, if any.
    pub fn source_ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|source| source.ssrc)
    }

    /// Begins mapping `pkt`'s source at `pkt`, which the caller has chosen as a switch point
    /// (a keyframe for video), and returns its rewritten header.
    ///
    /// The very first source keeps the publisher's numbers. Every later one continues right after
    /// the last packet sent: the next sequence number, and a timestamp one frame or the elapsed
    /// wall-clock time later, whichever is more, so media time keeps pace with real time across
    /// pauses.
    pub fn start(&mut self, now: Instant, pkt: &PacketInfo) -> Rewritten {
        let ext = EXTENDED_ORIGIN + u64::from(pkt.seq);
        let (seq_shift, ts_shift) = match self.last_out {
            None => (0, 0),
            Some(last) => {
                let seq = last.seq + 1;
                let timestamp = last.timestamp.wrapping_add(self.media_gap(now, last));
                (seq.wrapping_sub(ext), timestamp.wrapping_sub(pkt.timestamp))
            }
        };
        self.source = Some(Source::new(pkt.ssrc, ext, seq_shift, ts_shift));
        let out_seq = ext.wrapping_add(seq_shift);
        self.emit(now, out_seq, pkt.timestamp.wrapping_add(ts_shift))
    }

    /// Maps a packet of the current source.
    ///
    /// A source that jumps back by more than the reorder window (a publisher that reset its
    /// sequence numbers) is picked up again on the second consecutive packet of the new run, as
    /// RFC 3550 appendix A.1 does.
    pub fn forward(&mut self, now: Instant, pkt: &PacketInfo) -> Result<Rewritten, RewriteError> {
        let source = self.source_of(pkt)?;
        let ext = source.unwrap(pkt.seq);
        match source.place(ext) {
            Place::Ahead => {
                source.advance(ext, Handling::Forwarded);
                let out_seq = ext.wrapping_add(source.seq_shift);
                let timestamp = pkt.timestamp.wrapping_add(source.ts_shift);
                Ok(self.emit(now, out_seq, timestamp))
            }
            Place::Late => {
                source.history.mark(ext, Handling::Forwarded);
                let seq = ext.wrapping_add(source.late_shift(ext));
                let timestamp = pkt.timestamp.wrapping_add(source.ts_shift);
                self.note_late(seq, timestamp);
                Ok(Rewritten { ssrc: self.out_ssrc, seq: seq - EXTENDED_ORIGIN, timestamp })
            }
            Place::Refused(RewriteError::TooOld) if source.take_resync(pkt.seq) => Ok(self.start(now, pkt)),
            Place::Refused(error) => Err(error),
        }
    }

    /// Records that a packet of the current source is deliberately not forwarded, so the packets
    /// after it close up and the subscriber sees no gap.
    ///
    /// A late packet cannot be closed up (its successors are already out); skipping it leaves the
    /// gap where it was, as if it had been lost.
    pub fn skip(&mut self, pkt: &PacketInfo) -> Result<(), RewriteError> {
        let source = self.source_of(pkt)?;
        let ext = source.unwrap(pkt.seq);
        match source.place(ext) {
            Place::Ahead => {
                source.advance(ext, Handling::Skipped);
                source.seq_shift = source.seq_shift.wrapping_sub(1);
                Ok(())
            }
            Place::Late => {
                source.history.mark(ext, Handling::Forwarded);
                Ok(())
            }
            Place::Refused(error) => Err(error),
        }
    }

    fn source_of(&mut self, pkt: &PacketInfo) -> Result<&mut Source, RewriteError> {
        match &mut self.source {
            Some(source) if source.ssrc == pkt.ssrc => Ok(source),
            _ => Err(RewriteError::OtherSource),
        }
    }

    /// Records an in-order output packet and returns its header.
    fn emit(&mut self, now: Instant, seq: u64, timestamp: u32) -> Rewritten {
        let mut at = now;
        if let Some(last) = self.last_out {
            let step = timestamp.wrapping_sub(last.timestamp);
            // A step of up to a second is a frame interval; longer is a pause, not a frame rate.
            if step != 0 && step < self.clock_rate {
                self.frame_ticks = step;
            }
            // An earlier `now` than before counts as no time passing.
            at = at.max(last.at);
        }
        self.last_out = Some(LastOut { seq, timestamp, at });
        Rewritten { ssrc: self.out_ssrc, seq: seq - EXTENDED_ORIGIN, timestamp }
    }

    /// A late packet lands after the newest in-order one when the packets between were skipped
    /// (it takes the number they closed up). The next source must continue after it, not reuse
    /// its number or go back in time.
    fn note_late(&mut self, seq: u64, timestamp: u32) {
        if let Some(last) = &mut self.last_out {
            if seq > last.seq {
                last.seq = seq;
            }
            if (timestamp.wrapping_sub(last.timestamp) as i32) > 0 {
                last.timestamp = timestamp;
            }
        }
    }

    /// RTP ticks to put between the last packet sent and the first of a new source.
    fn media_gap(&self, now: Instant, last: LastOut) -> u32 {
        let elapsed_us = now.saturating_duration_since(last.at).as_micros();
        let elapsed_ticks = elapsed_us * u128::from(self.clock_rate) / 1_000_000;
        // Receivers compare timestamps as signed 32-bit differences; stay on the positive side.
        let elapsed_ticks = elapsed_ticks.min(i32::MAX as u128) as u32;
        elapsed_ticks.max(self.frame_ticks).max(1)
    }
}

/// One input stream being mapped.
#[derive(Debug)]
struct Source {
    ssrc: u32,
    /// Extended sequence number of the switch point.
    start: u64,
    /// Extended sequence number of the newest packet seen (forwarded or skipped).
    highest: u64,
    /// In-order packets map to `ext + seq_shift` (wrapping); every skip lowers it by one.
    seq_shift: u64,
    ts_shift: u32,
    history: SeqHistory,
    /// After a packet too old to map, the sequence number that would confirm a reset.
    resync_at: Option<u16>,
}

/// Where an input packet falls relative to what the source has seen.
enum Place {
    /// Newer than everything seen.
    Ahead,
    /// Within the reorder window, not seen before.
    Late,
    /// Cannot be mapped.
    Refused(RewriteError),
}

impl Source {
    fn new(ssrc: u32, start: u64, seq_shift: u64, ts_shift: u32) -> Self {
        let mut history = SeqHistory::default();
        history.mark(start, Handling::Forwarded);
        Self { ssrc, start, highest: start, seq_shift, ts_shift, history, resync_at: None }
    }

    /// The extended sequence number nearest to the newest one seen.
    fn unwrap(&self, seq: u16) -> u64 {
        let delta = seq.wrapping_sub(self.highest as u16) as i16;
        self.highest.wrapping_add_signed(i64::from(delta))
    }

    fn place(&mut self, ext: u64) -> Place {
        if ext > self.highest {
            self.resync_at = None;
            return Place::Ahead;
        }
        if self.highest - ext >= REORDER_WINDOW {
            return Place::Refused(RewriteError::TooOld);
        }
        self.resync_at = None;
        if ext < self.start {
            Place::Refused(RewriteError::BeforeStart)
        } else if self.history.is_handled(ext) {
            Place::Refused(RewriteError::Duplicate)
        } else {
            Place::Late
        }
    }

    /// True if `seq` confirms a sequence number reset; otherwise arms the check for `seq + 1`.
    fn take_resync(&mut self, seq: u16) -> bool {
        let confirmed = self.resync_at == Some(seq);
        self.resync_at = if confirmed { None } else { Some(seq.wrapping_add(1)) };
        confirmed
    }

    fn advance(&mut self, ext: u64, handling: Handling) {
        self.history.clear_range(self.highest, ext);
        self.history.mark(ext, handling);
        self.highest = ext;
    }

    /// The shift that applied when the late packet `ext` would have arrived in order: the
    /// current one plus every skip made after it.
    fn late_shift(&self, ext: u64) -> u64 {
        self.seq_shift.wrapping_add(self.history.skipped_in(ext, self.highest))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handling {
    Forwarded,
    Skipped,
}

const HISTORY_WORDS: usize = (REORDER_WINDOW / 64) as usize;

/// Which of the last [`REORDER_WINDOW`] sequence numbers were handled, and which of those were
/// skipped (ring bitmaps indexed by extended sequence number).
#[derive(Debug, Default)]
struct SeqHistory {
    handled: [u64; HISTORY_WORDS],
    skipped: [u64; HISTORY_WORDS],
}

impl SeqHistory {
    fn slot(ext: u64) -> (usize, u64) {
        let index = (ext % REORDER_WINDOW) as usize;
        (index / 64, 1 << (index % 64))
    }

    fn mark(&mut self, ext: u64, handling: Handling) {
        let (word, bit) = Self::slot(ext);
        self.handled[word] |= bit;
        if handling == Handling::Skipped {
            self.skipped[word] |= bit;
        }
    }

    fn is_handled(&self, ext: u64) -> bool {
        let (word, bit) = Self::slot(ext);
        self.handled[word] & bit != 0
    }

    /// Forgets `(after, up_to]`, the slots about to be reused for newer sequence numbers.
    fn clear_range(&mut self, after: u64, up_to: u64) {
        if up_to - after >= REORDER_WINDOW {
            *self = Self::default();
            return;
        }
        for ext in after + 1..=up_to {
            let (word, bit) = Self::slot(ext);
            self.handled[word] &= !bit;
            self.skipped[word] &= !bit;
        }
    }

    /// How many of `(after, up_to]` were skipped. Only late packets ask, so a plain loop will do.
    fn skipped_in(&self, after: u64, up_to: u64) -> u64 {
        (after + 1..=up_to)
            .filter(|&ext| {
                let (word, bit) = Self::slot(ext);
                self.skipped[word] & bit != 0
            })
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{at, Rng};
    use crate::Layer;

    const OUT: u32 = 0xC0FFEE;
    const VIDEO_HZ: u32 = 90_000;

    fn pkt(ssrc: u32, seq: u16, timestamp: u32) -> PacketInfo {
        PacketInfo { ssrc, seq, timestamp, marker: false, payload_len: 1000, keyframe: false, layer: Layer::LOW }
    }

    fn out(seq: u64, timestamp: u32) -> Rewritten {
        Rewritten { ssrc: OUT, seq, timestamp }
    }

    /// One step of a scripted run: what arrives (and whether it is skipped) and what must happen.
    enum Step {
        Start(u32, u16, u32, Rewritten),
        Forward(u32, u16, u32, Result<Rewritten, RewriteError>),
        Skip(u32, u16, Result<(), RewriteError>),
    }

    /// Runs `steps` 10 ms apart and checks each outcome.
    fn run(steps: &[Step]) {
        let mut rewriter = Rewriter::new(OUT, VIDEO_HZ);
        for (i, step) in steps.iter().enumerate() {
            let now = at(10 * i as u64);
            match *step {
                Step::Start(ssrc, seq, ts, want) => {
                    assert_eq!(rewriter.start(now, &pkt(ssrc, seq, ts)), want, "step {i}")
                }
                Step::Forward(ssrc, seq, ts, want) => {
                    assert_eq!(rewriter.forward(now, &pkt(ssrc, seq, ts)), want, "step {i}")
                }
                Step::Skip(ssrc, seq, want) => assert_eq!(rewriter.skip(&pkt(ssrc, seq, 0)), want, "step {i}"),
            }
        }
    }

    use Step::*;

    #[test]
    fn first_source_keeps_publisher_numbers() {
        run(&[Start(1, 100, 5000, out(100, 5000)), Forward(1, 101, 5000, Ok(out(101, 5000)))]);
    }

    #[test]
    fn upstream_loss_stays_a_gap() {
        run(&[Start(1, 100, 0, out(100, 0)), Forward(1, 103, 3000, Ok(out(103, 3000)))]);
    }

    #[test]
    fn skipped_packets_leave_no_gap() {
        run(&[
            Start(1, 100, 0, out(100, 0)),
            Skip(1, 101, Ok(())),
            Skip(1, 102, Ok(())),
            Forward(1, 103, 3000, Ok(out(101, 3000))),
            // Loss after a skip is still a gap of exactly the lost packets.
            Skip(1, 104, Ok(())),
            Forward(1, 106, 6000, Ok(out(103, 6000))),
        ]);
    }

    #[test]
    fn late_packets_map_to_their_in_order_place() {
        run(&[
            Start(1, 100, 0, out(100, 0)),
            Forward(1, 102, 0, Ok(out(102, 0))),
            Skip(1, 103, Ok(())),
            Forward(1, 104, 0, Ok(out(103, 0))),
            // 101 was delayed, not lost: it fills the gap left for it.
            Forward(1, 101, 0, Ok(out(101, 0))),
        ]);
    }

    /// Found by tests/rewrite_props.rs: a late packet that lands after the newest in-order one
    /// (the packets after it were skipped) took the number the next source then started at.
    #[test]
    fn a_switch_continues_after_a_late_packet_that_filled_a_skip() {
        run(&[
            Start(1, 100, 0, out(100, 0)),
            Skip(1, 102, Ok(())),
            Forward(1, 101, 3000, Ok(out(101, 3000))),
            // 30 ms after the last in-order packet (2,700 ticks), after 101's timestamp.
            Start(2, 500, 77, out(102, 5700)),
        ]);
    }

    #[test]
    fn duplicates_and_late_copies_of_skipped_packets_are_refused() {
        run(&[
            Start(1, 100, 0, out(100, 0)),
            Skip(1, 101, Ok(())),
            Forward(1, 102, 0, Ok(out(101, 0))),
            Forward(1, 102, 0, Err(RewriteError::Duplicate)),
            Forward(1, 101, 0, Err(RewriteError::Duplicate)),
            Forward(1, 100, 0, Err(RewriteError::Duplicate)),
            Skip(1, 100, Err(RewriteError::Duplicate)),
        ]);
    }

    #[test]
    fn packets_from_before_the_switch_point_are_refused() {
        run(&[
            Start(1, 100, 0, out(100, 0)),
            // No frame seen yet: the first frame of the new source goes 20 ms (1800 ticks) later.
            Start(2, 500, 0, out(101, 1800)),
            Forward(2, 499, 0, Err(RewriteError::BeforeStart)),
            Forward(1, 101, 0, Err(RewriteError::OtherSource)),
            Skip(1, 101, Err(RewriteError::OtherSource)),
        ]);
    }

    #[test]
    fn packets_beyond_the_reorder_window_are_refused() {
        run(&[
            Start(1, 1000, 0, out(1000, 0)),
            Forward(1, 1001 + REORDER_WINDOW as u16, 0, Ok(out(1001 + REORDER_WINDOW, 0))),
            Forward(1, 1001, 0, Err(RewriteError::TooOld)),
            Forward(1, 1002, 0, Ok(out(1002, 0))),
        ]);
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        run(&[
            Start(1, 65534, u32::MAX - 1000, out(65534, u32::MAX - 1000)),
            Forward(1, 65535, u32::MAX, Ok(out(65535, u32::MAX))),
            Skip(1, 0, Ok(())),
            // The output number counts on past 65 535 (its low 16 bits wrap to 0).
            Forward(1, 1, 1999, Ok(out(65_536, 1999))),
            // Late across the wrap.
            Skip(1, 3, Ok(())),
            Forward(1, 4, 1999, Ok(out(65_538, 1999))),
            Forward(1, 2, 1999, Ok(out(65_537, 1999))),
        ]);
    }

    #[test]
    fn switching_continues_sequence_and_timestamp() {
        let mut rewriter = Rewriter::new(OUT, VIDEO_HZ);
        // 30 fps on source 1: 3000 ticks per frame.
        rewriter.start(at(0), &pkt(1, 10, 0));
        assert_eq!(rewriter.forward(at(33), &pkt(1, 11, 3000)), Ok(out(11, 3000)));
        assert_eq!(rewriter.forward(at(66), &pkt(1, 12, 6000)), Ok(out(12, 6000)));
        // Source 2's keyframe arrives 5 ms later with an unrelated origin: it goes out one frame later.
        assert_eq!(rewriter.start(at(71), &pkt(2, 40_000, 1_234_567)), out(13, 9000));
        assert_eq!(rewriter.forward(at(104), &pkt(2, 40_001, 1_234_567 + 3000)), Ok(out(14, 12_000)));
    }

    #[test]
    fn resuming_after_a_pause_advances_timestamp_by_wall_clock() {
        let mut rewriter = Rewriter::new(OUT, VIDEO_HZ);
        rewriter.start(at(0), &pkt(1, 10, 0));
        // Two seconds later the same source comes back at a keyframe.
        let resumed = rewriter.start(at(2000), &pkt(1, 70, 180_000));
        assert_eq!(resumed, out(11, 2 * VIDEO_HZ));
    }

    #[test]
    fn a_sequence_number_reset_is_picked_up_on_the_second_packet() {
        run(&[
            Start(1, 30_000, 0, out(30_000, 0)),
            Forward(1, 30_001, 0, Ok(out(30_001, 0))),
            Forward(1, 5, 9000, Err(RewriteError::TooOld)),
            Forward(1, 6, 9000, Ok(out(30_002, 1800))),
            Forward(1, 7, 9000, Ok(out(30_003, 1800))),
        ]);
    }

    /// Random loss, reordering within the window, duplicates and skips over several wraps: each
    /// forwarded packet gets its own output number, in input order, and the distance between two
    /// forwarded packets is their input distance minus the in-order skips between them.
    #[test]
    fn mapping_is_injective_and_closes_exactly_the_in_order_skips() {
        let mut rng = Rng::new(7);
        let mut rewriter = Rewriter::new(OUT, VIDEO_HZ);
        let first = 65_000u16;
        rewriter.start(at(0), &pkt(1, first, 0));
        // Offsets from `first` of what was forwarded (with its extended output) and skipped in order.
        let mut forwarded = vec![(0i64, i64::from(first))];
        let mut skipped_in_order = vec![];
        let (mut highest, mut last_out) = (0i64, i64::from(first));
        let mut pending: Vec<i64> = vec![];
        for next in 1..200_000i64 {
            match rng.below(100) {
                0..=1 => {}                   // lost upstream
                2..=6 => pending.push(next),  // held back, released later
                _ => pending.insert(0, next), // on time
            }
            while pending.len() > 20 || (!pending.is_empty() && rng.chance(0.6)) {
                let oldest = (0..pending.len()).min_by_key(|&i| pending[i]).unwrap_or(0);
                let i = if next - pending[oldest] > 400 {
                    oldest
                } else if rng.chance(0.8) {
                    0
                } else {
                    rng.below(pending.len() as u64) as usize
                };
                let offset = pending.remove(i);
                let p = pkt(1, first.wrapping_add(offset as u16), 0);
                if rng.chance(0.1) {
                    if rewriter.skip(&p).is_ok() && offset > highest {
                        skipped_in_order.push(offset);
                    }
                } else if let Ok(r) = rewriter.forward(at(next as u64), &p) {
                    let out = last_out + i64::from((r.seq as u16).wrapping_sub(last_out as u16) as i16);
                    last_out = last_out.max(out);
                    forwarded.push((offset, out));
                }
                highest = highest.max(offset);
                // However it was handled, a second copy is never forwarded.
                assert!(rewriter.forward(at(next as u64), &p).is_err());
            }
        }
        forwarded.sort();
        assert!(forwarded.len() > 150_000, "only {} forwarded", forwarded.len());
        for pair in forwarded.windows(2) {
            let ((in_a, out_a), (in_b, out_b)) = (pair[0], pair[1]);
            let skips =
                skipped_in_order.partition_point(|&s| s < in_b) - skipped_in_order.partition_point(|&s| s <= in_a);
            assert_eq!(out_b - out_a, in_b - in_a - skips as i64, "between inputs {in_a} and {in_b}");
        }
    }
}
