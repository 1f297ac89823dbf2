//! Groups: settings, members with permission flags, pins.
//!
//! Owns the tables `groups`, `members` and `pins`, and keeps each group's
//! `conversations` / `conv_members` rows in step with its membership (in the
//! same transaction), so messaging always sees who is in a conversation.
//!
//! Every mutation is one transaction, checked against the actor's rights
//! first. After a commit the group's [`GroupPolicy`] cache entry is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::flags::{admin, call, group, member, resolution};
use chorus_proto::rest::{CreateGroup, CreatePin, CreatedGroup, Group, GroupSettings, Member, Membership, Pin};
use chorus_proto::ErrorCode;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::auth_token::random_digits;
use crate::bus::FanOut;
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::limiter::WindowLimiter;
use crate::messaging::outbound;
use chorus_proto::ws::{GroupEvent, ServerFrame};

/// Who is asking: a user, or the app backend with the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A logged-in user.
    User(i64),
    /// The admin token: every right.
    Admin,
}

/// A group's policy and its members' flags, cached for the message path.
#[derive(Debug)]
pub struct GroupPolicy {
    /// Policy bits.
    pub flags: u32,
    /// The group's conversation.
    pub conv_id: i64,
    /// Member uid → member flags.
    pub members: HashMap<i64, u32>,
}

impl GroupPolicy {
    /// Whether `uid` may send.
    pub fn can_send(&self, uid: i64) -> bool {
        match group::mode(self.flags, group::SEND_BY_SELECTED, group::SEND_BY_ANYONE) {
            group::Mode::Anyone => true,
            group::Mode::Members => self.members.contains_key(&uid),
            group::Mode::Selected => self.members.get(&uid).is_some_and(|f| f & member::SEND != 0),
        }
    }

    /// Whether `uid` receives.
    pub fn can_receive(&self, uid: i64) -> bool {
        match self.members.get(&uid) {
            None => false,
            Some(f) => self.flags & group::RECV_BY_SELECTED == 0 || f & member::RECV != 0,
        }
    }

    /// Everyone who receives.
    pub fn receivers(&self) -> impl Iterator<Item = i64> + '_ {
        self.members.keys().copied().filter(|u| self.can_receive(*u))
    }
}

/// Cache of [`GroupPolicy`] with generation counters, so a load that raced an
/// invalidation is never stored.
#[derive(Default)]
struct PolicyCache {
    entries: HashMap<i64, Arc<GroupPolicy>>,
    generation: HashMap<i64, u64>,
}

/// The groups service.
pub struct Groups {
    db: Db,
    cfg: Arc<Config>,
    cache: Mutex<PolicyCache>,
    bus: Arc<dyn FanOut>,
    pin_fail_user: WindowLimiter,
    pin_fail_ip: WindowLimiter,
    /// The gid of every committed change, for services that keep state per group (calls).
    changes: tokio::sync::broadcast::Sender<i64>,
}

const GROUP_COLS: &str = "g.gid, g.name, g.flags, g.call_flags, g.video_resolution, g.call_duration, g.created_at, \
                          COALESCE(o.address, '') AS owner";

fn group_from_row(row: &AnyRow, membership: Option<Membership>) -> Result<Group, sqlx::Error> {
    Ok(Group {
        gid: row.try_get("gid")?,
        name: row.try_get("name")?,
        flags: row.try_get::<i64, _>("flags")? as u32,
        call_flags: row.try_get::<i64, _>("call_flags")? as u32,
        video_resolution: row.try_get::<i64, _>("video_resolution")? as u32,
        call_duration: row.try_get::<i64, _>("call_duration")? as u32,
        created_at: row.try_get("created_at")?,
        owner: row.try_get("owner")?,
        membership,
    })
}

fn pin_from_row(row: &AnyRow) -> Result<Pin, sqlx::Error> {
    Ok(Pin {
        pin: row.try_get("pin")?,
        gid: row.try_get("gid")?,
        flags: row.try_get::<i64, _>("flags")? as u32,
        admin_flags: row.try_get::<i64, _>("admin_flags")? as u32,
        label: row.try_get("label")?,
        expires_at: row.try_get("expires_at")?,
        uses_left: row.try_get("uses_left")?,
    })
}

