//! The recording of one published stream (a camera with its microphone, or a screen) into one
//! WebM file, sans-IO: packets, sender reports and time come in; [`RecOutput`]s (bytes to write,
//! keyframe requests) come out.
//!
//! **Timing.** Every frame gets a time on one local timeline (nanoseconds since the recorder was
//! made). A track's first frame is placed at its *capture* time: from the publisher's RTCP
//! sender report for its SSRC when one is known (RTP → the sender's NTP clock, the same for its
//! audio and video, then onto ours with one offset taken from the first report), else at its
//! arrival. Every later frame follows from its RTP timestamp alone, so losses, silences (DTX,
//! mute) and layer switches (whose timestamps the recording's forwarder keeps continuous) leave
//! gaps in the file's timeline instead of shifting it.
//!
//! **Start.** The file starts at the video's first keyframe (requested when the recording
//! starts); audio before it is dropped. The header waits for that keyframe and for the first
//! audio frame, at most `wait`; a track with nothing by then is left out (an audio track is
//! always kept when the stream has one, as it needs nothing from its frames).
//!
//! **Order.** libwebm wants frames in time order across tracks, so frames are held per track and
//! released oldest first once every track in the file has one queued, or after [`MAX_HOLD`].

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use chorus_sfu::codec::Codec;

use super::frames::{vp8_size, Assembler, Frame, RecPacket, Reorder};
use super::mp4::{AvcParams, Mp4File};
use super::webm::{MuxError, VideoParams, WebmFile, WriteOp};

/// The file: WebM for VP8 (and audio only), fragmented MP4 for H.264.
enum File {
    Webm(WebmFile),
    Mp4(Box<Mp4File>),
}

impl File {
    fn add(&mut self, video: bool, data: &[u8], ts_ns: u64, key: bool) -> Result<(), MuxError> {
        match self {
            File::Webm(f) => f.add(video, data, ts_ns, key),
            File::Mp4(f) => f.add(video, data, ts_ns, key),
        }
    }
    fn finish(&mut self) -> Result<(), MuxError> {
        match self {
            File::Webm(f) => f.finish(),
            File::Mp4(f) => f.finish(),
        }
    }
    fn take_ops(&mut self) -> Vec<WriteOp> {
        match self {
            File::Webm(f) => f.take_ops(),
            File::Mp4(f) => f.take_ops(),
        }
    }
    fn len(&self) -> u64 {
        match self {
            File::Webm(f) => f.len,
            File::Mp4(f) => f.len,
        }
    }
    fn has_video(&self) -> bool {
        match self {
            File::Webm(f) => f.has_video(),
            File::Mp4(f) => f.has_video(),
        }
    }
    fn has_audio(&self) -> bool {
        match self {
            File::Webm(f) => f.has_audio(),
            File::Mp4(f) => f.has_audio(),
        }
    }
    /// WebM only: a fragmented MP4 says its length by its last fragment.
    fn patch_duration(&self, ms: f32) -> Option<WriteOp> {
        match self {
            File::Webm(f) => f.patch_duration(ms),
            File::Mp4(_) => None,
        }
    }
}

/// The file extension for a stream whose video is `video`.
pub fn extension(video: Option<Codec>) -> &'static str {
    if video == Some(Codec::H264) {
        "mp4"
    } else {
        "webm"
    }
}

/// How long a frame waits for the other track's frames before it is written anyway.
pub const MAX_HOLD: Duration = Duration::from_millis(300);
/// Keyframe requests while video waits for one, at most this often.
const KEYFRAME_EVERY: Duration = Duration::from_millis(500);
/// The crash-time Duration is brought up to date this often (in media time): a 4-byte write.
const DURATION_EVERY_NS: i64 = 250_000_000;

/// What a recorder wants done.
#[derive(Debug, PartialEq, Eq)]
pub enum RecOutput {
    /// Write these bytes at this offset of the file.
    Write(WriteOp),
    /// The video needs a keyframe (start, or after a loss).
    Keyframe,
}

/// Why a recorder stopped on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The file reached the size limit.
    SizeLimit,
    /// The muxer refused a frame it must write (the file is closed as it is).
    Mux(String),
}

/// What a finished file is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub duration_ms: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: u64,
    pub has_video: bool,
    pub has_audio: bool,
    /// Frames dropped (lost packets, waiting for a keyframe, muxer refusals).
    pub dropped_frames: u64,
    pub lost_packets: u64,
}

/// Which track of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

struct Sr {
    ssrc: u32,
    ntp_ns: i64,
    rtp: u32,
}

struct Queued {
    t: i64,
    arrived: i64,
    key: bool,
    data: Vec<u8>,
}

