//! Group calls: join a call, publish synthetic camera and microphone, receive and measure.
//!
//! # Model
//!
//! A [`Call`] takes over a messaging [`Connection`] and runs one tokio task that owns it, two
//! UDP sockets and two str0m [`Rtc`]s, each negotiated in one direction only (see
//! `chorus_proto::call`):
//!
//! * the **publish** connection: the client offers it with every `call_publish` and accepts the
//!   answer from `call_published`. Media on it is synthetic ([`media`]): VP8 simulcast at 30 fps
//!   paced like 180p/360p/720p cameras and Opus every 20 ms, each frame carrying a trailer with
//!   its layer, frame number and send time.
//! * the **subscribe** connection: the server offers it (`call_offer`) whenever the
//!   subscriptions change; the task answers at once (`call_answer`) and maps each media line to
//!   (publisher, stream, kind) from the offer's track list, so every received frame is counted
//!   in [`CallStats`].
//!
//! With [`Transport::Udp`] (the default) each peer connection has its own UDP socket (bound on
//! [`CallOptions::bind`], port 0) and announces it as its only host candidate: the server
//! reaches both connections from the same port and tells its peers apart by their address, so
//! the two must not share one. With [`Transport::Tcp`] there is no UDP at all: each peer
//! connection opens one TCP connection to the server's passive TCP candidate (ICE-TCP, see
//! [`tcp`]) and announces its end as an active TCP candidate. Received RTP/RTCP can first pass a [`shaper::Shaper`] ([`CallOptions::downlink_kbps`],
//! [`Call::set_downlink_kbps`]) that emulates a constrained downlink.
//!
//! The handle's methods send commands to the task; those that need the server's answer wait for
//! it (up to [`CallOptions::reply_timeout`]) and return the server's refusal as
//! [`CallError::Refused`] with its [`ErrorCode`]. Everything the server says about the call
//! arrives as [`CallNotice`]s ([`Call::next_notice`], [`Call::wait_for`]); the roster
//! ([`Call::roster`]) and the statistics ([`Call::stats`]) are kept up to date by the task.
//!
//! Lost frames are counted from gaps in the frame numbers within one layer; when the received
//! layer changes, or the server announces a layer change or pause (`layer` event), counting
//! restarts, so frames the server chose not to forward are not counted as lost.
//!
//! Own mutes ([`Call::mute`]) stop sending the muted media, as a browser would; an admin mute
//! does not: the server must enforce it.
//!
//! Messaging frames that arrive while the call runs are dropped; [`Call::leave`] hands the
//! connection back.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use chorus_client::call::{Call, CallOptions, Kind, PublishOptions};
//! use chorus_client::{Connection, Http};
//!
//! let http = Http::new("http://127.0.0.1:8080").with_token("…");
//! let (conn, _) = Connection::connect(&http, None).await?;
//! let mut call = Call::join(conn, 1000, CallOptions { subscribe_all: true, ..Default::default() }).await?;
//! let stream = call.publish_camera(0, PublishOptions::default()).await?;
//! println!("granted {} layers", stream.layers);
//! call.set_speaking(true);
//! // Wait until someone's video arrives.
//! let stats = call
//!     .wait_until(Duration::from_secs(10), |s| s.received.iter().any(|(k, t)| k.kind == Kind::Video && t.frames > 30))
//!     .await?;
//! println!("{stats:#?}");
//! let _conn = call.leave().await?;
//! # Ok(())
//! # }
//! ```

pub mod media;
pub mod shaper;
pub mod stats;
pub mod tcp;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chorus_proto::call::{
    AdminAction, CallEvent, CallMute, CallParticipant, CallPermissions, CallSettings, CallStream, CallTrack, MediaKind,
    PublishRequest,
};
use chorus_proto::error::ErrorCode;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Connection;
use media::{AudioSource, LayerSpec, VideoSource, AUDIO_FRAME_MS, RIDS, VIDEO_FPS};
use shaper::{Shaper, Verdict};
pub use stats::{CallStats, Kind, LatencyHistogram, LegState, MediaPath, SentStats, TrackKey, TrackStats};
use tcp::{Link, LinkEvent};

/// RFC 6464 level of audio while speaking, dBov.
const SPEAKING_DBOV: i8 = -20;
/// RFC 6464 level of silence, dBov.
const SILENT_DBOV: i8 = -127;

/// How a [`Call`] behaves.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Subscribe to every stream others publish (those in the roster at join and each
    /// `published` event), when the subscribe permission allows. Changeable with
    /// [`Call::set_subscribe_all`].
    pub subscribe_all: bool,
    /// The display height sent with automatic subscriptions (`None`: as large as available).
    pub subscribe_height: Option<u32>,
    /// Shape what arrives on the socket to this rate (see [`shaper`]); `None`: unlimited.
    pub downlink_kbps: Option<u32>,
    /// The local address to bind the two UDP sockets to (port 0) and announce as host candidates.
    /// Unused with [`Transport::Tcp`] (the TCP connections take the route's local address).
    pub bind: IpAddr,
    /// How media reach the server: UDP (the default) or ICE-TCP only.
    pub transport: Transport,
    /// How long to wait for the server's answer to a request (and, with [`Transport::Tcp`],
    /// for a TCP connection to the server to open).
    pub reply_timeout: Duration,
}

/// How both peer connections of a [`Call`] reach the server's media address.
///
/// The server advertises a UDP host candidate and, when ICE-TCP is enabled on it
/// (`rtc_tcp`), a passive TCP host candidate in every SDP it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// One UDP socket per peer connection, announced as a UDP host candidate (the usual path).
    #[default]
    Udp,
    /// ICE-TCP only (RFC 6544), as a client behind a firewall that blocks UDP would do: no UDP
    /// socket is opened. Once a leg's remote SDP names the server's passive TCP candidate, the
    /// leg opens one TCP connection to it and announces that connection's local end as an active
    /// TCP host candidate; every packet on it is framed with a 2-byte length (RFC 4571). If the
    /// server offers no TCP candidate, the leg never connects (a [`CallNotice::Error`] says so).
    Tcp,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            subscribe_all: false,
            subscribe_height: None,
            downlink_kbps: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            transport: Transport::Udp,
            reply_timeout: Duration::from_secs(10),
        }
    }
}

/// What to publish with [`Call::publish_camera`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishOptions {
    /// Send a microphone.
    pub audio: bool,
    /// Send a camera.
    pub video: bool,
    /// The video is a shared screen.
    pub screen: bool,
    /// Simulcast layers to offer (1..=3); the server may grant fewer.
    pub layers: u8,
    /// Height of the tallest layer; the server may clamp it.
    pub height: u32,
    /// Media that start muted.
    pub muted: CallMute,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions { audio: true, video: true, screen: false, layers: 3, height: 720, muted: CallMute::default() }
    }
}

