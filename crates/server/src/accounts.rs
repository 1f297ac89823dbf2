//! Accounts: one-time-code login, access tokens, users.
//!
//! Owns the tables `users`, `login_codes` and `tokens`. Secrets (codes and
//! tokens) are stored only as SHA-256 hashes; a token is 256 random bits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_proto::rest::LoginSession;
use chorus_proto::ws::SessionUser;
use chorus_proto::ErrorCode;
use chorus_proto::UserId;
use sqlx::Row;

use crate::auth_token::{ct_eq, hash, random_digits, random_hex, random_token};
use crate::bus::{closing, token_fingerprint, FanOut};
use crate::clock::now_ms;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::limiter::{ip_key, WindowLimiter};
use crate::mail::Mailer;

/// The largest page the admin listings (`/backend` `usersget`, `groupsget`) return.
pub const ADMIN_PAGE_MAX: u32 = 1000;

/// A user as the admin listing shows them.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub uid: i64,
    pub address: String,
    pub name: String,
    pub active: bool,
    /// Creation time, ms.
    pub created_at: i64,
}

/// WebSocket close code for a session whose token or account was revoked.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;

/// Who a login code is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A normalised (lower-case) email.
    Email(String),
    /// A phone number: digits only, with country code.
    Phone(String),
}

impl Identity {
    /// Validates and normalises an email or a phone (exactly one must be given).
    pub fn parse(email: Option<&str>, phone: Option<&str>) -> ApiResult<Identity> {
        match (email.map(str::trim).filter(|s| !s.is_empty()), phone.map(str::trim).filter(|s| !s.is_empty())) {
            (Some(e), None) => Ok(Identity::Email(normalize_email(e)?)),
            (None, Some(p)) => Ok(Identity::Phone(normalize_phone(p)?)),
            (Some(_), Some(_)) => Err(ApiError::bad_request("give either email or phone, not both")),
            (None, None) => Err(ApiError::bad_request("email (or phone) is required")),
        }
    }

    fn key(&self) -> String {
        match self {
            Identity::Email(e) => format!("email:{e}"),
            Identity::Phone(p) => format!("phone:{p}"),
        }
    }
}

/// Lower-cases and checks an email address.
pub fn normalize_email(e: &str) -> ApiResult<String> {
    let e = e.trim().to_lowercase();
    if e.len() > 254 || e.parse::<lettre::Address>().is_err() {
        return Err(ApiError::bad_request("email is not a valid address"));
    }
    Ok(e)
}

/// Strips `+`, leading zeros and separators; requires 9–15 digits.
pub fn normalize_phone(p: &str) -> ApiResult<String> {
    let cleaned: String = p.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    let digits = cleaned.trim_start_matches('+').trim_start_matches('0');
    if !(9..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request("phone must be 9 to 15 digits with country code"));
    }
    Ok(digits.to_string())
}

/// Checks a display name: 1–64 characters, none of them control, invisible or
/// text-direction characters (see [`invisible_at`]).
pub fn validate_name(name: &str) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ApiError::bad_request("name must be 1 to 64 printable characters"));
    }
    let chars: Vec<char> = n.chars().collect();
    if let Some(i) = (0..chars.len()).find(|&i| invisible_at(&chars, i)) {
        return Err(ApiError::bad_request(format!(
            "name must not contain invisible or text-direction characters (U+{:04X})",
            u32::from(chars[i])
        )));
    }
    Ok(n.to_string())
}

