//! WAV (RIFF/WAVE): the chunk list is walked by seeking past each chunk (at most [`MAX_CHUNKS`]),
//! reading only `fmt ` (format, channels, rate, byte rate) and the size of `data`. The duration
//! is `data size / byte rate`, which holds for every format a WAV can carry, compressed or not;
//! `hound` would refuse all but PCM and float.

use std::io::{Read, Seek};

use crate::{read_at, to_ms, MediaInfo, ProbeError};

const MAX_CHUNKS: usize = 64;

pub(crate) fn probe<R: Read + Seek>(reader: &mut R, size: u64, info: &mut MediaInfo) -> Result<(), ProbeError> {
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut offset = 12u64;
    let mut byte_rate = None;
    for _ in 0..MAX_CHUNKS {
        let header = read_at(reader, offset, 8 + 16)?;
        if header.len() < 8 {
            break;
        }
        let len = u64::from(le32(&header, 4));
        let body = offset + 8;
        match &header[..4] {
            b"fmt " if header.len() >= 24 => {
                let format = u16::from_le_bytes([header[8], header[9]]);
                let bits = u16::from_le_bytes([header[22], header[23]]);
                byte_rate = Some(u64::from(le32(&header, 16)));
                info.audio_codec = Some(codec_name(format, bits));
            }
            b"data" => {
                let byte_rate = byte_rate.ok_or(ProbeError::Malformed("WAV data before fmt"))?;
                // Writers that stream (and cannot seek back) leave 0 or 0xFFFFFFFF: to the end.
                let len = if len == 0 || len == 0xFFFF_FFFF {
                    size.saturating_sub(body)
                } else if body + len > size {
                    return Err(ProbeError::Truncated);
                } else {
                    len
                };
                info.duration_ms = to_ms(len, byte_rate).filter(|&ms| ms > 0);
                return Ok(());
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        offset = body + len + (len & 1);
        if offset >= size {
            break;
        }
    }
    Err(ProbeError::Malformed("WAV without data"))
}

/// ffmpeg's names for the common format tags.
fn codec_name(format: u16, bits: u16) -> String {
    match format {
        // PCM, and WAVE_FORMAT_EXTENSIBLE (nearly always PCM).
        1 | 0xFFFE if bits == 8 => "pcm_u8".to_owned(),
        1 | 0xFFFE => format!("pcm_s{bits}le"),
        3 => format!("pcm_f{bits}le"),
        6 => "pcm_alaw".to_owned(),
        7 => "pcm_mulaw".to_owned(),
        0x55 => "mp3".to_owned(),
        other => format!("wav_0x{other:04x}"),
    }
}
