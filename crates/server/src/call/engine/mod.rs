//! The call engine: one group's call as a sans-IO state machine.
//!
//! [`Engine`] owns everything a call needs, so nothing in it is shared or locked:
//! * the sans-IO [`Room`] — permissions, streams, subscriptions, mute, admin actions, duration —
//!   which answers each request and emits addressed events;
//! * per participant two str0m [`Rtc`](str0m::Rtc)s in RTP mode: the *publish* leg (the client
//!   offers; the server receives) and the *subscribe* leg (the server offers; the server sends,
//!   with TWCC bandwidth estimation);
//! * per published track, the [`Forwarder`](chorus_sfu::Forwarder) and
//!   [`LayerSelector`](chorus_sfu::select::LayerSelector) of each subscriber.
//!
//! **The drain contract** (str0m's). Everything the engine learns comes in through
//! [`Engine::handle_input`] with the time it happened; everything it wants done comes out of
//! [`Engine::poll_output`] as a value: a reply to a request, a frame for a session, a datagram to
//! send, a peer connection to route or forget, a webhook. After an input the caller polls until
//! it gets [`Output::Timeout`]: the instant at which it must give [`Input::Timeout`] if nothing
//! else happens first. Inputs may also come back to back (outputs queue until polled): the
//! timeout input is where the engine serves its timers and drains the peer connections the
//! inputs touched, so a caller gives a batch of datagrams, then one timeout input (with the
//! current time), then polls once — not after each datagram. Outputs are small values (the rare
//! large ones are boxed): a forwarded packet to 24 subscribers is 24 of them.
//!
//! The files are cut by concern: [`signal`] (join and removal, requests, publish, unpublish,
//! answer, negotiate), [`media`] (datagrams, drain, flush, forward, keyframes, layer selection, leg
//! timeouts, liveness), [`egress`] (the subscribe legs' half of a flush, in parts), [`wire`] (room events into frames, errors into wire codes), [`state`] (what
//! the engine holds per participant, leg and track). The task that drives it is
//! [`super::task`].
//!
//! **The forwarding path.** An RTP packet from a publish leg is looked up by SSRC (a small map,
//! filled from str0m's mid/rid on first sight), inspected for a keyframe start, metered per
//! layer, and offered to every subscriber's forwarder of that track. The room is asked
//! ([`Room::forward_allowed`]) before each copy: a member who may not publish, a muted track, or
//! a subscriber who may not receive is stopped here, whatever signaling said. A forwarded copy
//! shares the received payload (an `Arc<[u8]>`) and changes only header values; each
//! subscriber's str0m encrypts it into its own datagram. Outputs of every leg touched by a
//! batch are drained once the batch is done: publish legs on the caller's thread, subscribe legs
//! in the parts of the [`egress`] phase, which the driver's [`EgressRunner`] may run on several
//! threads (the room task runs one part per core).
//!
//! **Invariants.**
//! * The engine never reads the clock, touches a socket or a channel, or spawns: time comes in
//!   with each input, randomness (ICE credentials, SSRCs) from the seeded generator in
//!   [`EngineConfig`], and every effect leaves as an [`Output`] — or, for the datagrams of an
//!   egress part, goes to the [`EgressRunner`] the driver gave it. It imports nothing from tokio.
//! * A leg marked dirty is in `dirty`: whoever sets `PeerLeg::dirty` pushes its key (see
//!   `mark_dirty`), so a flush drains exactly the listed legs and never rescans every leg for
//!   that (its egress phase looks at every subscribe leg's timer, as the timeouts always did).
//! * A subscribe leg holding part of a frame (`PeerLeg::held`, see `media::FRAME_HOLD`) is
//!   marked dirty, and the engine's next [`Output::Timeout`] is no later than its hold's end.
//! * Within one flush each subscribe leg is in at most one egress part, and a part touches only
//!   its own legs (it holds `&mut` to them and nothing of the engine), so parts need no lock.
//! * A forwarding state (`Fwd`) exists exactly when the room holds the subscription: it is made
//!   on `SubscriptionAdded`, dropped on `SubscriptionRemoved`, with its track on
//!   `StreamUnpublished`, and with its subscriber when that one leaves.