/// Whether `chars[i]` is a character a display name may not hold: one that changes the
/// direction of the text around it (bidi embeddings, overrides, isolates and marks, which let
/// a name show as something else next to other text), or that is invisible (zero-width
/// spaces and joiners, word joiner, byte-order mark, soft hyphen, fillers and blanks, private-use
/// and unassigned code points), which make names that look alike but differ. The joiners are
/// allowed where scripts need them: U+200D inside an emoji sequence (👩‍💻), U+200C and U+200D
/// between letters of scripts from Hebrew on (Persian, Indic …); tag characters only in an
/// emoji flag tag sequence.
fn invisible_at(chars: &[char], i: usize) -> bool {
    use unicode_properties::{GeneralCategory as G, GeneralCategoryGroup, UnicodeEmoji, UnicodeGeneralCategory};
    let c = chars[i];
    let prev = i.checked_sub(1).map(|p| chars[p]);
    let next = chars.get(i + 1).copied();
    let emoji = |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && c.is_emoji_char_or_emoji_component());
    let joined_letter = |c: Option<char>| {
        c.is_some_and(|c| {
            u32::from(c) >= 0x0590 && (c.is_alphabetic() || c.general_category_group() == GeneralCategoryGroup::Mark)
        })
    };
    match c {
        // Blanks that are not format characters: Hangul fillers, braille blank, grapheme joiner.
        '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}' | '\u{034F}' => true,
        '\u{200D}' if emoji(prev) && emoji(next) => false,
        '\u{200C}' | '\u{200D}' if joined_letter(prev) && joined_letter(next) => false,
        // Tags follow U+1F3F4 (black flag) in subdivision flags.
        '\u{E0020}'..='\u{E007F}'
            if prev.is_some_and(|p| p == '\u{1F3F4}' || ('\u{E0020}'..='\u{E007F}').contains(&p)) =>
        {
            false
        }
        _ => matches!(
            c.general_category(),
            G::Format | G::LineSeparator | G::ParagraphSeparator | G::PrivateUse | G::Unassigned | G::Surrogate
        ),
    }
}

/// Checks an address given by an admin: 1–63 of `[A-Za-z0-9_.+@-]`.
pub fn validate_address(addr: &str) -> ApiResult<&str> {
    let ok = !addr.is_empty()
        && addr.len() <= 63
        && addr.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+@-".contains(&b));
    if !ok {
        return Err(ApiError::bad_request("address must be 1 to 63 characters of A-Z a-z 0-9 _ . + @ -"));
    }
    Ok(addr)
}

/// What [`Accounts::check_code`] found.
enum Checked {
    /// The code was right.
    Session(LoginSession),
    /// The code was wrong; the guess was counted (committed).
    Wrong(ApiError),
}

/// The answer once an identity's wrong guesses reached their bound (`window_secs` long).
fn locked_for_today(window_secs: u64) -> ApiError {
    let window = if window_secs >= 3600 {
        format!("{} hours", window_secs.div_ceil(3600))
    } else {
        format!("{} seconds", window_secs)
    };
    ApiError::new(
        ErrorCode::CodeLocked,
        format!("too many wrong codes for this login; no code is accepted for up to {window}"),
    )
}

/// The accounts service.
pub struct Accounts {
    db: Db,
    cfg: Arc<Config>,
    mailer: Mailer,
    bus: Arc<dyn FanOut>,
    codes_per_ip: WindowLimiter,
    /// Wrong codes per identity and client network (the total per identity is in the store).
    failures_per_net: WindowLimiter,
    addresses: AddressCache,
}

/// How long a resolved address is trusted. Changes made through this process drop the cache
/// at once (in cluster mode on every node, [`crate::bus::Invalidation::Addresses`]); the
/// lifetime bounds how long a change made elsewhere (a manual edit) goes unseen.
const ADDRESS_TTL: Duration = Duration::from_secs(5);
/// Most addresses cached before the cache starts over.
const ADDRESS_CACHE: usize = 100_000;

/// A resolved user and when it was read.
type Cached = (SessionUser, Instant);

/// Active users by address, for [`Accounts::by_address`] (every 1:1 send resolves its
/// recipient). Only found users are cached. The generation (first field) counts changes to
/// users: a lookup that started before a change does not put what it read in the cache after it.
#[derive(Default)]
struct AddressCache {
    inner: std::sync::Mutex<(u64, HashMap<String, Cached>)>,
}

impl AddressCache {
    fn generation(&self) -> u64 {
        self.inner.lock().expect("address cache poisoned").0
    }

    fn get(&self, address: &str, now: Instant) -> Option<SessionUser> {
        let c = self.inner.lock().expect("address cache poisoned");
        c.1.get(address).filter(|(_, at)| now.duration_since(*at) < ADDRESS_TTL).map(|(u, _)| u.clone())
    }

    fn put(&self, generation: u64, user: &SessionUser, now: Instant) {
        let mut c = self.inner.lock().expect("address cache poisoned");
        if c.0 != generation {
            return;
        }
        if c.1.len() >= ADDRESS_CACHE {
            c.1.clear();
        }
        c.1.insert(user.address.clone(), (user.clone(), now));
    }

