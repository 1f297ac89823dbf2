//! Group calls: signaling on the session's WebSocket, media through the SFU.
//!
//! A call is the call of one group. Its state lives in one sans-IO **engine** ([`engine`]), which
//! owns the sans-IO [`chorus_sfu::Room`] (who is in, what they may do, what they publish and
//! receive), every participant's two str0m peer connections, and the forwarders between them. A
//! **room task** ([`task`]) drives it: sessions talk to the task through a command channel, the
//! media sockets ([`net`]) hand it its datagrams in batches, and it carries out what the engine
//! outputs.
//! Rooms are independent tasks on the runtime's worker threads, so one busy call does not stall
//! another and calls spread over the cores.
//!
//! [`Calls`] is the entry point: it resolves a member's call permissions from the group's policy
//! and the member's flags, finds or starts the room task, and returns a [`CallSession`] whose
//! receiver carries the frames the room sends to that session. Dropping the `CallSession` (the
//! WebSocket closed) takes the participant out of the call.
//!
//! **Bounded queues.** Nothing a client does can make a room hold an unbounded queue: the room's
//! command channel is bounded (a request that finds it full is answered `rate_limited` at once),
//! and so is each participant's event queue: a session that stops reading falls behind, and when
//! its queue is full the room takes it out of the call (`left`, reason `slow`, queued in the slot
//! kept for it) and drops the queue. What must never be lost does not go through the bounded
//! channel: a dropped `CallSession` closes its receiver and wakes the room, which removes every
//! participant whose receiver is closed; a group change leaves the latest member list in a slot
//! and wakes the room the same way.

mod batch;
pub mod direct;
mod egress;
mod engine;
mod net;
pub(crate) mod sdp;
mod task;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use engine::{check_publish, leg_config, remote_sdp};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use net::stun_local_ufrag;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use sdp::{narrow_codecs, simulcast_send_rids};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::call::{CallPermissions, CallRecording, CallSettings, RecordAction};
use chorus_proto::flags::{admin, call, group, member, resolution};
use chorus_proto::rest::Group;
use chorus_proto::ws::{ClientFrame, ServerFrame, SessionUser};
use chorus_proto::ErrorCode;
use chorus_sfu::{Permissions, RoomSettings};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::Config;
use crate::error::ApiError;
use crate::groups::{Actor, Groups};

pub(crate) use engine::RecordOut;
pub(crate) use net::MediaNet;
use task::{Command, RoomTask};

/// The group-calls service.
pub struct Calls {
    net: Arc<MediaNet>,
    groups: Arc<Groups>,
    hooks: Arc<crate::webhooks::Webhooks>,
    cfg: Arc<Config>,
    rooms: Mutex<HashMap<i64, RoomHandle>>,
    next_room: AtomicU64,
    /// The embedded TURN relay's credentials maker, once it runs.
    turn: std::sync::OnceLock<crate::turn::Turn>,
    /// Participants whose signaling comes over HTTP (WHIP, WHEP), by gid and address: they are
    /// no group members, so a refresh keeps them by these entries (see [`HttpLeg`]).
    http_legs: Mutex<HashMap<i64, HashMap<String, HttpLeg>>>,
    /// The next user id of an HTTP participant: negative, so never a user's.
    next_http_uid: AtomicI64,
    /// Where finished recordings are published.
    media: Option<Arc<crate::media::Media>>,
}

/// A participant whose signaling comes over HTTP (a WHIP publisher, a WHEP viewer).
#[derive(Debug, Clone)]
pub(crate) struct HttpLeg {
    /// The member it acts for (a user token's owner): its rights bound the leg's, and it leaves
    /// when that member does. `None` for a stream key (revoking the key ends the leg).
    pub backing: Option<String>,
    /// A viewer without an account (the group's public viewing): it leaves when the group turns
    /// public viewing off.
    pub public: bool,
    /// What the leg does: publish (WHIP) or subscribe (WHEP).
    pub permissions: Permissions,
}

/// Commands queued to one room before requests are refused (`rate_limited`).
const ROOM_COMMANDS: usize = 1024;

