//! A message as stored: the columns of a `messages` row and how one becomes a [`Message`]
//! frame. Shared by the [writer](super::writer) (an edit reads the row it changes) and the
//! [queries](super::queries).

use chorus_proto::ws::Message;
use chorus_proto::{GroupId, MessageId, Pos, Seq};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::Content;
use crate::bus::MsgMeta;

/// The columns [`message_from_row`] reads, of `messages m`.
pub(super) const MSG_COLS: &str = "m.mid, m.conv_id, m.seq, m.pos, m.sender_uid, m.sender_addr, m.peer_addr, m.gid, \
                                   m.client_id, m.mtype, m.body, m.created_at, m.edited, m.deleted";

/// A stored message and its metadata, from a row of [`MSG_COLS`].
pub(super) fn message_from_row(r: &AnyRow) -> Result<(Message, MsgMeta), sqlx::Error> {
    let body: Option<String> = r.try_get("body")?;
    let content: Content = body.and_then(|b| serde_json::from_str(&b).ok()).unwrap_or_default();
    let m = Message {
        mid: MessageId(r.try_get("mid")?),
        id: r.try_get("client_id")?,
        from: r.try_get("sender_addr")?,
        peer: r.try_get("peer_addr")?,
        gid: r.try_get::<Option<i64>, _>("gid")?.map(GroupId),
        seq: Seq(r.try_get("seq")?),
        pos: Pos(r.try_get("pos")?),
        ts: r.try_get("created_at")?,
        mtype: r.try_get::<i64, _>("mtype")? as u32,
        text: content.text,
        data: content.data,
        file: content.file,
        edited: r.try_get::<i64, _>("edited")? != 0,
        deleted: r.try_get::<i64, _>("deleted")? != 0,
    };
    let meta = MsgMeta {
        pos: m.pos.get(),
        conv_id: r.try_get("conv_id")?,
        seq: m.seq.get(),
        sender: r.try_get("sender_uid")?,
    };
    Ok((m, meta))
}
