//! Recording cost: P publishers (the SFU scenario's synthetic cameras: VP8 simulcast 180p/360p/
//! 720p + Opus) and nobody watching, against Chorus and against Janus, each twice — recording
//! off, then recording on — in the same run and the same network namespace.
//!
//! * **Chorus** records through its API: an admin publisher starts the call's recording once
//!   everyone publishes; the server writes one WebM per publisher (best layer + Opus) under
//!   `DATA/recordings/`.
//! * **Janus** records by its room setting: the VideoRoom room has `record = true` and a
//!   `rec_dir`, so every publisher's audio and video (the best simulcast substream) go to two
//!   `.mjr` files (Janus's RTP dump) from its first packet.
//!
//! Measured over the same window: the server's CPU (from `/proc`), the bytes its recording
//! directory grew by, and — after the run — whether the files play: Chorus's WebM files are read
//! by ffprobe as they are, while the window is still open; Janus's `.mjr` files must go through
//! `janus-pp-rec` first (one pass per track, into `.webm` and `.opus`), whose CPU time is
//! measured per file (`wait4`) and reported per recorded stream-second of its output.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::report::{Better, Metric, Section};
use crate::sfu::{SfuLoad, SfuRun};

/// What recording did in one run (the `record` runs of [`SfuLoad`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Recording {
    /// Bytes the recording directory grew by over the window.
    pub window_bytes: u64,
    /// Files the run left (Chorus: WebM; Janus: `.mjr`, one per track).
    pub files: usize,
    /// Files in which ffprobe finds VP8 or Opus as the server left them (no post-processing;
    /// Chorus: both).
    pub playable_as_written: usize,
    /// Janus: CPU seconds of every `janus-pp-rec` pass (user + system).
    pub post_cpu_secs: Option<f64>,
    /// Janus: wall seconds of the passes.
    pub post_wall_secs: Option<f64>,
    /// Janus: the post-processed camera files ffprobe reads.
    pub post_playable: usize,
    /// Janus: seconds of video in the post-processed files (ffprobe), summed over publishers.
    pub post_stream_secs: f64,
}

/// Total size of the files under `dir` (recursively); 0 when it does not exist.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Files under `dir` (recursively) whose name ends with `ext`, sorted.
pub fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_with(&p, ext));
            } else if p.to_string_lossy().ends_with(ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What ffprobe reads of a file: its codecs and duration (`None`: ffprobe cannot read it).
pub fn ffprobe(path: &Path) -> Option<(Vec<String>, f64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "json"])
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let codecs = v["streams"]
        .as_array()?
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_string))
        .collect::<Vec<_>>();
    let duration = v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    Some((codecs, duration))
}

/// Runs `cmd` to its end; returns its CPU seconds (user + system, from `wait4`) and exit status.
fn run_timed(cmd: &mut Command) -> anyhow::Result<(f64, bool)> {
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((secs(ru.ru_utime) + secs(ru.ru_stime), libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0))
}

/// Turns every `.mjr` under `dir` into a playable file with `janus-pp-rec` (video into WebM,
/// audio into Opus), timing each pass; fills the post-processing fields of `rec`.
pub fn post_process(pp: &Path, dir: &Path, rec: &mut Recording) -> anyhow::Result<()> {
    let (mut cpu, started) = (0.0, std::time::Instant::now());
    for mjr in files_with(dir, ".mjr") {
        let name = mjr.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let video = name.contains("-video-");
        let out = mjr.with_extension(if video { "webm" } else { "opus" });
        let (secs, ok) = run_timed(Command::new(pp).arg(&mjr).arg(&out))
            .with_context(|| format!("running {} (Debian package janus-tools)", pp.display()))?;
        cpu += secs;
        if !ok {
            bail!("{} {} failed", pp.display(), mjr.display());
        }
        if video {
            if let Some((codecs, d)) = ffprobe(&out) {
                if codecs.iter().any(|c| c == "vp8") {
                    rec.post_playable += 1;
                    rec.post_stream_secs += d;
                }
            }
        }
    }
    rec.post_cpu_secs = Some(cpu);
    rec.post_wall_secs = Some(started.elapsed().as_secs_f64());
    Ok(())
}

/// Chorus's files read as written: each has VP8 and Opus.
pub fn playable_webm(files: &[PathBuf]) -> usize {
    files
        .iter()
        .filter(|f| ffprobe(f).is_some_and(|(c, _)| c.iter().any(|c| c == "vp8") && c.iter().any(|c| c == "opus")))
        .count()
}

/// The loads of a record run: recording off, then on, `publishers` and nobody watching.
pub fn loads(publishers: usize, warmup: Duration, duration: Duration, bind: IpAddr) -> [SfuLoad; 2] {
    [false, true].map(|record| SfuLoad {
        publishers,
        subscribers: 0,
        streams: 0,
        layer: 2,
        join_interval: Duration::from_millis(50),
        warmup,
        duration,
        bind,
        record,
        flame: None,
    })
}

/// Per recorded stream-second figures of one target.
#[derive(Debug, Clone, Copy)]
struct PerStream {
    cpu_on_ms: f64,
    cpu_extra_ms: f64,
    kib: f64,
    post_ms: f64,
}

fn per_stream(off: &SfuRun, on: &SfuRun) -> Option<PerStream> {
    let rec = on.recording.as_ref()?;
    let stream_secs = on.load.publishers as f64 * on.cost.wall_secs;
    if stream_secs <= 0.0 {
        return None;
    }
    let off_rate = off.cost.cpu_secs / off.cost.wall_secs.max(1e-9);
    let post_ms = match rec.post_cpu_secs {
        Some(cpu) if rec.post_stream_secs > 0.0 => cpu * 1000.0 / rec.post_stream_secs,
        Some(_) => f64::NAN,
        None => 0.0,
    };
    Some(PerStream {
        cpu_on_ms: on.cost.cpu_secs * 1000.0 / stream_secs,
        cpu_extra_ms: (on.cost.cpu_secs - off_rate * on.cost.wall_secs) * 1000.0 / stream_secs,
        kib: rec.window_bytes as f64 / 1024.0 / stream_secs,
        post_ms,
    })
}

