//! The call room: who is in a group's call, what each may do, what they publish and who receives
//! what. Sans-IO like the rest of the crate: the server's signaling layer calls one method per
//! request, answers the request with its `Result`, and turns the [`RoomEvent`]s drained from
//! [`Room::poll_event`] into frames; the media loop asks [`Room::forward_allowed`] before it
//! forwards a packet.
//!
//! # Rules
//!
//! * **Permissions** are resolved by the caller from the group's policy and the member's flags
//!   ([`Permissions`]): publish, subscribe, list, and the admin rights call control (mute others,
//!   mute everyone) and hang-up (end others' streams, remove them).
//! * **Streams** are identified as in Mesibo by (participant, [`Sid`]): `0` the camera, `1..` extra
//!   streams such as screens. [`Room::publish`] is refused without the publish permission, for
//!   media the room's [`RoomSettings`] do not allow, or beyond [`RoomSettings::max_streams`].
//!   A requested video height above [`RoomSettings::max_height`] is **clamped**, not refused: the
//!   granted [`StreamInfo::height`] is what the client should send, and the media loop also passes
//!   the cap to [`crate::select`] as `room_max_height`, so a taller layer is never forwarded anyway.
//! * **Subscriptions** go from a subscriber to one stream, for its audio and/or video. They need
//!   the subscribe permission and end by themselves when the stream, the subscriber or the
//!   publisher goes away, or when the subscriber loses the permission.
//! * **Mute.** The owner mutes its own streams ([`Room::set_muted`]). An admin with call control
//!   mutes a participant's audio or video on all its streams ([`Room::admin_mute`],
//!   [`Room::admin_mute_all`]); the owner cannot unmute what an admin muted
//!   ([`RoomError::MutedByAdmin`]) until an admin lifts it. Muted media is not forwarded.
//! * **Duration.** With [`RoomSettings::max_duration`], each participant's call ends that long
//!   after it joined: [`Room::handle_timeout`] removes it, and [`Room::poll_timeout`] says when to
//!   call next.
//!
//! # Who hears what
//!
//! Events about a participant or its streams (joined, updated, talking, left, stream published,
//! muted, unpublished) go to every participant with the list permission, and to the participant
//! concerned. A participant without list sees only itself: no roster events about others, and
//! [`Room::roster`] returns only its own entry. Subscription events go to the subscriber, and to the
//! publisher if it has the list permission (Mesibo's "someone is watching your stream").
//!
//! When a participant leaves, its subscriptions and streams are removed first, each with its own
//! event addressed to the others, then [`RoomEventKind::ParticipantLeft`] goes to the listers and
//! to the participant itself (which is how a removed or timed-out participant learns why).
//!
//! # Live mode
//!
//! With [`RoomSettings::live`] the room is a live stream: a participant with the publish right is
//! on **stage**, everyone else is **audience**. The stage is announced as above; the audience is
//! not: an audience member's joins, updates and leaves go to itself alone, its subscriptions are
//! not told to the publisher, and rosters leave it out, so a crowd of viewers costs the stage
//! nothing per viewer. Instead everyone hears [`RoomEventKind::AudienceCount`] when the count
//! changed, at most once per [`COUNT_INTERVAL`] (driven by [`Room::handle_timeout`]), and a
//! participant with the list permission pages through the audience ([`Room::audience_page`]).
//! An audience member raises a hand ([`Room::raise_hand`], told to the admins with call
//! control); such an admin brings an audience member on stage and sends it back
//! ([`Room::set_stage`]): the publish right is lent for this call, so the member is announced
//! like a stage member joining (then [`RoomEventKind::StageEntered`]) and, sent back, its streams
//! end at once and the others see it leave the stage ([`RoomEventKind::StageLeft`]).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::{Layer, TrackKind};

mod event;
mod live;

pub use event::{LeaveReason, RoomEvent, RoomEventKind, UnpublishReason, UnsubscribeReason};
pub use live::{AudienceEntry, AudiencePage, COUNT_INTERVAL};

/// A stream's id within its participant, as in Mesibo: `0` is the camera, `1..` extra streams
/// (screens, more cameras).
pub type Sid = u32;

/// One published stream in a room: the participant publishing it and its [`Sid`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId<K> {
    /// Who publishes the stream.
    pub publisher: K,
    /// Which of the publisher's streams.
    pub sid: Sid,
}

