//! `chorus-bot`: a scriptable call participant.
//!
//! Joins a group's call, optionally publishes a camera (real VP8 a browser shows, or synthetic
//! frames with `--video synthetic`) and a synthetic microphone, subscribes to
//! every stream it may, runs for a while and reports what it received per publisher. It exits
//! non-zero if its publish was refused or fewer than `--expect-publishers` publishers delivered
//! both audio and video.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chorus_client::call::media::VideoKind;
use chorus_client::call::{Call, CallOptions, CallStats, Kind, PublishOptions, TrackStats, Transport};
use chorus_client::{Connection, Http};
use clap::Parser;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "chorus-bot",
    version,
    about = "Join a Chorus group call with synthetic media and report what arrives"
)]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "CHORUS_SERVER")]
    server: String,
    /// Access token of the bot's user (tokens may start with `-`; that is accepted).
    #[arg(long, env = "CHORUS_TOKEN", allow_hyphen_values = true)]
    token: String,
    /// Group id whose call to join.
    #[arg(long)]
    group: i64,
    /// Publish camera (VP8 simulcast) and microphone (Opus).
    #[arg(long)]
    publish: bool,
    /// The camera's frames: `clip`, a real VP8 test pattern browsers decode (180, 360 and 720
    /// lines; other heights use the nearest), or `synthetic`, undecodable frames of exactly the
    /// layer's target bitrate (what `chorus-bench` sends).
    #[arg(long, value_enum, default_value_t = VideoArg::Clip)]
    video: VideoArg,
    /// Fail unless audio and video arrived from at least this many publishers.
    #[arg(long, default_value_t = 0)]
    expect_publishers: usize,
    /// How long to stay in the call: 10s, 500ms, 2m…
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Simulcast layers to offer (1..=3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    layers: u8,
    /// Height of the tallest layer.
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Mark the audio as speech (RFC 6464 level with voice activity).
    #[arg(long)]
    speak: bool,
    /// Cap the downlink to this many kbps (emulated).
    #[arg(long)]
    downlink_kbps: Option<u32>,
    /// How media reach the server: `udp`, or `tcp` for ICE-TCP only (no UDP at all).
    #[arg(long, value_enum, default_value_t = TransportArg::Udp)]
    transport: TransportArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum VideoArg {
    Clip,
    Synthetic,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TransportArg {
    Udp,
    Tcp,
}

/// One publisher's row of the report.
#[derive(Debug, Serialize)]
struct Row {
    publisher: String,
    sid: u32,
    audio_frames: u64,
    video_frames: u64,
    audio_kbps: f64,
    video_kbps: f64,
    layer: Option<u8>,
    max_layer: Option<u8>,
    latency_p50_ms: Option<f64>,
    latency_max_ms: f64,
    lost: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    address: String,
    published: bool,
    duration_secs: f64,
    publishers: Vec<Row>,
    complete_publishers: usize,
    expected_publishers: usize,
    ok: bool,
}

fn rows(stats: &CallStats) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for (k, t) in &stats.received {
        let i = match out.iter().position(|r| r.publisher == k.publisher && r.sid == k.sid) {
            Some(i) => i,
            None => {
                out.push(Row {
                    publisher: k.publisher.clone(),
                    sid: k.sid,
                    audio_frames: 0,
                    video_frames: 0,
                    audio_kbps: 0.0,
                    video_kbps: 0.0,
                    layer: None,
                    max_layer: None,
                    latency_p50_ms: None,
                    latency_max_ms: 0.0,
                    lost: 0,
                });
                out.len() - 1
            }
        };
        let r = &mut out[i];
        let ms = |us: u64| us as f64 / 1000.0;
        let p50 = |t: &TrackStats| t.latency_p50_us().map(ms);
        match k.kind {
            Kind::Audio => {
                r.audio_frames = t.frames;
                r.audio_kbps = t.kbps();
            }
            Kind::Video => {
                r.video_frames = t.frames;
                r.video_kbps = t.kbps();
                r.layer = t.layer;
                r.max_layer = t.max_layer;
            }
        }
        // The row's latency is the worse of its tracks.
        r.latency_p50_ms = match (r.latency_p50_ms, p50(t)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        r.latency_max_ms = r.latency_max_ms.max(ms(t.max_latency_us));
        r.lost += t.lost;
    }
    out
}

fn print_table(report: &Report) {
    println!("{} in the call for {:.1}s, published: {}", report.address, report.duration_secs, report.published);
    println!(
        "{:<24} {:>3} {:>8} {:>8} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6}",
        "publisher", "sid", "audio", "video", "a kbps", "v kbps", "layer", "p50 ms", "max ms", "lost"
    );
    for r in &report.publishers {
        let layer = match (r.layer, r.max_layer) {
            (Some(l), Some(m)) => format!("{l}/{m}"),
            _ => "-".into(),
        };
        let p50 = r.latency_p50_ms.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:>3} {:>8} {:>8} {:>9.0} {:>9.0} {:>6} {:>9} {:>9.1} {:>6}",
            r.publisher,
            r.sid,
            r.audio_frames,
            r.video_frames,
            r.audio_kbps,
            r.video_kbps,
            layer,
            p50,
            r.latency_max_ms,
            r.lost
        );
    }
    if report.publishers.is_empty() {
        println!("(nothing received)");
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let http = Http::new(&args.server).with_token(&args.token);
    // Check the token over REST first: a refused WebSocket upgrade says less.
    match http.get::<serde_json::Value>("/v1/me").await {
        Ok(_) => {}
        Err(e) if e.status == 401 => {
            let why = e.error.map(|b| b.error.message).unwrap_or(e.body);
            anyhow::bail!("the server at {} rejected the access token (401 unauthorized): {why}", args.server)
        }
        Err(e) if e.status == 0 => anyhow::bail!("cannot reach the server at {}: {}", args.server, e.body),
        Err(e) => anyhow::bail!("checking the access token at {}: {e}", args.server),
    }
    let (conn, _) = Connection::connect(&http, None).await.context("connecting")?;
    let transport = match args.transport {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
    };
    let options =
        CallOptions { subscribe_all: true, downlink_kbps: args.downlink_kbps, transport, ..Default::default() };
    let call = Call::join(conn, args.group, options).await.context("joining the call")?;
    let started = Instant::now();
    if args.publish {
        let video_kind = match args.video {
            VideoArg::Clip => VideoKind::Clip,
            VideoArg::Synthetic => VideoKind::Synthetic,
        };
        let opts = PublishOptions { layers: args.layers, height: args.height, video_kind, ..Default::default() };
        match call.publish_camera(0, opts).await {
            Ok(s) => tracing::info!("publishing: {} layers, height {:?}", s.layers, s.height),
            Err(e) => {
                eprintln!("chorus-bot: publish refused: {e}");
                call.abort();
                return Ok(false);
            }
        }
    }
    call.set_speaking(args.speak);
    tokio::time::sleep(args.duration.saturating_sub(started.elapsed())).await;
    let stats = call.stats();
    let ended = call.ended();
    let address = call.address().to_string();
    if let Err(e) = call.leave().await {
        tracing::warn!("leave: {e}");
    }
    let publishers = rows(&stats);
    let complete = stats.publishers_with_audio_and_video().len();
    let ok = complete >= args.expect_publishers;
    let report = Report {
        address,
        published: args.publish,
        duration_secs: started.elapsed().as_secs_f64(),
        publishers,
        complete_publishers: complete,
        expected_publishers: args.expect_publishers,
        ok,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if let Some(why) = ended {
        eprintln!("chorus-bot: the call ended early: {why}");
    }
    if !ok {
        eprintln!(
            "chorus-bot: audio and video arrived from {complete} publisher(s), expected at least {}",
            args.expect_publishers
        );
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "chorus_bot=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chorus-bot: {e:#}");
            ExitCode::from(2)
        }
    }
}