#[derive(Clone)]
struct RoomHandle {
    id: u64,
    cmd: mpsc::Sender<Command>,
    shared: Arc<RoomShared>,
}

/// What reaches a room besides its bounded command queue: never lost, never blocking.
#[derive(Default)]
pub(crate) struct RoomShared {
    /// Wakes the room: a session left (its receiver is closed) or `refresh` was filled.
    pub wake: Notify,
    /// The group's members now, by address, with their call permissions (the latest wins).
    pub refresh: Mutex<Option<HashMap<String, Permissions>>>,
    /// Sessions holding a [`CallSession`] of this room (for the admin view).
    pub sessions: AtomicUsize,
    /// When the room task started, ms since the epoch (for the admin view).
    pub started_ms: AtomicI64,
    /// The call's recording state (for `GET /v1/groups/{gid}/call/recording`).
    pub recording: Mutex<CallRecording>,
}

/// A call in progress, as the admin view shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveCall {
    /// The group whose call it is.
    pub gid: i64,
    /// Sessions in the call now.
    pub participants: usize,
    /// When the call started, ms since the epoch.
    pub started_at: i64,
    /// The node holding it (`node_id`; set by the admin view).
    #[serde(default)]
    pub node: String,
}

/// A session's place in a call. Its `rx` carries the frames the room sends this session;
/// dropping it takes the participant out of the call. When the room lets the session go (it
/// left, was removed, fell behind, or the call ended) `rx` yields what was queued, then `None`.
pub struct CallSession {
    /// The group whose call this is.
    pub gid: i64,
    uid: i64,
    session: u64,
    place: Place,
    /// Frames for the session, serialised once by the room.
    pub rx: mpsc::Receiver<crate::bus::FrameText>,
}

/// Where a session's call is: a room on this node, or a room on another node of the cluster.
enum Place {
    Local(RoomHandle),
    Remote(Box<dyn RemoteRoom>),
}

/// A call's room on another node, as a session here reaches it (cluster mode,
/// `crate::cluster::calls`). Dropping it takes the session out of that call.
pub(crate) trait RemoteRoom: Send + Sync {
    /// Passes a call frame to the room; its answer comes on the channel (dropped: the call ended).
    fn request(&self, frame: ClientFrame) -> oneshot::Receiver<ServerFrame>;
}

impl Drop for CallSession {
    fn drop(&mut self) {
        // A closed receiver is the room's sign that this participant is gone; the wake-up is a
        // stored permit, so it is not lost however busy the room is.
        self.rx.close();
        if let Place::Local(room) = &self.place {
            let _ = room.shared.sessions.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            room.shared.wake.notify_one();
        }
    }
}

impl CallSession {
    /// A session's place in the call of `gid` held by another node: `rx` carries what that
    /// node's room sends the session.
    pub(crate) fn remote(
        gid: i64,
        uid: i64,
        session: u64,
        room: Box<dyn RemoteRoom>,
        rx: mpsc::Receiver<crate::bus::FrameText>,
    ) -> CallSession {
        CallSession { gid, uid, session, place: Place::Remote(room), rx }
    }

    /// Passes a call frame (other than `call_join`) to the room; the answer comes on the returned
    /// channel (at once, `rate_limited`, when the room's queue is full).
    pub fn request(&self, frame: ClientFrame) -> oneshot::Receiver<ServerFrame> {
        let room = match &self.place {
            Place::Local(room) => room,
            Place::Remote(remote) => return remote.request(frame),
        };
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Request { uid: self.uid, session: self.session, frame, reply: tx, queued: Instant::now() };
        if let Err(mpsc::error::TrySendError::Full(Command::Request { frame, reply, .. })) = room.cmd.try_send(cmd) {
            crate::metrics::metrics().rate_limited.inc();
            let _ = reply.send(ServerFrame::Error {
                rid: frame.rid().map(str::to_string),
                id: None,
                code: ErrorCode::RateLimited,
                message: "the call is busy; try again".into(),
                status: None,
            });
        }
        rx
    }