struct Track {
    kind: Kind,
    clock: i64,
    reorder: Reorder,
    asm: Assembler,
    srs: Vec<Sr>,
    /// Local time and extended RTP timestamp of the track's first frame.
    base: Option<(i64, i64)>,
    last_ext: i64,
    queue: VecDeque<Queued>,
    /// Time of the newest frame assembled.
    newest: Option<i64>,
    in_file: bool,
    size: Option<(u32, u32)>,
    /// H.264: the parameter sets of the first keyframe.
    avc: Option<AvcParams>,
    codec: Codec,
}

impl Track {
    fn new(kind: Kind, codec: Codec) -> Track {
        Track {
            kind,
            clock: if kind == Kind::Audio { 48_000 } else { 90_000 },
            reorder: Reorder::default(),
            asm: Assembler::new(codec),
            srs: Vec::new(),
            base: None,
            last_ext: 0,
            queue: VecDeque::new(),
            newest: None,
            in_file: false,
            size: None,
            avc: None,
            codec,
        }
    }
}

/// Settings of a [`StreamRecorder`].
#[derive(Debug, Clone, Copy)]
pub struct StreamConfig {
    /// How long the header waits for the first keyframe and audio frame.
    pub wait: Duration,
    /// The file stops growing at this size.
    pub max_bytes: u64,
}

/// One stream's file (see the module doc).
pub struct StreamRecorder {
    cfg: StreamConfig,
    epoch: Instant,
    audio: Option<Track>,
    video: Option<Track>,
    /// Local time minus the sender's NTP time, from its first sender report.
    ntp_offset: Option<i64>,
    file: Option<File>,
    /// Local time of the file's zero.
    origin: i64,
    /// Last frame time written (file time, ns), and the last one the duration was patched at.
    written: i64,
    patched: i64,
    keyframe_asked: Option<Instant>,
    stopped: Option<Stopped>,
    finished: bool,
    mux_refused: u64,
    out: VecDeque<RecOutput>,
}

impl StreamRecorder {
    /// A recorder for a stream with these tracks (audio: Opus; video: VP8 into WebM, H.264
    /// into fragmented MP4; other video is left out).
    pub fn new(now: Instant, cfg: StreamConfig, audio: bool, video: Option<Codec>) -> StreamRecorder {
        let video = video.filter(|c| matches!(c, Codec::Vp8 | Codec::H264));
        StreamRecorder {
            cfg,
            epoch: now,
            audio: audio.then(|| Track::new(Kind::Audio, Codec::Opus)),
            video: video.map(|c| Track::new(Kind::Video, c)),
            ntp_offset: None,
            file: None,
            origin: 0,
            written: 0,
            patched: 0,
            keyframe_asked: None,
            stopped: None,
            finished: false,
            mux_refused: 0,
            out: VecDeque::new(),
        }
    }

