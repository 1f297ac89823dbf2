//! Group calls: join a call, publish synthetic camera and microphone, receive and measure.
//!
//! # Model
//!
//! A [`Call`] takes over a messaging [`Connection`](crate::Connection) and runs one tokio task
//! that owns it, two UDP sockets and two str0m [`Rtc`](str0m::Rtc)s, each negotiated in one
//! direction only (see `chorus_proto::call`):
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
//! [`Call::rebind_udp`] moves both UDP sockets to new ports under a running call, as a NAT
//! rebinding does, to test that the server follows a peer whose address changes.
//!
//! **Recovery** ([`CallOptions::recover`], on by default; protocol.md §15.10): a leg
//! ICE-disconnected for 2 s gets an ICE restart (`call_restart`, at most one per 5 s;
//! [`Call::restart_ice`] forces one), and when the server takes the session out as `lost` (its
//! connections silent past the peer timeout) the task joins the call again on the same
//! WebSocket with new peer connections, publishes its streams again (same sids and options) and
//! subscribes again to what it received ([`CallNotice::Rejoined`]). The WebSocket itself is not
//! reconnected: if it closes, the call ends.
//!
//! Own mutes ([`Call::mute`]) stop sending the muted media, as a browser would; an admin mute
//! does not: the server must enforce it.
//!
//! Messaging frames that arrive while the call runs are dropped; [`Call::leave`] hands the
//! connection back.
//!
//! # Files
//!
//! The call is three layers, each in its own file, so the intricate part (what the `call_*`
//! frames do) can be tested without sockets or sleeps:
//!
//! * `handle.rs`, the public handle [`Call`]: what users of this crate call. Its methods send
//!   commands to the call task and wait for the answer; it reads the state the task shares
//!   (statistics, roster) and the notices it sends.
//! * `driver.rs`, the call task: the I/O edge. It owns the messaging connection, the sockets
//!   (or TCP links), the two str0m [`Rtc`](str0m::Rtc)s, the channels to the handle and the
//!   clock; it drives the Rtcs, writes the synthetic media and records the statistics.
//! * `signal.rs`, the signalling as a sans-IO state machine: requests and their replies, the
//!   publish negotiation, answering the server's offers, the roster, automatic subscriptions,
//!   leaving. No tokio, no socket, no clock: inputs in (`handle_input`), outputs out
//!   (`poll_output`), and its tests drive it by hand against a str0m peer.
//! * [`media`] (synthetic frames), [`stats`] (what was received and sent), [`shaper`] (the
//!   emulated downlink) and [`tcp`] (ICE-TCP links) are the driver's helpers.
//!
//! ## The drain contract
//!
//! The driver feeds the signalling machine one input at a time (a command of the handle, a
//! frame from the server, the WebSocket closing) and then drains every output in order before
//! it waits for anything else, as str0m's own `poll_output` asks. The one output that needs an
//! answer is `Send`: the driver sends the frame and reports the result (`Sent`) before it
//! polls the next output, because what a request leaves behind (a reply awaited, a stream
//! stopped) depends on whether it left.
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

mod driver;
mod handle;
pub mod media;
pub mod shaper;
mod signal;
pub mod stats;
pub mod tcp;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Once;
use std::time::Duration;

use chorus_proto::call::{CallEvent, CallMute, CallParticipant, CallPermissions, CallSettings, CallTrack};
use chorus_proto::error::ErrorCode;

pub use handle::Call;
pub use stats::{CallStats, Kind, LatencyHistogram, LegState, MediaPath, SentStats, SetupSteps, TrackKey, TrackStats};

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
    /// Recover the call by itself (protocol.md §15.10): an ICE restart when a leg has been
    /// disconnected for 2 s, and joining again (same streams, same subscriptions) when the
    /// server takes the session out as `lost`. On by default.
    pub recover: bool,
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
            recover: true,
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
    /// Synthetic frames (exact bitrates, not decodable) or real VP8 a browser shows.
    pub video_kind: media::VideoKind,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            audio: true,
            video: true,
            screen: false,
            layers: 3,
            height: 720,
            muted: CallMute::default(),
            video_kind: media::VideoKind::Synthetic,
        }
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
    /// A 1:1 call changed (`call_status`, see [`crate::direct`]).
    Status(chorus_proto::direct::DirectCallUpdate),
    /// A page of the audience of a live call, asked for with a `call_audience` request
    /// ([`Call::request`]).
    Audience {
        /// Audience members in the call.
        count: u32,
        /// This page.
        members: Vec<chorus_proto::call::CallAudienceMember>,
        /// The cursor of the next page.
        next: Option<u64>,
    },
    /// The server took this session out as `lost` and it joined the call again with new
    /// peer connections ([`CallOptions::recover`]); its streams are being published again.
    Rejoined,
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
    /// The call is being recorded (by whom, since when); `None` when it is not.
    pub recording: Option<chorus_proto::call::CallRecording>,
    /// Live mode: how many were in the audience at join (`None` when the call is not live).
    pub audience: Option<u32>,
}

fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

fn refused(code: ErrorCode, message: String) -> CallError {
    CallError::Refused { code, message }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use str0m::media::{Direction, Simulcast, SimulcastLayer};
    use str0m::{Candidate, Rtc};

    use super::media::RIDS;
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
