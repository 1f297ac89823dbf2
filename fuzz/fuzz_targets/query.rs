#![no_main]
//! `chorus_server::fuzzing`'s query entry point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_server::fuzzing::run("query", data));
