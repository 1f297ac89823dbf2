//! Media: datagrams into the legs, draining the legs, forwarding RTP between them, keyframe
//! requests, layer selection, leg timeouts and liveness.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_proto::call::CallEvent;
use chorus_sfu::codec::{self, Codec};
use chorus_sfu::downlink::DownlinkEstimate;
use chorus_sfu::select::{self, Demand, LayerSelector, TrackRate};
use chorus_sfu::{Decision, Forwarder, Layer, LeaveReason, PacketInfo, StreamId, Subscription, TrackKind};
use str0m::bwe::{Bitrate, BweKind};
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, CandidateKind, Event, IceConnectionState, Input as RtcInput, Output as RtcOutput};

use super::egress::{EgressPart, SubLeg};
use super::record::{kind_of, RecordOut};
use super::state::{Fwd, Inbound, PeerLeg, SpareLine, SsrcRoute, INBOX_MAX};
use super::{mark_dirty, Datagram, Engine, Leg, Output, PeerKey, Work, TICK};
use crate::record::frames::RecPacket;

/// Rounds of due timeouts one flush serves before it sends (see `Engine::flush`): enough for a
/// 720p keyframe to one subscriber (str0m releases one packet per round).
pub(super) const IMMEDIATE_ROUNDS: u32 = 64;
/// str0m's pacer (on with bandwidth estimation) lets one packet out per timeout and then asks for
/// the next timeout 1 µs after the last one it was given. A flush serves those at once (with the
/// same `now`) instead of leaving the rest of a frame for later wake-ups of the room task.
pub(super) const PACER_STEP: Duration = Duration::from_micros(1);
/// Longest a subscribe leg given only video packets of a frame not yet ended (no marker bit) waits
/// for the rest of that frame before a flush sends what it has (see `hold`).
///
/// A frame is decodable only once its last packet is in, so sending its packets together with
/// the last one delays no frame; and sent together, a frame's packets to one subscriber leave as
/// one message (UDP GSO cuts it into datagrams, `call::batch`), and its leg is polled once per
/// frame rather than once per packet. Publishers pace a frame's packets over a few milliseconds
/// (a 720p frame at 2.5 Mbit/s is ~10 kB; a browser paces at 2.5 times its estimate, so over an
/// uplink estimated at 4 Mbit/s it takes ~8 ms), so most frames end within the hold; one paced
/// over longer (a keyframe, a slower uplink) or whose last packet is lost is sent in pieces.
/// Audio, feedback, handshakes and anything else marking the leg end its hold.
pub(super) const FRAME_HOLD: Duration = Duration::from_millis(10);
/// How long the address a leg sends to must have been silent before the peer's traffic from
/// another address moves the leg there (`Engine::follow_moved_peer`). A live peer sends RTCP at
/// least every few seconds and consent checks (RFC 7675) every ~5 s; with media flowing, far
/// more often.
pub(super) const PATH_STALE: Duration = Duration::from_secs(2);
/// Most of a subscriber's video bytes over the last second that may be retransmissions (RTX)
/// before str0m drops the resends it has queued. str0m's default, 0.15, is met on an ordinary
/// lossy link: a receiver NACKs a packet as soon as a later one arrives, so jitter that reorders
/// makes it ask for packets that were only late, and with 5 % loss those resends pass 15 %. The
/// real losses' resends were then dropped with them, and a frame waited for NACK after NACK
/// (freezes of 0.5–5 s on the bad-network test). Half is libwebrtc's bound (retransmissions
/// at most the media rate); the layer selection keeps the total to the estimate.
const RTX_RATIO_CAP: f32 = 0.5;
/// How long, and how many, sent video packets a subscribe leg keeps to answer NACKs: str0m's
/// default, stated where the cap above is set.
const RTX_CACHE: (usize, Duration) = (2000, Duration::from_secs(3));