/// A failed call operation.
#[derive(Debug)]
pub enum CallError {
    /// The server refused the request (`error` frame).
    Refused {
        /// The error code, e.g. [`ErrorCode::Forbidden`].
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// Anything else: the connection failed, a timeout, an SDP the client could not use.
    Other(anyhow::Error),
}

impl CallError {
    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Refused { code, .. } => Some(*code),
            CallError::Other(_) => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused { code, message } => write!(f, "refused ({}): {message}", code.as_str()),
            CallError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CallError {}

impl From<anyhow::Error> for CallError {
    fn from(e: anyhow::Error) -> Self {
        CallError::Other(e)
    }
}

/// Which of the two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// What the client sends.
    Publish = 0,
    /// What the client receives.
    Subscribe = 1,
}

/// Something that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum CallNotice {
    /// A `call_event` from the server.
    Event(CallEvent),
    /// The server (re)negotiated the subscribe connection with these tracks; answered already.
    Offer(Vec<CallTrack>),
    /// A peer connection changed state.
    Leg {
        /// Which.
        leg: Leg,
        /// Its state now.
        state: LegState,
    },
    /// The server refused something the task sent on its own (an automatic subscription, an
    /// answer), or sent an error without a request id.
    Error {
        /// The code.
        code: ErrorCode,
        /// The explanation.
        message: String,
    },
    /// The call task stopped (left, removed, the WebSocket closed); the text says why.
    Ended(String),
}

/// What `call_joined` said.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The group.
    pub gid: i64,
    /// Own address in the call.
    pub address: String,
    /// What this participant may do.
    pub permissions: CallPermissions,
    /// The call's settings.
    pub settings: CallSettings,
    /// The roster at join.
    pub participants: Vec<CallParticipant>,
}

#[derive(Default)]
struct Shared {
    stats: CallStats,
    /// Local addresses by [`Leg`] (with TCP: known once connected).
    local: [Option<SocketAddr>; 2],
    roster: BTreeMap<String, CallParticipant>,
    speakers: Vec<String>,
    permissions: CallPermissions,
    ended: Option<String>,
}

type Reply<T> = oneshot::Sender<Result<T, CallError>>;

enum Cmd {
    Publish(u32, PublishOptions, Reply<CallStream>),
    Unpublish(u32, Reply<()>),
    Request(Box<ClientFrame>, Reply<()>),
    Subscribe { address: String, sid: u32, audio: bool, video: bool, height: Option<u32>, reply: Reply<()> },
    Unsubscribe { address: String, sid: u32, reply: Reply<()> },
    SetHeight { address: String, sid: u32, height: Option<u32>, reply: Reply<()> },
    Mute { sid: u32, audio: Option<bool>, video: Option<bool>, reply: Reply<()> },
    SubscribeAll(bool),
    Speaking(bool),
    Downlink(Option<u32>),
    Freeze,
    Leave(Reply<()>),
}

/// A joined group call. See the [module docs](self).
pub struct Call {
    joined: Joined,
    cmds: mpsc::UnboundedSender<Cmd>,
    notices: mpsc::UnboundedReceiver<CallNotice>,
    buffered: VecDeque<CallNotice>,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<Connection>,
    bind: IpAddr,
    reply_timeout: Duration,
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

fn refused(code: ErrorCode, message: String) -> CallError {
    CallError::Refused { code, message }
}

impl Call {
    /// Joins the call of group `gid` over `conn` (sends `call_join`, waits for `call_joined`)
    /// and starts the call task. On a refusal the connection is dropped.
    pub async fn join(mut conn: Connection, gid: i64, options: CallOptions) -> Result<Call, CallError> {
        install_crypto();
        let rid = conn.rid();
        conn.send(&ClientFrame::CallJoin { rid: Some(rid.clone()), gid }).await?;
        let frame = conn
            .expect(options.reply_timeout, |f| match f {
                ServerFrame::CallJoined { rid: r, .. } | ServerFrame::Error { rid: r, .. } => {
                    r.as_deref() == Some(rid.as_str())
                }
                _ => false,
            })
            .await?;
        let joined = match frame {
            ServerFrame::CallJoined { gid, address, permissions, settings, participants, .. } => {
                Joined { gid, address, permissions, settings, participants }
            }
            ServerFrame::Error { code, message, .. } => return Err(refused(code, message)),
            other => return Err(anyhow!("unexpected answer to call_join: {other:?}").into()),
        };

        let now = Instant::now();
        let mut pub_rtc = Rtc::builder().build(now);
        let mut sub_rtc = Rtc::builder().set_stats_interval(Some(stats::INGRESS_STATS_INTERVAL)).build(now);
        let unbound = SocketAddr::new(options.bind, 0);
        let (pub_socket, sub_socket, local) = match options.transport {
            Transport::Udp => {
                // One socket per peer connection: the server tells its peers apart by their
                // address, and both connections talk to the same server port.
                let pub_socket = UdpSocket::bind(unbound).await.context("binding a UDP socket")?;
                let sub_socket = UdpSocket::bind(unbound).await.context("binding a UDP socket")?;
                let local = [
                    pub_socket.local_addr().context("local address")?,
                    sub_socket.local_addr().context("local address")?,
                ];
                let candidate =
                    |a: SocketAddr| Candidate::host(a, "udp").map_err(|e| anyhow!("host candidate {a}: {e}"));
                pub_rtc.add_local_candidate(candidate(local[0])?);
                sub_rtc.add_local_candidate(candidate(local[1])?);
                (Some(pub_socket), Some(sub_socket), local)
            }
            // The TCP candidates are added once each connection is up (see `tcp`).
            Transport::Tcp => (None, None, [unbound; 2]),
        };

        let mut stats = CallStats { transport: options.transport, ..Default::default() };
        if options.transport == Transport::Udp {
            stats.publish_path = Some(MediaPath { transport: Transport::Udp, local: local[0], remote: None });
            stats.subscribe_path = Some(MediaPath { transport: Transport::Udp, local: local[1], remote: None });
        }
        let shared = Arc::new(Mutex::new(Shared {
            stats,
            local: match options.transport {
                Transport::Udp => local.map(Some),
                Transport::Tcp => [None; 2],
            },
            roster: joined.participants.iter().map(|p| (p.address.clone(), p.clone())).collect(),
            permissions: joined.permissions,
            ..Default::default()
        }));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (note_tx, note_rx) = mpsc::unbounded_channel();
        let (link_tx, link_rx) = mpsc::channel(1024);
        let mut driver = Driver {
            conn,
            transport: options.transport,
            pub_socket,
            sub_socket,
            links: [None, None],
            link_tx,
            link_rx,
            connect_timeout: options.reply_timeout,
            remote: [None, None],
            local,
            pub_rtc,
            sub_rtc,
            pub_timeout: now,
            sub_timeout: now,
            shaper: Shaper::new(now, options.downlink_kbps),
            shared: shared.clone(),
            notices: note_tx,
            cmds: cmd_rx,
            me: joined.address.clone(),
            permissions: joined.permissions,
            pending: HashMap::new(),
            pending_offer: None,
            streams: BTreeMap::new(),
            tracks: HashMap::new(),
            subscriptions: BTreeMap::new(),
            subscribe_all: options.subscribe_all,
            subscribe_height: options.subscribe_height,
            speaking: false,
            frozen: false,
            done: false,
            ended: false,
            leaving: None,
            pub_connected: false,
            next_audio: now,
            next_video: now,
        };
        driver.auto_subscribe().await;
        let task = tokio::spawn(driver.run());
        Ok(Call {
            joined,
            cmds: cmd_tx,
            notices: note_rx,
            buffered: VecDeque::new(),
            shared,
            task,
            bind: options.bind,
            reply_timeout: options.reply_timeout,
        })
    }

    /// What `call_joined` said (the roster in it is the one at join; see [`Call::roster`]).
    pub fn joined(&self) -> &Joined {
        &self.joined
    }

    /// Own address in the call.
    pub fn address(&self) -> &str {
        &self.joined.address
    }

