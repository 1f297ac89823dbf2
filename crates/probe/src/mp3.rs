//! MP3 (MPEG-1/2/2.5 audio, layers I–III): the ID3v2 tag is skipped by its header, then the first
//! frame is found in the next [`SCAN`] bytes — a frame header counts only if another one follows
//! where its length says (a lone `0xFFE…` inside a tag or picture is common). Its side
//! information may hold a Xing/Info (LAME) or VBRI header with the frame count, which gives an
//! exact duration; without one the stream is taken as constant bit rate and the duration is its
//! size over the bit rate (what ffmpeg estimates too).
//!
//! Written out rather than taken from a crate: the MP3 crates found (`mp3-duration`,
//! `mpeg-audio-header`) read every frame of a file without a VBR header, i.e. the whole upload.

use std::io::{Read, Seek};

use crate::{read_at, to_ms, MediaInfo, ProbeError};

/// Bytes searched for the first frame after the ID3v2 tag.
const SCAN: usize = 64 << 10;

/// One MPEG audio frame header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// 1 for MPEG-1, 2 for MPEG-2 and MPEG-2.5 (their frames have the same layout).
    version: u8,
    layer: u8,
    bitrate_bps: u32,
    sample_rate: u32,
    mono: bool,
    len: usize,
    samples: u32,
}

const BITRATES_V1: [[u16; 15]; 3] = [
    [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
    [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
    [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
];
const BITRATES_V2: [[u16; 15]; 2] = [
    [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
    [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

/// Decodes a frame header; `None` for anything invalid, reserved or "free format".
fn frame(b: &[u8]) -> Option<Frame> {
    let b = b.get(..4)?;
    if b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    let (version, rate_div) = match (b[1] >> 3) & 3 {
        3 => (1, 1),
        2 => (2, 2),
        0 => (2, 4), // MPEG-2.5
        _ => return None,
    };
    let layer = match (b[1] >> 1) & 3 {
        3 => 1,
        2 => 2,
        1 => 3,
        _ => return None,
    };
    let bitrate_index = usize::from(b[2] >> 4);
    let rate_index = usize::from((b[2] >> 2) & 3);
    if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    let kbps = if version == 1 {
        BITRATES_V1[usize::from(layer - 1)][bitrate_index]
    } else {
        BITRATES_V2[usize::from(layer != 1)][bitrate_index]
    };
    let bitrate_bps = u32::from(kbps) * 1000;
    let sample_rate = [44_100, 48_000, 32_000][rate_index] / rate_div;
    let padding = u32::from((b[2] >> 1) & 1);
    let (samples, len) = match layer {
        1 => (384, (12 * bitrate_bps / sample_rate + padding) * 4),
        2 => (1152, 144 * bitrate_bps / sample_rate + padding),
        _ if version == 1 => (1152, 144 * bitrate_bps / sample_rate + padding),
        _ => (576, 72 * bitrate_bps / sample_rate + padding),
    };
    Some(Frame { version, layer, bitrate_bps, sample_rate, mono: b[3] >> 6 == 3, len: len as usize, samples })
}

/// The first frame in `buf` followed by a second valid frame of the same version and layer
/// (or, with `!strict`, by the end of `buf`): its offset and header.
pub(crate) fn find_first_frame(buf: &[u8], strict: bool) -> Option<(usize, Frame)> {
    let end = buf.len().saturating_sub(4);
    (0..end).find_map(|at| {
        let f = frame(&buf[at..])?;
        if f.len < 4 {
            return None;
        }
        let next = at + f.len;
        match buf.get(next..) {
            Some(rest) if rest.len() >= 4 => match frame(rest) {
                Some(g) if g.version == f.version && g.layer == f.layer => Some((at, f)),
                _ => None,
            },
            _ if !strict => Some((at, f)),
            _ => None,
        }
    })
}

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, size: u64, info: &mut MediaInfo) -> Result<(), ProbeError> {
    let head = read_at(reader, 0, 10)?;
    let mut start = 0u64;
    if head.len() == 10 && head.starts_with(b"ID3") {
        // Synchsafe size: 4 × 7 bits, excluding the 10-byte header (and a 10-byte footer).
        let tag = head[6..10].iter().fold(0u64, |acc, &b| acc << 7 | u64::from(b & 0x7F));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        start = 10 + tag + footer;
    }
    if start >= size {
        return Err(ProbeError::Truncated);
    }
    let buf = read_at(reader, start, SCAN)?;
    let (at, f) = find_first_frame(&buf, false).ok_or(ProbeError::Malformed("MPEG audio frame"))?;
    info.audio_codec = Some(format!("mp{}", f.layer));
    let first = start + at as u64;

    // ID3v1 at the very end: 128 bytes, "TAG".
    let mut end = size;
    if size >= first + 128 {
        let tag = read_at(reader, size - 128, 3)?;
        if tag == b"TAG" {
            end = size - 128;
        }
    }
    let audio_bytes = end - first;

    let frame_bytes = &buf[at..buf.len().min(at + f.len)];
    let frames = vbr_frames(frame_bytes, &f);
    info.duration_ms = match frames {
        Some((frames, bytes)) => {
            // The VBR header's byte count covers the whole stream: much more than is here means
            // the upload was cut short, and the frame count would overstate it.
            if bytes.is_some_and(|b| u64::from(b) > audio_bytes + 4096) {
                return Err(ProbeError::Truncated);
            }
            to_ms(u64::from(frames) * u64::from(f.samples), u64::from(f.sample_rate))
        }
        None => to_ms(audio_bytes * 8, u64::from(f.bitrate_bps)),
    }
    .filter(|&ms| ms > 0);
    Ok(())
}

/// A Xing/Info or VBRI header in the first frame: (frame count, byte count if given).
fn vbr_frames(frame: &[u8], f: &Frame) -> Option<(u32, Option<u32>)> {
    let be = |at: usize| -> Option<u32> { Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?)) };
    // Xing/Info sits after the side information, whose size depends on version and channels.
    let side = match (f.version, f.mono) {
        (1, false) => 32,
        (1, true) => 17,
        (_, false) => 17,
        (_, true) => 9,
    };
    let x = 4 + side;
    if matches!(frame.get(x..x + 4), Some(b"Xing") | Some(b"Info")) {
        let flags = be(x + 4)?;
        if flags & 1 == 0 {
            return None;
        }
        let frames = be(x + 8)?;
        let bytes = if flags & 2 != 0 { be(x + 12) } else { None };
        return (frames > 0).then_some((frames, bytes));
    }
    // VBRI (Fraunhofer) sits 32 bytes after the header: version, delay, quality, bytes, frames.
    if frame.get(36..40) == Some(b"VBRI") {
        let bytes = be(36 + 10)?;
        let frames = be(36 + 14)?;
        return (frames > 0).then_some((frames, Some(bytes)));
    }
    None
}
