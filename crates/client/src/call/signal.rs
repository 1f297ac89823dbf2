//! The call's signalling as a sans-IO state machine: what the client says on the WebSocket and
//! what it does with the server's answers.
//!
//! [`Signalling`] holds everything the `call_*` frames are about: the requests waiting for a
//! reply (by `rid`), the publish offer in flight, own published streams, the subscriptions, the
//! roster, own permissions and the subscribe connection's track map. It never touches a socket,
//! a channel or the clock, and knows nothing of tokio: the driver (`driver.rs`) feeds it
//! [`Input`]s and carries out its [`Output`]s. The two str0m [`Rtc`]s are lent to it
//! ([`Rtcs`]) only for their SDP API (offers, answers, payload types); driving them is the
//! driver's business.
//!
//! # The drain contract
//!
//! As with str0m: after every [`Signalling::handle_input`], call [`Signalling::poll_output`]
//! until it returns `None`, and carry out each output in the order given. One output needs an
//! answer: an [`Output::Send`] must be answered with [`Input::Sent`] (with the send's result)
//! before the next `poll_output`, because what the request leaves behind depends on whether
//! it left (a request that was never sent waits for no reply; an unpublish that was never sent
//! keeps its stream).
//!
//! Request ids come from a counter the driver seeds from the messaging connection and hands
//! back when the call stops ([`Signalling::next_rid`]), so the ids on the wire are exactly the
//! connection's. Waiters of the handle are named by [`Ticket`]s, answered with
//! [`Output::Replied`] or [`Output::Published`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use anyhow::{anyhow, Context};
use chorus_proto::call::{
    CallEvent, CallLeaveReason, CallParticipant, CallPermissions, CallStream, CallTrack, PublishRequest,
};
use chorus_proto::error::ErrorCode;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Mid, Pt, Simulcast, SimulcastLayer};
use str0m::Rtc;

use super::media::{self, LayerSpec, RIDS};
use super::stats::{Kind, TrackKey};
use super::{refused, CallError, CallNotice, Joined, Leg, PublishOptions};

/// Names a request of the handle, so its answer finds its waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(pub u64);

/// The two peer connections, lent to the machine for their SDP API.
pub(crate) struct Rtcs {
    /// What the client sends ([`Leg::Publish`]).
    pub publish: Rtc,
    /// What the client receives ([`Leg::Subscribe`]).
    pub subscribe: Rtc,
}

impl Rtcs {
    /// The connection of `leg`.
    pub fn leg(&mut self, leg: Leg) -> &mut Rtc {
        match leg {
            Leg::Publish => &mut self.publish,
            Leg::Subscribe => &mut self.subscribe,
        }
    }
}

/// A request of the handle that the server answers.
#[derive(Debug)]
pub(crate) enum Command {
    /// `call_publish` with a fresh publish offer; answered with [`Output::Published`].
    Publish {
        sid: u32,
        opts: PublishOptions,
    },
    /// `call_unpublish`, renegotiating the publish connection without the stream.
    Unpublish {
        sid: u32,
    },
    /// Any call frame; its `rid` is replaced.
    Request(Box<ClientFrame>),
    Subscribe {
        address: String,
        sid: u32,
        audio: bool,
        video: bool,
        height: Option<u32>,
    },
    Unsubscribe {
        address: String,
        sid: u32,
    },
    /// `call_subscribe` again with the same audio/video choice and another height.
    SetHeight {
        address: String,
        sid: u32,
        height: Option<u32>,
    },
    Mute {
        sid: u32,
        audio: Option<bool>,
        video: Option<bool>,
    },
    /// `call_leave`; the call ends when it is answered.
    Leave,
    /// `call_restart`: ICE restart on both legs (the publish leg with an offer of new
    /// credentials, when it was ever negotiated).
    RestartIce,
}

/// What happens to the machine.
#[derive(Debug)]
pub(crate) enum Input {
    /// A request of the handle, answered later under `ticket`.
    Command(Ticket, Command),
    /// Automatic subscription to every stream of others on or off.
    SubscribeAll(bool),
    /// A frame from the server.
    Frame(Box<ServerFrame>),
    /// The answer to [`Output::Send`]: whether the frame `rid` left.
    Sent { rid: String, result: anyhow::Result<()> },
    /// The WebSocket closed; the text says why.
    Closed(String),
}

/// A change the handle's view of the call (roster, speakers, permissions) must follow.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ViewChange {
    /// This participant, as it is now (added or changed).
    Participant(CallParticipant),
    /// This address left.
    Gone(String),
    Speakers(Vec<String>),
    Permissions(CallPermissions),
}

