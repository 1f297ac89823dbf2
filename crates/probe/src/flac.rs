//! FLAC: `fLaC`, then the first metadata block, which the format requires to be STREAMINFO
//! (34 bytes): sample rate (20 bits) and total samples (36 bits) are all the duration needs.

use crate::{to_ms, MediaInfo, ProbeError};

pub(crate) fn probe(head: &[u8], info: &mut MediaInfo) -> Result<(), ProbeError> {
    let s = head
        .get(8..8 + 34)
        .filter(|_| head.starts_with(b"fLaC") && head[4] & 0x7F == 0)
        .ok_or(ProbeError::Malformed("FLAC STREAMINFO"))?;
    let rate = u64::from(s[10]) << 12 | u64::from(s[11]) << 4 | u64::from(s[12]) >> 4;
    let samples = (u64::from(s[13]) & 0x0F) << 32 | u64::from(u32::from_be_bytes([s[14], s[15], s[16], s[17]]));
    info.audio_codec = Some("flac".to_owned());
    // Zero samples means "unknown" (a stream written without seeking back).
    info.duration_ms = to_ms(samples, rate).filter(|&ms| ms > 0);
    Ok(())
}
