//! Groups: settings, members with permission flags, pins.
//!
//! Owns the tables `groups`, `members` and `pins`, and keeps each group's
//! `conversations` / `conv_members` rows in step with its membership (in the
//! same transaction), so messaging always sees who is in a conversation.
//!
//! Every mutation is one transaction, checked against the actor's rights
//! first. After a commit the group's [`GroupPolicy`] cache entry is dropped.
//!
//! Pins at rest: the `pins` table holds no pin text, only `pin_hash` (what a pin is looked up
//! by) and `pin_enc` (the pin sealed for owners to see), both under the server's pin key
//! ([`crate::pin_key`]). [`Groups::prepare_pins`] checks the key against the database and
//! converts pins stored by older versions before the server serves.
//!
//! Granting rights: nobody grants, directly or through a pin, an admin right they do not
//! hold themselves; only the owner grants the owner-level rights (remove the owner, delete
//! the group), and only the backend grants ownership. A pin grants its admin part only as far
//! as its creator could still grant it when it is used. Ordinary member rights (send, receive,
//! publish, subscribe, list, record) are what an admin with `ADD_MEMBER` or `ADD_PIN` hands
//! out, whatever their own member flags. The backend (admin token) may grant anything.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus_proto::flags::{admin, call, group, member, resolution};
use chorus_proto::rest::{
    CreateGroup, CreatePin, CreatedGroup, EditPin, Group, GroupSettings, Member, Membership, PageQuery, Pin,
};
use chorus_proto::ErrorCode;
use chorus_proto::GroupId;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::auth_token::random_digits;
use crate::bus::{outbound, FanOut};
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::{Backend, Db};
use crate::error::{ApiError, ApiResult};
use crate::limiter::{ip_key, WindowLimiter};
use crate::pin_key::{KeySource, PinKey};
use crate::quota::{Quota, Quotas, Taken};
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
    /// Whether `uid` may do `action`: [`group::allows`], the one permission rule.
    pub fn allows(&self, uid: i64, action: group::Action) -> bool {
        group::allows(self.flags, self.members.get(&uid).copied(), action)
    }

    /// Whether `uid` may send.
    pub fn can_send(&self, uid: i64) -> bool {
        self.allows(uid, group::Action::Send)
    }

    /// Whether `uid` receives.
    pub fn can_receive(&self, uid: i64) -> bool {
        self.allows(uid, group::Action::Receive)
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
    pin_fail_group: WindowLimiter,
    /// Hashes and seals pins: the table holds no pin text.
    pin_key: Arc<PinKey>,
    /// The gid of every committed change, for services that keep state per group (calls).
    changes: tokio::sync::broadcast::Sender<i64>,
    /// What each user may create per hour.
    quotas: Quotas,
}

const GROUP_COLS: &str =
    "g.gid, g.name, g.flags, g.call_flags, g.video_resolution, g.call_duration, g.live, g.auto_record, g.public_viewing, \
                          g.created_at, \
                          COALESCE(o.address, '') AS owner";

fn group_from_row(row: &AnyRow, membership: Option<Membership>) -> Result<Group, sqlx::Error> {
    Ok(Group {
        gid: GroupId(row.try_get("gid")?),
        name: row.try_get("name")?,
        flags: row.try_get::<i64, _>("flags")? as u32,
        call_flags: row.try_get::<i64, _>("call_flags")? as u32,
        video_resolution: row.try_get::<i64, _>("video_resolution")? as u32,
        call_duration: row.try_get::<i64, _>("call_duration")? as u32,
        live: row.try_get::<i64, _>("live")? != 0,
        auto_record: row.try_get::<i64, _>("auto_record")? != 0,
        public_viewing: row.try_get::<i64, _>("public_viewing")? != 0,
        created_at: row.try_get("created_at")?,
        owner: row.try_get("owner")?,
        membership,
    })
}

/// The meta row that holds the pin key's check value.
const PIN_KEY_CHECK: &str = "pin_key_check";

/// Opens a sealed pin of `gid`. The key was checked against the database at startup, so a pin
/// that does not open is a damaged row: an internal error, not a wrong pin.
fn open_pin(key: &PinKey, gid: i64, sealed: &str) -> ApiResult<String> {
    key.open(gid, sealed).ok_or_else(|| {
        tracing::error!(gid, "a stored pin does not open with the pin key");
        ApiError::internal("a stored pin cannot be read")
    })
}

fn pin_from_row(key: &PinKey, row: &AnyRow) -> ApiResult<Pin> {
    let gid: i64 = row.try_get("gid")?;
    let sealed: String = row.try_get("pin_enc")?;
    Ok(Pin {
        pin: open_pin(key, gid, &sealed)?,
        gid: GroupId(gid),
        flags: row.try_get::<i64, _>("flags")? as u32,
        admin_flags: row.try_get::<i64, _>("admin_flags")? as u32,
        label: row.try_get("label")?,
        expires_at: row.try_get("expires_at")?,
        uses_left: row.try_get("uses_left")?,
    })
}

/// A pin's label, trimmed: 1 to 32 printable characters.
fn pin_label(label: &str) -> ApiResult<String> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 32 || label.chars().any(char::is_control) {
        return Err(ApiError::bad_request("label must be 1 to 32 printable characters"));
    }
    Ok(label.to_string())
}

/// A pin's use limit: at least 1 if any.
fn check_uses(uses: Option<i64>) -> ApiResult<()> {
    if uses.is_some_and(|u| u < 1) {
        return Err(ApiError::bad_request("uses must be at least 1"));
    }
    Ok(())
}

/// A pin's expiry (ms) for a lifetime of `expires_in` seconds from `now`: 1 s to 366 days.
fn expires_at(expires_in: Option<u64>, now: i64) -> ApiResult<Option<i64>> {
    if expires_in.is_some_and(|s| s == 0 || s > 366 * 24 * 3600) {
        return Err(ApiError::bad_request("expires_in must be 1 to 31622400 seconds"));
    }
    Ok(expires_in.map(|s| now + (s as i64) * 1000))
}