/// What a participant may do in the call, resolved by the caller from the group's policy, the
/// member's flags and its admin flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions {
    /// May publish streams (`MESIBO_MEMBERFLAG_PUBL`).
    pub publish: bool,
    /// May receive streams (`MESIBO_MEMBERFLAG_SUBS`).
    pub subscribe: bool,
    /// May see the roster (`MESIBO_MEMBERFLAG_LIST`).
    pub list: bool,
    /// Is an admin who may mute others and everyone (`MESIBO_ADMINFLAG_CALLCONTROL`).
    pub call_control: bool,
    /// Is an admin who may hang up others' streams and remove them (`MESIBO_ADMINFLAG_HANGUP`).
    pub hangup: bool,
}

impl Permissions {
    /// May do nothing: present in the call, seeing and receiving nothing.
    pub const NONE: Permissions =
        Permissions { publish: false, subscribe: false, list: false, call_control: false, hangup: false };
    /// An ordinary participant: publish, subscribe, list.
    pub const MEMBER: Permissions = Permissions { publish: true, subscribe: true, list: true, ..Self::NONE };
    /// A view-only participant: subscribe and list, no publish.
    pub const VIEW_ONLY: Permissions = Permissions { subscribe: true, list: true, ..Self::NONE };
    /// A moderator: everything.
    pub const ADMIN: Permissions = Permissions { call_control: true, hangup: true, ..Self::MEMBER };
}

/// The call settings of a room (the group's call flags, resolution and duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSettings {
    /// Audio may be published (`MESIBO_CALLFLAG_AUDIO`).
    pub audio: bool,
    /// Video may be published (`MESIBO_CALLFLAG_VIDEO`); screens need it too.
    pub video: bool,
    /// Screens may be shared (`MESIBO_CALLFLAG_SCREEN`).
    pub screen: bool,
    /// Video may have several simulcast layers (`MESIBO_CALLFLAG_SIMULCAST`); without it every
    /// video stream is granted one layer.
    pub simulcast: bool,
    /// The tallest video allowed, in pixels; `None` for no cap.
    pub max_height: Option<u32>,
    /// How long one participant may stay in the call; `None` for no limit.
    pub max_duration: Option<Duration>,
    /// How many streams one participant may publish at once.
    pub max_streams: usize,
    /// Live mode: members who may publish are on **stage**, the others are **audience**, who
    /// are not announced one by one (see [the module docs](self#live-mode)).
    pub live: bool,
}

impl Default for RoomSettings {
    /// Everything allowed, simulcast on, 720p cap (Mesibo's default resolution), no duration
    /// limit, four streams per participant.
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            screen: true,
            simulcast: true,
            max_height: Some(720),
            max_duration: None,
            max_streams: 4,
            live: false,
        }
    }
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKind {
    /// Has an audio track.
    pub audio: bool,
    /// Has a video track.
    pub video: bool,
    /// The video is a screen rather than a camera.
    pub screen: bool,
}

impl StreamKind {
    /// A camera and microphone.
    pub const CAMERA: StreamKind = StreamKind { audio: true, video: true, screen: false };
    /// A microphone only.
    pub const MICROPHONE: StreamKind = StreamKind { audio: true, video: false, screen: false };
    /// A shared screen without sound.
    pub const SCREEN: StreamKind = StreamKind { audio: false, video: true, screen: true };

    /// Whether the stream has a track of `kind`.
    pub const fn carries(self, kind: TrackKind) -> bool {
        match kind {
            TrackKind::Audio => self.audio,
            TrackKind::Video => self.video,
        }
    }
}

/// Which of a stream's media are muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mute {
    /// Audio is muted.
    pub audio: bool,
    /// Video is muted.
    pub video: bool,
}

impl Mute {
    /// Nothing muted.
    pub const NONE: Mute = Mute { audio: false, video: false };

    /// Whether media of `kind` is muted.
    pub const fn get(self, kind: TrackKind) -> bool {
        match kind {
            TrackKind::Audio => self.audio,
            TrackKind::Video => self.video,
        }
    }

    fn set(&mut self, kind: TrackKind, muted: bool) {
        match kind {
            TrackKind::Audio => self.audio = muted,
            TrackKind::Video => self.video = muted,
        }
    }
}

/// A request to publish a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// What the stream carries.
    pub kind: StreamKind,
    /// How many simulcast layers the video has, `1..=`[`Layer::COUNT`]; ignored without video.
    pub layers: u8,
    /// Height of the tallest layer in pixels, if known; ignored without video.
    pub height: Option<u32>,
    /// Which media start muted.
    pub muted: Mute,
}

impl Publish {
    /// A camera and microphone with `layers` simulcast layers, the tallest `height` pixels.
    pub const fn camera(layers: u8, height: u32) -> Self {
        Publish { kind: StreamKind::CAMERA, layers, height: Some(height), muted: Mute::NONE }
    }

