//! The recording writer: one thread per recorded call, owning a [`StreamRecorder`] and a file
//! per recorded stream, fed by the room task over two channels.
//!
//! Packets come over a bounded channel the room task fills with `try_send`: when the writer
//! falls behind (a slow disk) packets are dropped and counted, and the call never waits for it.
//! The writer takes them in batches: it sleeps up to 20 ms (less when a recorder's timer is
//! due), so it wakes tens of times a second, not once per packet. A stream's end is applied after
//! the packet batch read after it, so the packets sent before the end are still written.
//! Everything else (streams starting and ending, sender reports, stop) comes over an unbounded
//! channel, which carries a few messages per stream, and is read before each packet batch so a
//! stream is known before its packets. File writes are `pwrite`s of what the recorders output;
//! nothing is fsynced (a killed process loses nothing the kernel already has; see `record`).
//! A write that fails (disk full, directory gone) stops the recording: the files keep what they
//! hold, are closed where possible, and are still published.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use chorus_proto::call::RecordingStopReason;
use tokio::sync::mpsc::UnboundedSender;

use super::stream::{RecOutput, Stopped, StreamConfig, StreamRecorder, Summary};
use crate::call::RecordOut;

/// Longest the writer sleeps: packets gather in the queue meanwhile (a queue of 8192 holds
/// 20 ms of about 400,000 packets/s).
const BATCH: Duration = Duration::from_millis(20);

/// What the writer of recording `gen` (the room task's count of recordings) asks of the call.
#[derive(Debug)]
pub struct WriterEvent {
    pub gen: u64,
    pub ask: WriterAsk,
}

/// See [`WriterEvent`].
#[derive(Debug)]
pub enum WriterAsk {
    /// A keyframe of `uid`'s stream `sid` (the recording lost a video frame).
    Keyframe { uid: i64, sid: u32 },
    /// The recording must stop (a size limit, a failed write).
    Stop(RecordingStopReason),
}

/// One finished file.
#[derive(Debug)]
pub struct FileDone {
    pub path: PathBuf,
    /// Its name in the media library.
    pub name: String,
    pub summary: Summary,
}

/// The room task's end of a writer.
pub struct Writer {
    packets: SyncSender<Box<RecordOut>>,
    control: mpsc::Sender<Box<RecordOut>>,
}

impl Writer {
    /// Starts the writer thread of a recording into `dir`. `done` gets the finished files when
    /// the recording stops (or the room task drops the writer: the call ended).
    /// Files are named `{prefix}-{address}-{sid}.webm`.
    pub fn start(
        gen: u64,
        prefix: String,
        dir: PathBuf,
        cfg: StreamConfig,
        queue: usize,
        events: UnboundedSender<WriterEvent>,
        done: impl FnOnce(Vec<FileDone>) + Send + 'static,
    ) -> std::io::Result<Writer> {
        std::fs::create_dir_all(&dir)?;
        let (packets, prx) = mpsc::sync_channel(queue);
        let (control, crx) = mpsc::channel();
        std::thread::Builder::new().name("chorus-recorder".into()).spawn(move || {
            let mut w = Thread {
                gen,
                prefix,
                dir,
                cfg,
                queue,
                events,
                streams: HashMap::new(),
                done: Vec::new(),
                failed: false,
            };
            w.run(&prx, &crx);
            done(w.done);
        })?;
        Ok(Writer { packets, control })
    }

    /// Hands over something from the engine. Packets are dropped (and counted) when the writer
    /// is behind; nothing here blocks.
    pub fn send(&self, out: Box<RecordOut>) {
        match *out {
            RecordOut::Packet { .. } => {
                if self.packets.try_send(out).is_err() {
                    crate::metrics::metrics().recording_dropped_packets.inc();
                }
            }
            _ => {
                let _ = self.control.send(out);
            }
        }
    }
}

struct Open {
    rec: StreamRecorder,
    file: Option<File>,
    path: PathBuf,
    name: String,
}

