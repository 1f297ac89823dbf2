//! Group fan-out: 1 sender → a group of M members (every member may send and receive; the
//! server checks the sender's right and stores each message durably before it fans out).
//!
//! Two runs on the same connections:
//!
//! * **paced** — the sender sends `--fanout-rate` messages/s (default 10/s to 1,000
//!   members = 10k deliveries/s); every receiving connection records send → deliver latency
//!   from the send time in the message text (same process, same clock). p50/p99/max are over
//!   every delivery.
//! * **saturation** — the sender pipelines as fast as the protocol allows (64 sends waiting
//!   for `sent`, answers in order) for `--msg-duration` after `--msg-warmup`; deliveries/s
//!   are counted at the receivers over the window, with the server's CPU from `/proc`. The
//!   sender holds back while the receivers are more than [`MAX_LAG`] messages behind, so a
//!   slow load generator shows up as a lower rate, not as sessions closed for falling
//!   behind (the server's `session_queue` is 4,096 frames).
//!
//! [`super::redis_peer`] runs the same pattern on Redis pub/sub (SUBSCRIBE × M, PUBLISH paced
//! and pipelined), measured the same way. The section reports both and Chorus / Redis.
//!
//! [`run_on`] runs it on several nodes too ([`super::cluster`]): receiver `i` connects to node
//! [`node_of`]`(i)`, the sender to the first node, and the servers' CPU is every node's summed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;

use super::hist::Hist;
use super::wire::{self, Phase, Sender, Target};
use super::{
    chorus_receiver, merge, per_cpu, per_sec, probe, server_addr, start_server, watch, Counters, MsgArgs, Pids, Probe,
};
use crate::proc::Cost;
use crate::report::{Better, Metric, Section};
use crate::server::ChorusServer;
use crate::Common;

/// The sender waits while the receivers are on average more than this many messages behind.
pub const MAX_LAG: u64 = 256;

/// One run (paced or saturation) of one system.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunOut {
    /// Server and client cost, deliveries and answers over the window.
    pub probe: Probe,
    /// send → deliver latency of messages sent in the window, every delivery.
    #[serde(skip)]
    pub latency: Hist,
    /// send → `sent` (PUBLISH reply) latency in the window.
    #[serde(skip)]
    pub ack: Hist,
    /// Several nodes: send → deliver of the receivers on the sender's node, and on the others.
    #[serde(skip)]
    pub same_node: Hist,
    /// See `same_node`.
    #[serde(skip)]
    pub other_nodes: Hist,
    /// The NATS server beside a cluster's nodes, over the window ([`Beside`]).
    pub bus: Option<Cost>,
    /// The PostgreSQL server's processes, over the window ([`Beside`]).
    pub store: Option<Cost>,
    /// Messages sent in the run.
    pub sent: u64,
    /// Deliveries expected (sent × members) and received, over the whole run.
    pub expected: u64,
    /// See `expected`.
    pub delivered: u64,
}

impl RunOut {
    /// Deliveries per second over the window.
    pub fn deliveries_per_sec(&self) -> f64 {
        per_sec(self.probe.delivered, &self.probe.server)
    }

    /// Deliveries per server CPU second.
    pub fn deliveries_per_cpu(&self) -> f64 {
        per_cpu(self.probe.delivered, &self.probe.server)
    }

    /// For the details.
    pub fn details(&self) -> serde_json::Value {
        json!({
            "deliveries_per_sec": self.deliveries_per_sec(),
            "messages_per_sec": per_sec(self.probe.answered, &self.probe.server),
            "deliveries_per_server_cpu_sec": self.deliveries_per_cpu(),
            "server": self.probe.server,
            "nodes": self.probe.nodes,
            "bus": self.bus,
            "store": self.store,
            "client": self.probe.client,
            "sent": self.sent,
            "expected": self.expected,
            "delivered": self.delivered,
            "latency": self.latency.summary(),
            "latency_senders_node": self.same_node.summary(),
            "latency_other_nodes": self.other_nodes.summary(),
            "ack_latency": self.ack.summary(),
        })
    }
}

