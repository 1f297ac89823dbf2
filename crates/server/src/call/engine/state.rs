//! What the engine holds per participant, peer connection, published track and forwarded copy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use str0m::net::{Protocol, Receive};

use chorus_sfu::codec::Codec;
use chorus_sfu::downlink::DownlinkEstimate;
use chorus_sfu::select::{LayerInfo, LayerPresence, LayerSelector};
use chorus_sfu::switch::KeyframeThrottle;
use chorus_sfu::Meter;
use chorus_sfu::{Forwarder, Layer, TrackKind};
use str0m::change::SdpPendingOffer;
use str0m::media::{Mid, Rid};
use str0m::{Candidate, Rtc};

use super::{Leg, SinkId};

/// One str0m peer connection of a participant.
pub(super) struct PeerLeg {
    pub rtc: Rtc,
    pub ufrag: String,
    pub created: Instant,
    pub next_timeout: Instant,
    pub last_rx: Instant,
    pub connected: bool,
    /// Queued to be drained after the current batch (then its key is in `Engine::dirty`).
    pub dirty: bool,
    /// A dirty subscribe leg holds only video packets whose frame has not ended yet: it may wait
    /// for the rest of the frame until this instant (see `media::FRAME_HOLD`). `None`: run it in
    /// the next flush.
    pub held: Option<Instant>,
    /// Video payload forwarded on this leg (subscribe legs): the traffic its bandwidth estimate
    /// follows, against which a low estimate is judged (see `select::allocate`).
    pub video_sent: Meter,
    /// NACKs received so far per stream sent (str0m counts them per stream; the metric takes
    /// the differences).
    pub nacks_seen: Vec<(Mid, Option<Rid>, u64)>,
    /// The peer's address this leg sends to (str0m's selected pair) and when a datagram last
    /// came from it: see `Engine::follow_moved_peer`.
    pub path: Option<(SocketAddr, Instant)>,
    /// The last STUN binding success response this leg sent went to this address (str0m answers
    /// only binding requests that carry the leg's credentials).
    pub answered: Option<SocketAddr>,
    /// ICE candidates of the peer's SDPs (offers and answers), to invalidate the one at an
    /// address the peer left. At most [`MAX_REMOTE_CANDIDATES`], the newest kept.
    pub remote_candidates: Vec<Candidate>,
    /// Datagrams received for this leg and not yet handed to it (subscribe legs: their feedback,
    /// handshakes and consent checks wait for the egress phase; see `Engine::datagram`).
    pub inbox: Vec<Inbound>,
}

/// Most datagrams a leg's inbox holds between two flushes; more are dropped (and counted as
/// `chorus_media_datagrams_dropped_in_total`). A flush follows every turn of the room's loop, so
/// only a peer that floods its connection reaches it.
pub(super) const INBOX_MAX: usize = 256;

/// A datagram waiting in a leg's inbox.
pub(super) struct Inbound {
    pub at: Instant,
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Bytes,
}

/// Most ICE candidates kept per leg from the peer's SDPs.
pub(super) const MAX_REMOTE_CANDIDATES: usize = 32;

impl PeerLeg {
    /// Hands the leg every datagram in its inbox, in the order they came.
    pub fn feed_inbox(&mut self, uid: i64) {
        for d in self.inbox.drain(..) {
            let Ok(contents) = d.contents.as_ref().try_into() else { continue };
            let input = str0m::Input::Receive(
                d.at,
                Receive { proto: d.proto, source: d.source, destination: d.destination, contents },
            );
            if let Err(e) = self.rtc.handle_input(input) {
                tracing::debug!(uid, error = %e, "peer input");
            }
        }
    }

    /// Remembers the ICE candidates of an SDP the peer sent (`a=candidate:` lines).
    pub fn note_remote_sdp(&mut self, sdp: &str) {
        for line in sdp.lines() {
            let Some(attr) = line.trim().strip_prefix("a=") else { continue };
            if !attr.starts_with("candidate:") {
                continue;
            }
            let Ok(c) = Candidate::from_sdp_string(attr) else { continue };
            if !self.remote_candidates.contains(&c) {
                self.remote_candidates.push(c);
            }
        }
        let extra = self.remote_candidates.len().saturating_sub(MAX_REMOTE_CANDIDATES);
        self.remote_candidates.drain(..extra);
    }
}

/// Where the packets of one received SSRC go: a track of the publisher, one of its layers.
#[derive(Debug, Clone, Copy)]
pub(super) struct SsrcRoute {
    /// Index in `Peer::tracks`.
    pub track: usize,
    pub layer: Layer,
}