    /// Offers the publish connection anew with `sdp` (the same media lines; new ICE credentials
    /// restart ICE); answered by `call_sdp` with the answer, or an error frame.
    /// Only HTTP participants (WHIP, WHEP) reoffer, and their rooms are always on their node.
    pub(crate) fn reoffer(&self, sdp: String) -> oneshot::Receiver<ServerFrame> {
        let (tx, rx) = oneshot::channel();
        let Place::Local(room) = &self.place else {
            return rx; // dropped: answered as a call that ended
        };
        let cmd = Command::Reoffer { uid: self.uid, session: self.session, sdp, reply: tx, queued: Instant::now() };
        if let Err(mpsc::error::TrySendError::Full(Command::Reoffer { reply, .. })) = room.cmd.try_send(cmd) {
            crate::metrics::metrics().rate_limited.inc();
            let _ = reply.send(ServerFrame::Error {
                rid: None,
                id: None,
                code: ErrorCode::RateLimited,
                message: "the call is busy; try again".into(),
                status: None,
            });
        }
        rx
    }
}

/// What a member may do in the group's call: publish, subscribe and list by the one permission
/// rule ([`group::allows`]: the member's flags, in every group mode), call control and hang-up by
/// the admin flags.
pub fn permissions(group_flags: u32, member_flags: u32, admin_flags: u32) -> Permissions {
    let allowed = |action| group::allows(group_flags, Some(member_flags), action);
    let is_admin = member_flags & member::ADMIN != 0 || admin_flags & admin::OWNER != 0;
    Permissions {
        publish: allowed(group::Action::Publish),
        subscribe: allowed(group::Action::Subscribe),
        list: allowed(group::Action::List),
        call_control: is_admin && admin_flags & admin::CALL_CONTROL != 0,
        hangup: is_admin && admin_flags & admin::HANGUP != 0,
    }
}

/// The member a group's calls are recorded for when it records them from their start
/// (`auto_record`): its owner.
#[derive(Debug, Clone)]
pub(crate) struct AutoRecord {
    pub uid: i64,
    pub address: String,
}

/// The room settings of a group's call flags, resolution and duration.
pub fn settings(g: &Group) -> RoomSettings {
    // Call flags without VALID mean "not configured": everything the default allows.
    let flags = if g.call_flags & call::VALID == 0 { call::DEFAULT | call::SIMULCAST } else { g.call_flags };
    RoomSettings {
        audio: flags & call::AUDIO != 0,
        video: flags & call::VIDEO != 0,
        screen: flags & call::SCREEN != 0 && flags & call::VIDEO != 0,
        simulcast: flags & call::SIMULCAST != 0 || g.call_flags & call::VALID == 0,
        max_height: resolution::height(g.video_resolution).or(Some(720)),
        max_duration: (g.call_duration > 0).then(|| Duration::from_secs(u64::from(g.call_duration))),
        max_streams: 4,
        live: g.live,
    }
}

pub(crate) fn wire_permissions(p: Permissions) -> CallPermissions {
    CallPermissions {
        publish: p.publish,
        subscribe: p.subscribe,
        list: p.list,
        call_control: p.call_control,
        hangup: p.hangup,
    }
}

pub(crate) fn wire_settings(s: &RoomSettings) -> CallSettings {
    CallSettings {
        audio: s.audio,
        video: s.video,
        screen: s.screen,
        simulcast: s.simulcast,
        max_height: s.max_height,
        max_duration_secs: s.max_duration.map(|d| d.as_secs()),
        max_streams: s.max_streams as u32,
        live: s.live,
    }
}

