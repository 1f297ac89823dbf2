//! Group fan-out across a cluster (issue #15's benchmark): the [`super::fanout`] runs — 1
//! sender → a group of M members, paced and saturation — on N Chorus nodes in cluster mode,
//! beside the same on one node, in one run.
//!
//! Both deployments store in PostgreSQL (`--msg-pg`, a fresh database each on the same
//! server), so the one node is the fair baseline, not the SQLite of `fanout`:
//!
//! * **1 node**: one `chorus serve` on PostgreSQL, without NATS — a single-node deployment.
//! * **N nodes** (`--cluster-nodes`, 3): N `chorus serve` in cluster mode on one database and
//!   NATS (`--msg-nats`, a subject prefix of the run's own), `node1` first
//!   ([`crate::server::Nodes`]). Receiver `i` connects to node `i % N`
//!   ([`super::fanout::node_of`]: with 1,000 members on 3 nodes, 334 on `node1` and 333 on
//!   each other), the sender to `node1`. `node1` stores each message and fans it out: to its
//!   own sessions directly, to the others' as one NATS message that each other node receives
//!   and writes to its sessions (crates/server/src/cluster).
//!
//! Reported, N nodes beside 1 node:
//!
//! * deliveries/s and send → deliver p50/p99, paced and at saturation, as in `fanout`;
//! * send → deliver of the receivers on the sender's node and of those on the other nodes,
//!   separately: the difference of their p99s in the paced run is the **cross-node added
//!   latency** (target ≤ 2 ms). One process receives for every node, so both are on one clock;
//! * deliveries per server CPU second, every node's CPU summed (target ≥ 0.8× one node's), and
//!   each node's share in the notes. Beside it ([`Beside`]), the CPU of the NATS server (when
//!   exactly one `nats-server` process runs on this machine) and of the PostgreSQL server's
//!   processes (every `postgres` process as each window opens), and deliveries per CPU
//!   second with them counted in. They are shared servers (other clients' work would count
//!   too), so they are not in the target's figure.
//!
//! Everything — the nodes, NATS, PostgreSQL and the load generator — shares this machine's
//! cores: N nodes here do not get N machines' CPU, so the cluster's deliveries/s say what one
//! machine manages split into N processes; the per-CPU-second figures are the comparable ones.

use serde_json::json;

use super::fanout::{run_on, Beside, FanoutRun, RunOut};
use super::{per_sec, MsgArgs};
use crate::report::{Better, Metric, Section};
use crate::server::{Nodes, ServerOptions};
use crate::Common;

/// The cross-node added latency allowed (p99, paced), ms.
pub const ADDED_P99_MS: f64 = 2.0;
/// The cluster's deliveries per server CPU second, at least this share of one node's.
pub const CPU_SHARE: f64 = 0.8;

/// Runs one node, then `--cluster-nodes` nodes, and reports them side by side.
pub async fn run(args: &MsgArgs, common: &Common) -> anyhow::Result<Section> {
    let (m, n) = (args.fanout_members, args.cluster_nodes);
    common.progress.step(format!("msg cluster-fanout: 1 node on PostgreSQL, 1 sender → {m} members"));
    let one = deployment(args, common, 1).await?;
    common.progress.step(format!("msg cluster-fanout: {n} nodes on PostgreSQL + NATS, {m} members spread over them"));
    let many = deployment(args, common, n).await?;
    Ok(section(args, &one, &many))
}

/// `n` fresh nodes (and their database) for one fan-out, stopped when it ends.
async fn deployment(args: &MsgArgs, common: &Common, n: usize) -> anyhow::Result<FanoutRun> {
    let options = ServerOptions::new(common.chorus_bin.clone());
    let nats = (n > 1).then_some(args.msg_nats.as_str());
    let nodes = Nodes::start(&options, n, &args.msg_pg, nats).await?;
    let beside =
        Beside { bus: nats.and_then(|_| crate::proc::find_one("nats-server")), store: Some("postgres".into()) };
    let who = if n == 1 { "1 node".to_string() } else { format!("{n} nodes") };
    run_on(args, common, &nodes.servers, &beside, &who).await
}

/// The other nodes' p99 minus the sender's node's (paced), ms.
pub fn added_p99_ms(run: &RunOut) -> f64 {
    run.other_nodes.p99_ms() - run.same_node.p99_ms()
}

