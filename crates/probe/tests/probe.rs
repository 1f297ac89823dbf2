//! The probe against real files made at test time by ffmpeg (Debian's `ffmpeg` package; the
//! tests fail, not skip, without it): types, durations within ±100 ms, dimensions, codecs,
//! thumbnails; then every file cut and corrupted at many points, which must never panic and must
//! never yield a duration longer than the whole file's.

use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use chorus_probe::{probe, sniff, thumbnail, Kind, MediaInfo, ProbeError};

struct Fixture {
    name: &'static str,
    bytes: Vec<u8>,
}

/// ffmpeg arguments (after the inputs) per fixture: 3 s of a test pattern and a sine.
const VIDEO: &[&str] = &["-f", "lavfi", "-i", "testsrc=rate=15:duration=3:size="];
const SPECS: &[(&str, &str, &[&str])] = &[
    (
        "vp8-opus.webm",
        "320x240",
        &["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k", "-c:a", "libopus"],
    ),
    ("h264-aac.mp4", "640x360", &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]),
    (
        "h264-aac-faststart.mp4",
        "640x360",
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart"],
    ),
    // Fragmented, as MSE players and Safari's MediaRecorder write: no durations in moov.
    (
        "h264-aac-fragmented.mp4",
        "640x360",
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-movflags",
            "+frag_keyframe+empty_moov",
        ],
    ),
    ("opus.ogg", "", &["-c:a", "libopus"]),
    ("vorbis.ogg", "", &["-c:a", "libvorbis"]),
    ("lame.mp3", "", &["-c:a", "libmp3lame", "-b:a", "64k"]),
    (
        "cbr-no-tags.mp3",
        "",
        &["-c:a", "libmp3lame", "-b:a", "32k", "-ar", "8000", "-write_xing", "0", "-id3v2_version", "0"],
    ),
    ("s16.wav", "", &["-c:a", "pcm_s16le"]),
    ("audio.flac", "", &["-c:a", "flac"]),
    ("frame.png", "400x300", &["-frames:v", "1"]),
    ("frame.jpg", "400x300", &["-frames:v", "1"]),
    ("frame.webp", "400x300", &["-frames:v", "1", "-c:v", "libwebp"]),
    ("frame.gif", "400x300", &["-frames:v", "1"]),
];

/// Runs ffmpeg once per test binary and returns the files' bytes.
fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("probe-fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = Vec::new();
        for (name, size, codec) in SPECS {
            let path = dir.join(name);
            let mut args: Vec<String> = ["-y", "-v", "error"].map(String::from).to_vec();
            let image = name.starts_with("frame.");
            if !size.is_empty() {
                args.extend(VIDEO.iter().map(|s| s.to_string()));
                *args.last_mut().unwrap() += size;
            }
            if !image {
                args.extend(["-f", "lavfi", "-i", "sine=frequency=440:duration=3"].map(String::from));
            }
            args.extend(codec.iter().map(|s| s.to_string()));
            args.push(path.display().to_string());
            out.push(Fixture { name, bytes: ffmpeg(&args).then(|| std::fs::read(&path).unwrap()).unwrap() });
        }
        // A WebM written to a pipe, as a browser's MediaRecorder writes it: no Duration element,
        // a Segment of unknown size.
        let args = [
            VIDEO,
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=duration=3",
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
                "-f",
                "webm",
                "pipe:1",
            ],
        ]
        .concat();
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args[3] += "320x240";
        let output = Command::new("ffmpeg")
            .args(["-v", "error"])
            .args(&args)
            .output()
            .expect("ffmpeg is missing: install Debian's ffmpeg package (apt-get install -y ffmpeg)");
        assert!(output.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&output.stderr));
        let live = output.stdout;
        assert!(
            live.windows(12).any(|w| w == b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"),
            "live.webm: not a Segment of unknown size"
        );
        out.push(Fixture { name: "live.webm", bytes: live });
        out
    })
}

fn ffmpeg(args: &[String]) -> bool {
    let status = Command::new("ffmpeg")
        .args(args)
        .status()
        .expect("ffmpeg is missing: install Debian's ffmpeg package (apt-get install -y ffmpeg)");
    assert!(status.success(), "ffmpeg {args:?} failed");
    true
}

fn fixture(name: &str) -> &'static [u8] {
    &fixtures().iter().find(|f| f.name == name).unwrap().bytes
}

fn probe_bytes(bytes: &[u8]) -> Result<MediaInfo, ProbeError> {
    probe(&mut Cursor::new(bytes), bytes.len() as u64)
}