/// Validates settings; `mesibo` accepts every Mesibo policy bit.
pub(crate) fn validate_settings(s: &GroupSettings, mesibo: bool) -> ApiResult<()> {
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

/// The admin rights a membership actually confers: admin flags count only with the admin flag.
fn effective_admin(m: &Membership) -> u32 {
    if m.flags & member::ADMIN != 0 {
        m.admin_flags
    } else {
        0
    }
}

/// The admin rights a member may grant: the owner every right but ownership; an admin with
/// `ADD_ADMIN` the rights they hold, less the owner-level ones; anyone else none.
fn grantable(m: Option<&Membership>) -> u32 {
    let held = m.map(effective_admin).unwrap_or(0);
    if held & admin::OWNER != 0 {
        admin::ALL
    } else if held & admin::ADD_ADMIN != 0 {
        held & !admin::OWNER_LEVEL
    } else {
        0
    }
}

/// Refuses a grant of the admin rights `gained` by someone who may grant `can`
/// (`None`: the backend, which may grant anything).
fn check_grant(can: Option<u32>, gained: u32) -> ApiResult<()> {
    let Some(can) = can else { return Ok(()) };
    let missing = gained & !can;
    if missing & admin::OWNER != 0 {
        Err(ApiError::forbidden("only the backend can grant ownership"))
    } else if missing & admin::OWNER_LEVEL != 0 {
        Err(ApiError::forbidden("only the owner can grant the rights to remove the owner or delete the group"))
    } else if missing != 0 {
        Err(ApiError::forbidden(format!("you cannot grant admin rights you do not hold ({missing:#x})")))
    } else {
        Ok(())
    }
}

/// Parses `JOINED.REST` (the cursors of the paged lists).
pub(crate) fn cursor(after: Option<&str>) -> ApiResult<Option<(i64, &str)>> {
    let Some(after) = after else { return Ok(None) };
    let parsed = after.split_once('.').and_then(|(j, rest)| Some((j.parse::<i64>().ok()?, rest)));
    parsed.map(Some).ok_or_else(|| ApiError::bad_request("after must be the cursor of a next link"))
}

pub(crate) fn validate_member_flags(flags: u32, admin_flags: u32) -> ApiResult<()> {
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
    pub fn new(db: Db, cfg: Arc<Config>, bus: Arc<dyn FanOut>, pin_key: Arc<PinKey>) -> Self {
        let window = Duration::from_secs(cfg.rate_window_secs);
        Groups {
            quotas: Quotas::new(&cfg),
            pin_fail_user: WindowLimiter::new(cfg.pin_failures_per_user, window),
            pin_fail_ip: WindowLimiter::new(cfg.pin_failures_per_ip, window),
            pin_fail_group: WindowLimiter::new(cfg.pin_failures_per_group, window),
            pin_key,
            db,
            cfg,
            cache: Mutex::new(PolicyCache::default()),
            bus,
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// The per-user hourly quotas (also those of calls, checked where calls start).
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
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
        let frame = ServerFrame::Group { gid: GroupId(gid), event, members };
        self.bus.deliver(&mut uids.into_iter(), outbound(&frame, None, 0));
        let _ = self.changes.send(gid);
    }

    /// Drops the group's cached policy, here and (cluster mode) on every other node.
    fn invalidate(&self, gid: i64) {
        self.drop_cached(gid);
        self.bus.invalidate(crate::bus::Invalidation::Group(gid));
    }

    fn drop_cached(&self, gid: i64) {
        let mut c = self.cache.lock().expect("policy cache poisoned");
        c.entries.remove(&gid);
        *c.generation.entry(gid).or_default() += 1;
    }

    /// Another node changed the group (cluster mode): drop its cached policy and tell what
    /// keeps state per group here ([`Groups::changes`]).
    pub fn changed_elsewhere(&self, gid: i64) {
        self.drop_cached(gid);
        let _ = self.changes.send(gid);
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

    /// Serialises the transactions that count a group's members (PostgreSQL; SQLite
    /// transactions that write already run one at a time). Lock order: group, then users.
    async fn lock_group(&self, tx: &mut Transaction<'_, Any>, gid: i64) -> ApiResult<()> {
        if self.db.backend == Backend::Postgres {
            sqlx::query("SELECT gid FROM groups WHERE gid = $1 FOR NO KEY UPDATE").bind(gid).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Serialises the transactions that count a user's groups (see [`Self::lock_group`]).
    async fn lock_users(&self, tx: &mut Transaction<'_, Any>, uids: &[i64]) -> ApiResult<()> {
        if self.db.backend == Backend::Postgres {
            let mut sorted = uids.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            for uid in sorted {
                sqlx::query("SELECT uid FROM users WHERE uid = $1 FOR NO KEY UPDATE")
                    .bind(uid)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Refuses to make `uid` a member of one more group past `max_memberships_per_user`.
    async fn check_membership_quota(&self, tx: &mut Transaction<'_, Any>, uid: i64, who: &str) -> ApiResult<()> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE uid = $1").bind(uid).fetch_one(&mut **tx).await?;
        if n as usize >= self.cfg.max_memberships_per_user {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("{who} already in {} groups, the most allowed", self.cfg.max_memberships_per_user),
            ));
        }
        Ok(())
    }

    /// The admin rights `actor` may grant in `gid` (`None`: the backend, anything).
    async fn grantable_by(tx: &mut Transaction<'_, Any>, gid: i64, actor: Actor) -> ApiResult<Option<u32>> {
        Ok(match actor {
            Actor::Admin => None,
            Actor::User(uid) => Some(grantable(Self::membership(tx, gid, uid).await?.as_ref())),
        })
    }

    /// Checks that the group exists and `actor` holds admin right `right`.
    pub(crate) async fn require_right(
        tx: &mut Transaction<'_, Any>,
        gid: i64,
        actor: Actor,
        right: u32,
    ) -> ApiResult<()> {
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
        let share = self.take_quota(Quota::GroupsCreated, actor, 1)?;
        let mut tx = self.db.write.begin().await?;
        let created = self.create_in(&mut tx, actor, req, mesibo).await?;
        tx.commit().await?;
        share.keep();
        Ok(created)
    }

    /// Takes `n` of a user's hourly quota `q` (nothing for the backend).
    fn take_quota(&self, q: Quota, actor: Actor, n: u32) -> ApiResult<Taken<'_>> {
        let uid = match actor {
            Actor::User(uid) => uid,
            Actor::Admin => return self.quotas.take(q, 0, 0),
        };
        self.quotas.take(q, uid, n)
    }

    /// [`Groups::create`] inside the caller's transaction.
    async fn create_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        actor: Actor,
        req: &CreateGroup,
        mesibo: bool,
    ) -> ApiResult<CreatedGroup> {
        let s = &req.settings;
        validate_settings(s, mesibo)?;
        let name = s.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        let Some(name) = name else { return Err(ApiError::bad_request("name is required")) };
        let default_flags = if mesibo { 0 } else { group::ALL_SELECTED };
        let now = now_ms();
        let owner = match actor {
            Actor::User(uid) => Some(uid),
            Actor::Admin => None,
        };
        if let Some(uid) = owner {
            self.lock_users(tx, &[uid]).await?;
            let owned: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM members m JOIN groups g ON g.gid = m.gid WHERE m.uid = $1 AND g.owner_uid = $1",
            )
            .bind(uid)
            .fetch_one(&mut **tx)
            .await?;
            if owned as usize >= self.cfg.max_groups_per_user {
                return Err(ApiError::new(
                    ErrorCode::LimitExceeded,
                    format!("you own {owned} groups, the most allowed; delete one first"),
                ));
            }
            self.check_membership_quota(tx, uid, "you are").await?;
        }
        let mut gid = None;
        for _ in 0..8 {
            let candidate: i64 = random_digits(7).parse().expect("7 digits parse");
            let inserted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO groups (gid, name, owner_uid, flags, call_flags, video_resolution, call_duration, live, auto_record, \
                 public_viewing, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (gid) DO NOTHING RETURNING gid",
            )
            .bind(candidate)
            .bind(name)
            .bind(owner)
            .bind(i64::from(s.flags.unwrap_or(default_flags)))
            .bind(i64::from(s.call_flags.unwrap_or(call::DEFAULT | call::SIMULCAST)))
            .bind(i64::from(s.video_resolution.unwrap_or(resolution::DEFAULT)))
            .bind(i64::from(s.call_duration.unwrap_or(0)))
            .bind(i64::from(s.live.unwrap_or(false)))
            .bind(i64::from(s.auto_record.unwrap_or(false)))
            .bind(i64::from(s.public_viewing.unwrap_or(false)))
            .bind(now)
            .fetch_optional(&mut **tx)
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
                .fetch_one(&mut **tx)
                .await?;
        if let Some(uid) = owner {
            Self::upsert_member(tx, gid, conv_id, uid, member::ALL | member::ADMIN, admin::OWNER_ALL, now).await?;
        }
        let mut pins = Vec::new();
        if req.room {
            let publisher = CreatePin { flags: member::ALL, label: Some("publisher".into()), ..Default::default() };
            let viewer = CreatePin {
                flags: member::SEND | member::RECV | member::SUBSCRIBE | member::LIST,
                label: Some("viewer".into()),
                ..Default::default()
            };
            pins.push(self.insert_pin(tx, gid, owner, &publisher).await?);
            pins.push(self.insert_pin(tx, gid, owner, &viewer).await?);
        }
        let group = Self::load_group(tx, gid, owner).await?;
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

    async fn insert_pin(
        &self,
        tx: &mut Transaction<'_, Any>,
        gid: i64,
        by: Option<i64>,
        req: &CreatePin,
    ) -> ApiResult<Pin> {
        let admin_flags = req.admin_flags.unwrap_or(0);
        validate_member_flags(req.flags, admin_flags)?;
        if admin_flags & admin::OWNER != 0 {
            return Err(ApiError::forbidden("a pin cannot grant ownership"));
        }
        let label = pin_label(req.label.as_deref().unwrap_or("member"))?;
        check_uses(req.uses)?;
        let now = now_ms();
        let expires_at = expires_at(req.expires_in, now)?;
        for _ in 0..8 {
            let pin = random_digits(8);
            let r = sqlx::query(
                "INSERT INTO pins (pin_hash, pin_enc, gid, flags, admin_flags, label, expires_at, uses_left, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (pin_hash) DO NOTHING",
            )
            .bind(self.pin_key.hash(gid, &pin))
            .bind(self.pin_key.seal(gid, &pin))
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
                return Ok(Pin {
                    pin,
                    gid: GroupId(gid),
                    flags: req.flags,
                    admin_flags,
                    label,
                    expires_at,
                    uses_left: req.uses,
                });
            }
        }
        Err(ApiError::internal("could not allocate a pin"))
    }

    /// Run once at startup, before serving (idempotent). Records the pin key's check value in a
    /// new database; refuses to start with another key than the one the database's pins were
    /// stored under, unless `pin_key_reset` is set: then each such pin gets a new value under
    /// this key (same flags, label, expiry and uses; the old value stops working). Then converts
    /// the pins that older versions stored as text (`legacy_pin`) and scrubs their text from
    /// the database files (SQLite `VACUUM`, PostgreSQL `VACUUM FULL pins`).
    pub async fn prepare_pins(&self, source: &KeySource) -> anyhow::Result<()> {
        let key = &self.pin_key;
        let mut tx = self.db.write.begin().await?;
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(PIN_KEY_CHECK)
            .bind(key.check())
            .execute(&mut *tx)
            .await?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(PIN_KEY_CHECK).fetch_one(&mut *tx).await?;
        if stored != key.check() {
            let sealed: Vec<(String, i64)> =
                sqlx::query_as("SELECT pin_hash, gid FROM pins WHERE pin_hash IS NOT NULL").fetch_all(&mut *tx).await?;
            if !self.cfg.pin_key_reset {
                anyhow::bail!(
                    "the pin key ({source}) is not the one this database's pins were stored with ({} pins): \
                     restore the old key (the pin_key setting or the file pin-key in the data directory), \
                     or start once with pin_key_reset = true (CHORUS_PIN_KEY_RESET=true) to give every \
                     pin a new value under this key (the old values stop working)",
                    sealed.len()
                );
            }
            for (old_hash, gid) in &sealed {
                let mut done = false;
                for _ in 0..8 {
                    let pin = random_digits(8);
                    let hash = key.hash(*gid, &pin);
                    let taken = sqlx::query("SELECT 1 FROM pins WHERE pin_hash = $1")
                        .bind(&hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if taken.is_none() {
                        sqlx::query("UPDATE pins SET pin_hash = $1, pin_enc = $2 WHERE pin_hash = $3")
                            .bind(&hash)
                            .bind(key.seal(*gid, &pin))
                            .bind(old_hash)
                            .execute(&mut *tx)
                            .await?;
                        done = true;
                        break;
                    }
                }
                if !done {
                    anyhow::bail!("could not allocate a new pin in group {gid}");
                }
            }
            sqlx::query("UPDATE meta SET value = $1 WHERE key = $2")
                .bind(key.check())
                .bind(PIN_KEY_CHECK)
                .execute(&mut *tx)
                .await?;
            tracing::warn!(pins = sealed.len(), key = %source, "pin_key_reset: the pins stored under another key have new values");
        } else if self.cfg.pin_key_reset {
            tracing::info!("pin_key_reset is set but the pins are stored under this key: nothing to reset");
        }
        let legacy: Vec<(String, i64)> =
            sqlx::query_as("SELECT legacy_pin, gid FROM pins WHERE legacy_pin IS NOT NULL").fetch_all(&mut *tx).await?;
        for (pin, gid) in &legacy {
            sqlx::query(
                "UPDATE pins SET pin_hash = $1, pin_enc = $2, legacy_pin = NULL WHERE legacy_pin = $3 AND gid = $4",
            )
            .bind(key.hash(*gid, pin))
            .bind(key.seal(*gid, pin))
            .bind(pin)
            .bind(gid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if !legacy.is_empty() {
            // The old text is still in freed pages and the WAL (SQLite) or in dead row versions
            // (PostgreSQL) until they are rewritten.
            match self.db.backend {
                Backend::Sqlite => {
                    sqlx::raw_sql("VACUUM").execute(&self.db.write).await?;
                    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.db.write).await?;
                }
                Backend::Postgres => {
                    sqlx::raw_sql("VACUUM FULL pins").execute(&self.db.write).await?;
                }
            }
            tracing::info!(pins = legacy.len(), "pins stored as text by an older version are now hashed and sealed");
        }
        Ok(())
    }

    /// The owner of group `gid` (user id and address), if it has one.
    pub async fn owner(&self, gid: i64) -> ApiResult<Option<(i64, String)>> {
        let row =
            sqlx::query("SELECT u.uid, u.address FROM groups g JOIN users u ON u.uid = g.owner_uid WHERE g.gid = $1")
                .bind(gid)
                .fetch_optional(&self.db.read)
                .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("uid")?, r.try_get("address")?)),
            None => None,
        })
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

    /// One page of the groups `uid` is a member of, most recently joined first, and the
    /// cursor of the next page if there is one.
    pub async fn list_mine(&self, uid: i64, page: &PageQuery) -> ApiResult<(Vec<Group>, Option<String>)> {
        let limit = page.size() as usize;
        let (joined, gid) = match cursor(page.after.as_deref())? {
            Some((j, g)) => {
                (j, g.parse::<i64>().map_err(|_| ApiError::bad_request("after must be the cursor of a next link"))?)
            }
            None => (i64::MAX, i64::MAX),
        };
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLS}, m.flags AS m_flags, m.admin_flags AS m_admin, m.joined_at AS m_joined FROM members m \
             JOIN groups g ON g.gid = m.gid LEFT JOIN users o ON o.uid = g.owner_uid \
             WHERE m.uid = $1 AND (m.joined_at < $2 OR (m.joined_at = $2 AND g.gid < $3)) \
             ORDER BY m.joined_at DESC, g.gid DESC LIMIT $4"
        ))
        .bind(uid)
        .bind(joined)
        .bind(gid)
        .bind(limit as i64 + 1)
        .fetch_all(&self.db.read)
        .await?;
        let next = match rows.get(limit.saturating_sub(1)) {
            Some(last) if rows.len() > limit => {
                Some(format!("{}.{}", last.try_get::<i64, _>("m_joined")?, last.try_get::<i64, _>("gid")?))
            }
            _ => None,
        };
        let groups = rows
            .iter()
            .take(limit)
            .map(|r| {
                let m = Membership {
                    flags: r.try_get::<i64, _>("m_flags")? as u32,
                    admin_flags: r.try_get::<i64, _>("m_admin")? as u32,
                };
                Ok(group_from_row(r, Some(m))?)
            })
            .collect::<ApiResult<Vec<Group>>>()?;
        Ok((groups, next))
    }

    /// Admin: one page of all groups in gid order, those with gid > `after`, at most `limit`
    /// (1 ..= [`crate::accounts::ADMIN_PAGE_MAX`]); with `gid`, only that group. Each with its
    /// member count. Returns the page and the cursor (last gid) of the next page if there is one.
    pub async fn admin_list(
        &self,
        after: i64,
        limit: u32,
        gid: Option<i64>,
    ) -> ApiResult<(Vec<(Group, i64)>, Option<i64>)> {
        let max = crate::accounts::ADMIN_PAGE_MAX;
        if limit == 0 || limit > max {
            return Err(ApiError::bad_request(format!("count must be 1 to {max}")));
        }
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLS}, (SELECT COUNT(*) FROM members m WHERE m.gid = g.gid) AS nmembers \
             FROM groups g LEFT JOIN users o ON o.uid = g.owner_uid \
             WHERE g.gid > $1 AND ($2 = 0 OR g.gid = $2) ORDER BY g.gid LIMIT $3"
        ))
        .bind(after)
        .bind(gid.unwrap_or(0))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db.read)
        .await?;
        let mut groups = rows
            .iter()
            .map(|r| Ok((group_from_row(r, None)?, r.try_get::<i64, _>("nmembers")?)))
            .collect::<ApiResult<Vec<(Group, i64)>>>()?;
        let next = if groups.len() > limit as usize {
            groups.truncate(limit as usize);
            groups.last().map(|(g, _)| g.gid)
        } else {
            None
        };
        Ok((groups, next.map(GroupId::get)))
    }

    /// Updates settings (admin right MODIFY).
    pub async fn update(&self, gid: i64, actor: Actor, s: &GroupSettings, mesibo: bool) -> ApiResult<Group> {
        let mut tx = self.db.write.begin().await?;
        Self::update_in(&mut tx, gid, actor, s, mesibo).await?;
        let viewer = if let Actor::User(u) = actor { Some(u) } else { None };
        let g = Self::load_group(&mut tx, gid, viewer).await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::Updated, vec![], &[]).await;
        Ok(g)
    }

    /// [`Groups::update`] inside the caller's transaction (the caller invalidates and announces).
    async fn update_in(
        tx: &mut Transaction<'_, Any>,
        gid: i64,
        actor: Actor,
        s: &GroupSettings,
        mesibo: bool,
    ) -> ApiResult<()> {
        validate_settings(s, mesibo)?;
        Self::require_right(tx, gid, actor, admin::MODIFY).await?;
        sqlx::query(
            "UPDATE groups SET name = COALESCE($2, name), flags = COALESCE($3, flags), call_flags = COALESCE($4, call_flags), \
             video_resolution = COALESCE($5, video_resolution), call_duration = COALESCE($6, call_duration), \
             live = COALESCE($7, live), auto_record = COALESCE($8, auto_record), \
             public_viewing = COALESCE($9, public_viewing) WHERE gid = $1",
        )
        .bind(gid)
        .bind(s.name.as_deref().map(str::trim))
        .bind(s.flags.map(i64::from))
        .bind(s.call_flags.map(i64::from))
        .bind(s.video_resolution.map(i64::from))
        .bind(s.call_duration.map(i64::from))
        .bind(s.live.map(i64::from))
        .bind(s.auto_record.map(i64::from))
        .bind(s.public_viewing.map(i64::from))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Deletes a group with its messages and pins (admin right DELETE_GROUP).
    pub async fn delete(&self, gid: i64, actor: Actor) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        let former = Self::delete_in(&mut tx, gid, actor).await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::Deleted, vec![], &former).await;
        Ok(())
    }

    /// [`Groups::delete`] inside the caller's transaction: the former members.
    async fn delete_in(tx: &mut Transaction<'_, Any>, gid: i64, actor: Actor) -> ApiResult<Vec<i64>> {
        Self::require_right(tx, gid, actor, admin::DELETE_GROUP).await?;
        let former: Vec<i64> =
            sqlx::query_scalar("SELECT uid FROM members WHERE gid = $1").bind(gid).fetch_all(&mut **tx).await?;
        sqlx::query("DELETE FROM groups WHERE gid = $1").bind(gid).execute(&mut **tx).await?;
        Ok(former)
    }

    /// Every member with their flags, in join order (any member may list).
    pub async fn members(&self, gid: i64, actor: Actor) -> ApiResult<Vec<Member>> {
        Ok(self.members_page(gid, actor, None).await?.0)
    }

    /// Members with their flags, in join order (any member may list): one page and the
    /// cursor of the next, or with `page` `None` all of them.
    pub async fn members_page(
        &self,
        gid: i64,
        actor: Actor,
        page: Option<&PageQuery>,
    ) -> ApiResult<(Vec<Member>, Option<String>)> {
        if let Actor::User(_) = actor {
            self.get(gid, actor).await?;
        } else if self.policy(gid).await?.is_none() {
            return Err(ApiError::not_found("no such group"));
        }
        let limit = page.map_or(usize::MAX - 1, |p| p.size() as usize);
        let (joined, address) = cursor(page.and_then(|p| p.after.as_deref()))?.unwrap_or((i64::MIN, ""));
        let rows = sqlx::query(
            "SELECT u.address, u.name, m.flags, m.admin_flags, m.joined_at FROM members m JOIN users u ON u.uid = m.uid \
             WHERE m.gid = $1 AND (m.joined_at > $2 OR (m.joined_at = $2 AND u.address > $3)) \
             ORDER BY m.joined_at, u.address LIMIT $4",
        )
        .bind(gid)
        .bind(joined)
        .bind(address)
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.db.read)
        .await?;
        let next = match rows.get(limit.saturating_sub(1)) {
            Some(last) if rows.len() > limit => {
                Some(format!("{}.{}", last.try_get::<i64, _>("joined_at")?, last.try_get::<String, _>("address")?))
            }
            _ => None,
        };
        let members = rows
            .iter()
            .take(limit)
            .map(|r| {
                Ok(Member {
                    address: r.try_get("address")?,
                    name: r.try_get("name")?,
                    flags: r.try_get::<i64, _>("flags")? as u32,
                    admin_flags: r.try_get::<i64, _>("admin_flags")? as u32,
                })
            })
            .collect::<ApiResult<Vec<Member>>>()?;
        Ok((members, next))
    }

    /// Adds members by address or updates their flags (ADD_MEMBER; ADD_ADMIN to grant admin,
    /// and only admin rights the actor may grant: see the module doc).
    /// All-or-nothing: an unknown address fails the whole request.
    pub async fn add_members(
        &self,
        gid: i64,
        actor: Actor,
        addresses: &[String],
        flags: u32,
        admin_flags: u32,
    ) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        let added = self.add_members_in(&mut tx, gid, actor, addresses, flags, admin_flags).await?;
        // Counted once the request is known to be valid, before it commits.
        let share = self.take_quota(Quota::MembersAdded, actor, added)?;
        tx.commit().await?;
        share.keep();
        self.invalidate(gid);
        self.announce(gid, GroupEvent::MembersAdded, addresses.to_vec(), &[]).await;
        Ok(())
    }

    /// [`Groups::add_members`] inside the caller's transaction (the caller invalidates and
    /// announces). How many of `addresses` were not members before.
    async fn add_members_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        gid: i64,
        actor: Actor,
        addresses: &[String],
        flags: u32,
        admin_flags: u32,
    ) -> ApiResult<u32> {
        validate_member_flags(flags, admin_flags)?;
        if addresses.is_empty() || addresses.len() > self.cfg.max_group_members {
            return Err(ApiError::bad_request("addresses must list 1 to max_group_members addresses"));
        }
        Self::require_right(tx, gid, actor, admin::ADD_MEMBER).await?;
        if flags & member::ADMIN != 0 || admin_flags != 0 {
            Self::require_right(tx, gid, actor, admin::ADD_ADMIN).await?;
            if admin_flags & admin::OWNER != 0 && actor != Actor::Admin {
                return Err(ApiError::forbidden("only the backend can grant ownership"));
            }
        }
        let can = Self::grantable_by(tx, gid, actor).await?;
        self.lock_group(tx, gid).await?;
        let conv_id: i64 = sqlx::query_scalar("SELECT conv_id FROM conversations WHERE gid = $1")
            .bind(gid)
            .fetch_one(&mut **tx)
            .await?;
        let mut targets = Vec::with_capacity(addresses.len());
        for addr in addresses {
            let uid: Option<i64> = sqlx::query_scalar("SELECT uid FROM users WHERE address = $1")
                .bind(addr)
                .fetch_optional(&mut **tx)
                .await?;
            targets.push((addr, uid.ok_or_else(|| ApiError::not_found(format!("no user with address {addr:?}")))?));
        }
        // Users count against their membership quota; the backend may add past it.
        let quota = actor != Actor::Admin;
        if quota {
            self.lock_users(tx, &targets.iter().map(|t| t.1).collect::<Vec<_>>()).await?;
        }
        let now = now_ms();
        let mut added = 0u32;
        for (addr, uid) in targets {
            let old = Self::membership(tx, gid, uid).await?;
            added += u32::from(old.is_none());
            if let Some(old) = old {
                // Re-adding an existing admin changes their rights: that takes the right to remove admins.
                let changed = old.flags != flags || old.admin_flags != admin_flags;
                if changed && old.admin_flags & admin::OWNER != 0 && actor != Actor::Admin {
                    return Err(ApiError::forbidden("the owner's rights cannot be changed"));
                }
                if changed && old.flags & member::ADMIN != 0 {
                    Self::require_right(tx, gid, actor, admin::REMOVE_ADMIN).await?;
                }
            } else if quota {
                self.check_membership_quota(tx, uid, &format!("{addr} is")).await?;
            }
            // Only what the target does not already hold counts as granted.
            check_grant(can, admin_flags & !old.as_ref().map(effective_admin).unwrap_or(0))?;
            Self::upsert_member(tx, gid, conv_id, uid, flags, admin_flags, now).await?;
        }
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE gid = $1").bind(gid).fetch_one(&mut **tx).await?;
        if count as usize > self.cfg.max_group_members {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("a group has at most {} members", self.cfg.max_group_members),
            ));
        }
        Ok(added)
    }

    /// Removes a member (REMOVE_MEMBER; REMOVE_ADMIN / REMOVE_OWNER for those). Anyone may remove themselves.
    pub async fn remove_member(&self, gid: i64, actor: Actor, address: &str) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        let uid = Self::remove_member_in(&mut tx, gid, actor, address).await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::MembersRemoved, vec![address.to_string()], &[uid]).await;
        Ok(())
    }

    /// Removes several members in one transaction (the backend's `editmembers` with `delete`):
    /// addresses that are not members are skipped; all or nothing otherwise.
    pub async fn remove_members(&self, gid: i64, actor: Actor, addresses: &[String]) -> ApiResult<()> {
        if addresses.is_empty() || addresses.len() > self.cfg.max_group_members {
            return Err(ApiError::bad_request("addresses must list 1 to max_group_members addresses"));
        }
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::REMOVE_MEMBER).await?;
        let (mut removed, mut uids) = (Vec::new(), Vec::new());
        for a in addresses {
            match Self::remove_member_in(&mut tx, gid, actor, a).await {
                Ok(uid) => {
                    removed.push(a.clone());
                    uids.push(uid);
                }
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        if !removed.is_empty() {
            self.invalidate(gid);
            self.announce(gid, GroupEvent::MembersRemoved, removed, &uids).await;
        }
        Ok(())
    }

    /// [`Groups::remove_member`] inside the caller's transaction: the removed member's uid.
    async fn remove_member_in(tx: &mut Transaction<'_, Any>, gid: i64, actor: Actor, address: &str) -> ApiResult<i64> {
        let uid: Option<i64> = sqlx::query_scalar("SELECT uid FROM users WHERE address = $1")
            .bind(address)
            .fetch_optional(&mut **tx)
            .await?;
        let target = match uid {
            Some(uid) => Self::membership(tx, gid, uid).await?.map(|m| (uid, m)),
            None => None,
        };
        let is_self = matches!((actor, target), (Actor::User(a), Some((t, _))) if a == t);
        if !is_self {
            Self::require_right(tx, gid, actor, admin::REMOVE_MEMBER).await?;
        }
        let Some((uid, m)) = target else { return Err(ApiError::not_found("not a member of this group")) };
        if is_self && m.admin_flags & admin::OWNER != 0 {
            return Err(ApiError::forbidden("the owner cannot leave; delete the group instead"));
        }
        if !is_self {
            if m.admin_flags & admin::OWNER != 0 {
                Self::require_right(tx, gid, actor, admin::REMOVE_OWNER).await?;
            } else if m.flags & member::ADMIN != 0 {
                Self::require_right(tx, gid, actor, admin::REMOVE_ADMIN).await?;
            }
        }
        sqlx::query("DELETE FROM members WHERE gid = $1 AND uid = $2").bind(gid).bind(uid).execute(&mut **tx).await?;
        sqlx::query(
            "DELETE FROM conv_members WHERE uid = $2 AND conv_id = (SELECT conv_id FROM conversations WHERE gid = $1)",
        )
        .bind(gid)
        .bind(uid)
        .execute(&mut **tx)
        .await?;
        Ok(uid)
    }

    /// Creates a pin (ADD_PIN; ADD_ADMIN if it grants admin rights, and only admin rights the
    /// actor may grant: see the module doc).
    pub async fn create_pin(&self, gid: i64, actor: Actor, req: &CreatePin) -> ApiResult<Pin> {
        let share = self.take_quota(Quota::PinsCreated, actor, 1)?;
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::ADD_PIN).await?;
        let admin_flags = req.admin_flags.unwrap_or(0);
        if req.flags & member::ADMIN != 0 || admin_flags != 0 {
            Self::require_right(&mut tx, gid, actor, admin::ADD_ADMIN).await?;
            validate_member_flags(req.flags, admin_flags)?;
            if admin_flags & admin::OWNER != 0 {
                return Err(ApiError::forbidden("a pin cannot grant ownership"));
            }
            check_grant(Self::grantable_by(&mut tx, gid, actor).await?, admin_flags)?;
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
        let pin = self.insert_pin(&mut tx, gid, by, req).await?;
        tx.commit().await?;
        share.keep();
        Ok(pin)
    }

    /// Changes a pin's flags, label, expiry or use limit; what `req` does not name is kept.
    /// The changed pin is checked as a new one would be ([`Groups::create_pin`]): ADD_PIN, and
    /// ADD_ADMIN with only admin rights the actor may grant if it grants admin rights. The
    /// actor becomes the pin's granter: its admin part is then capped by their rights.
    pub async fn edit_pin(&self, gid: i64, actor: Actor, pin: &str, req: &EditPin) -> ApiResult<Pin> {
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::ADD_PIN).await?;
        let pin_hash = self.pin_key.hash(gid, pin);
        let row = sqlx::query("SELECT * FROM pins WHERE gid = $1 AND pin_hash = $2")
            .bind(gid)
            .bind(&pin_hash)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("no such pin in this group"))?;
        let old = pin_from_row(&self.pin_key, &row)?;
        let flags = req.flags.unwrap_or(old.flags);
        let admin_flags = req.admin_flags.unwrap_or(old.admin_flags);
        validate_member_flags(flags, admin_flags)?;
        let label = match &req.label {
            Some(l) => pin_label(l)?,
            None => old.label,
        };
        let uses_left = req.uses.unwrap_or(old.uses_left);
        check_uses(uses_left.filter(|_| req.uses.is_some()))?;
        let expires_at = match req.expires_in {
            Some(e) => expires_at(e, now_ms())?,
            None => old.expires_at,
        };
        if flags & member::ADMIN != 0 || admin_flags != 0 {
            Self::require_right(&mut tx, gid, actor, admin::ADD_ADMIN).await?;
            if admin_flags & admin::OWNER != 0 {
                return Err(ApiError::forbidden("a pin cannot grant ownership"));
            }
            check_grant(Self::grantable_by(&mut tx, gid, actor).await?, admin_flags)?;
        }
        let by = if let Actor::User(u) = actor { Some(u) } else { None };
        sqlx::query(
            "UPDATE pins SET flags = $1, admin_flags = $2, label = $3, expires_at = $4, uses_left = $5, created_by = $6 \
             WHERE pin_hash = $7",
        )
        .bind(i64::from(flags))
        .bind(i64::from(admin_flags))
        .bind(&label)
        .bind(expires_at)
        .bind(uses_left)
        .bind(by)
        .bind(&pin_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Pin { pin: old.pin, gid: GroupId(gid), flags, admin_flags, label, expires_at, uses_left })
    }

    /// Lists pins (LIST_PIN).
    pub async fn list_pins(&self, gid: i64, actor: Actor) -> ApiResult<Vec<Pin>> {
        let mut tx = self.db.read.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::LIST_PIN).await?;
        let rows = sqlx::query("SELECT * FROM pins WHERE gid = $1").bind(gid).fetch_all(&mut *tx).await?;
        // Oldest first; the room's publisher pin before its viewer pin; then by pin.
        let mut pins = rows
            .iter()
            .map(|r| {
                let p = pin_from_row(&self.pin_key, r)?;
                let rank = match p.label.as_str() {
                    "publisher" => 0,
                    "viewer" => 1,
                    _ => 2,
                };
                Ok((r.try_get::<i64, _>("created_at")?, rank, p))
            })
            .collect::<ApiResult<Vec<_>>>()?;
        pins.sort_by(|a, b| (a.0, a.1, &a.2.pin).cmp(&(b.0, b.1, &b.2.pin)));
        Ok(pins.into_iter().map(|(_, _, p)| p).collect())
    }

    /// Revokes a pin (REMOVE_PIN).
    pub async fn revoke_pin(&self, gid: i64, actor: Actor, pin: &str) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        Self::require_right(&mut tx, gid, actor, admin::REMOVE_PIN).await?;
        let r = sqlx::query("DELETE FROM pins WHERE gid = $1 AND pin_hash = $2")
            .bind(gid)
            .bind(self.pin_key.hash(gid, pin))
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(ApiError::not_found("no such pin in this group"));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Joins with a pin. Every attempt is counted against the user, the client's network
    /// (an IPv6 address by its /64) and the group before the pin is checked, so concurrent
    /// guesses cannot pass the limits; an attempt that was not a wrong pin is given back. Past
    /// a limit every attempt is refused until the window ends. Joining again never reduces
    /// rights already held.
    pub async fn join(&self, gid: i64, uid: i64, pin: &str, ip: IpAddr) -> ApiResult<Group> {
        let now = Instant::now();
        let keys = [
            (&self.pin_fail_user, uid.to_string()),
            (&self.pin_fail_ip, ip_key(ip)),
            (&self.pin_fail_group, gid.to_string()),
        ];
        for (i, (limiter, key)) in keys.iter().enumerate() {
            if !limiter.hit(key, now) {
                for (l, k) in &keys[..i] {
                    l.undo(k, now);
                }
                return Err(ApiError::rate_limited("too many wrong pins; try again later"));
            }
        }
        let joined = self.join_with_pin(gid, uid, pin).await;
        if !matches!(&joined, Err(e) if e.code == ErrorCode::PinInvalid) {
            for (l, k) in &keys {
                l.undo(k, now);
            }
        }
        joined
    }

    async fn join_with_pin(&self, gid: i64, uid: i64, pin: &str) -> ApiResult<Group> {
        let wrong = || ApiError::new(ErrorCode::PinInvalid, "wrong room id or pin, or the pin expired or was used up");
        let valid = pin.len() >= 6 && pin.len() <= 16 && pin.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(wrong());
        }
        let now = now_ms();
        let mut tx = self.db.write.begin().await?;
        let pin_hash = self.pin_key.hash(gid, pin);
        let row = sqlx::query("SELECT * FROM pins WHERE pin_hash = $1 AND gid = $2")
            .bind(&pin_hash)
            .bind(gid)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Err(wrong()) };
        let p = pin_from_row(&self.pin_key, &row)?;
        let created_by: Option<i64> = row.try_get("created_by")?;
        if p.expires_at.is_some_and(|e| e < now) || p.uses_left.is_some_and(|u| u < 1) {
            return Err(wrong());
        }
        self.lock_group(&mut tx, gid).await?;
        self.lock_users(&mut tx, &[uid]).await?;
        // The pin grants its admin part only as far as its creator still may (backend pins: all).
        let (pin_flags, pin_admin) = match created_by {
            None => (p.flags, p.admin_flags),
            Some(creator) => {
                let can = grantable(Self::membership(&mut tx, gid, creator).await?.as_ref());
                let flags = if can == 0 { p.flags & !member::ADMIN } else { p.flags };
                (flags, p.admin_flags & can)
            }
        };
        let old = Self::membership(&mut tx, gid, uid).await?;
        let base = old.unwrap_or(Membership { flags: 0, admin_flags: 0 });
        // Admin flags held without the admin flag are no rights; a pin does not wake them.
        let (flags, admin_flags) = (base.flags | pin_flags, effective_admin(&base) | pin_admin);
        let gains = flags & !base.flags != 0 || admin_flags & !base.admin_flags != 0;
        // A limited pin is used up only by a join that grants something.
        if p.uses_left.is_some() && gains {
            // Guarded: two joins racing for the last use cannot both get it.
            let used = sqlx::query("UPDATE pins SET uses_left = uses_left - 1 WHERE pin_hash = $1 AND uses_left > 0")
                .bind(&pin_hash)
                .execute(&mut *tx)
                .await?;
            if used.rows_affected() == 0 {
                return Err(wrong());
            }
        }
        let conv_id: i64 = sqlx::query_scalar("SELECT conv_id FROM conversations WHERE gid = $1")
            .bind(gid)
            .fetch_one(&mut *tx)
            .await?;
        if old.is_none() {
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE gid = $1").bind(gid).fetch_one(&mut *tx).await?;
            if count as usize >= self.cfg.max_group_members {
                return Err(ApiError::new(ErrorCode::LimitExceeded, "the group is full"));
            }
            self.check_membership_quota(&mut tx, uid, "you are").await?;
        }
        Self::upsert_member(&mut tx, gid, conv_id, uid, flags, admin_flags, now).await?;
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
    /// Mesibo `setgroup`, one transaction: without `gid`, creates a room (a group with its
    /// publisher and view-only pins) of type `kind` (default 0) owned by `uid`; with `gid`,
    /// changes what `settings` and `kind` name in a room `uid` owns (anyone else: not found).
    pub async fn set_room(
        &self,
        uid: i64,
        gid: Option<i64>,
        settings: &GroupSettings,
        kind: Option<i64>,
    ) -> ApiResult<(Group, RoomInfo)> {
        let actor = Actor::User(uid);
        let share = self.take_quota(Quota::GroupsCreated, actor, u32::from(gid.is_none()))?;
        let mut tx = self.db.write.begin().await?;
        let (gid, pins) = match gid {
            Some(gid) => {
                Self::require_owner(&mut tx, gid, uid).await?;
                Self::update_in(&mut tx, gid, actor, settings, true).await?;
                (gid, None)
            }
            None => {
                let req = CreateGroup { settings: settings.clone(), room: true };
                let created = self.create_in(&mut tx, actor, &req, true).await?;
                (created.group.gid.get(), Some(created.pins))
            }
        };
        if let Some(kind) = kind.or(pins.as_ref().map(|_| 0)) {
            sqlx::query("UPDATE groups SET kind = $1 WHERE gid = $2").bind(kind).bind(gid).execute(&mut *tx).await?;
        }
        let group = Self::load_group(&mut tx, gid, Some(uid)).await?;
        tx.commit().await?;
        share.keep();
        if pins.is_none() {
            self.invalidate(gid);
            self.announce(gid, GroupEvent::Updated, vec![], &[]).await;
        }
        let info = match pins {
            // A new room's pins are the two just made (publisher, then viewer).
            Some(mut pins) if pins.len() == 2 => {
                let viewer = pins.pop().map(|p| p.pin);
                let publisher = pins.pop().map(|p| p.pin);
                RoomInfo { kind: kind.unwrap_or(0), owner: Some(uid), pin: publisher, spin: viewer }
            }
            _ => self.room_info(gid).await?.ok_or_else(|| ApiError::not_found("no such group"))?,
        };
        Ok((group, info))
    }

    /// Checks that `uid` owns `gid`; for anyone else the room does not exist (Mesibo's rooms are
    /// their owner's to change).
    async fn require_owner(tx: &mut Transaction<'_, Any>, gid: i64, uid: i64) -> ApiResult<()> {
        let owner: Option<Option<i64>> = sqlx::query_scalar("SELECT owner_uid FROM groups WHERE gid = $1")
            .bind(gid)
            .fetch_optional(&mut **tx)
            .await?;
        if owner != Some(Some(uid)) {
            return Err(ApiError::not_found("no such room of yours"));
        }
        Ok(())
    }

    /// Mesibo `delgroup`: deletes a room `uid` owns (anyone else: not found), one transaction.
    pub async fn delete_room(&self, gid: i64, uid: i64) -> ApiResult<()> {
        let mut tx = self.db.write.begin().await?;
        Self::require_owner(&mut tx, gid, uid).await?;
        let former = Self::delete_in(&mut tx, gid, Actor::User(uid)).await?;
        tx.commit().await?;
        self.invalidate(gid);
        self.announce(gid, GroupEvent::Deleted, vec![], &former).await;
        Ok(())
    }

    /// The backend's `groupadd` (without `gid`) and `groupset` (with it), one transaction:
    /// creates or updates the group, then adds `members` with `flags` / `admin_flags`
    /// (all or nothing). The group's gid.
    pub async fn backend_set_group(
        &self,
        gid: Option<i64>,
        settings: &GroupSettings,
        members: &[String],
        flags: u32,
        admin_flags: u32,
    ) -> ApiResult<i64> {
        let mut tx = self.db.write.begin().await?;
        let updated = gid.is_some();
        let gid = match gid {
            Some(gid) => {
                Self::update_in(&mut tx, gid, Actor::Admin, settings, true).await?;
                gid
            }
            None => {
                let req = CreateGroup { settings: settings.clone(), room: false };
                self.create_in(&mut tx, Actor::Admin, &req, true).await?.group.gid.get()
            }
        };
        if !members.is_empty() {
            self.add_members_in(&mut tx, gid, Actor::Admin, members, flags, admin_flags).await?;
        }
        tx.commit().await?;
        self.invalidate(gid);
        if updated {
            self.announce(gid, GroupEvent::Updated, vec![], &[]).await;
        }
        if !members.is_empty() {
            self.announce(gid, GroupEvent::MembersAdded, members.to_vec(), &[]).await;
        }
        Ok(gid)
    }

    /// Owner, type and the room's publisher / view-only pins.
    pub async fn room_info(&self, gid: i64) -> ApiResult<Option<RoomInfo>> {
        let row = sqlx::query("SELECT kind, owner_uid FROM groups WHERE gid = $1")
            .bind(gid)
            .fetch_optional(&self.db.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let pin_of = |label: &'static str| async move {
            let sealed = sqlx::query_scalar::<_, String>(
                "SELECT pin_enc FROM pins WHERE gid = $1 AND label = $2 ORDER BY created_at LIMIT 1",
            )
            .bind(gid)
            .bind(label)
            .fetch_optional(&self.db.read)
            .await?;
            sealed.map(|s| open_pin(&self.pin_key, gid, &s)).transpose()
        };
        Ok(Some(RoomInfo {
            kind: row.try_get("kind")?,
            owner: row.try_get("owner_uid")?,
            pin: pin_of("publisher").await?,
            spin: pin_of("viewer").await?,
        }))
    }

    /// Every group `uid` is a member of, most recently joined first, with its room info: one query.
    pub async fn rooms_of(&self, uid: i64) -> ApiResult<Vec<(Group, RoomInfo)>> {
        let first_pin = |label: &str| {
            format!(
                "(SELECT p.pin_enc FROM pins p WHERE p.gid = g.gid AND p.label = '{label}' ORDER BY p.created_at LIMIT 1)"
            )
        };
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLS}, m.flags AS m_flags, m.admin_flags AS m_admin, g.kind, g.owner_uid, \
             {} AS ppin, {} AS vpin FROM members m \
             JOIN groups g ON g.gid = m.gid LEFT JOIN users o ON o.uid = g.owner_uid \
             WHERE m.uid = $1 ORDER BY m.joined_at DESC, g.gid DESC",
            first_pin("publisher"),
            first_pin("viewer")
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
                let gid: i64 = r.try_get("gid")?;
                let open = |col: &str| -> ApiResult<Option<String>> {
                    let sealed: Option<String> = r.try_get(col)?;
                    sealed.map(|s| open_pin(&self.pin_key, gid, &s)).transpose()
                };
                let info = RoomInfo {
                    kind: r.try_get("kind")?,
                    owner: r.try_get("owner_uid")?,
                    pin: open("ppin")?,
                    spin: open("vpin")?,
                };
                Ok((group_from_row(r, Some(m))?, info))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(flags: u32, admin_flags: u32) -> Membership {
        Membership { flags, admin_flags }
    }

    #[test]
    fn who_may_grant_what() {
        let owner = m(member::ALL | member::ADMIN, admin::OWNER_ALL);
        assert_eq!(grantable(Some(&owner)), admin::ALL, "the owner: everything but ownership");
        let adder = m(member::ADMIN, admin::ADD_ADMIN | admin::MODIFY | admin::DELETE_GROUP);
        assert_eq!(grantable(Some(&adder)), admin::ADD_ADMIN | admin::MODIFY, "own rights, less owner-level");
        assert_eq!(grantable(Some(&m(member::ADMIN, admin::ALL & !admin::ADD_ADMIN))), 0, "no ADD_ADMIN: nothing");
        assert_eq!(grantable(Some(&m(member::ALL, admin::OWNER_ALL))), 0, "admin flags without the admin flag");
        assert_eq!(grantable(None), 0);
    }

    #[test]
    fn grants_beyond_the_granters_rights_are_forbidden() {
        let can = Some(admin::ADD_ADMIN | admin::MODIFY);
        assert!(check_grant(can, admin::MODIFY).is_ok());
        assert!(check_grant(can, 0).is_ok());
        for gained in [admin::HANGUP, admin::DELETE_GROUP, admin::REMOVE_OWNER, admin::OWNER] {
            let e = check_grant(can, gained).unwrap_err();
            assert_eq!(e.code, ErrorCode::Forbidden, "{gained:#x}");
        }
        assert_eq!(check_grant(Some(admin::ALL), admin::OWNER).unwrap_err().code, ErrorCode::Forbidden);
        assert!(check_grant(None, admin::OWNER_ALL).is_ok(), "the backend grants anything");
    }

    #[test]
    fn cursors_parse_or_fail_clearly() {
        assert_eq!(cursor(None).unwrap(), None);
        assert_eq!(cursor(Some("17.ab.c")).unwrap(), Some((17, "ab.c")));
        for bad in ["", "x.1", "17", "-.1"] {
            assert_eq!(cursor(Some(bad)).unwrap_err().code, ErrorCode::BadRequest, "{bad:?}");
        }
    }
}