/// A STUN binding success response (message type 0x0101).
fn is_binding_success(d: &[u8]) -> bool {
    d.len() >= 20 && d[0..2] == [0x01, 0x01] && d[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// One video track a subscriber receives, in the order its budget is shared out.
struct Wanted {
    publisher: i64,
    /// Index in the publisher's `tracks`.
    track: usize,
    screen: bool,
    rate: TrackRate,
}

/// One subscriber's forwarder of one track: the key of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FwdKey {
    subscriber: i64,
    publisher: i64,
    track: usize,
}

fn sfu_codec(c: str0m::format::Codec) -> Codec {
    use str0m::format::Codec as C;
    match c {
        C::Opus => Codec::Opus,
        C::Vp8 => Codec::Vp8,
        C::Vp9 => Codec::Vp9,
        C::H264 => Codec::H264,
        C::Av1 => Codec::Av1,
        _ => Codec::Other,
    }
}

impl Engine {
    /// Hands one received datagram to its leg. A publish leg's is handled and drained at once
    /// (in RTP mode str0m holds one received packet until the next poll, and the media must
    /// reach the forwarders in this flush). A subscribe leg's waits in the leg's inbox for the
    /// egress phase, which hands it over on the thread of the leg's part: a crowd's feedback,
    /// handshakes and consent checks are most of what a large room receives, and handled here
    /// one by one (each followed by a drain) they kept the room's thread from its media while
    /// the other cores waited (a join storm filled the room's queue).
    pub(super) fn datagram(&mut self, now: Instant, d: Datagram) {
        let Some(peer) = self.peers.get_mut(&d.peer.uid) else { return };
        let Some(leg) = peer.leg(d.peer.leg) else { return };
        // Only what str0m can take (STUN, DTLS, RTP, RTCP) counts as heard from the peer.
        if DatagramRecv::try_from(d.contents.as_ref()).is_err() {
            return;
        }
        leg.last_rx = now;
        // A datagram from elsewhere than the address this leg sends to, which has been silent
        // for PATH_STALE: the peer may have moved (see `follow_moved_peer`).
        let moved_from = match leg.path {
            Some((to, _)) if to == d.source => {
                leg.path = Some((to, now));
                None
            }
            Some((to, heard)) if d.proto == Protocol::Udp && now.saturating_duration_since(heard) >= PATH_STALE => {
                Some(to)
            }
            _ => None,
        };
        if leg.inbox.len() >= INBOX_MAX {
            crate::metrics::metrics().media_datagrams_dropped_in.inc();
            return;
        }
        let Datagram { peer: key, proto, source, destination, contents } = d;
        leg.inbox.push(Inbound { at: now, proto, source, destination, contents });
        if key.leg == Leg::Subscribe && moved_from.is_none() {
            mark_dirty(&mut self.dirty, leg, key);
            return;
        }
        leg.feed_inbox(key.uid);
        self.drain(now, key);
        if let Some(old) = moved_from {
            self.follow_moved_peer(now, key, old, source);
        }
    }

    /// A peer whose address changed under a live connection (a NAT rebinding, a phone moving
    /// between networks behind the same NAT) keeps sending ICE checks, now from a new address,
    /// and str0m (ice-lite) answers them there; but it keeps sending to the old address as long
    /// as that pair lives (15 s without a check), because the old pair — a host or server
    /// reflexive candidate of the peer's SDP — has a higher priority than the peer-reflexive one
    /// the new address makes. Media to the peer would stop for those 15 s.
    ///
    /// So when a datagram comes from `new`, the last binding request str0m answered came from
    /// `new` too (it carried the leg's credentials, so `new` is the peer's own), and nothing at
    /// all came from the address the leg sends to (`old`) for [`PATH_STALE`], the peer's
    /// candidates at `old` are invalidated:
    /// str0m drops their pairs and sends to the best live one, `new`'s, from its next timeout
    /// (given at once here). A peer still at `old` sends something (media, RTCP or consent
    /// checks) well within PATH_STALE and keeps its path.
    fn follow_moved_peer(&mut self, now: Instant, key: PeerKey, old: SocketAddr, new: SocketAddr) {
        let Some(leg) = self.peers.get_mut(&key.uid).and_then(|p| p.leg(key.leg)) else { return };
        if leg.answered != Some(new) {
            return;
        }
        let mut gone: Vec<Candidate> = leg.remote_candidates.iter().filter(|c| c.addr() == old).cloned().collect();
        if let Ok(c) = Candidate::host(old, "udp") {
            gone.push(c);
        }
        // The form str0m gives a peer-reflexive candidate it learnt from a binding request.
        gone.push(Candidate::from_parts(
            String::new(),
            1,
            Protocol::Udp,
            0,
            old,
            CandidateKind::PeerReflexive,
            None,
            None,
            None,
        ));
        let mut any = false;
        for c in &gone {
            any |= leg.rtc.direct_api().invalidate_candidate(c);
        }
        tracing::debug!(uid = key.uid, leg = ?key.leg, %old, %new, invalidated = any, "peer moved");
        leg.path = Some((new, now));
        let _ = leg.rtc.handle_input(RtcInput::Timeout(now));
        self.drain(now, key);
    }

    pub(super) fn timeouts(&mut self, now: Instant) {
        self.publish_timeouts(now);
        self.room.handle_timeout(now);
        self.talk.handle_timeout(now);
        self.talk_events();
        if now.saturating_duration_since(self.last_tick) >= TICK {
            self.last_tick = now;
            self.liveness(now);
            self.update_estimates(now);
            self.select_layers(now, None);
        }
        self.room_events(now);
    }

    /// Hands `now` to every publish leg whose timeout is due and marks it for draining
    /// (subscribe legs are served in the egress phase of the flush that follows).
    fn publish_timeouts(&mut self, now: Instant) {
        for p in self.peers.values_mut() {
            let Some(leg) = p.publish.as_mut() else { continue };
            if leg.next_timeout <= now {
                let _ = leg.rtc.handle_input(RtcInput::Timeout(now));
                mark_dirty(&mut self.dirty, leg, PeerKey { uid: p.uid, leg: Leg::Publish });
            }
        }
    }

    /// Removes participants whose peer connections went silent or never connected.
    fn liveness(&mut self, now: Instant) {
        let silent = self.cfg.peer_timeout;
        let connect = self.cfg.connect_timeout;
        let lost: Vec<i64> = self
            .peers
            .values()
            .filter(|p| {
                [&p.publish, &p.subscribe].into_iter().flatten().any(|l| {
                    if l.connected {
                        now.saturating_duration_since(l.last_rx) > silent
                    } else {
                        now.saturating_duration_since(l.created) > connect
                    }
                })
            })
            .map(|p| p.uid)
            .collect();
        for uid in lost {
            tracing::debug!(gid = self.cfg.gid, uid, "peer timed out");
            let _ = self.room.leave(uid, LeaveReason::Lost);
        }
    }

    fn talk_events(&mut self) {
        let mut changed = false;
        while let Some(ev) = self.talk.poll_event() {
            let _ = self.room.set_talking(ev.who, ev.talking);
            changed = true;
        }
        if changed {
            let order = self.talk.active_speakers();
            if order != self.speakers {
                self.speakers = order;
                let addresses =
                    self.speakers.iter().filter_map(|u| self.peers.get(u).map(|p| p.address.clone())).collect();
                let listers: Vec<i64> =
                    self.peers.keys().copied().filter(|u| self.room.permissions(*u).is_some_and(|p| p.list)).collect();
                self.send(&listers, &CallEvent::Speakers { order: addresses });
            }
        }
    }

    /// Drains every leg touched since the last flush, until no more work appears: the publish
    /// legs and the forwarding on this thread, then the subscribe legs in parts (`egress`), then
    /// what those asked for (keyframe requests reach publish legs).
    pub(super) fn flush(&mut self, now: Instant) {
        self.settle(now);
        // Each pass serves what the last one's subscribers asked for (keyframe requests, a
        // connection up). Usually the second finds nothing; a leg still pacing after
        // IMMEDIATE_ROUNDS in every pass waits for the next wake-up.
        for _ in 0..3 {
            if !self.egress(now) {
                break;
            }
            self.settle(now);
        }
        if self.recording.is_some() {
            self.record_sync(now);
        }
        self.room_events(now);
        let (packets, bytes) = std::mem::take(&mut self.forwarded);
        if packets > 0 {
            let m = crate::metrics::metrics();
            m.forwarded_packets.inc_by(packets);
            m.forwarded_bytes.inc_by(bytes);
        }
    }

    /// The serial phase: drains the listed publish legs, forwards what they received and handles
    /// the work found, until none is left. Subscribe legs stay marked for `egress`.
    fn settle(&mut self, now: Instant) {
        let publish_dirty = |d: &[PeerKey]| d.iter().any(|k| k.leg == Leg::Publish);
        while publish_dirty(&self.dirty) || !self.work.is_empty() || !self.rtp.is_empty() {
            // In place (draining a leg marks none): the subscribe keys stay listed.
            let mut i = 0;
            while i < self.dirty.len() {
                if self.dirty[i].leg == Leg::Publish {
                    let key = self.dirty.swap_remove(i);
                    self.drain(now, key);
                } else {
                    i += 1;
                }
            }
            let mut rtp = std::mem::replace(&mut self.rtp, std::mem::take(&mut self.rtp_spare));
            for (uid, pkt) in rtp.drain(..) {
                self.forward(uid, pkt);
            }
            self.rtp_spare = rtp;
            let work = std::mem::take(&mut self.work);
            for w in work {
                match w {
                    Work::Keyframe(uid, mid) => self.subscriber_keyframe(now, uid, mid),
                    Work::SubscriberUp(uid) => self.subscriber_up(now, uid),
                    Work::Lost(uid) => {
                        let _ = self.room.leave(uid, LeaveReason::Lost);
                    }
                    Work::SenderReport(uid, fb) => self.record_sender_report(uid, fb),
                }
            }
        }
    }

    /// The egress phase (see `egress`): runs every subscribe leg that was written to or whose
    /// timer is due, in the parts the runner asks for. Returns whether it ran any.
    fn egress(&mut self, now: Instant) -> bool {
        let due = now + PACER_STEP;
        let mut legs = Vec::new();
        let mut still_held = std::mem::take(&mut self.held_spare);
        for p in self.peers.values_mut() {
            let Some(leg) = p.subscribe.as_mut() else { continue };
            let held = leg.held.is_some_and(|t| t > now);
            if (leg.dirty && !held) || leg.next_timeout <= due {
                legs.push(SubLeg { uid: p.uid, leg, downlink: &mut p.downlink });
            } else if leg.dirty {
                still_held.push(PeerKey { uid: p.uid, leg: Leg::Subscribe });
            }
        }
        // Every marked subscribe leg is in `legs` or still held: the list keeps publish legs and
        // those.
        self.dirty.retain(|k| k.leg == Leg::Publish);
        self.dirty.append(&mut still_held);
        self.held_spare = still_held;
        if legs.is_empty() {
            return false;
        }
        let n = self.egress.parts(legs.len()).clamp(1, legs.len());
        let per_part = legs.len().div_ceil(n);
        let mut parts = Vec::with_capacity(n);
        let mut legs = legs.into_iter();
        while legs.len() > 0 {
            let mut transmits = self.spare_transmits.pop().unwrap_or_default();
            transmits.clear();
            parts.push(EgressPart { legs: legs.by_ref().take(per_part).collect(), transmits, work: Vec::new() });
        }
        self.egress.run(now, &mut parts);
        for part in parts {
            let EgressPart { mut transmits, work, .. } = part;
            for (peer, transmit) in transmits.drain(..) {
                self.out.push_back(Output::Transmit { peer, transmit });
            }
            self.spare_transmits.push(transmits);
            self.work.extend(work);
        }
        true
    }

    fn drain(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key.uid) else { return };
        let leg = match key.leg {
            Leg::Publish => peer.publish.as_mut(),
            Leg::Subscribe => peer.subscribe.as_mut(),
        };
        let Some(leg) = leg else { return };
        let mut to = ToEngine { out: &mut self.out, work: &mut self.work, rtp: &mut self.rtp };
        drain_leg(now, key, leg, &mut peer.downlink, self.recording.is_some(), &mut to);
    }

    /// Moves every subscriber's downlink estimate on (see `chorus_sfu::downlink`).
    fn update_estimates(&mut self, now: Instant) {
        for p in self.peers.values_mut().filter(|p| p.subscribe.is_some()) {
            let bwe = p.downlink.update(now);
            if bwe.abs_diff(p.bwe_bps) > p.bwe_bps / 10 {
                tracing::trace!(uid = p.uid, from = p.bwe_bps, to = bwe, source = ?p.downlink.source(now), "estimate");
            }
            p.bwe_bps = bwe;
        }
    }

    /// Forwards one RTP packet from `uid`'s publish leg to the subscribers of its track.
    fn forward(&mut self, uid: i64, pkt: RtpPacket) {
        let now = pkt.timestamp;
        let ssrc = *pkt.header.ssrc;
        let Some(peer) = self.peers.get_mut(&uid) else { return };
        let SsrcRoute { track: ti, layer } = match peer.ssrcs.get(&ssrc) {
            Some(&v) => v,
            None => {
                let Some(leg) = peer.publish.as_mut() else { return };
                let mut api = leg.rtc.direct_api();
                let Some(rx) = api.stream_rx(&pkt.header.ssrc) else { return };
                let (mid, rid) = (rx.mid(), rx.rid());
                let Some(ti) = peer.tracks.iter().position(|t| t.mid == mid) else { return };
                let t = &peer.tracks[ti];
                let index = match rid {
                    Some(rid) => match t.rids.iter().position(|r| *r == rid) {
                        Some(i) => i,
                        None => return, // a layer nobody announced
                    },
                    None => 0,
                };
                let Some(layer) = Layer::new(index as u8) else { return };
                let route = SsrcRoute { track: ti, layer };
                peer.ssrcs.insert(ssrc, route);
                route
            }
        };
        let pt = *pkt.header.payload_type;
        let codec = match peer.tracks[ti].codecs.iter().find(|(p, _)| *p == pt) {
            Some(&(_, c)) => c,
            None => {
                let Some(leg) = peer.publish.as_ref() else { return };
                let c = leg
                    .rtc
                    .codec_config()
                    .find(|p| *p.pt() == pt)
                    .map(|p| sfu_codec(p.spec().codec))
                    .unwrap_or(Codec::Other);
                peer.tracks[ti].codecs.push((pt, c));
                c
            }
        };
        let track = &mut peer.tracks[ti];
        let (sid, kind) = (track.sid, track.kind);
        let info = PacketInfo {
            ssrc,
            seq: pkt.header.sequence_number,
            timestamp: pkt.header.timestamp,
            marker: pkt.header.marker,
            payload_len: pkt.payload.len(),
            keyframe: kind == TrackKind::Video && codec::is_keyframe_start(codec, &pkt.payload),
            layer,
        };
        track.meters[layer.index()].add(now, pkt.payload.len());
        if info.keyframe {
            tracing::trace!(uid, sid, layer = layer.index(), "keyframe from the publisher");
            track.throttle.on_keyframe(layer);
        }
        if kind == TrackKind::Audio {
            if let Some(level) = pkt.header.ext_vals.audio_level {
                self.talk.on_level(now, uid, level.unsigned_abs().min(127));
            }
        }
        let mut subs = std::mem::take(&mut self.peers.get_mut(&uid).expect("present").tracks[ti].subscribers);
        let mut keyframe_for = [false; Layer::COUNT];
        for f in subs.iter_mut() {
            // A layer this forwarder neither sends nor waits for is dropped by it unchanged (see
            // `chorus_sfu::switch::LayerSwitcher::gate`): skip it before the lookups below, which
            // a live audience's other layers (most of its viewers) would pay per packet.
            if f.fwd.current_layer() != Some(layer) && f.fwd.target_layer() != Some(layer) {
                continue;
            }
            if !self.room.forward_allowed(uid, sid, f.subscriber, kind) {
                continue;
            }
            // Forwarding starts only once the subscriber can receive: its first packet must be
            // the keyframe the forwarder waits for, not one lost before DTLS was up.
            let Some(sub) = self.peers.get_mut(&f.subscriber) else { continue };
            let Some(leg) = sub.subscribe.as_mut() else { continue };
            let Some(mid) = f.mid else { continue };
            if !leg.connected {
                continue;
            }
            // The subscriber's payload type, looked up before the stream is borrowed (once per
            // publisher payload type; remembered when a packet goes out).
            let cached = f.pts.iter().find(|(p, _)| *p == pt).map(|&(_, o)| o);
            let out_pt = cached.or_else(|| {
                leg.rtc
                    .codec_config()
                    .find(|p| sfu_codec(p.spec().codec) == codec && codec != Codec::Other)
                    .map(|p| *p.pt())
            });
            let mut api = leg.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else { continue };
            let was = f.fwd.current_layer();
            let decision = f.fwd.on_packet(now, &info);
            if f.fwd.current_layer() != was {
                let layer = f.fwd.current_layer().map(Layer::index);
                tracing::trace!(uid, sid, subscriber = f.subscriber, ?layer, "forwarded layer");
            }
            if let Some(l) = f.fwd.poll_keyframe_request(now) {
                tracing::trace!(
                    uid,
                    sid,
                    subscriber = f.subscriber,
                    layer = l.index(),
                    "the forwarder waits for a keyframe"
                );
                keyframe_for[l.index()] = true;
            }
            let Decision::Forward { seq, ts, .. } = decision else { continue };
            let Some(out_pt) = out_pt else { continue };
            if cached.is_none() {
                f.pts.push((pt, out_pt));
                // Forwarded media leaves at once rather than through str0m's pacer: the pacer
                // holds up to 2 s of what the estimate cannot carry, and a subscriber whose link
                // shrank would get the old layer seconds late and freeze on its losses. The
                // layer selection is what fits the stream to the estimate (probes still pace).
                tx.set_unpaced(true);
                tx.set_rtx_cache(RTX_CACHE.0, RTX_CACHE.1, Some(RTX_RATIO_CAP));
            }
            let ext_vals = ExtensionValues {
                audio_level: pkt.header.ext_vals.audio_level,
                voice_activity: pkt.header.ext_vals.voice_activity,
                video_orientation: pkt.header.ext_vals.video_orientation,
                ..Default::default()
            };
            tx.write_rtp(
                RtpWrite::new(out_pt.into(), SeqNo::from(seq), ts, now, pkt.payload.clone())
                    .marker(pkt.header.marker)
                    .ext_vals(ext_vals)
                    .nackable(kind == TrackKind::Video),
            );
            if kind == TrackKind::Video {
                leg.video_sent.add(now, pkt.payload.len());
            }
            self.forwarded.0 += 1;
            self.forwarded.1 += pkt.payload.len() as u64;
            let key = PeerKey { uid: f.subscriber, leg: Leg::Subscribe };
            if kind == TrackKind::Video && !pkt.header.marker {
                hold(&mut self.dirty, leg, key, now + FRAME_HOLD);
            } else {
                mark_dirty(&mut self.dirty, leg, key);
            }
        }
        let peer = self.peers.get_mut(&uid).expect("present");
        peer.tracks[ti].subscribers = subs;
        // The recording's copy (only while recording): the payload moves, nothing is copied.
        if let Some(rec) = peer.tracks[ti].rec.as_mut() {
            let decision = if self.room.record_allowed(uid, sid, kind) {
                rec.on_packet(now, &info)
            } else {
                Decision::Drop(chorus_sfu::DropReason::Paused)
            };
            let _ = rec.poll_keyframe_request(now);
            // While it waits for its layer's keyframe, the recording asks on every packet (each
            // request still passes the track's throttle) and its first request passes even that:
            // the file starts at that keyframe, so its wait is the recording's lost start.
            let waiting = rec.target_layer().filter(|t| rec.current_layer() != Some(*t));
            let first = waiting.is_some() && !std::mem::replace(&mut peer.tracks[ti].rec_asked, true);
            if let Some(l) = waiting {
                keyframe_for[l.index()] = true;
                if first {
                    peer.tracks[ti].throttle = chorus_sfu::switch::KeyframeThrottle::default();
                }
            }
            if let Decision::Forward { seq, ts, .. } = decision {
                let pkt = RecPacket {
                    ssrc,
                    orig_ts: pkt.header.timestamp,
                    seq,
                    ts,
                    marker: pkt.header.marker,
                    payload: pkt.payload,
                    at: now,
                };
                let out = RecordOut::Packet { uid, sid, kind: kind_of(kind), pkt };
                self.out.push_back(Output::Record(Box::new(out)));
            }
        }
        for (i, wanted) in keyframe_for.iter().enumerate() {
            if *wanted {
                self.request_keyframe(now, uid, ti, Layer::new(i as u8).expect("index below COUNT"));
            }
        }
    }

    /// Asks the publisher for a keyframe on one layer, within the track's throttle.
    pub(super) fn request_keyframe(&mut self, now: Instant, uid: i64, ti: usize, layer: Layer) {
        let Some(peer) = self.peers.get_mut(&uid) else { return };
        let Some(t) = peer.tracks.get_mut(ti) else { return };
        if !t.throttle.allow(now, layer) {
            tracing::trace!(uid, sid = t.sid, layer = layer.index(), "keyframe request coalesced");
            return;
        }
        let (mid, rid) = (t.mid, t.rids.get(layer.index()).copied());
        let Some(leg) = peer.publish.as_mut() else { return };
        let mut api = leg.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
            tracing::trace!(uid, sid = t.sid, layer = layer.index(), "keyframe request (PLI)");
            rx.request_keyframe(KeyframeRequestKind::Pli);
            crate::metrics::metrics().keyframe_requests.inc();
            mark_dirty(&mut self.dirty, leg, PeerKey { uid, leg: Leg::Publish });
        }
    }

    /// A subscriber's connection is up: each of its video forwarders waiting for a first keyframe
    /// asks now, and its estimate starts to settle (see `chorus_sfu::downlink`). Asking at the
    /// publisher's next packet instead (as [`Engine::forward`] does) costs up to a frame interval
    /// more before the keyframe comes.
    fn subscriber_up(&mut self, now: Instant, uid: i64) {
        if let Some(p) = self.peers.get_mut(&uid) {
            p.downlink.on_connected(now);
        }
        let mut asks = Vec::new();
        for p in self.peers.values_mut() {
            for (ti, t) in p.tracks.iter_mut().enumerate() {
                if !self.room.forward_allowed(p.uid, t.sid, uid, t.kind) {
                    continue;
                }
                for f in t.subscribers.iter_mut().filter(|f| f.subscriber == uid && f.mid.is_some()) {
                    if let Some(layer) = f.fwd.poll_keyframe_request(now) {
                        tracing::trace!(
                            uid = p.uid,
                            sid = t.sid,
                            subscriber = uid,
                            layer = layer.index(),
                            "subscriber up"
                        );
                        asks.push((p.uid, ti, layer));
                    }
                }
            }
        }
        for (publisher, ti, layer) in asks {
            self.request_keyframe(now, publisher, ti, layer);
        }
    }

    /// A subscriber's decoder wants a keyframe: ask the publisher for one on the forwarded layer.
    fn subscriber_keyframe(&mut self, now: Instant, uid: i64, mid: Mid) {
        let found = self.peers.values().find_map(|p| {
            p.tracks.iter().enumerate().find_map(|(ti, t)| {
                t.subscribers
                    .iter()
                    .find(|f| f.subscriber == uid && f.mid == Some(mid))
                    .map(|f| (p.uid, ti, f.fwd.current_layer().or(f.fwd.target_layer()).unwrap_or(Layer::LOW)))
            })
        });
        if let Some((publisher, ti, layer)) = found {
            self.request_keyframe(now, publisher, ti, layer);
        }
    }

    /// Creates or updates the forwarders of a subscription. Returns whether media lines were
    /// added (so the subscribe leg must be offered anew).
    pub(super) fn subscribe_media(
        &mut self,
        now: Instant,
        subscriber: i64,
        stream: StreamId<i64>,
        sub: Subscription,
    ) -> bool {
        let mut added = false;
        let mut removed = Vec::new();
        let Some(p) = self.peers.get_mut(&stream.publisher) else { return false };
        for t in p.tracks.iter_mut().filter(|t| t.sid == stream.sid) {
            let wanted = sub.wants(t.kind);
            let existing = t.subscribers.iter().position(|f| f.subscriber == subscriber);
            match (existing, wanted) {
                (Some(i), true) => t.subscribers[i].wanted_height = sub.wanted_height,
                (Some(i), false) => removed.extend(SpareLine::of(t.subscribers.remove(i), t.kind, t.codec)),
                (None, true) => {
                    let ssrc = rand::Rng::gen(&mut self.rng);
                    let fwd = match t.kind {
                        TrackKind::Audio => Forwarder::audio(ssrc),
                        TrackKind::Video => Forwarder::video(ssrc),
                    };
                    t.subscribers.push(Fwd {
                        subscriber,
                        mid: None,
                        fwd,
                        selector: LayerSelector::default(),
                        wanted_height: sub.wanted_height,
                        pts: Vec::new(),
                        told_layer: None,
                    });
                    added = true;
                }
                (None, false) => {}
            }
        }
        if let Some(s) = self.peers.get_mut(&subscriber) {
            if !removed.is_empty() {
                added = true;
            }
            s.to_stop.extend(removed);
        }
        self.select_layers(now, Some(subscriber));
        added
    }

    pub(super) fn unsubscribe_media(&mut self, subscriber: i64, stream: StreamId<i64>) {
        let mut removed = Vec::new();
        if let Some(p) = self.peers.get_mut(&stream.publisher) {
            for t in p.tracks.iter_mut().filter(|t| t.sid == stream.sid) {
                if let Some(i) = t.subscribers.iter().position(|f| f.subscriber == subscriber) {
                    removed.extend(SpareLine::of(t.subscribers.remove(i), t.kind, t.codec));
                }
            }
        }
        if let Some(s) = self.peers.get_mut(&subscriber) {
            s.to_stop.extend(removed);
        }
    }

    /// Chooses every video forwarder's layer (of one subscriber, or all), tells subscribers which
    /// layer they get and publishers which layers anyone watches.
    pub(super) fn select_layers(&mut self, now: Instant, only: Option<i64>) {
        let max_height = self.room.settings().max_height;
        // Each subscriber's video budget, per track: screens first, then cameras in the order
        // published (see `select::allocate`). Audio comes off the top.
        let mut wanted: HashMap<i64, Vec<Wanted>> = HashMap::new();
        for p in self.peers.values() {
            for (ti, t) in p.tracks.iter().enumerate().filter(|(_, t)| t.kind == TrackKind::Video) {
                let (infos, n) = t.layer_infos(now);
                for f in &t.subscribers {
                    let current = f.fwd.current_layer().filter(|l| l.index() < n);
                    let rate = TrackRate {
                        lowest_bps: infos[0].bitrate_bps,
                        current_bps: current.map_or(0, |l| infos[l.index()].bitrate_bps),
                    };
                    wanted.entry(f.subscriber).or_default().push(Wanted {
                        publisher: p.uid,
                        track: ti,
                        screen: t.screen,
                        rate,
                    });
                }
            }
        }
        let mut budgets: HashMap<FwdKey, u64> = HashMap::new();
        for (subscriber, mut tracks) in wanted {
            tracks.sort_by_key(|w| (!w.screen, w.publisher, w.track));
            let Some(peer) = self.peers.get(&subscriber) else { continue };
            let mut total = peer.bwe_bps.saturating_sub(select::AUDIO_BPS);
            if peer.downlink.provisional(now, peer.bwe_bps) {
                // The start rate's guess pauses nothing: every track gets its lowest layer.
                total = total.max(tracks.iter().map(|w| w.rate.lowest_bps).sum());
            }
            let sent = peer.subscribe.as_ref().map_or(0, |l| l.video_sent.sending_bps(now));
            let rates: Vec<TrackRate> = tracks.iter().map(|w| w.rate).collect();
            for (w, budget) in tracks.into_iter().zip(select::allocate(total, sent, &rates)) {
                budgets.insert(FwdKey { subscriber, publisher: w.publisher, track: w.track }, budget);
            }
        }
        let mut tell_layer: Vec<(i64, CallEvent)> = Vec::new();
        let mut tell_active: Vec<(i64, CallEvent)> = Vec::new();
        let mut desired: HashMap<i64, u64> = HashMap::new();
        // Per subscriber: the video it is being sent, and what its paused tracks need to resume.
        let mut needs: HashMap<i64, (u64, u64)> = HashMap::new();
        for p in self.peers.values_mut() {
            let publisher = p.uid;
            for (ti, t) in p.tracks.iter_mut().enumerate().filter(|(_, t)| t.kind == TrackKind::Video) {
                let (infos, n) = t.layer_infos(now);
                let layers = &infos[..n];
                let mut active = vec![false; n];
                for f in t.subscribers.iter_mut() {
                    if only.is_none_or(|o| o == f.subscriber) {
                        let key = FwdKey { subscriber: f.subscriber, publisher, track: ti };
                        let budget = budgets.get(&key).copied().unwrap_or(0);
                        let available_bps = select::available_bps(budget, layers);
                        let demand =
                            Demand { wanted_height: f.wanted_height, room_max_height: max_height, available_bps };
                        let target = f.selector.select(now, layers, demand);
                        if f.fwd.target_layer() != target {
                            tracing::trace!(
                                publisher,
                                sid = t.sid,
                                subscriber = f.subscriber,
                                from = ?f.fwd.target_layer(),
                                to = ?target,
                                budget,
                                available_bps,
                                ?layers,
                                "layer target"
                            );
                            if f.fwd.target_layer().is_some() || f.fwd.current_layer().is_some() {
                                crate::metrics::metrics().layer_switches.inc();
                            }
                            f.fwd.set_target(target);
                        }
                    }
                    let target = f.fwd.target_layer();
                    let current = f.fwd.current_layer();
                    for l in [target, current].into_iter().flatten() {
                        if l.index() < n {
                            active[l.index()] = true;
                        }
                    }
                    let best = select::best_bps(layers, f.wanted_height, max_height);
                    *desired.entry(f.subscriber).or_default() += best + select::AUDIO_BPS;
                    let sending =
                        current.or(target).filter(|l| l.index() < n).map_or(0, |l| layers[l.index()].bitrate_bps);
                    let need = needs.entry(f.subscriber).or_default();
                    need.0 += sending;
                    need.1 += f.selector.resume_bps(layers).unwrap_or(0);
                    let shown = current.or(target);
                    if f.told_layer != Some(shown) && current.is_some() {
                        f.told_layer = Some(shown);
                        let ev = CallEvent::Layer {
                            address: p.address.clone(),
                            sid: t.sid,
                            layer: shown.map(|l| l.index() as u8),
                        };
                        tell_layer.push((f.subscriber, ev));
                    }
                }
                // The recording takes the best layer being sent, at once (its file starts on that
                // layer's next keyframe), and asks for the best one the publisher can send (the
                // top one, resumed for it if nobody watched it, unless `presence` says the
                // publisher leaves it out), to which it switches when it comes. (A layer that
                // arrives is always available: the best arriving is never above `best`.)
                let sending = t.best_sending(now, n);
                if let Some(f) = t.rec.as_mut() {
                    let best = (0..n).rev().find(|&l| layers[l].active).unwrap_or(n - 1);
                    let want = sending.unwrap_or(best);
                    active[best] = true;
                    let want = Layer::new(want as u8);
                    // Not before the first layer started: that would put off the file's start.
                    if want.is_some() && f.target_layer() != want && f.current_layer().is_some() {
                        f.set_target(want);
                    }
                    for l in [f.target_layer(), f.current_layer()].into_iter().flatten() {
                        if l.index() < n {
                            active[l.index()] = true;
                        }
                    }
                }
                // With any subscriber the lowest layer keeps flowing, even if every subscriber is
                // paused for bandwidth: its measured rate is what tells when it fits again (a
                // paused layer only has a nominal rate), and resuming needs no round trip.
                if !t.subscribers.is_empty() {
                    active[0] = true;
                }
                if t.told_active != active {
                    t.presence.on_told(now, &active, &t.meters);
                    t.told_active = active.clone();
                    tell_active.push((p.uid, CallEvent::Layers { sid: t.sid, active }));
                }
            }
        }
        for (uid, bps) in desired {
            let Some(p) = self.peers.get_mut(&uid) else { continue };
            // Room above what the best layers need, so the climb without feedback clears the
            // selector's margin for the top layer.
            p.downlink.set_ceiling(bps + bps / 4);
            let (sending, resume) = needs.get(&uid).copied().unwrap_or_default();
            let needed = select::needed_bps(sending, resume);
            let starved = needed.is_some_and(|n| p.bwe_bps < n);
            let restart = p.downlink.poll_restart(now, starved);
            if let Some(leg) = p.subscribe.as_mut() {
                let desired = bps.max(needed.unwrap_or(0));
                leg.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
                if restart {
                    // A fresh estimator probes at once (see `chorus_sfu::downlink`).
                    tracing::debug!(
                        uid,
                        bwe = p.bwe_bps,
                        ?needed,
                        "estimator restarted: paused video waits for bandwidth"
                    );
                    leg.rtc.bwe().reset(Bitrate::bps(p.bwe_bps));
                }
            }
        }
        for (uid, ev) in tell_layer.into_iter().chain(tell_active) {
            self.send(&[uid], &ev);
        }
    }
}

