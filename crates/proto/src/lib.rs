//! Chorus wire types, defined once.
//!
//! Everything that crosses a process boundary lives here: the WebSocket frames
//! ([`ws`]), the JSON bodies of the REST API ([`rest`]), the error codes every
//! interface answers with ([`error`]), and the permission and status numbers
//! ([`flags`]), whose values are Mesibo's so that Mesibo apps keep working.
//!
//! This crate has no I/O and no dependencies beyond `serde` and `serde_json`
//! (the `ts` feature adds ts-rs, for generating TypeScript only). The server,
//! the Rust client and the TypeScript SDK all speak exactly these types: the
//! SDK's frame types are generated from them (`sdk/src/proto/frames.ts`, see
//! `tests/ts_bindings.rs`), and the examples of docs/protocol.md are parsed as
//! them (`tests/protocol_examples.rs`). A change here is a protocol change: it
//! is reflected in docs/protocol.md and the regenerated SDK types in the same
//! commit.
#![deny(missing_docs)]

pub mod call;
pub mod direct;
pub mod error;
pub mod flags;
pub mod ids;
pub mod rest;
pub mod ws;

pub use error::{ErrorBody, ErrorCode};
pub use ids::{CallId, ConvId, GroupId, MessageId, Pos, Seq, UserId};
