#![no_main]
//! `chorus_server::fuzzing`'s stun entry point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_server::fuzzing::run("stun", data));
