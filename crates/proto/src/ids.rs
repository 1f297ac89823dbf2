//! Numbers that name things: user, group, conversation and message ids, and the
//! sequence and stream positions of messages.
//!
//! Each is a `#[serde(transparent)]` newtype over `i64`: on the wire it is the
//! plain JSON number it always was (the protocol does not change), and in Rust
//! a group id cannot be passed where a message id or a stream position is
//! meant. In TypeScript each is a `number` alias (`export type GroupId = number`).
//!
//! At the edges (the database, URL paths) convert with `From`/`.get()`.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        pub struct $name(pub i64);

        impl $name {
            /// The plain number.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self(v)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.0
            }
        }

        // Lets tests and checks compare with a literal: `gid == 1000`.
        impl PartialEq<i64> for $name {
            fn eq(&self, other: &i64) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A user's numeric id (`uid`).
    UserId
);
id_type!(
    /// A group's id (`gid`, ≥ 1000).
    GroupId
);
id_type!(
    /// A conversation's id (server-internal: a 1:1 pair or a group).
    ConvId
);
id_type!(
    /// A stored message's server id (`mid`).
    MessageId
);
id_type!(
    /// A message's sequence number in its conversation (`seq`: 1, 2, 3…).
    Seq
);
id_type!(
    /// A position in a user's message stream (`pos`): resume from it.
    Pos
);
id_type!(
    /// A 1:1 call's id (`call`, ≥ 1). Its media run in the call room `-call` (see
    /// [`crate::direct`]).
    CallId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers_on_the_wire() {
        assert_eq!(serde_json::to_string(&GroupId(1000)).unwrap(), "1000");
        assert_eq!(serde_json::from_str::<Pos>("42").unwrap(), Pos(42));
        assert!(serde_json::from_str::<Seq>("\"1\"").is_err(), "a string is not a seq");
        assert_eq!(MessageId::from(7).get(), 7);
        assert_eq!(UserId(3).to_string(), "3");
        assert_eq!(Seq(5), 5);
    }
}
