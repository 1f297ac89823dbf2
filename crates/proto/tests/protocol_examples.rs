//! Every frame example in docs/protocol.md is a frame of these types, and survives a round trip.
//!
//! The document marks its frame examples one way (its section 4 says so), and this test reads
//! them by that rule:
//!
//! * a line of a code block of the form `[name] → {…}` is a client frame, `[name] ← {…}` a
//!   server frame (the JSON, after the line's first arrow, runs to the end of the line; lines
//!   starting with `#` are comments, and an arrow not followed by `{` is not a frame);
//! * an inline code span holding a JSON object whose first key is `"type"` (`{"type":…}`) is a
//!   frame whose direction is that of the section it stands in: a heading naming "Client frames"
//!   or "Server frames", down to the next heading of its level or above.
//!
//! Any other JSON in the document (REST bodies such as `{"error": …}`, shapes such as
//! `{audio, video}`) does not have `"type"` first and is not a frame.
//!
//! Each example is parsed as [`ClientFrame`] or [`ServerFrame`] and serialized back:
//!
//! * a server frame must come back exactly (as a `serde_json::Value`): the example shows what the
//!   server sends, no field more, less or different;
//! * a client frame must come back with every field it gave, unchanged. Fields it leaves out are
//!   not compared: the Rust client writes them out as their defaults (`null`, `false`, `[]`),
//!   which the server reads the same as absent.
//!
//! A wrong example (an unknown or misspelled field, a wrong type, a missing required field, a
//! field the server would not send) fails this test with its line number.
//!
//! And every client frame, server frame and call event has at least one example, so a new frame
//! type is documented with one.

use chorus_proto::call::CallEvent;
use chorus_proto::ws::{ClientFrame, ServerFrame};
use serde_json::Value;

/// Which way a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Client,
    Server,
}

/// One frame example: its 1-based line in the document, direction and JSON text.
#[derive(Debug)]
struct Example {
    line: usize,
    direction: Direction,
    json: String,
}

/// The frame examples of a protocol document in Markdown, by the rule of the module doc. An
/// inline frame outside a frames section is an error (its direction is unknown).
fn examples(markdown: &str) -> Result<Vec<Example>, String> {
    let mut out = Vec::new();
    let mut in_code = false;
    let mut section: Option<(usize, Direction)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            if trimmed.starts_with('#') {
                continue;
            }
            // The first arrow on the line (a JSON string may hold another).
            let arrow = [('→', Direction::Client), ('←', Direction::Server)]
                .into_iter()
                .filter_map(|(arrow, direction)| trimmed.find(arrow).map(|at| (at, arrow, direction)))
                .min_by_key(|&(at, _, _)| at);
            if let Some((at, arrow, direction)) = arrow {
                let json = trimmed[at + arrow.len_utf8()..].trim();
                if json.starts_with('{') {
                    out.push(Example { line: line_no, direction, json: json.to_owned() });
                }
            }
            continue;
        }
        let level = trimmed.chars().take_while(|&c| c == '#').count();
        if level > 0 && trimmed[level..].starts_with(' ') {
            // A heading naming client or server frames opens a section; a heading of its level or
            // above closes it; deeper ones (a frame's own `### \`send\``) stay inside it.
            let heading = &trimmed[level..];
            if heading.contains("Client frames") {
                section = Some((level, Direction::Client));
            } else if heading.contains("Server frames") {
                section = Some((level, Direction::Server));
            } else if section.is_some_and(|(open, _)| level <= open) {
                section = None;
            }
            continue;
        }
        for span in line.split('`').skip(1).step_by(2) {
            let is_frame = span.ends_with('}')
                && span.strip_prefix('{').is_some_and(|rest| rest.trim_start().starts_with("\"type\""));
            if !is_frame {
                continue;
            }
            let Some((_, direction)) = section else {
                return Err(format!(
                    "line {line_no}: an inline frame example outside the client and server frame sections: {span}"
                ));
            };
            out.push(Example { line: line_no, direction, json: span.to_owned() });
        }
    }
    Ok(out)
}

/// `back` with every object key that `given` does not have removed, recursively.
fn keep_given(back: &Value, given: &Value) -> Value {
    match (back, given) {
        (Value::Object(back), Value::Object(given)) => Value::Object(
            back.iter().filter_map(|(k, v)| given.get(k).map(|g| (k.clone(), keep_given(v, g)))).collect(),
        ),
        (Value::Array(back), Value::Array(given)) if back.len() == given.len() => {
            Value::Array(back.iter().zip(given).map(|(b, g)| keep_given(b, g)).collect())
        }
        _ => back.clone(),
    }
}

