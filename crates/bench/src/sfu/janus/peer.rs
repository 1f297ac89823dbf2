//! The benchmark's side of each Janus peer connection: one str0m [`Rtc`] and one UDP socket
//! (bound on the load's address, announced as the only host candidate), driven by one task,
//! as `chorus_client::call` drives its two connections.
//!
//! A publisher's connection sends the same synthetic camera (3-layer VP8 simulcast written per
//! rid) and microphone, paced the same way, and honours keyframe requests per layer; a
//! subscriber's connection counts every received frame in a [`TrackStats`] per (publisher,
//! medium).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chorus_client::call::media::{self, AudioSource, VideoSource, AUDIO_FRAME_MS, RIDS, VIDEO_FPS};
use chorus_client::call::stats::{is_rtp, INGRESS_STATS_INTERVAL};
use chorus_client::call::{SetupSteps, TrackStats};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::sfu::Medium;

/// RFC 6464 level of a silent microphone (the Chorus run's publishers do not speak either).
const SILENT_DBOV: i8 = -127;

/// What every subscriber has received, per (publisher index, medium).
pub type Received = Arc<Mutex<BTreeMap<(usize, Medium), TrackStats>>>;

/// How a subscriber's connection came up (its offer is noted by the caller, the rest here).
pub type Setup = Arc<Mutex<SetupSteps>>;

/// One peer connection before its task starts.
pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
}

impl Peer {
    /// A connection with its UDP socket on `bind` (port 0) as host candidate; `ingress_stats`
    /// turns on str0m's receive statistics.
    pub async fn new(bind: IpAddr, ingress_stats: bool) -> anyhow::Result<Peer> {
        let mut b = Rtc::builder();
        if ingress_stats {
            b = b.set_stats_interval(Some(INGRESS_STATS_INTERVAL));
        }
        let mut rtc = b.build(Instant::now());
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0)).await.context("binding a UDP socket")?;
        let local = socket.local_addr()?;
        let c = Candidate::host(local, "udp").map_err(|e| anyhow!("host candidate {local}: {e}"))?;
        rtc.add_local_candidate(c);
        Ok(Peer { rtc, socket, local })
    }

    /// The publish offer: Opus send-only, then VP8 send-only with the three simulcast rids
    /// (lowest first). Returns the SDP, what accepts the answer, and the two mids.
    pub fn publish_offer(&mut self) -> anyhow::Result<(String, SdpPendingOffer, Mid, Mid)> {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, Some("cam".into()), Some("a0".into()), None);
        let mut s = Simulcast::new();
        for rid in RIDS {
            s.add_send_layer(SimulcastLayer::new(rid));
        }
        let video =
            api.add_media(MediaKind::Video, Direction::SendOnly, Some("cam".into()), Some("v0".into()), Some(s));
        let (offer, pending) = api.apply().ok_or_else(|| anyhow!("str0m produced no offer"))?;
        Ok((offer.to_sdp_string(), pending, audio, video))
    }

    /// Accepts Janus's answer to [`Peer::publish_offer`]; returns the Opus and VP8 payload types.
    pub fn accept_answer(
        &mut self,
        pending: SdpPendingOffer,
        sdp: &str,
        audio: Mid,
        video: Mid,
    ) -> anyhow::Result<(Pt, Pt)> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| anyhow!("bad SDP answer: {e}"))?;
        self.rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow!("answer not accepted: {e}"))?;
        let mut pt = |mid: Mid, codec: Codec| -> anyhow::Result<Pt> {
            let w = self.rtc.writer(mid).ok_or_else(|| anyhow!("no writer for mid {mid}"))?;
            let pt = w.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt());
            pt.ok_or_else(|| anyhow!("no {codec:?} in Janus's answer"))
        };
        Ok((pt(audio, Codec::Opus)?, pt(video, Codec::Vp8)?))
    }

    /// Accepts Janus's subscribe offer; returns the SDP answer.
    pub fn accept_offer(&mut self, sdp: &str) -> anyhow::Result<String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| anyhow!("bad SDP offer: {e}"))?;
        let answer = self.rtc.sdp_api().accept_offer(offer).map_err(|e| anyhow!("offer not accepted: {e}"))?;
        Ok(answer.to_sdp_string())
    }

    /// Starts sending the synthetic camera and microphone on `audio` / `video`.
    pub fn spawn_publisher(self, audio: (Mid, Pt), video: (Mid, Pt)) -> JoinHandle<()> {
        let now = Instant::now();
        let role = Role::Publisher(Box::new(Sender {
            audio,
            video,
            audio_src: AudioSource::default(),
            video_src: VideoSource::new(&media::layer_specs(3, 720)),
            next_audio: now,
            next_video: now,
            connected: false,
        }));
        tokio::spawn(Driver { peer: self, timeout: now, role }.run())
    }

    /// Starts receiving: `tracks` maps each mid to (publisher index, medium), `received` is
    /// where frames are counted, `setup` where the connection's steps are noted.
    pub fn spawn_subscriber(
        self,
        tracks: HashMap<Mid, (usize, Medium)>,
        received: Received,
        setup: Setup,
    ) -> JoinHandle<()> {
        let role = Role::Subscriber { tracks, received, unmapped: 0, setup, rtp_seen: false };
        tokio::spawn(Driver { peer: self, timeout: Instant::now(), role }.run())
    }
}

