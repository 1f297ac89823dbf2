//! The soak: a mixed load of calls and messaging for a long time (`--duration`, default 1 h;
//! CI runs 3 min) against one `chorus serve`, watching the server for leaks.
//!
//! * **Calls.** `--participants` users (20) in `--rooms` groups (4), each looping: connect
//!   (a fresh WebSocket one cycle in three, else the one the last call handed back), join its
//!   group's call, publish a camera and microphone and/or subscribe to everyone (a random role
//!   each cycle), stay `--stay-min`..`--stay-max`, leave (one cycle in ten: drop everything
//!   without leaving, as a crashed client), pause 0.5–3 s, and again. Media go over the
//!   benchmark's network namespace ([`crate::netns`]), like the SFU scenarios'.
//! * **Messaging.** Every user also holds a messaging session (`chorus_client::Connection`)
//!   that reads every `message`, acks what it processed every second, sends read receipts for
//!   one message in three, and every 30–120 s closes its connection and resumes from its
//!   cursor. A dispatcher sends `--msg-rate` messages per second through these sessions,
//!   alternately 1:1 (to a random other user) and to the sender's group.
//! * **Checks.** Every `--sample-every` the server's RSS, open descriptors
//!   (`/proc/<pid>/fd`), threads and CPU are read. Client-side errors are counted: failed
//!   connects, joins, publishes and leaves; a publish that never sends; a subscriber that got
//!   nothing from a publisher that was live in its call for 4 s; a call or messaging session
//!   that ended without being asked to; a send answered with an error or not at all; a message
//!   not delivered to every recipient (or delivered twice, or more than 30 s late); a resume
//!   the server refused.
//!
//! The pass criteria ([`Criteria`]) are judged by the caller from the [`SoakRun`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chorus_client::call::{Call, CallOptions, Kind, PublishOptions};
use chorus_client::{Connection, Http};
use chorus_proto::ws::{ClientFrame, Message, ServerFrame};
use chorus_proto::{GroupId, Pos};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::msg::hist::Hist;
use crate::progress::Progress;
use crate::report::{Better, Metric, Plot, Section, Series};
use crate::server::{BenchUser, ChorusServer, ServerOptions};

/// Call flags of the soak's groups (as the SFU scenarios': Mesibo's defaults, simulcast on).
const CALL_FLAGS: u32 = 0x8307;

/// RSS may grow at most this much (percent) from just after the warm-up to the end.
pub const RSS_GROWTH_LIMIT_PCT: f64 = 5.0;

/// Open descriptors may grow at most this many from just after the warm-up to the end.
pub const FD_SLACK: i64 = 5;

/// A message delivered later than this after its send counts as an error.
const LATE: Duration = Duration::from_secs(30);

/// The soak's load and length.
#[derive(clap::Args, Debug, Clone, Serialize, Deserialize)]
pub struct SoakArgs {
    /// How long the load runs (after setup; draining and the final reading add ~10 s).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub duration: Duration,
    /// Growth is measured from the end of this warm-up (default: 10 min, or a third of
    /// `--duration` when that is shorter).
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(skip)]
    pub warmup: Option<Duration>,
    /// Users taking part in calls (each also holds a messaging session).
    #[arg(long, default_value_t = 20, value_parser = crate::positive)]
    pub participants: usize,
    /// Groups (calls) the participants are spread over.
    #[arg(long, default_value_t = 4, value_parser = crate::positive)]
    pub rooms: usize,
    /// Messages per second, alternately 1:1 and group. At 50 the server's SQLite page caches
    /// (2 MiB per connection, which fill as the database grows) are full within the 10-minute
    /// warm-up; at 10 they fill for about half an hour (bench/RESULTS.md, "Soak").
    #[arg(long, default_value_t = 50.0, value_parser = crate::positive_rate)]
    pub msg_rate: f64,
    /// Shortest time a participant stays in a call.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub stay_min: Duration,
    /// Longest time a participant stays in a call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub stay_max: Duration,
    /// Height of the tallest simulcast layer publishers send (180, 360 or 720).
    #[arg(long, default_value_t = 360, value_parser = clap::value_parser!(u32).range(90..=720))]
    pub publish_height: u32,
    /// Simulcast layers publishers send (1 to 3).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub publish_layers: u8,
    /// Time between two readings of the server.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub sample_every: Duration,
    /// Seed of the random choices (default: a random one, printed in the report).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SoakArgs {
    /// The warm-up in force: `--warmup`, else 10 min or a third of the run, whichever is less.
    pub fn warmup(&self) -> Duration {
        self.warmup.unwrap_or_else(|| Duration::from_secs(600).min(self.duration / 3))
    }

    /// Checks what clap cannot (relations between flags).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.rooms > self.participants {
            anyhow::bail!("--rooms ({}) is more than --participants ({})", self.rooms, self.participants);
        }
        if self.stay_min > self.stay_max || self.stay_min.is_zero() {
            anyhow::bail!("--stay-min must be above 0 and at most --stay-max");
        }
        if self.sample_every < Duration::from_millis(500) {
            anyhow::bail!("--sample-every must be at least 500ms");
        }
        let (w, d) = (self.warmup(), self.duration);
        if d < self.sample_every * 12 || w + window(d, self.sample_every) * 2 > d {
            anyhow::bail!(
                "--duration {} is too short for a warm-up of {} and two comparison windows of {} (at least 12 samples)",
                humantime::format_duration(d),
                humantime::format_duration(w),
                humantime::format_duration(window(d, self.sample_every))
            );
        }
        Ok(())
    }
}

/// The length of the windows compared (just after the warm-up, at the end): a sixth of the run,
/// at least 3 samples, at most 5 min. RSS swings by a few percent within seconds as calls come
/// and go and the allocator keeps or returns memory; medians over windows this long are steady
/// to about 2 %.
pub fn window(duration: Duration, every: Duration) -> Duration {
    (duration / 6).clamp(every * 3, Duration::from_secs(300).max(every * 3))
}

/// One reading of the server during the load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakSample {
    /// Seconds since the load started.
    pub t: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Of it: anonymous, file-backed and shared memory, KiB (`RssAnon`, `RssFile`,
    /// `RssShmem`; 0 in readings of older runs).
    #[serde(default)]
    pub rss_parts_kib: [u64; 3],
    /// What the server's C allocator holds, KiB: in use and kept free (its `/metrics`
    /// `chorus_heap_in_use_bytes` and `chorus_heap_free_bytes`; absent when it does not say).
    #[serde(default)]
    pub heap_kib: Option<[u64; 2]>,
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
    /// Cores busy since the previous reading.
    pub cores: f64,
    /// Participants in a call now.
    pub in_call: u64,
    /// Joins so far.
    pub joins: u64,
    /// Messages sent so far.
    pub sends: u64,
    /// Deliveries so far.
    pub deliveries: u64,
    /// Errors so far.
    pub errors: u64,
}