mod dtls;
mod egress;
mod media;
mod record;
mod signal;
mod state;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus_proto::call::CallLeaveReason;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_sfu::talk::TalkDetector;
use chorus_sfu::{LeaveReason, Permissions, Room, RoomSettings};
use rand::rngs::StdRng;
use rand::SeedableRng;
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Transmit};
use str0m::rtp::RtpPacket;

use crate::bus::FrameText;
use crate::error::ApiError;
pub(crate) use egress::{EgressPart, EgressRunner, Inline, MIN_LEGS_PER_PART};
pub(crate) use record::{RecordBy, RecordOut};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use signal::{check_publish, leg_config, remote_sdp};
use state::Peer;

/// How often layers are re-selected and liveness checked.
const TICK: Duration = Duration::from_millis(250);

/// Which of a participant's two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Leg {
    /// What the participant sends (it offers).
    Publish,
    /// What the participant receives (the server offers).
    Subscribe,
}

/// One peer connection: the participant's user id and which leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PeerKey {
    pub uid: i64,
    pub leg: Leg,
}

/// Names one session's frame queue, chosen by the caller at join: frames for it come out as
/// [`Output::Frame`], and [`Output::Release`] says the engine is done with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SinkId(pub u64);

/// Names a request, chosen by the caller: its answer comes out keyed by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Token(pub u64);

/// What the engine is made with.
#[derive(Debug, Clone)]
pub(crate) struct EngineConfig {
    /// The group whose call this is.
    pub gid: i64,
    pub settings: RoomSettings,
    /// The UDP and ICE-TCP addresses the legs offer as candidates.
    pub udp: SocketAddr,
    pub tcp: Option<SocketAddr>,
    /// A subscribe leg's first bandwidth estimate.
    pub initial_bitrate_kbps: u64,
    /// A connected leg silent for this long is lost.
    pub peer_timeout: Duration,
    /// A leg not connected after this long is lost.
    pub connect_timeout: Duration,
    /// Seeds the generator of ICE credentials and SSRCs.
    pub seed: u64,
    /// A recording stops after this long (`recording_max_secs`).
    pub record_max: Duration,
}

/// A session joining the call.
pub(crate) struct Join {
    pub token: Token,
    pub uid: i64,
    pub address: String,
    pub name: String,
    pub session: u64,
    pub permissions: Permissions,
    /// Where the session's frames go.
    pub sink: SinkId,
    /// The user's previous session in the call is already gone (its queue closed): it leaves as
    /// `lost`, not `replaced`.
    pub previous_gone: bool,
    /// The group records its calls from their start, for this owner; with the wall clock now
    /// (ms), for the recording's `since`.
    pub auto_record: Option<(crate::call::AutoRecord, i64)>,
    pub rid: Option<String>,
}

/// A datagram received on one of the engine's legs.
pub(crate) struct Datagram {
    pub peer: PeerKey,
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: bytes::Bytes,
}

/// What the engine is told.
pub(crate) enum Input {
    /// A session joins; answered by [`Output::Joined`].
    Join(Join),
    /// A call request (other than `call_join`) of session `session`; answered by [`Output::Reply`].
    Request { token: Token, uid: i64, session: u64, frame: ClientFrame },
    /// Participant `uid` offers its publish leg anew with the same media lines (a WHIP ICE
    /// restart); answered by [`Output::Reply`] with `call_sdp`.
    Reoffer { token: Token, uid: i64, session: u64, sdp: String },
    /// A datagram for a leg (its `now` is when it was received).
    Datagram(Datagram),
    /// These sessions are gone (their queues closed): their participants leave as `lost`.
    Gone(Vec<SinkId>),
    /// The group's members now, by address, with their call permissions.
    Members(HashMap<String, Permissions>),
    /// This session's queue is full: it fell behind and leaves the call (reason `slow`).
    Slow(SinkId),
    /// Start or stop recording the call; answered by [`Output::Reply`] (`call_recording`).
    /// `now_ms` is the wall clock, for the recording's `since`.
    Record { token: Token, rid: Option<String>, by: RecordBy, action: chorus_proto::call::RecordAction, now_ms: i64 },
    /// The recording writer stopped (a size limit, a storage failure): the recording ends.
    RecordFailed(chorus_proto::call::RecordingStopReason),
    /// The recording writer needs a keyframe of `uid`'s stream `sid`.
    RecordKeyframe { uid: i64, sid: u32 },
    /// Time passed: serve due timers and drain what the inputs since the last one touched.
    Timeout,
    /// Tests: the downlink estimate of `uid`'s subscribe leg is `bps`, as if TWCC had measured it
    /// (until str0m's next one), so a test can drive layer selection without shaping a link.
    #[cfg(test)]
    Estimate { uid: i64, bps: u64 },
}

