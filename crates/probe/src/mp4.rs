//! MP4 / MOV (ISO base media): the top-level boxes are walked by seeking past each one (`mdat`,
//! gigabytes of media, is never read), and only `moov` is read — capped at
//! [`MAX_HEADER_READ`] — and parsed by Mozilla's `mp4parse` (Firefox's parser, with fallible
//! allocation). `mp4parse` reads its input front to back, so it is given `moov` alone rather than
//! the file: handing it the file would read every byte of `mdat` to skip it.
//!
//! A fragmented MP4 (what MSE players, Safari's MediaRecorder and `-movflags frag_keyframe`
//! write) has empty sample tables in `moov`; its length is `mvex/mehd` when present, else the end
//! of its last `moof`: that fragment's `tfdt` start time plus its `trun` sample durations.

use std::io::{Cursor, Read, Seek};

use mp4parse::{CodecType, SampleEntry, TrackType};

use crate::{read_at, to_ms, Kind, MediaInfo, ProbeError, MAX_HEADER_READ};

/// Top-level boxes looked at (a plain file has a handful; a fragmented one two per fragment).
const MAX_BOXES: usize = 100_000;
/// A `moof` is a few KB; more than this is not read.
const MAX_MOOF: u64 = 1 << 20;

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, size: u64, info: &mut MediaInfo) -> Result<(), ProbeError> {
    let (moov, last_moof) = find_boxes(reader, size)?;
    let ctx = mp4parse::read_mp4(&mut Cursor::new(moov)).map_err(|_| ProbeError::Malformed("MP4 moov"))?;

    let mut duration_ms: Option<u64> = None;
    let mut has_video = false;
    for track in ctx.tracks.iter() {
        if let (Some(d), Some(ts)) = (&track.duration, &track.timescale) {
            if let Some(ms) = to_ms(d.0, ts.0) {
                duration_ms = Some(duration_ms.map_or(ms, |m| m.max(ms)));
            }
        }
        let entry = track.stsd.as_ref().and_then(|s| s.descriptions.first());
        match (&track.track_type, entry) {
            (TrackType::Video, Some(SampleEntry::Video(v))) if !has_video => {
                has_video = true;
                info.video_codec = codec_name(v.codec_type).map(str::to_owned);
                // tkhd's size is the display size (16.16 fixed point); the sample entry's is
                // the coded size. Prefer what the player shows.
                match &track.tkhd {
                    Some(t) if t.width >> 16 > 0 && t.height >> 16 > 0 => {
                        info.set_size(u64::from(t.width >> 16), u64::from(t.height >> 16))
                    }
                    _ => info.set_size(u64::from(v.width), u64::from(v.height)),
                }
            }
            (TrackType::Audio, Some(SampleEntry::Audio(a))) if info.audio_codec.is_none() => {
                info.audio_codec = codec_name(a.codec_type).map(str::to_owned);
            }
            _ => {}
        }
    }
    // A fragmented MP4 (fMP4, as MSE and some recorders write) has empty sample tables: its
    // length is in mvex/mehd, in the movie timescale.
    if duration_ms.unwrap_or(0) == 0 {
        let fragment = ctx.mvex.as_ref().and_then(|m| m.fragment_duration);
        if let (Some(d), Some(ts)) = (fragment, ctx.timescale) {
            duration_ms = to_ms(d.0, ts.0);
        }
    }
    if duration_ms.unwrap_or(0) == 0 {
        if let Some((offset, len)) = last_moof.filter(|&(_, len)| len <= MAX_MOOF) {
            let moof = read_at(reader, offset, len as usize)?;
            duration_ms = moof_end_ms(&moof, &ctx);
        }
    }
    info.duration_ms = duration_ms.filter(|&ms| ms > 0);
    if !has_video {
        info.width = None;
        info.height = None;
        if info.audio_codec.is_some() {
            info.kind = Kind::Audio;
            info.mime = "audio/mp4";
        }
    }
    Ok(())
}