/// Both runs of one system.
#[derive(Debug, Clone, Default)]
pub struct FanoutRun {
    /// The paced run.
    pub paced: RunOut,
    /// The saturation run.
    pub saturation: RunOut,
    /// Seconds to connect (and subscribe) the M receivers.
    pub connect_secs: f64,
    /// The top of the server's profile during the saturation window.
    pub perf: Option<String>,
}

impl FanoutRun {
    /// Files a finished run (paced, or saturation when `sat`) of `m` receivers and prints
    /// its line.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        progress: &crate::progress::Progress,
        who: &str,
        sat: bool,
        o: wire::PhaseOut,
        delivered: u64,
        m: usize,
        mut probe: Probe,
    ) {
        let perf = probe.perf.take();
        let run = RunOut {
            sent: o.sent,
            expected: o.sent * m as u64,
            delivered,
            ack: o.ack_latency,
            latency: Hist::new(),
            same_node: Hist::new(),
            other_nodes: Hist::new(),
            bus: None,
            store: None,
            probe,
        };
        progress.step(format!(
            "  {who}: {:.0} deliveries/s, {:.0} msgs/s, server {:.2} cores, load generator {:.2} cores",
            run.deliveries_per_sec(),
            per_sec(run.probe.answered, &run.probe.server),
            run.probe.server.cores,
            run.probe.client.cores,
        ));
        if sat {
            self.perf = perf;
            self.saturation = run;
        } else {
            self.paced = run;
        }
    }

    /// Takes the receivers' send → deliver histograms (per receiver, by phase tag).
    pub fn take_latencies(&mut self, hists: &[Vec<Hist>]) {
        let h = merge(hists);
        self.paced.latency = h[1].clone();
        self.saturation.latency = h[2].clone();
    }

    /// Takes the receivers' histograms apart by where they were connected: receiver `i` on
    /// node [`node_of`]`(i, nodes)`; node 0 is the sender's.
    pub fn take_split(&mut self, hists: &[Vec<Hist>], nodes: usize) {
        let (same, other): (Vec<(usize, &Vec<Hist>)>, Vec<_>) =
            hists.iter().enumerate().partition(|(i, _)| node_of(*i, nodes) == 0);
        let merged =
            |part: Vec<(usize, &Vec<Hist>)>| merge(&part.into_iter().map(|(_, h)| h.clone()).collect::<Vec<_>>());
        let (same, other) = (merged(same), merged(other));
        self.paced.same_node = same[1].clone();
        self.saturation.same_node = same[2].clone();
        self.paced.other_nodes = other[1].clone();
        self.saturation.other_nodes = other[2].clone();
    }
}

/// Shared servers whose CPU is read beside the nodes' over each window: they serve the
/// nodes, but other clients too, so their figures are listed apart, not summed in.
#[derive(Debug, Clone, Default)]
pub struct Beside {
    /// The NATS server's pid.
    pub bus: Option<u32>,
    /// The command name of the PostgreSQL server's processes (`postgres`, one per connection),
    /// looked up as each window opens: the nodes' pools connect as the load needs.
    pub store: Option<String>,
}

/// The node receiver `i` of the group connects to, of `nodes`: round-robin, so with 1,000
/// receivers on 3 nodes the sender's node (0) has 334 and each other 333.
pub fn node_of(i: usize, nodes: usize) -> usize {
    i % nodes.max(1)
}

/// The paced phase starting at `from` (measured whole).
pub fn paced_phase(args: &MsgArgs, from: Instant) -> Phase {
    let end = from + args.msg_duration;
    Phase {
        tag: 1,
        rate: Some(args.fanout_rate),
        until: end,
        window: (from, end),
        payload: args.msg_payload,
        in_flight: args.msg_in_flight,
    }
}

/// The saturation phase starting at `from`.
pub fn saturation_phase(args: &MsgArgs, from: Instant) -> Phase {
    let w0 = from + args.msg_warmup;
    let end = w0 + args.msg_duration;
    Phase {
        tag: 2,
        rate: None,
        until: end,
        window: (w0, end),
        payload: args.msg_payload,
        in_flight: args.msg_in_flight,
    }
}

