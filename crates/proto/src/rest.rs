//! JSON bodies of the `/v1` REST API. The OpenAPI document
//! (`/v1/openapi.json`, docs/openapi.json) describes the same shapes.

use serde::{Deserialize, Serialize};

use crate::ids::{GroupId, Seq};
use crate::ws::{Message, SessionUser};

/// `POST /v1/auth/code`: send a one-time login code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Email to send the code to (one of `email`, `phone`).
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number with country code (digits, optional leading `+`).
    #[serde(default)]
    pub phone: Option<String>,
}

/// Answer to [`CodeRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeSent {
    /// Seconds until the code expires.
    pub expires_in: u64,
}

/// `POST /v1/auth/verify`: exchange the code for an access token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Email the code was sent to.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone the code was sent to.
    #[serde(default)]
    pub phone: Option<String>,
    /// The 6-digit code.
    pub code: String,
    /// Display name; sets the name of a new user (or renames an existing one).
    #[serde(default)]
    pub name: Option<String>,
}

/// A new access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginSession {
    /// Bearer token for REST and the WebSocket. Shown once; stored hashed.
    pub token: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: i64,
    /// The user.
    pub user: SessionUser,
}

/// `PATCH /v1/me`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New display name.
    pub name: String,
}

/// Group settings, as created, updated and read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// Group name (1–100 chars).
    #[serde(default)]
    pub name: Option<String>,
    /// Policy bits ([`crate::flags::group`]).
    #[serde(default)]
    pub flags: Option<u32>,
    /// Call flags ([`crate::flags::call`]).
    #[serde(default)]
    pub call_flags: Option<u32>,
    /// Max video resolution ([`crate::flags::resolution`]).
    #[serde(default)]
    pub video_resolution: Option<u32>,
    /// Max call duration in seconds (0 = unlimited).
    #[serde(default)]
    pub call_duration: Option<u32>,
    /// Calls are live streams: members who may publish are on stage, the others watch as an
    /// audience (a call in progress keeps its mode until it ends).
    #[serde(default)]
    pub live: Option<bool>,
    /// Every call is recorded from its start, by and for the group's owner (an admin may stop a
    /// recording; it is not restarted for the rest of that call).
    #[serde(default)]
    pub auto_record: Option<bool>,
    /// Anyone with the group's WHEP URL may watch its call without an account (docs/streaming.md,
    /// public viewing); turning it off ends those viewers' sessions.
    #[serde(default)]
    pub public_viewing: Option<bool>,
}

/// `POST /v1/groups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Initial settings; `name` is required.
    #[serde(flatten)]
    pub settings: GroupSettings,
    /// Also create a room's two pins: a publisher pin and a view-only pin.
    #[serde(default)]
    pub room: bool,
}

/// A group as its members see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// Group id (≥ 1000).
    pub gid: GroupId,
    /// Name.
    pub name: String,
    /// Policy bits.
    pub flags: u32,
    /// Call flags.
    pub call_flags: u32,
    /// Max video resolution.
    pub video_resolution: u32,
    /// Max call duration, seconds (0 = unlimited).
    pub call_duration: u32,
    /// Calls are live streams.
    #[serde(default)]
    pub live: bool,
    /// Calls are recorded from their start.
    #[serde(default)]
    pub auto_record: bool,
    /// Anyone may watch the call over WHEP without an account.
    #[serde(default)]
    pub public_viewing: bool,
    /// Owner's address.
    pub owner: String,
    /// Creation time, ms.
    pub created_at: i64,
    /// The caller's own membership, if a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<Membership>,
}

/// Permissions of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Member flags ([`crate::flags::member`]).
    pub flags: u32,
    /// Admin flags ([`crate::flags::admin`]).
    pub admin_flags: u32,
}

impl Group {
    /// Whether the member this group was read for (its `membership`; none: a non-member) may do
    /// `action`: the permission rule, [`crate::flags::group::allows`].
    pub fn allows(&self, action: crate::flags::group::Action) -> bool {
        crate::flags::group::allows(self.flags, self.membership.map(|m| m.flags), action)
    }
}

/// A member in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Address.
    pub address: String,
    /// Display name.
    pub name: String,
    /// Member flags.
    pub flags: u32,
    /// Admin flags.
    pub admin_flags: u32,
}

/// `POST /v1/groups/{gid}/members`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    /// Addresses to add (or update).
    pub addresses: Vec<String>,
    /// Member flags to give them (default: all non-admin permissions).
    #[serde(default)]
    pub flags: Option<u32>,
    /// Admin flags to give them (default 0).
    #[serde(default)]
    pub admin_flags: Option<u32>,
}

