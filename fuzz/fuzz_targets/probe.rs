#![no_main]
//! `chorus_probe` on arbitrary bytes as a whole uploaded file: `sniff`, `probe` (every container
//! reader, chosen by the sniffed type) and `thumbnail` (kept to small images so a run measures
//! the parsers, not the decoding of large pictures). A panic is the finding.
use std::io::Cursor;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = chorus_probe::sniff(data);
    let _ = chorus_probe::probe(&mut Cursor::new(data), data.len() as u64);
    if imagesize::blob_size(data).is_ok_and(|s| s.width.saturating_mul(s.height) <= 1 << 20) {
        let _ = chorus_probe::thumbnail(data, 64);
    }
});
