//! The recording core on real media: the committed VP8 clip (libvpx) and Opus from ffmpeg's
//! libopus, packetized by str0m as a publisher would, recorded, and the file read by ffprobe.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use chorus_sfu::codec::Codec;
use str0m::unversioned::{H264Packetizer, OpusPacketizer, Packetizer, Vp8Packetizer};

use super::frames::RecPacket;
use super::stream::{Kind, RecOutput, StreamConfig, StreamRecorder};
use super::webm::WriteOp;

/// The frames of an IVF file (32-byte header, then 12-byte frame headers).
fn ivf_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("clip");
    let mut at = 32;
    let mut out = Vec::new();
    while at + 12 <= data.len() {
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        out.push(data[at + 12..at + 12 + len].to_vec());
        at += 12 + len;
    }
    out
}

/// Opus packets (20 ms each) of a `secs`-long tone, encoded by ffmpeg's libopus into Ogg.
fn opus_packets(dir: &Path, secs: u32) -> Vec<Vec<u8>> {
    let ogg = dir.join("tone.ogg");
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={secs}"))
        .args(["-ac", "2", "-c:a", "libopus", "-b:a", "48k", "-frame_duration", "20", "-f", "ogg"])
        .arg(&ogg)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    let data = std::fs::read(&ogg).unwrap();
    // Ogg pages: packets are laced across segments; a segment shorter than 255 ends one.
    let mut packets = Vec::new();
    let mut cur = Vec::new();
    let mut at = 0;
    while at + 27 <= data.len() {
        assert_eq!(&data[at..at + 4], b"OggS");
        let nseg = data[at + 26] as usize;
        let lacing = &data[at + 27..at + 27 + nseg];
        let mut body = at + 27 + nseg;
        for &l in lacing {
            cur.extend_from_slice(&data[body..body + l as usize]);
            body += l as usize;
            if l < 255 {
                packets.push(std::mem::take(&mut cur));
            }
        }
        at = body;
    }
    packets.drain(..2); // OpusHead, OpusTags
    packets
}

struct Feed {
    /// (arrival, kind, packet)
    packets: Vec<(Instant, Kind, RecPacket)>,
}

