//! The room task: drives one call's [`Engine`] with the commands of sessions, the datagrams of
//! the media sockets and the clock, and carries out what the engine outputs.
//!
//! Everything with a side effect lives here and nowhere in the engine: the `select!` loop, the
//! clock (`Instant::now()` and the wall clock of the webhooks), the channels (the command queue,
//! the sessions' frame queues, the one-shot replies, the ICE-TCP writers) and the sockets
//! ([`MediaNet`], [`SendBatch`]). Replies leave the engine keyed by a [`Token`] the task maps back
//! to the request's one-shot sender; frames leave keyed by a [`SinkId`] the task maps to the
//! session's queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_proto::call::{RecordAction, RecordingStopReason};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_sfu::{Permissions, RoomSettings};
use str0m::net::Protocol;
use tokio::sync::{mpsc, oneshot};

use crate::bus::FrameText;

use super::engine::{self, Engine, EngineConfig, Input, Leg, Output, PeerKey, RecordBy, RecordOut, SinkId, Token};
use super::net::{Datagram, MediaNet, Route, SendBatch, ROOM_QUEUE};
use super::RoomShared;
use crate::config::Config;
use crate::error::ApiError;
use crate::record::stream::StreamConfig;
use crate::record::writer::{Writer, WriterAsk, WriterEvent};

/// How many queued commands one turn of the room's loop takes before it flushes (see `run`).
const COMMAND_BATCH: usize = 32;

/// What sessions ask of the room.
pub(crate) enum Command {
    Join {
        uid: i64,
        address: String,
        name: String,
        session: u64,
        permissions: Permissions,
        auto_record: Option<super::AutoRecord>,
        out: mpsc::Sender<FrameText>,
        rid: Option<String>,
        reply: JoinReply,
        queued: Instant,
    },
    Request {
        uid: i64,
        session: u64,
        frame: ClientFrame,
        reply: oneshot::Sender<ServerFrame>,
        queued: Instant,
    },
    /// A member (over REST, its right checked) starts or stops the recording; answered with
    /// `call_recording` or an error frame.
    Record {
        uid: i64,
        address: String,
        action: RecordAction,
        reply: oneshot::Sender<ServerFrame>,
        queued: Instant,
    },
    /// An HTTP participant (WHIP) offers its publish connection anew (ICE restart).
    Reoffer {
        uid: i64,
        session: u64,
        sdp: String,
        reply: oneshot::Sender<ServerFrame>,
        queued: Instant,
    },
}

/// Where a join's answer goes.
type JoinReply = oneshot::Sender<Result<ServerFrame, ApiError>>;

/// An ICE-TCP connection of a leg: its remote address and where to write to it.
type TcpConn = (SocketAddr, mpsc::Sender<Vec<u8>>);

/// A session's frame queue.
struct Sink {
    uid: i64,
    tx: mpsc::Sender<FrameText>,
    /// Fell behind: nothing more is queued but the `left` in its last slot.
    slow: bool,
}