struct Thread {
    gen: u64,
    prefix: String,
    dir: PathBuf,
    cfg: StreamConfig,
    /// The packet queue's capacity.
    queue: usize,
    events: UnboundedSender<WriterEvent>,
    streams: HashMap<(i64, u32), Open>,
    done: Vec<FileDone>,
    /// A write failed: nothing more is written.
    failed: bool,
}

impl Thread {
    fn run(&mut self, packets: &Receiver<Box<RecordOut>>, control: &Receiver<Box<RecordOut>>) {
        // The writer wakes per batch, not per packet: it sleeps until the next timer (at most
        // `BATCH`), then takes everything queued. Woken per packet (a blocking receive), the
        // thread's wake-ups cost more than the muxing (bench/RESULTS.md, "Recording beside Janus").
        let mut wait = Duration::ZERO;
        // Streams whose end was read but not applied yet: their last packets (sent before the
        // end) are still in the packet queue, and are written first.
        let mut ending: Vec<(i64, u32)> = Vec::new();
        loop {
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            // Control first: a stream is announced before its packets are sent.
            loop {
                match control.try_recv() {
                    Ok(m) => match *m {
                        RecordOut::Stop { .. } => {
                            // The packets sent before the stop are still written.
                            while let Ok(p) = packets.try_recv() {
                                self.message(*p);
                            }
                            self.finish_all();
                            return;
                        }
                        RecordOut::StreamEnd { uid, sid } => ending.push((uid, sid)),
                        m => {
                            // The same stream again (left and came back within a batch): the
                            // old one ends now, before the new one starts.
                            if let RecordOut::Stream { uid, sid, .. } = m {
                                if let Some(i) = ending.iter().position(|k| *k == (uid, sid)) {
                                    ending.swap_remove(i);
                                    self.message(RecordOut::StreamEnd { uid, sid });
                                }
                            }
                            self.message(m);
                        }
                    },
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        while let Ok(p) = packets.try_recv() {
                            self.message(*p);
                        }
                        self.finish_all();
                        return;
                    }
                }
            }
            // Everything queued, up to a queue's worth (then straight on, without sleeping).
            let mut taken = 0;
            while taken < self.queue {
                match packets.try_recv() {
                    Ok(m) => {
                        self.message(*m);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            for (uid, sid) in ending.drain(..) {
                self.message(RecordOut::StreamEnd { uid, sid });
            }
            let now = Instant::now();
            let keys: Vec<(i64, u32)> = self.streams.keys().copied().collect();
            for k in keys {
                if let Some(s) = self.streams.get_mut(&k) {
                    s.rec.handle_timeout(now);
                }
                self.drain(k);
            }
            // A queue filling fast (a quarter of it in one batch) is taken again at once.
            wait = if taken >= self.queue / 4 {
                Duration::ZERO
            } else {
                let now = Instant::now();
                self.streams
                    .values()
                    .filter_map(|s| s.rec.poll_timeout())
                    .min()
                    .map_or(BATCH, |t| t.saturating_duration_since(now).min(BATCH))
            };
        }
    }

    fn message(&mut self, m: RecordOut) {
        let now = Instant::now();
        match m {
            RecordOut::Stream { uid, sid, address, audio, video } => {
                if let Some(old) = self.streams.remove(&(uid, sid)) {
                    self.finish(old, now);
                }
                let name = file_name(&self.prefix, &address, sid, super::stream::extension(video));
                let path = unique(&self.dir, &name);
                let file = match File::options().write(true).create_new(true).open(&path) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        self.fail(format_args!("creating {}: {e}", path.display()));
                        None
                    }
                };
                let rec = StreamRecorder::new(now, self.cfg, audio, video);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name);
                self.streams.insert((uid, sid), Open { rec, file, path, name });
                self.drain((uid, sid));
            }
            RecordOut::Packet { uid, sid, kind, pkt } => {
                if let Some(s) = self.streams.get_mut(&(uid, sid)) {
                    s.rec.on_packet(now, kind, pkt);
                    self.drain((uid, sid));
                }
            }
            RecordOut::SenderReport { uid, sid, kind, ssrc, ntp, rtp, received } => {
                if let Some(s) = self.streams.get_mut(&(uid, sid)) {
                    s.rec.on_sender_report(kind, ssrc, ntp, rtp, received);
                }
            }
            RecordOut::StreamEnd { uid, sid } => {
                if let Some(s) = self.streams.remove(&(uid, sid)) {
                    self.finish(s, now);
                }
            }
            RecordOut::Start { .. } | RecordOut::Stop { .. } => {}
        }
    }

    /// Carries out a recorder's outputs.
    fn drain(&mut self, key: (i64, u32)) {
        let Some(s) = self.streams.get_mut(&key) else { return };
        let mut error = None;
        while let Some(o) = s.rec.poll_output() {
            match o {
                RecOutput::Write(op) => {
                    if self.failed {
                        continue;
                    }
                    if let Some(f) = &s.file {
                        if let Err(e) = f.write_all_at(&op.bytes, op.offset) {
                            error = Some(format!("writing {}: {e}", s.path.display()));
                            self.failed = true;
                        }
                    }
                }
                RecOutput::Keyframe => {
                    let ask = WriterAsk::Keyframe { uid: key.0, sid: key.1 };
                    let _ = self.events.send(WriterEvent { gen: self.gen, ask });
                }
            }
        }
        let limit = matches!(s.rec.stopped(), Some(Stopped::SizeLimit));
        if let Some(e) = error {
            self.failed = false; // let `fail` report it once
            self.fail(e);
        } else if limit {
            self.ask(WriterAsk::Stop(RecordingStopReason::SizeLimit));
        }
    }

    fn ask(&self, ask: WriterAsk) {
        let _ = self.events.send(WriterEvent { gen: self.gen, ask });
    }

    fn fail(&mut self, e: impl std::fmt::Display) {
        if !self.failed {
            self.failed = true;
            tracing::warn!(error = %e, "recording storage failed: the recording stops");
            crate::metrics::metrics().recording_failures.inc();
            self.ask(WriterAsk::Stop(RecordingStopReason::StorageFailed));
        }
    }

    fn finish(&mut self, mut s: Open, now: Instant) {
        let summary = s.rec.finish(now);
        let mut ops_failed = false;
        while let Some(o) = s.rec.poll_output() {
            if let (RecOutput::Write(op), Some(f), false) = (o, &s.file, self.failed || ops_failed) {
                if f.write_all_at(&op.bytes, op.offset).is_err() {
                    ops_failed = true;
                }
            }
        }
        if ops_failed {
            self.fail(format_args!("closing {}", s.path.display()));
        }
        match summary {
            Some(summary) if s.file.is_some() => {
                self.done.push(FileDone { path: s.path, name: s.name, summary });
            }
            _ => {
                // Nothing usable ever arrived: no file to keep.
                let _ = std::fs::remove_file(&s.path);
            }
        }
    }

    fn finish_all(&mut self) {
        let now = Instant::now();
        let all: Vec<Open> = self.streams.drain().map(|(_, s)| s).collect();
        for s in all {
            self.finish(s, now);
        }
    }
}

/// `prefix-address-sid.ext`, with anything but letters, digits and `-` made `_`.
fn file_name(prefix: &str, address: &str, sid: u32, ext: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
    };
    format!("{}-{}-{sid}.{ext}", clean(prefix), clean(address))
}

/// `name` in `dir`, or `name` with `-2`, `-3`… before the extension if taken (a publisher that
/// came back).
fn unique(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    if !p.exists() {
        return p;
    }
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "webm"));
    (2..).map(|n| dir.join(format!("{stem}-{n}.{ext}"))).find(|p| !p.exists()).expect("a free name")
}
