//! Property tests of the [`Rewriter`]: what a subscriber sees across layer switches, skipped
//! (padding) packets, losses, reordering and duplicates, for arbitrary sequence-number and
//! timestamp origins (wrap-arounds included).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chorus_sfu::rewrite::{RewriteError, Rewriter};
use chorus_sfu::{Layer, PacketInfo};
use proptest::prelude::*;

/// Video at 30 frames a second on a 90 kHz clock.
const FRAME_TICKS: u32 = 3000;

/// One simulcast layer as a publisher sends it: its own SSRC, sequence and timestamp origin.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    seq: u16,
    ts: u32,
}

/// A stretch of the call during which the subscriber gets one layer.
#[derive(Debug, Clone)]
struct Segment {
    layer: usize,
    /// Per frame: the packets of the frame, each forwarded (`true`) or skipped as padding.
    frames: Vec<Vec<bool>>,
}

fn segments() -> impl Strategy<Value = Vec<Segment>> {
    let frame = prop::collection::vec(prop::bool::weighted(0.85), 1..5);
    let segment =
        (0..3usize, prop::collection::vec(frame, 1..20)).prop_map(|(layer, frames)| Segment { layer, frames });
    prop::collection::vec(segment, 1..12)
}

fn origins() -> impl Strategy<Value = [(u16, u32); 3]> {
    [(any::<u16>(), any::<u32>()), (any::<u16>(), any::<u32>()), (any::<u16>(), any::<u32>())]
}

/// Every layer sends every frame (the ones the subscriber does not get too), so a switch finds
/// the new layer's numbers moved on. Returns the packets of the chosen layer, per segment.
fn packets(origins: [(u16, u32); 3], plan: &[Segment]) -> Vec<Vec<(PacketInfo, bool, Instant)>> {
    let t0 = Instant::now();
    let mut layers: Vec<Source> =
        origins.iter().enumerate().map(|(i, &(seq, ts))| Source { ssrc: 100 + i as u32, seq, ts }).collect();
    let mut frame_no = 0u32;
    let mut out = Vec::new();
    for seg in plan {
        let mut pkts = Vec::new();
        for (f, frame) in seg.frames.iter().enumerate() {
            let now = t0 + Duration::from_millis(33 * u64::from(frame_no));
            for (l, src) in layers.iter_mut().enumerate() {
                for (i, &forward) in frame.iter().enumerate() {
                    if l == seg.layer {
                        let info = PacketInfo {
                            ssrc: src.ssrc,
                            seq: src.seq,
                            timestamp: src.ts,
                            marker: i + 1 == frame.len(),
                            payload_len: 1000,
                            keyframe: f == 0 && i == 0,
                            layer: Layer::new(l as u8).expect("three layers"),
                        };
                        // The switch point itself is always forwarded.
                        pkts.push((info, forward || (f == 0 && i == 0), now));
                    }
                    src.seq = src.seq.wrapping_add(1);
                }
                src.ts = src.ts.wrapping_add(FRAME_TICKS);
            }
            frame_no += 1;
        }
        out.push(pkts);
    }
    out
}

/// Unwraps 16-bit output numbers into a line, each to the value nearest the previous one.
struct Unwrap(Option<i64>);

impl Unwrap {
    fn next(&mut self, seq: u16) -> i64 {
        let v = match self.0 {
            None => i64::from(seq),
            Some(last) => last + i64::from(seq.wrapping_sub(last as u16) as i16),
        };
        self.0 = Some(v);
        v
    }
}