fn assert_duration(info: &MediaInfo, ms: u64, name: &str) {
    let d = info.duration_ms.unwrap_or_else(|| panic!("{name}: no duration: {info:?}"));
    assert!(d.abs_diff(ms) <= 100, "{name}: duration {d} ms, expected {ms} ± 100");
}

#[test]
fn sniffs_types_from_magic_bytes() {
    let expect = [
        ("vp8-opus.webm", "video/webm", "webm", Kind::Video),
        ("live.webm", "video/webm", "webm", Kind::Video),
        ("h264-aac.mp4", "video/mp4", "mp4", Kind::Video),
        ("opus.ogg", "audio/ogg", "opus", Kind::Audio),
        ("vorbis.ogg", "audio/ogg", "ogg", Kind::Audio),
        ("lame.mp3", "audio/mpeg", "mp3", Kind::Audio),
        ("cbr-no-tags.mp3", "audio/mpeg", "mp3", Kind::Audio),
        ("s16.wav", "audio/wav", "wav", Kind::Audio),
        ("audio.flac", "audio/flac", "flac", Kind::Audio),
        ("frame.png", "image/png", "png", Kind::Image),
        ("frame.jpg", "image/jpeg", "jpg", Kind::Image),
        ("frame.webp", "image/webp", "webp", Kind::Image),
        ("frame.gif", "image/gif", "gif", Kind::Image),
    ];
    for (name, mime, ext, kind) in expect {
        let s = sniff(fixture(name)).unwrap_or_else(|| panic!("{name}: not sniffed"));
        assert_eq!((s.mime, s.ext, s.kind), (mime, ext, kind), "{name}");
    }
    // Matroska proper (not WebM), QuickTime and M4A by their headers.
    let mut mkv = fixture("vp8-opus.webm").to_vec();
    let at = mkv.windows(4).position(|w| w == b"webm").unwrap();
    mkv.splice(at - 1..at + 4, *b"\x88matroska");
    assert_eq!(sniff(&mkv).unwrap().mime, "video/x-matroska");
    let mut mov = fixture("h264-aac.mp4").to_vec();
    mov[8..12].copy_from_slice(b"qt  ");
    assert_eq!(sniff(&mov).unwrap().mime, "video/quicktime");
    mov[8..12].copy_from_slice(b"M4A ");
    assert_eq!(sniff(&mov).unwrap().mime, "audio/mp4");
    // Not media: text, an empty file.
    assert_eq!(sniff(b"hello, world\n"), None);
    assert_eq!(sniff(b""), None);
    assert_eq!(sniff(b"%PDF-1.7\n").unwrap().kind, Kind::Other);
}