    /// The local address of a peer connection: its UDP socket's, or with [`Transport::Tcp`] its
    /// TCP connection's (port 0 until that connection is up).
    pub fn local_addr(&self, leg: Leg) -> SocketAddr {
        self.lock().local[leg as usize].unwrap_or(SocketAddr::new(self.bind, 0))
    }

    /// Own permissions as last updated by the server.
    pub fn permissions(&self) -> CallPermissions {
        self.lock().permissions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(make(tx)).map_err(|_| anyhow!("the call has ended"))?;
        match tokio::time::timeout(self.reply_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(anyhow!("the call has ended").into()),
            Err(_) => Err(anyhow!("timed out waiting for the server").into()),
        }
    }

    fn tell(&self, cmd: Cmd) {
        let _ = self.cmds.send(cmd);
    }

    /// Publishes stream `sid` (`0` the camera) with a fresh publish offer and starts sending
    /// synthetic media on it once the publish connection is up. Returns the stream as granted
    /// (layers and height may be less than asked); only the granted layers are sent.
    pub async fn publish_camera(&self, sid: u32, options: PublishOptions) -> Result<CallStream, CallError> {
        self.ask(|r| Cmd::Publish(sid, options, r)).await
    }

    /// Stops publishing stream `sid` (renegotiates the publish connection without it).
    pub async fn unpublish(&self, sid: u32) -> Result<(), CallError> {
        self.ask(|r| Cmd::Unpublish(sid, r)).await
    }

    /// Subscribes to `address`'s stream `sid`. The server answers `ok` and then offers the
    /// subscribe connection again; the task answers that offer by itself.
    pub async fn subscribe(
        &self,
        address: &str,
        sid: u32,
        audio: bool,
        video: bool,
        height: Option<u32>,
    ) -> Result<(), CallError> {
        self.ask(|reply| Cmd::Subscribe { address: address.to_string(), sid, audio, video, height, reply }).await
    }

    /// Stops receiving `address`'s stream `sid`.
    pub async fn unsubscribe(&self, address: &str, sid: u32) -> Result<(), CallError> {
        self.ask(|reply| Cmd::Unsubscribe { address: address.to_string(), sid, reply }).await
    }

    /// Changes the display height of a subscription (sends `call_subscribe` again with the same
    /// audio/video choice), so the server picks another layer.
    pub async fn set_height(&self, address: &str, sid: u32, height: Option<u32>) -> Result<(), CallError> {
        self.ask(|reply| Cmd::SetHeight { address: address.to_string(), sid, height, reply }).await
    }

    /// Mutes or unmutes own stream `sid` (`None`: unchanged). Muted media stop being sent.
    pub async fn mute(&self, sid: u32, audio: Option<bool>, video: Option<bool>) -> Result<(), CallError> {
        self.ask(|reply| Cmd::Mute { sid, audio, video, reply }).await
    }

    /// An admin action (`call_admin`) on `address` (`None` for `mute_all` / `unmute_all`).
    pub async fn admin(
        &self,
        action: AdminAction,
        address: Option<&str>,
        sid: Option<u32>,
        audio: bool,
        video: bool,
    ) -> Result<(), CallError> {
        let frame =
            ClientFrame::CallAdmin { rid: None, action, address: address.map(str::to_string), sid, audio, video };
        self.ask(|r| Cmd::Request(Box::new(frame), r)).await
    }

    /// Sends any call frame as a request (its `rid` is replaced) and waits for `ok` or `error`.
    pub async fn request(&self, frame: ClientFrame) -> Result<(), CallError> {
        self.ask(|r| Cmd::Request(Box::new(frame), r)).await
    }

    /// Turns automatic subscription to every stream of others on or off. Turning it on
    /// subscribes to what the roster has now; turning it off keeps current subscriptions.
    pub fn set_subscribe_all(&self, on: bool) {
        self.tell(Cmd::SubscribeAll(on));
    }

    /// Marks the audio as speech (RFC 6464 level -20 dBov with voice activity) or silence
    /// (-127 dBov, no voice activity).
    pub fn set_speaking(&self, speaking: bool) {
        self.tell(Cmd::Speaking(speaking));
    }

    /// Changes the downlink shaper's rate (`None`: unlimited).
    pub fn set_downlink_kbps(&self, kbps: Option<u32>) {
        self.tell(Cmd::Downlink(kbps));
    }

    /// Stops driving both peer connections and answering on UDP, while the WebSocket stays
    /// open (and its frames are still read): a peer whose media path vanished. There is no
    /// way back; [`Call::abort`] or [`Call::leave`] afterwards.
    pub fn freeze(&self) {
        self.tell(Cmd::Freeze);
    }

    /// Drops everything at once, the WebSocket included, without leaving (a crashed client).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Leaves the call (`call_leave`), closes both peer connections and hands the messaging
    /// connection back.
    pub async fn leave(self) -> Result<Connection, CallError> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Leave(tx)).map_err(|_| anyhow!("the call has ended"))?;
        let answer = tokio::time::timeout(self.reply_timeout, rx).await;
        let conn = match tokio::time::timeout(Duration::from_secs(2), self.task).await {
            Ok(Ok(conn)) => conn,
            _ => return Err(anyhow!("the call task did not stop").into()),
        };
        match answer {
            Ok(Ok(Ok(()))) => Ok(conn),
            Ok(Ok(Err(e))) => Err(e),
            _ => Err(anyhow!("no answer to call_leave").into()),
        }
    }

    /// Whether the call task still runs (it stops when the call ends or the WebSocket closes).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Why the call ended, once it did (left, removed, lost…).
    pub fn ended(&self) -> Option<String> {
        self.lock().ended.clone()
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> CallStats {
        self.lock().stats.clone()
    }

    /// The roster now, by address (kept from `call_joined` and the events).
    pub fn roster(&self) -> BTreeMap<String, CallParticipant> {
        self.lock().roster.clone()
    }

    /// The last active-speaker order (`speakers` event), most recent first.
    pub fn speakers(&self) -> Vec<String> {
        self.lock().speakers.clone()
    }

    /// Waits until `pred` holds for the statistics (checked every 50 ms) and returns them.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&CallStats) -> bool,
    ) -> Result<CallStats, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let s = self.stats();
            if pred(&s) {
                return Ok(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(anyhow!("timed out after {timeout:?} waiting for stats; last: {s:#?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next notice (buffered first), or `None` if none arrives within `timeout` or the
    /// call task has stopped and everything was read.
    pub async fn next_notice(&mut self, timeout: Duration) -> Option<CallNotice> {
        if let Some(n) = self.buffered.pop_front() {
            return Some(n);
        }
        tokio::time::timeout(timeout, self.notices.recv()).await.ok().flatten()
    }

    /// Waits for the first notice matching `pred`; the others stay buffered, in order.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&CallNotice) -> bool,
    ) -> Result<CallNotice, CallError> {
        if let Some(i) = self.buffered.iter().position(&mut pred) {
            return Ok(self.buffered.remove(i).expect("index from position"));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.notices.recv()).await {
                Ok(Some(n)) if pred(&n) => return Ok(n),
                Ok(Some(n)) => self.buffered.push_back(n),
                Ok(None) => return Err(anyhow!("the call ended before the awaited notice").into()),
                Err(_) => {
                    return Err(anyhow!("timed out after {timeout:?}; unmatched notices: {:?}", self.buffered).into())
                }
            }
        }
    }

    /// Waits for the first call event matching `pred` (see [`Call::wait_for`]).
    pub async fn wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&CallEvent) -> bool,
    ) -> Result<CallEvent, CallError> {
        match self.wait_for(timeout, |n| matches!(n, CallNotice::Event(e) if pred(e))).await? {
            CallNotice::Event(e) => Ok(e),
            _ => unreachable!("the predicate matched an event"),
        }
    }

    /// Every notice buffered or already arrived, without waiting.
    pub fn drain_notices(&mut self) -> Vec<CallNotice> {
        let mut out: Vec<CallNotice> = self.buffered.drain(..).collect();
        while let Ok(n) = self.notices.try_recv() {
            out.push(n);
        }
        out
    }
}