/// What the driver must do, in order. See the [module docs](self) for the drain contract.
#[derive(Debug)]
pub(crate) enum Output {
    /// Send `frame` on the WebSocket, then answer with [`Input::Sent`].
    Send { rid: String, frame: ClientFrame },
    /// The answer to the handle's request `ticket`.
    Replied(Ticket, Result<(), CallError>),
    /// The answer to a [`Command::Publish`].
    Published(Ticket, Result<CallStream, CallError>),
    /// A notice for the handle.
    Notice(CallNotice),
    /// The handle's view changed.
    View(ViewChange),
    /// `leg` accepted the remote description `sdp`: open its TCP connection if that is the
    /// transport, and drive the leg (ICE starts).
    Negotiated { leg: Leg, sdp: String },
    /// Start the media sources of own stream `sid` with these layers (all active).
    StartSending { sid: u32, layers: Vec<LayerSpec>, kind: media::VideoKind },
    /// Drop the media sources of own stream `sid`.
    StopSending(u32),
    /// The server wants these simulcast layers of own stream `sid` (`layers` event).
    LayersActive { sid: u32, active: Vec<bool> },
    /// Own video of `sid` was unmuted: restart it with keyframes, as an encoder would.
    Keyframe(u32),
    /// Forget the send statistics of own stream `sid`.
    ForgetSent(u32),
    /// The server changed or paused the layer of this received track: restart loss counting.
    RestartRun(TrackKey),
    /// The call is over for this session: close both legs and tell the handle why.
    Ended(String),
    /// The server took this session out of the call (`left`, reason `lost`) and recovery is
    /// on: join again with fresh legs, publish [`Signalling::streams`] again and subscribe
    /// again to [`Signalling::subscriptions`]. Nothing more comes from this machine.
    Rejoin,
    /// Stop the driver (after [`Output::Ended`], or when a leave could not be sent).
    Stop,
}

/// Own published stream, as negotiated.
#[derive(Debug, Clone)]
pub(crate) struct OwnStream {
    /// As granted, with own mute state.
    pub stream: CallStream,
    /// Media line and payload type of the audio, when sent.
    pub audio: Option<(Mid, Pt)>,
    /// Media line and payload type of the video, when sent.
    pub video: Option<(Mid, Pt)>,
    /// As asked (to publish it again after a rejoin).
    pub opts: PublishOptions,
    /// Simulcast: each layer is written with its rid; single layer: without.
    pub simulcast: bool,
}

/// What a subscription asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sub {
    pub audio: bool,
    pub video: bool,
    pub height: Option<u32>,
}

/// State to change when a request is answered `ok`.
#[derive(Debug)]
enum OnOk {
    Subscribed((String, u32), Sub),
    Unsubscribed((String, u32)),
    Muted { sid: u32, audio: Option<bool>, video: Option<bool> },
}

/// What waits for a server reply, by request id.
#[derive(Debug)]
enum Pending {
    /// A request of the handle; `on_ok` is applied before the reply.
    Request {
        ticket: Ticket,
        on_ok: Option<OnOk>,
    },
    Publish {
        sid: u32,
        opts: PublishOptions,
        audio_mid: Option<Mid>,
        video_mid: Option<Mid>,
        ticket: Ticket,
    },
    Unpublish {
        sid: u32,
        ticket: Ticket,
    },
    /// A `call_restart`; its publish offer (if any) is the pending offer.
    Restart {
        ticket: Ticket,
    },
    /// Sent by the machine itself (automatic subscription, an answer): a refusal becomes a
    /// notice, and the subscription named is forgotten.
    Auto {
        forget: Option<(String, u32)>,
    },
}

/// What a frame leaves behind once [`Input::Sent`] says it left.
#[derive(Debug)]
enum OnSent {
    Wait(Pending),
    /// An unpublish: stop sending the stream, then wait.
    Unpublish(Pending),
    Leave(Ticket),
}

