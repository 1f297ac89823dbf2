//! Permission flags, group policy bits, call settings and message status values.
//!
//! The numeric values are Mesibo's (`MESIBO_MEMBERFLAG_*`, `MESIBO_ADMINFLAG_*`,
//! `MESIBO_GROUPFLAG_*`, `MESIBO_MSGSTATUS_*`), so a Mesibo app that checks
//! `permissions.flags & MESIBO_MEMBERFLAG_PUBL` works unchanged.

/// Per-member permission flags (`MESIBO_MEMBERFLAG_*`).
pub mod member {
    /// May send messages to the group.
    pub const SEND: u32 = 0x1;
    /// Receives the group's messages.
    pub const RECV: u32 = 0x2;
    /// May publish streams in the group's call.
    pub const PUBLISH: u32 = 0x4;
    /// May subscribe to (receive) streams in the group's call.
    pub const SUBSCRIBE: u32 = 0x8;
    /// May see the call roster.
    pub const LIST: u32 = 0x10;
    /// May record the call.
    pub const RECORD: u32 = 0x20;
    /// Is an admin; what an admin may do is in its admin flags.
    pub const ADMIN: u32 = 0x1000;
    /// Every non-admin permission: send, receive, publish, subscribe, list.
    pub const ALL: u32 = SEND | RECV | PUBLISH | SUBSCRIBE | LIST;
    /// Every flag a client may set on a member or pin.
    pub const VALID: u32 = ALL | RECORD | ADMIN;
}

/// Admin sub-rights (`MESIBO_ADMINFLAG_*`), meaningful with [`member::ADMIN`].
pub mod admin {
    /// May change the group's name, policy and call settings.
    pub const MODIFY: u32 = 0x1;
    /// May add members.
    pub const ADD_MEMBER: u32 = 0x10;
    /// May remove members.
    pub const REMOVE_MEMBER: u32 = 0x20;
    /// May make members admins.
    pub const ADD_ADMIN: u32 = 0x40;
    /// May remove admins.
    pub const REMOVE_ADMIN: u32 = 0x80;
    /// May remove the owner.
    pub const REMOVE_OWNER: u32 = 0x100;
    /// May delete the group.
    pub const DELETE_GROUP: u32 = 0x200;
    /// May mute others and mute everyone in a call.
    pub const CALL_CONTROL: u32 = 0x400;
    /// May hang up others' streams and remove them from a call.
    pub const HANGUP: u32 = 0x800;
    /// Is the owner.
    pub const OWNER: u32 = 0x1000;
    /// May create pins.
    pub const ADD_PIN: u32 = 0x2000;
    /// May revoke pins.
    pub const REMOVE_PIN: u32 = 0x4000;
    /// May list pins.
    pub const LIST_PIN: u32 = 0x8000;
    /// Every right including ownership.
    pub const OWNER_ALL: u32 = 0xFFFF;
    /// Every right except ownership.
    pub const ALL: u32 = OWNER_ALL & !OWNER;
    /// Rights only the owner grants (ownership itself only the backend): removing the owner and
    /// deleting the group.
    pub const OWNER_LEVEL: u32 = OWNER | REMOVE_OWNER | DELETE_GROUP;
}

/// Group policy bits (`MESIBO_GROUPFLAG_*`): who may do what.
///
/// For each action there are three modes. Neither bit set: every member may.
/// `*_BY_SELECTED`: only members whose member flag grants it. `*_BY_ANYONE`:
/// anyone, member or not (not offered for receiving).
pub mod group {
    /// Only members with [`super::member::SEND`] may send.
    pub const SEND_BY_SELECTED: u32 = 0x1;
    /// Anyone may send.
    pub const SEND_BY_ANYONE: u32 = 0x2;
    /// Only members with [`super::member::RECV`] receive.
    pub const RECV_BY_SELECTED: u32 = 0x10;
    /// Only members with [`super::member::PUBLISH`] may publish.
    pub const PUB_BY_SELECTED: u32 = 0x100;
    /// Anyone may publish.
    pub const PUB_BY_ANYONE: u32 = 0x200;
    /// Only members with [`super::member::SUBSCRIBE`] may subscribe.
    pub const SUB_BY_SELECTED: u32 = 0x1000;
    /// Anyone may subscribe.
    pub const SUB_BY_ANYONE: u32 = 0x2000;
    /// Only members with [`super::member::LIST`] may list.
    pub const LIST_BY_SELECTED: u32 = 0x10000;
    /// Anyone may list.
    pub const LIST_BY_ANYONE: u32 = 0x20000;
    /// Every action decided by member flags: the default for groups created by Chorus's own API.
    pub const ALL_SELECTED: u32 =
        SEND_BY_SELECTED | RECV_BY_SELECTED | PUB_BY_SELECTED | SUB_BY_SELECTED | LIST_BY_SELECTED;
    /// Every policy bit a client may set.
    pub const VALID: u32 = ALL_SELECTED | SEND_BY_ANYONE | PUB_BY_ANYONE | SUB_BY_ANYONE | LIST_BY_ANYONE;
    /// Every bit Mesibo defines (auto-add, round-robin, no-storage, loopback,
    /// no-self-delete, pause); stored and returned, not all acted on.
    pub const KNOWN: u32 = VALID | 0x8 | 0x20 | 0x40 | 0x80 | 0x40000 | 0x800_0000;