/// What the clients counted over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Call joins answered `call_joined`.
    pub joins: u64,
    /// Joins that failed (connect, refused, timed out).
    pub join_failures: u64,
    /// Streams published.
    pub publishes: u64,
    /// Publishes refused or timed out, or whose media never started.
    pub publish_failures: u64,
    /// Subscriber checks: a publisher live in the call for 4 s, was anything received from it.
    pub media_checks: u64,
    /// …and nothing was.
    pub media_misses: u64,
    /// `call_leave` answered.
    pub leaves: u64,
    /// Leaves refused or unanswered.
    pub leave_failures: u64,
    /// Cycles that ended by dropping everything instead of leaving.
    pub aborts: u64,
    /// Calls that ended without the participant leaving.
    pub call_drops: u64,
    /// Messaging WebSockets opened (fresh and resumed).
    pub connects: u64,
    /// Messaging sessions closed and resumed from their cursor on purpose.
    pub resumes: u64,
    /// Connects that failed, or resumes the server did not honour.
    pub connect_failures: u64,
    /// Messaging sessions that ended without being asked to.
    pub session_drops: u64,
    /// Messages sent.
    pub sends: u64,
    /// `sent` answers.
    pub sent_ok: u64,
    /// Sends answered with an error, or not answered within 15 s.
    pub send_failures: u64,
    /// Deliveries to expected recipients.
    pub deliveries: u64,
    /// Deliveries later than 30 s after the send.
    pub late: u64,
    /// Expected deliveries that never came (counted at the end).
    pub missing: u64,
    /// Messages delivered twice to one recipient.
    pub duplicates: u64,
    /// Read receipts sent.
    pub reads: u64,
    /// Read receipts refused.
    pub read_failures: u64,
}

impl Counts {
    /// Every error the clients saw.
    pub fn errors(&self) -> u64 {
        self.join_failures
            + self.publish_failures
            + self.media_misses
            + self.leave_failures
            + self.call_drops
            + self.connect_failures
            + self.session_drops
            + self.send_failures
            + self.late
            + self.missing
            + self.duplicates
            + self.read_failures
    }
}

/// One run of the soak, as the namespace child hands it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakRun {
    /// The load.
    pub args: SoakArgs,
    /// The warm-up in force, seconds.
    pub warmup_secs: f64,
    /// The seed used.
    pub seed: u64,
    /// Readings during the load.
    pub samples: Vec<SoakSample>,
    /// Server readings once set up, before the load: RSS KiB, descriptors.
    pub before: (u64, usize),
    /// Server readings after the load ended and every client had gone (3 s later).
    pub after: (u64, usize),
    /// The server's descriptors by kind before the load and after it ([`crate::proc::fd_kinds`]).
    pub fd_kinds: [std::collections::BTreeMap<String, usize>; 2],
    /// Server CPU seconds over the load.
    pub cpu_secs: f64,
    /// What the clients counted.
    pub counts: Counts,
    /// The first errors, each with its time (s since the load started).
    pub errors: Vec<String>,
    /// Send → deliver latency.
    pub latency: serde_json::Value,
}

