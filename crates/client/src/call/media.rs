//! Generated media: VP8 simulcast and Opus frames that are sized and paced like the real thing
//! and carry a [`Trailer`] the receiver parses (layer, frame number, send time).
//!
//! Video comes in two kinds ([`VideoKind`]). *Synthetic* frames (the load generator's and the
//! tests') are not decodable: the bitstream starts are valid enough for an SFU (VP8 key/inter
//! frame tags, the keyframe start code and dimensions), the rest is filler, and each layer hits
//! its target bitrate exactly. *Clip* frames are real VP8 — a 3 s test-pattern loop per layer
//! (`assets/vp8`, made by its `make.sh` with ffmpeg/libvpx and committed) — so a browser shows
//! a picture; the trailer then follows the last partition, where a VP8 decoder never reads.
//! Audio is synthetic in both (an Opus TOC byte, then filler).

use std::time::{SystemTime, UNIX_EPOCH};

/// Marks the start of the trailer in a synthetic frame.
pub const MAGIC: [u8; 4] = *b"CHRS";

/// Bytes a trailer takes: magic, layer `u8`, frame number `u32`, send time `u64` (all LE).
pub const TRAILER_LEN: usize = 4 + 1 + 4 + 8;

/// Video frames per second of every layer.
pub const VIDEO_FPS: u32 = 30;

/// Frames between periodic keyframes (~3 s).
pub const KEYFRAME_INTERVAL: u32 = 3 * VIDEO_FPS;

/// A keyframe is this many times larger than an inter frame.
pub const KEYFRAME_FACTOR: usize = 5;

/// Milliseconds of audio per Opus frame.
pub const AUDIO_FRAME_MS: u32 = 20;

/// Bytes of one Opus frame (~40 kbps at 50 frames/s).
pub const AUDIO_FRAME_BYTES: usize = 100;

/// Opus TOC byte: config 31 (CELT fullband 20 ms), stereo, one frame per packet.
pub const OPUS_TOC: u8 = 0xfc;

/// The simulcast RIDs in order, lowest resolution first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];

/// Microseconds since the Unix epoch: the clock of [`Trailer::sent_us`]. Sender and receiver
/// on one machine share it, so the difference is the one-way latency.
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// What every synthetic frame carries after its codec header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Simulcast layer index, `0` the lowest (always `0` for audio).
    pub layer: u8,
    /// Frame number, counted per layer from 0.
    pub frame: u32,
    /// When the frame was made, µs since the Unix epoch.
    pub sent_us: u64,
}

impl Trailer {
    /// Appends the trailer to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(self.layer);
        out.extend_from_slice(&self.frame.to_le_bytes());
        out.extend_from_slice(&self.sent_us.to_le_bytes());
    }

    /// Finds and decodes the trailer in a frame: right after the codec header (synthetic
    /// frames; only the first 64 bytes are searched, filler could contain the magic by chance)
    /// or at the very end (clip frames).
    pub fn find(data: &[u8]) -> Option<Trailer> {
        let head = &data[..data.len().min(64)];
        let at = match head.windows(MAGIC.len()).position(|w| w == MAGIC) {
            Some(at) => at,
            None => {
                let at = data.len().checked_sub(TRAILER_LEN)?;
                if data[at..at + MAGIC.len()] != MAGIC {
                    return None;
                }
                at
            }
        };
        let t = data.get(at + MAGIC.len()..at + TRAILER_LEN)?;
        Some(Trailer {
            layer: t[0],
            frame: u32::from_le_bytes(t[1..5].try_into().ok()?),
            sent_us: u64::from_le_bytes(t[5..13].try_into().ok()?),
        })
    }
}

/// One simulcast layer as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// RTP stream id (`q`, `h`, `f`).
    pub rid: &'static str,
    /// Width in pixels (16:9).
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Target bitrate in kbps.
    pub kbps: u32,
}

/// The bitrate a browser would spend on a layer of this height.
pub fn kbps_for_height(height: u32) -> u32 {
    match height {
        0..=180 => 150,
        181..=360 => 500,
        361..=720 => 1500,
        _ => 3000,
    }
}