    /// Called after every committed change to users.
    fn forget(&self) {
        let mut c = self.inner.lock().expect("address cache poisoned");
        c.0 += 1;
        c.1.clear();
    }
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<SessionUser, sqlx::Error> {
    Ok(SessionUser { uid: UserId(row.try_get("uid")?), address: row.try_get("address")?, name: row.try_get("name")? })
}

impl Accounts {
    /// A change to users committed: drop the address cache here and (cluster mode) on every node.
    fn users_changed(&self) {
        self.addresses.forget();
        self.bus.invalidate(crate::bus::Invalidation::Addresses);
    }

    /// Another node changed users (cluster mode): drop the address cache here.
    pub fn users_changed_elsewhere(&self) {
        self.addresses.forget();
    }

    /// Builds the service and starts its purge task (so it needs a Tokio runtime).
    pub fn new(db: Db, cfg: Arc<Config>, mailer: Mailer, bus: Arc<dyn FanOut>) -> Self {
        tokio::spawn(purge_loop(db.clone(), cfg.clone(), mailer.outbox().to_path_buf()));
        let window = Duration::from_secs(cfg.rate_window_secs);
        Accounts {
            codes_per_ip: WindowLimiter::new(cfg.code_requests_per_ip, window),
            failures_per_net: WindowLimiter::new(
                cfg.code_failures_per_identity_ip,
                Duration::from_secs(cfg.code_failure_window_secs),
            ),
            db,
            cfg,
            mailer,
            bus,
            addresses: AddressCache::default(),
        }
    }

    /// Creates a login code and sends it. Returns its lifetime in seconds.
    ///
    /// A new code replaces the identity's earlier one, but not while the earlier one is still
    /// usable and younger than `code_request_interval_secs`: then the request is refused
    /// (`rate_limited`) and the earlier code stays valid. So nobody can lock a user out by
    /// requesting codes for them; at worst they replace the user's code once per interval.
    pub async fn request_code(&self, id: &Identity, ip: IpAddr) -> ApiResult<u64> {
        let now = Instant::now();
        if !self.codes_per_ip.hit(&ip_key(ip), now) {
            return Err(ApiError::rate_limited("too many login requests from this address; try later"));
        }
        let code = random_digits(6);
        let ts = now_ms();
        let ttl = self.cfg.code_ttl_secs;
        let interval = (self.cfg.code_request_interval_secs as i64).saturating_mul(1000);
        // One statement checks the interval and writes the code, so concurrent requests
        // cannot both pass. The wrong-guess count (`failures`) survives a new code.
        let written = sqlx::query(
            "INSERT INTO login_codes (identity, code_hash, attempts, expires_at, created_at) \
             VALUES ($1, $2, 0, $3, $4) \
             ON CONFLICT (identity) DO UPDATE SET code_hash = $2, attempts = 0, expires_at = $3, created_at = $4 \
             WHERE login_codes.created_at <= $5 OR login_codes.expires_at <= $4 OR login_codes.attempts >= $6",
        )
        .bind(id.key())
        .bind(hash(&[&id.key(), &code]))
        .bind(ts.saturating_add((ttl as i64).saturating_mul(1000)))
        .bind(ts)
        .bind(ts.saturating_sub(interval))
        .bind(i64::from(self.cfg.code_max_attempts))
        .execute(&self.db.write)
        .await?;
        if written.rows_affected() == 0 {
            return Err(ApiError::rate_limited(format!(
                "a code was sent for this login less than {} seconds ago; use it, or ask again later",
                self.cfg.code_request_interval_secs
            )));
        }
        let minutes = ttl.div_ceil(60);
        let body = format!(
            "Your Chorus login code is {code}\n\nIt expires in {minutes} minutes. If you did not ask for it, ignore this message.\n"
        );
        let sent = match id {
            Identity::Email(e) => self.mailer.send_mail(e, &format!("Chorus login code {code}"), &body).await,
            Identity::Phone(p) => self.mailer.send_sms(p, &body).await,
        };
        if sent.is_ok() {
            crate::metrics::metrics().login_codes_sent.inc();
        }
        if let Err(e) = sent {
            // Nobody has this code: retire it, so a retry need not wait for the interval.
            let retired = sqlx::query(
                "UPDATE login_codes SET code_hash = '', expires_at = 0 WHERE identity = $1 AND code_hash = $2",
            )
            .bind(id.key())
            .bind(hash(&[&id.key(), &code]))
            .execute(&self.db.write)
            .await;
            if let Err(db) = retired {
                tracing::warn!(error = %db, "retiring an unsent login code");
            }
            return Err(ApiError::internal(format_args!("sending login code: {e}")));
        }
        Ok(ttl)
    }