/// Query parameters of the paged lists (`GET /v1/groups`, `GET /v1/groups/{gid}/members`).
///
/// An answer is one page. When more follow, it carries a `Link: <URL>; rel="next"` header
/// whose URL (a path with query) fetches the next page; the last page has none.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Where the page starts: the cursor the server put in the previous page's `next` link
    /// (opaque). Absent: the first page.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size; values outside 1 to [`PAGE_MAX`] are clamped. Default [`PAGE_DEFAULT`].
    #[serde(default)]
    pub limit: Option<u32>,
}

impl PageQuery {
    /// The page size asked for, clamped to 1 to [`PAGE_MAX`].
    pub fn size(&self) -> u32 {
        self.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX)
    }
}

/// Page size of a paged list when the request names none.
pub const PAGE_DEFAULT: u32 = 100;
/// Largest page of a paged list.
pub const PAGE_MAX: u32 = 500;

/// A pin: a join code carrying a permission set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The numeric code (8+ digits).
    pub pin: String,
    /// Group it joins.
    pub gid: GroupId,
    /// Member flags a joiner gets.
    pub flags: u32,
    /// Admin flags a joiner gets.
    pub admin_flags: u32,
    /// Label, e.g. `publisher` or `viewer`.
    pub label: String,
    /// Expiry, ms, if any.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Uses left, if limited.
    #[serde(default)]
    pub uses_left: Option<i64>,
}

/// `POST /v1/groups/{gid}/pins`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePin {
    /// Member flags a joiner gets.
    pub flags: u32,
    /// Admin flags a joiner gets (default 0).
    #[serde(default)]
    pub admin_flags: Option<u32>,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// Lifetime in seconds.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Number of joins allowed.
    #[serde(default)]
    pub uses: Option<i64>,
}

/// `PATCH /v1/groups/{gid}/pins/{pin}`: changes what it names and keeps the rest. `null` for
/// `expires_in` or `uses` removes the pin's expiry or use limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditPin {
    /// Member flags a joiner gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<u32>,
    /// Admin flags a joiner gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_flags: Option<u32>,
    /// Label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Lifetime in seconds from now; `Some(None)` (JSON `null`): never expires.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<Option<u64>>,
    /// Joins allowed from now; `Some(None)` (JSON `null`): unlimited.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub uses: Option<Option<i64>>,
}

/// A field that is present: `null` is `Some(None)`, absent (the default) `None`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A group's whiteboard: `GET` / `PUT /v1/groups/{gid}/board`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Board {
    /// The group.
    pub gid: GroupId,
    /// 0 for a board never written, then +1 per change.
    pub version: i64,
    /// The board's objects (JSON objects), oldest first.
    pub objs: Vec<serde_json::Value>,
    /// Number of objects.
    pub count: usize,
    /// Size of the stored board in bytes (the compact JSON text of `objs`).
    pub bytes: usize,
    /// Who changed it last (address); `None` for a board never written or a deleted user.
    #[serde(default)]
    pub updated_by: Option<String>,
    /// When it last changed, ms since the Unix epoch (0: never).
    pub updated_at: i64,
}

/// `PUT /v1/groups/{gid}/board`: replace the whole board.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBoard {
    /// The new board: JSON objects (an empty list clears it).
    pub objs: Vec<serde_json::Value>,
    /// If given, the board is replaced only if its version is still this one (else `conflict`).
    #[serde(default)]
    pub version: Option<i64>,
}

/// `POST /v1/groups/{gid}/board`: add objects at the end of the board.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendBoard {
    /// The objects to add (JSON objects).
    pub objs: Vec<serde_json::Value>,
}

/// Answer to `POST /v1/groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedGroup {
    /// The group.
    pub group: Group,
    /// Pins created with it (publisher first, then view-only), if `room` was set.
    pub pins: Vec<Pin>,
}

/// `POST /v1/groups/{gid}/join`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinGroup {
    /// The pin.
    pub pin: String,
}

/// One page of history, newest last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Messages in ascending `seq`.
    pub messages: Vec<Message>,
    /// Pass as `before` to get the previous page; absent at the start.
    #[serde(default)]
    pub before: Option<Seq>,
}

/// One conversation in the caller's list (`GET /v1/conversations`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// The other user's address (1:1 conversations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The group (group conversations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<GroupId>,
    /// Display name of the peer or the group.
    pub name: String,
    /// Highest message sequence in the conversation.
    pub last_seq: Seq,
    /// The caller has read up to this sequence.
    pub read_seq: Seq,
    /// Messages from others after `read_seq`.
    pub unread: i64,
    /// The newest message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Message>,
}

/// Delivery and read state of one member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberReceipt {
    /// Member address.
    pub address: String,
    /// Delivered up to this `seq`.
    pub delivered: Seq,
    /// Read up to this `seq`.
    pub read: Seq,
}

/// `GET …/receipts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipts {
    /// Every member's state.
    pub members: Vec<MemberReceipt>,
}
