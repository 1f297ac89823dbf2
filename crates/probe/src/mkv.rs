//! WebM / Matroska: a small EBML walk rather than a demuxer crate. The kept one
//! (`matroska-demuxer`) parses Cues, Chapters and Tags into memory when it opens a file, with
//! element sizes bounded only by the file's length (so a crafted 2 GiB upload could make it
//! allocate gigabytes), and it has no answer for files without a `Duration` element — which is
//! every file a browser's MediaRecorder writes. What we need is four elements deep:
//!
//! - the EBML header's `DocType` (`webm` or `matroska`);
//! - the Segment's `Info` (`TimestampScale`, `Duration`) and `Tracks` (`TrackType`, `CodecID`,
//!   `Video/PixelWidth`, `PixelHeight`), read whole (each capped) — both precede the first
//!   Cluster in files written by ffmpeg, mkvmerge and browsers;
//! - without `Duration`: the last Cluster in the file's last [`TAIL`] bytes, whose `Timestamp`
//!   plus its last block's relative timestamp is the last frame's time.
//!
//! A Segment with a known size that ends past the end of the file is [`ProbeError::Truncated`];
//! a live-written one (unknown size) is measured by its tail instead.

use std::io::{Read, Seek};

use crate::{read_at, Kind, MediaInfo, ProbeError};

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;

/// `Info` and `Tracks` are a few hundred bytes; more than this is not a real file.
const MAX_MASTER: u64 = 1 << 20;
/// Top-level elements looked at before the first Cluster.
const MAX_ELEMENTS: usize = 256;
/// How much of the file's end is searched for the last Cluster.
const TAIL: u64 = 1 << 20;
/// Cluster IDs tried from the end (each costs a walk of up to [`TAIL`] bytes).
const MAX_CANDIDATES: usize = 16;

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, size: u64, info: &mut MediaInfo) -> Result<(), ProbeError> {
    // The EBML header, then the Segment header.
    let head = read_at(reader, 0, 4096)?;
    let mut cur = Cursor::new(&head);
    let (id, len) = cur.element()?;
    if id != EBML {
        return Err(ProbeError::Malformed("EBML header"));
    }
    let header = cur.body(len)?;
    let doc_type = children(header).find(|(id, _)| *id == DOC_TYPE).map(|(_, body)| body);
    let webm = match doc_type {
        Some(b"webm") => true,
        Some(b"matroska") => false,
        _ => return Err(ProbeError::Malformed("EBML DocType")),
    };
    let (id, segment_len) = cur.element()?;
    if id != SEGMENT {
        return Err(ProbeError::Malformed("Matroska Segment"));
    }
    let segment_start = cur.pos as u64;
    if let Some(len) = segment_len {
        if segment_start.saturating_add(len) > size {
            return Err(ProbeError::Truncated);
        }
    }

    // Top-level elements of the Segment, up to the first Cluster.
    let mut timestamp_scale = 1_000_000u64;
    let mut duration: Option<f64> = None;
    let mut tracks_seen = false;
    let mut has_video = false;
    let mut offset = segment_start;
    for _ in 0..MAX_ELEMENTS {
        let bytes = read_at(reader, offset, 12)?;
        let mut cur = Cursor::new(&bytes);
        let Ok((id, len)) = cur.element() else { break };
        if id == CLUSTER {
            break;
        }
        // Only a Cluster may have an unknown size (live writers); anything else is unreadable.
        let len = len.ok_or(ProbeError::Malformed("Matroska element size"))?;
        let body_start = offset + cur.pos as u64;
        if id == INFO || id == TRACKS {
            if len > MAX_MASTER {
                return Err(ProbeError::TooLarge("Matroska Info/Tracks"));
            }
            let body = read_at(reader, body_start, len as usize)?;
            if body.len() as u64 != len {
                return Err(ProbeError::Truncated);
            }
            if id == INFO {
                for (id, v) in children(&body) {
                    match id {
                        TIMESTAMP_SCALE => timestamp_scale = uint(v).filter(|&s| s > 0).unwrap_or(1_000_000),
                        DURATION => duration = float(v),
                        _ => {}
                    }
                }
            } else {
                tracks_seen = true;
                has_video = read_tracks(&body, info);
            }
        }
        offset = body_start.saturating_add(len);
        if offset >= size {
            break;
        }
    }
    if !tracks_seen {
        return Err(ProbeError::Malformed("Matroska without Tracks"));
    }

    info.duration_ms = match duration {
        Some(d) if d.is_finite() && d > 0.0 => {
            let ms = d * timestamp_scale as f64 / 1e6;
            (ms < u64::MAX as f64).then_some(ms as u64)
        }
        _ => last_block_time(reader, size)?.and_then(|t| t.checked_mul(timestamp_scale)).map(|ns| ns / 1_000_000),
    }
    .filter(|&ms| ms > 0);
    if !has_video {
        info.width = None;
        info.height = None;
        if info.audio_codec.is_some() {
            info.kind = Kind::Audio;
            info.mime = if webm { "audio/webm" } else { "audio/x-matroska" };
        }
    }
    Ok(())
}

