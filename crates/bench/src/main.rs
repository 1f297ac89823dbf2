//! `chorus-bench`: the load generator and benchmarks of Chorus (see bench/README.md).
//!
//! * `sfu`: SFU forwarding, Chorus beside Janus, inside a network namespace of its own
//!   ([`netns`]): the command re-runs itself there as `sfu-inner`.
//! * `msg`: messaging (idle connections, group fan-out beside Redis pub/sub, durable 1:1
//!   sends, a reconnect storm; on request, fan-out over a cluster of nodes beside one node)
//!   on the host's loopback.
//! * `media`: tus uploads and concurrent range reads of one large file, Chorus beside nginx
//!   on the host's loopback ([`media`]).
//! * `all`: every one of these; `smoke`: all at small sizes for CI, failing when a generator
//!   or a peer stops working.
//! * `record`: recording cost, Chorus beside Janus (VideoRoom `record = true`, then
//!   `janus-pp-rec` to playable files), in the namespace like `sfu` (re-run there as
//!   `record-inner`; [`record`]).
//! * `live`: one host watched by N subscribe-only viewers at 720p, then a join storm, Chorus
//!   (a live call) beside Janus, in the namespace like `sfu` (re-run there as `live-inner`;
//!   [`sfu::live`]).
//! * `soak`: calls and messaging for a long time against one server ([`soak`]), in the
//!   namespace like `sfu` (re-run there as `soak-inner`); fails when the server's RSS or open
//!   descriptors grow after the warm-up or a client sees an error.
//!
//! Every command prints the tables, and writes `report.json`, `report.md` and SVG plots
//! into `--out`.

mod media;
mod msg;
mod netns;
mod proc;
mod progress;
mod record;
mod report;
mod server;
mod sfu;
mod soak;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use report::{Report, Section};
use sfu::{SfuLoad, SfuRun};

#[derive(Parser, Debug)]
#[command(name = "chorus-bench", about = "Load generator and benchmarks of Chorus, beside Janus and Redis")]
struct Cli {
    /// Where report.json, report.md and the SVG plots go.
    #[arg(long, default_value = "target/bench", global = true)]
    out: PathBuf,
    /// The `chorus` binary under test (default: `chorus` next to this binary).
    #[arg(long, global = true)]
    chorus_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

// `all` holds every scenario's flags; the command is parsed once, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// SFU forwarding: Chorus and Janus on the same load, swept over subscriber counts.
    Sfu(SfuArgs),
    /// Messaging: idle connections, fan-out (beside Redis), durable 1:1 sends, reconnect storm.
    Msg(msg::MsgArgs),
    /// Media: tus uploads and concurrent range reads of one large file, beside nginx.
    Media(media::MediaArgs),
    /// Every scenario at its default size (the figures of bench/RESULTS.md).
    All {
        #[command(flatten)]
        sfu: SfuArgs,
        #[command(flatten)]
        msg: msg::MsgArgs,
        #[command(flatten)]
        media: media::MediaArgs,
    },
    /// Recording cost: publishers recorded by Chorus and by Janus (with janus-pp-rec), per
    /// recorded stream-second.
    Record(RecordArgs),
    /// Live: one host → N subscribe-only viewers at 720p (viewers per server core), then a join
    /// storm (first frames of the newcomers, stalls of those watching), beside Janus.
    Live(LiveArgs),
    /// Every scenario at small sizes, for CI: fails when a generator or a peer does not work.
    Smoke,
    /// Calls and messaging for a long time (default 1 h; CI: 3 min) against one server: fails
    /// when its RSS grows 5 % or its open descriptors grow after the warm-up, or a client sees
    /// an error.
    Soak(soak::SoakArgs),
    /// Internal: the soak runs inside the network namespace.
    #[command(hide = true)]
    SoakInner {
        /// The [`SoakSpec`] as JSON.
        spec: PathBuf,
        /// Where the run goes, as JSON.
        result: PathBuf,
    },
    /// Internal: the record runs inside the network namespace.
    #[command(hide = true)]
    RecordInner {
        /// The [`RecordSpec`] as JSON.
        spec: PathBuf,
        /// Where the runs go, as JSON.
        result: PathBuf,
    },
    /// Internal: the live runs inside the network namespace.
    #[command(hide = true)]
    LiveInner {
        /// The [`LiveSpec`] as JSON.
        spec: PathBuf,
        /// Where the runs go, as JSON.
        result: PathBuf,
    },
    /// Internal: the SFU runs inside the network namespace.
    #[command(hide = true)]
    SfuInner {
        /// The [`SfuSpec`] as JSON.
        spec: PathBuf,
        /// Where the runs go, as JSON.
        result: PathBuf,
    },
}