/// Real VP8 at 30 fps from `video_from` and Opus at 50 packets/s from the start, packetized as
/// a publisher would (random-looking bases for sequence numbers and timestamps).
fn feed(t0: Instant, secs: u32, video_from: Duration, dir: &Path) -> Feed {
    let clip = ivf_frames(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/assets/vp8/f.ivf"));
    let opus = opus_packets(dir, secs);
    let mut packets = Vec::new();
    let mut vp8 = Vp8Packetizer::default();
    let mut seq = 60_000u64; // wraps the 16-bit space on the way
    let frames = ((secs as f64 - video_from.as_secs_f64()) * 30.0) as usize;
    for i in 0..frames {
        let frame = &clip[i % clip.len()];
        let at = t0 + video_from + Duration::from_micros(i as u64 * 33_333);
        let ts = 4_000_000_000u32.wrapping_add(i as u32 * 3000);
        let parts = vp8.packetize(1100, frame).unwrap();
        let n = parts.len();
        for (k, p) in parts.into_iter().enumerate() {
            let pkt = RecPacket {
                ssrc: 1111,
                orig_ts: ts,
                seq,
                ts,
                marker: k + 1 == n,
                payload: p.into(),
                at: at + Duration::from_micros(k as u64 * 200),
            };
            seq += 1;
            packets.push((pkt.at, Kind::Video, pkt));
        }
    }
    let mut op = OpusPacketizer;
    for (j, frame) in opus.iter().enumerate() {
        let at = t0 + Duration::from_millis(j as u64 * 20);
        let ts = 123_456u32.wrapping_add(j as u32 * 960);
        let p = op.packetize(1200, frame).unwrap().remove(0);
        let pkt = RecPacket { ssrc: 2222, orig_ts: ts, seq: 10 + j as u64, ts, marker: false, payload: p.into(), at };
        packets.push((at, Kind::Audio, pkt));
    }
    packets.sort_by_key(|(at, _, _)| *at);
    Feed { packets }
}

fn apply(file: &mut Vec<u8>, op: &WriteOp) {
    let end = op.offset as usize + op.bytes.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[op.offset as usize..end].copy_from_slice(&op.bytes);
}

fn drain(rec: &mut StreamRecorder, file: &mut Vec<u8>, keyframes: &mut u32) {
    while let Some(o) = rec.poll_output() {
        match o {
            RecOutput::Write(op) => apply(file, &op),
            RecOutput::Keyframe => *keyframes += 1,
        }
    }
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

/// The start time of each stream, from its first packet (ffprobe `-show_packets`).
fn first_pts(path: &Path) -> (f64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=stream_index,pts_time", "-of", "json"])
        .arg(path)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = ffprobe(path);
    let index_of = |codec: &str| {
        probe["streams"].as_array().unwrap().iter().find(|s| s["codec_name"] == codec).unwrap()["index"]
            .as_i64()
            .unwrap()
    };
    let (vi, ai) = (index_of("vp8"), index_of("opus"));
    let first = |i: i64| {
        v["packets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["stream_index"].as_i64() == Some(i))
            .map(|p| num(&p["pts_time"]))
    };
    (first(vi).unwrap(), first(ai).unwrap())
}

fn cfg() -> StreamConfig {
    StreamConfig { wait: Duration::from_secs(3), max_bytes: 1 << 30 }
}

/// Runs a recorder over `feed`, with a timeout input every 10 ms. `cut` stops early, without
/// finishing (a kill -9), at that offset from `t0`.
fn run(
    t0: Instant,
    feed: Feed,
    drop_seq: &[u64],
    cut: Option<Duration>,
) -> (Vec<u8>, u32, Option<super::stream::Summary>) {
    let mut rec = StreamRecorder::new(t0, cfg(), true, Some(Codec::Vp8));
    let mut file = Vec::new();
    let mut keyframes = 0;
    let mut next_tick = t0;
    let end = feed.packets.last().unwrap().0;
    let mut pending = feed.packets.into_iter().peekable();
    // Two adjacent packets are swapped now and then (reordering on the way).
    let mut held: Option<(Kind, RecPacket)> = None;
    let mut n = 0u64;
    while pending.peek().is_some() {
        let (at, kind, pkt) = pending.next().unwrap();
        if cut.is_some_and(|c| at >= t0 + c) {
            return (file, keyframes, None);
        }
        while next_tick < at {
            rec.handle_timeout(next_tick);
            drain(&mut rec, &mut file, &mut keyframes);
            next_tick += Duration::from_millis(10);
        }
        if drop_seq.contains(&pkt.seq) && kind == Kind::Video {
            continue;
        }
        n += 1;
        if n.is_multiple_of(17) && held.is_none() {
            held = Some((kind, pkt));
            continue;
        }
        rec.on_packet(at, kind, pkt);
        if let Some((k, p)) = held.take() {
            rec.on_packet(at, k, p);
        }
        drain(&mut rec, &mut file, &mut keyframes);
    }
    let summary = rec.finish(end + Duration::from_millis(50));
    drain(&mut rec, &mut file, &mut keyframes);
    (file, keyframes, summary)
}

#[test]
fn records_real_vp8_and_opus_into_a_webm_ffprobe_reads() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    // Video starts 0.4 s after the recording (its keyframe was requested at the start).
    let feed = feed(t0, 6, Duration::from_millis(400), dir.path());
    let (file, keyframes, summary) = run(t0, feed, &[], None);
    let summary = summary.expect("a file");
    assert!(keyframes >= 1, "a keyframe is asked for at the start");
    assert!(summary.has_video && summary.has_audio);
    assert_eq!((summary.width, summary.height), (Some(1280), Some(720)));
    let path = dir.path().join("rec.webm");
    std::fs::write(&path, &file).unwrap();
    let probe = ffprobe(&path);
    let streams = probe["streams"].as_array().unwrap();
    let codecs: Vec<&str> = streams.iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert!(codecs.contains(&"vp8") && codecs.contains(&"opus"), "{codecs:?}");
    let v = streams.iter().find(|s| s["codec_name"] == "vp8").unwrap();
    assert_eq!((v["width"].as_i64(), v["height"].as_i64()), (Some(1280), Some(720)));
    assert_eq!(probe["format"]["format_name"], "matroska,webm");
    let duration = num(&probe["format"]["duration"]);
    assert!((duration - 5.6).abs() < 0.5, "duration {duration} for 5.6 s of video");
    assert!((summary.duration_ms as f64 / 1000.0 - duration).abs() < 0.2, "{summary:?} vs {duration}");
    let (vs, a_s) = first_pts(&path);
    assert!((vs - a_s).abs() < 0.1, "video starts at {vs}, audio at {a_s}");
    // Everything decodes: no broken frame went in.
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_lost_packet_drops_frames_until_a_keyframe_and_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let feed = feed(t0, 4, Duration::ZERO, dir.path());
    // A packet of a frame in the middle of the first 3 s loop; the clip's next keyframe is its
    // loop at 3 s.
    let lost = feed.packets.iter().filter(|(_, k, _)| *k == Kind::Video).nth(200).unwrap().2.seq;
    let (file, keyframes, summary) = run(t0, feed, &[lost], None);
    let summary = summary.unwrap();
    assert!(keyframes >= 2, "asked at the start and after the loss: {keyframes}");
    assert!(summary.dropped_frames > 10, "{summary:?}");
    let path = dir.path().join("rec.webm");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let duration = num(&ffprobe(&path)["format"]["duration"]);
    assert!((duration - 4.0).abs() < 0.5, "{duration}");
}

#[test]
fn a_file_cut_off_mid_recording_plays_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let feed = feed(t0, 6, Duration::ZERO, dir.path());
    let (file, _, summary) = run(t0, feed, &[], Some(Duration::from_millis(4500)));
    assert!(summary.is_none());
    let path = dir.path().join("cut.webm");
    std::fs::write(&path, &file).unwrap();
    let probe = ffprobe(&path);
    assert_eq!(probe["streams"].as_array().unwrap().len(), 2);
    let duration = num(&probe["format"]["duration"]);
    assert!((duration - 4.5).abs() < 1.0, "duration {duration} of a file cut at 4.5 s");
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sender_reports_place_audio_and_video_on_the_senders_clock() {
    // Video whose packets arrive 200 ms after capture (a slow encoder), audio at once: with
    // sender reports the file starts them together.
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut feed = feed(t0, 3, Duration::ZERO, dir.path());
    for (at, k, p) in feed.packets.iter_mut() {
        if *k == Kind::Video {
            *at += Duration::from_millis(200);
            p.at = *at;
        }
    }
    feed.packets.sort_by_key(|(at, _, _)| *at);
    let mut rec = StreamRecorder::new(t0, cfg(), true, Some(Codec::Vp8));
    let ntp0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    // Both reports say: this RTP timestamp was captured at ntp0 (the first frame of each).
    rec.on_sender_report(Kind::Audio, 2222, ntp0, 123_456, t0 + Duration::from_millis(5));
    rec.on_sender_report(Kind::Video, 1111, ntp0, 4_000_000_000, t0 + Duration::from_millis(5));
    let mut file = Vec::new();
    let mut kf = 0;
    let end = feed.packets.last().unwrap().0;
    for (at, kind, pkt) in feed.packets {
        rec.on_packet(at, kind, pkt);
        drain(&mut rec, &mut file, &mut kf);
    }
    rec.finish(end + Duration::from_millis(300)).unwrap();
    drain(&mut rec, &mut file, &mut kf);
    let path = dir.path().join("sr.webm");
    std::fs::write(&path, &file).unwrap();
    let (vs, a_s) = first_pts(&path);
    assert!((vs - a_s).abs() < 0.03, "video starts at {vs}, audio at {a_s}");
    // The audio captured with the first video frame is kept (by arrival alone, the first
    // 200 ms of it would come before the video's start and be dropped).
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let audio_packets = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(audio_packets >= 145, "{audio_packets} audio packets of 150");
}

#[test]
fn a_silence_leaves_a_gap_without_shifting_the_timeline() {
    // The microphone sends nothing from 1.5 s to 3.5 s (DTX, a mute): the audio after it is
    // placed by its RTP timestamp, at 3.5 s, in step with the video.
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut feed = feed(t0, 5, Duration::ZERO, dir.path());
    let (from, to) = (t0 + Duration::from_millis(1500), t0 + Duration::from_millis(3500));
    feed.packets.retain(|(at, k, _)| *k == Kind::Video || *at < from || *at >= to);
    let (file, _, summary) = run(t0, feed, &[], None);
    assert!(summary.is_some());
    let path = dir.path().join("gap.webm");
    std::fs::write(&path, &file).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    let gap = times.windows(2).map(|w| (w[0], w[1])).max_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0))).unwrap();
    assert!((gap.0 - 1.48).abs() < 0.05 && (gap.1 - 3.5).abs() < 0.05, "the silence is {gap:?}");
    let last = *times.last().unwrap();
    assert!((last - 4.98).abs() < 0.05, "audio ends at {last}");
}

