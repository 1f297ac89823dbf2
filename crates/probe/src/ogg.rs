//! Ogg (RFC 3533) with Opus (RFC 7845) or Vorbis. Two reads: the first page, whose single packet
//! is the codec's identification header (the sample rate; Opus's pre-skip), and the file's last
//! [`TAIL`] bytes, searched backwards for the last page of the same stream whose CRC checks. Its
//! granule position is the number of samples up to its end, so
//! `duration = (granule - pre_skip) / rate` — Opus granules always count at 48 kHz.
//!
//! The page layout is 27 bytes and a segment table; the `ogg` crate reads packets front to back
//! and has no "last page" lookup, so this is written out here.

use std::io::{Read, Seek};

use crate::{read_at, to_ms, Kind, MediaInfo, ProbeError};

/// The largest Ogg page is 27 + 255 + 255 × 255 = 65,307 bytes: two of them fit.
const TAIL: u64 = 128 << 10;
const HEADER: usize = 27;
/// Capture patterns checked from the end before giving up.
const MAX_CANDIDATES: usize = 64;

/// A page's fields that matter here.
struct Page<'a> {
    granule: u64,
    serial: u32,
    body: &'a [u8],
}

/// Parses the page at the start of `buf`; `None` if it is not a whole, CRC-valid page.
fn page(buf: &[u8]) -> Option<Page<'_>> {
    if buf.len() < HEADER || &buf[..4] != b"OggS" || buf[4] != 0 {
        return None;
    }
    let granule = u64::from_le_bytes(buf[6..14].try_into().ok()?);
    let serial = u32::from_le_bytes(buf[14..18].try_into().ok()?);
    let crc = u32::from_le_bytes(buf[22..26].try_into().ok()?);
    let segments = usize::from(buf[26]);
    let table = buf.get(HEADER..HEADER + segments)?;
    let body_len: usize = table.iter().map(|&s| usize::from(s)).sum();
    let len = HEADER + segments + body_len;
    let whole = buf.get(..len)?;
    if crc32(whole) != crc {
        return None;
    }
    Some(Page { granule, serial, body: &whole[HEADER + segments..] })
}

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, size: u64, info: &mut MediaInfo) -> Result<(), ProbeError> {
    let first = read_at(reader, 0, HEADER + 255 + 255 * 255)?;
    let first = page(&first).ok_or(ProbeError::Malformed("Ogg first page"))?;
    let serial = first.serial;
    let id = first.body;
    // (codec, granule rate, samples to drop at the start)
    let (codec, rate, pre_skip) = if id.starts_with(b"OpusHead") && id.len() >= 19 {
        ("opus", 48_000, u64::from(u16::from_le_bytes([id[10], id[11]])))
    } else if id.starts_with(b"\x01vorbis") && id.len() >= 16 {
        let rate = u32::from_le_bytes([id[12], id[13], id[14], id[15]]);
        ("vorbis", u64::from(rate), 0)
    } else if id.starts_with(b"\x7fFLAC") && id.len() >= 13 + 18 {
        // Ogg FLAC: the mapping header, then "fLaC" and STREAMINFO (rate: 20 bits).
        let s = &id[13 + 8..];
        let rate = u32::from(s[10]) << 12 | u32::from(s[11]) << 4 | u32::from(s[12]) >> 4;
        ("flac", u64::from(rate), 0)
    } else {
        return Err(ProbeError::Unsupported);
    };
    info.audio_codec = Some(codec.to_owned());
    info.kind = Kind::Audio;
    info.mime = "audio/ogg";

    let start = size.saturating_sub(TAIL);
    let tail = read_at(reader, start, (size - start) as usize)?;
    let mut end = tail.len();
    let mut granule = None;
    // Each candidate costs a CRC over up to 64 KiB: a tail full of "OggS" must not cost more.
    let mut candidates = 0;
    while let Some(at) = tail[..end].windows(4).rposition(|w| w == b"OggS") {
        end = at;
        candidates += 1;
        if candidates > MAX_CANDIDATES {
            break;
        }
        match page(&tail[at..]) {
            // -1: no packet ends on this page.
            Some(p) if p.serial == serial && p.granule != u64::MAX => {
                granule = Some(p.granule);
                break;
            }
            _ => {}
        }
    }
    info.duration_ms =
        granule.and_then(|g| g.checked_sub(pre_skip)).and_then(|samples| to_ms(samples, rate)).filter(|&ms| ms > 0);
    Ok(())
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, zero initial value, computed with the
/// page's CRC field taken as zero.
fn crc32(page: &[u8]) -> u32 {
    let mut crc = 0u32;
    for (i, &byte) in page.iter().enumerate() {
        let byte = if (22..26).contains(&i) { 0 } else { byte };
        crc = crc << 8 ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)];
    }
    crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { crc << 1 ^ 0x04C1_1DB7 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};
