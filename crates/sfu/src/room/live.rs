//! Live mode of a [`Room`]: stage and audience, raised hands, the audience count and its pages.
//! The rules are in [the room's docs](super#live-mode).

use std::hash::Hash;
use std::time::{Duration, Instant};

use super::{Room, RoomError, RoomEventKind};

/// The audience count is told at most this often.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(1);

/// One audience member in a page of [`Room::audience_page`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudienceEntry<K> {
    /// Who.
    pub who: K,
    /// Has a hand raised.
    pub hand: bool,
}

/// A page of the audience, in the order they joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudiencePage<K> {
    /// At most the limit asked for.
    pub entries: Vec<AudienceEntry<K>>,
    /// The cursor of the next page (`after`), if there is more.
    pub next: Option<u64>,
    /// Audience members in the call now.
    pub count: usize,
}

/// The audience count, and what was last told of it and when.
#[derive(Debug, Default)]
pub(super) struct CountClock {
    /// Audience members now.
    audience: usize,
    /// The count last told (0 before the first).
    told: usize,
    /// When it was last told.
    told_at: Option<Instant>,
    /// The first join: the first count may go from then on.
    epoch: Option<Instant>,
}

impl CountClock {
    pub(super) fn started(&mut self, now: Instant) {
        self.epoch.get_or_insert(now);
    }
}

impl<K: Copy + Eq + Hash + Ord> Room<K> {
    /// Whether `who` is in the audience: the room is live and `who` may not publish.
    pub fn is_audience(&self, who: K) -> bool {
        self.settings.live && self.participants.get(&who).is_some_and(|p| !p.permissions.publish)
    }

    /// How many are in the audience (0 unless the room is live).
    pub fn audience_count(&self) -> usize {
        self.count.audience
    }

    /// An audience member raises or lowers its hand; the admins with call control hear it.
    pub fn raise_hand(&mut self, who: K, raised: bool) -> Result<(), RoomError> {
        let participant = self.participants.get(&who).ok_or(RoomError::NotInRoom)?;
        if !self.settings.live {
            return Err(RoomError::NotLive);
        }
        if !self.is_audience(who) {
            return Err(RoomError::NotAudience);
        }
        if participant.hand != raised {
            self.set_hand(who, raised);
        }
        Ok(())
    }

    /// An admin with call control brings an audience member on stage (`on`: the publish right is
    /// lent to it for this call) or sends one it brought back (its streams end at once).
    pub fn set_stage(&mut self, admin: K, target: K, on: bool) -> Result<(), RoomError> {
        self.require_admin(admin, |permissions| permissions.call_control, RoomError::CallControlRequired)?;
        if !self.settings.live {
            return Err(RoomError::NotLive);
        }
        let participant = self.participants.get_mut(&target).ok_or(RoomError::NoSuchParticipant)?;
        let mut permissions = participant.permissions;
        if on {
            if participant.guest || permissions.publish {
                return Err(RoomError::NotAudience);
            }
            participant.guest = true;
            permissions.publish = true;
        } else {
            if !participant.guest {
                return Err(RoomError::NotOnStageAsGuest);
            }
            participant.guest = false;
            permissions.publish = false;
        }
        self.apply_permissions(target, permissions);
        Ok(())
    }

    /// A page of the audience for `viewer` (who needs the list permission): the members who
    /// joined after the cursor `after` (0 for the first page), at most `limit`, only those with a
    /// hand raised if `hands_only`.
    pub fn audience_page(
        &self,
        viewer: K,
        after: u64,
        limit: usize,
        hands_only: bool,
    ) -> Result<AudiencePage<K>, RoomError> {
        let asker = self.participants.get(&viewer).ok_or(RoomError::NotInRoom)?;
        if !self.settings.live {
            return Err(RoomError::NotLive);
        }
        if !asker.permissions.list {
            return Err(RoomError::ListNotPermitted);
        }
        let mut entries = Vec::with_capacity(limit.min(self.count.audience));
        let (mut next, mut last) = (None, after);
        for who in &self.order {
            let Some(p) = self.participants.get(who) else { continue };
            if p.seq <= after || p.permissions.publish || (hands_only && !p.hand) {
                continue;
            }
            if entries.len() == limit {
                next = Some(last);
                break;
            }
            entries.push(AudienceEntry { who: *who, hand: p.hand });
            last = p.seq;
        }
        Ok(AudiencePage { entries, next, count: self.count.audience })
    }

    /// Sets `who`'s permissions and tells who should hear, moving it between stage and audience
    /// when its publish right changed in a live room.
    pub(super) fn apply_permissions(&mut self, who: K, permissions: super::Permissions) {
        let Some(participant) = self.participants.get(&who) else { return };
        let old = participant.permissions;
        if old == permissions {
            return;
        }
        let was_audience = self.is_audience(who);
        // Streams and subscriptions end while the others still see the participant as before.
        if old.publish && !permissions.publish {
            for sid in self.sids(who) {
                self.remove_stream(
                    super::StreamId { publisher: who, sid },
                    super::UnpublishReason::PermissionRevoked,
                    None,
                );
            }
        }
        if old.subscribe && !permissions.subscribe {
            self.remove_subscriptions_of(who, super::UnsubscribeReason::PermissionRevoked, None);
        }
        if let Some(participant) = self.participants.get_mut(&who) {
            participant.permissions = permissions;
        }
        let is_audience = self.is_audience(who);
        if was_audience == is_audience {
            self.emit_updated(who);
            return;
        }
        // Everyone who lists sees the participant appear on or leave the stage; it hears only
        // that its permissions changed.
        let others = self.audience(Some(who), |_, permissions| permissions.list);
        if was_audience {
            self.count.audience -= 1;
            if self.participants.get(&who).is_some_and(|p| p.hand) {
                self.set_hand(who, false);
            }
            self.emit(others, RoomEventKind::StageEntered { who, permissions });
        } else {
            self.count.audience += 1;
            self.emit(others, RoomEventKind::StageLeft { who });
        }
        let admin_muted = self.participants.get(&who).map(|p| p.admin_muted).unwrap_or_default();
        self.emit(vec![who], RoomEventKind::ParticipantUpdated { who, permissions, admin_muted });
    }

    /// Counts `who` in (joined) or out (leaving) of the audience.
    pub(super) fn count_audience(&mut self, who: K, joined: bool) {
        if self.is_audience(who) {
            if joined {
                self.count.audience += 1;
            } else {
                self.count.audience -= 1;
            }
        }
    }

    /// When the audience count should next be told, if it changed since it last was.
    pub(super) fn count_due(&self) -> Option<Instant> {
        if !self.settings.live || self.count.audience == self.count.told {
            return None;
        }
        self.count.told_at.map(|at| at + COUNT_INTERVAL).or(self.count.epoch)
    }

    /// Tells everyone the audience count if it changed and the interval has passed.
    pub(super) fn tell_count(&mut self, now: Instant) {
        if self.count_due().is_some_and(|due| due <= now) {
            self.count.told = self.count.audience;
            self.count.told_at = Some(now);
            self.emit(self.order.clone(), RoomEventKind::AudienceCount { count: self.count.audience });
        }
    }

    fn set_hand(&mut self, who: K, raised: bool) {
        if let Some(participant) = self.participants.get_mut(&who) {
            participant.hand = raised;
        }
        let to = self.audience(None, |other, permissions| other == who || permissions.call_control);
        self.emit(to, RoomEventKind::HandRaised { who, raised });
    }
}