/// The SFU sweep.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
struct SfuArgs {
    /// Which SFUs to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "chorus,janus", value_parser = ["chorus", "janus"])]
    targets: Vec<String>,
    /// Publishers (each: a 3-layer VP8 simulcast camera and Opus).
    #[arg(long, default_value_t = 4, value_parser = positive)]
    publishers: usize,
    /// Subscriber counts to sweep, each a separate run.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,24", value_parser = positive)]
    subscribers: Vec<usize>,
    /// Streams (publishers) each subscriber takes.
    #[arg(long, default_value_t = 4, value_parser = positive)]
    streams: usize,
    /// Simulcast layer subscribers take: 0 = 180p, 1 = 360p, 2 = 720p.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    layer: u8,
    /// Length of the measured window.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    duration: Duration,
    /// Time after the last join before the window opens.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    warmup: Duration,
    /// Gap between two participants' joins.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    join_interval: Duration,
    /// The Janus binary.
    #[arg(long, default_value = "/usr/bin/janus")]
    janus_bin: PathBuf,
    /// After each run's window, profile the server 5 s more (not counted) and write a flame graph
    /// (`flame-<target>-<subscribers>sub.svg`, perf + inferno) to this folder.
    #[arg(long)]
    #[serde(default)]
    flame: Option<PathBuf>,
}

impl SfuArgs {
    fn smoke() -> SfuArgs {
        SfuArgs {
            targets: vec!["chorus".into(), "janus".into()],
            publishers: 2,
            subscribers: vec![2],
            streams: 2,
            layer: 0,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(2),
            join_interval: Duration::from_millis(20),
            janus_bin: "/usr/bin/janus".into(),
            flame: None,
        }
    }
}

/// The live benchmark.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
struct LiveArgs {
    /// Which servers to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "chorus,janus", value_parser = ["chorus", "janus"])]
    targets: Vec<String>,
    /// Viewers watching the host at 720p (joined one after another before the window).
    #[arg(long, default_value_t = 100, value_parser = positive)]
    viewers: usize,
    /// Viewers that join in the storm after the window (0: no storm).
    #[arg(long, default_value_t = 1000)]
    storm: usize,
    /// The storm's joins are spread evenly over this time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    storm_secs: Duration,
    /// Simulcast layer the storm viewers take: 0 = 180p, 1 = 360p, 2 = 720p.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    storm_layer: u8,
    /// Storm viewers take the host's audio too (by default video only: the first frame is video's).
    #[arg(long)]
    storm_audio: bool,
    /// After the storm's last join, how long newcomers have for a first frame.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    storm_tail: Duration,
    /// Length of the steady window.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    duration: Duration,
    /// Time after the last steady join before the window opens.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    warmup: Duration,
    /// Gap between two steady viewers' joins.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    join_interval: Duration,
    /// The Janus binary.
    #[arg(long, default_value = "/usr/bin/janus")]
    janus_bin: PathBuf,
}