    /// Checks a code; on success creates the user if new and issues a token.
    ///
    /// Wrong guesses are bounded three ways: `code_max_attempts` per code, and per identity
    /// across all its codes `code_failures_per_identity` per `code_failure_window_secs`
    /// (stored with the code, so a restart does not reset it), of which at most
    /// `code_failures_per_identity_ip` from one network. Past a bound every guess is refused
    /// with `code_locked` before it is compared.
    pub async fn verify(
        &self,
        id: &Identity,
        code: &str,
        name: Option<&str>,
        ip: IpAddr,
        appid: &str,
    ) -> ApiResult<LoginSession> {
        let name = name.map(validate_name).transpose()?;
        let renamed = name.is_some();
        let now = Instant::now();
        if !self.codes_per_ip.hit(&ip_key(ip), now) {
            return Err(ApiError::rate_limited("too many login attempts from this address; try later"));
        }
        let code = code.trim();
        let key = id.key();
        // Counted only for wrong guesses, so only real guesses make entries. (Concurrent guesses
        // from one network can pass this share by a few; the store's total is exact.)
        let net_key = format!("{key}|{}", ip_key(ip));
        if self.failures_per_net.exceeded(&net_key, now) {
            return Err(locked_for_today(self.cfg.code_failure_window_secs));
        }
        match self.check_code(id, &key, code, name.as_deref(), appid).await? {
            Checked::Session(session) => {
                if renamed {
                    self.users_changed();
                }
                Ok(session)
            }
            Checked::Wrong(e) => {
                self.failures_per_net.hit(&net_key, now);
                Err(e)
            }
        }
    }

    /// The transaction of [`Accounts::verify`].
    async fn check_code(
        &self,
        id: &Identity,
        key: &str,
        code: &str,
        name: Option<&str>,
        appid: &str,
    ) -> ApiResult<Checked> {
        let ts = now_ms();
        let window_start = ts.saturating_sub((self.cfg.code_failure_window_secs as i64).saturating_mul(1000));
        let mut tx = self.db.write.begin().await?;
        // Claim an attempt and a failure before comparing, in one statement: concurrent
        // guesses each use one up (the row lock serialises them on PostgreSQL). A right
        // code gives the failure back; a refusal rolls both back.
        let row = sqlx::query(
            "UPDATE login_codes SET attempts = attempts + 1, \
             failures = CASE WHEN failures_since <= $2 THEN 1 ELSE failures + 1 END, \
             failures_since = CASE WHEN failures_since <= $2 THEN $3 ELSE failures_since END \
             WHERE identity = $1 RETURNING code_hash, attempts, expires_at, failures",
        )
        .bind(key)
        .bind(window_start)
        .bind(ts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(ApiError::new(
                ErrorCode::CodeExpired,
                "no login code was requested, or it expired; request a new one",
            ));
        };
        let stored: String = row.try_get("code_hash")?;
        let attempt: i64 = row.try_get("attempts")?;
        let expires_at: i64 = row.try_get("expires_at")?;
        let failure: i64 = row.try_get("failures")?;
        let max = i64::from(self.cfg.code_max_attempts);
        // Returning early drops the transaction: the claimed attempt is rolled back.
        if expires_at <= ts {
            return Err(ApiError::new(ErrorCode::CodeExpired, "the login code expired; request a new one"));
        }
        if failure > i64::from(self.cfg.code_failures_per_identity) {
            return Err(locked_for_today(self.cfg.code_failure_window_secs));
        }
        if attempt > max {
            return Err(ApiError::new(ErrorCode::CodeLocked, "too many wrong codes; request a new code"));
        }
        if !ct_eq(&stored, &hash(&[key, code])) {
            tx.commit().await?;
            if attempt >= max {
                return Ok(Checked::Wrong(ApiError::new(
                    ErrorCode::CodeLocked,
                    "wrong code; no attempts left: request a new code",
                )));
            }
            let left = max - attempt;
            return Ok(Checked::Wrong(ApiError::new(
                ErrorCode::CodeInvalid,
                format!("wrong code; {left} attempts left"),
            )));
        }
        // Used up, but the row (and its count of wrong guesses) stays until the purge.
        sqlx::query(
            "UPDATE login_codes SET code_hash = '', expires_at = 0, attempts = 0, failures = failures - 1 WHERE identity = $1",
        )
        .bind(key)
        .execute(&mut *tx)
        .await?;
        let (col, value) = match id {
            Identity::Email(e) => ("email", e.as_str()),
            Identity::Phone(p) => ("phone", p.as_str()),
        };
        let existing = sqlx::query(&format!("SELECT uid, address, name FROM users WHERE {col} = $1"))
            .bind(value)
            .fetch_optional(&mut *tx)
            .await?;
        let user = match existing {
            Some(row) => {
                let mut u = user_from_row(&row)?;
                if let Some(n) = name {
                    sqlx::query("UPDATE users SET name = $1 WHERE uid = $2")
                        .bind(n)
                        .bind(u.uid.get())
                        .execute(&mut *tx)
                        .await?;
                    u.name = n.to_string();
                }
                u
            }
            None => {
                let address = format!("u{}", random_hex(8));
                let name = name.map_or_else(|| format!("User {}", &address[address.len() - 4..]), str::to_string);
                let uid: i64 = sqlx::query_scalar(&format!(
                    "INSERT INTO users (address, {col}, name, created_at) VALUES ($1, $2, $3, $4) RETURNING uid"
                ))
                .bind(&address)
                .bind(value)
                .bind(&name)
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?;
                SessionUser { uid: UserId(uid), address, name }
            }
        };
        let (token, expires_at) = issue_token(&mut tx, user.uid.get(), appid, self.cfg.token_ttl_secs).await?;
        tx.commit().await?;
        Ok(Checked::Session(LoginSession { token, expires_at, user }))
    }