/// Validates settings; `mesibo` accepts every Mesibo policy bit.
fn validate_settings(s: &GroupSettings, mesibo: bool) -> ApiResult<()> {
    if let Some(name) = &s.name {
        let n = name.trim();
        if n.is_empty() || n.chars().count() > 100 || n.chars().any(char::is_control) {
            return Err(ApiError::bad_request("group name must be 1 to 100 printable characters"));
        }
    }
    let allowed = if mesibo { group::KNOWN } else { group::VALID };
    if s.flags.is_some_and(|f| f & !allowed != 0) {
        return Err(ApiError::bad_request(format!("flags has unknown bits; allowed mask is {allowed:#x}")));
    }
    if s.call_flags.is_some_and(|f| f & !call::KNOWN != 0) {
        return Err(ApiError::bad_request("call_flags has unknown bits"));
    }
    if s.video_resolution.is_some_and(|r| resolution::height(r).is_none()) {
        return Err(ApiError::bad_request("video_resolution must be one of 0,1,2,3,4,5,8,9,10"));
    }
    if s.call_duration.is_some_and(|d| d > 7 * 24 * 3600) {
        return Err(ApiError::bad_request("call_duration must be at most 604800 seconds"));
    }
    Ok(())
}

fn validate_member_flags(flags: u32, admin_flags: u32) -> ApiResult<()> {
    if flags & !member::VALID != 0 {
        return Err(ApiError::bad_request(format!("flags has unknown bits; allowed mask is {:#x}", member::VALID)));
    }
    if admin_flags & !admin::OWNER_ALL != 0 {
        return Err(ApiError::bad_request("admin_flags has unknown bits"));
    }
    Ok(())
}