/// A short warm-up phase (tag 0) at the paced rate.
pub fn warmup_phase(args: &MsgArgs, from: Instant) -> Phase {
    let end = from + args.msg_warmup.min(Duration::from_secs(1));
    Phase {
        tag: 0,
        rate: Some(args.fanout_rate),
        until: end,
        window: (from, from),
        payload: args.msg_payload,
        in_flight: args.msg_in_flight,
    }
}

/// Runs the scenario: Chorus, then Redis (unless `--msg-redis none`).
pub async fn run(args: &MsgArgs, common: &Common) -> anyhow::Result<Section> {
    let m = args.fanout_members;
    common.progress.step(format!("msg fanout: Chorus, 1 sender → {m} members"));
    let chorus = chorus_run(args, common).await?;
    let redis = if args.msg_redis == "none" {
        None
    } else {
        common.progress.step(format!("msg fanout: Redis pub/sub, 1 publisher → {m} subscribers"));
        Some(super::redis_peer::fanout(args, common).await.context("the Redis peer")?)
    };
    Ok(section(args, &chorus, redis.as_ref()))
}

fn section(args: &MsgArgs, chorus: &FanoutRun, redis: Option<&(String, FanoutRun)>) -> Section {
    let m = args.fanout_members;
    let mut s = Section::new(
        "msg-fanout",
        &format!("Group fan-out: 1 sender → {m} members (durable, permission-checked) beside Redis pub/sub"),
        json!({
            "members": m,
            "paced_rate_msgs_per_sec": args.fanout_rate,
            "payload_bytes": args.msg_payload,
            "duration_secs": args.msg_duration.as_secs_f64(),
            "warmup_secs": args.msg_warmup.as_secs_f64(),
            "in_flight": args.msg_in_flight,
        }),
    );
    let r = redis.map(|(_, r)| r);
    s.peer_name = redis.map(|(v, _)| v.clone());
    let (cp, cs) = (&chorus.paced, &chorus.saturation);
    let paced_rate = args.fanout_rate * m as f64;
    let p = |f: &dyn Fn(&FanoutRun) -> f64| r.map(f);
    s.metrics.push(
        Metric::new("paced: deliveries/s", "1/s", Better::Higher, cp.deliveries_per_sec())
            .peer(p(&|r| r.paced.deliveries_per_sec())),
    );
    let at = if (paced_rate - 10_000.0).abs() < 1.0 { "" } else { " (target is at 10k/s)" };
    s.metrics.push(
        Metric::new(&format!("paced: send → deliver p50{at}"), "ms", Better::Lower, cp.latency.p50_ms())
            .peer(p(&|r| r.paced.latency.p50_ms())),
    );
    s.metrics.push(
        Metric::new(&format!("paced: send → deliver p99{at}"), "ms", Better::Lower, cp.latency.p99_ms())
            .peer(p(&|r| r.paced.latency.p99_ms()))
            .target("≤ 10 ms at 10k msgs/s", 10.0),
    );
    s.metrics.push(
        Metric::new("paced: send → deliver max", "ms", Better::Lower, cp.latency.max_ms())
            .peer(p(&|r| r.paced.latency.max_ms())),
    );
    s.metrics.push(
        Metric::new("paced: send → sent (stored) p50", "ms", Better::Lower, cp.ack.p50_ms())
            .peer(p(&|r| r.paced.ack.p50_ms())),
    );
    s.metrics.push(
        Metric::new("paced: server CPU", "cores", Better::Lower, cp.probe.server.cores)
            .peer(p(&|r| r.paced.probe.server.cores)),
    );
    s.metrics.push(
        Metric::new("saturation: deliveries/s", "1/s", Better::Higher, cs.deliveries_per_sec())
            .peer(p(&|r| r.saturation.deliveries_per_sec()))
            .target_vs_peer("≥ Redis pub/sub", 1.0),
    );
    s.metrics.push(
        Metric::new("saturation: messages/s", "1/s", Better::Higher, per_sec(cs.probe.answered, &cs.probe.server))
            .peer(p(&|r| per_sec(r.saturation.probe.answered, &r.saturation.probe.server))),
    );
    s.metrics.push(
        Metric::new("saturation: deliveries per server CPU-s", "1/CPU-s", Better::Higher, cs.deliveries_per_cpu())
            .peer(p(&|r| r.saturation.deliveries_per_cpu())),
    );
    s.metrics.push(
        Metric::new("saturation: server CPU", "cores", Better::Lower, cs.probe.server.cores)
            .peer(p(&|r| r.saturation.probe.server.cores)),
    );
    s.metrics.push(
        Metric::new("saturation: load generator CPU", "cores", Better::Lower, cs.probe.client.cores)
            .peer(p(&|r| r.saturation.probe.client.cores)),
    );
    s.metrics.push(
        Metric::new("saturation: send → deliver p50", "ms", Better::Lower, cs.latency.p50_ms())
            .peer(p(&|r| r.saturation.latency.p50_ms())),
    );
    s.metrics.push(
        Metric::new("saturation: send → deliver p99", "ms", Better::Lower, cs.latency.p99_ms())
            .peer(p(&|r| r.saturation.latency.p99_ms())),
    );
    s.metrics.push(
        Metric::new("server RSS at the end", "MiB", Better::Lower, cs.probe.server.rss_kib as f64 / 1024.0)
            .peer(p(&|r| r.saturation.probe.server.rss_kib as f64 / 1024.0)),
    );
    s.notes.push(
        "Chorus stores every message durably (SQLite, synchronous=full, group commit) and checks the sender's \
         right with the group's policy before fanning out; Redis pub/sub does neither (nothing stored, no \
         permission check, a lost subscriber misses messages for good)."
            .into(),
    );
    s.notes.push(format!(
        "Latency is send → deliver at the receiving connections, every delivery of the messages sent in the \
         window, measured in one process (one clock). Saturation: the sender keeps {} sends waiting for their \
         answer and holds back while receivers are over {MAX_LAG} messages behind, so the rate is what the \
         server and the load generator manage together on this machine; the load generator's own CPU is listed \
         because it shares the cores with the server.",
        args.msg_in_flight
    ));
    let us_per = |cost: &crate::proc::Cost, n: u64| if n > 0 { cost.cpu_secs * 1e6 / n as f64 } else { 0.0 };
    let gen_us = us_per(&cp.probe.client, cp.probe.delivered);
    let srv_us = us_per(&cp.probe.server, cp.probe.delivered);
    s.notes.push(format!(
        "What limits the paced latency: one message is {m} deliveries, written by the server to {m} sockets and \
         read by the load generator from {m} sockets, on 2 cores shared by both. Paced, the server spent \
         {srv_us:.1} µs of CPU per delivery and the load generator {gen_us:.1} µs, so the last of the {m} \
         receivers gets a message about {:.1} ms of CPU work after the first, whatever the server{}. The \
         send → sent figure is the durable commit alone (fsync of the SQLite WAL).",
        (srv_us + gen_us) * m as f64 / 1000.0 / 2.0,
        r.map(|r| format!(
            " (Redis: {:.1} µs server, {:.1} µs load generator per delivery, and the same p50/p99 shape)",
            us_per(&r.paced.probe.server, r.paced.probe.delivered),
            us_per(&r.paced.probe.client, r.paced.probe.delivered)
        ))
        .unwrap_or_default()
    ));
    s.notes.push(format!(
        "What limits saturation: deliveries/s is what the server and the load generator ({:.2} cores for Chorus) \
         manage together on 2 cores; deliveries per server CPU second is the figure that does not depend on \
         the load generator: Chorus {:.0}{}.",
        cs.probe.client.cores,
        cs.deliveries_per_cpu(),
        r.map(|r| format!(", Redis {:.0}", r.saturation.deliveries_per_cpu())).unwrap_or_default()
    ));
    s.notes.push(
        "Server RSS: the receivers never send `ack`, so every Chorus session keeps up to 10,000 \
         delivered-but-unacknowledged message entries (http::ws `unacked`, capped there); with 1,000 \
         sessions that is most of the RSS at the end of the saturation run."
            .into(),
    );
    s.notes.push(format!(
        "Connecting the {m} receivers took {:.1} s on Chorus{}.",
        chorus.connect_secs,
        r.map(|r| format!(", subscribing them {:.1} s on Redis", r.connect_secs)).unwrap_or_default()
    ));
    if let Some(p) = &chorus.perf {
        s.notes.push(format!("Chorus profile during saturation (perf, self time): {p}"));
    }
    if let Some(p) = r.and_then(|r| r.perf.as_ref()) {
        s.notes.push(format!("Redis profile during saturation (perf, self time): {p}"));
    }
    s.details = json!({
        "chorus": {"paced": chorus.paced.details(), "saturation": chorus.saturation.details(), "connect_secs": chorus.connect_secs},
        "redis": r.map(|r| json!({"paced": r.paced.details(), "saturation": r.saturation.details(), "connect_secs": r.connect_secs})),
    });
    s
}

