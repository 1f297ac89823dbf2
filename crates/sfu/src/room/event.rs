//! What a [`Room`](super::Room) tells its participants: [`RoomEvent`]s, each addressed to the
//! participants who should hear about it.

use super::{Mute, Permissions, StreamId, StreamInfo, Subscription};

/// One change in a room, with the participants who should be told.
///
/// The signaling layer serialises `kind` once and sends it to every participant in `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent<K> {
    /// Who should receive the event, in the order they joined. May be empty: every change is
    /// emitted even when nobody may hear of it, so the caller can keep its media state (forwarders,
    /// layer selectors) in step with the room from the events alone.
    pub to: Vec<K>,
    /// What happened.
    pub kind: RoomEventKind<K>,
}

/// What happened in a room. See [`Room`](super::Room) for who receives each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEventKind<K> {
    /// A participant joined the call.
    ParticipantJoined {
        /// Who joined.
        who: K,
        /// What they may do.
        permissions: Permissions,
    },
    /// A participant's permissions or admin mute changed.
    ParticipantUpdated {
        /// Whose state changed.
        who: K,
        /// What they may do now.
        permissions: Permissions,
        /// Which media an admin has muted on all their streams.
        admin_muted: Mute,
    },
    /// A participant started or stopped talking.
    Talking {
        /// Who.
        who: K,
        /// `true` for started, `false` for stopped.
        talking: bool,
    },
    /// A participant left the call or was made to leave. Their streams and subscriptions were
    /// removed before, each with its own event.
    ParticipantLeft {
        /// Who left.
        who: K,
        /// Why.
        reason: LeaveReason<K>,
    },
    /// A participant published a stream.
    StreamPublished {
        /// Which stream.
        stream: StreamId<K>,
        /// What it carries, as granted by the room.
        info: StreamInfo,
    },
    /// The owner of a stream muted or unmuted it.
    StreamMuted {
        /// Which stream.
        stream: StreamId<K>,
        /// The owner's mute state now (an admin mute is in [`RoomEventKind::ParticipantUpdated`]).
        muted: Mute,
    },
    /// A stream ended. Its subscriptions were removed before, each with its own event.
    StreamUnpublished {
        /// Which stream.
        stream: StreamId<K>,
        /// Why.
        reason: UnpublishReason<K>,
    },
    /// A participant subscribed to a stream.
    SubscriptionAdded {
        /// Who receives the stream.
        subscriber: K,
        /// Which stream.
        stream: StreamId<K>,
        /// What it receives.
        subscription: Subscription,
    },
    /// A subscriber changed what it receives of a stream (audio, video, preferred height).
    SubscriptionUpdated {
        /// Who receives the stream.
        subscriber: K,
        /// Which stream.
        stream: StreamId<K>,
        /// What it receives now.
        subscription: Subscription,
    },
    /// Live mode: an audience member came on stage (its permissions now include publish). Sent
    /// to those who now see it as if it had joined; the member itself hears
    /// [`RoomEventKind::ParticipantUpdated`].
    StageEntered {
        /// Who.
        who: K,
        /// What they may do now.
        permissions: Permissions,
    },
    /// Live mode: a stage member went back to the audience (its streams ended before, each with
    /// its own event). Sent to those who no longer see it, as if it had left; the member itself
    /// hears [`RoomEventKind::ParticipantUpdated`].
    StageLeft {
        /// Who.
        who: K,
    },
    /// Live mode: an audience member raised or lowered a hand (sent to the admins with call
    /// control, and to the member).
    HandRaised {
        /// Who.
        who: K,
        /// Raised (`true`) or lowered.
        raised: bool,
    },
    /// Live mode: how many are in the audience now (sent to everyone, at most once per
    /// [`COUNT_INTERVAL`](super::COUNT_INTERVAL)).
    AudienceCount {
        /// Audience members in the call.
        count: usize,
    },
    /// A subscription ended.
    SubscriptionRemoved {
        /// Who received the stream.
        subscriber: K,
        /// Which stream.
        stream: StreamId<K>,
        /// Why.
        reason: UnsubscribeReason,
    },
}

/// Why a participant left the call (Mesibo's hangup reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason<K> {
    /// They hung up.
    Left,
    /// Their connection was lost (the caller timed them out).
    Lost,
    /// An admin with the hang-up right removed them.
    Removed {
        /// The admin.
        by: K,
    },
    /// They reached the room's maximum call duration.
    DurationExceeded,
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpublishReason<K> {
    /// The owner stopped publishing it.
    Unpublished,
    /// An admin with the hang-up right hung it up.
    HungUp {
        /// The admin.
        by: K,
    },
    /// The owner left the call.
    OwnerLeft,
    /// The owner lost the publish permission.
    PermissionRevoked,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsubscribeReason {
    /// The subscriber unsubscribed.
    Unsubscribed,
    /// The stream ended.
    StreamEnded,
    /// The subscriber left the call.
    SubscriberLeft,
    /// The subscriber lost the subscribe permission.
    PermissionRevoked,
}