/// Where [`drain_leg`] puts what a leg produced: the engine's queues while it drains a leg
/// itself, an egress part's own while the part runs on a worker (`egress`).
pub(super) trait Drained {
    fn transmit(&mut self, key: PeerKey, t: Transmit);
    fn work(&mut self, w: Work);
    /// An RTP packet a leg received (only publish legs' are forwarded).
    fn rtp(&mut self, uid: i64, pkt: RtpPacket);
}

struct ToEngine<'a> {
    out: &'a mut std::collections::VecDeque<Output>,
    work: &'a mut Vec<Work>,
    rtp: &'a mut Vec<(i64, RtpPacket)>,
}

impl Drained for ToEngine<'_> {
    fn transmit(&mut self, key: PeerKey, transmit: Transmit) {
        self.out.push_back(Output::Transmit { peer: key, transmit });
    }
    fn work(&mut self, w: Work) {
        self.work.push(w);
    }
    fn rtp(&mut self, uid: i64, pkt: RtpPacket) {
        self.rtp.push((uid, pkt));
    }
}

/// Marks subscribe leg `leg` (key `key`) to be drained at a flush no later than `until`, unless
/// something else marks it first (see [`FRAME_HOLD`]). A leg already marked keeps its mark: an
/// earlier hold's end, or none.
fn hold(dirty: &mut Vec<PeerKey>, leg: &mut PeerLeg, key: PeerKey, until: Instant) {
    if !leg.dirty {
        leg.dirty = true;
        leg.held = Some(until);
        dirty.push(key);
    }
}