/// The pass criteria of a [`SoakRun`].
#[derive(Debug, Clone, Serialize)]
pub struct Criteria {
    /// Median RSS over the window after the warm-up, KiB.
    pub rss_base_kib: f64,
    /// Median RSS over the last window, KiB.
    pub rss_end_kib: f64,
    /// Growth from one to the other, percent.
    pub rss_growth_pct: f64,
    /// Least-squares slope of RSS after the warm-up, MiB per hour.
    pub rss_slope_mib_h: f64,
    /// Median descriptors over the window after the warm-up.
    pub fds_base: f64,
    /// Median descriptors over the last window.
    pub fds_end: f64,
    /// The same medians of the server's anonymous RSS (heap, stacks), KiB.
    pub anon_base_kib: f64,
    /// At the end.
    pub anon_end_kib: f64,
    /// The same medians of the memory its C allocator has in use, KiB (NaN: not reported).
    pub heap_in_use_base_kib: f64,
    /// At the end.
    pub heap_in_use_end_kib: f64,
    /// Length of each window, seconds.
    pub window_secs: f64,
    /// What failed, in words (empty: passed).
    pub failures: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl SoakRun {
    /// Judges the run: RSS growth below [`RSS_GROWTH_LIMIT_PCT`], descriptors within
    /// [`FD_SLACK`], no client-side error.
    pub fn criteria(&self) -> Criteria {
        let d = self.args.duration.as_secs_f64();
        let w = window(self.args.duration, self.args.sample_every).as_secs_f64();
        let warm = self.warmup_secs;
        let base: Vec<&SoakSample> = self.samples.iter().filter(|s| s.t >= warm && s.t < warm + w).collect();
        let end: Vec<&SoakSample> = self.samples.iter().filter(|s| s.t > d - w).collect();
        let med = |v: &[&SoakSample], f: fn(&SoakSample) -> f64| median(v.iter().map(|s| f(s)).collect());
        let rss_base = med(&base, |s| s.rss_kib as f64);
        let rss_end = med(&end, |s| s.rss_kib as f64);
        let fds_base = med(&base, |s| s.fds as f64);
        let fds_end = med(&end, |s| s.fds as f64);
        let anon = |v: &[&SoakSample]| med(v, |s| s.rss_parts_kib[0] as f64);
        let heap = |v: &[&SoakSample]| median(v.iter().filter_map(|s| s.heap_kib).map(|h| h[0] as f64).collect());
        let growth = (rss_end - rss_base) * 100.0 / rss_base;
        let after: Vec<(f64, f64)> =
            self.samples.iter().filter(|s| s.t >= warm).map(|s| (s.t / 3600.0, s.rss_kib as f64 / 1024.0)).collect();
        let slope = slope(&after);
        let mut failures = Vec::new();
        if base.is_empty() || end.is_empty() {
            failures.push(format!(
                "too few readings to compare ({} after the warm-up, {} at the end)",
                base.len(),
                end.len()
            ));
        }
        if growth.is_nan() || growth >= RSS_GROWTH_LIMIT_PCT {
            failures.push(format!(
                "server RSS grew {growth:.1} % after the warm-up ({:.1} → {:.1} MiB, medians of {w:.0} s windows); the limit is {RSS_GROWTH_LIMIT_PCT} %",
                rss_base / 1024.0,
                rss_end / 1024.0
            ));
        }
        if (fds_end - fds_base).is_nan() || fds_end - fds_base > FD_SLACK as f64 {
            failures.push(format!(
                "server open descriptors grew from {fds_base:.0} to {fds_end:.0} after the warm-up (medians of {w:.0} s windows); at most {FD_SLACK} more are allowed"
            ));
        }
        let errors = self.counts.errors();
        if errors > 0 {
            failures.push(format!(
                "{errors} client-side errors (see the counts); the first: {}",
                self.errors.first().map(String::as_str).unwrap_or("?")
            ));
        }
        Criteria {
            rss_base_kib: rss_base,
            rss_end_kib: rss_end,
            rss_growth_pct: growth,
            rss_slope_mib_h: slope,
            fds_base,
            fds_end,
            anon_base_kib: anon(&base),
            anon_end_kib: anon(&end),
            heap_in_use_base_kib: heap(&base),
            heap_in_use_end_kib: heap(&end),
            window_secs: w,
            failures,
        }
    }

    /// The report section: the figures against the criteria, the counts, RSS and descriptor
    /// plots.
    pub fn section(&self) -> Section {
        let c = self.criteria();
        let a = &self.args;
        let title = format!(
            "Soak: {} participants in {} calls joining and leaving, {} messages/s, {}",
            a.participants,
            a.rooms,
            a.msg_rate,
            humantime::format_duration(a.duration)
        );
        let mut params = serde_json::to_value(a).unwrap_or_default();
        params["warmup_ms"] = serde_json::json!((self.warmup_secs * 1000.0).round() as u64);
        params["seed"] = serde_json::json!(self.seed);
        let mut s = Section::new("soak", &title, params);
        let n = &self.counts;
        let last = self.samples.last();
        let mean_cores = if a.duration.as_secs_f64() > 0.0 { self.cpu_secs / a.duration.as_secs_f64() } else { 0.0 };
        s.metrics = vec![
            Metric::new("server RSS growth after the warm-up", "%", Better::Lower, c.rss_growth_pct)
                .target(&format!("< {RSS_GROWTH_LIMIT_PCT}"), RSS_GROWTH_LIMIT_PCT - 1e-9),
            Metric::new("server RSS just after the warm-up (median)", "MiB", Better::Lower, c.rss_base_kib / 1024.0),
            Metric::new("server RSS at the end (median)", "MiB", Better::Lower, c.rss_end_kib / 1024.0),
            Metric::new("server RSS trend after the warm-up", "MiB/h", Better::Lower, c.rss_slope_mib_h),
            Metric::new("of it anonymous, after the warm-up (median)", "MiB", Better::Lower, c.anon_base_kib / 1024.0),
            Metric::new("of it anonymous, at the end (median)", "MiB", Better::Lower, c.anon_end_kib / 1024.0),
            Metric::new(
                "server heap in use after the warm-up (median)",
                "MiB",
                Better::Lower,
                c.heap_in_use_base_kib / 1024.0,
            ),
            Metric::new("server heap in use at the end (median)", "MiB", Better::Lower, c.heap_in_use_end_kib / 1024.0),
            Metric::new(
                "server RSS peak",
                "MiB",
                Better::Lower,
                self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            ),
            Metric::new("server RSS before the load", "MiB", Better::Lower, self.before.0 as f64 / 1024.0),
            Metric::new("server RSS 3 s after the load", "MiB", Better::Lower, self.after.0 as f64 / 1024.0),
            Metric::new("server descriptors growth after the warm-up", "fds", Better::Lower, c.fds_end - c.fds_base)
                .target(&format!("≤ {FD_SLACK}"), FD_SLACK as f64),
            Metric::new("server descriptors before the load", "fds", Better::Lower, self.before.1 as f64),
            Metric::new("server descriptors 3 s after the load", "fds", Better::Lower, self.after.1 as f64),
            Metric::new(
                "server threads at the end",
                "threads",
                Better::Lower,
                last.map(|s| s.threads as f64).unwrap_or(f64::NAN),
            ),
            Metric::new("server CPU (mean over the run)", "cores", Better::Lower, mean_cores),
            Metric::new("client-side errors", "", Better::Lower, n.errors() as f64).target("0", 0.0),
            Metric::new("call joins", "", Better::Higher, n.joins as f64),
            Metric::new("streams published", "", Better::Higher, n.publishes as f64),
            Metric::new("subscriber media checks", "", Better::Higher, n.media_checks as f64),
            Metric::new("messages sent", "", Better::Higher, n.sends as f64),
            Metric::new("deliveries", "", Better::Higher, n.deliveries as f64),
            Metric::new("send → deliver p99", "ms", Better::Lower, self.latency["p99_ms"].as_f64().unwrap_or(f64::NAN)),
        ];
        s.notes.push(format!(
            "Criteria: RSS growth < {RSS_GROWTH_LIMIT_PCT} % and at most {FD_SLACK} more open descriptors, comparing the median of the {:.0} s after the warm-up ({:.0} s{}) with the median of the last {:.0} s; no client-side error.",
            c.window_secs,
            self.warmup_secs,
            if a.warmup.is_some() {
                " as given".to_string()
            } else if self.warmup_secs < 600.0 {
                ": a third of this short run, in place of the 10 min of the 1-hour form".to_string()
            } else {
                String::new()
            },
            c.window_secs
        ));
        s.notes.push(
            "\"Before the load\": the server once set up (users and groups created), before any client connected; \"after the load\": 3 s after the last client left.".to_string(),
        );
        s.notes.push(format!(
            "Counts: {} joins ({} failed), {} published ({} failed), {} media checks ({} missed), {} leaves ({} failed), {} aborted cycles, {} calls dropped; messaging: {} connects ({} failed or not resumed), {} planned resumes, {} sessions dropped, {} sent ({} answered, {} failed), {} deliveries ({} late, {} missing, {} duplicated), {} read receipts ({} refused).",
            n.joins, n.join_failures, n.publishes, n.publish_failures, n.media_checks, n.media_misses, n.leaves,
            n.leave_failures, n.aborts, n.call_drops, n.connects, n.connect_failures, n.resumes, n.session_drops,
            n.sends, n.sent_ok, n.send_failures, n.deliveries, n.late, n.missing, n.duplicates, n.reads,
            n.read_failures
        ));
        let [kb, ka] = &self.fd_kinds;
        let changed: Vec<String> = kb
            .keys()
            .chain(ka.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|k| {
                let (b, a) = (kb.get(k).copied().unwrap_or(0), ka.get(k).copied().unwrap_or(0));
                (a != b).then(|| format!("{k} {b} → {a}"))
            })
            .collect();
        if !changed.is_empty() {
            s.notes.push(format!("Server descriptors that differ before and after the load: {}.", changed.join(", ")));
        }
        for f in &c.failures {
            s.notes.push(format!("FAILED: {f}"));
        }
        for e in self.errors.iter().take(10) {
            s.notes.push(format!("error: {e}"));
        }
        let minutes = |f: fn(&SoakSample) -> f64| -> Vec<(f64, f64)> {
            self.samples.iter().map(|s| (s.t / 60.0, f(s))).collect()
        };
        let warm_line = |top: f64| Series {
            name: "end of warm-up".into(),
            points: vec![(self.warmup_secs / 60.0, 0.0), (self.warmup_secs / 60.0, top)],
        };
        let rss = minutes(|s| s.rss_kib as f64 / 1024.0);
        let heap: Vec<(f64, f64)> =
            self.samples.iter().filter_map(|s| Some((s.t / 60.0, s.heap_kib?[0] as f64 / 1024.0))).collect();
        let fds = minutes(|s| s.fds as f64);
        let top = |v: &[(f64, f64)]| v.iter().map(|p| p.1).fold(0.0, f64::max);
        s.plots = vec![
            Plot {
                file: "soak-rss".into(),
                title: "Server RSS during the soak".into(),
                x_label: "minutes".into(),
                y_label: "MiB".into(),
                series: vec![
                    Series { name: "RSS".into(), points: rss.clone() },
                    Series { name: "heap in use (malloc)".into(), points: heap },
                    warm_line(top(&rss)),
                ],
            },
            Plot {
                file: "soak-fds".into(),
                title: "Server open descriptors during the soak".into(),
                x_label: "minutes".into(),
                y_label: "descriptors".into(),
                series: vec![Series { name: "open fds".into(), points: fds.clone() }, warm_line(top(&fds))],
            },
        ];
        s.details = serde_json::json!({
            "criteria": c,
            "counts": self.counts,
            "before": {"rss_kib": self.before.0, "fds": self.before.1},
            "after": {"rss_kib": self.after.0, "fds": self.after.1},
            "fd_kinds": {"before": self.fd_kinds[0], "after": self.fd_kinds[1]},
            "cpu_secs": self.cpu_secs,
            "latency": self.latency,
            "errors": self.errors,
            "samples": self.samples,
        });
        s
    }
}

/// Least-squares slope of `points` (y per x unit); 0 with fewer than two points.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

/// Counters shared by every client task.
#[derive(Default)]
struct Tally {
    joins: AtomicU64,
    join_failures: AtomicU64,
    publishes: AtomicU64,
    publish_failures: AtomicU64,
    media_checks: AtomicU64,
    media_misses: AtomicU64,
    leaves: AtomicU64,
    leave_failures: AtomicU64,
    aborts: AtomicU64,
    call_drops: AtomicU64,
    connects: AtomicU64,
    resumes: AtomicU64,
    connect_failures: AtomicU64,
    session_drops: AtomicU64,
    sends: AtomicU64,
    sent_ok: AtomicU64,
    send_failures: AtomicU64,
    deliveries: AtomicU64,
    late: AtomicU64,
    duplicates: AtomicU64,
    reads: AtomicU64,
    read_failures: AtomicU64,
    in_call: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Tally {
    fn counts(&self, missing: u64) -> Counts {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            joins: g(&self.joins),
            join_failures: g(&self.join_failures),
            publishes: g(&self.publishes),
            publish_failures: g(&self.publish_failures),
            media_checks: g(&self.media_checks),
            media_misses: g(&self.media_misses),
            leaves: g(&self.leaves),
            leave_failures: g(&self.leave_failures),
            aborts: g(&self.aborts),
            call_drops: g(&self.call_drops),
            connects: g(&self.connects),
            resumes: g(&self.resumes),
            connect_failures: g(&self.connect_failures),
            session_drops: g(&self.session_drops),
            sends: g(&self.sends),
            sent_ok: g(&self.sent_ok),
            send_failures: g(&self.send_failures),
            deliveries: g(&self.deliveries),
            late: g(&self.late),
            missing,
            duplicates: g(&self.duplicates),
            reads: g(&self.reads),
            read_failures: g(&self.read_failures),
        }
    }
}

/// A message on its way: who must still receive it.
struct Expect {
    sender: usize,
    waiting: HashSet<usize>,
    sent_at: Instant,
    answered: bool,
}

/// Every message of the run, by client id.
#[derive(Default)]
struct Ledger {
    open: HashMap<String, Expect>,
    /// Delivered to everyone, or failed: id → sender (later arrivals are duplicates, or, for a
    /// failed send, ignored).
    closed: HashMap<String, (usize, bool)>,
    latency: Hist,
}

/// What every task shares.
struct Ctx {
    users: Vec<BenchUser>,
    gids: Vec<i64>,
    base: String,
    args: SoakArgs,
    bind: IpAddr,
    start: Instant,
    tally: Tally,
    ledger: Mutex<Ledger>,
    errors: Mutex<Vec<String>>,
    progress: Progress,
    /// Per room: publisher address → since when its media flow.
    live: Mutex<Vec<HashMap<String, Instant>>>,
    stop: watch::Sender<bool>,
}

impl Ctx {
    fn room(&self, user: usize) -> usize {
        user % self.args.rooms
    }

