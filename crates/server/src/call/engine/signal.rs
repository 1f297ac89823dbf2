//! Signalling: joining, the call requests, and the SDP of both legs (publish offers from the
//! client, subscribe offers from the server, renegotiation).

use std::collections::HashMap;
use std::time::Instant;

use chorus_proto::call::{AdminAction, CallAudienceMember, CallLeaveReason, CallTrack, PublishRequest};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::{ErrorCode, GroupId};
use chorus_sfu::downlink::DownlinkEstimate;
use chorus_sfu::select::LayerPresence;
use chorus_sfu::switch::KeyframeThrottle;
use chorus_sfu::Meter;
use chorus_sfu::{Layer, LeaveReason, Mute, Publish, StreamId, StreamKind, Subscription, TrackKind};
use rand::distributions::{Alphanumeric, DistString};
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid, Rid};
use str0m::net::TcpType;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use super::state::{Peer, PeerLeg, PubTrack};
use super::wire::{deliver, frame_json, room_error, wire_kind, wire_stream};
use super::{mark_dirty, Engine, Join, Leg, Output, PeerKey};
use crate::call::sdp;
use crate::error::ApiError;

/// Most audience members in one `call_audience` page.
const AUDIENCE_PAGE: u32 = 100;
/// Largest SDP accepted from a client.
const MAX_SDP: usize = 64 * 1024;
/// Unused media lines a subscribe leg keeps before new subscriptions reuse them: without a bound,
/// someone publishing and unpublishing over and over would grow every subscriber's SDP forever.
const SPARE_LINES: usize = 8;

/// The media lines a `call_publish` names for its audio and video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishMids {
    pub audio: Option<Mid>,
    pub video: Option<Mid>,
}

/// A media line the next subscribe offer adds: which forwarder it carries and how it is
/// described to the subscriber.
struct NewLine {
    publisher: i64,
    /// Index of the track in the publisher's `tracks`.
    track: usize,
    /// Index of the forwarder in the track's `subscribers`.
    fwd: usize,
    kind: MediaKind,
    /// The `a=msid` stream id: `address-sid`.
    stream_id: String,
    wire: CallTrack,
    codec: &'static str,
}

/// The str0m configuration of a peer connection leg: ICE lite with our credentials, RTP mode
/// (we forward packets, not frames); `bwe_start` turns on bandwidth estimation (subscribe legs),
/// with statistics each second: whether TWCC feedback arrives, and the receiver reports' loss
/// (see `chorus_sfu::downlink`).
pub(crate) fn leg_config(creds: IceCreds, bwe_start: Option<Bitrate>) -> RtcConfig {
    let config = Rtc::builder()
        .set_crypto_provider(super::dtls::provider())
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_local_ice_credentials(creds);
    match bwe_start {
        Some(b) => config.enable_bwe(Some(b)).set_stats_interval(Some(STATS_INTERVAL)),
        None => config,
    }
}

/// How often a subscribe leg reports statistics.
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs str0m's handling of a remote description, catching a panic. str0m 0.25 asserts some SDP
/// invariants instead of returning an error: fuzz/sdp found an offer that binds one payload type
/// to codecs in two bundled media lines ("Pt locked multiple times"). A remote description is
/// untrusted input; after a panic the leg must not be used again (see `Engine::sdp_panicked`).
pub(crate) fn remote_sdp<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Checks what a `call_publish` says about itself, before the room or the SDP is looked at:
/// the media lines it names for audio and video.
pub(crate) fn check_publish(req: &PublishRequest) -> Result<PublishMids, ApiError> {
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
            let mut offered = sdp::simulcast_send_rids(&req.sdp, &m.to_string());
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
    Ok(PublishMids { audio: audio_mid, video: video_mid })
}