/// Polls leg `key` until it waits for time: datagrams, events (the downlink estimate of a
/// subscribe leg is `downlink`), work for the engine. `recording`: sender reports of publish legs
/// are wanted.
pub(super) fn drain_leg(
    now: Instant,
    key: PeerKey,
    leg: &mut PeerLeg,
    downlink: &mut DownlinkEstimate,
    recording: bool,
    to: &mut impl Drained,
) {
    leg.dirty = false;
    leg.held = None;
    loop {
        match leg.rtc.poll_output() {
            Ok(RtcOutput::Timeout(t)) => {
                leg.next_timeout = t.max(now);
                break;
            }
            Ok(RtcOutput::Transmit(t)) => {
                if t.proto == Protocol::Udp {
                    // The path is where media, RTCP and DTLS go (str0m's selected pair);
                    // STUN answers go wherever the checks came from.
                    let stun = t.contents.first().is_some_and(|b| *b < 4);
                    if !stun && leg.path.is_none_or(|(to, _)| to != t.destination) {
                        leg.path = Some((t.destination, now));
                    }
                    if is_binding_success(&t.contents) {
                        leg.answered = Some(t.destination);
                    }
                }
                to.transmit(key, t)
            }
            Ok(RtcOutput::Event(e)) => match e {
                Event::Connected => {
                    leg.connected = true;
                    if key.leg == Leg::Subscribe {
                        to.work(Work::SubscriberUp(key.uid));
                    }
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    tracing::debug!(uid = key.uid, leg = ?key.leg, "ICE disconnected");
                }
                Event::RtpPacket(pkt) => to.rtp(key.uid, pkt),
                Event::KeyframeRequest(r) => to.work(Work::Keyframe(key.uid, r.mid)),
                // Sender reports place a recorded track's media on the publisher's clock.
                Event::SenderFeedback(fb) if recording && key.leg == Leg::Publish => {
                    to.work(Work::SenderReport(key.uid, fb));
                }
                // The send-side estimate counts while TWCC feedback is seen arriving (the
                // stats below): without feedback it repeats the start rate forever.
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate: e, .. }) => downlink.on_twcc(e.as_u64()),
                Event::EgressBitrateEstimate(BweKind::Remb { estimate: e, .. }) => {
                    downlink.on_remb(now, e.as_u64());
                }
                Event::PeerStats(s) if s.egress_loss_fraction.is_some() => downlink.on_twcc_feedback(now),
                Event::MediaEgressStats(s) => {
                    let m = crate::metrics::metrics();
                    if let Some(loss) = s.loss {
                        downlink.on_loss(loss);
                        m.subscriber_loss.observe(f64::from(loss));
                    }
                    let seen = match leg.nacks_seen.iter_mut().find(|(mid, rid, _)| *mid == s.mid && *rid == s.rid) {
                        Some((_, _, n)) => n,
                        None => {
                            leg.nacks_seen.push((s.mid, s.rid, 0));
                            &mut leg.nacks_seen.last_mut().expect("just pushed").2
                        }
                    };
                    // A count below the last one is a new stream on the line, counting from 0.
                    m.nacks_received.inc_by(if s.nacks >= *seen { s.nacks - *seen } else { s.nacks });
                    *seen = s.nacks;
                }
                _ => {}
            },
            Err(e) => {
                tracing::debug!(uid = key.uid, error = %e, "peer connection failed");
                to.work(Work::Lost(key.uid));
                break;
            }
        }
    }
    if !leg.rtc.is_alive() {
        tracing::debug!(uid = key.uid, leg = ?key.leg, "peer connection closed");
        to.work(Work::Lost(key.uid));
    }
}