    /// The user behind an access token, if it is valid and unexpired.
    pub async fn authenticate(&self, token: &str) -> ApiResult<SessionUser> {
        if token.len() < 16 || token.len() > 256 {
            return Err(ApiError::unauthorized());
        }
        let row = sqlx::query(
            "SELECT u.uid, u.address, u.name FROM tokens t JOIN users u ON u.uid = t.uid \
             WHERE t.token_hash = $1 AND t.expires_at > $2 AND u.active = 1",
        )
        .bind(hash(&[token]))
        .bind(now_ms())
        .fetch_optional(&self.db.read)
        .await?;
        match row {
            Some(r) => Ok(user_from_row(&r)?),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Revokes one token and ends the sessions opened with it. Returns whether it existed.
    pub async fn revoke(&self, token: &str) -> ApiResult<bool> {
        let uid: Option<i64> = sqlx::query_scalar("DELETE FROM tokens WHERE token_hash = $1 RETURNING uid")
            .bind(hash(&[token]))
            .fetch_optional(&self.db.write)
            .await?;
        if let Some(uid) = uid {
            self.end_sessions(uid, Some(token_fingerprint(token)), "the access token was revoked");
        }
        Ok(uid.is_some())
    }

    /// Closes live WebSocket sessions of `uid` (those of one token, if given).
    fn end_sessions(&self, uid: i64, token: Option<u64>, why: &str) {
        let frame = chorus_proto::ws::ServerFrame::Error {
            rid: None,
            id: None,
            code: ErrorCode::Unauthorized,
            message: format!("session ended: {why}"),
            status: None,
        };
        self.bus.disconnect(uid, token, closing(&frame, CLOSE_UNAUTHORIZED));
    }

    /// Renames a user.
    pub async fn rename(&self, uid: i64, name: &str) -> ApiResult<String> {
        let name = validate_name(name)?;
        sqlx::query("UPDATE users SET name = $1 WHERE uid = $2").bind(&name).bind(uid).execute(&self.db.write).await?;
        self.users_changed();
        Ok(name)
    }

    /// Looks a user up by address.
    pub async fn by_address(&self, address: &str) -> ApiResult<Option<SessionUser>> {
        if let Some(u) = self.addresses.get(address, Instant::now()) {
            return Ok(Some(u));
        }
        let generation = self.addresses.generation();
        let row = sqlx::query("SELECT uid, address, name FROM users WHERE address = $1 AND active = 1")
            .bind(address)
            .fetch_optional(&self.db.read)
            .await?;
        let user = row.map(|r| user_from_row(&r)).transpose()?;
        if let Some(u) = &user {
            self.addresses.put(generation, u, Instant::now());
        }
        Ok(user)
    }

    /// A user's address by uid.
    pub async fn address_of(&self, uid: i64) -> ApiResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT address FROM users WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&self.db.read)
            .await?)
    }

