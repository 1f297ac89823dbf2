//! The service: the front door of messaging.
//!
//! Every request is checked here, before it costs the writer anything: content (one of
//! text, data or file, within `max_message_bytes`), the client's message id, the send rate,
//! and the destination (the peer exists, the sender may post to the group). A request that
//! passes goes to the [writer](super::writer) as a [`WriteOp`], carrying what the checks
//! found (the resolved destination, the parsed content and its stored form), and its
//! answer comes back after the commit. Reads are in [`super::queries`].

use std::num::NonZeroU32;
use std::sync::Arc;

use chorus_proto::ws::SessionUser;
use chorus_proto::ErrorCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{mpsc, oneshot};

use super::writer::{self, ChangeOp, Dest, SendOp, WatermarkOp, WriteOp};
use super::{Content, SendTicket, SentInfo, Target};
use crate::accounts::Accounts;
use crate::bus::FanOut;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::groups::Groups;

/// The messaging service.
pub struct Messaging {
    pub(super) db: Db,
    pub(super) cfg: Arc<Config>,
    pub(super) groups: Arc<Groups>,
    pub(super) accounts: Arc<Accounts>,
    bus: Arc<dyn FanOut>,
    writer: mpsc::Sender<WriteOp>,
    send_rate: DefaultKeyedRateLimiter<i64>,
    /// Files in messages: the sender's finished uploads.
    media: Arc<crate::media::Media>,
}

/// A message body as stored: one of text, data or file, at most `max_bytes` of JSON.
pub(crate) fn encode_content(c: &Content, max_bytes: usize) -> ApiResult<String> {
    if c.text.is_none() && c.data.is_none() && c.file.is_none() {
        return Err(ApiError::bad_request("a message needs text, data or a file"));
    }
    if let Some(f) = &c.file {
        if f.url.is_empty() || f.url.len() > 2048 {
            return Err(ApiError::bad_request("file.url must be 1 to 2048 characters"));
        }
    }
    let body = serde_json::to_string(c).map_err(ApiError::internal)?;
    if body.len() > max_bytes {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("message is {} bytes; the limit is {}", body.len(), max_bytes),
        ));
    }
    Ok(body)
}

/// A client's message id: 1 to 64 printable characters.
pub(crate) fn check_client_id(client_id: &str) -> ApiResult<()> {
    if client_id.is_empty() || client_id.len() > 64 || client_id.chars().any(char::is_control) {
        return Err(ApiError::bad_request("id must be 1 to 64 printable characters"));
    }
    Ok(())
}