/// The layers of a simulcast video with `layers` layers (1..=3) whose tallest is `top_height`:
/// each lower layer has half the height of the one above, as browsers do.
pub fn layer_specs(layers: u8, top_height: u32) -> Vec<LayerSpec> {
    let n = layers.clamp(1, 3) as usize;
    (0..n)
        .map(|i| {
            let height = (top_height >> (n - 1 - i)).max(2);
            LayerSpec {
                rid: RIDS[i],
                width: (height * 16 / 9) as u16,
                height: height as u16,
                kbps: kbps_for_height(height),
            }
        })
        .collect()
}

/// Size of an inter frame so that a keyframe every [`KEYFRAME_INTERVAL`] frames, at
/// [`KEYFRAME_FACTOR`] times the size, averages to `kbps`.
pub fn inter_frame_bytes(kbps: u32) -> usize {
    let per_gop = kbps as usize * 1000 / 8 * KEYFRAME_INTERVAL as usize / VIDEO_FPS as usize;
    per_gop / (KEYFRAME_INTERVAL as usize - 1 + KEYFRAME_FACTOR)
}

/// Bytes of the VP8 header [`vp8_frame`] writes before the trailer.
pub fn vp8_header_len(key: bool) -> usize {
    if key {
        10
    } else {
        3
    }
}

/// A synthetic VP8 frame of `size` bytes (at least header + trailer): the RFC 6386 frame tag
/// (key or inter, version 0, shown, first partition size), for keyframes the start code and
/// dimensions, then the trailer and filler.
pub fn vp8_frame(key: bool, width: u16, height: u16, trailer: Trailer, size: usize) -> Vec<u8> {
    let header = vp8_header_len(key);
    let size = size.max(header + TRAILER_LEN);
    let mut out = Vec::with_capacity(size);
    // The first partition is the header data after the tag; it may not exceed the frame.
    let first_partition = ((size - header) as u32).min(0x7_ffff);
    let tag: u32 = u32::from(!key) | (1 << 4) | (first_partition << 5);
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if key {
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&(width & 0x3fff).to_le_bytes());
        out.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    }
    trailer.encode(&mut out);
    // Filler varies with the frame number so it does not look like a constant buffer.
    let seed = trailer.frame as u8;
    out.extend((out.len()..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    out
}

/// What [`parse_vp8`] reads from a frame's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Header {
    /// A keyframe (frame tag bit 0 clear).
    pub key: bool,
    /// show_frame flag.
    pub show: bool,
    /// first_partition_size.
    pub first_partition: u32,
    /// Width and height, for keyframes.
    pub size: Option<(u16, u16)>,
}

/// Parses the frame tag (and for keyframes start code and size) of a VP8 frame.
pub fn parse_vp8(data: &[u8]) -> Option<Vp8Header> {
    let tag = u32::from_le_bytes([*data.first()?, *data.get(1)?, *data.get(2)?, 0]);
    let key = tag & 1 == 0;
    let size = if key {
        if data.get(3..6)? != [0x9d, 0x01, 0x2a] {
            return None;
        }
        let w = u16::from_le_bytes([data[6], *data.get(7)?]) & 0x3fff;
        let h = u16::from_le_bytes([*data.get(8)?, *data.get(9)?]) & 0x3fff;
        Some((w, h))
    } else {
        None
    };
    Some(Vp8Header { key, show: tag & (1 << 4) != 0, first_partition: tag >> 5, size })
}

/// A synthetic Opus frame: TOC byte, trailer, filler to [`AUDIO_FRAME_BYTES`].
pub fn opus_frame(trailer: Trailer) -> Vec<u8> {
    let mut out = Vec::with_capacity(AUDIO_FRAME_BYTES);
    out.push(OPUS_TOC);
    trailer.encode(&mut out);
    out.resize(AUDIO_FRAME_BYTES, 0x55);
    out
}

/// Which frames a [`VideoSource`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoKind {
    /// Undecodable frames of exactly the target size per layer (load generation, tests).
    #[default]
    Synthetic,
    /// Real VP8 from the committed test-pattern clips: browsers decode and show it.
    Clip,
}

/// A looping decodable VP8 clip: its frames (the first the only keyframe) and their size.
#[derive(Debug)]
pub struct Clip {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The VP8 frames in order; frame 0 is a keyframe.
    pub frames: Vec<&'static [u8]>,
}

/// The clips, lowest first: 320x180, 640x360, 1280x720.
static CLIP_FILES: [&[u8]; 3] = [
    include_bytes!("../../assets/vp8/q.ivf"),
    include_bytes!("../../assets/vp8/h.ivf"),
    include_bytes!("../../assets/vp8/f.ivf"),
];

