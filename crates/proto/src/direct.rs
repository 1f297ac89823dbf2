//! 1:1 calls: ringing, answering and hanging up, on the session's WebSocket.
//!
//! A 1:1 call is placed with `call_dial` to a user's address; every session of the callee gets
//! `call_incoming` and rings. One of them answers (`call_accept`) or declines (`call_decline`);
//! either side hangs up (`call_hangup`, which cancels while ringing). Every change is told to
//! every session of both users with `call_status` ([`DirectCallUpdate`]), whose `code` is
//! Mesibo's call status number, so a Mesibo app can hand it to `Mesibo_OnCallStatus` as it is.
//!
//! Once answered, the media go through the SFU like a group call's: the calling session and the
//! answering session each `call_join` the call room `gid = -call` (the negative of the call id)
//! and publish and subscribe there as in a group call. Only those two sessions may join it, and
//! it ends with the call. docs/protocol.md §17 is the reference.

use serde::{Deserialize, Serialize};

use crate::ids::CallId;

/// Where a 1:1 call stands. `ringing` and `answered` keep the call going; every other status
/// ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum DirectCallStatus {
    /// The callee's sessions are ringing.
    Ringing,
    /// The callee answered (from the session that sent `call_accept`; the others stop ringing).
    Answered,
    /// The callee is in another 1:1 call (ringing or answered).
    Busy,
    /// The callee has no session online to ring.
    Offline,
    /// The callee declined.
    Declined,
    /// Nobody answered within the ringing timeout.
    NoAnswer,
    /// The caller hung up before it was answered.
    Canceled,
    /// One side hung up an answered call (`by` says who).
    Ended,
    /// The session of one side (`by`) closed: its connection was lost.
    Lost,
}

impl DirectCallStatus {
    /// Mesibo's call status number for this status (`MESIBO_CALLSTATUS_*`).
    pub const fn mesibo(self) -> u8 {
        match self {
            DirectCallStatus::Ringing => 0x03,
            DirectCallStatus::Answered => 0x05,
            DirectCallStatus::Ended => 0x40,
            DirectCallStatus::Canceled => 0x41,
            DirectCallStatus::NoAnswer => 0x42,
            // Mesibo has no status of its own for a declined call; its apps show busy.
            DirectCallStatus::Busy | DirectCallStatus::Declined => 0x43,
            DirectCallStatus::Offline => 0x45,
            DirectCallStatus::Lost => 0x62,
        }
    }

    /// Whether the call is over.
    pub const fn ended(self) -> bool {
        !matches!(self, DirectCallStatus::Ringing | DirectCallStatus::Answered)
    }
}

/// Mesibo's call status numbers used in `error.status` of refused 1:1 call requests.
pub mod mesibo_status {
    /// `MESIBO_CALLSTATUS_INVALIDDEST`: no such user (or a deactivated one).
    pub const INVALID_DEST: u8 = 0x46;
    /// `MESIBO_CALLSTATUS_INVALIDSTATE`: you are in a call already, or the call is not in a state
    /// that allows the request.
    pub const INVALID_STATE: u8 = 0x47;
    /// `MESIBO_CALLSTATUS_NOTALLOWED`: you may not call this address (yourself).
    pub const NOT_ALLOWED: u8 = 0x4A;
}

/// The body of a `call_status` frame: a 1:1 call changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
// Every Option here is left out when None.
#[cfg_attr(feature = "ts", ts(optional_fields))]
pub struct DirectCallUpdate {
    /// The call.
    pub call: CallId,
    /// The caller's address.
    pub from: String,
    /// The callee's address.
    pub to: String,
    /// A video call (`false`: voice only).
    pub video: bool,
    /// Where the call stands now.
    pub status: DirectCallStatus,
    /// Mesibo's call status number of `status` (`MESIBO_CALLSTATUS_*`).
    pub code: u8,
    /// Who hung up (`ended`) or whose session was lost (`lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl DirectCallUpdate {
    /// The room id (`gid` of `call_join`) that carries this call's media.
    pub fn room(&self) -> i64 {
        -self.call.get()
    }
}

/// The media room (`gid` of `call_join`) of 1:1 call `call`.
pub fn room_of(call: CallId) -> i64 {
    -call.get()
}

/// The 1:1 call whose media room is `gid`, if it is one (a negative `gid`).
pub fn call_of_room(gid: i64) -> Option<CallId> {
    (gid < 0).then(|| CallId(gid.checked_neg().unwrap_or(0))).filter(|c| c.get() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_mesibo_numbers() {
        assert_eq!(DirectCallStatus::Answered.mesibo(), 5);
        assert_eq!(DirectCallStatus::NoAnswer.mesibo(), 0x42);
        assert!(!DirectCallStatus::Answered.ended() && DirectCallStatus::Busy.ended());
    }

    #[test]
    fn rooms_and_calls_map_both_ways() {
        assert_eq!(room_of(CallId(7)), -7);
        assert_eq!(call_of_room(-7), Some(CallId(7)));
        assert_eq!(call_of_room(1000), None);
        assert_eq!(call_of_room(0), None);
        assert_eq!(call_of_room(i64::MIN), None);
    }
}