struct Sender {
    audio: (Mid, Pt),
    video: (Mid, Pt),
    audio_src: AudioSource,
    video_src: VideoSource,
    next_audio: Instant,
    next_video: Instant,
    /// DTLS is up: media may be written.
    connected: bool,
}

enum Role {
    Publisher(Box<Sender>),
    Subscriber {
        tracks: HashMap<Mid, (usize, Medium)>,
        received: Received,
        unmapped: u64,
        setup: Setup,
        rtp_seen: bool,
    },
}

struct Driver {
    peer: Peer,
    timeout: Instant,
    role: Role,
}

fn video_period() -> Duration {
    Duration::from_secs(1) / VIDEO_FPS
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            self.on_time(now);
            if !self.peer.rtc.is_alive() {
                break;
            }
            let deadline = self.deadline();
            tokio::select! {
                got = self.peer.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = got {
                        self.deliver(Instant::now(), source, &buf[..n]);
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
            }
        }
    }

    fn deadline(&self) -> Instant {
        let mut d = self.timeout.min(Instant::now() + Duration::from_millis(100));
        if let Role::Publisher(s) = &self.role {
            d = d.min(s.next_audio).min(s.next_video);
        }
        d
    }

    fn on_time(&mut self, now: Instant) {
        if let Role::Publisher(s) = &mut self.role {
            write_media(&mut self.peer.rtc, s, now);
        }
        if now >= self.timeout {
            let _ = self.peer.rtc.handle_input(Input::Timeout(now));
        }
        self.poll();
    }

    fn deliver(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let Ok(contents) = data.try_into() else { return };
        let input =
            Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: self.peer.local, contents });
        if self.peer.rtc.accepts(&input) {
            if let Err(e) = self.peer.rtc.handle_input(input) {
                tracing::debug!("janus peer input: {e}");
            }
            if let Role::Subscriber { setup, rtp_seen: seen @ false, .. } = &mut self.role {
                if is_rtp(data) {
                    *seen = true;
                    setup.lock().unwrap_or_else(|e| e.into_inner()).on_datagram(now, data);
                }
            }
            self.poll();
        }
    }

    fn poll(&mut self) {
        while self.peer.rtc.is_alive() {
            match self.peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    // UDP is lossy anyway: a full socket buffer drops the datagram.
                    let _ = self.peer.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    tracing::warn!("janus peer connection failed: {e}");
                    self.peer.rtc.disconnect();
                    break;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        if let Role::Subscriber { setup, .. } = &self.role {
            if matches!(e, Event::Connected | Event::IceConnectionStateChange(_)) {
                setup.lock().unwrap_or_else(|e| e.into_inner()).on_event(Instant::now(), &e);
            }
        }
        match (&mut self.role, e) {
            (Role::Publisher(s), Event::Connected) => s.connected = true,
            (Role::Publisher(s), Event::KeyframeRequest(r)) if r.mid == s.video.0 => {
                let layer = r.rid.and_then(|rid| RIDS.iter().position(|x| *x == &*rid));
                s.video_src.request_keyframe(layer);
            }
            (Role::Subscriber { tracks, received, unmapped, .. }, Event::MediaData(d)) => {
                let now = Instant::now();
                let now_us = media::now_us();
                let Some(&key) = tracks.get(&d.mid) else {
                    *unmapped += 1;
                    return;
                };
                let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
                let t = r.entry(key).or_default();
                t.record(now, now_us, d.data.len(), d.is_keyframe(), media::Trailer::find(&d.data));
            }
            (Role::Subscriber { tracks, received, .. }, Event::MediaIngressStats(i)) => {
                let Some(&key) = tracks.get(&i.mid) else { return };
                let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
                let t = r.entry(key).or_default();
                (t.packets, t.rtp_bytes, t.nacks) = (i.packets, i.bytes, i.nacks);
            }
            _ => {}
        }
    }
}

/// Writes the frames that are due, as `chorus_client::call` does.
fn write_media(rtc: &mut Rtc, s: &mut Sender, now: Instant) {
    if s.next_audio <= now {
        s.next_audio += Duration::from_millis(AUDIO_FRAME_MS.into());
        // After a stall, resume the cadence instead of bursting to catch up.
        if s.next_audio <= now {
            s.next_audio = now + Duration::from_millis(AUDIO_FRAME_MS.into());
        }
        if s.connected {
            let (mid, pt) = s.audio;
            let rtp_time = MediaTime::new(u64::from(s.audio_src.frame) * 960, Frequency::FORTY_EIGHT_KHZ);
            let data = s.audio_src.tick(media::now_us());
            if let Some(w) = rtc.writer(mid) {
                if let Err(e) = w.audio_level(SILENT_DBOV, false).write(pt, now, rtp_time, data) {
                    tracing::debug!("audio write: {e}");
                }
            }
        }
    }
    if s.next_video <= now {
        s.next_video += video_period();
        if s.next_video <= now {
            s.next_video = now + video_period();
        }
        if s.connected {
            let (mid, pt) = s.video;
            let rtp_time = MediaTime::new(s.video_src.ticks * 3000, Frequency::NINETY_KHZ);
            for f in s.video_src.tick(media::now_us()) {
                let Some(w) = rtc.writer(mid) else { break };
                if let Err(e) = w.rid(Rid::from(RIDS[f.layer as usize])).write(pt, now, rtp_time, f.data) {
                    tracing::debug!("video write: {e}");
                }
            }
        }
    }
}