/// Walks the top-level boxes; returns `moov`'s bytes (header included) and where the last `moof`
/// is (offset, size). Every box must end within the file: one that does not means the upload was
/// cut short.
type Boxes = (Vec<u8>, Option<(u64, u64)>);
fn find_boxes<R: Read + Seek>(reader: &mut R, size: u64) -> Result<Boxes, ProbeError> {
    let mut offset = 0u64;
    let mut moov = None;
    let mut last_moof = None;
    for _ in 0..MAX_BOXES {
        if offset == size {
            break;
        }
        let header = read_at(reader, offset, 16)?;
        if header.len() < 8 {
            return Err(ProbeError::Truncated);
        }
        let size32 = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let kind = [header[4], header[5], header[6], header[7]];
        let box_size = match size32 {
            // To the end of the file.
            0 => size - offset,
            1 => {
                let large: [u8; 8] = header.get(8..16).and_then(|b| b.try_into().ok()).ok_or(ProbeError::Truncated)?;
                u64::from_be_bytes(large)
            }
            n => u64::from(n),
        };
        if box_size < 8 {
            return Err(ProbeError::Malformed("MP4 box size"));
        }
        let end = offset.checked_add(box_size).ok_or(ProbeError::Malformed("MP4 box size"))?;
        if end > size {
            return Err(ProbeError::Truncated);
        }
        if &kind == b"moov" && moov.is_none() {
            if box_size > MAX_HEADER_READ {
                return Err(ProbeError::TooLarge("MP4 moov"));
            }
            let bytes = read_at(reader, offset, box_size as usize)?;
            if bytes.len() as u64 != box_size {
                return Err(ProbeError::Truncated);
            }
            moov = Some(bytes);
        }
        if &kind == b"moof" {
            last_moof = Some((offset, box_size));
        }
        offset = end;
    }
    let moov = moov.ok_or(ProbeError::Malformed("MP4 without moov"))?;
    Ok((moov, last_moof))
}

/// The end time of a `moof`'s longest track fragment, in ms: its `tfdt` (decode time of the first
/// sample) plus the durations of its `trun` samples (each given, or `tfhd`'s default).
fn moof_end_ms(moof: &[u8], ctx: &mp4parse::MediaContext) -> Option<u64> {
    let mut end_ms: Option<u64> = None;
    for (kind, traf) in boxes(moof.get(8..)?) {
        if kind != *b"traf" {
            continue;
        }
        let (mut track_id, mut default_duration, mut start, mut total) = (None, None, None, 0u64);
        for (kind, b) in boxes(traf) {
            // Full boxes: version (1 byte) and flags (3 bytes) first.
            let flags = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) & 0x00FF_FFFF;
            let version = b[0];
            let mut r = Fields { buf: b, pos: 4 };
            match &kind {
                b"tfhd" => {
                    track_id = Some(r.u32()?);
                    if flags & 0x01 != 0 {
                        r.skip(8)?; // base data offset
                    }
                    if flags & 0x02 != 0 {
                        r.skip(4)?; // sample description index
                    }
                    if flags & 0x08 != 0 {
                        default_duration = Some(r.u32()?);
                    }
                }
                b"tfdt" => start = Some(if version == 1 { r.u64()? } else { u64::from(r.u32()?) }),
                b"trun" => {
                    let count = r.u32()?;
                    if flags & 0x01 != 0 {
                        r.skip(4)?; // data offset
                    }
                    if flags & 0x04 != 0 {
                        r.skip(4)?; // first sample flags
                    }
                    if flags & 0x100 == 0 {
                        total = total.saturating_add(u64::from(count) * u64::from(default_duration?));
                        continue;
                    }
                    // Per sample: duration, then size, flags and composition offset if present.
                    let rest = 4 * [0x200, 0x400, 0x800].iter().filter(|&&f| flags & f != 0).count();
                    for _ in 0..count {
                        total = total.saturating_add(u64::from(r.u32()?));
                        r.skip(rest)?;
                    }
                }
                _ => {}
            }
        }
        let track = ctx.tracks.iter().find(|t| t.track_id == track_id)?;
        let timescale = track.timescale.as_ref()?.0;
        let ms = to_ms(start?.saturating_add(total), timescale)?;
        end_ms = Some(end_ms.map_or(ms, |e| e.max(ms)));
    }
    end_ms
}

/// The boxes in `buf`, as (type, body); stops at the first that does not fit.
fn boxes(buf: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
        let body = rest.get(8..size.max(8))?;
        rest = &rest[size.max(8)..];
        Some((kind, body))
    })
}

/// Big-endian fields read in order from a box body.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let b = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn codec_name(codec: CodecType) -> Option<&'static str> {
    Some(match codec {
        CodecType::H264 => "h264",
        CodecType::MP4V => "mpeg4",
        CodecType::AV1 => "av1",
        CodecType::VP9 => "vp9",
        CodecType::VP8 => "vp8",
        CodecType::H263 => "h263",
        CodecType::AAC => "aac",
        CodecType::MP3 => "mp3",
        CodecType::FLAC => "flac",
        CodecType::Opus => "opus",
        CodecType::ALAC => "alac",
        CodecType::LPCM => "pcm",
        _ => return None,
    })
}