    fn local(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.epoch) {
            Some(d) => d.as_nanos() as i64,
            None => -(self.epoch.duration_since(at).as_nanos() as i64),
        }
    }

    fn track(&mut self, kind: Kind) -> Option<&mut Track> {
        match kind {
            Kind::Audio => self.audio.as_mut(),
            Kind::Video => self.video.as_mut(),
        }
    }

    /// Why it stopped by itself, if it did (then nothing more is written but `finish`).
    pub fn stopped(&self) -> Option<&Stopped> {
        self.stopped.as_ref()
    }

    /// A received packet of one of the stream's tracks.
    pub fn on_packet(&mut self, now: Instant, kind: Kind, pkt: RecPacket) {
        if self.stopped.is_some() || self.finished {
            return;
        }
        let Some(t) = self.track(kind) else { return };
        t.reorder.push(pkt);
        self.drive(now);
    }

    /// An RTCP sender report of the publisher for the track's SSRC `ssrc`.
    pub fn on_sender_report(&mut self, kind: Kind, ssrc: u32, ntp: SystemTime, rtp: u32, received: Instant) {
        let Ok(since) = ntp.duration_since(SystemTime::UNIX_EPOCH) else { return };
        let ntp_ns = since.as_nanos() as i64;
        let local = self.local(received);
        self.ntp_offset.get_or_insert(local - ntp_ns);
        let Some(t) = self.track(kind) else { return };
        t.srs.retain(|s| s.ssrc != ssrc);
        t.srs.push(Sr { ssrc, ntp_ns, rtp });
    }

    /// Time passed: releases what waited long enough.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.stopped.is_none() && !self.finished {
            self.drive(now);
        }
    }

    /// When [`StreamRecorder::handle_timeout`] is due at the latest.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for t in [&self.audio, &self.video].into_iter().flatten() {
            if let Some(d) = t.reorder.deadline() {
                at(d);
            }
            if let Some(q) = t.queue.front() {
                let arrived = self.epoch + Duration::from_nanos(q.arrived.max(0) as u64);
                at(arrived + MAX_HOLD);
            }
        }
        if self.file.is_none() {
            at(self.epoch + self.cfg.wait);
        }
        next
    }

    pub fn poll_output(&mut self) -> Option<RecOutput> {
        self.out.pop_front()
    }

    fn drive(&mut self, now: Instant) {
        let now_local = self.local(now);
        for kind in [Kind::Audio, Kind::Video] {
            let off = self.ntp_offset;
            let epoch = self.epoch;
            let Some(t) = self.track(kind) else { continue };
            while let Some(r) = t.reorder.pop(now) {
                if let Some(f) = t.asm.push(r) {
                    place(t, off, epoch, f);
                }
            }
        }
        // Keyframe requests while the video waits for one.
        if let Some(v) = &self.video {
            let waiting = v.asm.wants_keyframe() || (self.file.is_none() && v.queue.is_empty());
            if waiting && self.keyframe_asked.is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_EVERY) {
                self.keyframe_asked = Some(now);
                self.out.push_back(RecOutput::Keyframe);
            }
        }
        if self.file.is_none() && !self.start(now) {
            return;
        }
        for t in [&mut self.audio, &mut self.video].into_iter().flatten() {
            if !t.in_file {
                t.queue.clear();
            }
        }
        self.release(now_local, false);
    }

    /// Writes the header once its tracks are known (see the module doc). Returns whether the
    /// file is started.
    fn start(&mut self, now: Instant) -> bool {
        let key = self.video.as_ref().and_then(|v| v.queue.front().filter(|q| q.key).map(|q| (q.t, v.size)));
        let video_ready = self.video.is_none() || key.is_some();
        let audio_ready = self.audio.as_ref().is_none_or(|a| !a.queue.is_empty());
        let waited = now.saturating_duration_since(self.epoch) >= self.cfg.wait;
        if !(waited || video_ready && audio_ready) {
            return false;
        }
        let video = key.and_then(|(t, size)| size.map(|(w, h)| (t, VideoParams { width: w, height: h })));
        let origin = match (video, &self.audio) {
            (Some((t, _)), _) => t,
            (None, Some(a)) => match a.queue.front() {
                Some(q) => q.t,
                None => return false, // nothing at all yet: keep waiting
            },
            (None, None) => return false,
        };
        let audio = self.audio.is_some();
        let made = match self.video.as_ref().filter(|v| v.codec == Codec::H264) {
            Some(v) => Mp4File::new(video.and(v.avc.as_ref()), audio).map(|f| File::Mp4(Box::new(f))),
            None => WebmFile::new(video.map(|(_, p)| p), audio).map(File::Webm),
        };
        let file = match made {
            Ok(f) => f,
            Err(e) => {
                self.stop(Stopped::Mux(e.0));
                return false;
            }
        };
        self.origin = origin;
        if let Some(v) = self.video.as_mut() {
            v.in_file = video.is_some();
            if !v.in_file {
                v.queue.clear();
            }
        }
        if let Some(a) = self.audio.as_mut() {
            a.in_file = true;
            while a.queue.front().is_some_and(|q| q.t < origin) {
                a.queue.pop_front();
            }
        }
        self.file = Some(file);
        true
    }

    /// Writes queued frames oldest first; a frame waits (up to [`MAX_HOLD`]) while another track
    /// of the file has nothing queued that could come before it. `all` writes everything.
    fn release(&mut self, now_local: i64, all: bool) {
        loop {
            let head = |t: &Option<Track>| t.as_ref().filter(|t| t.in_file).and_then(|t| t.queue.front().map(|q| q.t));
            let (a, v) = (head(&self.audio), head(&self.video));
            let kind = match (a, v) {
                (Some(a), Some(v)) => {
                    if a <= v {
                        Kind::Audio
                    } else {
                        Kind::Video
                    }
                }
                (Some(_), None) => Kind::Audio,
                (None, Some(_)) => Kind::Video,
                (None, None) => break,
            };
            if !all {
                let (mine, other) = match kind {
                    Kind::Audio => (&self.audio, &self.video),
                    Kind::Video => (&self.video, &self.audio),
                };
                let q = mine.as_ref().and_then(|t| t.queue.front()).expect("head exists");
                let (t, arrived) = (q.t, q.arrived);
                let other_behind = other
                    .as_ref()
                    .filter(|o| o.in_file && o.queue.is_empty())
                    .is_some_and(|o| o.newest.is_none_or(|n| n < t));
                if other_behind && now_local - arrived < MAX_HOLD.as_nanos() as i64 {
                    break;
                }
            }
            let q = self.track(kind).and_then(|t| t.queue.pop_front()).expect("head exists");
            self.write(kind, q);
            if self.stopped.is_some() {
                return;
            }
        }
        self.flush_ops();
    }

    fn write(&mut self, kind: Kind, q: Queued) {
        let Some(file) = self.file.as_mut() else { return };
        // Never before the last frame written (libwebm's rule, across tracks).
        let ts = (q.t - self.origin).max(self.written);
        match file.add(kind == Kind::Video, &q.data, ts as u64, q.key) {
            Ok(()) => self.written = ts,
            Err(_) => self.mux_refused += 1,
        }
        if self.written - self.patched >= DURATION_EVERY_NS {
            self.patched = self.written;
            let ops = file.take_ops();
            self.out.extend(ops.into_iter().map(RecOutput::Write));
            if let Some(op) = file.patch_duration(self.written as f32 / 1e6) {
                self.out.push_back(RecOutput::Write(op));
            }
        }
        if file.len() >= self.cfg.max_bytes {
            self.stop(Stopped::SizeLimit);
        }
    }

    fn flush_ops(&mut self) {
        if let Some(file) = self.file.as_mut() {
            let ops = file.take_ops();
            self.out.extend(ops.into_iter().map(RecOutput::Write));
        }
    }

    fn stop(&mut self, why: Stopped) {
        if self.stopped.is_none() {
            self.stopped = Some(why);
        }
    }

    /// Writes what is queued and closes the file (cues, sizes, duration). Poll the outputs
    /// after it. `None` when no file was started (nothing usable ever arrived).
    pub fn finish(&mut self, now: Instant) -> Option<Summary> {
        if self.finished {
            return None;
        }
        if self.stopped.is_none() {
            self.drive(now);
            if self.file.is_none() {
                // Give the header its last chance with whatever arrived.
                self.cfg.wait = Duration::ZERO;
                self.start(now);
            }
            self.release(self.local(now), true);
        }
        self.finished = true;
        let file = self.file.as_mut()?;
        let ok = file.finish();
        let ops = file.take_ops();
        self.out.extend(ops.into_iter().map(RecOutput::Write));
        if let Err(MuxError(e)) = ok {
            tracing::debug!(error = %e, "finishing a recording");
        }
        let file = self.file.as_ref()?;
        let (size, dropped, lost) =
            [&self.audio, &self.video].into_iter().flatten().fold((None, self.mux_refused, 0), |(size, d, l), t| {
                (size.or(t.size.filter(|_| t.in_file)), d + t.asm.dropped_frames, l + t.reorder.lost)
            });
        Some(Summary {
            // The last frame lasts about as long as one of them (20 ms of audio, a video frame).
            duration_ms: (self.written / 1_000_000) as u64 + 20,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            bytes: file.len(),
            has_video: file.has_video(),
            has_audio: file.has_audio(),
            dropped_frames: dropped,
            lost_packets: lost,
        })
    }
}