impl Calls {
    /// Binds the media sockets and builds the service.
    pub async fn start(
        cfg: Arc<Config>,
        groups: Arc<Groups>,
        hooks: Arc<crate::webhooks::Webhooks>,
        media: Option<Arc<crate::media::Media>>,
    ) -> anyhow::Result<Arc<Calls>> {
        let net = MediaNet::start(&cfg).await?;
        tracing::info!(udp = %net.udp_local(), advertised = %net.udp_advertised, tcp = ?net.tcp_advertised, "media sockets ready");
        let mut changes = groups.changes();
        let calls = Arc::new(Calls {
            net,
            groups,
            hooks,
            cfg,
            rooms: Mutex::new(HashMap::new()),
            next_room: AtomicU64::new(1),
            turn: Default::default(),
            http_legs: Mutex::new(HashMap::new()),
            next_http_uid: AtomicI64::new(-1),
            media,
        });
        // Membership and flag changes reach live calls: a member removed from the group leaves its
        // call, one who lost publish stops publishing, at once.
        let weak = Arc::downgrade(&calls);
        tokio::spawn(async move {
            loop {
                let gids: Vec<i64> = match changes.recv().await {
                    Ok(gid) => vec![gid],
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => match weak.upgrade() {
                        Some(c) => c.rooms.lock().expect("rooms lock").keys().copied().collect(),
                        None => return,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(calls) = weak.upgrade() else { return };
                for gid in gids {
                    calls.refresh(gid).await;
                }
            }
        });
        Ok(calls)
    }

    /// Re-reads the group's members and gives its live call their current permissions.
    async fn refresh(&self, gid: i64) {
        let handle = self.rooms.lock().expect("rooms lock").get(&gid).cloned();
        let Some(handle) = handle else { return };
        let members = match self.groups.get(gid, Actor::Admin).await {
            Ok(g) => match self.groups.members(gid, Actor::Admin).await {
                Ok(ms) => {
                    let members = ms.into_iter().map(|m| (m.address, permissions(g.flags, m.flags, m.admin_flags)));
                    self.with_http_legs(gid, members.collect(), g.public_viewing)
                }
                Err(e) => {
                    tracing::warn!(gid, error = %e.message, "call permissions not refreshed");
                    return;
                }
            },
            // The group is gone: so is everyone's place in its call.
            Err(e) if e.code == ErrorCode::NotFound => HashMap::new(),
            Err(e) => {
                tracing::warn!(gid, error = %e.message, "call permissions not refreshed");
                return;
            }
        };
        *handle.shared.refresh.lock().expect("refresh lock") = Some(members);
        handle.shared.wake.notify_one();
    }

    /// Adds the HTTP participants of `gid` to its `members`, each with its own rights bounded
    /// by its backing member's (one whose member is gone is left out, so it leaves; so is a public
    /// viewer once `public_viewing` is off).
    fn with_http_legs(
        &self,
        gid: i64,
        mut members: HashMap<String, Permissions>,
        public_viewing: bool,
    ) -> HashMap<String, Permissions> {
        let legs = self.http_legs.lock().expect("http legs lock");
        let Some(legs) = legs.get(&gid) else { return members };
        let mut extra = Vec::new();
        for (address, leg) in legs {
            if leg.public && !public_viewing {
                continue;
            }
            let p = match &leg.backing {
                None => leg.permissions,
                Some(b) => match members.get(b) {
                    Some(m) => Permissions {
                        publish: leg.permissions.publish && m.publish,
                        subscribe: leg.permissions.subscribe && m.subscribe,
                        list: leg.permissions.list && m.list,
                        ..Permissions::NONE
                    },
                    None => continue,
                },
            };
            extra.push((address.clone(), p));
        }
        members.extend(extra);
        members
    }

    /// Joins a participant whose signaling comes over HTTP (WHIP, WHEP) to the call of `gid`,
    /// under a new negative user id and `address`. `leave_http` forgets it once its
    /// [`CallSession`] is dropped.
    pub(crate) async fn enter_http(
        self: &Arc<Self>,
        gid: i64,
        address: String,
        name: String,
        leg: HttpLeg,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let g = self.groups.get(gid, Actor::Admin).await?;
        let uid = self.next_http_uid.fetch_sub(1, Ordering::Relaxed);
        let perms = leg.permissions;
        self.http_legs.lock().expect("http legs lock").entry(gid).or_default().insert(address.clone(), leg);
        let user = SessionUser { uid: chorus_proto::UserId(uid), address: address.clone(), name };
        let auto = self.auto_record(&g).await?;
        let r = self.enter(&user, uid.unsigned_abs(), gid, perms, settings(&g), auto, None).await;
        if r.is_err() {
            self.leave_http(gid, &address);
        }
        r
    }

    /// Forgets the HTTP participant `address` of `gid` (its session is gone).
    pub(crate) fn leave_http(&self, gid: i64, address: &str) {
        let mut legs = self.http_legs.lock().expect("http legs lock");
        if let Some(g) = legs.get_mut(&gid) {
            g.remove(address);
            if g.is_empty() {
                legs.remove(&gid);
            }
        }
    }

    /// The UDP and TCP media addresses clients are told.
    /// Hands out TURN credentials in `call_joined` from now on.
    pub fn set_turn(&self, turn: crate::turn::Turn) {
        let _ = self.turn.set(turn);
    }

    /// The UDP address the media socket receives on (the relay's peer when the advertised
    /// address is not a local one).
    pub fn media_udp_local(&self) -> SocketAddr {
        self.net.udp_local()
    }

    pub fn media_addresses(&self) -> (SocketAddr, Option<SocketAddr>) {
        (self.net.udp_advertised, self.net.tcp_advertised)
    }

    /// Joins `user`'s session `session` to the call of group `gid`. Returns the session's place in
    /// the call and the `call_joined` answer.
    pub async fn join(
        self: &Arc<Self>,
        user: &SessionUser,
        session: u64,
        gid: i64,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        let g = self.groups.get(gid, Actor::User(user.uid.get())).await?;
        let m = g.membership.ok_or_else(|| ApiError::not_found("no such group"))?;
        let perms = permissions(g.flags, m.flags, m.admin_flags);
        let auto = self.auto_record(&g).await?;
        self.enter(user, session, gid, perms, settings(&g), auto, rid).await
    }

    /// Checks that `uid` may join the call of `gid` (a member; `not_found` otherwise), before the
    /// call is placed on a node of a cluster.
    pub async fn check_member(&self, uid: i64, gid: i64) -> Result<(), ApiError> {
        let g = self.groups.get(gid, Actor::User(uid)).await?;
        g.membership.map(|_| ()).ok_or_else(|| ApiError::not_found("no such group"))
    }

    /// Who records the calls of `g` from their start (its owner), if it records them.
    async fn auto_record(&self, g: &Group) -> Result<Option<AutoRecord>, ApiError> {
        if !g.auto_record {
            return Ok(None);
        }
        let owner = self.groups.owner(g.gid.get()).await?;
        if owner.is_none() {
            tracing::warn!(gid = g.gid.get(), "auto_record is set but the group has no owner to record for");
        }
        Ok(owner.map(|(uid, address)| AutoRecord { uid, address }))
    }

    /// Joins `user`'s session `session` to room `gid` (a group's call, or a 1:1 call's room) with
    /// `perms`, starting the room with `settings` if it is not running; with `auto_record`, the
    /// call's first join starts its recording.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn enter(
        self: &Arc<Self>,
        user: &SessionUser,
        session: u64,
        gid: i64,
        perms: Permissions,
        settings: RoomSettings,
        auto_record: Option<AutoRecord>,
        rid: Option<String>,
    ) -> Result<(CallSession, ServerFrame), ApiError> {
        // A room task that has just emptied may be on its way out: try again with a new one.
        for _ in 0..3 {
            let handle = self.room_for(gid, settings);
            let (out_tx, out_rx) = mpsc::channel(self.cfg.call_event_queue);
            let (reply_tx, reply_rx) = oneshot::channel();
            let cmd = Command::Join {
                uid: user.uid.get(),
                address: user.address.clone(),
                name: user.name.clone(),
                session,
                permissions: perms,
                auto_record: auto_record.clone(),
                out: out_tx,
                rid: rid.clone(),
                reply: reply_tx,
                queued: Instant::now(),
            };
            match handle.cmd.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(ApiError::rate_limited("the call is busy; try again"))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.forget(gid, handle.id);
                    continue;
                }
            }
            match reply_rx.await {
                Ok(Ok(mut frame)) => {
                    if let (ServerFrame::CallJoined { ice_servers, .. }, Some(t)) = (&mut frame, self.turn.get()) {
                        ice_servers.push(t.ice.ice_server(user.uid.get()));
                    }
                    handle.shared.sessions.fetch_add(1, Ordering::Relaxed);
                    let s = CallSession { gid, uid: user.uid.get(), session, place: Place::Local(handle), rx: out_rx };
                    return Ok((s, frame));
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => self.forget(gid, handle.id),
            }
        }
        Err(ApiError::new(ErrorCode::Internal, "the call could not be started; try again"))
    }