impl Groups {
    /// Builds the service.
    pub fn new(db: Db, cfg: Arc<Config>, bus: Arc<dyn FanOut>) -> Self {
        let window = Duration::from_secs(cfg.rate_window_secs);
        Groups {
            pin_fail_user: WindowLimiter::new(cfg.pin_failures_per_user, window),
            pin_fail_ip: WindowLimiter::new(cfg.pin_failures_per_ip, window),
            db,
            cfg,
            cache: Mutex::new(PolicyCache::default()),
            bus,
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// The gids of groups as they change (members, flags, settings, deletion), after each
    /// commit. A receiver that lags gets `Lagged` and should refresh everything it holds.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.changes.subscribe()
    }

    /// Tells the group's members (and `also`) that it changed. Best effort:
    /// the change is committed whatever happens here.
    async fn announce(&self, gid: i64, event: GroupEvent, members: Vec<String>, also: &[i64]) {
        let mut uids: Vec<i64> = also.to_vec();
        match self.policy(gid).await {
            Ok(Some(p)) => uids.extend(p.members.keys().copied().filter(|u| !also.contains(u))),
            Ok(None) => {}
            Err(e) => tracing::warn!(gid, error = %e.message, "group event not sent"),
        }
        let frame = ServerFrame::Group { gid, event, members };
        self.bus.deliver(&mut uids.into_iter(), outbound(&frame, None, 0));
        let _ = self.changes.send(gid);
    }

    fn invalidate(&self, gid: i64) {
        let mut c = self.cache.lock().expect("policy cache poisoned");
        c.entries.remove(&gid);
        *c.generation.entry(gid).or_default() += 1;
    }

    /// The group's policy and member flags (cached). `None` if no such group.
    pub async fn policy(&self, gid: i64) -> ApiResult<Option<Arc<GroupPolicy>>> {
        let gen = {
            let c = self.cache.lock().expect("policy cache poisoned");
            if let Some(p) = c.entries.get(&gid) {
                return Ok(Some(p.clone()));
            }
            c.generation.get(&gid).copied().unwrap_or(0)
        };
        let row = sqlx::query(
            "SELECT g.flags, c.conv_id FROM groups g JOIN conversations c ON c.gid = g.gid WHERE g.gid = $1",
        )
        .bind(gid)
        .fetch_optional(&self.db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let rows =
            sqlx::query("SELECT uid, flags FROM members WHERE gid = $1").bind(gid).fetch_all(&self.db.read).await?;
        let mut members = HashMap::with_capacity(rows.len());
        for r in rows {
            members.insert(r.try_get::<i64, _>("uid")?, r.try_get::<i64, _>("flags")? as u32);
        }
        let policy = Arc::new(GroupPolicy {
            flags: row.try_get::<i64, _>("flags")? as u32,
            conv_id: row.try_get("conv_id")?,
            members,
        });
        let mut c = self.cache.lock().expect("policy cache poisoned");
        if c.generation.get(&gid).copied().unwrap_or(0) == gen {
            c.entries.insert(gid, policy.clone());
        }
        Ok(Some(policy))
    }

    async fn membership(tx: &mut Transaction<'_, Any>, gid: i64, uid: i64) -> ApiResult<Option<Membership>> {
        let row = sqlx::query("SELECT flags, admin_flags FROM members WHERE gid = $1 AND uid = $2")
            .bind(gid)
            .bind(uid)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(match row {
            Some(r) => Some(Membership {
                flags: r.try_get::<i64, _>("flags")? as u32,
                admin_flags: r.try_get::<i64, _>("admin_flags")? as u32,
            }),
            None => None,
        })
    }

    /// Checks that the group exists and `actor` holds admin right `right`.
    async fn require_right(tx: &mut Transaction<'_, Any>, gid: i64, actor: Actor, right: u32) -> ApiResult<()> {
        let exists = sqlx::query("SELECT 1 FROM groups WHERE gid = $1").bind(gid).fetch_optional(&mut **tx).await?;
        if exists.is_none() {
            return Err(ApiError::not_found("no such group"));
        }
        let Actor::User(uid) = actor else { return Ok(()) };
        match Self::membership(tx, gid, uid).await? {
            None => Err(ApiError::not_found("no such group")),
            Some(m) if m.flags & member::ADMIN != 0 && (m.admin_flags & (right | admin::OWNER) != 0) => Ok(()),
            Some(_) => Err(ApiError::forbidden("you do not have the admin right for this")),
        }
    }

    /// Creates a group; the creator (if a user) becomes its owner. With
    /// `room`, also creates the publisher pin and the view-only pin.
    pub async fn create(&self, actor: Actor, req: &CreateGroup, mesibo: bool) -> ApiResult<CreatedGroup> {
        let s = &req.settings;
        validate_settings(s, mesibo)?;
        let name = s.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let Some(name) = name else { return Err(ApiError::bad_request("name is required")) };
        let default_flags = if mesibo { 0 } else { group::ALL_SELECTED };
        let now = now_ms();
        let mut tx = self.db.write.begin().await?;
        let owner = match actor {
            Actor::User(uid) => Some(uid),
            Actor::Admin => None,
        };
        let mut gid = None;
        for _ in 0..8 {
            let candidate: i64 = random_digits(7).parse().expect("7 digits parse");
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO groups (gid, name, owner_uid, flags, call_flags, video_resolution, call_duration, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (gid) DO NOTHING RETURNING gid",
            )
            .bind(candidate)
            .bind(name)
            .bind(owner)
            .bind(i64::from(s.flags.unwrap_or(default_flags)))
            .bind(i64::from(s.call_flags.unwrap_or(call::DEFAULT | call::SIMULCAST)))
            .bind(i64::from(s.video_resolution.unwrap_or(resolution::DEFAULT)))
            .bind(i64::from(s.call_duration.unwrap_or(0)))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_some() {
                gid = inserted;
                break;
            }
        }
        let gid = gid.ok_or_else(|| ApiError::internal("could not allocate a group id"))?;
        let conv_id: i64 =
            sqlx::query_scalar("INSERT INTO conversations (gid, last_seq) VALUES ($1, 0) RETURNING conv_id")
                .bind(gid)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(uid) = owner {
            Self::upsert_member(&mut tx, gid, conv_id, uid, member::ALL | member::ADMIN, admin::OWNER_ALL, now).await?;
        }
        let mut pins = Vec::new();
        if req.room {
            let publisher = CreatePin { flags: member::ALL, label: Some("publisher".into()), ..Default::default() };
            let viewer = CreatePin {
                flags: member::SEND | member::RECV | member::SUBSCRIBE | member::LIST,
                label: Some("viewer".into()),
                ..Default::default()
            };
            pins.push(Self::insert_pin(&mut tx, gid, owner, &publisher).await?);
            pins.push(Self::insert_pin(&mut tx, gid, owner, &viewer).await?);
        }
        let group = Self::load_group(&mut tx, gid, owner).await?;
        tx.commit().await?;
        Ok(CreatedGroup { group, pins })
    }

    async fn load_group(tx: &mut Transaction<'_, Any>, gid: i64, viewer: Option<i64>) -> ApiResult<Group> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLS} FROM groups g LEFT JOIN users o ON o.uid = g.owner_uid WHERE g.gid = $1"
        ))
        .bind(gid)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| ApiError::not_found("no such group"))?;
        let membership = match viewer {
            Some(uid) => Self::membership(tx, gid, uid).await?,
            None => None,
        };
        Ok(group_from_row(&row, membership)?)
    }

    async fn upsert_member(
        tx: &mut Transaction<'_, Any>,
        gid: i64,
        conv_id: i64,
        uid: i64,
        flags: u32,
        admin_flags: u32,
        now: i64,
    ) -> ApiResult<()> {
        sqlx::query(
            "INSERT INTO members (gid, uid, flags, admin_flags, joined_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (gid, uid) DO UPDATE SET flags = $3, admin_flags = $4",
        )
        .bind(gid)
        .bind(uid)
        .bind(i64::from(flags))
        .bind(i64::from(admin_flags))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // A new member's history starts now: nothing before counts as undelivered.
        sqlx::query(
            "INSERT INTO conv_members (conv_id, uid, delivered_seq, read_seq, joined_seq) \
             SELECT conv_id, $2, last_seq, last_seq, last_seq FROM conversations WHERE conv_id = $1 \
             ON CONFLICT (conv_id, uid) DO NOTHING",
        )
        .bind(conv_id)
        .bind(uid)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn insert_pin(tx: &mut Transaction<'_, Any>, gid: i64, by: Option<i64>, req: &CreatePin) -> ApiResult<Pin> {
        let admin_flags = req.admin_flags.unwrap_or(0);
        validate_member_flags(req.flags, admin_flags)?;
        if admin_flags & admin::OWNER != 0 {
            return Err(ApiError::bad_request("a pin cannot grant ownership"));
        }
        let label = req.label.as_deref().unwrap_or("member").trim().to_string();
        if label.is_empty() || label.chars().count() > 32 || label.chars().any(char::is_control) {
            return Err(ApiError::bad_request("label must be 1 to 32 printable characters"));
        }
        if req.uses.is_some_and(|u| u < 1) {
            return Err(ApiError::bad_request("uses must be at least 1"));
        }
        if req.expires_in.is_some_and(|s| s == 0 || s > 366 * 24 * 3600) {
            return Err(ApiError::bad_request("expires_in must be 1 to 31622400 seconds"));
        }
        let now = now_ms();
        let expires_at = req.expires_in.map(|s| now + (s as i64) * 1000);
        for _ in 0..8 {
            let pin = random_digits(8);
            let r = sqlx::query(
                "INSERT INTO pins (pin, gid, flags, admin_flags, label, expires_at, uses_left, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (pin) DO NOTHING",
            )
            .bind(&pin)
            .bind(gid)
            .bind(i64::from(req.flags))
            .bind(i64::from(admin_flags))
            .bind(&label)
            .bind(expires_at)
            .bind(req.uses)
            .bind(by)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            if r.rows_affected() == 1 {
                return Ok(Pin { pin, gid, flags: req.flags, admin_flags, label, expires_at, uses_left: req.uses });
            }
        }
        Err(ApiError::internal("could not allocate a pin"))
    }

    /// A group as `viewer` sees it (members only).
    pub async fn get(&self, gid: i64, actor: Actor) -> ApiResult<Group> {
        let mut tx = self.db.read.begin().await?;
        let viewer = match actor {
            Actor::User(uid) => Some(uid),
            Actor::Admin => None,
        };
        let g = Self::load_group(&mut tx, gid, viewer).await?;
        if viewer.is_some() && g.membership.is_none() {
            return Err(ApiError::not_found("no such group"));
        }
        Ok(g)
    }

    /// Groups `uid` is a member of, newest first.
    pub async fn list_mine(&self, uid: i64) -> ApiResult<Vec<Group>> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLS}, m.flags AS m_flags, m.admin_flags AS m_admin FROM members m \
             JOIN groups g ON g.gid = m.gid LEFT JOIN users o ON o.uid = g.owner_uid \
             WHERE m.uid = $1 ORDER BY m.joined_at DESC, g.gid DESC"
        ))
        .bind(uid)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                let m = Membership {
                    flags: r.try_get::<i64, _>("m_flags")? as u32,
                    admin_flags: r.try_get::<i64, _>("m_admin")? as u32,
                };
                Ok(group_from_row(r, Some(m))?)
            })
            .collect()
    }

    /// Updates settings (admin right MODIFY).
    pub async fn update(&self, gid: i64, actor: Actor, s: &GroupSettings, mesibo: bool) -> ApiResult<Group> {
        validate_settings(s, mesibo)?;
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::MODIFY).await?;
        sqlx::query(
            "UPDATE groups SET name = COALESCE($2, name), flags = COALESCE($3, flags), call_flags = COALESCE($4, call_flags), \
             video_resolution = COALESCE($5, video_resolution), call_duration = COALESCE($6, call_duration) WHERE gid = $1",
        )
        .bind(gid)
        .bind(s.name.as_deref().map(str::trim))
        .bind(s.flags.map(i64::from))
        .bind(s.call_flags.map(i64::from))
        .bind(s.video_resolution.map(i64::from))
        .bind(s.call_duration.map(i64::from))
        .execute(&mut *tx)
        .await?;
        let viewer = if let Actor::User(u) = actor { Some(u) } else { None };
        let g = Self::load_group(&mut tx, gid, viewer).await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::Updated, vec![], &[]).await;
        Ok(g)
    }

    /// Deletes a group with its messages and pins (admin right DELETE_GROUP).
    pub async fn delete(&self, gid: i64, actor: Actor) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::DELETE_GROUP).await?;
        let former: Vec<i64> =
            sqlx::query_scalar("SELECT uid FROM members WHERE gid = $1").bind(gid).fetch_all(&mut *tx).await?;
        sqlx::query("DELETE FROM groups WHERE gid = $1").bind(gid).execute(&mut *tx).await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::Deleted, vec![], &former).await;
        Ok(())
    }

    /// Members with their flags (any member may list).
    pub async fn members(&self, gid: i64, actor: Actor) -> ApiResult<Vec<Member>> {
        if let Actor::User(_) = actor {
            self.get(gid, actor).await?;
        } else if self.policy(gid).await?.is_none() {
            return Err(ApiError::not_found("no such group"));
        }
        let rows = sqlx::query(
            "SELECT u.address, u.name, m.flags, m.admin_flags FROM members m JOIN users u ON u.uid = m.uid \
             WHERE m.gid = $1 ORDER BY m.joined_at, u.address",
        )
        .bind(gid)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    address: r.try_get("address")?,
                    name: r.try_get("name")?,
                    flags: r.try_get::<i64, _>("flags")? as u32,
                    admin_flags: r.try_get::<i64, _>("admin_flags")? as u32,
                })
            })
            .collect()
    }

    /// Adds members by address or updates their flags (ADD_MEMBER; ADD_ADMIN to grant admin).
    /// All-or-nothing: an unknown address fails the whole request.
    pub async fn add_members(
        &self,
        gid: i64,
        actor: Actor,
        addresses: &[String],
        flags: u32,
        admin_flags: u32,
    ) -> ApiResult<()> {
        validate_member_flags(flags, admin_flags)?;
        if addresses.is_empty() || addresses.len() > self.cfg.max_group_members {
            return Err(ApiError::bad_request("addresses must list 1 to max_group_members addresses"));
        }
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::ADD_MEMBER).await?;
        if flags & member::ADMIN != 0 || admin_flags != 0 {
            Self::require_right(&mut tx, gid, actor, admin::ADD_ADMIN).await?;
            if admin_flags & admin::OWNER != 0 && actor != Actor::Admin {
                return Err(ApiError::forbidden("only the backend can grant ownership"));
            }
        }
        let conv_id: i64 = sqlx::query_scalar("SELECT conv_id FROM conversations WHERE gid = $1")
            .bind(gid)
            .fetch_one(&mut *tx)
            .await?;
        let now = now_ms();
        for addr in addresses {
            let uid: Option<i64> = sqlx::query_scalar("SELECT uid FROM users WHERE address = $1")
                .bind(addr)
                .fetch_optional(&mut *tx)
                .await?;
            let uid = uid.ok_or_else(|| ApiError::not_found(format!("no user with address {addr:?}")))?;
            // Re-adding an existing admin changes their rights: that takes the right to remove admins.
            if let Some(old) = Self::membership(&mut tx, gid, uid).await? {
                let changed = old.flags != flags || old.admin_flags != admin_flags;
                if changed && old.admin_flags & admin::OWNER != 0 && actor != Actor::Admin {
                    return Err(ApiError::forbidden("the owner's rights cannot be changed"));
                }
                if changed && old.flags & member::ADMIN != 0 {
                    Self::require_right(&mut tx, gid, actor, admin::REMOVE_ADMIN).await?;
                }
            }
            Self::upsert_member(&mut tx, gid, conv_id, uid, flags, admin_flags, now).await?;
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE gid = $1").bind(gid).fetch_one(&mut *tx).await?;
        if count as usize > self.cfg.max_group_members {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("a group has at most {} members", self.cfg.max_group_members),
            ));
        }
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::MembersAdded, addresses.to_vec(), &[]).await;
        Ok(())
    }

    /// Removes a member (REMOVE_MEMBER; REMOVE_ADMIN / REMOVE_OWNER for those). Anyone may remove themselves.
    pub async fn remove_member(&self, gid: i64, actor: Actor, address: &str) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        let uid: Option<i64> = sqlx::query_scalar("SELECT uid FROM users WHERE address = $1")
            .bind(address)
            .fetch_optional(&mut *tx)
            .await?;
        let target = match uid {
            Some(uid) => Self::membership(&mut tx, gid, uid).await?.map(|m| (uid, m)),
            None => None,
        };
        let is_self = matches!((actor, target), (Actor::User(a), Some((t, _))) if a == t);
        if !is_self {
            Self::require_right(&mut tx, gid, actor, admin::REMOVE_MEMBER).await?;
        }
        let Some((uid, m)) = target else { return Err(ApiError::not_found("not a member of this group")) };
        if is_self && m.admin_flags & admin::OWNER != 0 {
            return Err(ApiError::forbidden("the owner cannot leave; delete the group instead"));
        }
        if !is_self {
            if m.admin_flags & admin::OWNER != 0 {
                Self::require_right(&mut tx, gid, actor, admin::REMOVE_OWNER).await?;
            } else if m.flags & member::ADMIN != 0 {
                Self::require_right(&mut tx, gid, actor, admin::REMOVE_ADMIN).await?;
            }
        }
        sqlx::query("DELETE FROM members WHERE gid = $1 AND uid = $2").bind(gid).bind(uid).execute(&mut *tx).await?;
        sqlx::query(
            "DELETE FROM conv_members WHERE uid = $2 AND conv_id = (SELECT conv_id FROM conversations WHERE gid = $1)",
        )
        .bind(gid)
        .bind(uid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::MembersRemoved, vec![address.to_string()], &[uid]).await;
        Ok(())
    }

    /// Creates a pin (ADD_PIN; ADD_ADMIN if it grants admin rights).
    pub async fn create_pin(&self, gid: i64, actor: Actor, req: &CreatePin) -> ApiResult<Pin> {
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::ADD_PIN).await?;
        if req.flags & member::ADMIN != 0 || req.admin_flags.unwrap_or(0) != 0 {
            Self::require_right(&mut tx, gid, actor, admin::ADD_ADMIN).await?;
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pins WHERE gid = $1").bind(gid).fetch_one(&mut *tx).await?;
        if count as usize >= self.cfg.max_group_pins {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("a group has at most {} pins", self.cfg.max_group_pins),
            ));
        }
        let by = if let Actor::User(u) = actor { Some(u) } else { None };
        let pin = Self::insert_pin(&mut tx, gid, by, req).await?;
        tx.commit().await?;
        Ok(pin)
    }

    /// Lists pins (LIST_PIN).
    pub async fn list_pins(&self, gid: i64, actor: Actor) -> ApiResult<Vec<Pin>> {
        let mut tx = self.db.read.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::LIST_PIN).await?;
        let rows = sqlx::query("SELECT * FROM pins WHERE gid = $1 ORDER BY created_at, CASE label WHEN 'publisher' THEN 0 WHEN 'viewer' THEN 1 ELSE 2 END, pin").bind(gid).fetch_all(&mut *tx).await?;
        rows.iter().map(|r| Ok(pin_from_row(r)?)).collect()
    }

    /// Revokes a pin (REMOVE_PIN).
    pub async fn revoke_pin(&self, gid: i64, actor: Actor, pin: &str) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::REMOVE_PIN).await?;
        let r =
            sqlx::query("DELETE FROM pins WHERE gid = $1 AND pin = $2").bind(gid).bind(pin).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Err(ApiError::not_found("no such pin in this group"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Joins with a pin. Wrong pins count against the user and the IP; past
    /// the limit every attempt is refused until the window ends. Joining again
    /// never reduces rights already held.
    pub async fn join(&self, gid: i64, uid: i64, pin: &str, ip: IpAddr) -> ApiResult<Group> {
        let now_i = Instant::now();
        let (ukey, ikey) = (uid.to_string(), ip.to_string());
        if self.pin_fail_user.exceeded(&ukey, now_i) || self.pin_fail_ip.exceeded(&ikey, now_i) {
            return Err(ApiError::rate_limited("too many wrong pins; try again later"));
        }
        let fail = || {
            self.pin_fail_user.hit(&ukey, now_i);
            self.pin_fail_ip.hit(&ikey, now_i);
            ApiError::new(ErrorCode::PinInvalid, "wrong room id or pin, or the pin expired or was used up")
        };
        let valid = pin.len() >= 6 && pin.len() <= 16 && pin.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(fail());
        }
        let now = now_ms();
        let mut tx = self.db.write.begin().await?;
        let row = sqlx::query("SELECT * FROM pins WHERE pin = $1 AND gid = $2")
            .bind(pin)
            .bind(gid)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Err(fail()) };
        let p = pin_from_row(&row)?;
        if p.expires_at.is_some_and(|e| e < now) || p.uses_left.is_some_and(|u| u < 1) {
            return Err(fail());
        }
        let old = Self::membership(&mut tx, gid, uid).await?.unwrap_or(Membership { flags: 0, admin_flags: 0 });
        let gains = (old.flags | p.flags) != old.flags || (old.admin_flags | p.admin_flags) != old.admin_flags;
        // A limited pin is used up only by a join that grants something.
        if p.uses_left.is_some() && gains {
            // Guarded: two joins racing for the last use cannot both get it.
            let used = sqlx::query("UPDATE pins SET uses_left = uses_left - 1 WHERE pin = $1 AND uses_left > 0")
                .bind(pin)
                .execute(&mut *tx)
                .await?;
            if used.rows_affected() == 0 {
                return Err(fail());
            }
        }
        let conv_id: i64 = sqlx::query_scalar("SELECT conv_id FROM conversations WHERE gid = $1")
            .bind(gid)
            .fetch_one(&mut *tx)
            .await?;
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE gid = $1").bind(gid).fetch_one(&mut *tx).await?;
        if old.flags == 0 && count as usize >= self.cfg.max_group_members {
            return Err(ApiError::new(ErrorCode::LimitExceeded, "the group is full"));
        }
        Self::upsert_member(&mut tx, gid, conv_id, uid, old.flags | p.flags, old.admin_flags | p.admin_flags, now)
            .await?;
        let g = Self::load_group(&mut tx, gid, Some(uid)).await?;
        let joiner: String =
            sqlx::query_scalar("SELECT address FROM users WHERE uid = $1").bind(uid).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        self.invalidate(gid);
        if gains {
            self.announce(gid, GroupEvent::MembersAdded, vec![joiner], &[]).await;
        }
        Ok(g)
    }
}