/// Chorus: a fresh server (SQLite), M+1 users in one group, M receiving sessions and one
/// sender.
async fn chorus_run(args: &MsgArgs, common: &Common) -> anyhow::Result<FanoutRun> {
    let (server, _) = start_server(common)?;
    run_on(args, common, std::slice::from_ref(&server), &Beside::default(), "Chorus").await
}

/// The fan-out on `nodes` (one server, or the nodes of a cluster, the sender's first): M+1
/// users in one group made through the first node, receiver `i` connected to node
/// [`node_of`]`(i)`, the sender to the first; the servers' CPU is read over each window, and
/// that of the processes `beside` them. `who` names the runs in the progress.
pub async fn run_on(
    args: &MsgArgs,
    common: &Common,
    nodes: &[ChorusServer],
    beside: &Beside,
    who: &str,
) -> anyhow::Result<FanoutRun> {
    let m = args.fanout_members;
    let first = nodes.first().ok_or_else(|| anyhow::anyhow!("no server to run on"))?;
    let addrs = nodes.iter().map(|s| server_addr(&s.base)).collect::<anyhow::Result<Vec<_>>>()?;
    let users = first.users("f", m + 1).await?;
    let gid = first.group("fanout", &users, None).await?;
    let counters = Arc::new(Counters::default());
    let t = Instant::now();
    // In order (`buffered`), so receiver `i` is the one on node `node_of(i)`.
    let sessions: Vec<_> = stream::iter(
        users[1..]
            .iter()
            .enumerate()
            .map(|(i, u)| wire::connect(addrs[node_of(i, nodes.len())], &u.token, None, None, 16 * 1024)),
    )
    .buffered(64)
    .collect()
    .await;
    let mut receivers = Vec::with_capacity(m);
    for s in sessions {
        receivers.push(tokio::spawn(chorus_receiver(s.context("connecting a receiver")?.ws, counters.clone())));
    }
    let connect_secs = t.elapsed().as_secs_f64();
    let session = wire::connect(addrs[0], &users[0].token, None, None, 64 * 1024).await?;
    let mut sender = Sender::new(session, Target::Group(gid));
    let answered = sender.answered.clone();
    let hold_back = {
        let (c, a) = (counters.clone(), answered.clone());
        move || a.load(Ordering::Relaxed).saturating_sub(c.delivered.load(Ordering::Relaxed) / m as u64) > MAX_LAG
    };
    let pids: Vec<u32> = nodes.iter().map(ChorusServer::pid).collect();
    let mut out = FanoutRun { connect_secs, ..Default::default() };

    // Warm-up: deliveries must work at all.
    let w = sender.run(&warmup_phase(args, Instant::now()), &hold_back).await?;
    check(&w, answered.load(Ordering::Relaxed) * m as u64, &counters, "warm-up").await?;

    for (name, sat) in [("paced", false), ("saturation", true)] {
        let now = Instant::now();
        let phase = if sat { saturation_phase(args, now) } else { paced_phase(args, now) };
        counters.set_window(phase.window.0, phase.window.1);
        let before = counters.delivered.load(Ordering::Relaxed);
        let (w0, w1) = phase.window;
        let p = probe(pids.clone(), w0, w1, counters.clone(), vec![answered.clone()], sat && args.msg_perf);
        let bus = beside.bus.map(|pid| watch(Pids::These(vec![pid]), w0, w1));
        let store = beside.store.clone().map(|name| watch(Pids::Named(name), w0, w1));
        let label = format!("{who} {name}");
        let o =
            with_status(&common.progress, &label, &counters, &answered, phase.until, sender.run(&phase, &hold_back))
                .await?;
        let delivered = check(&o, answered.load(Ordering::Relaxed) * m as u64, &counters, name).await? - before;
        out.record(&common.progress, &label, sat, o, delivered, m, p.await??);
        let run = if sat { &mut out.saturation } else { &mut out.paced };
        if let Some(b) = bus {
            run.bus = Some(b.await?);
        }
        if let Some(s) = store {
            run.store = Some(s.await?);
        }
    }
    counters.stop_all();
    let mut hists = Vec::with_capacity(m);
    for r in receivers {
        hists.push(r.await?);
    }
    out.take_latencies(&hists);
    if nodes.len() > 1 {
        out.take_split(&hists, nodes.len());
    }
    Ok(out)
}