#[test]
fn probes_video() {
    for (name, w, h, video, audio) in [
        ("vp8-opus.webm", 320, 240, "vp8", "opus"),
        ("live.webm", 320, 240, "vp8", "opus"),
        ("h264-aac.mp4", 640, 360, "h264", "aac"),
        ("h264-aac-faststart.mp4", 640, 360, "h264", "aac"),
        ("h264-aac-fragmented.mp4", 640, 360, "h264", "aac"),
    ] {
        let info = probe_bytes(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_duration(&info, 3000, name);
        assert_eq!((info.width, info.height), (Some(w), Some(h)), "{name}");
        assert_eq!(info.video_codec.as_deref(), Some(video), "{name}");
        assert_eq!(info.audio_codec.as_deref(), Some(audio), "{name}");
        assert_eq!(info.kind, Kind::Video, "{name}");
    }
}

#[test]
fn probes_audio() {
    for (name, mime, codec, ms) in [
        ("opus.ogg", "audio/ogg", "opus", 3000),
        ("vorbis.ogg", "audio/ogg", "vorbis", 3000),
        ("lame.mp3", "audio/mpeg", "mp3", 3000),
        // Without a LAME tag nothing says how many of the encoder's delay and padding samples
        // to drop: 44 frames of 72 ms are in the stream (ffprobe says 3.168 s too).
        ("cbr-no-tags.mp3", "audio/mpeg", "mp3", 3168),
        ("s16.wav", "audio/wav", "pcm_s16le", 3000),
        ("audio.flac", "audio/flac", "flac", 3000),
    ] {
        let info = probe_bytes(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_duration(&info, ms, name);
        assert_eq!(info.mime, mime, "{name}");
        assert_eq!(info.audio_codec.as_deref(), Some(codec), "{name}");
        assert_eq!((info.width, info.height, info.video_codec), (None, None, None), "{name}");
    }
}

#[test]
fn audio_only_mp4_and_webm_are_audio() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("probe-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, codec, mime) in [("aac.m4a", "aac", "audio/mp4"), ("opus.webm", "libopus", "audio/webm")] {
        let path = dir.join(name);
        let args = ["-y", "-v", "error", "-f", "lavfi", "-i", "sine=duration=2", "-c:a", codec];
        let mut args: Vec<String> = args.map(String::from).to_vec();
        args.push(path.display().to_string());
        ffmpeg(&args);
        let info = probe_bytes(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!((info.mime, info.kind), (mime, Kind::Audio), "{name}");
        assert_duration(&info, 2000, name);
        assert_eq!(info.width, None);
    }
}

#[test]
fn probes_images_and_makes_thumbnails() {
    for name in ["frame.png", "frame.jpg", "frame.webp", "frame.gif"] {
        let info = probe_bytes(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((info.width, info.height, info.duration_ms), (Some(400), Some(300), None), "{name}");
        let (jpeg, mime) = thumbnail(fixture(name), 320).unwrap();
        assert_eq!(mime, "image/jpeg");
        let thumb = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 240), "{name}");
        // Smaller than the bound: re-encoded at its own size, never enlarged.
        let (jpeg, _) = thumbnail(fixture(name), 1000).unwrap();
        let same = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((same.width(), same.height()), (400, 300));
    }
    // Not an image (a video), and nothing at all.
    assert!(thumbnail(fixture("vp8-opus.webm"), 320).is_err());
    assert!(thumbnail(b"", 320).is_err());
}

/// A PNG whose header claims `w` × `h` pixels, with one tiny compressed row behind it.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(w.to_be_bytes());
    png.extend(h.to_be_bytes());
    png.extend([8, 2, 0, 0, 0]);
    png.extend([0; 4]); // CRC: never reached
    png.extend(b"\0\0\0\0IDAT\0\0\0\0\0\0\0\0IEND\xaeB`\x82");
    png
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    for (w, h) in [(20_000, 20_000), (65_535, 65_535), (1_000_000, 1), (u32::MAX, u32::MAX)] {
        match thumbnail(&png_claiming(w, h), 320) {
            Err(ProbeError::TooLarge(_)) => {}
            other => panic!("{w}x{h}: {other:?}"),
        }
    }
}

/// Cut points: every byte of the first 64, then 60 spread over the rest.
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    (0..len.min(64)).chain((1..60).map(move |i| len * i / 60))
}

#[test]
fn truncated_files_never_panic_nor_outlast_the_whole() {
    for f in fixtures() {
        let whole = probe_bytes(&f.bytes).ok().and_then(|i| i.duration_ms);
        for cut in cuts(f.bytes.len()) {
            let part = &f.bytes[..cut];
            let _ = sniff(part);
            let result = probe_bytes(part);
            // A container that states its own length (an MP4 box, a Matroska Segment of known
            // size, a WAV data chunk) is refused once cut: stored as a plain file.
            let declares_length = f.name.ends_with(".mp4") || f.name == "vp8-opus.webm" || f.name == "s16.wav";
            if declares_length && cut > 64 {
                assert!(result.is_err(), "{} cut at {cut}: {result:?}", f.name);
            }
            if let (Ok(info), Some(whole)) = (&result, whole) {
                let d = info.duration_ms.unwrap_or(0);
                assert!(d <= whole + 100, "{} cut at {cut}: {d} ms > whole {whole} ms", f.name);
            }
            if f.name.starts_with("frame.") {
                // Decoders differ on what they make of a cut image (an error, or grey rows);
                // what matters here is that it returns.
                let _ = thumbnail(part, 64);
            }
        }
    }
}

#[test]
fn corrupted_files_never_panic() {
    for f in fixtures() {
        let len = f.bytes.len();
        // Every byte of the headers, then 200 points through the rest, each overwritten three ways.
        let points = (0..len.min(512)).chain((0..200).map(|i| len * i / 200));
        for at in points {
            for patch in [0x00u8, 0xFF, 0x80] {
                let mut bytes = f.bytes.clone();
                bytes[at] = if patch == 0x80 { bytes[at] ^ 0x80 } else { patch };
                // A run of 0xFF makes every size field it covers huge.
                if patch == 0xFF {
                    let end = (at + 8).min(len);
                    bytes[at..end].fill(0xFF);
                }
                let _ = sniff(&bytes);
                if let Ok(info) = probe_bytes(&bytes) {
                    assert!(info.width.unwrap_or(1) > 0 && info.height.unwrap_or(1) > 0, "{} at {at}", f.name);
                }
                if f.name.starts_with("frame.") && at % 7 == 0 {
                    let _ = thumbnail(&bytes, 64);
                }
            }
        }
    }
}
