//! Group whiteboards: one board per group, a list of JSON objects.
//!
//! Owns the table `boards`. Any member of a group reads its board; a member who may send to
//! the group (its [`GroupPolicy`](crate::groups::GroupPolicy)) writes it. A change is one
//! transaction: the board is read, changed, size-checked against `max_board_bytes` and
//! written, or, on any refusal, left exactly as it was. After the commit every member's
//! sessions get one `board` frame, serialised once.

use std::sync::Arc;

use chorus_proto::rest::Board;
use chorus_proto::ws::{BoardAction, ServerFrame, SessionUser};
use chorus_proto::ErrorCode;
use chorus_proto::GroupId;
use serde_json::Value;
use sqlx::Row;

use crate::bus::{outbound, FanOut};
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::{Backend, Db};
use crate::error::{ApiError, ApiResult};
use crate::groups::{GroupPolicy, Groups};

/// A change to a board.
#[derive(Debug, Clone)]
pub enum BoardChange {
    /// Add objects at the end.
    Append(Vec<Value>),
    /// Replace the whole board, if its version is still `version` (when given).
    Replace {
        /// The new board.
        objs: Vec<Value>,
        /// The version the writer based the new board on.
        version: Option<i64>,
    },
    /// Remove the writer's own objects: those whose `id.uid` is the writer's uid (the
    /// convention of Mesibo's conferencing app, whose objects carry `id: {uid, …}`).
    ClearMine,
    /// Remove every object.
    ClearAll,
}

/// The boards service.
pub struct Boards {
    db: Db,
    cfg: Arc<Config>,
    groups: Arc<Groups>,
    bus: Arc<dyn FanOut>,
}

/// Refuses anything but JSON objects as board objects.
fn check_objects(objs: &[Value]) -> ApiResult<()> {
    match objs.iter().position(|o| !o.is_object()) {
        Some(i) => Err(ApiError::bad_request(format!("board object {i} is not a JSON object"))),
        None => Ok(()),
    }
}

/// Whether `obj` is `uid`'s by Mesibo's convention (`id.uid`, a number or a decimal string).
fn owned_by(obj: &Value, uid: i64) -> bool {
    match obj.get("id").and_then(|id| id.get("uid")) {
        Some(Value::Number(n)) => n.as_i64() == Some(uid),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok() == Some(uid),
        _ => false,
    }
}

impl Boards {
    /// Builds the service.
    pub fn new(db: Db, cfg: Arc<Config>, groups: Arc<Groups>, bus: Arc<dyn FanOut>) -> Self {
        Boards { db, cfg, groups, bus }
    }

    /// The group's policy, if `uid` is a member (else `not_found`, as for the group itself).
    async fn member_policy(&self, gid: i64, uid: i64) -> ApiResult<Arc<GroupPolicy>> {
        match self.groups.policy(gid).await? {
            Some(p) if p.members.contains_key(&uid) => Ok(p),
            _ => Err(ApiError::not_found("no such group")),
        }
    }

    /// The board of `gid` as member `uid` sees it (an empty board, version 0, if never written).
    pub async fn get(&self, gid: i64, uid: i64) -> ApiResult<Board> {
        self.member_policy(gid, uid).await?;
        let row = sqlx::query(
            "SELECT b.objs, b.version, b.updated_at, u.address FROM boards b \
             LEFT JOIN users u ON u.uid = b.updated_by WHERE b.gid = $1",
        )
        .bind(gid)
        .fetch_optional(&self.db.read)
        .await?;
        let Some(row) = row else {
            return Ok(Board {
                gid: GroupId(gid),
                version: 0,
                objs: vec![],
                count: 0,
                bytes: 2,
                updated_by: None,
                updated_at: 0,
            });
        };
        let text: String = row.try_get("objs")?;
        let objs: Vec<Value> = serde_json::from_str(&text).map_err(ApiError::internal)?;
        Ok(Board {
            gid: GroupId(gid),
            version: row.try_get("version")?,
            count: objs.len(),
            bytes: text.len(),
            objs,
            updated_by: row.try_get("address")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    /// Applies `change` to the board of `gid` for `user`, who must be a member who may send
    /// to the group. Nothing is changed if it is refused: objects that are not JSON objects
    /// (`bad_request`), a board that would be larger than `max_board_bytes` (`too_large`), a
    /// stale `version` (`conflict`). Returns the board as stored.
    pub async fn change(&self, gid: i64, user: &SessionUser, change: BoardChange) -> ApiResult<Board> {
        let policy = self.member_policy(gid, user.uid.get()).await?;
        if !policy.can_send(user.uid.get()) {
            return Err(ApiError::forbidden("only members who may send to the group may change its board"));
        }
        match &change {
            BoardChange::Append(objs) | BoardChange::Replace { objs, .. } => check_objects(objs)?,
            BoardChange::ClearMine | BoardChange::ClearAll => {}
        }
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "INSERT INTO boards (gid, objs, version, updated_by, updated_at) VALUES ($1, '[]', 0, NULL, 0) \
             ON CONFLICT (gid) DO NOTHING",
        )
        .bind(gid)
        .execute(&mut *tx)
        .await?;
        let lock = if self.db.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(&format!("SELECT objs, version FROM boards WHERE gid = $1{lock}"))
            .bind(gid)
            .fetch_one(&mut *tx)
            .await?;
        let text: String = row.try_get("objs")?;
        let version: i64 = row.try_get("version")?;
        let mut board: Vec<Value> = serde_json::from_str(&text).map_err(ApiError::internal)?;
        let (action, sent) = match change {
            BoardChange::Append(objs) => {
                board.extend(objs.iter().cloned());
                (BoardAction::Append, objs)
            }
            BoardChange::Replace { objs, version: base } => {
                if base.is_some_and(|b| b != version) {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!("the board is at version {version}, not {}", base.unwrap_or_default()),
                    ));
                }
                board = objs;
                (BoardAction::Set, vec![])
            }
            BoardChange::ClearMine => {
                board.retain(|o| !owned_by(o, user.uid.get()));
                (BoardAction::Set, vec![])
            }
            BoardChange::ClearAll => {
                board.clear();
                (BoardAction::Set, vec![])
            }
        };
        let new_text = serde_json::to_string(&board).map_err(ApiError::internal)?;
        if new_text.len() > self.cfg.max_board_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the board would be {} bytes, more than max_board_bytes ({}); it was not changed",
                    new_text.len(),
                    self.cfg.max_board_bytes
                ),
            ));
        }
        let now = now_ms();
        let version = version + 1;
        sqlx::query("UPDATE boards SET objs = $1, version = $2, updated_by = $3, updated_at = $4 WHERE gid = $5")
            .bind(&new_text)
            .bind(version)
            .bind(user.uid.get())
            .bind(now)
            .bind(gid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let objs = if action == BoardAction::Append { sent } else { board.clone() };
        let frame = ServerFrame::Board { gid: GroupId(gid), version, from: user.address.clone(), action, objs };
        self.bus.deliver(&mut policy.members.keys().copied(), outbound(&frame, None, 0));
        Ok(Board {
            gid: GroupId(gid),
            version,
            count: board.len(),
            bytes: new_text.len(),
            objs: board,
            updated_by: Some(user.address.clone()),
            updated_at: now,
        })
    }
}
