//! The read queries: history, receipts, the conversation list, a session's sync backlog
//! and presence contacts.
//!
//! They read from the read pool and never go through the [writer](super::writer): what they
//! see is what has committed. What a user may read is the permission rule written in SQL
//! ([`RECEIVABLE`]) and checked again against the group's current policy.

use chorus_proto::rest::{ConversationSummary, HistoryPage, MemberReceipt, Receipts};
use chorus_proto::ws::{Message, SessionUser};
use chorus_proto::{GroupId, Pos, Seq};
use sqlx::Row;

use super::rows::{message_from_row, MSG_COLS};
use super::{Messaging, SentInfo, Target};
use crate::bus::MsgMeta;
use crate::error::{ApiError, ApiResult};
#[cfg(doc)]
use crate::groups::GroupPolicy;

/// SQL condition on `m` (a message) and `cm` (the reader's `conv_members` row): 1:1 messages,
/// or group messages the reader may receive. This is the permission rule
/// ([`chorus_proto::flags::group::allows`], [`GroupPolicy::can_receive`]) written for the store:
/// a member receives exactly when their RECV flag (0x2) is set, in every group mode, and a
/// non-member never does (the test below holds the two together).
const RECEIVABLE: &str = "(m.gid IS NULL OR EXISTS (SELECT 1 FROM members mb \
                           WHERE mb.gid = m.gid AND mb.uid = cm.uid AND (mb.flags & 2) <> 0))";

/// One page of a session's sync backlog.
pub struct BacklogPage {
    /// Messages to send, in `pos` order, with their metadata.
    pub messages: Vec<(Message, MsgMeta)>,
    /// `pos` of the last row looked at: the next page starts after it.
    pub last: Option<i64>,
    /// Whether rows remain after `last` (up to the page's end).
    pub more: bool,
}

/// Where a session's sync ends.
pub struct SyncEnd {
    /// Live frames at or below this position were covered by the backlog.
    pub covered_to: i64,
    /// False when more exist than one sync sends (`sync_limit`).
    pub complete: bool,
}

/// The rows of a session's backlog, in `pos` order: after a resume cursor, every message of the
/// user's conversations since they joined; on a fresh start, the messages from others not yet
/// delivered to them. Binds `$1` the user, `$2` and `$3` the `pos` range (`$2` excluded).
///
/// Each conversation's rows are one index range: a resume's by `pos` (the range after the
/// cursor), a fresh start's by `(conv_id, seq)` (after the delivered watermark; its `pos` range
/// is everything). A `+` in front of a column keeps the planners from using an index for that
/// term: without `+m.seq` a resume read each conversation from `joined_seq` on, its whole
/// history (SQLite always, PostgreSQL when its statistics were older than the table's growth);
/// without `+m.pos` SQLite would read a fresh start's conversations by `pos` from the start.
/// Either way a page costs what the backlog holds, not the history.
fn backlog_rows(resume: bool, cols: &str) -> String {
    let (pos, which) = if resume {
        ("m.pos", "+m.seq > cm.joined_seq")
    } else {
        ("+m.pos", "m.seq > cm.delivered_seq AND m.sender_uid <> $1")
    };
    format!(
        "SELECT {cols} FROM messages m JOIN conv_members cm ON cm.conv_id = m.conv_id AND cm.uid = $1 \
         WHERE {pos} > $2 AND {pos} <= $3 AND {which} AND {RECEIVABLE} ORDER BY m.pos"
    )
}

impl Messaging {
    /// The conversation id for `user` and `target`, checking read access.
    /// `Ok(None)`: a 1:1 conversation that has no messages yet.
    pub async fn conversation(&self, user: &SessionUser, target: &Target) -> ApiResult<Option<i64>> {
        match target {
            Target::Peer(addr) => {
                let peer = self.accounts.by_address(addr).await?.ok_or_else(|| ApiError::not_found("no such user"))?;
                let (lo, hi) = (user.uid.min(peer.uid), user.uid.max(peer.uid));
                Ok(sqlx::query_scalar("SELECT conv_id FROM conversations WHERE user_lo = $1 AND user_hi = $2")
                    .bind(lo.get())
                    .bind(hi.get())
                    .fetch_optional(&self.db.read)
                    .await?)
            }
            Target::Group(gid) => {
                let policy = self.groups.policy(*gid).await?.ok_or_else(|| ApiError::not_found("no such group"))?;
                if !policy.members.contains_key(&user.uid.get()) {
                    return Err(ApiError::not_found("no such group"));
                }
                if !policy.can_receive(user.uid.get()) {
                    return Err(ApiError::forbidden("you may not receive this group's messages"));
                }
                Ok(Some(policy.conv_id))
            }
        }
    }

