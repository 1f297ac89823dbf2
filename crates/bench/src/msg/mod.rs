//! Messaging scenarios, each against a fresh `chorus serve` (SQLite, `synchronous=full`:
//! every commit is durable) on the host's loopback, with the server's CPU and RSS read from
//! `/proc` over each steady window ([`crate::proc::Window`]).
//!
//! * [`idle`] — N idle authenticated WebSocket sessions (`hello` → `welcome` → `synced`, then
//!   silence): server RSS per connection, sampled as connections are added, and the connect
//!   rate.
//! * [`fanout`] — 1 sender → a group of M members: a paced run (send → deliver latency at a
//!   fixed message rate) and a saturation run (deliveries/s with the sender pipelining 64
//!   sends), each beside the same pattern on Redis pub/sub (`redis-server` on 127.0.0.1:6379).
//! * [`direct`] — durable 1:1 sends: P senders pipelining 64 sends each to P distinct online
//!   recipients; `sent` answers per second and send → `sent` latency.
//! * [`storm`] — a reconnect storm: M group members receive numbered messages, all drop their
//!   TCP connections at once (reset, no close frame), reconnect and resume from their cursors
//!   while the sender goes on; time to recover, lost and duplicated messages.
//! * [`cluster`] (`cluster-fanout`, not in the default list: it needs PostgreSQL and NATS) —
//!   the fan-out's runs on N nodes in cluster mode beside one node, both on PostgreSQL.
//!
//! Every message the load generator sends carries its send time (µs on this process's clock,
//! [`wire::now_us`]) in its text; receivers in the same process compute the one-way latency
//! on receipt. Latencies go into per-task log-linear histograms ([`hist::Hist`]) that are
//! merged at the end.

pub mod cluster;
pub mod direct;
pub mod fanout;
pub mod hist;
pub mod idle;
pub mod redis_peer;
pub mod storm;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::proc::{self, Cost};
use crate::report::Section;
use crate::server::{ChorusServer, ServerOptions};
use crate::Common;
use hist::Hist;

/// Messaging scenarios and their sizes. (Flag names are prefixed: they share the `all`
/// command line with the SFU's.)
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct MsgArgs {
    /// Which messaging scenarios to run, in order: idle, fanout, direct, storm, cluster-fanout.
    #[arg(long, value_delimiter = ',', default_value = "idle,fanout,direct,storm", value_parser = ["idle", "fanout", "direct", "storm", "cluster-fanout"])]
    pub msg_scenarios: Vec<String>,
    /// idle: authenticated WebSocket sessions to open.
    #[arg(long, default_value_t = 50_000, value_parser = crate::positive)]
    pub idle_connections: usize,
    /// idle: sessions per user (every session is authenticated with its user's token).
    #[arg(long, default_value_t = 50, value_parser = crate::positive)]
    pub idle_per_user: usize,
    /// idle: sample the server's RSS every this many connections (the plot's points).
    #[arg(long, default_value_t = 2_500, value_parser = crate::positive)]
    pub idle_step: usize,
    /// fanout: group members receiving (besides the sender).
    #[arg(long, default_value_t = 1000, value_parser = crate::positive)]
    pub fanout_members: usize,
    /// fanout: messages per second of the paced run.
    #[arg(long, default_value_t = 10.0, value_parser = crate::positive_rate)]
    pub fanout_rate: f64,
    /// fanout, direct, storm: message text size, bytes.
    #[arg(long, default_value_t = 100)]
    pub msg_payload: usize,
    /// Length of each measured window (paced, saturation, direct).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub msg_duration: Duration,
    /// Time a load runs before its window opens.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub msg_warmup: Duration,
    /// Sends one session keeps waiting for `sent` (the server allows 64).
    #[arg(long, default_value_t = 64, value_parser = in_flight)]
    pub msg_in_flight: usize,
    /// direct: sender → recipient pairs.
    #[arg(long, default_value_t = 16, value_parser = crate::positive)]
    pub direct_pairs: usize,
    /// storm: group members that drop and resume.
    #[arg(long, default_value_t = 500, value_parser = crate::positive)]
    pub storm_members: usize,
    /// storm: messages per second the sender keeps sending.
    #[arg(long, default_value_t = 50.0, value_parser = crate::positive_rate)]
    pub storm_rate: f64,
    /// storm: sending before the drop.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub storm_before: Duration,
    /// storm: sending after the drop.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    #[serde(with = "crate::sfu::ms")]
    pub storm_after: Duration,
    /// The Redis measured beside the fan-out ("none": skip it).
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    pub msg_redis: String,
    /// cluster-fanout: nodes of the cluster (beside which one node runs).
    #[arg(long, default_value_t = 3, value_parser = cluster_nodes)]
    pub cluster_nodes: usize,
    /// cluster-fanout: the PostgreSQL server (trust auth, with a database `test`); each
    /// deployment gets a fresh database on it, dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub msg_pg: String,
    /// cluster-fanout: the NATS server joining the nodes (each run uses a subject prefix of
    /// its own).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub msg_nats: String,
    /// Fail (instead of reporting it) when the reconnect storm loses or duplicates messages.
    #[arg(long)]
    pub msg_strict: bool,
    /// Profile the server with `perf record -g` during the saturation and direct windows and
    /// put the top of `perf report` in the notes.
    #[arg(long)]
    pub msg_perf: bool,
}

