//! WebSocket tickets. Browsers cannot set headers on a WebSocket, so without tickets they
//! put the access token in the URL (`/v1/ws?token=…`), where proxies and logs may keep it.
//! `POST /v1/ws/ticket` (bearer token in the header) hands out a ticket instead: random,
//! single-use, valid for [`TICKET_TTL`], kept only in memory and only as a hash.
//! `GET /v1/ws?ticket=…` takes it back and opens the session with the token it was issued
//! for, which is checked again then, so a ticket of a revoked token opens nothing, and the
//! session ends when that token is revoked, as one opened with the token itself does.
//!
//! In a cluster a ticket starts with the id of the node that issued it (`<node_id>.<random>`):
//! a WebSocket opened on another node redeems it there, over NATS
//! ([`crate::cluster::forward`], the internal route `POST /internal/ws-ticket`, which answers
//! only requests forwarded by a node), so no load balancer stickiness is needed and a ticket
//! is still used once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// How long a ticket is valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Unused tickets one user may hold at once.
const MAX_PER_USER: usize = 16;

type Hash = [u8; 32];

fn hash(ticket: &str) -> Hash {
    Sha256::digest(ticket.as_bytes()).into()
}

struct Entry {
    /// The access token the ticket stands for.
    token: String,
    uid: i64,
    expires: Instant,
}

/// The unused tickets.
#[derive(Default)]
pub struct Tickets {
    inner: Mutex<Inner>,
    /// What starts every ticket: `<node_id>.` in a cluster, else nothing.
    prefix: String,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<Hash, Entry>,
    /// Issue order, which is expiry order (one lifetime for all); may still name redeemed ones.
    order: VecDeque<(Hash, Instant)>,
    per_user: HashMap<i64, usize>,
}

impl Inner {
    fn take(&mut self, h: &Hash) -> Option<Entry> {
        let e = self.by_hash.remove(h)?;
        if let Some(n) = self.per_user.get_mut(&e.uid) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&e.uid);
            }
        }
        Some(e)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(h, expires)) = self.order.front() {
            if expires > now {
                break;
            }
            self.order.pop_front();
            self.take(&h);
        }
        // Redeemed tickets linger in `order` until they expire; keep it near the live count.
        if self.order.len() > 2 * self.by_hash.len() + 64 {
            let live = &self.by_hash;
            self.order.retain(|(h, _)| live.contains_key(h));
        }
    }
}

impl Tickets {
    /// No tickets yet; each will start with `prefix`.
    pub fn with_prefix(prefix: String) -> Tickets {
        Tickets { inner: Mutex::default(), prefix }
    }

    /// The node that issued `ticket`, if it names one (cluster mode).
    pub fn node_of(ticket: &str) -> Option<&str> {
        ticket.split_once('.').map(|(node, _)| node)
    }

    /// A new ticket for `token` (already authenticated as `uid`).
    pub fn issue(&self, uid: i64, token: &str, now: Instant) -> ApiResult<String> {
        let mut g = self.inner.lock().expect("tickets lock poisoned");
        g.expire(now);
        if g.per_user.get(&uid).copied().unwrap_or(0) >= MAX_PER_USER {
            return Err(ApiError::rate_limited(format!(
                "at most {MAX_PER_USER} unused WebSocket tickets at a time; use them or wait until they expire"
            )));
        }
        let ticket = format!("{}{}", self.prefix, crate::auth_token::random_token(32));
        let h = hash(&ticket);
        let expires = now + TICKET_TTL;
        g.by_hash.insert(h, Entry { token: token.to_string(), uid, expires });
        g.order.push_back((h, expires));
        *g.per_user.entry(uid).or_default() += 1;
        Ok(ticket)
    }

    /// Takes a ticket (it cannot be used again) and returns the access token it stands for;
    /// `None` if it is unknown, used or expired.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Option<String> {
        let mut g = self.inner.lock().expect("tickets lock poisoned");
        g.expire(now);
        let e = g.take(&hash(ticket))?;
        (e.expires > now).then_some(e.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_proto::ErrorCode;

    #[test]
    fn single_use_and_short_lived() {
        let t = Tickets::default();
        let now = Instant::now();
        let a = t.issue(1, "token-a", now).unwrap();
        let b = t.issue(1, "token-a", now).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.redeem(&a, now).as_deref(), Some("token-a"));
        assert_eq!(t.redeem(&a, now), None, "used");
        assert_eq!(t.redeem("no-such-ticket", now), None);
        assert_eq!(t.redeem(&b, now + TICKET_TTL), None, "expired");
        assert!(t.inner.lock().unwrap().by_hash.is_empty());
    }

    #[test]
    fn unused_tickets_per_user_are_bounded() {
        let t = Tickets::default();
        let now = Instant::now();
        for _ in 0..MAX_PER_USER {
            t.issue(1, "token-a", now).unwrap();
        }
        let e = t.issue(1, "token-a", now).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(t.issue(2, "token-b", now).is_ok(), "another user is not affected");
        assert!(t.issue(1, "token-a", now + TICKET_TTL).is_ok(), "expired ones free their place");
        // Issued and redeemed in a loop: the bookkeeping stays small.
        for _ in 0..1000 {
            let x = t.issue(3, "token-c", now + TICKET_TTL).unwrap();
            t.redeem(&x, now + TICKET_TTL).unwrap();
        }
        assert!(t.inner.lock().unwrap().order.len() < 200);
    }
}