    /// Starts or stops the recording of group `gid`'s call for member `uid` (needs call control
    /// in the group: 403 `forbidden`); 404 when no call is in progress. Answers the recording
    /// state now (starting twice changes nothing; stopping when not recording is 409 `conflict`).
    pub async fn record(
        &self,
        uid: i64,
        address: String,
        gid: i64,
        action: RecordAction,
    ) -> Result<CallRecording, ApiError> {
        let g = self.groups.get(gid, Actor::User(uid)).await?;
        let m = g.membership.ok_or_else(|| ApiError::not_found("no such group"))?;
        if !permissions(g.flags, m.flags, m.admin_flags).call_control {
            return Err(ApiError::forbidden("recording the call needs call control in the group"));
        }
        let handle = self.rooms.lock().expect("rooms lock").get(&gid).cloned();
        let handle = handle
            .filter(|h| !h.cmd.is_closed() && h.shared.sessions.load(Ordering::Relaxed) > 0)
            .ok_or_else(|| ApiError::not_found("no call in progress in this group"))?;
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Record { uid, address, action, reply: tx, queued: Instant::now() };
        handle.cmd.try_send(cmd).map_err(|_| ApiError::rate_limited("the call is busy; try again"))?;
        match rx.await {
            Ok(ServerFrame::CallRecording { recording, .. }) => Ok(recording),
            Ok(ServerFrame::Error { code, message, .. }) => Err(ApiError::new(code, message)),
            _ => Err(ApiError::not_found("the call has ended")),
        }
    }

