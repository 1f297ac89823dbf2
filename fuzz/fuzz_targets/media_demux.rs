#![no_main]
//! `chorus_server::fuzzing`'s media_demux entry point.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chorus_server::fuzzing::run("media_demux", data));