/// A rid is 1 to 8 letters, digits, `-` or `_` (RFC 8851 allows more; browsers use these).
fn valid_rid(r: &str) -> bool {
    (1..=8).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `sdp::narrow_codecs`, its failure a `bad_request`.
fn narrow(sdp: &str, wanted: &[(String, Option<&'static str>)]) -> Result<(String, Vec<sdp::Chosen>), ApiError> {
    sdp::narrow_codecs(sdp, wanted).map_err(|e| ApiError::bad_request(format!("the SDP offer cannot be accepted: {e}")))
}

/// The media lines a participant's publish leg already carries (but stream `except`'s), each
/// keeping its codec when the leg is offered anew (`sdp::narrow_codecs`).
fn kept_codecs(p: &Peer, except: Option<u32>) -> Vec<(String, Option<&'static str>)> {
    p.tracks.iter().filter(|t| Some(t.sid) != except).map(|t| (t.mid.to_string(), Some(t.codec))).collect()
}

fn valid_mid(m: &str) -> bool {
    (1..=16).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_graphic())
}

impl Engine {
    pub(super) fn join(&mut self, now: Instant, j: Join) -> Result<ServerFrame, ApiError> {
        let Join { uid, address, name, session, permissions, sink, rid, .. } = j;
        if self.peers.contains_key(&uid) {
            // The same user from another session: the new one replaces the old.
            self.leave_reasons.insert(uid, CallLeaveReason::Replaced);
            let _ = self.room.leave(uid, LeaveReason::Left);
            self.room_events(now);
        }
        self.room.join(now, uid, permissions).map_err(room_error)?;
        if !self.started {
            self.started = true;
            self.webhook("room.started", serde_json::json!({ "gid": self.cfg.gid }));
        }
        self.webhook("participant.joined", serde_json::json!({ "gid": self.cfg.gid, "uid": uid }));
        self.by_address.insert(address.clone(), uid);
        self.peers.insert(
            uid,
            Peer {
                uid,
                address: address.clone(),
                name,
                session,
                sink,
                slow: false,
                publish: None,
                subscribe: None,
                tracks: Vec::new(),
                ssrcs: HashMap::new(),
                pending: None,
                renegotiate: false,
                ice_restart: false,
                to_stop: Vec::new(),
                spare: Vec::new(),
                bwe_bps: self.cfg.initial_bitrate_kbps * 1000,
                downlink: DownlinkEstimate::new(self.cfg.initial_bitrate_kbps * 1000),
                _live: crate::metrics::Live::new(&crate::metrics::metrics().call_participants),
            },
        );
        Ok(ServerFrame::CallJoined {
            rid,
            gid: chorus_proto::GroupId(self.cfg.gid),
            address,
            permissions: crate::call::wire_permissions(permissions),
            settings: crate::call::wire_settings(self.room.settings()),
            participants: self.roster(uid),
            ice_servers: Vec::new(),
            recording: self.recording.is_some().then(|| self.recording_state()),
            audience: self.room.settings().live.then(|| self.room.audience_count() as u32),
        })
    }

    /// Takes participant `uid` out: its legs are forgotten, its session released.
    pub(super) fn remove_peer(&mut self, uid: i64, reason: CallLeaveReason) {
        let Some(p) = self.peers.remove(&uid) else { return };
        let reason = serde_json::to_value(reason).unwrap_or_default();
        let body = serde_json::json!({ "gid": self.cfg.gid, "uid": uid, "reason": reason });
        self.webhook("participant.left", body);
        self.by_address.remove(&p.address);
        self.talk.remove(uid);
        for (leg, which) in [(p.publish, Leg::Publish), (p.subscribe, Leg::Subscribe)] {
            if let Some(leg) = leg {
                self.out.push_back(Output::Unregister { ufrag: leg.ufrag, peer: PeerKey { uid, leg: which } });
            }
        }
        self.dirty.retain(|k| k.uid != uid);
        self.out.push_back(Output::Release(p.sink));
        // Its subscriptions were removed by the room before it left; drop any forwarder left.
        for other in self.peers.values_mut() {
            for t in &mut other.tracks {
                t.subscribers.retain(|f| f.subscriber != uid);
            }
        }
    }

    fn uid_of(&self, address: &str) -> Result<i64, ApiError> {
        self.by_address.get(address).copied().ok_or_else(|| ApiError::not_found("no such participant in the call"))
    }

    pub(super) fn request(&mut self, now: Instant, uid: i64, frame: ClientFrame) -> ServerFrame {
        let rid = frame.rid().map(str::to_string);
        let r: Result<ServerFrame, ApiError> = match frame {
            ClientFrame::CallPublish(req) => self.publish(now, uid, req),
            ClientFrame::CallUnpublish { rid, sid, sdp } => {
                self.unpublish(uid, sid, sdp).map(|sdp| ServerFrame::CallSdp { rid, sdp })
            }
            ClientFrame::CallRestart { rid, sdp } => {
                self.restart(now, uid, sdp).map(|sdp| ServerFrame::CallSdp { rid, sdp })
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
            ClientFrame::CallHand { rid, raised } => {
                self.room.raise_hand(uid, raised).map_err(room_error).map(|_| ServerFrame::Ok { rid })
            }
            ClientFrame::CallAudience { rid, after, limit, hands } => self.audience_page(uid, rid, after, limit, hands),
            _ => Err(ApiError::bad_request("not a call request")),
        };
        r.unwrap_or_else(|e| super::wire::error_frame(rid, &e))
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
            AdminAction::Stage | AdminAction::Unstage => {
                let t = target()?;
                self.room.set_stage(uid, t, action == AdminAction::Stage).map_err(room_error)?;
            }
        }
        Ok(())
    }

    /// A page of the audience (`call_audience`), with each member's address and name.
    fn audience_page(
        &self,
        uid: i64,
        rid: Option<String>,
        after: Option<u64>,
        limit: Option<u32>,
        hands: bool,
    ) -> Result<ServerFrame, ApiError> {
        let limit = limit.unwrap_or(AUDIENCE_PAGE);
        if !(1..=AUDIENCE_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(format!("limit must be between 1 and {AUDIENCE_PAGE}")));
        }
        let page = self.room.audience_page(uid, after.unwrap_or(0), limit as usize, hands).map_err(room_error)?;
        let members = page
            .entries
            .iter()
            .filter_map(|e| {
                let p = self.peers.get(&e.who)?;
                Some(CallAudienceMember { address: p.address.clone(), name: p.name.clone(), hand: e.hand })
            })
            .collect();
        Ok(ServerFrame::CallAudience {
            rid,
            gid: chorus_proto::GroupId(self.cfg.gid),
            count: page.count as u32,
            members,
            next: page.next,
        })
    }

    /// A new peer connection for `uid`'s `leg`, with fresh ICE credentials, routed to the engine.
    /// It is not yet marked dirty: whoever stores it marks it.
    fn new_leg(&mut self, now: Instant, uid: i64, leg: Leg) -> PeerLeg {
        let creds = IceCreds {
            ufrag: Alphanumeric.sample_string(&mut self.rng, 12),
            pass: Alphanumeric.sample_string(&mut self.rng, 24),
        };
        let start = (leg == Leg::Subscribe).then(|| Bitrate::kbps(self.cfg.initial_bitrate_kbps));
        let mut config = leg_config(creds.clone(), start);
        if let Some(cert) = &self.dtls_cert {
            config = config.set_dtls_cert(cert.clone());
        }
        let mut rtc = config.build(now);
        if let Ok(c) = Candidate::host(self.cfg.udp, "udp") {
            rtc.add_local_candidate(c);
        }
        if let Some(tcp) = self.cfg.tcp {
            if let Ok(c) = Candidate::builder().tcp().host(tcp).tcptype(TcpType::Passive).build() {
                rtc.add_local_candidate(c);
            }
        }
        self.out.push_back(Output::Register { ufrag: creds.ufrag.clone(), peer: PeerKey { uid, leg } });
        PeerLeg {
            rtc,
            ufrag: creds.ufrag,
            created: now,
            next_timeout: now,
            last_rx: now,
            connected: false,
            dirty: false,
            held: None,
            video_sent: Meter::default(),
            nacks_seen: Vec::new(),
            path: None,
            answered: None,
            remote_candidates: Vec::new(),
            inbox: Vec::new(),
        }
    }

    fn publish(&mut self, now: Instant, uid: i64, req: PublishRequest) -> Result<ServerFrame, ApiError> {
        let mids = check_publish(&req)?;
        let peer = self.peers.get(&uid).ok_or_else(|| ApiError::not_found("not in this call"))?;
        if peer.tracks.iter().any(|t| Some(t.mid) == mids.audio || Some(t.mid) == mids.video) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "a media line of this offer already carries another stream",
            ));
        }
        // One codec per media line: the ones already published keep theirs, the new ones get the
        // first the offer lists that the server forwards.
        let mut wanted = kept_codecs(peer, None);
        wanted.extend([mids.audio, mids.video].into_iter().flatten().map(|m| (m.to_string(), None)));
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
        leg.note_remote_sdp(&req.sdp);
        let Some(answer) = remote_sdp(|| leg.rtc.sdp_api().accept_offer(offer)) else {
            self.out.push_back(Output::Unregister { ufrag: leg.ufrag, peer: PeerKey { uid, leg: Leg::Publish } });
            return Err(self.sdp_panicked(uid));
        };
        let missing = [mids.audio, mids.video].into_iter().flatten().find(|m| leg.rtc.media(*m).is_none());
        mark_dirty(&mut self.dirty, &mut leg, PeerKey { uid, leg: Leg::Publish });
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
        for (mid, kind) in [(mids.audio, TrackKind::Audio), (mids.video, TrackKind::Video)] {
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
                presence: LayerPresence::new(now),
                rec: None,
                rec_asked: false,
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
        tracing::warn!(gid = self.cfg.gid, uid, "a remote SDP made the WebRTC library panic; participant taken out");
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
        mark_dirty(&mut self.dirty, leg, PeerKey { uid, leg: Leg::Publish });
        if let Some(sdp) = &sdp {
            leg.note_remote_sdp(sdp);
        }
        let Some(answer) = remote_sdp(|| leg.rtc.sdp_api().accept_offer(offer)) else {
            return Err(self.sdp_panicked(uid));
        };
        let answer = answer.map_err(|e| ApiError::bad_request(format!("the SDP offer cannot be accepted: {e}")))?;
        Ok(Some(answer.to_sdp_string()))
    }

    /// Accepts a new offer for `uid`'s publish leg carrying the media lines it has (each keeps
    /// its codec). New ICE credentials in it restart ICE: str0m answers with new local ones,
    /// which are routed here instead of the old.
    pub(super) fn reoffer(&mut self, uid: i64, sdp: &str) -> Result<String, ApiError> {
        if sdp.len() > MAX_SDP {
            return Err(ApiError::new(ErrorCode::TooLarge, "sdp is larger than 64 KiB"));
        }
        let peer = self.peers.get(&uid).ok_or_else(|| ApiError::not_found("not in this call"))?;
        let (narrowed, _) = narrow(sdp, &kept_codecs(peer, None))?;
        let offer =
            SdpOffer::from_sdp_string(&narrowed).map_err(|e| ApiError::bad_request(format!("bad SDP offer: {e}")))?;
        let leg = self
            .peers
            .get_mut(&uid)
            .and_then(|p| p.publish.as_mut())
            .ok_or_else(|| ApiError::bad_request("no publish connection to offer anew"))?;
        mark_dirty(&mut self.dirty, leg, PeerKey { uid, leg: Leg::Publish });
        leg.note_remote_sdp(sdp);
        let Some(answer) = remote_sdp(|| leg.rtc.sdp_api().accept_offer(offer)) else {
            return Err(self.sdp_panicked(uid));
        };
        let answer = answer.map_err(|e| ApiError::bad_request(format!("the SDP offer cannot be accepted: {e}")))?;
        self.follow_ufrag(uid, Leg::Publish);
        Ok(answer.to_sdp_string())
    }

    /// `call_restart`: restarts ICE on the publish leg with the client's offer (when it gives
    /// one) and on the subscribe leg with a new offer of ours (when it has one).
    fn restart(&mut self, now: Instant, uid: i64, sdp: Option<String>) -> Result<Option<String>, ApiError> {
        let answer = match sdp {
            Some(sdp) => Some(self.reoffer(uid, &sdp)?),
            None => None,
        };
        let peer = self.peers.get_mut(&uid).ok_or_else(|| ApiError::not_found("not in this call"))?;
        if peer.subscribe.is_some() {
            peer.ice_restart = true;
            self.negotiate(now, uid);
        }
        Ok(answer)
    }

    /// Follows a change of a leg's local ICE credentials (an ICE restart, offered by either
    /// side and now negotiated): STUN for it is routed by the new username.
    fn follow_ufrag(&mut self, uid: i64, which: Leg) {
        let Some(leg) = self.peers.get_mut(&uid).and_then(|p| p.leg(which)) else { return };
        let ufrag = leg.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != leg.ufrag {
            let old = std::mem::replace(&mut leg.ufrag, ufrag.clone());
            self.out.push_back(Output::Rekey { old, new: ufrag, peer: PeerKey { uid, leg: which } });
        }
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
        mark_dirty(&mut self.dirty, leg, PeerKey { uid, leg: Leg::Subscribe });
        leg.note_remote_sdp(sdp);
        let Some(accepted) = remote_sdp(|| leg.rtc.sdp_api().accept_answer(pending, answer)) else {
            return Err(self.sdp_panicked(uid));
        };
        if let Err(e) = accepted {
            // The answer did not fit the offer: offer anew.
            peer.renegotiate = true;
            self.negotiate(now, uid);
            return Err(ApiError::bad_request(format!("the SDP answer does not match the offer: {e}")));
        }
        let again = std::mem::take(&mut peer.renegotiate);
        self.follow_ufrag(uid, Leg::Subscribe);
        if again {
            self.negotiate(now, uid);
        }
        Ok(())
    }

    /// Offers the subscribe leg anew if its media lines changed (or marks it for after the
    /// answer that is awaited).
    pub(super) fn negotiate(&mut self, now: Instant, uid: i64) {
        let has_leg = self.peers.get(&uid).is_some_and(|p| p.subscribe.is_some());
        if !has_leg {
            let leg = self.new_leg(now, uid, Leg::Subscribe);
            if let Some(p) = self.peers.get_mut(&uid) {
                p.subscribe = Some(leg);
            }
        }
        // Which media lines does the subscriber have, and which must be added?
        let mut tracks = Vec::new();
        let mut to_add: Vec<NewLine> = Vec::new();
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
                        None => to_add.push(NewLine {
                            publisher: p.uid,
                            track: ti,
                            fwd: fi,
                            kind: match t.kind {
                                TrackKind::Audio => MediaKind::Audio,
                                TrackKind::Video => MediaKind::Video,
                            },
                            stream_id: format!("{}-{}", p.address, t.sid),
                            wire: track(String::new()),
                            codec: t.codec,
                        }),
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
        if std::mem::take(&mut peer.ice_restart) {
            // New credentials in the offer; the local candidates (our host ones) stay.
            api.ice_restart(true);
        }
        let mut new_mids = Vec::new();
        for line in &mut to_add {
            // Past `SPARE_LINES` unused lines, an unused line of the same kind is taken again
            // (with its forwarder) instead of adding one.
            let wanted = match line.kind {
                MediaKind::Audio => TrackKind::Audio,
                MediaKind::Video => TrackKind::Video,
            };
            let reused = (peer.spare.len() >= SPARE_LINES)
                .then(|| peer.spare.iter().position(|l| l.kind == wanted && l.codec == line.codec))
                .flatten()
                .map(|i| peer.spare.remove(i));
            let mid = match &reused {
                Some(spare) => {
                    api.set_direction(spare.mid, Direction::SendOnly);
                    spare.mid
                }
                None => api.add_media(line.kind, Direction::SendOnly, Some(line.stream_id.clone()), None, None),
            };
            new_mids.push((mid, reused));
            line.wire.mid = mid.to_string();
            tracks.push(line.wire.clone());
        }
        for line in to_stop {
            // Inactive, not stopped: Chromium (156) answered an offer that stopped lines it had
            // received media on with a DTLS close_notify, ending the whole connection.
            api.set_direction(line.mid, Direction::Inactive);
            peer.spare.push(line);
        }
        let applied = api.apply();
        // Record the mids in the forwarders.
        for (line, (mid, reused)) in to_add.into_iter().zip(new_mids) {
            if let Some(f) = self
                .peers
                .get_mut(&line.publisher)
                .and_then(|p| p.tracks.get_mut(line.track))
                .and_then(|t| t.subscribers.get_mut(line.fwd))
            {
                f.mid = Some(mid);
                if let Some(spare) = reused {
                    f.fwd = spare.fwd;
                }
            }
        }
        let peer = self.peers.get_mut(&uid).expect("present");
        if let Some(leg) = peer.subscribe.as_mut() {
            mark_dirty(&mut self.dirty, leg, PeerKey { uid, leg: Leg::Subscribe });
        }
        if let Some((offer, pending)) = applied {
            peer.pending = Some(pending);
            // Each line lists only the codec its track carries (str0m offers every codec it has).
            let sdp = offer.to_sdp_string();
            let wanted: Vec<(String, Option<&'static str>)> =
                tracks.iter().filter_map(|t| Some((t.mid.clone(), Some(sdp::forwarded_codec(&t.codec)?)))).collect();
            let sdp = match sdp::narrow_codecs(&sdp, &wanted) {
                Ok((narrowed, _)) => narrowed,
                Err(e) => {
                    tracing::warn!(uid, error = %e, "subscribe offer not narrowed to the tracks' codecs");
                    sdp
                }
            };
            let json = frame_json(&ServerFrame::CallOffer { gid: GroupId(self.cfg.gid), sdp, tracks });
            deliver(peer, &json, &mut self.out);
        }
    }
}
