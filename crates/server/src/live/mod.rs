//! WHIP ingest (RFC 9725) and WHEP playback (draft-ietf-wish-whep) for a group's call.
//!
//! A WHIP or WHEP session is a participant of the group's call whose signaling comes over HTTP
//! instead of the WebSocket: [`Live`] joins it through [`Calls::enter_http`] under a negative
//! user id and its own address (`<owner>~whip<n>`, `<owner>~whep<n>`), then asks the room what a
//! WebSocket client would (`call_publish`, `call_subscribe`, `call_answer`). A driver task per
//! session owns its [`CallSession`]: it drains the frames the room sends it (a WHEP viewer's one
//! subscribe offer is taken from them), carries out PATCH and DELETE, and ends the session when
//! the room lets the participant go (DELETE, its peer connection timed out, its backing member
//! or key was removed). The HTTP side is `http::live`.
//!
//! * WHIP publishes stream 0 (a camera) with the offer's audio and video; the publisher may
//!   publish and nothing else. A user token needs *publish* in the group; a stream key
//!   ([`keys`]) publishes as the key's label.
//! * Public viewing: a group with `public_viewing` on lets a WHEP player in without a token
//!   ([`Credential::Public`], `public~whep<n>`); its session URL is then its only key, and it
//!   leaves when public viewing is turned off.
//! * WHEP uses the counter-offer form of the draft: the room offers (it always does on the
//!   subscribe connection), so a POST is answered `406` with the server's offer and the player
//!   PATCHes its answer. The viewer receives one published stream (the first in the roster, or
//!   `?address=&sid=`), subscribed to before the offer is made; it may subscribe and list.

pub mod keys;
pub mod sdp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::call::PublishRequest;
use chorus_proto::ws::{ClientFrame, IceServer, ServerFrame};
use chorus_sfu::Permissions;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::Accounts;
use crate::call::{CallSession, Calls, HttpLeg};
use crate::config::Config;
use crate::error::ApiError;
use crate::groups::{Actor, Groups};
use crate::limiter::WindowLimiter;

/// How long a WHEP POST waits for the room's offer.
const OFFER_WAIT: Duration = Duration::from_secs(5);

/// Whether a session publishes (WHIP) or plays (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Whip,
    Whep,
}

/// An HTTP error of WHIP/WHEP: its status, and a reason (sent as RFC 9457 problem details).
#[derive(Debug)]
pub struct LiveError {
    pub status: u16,
    pub detail: String,
    /// Seconds for `Retry-After` (409 when nothing is live, 429).
    pub retry_after: Option<u64>,
}

impl LiveError {
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        LiveError { status, detail: detail.into(), retry_after: None }
    }
}

impl From<ApiError> for LiveError {
    fn from(e: ApiError) -> Self {
        LiveError::new(e.code.http_status(), e.message)
    }
}

/// Who a POST acts for.
pub enum Credential {
    /// A user token: the user's id, address and name.
    User { uid: i64, address: String, name: String },
    /// A stream key of the group: its id and label.
    Key { id: i64, label: String },
    /// No token, for a WHEP viewer of a group with public viewing on.
    Public,
}

/// What a created session answers.
pub struct Created {
    pub id: String,
    pub etag: String,
    pub sdp: String,
    pub ice_servers: Vec<IceServer>,
}

/// A participant just joined over HTTP.
struct Entered {
    id: String,
    address: String,
    call: CallSession,
    joined: ServerFrame,
}

/// What the handlers ask a session's driver.
enum Op {
    /// Trickle or ICE restart (`sdp` set: the offer with the new credentials).
    Reoffer(String, oneshot::Sender<Result<String, LiveError>>),
    /// WHEP: the player's answer.
    Answer(String, oneshot::Sender<Result<(), LiveError>>),
    /// A call request, answered as the room answers it.
    Request(ClientFrame, oneshot::Sender<ServerFrame>),
    End,
}

/// A live WHIP/WHEP session.
struct Session {
    kind: Kind,
    gid: i64,
    /// Hash of the bearer token that created it: PATCH and DELETE must present the same. `None`
    /// for a public viewer's session: its unguessable URL is its only key.
    bearer: Option<String>,
    key_id: Option<i64>,
    /// The current ICE session's ETag (the server's ICE ufrag, quoted).
    etag: String,
    /// WHIP: the offer as last accepted (for an ICE restart's new offer).
    offer: String,
    /// WHEP: the player answered the offer.
    answered: bool,
    ops: mpsc::Sender<Op>,
}