    /// A microphone only.
    pub const fn microphone() -> Self {
        Publish { kind: StreamKind::MICROPHONE, layers: 1, height: None, muted: Mute::NONE }
    }

    /// A screen share without sound, one layer of `height` pixels.
    pub const fn screen(height: u32) -> Self {
        Publish { kind: StreamKind::SCREEN, layers: 1, height: Some(height), muted: Mute::NONE }
    }
}

/// A published stream as the room granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// What it carries.
    pub kind: StreamKind,
    /// Simulcast layers of the video (`1` without video, or when the room has simulcast off).
    pub layers: u8,
    /// Height of the tallest layer, clamped to the room's cap; `None` without video, or when
    /// neither the publisher nor the room said.
    pub height: Option<u32>,
    /// What the owner muted. An admin's mute is the participant's
    /// [`ParticipantView::admin_muted`]; media is forwarded only if neither muted it.
    pub muted: Mute,
}

/// What a subscriber receives of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Receives the audio.
    pub audio: bool,
    /// Receives the video.
    pub video: bool,
    /// The height at which it shows the video, for layer selection (`Demand::wanted_height` in
    /// [`crate::select`]); `None` for as large as available.
    pub wanted_height: Option<u32>,
}

impl Subscription {
    /// Audio and video, as large as available.
    pub const ALL: Subscription = Subscription { audio: true, video: true, wanted_height: None };

    /// Whether media of `kind` is received.
    pub const fn wants(self, kind: TrackKind) -> bool {
        match kind {
            TrackKind::Audio => self.audio,
            TrackKind::Video => self.video,
        }
    }
}

/// One participant as the roster shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantView<K> {
    /// Who.
    pub who: K,
    /// What they may do.
    pub permissions: Permissions,
    /// Which media an admin muted on all their streams.
    pub admin_muted: Mute,
    /// Whether they are talking.
    pub talking: bool,
    /// Their streams, in the order published.
    pub streams: Vec<(Sid, StreamInfo)>,
}

/// Why the room refused a request. Every variant is the requester's mistake or lack of right,
/// never a bug; the signaling layer maps each to an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomError {
    /// The participant making the request is not in the call.
    NotInRoom,
    /// The participant is already in the call.
    AlreadyJoined,
    /// The participant an admin acts on is not in the call.
    NoSuchParticipant,
    /// No such stream (or its publisher is not in the call).
    NoSuchStream,
    /// The participant already publishes a stream with this [`Sid`].
    StreamExists,
    /// The participant already publishes [`RoomSettings::max_streams`] streams.
    TooManyStreams,
    /// The participant lacks the publish permission.
    PublishNotPermitted,
    /// The participant lacks the subscribe permission.
    SubscribeNotPermitted,
    /// The admin lacks the call-control right (mute others, mute everyone).
    CallControlRequired,
    /// The admin lacks the hang-up right (end others' streams, remove them).
    HangupRequired,
    /// The room does not allow audio.
    AudioNotAllowed,
    /// The room does not allow video.
    VideoNotAllowed,
    /// The room does not allow screen sharing.
    ScreenNotAllowed,
    /// The stream would carry neither audio nor video.
    EmptyStream,
    /// A screen stream must carry video.
    ScreenWithoutVideo,
    /// The video's layer count is not in `1..=`[`Layer::COUNT`].
    InvalidLayers,
    /// The stream does not carry the media named.
    NoSuchMedia,
    /// A participant cannot subscribe to its own stream.
    OwnStream,
    /// The subscription would receive nothing: the stream has none of the media asked for.
    NothingToReceive,
    /// The subscriber is not subscribed to that stream.
    NotSubscribed,
    /// An admin muted this media; only an admin can unmute it.
    MutedByAdmin,
    /// The request is for live mode and the room is not live.
    NotLive,
    /// Only audience members raise hands, and only they are brought on stage.
    NotAudience,
    /// Only a participant brought on stage is sent back (one who publishes by right stays).
    NotOnStageAsGuest,
    /// The participant lacks the list permission.
    ListNotPermitted,
}

