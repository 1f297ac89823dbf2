//! RTP packets of one track into whole frames: a small reorder buffer, then per-codec
//! depacketizing (str0m's depacketizers). Sans-IO: time is passed in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_sfu::codec::{self, Codec};
use str0m::format::CodecExtra;
use str0m::unversioned::{Depacketizer, H264Depacketizer, Vp8Depacketizer};

/// How long a missing packet is waited for (a NACK retransmission takes one round trip) before
/// the packets after it are released and the frame it belonged to is given up.
pub const REORDER_WAIT: Duration = Duration::from_millis(150);
/// Packets held at most while waiting; past this, the oldest missing one is given up at once.
const REORDER_MAX: usize = 600;

/// One received RTP packet of a recorded track, as the engine hands it over.
#[derive(Debug, Clone)]
pub struct RecPacket {
    /// The publisher's SSRC (for its sender reports).
    pub ssrc: u32,
    /// The publisher's RTP timestamp (what its sender reports map).
    pub orig_ts: u32,
    /// Sequence number of the recorded stream, extended to 64 bits, continuous across layer
    /// switches (the recording's forwarder numbers it).
    pub seq: u64,
    /// RTP timestamp of the recorded stream, continuous across layer switches.
    pub ts: u32,
    pub marker: bool,
    /// Shared with the forwarded copies (str0m's received payload).
    pub payload: Arc<[u8]>,
    /// When it was received.
    pub at: Instant,
}

/// A whole frame of one track.
#[derive(Debug, Clone)]
pub struct Frame {
    /// RTP timestamp (of the recorded stream) and the first packet's details.
    pub ts: u32,
    pub orig_ts: u32,
    pub ssrc: u32,
    pub at: Instant,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Puts packets back in sequence order; a packet missing for [`REORDER_WAIT`] is skipped.
#[derive(Debug, Default)]
pub struct Reorder {
    held: BTreeMap<u64, RecPacket>,
    next: Option<u64>,
    /// Packets given up (never arrived in time) and late ones dropped.
    pub lost: u64,
}

/// A packet released in order; `gap` says packets before it were given up.
pub struct Released {
    pub pkt: RecPacket,
    pub gap: bool,
}

impl Reorder {
    pub fn push(&mut self, pkt: RecPacket) {
        if self.next.is_some_and(|n| pkt.seq < n) {
            self.lost += 1; // too late: its frame was already given up or written
            return;
        }
        self.held.entry(pkt.seq).or_insert(pkt);
    }

    /// The next packet in order, if it is there or the wait for the missing ones is over.
    pub fn pop(&mut self, now: Instant) -> Option<Released> {
        let (&first, oldest) = self.held.first_key_value()?;
        let next = *self.next.get_or_insert(first);
        let gap = first != next;
        if gap && now.saturating_duration_since(oldest.at) < REORDER_WAIT && self.held.len() < REORDER_MAX {
            return None;
        }
        if gap {
            self.lost += first - next;
        }
        let pkt = self.held.remove(&first).expect("first key");
        self.next = Some(first + 1);
        Some(Released { pkt, gap })
    }

    /// When the oldest held packet stops waiting for the ones before it.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.first_key_value().map(|(_, p)| p.at + REORDER_WAIT)
    }
}

/// Depacketizes the in-order packets of one track into frames. A frame with a packet missing is
/// dropped; video then waits for the next keyframe (decoders cannot start elsewhere) and says so
/// through [`Assembler::wants_keyframe`].
#[derive(Debug)]
pub struct Assembler {
    codec: Codec,
    depack: Option<Box<dyn Depacketizer + Send>>,
    cur: Option<Frame>,
    /// The current frame lost a packet.
    broken: bool,
    /// Video: nothing is emitted until a keyframe starts.
    need_key: bool,
    pub dropped_frames: u64,
}

impl Assembler {
    pub fn new(codec: Codec) -> Assembler {
        let depack: Option<Box<dyn Depacketizer + Send>> = match codec {
            Codec::Vp8 => Some(Box::new(Vp8Depacketizer::default())),
            Codec::H264 => Some(Box::new(H264Depacketizer::default())),
            _ => None,
        };
        Assembler { codec, depack, cur: None, broken: false, need_key: codec != Codec::Opus, dropped_frames: 0 }
    }

    pub fn wants_keyframe(&self) -> bool {
        self.need_key
    }

    /// Takes the next in-order packet; returns a frame when one is complete.
    pub fn push(&mut self, r: Released) -> Option<Frame> {
        let Released { pkt, gap } = r;
        if pkt.payload.is_empty() {
            return None; // padding
        }
        if self.codec == Codec::Opus {
            return Some(Frame {
                ts: pkt.ts,
                orig_ts: pkt.orig_ts,
                ssrc: pkt.ssrc,
                at: pkt.at,
                keyframe: true,
                data: pkt.payload.to_vec(),
            });
        }
        if self.cur.as_ref().is_some_and(|f| f.ts != pkt.ts) {
            // A new timestamp without the last frame's marker: that frame lost its end.
            self.drop_current();
        }
        if gap {
            match self.cur {
                Some(_) => self.broken = true,
                // Between frames: a whole frame may be gone, and the next ones refer to it.
                None => self.need_key = true,
            }
        }
        let depack = self.depack.as_mut()?;
        if self.cur.is_none() {
            // Not a partition head: the frame's first packet is missing.
            self.broken = !depack.is_partition_head(&pkt.payload);
            self.cur = Some(Frame {
                ts: pkt.ts,
                orig_ts: pkt.orig_ts,
                ssrc: pkt.ssrc,
                at: pkt.at,
                keyframe: codec::is_keyframe_start(self.codec, &pkt.payload),
                data: Vec::with_capacity(pkt.payload.len() * 4),
            });
        }
        let cur = self.cur.as_mut().expect("set above");
        let mut extra = CodecExtra::None;
        if depack.depacketize(&pkt.payload, &mut cur.data, &mut extra).is_err() {
            self.broken = true;
        }
        if !pkt.marker {
            return None;
        }
        // The marker ends a video frame (RFC 7741, RFC 6184).
        let f = self.cur.take().expect("set above");
        let ok = !self.broken && !f.data.is_empty();
        self.broken = false;
        if ok && (!self.need_key || f.keyframe) {
            self.need_key = false;
            Some(f)
        } else {
            self.dropped_frames += 1;
            if !ok {
                self.need_key = true;
            }
            None
        }
    }

    fn drop_current(&mut self) {
        if self.cur.take().is_some() {
            self.dropped_frames += 1;
            self.need_key = true;
        }
        self.broken = false;
    }
}

/// Width and height from a VP8 keyframe's header (RFC 6386 §9.1), if it is one.
pub fn vp8_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    (w > 0 && h > 0).then_some((u32::from(w), u32::from(h)))
}
