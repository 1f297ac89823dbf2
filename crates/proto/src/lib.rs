//! Chorus wire types, defined once.
//!
//! Everything that crosses a process boundary lives here: the WebSocket frames
//! ([`ws`]), the JSON bodies of the REST API ([`rest`]), the error codes every
//! interface answers with ([`error`]), and the permission and status numbers
//! ([`flags`]), whose values are Mesibo's so that Mesibo apps keep working.
//!
//! This crate has no I/O and no dependencies beyond `serde`. The server, the
//! Rust client and (through docs/protocol.md) the TypeScript SDK all speak
//! exactly these types; a change here is a protocol change and must be
//! reflected in docs/protocol.md in the same commit.
#![deny(missing_docs)]

pub mod call;
pub mod error;
pub mod flags;
pub mod rest;
pub mod ws;

pub use error::{ErrorBody, ErrorCode};
