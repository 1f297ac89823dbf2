#![no_main]
//! `chorus_server::fuzzing`'s mesibo_params entry point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_server::fuzzing::run("mesibo_params", data));