static CLIPS: std::sync::OnceLock<Vec<Clip>> = std::sync::OnceLock::new();

/// Splits an IVF file (32-byte header; per frame a 12-byte header with the size) into frames.
/// `None` if it is not a VP8 IVF or is truncated.
pub fn parse_ivf(data: &'static [u8]) -> Option<Clip> {
    if data.get(..4)? != b"DKIF" || data.get(8..12)? != b"VP80" {
        return None;
    }
    let header = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let width = u16::from_le_bytes([*data.get(12)?, *data.get(13)?]);
    let height = u16::from_le_bytes([*data.get(14)?, *data.get(15)?]);
    let mut frames = Vec::new();
    let mut at = header;
    while at < data.len() {
        let size = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?) as usize;
        frames.push(data.get(at + 12..at + 12 + size)?);
        at += 12 + size;
    }
    Some(Clip { width, height, frames })
}

/// The decodable clips, lowest first.
pub fn clips() -> &'static [Clip] {
    CLIPS.get_or_init(|| CLIP_FILES.iter().map(|f| parse_ivf(f).expect("a committed VP8 IVF clip")).collect())
}

/// The clip for a layer of this height: the one closest in height.
fn clip_for(height: u16) -> usize {
    let clips = clips();
    (0..clips.len()).min_by_key(|&i| clips[i].height.abs_diff(height)).unwrap_or(0)
}

/// One generated video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Layer index.
    pub layer: u8,
    /// Keyframe.
    pub key: bool,
    /// The VP8 frame.
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
struct LayerState {
    spec: LayerSpec,
    frame: u32,
    since_key: u32,
    want_key: bool,
    active: bool,
    /// With [`VideoKind::Clip`]: which clip, and the next frame of it.
    clip: Option<(usize, usize)>,
}

/// The frames of a simulcast camera, one call of [`VideoSource::tick`] per 1/30 s.
#[derive(Debug, Clone)]
pub struct VideoSource {
    layers: Vec<LayerState>,
    /// Frames ticked so far (drives the RTP timestamp).
    pub ticks: u64,
}

impl VideoSource {
    /// A source sending synthetic frames for `specs`, all active; each starts with a keyframe.
    pub fn new(specs: &[LayerSpec]) -> VideoSource {
        VideoSource::with_kind(specs, VideoKind::Synthetic)
    }

    /// A source of `kind` for `specs`. Clip layers use the clip closest to their height (the
    /// clips come in 180, 360 and 720 lines) and its bitrate, not the spec's.
    pub fn with_kind(specs: &[LayerSpec], kind: VideoKind) -> VideoSource {
        let layers = specs
            .iter()
            .map(|&spec| LayerState {
                spec,
                frame: 0,
                since_key: 0,
                want_key: true,
                active: true,
                clip: (kind == VideoKind::Clip).then(|| (clip_for(spec.height), 0)),
            })
            .collect();
        VideoSource { layers, ticks: 0 }
    }

    /// The layers sent.
    pub fn specs(&self) -> Vec<LayerSpec> {
        self.layers.iter().map(|l| l.spec).collect()
    }

    /// Sets which layers are sent (lowest first; missing flags mean inactive). A layer that
    /// resumes starts with a keyframe, as an encoder does, so receivers can switch to it.
    pub fn set_active(&mut self, active: &[bool]) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let on = active.get(i).copied().unwrap_or(false);
            if on && !l.active {
                l.want_key = true;
            }
            l.active = on;
        }
    }

    /// Which layers are sent.
    pub fn active(&self) -> Vec<bool> {
        self.layers.iter().map(|l| l.active).collect()
    }

    /// The next frame of `layer` is a keyframe (after a keyframe request). `None`: all layers.
    pub fn request_keyframe(&mut self, layer: Option<usize>) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            if layer.is_none_or(|x| x == i) {
                l.want_key = true;
            }
        }
    }

    /// The frames of one 1/30 s tick, for the active layers, stamped `sent_us`.
    pub fn tick(&mut self, sent_us: u64) -> Vec<VideoFrame> {
        self.ticks += 1;
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            if !l.active {
                continue;
            }
            let trailer = Trailer { layer: i as u8, frame: l.frame, sent_us };
            let (key, data) = match &mut l.clip {
                Some((clip, next)) => {
                    // A keyframe request restarts the loop: frame 0 is its only keyframe.
                    let frames = &clips()[*clip].frames;
                    if l.want_key || *next >= frames.len() {
                        *next = 0;
                    }
                    let mut data = Vec::with_capacity(frames[*next].len() + TRAILER_LEN);
                    data.extend_from_slice(frames[*next]);
                    trailer.encode(&mut data);
                    *next += 1;
                    (*next == 1, data)
                }
                None => {
                    let key = l.want_key || l.since_key >= KEYFRAME_INTERVAL;
                    let inter = inter_frame_bytes(l.spec.kbps);
                    let size = if key { inter * KEYFRAME_FACTOR } else { inter };
                    (key, vp8_frame(key, l.spec.width, l.spec.height, trailer, size))
                }
            };
            out.push(VideoFrame { layer: i as u8, key, data });
            l.frame = l.frame.wrapping_add(1);
            l.since_key = if key { 1 } else { l.since_key + 1 };
            l.want_key = false;
        }
        out
    }
}

