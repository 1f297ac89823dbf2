//! The call task: the I/O edge of a call.
//!
//! [`Driver`] owns everything that waits or talks: the messaging connection, the two UDP
//! sockets (or the ICE-TCP links), the two str0m [`Rtc`]s, the channels to the handle and the
//! clock. One `select!` loop feeds it commands of the handle, frames from the server, datagrams
//! and timers. Signalling is decided by the sans-IO [`Signalling`] machine (`signal.rs`): the
//! driver hands it each command and frame and carries out what it asks, in order, under the
//! drain contract written there. Media stays here: driving the Rtcs, the downlink shaper,
//! writing the synthetic sources of own streams, and counting what arrives.
//!
//! What the handle reads (statistics, roster, permissions, why the call ended) is kept in
//! [`Shared`], updated as things happen, so a notice is never ahead of the state it announces.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chorus_proto::call::{CallParticipant, CallPermissions, CallStream, MediaKind};
use chorus_proto::error::ErrorCode;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::GroupId;
use str0m::media::{Frequency, MediaTime, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::media::{self, AudioSource, VideoSource, AUDIO_FRAME_MS, RIDS, VIDEO_FPS};
use super::shaper::{self, Shaper, Verdict};
use super::signal::{self, Command, Rtcs, Signalling, Ticket, ViewChange};
use super::stats::{self, CallStats, Kind, LegState, MediaPath, TrackKey};
use super::tcp::{self, Link, LinkEvent};
use super::{CallError, CallNotice, CallOptions, Joined, Leg, PublishOptions, Transport};
use crate::Connection;

/// A leg ICE-disconnected this long gets an ICE restart (protocol.md §15.10).
const RESTART_AFTER: Duration = Duration::from_secs(2);
/// At most one automatic ICE restart per this long.
const RESTART_EVERY: Duration = Duration::from_secs(5);

/// RFC 6464 level of audio while speaking, dBov.
const SPEAKING_DBOV: i8 = -20;
/// RFC 6464 level of silence, dBov.
const SILENT_DBOV: i8 = -127;

/// What the task keeps up to date for the handle.
#[derive(Default)]
pub(super) struct Shared {
    pub stats: CallStats,
    /// Local addresses by [`Leg`] (with TCP: known once connected).
    pub local: [Option<SocketAddr>; 2],
    pub roster: BTreeMap<String, CallParticipant>,
    pub speakers: Vec<String>,
    pub permissions: CallPermissions,
    pub ended: Option<String>,
}

/// Where the answer to a command goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, CallError>>;

/// What the handle asks of the task.
pub(super) enum Cmd {
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
    Rebind(Reply<[SocketAddr; 2]>),
    RestartIce(Reply<()>),
    Leave(Reply<()>),
}

/// A started call task, for the handle.
pub(super) struct Started {
    pub cmds: mpsc::UnboundedSender<Cmd>,
    pub notices: mpsc::UnboundedReceiver<CallNotice>,
    pub shared: Arc<Mutex<Shared>>,
    pub task: JoinHandle<Connection>,
}

/// Opens the sockets and peer connections of the call `joined` described, sends the automatic
/// subscriptions and spawns the task, which hands `conn` back when it stops.
pub(super) async fn start(conn: Connection, joined: &Joined, options: &CallOptions) -> Result<Started, CallError> {
    let now = Instant::now();
    let Legs { rtcs, pub_socket, sub_socket, local } = Legs::open(options, now).await?;
    let mut stats = CallStats { transport: options.transport, ..Default::default() };
    set_paths(&mut stats, options.transport, local);
    let shared = Arc::new(Mutex::new(Shared {
        stats,
        local: known_local(options.transport, local),
        roster: joined.participants.iter().map(|p| (p.address.clone(), p.clone())).collect(),
        permissions: joined.permissions,
        ..Default::default()
    }));
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (note_tx, note_rx) = mpsc::unbounded_channel();
    let (link_tx, link_rx) = mpsc::channel(1024);
    // The machine takes the connection's request ids over while the call runs.
    let signal =
        Signalling::new(joined, options.subscribe_all, options.subscribe_height, options.recover, conn.next_rid);
    let mut driver = Driver {
        conn,
        gid: joined.gid,
        options: options.clone(),
        transport: options.transport,
        pub_socket,
        sub_socket,
        links: [None, None],
        link_tx,
        link_rx,
        connect_timeout: options.reply_timeout,
        remote: [None, None],
        local,
        rtcs,
        pub_timeout: now,
        sub_timeout: now,
        shaper: Shaper::new(now, options.downlink_kbps),
        shared: shared.clone(),
        notices: note_tx,
        cmds: cmd_rx,
        signal,
        next_ticket: 0,
        replies: HashMap::new(),
        publish_replies: HashMap::new(),
        sources: BTreeMap::new(),
        speaking: false,
        frozen: false,
        done: false,
        ended: false,
        pub_connected: false,
        dtls_up: [false; 2],
        ice_down: [None; 2],
        next_restart: now,
        restart_due: false,
        last_frame: now,
        rejoin_due: false,
        republish: Vec::new(),
        republishing: None,
        next_audio: now,
        next_video: now,
        sub_rtp_seen: false,
    };
    // The automatic subscriptions to the roster leave before the handle is returned.
    driver.drain().await;
    let task = tokio::spawn(driver.run());
    Ok(Started { cmds: cmd_tx, notices: note_rx, shared, task })
}

/// Both legs' Rtcs with their sockets, new.
struct Legs {
    rtcs: Rtcs,
    pub_socket: Option<UdpSocket>,
    sub_socket: Option<UdpSocket>,
    local: [SocketAddr; 2],
}

impl Legs {
    async fn open(options: &CallOptions, now: Instant) -> Result<Legs, CallError> {
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
        Ok(Legs { rtcs: Rtcs { publish: pub_rtc, subscribe: sub_rtc }, pub_socket, sub_socket, local })
    }
}

/// The local addresses the handle can tell: the UDP sockets', none yet with TCP (known once
/// each connection is up).
fn known_local(transport: Transport, local: [SocketAddr; 2]) -> [Option<SocketAddr>; 2] {
    match transport {
        Transport::Udp => local.map(Some),
        Transport::Tcp => [None; 2],
    }
}

/// The media paths of the statistics, for UDP legs on `local` (TCP ones are set when up).
fn set_paths(stats: &mut CallStats, transport: Transport, local: [SocketAddr; 2]) {
    if transport == Transport::Udp {
        stats.publish_path = Some(MediaPath { transport: Transport::Udp, local: local[0], remote: None });
        stats.subscribe_path = Some(MediaPath { transport: Transport::Udp, local: local[1], remote: None });
    }
}

/// The synthetic media sources of one own stream.
struct Sources {
    audio: AudioSource,
    video: VideoSource,
}

/// The call task. See the [module docs](self).
struct Driver {
    conn: Connection,
    gid: i64,
    options: CallOptions,
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
    rtcs: Rtcs,
    pub_timeout: Instant,
    sub_timeout: Instant,
    shaper: Shaper<(Leg, SocketAddr, Vec<u8>)>,
    shared: Arc<Mutex<Shared>>,
    notices: mpsc::UnboundedSender<CallNotice>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    signal: Signalling,
    next_ticket: u64,
    /// Waiters of the handle's requests, by the ticket the machine answers.
    replies: HashMap<Ticket, Reply<()>>,
    publish_replies: HashMap<Ticket, Reply<CallStream>>,
    /// Media sources of own streams: exactly the sids in `signal.streams()`.
    sources: BTreeMap<u32, Sources>,
    speaking: bool,
    frozen: bool,
    done: bool,
    ended: bool,
    pub_connected: bool,
    /// DTLS came up on the leg (by [`Leg`]): ICE reconnecting after that is the leg back.
    dtls_up: [bool; 2],
    /// Since when each leg has been ICE-disconnected (by [`Leg`]).
    ice_down: [Option<Instant>; 2],
    /// No automatic ICE restart before this.
    next_restart: Instant,
    /// An automatic ICE restart is to be sent (the timer found a leg down too long).
    restart_due: bool,
    /// When the last frame arrived on the WebSocket.
    last_frame: Instant,
    /// The machine asked to join again ([`signal::Output::Rejoin`]).
    rejoin_due: bool,
    /// Own streams to publish again after a rejoin, in order, and the one in flight.
    republish: Vec<(u32, PublishOptions)>,
    republishing: Option<Ticket>,
    next_audio: Instant,
    next_video: Instant,
    /// The subscribe connection's first RTP has been noted ([`stats::SetupSteps`]).
    sub_rtp_seen: bool,
}

fn video_period() -> Duration {
    Duration::from_secs(1) / VIDEO_FPS
}

/// Receives on a UDP socket; never completes without one.
async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
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
                    Ok(frame) => {
                        self.last_frame = Instant::now();
                        self.signalling(signal::Input::Frame(Box::new(frame))).await
                    }
                    Err(e) => self.signalling(signal::Input::Closed(format!("websocket: {e:#}"))).await,
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
            if std::mem::take(&mut self.restart_due) && !self.ended {
                // Its answer goes nowhere: the legs' states tell whether it worked.
                let ticket = self.ticket();
                tracing::info!("a call connection has been disconnected for {RESTART_AFTER:?}: ICE restart");
                self.signalling(signal::Input::Command(ticket, Command::RestartIce)).await;
            }
            if std::mem::take(&mut self.rejoin_due) {
                self.rejoin().await;
            }
        }
        // The request ids go back to the messaging connection.
        self.conn.next_rid = self.signal.next_rid();
        self.conn
    }

    /// Feeds the signalling machine and carries out what it asks.
    async fn signalling(&mut self, input: signal::Input) {
        self.signal.handle_input(input, &mut self.rtcs);
        self.drain().await;
    }

    /// Carries out the machine's outputs, in order, until it has none (the drain contract).
    async fn drain(&mut self) {
        while let Some(out) = self.signal.poll_output() {
            match out {
                signal::Output::Send { rid, frame } => {
                    let result = self.conn.send(&frame).await;
                    self.signal.handle_input(signal::Input::Sent { rid, result }, &mut self.rtcs);
                }
                signal::Output::Replied(ticket, r) => {
                    if let Some(reply) = self.replies.remove(&ticket) {
                        let _ = reply.send(r);
                    }
                }
                signal::Output::Published(ticket, r) => {
                    if let Some(reply) = self.publish_replies.remove(&ticket) {
                        let _ = reply.send(r);
                    } else if self.republishing == Some(ticket) {
                        self.republishing = None;
                        if let Err(e) = r {
                            let message = format!("client: publishing again after the rejoin: {e}");
                            self.notify(CallNotice::Error { code: ErrorCode::Internal, message });
                        }
                        self.republish_next();
                    }
                }
                signal::Output::Notice(n) => self.notify(n),
                signal::Output::View(change) => {
                    let mut s = self.shared();
                    match change {
                        ViewChange::Participant(p) => {
                            s.roster.insert(p.address.clone(), p);
                        }
                        ViewChange::Gone(address) => {
                            s.roster.remove(&address);
                        }
                        ViewChange::Speakers(order) => s.speakers = order,
                        ViewChange::Permissions(p) => s.permissions = p,
                    }
                }
                signal::Output::Negotiated { leg, sdp } => {
                    if leg == Leg::Subscribe {
                        self.shared().stats.subscribe_setup.on_offer(Instant::now());
                    }
                    self.open_link(leg, &sdp);
                    self.poll(leg);
                }
                signal::Output::StartSending { sid, layers, kind } => {
                    let mut video = VideoSource::with_kind(&layers, kind);
                    video.set_active(&vec![true; layers.len()]);
                    self.sources.insert(sid, Sources { audio: AudioSource::default(), video });
                }
                signal::Output::StopSending(sid) => {
                    self.sources.remove(&sid);
                }
                signal::Output::LayersActive { sid, active } => {
                    if let Some(s) = self.sources.get_mut(&sid) {
                        s.video.set_active(&active);
                    }
                }
                signal::Output::Keyframe(sid) => {
                    if let Some(s) = self.sources.get_mut(&sid) {
                        s.video.request_keyframe(None);
                    }
                }
                signal::Output::ForgetSent(sid) => self.shared().stats.sent.retain(|(s, _), _| *s != sid),
                signal::Output::RestartRun(key) => {
                    if let Some(t) = self.shared().stats.received.get_mut(&key) {
                        t.restart_run();
                    }
                }
                signal::Output::Ended(why) => self.end(why),
                signal::Output::Rejoin => self.rejoin_due = true,
                signal::Output::Stop => self.done = true,
            }
        }
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        let command = match cmd {
            Cmd::Publish(sid, opts, reply) => {
                let ticket = self.ticket();
                self.publish_replies.insert(ticket, reply);
                return self.signalling(signal::Input::Command(ticket, Command::Publish { sid, opts })).await;
            }
            Cmd::Unpublish(sid, reply) => (Command::Unpublish { sid }, reply),
            Cmd::Request(frame, reply) => (Command::Request(frame), reply),
            Cmd::Subscribe { address, sid, audio, video, height, reply } => {
                (Command::Subscribe { address, sid, audio, video, height }, reply)
            }
            Cmd::Unsubscribe { address, sid, reply } => (Command::Unsubscribe { address, sid }, reply),
            Cmd::SetHeight { address, sid, height, reply } => (Command::SetHeight { address, sid, height }, reply),
            Cmd::Mute { sid, audio, video, reply } => (Command::Mute { sid, audio, video }, reply),
            Cmd::Leave(reply) => (Command::Leave, reply),
            Cmd::RestartIce(reply) => (Command::RestartIce, reply),
            Cmd::SubscribeAll(on) => return self.signalling(signal::Input::SubscribeAll(on)).await,
            // Media: the driver's own business, nothing once the call has ended.
            Cmd::Speaking(_) | Cmd::Downlink(_) | Cmd::Freeze if self.ended => return,
            Cmd::Speaking(on) => {
                self.speaking = on;
                return;
            }
            Cmd::Downlink(kbps) => {
                self.shaper.set_kbps(Instant::now(), kbps);
                return;
            }
            Cmd::Freeze => {
                self.frozen = true;
                self.pub_connected = false;
                return;
            }
            Cmd::Rebind(reply) => {
                let _ = reply.send(self.rebind().await);
                return;
            }
        };
        let (command, reply) = command;
        let ticket = self.ticket();
        self.replies.insert(ticket, reply);
        self.signalling(signal::Input::Command(ticket, command)).await;
    }

    /// Emulates a NAT rebinding (see [`Call::rebind_udp`](super::Call::rebind_udp)): each leg's
    /// UDP socket is replaced by a new one on the same IP and a new port, and the old one is
    /// closed. The Rtcs are not told: behind a NAT a client does not see its mapped address
    /// change, so they keep their host candidate (`local`, what received datagrams are addressed
    /// to) and only the server sees the peer come from somewhere else.
    async fn rebind(&mut self) -> Result<[SocketAddr; 2], CallError> {
        if self.transport != Transport::Udp || self.ended {
            return Err(anyhow!("only a running UDP call can change its address").into());
        }
        let mut now = [self.local[0]; 2];
        for leg in [Leg::Publish, Leg::Subscribe] {
            let at = SocketAddr::new(self.local[leg as usize].ip(), 0);
            let socket = UdpSocket::bind(at).await.context("binding a UDP socket")?;
            let addr = socket.local_addr().context("local address")?;
            let slot = match leg {
                Leg::Publish => &mut self.pub_socket,
                Leg::Subscribe => &mut self.sub_socket,
            };
            *slot = Some(socket);
            now[leg as usize] = addr;
            let mut s = self.shared();
            s.local[leg as usize] = Some(addr);
            let path = match leg {
                Leg::Publish => &mut s.stats.publish_path,
                Leg::Subscribe => &mut s.stats.subscribe_path,
            };
            if let Some(p) = path {
                p.local = addr;
            }
        }
        Ok(now)
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
                    // Pairs with the server's TCP candidate from the SDP: checks start.
                    Ok(c) => {
                        self.rtcs.leg(leg).add_local_candidate(c);
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

    /// The server took this session out of the call as `lost` (its connections were silent
    /// for the peer timeout): join again on the same WebSocket with new legs, then publish the
    /// same streams and subscribe to the same ones again (protocol.md §15.10). If the join is
    /// refused, the call ends.
    async fn rejoin(&mut self) {
        let streams: Vec<(u32, PublishOptions)> = self.signal.streams().iter().map(|(sid, s)| (*sid, s.opts)).collect();
        let subscriptions: Vec<((String, u32), signal::Sub)> =
            self.signal.subscriptions().iter().map(|(k, v)| (k.clone(), *v)).collect();
        self.rtcs.publish.disconnect();
        self.rtcs.subscribe.disconnect();
        self.sources.clear();
        self.links = [None, None];
        self.conn.next_rid = self.signal.next_rid();
        let joined = match self.join_again().await {
            Ok(j) => j,
            Err(e) => {
                self.end(format!("the call was lost and joining it again failed: {e}"));
                self.done = true;
                return;
            }
        };
        let now = Instant::now();
        let legs = match Legs::open(&self.options, now).await {
            Ok(l) => l,
            Err(e) => {
                self.end(format!("the call was lost and new connections failed: {e}"));
                self.done = true;
                return;
            }
        };
        tracing::info!(gid = self.gid, "the call was lost: joined again");
        self.rtcs = legs.rtcs;
        (self.pub_socket, self.sub_socket, self.local) = (legs.pub_socket, legs.sub_socket, legs.local);
        (self.pub_timeout, self.sub_timeout, self.next_restart) = (now, now, now);
        (self.pub_connected, self.dtls_up, self.ice_down, self.remote) = (false, [false; 2], [None; 2], [None; 2]);
        {
            let mut s = self.shared();
            s.roster = joined.participants.iter().map(|p| (p.address.clone(), p.clone())).collect();
            s.permissions = joined.permissions;
            s.local = known_local(self.transport, self.local);
            set_paths(&mut s.stats, self.transport, self.local);
            s.stats.publish = LegState::New;
            s.stats.subscribe = LegState::New;
        }
        let o = &self.options;
        self.signal = Signalling::new(&joined, o.subscribe_all, o.subscribe_height, o.recover, self.conn.next_rid);
        self.notify(CallNotice::Rejoined);
        if !o.subscribe_all {
            for ((address, sid), sub) in subscriptions {
                if !joined.participants.iter().any(|p| p.address == address && p.streams.iter().any(|s| s.sid == sid)) {
                    continue;
                }
                let ticket = self.ticket();
                let cmd = Command::Subscribe { address, sid, audio: sub.audio, video: sub.video, height: sub.height };
                self.signal.handle_input(signal::Input::Command(ticket, cmd), &mut self.rtcs);
            }
        }
        self.republish = streams;
        self.republish.reverse();
        self.republish_next();
        self.drain().await;
    }

    /// `call_join` of the same group again; its `call_joined`.
    async fn join_again(&mut self) -> Result<Joined, CallError> {
        let rid = self.conn.rid();
        self.conn.send(&ClientFrame::CallJoin { rid: Some(rid.clone()), gid: GroupId(self.gid) }).await?;
        let frame = self
            .conn
            .expect(self.options.reply_timeout, |f| match f {
                ServerFrame::CallJoined { rid: r, .. } | ServerFrame::Error { rid: r, .. } => {
                    r.as_deref() == Some(rid.as_str())
                }
                _ => false,
            })
            .await?;
        match frame {
            ServerFrame::CallJoined {
                gid, address, permissions, settings, participants, recording, audience, ..
            } => Ok(Joined { gid: gid.get(), address, permissions, settings, participants, recording, audience }),
            ServerFrame::Error { code, message, .. } => Err(super::refused(code, message)),
            other => Err(anyhow!("unexpected answer to call_join: {other:?}").into()),
        }
    }

    /// Publishes the next stream waiting to be published again after a rejoin (one at a time:
    /// each renegotiates the publish leg).
    fn republish_next(&mut self) {
        let Some((sid, opts)) = self.republish.pop() else { return };
        let ticket = self.ticket();
        self.republishing = Some(ticket);
        self.signal.handle_input(signal::Input::Command(ticket, Command::Publish { sid, opts }), &mut self.rtcs);
    }

    /// The call is over for this session (the machine said so): stop media and tell the handle.
    /// The machine then answers what waited and stops the task.
    fn end(&mut self, why: String) {
        self.ended = true;
        self.rtcs.publish.disconnect();
        self.rtcs.subscribe.disconnect();
        {
            let mut s = self.shared();
            s.ended = Some(why.clone());
            s.stats.publish = LegState::Closed;
            s.stats.subscribe = LegState::Closed;
        }
        self.notify(CallNotice::Ended(why));
    }

    fn deadline(&self) -> Instant {
        let mut d = Instant::now() + Duration::from_millis(100);
        if !self.frozen && !self.ended {
            d = d.min(self.pub_timeout).min(self.sub_timeout);
            if let Some(t) = self.shaper.next_release() {
                d = d.min(t);
            }
            if self.signal.streams().values().any(|s| s.audio.is_some()) {
                d = d.min(self.next_audio);
            }
            if self.signal.streams().values().any(|s| s.video.is_some()) {
                d = d.min(self.next_video);
            }
        }
        d
    }

    /// Timers: release shaped packets, write due media, let both Rtcs handle time, see
    /// whether a leg has been disconnected long enough for an ICE restart.
    fn on_time(&mut self, now: Instant) {
        if self.frozen || self.ended {
            return;
        }
        // Only while the WebSocket shows life (a frame since the leg went down): in a full
        // outage a `call_restart` would wait in TCP, and the retransmission backoff it starts
        // would hold back the `call_join` of a rejoin by seconds after the network returns.
        let down_long =
            self.ice_down.iter().flatten().any(|t| now.duration_since(*t) >= RESTART_AFTER && self.last_frame > *t);
        if down_long && self.options.recover && now >= self.next_restart {
            self.next_restart = now + RESTART_EVERY;
            self.restart_due = true;
        }
        while let Some((leg, source, data)) = self.shaper.pop(now) {
            self.deliver(now, leg, source, &data);
        }
        self.write_media(now);
        if now >= self.pub_timeout {
            let _ = self.rtcs.publish.handle_input(Input::Timeout(now));
        }
        if now >= self.sub_timeout {
            let _ = self.rtcs.subscribe.handle_input(Input::Timeout(now));
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
        let rtc = self.rtcs.leg(leg);
        // Anything else on the socket (a stray or stale sender) is ignored.
        if rtc.accepts(&input) {
            if let Err(e) = rtc.handle_input(input) {
                tracing::debug!("{leg:?} connection input: {e}");
            }
            if leg == Leg::Subscribe && !self.sub_rtp_seen && stats::is_rtp(data) {
                self.sub_rtp_seen = true;
                self.shared().stats.subscribe_setup.on_datagram(now, data);
            }
            self.poll(leg);
        }
    }

    /// Drains an Rtc's output: sends datagrams, handles events, remembers its next timeout.
    fn poll(&mut self, leg: Leg) {
        let mut events = Vec::new();
        loop {
            let rtc = self.rtcs.leg(leg);
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
        if leg == Leg::Subscribe && matches!(e, Event::Connected | Event::IceConnectionStateChange(_)) {
            self.shared().stats.subscribe_setup.on_event(Instant::now(), &e);
        }
        match e {
            Event::Connected => {
                self.dtls_up[leg as usize] = true;
                self.set_leg(leg, LegState::Connected);
            }
            Event::IceConnectionStateChange(s) => match s {
                IceConnectionState::Checking => self.set_leg(leg, LegState::Checking),
                IceConnectionState::Disconnected => {
                    self.ice_down[leg as usize].get_or_insert_with(Instant::now);
                    self.set_leg(leg, LegState::Disconnected);
                }
                IceConnectionState::Connected | IceConnectionState::Completed => {
                    self.ice_down[leg as usize] = None;
                    // The first time, `Connected` waits for DTLS (Event::Connected); after
                    // that, ICE coming back (or a restart done) is the leg back.
                    if self.dtls_up[leg as usize] {
                        self.set_leg(leg, LegState::Connected);
                    }
                }
                IceConnectionState::New => {}
            },
            Event::MediaData(d) if leg == Leg::Subscribe => self.on_media(d),
            Event::MediaIngressStats(i) if leg == Leg::Subscribe => {
                let Some(track) = self.signal.track(&i.mid) else { return };
                let key = TrackKey { publisher: track.publisher.clone(), sid: track.sid, kind: track.kind.into() };
                let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
                let t = s.stats.received.entry(key).or_default();
                (t.packets, t.rtp_bytes, t.nacks) = (i.packets, i.bytes, i.nacks);
            }
            Event::KeyframeRequest(r) if leg == Leg::Publish => {
                for (sid, p) in self.signal.streams() {
                    if p.video.is_some_and(|(m, _)| m == r.mid) {
                        let layer = r.rid.and_then(|rid| RIDS.iter().position(|x| *x == &*rid));
                        if let Some(src) = self.sources.get_mut(sid) {
                            src.video.request_keyframe(layer);
                        }
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
        let Some(track) = self.signal.track(&d.mid) else {
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
                for (sid, p) in self.signal.streams() {
                    let Some((mid, pt)) = p.audio else { continue };
                    let Some(src) = self.sources.get_mut(sid) else { continue };
                    if p.stream.muted.audio {
                        continue;
                    }
                    let rtp_time = MediaTime::new(u64::from(src.audio.frame) * 960, Frequency::FORTY_EIGHT_KHZ);
                    let data = src.audio.tick(media::now_us());
                    let len = data.len();
                    let Some(w) = self.rtcs.publish.writer(mid) else { continue };
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
                for (sid, p) in self.signal.streams() {
                    let Some((mid, pt)) = p.video else { continue };
                    let Some(src) = self.sources.get_mut(sid) else { continue };
                    if p.stream.muted.video {
                        continue;
                    }
                    let rtp_time = MediaTime::new(src.video.ticks * 3000, Frequency::NINETY_KHZ);
                    for f in src.video.tick(media::now_us()) {
                        let (len, key) = (f.data.len(), f.key);
                        let Some(mut w) = self.rtcs.publish.writer(mid) else { break };
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
}