    fn http(&self, user: usize) -> Http {
        Http::new(&self.base).with_token(&self.users[user].token)
    }

    /// Records an error (counted by the caller) with its time; the first 30 are printed too.
    fn error(&self, what: String) {
        let line = format!("{:.1} s: {what}", self.start.elapsed().as_secs_f64());
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() < 200 {
            if e.len() < 30 {
                self.progress.step(format!("soak error at {line}"));
            }
            e.push(line);
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`, or less when the run stops; true when it stopped.
    async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.stop.subscribe();
        if *rx.borrow_and_update() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stopped(),
            _ = rx.changed() => true,
        }
    }

    /// A delivery of message `id` to `user`.
    fn delivered(&self, user: usize, m: &Message) {
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(x) = l.open.get_mut(&m.id) {
            if x.sender == user {
                return; // the sender's own copy
            }
            if !x.waiting.remove(&user) {
                bump(&self.tally.duplicates);
                let sent = x.sent_at;
                drop(l);
                self.error(format!(
                    "{} got message {} twice ({:?} after its send)",
                    self.users[user].address,
                    m.id,
                    now - sent
                ));
                return;
            }
            bump(&self.tally.deliveries);
            let (sent_at, done) = (x.sent_at, x.waiting.is_empty());
            let (sender, answered) = (x.sender, x.answered);
            let age = now - sent_at;
            l.latency.record(age.as_micros() as u64);
            if done && answered {
                l.open.remove(&m.id);
                l.closed.insert(m.id.clone(), (sender, false));
            }
            drop(l);
            if age > LATE {
                bump(&self.tally.late);
                self.error(format!("{} got message {} {age:?} after its send", self.users[user].address, m.id));
            }
            return;
        }
        match l.closed.get(&m.id) {
            Some(&(sender, _)) if sender == user => {}
            Some(&(_, true)) => {} // a send that failed on our side may still have been stored
            Some(_) => {
                drop(l);
                bump(&self.tally.duplicates);
                self.error(format!("{} got message {} again after everyone had it", self.users[user].address, m.id));
            }
            None => {
                // Not one of ours (a backlog from before the run cannot exist: the server is fresh).
                drop(l);
                bump(&self.tally.duplicates);
                self.error(format!("{} got an unknown message {:?}", self.users[user].address, m.id));
            }
        }
    }

    /// The server answered `sent` for `id`.
    fn answered(&self, id: &str) {
        bump(&self.tally.sent_ok);
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = l.open.get_mut(id) {
            x.answered = true;
            if x.waiting.is_empty() {
                let sender = x.sender;
                l.open.remove(id);
                l.closed.insert(id.to_string(), (sender, false));
            }
        }
    }

    /// The send of `id` failed.
    fn send_failed(&self, id: &str, why: String) {
        bump(&self.tally.send_failures);
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = l.open.remove(id) {
            l.closed.insert(id.to_string(), (x.sender, true));
        }
        drop(l);
        self.error(format!("send {id}: {why}"));
    }

    /// Expected deliveries still outstanding for answered sends, and how many sends are still
    /// unanswered.
    fn outstanding(&self) -> (u64, u64) {
        let l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = l.open.values().filter(|x| x.answered).map(|x| x.waiting.len() as u64).sum();
        let unanswered = l.open.values().filter(|x| !x.answered).count() as u64;
        (waiting, unanswered)
    }
}

/// What the dispatcher asks a messaging session to send.
struct Outgoing {
    id: String,
    peer: Option<String>,
    gid: Option<i64>,
}

/// Runs the soak inside the benchmark's namespace (media on `bind`), against a server
/// started for it. Every reading is also appended to `log` as a JSON line as it is taken, so a
/// run that is cut short leaves what it had measured.
pub async fn run(
    args: &SoakArgs,
    chorus_bin: &std::path::Path,
    bind: IpAddr,
    progress: &Progress,
    log: &std::path::Path,
) -> anyhow::Result<SoakRun> {
    use std::io::Write as _;
    let mut log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let options = ServerOptions::new(chorus_bin.to_path_buf()).env("CHORUS_RTC_BIND_IP", bind);
    let mut srv = ChorusServer::start(&options)?;
    let pid = srv.pid();
    let users = srv.users("soak", args.participants).await?;
    let mut gids = Vec::new();
    for r in 0..args.rooms {
        let members: Vec<BenchUser> =
            users.iter().enumerate().filter(|(i, _)| i % args.rooms == r).map(|(_, u)| u.clone()).collect();
        gids.push(srv.group(&format!("soak-{r}"), &members, Some(CALL_FLAGS)).await?);
    }
    srv.close_admin_connections();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = crate::proc::sample(pid)?;
    let before = (before.rss_kib, crate::proc::fd_count(pid)?);
    let kinds_before = crate::proc::fd_kinds(pid)?;
    progress.step(format!(
        "soak: server up ({:.1} MiB, {} fds); {} participants in {} calls, {} msg/s for {} (warm-up {}), seed {seed}",
        before.0 as f64 / 1024.0,
        before.1,
        args.participants,
        args.rooms,
        args.msg_rate,
        humantime::format_duration(args.duration),
        humantime::format_duration(args.warmup())
    ));

    let ctx = Arc::new(Ctx {
        users,
        gids,
        base: srv.base.clone(),
        args: args.clone(),
        bind,
        start: Instant::now(),
        tally: Tally::default(),
        ledger: Mutex::new(Ledger::default()),
        errors: Mutex::new(Vec::new()),
        progress: Progress::new(),
        live: Mutex::new(vec![HashMap::new(); args.rooms]),
        stop: watch::channel(false).0,
    });

    // Messaging sessions first, so every recipient is there when sends begin.
    let mut mailboxes = Vec::new();
    let mut outboxes = Vec::new();
    let (mail_stop, _) = watch::channel(false);
    for u in 0..args.participants {
        let (tx, rx) = mpsc::unbounded_channel();
        outboxes.push(tx);
        let (ctx, stop) = (ctx.clone(), mail_stop.subscribe());
        let rng = StdRng::seed_from_u64(seed ^ (0x6d61_696c << 8) ^ u as u64);
        mailboxes.push(tokio::spawn(mailbox(ctx, u, rx, stop, rng)));
    }
    // Wait until each has connected once.
    let t = Instant::now();
    while ctx.tally.connects.load(Ordering::Relaxed) < args.participants as u64 && t.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The load (and the clock of samples and errors) starts with the messaging sessions.
    let load_start = ctx.start;

    let cpu0 = crate::proc::sample(pid)?;
    let dispatcher = tokio::spawn(dispatch(ctx.clone(), outboxes, StdRng::seed_from_u64(seed ^ 0xd15)));
    let mut participants = Vec::new();
    for i in 0..args.participants {
        let rng = StdRng::seed_from_u64(seed ^ i as u64);
        participants.push(tokio::spawn(participant(ctx.clone(), i, rng)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The readings. `/metrics` on a connection of its own each time, so the server holds no
    // descriptor for the scraper between readings.
    let scraper = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build()?;
    let mut samples = Vec::new();
    let mut prev = cpu0;
    let end = load_start + args.duration;
    let mut next = load_start;
    loop {
        next += args.sample_every;
        if next > end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let s = crate::proc::sample(pid).context("the server exited during the soak")?;
        let fds = crate::proc::fd_count(pid)?;
        let threads = crate::proc::threads(pid)?;
        let dt = s.at.duration_since(prev.at).as_secs_f64();
        let cores = if dt > 0.0 { (s.cpu_secs - prev.cpu_secs) / dt } else { 0.0 };
        prev = s;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let t = &ctx.tally;
        let errors = ctx.tally.counts(0).errors();
        let sample = SoakSample {
            t: next.duration_since(load_start).as_secs_f64(),
            rss_kib: s.rss_kib,
            rss_parts_kib: s.rss_parts_kib,
            heap_kib: heap_kib(&scraper, &srv.base).await,
            fds,
            threads,
            cores,
            in_call: g(&t.in_call),
            joins: g(&t.joins),
            sends: g(&t.sends),
            deliveries: g(&t.deliveries),
            errors,
        };
        let line = format!(
            "soak: {}/{}, RSS {:.1} MiB (anon {:.1}, heap in use {:.1}, free {:.1}), {} fds, {} threads, {:.2} cores, {} in calls, {} joins, {} msgs sent, {} delivered, {} errors",
            clock(sample.t),
            clock(args.duration.as_secs_f64()),
            s.rss_kib as f64 / 1024.0,
            s.rss_parts_kib[0] as f64 / 1024.0,
            sample.heap_kib.map_or(f64::NAN, |h| h[0] as f64 / 1024.0),
            sample.heap_kib.map_or(f64::NAN, |h| h[1] as f64 / 1024.0),
            fds,
            threads,
            cores,
            sample.in_call,
            sample.joins,
            sample.sends,
            sample.deliveries,
            errors
        );
        // A line a minute in logs (the status line is throttled to one per 5 s off a terminal).
        if (sample.t.round() as u64) % 60 < args.sample_every.as_secs().max(1) {
            progress.step(&line);
        } else {
            progress.status(&line);
        }
        writeln!(log, "{}", serde_json::to_string(&sample)?)?;
        samples.push(sample);
    }
    let cpu_secs = crate::proc::sample(pid)?.cpu_secs - cpu0.cpu_secs;

    // Wind down: participants leave, the dispatcher stops, deliveries catch up, sessions close.
    progress.step("soak: load done; participants leave, messages drain");
    ctx.stop.send_replace(true);
    let _ = dispatcher.await;
    for p in participants {
        if tokio::time::timeout(Duration::from_secs(30), p).await.is_err() {
            ctx.error("a participant did not stop within 30 s".into());
            bump(&ctx.tally.leave_failures);
        }
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if ctx.outstanding() == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mail_stop.send_replace(true);
    for m in mailboxes {
        let _ = tokio::time::timeout(Duration::from_secs(20), m).await;
    }
    let (missing, unanswered) = ctx.outstanding();
    if missing > 0 {
        let l = ctx.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        for (id, x) in l.open.iter().filter(|(_, x)| x.answered && !x.waiting.is_empty()).take(5) {
            let who: Vec<&str> = x.waiting.iter().map(|u| ctx.users[*u].address.as_str()).collect();
            lines.push(format!("message {id} from {} never reached {}", ctx.users[x.sender].address, who.join(", ")));
        }
        drop(l);
        for line in lines {
            ctx.error(line);
        }
    }
    if unanswered > 0 {
        ctx.tally.send_failures.fetch_add(unanswered, Ordering::Relaxed);
        ctx.error(format!("{unanswered} sends were never answered"));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_s = crate::proc::sample(pid).context("the server exited at the end of the soak")?;
    let after = (after_s.rss_kib, crate::proc::fd_count(pid)?);
    let kinds_after = crate::proc::fd_kinds(pid)?;
    let counts = ctx.tally.counts(missing);
    let latency = ctx.ledger.lock().unwrap_or_else(|e| e.into_inner()).latency.summary();
    let errors = ctx.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    drop(srv);
    Ok(SoakRun {
        args: args.clone(),
        warmup_secs: args.warmup().as_secs_f64(),
        seed,
        samples,
        before,
        after,
        fd_kinds: [kinds_before, kinds_after],
        cpu_secs,
        counts,
        errors,
        latency,
    })
}

/// The server's C allocator, KiB in use and free, from its `/metrics`; `None` when the scrape
/// fails or the server does not report them.
async fn heap_kib(http: &reqwest::Client, base: &str) -> Option<[u64; 2]> {
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(crate::server::ADMIN_TOKEN)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
    };
    Some([value("chorus_heap_in_use_bytes")? / 1024, value("chorus_heap_free_bytes")? / 1024])
}

/// `m:ss`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Sends `--msg-rate` messages per second until the run stops: alternately 1:1 to a random
/// other user and to the sender's group, each through the sender's messaging session.
async fn dispatch(ctx: Arc<Ctx>, outboxes: Vec<mpsc::UnboundedSender<Outgoing>>, mut rng: StdRng) {
    let n = ctx.users.len();
    let start = Instant::now();
    let mut k: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64(k as f64 / ctx.args.msg_rate);
        if ctx.sleep(due.saturating_duration_since(Instant::now())).await {
            return;
        }
        k += 1;
        let sender = rng.gen_range(0..n);
        let id = format!("soak-{k}");
        let (peer, gid, waiting): (Option<String>, Option<i64>, HashSet<usize>) = if k.is_multiple_of(2) || n == 1 {
            let room = ctx.room(sender);
            let members = (0..n).filter(|u| ctx.room(*u) == room && *u != sender).collect();
            (None, Some(ctx.gids[room]), members)
        } else {
            let mut to = rng.gen_range(0..n - 1);
            if to >= sender {
                to += 1;
            }
            (Some(ctx.users[to].address.clone()), None, [to].into_iter().collect())
        };
        ctx.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .insert(id.clone(), Expect { sender, waiting, sent_at: Instant::now(), answered: false });
        bump(&ctx.tally.sends);
        if outboxes[sender].send(Outgoing { id: id.clone(), peer, gid }).is_err() {
            ctx.send_failed(&id, "the sender's session task has ended".into());
        }
    }
}

/// One user's messaging session: sends what the dispatcher hands it, reads and acks every
/// message, sends a read receipt for one in three, resumes from its cursor every 30–120 s.
async fn mailbox(
    ctx: Arc<Ctx>,
    user: usize,
    mut outbox: mpsc::UnboundedReceiver<Outgoing>,
    mut stop: watch::Receiver<bool>,
    mut rng: StdRng,
) {
    let http = ctx.http(user);
    let me = ctx.users[user].address.clone();
    let mut cursor = None;
    // False once the dispatcher has stopped and every send it handed over was written.
    let mut outbox_open = true;
    'session: loop {
        if *stop.borrow() {
            return;
        }
        // Connect (resuming from the cursor after the first time).
        let resuming = cursor.is_some();
        let (mut conn, hs) = match Connection::connect(&http, cursor.clone()).await {
            Ok(x) => x,
            Err(e) => {
                bump(&ctx.tally.connect_failures);
                ctx.error(format!("{me}: messaging connect: {e:#}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        bump(&ctx.tally.connects);
        if resuming && !hs.resumed {
            bump(&ctx.tally.connect_failures);
            ctx.error(format!("{me}: resume not honoured ({:?})", hs.reason));
        }
        if !hs.complete {
            bump(&ctx.tally.connect_failures);
            ctx.error(format!("{me}: backlog incomplete after a resume"));
        }
        for m in &hs.backlog {
            ctx.delivered(user, m);
        }
        let mut pending: HashMap<String, (String, Instant)> = HashMap::new();
        let mut acked = 0i64;
        let next_resume = Instant::now() + Duration::from_secs(rng.gen_range(30..=120));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut winding = false; // no new sends: a resume or the end is due
        let mut rid = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed(), if !winding => winding = true,
                out = outbox.recv(), if !winding && outbox_open => {
                    let Some(out) = out else { outbox_open = false; continue };
                    rid += 1;
                    let r = format!("s{rid}");
                    let frame = ClientFrame::Send {
                        rid: Some(r.clone()),
                        id: out.id.clone(),
                        peer: out.peer,
                        gid: out.gid.map(GroupId),
                        text: Some(format!("soak {} from {me}", out.id)),
                        data: None,
                        file: None,
                        mtype: None,
                    };
                    if let Err(e) = conn.send(&frame).await {
                        ctx.send_failed(&out.id, format!("{me}: writing the send: {e:#}"));
                        bump(&ctx.tally.session_drops);
                        ctx.error(format!("{me}: messaging session failed while sending: {e:#}"));
                        for (_, (id, _)) in pending.drain() {
                            ctx.send_failed(&id, "the session dropped before the answer".into());
                        }
                        cursor = Some(conn.cursor());
                        continue 'session;
                    }
                    pending.insert(r, (out.id, Instant::now()));
                }
                f = conn.recv() => match f {
                    Ok(ServerFrame::Message(m)) => {
                        ctx.delivered(user, &m);
                        if m.from != me && rng.gen_range(0..3) == 0 {
                            rid += 1;
                            let peer = if m.gid.is_none() { Some(m.from.clone()) } else { None };
                            let read = ClientFrame::Read { rid: Some(format!("r{rid}")), peer, gid: m.gid, seq: m.seq };
                            if conn.send(&read).await.is_ok() {
                                bump(&ctx.tally.reads);
                            }
                        }
                    }
                    Ok(ServerFrame::Sent { rid: Some(r), .. }) => {
                        if let Some((id, _)) = pending.remove(&r) {
                            ctx.answered(&id);
                        }
                    }
                    Ok(ServerFrame::Error { rid, code, message, .. }) => {
                        let r = rid.unwrap_or_default();
                        if let Some((id, _)) = pending.remove(&r) {
                            ctx.send_failed(&id, format!("{me}: refused ({}): {message}", code.as_str()));
                        } else if r.starts_with('r') {
                            bump(&ctx.tally.read_failures);
                            ctx.error(format!("{me}: read receipt refused ({}): {message}", code.as_str()));
                        } else {
                            bump(&ctx.tally.session_drops);
                            ctx.error(format!("{me}: session error ({}): {message}", code.as_str()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        bump(&ctx.tally.session_drops);
                        ctx.error(format!("{me}: messaging session ended unasked: {e:#}"));
                        for (_, (id, _)) in pending.drain() {
                            ctx.send_failed(&id, "the session dropped before the answer".into());
                        }
                        cursor = Some(conn.cursor());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue 'session;
                    }
                },
                _ = tick.tick() => {
                    let pos = conn.cursor().pos;
                    if pos > Pos(acked) && conn.ack().await.is_ok() {
                        acked = pos.get();
                    }
                    let overdue: Vec<String> = pending
                        .iter()
                        .filter(|(_, (_, at))| at.elapsed() > Duration::from_secs(15))
                        .map(|(r, _)| r.clone())
                        .collect();
                    for r in overdue {
                        if let Some((id, _)) = pending.remove(&r) {
                            ctx.send_failed(&id, format!("{me}: no answer within 15 s"));
                        }
                    }
                    if !winding && Instant::now() >= next_resume {
                        winding = true;
                    }
                    if winding && pending.is_empty() {
                        if *stop.borrow() {
                            conn.close().await;
                            return;
                        }
                        // A planned resume: close cleanly, reconnect from the cursor.
                        cursor = Some(conn.cursor());
                        conn.close().await;
                        bump(&ctx.tally.resumes);
                        continue 'session;
                    }
                }
            }
        }
    }
}

/// What a participant does in one cycle.
#[derive(Debug, Clone, Copy)]
struct Role {
    publish: bool,
    subscribe: bool,
}

/// One participant: join, publish and/or subscribe, stay, leave (or drop), pause, again.
async fn participant(ctx: Arc<Ctx>, i: usize, mut rng: StdRng) {
    let me = ctx.users[i].address.clone();
    let room = ctx.room(i);
    let gid = ctx.gids[room];
    let http = ctx.http(i);
    let a = &ctx.args;
    let mut conn: Option<Connection> = None;
    while !ctx.stopped() {
        // A fresh WebSocket one cycle in three (and after a drop), else the last call's.
        if conn.is_none() || rng.gen_range(0..3) == 0 {
            if let Some(c) = conn.take() {
                c.close().await;
            }
            match Connection::connect(&http, None).await {
                Ok((c, _)) => conn = Some(c),
                Err(e) => {
                    bump(&ctx.tally.join_failures);
                    ctx.error(format!("{me}: call connection: {e:#}"));
                    ctx.sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let publish = rng.gen_bool(0.7);
        let role = Role { publish, subscribe: !publish || rng.gen_bool(0.6) };
        let options = CallOptions {
            subscribe_all: role.subscribe,
            subscribe_height: Some(a.publish_height),
            bind: ctx.bind,
            // A call the server loses is an error here, not something to recover from quietly.
            recover: false,
            ..Default::default()
        };
        let joined_at = Instant::now();
        let call = match Call::join(conn.take().expect("connected above"), gid, options).await {
            Ok(c) => c,
            Err(e) => {
                bump(&ctx.tally.join_failures);
                ctx.error(format!("{me}: join: {e}"));
                ctx.sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        bump(&ctx.tally.joins);
        ctx.tally.in_call.fetch_add(1, Ordering::Relaxed);
        let mut publishing = false;
        if role.publish {
            let opts = PublishOptions { layers: a.publish_layers, height: a.publish_height, ..Default::default() };
            match call.publish_camera(0, opts).await {
                Ok(granted) => {
                    bump(&ctx.tally.publishes);
                    let flowing = call
                        .wait_until(Duration::from_secs(10), |s| {
                            s.sent.get(&(0, Kind::Video)).is_some_and(|v| v.frames.iter().sum::<u64>() > 0)
                        })
                        .await;
                    match flowing {
                        Ok(_) => {
                            publishing = true;
                            ctx.live.lock().unwrap_or_else(|e| e.into_inner())[room].insert(me.clone(), Instant::now());
                        }
                        Err(_) if ctx.stopped() => {}
                        Err(_) => {
                            bump(&ctx.tally.publish_failures);
                            let st = call.stats();
                            let frames = |k: Kind| st.sent.get(&(0, k)).map(|v| v.frames.clone()).unwrap_or_default();
                            ctx.error(format!(
                                "{me}: published, but no video frame went out within 10 s (publish leg {:?}; granted audio {} video {} layers {} height {:?}; frames written: audio {:?}, video {:?}; call ended: {:?})",
                                st.publish,
                                granted.audio,
                                granted.video,
                                granted.layers,
                                granted.height,
                                frames(Kind::Audio),
                                frames(Kind::Video),
                                call.ended()
                            ));
                        }
                    }
                }
                Err(e) => {
                    bump(&ctx.tally.publish_failures);
                    ctx.error(format!("{me}: publish: {e}"));
                }
            }
        }
        let stay = rng.gen_range(a.stay_min..=a.stay_max);
        let stopped = ctx.sleep(stay.saturating_sub(joined_at.elapsed())).await;
        // Did every publisher that was live here for 4 s reach this subscriber?
        if role.subscribe && !stopped {
            let now = Instant::now();
            let settled = Duration::from_secs(4);
            if now.duration_since(joined_at) >= settled {
                let live: Vec<String> = ctx.live.lock().unwrap_or_else(|e| e.into_inner())[room]
                    .iter()
                    .filter(|(p, since)| **p != me && now.duration_since(**since) >= settled)
                    .map(|(p, _)| p.clone())
                    .collect();
                let stats = call.stats();
                for p in live {
                    bump(&ctx.tally.media_checks);
                    let got =
                        [Kind::Audio, Kind::Video].iter().any(|k| stats.track(&p, 0, *k).is_some_and(|t| t.frames > 0));
                    if !got {
                        bump(&ctx.tally.media_misses);
                        ctx.error(format!(
                            "{me}: nothing received from {p}, live in the call for 4 s (subscribe leg {:?}, {} tracks)",
                            stats.subscribe,
                            stats.received.len()
                        ));
                    }
                }
            }
        }
        if publishing {
            ctx.live.lock().unwrap_or_else(|e| e.into_inner())[room].remove(&me);
        }
        if let Some(why) = call.ended() {
            bump(&ctx.tally.call_drops);
            ctx.error(format!("{me}: the call ended unasked: {why}"));
            call.abort();
        } else if rng.gen_range(0..10) == 0 {
            bump(&ctx.tally.aborts);
            call.abort();
        } else {
            match call.leave().await {
                Ok(c) => {
                    bump(&ctx.tally.leaves);
                    conn = Some(c);
                }
                Err(e) => {
                    bump(&ctx.tally.leave_failures);
                    ctx.error(format!("{me}: leave: {e}"));
                }
            }
        }
        ctx.tally.in_call.fetch_sub(1, Ordering::Relaxed);
        let pause = Duration::from_millis(rng.gen_range(500..=3000));
        ctx.sleep(pause).await;
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(samples: Vec<(f64, u64, usize)>, duration: u64, errors: u64) -> SoakRun {
        let args = SoakArgs {
            duration: Duration::from_secs(duration),
            warmup: None,
            participants: 20,
            rooms: 4,
            msg_rate: 10.0,
            stay_min: Duration::from_secs(3),
            stay_max: Duration::from_secs(10),
            publish_height: 360,
            publish_layers: 2,
            sample_every: Duration::from_secs(5),
            seed: Some(1),
        };
        SoakRun {
            warmup_secs: args.warmup().as_secs_f64(),
            args,
            seed: 1,
            samples: samples
                .into_iter()
                .map(|(t, rss_kib, fds)| SoakSample {
                    t,
                    rss_kib,
                    rss_parts_kib: [rss_kib, 0, 0],
                    heap_kib: None,
                    fds,
                    threads: 4,
                    cores: 0.1,
                    in_call: 0,
                    joins: 0,
                    sends: 0,
                    deliveries: 0,
                    errors: 0,
                })
                .collect(),
            before: (1000, 10),
            after: (1000, 10),
            fd_kinds: Default::default(),
            cpu_secs: 1.0,
            counts: Counts { join_failures: errors, ..Default::default() },
            errors: (0..errors).map(|i| format!("{i}.0 s: boom")).collect(),
            latency: serde_json::Value::Null,
        }
    }

    fn flat(duration: u64, rss: impl Fn(f64) -> u64, fds: impl Fn(f64) -> usize) -> Vec<(f64, u64, usize)> {
        (1..=duration / 5).map(|k| k as f64 * 5.0).map(|t| (t, rss(t), fds(t))).collect()
    }

    #[test]
    fn a_steady_run_passes() {
        let r = run_with(flat(180, |t| 50_000 + (t as u64 % 3) * 100, |_| 60), 180, 0);
        let c = r.criteria();
        assert!(c.failures.is_empty(), "{:?}", c.failures);
        assert_eq!(r.warmup_secs, 60.0);
        assert_eq!(c.window_secs, 30.0);
        assert!(c.rss_growth_pct.abs() < 1.0);
    }

    #[test]
    fn growth_leaks_and_errors_fail() {
        // RSS grows 10 % from the warm-up's end to the end.
        let r = run_with(flat(180, |t| if t < 150.0 { 50_000 } else { 55_000 }, |_| 60), 180, 0);
        let c = r.criteria();
        assert_eq!(c.failures.len(), 1, "{:?}", c.failures);
        assert!(c.failures[0].contains("RSS grew 10.0 %"), "{:?}", c.failures);
        // Descriptors: 5 more is within the slack, 6 is not.
        let r = run_with(flat(180, |_| 50_000, |t| if t > 160.0 { 65 } else { 60 }), 180, 0);
        assert!(r.criteria().failures.is_empty());
        let r = run_with(flat(180, |_| 50_000, |t| if t > 160.0 { 66 } else { 60 }), 180, 0);
        assert!(r.criteria().failures[0].contains("descriptors grew from 60 to 66"));
        // One client-side error fails the run.
        let r = run_with(flat(180, |_| 50_000, |_| 60), 180, 1);
        assert!(r.criteria().failures[0].contains("1 client-side errors"));
        // Growth before the warm-up's end does not count.
        let r = run_with(flat(180, |t| if t < 55.0 { 30_000 } else { 50_000 }, |_| 60), 180, 0);
        assert!(r.criteria().failures.is_empty());
    }

    #[test]
    fn warmup_and_windows() {
        let mut a = run_with(vec![], 3600, 0).args;
        assert_eq!(a.warmup(), Duration::from_secs(600));
        assert_eq!(window(a.duration, a.sample_every), Duration::from_secs(300));
        a.check().unwrap();
        a.duration = Duration::from_secs(180);
        assert_eq!(a.warmup(), Duration::from_secs(60));
        a.check().unwrap();
        a.duration = Duration::from_secs(30);
        assert!(a.check().is_err());
        a.duration = Duration::from_secs(180);
        a.rooms = 21;
        assert!(a.check().is_err());
    }

    #[test]
    fn slope_of_a_line() {
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[(0.0, 1.0)]), 0.0);
    }
}
