//! What an uploaded file is, and how long and how large: the media library's metadata, read from
//! the container itself in pure Rust (no ffmpeg binary, no codec decoding except for thumbnails).
//!
//! Three entry points, none of which does I/O of its own beyond the reader it is handed:
//!
//! - [`sniff`] names the type from the first bytes ([`SNIFF_LEN`] is enough) by their magic
//!   numbers (the `infer` crate, plus an MPEG-audio frame check for MP3 files without an ID3 tag).
//!   The name and `Content-Type` a client sent are never consulted: this is the type the server
//!   stores and serves. MIME types are the ones browsers expect (`audio/wav`, not `audio/x-wav`).
//! - [`probe`] reads the container's headers for duration, dimensions and codecs:
//!
//!   | Container | Read | Duration from |
//!   |---|---|---|
//!   | MP4 / MOV / M4A | the top-level boxes by seeking past each; `moov` handed to `mp4parse` | the longest track's `mdhd`; fragmented files: `mehd`, else the end of the last `moof` |
//!   | WebM / Matroska | a small EBML walk (`mkv`): header, `Info`, `Tracks`, and a file's last 1 MiB | `Info/Duration`, else the last block's timestamp (MediaRecorder files have no `Duration`) |
//!   | Ogg (Opus, Vorbis) | the first page (the codec's id header) and the last 128 KiB | the last page's granule position (minus Opus's pre-skip) over the sample rate |
//!   | MP3 | the ID3v2 tag skipped, the first frame (two consecutive frame headers) | the Xing/Info/VBRI frame count, else the bit rate (CBR); encoder delay and padding included, as ffprobe counts |
//!   | WAV | the RIFF chunk list (`fmt `, `data`) | the data size over the byte rate |
//!   | FLAC | `STREAMINFO` | its sample count over the sample rate |
//!   | PNG, JPEG, GIF, WebP, … | the header (`imagesize`) | — (width and height only) |
//!
//! - [`thumbnail`] decodes an image (the `image` crate: JPEG, PNG, GIF, WebP) and writes a JPEG
//!   no larger than the side asked for, turned upright by its EXIF orientation.
//!
//! **What is trusted.** Nothing in the file is believed beyond what it costs: a size field moves a
//! seek or bounds a loop, it never sizes an allocation unless capped first. Every reader is
//! bounded — at most [`MAX_HEADER_READ`] bytes of headers are held at once (an MP4's `moov`), the
//! tail scans read a fixed window from the end, and loops over boxes, chunks and elements stop at a
//! fixed count — so a 2 GiB upload is probed in a handful of reads whatever its bytes say. A
//! container that states its own length (an MP4 box, a Matroska segment, a WAV `data` chunk)
//! longer than the file is [`ProbeError::Truncated`]: the caller stores such a file as a plain file
//! with no duration. Images are refused before decoding when larger than [`MAX_PIXELS`] (a
//! decompression bomb), and the decoder runs under `image`'s allocation limits as well.
//!
//! **Use.** The calls are synchronous and make a handful of small reads: run them on a blocking
//! thread, on the stored file.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let mut file = std::fs::File::open("upload.bin")?;
//! let size = file.metadata()?.len();
//! match chorus_probe::probe(&mut file, size) {
//!     Ok(info) => println!("{} {:?} ms {:?}x{:?}", info.mime, info.duration_ms, info.width, info.height),
//!     // Not media, or corrupt, or cut short: a plain file (with `sniff`'s type, if any).
//!     Err(e) => println!("plain file: {e}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! **Never panics**, on any input: `fuzz/fuzz_targets/probe.rs` runs all three entry points on
//! arbitrary bytes, and `tests/probe.rs` truncates and corrupts real files made by ffmpeg.

use std::io::{self, Read, Seek, SeekFrom};

mod flac;
mod image;
mod mkv;
mod mp3;
mod mp4;
mod ogg;
mod wav;

pub use image::thumbnail;

/// How many leading bytes [`sniff`] looks at (more are ignored, fewer may miss a type).
pub const SNIFF_LEN: usize = 4096;
/// The most header bytes held in memory at once (an MP4 `moov`, with its sample tables: about
/// 10 MiB for a two-hour film). A larger one is [`ProbeError::TooLarge`].
pub const MAX_HEADER_READ: u64 = 64 << 20;
/// The largest image [`thumbnail`] decodes: 50 megapixels (about 200 MB as RGBA).
pub const MAX_PIXELS: u64 = 50_000_000;
/// Widths and heights above this are not believed (no real media has them).
const MAX_DIMENSION: u64 = 65_535;

/// The broad kind of a file, from its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
    Image,
    Other,
}

/// A type named from the file's magic bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// The MIME type to store and serve, e.g. `video/webm`.
    pub mime: &'static str,
    /// The usual file extension without the dot, e.g. `webm`.
    pub ext: &'static str,
    pub kind: Kind,
}