/// A stream this client publishes.
struct Published {
    stream: CallStream,
    audio: Option<(Mid, Pt)>,
    video: Option<(Mid, Pt)>,
    /// Simulcast: each layer is written with its rid; single layer: without.
    simulcast: bool,
    audio_src: AudioSource,
    video_src: VideoSource,
}

/// Runs when a request is answered `ok`.
type OnOk = Box<dyn FnOnce(&mut Driver) + Send>;

/// What waits for a server reply, by request id.
enum Pending {
    /// A request of the handle; `on_ok` runs before the reply is sent.
    Request {
        reply: Option<Reply<()>>,
        on_ok: Option<OnOk>,
    },
    Publish {
        sid: u32,
        opts: PublishOptions,
        audio_mid: Option<Mid>,
        video_mid: Option<Mid>,
        reply: Reply<CallStream>,
    },
    Unpublish {
        sid: u32,
        reply: Reply<()>,
    },
    /// Sent by the task itself (automatic subscription): a refusal becomes a notice, and the
    /// subscription named is forgotten.
    Auto {
        forget: Option<(String, u32)>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Sub {
    audio: bool,
    video: bool,
    height: Option<u32>,
}

struct Driver {
    conn: Connection,
    transport: Transport,
    /// With [`Transport::Udp`].
    pub_socket: Option<UdpSocket>,
    sub_socket: Option<UdpSocket>,
    /// With [`Transport::Tcp`]: each leg's connection, by [`Leg`], once the server's TCP
    /// candidate is known.
    links: [Option<Link>; 2],
    link_tx: mpsc::Sender<LinkEvent>,
    link_rx: mpsc::Receiver<LinkEvent>,
    connect_timeout: Duration,
    /// The server's address each leg last sent to, by [`Leg`] (for [`CallStats`]).
    remote: [Option<SocketAddr>; 2],
    /// Local addresses, by [`Leg`].
    local: [SocketAddr; 2],
    pub_rtc: Rtc,
    sub_rtc: Rtc,
    pub_timeout: Instant,
    sub_timeout: Instant,
    shaper: Shaper<(Leg, SocketAddr, Vec<u8>)>,
    shared: Arc<Mutex<Shared>>,
    notices: mpsc::UnboundedSender<CallNotice>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    me: String,
    permissions: CallPermissions,
    pending: HashMap<String, Pending>,
    /// The publish offer in flight (one at a time: a newer offer invalidates an older one).
    pending_offer: Option<(String, SdpPendingOffer)>,
    streams: BTreeMap<u32, Published>,
    tracks: HashMap<Mid, CallTrack>,
    subscriptions: BTreeMap<(String, u32), Sub>,
    subscribe_all: bool,
    subscribe_height: Option<u32>,
    speaking: bool,
    frozen: bool,
    done: bool,
    ended: bool,
    leaving: Option<(String, Reply<()>)>,
    pub_connected: bool,
    next_audio: Instant,
    next_video: Instant,
}

fn video_period() -> Duration {
    Duration::from_secs(1) / VIDEO_FPS
}

impl Driver {
    async fn run(mut self) -> Connection {
        let mut pub_buf = vec![0u8; 2048];
        let mut sub_buf = vec![0u8; 2048];
        while !self.done {
            self.on_time(Instant::now());
            let deadline = self.deadline();
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd).await,
                    // The handle is gone: stop like an abort.
                    None => self.done = true,
                },
                frame = self.conn.recv() => match frame {
                    Ok(frame) => self.on_frame(frame).await,
                    Err(e) => self.end(format!("websocket: {e:#}")),
                },
                got = recv_udp(self.pub_socket.as_ref(), &mut pub_buf) => {
                    if let Ok((n, source)) = got {
                        if !self.frozen {
                            self.on_datagram(Instant::now(), Leg::Publish, source, &pub_buf[..n]);
                        }
                    }
                },
                got = recv_udp(self.sub_socket.as_ref(), &mut sub_buf) => {
                    if let Ok((n, source)) = got {
                        if !self.frozen {
                            self.on_datagram(Instant::now(), Leg::Subscribe, source, &sub_buf[..n]);
                        }
                    }
                },
                Some(ev) = self.link_rx.recv() => self.on_link(ev),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {},
            }
        }
        self.conn
    }

    /// Something happened on a leg's TCP connection.
    fn on_link(&mut self, ev: LinkEvent) {
        if self.ended {
            return;
        }
        match ev {
            LinkEvent::Up { leg, local } => {
                let Some(remote) = self.links[leg as usize].as_ref().map(|l| l.remote) else { return };
                self.local[leg as usize] = local;
                {
                    let mut s = self.shared();
                    s.local[leg as usize] = Some(local);
                    let path = Some(MediaPath { transport: Transport::Tcp, local, remote: Some(remote) });
                    match leg {
                        Leg::Publish => s.stats.publish_path = path,
                        Leg::Subscribe => s.stats.subscribe_path = path,
                    }
                }
                match tcp::local_candidate(local) {
                    Ok(c) => {
                        let rtc = match leg {
                            Leg::Publish => &mut self.pub_rtc,
                            Leg::Subscribe => &mut self.sub_rtc,
                        };
                        // Pairs with the server's TCP candidate from the SDP: checks start.
                        rtc.add_local_candidate(c);
                    }
                    Err(e) => tracing::warn!("{leg:?} connection: {e:#}"),
                }
                self.poll(leg);
            }
            LinkEvent::Packet { leg, data } => {
                if let (false, Some(remote)) = (self.frozen, self.links[leg as usize].as_ref().map(|l| l.remote)) {
                    self.on_datagram(Instant::now(), leg, remote, &data);
                }
            }
            LinkEvent::Down { leg, why } => {
                // ICE notices the silence and reports the leg disconnected.
                tracing::warn!("{leg:?} connection over TCP: {why}");
            }
        }
    }

    /// With [`Transport::Tcp`]: opens the leg's TCP connection to the server's TCP candidate in
    /// `sdp` (the remote description just accepted), unless it is open already.
    fn open_link(&mut self, leg: Leg, sdp: &str) {
        if self.transport != Transport::Tcp || self.links[leg as usize].is_some() {
            return;
        }
        match tcp::remote_tcp_candidate(sdp) {
            Some(remote) => {
                let link = Link::open(leg, remote, self.link_tx.clone(), self.connect_timeout);
                self.links[leg as usize] = Some(link);
            }
            None => {
                let message = format!("client: the server offered no TCP candidate for the {leg:?} connection");
                tracing::warn!("{message}");
                self.notify(CallNotice::Error { code: ErrorCode::BadRequest, message });
            }
        }
    }

    fn notify(&self, n: CallNotice) {
        let _ = self.notices.send(n);
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The call is over for this session: stop media, keep the task until the leave (if any)
    /// is answered.
    fn end(&mut self, why: String) {
        if !self.ended {
            self.ended = true;
            self.pub_rtc.disconnect();
            self.sub_rtc.disconnect();
            {
                let mut s = self.shared();
                s.ended = Some(why.clone());
                s.stats.publish = LegState::Closed;
                s.stats.subscribe = LegState::Closed;
            }
            self.notify(CallNotice::Ended(why));
        }
        // Fail whatever waits: no answer will come.
        for (_, p) in self.pending.drain() {
            match p {
                Pending::Request { reply: Some(r), .. } => drop(r.send(ended())),
                Pending::Publish { reply, .. } => drop(reply.send(ended())),
                Pending::Unpublish { reply, .. } => drop(reply.send(ended())),
                _ => {}
            }
        }
        if let Some((_, reply)) = self.leaving.take() {
            let _ = reply.send(Ok(()));
        }
        self.done = true;
    }

    fn deadline(&self) -> Instant {
        let mut d = Instant::now() + Duration::from_millis(100);
        if !self.frozen && !self.ended {
            d = d.min(self.pub_timeout).min(self.sub_timeout);
            if let Some(t) = self.shaper.next_release() {
                d = d.min(t);
            }
            if self.streams.values().any(|s| s.audio.is_some()) {
                d = d.min(self.next_audio);
            }
            if self.streams.values().any(|s| s.video.is_some()) {
                d = d.min(self.next_video);
            }
        }
        d
    }

    /// Timers: release shaped packets, write due media, let both Rtcs handle time.
    fn on_time(&mut self, now: Instant) {
        if self.frozen || self.ended {
            return;
        }
        while let Some((leg, source, data)) = self.shaper.pop(now) {
            self.deliver(now, leg, source, &data);
        }
        self.write_media(now);
        if now >= self.pub_timeout {
            let _ = self.pub_rtc.handle_input(Input::Timeout(now));
        }
        if now >= self.sub_timeout {
            let _ = self.sub_rtc.handle_input(Input::Timeout(now));
        }
        self.poll(Leg::Publish);
        self.poll(Leg::Subscribe);
        self.shared().stats.shaper = self.shaper.stats();
    }

    fn on_datagram(&mut self, now: Instant, leg: Leg, source: SocketAddr, data: &[u8]) {
        if self.ended {
            return;
        }
        if shaper::is_media(data) {
            match self.shaper.push(now, data.len(), (leg, source, data.to_vec())) {
                Verdict::Pass((leg, source, data)) => self.deliver(now, leg, source, &data),
                Verdict::Queued | Verdict::Dropped => {}
            }
        } else {
            self.deliver(now, leg, source, data);
        }
        self.shared().stats.shaper = self.shaper.stats();
    }

    fn deliver(&mut self, now: Instant, leg: Leg, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else { return };
        let destination = self.local[leg as usize];
        let proto = match self.transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let input = Input::Receive(now, Receive { proto, source, destination, contents });
        let rtc = match leg {
            Leg::Publish => &mut self.pub_rtc,
            Leg::Subscribe => &mut self.sub_rtc,
        };
        // Anything else on the socket (a stray or stale sender) is ignored.
        if rtc.accepts(&input) {
            if let Err(e) = rtc.handle_input(input) {
                tracing::debug!("{leg:?} connection input: {e}");
            }
            self.poll(leg);
        }
    }

    /// Drains an Rtc's output: sends datagrams, handles events, remembers its next timeout.
    fn poll(&mut self, leg: Leg) {
        let mut events = Vec::new();
        loop {
            let rtc = match leg {
                Leg::Publish => &mut self.pub_rtc,
                Leg::Subscribe => &mut self.sub_rtc,
            };
            if !rtc.is_alive() {
                break;
            }
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    match leg {
                        Leg::Publish => self.pub_timeout = t,
                        Leg::Subscribe => self.sub_timeout = t,
                    }
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    match t.proto {
                        Protocol::Udp => {
                            // UDP is lossy anyway: a full socket buffer drops the datagram.
                            let socket = match leg {
                                Leg::Publish => &self.pub_socket,
                                Leg::Subscribe => &self.sub_socket,
                            };
                            if let Some(socket) = socket {
                                let _ = socket.try_send_to(&t.contents, t.destination);
                            }
                        }
                        // One connection per leg: everything goes on it.
                        _ => {
                            if let Some(link) = &self.links[leg as usize] {
                                link.send(&t.contents);
                            }
                        }
                    }
                    if self.remote[leg as usize] != Some(t.destination) {
                        self.remote[leg as usize] = Some(t.destination);
                        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                        let path = match leg {
                            Leg::Publish => &mut s.stats.publish_path,
                            Leg::Subscribe => &mut s.stats.subscribe_path,
                        };
                        if let Some(p) = path {
                            p.remote = Some(t.destination);
                        }
                    }
                }
                Ok(Output::Event(e)) => events.push(e),
                Err(e) => {
                    tracing::warn!("{leg:?} connection failed: {e}");
                    rtc.disconnect();
                    self.set_leg(leg, LegState::Closed);
                    break;
                }
            }
        }
        for e in events {
            self.on_event(leg, e);
        }
    }

    fn set_leg(&mut self, leg: Leg, state: LegState) {
        {
            let mut s = self.shared();
            let slot = match leg {
                Leg::Publish => &mut s.stats.publish,
                Leg::Subscribe => &mut s.stats.subscribe,
            };
            if *slot == state {
                return;
            }
            *slot = state;
        }
        if leg == Leg::Publish {
            self.pub_connected = state == LegState::Connected;
        }
        self.notify(CallNotice::Leg { leg, state });
    }

    fn on_event(&mut self, leg: Leg, e: Event) {
        match e {
            Event::Connected => self.set_leg(leg, LegState::Connected),
            Event::IceConnectionStateChange(s) => match s {
                IceConnectionState::Checking => self.set_leg(leg, LegState::Checking),
                IceConnectionState::Disconnected => self.set_leg(leg, LegState::Disconnected),
                // `Connected` waits for DTLS (Event::Connected); `New` needs no notice.
                _ => {}
            },
            Event::MediaData(d) if leg == Leg::Subscribe => self.on_media(d),
            Event::MediaIngressStats(i) if leg == Leg::Subscribe => {
                let Some(track) = self.tracks.get(&i.mid) else { return };
                let key = TrackKey { publisher: track.publisher.clone(), sid: track.sid, kind: track.kind.into() };
                let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                let t = s.stats.received.entry(key).or_default();
                (t.packets, t.rtp_bytes, t.nacks) = (i.packets, i.bytes, i.nacks);
            }
            Event::KeyframeRequest(r) if leg == Leg::Publish => {
                for p in self.streams.values_mut() {
                    if p.video.is_some_and(|(m, _)| m == r.mid) {
                        let layer = r.rid.and_then(|rid| RIDS.iter().position(|x| *x == &*rid));
                        p.video_src.request_keyframe(layer);
                        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                        s.stats.sent.entry((p.stream.sid, Kind::Video)).or_default().keyframe_requests += 1;
                    }
                }
            }
            Event::Closed => self.set_leg(leg, LegState::Closed),
            _ => {}
        }
    }

    fn on_media(&mut self, d: str0m::media::MediaData) {
        let now = Instant::now();
        let now_us = media::now_us();
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Some(track) = self.tracks.get(&d.mid) else {
            s.stats.unmapped_frames += 1;
            return;
        };
        let key = TrackKey { publisher: track.publisher.clone(), sid: track.sid, kind: track.kind.into() };
        let keyframe = d.is_keyframe();
        let t = s.stats.received.entry(key).or_default();
        t.record(now, now_us, d.data.len(), keyframe, media::Trailer::find(&d.data));
        if track.kind == MediaKind::Audio {
            if let Some(level) = d.ext_vals.audio_level {
                t.audio_level = Some((level, d.ext_vals.voice_activity.unwrap_or(false)));
            }
        }
    }

    /// Writes the media frames that are due.
    fn write_media(&mut self, now: Instant) {
        if self.next_audio <= now {
            self.next_audio += Duration::from_millis(AUDIO_FRAME_MS.into());
            // After a stall, resume the cadence instead of bursting to catch up.
            if self.next_audio <= now {
                self.next_audio = now + Duration::from_millis(AUDIO_FRAME_MS.into());
            }
            if self.pub_connected {
                let (level, vad) = if self.speaking { (SPEAKING_DBOV, true) } else { (SILENT_DBOV, false) };
                for p in self.streams.values_mut() {
                    let Some((mid, pt)) = p.audio else { continue };
                    if p.stream.muted.audio {
                        continue;
                    }
                    let rtp_time = MediaTime::new(u64::from(p.audio_src.frame) * 960, Frequency::FORTY_EIGHT_KHZ);
                    let data = p.audio_src.tick(media::now_us());
                    let len = data.len();
                    let Some(w) = self.pub_rtc.writer(mid) else { continue };
                    match w.audio_level(level, vad).write(pt, now, rtp_time, data) {
                        Ok(()) => {
                            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                            s.stats.sent.entry((p.stream.sid, Kind::Audio)).or_default().record(0, len, false);
                        }
                        Err(e) => tracing::debug!("audio write: {e}"),
                    }
                }
            }
        }
        if self.next_video <= now {
            self.next_video += video_period();
            if self.next_video <= now {
                self.next_video = now + video_period();
            }
            if self.pub_connected {
                for p in self.streams.values_mut() {
                    let Some((mid, pt)) = p.video else { continue };
                    if p.stream.muted.video {
                        continue;
                    }
                    let rtp_time = MediaTime::new(p.video_src.ticks * 3000, Frequency::NINETY_KHZ);
                    for f in p.video_src.tick(media::now_us()) {
                        let (len, key) = (f.data.len(), f.key);
                        let Some(mut w) = self.pub_rtc.writer(mid) else { break };
                        if p.simulcast {
                            w = w.rid(Rid::from(RIDS[f.layer as usize]));
                        }
                        match w.write(pt, now, rtp_time, f.data) {
                            Ok(()) => {
                                let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                                let sent = s.stats.sent.entry((p.stream.sid, Kind::Video)).or_default();
                                sent.record(f.layer as usize, len, key);
                            }
                            Err(e) => tracing::debug!("video write: {e}"),
                        }
                    }
                }
            }
        }
    }

    fn rid(&mut self) -> String {
        self.conn.rid()
    }

    async fn send(&mut self, frame: ClientFrame) -> anyhow::Result<()> {
        self.conn.send(&frame).await
    }

    /// Sends a request frame with a fresh rid and registers what waits for its reply.
    async fn send_request(&mut self, frame: ClientFrame, pending: Pending) {
        let rid = self.rid();
        let frame = frame.with_rid(Some(rid.clone()));
        match self.send(frame).await {
            Ok(()) => {
                self.pending.insert(rid, pending);
            }
            Err(e) => fail(pending, CallError::Other(e)),
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        if self.ended {
            match cmd {
                Cmd::Publish(_, _, r) => drop(r.send(ended())),
                Cmd::Unpublish(_, r) | Cmd::Request(_, r) | Cmd::Leave(r) => drop(r.send(ended())),
                Cmd::Subscribe { reply, .. }
                | Cmd::Unsubscribe { reply, .. }
                | Cmd::SetHeight { reply, .. }
                | Cmd::Mute { reply, .. } => drop(reply.send(ended())),
                _ => {}
            }
            return;
        }
        match cmd {
            Cmd::Publish(sid, opts, reply) => self.publish(sid, opts, reply).await,
            Cmd::Unpublish(sid, reply) => self.unpublish(sid, reply).await,
            Cmd::Request(frame, reply) => {
                self.send_request(*frame, Pending::Request { reply: Some(reply), on_ok: None }).await
            }
            Cmd::Subscribe { address, sid, audio, video, height, reply } => {
                let key = (address.clone(), sid);
                let frame = ClientFrame::CallSubscribe { rid: None, address, sid, audio, video, height };
                let on_ok: OnOk = Box::new(move |d: &mut Driver| {
                    d.subscriptions.insert(key, Sub { audio, video, height });
                });
                self.send_request(frame, Pending::Request { reply: Some(reply), on_ok: Some(on_ok) }).await
            }
            Cmd::Unsubscribe { address, sid, reply } => {
                let key = (address.clone(), sid);
                let frame = ClientFrame::CallUnsubscribe { rid: None, address, sid };
                let on_ok: OnOk = Box::new(move |d: &mut Driver| {
                    d.subscriptions.remove(&key);
                });
                self.send_request(frame, Pending::Request { reply: Some(reply), on_ok: Some(on_ok) }).await
            }
            Cmd::SetHeight { address, sid, height, reply } => {
                let key = (address.clone(), sid);
                let sub = self.subscriptions.get(&key).copied().unwrap_or(Sub { audio: true, video: true, height });
                let frame =
                    ClientFrame::CallSubscribe { rid: None, address, sid, audio: sub.audio, video: sub.video, height };
                let on_ok: OnOk = Box::new(move |d: &mut Driver| {
                    d.subscriptions.insert(key, Sub { height, ..sub });
                });
                self.send_request(frame, Pending::Request { reply: Some(reply), on_ok: Some(on_ok) }).await
            }
            Cmd::Mute { sid, audio, video, reply } => {
                let frame = ClientFrame::CallMute { rid: None, sid, audio, video };
                let on_ok: OnOk = Box::new(move |d: &mut Driver| {
                    if let Some(p) = d.streams.get_mut(&sid) {
                        if let Some(a) = audio {
                            p.stream.muted.audio = a;
                        }
                        if let Some(v) = video {
                            if p.stream.muted.video && !v {
                                // Unmuted video restarts with keyframes, as an encoder would.
                                p.video_src.request_keyframe(None);
                            }
                            p.stream.muted.video = v;
                        }
                    }
                });
                self.send_request(frame, Pending::Request { reply: Some(reply), on_ok: Some(on_ok) }).await
            }
            Cmd::SubscribeAll(on) => {
                self.subscribe_all = on;
                self.auto_subscribe().await;
            }
            Cmd::Speaking(on) => self.speaking = on,
            Cmd::Downlink(kbps) => self.shaper.set_kbps(Instant::now(), kbps),
            Cmd::Freeze => {
                self.frozen = true;
                self.pub_connected = false;
            }
            Cmd::Leave(reply) => {
                let rid = self.rid();
                match self.send(ClientFrame::CallLeave { rid: Some(rid.clone()) }).await {
                    Ok(()) => self.leaving = Some((rid, reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        self.done = true;
                    }
                }
            }
        }
    }

    async fn publish(&mut self, sid: u32, opts: PublishOptions, reply: Reply<CallStream>) {
        if !opts.audio && !opts.video {
            let _ = reply.send(Err(anyhow!("nothing to publish").into()));
            return;
        }
        if self.pending_offer.is_some() {
            let _ = reply.send(Err(anyhow!("another publish negotiation is in flight").into()));
            return;
        }
        let layers = opts.layers.clamp(1, 3);
        let stream_id = format!("{}-{sid}", self.me);
        let mut api = self.pub_rtc.sdp_api();
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
            let _ = reply.send(Err(anyhow!("str0m produced no offer").into()));
            return;
        };
        let rid = self.rid();
        let req = PublishRequest {
            rid: Some(rid.clone()),
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
        if let Err(e) = self.send(ClientFrame::CallPublish(req)).await {
            let _ = reply.send(Err(e.into()));
            return;
        }
        self.pending_offer = Some((rid.clone(), pending));
        self.pending.insert(rid, Pending::Publish { sid, opts, audio_mid, video_mid, reply });
    }

    async fn unpublish(&mut self, sid: u32, reply: Reply<()>) {
        let Some(p) = self.streams.get(&sid) else {
            let _ = reply.send(Err(anyhow!("stream {sid} is not published").into()));
            return;
        };
        if self.pending_offer.is_some() {
            let _ = reply.send(Err(anyhow!("another publish negotiation is in flight").into()));
            return;
        }
        let mids: Vec<Mid> = p.audio.iter().chain(p.video.iter()).map(|(m, _)| *m).collect();
        let mut api = self.pub_rtc.sdp_api();
        for m in mids {
            api.stop_media(m);
        }
        let offer = api.apply();
        let rid = self.rid();
        let sdp = offer.as_ref().map(|(o, _)| o.to_sdp_string());
        if let Err(e) = self.send(ClientFrame::CallUnpublish { rid: Some(rid.clone()), sid, sdp }).await {
            let _ = reply.send(Err(e.into()));
            return;
        }
        if let Some((_, pending)) = offer {
            self.pending_offer = Some((rid.clone(), pending));
        }
        // Stop sending at once; the stream is gone whatever the answer.
        self.streams.remove(&sid);
        self.pending.insert(rid, Pending::Unpublish { sid, reply });
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

    fn accept_publish_answer(&mut self, rid: &str, sdp: &str) -> anyhow::Result<()> {
        let pending = self.take_offer(rid).context("no publish offer pending for this answer")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| anyhow!("bad SDP answer: {e}"))?;
        self.pub_rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow!("answer not accepted: {e}"))?;
        self.open_link(Leg::Publish, sdp);
        Ok(())
    }

    fn payload_type(&mut self, mid: Mid, codec: Codec) -> Option<Pt> {
        let w = self.pub_rtc.writer(mid)?;
        let pt = w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt());
        pt
    }

    async fn on_frame(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::CallPublished { rid, stream, sdp } => {
                let rid = rid.unwrap_or_default();
                match self.pending.remove(&rid) {
                    Some(Pending::Publish { sid, opts, audio_mid, video_mid, reply }) => {
                        let r = self.on_published(&rid, sid, opts, audio_mid, video_mid, stream, &sdp);
                        let _ = reply.send(r.map_err(CallError::Other));
                    }
                    Some(other) => {
                        self.pending.insert(rid, other);
                    }
                    None => tracing::debug!("call_published for an unknown request"),
                }
            }
            ServerFrame::CallSdp { rid, sdp } => {
                let rid = rid.unwrap_or_default();
                if let Some(Pending::Unpublish { sid, reply }) = self.pending.remove(&rid) {
                    let r = match sdp {
                        Some(sdp) => self.accept_publish_answer(&rid, &sdp),
                        None => {
                            // The server did not renegotiate: drop our offer.
                            self.take_offer(&rid);
                            Ok(())
                        }
                    };
                    self.shared().stats.sent.retain(|(s, _), _| *s != sid);
                    let _ = reply.send(r.map_err(CallError::Other));
                }
            }
            ServerFrame::CallOffer { sdp, tracks } => self.on_offer(&sdp, tracks).await,
            ServerFrame::CallEvent { event, .. } => self.on_call_event(event).await,
            ServerFrame::Ok { rid } => {
                let rid = rid.unwrap_or_default();
                if self.leaving.as_ref().is_some_and(|(r, _)| *r == rid) {
                    self.end("left".into());
                    return;
                }
                match self.pending.remove(&rid) {
                    Some(Pending::Request { reply, on_ok }) => {
                        if let Some(f) = on_ok {
                            f(self);
                        }
                        if let Some(r) = reply {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Some(Pending::Unpublish { reply, .. }) => {
                        self.take_offer(&rid);
                        let _ = reply.send(Ok(()));
                    }
                    Some(Pending::Publish { reply, .. }) => {
                        self.take_offer(&rid);
                        let _ = reply.send(Err(anyhow!("call_publish answered with ok, no SDP").into()));
                    }
                    Some(Pending::Auto { .. }) | None => {}
                }
            }
            ServerFrame::Error { rid, code, message, .. } => {
                let rid = rid.unwrap_or_default();
                if self.leaving.as_ref().is_some_and(|(r, _)| *r == rid) {
                    if let Some((_, reply)) = self.leaving.take() {
                        let _ = reply.send(Err(refused(code, message.clone())));
                    }
                    self.end(format!("leave refused: {message}"));
                    return;
                }
                match self.pending.remove(&rid) {
                    Some(Pending::Publish { reply, .. }) => {
                        // Dropping the pending offer rolls the publish connection back.
                        self.take_offer(&rid);
                        let _ = reply.send(Err(refused(code, message)));
                    }
                    Some(Pending::Unpublish { reply, .. }) => {
                        self.take_offer(&rid);
                        let _ = reply.send(Err(refused(code, message)));
                    }
                    Some(Pending::Request { reply: Some(r), .. }) => drop(r.send(Err(refused(code, message)))),
                    Some(Pending::Auto { forget }) => {
                        if let Some(k) = forget {
                            self.subscriptions.remove(&k);
                        }
                        self.notify(CallNotice::Error { code, message });
                    }
                    Some(Pending::Request { reply: None, .. }) | None => {
                        self.notify(CallNotice::Error { code, message })
                    }
                }
            }
            // Messaging and the rest are not the call's business.
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_published(
        &mut self,
        rid: &str,
        sid: u32,
        opts: PublishOptions,
        audio_mid: Option<Mid>,
        video_mid: Option<Mid>,
        stream: CallStream,
        sdp: &str,
    ) -> anyhow::Result<CallStream> {
        self.accept_publish_answer(rid, sdp)?;
        let audio = match audio_mid.filter(|_| stream.audio) {
            Some(m) => Some((m, self.payload_type(m, Codec::Opus).context("no Opus in the answer")?)),
            None => None,
        };
        let video = match video_mid.filter(|_| stream.video) {
            Some(m) => Some((m, self.payload_type(m, Codec::Vp8).context("no VP8 in the answer")?)),
            None => None,
        };
        let offered = opts.layers.clamp(1, 3);
        let layers = stream.layers.clamp(1, offered);
        let height = stream.height.unwrap_or(opts.height).min(opts.height);
        // The granted layers are the lowest ones: the tallest one is `height`.
        let specs: Vec<LayerSpec> = media::layer_specs(layers, height);
        let mut published = Published {
            stream,
            audio,
            video,
            simulcast: offered > 1,
            audio_src: AudioSource::default(),
            video_src: VideoSource::new(&specs),
        };
        // Rids beyond the granted layers exist in the SDP but stay silent.
        published.video_src.set_active(&vec![true; specs.len()]);
        self.streams.insert(sid, published);
        let me = self.me.clone();
        let mut s = self.shared();
        if let Some(p) = s.roster.get_mut(&me) {
            p.streams.retain(|x| x.sid != sid);
            p.streams.push(stream);
        }
        Ok(stream)
    }

    async fn on_offer(&mut self, sdp: &str, tracks: Vec<CallTrack>) {
        let answer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| anyhow!("bad SDP offer: {e}"))
            .and_then(|o| self.sub_rtc.sdp_api().accept_offer(o).map_err(|e| anyhow!("offer not accepted: {e}")));
        match answer {
            Ok(answer) => {
                self.tracks = tracks.iter().map(|t| (Mid::from(t.mid.as_str()), t.clone())).collect();
                let frame = ClientFrame::CallAnswer { rid: None, sdp: answer.to_sdp_string() };
                self.send_request(frame, Pending::Auto { forget: None }).await;
                self.open_link(Leg::Subscribe, sdp);
                self.poll(Leg::Subscribe);
                self.notify(CallNotice::Offer(tracks));
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                self.notify(CallNotice::Error { code: ErrorCode::BadRequest, message: format!("client: {e:#}") });
            }
        }
    }

    async fn on_call_event(&mut self, event: CallEvent) {
        let mut subscribe_now: Vec<(String, CallStream)> = Vec::new();
        {
            let me = self.me.clone();
            let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            match &event {
                CallEvent::Joined { participant } => {
                    s.roster.insert(participant.address.clone(), participant.clone());
                    if participant.address != me {
                        subscribe_now.extend(participant.streams.iter().map(|st| (participant.address.clone(), *st)));
                    }
                }
                CallEvent::Updated { address, permissions, admin_muted } => {
                    if let Some(p) = s.roster.get_mut(address) {
                        p.permissions = *permissions;
                        p.admin_muted = *admin_muted;
                    }
                    if *address == me {
                        s.permissions = *permissions;
                        self.permissions = *permissions;
                    }
                }
                CallEvent::Left { address, .. } => {
                    s.roster.remove(address);
                    self.subscriptions.retain(|(a, _), _| a != address);
                }
                CallEvent::Published { address, stream } => {
                    if let Some(p) = s.roster.get_mut(address) {
                        p.streams.retain(|x| x.sid != stream.sid);
                        p.streams.push(*stream);
                    }
                    if *address != me {
                        subscribe_now.push((address.clone(), *stream));
                    }
                }
                CallEvent::Muted { address, sid, muted } => {
                    if let Some(st) =
                        s.roster.get_mut(address).and_then(|p| p.streams.iter_mut().find(|x| x.sid == *sid))
                    {
                        st.muted = *muted;
                    }
                }
                CallEvent::Unpublished { address, sid, .. } => {
                    if let Some(p) = s.roster.get_mut(address) {
                        p.streams.retain(|x| x.sid != *sid);
                    }
                    self.subscriptions.remove(&(address.clone(), *sid));
                }
                CallEvent::Talking { address, talking } => {
                    if let Some(p) = s.roster.get_mut(address) {
                        p.talking = *talking;
                    }
                }
                CallEvent::Speakers { order } => s.speakers = order.clone(),
                CallEvent::Layers { sid, active } => {
                    if let Some(p) = self.streams.get_mut(sid) {
                        p.video_src.set_active(active);
                    }
                }
                CallEvent::Layer { address, sid, .. } => {
                    let key = TrackKey { publisher: address.clone(), sid: *sid, kind: Kind::Video };
                    if let Some(t) = s.stats.received.get_mut(&key) {
                        t.restart_run();
                    }
                }
                CallEvent::Subscriber { .. } => {}
            }
        }
        // Own streams ended by the server (hang-up, permission revoked): stop sending them.
        if let CallEvent::Unpublished { address, sid, .. } = &event {
            if *address == self.me {
                self.streams.remove(sid);
            }
        }
        let left_me = matches!(&event, CallEvent::Left { address, .. } if *address == self.me);
        let why = match &event {
            CallEvent::Left { reason, .. } => format!("left the call: {reason:?}"),
            _ => String::new(),
        };
        self.notify(CallNotice::Event(event));
        if left_me {
            self.end(why);
            return;
        }
        if self.subscribe_all && self.permissions.subscribe {
            for (address, stream) in subscribe_now {
                self.auto_subscribe_one(address, stream).await;
            }
        }
    }

    /// Subscribes to every stream of others in the roster not subscribed yet.
    async fn auto_subscribe(&mut self) {
        if !self.subscribe_all || !self.permissions.subscribe {
            return;
        }
        let wanted: Vec<(String, CallStream)> = self
            .shared()
            .roster
            .values()
            .filter(|p| p.address != self.me)
            .flat_map(|p| p.streams.iter().map(|s| (p.address.clone(), *s)))
            .collect();
        for (address, stream) in wanted {
            self.auto_subscribe_one(address, stream).await;
        }
    }

    async fn auto_subscribe_one(&mut self, address: String, stream: CallStream) {
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
        self.send_request(frame, Pending::Auto { forget: Some(key) }).await;
    }
}

/// Receives on a UDP socket; never completes without one.
async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

fn ended<T>() -> Result<T, CallError> {
    Err(anyhow!("the call has ended").into())
}

fn fail(p: Pending, e: CallError) {
    match p {
        Pending::Request { reply: Some(r), .. } => drop(r.send(Err(e))),
        Pending::Publish { reply, .. } => drop(reply.send(Err(e))),
        Pending::Unpublish { reply, .. } => drop(reply.send(Err(e))),
        _ => tracing::debug!("request failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str0m_sees_our_vp8_keyframes() {
        let t = media::Trailer { layer: 0, frame: 0, sent_us: 0 };
        // A VP8 payload descriptor with S=1, PID=0, then the frame.
        let mut key = vec![0x10];
        key.extend(media::vp8_frame(true, 320, 180, t, 1000));
        assert!(str0m::format::detect_vp8_keyframe(&key));
        let mut inter = vec![0x10];
        inter.extend(media::vp8_frame(false, 320, 180, t, 1000));
        assert!(!str0m::format::detect_vp8_keyframe(&inter));
    }

    /// A publish offer built like `publish` has the three rids, and the local host candidate.
    #[test]
    fn publish_offer_has_simulcast_and_candidate() {
        install_crypto();
        let mut rtc = Rtc::builder().build(Instant::now());
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let a = api.add_media(str0m::media::MediaKind::Audio, Direction::SendOnly, Some("s".into()), None, None);
        let mut s = Simulcast::new();
        for rid in RIDS {
            s.add_send_layer(SimulcastLayer::new(rid));
        }
        let v = api.add_media(str0m::media::MediaKind::Video, Direction::SendOnly, Some("s".into()), None, Some(s));
        let (offer, _pending) = api.apply().unwrap();
        let sdp = offer.to_sdp_string();
        assert!(sdp.contains(&format!("a=mid:{a}")) && sdp.contains(&format!("a=mid:{v}")), "{sdp}");
        assert!(sdp.contains("a=simulcast:send q;h;f"), "{sdp}");
        assert!(sdp.contains("127.0.0.1 40000 typ host"), "{sdp}");
        assert!(sdp.contains("VP8") && sdp.contains("opus"), "{sdp}");
    }
}
