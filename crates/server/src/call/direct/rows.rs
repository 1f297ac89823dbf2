//! Cluster mode: what the store keeps of 1:1 calls.
//!
//! Two tables, both written only by the node that holds the call (the one that got its
//! `call_dial`):
//!
//! - `call_nodes` (shared with group calls, keyed by the call's room `-id`): where the call
//!   lives. Its insert is what makes a random id unique: a conflict picks another id. Other
//!   nodes read it to route a session's accept, decline, hangup and media join.
//! - `direct_busy` (one row per user in a call, with the call and its node): "a user is in at
//!   most one call" across nodes. A dial inserts the caller's row, then the callee's, with
//!   `ON CONFLICT DO NOTHING`: a conflict is a user in a call, unless the row is stale (its
//!   node is gone, or it is this node's and names a call this node no longer holds), which is
//!   deleted and the insert tried again.
//!
//! Both rows go when the call ends ([`release`]); a node sweeps its own leftovers (after a
//! restart, or a delete that failed) every few seconds ([`sweep`]); a drain deletes them all
//! (`CallRouter::release_all`). Rows naming a node that is gone are ignored where read. When a
//! node dies its calls die with it: the node that speaks for the cluster tells their users
//! `lost` from the `direct_busy` rows (which carry what a `call_status` needs, `about`) and
//! deletes the dead node's rows ([`node_died`]), so a callee still ringing stops too.

use std::collections::HashMap;

use chorus_proto::direct::{room_of, DirectCallStatus, DirectCallUpdate};
use chorus_proto::CallId;
use serde::{Deserialize, Serialize};

use super::DirectCalls;
use crate::cluster::calls::CallRouter;
use crate::error::ApiError;

/// How long a row of a call this node does not hold stays before the sweep deletes it: the
/// dial that inserted it may still be on its way to the ring.
const GRACE_MS: i64 = 30_000;
/// Ids below 2^53: exact in JavaScript's numbers.
const ID_SPACE: u64 = (1 << 53) - 1;

/// What a `call_status` of a call says besides its id and status: kept in its users' rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct About {
    /// The caller's address.
    pub from: String,
    /// The callee's address.
    pub to: String,
    /// A video call.
    pub video: bool,
}

/// A call id placed in `call_nodes`, and whether its two users were free (their
/// `direct_busy` rows are this call's now).
pub(super) struct Placed {
    pub id: CallId,
    pub caller_free: bool,
    pub callee_free: bool,
}

/// Places a new call on this node: a fresh random id, its `call_nodes` row, its users' rows.
/// The id is in `svc.dialing` on return (the caller takes it out once the ring has the call).
pub(super) async fn place(
    router: &CallRouter,
    svc: &DirectCalls,
    caller: i64,
    callee: i64,
    about: &About,
) -> Result<Placed, ApiError> {
    let id = fresh_id(router, svc).await?;
    let about = serde_json::to_string(about).expect("About serialises");
    let claimed = async {
        let caller_free = claim(router, svc, caller, id, &about).await?;
        let callee_free = !caller_free || claim(router, svc, callee, id, &about).await?;
        Ok::<_, ApiError>((caller_free, callee_free))
    };
    match claimed.await {
        Ok((caller_free, callee_free)) => Ok(Placed { id, caller_free, callee_free }),
        Err(e) => {
            svc.dialing.lock().expect("dialing lock").remove(&id);
            release(router, id).await;
            Err(e)
        }
    }
}

/// A random id whose `call_nodes` row this node inserted.
async fn fresh_id(router: &CallRouter, svc: &DirectCalls) -> Result<CallId, ApiError> {
    for _ in 0..8 {
        let id = CallId((rand::random::<u64>() % ID_SPACE + 1) as i64);
        // In `dialing` before the row exists, so the sweep never takes it for a leftover.
        svc.dialing.lock().expect("dialing lock").insert(id);
        let placed = sqlx::query(
            "INSERT INTO call_nodes (gid, node, placed_at) VALUES ($1, $2, $3) ON CONFLICT (gid) DO NOTHING",
        )
        .bind(room_of(id))
        .bind(router.node())
        .bind(crate::clock::now_ms())
        .execute(&router.db().write)
        .await;
        match placed {
            Ok(r) if r.rows_affected() == 1 => return Ok(id),
            Ok(_) => svc.dialing.lock().expect("dialing lock").remove(&id),
            Err(e) => {
                svc.dialing.lock().expect("dialing lock").remove(&id);
                return Err(e.into());
            }
        };
    }
    Err(ApiError::rate_limited("no free call id; try again"))
}

