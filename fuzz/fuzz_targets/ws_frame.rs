#![no_main]
//! `chorus_server::fuzzing`'s ws_frame entry point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_server::fuzzing::run("ws_frame", data));
