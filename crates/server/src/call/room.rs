//! The room task: one group's call, driven by commands from sessions, datagrams from the media
//! sockets and its own timers.
//!
//! It owns everything the call needs, so nothing here is shared or locked:
//! * the sans-IO [`Room`] — permissions, streams, subscriptions, mute, admin actions, duration —
//!   which answers each request and emits addressed events;
//! * per participant two str0m [`Rtc`]s in RTP mode: the *publish* leg (the client offers; the
//!   server receives) and the *subscribe* leg (the server offers; the server sends, with TWCC
//!   bandwidth estimation);
//! * per published track, the [`Forwarder`] and [`LayerSelector`] of each subscriber.
//!
//! **The forwarding path.** An RTP packet from a publish leg is looked up by SSRC (a small map,
//! filled from str0m's mid/rid on first sight), inspected for a keyframe start, metered per
//! layer, and offered to every subscriber's forwarder of that track. The room is asked
//! ([`Room::forward_allowed`]) before each copy: a member who may not publish, a muted track, or
//! a subscriber who may not receive is stopped here, whatever signaling said. A forwarded copy
//! shares the received payload (`Arc<[u8]>`); only the header values change. Outputs of every leg
//! touched by a batch are drained once the batch is done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_proto::call::{
    AdminAction, CallEvent, CallLeaveReason, CallMute, CallParticipant, CallStream, CallTrack, MediaKind as WireKind,
    PublishRequest, StreamEndReason,
};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::ErrorCode;
use chorus_sfu::codec::{self, Codec};
use chorus_sfu::select::{self, Demand, LayerInfo, LayerSelector};
use chorus_sfu::switch::KeyframeThrottle;
use chorus_sfu::talk::TalkDetector;
use chorus_sfu::{
    Decision, Forwarder, Layer, LeaveReason, Mute, PacketInfo, Permissions, Publish, Room, RoomError, RoomEvent,
    RoomEventKind, RoomSettings, StreamId, StreamInfo, StreamKind, Subscription, TrackKind, UnpublishReason,
};
use rand::distributions::{Alphanumeric, DistString};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use super::net::{Datagram, Leg, MediaNet, PeerKey, Route, SendBatch, ROOM_QUEUE};
use super::RoomShared;
use crate::config::Config;
use crate::error::ApiError;

/// Largest SDP accepted from a client.
const MAX_SDP: usize = 64 * 1024;
/// How often layers are re-selected and liveness checked.
const TICK: Duration = Duration::from_millis(250);
/// Rounds of due timeouts one flush serves before it sends (see `RoomTask::flush`).
const IMMEDIATE_ROUNDS: u32 = 4;
/// Bitrate meter window.
const METER_WINDOW: Duration = Duration::from_millis(500);
/// A layer that sent nothing for this long is not being sent.
const LAYER_IDLE: Duration = Duration::from_millis(1500);
/// Unused media lines a subscribe leg keeps before new subscriptions reuse them: without a bound,
/// someone publishing and unpublishing over and over would grow every subscriber's SDP forever.
const SPARE_LINES: usize = 8;

/// What sessions ask of the room.
pub(crate) enum Command {
    Join {
        uid: i64,
        address: String,
        name: String,
        session: u64,
        permissions: Permissions,
        out: mpsc::Sender<Arc<str>>,
        rid: Option<String>,
        reply: oneshot::Sender<Result<ServerFrame, ApiError>>,
    },
    Request {
        uid: i64,
        session: u64,
        frame: ClientFrame,
        reply: oneshot::Sender<ServerFrame>,
    },
}

/// One str0m peer connection of a participant.
struct PeerLeg {
    rtc: Rtc,
    ufrag: String,
    created: Instant,
    next_timeout: Instant,
    last_rx: Instant,
    connected: bool,
    /// Queued to be drained after the current batch.
    dirty: bool,
    /// ICE-TCP connections of this leg, by remote address.
    tcp: Vec<(std::net::SocketAddr, mpsc::Sender<Vec<u8>>)>,
    /// Video payload forwarded on this leg (subscribe legs): the traffic its bandwidth estimate
    /// follows, against which a low estimate is judged (see `select::allocate`).
    video_sent: Meter,
}

/// A track a participant publishes (the audio or the video of one stream).
struct PubTrack {
    sid: u32,
    kind: TrackKind,
    /// A shared screen: served first when a subscriber's bandwidth is short.
    screen: bool,
    mid: Mid,
    /// Simulcast RIDs, lowest first; empty for a single layer.
    rids: Vec<Rid>,
    /// Layers granted by the room.
    layers: u8,
    /// Height of the top layer.
    height: Option<u32>,
    /// The one codec the publisher sends (its `a=rtpmap` name; see `sdp::narrow_codecs`).
    codec: &'static str,
    meters: [Meter; Layer::COUNT],
    throttle: KeyframeThrottle,
    /// Payload type → codec, learned as packets arrive.
    codecs: Vec<(u8, Codec)>,
    subscribers: Vec<Fwd>,
    /// Layers anyone receives, as last told to the publisher.
    told_active: Vec<bool>,
}

impl PubTrack {
    /// The layers this track offers now, lowest first, with their measured bitrates (a nominal
    /// one for a layer not being sent), and how many there are.
    fn layer_infos(&self, now: Instant) -> ([LayerInfo; Layer::COUNT], usize) {
        let mut infos = [LayerInfo { layer: Layer::LOW, height: 0, bitrate_bps: 0, active: false }; Layer::COUNT];
        let n = usize::from(self.layers.max(1)).min(Layer::COUNT);
        let top = self.height.unwrap_or(720);
        for (i, info) in infos.iter_mut().enumerate().take(n) {
            let height = top >> (n - 1 - i);
            let m = &self.meters[i];
            let bitrate = if m.sending(now) && m.bps > 0 { m.bps } else { nominal_bps(height) };
            *info = LayerInfo {
                layer: Layer::new(i as u8).expect("below COUNT"),
                height,
                bitrate_bps: bitrate,
                active: true,
            };
        }
        (infos, n)
    }
}

/// One subscriber's copy of a published track.
struct Fwd {
    subscriber: i64,
    /// The subscribe leg's media line carrying it, once offered.
    mid: Option<Mid>,
    fwd: Forwarder,
    selector: LayerSelector,
    wanted_height: Option<u32>,
    /// Extended sequence number of the last forwarded packet.
    ext_seq: Option<u64>,
    /// Publisher payload type → subscriber payload type.
    pts: Vec<(u8, u8)>,
    /// Layer last reported to the subscriber.
    told_layer: Option<Option<Layer>>,
}

/// Per-layer bitrate meter.
#[derive(Default, Clone, Copy)]
struct Meter {
    window_start: Option<Instant>,
    bytes: u64,
    bps: u64,
    last_packet: Option<Instant>,
}