fn section(args: &MsgArgs, one: &FanoutRun, many: &FanoutRun) -> Section {
    let (m, n) = (args.fanout_members, args.cluster_nodes);
    let mut s = Section::new(
        "msg-cluster-fanout",
        &format!("Cluster fan-out: 1 sender → {m} members spread over {n} nodes (PostgreSQL + NATS) beside 1 node"),
        json!({
            "members": m,
            "nodes": n,
            "paced_rate_msgs_per_sec": args.fanout_rate,
            "payload_bytes": args.msg_payload,
            "duration_secs": args.msg_duration.as_secs_f64(),
            "warmup_secs": args.msg_warmup.as_secs_f64(),
            "in_flight": args.msg_in_flight,
        }),
    );
    s.subject = Some(format!("{n} nodes"));
    s.peer_name = Some("1 node".into());
    let metric = |name: &str, unit: &str, better: Better, f: &dyn Fn(&FanoutRun) -> f64| {
        Metric::new(name, unit, better, f(many)).peer(Some(f(one)))
    };
    s.metrics.push(metric("paced: deliveries/s", "1/s", Better::Higher, &|r| r.paced.deliveries_per_sec()));
    s.metrics.push(metric("paced: send → deliver p50", "ms", Better::Lower, &|r| r.paced.latency.p50_ms()));
    s.metrics.push(metric("paced: send → deliver p99", "ms", Better::Lower, &|r| r.paced.latency.p99_ms()));
    // One node: every receiver is on the sender's node, so its figures are the baseline of both.
    s.metrics.push(
        Metric::new("paced: p50, receivers on the sender's node", "ms", Better::Lower, many.paced.same_node.p50_ms())
            .peer(Some(one.paced.latency.p50_ms())),
    );
    s.metrics.push(
        Metric::new("paced: p99, receivers on the sender's node", "ms", Better::Lower, many.paced.same_node.p99_ms())
            .peer(Some(one.paced.latency.p99_ms())),
    );
    s.metrics.push(
        Metric::new("paced: p50, receivers on the other nodes", "ms", Better::Lower, many.paced.other_nodes.p50_ms())
            .peer(Some(one.paced.latency.p50_ms())),
    );
    s.metrics.push(
        Metric::new("paced: p99, receivers on the other nodes", "ms", Better::Lower, many.paced.other_nodes.p99_ms())
            .peer(Some(one.paced.latency.p99_ms())),
    );
    s.metrics.push(
        Metric::new(
            "paced: cross-node added p99 (other nodes − sender's node)",
            "ms",
            Better::Lower,
            added_p99_ms(&many.paced),
        )
        .target("≤ 2 ms", ADDED_P99_MS),
    );
    s.metrics.push(metric("paced: send → sent (stored) p50", "ms", Better::Lower, &|r| r.paced.ack.p50_ms()));
    s.metrics.push(metric("paced: server CPU, all nodes", "cores", Better::Lower, &|r| r.paced.probe.server.cores));
    s.metrics.push(metric("paced: deliveries per server CPU-s", "1/CPU-s", Better::Higher, &|r| {
        r.paced.deliveries_per_cpu()
    }));
    s.metrics.push(metric("saturation: deliveries/s", "1/s", Better::Higher, &|r| r.saturation.deliveries_per_sec()));
    s.metrics.push(metric("saturation: messages/s", "1/s", Better::Higher, &|r| {
        per_sec(r.saturation.probe.answered, &r.saturation.probe.server)
    }));
    s.metrics.push(
        metric("saturation: deliveries per server CPU-s, all nodes", "1/CPU-s", Better::Higher, &|r| {
            r.saturation.deliveries_per_cpu()
        })
        .target_vs_peer("≥ 0.8× one node's", CPU_SHARE),
    );
    s.metrics.push(metric("saturation: server CPU, all nodes", "cores", Better::Lower, &|r| {
        r.saturation.probe.server.cores
    }));
    s.metrics
        .push(metric("saturation: load generator CPU", "cores", Better::Lower, &|r| r.saturation.probe.client.cores));
    s.metrics.push(metric("saturation: send → deliver p50", "ms", Better::Lower, &|r| r.saturation.latency.p50_ms()));
    s.metrics.push(metric("saturation: send → deliver p99", "ms", Better::Lower, &|r| r.saturation.latency.p99_ms()));
    s.metrics.push(
        Metric::new(
            "saturation: p99, receivers on the sender's node",
            "ms",
            Better::Lower,
            many.saturation.same_node.p99_ms(),
        )
        .peer(Some(one.saturation.latency.p99_ms())),
    );
    s.metrics.push(
        Metric::new(
            "saturation: p99, receivers on the other nodes",
            "ms",
            Better::Lower,
            many.saturation.other_nodes.p99_ms(),
        )
        .peer(Some(one.saturation.latency.p99_ms())),
    );
    s.metrics.push(metric("server RSS at the end, all nodes", "MiB", Better::Lower, &|r| {
        r.saturation.probe.server.rss_kib as f64 / 1024.0
    }));
    // The shared servers, apart from the nodes' figures.
    if let Some(bus) = many.saturation.bus {
        s.metrics.push(Metric::new("saturation: NATS server CPU (shared)", "cores", Better::Lower, bus.cores));
    }
    if many.saturation.store.is_some() {
        s.metrics.push(metric("saturation: PostgreSQL CPU, its processes (shared)", "cores", Better::Lower, &|r| {
            r.saturation.store.map_or(0.0, |c| c.cores)
        }));
        s.metrics.push(metric(
            "saturation: deliveries per CPU-s, nodes + NATS (cluster) + PostgreSQL",
            "1/CPU-s",
            Better::Higher,
            &|r| {
                let r = &r.saturation;
                let cpu =
                    r.probe.server.cpu_secs + r.bus.map_or(0.0, |c| c.cpu_secs) + r.store.map_or(0.0, |c| c.cpu_secs);
                ratio(r.probe.delivered as f64, cpu)
            },
        ));
    }
    notes(&mut s, args, one, many);
    s.details = json!({
        "one_node": {"paced": one.paced.details(), "saturation": one.saturation.details(), "connect_secs": one.connect_secs},
        "cluster": {"paced": many.paced.details(), "saturation": many.saturation.details(), "connect_secs": many.connect_secs},
    });
    s
}