/// `--cluster-nodes`: 2 to 16 (one node is the baseline it is compared with).
fn cluster_nodes(s: &str) -> Result<usize, String> {
    match crate::positive(s)? {
        n @ 2..=16 => Ok(n),
        _ => Err("must be 2 to 16 (the scenario runs 1 node beside them anyway)".into()),
    }
}

/// `--msg-in-flight`: 1 to 64 (what the server allows one session).
fn in_flight(s: &str) -> Result<usize, String> {
    match crate::positive(s)? {
        n @ 1..=64 => Ok(n),
        _ => Err("must be 1 to 64 (the server answers at most 64 requests in flight)".into()),
    }
}

impl MsgArgs {
    /// The small sizes of the CI smoke run.
    pub fn smoke() -> MsgArgs {
        MsgArgs {
            // cluster-fanout: 1 + 3 nodes on PostgreSQL and NATS, about 8 s.
            msg_scenarios: ["idle", "fanout", "direct", "storm", "cluster-fanout"].map(String::from).to_vec(),
            idle_connections: 200,
            idle_per_user: 50,
            idle_step: 100,
            fanout_members: 50,
            fanout_rate: 20.0,
            msg_payload: 100,
            msg_duration: Duration::from_millis(1000),
            msg_warmup: Duration::from_millis(300),
            msg_in_flight: 64,
            direct_pairs: 2,
            storm_members: 20,
            storm_rate: 50.0,
            storm_before: Duration::from_millis(700),
            storm_after: Duration::from_millis(700),
            msg_redis: "redis://127.0.0.1:6379/".into(),
            cluster_nodes: 3,
            msg_pg: "postgres://postgres@127.0.0.1:5432".into(),
            msg_nats: "nats://127.0.0.1:4222".into(),
            msg_strict: true,
            msg_perf: false,
        }
    }
}

/// Runs the chosen messaging scenarios; one section each (fanout: one section with both
/// runs). Fails when a scenario is functionally broken (nothing delivered, messages lost or
/// duplicated), not when a speed target is missed.
pub async fn run(args: &MsgArgs, common: &Common) -> anyhow::Result<Vec<Section>> {
    wire::now_us();
    let mut sections = Vec::new();
    for s in &args.msg_scenarios {
        let section = match s.as_str() {
            "idle" => idle::run(args, common).await,
            "fanout" => fanout::run(args, common).await,
            "direct" => direct::run(args, common).await,
            "storm" => storm::run(args, common).await,
            "cluster-fanout" => cluster::run(args, common).await,
            other => bail!("unknown messaging scenario {other:?} (idle, fanout, direct, storm, cluster-fanout)"),
        }
        .with_context(|| format!("messaging scenario {s}"))?;
        sections.push(section);
    }
    Ok(sections)
}