    /// Who may perform an action under a policy.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// Anyone, member or not.
        Anyone,
        /// Every member.
        Members,
        /// Members whose flags grant it.
        Selected,
    }

    /// The mode for an action given its `*_BY_SELECTED` and `*_BY_ANYONE` bits.
    pub fn mode(flags: u32, selected_bit: u32, anyone_bit: u32) -> Mode {
        if flags & selected_bit != 0 {
            Mode::Selected
        } else if flags & anyone_bit != 0 {
            Mode::Anyone
        } else {
            Mode::Members
        }
    }
}

/// Group call flags (`MESIBO_CALLFLAG_*`).
pub mod call {
    /// The settings are valid.
    pub const VALID: u32 = 0x1;
    /// Audio allowed.
    pub const AUDIO: u32 = 0x2;
    /// Video allowed.
    pub const VIDEO: u32 = 0x4;
    /// Screen sharing allowed.
    pub const SCREEN: u32 = 0x100;
    /// Simulcast enabled.
    pub const SIMULCAST: u32 = 0x200;
    /// Recording allowed.
    pub const RECORD: u32 = 0x1000;
    /// Talk detection enabled.
    pub const TALK_DETECTION: u32 = 0x8000;
    /// Mesibo's default: valid, audio, video, screen, talk detection.
    pub const DEFAULT: u32 = VALID | AUDIO | VIDEO | SCREEN | TALK_DETECTION;
    /// Every call flag Chorus knows.
    pub const KNOWN: u32 = 0x000F_FFFF;
}

/// Video resolution caps (`MESIBO_RESOLUTION_*`).
pub mod resolution {
    /// Server default (720p).
    pub const DEFAULT: u32 = 0;
    /// 320x240.
    pub const QVGA: u32 = 1;
    /// 640x480.
    pub const VGA: u32 = 2;
    /// 1280x720.
    pub const HD: u32 = 3;
    /// 1920x1080.
    pub const FHD: u32 = 4;
    /// 3840x2160.
    pub const UHD_4K: u32 = 5;
    /// 160x120.
    pub const QQVGA: u32 = 8;
    /// 320x180.
    pub const P180: u32 = 9;
    /// 640x360.
    pub const NHD: u32 = 10;

    /// Height in pixels for a resolution value, `None` if unknown.
    pub fn height(value: u32) -> Option<u32> {
        Some(match value {
            DEFAULT | HD => 720,
            QVGA => 240,
            VGA => 480,
            FHD => 1080,
            UHD_4K => 2160,
            QQVGA => 120,
            P180 => 180,
            NHD => 360,
            _ => return None,
        })
    }
}

/// Message status values (`MESIBO_MSGSTATUS_*`). Any value `>= FAIL` is a failure.
pub mod status {
    /// Queued on the client, not yet acknowledged by the server.
    pub const OUTBOX: u8 = 0;
    /// Stored by the server.
    pub const SENT: u8 = 1;
    /// Delivered to (a session of) the recipient.
    pub const DELIVERED: u8 = 2;
    /// Read by the recipient.
    pub const READ: u8 = 3;
    /// Generic failure.
    pub const FAIL: u8 = 0x80;
    /// Destination does not exist.
    pub const INVALID_DEST: u8 = 0x83;
    /// The sender lacks permission, or is not a member.
    pub const NOT_MEMBER: u8 = 0x91;
    /// Rate limited or too large: retry later or send less.
    pub const RETRY_LATER: u8 = 0x87;
}

/// Presence values (`MESIBO_PRESENCE_*`).
pub mod presence {
    /// Online.
    pub const ONLINE: u8 = 1;
    /// Offline.
    pub const OFFLINE: u8 = 2;
    /// Typing.
    pub const TYPING: u8 = 3;
    /// Stopped typing.
    pub const TYPING_CLEARED: u8 = 4;
    /// Joined a group.
    pub const JOINED: u8 = 10;
    /// Left a group.
    pub const LEFT: u8 = 11;
}

/// Group error values (`MESIBO_GROUPERR_*`), used by the Mesibo-compatible SDK.
pub mod group_error {
    /// Caller is not a member.
    pub const NOT_MEMBER: u8 = 1;
    /// Caller lacks the permission.
    pub const PERMISSION: u8 = 2;
    /// The pin is wrong, expired or used up.
    pub const BAD_PIN: u8 = 3;
}