    /// Admin: creates or updates a user by address, optionally issuing a token
    /// valid for `token_ttl_secs` (`None`: no token). `active` `None` keeps an existing user's
    /// state (a new user is active). With `create` false an unknown address is `not_found` and
    /// nothing is written.
    pub async fn admin_upsert(
        &self,
        address: &str,
        name: Option<&str>,
        active: Option<bool>,
        token: Option<(&str, u64)>,
        create: bool,
    ) -> ApiResult<(SessionUser, Option<String>)> {
        validate_address(address)?;
        let name = name.map(validate_name).transpose()?;
        let mut tx = self.db.write.begin().await?;
        let existing = sqlx::query("SELECT uid, address, name FROM users WHERE address = $1")
            .bind(address)
            .fetch_optional(&mut *tx)
            .await?;
        let user = match existing {
            Some(row) => {
                let mut u = user_from_row(&row)?;
                if let Some(n) = &name {
                    u.name = n.clone();
                }
                sqlx::query("UPDATE users SET name = $1, active = COALESCE($2, active) WHERE uid = $3")
                    .bind(&u.name)
                    .bind(active.map(i64::from))
                    .bind(u.uid.get())
                    .execute(&mut *tx)
                    .await?;
                u
            }
            None if !create => return Err(ApiError::not_found(format!("no user with address {address:?}"))),
            None => {
                let active = active.unwrap_or(true);
                let name = name.unwrap_or_else(|| address.to_string());
                let uid: i64 = sqlx::query_scalar(
                    "INSERT INTO users (address, name, active, created_at) VALUES ($1, $2, $3, $4) RETURNING uid",
                )
                .bind(address)
                .bind(&name)
                .bind(i64::from(active))
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?;
                SessionUser { uid: UserId(uid), address: address.to_string(), name }
            }
        };
        let token = match token {
            Some((appid, ttl)) => Some(issue_token(&mut tx, user.uid.get(), appid, ttl).await?.0),
            None => None,
        };
        tx.commit().await?;
        self.users_changed();
        if active == Some(false) {
            self.end_sessions(user.uid.get(), None, "the account was deactivated");
        }
        Ok((user, token))
    }