/// The signalling state machine. See the [module docs](self).
pub(crate) struct Signalling {
    me: String,
    permissions: CallPermissions,
    roster: BTreeMap<String, CallParticipant>,
    next_rid: u64,
    /// Frames handed out as [`Output::Send`], not yet answered with [`Input::Sent`].
    unsent: HashMap<String, OnSent>,
    pending: HashMap<String, Pending>,
    /// The publish offer in flight (one at a time: a newer offer invalidates an older one).
    pending_offer: Option<(String, SdpPendingOffer)>,
    streams: BTreeMap<u32, OwnStream>,
    tracks: HashMap<Mid, CallTrack>,
    subscriptions: BTreeMap<(String, u32), Sub>,
    subscribe_all: bool,
    subscribe_height: Option<u32>,
    leaving: Option<(String, Ticket)>,
    ended: bool,
    /// Join again when the server takes this session out as `lost` ([`Output::Rejoin`]).
    recover: bool,
    /// The publish leg was negotiated once (the server has it: an ICE restart offers on it).
    publish_leg: bool,
    out: VecDeque<Output>,
}

fn ended_error() -> CallError {
    anyhow!("the call has ended").into()
}

impl Signalling {
    /// A machine for the call `joined` described. `next_rid` is the messaging connection's
    /// request counter. Automatic subscriptions to the roster are queued at once.
    pub fn new(
        joined: &Joined,
        subscribe_all: bool,
        subscribe_height: Option<u32>,
        recover: bool,
        next_rid: u64,
    ) -> Signalling {
        let mut s = Signalling {
            me: joined.address.clone(),
            permissions: joined.permissions,
            roster: joined.participants.iter().map(|p| (p.address.clone(), p.clone())).collect(),
            next_rid,
            unsent: HashMap::new(),
            pending: HashMap::new(),
            pending_offer: None,
            streams: BTreeMap::new(),
            tracks: HashMap::new(),
            subscriptions: BTreeMap::new(),
            subscribe_all,
            subscribe_height,
            leaving: None,
            ended: false,
            recover,
            publish_leg: false,
            out: VecDeque::new(),
        };
        s.auto_subscribe();
        s
    }

    /// The request counter, to hand back to the messaging connection.
    pub fn next_rid(&self) -> u64 {
        self.next_rid
    }

    /// Own published streams, by sid.
    pub fn streams(&self) -> &BTreeMap<u32, OwnStream> {
        &self.streams
    }

    /// Own subscriptions to others' streams, by (address, sid).
    pub fn subscriptions(&self) -> &BTreeMap<(String, u32), Sub> {
        &self.subscriptions
    }

    /// What the server said a media line of the subscribe connection carries.
    pub fn track(&self, mid: &Mid) -> Option<&CallTrack> {
        self.tracks.get(mid)
    }

    /// The next thing to do, or `None` when the machine waits for input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Feeds one input; then drain [`Signalling::poll_output`].
    pub fn handle_input(&mut self, input: Input, rtcs: &mut Rtcs) {
        match input {
            Input::Command(ticket, cmd) => self.on_command(ticket, cmd, rtcs),
            // Nothing is asked of the server any more once the call has ended.
            Input::SubscribeAll(_) if self.ended => {}
            Input::SubscribeAll(on) => {
                self.subscribe_all = on;
                self.auto_subscribe();
            }
            Input::Frame(frame) => self.on_frame(*frame, rtcs),
            Input::Sent { rid, result } => self.on_sent(rid, result),
            Input::Closed(why) => self.end(why),
        }
    }

    fn rid(&mut self) -> String {
        self.next_rid += 1;
        self.next_rid.to_string()
    }

    /// Queues `frame` with a fresh rid; `then` takes effect once it has left.
    fn send(&mut self, frame: ClientFrame, then: OnSent) -> String {
        let rid = self.rid();
        let frame = frame.with_rid(Some(rid.clone()));
        self.unsent.insert(rid.clone(), then);
        self.out.push_back(Output::Send { rid: rid.clone(), frame });
        rid
    }

    fn notify(&mut self, n: CallNotice) {
        self.out.push_back(Output::Notice(n));
    }

    fn on_sent(&mut self, rid: String, result: anyhow::Result<()>) {
        let Some(then) = self.unsent.remove(&rid) else { return };
        match (then, result) {
            (OnSent::Wait(p), Ok(())) => {
                self.pending.insert(rid, p);
            }
            (OnSent::Unpublish(p), Ok(())) => {
                // Stop sending at once; the stream is gone whatever the answer.
                if let Pending::Unpublish { sid, .. } = &p {
                    if self.streams.remove(sid).is_some() {
                        self.out.push_back(Output::StopSending(*sid));
                    }
                }
                self.pending.insert(rid, p);
            }
            (OnSent::Leave(ticket), Ok(())) => self.leaving = Some((rid, ticket)),
            (OnSent::Wait(p) | OnSent::Unpublish(p), Err(e)) => {
                // A publish offer that never left is dropped (rolls the connection back).
                self.take_offer(&rid);
                self.fail(p, CallError::Other(e));
            }
            (OnSent::Leave(ticket), Err(e)) => {
                self.out.push_back(Output::Replied(ticket, Err(e.into())));
                self.out.push_back(Output::Stop);
            }
        }
    }