/// Reads the first video and the first audio track; says whether there is a video track.
fn read_tracks(body: &[u8], info: &mut MediaInfo) -> bool {
    let mut has_video = false;
    for (id, entry) in children(body) {
        if id != TRACK_ENTRY {
            continue;
        }
        let mut kind = 0;
        let mut codec = None;
        let mut size = (0, 0);
        for (id, v) in children(entry) {
            match id {
                TRACK_TYPE => kind = uint(v).unwrap_or(0),
                CODEC_ID => codec = std::str::from_utf8(v).ok(),
                VIDEO => {
                    for (id, v) in children(v) {
                        match id {
                            PIXEL_WIDTH => size.0 = uint(v).unwrap_or(0),
                            PIXEL_HEIGHT => size.1 = uint(v).unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let codec = codec.map(|c| codec_name(c.trim_end_matches('\0')));
        match kind {
            1 if !has_video => {
                has_video = true;
                info.video_codec = codec;
                info.set_size(size.0, size.1);
            }
            2 if info.audio_codec.is_none() => info.audio_codec = codec,
            _ => {}
        }
    }
    has_video
}

/// The timestamp (in TimestampScale units) of the last block of the last Cluster that starts in
/// the file's last [`TAIL`] bytes.
fn last_block_time<R: Read + Seek>(reader: &mut R, size: u64) -> Result<Option<u64>, ProbeError> {
    let start = size.saturating_sub(TAIL);
    let tail = read_at(reader, start, (size - start) as usize)?;
    let id = CLUSTER.to_be_bytes();
    let mut end = tail.len();
    let mut candidates = 0;
    // Search backwards: the ID bytes may also occur inside media data, so a candidate counts
    // only if it parses as a Cluster that begins with its Timestamp.
    while let Some(at) = tail[..end].windows(4).rposition(|w| w == id) {
        end = at;
        candidates += 1;
        if candidates > MAX_CANDIDATES {
            break;
        }
        let mut cur = Cursor::new(&tail[at..]);
        let Ok((_, len)) = cur.element() else { continue };
        let body_end = match len {
            Some(len) => (cur.pos as u64).saturating_add(len).min(cur.buf.len() as u64) as usize,
            None => cur.buf.len(),
        };
        let body = &cur.buf[cur.pos..body_end];
        let mut kids = Cursor::new(body);
        let Ok((CLUSTER_TIMESTAMP, Some(n))) = kids.element() else { continue };
        let Some(cluster_time) = kids.body(Some(n)).ok().and_then(uint) else { continue };
        let mut last: Option<u64> = None;
        // Walk the Cluster's children until its end or the first thing that is not one.
        while let Ok((id, len)) = kids.element() {
            let Ok(child) = kids.body(len) else { break };
            let block = match id {
                SIMPLE_BLOCK => child,
                BLOCK_GROUP => match children(child).find(|(id, _)| *id == BLOCK) {
                    Some((_, b)) => b,
                    None => continue,
                },
                _ => continue,
            };
            // Track number (a vint), then the timestamp relative to the Cluster (i16).
            let mut b = Cursor::new(block);
            if b.vint(false).is_err() {
                continue;
            }
            if let Some(rel) = block.get(b.pos..b.pos + 2) {
                let rel = i16::from_be_bytes([rel[0], rel[1]]);
                let t = cluster_time.saturating_add_signed(i64::from(rel));
                last = Some(last.map_or(t, |l| l.max(t)));
            }
        }
        return Ok(Some(last.unwrap_or(cluster_time)));
    }
    Ok(None)
}

fn codec_name(id: &str) -> String {
    match id {
        "V_VP8" => "vp8",
        "V_VP9" => "vp9",
        "V_AV1" => "av1",
        "V_MPEG4/ISO/AVC" => "h264",
        "V_MPEGH/ISO/HEVC" => "hevc",
        "V_THEORA" => "theora",
        "A_OPUS" => "opus",
        "A_VORBIS" => "vorbis",
        "A_AAC" => "aac",
        "A_MPEG/L3" => "mp3",
        "A_FLAC" => "flac",
        "A_AC3" => "ac3",
        "A_PCM/INT/LIT" => "pcm_le",
        other => return other.to_ascii_lowercase(),
    }
    .to_owned()
}

/// An unsigned integer element (1–8 bytes, big-endian).
fn uint(v: &[u8]) -> Option<u64> {
    (v.len() <= 8).then(|| v.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

/// A float element (4 or 8 bytes).
fn float(v: &[u8]) -> Option<f64> {
    match v.len() {
        4 => Some(f64::from(f32::from_be_bytes(v.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(v.try_into().ok()?)),
        _ => None,
    }
}

/// The children of a master element held in memory, as (id, body); stops at the first one that
/// does not fit (a damaged or cut element ends the list, it does not fail the file).
fn children(buf: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut cur = Cursor::new(buf);
    std::iter::from_fn(move || {
        let (id, len) = cur.element().ok()?;
        let body = cur.body(len).ok()?;
        Some((id, body))
    })
}

/// A position in an in-memory EBML buffer.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// An element header: its ID and its size (`None`: unknown, all ones).
    fn element(&mut self) -> Result<(u32, Option<u64>), ProbeError> {
        let (id, _) = self.vint(true)?;
        let (len, unknown) = self.vint(false)?;
        Ok((id as u32, (!unknown).then_some(len)))
    }

    /// A body of `len` bytes (`None`: the rest of the buffer).
    fn body(&mut self, len: Option<u64>) -> Result<&'a [u8], ProbeError> {
        let rest = self.buf.len() - self.pos;
        let len = match len {
            Some(len) if len <= rest as u64 => len as usize,
            Some(_) => return Err(ProbeError::Truncated),
            None => rest,
        };
        let body = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(body)
    }

    /// A variable-length integer: the marker bit kept for IDs (1–4 bytes), removed for sizes
    /// (1–8 bytes). Also says whether all value bits are ones (the "unknown size" value).
    fn vint(&mut self, keep_marker: bool) -> Result<(u64, bool), ProbeError> {
        let first = *self.buf.get(self.pos).ok_or(ProbeError::Malformed("EBML"))?;
        let width = first.leading_zeros() as usize + 1;
        if width > if keep_marker { 4 } else { 8 } {
            return Err(ProbeError::Malformed("EBML vint"));
        }
        let bytes = self.buf.get(self.pos..self.pos + width).ok_or(ProbeError::Malformed("EBML"))?;
        self.pos += width;
        let mut value = bytes.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        let bits = 7 * width as u32;
        let mask = (1u64 << bits) - 1;
        let all_ones = value & mask == mask;
        if !keep_marker {
            value &= mask;
        }
        Ok((value, all_ones))
    }
}