/// After a phase: every answer is `sent`, and the receivers get `want` deliveries in all
/// (waits up to 30 s for the last ones). Returns the deliveries counted so far.
pub async fn check(o: &wire::PhaseOut, want: u64, c: &Counters, name: &str) -> anyhow::Result<u64> {
    if o.errors > 0 {
        bail!("{name}: {} sends refused, first: {}", o.errors, o.first_error.as_deref().unwrap_or("?"));
    }
    if o.sent == 0 {
        bail!("{name}: nothing was sent");
    }
    let got = c.wait_delivered(want, Duration::from_secs(30)).await;
    if got != want || c.closed.load(Ordering::Relaxed) > 0 || c.unexpected.load(Ordering::Relaxed) > 0 {
        bail!(
            "{name}: {got} of {want} deliveries arrived; {} receivers lost their connection; {} unexpected frames; {}",
            c.closed.load(Ordering::Relaxed),
            c.unexpected.load(Ordering::Relaxed),
            c.first_problem().unwrap_or_else(|| "no error seen".into())
        );
    }
    Ok(got)
}

/// Runs `fut`, showing the live rates on the status line meanwhile.
pub async fn with_status<T>(
    progress: &crate::progress::Progress,
    name: &str,
    c: &Counters,
    answered: &std::sync::atomic::AtomicU64,
    until: Instant,
    fut: impl std::future::Future<Output = T>,
) -> T {
    let status = async {
        let (mut d0, mut a0, mut t0) =
            (c.delivered.load(Ordering::Relaxed), answered.load(Ordering::Relaxed), Instant::now());
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (d, a, t) = (c.delivered.load(Ordering::Relaxed), answered.load(Ordering::Relaxed), Instant::now());
            let dt = t.duration_since(t0).as_secs_f64().max(1e-3);
            progress.status(format!(
                "{name}: {:.0} deliveries/s, {:.0} msgs/s, {:.0} s left",
                (d - d0) as f64 / dt,
                (a - a0) as f64 / dt,
                until.saturating_duration_since(t).as_secs_f64()
            ));
            (d0, a0, t0) = (d, a, t);
        }
    };
    tokio::select! {
        r = fut => r,
        () = status => unreachable!("the status loop never ends"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::TAGS;

    #[test]
    fn receivers_spread_round_robin_and_their_latencies_split_by_node() {
        let mut per_node = [0; 3];
        (0..1000).for_each(|i| per_node[node_of(i, 3)] += 1);
        assert_eq!(per_node, [334, 333, 333]);
        assert_eq!(node_of(7, 1), 0);
        // Paced (tag 1): 1 ms on the sender's node, 3 ms on the others.
        let hists: Vec<Vec<Hist>> = (0..6)
            .map(|i| {
                let mut h = vec![Hist::new(); TAGS];
                h[1].record(if node_of(i, 3) == 0 { 1000 } else { 3000 });
                h
            })
            .collect();
        let mut run = FanoutRun::default();
        run.take_split(&hists, 3);
        assert!((run.paced.same_node.p99_ms() - 1.0).abs() < 0.05, "{}", run.paced.same_node.p99_ms());
        assert!((run.paced.other_nodes.p99_ms() - 3.0).abs() < 0.1, "{}", run.paced.other_nodes.p99_ms());
        assert_eq!(run.saturation.other_nodes.p99_ms(), 0.0);
    }
}
