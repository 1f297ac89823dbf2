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

/// Group policy bits (`MESIBO_GROUPFLAG_*`) and **the permission rule**, [`group::allows`]:
/// the one function every check (messages, calls, `joingroup`'s `publish`) goes through.
///
/// **A member may do exactly what their member flags grant, in every group mode.** The flags
/// come from the pin they joined with (added to what they already held), or from whoever added
/// them (`/v1` members, `/backend` `cs`/`cr`/`canpub`/`cansub`/`canlist`). So a member who joined
/// with a view-only pin never publishes, whatever the group's policy.
///
/// The policy bits decide only what **non-members** may do: `*_BY_ANYONE` (without the matching
/// `*_BY_SELECTED`, which wins) lets anyone send, publish, subscribe or list; otherwise
/// non-members may not. Non-members never receive. (A group call is joined by members only, so
/// the publish, subscribe and list `*_BY_ANYONE` bits are stored and returned but open nothing
/// today.) `*_BY_SELECTED` and neither bit therefore mean the same: members, by their flags.
pub mod group {
    /// Members with [`super::member::SEND`] may send (as without the bit); no non-members.
    pub const SEND_BY_SELECTED: u32 = 0x1;
    /// Non-members may send too.
    pub const SEND_BY_ANYONE: u32 = 0x2;
    /// Members with [`super::member::RECV`] receive (as without the bit).
    pub const RECV_BY_SELECTED: u32 = 0x10;
    /// Members with [`super::member::PUBLISH`] may publish (as without the bit); no non-members.
    pub const PUB_BY_SELECTED: u32 = 0x100;
    /// Non-members may publish too (no effect today: calls are joined by members only).
    pub const PUB_BY_ANYONE: u32 = 0x200;
    /// Members with [`super::member::SUBSCRIBE`] may subscribe (as without the bit); no non-members.
    pub const SUB_BY_SELECTED: u32 = 0x1000;
    /// Non-members may subscribe too (no effect today: calls are joined by members only).
    pub const SUB_BY_ANYONE: u32 = 0x2000;
    /// Members with [`super::member::LIST`] may list (as without the bit); no non-members.
    pub const LIST_BY_SELECTED: u32 = 0x10000;
    /// Non-members may list too (no effect today: calls are joined by members only).
    pub const LIST_BY_ANYONE: u32 = 0x20000;
    /// Nothing open to non-members: the default for groups created by Chorus's own API.
    pub const ALL_SELECTED: u32 =
        SEND_BY_SELECTED | RECV_BY_SELECTED | PUB_BY_SELECTED | SUB_BY_SELECTED | LIST_BY_SELECTED;
    /// Every policy bit a client may set.
    pub const VALID: u32 = ALL_SELECTED | SEND_BY_ANYONE | PUB_BY_ANYONE | SUB_BY_ANYONE | LIST_BY_ANYONE;
    /// Every bit Mesibo defines (auto-add, round-robin, no-storage, loopback,
    /// no-self-delete, pause); stored and returned, not all acted on.
    pub const KNOWN: u32 = VALID | 0x8 | 0x20 | 0x40 | 0x80 | 0x40000 | 0x800_0000;

    /// Something a group's members may be allowed to do.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        /// Send messages to the group.
        Send,
        /// Receive the group's messages.
        Receive,
        /// Publish streams in the group's call.
        Publish,
        /// Subscribe to streams in the group's call.
        Subscribe,
        /// See the call's roster.
        List,
    }

    impl Action {
        /// The member flag that grants it.
        pub const fn member_flag(self) -> u32 {
            use super::member;
            match self {
                Action::Send => member::SEND,
                Action::Receive => member::RECV,
                Action::Publish => member::PUBLISH,
                Action::Subscribe => member::SUBSCRIBE,
                Action::List => member::LIST,
            }
        }

        /// Whether a group with policy `flags` lets non-members do it.
        pub const fn open_to_anyone(self, flags: u32) -> bool {
            let (selected, anyone) = match self {
                Action::Send => (SEND_BY_SELECTED, SEND_BY_ANYONE),
                Action::Receive => return false,
                Action::Publish => (PUB_BY_SELECTED, PUB_BY_ANYONE),
                Action::Subscribe => (SUB_BY_SELECTED, SUB_BY_ANYONE),
                Action::List => (LIST_BY_SELECTED, LIST_BY_ANYONE),
            };
            flags & selected == 0 && flags & anyone != 0
        }
    }

    /// The permission rule (see the module doc): whether someone with `member_flags` (`None`:
    /// not a member) may do `action` in a group whose policy bits are `group_flags`.
    pub const fn allows(group_flags: u32, member_flags: Option<u32>, action: Action) -> bool {
        match member_flags {
            Some(flags) => flags & action.member_flag() != 0,
            None => action.open_to_anyone(group_flags),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::member;
        use super::*;

        const ACTIONS: [Action; 5] = [Action::Send, Action::Receive, Action::Publish, Action::Subscribe, Action::List];
        const MODES: [u32; 5] =
            [0, ALL_SELECTED, VALID, SEND_BY_ANYONE | PUB_BY_ANYONE | SUB_BY_ANYONE | LIST_BY_ANYONE, KNOWN];

        #[test]
        fn member_flags_bind_in_every_mode() {
            let viewer = member::SEND | member::RECV | member::SUBSCRIBE | member::LIST;
            for g in MODES {
                assert!(!allows(g, Some(viewer), Action::Publish), "viewer publishes under {g:#x}");
                assert!(allows(g, Some(viewer), Action::Subscribe), "{g:#x}");
                assert!(allows(g, Some(member::ALL), Action::Publish), "{g:#x}");
                assert!(!allows(g, Some(member::PUBLISH), Action::Send), "{g:#x}");
                assert!(!allows(g, Some(member::SEND), Action::Receive), "{g:#x}");
                for a in ACTIONS {
                    assert!(!allows(g, Some(0), a), "a member without flags may {a:?} under {g:#x}");
                    assert!(allows(g, Some(member::VALID), a), "{a:?} under {g:#x}");
                }
            }
        }

        #[test]
        fn non_members_only_where_anyone_may_and_never_receive() {
            for a in ACTIONS {
                assert!(!allows(0, None, a), "{a:?}");
                assert!(!allows(ALL_SELECTED, None, a), "{a:?}");
                assert_eq!(allows(VALID & !ALL_SELECTED, None, a), a != Action::Receive, "{a:?}");
                // `*_BY_SELECTED` wins over `*_BY_ANYONE`.
                assert!(!allows(VALID, None, a), "{a:?}");
            }
            assert!(allows(SEND_BY_ANYONE, None, Action::Send));
            assert!(!allows(SEND_BY_ANYONE, None, Action::Publish));
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
