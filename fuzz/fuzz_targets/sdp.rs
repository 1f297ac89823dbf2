#![no_main]
//! `chorus_server::fuzzing`'s sdp entry point.
//!
//! The server catches a panic of the WebRTC library on a remote description (`remote_sdp`), so
//! this target keeps Rust's default panic hook instead of libfuzzer-sys's aborting one: a panic
//! the server catches is not a crash; one it does not catch still aborts (libfuzzer-sys aborts
//! when a panic unwinds out of the target).
libfuzzer_sys::fuzz_target!(
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| chorus_server::fuzzing::run("sdp", data)
);
