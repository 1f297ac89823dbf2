//! One WebM file through libwebm (the `webm` crate), sans-IO: libwebm writes into a [`Sink`]
//! that turns its writes and seeks into [`WriteOp`]s (bytes at an offset) for the caller to
//! carry out. Nothing here touches a file.
//!
//! libwebm's *file* mode writes each cluster as its frames come (the segment and the open
//! cluster with an "unknown" size), so a file cut off at any point plays up to its last frame;
//! `finish` then writes the cues (seeking) and the real sizes. One gap is the `Duration` of the
//! segment info, which libwebm writes as a 1 ms placeholder until the end: [`WebmFile`] finds
//! that placeholder and rewrites it as the media goes on ([`WebmFile::patch_duration`]), so a
//! file left by a crash also says how long it is.

use std::cell::RefCell;
use std::io::{self, Seek, SeekFrom, Write};
use std::rc::Rc;

use webm::mux::{AudioCodecId, AudioTrack, Segment, SegmentBuilder, SegmentMode, VideoCodecId, VideoTrack, Writer};

/// Bytes to write at an offset of the file (offsets past the end only ever append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOp {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct SinkState {
    pos: u64,
    len: u64,
    ops: Vec<WriteOp>,
}

/// What libwebm writes to: a position and the writes made, shared with [`WebmFile`].
#[derive(Debug, Clone, Default)]
struct Sink(Rc<RefCell<SinkState>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.0.borrow_mut();
        let pos = s.pos;
        match s.ops.last_mut() {
            Some(op) if op.offset + op.bytes.len() as u64 == pos => op.bytes.extend_from_slice(buf),
            _ => s.ops.push(WriteOp { offset: pos, bytes: buf.to_vec() }),
        }
        s.pos += buf.len() as u64;
        s.len = s.len.max(s.pos);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Sink {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut s = self.0.borrow_mut();
        let base = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => s.pos.checked_add_signed(d),
            SeekFrom::End(d) => s.len.checked_add_signed(d),
        };
        s.pos = base.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(s.pos)
    }
}

/// The Duration element libwebm writes before the end (float, 1.0 ms).
const DURATION_PLACEHOLDER: [u8; 7] = [0x44, 0x89, 0x84, 0x3f, 0x80, 0x00, 0x00];

/// The video track of a file: VP8 at its first keyframe's size.
#[derive(Debug, Clone, Copy)]
pub struct VideoParams {
    pub width: u32,
    pub height: u32,
}

/// One WebM file being written.
pub struct WebmFile {
    seg: Option<Segment<Sink>>,
    sink: Sink,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
    /// Offset of the Duration placeholder's value, once libwebm wrote it.
    duration_at: Option<u64>,
    /// Bytes of the file so far.
    pub len: u64,
}

/// libwebm refused something (it says no more than that).
#[derive(Debug, thiserror::Error)]
#[error("webm muxer: {0}")]
pub struct MuxError(pub String);

/// OpusHead (RFC 7845 §5.1), the CodecPrivate of an Opus track: WebRTC's Opus is 48 kHz and
/// signalled as 2 channels (a mono stream decodes fine as stereo).
fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(2); // channels
    h.extend_from_slice(&312u16.to_le_bytes()); // pre-skip (libopus' usual lookahead)
    h.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family 0: mono or stereo
    h
}

impl WebmFile {
    /// Starts a file with a VP8 track (if `video`) and an Opus track (if `audio`).
    pub fn new(video: Option<VideoParams>, audio: bool) -> Result<WebmFile, MuxError> {
        let sink = Sink::default();
        let err = |e: webm::mux::Error| MuxError(format!("{e:?}"));
        let mut b = SegmentBuilder::new(Writer::new(sink.clone()))
            .map_err(err)?
            .set_mode(SegmentMode::File)
            .map_err(err)?
            .set_writing_app("Chorus")
            .map_err(err)?;
        let mut vt = None;
        if let Some(v) = video {
            let (nb, t) = b.add_video_track(v.width, v.height, VideoCodecId::VP8, None).map_err(err)?;
            b = nb;
            vt = Some(t);
        }
        let mut at = None;
        if audio {
            let (nb, t) = b.add_audio_track(48_000, 2, AudioCodecId::Opus, None).map_err(err)?;
            b = nb.set_codec_private(t, &opus_head()).map_err(err)?;
            at = Some(t);
        }
        Ok(WebmFile { seg: Some(b.build()), sink, video: vt, audio: at, duration_at: None, len: 0 })
    }

    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Adds a frame at `ts_ns` from the file's start (never before the last frame added).
    pub fn add(&mut self, video: bool, data: &[u8], ts_ns: u64, keyframe: bool) -> Result<(), MuxError> {
        let seg = self.seg.as_mut().ok_or_else(|| MuxError("finished".into()))?;
        let r = match (video, self.video, self.audio) {
            (true, Some(t), _) => seg.add_frame(t, data, ts_ns, keyframe),
            (false, _, Some(t)) => seg.add_frame(t, data, ts_ns, keyframe),
            _ => return Err(MuxError("no such track".into())),
        };
        r.map_err(|e| MuxError(format!("{e:?}")))
    }

    /// Writes the cues and the real sizes and duration.
    pub fn finish(&mut self) -> Result<(), MuxError> {
        let seg = self.seg.take().ok_or_else(|| MuxError("finished".into()))?;
        seg.finalize(None).map(drop).map_err(|_| MuxError("finalize failed".into()))
    }

    /// A write of the Duration placeholder's value, so a file cut off here says how long it is
    /// (see the module doc); `None` before libwebm wrote the header or after `finish`.
    pub fn patch_duration(&self, ms: f32) -> Option<WriteOp> {
        self.seg.as_ref()?;
        Some(WriteOp { offset: self.duration_at?, bytes: ms.to_be_bytes().to_vec() })
    }

    /// The writes made since the last call, in order.
    pub fn take_ops(&mut self) -> Vec<WriteOp> {
        let mut s = self.sink.0.borrow_mut();
        self.len = s.len;
        let ops = std::mem::take(&mut s.ops);
        if self.duration_at.is_none() {
            for op in &ops {
                if let Some(i) = op.bytes.windows(DURATION_PLACEHOLDER.len()).position(|w| w == DURATION_PLACEHOLDER) {
                    self.duration_at = Some(op.offset + i as u64 + 3);
                    break;
                }
            }
        }
        ops
    }
}
