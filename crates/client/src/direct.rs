//! 1:1 calls: place, answer, decline and hang up over a [`Connection`].
//!
//! Ringing is plain frames on the messaging WebSocket (`call_dial`, `call_incoming`,
//! `call_status`, …; docs/protocol.md §17), so these are [`Connection`] methods. Once a call is
//! answered, the media run in its call room: [`Call::join_direct`] joins it with the session
//! that placed or answered the call, like a group call. While a [`Call`] runs, `call_status`
//! frames arrive as [`CallNotice::Status`](crate::call::CallNotice::Status).
//!
//! ```no_run
//! # async fn demo(mut conn: chorus_client::Connection) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use chorus_client::call::{Call, CallOptions};
//! use chorus_proto::direct::DirectCallStatus;
//!
//! let call = conn.dial("u2", true).await?;
//! let answered = conn.call_status(call, Duration::from_secs(45), |s| s.ended() || s == DirectCallStatus::Answered).await?;
//! if answered.status == DirectCallStatus::Answered {
//!     let media = Call::join_direct(conn, call, CallOptions::default()).await?;
//!     // publish, subscribe, … then hang up:
//!     media.hangup(call).await?;
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use anyhow::{anyhow, bail};
use chorus_proto::direct::{room_of, DirectCallStatus, DirectCallUpdate};
use chorus_proto::ws::{ClientFrame, ServerFrame};
use chorus_proto::CallId;

use crate::call::{Call, CallError, CallOptions};
use crate::Connection;

/// A call ringing on this session (`call_incoming`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The call.
    pub call: CallId,
    /// The caller's address.
    pub from: String,
    /// The caller's display name.
    pub name: String,
    /// A video call.
    pub video: bool,
}

/// A refused 1:1 call request: the error frame's code, message and Mesibo call status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectRefusal {
    /// The error code.
    pub code: chorus_proto::ErrorCode,
    /// The server's words.
    pub message: String,
    /// Mesibo's call status number (`MESIBO_CALLSTATUS_*`), when the server gave one.
    pub status: Option<u8>,
}

impl std::fmt::Display for DirectRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused ({}, status {:?}): {}", self.code.as_str(), self.status, self.message)
    }
}

impl std::error::Error for DirectRefusal {}

fn refusal(frame: ServerFrame) -> anyhow::Error {
    match frame {
        ServerFrame::Error { code, message, status, .. } => DirectRefusal { code, message, status }.into(),
        other => anyhow!("unexpected answer: {other:?}"),
    }
}

impl Connection {
    /// Calls `peer` (`call_dial`); returns the call's id once the server placed it. What
    /// follows (`ringing`, `busy`, …) comes as `call_status` ([`Connection::call_status`]). A
    /// refusal is an error holding a [`DirectRefusal`].
    pub async fn dial(&mut self, peer: &str, video: bool) -> anyhow::Result<CallId> {
        match self.request(|rid| ClientFrame::CallDial { rid, peer: peer.into(), video }).await? {
            ServerFrame::CallDialing { call, .. } => Ok(call),
            other => Err(refusal(other)),
        }
    }

    /// Answers ringing call `call` from this session.
    pub async fn accept_call(&mut self, call: CallId) -> anyhow::Result<()> {
        self.direct(|rid| ClientFrame::CallAccept { rid, call }).await
    }

    /// Declines ringing call `call`.
    pub async fn decline_call(&mut self, call: CallId) -> anyhow::Result<()> {
        self.direct(|rid| ClientFrame::CallDecline { rid, call }).await
    }

    /// Hangs up (or cancels) call `call`.
    pub async fn hangup_call(&mut self, call: CallId) -> anyhow::Result<()> {
        self.direct(|rid| ClientFrame::CallHangup { rid, call }).await
    }

    async fn direct(&mut self, make: impl FnOnce(Option<String>) -> ClientFrame) -> anyhow::Result<()> {
        match self.request(make).await? {
            ServerFrame::Ok { .. } => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Waits for a call to ring on this session.
    pub async fn incoming_call(&mut self, timeout: Duration) -> anyhow::Result<Incoming> {
        match self.expect(timeout, |f| matches!(f, ServerFrame::CallIncoming { .. })).await? {
            ServerFrame::CallIncoming { call, from, name, video } => Ok(Incoming { call, from, name, video }),
            _ => bail!("not call_incoming"),
        }
    }

    /// Waits for a `call_status` of call `call` whose status satisfies `pred` (earlier ones of
    /// that call are skipped; other frames stay buffered).
    pub async fn call_status(
        &mut self,
        call: CallId,
        timeout: Duration,
        mut pred: impl FnMut(DirectCallStatus) -> bool,
    ) -> anyhow::Result<DirectCallUpdate> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.expect(left, |f| matches!(f, ServerFrame::CallStatus(u) if u.call == call)).await?;
            if let ServerFrame::CallStatus(u) = f {
                if pred(u.status) {
                    return Ok(u);
                }
            }
        }
    }
}

impl Call {
    /// Joins the media room of answered 1:1 call `call` (`call_join` with `gid = -call`). Only
    /// the session that placed the call, or the one that answered it, may.
    pub async fn join_direct(conn: Connection, call: CallId, options: CallOptions) -> Result<Call, CallError> {
        Call::join(conn, room_of(call), options).await
    }

    /// Hangs up 1:1 call `call` from inside its media room (`call_hangup`); the room closes, and
    /// this call task ends with it.
    pub async fn hangup(&self, call: CallId) -> Result<(), CallError> {
        self.request(ClientFrame::CallHangup { rid: None, call }).await
    }
}