    /// Admin: one page of users in uid order, those with uid > `after`, at most `limit`
    /// (1 ..= [`ADMIN_PAGE_MAX`]); with `address`, only that user. Returns the page and the
    /// cursor (last uid) of the next page if there is one.
    pub async fn admin_list(
        &self,
        after: i64,
        limit: u32,
        address: Option<&str>,
    ) -> ApiResult<(Vec<AdminUser>, Option<i64>)> {
        if limit == 0 || limit > ADMIN_PAGE_MAX {
            return Err(ApiError::bad_request(format!("count must be 1 to {ADMIN_PAGE_MAX}")));
        }
        let rows = sqlx::query(
            "SELECT uid, address, name, active, created_at FROM users \
             WHERE uid > $1 AND ($2 = '' OR address = $2) ORDER BY uid LIMIT $3",
        )
        .bind(after)
        .bind(address.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.db.read)
        .await?;
        let mut users = rows
            .iter()
            .map(|r| {
                Ok(AdminUser {
                    uid: r.try_get("uid")?,
                    address: r.try_get("address")?,
                    name: r.try_get("name")?,
                    active: r.try_get::<i64, _>("active")? != 0,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<ApiResult<Vec<AdminUser>>>()?;
        let next = if users.len() > limit as usize {
            users.truncate(limit as usize);
            users.last().map(|u| u.uid)
        } else {
            None
        };
        Ok((users, next))
    }

    /// Admin: deletes a user and everything that belongs to them. Returns whether they existed.
    pub async fn admin_delete(&self, address: &str) -> ApiResult<bool> {
        let uid: Option<i64> = sqlx::query_scalar("DELETE FROM users WHERE address = $1 RETURNING uid")
            .bind(address)
            .fetch_optional(&self.db.write)
            .await?;
        self.users_changed();
        if let Some(uid) = uid {
            self.end_sessions(uid, None, "the account was deleted");
        }
        Ok(uid.is_some())
    }
}

/// Every `purge_interval_secs` (and at start): deletes expired tokens, login codes that
/// expired and whose wrong-guess window ended, and outbox files older than twice the code
/// lifetime (their codes are dead). Failures are logged and tried again next time.
async fn purge_loop(db: Db, cfg: Arc<Config>, outbox: std::path::PathBuf) {
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.purge_interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match purge(&db, &cfg, &outbox).await {
            Ok((tokens, codes, files)) if tokens + codes + files as u64 > 0 => {
                tracing::info!(tokens, codes, files, "purged expired tokens, login codes and outbox files");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge failed; trying again later"),
        }
    }
}

/// One purge; returns how many tokens, codes and outbox files it deleted.
async fn purge(db: &Db, cfg: &Config, outbox: &std::path::Path) -> anyhow::Result<(u64, u64, usize)> {
    let now = now_ms();
    let tokens = sqlx::query("DELETE FROM tokens WHERE expires_at <= $1").bind(now).execute(&db.write).await?;
    let window = (cfg.code_failure_window_secs as i64).saturating_mul(1000);
    let codes = sqlx::query("DELETE FROM login_codes WHERE expires_at <= $1 AND failures_since <= $2")
        .bind(now)
        .bind(now.saturating_sub(window))
        .execute(&db.write)
        .await?;
    let files = crate::mail::purge_outbox(outbox, Duration::from_secs(cfg.code_ttl_secs.saturating_mul(2))).await?;
    Ok((tokens.rows_affected(), codes.rows_affected(), files))
}

async fn issue_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    uid: i64,
    appid: &str,
    ttl_secs: u64,
) -> ApiResult<(String, i64)> {
    let token = random_token(32);
    let now = now_ms();
    let expires_at = now.saturating_add((ttl_secs as i64).saturating_mul(1000));
    sqlx::query("INSERT INTO tokens (token_hash, uid, appid, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(hash(&[&token]))
        .bind(uid)
        .bind(appid)
        .bind(now)
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok((token, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_normalise() {
        assert_eq!(Identity::parse(Some(" A@B.org "), None).unwrap(), Identity::Email("a@b.org".into()));
        assert_eq!(Identity::parse(None, Some("+1 (555) 123-4567")).unwrap(), Identity::Phone("15551234567".into()));
        assert_eq!(Identity::parse(None, Some("0091 98765 43210")).unwrap(), Identity::Phone("919876543210".into()));
        assert!(Identity::parse(None, Some("12345")).is_err());
        assert!(Identity::parse(Some("not-an-email"), None).is_err());
        assert!(Identity::parse(None, None).is_err());
        assert!(Identity::parse(Some("a@b.c"), Some("123456789")).is_err());
    }

    #[test]
    fn names_and_addresses() {
        assert!(validate_name("  Ann ").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a\nb").is_err());
        // Text direction: "Ann\u{202E}gpj.exe" shows as "Annexe.jpg".
        for bad in ["Ann\u{202E}gpj.exe", "\u{202D}Bob", "a\u{2066}b\u{2069}", "Eve\u{200F}", "\u{061C}x"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        // Invisible: zero-width space, joiners between Latin letters, word joiner, BOM,
        // soft hyphen, Hangul filler, braille blank, private use.
        for bad in [
            "An\u{200B}n",
            "A\u{200D}nn",
            "A\u{200C}nn",
            "Ann\u{2060}",
            "\u{FEFF}Ann",
            "An\u{AD}n",
            "\u{3164}",
            "x\u{2800}",
            "\u{E000}",
            "a\u{2028}b",
            "\u{200D}\u{1F4BB}",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        // What real names need stays: emoji sequences with joiners, Persian and Hindi joiners,
        // flags, accents, non-Latin scripts.
        for good in [
            "Dev \u{1F469}\u{200D}\u{1F4BB}",
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "\u{2764}\u{FE0F} Zoë",
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            "\u{0915}\u{094D}\u{200D}\u{0937}",
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F} Ian",
            "José Müller-Łukasz",
            "王小明",
            "Анна",
        ] {
            assert_eq!(validate_name(good).unwrap(), good, "{good:?}");
        }
        assert!(validate_address("user-1@x").is_ok());
        assert!(validate_address("has space").is_err());
        assert!(validate_address(&"a".repeat(64)).is_err());
    }
}