impl fmt::Display for RoomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoomError::NotInRoom => "not in the call",
            RoomError::AlreadyJoined => "already in the call",
            RoomError::NoSuchParticipant => "no such participant in the call",
            RoomError::NoSuchStream => "no such stream",
            RoomError::StreamExists => "a stream with this id is already published",
            RoomError::TooManyStreams => "too many streams published",
            RoomError::PublishNotPermitted => "not permitted to publish",
            RoomError::SubscribeNotPermitted => "not permitted to subscribe",
            RoomError::CallControlRequired => "call control right required",
            RoomError::HangupRequired => "hang-up right required",
            RoomError::AudioNotAllowed => "audio is not allowed in this call",
            RoomError::VideoNotAllowed => "video is not allowed in this call",
            RoomError::ScreenNotAllowed => "screen sharing is not allowed in this call",
            RoomError::EmptyStream => "a stream must carry audio or video",
            RoomError::ScreenWithoutVideo => "a screen stream must carry video",
            RoomError::InvalidLayers => "invalid number of simulcast layers",
            RoomError::NoSuchMedia => "the stream does not carry this media",
            RoomError::OwnStream => "cannot subscribe to one's own stream",
            RoomError::NothingToReceive => "the stream has none of the media asked for",
            RoomError::NotSubscribed => "not subscribed to this stream",
            RoomError::MutedByAdmin => "muted by an admin",
            RoomError::NotLive => "the call is not in live mode",
            RoomError::NotAudience => "only an audience member can do or be that",
            RoomError::NotOnStageAsGuest => "only a participant brought on stage can be sent back",
            RoomError::ListNotPermitted => "not permitted to list the participants",
        })
    }
}

impl std::error::Error for RoomError {}

/// The call of one group. See the [module docs](self) for the rules.
///
/// `K` is the caller's participant id (a user id, or a session id if one user may join twice).
/// After every method that changes the room, drain [`Room::poll_event`]; whenever
/// [`Room::poll_timeout`] passes, call [`Room::handle_timeout`].
#[derive(Debug)]
pub struct Room<K> {
    settings: RoomSettings,
    participants: HashMap<K, Participant<K>>,
    /// Participant ids in the order they joined: the order of rosters and of every event's `to`.
    order: Vec<K>,
    events: VecDeque<RoomEvent<K>>,
    /// Joins so far: each participant's [`Participant::seq`], the audience's page cursor.
    joins: u64,
    /// The audience count as last told, and when (live mode).
    count: live::CountClock,
}

#[derive(Debug)]
struct Participant<K> {
    /// The how-manieth join this was (1-based, never reused).
    seq: u64,
    /// An audience member has a hand raised (live mode).
    hand: bool,
    /// Brought on stage by a host: the publish right is lent for this call (live mode).
    guest: bool,
    permissions: Permissions,
    admin_muted: Mute,
    talking: bool,
    /// When the room's maximum duration runs out for this participant.
    deadline: Option<Instant>,
    /// Few (at most `max_streams`): a vector beats hashing.
    streams: Vec<(Sid, StreamInfo)>,
    subscriptions: HashMap<StreamId<K>, Subscription>,
}

impl<K> Participant<K> {
    fn stream(&self, sid: Sid) -> Option<&StreamInfo> {
        self.streams.iter().find(|(id, _)| *id == sid).map(|(_, info)| info)
    }

    fn stream_mut(&mut self, sid: Sid) -> Option<&mut StreamInfo> {
        self.streams.iter_mut().find(|(id, _)| *id == sid).map(|(_, info)| info)
    }
}

impl<K: Copy + Eq + Hash + Ord> Room<K> {
    /// An empty room with these call settings.
    pub fn new(settings: RoomSettings) -> Self {
        Self {
            settings,
            participants: HashMap::new(),
            order: Vec::new(),
            events: VecDeque::new(),
            joins: 0,
            count: live::CountClock::default(),
        }
    }

    /// The room's call settings.
    pub fn settings(&self) -> &RoomSettings {
        &self.settings
    }

    /// How many participants are in the call.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nobody is in the call.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether `who` is in the call.
    pub fn contains(&self, who: K) -> bool {
        self.participants.contains_key(&who)
    }

    /// What `who` may do, if in the call.
    pub fn permissions(&self, who: K) -> Option<Permissions> {
        self.participants.get(&who).map(|participant| participant.permissions)
    }

    /// A published stream.
    pub fn stream(&self, stream: StreamId<K>) -> Option<&StreamInfo> {
        self.participants.get(&stream.publisher)?.stream(stream.sid)
    }

    /// What `subscriber` receives of `stream`, if subscribed.
    pub fn subscription(&self, subscriber: K, stream: StreamId<K>) -> Option<&Subscription> {
        self.participants.get(&subscriber)?.subscriptions.get(&stream)
    }