/// `a / b`, 0 when `b` is.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The shared servers' CPU, paced and at saturation, as a sentence (empty when not watched).
fn beside(one: &FanoutRun, many: &FanoutRun) -> String {
    let cores = |c: Option<crate::proc::Cost>| c.map_or("–".to_string(), |c| format!("{:.2}", c.cores));
    let mut out = String::new();
    if many.saturation.bus.is_some() {
        out +=
            &format!(" NATS server: paced {}, saturation {} cores.", cores(many.paced.bus), cores(many.saturation.bus));
    }
    if many.saturation.store.is_some() {
        out += &format!(
            " PostgreSQL (all its processes): paced {} ({} with one node), saturation {} ({}) cores.",
            cores(many.paced.store),
            cores(one.paced.store),
            cores(many.saturation.store),
            cores(one.saturation.store)
        );
    }
    out
}

/// What ran, where the CPU went, what limits the figures.
fn notes(s: &mut Section, args: &MsgArgs, one: &FanoutRun, many: &FanoutRun) {
    let (m, n) = (args.fanout_members, args.cluster_nodes);
    let on_first = (0..m).filter(|&i| super::fanout::node_of(i, n) == 0).count();
    s.notes.push(format!(
        "1 node: one `chorus serve` on PostgreSQL without NATS (a single-node deployment). {n} nodes: cluster mode \
         on one PostgreSQL database and NATS ({}); the sender on node1, the {m} receivers round-robin over the \
         nodes ({on_first} on node1, the rest on the others). Each a fresh database on the same PostgreSQL server, \
         messages stored and permission-checked as in `fanout`.",
        args.msg_nats
    ));
    s.notes.push(format!(
        "Cross-node added latency: p99 send → deliver of the receivers on the other nodes minus that of the receivers \
         on the sender's node, in the paced run ({} msgs/s); both measured by one process, one clock, in histograms \
         whose buckets are 1/64 to 1/32 of their value wide (0.512 ms from 16 to 32 ms), which bounds the \
         difference's precision. The other nodes' p99 against the 1-node run's p99: {:+.2} ms.",
        args.fanout_rate,
        many.paced.other_nodes.p99_ms() - one.paced.latency.p99_ms()
    ));
    let shares = |r: &RunOut| {
        r.probe
            .nodes
            .iter()
            .enumerate()
            .map(|(i, c)| format!("node{} {:.2}", i + 1, c.cores))
            .collect::<Vec<_>>()
            .join(", ")
    };
    s.notes.push(format!(
        "Server CPU by node (cores; node1 stores and publishes to NATS, the others receive from it): paced {}; \
         saturation {}. One node: paced {:.2}, saturation {:.2}.{}",
        shares(&many.paced),
        shares(&many.saturation),
        one.paced.probe.server.cores,
        one.saturation.probe.server.cores,
        beside(one, many)
    ));
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    s.notes.push(format!(
        "What limits the figures: the {n} nodes, NATS, PostgreSQL and the load generator share this machine's {cores} \
         cores. At saturation the load generator used {:.2} cores beside the nodes' {:.2} ({:.2} beside one node's {:.2}), \
         so deliveries/s is what the machine manages, not what {n} machines would; deliveries per server CPU second \
         ({:.0} vs {:.0}, {:.2}×) is the comparable figure. In the paced run the latency of every receiver includes \
         waiting for a core.",
        many.saturation.probe.client.cores,
        many.saturation.probe.server.cores,
        one.saturation.probe.client.cores,
        one.saturation.probe.server.cores,
        many.saturation.deliveries_per_cpu(),
        one.saturation.deliveries_per_cpu(),
        ratio(many.saturation.deliveries_per_cpu(), one.saturation.deliveries_per_cpu()),
    ));
    s.notes.push(format!(
        "Connecting the {m} receivers took {:.1} s on 1 node, {:.1} s on {n}.",
        one.connect_secs, many.connect_secs
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::hist::Hist;

    #[test]
    fn added_latency_is_the_other_nodes_p99_minus_the_senders() {
        let mut r = RunOut::default();
        let (mut same, mut other) = (Hist::new(), Hist::new());
        for us in 1..=1000 {
            same.record(us * 10);
            other.record(us * 10 + 1500);
        }
        (r.same_node, r.other_nodes) = (same, other);
        let added = added_p99_ms(&r);
        assert!((1.2..1.8).contains(&added), "{added}");
    }
}