pub(crate) struct RoomTask {
    gid: i64,
    id: u64,
    engine: Engine,
    net: Arc<MediaNet>,
    hooks: Arc<crate::webhooks::Webhooks>,
    cmd_rx: mpsc::Receiver<Command>,
    shared: Arc<RoomShared>,
    /// Datagrams of the subscribe legs (feedback, handshakes, consent checks).
    pkt_tx: mpsc::Sender<Vec<Datagram>>,
    pkt_rx: mpsc::Receiver<Vec<Datagram>>,
    /// Datagrams of the publish legs (the media everyone watches), queued apart: when the room
    /// falls behind, a crowd's feedback fills its own queue and is what gets dropped.
    pub_tx: mpsc::Sender<Vec<Datagram>>,
    pub_rx: mpsc::Receiver<Vec<Datagram>>,
    /// UDP datagrams gathered while draining, sent in one `sendmmsg` after each timeout input.
    out: SendBatch,
    sinks: HashMap<SinkId, Sink>,
    next_id: u64,
    /// Joins waiting for their answer, with the sink they brought.
    /// Joins and requests waiting for the engine's answer, with when they were queued.
    joins: HashMap<Token, (JoinReply, SinkId, Instant)>,
    replies: HashMap<Token, (oneshot::Sender<ServerFrame>, Instant)>,
    /// ICE-TCP connections of each leg, by remote address.
    tcp: HashMap<PeerKey, Vec<TcpConn>>,
    /// Sessions found full while draining, to tell the engine.
    slow: Vec<SinkId>,
    /// When the engine wants its next timeout input.
    wake: Instant,
    /// When the first participant joined (`room.started`), ms since the epoch.
    started_ms: Option<i64>,
    cfg: Arc<Config>,
    /// Where finished recordings are published.
    media: Option<Arc<crate::media::Media>>,
    /// The writer of the recording in progress.
    rec: Option<Writer>,
    /// Recordings started in this call (the current one's number).
    rec_gen: u64,
    /// The writer of the recording just started could not be made.
    failed_start: bool,
    /// What recording writers ask of the call.
    rec_tx: mpsc::UnboundedSender<WriterEvent>,
    rec_rx: mpsc::UnboundedReceiver<WriterEvent>,
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
        media: Option<Arc<crate::media::Media>>,
    ) -> Self {
        let (pkt_tx, pkt_rx) = mpsc::channel(ROOM_QUEUE);
        let (pub_tx, pub_rx) = mpsc::channel(ROOM_QUEUE);
        let (rec_tx, rec_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let engine_cfg = EngineConfig {
            gid,
            settings,
            udp: net.udp_advertised,
            tcp: net.tcp_advertised,
            initial_bitrate_kbps: cfg.rtc_initial_bitrate_kbps,
            peer_timeout: Duration::from_secs(cfg.rtc_peer_timeout_secs),
            connect_timeout: Duration::from_secs(cfg.rtc_connect_timeout_secs),
            seed: rand::random(),
            record_max: Duration::from_secs(cfg.recording_max_secs),
        };
        let mut engine = Engine::new(now, engine_cfg);
        engine.set_egress(Box::new(super::egress::Workers::new(net.clone(), cfg.rtc_egress_threads)));
        // The first wake-up is the engine's first tick, not now: a room that woke before its
        // first join arrived would find itself empty and end.
        let wake = loop {
            // A new engine has nothing else to output.
            if let Output::Timeout(t) = engine.poll_output() {
                break t;
            }
        };
        RoomTask {
            gid,
            id,
            engine,
            net,
            hooks,
            cmd_rx,
            shared,
            pkt_tx,
            pkt_rx,
            pub_tx,
            pub_rx,
            out: SendBatch::default(),
            sinks: HashMap::new(),
            next_id: 1,
            joins: HashMap::new(),
            replies: HashMap::new(),
            tcp: HashMap::new(),
            slow: Vec::new(),
            wake,
            started_ms: None,
            cfg,
            media,
            rec: None,
            rec_gen: 0,
            failed_start: false,
            rec_tx,
            rec_rx,
        }
    }

    /// Runs until the last participant is gone and no command waits.
    pub async fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        // Take those that queued meanwhile before the one flush below: a flush runs
                        // the egress phase over every leg whose timer is due (15-25 ms a turn with
                        // 1,100 viewers on 2 cores), so a join storm with one flush per request
                        // kept requests waiting seconds in this queue. Bounded, so the media
                        // queued behind them waits little.
                        for _ in 1..COMMAND_BATCH {
                            match self.cmd_rx.try_recv() {
                                Ok(cmd) => self.command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                _ = shared.wake.notified() => {
                    self.sweep_gone();
                    let members = shared.refresh.lock().expect("refresh lock").take();
                    if let Some(members) = members {
                        self.input(Instant::now(), Input::Members(members));
                    }
                }
                Some(batch) = self.pub_rx.recv() => {
                    self.datagrams(batch);
                    self.queued_datagrams();
                }
                Some(batch) = self.pkt_rx.recv() => {
                    self.datagrams(batch);
                    self.queued_datagrams();
                }
                Some(ev) = self.rec_rx.recv() => {
                    // Only the recording in progress may ask (an old writer still closing its
                    // files must not stop a new recording).
                    if ev.gen == self.rec_gen && self.rec.is_some() {
                        let input = match ev.ask {
                            WriterAsk::Keyframe { uid, sid } => Input::RecordKeyframe { uid, sid },
                            WriterAsk::Stop(reason) => Input::RecordFailed(reason),
                        };
                        self.input(Instant::now(), input);
                    }
                }
                _ = tokio::time::sleep_until(self.wake.into()) => {}
            }
            self.input(Instant::now(), Input::Timeout);
            if !self.out.is_empty() {
                self.net.send_batch(&mut self.out);
            }
            if self.engine.is_empty() && self.cmd_rx.is_empty() {
                break;
            }
        }
        tracing::debug!(gid = self.gid, room = self.id, "call ended");
        if let Some(started) = self.started_ms {
            let duration_ms = crate::clock::now_ms() - started;
            self.hooks.emit("room.finished", serde_json::json!({ "gid": self.gid, "duration_ms": duration_ms }));
        }
    }

    fn token(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { uid, address, name, session, permissions, auto_record, out, rid, reply, queued } => {
                let previous_gone = self.sinks.values().any(|s| s.uid == uid && s.tx.is_closed());
                let (token, sink) = (Token(self.token()), SinkId(self.token()));
                self.sinks.insert(sink, Sink { uid, tx: out, slow: false });
                self.joins.insert(token, (reply, sink, queued));
                let auto_record = auto_record.map(|a| (a, crate::clock::now_ms()));
                let join = engine::Join {
                    token,
                    uid,
                    address,
                    name,
                    session,
                    permissions,
                    sink,
                    previous_gone,
                    auto_record,
                    rid,
                };
                self.input(now, Input::Join(join));
            }
            Command::Request { uid, session, frame: ClientFrame::CallRecord { rid, action }, reply, queued } => {
                let token = Token(self.token());
                self.replies.insert(token, (reply, queued));
                let by = RecordBy::Participant { uid, session };
                self.input(now, Input::Record { token, rid, by, action, now_ms: crate::clock::now_ms() });
            }
            Command::Request { uid, session, frame, reply, queued } => {
                let token = Token(self.token());
                self.replies.insert(token, (reply, queued));
                self.input(now, Input::Request { token, uid, session, frame });
            }
            Command::Record { uid, address, action, reply, queued } => {
                let token = Token(self.token());
                self.replies.insert(token, (reply, queued));
                let by = RecordBy::Member { uid, address };
                self.input(now, Input::Record { token, rid: None, by, action, now_ms: crate::clock::now_ms() });
            }
            Command::Reoffer { uid, session, sdp, reply, queued } => {
                let token = Token(self.token());
                self.replies.insert(token, (reply, queued));
                self.input(now, Input::Reoffer { token, uid, session, sdp });
            }
        }
    }

    /// Takes out every participant whose session dropped its `CallSession` (its receiver is
    /// closed): the WebSocket closed, or the session left or joined another call.
    fn sweep_gone(&mut self) {
        if !self.sinks.values().any(|s| s.tx.is_closed()) {
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
        let gone: Vec<SinkId> = self.sinks.iter().filter(|(_, s)| s.tx.is_closed()).map(|(id, _)| *id).collect();
        self.input(Instant::now(), Input::Gone(gone));
    }

    /// Takes whatever else is queued, publish legs' first, before draining outputs once. Their
    /// outputs wait in the engine: the timeout input after drains the legs they touched, and one
    /// poll carries out both.
    fn queued_datagrams(&mut self) {
        while let Ok(more) = self.pub_rx.try_recv() {
            self.datagrams(more);
        }
        while let Ok(more) = self.pkt_rx.try_recv() {
            self.datagrams(more);
        }
    }

    fn datagrams(&mut self, batch: Vec<Datagram>) {
        for d in batch {
            if let Some(tcp) = d.tcp {
                if self.engine.has_leg(d.peer) {
                    let conns = self.tcp.entry(d.peer).or_default();
                    if !conns.iter().any(|(a, _)| *a == d.source) {
                        // Connections that closed since go (`net` keeps a few per leg).
                        conns.retain(|(_, tx)| !tx.is_closed());
                        conns.push((d.source, tcp));
                    }
                }
            }
            let input = Input::Datagram(engine::Datagram {
                peer: d.peer,
                proto: d.proto,
                source: d.source,
                destination: d.destination,
                contents: d.data,
            });
            self.engine.handle_input(d.at, input);
        }
    }

    /// Gives the engine one input and carries out what it outputs.
    fn input(&mut self, now: Instant, input: Input) {
        self.engine.handle_input(now, input);
        self.outputs(now);
    }

    /// Carries out the engine's outputs until it waits for time; sessions found full are handed
    /// back as [`Input::Slow`] (which outputs more).
    fn outputs(&mut self, now: Instant) {
        loop {
            match self.engine.poll_output() {
                Output::Joined { token, result } => {
                    if let Some((reply, sink, queued)) = self.joins.remove(&token) {
                        if result.is_err() {
                            self.sinks.remove(&sink);
                        }
                        answered(queued);
                        let _ = reply.send(result.map(|f| *f));
                    }
                }
                Output::Reply { token, frame } => {
                    if let Some((reply, queued)) = self.replies.remove(&token) {
                        answered(queued);
                        let _ = reply.send(*frame);
                    }
                }
                Output::Frame { to, json, last_slot } => self.deliver(to, json, last_slot),
                Output::Release(sink) => {
                    self.sinks.remove(&sink);
                }
                Output::Transmit { peer, transmit } => match transmit.proto {
                    Protocol::Udp => self.out.push(transmit.destination, &transmit.contents, self.net.max_segments()),
                    _ => {
                        let conns = self.tcp.get(&peer).into_iter().flatten();
                        if let Some((_, tx)) = conns.into_iter().find(|(a, _)| *a == transmit.destination) {
                            let _ = tx.try_send(transmit.contents.to_vec());
                        }
                    }
                },
                Output::Register { ufrag, peer } => {
                    let to = if peer.leg == Leg::Publish { &self.pub_tx } else { &self.pkt_tx };
                    self.net.register(ufrag, Route { room: self.id, to: to.clone(), peer });
                }
                Output::Unregister { ufrag, peer } => {
                    self.net.unregister(&ufrag);
                    self.tcp.remove(&peer);
                }
                Output::Rekey { old, new, peer } => {
                    tracing::debug!(uid = peer.uid, leg = ?peer.leg, "ICE restart: the route follows the new username");
                    self.net.rekey(&old, new);
                }
                Output::Webhook { event, body } => {
                    if event == "room.started" {
                        self.started_ms = Some(crate::clock::now_ms());
                    }
                    self.hooks.emit(event, body);
                }
                Output::Record(out) => self.record(out),
                Output::Timeout(t) => {
                    self.wake = t;
                    if std::mem::take(&mut self.failed_start) {
                        self.engine.handle_input(now, Input::RecordFailed(RecordingStopReason::StorageFailed));
                        continue;
                    }
                    match self.slow.pop() {
                        Some(sink) => self.engine.handle_input(now, Input::Slow(sink)),
                        None => break,
                    }
                }
            }
        }
    }

    /// Carries out a recording output: a start makes the writer thread, a stop lets it finish
    /// (it publishes the files), the rest goes to it.
    fn record(&mut self, out: Box<RecordOut>) {
        match &*out {
            RecordOut::Start { by_uid, by, since_ms } => {
                *self.shared.recording.lock().expect("recording lock") = chorus_proto::call::CallRecording {
                    active: true,
                    by: Some(by.clone()),
                    since: Some(*since_ms),
                    reason: None,
                };
                let dir = self.cfg.data.join("recordings").join(format!("{}-{since_ms}", self.gid));
                let cfg = StreamConfig { wait: Duration::from_secs(3), max_bytes: self.cfg.recording_max_bytes };
                let (media, gid, uid) = (self.media.clone(), self.gid, *by_uid);
                let rt = tokio::runtime::Handle::current();
                let manifest = crate::record::publish::Manifest { gid, uid };
                let at_dir = dir.clone();
                let done = move |files: Vec<crate::record::writer::FileDone>| {
                    let Some(media) = media else { return };
                    rt.spawn(async move {
                        crate::record::publish::publish_dir(&media, manifest, &at_dir, &files).await;
                    });
                };
                self.rec_gen += 1;
                let gen = self.rec_gen;
                // `recording-2026-12-06T08-30-00Z`: what the files are called in the library.
                let at = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(*since_ms).unwrap_or(0));
                let prefix = format!("recording-{}", humantime::format_rfc3339_seconds(at)).replace(':', "-");
                let started = manifest.write(&dir).and_then(|()| {
                    Writer::start(gen, prefix, dir, cfg, self.cfg.recording_queue, self.rec_tx.clone(), done)
                });
                match started {
                    Ok(w) => self.rec = Some(w),
                    Err(e) => {
                        tracing::warn!(gid = self.gid, error = %e, "recording storage failed: the recording stops");
                        crate::metrics::metrics().recording_failures.inc();
                        // Handed to the engine at once (it made no writer to ask).
                        self.failed_start = true;
                    }
                }
            }
            RecordOut::Stop { reason } => {
                *self.shared.recording.lock().expect("recording lock") =
                    chorus_proto::call::CallRecording { reason: Some(*reason), ..Default::default() };
                if let Some(w) = self.rec.take() {
                    w.send(out);
                }
            }
            _ => {
                if let Some(w) = &self.rec {
                    w.send(out);
                }
            }
        }
    }

    /// Queues a frame for a session. A session whose queue is full (it stopped reading) is marked
    /// slow and handed to the engine to be taken out of the call; the queue's last slot is kept
    /// for the `left` that tells it so.
    fn deliver(&mut self, to: SinkId, json: FrameText, last_slot: bool) {
        let Some(s) = self.sinks.get_mut(&to) else { return };
        if last_slot {
            let _ = s.tx.try_send(json);
            return;
        }
        if s.slow {
            return;
        }
        if s.tx.capacity() > 1 && s.tx.try_send(json).is_ok() {
            return;
        }
        if s.tx.is_closed() {
            return; // the session is gone; the room's sweep removes it
        }
        s.slow = true;
        self.slow.push(to);
    }
}

/// Counts one call request answered (`chorus_call_request_seconds`): how long it waited in the
/// room's queue and was handled.
fn answered(queued: Instant) {
    crate::metrics::metrics().call_request_seconds.observe(queued.elapsed().as_secs_f64());
}