/// What the engine wants done.
#[derive(Debug)]
pub(crate) enum Output {
    /// The answer to [`Input::Join`].
    Joined { token: Token, result: Result<Box<ServerFrame>, ApiError> },
    /// The answer to [`Input::Request`].
    Reply { token: Token, frame: Box<ServerFrame> },
    /// A serialised frame for a session. `last_slot`: the `left` of a session that fell behind,
    /// written into the slot its queue keeps for it; other frames leave that slot free, and a
    /// session whose queue has no other room is [`Input::Slow`].
    Frame { to: SinkId, json: FrameText, last_slot: bool },
    /// The engine is done with this session: its queue ends after what was written.
    Release(SinkId),
    /// A datagram to send from leg `peer`.
    Transmit { peer: PeerKey, transmit: Transmit },
    /// Route datagrams whose STUN username starts with `ufrag` to leg `peer`.
    Register { ufrag: String, peer: PeerKey },
    /// Leg `peer` (credentials `ufrag`) is gone: forget its route and connections.
    Unregister { ufrag: String, peer: PeerKey },
    /// Leg `peer` restarted ICE: its route (and its ICE-TCP connections) now answer to `new`
    /// instead of `old`.
    Rekey { old: String, new: String, peer: PeerKey },
    /// An event for the operator's webhooks.
    Webhook { event: &'static str, body: serde_json::Value },
    /// Something for the recording writer (only while the call is recorded).
    Record(Box<RecordOut>),
    /// Nothing more now: give [`Input::Timeout`] at this instant at the latest.
    Timeout(Instant),
}

/// Work produced while draining a leg, handled once the leg's borrow ends. (Received RTP
/// packets, the bulk of it, queue apart in `Engine::rtp`.)
enum Work {
    /// A subscriber asked for a keyframe on its media line.
    Keyframe(i64, str0m::media::Mid),
    /// A subscriber's connection came up (DTLS done): its forwarders may ask for keyframes.
    SubscriberUp(i64),
    Lost(i64),
    /// A sender report of a publish leg, while recording.
    SenderReport(i64, str0m::media::SenderFeedback),
}

/// One group's call (see the module doc).
pub(crate) struct Engine {
    cfg: EngineConfig,
    rng: StdRng,
    room: Room<i64>,
    talk: TalkDetector<i64>,
    speakers: Vec<i64>,
    peers: HashMap<i64, Peer>,
    by_address: HashMap<String, i64>,
    /// Participants that fell behind on their events, to take out of the call.
    slow: Vec<i64>,
    work: Vec<Work>,
    /// Why participants about to leave are leaving, where the room's own reasons do not say it.
    leave_reasons: HashMap<i64, CallLeaveReason>,
    /// RTP packets received from publish legs, to forward once the batch is drained.
    rtp: Vec<(i64, RtpPacket)>,
    /// The other half of `rtp`, swapped in while forwarding, so neither buffer is reallocated.
    rtp_spare: Vec<(i64, RtpPacket)>,
    /// Legs to drain (see the invariants).
    dirty: Vec<PeerKey>,
    last_tick: Instant,
    /// Packets and payload bytes forwarded since the last flush, added to the metrics there.
    forwarded: (u64, u64),
    /// Runs the egress phase of each flush (see `egress`).
    egress: Box<dyn EgressRunner>,
    /// The datagram lists of egress parts, kept for the next flush.
    spare_transmits: Vec<Vec<(PeerKey, Transmit)>>,
    /// Kept for the next flush's list of held subscribe legs (`Engine::egress`).
    held_spare: Vec<PeerKey>,
    /// The DTLS certificate of every leg of this room, made once with the room: str0m would make
    /// one per leg (a key pair and a signature each, on the room's thread, in a join storm a
    /// thousand of them). The fingerprint in each answer binds it, as a per-leg one would; `None`
    /// when the crypto provider could not make one (then str0m makes one per leg).
    dtls_cert: Option<DtlsCert>,
    /// Whether `room.started` was emitted.
    started: bool,
    /// The recording in progress.
    recording: Option<record::Recording>,
    /// The group's automatic recording was started (it starts once per call).
    auto_recorded: bool,
    out: VecDeque<Output>,
}

impl Engine {
    pub fn new(now: Instant, cfg: EngineConfig) -> Self {
        Engine {
            rng: StdRng::seed_from_u64(cfg.seed),
            room: Room::new(cfg.settings),
            cfg,
            talk: TalkDetector::default(),
            speakers: Vec::new(),
            peers: HashMap::new(),
            by_address: HashMap::new(),
            slow: Vec::new(),
            work: Vec::new(),
            leave_reasons: HashMap::new(),
            rtp: Vec::new(),
            rtp_spare: Vec::new(),
            dirty: Vec::new(),
            last_tick: now,
            forwarded: (0, 0),
            egress: Box::new(Inline),
            spare_transmits: Vec::new(),
            held_spare: Vec::new(),
            dtls_cert: str0m::crypto::from_feature_flags().dtls_provider.generate_certificate(),
            started: false,
            recording: None,
            auto_recorded: false,
            out: VecDeque::new(),
        }
    }