/// The frames of a microphone, one call of [`AudioSource::tick`] per 20 ms.
#[derive(Debug, Clone, Default)]
pub struct AudioSource {
    /// Frames made so far (also the next frame number).
    pub frame: u32,
}

impl AudioSource {
    /// The next 20 ms frame, stamped `sent_us`.
    pub fn tick(&mut self, sent_us: u64) -> Vec<u8> {
        let data = opus_frame(Trailer { layer: 0, frame: self.frame, sent_us });
        self.frame = self.frame.wrapping_add(1);
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_header() {
        let t = Trailer { layer: 2, frame: 7, sent_us: 1 };
        let f = vp8_frame(true, 1280, 720, t, 3000);
        assert_eq!(f.len(), 3000);
        assert_eq!(f[0] & 1, 0, "bit 0 clear: keyframe");
        assert_eq!((f[0] >> 1) & 7, 0, "version 0");
        assert_ne!(f[0] & 0x10, 0, "show_frame");
        assert_eq!(&f[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(u16::from_le_bytes([f[6], f[7]]), 1280);
        assert_eq!(u16::from_le_bytes([f[8], f[9]]), 720);
        let h = parse_vp8(&f).unwrap();
        assert!(h.key && h.show);
        assert_eq!(h.size, Some((1280, 720)));
        assert_eq!(h.first_partition as usize, 3000 - 10);
        assert_eq!(Trailer::find(&f), Some(t));
    }

    #[test]
    fn vp8_interframe_header() {
        let t = Trailer { layer: 0, frame: 8, sent_us: 2 };
        let f = vp8_frame(false, 320, 180, t, 600);
        assert_eq!(f.len(), 600);
        assert_eq!(f[0] & 1, 1, "bit 0 set: inter frame");
        assert_ne!(f[0] & 0x10, 0, "show_frame");
        let h = parse_vp8(&f).unwrap();
        assert!(!h.key);
        assert_eq!(h.size, None);
        assert_eq!(&f[3..7], b"CHRS", "trailer right after the 3-byte tag");
        assert_eq!(Trailer::find(&f), Some(t));
    }

    /// The committed clips are real VP8 at their sizes: one keyframe, then 89 shown inter
    /// frames; a clip source loops them, restarts on a keyframe request and tags each frame.
    #[test]
    fn clips_are_vp8_loops() {
        let sizes: Vec<_> = clips().iter().map(|c| (c.width, c.height, c.frames.len())).collect();
        assert_eq!(sizes, vec![(320, 180, 90), (640, 360, 90), (1280, 720, 90)]);
        for c in clips() {
            for (i, f) in c.frames.iter().enumerate() {
                let h = parse_vp8(f).expect("a VP8 frame");
                assert_eq!(h.key, i == 0, "only frame 0 is a keyframe");
                assert!(h.show, "no hidden frames");
                if h.key {
                    assert_eq!(h.size, Some((c.width, c.height)));
                }
            }
        }
        let mut src = VideoSource::with_kind(&layer_specs(3, 720), VideoKind::Clip);
        let first = src.tick(5);
        assert!(first.iter().all(|f| f.key));
        for (i, f) in first.iter().enumerate() {
            let clip = &clips()[i];
            assert_eq!(&f.data[..clip.frames[0].len()], clip.frames[0], "the clip's bytes, then the trailer");
            assert_eq!(Trailer::find(&f.data), Some(Trailer { layer: i as u8, frame: 0, sent_us: 5 }));
        }
        for _ in 1..90 {
            assert!(src.tick(0).iter().all(|f| !f.key));
        }
        assert!(src.tick(0).iter().all(|f| f.key), "the loop starts again on its keyframe");
        assert!(src.tick(0).iter().all(|f| !f.key));
        src.request_keyframe(Some(2));
        assert_eq!(src.tick(0).iter().map(|f| f.key).collect::<Vec<_>>(), vec![false, false, true]);
    }

    #[test]
    fn trailer_round_trips() {
        let t = Trailer { layer: 1, frame: u32::MAX - 1, sent_us: 1_700_000_000_123_456 };
        let mut buf = vec![0xfc];
        t.encode(&mut buf);
        assert_eq!(buf.len(), 1 + TRAILER_LEN);
        assert_eq!(Trailer::find(&buf), Some(t));
        assert_eq!(Trailer::find(&buf[..buf.len() - 1]), None, "truncated");
        assert_eq!(Trailer::find(b"no trailer here"), None);
        let a = opus_frame(Trailer { layer: 0, frame: 3, sent_us: 9 });
        assert_eq!(a.len(), AUDIO_FRAME_BYTES);
        assert_eq!(a[0], OPUS_TOC);
        assert_eq!(Trailer::find(&a), Some(Trailer { layer: 0, frame: 3, sent_us: 9 }));
    }

    #[test]
    fn layers_follow_height() {
        let l = layer_specs(3, 720);
        let h: Vec<_> = l.iter().map(|s| (s.rid, s.height, s.kbps)).collect();
        assert_eq!(h, vec![("q", 180, 150), ("h", 360, 500), ("f", 720, 1500)]);
        assert_eq!(l[2].width, 1280);
        let l = layer_specs(2, 360);
        assert_eq!(l.iter().map(|s| s.height).collect::<Vec<_>>(), vec![180, 360]);
        assert_eq!(layer_specs(1, 720)[0].rid, "q");
    }

    /// Over one second (and over a whole keyframe interval) each layer is within ±25 % of its
    /// target bitrate, and the audio is ~40 kbps.
    #[test]
    fn bitrates_match_targets() {
        for secs in [1u32, 3, 6] {
            let mut src = VideoSource::new(&layer_specs(3, 720));
            let mut bytes = [0usize; 3];
            let mut keys = [0usize; 3];
            for _ in 0..VIDEO_FPS * secs {
                for f in src.tick(0) {
                    bytes[f.layer as usize] += f.data.len();
                    keys[f.layer as usize] += f.key as usize;
                }
            }
            for (i, spec) in src.specs().iter().enumerate() {
                let kbps = bytes[i] as f64 * 8.0 / 1000.0 / secs as f64;
                let target = spec.kbps as f64;
                assert!((kbps - target).abs() <= target * 0.25, "layer {i} over {secs}s: {kbps} kbps vs {target}");
                assert_eq!(keys[i], secs.div_ceil(3) as usize, "a keyframe every 3 s");
            }
        }
        let mut a = AudioSource::default();
        let bytes: usize = (0..1000 / AUDIO_FRAME_MS).map(|_| a.tick(0).len()).sum();
        let kbps = bytes as f64 * 8.0 / 1000.0;
        assert!((kbps - 40.0).abs() <= 10.0, "{kbps}");
    }

    #[test]
    fn keyframes_on_request_and_resume() {
        let mut src = VideoSource::new(&layer_specs(3, 720));
        assert!(src.tick(0).iter().all(|f| f.key), "starts with keyframes");
        assert!(src.tick(0).iter().all(|f| !f.key));
        src.request_keyframe(Some(1));
        let f = src.tick(0);
        assert_eq!(f.iter().map(|f| f.key).collect::<Vec<_>>(), vec![false, true, false]);
        src.set_active(&[true, false, false]);
        assert_eq!(src.tick(0).len(), 1, "inactive layers are not sent");
        src.set_active(&[true, true, true]);
        let f = src.tick(0);
        assert_eq!(f.iter().map(|f| f.key).collect::<Vec<_>>(), vec![false, true, true], "resumed layers key");
        let numbers: Vec<_> = f.iter().map(|f| Trailer::find(&f.data).unwrap().frame).collect();
        assert_eq!(numbers, vec![4, 3, 3], "frame numbers count per layer, paused layers do not advance");
    }
}
