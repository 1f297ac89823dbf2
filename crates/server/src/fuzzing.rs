//! Fuzzing entry points: every parser that reads network input, callable with arbitrary bytes.
//!
//! `fuzz/` (a cargo-fuzz crate, its own workspace) has one libFuzzer target per entry of
//! [`TARGETS`], each a call to [`run`]; bench/README.md says how to run them and
//! bench/RESULTS.md records the runs. The unit test at the end replays the committed corpus
//! (`fuzz/corpus/`, minimised from those runs) and the seeds (`fuzz/seeds/`) through the same
//! functions on every `cargo test`, so a crash found once stays fixed.
//!
//! Each target goes as deep as a request goes before it needs the database or a socket: the
//! extractor, then the checks the service runs before it stores anything. Compiled for tests
//! and with the `fuzzing` feature only.

use chorus_proto::GroupId;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use chorus_proto::ws::ClientFrame;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{IceCreds, Input, Output, Rtc};

use crate::call::{check_publish, leg_config, narrow_codecs, remote_sdp, simulcast_send_rids, stun_local_ufrag};
use crate::error::ApiError;
use crate::messaging::{check_client_id, encode_content, Content, Target};

/// The targets, by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus folders).
pub const TARGETS: [&str; 7] = ["ws_frame", "rest_body", "query", "mesibo_params", "stun", "sdp", "media_demux"];

/// Feeds `data` to the entry point `target` (one of [`TARGETS`]). Panics only on a bug.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "ws_frame" => ws_frame(data),
        "rest_body" => crate::http::fuzz::rest_body(data),
        "query" => crate::http::fuzz::query(data),
        "mesibo_params" => crate::http::fuzz::mesibo_params(data),
        "stun" => {
            let _ = stun_local_ufrag(data);
        }
        "sdp" => sdp(data),
        "media_demux" => media_demux(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// A WebSocket text frame: parsed as the session parses it, then the checks its request
/// meets before it reaches the writer or a room; errors are rendered as the client sees them.
fn ws_frame(data: &[u8]) {
    let frame = match serde_json::from_slice::<ClientFrame>(data) {
        Ok(f) => f,
        Err(e) => {
            let _ = ApiError::bad_request(format!("bad frame: {e}")).into_response();
            return;
        }
    };
    let _ = frame.rid();
    let checked = match frame {
        ClientFrame::Send { id, peer, gid, text, data, file, .. } => check_client_id(&id)
            .and_then(|()| Target::from_parts(peer, gid.map(GroupId::get)))
            .and_then(|_| encode_content(&Content { text, data, file: file.map(|f| *f) }, 64 * 1024).map(drop)),
        ClientFrame::Edit { text, data, .. } => {
            encode_content(&Content { text, data, file: None }, 64 * 1024).map(drop)
        }
        ClientFrame::Read { peer, gid, .. } | ClientFrame::Typing { peer, gid, .. } => {
            Target::from_parts(peer, gid.map(GroupId::get)).map(drop)
        }
        ClientFrame::CallPublish(req) => check_publish(&req).map(drop),
        _ => Ok(()),
    };
    if let Err(e) = checked {
        let _ = e.into_response();
    }
}

/// A leg like the room's (ICE lite, RTP mode, bandwidth estimation on subscribe legs), with a
/// DTLS certificate made once: generating one per input would be most of the work.
fn new_leg(subscribe: bool, now: Instant) -> Rtc {
    static CERT: OnceLock<str0m::config::DtlsCert> = OnceLock::new();
    let cert = CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("a DTLS certificate")
    });
    let creds = IceCreds { ufrag: "fuzzufrag".into(), pass: "fuzzpassfuzzpassfuzzpass".into() };
    let start = subscribe.then(|| str0m::bwe::Bitrate::kbps(300));
    leg_config(creds, start).set_dtls_cert(cert.clone()).build(now)
}

/// Legs live on across inputs, as a participant's legs live on across renegotiations and
/// datagrams (building one costs milliseconds), and are rebuilt every [`LEG_INPUTS`] inputs so
/// what they accumulate stays bounded. A crash that depends on what earlier inputs left in a leg
/// may not replay from its own input alone: run the target over the corpus to find it again.
struct Legs {
    publish: Option<(Rtc, u32)>,
    subscribe: Option<(Rtc, u32)>,
    media: Option<(Rtc, u32)>,
}

const LEG_INPUTS: u32 = 256;

thread_local! {
    static LEGS: RefCell<Legs> = const { RefCell::new(Legs { publish: None, subscribe: None, media: None }) };
}

/// Runs `f` on the leg in `slot`, rebuilt by `make` when it is new or has taken its share of
/// inputs. `f` answers whether the leg may be used again: not after str0m panicked on a remote
/// description, which the room guards the same way ([`remote_sdp`]).
fn with_leg(
    slot: fn(&mut Legs) -> &mut Option<(Rtc, u32)>,
    inputs: u32,
    make: impl FnOnce() -> Rtc,
    f: impl FnOnce(&mut Rtc) -> bool,
) {
    LEGS.with(|legs| {
        let mut legs = legs.borrow_mut();
        let slot = slot(&mut legs);
        if slot.as_ref().is_none_or(|(_, n)| *n >= inputs) {
            *slot = Some((make(), 0));
        }
        let (rtc, n) = slot.as_mut().expect("just made");
        *n += 1;
        if !f(rtc) {
            *slot = None;
        }
    })
}

