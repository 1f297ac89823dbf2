//! The subscribers' side of a flush, split into parts that may run on every core.
//!
//! Nearly all of a large room's work is per subscriber, in its subscribe leg: str0m packetising
//! and encrypting each forwarded packet (SRTP), its pacer and timers, the RTCP it answers, and the
//! system calls that send the datagrams. Deciding what to forward is not (a few nanoseconds per
//! copy, [`chorus_sfu::Forwarder`]). So a flush runs in two phases:
//!
//! 1. **Serial**, on the room task's thread: publish legs are drained, each received packet is
//!    offered to its subscribers' forwarders and written into their subscribe legs (str0m queues
//!    it; nothing is encrypted yet), keyframe requests and room events are handled.
//! 2. **Egress**: every subscribe leg written to, or whose timer is due, is put in one of a few
//!    [`EgressPart`]s and each part is *run*: its legs' timers served (including the pacer steps
//!    of `media::PACER_STEP`) and their outputs drained — datagrams into the part's own list,
//!    what the engine must act on (a keyframe request, a connection up or lost) into the part's
//!    work. Each leg is in exactly one part, and a part holds `&mut` to its legs only, so parts
//!    share nothing and need no lock.
//!
//! Who runs the parts is the driver's choice, given to the engine as an [`EgressRunner`]: the
//! engine itself stays sans-IO (no thread, no socket). [`Inline`] runs them one after the other
//! and leaves every datagram to come out as [`super::Output::Transmit`] (the simulated-time tests
//! use it); the room task's runner (`call::egress`) runs them at once, one part per core (one on
//! the room task's thread, the others on a crew of threads shared by all rooms), and each part's
//! UDP datagrams leave in one `sendmmsg` from the thread that made them. What a
//! runner leaves in a part (ICE-TCP datagrams, all of them for `Inline`) the engine outputs.
//!
//! A received payload is written into every subscriber's leg as the same `Arc<[u8]>`, so parts
//! running at once share it without a copy; the first copy per subscriber is its encryption
//! (SRTP, that subscriber's keys), in its part.

use std::time::Instant;

use chorus_sfu::downlink::DownlinkEstimate;
use str0m::net::{Protocol, Transmit};
use str0m::rtp::RtpPacket;
use str0m::Input as RtcInput;

use super::media::{drain_leg, Drained, IMMEDIATE_ROUNDS, PACER_STEP};
use super::state::PeerLeg;
use super::{Leg, PeerKey, Work};

/// Fewest subscribe legs a part is made for: below it, handing a part to another thread costs
/// more than the part's work.
pub(crate) const MIN_LEGS_PER_PART: usize = 8;

/// Runs the parts of a flush's egress phase (see the module doc).
pub(crate) trait EgressRunner: Send {
    /// How many parts to make of `legs` subscribe legs.
    fn parts(&self, legs: usize) -> usize;
    /// Runs every part ([`EgressPart::run`]) at `now`. It may take each part's UDP datagrams
    /// ([`EgressPart::take_udp`]) to send them itself; the engine outputs what it leaves.
    fn run(&mut self, now: Instant, parts: &mut [EgressPart<'_>]);
}

/// Runs every part on the caller's thread, one after the other, and sends nothing.
pub(crate) struct Inline;

impl EgressRunner for Inline {
    fn parts(&self, _legs: usize) -> usize {
        1
    }

    fn run(&mut self, now: Instant, parts: &mut [EgressPart<'_>]) {
        for p in parts {
            p.run(now);
        }
    }
}

/// One subscriber's leg in a part.
pub(super) struct SubLeg<'a> {
    pub uid: i64,
    pub leg: &'a mut PeerLeg,
    pub downlink: &'a mut DownlinkEstimate,
}

/// Some of the subscribe legs of one flush, with what running them produced.
pub(crate) struct EgressPart<'a> {
    pub(super) legs: Vec<SubLeg<'a>>,
    pub(super) transmits: Vec<(PeerKey, Transmit)>,
    pub(super) work: Vec<Work>,
}

impl EgressPart<'_> {
    /// Serves each leg's due timers and drains it until none is due within a pacer step (at most
    /// `IMMEDIATE_ROUNDS` rounds), one leg after the other.
    ///
    /// One leg at a time, not a round over all legs per pacer step: str0m lets one packet out per
    /// timeout, so rounds over all legs would interleave the subscribers' datagrams (one packet
    /// each, then the next), while one leg's packets in a row are a run to one destination that
    /// leaves as one GSO message (`call::batch`).
    pub fn run(&mut self, now: Instant) {
        let mut out = PartOut { transmits: &mut self.transmits, work: &mut self.work };
        for s in self.legs.iter_mut() {
            if !s.leg.inbox.is_empty() {
                s.leg.feed_inbox(s.uid);
                s.leg.dirty = true;
            }
            let key = PeerKey { uid: s.uid, leg: Leg::Subscribe };
            for round in 0..=IMMEDIATE_ROUNDS {
                let due = s.leg.next_timeout <= now + PACER_STEP;
                if due && round < IMMEDIATE_ROUNDS {
                    let _ = s.leg.rtc.handle_input(RtcInput::Timeout(now));
                    s.leg.dirty = true;
                }
                if !s.leg.dirty {
                    break;
                }
                drain_leg(now, key, s.leg, s.downlink, false, &mut out);
            }
        }
    }

    /// Hands every UDP datagram of the part to `send` (destination, contents), in order, and
    /// keeps the rest for the engine.
    pub fn take_udp(&mut self, mut send: impl FnMut(std::net::SocketAddr, &[u8])) {
        self.transmits.retain(|(_, t)| {
            if t.proto == Protocol::Udp {
                send(t.destination, &t.contents);
                false
            } else {
                true
            }
        });
    }

    /// The subscribe legs in this part (tests).
    #[cfg(test)]
    pub fn uids(&self) -> Vec<i64> {
        self.legs.iter().map(|s| s.uid).collect()
    }
}

struct PartOut<'a> {
    transmits: &'a mut Vec<(PeerKey, Transmit)>,
    work: &'a mut Vec<Work>,
}

impl Drained for PartOut<'_> {
    fn transmit(&mut self, key: PeerKey, t: Transmit) {
        self.transmits.push((key, t));
    }
    fn work(&mut self, w: Work) {
        self.work.push(w);
    }
    /// A subscribe leg forwards nothing it receives (an audience member's media reaches nobody).
    fn rtp(&mut self, _uid: i64, _pkt: RtpPacket) {}
}