    /// Answers what waits for `p` with `e`.
    fn fail(&mut self, p: Pending, e: CallError) {
        match p {
            Pending::Request { ticket, .. } | Pending::Unpublish { ticket, .. } | Pending::Restart { ticket } => {
                self.out.push_back(Output::Replied(ticket, Err(e)))
            }
            Pending::Publish { ticket, .. } => self.out.push_back(Output::Published(ticket, Err(e))),
            Pending::Auto { .. } => tracing::debug!("request failed: {e}"),
        }
    }

    /// Out of the call but to join again: what waits fails (its answer will never come), and
    /// the driver takes over ([`Output::Rejoin`]).
    fn rejoin(&mut self) {
        self.ended = true;
        let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            self.fail(p, anyhow!("the call was lost and is being joined again").into());
        }
        self.pending_offer = None;
        self.out.push_back(Output::Rejoin);
    }

    /// The call is over for this session: fail whatever waits (no answer will come), stop.
    fn end(&mut self, why: String) {
        if !self.ended {
            self.ended = true;
            self.out.push_back(Output::Ended(why));
        }
        let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            self.fail(p, ended_error());
        }
        if let Some((_, ticket)) = self.leaving.take() {
            self.out.push_back(Output::Replied(ticket, Ok(())));
        }
        self.out.push_back(Output::Stop);
    }

    fn on_command(&mut self, ticket: Ticket, cmd: Command, rtcs: &mut Rtcs) {
        if self.ended {
            let answer = match cmd {
                Command::Publish { .. } => Output::Published(ticket, Err(ended_error())),
                _ => Output::Replied(ticket, Err(ended_error())),
            };
            self.out.push_back(answer);
            return;
        }
        let request = |on_ok| OnSent::Wait(Pending::Request { ticket, on_ok });
        match cmd {
            Command::Publish { sid, opts } => self.publish(ticket, sid, opts, &mut rtcs.publish),
            Command::Unpublish { sid } => self.unpublish(ticket, sid, &mut rtcs.publish),
            Command::Request(frame) => {
                self.send(*frame, request(None));
            }
            Command::Subscribe { address, sid, audio, video, height } => {
                let key = (address.clone(), sid);
                let frame = ClientFrame::CallSubscribe { rid: None, address, sid, audio, video, height };
                self.send(frame, request(Some(OnOk::Subscribed(key, Sub { audio, video, height }))));
            }
            Command::Unsubscribe { address, sid } => {
                let key = (address.clone(), sid);
                let frame = ClientFrame::CallUnsubscribe { rid: None, address, sid };
                self.send(frame, request(Some(OnOk::Unsubscribed(key))));
            }
            Command::SetHeight { address, sid, height } => {
                let key = (address.clone(), sid);
                let sub = self.subscriptions.get(&key).copied().unwrap_or(Sub { audio: true, video: true, height });
                let frame =
                    ClientFrame::CallSubscribe { rid: None, address, sid, audio: sub.audio, video: sub.video, height };
                self.send(frame, request(Some(OnOk::Subscribed(key, Sub { height, ..sub }))));
            }
            Command::Mute { sid, audio, video } => {
                let frame = ClientFrame::CallMute { rid: None, sid, audio, video };
                self.send(frame, request(Some(OnOk::Muted { sid, audio, video })));
            }
            Command::Leave => {
                self.send(ClientFrame::CallLeave { rid: None }, OnSent::Leave(ticket));
            }
            Command::RestartIce => self.restart_ice(ticket, &mut rtcs.publish),
        }
    }

    /// `call_restart`: new ICE credentials on the publish leg (offered here) and on the
    /// subscribe leg (the server offers them).
    fn restart_ice(&mut self, ticket: Ticket, rtc: &mut Rtc) {
        if self.pending_offer.is_some() {
            let e = anyhow!("another publish negotiation is in flight");
            self.out.push_back(Output::Replied(ticket, Err(e.into())));
            return;
        }
        let offer = self.publish_leg.then(|| {
            let mut api = rtc.sdp_api();
            api.ice_restart(true);
            api.apply()
        });
        let offer = offer.flatten();
        let sdp = offer.as_ref().map(|(o, _)| o.to_sdp_string());
        let rid = self.send(ClientFrame::CallRestart { rid: None, sdp }, OnSent::Wait(Pending::Restart { ticket }));
        if let Some((_, pending)) = offer {
            self.pending_offer = Some((rid, pending));
        }
    }

    fn apply(&mut self, on_ok: OnOk) {
        match on_ok {
            OnOk::Subscribed(key, sub) => {
                self.subscriptions.insert(key, sub);
            }
            OnOk::Unsubscribed(key) => {
                self.subscriptions.remove(&key);
            }
            OnOk::Muted { sid, audio, video } => {
                let Some(p) = self.streams.get_mut(&sid) else { return };
                if let Some(a) = audio {
                    p.stream.muted.audio = a;
                }
                if let Some(v) = video {
                    if p.stream.muted.video && !v {
                        self.out.push_back(Output::Keyframe(sid));
                    }
                    p.stream.muted.video = v;
                }
            }
        }
    }

    fn publish(&mut self, ticket: Ticket, sid: u32, opts: PublishOptions, rtc: &mut Rtc) {
        let refuse = |why: &str| Output::Published(ticket, Err(anyhow!("{why}").into()));
        if !opts.audio && !opts.video {
            self.out.push_back(refuse("nothing to publish"));
            return;
        }
        if self.pending_offer.is_some() {
            self.out.push_back(refuse("another publish negotiation is in flight"));
            return;
        }
        let layers = opts.layers.clamp(1, 3);
        let stream_id = format!("{}-{sid}", self.me);
        let mut api = rtc.sdp_api();
        let audio_mid = opts.audio.then(|| {
            api.add_media(
                str0m::media::MediaKind::Audio,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(format!("a{sid}")),
                None,
            )
        });
        let video_mid = opts.video.then(|| {
            let simulcast = (layers > 1).then(|| {
                let mut s = Simulcast::new();
                for rid in &RIDS[..layers as usize] {
                    s.add_send_layer(SimulcastLayer::new(rid));
                }
                s
            });
            api.add_media(
                str0m::media::MediaKind::Video,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(format!("v{sid}")),
                simulcast,
            )
        });
        let Some((offer, pending)) = api.apply() else {
            self.out.push_back(refuse("str0m produced no offer"));
            return;
        };
        let req = PublishRequest {
            rid: None,
            sid,
            audio: opts.audio,
            video: opts.video,
            screen: opts.screen,
            rids: if opts.video && layers > 1 {
                RIDS[..layers as usize].iter().map(|r| r.to_string()).collect()
            } else {
                vec![]
            },
            height: opts.video.then_some(opts.height),
            muted: opts.muted,
            audio_mid: audio_mid.map(|m| m.to_string()),
            video_mid: video_mid.map(|m| m.to_string()),
            sdp: offer.to_sdp_string(),
        };
        let waiting = Pending::Publish { sid, opts, audio_mid, video_mid, ticket };
        let rid = self.send(ClientFrame::CallPublish(req), OnSent::Wait(waiting));
        self.pending_offer = Some((rid, pending));
    }

    fn unpublish(&mut self, ticket: Ticket, sid: u32, rtc: &mut Rtc) {
        let Some(p) = self.streams.get(&sid) else {
            self.out.push_back(Output::Replied(ticket, Err(anyhow!("stream {sid} is not published").into())));
            return;
        };
        if self.pending_offer.is_some() {
            let e = anyhow!("another publish negotiation is in flight");
            self.out.push_back(Output::Replied(ticket, Err(e.into())));
            return;
        }
        let mids: Vec<Mid> = p.audio.iter().chain(p.video.iter()).map(|(m, _)| *m).collect();
        let mut api = rtc.sdp_api();
        for m in mids {
            api.stop_media(m);
        }
        let offer = api.apply();
        let sdp = offer.as_ref().map(|(o, _)| o.to_sdp_string());
        let frame = ClientFrame::CallUnpublish { rid: None, sid, sdp };
        let rid = self.send(frame, OnSent::Unpublish(Pending::Unpublish { sid, ticket }));
        if let Some((_, pending)) = offer {
            self.pending_offer = Some((rid, pending));
        }
    }

    fn take_offer(&mut self, rid: &str) -> Option<SdpPendingOffer> {
        match self.pending_offer.take() {
            Some((r, p)) if r == rid => Some(p),
            other => {
                self.pending_offer = other;
                None
            }
        }
    }

    fn accept_publish_answer(&mut self, rid: &str, sdp: &str, rtc: &mut Rtc) -> anyhow::Result<()> {
        let pending = self.take_offer(rid).context("no publish offer pending for this answer")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| anyhow!("bad SDP answer: {e}"))?;
        rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow!("answer not accepted: {e}"))?;
        self.out.push_back(Output::Negotiated { leg: Leg::Publish, sdp: sdp.to_string() });
        Ok(())
    }

    fn on_frame(&mut self, frame: ServerFrame, rtcs: &mut Rtcs) {
        match frame {
            ServerFrame::CallPublished { rid, stream, sdp } => {
                let rid = rid.unwrap_or_default();
                match self.pending.remove(&rid) {
                    Some(Pending::Publish { sid, opts, audio_mid, video_mid, ticket }) => {
                        let published = Published { sid, opts, audio_mid, video_mid, stream };
                        let r = self.on_published(&rid, published, &sdp, &mut rtcs.publish);
                        self.out.push_back(Output::Published(ticket, r.map_err(CallError::Other)));
                    }
                    Some(other) => {
                        self.pending.insert(rid, other);
                    }
                    None => tracing::debug!("call_published for an unknown request"),
                }
            }
            ServerFrame::CallSdp { rid, sdp } => {
                let rid = rid.unwrap_or_default();
                match self.pending.remove(&rid) {
                    Some(Pending::Unpublish { sid, ticket }) => {
                        let r = match sdp {
                            Some(sdp) => self.accept_publish_answer(&rid, &sdp, &mut rtcs.publish),
                            None => {
                                // The server did not renegotiate: drop our offer.
                                self.take_offer(&rid);
                                Ok(())
                            }
                        };
                        self.out.push_back(Output::ForgetSent(sid));
                        self.out.push_back(Output::Replied(ticket, r.map_err(CallError::Other)));
                    }
                    Some(Pending::Restart { ticket }) => {
                        let r = match sdp {
                            Some(sdp) => self.accept_publish_answer(&rid, &sdp, &mut rtcs.publish),
                            None => {
                                self.take_offer(&rid);
                                Ok(())
                            }
                        };
                        self.out.push_back(Output::Replied(ticket, r.map_err(CallError::Other)));
                    }
                    // Not an answer to an unpublish: what waited for it is abandoned.
                    Some(other) => self.fail(other, ended_error()),
                    None => {}
                }
            }
            ServerFrame::CallOffer { sdp, tracks, .. } => self.on_offer(sdp, tracks, &mut rtcs.subscribe),
            ServerFrame::CallEvent { event, .. } => self.on_call_event(event),
            ServerFrame::CallStatus(update) => self.notify(CallNotice::Status(update)),
            ServerFrame::CallAudience { rid, count, members, next, .. } => {
                // The page is the reply: the request is done, the page a notice.
                if let Some(Pending::Request { ticket, .. }) = self.pending.remove(&rid.unwrap_or_default()) {
                    self.out.push_back(Output::Replied(ticket, Ok(())));
                }
                self.notify(CallNotice::Audience { count, members, next });
            }
            ServerFrame::Ok { rid } => {
                let rid = rid.unwrap_or_default();
                if self.leaving.as_ref().is_some_and(|(r, _)| *r == rid) {
                    self.end("left".into());
                    return;
                }
                match self.pending.remove(&rid) {
                    Some(Pending::Request { ticket, on_ok }) => {
                        if let Some(on_ok) = on_ok {
                            self.apply(on_ok);
                        }
                        self.out.push_back(Output::Replied(ticket, Ok(())));
                    }
                    Some(Pending::Unpublish { ticket, .. } | Pending::Restart { ticket }) => {
                        self.take_offer(&rid);
                        self.out.push_back(Output::Replied(ticket, Ok(())));
                    }
                    Some(Pending::Publish { ticket, .. }) => {
                        self.take_offer(&rid);
                        let e = anyhow!("call_publish answered with ok, no SDP");
                        self.out.push_back(Output::Published(ticket, Err(e.into())));
                    }
                    Some(Pending::Auto { .. }) | None => {}
                }
            }
            ServerFrame::Error { rid, code, message, .. } => {
                let rid = rid.unwrap_or_default();
                if self.leaving.as_ref().is_some_and(|(r, _)| *r == rid) {
                    if let Some((_, ticket)) = self.leaving.take() {
                        self.out.push_back(Output::Replied(ticket, Err(refused(code, message.clone()))));
                    }
                    self.end(format!("leave refused: {message}"));
                    return;
                }
                match self.pending.remove(&rid) {
                    // Dropping the pending offer rolls the publish connection back.
                    Some(
                        p @ (Pending::Publish { .. }
                        | Pending::Unpublish { .. }
                        | Pending::Restart { .. }
                        | Pending::Request { .. }),
                    ) => {
                        if !matches!(p, Pending::Request { .. }) {
                            self.take_offer(&rid);
                        }
                        self.fail(p, refused(code, message));
                    }
                    Some(Pending::Auto { forget }) => {
                        if let Some(k) = forget {
                            self.subscriptions.remove(&k);
                        }
                        self.notify(CallNotice::Error { code, message });
                    }
                    None => self.notify(CallNotice::Error { code, message }),
                }
            }
            // Messaging and the rest are not the call's business.
            _ => {}
        }
    }

    fn payload_type(rtc: &mut Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
        let w = rtc.writer(mid)?;
        let pt = w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt());
        pt
    }

    fn on_published(&mut self, rid: &str, p: Published, sdp: &str, rtc: &mut Rtc) -> anyhow::Result<CallStream> {
        let Published { sid, opts, audio_mid, video_mid, stream } = p;
        self.accept_publish_answer(rid, sdp, rtc)?;
        let audio = match audio_mid.filter(|_| stream.audio) {
            Some(m) => Some((m, Self::payload_type(rtc, m, Codec::Opus).context("no Opus in the answer")?)),
            None => None,
        };
        let video = match video_mid.filter(|_| stream.video) {
            Some(m) => Some((m, Self::payload_type(rtc, m, Codec::Vp8).context("no VP8 in the answer")?)),
            None => None,
        };
        let offered = opts.layers.clamp(1, 3);
        let layers = stream.layers.clamp(1, offered);
        let height = stream.height.unwrap_or(opts.height).min(opts.height);
        // The granted layers are the lowest ones: the tallest one is `height`. Rids beyond
        // them exist in the SDP but stay silent.
        let layers = media::layer_specs(layers, height);
        self.publish_leg = true;
        self.streams.insert(sid, OwnStream { stream, audio, video, opts, simulcast: offered > 1 });
        self.out.push_back(Output::StartSending { sid, layers, kind: opts.video_kind });
        if let Some(me) = self.roster.get_mut(&self.me) {
            me.streams.retain(|x| x.sid != sid);
            me.streams.push(stream);
            let me = me.clone();
            self.out.push_back(Output::View(ViewChange::Participant(me)));
        }
        Ok(stream)
    }

    fn on_offer(&mut self, sdp: String, tracks: Vec<CallTrack>, rtc: &mut Rtc) {
        let answer = SdpOffer::from_sdp_string(&sdp)
            .map_err(|e| anyhow!("bad SDP offer: {e}"))
            .and_then(|o| rtc.sdp_api().accept_offer(o).map_err(|e| anyhow!("offer not accepted: {e}")));
        match answer {
            Ok(answer) => {
                self.tracks = tracks.iter().map(|t| (Mid::from(t.mid.as_str()), t.clone())).collect();
                let frame = ClientFrame::CallAnswer { rid: None, sdp: answer.to_sdp_string() };
                self.send(frame, OnSent::Wait(Pending::Auto { forget: None }));
                self.out.push_back(Output::Negotiated { leg: Leg::Subscribe, sdp });
                self.notify(CallNotice::Offer(tracks));
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                self.notify(CallNotice::Error { code: ErrorCode::BadRequest, message: format!("client: {e:#}") });
            }
        }
    }

    /// Tells the view about `address` as it is now, if it is in the roster.
    fn view_participant(&mut self, address: &str) {
        if let Some(p) = self.roster.get(address) {
            self.out.push_back(Output::View(ViewChange::Participant(p.clone())));
        }
    }

    fn on_call_event(&mut self, event: CallEvent) {
        let mut subscribe_now: Vec<(String, CallStream)> = Vec::new();
        match &event {
            CallEvent::Joined { participant } => {
                self.roster.insert(participant.address.clone(), participant.clone());
                self.view_participant(&participant.address);
                if participant.address != self.me {
                    subscribe_now.extend(participant.streams.iter().map(|st| (participant.address.clone(), *st)));
                }
            }
            CallEvent::Updated { address, permissions, admin_muted } => {
                if let Some(p) = self.roster.get_mut(address) {
                    p.permissions = *permissions;
                    p.admin_muted = *admin_muted;
                }
                self.view_participant(address);
                if *address == self.me {
                    self.permissions = *permissions;
                    self.out.push_back(Output::View(ViewChange::Permissions(*permissions)));
                }
            }
            CallEvent::Left { address, .. } => {
                self.roster.remove(address);
                self.out.push_back(Output::View(ViewChange::Gone(address.clone())));
                self.subscriptions.retain(|(a, _), _| a != address);
            }
            CallEvent::Published { address, stream } => {
                if let Some(p) = self.roster.get_mut(address) {
                    p.streams.retain(|x| x.sid != stream.sid);
                    p.streams.push(*stream);
                }
                self.view_participant(address);
                if *address != self.me {
                    subscribe_now.push((address.clone(), *stream));
                }
            }
            CallEvent::Muted { address, sid, muted } => {
                if let Some(st) =
                    self.roster.get_mut(address).and_then(|p| p.streams.iter_mut().find(|x| x.sid == *sid))
                {
                    st.muted = *muted;
                }
                self.view_participant(address);
            }
            CallEvent::Unpublished { address, sid, .. } => {
                if let Some(p) = self.roster.get_mut(address) {
                    p.streams.retain(|x| x.sid != *sid);
                }
                self.view_participant(address);
                self.subscriptions.remove(&(address.clone(), *sid));
            }
            CallEvent::Talking { address, talking } => {
                if let Some(p) = self.roster.get_mut(address) {
                    p.talking = *talking;
                }
                self.view_participant(address);
            }
            CallEvent::Speakers { order } => self.out.push_back(Output::View(ViewChange::Speakers(order.clone()))),
            CallEvent::Layers { sid, active } => {
                if self.streams.contains_key(sid) {
                    self.out.push_back(Output::LayersActive { sid: *sid, active: active.clone() });
                }
            }
            CallEvent::Layer { address, sid, .. } => {
                let key = TrackKey { publisher: address.clone(), sid: *sid, kind: Kind::Video };
                self.out.push_back(Output::RestartRun(key));
            }
            // Handed on as a notice (below), like every event.
            CallEvent::Subscriber { .. }
            | CallEvent::Recording { .. }
            | CallEvent::Audience { .. }
            | CallEvent::Hand { .. } => {}
        }
        // Own streams ended by the server (hang-up, permission revoked): stop sending them.
        if let CallEvent::Unpublished { address, sid, .. } = &event {
            if *address == self.me && self.streams.remove(sid).is_some() {
                self.out.push_back(Output::StopSending(*sid));
            }
        }
        let left_me = matches!(&event, CallEvent::Left { address, .. } if *address == self.me);
        let lost = matches!(&event, CallEvent::Left { reason: CallLeaveReason::Lost, .. });
        let why = match &event {
            CallEvent::Left { reason, .. } => format!("left the call: {reason:?}"),
            _ => String::new(),
        };
        self.notify(CallNotice::Event(event));
        if left_me && lost && self.recover && self.leaving.is_none() {
            self.rejoin();
            return;
        }
        if left_me {
            self.end(why);
            return;
        }
        if self.subscribe_all && self.permissions.subscribe {
            for (address, stream) in subscribe_now {
                self.auto_subscribe_one(address, stream);
            }
        }
    }

    /// Subscribes to every stream of others in the roster not subscribed yet.
    fn auto_subscribe(&mut self) {
        if !self.subscribe_all || !self.permissions.subscribe {
            return;
        }
        let wanted: Vec<(String, CallStream)> = self
            .roster
            .values()
            .filter(|p| p.address != self.me)
            .flat_map(|p| p.streams.iter().map(|s| (p.address.clone(), *s)))
            .collect();
        for (address, stream) in wanted {
            self.auto_subscribe_one(address, stream);
        }
    }

    fn auto_subscribe_one(&mut self, address: String, stream: CallStream) {
        let key = (address.clone(), stream.sid);
        if self.subscriptions.contains_key(&key) {
            return;
        }
        let sub = Sub { audio: stream.audio, video: stream.video, height: self.subscribe_height };
        self.subscriptions.insert(key.clone(), sub);
        let frame = ClientFrame::CallSubscribe {
            rid: None,
            address,
            sid: stream.sid,
            audio: sub.audio,
            video: sub.video,
            height: sub.height,
        };
        self.send(frame, OnSent::Wait(Pending::Auto { forget: Some(key) }));
    }
}

/// A publish the server answered, with what the request asked.
struct Published {
    sid: u32,
    opts: PublishOptions,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    stream: CallStream,
}

#[cfg(test)]
mod tests;