/// Call signalling's SDP: an offer as `call_publish` reads it (its simulcast RIDs, then narrowed
/// to one codec per line; the raw offer when narrowing refuses it, since str0m is fuzzed too)
/// and accepts it on a publish leg (a renegotiation when the leg has seen offers before), and an
/// answer as `call_answer` applies it to a subscribe leg's pending offer; and the same text as a
/// WHIP offer (`live::sdp::whip_offer`) and a trickle-ICE fragment (`PATCH`).
///
/// str0m reads offers and answers with one parser (`Sdp::parse`), which is most of the time of an
/// input (its parser combinators' error merging, under coverage instrumentation): the text is
/// parsed once, and parsed again as an answer or as a WHIP offer only when that parse succeeded
/// (on the same text they fail the same way).
fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let now = Instant::now();
    let _ = simulcast_send_rids(text, "1");
    let raw = SdpOffer::from_sdp_string(text);
    // WHIP/WHEP: the offer check, and the trickle-ICE fragment reading and writing.
    let _ = match &raw {
        Ok(_) => crate::live::sdp::whip_lines(text),
        Err(e) => Err(crate::live::sdp::unparsable(e)),
    };
    if let Some((u, p)) = crate::live::sdp::ice_creds(text) {
        let _ = crate::live::sdp::with_ice_creds(text, &u, &p);
    }
    let _ = crate::live::sdp::answer_fragment(text);
    let lines = [("0".to_string(), None), ("1".to_string(), None)];
    let parsed = raw.is_ok();
    let offer = match narrow_codecs(text, &lines) {
        Ok((narrowed, _)) if narrowed != text => SdpOffer::from_sdp_string(&narrowed).ok(),
        _ => raw.ok(),
    };
    if let Some(offer) = offer {
        with_leg(
            |l| &mut l.publish,
            LEG_INPUTS,
            || new_leg(false, now),
            |leg| match remote_sdp(|| leg.sdp_api().accept_offer(offer)) {
                Some(Ok(answer)) => {
                    let _ = answer.to_sdp_string();
                    true
                }
                Some(Err(_)) => true,
                None => false,
            },
        );
    }
    if !parsed {
        return;
    }
    if let Ok(answer) = SdpAnswer::from_sdp_string(text) {
        // Every input adds two media lines: a fresh leg every 16 keeps the offer browser-sized.
        with_leg(
            |l| &mut l.subscribe,
            16,
            || new_leg(true, now),
            |leg| {
                let mut api = leg.sdp_api();
                api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
                api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
                match api.apply() {
                    Some((_, pending)) => remote_sdp(|| leg.sdp_api().accept_answer(pending, answer)).is_some(),
                    None => true,
                }
            },
        );
    }
}

/// The seed offer the media target's leg accepts: Chrome's, with audio and simulcast video.
const MEDIA_OFFER: &str = include_str!("../../../fuzz/seeds/sdp/chrome-offer.sdp");

/// A datagram on the media port: classified (STUN, DTLS, RTP, RTCP) as the UDP loop and a room
/// do it, then handed to a publish leg that accepted a browser's offer, and the leg drained.
fn media_demux(data: &[u8]) {
    let _ = stun_local_ufrag(data);
    let Ok(contents) = data.try_into() else { return };
    let now = Instant::now();
    let make = || {
        let mut leg = new_leg(false, now);
        let offer = SdpOffer::from_sdp_string(MEDIA_OFFER).expect("the seed offer parses");
        leg.sdp_api().accept_offer(offer).expect("the seed offer is accepted");
        leg
    };
    with_leg(
        |l| &mut l.media,
        LEG_INPUTS,
        make,
        |leg| {
            let source: SocketAddr = "127.0.0.1:50000".parse().expect("an address");
            let destination: SocketAddr = "127.0.0.1:7882".parse().expect("an address");
            let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
            if leg.handle_input(input).is_err() {
                return true;
            }
            for _ in 0..64 {
                match leg.poll_output() {
                    Ok(Output::Timeout(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = leg.handle_input(Input::Timeout(now + Duration::from_millis(20)));
            true
        },
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut out = Vec::new();
        for dir in ["seeds", "corpus"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
            for e in entries.flatten() {
                out.push((e.path(), std::fs::read(e.path()).expect("a readable input")));
            }
        }
        out
    }

    /// Every committed input of every target goes through its entry point, and so do simple
    /// mutations of the seeds (cuts, flipped bytes): none may panic.
    #[test]
    fn corpus_and_seeds_replay_without_a_panic() {
        for target in TARGETS {
            let inputs = inputs(target);
            assert!(!inputs.is_empty(), "fuzz/seeds/{target} or fuzz/corpus/{target} has inputs");
            for (path, data) in &inputs {
                let r = std::panic::catch_unwind(|| run(target, data));
                assert!(r.is_ok(), "{target}: {} panicked", path.display());
                for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
                    run(target, &data[..cut.min(data.len())]);
                }
                let mut flipped = data.clone();
                for i in (0..flipped.len()).step_by(7) {
                    flipped[i] ^= 0x5a;
                }
                run(target, &flipped);
            }
        }
    }

    #[test]
    #[should_panic(expected = "no fuzz target")]
    fn an_unknown_target_is_a_bug_in_the_caller() {
        run("nope", b"");
    }
}