#[test]
fn reorder_releases_in_order_and_gives_up_on_a_missing_packet() {
    use super::frames::Reorder;
    let t0 = Instant::now();
    let pkt = |seq: u64, at: Instant| RecPacket {
        ssrc: 1,
        orig_ts: 0,
        seq,
        ts: 0,
        marker: false,
        payload: vec![1u8].into(),
        at,
    };
    let mut r = Reorder::default();
    r.push(pkt(10, t0));
    r.push(pkt(12, t0));
    r.push(pkt(11, t0));
    let got: Vec<(u64, bool)> = std::iter::from_fn(|| r.pop(t0)).map(|x| (x.pkt.seq, x.gap)).collect();
    assert_eq!(got, [(10, false), (11, false), (12, false)]);
    // 13 is missing: 14 waits for it, then goes with a gap.
    r.push(pkt(14, t0));
    assert!(r.pop(t0 + Duration::from_millis(100)).is_none());
    let x = r.pop(t0 + super::frames::REORDER_WAIT).expect("given up waiting");
    assert_eq!((x.pkt.seq, x.gap, r.lost), (14, true, 1));
    // 13 arriving now is too late.
    r.push(pkt(13, t0));
    assert!(r.pop(t0 + Duration::from_secs(1)).is_none());
    assert_eq!(r.lost, 2);
}