impl LiveArgs {
    /// CI: 3 viewers, a storm of 5 in 1 s.
    fn smoke() -> LiveArgs {
        LiveArgs {
            targets: vec!["chorus".into(), "janus".into()],
            viewers: 3,
            storm: 5,
            storm_secs: Duration::from_secs(1),
            storm_layer: 0,
            storm_audio: false,
            storm_tail: Duration::from_secs(2),
            duration: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            join_interval: Duration::from_millis(20),
            janus_bin: "/usr/bin/janus".into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LiveSpec {
    args: LiveArgs,
    chorus_bin: PathBuf,
}

/// The recording benchmark.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
struct RecordArgs {
    /// Which servers to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "chorus,janus", value_parser = ["chorus", "janus"])]
    targets: Vec<String>,
    /// Publishers, each recorded (a 3-layer VP8 simulcast camera up to 720p and Opus).
    #[arg(long, default_value_t = 4, value_parser = positive)]
    publishers: usize,
    /// Measured window of each run (recording off, recording on).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    duration: Duration,
    /// Time after the joins (and the recording's start) before the window.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    #[serde(with = "sfu::ms")]
    warmup: Duration,
    /// The Janus binary; `janus-pp-rec` is taken from beside it.
    #[arg(long, default_value = "/usr/bin/janus")]
    janus_bin: PathBuf,
}

impl RecordArgs {
    /// CI: one publisher, a 3-second window.
    fn smoke() -> RecordArgs {
        RecordArgs {
            targets: vec!["chorus".into(), "janus".into()],
            publishers: 1,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(2),
            janus_bin: "/usr/bin/janus".into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RecordSpec {
    args: RecordArgs,
    chorus_bin: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct SfuSpec {
    args: SfuArgs,
    chorus_bin: PathBuf,
}

/// What the soak's namespace child gets.
#[derive(Serialize, Deserialize)]
struct SoakSpec {
    args: soak::SoakArgs,
    /// The warm-up in force, ms (`args.warmup` is not serialized).
    warmup_ms: u64,
    chorus_bin: PathBuf,
    /// Where each reading is appended as it is taken (`<out>/soak-samples.jsonl`).
    samples: PathBuf,
}

/// What every scenario needs.
pub struct Common {
    /// The `chorus` binary.
    pub chorus_bin: PathBuf,
    /// The progress display.
    pub progress: progress::Progress,
}

/// A count of at least 1 (a flag's value parser).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A rate above 0 (a flag's value parser).
pub fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        Ok(_) => Err("must be above 0".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHORUS_BENCH_LOG").unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    proc::raise_fd_limit();
    let cli = Cli::parse();
    let chorus_bin = match &cli.chorus_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("chorus"),
    };
    let common = Common { chorus_bin, progress: progress::Progress::new() };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async_main(cli, common))
}

async fn async_main(cli: Cli, common: Common) -> anyhow::Result<()> {
    if let Cmd::SfuInner { spec, result } = &cli.command {
        let spec: SfuSpec = serde_json::from_slice(&std::fs::read(spec)?)?;
        let common = Common { chorus_bin: spec.chorus_bin.clone(), ..common };
        let runs = sfu_inside(&spec.args, &common).await?;
        std::fs::write(result, serde_json::to_vec(&runs)?)?;
        return Ok(());
    }
    if let Cmd::LiveInner { spec, result } = &cli.command {
        let spec: LiveSpec = serde_json::from_slice(&std::fs::read(spec)?)?;
        let Some(addr) = netns::NetNs::inside() else { bail!("live-inner runs only inside the benchmark's namespace") };
        let a = &spec.args;
        let load = sfu::live::LiveLoad {
            viewers: a.viewers,
            storm: a.storm,
            storm_secs: a.storm_secs,
            storm_layer: a.storm_layer,
            storm_audio: a.storm_audio,
            storm_tail: a.storm_tail,
            join_interval: a.join_interval,
            warmup: a.warmup,
            duration: a.duration,
            bind: IpAddr::V4(addr),
        };
        let janus = sfu::janus::JanusOptions::new(a.janus_bin.clone());
        let runs = sfu::live::run_targets(&a.targets, &load, &spec.chorus_bin, &janus, &common.progress).await?;
        std::fs::write(result, serde_json::to_vec(&runs)?)?;
        return Ok(());
    }
    if let Cmd::RecordInner { spec, result } = &cli.command {
        let spec: RecordSpec = serde_json::from_slice(&std::fs::read(spec)?)?;
        let Some(addr) = netns::NetNs::inside() else {
            bail!("record-inner runs only inside the benchmark's namespace")
        };
        let a = &spec.args;
        let loads = record::loads(a.publishers, a.warmup, a.duration, IpAddr::V4(addr));
        let janus = sfu::janus::JanusOptions::new(a.janus_bin.clone());
        let runs = record::inside(&a.targets, &loads, &spec.chorus_bin, &janus, &common.progress).await?;
        std::fs::write(result, serde_json::to_vec(&runs)?)?;
        return Ok(());
    }
    if let Cmd::SoakInner { spec, result } = &cli.command {
        let spec: SoakSpec = serde_json::from_slice(&std::fs::read(spec)?)?;
        let Some(addr) = netns::NetNs::inside() else { bail!("soak-inner runs only inside the benchmark's namespace") };
        let mut args = spec.args;
        args.warmup = Some(Duration::from_millis(spec.warmup_ms));
        let run = soak::run(&args, &spec.chorus_bin, IpAddr::V4(addr), &common.progress, &spec.samples).await?;
        std::fs::write(result, serde_json::to_vec(&run)?)?;
        return Ok(());
    }
    if let Cmd::Soak(args) = &cli.command {
        return soak(args, &cli.out, &common).await;
    }
    let mut report = Report::new();
    let smoke = matches!(cli.command, Cmd::Smoke);
    let mut failures = Vec::new();
    match cli.command {
        Cmd::Sfu(args) => report.sections.extend(sfu(&args, &common, &mut failures).await?),
        Cmd::Msg(args) => report.sections.extend(msg::run(&args, &common).await?),
        Cmd::Media(args) => report.sections.extend(media::run(&args, &common).await?),
        Cmd::Record(args) => report.sections.push(record(&args, &common, &mut failures).await?),
        Cmd::Live(args) => report.sections.extend(live(&args, &common, &mut failures)?),
        Cmd::All { sfu: s, msg: m, media: md } => {
            report.sections.extend(msg::run(&m, &common).await?);
            report.sections.extend(media::run(&md, &common).await?);
            report.sections.extend(sfu(&s, &common, &mut failures).await?);
        }
        Cmd::Smoke => {
            report.sections.extend(msg::run(&msg::MsgArgs::smoke(), &common).await?);
            report.sections.extend(media::run(&media::MediaArgs::smoke(), &common).await?);
            report.sections.extend(sfu(&SfuArgs::smoke(), &common, &mut failures).await?);
            report.sections.push(record(&RecordArgs::smoke(), &common, &mut failures).await?);
            report.sections.extend(live(&LiveArgs::smoke(), &common, &mut failures)?);
        }
        Cmd::SfuInner { .. }
        | Cmd::SoakInner { .. }
        | Cmd::RecordInner { .. }
        | Cmd::LiveInner { .. }
        | Cmd::Soak(_) => {
            unreachable!("handled above")
        }
    }
    report.print();
    report.write(&cli.out)?;
    let (met, all) = report.targets();
    common.progress.step(format!("{met} of {all} targets met; report written to {}", cli.out.display()));
    if smoke && !failures.is_empty() {
        bail!("smoke run failed:\n  {}", failures.join("\n  "));
    }
    Ok(())
}

/// Runs the SFU sweep in a fresh network namespace (a child process of this binary) and
/// turns its runs into report sections. Runs where a stream never arrived are listed in
/// `failures`.
async fn sfu(args: &SfuArgs, common: &Common, failures: &mut Vec<String>) -> anyhow::Result<Vec<Section>> {
    let chorus_bin = std::fs::canonicalize(&common.chorus_bin).unwrap_or_else(|_| common.chorus_bin.clone());
    let mut inner = args.clone();
    // The namespace child may not share this process's working directory.
    inner.flame = inner.flame.map(std::path::absolute).transpose()?;
    let runs: Vec<SfuRun> = in_namespace("sfu-inner", &SfuSpec { args: inner, chorus_bin }, "SFU")?;
    for r in &runs {
        if r.live_streams < r.expected_streams {
            failures.push(format!(
                "{} with {} subscribers: {} of {} streams delivered",
                r.target, r.load.subscribers, r.live_streams, r.expected_streams
            ));
        }
    }
    Ok(sfu::sections(&runs, janus_version(&args.targets, &args.janus_bin).as_deref()))
}

/// The live runs, in the namespace (re-run as `live-inner`). A steady viewer whose stream never
/// arrived, or a storm newcomer without a first frame, is a failure (it fails a smoke run).
fn live(args: &LiveArgs, common: &Common, failures: &mut Vec<String>) -> anyhow::Result<Vec<Section>> {
    if args.storm > 0 && args.storm_secs.is_zero() {
        bail!("--storm-secs must be above 0");
    }
    let chorus_bin = std::fs::canonicalize(&common.chorus_bin).unwrap_or_else(|_| common.chorus_bin.clone());
    let runs: Vec<sfu::live::LiveRun> =
        in_namespace("live-inner", &LiveSpec { args: args.clone(), chorus_bin }, "live")?;
    for r in &runs {
        if r.steady.live_streams < r.steady.expected_streams {
            failures.push(format!(
                "live {}: {} of {} streams delivered to the steady viewers",
                r.target, r.steady.live_streams, r.steady.expected_streams
            ));
        }
        if let Some(s) = r.storm.as_ref().filter(|s| s.with_first_frame() < s.newcomers) {
            failures.push(format!(
                "live {}: {} of {} storm viewers got a first frame",
                r.target,
                s.with_first_frame(),
                s.newcomers
            ));
        }
    }
    Ok(sfu::live::sections(&runs, janus_version(&args.targets, &args.janus_bin).as_deref()))
}

/// Runs this binary's `inner` subcommand in a fresh network namespace with `spec` (as JSON) and
/// returns what it wrote; `what` names the scenarios in errors.
fn in_namespace<R: serde::de::DeserializeOwned>(inner: &str, spec: &impl Serialize, what: &str) -> anyhow::Result<R> {
    let ns = netns::NetNs::create()?;
    let dir = tempfile::tempdir()?;
    let (spec_path, result_path) = (dir.path().join("spec.json"), dir.path().join("runs.json"));
    std::fs::write(&spec_path, serde_json::to_vec(spec)?)?;
    let status = ns
        .command(&std::env::current_exe()?)
        .arg(inner)
        .arg(&spec_path)
        .arg(&result_path)
        .status()
        .with_context(|| format!("running the {what} scenarios in the namespace"))?;
    if !status.success() {
        bail!("the {what} scenarios failed ({status})");
    }
    Ok(serde_json::from_slice(&std::fs::read(&result_path)?)?)
}

/// Janus's version for the report, when Janus is among `targets`.
fn janus_version(targets: &[String], janus_bin: &std::path::Path) -> Option<String> {
    targets.iter().any(|t| t == "janus").then(|| {
        sfu::janus::version(&sfu::janus::JanusOptions::new(janus_bin.to_path_buf())).unwrap_or_else(|| "Janus".into())
    })
}

/// The record runs, in the namespace (re-run as `record-inner`); files that do not play or a
/// recording that wrote nothing are failures (they fail a smoke run).
async fn record(args: &RecordArgs, common: &Common, failures: &mut Vec<String>) -> anyhow::Result<Section> {
    let chorus_bin = std::fs::canonicalize(&common.chorus_bin).unwrap_or_else(|_| common.chorus_bin.clone());
    let runs: Vec<SfuRun> = in_namespace("record-inner", &RecordSpec { args: args.clone(), chorus_bin }, "record")?;
    failures.extend(record::failures(&runs));
    Ok(record::section(&runs, janus_version(&args.targets, &args.janus_bin).as_deref()))
}

/// Runs the soak in a fresh network namespace (a child process of this binary), writes its
/// report, and fails with the criteria it missed.
async fn soak(args: &soak::SoakArgs, out: &std::path::Path, common: &Common) -> anyhow::Result<()> {
    args.check()?;
    let ns = netns::NetNs::create()?;
    let dir = tempfile::tempdir()?;
    let (spec_path, result_path) = (dir.path().join("spec.json"), dir.path().join("run.json"));
    let chorus_bin = std::fs::canonicalize(&common.chorus_bin).unwrap_or_else(|_| common.chorus_bin.clone());
    std::fs::create_dir_all(out)?;
    let samples = std::path::absolute(out.join("soak-samples.jsonl"))?;
    let spec = SoakSpec {
        args: args.clone(),
        warmup_ms: args.warmup().as_millis() as u64,
        chorus_bin,
        samples: samples.clone(),
    };
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    let status = ns
        .command(&std::env::current_exe()?)
        .arg("soak-inner")
        .arg(&spec_path)
        .arg(&result_path)
        .status()
        .context("running the soak in the namespace")?;
    if !status.success() {
        bail!("the soak could not run to its end ({status}); the readings it took are in {}", samples.display());
    }
    let mut run: soak::SoakRun = serde_json::from_slice(&std::fs::read(&result_path)?)?;
    run.args.warmup = args.warmup;
    let mut report = Report::new();
    report.sections.push(run.section());
    report.print();
    report.write(out)?;
    let criteria = run.criteria();
    if !criteria.failures.is_empty() {
        bail!("soak failed (report in {}):\n  {}", out.display(), criteria.failures.join("\n  "));
    }
    common.progress.step(format!(
        "soak passed: RSS {:+.1} % after the warm-up, descriptors {:+.0}, no client-side error; report written to {}",
        criteria.rss_growth_pct,
        criteria.fds_end - criteria.fds_base,
        out.display()
    ));
    Ok(())
}

/// Inside the namespace: every target on every subscriber count.
async fn sfu_inside(args: &SfuArgs, common: &Common) -> anyhow::Result<Vec<SfuRun>> {
    let Some(addr) = netns::NetNs::inside() else { bail!("sfu-inner runs only inside the benchmark's namespace") };
    let mut runs = Vec::new();
    for &subscribers in &args.subscribers {
        let load = SfuLoad {
            publishers: args.publishers,
            subscribers,
            streams: args.streams,
            layer: args.layer,
            join_interval: args.join_interval,
            warmup: args.warmup,
            duration: args.duration,
            bind: IpAddr::V4(addr),
            record: false,
            flame: args.flame.clone(),
        };
        for target in &args.targets {
            common.progress.step(format!("SFU {target}: {} publishers → {subscribers} subscribers", load.publishers));
            let run = match target.as_str() {
                "chorus" => {
                    sfu::chorus::run(&load, &server::ServerOptions::new(common.chorus_bin.clone()), &common.progress)
                        .await?
                }
                "janus" => {
                    sfu::janus::run(&load, &sfu::janus::JanusOptions::new(args.janus_bin.clone()), &common.progress)
                        .await?
                }
                other => bail!("unknown SFU target {other:?} (chorus, janus)"),
            };
            let t = run.summary();
            common.progress.step(format!(
                "  {target}: {:.0} pkt/s, server {:.2} cores = {:.0} pkt per CPU-s, frame loss {:.3} %, p99 {:.1} ms, {}/{} streams",
                t.packets_per_sec, t.server_cores, t.packets_per_cpu_sec, t.frame_loss_pct, t.latency_p99_ms, run.live_streams, run.expected_streams
            ));
            runs.push(run);
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chorus-bench").chain(args.split_whitespace()))
    }

    #[test]
    fn sizes_and_names_are_checked_before_anything_runs() {
        for bad in [
            "sfu --layer 3",
            "sfu --publishers 0",
            "sfu --subscribers 4,0",
            "sfu --streams 0",
            "sfu --targets chorus,foo",
            "record --publishers 0",
            "record --targets janus,bar",
            "record --duration soon",
            "live --viewers 0",
            "live --storm-layer 3",
            "live --targets chorus,foo",
            "live --storm-secs soon",
            "msg --msg-scenarios idle,bogus",
            "msg --idle-connections 0",
            "msg --fanout-rate 0",
            "msg --fanout-rate nan",
            "msg --msg-in-flight 65",
            "msg --msg-in-flight 0",
            "msg --storm-members 0",
            "msg --msg-scenarios cluster",
            "msg --cluster-nodes 1",
            "msg --cluster-nodes 17",
            "soak --participants 0",
            "soak --duration forever",
            "soak --publish-layers 4",
            "soak --msg-rate 0",
            "media --media-clients 0",
            "media --media-size 0",
            "media --media-range 0",
            "media --media-duration soon",
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
            use clap::error::ErrorKind::{InvalidValue, ValueValidation};
            assert!(matches!(e.kind(), InvalidValue | ValueValidation), "{bad:?}: {e}");
        }
        for good in [
            "sfu --layer 2 --subscribers 1,2",
            "msg --msg-in-flight 64 --fanout-rate 0.5",
            "msg --msg-scenarios cluster-fanout --cluster-nodes 3 --msg-nats nats://127.0.0.1:4222",
            "all",
            "smoke",
            "record --publishers 2 --duration 5s",
            "live --viewers 150 --storm 1000 --storm-secs 10s --storm-layer 0 --targets chorus",
            "soak",
            "soak --duration 3m",
            "media --media-size 8388608 --media-clients 4 --media-duration 2s",
        ] {
            parse(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
    }
}