impl Messaging {
    /// Builds the service and starts its writer task.
    pub fn start(
        db: Db,
        cfg: Arc<Config>,
        groups: Arc<Groups>,
        accounts: Arc<Accounts>,
        bus: Arc<dyn FanOut>,
        hooks: Arc<crate::webhooks::Webhooks>,
        media: Arc<crate::media::Media>,
    ) -> Arc<Self> {
        let quota = Quota::per_second(NonZeroU32::new(cfg.sends_per_second).expect("validated positive"))
            .allow_burst(NonZeroU32::new(cfg.send_burst.max(1)).expect("max(1) is positive"));
        let svc = Arc::new(Messaging {
            db: db.clone(),
            cfg,
            groups: groups.clone(),
            accounts,
            bus: bus.clone(),
            writer: writer::start(db, groups, bus, hooks),
            send_rate: RateLimiter::keyed(quota),
            media,
        });
        // Forget the send-rate state of users who stopped sending.
        let weak = Arc::downgrade(&svc);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(svc) = weak.upgrade() else { return };
                svc.send_rate.retain_recent();
                svc.send_rate.shrink_to_fit();
            }
        });
        svc
    }

    /// The fan-out bus.
    pub fn bus(&self) -> &Arc<dyn FanOut> {
        &self.bus
    }

    /// A user's address by uid (`None`: no such user).
    pub async fn address_of(&self, uid: i64) -> crate::error::ApiResult<Option<String>> {
        self.accounts.address_of(uid).await
    }

    /// The group service.
    pub fn groups(&self) -> &Arc<Groups> {
        &self.groups
    }

    /// The user at `address`, if `from` may send them 1:1 messages (the rule of `send` to a
    /// `peer`: an active user other than yourself). 1:1 calls use the same rule.
    pub async fn peer(&self, from: &SessionUser, address: &str) -> ApiResult<SessionUser> {
        match self.resolve(from, &Target::Peer(address.to_string())).await? {
            Dest::Peer(u) => Ok(u),
            Dest::Group(..) => Err(ApiError::bad_request("not a user")),
        }
    }

    /// Resolves and permission-checks a destination for `from`.
    async fn resolve(&self, from: &SessionUser, target: &Target) -> ApiResult<Dest> {
        match target {
            Target::Peer(addr) => match self.accounts.by_address(addr).await? {
                Some(u) if u.uid != from.uid => Ok(Dest::Peer(u)),
                Some(_) => Err(ApiError::bad_request("cannot message yourself")),
                None => Err(ApiError::not_found(format!("no user with address {addr:?}"))),
            },
            Target::Group(gid) => {
                let policy = self.groups.policy(*gid).await?.ok_or_else(|| ApiError::not_found("no such group"))?;
                if !policy.can_send(from.uid.get()) {
                    return Err(ApiError::forbidden("you may not send messages to this group"));
                }
                Ok(Dest::Group(*gid, policy))
            }
        }
    }

    /// Validates content against the size limit and returns its stored form.
    fn encode(&self, c: &Content) -> ApiResult<String> {
        encode_content(c, self.cfg.max_message_bytes)
    }

    /// Sends a message. Retrying with the same `client_id` returns the first result.
    pub async fn send(
        &self,
        from: &SessionUser,
        target: &Target,
        client_id: &str,
        mtype: u32,
        content: &Content,
        origin: u64,
    ) -> ApiResult<SentInfo> {
        self.enqueue_send(from, target, client_id, mtype, content, origin).await?.wait().await
    }

    /// Checks a send and queues it to the writer without waiting for the
    /// commit, so one connection can have several sends in flight (they are
    /// stored in the order they were queued).
    pub async fn enqueue_send(
        &self,
        from: &SessionUser,
        target: &Target,
        client_id: &str,
        mtype: u32,
        content: &Content,
        origin: u64,
    ) -> ApiResult<SendTicket> {
        check_client_id(client_id)?;
        let attached = self.attach(from.uid.get(), content).await;
        let content = match &attached {
            Ok(Some(c)) => c,
            Ok(None) => content,
            Err(_) => content,
        };
        let checked = async {
            if let Err(e) = &attached {
                return Err(e.clone());
            }
            let body = self.encode(content)?;
            self.take_send_slot(from.uid.get())?;
            Ok((body, self.resolve(from, target).await?))
        };
        let (body, dest) = match checked.await {
            Ok(ok) => ok,
            // A retry of a stored message gets the first answer, whatever limits say
            // now. (Retries that pass the checks are recognised by the writer.)
            Err(e) => match self.stored(from.uid.get(), client_id).await? {
                Some(info) => return Ok(SendTicket::Done(info)),
                None => return Err(e),
            },
        };
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Send(SendOp {
            from: from.clone(),
            dest,
            client_id: client_id.to_string(),
            mtype,
            content: content.clone(),
            body,
            origin,
            reply,
        });
        self.writer.send(op).await.map_err(|_| ApiError::internal("message writer stopped"))?;
        Ok(SendTicket::Queued(rx))
    }

    /// A message carrying a stored file (`file.upload`): the upload must be the sender's and
    /// finished; the reference is filled from it (`url`, `name`, `size`, `mime`, `filetype`),
    /// whatever the client said. `None` when there is no stored file.
    async fn attach(&self, uid: i64, content: &Content) -> ApiResult<Option<Content>> {
        let Some(id) = content.file.as_ref().and_then(|f| f.upload.as_deref()) else { return Ok(None) };
        let up = self.media.finished_upload(uid, id).await.map_err(|e| match e.code {
            ErrorCode::NotFound => ApiError::bad_request(format!("file.upload {id:?} is not an upload of yours")),
            _ => e,
        })?;
        let mut c = content.clone();
        if let Some(f) = c.file.as_mut() {
            let mime = up.mime.clone().unwrap_or_else(|| "application/octet-stream".into());
            f.filetype = Some(match mime.split('/').next() {
                Some("image") => 1,
                Some("video") => 2,
                Some("audio") => 3,
                _ => 10,
            });
            f.url = format!("/v1/files/{}/content", up.id);
            f.name = Some(up.name);
            f.size = Some(up.size);
            f.mime = Some(mime);
        }
        Ok(Some(c))
    }

    /// Counts one fan-out-causing request of `uid` against the send rate (`sends_per_second`,
    /// `send_burst`): sends, edits, deletes and reads share it.
    fn take_send_slot(&self, uid: i64) -> ApiResult<()> {
        if self.send_rate.check_key(&uid).is_err() {
            return Err(ApiError::rate_limited("sending too fast; slow down"));
        }
        Ok(())
    }

    /// Edits (`Some`) or deletes (`None`) one of the user's own messages. Counts against the
    /// send rate: each one is fanned out to the conversation like a send.
    pub async fn change(&self, from: &SessionUser, mid: i64, content: Option<Content>, origin: u64) -> ApiResult<()> {
        if let Some(c) = &content {
            self.encode(c)?;
        }
        self.take_send_slot(from.uid.get())?;
        let (reply, rx) = oneshot::channel();
        let op = WriteOp::Change(ChangeOp { from: from.clone(), mid, content, origin, reply });
        self.writer.send(op).await.map_err(|_| ApiError::internal("message writer stopped"))?;
        rx.await.map_err(|_| ApiError::internal("message writer dropped a request"))?
    }

    /// Records that `user` has had a conversation delivered (or read) up to
    /// `seq`. Reads wait for the commit; delivery acks do not.
    ///
    /// Reads count against the send rate: the client names any `seq`, so without it one user
    /// could walk a long history one message at a time, each step a writer request and a
    /// receipt. Delivery acks do not: a session acks only messages it received, at most one
    /// watermark per conversation per `ack`, so their receipts are bounded by the messages
    /// others sent (and counting them would starve a busy reader's own sends).
    pub async fn watermark(&self, user: &SessionUser, conv_id: i64, seq: i64, read: bool) -> ApiResult<()> {
        if read {
            self.take_send_slot(user.uid.get())?;
        }
        let (tx, rx) = if read {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let op = WriteOp::Watermark(WatermarkOp { user: user.clone(), conv_id, seq, read, reply: tx });
        self.writer.send(op).await.map_err(|_| ApiError::internal("message writer stopped"))?;
        match rx {
            Some(rx) => rx.await.map_err(|_| ApiError::internal("message writer dropped a request"))?,
            None => Ok(()),
        }
    }

    /// Recipients of typing in a conversation (online-ness is the bus's business).
    /// Returns the users, and the `peer` / `gid` the typing frame names.
    pub async fn typing_audience(
        &self,
        user: &SessionUser,
        target: &Target,
    ) -> ApiResult<(Vec<i64>, Option<String>, Option<i64>)> {
        match self.resolve(user, target).await? {
            Dest::Peer(p) => Ok((vec![p.uid.get()], Some(p.address), None)),
            Dest::Group(gid, policy) => {
                if policy.members.len() > self.cfg.presence_max_group {
                    return Ok((vec![], None, Some(gid)));
                }
                Ok((policy.receivers().filter(|u| *u != user.uid.get()).collect(), None, Some(gid)))
            }
        }
    }
}