    /// The recording state of group `gid`'s call, for a member who may read the group.
    pub async fn recording(&self, uid: i64, gid: i64) -> Result<CallRecording, ApiError> {
        let g = self.groups.get(gid, Actor::User(uid)).await?;
        g.membership.ok_or_else(|| ApiError::not_found("no such group"))?;
        let handle = self.rooms.lock().expect("rooms lock").get(&gid).cloned();
        Ok(handle.map(|h| h.shared.recording.lock().expect("recording lock").clone()).unwrap_or_default())
    }

    /// Closes room `gid`, if it runs: everyone in it leaves (`left`, reason `not_member`), as
    /// when a group is deleted. Used when a 1:1 call ends.
    pub(crate) fn close_room(&self, gid: i64) {
        let handle = self.rooms.lock().expect("rooms lock").get(&gid).cloned();
        if let Some(handle) = handle {
            *handle.shared.refresh.lock().expect("refresh lock") = Some(HashMap::new());
            handle.shared.wake.notify_one();
        }
    }

    /// The calls in progress (rooms with at least one session in them), by gid.
    pub fn live(&self) -> Vec<LiveCall> {
        let rooms = self.rooms.lock().expect("rooms lock");
        let mut live: Vec<LiveCall> = rooms
            .iter()
            .filter(|(_, h)| !h.cmd.is_closed())
            .map(|(gid, h)| LiveCall {
                gid: *gid,
                participants: h.shared.sessions.load(Ordering::Relaxed),
                started_at: h.shared.started_ms.load(Ordering::Relaxed),
                node: String::new(),
            })
            .filter(|c| c.participants > 0)
            .collect();
        live.sort_by_key(|c| c.gid);
        live
    }