/// Inserts `uid`'s `direct_busy` row for call `id`; `false` when they are in another call.
async fn claim(router: &CallRouter, svc: &DirectCalls, uid: i64, id: CallId, about: &str) -> Result<bool, ApiError> {
    let db = &router.db().write;
    for _ in 0..3 {
        let inserted = sqlx::query(
            "INSERT INTO direct_busy (uid, call_id, node, placed_at, about) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (uid) DO NOTHING",
        )
        .bind(uid)
        .bind(id.get())
        .bind(router.node())
        .bind(crate::clock::now_ms())
        .bind(about)
        .execute(db)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(true);
        }
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT call_id, node FROM direct_busy WHERE uid = $1").bind(uid).fetch_optional(db).await?;
        let Some((call, node)) = row else { continue }; // deleted meanwhile: insert again
        if !stale(router, svc, CallId(call), &node) {
            return Ok(false);
        }
        sqlx::query("DELETE FROM direct_busy WHERE uid = $1 AND call_id = $2 AND node = $3")
            .bind(uid)
            .bind(call)
            .bind(&node)
            .execute(db)
            .await?;
    }
    Ok(false)
}

/// Whether a `direct_busy` row of call `call` on `node` no longer means anything: its node is
/// gone, or it is this node's and the call ended here (its delete may still be on its way).
fn stale(router: &CallRouter, svc: &DirectCalls, call: CallId, node: &str) -> bool {
    if !router.alive(node) {
        return true;
    }
    node == router.node() && !svc.ring().holds(call) && !svc.dialing.lock().expect("dialing lock").contains(&call)
}

/// The live node that holds call `id`, if any.
pub(super) async fn holder(router: &CallRouter, id: CallId) -> Result<Option<String>, ApiError> {
    let node: Option<String> = sqlx::query_scalar("SELECT node FROM call_nodes WHERE gid = $1")
        .bind(room_of(id))
        .fetch_optional(&router.db().read)
        .await?;
    Ok(node.filter(|n| router.alive(n)))
}

/// Deletes this node's rows of call `id` (it ended, or never rang). A failure is logged: the
/// sweep deletes them later.
pub(super) async fn release(router: &CallRouter, id: CallId) {
    let db = &router.db().write;
    let calls = sqlx::query("DELETE FROM call_nodes WHERE gid = $1 AND node = $2")
        .bind(room_of(id))
        .bind(router.node())
        .execute(db)
        .await;
    let users = sqlx::query("DELETE FROM direct_busy WHERE call_id = $1 AND node = $2")
        .bind(id.get())
        .bind(router.node())
        .execute(db)
        .await;
    if let Err(e) = calls.and(users) {
        tracing::warn!(call = id.get(), error = %e, "cluster: the rows of an ended 1:1 call not deleted");
    }
}

/// Deletes this node's `direct_busy` rows of calls it no longer holds, placed more than a
/// grace ago (its `call_nodes` rows go with the group calls' sweep, which asks
/// [`DirectCalls::held_rooms`]).
pub(super) async fn sweep(router: &CallRouter, svc: &DirectCalls) -> Result<(), ApiError> {
    let db = &router.db().write;
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as("SELECT uid, call_id, placed_at FROM direct_busy WHERE node = $1")
        .bind(router.node())
        .fetch_all(db)
        .await?;
    let old = crate::clock::now_ms() - GRACE_MS;
    for (uid, call, at) in rows {
        if at < old && stale(router, svc, CallId(call), router.node()) {
            sqlx::query("DELETE FROM direct_busy WHERE uid = $1 AND call_id = $2 AND node = $3")
                .bind(uid)
                .bind(call)
                .bind(router.node())
                .execute(db)
                .await?;
        }
    }
    Ok(())
}

/// Node `node` died (or was heard again after a restart): the calls it held are over. Returns
/// each with its users and its `lost` status, once their rows are deleted (another node
/// speaking for the cluster at the same time finds them gone and returns nothing for them).
pub(super) async fn node_died(router: &CallRouter, node: &str) -> Result<Vec<(Vec<i64>, DirectCallUpdate)>, ApiError> {
    let db = &router.db().write;
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT uid, call_id, about FROM direct_busy WHERE node = $1").bind(node).fetch_all(db).await?;
    let mut calls: HashMap<i64, (Vec<i64>, String)> = HashMap::new();
    for (uid, call, about) in rows {
        calls.entry(call).or_insert_with(|| (Vec::new(), about)).0.push(uid);
    }
    let mut lost = Vec::new();
    for (call, (uids, about)) in calls {
        let deleted = sqlx::query("DELETE FROM direct_busy WHERE call_id = $1 AND node = $2")
            .bind(call)
            .bind(node)
            .execute(db)
            .await?;
        sqlx::query("DELETE FROM call_nodes WHERE gid = $1 AND node = $2").bind(-call).bind(node).execute(db).await?;
        let Ok(about) = serde_json::from_str::<About>(&about) else { continue };
        if deleted.rows_affected() > 0 {
            let status = DirectCallStatus::Lost;
            let update = DirectCallUpdate {
                call: CallId(call),
                from: about.from,
                to: about.to,
                video: about.video,
                status,
                code: status.mesibo(),
                by: None,
            };
            lost.push((uids, update));
        }
    }
    Ok(lost)
}