/// The WHIP/WHEP service.
pub struct Live {
    calls: Arc<Calls>,
    groups: Arc<Groups>,
    accounts: Arc<Accounts>,
    pub keys: keys::StreamKeys,
    limiter: WindowLimiter,
    sessions: Mutex<HashMap<String, Session>>,
    next: AtomicU64,
    /// What starts every session id: in a cluster `<node_id>.`, so that any node finds the
    /// session's node; else nothing.
    session_prefix: String,
}

fn bearer_hash(token: &str) -> String {
    crate::auth_token::hash(&["live-bearer", token])
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// An error frame of the room as an HTTP error (a bad offer is 400, as the room says).
fn frame_error(f: ServerFrame) -> LiveError {
    match f {
        ServerFrame::Error { code, message, .. } => LiveError::new(code.http_status(), message),
        other => {
            tracing::warn!(frame = ?other, "unexpected answer from the call");
            LiveError::new(500, "unexpected answer from the call")
        }
    }
}

impl Live {
    pub fn new(
        cfg: &Config,
        db: crate::db::Db,
        calls: Arc<Calls>,
        groups: Arc<Groups>,
        accounts: Arc<Accounts>,
        session_prefix: Option<String>,
    ) -> Self {
        Live {
            session_prefix: session_prefix.unwrap_or_default(),
            calls,
            groups,
            accounts,
            keys: keys::StreamKeys::new(db, cfg.max_stream_keys),
            limiter: WindowLimiter::new(cfg.live_requests_per_minute, Duration::from_secs(60)),
            sessions: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// Counts a POST, PATCH or DELETE of `ip` (429 past `live_requests_per_minute`).
    pub fn rate(&self, ip: std::net::IpAddr) -> Result<(), LiveError> {
        if self.limiter.hit(&crate::limiter::ip_key(ip), Instant::now()) {
            return Ok(());
        }
        crate::metrics::metrics().rate_limited.inc();
        Err(LiveError {
            status: 429,
            detail: "too many WHIP/WHEP requests; try again later".into(),
            retry_after: Some(60),
        })
    }

    /// Resolves a POST's bearer token for group `gid`: a user token, else a stream key of
    /// `gid` (WHIP only). A wrong or revoked one is 401.
    pub async fn credential(&self, gid: i64, token: Option<&str>, kind: Kind) -> Result<Credential, LiveError> {
        let Some(token) = token else {
            if kind == Kind::Whep && self.groups.get(gid, Actor::Admin).await.is_ok_and(|g| g.public_viewing) {
                return Ok(Credential::Public);
            }
            return Err(LiveError::new(401, "an Authorization: Bearer token is required"));
        };
        if let Ok(u) = self.accounts.authenticate(token).await {
            return Ok(Credential::User { uid: u.uid.get(), address: u.address, name: u.name });
        }
        if kind == Kind::Whip && token.starts_with("sk_") {
            if let Some((id, key_gid, label)) = self.keys.find(token).await? {
                if key_gid == gid {
                    return Ok(Credential::Key { id, label });
                }
            }
        }
        Err(LiveError::new(401, "the token or stream key is not valid (or was revoked)"))
    }

    /// The user's right in `gid`: 404 if not a member, 403 without `publish` (WHIP) or
    /// `subscribe` (WHEP).
    async fn check_right(&self, gid: i64, uid: i64, kind: Kind) -> Result<Permissions, LiveError> {
        let g = self.groups.get(gid, Actor::User(uid)).await?;
        let m = g.membership.ok_or_else(|| LiveError::new(404, "no such group"))?;
        let p = crate::call::permissions(g.flags, m.flags, m.admin_flags);
        match kind {
            Kind::Whip if !p.publish => Err(LiveError::new(403, "you may not publish in this group's call")),
            Kind::Whep if !p.subscribe => Err(LiveError::new(403, "you may not watch this group's call")),
            _ => Ok(p),
        }
    }

    /// Joins a new HTTP participant of `kind` to `gid`'s call; returns its session id, address
    /// and call.
    async fn enter(&self, gid: i64, cred: &Credential, kind: Kind) -> Result<Entered, LiveError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let suffix = match kind {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        };
        let permissions = match kind {
            Kind::Whip => Permissions { publish: true, ..Permissions::NONE },
            Kind::Whep => Permissions { subscribe: true, list: true, ..Permissions::NONE },
        };
        let (address, name, backing) = match cred {
            Credential::User { address, name, .. } => {
                (format!("{address}~{suffix}{n}"), name.clone(), Some(address.clone()))
            }
            Credential::Key { id, label } => (format!("key{id}~{suffix}{n}"), label.clone(), None),
            Credential::Public => (format!("public~{suffix}{n}"), "Viewer".to_string(), None),
        };
        let public = matches!(cred, Credential::Public);
        let leg = HttpLeg { backing, public, permissions };
        let (call, joined) = self.calls.enter_http(gid, address.clone(), name, leg).await?;
        let id = format!("{}{}", self.session_prefix, crate::auth_token::random_token(18));
        Ok(Entered { id, address, call, joined })
    }

    /// WHIP `POST`: publishes `offer` (checked with [`sdp::whip_offer`]) as stream 0 of a new
    /// participant of `gid`'s call.
    pub async fn whip(
        self: &Arc<Self>,
        gid: i64,
        token: &str,
        cred: Credential,
        offer: String,
    ) -> Result<Created, LiveError> {
        let key_id = match &cred {
            Credential::User { uid, .. } => {
                self.check_right(gid, *uid, Kind::Whip).await?;
                None
            }
            Credential::Key { id, .. } => Some(*id),
            // `credential` gives it to WHEP players only.
            Credential::Public => return Err(LiveError::new(401, "an Authorization: Bearer token is required")),
        };
        let mids = sdp::whip_offer(&offer).map_err(|r| match r {
            sdp::Refusal::Unparsable(m) => LiveError::new(400, m),
            sdp::Refusal::Unsupported(m) => LiveError::new(422, m),
        })?;
        // A key carries one stream: a new POST with it (OBS reconnecting) replaces the old.
        if let Some(k) = key_id {
            self.end_key(k);
        }
        let Entered { id, address, call, joined } = self.enter(gid, &cred, Kind::Whip).await?;
        let ice_servers = match &joined {
            ServerFrame::CallJoined { ice_servers, .. } => ice_servers.clone(),
            _ => Vec::new(),
        };
        let req = PublishRequest {
            rid: None,
            sid: 0,
            audio: mids.audio_mid.is_some(),
            video: mids.video_mid.is_some(),
            screen: false,
            rids: mids.rids,
            height: None,
            muted: Default::default(),
            audio_mid: mids.audio_mid,
            video_mid: mids.video_mid,
            sdp: offer.clone(),
        };
        let sdp = match call.request(ClientFrame::CallPublish(req)).await {
            Ok(ServerFrame::CallPublished { sdp, .. }) => sdp,
            answer => {
                drop(call);
                self.calls.leave_http(gid, &address);
                return Err(match answer {
                    Ok(other) => frame_error(other),
                    Err(_) => LiveError::new(503, "the call ended; try again"),
                });
            }
        };
        let etag = quoted(&sdp::ice_creds(&sdp).map(|c| c.0).unwrap_or_default());
        let (ops_tx, ops_rx) = mpsc::channel(8);
        self.sessions.lock().expect("sessions lock").insert(
            id.clone(),
            Session {
                kind: Kind::Whip,
                gid,
                bearer: Some(bearer_hash(token)),
                key_id,
                etag: etag.clone(),
                offer,
                answered: true,
                ops: ops_tx,
            },
        );
        self.spawn_driver(id.clone(), address, call, ops_rx, None);
        Ok(Created { id, etag, sdp, ice_servers })
    }

    /// WHEP `POST`: a new viewer of `gid`'s call, subscribed to one published stream (the
    /// first in the roster, or `want`); answered with the server's offer (`406` form).
    pub async fn whep(
        self: &Arc<Self>,
        gid: i64,
        token: &str,
        cred: Credential,
        want: Option<(String, u32)>,
    ) -> Result<Created, LiveError> {
        if let Credential::User { uid, .. } = &cred {
            self.check_right(gid, *uid, Kind::Whep).await?;
        }
        let Entered { id, address: me, call, joined } = self.enter(gid, &cred, Kind::Whep).await?;
        let ServerFrame::CallJoined { participants, ice_servers, .. } = joined else {
            return Err(LiveError::new(500, "unexpected answer from the call"));
        };
        let (ops_tx, ops_rx) = mpsc::channel(8);
        let (offer_tx, offer_rx) = oneshot::channel();
        // From here the driver owns the participant: it leaves when `ops_tx` is dropped (any
        // error below).
        self.spawn_driver(id.clone(), me, call, ops_rx, Some(offer_tx));
        let call = ops_tx.clone();
        let stream = participants.iter().find_map(|p| {
            p.streams
                .iter()
                .find(|s| match &want {
                    Some((a, sid)) => *a == p.address && *sid == s.sid,
                    None => s.audio || s.video,
                })
                .map(|s| (p.address.clone(), *s))
        });
        let Some((address, stream)) = stream else {
            return Err(LiveError {
                status: 409,
                detail: "nothing is live in this group's call yet".into(),
                retry_after: Some(5),
            });
        };
        let sub = ClientFrame::CallSubscribe {
            rid: None,
            address,
            sid: stream.sid,
            audio: stream.audio,
            video: stream.video,
            height: None,
        };
        let (tx, rx) = oneshot::channel();
        call.send(Op::Request(sub, tx)).await.map_err(|_| LiveError::new(503, "the call ended; try again"))?;
        match rx.await {
            Ok(ServerFrame::Ok { .. }) => {}
            Ok(other) => return Err(frame_error(other)),
            Err(_) => return Err(LiveError::new(503, "the call ended; try again")),
        }
        let sdp = match tokio::time::timeout(OFFER_WAIT, offer_rx).await {
            Ok(Ok(sdp)) => sdp,
            _ => return Err(LiveError::new(503, "the call did not make an offer in time; try again")),
        };
        let etag = quoted(&sdp::ice_creds(&sdp).map(|c| c.0).unwrap_or_default());
        self.sessions.lock().expect("sessions lock").insert(
            id.clone(),
            Session {
                kind: Kind::Whep,
                gid,
                bearer: (!matches!(cred, Credential::Public)).then(|| bearer_hash(token)),
                key_id: None,
                etag: etag.clone(),
                offer: String::new(),
                answered: false,
                ops: ops_tx,
            },
        );
        Ok(Created { id, etag, sdp, ice_servers })
    }

    /// Runs a session: drains its call frames, carries out `ops`, and ends it when either side
    /// does. `offer` (WHEP) takes the first subscribe offer the room sends.
    fn spawn_driver(
        self: &Arc<Self>,
        id: String,
        address: String,
        mut call: CallSession,
        mut ops: mpsc::Receiver<Op>,
        mut offer: Option<oneshot::Sender<String>>,
    ) {
        let live = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = call.rx.recv() => match frame {
                        Some(json) => {
                            if offer.is_some() {
                                if let Ok(ServerFrame::CallOffer { sdp, .. }) = serde_json::from_str::<ServerFrame>(json.as_str()) {
                                    let _ = offer.take().map(|o| o.send(sdp));
                                }
                            }
                        }
                        None => break,
                    },
                    op = ops.recv() => match op {
                        Some(Op::Reoffer(sdp, reply)) => {
                            let r = call.reoffer(sdp);
                            tokio::spawn(async move {
                                let r = match r.await {
                                    Ok(ServerFrame::CallSdp { sdp: Some(sdp), .. }) => Ok(sdp),
                                    Ok(other) => Err(frame_error(other)),
                                    Err(_) => Err(LiveError::new(404, "the session ended")),
                                };
                                let _ = reply.send(r);
                            });
                        }
                        Some(Op::Answer(sdp, reply)) => {
                            let r = call.request(ClientFrame::CallAnswer { rid: None, sdp });
                            tokio::spawn(async move {
                                let r = match r.await {
                                    Ok(ServerFrame::Ok { .. }) => Ok(()),
                                    Ok(other) => Err(frame_error(other)),
                                    Err(_) => Err(LiveError::new(404, "the session ended")),
                                };
                                let _ = reply.send(r);
                            });
                        }
                        Some(Op::Request(frame, reply)) => {
                            let r = call.request(frame);
                            tokio::spawn(async move {
                                if let Ok(f) = r.await {
                                    let _ = reply.send(f);
                                }
                            });
                        }
                        Some(Op::End) | None => break,
                    },
                }
            }
            let gid = call.gid;
            drop(call);
            if let Some(live) = live.upgrade() {
                live.calls.leave_http(gid, &address);
                live.sessions.lock().expect("sessions lock").remove(&id);
            }
        });
    }

    /// Checks a PATCH or DELETE of session `id`: it exists (404), has `kind`, and the bearer is
    /// the one that created it (401).
    fn session_ops(&self, id: &str, kind: Kind, token: Option<&str>) -> Result<mpsc::Sender<Op>, LiveError> {
        let sessions = self.sessions.lock().expect("sessions lock");
        let s = sessions.get(id).filter(|s| s.kind == kind).ok_or_else(|| LiveError::new(404, "no such session"))?;
        if let Some(bearer) = &s.bearer {
            let token = token.ok_or_else(|| LiveError::new(401, "an Authorization: Bearer token is required"))?;
            if !crate::auth_token::ct_eq(&bearer_hash(token), bearer) {
                return Err(LiveError::new(401, "not the token that created this session"));
            }
        }
        Ok(s.ops.clone())
    }

    /// `DELETE`: ends session `id`.
    pub async fn delete(&self, id: &str, kind: Kind, token: Option<&str>) -> Result<(), LiveError> {
        let ops = self.session_ops(id, kind, token)?;
        self.sessions.lock().expect("sessions lock").remove(id);
        let _ = ops.send(Op::End).await;
        Ok(())
    }

    /// `PATCH` with a trickle-ICE fragment. `If-Match` is required (428): `*` or the current
    /// ETag (else 412). New ICE credentials in `frag` restart ICE: answered with the server's new
    /// credentials and candidates, and a new ETag; otherwise the candidates are not needed (the
    /// server is ICE-lite: it learns the client's addresses from its checks) and the answer is
    /// `None` (204).
    pub async fn patch_ice(
        &self,
        id: &str,
        kind: Kind,
        token: Option<&str>,
        if_match: Option<&str>,
        frag: &str,
    ) -> Result<Option<(String, String)>, LiveError> {
        let ops = self.session_ops(id, kind, token)?;
        let if_match = if_match.ok_or_else(|| LiveError::new(428, "If-Match is required"))?;
        let (etag, offer) = {
            let sessions = self.sessions.lock().expect("sessions lock");
            let s = sessions.get(id).ok_or_else(|| LiveError::new(404, "no such session"))?;
            (s.etag.clone(), s.offer.clone())
        };
        if if_match.trim() != "*" && if_match.trim() != etag {
            return Err(LiveError::new(412, "the ETag does not match the session's ICE session"));
        }
        let Some((ufrag, pwd)) = sdp::ice_creds(frag) else { return Ok(None) };
        let current = sdp::ice_creds(&offer).map(|c| c.0);
        if kind == Kind::Whep {
            // The player's ICE restart needs a new offer from the server: not supported.
            return Err(LiveError::new(422, "ICE restart is not supported on WHEP sessions; start a new session"));
        }
        if current.as_deref() == Some(ufrag.as_str()) {
            return Ok(None);
        }
        let new_offer = sdp::with_ice_creds(&offer, &ufrag, &pwd);
        let (tx, rx) = oneshot::channel();
        ops.send(Op::Reoffer(new_offer.clone(), tx)).await.map_err(|_| LiveError::new(404, "no such session"))?;
        let answer = rx.await.map_err(|_| LiveError::new(404, "the session ended"))??;
        let etag = quoted(&sdp::ice_creds(&answer).map(|c| c.0).unwrap_or_default());
        if let Some(s) = self.sessions.lock().expect("sessions lock").get_mut(id) {
            s.etag = etag.clone();
            s.offer = new_offer;
        }
        Ok(Some((etag, sdp::answer_fragment(&answer))))
    }

    /// WHEP `PATCH` with the player's SDP answer to the server's offer (once).
    pub async fn whep_answer(&self, id: &str, token: Option<&str>, answer: String) -> Result<(), LiveError> {
        let ops = self.session_ops(id, Kind::Whep, token)?;
        {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            let s = sessions.get_mut(id).ok_or_else(|| LiveError::new(404, "no such session"))?;
            if s.answered {
                return Err(LiveError::new(409, "the offer was already answered"));
            }
            s.answered = true;
        }
        let (tx, rx) = oneshot::channel();
        ops.send(Op::Answer(answer, tx)).await.map_err(|_| LiveError::new(404, "no such session"))?;
        let r = rx.await.map_err(|_| LiveError::new(404, "the session ended"))?;
        if r.is_err() {
            if let Some(s) = self.sessions.lock().expect("sessions lock").get_mut(id) {
                s.answered = false;
            }
        }
        r
    }

    /// Ends the WHIP session carried by stream key `key_id`, if any (revoked or replaced).
    pub fn end_key(&self, key_id: i64) {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let ids: Vec<String> =
            sessions.iter().filter(|(_, s)| s.key_id == Some(key_id)).map(|(id, _)| id.clone()).collect();
        for id in ids {
            if let Some(s) = sessions.remove(&id) {
                let _ = s.ops.try_send(Op::End);
            }
        }
    }

    /// Live sessions of `gid` (for tests and the admin view).
    pub fn sessions_of(&self, gid: i64) -> usize {
        self.sessions.lock().expect("sessions lock").values().filter(|s| s.gid == gid).count()
    }
}

impl From<sqlx::Error> for LiveError {
    fn from(e: sqlx::Error) -> Self {
        LiveError::from(ApiError::from(e))
    }
}