#[test]
fn the_size_limit_stops_the_file_and_leaves_it_playable() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let feed = feed(t0, 4, Duration::ZERO, dir.path());
    let cfg = StreamConfig { wait: Duration::from_secs(3), max_bytes: 150_000 };
    let mut rec = StreamRecorder::new(t0, cfg, true, Some(Codec::Vp8));
    let (mut file, mut kf) = (Vec::new(), 0);
    let end = feed.packets.last().unwrap().0;
    for (at, kind, pkt) in feed.packets {
        rec.on_packet(at, kind, pkt);
        drain(&mut rec, &mut file, &mut kf);
    }
    assert_eq!(rec.stopped(), Some(&super::stream::Stopped::SizeLimit));
    let summary = rec.finish(end).unwrap();
    drain(&mut rec, &mut file, &mut kf);
    assert!(file.len() < 150_000 + 100_000, "{} bytes", file.len());
    assert!(summary.duration_ms > 500 && summary.duration_ms < 3900, "{summary:?}");
    let path = dir.path().join("limit.webm");
    std::fs::write(&path, &file).unwrap();
    let duration = num(&ffprobe(&path)["format"]["duration"]);
    assert!((duration - summary.duration_ms as f64 / 1000.0).abs() < 0.1, "{duration} vs {summary:?}");
}

