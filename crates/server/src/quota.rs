//! Per-user quotas on what an account creates per hour: groups, pins, members added to groups
//! and calls started (a group call started by its first joiner, or a 1:1 call dialled).
//!
//! Totals are bounded elsewhere (`max_groups_per_user`, `max_group_pins`, `max_group_members`,
//! `max_memberships_per_user`); these rates bound the churn in between, so one account cannot
//! make the server create and delete rows, announce group changes or start room tasks without
//! end. The backend (admin token) is never counted. A quota past its limit answers
//! `rate_limited` (HTTP 429) and changes nothing; a request refused for another reason gives
//! its share back. Counts are kept in memory (a [`WindowLimiter`] per quota, one hour from a
//! user's first counted event): a restart starts them afresh.

use std::time::{Duration, Instant};

use chorus_proto::ErrorCode;

use crate::config::Config;
use crate::error::ApiError;
use crate::limiter::WindowLimiter;

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Groups (and Mesibo rooms) created: `groups_created_per_hour`.
    GroupsCreated,
    /// Pins created with `POST …/pins` (Mesibo `addPin`): `pins_created_per_hour`.
    PinsCreated,
    /// Members newly added to groups by this user: `members_added_per_hour`.
    MembersAdded,
    /// Group calls started (first joiner) and 1:1 calls dialled: `calls_started_per_hour`.
    CallsStarted,
}

impl Quota {
    const ALL: [Quota; 4] = [Quota::GroupsCreated, Quota::PinsCreated, Quota::MembersAdded, Quota::CallsStarted];

    /// The setting's name, for messages.
    pub fn setting(self) -> &'static str {
        match self {
            Quota::GroupsCreated => "groups_created_per_hour",
            Quota::PinsCreated => "pins_created_per_hour",
            Quota::MembersAdded => "members_added_per_hour",
            Quota::CallsStarted => "calls_started_per_hour",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Quota::GroupsCreated => "groups created",
            Quota::PinsCreated => "pins created",
            Quota::MembersAdded => "members added",
            Quota::CallsStarted => "calls started",
        }
    }

    fn limit(self, cfg: &Config) -> u32 {
        match self {
            Quota::GroupsCreated => cfg.groups_created_per_hour,
            Quota::PinsCreated => cfg.pins_created_per_hour,
            Quota::MembersAdded => cfg.members_added_per_hour,
            Quota::CallsStarted => cfg.calls_started_per_hour,
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// The four hourly quotas; a limit of 0 turns one off.
#[derive(Debug)]
pub struct Quotas {
    limiters: [Option<(u32, WindowLimiter)>; 4],
}

/// A share of a quota taken for one request. Dropped without [`Taken::keep`] (the request
/// failed), it is given back.
#[must_use = "a share not kept is given back when dropped"]
pub struct Taken<'a> {
    limiter: Option<&'a WindowLimiter>,
    uid: i64,
    n: u32,
    at: Instant,
}

impl Taken<'_> {
    /// The request succeeded: the share stays counted.
    pub fn keep(mut self) {
        self.limiter = None;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.limiter {
            l.undo_n(&self.uid.to_string(), self.n, self.at);
        }
    }
}

impl Quotas {
    /// The quotas of `cfg`.
    pub fn new(cfg: &Config) -> Quotas {
        Quotas {
            limiters: Quota::ALL.map(|q| match q.limit(cfg) {
                0 => None,
                n => Some((n, WindowLimiter::new(n, HOUR))),
            }),
        }
    }

    /// Takes `n` of user `uid`'s quota `q`, or refuses with `rate_limited` (nothing taken).
    pub fn take(&self, q: Quota, uid: i64, n: u32) -> Result<Taken<'_>, ApiError> {
        self.take_at(q, uid, n, Instant::now())
    }

    fn take_at(&self, q: Quota, uid: i64, n: u32, now: Instant) -> Result<Taken<'_>, ApiError> {
        let slot = &self.limiters[q as usize];
        let Some((limit, limiter)) = slot else { return Ok(Taken { limiter: None, uid, n, at: now }) };
        if n == 0 {
            return Ok(Taken { limiter: None, uid, n, at: now });
        }
        if !limiter.hit_n(&uid.to_string(), n, now) {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("quota: at most {limit} {} per hour ({}); try again later", q.what(), q.setting()),
            ));
        }
        Ok(Taken { limiter: Some(limiter), uid, n, at: now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_taken_kept_given_back_and_refused() {
        let cfg = Config { groups_created_per_hour: 2, members_added_per_hour: 0, ..Config::default() };
        let q = Quotas::new(&cfg);
        let t0 = Instant::now();
        q.take_at(Quota::GroupsCreated, 1, 1, t0).unwrap().keep();
        drop(q.take_at(Quota::GroupsCreated, 1, 1, t0).unwrap()); // failed request: given back
        q.take_at(Quota::GroupsCreated, 1, 1, t0).unwrap().keep();
        let e = q.take_at(Quota::GroupsCreated, 1, 1, t0).err().expect("the third in an hour is refused");
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.message.contains("groups_created_per_hour"), "{}", e.message);
        q.take_at(Quota::GroupsCreated, 2, 1, t0).unwrap().keep(); // another user
        q.take_at(Quota::GroupsCreated, 1, 1, t0 + HOUR).unwrap().keep(); // an hour later
        q.take_at(Quota::MembersAdded, 1, 1_000_000, t0).unwrap().keep(); // 0: no limit
    }
}