fn faults_case(origins: [(u16, u32); 3], plan: &[Segment], faults: Vec<(u8, u8)>) -> Result<(), TestCaseError> {
    let mut rw = Rewriter::new(7, 90_000);
    let mut unwrap = Unwrap(None);
    let mut used = HashSet::new();
    let mut faults = faults.into_iter().cycle();
    for seg in packets(origins, plan) {
        // Deliver: some lost, some swapped with the next one, some twice.
        let mut arrivals: Vec<(PacketInfo, bool, Instant)> = Vec::new();
        for p in seg {
            let (loss, shuffle) = faults.next().expect("cycled");
            if loss == 0 {
                continue;
            }
            arrivals.push(p);
            if shuffle == 0 && arrivals.len() >= 2 {
                let n = arrivals.len();
                arrivals.swap(n - 1, n - 2);
            }
            if shuffle == 1 {
                arrivals.push(p);
            }
        }
        let mut mapped: Vec<(u16, i64)> = Vec::new();
        let mut seen = HashSet::new();
        for (n, (pkt, forward, now)) in arrivals.into_iter().enumerate() {
            let duplicate = !seen.insert(pkt.seq);
            // The forwarder starts a source at its first packet to arrive (a keyframe).
            let result = if rw.source_ssrc() != Some(pkt.ssrc) {
                Ok(rw.start(now, &pkt))
            } else if forward {
                rw.forward(now, &pkt)
            } else {
                let r = rw.skip(&pkt);
                if duplicate {
                    prop_assert!(r.is_err());
                }
                continue;
            };
            match result {
                Ok(out) => {
                    prop_assert!(!duplicate, "a duplicate is never forwarded");
                    let v = unwrap.next(out.seq as u16);
                    prop_assert_eq!(v, out.seq as i64, "the extended number is the 16-bit one unwrapped");
                    prop_assert!(used.insert(v), "output number {} used twice", v);
                    mapped.push((pkt.seq, v));
                }
                Err(RewriteError::Duplicate) => prop_assert!(duplicate, "only duplicates are refused as such"),
                Err(RewriteError::BeforeStart) => prop_assert!(n > 0, "the switch point itself is mapped"),
                Err(e) => prop_assert!(false, "unexpected {:?} for a packet a few places late", e),
            }
        }
        for a in &mapped {
            for b in &mapped {
                let ahead_in = (b.0.wrapping_sub(a.0) as i16) > 0;
                prop_assert_eq!(ahead_in, b.1 > a.1, "order kept: {:?} {:?}", a, b);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// In order and without loss, the subscriber sees one SSRC and consecutive sequence
    /// numbers however many packets are skipped and layers switched, timestamps that keep the
    /// publisher's spacing within a layer and move forward at every switch.
    #[test]
    fn in_order_output_has_no_gaps_and_time_moves_forward(origins in origins(), plan in segments()) {
        let mut rw = Rewriter::new(7, 90_000);
        let mut last: Option<(u64, u32)> = None;
        for (s, seg) in packets(origins, &plan).into_iter().enumerate() {
            let mut first_in: Option<u32> = None;
            let mut first_out = 0u32;
            for (n, (pkt, forward, now)) in seg.into_iter().enumerate() {
                let out = if n == 0 {
                    // A switch to the layer being mapped already (same layer twice in a row)
                    // is no switch: the caller forwards.
                    if s > 0 && plan[s - 1].layer == plan[s].layer { rw.forward(now, &pkt).expect("same source") } else { rw.start(now, &pkt) }
                } else if forward {
                    rw.forward(now, &pkt).expect("an in-order packet of the source is mapped")
                } else {
                    rw.skip(&pkt).expect("an in-order packet of the source can be skipped");
                    continue;
                };
                prop_assert_eq!(out.ssrc, 7);
                if let Some((seq, ts)) = last {
                    prop_assert_eq!(out.seq, seq.wrapping_add(1), "no gap, no repeat");
                    prop_assert!((out.timestamp.wrapping_sub(ts) as i32) >= 0, "time never goes back");
                    if n == 0 && s > 0 && plan[s - 1].layer != plan[s].layer {
                        prop_assert!((out.timestamp.wrapping_sub(ts) as i32) > 0, "a switch moves time forward");
                    }
                }
                match first_in {
                    None => { first_in = Some(pkt.timestamp); first_out = out.timestamp; }
                    Some(t) => prop_assert_eq!(out.timestamp.wrapping_sub(first_out), pkt.timestamp.wrapping_sub(t), "spacing kept"),
                }
                last = Some((out.seq, out.timestamp));
            }
        }
    }

    /// With losses, reordering and duplicates, no output number is ever used twice, the
    /// order of a layer's packets is kept, a duplicate is refused as one, and a late packet
    /// within the window is still mapped.
    #[test]
    fn losses_and_reordering_never_reuse_or_reorder_numbers(
        origins in origins(),
        plan in segments(),
        faults in prop::collection::vec((0u8..10, 0u8..10), 400),
    ) {
        faults_case(origins, &plan, faults)?;
    }
}