/// Parses an example as its frame type and compares the round trip (see the module doc).
fn check(example: &Example) -> Result<(), String> {
    let given: Value =
        serde_json::from_str(&example.json).map_err(|e| format!("line {}: not JSON: {e}", example.line))?;
    let (back, compared) = match example.direction {
        Direction::Client => {
            let frame: ClientFrame = serde_json::from_value(given.clone())
                .map_err(|e| format!("line {}: not a client frame: {e}", example.line))?;
            let back = serde_json::to_value(&frame).unwrap();
            let compared = keep_given(&back, &given);
            (back, compared)
        }
        Direction::Server => {
            let frame: ServerFrame = serde_json::from_value(given.clone())
                .map_err(|e| format!("line {}: not a server frame: {e}", example.line))?;
            let back = serde_json::to_value(&frame).unwrap();
            (back.clone(), back)
        }
    };
    if compared != given {
        return Err(format!("line {}: the round trip differs\n  doc:  {given}\n  back: {back}", example.line));
    }
    Ok(())
}

#[test]
fn every_frame_example_in_the_protocol_doc_round_trips() {
    let doc = include_str!("../../../docs/protocol.md");
    let examples = examples(doc).unwrap();
    let clients = examples.iter().filter(|e| e.direction == Direction::Client).count();
    let servers = examples.len() - clients;
    // The document has more than this; fewer means the rule above stopped finding them.
    assert!(clients >= 15 && servers >= 30, "found only {clients} client and {servers} server frame examples");
    let errors: Vec<String> = examples.iter().filter_map(|e| check(e).err()).collect();
    assert!(errors.is_empty(), "docs/protocol.md has wrong frame examples:\n{}", errors.join("\n"));
}

/// The wire names of an enum's variants, from serde itself: the error for an unknown tag lists
/// them (`unknown variant …, expected one of \`a\`, \`b\`…`), so the list cannot go stale.
fn variants<T: serde::de::DeserializeOwned + std::fmt::Debug>(tag: &str) -> Vec<String> {
    let probe = serde_json::json!({ tag: "\u{1}" });
    let err = serde_json::from_value::<T>(probe).unwrap_err().to_string();
    let (_, expected) = err.split_once("expected").unwrap_or_else(|| panic!("unexpected serde error: {err}"));
    let names: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    assert!(names.len() > 1, "no variants in serde's error: {err}");
    names
}

#[test]
fn the_protocol_doc_has_an_example_of_every_frame_and_call_event() {
    let examples = examples(include_str!("../../../docs/protocol.md")).unwrap();
    let values: Vec<(Direction, Value)> =
        examples.iter().filter_map(|e| Some((e.direction, serde_json::from_str(&e.json).ok()?))).collect();
    let has = |direction: Direction, key: &str, name: &str| {
        values.iter().any(|(d, v)| *d == direction && v.get(key).and_then(Value::as_str) == Some(name))
    };
    let mut missing = Vec::new();
    for name in variants::<ClientFrame>("type") {
        if !has(Direction::Client, "type", &name) {
            missing.push(format!("client frame {name}"));
        }
    }
    for name in variants::<ServerFrame>("type") {
        if !has(Direction::Server, "type", &name) {
            missing.push(format!("server frame {name}"));
        }
    }
    for name in variants::<CallEvent>("event") {
        if !values.iter().any(|(d, v)| {
            *d == Direction::Server
                && v.get("type").and_then(Value::as_str) == Some("call_event")
                && v.get("event").and_then(Value::as_str) == Some(name.as_str())
        }) {
            missing.push(format!("call event {name}"));
        }
    }
    assert!(missing.is_empty(), "docs/protocol.md has no example of: {}", missing.join(", "));
}

#[test]
fn the_check_catches_a_wrong_example() {
    let doc = "## 5. Server frames\n\n### `pong`\n\n`{\"type\":\"pong\",\"rid\":\"1\"}`\n\n\
               ```text\n\
               a → {\"type\":\"ping\",\"rid\":\"1\"}\n\
               a ← {\"type\":\"pong\",\"rid\":\"1\",\"extra\":true}\n\
               a → {\"type\":\"ping\",\"rid\":\"1\",\"extra\":true}\n\
               a ← {\"type\":\"sent\",\"id\":\"x\"}\n\
               a ← {\"type\":\"pong\",\"rid\":null}\n\
               # a comment → {\"type\":\"nothing\"}\n\
               ```\n\n## 13. REST\n\n`{\"error\":{\"code\":\"x\"}}`\n";
    let found = examples(doc).unwrap();
    let verdicts: Vec<(usize, Direction, bool)> =
        found.iter().map(|e| (e.line, e.direction, check(e).is_ok())).collect();
    assert_eq!(
        verdicts,
        [
            (5, Direction::Server, true),
            (8, Direction::Client, true),
            (9, Direction::Server, false),  // a field the server does not send
            (10, Direction::Client, false), // an unknown field
            (11, Direction::Server, false), // required fields missing
            (12, Direction::Server, false), // a null the server would leave out
        ]
    );
    let stray = examples("## 5. Server frames\n\n### `ok`\n\n## 6. Sending\n\n`{\"type\":\"pong\"}`\n");
    assert!(stray.is_err(), "an inline frame outside a frames section has no direction");
}