/// Problems that fail a smoke run: no files, files that do not play.
pub fn failures(runs: &[SfuRun]) -> Vec<String> {
    let mut out = Vec::new();
    for r in runs.iter().filter(|r| r.load.record) {
        let Some(rec) = &r.recording else {
            out.push(format!("{}: no recording figures", r.target));
            continue;
        };
        if rec.window_bytes == 0 {
            out.push(format!("{}: nothing written while recording", r.target));
        }
        if r.target == "chorus" && (rec.files != r.load.publishers || rec.playable_as_written != rec.files) {
            out.push(format!(
                "chorus: {} files for {} publishers, {} readable by ffprobe",
                rec.files, r.load.publishers, rec.playable_as_written
            ));
        }
        if r.target == "janus" && rec.post_playable != r.load.publishers {
            out.push(format!(
                "janus: {} playable camera files after janus-pp-rec for {} publishers",
                rec.post_playable, r.load.publishers
            ));
        }
    }
    out
}

/// The report section: Chorus beside Janus, per recorded stream-second.
pub fn section(runs: &[SfuRun], janus_name: Option<&str>) -> Section {
    let find = |target: &str, record: bool| runs.iter().find(|r| r.target == target && r.load.record == record);
    let figures = |target: &str| per_stream(find(target, false)?, find(target, true)?);
    let (c, j) = (figures("chorus"), figures("janus"));
    let load = runs.iter().find(|r| r.load.record).map(|r| &r.load);
    let title = format!(
        "Recording: {} publishers (VP8 simulcast up to 720p + Opus), each into a file, nobody watching",
        load.map_or(0, |l| l.publishers)
    );
    let mut sec = Section::new("record", &title, serde_json::to_value(load).unwrap_or_default());
    sec.peer_name = janus_name.map(str::to_string);
    let pick = |f: Option<PerStream>, g: fn(&PerStream) -> f64| f.map(|f| g(&f)).filter(|v| v.is_finite());
    let m = |name: &str, unit: &str, g: fn(&PerStream) -> f64| Metric {
        name: name.into(),
        unit: unit.into(),
        chorus: pick(c, g),
        peer: pick(j, g),
        better: Better::Lower,
        target: None,
    };
    let cores = |target: &str, record: bool| find(target, record).map(|r| r.cost.cores);
    let core_metric = |name: &str, record: bool| Metric {
        name: name.into(),
        unit: "cores".into(),
        chorus: cores("chorus", record),
        peer: cores("janus", record),
        better: Better::Lower,
        target: None,
    };
    sec.metrics = vec![
        core_metric("server CPU, recording off", false),
        core_metric("server CPU, recording on", true),
        m("server CPU per recorded stream-second (recording on)", "ms", |p| p.cpu_on_ms).target_vs_peer("≤ Janus", 1.0),
        m("of which recording (on − off)", "ms", |p| p.cpu_extra_ms),
        m("written per recorded stream-second", "KiB", |p| p.kib),
        m("post-processing to playable files (janus-pp-rec) per stream-second", "ms", |p| p.post_ms),
        m("recording + post-processing per stream-second", "ms", |p| p.cpu_on_ms + p.post_ms),
    ];
    for r in runs.iter().filter(|r| r.load.record) {
        if let Some(rec) = &r.recording {
            sec.notes.push(match r.target.as_str() {
                "chorus" => format!(
                    "chorus: {} WebM files, {} read by ffprobe (VP8 + Opus) while still being written; no post-processing",
                    rec.files, rec.playable_as_written
                ),
                _ => format!(
                    "janus: {} .mjr files (one per track; ffprobe finds VP8 or Opus in {} of them as written); janus-pp-rec made {} playable camera files ({:.1} stream-s of video) in {:.2} CPU-s, {:.2} s wall; audio and video stay separate files (one more ffmpeg pass to mux)",
                    rec.files,
                    rec.playable_as_written,
                    rec.post_playable,
                    rec.post_stream_secs,
                    rec.post_cpu_secs.unwrap_or(f64::NAN),
                    rec.post_wall_secs.unwrap_or(f64::NAN)
                ),
            });
        }
    }
    sec.details = serde_json::json!({ "runs": runs });
    sec
}

/// Inside the namespace: each target with recording off, then on.
pub async fn inside(
    targets: &[String],
    loads: &[SfuLoad; 2],
    chorus_bin: &Path,
    janus: &crate::sfu::janus::JanusOptions,
    progress: &crate::progress::Progress,
) -> anyhow::Result<Vec<SfuRun>> {
    let mut runs = Vec::new();
    for target in targets {
        for load in loads {
            let what = if load.record { "recording" } else { "not recording" };
            progress.step(format!("record {target}: {} publishers, {what}", load.publishers));
            let run = match target.as_str() {
                "chorus" => {
                    crate::sfu::chorus::run(
                        load,
                        &crate::server::ServerOptions::new(chorus_bin.to_path_buf()),
                        progress,
                    )
                    .await?
                }
                "janus" => crate::sfu::janus::run(load, janus, progress).await?,
                other => return Err(anyhow!("unknown target {other:?} (chorus, janus)")),
            };
            progress.step(format!("  {target}: server {:.3} cores", run.cost.cores));
            runs.push(run);
        }
    }
    Ok(runs)
}
