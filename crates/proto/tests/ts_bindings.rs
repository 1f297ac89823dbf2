//! Generates the TypeScript SDK's frame types from the wire types: `sdk/src/proto/frames.ts`.
//!
//! ```text
//! cargo test -p chorus-proto --features ts --test ts_bindings
//! ```
//!
//! The `ts` feature derives ts-rs's `TS` on the types of [`chorus_proto::ws`], [`chorus_proto::call`]
//! and [`chorus_proto::error`]; ts-rs reads their serde attributes (`tag`, `rename_all`, `flatten`,
//! `default` with `skip_serializing_if`), so the TypeScript says what the JSON is. This test walks
//! everything [`ClientFrame`] and [`ServerFrame`] reach and writes one file, sorted by type name, so
//! that the output depends on the types alone. The file is committed; `scripts/test` runs this and
//! fails when the result differs from the commit (the types drifted or the file was edited by hand).
//! `sdk/src/protocol.ts` re-exports the generated types under the SDK's public names.
#![cfg(feature = "ts")]

use std::any::TypeId;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chorus_proto::call::CallEvent;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use ts_rs::{Config, TypeVisitor, TS};

const HEADER: &str = "\
// Generated from crates/proto by `cargo test -p chorus-proto --features ts --test ts_bindings`
// (ts-rs). Do not edit: change the Rust types and run that command. scripts/test fails when this
// file differs from what the command writes.
";

/// Collects the declaration of every exportable type it visits, and of their dependencies.
struct Collect<'a> {
    cfg: &'a Config,
    seen: HashSet<TypeId>,
    decls: BTreeMap<String, String>,
}

impl TypeVisitor for Collect<'_> {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        // Primitives, `Vec`, `Option`… have no declaration of their own.
        if T::output_path().is_none() || !self.seen.insert(TypeId::of::<T>()) {
            return;
        }
        let mut decl = T::docs().unwrap_or_default();
        decl.push_str("export ");
        decl.push_str(&T::decl(self.cfg));
        let previous = self.decls.insert(T::ident(self.cfg), decl);
        assert!(previous.is_none(), "two wire types are named {}", T::ident(self.cfg));
        T::visit_dependencies(self);
    }
}

/// The generated file: every type `ClientFrame` and `ServerFrame` reach.
fn bindings() -> String {
    // The SDK's numbers are JavaScript numbers: ids and positions stay far below 2^53.
    let cfg = Config::new().with_large_int("number");
    let mut collect = Collect { cfg: &cfg, seen: HashSet::new(), decls: BTreeMap::new() };
    collect.visit::<ClientFrame>();
    collect.visit::<ServerFrame>();
    // `call_event` flattens it into the frame; the SDK names it too.
    collect.visit::<CallEvent>();
    let mut out = String::from(HEADER);
    for decl in collect.decls.values() {
        out.push('\n');
        // ts-rs ends some lines with a space.
        for line in decl.trim_end().lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

#[test]
fn export_bindings() {
    let out = bindings();
    for name in ["ClientFrame", "ServerFrame", "CallEvent", "ErrorCode", "Message"] {
        assert!(out.contains(&format!("export type {name} =")), "{name} is not in the bindings");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/src/proto/frames.ts");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(out.as_str()) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, out).unwrap();
    }
}
