//! MP4 / MOV (ISO base media): the top-level boxes are walked by seeking past each one (`mdat`,
//! gigabytes of media, is never read), and only `moov` is read — capped at
//! [`MAX_HEADER_READ`] — and parsed by Mozilla's `mp4parse` (Firefox's parser, with fallible
//! allocation). `mp4parse` reads its input front to back, so it is given `moov` alone rather than
//! the file: handing it the file would read every byte of `mdat` to skip it.

use std::io::{Cursor, Read, Seek};

use mp4parse::{CodecType, SampleEntry, TrackType};

use crate::{read_at, to_ms, Kind, MediaInfo, ProbeError, MAX_HEADER_READ};

/// Top-level boxes looked at before giving up (a real file has a handful).
const MAX_BOXES: usize = 1024;

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, size: u64, info: &mut MediaInfo) -> Result<(), ProbeError> {
    let moov = find_moov(reader, size)?;
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

/// Walks the top-level boxes and returns `moov`'s bytes (header included). Every box must end
/// within the file: one that does not means the upload was cut short.
fn find_moov<R: Read + Seek>(reader: &mut R, size: u64) -> Result<Vec<u8>, ProbeError> {
    let mut offset = 0u64;
    let mut moov = None;
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
        offset = end;
    }
    moov.ok_or(ProbeError::Malformed("MP4 without moov"))
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