    /// Everyone subscribed to `stream`, in the order they joined (to pause layers nobody watches).
    pub fn subscribers(&self, stream: StreamId<K>) -> impl Iterator<Item = (K, &Subscription)> + '_ {
        self.order.iter().filter_map(move |who| Some((*who, self.participants.get(who)?.subscriptions.get(&stream)?)))
    }

    /// The roster as `viewer` may see it: everyone in the order they joined if it has the list
    /// permission, otherwise only itself; empty if `viewer` is not in the call.
    pub fn roster(&self, viewer: K) -> Vec<ParticipantView<K>> {
        let Some(lists) = self.participants.get(&viewer).map(|participant| participant.permissions.list) else {
            return Vec::new();
        };
        self.order
            .iter()
            .copied()
            .filter(|&who| who == viewer || (lists && !self.is_audience(who)))
            .filter_map(|who| self.view(who))
            .collect()
    }

    fn view(&self, who: K) -> Option<ParticipantView<K>> {
        let participant = self.participants.get(&who)?;
        Some(ParticipantView {
            who,
            permissions: participant.permissions,
            admin_muted: participant.admin_muted,
            talking: participant.talking,
            streams: participant.streams.clone(),
        })
    }

    /// Whether `kind` media of `publisher`'s stream `sid` may leave the publisher at all (to a
    /// subscriber or a recording): it may publish, the stream carries `kind`, and neither it nor
    /// an admin muted it.
    pub fn record_allowed(&self, publisher: K, sid: Sid, kind: TrackKind) -> bool {
        let Some(sender) = self.participants.get(&publisher) else { return false };
        if !sender.permissions.publish || sender.admin_muted.get(kind) {
            return false;
        }
        sender.stream(sid).is_some_and(|stream| stream.kind.carries(kind) && !stream.muted.get(kind))
    }

    /// Whether media of `kind` from `publisher`'s stream `sid` may be forwarded to `subscriber`.
    ///
    /// False unless the publisher is in the call with the publish permission and publishes that
    /// stream with that media, neither it nor an admin muted the media, and the subscriber is in
    /// the call with the subscribe permission and subscribed to that media of the stream. So RTP
    /// from a member who may not publish, or to one who may not subscribe, is dropped.
    ///
    /// Called per packet route: two hash lookups and a scan of the publisher's few streams; never
    /// allocates.
    pub fn forward_allowed(&self, publisher: K, sid: Sid, subscriber: K, kind: TrackKind) -> bool {
        if !self.record_allowed(publisher, sid, kind) {
            return false;
        }
        let Some(receiver) = self.participants.get(&subscriber) else { return false };
        receiver.permissions.subscribe
            && receiver.subscriptions.get(&StreamId { publisher, sid }).is_some_and(|wanted| wanted.wants(kind))
    }

    /// `who` joins the call at `now` with `permissions`.
    pub fn join(&mut self, now: Instant, who: K, permissions: Permissions) -> Result<(), RoomError> {
        if self.contains(who) {
            return Err(RoomError::AlreadyJoined);
        }
        let deadline = self.settings.max_duration.and_then(|limit| now.checked_add(limit));
        self.joins += 1;
        self.count.started(now);
        let participant = Participant {
            seq: self.joins,
            hand: false,
            guest: false,
            permissions,
            admin_muted: Mute::NONE,
            talking: false,
            deadline,
            streams: Vec::new(),
            subscriptions: HashMap::new(),
        };
        self.participants.insert(who, participant);
        self.order.push(who);
        self.count_audience(who, true);
        self.emit(self.roster_audience(who, None), RoomEventKind::ParticipantJoined { who, permissions });
        Ok(())
    }

    /// `who` leaves the call: its subscriptions and streams end, then everyone concerned hears
    /// it left. `reason` is usually [`LeaveReason::Left`] or [`LeaveReason::Lost`]; the server may
    /// also pass [`LeaveReason::Removed`] when a member is removed from the group.
    pub fn leave(&mut self, who: K, reason: LeaveReason<K>) -> Result<(), RoomError> {
        if !self.contains(who) {
            return Err(RoomError::NotInRoom);
        }
        self.remove_participant(who, reason);
        Ok(())
    }

    /// Changes what `who` may do (the group's policy or the member's flags changed). Losing
    /// publish ends its streams; losing subscribe ends its subscriptions. In a live room a
    /// change of the publish right moves `who` between stage and audience; a publish right lent
    /// by [`Room::set_stage`] stays until it is sent back or the group grants it.
    pub fn set_permissions(&mut self, who: K, mut permissions: Permissions) -> Result<(), RoomError> {
        let participant = self.participants.get_mut(&who).ok_or(RoomError::NotInRoom)?;
        if permissions.publish {
            // The group grants it now: nothing is lent any more.
            participant.guest = false;
        }
        // A participant brought on stage keeps the publish right lent to it for this call.
        permissions.publish |= participant.guest;
        self.apply_permissions(who, permissions);
        Ok(())
    }

    /// Records that `who` started or stopped talking (from [`crate::talk`]). Emits an event only
    /// on a change.
    pub fn set_talking(&mut self, who: K, talking: bool) -> Result<(), RoomError> {
        let participant = self.participants.get_mut(&who).ok_or(RoomError::NotInRoom)?;
        if participant.talking != talking {
            participant.talking = talking;
            self.emit(self.roster_audience(who, None), RoomEventKind::Talking { who, talking });
        }
        Ok(())
    }

    /// `who` publishes stream `sid`. Returns the stream as granted: layers reduced to one when the
    /// room has simulcast off, height clamped to the room's cap.
    pub fn publish(&mut self, who: K, sid: Sid, request: Publish) -> Result<StreamInfo, RoomError> {
        let settings = self.settings;
        let participant = self.participants.get(&who).ok_or(RoomError::NotInRoom)?;
        if !participant.permissions.publish {
            return Err(RoomError::PublishNotPermitted);
        }
        let kind = request.kind;
        if !kind.audio && !kind.video {
            return Err(RoomError::EmptyStream);
        }
        if kind.screen && !kind.video {
            return Err(RoomError::ScreenWithoutVideo);
        }
        if kind.audio && !settings.audio {
            return Err(RoomError::AudioNotAllowed);
        }
        if kind.video && !settings.video {
            return Err(RoomError::VideoNotAllowed);
        }
        if kind.screen && !settings.screen {
            return Err(RoomError::ScreenNotAllowed);
        }
        if kind.video && !(1..=Layer::COUNT).contains(&usize::from(request.layers)) {
            return Err(RoomError::InvalidLayers);
        }
        if participant.stream(sid).is_some() {
            return Err(RoomError::StreamExists);
        }
        if participant.streams.len() >= settings.max_streams {
            return Err(RoomError::TooManyStreams);
        }
        let info = StreamInfo {
            kind,
            layers: if kind.video && settings.simulcast { request.layers } else { 1 },
            height: match (kind.video, request.height, settings.max_height) {
                (false, _, _) => None,
                (true, Some(height), Some(max)) => Some(height.min(max)),
                (true, height, max) => height.or(max),
            },
            muted: Mute { audio: kind.audio && request.muted.audio, video: kind.video && request.muted.video },
        };
        if let Some(participant) = self.participants.get_mut(&who) {
            participant.streams.push((sid, info));
        }
        let stream = StreamId { publisher: who, sid };
        self.emit(self.roster_audience(who, None), RoomEventKind::StreamPublished { stream, info });
        Ok(info)
    }

    /// `who` stops publishing stream `sid`; its subscriptions end.
    pub fn unpublish(&mut self, who: K, sid: Sid) -> Result<(), RoomError> {
        let participant = self.participants.get(&who).ok_or(RoomError::NotInRoom)?;
        participant.stream(sid).ok_or(RoomError::NoSuchStream)?;
        self.remove_stream(StreamId { publisher: who, sid }, UnpublishReason::Unpublished, None);
        Ok(())
    }

    /// The owner mutes or unmutes the `kind` media of its stream `sid`. Unmuting what an admin
    /// muted is refused. Emits an event only on a change.
    pub fn set_muted(&mut self, who: K, sid: Sid, kind: TrackKind, muted: bool) -> Result<(), RoomError> {
        let participant = self.participants.get_mut(&who).ok_or(RoomError::NotInRoom)?;
        let admin_muted = participant.admin_muted.get(kind);
        let stream = participant.stream_mut(sid).ok_or(RoomError::NoSuchStream)?;
        if !stream.kind.carries(kind) {
            return Err(RoomError::NoSuchMedia);
        }
        if !muted && admin_muted {
            return Err(RoomError::MutedByAdmin);
        }
        if stream.muted.get(kind) == muted {
            return Ok(());
        }
        stream.muted.set(kind, muted);
        let muted = stream.muted;
        self.emit(
            self.roster_audience(who, None),
            RoomEventKind::StreamMuted { stream: StreamId { publisher: who, sid }, muted },
        );
        Ok(())
    }

    /// `subscriber` subscribes to `stream`, or changes an existing subscription. Media the stream
    /// does not carry is left out of the returned, granted subscription.
    pub fn subscribe(
        &mut self,
        subscriber: K,
        stream: StreamId<K>,
        wanted: Subscription,
    ) -> Result<Subscription, RoomError> {
        let participant = self.participants.get(&subscriber).ok_or(RoomError::NotInRoom)?;
        if !participant.permissions.subscribe {
            return Err(RoomError::SubscribeNotPermitted);
        }
        if stream.publisher == subscriber {
            return Err(RoomError::OwnStream);
        }
        let info = self.stream(stream).ok_or(RoomError::NoSuchStream)?;
        let granted = Subscription {
            audio: wanted.audio && info.kind.audio,
            video: wanted.video && info.kind.video,
            wanted_height: wanted.wanted_height,
        };
        if !granted.audio && !granted.video {
            return Err(RoomError::NothingToReceive);
        }
        let Some(participant) = self.participants.get_mut(&subscriber) else { return Err(RoomError::NotInRoom) };
        let previous = participant.subscriptions.insert(stream, granted);
        let kind = match previous {
            None => RoomEventKind::SubscriptionAdded { subscriber, stream, subscription: granted },
            Some(previous) if previous != granted => {
                RoomEventKind::SubscriptionUpdated { subscriber, stream, subscription: granted }
            }
            Some(_) => return Ok(granted),
        };
        self.emit(self.subscription_audience(subscriber, stream.publisher, None), kind);
        Ok(granted)
    }

    /// `subscriber` stops receiving `stream`.
    pub fn unsubscribe(&mut self, subscriber: K, stream: StreamId<K>) -> Result<(), RoomError> {
        let participant = self.participants.get(&subscriber).ok_or(RoomError::NotInRoom)?;
        if !participant.subscriptions.contains_key(&stream) {
            return Err(RoomError::NotSubscribed);
        }
        self.remove_subscription(subscriber, stream, UnsubscribeReason::Unsubscribed, None);
        Ok(())
    }

    /// An admin with call control mutes (or lifts its mute of) `target`'s `kind` media on all its
    /// streams, present and future.
    pub fn admin_mute(&mut self, admin: K, target: K, kind: TrackKind, muted: bool) -> Result<(), RoomError> {
        self.require_admin(admin, |permissions| permissions.call_control, RoomError::CallControlRequired)?;
        let participant = self.participants.get_mut(&target).ok_or(RoomError::NoSuchParticipant)?;
        if participant.admin_muted.get(kind) != muted {
            participant.admin_muted.set(kind, muted);
            self.emit_updated(target);
        }
        Ok(())
    }

    /// An admin with call control mutes (or lifts its mute of) everyone else's `kind` media.
    pub fn admin_mute_all(&mut self, admin: K, kind: TrackKind, muted: bool) -> Result<(), RoomError> {
        self.require_admin(admin, |permissions| permissions.call_control, RoomError::CallControlRequired)?;
        for target in self.order.clone() {
            if target != admin {
                self.admin_mute(admin, target, kind, muted)?;
            }
        }
        Ok(())
    }

    /// An admin with the hang-up right ends one of another participant's streams.
    pub fn admin_hangup(&mut self, admin: K, stream: StreamId<K>) -> Result<(), RoomError> {
        self.require_admin(admin, |permissions| permissions.hangup, RoomError::HangupRequired)?;
        self.stream(stream).ok_or(RoomError::NoSuchStream)?;
        self.remove_stream(stream, UnpublishReason::HungUp { by: admin }, None);
        Ok(())
    }

    /// An admin with the hang-up right removes `target` from the call.
    pub fn admin_remove(&mut self, admin: K, target: K) -> Result<(), RoomError> {
        self.require_admin(admin, |permissions| permissions.hangup, RoomError::HangupRequired)?;
        if !self.contains(target) {
            return Err(RoomError::NoSuchParticipant);
        }
        self.remove_participant(target, LeaveReason::Removed { by: admin });
        Ok(())
    }

    /// Ends the call of every participant whose maximum duration has run out by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<K> = self
            .order
            .iter()
            .copied()
            .filter(|who| self.participants.get(who).and_then(|p| p.deadline).is_some_and(|deadline| deadline <= now))
            .collect();
        for who in expired {
            self.remove_participant(who, LeaveReason::DurationExceeded);
        }
        self.tell_count(now);
    }

    /// When [`Room::handle_timeout`] next has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadlines = self.participants.values().filter_map(|participant| participant.deadline).min();
        match (deadlines, self.count_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<RoomEvent<K>> {
        self.events.pop_front()
    }

    fn require_admin(
        &self,
        admin: K,
        has_right: impl Fn(&Permissions) -> bool,
        missing: RoomError,
    ) -> Result<(), RoomError> {
        let participant = self.participants.get(&admin).ok_or(RoomError::NotInRoom)?;
        if has_right(&participant.permissions) {
            Ok(())
        } else {
            Err(missing)
        }
    }

    fn emit(&mut self, to: Vec<K>, kind: RoomEventKind<K>) {
        self.events.push_back(RoomEvent { to, kind });
    }

    fn emit_updated(&mut self, who: K) {
        let Some(participant) = self.participants.get(&who) else { return };
        let kind = RoomEventKind::ParticipantUpdated {
            who,
            permissions: participant.permissions,
            admin_muted: participant.admin_muted,
        };
        self.emit(self.roster_audience(who, None), kind);
    }

    /// Who hears about `subject` and its streams: the listers and `subject`, except `exclude`.
    /// In live mode an audience member is heard of by itself alone.
    fn roster_audience(&self, subject: K, exclude: Option<K>) -> Vec<K> {
        if self.is_audience(subject) {
            return if exclude == Some(subject) { Vec::new() } else { vec![subject] };
        }
        self.audience(exclude, |who, permissions| who == subject || permissions.list)
    }

    /// Who hears about a subscription: the subscriber, and the publisher if it lists.
    /// In live mode the stage is not told of each audience member watching it.
    fn subscription_audience(&self, subscriber: K, publisher: K, exclude: Option<K>) -> Vec<K> {
        let tell_publisher = !self.is_audience(subscriber);
        self.audience(exclude, |who, permissions| {
            who == subscriber || (tell_publisher && who == publisher && permissions.list)
        })
    }

    fn audience(&self, exclude: Option<K>, hears: impl Fn(K, &Permissions) -> bool) -> Vec<K> {
        self.order
            .iter()
            .copied()
            .filter(|&who| Some(who) != exclude)
            .filter(|who| self.participants.get(who).is_some_and(|participant| hears(*who, &participant.permissions)))
            .collect()
    }

    fn sids(&self, who: K) -> Vec<Sid> {
        self.participants
            .get(&who)
            .map(|participant| participant.streams.iter().map(|(sid, _)| *sid).collect())
            .unwrap_or_default()
    }

    fn remove_subscription(
        &mut self,
        subscriber: K,
        stream: StreamId<K>,
        reason: UnsubscribeReason,
        exclude: Option<K>,
    ) {
        let Some(participant) = self.participants.get_mut(&subscriber) else { return };
        if participant.subscriptions.remove(&stream).is_some() {
            let to = self.subscription_audience(subscriber, stream.publisher, exclude);
            self.emit(to, RoomEventKind::SubscriptionRemoved { subscriber, stream, reason });
        }
    }

    /// Ends every subscription of `subscriber`, in stream order.
    fn remove_subscriptions_of(&mut self, subscriber: K, reason: UnsubscribeReason, exclude: Option<K>) {
        let Some(participant) = self.participants.get(&subscriber) else { return };
        let mut streams: Vec<StreamId<K>> = participant.subscriptions.keys().copied().collect();
        streams.sort_unstable();
        for stream in streams {
            self.remove_subscription(subscriber, stream, reason, exclude);
        }
    }

    /// Ends `stream`: first its subscriptions, then the stream itself.
    fn remove_stream(&mut self, stream: StreamId<K>, reason: UnpublishReason<K>, exclude: Option<K>) {
        let subscribers: Vec<K> = self.subscribers(stream).map(|(who, _)| who).collect();
        for subscriber in subscribers {
            self.remove_subscription(subscriber, stream, UnsubscribeReason::StreamEnded, exclude);
        }
        let Some(publisher) = self.participants.get_mut(&stream.publisher) else { return };
        publisher.streams.retain(|(sid, _)| *sid != stream.sid);
        self.emit(self.roster_audience(stream.publisher, exclude), RoomEventKind::StreamUnpublished { stream, reason });
    }

    /// Removes `who` and everything it had; the events before the last one are not sent to it.
    fn remove_participant(&mut self, who: K, reason: LeaveReason<K>) {
        self.remove_subscriptions_of(who, UnsubscribeReason::SubscriberLeft, Some(who));
        for sid in self.sids(who) {
            self.remove_stream(StreamId { publisher: who, sid }, UnpublishReason::OwnerLeft, Some(who));
        }
        if self.participants.get(&who).is_some_and(|p| p.hand) {
            self.raise_hand(who, false).ok();
        }
        let to = self.roster_audience(who, None);
        self.count_audience(who, false);
        self.participants.remove(&who);
        self.order.retain(|&other| other != who);
        self.emit(to, RoomEventKind::ParticipantLeft { who, reason });
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod live_tests;