impl Meter {
    fn add(&mut self, now: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= METER_WINDOW {
            let measured = self.bytes * 8 * 1000 / (elapsed.as_millis() as u64).max(1);
            // Smooth a little: a keyframe window should not look like the layer's steady rate.
            self.bps = if self.bps == 0 { measured } else { (self.bps * 3 + measured) / 4 };
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
        self.last_packet = Some(now);
    }

    fn sending(&self, now: Instant) -> bool {
        self.last_packet.is_some_and(|t| now.saturating_duration_since(t) < LAYER_IDLE)
    }
}

/// Nominal bitrate of a video layer of `height` pixels, for layers not measured (paused).
fn nominal_bps(height: u32) -> u64 {
    match height {
        0..=240 => 150_000,
        241..=480 => 500_000,
        481..=720 => 1_500_000,
        721..=1080 => 3_000_000,
        _ => 8_000_000,
    }
}

struct Peer {
    uid: i64,
    address: String,
    name: String,
    session: u64,
    /// The session's call frames (bounded: see `deliver`).
    out: mpsc::Sender<Arc<str>>,
    /// Fell behind on `out`: leaves the call with reason `slow`, nothing more is queued.
    slow: bool,
    publish: Option<PeerLeg>,
    subscribe: Option<PeerLeg>,
    tracks: Vec<PubTrack>,
    /// SSRC → (index in `tracks`, layer).
    ssrcs: HashMap<u32, (usize, Layer)>,
    /// The subscribe leg's offer awaiting an answer.
    pending: Option<SdpPendingOffer>,
    /// Subscriptions changed while an offer was out: offer again after the answer.
    renegotiate: bool,
    /// Media lines of the subscribe leg to make inactive at the next offer.
    to_stop: Vec<SpareLine>,
    /// Inactive media lines of the subscribe leg, oldest first, for reuse (`SPARE_LINES`).
    spare: Vec<SpareLine>,
    /// Counted in `chorus_call_participants` while in the room.
    _live: crate::metrics::Live,
    /// Downlink estimate of the subscribe leg.
    bwe_bps: u64,
}

impl Peer {
    fn leg(&mut self, leg: Leg) -> Option<&mut PeerLeg> {
        match leg {
            Leg::Publish => self.publish.as_mut(),
            Leg::Subscribe => self.subscribe.as_mut(),
        }
    }
}

/// A subscribe-leg media line no longer carrying anything, with the forwarder that last wrote to
/// it: a track put on the line later continues its sequence numbers and timestamps, so the
/// subscriber sees one RTP stream on the line's SSRC.
struct SpareLine {
    mid: Mid,
    kind: TrackKind,
    /// The codec the line was negotiated for: only a track of that codec may take it again.
    codec: &'static str,
    fwd: Forwarder,
    ext_seq: Option<u64>,
}

impl SpareLine {
    fn of(f: Fwd, kind: TrackKind, codec: &'static str) -> Option<SpareLine> {
        Some(SpareLine { mid: f.mid?, kind, codec, fwd: f.fwd, ext_seq: f.ext_seq })
    }
}

/// Queues a frame for `p`'s session. A session whose queue is full (it stopped reading) is marked
/// slow and put on `slow` to be taken out of the call; the queue's last slot is kept for the
/// `left` that tells it so.
fn deliver(p: &mut Peer, json: &Arc<str>, slow: &mut Vec<i64>) {
    if p.slow {
        return;
    }
    if p.out.capacity() > 1 && p.out.try_send(json.clone()).is_ok() {
        return;
    }
    if p.out.is_closed() {
        return; // the session is gone; the room's sweep removes it
    }
    p.slow = true;
    slow.push(p.uid);
}

fn event_json(gid: i64, event: &CallEvent) -> Arc<str> {
    let frame = ServerFrame::CallEvent { gid: chorus_proto::GroupId(gid), event: event.clone() };
    serde_json::to_string(&frame).expect("frames serialise").into()
}

/// Work produced while draining a leg, handled once the leg's borrow ends. (Received RTP
/// packets, the bulk of it, queue apart in `RoomTask::rtp`.)
enum Work {
    /// A subscriber asked for a keyframe on its media line.
    Keyframe(i64, Mid),
    Lost(i64),
}

pub(crate) struct RoomTask {
    gid: i64,
    id: u64,
    room: Room<i64>,
    talk: TalkDetector<i64>,
    speakers: Vec<i64>,
    peers: HashMap<i64, Peer>,
    by_address: HashMap<String, i64>,
    net: Arc<MediaNet>,
    cfg: Arc<Config>,
    cmd_rx: mpsc::Receiver<Command>,
    shared: Arc<RoomShared>,
    /// Participants that fell behind on their events, to take out of the call.
    slow: Vec<i64>,
    pkt_tx: mpsc::Sender<Vec<Datagram>>,
    pkt_rx: mpsc::Receiver<Vec<Datagram>>,
    work: Vec<Work>,
    /// UDP datagrams gathered while draining, sent together (GSO).
    out: SendBatch,
    /// Why participants about to leave are leaving, where the room's own reasons do not say it.
    leave_reasons: HashMap<i64, CallLeaveReason>,
    /// RTP packets received from publish legs, to forward once the batch is drained.
    rtp: Vec<(i64, RtpPacket)>,
    /// The other half of `rtp`, swapped in while forwarding, so neither buffer is reallocated.
    rtp_spare: Vec<(i64, RtpPacket)>,
    dirty: Vec<PeerKey>,
    last_tick: Instant,
    /// Packets and payload bytes forwarded since the last flush, added to the metrics there.
    forwarded: (u64, u64),
    /// Room and participant events for the operator's URLs.
    hooks: Arc<crate::webhooks::Webhooks>,
    /// When the first participant joined (`room.started`), ms since the epoch.
    started_ms: Option<i64>,
}

fn room_error(e: RoomError) -> ApiError {
    use RoomError::*;
    let code = match e {
        PublishNotPermitted
        | SubscribeNotPermitted
        | CallControlRequired
        | HangupRequired
        | AudioNotAllowed
        | VideoNotAllowed
        | ScreenNotAllowed
        | MutedByAdmin => ErrorCode::Forbidden,
        NoSuchParticipant | NoSuchStream | NotSubscribed | NotInRoom => ErrorCode::NotFound,
        StreamExists | AlreadyJoined => ErrorCode::Conflict,
        TooManyStreams => ErrorCode::LimitExceeded,
        EmptyStream | ScreenWithoutVideo | InvalidLayers | NoSuchMedia | OwnStream | NothingToReceive => {
            ErrorCode::BadRequest
        }
    };
    ApiError::new(code, e.to_string())
}

fn error_frame(rid: Option<String>, e: &ApiError) -> ServerFrame {
    ServerFrame::Error { rid, id: None, code: e.code, message: e.message.clone(), status: None }
}

fn wire_mute(m: Mute) -> CallMute {
    CallMute { audio: m.audio, video: m.video }
}

fn wire_stream(sid: u32, s: &StreamInfo) -> CallStream {
    CallStream {
        sid,
        audio: s.kind.audio,
        video: s.kind.video,
        screen: s.kind.screen,
        layers: s.layers,
        height: s.height,
        muted: wire_mute(s.muted),
    }
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

/// The str0m configuration of a peer connection leg: ICE lite with our credentials, RTP mode
/// (we forward packets, not frames); `bwe_start` turns on bandwidth estimation (subscribe legs).
pub(crate) fn leg_config(creds: IceCreds, bwe_start: Option<Bitrate>) -> RtcConfig {
    let config = Rtc::builder().set_ice_lite(true).set_rtp_mode(true).set_local_ice_credentials(creds);
    match bwe_start {
        Some(b) => config.enable_bwe(Some(b)),
        None => config,
    }
}

/// Runs str0m's handling of a remote description, catching a panic. str0m 0.25 asserts some SDP
/// invariants instead of returning an error: fuzz/sdp found an offer that binds one payload type
/// to codecs in two bundled media lines ("Pt locked multiple times"). A remote description is
/// untrusted input; after a panic the leg must not be used again (see `RoomTask::sdp_panicked`).
pub(crate) fn remote_sdp<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Checks what a `call_publish` says about itself, before the room or the SDP is looked at:
/// the media lines it names for audio and video.
pub(crate) fn check_publish(req: &PublishRequest) -> Result<(Option<Mid>, Option<Mid>), ApiError> {
    if req.sid > 63 {
        return Err(ApiError::bad_request("sid must be between 0 and 63"));
    }
    if req.sdp.len() > MAX_SDP {
        return Err(ApiError::new(ErrorCode::TooLarge, "sdp is larger than 64 KiB"));
    }
    if req.rids.len() > Layer::COUNT - 1 || !req.rids.iter().all(|r| valid_rid(r)) {
        return Err(ApiError::bad_request("rids must be at most 3 names of 1 to 8 letters, digits, - or _"));
    }
    let mut seen = req.rids.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != req.rids.len() {
        return Err(ApiError::bad_request("rids must be distinct"));
    }
    if req.height.is_some_and(|h| h == 0 || h > 8192) {
        return Err(ApiError::bad_request("height must be between 1 and 8192 pixels"));
    }
    let audio_mid = match (req.audio, &req.audio_mid) {
        (true, Some(m)) if valid_mid(m) => Some(Mid::from(m.as_str())),
        (true, _) => return Err(ApiError::bad_request("audio_mid is required (the offer's media line for the audio)")),
        (false, _) => None,
    };
    let video_mid = match (req.video, &req.video_mid) {
        (true, Some(m)) if valid_mid(m) => Some(Mid::from(m.as_str())),
        (true, _) => return Err(ApiError::bad_request("video_mid is required (the offer's media line for the video)")),
        (false, _) => None,
    };
    if audio_mid.is_some() && audio_mid == video_mid {
        return Err(ApiError::bad_request("audio and video must be on different media lines"));
    }
    // The layers claimed are the layers the offer sends: a claim of layers the SDP does not
    // simulcast would have the server wait for packets that never come.
    match video_mid {
        None if !req.rids.is_empty() => return Err(ApiError::bad_request("rids are for a stream with video")),
        None => {}
        Some(m) => {
            let mut offered = super::sdp::simulcast_send_rids(&req.sdp, &m.to_string());
            let mut claimed = req.rids.clone();
            offered.sort();
            claimed.sort();
            if offered != claimed {
                return Err(ApiError::bad_request(if offered.is_empty() {
                    format!("rids must be empty: media line {m} of the offer has no a=simulcast:send")
                } else {
                    format!("rids must name the layers media line {m} of the offer sends: {}", offered.join(", "))
                }));
            }
        }
    }
    Ok((audio_mid, video_mid))
}

/// A rid is 1 to 8 letters, digits, `-` or `_` (RFC 8851 allows more; browsers use these).
fn valid_rid(r: &str) -> bool {
    (1..=8).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `sdp::narrow_codecs`, its failure a `bad_request`.
fn narrow(sdp: &str, wanted: &[(String, Option<&'static str>)]) -> Result<(String, Vec<super::sdp::Chosen>), ApiError> {
    super::sdp::narrow_codecs(sdp, wanted)
        .map_err(|e| ApiError::bad_request(format!("the SDP offer cannot be accepted: {e}")))
}

/// The media lines a participant's publish leg already carries (but stream `except`'s), each
/// keeping its codec when the leg is offered anew (`sdp::narrow_codecs`).
fn kept_codecs(p: &Peer, except: Option<u32>) -> Vec<(String, Option<&'static str>)> {
    p.tracks.iter().filter(|t| Some(t.sid) != except).map(|t| (t.mid.to_string(), Some(t.codec))).collect()
}

fn valid_mid(m: &str) -> bool {
    (1..=16).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_graphic())
}

impl RoomTask {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gid: i64,
        id: u64,
        settings: RoomSettings,
        net: Arc<MediaNet>,
        cfg: Arc<Config>,
        hooks: Arc<crate::webhooks::Webhooks>,
        cmd_rx: mpsc::Receiver<Command>,
        shared: Arc<RoomShared>,
    ) -> Self {
        let (pkt_tx, pkt_rx) = mpsc::channel(ROOM_QUEUE);
        RoomTask {
            gid,
            id,
            room: Room::new(settings),
            talk: TalkDetector::default(),
            speakers: Vec::new(),
            peers: HashMap::new(),
            by_address: HashMap::new(),
            net,
            cfg,
            cmd_rx,
            shared,
            slow: Vec::new(),
            pkt_tx,
            pkt_rx,
            work: Vec::new(),
            out: SendBatch::default(),
            leave_reasons: HashMap::new(),
            rtp: Vec::new(),
            rtp_spare: Vec::new(),
            dirty: Vec::new(),
            last_tick: Instant::now(),
            forwarded: (0, 0),
            hooks,
            started_ms: None,
        }
    }

    /// Runs until the last participant is gone and no command waits.
    pub async fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            let wake = self.next_wake();
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                _ = shared.wake.notified() => {
                    self.sweep_gone();
                    let members = shared.refresh.lock().expect("refresh lock").take();
                    if let Some(members) = members {
                        self.refresh(members);
                    }
                }
                Some(batch) = self.pkt_rx.recv() => {
                    self.datagrams(batch);
                    // Take whatever else is queued before draining outputs once.
                    while let Ok(more) = self.pkt_rx.try_recv() {
                        self.datagrams(more);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            self.timeouts(now);
            self.flush(now);
            if self.peers.is_empty() && self.cmd_rx.is_empty() {
                break;
            }
        }
        tracing::debug!(gid = self.gid, room = self.id, "call ended");
        if let Some(started) = self.started_ms {
            let duration_ms = crate::clock::now_ms() - started;
            self.hooks.emit("room.finished", serde_json::json!({ "gid": self.gid, "duration_ms": duration_ms }));
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = self.last_tick + TICK;
        for p in self.peers.values() {
            for leg in [&p.publish, &p.subscribe].into_iter().flatten() {
                wake = wake.min(leg.next_timeout);
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

    // ---------------------------------------------------------------- commands

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { uid, address, name, session, permissions, out, rid, reply } => {
                tracing::debug!(gid = self.gid, uid, session, "participant joins");
                // A session that left just before joining again leaves as `lost`, not `replaced`
                // (whatever it sent before leaving was queued before this join).
                if self.peers.get(&uid).is_some_and(|p| p.out.is_closed()) {
                    let _ = self.room.leave(uid, LeaveReason::Lost);
                    self.room_events(now);
                }
                let r = self.join(now, uid, address, name, session, permissions, out, rid);
                let _ = reply.send(r);
            }
            Command::Request { uid, session, frame, reply } => {
                let frame = if self.peers.get(&uid).is_some_and(|p| p.session == session) {
                    self.request(now, uid, frame)
                } else {
                    error_frame(frame.rid().map(str::to_string), &ApiError::not_found("not in this call"))
                };
                let _ = reply.send(frame);
            }
        }
        self.room_events(now);
    }

    /// Takes out every participant whose session dropped its `CallSession` (its receiver is
    /// closed): the WebSocket closed, or the session left or joined another call.
    fn sweep_gone(&mut self) {
        let gone: Vec<i64> = self.peers.values().filter(|p| p.out.is_closed()).map(|p| p.uid).collect();
        if gone.is_empty() {
            return;
        }
        // A session queues its last requests (a `call_leave`) before it closes its receiver, so
        // they are in the queue now: answer them first, or they would find it gone.
        for _ in 0..self.cmd_rx.len() {
            match self.cmd_rx.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(_) => break,
            }
        }
        for uid in gone {
            if self.peers.get(&uid).is_some_and(|p| p.out.is_closed()) {
                let _ = self.room.leave(uid, LeaveReason::Lost);
            }
        }
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

    /// Takes out the participants that fell behind on their events.
    fn drop_slow(&mut self) {
        for uid in std::mem::take(&mut self.slow) {
            tracing::info!(gid = self.gid, uid, "participant fell behind on call events: taken out of the call");
            self.leave_reasons.insert(uid, CallLeaveReason::Slow);
            if self.room.leave(uid, LeaveReason::Lost).is_err() {
                self.leave_reasons.remove(&uid);
                self.remove_peer(uid, CallLeaveReason::Slow);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        now: Instant,
        uid: i64,
        address: String,
        name: String,
        session: u64,
        permissions: Permissions,
        out: mpsc::Sender<Arc<str>>,
        rid: Option<String>,
    ) -> Result<ServerFrame, ApiError> {
        if self.peers.contains_key(&uid) {
            // The same user from another session: the new one replaces the old.
            self.leave_reasons.insert(uid, CallLeaveReason::Replaced);
            let _ = self.room.leave(uid, LeaveReason::Left);
            self.room_events(now);
        }
        self.room.join(now, uid, permissions).map_err(room_error)?;
        if self.started_ms.is_none() {
            self.started_ms = Some(crate::clock::now_ms());
            self.hooks.emit("room.started", serde_json::json!({ "gid": self.gid }));
        }
        self.hooks.emit("participant.joined", serde_json::json!({ "gid": self.gid, "uid": uid }));
        self.by_address.insert(address.clone(), uid);
        self.peers.insert(
            uid,
            Peer {
                uid,
                address: address.clone(),
                name,
                session,
                out,
                slow: false,
                publish: None,
                subscribe: None,
                tracks: Vec::new(),
                ssrcs: HashMap::new(),
                pending: None,
                renegotiate: false,
                to_stop: Vec::new(),
                spare: Vec::new(),
                bwe_bps: self.cfg.rtc_initial_bitrate_kbps * 1000,
                _live: crate::metrics::Live::new(&crate::metrics::metrics().call_participants),
            },
        );
        Ok(ServerFrame::CallJoined {
            rid,
            gid: chorus_proto::GroupId(self.gid),
            address,
            permissions: super::wire_permissions(permissions),
            settings: super::wire_settings(self.room.settings()),
            participants: self.roster(uid),
            ice_servers: Vec::new(),
        })
    }

    fn roster(&self, viewer: i64) -> Vec<CallParticipant> {
        self.room
            .roster(viewer)
            .into_iter()
            .filter_map(|v| {
                let p = self.peers.get(&v.who)?;
                Some(CallParticipant {
                    address: p.address.clone(),
                    name: p.name.clone(),
                    permissions: super::wire_permissions(v.permissions),
                    admin_muted: wire_mute(v.admin_muted),
                    talking: v.talking,
                    streams: v.streams.iter().map(|(sid, s)| wire_stream(*sid, s)).collect(),
                })
            })
            .collect()
    }

    fn uid_of(&self, address: &str) -> Result<i64, ApiError> {
        self.by_address.get(address).copied().ok_or_else(|| ApiError::not_found("no such participant in the call"))
    }

    fn request(&mut self, now: Instant, uid: i64, frame: ClientFrame) -> ServerFrame {
        let rid = frame.rid().map(str::to_string);
        let r: Result<ServerFrame, ApiError> = match frame {
            ClientFrame::CallPublish(req) => self.publish(now, uid, req),
            ClientFrame::CallUnpublish { rid, sid, sdp } => {
                self.unpublish(uid, sid, sdp).map(|sdp| ServerFrame::CallSdp { rid, sdp })
            }
            ClientFrame::CallSubscribe { rid, address, sid, audio, video, height } => {
                if height.is_some_and(|h| h == 0 || h > 8192) {
                    Err(ApiError::bad_request("height must be between 1 and 8192 pixels"))
                } else {
                    self.uid_of(&address)
                        .and_then(|publisher| {
                            let want = Subscription { audio, video, wanted_height: height };
                            self.room.subscribe(uid, StreamId { publisher, sid }, want).map_err(room_error)
                        })
                        .map(|_| ServerFrame::Ok { rid })
                }
            }
            ClientFrame::CallUnsubscribe { rid, address, sid } => self
                .uid_of(&address)
                .and_then(|publisher| self.room.unsubscribe(uid, StreamId { publisher, sid }).map_err(room_error))
                .map(|_| ServerFrame::Ok { rid }),
            ClientFrame::CallAnswer { rid, sdp } => self.answer(now, uid, &sdp).map(|_| ServerFrame::Ok { rid }),
            ClientFrame::CallMute { rid, sid, audio, video } => {
                let mut r = Ok(());
                for (kind, muted) in [(TrackKind::Audio, audio), (TrackKind::Video, video)] {
                    if let (Some(m), Ok(())) = (muted, &r) {
                        r = self.room.set_muted(uid, sid, kind, m).map_err(room_error);
                    }
                }
                r.map(|_| ServerFrame::Ok { rid })
            }
            ClientFrame::CallAdmin { rid, action, address, sid, audio, video } => {
                self.admin(uid, action, address, sid, audio, video).map(|_| ServerFrame::Ok { rid })
            }
            ClientFrame::CallLeave { rid } => {
                self.room.leave(uid, LeaveReason::Left).map_err(room_error).map(|_| ServerFrame::Ok { rid })
            }
            _ => Err(ApiError::bad_request("not a call request")),
        };
        r.unwrap_or_else(|e| error_frame(rid, &e))
    }

    fn admin(
        &mut self,
        uid: i64,
        action: AdminAction,
        address: Option<String>,
        sid: Option<u32>,
        audio: bool,
        video: bool,
    ) -> Result<(), ApiError> {
        let target = || -> Result<i64, ApiError> {
            let a = address.as_deref().ok_or_else(|| ApiError::bad_request("address is required"))?;
            self.uid_of(a)
        };
        let kinds = || [(TrackKind::Audio, audio), (TrackKind::Video, video)].into_iter().filter(|(_, on)| *on);
        if matches!(action, AdminAction::Mute | AdminAction::Unmute | AdminAction::MuteAll | AdminAction::UnmuteAll)
            && !audio
            && !video
        {
            return Err(ApiError::bad_request("say which media: audio and/or video"));
        }
        match action {
            AdminAction::Mute | AdminAction::Unmute => {
                let t = target()?;
                for (k, _) in kinds() {
                    self.room.admin_mute(uid, t, k, action == AdminAction::Mute).map_err(room_error)?;
                }
            }
            AdminAction::MuteAll | AdminAction::UnmuteAll => {
                for (k, _) in kinds() {
                    self.room.admin_mute_all(uid, k, action == AdminAction::MuteAll).map_err(room_error)?;
                }
            }
            AdminAction::Hangup => {
                let t = target()?;
                let sid = sid.ok_or_else(|| ApiError::bad_request("sid is required"))?;
                self.room.admin_hangup(uid, StreamId { publisher: t, sid }).map_err(room_error)?;
            }
            AdminAction::Remove => {
                let t = target()?;
                self.room.admin_remove(uid, t).map_err(room_error)?;
            }
        }
        Ok(())
    }

    fn new_leg(&mut self, now: Instant, uid: i64, leg: Leg) -> PeerLeg {
        let mut rng = rand::thread_rng();
        let creds = IceCreds {
            ufrag: Alphanumeric.sample_string(&mut rng, 12),
            pass: Alphanumeric.sample_string(&mut rng, 24),
        };
        let start = (leg == Leg::Subscribe).then(|| Bitrate::kbps(self.cfg.rtc_initial_bitrate_kbps));
        let mut rtc = leg_config(creds.clone(), start).build(now);
        if let Ok(c) = Candidate::host(self.net.udp_advertised, "udp") {
            rtc.add_local_candidate(c);
        }
        if let Some(tcp) = self.net.tcp_advertised {
            if let Ok(c) = Candidate::builder().tcp().host(tcp).tcptype(TcpType::Passive).build() {
                rtc.add_local_candidate(c);
            }
        }
        self.net.register(
            creds.ufrag.clone(),
            Route { room: self.id, to: self.pkt_tx.clone(), peer: PeerKey { uid, leg } },
        );
        PeerLeg {
            rtc,
            ufrag: creds.ufrag,
            created: now,
            next_timeout: now,
            last_rx: now,
            connected: false,
            dirty: true,
            tcp: Vec::new(),
            video_sent: Meter::default(),
        }
    }

    fn publish(&mut self, now: Instant, uid: i64, req: PublishRequest) -> Result<ServerFrame, ApiError> {
        let (audio_mid, video_mid) = check_publish(&req)?;
        let peer = self.peers.get(&uid).ok_or_else(|| ApiError::not_found("not in this call"))?;
        if peer.tracks.iter().any(|t| Some(t.mid) == audio_mid || Some(t.mid) == video_mid) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a media line of this offer already carries another stream",
            ));
        }
        // One codec per media line: the ones already published keep theirs, the new ones get the
        // first the offer lists that the server forwards.
        let mut wanted = kept_codecs(peer, None);
        wanted.extend([audio_mid, video_mid].into_iter().flatten().map(|m| (m.to_string(), None)));
        let (narrowed, codecs) = narrow(&req.sdp, &wanted)?;
        let offer =
            SdpOffer::from_sdp_string(&narrowed).map_err(|e| ApiError::bad_request(format!("bad SDP offer: {e}")))?;
        let codec_of = |mid: Mid| codecs.iter().find(|(m, _)| *m == mid.to_string()).map(|(_, c)| *c);
        let kind = StreamKind { audio: req.audio, video: req.video, screen: req.screen };
        let request = Publish {
            kind,
            layers: req.rids.len().max(1) as u8,
            height: req.height,
            muted: Mute { audio: req.muted.audio, video: req.muted.video },
        };
        let granted = self.room.publish(uid, req.sid, request).map_err(room_error)?;
        // From here on, a failure takes the stream back out of the room.
        let mut leg = match self.peers.get_mut(&uid).and_then(|p| p.publish.take()) {
            Some(l) => l,
            None => self.new_leg(now, uid, Leg::Publish),
        };
        let Some(answer) = remote_sdp(|| leg.rtc.sdp_api().accept_offer(offer)) else {
            self.net.unregister(&leg.ufrag);
            return Err(self.sdp_panicked(uid));
        };
        let missing = [audio_mid, video_mid].into_iter().flatten().find(|m| leg.rtc.media(*m).is_none());
        leg.dirty = true;
        let peer = self.peers.get_mut(&uid).expect("checked above");
        peer.publish = Some(leg);
        let answer = match (answer, missing) {
            (Ok(a), None) => a,
            (Err(e), _) => {
                let _ = self.room.unpublish(uid, req.sid);
                return Err(ApiError::bad_request(format!("the SDP offer cannot be accepted: {e}")));
            }
            (Ok(_), Some(m)) => {
                let _ = self.room.unpublish(uid, req.sid);
                return Err(ApiError::bad_request(format!("the offer has no media line {m}")));
            }
        };
        let rids: Vec<Rid> = req.rids.iter().map(|r| Rid::from(r.as_str())).collect();
        for (mid, kind) in [(audio_mid, TrackKind::Audio), (video_mid, TrackKind::Video)] {
            let Some(mid) = mid else { continue };
            let Some(codec) = codec_of(mid) else {
                // Not in the offer: `missing` caught it above.
                continue;
            };
            peer.tracks.push(PubTrack {
                codec,
                sid: req.sid,
                kind,
                screen: req.screen,
                mid,
                rids: if kind == TrackKind::Video { rids.clone() } else { Vec::new() },
                layers: if kind == TrackKind::Video { granted.layers } else { 1 },
                height: granted.height,
                meters: [Meter::default(); Layer::COUNT],
                throttle: KeyframeThrottle::default(),
                codecs: Vec::new(),
                subscribers: Vec::new(),
                told_active: Vec::new(),
            });
        }
        Ok(ServerFrame::CallPublished {
            rid: req.rid,
            stream: wire_stream(req.sid, &granted),
            sdp: answer.to_sdp_string(),
        })
    }

    /// A remote description made str0m panic (see [`remote_sdp`]): the participant's peer
    /// connections are in an unknown state, so the participant is taken out of the call (reason
    /// lost; it may rejoin) and the request is refused.
    fn sdp_panicked(&mut self, uid: i64) -> ApiError {
        tracing::warn!(gid = self.gid, uid, "a remote SDP made the WebRTC library panic; participant taken out");
        let _ = self.room.leave(uid, LeaveReason::Lost);
        ApiError::bad_request("the SDP cannot be accepted: the WebRTC library failed on it; rejoin the call")
    }

    fn unpublish(&mut self, uid: i64, sid: u32, sdp: Option<String>) -> Result<Option<String>, ApiError> {
        let offer = match &sdp {
            Some(s) if s.len() > MAX_SDP => {
                return Err(ApiError::new(ErrorCode::TooLarge, "sdp is larger than 64 KiB"))
            }
            Some(s) => {
                let wanted = self.peers.get(&uid).map(|p| kept_codecs(p, Some(sid))).unwrap_or_default();
                let (narrowed, _) = narrow(s, &wanted)?;
                Some(
                    SdpOffer::from_sdp_string(&narrowed)
                        .map_err(|e| ApiError::bad_request(format!("bad SDP offer: {e}")))?,
                )
            }
            None => None,
        };
        self.room.unpublish(uid, sid).map_err(room_error)?;
        let Some(offer) = offer else { return Ok(None) };
        let leg = self
            .peers
            .get_mut(&uid)
            .and_then(|p| p.publish.as_mut())
            .ok_or_else(|| ApiError::bad_request("no publish connection to renegotiate"))?;
        leg.dirty = true;
        let Some(answer) = remote_sdp(|| leg.rtc.sdp_api().accept_offer(offer)) else {
            return Err(self.sdp_panicked(uid));
        };
        let answer = answer.map_err(|e| ApiError::bad_request(format!("the SDP offer cannot be accepted: {e}")))?;
        Ok(Some(answer.to_sdp_string()))
    }

    fn answer(&mut self, now: Instant, uid: i64, sdp: &str) -> Result<(), ApiError> {
        if sdp.len() > MAX_SDP {
            return Err(ApiError::new(ErrorCode::TooLarge, "sdp is larger than 64 KiB"));
        }
        let peer = self.peers.get_mut(&uid).ok_or_else(|| ApiError::not_found("not in this call"))?;
        let Some(pending) = peer.pending.take() else {
            return Err(ApiError::new(ErrorCode::Conflict, "no offer is waiting for an answer"));
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                peer.pending = Some(pending);
                return Err(ApiError::bad_request(format!("bad SDP answer: {e}")));
            }
        };
        let leg = peer.subscribe.as_mut().expect("an offer implies a subscribe leg");
        leg.dirty = true;
        let Some(accepted) = remote_sdp(|| leg.rtc.sdp_api().accept_answer(pending, answer)) else {
            return Err(self.sdp_panicked(uid));
        };
        if let Err(e) = accepted {
            // The answer did not fit the offer: offer anew.
            peer.renegotiate = true;
            self.negotiate(now, uid);
            return Err(ApiError::bad_request(format!("the SDP answer does not match the offer: {e}")));
        }
        if std::mem::take(&mut peer.renegotiate) {
            self.negotiate(now, uid);
        }
        Ok(())
    }

    /// Offers the subscribe leg anew if its media lines changed (or marks it for after the
    /// answer that is awaited).
    fn negotiate(&mut self, now: Instant, uid: i64) {
        let has_leg = self.peers.get(&uid).is_some_and(|p| p.subscribe.is_some());
        if !has_leg {
            let leg = self.new_leg(now, uid, Leg::Subscribe);
            if let Some(p) = self.peers.get_mut(&uid) {
                p.subscribe = Some(leg);
            }
        }
        // Which media lines does the subscriber have, and which must be added?
        let mut tracks = Vec::new();
        let mut to_add: Vec<(i64, usize, usize, MediaKind, String, CallTrack, &'static str)> = Vec::new();
        for p in self.peers.values() {
            for (ti, t) in p.tracks.iter().enumerate() {
                for (fi, f) in t.subscribers.iter().enumerate() {
                    if f.subscriber != uid {
                        continue;
                    }
                    let track = |mid: String| CallTrack {
                        mid,
                        publisher: p.address.clone(),
                        sid: t.sid,
                        kind: wire_kind(t.kind),
                        codec: t.codec.to_string(),
                    };
                    match f.mid {
                        Some(mid) => tracks.push(track(mid.to_string())),
                        None => {
                            let kind = match t.kind {
                                TrackKind::Audio => MediaKind::Audio,
                                TrackKind::Video => MediaKind::Video,
                            };
                            to_add.push((
                                p.uid,
                                ti,
                                fi,
                                kind,
                                format!("{}-{}", p.address, t.sid),
                                track(String::new()),
                                t.codec,
                            ));
                        }
                    }
                }
            }
        }
        let Some(peer) = self.peers.get_mut(&uid) else { return };
        if peer.pending.is_some() {
            peer.renegotiate = true;
            return;
        }
        let to_stop = std::mem::take(&mut peer.to_stop);
        let leg = peer.subscribe.as_mut().expect("created above");
        let mut api = leg.rtc.sdp_api();
        let mut new_mids = Vec::new();
        for (_, _, _, kind, stream_id, track, codec) in &mut to_add {
            // Past `SPARE_LINES` unused lines, an unused line of the same kind is taken again
            // (with its forwarder) instead of adding one.
            let wanted = match kind {
                MediaKind::Audio => TrackKind::Audio,
                MediaKind::Video => TrackKind::Video,
            };
            let reused = (peer.spare.len() >= SPARE_LINES)
                .then(|| peer.spare.iter().position(|l| l.kind == wanted && l.codec == *codec))
                .flatten()
                .map(|i| peer.spare.remove(i));
            let mid = match &reused {
                Some(line) => {
                    api.set_direction(line.mid, Direction::SendOnly);
                    line.mid
                }
                None => api.add_media(*kind, Direction::SendOnly, Some(stream_id.clone()), None, None),
            };
            new_mids.push((mid, reused));
            track.mid = mid.to_string();
            tracks.push(track.clone());
        }
        for line in to_stop {
            // Inactive, not stopped: Chromium (156) answered an offer that stopped lines it had
            // received media on with a DTLS close_notify, ending the whole connection.
            api.set_direction(line.mid, Direction::Inactive);
            peer.spare.push(line);
        }
        let applied = api.apply();
        // Record the mids in the forwarders.
        for ((publisher, ti, fi, ..), (mid, reused)) in to_add.into_iter().zip(new_mids) {
            if let Some(f) = self
                .peers
                .get_mut(&publisher)
                .and_then(|p| p.tracks.get_mut(ti))
                .and_then(|t| t.subscribers.get_mut(fi))
            {
                f.mid = Some(mid);
                if let Some(line) = reused {
                    f.fwd = line.fwd;
                    f.ext_seq = line.ext_seq;
                }
            }
        }
        let peer = self.peers.get_mut(&uid).expect("present");
        if let Some(leg) = peer.subscribe.as_mut() {
            leg.dirty = true;
        }
        if let Some((offer, pending)) = applied {
            peer.pending = Some(pending);
            // Each line lists only the codec its track carries (str0m offers every codec it has).
            let sdp = offer.to_sdp_string();
            let wanted: Vec<(String, Option<&'static str>)> = tracks
                .iter()
                .filter_map(|t| Some((t.mid.clone(), Some(super::sdp::forwarded_codec(&t.codec)?))))
                .collect();
            let sdp = match super::sdp::narrow_codecs(&sdp, &wanted) {
                Ok((narrowed, _)) => narrowed,
                Err(e) => {
                    tracing::warn!(uid, error = %e, "subscribe offer not narrowed to the tracks' codecs");
                    sdp
                }
            };
            let frame = ServerFrame::CallOffer { sdp, tracks };
            let json: Arc<str> = serde_json::to_string(&frame).expect("frames serialise").into();
            deliver(peer, &json, &mut self.slow);
        }
    }

    // ---------------------------------------------------------------- room events

    /// Drains the room's events: keeps the media state in step and tells who should hear.
    fn room_events(&mut self, now: Instant) {
        loop {
            // Sessions that fell behind (on events queued since the last round) leave first.
            self.drop_slow();
            let Some(RoomEvent { to, kind }) = self.room.poll_event() else { break };
            let mut only_publisher = None;
            let event = match kind {
                RoomEventKind::ParticipantJoined { who, .. } => self
                    .roster(who)
                    .into_iter()
                    .find(|p| self.by_address.get(&p.address) == Some(&who))
                    .map(|participant| CallEvent::Joined { participant }),
                RoomEventKind::ParticipantUpdated { who, permissions, admin_muted } => {
                    self.peers.get(&who).map(|p| CallEvent::Updated {
                        address: p.address.clone(),
                        permissions: super::wire_permissions(permissions),
                        admin_muted: wire_mute(admin_muted),
                    })
                }
                RoomEventKind::Talking { who, talking } => {
                    self.peers.get(&who).map(|p| CallEvent::Talking { address: p.address.clone(), talking })
                }
                RoomEventKind::ParticipantLeft { who, reason } => {
                    let (reason, by) = match (self.leave_reasons.remove(&who), reason) {
                        (Some(r), _) => (r, None),
                        (None, LeaveReason::Left) => (CallLeaveReason::Left, None),
                        (None, LeaveReason::Lost) => (CallLeaveReason::Lost, None),
                        (None, LeaveReason::Removed { by }) => {
                            (CallLeaveReason::Removed, self.peers.get(&by).map(|p| p.address.clone()))
                        }
                        (None, LeaveReason::DurationExceeded) => (CallLeaveReason::Duration, None),
                    };
                    tracing::debug!(gid = self.gid, uid = who, ?reason, "participant left");
                    let ev = self.peers.get(&who).map(|p| CallEvent::Left { address: p.address.clone(), reason, by });
                    if let Some(ev) = &ev {
                        self.send(&to, ev);
                        // The one that fell behind hears it in the slot kept for it.
                        if let Some(p) = self.peers.get(&who).filter(|p| p.slow) {
                            let _ = p.out.try_send(event_json(self.gid, ev));
                        }
                    }
                    self.remove_peer(who, reason);
                    continue;
                }
                RoomEventKind::StreamPublished { stream, info } => self.peers.get(&stream.publisher).map(|p| {
                    CallEvent::Published { address: p.address.clone(), stream: wire_stream(stream.sid, &info) }
                }),
                RoomEventKind::StreamMuted { stream, muted } => self
                    .peers
                    .get(&stream.publisher)
                    .map(|p| CallEvent::Muted { address: p.address.clone(), sid: stream.sid, muted: wire_mute(muted) }),
                RoomEventKind::StreamUnpublished { stream, reason } => {
                    let reason = match reason {
                        UnpublishReason::Unpublished => StreamEndReason::Unpublished,
                        UnpublishReason::HungUp { .. } => StreamEndReason::HungUp,
                        UnpublishReason::OwnerLeft => StreamEndReason::OwnerLeft,
                        UnpublishReason::PermissionRevoked => StreamEndReason::PermissionRevoked,
                    };
                    if let Some(p) = self.peers.get_mut(&stream.publisher) {
                        p.tracks.retain(|t| t.sid != stream.sid);
                        p.ssrcs.clear();
                    }
                    self.peers.get(&stream.publisher).map(|p| CallEvent::Unpublished {
                        address: p.address.clone(),
                        sid: stream.sid,
                        reason,
                    })
                }
                RoomEventKind::SubscriptionAdded { subscriber, stream, subscription }
                | RoomEventKind::SubscriptionUpdated { subscriber, stream, subscription } => {
                    let added = self.subscribe_media(now, subscriber, stream, subscription);
                    if added {
                        self.negotiate(now, subscriber);
                    }
                    only_publisher = Some(stream.publisher);
                    self.peers.get(&subscriber).map(|p| CallEvent::Subscriber {
                        address: p.address.clone(),
                        sid: stream.sid,
                        joined: true,
                    })
                }
                RoomEventKind::SubscriptionRemoved { subscriber, stream, .. } => {
                    self.unsubscribe_media(subscriber, stream);
                    self.negotiate(now, subscriber);
                    only_publisher = Some(stream.publisher);
                    self.peers.get(&subscriber).map(|p| CallEvent::Subscriber {
                        address: p.address.clone(),
                        sid: stream.sid,
                        joined: false,
                    })
                }
            };
            let Some(event) = event else { continue };
            match only_publisher {
                Some(p) if to.contains(&p) => self.send(&[p], &event),
                Some(_) => {}
                None => self.send(&to, &event),
            }
        }
    }

    fn send(&mut self, to: &[i64], event: &CallEvent) {
        let json = event_json(self.gid, event);
        for uid in to {
            if let Some(p) = self.peers.get_mut(uid) {
                deliver(p, &json, &mut self.slow);
            }
        }
    }

    /// Creates or updates the forwarders of a subscription. Returns whether media lines were
    /// added (so the subscribe leg must be offered anew).
    fn subscribe_media(&mut self, now: Instant, subscriber: i64, stream: StreamId<i64>, sub: Subscription) -> bool {
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
                    let fwd = match t.kind {
                        TrackKind::Audio => Forwarder::audio(rand::random()),
                        TrackKind::Video => Forwarder::video(rand::random()),
                    };
                    t.subscribers.push(Fwd {
                        subscriber,
                        mid: None,
                        fwd,
                        selector: LayerSelector::default(),
                        wanted_height: sub.wanted_height,
                        ext_seq: None,
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

    fn unsubscribe_media(&mut self, subscriber: i64, stream: StreamId<i64>) {
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

    fn remove_peer(&mut self, uid: i64, reason: CallLeaveReason) {
        let Some(p) = self.peers.remove(&uid) else { return };
        let reason = serde_json::to_value(reason).unwrap_or_default();
        self.hooks.emit("participant.left", serde_json::json!({ "gid": self.gid, "uid": uid, "reason": reason }));
        self.by_address.remove(&p.address);
        self.talk.remove(uid);
        for leg in [p.publish, p.subscribe].into_iter().flatten() {
            self.net.unregister(&leg.ufrag);
        }
        // Its subscriptions were removed by the room before it left; drop any forwarder left.
        for other in self.peers.values_mut() {
            for t in &mut other.tracks {
                t.subscribers.retain(|f| f.subscriber != uid);
            }
        }
    }

    // ---------------------------------------------------------------- media

    fn datagrams(&mut self, batch: Vec<Datagram>) {
        for d in batch {
            let Some(peer) = self.peers.get_mut(&d.peer.uid) else { continue };
            let Some(leg) = peer.leg(d.peer.leg) else { continue };
            let Ok(contents) = (&d.data[..]).try_into() else { continue };
            leg.last_rx = d.at;
            if let Some(tcp) = d.tcp {
                if !leg.tcp.iter().any(|(a, _)| *a == d.source) {
                    // Connections that closed since go (`net` keeps a few per leg).
                    leg.tcp.retain(|(_, tx)| !tx.is_closed());
                    leg.tcp.push((d.source, tcp));
                }
            }
            let input = Input::Receive(
                d.at,
                Receive { proto: d.proto, source: d.source, destination: d.destination, contents },
            );
            if let Err(e) = leg.rtc.handle_input(input) {
                tracing::debug!(uid = d.peer.uid, error = %e, "peer input");
            }
            // In RTP mode str0m holds one received packet until the next poll: drain now.
            self.drain(d.at, d.peer);
        }
    }

    fn timeouts(&mut self, now: Instant) {
        self.leg_timeouts(now);
        self.room.handle_timeout(now);
        self.talk.handle_timeout(now);
        self.talk_events();
        if now.saturating_duration_since(self.last_tick) >= TICK {
            self.last_tick = now;
            self.liveness(now);
            self.select_layers(now, None);
        }
        self.room_events(now);
    }

    /// Hands `now` to every peer connection whose timeout is due and marks it for draining.
    /// Returns whether any was due.
    fn leg_timeouts(&mut self, now: Instant) -> bool {
        let mut any = false;
        for p in self.peers.values_mut() {
            for (leg, which) in [(&mut p.publish, Leg::Publish), (&mut p.subscribe, Leg::Subscribe)] {
                let Some(leg) = leg else { continue };
                if leg.next_timeout <= now {
                    any = true;
                    let _ = leg.rtc.handle_input(Input::Timeout(now));
                    if !leg.dirty {
                        leg.dirty = true;
                        self.dirty.push(PeerKey { uid: p.uid, leg: which });
                    }
                }
            }
        }
        any
    }

    /// Removes participants whose peer connections went silent or never connected.
    fn liveness(&mut self, now: Instant) {
        let silent = Duration::from_secs(self.cfg.rtc_peer_timeout_secs);
        let connect = Duration::from_secs(self.cfg.rtc_connect_timeout_secs);
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
            tracing::debug!(gid = self.gid, uid, "peer timed out");
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

    /// Drains every leg touched since the last flush, until no more work appears.
    fn flush(&mut self, now: Instant) {
        // Legs created since (they start dirty but are not in the list).
        for p in self.peers.values() {
            for (leg, which) in [(&p.publish, Leg::Publish), (&p.subscribe, Leg::Subscribe)] {
                if leg.as_ref().is_some_and(|l| l.dirty) && !self.dirty.contains(&PeerKey { uid: p.uid, leg: which }) {
                    self.dirty.push(PeerKey { uid: p.uid, leg: which });
                }
            }
        }
        // Writing forwarded packets makes str0m ask for a timeout at `now` before it releases
        // them (its pacer): serve those here, up to a few rounds, so they leave in this flush's
        // batch instead of costing another trip through the scheduler and another send.
        let mut rounds = 0;
        loop {
            if self.dirty.is_empty() && self.work.is_empty() && self.rtp.is_empty() {
                rounds += 1;
                if rounds > IMMEDIATE_ROUNDS || !self.leg_timeouts(now) {
                    break;
                }
            }
            while let Some(key) = self.dirty.pop() {
                self.drain(now, key);
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
                    Work::Lost(uid) => {
                        let _ = self.room.leave(uid, LeaveReason::Lost);
                    }
                }
            }
        }
        self.room_events(now);
        if !self.out.is_empty() {
            self.net.send_batch(&mut self.out);
        }
        let (packets, bytes) = std::mem::take(&mut self.forwarded);
        if packets > 0 {
            let m = crate::metrics::metrics();
            m.forwarded_packets.inc_by(packets);
            m.forwarded_bytes.inc_by(bytes);
        }
    }

    fn drain(&mut self, now: Instant, key: PeerKey) {
        let max_segments = self.net.max_segments();
        let Some(peer) = self.peers.get_mut(&key.uid) else { return };
        let mut estimate = None;
        let Some(leg) = peer.leg(key.leg) else { return };
        leg.dirty = false;
        loop {
            match leg.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    leg.next_timeout = t.max(now);
                    break;
                }
                Ok(Output::Transmit(t)) => match t.proto {
                    Protocol::Udp => self.out.push(t.destination, &t.contents, max_segments),
                    _ => {
                        if let Some((_, tx)) = leg.tcp.iter().find(|(a, _)| *a == t.destination) {
                            let _ = tx.try_send(t.contents.to_vec());
                        }
                    }
                },
                Ok(Output::Event(e)) => match e {
                    Event::Connected => leg.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        tracing::debug!(uid = key.uid, leg = ?key.leg, "ICE disconnected");
                    }
                    Event::RtpPacket(pkt) => self.rtp.push((key.uid, pkt)),
                    Event::KeyframeRequest(r) => self.work.push(Work::Keyframe(key.uid, r.mid)),
                    Event::EgressBitrateEstimate(BweKind::Twcc { estimate: e, .. }) => estimate = Some(e.as_u64()),
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(uid = key.uid, error = %e, "peer connection failed");
                    self.work.push(Work::Lost(key.uid));
                    break;
                }
            }
        }
        if !leg.rtc.is_alive() {
            tracing::debug!(uid = key.uid, leg = ?key.leg, "peer connection closed");
            self.work.push(Work::Lost(key.uid));
        }
        if let Some(bps) = estimate {
            peer.bwe_bps = bps;
        }
    }

    /// Forwards one RTP packet from `uid`'s publish leg to the subscribers of its track.
    fn forward(&mut self, uid: i64, pkt: RtpPacket) {
        let now = pkt.timestamp;
        let ssrc = *pkt.header.ssrc;
        let Some(peer) = self.peers.get_mut(&uid) else { return };
        let (ti, layer) = match peer.ssrcs.get(&ssrc) {
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
                peer.ssrcs.insert(ssrc, (ti, layer));
                (ti, layer)
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
        if kind == TrackKind::Audio {
            if let Some(level) = pkt.header.ext_vals.audio_level {
                self.talk.on_level(now, uid, level.unsigned_abs().min(127));
            }
        }
        let mut subs = std::mem::take(&mut self.peers.get_mut(&uid).expect("present").tracks[ti].subscribers);
        let mut keyframe_for = [false; Layer::COUNT];
        for f in subs.iter_mut() {
            if !self.room.forward_allowed(uid, sid, f.subscriber, kind) {
                continue;
            }
            // Forwarding starts only once the subscriber can receive: its first packet must be
            // the keyframe the forwarder waits for, not one lost before DTLS was up.
            let Some(sub) = self.peers.get_mut(&f.subscriber) else { continue };
            let Some(leg) = sub.subscribe.as_mut() else { continue };
            let Some(mid) = f.mid else { continue };
            if !leg.connected || leg.rtc.direct_api().stream_tx_by_mid(mid, None).is_none() {
                continue;
            }
            let decision = f.fwd.on_packet(now, &info);
            if let Some(l) = f.fwd.poll_keyframe_request(now) {
                keyframe_for[l.index()] = true;
            }
            let Decision::Forward { seq, ts, .. } = decision else { continue };
            let out_pt = match f.pts.iter().find(|(p, _)| *p == pt) {
                Some(&(_, o)) => o,
                None => {
                    let Some(o) = leg
                        .rtc
                        .codec_config()
                        .find(|p| sfu_codec(p.spec().codec) == codec && codec != Codec::Other)
                        .map(|p| *p.pt())
                    else {
                        continue;
                    };
                    f.pts.push((pt, o));
                    o
                }
            };
            let ext = match f.ext_seq {
                None => u64::from(seq),
                Some(last) => {
                    let delta = seq.wrapping_sub(last as u16) as i16;
                    last.wrapping_add_signed(i64::from(delta))
                }
            };
            f.ext_seq = Some(ext);
            let mut api = leg.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else { continue };
            let ext_vals = ExtensionValues {
                audio_level: pkt.header.ext_vals.audio_level,
                voice_activity: pkt.header.ext_vals.voice_activity,
                video_orientation: pkt.header.ext_vals.video_orientation,
                ..Default::default()
            };
            tx.write_rtp(
                RtpWrite::new(out_pt.into(), SeqNo::from(ext), ts, now, pkt.payload.clone())
                    .marker(pkt.header.marker)
                    .ext_vals(ext_vals)
                    .nackable(kind == TrackKind::Video),
            );
            if kind == TrackKind::Video {
                leg.video_sent.add(now, pkt.payload.len());
            }
            self.forwarded.0 += 1;
            self.forwarded.1 += pkt.payload.len() as u64;
            if !leg.dirty {
                leg.dirty = true;
                self.dirty.push(PeerKey { uid: f.subscriber, leg: Leg::Subscribe });
            }
        }
        let peer = self.peers.get_mut(&uid).expect("present");
        peer.tracks[ti].subscribers = subs;
        for (i, wanted) in keyframe_for.iter().enumerate() {
            if *wanted {
                self.request_keyframe(now, uid, ti, Layer::new(i as u8).expect("index below COUNT"));
            }
        }
    }

    /// Asks the publisher for a keyframe on one layer, within the track's throttle.
    fn request_keyframe(&mut self, now: Instant, uid: i64, ti: usize, layer: Layer) {
        let Some(peer) = self.peers.get_mut(&uid) else { return };
        let Some(t) = peer.tracks.get_mut(ti) else { return };
        if !t.throttle.allow(now, layer) {
            return;
        }
        let (mid, rid) = (t.mid, t.rids.get(layer.index()).copied());
        let Some(leg) = peer.publish.as_mut() else { return };
        let mut api = leg.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            crate::metrics::metrics().keyframe_requests.inc();
            if !leg.dirty {
                leg.dirty = true;
                self.dirty.push(PeerKey { uid, leg: Leg::Publish });
            }
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

    /// Chooses every video forwarder's layer (of one subscriber, or all), tells subscribers which
    /// layer they get and publishers which layers anyone watches.
    fn select_layers(&mut self, now: Instant, only: Option<i64>) {
        let max_height = self.room.settings().max_height;
        // Each subscriber's video budget, per track: screens first, then cameras in the order
        // published (see `select::allocate`). Audio comes off the top: ~50 kbit/s.
        let mut wanted: HashMap<i64, Vec<(i64, usize, bool, select::TrackRate)>> = HashMap::new();
        for p in self.peers.values() {
            for (ti, t) in p.tracks.iter().enumerate().filter(|(_, t)| t.kind == TrackKind::Video) {
                let (infos, n) = t.layer_infos(now);
                for f in &t.subscribers {
                    let current = f.fwd.current_layer().filter(|l| l.index() < n);
                    let rate = select::TrackRate {
                        lowest_bps: infos[0].bitrate_bps,
                        current_bps: current.map_or(0, |l| infos[l.index()].bitrate_bps),
                    };
                    wanted.entry(f.subscriber).or_default().push((p.uid, ti, t.screen, rate));
                }
            }
        }
        let mut budgets: HashMap<(i64, i64, usize), u64> = HashMap::new();
        for (subscriber, mut tracks) in wanted {
            tracks.sort_by_key(|&(publisher, ti, screen, _)| (!screen, publisher, ti));
            let total = self.peers.get(&subscriber).map_or(0, |p| p.bwe_bps).saturating_sub(50_000);
            let sent = self.peers.get(&subscriber).and_then(|p| p.subscribe.as_ref()).map_or(0, |l| {
                if l.video_sent.sending(now) {
                    l.video_sent.bps
                } else {
                    0
                }
            });
            let rates: Vec<select::TrackRate> = tracks.iter().map(|t| t.3).collect();
            for ((publisher, ti, ..), budget) in tracks.into_iter().zip(select::allocate(total, sent, &rates)) {
                budgets.insert((subscriber, publisher, ti), budget);
            }
        }
        let mut tell_layer: Vec<(i64, CallEvent)> = Vec::new();
        let mut tell_active: Vec<(i64, CallEvent)> = Vec::new();
        let mut desired: HashMap<i64, u64> = HashMap::new();
        for p in self.peers.values_mut() {
            let publisher = p.uid;
            for (ti, t) in p.tracks.iter_mut().enumerate().filter(|(_, t)| t.kind == TrackKind::Video) {
                let (infos, n) = t.layer_infos(now);
                let layers = &infos[..n];
                let mut active = vec![false; n];
                for f in t.subscribers.iter_mut() {
                    if only.is_none_or(|o| o == f.subscriber) {
                        // A frozen picture is worse than a congested one: the lowest layer stays
                        // while the budget covers half of it (GCC's estimate dips well below the
                        // link on every probe and loss burst), a quarter when there is no cheaper
                        // layer to fall back to; below that, video pauses.
                        let budget = budgets.get(&(f.subscriber, publisher, ti)).copied().unwrap_or(0);
                        let lowest = layers[0].bitrate_bps;
                        let keep = if n == 1 { lowest / 4 } else { lowest / 2 };
                        let available_bps = if budget >= keep { budget.max(lowest) } else { budget };
                        let demand =
                            Demand { wanted_height: f.wanted_height, room_max_height: max_height, available_bps };
                        let target = f.selector.select(now, layers, demand);
                        if f.fwd.target_layer() != target {
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
                    // What would this subscriber take at best: the probe target of its BWE.
                    let best = layers
                        .iter()
                        .filter(|l| {
                            f.wanted_height.is_none_or(|h| l.height <= h.max(layers[0].height))
                                && max_height.is_none_or(|m| l.height <= m)
                        })
                        .map(|l| l.bitrate_bps)
                        .max()
                        .unwrap_or(0);
                    *desired.entry(f.subscriber).or_default() += best + 50_000;
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
                // With any subscriber the lowest layer keeps flowing, even if every subscriber is
                // paused for bandwidth: its measured rate is what tells when it fits again (a
                // paused layer only has a nominal rate), and resuming needs no round trip.
                if !t.subscribers.is_empty() {
                    active[0] = true;
                }
                if t.told_active != active {
                    t.told_active = active.clone();
                    tell_active.push((p.uid, CallEvent::Layers { sid: t.sid, active }));
                }
            }
        }
        for (uid, bps) in desired {
            if let Some(leg) = self.peers.get_mut(&uid).and_then(|p| p.subscribe.as_mut()) {
                leg.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(bps));
            }
        }
        for (uid, ev) in tell_layer.into_iter().chain(tell_active) {
            self.send(&[uid], &ev);
        }
    }
}

fn wire_kind(k: TrackKind) -> WireKind {
    match k {
        TrackKind::Audio => WireKind::Audio,
        TrackKind::Video => WireKind::Video,
    }
}