/// Places a finished frame on the local timeline and queues it.
fn place(t: &mut Track, ntp_offset: Option<i64>, epoch: Instant, f: Frame) {
    let arrived = match f.at.checked_duration_since(epoch) {
        Some(d) => d.as_nanos() as i64,
        None => -(epoch.duration_since(f.at).as_nanos() as i64),
    };
    let ext = match t.base {
        None => i64::from(f.ts),
        Some(_) => t.last_ext + i64::from(f.ts.wrapping_sub(t.last_ext as u32) as i32),
    };
    t.last_ext = ext;
    let clock = t.clock;
    let (base_local, base_ext) = *t.base.get_or_insert_with(|| {
        let capture = match (ntp_offset, t.srs.iter().find(|s| s.ssrc == f.ssrc)) {
            (Some(off), Some(sr)) => {
                let d = i64::from(f.orig_ts.wrapping_sub(sr.rtp) as i32);
                sr.ntp_ns + d * 1_000_000_000 / clock + off
            }
            _ => arrived,
        };
        (capture, ext)
    });
    let time = base_local + (ext - base_ext) * 1_000_000_000 / clock;
    if t.kind == Kind::Video && f.keyframe {
        if t.codec == Codec::H264 {
            if t.avc.is_none() {
                t.avc = AvcParams::from_annexb(&f.data);
                t.size = t.avc.as_ref().map(|p| (p.width, p.height));
            }
        } else if let Some(size) = vp8_size(&f.data) {
            t.size.get_or_insert(size);
        }
    }
    if t.newest.is_some_and(|n| time < n) {
        return; // a timestamp going back (a new source without a switch point): skip it
    }
    t.newest = Some(time);
    t.queue.push_back(Queued { t: time, arrived, key: f.keyframe, data: f.data });
}
