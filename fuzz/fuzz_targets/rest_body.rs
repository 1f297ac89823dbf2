#![no_main]
//! `chorus_server::fuzzing`'s rest_body entry point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_server::fuzzing::run("rest_body", data));