/// Starts a server for a scenario, with the benchmark's defaults.
pub(crate) fn start_server(common: &Common) -> anyhow::Result<(ChorusServer, SocketAddr)> {
    let server = ChorusServer::start(&ServerOptions::new(common.chorus_bin.clone()))?;
    let addr = server_addr(&server.base)?;
    Ok((server, addr))
}

/// `http://127.0.0.1:1234` → the socket address.
pub(crate) fn server_addr(base: &str) -> anyhow::Result<SocketAddr> {
    base.trim_start_matches("http://").trim_end_matches('/').parse().map_err(|e| anyhow!("server address {base}: {e}"))
}

/// Counters shared by every receiving task of a scenario.
#[derive(Debug)]
pub struct Counters {
    /// Messages received.
    pub delivered: AtomicU64,
    /// Receivers whose connection ended before they were told to stop.
    pub closed: AtomicU64,
    /// Received frames that did not carry a benchmark payload.
    pub unexpected: AtomicU64,
    /// Latencies are recorded for messages sent in `[win_start, win_end)` (µs, [`wire::now_us`]).
    pub win_start: AtomicU64,
    /// See `win_start`.
    pub win_end: AtomicU64,
    /// The first problem a receiver saw.
    pub first_problem: std::sync::Mutex<Option<String>>,
    /// Receivers stop when this turns true.
    pub stop: tokio::sync::watch::Sender<bool>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            delivered: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            win_start: AtomicU64::new(0),
            win_end: AtomicU64::new(0),
            first_problem: std::sync::Mutex::new(None),
            stop: tokio::sync::watch::channel(false).0,
        }
    }
}

impl Counters {
    /// Latencies of messages sent between these instants are recorded.
    pub fn set_window(&self, from: Instant, to: Instant) {
        let now = Instant::now();
        let base = wire::now_us();
        let at = |t: Instant| {
            if t >= now {
                base + t.duration_since(now).as_micros() as u64
            } else {
                base.saturating_sub(now.duration_since(t).as_micros() as u64)
            }
        };
        self.win_start.store(at(from), Ordering::Relaxed);
        self.win_end.store(at(to), Ordering::Relaxed);
    }

    fn in_window(&self, us: u64) -> bool {
        us >= self.win_start.load(Ordering::Relaxed) && us < self.win_end.load(Ordering::Relaxed)
    }