    /// A page of history before `before` (a `seq`), newest last.
    pub async fn history(
        &self,
        user: &SessionUser,
        target: &Target,
        before: Option<i64>,
        limit: u32,
    ) -> ApiResult<HistoryPage> {
        let limit = limit.clamp(1, 500) as i64;
        let Some(conv_id) = self.conversation(user, target).await? else {
            return Ok(HistoryPage { messages: vec![], before: None });
        };
        let rows = sqlx::query(&format!(
            "SELECT {MSG_COLS} FROM messages m WHERE m.conv_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(conv_id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        let mut messages = rows.iter().map(|r| message_from_row(r).map(|(m, _)| m)).collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        let before = match messages.first() {
            Some(m) if m.seq > Seq(1) && messages.len() as i64 == limit => Some(m.seq),
            _ => None,
        };
        Ok(HistoryPage { messages, before })
    }

    /// Every member's delivered / read watermark in a conversation.
    pub async fn receipts(&self, user: &SessionUser, target: &Target) -> ApiResult<Receipts> {
        let Some(conv_id) = self.conversation(user, target).await? else {
            return Ok(Receipts { members: vec![] });
        };
        let rows = sqlx::query(
            "SELECT u.address, cm.delivered_seq, cm.read_seq FROM conv_members cm JOIN users u ON u.uid = cm.uid \
             WHERE cm.conv_id = $1 ORDER BY u.address",
        )
        .bind(conv_id)
        .fetch_all(&self.db.read)
        .await?;
        let members = rows
            .iter()
            .map(|r| {
                Ok(MemberReceipt {
                    address: r.try_get("address")?,
                    delivered: Seq(r.try_get("delivered_seq")?),
                    read: Seq(r.try_get("read_seq")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Receipts { members })
    }

    /// The user's conversations, most recently active first, with unread counts.
    pub async fn conversations(&self, user: &SessionUser) -> ApiResult<Vec<ConversationSummary>> {
        let rows = sqlx::query(&format!(
            "SELECT c.gid, c.last_seq, cm.read_seq, COALESCE(g.name, u.name, '') AS conv_name, u.address AS peer_addr_of, \
             (SELECT COUNT(*) FROM messages x WHERE x.conv_id = c.conv_id AND x.seq > cm.read_seq AND x.sender_uid <> $1) AS unread, \
             {MSG_COLS} \
             FROM conv_members cm JOIN conversations c ON c.conv_id = cm.conv_id \
             LEFT JOIN groups g ON g.gid = c.gid \
             LEFT JOIN users u ON c.gid IS NULL AND u.uid = CASE WHEN c.user_lo = $1 THEN c.user_hi ELSE c.user_lo END \
             LEFT JOIN messages m ON m.conv_id = c.conv_id AND m.seq = c.last_seq \
             WHERE cm.uid = $1"
        ))
        .bind(user.uid.get())
        .fetch_all(&self.db.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let gid: Option<i64> = r.try_get("gid")?;
            if let Some(g) = gid {
                match self.groups.policy(g).await? {
                    Some(p) if p.can_receive(user.uid.get()) => {}
                    _ => continue,
                }
            }
            let has_last: Option<i64> = r.try_get("mid")?;
            let last = match has_last {
                Some(_) => Some(message_from_row(r)?.0),
                None => None,
            };
            out.push(ConversationSummary {
                peer: if gid.is_none() { r.try_get("peer_addr_of")? } else { None },
                gid: gid.map(GroupId),
                name: r.try_get("conv_name")?,
                last_seq: Seq(r.try_get("last_seq")?),
                read_seq: Seq(r.try_get("read_seq")?),
                unread: r.try_get("unread")?,
                last,
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.last.as_ref().map(|m| m.pos).unwrap_or(Pos(0))));
        Ok(out)
    }

    /// The current stream head.
    pub async fn head(&self) -> ApiResult<i64> {
        Ok(sqlx::query_scalar("SELECT pos FROM stream WHERE id = 1").fetch_one(&self.db.read).await?)
    }

    /// Where the sync of a (re)connecting session ends: it sends at most `sync_limit` messages
    /// after `resume_pos` if given, else of those not yet delivered, up to `head`. Read `head`
    /// after the session is attached to the bus, so nothing falls between backlog and live.
    pub async fn sync_end(&self, user: &SessionUser, resume_pos: Option<i64>, head: i64) -> ApiResult<SyncEnd> {
        // The last row one sync sends, and whether another follows it.
        let rows: Vec<i64> =
            sqlx::query_scalar(&format!("{} LIMIT 2 OFFSET $4", backlog_rows(resume_pos.is_some(), "m.pos")))
                .bind(user.uid.get())
                .bind(resume_pos.unwrap_or(-1))
                .bind(head)
                .bind(self.cfg.sync_limit as i64 - 1)
                .fetch_all(&self.db.read)
                .await?;
        Ok(match rows.as_slice() {
            [last, _] => SyncEnd { covered_to: *last, complete: false },
            _ => SyncEnd { covered_to: head, complete: true },
        })
    }

    /// One page of a session's backlog (see [`Messaging::sync_end`]): up to `rows` rows with
    /// `after < pos <= upto`. A session sends its backlog a page at a time, so a client that
    /// reads slowly (or not at all) never has the server hold more than a page of it.
    pub async fn backlog_page(
        &self,
        user: &SessionUser,
        resume: bool,
        after: i64,
        upto: i64,
        rows: usize,
    ) -> ApiResult<BacklogPage> {
        // The page's positions first: finding them reads no message bodies, so the
        // bodies read are only the page's own.
        let found: Vec<i64> = sqlx::query_scalar(&format!("{} LIMIT $4", backlog_rows(resume, "m.pos")))
            .bind(user.uid.get())
            .bind(after)
            .bind(upto)
            .bind(rows as i64 + 1)
            .fetch_all(&self.db.read)
            .await?;
        let more = found.len() > rows;
        let Some(&last) = found[..found.len().min(rows)].last() else {
            return Ok(BacklogPage { messages: Vec::new(), last: None, more: false });
        };
        let examined = sqlx::query(&format!("{} LIMIT $4", backlog_rows(resume, MSG_COLS)))
            .bind(user.uid.get())
            .bind(after)
            .bind(last)
            .bind(rows as i64)
            .fetch_all(&self.db.read)
            .await?;
        let mut messages = Vec::with_capacity(examined.len());
        for r in &examined {
            let (m, meta) = message_from_row(r)?;
            if let Some(gid) = m.gid {
                match self.groups.policy(gid.get()).await? {
                    Some(p) if p.can_receive(user.uid.get()) => {}
                    _ => continue,
                }
            }
            messages.push((m, meta));
        }
        Ok(BacklogPage { messages, last: Some(last), more })
    }

    /// Users who share a conversation with `uid` (groups above the presence
    /// size limit excluded): the audience of their presence.
    pub async fn contacts(&self, uid: i64) -> ApiResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT cm2.uid FROM conv_members cm1 \
             JOIN conv_members cm2 ON cm2.conv_id = cm1.conv_id AND cm2.uid <> cm1.uid \
             WHERE cm1.uid = $1 AND (SELECT COUNT(*) FROM conv_members x WHERE x.conv_id = cm1.conv_id) <= $2",
        )
        .bind(uid)
        .bind(self.cfg.presence_max_group as i64)
        .fetch_all(&self.db.read)
        .await?)
    }

    /// The message `uid` already stored under `client_id`, if any.
    pub(super) async fn stored(&self, uid: i64, client_id: &str) -> ApiResult<Option<SentInfo>> {
        let mut conn = self.db.read.acquire().await?;
        Ok(stored_send(&mut conn, uid, client_id).await?)
    }
}

/// The answer to a retry: the message `uid` stored under `client_id`, if any.
async fn stored_send(
    conn: &mut sqlx::AnyConnection,
    uid: i64,
    client_id: &str,
) -> Result<Option<SentInfo>, sqlx::Error> {
    let row = sqlx::query("SELECT mid, seq, pos, created_at FROM messages WHERE sender_uid = $1 AND client_id = $2")
        .bind(uid)
        .bind(client_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(SentInfo {
            mid: r.try_get("mid")?,
            seq: r.try_get("seq")?,
            pos: r.try_get("pos")?,
            ts: r.try_get("created_at")?,
            duplicate: true,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use chorus_proto::flags::{group, member};

    use crate::db::Db;

    /// SQLite's plans for a backlog page: a resume reads each conversation from the cursor's
    /// `pos` on, a fresh start from the delivered watermark's `seq` on. With the `seq` index a
    /// resume went through every conversation's whole history for every page.
    #[tokio::test]
    async fn backlog_pages_read_index_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(None, dir.path(), "normal", 2000).await.unwrap();
        for (resume, want) in [
            (true, "USING INDEX messages_conv_pos (conv_id=? AND pos>? AND pos<?)"),
            (false, "USING INDEX sqlite_autoindex_messages_2 (conv_id=? AND seq>?)"),
        ] {
            let sql = format!("EXPLAIN QUERY PLAN {} LIMIT $4", super::backlog_rows(resume, super::MSG_COLS));
            let rows = sqlx::query(&sql).bind(1i64).bind(10i64).bind(20i64).bind(5i64).fetch_all(&db.read).await;
            let plan: Vec<String> = rows.unwrap().iter().map(|r| sqlx::Row::get::<String, _>(r, 3)).collect();
            assert!(
                plan.iter().any(|step| step.starts_with("SEARCH m ") && step.ends_with(want)),
                "resume {resume}: {plan:?}"
            );
        }
    }

    #[test]
    fn receivable_is_the_permission_rule() {
        use chorus_proto::flags::group::{allows, Action};
        assert!(super::RECEIVABLE.contains(&format!("(mb.flags & {}) <> 0", member::RECV)));
        assert!(!super::RECEIVABLE.contains("g.flags"), "the group's mode does not decide for members");
        // What the SQL says (a member receives iff RECV; a non-member never) is the rule's answer.
        for g in [0, group::ALL_SELECTED, group::VALID, group::KNOWN, group::RECV_BY_SELECTED] {
            for f in [0, member::RECV, member::ALL, member::VALID & !member::RECV] {
                assert_eq!(allows(g, Some(f), Action::Receive), f & member::RECV != 0, "{g:#x} {f:#x}");
            }
            assert!(!allows(g, None, Action::Receive));
        }
    }
}