/// A track a participant publishes (the audio or the video of one stream).
pub(super) struct PubTrack {
    pub sid: u32,
    pub kind: TrackKind,
    /// A shared screen: served first when a subscriber's bandwidth is short.
    pub screen: bool,
    pub mid: Mid,
    /// Simulcast RIDs, lowest first; empty for a single layer.
    pub rids: Vec<Rid>,
    /// Layers granted by the room.
    pub layers: u8,
    /// Height of the top layer.
    pub height: Option<u32>,
    /// The one codec the publisher sends (its `a=rtpmap` name; see `sdp::narrow_codecs`).
    pub codec: &'static str,
    pub meters: [Meter; Layer::COUNT],
    pub throttle: KeyframeThrottle,
    /// Payload type → codec, learned as packets arrive.
    pub codecs: Vec<(u8, Codec)>,
    pub subscribers: Vec<Fwd>,
    /// Layers anyone receives, as last told to the publisher.
    pub told_active: Vec<bool>,
    /// Which layers the publisher can be expected to send (it may leave some out).
    pub presence: LayerPresence,
    /// The recording's forwarder, while the call is recorded (see `record`).
    pub rec: Option<Forwarder>,
    /// The recording's first keyframe request was made (it skips the throttle; see `forward`).
    pub rec_asked: bool,
}

impl PubTrack {
    /// The layers this track offers now, lowest first, with their measured bitrates (a nominal
    /// one for a layer not being sent), and how many there are.
    pub fn layer_infos(&self, now: Instant) -> ([LayerInfo; Layer::COUNT], usize) {
        chorus_sfu::select::layer_infos(now, self.layers, self.height.unwrap_or(720), &self.meters, &self.presence)
    }

    /// The highest of the first `n` layers arriving now (what a recording starts on).
    pub fn best_sending(&self, now: Instant, n: usize) -> Option<usize> {
        (0..n).rev().find(|&l| self.meters[l].sending(now))
    }
}

/// One subscriber's copy of a published track.
pub(super) struct Fwd {
    pub subscriber: i64,
    /// The subscribe leg's media line carrying it, once offered.
    pub mid: Option<Mid>,
    pub fwd: Forwarder,
    pub selector: LayerSelector,
    pub wanted_height: Option<u32>,
    /// Publisher payload type → subscriber payload type.
    pub pts: Vec<(u8, u8)>,
    /// Layer last reported to the subscriber.
    pub told_layer: Option<Option<Layer>>,
}

pub(super) struct Peer {
    pub uid: i64,
    pub address: String,
    pub name: String,
    pub session: u64,
    /// The session's frame queue.
    pub sink: SinkId,
    /// Fell behind on its queue: leaves the call with reason `slow`, nothing more is queued.
    pub slow: bool,
    pub publish: Option<PeerLeg>,
    pub subscribe: Option<PeerLeg>,
    pub tracks: Vec<PubTrack>,
    pub ssrcs: HashMap<u32, SsrcRoute>,
    /// The subscribe leg's offer awaiting an answer.
    pub pending: Option<SdpPendingOffer>,
    /// Subscriptions changed while an offer was out: offer again after the answer.
    pub renegotiate: bool,
    /// The client asked for an ICE restart (`call_restart`): the next subscribe offer has new
    /// ICE credentials.
    pub ice_restart: bool,
    /// Media lines of the subscribe leg to make inactive at the next offer.
    pub to_stop: Vec<SpareLine>,
    /// Inactive media lines of the subscribe leg, oldest first, for reuse (`SPARE_LINES`).
    pub spare: Vec<SpareLine>,
    /// Counted in `chorus_call_participants` while in the room.
    pub _live: crate::metrics::Live,
    /// Downlink estimate of the subscribe leg, as layer selection uses it (from `downlink`).
    pub bwe_bps: u64,
    /// Where the subscribe leg's estimate comes from: TWCC, REMB or a loss-based climb.
    pub downlink: DownlinkEstimate,
}

impl Peer {
    pub fn leg(&mut self, leg: Leg) -> Option<&mut PeerLeg> {
        match leg {
            Leg::Publish => self.publish.as_mut(),
            Leg::Subscribe => self.subscribe.as_mut(),
        }
    }
}

/// A subscribe-leg media line no longer carrying anything, with the forwarder that last wrote to
/// it: a track put on the line later continues its sequence numbers and timestamps, so the
/// subscriber sees one RTP stream on the line's SSRC.
pub(super) struct SpareLine {
    pub mid: Mid,
    pub kind: TrackKind,
    /// The codec the line was negotiated for: only a track of that codec may take it again.
    pub codec: &'static str,
    pub fwd: Forwarder,
}

impl SpareLine {
    pub fn of(f: Fwd, kind: TrackKind, codec: &'static str) -> Option<SpareLine> {
        Some(SpareLine { mid: f.mid?, kind, codec, fwd: f.fwd })
    }
}