    /// Who runs the egress phase of each flush from now on (the engine starts with [`Inline`]).
    pub fn set_egress(&mut self, runner: Box<dyn EgressRunner>) {
        self.egress = runner;
    }

    /// Handles one input at `now`; then poll [`Engine::poll_output`] until [`Output::Timeout`].
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Join(mut j) => {
                tracing::debug!(gid = self.cfg.gid, uid = j.uid, session = j.session, "participant joins");
                // A session that left just before joining again leaves as `lost`, not `replaced`
                // (whatever it sent before leaving was queued before this join).
                if j.previous_gone && self.peers.contains_key(&j.uid) {
                    let _ = self.room.leave(j.uid, LeaveReason::Lost);
                    self.room_events(now);
                }
                // The call's first join starts the group's automatic recording, before the
                // joiner's `call_joined` (which then says so). Once only: an admin may stop it.
                if let (Some((owner, now_ms)), false) = (j.auto_record.take(), self.auto_recorded) {
                    self.auto_recorded = true;
                    let by = RecordBy::Member { uid: owner.uid, address: owner.address };
                    if let Err(e) = self.try_record(now, by, chorus_proto::call::RecordAction::Start, now_ms) {
                        tracing::warn!(gid = self.cfg.gid, "automatic recording did not start: {}", e.message);
                    }
                }
                let token = j.token;
                let result = self.join(now, j).map(Box::new);
                self.out.push_back(Output::Joined { token, result });
                self.room_events(now);
            }
            Input::Request { token, uid, session, frame } => {
                let frame = if self.peers.get(&uid).is_some_and(|p| p.session == session) {
                    self.request(now, uid, frame)
                } else {
                    wire::error_frame(frame.rid().map(str::to_string), &ApiError::not_found("not in this call"))
                };
                self.out.push_back(Output::Reply { token, frame: Box::new(frame) });
                self.room_events(now);
            }
            Input::Reoffer { token, uid, session, sdp } => {
                let r = if self.peers.get(&uid).is_some_and(|p| p.session == session) {
                    self.reoffer(uid, &sdp)
                } else {
                    Err(ApiError::not_found("not in this call"))
                };
                let frame = match r {
                    Ok(sdp) => ServerFrame::CallSdp { rid: None, sdp: Some(sdp) },
                    Err(e) => wire::error_frame(None, &e),
                };
                self.out.push_back(Output::Reply { token, frame: Box::new(frame) });
                self.room_events(now);
            }
            Input::Datagram(d) => self.datagram(now, d),
            Input::Gone(sinks) => {
                for sink in sinks {
                    if let Some(uid) = self.peers.values().find(|p| p.sink == sink).map(|p| p.uid) {
                        let _ = self.room.leave(uid, LeaveReason::Lost);
                    }
                }
            }
            Input::Members(members) => self.refresh(members),
            Input::Slow(sink) => {
                if let Some(p) = self.peers.values_mut().find(|p| p.sink == sink && !p.slow) {
                    p.slow = true;
                    self.slow.push(p.uid);
                }
                self.room_events(now);
            }
            Input::Record { token, rid, by, action, now_ms } => {
                self.record(now, token, rid, by, action, now_ms);
                self.room_events(now);
            }
            Input::RecordFailed(reason) => self.stop_recording(reason),
            Input::RecordKeyframe { uid, sid } => self.record_keyframe(now, uid, sid),
            Input::Timeout => {
                self.timeouts(now);
                self.flush(now);
            }
            #[cfg(test)]
            Input::Estimate { uid, bps } => {
                if let Some(p) = self.peers.get_mut(&uid) {
                    p.bwe_bps = bps;
                    p.downlink.on_twcc(bps);
                    p.downlink.on_twcc_feedback(now);
                }
            }
        }
    }

    /// The next thing to do; [`Output::Timeout`] when there is nothing more until then.
    pub fn poll_output(&mut self) -> Output {
        self.out.pop_front().unwrap_or_else(|| Output::Timeout(self.next_wake()))
    }

    /// No participant is left.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether leg `peer` exists (datagrams for it are not dropped).
    pub fn has_leg(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer.uid).is_some_and(|p| match peer.leg {
            Leg::Publish => p.publish.is_some(),
            Leg::Subscribe => p.subscribe.is_some(),
        })
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.last_tick + TICK;
        for p in self.peers.values() {
            for leg in [&p.publish, &p.subscribe].into_iter().flatten() {
                wake = wake.min(leg.next_timeout);
                if let Some(t) = leg.held {
                    wake = wake.min(t);
                }
            }
        }
        if let Some(t) = self.room.poll_timeout() {
            wake = wake.min(t);
        }
        if let Some(t) = self.talk.poll_timeout() {
            wake = wake.min(t);
        }
        wake
    }

    /// Gives participants the permissions of the group's members now; those no longer members
    /// leave.
    fn refresh(&mut self, members: HashMap<String, Permissions>) {
        let current: Vec<(i64, String)> = self.peers.values().map(|p| (p.uid, p.address.clone())).collect();
        for (uid, address) in current {
            match members.get(&address) {
                Some(p) => {
                    let _ = self.room.set_permissions(uid, *p);
                }
                None => {
                    self.leave_reasons.insert(uid, CallLeaveReason::NotMember);
                    let _ = self.room.leave(uid, LeaveReason::Left);
                }
            }
        }
    }

    /// Panics unless the invariants of the module doc hold (tests call it after every input).
    #[cfg(test)]
    fn check_invariants(&self) {
        for p in self.peers.values() {
            for (leg, which) in [(&p.publish, Leg::Publish), (&p.subscribe, Leg::Subscribe)] {
                if leg.as_ref().is_some_and(|l| l.dirty) {
                    let key = PeerKey { uid: p.uid, leg: which };
                    assert!(self.dirty.contains(&key), "{key:?} is marked dirty but not listed");
                }
                if let Some(until) = leg.as_ref().and_then(|l| l.held) {
                    let key = PeerKey { uid: p.uid, leg: which };
                    assert!(leg.as_ref().is_some_and(|l| l.dirty), "{key:?} is held but not marked dirty");
                    assert!(self.next_wake() <= until, "{key:?} is held past the engine's next wake-up");
                }
            }
            for t in &p.tracks {
                let stream = chorus_sfu::StreamId { publisher: p.uid, sid: t.sid };
                let mut held: Vec<i64> =
                    self.room.subscribers(stream).filter(|(_, s)| s.wants(t.kind)).map(|(who, _)| who).collect();
                let mut forwarded: Vec<i64> = t.subscribers.iter().map(|f| f.subscriber).collect();
                held.sort();
                forwarded.sort();
                assert_eq!(held, forwarded, "forwarders of {stream:?} {:?} are the room's subscriptions", t.kind);
            }
        }
    }

    fn webhook(&mut self, event: &'static str, body: serde_json::Value) {
        self.out.push_back(Output::Webhook { event, body });
    }
}

/// Marks `leg` (key `key`) to be drained at the next flush, keeping the invariant that a leg
/// marked dirty is in `dirty`. It ends a hold (`media::FRAME_HOLD`): whatever marked the leg
/// does not wait for a frame's end.
fn mark_dirty(dirty: &mut Vec<PeerKey>, leg: &mut state::PeerLeg, key: PeerKey) {
    leg.held = None;
    if !leg.dirty {
        leg.dirty = true;
        dirty.push(key);
    }
}