/// Access units of a `secs`-long 640x360 H.264 stream (libx264, baseline, a keyframe every 2 s,
/// an access unit delimiter before each one), as Annex B.
fn h264_access_units(dir: &Path, secs: u32) -> Vec<Vec<u8>> {
    let out = dir.join("clip.h264");
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=640x360:rate=30:duration={secs}"))
        .args(["-c:v", "libx264", "-profile:v", "baseline", "-g", "60", "-bf", "0"])
        .args(["-x264-params", "aud=1:repeat-headers=1", "-f", "h264"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(st.success());
    let data = std::fs::read(&out).unwrap();
    // Split before each AUD (00 00 00 01 09).
    let mut starts: Vec<usize> =
        data.windows(5).enumerate().filter(|(_, w)| *w == [0, 0, 0, 1, 9]).map(|(i, _)| i).collect();
    starts.push(data.len());
    starts.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect()
}

#[test]
fn records_real_h264_and_opus_into_an_mp4_ffprobe_reads() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let aus = h264_access_units(dir.path(), 5);
    let opus = opus_packets(dir.path(), 5);
    let mut packets = Vec::new();
    let mut h264 = H264Packetizer::default();
    let mut seq = 65_000u64;
    for (i, au) in aus.iter().enumerate() {
        let at = t0 + Duration::from_micros(i as u64 * 33_333);
        let ts = 7_000u32.wrapping_add(i as u32 * 3000);
        let parts = h264.packetize(1100, au).unwrap();
        let n = parts.len();
        for (k, p) in parts.into_iter().enumerate() {
            let pkt = RecPacket { ssrc: 1, orig_ts: ts, seq, ts, marker: k + 1 == n, payload: p.into(), at };
            seq += 1;
            packets.push((at, Kind::Video, pkt));
        }
    }
    let mut op = OpusPacketizer;
    for (j, frame) in opus.iter().enumerate() {
        let at = t0 + Duration::from_millis(j as u64 * 20);
        let ts = 99u32.wrapping_add(j as u32 * 960);
        let p = op.packetize(1200, frame).unwrap().remove(0);
        packets.push((
            at,
            Kind::Audio,
            RecPacket { ssrc: 2, orig_ts: ts, seq: j as u64, ts, marker: false, payload: p.into(), at },
        ));
    }
    packets.sort_by_key(|(at, _, _)| *at);
    let mut rec = StreamRecorder::new(t0, cfg(), true, Some(Codec::H264));
    let (mut file, mut kf) = (Vec::new(), 0);
    let end = packets.last().unwrap().0;
    let mut cut = None;
    for (at, kind, pkt) in packets {
        if cut.is_none() && at >= t0 + Duration::from_millis(3500) {
            cut = Some(file.clone()); // what a kill here would leave
        }
        rec.on_packet(at, kind, pkt);
        drain(&mut rec, &mut file, &mut kf);
    }
    let summary = rec.finish(end + Duration::from_millis(50)).unwrap();
    drain(&mut rec, &mut file, &mut kf);
    assert_eq!((summary.width, summary.height), (Some(640), Some(360)));
    let cut_path = dir.path().join("cut.mp4");
    std::fs::write(&cut_path, cut.unwrap()).unwrap();
    let cut_probe = ffprobe(&cut_path);
    assert_eq!(cut_probe["streams"].as_array().unwrap().len(), 2);
    let cut_duration = num(&cut_probe["format"]["duration"]);
    assert!((2.0..=3.6).contains(&cut_duration), "a file cut at 3.5 s lasts {cut_duration} s");
    let path = dir.path().join("rec.mp4");
    std::fs::write(&path, &file).unwrap();
    let probe = ffprobe(&path);
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"opus"), "{codecs:?}");
    let duration = num(&probe["format"]["duration"]);
    assert!((duration - 5.0).abs() < 0.5, "duration {duration}");
    let span = |sel: &str| {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", sel, "-show_entries", "packet=pts_time", "-of", "csv=p=0"])
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').parse::<f64>().ok())
            .next()
            .unwrap()
    };
    let (vs, a_s) = (span("v"), span("a"));
    assert!((vs - a_s).abs() < 0.1, "video starts at {vs}, audio at {a_s}");
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // What the media library reads of it.
    let info = chorus_probe::probe(&mut std::io::Cursor::new(&file), file.len() as u64).expect("probed");
    assert!(info.duration_ms.is_some_and(|ms| (ms as f64 / 1000.0 - duration).abs() < 0.1), "{info:?}");
    assert_eq!((info.width, info.height), (Some(640), Some(360)));
}
