//! The public handle of a call: [`Call`], what users of this crate hold.
//!
//! Every method either sends a [`Cmd`] to the call task (`driver.rs`) and, when the server
//! answers, waits for that answer (up to [`CallOptions::reply_timeout`]), or reads what the task
//! shares ([`Shared`]: statistics, roster, permissions) or sends (the [`CallNotice`]s). Nothing
//! here touches a socket or a peer connection.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use chorus_proto::call::{AdminAction, CallEvent, CallParticipant, CallPermissions, CallStream};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::GroupId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::driver::{self, Cmd, Reply, Shared};
use super::{install_crypto, refused, CallError, CallNotice, CallOptions, CallStats, Joined, Leg, PublishOptions};
use crate::Connection;

/// A joined group call. See the [module docs](super).
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

impl Call {
    /// Joins the call of group `gid` over `conn` (sends `call_join`, waits for `call_joined`)
    /// and starts the call task. On a refusal the connection is dropped.
    pub async fn join(mut conn: Connection, gid: i64, options: CallOptions) -> Result<Call, CallError> {
        install_crypto();
        let rid = conn.rid();
        conn.send(&ClientFrame::CallJoin { rid: Some(rid.clone()), gid: GroupId(gid) }).await?;
        let frame = conn
            .expect(options.reply_timeout, |f| match f {
                ServerFrame::CallJoined { rid: r, .. } | ServerFrame::Error { rid: r, .. } => {
                    r.as_deref() == Some(rid.as_str())
                }
                _ => false,
            })
            .await?;
        let joined = match frame {
            ServerFrame::CallJoined {
                gid, address, permissions, settings, participants, recording, audience, ..
            } => Joined { gid: gid.get(), address, permissions, settings, participants, recording, audience },
            ServerFrame::Error { code, message, .. } => return Err(refused(code, message)),
            other => return Err(anyhow!("unexpected answer to call_join: {other:?}").into()),
        };

        let started = driver::start(conn, &joined, &options).await?;
        Ok(Call {
            joined,
            cmds: started.cmds,
            notices: started.notices,
            buffered: VecDeque::new(),
            shared: started.shared,
            task: started.task,
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

    /// The local address of a peer connection: its UDP socket's, or with
    /// [`Transport::Tcp`](super::Transport::Tcp) its TCP connection's (port 0 until that
    /// connection is up).
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

    /// Restarts ICE on both peer connections now (`call_restart`): new credentials, new
    /// checks; DTLS and media go on. The task also does this by itself when a connection stays
    /// disconnected ([`CallOptions::recover`]).
    pub async fn restart_ice(&self) -> Result<(), CallError> {
        self.ask(Cmd::RestartIce).await
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

    /// Moves both peer connections to new UDP ports, as a NAT that rebinds (a home router's
    /// mapping expired, a phone changed network behind carrier NAT) does: each leg's socket is
    /// replaced by a new one on the same IP and a new port and the old one is closed, while the
    /// peer connections carry on unaware (they keep their host candidate). From then on the
    /// server sees this client's media and ICE checks come from new addresses, and must follow
    /// them to keep the call. Returns the new local addresses by [`Leg`](super::Leg). Only with
    /// [`Transport::Udp`](super::Transport::Udp).
    pub async fn rebind_udp(&self) -> Result<[SocketAddr; 2], CallError> {
        self.ask(Cmd::Rebind).await
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
        self.wait_take(timeout, |n| if pred(&n) { Ok(n) } else { Err(n) }).await
    }

    /// Waits for the first call event matching `pred` (see [`Call::wait_for`]).
    pub async fn wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&CallEvent) -> bool,
    ) -> Result<CallEvent, CallError> {
        self.wait_take(timeout, |n| match n {
            CallNotice::Event(e) if pred(&e) => Ok(e),
            other => Err(other),
        })
        .await
    }

    /// Offers each notice (buffered first, then as they arrive) to `take`, which keeps the first
    /// it wants (`Ok`) and gives back the others (`Err`), which stay buffered in order.
    async fn wait_take<T>(
        &mut self,
        timeout: Duration,
        mut take: impl FnMut(CallNotice) -> Result<T, CallNotice>,
    ) -> Result<T, CallError> {
        let mut earlier = std::mem::take(&mut self.buffered).into_iter();
        while let Some(n) = earlier.next() {
            match take(n) {
                Ok(t) => {
                    self.buffered.extend(earlier);
                    return Ok(t);
                }
                Err(n) => self.buffered.push_back(n),
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.notices.recv()).await {
                Ok(Some(n)) => match take(n) {
                    Ok(t) => return Ok(t),
                    Err(n) => self.buffered.push_back(n),
                },
                Ok(None) => return Err(anyhow!("the call ended before the awaited notice").into()),
                Err(_) => {
                    return Err(anyhow!("timed out after {timeout:?}; unmatched notices: {:?}", self.buffered).into())
                }
            }
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