/// What [`probe`] found. Fields it could not read are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// The MIME type, refined by the content: an MP4 or WebM without a video track is `audio/…`.
    pub mime: &'static str,
    pub kind: Kind,
    pub duration_ms: Option<u64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// ffmpeg's short codec names: `h264`, `hevc`, `vp8`, `vp9`, `av1`, …
    pub video_codec: Option<String>,
    /// `aac`, `opus`, `vorbis`, `mp3`, `flac`, `pcm_s16le`, …
    pub audio_codec: Option<String>,
}

impl MediaInfo {
    fn new(sniffed: &Sniffed) -> MediaInfo {
        MediaInfo {
            mime: sniffed.mime,
            kind: sniffed.kind,
            duration_ms: None,
            width: None,
            height: None,
            video_codec: None,
            audio_codec: None,
        }
    }

    /// Sets width and height when both are plausible.
    fn set_size(&mut self, width: u64, height: u64) {
        if (1..=MAX_DIMENSION).contains(&width) && (1..=MAX_DIMENSION).contains(&height) {
            self.width = Some(width as u32);
            self.height = Some(height as u32);
        }
    }
}

/// Why [`probe`] or [`thumbnail`] gave up. Any of them means: store the file as a plain file.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("not a media type this probe reads")]
    Unsupported,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("truncated: the container says it is longer than the file")]
    Truncated,
    #[error("too large to read: {0}")]
    TooLarge(&'static str),
    #[error("cannot decode image: {0}")]
    Image(String),
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// Names the type of a file from its first bytes (up to [`SNIFF_LEN`]), or `None` when no
/// known magic number matches (the caller stores `application/octet-stream`).
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    let head = &head[..head.len().min(SNIFF_LEN)];
    // infer's Matroska check wants more than 256 bytes; a shorter file is padded with zeros so
    // a tiny (truncated) WebM is still named.
    let mut padded = [0u8; 257];
    let buf = if head.len() < padded.len() {
        padded[..head.len()].copy_from_slice(head);
        &padded[..]
    } else {
        head
    };
    if let Some(t) = infer::get(buf) {
        let kind = match t.matcher_type() {
            infer::MatcherType::Video => Kind::Video,
            infer::MatcherType::Audio => Kind::Audio,
            infer::MatcherType::Image => Kind::Image,
            _ => Kind::Other,
        };
        let (mime, ext) = standard_mime(t.mime_type(), t.extension());
        return Some(Sniffed { mime, ext, kind });
    }
    // infer knows MPEG-1 layer 3 frames only at offset 0 without CRC; MPEG-2/2.5 and CRC'd
    // frames are recognised by two consecutive valid frame headers.
    if mp3::find_first_frame(head, true).is_some_and(|(offset, _)| offset == 0) {
        return Some(Sniffed { mime: "audio/mpeg", ext: "mp3", kind: Kind::Audio });
    }
    None
}

/// infer's names where browsers and RFCs use another.
fn standard_mime(mime: &'static str, ext: &'static str) -> (&'static str, &'static str) {
    match mime {
        "audio/x-wav" => ("audio/wav", ext),
        "audio/x-flac" => ("audio/flac", ext),
        "audio/m4a" => ("audio/mp4", ext),
        "video/x-m4v" => ("video/mp4", ext),
        // Ogg Opus is served as Ogg: that is what <audio> looks for.
        "audio/opus" => ("audio/ogg", "opus"),
        _ => (mime, ext),
    }
}

/// Reads duration, dimensions and codecs from a file of `size` bytes. `reader` may be at any
/// position; it is left anywhere. At most a few reads are made (see the module docs for bounds).
///
/// `Err` means the file is not media this probe reads, or is corrupt or truncated: store it as a
/// plain file with no duration.
pub fn probe<R: Read + Seek>(reader: &mut R, size: u64) -> Result<MediaInfo, ProbeError> {
    let mut head = vec![0u8; SNIFF_LEN.min(size as usize)];
    reader.seek(SeekFrom::Start(0))?;
    read_full(reader, &mut head)?;
    let sniffed = sniff(&head).ok_or(ProbeError::Unsupported)?;
    let mut info = MediaInfo::new(&sniffed);
    match sniffed.ext {
        "mp4" | "m4v" | "mov" | "m4a" => mp4::probe(reader, size, &mut info)?,
        "webm" | "mkv" => mkv::probe(reader, size, &mut info)?,
        "ogg" | "opus" => ogg::probe(reader, size, &mut info)?,
        "mp3" => mp3::probe(reader, size, &mut info)?,
        "wav" => wav::probe(reader, size, &mut info)?,
        "flac" => flac::probe(&head, &mut info)?,
        _ if sniffed.kind == Kind::Image => image::probe(reader, &mut info)?,
        _ => return Err(ProbeError::Unsupported),
    }
    Ok(info)
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads `len` bytes at `offset` (`len` already capped by the caller); short at the end of file.
fn read_at<R: Read + Seek>(reader: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    reader.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    let n = read_full(reader, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// `units` of `1/rate` seconds in milliseconds, without overflow; `None` for a zero rate.
fn to_ms(units: u64, rate: u64) -> Option<u64> {
    if rate == 0 {
        return None;
    }
    u64::try_from(u128::from(units) * 1000 / u128::from(rate)).ok()
}