    fn room_for(self: &Arc<Self>, gid: i64, settings: RoomSettings) -> RoomHandle {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if let Some(h) = rooms.get(&gid) {
            if !h.cmd.is_closed() {
                return h.clone();
            }
        }
        let id = self.next_room.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(ROOM_COMMANDS);
        let shared = Arc::new(RoomShared::default());
        shared.started_ms.store(crate::clock::now_ms(), Ordering::Relaxed);
        let handle = RoomHandle { id, cmd: tx, shared: shared.clone() };
        rooms.insert(gid, handle.clone());
        let task = RoomTask::new(
            gid,
            id,
            settings,
            self.net.clone(),
            self.cfg.clone(),
            self.hooks.clone(),
            rx,
            shared,
            self.media.clone(),
        );
        let calls = self.clone();
        tokio::spawn(async move {
            let live = crate::metrics::Live::new(&crate::metrics::metrics().calls);
            task.run().await;
            drop(live);
            calls.forget(gid, id);
        });
        handle
    }

    /// Removes the registry entry of room `id`, if it is still the one for `gid`.
    fn forget(&self, gid: i64, id: u64) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        if rooms.get(&gid).is_some_and(|h| h.id == id) {
            rooms.remove(&gid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_mode_reads_member_bits() {
        let viewer = permissions(group::ALL_SELECTED, member::SUBSCRIBE | member::LIST, 0);
        assert_eq!(viewer, Permissions::VIEW_ONLY);
        let publisher = permissions(group::ALL_SELECTED, member::ALL, 0);
        assert_eq!(publisher, Permissions::MEMBER);
        let none = permissions(group::ALL_SELECTED, member::SEND | member::RECV, 0);
        assert_eq!(none, Permissions::NONE);
    }

    /// The hole this closes: under group flags 0 (Mesibo's `createGroup({flags: 0})`, `/api
    /// setgroup`, `/backend groupadd`) a view-only member used to publish.
    #[test]
    fn member_flags_bind_whatever_the_group_mode() {
        let viewer = member::SEND | member::RECV | member::SUBSCRIBE | member::LIST;
        for g in [0, group::ALL_SELECTED, group::PUB_BY_ANYONE | group::SUB_BY_ANYONE | group::LIST_BY_ANYONE] {
            assert_eq!(permissions(g, viewer, 0), Permissions::VIEW_ONLY, "{g:#x}");
            assert_eq!(permissions(g, member::ALL, 0), Permissions::MEMBER, "{g:#x}");
            assert_eq!(permissions(g, 0, 0), Permissions::NONE, "{g:#x}");
        }
    }

    /// A request that finds the room's queue full is answered `rate_limited` at once; leaving
    /// the call still reaches the room (the receiver closes and the room is woken).
    #[tokio::test]
    async fn a_full_room_queue_refuses_requests_but_not_leaving() {
        let (cmd, mut cmd_rx) = mpsc::channel(1);
        let shared = Arc::new(RoomShared::default());
        shared.started_ms.store(crate::clock::now_ms(), Ordering::Relaxed);
        let (out, rx) = mpsc::channel(16);
        let room = RoomHandle { id: 1, cmd, shared: shared.clone() };
        let s = CallSession { gid: 1, uid: 2, session: 3, place: Place::Local(room), rx };
        let _queued = s.request(ClientFrame::CallLeave { rid: Some("a".into()) });
        let refused = s.request(ClientFrame::CallLeave { rid: Some("b".into()) }).await.expect("answered at once");
        match refused {
            ServerFrame::Error { rid, code, .. } => {
                assert_eq!((rid.as_deref(), code), (Some("b"), ErrorCode::RateLimited));
            }
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert!(!out.is_closed());
        drop(s);
        assert!(out.is_closed(), "the room sees the session gone");
        tokio::time::timeout(Duration::from_secs(1), shared.wake.notified()).await.expect("the room is woken");
        assert!(matches!(cmd_rx.try_recv(), Ok(Command::Request { .. })), "the queued request is still there");
    }

    #[test]
    fn admin_rights_need_the_admin_flag() {
        let owner = permissions(group::ALL_SELECTED, member::ALL | member::ADMIN, admin::OWNER_ALL);
        assert_eq!(owner, Permissions::ADMIN);
        let not_admin = permissions(group::ALL_SELECTED, member::ALL, admin::CALL_CONTROL | admin::HANGUP);
        assert_eq!(not_admin, Permissions::MEMBER);
    }
}