    pub fn problem(&self, p: String) {
        let mut f = self.first_problem.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(p);
        }
    }

    /// Tells every receiver to stop.
    pub fn stop_all(&self) {
        self.stop.send_replace(true);
    }

    /// The first problem a receiver reported.
    pub fn first_problem(&self) -> Option<String> {
        self.first_problem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `delivered` reaches `want` (or `timeout` passes); returns what it reached.
    pub async fn wait_delivered(&self, want: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.delivered.load(Ordering::Relaxed);
            if d >= want || Instant::now() >= deadline {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Latencies by message tag (0 warm-up, 1 paced, 2 saturation).
pub const TAGS: usize = 3;

/// A receiving Chorus session: counts every `message`, records the send → deliver latency
/// of those sent inside the counters' window (by tag), until told to stop.
pub async fn chorus_receiver(mut ws: wire::Ws, c: Arc<Counters>) -> Vec<Hist> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let mut hists = vec![Hist::new(); TAGS];
    let mut stop = c.stop.subscribe();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => continue,
        };
        let text = match m {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(f))) => {
                c.closed.fetch_add(1, Ordering::Relaxed);
                c.problem(format!("a receiver was closed by the server: {f:?}"));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                c.closed.fetch_add(1, Ordering::Relaxed);
                c.problem(format!("a receiver's connection failed: {e}"));
                break;
            }
            None => {
                c.closed.fetch_add(1, Ordering::Relaxed);
                c.problem("a receiver's connection ended".into());
                break;
            }
        };
        let now = wire::now_us();
        let Ok(f) = wire::Lite::parse(&text) else {
            c.unexpected.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if &*f.t != "message" {
            if &*f.t == "error" {
                c.problem(format!("a receiver got {text}"));
            }
            continue;
        }
        match f.text.as_deref().and_then(|t| wire::parse_payload(t.as_bytes())) {
            Some((tag, _, us)) => {
                c.delivered.fetch_add(1, Ordering::Relaxed);
                if c.in_window(us) {
                    if let Some(h) = hists.get_mut(usize::from(tag)) {
                        h.record(now.saturating_sub(us));
                    }
                }
            }
            None => {
                c.unexpected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    hists
}

/// Merges the receivers' histograms by tag.
pub fn merge(all: &[Vec<Hist>]) -> Vec<Hist> {
    let mut out = vec![Hist::new(); TAGS];
    for hs in all {
        for (o, h) in out.iter_mut().zip(hs) {
            o.merge(h);
        }
    }
    out
}

/// What a measurement window saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    /// The server (Chorus or Redis); for several Chorus nodes, all of them summed.
    pub server: Cost,
    /// Each server process on its own, when there are several (the nodes of a cluster).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Cost>,
    /// This load generator.
    pub client: Cost,
    /// Messages delivered in the window.
    pub delivered: u64,
    /// `sent` answers (or PUBLISH replies) in the window.
    pub answered: u64,
    /// The top of `perf report`, when profiled.
    #[serde(skip)]
    pub perf: Option<String>,
}

/// Opens a window on the server processes `pids` (and this process) at `from`, closes it at
/// `to`, and counts the deliveries and answers in between. With `perf`, the servers are
/// profiled over the window.
pub fn probe(
    pids: Vec<u32>,
    from: Instant,
    to: Instant,
    delivered: Arc<Counters>,
    answered: Vec<Arc<AtomicU64>>,
    perf: bool,
) -> tokio::task::JoinHandle<anyhow::Result<Probe>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let count = |a: &[Arc<AtomicU64>]| a.iter().map(|x| x.load(Ordering::Relaxed)).sum::<u64>();
        let (d0, a0) = (delivered.delivered.load(Ordering::Relaxed), count(&answered));
        let servers = pids.iter().map(|&p| proc::Window::open(p)).collect::<anyhow::Result<Vec<_>>>()?;
        let client = proc::Window::open(std::process::id())?;
        let perf_run = if perf { perf_start(&pids, to.saturating_duration_since(Instant::now())) } else { None };
        tokio::time::sleep_until(to.into()).await;
        let (d1, a1) = (delivered.delivered.load(Ordering::Relaxed), count(&answered));
        let nodes = servers.iter().map(proc::Window::close).collect::<anyhow::Result<Vec<_>>>()?;
        let client = client.close()?;
        let perf = match perf_run {
            Some((child, file)) => perf_finish(child, &file).await,
            None => None,
        };
        let server = Cost::sum(&nodes);
        let nodes = if nodes.len() > 1 { nodes } else { Vec::new() };
        Ok(Probe { server, nodes, client, delivered: d1 - d0, answered: a1 - a0, perf })
    })
}

/// Which processes [`watch`] reads.
pub enum Pids {
    /// These.
    These(Vec<u32>),
    /// Every process of this command name when the window opens ([`proc::find_all`]).
    Named(String),
}