/// What the Mesibo conferencing adapter needs to know about a room.
#[derive(Debug, Clone)]
pub struct RoomInfo {
    /// App-defined room type.
    pub kind: i64,
    /// Owner uid.
    pub owner: Option<i64>,
    /// First publisher pin.
    pub pin: Option<String>,
    /// First view-only pin.
    pub spin: Option<String>,
}

impl Groups {
    /// Sets the app-defined room type (Mesibo `type`).
    pub async fn set_kind(&self, gid: i64, kind: i64) -> ApiResult<()> {
        sqlx::query("UPDATE groups SET kind = $1 WHERE gid = $2").bind(kind).bind(gid).execute(&self.db.write).await?;
        Ok(())
    }

    /// Owner, type and the room's publisher / view-only pins.
    pub async fn room_info(&self, gid: i64) -> ApiResult<Option<RoomInfo>> {
        let row = sqlx::query("SELECT kind, owner_uid FROM groups WHERE gid = $1")
            .bind(gid)
            .fetch_optional(&self.db.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let pin_of = |label: &'static str| {
            sqlx::query_scalar::<_, String>(
                "SELECT pin FROM pins WHERE gid = $1 AND label = $2 ORDER BY created_at LIMIT 1",
            )
            .bind(gid)
            .bind(label)
            .fetch_optional(&self.db.read)
        };
        Ok(Some(RoomInfo {
            kind: row.try_get("kind")?,
            owner: row.try_get("owner_uid")?,
            pin: pin_of("publisher").await?,
            spin: pin_of("viewer").await?,
        }))
    }
}
