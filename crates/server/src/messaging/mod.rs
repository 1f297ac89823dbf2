//! Messaging: sending, editing, deleting, receipts, history and sync.
//!
//! Owns the tables `conversations` (1:1 rows; group rows belong to
//! [`crate::groups`]), `conv_members` watermarks, `messages` and `stream`.
//!
//! # The write path
//! Every change to messages or watermarks goes through one writer task. It
//! takes whatever requests are queued (up to [`BATCH`]), applies them in one
//! transaction, commits, and only then answers the senders and fans frames out.
//! That gives:
//! - *group commit*: one fsync for many messages;
//! - *a total order*: stream positions (`pos`) are handed out by the writer,
//!   so commit order = `pos` order, which makes "resume after `pos`" exact;
//! - *nothing half-written*: a batch commits whole or not at all.
//!
//! # Positions and resume
//! Each new message, edit or delete takes the next `pos`. A client remembers
//! the highest `pos` it processed; on reconnect it gets every message it may
//! receive with a higher `pos`, in order, then live frames. Live frames at or
//! below the sync point are skipped by the session, so nothing arrives twice.
//!
//! # Receipts
//! Delivery and read state are per member *watermarks* (`delivered_seq`,
//! `read_seq`), not per message rows: O(members) state per conversation.
//!
//! # Files
//! - [`service`]: the front door. Validates a request (content, client id, send rate),
//!   resolves and permission-checks its destination, and queues it to the writer.
//! - [`writer`]: the single writer task, the only code that changes these tables; its
//!   invariants are written at the top of the file.
//! - [`queries`]: the reads (history, receipts, conversation list, sync backlog), straight
//!   from the read pool, never through the writer.
//! - [`rows`]: a stored message's columns and how a row becomes a frame, for both.
//!
//! Imports go one way: `service` → `writer` → `rows` ← `queries` (which adds read methods to
//! [`Messaging`]); the shared vocabulary ([`Target`], [`Content`], [`SentInfo`]) is here.
//!
//! Frames go out through [`crate::bus`], which serialises them once ([`crate::bus::outbound`]).

use chorus_proto::ws::FileRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::{ApiError, ApiResult};

pub mod queries;
pub mod rows;
pub mod service;
pub mod unacked;
pub mod writer;

pub use queries::{BacklogPage, SyncEnd};
pub use service::Messaging;
pub use writer::{exit_if_panicked, BATCH, EXIT_TASK_PANICKED};

// The request checks, for the fuzz targets (`crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use service::{check_client_id, encode_content};

/// Where a message goes, as the client names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A user, by address.
    Peer(String),
    /// A group.
    Group(i64),
}

impl Target {
    /// From the `peer` / `gid` pair of a frame or query: exactly one must be set.
    pub fn from_parts(peer: Option<String>, gid: Option<i64>) -> ApiResult<Target> {
        match (peer, gid) {
            (Some(p), None) if !p.is_empty() => Ok(Target::Peer(p)),
            (None, Some(g)) => Ok(Target::Group(g)),
            _ => Err(ApiError::bad_request("give exactly one of peer or gid")),
        }
    }
}

/// The stored content of a message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Content {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// JSON data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// File reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

/// What a successful send returns.
#[derive(Debug, Clone, Copy)]
pub struct SentInfo {
    /// Message id.
    pub mid: i64,
    /// Conversation sequence.
    pub seq: i64,
    /// Stream position.
    pub pos: i64,
    /// Server time, ms.
    pub ts: i64,
    /// This was a retry of a stored message.
    pub duplicate: bool,
}

/// A send that passed its checks: already answered (a retry), or queued to the writer.
pub enum SendTicket {
    /// A retry of a stored message: the first answer.
    Done(SentInfo),
    /// Queued; the answer comes after the commit.
    Queued(oneshot::Receiver<ApiResult<SentInfo>>),
}

impl SendTicket {
    /// Waits for the answer.
    pub async fn wait(self) -> ApiResult<SentInfo> {
        match self {
            SendTicket::Done(info) => Ok(info),
            SendTicket::Queued(rx) => rx.await.map_err(|_| ApiError::internal("message writer dropped a request"))?,
        }
    }
}