/// The cost of the processes `pids`, summed, from `from` to `to`: processes beside the
/// servers, such as the NATS or PostgreSQL server a cluster shares. One that is gone when the
/// window opens or closes is left out.
pub fn watch(pids: Pids, from: Instant, to: Instant) -> tokio::task::JoinHandle<Cost> {
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let pids = match pids {
            Pids::These(p) => p,
            Pids::Named(name) => proc::find_all(&name),
        };
        let windows: Vec<proc::Window> = pids.into_iter().filter_map(|p| proc::Window::open(p).ok()).collect();
        tokio::time::sleep_until(to.into()).await;
        Cost::sum(&windows.iter().filter_map(|w| w.close().ok()).collect::<Vec<_>>())
    })
}

/// Starts `perf record -g` on the processes `pids` for `len`.
pub(crate) fn perf_start(pids: &[u32], len: Duration) -> Option<(tokio::process::Child, std::path::PathBuf)> {
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    let file = std::env::temp_dir().join(format!("chorus-bench-perf-{}-{}.data", list.join("-"), wire::now_us()));
    let child = tokio::process::Command::new("perf")
        .args(["record", "-q", "-g", "-F", "499", "-p", &list.join(","), "-o"])
        .arg(&file)
        .arg("--")
        .args(["sleep", &format!("{:.1}", len.as_secs_f64().max(0.5))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    Some((child, file))
}

pub(crate) async fn perf_finish(mut child: tokio::process::Child, file: &std::path::Path) -> Option<String> {
    let _ = child.wait().await;
    // Where the time goes by thread and binary, then the hottest symbols.
    let by_thread = perf_report(file, &["--sort", "comm,dso"], 6).await;
    let by_symbol = perf_report(file, &["--sort", "comm,sym"], 10).await;
    let _ = std::fs::remove_file(file);
    let by_thread = by_thread?;
    Some(format!("by thread and binary: {by_thread}. Hottest symbols: {}", by_symbol.unwrap_or_default()))
}

/// The first `lines` entries of `perf report --stdio --no-children` with `sort`, joined.
async fn perf_report(file: &std::path::Path, sort: &[&str], lines: usize) -> Option<String> {
    let out = tokio::process::Command::new("perf")
        .args(["report", "--stdio", "--no-children", "-g", "none", "--percent-limit", "1"])
        .args(sort)
        .arg("-i")
        .arg(file)
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let top: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .take(lines)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (!top.is_empty()).then(|| top.join("; "))
}

/// Per-CPU-second rate, 0 when no CPU was used.
pub fn per_cpu(n: u64, cost: &Cost) -> f64 {
    if cost.cpu_secs > 0.0 {
        n as f64 / cost.cpu_secs
    } else {
        0.0
    }
}

/// Per-second rate over a window.
pub fn per_sec(n: u64, cost: &Cost) -> f64 {
    if cost.wall_secs > 0.0 {
        n as f64 / cost.wall_secs
    } else {
        0.0
    }
}

/// Raises this process's open-file limit, soft and hard, to `want` if it is privileged to
/// (the server, started afterwards, inherits it). Returns the soft limit now in force.
pub fn raise_fd_limit_to(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < want {
            let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(want);
            let new = libc::rlimit { rlim_cur: want.min(nr_open), rlim_max: lim.rlim_max.max(want.min(nr_open)) };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim = new;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_rates() {
        assert_eq!(server_addr("http://127.0.0.1:8080").unwrap(), "127.0.0.1:8080".parse().unwrap());
        let c = Cost { wall_secs: 2.0, cpu_secs: 0.5, ..Default::default() };
        assert_eq!(per_sec(100, &c), 50.0);
        assert_eq!(per_cpu(100, &c), 200.0);
        assert_eq!(per_cpu(100, &Cost::default()), 0.0);
    }

    #[test]
    fn windows() {
        let c = Counters::default();
        let now = Instant::now();
        c.set_window(now, now + Duration::from_secs(1));
        let us = wire::now_us();
        assert!(c.in_window(us + 1000));
        assert!(!c.in_window(us + 2_000_000));
    }
}
